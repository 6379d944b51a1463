"""The latent grid of a video and the packing of latents into transformer tokens (diffusers' ``_pack_latents``).

Axis letters: B batch, F latent frames, H latent height, W latent width, C latent channels, N tokens,
p / pt the transformer's spatial / temporal patch sizes.
"""

from __future__ import annotations

import dataclasses

import jax


@dataclasses.dataclass(frozen=True)
class LatentGrid:
    """Latent sizes of one video and the transformer's token grid over them (static: part of a program's shape).

    ``frames``, ``height``, ``width`` are latent sizes (VAE compression applied); the token grid divides them by the
    transformer's patch sizes (1 for every release).
    """

    frames: int
    height: int
    width: int
    patch_size: int = 1
    patch_size_t: int = 1

    @classmethod
    def for_video(cls, num_frames: int, height: int, width: int, *, spatial_ratio: int, temporal_ratio: int,
                  patch_size: int = 1, patch_size_t: int = 1) -> "LatentGrid":
        """The grid of a num_frames x height x width video, as diffusers' pipelines size their latents."""
        return cls((num_frames - 1) // temporal_ratio + 1, height // spatial_ratio, width // spatial_ratio,
                   patch_size, patch_size_t)

    @property
    def token_frames(self) -> int:
        return self.frames // self.patch_size_t

    @property
    def token_height(self) -> int:
        return self.height // self.patch_size

    @property
    def token_width(self) -> int:
        return self.width // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.token_frames * self.token_height * self.token_width

    @property
    def num_latents(self) -> int:
        """Latent positions (before patching): the token count diffusers computes the resolution shift ``mu`` from."""
        return self.frames * self.height * self.width


def rope_interpolation_scale(frame_rate: float, *, temporal_ratio: int,
                             spatial_ratio: int) -> tuple[float, float, float]:
    """(temporal ratio / frame rate, spatial ratio, spatial ratio): RoPE's scale of latent (frame, row, column)
    positions, from the VAE's compression ratios, as diffusers' pipelines scale it (the releases at 25 fps: (8 / 25,
    32, 32))."""
    return (temporal_ratio / frame_rate, spatial_ratio, spatial_ratio)


def pack_latents(latents: jax.Array, patch_size: int = 1, patch_size_t: int = 1) -> jax.Array:
    """[B, F, H, W, C] channels-last latents -> [B, N, C*pt*p*p] tokens, frame-major, channels ordered (c, pt, p, p)
    as diffusers' ``_pack_latents`` orders them."""
    b, f, h, w, c = latents.shape
    p, pt = patch_size, patch_size_t
    x = latents.reshape(b, f // pt, pt, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 5, 7, 2, 4, 6)  # [B, F', H', W', C, pt, p, p]
    return x.reshape(b, (f // pt) * (h // p) * (w // p), c * pt * p * p)


def unpack_latents(tokens: jax.Array, grid: LatentGrid) -> jax.Array:
    """Inverse of ``pack_latents``: [B, N, C*pt*p*p] -> [B, F, H, W, C] channels-last latents."""
    p, pt = grid.patch_size, grid.patch_size_t
    b = tokens.shape[0]
    c = tokens.shape[-1] // (pt * p * p)
    x = tokens.reshape(b, grid.token_frames, grid.token_height, grid.token_width, c, pt, p, p)
    x = x.transpose(0, 1, 5, 2, 6, 3, 7, 4)  # [B, F', pt, H', p, W', p, C]
    return x.reshape(b, grid.frames, grid.height, grid.width, c)

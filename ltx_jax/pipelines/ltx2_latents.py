"""LTX-2's latent shapes and packing, as diffusers' ``LTX2Pipeline`` computes them (``ltx2_core`` uses these).

Axis letters: B batch, F / H / W latent frames, height, width, C latent channels, N = F H W video tokens (before
patching), T' audio latent frames, M' latent mel bins, L audio latent channels.

Video: diffusers packs ``[B, C, F, H, W]`` into tokens ``[B, (F/pt)(H/p)(W/p), C pt p p]`` (frame-major tokens,
channel-major features; ``_pack_latents``); our VAE is channels-last, so ``unpack_video_latents`` goes straight from
tokens to ``[B, F, H, W, C]`` (diffusers' ``_unpack_latents`` followed by a permute to channels-last).
Audio: tokens ``[B, T', L M']`` (``ltx_jax.models.ltx2.audio_vae.pack_audio_latents``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

#: diffusers' ``LATENT_DOWNSAMPLE_FACTOR`` of the audio VAE: its ``mel_compression_ratio`` and
#: ``temporal_compression_ratio`` whatever its ``ch_mult`` says.
AUDIO_COMPRESSION = 4


@dataclasses.dataclass(frozen=True)
class LTX2Grid:
    """The static latent sizes of one generation (hashable: part of the compiled program's key).

    Attributes:
      frames, height, width: the latent video grid (F, H, W), before the transformer's patching.
      audio_frames: T', the audio latent frames (``round(num_frames / frame_rate * sample_rate / hop / 4)``).
      mel_bins: M', the latent mel bins (``mel_bins // 4``).
      fps: the frame rate the video RoPE is conditioned on (``frame_rate / motion_speed``).
    """

    frames: int
    height: int
    width: int
    audio_frames: int
    mel_bins: int
    fps: float


def vae_compression(vae_config) -> tuple[int, int]:
    """(spatial, temporal) compression as diffusers' ``AutoencoderKLLTX2Video`` states it: the config's ratios, or
    ``patch_size(_t) * 2 ** sum(spatio_temporal_scaling)`` where they are None (the pipeline's latent grid)."""
    scaling = vae_config.spatio_temporal_scaling
    count = sum(bool(s) for s in scaling) if isinstance(scaling, tuple) else int(bool(scaling)) * len(
        vae_config.block_out_channels)
    spatial = vae_config.spatial_compression_ratio or vae_config.patch_size * 2 ** count
    temporal = vae_config.temporal_compression_ratio or vae_config.patch_size_t * 2 ** count
    return int(spatial), int(temporal)


def ltx2_grid(vae_config, audio_vae_config, *, height: int, width: int, num_frames: int, frame_rate: float,
              motion_speed: float = 1.0) -> LTX2Grid:
    """The latent grid diffusers' ``LTX2Pipeline.__call__`` derives from the pixel sizes and the frame rate."""
    spatial, temporal = vae_compression(vae_config)
    duration_s = num_frames / frame_rate
    per_second = audio_vae_config.sample_rate / audio_vae_config.mel_hop_length / float(AUDIO_COMPRESSION)
    mel_bins = audio_vae_config.mel_bins if audio_vae_config.mel_bins is not None else 64
    return LTX2Grid(frames=(num_frames - 1) // temporal + 1, height=height // spatial, width=width // spatial,
                    audio_frames=round(duration_s * per_second), mel_bins=mel_bins // AUDIO_COMPRESSION,
                    fps=frame_rate / motion_speed)


def pack_video_latents(latents, patch_size: int = 1, patch_size_t: int = 1):
    """Channels-last latents [B, F, H, W, C] -> diffusers' packed tokens [B, (F/pt)(H/p)(W/p), C pt p p] (numpy or
    jax in, same out)."""
    xp = jnp if isinstance(latents, jax.Array) else np
    b, f, h, w, c = latents.shape
    p, pt = patch_size, patch_size_t
    x = latents.reshape(b, f // pt, pt, h // p, p, w // p, p, c)
    x = xp.transpose(x, (0, 1, 3, 5, 7, 2, 4, 6))  # [B, F', H', W', C, pt, p, p]
    return x.reshape(b, (f // pt) * (h // p) * (w // p), c * pt * p * p)


def unpack_video_latents(tokens: jax.Array, grid: LTX2Grid, patch_size: int = 1, patch_size_t: int = 1) -> jax.Array:
    """Packed tokens [B, N', C pt p p] -> channels-last latents [B, F, H, W, C] (diffusers' ``_unpack_latents``,
    permuted to channels-last)."""
    p, pt = patch_size, patch_size_t
    b = tokens.shape[0]
    f, h, w = grid.frames // pt, grid.height // p, grid.width // p
    x = tokens.reshape(b, f, h, w, -1, pt, p, p)
    x = jnp.transpose(x, (0, 1, 5, 2, 6, 3, 7, 4))  # [B, F', pt, H', p, W', p, C]
    return x.reshape(b, f * pt, h * p, w * p, x.shape[-1])

"""What the stages of a pipeline call hand each other: the random keys of the call, split once from its seed, and
the latents ``prepare_latents`` returns (one type in every pipeline)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class CallKeys:
    """The random keys of one call (or one pass of a multi-scale call), each a stream of its own, split at once from
    the seed: a new use gets a new name here, never arithmetic on another key.

    Attributes:
      noise: the initial Gaussian noise on the latent grid.
      encode: the VAE posterior samples of images and clips (``for_condition`` splits it per condition).
      condition_noise: the noise blended into conditions at later frames (split per condition the same way).
      step_noise: the noise put back on the conditioning tokens before each step (``image_cond_noise_scale``).
      decode: the decode noise (timestep-conditioned VAEs).
      source: the VAE posterior of a source video the caller encodes (the command line's video-to-video).
    """

    noise: jax.Array
    encode: jax.Array
    condition_noise: jax.Array
    step_noise: jax.Array
    decode: jax.Array
    source: jax.Array

    @classmethod
    def split(cls, key: jax.Array) -> "CallKeys":
        """One key per field, from ``key``."""
        return cls(*jax.random.split(key, len(dataclasses.fields(cls))))

    @classmethod
    def from_seed(cls, seed: int) -> "CallKeys":
        return cls.split(jax.random.PRNGKey(seed))

    def for_condition(self, index: int, count: int) -> tuple[jax.Array, jax.Array]:
        """(encode key, noise key) of condition ``index`` of ``count``."""
        return jax.random.split(self.encode, count)[index], jax.random.split(self.condition_noise, count)[index]


@dataclasses.dataclass
class PreparedLatents:
    """The denoising loop's starting point, as every pipeline's ``prepare_latents`` returns it.

    Attributes:
      latents: packed [B, N', C] float32, the N' tokens being the video's N after ``num_extra_tokens`` conditioning
        tokens (conditions at later frames).
      conditioning_mask: [B, N'] in [0, 1], 1 = a clean conditioning token; None without conditions.
      video_coords: [B, 3, N'] token coordinates in pixel units (frames not yet divided by the frame rate; the
        loop's ``video_coords``); None where the latent grid gives them (text- and image-to-video).
      num_extra_tokens: the conditioning tokens placed before the video's, dropped before decoding.
    """

    latents: jax.Array
    conditioning_mask: jax.Array | None = None
    video_coords: np.ndarray | None = None
    num_extra_tokens: int = 0

    def coords_per_second(self, frame_rate: float) -> np.ndarray | None:
        """``video_coords`` with the frames divided by the frame rate, as diffusers scales them before the loop."""
        if self.video_coords is None:
            return None
        coords = np.array(self.video_coords, np.float32)
        coords[:, 0] = coords[:, 0] * np.float32(1.0 / frame_rate)
        return coords

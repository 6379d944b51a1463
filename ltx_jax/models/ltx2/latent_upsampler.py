"""LTX-2's latent upsamplers (diffusers' ``LTX2LatentUpsamplerModel``, ltx-core's ``LatentUpsampler``), channels-last:
spatial x2, spatial x1.5 (the rational resampler) and temporal x2.

Axis letters in shape comments:
    B batch, F frames, H height, W width, C channels (C_in latent channels, M ``mid_channels``); primes (F', H', W')
    are sizes after upsampling; N = B*F when frames are folded into the batch.

The network is LTX-Video's (``ltx_jax.models.latent_upsampler``, whose trunk, ResBlock, GroupNorm and pixel shuffle
this module reuses): ``initial_conv`` -> ``initial_norm`` -> SiLU -> ``res_blocks`` -> upsampler ->
``post_upsample_res_blocks`` -> ``final_conv``. The one new piece is the upsampler of a spatial-only model with
``use_rational_resampler`` (diffusers' default): ``SpatialRationalResampler`` scales H and W by num/den
(``RATIONAL_SCALES``: 1.5 = 3/2), per frame: a 3x3 conv to num^2*M channels, a pixel shuffle by num, then an
anti-aliasing 5x5 binomial blur with stride den (zero padding 2; none for den 1), params ``upsampler/conv``
(torch's ``upsampler.conv``; the fixed blur kernel is the buffer ``upsampler.blur_down.kernel``, not a param).
Without the rational resampler, or with temporal upsampling, the upsampler is LTX-Video's ``upsampler_0``.

Like diffusers' model (and ltx-core's ``upsample_video``, which wraps it), this takes and returns raw latents: the
video VAE's per-channel statistics are undone before and reapplied after by the pipeline, not here.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs_ltx2 import LTX2LatentUpsamplerConfig
from ltx_jax.models.latent_upsampler import _ConvMixin, _UpsamplerTrunk
from ltx_jax.models.vae_blocks import depth_to_space

Dtype = Any

# diffusers' ``RATIONAL_RESAMPLER_SCALE_MAPPING``: rational_spatial_scale -> (num, den).
RATIONAL_SCALES = {0.75: (3, 4), 1.5: (3, 2), 2.0: (2, 1), 4.0: (4, 1)}
BLUR_KERNEL_SIZE = 5  # diffusers' ``BlurDownsample`` default (binomial 1 4 6 4 1)


def blur_kernel_1d(size: int = BLUR_KERNEL_SIZE) -> np.ndarray:
    """The separable binomial taps [size] / 2^(size-1) (float64); the 2-D kernel is their outer product, exactly
    torch's normalised ``k2d`` (``upsampler.blur_down.kernel`` [1, 1, size, size])."""
    taps = np.array([math.comb(size - 1, k) for k in range(size)], np.float64)
    return taps / taps.sum()


def rational_factors(config: LTX2LatentUpsamplerConfig) -> tuple[int, int] | None:
    """(num, den) of the spatial scale when ``config`` runs the rational resampler (spatial only, with
    ``use_rational_resampler``), else None. Raises ValueError for a scale diffusers does not support."""
    if not (config.spatial_upsample and not config.temporal_upsample and config.use_rational_resampler):
        return None
    factors = RATIONAL_SCALES.get(float(config.rational_spatial_scale))
    if factors is None:
        raise ValueError(f"rational_spatial_scale={config.rational_spatial_scale} is not supported; use one of "
                         f"{sorted(RATIONAL_SCALES)}.")
    return factors


def output_shape(config: LTX2LatentUpsamplerConfig, frames: int, height: int, width: int) -> tuple[int, int, int]:
    """(F', H', W') out for latents of (F, H, W): F' = 2F - 1 with ``temporal_upsample`` (the first frame is
    dropped); H' = 2H with ``spatial_upsample`` (conv + pixel shuffle, or the rational resampler at 2.0); with the
    rational resampler at num/den, H' = ceil(num*H / den) (the stride-den blur of num*H rows, padding 2), e.g.
    ceil(1.5 H) for 1.5 (5 -> 8, 4 -> 6); the same for W."""
    f = 2 * frames - 1 if config.temporal_upsample else frames
    factors = rational_factors(config)
    if factors is not None:
        num, den = factors
        return f, -(-num * height // den), -(-num * width // den)
    scale = 2 if config.spatial_upsample else 1
    return f, scale * height, scale * width


def blur_downsample(x: jax.Array, stride: int, kernel_size: int = BLUR_KERNEL_SIZE) -> jax.Array:
    """diffusers' ``BlurDownsample`` (dims 2) on channels-last x [N, H, W, M]: a depthwise ``kernel_size``^2
    binomial blur with zero padding kernel_size // 2 and stride ``stride`` -> [N, ceil(H/s), ceil(W/s), M] in
    x's dtype. Computed separably (the kernel is an outer product) as weighted sums of strided slices, in float32."""
    if stride == 1:
        return x
    taps = blur_kernel_1d(kernel_size)
    pad = kernel_size // 2
    y = x.astype(jnp.float32)
    for axis in (1, 2):
        size = y.shape[axis]
        out = (size + 2 * pad - kernel_size) // stride + 1
        widths = [(0, 0)] * y.ndim
        widths[axis] = (pad, pad)
        padded = jnp.pad(y, widths)
        y = sum(float(t) * jax.lax.slice_in_dim(padded, k, k + (out - 1) * stride + 1, stride, axis)
                for k, t in enumerate(taps))
    return y.astype(x.dtype)


class SpatialRationalResampler(_ConvMixin, nn.Module):
    """Scales H and W by num/den per frame: x [N, H, W, M] -> [N, ceil(num*H/den), ceil(num*W/den), M] in
    ``dtype`` (a 3x3 conv ``conv`` to num^2*M channels, pixel shuffle by num, ``blur_downsample`` by den)."""

    mid_channels: int
    num: int
    den: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv(self.num ** 2 * self.mid_channels, 2, "conv")(x)  # [N, H, W, num^2 M]
        x = depth_to_space(x[:, None], (1, self.num, self.num))[:, 0]  # [N, num H, num W, M]
        return blur_downsample(x, self.den)


class LTX2LatentUpsampler(_UpsamplerTrunk, nn.Module):
    """Upsamples raw (un-normalised) LTX-2 video latents in space (x2, x1.5 ...) or time (F -> 2F - 1).

    Attributes:
      config: the architecture (``LTX2LatentUpsamplerConfig``, diffusers' field names).
      dtype: compute dtype of the convolutions (GroupNorm and the blur always compute in float32).
      param_dtype: dtype of the params.
      precision: ``jax.lax.Precision`` of the convolutions.
    """

    config: LTX2LatentUpsamplerConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        return (jnp.zeros((1, 2, 2, 2, self.config.in_channels), self.dtype),), {}

    def output_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(F', H', W') of the output for latents of (F, H, W): see the module-level ``output_shape``."""
        return output_shape(self.config, frames, height, width)

    def _rational_upsample(self, x: jax.Array, b: int, f: int) -> jax.Array:
        """x [N, H, W, M] (dims 2) or [B, F, H, W, M] (dims 3) -> the same layout, H and W scaled by num/den."""
        num, den = rational_factors(self.config)
        per_frame = self.config.dims == 2
        frames = x if per_frame else x.reshape(b * f, *x.shape[2:])  # [N, H, W, M]
        frames = SpatialRationalResampler(self.config.mid_channels, num, den, self.dtype, self.param_dtype,
                                          self.precision, name="upsampler")(frames)  # [N, H', W', M]
        return frames if per_frame else frames.reshape(b, f, *frames.shape[1:])

    @nn.compact
    def __call__(self, latents: jax.Array) -> jax.Array:
        """latents [B, F, H, W, C_in] (raw VAE latents, any float dtype) -> [B, F', H', W', C_in] in ``dtype``,
        (F', H', W') = ``self.output_shape(F, H, W)``."""
        rational = rational_factors(self.config) is not None
        return self._trunk(latents, self._rational_upsample if rational else self._pixel_shuffle_upsample)

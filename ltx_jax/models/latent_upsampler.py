"""The LTX-Video latent upsampler (diffusers' ``LTXLatentUpsamplerModel``, the original's ``LatentUpsampler``),
channels-last.

Axis letters in shape comments:
    B batch, F frames, H height, W width, C channels (C_in latent channels, M ``mid_channels``); primes (F', H', W')
    are sizes after upsampling; N = B*F when frames are folded into the batch.

The network: ``initial_conv`` -> ``initial_norm`` -> SiLU -> ``res_blocks`` -> ``upsampler`` (a conv to k*M channels
and a pixel shuffle) -> ``post_upsample_res_blocks`` -> ``final_conv``, every conv 3x3(x3) with zero padding 1.
With ``dims=2`` every layer runs per frame (frames folded into the batch, GroupNorm statistics per frame); with
``dims=3`` the convs are 3-D and GroupNorm's statistics cover the whole [F, H, W] of each sample. Parameter names
are diffusers' (``res_blocks_0/conv1`` is ``res_blocks.0.conv1``; ``upsampler_0`` is ``upsampler.0``), so
conversion is mechanical. Norms are computed in float32, convolutions in the module's compute dtype. Params declare
the logical axes of ``vae_blocks``: widths "channels", kernel windows "replicated" (``ltx_jax.sharding``).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltx_jax.configs import GROUP_NORM_GROUPS, LatentUpsamplerConfig
from ltx_jax.models.vae_blocks import conv_initializers, depth_to_space

Dtype = Any


class GroupNorm(nn.Module):
    """``torch.nn.GroupNorm(32, C)`` on channels-last x [N, ..., C] (params ``scale`` / ``bias``, torch's ``weight``
    / ``bias``): channel c belongs to group c // (C / 32), as in torch; mean and biased variance over every
    non-batch axis of a group, in float32. Returns float32 (the caller activates, then casts)."""

    num_groups: int = GROUP_NORM_GROUPS
    eps: float = 1e-5
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("channels",)), (c,),
                           self.param_dtype)
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("channels",)), (c,),
                          self.param_dtype)
        groups = x.astype(jnp.float32).reshape(*x.shape[:-1], self.num_groups, c // self.num_groups)  # [N, ..., G, C/G]
        axes = (*range(1, groups.ndim - 2), groups.ndim - 1)  # all but the batch and group axes
        mean = jnp.mean(groups, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(groups - mean), axis=axes, keepdims=True)
        y = ((groups - mean) * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
        return y * scale.astype(jnp.float32) + bias.astype(jnp.float32)


class _ConvMixin:
    """A 3x3 (dims 2) or 3x3x3 (dims 3) convolution with zero padding 1 (torch's ``padding=1``), in ``dtype``."""

    def conv(self, features: int, dims: int, name: str):
        conv = nn.Conv(features, (3,) * dims, padding=((1, 1),) * dims, dtype=self.dtype, param_dtype=self.param_dtype,
                       precision=self.precision, name=name, **conv_initializers(dims))
        return lambda x: conv(x.astype(self.dtype))


class ResBlock(_ConvMixin, nn.Module):
    """conv1 -> norm1 -> SiLU -> conv2 -> norm2 -> SiLU(. + x): [N, (F,) H, W, C] -> the same shape, in ``dtype``."""

    channels: int
    dims: int = 3
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv(self.channels, self.dims, "conv1")(x)
        h = nn.silu(GroupNorm(param_dtype=self.param_dtype, name="norm1")(h))
        h = self.conv(self.channels, self.dims, "conv2")(h)
        h = GroupNorm(param_dtype=self.param_dtype, name="norm2")(h)
        return nn.silu(h + x.astype(jnp.float32)).astype(self.dtype)


class _UpsamplerTrunk(_ConvMixin):
    """What LTX-Video's and LTX-2's upsamplers share: ``initial_conv`` -> ``initial_norm`` -> SiLU -> ``res_blocks``
    -> an upsampling step -> ``post_upsample_res_blocks`` -> ``final_conv``. The host module has ``config`` (with
    ``in_channels``, ``mid_channels``, ``num_blocks_per_stage``, ``dims``, ``spatial_upsample``,
    ``temporal_upsample``), ``dtype``, ``param_dtype`` and ``precision``."""

    def _res_blocks(self, x: jax.Array, prefix: str) -> jax.Array:
        cfg = self.config
        for i in range(cfg.num_blocks_per_stage):
            x = ResBlock(cfg.mid_channels, cfg.dims, self.dtype, self.param_dtype, self.precision,
                         name=f"{prefix}_{i}")(x)
        return x

    def _check_latents(self, latents: jax.Array) -> None:
        cfg = self.config
        if latents.ndim != 5:
            raise ValueError(f"latents of shape {latents.shape} have rank {latents.ndim}; the upsampler takes "
                             f"[B, F, H, W, C] (rank 5, channels last).")
        if latents.shape[-1] != cfg.in_channels:
            raise ValueError(f"latents of shape {latents.shape} have {latents.shape[-1]} channels; the upsampler "
                             f"takes {cfg.in_channels}.")

    def _pixel_shuffle_upsample(self, x: jax.Array, b: int, f: int) -> jax.Array:
        """The conv + pixel shuffle step (param ``upsampler_0``, torch's ``upsampler.0``): x [N, H, W, M] (dims 2,
        N = B*F) or [B, F, H, W, M] (dims 3) -> the same layout with 2H, 2W when ``spatial_upsample`` and 2F - 1
        frames when ``temporal_upsample``."""
        cfg = self.config
        mid = cfg.mid_channels
        if cfg.temporal_upsample:  # dims 3 only: one 3-D conv, then drop the first frame
            stride = (2, 2, 2) if cfg.spatial_upsample else (2, 1, 1)
            x = self.conv(mid * stride[0] * stride[1] * stride[2], 3, "upsampler_0")(x)  # [B, F, H, W, M*st*sh*sw]
            return depth_to_space(x, stride)[:, 1:]  # [B, 2F - 1, H', W', M]
        per_frame = cfg.dims == 2  # otherwise a 2-D conv per frame of the 3-D activations
        frames = x if per_frame else x.reshape(b * f, *x.shape[2:])  # [N, H, W, M]
        frames = self.conv(4 * mid, 2, "upsampler_0")(frames)  # [N, H, W, 4M]
        frames = depth_to_space(frames[:, None], (1, 2, 2))[:, 0]  # [N, 2H, 2W, M]
        return frames if per_frame else frames.reshape(b, f, *frames.shape[1:])

    def _trunk(self, latents: jax.Array, upsample: Callable[[jax.Array, int, int], jax.Array]) -> jax.Array:
        """latents [B, F, H, W, C_in] -> [B, F', H', W', C_in] in ``dtype``; ``upsample(x, B, F)`` is the middle step
        on [N, H, W, M] (dims 2, frames folded into the batch) or [B, F, H, W, M] (dims 3)."""
        self._check_latents(latents)
        cfg = self.config
        b, f, h, w, c = latents.shape
        per_frame = cfg.dims == 2
        x = latents.reshape(b * f, h, w, c) if per_frame else latents  # [N, H, W, C] or [B, F, H, W, C]

        x = self.conv(cfg.mid_channels, cfg.dims, "initial_conv")(x)
        x = nn.silu(GroupNorm(param_dtype=self.param_dtype, name="initial_norm")(x)).astype(self.dtype)
        x = self._res_blocks(x, "res_blocks")
        x = upsample(x, b, f)
        x = self._res_blocks(x, "post_upsample_res_blocks")
        x = self.conv(cfg.in_channels, cfg.dims, "final_conv")(x)
        if per_frame:
            x = x.reshape(b, f, *x.shape[1:])  # [B, F, H', W', C_in]
        return x


class LatentUpsampler(_UpsamplerTrunk, nn.Module):
    """Upsamples raw (un-normalised) VAE latents by 2 in height and width and/or to 2F - 1 frames.

    Attributes:
      config: the architecture (``LatentUpsamplerConfig``).
      dtype: compute dtype of the convolutions (GroupNorm always computes in float32).
      param_dtype: dtype of the params.
      precision: ``jax.lax.Precision`` of the convolutions.
    """

    config: LatentUpsamplerConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        return (jnp.zeros((1, 2, 2, 2, self.config.in_channels), self.dtype),), {}

    @nn.compact
    def __call__(self, latents: jax.Array) -> jax.Array:
        """latents [B, F, H, W, C_in] (raw VAE latents, any float dtype) -> [B, F', H', W', C_in] in ``dtype``, with
        H' = 2H and W' = 2W when ``spatial_upsample``, F' = 2F - 1 when ``temporal_upsample`` (F' = F otherwise)."""
        return self._trunk(latents, self._pixel_shuffle_upsample)

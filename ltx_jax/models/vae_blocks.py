"""Building blocks of the LTX-Video causal video VAE (diffusers' ``autoencoder_kl_ltx.py``), channels-last.

Axis letters in shape comments:
    B batch, F frames, H height, W width, C channels; primes (F', H', W') are sizes after a resampling.

Every tensor is [B, F, H, W, C]. Parameter names follow diffusers (``conv1``, ``norm3``, ``conv_shortcut``,
``per_channel_scale1``, ``scale_shift_table``, ``time_embedder``...) so that conversion is a table. Norms are
computed in float32 and convolutions in the module's compute dtype. Every param's widths have the logical axis
"channels" and its kernel windows "replicated" (``ltx_jax.sharding``: kept whole, each device decodes whole tiles).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltx_jax.models import layers
from ltx_jax.models.layers import LayerNorm, pixel_norm

Dtype = Any
Stride = tuple[int, int, int]


# ------------------------------------------------------------------------------------------- layout helpers


def space_to_depth(x: jax.Array, stride: Stride) -> jax.Array:
    """[B, F, H, W, C] -> [B, F/st, H/sh, W/sw, C*st*sh*sw], channel index ((c*st + t)*sh + h)*sw + w
    (diffusers' order)."""
    b, f, h, w, c = x.shape
    st, sh, sw = stride
    x = x.reshape(b, f // st, st, h // sh, sh, w // sw, sw, c)
    x = x.transpose(0, 1, 3, 5, 7, 2, 4, 6)  # [B, F', H', W', C, st, sh, sw]
    return x.reshape(b, f // st, h // sh, w // sw, c * st * sh * sw)


def depth_to_space(x: jax.Array, stride: Stride) -> jax.Array:
    """Inverse of ``space_to_depth``: [B, F, H, W, c*st*sh*sw] -> [B, F*st, H*sh, W*sw, c]."""
    b, f, h, w, k = x.shape
    st, sh, sw = stride
    c = k // (st * sh * sw)
    x = x.reshape(b, f, h, w, c, st, sh, sw)
    x = x.transpose(0, 1, 5, 2, 6, 3, 7, 4)  # [B, F, st, H, sh, W, sw, c]
    return x.reshape(b, f * st, h * sh, w * sw, c)


def patchify(video: jax.Array, patch_size: int, patch_size_t: int = 1) -> jax.Array:
    """[B, F, H, W, C] -> [B, F/pt, H/p, W/p, C*pt*p*p], channel index ((c*pt + t)*p + pw)*p + ph (diffusers' order).

    Note the width offset is the slower of the two spatial patch offsets, as in diffusers' encoder permute.
    """
    b, f, h, w, c = video.shape
    p, pt = patch_size, patch_size_t
    if h % p or w % p or f % pt:
        raise ValueError(f"video of shape {video.shape} does not divide into {pt}x{p}x{p} patches.")
    x = video.reshape(b, f // pt, pt, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 5, 7, 2, 6, 4)  # [B, F', H', W', C, pt, pw, ph]
    return x.reshape(b, f // pt, h // p, w // p, c * pt * p * p)


def unpatchify(x: jax.Array, patch_size: int, patch_size_t: int = 1) -> jax.Array:
    """Inverse of ``patchify``: [B, F, H, W, c*pt*p*p] -> [B, F*pt, H*p, W*p, c]."""
    b, f, h, w, k = x.shape
    p, pt = patch_size, patch_size_t
    c = k // (pt * p * p)
    x = x.reshape(b, f, h, w, c, pt, p, p)  # [..., c, pt, pw, ph]
    x = x.transpose(0, 1, 5, 2, 7, 3, 6, 4)  # [B, F, pt, H, ph, W, pw, c]
    return x.reshape(b, f * pt, h * p, w * p, c)


def injection_noise(key: jax.Array, index: int, height: int, width: int) -> jax.Array:
    """The ``index``-th spatial noise map of a decode: [H, W] float32 standard normal.

    diffusers draws one ``torch.randn(H, W)`` per noise-injecting resnet conv, shared by every batch item, frame and
    channel; we draw the same shape from ``fold_in(key, index)`` where ``index`` counts the draws in call order.
    """
    return jax.random.normal(jax.random.fold_in(key, index), (height, width), jnp.float32)


# --------------------------------------------------------------------------------------------------- layers

#: torch ``padding_mode`` -> ``jnp.pad`` mode, for the padding modes other than "zeros".
PADDING_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}

#: The logical axes of the time embedders' two kernels ([256, 4C], [4C, 4C]).
TIME_EMBEDDER_AXES = (("replicated", "channels"), ("channels", "channels"))


def conv_initializers(window_dims: int) -> dict:
    """``nn.Conv``'s default initializers with logical axes: kernel [*window, C_in, C_out], bias [C_out]."""
    kernel_axes = ("replicated",) * window_dims + ("channels", "channels")
    return dict(kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), kernel_axes),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("channels",)))


class CausalConv3d(nn.Module):
    """diffusers' ``LTXVideoCausalConv3d``: frames padded by repeating the first frame (causal) or the first and
    last frames (non-causal), height and width padded by ``spatial_padding_mode`` (torch's ``padding_mode``:
    "zeros", "reflect", "replicate" or "circular"; LTX-2's ``LTX2VideoCausalConv3d``), then a 3D convolution
    (param ``conv``).

    Input [B, F, H, W, C_in]; output [B, F', H', W', features] in ``dtype``.
    """

    features: int
    kernel_size: tuple[int, int, int] = (3, 3, 3)
    stride: Stride = (1, 1, 1)
    is_causal: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    spatial_padding_mode: str = "zeros"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kt, kh, kw = self.kernel_size
        if kt > 1:
            if self.is_causal:
                front, back = kt - 1, 0
            else:
                front = back = (kt - 1) // 2
            parts = [jnp.repeat(x[:, :1], front, axis=1), x]
            if back:
                parts.append(jnp.repeat(x[:, -1:], back, axis=1))
            x = jnp.concatenate(parts, axis=1)
        spatial = ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2))
        if self.spatial_padding_mode != "zeros" and (kh > 1 or kw > 1):
            mode = PADDING_MODES.get(self.spatial_padding_mode)
            if mode is None:
                raise ValueError(f"spatial_padding_mode={self.spatial_padding_mode!r}; use 'zeros' or one of "
                                 f"{sorted(PADDING_MODES)}.")
            x = jnp.pad(x, ((0, 0), *spatial, (0, 0)), mode=mode)
            spatial = ((0, 0), (0, 0), (0, 0))
        return nn.Conv(
            self.features,
            self.kernel_size,
            strides=self.stride,
            padding=spatial,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
            name="conv",
            **conv_initializers(3),
        )(x.astype(self.dtype))


class ResnetBlock3d(nn.Module):
    """diffusers' ``LTXVideoResnetBlock3d``.

    pixel norm -> (timestep shift/scale) -> SiLU -> conv1 -> (noise) -> pixel norm -> (shift/scale) -> SiLU -> conv2
    -> (noise), plus the input (through LayerNorm ``norm3`` and a 1x1x1 ``conv_shortcut`` when the width changes).

    Attributes:
      noise_index: index of this block's first noise draw (see ``injection_noise``); the second is ``noise_index + 1``.
    """

    in_channels: int
    out_channels: int
    eps: float = 1e-6
    is_causal: bool = True
    inject_noise: bool = False
    timestep_conditioning: bool = False
    noise_index: int = 0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    spatial_padding_mode: str = "zeros"

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None, noise_key: jax.Array | None = None) -> jax.Array:
        """x [B, F, H, W, C_in]; temb [B, 4*C_in] (timestep-conditioned blocks); returns [B, F, H, W, C_out]."""
        conv = functools.partial(
            CausalConv3d, is_causal=self.is_causal, dtype=self.dtype, param_dtype=self.param_dtype,
            precision=self.precision, spatial_padding_mode=self.spatial_padding_mode
        )
        c_in, c_out = self.in_channels, self.out_channels
        batch = x.shape[0]

        modulation = None
        if self.timestep_conditioning:
            if temb is None:
                raise ValueError("this resnet block is timestep-conditioned; pass the timestep embedding.")
            table = self.param("scale_shift_table", nn.with_logical_partitioning(
                nn.initializers.normal(c_in**-0.5), ("replicated", "channels")), (4, c_in), self.param_dtype)
            ada = temb.astype(jnp.float32).reshape(batch, 4, c_in) + table.astype(jnp.float32)[None]  # [B, 4, C]
            modulation = [ada[:, i][:, None, None, None, :] for i in range(4)]  # shift1, scale1, shift2, scale2
        scales = None
        if self.inject_noise:
            init = nn.with_logical_partitioning(nn.initializers.zeros, ("channels",))
            scales = [self.param(f"per_channel_scale{i}", init, (c_in,), self.param_dtype) for i in (1, 2)]

        h = pixel_norm(x)
        if modulation is not None:
            h = h * (1 + modulation[1]) + modulation[0]
        h = conv(c_out, name="conv1")(nn.silu(h).astype(self.dtype))
        h = self._add_noise(h, scales, noise_key, 0)

        h = pixel_norm(h)
        if modulation is not None:
            h = h * (1 + modulation[3]) + modulation[2]
        h = conv(c_out, name="conv2")(nn.silu(h).astype(self.dtype))
        h = self._add_noise(h, scales, noise_key, 1)

        if c_in != c_out:
            x = LayerNorm(self.eps, self.param_dtype, axis="channels", name="norm3")(x)
            x = conv(c_out, kernel_size=(1, 1, 1), name="conv_shortcut")(x)
        return h + x.astype(h.dtype)

    def _add_noise(self, h, scales, noise_key, which):
        if scales is None or noise_key is None:
            return h
        noise = injection_noise(noise_key, self.noise_index + which, h.shape[2], h.shape[3])  # [H, W]
        return h + (noise[None, None, :, :, None] * scales[which].astype(jnp.float32)).astype(h.dtype)


class SpaceToDepthDownsampler(nn.Module):
    """diffusers' ``LTXVideoDownsampler3d``: conv to C_out/(st*sh*sw) channels, space-to-depth, plus a residual that
    averages groups of the space-to-depth input. The first st-1 frames are repeated in front (causal)."""

    in_channels: int
    out_channels: int
    stride: Stride
    is_causal: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    spatial_padding_mode: str = "zeros"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, F, H, W, C_in] -> [B, (F+st-1)/st, H/sh, W/sw, C_out]."""
        st, sh, sw = self.stride
        volume = st * sh * sw
        group = self.in_channels * volume // self.out_channels
        if st > 1:
            x = jnp.concatenate([x[:, : st - 1], x], axis=1)
        residual = space_to_depth(x, self.stride)  # [B, F', H', W', C_in*volume]
        residual = residual.reshape(*residual.shape[:-1], self.out_channels, group).mean(axis=-1)
        h = CausalConv3d(
            self.out_channels // volume,
            is_causal=self.is_causal,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
            spatial_padding_mode=self.spatial_padding_mode,
            name="conv",
        )(x)
        return space_to_depth(h, self.stride) + residual.astype(h.dtype)


class DepthToSpaceUpsampler(nn.Module):
    """diffusers' ``LTXVideoUpsampler3d``: conv to C*st*sh*sw/upscale_factor channels, depth-to-space, drop the first
    st-1 frames; with ``residual`` the depth-to-space of the input, tiled over channels, is added."""

    in_channels: int
    stride: Stride = (2, 2, 2)
    is_causal: bool = True
    residual: bool = False
    upscale_factor: int = 1
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    spatial_padding_mode: str = "zeros"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, F, H, W, C] -> [B, F*st - (st-1), H*sh, W*sw, C/upscale_factor]."""
        st = self.stride[0]
        volume = self.stride[0] * self.stride[1] * self.stride[2]
        h = CausalConv3d(
            self.in_channels * volume // self.upscale_factor,
            is_causal=self.is_causal,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
            spatial_padding_mode=self.spatial_padding_mode,
            name="conv",
        )(x)
        h = depth_to_space(h, self.stride)[:, st - 1 :]
        if self.residual:
            r = depth_to_space(x.astype(h.dtype), self.stride)  # [B, F*st, H*sh, W*sw, C/volume]
            r = jnp.tile(r, (1, 1, 1, 1, volume // self.upscale_factor))[:, st - 1 :]
            h = h + r
        return h


# --------------------------------------------------------------------------------------------------- blocks


class _BlockBase(nn.Module):
    """Fields shared by the VAE blocks."""

    eps: float = 1e-6
    is_causal: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    spatial_padding_mode: str = "zeros"

    def _kw(self):
        return dict(is_causal=self.is_causal, dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision,
                    spatial_padding_mode=self.spatial_padding_mode)

    def _resnet(self, c_in, c_out, name, **kw):
        return ResnetBlock3d(c_in, c_out, self.eps, name=name, **self._kw(), **kw)


class DownBlock3D(_BlockBase):
    """diffusers' ``LTXVideoDownBlock3D`` (0.9.0 / 0.9.1): resnets, an optional stride-2 conv, an optional
    channel-changing resnet ``conv_out``; and ``LTXVideo095DownBlock3D`` (0.9.5+, ``v095=True``): resnets and an
    optional downsampler of kind ``downsample_type`` that also changes the width."""

    in_channels: int = 0
    out_channels: int = 0
    num_layers: int = 1
    spatio_temporal_scale: bool = True
    v095: bool = False
    downsample_type: str = "conv"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c_in, c_out = self.in_channels, self.out_channels
        for k in range(self.num_layers):
            x = self._resnet(c_in, c_in, f"resnets_{k}")(x)
        if self.spatio_temporal_scale:
            if not self.v095 or self.downsample_type == "conv":
                x = CausalConv3d(c_in, stride=(2, 2, 2), name="downsamplers_0", **self._kw())(x)
            else:
                stride = {"spatial": (1, 2, 2), "temporal": (2, 1, 1),
                          "spatiotemporal": (2, 2, 2)}[self.downsample_type]
                x = SpaceToDepthDownsampler(c_in, c_out, stride, name="downsamplers_0", **self._kw())(x)
        if not self.v095 and c_in != c_out:
            x = self._resnet(c_in, c_out, "conv_out")(x)
        return x


class MidBlock3d(_BlockBase):
    """diffusers' ``LTXVideoMidBlock3d``: an optional time embedder (4C) and ``num_layers`` resnets."""

    channels: int = 0
    num_layers: int = 1
    inject_noise: bool = False
    timestep_conditioning: bool = False
    noise_index: int = 0

    @nn.compact
    def __call__(self, x, timestep=None, noise_key=None):
        """x [B, F, H, W, C]; timestep [B] float32 (scaled) for timestep-conditioned blocks."""
        temb = None
        if self.timestep_conditioning:
            temb = layers.TimestepEmbedding(4 * self.channels, TIME_EMBEDDER_AXES, self.dtype, self.param_dtype,
                                            self.precision, name="time_embedder")(timestep)
        for k in range(self.num_layers):
            x = self._resnet(
                self.channels,
                self.channels,
                f"resnets_{k}",
                inject_noise=self.inject_noise,
                timestep_conditioning=self.timestep_conditioning,
                noise_index=self.noise_index + 2 * k,
            )(x, temb, noise_key)
        return x

    @property
    def noise_draws(self) -> int:
        return 2 * self.num_layers if self.inject_noise else 0


class UpBlock3d(_BlockBase):
    """diffusers' ``LTXVideoUpBlock3d``: optional ``conv_in`` resnet (width change), optional time embedder,
    optional depth-to-space upsampler (``upsample_stride``: (2, 2, 2); LTX-2's ``upsample_type`` "temporal" is
    (2, 1, 1), "spatial" (1, 2, 2)), then ``num_layers`` resnets."""

    in_channels: int = 0
    out_channels: int = 0
    num_layers: int = 1
    spatio_temporal_scale: bool = True
    inject_noise: bool = False
    timestep_conditioning: bool = False
    upsample_residual: bool = False
    upscale_factor: int = 1
    noise_index: int = 0
    upsample_stride: Stride = (2, 2, 2)

    @nn.compact
    def __call__(self, x, timestep=None, noise_key=None):
        c_in, c_out = self.in_channels, self.out_channels
        index = self.noise_index
        if c_in != c_out:
            # Never timestep-conditioned (VAEConfig refuses that combination, which fails in diffusers too).
            x = self._resnet(c_in, c_out, "conv_in", inject_noise=self.inject_noise,
                             noise_index=index)(x, None, noise_key)
            index += 2 if self.inject_noise else 0
        temb = None
        if self.timestep_conditioning:
            temb = layers.TimestepEmbedding(4 * c_in, TIME_EMBEDDER_AXES, self.dtype, self.param_dtype, self.precision,
                                            name="time_embedder")(timestep)
        if self.spatio_temporal_scale:
            x = DepthToSpaceUpsampler(
                c_out * self.upscale_factor,
                stride=tuple(self.upsample_stride),
                residual=self.upsample_residual,
                upscale_factor=self.upscale_factor,
                name="upsamplers_0",
                **self._kw(),
            )(x)
        for k in range(self.num_layers):
            x = self._resnet(
                c_out,
                c_out,
                f"resnets_{k}",
                inject_noise=self.inject_noise,
                timestep_conditioning=self.timestep_conditioning,
                noise_index=index + 2 * k,
            )(x, temb, noise_key)
        return x

    @property
    def noise_draws(self) -> int:
        if not self.inject_noise:
            return 0
        return 2 * (self.num_layers + (1 if self.in_channels != self.out_channels else 0))

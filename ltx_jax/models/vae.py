"""LTX-Video causal video VAE (diffusers' ``AutoencoderKLLTXVideo``) as a Flax linen module, channels-last.

Axis letters in shape comments:
    B batch, F frames, H height, W width, C channels, L latent channels, K tiles.

    >>> vae = AutoencoderKLLTXVideo(VAE_PRESETS["ltx-video-0.9.5"])
    >>> video = vae.apply({"params": p}, latents, timestep, method="decode")            # [B, 8(F-1)+1, 32H, 32W, 3]
    >>> video = vae.apply({"params": p}, latents, timestep, method="decode", tiling=VAETiling())
    >>> mean, logvar = vae.apply({"params": p}, video, method="encode")

Every released variant is one ``VAEConfig``: 0.9.0 (strided-conv encoder, plain decoder), 0.9.1 (timestep-conditioned
decoder with noise injection and residual depth-to-space upsamplers), 0.9.5+ (space-to-depth encoder). Parameter
names follow diffusers so that conversion is a table (``weight_conversion/vae.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltx_jax.configs import VAEConfig
from ltx_jax.models import layers
from ltx_jax.models import vae_blocks as blocks
from ltx_jax.models.layers import pixel_norm
from ltx_jax.models.vae_blocks import TIME_EMBEDDER_AXES, CausalConv3d, DownBlock3D, MidBlock3d, UpBlock3d
from ltx_jax.models.vae_tiling import VAETiling, tiled_decode

Dtype = Any


# ------------------------------------------------------------------------------------------ block structure


@dataclasses.dataclass(frozen=True)
class DownSpec:
    """One encoder down block as diffusers builds it from the config."""

    index: int
    in_channels: int
    out_channels: int
    num_layers: int
    scale: bool
    v095: bool
    downsample_type: str

    @property
    def has_conv_out(self) -> bool:
        return not self.v095 and self.in_channels != self.out_channels


@dataclasses.dataclass(frozen=True)
class UpSpec:
    """One decoder up block as diffusers builds it from the config (index 0 is nearest the latents)."""

    index: int
    in_channels: int
    out_channels: int
    num_layers: int
    scale: bool
    inject_noise: bool
    residual: bool
    factor: int

    @property
    def has_conv_in(self) -> bool:
        return self.in_channels != self.out_channels


def encoder_specs(cfg: VAEConfig) -> tuple[list[DownSpec], int]:
    """The encoder's down blocks and the mid block width, following diffusers' ``LTXVideoEncoder3d.__init__``."""
    v095 = cfg.is_095_encoder
    count = len(cfg.block_out_channels) - (1 if v095 else 0)
    width = cfg.block_out_channels[0]
    specs = []
    for i in range(count):
        c_in = width
        if v095:
            width = cfg.block_out_channels[i + 1]
        else:
            width = cfg.block_out_channels[i + 1] if i + 1 < count else cfg.block_out_channels[i]
        specs.append(
            DownSpec(i, c_in, width, cfg.layers_per_block[i], cfg.spatio_temporal_scaling[i],
                     cfg.down_block_types[i] == "LTXVideo095DownBlock3D", cfg.downsample_type[i])
        )
    return specs, width


def decoder_specs(cfg: VAEConfig) -> tuple[int, list[UpSpec], int]:
    """(mid block width, up blocks, output width), following diffusers' ``LTXVideoDecoder3d.__init__``."""
    # diffusers reverses each whole tuple, then indexes it from the latent side.
    n = len(cfg.decoder_block_out_channels)
    widths = tuple(reversed(cfg.decoder_block_out_channels))
    scaling = tuple(reversed(cfg.decoder_spatio_temporal_scaling))
    layers_ = tuple(reversed(cfg.decoder_layers_per_block))
    noise = tuple(reversed(cfg.decoder_inject_noise))
    residual = tuple(reversed(cfg.upsample_residual))
    factor = tuple(reversed(cfg.upsample_factor))
    width = widths[0]
    specs = []
    for i in range(n):
        c_in = width // factor[i]
        width = widths[i] // factor[i]
        specs.append(UpSpec(i, c_in, width, layers_[i + 1], scaling[i], noise[i + 1], residual[i], factor[i]))
    return widths[0], specs, width


# --------------------------------------------------------------------------------------------- encoder / decoder


class Encoder3d(nn.Module):
    """diffusers' ``LTXVideoEncoder3d``: video [B, F, H, W, C_in] -> [B, F', H', W', L+1] (means + one log-variance).

    ``spatial_padding_mode``: every convolution's height / width padding (LTX-2's encoders; "zeros" for LTX-Video).
    """

    config: VAEConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    spatial_padding_mode: str = "zeros"

    @nn.compact
    def __call__(self, video: jax.Array) -> jax.Array:
        cfg = self.config
        kw = dict(is_causal=cfg.encoder_causal, dtype=self.dtype, param_dtype=self.param_dtype,
                  precision=self.precision, spatial_padding_mode=self.spatial_padding_mode)
        x = blocks.patchify(video, cfg.patch_size, cfg.patch_size_t)  # [B, F, H/p, W/p, C_in*p*p]
        x = CausalConv3d(cfg.block_out_channels[0], name="conv_in", **kw)(x)
        specs, width = encoder_specs(cfg)
        for s in specs:
            x = DownBlock3D(
                cfg.resnet_norm_eps, in_channels=s.in_channels, out_channels=s.out_channels, num_layers=s.num_layers,
                spatio_temporal_scale=s.scale, v095=s.v095, downsample_type=s.downsample_type,
                name=f"down_blocks_{s.index}", **kw,
            )(x)
        x = MidBlock3d(cfg.resnet_norm_eps, channels=width, num_layers=cfg.layers_per_block[-1], name="mid_block",
                       **kw)(x)
        x = nn.silu(pixel_norm(x)).astype(self.dtype)
        return CausalConv3d(cfg.latent_channels + 1, name="conv_out", **kw)(x)


class Decoder3d(nn.Module):
    """diffusers' ``LTXVideoDecoder3d``: latents [B, F, H, W, L] -> video [B, 8(F-1)+1, 32H, 32W, C_out]
    (released ratios).

    ``timestep`` is [B] float32 on the pipelines' 0-1 scale (multiplied here by ``timestep_scale_multiplier``);
    ``noise_key`` None injects no noise. LTX-2's decoders add ``spatial_padding_mode`` (every convolution's height /
    width padding) and ``upsample_strides`` (one (t, h, w) per up block, latent side first; None: all (2, 2, 2)).
    """

    config: VAEConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    spatial_padding_mode: str = "zeros"
    upsample_strides: tuple[tuple[int, int, int], ...] | None = None

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        return (jnp.zeros((1, 1, 1, 1, self.config.latent_channels), self.dtype), jnp.zeros((1,), jnp.float32)), {}

    @nn.compact
    def __call__(self, z: jax.Array, timestep: jax.Array | None = None,
                 noise_key: jax.Array | None = None) -> jax.Array:
        cfg = self.config
        kw = dict(is_causal=cfg.decoder_causal, dtype=self.dtype, param_dtype=self.param_dtype,
                  precision=self.precision, spatial_padding_mode=self.spatial_padding_mode)
        mid_width, specs, width = decoder_specs(cfg)
        x = CausalConv3d(mid_width, name="conv_in", **kw)(z)

        t = None
        if cfg.timestep_conditioning:
            multiplier = self.param("timestep_scale_multiplier", nn.with_logical_partitioning(
                nn.initializers.constant(1000.0), ()), (), self.param_dtype)
            t = timestep.astype(jnp.float32) * multiplier.astype(jnp.float32)  # [B]

        mid = MidBlock3d(
            cfg.resnet_norm_eps, channels=mid_width, num_layers=cfg.decoder_layers_per_block[-1],
            inject_noise=cfg.decoder_inject_noise[-1],
            timestep_conditioning=cfg.timestep_conditioning, noise_index=0, name="mid_block", **kw,
        )
        x = mid(x, t, noise_key)
        index = mid.noise_draws
        for s in specs:
            up = UpBlock3d(
                cfg.resnet_norm_eps, in_channels=s.in_channels, out_channels=s.out_channels, num_layers=s.num_layers,
                spatio_temporal_scale=s.scale, inject_noise=s.inject_noise,
                timestep_conditioning=cfg.timestep_conditioning,
                upsample_residual=s.residual, upscale_factor=s.factor, noise_index=index, name=f"up_blocks_{s.index}",
                upsample_stride=(2, 2, 2) if self.upsample_strides is None else tuple(self.upsample_strides[s.index]),
                **kw,
            )
            x = up(x, t, noise_key)
            index += up.noise_draws

        h = pixel_norm(x)  # float32
        if cfg.timestep_conditioning:
            emb = layers.TimestepEmbedding(2 * width, TIME_EMBEDDER_AXES, self.dtype, self.param_dtype, self.precision,
                                           name="time_embedder")(t)
            table = self.param("scale_shift_table", nn.with_logical_partitioning(
                nn.initializers.normal(width**-0.5), ("replicated", "channels")), (2, width), self.param_dtype)
            ada = emb.astype(jnp.float32).reshape(-1, 2, width) + table.astype(jnp.float32)[None]  # [B, 2, C]
            shift, scale = ada[:, 0, None, None, None, :], ada[:, 1, None, None, None, :]
            h = h * (1 + scale) + shift
        h = nn.silu(h).astype(self.dtype)
        out_channels = cfg.out_channels * cfg.patch_size**2 * cfg.patch_size_t
        h = CausalConv3d(out_channels, name="conv_out", **kw)(h)
        return blocks.unpatchify(h, cfg.patch_size, cfg.patch_size_t)


# ------------------------------------------------------------------------------------------------ the model


def normalize_latents(latents: jax.Array, mean: jax.Array, std: jax.Array, scaling_factor: float = 1.0) -> jax.Array:
    """Raw VAE latents [..., L] -> the transformer's latent space, as diffusers' LTX pipelines do."""
    return (latents - mean) * scaling_factor / std


def denormalize_latents(latents: jax.Array, mean: jax.Array, std: jax.Array, scaling_factor: float = 1.0) -> jax.Array:
    """Inverse of ``normalize_latents`` (what the pipelines apply before ``decode``)."""
    return latents * std / scaling_factor + mean


def posterior(vae: nn.Module, video: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A bound VAE's ``encode``: (mean, logvar) of ``video`` [B, F, H, W, in_channels], logvar one channel broadcast
    over the latents and clamped to [-30, 20] (diffusers' ``DiagonalGaussianDistribution``). LTX-Video's and LTX-2's
    VAEs share it."""
    cfg = vae.config
    if video.ndim != 5 or video.shape[-1] != cfg.in_channels:
        raise ValueError(f"video has shape {video.shape}; expected [B, F, H, W, {cfg.in_channels}] (channels-last).")
    h = vae.encoder(video.astype(vae.dtype))  # [B, F', H', W', L+1]
    latent = cfg.latent_channels
    mean = h[..., :latent]
    logvar = jnp.clip(jnp.broadcast_to(h[..., latent:], mean.shape), -30.0, 20.0)
    return mean, logvar


def decode_latents(vae: nn.Module, latents: jax.Array, timestep, key, tiling, spread, spatial_ratio: int,
                   temporal_ratio: int) -> jax.Array:
    """A bound VAE's ``decode`` (its docstring): the checks, the decode timestep, whole or tiled (``tiled_decode``
    over an unbound copy of its decoder). LTX-Video's and LTX-2's VAEs share it."""
    cfg = vae.config
    if latents.ndim != 5 or latents.shape[-1] != cfg.latent_channels:
        raise ValueError(f"latents have shape {latents.shape}; expected [B, F, H, W, {cfg.latent_channels}].")
    batch = latents.shape[0]
    latents = latents.astype(vae.dtype)
    t = None
    if cfg.timestep_conditioning:
        if timestep is None:
            raise ValueError("This VAE's decoder is timestep-conditioned: pass a timestep (the pipelines' "
                             "decode_timestep, e.g. 0.05).")
        t = jnp.broadcast_to(jnp.asarray(timestep, jnp.float32).reshape(-1), (batch,))
    tiling = VAETiling.resolve(tiling)
    if tiling is None or vae.is_initializing():
        return vae.decoder(latents, t, key)

    tiling.check(spatial_ratio, temporal_ratio)
    decoder = vae.decoder.clone(parent=None)  # unbound, pure
    variables = {"params": vae.decoder.variables["params"]}

    def decode_whole(z, k):
        return decoder.apply(variables, z, t, k)

    return tiled_decode(decode_whole, latents, key, tiling, spatial_ratio, temporal_ratio, spread)


class AutoencoderKLLTXVideo(nn.Module):
    """diffusers' ``AutoencoderKLLTXVideo`` with channels-last tensors.

    Attributes:
      config: the architecture (``VAE_PRESETS`` holds the released ones).
      dtype: compute dtype (bf16 on GPU); norms and timestep modulation stay float32.
      param_dtype: dtype of the params created by ``init``.
      precision: convolution / matmul precision (None = backend default).
    """

    config: VAEConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    def setup(self):
        latent = self.config.latent_channels
        self.encoder = Encoder3d(self.config, self.dtype, self.param_dtype, self.precision)
        self.decoder = Decoder3d(self.config, self.dtype, self.param_dtype, self.precision)
        self.latents_mean = self.param("latents_mean",
                                       nn.with_logical_partitioning(nn.initializers.zeros, ("channels",)),
                                       (latent,), self.param_dtype)
        self.latents_std = self.param("latents_std", nn.with_logical_partitioning(nn.initializers.ones, ("channels",)),
                                      (latent,), self.param_dtype)

    def __call__(self, video: jax.Array, timestep: jax.Array | None = None, *,
                 key: jax.Array | None = None) -> jax.Array:
        """Encode, take the posterior mode, decode (diffusers' ``forward`` with ``sample_posterior=False``)."""
        mean, _ = self.encode(video)
        if timestep is None and self.config.timestep_conditioning:
            timestep = jnp.zeros((video.shape[0],), jnp.float32)
        return self.decode(mean, timestep, key=key)

    def encode(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Posterior of a video.

        Args:
          video: [B, F, H, W, in_channels] in [-1, 1]; F = r(F'-1)+1, H and W multiples of the spatial ratio.
        Returns:
          (mean, logvar), each [B, F', H', W', L] in ``dtype``; logvar is one channel broadcast over L and clamped to
          [-30, 20] as diffusers' ``DiagonalGaussianDistribution`` does.
        """
        return posterior(self, video)

    def decode(
        self,
        latents: jax.Array,
        timestep: jax.Array | float | None = None,
        *,
        key: jax.Array | None = None,
        tiling: VAETiling | Mapping[str, Any] | bool | None = None,
        spread: Any = None,
    ) -> jax.Array:
        """Decodes raw (not normalized) latents, as diffusers' ``vae.decode(z, temb)``.

        Args:
          latents: [B, F, H, W, L].
          timestep: scalar or [B] on the 0-1 scale (the pipelines' ``decode_timestep``); required by
            timestep-conditioned decoders (0.9.1+), ignored by the others.
          key: PRNG key for the decoder's noise injection (0.9.1); None injects no noise (deterministic).
          tiling: None decodes whole; a ``VAETiling`` (or a dict of its fields, or True for the defaults) decodes
            in blended tiles, as diffusers' ``enable_tiling`` (+ ``use_framewise_decoding``) does.
          spread: an ``ltx_jax.sharding.ShardingPlan``: the spatial tiles are dealt over its devices.
        Returns:
          [B, r_t(F-1)+1, r_s H, r_s W, out_channels] in ``dtype`` (r_t = 8, r_s = 32 for released VAEs).
        """
        return decode_latents(self, latents, timestep, key, tiling, spread, self.config.spatial_ratio,
                              self.config.temporal_ratio)

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        size = self.config.spatial_ratio
        return (jnp.zeros((1, 1, size, size, self.config.in_channels), self.dtype), jnp.zeros((1,), jnp.float32)), {}

    def normalize_latents(self, latents: jax.Array) -> jax.Array:
        """[..., L] raw latents -> normalized with ``latents_mean`` / ``latents_std`` and ``scaling_factor``."""
        return normalize_latents(latents, self.latents_mean, self.latents_std, self.config.scaling_factor)

    def denormalize_latents(self, latents: jax.Array) -> jax.Array:
        return denormalize_latents(latents, self.latents_mean, self.latents_std, self.config.scaling_factor)

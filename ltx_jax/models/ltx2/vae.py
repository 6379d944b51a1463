"""LTX-2 causal video VAE (diffusers' ``AutoencoderKLLTX2Video``) as a Flax linen module, channels-last.

Axis letters in shape comments:
    B batch, F frames, H height, W width, C channels, L latent channels.

    >>> vae = AutoencoderKLLTX2Video(LTX2VideoVAEConfig())
    >>> video = vae.apply({"params": p}, latents, method="decode")                       # [B, 8(F-1)+1, 32H, 32W, 3]
    >>> video = vae.apply({"params": p}, latents, method="decode", tiling=VAETiling())
    >>> mean, logvar = vae.apply({"params": p}, video, method="encode")

Every block of LTX-2's VAE computes what LTX-Video 0.9.5's does (``ltx_jax.models.vae`` / ``vae_blocks``), with
three generalisations those blocks take as fields: the spatial padding mode of the convolutions (LTX-2's decoder
reflects), the stride of each up block's depth-to-space upsampler (LTX-2.3's "temporal" / "spatial" up blocks) and
an encoder whose ``conv_in`` is ``latent_channels`` wide. So the architecture is an LTX-Video ``VAEConfig``
(``ltx_video_config``) plus those fields, and the params have the same names as our LTX-Video VAE's (diffusers'
names, but for ``conv_shortcut``, a plain 1x1x1 conv in LTX-2: ``weight_conversion/ltx2_vae.py``).

Two diffusers details kept: the decoder is causal when the config says so whatever the caller asks
(``causal or self.is_causal``), and ``upsample_type`` is indexed from the latent side while every other decoder
list is reversed first. One diffusers detail not kept: its ``spatial_compression_ratio`` default
(``patch_size * 2 ** sum(spatio_temporal_scaling)`` = 64 for LTX-2, whose space-only and time-only downsamplers
make it 32); ``spatial_ratio`` / ``temporal_ratio`` here are the decoder's real ratios, which tiling needs.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltx_jax.configs import VAEConfig
from ltx_jax.configs_ltx2 import LTX2VideoVAEConfig
from ltx_jax.models.vae import (Decoder3d, Encoder3d, decode_latents, denormalize_latents, normalize_latents,
                                posterior)
from ltx_jax.models.vae_tiling import VAETiling

Dtype = Any

#: ``downsample_type`` / ``upsample_type`` -> (t, h, w) stride ("conv" is the strided conv downsampler).
STRIDES = {"conv": (2, 2, 2), "spatial": (1, 2, 2), "temporal": (2, 1, 1), "spatiotemporal": (2, 2, 2)}


# ------------------------------------------------------------------------------------------ config views


def _per_block(value, count: int, name: str) -> tuple:
    """diffusers' bool-or-tuple config fields: a bool is repeated ``count`` times; a tuple needs ``count`` entries."""
    if isinstance(value, bool):
        return (value,) * count
    value = tuple(value)
    if len(value) < count:
        raise ValueError(f"LTX2VideoVAEConfig: {name} has {len(value)} entries; the VAE needs {count}.")
    return value[:count]


def _check_lengths(cfg: LTX2VideoVAEConfig) -> None:
    n_enc, n_dec = len(cfg.block_out_channels), len(cfg.decoder_block_out_channels)
    if len(cfg.layers_per_block) != n_enc + 1:
        raise ValueError(f"LTX2VideoVAEConfig: layers_per_block has {len(cfg.layers_per_block)} entries; "
                         f"block_out_channels={cfg.block_out_channels} needs {n_enc + 1} (down blocks, then mid).")
    if len(cfg.decoder_layers_per_block) != n_dec + 1:
        raise ValueError(f"LTX2VideoVAEConfig: decoder_layers_per_block has {len(cfg.decoder_layers_per_block)} "
                         f"entries; decoder_block_out_channels={cfg.decoder_block_out_channels} needs {n_dec + 1}.")
    for name in ("down_block_types", "downsample_type"):
        if len(getattr(cfg, name)) < n_enc:
            raise ValueError(f"LTX2VideoVAEConfig: {name} has {len(getattr(cfg, name))} entries; the encoder has "
                             f"{n_enc} down blocks.")
    for name in ("upsample_type", "upsample_factor"):
        if len(getattr(cfg, name)) < n_dec:
            raise ValueError(f"LTX2VideoVAEConfig: {name} has {len(getattr(cfg, name))} entries; the decoder has "
                             f"{n_dec} up blocks.")
    unknown = sorted(set(cfg.down_block_types[:n_enc]) - {"LTX2VideoDownBlock3D"})
    if unknown:
        raise ValueError(f"LTX2VideoVAEConfig: down_block_types {unknown} are not supported; use "
                         "'LTX2VideoDownBlock3D'.")


def ltx_video_config(cfg: LTX2VideoVAEConfig) -> VAEConfig:
    """The LTX-Video ``VAEConfig`` whose encoder and decoder compute what ``cfg``'s do (padding modes and upsampler
    strides aside: ``upsample_strides``). LTX-2's encoder is LTX-Video 0.9.5's with ``latent_channels`` in front of
    ``block_out_channels`` (its ``conv_in`` is that wide); its decoder is LTX-Video's, list for list."""
    _check_lengths(cfg)
    n_enc, n_dec = len(cfg.block_out_channels), len(cfg.decoder_block_out_channels)
    scaling = _per_block(cfg.spatio_temporal_scaling, len(cfg.layers_per_block) - 1, "spatio_temporal_scaling")
    dec_scaling = _per_block(cfg.decoder_spatio_temporal_scaling, len(cfg.decoder_layers_per_block) - 1,
                             "decoder_spatio_temporal_scaling")
    spatial, temporal = _ratios(cfg)
    return VAEConfig(
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        latent_channels=cfg.latent_channels,
        block_out_channels=(cfg.latent_channels,) + tuple(cfg.block_out_channels),
        down_block_types=("LTXVideo095DownBlock3D",) * n_enc,
        decoder_block_out_channels=tuple(cfg.decoder_block_out_channels),
        layers_per_block=tuple(cfg.layers_per_block),
        decoder_layers_per_block=tuple(cfg.decoder_layers_per_block),
        spatio_temporal_scaling=scaling[:n_enc],
        decoder_spatio_temporal_scaling=dec_scaling[:n_dec],
        decoder_inject_noise=_per_block(cfg.decoder_inject_noise, n_dec + 1, "decoder_inject_noise"),
        downsample_type=tuple(cfg.downsample_type[:n_enc]),
        upsample_residual=_per_block(cfg.upsample_residual, n_dec, "upsample_residual"),
        upsample_factor=tuple(cfg.upsample_factor[:n_dec]),
        timestep_conditioning=cfg.timestep_conditioning,
        patch_size=cfg.patch_size,
        patch_size_t=cfg.patch_size_t,
        resnet_norm_eps=cfg.resnet_norm_eps,
        scaling_factor=cfg.scaling_factor,
        encoder_causal=cfg.encoder_causal,
        decoder_causal=cfg.decoder_causal,
        spatial_compression_ratio=spatial,
        temporal_compression_ratio=temporal,
    )


def upsample_strides(cfg: LTX2VideoVAEConfig) -> tuple[tuple[int, int, int], ...]:
    """(t, h, w) stride of each up block's upsampler, latent side first (diffusers indexes ``upsample_type``
    unreversed)."""
    return tuple(STRIDES[kind] for kind in cfg.upsample_type[:len(cfg.decoder_block_out_channels)])


def _ratios(cfg: LTX2VideoVAEConfig) -> tuple[int, int]:
    """(pixels per latent along H and W, frames per latent frame after the first) of the decoder."""
    n_dec = len(cfg.decoder_block_out_channels)
    scaling = _per_block(cfg.decoder_spatio_temporal_scaling, len(cfg.decoder_layers_per_block) - 1,
                         "decoder_spatio_temporal_scaling")
    strides = [s for s, on in zip(upsample_strides(cfg), scaling[:n_dec]) if on]
    spatial = cfg.patch_size * math.prod(s[1] for s in strides)
    temporal = cfg.patch_size_t * math.prod(s[0] for s in strides)
    return spatial, temporal


def _encoder_ratios(cfg: LTX2VideoVAEConfig) -> tuple[int, int]:
    n_enc = len(cfg.block_out_channels)
    scaling = _per_block(cfg.spatio_temporal_scaling, len(cfg.layers_per_block) - 1, "spatio_temporal_scaling")
    strides = [STRIDES[kind] for kind, on in zip(cfg.downsample_type[:n_enc], scaling[:n_enc]) if on]
    return cfg.patch_size * math.prod(s[1] for s in strides), cfg.patch_size_t * math.prod(s[0] for s in strides)


# ------------------------------------------------------------------------------------------------ the model


class AutoencoderKLLTX2Video(nn.Module):
    """diffusers' ``AutoencoderKLLTX2Video`` with channels-last tensors.

    Attributes:
      config: the architecture (diffusers' ``config.json`` fields; defaults: LTX-2's).
      dtype: compute dtype (bf16 on GPU); norms and timestep modulation stay float32.
      param_dtype: dtype of the params created by ``init``.
      precision: convolution / matmul precision (None = backend default).

    Params: ``encoder``, ``decoder`` (our LTX-Video VAE's trees) and ``latents_mean`` / ``latents_std`` [L] (diffusers'
    buffers; ``normalize_latents`` / ``denormalize_latents`` use them as the LTX-2 pipelines do).
    """

    config: LTX2VideoVAEConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @property
    def base_config(self) -> VAEConfig:
        """``ltx_video_config(self.config)``: the LTX-Video config our shared encoder and decoder read."""
        return ltx_video_config(self.config)

    @property
    def spatial_ratio(self) -> int:
        """Pixels per latent along H and W (32 for LTX-2 and LTX-2.3)."""
        return _ratios(self.config)[0]

    @property
    def temporal_ratio(self) -> int:
        """Frames per latent frame after the first (8 for LTX-2 and LTX-2.3)."""
        return _ratios(self.config)[1]

    def setup(self):
        cfg = self.config
        self.encoder = Encoder3d(self.base_config, self.dtype, self.param_dtype, self.precision,
                                 spatial_padding_mode=cfg.encoder_spatial_padding_mode)
        self.decoder = Decoder3d(self.base_config, self.dtype, self.param_dtype, self.precision,
                                 spatial_padding_mode=cfg.decoder_spatial_padding_mode,
                                 upsample_strides=upsample_strides(cfg))
        latent = cfg.latent_channels
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
        """Posterior of a video (diffusers' ``encode(x).latent_dist``: its mean and log-variance).

        Args:
          video: [B, F, H, W, in_channels] in [-1, 1]; F = 1 + r_t k, H and W multiples of r_s (r_t = 8,
            r_s = 32 for released VAEs).
        Returns:
          (mean, logvar), each [B, (F-1)/r_t + 1, H/r_s, W/r_s, L] in ``dtype``; logvar is one channel broadcast over
          L and clamped to [-30, 20] as diffusers' ``DiagonalGaussianDistribution`` does.
        """
        rs, rt = _encoder_ratios(self.config)
        if video.ndim == 5:
            frames, height, width = video.shape[1:4]
            if (frames - 1) % rt or height % rs or width % rs:
                raise ValueError(f"video has {frames} frames of {height}x{width}; this VAE encodes 1 + {rt}k frames "
                                 f"whose height and width are multiples of {rs}.")
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
            timestep-conditioned decoders, ignored by the others (LTX-2's is not conditioned).
          key: PRNG key for the decoder's noise injection (``decoder_inject_noise``); None injects no noise.
          tiling: None decodes whole; a ``VAETiling`` (or a dict of its fields, or True for the defaults) decodes
            in blended tiles, as diffusers' ``enable_tiling`` (+ ``use_framewise_decoding``) does.
          spread: an ``ltx_jax.sharding.ShardingPlan``: the spatial tiles are dealt over its devices.
        Returns:
          [B, r_t(F-1)+1, r_s H, r_s W, out_channels] in ``dtype`` (r_t = 8, r_s = 32 for released VAEs).
        """
        cfg = self.config
        rs, rt = self.spatial_ratio, self.temporal_ratio
        if tiling is not None and tiling is not False:  # the tiles are cut by the real ratios
            for name, stated, real in (("spatial", cfg.spatial_compression_ratio, rs),
                                       ("temporal", cfg.temporal_compression_ratio, rt)):
                if stated is not None and stated != real:
                    raise ValueError(f"config {name}_compression_ratio={stated}, but the decoder upsamples by {real}; "
                                     "tiled decoding needs the real ratio.")
        return decode_latents(self, latents, timestep, key, tiling, spread, rs, rt)

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        size = _encoder_ratios(self.config)[0]
        return (jnp.zeros((1, 1, size, size, self.config.in_channels), self.dtype), jnp.zeros((1,), jnp.float32)), {}

    def normalize_latents(self, latents: jax.Array) -> jax.Array:
        """[..., L] raw latents -> normalized with ``latents_mean`` / ``latents_std`` and ``scaling_factor``."""
        return normalize_latents(latents, self.latents_mean, self.latents_std, self.config.scaling_factor)

    def denormalize_latents(self, latents: jax.Array) -> jax.Array:
        return denormalize_latents(latents, self.latents_mean, self.latents_std, self.config.scaling_factor)

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
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs import VAEConfig
from ltx_jax.models import layers
from ltx_jax.models import vae_blocks as blocks
from ltx_jax.models.layers import pixel_norm
from ltx_jax.models.vae_blocks import TIME_EMBEDDER_AXES, CausalConv3d, DownBlock3D, MidBlock3d, UpBlock3d

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
    """diffusers' ``LTXVideoEncoder3d``: video [B, F, H, W, C_in] -> [B, F', H', W', L+1] (means + one log-variance)."""

    config: VAEConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, video: jax.Array) -> jax.Array:
        cfg = self.config
        kw = dict(is_causal=cfg.encoder_causal, dtype=self.dtype, param_dtype=self.param_dtype,
                  precision=self.precision)
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
    ``noise_key`` None injects no noise.
    """

    config: VAEConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        return (jnp.zeros((1, 1, 1, 1, self.config.latent_channels), self.dtype), jnp.zeros((1,), jnp.float32)), {}

    @nn.compact
    def __call__(self, z: jax.Array, timestep: jax.Array | None = None,
                 noise_key: jax.Array | None = None) -> jax.Array:
        cfg = self.config
        kw = dict(is_causal=cfg.decoder_causal, dtype=self.dtype, param_dtype=self.param_dtype,
                  precision=self.precision)
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


# -------------------------------------------------------------------------------------------------- tiling


@dataclasses.dataclass(frozen=True)
class VAETiling:
    """Tiled decoding settings: diffusers' ``enable_tiling`` arguments (pixels / frames) and defaults.

    ``spatial`` is diffusers' ``use_tiling`` (set by ``enable_tiling``), ``temporal`` its ``use_framewise_decoding``
    (which diffusers leaves off unless set by hand; on here, so that memory follows the tile).
    Sizes and strides must be multiples of the VAE's compression ratios (32 pixels, 8 frames for released VAEs).
    """

    tile_sample_min_height: int = 512
    tile_sample_min_width: int = 512
    tile_sample_min_num_frames: int = 16
    tile_sample_stride_height: int = 448
    tile_sample_stride_width: int = 448
    tile_sample_stride_num_frames: int = 8
    spatial: bool = True
    temporal: bool = True

    @classmethod
    def resolve(cls, tiling: "VAETiling | Mapping[str, Any] | bool | None") -> "VAETiling | None":
        if tiling is None or tiling is False:
            return None
        if tiling is True:
            return cls()
        if isinstance(tiling, cls):
            return tiling
        if isinstance(tiling, Mapping):
            return cls(**{k: v for k, v in tiling.items() if v is not None})
        raise ValueError(f"tiling must be None, True, a VAETiling or a dict of its fields; "
                         f"got {type(tiling).__name__}.")

    def check(self, spatial_ratio: int, temporal_ratio: int) -> None:
        pairs = (
            ("height", self.tile_sample_min_height, self.tile_sample_stride_height, spatial_ratio),
            ("width", self.tile_sample_min_width, self.tile_sample_stride_width, spatial_ratio),
            ("num_frames", self.tile_sample_min_num_frames, self.tile_sample_stride_num_frames, temporal_ratio),
        )
        for name, size, stride, ratio in pairs:
            if size % ratio or stride % ratio or not 0 < stride <= size:
                raise ValueError(
                    f"tile_sample_min_{name}={size} and tile_sample_stride_{name}={stride} must be multiples of the "
                    f"compression ratio {ratio} with 0 < stride <= size."
                )


DecodeFn = Callable[[jax.Array, "jax.Array | None"], jax.Array]


def _blend(a: jax.Array, b: jax.Array, extent: int, axis: int) -> jax.Array:
    """diffusers' blend_v / blend_h / blend_t: b's first e slices fade in over a's last e (e = min of the three)."""
    e = min(a.shape[axis], b.shape[axis], extent)
    if e == 0:
        return b
    y = np.arange(e, dtype=np.float64)
    shape = [1] * b.ndim
    shape[axis] = e
    w_b = jnp.asarray((y / e).astype(np.float32).reshape(shape), b.dtype)
    w_a = jnp.asarray((1 - y / e).astype(np.float32).reshape(shape), b.dtype)
    a_tail = jax.lax.slice_in_dim(a, a.shape[axis] - e, a.shape[axis], axis=axis)
    mixed = a_tail * w_a + jax.lax.slice_in_dim(b, 0, e, axis=axis) * w_b
    return jnp.concatenate([mixed, jax.lax.slice_in_dim(b, e, b.shape[axis], axis=axis)], axis=axis)


def _map_tiles(fn, xs, plan):
    """``lax.map(fn, xs)`` over the leading (tile) axis; with a ``ShardingPlan`` the tiles are dealt over every
    device (padded to a multiple of their count with copies of the last), each device decoding its share in turn."""
    if plan is None:
        return jax.lax.map(fn, xs)
    devices = plan.mesh.size
    count = jax.tree_util.tree_leaves(xs)[0].shape[0]
    per = -(-count // devices)
    pad = per * devices - count

    def group(x):
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)
        return plan.one_slice_per_device(x.reshape((devices, per) + x.shape[1:]))  # [devices, per, ...]

    out = jax.vmap(lambda g: jax.lax.map(fn, g))(jax.tree_util.tree_map(group, xs))
    return jax.tree_util.tree_map(lambda y: y.reshape((devices * per,) + y.shape[2:])[:count], out)


def _spatial_tiled_decode(decode: DecodeFn, z: jax.Array, key, tiling: VAETiling, ratio: int,
                          spread=None) -> jax.Array:
    """diffusers' ``tiled_decode`` on z [B, F, H, W, L] (whole decode when the latents fit one tile).

    Tiles of one shape are stacked and decoded by one ``lax.map`` (one compiled decoder per tile shape: at most
    four, the full tile and the partial ones at the bottom and right edges); the blend then follows diffusers'
    order exactly (above neighbour first, then left, each blended in place). ``spread``: a ``ShardingPlan`` whose
    devices share the tiles (``_map_tiles``).
    """
    _, _, height, width, _ = z.shape
    min_h, min_w = tiling.tile_sample_min_height // ratio, tiling.tile_sample_min_width // ratio
    stride_h, stride_w = tiling.tile_sample_stride_height // ratio, tiling.tile_sample_stride_width // ratio
    if not (tiling.spatial and (width > min_w or height > min_h)):
        return decode(z, key)
    rows, cols = list(range(0, height, stride_h)), list(range(0, width, stride_w))
    by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            by_shape.setdefault((min(min_h, height - r), min(min_w, width - c)), []).append((i, j))

    decoded: dict[tuple[int, int], jax.Array] = {}
    for (h, w), members in by_shape.items():
        tiles = jnp.stack([z[:, :, rows[i] : rows[i] + h, cols[j] : cols[j] + w]
                           for i, j in members])  # [K, B, F, h, w, L]
        if key is None:
            out = _map_tiles(lambda t: decode(t, None), tiles, spread)
        else:
            keys = jnp.stack([jax.random.fold_in(key, i * len(cols) + j) for i, j in members])
            out = _map_tiles(lambda args: decode(*args), (tiles, keys), spread)
        for m, ij in enumerate(members):
            decoded[ij] = out[m]

    blend_h = tiling.tile_sample_min_height - tiling.tile_sample_stride_height
    blend_w = tiling.tile_sample_min_width - tiling.tile_sample_stride_width
    keep_h, keep_w = tiling.tile_sample_stride_height, tiling.tile_sample_stride_width
    result_rows = []
    for i in range(len(rows)):
        kept = []
        for j in range(len(cols)):
            tile = decoded[(i, j)]
            if i > 0:
                tile = _blend(decoded[(i - 1, j)], tile, blend_h, axis=2)
            if j > 0:
                tile = _blend(decoded[(i, j - 1)], tile, blend_w, axis=3)
            decoded[(i, j)] = tile  # diffusers blends in place: later neighbours see the blended tile
            kept.append(tile[:, :, :keep_h, :keep_w])
        result_rows.append(jnp.concatenate(kept, axis=3))
    return jnp.concatenate(result_rows, axis=2)[:, :, : height * ratio, : width * ratio]


def _write_frames(buffer: jax.Array, frames: jax.Array, start: jax.Array, count: jax.Array) -> jax.Array:
    """buffer[:, start : start+count] = frames[:, :count] for traced start and count (count <= frames.shape[1]).

    The window is clamped into the buffer and frames outside [start, start+count) keep the buffer's values, so the
    write is an in-place ``dynamic_update_slice`` of a fixed-size window.
    """
    win, total = frames.shape[1], buffer.shape[1]
    begin = jnp.clip(start, 0, total - win)
    src = jnp.arange(win) - (start - begin)  # frame of `frames` that lands on each window position
    valid = ((src >= 0) & (src < count))[None, :, None, None, None]
    values = jnp.take(frames, jnp.clip(src, 0, win - 1), axis=1)
    current = jax.lax.dynamic_slice_in_dim(buffer, begin, win, axis=1)
    return jax.lax.dynamic_update_slice_in_dim(buffer, jnp.where(valid, values, current), begin, axis=1)


def _temporal_tiled_decode(
    decode_tile: DecodeFn, z: jax.Array, key, tiling: VAETiling, temporal_ratio: int
) -> jax.Array:
    """diffusers' ``_temporal_tiled_decode`` on z [B, F, H, W, L] -> [B, r(F-1)+1, ...].

    Temporal tiles of ``tile_sample_min_num_frames / r + 1`` latent frames start every
    ``tile_sample_stride_num_frames / r`` latent frames; each later tile drops its last frame, fades in over the
    previous (blended) tile's tail and keeps ``tile_sample_stride_num_frames`` frames (the first keeps one more).
    All full-length tiles run in one ``lax.scan`` whose carry is the output buffer (written in place) and the
    previous tile's tail, so memory follows the tile; the few shorter tiles at the end are decoded after it.
    """
    num_frames = z.shape[1]
    t_min = tiling.tile_sample_min_num_frames // temporal_ratio
    t_stride = tiling.tile_sample_stride_num_frames // temporal_ratio
    blend = tiling.tile_sample_min_num_frames - tiling.tile_sample_stride_num_frames
    keep = tiling.tile_sample_stride_num_frames
    total = (num_frames - 1) * temporal_ratio + 1
    starts = list(range(0, num_frames, t_stride))
    lengths = [min(t_min + 1, num_frames - s) for s in starts]
    effective = [(n - 1) * temporal_ratio + (1 if k == 0 else 0) for k, n in enumerate(lengths)]  # after drop-last
    num_full = sum(1 for n in lengths if n == t_min + 1)  # the full tiles come first

    def tile_key(k):
        return None if key is None else jax.random.fold_in(key, k)

    full_len = t_min * temporal_ratio + 1
    sample = jax.eval_shape(lambda zz: decode_tile(zz, tile_key(0)), z[:, : t_min + 1])
    buffer = jnp.zeros((sample.shape[0], total, *sample.shape[2:]), sample.dtype)
    w_new = jnp.asarray((np.arange(blend) / max(blend, 1)).astype(np.float32), sample.dtype)[None, :, None, None, None]

    def step(carry, k):
        buffer, tail = carry
        first = k == 0
        tile = decode_tile(jax.lax.dynamic_slice_in_dim(z, k * t_stride, t_min + 1, axis=1), tile_key(k))
        if blend:
            # The first tile is not blended: its weights are 1 for itself and 0 for the (zero) tail.
            w_b = jnp.where(first, jnp.ones_like(w_new), w_new)
            w_a = jnp.where(first, jnp.zeros_like(w_new), 1 - w_new)
            tile = jnp.concatenate([tail * w_a + tile[:, :blend] * w_b, tile[:, blend:]], axis=1)
        start = jnp.where(first, 0, k * keep + 1)
        buffer = _write_frames(buffer, tile[:, : keep + 1], start, keep + first.astype(jnp.int32))
        eff = full_len - 1 + first.astype(jnp.int32)
        tail = jax.lax.dynamic_slice_in_dim(tile, eff - blend, blend, axis=1) if blend else tail
        return (buffer, tail), None

    tail0 = jnp.zeros((sample.shape[0], blend, *sample.shape[2:]), sample.dtype)
    (buffer, tail), _ = jax.lax.scan(step, (buffer, tail0), jnp.arange(num_full))

    offset = keep + 1 + keep * (num_full - 1)
    prev_eff = effective[num_full - 1]
    tail = tail[:, max(0, blend - prev_eff) :]
    for k in range(num_full, len(starts)):
        if effective[k] == 0 or offset >= total:
            break  # a one-frame tile decodes to one frame, which diffusers drops: nothing left to contribute
        tile = decode_tile(z[:, starts[k] : starts[k] + lengths[k]], tile_key(k))[:, : effective[k]]
        tile = _blend(tail, tile, blend, axis=1)
        count = min(keep, effective[k], total - offset)
        buffer = jax.lax.dynamic_update_slice_in_dim(buffer, tile[:, :count], offset, axis=1)
        offset += min(keep, effective[k])
        tail = tile[:, max(0, effective[k] - blend) :]
    return buffer


# ------------------------------------------------------------------------------------------------ the model


def normalize_latents(latents: jax.Array, mean: jax.Array, std: jax.Array, scaling_factor: float = 1.0) -> jax.Array:
    """Raw VAE latents [..., L] -> the transformer's latent space, as diffusers' LTX pipelines do."""
    return (latents - mean) * scaling_factor / std


def denormalize_latents(latents: jax.Array, mean: jax.Array, std: jax.Array, scaling_factor: float = 1.0) -> jax.Array:
    """Inverse of ``normalize_latents`` (what the pipelines apply before ``decode``)."""
    return latents * std / scaling_factor + mean


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
        cfg = self.config
        if video.ndim != 5 or video.shape[-1] != cfg.in_channels:
            raise ValueError(f"video has shape {video.shape}; "
                             f"expected [B, F, H, W, {cfg.in_channels}] (channels-last).")
        h = self.encoder(video.astype(self.dtype))  # [B, F', H', W', L+1]
        latent = cfg.latent_channels
        mean = h[..., :latent]
        logvar = jnp.clip(jnp.broadcast_to(h[..., latent:], mean.shape), -30.0, 20.0)
        return mean, logvar

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
        cfg = self.config
        if latents.ndim != 5 or latents.shape[-1] != cfg.latent_channels:
            raise ValueError(f"latents have shape {latents.shape}; expected [B, F, H, W, {cfg.latent_channels}].")
        batch = latents.shape[0]
        latents = latents.astype(self.dtype)
        t = None
        if cfg.timestep_conditioning:
            if timestep is None:
                raise ValueError(
                    "This VAE's decoder is timestep-conditioned (0.9.1+): pass a timestep (the pipelines' "
                    "decode_timestep, e.g. 0.05)."
                )
            t = jnp.broadcast_to(jnp.asarray(timestep, jnp.float32).reshape(-1), (batch,))
        tiling = VAETiling.resolve(tiling)
        if tiling is None or self.is_initializing():
            return self.decoder(latents, t, key)

        tiling.check(cfg.spatial_ratio, cfg.temporal_ratio)
        decoder = Decoder3d(self.config, self.dtype, self.param_dtype, self.precision, parent=None)  # unbound, pure
        variables = {"params": self.decoder.variables["params"]}

        def decode_whole(z, k):
            return decoder.apply(variables, z, t, k)

        def decode_tile(z, k):
            return _spatial_tiled_decode(decode_whole, z, k, tiling, cfg.spatial_ratio, spread)

        t_min = tiling.tile_sample_min_num_frames // cfg.temporal_ratio
        if tiling.temporal and latents.shape[1] > t_min:
            return _temporal_tiled_decode(decode_tile, latents, key, tiling, cfg.temporal_ratio)
        return decode_tile(latents, key)

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        size = self.config.spatial_ratio
        return (jnp.zeros((1, 1, size, size, self.config.in_channels), self.dtype), jnp.zeros((1,), jnp.float32)), {}

    def normalize_latents(self, latents: jax.Array) -> jax.Array:
        """[..., L] raw latents -> normalized with ``latents_mean`` / ``latents_std`` and ``scaling_factor``."""
        return normalize_latents(latents, self.latents_mean, self.latents_std, self.config.scaling_factor)

    def denormalize_latents(self, latents: jax.Array) -> jax.Array:
        return denormalize_latents(latents, self.latents_mean, self.latents_std, self.config.scaling_factor)

"""Tiled VAE decoding in two layouts (``VAETiling.layout``), both blending overlapping tiles linearly.

- ``"diffusers"`` reproduces diffusers' ``tiled_decode`` / ``_temporal_tiled_decode`` exactly: tiles start every
  stride, the last ones are shorter (up to eight tile shapes, so eight decoders in the program), and with diffusers'
  defaults each latent frame is decoded three times (16-frame tiles every 8 frames: 3 latent frames every 1).
- ``"uniform"`` cuts each axis into the fewest tiles no larger than ``tile_sample_min_*`` that overlap by at least
  the blend width, all of one shape, spread evenly from edge to edge (no padding: the image edges are the decoder's
  own). One ``lax.scan`` decodes them with one decoder and adds each, weighted, into a float32 frame buffer, so the
  program holds one convolution per layer shape and memory follows the tile. Overlaps beyond the blend width come
  only from rounding the tiles to one size. Its output differs from diffusers' tiling near tile seams (as diffusers'
  own tiling differs from the whole decode); tests/test_vae.py bounds it against the whole decode.

Axis letters: B batch, F frames, H height, W width, C channels, L latent channels, K tiles.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np


LAYOUTS = ("diffusers", "uniform")


@dataclasses.dataclass(frozen=True)
class VAETiling:
    """Tiled decoding settings: diffusers' ``enable_tiling`` arguments (pixels / frames) and defaults.

    ``spatial`` is diffusers' ``use_tiling`` (set by ``enable_tiling``), ``temporal`` its ``use_framewise_decoding``
    (which diffusers leaves off unless set by hand; on here, so that memory follows the tile).
    Sizes and strides must be multiples of the VAE's compression ratios (32 pixels, 8 frames for released VAEs).

    ``layout``: "diffusers" (exactly diffusers' tiles and blends) or "uniform" (tiles of one shape, at most
    ``tile_sample_min_*`` large, overlapping by ``min - stride`` pixels / frames; the module docstring). The pipelines'
    ``tiling="auto"`` picks uniform tiles; ``True`` is diffusers' ``enable_tiling()``.
    """

    tile_sample_min_height: int = 512
    tile_sample_min_width: int = 512
    tile_sample_min_num_frames: int = 16
    tile_sample_stride_height: int = 448
    tile_sample_stride_width: int = 448
    tile_sample_stride_num_frames: int = 8
    spatial: bool = True
    temporal: bool = True
    layout: str = "diffusers"

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
        if self.layout not in LAYOUTS:
            raise ValueError(f"tiling layout={self.layout!r}; use one of {LAYOUTS}.")
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





# ------------------------------------------------------------------------------------------------ uniform tiles


def uniform_cut(length: int, max_tile: int, overlap: int) -> tuple[int, list[int]]:
    """(tile, starts): the fewest tiles of one size ``tile <= max_tile`` covering ``length`` with overlaps of at least
    ``overlap`` (before rounding), their starts spread evenly from 0 to ``length - tile``. Units: latents."""
    if length <= max_tile:
        return length, [0]
    count = -(-(length - overlap) // (max_tile - overlap))
    tile = -(-(length + (count - 1) * overlap) // count)
    return tile, [round(i * (length - tile) / (count - 1)) for i in range(count)]


def blend_weights(spans: list[tuple[int, int]]) -> np.ndarray:
    """[K, size] blend weights of K equal output spans ``(begin, end)`` along one axis: each fades in linearly over
    its overlap with the previous span and out over the next's, then all are divided by their sum at each position,
    so the weights of the tiles covering any position add up to 1."""
    size = spans[0][1] - spans[0][0]
    total = max(end for _, end in spans)
    weights = np.ones((len(spans), size), np.float64)
    for i in range(1, len(spans)):
        overlap = spans[i - 1][1] - spans[i][0]
        if overlap > 0:
            ramp = (np.arange(overlap) + 0.5) / overlap
            weights[i, :overlap] *= ramp
            weights[i - 1, size - overlap :] *= 1 - ramp
    cover = np.zeros(total)
    for (begin, end), w in zip(spans, weights):
        cover[begin:end] += w
    return np.stack([w / cover[begin:end] for (begin, end), w in zip(spans, weights)]).astype(np.float32)


def _uniform_tiled_decode(decode: DecodeFn, z: jax.Array, key, tiling: VAETiling, spatial_ratio: int,
                          temporal_ratio: int, spread=None) -> jax.Array:
    """The uniform layout (module docstring) on z [B, F, H, W, L] -> [B, r_t(F-1)+1, r_s H, r_s W, C].

    A latent window of T frames starting at frame s decodes to frames [r_t s, r_t (s+T-1)] of the whole decode; of
    h x w latents at (y, x), to pixels [r_s y, r_s (y+h)) x [r_s x, r_s (x+w)). With ``spread`` (a ``ShardingPlan``)
    each step decodes one tile per device (the last step's spare devices decode a copy with weight 0).
    """
    _, frames, height, width, _ = z.shape
    rs, rt = spatial_ratio, temporal_ratio
    full = (frames, [0]), (height, [0]), (width, [0])
    t_len, t_starts = uniform_cut(frames, tiling.tile_sample_min_num_frames // rt + 1,
                                  (tiling.tile_sample_min_num_frames - tiling.tile_sample_stride_num_frames) // rt + 1
                                  ) if tiling.temporal else full[0]
    h_len, h_starts = uniform_cut(height, tiling.tile_sample_min_height // rs,
                                  (tiling.tile_sample_min_height - tiling.tile_sample_stride_height) // rs
                                  ) if tiling.spatial else full[1]
    w_len, w_starts = uniform_cut(width, tiling.tile_sample_min_width // rs,
                                  (tiling.tile_sample_min_width - tiling.tile_sample_stride_width) // rs
                                  ) if tiling.spatial else full[2]
    if len(t_starts) * len(h_starts) * len(w_starts) == 1:
        return decode(z, key)
    w_t = blend_weights([(rt * s, rt * (s + t_len - 1) + 1) for s in t_starts])
    w_h = blend_weights([(rs * s, rs * (s + h_len)) for s in h_starts])
    w_w = blend_weights([(rs * s, rs * (s + w_len)) for s in w_starts])
    grid = [(a, b, c) for a in range(len(t_starts)) for b in range(len(h_starts)) for c in range(len(w_starts))]
    count = len(grid)
    devices = 1 if spread is None else spread.mesh.size
    steps = -(-count // devices)
    grid += [grid[-1]] * (steps * devices - count)  # spare copies, weighted 0 below
    k_t, k_h, k_w = (np.asarray(col, np.int32).reshape(steps, devices) for col in zip(*grid))
    live = (np.arange(steps * devices) < count).reshape(steps, devices)
    tables = dict(t=jnp.asarray(np.asarray(t_starts, np.int32)[k_t]),
                  h=jnp.asarray(np.asarray(h_starts, np.int32)[k_h]),
                  w=jnp.asarray(np.asarray(w_starts, np.int32)[k_w]),
                  wt=jnp.asarray(w_t[k_t] * live[..., None]), wh=jnp.asarray(w_h[k_h]), ww=jnp.asarray(w_w[k_w]),
                  index=jnp.arange(steps * devices, dtype=jnp.int32).reshape(steps, devices))
    batch, channels_l = z.shape[0], z.shape[-1]
    window = (batch, t_len, h_len, w_len, channels_l)

    def decode_one(t0, h0, w0, index):
        tile = jax.lax.dynamic_slice(z, (0, t0, h0, w0, 0), window)
        return decode(tile, None if key is None else jax.random.fold_in(key, index))

    sample = jax.eval_shape(decode_one, 0, 0, 0, 0)
    out_shape = (batch, rt * (frames - 1) + 1, rs * height, rs * width, sample.shape[-1])

    def step(buffer, row):
        starts = [row["t"], row["h"], row["w"], row["index"]]
        if spread is not None:
            starts = [spread.one_slice_per_device(s) for s in starts]
        tiles = jax.vmap(decode_one)(*starts)  # [devices, B, f, h, w, C]
        for d in range(devices):
            weight = (row["wt"][d][:, None, None] * row["wh"][d][None, :, None] * row["ww"][d][None, None, :])
            at = (0, rt * row["t"][d], rs * row["h"][d], rs * row["w"][d], 0)
            region = jax.lax.dynamic_slice(buffer, at, sample.shape)
            buffer = jax.lax.dynamic_update_slice(
                buffer, region + tiles[d].astype(jnp.float32) * weight[None, :, :, :, None], at)
        return buffer, None

    buffer, _ = jax.lax.scan(step, jnp.zeros(out_shape, jnp.float32), tables)
    return buffer.astype(sample.dtype)


def tiled_decode(decode: DecodeFn, z: jax.Array, key, tiling: VAETiling, spatial_ratio: int, temporal_ratio: int,
                 spread=None) -> jax.Array:
    """Decodes z [B, F, H, W, L] with ``decode`` (the whole decoder on one window) in the tiles of ``tiling``;
    ``spread``: a ``ShardingPlan`` whose devices share the tiles."""
    if tiling.layout == "uniform":
        return _uniform_tiled_decode(decode, z, key, tiling, spatial_ratio, temporal_ratio, spread)

    def decode_tile(zz, k):
        return _spatial_tiled_decode(decode, zz, k, tiling, spatial_ratio, spread)

    t_min = tiling.tile_sample_min_num_frames // temporal_ratio
    if tiling.temporal and z.shape[1] > t_min:
        return _temporal_tiled_decode(decode_tile, z, key, tiling, temporal_ratio)
    return decode_tile(z, key)

"""How ``tiling="auto"`` decodes: whole when the device's free memory holds the whole decode with a margin, else in
the fewest tiles that fit.

The policy (``choose_tiling``) is a pure function of the free bytes, the whole decode's bytes and the shapes. Where
the backend reports no memory (the CPU's ``memory_stats()`` is None) it keeps the old rule: diffusers' default tiles
above ``AUTO_TILING_PIXELS`` output pixels, whole below.

Memory model, from the one measured point (H200, 2026-12-04, ``/work/shared/gpu-runs``; benchmarks/RESULTS.md): the
0.9.5 VAE's whole bf16 decode of 121x512x768 (16x16x24 latents, 47.6M output pixels) compiled to 3.83 GB of
temporaries + 0.29 GB of output (the bf16 video) + 1.11 GB of arguments (the weights), and peaked at 5.92 GB (5.5 GiB)
on the device: 80.5 bytes of temporaries per output pixel, ~40 bf16 activation elements per pixel alive at once, and
~101 bytes per pixel at the peak beyond the weights. ``whole_decode_bytes_estimate`` rounds that up to 48 activation
elements per pixel, plus the decoded video in the VAE's dtype and the float32 frames the pipeline returns:
114 bytes per output pixel in bf16 (216 in float32), the weights excluded (they are resident already, so counted in
``bytes_in_use``). The whole decode is chosen where ``bytes * margin <= free``, ``margin`` = 1.2 by default.

Largest whole decode (bf16, margin 1.2, 136.8 bytes per output pixel), with the card's memory free for the decode
(GB = 1e9 bytes; JAX's default pool is 75% of the card, the second column; subtract whatever else is resident):

| card | whole card free | 75% pool | frames at 768x512 (card / pool) | frames at 1216x704 (card / pool) |
|---|---|---|---|---|
| 24 GB (RTX 4090, L4) | 175 M pixels | 132 M | 441 / 329 | 201 / 153 |
| 40 GB (A100 40 GB) | 292 M | 219 M | 737 / 553 | 337 / 249 |
| 80 GB (A100 / H100 80 GB) | 585 M | 439 M | 1481 / 1113 | 681 / 505 |
| 141 GB (H200) | 1031 M | 773 M | 2617 / 1961 | 1201 / 897 |

So 768x512x121 (47.6M pixels, ~5.4 GB + the weights) decodes whole on a 24 GB card with room to spare.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ltx_jax.models.vae import VAETiling
from ltx_jax.pipelines.vae_programs import AUTO_TILING_PIXELS

# Activation elements alive per output pixel at a whole decode's peak: 40.3 measured (3.83 GB of bf16 temporaries
# over 47.6M pixels, the 0.9.5 VAE on an H200), rounded up to cover the measured peak (5.92 GB, 13% over the compiled
# figure). Measured on the 0.9.5 decoder only: for the others, pass the compiled analysis (``auto_tiling``).
ACTIVATION_ELEMENTS_PER_PIXEL = 48
# Bytes per output pixel of a tiled decode that do not shrink with the tile: the frame buffer, the stacked decoded
# tiles and their blends, ~6 copies of the 3-channel video in the VAE's dtype, plus the float32 frames. The measured
# tiled decode (diffusers' default tiles) left 30 bytes per pixel in bf16 beyond its tiles' share of the whole
# decode's temporaries; this says 48.
TILED_VIDEO_COPIES = 6
DEFAULT_MARGIN = 1.2
# Overlaps of the tiles ``choose_tiling`` makes: diffusers' defaults' (512 - 448 pixels, 16 - 8 frames), in latents.
SPATIAL_OVERLAP_LATENTS = 2
TEMPORAL_OVERLAP_LATENTS = 1
MIN_SPATIAL_TILE_LATENTS = 8  # 256 pixels: smaller tiles are mostly overlap and boundary


def free_device_bytes(device: jax.Device | None = None) -> int | None:
    """``bytes_limit - bytes_in_use`` from ``device.memory_stats()`` (default: the first local device); None where the
    backend reports neither (the CPU)."""
    device = jax.local_devices()[0] if device is None else device
    try:
        stats = device.memory_stats()
    except (NotImplementedError, RuntimeError):
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    return max(0, int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))


def whole_decode_bytes_estimate(num_frames: int, height: int, width: int, dtype: Any, batch: int = 1) -> int:
    """Device bytes of a whole decode to ``batch`` x ``num_frames`` x ``height`` x ``width`` output pixels with the VAE
    in ``dtype``, its weights excluded: per pixel, ``ACTIVATION_ELEMENTS_PER_PIXEL`` activations and the 3-channel
    video in ``dtype`` plus the float32 frames (114 bytes in bf16, 216 in float32; the module docstring)."""
    itemsize = np.dtype(dtype).itemsize
    per_pixel = (ACTIVATION_ELEMENTS_PER_PIXEL + 3) * itemsize + 3 * 4
    return batch * num_frames * height * width * per_pixel


def analysis_bytes(analysis: Any) -> tuple[int, int] | None:
    """(total, fixed) bytes of a compiled program from its ``memory_analysis()``: total = temp + argument + output -
    alias, fixed = argument (the weights and latents, which a tile does not shrink).

    Takes a ``CompiledMemoryStats`` (or anything with its ``*_size_in_bytes`` attributes), a list of them (one per
    device: the largest), a mapping with ``temp`` / ``argument`` / ``output`` keys (the benchmarks' JSON), a plain
    int (total, nothing fixed), or None (-> None, as the analysis of a backend that gives none).
    """
    if analysis is None:
        return None
    if isinstance(analysis, (int, np.integer)):
        return int(analysis), 0
    if isinstance(analysis, Mapping):
        temp, argument = int(analysis.get("temp", 0)), int(analysis.get("argument", 0))
        output, alias = int(analysis.get("output", 0)), int(analysis.get("alias", 0))
    elif isinstance(analysis, Sequence):
        found = [b for b in map(analysis_bytes, analysis) if b is not None]
        return max(found) if found else None
    else:
        fields = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes")
        if not all(hasattr(analysis, f) for f in fields[:3]):
            return None
        temp, argument, output, alias = (int(getattr(analysis, f, 0) or 0) for f in fields)
    return max(0, temp + argument + output - alias), argument


@dataclasses.dataclass(frozen=True)
class _Axis:
    """One way to cut one latent axis: ``size`` latents per tile every ``stride``, ``count`` tiles, ``extent``
    latents in the largest tile."""

    size: int
    stride: int
    count: int
    extent: int


def _spatial_cuts(length: int) -> list[_Axis]:
    """For each tile count along a spatial axis of ``length`` latents, the smallest tile giving it (as
    ``_spatial_tiled_decode`` cuts: tiles start at ``range(0, length, stride)``)."""
    cuts: dict[int, _Axis] = {}
    longest = length + SPATIAL_OVERLAP_LATENTS  # one tile: its stride covers the axis
    for size in range(min(MIN_SPATIAL_TILE_LATENTS, longest), longest + 1):
        stride = size - SPATIAL_OVERLAP_LATENTS
        count = len(range(0, length, stride))
        cuts.setdefault(count, _Axis(size, stride, count, min(size, length)))
    return sorted(cuts.values(), key=lambda a: a.count)


def _temporal_cuts(frames: int) -> list[_Axis]:
    """For each tile count along ``frames`` latent frames, the shortest tile giving it (as ``_temporal_tiled_decode``
    cuts: ``size + 1`` latent frames every ``stride = size - 1``; trailing one-frame tiles decode nothing)."""
    cuts: dict[int, _Axis] = {}
    for size in range(TEMPORAL_OVERLAP_LATENTS + 1, frames):
        stride = size - TEMPORAL_OVERLAP_LATENTS
        starts = range(0, frames, stride)
        count = sum(1 for k, s in enumerate(starts) if k == 0 or frames - s > 1)
        cuts.setdefault(count, _Axis(size, stride, count, min(size + 1, frames)))
    return sorted(cuts.values(), key=lambda a: a.count)


def choose_tiling(*, free_bytes: int | None, whole_bytes: int | None, output_pixels: int,
                  latent_size: tuple[int, int, int], spatial_ratio: int, temporal_ratio: int,
                  margin: float = DEFAULT_MARGIN, fixed_bytes: int = 0, dtype: Any = "bfloat16",
                  batch: int = 1) -> VAETiling | None:
    """The decode for latents of ``latent_size`` (frames, height, width), ``batch`` videos of ``output_pixels``
    (frames x height x width) each: None = whole, else the ``VAETiling`` with the fewest tiles whose estimate fits.

    Args:
      free_bytes: the device's free bytes (``free_device_bytes``); None keeps the old rule: diffusers' default tiles
        above ``AUTO_TILING_PIXELS`` output pixels, whole at or below.
      whole_bytes: the whole decode's bytes (``analysis_bytes`` of its compiled program); None:
        ``whole_decode_bytes_estimate`` for ``dtype``.
      fixed_bytes: the part of ``whole_bytes`` a tile does not shrink (the program's arguments: weights, latents).
      margin: a decode is taken where ``bytes * margin <= free_bytes``.
      dtype: the VAE's dtype, for the estimate and the tiled decode's frame buffers.

    A tiled decode's bytes are estimated as ``fixed + (whole - fixed) * share + frame buffers``, ``share`` the
    largest tile's fraction of the output pixels and the buffers ``TILED_VIDEO_COPIES`` of the video plus the float32
    frames. Tiles are tried by total count: spatial-only first at each count (whole frames, one ``lax.map``), then
    spatial x temporal; among equal counts the smallest estimate. Where nothing fits, the smallest estimate.
    Tiles overlap as diffusers' defaults do (64 pixels, 8 frames); sizes and strides are multiples of the ratios.
    """
    frames, height, width = latent_size
    if free_bytes is None:
        return VAETiling() if output_pixels > AUTO_TILING_PIXELS else None
    if whole_bytes is None:
        out_frames = (frames - 1) * temporal_ratio + 1
        whole_bytes = whole_decode_bytes_estimate(out_frames, height * spatial_ratio, width * spatial_ratio, dtype,
                                                  batch)
        fixed_bytes = 0
    if whole_bytes * margin <= free_bytes:
        return None

    itemsize = np.dtype(dtype).itemsize
    buffers = batch * output_pixels * 3 * (TILED_VIDEO_COPIES * itemsize + 4)
    scaled = max(0, whole_bytes - fixed_bytes)

    def estimate(rows: _Axis | None, cols: _Axis | None, time: _Axis | None) -> float:
        tile_h = rows.extent if rows else height
        tile_w = cols.extent if cols else width
        tile_f = time.extent if time else frames
        share = min(1.0, (tile_f * tile_h * tile_w) / (frames * height * width))
        return fixed_bytes + scaled * share + buffers

    row_cuts, col_cuts = [None, *_spatial_cuts(height)], [None, *_spatial_cuts(width)]
    candidates = []  # (tiles, temporal?, bytes, rows, cols, time)
    for time in [None, *_temporal_cuts(frames)]:
        for rows in row_cuts:
            for cols in col_cuts:
                if (rows is None) != (cols is None):
                    continue  # one spatial cut needs both axes' (the other: one tile as long as the axis)
                tiles = (rows.count * cols.count if rows else 1) * (time.count if time else 1)
                if tiles == 1:
                    continue  # the whole decode, already refused
                candidates.append((tiles, time is not None, estimate(rows, cols, time), rows, cols, time))
    if not candidates:
        return None
    fitting = [c for c in candidates if c[2] * margin <= free_bytes]
    _, _, _, rows, cols, time = min(fitting, key=lambda c: c[:3]) if fitting else min(candidates, key=lambda c: c[2])
    defaults = VAETiling()
    spatial = rows is not None and (rows.count > 1 or cols.count > 1)
    return VAETiling(
        tile_sample_min_height=rows.size * spatial_ratio if spatial else defaults.tile_sample_min_height,
        tile_sample_min_width=cols.size * spatial_ratio if spatial else defaults.tile_sample_min_width,
        tile_sample_min_num_frames=time.size * temporal_ratio if time else defaults.tile_sample_min_num_frames,
        tile_sample_stride_height=rows.stride * spatial_ratio if spatial else defaults.tile_sample_stride_height,
        tile_sample_stride_width=cols.stride * spatial_ratio if spatial else defaults.tile_sample_stride_width,
        tile_sample_stride_num_frames=(time.stride * temporal_ratio if time
                                       else defaults.tile_sample_stride_num_frames),
        spatial=spatial,
        temporal=time is not None,
    )


def auto_tiling(vae_config: Any, latent_shape: Sequence[int], dtype: Any, compiled_whole: Any = None,
                device: jax.Device | None = None, *, free_bytes: int | None = None,
                margin: float = DEFAULT_MARGIN) -> VAETiling | None:
    """``tiling="auto"`` for latents of ``latent_shape`` ([B, F, H, W, C] or (F, H, W), batch 1) decoded by a VAE of
    ``vae_config`` (a ``VAEConfig``: its ``spatial_ratio`` / ``temporal_ratio``) in ``dtype``: None = whole, else a
    ``VAETiling`` (``choose_tiling``).

    ``compiled_whole``: the whole-decode program's ``memory_analysis()`` (or its total bytes, or a zero-argument
    callable returning either, called only where the device reports its free memory, so a CPU never compiles it);
    None: ``whole_decode_bytes_estimate``. ``free_bytes``: the device's free bytes, default
    ``free_device_bytes(device)``.
    """
    shape = tuple(int(n) for n in latent_shape)
    batch, (frames, height, width) = (shape[0], shape[1:4]) if len(shape) == 5 else (1, shape)
    spatial, temporal = vae_config.spatial_ratio, vae_config.temporal_ratio
    output_pixels = ((frames - 1) * temporal + 1) * height * width * spatial**2
    if free_bytes is None:
        free_bytes = free_device_bytes(device)
    whole = fixed = None
    if free_bytes is not None and compiled_whole is not None:
        analysis = compiled_whole() if callable(compiled_whole) else compiled_whole
        parsed = analysis_bytes(analysis)
        if parsed is not None:
            whole, fixed = parsed
    return choose_tiling(free_bytes=free_bytes, whole_bytes=whole, output_pixels=output_pixels,
                         latent_size=(frames, height, width), spatial_ratio=spatial, temporal_ratio=temporal,
                         margin=margin, fixed_bytes=fixed or 0, dtype=dtype, batch=batch)

"""How ``tiling="auto"`` decodes: whole when the device's free memory holds the whole decode with a margin, else in
the fewest tiles that fit.

The policy (``choose_tiling``) is a pure function of the free bytes, the whole decode's bytes and the shapes. Where
the backend reports no memory (the CPU's ``memory_stats()`` is None) it keeps the old threshold: tiles above
``AUTO_TILING_PIXELS`` output pixels (``THRESHOLD_TILING``), whole below. Its tiles are always the uniform layout's
(``models/vae_tiling.py``): one tile shape, so one decoder in the program, overlapping only by the blend widths.

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

from ltx_jax.models.vae_tiling import VAETiling, uniform_cut
from ltx_jax.pipelines.vae_programs import AUTO_TILING_PIXELS

# Activation elements alive per output pixel at a whole decode's peak: 40.3 measured (3.83 GB of bf16 temporaries
# over 47.6M pixels, the 0.9.5 VAE on an H200), rounded up to cover the measured peak (5.92 GB, 13% over the compiled
# figure). Measured on the 0.9.5 decoder only: for the others, pass the compiled analysis (``auto_tiling``).
ACTIVATION_ELEMENTS_PER_PIXEL = 48
DEFAULT_MARGIN = 1.2
# Overlaps of the uniform tiles ``choose_tiling`` makes, in latents: diffusers' blend widths (512 - 448 pixels;
# 16 - 8 frames, which in latent frames is one of blend plus the frame both tiles share).
SPATIAL_OVERLAP_LATENTS = 2
TEMPORAL_OVERLAP_LATENTS = 2
MIN_SPATIAL_TILE_LATENTS = 8  # 256 pixels: smaller tiles are mostly overlap and boundary
# Where the backend reports no memory: diffusers' default spatial tiles in the uniform layout, whole frames (the
# old rule's temporal tiles decoded every latent frame three times).
THRESHOLD_TILING = VAETiling(layout="uniform", temporal=False)


def tiled_buffer_bytes(values: int, dtype: Any) -> int:
    """Bytes of a uniform tiled decode that do not shrink with the tile, for ``values`` output pixels: 3 channels of
    the float32 frame buffer (counted twice, for an update XLA might not do in place), the video in ``dtype`` and the
    float32 frames the pipeline returns."""
    return values * 3 * (2 * 4 + np.dtype(dtype).itemsize + 4)


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
    """One way to cut one latent axis in uniform tiles (``vae_tiling.uniform_cut``): ``count`` tiles of ``size``
    latents overlapping by ``overlap``."""

    size: int
    count: int
    overlap: int


def _cuts(length: int, overlap: int, smallest: int) -> list[_Axis]:
    """For each tile count along an axis of ``length`` latents, the smallest uniform tile giving it (at least
    ``smallest`` latents, or the whole axis)."""
    cuts: dict[int, _Axis] = {}
    for size in range(min(max(smallest, overlap + 1), length), length + 1):
        _, starts = uniform_cut(length, size, overlap)
        cuts.setdefault(len(starts), _Axis(size, len(starts), overlap))
    return sorted(cuts.values(), key=lambda a: a.count)


def choose_tiling(*, free_bytes: int | None, whole_bytes: int | None, output_pixels: int,
                  latent_size: tuple[int, int, int], spatial_ratio: int, temporal_ratio: int,
                  margin: float = DEFAULT_MARGIN, fixed_bytes: int = 0, dtype: Any = "bfloat16",
                  batch: int = 1) -> VAETiling | None:
    """The decode for latents of ``latent_size`` (frames, height, width), ``batch`` videos of ``output_pixels``
    (frames x height x width) each: None = whole, else the uniform ``VAETiling`` with the fewest tiles whose estimate
    fits.

    Args:
      free_bytes: the device's free bytes (``free_device_bytes``); None keeps the old rule: ``THRESHOLD_TILING``
        above ``AUTO_TILING_PIXELS`` output pixels, whole at or below.
      whole_bytes: the whole decode's bytes (``analysis_bytes`` of its compiled program); None:
        ``whole_decode_bytes_estimate`` for ``dtype``.
      fixed_bytes: the part of ``whole_bytes`` a tile does not shrink (the program's arguments: weights, latents).
      margin: a decode is taken where ``bytes * margin <= free_bytes``.
      dtype: the VAE's dtype, for the estimate and the tiled decode's frame buffers.

    A tiled decode's bytes are estimated as ``fixed + (whole - fixed) * share + buffers``, ``share`` the tile's
    fraction of the latents and the buffers ``tiled_buffer_bytes``. Tiles are tried by total count: spatial-only
    first at each count (whole frames), then spatial x temporal; among equal counts the smallest estimate. Where
    nothing fits, the smallest estimate. Tiles overlap by diffusers' blend widths (64 pixels, 8 frames).
    """
    frames, height, width = latent_size
    if free_bytes is None:
        return THRESHOLD_TILING if output_pixels > AUTO_TILING_PIXELS else None
    if whole_bytes is None:
        out_frames = (frames - 1) * temporal_ratio + 1
        whole_bytes = whole_decode_bytes_estimate(out_frames, height * spatial_ratio, width * spatial_ratio, dtype,
                                                  batch)
        fixed_bytes = 0
    if whole_bytes * margin <= free_bytes:
        return None

    buffers = tiled_buffer_bytes(batch * output_pixels, dtype)
    scaled = max(0, whole_bytes - fixed_bytes)

    def estimate(rows: _Axis, cols: _Axis, time: _Axis) -> float:
        share = min(1.0, (time.size * rows.size * cols.size) / (frames * height * width))
        return fixed_bytes + scaled * share + buffers

    whole_t = _Axis(frames, 1, TEMPORAL_OVERLAP_LATENTS)
    row_cuts = _cuts(height, SPATIAL_OVERLAP_LATENTS, MIN_SPATIAL_TILE_LATENTS)
    col_cuts = _cuts(width, SPATIAL_OVERLAP_LATENTS, MIN_SPATIAL_TILE_LATENTS)
    time_cuts = [c for c in _cuts(frames, TEMPORAL_OVERLAP_LATENTS, TEMPORAL_OVERLAP_LATENTS + 1) if c.count > 1]
    candidates = []  # (tiles, temporal?, bytes, rows, cols, time)
    for time in [whole_t, *time_cuts]:
        for rows in row_cuts:
            for cols in col_cuts:
                tiles = rows.count * cols.count * time.count
                if tiles > 1:
                    candidates.append((tiles, time.count > 1, estimate(rows, cols, time), rows, cols, time))
    if not candidates:
        return None
    fitting = [c for c in candidates if c[2] * margin <= free_bytes]
    _, _, _, rows, cols, time = min(fitting, key=lambda c: c[:3]) if fitting else min(candidates, key=lambda c: c[2])
    spatial = rows.count > 1 or cols.count > 1
    temporal = time.count > 1
    s, t = spatial_ratio, temporal_ratio
    tile_h, tile_w = (max(a.size, SPATIAL_OVERLAP_LATENTS + 1) for a in (rows, cols))  # one tile: the axis, stride > 0
    return VAETiling(
        tile_sample_min_height=tile_h * s, tile_sample_min_width=tile_w * s,
        tile_sample_min_num_frames=(time.size - 1) * t if temporal else THRESHOLD_TILING.tile_sample_min_num_frames,
        tile_sample_stride_height=(tile_h - SPATIAL_OVERLAP_LATENTS) * s,
        tile_sample_stride_width=(tile_w - SPATIAL_OVERLAP_LATENTS) * s,
        tile_sample_stride_num_frames=((time.size - TEMPORAL_OVERLAP_LATENTS) * t if temporal
                                       else THRESHOLD_TILING.tile_sample_stride_num_frames),
        spatial=spatial, temporal=temporal, layout="uniform",
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

"""``tiling="auto"``'s policy (ltx_jax/pipelines/tiling_policy.py) on made-up memory sizes: whole where it fits with
the margin, else the fewest tiles whose estimate fits, the old pixel threshold where the backend gives no memory."""

import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltx_jax.configs import VAEConfig
from ltx_jax.models.vae import VAETiling
from ltx_jax.pipelines import tiling_policy as tp
from ltx_jax.pipelines.vae_programs import AUTO_TILING_PIXELS

GB = 10**9
VAE = VAEConfig()  # released VAEs: 32 pixels, 8 frames per latent
S, T = VAE.spatial_ratio, VAE.temporal_ratio
# [B, F, H, W, C] latents -> output: 121x512x768, 257x704x1216, 121x512x768 x 2 videos, 9x256x256.
SHAPES = [(1, 16, 16, 24, 128), (1, 33, 22, 38, 128), (2, 16, 16, 24, 128), (1, 2, 8, 8, 128)]
FREE = [141 * GB, 80 * GB, 24 * GB, 16 * GB, 12 * GB, 8 * GB, 4 * GB, 2 * GB]

# The H200 run (/work/shared/gpu-runs/2026-12-04-h200/run_b.json, section vae): the 0.9.5 VAE's bf16 decode of
# 121x512x768, whole and with diffusers' default tiles: memory_analysis() and the device's peak bytes.
H200_WHOLE = {"temp": 3832405920, "argument": 1107202150, "output": 285474816, "peak": 5915121920}
H200_TILED = {"temp": 1486860880, "argument": 1107202150, "output": 285474816, "peak": 3257812224}


def _output(shape):
    batch, frames, height, width, _ = shape
    return batch, (frames - 1) * T + 1, height * S, width * S


def _axes(tiling: VAETiling, shape):
    """(tile, count) per latent axis (frames, height, width) of a uniform tiling: its cutting rule, written again."""
    _, frames, height, width, _ = shape

    def cut(length, max_tile, overlap):
        if length <= max_tile:
            return length, 1
        count = -(-(length - overlap) // (max_tile - overlap))
        return -(-(length + (count - 1) * overlap) // count), count

    time = cut(frames, tiling.tile_sample_min_num_frames // T + 1,
               (tiling.tile_sample_min_num_frames - tiling.tile_sample_stride_num_frames) // T + 1
               ) if tiling.temporal else (frames, 1)
    rows = cut(height, tiling.tile_sample_min_height // S,
               (tiling.tile_sample_min_height - tiling.tile_sample_stride_height) // S
               ) if tiling.spatial else (height, 1)
    cols = cut(width, tiling.tile_sample_min_width // S,
               (tiling.tile_sample_min_width - tiling.tile_sample_stride_width) // S
               ) if tiling.spatial else (width, 1)
    return time, rows, cols


def _tile_count(tiling: VAETiling | None, shape) -> int:
    """Tiles the uniform layout decodes, 1 for a whole decode."""
    if tiling is None:
        return 1
    assert tiling.layout == "uniform"
    return int(np.prod([count for _, count in _axes(tiling, shape)]))


def _tiled_bytes(tiling: VAETiling | None, shape, whole: int, fixed: int = 0, dtype=jnp.bfloat16) -> float:
    """The documented estimate of a decode's bytes: whole, or fixed + (whole - fixed) x the tile's share of the
    latents + the frame buffers (the float32 buffer twice, the video in dtype, the float32 frames)."""
    if tiling is None:
        return whole
    batch, frames, height, width, _ = shape
    _, out_f, out_h, out_w = _output(shape)
    share = np.prod([tile for tile, _ in _axes(tiling, shape)]) / (frames * height * width)
    buffers = batch * out_f * out_h * out_w * 3 * (2 * 4 + np.dtype(dtype).itemsize + 4)
    return fixed + (whole - fixed) * share + buffers


def _all_tilings(shape):
    """Every uniform tiling of the policy's family (diffusers' blend widths, any tile sizes): spatial-only,
    temporal-only, both."""
    _, frames, height, width, _ = shape
    heights = range(tp.MIN_SPATIAL_TILE_LATENTS, height + 3)
    widths = range(tp.MIN_SPATIAL_TILE_LATENTS, width + 3)
    times = range(3, frames + 1)  # latent frames per tile (overlap 2)
    for h, w in itertools.product(heights, widths):
        yield VAETiling(h * S, w * S, 16, (h - 2) * S, (w - 2) * S, 8, spatial=True, temporal=False, layout="uniform")
        for f in times:
            yield VAETiling(h * S, w * S, (f - 1) * T, (h - 2) * S, (w - 2) * S, (f - 2) * T, spatial=True,
                            temporal=True, layout="uniform")
    for f in times:
        yield VAETiling(512, 512, (f - 1) * T, 448, 448, (f - 2) * T, spatial=False, temporal=True, layout="uniform")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("free", FREE)
def test_whole_when_it_fits_else_the_fewest_tiles_that_fit(shape, free):
    batch, out_f, out_h, out_w = _output(shape)
    whole = tp.whole_decode_bytes_estimate(out_f, out_h, out_w, jnp.bfloat16, batch)
    tiling = tp.auto_tiling(VAE, shape, jnp.bfloat16, free_bytes=free)
    fits = whole * tp.DEFAULT_MARGIN <= free
    print(f"{shape} free {free / GB:.0f} GB whole {whole / GB:.2f} GB -> {tiling}")
    assert (tiling is None) == fits
    if fits:
        return
    tiling.check(32, 8)
    chosen = _tiled_bytes(tiling, shape, whole)
    count = _tile_count(tiling, shape)
    fitting = [t for t in _all_tilings(shape) if _tiled_bytes(t, shape, whole) * tp.DEFAULT_MARGIN <= free]
    if fitting:
        assert chosen * tp.DEFAULT_MARGIN <= free, f"{chosen / GB:.2f} GB x margin > {free / GB} GB"
        fewest = min(_tile_count(t, shape) for t in fitting)
        print(f"  {count} tiles, estimate {chosen / GB:.2f} GB; fewest that fit {fewest}")
        assert count == fewest
    else:  # nothing fits: the smallest estimate
        smallest = min(_tiled_bytes(t, shape, whole) for t in _all_tilings(shape))
        print(f"  nothing fits; estimate {chosen / GB:.2f} GB, smallest {smallest / GB:.2f} GB")
        assert chosen == pytest.approx(smallest)


def test_768x512x121_bf16_decodes_whole_on_24_gb():
    shape = (1, 16, 16, 24, 128)
    assert tp.auto_tiling(VAE, shape, jnp.bfloat16, free_bytes=24 * GB) is None
    # also from the H200's compiled whole decode (weights counted again in its arguments)
    assert tp.auto_tiling(VAE, shape, jnp.bfloat16, compiled_whole=H200_WHOLE, free_bytes=24 * GB) is None
    # and with a 24 GB card's default JAX pool (75%) holding the 2B transformer (~4 GB) and the VAE (~1.1 GB)
    assert tp.auto_tiling(VAE, shape, jnp.bfloat16, free_bytes=int(0.75 * 24 * GB) - 5 * GB) is None


def test_estimate_covers_the_h200_measurement():
    """The bf16 estimate per output pixel covers the measured whole decode's peak beyond its arguments (with the
    float32 frames the pipeline adds, 12 bytes per pixel) by at most 25%; the tiled estimate covers the tiled
    decode's peak, from the whole decode's compiled analysis."""
    pixels = 121 * 512 * 768
    estimate = tp.whole_decode_bytes_estimate(121, 512, 768, jnp.bfloat16)
    measured = H200_WHOLE["peak"] - H200_WHOLE["argument"] + 12 * pixels
    print(f"estimate {estimate / pixels:.1f} B/pixel, measured peak {measured / pixels:.1f} B/pixel")
    assert measured <= estimate <= 1.25 * measured
    # The uniform layout's tiled peak is not measured yet (no GPU since it was written): its estimate must at
    # least cover the peak of diffusers' layout at the same tile size, which holds more tiles and copies at once.
    whole, fixed = tp.analysis_bytes(H200_WHOLE)
    tiled = _tiled_bytes(VAETiling(layout="uniform"), (1, 16, 16, 24, 128), whole, fixed)
    print(f"uniform tiled estimate {tiled / GB:.2f} GB, diffusers' tiled peak {H200_TILED['peak'] / GB:.2f} GB")
    assert tiled >= H200_TILED["peak"]


@pytest.mark.parametrize("shape", SHAPES)
def test_no_memory_keeps_the_pixel_threshold(shape):
    batch, out_f, out_h, out_w = _output(shape)
    expected = tp.THRESHOLD_TILING if out_f * out_h * out_w > AUTO_TILING_PIXELS else None
    assert tp.auto_tiling(VAE, shape, jnp.bfloat16, free_bytes=None, device=_FakeDevice(None)) == expected
    assert tp.choose_tiling(free_bytes=None, whole_bytes=10**15, output_pixels=out_f * out_h * out_w,
                            latent_size=shape[1:4], spatial_ratio=S, temporal_ratio=T) == expected


def test_threshold_edges():
    common = dict(free_bytes=None, whole_bytes=None, latent_size=(7, 16, 24), spatial_ratio=S, temporal_ratio=T)
    assert tp.choose_tiling(output_pixels=AUTO_TILING_PIXELS, **common) is None
    assert tp.choose_tiling(output_pixels=AUTO_TILING_PIXELS + 1, **common) == tp.THRESHOLD_TILING


def test_margin_and_compiled_bytes():
    """The compiled analysis, when given, replaces the estimate: whole exactly where bytes x margin fit."""
    shape = (1, 16, 16, 24, 128)
    whole = 10 * GB
    assert tp.auto_tiling(VAE, shape, jnp.float32, compiled_whole=whole, free_bytes=12 * GB) is None
    assert tp.auto_tiling(VAE, shape, jnp.float32, compiled_whole=whole, free_bytes=12 * GB - 1) is not None
    assert tp.auto_tiling(VAE, shape, jnp.float32, compiled_whole=whole, free_bytes=11 * GB, margin=1.1) is None
    calls = []

    def lazy():
        calls.append(1)
        return whole

    assert tp.auto_tiling(VAE, shape, jnp.float32, compiled_whole=lazy, device=_FakeDevice(None)) == tp.THRESHOLD_TILING
    assert not calls, "no memory figures: the whole decode is not compiled"
    assert tp.auto_tiling(VAE, shape, jnp.float32, compiled_whole=lazy, free_bytes=20 * GB) is None
    assert calls == [1]


class _FakeDevice:
    def __init__(self, stats):
        self.stats = stats

    def memory_stats(self):
        return self.stats


def test_free_device_bytes():
    assert tp.free_device_bytes(_FakeDevice(None)) is None
    assert tp.free_device_bytes(_FakeDevice({})) is None
    assert tp.free_device_bytes(_FakeDevice({"bytes_limit": 24 * GB, "bytes_in_use": 5 * GB})) == 19 * GB
    assert tp.free_device_bytes(_FakeDevice({"bytes_limit": GB, "bytes_in_use": 2 * GB})) == 0
    free = tp.free_device_bytes()  # this machine's first device: None on the CPU, a count elsewhere
    print(f"{jax.devices()[0].platform}: free {free}")
    assert free is None or free >= 0
    if jax.devices()[0].platform == "cpu":
        assert free is None


def test_analysis_bytes_from_a_compiled_program():
    """``memory_analysis()`` of a real compiled function (CPU here): parsed where the backend gives one."""
    x = jnp.ones((64, 128), jnp.float32)
    compiled = jax.jit(lambda a: jnp.tanh(a @ a.T) @ a).lower(x).compile()
    analysis = compiled.memory_analysis()
    parsed = tp.analysis_bytes(analysis)
    print(f"memory_analysis: {analysis} -> {parsed}")
    if analysis is None:
        assert parsed is None
        return
    total, fixed = parsed
    assert fixed == analysis.argument_size_in_bytes == x.nbytes
    assert total == (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
                     + analysis.output_size_in_bytes - analysis.alias_size_in_bytes)
    assert total >= x.nbytes + 64 * 128 * 4  # the argument and the output at least
    assert tp.analysis_bytes([analysis, None]) == parsed
    # and through auto_tiling: a tiny decode fits a made-up 1 GB
    assert tp.auto_tiling(VAE, (1, 2, 2, 2, 128), jnp.float32, compiled_whole=analysis, free_bytes=GB) is None


def test_analysis_bytes_forms():
    assert tp.analysis_bytes(None) is None
    assert tp.analysis_bytes(123) == (123, 0)
    assert tp.analysis_bytes({"temp": 5, "argument": 3, "output": 2, "alias": 1}) == (9, 3)
    assert tp.analysis_bytes(object()) is None
    assert tp.analysis_bytes([None]) is None


def test_tilings_are_valid_and_decode_shapes_match():
    """Every answer passes ``VAETiling.check(32, 8)``; spatial-only answers come first at equal tile counts."""
    for shape, free in itertools.product(SHAPES, [GB, 3 * GB, 6 * GB, 12 * GB, 30 * GB]):
        tiling = tp.auto_tiling(VAE, shape, jnp.bfloat16, free_bytes=free)
        if tiling is not None:
            tiling.check(32, 8)
            assert tiling.spatial or tiling.temporal


def _largest_frames(free: float, height: int, width: int) -> int:
    """The most 8k+1 frames of height x width whose whole bf16 decode fits ``free`` bytes with the margin."""
    per_frame = tp.whole_decode_bytes_estimate(1, height, width, jnp.bfloat16) * tp.DEFAULT_MARGIN
    return int((free / per_frame - 1) // 8) * 8 + 1


def test_the_documented_table_of_largest_whole_decodes():
    """The table in README.md and in tiling_policy's docstring is the estimate's: per card (GB = 1e9 bytes), whole
    card and JAX's default 75% pool, the largest frame counts at 768x512 and 1216x704."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    doc = tp.__doc__
    per_pixel = tp.whole_decode_bytes_estimate(1, 1, 1, jnp.bfloat16) * tp.DEFAULT_MARGIN
    for card in (24, 40, 80, 141):
        full, pool = card * GB, 0.75 * card * GB
        pixels = f"{round(full / per_pixel / 1e6)} M / {round(pool / per_pixel / 1e6)} M"
        small = f"{_largest_frames(full, 512, 768)} / {_largest_frames(pool, 512, 768)}"
        large = f"{_largest_frames(full, 704, 1216)} / {_largest_frames(pool, 704, 1216)}"
        print(f"{card} GB: {pixels} pixels, {small} frames at 768x512, {large} at 1216x704")
        assert f"| {pixels} | {small} | {large} |" in readme
        assert f"| {small} | {large} |" in doc
        assert f"| {round(full / per_pixel / 1e6)} M pixels |" in doc or f"| {round(full / per_pixel / 1e6)} M |" in doc

"""Streamed temporal decoding (ltx_jax/pipelines/decode_stream.py): windows of one shape that cover the video, blend
weights adding up to 1, one window equal to the whole decode, several windows reassembling a local stand-in decoder
exactly (its noise included) and staying as close to the tiny VAE's whole decode as diffusers' temporal tiles, each
frame yielded once and in order and not kept, no compile after the first window, the frames written straight into a
file, and benchmarks/bench_long_video.py's core: peak memory that does not grow with the video's length."""

from __future__ import annotations

import dataclasses
import gc
import os
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compile_counter, rel_err, report

from benchmarks.bench_long_video import GOAL_RATIO, measure_stages, ratios, table

from ltx_jax.models import init_params
from ltx_jax.models.vae import AutoencoderKLLTXVideo, VAETiling
from ltx_jax.pipelines.base import VAEStages
from ltx_jax.pipelines.decode_stream import MAX_WINDOW_LATENT_FRAMES, plan_windows, stream_window_latent_frames
from ltx_jax.pipelines.reporting import NonFiniteError, StageTimings
from ltx_jax.releases import VAE_PRESETS
from ltx_jax.tiny_random import TINY_VAE
from ltx_jax.video import read_video, write_video

CALL = dict(decode_timestep=0.05, decode_noise_scale=0.3, key=jax.random.PRNGKey(3))  # noise: sliced, not redrawn
ONE_WINDOW_TOL = 1e-5  # max |stream - whole| / max |whole|: the same program but for the blend's x 1 and + 0


class Stages(VAEStages):
    """A VAE's stages alone: what the streamed decode needs of a pipeline."""

    def __init__(self, vae, params):
        self.vae, self.vae_params, self.last_timings = vae, params, StageTimings()


@pytest.fixture(scope="module")
def tiny():
    vae = AutoencoderKLLTXVideo(TINY_VAE)
    return Stages(vae, init_params(vae, jax.random.PRNGKey(0)))


def latents(frames: int, channels: int = TINY_VAE.latent_channels, height: int = 2, width: int = 3, seed: int = 0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((1, frames, height, width, channels)), jnp.float32)


def streamed(stages, z, **kwargs) -> tuple[np.ndarray, list[int]]:
    chunks = list(stages.decode_video_stream(z, **kwargs))
    return np.concatenate(chunks), [len(c) for c in chunks]


# ------------------------------------------------------------------------------------------------ the windows


@pytest.mark.parametrize("frames, window, overlap", [(12, 5, 2), (61, 7, 2), (181, 7, 2), (9, 3, 1), (30, 16, 3),
                                                     (5, 16, 2), (1, 7, 2)])
def test_windows_are_one_shape_and_their_weights_add_up_to_one(frames, window, overlap):
    plan = plan_windows(frames, window, overlap, temporal_ratio=8)
    assert plan.window <= window and plan.starts[0] == 0 and plan.starts[-1] + plan.window == frames
    assert all(a + plan.window - b >= overlap for a, b in zip(plan.starts, plan.starts[1:]))
    assert sum(plan.advances) == plan.num_frames == 8 * (frames - 1) + 1  # each frame made final once
    assert all(plan.window_frames - a <= plan.carry_frames for a in plan.advances[:-1])
    cover = np.zeros(plan.num_frames)
    for start, row in zip(plan.starts, plan.weights()):
        cover[8 * start:8 * start + plan.window_frames] += row
    np.testing.assert_allclose(cover, 1.0, rtol=0, atol=1e-6)
    print(f"\n[stream] {frames} latent frames, window <= {window}, overlap >= {overlap}: {len(plan.starts)} windows "
          f"of {plan.window} at {plan.starts[:6]}{'...' if len(plan.starts) > 6 else ''}")


def test_windows_are_checked():
    with pytest.raises(ValueError, match="window_latent_frames=2 must exceed overlap_latent_frames=2"):
        plan_windows(10, 2, 2)
    with pytest.raises(ValueError, match="overlap_latent_frames must be a whole number >= 1, got 0"):
        plan_windows(10, 4, 0)


def test_the_default_window_follows_the_free_memory():
    """The CPU (no memory reported): the pixel threshold's 49 frames at 768x512; a large card: the cap; a small
    free memory: smaller windows, down to the overlap + 1; never longer than the video."""
    cfg, shape = VAE_PRESETS["ltx-video-0.9.5"], (1, 181, 16, 24, 128)
    found = {free: stream_window_latent_frames(cfg, shape, jnp.bfloat16, free_bytes=free)
             for free in (None, 80e9, 8e9, 2e9, 1e6)}
    print(f"\n[stream] default window (latent frames) at 768x512 by free bytes: {found}")
    assert found[None] == 7 and found[80e9] == MAX_WINDOW_LATENT_FRAMES and found[1e6] == 3
    assert MAX_WINDOW_LATENT_FRAMES > found[8e9] > found[2e9] > 3
    assert stream_window_latent_frames(cfg, (1, 5, 16, 24, 128), jnp.bfloat16, free_bytes=80e9) == 5


# ---------------------------------------------------------------------------------- against the whole decode


def test_one_window_is_the_whole_decode(tiny):
    z = latents(9)
    whole = tiny.decode_video(z, tiling=None, **CALL)[0]
    one, sizes = streamed(tiny, z, window_latent_frames=9, tiling=None, uint8=False, **CALL)
    err = rel_err(one, whole)
    report("stream one window vs whole decode (tiny VAE, decode noise)", err, ONE_WINDOW_TOL)
    assert sizes == [65] and err <= ONE_WINDOW_TOL


@dataclasses.dataclass(frozen=True)
class LocalConfig:
    latent_channels: int = 5
    spatial_ratio: int = 2
    temporal_ratio: int = 4
    timestep_conditioning: bool = True  # the decode noise is mixed in: its slices must be the whole decode's


@dataclasses.dataclass(frozen=True)
class LocalVAE:
    """A stand-in VAE whose every output pixel depends on its own latent only (frame j of a window <- latent
    ceil(j / r_t), as the causal VAE lays frames out): any correct streaming of it equals its whole decode."""

    config: LocalConfig = LocalConfig()
    dtype: Any = jnp.float32

    def apply(self, variables, latents, *args, method: str, **kwargs):
        if method == "denormalize_latents":
            return latents * 0.5
        assert method == "decode", method
        rs, rt = self.config.spatial_ratio, self.config.temporal_ratio
        index = -(-np.arange(rt * (latents.shape[1] - 1) + 1) // rt)
        video = jnp.take(latents, jnp.asarray(index), axis=1)
        return jnp.repeat(jnp.repeat(video, rs, axis=2), rs, axis=3)[..., :3]


@pytest.mark.parametrize("frames, window, overlap", [(13, 4, 2), (20, 6, 3), (9, 3, 1)])
def test_windows_reassemble_a_local_decoder_exactly(frames, window, overlap):
    """The blend's weights add up to 1 at every frame, each window's frames land where they belong, each frame comes
    once and in order, and the decode noise is the whole decode's, sliced."""
    stages = Stages(LocalVAE(), {})
    z = jnp.asarray(np.random.default_rng(frames).uniform(-1, 1, (1, frames, 3, 4, 5)), jnp.float32)
    whole = stages.decode_video(z, tiling=None, **CALL)[0]
    out, sizes = streamed(stages, z, window_latent_frames=window, overlap_latent_frames=overlap, tiling=None,
                          uint8=False, **CALL)
    plan = plan_windows(frames, window, overlap, temporal_ratio=4)
    assert sizes == list(plan.advances) and all(sizes) and sum(sizes) == len(whole) == 4 * (frames - 1) + 1
    err = float(np.abs(out - whole).max())
    print(f"\n[stream] local decoder, {len(sizes)} windows {sizes}: max |stream - whole| {err:.1e} (tolerance 1e-6)")
    assert err <= 1e-6


def test_windows_stay_as_close_to_the_whole_decode_as_diffusers_temporal_tiles(tiny):
    """The tiny VAE sees across a window's edge (random weights: far), so the bound is diffusers' temporal tiled
    decode of the same windows (32 frames every 24: 5 latent frames overlapping by 2) against the whole decode."""
    z = latents(12, seed=5)
    whole = tiny.decode_video(z, tiling=None, **CALL)[0]
    out, sizes = streamed(tiny, z, window_latent_frames=5, tiling=None, uint8=False, **CALL)
    frames = dict(tile_sample_min_num_frames=32, tile_sample_stride_num_frames=24, spatial=False)
    diffusers = tiny.decode_video(z, tiling=VAETiling(**frames), **CALL)[0]
    bound, err = rel_err(diffusers, whole), rel_err(out, whole)
    print(f"\n[stream] {len(sizes)} windows {sizes}: vs whole {err:.3f}; diffusers' temporal tiles vs whole "
          f"{bound:.3f}")
    report("stream 4 windows vs whole decode (tiny VAE)", err, bound)
    assert 1e-3 < err <= bound


def test_a_second_window_compiles_nothing_and_no_frame_is_kept(tiny):
    """After the first window nothing compiles; the chunks the consumer dropped are freed (the iterator holds only
    the latest, until its next window)."""
    z = latents(10, seed=4)  # decode_to_file's shapes below: one program for the tests after this one
    chunks = tiny.decode_video_stream(z, window_latent_frames=4, **CALL)
    first = next(chunks)
    count, kept = len(first), [weakref.ref(first)]
    del first
    with compile_counter() as compiles:
        for chunk in chunks:
            count += len(chunk)
            kept.append(weakref.ref(chunk))
            del chunk
            gc.collect()
            assert all(ref() is None for ref in kept[:-1])  # the iterator holds the latest until the next window
    print(f"\n[stream] {len(kept)} windows: compiles after the first window: {len(compiles)}; every chunk freed "
          "once dropped")
    assert len(kept) >= 3 and compiles == [] and count == 8 * 9 + 1


# --------------------------------------------------------------------------------------------- into a file


def test_decode_to_file_writes_the_streamed_frames(tiny, tmp_path):
    z = latents(10, seed=4)
    frames, _ = streamed(tiny, z, window_latent_frames=4, **CALL)
    paths = tiny.decode_to_file(z, tmp_path / "v.mp4", fps=24, window_latent_frames=4, **CALL)
    reference = write_video(frames, tmp_path / "reference.mp4", fps=24)
    assert paths == [str(tmp_path / "v.mp4")]
    np.testing.assert_array_equal(read_video(paths[0]), read_video(reference[0]))
    assert sorted(os.listdir(tmp_path)) == ["reference.mp4", "v.mp4"]


def test_a_failing_window_leaves_no_file(tiny, tmp_path):
    """NaN latents in the last window: the earlier windows were written, then the error comes through unchanged
    and nothing is left (no file, no temporary, no ffmpeg)."""
    z = latents(10, seed=4).at[:, -1].set(jnp.nan)
    with pytest.raises(NonFiniteError, match=r"decoding produced NaN or Inf frames in window (\d+) of \1 \(frames "):
        tiny.decode_to_file(z, tmp_path / "v.mp4", window_latent_frames=4, **CALL)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match=r"a streamed decode takes one video's \[1, F, H, W, 8\]"):
        tiny.decode_to_file(jnp.zeros((2, 3, 2, 3, 8)), tmp_path / "v.mp4")
    assert os.listdir(tmp_path) == []


def test_peak_memory_does_not_grow_with_the_length(tiny, tmp_path):
    """benchmarks/bench_long_video.py's core in this process at 96x64: a video 4x as long (18 windows, not 4) peaks
    within ``GOAL_RATIO`` of the shorter one's: this process's RSS while decoding and writing (sampled), ffmpeg's, and
    the compiled window program's memory (the device's, which the CPU does not report). Both lengths' windows start
    every 2 latent frames: the carry, a program argument, is as long as the largest overlap the spreading gives."""
    rows = [measure_stages(tiny, frames, 64, 96, str(tmp_path), window=4) for frames in (73, 297)]
    found = ratios(rows)
    print("\n" + table(rows, found))
    assert [r["windows"] for r in rows] == [4, 18] and rows[0]["window_frames"] == rows[1]["window_frames"] == 25
    for key in ("peak_during_bytes", "peak_ffmpeg_bytes", "compiled_window_bytes"):
        report(f"bench_long_video {key} 297 / 73 frames", found[key], GOAL_RATIO)
        assert found[key] <= GOAL_RATIO, (key, found)
    assert list(tmp_path.iterdir()) == []  # the videos were removed, no temporary left

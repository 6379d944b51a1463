"""Long multi-prompt generation (``LTXI2VLongMultiPromptPipeline``) against diffusers' pipeline of that name, on tiny
random components in float32: 3 windows, 2 prompts, a conditioning image, CFG, ancestral steps.

Noise is pinned on both sides: diffusers' ``randn_tensor`` (its windows' starting noise, the scheduler's ancestral
noise, the decode noise) is replaced by our keys' draws, transposed to its channels-first layout. diffusers decodes
in one 1 x 1 tile here (its default 4 x 4 grid of feathered tiles is its own decode recipe; ours decodes whole).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import compile_counter, psnr, report

import diffusers.pipelines.ltx.pipeline_ltx_i2v_long_multi_prompt as long_module
import diffusers.schedulers.scheduling_ltx_euler_ancestral_rf as rf_module
from diffusers import LTXEulerAncestralRFScheduler, LTXI2VLongMultiPromptPipeline as TorchLongPipeline
import jax

from ltx_jax.pipelines import LTXI2VLongMultiPromptPipeline
from ltx_jax.pipelines.contracts import CallKeys
from ltx_jax.pipelines.long_video import window_keys
from ltx_jax.sampling import windows as win

PSNR_MIN_DB = 45.0
HEIGHT = WIDTH = 64  # latent 2 x 2
TILE, OVERLAP = 40, 24  # 5 and 3 latent frames: windows (0, 5), (2, 7), (4, 9)
NUM_FRAMES = 65  # 9 latent frames
SIGMAS = [1.0, 0.95, 0.8, 0.55, 0.25, 0.0]
ARGS = dict(prompt="a red fox walks | a white cat sleeps", negative_prompt="blurry", height=HEIGHT, width=WIDTH,
            num_frames=NUM_FRAMES, guidance_scale=2.5, sigmas=SIGMAS, seed=3, cond_strength=0.6,
            temporal_tile_size=TILE, temporal_overlap=OVERLAP, temporal_overlap_cond_strength=0.5, adain_factor=0.25,
            decode_timestep=0.05, decode_noise_scale=0.025)


@pytest.fixture(scope="module")
def ours(tiny_reference):
    return LTXI2VLongMultiPromptPipeline.from_pretrained(tiny_reference["root"], dtype="float32",
                                                         compilation_cache=False, progress=False)


@pytest.fixture(scope="module")
def image():
    rng = np.random.RandomState(5)
    return PIL.Image.fromarray(rng.randint(0, 256, (HEIGHT, WIDTH, 3), np.uint8))


def _pinned_noise(ours, request):
    """diffusers' random draws in call order, each as our keys draw it: per window the starting noise (5-D) and each
    ancestral step's (packed), then the decode noise (5-D, one frame longer than the video)."""
    keys = CallKeys.from_seed(request.seed)
    grid = ours.latent_grid(request.height, request.width, request.num_frames)
    windows = win.split_into_temporal_windows(grid.frames, TILE // 8, OVERLAP // 8)
    channels = ours.transformer.config.in_channels
    state = {"window": -1, "step": 0}

    def randn(shape, generator=None, device=None, dtype=None, **_):
        shape = tuple(shape)
        if len(shape) == 5 and state["window"] + 1 < len(windows):  # a window's starting noise [1, C, T, H, W]
            state["window"] += 1
            state["step"] = 0
            init_key, _ = window_keys(keys, windows[state["window"]][0])
            noise = jax.random.normal(init_key, (1, shape[2], shape[3], shape[4], channels))
        elif len(shape) == 5:  # the decode noise [1, C, F + 1, H, W]
            noise = jax.random.normal(keys.decode, (1, shape[2], shape[3], shape[4], channels))
        else:  # an ancestral step's noise [1, N, C]
            _, step_key = window_keys(keys, windows[state["window"]][0])
            noise = jax.random.normal(jax.random.fold_in(step_key, state["step"]), shape)
            state["step"] += 1
            return torch.from_numpy(np.array(noise)).to(dtype or torch.float32)
        return torch.from_numpy(np.array(noise)).permute(0, 4, 1, 2, 3).contiguous().to(dtype or torch.float32)

    return randn


@pytest.fixture(scope="module")
def reference_run(tiny_reference, ours, image):
    """diffusers' latents [1, C, F, H, W] and frames [F, H, W, 3] under our noise."""
    ref = tiny_reference["pipe"]
    scheduler = LTXEulerAncestralRFScheduler.from_config(ref.scheduler.config)
    pipe = TorchLongPipeline(scheduler=scheduler, vae=ref.vae, text_encoder=ref.text_encoder, tokenizer=ref.tokenizer,
                             transformer=ref.transformer)
    pipe.set_progress_bar_config(disable=True)
    request = ours.request(**ARGS, cond_image=image)
    randn = _pinned_noise(ours, request)
    mp = pytest.MonkeyPatch()
    mp.setattr(long_module, "randn_tensor", randn)
    mp.setattr(rf_module, "randn_tensor", randn)
    try:
        with torch.no_grad():
            args = {k: v for k, v in ARGS.items() if k not in ("decode_timestep", "decode_noise_scale")}
            latents = pipe(**args, cond_image=image, output_type="latent").frames
            frames = pipe.vae_decode_tiled(latents, decode_timestep=0.05, decode_noise_scale=0.025,
                                           horizontal_tiles=1, vertical_tiles=1, overlap=0, output_type="np")
    finally:
        mp.undo()
    return latents.numpy(), np.asarray(frames)[0]


def _latent_psnr(ours, ref) -> float:
    """PSNR in dB of latents, the reference's range as the peak."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    mse = float(np.mean((ours - ref) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(float(ref.max() - ref.min()) ** 2 / mse)


def test_latents_and_frames_match_diffusers(ours, reference_run, image):
    ref_latents, ref_frames = reference_run
    latents = ours(**ARGS, cond_image=image, output_type="latent")  # [1, F, H, W, C]
    frames = ours(**ARGS, cond_image=image)[0]
    assert latents.shape == np.transpose(ref_latents, (0, 2, 3, 4, 1)).shape, (latents.shape, ref_latents.shape)
    assert frames.shape == ref_frames.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3)
    value = _latent_psnr(latents, np.transpose(ref_latents, (0, 2, 3, 4, 1)))
    report("long video (3 windows, 2 prompts, image) vs diffusers: latents PSNR dB", value, PSNR_MIN_DB,
           at_least=True)
    assert value >= PSNR_MIN_DB
    value = psnr(frames, ref_frames)
    report("long video (3 windows, 2 prompts, image) vs diffusers: frames PSNR dB", value, PSNR_MIN_DB,
           at_least=True)
    assert value >= PSNR_MIN_DB


def test_a_window_of_a_seen_shape_compiles_nothing(ours, image):
    """Windows 2 and 3 have one shape (5 own frames, 3 of the previous tail, 1 negative-index frame): the third
    window runs the second's programs."""
    request = ours.request(**{**ARGS, "seed": 11, "guidance_scale": 3.5, "prompt": "a | b | c"}, cond_image=image,
                           output_type="latent")
    grid = ours.check_request(request)
    counts = []
    run = ours.window_latents(request, grid)
    while True:
        with compile_counter() as compiles:
            if next(run, None) is None:
                break
        counts.append(len(compiles))
    print(f"\n[long video] compiles per window: {counts}")
    assert len(counts) == 3 and counts[2] == 0, counts


def test_window_rules():
    assert win.split_into_temporal_windows(9, 5, 3) == [(0, 5), (2, 7), (4, 9)]
    assert win.split_into_temporal_windows(21, 10, 3) == [(0, 10), (7, 17), (14, 21)]
    assert win.parse_prompt_segments("a | b |c") == ["a", "b", "c"]
    segments = [{"start_window": 0, "end_window": 1, "text": "x"}, {"start_window": 3, "end_window": 3, "text": "y"}]
    assert win.parse_prompt_segments("ignored", segments) == ["x", "x", "x", "y"]
    # the fused length is the video's except for overlaps of 0 latent frames (each seam drops one) and 2 (each keeps
    # one extra), as diffusers fuses them
    for length, tile, overlap in ((21, 10, 3), (9, 4, 2), (181, 10, 3), (12, 5, 0), (10, 4, 1)):
        windows = win.split_into_temporal_windows(length, tile, overlap)
        video = None
        for start, end in windows:
            video = win.fuse_window(video, np.zeros((1, end - start, 1, 1, 1), np.float32), None,
                                    overlap_lat=overlap, adain_factor=0.0)
        assert video.shape[1] == win.fused_length(length, windows, overlap)
        assert (video.shape[1] == length) == (overlap not in (0, 2)), (length, tile, overlap, video.shape[1])


@pytest.mark.parametrize("change, message", [
    (dict(temporal_tile_size=42), "temporal_tile_size must be latent-aligned, 8k or 8k \\+ 1 frames \\(e.g. 40 or "
                                  "41\\), got 42"),
    (dict(temporal_overlap=20), "temporal_overlap must be a multiple of 8 frames smaller than the window"),
    (dict(temporal_overlap=40), "must be smaller than temporal_tile_size"),
    (dict(prompt=["a", "b"]), "makes one video"),
    (dict(sigmas=[0.5, 0.2, 0.0], skip_steps_sigma_threshold=0.1), "skips every step"),
])
def test_bad_windows_are_one_line_errors(ours, change, message):
    with pytest.raises(ValueError, match=message) as info:
        request = ours.request(**{**ARGS, **change})
        ours.window_schedule(request, 36)
    assert "\n" not in str(info.value)

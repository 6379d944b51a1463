"""Latent upsampling and multi-scale generation against the references, fp32, CPU, tiny random weights.

- ``LTXLatentUpsamplePipeline`` against diffusers' (AdaIN, tone mapping, latents in and a video in);
- ``LTXMultiScalePipeline`` against the original package's ``LTXMultiScalePipeline`` (``ltx-video==0.1.2`` in its own
  virtual environment, ``tests/original_ltx.py``) on one tiny native single file and a tiny upscaler file, the same
  initial noise for both passes, an image (or keyframes) in both passes;
- the recipes' presets, the errors, and that a second call compiles nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import numpy as np
import pytest
import torch
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel as TorchUpsampler
from diffusers.pipelines.ltx.pipeline_ltx_latent_upsample import LTXLatentUpsamplePipeline as TorchUpsamplePipeline
from safetensors.torch import save_file

from conftest import compile_counter, psnr, randomize_, rel_err, report
from ltx_jax.configs import LatentUpsamplerConfig
from ltx_jax.pipelines import LTXLatentUpsamplePipeline, LTXMultiScalePipeline
from ltx_jax.releases import RELEASES
from ltx_jax.tiny_random import TINY_TRANSFORMER, TINY_UPSAMPLER, TINY_VAE, tiny_random_multi_scale_pipeline
from original_ltx import media_item, original_python, run_original, write_tiny_single_file

LATENT_TOL = 1e-5  # upsampled latents, max rel err
UPSAMPLE_PSNR_MIN_DB = 50.0  # decoded frames of the upsample pipeline
# Multi-scale against the original: the same algorithm (only float32 rounding and the order of a few affine steps
# separate them: AdaIN in raw instead of normalised space, the bilinear resizes), so the pipelines' usual bound.
MULTI_SCALE_PSNR_MIN_DB = 50.0
FRAME_RATE = 25
CHANNELS = TINY_VAE.latent_channels


def torch_upsampler(config: LatentUpsamplerConfig = TINY_UPSAMPLER, seed: int = 5) -> TorchUpsampler:
    torch.manual_seed(seed)
    return randomize_(TorchUpsampler(**dataclasses.asdict(config)), seed=seed + 1)


def write_upscaler_file(model: TorchUpsampler, path) -> str:
    """A Lightricks upscaler file: the state dict as it is, the config in the metadata (the original's keys)."""
    config = {"_class_name": "LatentUpsampler", **{k: model.config[k] for k in (
        "in_channels", "mid_channels", "num_blocks_per_stage", "dims", "spatial_upsample", "temporal_upsample")}}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"config": json.dumps(config)})
    return str(path)


# ------------------------------------------------------------------------------ LTXLatentUpsamplePipeline


@pytest.fixture(scope="module")
def upsample_pipelines(tiny_reference, tmp_path_factory):
    """Ours (float32) and diffusers' LTXLatentUpsamplePipeline over the same tiny VAE and upsampler."""
    model = torch_upsampler()
    folder = tmp_path_factory.mktemp("upsampler") / "latent_upsampler"
    model.save_pretrained(folder)
    ours = LTXLatentUpsamplePipeline.from_pretrained(tiny_reference["root"], dtype="float32",
                                                     latent_upsampler_path=folder, compilation_cache=False)
    theirs = TorchUpsamplePipeline(vae=tiny_reference["pipe"].vae, latent_upsampler=model)
    theirs.set_progress_bar_config(disable=True)
    return ours, theirs


@pytest.mark.parametrize("adain, tone_map", [(1.0, 0.6), (0.0, 0.0), (0.4, 0.0)])
def test_upsample_pipeline_latents_match_diffusers(upsample_pipelines, adain, tone_map):
    ours, theirs = upsample_pipelines
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 5, CHANNELS), dtype=np.float32)  # [B, F, H, W, C]
    out = ours(latents=x, adain_factor=adain, tone_map_compression_ratio=tone_map, output_type="latent")
    with torch.no_grad():
        ref = theirs(latents=torch.from_numpy(x).permute(0, 4, 1, 2, 3), adain_factor=adain,
                     tone_map_compression_ratio=tone_map, output_type="latent", return_dict=False)[0]
    ref = ref.permute(0, 2, 3, 4, 1).numpy()
    assert out.shape == ref.shape == (2, 2, 6, 10, CHANNELS)
    err = rel_err(out, ref)
    report(f"latent upsample pipeline latents (adain {adain}, tone map {tone_map}) vs diffusers", err, LATENT_TOL)
    assert err <= LATENT_TOL


def test_upsample_pipeline_frames_match_diffusers(upsample_pipelines):
    """Latents in, frames out (AdaIN 1.0, tone map 0.6, decoded at timestep 0.05 without decode noise, which each
    side draws from its own generator); then a video in (encoded: the tiny VAE's posterior is sharp)."""
    ours, theirs = upsample_pipelines
    x = np.random.default_rng(1).standard_normal((1, 2, 2, 3, CHANNELS), dtype=np.float32)
    kw = dict(adain_factor=1.0, tone_map_compression_ratio=0.6, decode_timestep=0.05, decode_noise_scale=0.0)
    frames = ours(latents=x, **kw)
    with torch.no_grad():
        ref = theirs(latents=torch.from_numpy(x).permute(0, 4, 1, 2, 3), output_type="np", return_dict=False,
                     **kw)[0]
    assert frames.shape == ref.shape == (1, 9, 128, 192, 3)
    value = psnr(frames, ref)
    report("latent upsample pipeline frames (latents in) vs diffusers: PSNR dB", value, UPSAMPLE_PSNR_MIN_DB,
           at_least=True)
    assert value >= UPSAMPLE_PSNR_MIN_DB

    import PIL.Image

    rng = np.random.default_rng(2)
    video = (rng.random((9, 64, 96, 3)) * 255).astype(np.uint8)
    frames = ours(video=video, height=64, width=96, **kw)
    with torch.no_grad():
        ref = theirs(video=[PIL.Image.fromarray(f) for f in video], height=64, width=96, output_type="np",
                     return_dict=False, **kw)[0]
    value = psnr(frames, ref)
    report("latent upsample pipeline frames (video in) vs diffusers: PSNR dB", value, UPSAMPLE_PSNR_MIN_DB,
           at_least=True)
    assert frames.shape == ref.shape == (1, 9, 128, 192, 3) and value >= UPSAMPLE_PSNR_MIN_DB


def test_upsample_pipeline_errors(upsample_pipelines):
    ours, _ = upsample_pipelines
    with pytest.raises(ValueError, match="exactly one of video= .* and latents="):
        ours()
    with pytest.raises(ValueError, match=r"expected normalised channels-last latents \[B, F, H, W, 8\]"):
        ours(latents=np.zeros((1, 8, 2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="tone_map_compression_ratio must be <= 1"):
        ours(latents=np.zeros((1, 2, 2, 3, CHANNELS), np.float32), tone_map_compression_ratio=1.5)
    with pytest.raises(ValueError, match="height=70 must be a multiple of 32"):
        ours(latents=np.zeros((1, 2, 2, 3, CHANNELS), np.float32), height=70)


# ------------------------------------------------------------------------------ multi-scale vs the original

HEIGHT, WIDTH = 96, 160  # requested; first pass 32 x 96 (latents 1 x 3), second 64 x 192 (2 x 6), resized back
FIRST, SECOND = (1, 3), (2, 6)


@pytest.fixture(scope="module")
def native_files(tmp_path_factory):
    original_python()
    root = tmp_path_factory.mktemp("multi_scale")
    model = write_tiny_single_file(root / "ltxv-tiny-0.9.5.safetensors", TINY_TRANSFORMER, TINY_VAE, seed=21,
                                   sharp_posterior=True)
    return model["path"], write_upscaler_file(torch_upsampler(seed=23), root / "ltxv-spatial-upscaler-tiny.safetensors")


def _pictures(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH] / np.array([HEIGHT, WIDTH])[:, None, None]
    return [np.clip(np.stack([x, y, 0.5 + 0.5 * np.sin((6 + k) * x * y)], -1) + 0.1 * rng.random((HEIGHT, WIDTH, 3)),
                    0, 1).astype(np.float32) for k in range(count)]


def _ours(passes: dict) -> dict:
    """A pass of the original's config (timesteps in [0, 1]) in ours (timesteps in [0, 1000])."""
    out = dict(passes)
    if "timesteps" in out:
        out["timesteps"] = [t * 1000.0 for t in out["timesteps"]]
    return out


MULTI_SCALE_CASES = {
    # name: (num_frames, [(picture, frame)], first pass, second pass) in the original's units
    "distilled-style (timesteps, no guidance, tone map 0.6), an image": (
        9, [(0, 0)],
        dict(timesteps=[1.0, 0.8, 0.55, 0.3], guidance_scale=1.0, stg_scale=0.0, rescaling_scale=1.0),
        dict(timesteps=[0.55, 0.3], guidance_scale=1.0, stg_scale=0.0, rescaling_scale=1.0,
             tone_map_compression_ratio=0.6)),
    "dev-style (step counts + skips, CFG/STG schedules, CFG-star), keyframes": (
        17, [(0, 0), (1, 16)],
        dict(num_inference_steps=6, skip_final_inference_steps=2, guidance_scale=[1.0, 3.0, 2.0],
             stg_scale=[0.0, 1.0, 0.5], rescaling_scale=[1.0, 0.7, 1.0], guidance_timesteps=[1.0, 0.95, 0.5],
             skip_block_list=[[], [1], [0]], cfg_star_rescale=True),
        dict(num_inference_steps=6, skip_initial_inference_steps=3, guidance_scale=[1.0], stg_scale=[1.0],
             rescaling_scale=[1.0], guidance_timesteps=[1.0], skip_block_list=[1], cfg_star_rescale=True)),
}


@pytest.mark.parametrize("case", list(MULTI_SCALE_CASES))
def test_multi_scale_matches_the_original(native_files, case):
    """The original's LTXMultiScalePipeline and ours on the same native files: the same initial noise in both passes
    and text embeddings, conditions in both passes, no per-step conditioning noise and no decode noise (each side
    draws those from its own generator; decode noise goes into different latent spaces, see the README)."""
    checkpoint, upscaler = native_files
    num_frames, items, first, second = MULTI_SCALE_CASES[case]
    pictures = _pictures(2)
    rng = np.random.default_rng(9)
    frames_latent = (num_frames - 1) // 8 + 1
    text, dim = 8, TINY_TRANSFORMER.caption_channels
    arrays = {
        "prompt_embeds": rng.standard_normal((1, text, dim), dtype=np.float32),
        "prompt_attention_mask": np.array([[1] * 6 + [0] * 2], np.int64),
        "negative_prompt_embeds": rng.standard_normal((1, text, dim), dtype=np.float32),
        "negative_prompt_attention_mask": np.array([[1] * 3 + [0] * 5], np.int64),
        "noise.latents.0": rng.standard_normal((1, frames_latent * FIRST[0] * FIRST[1], CHANNELS), dtype=np.float32),
        "noise.latents.1": rng.standard_normal((1, frames_latent * SECOND[0] * SECOND[1], CHANNELS),
                                               dtype=np.float32),
    }
    for k, _ in items:
        arrays[f"picture{k}"] = media_item(pictures[k][None, None])
    embeds = ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask")
    job = {
        "kind": "pipeline", "checkpoint": checkpoint, "seed": 0,
        "kwargs": {"height": HEIGHT, "width": WIDTH, "num_frames": num_frames, "frame_rate": FRAME_RATE,
                   "skip_layer_strategy": "AttentionValues", "image_cond_noise_scale": 0.0, "decode_timestep": 0.05,
                   "decode_noise_scale": 0.0, "output_type": "pt", **{name: f"@{name}" for name in embeds}},
        "conditioning_items": [{"media_item": f"@picture{k}", "media_frame_number": frame,
                                "conditioning_strength": 1.0} for k, frame in items],
        "multi_scale": {"latent_upsampler": upscaler, "downscale_factor": 0.6666666, "first_pass": first,
                        "second_pass": second},
    }
    start = time.perf_counter()
    ref = run_original(job, arrays)
    seconds = time.perf_counter() - start

    pipe = LTXMultiScalePipeline.from_pretrained(checkpoint, dtype="float32", latent_upsampler_path=upscaler,
                                                 compilation_cache=False, progress=False)
    from ltx_jax.pipelines import LTXVideoCondition

    frames = pipe(conditions=[LTXVideoCondition(image=pictures[k], frame_index=frame) for k, frame in items],
                  height=HEIGHT, width=WIDTH, num_frames=num_frames, frame_rate=FRAME_RATE, downscale_factor=0.6666666,
                  first_pass={"guidance_rescale": 0.0, **_ours(first)},
                  second_pass={"guidance_rescale": 0.0, **_ours(second)}, image_cond_noise_scale=0.0,
                  noise=arrays["noise.latents.0"], second_pass_noise=arrays["noise.latents.1"], decode_timestep=0.05,
                  decode_noise_scale=0.0, **{name: arrays[name] for name in embeds})
    print(f"\n[original multi-scale, {case}] {seconds:.1f} s; ours: {pipe.last_timings}")
    assert frames.shape == ref["frames"].shape == (1, num_frames, HEIGHT, WIDTH, 3)
    # The same schedules, bit for bit (step counts: the original's float32 shift, see sampling.original_schedule).
    np.testing.assert_array_equal(ref["timesteps"], pipe_schedule(first, FIRST, frames_latent))
    np.testing.assert_array_equal(ref["pass1.timesteps"], pipe_schedule(second, SECOND, frames_latent))
    value = psnr(frames, ref["frames"])
    report(f"multi-scale vs the original, {case.split(' (')[0]}: PSNR dB", value, MULTI_SCALE_PSNR_MIN_DB,
           at_least=True)
    assert value >= MULTI_SCALE_PSNR_MIN_DB


def pipe_schedule(passes: dict, latent_size, frames_latent) -> np.ndarray:
    """A pass's steps on the original's 0-1 scale, as ours schedules them (the original's schedule, trimmed)."""
    from ltx_jax import sampling
    from ltx_jax.releases import ORIGINAL_SCHEDULER

    tokens = frames_latent * latent_size[0] * latent_size[1]
    timesteps = None if "timesteps" not in passes else [t * 1000.0 for t in passes["timesteps"]]
    sigmas, ts = sampling.original_schedule(ORIGINAL_SCHEDULER, passes.get("num_inference_steps"), tokens,
                                            timesteps=timesteps)
    return sampling.trim_schedule(sigmas, ts, passes.get("skip_initial_inference_steps", 0),
                                  passes.get("skip_final_inference_steps", 0))[0][:-1]


# ------------------------------------------------------------------------------ presets, errors, compilation


def test_presets_follow_lightricks_configs():
    """configs/ltxv-13b-0.9.7-dev.yaml ... ltxv-2b-0.9.8-distilled.yaml, value by value (timesteps x 1000)."""
    distilled_first = (1000.0, 993.7, 987.5, 981.2, 975.0, 909.4, 725.0)
    for name in ("ltx-video-0.9.7-13b-distilled", "ltx-video-0.9.8-13b-distilled", "ltx-video-0.9.8-2b-distilled"):
        recipe = RELEASES[name].multi_scale
        assert recipe.first_pass.timesteps == distilled_first and recipe.second_pass.timesteps == (909.4, 725.0, 421.9)
        assert recipe.first_pass.guidance_scale == recipe.second_pass.guidance_scale == 1.0
        # The files list STG block 42 at STG scale 0: no block is perturbed, so the recipes carry none (a 2B model has
        # no block 42, and refused its own recipe with it).
        assert recipe.first_pass.stg_scale == recipe.second_pass.stg_scale == 0.0
        assert recipe.first_pass.skip_block_list is None and recipe.second_pass.skip_block_list is None
        assert recipe.downscale_factor == 0.6666666
        assert (recipe.second_pass.decode_timestep, recipe.second_pass.decode_noise_scale) == (0.05, 0.025)
        assert recipe.tone_map_compression_ratio == (0.6 if name == "ltx-video-0.9.8-13b-distilled" else 0.0)
    for name in ("ltx-video-0.9.7-13b-dev", "ltx-video-0.9.8-13b-dev"):
        recipe = RELEASES[name].multi_scale
        first, second = recipe.first_pass, recipe.second_pass
        assert (first.num_inference_steps, first.skip_final_inference_steps, first.cfg_star_rescale) == (30, 3, True)
        assert first.guidance_scale == (1, 1, 6, 8, 6, 1, 1) and first.stg_scale == (0, 0, 4, 4, 4, 2, 1)
        assert first.rescaling_scale == (1, 1, 0.5, 0.5, 1, 1, 1)
        assert first.guidance_timesteps == (1.0, 0.996, 0.9933, 0.9850, 0.9767, 0.9008, 0.6180)
        assert first.skip_block_list == ((), (11, 25, 35, 39), (22, 35, 39), (28,), (28,), (28,), (28,))
        assert (second.num_inference_steps, second.skip_initial_inference_steps, second.cfg_star_rescale) == (
            30, 17, True)
        assert (second.guidance_scale, second.stg_scale, second.rescaling_scale, second.guidance_timesteps,
                second.skip_block_list) == ((1.0,), (1.0,), (1.0,), (1.0,), (27,))
        assert recipe.latent_upsampler == f"ltxv-spatial-upscaler-{RELEASES[name].version}.safetensors"
    assert [r.name for r in RELEASES.values() if r.multi_scale] == [
        "ltx-video-0.9.7-13b-dev", "ltx-video-0.9.7-13b-distilled", "ltx-video-0.9.8-13b-dev",
        "ltx-video-0.9.8-13b-distilled", "ltx-video-0.9.8-2b-distilled"]


@pytest.fixture(scope="module")
def tiny_multi_scale():
    return tiny_random_multi_scale_pipeline(progress=False)


def test_errors_before_any_work(tiny_multi_scale):
    from ltx_jax.models import init_params
    from ltx_jax.models.latent_upsampler import LatentUpsampler

    pipe = tiny_multi_scale
    call = dict(prompt="a fox", num_frames=9)
    with pytest.raises(ValueError, match=r"height=40 x downscale_factor=0.666667 leaves no first pass .* at least 49"):
        pipe(height=40, width=96, **call)
    with pytest.raises(ValueError, match="second pass starts at timestep 1000"):
        pipe(height=64, width=96, second_pass={"timesteps": [1000.0, 500.0]}, **call)
    with pytest.raises(ValueError, match=r"second_pass: unknown keys \['steps'\]"):
        pipe(height=64, width=96, second_pass={"steps": 3}, **call)
    with pytest.raises(ValueError, match="first_pass: unknown keys \\['tone_map_compression_ratio'\\]"):
        pipe(height=64, width=96, first_pass={"tone_map_compression_ratio": 0.5}, **call)
    with pytest.raises(ValueError, match="downscale_factor must be <= 1"):
        pipe(height=64, width=96, downscale_factor=1.5, **call)
    no_recipe = LTXMultiScalePipeline.from_pipe(pipe)
    no_recipe.release = None
    with pytest.raises(ValueError, match="no multi-scale recipe .* pass preset="):
        no_recipe(height=64, width=96, **call)

    def upsampler(**changes):
        module = LatentUpsampler(TINY_UPSAMPLER.replace(**changes))
        return module, init_params(module, jax.random.PRNGKey(0))

    with pytest.raises(ValueError, match="takes 4-channel latents but the VAE makes 8"):
        LTXMultiScalePipeline.from_pipe(pipe, *upsampler(in_channels=4))
    with pytest.raises(ValueError, match="upsamples in time"):
        LTXMultiScalePipeline.from_pipe(pipe, *upsampler(spatial_upsample=False, temporal_upsample=True))
    with pytest.raises(ValueError, match="no latent upsampler"):
        LTXMultiScalePipeline.from_pipe(pipe.__class__.__mro__[1].from_pipe(pipe))(height=64, width=96, **call)


def test_from_pretrained_checks_the_upsampler_before_loading(native_files, tmp_path):
    checkpoint, _ = native_files
    wrong = write_upscaler_file(torch_upsampler(TINY_UPSAMPLER.replace(in_channels=4)), tmp_path / "wrong.safetensors")
    with pytest.raises(ValueError, match="takes 4-channel latents but the VAE of .* makes 8"):
        LTXMultiScalePipeline.from_pretrained(checkpoint, latent_upsampler_path=wrong, compilation_cache=False)
    with pytest.raises(ValueError, match="no latent upsampler found: .* pass latent_upsampler_path="):
        LTXMultiScalePipeline.from_pretrained(checkpoint, compilation_cache=False)


def test_a_second_call_compiles_nothing(tiny_multi_scale):
    """New prompts, images, strengths and seeds reuse both passes' programs, the upsampler's and the decoder's."""
    pipe = tiny_multi_scale
    rng = np.random.default_rng(3)
    image = lambda: rng.random((64, 96, 3)).astype(np.float32)  # noqa: E731
    first = pipe(image=image(), prompt="a red fox", height=64, width=96, num_frames=9, seed=0)
    with compile_counter() as compiles:
        second = pipe(image=image(), strength=0.7, prompt="a cat's face", height=64, width=96, num_frames=9, seed=1)
    assert first.shape == second.shape == (1, 9, 64, 96, 3) and np.isfinite(second).all()
    assert len(compiles) == 0, f"{len(compiles)} compilations on the second call"
    assert set(pipe.last_timings.stages) >= {"first_pass", "upsampling", "second_pass", "decoding", "resizing"}


# torch's CPU linspace is vectorised from 13 values on and rounds some an ulp away from its scalar formula (which its
# CUDA kernel and ours follow); the shift carries that to at most a few ulps.
SCHEDULE_ULP_TOL = 3e-7


def test_step_count_schedules_match_the_original():
    """A step count's schedule against the original's RectifiedFlowScheduler (SD3 shift, terminal 0.1, as the
    released files configure it) at the token counts of real runs (the 2B recipe's passes at 1216x704x121: 5600 and
    22400 tokens): bit for bit below 13 steps, within a few ulps above. diffusers' float64 shift differs from both by
    up to 6e-5 at 22400 tokens (printed): the original rounds (1/t - 1) + exp(mu) in float32."""
    from ltx_jax import sampling
    from ltx_jax.releases import LTX_SCHEDULER, ORIGINAL_SCHEDULER
    from original_ltx import ORIGINAL_SCHEDULER as ORIGINAL_CONFIG

    original_python()
    shapes = [(1, 128, 2, 1, 3), (1, 128, 16, 14, 25), (1, 128, 16, 28, 50), (1, 128, 3, 32, 32)]
    cases = [(steps, shape) for steps in (2, 6, 12, 13, 30, 40) for shape in shapes]
    config = {k: v for k, v in ORIGINAL_CONFIG.items() if not k.startswith("_")}
    ref = run_original({"kind": "schedule", "scheduler": config, "cases": cases}, {})
    worst, worst_diffusers = 0.0, 0.0
    for i, (steps, shape) in enumerate(cases):
        tokens = int(np.prod(shape[2:]))
        ours = sampling.original_schedule(ORIGINAL_SCHEDULER, steps, tokens)[0][:-1]
        if steps < 13:
            np.testing.assert_array_equal(ours, ref[f"timesteps.{i}"], err_msg=f"{steps} steps, {tokens} tokens")
        worst = max(worst, float(np.max(np.abs(ours - ref[f"timesteps.{i}"]))))
        diffusers = sampling.diffusers_schedule(LTX_SCHEDULER, steps, tokens)[0][:-1]
        worst_diffusers = max(worst_diffusers, float(np.max(np.abs(diffusers - ref[f"timesteps.{i}"]))))
    print(f"\n[schedules] diffusers' LTXPipeline sigmas vs the original's: max abs {worst_diffusers:.2e}")
    report("original step-count schedules (2-40 steps, 6-22400 tokens), max abs", worst, SCHEDULE_ULP_TOL)
    assert worst <= SCHEDULE_ULP_TOL

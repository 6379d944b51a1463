"""The harness that runs the ORIGINAL Lightricks package (ltx-video 0.1.2) as a reference (``tests/original_ltx.py``).

The first test builds the package's virtual environment when it is not cached (~40 s); a failed build fails the
tests. Models: ltx_jax.tiny_random's TINY_TRANSFORMER and TINY_VAE (a 0.9.1-style timestep-conditioned VAE with the
real 32x / 8x compression), written as one Lightricks single file with 0.9.5+ coordinates
(``causal_temporal_positioning=True``).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline, LTXVideoCondition
from diffusers.pipelines.ltx.pipeline_ltx_image2video import calculate_shift

from conftest import rel_err, report
from ltx_jax.releases import LTX_SCHEDULER
from ltx_jax.tiny_random import TINY_TRANSFORMER, TINY_VAE
from original_ltx import (condition_pipeline_draws, injected_diffusers_noise, media_item, original_python, run_original,
                          write_tiny_single_file)

TRANSFORMER_TOL = 1e-5  # max |original - diffusers| / max |diffusers|, float32
SCHEDULE_TOL = 1e-6  # |original - diffusers| of sigmas in [0, 1]
PIPELINE_TOL = 1e-5  # latents: max rel err; frames (in [0, 1]): max abs err; 3 steps of CFG, float32
FRAME_RATE = 25
# 9 frames of 64 x 96 -> (VAE: 8x in time, 32x in space) 2 latent frames of 2 x 3 latent pixels.
HEIGHT, WIDTH, NUM_FRAMES = 64, 96, 9
LATENT_FRAMES, LATENT_HEIGHT, LATENT_WIDTH = 2, 2, 3


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    start = time.perf_counter()
    python = original_python()
    print(f"\n[original ltx-video 0.1.2 environment] ready in {time.perf_counter() - start:.1f} s: {python}")
    ckpt = write_tiny_single_file(tmp_path_factory.mktemp("original") / "ltxv-tiny-0.9.5.safetensors",
                                  TINY_TRANSFORMER, TINY_VAE, seed=0)
    return ckpt


def test_transformer_matches_diffusers_on_the_same_single_file(original):
    """The original's forward, on coordinates it builds itself (patchifier + latent_to_pixel_coords + frame rate),
    equals diffusers' on LTXConditionPipeline's coordinates: weights, config and coordinates all map."""
    rng = np.random.default_rng(0)
    batch, frames, height, width = 2, 3, 2, 3  # odd grid: 18 tokens
    tokens, text = frames * height * width, 7
    hidden = rng.standard_normal((batch, tokens, TINY_TRANSFORMER.in_channels), dtype=np.float32)
    text_embeds = rng.standard_normal((batch, text, TINY_TRANSFORMER.caption_channels), dtype=np.float32)
    text_mask = np.ones((batch, text), np.int64)
    text_mask[0, 4:] = 0  # right padding in one row
    timestep = rng.uniform(0.05, 1.0, (batch, tokens)).astype(np.float32)  # per token, in [0, 1]
    timestep[0, : height * width] = 0.0  # a hard-conditioned first latent frame
    job = {
        "kind": "transformer", "checkpoint": original["path"],
        "kwargs": {"hidden_states": "@hidden", "encoder_hidden_states": "@text", "encoder_attention_mask": "@mask",
                   "timestep": "@timestep"},
        "coords": {"latent_frames": frames, "latent_height": height, "latent_width": width, "frame_rate": FRAME_RATE},
    }
    out = run_original(job, {"hidden": hidden, "text": text_embeds, "mask": text_mask, "timestep": timestep})

    ids = LTXConditionPipeline._prepare_video_ids(batch, frames, height, width)
    coords = LTXConditionPipeline._scale_video_ids(ids, scale_factor=32, scale_factor_t=8, frame_index=0).float()
    coords[:, 0] = coords[:, 0] * (1.0 / FRAME_RATE)
    np.testing.assert_array_equal(out["indices_grid"], coords.numpy())
    with torch.no_grad():
        ref = original["transformer"](
            hidden_states=torch.from_numpy(hidden), encoder_hidden_states=torch.from_numpy(text_embeds),
            timestep=torch.from_numpy(timestep) * 1000.0, encoder_attention_mask=torch.from_numpy(text_mask),
            video_coords=coords, return_dict=False,
        )[0].numpy()
    err = rel_err(out["sample"], ref)
    report("original ltx_video transformer vs diffusers (single file)", err, TRANSFORMER_TOL)
    assert err <= TRANSFORMER_TOL


def image_to_video_job(checkpoint: str) -> dict:
    """One image at frame 0, CFG 3, no STG, 3 steps of the file's scheduler, decode noise and conditioning noise on."""
    return {
        "kind": "pipeline", "checkpoint": checkpoint, "seed": 1,
        "kwargs": {
            "height": HEIGHT, "width": WIDTH, "num_frames": NUM_FRAMES, "frame_rate": FRAME_RATE,
            "num_inference_steps": 3, "guidance_scale": 3.0, "stg_scale": 0.0, "rescaling_scale": 1.0,
            "image_cond_noise_scale": 0.15, "decode_timestep": 0.05, "decode_noise_scale": 0.025,
            "prompt_embeds": "@prompt_embeds", "prompt_attention_mask": "@prompt_attention_mask",
            "negative_prompt_embeds": "@negative_prompt_embeds",
            "negative_prompt_attention_mask": "@negative_prompt_attention_mask",
            "output_type": "pt",
        },
        "conditioning_items": [{"media_item": "@image", "media_frame_number": 0, "conditioning_strength": 1.0}],
    }


def image_to_video_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    text, dim = 8, TINY_TRANSFORMER.caption_channels
    tokens = LATENT_FRAMES * LATENT_HEIGHT * LATENT_WIDTH
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH] / np.array([HEIGHT, WIDTH])[:, None, None]
    image = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1)[None, None]  # [1, 1, H, W, 3] in [0, 1]
    return {
        "prompt_embeds": rng.standard_normal((1, text, dim), dtype=np.float32),
        "prompt_attention_mask": np.array([[1] * 6 + [0] * 2], np.int64),
        "negative_prompt_embeds": rng.standard_normal((1, text, dim), dtype=np.float32),
        "negative_prompt_attention_mask": np.array([[1] * 3 + [0] * 5], np.int64),
        "image": media_item(image),
        "noise.latents.0": rng.standard_normal((1, tokens, TINY_TRANSFORMER.in_channels), dtype=np.float32),
    }


@pytest.fixture(scope="module")
def image_to_video(original):
    """The job, its inputs and the original's outputs (the draws it made included)."""
    job, arrays = image_to_video_job(original["path"]), image_to_video_arrays()
    start = time.perf_counter()
    out = run_original(job, arrays)
    print(f"\n[original image-to-video run] {time.perf_counter() - start:.1f} s")
    return job, arrays, out


def test_image_to_video_is_deterministic_with_injected_noise(image_to_video):
    """Frames of the requested shape, finite, in [0, 1]; a second run given every draw of the first (strict: any
    draw not supplied would raise) and another seed reproduces them bit for bit."""
    job, arrays, first = image_to_video
    assert first["frames"].shape == (1, NUM_FRAMES, HEIGHT, WIDTH, 3)
    assert np.isfinite(first["frames"]).all() and first["frames"].min() >= 0 and first["frames"].max() <= 1
    np.testing.assert_array_equal(first["noise.latents.0"], arrays["noise.latents.0"])
    sites = [str(line).split()[0] for line in first["draw_log"]]
    assert sites == ["noise.latents.0", "noise.vae_encode.0", "noise.image_cond.0", "noise.image_cond.1",
                     "noise.image_cond.2", "noise.decode.0"], sites
    mask = first["conditioning_mask"].reshape(LATENT_FRAMES, LATENT_HEIGHT * LATENT_WIDTH)
    np.testing.assert_array_equal(mask, [[1.0] * 6, [0.0] * 6])  # frame 0 hard-conditioned, nothing else

    draws = {k: v for k, v in first.items() if k.startswith("noise.")}
    second = run_original({**job, "seed": 2, "strict_noise": True}, {**arrays, **draws})
    diff = float(np.max(np.abs(second["frames"] - first["frames"])))
    report("original ltx_video i2v: rerun with the same injected draws", diff, 0.0)
    assert diff == 0.0
    np.testing.assert_array_equal(second["latents"], first["latents"])

    # The file's scheduler (ltx_video's partner of diffusers' LTX scheduler_config.json) gives diffusers' schedule.
    scheduler = FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(LTX_SCHEDULER))
    tokens = LATENT_FRAMES * LATENT_HEIGHT * LATENT_WIDTH
    mu = calculate_shift(tokens, LTX_SCHEDULER.base_image_seq_len, LTX_SCHEDULER.max_image_seq_len,
                         LTX_SCHEDULER.base_shift, LTX_SCHEDULER.max_shift)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 3, 3), mu=mu)
    err = float(np.max(np.abs(first["timesteps"] - scheduler.sigmas[:-1].numpy())))
    report("original RectifiedFlowScheduler (SD3 shift) vs diffusers sigmas", err, SCHEDULE_TOL)
    assert err <= SCHEDULE_TOL


def test_image_to_video_matches_diffusers_condition_pipeline(original, image_to_video):
    """diffusers' LTXConditionPipeline on the same weights, timesteps and draws (the decode noise moved to
    denormalised space) gives the original's latents and frames: the two conditioning algorithms agree."""
    job, arrays, out = image_to_video
    kw = job["kwargs"]
    pipe = LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False),
        vae=original["vae"], text_encoder=None, tokenizer=None, transformer=original["transformer"])
    pipe.set_progress_bar_config(disable=True)
    image = torch.from_numpy((arrays["image"][:, :, 0] + 1) / 2)  # [1, 3, H, W] in [0, 1]; diffusers takes 2x - 1
    call = dict(
        conditions=[LTXVideoCondition(image=image, frame_index=0, strength=1.0)],
        prompt_embeds=torch.from_numpy(arrays["prompt_embeds"]),
        prompt_attention_mask=torch.from_numpy(arrays["prompt_attention_mask"]),
        negative_prompt_embeds=torch.from_numpy(arrays["negative_prompt_embeds"]),
        negative_prompt_attention_mask=torch.from_numpy(arrays["negative_prompt_attention_mask"]),
        height=HEIGHT, width=WIDTH, num_frames=NUM_FRAMES, frame_rate=FRAME_RATE,
        timesteps=[float(t) * 1000 for t in out["timesteps"]], guidance_scale=kw["guidance_scale"],
        image_cond_noise_scale=kw["image_cond_noise_scale"], decode_timestep=kw["decode_timestep"],
        decode_noise_scale=kw["decode_noise_scale"], return_dict=False,
    )
    draws = condition_pipeline_draws(out, original["vae"], (LATENT_FRAMES, LATENT_HEIGHT, LATENT_WIDTH))
    scheduler_log = logging.getLogger("diffusers.schedulers.scheduling_flow_match_euler_discrete")
    level = scheduler_log.level
    scheduler_log.setLevel(logging.ERROR)  # "timesteps were passed without sigmas": intended, sigmas = timesteps
    try:
        with torch.no_grad():
            with injected_diffusers_noise(draws[:-1]):  # no decode noise for latent output
                latents = pipe(**call, output_type="latent")[0].numpy()
            with injected_diffusers_noise(draws):
                frames = pipe(**call, output_type="pt")[0].permute(0, 1, 3, 4, 2).numpy()
    finally:
        scheduler_log.setLevel(level)
    latent_err = rel_err(out["latents"], latents)
    report("original i2v latents vs diffusers LTXConditionPipeline", latent_err, PIPELINE_TOL)
    frame_err = float(np.max(np.abs(out["frames"] - frames)))
    report("original i2v frames vs diffusers LTXConditionPipeline (abs)", frame_err, PIPELINE_TOL)
    assert latent_err <= PIPELINE_TOL and frame_err <= PIPELINE_TOL


def test_a_failing_job_raises_with_the_childs_error(original):
    """A draw of the wrong shape stops the child; run_original raises with the child's message."""
    arrays = {**image_to_video_arrays(), "noise.latents.0": np.zeros((1, 5, 8), np.float32)}
    with pytest.raises(RuntimeError, match=r"noise\.latents\.0 has shape \(1, 5, 8\); the pipeline draws \(1, 12, 8\)"):
        run_original(image_to_video_job(original["path"]), arrays)


# ------------------------------------------------------------------------- ltx_jax against the original


@pytest.fixture(scope="module")
def sharp(tmp_path_factory):
    """The tiny file with a posterior sharp enough (std 3e-7) that every implementation's sample is its mean."""
    original_python()
    return write_tiny_single_file(tmp_path_factory.mktemp("original_sharp") / "ltxv-tiny-0.9.5.safetensors",
                                  TINY_TRANSFORMER, TINY_VAE, seed=3, sharp_posterior=True)


def _pictures(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH] / np.array([HEIGHT, WIDTH])[:, None, None]
    return [np.clip(np.stack([x, y, 0.5 + 0.5 * np.sin((6 + k) * x * y)], -1) + 0.1 * rng.random((HEIGHT, WIDTH, 3)),
                    0, 1).astype(np.float32) for k in range(count)]


ORIGINAL_CASES = {  # (num_frames, [(picture index, pixel frame)])
    "image-to-video (an image at frame 0)": (9, [(0, 0)]),
    "keyframes (images at frames 0 and 16)": (17, [(0, 0), (1, 16)]),
}
ORIGINAL_PSNR_MIN_DB = 50.0  # the algorithms agree (see the README's notes): only float32 rounding separates them


@pytest.mark.parametrize("case", list(ORIGINAL_CASES))
def test_ltx_jax_condition_pipeline_matches_the_original(sharp, case):
    """ltx_jax's LTXConditionPipeline against the original LTXVideoPipeline with ConditioningItems, same tiny native
    weights (the single file), the same initial noise and text embeddings, explicit timesteps (so no schedule
    differs), CFG 3 without STG, CFG-star or rescaling, no per-step conditioning noise and no decode noise (each
    implementation draws those from its own generator)."""
    from conftest import psnr

    from ltx_jax.pipelines import LTXConditionPipeline, LTXVideoCondition
    from ltx_jax.scheduler import FlowMatchSchedulerConfig

    num_frames, items = ORIGINAL_CASES[case]
    pictures = _pictures(2)
    timesteps = [1.0, 0.8, 0.55, 0.3]
    arrays = {k: v for k, v in image_to_video_arrays().items() if k != "image"}
    tokens = ((num_frames - 1) // 8 + 1) * LATENT_HEIGHT * LATENT_WIDTH
    arrays["noise.latents.0"] = np.random.default_rng(8).standard_normal(
        (1, tokens, TINY_TRANSFORMER.in_channels), dtype=np.float32)
    for k, _ in items:
        arrays[f"picture{k}"] = media_item(pictures[k][None, None])
    job = {
        "kind": "pipeline", "checkpoint": sharp["path"], "seed": 0,
        "kwargs": {
            "height": HEIGHT, "width": WIDTH, "num_frames": num_frames, "frame_rate": FRAME_RATE,
            "timesteps": timesteps, "guidance_scale": 3.0, "stg_scale": 0.0, "rescaling_scale": 1.0,
            "cfg_star_rescale": False, "image_cond_noise_scale": 0.0, "decode_timestep": 0.05,
            "decode_noise_scale": 0.0, "output_type": "pt",
            **{name: f"@{name}" for name in ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
                                             "negative_prompt_attention_mask")},
        },
        "conditioning_items": [{"media_item": f"@picture{k}", "media_frame_number": frame,
                                "conditioning_strength": 1.0} for k, frame in items],
    }
    start = time.perf_counter()
    ref = run_original(job, arrays)["frames"]
    seconds = time.perf_counter() - start

    pipe = LTXConditionPipeline.from_pretrained(sharp["path"], dtype="float32", compilation_cache=False,
                                                progress=False)
    pipe.scheduler_config = FlowMatchSchedulerConfig(shift=1.0, use_dynamic_shifting=False)  # sigmas = timesteps
    frames = pipe(conditions=[LTXVideoCondition(image=pictures[k], frame_index=frame) for k, frame in items],
                  noise=arrays["noise.latents.0"], timesteps=[t * 1000.0 for t in timesteps],
                  height=HEIGHT, width=WIDTH, num_frames=num_frames, frame_rate=FRAME_RATE, guidance_scale=3.0,
                  guidance_rescale=0.0, stg_scale=0.0, image_cond_noise_scale=0.0, decode_timestep=0.05,
                  decode_noise_scale=0.0,
                  **{name: arrays[name] for name in ("prompt_embeds", "prompt_attention_mask",
                                                     "negative_prompt_embeds", "negative_prompt_attention_mask")})
    value = psnr(frames, ref)
    print(f"\n[original {case}] {seconds:.1f} s")
    report(f"ltx_jax vs the original ltx-video, {case}: PSNR dB", value, ORIGINAL_PSNR_MIN_DB, at_least=True)
    assert frames.shape == ref.shape == (1, num_frames, HEIGHT, WIDTH, 3) and value >= ORIGINAL_PSNR_MIN_DB

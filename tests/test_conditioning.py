"""Image-to-video, keyframes, extension and video-to-video against diffusers' pipelines (fp32, tiny random
components).

How the references are made deterministic: the tiny VAE's posterior has a log-variance of -30 (std 3e-7), so its
sampling of an encoded image is the same on both sides to ~1e-6 without sharing a random draw; diffusers'
``randn_tensor`` is patched to return our initial noise for the latent grid (its other draws are for conditions of
strength 1, where ``lerp(noise, x, 1) = x``, and for the decode noise, scaled by 0); ``image_cond_noise_scale`` is 0
in the comparisons (the per-step noise is checked on its own against diffusers' formula).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
import torch
from conftest import compile_counter, psnr, report
from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline as TorchCondition
from diffusers import LTXImageToVideoPipeline as TorchI2V
from diffusers.pipelines.ltx import pipeline_ltx_condition, pipeline_ltx_image2video

from ltx_jax import sampling
from ltx_jax.pipelines import LTXConditionPipeline, LTXImageToVideoPipeline, LTXPipeline, LTXVideoCondition
from ltx_jax.releases import LTX_SCHEDULER_STATIC
from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER

PSNR_MIN_DB = 50.0
HEIGHT, WIDTH = 64, 96
T_TEXT = 16


@pytest.fixture(scope="module")
def ours(tiny_reference):
    base = LTXPipeline.from_pretrained(tiny_reference["root"], dtype="float32", compilation_cache=False, progress=False)
    base.scheduler_config = LTX_SCHEDULER_STATIC  # diffusers' condition pipeline sets timesteps without mu
    return {"i2v": LTXImageToVideoPipeline.from_pipe(base), "cond": LTXConditionPipeline.from_pipe(base)}


def torch_pipeline(cls, tiny_reference, scheduler_config):
    pipe = tiny_reference["pipe"]
    out = cls(scheduler=FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(scheduler_config)), vae=pipe.vae,
              text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, transformer=pipe.transformer)
    out.set_progress_bar_config(disable=True)
    return out


def text(seed: int, batch: int = 1):
    gen = torch.Generator().manual_seed(seed)
    args = dict(prompt_embeds=torch.randn(batch, T_TEXT, TINY_T5.d_model, generator=gen),
                prompt_attention_mask=torch.ones(batch, T_TEXT, dtype=torch.long),
                negative_prompt_embeds=torch.randn(batch, T_TEXT, TINY_T5.d_model, generator=gen),
                negative_prompt_attention_mask=torch.ones(batch, T_TEXT, dtype=torch.long))
    args["prompt_attention_mask"][:, 11:] = 0
    args["negative_prompt_attention_mask"][:, 5:] = 0
    return args


def images(seed: int, count: int) -> list:
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)) for _ in range(count)]


def grid_noise(seed: int, frames: int, batch: int = 1) -> torch.Tensor:
    """Noise on the latent grid, [B, C, F, H, W] as diffusers draws it."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, TINY_TRANSFORMER.in_channels, (frames - 1) // 8 + 1, HEIGHT // 32, WIDTH // 32,
                       generator=gen)


def patched_randn(monkeypatch, module, noise: torch.Tensor):
    """diffusers' randn_tensor in ``module``, returning ``noise`` for the latent grid's shape."""
    original = module.randn_tensor

    def randn(shape, *args, **kwargs):
        return noise.clone() if tuple(shape) == tuple(noise.shape) else original(shape, *args, **kwargs)

    monkeypatch.setattr(module, "randn_tensor", randn)


def channels_last(noise: torch.Tensor) -> np.ndarray:
    return noise.permute(0, 2, 3, 4, 1).numpy()


def numpy_args(args: dict) -> dict:
    return {k: v.numpy() for k, v in args.items()}


COMMON = dict(height=HEIGHT, width=WIDTH, guidance_scale=3.0, guidance_rescale=0.7, decode_timestep=0.05,
              decode_noise_scale=0.0, output_type="np")


def test_image_to_video_matches_diffusers(tiny_reference, ours, monkeypatch):
    frames = 9
    reference = torch_pipeline(TorchI2V, tiny_reference, ours["i2v"].scheduler_config)
    noise = grid_noise(1, frames)
    patched_randn(monkeypatch, pipeline_ltx_image2video, noise)
    image, args = images(2, 1)[0], text(3)
    common = dict(COMMON, num_frames=frames, num_inference_steps=4, frame_rate=25)
    with torch.no_grad():
        ref = reference(image=image, **args, **common).frames
    out = ours["i2v"](image=image, noise=channels_last(noise), **numpy_args(args), **common)
    value = psnr(out, ref)
    report("image-to-video vs LTXImageToVideoPipeline, CFG 3 + rescale 0.7, 4 steps: PSNR dB", value, PSNR_MIN_DB,
           at_least=True)
    assert out.shape == ref.shape == (1, frames, HEIGHT, WIDTH, 3) and value >= PSNR_MIN_DB


def clip(seed: int, count: int) -> list:
    return images(seed, count)


CASES = {
    "image at frame 0, strength 1": dict(frames=9, conditions=lambda: [("image", images(10, 1)[0], 0, 1.0)]),
    "image at frame 0, strength 0.6": dict(frames=9, conditions=lambda: [("image", images(11, 1)[0], 0, 0.6)]),
    "image at 0 + 9-frame clip at 16": dict(frames=33, conditions=lambda: [("image", images(12, 1)[0], 0, 1.0),
                                                                          ("video", clip(13, 9), 16, 1.0)]),
    "17-frame clip at 0 (extension)": dict(frames=33, conditions=lambda: [("video", clip(14, 17), 0, 1.0)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_conditions_match_diffusers(tiny_reference, ours, monkeypatch, case):
    spec = CASES[case]
    frames, items = spec["frames"], spec["conditions"]()
    reference = torch_pipeline(TorchCondition, tiny_reference, LTX_SCHEDULER_STATIC)
    noise = grid_noise(20, frames)
    patched_randn(monkeypatch, pipeline_ltx_condition, noise)
    args = text(21)
    common = dict(COMMON, num_frames=frames, num_inference_steps=4, frame_rate=24, image_cond_noise_scale=0.0)
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition as TorchItem

    with torch.no_grad():
        ref = reference(conditions=[TorchItem(**{kind: x}, frame_index=k, strength=s) for kind, x, k, s in items],
                        **args, **common).frames
    conditions = [LTXVideoCondition(**{kind: x}, frame_index=k, strength=s) for kind, x, k, s in items]
    out = ours["cond"](conditions=conditions, noise=channels_last(noise), **numpy_args(args), **common)
    value = psnr(out, ref)
    report(f"condition pipeline vs LTXConditionPipeline, {case}: PSNR dB", value, PSNR_MIN_DB, at_least=True)
    assert out.shape == ref.shape == (1, frames, HEIGHT, WIDTH, 3) and value >= PSNR_MIN_DB


def test_video_to_video_matches_diffusers(tiny_reference, ours, monkeypatch):
    frames = 9
    reference = torch_pipeline(TorchCondition, tiny_reference, LTX_SCHEDULER_STATIC)
    source = ours["cond"].encode_video(
        np.stack([np.asarray(f, np.float32) / 127.5 - 1 for f in clip(30, frames)])[None], jax.random.PRNGKey(0))
    noise = grid_noise(31, frames)
    patched_randn(monkeypatch, pipeline_ltx_condition, noise)
    args = text(32)
    common = dict(COMMON, num_frames=frames, num_inference_steps=6, frame_rate=25, denoise_strength=0.7)
    with torch.no_grad():
        ref = reference(latents=torch.from_numpy(np.array(source)).permute(0, 4, 1, 2, 3).contiguous(), **args,
                        **common).frames
    out = ours["cond"](latents=source, noise=channels_last(noise), **numpy_args(args), **common)
    value = psnr(out, ref)
    report("video-to-video (denoise_strength 0.7) vs LTXConditionPipeline: PSNR dB", value, PSNR_MIN_DB, at_least=True)
    assert value >= PSNR_MIN_DB


def test_conditioning_noise_is_diffusers_formula():
    """Before each step, mask-1 tokens become init + scale * noise * (t / 1000)^2; the others keep their values."""
    sampler = sampling.Sampler(None, sampling.LatentGrid(1, 1, 4), (), per_token_timesteps=True)
    mask = jnp.asarray([[1.0, 0.6, 0.0, 1.0 - 1e-7]])
    inputs = sampling.SamplingInputs(prompt_embeds=None, prompt_attention_mask=None, sigmas=None, timesteps=None,
                                     guidance={}, conditioning_mask=mask, image_cond_noise_scale=jnp.float32(0.15),
                                     noise_key=jax.random.PRNGKey(7))
    latents, initial = jnp.full((1, 4, 3), 5.0), jnp.ones((1, 4, 3))
    out = np.asarray(sampler.noise_conditioning(latents, initial, jnp.float32(600.0), 2, inputs))
    noise = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(7), 2), (1, 4, 3)))
    expected = np.where(np.asarray(mask > 1 - 1e-6)[..., None], 1.0 + 0.15 * noise * 0.36, 5.0)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_new_images_and_strengths_compile_nothing(ours):
    pipe = ours["cond"]
    args = numpy_args(text(40))
    kwargs = dict(height=HEIGHT, width=WIDTH, num_frames=9, num_inference_steps=3, guidance_scale=3.0, **args)
    pipe(conditions=[LTXVideoCondition(image=images(41, 1)[0], strength=1.0)], seed=1, **kwargs)
    with compile_counter() as compiles:
        pipe(conditions=[LTXVideoCondition(image=images(42, 1)[0], strength=0.7)], seed=2, image_cond_noise_scale=0.3,
             **kwargs)
    print(f"\n[conditioning] backend compiles during the second call: {len(compiles)}")
    assert compiles == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(image="__missing__.png"), "image __missing__.png does not exist"),
    (dict(image=np.zeros((HEIGHT, WIDTH, 3), np.float32), frame_index=9), "frame_index 9 is at or past num_frames=9"),
    (dict(image=np.zeros((HEIGHT, WIDTH, 3), np.float32), strength=1.5), "strength must be in \\[0, 1\\], got 1.5"),
    (dict(video=np.zeros((12, HEIGHT, WIDTH, 3), np.float32)),
     "needs k \\* 8 \\+ 1 frames, got 12; nearest valid: 9 or 17"),
    (dict(denoise_strength=0.0), "denoise_strength must be > 0"),
    (dict(denoise_strength=0.5), "denoise_strength < 1 starts from latents="),
    (dict(conditions=[LTXVideoCondition(image=np.zeros((HEIGHT, WIDTH, 3)))], image=np.zeros((HEIGHT, WIDTH, 3))),
     "not both"),
    (dict(image=np.full((HEIGHT, WIDTH, 3), 2.0)), "floats outside \\[0, 1\\]"),
    (dict(image=np.zeros((HEIGHT, WIDTH))), "expected \\[H, W, 3\\]"),
])
def test_condition_errors(ours, kwargs, message):
    args = numpy_args(text(50))
    with pytest.raises(ValueError, match=message):
        ours["cond"](height=HEIGHT, width=WIDTH, num_frames=9, num_inference_steps=2, **args, **kwargs)

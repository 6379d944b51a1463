"""The compiled sampler against diffusers' own loops (fp32, tiny random components), and its structure.

* per-token timesteps and steps (diffusers' ``LTXConditionPipeline``): conditioning tokens of strength 1 and 0.8,
  extra conditioning tokens with their own ``video_coords`` (a later frame), CFG + rescale; diffusers' real
  ``__call__`` runs, with ``prepare_latents`` replaced by one that returns our latents, mask and coordinates (so the
  VAE never encodes and no random draw differs);
* the global step with a frame-0 conditioning mask (diffusers' ``LTXImageToVideoPipeline``, latents given);
* per-step guidance strengths against a reference loop over diffusers' transformer and scheduler;
* the step-invariant work (RoPE tables, caption projection, text keys/values) sits outside the loop of the lowered
  program; progress and stop requests go to the run's own control; a non-finite step ends the loop and is named;
  packing matches diffusers' with patches.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
import torch
from conftest import psnr, rel_err, report
from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline, LTXImageToVideoPipeline
from diffusers import LTXPipeline as TorchLTXPipeline

from ltx_jax import sampling
from ltx_jax.pipelines import LTXPipeline, NonFiniteError
from ltx_jax.releases import LTX_SCHEDULER_STATIC
from ltx_jax.scheduler import mu_for_tokens
from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER

PSNR_MIN_DB = 50.0
TOL_LATENTS = 1e-5  # max |ours - ref| / max |ref| of the final latents (fp32, same ops)
HEIGHT, WIDTH, FRAMES = 64, 96, 9
GRID = sampling.LatentGrid(2, 2, 3)  # latent frames x height x width for 9 x 64 x 96 with a 32x / 8x VAE
T_TEXT = 16
TIMESTEPS = [1000.0, 880.0, 640.0, 300.0]  # explicit: sigmas are these / 1000 stretched, per-token steps use t / 1000


@pytest.fixture(scope="module")
def ours(tiny_reference):
    return LTXPipeline.from_pretrained(tiny_reference["root"], dtype="float32", compilation_cache=False, progress=False)


def torch_components(tiny_reference, scheduler_config=LTX_SCHEDULER_STATIC):
    pipe = tiny_reference["pipe"]
    return dict(scheduler=FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(scheduler_config)), vae=pipe.vae,
                text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, transformer=pipe.transformer)


def text(seed: int, batch: int = 2):
    gen = torch.Generator().manual_seed(seed)
    embeds = torch.randn(batch, T_TEXT, TINY_T5.d_model, generator=gen)
    neg = torch.randn(batch, T_TEXT, TINY_T5.d_model, generator=gen)
    mask = torch.ones(batch, T_TEXT, dtype=torch.long)
    neg_mask = torch.ones(batch, T_TEXT, dtype=torch.long)
    mask[-1, 11:] = 0
    neg_mask[:, 4:] = 0
    return dict(prompt_embeds=embeds, prompt_attention_mask=mask, negative_prompt_embeds=neg,
                negative_prompt_attention_mask=neg_mask)


def numpy_args(args: dict) -> dict:
    return {k: v.numpy() for k, v in args.items()}


def test_per_token_steps_match_diffusers_condition_pipeline(tiny_reference, ours):
    cond = LTXConditionPipeline(**torch_components(tiny_reference))
    cond.set_progress_bar_config(disable=True)
    batch, channels, frame_rate = 2, TINY_TRANSFORMER.in_channels, 24
    gen = torch.Generator().manual_seed(21)
    extra_frames = 1  # one latent frame of conditioning tokens placed at pixel frame 5, as a keyframe would be
    main_ids = cond._scale_video_ids(cond._prepare_video_ids(batch, GRID.frames, GRID.height, GRID.width), 32, 8, 0)
    extra_ids = cond._scale_video_ids(cond._prepare_video_ids(batch, extra_frames, GRID.height, GRID.width), 32, 8, 5)
    n_extra = extra_frames * GRID.height * GRID.width
    latents = torch.randn(batch, n_extra + GRID.num_tokens, channels, generator=gen)
    mask = torch.zeros(batch, n_extra + GRID.num_tokens)
    mask[:, :n_extra] = 0.8  # the extra tokens' strength
    mask[:, n_extra : n_extra + GRID.height * GRID.width] = 1.0  # the first latent frame: an image at strength 1
    video_ids = torch.cat([extra_ids, main_ids], dim=2)

    def prepare_latents(*args, **kwargs):  # diffusers' loop, on our latents (nothing encoded, nothing drawn)
        return latents.clone(), mask.clone(), video_ids.clone(), n_extra

    cond.prepare_latents = prepare_latents
    args = text(seed=22)
    common = dict(height=HEIGHT, width=WIDTH, num_frames=FRAMES, frame_rate=frame_rate, timesteps=TIMESTEPS,
                  guidance_scale=3.0, guidance_rescale=0.7, decode_timestep=0.05, decode_noise_scale=0.0)
    with torch.no_grad():
        ref = cond(image=PIL.Image.new("RGB", (WIDTH, HEIGHT)), image_cond_noise_scale=0.0, output_type="np",
                   **args, **common).frames

    coords = video_ids.float()
    coords[:, 0] = coords[:, 0] * (1.0 / frame_rate)  # as diffusers scales them before the loop
    ours.scheduler_config, original = LTX_SCHEDULER_STATIC, ours.scheduler_config
    try:
        out = ours.denoise(jnp.asarray(latents.numpy()), GRID, *numpy_args(args).values(), timesteps=TIMESTEPS,
                           guidance_scale=3.0, guidance_rescale=0.7, conditioning_mask=mask.numpy(),
                           video_coords=coords.numpy(), per_token_timesteps=True)
    finally:
        ours.scheduler_config = original
    frames = ours.decode(out[:, n_extra:], GRID, decode_timestep=0.05, decode_noise_scale=0.0)
    value = psnr(frames, ref)
    report("sampler per-token steps vs LTXConditionPipeline (masks 1 / 0.8, extra tokens): PSNR dB", value,
           PSNR_MIN_DB, at_least=True)
    assert frames.shape == ref.shape and value >= PSNR_MIN_DB
    frozen = np.asarray(out[:, n_extra : n_extra + GRID.height * GRID.width])
    np.testing.assert_array_equal(frozen, latents.numpy()[:, n_extra : n_extra + GRID.height * GRID.width])


def test_global_step_with_frame0_mask_matches_diffusers_image_to_video(tiny_reference, ours):
    i2v = LTXImageToVideoPipeline(**torch_components(tiny_reference, ours.scheduler_config))
    i2v.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(31)
    latents = torch.randn(2, GRID.num_tokens, TINY_TRANSFORMER.in_channels, generator=gen)
    args = text(seed=32)
    common = dict(height=HEIGHT, width=WIDTH, num_frames=FRAMES, frame_rate=25, num_inference_steps=4,
                  guidance_scale=3.0, guidance_rescale=0.7, decode_timestep=0.05, decode_noise_scale=0.0)
    with torch.no_grad():  # given latents: diffusers encodes nothing and masks latent frame 0
        ref = i2v(image=None, latents=latents, output_type="np", **args, **common).frames
    mask = np.zeros((2, GRID.num_tokens), np.float32)
    mask[:, : GRID.height * GRID.width] = 1.0
    out = ours.denoise(jnp.asarray(latents.numpy()), GRID, *numpy_args(args).values(), frame_rate=25,
                       num_inference_steps=4, guidance_scale=3.0, guidance_rescale=0.7, conditioning_mask=mask)
    frames = ours.decode(out, GRID, decode_timestep=0.05, decode_noise_scale=0.0)
    value = psnr(frames, ref)
    report("sampler global step + frame-0 mask vs LTXImageToVideoPipeline: PSNR dB", value, PSNR_MIN_DB,
           at_least=True)
    assert value >= PSNR_MIN_DB


def test_per_step_guidance_matches_reference_loop(tiny_reference, ours):
    """diffusers has no per-step strengths: the reference is its transformer and scheduler in a loop that changes
    the scale and the rescale at every step, as Lightricks' guidance schedules do."""
    pipe: TorchLTXPipeline = tiny_reference["pipe"]
    scales, rescales = [1.5, 4.0, 2.5, 1.0], [0.0, 0.7, 0.3, 0.5]
    args = text(seed=41)
    latents = torch.randn(2, GRID.num_tokens, TINY_TRANSFORMER.in_channels, generator=torch.Generator().manual_seed(42))
    scheduler = FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(ours.scheduler_config))
    scheduler.set_timesteps(sigmas=list(np.linspace(1.0, 1 / 4, 4)),
                            mu=mu_for_tokens(ours.scheduler_config, GRID.num_latents))  # as LTXPipeline sets it
    embeds = torch.cat([args["negative_prompt_embeds"], args["prompt_embeds"]])
    mask = torch.cat([args["negative_prompt_attention_mask"], args["prompt_attention_mask"]])
    x = latents.clone()
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            v = pipe.transformer(torch.cat([x, x]), embeds, t.expand(4), mask, num_frames=GRID.frames,
                                 height=GRID.height, width=GRID.width, rope_interpolation_scale=(8 / 25, 32, 32),
                                 return_dict=False)[0].float()
            uncond, cond = v.chunk(2)
            guided = uncond + scales[i] * (cond - uncond)
            guided = torch_rescale(guided, cond, rescales[i])
            x = scheduler.step(guided, t, x, return_dict=False)[0]
    out = ours.denoise(jnp.asarray(latents.numpy()), GRID, *numpy_args(args).values(), num_inference_steps=4,
                       guidance_scale=scales, guidance_rescale=rescales)
    err = rel_err(out, x.numpy())
    report("sampler per-step CFG scale and rescale vs reference loop: latents rel err", err, TOL_LATENTS)
    assert err <= TOL_LATENTS


def torch_rescale(guided, cond, rescale):
    from diffusers.pipelines.ltx.pipeline_ltx import rescale_noise_cfg

    return rescale_noise_cfg(guided, cond, guidance_rescale=rescale)


def _eqns(jaxpr):
    """Every equation of a jaxpr, recursing into sub-jaxprs (scan, while, cond, pjit bodies)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def test_step_invariant_work_runs_once_per_call(ours):
    """In the lowered program the loop over steps holds no text projection (caption projection, cross-attention
    keys / values: a matmul of a T-token operand with a weight matrix) and no RoPE table (cos over N tokens)."""
    t_text, steps = 13, 5  # sizes that no other axis has
    grid = sampling.LatentGrid(2, 2, 3)
    # CFG and STG: the prompt's constants serve two branches, the negative prompt's one.
    sampler = sampling.Sampler(ours.transformer, grid,
                               (sampling.Segment(0, steps, sampling.Guidance(cfg=True, stg=True)),))
    inputs = sampling.SamplingInputs(
        prompt_embeds=jnp.zeros((2, t_text, TINY_T5.d_model)), prompt_attention_mask=jnp.ones((2, t_text), jnp.int32),
        negative_prompt_embeds=jnp.zeros((2, t_text, TINY_T5.d_model)),
        negative_prompt_attention_mask=jnp.ones((2, t_text), jnp.int32),
        sigmas=jnp.linspace(1, 0, steps + 1), timesteps=jnp.linspace(1000, 200, steps),
        guidance={k: jnp.full((steps,), 3.0 if k != "rescaling_scale" else 0.7) for k in sampling.SCALES},
        skip_masks=jnp.ones((steps, TINY_TRANSFORMER.num_layers)),
        rope_interpolation_scale=jnp.asarray([0.32, 32.0, 32.0]))
    latents = jnp.zeros((2, grid.num_tokens, TINY_TRANSFORMER.in_channels))
    jaxpr = jax.make_jaxpr(lambda p, x, i: sampler.sample(p, x, i))(ours.transformer_params, latents, inputs).jaxpr

    def text_projections(eqns):
        return [e for e in eqns if e.primitive.name == "dot_general"
                and any(len(v.aval.shape) == 2 for v in e.invars)
                and any(t_text in v.aval.shape for v in e.invars)]

    def rope_tables(eqns):
        return [e for e in eqns if e.primitive.name == "cos" and grid.num_tokens in e.outvars[0].aval.shape]

    loops = [e for e in jaxpr.eqns if e.primitive.name == "while"]
    assert len(loops) == 1, [e.primitive.name for e in jaxpr.eqns]
    body = list(_eqns(loops[0].params["body_jaxpr"].jaxpr))
    outside = [e for e in _eqns(jaxpr) if e not in body]
    print(f"\n[sampler] text projections outside / inside the loop: {len(text_projections(outside))} / "
          f"{len(text_projections(body))}; RoPE tables: {len(rope_tables(outside))} / {len(rope_tables(body))}")
    assert text_projections(outside) and rope_tables(outside)
    assert not text_projections(body) and not rope_tables(body)


def _inputs(embeds, steps: int, token=0):
    return sampling.SamplingInputs(
        prompt_embeds=jnp.asarray(embeds["prompt_embeds"].numpy()),
        prompt_attention_mask=jnp.asarray(embeds["prompt_attention_mask"].numpy(), jnp.int32),
        sigmas=jnp.linspace(1, 0, steps + 1), timesteps=jnp.linspace(1000, 300, steps),
        guidance={k: jnp.full((steps,), v) for k, v in sampling.SCALES.items()},
        rope_interpolation_scale=jnp.asarray([0.32, 32.0, 32.0]), control_token=np.int32(token))


def _one_segment(steps: int):
    return (sampling.Segment(0, steps, sampling.Guidance()),)


def test_progress_and_stop_requests_go_to_their_own_control(ours):
    seen, other = [], []
    embeds = text(seed=51, batch=1)
    def latents():  # a new buffer each time: the loop consumes (donates) its latents
        return jnp.zeros((1, GRID.num_tokens, TINY_TRANSFORMER.in_channels))

    sampler = sampling.Sampler(ours.transformer, GRID, _one_segment(3))
    with sampling.controlled(sampling.RunControl(other.append)):
        ours.progress = True  # the pipeline's bar: a control of its own
        try:
            ours.denoise(latents(), GRID, embeds["prompt_embeds"].numpy(), embeds["prompt_attention_mask"].numpy(),
                         num_inference_steps=3, guidance_scale=1.0)
        finally:
            ours.progress = False
        control = sampling.RunControl(seen.append)
        with sampling.controlled(control) as token:
            result = sampling.run(lambda: sampling.jitted_sample(sampler, ours.transformer_params, latents(),
                                                                 _inputs(embeds, 3, token)), control, stage="denoising")
    assert seen == [0, 1, 2] and int(result.steps) == 3 and int(result.nonfinite_step) == -1
    assert other == []  # the outer control saw nothing of either run

    def stop_after_two(step):
        if step == 1:
            stopping.request_stop()

    stopping = sampling.RunControl(stop_after_two)
    sampler = sampling.Sampler(ours.transformer, GRID, (sampling.Segment(0, 3, sampling.Guidance()),
                                                        sampling.Segment(3, 6, sampling.Guidance())))
    with sampling.controlled(stopping) as token:
        result = sampling.jitted_sample(sampler, ours.transformer_params, latents(), _inputs(embeds, 6, token))
        assert int(result.steps) == 2 and stopping.steps_done == 2  # stopped at the next condition check


def test_stepping_from_the_host_gives_the_one_program_loop_its_latents(ours):
    """``sample_stepwise`` (what the pipelines run with the persistent cache on): the same latents as
    ``jitted_sample`` over two segments, each step reported once, a stop request honoured at the next step, programs
    without host callbacks, and one compile of the step program for every step count."""
    embeds = text(seed=53, batch=1)
    key = jax.random.PRNGKey(5)

    def latents():
        return jax.random.normal(key, (1, GRID.num_tokens, TINY_TRANSFORMER.in_channels))

    segments = (sampling.Segment(0, 2, sampling.Guidance()), sampling.Segment(2, 4, sampling.Guidance()))
    sampler = sampling.Sampler(ours.transformer, GRID, segments)
    stepwise = dataclasses.replace(sampler, host_callbacks=False)
    whole = sampling.jitted_sample(sampler, ours.transformer_params, latents(), _inputs(embeds, 4))
    seen = []
    control = sampling.RunControl(seen.append)
    stepped = sampling.sample_stepwise(stepwise, ours.transformer_params, latents(), _inputs(embeds, 4), control)
    err = rel_err(np.asarray(stepped.latents), np.asarray(whole.latents))
    report("denoising stepped from the host vs one program", err, 1e-6)
    assert err <= 1e-6 and int(stepped.steps) == 4 and int(stepped.nonfinite_step) == -1 and seen == [0, 1, 2, 3]

    def stop_after_two(step):
        if step == 1:
            stopping.request_stop()

    stopping = sampling.RunControl(stop_after_two)
    stopped = sampling.sample_stepwise(stepwise, ours.transformer_params, latents(), _inputs(embeds, 4), stopping)
    assert int(stopped.steps) == 2 and stopping.steps_done == 2

    from ltx_jax.sampling.loop import jitted_advance, jitted_prepare

    args = (ours.transformer_params, latents(), _inputs(embeds, 4))
    prepared, initial = jitted_prepare(stepwise, *args)
    carry = stepwise.initial_carry(initial)
    for program, call in ((jitted_prepare, (stepwise, *args)),
                          (jitted_advance, (stepwise, args[0], prepared, carry, initial, args[2], np.int32(1)))):
        assert "callback" not in program.lower(*call).as_text()  # what lets the persistent cache keep them
    with pytest.raises(ValueError, match="host_callbacks=False"):
        sampling.sample_stepwise(sampler, *args)


def test_nonfinite_latents_stop_the_loop_at_their_step(ours):
    embeds = text(seed=52, batch=1)
    latents = np.zeros((1, GRID.num_tokens, TINY_TRANSFORMER.in_channels), np.float32)
    latents[0, 3, 1] = np.nan
    with pytest.raises(NonFiniteError, match="denoising produced NaN or Inf at step 1 of 4"):
        ours.denoise(jnp.asarray(latents), GRID, embeds["prompt_embeds"].numpy(),
                     embeds["prompt_attention_mask"].numpy(), num_inference_steps=4, guidance_scale=1.0)
    with pytest.raises(ValueError, match="latents contain NaN or Inf"):
        ours.prepare_latents(1, GRID, None, latents)


@pytest.mark.parametrize("patch_size, patch_size_t", [(1, 1), (2, 1), (1, 2)])
def test_packing_matches_diffusers(patch_size, patch_size_t):
    grid = sampling.LatentGrid(4, 6, 4, patch_size, patch_size_t)
    latents = np.random.default_rng(0).standard_normal((2, 5, grid.frames, grid.height, grid.width), np.float32)
    ref = TorchLTXPipeline._pack_latents(torch.from_numpy(latents), patch_size, patch_size_t).numpy()
    ours = sampling.pack_latents(jnp.asarray(latents.transpose(0, 2, 3, 4, 1)), patch_size, patch_size_t)
    np.testing.assert_array_equal(np.asarray(ours), ref)
    assert ours.shape[1] == grid.num_tokens
    back = sampling.unpack_latents(ours, grid)
    np.testing.assert_array_equal(np.asarray(back), latents.transpose(0, 2, 3, 4, 1))


def test_per_step_values_are_checked():
    with pytest.raises(ValueError, match="guidance_scale has 3 values for 4 steps"):
        sampling.per_step("guidance_scale", [1.0, 2.0, 3.0], 4)
    np.testing.assert_array_equal(sampling.per_step("x", 2.5, 3), np.full(3, 2.5, np.float32))

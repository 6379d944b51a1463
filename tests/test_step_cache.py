"""Step caching in the compiled loop (``Sampler(cache="first_block")``) against diffusers' ``FirstBlockCacheConfig``.

* parity: a reference loop (Euler flow-matching steps over diffusers' ``LTXVideoTransformer3DModel`` with
  ``enable_cache(FirstBlockCacheConfig(threshold))``, the batched CFG forward under one ``cache_context`` as
  ``LTXPipeline`` runs it) skips the same steps as ours, and the latents match (PSNR of the decoded frames);
* the threshold is a traced input: a new one compiles nothing;
* threshold 0 skips nothing and equals the uncached loop; over CFG / CFG + STG / conditional-only segments each
  segment starts with an empty cache; stepping from the host carries the cache as the one-program loop does.
"""

from __future__ import annotations

import copy

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import compile_counter, psnr, rel_err, report
from diffusers.hooks import FirstBlockCacheConfig

from ltx_jax import sampling
from ltx_jax.pipelines import LTXPipeline
from ltx_jax.sampling.loop import sample_stepwise
from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER

PSNR_MIN_DB = 50.0
TOL_LATENTS = 1e-5  # max |ours - ref| / max |ref| of the final latents (fp32)
GRID = sampling.LatentGrid(2, 2, 3)
T_TEXT, BATCH, STEPS, GUIDANCE_SCALE = 16, 2, 8, 3.0
ROPE_SCALE = (8 / 25, 32.0, 32.0)
SIGMAS = np.append(np.linspace(1.0, 0.1, STEPS), 0.0).astype(np.float32)


@pytest.fixture(scope="module")
def ours(tiny_reference):
    return LTXPipeline.from_pretrained(tiny_reference["root"], dtype="float32", compilation_cache=False, progress=False)


def _text(seed: int):
    gen = torch.Generator().manual_seed(seed)
    embeds = torch.randn(BATCH, T_TEXT, TINY_T5.d_model, generator=gen)
    neg = torch.randn(BATCH, T_TEXT, TINY_T5.d_model, generator=gen)
    mask, neg_mask = torch.ones(BATCH, T_TEXT, dtype=torch.long), torch.ones(BATCH, T_TEXT, dtype=torch.long)
    mask[-1, 11:] = 0
    neg_mask[:, 4:] = 0
    return embeds, mask, neg, neg_mask


def _latents(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, GRID.num_tokens, TINY_TRANSFORMER.in_channels, generator=gen)


def _inputs(text, threshold: float | None, stg_scale: float = 0.0):
    embeds, mask, neg, neg_mask = (jnp.asarray(t.numpy()) for t in text)
    guidance = {k: jnp.full((STEPS,), v, jnp.float32) for k, v in sampling.SCALES.items()}
    guidance["guidance_scale"] = jnp.full((STEPS,), GUIDANCE_SCALE, jnp.float32)
    guidance["stg_scale"] = jnp.full((STEPS,), stg_scale, jnp.float32)
    skip_masks = jnp.ones((STEPS, TINY_TRANSFORMER.num_layers), jnp.float32).at[:, 1].set(0.0)
    return sampling.SamplingInputs(
        prompt_embeds=embeds, prompt_attention_mask=mask.astype(jnp.int32), negative_prompt_embeds=neg,
        negative_prompt_attention_mask=neg_mask.astype(jnp.int32), sigmas=jnp.asarray(SIGMAS),
        timesteps=jnp.asarray(SIGMAS[:-1] * 1000.0), guidance=guidance, skip_masks=skip_masks,
        rope_interpolation_scale=jnp.asarray(ROPE_SCALE, jnp.float32),
        cache_threshold=None if threshold is None else jnp.float32(threshold))


def _sample(ours, segments, latents, inputs, cache="first_block"):
    sampler = sampling.Sampler(ours.transformer, GRID, segments, cache=cache)
    return sampling.jitted_sample(sampler, ours.transformer_params, jnp.asarray(latents), inputs)


CFG = (sampling.Segment(0, STEPS, sampling.Guidance(cfg=True)),)


def reference_loop(transformer, latents, text, threshold: float | None):
    """Euler steps with CFG over diffusers' transformer (First Block Cache hooked when ``threshold`` is given), the
    batched [uncond, cond] forward in one ``cache_context`` as ``LTXPipeline`` calls it. Returns the final latents,
    the steps the hook skipped and its relative changes (None where it had no cached residual)."""
    transformer = copy.deepcopy(transformer)
    decisions, changes = [], []
    if threshold is not None:
        transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        hook = transformer.transformer_blocks[0]._diffusers_hook.get_hook("fbc_leader_block_hook")
        decide = hook._should_compute_remaining_blocks

        def recording(residual):
            state = hook.state_manager.get_state()
            prev = state.head_block_residual
            changes.append(None if prev is None else float((residual - prev).abs().mean() / prev.abs().mean()))
            decisions.append(decide(residual))
            return decisions[-1]

        hook._should_compute_remaining_blocks = recording
    embeds, mask, neg, neg_mask = text
    x = latents.clone()
    with torch.no_grad():
        for i in range(STEPS):
            t = torch.tensor(SIGMAS[i] * 1000.0).expand(2 * BATCH)
            with transformer.cache_context("cond_uncond"):
                v = transformer(torch.cat([x, x]), torch.cat([neg, embeds]), t, torch.cat([neg_mask, mask]),
                                num_frames=GRID.frames, height=GRID.height, width=GRID.width,
                                rope_interpolation_scale=ROPE_SCALE, return_dict=False)[0].float()
            uncond, cond = v.chunk(2)
            x = x + float(SIGMAS[i + 1] - SIGMAS[i]) * (uncond + GUIDANCE_SCALE * (cond - uncond))
    return x, [not d for d in decisions], changes


def test_skips_and_latents_match_diffusers_first_block_cache(tiny_reference, ours):
    torch_transformer = tiny_reference["pipe"].transformer
    text, latents = _text(seed=61), _latents(seed=62)
    # The threshold: halfway between the middle two relative changes of a run that recomputes every step, so some
    # steps skip and some do not; checked below to sit well away from every change the cached run meets (float
    # error cannot flip a decision).
    _, _, changes = reference_loop(torch_transformer, latents, text, threshold=0.0)
    changes = sorted(c for c in changes if c is not None)
    threshold = (changes[len(changes) // 2 - 1] + changes[len(changes) // 2]) / 2
    ref, ref_skipped, ref_changes = reference_loop(torch_transformer, latents, text, threshold)
    uncached, _, _ = reference_loop(torch_transformer, latents, text, None)
    margin = min(abs(c - threshold) / threshold for c in ref_changes if c is not None)
    print(f"\n[first block cache] threshold {threshold:.4f}; diffusers' changes "
          f"{[None if c is None else round(c, 4) for c in ref_changes]}; skipped {ref_skipped}")
    assert 0 < sum(ref_skipped) < STEPS - 1 and margin > 1e-3

    result = _sample(ours, CFG, latents.numpy(), _inputs(text, threshold))
    skipped = np.asarray(result.cached_steps).tolist()
    frames = ours.decode(result.latents, GRID)
    ref_frames = ours.decode(jnp.asarray(ref.numpy()), GRID)
    value, err = psnr(frames, ref_frames), rel_err(result.latents, ref.numpy())
    report("first block cache vs diffusers' hook: decoded frames PSNR dB", value, PSNR_MIN_DB, at_least=True)
    report("first block cache vs diffusers' hook: latents rel err", err, TOL_LATENTS)
    print(f"[first block cache] ours skipped {skipped}; latents moved by the cache "
          f"{rel_err(ref.numpy(), uncached.numpy()):.3e} (rel, diffusers cached vs uncached)")
    assert skipped == ref_skipped and int(result.steps) == STEPS
    assert value >= PSNR_MIN_DB and err <= TOL_LATENTS


def test_a_new_threshold_compiles_nothing(ours):
    text, latents = _text(seed=63), _latents(seed=64).numpy()
    first = _sample(ours, CFG, latents, _inputs(text, 0.05))
    with compile_counter() as compiles:
        second = _sample(ours, CFG, latents, _inputs(text, 1e9))
    skipped = np.asarray(second.cached_steps)
    print(f"\n[first block cache] compiles for a new threshold: {len(compiles)}; skipped at 1e9: {skipped.tolist()}")
    assert compiles == [] and not skipped[0] and skipped[1:].all()
    assert not np.array_equal(np.asarray(first.latents), np.asarray(second.latents))


def test_threshold_zero_equals_the_uncached_loop_over_cfg_and_stg_segments(ours):
    """Three segments with 2, 3 and 1 branches: a cache per segment, each starting empty (its first step runs every
    block whatever the threshold); threshold 0 reruns every block, which is the uncached loop."""
    segments = (sampling.Segment(0, 3, sampling.Guidance(cfg=True)),
                sampling.Segment(3, 6, sampling.Guidance(cfg=True, stg=True)),
                sampling.Segment(6, STEPS, sampling.Guidance()))
    text, latents = _text(seed=65), _latents(seed=66).numpy()
    plain = _sample(ours, segments, latents, _inputs(text, None, stg_scale=1.0), cache=None)
    zero = _sample(ours, segments, latents, _inputs(text, 0.0, stg_scale=1.0))
    err = rel_err(zero.latents, plain.latents)
    report("first block cache at threshold 0 vs uncached loop (CFG, CFG + STG, cond): latents rel err", err, 0.0)
    assert not np.asarray(zero.cached_steps).any() and not np.asarray(plain.cached_steps).any()
    assert err == 0.0

    always = _sample(ours, segments, latents, _inputs(text, 1e9, stg_scale=1.0))
    starts = [s.start for s in segments]
    assert np.asarray(always.cached_steps).tolist() == [i not in starts for i in range(STEPS)]
    assert np.isfinite(np.asarray(always.latents)).all()

    sampler = sampling.Sampler(ours.transformer, GRID, segments, host_callbacks=False, cache="first_block")
    stepped = sample_stepwise(sampler, ours.transformer_params, jnp.asarray(latents),
                              _inputs(text, 1e9, stg_scale=1.0))
    err = rel_err(stepped.latents, always.latents)
    report("first block cache stepped from the host vs one program: latents rel err", err, 1e-6)
    assert err <= 1e-6 and np.array_equal(np.asarray(stepped.cached_steps), np.asarray(always.cached_steps))


def test_cache_arguments_are_checked(ours):
    with pytest.raises(ValueError, match="cache='teacache'"):
        sampling.Sampler(ours.transformer, GRID, CFG, cache="teacache")
    with pytest.raises(ValueError, match="cache_threshold"):
        _sample(ours, CFG, _latents(seed=67).numpy(), _inputs(_text(seed=68), None))


def test_the_pipeline_call_takes_cache_and_threshold(ours):
    """``pipe(cache="first_block", cache_threshold=...)``: threshold 0 gives the uncached frames exactly, a large one
    reuses the cache after the first step and says so in ``last_cached_steps``; bad values are one line."""
    call = dict(prompt="a fox", height=64, width=96, num_frames=9, num_inference_steps=4, guidance_scale=1.0,
                seed=3, output_type="np")
    plain = ours(**call)
    assert ours.last_cached_steps is None
    exact = ours(**call, cache="first_block", cache_threshold=0.0)
    np.testing.assert_array_equal(exact, plain)
    assert not ours.last_cached_steps.any()
    ours(**call, cache="first_block", cache_threshold=1e9)
    assert ours.last_cached_steps.tolist() == [False, True, True, True]
    with pytest.raises(ValueError, match="cache='teacache'; use one of 'first_block'"):
        ours(**call, cache="teacache")
    with pytest.raises(ValueError, match="cache_threshold"):
        ours(**call, cache="first_block", cache_threshold=-1.0)


@pytest.mark.parametrize("value, expected", [("first_block", ("first_block", 0.05)),
                                             ("first_block:0.1", ("first_block", 0.1)),
                                             ("first_block:0", ("first_block", 0.0))])
def test_cache_flag_parses(value, expected):
    from ltx_jax.generate_flags import parse_cache

    assert parse_cache(value) == expected


@pytest.mark.parametrize("value", ["teacache", "first_block:", "first_block:x", "first_block:-1", "first_block:inf",
                                   "first_block:nan"])
def test_bad_cache_flags_are_one_line(value):
    from ltx_jax.generate_flags import UsageError, parse_cache

    if value == "first_block:":
        assert parse_cache(value) == ("first_block", 0.05)  # an empty threshold is the default
        return
    with pytest.raises(UsageError, match="--cache .*e.g. --cache first_block:0.05"):
        parse_cache(value)

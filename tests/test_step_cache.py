"""Step caching in the compiled loop (``Sampler(cache=...)``) against the references.

* First Block Cache: a reference loop (Euler flow-matching steps over diffusers' ``LTXVideoTransformer3DModel`` with
  ``enable_cache(FirstBlockCacheConfig(threshold))``, the batched CFG forward under one ``cache_context`` as
  ``LTXPipeline`` runs it) skips the same steps as ours, and the latents match (PSNR of the decoded frames);
* TeaCache: the same loop over diffusers' transformer with ComfyUI-TeaCache's LTX rule written out in torch
  (``teacache_forward``: a state per cond / uncond branch, the rescaled distance of block 0's modulated input
  accumulated, the residual over every block and the final modulation reused) skips the same steps as ours, and the
  latents match (PSNR of the latents);
* the threshold is a traced input: a new one compiles nothing;
* threshold 0 skips nothing and equals the uncached loop; over CFG / CFG + STG / conditional-only segments each
  segment starts with an empty cache; stepping from the host carries the cache as the one-program loop does;
* ``cache_exclude_conditioning``: the distances over the free tokens of an image-to-video mask, checked by hand;
* the first-block cache runs blocks 1 .. L-1 without copying their stacked weights (the compiled program's arrays).
"""

from __future__ import annotations

import copy
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import compile_counter, psnr, rel_err, report
from diffusers.hooks import FirstBlockCacheConfig

from ltx_jax import sampling
from ltx_jax.configs import TransformerConfig
from ltx_jax.models import init_params
from ltx_jax.models.transformer import LTXVideoTransformer3DModel
from ltx_jax.pipelines import LTXPipeline
from ltx_jax.sampling import step_cache
from ltx_jax.sampling.loop import jitted_advance, jitted_prepare, sample_stepwise
from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER
from weight_conversion.mapping import flatten

PSNR_MIN_DB = 50.0  # decoded frames (first block cache) / latents, peak max |ref| (TeaCache)
TOL_LATENTS = 1e-5  # max |ours - ref| / max |ref| of the final latents (fp32)
TOL_DISTANCE = 1e-5  # relative, the cache's distance against the one computed by hand (fp32)
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
    moved = f"{rel_err(ref.numpy(), uncached.numpy()):.3e} (rel, diffusers cached vs uncached)"
    check_parity("first block cache vs diffusers' hook", "decoded frames", psnr(frames, ref_frames), result, ref,
                 skipped, ref_skipped, moved)


def check_parity(name: str, what: str, value: float, result, ref, skipped, ref_skipped, moved: str) -> None:
    """Reports and checks a cached loop against its reference: PSNR ``value`` of ``what``, the latents' relative
    error, the same steps skipped, every step taken."""
    err = rel_err(result.latents, ref.numpy())
    report(f"{name}: {what} PSNR dB", value, PSNR_MIN_DB, at_least=True)
    report(f"{name}: latents rel err", err, TOL_LATENTS)
    print(f"[{name}] ours skipped {skipped}; latents moved by the cache {moved}")
    assert skipped == ref_skipped and int(result.steps) == STEPS
    assert value >= PSNR_MIN_DB and err <= TOL_LATENTS


def teacache_forward(transformer, hidden, encoder, timestep, encoder_mask, states, threshold):
    """diffusers' ``LTXVideoTransformer3DModel.forward`` with ComfyUI-TeaCache's ``teacache_ltxvmodel_forward`` rule
    (its ``update_cache_state`` per branch; ``states``: {"uncond", "cond"} in the batch's order, each ComfyUI's dict).
    Returns the prediction, whether the call reused the residual, and the accumulated distances it compared."""
    batch = hidden.shape[0]
    rope = transformer.rope(hidden, GRID.frames, GRID.height, GRID.width, ROPE_SCALE, None)
    bias = ((1 - encoder_mask.float()) * -10000.0).unsqueeze(1)
    x = transformer.proj_in(hidden)
    temb, embedded = transformer.time_embed(timestep.flatten(), batch_size=batch, hidden_dtype=x.dtype)
    temb, embedded = temb.view(batch, -1, temb.size(-1)), embedded.view(batch, -1, embedded.size(-1))
    encoder = transformer.caption_projection(encoder).view(batch, -1, x.size(-1))
    first = transformer.transformer_blocks[0]
    ada = first.scale_shift_table[None, None] + temb.reshape(batch, temb.size(1), 6, -1)
    modulated = first.norm1(x) * (1 + ada[:, :, 1]) + ada[:, :, 0]
    rows, compared = batch // len(states), []
    for k, state in enumerate(states.values()):
        m = modulated[k * rows:(k + 1) * rows]
        if state["previous_modulated_input"] is not None:
            prev = state["previous_modulated_input"]
            state["accumulated_rel_l1_distance"] += float(np.poly1d(step_cache.TEACACHE_LTXV_COEFFICIENTS)(
                float((m - prev).abs().mean() / prev.abs().mean())))
            compared.append(state["accumulated_rel_l1_distance"])
            state["should_calc"] = not state["accumulated_rel_l1_distance"] < threshold
            if state["should_calc"]:
                state["accumulated_rel_l1_distance"] = 0.0
        state["previous_modulated_input"] = m
    should_calc = any(state["should_calc"] for state in states.values())
    if not should_calc:
        x = x + torch.cat([state["previous_residual"] for state in states.values()])
    else:
        start = x
        for block in transformer.transformer_blocks:
            x = block(x, encoder, temb, rope, bias)
        shift_scale = transformer.scale_shift_table[None, None] + embedded[:, :, None]
        x = transformer.norm_out(x) * (1 + shift_scale[:, :, 1]) + shift_scale[:, :, 0]
        for k, state in enumerate(states.values()):
            state["previous_residual"] = (x - start)[k * rows:(k + 1) * rows]
    return transformer.proj_out(x), not should_calc, compared


def teacache_reference_loop(transformer, latents, text, threshold: float):
    """``reference_loop``'s Euler + CFG steps with ``teacache_forward``'s state starting empty (ComfyUI's at step
    0). Returns the final latents, the steps that reused the residual and every accumulated distance compared."""
    embeds, mask, neg, neg_mask = text
    states = {k: {"should_calc": True, "accumulated_rel_l1_distance": 0.0, "previous_modulated_input": None,
                  "previous_residual": None} for k in ("uncond", "cond")}
    x, skipped, compared = latents.clone(), [], []
    with torch.no_grad():
        for i in range(STEPS):
            t = torch.tensor(SIGMAS[i] * 1000.0).expand(2 * BATCH)
            v, skip, acc = teacache_forward(transformer, torch.cat([x, x]), torch.cat([neg, embeds]), t,
                                            torch.cat([neg_mask, mask]), states, threshold)
            skipped.append(skip)
            compared += acc
            uncond, cond = v.float().chunk(2)
            x = x + float(SIGMAS[i + 1] - SIGMAS[i]) * (uncond + GUIDANCE_SCALE * (cond - uncond))
    return x, skipped, compared


def latents_psnr(ours, ref) -> float:
    """PSNR in dB of latents, the peak being max |ref|."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    mse = float(np.mean((ours - ref) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(np.max(np.abs(ref)) ** 2 / mse)


def test_skips_and_latents_match_comfyui_teacache(tiny_reference, ours):
    torch_transformer = tiny_reference["pipe"].transformer
    text, latents = _text(seed=71), _latents(seed=72)
    # The threshold: the increments of a run that recomputes every step (each compared distance is then one step's
    # rescaled change), one and a half times their median, so that a step skips about every other step; checked below
    # to sit well away from every accumulated distance the cached run compares (float error cannot flip a decision).
    _, _, increments = teacache_reference_loop(torch_transformer, latents, text, threshold=1e-12)
    threshold = 1.5 * float(np.median(increments))
    ref, ref_skipped, compared = teacache_reference_loop(torch_transformer, latents, text, threshold)
    margin = min(abs(c - threshold) / threshold for c in compared)
    print(f"\n[teacache] threshold {threshold:.4f}; accumulated distances compared {np.round(compared, 4).tolist()}; "
          f"skipped {ref_skipped}")
    assert 0 < sum(ref_skipped) < STEPS - 1 and margin > 1e-3

    result = _sample(ours, CFG, latents.numpy(), _inputs(text, threshold), cache="teacache")
    skipped = np.asarray(result.cached_steps).tolist()
    uncached = _sample(ours, CFG, latents.numpy(), _inputs(text, None), cache=None)
    moved = f"{rel_err(result.latents, uncached.latents):.3e} (rel, ours cached vs uncached)"
    check_parity("teacache vs ComfyUI's rule over diffusers", "latents", latents_psnr(result.latents, ref.numpy()),
                 result, ref, skipped, ref_skipped, moved)


@pytest.mark.parametrize("kind", step_cache.CACHE_KINDS)
def test_a_new_threshold_compiles_nothing(ours, kind):
    text, latents = _text(seed=63), _latents(seed=64).numpy()
    first = _sample(ours, CFG, latents, _inputs(text, 0.05), cache=kind)
    with compile_counter() as compiles:
        second = _sample(ours, CFG, latents, _inputs(text, 1e9), cache=kind)
    skipped = np.asarray(second.cached_steps)
    print(f"\n[{kind}] compiles for a new threshold: {len(compiles)}; skipped at 1e9: {skipped.tolist()}")
    assert compiles == [] and not skipped[0] and skipped[1:].all()
    assert not np.array_equal(np.asarray(first.latents), np.asarray(second.latents))


@pytest.mark.parametrize("kind", step_cache.CACHE_KINDS)
def test_threshold_zero_equals_the_uncached_loop_over_cfg_and_stg_segments(ours, kind):
    """Three segments with 2, 3 and 1 branches: a cache per segment, each starting empty (its first step runs every
    block whatever the threshold); threshold 0 reruns every block, which is the uncached loop."""
    segments = (sampling.Segment(0, 3, sampling.Guidance(cfg=True)),
                sampling.Segment(3, 6, sampling.Guidance(cfg=True, stg=True)),
                sampling.Segment(6, STEPS, sampling.Guidance()))
    text, latents = _text(seed=65), _latents(seed=66).numpy()
    plain = _sample(ours, segments, latents, _inputs(text, None, stg_scale=1.0), cache=None)
    zero = _sample(ours, segments, latents, _inputs(text, 0.0, stg_scale=1.0), cache=kind)
    err = rel_err(zero.latents, plain.latents)
    report(f"{kind} at threshold 0 vs uncached loop (CFG, CFG + STG, cond): latents rel err", err, 0.0)
    assert not np.asarray(zero.cached_steps).any() and not np.asarray(plain.cached_steps).any()
    assert err == 0.0

    always = _sample(ours, segments, latents, _inputs(text, 1e9, stg_scale=1.0), cache=kind)
    starts = [s.start for s in segments]
    assert np.asarray(always.cached_steps).tolist() == [i not in starts for i in range(STEPS)]
    assert np.isfinite(np.asarray(always.latents)).all()

    if kind != "first_block":  # stepping from the host carries any kind's state alike
        return
    sampler = sampling.Sampler(ours.transformer, GRID, segments, host_callbacks=False, cache=kind)
    stepped = sample_stepwise(sampler, ours.transformer_params, jnp.asarray(latents),
                              _inputs(text, 1e9, stg_scale=1.0))
    err = rel_err(stepped.latents, always.latents)
    report(f"{kind} stepped from the host vs one program: latents rel err", err, 1e-6)
    assert err <= 1e-6 and np.array_equal(np.asarray(stepped.cached_steps), np.asarray(always.cached_steps))


def test_cache_arguments_are_checked(ours):
    with pytest.raises(ValueError, match="cache='tea'"):
        sampling.Sampler(ours.transformer, GRID, CFG, cache="tea")
    one_layer = ours.transformer.clone(config=ours.transformer.config.replace(num_layers=1))
    with pytest.raises(ValueError, match="cache='first_block' needs at least 2 transformer layers"):
        sampling.Sampler(one_layer, GRID, CFG, cache="first_block")
    sampling.Sampler(one_layer, GRID, CFG, cache="teacache")  # TeaCache reuses all blocks or none
    with pytest.raises(ValueError, match="cache_threshold"):
        _sample(ours, CFG, _latents(seed=67).numpy(), _inputs(_text(seed=68), None))


def test_the_pipeline_call_takes_cache_and_threshold(ours):
    """``pipe(cache="first_block", cache_threshold=...)``: threshold 0 gives the uncached frames exactly, a large one
    reuses the cache after the first step and says so in ``last_cached_steps``; the same with ``cache="teacache"``
    (and its default threshold); bad values are one line."""
    call = dict(prompt="a fox", height=64, width=96, num_frames=9, num_inference_steps=4, guidance_scale=1.0,
                seed=3, output_type="np")
    plain = ours(**call)
    assert ours.last_cached_steps is None
    exact = ours(**call, cache="first_block", cache_threshold=0.0)
    np.testing.assert_array_equal(exact, plain)
    assert not ours.last_cached_steps.any()
    ours(**call, cache="first_block", cache_threshold=1e9)
    assert ours.last_cached_steps.tolist() == [False, True, True, True]
    ours(**call, cache="teacache", cache_threshold=1e9)
    assert ours.last_cached_steps.tolist() == [False, True, True, True]
    np.testing.assert_array_equal(ours(**call, cache="teacache", cache_threshold=0.0), plain)
    assert not ours.last_cached_steps.any()
    ours(**call, cache="teacache")  # ComfyUI's recommended 0.06
    with pytest.raises(ValueError, match="cache='tea'; use one of 'first_block', 'teacache'"):
        ours(**call, cache="tea")
    with pytest.raises(ValueError, match="cache_threshold"):
        ours(**call, cache="first_block", cache_threshold=-1.0)


@pytest.mark.parametrize("value, expected", [("first_block", ("first_block", 0.05)),
                                             ("first_block:0.1", ("first_block", 0.1)),
                                             ("first_block:0", ("first_block", 0.0)),
                                             ("teacache", ("teacache", 0.06)),
                                             ("teacache:0.1", ("teacache", 0.1))])
def test_cache_flag_parses(value, expected):
    from ltx_jax.generate_flags import parse_cache

    assert parse_cache(value) == expected


@pytest.mark.parametrize("value", ["tea", "first_block:", "first_block:x", "first_block:-1", "first_block:inf",
                                   "first_block:nan", "teacache:-0.1"])
def test_bad_cache_flags_are_one_line(value):
    from ltx_jax.generate_flags import UsageError, parse_cache

    if value == "first_block:":
        assert parse_cache(value) == ("first_block", 0.05)  # an empty threshold is the default
        return
    with pytest.raises(UsageError, match="--cache .*e.g. --cache (first_block:0.05|teacache:0.06)"):
        parse_cache(value)


@pytest.mark.parametrize("kind", step_cache.CACHE_KINDS)
def test_excluded_conditioning_tokens_leave_the_distance(ours, kind):
    """Image-to-video: the first latent frame's tokens are clean conditions (mask 1). With
    ``cache_exclude_conditioning`` the distance of step 1 (against step 0's state) is the one computed by hand over the
    other tokens, and differs from the one over every token."""
    text, latents = _text(seed=73), _latents(seed=74).numpy()
    mask = np.zeros((BATCH, GRID.num_tokens), np.float32)
    mask[:, :GRID.height * GRID.width] = 1.0  # latent frame 0
    inputs = _inputs(text, 0.0).replace(conditioning_mask=jnp.asarray(mask))
    sampler = sampling.Sampler(ours.transformer, GRID, CFG, host_callbacks=False, cache=kind,
                               cache_exclude_conditioning=True)
    params = ours.transformer_params
    prepared, initial = jitted_prepare(sampler, params, jnp.asarray(latents), inputs)
    after = [sampler.initial_carry(initial)]
    for step in (1, 2):  # the states after steps 0 and 1
        after.append(jitted_advance(sampler, params, prepared, after[-1], initial, inputs, np.int32(step)))
    first, second = (jax.device_get(carry[4][0]) for carry in after[1:])

    def by_hand(new, previous, free):  # [G, B, N, D] -> [G]: mean |new - previous| / mean |previous| over free tokens
        diff, prev = np.abs(new - previous)[:, :, free], np.abs(previous)[:, :, free]
        return diff.mean(axis=(1, 2, 3)) / prev.mean(axis=(1, 2, 3))

    if kind == "first_block":  # block 0's residual; step 1 ran every block (threshold 0), so it is step 1's
        new, previous, measured = second.residual, first.residual, np.asarray(second.change)[None]
    else:  # block 0's modulated input, per branch
        new, previous, measured = second.modulated, first.modulated, np.asarray(second.distance)
    groups = 1 if kind == "first_block" else len(CFG[0].guidance.branches)
    shape = (groups, -1, *new.shape[1:])
    free = np.ones(GRID.num_tokens, bool)
    free[:GRID.height * GRID.width] = False  # the same in every video of the batch here
    excluded = by_hand(new.reshape(shape), previous.reshape(shape), free)
    everything = by_hand(new.reshape(shape), previous.reshape(shape), np.ones_like(free))
    err = float(np.max(np.abs(measured - excluded) / excluded))
    print(f"\n[{kind}] step 1's distance: cache {measured}, by hand over free tokens {excluded}, over all {everything}")
    report(f"{kind} excluding conditioning tokens: distance vs by hand (rel)", err, TOL_DISTANCE)
    assert err <= TOL_DISTANCE and np.all(np.abs(everything - excluded) / excluded > 1e-2)


def test_the_first_block_cache_copies_no_stacked_weights():
    """A 5-layer model: the compiled first-block-cache forward (its state an argument, so that the decision stays in
    the program) holds no array of 4 layers of a stacked block param (what slicing layers 1 .. 4 out of the stack
    made), and its temporaries are below those 4 layers' bytes."""
    cfg = TransformerConfig(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8,
                            cross_attention_dim=16, num_layers=5, caption_channels=24)
    module = LTXVideoTransformer3DModel(cfg)
    params = init_params(module, jax.random.PRNGKey(0))

    def forward(p, x, t, text, mask, state):
        constants = module.apply({"params": p}, text, mask, num_frames=2, height=2, width=3, method="prepare")
        return step_cache.cached_predict("first_block", module, p, x, t, constants, None, None, state,
                                         jnp.float32(0.05))

    state = step_cache.empty_state("first_block", 1, 2, 12, cfg.inner_dim, jnp.float32)
    args = (params, jnp.ones((2, 12, 8)), jnp.full((2,), 500.0), jnp.ones((2, 7, 24)), jnp.ones((2, 7), jnp.int32),
            state)
    compiled = jax.jit(forward).lower(*args).compile()
    stacked = {tuple(v.shape) for p, v in flatten(params).items() if p[0] == "transformer_blocks" and v.ndim >= 2}
    tail_shapes = {(cfg.num_layers - 1, *s[1:]) for s in stacked}
    found = {tuple(int(d) for d in dims.split(",") if d) for dims in re.findall(r"f32\[([\d,]*)\]", compiled.as_text())}
    tail_bytes = sum(v.nbytes for v in jax.tree_util.tree_leaves(params["transformer_blocks"])) * 4 // 5
    temp = compiled.memory_analysis().temp_size_in_bytes
    print(f"\n[first block cache] arrays of 4 stacked layers: {sorted(found & tail_shapes)}; temporaries {temp} bytes, "
          f"layers 1 .. 4 {tail_bytes} bytes")
    assert not found & tail_shapes and temp < tail_bytes

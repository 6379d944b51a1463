"""Spatio-temporal guidance (the four modes), CFG-star and guidance schedules against the original package
(``ltx-video==0.1.2``, in its own virtual environment: ``tests/original_ltx.py``), fp32, tiny random weights.

The transformer: the original's forward with a skip-layer mask that perturbs different blocks for different rows,
in each mode, against ours on the same single file. Whole text-to-video runs: the original ``LTXVideoPipeline`` and
ltx_jax's ``LTXPipeline`` on the same file (0.9.0/0.9.1 coordinates, which are diffusers' ``LTXPipeline``'s), with
the same initial noise and text embeddings, the same explicit timesteps (a shift-free scheduler on our side, so
sigmas are the timesteps on both), no decode noise.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compile_counter, psnr, rel_err, report

from ltx_jax.pipelines import LTXPipeline
from ltx_jax.scheduler import FlowMatchSchedulerConfig
from ltx_jax.tiny_random import TINY_TRANSFORMER, TINY_VAE
from original_ltx import original_python, run_original, write_tiny_single_file
from weight_conversion import load_transformer

TOL = 1e-5  # transformer: max rel err, fp32
PSNR_MIN_DB = 50.0  # pipelines: the same algorithm, float32 rounding apart
LAYERS = 4  # the tiny transformer with more blocks, so masks can skip some and not others
HEIGHT, WIDTH, NUM_FRAMES, FRAME_RATE = 64, 96, 9, 25
TOKENS, TEXT = 2 * 2 * 3, 8
MODES = {"attention_values": "AttentionValues", "attention_skip": "AttentionSkip", "residual": "Residual",
         "transformer_block": "TransformerBlock"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    original_python()
    folder = tmp_path_factory.mktemp("stg")
    config = TINY_TRANSFORMER.replace(num_layers=LAYERS)
    return {causal: write_tiny_single_file(folder / f"ltxv-tiny-{'new' if causal else 'old'}.safetensors", config,
                                           TINY_VAE, seed=5, causal_temporal_positioning=causal)
            for causal in (True, False)}


@pytest.mark.parametrize("mode", list(MODES))
def test_transformer_skip_layer_modes_match_the_original(files, mode):
    rng = np.random.default_rng(1)
    batch, frames, height, width = 3, 2, 2, 3
    hidden = rng.standard_normal((batch, frames * height * width, TINY_TRANSFORMER.in_channels), dtype=np.float32)
    text = rng.standard_normal((batch, TEXT, TINY_TRANSFORMER.caption_channels), dtype=np.float32)
    mask = np.ones((batch, TEXT), np.int64)
    mask[1, 5:] = 0
    timestep = rng.uniform(0.1, 1.0, (batch, 1)).astype(np.float32)
    skip = np.ones((LAYERS, batch), np.float32)
    skip[1, 1] = skip[3, 1] = 0.0  # row 1 perturbs blocks 1 and 3, row 2 block 0, row 0 nothing
    skip[0, 2] = 0.0
    job = {"kind": "transformer", "checkpoint": files[True]["path"],
           "kwargs": {"hidden_states": "@hidden", "encoder_hidden_states": "@text", "encoder_attention_mask": "@mask",
                      "timestep": "@timestep", "skip_layer_mask": "@skip", "skip_layer_strategy": MODES[mode]},
           "coords": {"latent_frames": frames, "latent_height": height, "latent_width": width,
                      "frame_rate": FRAME_RATE}}
    out = run_original(job, {"hidden": hidden, "text": text, "mask": mask, "timestep": timestep, "skip": skip})
    module, params = load_transformer(files[True]["path"])
    ours = np.asarray(module.apply({"params": params}, hidden, text, timestep[:, 0] * 1000.0, mask,
                                   video_coords=out["indices_grid"], skip_layer_mask=skip, skip_layer_strategy=mode))
    err = rel_err(ours, out["sample"])
    report(f"transformer skip_layer_strategy={mode} vs the original", err, TOL)
    assert err <= TOL
    unperturbed = np.asarray(module.apply({"params": params}, hidden, text, timestep[:, 0] * 1000.0, mask,
                                          video_coords=out["indices_grid"]))
    np.testing.assert_array_equal(ours[0], unperturbed[0])  # the row with nothing skipped
    assert (mode == "residual") == np.array_equal(ours[1:], unperturbed[1:])  # "residual" perturbs nothing


def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"prompt_embeds": rng.standard_normal((1, TEXT, TINY_TRANSFORMER.caption_channels), dtype=np.float32),
            "prompt_attention_mask": np.array([[1] * 6 + [0] * 2], np.int64),
            "negative_prompt_embeds": rng.standard_normal((1, TEXT, TINY_TRANSFORMER.caption_channels),
                                                          dtype=np.float32),
            "negative_prompt_attention_mask": np.array([[1] * 3 + [0] * 5], np.int64),
            "noise.latents.0": rng.standard_normal((1, TOKENS, TINY_TRANSFORMER.in_channels), dtype=np.float32)}


TIMESTEPS = [1.0, 0.85, 0.7, 0.55, 0.4, 0.25]
RUNS = {
    **{f"CFG 3 + STG 1.5 ({mode}), rescaling 0.7": dict(guidance_scale=3.0, stg_scale=1.5, rescaling_scale=0.7,
                                                         skip_block_list=[1, 2], skip_layer_strategy=mode)
       for mode in MODES},
    "CFG-star, CFG 4 + STG 1": dict(guidance_scale=4.0, stg_scale=1.0, rescaling_scale=1.0, skip_block_list=[2],
                                    skip_layer_strategy="attention_values", cfg_star_rescale=True),
    "guidance schedule (CFG 1 / STG 0 steps too)": dict(
        guidance_timesteps=[1.0, 0.7, 0.4], guidance_scale=[1.0, 4.0, 1.0], stg_scale=[0.0, 2.0, 1.0],
        rescaling_scale=[1.0, 0.5, 0.8], skip_block_list=[[], [0, 2], [3]], skip_layer_strategy="attention_skip",
        cfg_star_rescale=True),
}


@pytest.fixture(scope="module")
def ours(files):
    pipe = LTXPipeline.from_pretrained(files[False]["path"], dtype="float32", compilation_cache=False, progress=False)
    pipe.scheduler_config = FlowMatchSchedulerConfig(shift=1.0, use_dynamic_shifting=False)  # sigmas = timesteps
    return pipe


def _our_run(pipe, arrays, guidance: dict, seed: int = 0):
    return pipe(noise=arrays["noise.latents.0"], timesteps=[t * 1000.0 for t in TIMESTEPS], height=HEIGHT,
                width=WIDTH, num_frames=NUM_FRAMES, frame_rate=FRAME_RATE, guidance_rescale=0.0, decode_timestep=0.05,
                decode_noise_scale=0.0, seed=seed,
                **{k: arrays[k] for k in ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
                                          "negative_prompt_attention_mask")}, **guidance)


@pytest.mark.parametrize("run", list(RUNS))
def test_text_to_video_guidance_matches_the_original(files, ours, run):
    guidance = RUNS[run]
    arrays = _arrays(2)
    kwargs = {**guidance, "skip_layer_strategy": MODES[guidance["skip_layer_strategy"]]}
    job = {"kind": "pipeline", "checkpoint": files[False]["path"], "seed": 0,
           "kwargs": {"height": HEIGHT, "width": WIDTH, "num_frames": NUM_FRAMES, "frame_rate": FRAME_RATE,
                      "timesteps": TIMESTEPS, "decode_timestep": 0.05, "decode_noise_scale": 0.0, "output_type": "pt",
                      **{name: f"@{name}" for name in ("prompt_embeds", "prompt_attention_mask",
                                                       "negative_prompt_embeds", "negative_prompt_attention_mask")},
                      **kwargs}}
    ref = run_original(job, arrays)["frames"]
    frames = _our_run(ours, arrays, guidance)
    value = psnr(frames, ref)
    report(f"text-to-video vs the original, {run}: PSNR dB", value, PSNR_MIN_DB, at_least=True)
    assert frames.shape == ref.shape and value >= PSNR_MIN_DB


def test_new_scales_and_skipped_blocks_compile_nothing(ours):
    arrays = _arrays(3)
    first = _our_run(ours, arrays, RUNS["guidance schedule (CFG 1 / STG 0 steps too)"])
    other = dict(RUNS["guidance schedule (CFG 1 / STG 0 steps too)"], guidance_scale=[1.0, 6.0, 1.0],
                 stg_scale=[0.0, 1.0, 3.0], rescaling_scale=[1.0, 0.9, 1.0], skip_block_list=[[], [1], [0, 3]],
                 guidance_timesteps=[1.0, 0.68, 0.38], cfg_star_rescale=False)  # the same steps run CFG, STG
    with compile_counter() as compiles:
        second = _our_run(ours, arrays, other, seed=1)
    print(f"\n[stg] backend compiles during the second call: {len(compiles)}")
    assert compiles == [] and not np.allclose(first, second)


@pytest.mark.parametrize("change, message", [
    (dict(skip_block_list=[LAYERS]), f"skip_block_list holds block {LAYERS}; the transformer's blocks are 0 .. 3"),
    (dict(stg_scale=1.0, skip_layer_strategy="skip_everything"), "skip_layer_strategy='skip_everything'; use one of"),
    (dict(guidance_timesteps=[1.0, 0.5], guidance_scale=[3.0, 2.0, 1.0]),
     "guidance_scale has 3 values but guidance_timesteps has 2"),
    (dict(guidance_timesteps=[1.0, 0.5], skip_block_list=[[1], [2], [3]]),
     "skip_block_list has 3 lists for 2 guidance_timesteps entries"),
    (dict(guidance_timesteps=[2.0]), "guidance_timesteps must be a non-empty list of timesteps in \\[0, 1\\]"),
    (dict(stg_scale=-1.0), "stg_scale must be >= 0"),
    (dict(skip_final_inference_steps=6), "leaves none of the 6 steps"),
])
def test_guidance_errors(ours, change, message):
    arrays = _arrays(4)
    kwargs = {"guidance_scale": 3.0, "stg_scale": 1.0, "skip_block_list": [1], **change}
    if "skip_final_inference_steps" in change:  # trims a num_inference_steps schedule
        with pytest.raises(ValueError, match=message):
            ours(prompt_embeds=arrays["prompt_embeds"], prompt_attention_mask=arrays["prompt_attention_mask"],
                 negative_prompt_embeds=arrays["negative_prompt_embeds"],
                 negative_prompt_attention_mask=arrays["negative_prompt_attention_mask"], height=HEIGHT, width=WIDTH,
                 num_frames=NUM_FRAMES, num_inference_steps=6, **kwargs)
        return
    with pytest.raises(ValueError, match=message):
        _our_run(ours, arrays, kwargs)


def test_remat_runs_a_skip_strategy_as_without_it():
    """``remat=True`` (training's) with a perturbed branch: the strategy is a static argument of the rematerialised
    block (it was traced, and failed), and the output and gradients equal the plain blocks'."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel

    plain = LTXVideoTransformer3DModel(TINY_TRANSFORMER, dtype=jnp.float32, param_dtype=jnp.float32)
    params = init_params(plain, jax.random.PRNGKey(0))
    batch, frames, height, width = 2, 2, 2, 3
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(batch, frames * height * width, TINY_TRANSFORMER.in_channels), jnp.float32)
    text = jnp.asarray(rng.randn(batch, 7, TINY_TRANSFORMER.caption_channels), jnp.float32)
    skip = jnp.ones((TINY_TRANSFORMER.num_layers, batch)).at[0, 1].set(0.0)

    def loss(p, model, strategy):
        out = model.apply({"params": p}, x, text, jnp.full((batch,), 500.0), jnp.ones((batch, 7), jnp.int32),
                          num_frames=frames, height=height, width=width,
                          rope_interpolation_scale=jnp.array([0.32, 32.0, 32.0]), skip_layer_mask=skip,
                          skip_layer_strategy=strategy)
        return jnp.sum(out**2)

    ref_value, ref_grads = jax.value_and_grad(loss)(params, plain, "attention_values")
    value, grads = jax.value_and_grad(loss)(params, plain.clone(remat=True), "attention_values")
    err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(grads),
                                                             jax.tree_util.tree_leaves(ref_grads)))
    print(f"\n[remat + STG] attention_values: value diff {abs(float(value - ref_value)):.2e}, grads {err:.2e}")
    assert abs(float(value - ref_value)) <= 1e-5 * abs(float(ref_value)) and err <= 1e-5

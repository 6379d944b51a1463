"""The sharding checks, run by tests/test_sharding.py in a child process with 8 host devices (the flag must be set
before jax is imported, and the rest of the suite keeps one device):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/sharding_cases.py CASE [CASE ...]

Each case returns a dict of measured values; the process prints one JSON object {case: result or {"error": ...}}
as its last line. fp32 throughout; every reference is the same computation on one device.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ltx_jax.configs import TransformerConfig  # noqa: E402
from ltx_jax.models import abstract_params, init_params  # noqa: E402
from ltx_jax.models.transformer import LTXVideoTransformer3DModel  # noqa: E402
from ltx_jax.sharding import ShardingPlan, make_mesh, shard_bytes  # noqa: E402

# 8 heads (so context=8 and tensor=8 divide them), odd grid (45 tokens: padded to 48 for context parallelism).
CONFIG = TransformerConfig(in_channels=8, out_channels=8, num_attention_heads=8, attention_head_dim=4,
                           cross_attention_dim=32, num_layers=3, caption_channels=24)
GRID = (3, 3, 5)
KW = dict(num_frames=GRID[0], height=GRID[1], width=GRID[2], rope_interpolation_scale=(8 / 25, 32, 32))
MESHES = ["data=8", "fsdp=8", "context=8", "tensor=8", "data=2,fsdp=2,context=2"]


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _inputs(batch: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    tokens = int(np.prod(GRID))
    text = 7
    mask = np.ones((batch, text), np.int64)
    mask[1::2, 4:] = 0  # every other row right-padded
    return (rng.standard_normal((batch, tokens, CONFIG.in_channels)).astype(np.float32),
            rng.standard_normal((batch, text, CONFIG.caption_channels)).astype(np.float32),
            np.linspace(50, 950, batch).astype(np.float32), mask)


@functools.lru_cache(maxsize=None)
def _reference_root() -> str:
    """The tiny diffusers-layout checkpoint (tests/conftest.py), written once for every case of this process."""
    from conftest import build_tiny_reference

    return build_tiny_reference(tempfile.mkdtemp())["root"]


def _forward(module, params, args):
    return jax.jit(lambda p, *a: module.apply({"params": p}, *a, **KW))(params, *args)


def transformer_forward() -> dict:
    """Each axis alone and a mixed mesh against one device (batch 8, half the text rows padded)."""
    module = LTXVideoTransformer3DModel(CONFIG)
    params = init_params(module, jax.random.PRNGKey(0))
    args = _inputs()
    ref = np.asarray(_forward(module, params, args))
    out = {}
    for spec in MESHES:
        plan = ShardingPlan.create(spec)
        got = _forward(module.clone(sharding=plan), plan.place(params, module), args)
        out[spec] = rel_err(got, ref)
    return out


def attention_alone() -> dict:
    """context_parallel_attention (Ulysses) against plain attention: 45 tokens (padded to 48), a key mask."""
    from ltx_jax.models.layers import attention, context_parallel_attention

    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 45, 8, 4)), jnp.float32) for _ in range(3))
    mask = np.ones((2, 45), bool)
    mask[1, 30:] = False
    ref = attention(q, k, v, key_mask=jnp.asarray(mask), implementation="xla")
    out = {}
    for spec in ("context=8", "context=4,tensor=2", "data=2,context=4"):
        plan = ShardingPlan.create(spec)
        got = jax.jit(lambda q, k, v, m: context_parallel_attention(q, k, v, plan=plan, implementation="xla",
                                                                       key_mask=m))(q, k, v, jnp.asarray(mask))
        out[spec] = rel_err(got, ref)
    return out


def pipelines() -> dict:
    """Text-to-video with CFG + STG and image-to-video, loaded with mesh=, against one device: PSNR."""
    from conftest import psnr

    from ltx_jax.pipelines import LTXImageToVideoPipeline, LTXPipeline

    root = _reference_root()
    t2v = dict(prompt="a fox", negative_prompt="blur", height=64, width=96, num_frames=9, num_inference_steps=3,
               guidance_scale=3.0, stg_scale=1.0, skip_block_list=[1], seed=0)
    image = np.random.default_rng(2).random((64, 96, 3)).astype(np.float32)
    i2v = dict(t2v, image=image, stg_scale=0.0)
    one = LTXPipeline.from_pretrained(root, dtype="float32", compilation_cache=False, progress=False)
    ref_t2v, ref_i2v = one(**t2v), LTXImageToVideoPipeline.from_pipe(one)(**i2v)
    out = {}
    for spec in ("data=2,fsdp=2,context=2", "context=4,tensor=2"):
        pipe = LTXPipeline.from_pretrained(root, dtype="float32", compilation_cache=False, progress=False, mesh=spec)
        out[f"text-to-video CFG + STG, {spec}"] = psnr(pipe(**t2v), ref_t2v)
        out[f"image-to-video, {spec}"] = psnr(LTXImageToVideoPipeline.from_pipe(pipe)(**i2v), ref_i2v)
    moved = one.to_mesh("data=2,context=4")
    out["to_mesh text-to-video, data=2,context=4"] = psnr(moved(**t2v), ref_t2v)
    return out


def loading() -> dict:
    """load_transformer / load_text_encoder with sharding= (safetensors and Orbax): same params, on their shards;
    per-device bytes against 1 / (fsdp * tensor)."""
    from weight_conversion import load_text_encoder, load_transformer
    from weight_conversion.transformer import save_transformer_orbax

    root = _reference_root()
    _, ref = load_transformer(root, jnp.float32)
    _, ref_t5 = load_text_encoder(root, jnp.float32)
    out = {"loaded": {}, "bytes": {}}
    for spec in ("fsdp=8", "fsdp=4,tensor=2", "data=2,fsdp=2,context=2"):
        plan = ShardingPlan.create(spec)
        module, params = load_transformer(root, jnp.float32, sharding=plan)
        _, t5 = load_text_encoder(root, jnp.float32, sharding=plan)
        diff = max(rel_err(a, b) for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ref)))
        diff_t5 = max(rel_err(a, b) for a, b in zip(jax.tree_util.tree_leaves(t5), jax.tree_util.tree_leaves(ref_t5)))
        expected = jax.tree_util.tree_leaves(plan.param_shardings(params, module))
        placed = all(leaf.sharding == s for leaf, s in zip(jax.tree_util.tree_leaves(params), expected))
        out["loaded"][spec] = {"max_diff": max(diff, diff_t5), "on_planned_shardings": placed,
                               "module_has_plan": module.sharding is plan}
    orbax = os.path.join(tempfile.mkdtemp(), "orbax")
    save_transformer_orbax(*load_transformer(root, jnp.float32), orbax)
    plan = ShardingPlan.create("fsdp=8")
    restored_module, restored = load_transformer(orbax, jnp.float32, sharding=plan)
    out["loaded"]["orbax fsdp=8"] = {
        "max_diff": max(rel_err(a, b) for a, b in zip(jax.tree_util.tree_leaves(restored),
                                                      jax.tree_util.tree_leaves(ref))),
        "on_planned_shardings": all(leaf.sharding == s for leaf, s in zip(
            jax.tree_util.tree_leaves(restored),
            jax.tree_util.tree_leaves(plan.param_shardings(restored, restored_module)))),
        "module_has_plan": True}

    # Bytes per device on a config whose every width is a multiple of 8.
    wide = dataclasses.replace(CONFIG, num_attention_heads=8, attention_head_dim=8, cross_attention_dim=64,
                               in_channels=16, out_channels=16, caption_channels=32)
    wide_module = LTXVideoTransformer3DModel(wide)
    params = init_params(wide_module, jax.random.PRNGKey(0))
    total = shard_bytes(params)
    for fsdp, tensor in ((1, 1), (2, 1), (4, 1), (8, 1), (4, 2), (2, 4)):
        plan = ShardingPlan(make_mesh({"fsdp": fsdp, "tensor": tensor}, jax.devices()[:fsdp * tensor]))
        out["bytes"][f"fsdp={fsdp},tensor={tensor}"] = shard_bytes(plan.place(params, wide_module)) / total
    return out


def _stacked_shapes(abstract) -> set[tuple[int, ...]]:
    from weight_conversion.mapping import flatten

    return {tuple(v.shape) for p, v in flatten(abstract).items() if p[0] == "transformer_blocks" and len(v.shape) >= 2}


def _collectives(hlo: str) -> dict[str, list[tuple[int, ...]]]:
    found: dict[str, list[tuple[int, ...]]] = {}
    for name in ("all-gather", "all-to-all", "all-reduce", "reduce-scatter", "collective-permute"):
        shapes = re.findall(rf"= \(?\w+\[([\d,]*)\][^=]*? {name}(?:-start)?\(", hlo)
        found[name] = [tuple(int(d) for d in s.split(",") if d) for s in shapes]
    return found


def collectives() -> dict:
    """The mixed mesh's compiled forward: all-to-all (context), all-gathers only of one layer's params (FSDP),
    never of a whole stacked [L, ...] param."""
    module = LTXVideoTransformer3DModel(CONFIG)
    params = init_params(module, jax.random.PRNGKey(0))
    plan = ShardingPlan.create("data=2,fsdp=2,context=2")
    sharded = module.clone(sharding=plan)
    placed = plan.place(params, module)
    hlo = jax.jit(lambda p, *a: sharded.apply({"params": p}, *a, **KW)).lower(placed, *_inputs()).compile().as_text()
    found = _collectives(hlo)
    stacked = _stacked_shapes(abstract_params(module))
    return {"counts": {k: len(v) for k, v in found.items()},
            "full_stack_gathers": [list(s) for s in found["all-gather"] if s in stacked]}


def memory_2b() -> dict:
    """The 2B config at 768x512x121 (16x16x24 latent tokens, CFG batch 2): compiled memory per device from abstract
    sharded inputs (no weights), one device against fsdp=8 and data=2,fsdp=2,context=2. Bytes per device."""
    from ltx_jax.releases import TRANSFORMER_PRESETS

    cfg = TRANSFORMER_PRESETS["ltx-video-2b"]
    module = LTXVideoTransformer3DModel(cfg, jnp.bfloat16, jnp.bfloat16, attention_implementation="xla")
    abstract = abstract_params(module)
    grid = (16, 16, 24)
    tokens = int(np.prod(grid))
    kw = dict(num_frames=grid[0], height=grid[1], width=grid[2], rope_interpolation_scale=(8 / 25, 32, 32))
    args = (jax.ShapeDtypeStruct((2, tokens, cfg.in_channels), jnp.bfloat16),
            jax.ShapeDtypeStruct((2, 128, cfg.caption_channels), jnp.bfloat16),
            jax.ShapeDtypeStruct((2,), jnp.float32), jax.ShapeDtypeStruct((2, 128), jnp.int32))
    out = {}
    for spec in (None, "fsdp=8", "data=2,fsdp=2,context=2"):
        plan = ShardingPlan.create(spec)
        m = module if plan is None else module.clone(sharding=plan)
        p = abstract if plan is None else jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract,
            plan.param_shardings(abstract, module))
        compiled = jax.jit(lambda p, *a: m.apply({"params": p}, *a, **kw)).lower(p, *args).compile()
        stats = compiled.memory_analysis()
        out[spec or "one device"] = {"argument_bytes": int(stats.argument_size_in_bytes),
                                     "temp_bytes": int(stats.temp_size_in_bytes),
                                     "output_bytes": int(stats.output_size_in_bytes)}
    return out


def cli() -> dict:
    """``generate --mesh`` on a checkpoint folder (tiny-random's ``to_mesh`` is the pipelines case's; the flag over
    several processes is tests/test_multiprocess.py's)."""
    from ltx_jax.__main__ import main
    from ltx_jax.video import read_video

    root = _reference_root()
    folder = tempfile.mkdtemp()
    codes = {}
    for name, model in (("folder", root),):
        path = os.path.join(folder, f"{name}.mp4")
        codes[name] = main(["ltx_jax", "generate", "--model", model, "--prompt", "a fox", "--output", path,
                            "--steps", "2", "--height", "64", "--width", "96", "--num_frames", "9", "--noprogress",
                            "--nocompilation_cache", "--mesh", "data=2,context=4"])
        codes[name + " frames"] = list(read_video(path).shape) if os.path.exists(path) else None
    return codes


def training() -> dict:
    """3 train steps (LoRA) on one device and on data=2,fsdp=2,context=2: the losses, and the gradients of the first
    step (full fine-tuning over fsdp=4 against one device: tests/test_multiprocess.py, over 2 processes)."""
    from ltx_jax.training import Batch, Trainer, TrainConfig

    cfg = dataclasses.replace(CONFIG, out_channels=CONFIG.in_channels)
    module = LTXVideoTransformer3DModel(cfg)
    params = init_params(module, jax.random.PRNGKey(0))
    latents, text, _, mask = _inputs(batch=4)
    batch = Batch(jnp.asarray(latents), jnp.asarray(text), jnp.asarray(mask), grid=GRID, fps=24.0)
    out = {}
    for mode in ("lora",):
        config = TrainConfig(mode=mode, lora_rank=4, lora_alpha=4, learning_rate=1e-2, steps=3,
                             first_frame_conditioning_p=0.5, gradient_accumulation_steps=1)
        runs = []
        for mesh in (None, "data=2,fsdp=2,context=2"):
            trainer = Trainer.create(module, params, config, jax.random.PRNGKey(1), mesh=mesh)
            state, losses = trainer.init_state(), []
            grads = jax.jit(jax.grad(trainer.loss))(state.trainable, batch, jax.random.PRNGKey(2), trainer.frozen,
                                                    trainer.lora_fixed)
            for _ in range(3):
                state, metrics = trainer.step(state, batch)
                losses.append(float(metrics["loss"]))
            runs.append((losses, jax.tree_util.tree_leaves(jax.device_get(grads))))
        (l1, g1), (l2, g2) = runs
        # Gradients, not the weights after AdamW: its g / sqrt(v) turns rounding-level differences of near-zero
        # gradient entries into differences of a whole learning rate.
        out[mode] = {"loss": max(abs(a - b) / abs(a) for a, b in zip(l1, l2)),
                     "grads": max(rel_err(b, a) for a, b in zip(g1, g2)), "losses": l1}
    return out


def vae_decode() -> dict:
    """The tiled decode program with its tiles dealt over 8 devices against one device: the frames (blended as
    diffusers blends them) and the temporaries per device; and a whole decode with the videos over ``data``."""
    from ltx_jax.models.vae import AutoencoderKLLTXVideo, VAETiling
    from ltx_jax.pipelines.vae_programs import jitted_decode
    from ltx_jax.tiny_random import TINY_VAE

    vae = AutoencoderKLLTXVideo(TINY_VAE)
    params = init_params(vae, jax.random.PRNGKey(0))
    latents = jnp.asarray(np.random.default_rng(3).standard_normal((2, 3, 6, 5, TINY_VAE.latent_channels)),
                          jnp.float32)
    t = jnp.full((2,), 0.05, jnp.float32)
    key = jax.random.PRNGKey(4)
    tiles = VAETiling(tile_sample_min_height=64, tile_sample_min_width=64, tile_sample_stride_height=32,
                      tile_sample_stride_width=32, temporal=False)  # 30 tiles of 2x2 latents, 4 shapes
    uniform = dataclasses.replace(tiles, layout="uniform")  # 20 tiles of 2x2 latents (5 x 4), one shape
    out = {}
    for tiling in (tiles, uniform, None):
        ref = None
        # a whole decode: only data shards it (fsdp=8 would run one device's program on every device)
        for spec in (None, "data=2,context=4") + (("fsdp=8",) if tiling is not None else ()):
            plan = ShardingPlan.create(spec)
            p = params if plan is None else jax.device_put(params, plan.replicated())
            compiled = jitted_decode.lower(vae, p, latents, t, t, key, tiling, None, sharding=plan).compile()
            frames = np.asarray(compiled(p, latents, t, t, key, None)[0])  # one compile; the static arguments are in it
            trips = [int(n) for n in re.findall(r"known_trip_count[^0-9]*(\d+)", compiled.as_text())]
            ref = frames if ref is None else ref
            name = "whole" if tiling is None else "uniform" if tiling.layout == "uniform" else "tiled"
            out[f"{name}, {spec or 'one device'}"] = {
                "err": rel_err(frames, ref), "temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes),
                "longest_tile_loop": max(trips, default=0)}
    return out


def step_cache() -> dict:
    """The denoising loop with each step cache (8 steps of CFG over 2 videos, the tiny transformer, a threshold that
    skips some steps) on data=2,fsdp=2,context=2 against one device: the latents, and the steps that reused the
    cache on each."""
    from ltx_jax import sampling
    from ltx_jax.tiny_random import TINY_TRANSFORMER

    cfg, steps, batch = TINY_TRANSFORMER, 8, 2
    module = LTXVideoTransformer3DModel(cfg)
    params = init_params(module, jax.random.PRNGKey(5))
    grid = sampling.LatentGrid(2, 2, 3)
    rng = np.random.default_rng(6)
    latents, text, negative = (rng.standard_normal(shape).astype(np.float32) for shape in (
        (batch, grid.num_tokens, cfg.in_channels), (batch, 7, cfg.caption_channels), (batch, 7, cfg.caption_channels)))
    sigmas = np.append(np.linspace(1.0, 0.1, steps), 0.0).astype(np.float32)
    guidance = {k: jnp.full((steps,), v, jnp.float32) for k, v in {**sampling.SCALES, "guidance_scale": 3.0}.items()}
    mask = jnp.ones((batch, 7), jnp.int32).at[1, 4:].set(0)
    inputs = sampling.SamplingInputs(
        prompt_embeds=jnp.asarray(text), prompt_attention_mask=mask, negative_prompt_embeds=jnp.asarray(negative),
        negative_prompt_attention_mask=mask, sigmas=jnp.asarray(sigmas), timesteps=jnp.asarray(sigmas[:-1] * 1000.0),
        guidance=guidance, rope_interpolation_scale=jnp.asarray((8 / 25, 32.0, 32.0), jnp.float32))
    segments = (sampling.Segment(0, steps, sampling.Guidance(cfg=True)),)
    plan = ShardingPlan.create("data=2,fsdp=2,context=2")
    placements = ((module, params), (module.clone(sharding=plan), plan.place(params, module)))
    out = {}
    for kind, threshold in (("first_block", 0.5), ("teacache", 0.45)):
        runs = [sampling.jitted_sample(sampling.Sampler(m, grid, segments, host_callbacks=False, cache=kind), p,
                                       jnp.asarray(latents), inputs.replace(cache_threshold=jnp.float32(threshold)))
                for m, p in placements]
        out[kind] = {"err": rel_err(runs[1].latents, runs[0].latents),
                     "skipped": np.asarray(runs[0].cached_steps).tolist(),
                     "sharded_skipped": np.asarray(runs[1].cached_steps).tolist()}
    return out


CASES = {f.__name__: f for f in (transformer_forward, attention_alone, pipelines, loading, collectives, memory_2b,
                                  cli, training, vae_decode, step_cache)}

if __name__ == "__main__":
    assert jax.device_count() == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    results = {}
    for name in sys.argv[1:] or list(CASES):
        start = time.perf_counter()
        try:
            results[name] = CASES[name]()
        except Exception:  # noqa: BLE001 - reported to the parent test, which fails on it
            results[name] = {"error": traceback.format_exc()[-3000:]}
        print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(json.dumps(results))

"""Per-step costs of the denoising loop: guidance branches (text only, CFG, CFG + STG), what the loop's safety
costs: the per-step host callback (progress and Ctrl-C) and the NaN checks; and what step caching gains.

    python -m benchmarks.bench_sampler                 # tiny model (the callback's absolute cost) and a 2B-width slice
    python -m benchmarks.bench_sampler --cache         # step caches on the 2B dev recipe, CPU sizes (28 narrow layers)
    python -m benchmarks.bench_sampler --cache --cache-model 2b --cache-video 512,768,121    # the GPU figure

Branches: the same loop with one, two and three branches per step (a step's batched forward grows with them; the
ratios should be about 1 : 2 : 3 where the matmuls dominate).

Each case runs the same compiled loop twice, with the per-step host callback (``Sampler(host_callbacks=True)``, what
the pipelines run) and without it, and reports the median time per step of each and their difference. The latents'
finiteness check runs inside every step in both; its cost is measured on its own (the reduction over one step's
latents, jitted alone) next to the step time, and so is the check of decoded frames at 768x512x121. A third run
steps the loop from the host (``sampling.sample_stepwise``, what the pipelines run with the persistent cache on: one
program call and one wait per step); its difference to the loop without callbacks is its cost per step.

Step caching (``--cache``, ``cache_runs``; run_all's ``step_cache`` section): the 2B dev recipe (40 steps, CFG 3 and
STG 1 on block 19 in every step, three branches; the release's schedule for the grid) with random weights, run with
no cache and with each kind at each threshold: the steps that reused the cache, the median time of the whole loop,
the speed-up against no cache and the PSNR of the final latents against no cache's (peak: their max |x|). Random
weights move differently from a trained model's, so the steps a threshold skips are not a checkpoint's; the cost of a
skipped step and the loop's overhead are.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import sample_times


def loop_times(module, params, grid, steps: int, repeats: int, host_callbacks: bool = True,
               guidance=None, stepwise: bool = False) -> list[float]:
    """Seconds of whole ``steps``-step runs of the compiled loop (blocked on, after a warm-up run); ``stepwise``:
    stepped from the host (``sampling.sample_stepwise``, no callbacks)."""
    from ltx_jax import sampling

    cfg = module.config
    guidance = guidance or sampling.Guidance()
    sampler = sampling.Sampler(module, grid, (sampling.Segment(0, steps, guidance),),
                               host_callbacks=host_callbacks and not stepwise)
    text = jnp.ones((1, 16, cfg.caption_channels), module.dtype)
    scales = {**sampling.SCALES, "guidance_scale": 3.0, "stg_scale": 1.0}
    inputs = sampling.SamplingInputs(
        prompt_embeds=text, prompt_attention_mask=jnp.ones((1, 16), jnp.int32), negative_prompt_embeds=text,
        negative_prompt_attention_mask=jnp.ones((1, 16), jnp.int32),
        sigmas=jnp.linspace(1.0, 0.0, steps + 1), timesteps=jnp.linspace(1000.0, 1.0, steps),
        guidance={k: jnp.full((steps,), v, jnp.float32) for k, v in scales.items()},
        skip_masks=jnp.ones((steps, cfg.num_layers)).at[:, 0].set(0.0),
        rope_interpolation_scale=jnp.asarray([0.32, 32.0, 32.0]))

    def run():
        latents = jnp.zeros((1, grid.num_tokens, cfg.in_channels), jnp.float32)
        if stepwise:
            return jax.block_until_ready(sampling.sample_stepwise(sampler, params, latents, inputs))
        return jax.block_until_ready(sampling.jitted_sample(sampler, params, latents, inputs))

    return sample_times(run, repeats, warmup=1)


def check_time(shape, repeats: int = 20) -> float:
    """Median seconds of ``jnp.all(jnp.isfinite(x))`` over a float32 array of ``shape``, jitted alone."""
    x = jnp.zeros(shape, jnp.float32)
    check = jax.jit(lambda a: jnp.all(jnp.isfinite(a)))
    return statistics.median(sample_times(lambda: jax.block_until_ready(check(x)), repeats, warmup=2))


def case(name, cfg, grid, steps: int, repeats: int) -> dict:
    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel

    module = LTXVideoTransformer3DModel(cfg)
    params = init_params(module, jax.random.PRNGKey(0))
    with_cb = statistics.median(loop_times(module, params, grid, steps, repeats, True)) / steps
    without = statistics.median(loop_times(module, params, grid, steps, repeats, False)) / steps
    stepped = statistics.median(loop_times(module, params, grid, steps, repeats, stepwise=True)) / steps
    finite = check_time((1, grid.num_tokens, cfg.in_channels))
    return dict(name=name, tokens=grid.num_tokens, steps=steps, step_ms=without * 1e3, step_cb_ms=with_cb * 1e3,
                callback_us=(with_cb - without) * 1e6, stepwise_us=(stepped - without) * 1e6,
                finite_check_us=finite * 1e6)


DEV_RELEASE = "ltx-video-0.9.6-dev"  # the 2B dev recipe: 40 steps, CFG 3, STG 1 on block 19, rescaling 0.7
# Each kind at its default threshold (a trained model's: random weights move too much between steps to skip at it,
# so these rows show what the cache costs when it skips nothing) and at thresholds that skip steps of the CPU model's
# random weights (its first-block residual changes 0.33 - 0.58 a step, TeaCache's rescaled distance 0.21 - 0.31).
CACHE_THRESHOLDS = "first_block:0.05,first_block:0.45,first_block:0.6,teacache:0.06,teacache:0.4,teacache:0.8"


def parse_thresholds(text: str) -> tuple[tuple[str, float], ...]:
    """"first_block:0.05,teacache:0.4" -> (("first_block", 0.05), ("teacache", 0.4))."""
    pairs = [item.split(":") for item in text.split(",") if item]
    return tuple((kind, float(value)) for kind, value in pairs)


def latents_psnr(ours, ref) -> float:
    """PSNR in dB of latents against reference latents, the peak being max |ref|."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    mse = float(np.mean((ours - ref) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(np.max(np.abs(ref)) ** 2 / mse)


def dev_recipe_inputs(cfg, grid, steps: int, text_tokens: int, dtype, seed: int = 0):
    """The 2B dev release's loop on ``grid``: (segments, SamplingInputs with random text, no threshold yet); STG's
    block 19 becomes the last block of a shallower model."""
    from ltx_jax import sampling
    from ltx_jax.releases import get_release

    release = get_release(DEV_RELEASE)
    d = release.defaults
    sigmas, timesteps = sampling.diffusers_schedule(release.scheduler, steps, grid.num_latents)
    blocks = tuple(min(b, cfg.num_layers - 1) for b in d.skip_block_list)
    scales, masks, segments = sampling.guidance_plan(
        timesteps, num_layers=cfg.num_layers, guidance_scale=d.guidance_scale, stg_scale=d.stg_scale,
        rescaling_scale=d.rescaling_scale, skip_block_list=blocks, skip_layer_strategy=d.skip_layer_strategy,
        step_sigmas=sigmas[:-1])
    rng = np.random.default_rng(seed)
    text, negative = (jnp.asarray(rng.standard_normal((1, text_tokens, cfg.caption_channels)), dtype)
                      for _ in range(2))
    mask = jnp.ones((1, text_tokens), jnp.int32)
    inputs = sampling.SamplingInputs(
        prompt_embeds=text, prompt_attention_mask=mask, negative_prompt_embeds=negative,
        negative_prompt_attention_mask=mask, sigmas=jnp.asarray(sigmas), timesteps=jnp.asarray(timesteps),
        guidance={k: jnp.asarray(v) for k, v in scales.items()}, skip_masks=jnp.asarray(masks),
        rope_interpolation_scale=jnp.asarray(sampling.rope_interpolation_scale(25.0, temporal_ratio=8,
                                                                               spatial_ratio=32), jnp.float32))
    return segments, inputs


def cache_runs(module, params, grid, *, steps: int = 40, text_tokens: int = 128, repeats: int = 2,
               thresholds=parse_thresholds(CACHE_THRESHOLDS), seed: int = 0) -> list[dict]:
    """The dev recipe's loop with no cache, then each (kind, threshold) of ``thresholds``: one row each, with the
    first call (compiles: once per kind, a new threshold compiles nothing), the median seconds of ``repeats`` runs
    (taken in rounds of one run of every row, so that a change of the machine's load falls on all rows alike), the
    steps that reused the cache, and against the no-cache row the speed-up and the latents' PSNR (dB) and max
    relative difference."""
    from ltx_jax import sampling

    cfg = module.config
    segments, inputs = dev_recipe_inputs(cfg, grid, steps, text_tokens, module.dtype, seed)
    noise = np.random.default_rng(seed + 1).standard_normal((1, grid.num_tokens, cfg.in_channels)).astype(np.float32)
    rows, runs = [], []
    for kind, threshold in ((None, None), *thresholds):
        sampler = sampling.Sampler(module, grid, segments, host_callbacks=False, cache=kind)
        run_inputs = inputs.replace(cache_threshold=None if kind is None else jnp.float32(threshold))
        runs.append(lambda sampler=sampler, run_inputs=run_inputs: jax.block_until_ready(  # new latents: donated
            sampling.jitted_sample(sampler, params, jnp.asarray(noise), run_inputs)))
        start = time.perf_counter()
        result = runs[-1]()
        first = time.perf_counter() - start
        latents = np.asarray(result.latents)
        rows.append(dict(kind=kind or "none", threshold=threshold, steps=steps, tokens=grid.num_tokens,
                         branches=max(len(s.guidance.branches) for s in segments), times_s=[],
                         first_call_s=None if any(r["kind"] == (kind or "none") for r in rows) else first,
                         skipped=np.asarray(result.cached_steps).tolist(),
                         steps_skipped=int(np.asarray(result.cached_steps).sum()), latents=latents,
                         finite=bool(np.isfinite(latents).all())))
    for _ in range(repeats):
        for row, run in zip(rows, runs):
            row["times_s"] += sample_times(run, 1, warmup=0)
    for row in rows:
        row["median_s"] = statistics.median(row["times_s"])
    base_s, base = rows[0]["median_s"], rows[0]["latents"]
    for row in rows:
        latents = row.pop("latents")
        row.update(speedup=base_s / row["median_s"], psnr_db=latents_psnr(latents, base),
                   max_rel_diff=float(np.max(np.abs(latents - base)) / np.max(np.abs(base))))
    return rows


def cache_table(rows: list[dict], title: str) -> str:
    """The rows of ``cache_runs`` as a markdown table."""
    lines = [title, "", "| cache | threshold | steps skipped | loop s | speed-up | latents PSNR dB | first call s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        psnr = "exact" if not np.isfinite(r["psnr_db"]) else f"{r['psnr_db']:.1f}"
        first = "" if r["first_call_s"] is None else f"{r['first_call_s']:.1f}"
        lines.append(f"| {r['kind']} | {'' if r['threshold'] is None else r['threshold']} | "
                     f"{r['steps_skipped']} / {r['steps']} | {r['median_s']:.3f} | {r['speedup']:.2f}x | {psnr} | "
                     f"{first} |")
    return "\n".join(lines)


def cache_model(name: str, layers: int | None):
    """"cpu": the 2B config at CPU widths (4 heads of 32, the run_all CPU transformer), "2b": the 2B config."""
    from ltx_jax.releases import TRANSFORMER_PRESETS

    cfg = TRANSFORMER_PRESETS["ltx-video-2b"]
    if name == "cpu":
        cfg = cfg.replace(num_attention_heads=4, attention_head_dim=32, cross_attention_dim=128, caption_channels=64)
    return cfg.replace(num_layers=layers) if layers else cfg


def main(argv=None) -> int:
    from ltx_jax.releases import TRANSFORMER_PRESETS
    from ltx_jax.sampling import LatentGrid
    from ltx_jax.tiny_random import TINY_TRANSFORMER

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tiny-steps", type=int, default=2000)
    p.add_argument("--slice-steps", type=int, default=6)
    p.add_argument("--cache", action="store_true", help="the step-cache table only (cache_runs)")
    p.add_argument("--cache-model", choices=("cpu", "2b"), default="cpu")
    p.add_argument("--cache-layers", type=int, default=None, help="default: the 2B config's 28")
    p.add_argument("--cache-video", default="128,192,25", help="height,width,frames (GPU: 512,768,121)")
    p.add_argument("--cache-steps", type=int, default=40)
    p.add_argument("--cache-repeats", type=int, default=3)
    p.add_argument("--cache-thresholds", default=CACHE_THRESHOLDS, help="KIND:THRESHOLD,...")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                   help="--cache: default bfloat16 on a GPU, float32 elsewhere")
    args = p.parse_args(argv)
    if args.cache:
        return cache_main(args)
    slice_cfg = TRANSFORMER_PRESETS["ltx-video-2b"].replace(num_layers=2)
    rows = [case("tiny (2 layers, width 16)", TINY_TRANSFORMER, LatentGrid(2, 2, 3), args.tiny_steps, args.repeats),
            case("2B width, 2 layers", slice_cfg, LatentGrid(2, 8, 8), args.slice_steps, args.repeats)]
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, float32")
    print(f"{'case':<28} {'tokens':>6} {'steps':>6} {'ms/step':>10} {'+callback':>10} {'callback us':>12} "
          f"{'stepwise us':>12} {'finite check us':>16}")
    for r in rows:
        print(f"{r['name']:<28} {r['tokens']:>6} {r['steps']:>6} {r['step_ms']:>10.3f} {r['step_cb_ms']:>10.3f} "
              f"{r['callback_us']:>12.1f} {r['stepwise_us']:>12.1f} {r['finite_check_us']:>16.1f}")
    frames = check_time((1, 121, 512, 768, 3), repeats=5)
    print(f"finite check of decoded frames, 121 x 512 x 768 x 3 float32: {frames * 1e3:.1f} ms")
    branch_times(slice_cfg, LatentGrid(2, 8, 8), args.slice_steps, args.repeats)
    return 0


def branch_times(cfg, grid, steps: int, repeats: int) -> dict:
    """ms per step with one branch (text only), two (CFG) and three (CFG + STG), on the same loop."""
    from ltx_jax import sampling
    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel

    module = LTXVideoTransformer3DModel(cfg)
    params = init_params(module, jax.random.PRNGKey(0))
    rows = {}
    for name, guidance in (("text only", sampling.Guidance()), ("CFG", sampling.Guidance(cfg=True)),
                           ("CFG + STG", sampling.Guidance(cfg=True, stg=True))):
        rows[name] = statistics.median(loop_times(module, params, grid, steps, repeats, guidance=guidance)) / steps
    base = rows["text only"]
    print(f"branches per step ({cfg.num_layers} layers, width {cfg.inner_dim}, {grid.num_tokens} tokens): " + ", ".join(
        f"{name} {t * 1e3:.1f} ms ({t / base:.2f}x)" for name, t in rows.items()))
    return rows


def cache_main(args) -> int:
    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from ltx_jax.sampling import LatentGrid

    dtype = jnp.dtype(args.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32"))
    cfg = cache_model(args.cache_model, args.cache_layers)
    height, width, frames = (int(v) for v in args.cache_video.split(","))
    grid = LatentGrid.for_video(frames, height, width, spatial_ratio=32, temporal_ratio=8)
    module = LTXVideoTransformer3DModel(cfg, dtype, dtype)
    params = init_params(module, jax.random.PRNGKey(0))
    rows = cache_runs(module, params, grid, steps=args.cache_steps, text_tokens=128 if args.cache_model == "2b" else 32,
                      repeats=args.cache_repeats, thresholds=parse_thresholds(args.cache_thresholds))
    print(cache_table(rows, f"{args.cache_model} config ({cfg.num_layers} layers, width {cfg.inner_dim}), "
                            f"{width}x{height}x{frames} ({grid.num_tokens} tokens), {DEV_RELEASE} recipe: "
                            f"{args.cache_steps} steps, CFG + STG (3 branches); random weights, {dtype.name}, "
                            f"{jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

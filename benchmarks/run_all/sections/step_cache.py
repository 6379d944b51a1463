"""Section step_cache: the 2B dev recipe's denoising loop (40 steps, CFG + STG: three branches a step) with no step
cache and with each kind at each threshold (``benchmarks.bench_sampler.cache_runs``, random weights): the steps
skipped, the speed-up and the latents' PSNR against no cache."""

from __future__ import annotations

import numpy as np

from ..builders import rng_key
from ..context import Context, add_timing, first_call_name, load_bench
from ..sizes import transformer_config


def section_step_cache(ctx: Context) -> None:
    """The 2B dev recipe's loop (40 steps, CFG + STG) without a step cache and with each kind at each threshold:
    steps skipped, speed-up and latents PSNR against no cache. A row per (kind, threshold) after the no-cache row,
    each kind's first call (compiles) a row of its own; checks that every run's latents are finite."""
    import jax.numpy as jnp

    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from ltx_jax.sampling import LatentGrid

    bs = load_bench("bench_sampler")
    s, rec = ctx.sizes, ctx.rec
    dt = jnp.dtype(s.dtype)
    cfg = transformer_config(s.cache_transformer, s.cache_layers)
    height, width, frames = s.cache_video
    grid = LatentGrid.for_video(frames, height, width, spatial_ratio=32, temporal_ratio=8)
    rec.info(video=s.cache_video, latent=(grid.frames, grid.height, grid.width), steps=s.cache_steps,
             recipe=bs.DEV_RELEASE, thresholds=s.cache_thresholds, dtype=s.dtype, transformer=cfg.to_dict(),
             weights="random")
    module = LTXVideoTransformer3DModel(cfg, dt, dt)
    params = init_params(module, rng_key(0))
    rows = bs.cache_runs(module, params, grid, steps=s.cache_steps, text_tokens=s.text_tokens,
                         repeats=s.cache_repeats, thresholds=bs.parse_thresholds(s.cache_thresholds))
    base = f"loop {width}x{height}x{frames} {s.cache_steps} steps CFG + STG"
    for r in rows:
        name = base + ("" if r["kind"] == "none" else f", {r['kind']} {r['threshold']}")
        if r["first_call_s"] is not None:
            rec.case(first_call_name(f"{base}, {r['kind']}"), first_call=True, ours_ms=r["first_call_s"] * 1e3)
        row = rec.case(name, kind=r["kind"], threshold=r["threshold"], steps_skipped=r["steps_skipped"],
                       skipped=r["skipped"], speedup=r["speedup"], psnr_db=r["psnr_db"],
                       max_rel_diff=r["max_rel_diff"], finite=r["finite"],
                       note=f"{r['steps_skipped']} / {r['steps']} steps skipped, {r['speedup']:.2f}x no cache's speed")
        add_timing(row, "ours", r["times_s"])
    finite = all(r["finite"] for r in rows)
    rec.check("latents finite with every cache", finite, value=[r["kind"] for r in rows if not r["finite"]])
    rec.info(steps_skipped={f"{r['kind']}:{r['threshold']}": r["steps_skipped"] for r in rows[1:]},
             best_speedup=float(np.max([r["speedup"] for r in rows])))

"""Section compile: where the first call of a new process goes, stage by stage, split into tracing, lowering and
XLA's compiling, with the persistent compilation cache cold, warm and off; and the decode programs' making."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

from ..builders import init_vae_decoder, rng_key, vae_decode_fn
from ..context import Context, first_call_name
from ..hardware import conv_shapes, short_error
from ..results import read_json
from ..sizes import vae_config, vae_tiling

# How each run's process is started (sizes' ``compile_runs`` choose and order them; each kind has its own cache).
RUNS = {
    "cold": "new process, cold cache",  # the cache on, in a new empty folder: a user's first run
    "warm": "second process, warm cache",  # the same folder again: every program of the call is in it
    "off": "new process, cache off",
    # a new folder holding only the cold run's XLA autotuning results (GPU): XLA compiles again, timing nothing
    "autotune_cache": "new process, autotune results only",
    "no_autotune": "new process, cache off, XLA_FLAGS=--xla_gpu_autotune_level=0",  # what autotuning costs (GPU)
}
KIND_NAMES = {"text_to_video": "text-to-video", "multi_scale": "multi-scale"}
KINDS = tuple(KIND_NAMES)  # the pipeline section's text-to-video and the multi_scale section's recipe
AUTOTUNE_DIR = "xla_gpu_per_fusion_autotune_cache_dir"  # jax's subfolder of the cache for XLA's autotune results
SPLIT = ("trace_s", "lower_s", "xla_s", "compile_s", "xla_programs", "cache_hits", "cache_misses", "slowest_xla")


def section_compile(ctx: Context) -> None:
    """The text-to-video and multi-scale pipelines' first call in new processes (the persistent cache cold, then warm,
    then off), each stage's seconds split into tracing, lowering and XLA compiling; the decode program's distinct
    convolution shapes; the decode programs (whole, diffusers' tiles, uniform tiles) traced, lowered and compiled on
    their own."""
    s, rec = ctx.sizes, ctx.rec
    rec.info(runs_meaning={r: RUNS[r] for r in s.compile_runs}, runs={},
             how="each run a new `python -m benchmarks.run_all.first_call` process (first_call.py): build (random "
                 "weights; their init programs from a cache of the section's own), one call timed stage by stage "
                 "with jax.monitoring's compile events, a second call; every kind its own cache folder")
    root = tempfile.mkdtemp(prefix="run_all_compile_")
    failed = []
    try:
        for run in s.compile_runs:
            for kind in KINDS:
                if not ctx.has_time(s.estimates[f"compile_{kind}"], f"{kind} {run}"):
                    continue
                record = run_process(ctx, kind, run, root)
                if record is None:
                    failed.append(f"{kind} {run}")
                elif record:
                    record_rows(ctx, kind, run, record)
        if ctx.has_time(s.estimates["compile_decode_programs"], "decode programs"):
            decode_programs(ctx)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rec.check("every process ran", not failed, value=failed)


def run_process(ctx: Context, kind: str, run: str, root: str) -> dict | None:
    """One run's child process; its record, {} when the run does not apply (skip recorded), None when it failed
    (an error row recorded)."""
    from ..runner import ROOT, child_env  # deferred: runner imports the sections

    s, rec = ctx.sizes, ctx.rec
    out = os.path.join(root, f"{kind}-{run}.json")
    cmd = [sys.executable, "-m", "benchmarks.run_all.first_call", "--kind", kind, "--sizes", s.name, "--out", out,
           "--build-cache-dir", os.path.join(root, "build"), "--hlo"]
    env = child_env()
    if run in ("cold", "warm"):
        cmd += ["--cache-dir", os.path.join(root, kind)]
    elif run == "autotune_cache":
        tuned = os.path.join(root, kind, AUTOTUNE_DIR)
        if not os.path.isdir(tuned) or not os.listdir(tuned):
            rec.skip(f"{kind} {run}", "the cold run left no XLA autotuning results (none on a CPU)")
            return {}
        seeded = os.path.join(root, f"{kind}-autotune")
        shutil.copytree(tuned, os.path.join(seeded, AUTOTUNE_DIR))
        cmd += ["--cache-dir", seeded]
    elif run == "no_autotune":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_gpu_autotune_level=0").strip()
    left = ctx.time_left()
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=None if left == float("inf") else max(1.0, left))
        record = read_json(out) if proc.returncode == 0 else None
        error = None if record else f"exit {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}"
    except subprocess.TimeoutExpired as e:
        record, error = None, f"stopped at the section's deadline: {short_error(e)}"
    ctx.log(f"{kind} {run}: {'ok' if record else error[:200]} in {time.time() - start:.1f} s")
    if record is None:
        rec.case(f"{case_base(ctx, kind, run)}, first call (compiles)", first_call=True, kind=kind, run=run,
                 stage="total", error=error)
        return None
    record["process_wall_s"] = time.time() - start  # the whole process, Python's start and the imports included
    rec.info(runs={**rec.data["info"]["runs"], f"{kind}/{run}": record})
    return record


def case_base(ctx: Context, kind: str, run: str) -> str:
    height, width, frames = ctx.sizes.pipe_video if kind == "text_to_video" else ctx.sizes.ms_video
    return f"{KIND_NAMES[kind]} {width}x{height}x{frames}, {RUNS[run]}"


def record_rows(ctx: Context, kind: str, run: str, record: dict) -> None:
    """A first-call row per stage and the total's, in the order the stages ran."""
    for stage, split in record["stages"].items():
        row = {"first_call": True, "kind": kind, "run": run, "stage": stage, "ours_ms": split["seconds"] * 1e3,
               **{k: split.get(k) for k in SPLIT}}
        notes = [f"trace {split['trace_s']:.2f} s, lower {split['lower_s']:.2f} s, XLA {split['xla_s']:.2f} s "
                 f"({split['xla_programs']} programs)"]
        if record.get("cache_dir"):
            notes.append(f"cache {split['cache_hits']} hits, {split['cache_misses']} written")
        if stage == "total":
            one_time = split["seconds"] - record["second_call_s"]
            row.update(build_s=record["build_s"], second_call_ms=record["second_call_s"] * 1e3, one_time_s=one_time,
                       compile_outside_stages_s=split["compile_outside_stages_s"],
                       process_wall_s=record["process_wall_s"], autotune_cache_files=record["autotune_cache_files"],
                       decode_conv_shapes_lowered=record.get("decode_conv_shapes_lowered"),
                       decode_conv_shapes_compiled=record.get("decode_conv_shapes_compiled"))
            notes += [f"outside the stages {split['compile_outside_stages_s']:.2f} s",
                      f"first - second call {one_time:.2f} s",
                      f"decode convolution shapes {record.get('decode_conv_shapes_lowered')} lowered / "
                      f"{record.get('decode_conv_shapes_compiled')} compiled"]
            if record["autotune_cache_files"] is not None:
                notes.append(f"autotune cache files {record['autotune_cache_files']}")
            if record.get("not_from_cache") is not None and run != "cold":
                row["not_from_cache"] = record["not_from_cache"]
                notes.append("compiled, not from the cache: " + (", ".join(record["not_from_cache"]) or "none"))
        if split.get("slowest_xla"):
            name, seconds = split["slowest_xla"][0]
            notes.append(f"slowest XLA {name} {seconds:.2f} s")
        ctx.rec.case(first_call_name(case_base(ctx, kind, run), stage.replace("_", " ")), **row,
                     note="; ".join(notes))


def decode_programs(ctx: Context) -> None:
    """The vae section's decode (its VAE, latents and tiles), whole, tiled as diffusers tiles (a decoder per tile
    shape) and in uniform tiles (one scanned decoder), made in this process (no persistent cache): tracing, lowering,
    XLA's compile (autotuning included on a GPU) and the distinct convolution shapes."""
    import jax
    import jax.numpy as jnp

    s, rec = ctx.sizes, ctx.rec
    cfg, dt = vae_config(s.vae), jnp.dtype(s.dtype)
    frames, height, width = s.vae_latent
    params = jax.eval_shape(lambda: init_vae_decoder(cfg, dt, rng_key(0)))  # shapes only: nothing runs
    z = jax.ShapeDtypeStruct((1, frames, height, width, cfg.latent_channels), dt)
    t = jax.ShapeDtypeStruct((1,), jnp.float32)
    tiling = vae_tiling(s.vae_tiling)
    cases = [("whole", None), ("tiled", tiling)]
    if "layout" in {f.name for f in dataclasses.fields(tiling)}:  # the same tiles, one shape, one scanned decoder
        cases.append(("uniform tiled", dataclasses.replace(tiling, layout="uniform")))
    for name, tiling in cases:
        start = time.perf_counter()
        traced = vae_decode_fn(cfg, dt, tiling).trace(params, z, t)
        traced_at = time.perf_counter()
        lowered = traced.lower()
        lowered_at = time.perf_counter()
        compiled = lowered.compile()
        end = time.perf_counter()
        lowered_shapes, compiled_shapes = conv_shapes(lowered.as_text()), conv_shapes(compiled.as_text())
        rec.case(f"VAE decode {name} latent {frames}x{height}x{width}: trace + lower + compile (no run)",
                 ours_ms=(end - start) * 1e3, trace_s=traced_at - start, lower_s=lowered_at - traced_at,
                 xla_s=end - lowered_at, compile_s=end - start, conv_shapes_lowered=len(lowered_shapes),
                 conv_shapes_compiled=len(compiled_shapes), conv_shape_list=compiled_shapes[:100],
                 note=f"trace {traced_at - start:.2f} s, lower {lowered_at - traced_at:.2f} s, XLA "
                      f"{end - lowered_at:.2f} s; convolution shapes {len(lowered_shapes)} lowered / "
                      f"{len(compiled_shapes)} compiled")

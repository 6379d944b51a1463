"""One pipeline call in a fresh process, its first call split stage by stage into tracing, lowering and XLA
compiling: the child process of the compile section (sections/compile.py).

    python -m benchmarks.run_all.first_call --kind text_to_video --sizes cpu --out /tmp/first.json \\
        [--cache-dir DIR] [--build-cache-dir DIR] [--hlo]

builds the section's pipeline (``text_to_video``: ``pipe_*`` sizes at ``pipe_video``; ``multi_scale``: the same
components and an upsampler at ``ms_video``) with random weights, calls it twice (the first call traces, lowers,
compiles and runs every program; the second only runs) and writes what it saw as JSON. ``--cache-dir`` turns on the
persistent compilation cache there (``ltx_jax.compilation_cache``) for the calls, so run twice with one new folder it
gives the first call of a new process with a cold cache, then with a warm one; without it the cache is off for them.
``--build-cache-dir``: a cache of its own for building the pipeline (the random weights' init programs, which a real
run that loads weights never compiles), shared by the section's processes so that each builds quickly; the call's
cache is switched in after the build. ``--hlo`` also counts the distinct convolution shapes of the decode program
(lowered, and as XLA compiled it; JAX keeps both in memory from the call, so nothing compiles again).

What is split, from JAX's own monitoring events (``jax.monitoring``), each attributed to the stage whose window
(``pipe._stage``) it started in:

  trace    /jax/core/compile/jaxpr_trace_duration: Python -> jaxpr (nested jit functions overlap: their union)
  lower    /jax/core/compile/jaxpr_to_mlir_module_duration: jaxpr -> StableHLO
  xla      /jax/core/compile/backend_compile_duration: XLA's compile, or on a persistent-cache hit the read of the
           compiled program (a miss with the cache on includes the write); GPU autotuning happens in here
  compile  the union of the three: what the stage spent on making programs
  cache    /jax/compilation_cache/cache_hits and cache_misses (misses are counted when the entry is written)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

from .builders import build_multi_scale_pipeline, build_pipeline, word_tokenizer
from .hardware import conv_shapes
from .results import write_json_atomic
from .sections.compile import AUTOTUNE_DIR, KINDS
from .sizes import PROMPT, resolve_sizes, t5_config, transformer_config, upsampler_config, vae_config

SPAN_EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
               "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
               "/jax/core/compile/backend_compile_duration": "xla"}
CACHE_EVENTS = {"/jax/compilation_cache/cache_hits": "cache_hits",
                "/jax/compilation_cache/cache_misses": "cache_misses"}
TEXT_TOKENS = 128


class CompileEvents:
    """Every compile-related monitoring event of this process, with its wall-clock span (``time.time()``)."""

    def __init__(self):
        self.spans: list[tuple[str, float, float, str]] = []  # (trace / lower / xla, start, end, function name)
        self.counts: list[tuple[str, float]] = []  # (cache_hits / cache_misses, when)

    def install(self) -> "CompileEvents":
        import jax

        jax.monitoring.register_event_time_span_listener(self._span)
        jax.monitoring.register_event_listener(self._event)
        return self

    def _span(self, event: str, start: float, end: float, fun_name: str = "", **_) -> None:
        if event in SPAN_EVENTS:
            self.spans.append((SPAN_EVENTS[event], start, end, str(fun_name)))

    def _event(self, event: str, **_) -> None:
        if event in CACHE_EVENTS:
            self.counts.append((CACHE_EVENTS[event], time.time()))

    def split(self, start: float, end: float, slowest: int = 3) -> dict:
        """Seconds of tracing, lowering, XLA compiling and all three (their union) that started in [start, end),
        the number of XLA compiles (or cache reads), persistent-cache hits and misses, and the ``slowest`` XLA
        compiles ([program, seconds], the longest first)."""
        spans = [s for s in self.spans if start <= s[1] < end]
        out = {f"{kind}_s": union_seconds([(a, b) for k, a, b, _ in spans if k == kind])
               for kind in ("trace", "lower", "xla")}
        out["compile_s"] = union_seconds([(a, b) for _, a, b, _ in spans])
        xla = sorted(((b - a, name) for k, a, b, name in spans if k == "xla"), reverse=True)
        out["xla_programs"] = len(xla)
        for kind in CACHE_EVENTS.values():
            out[kind] = sum(k == kind and start <= t < end for k, t in self.counts)
        out["slowest_xla"] = [[name, seconds] for seconds, name in xla[:slowest]]
        return out

    def not_from_cache(self, start: float, end: float) -> list[str]:
        """The programs XLA compiled in [start, end) that the persistent cache did not give (no hit in their span)."""
        hits = [t for k, t in self.counts if k == "cache_hits"]
        return [name for k, a, b, name in self.spans
                if k == "xla" and start <= a < end and not any(a <= t <= b for t in hits)]


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (a nested jit's tracing lies inside its caller's)."""
    total, reach = 0.0, None
    for a, b in sorted(spans):
        if reach is None or a > reach:
            total += b - a
            reach = b
        elif b > reach:
            total += b - reach
            reach = b
    return total


@contextlib.contextmanager
def stage_windows(pipe):
    """Records the wall-clock window of every stage the pipeline times (``pipe._stage``), in the order they open:
    yields the list of (stage, start, end)."""
    windows: list[tuple[str, float, float]] = []
    timed = pipe._stage

    @contextlib.contextmanager
    def recorded(name: str):
        start = time.time()
        try:
            with timed(name):
                yield
        finally:
            windows.append((name, start, time.time()))

    pipe._stage = recorded
    try:
        yield windows
    finally:
        del pipe._stage  # the class's method again


def stage_names(windows: list[tuple[str, float, float]], reported: list[str]) -> list[str]:
    """The name each window is reported under: its own, or, for a stage the pipeline renames after it closes (the
    multi-scale passes' "denoising" -> first_pass, second_pass), the reported stages no window has, in order."""
    own = {name for name, _, _ in windows}
    renamed = iter([name for name in reported if name not in own])
    return [name if name in reported else next(renamed, name) for name, _, _ in windows]


@contextlib.contextmanager
def recording_calls(program):
    """The arguments of every call of an ``ltx_jax.programs.Program`` while the block runs (to lower the program
    again afterwards with exactly the call's arguments: the same persistent-cache key)."""
    calls: list[tuple[tuple, dict]] = []
    jitted = program.jitted

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return jitted(*args, **kwargs)

    program.jitted = record
    try:
        yield calls
    finally:
        program.jitted = jitted


def decode_hlo(calls: list[tuple[tuple, dict]]) -> dict:
    """The distinct convolution shapes of the first recorded decode call's program, lowered (StableHLO) and
    compiled (XLA's HLO after its passes). JAX keeps both from the call itself, so nothing is traced or compiled
    again (the seconds say so)."""
    if not calls:
        return {}
    from ltx_jax.pipelines.vae_programs import jitted_decode

    args, kwargs = calls[0]
    start = time.perf_counter()
    lowered = jitted_decode.jitted.lower(*args, **kwargs)
    compiled = lowered.compile()
    lowered_shapes, compiled_shapes = conv_shapes(lowered.as_text()), conv_shapes(compiled.as_text())
    return {"decode_conv_shapes_lowered": len(lowered_shapes), "decode_conv_shapes_compiled": len(compiled_shapes),
            "decode_conv_shape_list": compiled_shapes[:100], "decode_hlo_s": time.perf_counter() - start}


def build(kind: str, sizes):
    """(pipeline, call arguments) of the compile section's ``kind`` at ``sizes``."""
    tcfg, vcfg, t5cfg = transformer_config(sizes.pipe_transformer), vae_config(sizes.pipe_vae), t5_config(sizes.pipe_t5)
    tokenizer = word_tokenizer(TEXT_TOKENS)
    if kind == "text_to_video":
        pipe, _ = build_pipeline(tcfg, vcfg, t5cfg, sizes.dtype, sizes.pipe_preset, tokenizer)
        height, width, frames = sizes.pipe_video
    else:
        pipe, _ = build_multi_scale_pipeline(tcfg, vcfg, t5cfg, upsampler_config(sizes.ms_upsampler), sizes.dtype,
                                             sizes.ms_preset, tokenizer)
        height, width, frames = sizes.ms_video
    call = dict(prompt=PROMPT, height=height, width=width, num_frames=frames, max_sequence_length=TEXT_TOKENS,
                output_type="uint8")  # as the pipeline and multi_scale sections call it
    return pipe, call


def use_cache(cache_dir: str | None) -> None:
    """Points JAX's persistent compilation cache at ``cache_dir`` (None: off) for the programs compiled from now on,
    in this process (jax reopens the cache at the next compile)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    from ltx_jax.compilation_cache import enable_compilation_cache

    compilation_cache.reset_cache()
    if cache_dir:
        enable_compilation_cache(cache_dir)
    else:
        jax.config.update("jax_compilation_cache_dir", None)


def stage_splits(events: CompileEvents, windows: list[tuple[str, float, float]], reported: dict) -> dict:
    """{stage: {"seconds", trace_s, lower_s, xla_s, compile_s, ...}} of one call, a stage run twice added up."""
    stages: dict[str, dict] = {}
    for name, (_, a, b) in zip(stage_names(windows, list(reported)), windows):
        split = events.split(a, b)
        entry = stages.setdefault(name, {"seconds": 0.0, "slowest_xla": []})
        entry["seconds"] += b - a
        for k, v in split.items():
            entry[k] = sorted(entry[k] + v, key=lambda x: -x[1])[:3] if k == "slowest_xla" else entry.get(k, 0) + v
    return stages


def run(kind: str, sizes_name: str, cache_dir: str | None, build_cache_dir: str | None, hlo: bool) -> dict:
    """Builds, calls twice, returns the record (see the module docstring)."""
    events = CompileEvents().install()  # before anything compiles
    import jax

    from ltx_jax.pipelines.vae_programs import jitted_decode

    use_cache(build_cache_dir)
    sizes = resolve_sizes(sizes_name)
    record = {"kind": kind, "cache_dir": cache_dir, "backend": jax.default_backend(), "jax": jax.__version__,
              "xla_flags": os.environ.get("XLA_FLAGS", "")}
    start = time.time()
    pipe, call = build(kind, sizes)
    record["build_s"] = time.time() - start
    record["build"] = events.split(start, time.time())

    use_cache(cache_dir)
    record["xla_caches"] = jax.config.jax_persistent_cache_enable_xla_caches if cache_dir else None
    with stage_windows(pipe) as windows, recording_calls(jitted_decode) as decode_calls:
        start = time.time()
        frames = pipe(**call, seed=0)
        end = time.time()
    reported = pipe.last_timings.as_dict()
    stages = stage_splits(events, windows, reported)
    total = events.split(start, end, slowest=5)
    inside = sum(s["compile_s"] for s in stages.values())
    stages["total"] = {"seconds": end - start, "reported_s": reported["total"], **total,
                       "compile_outside_stages_s": max(0.0, total["compile_s"] - inside)}
    if cache_dir:  # JAX writes no program that calls the host; with the cache on, the loop has none
        record["not_from_cache"] = events.not_from_cache(start, end)
    record.update(stages=stages, frames_shape=list(frames.shape))
    del frames

    start = time.time()
    pipe(**call, seed=1)
    record["second_call_s"] = time.time() - start
    record["second_call_stages"] = pipe.last_timings.as_dict()
    record["second_call_compile"] = events.split(start, time.time())  # none expected: the same shapes
    if hlo:
        record.update(decode_hlo(decode_calls))
    autotune = os.path.join(cache_dir, AUTOTUNE_DIR) if cache_dir else None
    record["autotune_cache_files"] = (len([f for f in os.listdir(autotune) if f.endswith(".textproto")])
                                      if autotune and os.path.isdir(autotune) else None)  # one per autotuned HLO
    record["cache_entries"] = (len([f for f in os.listdir(cache_dir) if f != AUTOTUNE_DIR]) if cache_dir else None)
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_all.first_call", description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--sizes", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--cache-dir", default=None, help="the calls' persistent compilation cache (default: off)")
    p.add_argument("--build-cache-dir", default=None, help="the build's persistent compilation cache (default: off)")
    p.add_argument("--hlo", action="store_true", help="count the decode program's distinct convolution shapes")
    p.add_argument("--out", required=True, help="the JSON record")
    args = p.parse_args(argv)
    from .runner import die_with_parent  # deferred: the package's import of the sections leads here

    die_with_parent()  # no call left running on the card when the section's process is stopped
    start = time.time()
    record = run(args.kind, args.sizes, args.cache_dir, args.build_cache_dir, args.hlo)
    record["process_s"] = time.time() - start  # from here (after Python's start and the package import)
    write_json_atomic(args.out, record)
    print(json.dumps({k: record[k] for k in ("kind", "build_s", "second_call_s")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

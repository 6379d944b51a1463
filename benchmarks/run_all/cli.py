"""One command that checks the GPU-only paths and times every component against diffusers, in one run.

    python -m benchmarks.run_all                         # backend detected: CUDA -> bf16 at full sizes, CPU -> small
    python -m benchmarks.run_all --sections transformer,vae --out /tmp/run.json
    python -m benchmarks.run_all --sections all          # the optional sections too (see --list)
    python -m benchmarks.run_all --list                  # the sections, their estimates, the optional ones, the sizes
    python -m benchmarks.run_all --goals A.json B.json   # the performance goals of saved runs (goals.py)
    benchmarks/run_all.sh [--wheels DIR] [ARGS...]       # on a fresh GPU machine (offline wheel install, env)

Sections, run in this order, each a function of one ``Sizes`` (every size and dtype of a CPU or GPU run is in
``CPU_SIZES`` / ``GPU_SIZES`` of sizes.py, so a GPU run changes only sizes and dtypes, never code):

  matmul_peak             the card's measured matmul rate in the run dtype (every TFLOP/s is also given as a
                          fraction of it), and torch's on the same card
  attention_cudnn_vs_xla  transformer (2B width, 4 layers, 9x32x32 tokens, right-padded text masks of real prompt
                          lengths): the default attention path (cuDNN flash attention on CUDA in bf16) against the
                          XLA path and a float32 XLA reference; the compiled HLO must hold cuDNN's fused attention
                          custom call (``__cudnn$fmha*``) on GPU and none on CPU (there the cuDNN part is skipped)
  pipeline_vs_cpu_fp32    a small-width pipeline (text encoder, 8-step CFG denoising loop, VAE decode): bf16 (and
                          float32) on the accelerator against float32 on the CPU backend with the same params (PSNR)
  transformer             forward pass at each latent shape, against diffusers (same weights), analytic FLOPs;
                          compile time with 4 and 28 layers (blocks are scanned)
  ltx2_transformer        (optional) LTX-2's audio-video transformer, 19B width cut to 4 layers, 768x512x121 video
                          tokens + the matching 126 audio tokens + 1024 text tokens, against diffusers; analytic FLOPs
  ltx2_pipeline           (optional) LTX-2 19B distilled + Gemma 3 12B with random weights (GPU), bf16: text to video
                          with sound at 768x512x121 (8 distilled steps, no guidance), then the two-stage recipe at
                          1536x1024x121 (stage 1 at 768x512, x2 upsampler, 3 steps): stage times (first call and
                          later calls), FLOPs, against diffusers' LTX2Pipeline on the same card; the LTX-2 goal
  text_encoder            T5 (XXL on GPU) encode, masked and unmasked, against transformers on the same card
  scheduler               Euler step and per-token step, against diffusers' FlowMatchEulerDiscreteScheduler
  vae                     0.9.5 VAE decode tiled and untiled against diffusers (same weights), per-case peak memory
                          (out-of-memory is caught per case), compiled memory of tiled decode for F and 2F frames
                          (optional on GPU: not in the default run)
  pipeline                2B + 0.9.5 VAE + T5-XXL with random weights (GPU), 768x512x121, 8 distilled steps: stage
                          times (first call and later calls), FLOPs, against diffusers' LTXPipeline
  multi_scale             the 0.9.8 2B distilled multi-scale recipe at 1216x704x121 (GPU): first pass, upsampling,
                          second pass, decoding, resizing (first call and later calls)
  compile                 the first call of a new process (the pipeline and multi_scale sections' pipelines and
                          sizes), each stage split into tracing, lowering and XLA's compiling, with the persistent
                          compilation cache cold, warm (a second process) and off (GPU: also with only XLA's autotune
                          results cached, and with autotuning off); the decode program's distinct convolution shapes;
                          the decode programs (whole, diffusers' tiles, uniform tiles) made on their own (optional on
                          GPU: not in the default run)
  sharding                the transformer over device meshes against one device (memory and time per device); on
                          one GPU it skips itself

Optional sections: a size may leave sections out of its default run so that the rest fits its budget (GPU: vae,
about 240 s with the diffusers comparison; compile, about 850 s; step_cache; ltx2_transformer; ltx2_pipeline, about
640 s; the others together take about 520 s of the 560 s). The default run records each one as skipped ("optional:
..."); ``--sections all`` or naming it in ``--sections`` runs it (with a ``--budget-s`` that covers it: ``--list``
gives every section's estimate and the sums).

Each section that times a pipeline or a component gives its first call (tracing, compiling and running once: what a
user waits for first) its own row, named "..., first call (compiles)", next to the median of the later calls.

Every section runs in its own process (``--isolate process``, the default): per-section peak device memory is that
process's, an out-of-memory or a crash ends one section only, and a section that overruns its share of the time
budget is stopped with what it measured so far. A failing section records its traceback and the run goes on.
The JSON (``--out``) is rewritten atomically after every change; the markdown table is appended to
``--results-md`` at the end (also on Ctrl-C / SIGTERM / budget exhaustion), and a short summary table is printed
last; the performance goals (goals.py: each met, missed or not measured) close both. torch, diffusers and
transformers are imported lazily per section: when one is missing, only the comparisons that need it are marked
skipped, with the reason.

This module is the command line (``parse_args``, ``main``); the package's other modules, one concern each, are listed
in benchmarks/run_all/__init__.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import subprocess
import tempfile
import time

from .goals import goals_of_files
from .hardware import environment
from .results import json_safe, read_json
from .runner import BENCHMARKS, ROOT, Run, child_command, child_env, child_main, probe_main, stop
from .sections import SECTIONS
from .sizes import GPU_SIZES, SIZES, Sizes, resolve_sizes


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.splitlines()[0],
                                epilog="Sections: " + ", ".join(SECTIONS),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default=None,
                   help="comma-separated section names, or 'all' (every section, the optional ones too); default: "
                        "every section but the sizes' optional ones (see --list)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/run_all_<sizes>.json)")
    p.add_argument("--results-md", default=os.path.join(BENCHMARKS, "RESULTS.md"),
                   help="markdown file the table is appended to (default benchmarks/RESULTS.md; '' for none)")
    p.add_argument("--sizes", default="auto", choices=["auto", "cpu", "gpu"], help="auto: gpu on a CUDA backend")
    p.add_argument("--no-torch", action="store_true", help="skip every torch / diffusers comparison")
    p.add_argument("--budget-s", type=float, default=None,
                   help=f"wall-clock budget of the run from its start (default: the sizes' own, "
                        f"{GPU_SIZES.budget_s:.0f} s on GPU, none on CPU); each section gets a share of what is "
                        f"left, in proportion to its estimate, and is stopped past it")
    p.add_argument("--isolate", default="process", choices=["process", "none"],
                   help="process (default): each section in a fresh process; none: all in this one (debugging)")
    p.add_argument("--list", action="store_true",
                   help="print the sections (estimates, which are optional), the sums against the budget, the sizes")
    p.add_argument("--goals", nargs="+", default=None, metavar="RUN_JSON",
                   help="print the performance goals (goals.py) of saved runs' JSON, merged (a later file's sections "
                        "replace an earlier one's), and exit")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = None if argv is None else list(argv)
    return args


def main(argv=None) -> int:
    start = time.time()
    args = parse_args(argv)
    if args.probe:
        return probe_main(args)
    if args.child:
        return child_main(args)
    if args.goals:
        print(goals_of_files(args.goals))
        return 0
    if args.list:
        print(list_text())
        for sizes in SIZES.values():
            print(json.dumps(json_safe(dataclasses.asdict(sizes))))
        return 0
    named = None if args.sections is None else [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = [x for x in named or () if x not in SECTIONS and x != "all"]
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {list(SECTIONS)} or 'all'")

    # The environment (and so the backend) from a short child process: this process never touches the GPU.
    if args.isolate == "process":
        with tempfile.TemporaryDirectory() as tmp:
            probe = os.path.join(tmp, "env.json")
            proc = subprocess.run(child_command("--probe", "--child-out", probe), capture_output=True, text=True,
                                  cwd=ROOT, env=child_env())
            env = read_json(probe)
            if env is None:
                raise SystemExit(f"could not start JAX in a child process:\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-3000:]}")
    else:
        env = environment()
    sizes = resolve_sizes(args.sizes, env["backend"])
    sections, left_out = choose_sections(named, sizes)
    if args.out is None:
        args.out = os.path.join(BENCHMARKS, f"run_all_{sizes.name}.json")
    run = Run(args, env, sizes, sections, start, optional_left_out=left_out)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, on_term) if threading_is_main() else None
    try:
        run.run()
        run.finalize()
    except KeyboardInterrupt as e:
        child = getattr(run, "child", None)
        if child is not None:
            stop(child)
        run.finalize(reason=f"interrupted ({e or 'Ctrl-C'})")
        return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    return 1 if run.data.get("failed_sections") else 0


def choose_sections(named: list[str] | None, sizes: Sizes) -> tuple[list[str], list[str]]:
    """(the sections to run, in run order; the optional sections left out). ``named`` None: the default run, every
    section but ``sizes.optional``; ["all"] (or "all" among the names): every section; else the named ones."""
    if named is None:
        return [n for n in SECTIONS if n not in sizes.optional], [n for n in SECTIONS if n in sizes.optional]
    if "all" in named:
        return list(SECTIONS), []
    return [n for n in SECTIONS if n in named], []  # run order: later sections are fractions of matmul_peak's rate


def list_text() -> str:
    """``--list``: each section with its estimated seconds per sizes (optional ones marked), and the sums against
    each sizes' budget (one device)."""
    lines = ["section                 " + "".join(f"{n + ' s':>7s}{'':9s}" for n in SIZES) + "  what"]
    for name, fn in SECTIONS.items():
        cols = "".join(f"{sz.estimate(name):>7.0f}{' optional' if name in sz.optional else '':9s}"
                       for sz in SIZES.values())
        lines.append(f"{name:24s}{cols}  {first_sentence(fn.__doc__)}")
    lines.append("")
    for sz in SIZES.values():
        default, left_out = choose_sections(None, sz)
        budget = f"of its {sz.budget_s:.0f} s budget" if sz.budget_s else "(no budget)"
        line = (f"{sz.name}: the default run ({len(default)} sections, its start included) takes about "
                f"{sz.total_estimate(default):.0f} s {budget}")
        if left_out:
            every = sz.total_estimate(SECTIONS)
            line += (f". Optional, left out of the default run (recorded as skipped): {', '.join(left_out)}; "
                     f"run one with --sections NAME, or every section with --sections all --budget-s "
                     f"{10 * math.ceil(every / 10):.0f} (about {every:.0f} s)")
        lines.append(line)
    lines.append("estimates: GPU from one H200, 2026-12-04 (sizes.py says which were measured); sharding on one GPU "
                 f"skips itself (several GPUs: about {SIZES['gpu'].estimates['sharding']:.0f} s, not measured)")
    return "\n".join(lines)


def first_sentence(doc: str, limit: int = 110) -> str:
    text = " ".join(doc.split())
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


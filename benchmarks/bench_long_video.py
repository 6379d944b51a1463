"""Peak memory of a long video's streamed decode and mp4 writing (``decode_to_file``: ``decode_video_stream`` into
``open_video_writer``), for 481 and 1,441 frames at 768x512, each length in a fresh process.

Per length: the peak host RSS of the process (``resource``'s ``ru_maxrss``: imports, weights, compiling, decoding and
writing), the part the decode and the writing added over the process before them, ffmpeg's peak RSS (sampled from
``/proc``), the device's peak (``memory_stats()["peak_bytes_in_use"]``; the CPU reports none: then the compiled window
program's temporaries + arguments + outputs from XLA's ``memory_analysis()``), the windows and the seconds. Then the
ratio of each peak, 1,441 frames over 481: streaming keeps it near 1 (goal <= 1.15). A decode that kept every frame
would hold 1,441 x 768 x 512 x 3 bytes = 1.7 GB as uint8 (6.8 GB as float32) at the end, three times 481's.

VAEs (``--vae``): ``tiny`` (``ltx_jax.tiny_random.TINY_VAE``, random weights: the default on a CPU, where the real VAE
at 768x512 takes hours on two cores), a release's VAE with random weights (``ltx-video-0.9.5``: memory is the
weights' shapes', not their values), or a checkpoint folder / file (``weight_conversion.load_vae``).

Usage, from the repository root:
    python -m benchmarks.bench_long_video                                  # tiny VAE, 481 and 1441 frames, 768x512
    python -m benchmarks.bench_long_video --vae ltx-video-0.9.5 --dtype bfloat16    # on a GPU
    python -m benchmarks.bench_long_video --frames 97,289 --height 128 --width 192  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.models import init_params
from ltx_jax.models.vae import AutoencoderKLLTXVideo
from ltx_jax.pipelines.base import VAEStages
from ltx_jax.pipelines.decode_stream import plan_windows, stream_window_latent_frames
from ltx_jax.pipelines.reporting import StageTimings
from ltx_jax.programs import dry_run
from ltx_jax.releases import VAE_PRESETS
from ltx_jax.tiny_random import TINY_VAE
from weight_conversion import load_vae

LENGTHS = (481, 1441)
GOAL_RATIO = 1.15
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build_vae(vae: str, dtype: str):
    """(module, params) for ``--vae``: "tiny", a ``VAE_PRESETS`` name (random weights) or a checkpoint path."""
    if vae == "tiny" or vae in VAE_PRESETS:
        config = TINY_VAE if vae == "tiny" else VAE_PRESETS[vae]
        module = AutoencoderKLLTXVideo(config, dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(dtype))
        return module, jax.jit(lambda key: init_params(module, key))(jax.random.PRNGKey(0))
    return load_vae(vae, jnp.dtype(dtype))


class _Stages(VAEStages):
    """A VAE's stages alone (what ``decode_to_file`` needs of a pipeline)."""

    def __init__(self, module, params):
        self.vae, self.vae_params, self.last_timings = module, params, StageTimings()


def _status_bytes(pid: str, field: str) -> int:
    """A ``/proc/PID/status`` memory field (``VmRSS``, ``VmHWM``) in bytes; 0 for a process that has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakSampler:
    """A background thread sampling, every ``interval`` seconds, this process's RSS (``VmRSS``: ``peak`` is the
    largest seen while it ran, which a process's lifetime peak cannot tell for one call) and its ffmpeg children's
    peak (``VmHWM``: ``ffmpeg_peak``; ``resource``'s children figure would count a child's copy of this process
    between fork and exec)."""

    def __init__(self, interval: float = 0.01):
        self.peak = self.ffmpeg_peak = 0
        self._interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, _status_bytes("self", "VmRSS"))
            for pid in _children():
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        if not f.read().startswith("ffmpeg"):
                            continue
                except OSError:
                    continue
                self.ffmpeg_peak = max(self.ffmpeg_peak, _status_bytes(pid, "VmHWM"))
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _children() -> list[str]:
    """The process ids of this process's children (of every thread)."""
    pids = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids += f.read().split()
        except OSError:
            pass
    return pids


def measure_stages(stages: VAEStages, frames: int, height: int, width: int, folder: str,
                   window: int | None = None) -> dict:
    """The benchmark's core, in this process: decode random normalised latents of ``frames`` frames at ``height`` x
    ``width`` with ``stages`` (anything with ``decode_to_file``: a pipeline, ``_Stages``) straight into an mp4 in
    ``folder``. Returns the figures the module docstring lists: ``peak_during_bytes`` (this process's RSS while
    decoding and writing, sampled), ``peak_host_bytes`` (the process's lifetime peak: this length's alone in a fresh
    process), ``compiled_window_bytes`` (the window program: temporaries + arguments + outputs, weights excluded)."""
    cfg = stages.vae.config
    if (frames - 1) % cfg.temporal_ratio or height % cfg.spatial_ratio or width % cfg.spatial_ratio:
        raise ValueError(f"{frames} frames of {width}x{height}: need frames = {cfg.temporal_ratio} k + 1 and sides "
                         f"multiples of {cfg.spatial_ratio}.")
    shape = (1, (frames - 1) // cfg.temporal_ratio + 1, height // cfg.spatial_ratio, width // cfg.spatial_ratio,
             cfg.latent_channels)
    latents = jax.block_until_ready(jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32))
    window = window or stream_window_latent_frames(cfg, shape, stages.vae.dtype)
    call = dict(decode_timestep=0.05, key=jax.random.PRNGKey(1), window_latent_frames=window)
    path = os.path.join(folder, f"long_{frames}.mp4")
    before = _status_bytes("self", "VmRSS")
    start = time.perf_counter()
    with PeakSampler() as sampler:
        stages.decode_to_file(latents, path, fps=25, **call)
    seconds = time.perf_counter() - start
    peak_host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stats = jax.local_devices()[0].memory_stats() or {}
    file_bytes = os.path.getsize(path)
    os.remove(path)
    with dry_run(compile=True) as run:  # the window program's compiled memory (after the peaks above were read)
        list(stages.decode_video_stream(latents, **call))
    record = next(r for r in run.records if r.detail == "streamed window")
    plan = plan_windows(shape[1], window, 2, cfg.temporal_ratio)
    return dict(frames=frames, height=height, width=width, windows=len(plan.starts), window_frames=plan.window_frames,
                seconds=seconds, peak_host_bytes=peak_host, peak_during_bytes=sampler.peak, host_before_bytes=before,
                added_host_bytes=sampler.peak - before, peak_ffmpeg_bytes=sampler.ffmpeg_peak,
                device_peak_bytes=stats.get("peak_bytes_in_use"),
                compiled_window_bytes=record.memory_bytes - record.parameter_bytes,
                compiled_window_temporary_bytes=record.temporary_bytes, file_bytes=file_bytes,
                backend=jax.default_backend())


def measure_here(frames: int, height: int, width: int, vae: str, dtype: str, window: int | None,
                 folder: str) -> dict:
    """``measure_stages`` with the VAE of ``--vae`` built in this process (a fresh one: its peaks are this
    length's)."""
    return dict(measure_stages(_Stages(*_build_vae(vae, dtype)), frames, height, width, folder, window), vae=vae,
                dtype=dtype)


def measure(frames: int, height: int, width: int, vae: str = "tiny", dtype: str = "float32",
            window: int | None = None, timeout_s: float = 3600) -> dict:
    """``measure_here`` in a fresh Python process (so that its peaks are this length's alone)."""
    with tempfile.TemporaryDirectory() as folder:
        cmd = [sys.executable, "-m", "benchmarks.bench_long_video", "--child", "--frames", str(frames),
               "--height", str(height), "--width", str(width), "--vae", vae, "--dtype", dtype, "--folder", folder]
        if window is not None:
            cmd += ["--window", str(window)]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=_ROOT, timeout=timeout_s)
        if result.returncode != 0:
            raise RuntimeError(f"measuring {frames} frames failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def ratios(rows: list[dict]) -> dict[str, float | None]:
    """Each peak of the longest run over the shortest's (None where a figure is missing)."""
    short, long = rows[0], rows[-1]
    keys = ("peak_host_bytes", "peak_during_bytes", "added_host_bytes", "peak_ffmpeg_bytes", "device_peak_bytes",
            "compiled_window_bytes")
    return {k: (long[k] / short[k] if long.get(k) and short.get(k) else None) for k in keys}


def table(rows: list[dict], found: dict[str, float | None]) -> str:
    """The markdown table of the runs and their ratio row."""
    mb = lambda b: "-" if b is None else f"{b / 1e6:,.0f} MB"  # noqa: E731
    ratio = lambda k: "-" if found.get(k) is None else f"{found[k]:.3f}"  # noqa: E731
    device = "device_peak_bytes" if rows[0].get("device_peak_bytes") else "compiled_window_bytes"
    lines = ["| frames | windows x frames | seconds | peak host RSS (process) | RSS while decoding + writing (added) | "
             f"ffmpeg peak RSS | {'device peak' if device == 'device_peak_bytes' else 'window program (compiled)'} "
             "| mp4 |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['frames']} ({r['width']}x{r['height']}) | {r['windows']} x {r['window_frames']} | "
                     f"{r['seconds']:.0f} | {mb(r['peak_host_bytes'])} | {mb(r['peak_during_bytes'])} "
                     f"({mb(r['added_host_bytes'])}) | {mb(r['peak_ffmpeg_bytes'])} | {mb(r[device])} | "
                     f"{mb(r['file_bytes'])} |")
    lines.append(f"| ratio {rows[-1]['frames']} / {rows[0]['frames']} (goal <= {GOAL_RATIO}) | | | "
                 f"{ratio('peak_host_bytes')} | {ratio('peak_during_bytes')} ({ratio('added_host_bytes')}) | "
                 f"{ratio('peak_ffmpeg_bytes')} | {ratio(device)} | |")
    return "\n".join(lines)


def run(lengths=LENGTHS, height: int = 512, width: int = 768, vae: str = "tiny", dtype: str = "float32",
        window: int | None = None, log=print) -> tuple[list[dict], dict[str, float | None]]:
    """Every length in its own process, then the ratios of the peaks (longest over shortest)."""
    rows = []
    for frames in lengths:
        rows.append(measure(frames, height, width, vae, dtype, window))
        log(f"{frames} frames: {rows[-1]['seconds']:.0f} s, peak host RSS {rows[-1]['peak_host_bytes'] / 1e6:.0f} MB")
    return rows, ratios(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default=",".join(map(str, LENGTHS)), help="comma-separated lengths (8 k + 1)")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--vae", default="tiny", help="tiny, a VAE_PRESETS name (random weights), or a checkpoint")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--window", type=int, default=None, help="window_latent_frames (default: the memory rule)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.frames.split(",")]
    if args.child:
        print(json.dumps(measure_here(lengths[0], args.height, args.width, args.vae, args.dtype, args.window,
                                      args.folder)))
        return 0
    if args.vae == "tiny":
        print("VAE: ltx_jax.tiny_random.TINY_VAE (random weights, float32): the real VAE at 768x512 takes hours on a "
              "2-core CPU; on a GPU pass --vae ltx-video-0.9.5 (or a checkpoint).")
    # This process never starts a backend (on a GPU it would take the memory the measuring processes need).
    rows, found = run(lengths, args.height, args.width, args.vae, args.dtype, args.window)
    print(table(rows, found))
    if rows[0]["backend"] == "cpu" and args.vae != "tiny":
        print(f"note: the {args.vae} VAE on a CPU takes hours at 768x512; --vae tiny measures the same streaming in "
              "minutes.")
    device_key = "device_peak_bytes" if found.get("device_peak_bytes") else "compiled_window_bytes"
    worst = max(found["peak_host_bytes"], found[device_key] or 0)
    print(f"goal: peaks {rows[-1]['frames']} / {rows[0]['frames']} frames <= {GOAL_RATIO}: "
          f"{'met' if worst <= GOAL_RATIO else 'missed'} (host {found['peak_host_bytes']:.3f}, device "
          f"{found[device_key] or float('nan'):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

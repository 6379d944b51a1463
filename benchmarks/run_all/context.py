"""What a section gets (``Context``: sizes, recorder, deadline, optional torch) and the small helpers it times and
compares with."""

from __future__ import annotations

import importlib
import math
import statistics
import time
from typing import Any, Callable

import numpy as np

from benchmarks.timing import sample_times

from .hardware import short_error
from .results import Recorder
from .sizes import Sizes


class Context:
    """What a section gets: its sizes, a recorder, its deadline, and lazy optional torch / diffusers."""

    def __init__(self, sizes: Sizes, rec: Recorder, deadline: float | None, use_torch: bool, log=print):
        import jax

        self.sizes = sizes
        self.rec = rec
        self.deadline = deadline
        self.use_torch = use_torch
        self.log = log
        self.on_gpu = jax.default_backend() == "gpu"

    # time
    def time_left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.time()

    def has_time(self, seconds: float, what: str) -> bool:
        left = self.time_left()
        if left >= seconds:
            return True
        self.rec.skip(what, f"time budget: {left:.0f} s left in this section, needs about {seconds:.0f} s")
        return False

    # torch
    def torch(self, what: str, need: tuple[str, ...] = ("diffusers",)):
        """torch (with the extra packages in ``need`` importable) on the device JAX uses, or None (skip recorded)."""
        reason = None
        if not self.use_torch:
            reason = "--no-torch"
        else:
            try:
                # deferred: torch (the reference) is optional, loaded only where used
                import torch
            except Exception as e:  # noqa: BLE001
                reason = f"torch not importable: {short_error(e)}"
            else:
                if self.on_gpu and not torch.cuda.is_available():
                    reason = "torch has no CUDA here (JAX runs on the GPU): a CPU torch would not be comparable"
                for mod in need:
                    if reason is None:
                        try:
                            __import__(mod)
                        except Exception as e:  # noqa: BLE001
                            reason = f"{mod} not importable: {short_error(e)}"
        if reason is not None:
            self.rec.skip(what, reason)
            return None
        # deferred: torch (the reference) is optional, loaded only where used
        import torch

        return torch

    def torch_device(self) -> str:
        return "cuda" if self.on_gpu else "cpu"


def first_call_name(base: str, stage: str | None = None) -> str:
    """The case name of a first call's own row, ``"<base>, first call (compiles)[: <stage>]"``, next to the median
    row ``"<base>[: <stage>]"``. A first call traces, compiles and runs once: what a user waits for first. Its row
    holds that time in ``ours_ms`` (diffusers' first call in ``torch_ms`` where timed) and ``first_call: True``."""
    return f"{base}, first call (compiles)" + (f": {stage}" if stage else "")


def timed(fn: Callable[[], Any], warmup: int, repeats: int, block: Callable[[Any], Any]) -> list[float]:
    """Seconds of each of ``repeats`` blocked calls after ``warmup`` (benchmarks/timing.py)."""
    return sample_times(lambda: block(fn()), repeats, warmup)


def jax_block(x):
    import jax

    return jax.block_until_ready(x)


def rel_diff(ours, ref) -> float:
    """max |ours - ref| / max |ref|, in float32."""
    ours, ref = np.asarray(ours, np.float32), np.asarray(ref, np.float32)
    return float(np.max(np.abs(ours - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def psnr(a, b, data_range: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(data_range**2 / mse)


def add_timing(row: dict, prefix: str, times: list[float]) -> float:
    med = statistics.median(times)
    row[f"{prefix}_ms"] = med * 1e3
    row[f"{prefix}_times_ms"] = [t * 1e3 for t in times]
    return med


def load_bench(name: str):
    """A module of benchmarks/ (bench_transformer, bench_text_encoder, ...), imported as ``benchmarks.<name>``."""
    return importlib.import_module(f"benchmarks.{name}")


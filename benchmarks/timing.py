"""Timing helpers shared by the benchmark scripts: warm up first, then time each call (callers block on results)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def sample_times(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls; ``fn`` must block on its result."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` untimed calls."""
    return statistics.median(sample_times(fn, repeats, warmup))

"""Timing helpers shared by the benchmark scripts: warm up first, then time each call (callers block on results);
and the JSON results file."""

from __future__ import annotations

import json
import os
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


def write_json(path: str | None, results: Any) -> None:
    """``results`` as indented JSON at ``path`` (nothing when None), written whole or not at all."""
    if not path:
        return
    with open(path + ".partial", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".partial", path)

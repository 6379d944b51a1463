"""What a pipeline call reports besides its output: the time of each stage, and the error a stage raises when NaN or
Inf appears."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator


class NonFiniteError(RuntimeError):
    """NaN or Inf appeared in a stage's output (the message names the stage, and the step for denoising)."""


class StageTimings:
    """Seconds of each stage of the last call, in the order they ran (each stage blocks on its result before its
    clock stops); ``total`` is the whole call. Read as ``timings.denoising`` or ``timings.stages["denoising"]``."""

    def __init__(self):
        self.stages: dict[str, float] = {}
        self.total = 0.0

    def __getattr__(self, name: str) -> float:
        stages = self.__dict__.get("stages", {})
        if name in stages:
            return stages[name]
        raise AttributeError(f"no stage {name!r} in the last call (stages: {', '.join(stages) or 'none'})")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Times a stage (``with timings.stage("decoding"): ...``; a stage run twice in one call adds up)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        """{stage: seconds, ..., "total": seconds}."""
        return {**self.stages, "total": self.total}

    def __str__(self) -> str:
        parts = [f"{name.replace('_', ' ')} {seconds:.2f} s" for name, seconds in self.stages.items()]
        return ", ".join(parts + [f"total {self.total:.2f} s"])

"""Progress of a compiled denoising loop, reported to the host without a global sink.

The loop carries an int32 token (a traced input, so a new bar never recompiles) and calls back with (token, step);
``reporting(sink)`` registers ``sink`` under a fresh token for the duration of a ``with`` block, so two pipelines
(or threads) report to their own bars.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from typing import Callable, Iterator

_sinks: dict[int, Callable[[int], None]] = {}
_lock = threading.Lock()
_tokens = itertools.count(1)
NO_PROGRESS = 0  # the token of a run nobody watches


@contextlib.contextmanager
def reporting(sink: Callable[[int], None] | None) -> Iterator[int]:
    """Yields the token a loop's ``SamplingInputs.progress_token`` must carry for ``sink(step_index)`` to be called."""
    if sink is None:
        yield NO_PROGRESS
        return
    with _lock:
        token = next(_tokens)
        _sinks[token] = sink
    try:
        yield token
    finally:
        with _lock:
            _sinks.pop(token, None)


def report(token, step_index) -> None:
    """Host side of the loop's callback."""
    sink = _sinks.get(int(token))
    if sink is not None:
        sink(int(step_index))


class StepBar:
    """A tqdm bar (when enabled) to pass to ``reporting``."""

    def __init__(self, total: int, enabled: bool, desc: str = "denoising"):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", leave=False)

    def __call__(self, step_index: int) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "StepBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

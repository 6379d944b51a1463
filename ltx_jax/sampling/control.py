"""The host side of a running denoising loop: progress, stop requests, and an interruptible wait.

Each step of the compiled loop calls back to the host once, through an ordered ``io_callback`` that carries the run's
token (a traced int32, so a new control never recompiles) and the step index; the host reports progress and answers
whether to stop, and the loop's ``while`` condition reads the answer. ``controlled(control)`` registers a
``RunControl`` under a fresh token for a ``with`` block, so two pipelines (or threads) each have their own.

``run(fn, control)`` runs ``fn`` (dispatch, compilation and execution of a program: on a CPU the execution may
happen inside the call) in a worker thread while the calling thread waits on an event. On a stop request it asks the
loop to stop, lets it finish the step it is in, and raises ``Interrupted`` naming the stage and the step. The request
is either Ctrl-C as ``KeyboardInterrupt`` (Python's own handler) or the command line's record
(``ltx_jax.interrupts``), which the loop's host callback reads too.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import signal
import threading
from typing import Any, Callable, Iterator

import jax
import numpy as np
from tqdm.auto import tqdm

from ltx_jax import interrupts
from ltx_jax.interrupts import Interrupted

NO_CONTROL = 0  # the token of a run nobody watches


class RunControl:
    """What the host knows of one running loop: the steps done, a progress sink, a stop request."""

    def __init__(self, on_step: Callable[[int], None] | None = None):
        self.on_step = on_step
        self.steps_done = 0
        self.stop_requested = False

    def request_stop(self) -> None:
        self.stop_requested = True

    def poll(self, step_index: int) -> bool:
        self.steps_done = step_index + 1
        if self.on_step is not None:
            self.on_step(step_index)
        return self.stop_requested or interrupts.requested() is not None


_controls: dict[int, RunControl] = {}
_lock = threading.Lock()
_tokens = itertools.count(1)


@contextlib.contextmanager
def signal_handler(signum: int, handler) -> Iterator[None]:
    """``handler`` for ``signum`` while the block runs, then the one before. A handler installed outside Python
    (``signal.signal`` returns None for it) cannot be put back: the default action is, rather than failing."""
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def controlled(control: RunControl) -> Iterator[np.int32]:
    """Yields the token a loop's ``SamplingInputs.control_token`` must carry to report to ``control``."""
    with _lock:
        token = next(_tokens)
        _controls[token] = control
    try:
        yield np.int32(token)
    finally:
        with _lock:
            _controls.pop(token, None)


def poll(token, step_index) -> np.bool_:
    """Host side of the loop's per-step callback: True asks the loop to stop."""
    control = _controls.get(int(token))
    return np.bool_(control is not None and control.poll(int(step_index)))


def run(fn: Callable[[], Any], control: RunControl | None = None, *, stage: str,
        total_steps: int | None = None) -> Any:
    """``jax.block_until_ready(fn())`` in a worker thread, interruptible by Ctrl-C (``KeyboardInterrupt``, or any
    exception a signal handler raises in the calling thread) and by a stop request (``ltx_jax.interrupts``).

    On interruption the loop behind ``control`` is asked to stop (it finishes its current step first, or stops at its
    first if it had not started) and ``Interrupted`` is raised; without a control (a decode, say) the wait ends at once
    and the program finishes in the background. A request made before the call raises at once.
    """
    interrupts.check(stage)
    done = threading.Event()
    outcome: list = []

    def block():
        try:
            outcome.append(jax.block_until_ready(fn()))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append(e)
        finally:
            done.set()

    # The worker sees the caller's context variables (a dry run: ``ltx_jax.programs``).
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(block,), name=f"ltx_jax-wait-{stage}", daemon=True).start()
    signum = None
    try:
        while signum is None and not done.wait(0.1):
            signum = interrupts.requested()
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
    if signum is None:
        signum = interrupts.requested()  # also when the loop read it first and stopped early
    if signum is not None:
        where = stage
        if control is not None:
            control.request_stop()
            done.wait()  # at most one more step
            where = f"{stage} after step {control.steps_done}" + (f" of {total_steps}" if total_steps else "")
        raise Interrupted(f"{interrupts.describe(signum)} during {where}", signum) from None
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


class StepBar:
    """A tqdm bar (when enabled), usable as a ``RunControl``'s ``on_step``."""

    def __init__(self, total: int, enabled: bool, desc: str = "denoising"):
        self.bar = None
        if enabled:
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

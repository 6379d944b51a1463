"""Ctrl-C and SIGTERM on the command line: the signal only records a stop request, and each stage reads it.

A handler that raises lands wherever the main thread happens to be. That can be inside the import of a C extension,
which then fails to initialise, or inside JAX's garbage-collection callback, which swallows the exception (the run
then goes on and writes its file). It can also land between a train step that donated its state and the assignment
of the new state, and the save that follows then fails. So from the first line of the command line (``handled``), SIGINT
and SIGTERM only record which signal came. The run reads the record where stopping is safe and raises
``Interrupted`` there: the compiled denoising loop between two steps (its host callback), the wait for every program
(``sampling.control.run``), the weight reader between two parameters, the train loop between two steps, and the
command line between its stages. Only inside ``raising()``, around a write that removes its partial file when
interrupted, does the handler raise at once.

This module imports nothing heavy, so the command line installs it before anything else.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested: int | None = None  # the first signal received, until the run that installed the handlers ends
_armed = False  # inside raising(): the next signal raises at once
_original: dict[int, object] = {}  # the handlers install() replaced
_agreement = None  # several processes (ltx_jax.distributed): this process's request -> the one all agree on


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (SIGINT) or SIGTERM. ``signum`` says which; the message says where it stopped."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


def describe(signum: int) -> str:
    """How a stop by ``signum`` is reported: "interrupted" (Ctrl-C) or "terminated (SIGTERM)"."""
    return "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"


def requested() -> int | None:
    """The signal that asked the run to stop, or None (always None where no handler was installed)."""
    return _requested


def set_agreement(agree) -> None:
    """``agree(request) -> request``: how ``agreed`` combines this process's request with the others' (set by
    ``ltx_jax.distributed`` when the process joins a group; None for one process)."""
    global _agreement
    _agreement = agree


def agreed(stop: bool = False) -> int | None:
    """The stop request every process of the run agrees on: any process's (the first signal it received), or None.
    ``stop``: this process asks to stop without a signal (reported as SIGINT). With several processes every one must
    call it at the same points in the same order (the training loop's steps, the denoising steps), and a request of
    another process becomes this one's (``requested()``), so every stage after it stops here too; with one process it
    is ``requested()`` (or SIGINT for ``stop``)."""
    global _requested
    mine = _requested or (signal.SIGINT if stop else None)
    if _agreement is None:
        return mine
    everyone = _agreement(mine)
    if everyone is not None and _requested is None and _original:  # handlers installed: the run reads it
        _requested = everyone
    return everyone


def check(stage: str | None = None) -> None:
    """Raises ``Interrupted`` if a stop was requested. ``stage`` names the stage for the message."""
    if _requested is not None:
        raise Interrupted(describe(_requested) + (f" during {stage}" if stage else ""), _requested)


def _record(signum, frame) -> None:
    global _requested, _armed
    if _requested is None:
        _requested = signum
    if _armed:
        _armed = False  # once: the cleanup the exception starts is not interrupted in turn
        raise Interrupted(describe(signum), signum)


def install() -> None:
    """From now on, SIGINT and SIGTERM only record the request. A signal that is ignored stays ignored (``nohup``, or
    a job that a non-interactive shell starts in the background with SIGINT ignored)."""
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current is _record or current == signal.SIG_IGN:
            continue
        _original[signum] = current
        signal.signal(signum, _record)


def uninstall() -> None:
    """Puts back the handlers ``install`` replaced. A handler set outside Python, which cannot be put back, becomes
    the default action."""
    for signum, previous in _original.items():
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)
    _original.clear()


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """``install`` for the block (the command line's ``main``). The outermost block starts with no request and puts
    the handlers back at its end, so a second ``main`` in one process starts afresh. Inside a process that installed
    the handlers at its start, the block keeps the requests already recorded."""
    global _requested
    outermost = not _original
    if outermost:
        _requested = None
    install()
    try:
        yield
    finally:
        if outermost:
            uninstall()
            _requested = None


@contextlib.contextmanager
def raising(stage: str | None = None) -> Iterator[None]:
    """Inside the block, a signal raises ``Interrupted`` at once. Use it only for work that cleans up after itself
    when interrupted, such as an atomic write. A request made before the block raises on entry."""
    global _armed
    check(stage)
    _armed = True
    try:
        yield
    finally:
        _armed = False

"""Several processes (one per host, or several on one machine): joining JAX's process group, agreeing on a stop, and
ending cleanly when another process is lost.

A run over several processes is JAX's multi-controller model: every process runs the same program on its own
devices, ``jax.distributed.initialize`` joins them into one group (a coordination service in process 0), and the
mesh spans every process's devices. This module is a thin layer over that mechanism:

- ``initialize()`` joins the group the environment describes: ``ltx_jax.launch``'s variables (``ENV_*`` below), or
  a cluster's (SLURM, Open MPI: ``jax.distributed.initialize()`` reads them) when ``LTX_JAX_DISTRIBUTED=1``. It sets
  the heartbeat and join timeouts (``DEFAULT_HEARTBEAT_TIMEOUT_S``, ``DEFAULT_INIT_TIMEOUT_S``) and, on CPUs, gloo
  collectives. A process that cannot join (a wrong coordinator address, a process count that does not match) gets
  one line after the join timeout, not a hang.
- ``agreed(signal)``: the stop request every process agrees on (any process's), through the coordination service's
  key-value store, at points every process reaches in the same order (the training loop's steps).
- Under ``ltx_jax.launch`` a watchdog thread reads a pipe from the launcher; when the launcher closes it (another
  process was lost, or the launcher itself died), the process removes the temporaries of its unfinished writes
  (``ltx_jax.files``) and exits at once with ``EXIT_ABORTED``, even inside a collective that will never complete.
  Without the launcher, JAX's coordination service ends the others when a process misses heartbeats for the
  heartbeat timeout (its own fatal error message, which names the task).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import sys
import threading
from typing import Iterator

from ltx_jax import files, interrupts

# JAX is imported inside the functions: the command line imports this module before its flags are checked, and
# JAX loads only after that.

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # read by jax.distributed.initialize itself
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_CLUSTER = "LTX_JAX_DISTRIBUTED"  # "1": join the group a cluster's environment describes (SLURM, Open MPI)
ENV_HEARTBEAT = "LTX_JAX_HEARTBEAT_TIMEOUT"
ENV_INIT = "LTX_JAX_INIT_TIMEOUT"
ENV_LAUNCH_FD = "LTX_JAX_LAUNCH_FD"  # the launcher's pipe: closed = stop now

DEFAULT_HEARTBEAT_TIMEOUT_S = 30  # JAX's default is 100 s: a lost process then stalls the others for that long
DEFAULT_INIT_TIMEOUT_S = 120  # JAX's default is 300 s; a wrong address or process count waits this long to say so
AGREEMENT_TIMEOUT_S = 1800  # another process is at most one step behind; a lost one is caught by the heartbeat
JOIN_MARGIN_S = 5  # JAX's own join timeout is this much longer than ours, so ours speaks first
EXIT_JOIN_FAILED = 69  # the group did not form (EX_UNAVAILABLE)
EXIT_ABORTED = 75  # the launcher stopped this process because another was lost (EX_TEMPFAIL)

_agreements = itertools.count()
_barriers = itertools.count()


class DistributedError(OSError):
    """This process could not join the process group; the message says what to check."""


def requested() -> bool:
    """Whether the environment asks for a multi-process run (the launcher's variables or ``LTX_JAX_DISTRIBUTED``)."""
    return bool(os.environ.get(ENV_NUM_PROCESSES) or os.environ.get(ENV_CLUSTER) == "1")


def _int_env(name: str, default: int | None = None) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}={value!r} is not an integer.") from None


def initialize() -> bool:
    """Joins the process group the environment describes, before anything touches a device; returns False (and
    does nothing) for a single-process run. Idempotent. Raises ``DistributedError`` with one line when the group
    cannot be formed within the join timeout."""
    if not requested():
        return False
    # deferred: jax loads only after the flags are checked
    import jax
    from jax._src import distributed as jax_distributed

    if jax_distributed.global_state.client is not None:
        return True
    heartbeat = _int_env(ENV_HEARTBEAT, DEFAULT_HEARTBEAT_TIMEOUT_S)
    init_timeout = _int_env(ENV_INIT, DEFAULT_INIT_TIMEOUT_S)
    count, index = _int_env(ENV_NUM_PROCESSES), _int_env(ENV_PROCESS_ID)
    address = os.environ.get(ENV_COORDINATOR)
    if os.environ.get(ENV_CLUSTER) != "1":
        if address is None or index is None:
            raise DistributedError(f"{ENV_NUM_PROCESSES} is set but {ENV_COORDINATOR} or {ENV_PROCESS_ID} is not: "
                                   "start the processes with python -m ltx_jax.launch, or set all three.")
        if not 0 <= index < count:
            raise DistributedError(f"{ENV_PROCESS_ID}={index} is not within 0 .. {ENV_NUM_PROCESSES}-1 = {count - 1}.")
    # CPU devices of several processes talk through gloo (GPUs through NCCL, whatever this says)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    where = address or "the cluster's coordinator"
    # JAX aborts the process (a fatal error and a stack trace) when the group does not form within its join timeout;
    # this timer says why in one line a little before that, and exits.
    timer = threading.Timer(init_timeout, _join_failed, args=(address, count, index, init_timeout))
    timer.daemon = True
    timer.start()
    try:
        jax.distributed.initialize(address, count, index, initialization_timeout=init_timeout + JOIN_MARGIN_S,
                                   heartbeat_timeout_seconds=heartbeat)
    except Exception as e:  # noqa: BLE001 - JAX raises XlaRuntimeError / ValueError / RuntimeError here
        reason = " ".join(str(e).split())
        raise DistributedError(f"process {index} could not join the process group at {where}: {reason[:300]}") \
            from None
    finally:
        timer.cancel()
    # JAX's preemption notifier took SIGTERM over in C (a stop it would only report through its own sync points):
    # Python's handler goes back, so SIGTERM stops the run as it does in one process (ltx_jax.interrupts).
    handler = signal.getsignal(signal.SIGTERM)
    if handler is not None:
        signal.signal(signal.SIGTERM, handler)
    interrupts.set_agreement(agreed)
    _start_watchdog()
    return True


def _reachable(address: str | None) -> bool:
    """Whether something accepts TCP connections at ``address`` ("host:port")."""
    if not address:
        return False
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def _join_failed(address: str | None, count: int | None, index: int | None, timeout: int) -> None:
    """The join timed out: one line (why, what to check), then exit ``EXIT_JOIN_FAILED`` before JAX aborts."""
    where = address or "the cluster's coordinator"
    if index != 0 and not _reachable(address):
        why = (f"nothing answers at {where}: check the coordinator address (process 0's host and port) and that "
               "process 0 is running")
    else:
        why = (f"not all {count or 'the'} processes arrived: check that every process was started with the same "
               "process count and a distinct process id, and that none failed before joining")
    print(f"error: process {index} could not join the {count or '?'}-process group at {where} within {timeout} s: "
          f"{why}.", file=sys.stderr, flush=True)
    os._exit(EXIT_JOIN_FAILED)


def process_index() -> int:
    """This process's index (0 without a process group); imports jax only when a group was joined."""
    if "jax" not in sys.modules:
        return 0
    import jax  # deferred: jax loads only after the flags are checked (and is loaded here already)

    return jax.process_index()


def is_main() -> bool:
    """Whether this process reports and writes: process 0 (the only one in a single-process run)."""
    return process_index() == 0


def agreed(signum: int | None) -> int | None:
    """The first stop request of any process (``signum``: this process's, or None), or None if none asked. Every
    process must call it at the same points in the same order; with one process it returns ``signum``."""
    # deferred: jax loads only after the flags are checked (and is loaded here already)
    import jax
    from jax._src import distributed as jax_distributed

    if jax.process_count() == 1:
        return signum

    client = jax_distributed.global_state.client
    round_ = next(_agreements)
    client.key_value_set(f"ltx_jax/stop/{round_}/{jax.process_index()}", str(signum or 0))
    answers = [int(client.blocking_key_value_get(f"ltx_jax/stop/{round_}/{p}", AGREEMENT_TIMEOUT_S * 1000))
               for p in range(jax.process_count())]
    return next((a for a in answers if a), None)


def barrier(name: str) -> None:
    """Waits until every process reaches this barrier (no-op for one process). Every process must pass the same
    barriers in the same order (a count makes each name unique)."""
    # deferred: jax loads only after the flags are checked (and is loaded here already)
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() > 1:

        multihost_utils.sync_global_devices(f"ltx_jax-{next(_barriers)}-{name}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[str]:
    """``ltx_jax.files.atomic_dir`` for a folder that every process writes into (Orbax's multi-host save: each
    process its shards, process 0 the metadata): the temporary folder has a name every process knows
    (``.partial-<name>.shared``), process 0 makes it and publishes it once every process has finished; only process
    0 should write files of its own there. One process: ``files.atomic_dir`` itself."""
    import jax  # deferred: jax loads only after the flags are checked (and is loaded here already)

    if jax.process_count() == 1:
        with files.atomic_dir(path, overwrite=overwrite) as tmp:
            yield tmp
        return
    path = os.path.abspath(os.fspath(path))
    tmp = os.path.join(os.path.dirname(path), f"{files.PARTIAL_PREFIX}{os.path.basename(path)}.shared")
    if is_main():
        if not overwrite and os.path.lexists(path):
            raise files._exists_error(path, meanwhile=False)
        files._remove(tmp)  # what a killed run left
        os.makedirs(tmp)
    files._temporary(tmp)
    barrier(f"start {path}")
    try:
        yield tmp
        barrier(f"written {path}")
        if is_main():
            files.publish_dir(tmp, path, overwrite=overwrite)
        barrier(f"published {path}")
    except BaseException:
        if is_main():
            files._remove(tmp)
        raise


def _start_watchdog() -> None:
    fd = _int_env(ENV_LAUNCH_FD)
    if fd is None:
        return

    def watch():
        try:
            while os.read(fd, 64):
                pass
        except OSError:
            pass
        files.remove_temporaries()
        os._exit(EXIT_ABORTED)

    threading.Thread(target=watch, name="ltx_jax-launch-watchdog", daemon=True).start()

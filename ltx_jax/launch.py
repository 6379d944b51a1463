"""Several processes on one machine: ``python -m ltx_jax.launch --processes N [options] -- COMMAND``.

    python -m ltx_jax.launch --processes 2 --cpu_devices 2 -- generate --model tiny-random --prompt "a fox" \\
        --mesh data=2,fsdp=2 --output fox.mp4                   # 4 CPU devices over 2 processes
    python -m ltx_jax.launch --processes 2 --gpus_per_process 4 -- train --data latents/ --model LTX-Video/ \\
        --output run/ --mode full --mesh fsdp=8                 # 8 GPUs as 2 processes of 4
    python -m ltx_jax.launch --processes 2 -- python my_script.py   # a script that calls
                                                                     # ltx_jax.distributed.initialize() first

COMMAND is an ``ltx_jax`` command (generate, train, ...), run as ``python -m ltx_jax COMMAND``, or any program. The
launcher is a thin layer over JAX's own mechanism: it starts the processes with the coordinator address
(127.0.0.1 and a free port), the process count and each one's index in the environment
(``ltx_jax.distributed``'s ``ENV_*``), which ``jax.distributed.initialize`` then joins. On a cluster the same
command runs without it: ``srun`` / ``mpirun`` start one process per host and ``LTX_JAX_DISTRIBUTED=1`` makes the
command line call ``jax.distributed.initialize()``, which reads SLURM's or Open MPI's environment.

- Output: process 0's passes through; the others' is kept and shown (prefixed) only if a process fails.
- Ctrl-C and SIGTERM go to every process, which stop together (a training run saves its checkpoint); the exit code
  is process 0's (130 / 143).
- A process that ends with an error or is killed: one line naming it, then the others are stopped at once through
  their watchdog pipe (``ltx_jax.distributed``): they remove the temporaries of unfinished writes and exit, even from
  inside a collective. Processes still running ``--grace_s`` seconds after process 0 ended, or after being told to
  stop, are killed.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

from ltx_jax import distributed

COMMANDS = ("generate", "check", "train", "preprocess", "compare")
# gloo (CPU collectives) announces each connection on the console, from several threads at once (lines interleave);
# the run's own output stays readable without them
_GLOO_MARKS = (b"[Gloo]", b"connected peer ranks")


def _gloo(line: bytes) -> bool:
    return any(mark in line for mark in _GLOO_MARKS)


def _maybe_gloo(partial: bytes) -> bool:
    """Whether an unfinished line may become one of gloo's (held back until its end)."""
    return _gloo(partial) or b"[Gloo]".startswith(partial[:6]) or b"Rank" in partial or b"connected" in partial
TAIL_LINES = 40
KILL_AFTER_S = 5.0  # a process told to stop that is still there this much later is killed
SETTLE_S = 3.0  # how long a failure of process k > 0 waits for process 0 to end the same way (the same user error)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv and any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        raise SystemExit(0)
    if "--" not in argv:
        print("error: give the command after --, e.g. python -m ltx_jax.launch --processes 2 --cpu_devices 2 -- "
              "generate --model tiny-random --prompt x --mesh data=2,fsdp=2", file=sys.stderr)
        raise SystemExit(2)
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m ltx_jax.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, required=True, help="processes to start (>= 1)")
    parser.add_argument("--cpu_devices", type=int, default=None,
                        help="run on the CPU with this many host devices per process (gloo collectives)")
    parser.add_argument("--gpus_per_process", type=int, default=None,
                        help="give process i the GPUs i*G .. i*G+G-1 (JAX_LOCAL_DEVICE_IDS)")
    parser.add_argument("--port", type=int, default=None, help="the coordinator's port (default: a free one)")
    parser.add_argument("--heartbeat_timeout", type=int, default=distributed.DEFAULT_HEARTBEAT_TIMEOUT_S,
                        help="seconds without a heartbeat before JAX declares a process lost")
    parser.add_argument("--init_timeout", type=int, default=distributed.DEFAULT_INIT_TIMEOUT_S,
                        help="seconds the processes wait for each other at the start")
    parser.add_argument("--grace_s", type=float, default=10.0,
                        help="seconds a process may take to end once process 0 ended or it was told to stop")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if args.processes < 1:
        parser.error(f"--processes {args.processes}: at least 1")
    for name in ("cpu_devices", "gpus_per_process"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: at least 1")
    if not command:
        parser.error("no command after --")
    return args, command


def child_environment(args, index: int, port: int, fd: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({distributed.ENV_COORDINATOR: f"127.0.0.1:{port}", distributed.ENV_NUM_PROCESSES: str(args.processes),
                distributed.ENV_PROCESS_ID: str(index), distributed.ENV_HEARTBEAT: str(args.heartbeat_timeout),
                distributed.ENV_INIT: str(args.init_timeout), distributed.ENV_LAUNCH_FD: str(fd)})
    env.pop(distributed.ENV_CLUSTER, None)
    if args.cpu_devices is not None:
        flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", "")).strip()
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.cpu_devices}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    if args.gpus_per_process is not None:
        g = args.gpus_per_process
        env["JAX_LOCAL_DEVICE_IDS"] = ",".join(str(index * g + k) for k in range(g))
    return env


class _Process:
    def __init__(self, index: int, command: list[str], env: dict, read_fd: int, write_fd: int):
        self.index, self.write_fd = index, write_fd
        self.popen = subprocess.Popen(command, env=env, pass_fds=(read_fd,), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True)  # signals come from here
        os.close(read_fd)
        self.tail: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
        self.code: int | None = None
        self.told_to_stop = False
        self.last = b""  # the last whole line it wrote (gloo's lines come with an empty one after them)

    def stop_now(self) -> None:
        """Closes the watchdog pipe: the process removes its temporaries and exits (``EXIT_ABORTED``)."""
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None
            self.told_to_stop = True


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _relay(processes: list[_Process], done: threading.Event) -> None:
    """Copies process 0's output through (without gloo's connection lines) and keeps the others' last lines."""
    selector = selectors.DefaultSelector()
    for p in processes:
        for stream, sink in ((p.popen.stdout, sys.stdout.buffer), (p.popen.stderr, sys.stderr.buffer)):
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ, (p, sink))
    pending: dict = {}
    while selector.get_map():
        for key, _ in selector.select(timeout=0.2):
            p, sink = key.data
            try:
                chunk = os.read(key.fileobj.fileno(), 65536)
            except BlockingIOError:
                continue
            if not chunk:
                selector.unregister(key.fileobj)
                chunk = pending.pop(key.fileobj, b"")
                if chunk and p.index == 0:
                    sink.write(chunk)
                    sink.flush()
                elif chunk:
                    p.tail.append(chunk)
                continue
            data = pending.pop(key.fileobj, b"") + chunk
            *lines, rest = data.split(b"\n")
            kept = []
            for line in lines:
                if not _gloo(line) and not (line == b"" and _gloo(p.last)):
                    kept.append(line)
                p.last = line
            if p.index == 0:
                out = b"".join(line + b"\n" for line in kept)
                if rest and not _maybe_gloo(rest):
                    out, p.last, rest = out + rest, rest, b""  # a progress bar's line, shown as it comes
                if out:
                    sink.write(out)
                    sink.flush()
            else:
                p.tail.extend(kept)
            if rest:
                pending[key.fileobj] = rest
    done.set()


def launch(args, command: list[str]) -> int:
    if command[0] in COMMANDS:
        command = [sys.executable, "-m", "ltx_jax", *command]
    port = args.port or free_port()
    processes = []
    for index in range(args.processes):
        read_fd, write_fd = os.pipe()
        processes.append(_Process(index, command, child_environment(args, index, port, read_fd), read_fd, write_fd))
    by_pid = {p.popen.pid: p for p in processes}
    forwarded: list[int] = []

    def forward(signum, frame):
        forwarded.append(signum)
        for p in processes:
            if p.code is None:
                try:
                    p.popen.send_signal(signum)
                except ProcessLookupError:
                    pass

    # A signal ignored here (a job a non-interactive shell started in the background ignores SIGINT) is ignored by
    # the processes too, as the command line itself does.
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) != signal.SIG_IGN}
    relayed = threading.Event()
    threading.Thread(target=_relay, args=(processes, relayed), daemon=True).start()
    lost: _Process | None = None
    deadline = None
    settle: tuple[_Process, float] | None = None  # a failure of process k > 0, waiting to see if process 0 shares it
    try:
        while any(p.code is None for p in processes):
            pid, status = _wait(deadline if settle is None else min(settle[1], deadline or settle[1]))
            if pid == 0 and settle is not None and time.monotonic() >= settle[1]:
                lost, settle = settle[0], None  # process 0 did not end the same way: the failure is this one's
                _stop_others(processes, lost, args)
                deadline = time.monotonic() + args.grace_s
                continue
            if pid == 0:  # the deadline passed: whoever is left is told to stop, then killed
                left = [p for p in processes if p.code is None]
                if any(not p.told_to_stop for p in left):
                    for p in left:
                        p.stop_now()
                    deadline = time.monotonic() + KILL_AFTER_S
                else:
                    for p in left:
                        p.popen.kill()
                    deadline = None
                continue
            p = by_pid.get(pid)
            if p is None:
                continue
            p.code = os.waitstatus_to_exitcode(status)
            p.popen.returncode = p.code
            stopping = forwarded and p.code in (128 + s for s in forwarded)
            if p.index == 0 and settle is not None:
                if p.code != settle[0].code:  # another failure: the first one is the one reported
                    lost = settle[0]
                    _stop_others(processes, lost, args)
                settle = None
                deadline = time.monotonic() + args.grace_s
            elif p.code != 0 and not stopping and not p.told_to_stop and lost is None and settle is None:
                if p.index == 0 or p.code < 0:  # process 0 says why itself, unless a signal killed it
                    lost = p if p.code < 0 else None
                    _stop_others(processes, p, args, announce=p.code < 0)
                    deadline = time.monotonic() + args.grace_s
                else:
                    settle = (p, time.monotonic() + SETTLE_S)
            elif p.index == 0 and deadline is None:
                deadline = time.monotonic() + args.grace_s  # the others have this long to end too
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in processes:
            if p.write_fd is not None:
                os.close(p.write_fd)
                p.write_fd = None
    relayed.wait(5)
    if lost is not None:
        if lost.index != 0 and lost.tail and lost.code > 0:
            for line in lost.tail:
                sys.stderr.write(f"process {lost.index}: {line.decode(errors='replace')}\n")
        return lost.code if lost.code > 0 else 128 - lost.code
    first = processes[0].code
    if first == 0:
        late = [p for p in processes if p.code != 0]
        for p in late:
            print(f"launch: process {p.index} {describe_exit(p.code)} after process 0 finished", file=sys.stderr)
        return 0 if not late else 1
    return first if first > 0 else 128 - first


def _stop_others(processes: list[_Process], failed: _Process, args, announce: bool = True) -> None:
    if announce:
        print(f"launch: process {failed.index} (pid {failed.popen.pid}) {describe_exit(failed.code)}; stopping the "
              f"other {args.processes - 1} process(es)", file=sys.stderr, flush=True)
    for other in processes:
        if other.code is None:
            other.stop_now()


def _wait(deadline: float | None) -> tuple[int, int]:
    """The next child to end (pid, status), or (0, 0) once ``deadline`` (monotonic) has passed."""
    while True:
        if deadline is None:
            return os.wait()
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            return pid, status
        if time.monotonic() >= deadline:
            return 0, 0
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    args, command = parse_args(list(sys.argv[1:] if argv is None else argv))
    return launch(args, command)


if __name__ == "__main__":
    sys.exit(main())

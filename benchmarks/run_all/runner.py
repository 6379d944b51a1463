"""Running sections: one in this process (``run_section``), or each in a fresh child process under ``Run``, with its
share of the time budget, its log, and its partial results merged into the run's JSON as they arrive.

Children run as ``python -m benchmarks.run_all --child SECTION ...`` from the repository root, with the root on
PYTHONPATH (the package need not be installed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import signal
import subprocess
import sys
import time
import traceback

from .context import Context
from .hardware import device_peak_bytes, environment, short_error
from .report import derive, markdown, summary_text
from .results import SCHEMA, Recorder, json_safe, read_json, write_json_atomic
from .sections import SECTIONS
from .sizes import Sizes, resolve_sizes

BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: default outputs go here
ROOT = os.path.dirname(BENCHMARKS)  # the repository root: children run from it


def child_command(*args: str) -> list[str]:
    """``python -m benchmarks.run_all ARGS`` with this interpreter; run it with ``cwd=ROOT, env=child_env()``."""
    return [sys.executable, "-m", "benchmarks.run_all", *args]


def run_section(name: str, sizes: Sizes, rec: Recorder, deadline: float | None, use_torch: bool) -> None:
    """Runs one section in this process; status, error and peak memory go into ``rec``."""
    start = time.perf_counter()
    rec.data.update(status="running", started=datetime.datetime.now().isoformat(timespec="seconds"))
    rec.flush()
    try:
        ctx = Context(sizes, rec, deadline, use_torch, log=lambda *a: print(f"[{name}]", *a, flush=True))
        inject = os.environ.get("RUN_ALL_TEST_INJECT", "")  # test hook: "SECTION:fail" or "SECTION:hang"
        if inject.startswith(name + ":"):
            rec.case("injected partial result", ours_ms=1.0)
            if inject.endswith(":hang"):
                time.sleep(3600)
            raise RuntimeError("injected failure (RUN_ALL_TEST_INJECT)")
        SECTIONS[name](ctx)
        failed = [k for k, v in rec.data["checks"].items() if not v["ok"]]
        rec.data["status"] = "failed" if failed else "ok"
        if failed:
            rec.data["error"] = "failed checks: " + "; ".join(failed)
    except BaseException as e:  # noqa: BLE001 - recorded; KeyboardInterrupt re-raised below
        rec.data.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "error",
                        error=short_error(e), traceback=traceback.format_exc())
        if isinstance(e, KeyboardInterrupt):
            rec.data["seconds"] = time.perf_counter() - start
            rec.flush()
            raise
    rec.data["seconds"] = time.perf_counter() - start
    with contextlib.suppress(Exception):
        rec.data["peak_device_bytes"] = device_peak_bytes()
    torch_peaks = [c["torch_peak_bytes"] for c in rec.data["cases"] if c.get("torch_peak_bytes") is not None]
    rec.data["torch_peak_device_bytes"] = max(torch_peaks) if torch_peaks else None  # torch's peaks are per case
    rec.flush()


def child_main(args) -> int:
    """``--child SECTION``: one section in this (fresh) process, results written to ``--child-out`` as they come."""
    die_with_parent()
    import jax

    jax.devices()  # JAX loads its CUDA libraries (cuDNN, cuBLAS) before torch can load other versions of them
    rec = Recorder(args.child_out)
    sizes = resolve_sizes(args.sizes)
    run_section(args.child, sizes, rec, args.deadline, not args.no_torch)
    return 0


def probe_main(args) -> int:
    die_with_parent()
    write_json_atomic(args.child_out, environment())
    return 0


class Run:
    """Runs the chosen sections, keeps the JSON current, writes the markdown and the summary at the end."""

    def __init__(self, args, env: dict, sizes: Sizes, sections: list[str], start: float,
                 optional_left_out: list[str] = ()):
        self.args = args
        self.sizes = sizes
        self.sections = sections
        self.device_count = env.get("device_count") or 1
        self.budget = args.budget_s if args.budget_s is not None else sizes.budget_s
        self.start = start  # the budget counts from main()'s start, the environment probe included
        self.deadline = None if not self.budget else self.start + self.budget
        self.log_dir = os.path.splitext(os.path.abspath(args.out))[0] + ".logs"
        self.data = {
            "schema": SCHEMA, "argv": sys.argv[1:] if args.argv is None else args.argv, "environment": env,
            "sizes_name": sizes.name, "sizes": dataclasses.asdict(sizes), "budget_s": self.budget,
            "isolate": args.isolate, "torch": not args.no_torch,
            "sections": {n: {"status": "pending"} for n in sections},
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "finished": None,
            "estimated_s": sizes.total_estimate(sections, self.device_count),
            "optional_left_out": list(optional_left_out),
        }
        for n in optional_left_out:  # recorded where they would have run, so the tables show what was left out
            self.data["sections"][n] = {
                "status": "skipped", "optional": True,
                "error": f"optional: not in the default {sizes.name} run (about "
                         f"{sizes.estimate(n, self.device_count):.0f} s); --sections {n} or --sections all runs it"}
        self.data["sections"] = {n: self.data["sections"][n] for n in SECTIONS if n in self.data["sections"]}
        self.finalized = False

    def save(self) -> None:
        self.data["elapsed_s"] = time.time() - self.start
        derive(self.data)
        write_json_atomic(self.args.out, self.data)

    def section_deadline(self, index: int) -> float | None:
        """This section's share of what is left: proportional to its estimate among the sections still to run."""
        if self.deadline is None:
            return None
        left = self.deadline - time.time()
        est = [self.sizes.estimate(n, self.device_count) for n in self.sections[index:]]
        return time.time() + max(0.0, left * est[0] / sum(est))

    def run(self) -> int:
        self.save()
        print(f"run_all: {len(self.sections)} sections, sizes {self.sizes.name} ({self.sizes.dtype}), "
              f"{self.data['environment'].get('device_kind')}, budget "
              f"{'none' if not self.budget else f'{self.budget:.0f} s'} (estimated {self.data['estimated_s']:.0f} s); "
              f"JSON -> {self.args.out}", flush=True)
        if self.data["optional_left_out"]:
            print(f"run_all: optional sections left out: {', '.join(self.data['optional_left_out'])} "
                  f"(--sections all or --sections NAME runs them; see --list)", flush=True)
        if self.budget and self.data["estimated_s"] > self.budget:
            print(f"run_all: WARNING: these sections take about {self.data['estimated_s']:.0f} s, over the "
                  f"{self.budget:.0f} s budget: each gets a share of it and may be stopped or cut; pass --budget-s "
                  f"{self.data['estimated_s']:.0f} or more", flush=True)
        for i, name in enumerate(self.sections):
            deadline = self.section_deadline(i)
            if deadline is not None and deadline - time.time() < 3:
                self.data["sections"][name] = {"status": "skipped", "error": "time budget exhausted"}
                self.save()
                continue
            start = time.time()
            if self.args.isolate == "process":
                entry = self.run_child(name, deadline)
            else:
                rec = Recorder(on_change=lambda d, n=name: self._merge(n, d))
                try:
                    run_section(name, self.sizes, rec, deadline, not self.args.no_torch)
                finally:
                    self._merge(name, rec.data)
                entry = rec.data
            entry["wall_s"] = time.time() - start
            self._merge(name, entry)
            note = f": {entry.get('error')}" if entry.get("status") != "ok" and entry.get("error") else ""
            print(f"[{name}] {entry.get('status')} in {entry['wall_s']:.1f} s{note}", flush=True)
        return 0

    def _merge(self, name: str, section: dict) -> None:
        self.data["sections"][name] = json_safe(dict(section))
        self.save()

    def run_child(self, name: str, deadline: float | None) -> dict:
        os.makedirs(self.log_dir, exist_ok=True)
        child_out = os.path.join(self.log_dir, f"{name}.json")
        log_path = os.path.join(self.log_dir, f"{name}.log")
        with contextlib.suppress(OSError):
            os.unlink(child_out)
        cmd = child_command("--child", name, "--child-out", child_out, "--sizes", self.sizes.name)
        if self.args.no_torch:
            cmd.append("--no-torch")
        if deadline is not None:
            cmd += ["--deadline", repr(deadline)]
        env = child_env()
        with open(log_path, "w") as log, open(log_path, errors="replace") as follow:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                    start_new_session=True)
            self.child = proc
            last_mtime = None
            killed = None
            try:
                while proc.poll() is None:
                    time.sleep(0.5)
                    echo_progress(follow, name)
                    with contextlib.suppress(OSError):
                        mtime = os.path.getmtime(child_out)
                        if mtime != last_mtime:
                            last_mtime = mtime
                            partial = read_json(child_out)
                            if partial:
                                self._merge(name, partial)
                    if deadline is not None and time.time() > deadline + 3:  # the section had its share
                        killed = "timeout"
                        stop(proc)
            except BaseException:
                stop(proc)
                raise
            finally:
                self.child = None
            echo_progress(follow, name)
        entry = read_json(child_out) or {}
        entry["log"] = os.path.relpath(log_path, os.path.dirname(os.path.abspath(self.args.out)))
        if killed:
            entry.update(status="timeout", error=f"stopped after its share of the time budget "
                                                 f"({entry.get('status', 'no result')} when stopped)")
        elif proc.returncode != 0 or entry.get("status") in (None, "running"):
            entry.update(status="error", error=f"process exited with {proc.returncode}: {tail(log_path, 1500)}")
        return entry

    def finalize(self, reason: str | None = None) -> None:
        if self.finalized:
            return
        self.finalized = True
        if reason:
            self.data["interrupted"] = reason
            for entry in self.data["sections"].values():
                if entry.get("status") in ("pending", "running"):
                    entry["status"] = "interrupted" if entry.get("status") == "running" else "not run"
        self.data["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        self.save()
        md = markdown(self.data)
        if self.args.results_md:
            os.makedirs(os.path.dirname(os.path.abspath(self.args.results_md)), exist_ok=True)
            new = not os.path.exists(self.args.results_md)
            with open(self.args.results_md, "a") as f:
                if new:
                    f.write("# Benchmark results\n\nTables appended by `python -m benchmarks.run_all`, newest last.\n")
                f.write(md)
        print()
        print(summary_text(self.data), flush=True)


def child_env() -> dict:
    """This environment, with the repository root first on PYTHONPATH (the package need not be installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def die_with_parent() -> None:
    """Called first in a child: the kernel kills it when the runner dies (even by SIGKILL), so no section is left
    running on the card. (Done in the child rather than in a preexec_fn: forking a threaded parent is unsafe.)"""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the runner died before the line above
        os._exit(3)


def echo_progress(follow, name: str) -> None:
    """Prints the section's own progress lines (``[name] ...``) from its log as they arrive."""
    while True:
        pos = follow.tell()
        line = follow.readline()
        if not line.endswith("\n"):  # nothing new, or a line still being written
            follow.seek(pos)
            return
        if line.startswith(f"[{name}]"):
            print(line.rstrip(), flush=True)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, SIGKILL after 3 s (its results are already on disk)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tail(path: str, chars: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


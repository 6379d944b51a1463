"""Results on disk: JSON that survives NaN and numpy scalars, atomic writes, and the ``Recorder`` of one section."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from typing import Any, Callable

import numpy as np

SCHEMA = 1  # version of the run JSON's layout


def json_safe(x: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars converted, NaN/inf written as null)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, str):
        return x
    return str(x)


def write_json_atomic(path: str, data: Any) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(json_safe(data), f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Recorder:
    """One section's results: a dict written to disk (atomically) after every change, so a process that is stopped
    leaves what it measured. ``cases`` are timed rows, ``checks`` pass/fail correctness checks (a failed one fails
    the section), ``goals`` performance targets (reported, never failing), ``skipped`` what did not run and why."""

    def __init__(self, path: str | None = None, on_change: Callable[[dict], None] | None = None):
        self.path = path
        self.on_change = on_change
        self.data: dict = {"cases": [], "checks": {}, "goals": {}, "skipped": {}, "info": {}}

    def flush(self) -> None:
        if self.path:
            write_json_atomic(self.path, self.data)
        if self.on_change:
            self.on_change(self.data)

    def info(self, **kw) -> None:
        self.data["info"].update(kw)
        self.flush()

    def case(self, name: str, **row) -> dict:
        row = {"name": name, **row}
        self.data["cases"].append(row)
        self.flush()
        return row

    def update(self, row: dict, **kw) -> None:
        row.update(kw)
        self.flush()

    def check(self, name: str, ok: bool, value: Any = None, limit: Any = None, note: str = "") -> bool:
        self.data["checks"][name] = {"ok": bool(ok), "value": value, "limit": limit, "note": note}
        self.flush()
        return bool(ok)

    def goal(self, name: str, value: float | None, target: float, op: str = "<=", note: str = "") -> None:
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        self.data["goals"][name] = {"met": met, "value": value, "target": target, "op": op, "note": note}
        self.flush()

    def skip(self, what: str, reason: str) -> None:
        self.data["skipped"][what] = reason
        self.flush()


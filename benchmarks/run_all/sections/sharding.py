"""Section sharding: per-device memory and forward time over a device mesh against one device
(``benchmarks.bench_sharding``); on a CPU over host devices made in a child process, with several GPUs over them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from ..context import Context


def section_sharding(ctx: Context) -> None:
    """Rows of ``bench_sharding`` for ``sharding_models`` and ``sharding_meshes``: param and temporary MiB per
    device, ms, the max relative difference against one device (checked <= 1e-4 in float32) and, with several
    GPUs, the scaling efficiency."""
    import jax

    s, rec = ctx.sizes, ctx.rec
    if ctx.on_gpu and jax.device_count() == 1:
        rec.skip("sharding", "one GPU: the meshes need several devices (a CPU run measures them on host devices)")
        return
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "sharding.json")
        cmd = [sys.executable, "-m", "benchmarks.bench_sharding", "--models", s.sharding_models, "--layers",
               str(s.sharding_layers), "--meshes", s.sharding_meshes, "--repeats", str(s.sharding_repeats),
               "--dtype", s.dtype, "--json", out]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=os.getcwd())
        if proc.returncode:
            raise RuntimeError(f"bench_sharding failed:\n{proc.stderr[-3000:]}")
        with open(out) as f:
            data = json.load(f)
    rec.info(device=data["device"], device_count=data["device_count"], skipped_meshes=data["skipped_meshes"])
    tol = 1e-4 if s.dtype == "float32" else 5e-2
    for row in data["rows"]:
        rec.case(f"sharding {row['model']}, {row['mesh']} ({row['devices']} devices, {row['tokens']} tokens)",
                 ours_ms=row["ms"], param_mib_per_device=row["param_mib_per_device"],
                 temp_mib_per_device=row["temp_mib_per_device"], max_rel_diff=row["max_rel_diff"],
                 scaling_efficiency=row["scaling_efficiency"])
        rec.check(f"{row['model']} {row['mesh']}: same output as one device", row["max_rel_diff"] <= tol,
                  value=row["max_rel_diff"], limit=tol)

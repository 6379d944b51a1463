"""Sharding: per-device memory and forward time of the transformer on several devices against one, per mesh.

    python -m benchmarks.bench_sharding                          # CPU: 8 host devices in a child process
    python -m benchmarks.bench_sharding --meshes "fsdp=8;data=2,fsdp=2,context=2" --json out.json

(from the repository root)

For each model (``--models``: the tiny random config and the 2B width cut to ``--layers`` layers) and each mesh, with
random float params placed by ``ltx_jax.sharding.ShardingPlan``: the params' bytes on one device (from the arrays'
shards), the compiled forward's temporaries per device (``memory_analysis``), and the median forward time over
``--repeats`` after a warm-up, every call blocked on, outputs checked finite and against one device's (max relative
difference). Batch 2 (a CFG pair). On a CPU the "devices" are host threads sharing the same cores: the times say what
the collectives and the partitioning cost, not a speed-up; the memory is the point there. With several GPUs the same
rows give the scaling efficiency (one device's time / (devices x the mesh's time)).

    python -m benchmarks.bench_sharding --processes 2 --models 2b --repeats 3    # fsdp=2 over 2 processes (CPU)

``--processes N``: the same model under ``fsdp=N`` over N processes of one CPU device each (``ltx_jax.launch``,
gloo collectives), against one process with N host devices under the same mesh, and one device. Params are made
under jit with their shardings as outputs (each process creates only its shards); the figures are the largest of
the processes' (their addressable shards, their compiled program); outputs (gathered to every process) are checked
finite and against one device's. The processes share the machine's cores: the time says what the cross-process
collectives cost; the memory per device is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.timing import write_json

DEFAULT_MESHES = "data=2;fsdp=8;context=8;tensor=8;data=2,fsdp=2,context=2"  # a mesh may use fewer devices


def _models(names: str, layers: int):
    from ltx_jax.releases import TRANSFORMER_PRESETS
    from ltx_jax.tiny_random import TINY_TRANSFORMER

    out = {}
    for name in names.split(","):
        if name == "tiny":
            out["tiny"] = (TINY_TRANSFORMER, (3, 4, 6))
        elif name == "2b":
            out[f"2b x {layers} layers"] = (TRANSFORMER_PRESETS["ltx-video-2b"].replace(num_layers=layers), (3, 8, 16))
        else:
            raise SystemExit(f"--models: {name!r} is not tiny or 2b")
    return out


def _forward_kwargs(shape) -> dict:
    return dict(num_frames=shape[0], height=shape[1], width=shape[2], rope_interpolation_scale=(8 / 25, 32, 32))


def measure(models: str, layers: int, meshes: list[str], repeats: int, dtype_name: str) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from benchmarks.bench_transformer import forward_flops, make_inputs
    from benchmarks.timing import sample_times
    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from ltx_jax.sharding import ShardingPlan, make_mesh, parse_mesh_spec, shard_bytes

    dtype = jnp.dtype(dtype_name)
    rows = []
    for name, (cfg, shape) in _models(models, layers).items():
        module = LTXVideoTransformer3DModel(cfg, dtype, dtype, attention_implementation="xla")
        params = init_params(module, jax.random.PRNGKey(0))
        args = tuple(jnp.asarray(x) for x in make_inputs(cfg, 2, shape, 128))
        kw = _forward_kwargs(shape)
        tokens = int(np.prod(shape))
        flops = forward_flops(cfg, 2, tokens, 128)
        reference = None
        for spec in [None] + meshes:
            plan = None
            if spec is not None:  # on the first devices the mesh needs
                count = int(np.prod(list(parse_mesh_spec(spec).values())))
                plan = ShardingPlan(make_mesh(spec, jax.devices()[:count]))
            m = module if plan is None else module.clone(sharding=plan)
            p = params if plan is None else plan.place(params, module)
            forward = jax.jit(lambda p, *a, m=m: m.apply({"params": p}, *a, **kw))
            compiled = forward.lower(p, *args).compile()
            out = np.asarray(forward(p, *args).block_until_ready(), np.float32)
            if not np.isfinite(out).all():
                raise RuntimeError(f"non-finite output ({name}, {spec})")
            reference = out if reference is None else reference
            times = sample_times(lambda: forward(p, *args).block_until_ready(), repeats, 1)
            ms = statistics.median(times) * 1e3
            stats = compiled.memory_analysis()
            row = {"model": name, "mesh": spec or "one device", "devices": 1 if plan is None else plan.mesh.size,
                   "tokens": tokens, "param_mib_per_device": shard_bytes(p) / 2**20,
                   "temp_mib_per_device": int(stats.temp_size_in_bytes) / 2**20, "ms": ms, "gflop": flops / 1e9,
                   "max_rel_diff": float(np.max(np.abs(out - reference)) / np.max(np.abs(reference)))}
            one = next(r for r in rows if r["model"] == name and r["devices"] == 1) if rows and plan else None
            row["scaling_efficiency"] = None if one is None else one["ms"] / (row["devices"] * ms)
            rows.append(row)
            print(f"{name:>16} {row['mesh']:>24} {row['param_mib_per_device']:9.2f} {row['temp_mib_per_device']:9.2f} "
                  f"{ms:9.1f} {row['max_rel_diff']:10.2e}", flush=True)
    return rows


# ------------------------------------------------------------------------- --processes: fsdp over several processes


def _settings_name(spec: str | None, processes: int, devices: int) -> str:
    if spec is None:
        return "one device"
    return f"{spec}, {processes} process{'es' if processes > 1 else ''} x {devices} device{'s' if devices > 1 else ''}"


def measure_processes(models: str, layers: int, repeats: int, dtype_name: str, out_dir: str, reference: bool) -> None:
    """One process of the ``--processes`` mode (every process of the group runs it; process 0 writes): each model
    under fsdp=(all devices), after one device when ``reference``; ``out_dir`` gets rows.json and the outputs."""
    from ltx_jax import distributed

    distributed.initialize()  # joins the launcher's group (nothing in one process), before any device is touched
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from jax.experimental import multihost_utils

    from benchmarks.bench_transformer import make_inputs
    from benchmarks.timing import sample_times
    from ltx_jax.models import abstract_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from ltx_jax.sharding import ShardingPlan, make_mesh, shard_bytes

    dtype, main = jnp.dtype(dtype_name), jax.process_index() == 0
    spec = f"fsdp={jax.device_count()}"
    plan = ShardingPlan(make_mesh(spec))  # every process's devices
    rows = []
    for name, (cfg, shape) in _models(models, layers).items():
        module = LTXVideoTransformer3DModel(cfg, dtype, dtype, attention_implementation="xla")
        inputs, kw = make_inputs(cfg, 2, shape, 128), _forward_kwargs(shape)
        init_args, init_kw = module.init_inputs()
        for p_plan in ([None] if reference else []) + [plan]:
            if p_plan is None:
                m, shardings = module, jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
                args = tuple(jax.device_put(x, shardings) for x in inputs)
            else:  # each process makes only its own shards, of params and inputs
                m, shardings = module.clone(sharding=p_plan), p_plan.param_shardings(abstract_params(module), module)
                args = tuple(jax.make_array_from_callback(x.shape, p_plan.replicated(), lambda i, x=x: x[i])
                             for x in inputs)
            params = jax.jit(lambda key: nn.meta.unbox(module.init(key, *init_args, **init_kw)["params"]),
                             out_shardings=shardings)(jax.random.PRNGKey(0))  # init_params' values
            compiled = jax.jit(lambda p, *a, m=m: m.apply({"params": p}, *a, **kw)).lower(params, *args).compile()

            def run():
                return compiled(params, *args).block_until_ready()

            out = np.asarray(multihost_utils.process_allgather(run(), tiled=True), np.float32)  # the whole output
            if not np.isfinite(out).all():
                raise RuntimeError(f"non-finite output ({name}, {spec if p_plan else 'one device'})")
            ms = statistics.median(sample_times(run, repeats, 1)) * 1e3
            mine = [shard_bytes(params) / 2**20, int(compiled.memory_analysis().temp_size_in_bytes) / 2**20, ms]
            every = np.asarray(multihost_utils.process_allgather(np.asarray(mine, np.float32))).reshape(-1, 3)
            setting = _settings_name(p_plan and spec, jax.process_count(), jax.local_device_count())
            row = {"model": name, "setting": setting, "processes": jax.process_count() if p_plan else 1,
                   "devices": p_plan.mesh.size if p_plan else 1, "tokens": int(np.prod(shape)),
                   "param_mib_per_device": float(every[:, 0].max()), "temp_mib_per_device": float(every[:, 1].max()),
                   "ms": float(every[:, 2].max()), "repeats": repeats, "finite": True,
                   "per_process": {"param_mib": every[:, 0].tolist(), "temp_mib": every[:, 1].tolist(),
                                   "ms": every[:, 2].tolist()},
                   "output": f"{len(rows)}.npy"}
            if main:
                np.save(os.path.join(out_dir, row["output"]), out)
                print(f"{name:>16} {setting:>34} {row['param_mib_per_device']:9.2f} {row['temp_mib_per_device']:9.2f} "
                      f"{row['ms']:9.1f}", flush=True)
            rows.append(row)
    if main:
        meta = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "jax": jax.__version__}
        with open(os.path.join(out_dir, "rows.json"), "w") as f:
            json.dump({**meta, "rows": rows}, f)


def run_processes(args, dtype: str) -> dict:
    """The ``--processes N`` rows: one process with N host devices (and one device), then N processes of one device
    each through ``ltx_jax.launch``; outputs compared here against one device's and the one process's."""
    n = args.processes
    worker = [sys.executable, "-m", "benchmarks.bench_sharding", "--worker", "--processes", str(n), "--models",
              args.models, "--layers", str(args.layers), "--repeats", str(args.repeats), "--dtype", dtype]
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", "")).strip()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={n}")
    print(f"{'model':>16} {'setting':>34} {'param MiB':>9} {'temp MiB':>9} {'ms':>9}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for kind, cmd in (("one", [*worker, "--reference"]),
                          ("many", [sys.executable, "-m", "ltx_jax.launch", "--processes", str(n), "--cpu_devices",
                                    "1", "--", *worker])):
            out_dir = os.path.join(tmp, kind)
            os.makedirs(out_dir)
            code = subprocess.run([*cmd, "--out", out_dir], env=env if kind == "one" else None).returncode
            if code != 0:
                raise SystemExit(f"--processes: the {kind}-process run exited with code {code}")
            with open(os.path.join(out_dir, "rows.json")) as f:
                runs[kind] = json.load(f)
            for row in runs[kind]["rows"]:
                row["out"] = np.load(os.path.join(out_dir, row.pop("output")))
    one, many = runs["one"], runs["many"]
    rows = [r for m in dict.fromkeys(r["model"] for r in one["rows"]) for r in one["rows"] + many["rows"]
            if r["model"] == m]  # each model's rows together
    for row in rows:
        same = [r for r in one["rows"] if r["model"] == row["model"]]
        reference, single = same[0]["out"], same[-1]["out"]  # one device; fsdp in one process
        row["max_rel_diff"] = float(np.max(np.abs(row["out"] - reference)) / np.max(np.abs(reference)))
        row["max_rel_diff_vs_one_process"] = (float(np.max(np.abs(row["out"] - single)) / np.max(np.abs(single)))
                                              if row["processes"] > 1 else None)
    for row in rows:
        del row["out"]
    return {"device": one["device"], "backend": one["backend"], "jax": one["jax"], "cpus": os.cpu_count(),
            "dtype": dtype, "mesh": f"fsdp={n}", "processes": n, "collectives": "gloo", "rows": rows}


def markdown(rows: list[dict]) -> str:
    lines = ["| model | setting | param MiB / device | temp MiB / device | ms | repeats | max rel diff vs one device "
             "| vs 1 process |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diff, vs = (("-" if d is None else "0" if d == 0 else f"{d:.1e}")
                    for d in (r["max_rel_diff"], r["max_rel_diff_vs_one_process"]))
        lines.append(f"| {r['model']} | {r['setting']} | {r['param_mib_per_device']:.2f} | "
                     f"{r['temp_mib_per_device']:.2f} | {r['ms']:.1f} | {r['repeats']} | {diff} | {vs} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,2b", help="tiny, 2b (comma separated)")
    parser.add_argument("--layers", type=int, default=4, help="layers of the 2B slice")
    parser.add_argument("--meshes", default=DEFAULT_MESHES, help="mesh specs separated by ';'")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                        help="default: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--devices", type=int, default=8, help="host devices to make on a CPU")
    parser.add_argument("--processes", type=int, default=1,
                        help="N > 1: fsdp=N over N processes of one CPU device each, against one process of N")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one process of --processes
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)  # --worker: one device first
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)  # --worker: the folder for rows and outputs
    args = parser.parse_args(argv)

    if args.worker:
        measure_processes(args.models, args.layers, args.repeats, args.dtype or "float32", args.out, args.reference)
        return 0
    if args.processes > 1:
        start = time.perf_counter()
        results = run_processes(args, args.dtype or "float32")  # CPU devices: float32
        results["seconds"] = time.perf_counter() - start
        print(f"\n{results['device']} ({results['backend']}), jax {results['jax']}, {results['cpus']} CPUs, "
              f"{results['dtype']}, {results['mesh']}, {results['collectives']} collectives across processes\n")
        print(markdown(results["rows"]))
        write_json(args.json, results)
        return 0

    if not args.child and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        import jax

        if jax.default_backend() == "cpu":  # the host devices must exist before jax starts: a child makes them
            env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                                              f" --xla_force_host_platform_device_count={args.devices}").strip())
            cmd = [sys.executable, "-m", "benchmarks.bench_sharding", "--child", *(argv or sys.argv[1:])]
            return subprocess.run(cmd, env=env).returncode

    import jax

    meshes = [m.strip() for m in args.meshes.split(";") if m.strip()]
    from ltx_jax.sharding import parse_mesh_spec

    usable = [m for m in meshes if int(np.prod(list(parse_mesh_spec(m).values()))) <= jax.device_count()]
    skipped = sorted(set(meshes) - set(usable))
    dtype = args.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")
    results = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "jax": jax.__version__,
               "device_count": jax.device_count(), "dtype": dtype, "skipped_meshes": skipped}
    print(f"device: {results['device']} x {jax.device_count()} ({results['backend']}), jax {jax.__version__}, "
          f"{os.cpu_count()} CPUs, {dtype}"
          + (f"; skipped (more devices than there are): {skipped}" if skipped else ""))
    print(f"{'model':>16} {'mesh':>24} {'param MiB':>9} {'temp MiB':>9} {'ms':>9} {'rel diff':>10}")
    start = time.perf_counter()
    results["rows"] = measure(args.models, args.layers, usable, args.repeats, dtype)
    results["seconds"] = time.perf_counter() - start
    write_json(args.json, results)
    if args.json is None:
        print(json.dumps({"rows": len(results["rows"]), "seconds": round(results["seconds"], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

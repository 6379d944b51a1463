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
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
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
        kw = dict(num_frames=shape[0], height=shape[1], width=shape[2], rope_interpolation_scale=(8 / 25, 32, 32))
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,2b", help="tiny, 2b (comma separated)")
    parser.add_argument("--layers", type=int, default=4, help="layers of the 2B slice")
    parser.add_argument("--meshes", default=DEFAULT_MESHES, help="mesh specs separated by ';'")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                        help="default: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--devices", type=int, default=8, help="host devices to make on a CPU")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

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

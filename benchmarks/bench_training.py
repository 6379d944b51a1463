"""Fine-tuning: train-step time and peak memory of the transformer, LoRA against full fine-tuning, with and without
remat.

    python -m benchmarks.bench_training                       # the 2B width cut to 4 layers, CPU sizes
    python -m benchmarks.bench_training --shape 13x16x24 --layers 28 --dtype bfloat16     # a GPU: full 2B, 768x512x49

(from the repository root)

Each configuration runs in a fresh child process (so each peak is its own): random float32 master weights, the
jitted step of ``ltx_jax.training.Trainer`` (AdamW, clipping, first-frame conditioning at p = 0.1), one warm-up step
that compiles, then the median of ``--repeats`` steps, every one blocked on and its loss checked finite. Memory: the
compiled step's temporaries (``memory_analysis``) and the child's peak resident memory (VmHWM, which on a CPU holds
the "device" arrays too: weights, optimizer state, activations). FLOPs: 3x the analytic forward
(``bench_transformer.forward_flops``: forward + backward), plus one more forward with remat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.timing import write_json

CONFIGS = (("lora", False), ("lora", True), ("full", False), ("full", True))


def child(mode: str, remat: bool, layers: int, shape, rank: int, dtype: str, repeats: int) -> dict:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.bench_transformer import forward_flops, make_inputs
    from benchmarks.bench_weights import vm_hwm_mb
    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from ltx_jax.releases import TRANSFORMER_PRESETS
    from ltx_jax.training import Batch, Trainer, TrainConfig
    from ltx_jax.training.step import count_trainable

    cfg = TRANSFORMER_PRESETS["ltx-video-2b"].replace(num_layers=layers)
    module = LTXVideoTransformer3DModel(cfg, attention_implementation=None)
    params = init_params(module, jax.random.PRNGKey(0))
    config = TrainConfig(mode=mode, lora_rank=rank, lora_alpha=rank, learning_rate=1e-4, steps=1000, remat=remat,
                         compute_dtype=dtype)
    trainer = Trainer.create(module, params, config, jax.random.PRNGKey(1))
    del params
    hidden, text, _, mask = make_inputs(cfg, 1, shape, 128)
    batch = Batch(jnp.asarray(hidden), jnp.asarray(text), jnp.asarray(mask), grid=tuple(shape), fps=24.0)
    state = trainer.init_state()
    from ltx_jax.training.step import _jitted_step

    compiled = _jitted_step.lower(trainer, trainer.frozen, trainer.lora_fixed, state, batch).compile()
    stats = compiled.memory_analysis()
    start = time.perf_counter()
    state, metrics = trainer.step(state, batch)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    times, losses = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = trainer.step(state, batch)
        losses.append(float(metrics["loss"]))  # blocks
        times.append(time.perf_counter() - start)
    if not np.isfinite(losses).all():
        raise RuntimeError(f"non-finite loss: {losses}")
    tokens = int(np.prod(shape))
    flops = (4 if remat else 3) * forward_flops(cfg, 1, tokens, 128)
    ms = statistics.median(times) * 1e3
    return {"mode": mode, "remat": remat, "layers": layers, "tokens": tokens, "dtype": dtype,
            "trainable": count_trainable(state.trainable), "ms": ms, "first_step_s": first,
            "tflops": flops / ms / 1e9, "temp_mib": int(stats.temp_size_in_bytes) / 2**20,
            "vmhwm_mib": vm_hwm_mb(), "device": jax.devices()[0].device_kind}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--shape", default="3x8x16", help="latent FxHxW of the training clip")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                        help="compute dtype (default: bfloat16 on GPU, float32 on CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default=",".join(f"{m}{'+remat' if r else ''}" for m, r in CONFIGS))
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split("x"))
    if args.child:
        mode, _, remat = args.child.partition("+")
        print(json.dumps(child(mode, bool(remat), args.layers, shape, args.rank, args.dtype, args.repeats)))
        return 0
    import jax

    dtype = args.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")
    rows = []
    print(f"2B x {args.layers} layers, {args.shape} latent tokens, LoRA rank {args.rank}, {dtype}")
    print(f"{'config':>12} {'trainable':>12} {'ms/step':>9} {'TFLOP/s':>8} {'temp MiB':>9} {'VmHWM MiB':>10}")
    for name in args.configs.split(","):
        cmd = [sys.executable, "-m", "benchmarks.bench_training", "--child", name, "--layers", str(args.layers),
               "--shape", args.shape, "--rank", str(args.rank), "--dtype", dtype, "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        if proc.returncode:
            raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name:>12} {row['trainable']:>12,} {row['ms']:9.1f} {row['tflops']:8.3f} {row['temp_mib']:9.0f} "
              f"{row['vmhwm_mib']:10.0f}", flush=True)
    write_json(args.json, {"rows": rows, "shape": args.shape, "layers": args.layers, "dtype": dtype})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Low-precision weights: load time and peak host memory of the transformer checkpoint in bf16 / int8 / fp8, next to
diffusers' ``from_pretrained`` of the same folder, and the forward time of a 4-layer slice in each weight format.

    python -m benchmarks.bench_weights                        # the full 2B (28 layers, 3.9 GB of bf16) in a temp folder
    python -m benchmarks.bench_weights --layers 4             # a smaller checkpoint (2B width, 4 layers)
    python -m benchmarks.bench_weights --skip-load            # only the forward slice
    python -m benchmarks.bench_weights --keep /tmp/ltx2b      # write (or reuse) the checkpoint there

(from the repository root)

Load: the checkpoint is a diffusers ``transformer/`` folder (``config.json`` + one bf16 safetensors file) written
tensor by tensor with random weights (at most one chunk of a tensor's float32 draw in memory). Each loader runs in a
fresh child process that reports its wall time from the call to the last param ready (ours blocked on; diffusers'
``from_pretrained(..., torch_dtype=torch.bfloat16)`` plus a read of every page of its params: a bf16 file loaded in
bf16 stays memory-mapped and is only read when used), the process's peak resident memory ``VmHWM`` from
/proc/self/status after the load, and the same figure after its imports (the baseline the load adds to). VmHWM counts
mapped file pages that are resident (diffusers' params are such pages; ours are copies, and the loader lets the
file's pages go as it converts them). On a CPU the JAX "device" is host memory, so our VmHWM includes the params.
The file is in the page cache (just written): load times are not disk reads.

Forward: the 2B width cut to ``--forward-layers`` layers; random float params, quantized on the host per output
channel for int8 / fp8 (``weight_conversion.quantize.quantize_params``); median wall time over ``--repeats`` runs
after ``--warmup``, every run blocked on; the analytic FLOPs of ``bench_transformer.forward_flops``; outputs checked
finite and compared with the float format's (max relative difference).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.timing import write_json

KINDS = ("ours-bf16", "ours-int8", "ours-fp8", "diffusers-bf16")


def vm_hwm_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


# ----------------------------------------------------------------------------------------------- the checkpoint

def checkpoint_tensors(cfg) -> list[tuple[str, tuple[int, ...]]]:
    """(diffusers key, torch shape) of every tensor of the transformer, from our own conversion table."""
    import jax.numpy as jnp

    from ltx_jax.models import abstract_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from weight_conversion.mapping import flatten
    from weight_conversion.transformer import transformer_rules

    abstract = abstract_params(LTXVideoTransformer3DModel(cfg, jnp.bfloat16, jnp.bfloat16))
    flat = flatten(abstract)
    out = []
    for rule in transformer_rules(cfg, abstract):
        shape = flat[rule.target].shape[1:] if rule.stacked else flat[rule.target].shape
        out += [(key, tuple(rule.transform.torch_shape(tuple(shape)))) for key in rule.sources]
    return sorted(out)


def write_checkpoint(cfg, folder: str, seed: int = 0, chunk: int = 1 << 22) -> int:
    """Writes a diffusers ``transformer/`` folder with random bf16 weights, one chunk of a tensor at a time; bytes."""
    import ml_dtypes

    tensors = checkpoint_tensors(cfg)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for key, shape in tensors:
        size = int(np.prod(shape)) * 2
        header[key] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads its header to 8 bytes
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
    with open(path + ".partial", "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for key, shape in tensors:
            remaining = int(np.prod(shape))
            while remaining:
                n = min(chunk, remaining)
                (rng.standard_normal(n, np.float32) * 0.02).astype(ml_dtypes.bfloat16).tofile(f)
                remaining -= n
    os.replace(path + ".partial", path)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2)
    return offset


def child(kind: str, folder: str) -> dict:
    """Runs one loader in this (fresh) process and returns its figures."""
    if kind.startswith("ours"):
        import jax
        import jax.numpy as jnp

        from weight_conversion import load_transformer

        baseline = vm_hwm_mb()
        start = time.perf_counter()
        weights = None if kind == "ours-bf16" else kind.split("-")[1]
        _, params = load_transformer(folder, jnp.bfloat16, weights=weights)
        jax.block_until_ready(params)
        seconds = time.perf_counter() - start
        nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params))
    else:
        # deferred: torch and diffusers (the reference) are optional, loaded only where used
        import torch
        from diffusers import LTXVideoTransformer3DModel

        baseline = vm_hwm_mb()
        start = time.perf_counter()
        model = LTXVideoTransformer3DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
        # A bf16 file loaded as bf16 stays memory-mapped (its tensors are views of the file, read when first used):
        # touch one element per page so that the figures include reading the weights, as ours do.
        with torch.no_grad():
            for p in model.parameters():
                p.reshape(-1)[:: 4096 // p.element_size()].float().sum()
        seconds = time.perf_counter() - start
        nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"kind": kind, "load_s": seconds, "vmhwm_mib": vm_hwm_mb(), "baseline_mib": baseline,
            "param_mib": nbytes / 2**20}


def measure_loads(folder: str, kinds) -> list[dict]:
    rows = []
    for kind in kinds:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_weights", "--child", kind, folder],
                              capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{kind} failed:\n{proc.stderr[-4000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{kind:>15} {row['load_s']:8.1f} s {row['vmhwm_mib']:9.0f} MiB peak "
              f"({row['baseline_mib']:.0f} after imports) {row['param_mib']:8.0f} MiB params", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------- the forward slice

def measure_forwards(cfg, dtype_name: str, shapes, batch: int, text_tokens: int, repeats: int,
                     warmup: int) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from benchmarks.bench_transformer import forward_flops, jax_forward_fn, make_inputs
    from benchmarks.timing import sample_times
    from ltx_jax.models import abstract_params, init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from weight_conversion.quantize import quantize_params

    dtype = jnp.dtype(dtype_name)
    float_module = LTXVideoTransformer3DModel(cfg, dtype, dtype)
    float_params = init_params(float_module, jax.random.PRNGKey(0))
    rows = []
    for shape in shapes:
        args = tuple(jnp.asarray(x) for x in make_inputs(cfg, batch, shape, text_tokens))
        tokens = shape[0] * shape[1] * shape[2]
        flops = forward_flops(cfg, batch, tokens, text_tokens)
        reference = None
        for weights in (None, "int8", "fp8"):
            module = float_module.clone(weights=weights)
            params = float_params if weights is None else quantize_params(float_params, abstract_params(module))
            forward = jax_forward_fn(module, shape)
            out = forward(params, *args).block_until_ready()
            if not bool(jnp.all(jnp.isfinite(out))):
                raise RuntimeError(f"non-finite output ({weights}, {shape})")
            out = np.asarray(out, np.float32)
            reference = out if reference is None else reference
            times = sample_times(lambda: forward(params, *args).block_until_ready(), repeats, warmup)
            ms = statistics.median(times) * 1e3
            nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params))
            row = {"shape": "x".join(map(str, shape)), "tokens": tokens, "weights": weights or dtype_name,
                   "param_mib": nbytes / 2**20, "ms": ms, "gflop": flops / 1e9, "tflops": flops / ms / 1e9,
                   "max_rel_diff": float(np.max(np.abs(out - reference)) / np.max(np.abs(reference)))}
            rows.append(row)
            print(f"{row['shape']:>9} {tokens:>6} {row['weights']:>9} {row['param_mib']:8.0f} {row['gflop']:8.1f} "
                  f"{ms:9.1f} {row['tflops']:8.3f} {row['max_rel_diff']:12.2e}", flush=True)
            params = None  # frees the weights (the timing closure above names them)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="ltx-video-2b")
    parser.add_argument("--layers", type=int, default=None,
                        help="layers of the written checkpoint (default: the preset's)")
    parser.add_argument("--forward-layers", type=int, default=4)
    parser.add_argument("--shapes", default=None, help="latent FxHxW of the forward slice, comma separated")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--text-tokens", type=int, default=128)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                        help="compute dtype of the forward slice (default: bfloat16 on GPU, float32 on CPU)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--loaders", default=",".join(KINDS), help=f"which of {','.join(KINDS)} to run")
    parser.add_argument("--keep", default=None, help="folder for the checkpoint, kept (reused when it exists)")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-forward", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(*args.child)))
        return 0

    import jax

    from benchmarks.bench_transformer import parse_shapes
    from ltx_jax.releases import TRANSFORMER_PRESETS

    on_gpu = jax.default_backend() == "gpu"
    preset = TRANSFORMER_PRESETS[args.preset]
    results = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "jax": jax.__version__}
    print(f"device: {results['device']} ({results['backend']}), jax {jax.__version__}, {os.cpu_count()} CPUs")
    if not args.skip_load:
        cfg = preset.replace(num_layers=args.layers or preset.num_layers)
        folder = args.keep or tempfile.mkdtemp(prefix="bench_weights_")
        try:
            if not os.path.exists(os.path.join(folder, "config.json")):
                start = time.perf_counter()
                size = write_checkpoint(cfg, folder)
                print(f"wrote {args.preset} x {cfg.num_layers} layers, {size / 2**30:.2f} GiB bf16, to {folder} "
                      f"in {time.perf_counter() - start:.1f} s")
            print(f"{'loader':>15} {'load':>10} {'peak VmHWM':>14}")
            results["load"] = {"layers": cfg.num_layers, "rows": measure_loads(folder, args.loaders.split(","))}
        finally:
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    if not args.skip_forward:
        cfg = preset.replace(num_layers=args.forward_layers)
        dtype = args.dtype or ("bfloat16" if on_gpu else "float32")
        shapes = parse_shapes(args.shapes or ("9x32x32,9x64x64,17x64x64" if on_gpu else "2x8x8,3x8x16"))
        repeats = args.repeats or (10 if on_gpu else 5)
        print(f"forward: {args.preset} x {cfg.num_layers} layers, compute {dtype}, batch {args.batch}, "
              f"{args.text_tokens} text tokens")
        print(f"{'FxHxW':>9} {'tokens':>6} {'weights':>9} {'MiB':>8} {'GFLOP':>8} {'ms':>9} {'TFLOP/s':>8} "
              f"{'max rel diff':>12}")
        results["forward"] = {"layers": cfg.num_layers, "dtype": dtype,
                              "rows": measure_forwards(cfg, dtype, shapes, args.batch, args.text_tokens, repeats,
                                                       args.warmup)}
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

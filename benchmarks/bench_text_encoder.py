"""Benchmark the T5 text encoder (ltx_jax.models.t5) against transformers' T5EncoderModel.

CPU (default): a small random T5 (default 4 layers, d_model 512, 8 heads x 64, d_ff 1024, gated-gelu) is built in
  transformers, saved, loaded with ``weight_conversion.t5.load_text_encoder`` and both encode the same
  [batch, tokens] ids (half of one row padded) in float32, in the same run. Reported: median wall clock over
  --repeats after --warmup calls (JAX results block_until_ready; torch under inference_mode), the ratio
  transformers / ltx_jax, JIT compile time, and the max relative difference of the outputs.
--gpu: the T5 v1.1 XXL preset (4.76B params; --layers to shorten it) with random bf16 params initialised on the
  device (no float32 host copy), encoding --batch x --tokens (default 2 x 128, as the LTX pipelines do).
  Reported: median time, compile time and achieved TFLOP/s of the matmuls.

Usage, from the repository root:
    python -m benchmarks.bench_text_encoder [--repeats 20] [--warmup 3] [--batch 2] [--tokens 128]
    python -m benchmarks.bench_text_encoder --gpu [--layers 24] [--no-mask]
"""

import argparse
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import median_time
from ltx_jax.configs import T5Config
from ltx_jax.models import init_params
from ltx_jax.models.t5 import T5EncoderModel
from ltx_jax.releases import T5_PRESETS


def fmt(seconds):
    return "n/a" if seconds is None else f"{seconds * 1e3:9.2f} ms"


def make_inputs(config: T5Config, batch: int, tokens: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, config.vocab_size, (batch, tokens)).astype(np.int32)
    mask = np.ones((batch, tokens), np.int32)
    mask[0, tokens // 2:] = 0  # one padded row, as a short prompt gives
    return ids * mask, mask


def matmul_flops(config: T5Config, batch: int, tokens: int) -> float:
    """Multiply-add FLOPs of the projections, the FFN and attention (scores and values)."""
    d, inner, ff = config.d_model, config.inner_dim, config.d_ff
    per_token = 2 * (4 * d * inner + (3 if config.is_gated_act else 2) * d * ff)
    attention = 2 * 2 * tokens * inner
    return float(config.num_layers * batch * tokens * (per_token + attention))


def timed_jax(module, params, ids, mask, repeats, warmup):
    forward = jax.jit(lambda p, i, m: module.apply({"params": p}, i, m))
    ids, mask = jnp.asarray(ids), None if mask is None else jnp.asarray(mask)
    t0 = time.perf_counter()
    out = forward(params, ids, mask).block_until_ready()
    compile_s = time.perf_counter() - t0
    seconds = median_time(lambda: forward(params, ids, mask).block_until_ready(), repeats, warmup)
    return seconds, compile_s, out


def run_cpu(args):
    # deferred: torch and transformers (the reference) are optional, loaded only where used
    import torch
    from transformers import T5Config as TorchT5Config
    from transformers import T5EncoderModel as TorchT5EncoderModel

    from weight_conversion.t5 import load_text_encoder

    config = T5Config(vocab_size=args.vocab, d_model=args.d_model, d_kv=64, d_ff=args.d_ff, num_layers=args.layers or 4,
                      num_heads=args.d_model // 64, feed_forward_proj="gated-gelu")
    torch.manual_seed(0)
    reference = TorchT5EncoderModel(TorchT5Config(**config.to_dict())).eval()
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        module, params = load_text_encoder(folder)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads, attention {reference.config._attn_implementation}); float32; "
          f"T5 {config.num_layers} layers, d_model {config.d_model}, d_ff {config.d_ff}; "
          f"batch {args.batch} x {args.tokens} tokens; repeats {args.repeats}, warmup {args.warmup}")
    ids, mask = make_inputs(config, args.batch, args.tokens)
    rows = []
    for label, use_mask in (("masked (LTXConditionPipeline)", True), ("unmasked (LTXPipeline)", False)):
        ours, compile_s, out = timed_jax(module, params, ids, mask if use_mask else None, args.repeats, args.warmup)
        tids, tmask = torch.from_numpy(ids).long(), torch.from_numpy(mask).long() if use_mask else None

        def torch_forward():
            with torch.inference_mode():
                return reference(input_ids=tids, attention_mask=tmask).last_hidden_state

        ref = median_time(torch_forward, args.repeats, args.warmup)
        expected = torch_forward().numpy()
        err = float(np.max(np.abs(np.asarray(out) - expected)) / np.max(np.abs(expected)))
        rows.append((label, ours, ref, compile_s, err))
    print(f"\n{'encode':<30} | {'ltx_jax':>12} | {'transformers':>12} | {'ratio tf/ours':>13} | {'compile':>9} "
          "| max rel diff")
    print("-" * 104)
    for label, ours, ref, compile_s, err in rows:
        print(f"{label:<30} | {fmt(ours):>12} | {fmt(ref):>12} | {ref / ours:12.2f}x | {compile_s:7.2f} s | {err:.1e}")


def run_gpu(args):
    config = T5_PRESETS["t5-v1_1-xxl"]
    if args.layers:
        config = config.replace(num_layers=args.layers)
    module = T5EncoderModel(config, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    t0 = time.perf_counter()
    params = jax.block_until_ready(init_params(module, jax.random.PRNGKey(0)))
    init_s = time.perf_counter() - t0
    num_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device.device_kind}; T5 v1.1 XXL preset, {config.num_layers} layers, "
          f"{num_params / 1e9:.2f}B params in bf16 (random, initialised on device in {init_s:.1f} s); "
          f"batch {args.batch} x {args.tokens} tokens; repeats {args.repeats}, warmup {args.warmup}")
    ids, mask = make_inputs(config, args.batch, args.tokens)
    seconds, compile_s, out = timed_jax(module, params, ids, None if args.no_mask else mask, args.repeats, args.warmup)
    assert bool(jnp.all(jnp.isfinite(out.astype(jnp.float32)))), "non-finite output"
    tflops = matmul_flops(config, args.batch, args.tokens) / seconds / 1e12
    stats = device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    print(f"\nencode {'unmasked' if args.no_mask else 'masked'}: {fmt(seconds)} median, compile {compile_s:.1f} s, "
          f"{tflops:.0f} TFLOP/s of matmuls" + (f", peak device memory {peak / 2**30:.1f} GiB" if peak else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="XXL preset, random bf16 params, on the default accelerator")
    ap.add_argument("--repeats", type=int, default=20, help="timed repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls after the compiling one")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128, help="sequence length (max_sequence_length)")
    ap.add_argument("--layers", type=int, default=None, help="layers (CPU default 4, GPU default 24 = XXL)")
    ap.add_argument("--d-model", type=int, default=512, help="CPU config width (multiple of 64)")
    ap.add_argument("--d-ff", type=int, default=1024, help="CPU config FFN width")
    ap.add_argument("--vocab", type=int, default=4096, help="CPU config vocabulary")
    ap.add_argument("--no-mask", action="store_true", help="GPU: encode without the padding mask (LTXPipeline)")
    args = ap.parse_args()
    if args.gpu:
        if jax.default_backend() != "gpu":
            sys.exit(f"--gpu asked for, but JAX's default backend is {jax.default_backend()!r}.")
        run_gpu(args)
    else:
        run_cpu(args)


if __name__ == "__main__":
    main()

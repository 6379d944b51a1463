"""Forward-pass benchmark of the LTX-Video transformer (2B width, cut to a few layers), optionally against diffusers.

    python -m benchmarks.bench_transformer                      # GPU: bf16 at 9x32x32, 9x64x64, 17x64x64 latents
    python -m benchmarks.bench_transformer --compare-torch      # + diffusers (torch SDPA) on the same shapes and card
    python -m benchmarks.bench_transformer --shapes 2x8x8,3x8x16  # CPU-sized shapes (fp32 is the CPU default)
    python -m benchmarks.bench_transformer --fp8                # + fp8 matmuls (compute="fp8") against the dtype
    python -m benchmarks.bench_transformer --family ltx2 --compare-torch  # LTX-2's audio-video transformer (its own
                                                                # flags: benchmarks/bench_ltx2_transformer.py)

(from the repository root)

What it reports per shape: median wall time over ``--repeats`` runs after warm-up (every run blocks on its result),
the analytic FLOP count of one forward pass (2 per multiply-add, attention included), the achieved TFLOP/s, and
with ``--compare-torch`` diffusers' median and the ratio ours/theirs (< 1 = we are faster); with ``--fp8`` the same
model with fp8 kernels and fp8 matmuls (``compute="fp8"``, kernels quantized from the same weights): its median, the
speed-up over the dtype's, its output's max relative difference from the dtype's, and (GPU) whether the optimised
program holds cuBLASLt's fp8 GEMM. It also reports the jit compile time of the same program with 4 and with 28 layers
(blocks are scanned, so the two should be close).
Outputs are checked to be finite; with --compare-torch both models share weights and their outputs are compared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import bench_ltx2_transformer
from benchmarks.timing import sample_times, write_json
from ltx_jax import TRANSFORMER_PRESETS, LTXVideoTransformer3DModel, TransformerConfig
from ltx_jax.models import abstract_params, count_params
from weight_conversion.quantize import quantize_params

FP8_GEMM_CALL = "__cublas$lt$matmul$f8"  # XLA's custom call for cuBLASLt's fp8 GEMM (sm_89 / sm_90 and later)


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    shapes = []
    for item in text.split(","):
        f, h, w = (int(x) for x in item.lower().split("x"))
        shapes.append((f, h, w))
    return shapes


def forward_flops(cfg: TransformerConfig, batch: int, tokens: int, text_tokens: int) -> int:
    """Analytic FLOPs of one forward pass (2 per multiply-add)."""
    d, n, t = cfg.inner_dim, tokens, text_tokens
    per_layer = (
        8 * n * d * d  # attn1 q, k, v, out projections
        + 4 * n * n * d  # attn1 scores and probabilities @ values
        + 4 * n * d * d + 4 * t * d * d  # attn2 q, out on video tokens; k, v on text tokens
        + 4 * n * t * d  # attn2 scores and values
        + 16 * n * d * d  # feed-forward D -> 4D -> D
    )
    outside = (
        2 * n * cfg.in_channels * d + 2 * n * d * cfg.out_channels  # proj_in, proj_out
        + 2 * t * (cfg.caption_channels * d + d * d)  # caption projection
        + 2 * (256 * d + d * d + 6 * d * d)  # timestep embedding (per sample)
    )
    return batch * (cfg.num_layers * per_layer + outside)


def make_inputs(cfg: TransformerConfig, batch: int, shape, text_tokens: int, seed: int = 0):
    f, h, w = shape
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((batch, f * h * w, cfg.in_channels), dtype=np.float32)
    text = rng.standard_normal((batch, text_tokens, cfg.caption_channels), dtype=np.float32)
    mask = np.zeros((batch, text_tokens), np.int64)
    for b in range(batch):  # realistic padding: prompts of different lengths
        mask[b, : max(1, text_tokens - 17 * (b + 1))] = 1
    timestep = np.linspace(900.0, 300.0, batch).astype(np.float32)
    return hidden, text, timestep, mask


def build_jax(cfg, dtype, attention_implementation, params=None, seed=0):
    module = LTXVideoTransformer3DModel(cfg, dtype=dtype, param_dtype=dtype,
                                        attention_implementation=attention_implementation)
    if params is None:
        abstract = abstract_params(module)
        keys = jax.random.split(jax.random.PRNGKey(seed), len(jax.tree_util.tree_leaves(abstract)))
        leaves, treedef = jax.tree_util.tree_flatten(abstract)
        params = jax.tree_util.tree_unflatten(
            treedef, [(jax.random.normal(k, x.shape, jnp.float32) * 0.02).astype(dtype) for k, x in zip(keys, leaves)]
        )
    return module, params


def jax_forward_fn(module, shape):
    f, h, w = shape

    @jax.jit
    def forward(params, hidden, text, timestep, mask):
        return module.apply(
            {"params": params}, hidden, text, timestep, mask, num_frames=f, height=h, width=w,
            rope_interpolation_scale=(8 / 25, 32, 32),
        )

    return forward


def fp8_model(module, params):
    """The same transformer with fp8 block kernels (quantized per output channel from ``params``) and fp8 matmuls
    (``compute="fp8"``): (module, params)."""
    fp8 = module.clone(weights="fp8", compute="fp8")
    return fp8, quantize_params(params, abstract_params(fp8))


def time_fp8(fp8, fp8_params, shape, dev_inputs, reference, repeats: int, warmup: int) -> dict:
    """An ``fp8_model`` (module, params) on the inputs of a shape: its compile seconds, median ms and times, the max
    relative difference of its output from ``reference`` (the dtype's output of the same weights), and whether the
    optimised program holds cuBLASLt's fp8 GEMM (None off GPU, where XLA runs the fp8 operands upcast)."""
    lowered = jax_forward_fn(fp8, shape).lower(fp8_params, *dev_inputs)
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    out = np.asarray(compiled(fp8_params, *dev_inputs).astype(jnp.float32))
    times = sample_times(lambda: compiled(fp8_params, *dev_inputs).block_until_ready(), repeats, warmup)
    reference = np.asarray(reference, np.float32)
    return {"compile_s": compile_s, "ms": statistics.median(times) * 1e3, "times_ms": [t * 1e3 for t in times],
            "rel_diff": float(np.max(np.abs(out - reference)) / max(float(np.max(np.abs(reference))), 1e-30)),
            "finite": bool(np.isfinite(out).all()),
            "fp8_gemm": FP8_GEMM_CALL in compiled.as_text() if jax.default_backend() == "gpu" else None}


def compile_seconds(cfg: TransformerConfig, layers: int, dtype, impl, batch, shape, text_tokens) -> float:
    cfg = cfg.replace(num_layers=layers)
    module = LTXVideoTransformer3DModel(cfg, dtype=dtype, param_dtype=dtype, attention_implementation=impl)
    abstract = abstract_params(module)
    f, h, w = shape
    args = (
        jax.ShapeDtypeStruct((batch, f * h * w, cfg.in_channels), jnp.float32),
        jax.ShapeDtypeStruct((batch, text_tokens, cfg.caption_channels), jnp.float32),
        jax.ShapeDtypeStruct((batch,), jnp.float32),
        jax.ShapeDtypeStruct((batch, text_tokens), jnp.int32),
    )
    fn = jax_forward_fn(module, shape)
    start = time.perf_counter()
    fn.lower(abstract, *args).compile()
    return time.perf_counter() - start


class TorchSide:
    """diffusers' model with the same config; our params are converted from its weights so both share them."""

    def __init__(self, cfg: TransformerConfig, dtype: str, threads: int | None):
        # deferred: torch and diffusers (the reference) are optional, loaded only where used
        import torch
        from diffusers import LTXVideoTransformer3DModel as TorchTransformer

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        torch.manual_seed(0)
        kwargs = {k: v for k, v in cfg.to_dict().items() if k != "_class_name"}
        self.model = TorchTransformer(**kwargs).to(self.device, self.dtype).eval()

    def jax_params(self, module):
        from weight_conversion.mapping import convert
        from weight_conversion.transformer import transformer_rules

        state = self.model.state_dict()

        class Source(dict):
            def __getitem__(self, key):
                return state[key].float().cpu().numpy()

        source = Source({k: None for k in state})
        abstract = abstract_params(module)
        return convert(source, transformer_rules(module.config, abstract), abstract, module.param_dtype,
                       what="transformer", source_shape=lambda k: tuple(state[k].shape))

    def forward_fn(self, inputs, shape):
        torch = self.torch
        f, h, w = shape
        hidden, text, timestep, mask = (torch.from_numpy(np.asarray(x)).to(self.device) for x in inputs)
        hidden, text = hidden.to(self.dtype), text.to(self.dtype)

        def run():
            with torch.inference_mode():
                return self.model(hidden, text, timestep, mask, num_frames=f, height=h, width=w,
                                  rope_interpolation_scale=(8 / 25, 32, 32), return_dict=False)[0]

        return run

    def block(self, out):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        return out


FAMILIES = ("ltx-video", "ltx2")


def main(argv=None) -> int:
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--family", default="ltx-video", choices=FAMILIES)
    family, rest = pre.parse_known_args(argv)
    if family.family == "ltx2":
        return bench_ltx2_transformer.main(rest)
    on_gpu = jax.default_backend() == "gpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="ltx-video", choices=FAMILIES,
                        help="ltx-video (this benchmark) or ltx2 (LTX-2's audio-video transformer: "
                             "benchmarks/bench_ltx2_transformer.py, with its own flags)")
    parser.add_argument("--preset", default="ltx-video-2b", choices=sorted(TRANSFORMER_PRESETS))
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--shapes", default="9x32x32,9x64x64,17x64x64" if on_gpu else "2x8x8,3x8x16",
                        help="latent frames x height x width, comma separated")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--text-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="bfloat16" if on_gpu else "float32", choices=["float32", "bfloat16"])
    parser.add_argument("--attention", default=None, choices=[None, "xla", "cudnn"], help="default: automatic")
    parser.add_argument("--repeats", type=int, default=10 if on_gpu else 5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compare-torch", action="store_true")
    parser.add_argument("--fp8", action="store_true", help="also time fp8 matmuls (compute='fp8')")
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--skip-compile-time", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    cfg = TRANSFORMER_PRESETS[args.preset].replace(num_layers=args.layers)
    dtype = jnp.dtype(args.dtype)
    shapes = parse_shapes(args.shapes)
    device = jax.devices()[0].device_kind
    print(f"device: {device} ({jax.default_backend()}), jax {jax.__version__}, {args.preset} x {args.layers} layers, "
          f"{args.dtype}, batch {args.batch}, {args.text_tokens} text tokens")

    torch_side = TorchSide(cfg, args.dtype, args.torch_threads) if args.compare_torch else None
    module, params = build_jax(cfg, dtype, args.attention)
    if torch_side is not None:
        params = torch_side.jax_params(module)
    print(f"params: {count_params(params):,}; attention: {module.resolved_attention_implementation}")
    fp8_model_params = fp8_model(module, params) if args.fp8 else None

    results = {"device": device, "backend": jax.default_backend(), "jax": jax.__version__, "dtype": args.dtype,
               "layers": args.layers, "batch": args.batch, "text_tokens": args.text_tokens, "shapes": []}
    header = f"{'latent FxHxW':>13} {'tokens':>7} {'GFLOP':>9} {'ours ms':>9} {'TFLOP/s':>8}"
    if torch_side:
        header += f" {'torch ms':>9} {'ratio':>6} {'max rel diff':>12}"
    if args.fp8:
        header += f" {'fp8 ms':>9} {'speed-up':>8} {'fp8 rel diff':>12} {'fp8 GEMM':>8}"
    print(header)
    for shape in shapes:
        inputs = make_inputs(cfg, args.batch, shape, args.text_tokens)
        dev_inputs = tuple(jnp.asarray(x) for x in inputs)
        forward = jax_forward_fn(module, shape)
        out = forward(params, *dev_inputs)
        out.block_until_ready()
        if not bool(jnp.all(jnp.isfinite(out))):
            raise RuntimeError(f"non-finite output at {shape}")
        times = sample_times(lambda: forward(params, *dev_inputs).block_until_ready(), args.repeats, args.warmup)
        tokens = shape[0] * shape[1] * shape[2]
        flops = forward_flops(cfg, args.batch, tokens, args.text_tokens)
        ours = statistics.median(times)
        row = {"shape": "x".join(map(str, shape)), "tokens": tokens, "flops": flops, "ms": ours * 1e3,
               "tflops": flops / ours / 1e12, "times_ms": [t * 1e3 for t in times]}
        line = f"{row['shape']:>13} {tokens:>7} {flops / 1e9:>9.1f} {ours * 1e3:>9.2f} {row['tflops']:>8.2f}"
        if torch_side:
            run = torch_side.forward_fn(inputs, shape)
            ref = run()
            torch_side.block(ref)
            ttimes = sample_times(lambda: torch_side.block(run()), args.repeats, args.warmup)
            theirs = statistics.median(ttimes)
            ref = ref.float().cpu().numpy()
            diff = float(np.max(np.abs(np.asarray(out, np.float32) - ref)) / np.max(np.abs(ref)))
            row.update({"torch_ms": theirs * 1e3, "ratio": ours / theirs, "max_rel_diff": diff})
            line += f" {theirs * 1e3:>9.2f} {ours / theirs:>6.2f} {diff:>12.2e}"
        if args.fp8:
            fp8 = time_fp8(*fp8_model_params, shape, dev_inputs, out, args.repeats, args.warmup)
            row["fp8"] = dict(fp8, speedup=row["ms"] / fp8["ms"])
            line += f" {fp8['ms']:>9.2f} {row['fp8']['speedup']:>8.2f} {fp8['rel_diff']:>12.2e} {fp8['fp8_gemm']!s:>8}"
        print(line, flush=True)
        results["shapes"].append(row)

    if not args.skip_compile_time:
        c4 = compile_seconds(cfg, 4, dtype, args.attention, args.batch, shapes[0], args.text_tokens)
        c28 = compile_seconds(cfg, 28, dtype, args.attention, args.batch, shapes[0], args.text_tokens)
        results["compile_s"] = {"4": c4, "28": c28, "ratio": c28 / c4}
        print(f"jit compile at {'x'.join(map(str, shapes[0]))}: 4 layers {c4:.2f} s, 28 layers {c28:.2f} s, "
              f"ratio {c28 / c4:.2f}")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

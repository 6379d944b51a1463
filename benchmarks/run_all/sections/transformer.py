"""Section transformer: the forward pass per latent shape against diffusers (same weights), the same model with fp8
matmuls (``compute="fp8"``) against it, and compile time with few and many layers."""

from __future__ import annotations

import time

import numpy as np

from ..builders import count_params, init_params, rng_key, transformer_module, tree_bytes
from ..context import Context, add_timing, first_call_name, jax_block, load_bench, rel_diff, timed
from ..hardware import (compiled_memory, device_peak_bytes, is_oom, short_error, torch_free, torch_peak,
                        torch_reset_peak)
from ..sizes import transformer_config


def section_transformer(ctx: Context) -> None:
    """Forward pass per latent shape against diffusers on the same card with the same weights; compile times."""
    import jax
    import jax.numpy as jnp

    bt = load_bench("bench_transformer")
    s, rec = ctx.sizes, ctx.rec
    cfg = transformer_config(s.transformer, s.transformer_layers)
    dt = jnp.dtype(s.dtype)
    batch = 1
    module = transformer_module(cfg, dt)
    torch = ctx.torch("diffusers transformer")
    side = None
    if torch is not None:
        side = bt.TorchSide(cfg, s.dtype, None)  # builds diffusers' model; our params are converted from it
        params = side.jax_params(module)
    else:
        params = init_params(module, rng_key(0))
    params = jax.block_until_ready(params)
    rec.info(config=cfg.to_dict(), params=count_params(params), param_bytes=tree_bytes(params), dtype=s.dtype,
             attention=module.resolved_attention_implementation, text_tokens=s.text_tokens, batch=batch,
             weights="shared with diffusers" if side else "random")

    fp8 = None
    for shape in s.transformer_shapes:
        f, h, w = shape
        tokens = f * h * w
        flops = bt.forward_flops(cfg, batch, tokens, s.text_tokens)
        inputs = bt.make_inputs(cfg, batch, shape, s.text_tokens)
        row = rec.case(f"transformer {cfg.num_layers} layers {f}x{h}x{w}", tokens=tokens, flops=flops)
        first_row = rec.case(first_call_name(row["name"]), first_call=True)
        ref = None
        if side is not None:
            try:
                torch_reset_peak(torch)
                run = side.forward_fn(inputs, shape)
                start = time.perf_counter()
                ref = run()
                side.block(ref)
                rec.update(first_row, torch_ms=(time.perf_counter() - start) * 1e3)
                tmed = add_timing(row, "torch", timed(run, s.warmup, s.repeats, side.block))
                ref = ref.float().cpu().numpy()
                rec.update(row, torch_tflops=flops / tmed / 1e12, torch_peak_bytes=torch_peak(torch))
            except Exception as e:  # noqa: BLE001
                rec.update(row, torch_error=short_error(e))
                ref = None
            torch_free(torch)
        try:
            dev_inputs = jax_block(tuple(jnp.asarray(x) for x in inputs))
            first_start = time.perf_counter()  # the first call: tracing, lowering, compiling, one run
            lowered = bt.jax_forward_fn(module, shape).lower(params, *dev_inputs)
            start = time.perf_counter()
            compiled = lowered.compile()
            compile_s = time.perf_counter() - start
            out = jax_block(compiled(params, *dev_inputs))
            rec.update(first_row, ours_ms=(time.perf_counter() - first_start) * 1e3)
            if first_row.get("torch_ms"):
                rec.update(first_row, ratio=first_row["ours_ms"] / first_row["torch_ms"])
            med = add_timing(row, "ours", timed(lambda: compiled(params, *dev_inputs), s.warmup, s.repeats, jax_block))
            out = np.asarray(out.astype(jnp.float32))
            rec.update(row, compile_s=compile_s, tflops=flops / med / 1e12, peak_bytes=device_peak_bytes(),
                       compiled_memory=compiled_memory(compiled), finite=bool(np.isfinite(out).all()))
            block_record(rec, row, cfg, dt, batch, tokens, s.text_tokens, module.resolved_attention_implementation)
            if ref is not None:
                rec.update(row, ratio=med / (row["torch_ms"] / 1e3), max_rel_diff=rel_diff(out, ref))
            ctx.log(f"{row['name']}: ours {row['ours_ms']:.2f} ms, torch {row.get('torch_ms')} ms")
        except Exception as e:  # noqa: BLE001
            rec.update(row, error=short_error(e))
            if not is_oom(e):
                raise
            continue
        if fp8 is None:
            fp8 = bt.fp8_model(module, params)  # the same weights, quantized once (on the host)
        fp8_case(ctx, bt, fp8, shape, dev_inputs, out, row)
    rows = [r for r in rec.data["cases"] if r.get("tokens") and "ours_ms" in r and not r.get("first_call")]
    fp8_rows = [r for r in rec.data["cases"] if r.get("speedup") is not None]
    rec.check("every shape ran", len(rows) == len(s.transformer_shapes), value=len(rows),
              limit=len(s.transformer_shapes))
    rec.check("outputs finite", all(r.get("finite") for r in rows + fp8_rows))
    for r in rows:
        if "ratio" in r:
            rec.goal(f"{r['name']}: ours / diffusers", r["ratio"], 0.9 if ctx.on_gpu else 0.8)
    if ctx.on_gpu and cfg.inner_dim == 2048 and cfg.num_layers == 4:
        for r, target in zip(rows, (14.0, 130.0, 420.0)):
            rec.goal(f"{r['name']}: ms (DESIGN.md)", r["ours_ms"], target)

    if ctx.on_gpu and fp8_rows:
        rec.check("fp8 matmuls run as cuBLASLt fp8 GEMMs", all(r.get("fp8_gemm") for r in fp8_rows),
                  value=[r.get("fp8_gemm") for r in fp8_rows], note=bt.FP8_GEMM_CALL)
        for r in fp8_rows:
            rec.goal(f"{r['name']}: {s.dtype} / fp8 time", r["speedup"], 1.4, ">=")
            rec.goal(f"{r['name']}: max rel diff from {s.dtype}", r["max_rel_diff"], 5e-2)

    lo, hi = s.transformer_compile_layers
    if ctx.has_time(s.estimates["transformer_compile"], "compile time 4 vs 28 layers"):
        c_lo = bt.compile_seconds(cfg, lo, dt, None, batch, s.transformer_shapes[0], s.text_tokens)
        c_hi = bt.compile_seconds(cfg, hi, dt, None, batch, s.transformer_shapes[0], s.text_tokens)
        f, h, w = s.transformer_shapes[0]
        rec.case(f"compile {hi} vs {lo} layers at {f}x{h}x{w}", compile_s=c_hi, compile_lo_s=c_lo, ratio=c_hi / c_lo)
        rec.goal(f"compile time {hi} / {lo} layers", c_hi / c_lo, 1.3)


def fp8_case(ctx: Context, bt, fp8, shape, dev_inputs, reference, row: dict) -> None:
    """``fp8`` (``bt.fp8_model`` of the row's model: fp8 kernels quantized from its weights, fp8 matmuls) on the same
    inputs: a case of its own (``shape``, ``ours_ms``, ``speedup`` = the row's time / fp8's, ``max_rel_diff`` from the
    row's output, ``fp8_gemm``: cuBLASLt's fp8 GEMM in the optimised program, None off GPU). Skipped when the section's
    budget has less left than the row's own compile and runs took."""
    s, rec = ctx.sizes, ctx.rec
    need = row["compile_s"] + (s.warmup + s.repeats) * row["ours_ms"] / 1e3
    if not ctx.has_time(need, f"fp8 matmuls at {'x'.join(map(str, shape))}"):
        return
    case = rec.case(f"{row['name']}, fp8 matmuls", shape="x".join(map(str, shape)), fp8_tokens=row["tokens"])
    try:
        timing = bt.time_fp8(*fp8, shape, dev_inputs, reference, s.repeats, s.warmup)
    except Exception as e:  # noqa: BLE001
        rec.update(case, error=short_error(e))
        if not is_oom(e):
            raise
        return
    add_timing(case, "ours", [t / 1e3 for t in timing["times_ms"]])
    rec.update(case, compile_s=timing["compile_s"], speedup=row["ours_ms"] / case["ours_ms"],
               max_rel_diff=timing["rel_diff"], fp8_gemm=timing["fp8_gemm"], finite=timing["finite"])
    ctx.log(f"{case['name']}: {case['ours_ms']:.2f} ms, {case['speedup']:.2f}x, rel diff {timing['rel_diff']:.1e}, "
            f"fp8 GEMM {timing['fp8_gemm']}")


def block_record(rec, row: dict, cfg, dtype, batch: int, tokens: int, text_tokens: int, implementation: str) -> None:
    """One block of the row's model compiled alone at the row's shape (``ltx_jax.models.block_traffic``): XLA's bytes
    accessed (``Compiled.cost_analysis()``) against an ideal fused block's, and the token-sized buffers it writes
    (count, [B, N, D] tensors' worth, and how many of those are float32), next to the row's time."""
    # deferred: the sections import JAX only when they run
    from ltx_jax.models.block_traffic import block_traffic

    try:
        traffic = block_traffic(cfg, dtype, batch, tokens, text_tokens, implementation)
    except Exception as e:  # noqa: BLE001
        rec.update(row, block_error=short_error(e))
        return
    rec.update(row, block_bytes_accessed=traffic.bytes_accessed, block_ideal_bytes=traffic.ideal_bytes,
               block_token_buffers=traffic.count, block_buffer_tensors=round(traffic.units, 2),
               block_float32_tensors=round(sum(b.units for b in traffic.buffers if b.dtype == "f32"), 2))

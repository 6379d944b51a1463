"""Section text_encoder: T5 encode, masked and unmasked, against transformers' T5EncoderModel on the same card."""

from __future__ import annotations

import time
import traceback

import numpy as np

from ..builders import init_params, rng_key, t5_module, tree_bytes
from ..context import Context, add_timing, first_call_name, jax_block, load_bench, timed
from ..hardware import (compiled_memory, device_peak_bytes, short_error, torch_build, torch_dtype, torch_free,
                        torch_peak, torch_reset_peak, torch_sync)
from ..sizes import t5_config


def section_text_encoder(ctx: Context) -> None:
    """T5 encode (masked and unmasked) against transformers' T5EncoderModel on the same card (random weights)."""
    import jax
    import jax.numpy as jnp

    bte = load_bench("bench_text_encoder")
    s, rec = ctx.sizes, ctx.rec
    cfg = t5_config(s.t5)
    dt = jnp.dtype(s.dtype)
    ids, mask = bte.make_inputs(cfg, s.t5_batch, s.t5_tokens)
    flops = bte.matmul_flops(cfg, s.t5_batch, s.t5_tokens)
    modes = (("unmasked (LTXPipeline)", False), ("masked (LTXConditionPipeline)", True))
    rows = {label: rec.case(f"T5 {cfg.num_layers} layers d{cfg.d_model} encode {s.t5_batch}x{s.t5_tokens} {label}",
                            flops=flops)
            for label, _ in modes}
    first_rows = {label: rec.case(first_call_name(rows[label]["name"]), first_call=True) for label, _ in modes}

    torch = ctx.torch("transformers T5", need=("transformers",))
    if torch is not None:
        try:
            # deferred: transformers (the reference) is optional, loaded only where used
            from transformers import T5Config as TorchT5Config
            from transformers import T5EncoderModel as TorchT5

            dev = ctx.torch_device()
            model = torch_build(torch, dev, torch_dtype(torch, s.dtype),
                                lambda: TorchT5(TorchT5Config(**cfg.to_dict())))
            tids = torch.from_numpy(ids).long().to(dev)
            tmask = torch.from_numpy(mask).long().to(dev)
            for label, use_mask in modes:
                def run(m=tmask if use_mask else None):
                    with torch.inference_mode():
                        return model(input_ids=tids, attention_mask=m).last_hidden_state

                torch_reset_peak(torch)
                start = time.perf_counter()
                torch_sync(torch, run())
                rec.update(first_rows[label], torch_ms=(time.perf_counter() - start) * 1e3)
                tmed = add_timing(rows[label], "torch", timed(run, s.warmup, s.repeats, lambda o: torch_sync(torch, o)))
                rec.update(rows[label], torch_tflops=flops / tmed / 1e12, torch_peak_bytes=torch_peak(torch))
            del model
        except Exception as e:  # noqa: BLE001
            rec.skip("transformers T5", f"failed: {short_error(e)}")
            rec.info(torch_traceback=traceback.format_exc())
        torch_free(torch)

    module = t5_module(cfg, dt)
    start = time.perf_counter()
    params = jax.block_until_ready(init_params(module, rng_key(0)))
    rec.info(config=cfg.to_dict(), params=sum(x.size for x in jax.tree_util.tree_leaves(params)),
             param_bytes=tree_bytes(params), init_s=time.perf_counter() - start, dtype=s.dtype, weights="random")
    forward = jax.jit(lambda p, i, m: module.apply({"params": p}, i, m))
    jids = jnp.asarray(ids)
    for label, use_mask in modes:
        jm = jnp.asarray(mask) if use_mask else None
        row = rows[label]
        first_start = time.perf_counter()  # the first call: tracing, lowering, compiling, one run
        lowered = forward.lower(params, jids, jm)
        start = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start
        out = jax_block(compiled(params, jids, jm))
        first_row = first_rows[label]
        rec.update(first_row, ours_ms=(time.perf_counter() - first_start) * 1e3)
        if first_row.get("torch_ms"):
            rec.update(first_row, ratio=first_row["ours_ms"] / first_row["torch_ms"])
        med = add_timing(row, "ours", timed(lambda: compiled(params, jids, jm), s.warmup, s.repeats, jax_block))
        rec.update(row, compile_s=compile_s, tflops=flops / med / 1e12, peak_bytes=device_peak_bytes(),
                   compiled_memory=compiled_memory(compiled),
                   finite=bool(np.isfinite(np.asarray(out.astype(jnp.float32))).all()))
        if "torch_ms" in row:
            rec.update(row, ratio=med / (row["torch_ms"] / 1e3))
    rec.check("outputs finite", all(r.get("finite") for r in rows.values()))


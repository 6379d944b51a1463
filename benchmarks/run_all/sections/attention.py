"""Section attention_cudnn_vs_xla: the default attention path (cuDNN on CUDA in bf16) against XLA and a float32
reference, and the compiled HLO holding (or not) cuDNN's fused-attention call."""

from __future__ import annotations

import time

import numpy as np

from ..builders import init_params, rng_key, transformer_module, tree_cast
from ..context import Context, add_timing, jax_block, load_bench, rel_diff, timed
from ..hardware import cudnn_attention_calls, cudnn_calls, device_peak_bytes, is_oom, short_error
from ..sizes import transformer_config


def section_attention_cudnn_vs_xla(ctx: Context) -> None:
    """Default attention path (cuDNN on CUDA bf16) vs XLA, and the compiled HLO holding (or not) cuDNN's call."""
    import jax
    import jax.numpy as jnp

    bt = load_bench("bench_transformer")
    s, rec = ctx.sizes, ctx.rec
    cfg = transformer_config(s.transformer, s.transformer_layers)
    dt = jnp.dtype(s.dtype)
    shape = s.attention_shape
    f, h, w = shape
    batch, text_tokens = len(s.attention_text_lengths), s.text_tokens
    default = transformer_module(cfg, dt)
    xla = default.clone(attention_implementation="xla")
    resolved = default.resolved_attention_implementation
    rec.info(config=cfg.to_dict(), shape=shape, dtype=s.dtype, text_lengths=s.attention_text_lengths,
             default_implementation=resolved, backend=jax.default_backend())

    params = init_params(default, rng_key(0))
    rng = np.random.default_rng(0)
    hidden = jnp.asarray(rng.standard_normal((batch, f * h * w, cfg.in_channels), dtype=np.float32))
    text = jnp.asarray(rng.standard_normal((batch, text_tokens, cfg.caption_channels), dtype=np.float32))
    mask = np.zeros((batch, text_tokens), np.int32)
    for b, n in enumerate(s.attention_text_lengths):
        mask[b, :n] = 1  # right padded: valid tokens first, as T5 tokenizers give
    mask = jnp.asarray(mask)
    timestep = jnp.asarray(np.linspace(900.0, 300.0, batch, dtype=np.float32))
    args = (hidden, text, timestep, mask)
    flops = bt.forward_flops(cfg, batch, f * h * w, text_tokens)

    # The default path first: its HLO checks stand even if XLA's attention (it materialises the [B, H, N, N] scores,
    # ~22 GB in float32 at the GPU size) ran out of memory below.
    outputs, calls = {}, {}
    for label, module, prm in (("default", default, params), ("xla", xla, params)):
        fn = bt.jax_forward_fn(module, shape)
        lowered = fn.lower(prm, *args)
        start = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start
        hlo = compiled.as_text()
        calls[label] = cudnn_attention_calls(hlo)
        impl = module.resolved_attention_implementation
        row = rec.case(f"transformer {cfg.num_layers} layers {f}x{h}x{w} attention={impl} ({label})", flops=flops,
                       compile_s=compile_s, implementation=impl, cudnn_fmha_calls=calls[label],
                       cudnn_calls_in_stablehlo=cudnn_attention_calls(lowered.as_text()),
                       cudnn_targets=cudnn_calls(hlo))
        try:
            out = jax_block(compiled(prm, *args))
            outputs[label] = np.asarray(out.astype(jnp.float32))
            del out
            med = add_timing(row, "ours", timed(lambda: compiled(prm, *args), s.warmup, s.repeats, jax_block))
            rec.update(row, tflops=flops / med / 1e12, finite=bool(np.isfinite(outputs[label]).all()),
                       peak_bytes=device_peak_bytes())
            ctx.log(f"{label}: attention={impl}, compile {compile_s:.1f} s, {med * 1e3:.2f} ms, "
                    f"cuDNN fmha calls in compiled HLO: {calls[label]}")
        except Exception as e:  # noqa: BLE001
            rec.update(row, error=short_error(e))
            if not is_oom(e):
                raise
        compiled = None  # frees the executable (the timing closure above names it)

    rec.check("xla path: no cuDNN attention call in compiled HLO", len(calls["xla"]) == 0, value=calls["xla"], limit=[])
    rec.check("both paths ran", set(outputs) == {"default", "xla"}, value=sorted(outputs),
              note="; ".join(r.get("error", "") for r in rec.data["cases"]))
    rec.check("outputs finite", all(np.isfinite(o).all() for o in outputs.values()))
    if set(outputs) == {"default", "xla"}:
        # A float32 XLA reference puts the two paths' errors in context (on CPU the run is float32: both are 0).
        diff = rel_diff(outputs["default"], outputs["xla"])
        rec.info(rel_diff_default_vs_xla=diff)
        rec.check(f"default ({resolved}) vs XLA: max|diff| / max|xla|", diff <= s.attention_rel_limit, value=diff,
                  limit=s.attention_rel_limit)
        try:
            f32 = xla.clone(dtype=jnp.float32, param_dtype=jnp.float32)
            ref = np.asarray(bt.jax_forward_fn(f32, shape)(tree_cast(params, jnp.float32), *args))
            err_default, err_xla = rel_diff(outputs["default"], ref), rel_diff(outputs["xla"], ref)
            rec.info(rel_diff_default_vs_fp32=err_default, rel_diff_xla_vs_fp32=err_xla)
            rec.check(f"default ({resolved}) error vs float32 no worse than 2x XLA's + 1e-3",
                      err_default <= 2 * err_xla + 1e-3, value=err_default, limit=2 * err_xla + 1e-3)
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            rec.skip("float32 reference", short_error(e))
    half = dt in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    if ctx.on_gpu:
        expected = "cudnn" if half else "xla"
        rec.check("default implementation on GPU", resolved == expected, value=resolved, limit=expected)
        if half:
            rec.check("cuDNN path taken: __cudnn$fmha custom call in compiled HLO", len(calls["default"]) > 0,
                      value=calls["default"], limit=">= 1 call")
    else:
        rec.skip("cudnn", "no GPU: cuDNN attention runs on CUDA only; the XLA path, the HLO inspection and the "
                          "comparison code ran (default = XLA here, against explicit XLA and float32)")
        rec.check("default implementation off GPU is XLA", resolved == "xla", value=resolved, limit="xla")
        rec.check("no cuDNN attention call in compiled HLO (CPU)", len(calls["default"]) == 0, value=calls["default"],
                  limit=[])


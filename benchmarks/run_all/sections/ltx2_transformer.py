"""Section ltx2_transformer: LTX-2's audio-video transformer (a release's width cut to a few layers) at one video
latent grid plus the audio tokens of the same clip, against diffusers' ``LTX2VideoTransformer3DModel`` with the same
weights (benchmarks/bench_ltx2_transformer.py's ``measure``: compile, warm-up, blocked timed calls, medians)."""

from __future__ import annotations

from ..builders import count_params, tree_bytes
from ..context import Context, load_bench
from ..hardware import compiled_memory, device_peak_bytes, is_oom, short_error, torch_free
from ..sizes import ltx2_transformer_config


def section_ltx2_transformer(ctx: Context) -> None:
    """LTX-2 audio-video transformer forward (video plus matching audio tokens) against diffusers, same weights."""
    # deferred: the sections import JAX only when they run
    import jax
    import jax.numpy as jnp

    bench = load_bench("bench_ltx2_transformer")
    s, rec = ctx.sizes, ctx.rec
    cfg = ltx2_transformer_config(s.ltx2_transformer, s.ltx2_layers)
    batch, shape, text_tokens = 1, s.ltx2_shape, s.ltx2_text_tokens
    module = bench.build_jax(cfg, jnp.dtype(s.dtype))
    torch = ctx.torch("diffusers LTX-2 transformer")
    side = None
    if torch is not None:
        side = bench.TorchSide(cfg, s.dtype)  # builds diffusers' model; our params are converted from it
        params = side.jax_params(module)
    else:
        params = bench.random_params(module)
    params = jax.block_until_ready(params)
    audio = bench.audio_tokens_for(cfg, shape[0])
    rec.info(config=cfg.to_dict(), source=list(s.ltx2_transformer), params=count_params(params),
             param_bytes=tree_bytes(params), dtype=s.dtype, attention=module.resolved_attention_implementation,
             batch=batch, video_latent=list(shape), video_frames=bench.video_frames(cfg, shape[0]), fps=bench.FPS,
             audio_tokens=audio, text_tokens=text_tokens,
             weights="shared with diffusers" if side else "random")

    f, h, w = shape
    tokens = f * h * w
    flops = bench.ltx2_forward_flops(cfg, batch, tokens, audio, text_tokens)
    row = rec.case(f"ltx2 transformer {cfg.num_layers} layers {f}x{h}x{w} + {audio} audio tokens", tokens=tokens,
                   audio_tokens=audio, text_tokens=text_tokens, flops=flops)
    try:
        result, compiled = bench.measure(module, params, batch, shape, text_tokens, s.repeats, s.warmup, side)
    except Exception as e:  # noqa: BLE001
        rec.update(row, error=short_error(e))
        if not is_oom(e):
            raise
        result = None
    if side is not None:
        torch_free(torch)
    if result is not None:
        result = dict(result)
        result["ours_ms"], result["ours_times_ms"] = result.pop("ms"), result.pop("times_ms")
        rec.update(row, **{k: v for k, v in result.items() if k not in ("shape", "video_tokens", "flops")},
                   peak_bytes=device_peak_bytes(), compiled_memory=compiled_memory(compiled))
        ctx.log(f"{row['name']}: ours {row['ours_ms']:.2f} ms, diffusers {row.get('torch_ms')} ms, rel diff "
                f"{row.get('max_rel_diff')}")
    rec.check("the shape ran", "ours_ms" in row)
    rec.check("outputs finite", bool(row.get("finite")) and row.get("torch_finite", True) is not False)
    if "max_rel_diff" in row:
        limit = 1e-4 if s.dtype == "float32" else 5e-2
        rec.goal(f"{row['name']}: max rel diff from diffusers", row["max_rel_diff"], limit)
        rec.goal(f"{row['name']}: ours / diffusers", row["ratio"], 0.9 if ctx.on_gpu else 1.0)

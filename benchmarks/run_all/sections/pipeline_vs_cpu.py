"""Section pipeline_vs_cpu_fp32: a small pipeline in bf16 (and float32) on the accelerator against float32 on the
CPU backend with the same params (PSNR)."""

from __future__ import annotations

import time

import numpy as np

from ..builders import build_pipeline, tree_cast, word_tokenizer
from ..context import Context, first_call_name, psnr
from ..sizes import NEGATIVE_PROMPT, PROMPT, t5_config, transformer_config, vae_config


def section_pipeline_vs_cpu_fp32(ctx: Context) -> None:
    """The whole pipeline in the run dtype on the accelerator against float32 on the CPU backend, same params."""
    import jax
    import jax.numpy as jnp

    s, rec = ctx.sizes, ctx.rec
    tcfg, vcfg, t5cfg = transformer_config(s.pvc_transformer), vae_config(s.pvc_vae), t5_config(s.pvc_t5)
    height, width, frames = s.pvc_video
    tokenizer = word_tokenizer()
    cpu = jax.devices("cpu")[0]
    accel = jax.devices()[0]
    rec.info(video=s.pvc_video, steps=s.pvc_steps, guidance=s.pvc_guidance, transformer=tcfg.to_dict(),
             accelerator=str(accel), reference=str(cpu))
    call = dict(prompt=PROMPT, negative_prompt=NEGATIVE_PROMPT, height=height, width=width, num_frames=frames,
                num_inference_steps=s.pvc_steps, guidance_scale=s.pvc_guidance, seed=0)
    preset = "ltx-video-0.9.1"  # timestep-conditioned decode with decode noise, dynamic shift: every stage runs

    with jax.default_device(cpu):
        pipe, params32 = build_pipeline(tcfg, vcfg, t5cfg, "float32", preset, tokenizer)
        start = time.perf_counter()
        ref = pipe(**call)
        row = rec.case("pipeline float32 on CPU (reference)", ours_ms=(time.perf_counter() - start) * 1e3,
                       device=str(cpu), shape=list(ref.shape))
    rec.check("reference frames finite", bool(np.isfinite(ref).all()))

    targets = [(f"bfloat16 on {accel.platform}", accel, "bfloat16", s.pvc_psnr_min)]  # CPU-only: bf16 on the CPU
    if ctx.on_gpu:
        targets.append((f"float32 on {accel.platform}", accel, "float32", s.pvc_psnr_min_fp32))
    for label, device, dtype, limit in targets:
        moved = jax.device_put(tree_cast(params32, jnp.dtype(dtype)), device)
        with jax.default_device(device):
            pipe, _ = build_pipeline(tcfg, vcfg, t5cfg, dtype, preset, tokenizer, params=moved)
            start = time.perf_counter()
            out = pipe(**call)
            first = time.perf_counter() - start
            start = time.perf_counter()
            again = pipe(**call)
            second = time.perf_counter() - start
        value = psnr(out, ref)
        rec.case(first_call_name(f"pipeline {label}"), ours_ms=first * 1e3, first_call=True, device=str(device))
        row = rec.case(f"pipeline {label} vs float32 CPU", ours_ms=second * 1e3, first_call_ms=first * 1e3,
                       psnr_db=value, max_abs_diff=float(np.max(np.abs(out - ref))), device=str(device),
                       attention=pipe.transformer.resolved_attention_implementation,
                       repeat_identical=bool(np.array_equal(out, again)))
        ctx.log(f"{label}: PSNR vs float32 CPU {value:.2f} dB (attention {row['attention']})")
        rec.check(f"PSNR {label} vs float32 CPU (dB)", value >= limit, value=value, limit=limit)
        rec.check(f"{label}: frames finite", bool(np.isfinite(out).all()))


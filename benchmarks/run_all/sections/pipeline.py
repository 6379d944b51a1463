"""Section pipeline: text encoding, denoising and decoding, stage by stage, against diffusers' LTXPipeline."""

from __future__ import annotations

import time
import traceback

import numpy as np

from ..builders import (build_pipeline, init_vae_decoder, pipeline_tiles_vae, rng_key, tree_bytes, vae_decode_fn,
                        word_tokenizer)
from ..context import Context, add_timing, first_call_name, load_bench, timed
from ..hardware import (traced_flops, device_peak_bytes, short_error, torch_build, torch_dtype, torch_free,
                        torch_peak, torch_reset_peak, torch_sync)
from ..sizes import (PROMPT, config_kwargs, generation_defaults, scheduler_config, t5_config, transformer_config,
                     vae_config)

STAGES = ("text_encoding", "denoising", "decoding", "total")


def section_pipeline(ctx: Context) -> None:
    """Text encoding + denoising + decoding, stage by stage, against diffusers' LTXPipeline (random weights)."""
    import jax
    import jax.numpy as jnp

    bt, bte = load_bench("bench_transformer"), load_bench("bench_text_encoder")
    s, rec = ctx.sizes, ctx.rec
    tcfg, vcfg, t5cfg = transformer_config(s.pipe_transformer), vae_config(s.pipe_vae), t5_config(s.pipe_t5)
    dt = jnp.dtype(s.dtype)
    height, width, frames = s.pipe_video
    preset = generation_defaults(s.pipe_preset)
    steps = len(preset.timesteps) if preset.timesteps else preset.num_inference_steps
    guidance = preset.guidance_scale
    groups = 2 if guidance > 1 else 1
    lat = ((frames - 1) // 8 + 1, height // 32, width // 32)
    tokens = lat[0] * lat[1] * lat[2]
    text_tokens = 128
    tiled = pipeline_tiles_vae(frames, height, width)
    tokenizer = word_tokenizer(text_tokens)
    rec.info(video=s.pipe_video, latent=lat, steps=steps, guidance=guidance, preset=s.pipe_preset, dtype=s.dtype,
             vae_tiled=tiled, transformer=tcfg.to_dict(), vae=vcfg.to_dict(), text_encoder=t5cfg.to_dict(),
             weights="random (each side its own)")

    flops = {
        "text_encoding": bte.matmul_flops(t5cfg, groups, text_tokens),
        "denoising": steps * bt.forward_flops(tcfg, groups, tokens, text_tokens),
    }
    abstract_vae = jax.eval_shape(lambda: init_vae_decoder(vcfg, dt, rng_key(0)))
    z_abs = jax.ShapeDtypeStruct((1, *lat, vcfg.latent_channels), dt)
    flops["decoding"] = traced_flops(vae_decode_fn(vcfg, dt, None), abstract_vae, z_abs,
                                     jax.ShapeDtypeStruct((1,), jnp.float32))
    flops["total"] = None if flops["decoding"] is None else sum(flops.values())
    base = f"pipeline {width}x{height}x{frames} {steps} steps"
    # The first call's rows first (the order things happen; the median total stays the last row)
    first_rows = {k: rec.case(first_call_name(base, k.replace("_", " ")), first_call=True) for k in STAGES}
    stage_rows = {k: rec.case(f"{base}: {k.replace('_', ' ')}", flops=flops[k]) for k in STAGES}

    start = time.perf_counter()
    pipe, params = build_pipeline(tcfg, vcfg, t5cfg, s.dtype, s.pipe_preset, tokenizer)
    rec.info(build_s=time.perf_counter() - start, param_bytes={k: tree_bytes(v) for k, v in params.items()},
             attention=pipe.transformer.resolved_attention_implementation, peak_bytes_after_build=device_peak_bytes())
    call = dict(prompt=PROMPT, height=height, width=width, num_frames=frames, max_sequence_length=text_tokens,
                output_type="uint8")  # what the command line asks for: frames leave the device once, as uint8
    start = time.perf_counter()
    frames_out = pipe(**call, seed=0)
    first = time.perf_counter() - start
    first_stages = pipe.last_timings.as_dict()
    rec.info(first_call_s=first, first_call_stages=first_stages, peak_bytes_after_first_call=device_peak_bytes())
    for k, row in first_rows.items():
        rec.update(row, ours_ms=first_stages[k] * 1e3)
    rec.check("frames finite", bool(np.isfinite(frames_out).all()))
    rec.check("frames shape", list(frames_out.shape) == [1, frames, height, width, 3], value=list(frames_out.shape),
              limit=[1, frames, height, width, 3])
    del frames_out
    for _ in range(s.pipe_warmup):
        pipe(**call, seed=0)
    stages = []
    for i in range(s.pipe_repeats):
        pipe(**call, seed=i + 1)
        stages.append(pipe.last_timings.as_dict())
    for k, row in stage_rows.items():
        times = [st[k] for st in stages]
        med = add_timing(row, "ours", times)
        rec.update(row, first_call_ms=first_stages[k] * 1e3,
                   tflops=None if not flops[k] or med <= 0 else flops[k] / med / 1e12)
    total = stage_rows["total"]
    rec.update(total, peak_bytes=device_peak_bytes())
    del pipe, params

    torch = ctx.torch("diffusers LTXPipeline", need=("diffusers", "transformers"))
    # diffusers after ours (ours is the figure that matters; the comparison is skipped when the time is short). JAX
    # keeps the memory it used; torch gets the rest of the card.
    if torch is not None and ctx.has_time(s.estimates["pipeline_torch"], "diffusers LTXPipeline"):
        try:
            # deferred: diffusers and transformers (the reference) are optional, loaded only where used
            from diffusers import AutoencoderKLLTXVideo as TorchVAE
            from diffusers import FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
            from diffusers import LTXPipeline as TorchPipeline
            from transformers import T5Config as TorchT5Config
            from transformers import T5EncoderModel as TorchT5

            dev, tdt = ctx.torch_device(), torch_dtype(torch, s.dtype)
            theirs = TorchPipeline(
                scheduler=FlowMatchEulerDiscreteScheduler(**scheduler_config().to_dict()),
                vae=torch_build(torch, dev, tdt, lambda: TorchVAE(**config_kwargs(vcfg))),
                text_encoder=torch_build(torch, dev, tdt, lambda: TorchT5(TorchT5Config(**t5cfg.to_dict()))),
                tokenizer=tokenizer,
                transformer=torch_build(torch, dev, tdt, lambda: LTXVideoTransformer3DModel(**config_kwargs(tcfg))),
            )
            theirs.set_progress_bar_config(disable=True)
            if tiled:
                theirs.vae.enable_tiling()
                theirs.vae.use_framewise_decoding = True
            # diffusers' LTXPipeline always passes sigmas, so it cannot take the distilled timesteps: the same number
            # of steps with its default schedule does the same work.
            kw = dict(prompt=PROMPT, height=height, width=width, num_frames=frames, num_inference_steps=steps,
                      guidance_scale=guidance, decode_timestep=preset.decode_timestep,
                      decode_noise_scale=preset.decode_noise_scale, output_type="np", max_sequence_length=text_tokens)

            def run():
                with torch.inference_mode():
                    return torch_sync(torch, theirs(**kw, generator=torch.Generator(dev).manual_seed(0)).frames)

            torch_reset_peak(torch)
            start = time.perf_counter()
            run()
            first = time.perf_counter() - start
            row = stage_rows["total"]
            tmed = add_timing(row, "torch", timed(run, 0, s.pipe_repeats, lambda o: o))
            rec.update(row, torch_first_call_ms=first * 1e3, torch_peak_bytes=torch_peak(torch),
                       torch_tflops=None if flops["total"] is None else flops["total"] / tmed / 1e12,
                       torch_note="diffusers' default 8-step schedule (it cannot take custom timesteps)")
            rec.update(row, ratio=row["ours_ms"] / row["torch_ms"])
            first_row = first_rows["total"]
            rec.update(first_row, torch_ms=first * 1e3, ratio=first_row["ours_ms"] / (first * 1e3))
            del theirs
        except Exception as e:  # noqa: BLE001
            rec.skip("diffusers LTXPipeline", f"failed: {short_error(e)}")
            rec.info(torch_traceback=traceback.format_exc())
        torch_free(torch)

    if ctx.on_gpu and s.pipe_video == (512, 768, 121) and tcfg.inner_dim == 2048:
        rec.goal("2B distilled 768x512x121 8 steps, total s (goals.py)", total["ours_ms"] / 1e3, 0.7)


"""Section vae: decode tiled and untiled against diffusers (same weights), per-case peak memory, and the compiled
memory of tiled decode for F and 2F latent frames."""

from __future__ import annotations

import dataclasses
import time
import traceback

import numpy as np

from ..builders import (init_vae_decoder, rng_key, vae_decode_fn, vae_decode_params,
                        vae_decoder_params_from_torch)
from ..context import Context, add_timing, first_call_name, jax_block, rel_diff, timed
from ..hardware import (compiled_memory, traced_flops, device_peak_bytes, is_oom, short_error, torch_build,
                        torch_dtype, torch_free, torch_peak, torch_reset_peak, torch_sync)
from ..sizes import config_kwargs, vae_config, vae_tiling


def section_vae(ctx: Context) -> None:
    """VAE decode tiled and untiled against diffusers (same weights); per-case memory; tiled memory for F and 2F."""
    import jax
    import jax.numpy as jnp

    s, rec = ctx.sizes, ctx.rec
    cfg = vae_config(s.vae)
    dt = jnp.dtype(s.dtype)
    frames, height, width = s.vae_latent
    shape = (1, frames, height, width, cfg.latent_channels)
    tiling = vae_tiling(s.vae_tiling)
    z_np = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t_np = np.full((1,), 0.05, np.float32)
    out_frames = (frames - 1) * cfg.temporal_ratio + 1
    video = f"{out_frames}x{height * cfg.spatial_ratio}x{width * cfg.spatial_ratio}"
    # diffusers' layout at the run's tile sizes (compared with diffusers' tiled decode), and the uniform layout the
    # pipelines' "auto" tiling uses: the same spatial tiles, whole frames, one decoder (compared with the whole decode)
    uniform = dataclasses.replace(tiling, layout="uniform", temporal=False)
    cases = (("tiled", tiling), ("uniform tiled", uniform), ("untiled", None))
    rows = {name: rec.case(f"VAE decode {name} latent {frames}x{height}x{width} -> {video}") for name, _ in cases}
    first_rows = {name: rec.case(first_call_name(rows[name]["name"]), first_call=True) for name, _ in cases}
    rec.info(config=cfg.to_dict(), latent=s.vae_latent, tiling=dataclasses.asdict(tiling),
             uniform_tiling=dataclasses.asdict(uniform), dtype=s.dtype)

    # FLOPs of one whole (untiled) decode, from its traced program (no compile); tiled decoding does this work plus
    # the overlaps.
    abstract = jax.eval_shape(lambda: init_vae_decoder(cfg, dt, rng_key(0)))
    z_abs = jax.ShapeDtypeStruct(shape, dt)
    t_abs = jax.ShapeDtypeStruct((1,), jnp.float32)
    flops = traced_flops(vae_decode_fn(cfg, dt, None), abstract, z_abs, t_abs)
    rec.info(flops_untiled_decode=flops, flops_source="matrix products and convolutions of the traced untiled decode")
    for row in rows.values():
        rec.update(row, flops=flops)

    params = None
    torch = ctx.torch("diffusers VAE")
    # diffusers first, so that each side has the whole card (JAX keeps what it allocated), and only when there is
    # time for both: ours is never squeezed out by the comparison.
    if torch is not None and ctx.has_time(s.estimates["vae_torch"] + s.estimates["vae_ours"], "diffusers VAE"):
        # deferred: diffusers (the reference) is optional, loaded only where used
        from diffusers import AutoencoderKLLTXVideo as TorchVAE

        dev = ctx.torch_device()
        model = torch_build(torch, dev, torch.float32, lambda: TorchVAE(**config_kwargs(cfg)))
        params = vae_decode_params(vae_decoder_params_from_torch(model.decoder, cfg, dt), cfg, dt)
        rec.info(weights="shared with diffusers")
        model = model.to(torch_dtype(torch, s.dtype))
        z_t = torch.from_numpy(z_np).permute(0, 4, 1, 2, 3).to(dev, torch_dtype(torch, s.dtype))
        t_t = torch.from_numpy(t_np).to(dev, torch_dtype(torch, s.dtype))
        refs = {}
        for name, tl in cases:
            row = rows[name]
            if tl is not None and tl.layout != "diffusers":
                continue  # diffusers has no such layout
            if not ctx.has_time(s.estimates["vae_torch"] / 2 + s.estimates["vae_ours"], f"diffusers VAE {name}"):
                continue
            model.use_tiling = model.use_framewise_decoding = tl is not None
            if tl is not None:
                model.enable_tiling(**{k: getattr(tl, k) for k in (
                    "tile_sample_min_height", "tile_sample_min_width", "tile_sample_min_num_frames",
                    "tile_sample_stride_height", "tile_sample_stride_width", "tile_sample_stride_num_frames")})
                model.use_framewise_decoding = tl.temporal
            out = {}

            def run():
                with torch.inference_mode():
                    out["video"] = model.decode(z_t, t_t, return_dict=False)[0]
                return torch_sync(torch, out["video"])

            try:
                torch_reset_peak(torch)
                start = time.perf_counter()
                run()  # the first call (its warm-up call when vae_warmup >= 1)
                rec.update(first_rows[name], torch_ms=(time.perf_counter() - start) * 1e3)
                tmed = add_timing(row, "torch", timed(run, max(0, s.vae_warmup - 1), s.vae_repeats, lambda o: o))
                refs[name] = out.pop("video").permute(0, 2, 3, 4, 1).float().cpu().numpy()
                rec.update(row, torch_peak_bytes=torch_peak(torch),
                           torch_tflops=None if flops is None else flops / tmed / 1e12)
            except Exception as e:  # noqa: BLE001
                out.clear()
                rec.update(row, torch_error=short_error(e))
                if not is_oom(e):
                    rec.info(torch_traceback=traceback.format_exc())
            torch_free(torch)
        del model, z_t, t_t
        torch_free(torch)
    else:
        refs = {}
    if params is None:
        params = init_vae_decoder(cfg, dt, rng_key(0))
        rec.info(weights="random")
    params = jax.block_until_ready(params)

    z, t = jnp.asarray(z_np, dt), jnp.asarray(t_np)
    memory, outputs = {}, {}
    for name, tl in cases:  # tiled first: the process peak after it is the tiled decode's own
        row, first_row = rows[name], first_rows[name]
        try:
            first_start = time.perf_counter()  # the first call: tracing, lowering, compiling, one run
            lowered = vae_decode_fn(cfg, dt, tl).lower(params, z, t)
            start = time.perf_counter()
            compiled = lowered.compile()
            compile_s = time.perf_counter() - start
            lower_s = start - first_start
            memory[name, frames] = compiled_memory(compiled)  # before running: kept if the run is out of memory
            rec.update(row, compile_s=compile_s, compiled_memory=memory[name, frames])
            start = time.perf_counter()
            out = jax_block(compiled(params, z, t))
            rec.update(first_row, ours_ms=(lower_s + compile_s + time.perf_counter() - start) * 1e3)
            if first_row.get("torch_ms"):
                rec.update(first_row, ratio=first_row["ours_ms"] / first_row["torch_ms"])
            med = add_timing(row, "ours", timed(lambda: compiled(params, z, t), s.vae_warmup, s.vae_repeats, jax_block))
            out = np.asarray(out.astype(jnp.float32))
            rec.update(row, peak_bytes=device_peak_bytes(), finite=bool(np.isfinite(out).all()),
                       tflops=None if flops is None else flops / med / 1e12)
            if name in refs:
                rec.update(row, ratio=row["ours_ms"] / row["torch_ms"], max_rel_diff=rel_diff(out, refs[name]))
            if name != "untiled":
                outputs[name] = out  # compared with the whole decode below
            elif outputs:
                for other, frames_out in outputs.items():
                    rec.update(rows[other], max_rel_diff_vs_whole=rel_diff(frames_out, out))
                outputs.clear()
            out = None  # frees the frames (a del would leave the closures above a dangling name)
            ctx.log(f"{row['name']}: ours {row['ours_ms']:.1f} ms, torch {row.get('torch_ms')}")
        except Exception as e:  # noqa: BLE001
            rec.update(row, error=short_error(e))
            if not is_oom(e):
                raise
    rec.check("tiled decode ran", "ours_ms" in rows["tiled"], note=rows["tiled"].get("error", ""))
    rec.check("outputs finite", all(r.get("finite", True) for r in rows.values()))

    # Tiled decode memory for F and 2F latent frames (compiled memory: temp + arguments + output).
    if ("tiled", frames) in memory and ctx.has_time(s.estimates["vae_compile_2F"], "tiled memory at 2F"):
        z2 = jax.ShapeDtypeStruct((1, 2 * frames, height, width, cfg.latent_channels), dt)
        start = time.perf_counter()
        compiled = vae_decode_fn(cfg, dt, tiling).lower(jax.eval_shape(lambda: params), z2, t_abs).compile()
        memory["tiled", 2 * frames] = compiled_memory(compiled)
        m1, m2 = memory["tiled", frames], memory["tiled", 2 * frames]
        ratio = None if not (m1 and m2) else (m2["temp"] + m2["output"]) / (m1["temp"] + m1["output"])
        rec.case(f"VAE tiled decode memory {2 * frames} vs {frames} latent frames",
                 compile_s=time.perf_counter() - start, memory_F=m1, memory_2F=m2, ratio=ratio)
        rec.goal(f"tiled decode memory (temp + output) {2 * frames} / {frames} latent frames", ratio, 1.25)


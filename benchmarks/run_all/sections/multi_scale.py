"""Section multi_scale: the 0.9.8 distilled multi-scale recipe (first pass, upsampling, second pass, decoding),
stage by stage, with random weights."""

from __future__ import annotations

import time

import numpy as np

from ..builders import build_multi_scale_pipeline, tree_bytes, word_tokenizer
from ..context import Context, add_timing, first_call_name, load_bench
from ..hardware import device_peak_bytes
from ..sizes import PROMPT, t5_config, transformer_config, upsampler_config, vae_config

STAGES = ("text_encoding", "first_pass", "upsampling", "second_pass", "decoding", "resizing", "total")


def section_multi_scale(ctx: Context) -> None:
    """LTXMultiScalePipeline with the recipe of ``ms_preset`` at ``ms_video``: the first call (compiles) and the
    median of later calls, per stage; FLOPs counted for the two denoising passes. diffusers has no multi-scale
    pipeline (its documented recipe is three pipeline calls with other steps), so no torch figure."""
    from ltx_jax.pipelines.multi_scale import first_pass_size
    from ltx_jax.releases import get_release

    bt = load_bench("bench_transformer")
    s, rec = ctx.sizes, ctx.rec
    tcfg, vcfg, t5cfg = transformer_config(s.pipe_transformer), vae_config(s.pipe_vae), t5_config(s.pipe_t5)
    ucfg = upsampler_config(s.ms_upsampler)
    height, width, frames = s.ms_video
    recipe = get_release(s.ms_preset).multi_scale
    h1, w1 = first_pass_size(height, width, recipe.downscale_factor, vcfg.spatial_ratio)
    latent_frames, text_tokens = (frames - 1) // vcfg.temporal_ratio + 1, 128
    tokens1 = latent_frames * (h1 // vcfg.spatial_ratio) * (w1 // vcfg.spatial_ratio)
    tokens2 = tokens1 * ucfg.spatial_scale**2
    steps1, steps2 = len(recipe.first_pass.timesteps), len(recipe.second_pass.timesteps)
    rec.info(video=s.ms_video, first_pass=(h1, w1), second_pass=(2 * h1, 2 * w1), tokens=(tokens1, tokens2),
             steps=(steps1, steps2), preset=s.ms_preset, dtype=s.dtype, upsampler=ucfg.to_dict(),
             weights="random")
    flops = {"first_pass": steps1 * bt.forward_flops(tcfg, 1, tokens1, text_tokens),
             "second_pass": steps2 * bt.forward_flops(tcfg, 1, tokens2, text_tokens)}
    base = f"multi-scale {width}x{height}x{frames} ({s.ms_preset})"
    first_rows = {k: rec.case(first_call_name(base, k.replace("_", " ")), first_call=True) for k in STAGES}
    rows = {k: rec.case(f"{base}: {k.replace('_', ' ')}", flops=flops.get(k)) for k in STAGES}

    start = time.perf_counter()
    pipe, params = build_multi_scale_pipeline(tcfg, vcfg, t5cfg, ucfg, s.dtype, s.ms_preset,
                                              word_tokenizer(text_tokens))
    upsampler_params = params.pop("latent_upsampler")
    rec.info(build_s=time.perf_counter() - start, upsampler_bytes=tree_bytes(upsampler_params),
             param_bytes={k: tree_bytes(v) for k, v in params.items()})
    call = dict(prompt=PROMPT, height=height, width=width, num_frames=frames, max_sequence_length=text_tokens,
                output_type="uint8")  # what the command line asks for: frames leave the device once, as uint8
    start = time.perf_counter()
    out = pipe(**call, seed=0)
    first = time.perf_counter() - start
    first_stages = pipe.last_timings.as_dict()
    rec.info(first_call_s=first, first_call_stages=first_stages, peak_bytes_after_first_call=device_peak_bytes())
    for k, row in first_rows.items():
        rec.update(row, ours_ms=first_stages.get(k, 0.0) * 1e3)
    rec.check("frames finite", bool(np.isfinite(out).all()))
    rec.check("frames shape", list(out.shape) == [1, frames, height, width, 3], value=list(out.shape),
              limit=[1, frames, height, width, 3])
    del out
    stages = []
    for i in range(s.ms_repeats):
        pipe(**call, seed=i + 1)
        stages.append(pipe.last_timings.as_dict())
    for k, row in rows.items():
        times = [st.get(k, 0.0) for st in stages]
        med = add_timing(row, "ours", times)
        rec.update(row, first_call_ms=first_stages.get(k, 0.0) * 1e3,
                   tflops=None if not flops.get(k) or med <= 0 else flops[k] / med / 1e12)
    rec.update(rows["total"], peak_bytes=device_peak_bytes())
    if ctx.on_gpu and s.ms_video == (704, 1216, 121) and tcfg.inner_dim == 2048:
        # Issue 23's goal (goals.py): 2.4x faster than real time (121 frames at 25 fps are 4.84 s of video).
        rec.goal("2B 0.9.8 distilled multi-scale 1216x704x121, total s (goals.py; real time: 4.84 s)",
                 rows["total"]["ours_ms"] / 1e3, 2.0)

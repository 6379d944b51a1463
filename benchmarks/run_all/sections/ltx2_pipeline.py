"""Section ltx2_pipeline: LTX-2 text to video with sound end to end, then the two-stage recipe, random weights, stage
by stage, against diffusers' LTX2Pipeline on the same card (benchmarks/bench_ltx2_pipeline.py: the recipe, the
weights, what each stage holds).

The budget decides what runs, in this order of importance: our text to video, diffusers' (the comparison of the
goal), our two-stage recipe, diffusers' two-stage recipe (``has_time`` against the sizes' estimates; what does not
fit is recorded as skipped, with the seconds it needed). diffusers runs first and frees the card before ours is
built (JAX keeps what it allocates, and each side's weights take most of an H200).
"""

from __future__ import annotations

import traceback

from ..builders import tree_bytes
from ..context import Context, add_timing, first_call_name, load_bench
from ..goals import LTX2_ANCHORS, LTX2_T2V_ROW
from ..hardware import device_peak_bytes, is_oom, short_error, torch_free

GOAL_VIDEO, GOAL_RELEASE = (512, 768, 121), "ltx-2-19b-distilled"  # goals.py's LTX-2 goal is stated at these


def section_ltx2_pipeline(ctx: Context) -> None:
    """LTX-2 text to video with sound and the two-stage recipe, end to end, stage by stage, against diffusers."""
    bench = load_bench("bench_ltx2_pipeline")
    s, rec = ctx.sizes, ctx.rec
    configs, ucfg = bench.pipeline_configs(*s.ltx2_pipe), bench.upsampler_config(*s.ltx2_pipe_upsampler)
    videos = {"t2v": s.ltx2_pipe_video, "two_stage": s.ltx2_pipe_two_stage_video}
    repeats = {"t2v": s.ltx2_pipe_repeats, "two_stage": s.ltx2_pipe_two_stage_repeats}
    calls = {p: bench.call_kwargs(*v, s.ltx2_pipe_text_tokens) for p, v in videos.items()}
    flops = {p: bench.part_flops(configs, p, v, s.ltx2_pipe_text_tokens) for p, v in videos.items()}
    modules, shapes = bench.ltx2_components(configs, ucfg, s.dtype)
    needed = sum(tree_bytes(t) for t in shapes.values())
    rec.info(source=list(s.ltx2_pipe), upsampler=ucfg.to_dict(), dtype=s.dtype, videos=videos, repeats=repeats,
             text_tokens=s.ltx2_pipe_text_tokens, sigmas=[bench.STAGE_1_SIGMAS, bench.STAGE_2_SIGMAS],
             guidance="none (guidance 1, stg 0, modality 1, both modalities)", weights="random (each side its own)",
             tokens={p: bench.token_counts(configs, *v) for p, v in videos.items()},
             tokens_stage_1=bench.token_counts(configs, videos["two_stage"][0] // 2, videos["two_stage"][1] // 2,
                                               videos["two_stage"][2]),
             transformer=configs.transformer.to_dict(), flops=flops, param_bytes_needed=needed)

    rows = {}  # (part, stage, first call) -> row, in the order things happen
    for part, (height, width, frames) in videos.items():
        base = (f"{LTX2_T2V_ROW}{width}x{height}x{frames} 8 steps" if part == "t2v" else
                f"ltx2 two-stage {width}x{height}x{frames} (stage 1 {width // 2}x{height // 2}, 8 + 3 steps)")
        for first in (True, False):
            for stage in bench.STAGES[part]:
                label = stage.replace("_", " ").replace("denoise decode", "denoising + decoding")
                extra = {} if first or not flops[part].get(stage) else dict(
                    flops=flops[part][stage], flops_per_step=flops[part]["per_step_stage_2" if stage == "stage_2"
                                                                      else "per_step"])
                rows[part, stage, first] = rec.case(first_call_name(base, label) if first else f"{base}: {label}",
                                                    **({"first_call": True} if first else extra))

    rec.update(rows["t2v", "total", False], note=LTX2_ANCHORS)  # the goal line, in the results table

    torch = ctx.torch("diffusers LTX2Pipeline", need=("diffusers", "transformers"))
    plan = plan_parts(ctx, torch is not None)
    parts = ["t2v"] + ["two_stage"] * plan["two_stage"]

    if plan["torch_t2v"]:
        run_diffusers(ctx, bench, torch, configs, ucfg, needed, ["t2v"] + ["two_stage"] * plan["torch_two_stage"],
                      calls, repeats, rows)
    ours = bench.build_ours(configs, modules, shapes)  # DeviceTooSmall: the section's error, one line
    rec.info(build_s=ours.build_s, params=ours.params, param_bytes=ours.param_bytes,
             attention=ours.pipe.core.transformer.resolved_attention_implementation,
             peak_bytes_after_build=device_peak_bytes())
    for part in parts:
        if part == "two_stage" and not ctx.has_time(s.estimates["ltx2_pipeline_two_stage"],
                                                    "ltx2 two-stage recipe (ours)"):
            break
        total = rows[part, "total", False]
        try:
            result = bench.measure(bench.ours_runner(ours, part, calls[part]), calls[part], repeats[part],
                                   on_first=lambda first, p=part: record_first(ctx, bench, p, first, rows))
        except Exception as e:  # noqa: BLE001 - out of memory ends this part only
            rec.update(total, error=short_error(e))
            if not is_oom(e):
                raise
            continue
        for stage in bench.STAGES[part]:
            row = rows[part, stage, False]
            med = add_timing(row, "ours", [t[stage] for t in result["stages"]])
            rec.update(row, first_call_ms=result["first_call_stages"][stage] * 1e3,
                       tflops=row["flops"] / med / 1e12 if row.get("flops") and med > 0 else None)
            if row.get("torch_ms"):
                rec.update(row, ratio=row["ours_ms"] / row["torch_ms"])
        rec.update(total, peak_bytes=device_peak_bytes())
        ctx.log(f"{total['name']}: ours {total['ours_ms'] / 1e3:.2f} s (first call "
                f"{result['first_call_s']:.1f} s), diffusers {total.get('torch_ms', 0) / 1e3:.2f} s")

    t2v = rows["t2v", "total", False]
    rec.check("text to video ran", "ours_ms" in t2v)
    if ctx.on_gpu and s.ltx2_pipe_video == GOAL_VIDEO and s.ltx2_pipe[0] == GOAL_RELEASE and "ours_ms" in t2v:
        rec.goal("LTX-2 distilled 768x512x121 8 steps, end to end s (goals.py; SGLang on an H100: 9.52 s)",
                 t2v["ours_ms"] / 1e3, 4.5)


def plan_parts(ctx: Context, with_torch: bool) -> dict[str, bool]:
    """Which optional parts fit the section's time, in order of importance (module docstring), each against the
    sizes' estimates of it and of what runs before it; a part left out is recorded as skipped with the time it
    needed. Our text to video always runs."""
    est = ctx.sizes.estimates
    torch_s, two_s, torch_two_s = (est[f"ltx2_pipeline{k}"] for k in ("_torch", "_two_stage", "_torch_two_stage"))
    ours_s = est["ltx2_pipeline"] - torch_s - two_s - torch_two_s  # the build and our text to video
    plan = {"torch_t2v": with_torch and ctx.has_time(ours_s + torch_s, "diffusers LTX2Pipeline")}
    before = ours_s + torch_s * plan["torch_t2v"]
    plan["two_stage"] = ctx.has_time(before + two_s, "ltx2 two-stage recipe (ours)")
    plan["torch_two_stage"] = False
    if with_torch and not (plan["torch_t2v"] and plan["two_stage"]):
        ctx.rec.skip("diffusers two-stage recipe", "runs only beside diffusers' text to video and our two-stage "
                                                    "recipe, and the time budget left one out")
    elif with_torch:
        plan["torch_two_stage"] = ctx.has_time(before + two_s + torch_two_s, "diffusers two-stage recipe")
    return plan


def record_first(ctx: Context, bench, part: str, first: dict, rows: dict) -> None:
    """Our first call of a part: its rows (each stage), and the output checks (finite, shapes)."""
    for stage in bench.STAGES[part]:
        row = rows[part, stage, True]
        ctx.rec.update(row, ours_ms=first["first_call_stages"][stage] * 1e3)
        if stage == "total" and row.get("torch_ms"):
            ctx.rec.update(row, ratio=row["ours_ms"] / row["torch_ms"])
    check = first["check"]
    ctx.rec.check(f"{part}: frames and waveform finite", check["finite"])
    ctx.rec.check(f"{part}: frames [1, F, H, W, 3], waveform [1, channels, samples]", check["shape_ok"],
                  value=[check["frames_shape"], check["audio_shape"]])


def run_diffusers(ctx: Context, bench, torch, configs, ucfg, needed: int, parts: list[str], calls: dict,
                  repeats: dict, rows: dict) -> None:
    """diffusers' parts (its first call and median per stage into our rows' torch fields), then the card freed. A
    failure (out of memory, a card too small) is recorded as skipped; ours runs regardless."""
    rec = ctx.rec
    side = None
    try:
        side = bench.DiffusersLTX2(configs, ucfg, ctx.sizes.dtype, needed)
        for part in parts:
            side.reset_peak()
            result = bench.measure(lambda seed, p=part: side.run(p, calls[p], seed), calls[part], repeats[part])
            rec.check(f"{part}: diffusers' frames and waveform finite", result["check"]["finite"])
            for stage, seconds in result["first_call_stages"].items():
                rec.update(rows[part, stage, True], torch_ms=seconds * 1e3)
            for stage in result["median_stages"]:
                row = rows[part, stage, False]
                med = add_timing(row, "torch", [t[stage] for t in result["stages"]])
                rec.update(row, torch_tflops=row["flops"] / med / 1e12 if row.get("flops") and med > 0 else None)
            rec.update(rows[part, "total", False], torch_peak_bytes=side.peak_bytes(),
                       torch_note="diffusers' LTX2Pipeline" + (" -> LTX2LatentUpsamplePipeline -> LTX2Pipeline, "
                                                               "prompt encoded once" if part == "two_stage" else ""))
    except Exception as e:  # noqa: BLE001 - the comparison is optional; ours runs regardless
        rec.skip("diffusers LTX2Pipeline", f"failed: {short_error(e)}")
        rec.info(torch_traceback=traceback.format_exc())
    if side is not None:
        side.close()
    torch_free(torch)

"""benchmarks.run_all's performance goals over made-up and saved runs (no section runs here: pure Python, split from
test_run_all.py, whose sections take minutes)."""

from __future__ import annotations

import dataclasses
import json

import pytest


@pytest.fixture(scope="module")
def run_all():
    from benchmarks import run_all

    return run_all


def made_up_run(sizes_name: str = "gpu", device: str = "NVIDIA H200", **sections) -> dict:
    """A run's JSON with the given sections (name -> entry), at the named sizes on ``device``, after
    ``report.derive``."""
    from benchmarks.run_all import SIZES
    from benchmarks.run_all.report import derive

    sizes = json.loads(json.dumps(dataclasses.asdict(SIZES[sizes_name])))  # as the run's JSON holds them
    entries = {name: {"status": "ok", "info": {}, "skipped": {}, **entry} for name, entry in sections.items()}
    data = {"sizes_name": sizes_name, "sizes": sizes, "sections": entries, "environment": {"device_kind": device}}
    derive(data)
    return data


def made_up_sections(multi_scale_s=2.5, multi_scale_first_s=18.0, t2v_s=0.65, t2v_first_s=16.0, decoding_ms=700.0,
                     tiled_ms=120.0, untiled_ms=100.0, transformer_tflops=600.0, transformer_ratio=0.9,
                     fp8_speedup=1.3, fp8_rel_diff=0.04, t2v_warm_compile_s=2.5,
                     multi_scale_warm_compile_s=4.0, ltx2_t2v_s=4.0) -> dict:
    """GPU-sized records: 13 goals, of which the defaults meet 7 and miss 6. The first calls are the compile
    section's cold runs; the pipeline and multi_scale sections' own first-call rows (the fallback) say 99 s."""
    vae_cfg, latent = {"latent_channels": 128}, [16, 16, 24]
    ms = "multi-scale 1216x704x121 (ltx-video-0.9.8-2b-distilled)"
    pipe = "pipeline 768x512x121 8 steps"
    vae_rows = "VAE decode {} latent 16x16x24 -> 121x512x768"
    return dict(
        matmul_peak={"cases": [{"name": "matmul 8192^3 bfloat16", "ours_ms": 1.6, "tflops": 700.0}],
                     "info": {"matmul_tflops": 700.0}},
        transformer={"cases": [
            {"name": "transformer 4 layers 9x32x32", "tokens": 9216, "ours_ms": 15.0, "tflops": 450.0, "ratio": 0.7},
            {"name": "transformer 4 layers 9x32x32, fp8 matmuls", "shape": "9x32x32", "fp8_tokens": 9216,
             "ours_ms": 12.0, "speedup": 1.25, "max_rel_diff": 0.03},
            {"name": "transformer 4 layers 17x64x64, first call (compiles)", "first_call": True, "ours_ms": 9e3},
            {"name": "transformer 4 layers 17x64x64", "tokens": 69632, "ours_ms": 400.0, "tflops": transformer_tflops,
             "ratio": transformer_ratio},
            {"name": "transformer 4 layers 17x64x64, fp8 matmuls", "shape": "17x64x64", "fp8_tokens": 69632,
             "ours_ms": 400.0 / fp8_speedup, "speedup": fp8_speedup, "max_rel_diff": fp8_rel_diff}]},
        vae={"info": {"latent": latent, "config": vae_cfg}, "cases": [
            {"name": vae_rows.format("tiled"), "ours_ms": tiled_ms},
            {"name": vae_rows.format("untiled"), "ours_ms": untiled_ms},
            {"name": vae_rows.format("tiled") + ", first call (compiles)", "first_call": True, "ours_ms": 3e4},
            {"name": vae_rows.format("untiled") + ", first call (compiles)", "first_call": True, "ours_ms": 6e3}]},
        pipeline={"info": {"latent": latent, "vae": vae_cfg}, "cases": [
            {"name": f"{pipe}, first call (compiles): decoding", "first_call": True, "ours_ms": 9e3},
            {"name": f"{pipe}, first call (compiles): total", "first_call": True, "ours_ms": 99e3},
            {"name": f"{pipe}: decoding", "ours_ms": decoding_ms},
            {"name": f"{pipe}: total", "ours_ms": t2v_s * 1e3}]},
        multi_scale={"cases": [
            {"name": f"{ms}, first call (compiles): total", "first_call": True, "ours_ms": 99e3},
            {"name": f"{ms}: decoding", "ours_ms": 1e3},
            {"name": f"{ms}: total", "ours_ms": multi_scale_s * 1e3}]},
        compile={"cases": [
            {"name": "text-to-video ..., new process, cold cache, first call (compiles): decoding", "first_call": True,
             "kind": "text_to_video", "run": "cold", "stage": "decoding", "ours_ms": 9e3, "compile_s": 8.0},
            {"name": "text-to-video ..., new process, cold cache, first call (compiles): total", "first_call": True,
             "kind": "text_to_video", "run": "cold", "stage": "total", "ours_ms": t2v_first_s * 1e3,
             "compile_s": t2v_first_s - 1},
            {"name": "multi-scale ..., new process, cold cache, first call (compiles): total", "first_call": True,
             "kind": "multi_scale", "run": "cold", "stage": "total", "ours_ms": multi_scale_first_s * 1e3,
             "compile_s": multi_scale_first_s - 3},
            {"name": "text-to-video ..., second process, warm cache, first call (compiles): total",
             "first_call": True, "kind": "text_to_video", "run": "warm", "stage": "total", "ours_ms": 4e3,
             "compile_s": t2v_warm_compile_s},
            {"name": "multi-scale ..., second process, warm cache, first call (compiles): total",
             "first_call": True, "kind": "multi_scale", "run": "warm", "stage": "total", "ours_ms": 9e3,
             "compile_s": multi_scale_warm_compile_s}]},
        ltx2_pipeline={"cases": [
            {"name": "ltx2 text-to-video 768x512x121 8 steps, first call (compiles): total", "first_call": True,
             "ours_ms": 99e3},
            {"name": "ltx2 text-to-video 768x512x121 8 steps: denoising + decoding", "ours_ms": 3e3},
            {"name": "ltx2 text-to-video 768x512x121 8 steps: total", "ours_ms": ltx2_t2v_s * 1e3},
            {"name": "ltx2 two-stage 1536x1024x121 (stage 1 768x512, 8 + 3 steps): total", "ours_ms": 20e3}]},
    )


def test_goal_evaluation_over_made_up_records():
    """Met, missed and not measured from made-up records: each goal's figure, its target, and why one is not judged
    (a section that did not run or failed, another size, a missing comparison, a record of an unexpected shape)."""
    from benchmarks.run_all.goals import GOALS, STATUSES, evaluate, goals_text

    def statuses(data):
        results = evaluate(data)
        assert [r.goal for r in results] == list(GOALS) and all(r.status in STATUSES for r in results)
        return {r.goal.name: (r.status, r.value, r.note) for r in results}

    names = [g.name for g in GOALS]
    assert len(set(names)) == len(names)
    got = statuses(made_up_run(**made_up_sections()))
    print(goals_text(evaluate(made_up_run(**made_up_sections()))))
    expected = {  # goal -> (status, value)
        "multi-scale 0.9.8 2B distilled 1216x704x121, total": ("missed", 2.5),
        "text-to-video 2B distilled 768x512x121 8 steps, total": ("met", 0.65),
        "decode in the pipeline / whole decode of the same latents": ("missed", 7.0),
        "tiled / whole decode per output pixel": ("met", 1.2),
        "text-to-video 768x512x121, first call": ("missed", 16.0),
        "multi-scale 1216x704x121, first call": ("met", 18.0),
        "text-to-video 768x512x121, second process with the persistent cache: compile": ("met", 2.5),
        "multi-scale 1216x704x121, second process with the persistent cache: compile": ("missed", 4.0),
        "transformer 4 layers 17x64x64, share of the measured matmul rate": ("met", 100 * 600 / 700),
        "transformer 4 layers 17x64x64, ours / diffusers": ("missed", 0.9),
        "transformer 4 layers 17x64x64, fp8 matmuls: speed-up over bf16": ("missed", 1.3),
        "transformer 4 layers 17x64x64, fp8 matmuls: output vs bf16": ("met", 4.0),
        "LTX-2 distilled 768x512x121 8 steps, end to end (one H200, bf16)": ("met", 4.0),
    }
    assert set(expected) == set(names)
    for name, (status, value) in expected.items():
        assert got[name][0] == status and got[name][1] == pytest.approx(value) and got[name][2] == "", got[name]
    flipped = statuses(made_up_run(**made_up_sections(multi_scale_s=1.9, t2v_s=0.8, decoding_ms=110.0, tiled_ms=140.0,
                                                      t2v_first_s=14.0, multi_scale_first_s=21.0,
                                                      transformer_tflops=500.0, transformer_ratio=0.85,
                                                      fp8_speedup=1.5, fp8_rel_diff=0.06, t2v_warm_compile_s=3.5,
                                                      multi_scale_warm_compile_s=2.0, ltx2_t2v_s=5.0)))
    assert all(flipped[n][0] == {"met": "missed", "missed": "met"}[expected[n][0]] for n in names), flipped

    # Not measured: a section that did not run, or failed before its figure; each note says why.
    sections = made_up_sections()
    del sections["vae"], sections["matmul_peak"]
    sections["multi_scale"] = {"status": "error", "error": "ValueError: skip_block_list holds block 42", "cases": [
        {"name": "multi-scale 1216x704x121 (ltx-video-0.9.8-2b-distilled): total"}]}
    got = statuses(made_up_run(**sections))
    for name in ("decode in the pipeline / whole decode of the same latents", "tiled / whole decode per output pixel"):
        assert got[name] == ("not measured", None, "vae did not run"), got[name]
    ms_total, ms_first = got[names[0]], got["multi-scale 1216x704x121, first call"]
    assert ms_total[:2] == ("not measured", None) and "skip_block_list" in ms_total[2], ms_total
    assert ms_first[:2] == ("met", 18.0)  # from the compile section's cold run
    del sections["compile"]  # without it: the pipeline sections' own first-call rows, else why neither holds one
    got_without = statuses(made_up_run(**sections))
    assert got_without["text-to-video 768x512x121, first call"][:2] == ("missed", 99.0)
    ms_first = got_without["multi-scale 1216x704x121, first call"]
    assert ms_first[:2] == ("not measured", None), ms_first
    assert "compile did not run" in ms_first[2] and "skip_block_list" in ms_first[2], ms_first
    for name in [n for n in names if "second process" in n]:
        assert got_without[name] == ("not measured", None, "compile did not run"), got_without[name]
    share = got["transformer 4 layers 17x64x64, share of the measured matmul rate"]
    assert share[:2] == ("not measured", None) and "matmul_peak did not run" in share[2]
    assert got["text-to-video 2B distilled 768x512x121 8 steps, total"][0] == "met"
    ltx2 = "LTX-2 distilled 768x512x121 8 steps, end to end (one H200, bf16)"
    on_h100 = statuses(made_up_run(device="NVIDIA H100 80GB HBM3", **made_up_sections()))[ltx2]
    assert on_h100[:2] == ("not measured", 4.0) and "NVIDIA H100 80GB HBM3, not an H200" in on_h100[2], on_h100
    only_first = made_up_sections()
    del only_first["ltx2_pipeline"]["cases"][1:]
    assert statuses(made_up_run(**only_first))[ltx2] == ("not measured", None, "no timed text-to-video total row")

    # Not measured: other sizes. The figure at the sizes that ran is kept, the note says which sizes ran.
    got = statuses(made_up_run("cpu", **made_up_sections()))
    assert all(s == "not measured" and v is not None and "(CPU sizes)" in n for s, v, n in got.values()), got
    assert "ran at 96x64x17" in got["text-to-video 2B distilled 768x512x121 8 steps, total"][2]
    sections = made_up_sections()
    sections["vae"]["info"]["latent"] = [8, 16, 24]
    del sections["transformer"]["cases"][2:]  # 17x64x64 not timed: the largest shape that was, not judged
    got = statuses(made_up_run(**sections))
    decode = got["decode in the pipeline / whole decode of the same latents"]
    assert decode[:2] == ("not measured", None) and "latent 8x16x24" in decode[2] and "16x16x24" in decode[2]
    for name in [n for n in names if n.startswith("transformer ")]:
        assert got[name][0] == "not measured" and got[name][1] is not None and "9x32x32" in got[name][2], got[name]
    sections = made_up_sections()
    del sections["transformer"]["cases"][3]["ratio"]
    sections["transformer"]["skipped"] = {"diffusers transformer": "--no-torch"}
    assert statuses(made_up_run(**sections))["transformer 4 layers 17x64x64, ours / diffusers"] == (
        "not measured", None, "diffusers: --no-torch")

    # Never raises: no sections, a section without cases, rows of an unexpected shape, no sizes.
    assert all(s == "not measured" for s, _, _ in statuses({"sections": {}}).values())
    sections = made_up_sections()
    sections["pipeline"]["cases"][3]["ours_ms"] = "fast"
    sections["vae"] = {"status": "timeout", "cases": []}
    got = statuses(made_up_run(**sections))
    assert got[names[1]][0] == "not measured" and "could not compute" in got[names[1]][2]
    assert got[names[3]] == ("not measured", None, "vae: timeout")


def test_goals_of_saved_runs(run_all, tmp_path, capsys):
    """``--goals A.json B.json``: the goals of runs that split the sections, merged; a later run's section replaces
    an earlier one's unless it left no cases (a default GPU run's skipped optional vae)."""
    from benchmarks.run_all.goals import merge_runs

    sections = made_up_sections()
    first = made_up_run(vae=sections.pop("vae"))
    later = made_up_run(**sections, vae={"status": "skipped", "error": "optional: ...", "cases": []})
    merged = merge_runs([first, later])
    assert merged["sections"]["vae"] == first["sections"]["vae"] and set(merged["sections"]) == set(later["sections"])
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, run in zip(paths, (first, later)):
        path.write_text(json.dumps(run))
    assert run_all.main(["--goals", *map(str, paths)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("performance goals: 7 met, 6 missed, 0 not measured"), printed

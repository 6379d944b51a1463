"""benchmarks.run_all at CPU sizes: every section runs and passes, the JSON and the markdown are complete.

This is the CPU rehearsal of the GPU run (same code, small sizes, float32): what could fail for a trivial reason on
the GPU machine fails here first. The markdown goes to a temporary file, never to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_RESULTS_MD = os.path.join(ROOT, "benchmarks", "RESULTS.md")
TIME_LIMIT_S = 300  # the whole CPU run in one process, on 2 shared cores (240 s under load, the compile section 95 s)
COMPILE_LIMIT_S = 150  # the compile section: six new processes (about 80 s on 2 idle cores, 95-100 s shared)
# The ltx2_pipeline section at CPU sizes, its compiles included: the random init (seven init programs) and three
# pipeline programs (text to video, stage 1, stage 2) take most of it; 48-52 s on 2 shared cores (load 2.5-3.7), 5 s
# when its programs are compiled already (the all-sections run after its own test)
LTX2_PIPELINE_LIMIT_S = 90


def results_md_state():
    return os.stat(REAL_RESULTS_MD).st_mtime_ns if os.path.exists(REAL_RESULTS_MD) else None


@pytest.fixture(scope="module")
def run_all():
    from benchmarks import run_all

    return run_all


def test_ltx2_pipeline_section(run_all, tmp_path, monkeypatch, capsys):
    """The ltx2_pipeline section at CPU sizes: our text to video and two-stage recipe beside diffusers', every stage's
    first call and median, FLOPs and TFLOP/s of the denoising stages, the table lines and the goal line in the
    markdown; a budget that fits our text to video and diffusers' only: the two-stage parts are recorded as skipped;
    a device too small for the weights: one line, before any is made. First in this file on purpose: the
    all-sections run below (the same process: pytest keeps a file's order, and CI's ``--dist loadfile`` keeps a file
    in one worker) then finds this section's programs compiled."""
    from benchmarks.run_all.goals import LTX2_ANCHORS
    from benchmarks.run_all.results import Recorder
    from benchmarks.run_all.runner import run_section

    out, md = tmp_path / "run.json", tmp_path / "RESULTS.md"
    start = time.perf_counter()
    rc = run_all.main(["--isolate", "none", "--sections", "ltx2_pipeline", "--out", str(out), "--results-md", str(md)])
    elapsed = time.perf_counter() - start
    entry = json.loads(out.read_text())["sections"]["ltx2_pipeline"]
    print(f"ltx2_pipeline at CPU sizes: {elapsed:.1f} s (limit {LTX2_PIPELINE_LIMIT_S} s), section "
          f"{entry.get('seconds', 0):.1f} s, build {entry['info'].get('build_s', 0):.1f} s")
    assert rc == 0 and entry["status"] == "ok", (entry.get("error"), entry.get("traceback"))
    assert elapsed < LTX2_PIPELINE_LIMIT_S, f"the section took {elapsed:.0f} s (limit {LTX2_PIPELINE_LIMIT_S} s)"
    assert entry["skipped"] == {} and entry["checks"] and all(c["ok"] for c in entry["checks"].values()), entry

    t2v, two = "ltx2 text-to-video 64x64x9 8 steps", "ltx2 two-stage 128x128x9 (stage 1 64x64, 8 + 3 steps)"
    stages = {t2v: ["text encoding", "denoising + decoding", "total"],
              two: ["stage 1", "stage 1 denoising", "upsampling", "stage 2", "total"]}
    expected = [f"{base}{', first call (compiles)' * first}: {stage}" for base, names in stages.items()
                for first in (True, False) for stage in names]
    assert [c["name"] for c in entry["cases"]] == expected
    cases = {c["name"]: c for c in entry["cases"]}
    for base, names in stages.items():
        medians = {stage: cases[f"{base}: {stage}"] for stage in names}
        for stage, row in medians.items():
            first = cases[f"{base}, first call (compiles): {stage}"]
            assert first["first_call"] and first["ours_ms"] > 0 and not row.get("first_call"), (first, row)
            assert row["ours_ms"] > 0 and len(row["ours_times_ms"]) == 2 and row["first_call_ms"] > 0, row
        assert medians["total"]["ours_ms"] >= max(r["ours_ms"] for r in medians.values()), medians
        total, first_total = medians["total"], cases[f"{base}, first call (compiles): total"]
        assert total["torch_ms"] > 0 and total["ratio"] > 0 and first_total["torch_ms"] > 0 and first_total["ratio"]
    denoising = [cases[f"{t2v}: denoising + decoding"], cases[f"{two}: stage 1 denoising"], cases[f"{two}: stage 1"]]
    assert all(r["flops"] == 8 * r["flops_per_step"] > 0 and r["tflops"] > 0 for r in denoising), denoising
    stage_2 = cases[f"{two}: stage 2"]
    assert stage_2["flops"] == 3 * stage_2["flops_per_step"] > 3 * denoising[0]["flops_per_step"] > 0, stage_2
    assert cases[f"{two}: upsampling"]["torch_ms"] > 0 and cases[f"{two}: stage 1 denoising"].get("torch_ms") is None
    assert entry["info"]["tokens"] == {"t2v": [8, 9], "two_stage": [32, 9]} and entry["info"]["build_s"] > 0

    text = md.read_text()
    assert "| ltx2_pipeline | ok |" in text
    lines = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| ltx2_pipeline | ltx2 ")}
    assert list(lines) == expected
    assert LTX2_ANCHORS in lines[f"{t2v}: total"] and LTX2_ANCHORS.startswith("anchors to beat: SGLang on an H100: "
                                                                              "768x512x121 8 steps in 9.52 s in bf16")
    goal = next(line for line in text.splitlines() if line.startswith("| LTX-2 distilled 768x512x121 8 steps"))
    assert "| <= 4.5 s | not measured |" in goal and "(CPU sizes)" in goal, goal

    # A budget that fits our text to video and diffusers' (the estimates made large, the deadline between them)
    est = dict(run_all.CPU_SIZES.estimates, ltx2_pipeline=1000, ltx2_pipeline_two_stage=400, ltx2_pipeline_torch=300,
               ltx2_pipeline_torch_two_stage=200)  # ours alone: 100 s; + diffusers' 400 s; + the two-stage 800 s
    rec = Recorder()
    run_section("ltx2_pipeline", dataclasses.replace(run_all.CPU_SIZES, estimates=est), rec, time.time() + 600, True)
    assert rec.data["status"] == "ok", (rec.data.get("error"), rec.data.get("traceback"))
    assert set(rec.data["skipped"]) == {"ltx2 two-stage recipe (ours)", "diffusers two-stage recipe"}, rec.data
    assert "needs about 800 s" in rec.data["skipped"]["ltx2 two-stage recipe (ours)"]
    cases = {c["name"]: c for c in rec.data["cases"]}
    assert cases[f"{t2v}: total"]["ours_ms"] > 0 and cases[f"{t2v}: total"]["torch_ms"] > 0
    assert not any("ours_ms" in c or "torch_ms" in c for name, c in cases.items() if name.startswith(two))

    # A device too small for the random weights: one line, before any is made
    from benchmarks import bench_ltx2_pipeline as bench

    with pytest.raises(bench.DeviceTooSmall, match=r"take 70.0 GiB, the device has 40.0 GiB free") as caught:
        bench.check_fits(70 * 2**30, 40 * 2**30, "our LTX-2 pipeline")
    assert "\n" not in str(caught.value)
    monkeypatch.setattr(bench, "free_device_bytes", lambda: 1000)
    monkeypatch.setattr(bench, "init_params", lambda *a: pytest.fail("made params on a device too small"))
    assert bench.main(["--parts", "t2v"]) == 2
    assert capsys.readouterr().err.startswith("error: our LTX-2 pipeline: the random weights take 0.0 GiB")


def test_cpu_run_all_sections(run_all, tmp_path, capsys):
    """Every section in this process (``--isolate none``: ten fresh processes would spend 40 s importing jax and
    torch); running sections as processes, and stopping one past its budget, is the next test's."""
    out, md = tmp_path / "run.json", tmp_path / "RESULTS.md"
    before = results_md_state()
    start = time.perf_counter()
    rc = run_all.main(["--isolate", "none", "--out", str(out), "--results-md", str(md)])
    elapsed = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert elapsed < TIME_LIMIT_S, f"the CPU run took {elapsed:.0f} s (limit {TIME_LIMIT_S} s)"
    assert results_md_state() == before, "the test must not write benchmarks/RESULTS.md"

    data = json.loads(out.read_text())
    for key in ("schema", "environment", "sizes_name", "sizes", "sections", "matmul_tflops", "failed_sections",
                "started", "finished", "elapsed_s", "estimated_s", "optional_left_out"):
        assert key in data, key
    assert data["sizes_name"] == "cpu" and data["environment"]["backend"] == "cpu"
    assert data["optional_left_out"] == []  # a CPU run has no optional sections
    assert list(data["sections"]) == list(run_all.SECTIONS)
    problems = {name: (entry.get("status"), entry.get("error"), entry.get("traceback"))
                for name, entry in data["sections"].items() if entry.get("status") != "ok"}
    assert not problems, problems
    assert data["failed_sections"] == [] and rc == 0

    for name, entry in data["sections"].items():
        for key in ("cases", "checks", "goals", "skipped", "info", "seconds"):  # "log": a process's (next test)
            assert key in entry, (name, key)
        assert entry["cases"], name
        assert all(c["ok"] for c in entry["checks"].values()), (name, entry["checks"])
        assert "peak_device_bytes" in entry and entry["peak_device_bytes"] is None  # CPU: no memory stats
        # the only skip allowed on CPU is the cuDNN part
        assert set(entry["skipped"]) <= ({"cudnn"} if name == "attention_cudnn_vs_xla" else set()), entry["skipped"]
        assert not any(c.get("error") or c.get("torch_error") for c in entry["cases"]), entry["cases"]

    sections = data["sections"]
    assert data["matmul_tflops"] > 0
    assert "no GPU" in sections["attention_cudnn_vs_xla"]["skipped"]["cudnn"]
    assert all(c["cudnn_fmha_calls"] == [] for c in sections["attention_cudnn_vs_xla"]["cases"])
    # every comparing section has diffusers / transformers / torch figures next to ours
    compared = {"matmul_peak": lambda c: True, "transformer": lambda c: "tokens" in c, "text_encoder": lambda c: True,
                "scheduler": lambda c: True, "vae": lambda c: "memory" not in c["name"] and "uniform" not in c["name"]}
    for name, pick in compared.items():
        rows = [c for c in sections[name]["cases"] if pick(c) and not c.get("first_call")]
        assert rows and all("torch_ms" in c and "ours_ms" in c and "ratio" in c for c in rows), (name, rows)

    # Every section that times a pipeline or a component gives each first call (compiles) a row of its own, next to
    # the median rows, which keep their place (the pipeline's median total is still its last row).
    first_calls = {name: [c for c in sections[name]["cases"] if c.get("first_call")] for name in sections}
    runs = len(data["sizes"]["compile_runs"])
    expected = {"pipeline": 4, "multi_scale": 7, "vae": 3, "transformer": len(data["sizes"]["transformer_shapes"]),
                "text_encoder": 2, "pipeline_vs_cpu_fp32": 1, "compile": (4 + 7) * runs,
                "step_cache": 3,  # the loop without a cache, with each kind (a new threshold compiles nothing)
                "ltx2_pipeline": 3 + 5}  # text to video's stages and the two-stage recipe's
    for name, count in expected.items():
        rows = first_calls[name]
        assert len(rows) == count, (name, rows)
        assert all(c["name"].count(", first call (compiles)") == 1 and c["ours_ms"] > 0 for c in rows), rows
        medians = [c for c in sections[name]["cases"] if not c.get("first_call") and "ours_ms" in c]
        assert name == "compile" or len(medians) >= count, (name, medians)  # compile: first calls only
    assert {k for k, v in first_calls.items() if v} == set(expected)
    for name in ("pipeline", "multi_scale"):  # one row per stage, the total's first call the sum of the stages'
        by_stage = {c["name"].rsplit(": ", 1)[-1]: c["ours_ms"] for c in first_calls[name]}
        assert by_stage["total"] >= max(v for k, v in by_stage.items() if k != "total"), by_stage
        assert sections[name]["info"]["first_call_s"] * 1e3 >= by_stage["total"] * 0.99
    pipe_first_total = next(c for c in first_calls["pipeline"] if c["name"].endswith(": total"))
    assert pipe_first_total["torch_ms"] > 0 and pipe_first_total["ratio"] > 0  # diffusers' first call beside ours
    for name in ("transformer", "text_encoder", "vae"):  # diffusers' / transformers' first call beside ours
        rows = [c for c in first_calls[name] if "uniform" not in c["name"]]  # a layout diffusers does not have
        assert all(c["torch_ms"] > 0 and c["ratio"] > 0 for c in rows), rows
    uniform = next(c for c in sections["vae"]["cases"] if c["name"].startswith("VAE decode uniform tiled"))
    # compared with the whole decode (at the CPU sizes the 4x4 latents fit one 128-pixel tile: the same program)
    assert uniform["finite"] and uniform["max_rel_diff_vs_whole"] >= 0
    timed = [c for e in sections.values() for c in e["cases"] if c.get("tflops") is not None]
    assert timed and all("fraction_of_matmul_peak" in c for c in timed)
    assert {"text_encoding", "denoising", "decoding", "total"} <= {
        c["name"].rsplit(": ", 1)[-1].replace(" ", "_") for c in sections["pipeline"]["cases"]}
    assert "torch_ms" in sections["pipeline"]["cases"][-1]
    pvc = sections["pipeline_vs_cpu_fp32"]["cases"][-1]
    assert pvc["psnr_db"] >= data["sizes"]["pvc_psnr_min"]
    cache_rows = [c for c in sections["step_cache"]["cases"] if not c.get("first_call")]
    assert [c["kind"] for c in cache_rows][0] == "none" and cache_rows[0]["steps_skipped"] == 0
    for kind in ("first_block", "teacache"):  # the CPU thresholds past the defaults skip steps of random weights
        rows = [c for c in cache_rows if c["kind"] == kind]
        assert rows and max(c["steps_skipped"] for c in rows) > 0 and all(c["speedup"] > 0 for c in rows), rows
    assert any(c["name"].startswith("compile 28 vs 4 layers") for c in sections["transformer"]["cases"])
    assert any(c.get("ratio") for c in sections["vae"]["cases"] if "memory" in c["name"])

    text = md.read_text()
    assert text.count("## run_all") == 1
    for name in run_all.SECTIONS:
        assert f"| {name} | ok |" in text, name
    assert "| section | case | ours ms | diffusers ms |" in text and "| section | check | result |" in text
    assert "| pipeline | pipeline 96x64x17 8 steps, first call (compiles): total |" in text
    assert "| pipeline | pipeline 96x64x17 8 steps: total |" in text
    assert "; first call " not in text and "| first call " not in text  # no longer a note of the median row
    assert "run_all summary" in printed and "failed sections: none" in printed
    check_goals_reported(data, text, printed)
    check_compile_section(sections["compile"], data["sizes"], text)


def check_compile_section(entry: dict, sizes: dict, text: str) -> None:
    """The compile section at CPU sizes: every kind and run, each stage's first call split into tracing, lowering and
    XLA's compiling within the stage's time; the warm run reads back every program the cold run wrote, the denoising
    loop's too (with the cache on the pipelines step it from the host: programs without callbacks, which JAX caches);
    the decode's convolution shapes; the decode programs made whole and tiled."""
    from benchmarks.run_all.sections.compile import RUNS

    print({k: round(v["process_wall_s"], 1) for k, v in entry["info"]["runs"].items()}, entry["seconds"])
    assert entry["seconds"] < COMPILE_LIMIT_S, f"the compile section took {entry['seconds']:.0f} s"
    stages = {"text_to_video": ["text_encoding", "denoising", "decoding", "total"],
              "multi_scale": ["text_encoding", "first_pass", "upsampling", "second_pass", "decoding", "resizing",
                              "total"]}
    assert set(sizes["compile_runs"]) == {"cold", "warm"} <= set(RUNS)  # the CPU sizes keep CI short
    totals = {}
    for kind, names in stages.items():
        for run in sizes["compile_runs"]:
            rows = [c for c in entry["cases"] if c.get("kind") == kind and c.get("run") == run]
            assert [c["stage"] for c in rows] == names, (kind, run, rows)
            for c in rows:
                assert c["first_call"] and c["name"].endswith(c["stage"].replace("_", " ")) and RUNS[run] in c["name"]
                assert 0 <= c["trace_s"] and 0 <= c["lower_s"] and 0 < c["xla_s"] and c["xla_programs"] >= 1, c
                assert max(c["trace_s"], c["lower_s"], c["xla_s"]) <= c["compile_s"] <= c["ours_ms"] / 1e3 + 1e-3, c
            totals[kind, run] = total = rows[-1]
            assert total["compile_s"] >= max(c["compile_s"] for c in rows[:-1])
            assert total["build_s"] > 0 and total["second_call_ms"] < total["ours_ms"]
            assert total["decode_conv_shapes_lowered"] >= total["decode_conv_shapes_compiled"] >= 1, total
            assert total["autotune_cache_files"] is None  # none on a CPU
        cold, warm = (totals[kind, r] for r in ("cold", "warm"))
        assert cold["cache_hits"] == 0 and cold["cache_misses"] >= 1
        assert warm["cache_misses"] == 0 and warm["cache_hits"] == cold["cache_misses"], (cold, warm)
        assert warm["not_from_cache"] == [], warm["not_from_cache"]
        assert warm["xla_s"] < cold["xla_s"], (cold, warm)
    decode = [c for c in entry["cases"] if c["name"].startswith("VAE decode")]
    assert [c["name"].split(" latent ")[0] for c in decode][:2] == ["VAE decode whole", "VAE decode tiled"], decode
    assert all(c["compile_s"] >= c["xla_s"] > 0 and c["conv_shapes_compiled"] >= 1 for c in decode), decode
    assert decode[1]["conv_shapes_lowered"] > decode[0]["conv_shapes_lowered"]  # a tile's edge has its own shapes
    assert all(c["conv_shapes_lowered"] <= decode[1]["conv_shapes_lowered"] for c in decode[2:])  # uniform tiles
    assert "| compile | text-to-video 96x64x17, second process, warm cache, first call (compiles): total |" in text


def check_goals_reported(data: dict, text: str, printed: str) -> None:
    """The performance goals close the markdown and the printed summary: one row per goal, each with a status of
    the allowed set; at CPU sizes each is "not measured", saying which sizes ran, with the figure at those sizes
    where the records hold one."""
    from benchmarks.run_all.goals import GOALS, STATUSES

    assert "| performance goal | measured | target | status | note |" in text
    md_rows = [line[2:-2].split(" | ") for line in text.splitlines() if line.startswith("| ")]
    printed_lines = printed.splitlines()
    head = [i for i, line in enumerate(printed_lines) if line.startswith("performance goals: ")]
    assert len(head) == 1 and printed_lines[head[0] + 1].split()[:2] == ["performance", "goal"], printed
    printed_rows = printed_lines[head[0] + 2:head[0] + 2 + len(GOALS)]
    assert len(data["performance_goals"]) == len(GOALS)
    for goal, recorded, printed_row in zip(GOALS, data["performance_goals"], printed_rows):
        rows = [r for r in md_rows if r[0] == goal.name]
        assert len(rows) == 1, (goal.name, rows)
        name, measured, target, status, note = rows[0]
        assert status in STATUSES and status == recorded["status"] == "not measured", rows[0]
        assert "(CPU sizes)" in note and "ran at" in note, rows[0]
        assert printed_row.startswith(goal.name) and "not measured" in printed_row and "(CPU sizes)" in printed_row
        if goal.measure.__name__ != "pipeline_decode_vs_whole":  # the vae section decodes other latents on CPU
            assert measured and recorded["value"] is not None, rows[0]
    assert printed_lines[head[0]] == f"performance goals: 0 met, 0 missed, {len(GOALS)} not measured"


def test_hlo_inspection_finds_cudnn_attention(run_all):
    compiled_hlo = (
        '%custom-call.1 = (bf16[1,9216,32,64]{3,1,2,0}, u8[0]{0}) custom-call(bf16[1,9216,32,64] %q, ...), '
        'custom_call_target="__cudnn$fmhaSoftmax", backend_config={"cudnn_fmha_backend_config":{}}\n'
        '%cc = f32[2] custom-call(%x), custom_call_target="__cudnn$fmhaScaleBiasSoftmax"\n'
        '%g = bf16[8,8] custom-call(%a, %b), custom_call_target="__cublas$lt$matmul"\n')
    stablehlo = '%0:2 = stablehlo.custom_call @__cudnn$fmhaSoftmax(%arg0, %arg1, %arg2) {backend_config = ""}'
    assert run_all.cudnn_attention_calls(compiled_hlo) == ["__cudnn$fmhaSoftmax", "__cudnn$fmhaScaleBiasSoftmax"]
    assert run_all.cudnn_attention_calls(stablehlo) == ["__cudnn$fmhaSoftmax"]
    assert run_all.cudnn_attention_calls('custom_call_target="__cublas$gemm" fusion kind=kCustom') == []
    assert run_all.cudnn_calls(compiled_hlo) == ["__cudnn$fmhaScaleBiasSoftmax", "__cudnn$fmhaSoftmax"]


def test_convolution_shapes_of_hlo_and_first_call_helpers():
    """Distinct convolutions of StableHLO, CPU HLO and GPU HLO (cuDNN custom calls), names, layouts and metadata
    aside; the union of nested compile spans; the stage a window is reported under (multi-scale renames its passes)."""
    from benchmarks.run_all.first_call import stage_names, union_seconds
    from benchmarks.run_all.hardware import conv_shapes

    gpu = ('%cudnn-conv.1 = (bf16[1,3,34,50,128]{4,3,2,1,0}, u8[0]{0}) custom-call(bf16[1,5,36,52,128]{4,3,2,1,0} '
           '%p.1, bf16[128,3,3,3,128]{4,3,2,1,0} %p.2), window={size=3x3x3}, dim_labels=b012f_o012i->b012f, '
           'custom_call_target="__cudnn$convForward", metadata={op_name="jit(f)/conv" source_line=3}, '
           'backend_config={"cudnn_conv_backend_config":{"activation_mode":"kNone"}}\n')
    same_shape = gpu.replace("%cudnn-conv.1", "%cudnn-conv.7").replace("%p.1", "%p.9").replace("conv\"", "conv2\"")
    other = gpu.replace("[1,5,36,52,128]", "[1,5,36,20,128]").replace("[1,3,34,50,128]", "[1,3,34,18,128]")
    cpu = ('%c = f32[1,3,8,8,16]{4,3,2,1,0} convolution(f32[1,5,10,10,16]{4,3,2,1,0} %a, f32[3,3,3,16,16]{4,3,2,1,0} '
           '%b), window={size=3x3x3}, dim_labels=b012f_012io->b012f, metadata={op_name="x"}\n')
    stablehlo = ('%9 = stablehlo.convolution(%7, %8) dim_numbers = [b, 0, 1, 2, f]x[0, 1, 2, i, o]->[b, 0, 1, 2, f], '
                 'window = {stride = [1, 1, 1]} : (tensor<1x5x10x10x16xf32>, tensor<3x3x3x16x16xf32>) -> '
                 'tensor<1x3x8x8x16xf32>\n')
    matmul = '%g = bf16[8,8] custom-call(%a, %b), custom_call_target="__cublas$lt$matmul"\n'
    assert len(conv_shapes(gpu + same_shape + matmul)) == 1 and len(conv_shapes(gpu + other)) == 2
    assert conv_shapes(gpu)[0].startswith("(bf16[1,3,34,50,128], u8[0]) custom-call(bf16[1,5,36,52,128] %, ")
    assert "metadata" not in conv_shapes(gpu)[0] and "backend_config" not in conv_shapes(gpu)[0]
    assert len(conv_shapes(cpu + cpu.replace("%c =", "%d =").replace("%a", "%e"))) == 1
    assert len(conv_shapes(stablehlo + stablehlo.replace("%9", "%12").replace("%7", "%3") + cpu)) == 2
    assert conv_shapes(matmul) == []

    assert union_seconds([(0.0, 4.0), (1.0, 2.0), (3.0, 5.0), (7.0, 8.0)]) == 6.0 and union_seconds([]) == 0.0
    windows = [("text_encoding", 0, 1), ("denoising", 1, 2), ("upsampling", 2, 3), ("denoising", 3, 4),
               ("decoding", 4, 5)]
    reported = ["text_encoding", "first_pass", "upsampling", "second_pass", "decoding", "total"]
    assert stage_names(windows, reported) == ["text_encoding", "first_pass", "upsampling", "second_pass", "decoding"]
    assert stage_names(windows[:2], ["text_encoding", "denoising", "total"]) == ["text_encoding", "denoising"]


def test_failing_section_is_recorded_and_the_run_goes_on(run_all, tmp_path, monkeypatch):
    monkeypatch.setenv("RUN_ALL_TEST_INJECT", "matmul_peak:fail")
    out, md = tmp_path / "run.json", tmp_path / "RESULTS.md"
    rc = run_all.main(["--isolate", "none", "--sections", "matmul_peak,scheduler", "--no-torch", "--out", str(out),
                       "--results-md", str(md)])
    data = json.loads(out.read_text())
    failed = data["sections"]["matmul_peak"]
    assert rc == 1 and data["failed_sections"] == ["matmul_peak"]
    assert failed["status"] == "error" and "injected failure" in failed["error"]
    assert "Traceback" in failed["traceback"] and failed["cases"][0]["name"] == "injected partial result"
    ok = data["sections"]["scheduler"]
    assert ok["status"] == "ok" and set(ok["skipped"]) == {"diffusers scheduler"}
    assert "--no-torch" in ok["skipped"]["diffusers scheduler"]
    assert "| matmul_peak | error |" in md.read_text()


def test_section_past_its_budget_is_stopped_with_partial_results(run_all, tmp_path, monkeypatch):
    monkeypatch.setenv("RUN_ALL_TEST_INJECT", "scheduler:hang")
    out, md = tmp_path / "run.json", tmp_path / "RESULTS.md"
    start = time.perf_counter()  # a 20 s budget: the environment probe alone took 9 s on a loaded 2-core machine
    rc = run_all.main(["--sections", "scheduler", "--budget-s", "20", "--out", str(out), "--results-md", str(md)])
    assert time.perf_counter() - start < 45
    data = json.loads(out.read_text())
    entry = data["sections"]["scheduler"]
    assert rc == 1 and entry["status"] == "timeout", entry
    assert [c["name"] for c in entry["cases"]] == ["injected partial result"]  # written before the process was stopped
    assert os.path.exists(os.path.join(os.path.dirname(str(out)), entry["log"]))
    assert "| scheduler | timeout |" in md.read_text()


def test_gpu_sizes_are_consistent(run_all):
    """What the CPU run cannot see: every GPU config builds, shapes are valid, and every estimate key exists."""
    import jax

    from ltx_jax.models.vae import VAETiling
    from ltx_jax.releases import RELEASES

    cpu, gpu = run_all.CPU_SIZES, run_all.GPU_SIZES
    assert set(cpu.estimates) == set(gpu.estimates) >= set(run_all.SECTIONS)
    for sizes in (cpu, gpu):
        cfg = run_all.transformer_config(sizes.transformer, sizes.transformer_layers)
        assert cfg.num_layers == sizes.transformer_layers
        assert len(sizes.attention_text_lengths) >= 2 and max(sizes.attention_text_lengths) <= sizes.text_tokens
        vcfg = run_all.vae_config(sizes.vae)
        VAETiling(**sizes.vae_tiling).check(vcfg.spatial_ratio, vcfg.temporal_ratio)
        run_all.t5_config(sizes.t5)
        assert RELEASES[sizes.pipe_preset].defaults.timesteps
        for spec_t, spec_v, spec_5, (height, width, frames) in (
                (sizes.pipe_transformer, sizes.pipe_vae, sizes.pipe_t5, sizes.pipe_video),
                (sizes.pvc_transformer, sizes.pvc_vae, sizes.pvc_t5, sizes.pvc_video)):
            tcfg, vcfg, t5cfg = (run_all.transformer_config(spec_t), run_all.vae_config(spec_v),
                                 run_all.t5_config(spec_5))
            assert tcfg.in_channels == vcfg.latent_channels and tcfg.caption_channels == t5cfg.d_model
            assert height % 32 == 0 and width % 32 == 0 and (frames - 1) % 8 == 0
        from benchmarks.bench_sampler import parse_thresholds
        from ltx_jax.sampling.step_cache import CACHE_KINDS

        height, width, frames = sizes.cache_video
        assert height % 32 == 0 and width % 32 == 0 and (frames - 1) % 8 == 0
        assert run_all.transformer_config(sizes.cache_transformer, sizes.cache_layers).num_layers > 1
        assert {kind for kind, _ in parse_thresholds(sizes.cache_thresholds)} == set(CACHE_KINDS)
    # ltx2_pipeline: the upsampler takes the VAE's latents, the videos fit the VAE (the two-stage one at half size
    # too), the prompt length the connectors' registers
    from benchmarks.bench_ltx2_pipeline import pipeline_configs, upsampler_config

    for sizes in (cpu, gpu):
        configs = pipeline_configs(*sizes.ltx2_pipe)
        assert upsampler_config(*sizes.ltx2_pipe_upsampler).in_channels == configs.vae.latent_channels
        (height, width, frames), (final_h, final_w, final_f) = sizes.ltx2_pipe_video, sizes.ltx2_pipe_two_stage_video
        assert height % 32 == width % 32 == final_h % 64 == final_w % 64 == 0 and (frames - 1) % 8 == 0
        assert (final_f - 1) % 8 == 0 and sizes.ltx2_pipe_repeats >= 1 and sizes.ltx2_pipe_two_stage_repeats >= 1
        c = configs.connectors
        registers = [n for n in (c.video_connector_num_learnable_registers, c.audio_connector_num_learnable_registers)
                     if n]
        assert all(sizes.ltx2_pipe_text_tokens % n == 0 for n in registers), (registers, sizes.ltx2_pipe_text_tokens)
    assert gpu.ltx2_pipe == ("ltx-2-19b-distilled", {}) and gpu.ltx2_pipe_video == (512, 768, 121)
    assert gpu.ltx2_pipe_two_stage_video == (1024, 1536, 121) and gpu.ltx2_pipe_text_tokens == 1024
    # The GPU models at full size, from shapes alone (no memory): the 2B transformer, T5-XXL, the 0.9.5 decoder.
    from ltx_jax.models import abstract_params, count_params
    from ltx_jax.models.t5 import T5EncoderModel
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel

    two_b = LTXVideoTransformer3DModel(run_all.transformer_config(gpu.pipe_transformer), dtype="bfloat16")
    assert 1.8e9 < count_params(abstract_params(two_b)) < 2.2e9
    assert 4.6e9 < count_params(abstract_params(T5EncoderModel(run_all.t5_config(gpu.pipe_t5)))) < 4.9e9
    vcfg = run_all.vae_config(gpu.vae)
    decoder = jax.eval_shape(lambda: run_all.init_vae_decoder(vcfg, "bfloat16", run_all.rng_key(0)))
    assert 4e8 < count_params(decoder) < 7e8


def test_list_marks_the_optional_sections_and_the_default_gpu_run_fits_its_budget(run_all, capsys):
    """--list gives each section's estimate per sizes, marks the optional ones and says how to run them; the GPU
    sizes' default sections (all but the optional ones) fit the GPU budget by their estimates."""
    from benchmarks.run_all.cli import choose_sections

    assert run_all.main(["--list"]) == 0
    printed = capsys.readouterr().out
    gpu = run_all.GPU_SIZES
    assert gpu.optional and set(gpu.optional) < set(run_all.SECTIONS)
    lines = {line.split()[0]: line for line in printed.splitlines() if line.split()[:1] and
             line.split()[0] in run_all.SECTIONS}
    assert set(lines) == set(run_all.SECTIONS)
    for name, line in lines.items():
        assert ("optional" in line.split()) == (name in gpu.optional), line
    assert "Optional, left out of the default run" in printed and "--sections all --budget-s" in printed
    assert "H200, 2026-12-04" in printed

    default, left_out = choose_sections(None, gpu)
    assert left_out == [n for n in run_all.SECTIONS if n in gpu.optional] and not set(default) & set(left_out)
    assert gpu.total_estimate(default) <= gpu.budget_s < gpu.total_estimate(run_all.SECTIONS)
    assert choose_sections(["all"], gpu) == (list(run_all.SECTIONS), [])
    assert choose_sections([gpu.optional[0]], gpu) == ([gpu.optional[0]], [])  # named: it runs
    assert choose_sections(None, run_all.CPU_SIZES) == (list(run_all.SECTIONS), [])
    assert gpu.estimate("sharding", 1) < gpu.estimate("sharding", 8)  # it skips itself on one GPU


def test_default_run_records_the_optional_sections_as_skipped(run_all, tmp_path, monkeypatch, capsys):
    """A default run leaves the sizes' optional sections out and records each as skipped, in run order, without
    failing; naming one runs it."""
    import dataclasses

    from benchmarks.run_all import sizes as sizes_module

    optional = tuple(n for n in run_all.SECTIONS if n != "scheduler")  # a fast default run: the scheduler alone
    monkeypatch.setitem(sizes_module.SIZES, "cpu", dataclasses.replace(run_all.CPU_SIZES, optional=optional))
    out, md = tmp_path / "run.json", tmp_path / "RESULTS.md"
    rc = run_all.main(["--isolate", "none", "--no-torch", "--sizes", "cpu", "--out", str(out), "--results-md", str(md)])
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert rc == 0 and data["failed_sections"] == [] and data["optional_left_out"] == list(optional)
    assert list(data["sections"]) == list(run_all.SECTIONS)
    assert data["sections"]["scheduler"]["status"] == "ok"
    for name in optional:
        entry = data["sections"][name]
        assert entry["status"] == "skipped" and entry["optional"], entry
        assert f"--sections {name}" in entry["error"]
    assert "| vae | skipped |" in md.read_text() and "optional sections left out" in printed

    rc = run_all.main(["--isolate", "none", "--no-torch", "--sizes", "cpu", "--sections", "scheduler,matmul_peak",
                       "--out", str(out), "--results-md", ""])
    data = json.loads(out.read_text())
    assert rc == 0 and list(data["sections"]) == ["matmul_peak", "scheduler"] and data["optional_left_out"] == []
    assert all(e["status"] == "ok" for e in data["sections"].values())

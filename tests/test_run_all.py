"""benchmarks.run_all at CPU sizes: every section runs and passes, the JSON and the markdown are complete.

This is the CPU rehearsal of the GPU run (same code, small sizes, float32): what could fail for a trivial reason on
the GPU machine fails here first. The markdown goes to a temporary file, never to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_RESULTS_MD = os.path.join(ROOT, "benchmarks", "RESULTS.md")
TIME_LIMIT_S = 240  # the whole CPU run, on 2 shared cores (it takes about 110 s)


def results_md_state():
    return os.stat(REAL_RESULTS_MD).st_mtime_ns if os.path.exists(REAL_RESULTS_MD) else None


@pytest.fixture(scope="module")
def run_all():
    from benchmarks import run_all

    return run_all


def test_cpu_run_all_sections(run_all, tmp_path, capsys):
    out, md = tmp_path / "run.json", tmp_path / "RESULTS.md"
    before = results_md_state()
    start = time.perf_counter()
    rc = run_all.main(["--out", str(out), "--results-md", str(md)])
    elapsed = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert elapsed < TIME_LIMIT_S, f"the CPU run took {elapsed:.0f} s (limit {TIME_LIMIT_S} s)"
    assert results_md_state() == before, "the test must not write benchmarks/RESULTS.md"

    data = json.loads(out.read_text())
    for key in ("schema", "environment", "sizes_name", "sizes", "sections", "matmul_tflops", "failed_sections",
                "started", "finished", "elapsed_s"):
        assert key in data, key
    assert data["sizes_name"] == "cpu" and data["environment"]["backend"] == "cpu"
    assert list(data["sections"]) == list(run_all.SECTIONS)
    problems = {name: (entry.get("status"), entry.get("error"), entry.get("traceback"))
                for name, entry in data["sections"].items() if entry.get("status") != "ok"}
    assert not problems, problems
    assert data["failed_sections"] == [] and rc == 0

    for name, entry in data["sections"].items():
        for key in ("cases", "checks", "goals", "skipped", "info", "seconds", "log"):
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
                "scheduler": lambda c: True, "vae": lambda c: "memory" not in c["name"]}
    for name, pick in compared.items():
        rows = [c for c in sections[name]["cases"] if pick(c)]
        assert rows and all("torch_ms" in c and "ours_ms" in c and "ratio" in c for c in rows), (name, rows)
    timed = [c for e in sections.values() for c in e["cases"] if c.get("tflops") is not None]
    assert timed and all("fraction_of_matmul_peak" in c for c in timed)
    assert {"text_encoding", "denoising", "decoding", "total"} <= {
        c["name"].rsplit(": ", 1)[-1].replace(" ", "_") for c in sections["pipeline"]["cases"]}
    assert "torch_ms" in sections["pipeline"]["cases"][-1]
    pvc = sections["pipeline_vs_cpu_fp32"]["cases"][-1]
    assert pvc["psnr_db"] >= data["sizes"]["pvc_psnr_min"]
    assert any("compile" in c["name"] for c in sections["transformer"]["cases"])
    assert any(c.get("ratio") for c in sections["vae"]["cases"] if "memory" in c["name"])

    text = md.read_text()
    assert text.count("## run_all") == 1
    for name in run_all.SECTIONS:
        assert f"| {name} | ok |" in text, name
    assert "| section | case | ours ms | diffusers ms |" in text and "| section | check | result |" in text
    assert "run_all summary" in printed and "failed sections: none" in printed


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
    start = time.perf_counter()
    rc = run_all.main(["--sections", "scheduler", "--budget-s", "12", "--out", str(out), "--results-md", str(md)])
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

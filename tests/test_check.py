"""``python -m ltx_jax check``: a release's run at full size on this CPU, without weights; the same one-line errors
as ``generate``; a checkpoint's own configs read without its weights; a mesh larger than this machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ltx_jax.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_13B = ["check", "--preset", "ltx-video-0.9.8-13b-dev", "--height", "704", "--width", "1216", "--num_frames", "121"]


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["ltx_jax", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_13b_dev_release_checks_at_1216x704x121(capsys):
    code, out, err = run(FULL_13B, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("ltx-video-0.9.8-13b-dev: 48 blocks x 4096 wide; 1216x704x121, bfloat16")
    assert lines[1].split()[:3] == ["program", "inputs", "GFLOP"]
    programs = [line.split("  ")[0] for line in lines[2:5]]
    assert programs == ["text encoding x2", "denoising", "decoding (tiled)"], out  # CFG: the negative prompt too
    assert "latents [1, 13376, 128] float32" in lines[3]  # 16 x 22 x 38 latent tokens
    assert "transformer 24.29 GiB" in out and "T5 8.87 GiB" in out, out  # 13B and T5-XXL in bf16
    print(out)


@pytest.mark.parametrize("args, message", [
    (["--preset", "ltx-video-0.9.8-13b-deb"], "unknown release 'ltx-video-0.9.8-13b-deb'; did you mean "
                                              "ltx-video-0.9.8-13b-dev"),
    (["--preset", "ltx-video-0.9.8-2b-distilled", "--height", "700"], "height and width must be positive multiples "
                                                                      "of 32"),
    (["--preset", "ltx-video-0.9.8-2b-distilled", "--num_frames", "120"], "num_frames must be 8k + 1"),
    (["--preset", "ltx-video-0.9.8-13b-dev", "--stg_blocks", "19,48"], "--stg_blocks 48: the model's blocks are "
                                                                        "0 .. 47"),
    (["--preset", "ltx-video-0.9.6-dev", "--upsampler", "ltxv-spatial-upscaler-0.9.8.safetensors"],
     "--upsampler: the model has no multi-scale recipe (ltx-video-0.9.6-dev)"),
])
def test_mistakes_are_one_line_and_exit_2(args, message, capsys):
    code, out, err = run(["check", *args], capsys)
    assert code == 2 and err.startswith(f"error: {message}"), err
    assert len(err.strip().splitlines()) == 1 and not out


def test_a_checkpoint_is_checked_from_its_configs_alone(tiny_reference, capsys, monkeypatch):
    """--model reads config.json files and the tokenizer; a weight read would fail here."""
    import weight_conversion.mapping

    def no_weights(*args, **kwargs):
        raise AssertionError("check read weights")

    monkeypatch.setattr(weight_conversion.mapping, "convert", no_weights)
    code, out, err = run(["check", "--model", tiny_reference["root"], "--height", "64", "--width", "96",
                          "--num_frames", "9", "--weights", "int8", "--memory_analysis"], capsys)
    assert code == 0, err
    assert "int8 weights" in out.splitlines()[0] and "lowered and compiled" in out.splitlines()[0]
    assert "+ temporaries" in out.splitlines()[1] and "(no analysis)" not in out


def test_a_mesh_bigger_than_this_machine(tmp_path):
    """--mesh on a one-device CPU: check makes the host devices the mesh needs; parameters are one device's."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
    env = dict(os.environ, XLA_FLAGS=flags)
    result = subprocess.run([sys.executable, "-m", "ltx_jax", "check", "--preset", "ltx-video-0.9.8-2b-distilled",
                             "--mesh", "fsdp=4,tensor=2", "--height", "512", "--width", "768", "--num_frames", "121"],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mesh {'data': 1, 'fsdp': 4, 'context': 1, 'tensor': 2}" in result.stdout
    assert "transformer 0.45 GiB" in result.stdout, result.stdout  # 3.58 GiB / (fsdp x tensor), within rounding

"""The command line's numbers, swept over the values people mistype: 0, negative, huge, NaN and inf. Each mistake
is one line and exit 2, before any model is loaded (the test fails if generate or check is reached)."""

from __future__ import annotations

import numpy as np
import pytest

import ltx_jax.__main__ as cli
from ltx_jax import validation
from ltx_jax.video import write_video

HUGE_INT, HUGE_FLOAT = str(2**70), "1e30"
SWEEP = ("0", "-1", HUGE_INT, "nan", "inf")
# flag -> the values of SWEEP that are valid for it (they are not swept)
INT_FLAGS = {"height": (), "width": (), "num_frames": (), "steps": (), "seed": ("0",), "max_sequence_length": ()}
FLOAT_FLAGS = {"fps": (), "guidance": ("0",), "stg_scale": ("0",)}


def _cases():
    for name, valid in {**INT_FLAGS, **FLOAT_FLAGS}.items():
        for value in SWEEP:
            if value not in valid:
                yield name, HUGE_FLOAT if value == HUGE_INT and name in FLOAT_FLAGS else value


@pytest.fixture
def nothing_runs(monkeypatch):
    """generate and check replaced: reaching either means a bad number passed the checks."""
    def reached(args):
        raise AssertionError(f"a model would load with {args}")

    monkeypatch.setattr(cli, "generate", reached)
    monkeypatch.setattr(cli, "check", reached)


def run(args, capsys) -> tuple[int, str]:
    code = cli.main(["ltx_jax", "generate", "--model", "tiny-random", "--prompt", "a fox", *args])
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(w in lines[0] for w in words), (words, err)


@pytest.mark.parametrize("name, value", list(_cases()))
def test_numeric_flags_refuse_zero_negative_huge_nan_and_inf(name, value, nothing_runs, capsys, tmp_path):
    code, err = run([f"--{name}={value}", "--output", str(tmp_path / "o.mp4")], capsys)
    assert_one_line(code, err, f"--{name}")


@pytest.mark.parametrize("weight", ["1e999", "-inf", "nan", "1e9"])
def test_lora_weights_are_finite_and_bounded(weight, nothing_runs, capsys, tmp_path):
    code, err = run(["--lora", f"{tmp_path / 'x.safetensors'}:{weight}", "--output", str(tmp_path / "o.mp4")], capsys)
    assert_one_line(code, err, "--lora", "finite number within +-100")


def test_a_lora_weight_may_start_with_a_point(nothing_runs, capsys, tmp_path):
    """``X:.5`` is X at 0.5, not a file called "X:.5" (the missing file is named as X)."""
    code, err = run(["--lora", f"{tmp_path / 'x.safetensors'}:.5", "--output", str(tmp_path / "o.mp4")], capsys)
    assert_one_line(code, err, str(tmp_path / "x.safetensors"))
    assert ":.5" not in err


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.gif"
    write_video(np.random.default_rng(0).random((9, 64, 96, 3)), path, fps=8)
    return str(path)


@pytest.mark.parametrize("value", ["0", "-1", "1", HUGE_FLOAT, "nan", "inf"])
def test_denoise_strength(value, clip, nothing_runs, capsys, tmp_path):
    code, err = run(["--video", clip, f"--denoise_strength={value}", "--output", str(tmp_path / "o.mp4")], capsys)
    assert_one_line(code, err, "denoise_strength")


@pytest.mark.parametrize("place", ["-1", HUGE_INT, "nan", "0:nan", "0:inf", "0:-1", f"0:{HUGE_FLOAT}"])
def test_condition_frames_and_strengths(place, clip, nothing_runs, capsys, tmp_path):
    code, err = run(["--condition", f"{clip}@{place}", "--output", str(tmp_path / "o.mp4")], capsys)
    assert_one_line(code, err, "condition")


def test_zero_sizes_are_not_the_defaults(nothing_runs, capsys, tmp_path):
    """``--height 0`` was taken as "not given" and silently became the default."""
    for name in ("height", "width", "num_frames"):
        code, err = run([f"--{name}", "0", "--output", str(tmp_path / "o.mp4")], capsys)
        assert_one_line(code, err, f"--{name} must be an int in 1 .. ")


def test_the_bounds_are_the_pipelines_own():
    """One set of ranges: the Python API refuses what the command line refuses."""
    with pytest.raises(ValueError, match=r"seed must be an int in 0 \.\. 4294967295"):
        validation.check_generation_arguments(
            frame_rate=25, num_inference_steps=8, timesteps=None, guidance_scale=1.0, guidance_rescale=0.0,
            num_videos_per_prompt=1, seed=2**32, decode_timestep=0.0, decode_noise_scale=None,
            max_sequence_length=128, prompt="a fox", negative_prompt=None)
    with pytest.raises(ValueError, match=r"num_frames must be an int <= 2049"):
        validation.check_video_size(512, 768, 8 * 300 + 1, spatial_multiple=32, temporal_ratio=8)


def test_gnu_spelling_of_boolean_flags(nothing_runs, capsys, tmp_path):
    """The README's ``--no...``: absl spells it ``--noprogress``; ``--no-progress`` is taken too."""
    with pytest.raises(AssertionError, match="a model would load"):  # accepted: the run would go on to generate
        run(["--no-progress", "--no-compilation_cache", "--output", str(tmp_path / "o.mp4")], capsys)
    assert cli.FLAGS.progress is False and cli.FLAGS.compilation_cache is False


TRAIN_INT_FLAGS = {"max_sequence_length": (), "lora_rank": (), "steps": (), "warmup_steps": ("0",), "batch_size": (),
                   "gradient_accumulation_steps": (), "checkpoint_every": (), "validation_every": (),
                   "validation_steps": (), "seed": ("0",)}
TRAIN_FLOAT_FLAGS = {"fps": (), "learning_rate": (), "lora_alpha": (), "max_grad_norm": ("0",),
                     "first_frame_conditioning_p": ("0",)}


def _train_cases():
    for name, valid in {**TRAIN_INT_FLAGS, **TRAIN_FLOAT_FLAGS}.items():
        for value in SWEEP:
            if value not in valid:
                yield name, HUGE_FLOAT if value == HUGE_INT and name in TRAIN_FLOAT_FLAGS else value


@pytest.mark.parametrize("name, value", list(_train_cases()))
def test_train_flags_refuse_zero_negative_huge_nan_and_inf(name, value, capsys, tmp_path):
    """``train`` checks its numbers before it reads --data or loads --model (neither exists here)."""
    code = cli.main(["ltx_jax", "train", "--data", str(tmp_path / "none"), "--model", str(tmp_path / "none"),
                     "--output", str(tmp_path / "run"), f"--{name}={value}"])
    assert_one_line(code, capsys.readouterr().err, f"--{name}")

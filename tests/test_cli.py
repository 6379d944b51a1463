"""The command line as a user meets it: a playable video, one-line errors before any model is loaded, --help,
files others can read, no overwriting by surprise, Ctrl-C / SIGTERM that stop a run and leave nothing behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import interrupt_at

from ltx_jax.__main__ import FLAGS, main
from ltx_jax.pipelines.text_to_video import DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES, DEFAULT_WIDTH, LTXPipeline
from ltx_jax.video import read_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(args, *, umask: int | None = None, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    """``python -m ltx_jax generate --model tiny-random ...`` in a fresh process (a Popen when ``popen`` is given),
    with the session's compilation cache (conftest: a later run of the same programs skips their compiles)."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "ltx_jax", "generate", "--model", "tiny-random", *args]
    def preexec():
        # As from a terminal: Ctrl-C's default action, even where this suite runs in a background job (a
        # non-interactive shell's `&` starts jobs with SIGINT ignored, and Python then installs no handler).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if umask is not None:
            os.umask(umask)

    if popen:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, preexec_fn=preexec, **popen)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, preexec_fn=preexec)


def run_in_process(args: list[str], capsys) -> tuple[int, str]:
    code = main(["ltx_jax", *args])
    err = capsys.readouterr().err
    return code, err


def test_writes_a_playable_mp4_that_others_can_read(tmp_path):
    out = tmp_path / "video.mp4"
    result = cli(["--prompt", "a red fox in the snow", "--output", str(out), "--steps", "2", "--noprogress"],
                 umask=0o022)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the output is noise" in result.stderr and f"wrote {out}" in result.stdout and "timings:" in result.stdout
    assert read_video(out).shape == (9, 64, 96, 3)
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o644)  # what umask 022 gives, not mkstemp's 0600
    # --overwrite replaces; without it the same command stops before loading anything.
    refused = cli(["--prompt", "x", "--output", str(out), "--steps", "2", "--noprogress"])
    assert refused.returncode == 2 and "already exists" in refused.stderr and "loading" not in refused.stderr
    before = out.read_bytes()
    again = cli(["--prompt", "x", "--output", str(out), "--steps", "2", "--noprogress", "--overwrite", "--seed", "3"],
                umask=0o077)
    assert again.returncode == 0, again.stderr[-2000:]
    assert out.read_bytes() != before and oct(os.stat(out).st_mode & 0o777) == oct(0o600)  # umask 077
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial-")]


@pytest.mark.parametrize("args, message", [
    (["--fps", "0"], "error: --fps must be > 0, got 0.0"),
    (["--fps", "-5"], "error: --fps must be > 0, got -5.0"),
    (["--preset", "bogus"], "error: unknown release 'bogus'; known releases: ltx-video-0.9.0, "),
    (["--guidance", "-1"], "error: --guidance must be >= 0 (values up to 1 turn classifier-free guidance off), "
                           "got -1.0"),
    (["--height", "70"], "error: height and width must be positive multiples of 32 (the VAE compresses 32x), got "
                         "70x96; nearest valid: 64x96"),
    (["--num_frames", "10"], "error: num_frames must be 8k + 1 (1, 9, 17, ...), got 10; nearest valid: 9"),
    (["--steps", "0"], "error: --steps must be an int in 1 .. 1000000, got 0"),
    (["--steps", "1"], "error: shift_terminal stretch is undefined when the last shifted sigma is 1"),
    (["--max_sequence_length", "0"], "error: --max_sequence_length must be an int in 1 .. 1024, got 0"),
    (["--output", "video.avi"], "error: output 'video.avi' must end in one of .mp4, .gif, .png"),
    (["--output", "/proc/ltx_jax_no_such_folder/x.mp4"], "error: cannot write /proc/ltx_jax_no_such_folder/x.mp4: "
                                                         "the folder /proc is not writable"),
])
def test_argument_errors_are_one_line_before_loading(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "x", *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), err
    assert "loading" not in err  # checked before any model was loaded


def test_usage_errors_are_short_and_help_exits_0(capsys):
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "x", "--bogus", "1"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2 and lines[0] == "error: Unknown command line flag 'bogus'"
    assert lines[1].startswith("usage: python -m ltx_jax generate")
    code, err = run_in_process(["generate", "--model", "tiny-random"], capsys)
    assert code == 2 and err.startswith("error: --prompt is required") and len(err.strip().splitlines()) == 2
    code, err = run_in_process(["make", "--prompt", "x"], capsys)
    assert code == 2 and err.startswith("error: expected the command generate or check, got make")
    assert main(["ltx_jax", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--overwrite" in text and "--max_sequence_length" in text and "--debug" in text


def test_help_and_readme_agree_and_defaults_are_the_apis():
    flags_in_help = {f.name for f in FLAGS.get_flags_for_module(sys.modules["ltx_jax.__main__"])}
    readme = open(os.path.join(ROOT, "README.md")).read()
    missing = sorted(name for name in flags_in_help if f"--{name}" not in readme)
    assert not missing, f"flags missing from the README: {missing}"
    import inspect

    defaults = inspect.signature(LTXPipeline.__call__).parameters
    assert (defaults["height"].default, defaults["width"].default, defaults["num_frames"].default) == (
        DEFAULT_HEIGHT, DEFAULT_WIDTH, DEFAULT_NUM_FRAMES) == (512, 704, 161)
    assert f"default {DEFAULT_HEIGHT} (the Python API's)" in FLAGS["height"].help
    assert f"default {DEFAULT_WIDTH} (the Python API's)" in FLAGS["width"].help
    assert f"default {DEFAULT_NUM_FRAMES} (the Python API's)" in FLAGS["num_frames"].help


def test_checkpoint_errors_are_one_line_before_loading_weights(tmp_path, capsys, tiny_reference):
    """A config.json value of the wrong type names the file, the key and the type; a missing model its path."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_reference["root"], broken)
    config = json.loads((broken / "transformer" / "config.json").read_text())
    (broken / "transformer" / "config.json").write_text(json.dumps({**config, "num_layers": "two"}))
    code, err = run_in_process(["generate", "--model", str(broken), "--prompt", "x", "--output",
                                str(tmp_path / "o.mp4")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {broken / 'transformer' / 'config.json'}: TransformerConfig: 'num_layers' must be "
                          "int, got str 'two'")
    code, err = run_in_process(["generate", "--model", str(tmp_path / "nothing"), "--prompt", "x"], capsys)
    assert code == 2 and err.startswith(f"error: --model {tmp_path / 'nothing'} does not exist")


def test_nonfinite_weights_give_an_error_and_no_file(tmp_path, tiny_reference):
    """A checkpoint with a NaN weight: denoising stops at its first step and says so; nothing is written."""
    from safetensors.numpy import load_file, save_file

    broken = tmp_path / "nan_model"
    shutil.copytree(tiny_reference["root"], broken)
    weights = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    tensors["proj_out.bias"][0] = float("nan")
    save_file(tensors, str(weights))
    out = tmp_path / "nan.mp4"
    result = subprocess.run([sys.executable, "-m", "ltx_jax", "generate", "--model", str(broken), "--prompt", "x",
                             "--height", "64", "--width", "96", "--num_frames", "9", "--steps", "3", "--noprogress",
                             "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: denoising produced NaN or Inf at step 1 of 3; the run was stopped there (check the inputs, dtype and "
        "weights).")
    assert not out.exists()


def _wait_for(proc: subprocess.Popen, pattern: bytes, timeout: float = 120) -> bytes:
    """Reads the child's stderr until ``pattern`` matches; returns what was read."""
    os.set_blocking(proc.stderr.fileno(), False)
    seen, deadline = b"", time.time() + timeout
    while time.time() < deadline:
        seen += proc.stderr.read() or b""
        if re.search(pattern, seen):
            return seen
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"never saw {pattern!r}: {seen[-2000:]!r}")


def _wait_or_kill(proc: subprocess.Popen, timeout: float) -> int:
    """The exit code; a process still running after ``timeout`` is killed (no orphan keeps a core busy)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_ctrl_c_during_denoising_stops_within_3_seconds_and_writes_nothing(tmp_path):
    out = tmp_path / "long.mp4"
    proc = cli(["--prompt", "a fox", "--output", str(out), "--steps", "500000"], stderr=subprocess.PIPE,
               stdout=subprocess.PIPE)
    _wait_for(proc, rb" ([1-9]\d{2,})/500000")  # a hundred steps or more done: the loop is running
    start = time.time()
    proc.send_signal(signal.SIGINT)
    code = _wait_or_kill(proc, 30)
    elapsed = time.time() - start
    tail = (proc.stderr.read() or b"").decode()
    print(f"\n[cli] SIGINT to exit: {elapsed:.2f} s; {tail.strip().splitlines()[-1]}")
    assert code == 130 and elapsed < 3.0
    assert re.search(r"interrupted during denoising after step \d+ of 500000; nothing was written\.$", tail.strip())
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".partial-")]


def test_sigterm_while_writing_leaves_no_file(tmp_path):
    out = tmp_path / "big.mp4"  # 121 frames of 384x256: a write long enough to be inside of
    proc = cli(["--prompt", "a fox", "--output", str(out), "--steps", "2", "--noprogress", "--height", "256",
                "--width", "384", "--num_frames", "121"], stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    _wait_for(proc, rb"writing ", timeout=240)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code = _wait_or_kill(proc, 30)
    tail = (proc.stderr.read() or b"").decode()
    assert code == 143, tail
    assert tail.strip().endswith("terminated (SIGTERM); nothing was written."), tail
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".partial-")]


def test_ctrl_c_in_the_first_seconds_exits_130_and_writes_nothing(tmp_path):
    """SIGINT at moments in the first seconds (imports, JAX's start, building the model): exit 130 with one line, no
    traceback, no file. Before, JAX's garbage-collection callback could swallow it and the run wrote its video."""
    for moment in (0.3, 1.0, 2.0):
        out = tmp_path / f"early_{moment}.mp4"
        _, err = interrupt_at(lambda: cli(["--prompt", "a fox", "--output", str(out), "--steps", "2", "--noprogress"],
                                          stderr=subprocess.PIPE, stdout=subprocess.PIPE), moment, "cli")
        assert re.fullmatch(r"interrupted( during \w+)?; nothing was written\.", err.strip().splitlines()[-1]), err
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".partial-")]


def test_max_sequence_length_flag_and_its_warning(tmp_path):
    out = tmp_path / "short.gif"
    prompt = " ".join(["a red fox walks along the beach at sunset"] * 50)
    result = cli(["--prompt", prompt, "--output", str(out), "--steps", "2", "--noprogress", "--max_sequence_length",
                  "16"])
    assert result.returncode == 0, result.stderr[-2000:]
    warning = [line for line in result.stderr.splitlines() if "max_sequence_length=16" in line]
    assert len(warning) == 1 and len(warning[0]) < 400, warning  # a count and the first words, not the whole text
    assert re.search(r"prompt 0: \d+ of its \d+ tokens are past max_sequence_length=16 and were dropped", warning[0])
    assert read_video(out).shape[0] == 9


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """An image, a 9-frame gif, a 12-frame gif and a file that is not an image."""
    import numpy as np
    import PIL.Image

    from ltx_jax.video import write_video

    folder = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    PIL.Image.fromarray(rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)).save(folder / "image.png")
    write_video(rng.random((9, 64, 96, 3)), folder / "clip9.gif", fps=8)
    write_video(rng.random((12, 64, 96, 3)), folder / "clip12.gif", fps=8)
    (folder / "broken.png").write_text("not an image")
    return folder


@pytest.mark.parametrize("flags, frames", [
    (["--image", "{media}/image.png"], 9),
    (["--condition", "{media}/image.png@0", "--condition", "{media}/clip9.gif@16:0.8", "--num_frames", "33"], 33),
    (["--video", "{media}/clip9.gif", "--denoise_strength", "0.6"], 9),
], ids=["image-to-video", "keyframes", "video-to-video"])
def test_conditioned_generation_writes_an_mp4(flags, frames, media, tmp_path, capsys):
    out = tmp_path / "conditioned.mp4"
    flags = [f.format(media=media) for f in flags]
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "a fox", "--output", str(out),
                                "--steps", "2", "--noprogress", *flags], capsys)
    assert code == 0, err
    assert read_video(out).shape == (frames, 64, 96, 3)


@pytest.mark.parametrize("flags, message", [
    (["--image", "{media}/missing.png"], "error: image {media}/missing.png does not exist"),
    (["--image", "{media}/broken.png"], "error: cannot read the image {media}/broken.png"),
    (["--condition", "{media}/image.png"], "error: --condition '{media}/image.png': write PATH@FRAME"),
    (["--condition", "{media}/image.png@9"], "error: condition 0 frame_index 9 is at or past num_frames=9"),
    (["--condition", "{media}/image.png@0:1.5"], "error: condition 0 strength must be in [0, 1], got 1.5"),
    (["--condition", "{media}/clip12.gif@0"], "error: condition 0: a conditioning video needs k * 8 + 1 frames, got "
                                             "12; nearest valid: 9 or 17"),
    (["--video", "{media}/clip9.gif"], "error: --video and --denoise_strength go together"),
    (["--video", "{media}/clip9.gif", "--denoise_strength", "1.5"], "error: --denoise_strength must be in (0, 1)"),
    (["--image", "{media}/image.png", "--condition", "{media}/image.png@0"], "error: --image is image-to-video"),
    (["--video", "{media}/clip9.gif", "--denoise_strength", "0.5", "--num_frames", "17"],
     "error: --video {media}/clip9.gif has 9 frames, fewer than --num_frames 17"),
])
def test_conditioning_errors_before_loading(flags, message, media, tmp_path, capsys):
    out = tmp_path / "never.mp4"
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "x", "--output", str(out),
                                *[f.format(media=media) for f in flags]], capsys)
    assert code == 2 and err.splitlines()[0].startswith(message.format(media=media)), err
    assert "loading" not in err and not out.exists()


def test_stg_flags(tmp_path, capsys):
    out = tmp_path / "stg.mp4"
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "a fox", "--output", str(out),
                                "--steps", "2", "--noprogress", "--stg_scale", "1.5", "--stg_mode", "attention_skip",
                                "--stg_blocks", "0,1", "--cfg_star"], capsys)
    assert code == 0, err
    assert read_video(out).shape == (9, 64, 96, 3)
    for flags, message in ((["--stg_blocks", "0,9"], "error: --stg_blocks 9: the model's blocks are 0 .. 1."),
                           (["--stg_blocks", "a"], "error: --stg_blocks a: give block indices"),
                           (["--stg_scale", "-1"], "error: --stg_scale must be >= 0")):
        code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "x", "--output",
                                    str(tmp_path / "never.mp4"), *flags], capsys)
        assert code == 2 and err.startswith(message) and "loading" not in err, err


def test_upsampler_runs_multi_scale_generation(tmp_path, capsys):
    """--model tiny-random --upsampler tiny-random: the installation check of the two-pass recipe, in-process."""
    out = tmp_path / "multi.mp4"
    code, err = run_in_process(["generate", "--model", "tiny-random", "--upsampler", "tiny-random", "--prompt",
                                "a fox", "--output", str(out), "--noprogress"], capsys)
    assert code == 0, err
    assert "in two passes (ltx-video-0.9.8-2b-distilled's multi-scale recipe)" in err
    assert read_video(out).shape == (9, 64, 96, 3)


def test_upsampler_errors_before_loading(tmp_path, capsys, tiny_reference):
    import torch
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    never = str(tmp_path / "never.mp4")
    tiny = ["generate", "--model", "tiny-random", "--prompt", "x", "--output", never]
    for flags, message in (
            (["--upsampler", "tiny-random", "--steps", "3", "--guidance", "2"],
             "error: --steps, --guidance: these flags set the one pass of a plain run; with --upsampler"),
            (["--upsampler", "up.safetensors"], "error: --upsampler tiny-random goes with --model tiny-random"),
            (["--upsampler", "tiny-random", "--height", "32"],
             "error: height=32 x downscale_factor=0.666667 leaves no first pass")):
        code, err = run_in_process([*tiny, *flags], capsys)
        assert code == 2 and err.startswith(message) and "loading" not in err, err

    root = tiny_reference["root"]
    wrong = tmp_path / "wrong_upsampler"
    torch.manual_seed(0)
    LTXLatentUpsamplerModel(in_channels=4, mid_channels=32, num_blocks_per_stage=1).save_pretrained(wrong)
    model = ["generate", "--model", root, "--prompt", "x", "--output", never, "--upsampler"]
    for flags, message in (
            ([str(tmp_path / "none.safetensors")],
             f"error: --upsampler {tmp_path / 'none.safetensors'} does not exist"),
            ([str(wrong)], f"error: --upsampler {wrong} takes 4-channel latents but the model's VAE makes 8"),
            ([str(wrong)], "error: --upsampler: the model has no multi-scale recipe")):
        preset = [] if "recipe" in message else ["--preset", "ltx-video-0.9.8-2b-distilled"]
        if "recipe" in message:  # a fitting upsampler, but a checkpoint without a recipe
            fitting = tmp_path / "fitting"
            LTXLatentUpsamplerModel(in_channels=8, mid_channels=32, num_blocks_per_stage=1).save_pretrained(fitting)
            flags = [str(fitting)]
        code, err = run_in_process([*model, *flags, *preset], capsys)
        assert code == 2 and err.startswith(message) and "loading" not in err, err


def test_lora_flag(tmp_path, capsys):
    """--lora PATH:SCALE loads a PEFT adapter made for the tiny-random transformer; a wrong one fails before
    loading, naming the module."""
    import dataclasses

    from diffusers import LTXPipeline as TorchLTXPipeline
    from diffusers import LTXVideoTransformer3DModel
    from peft import LoraConfig, get_peft_model_state_dict

    from ltx_jax.tiny_random import TINY_TRANSFORMER

    model = LTXVideoTransformer3DModel(**dataclasses.asdict(TINY_TRANSFORMER))
    model.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_v"], init_lora_weights=False))
    TorchLTXPipeline.save_lora_weights(str(tmp_path / "lora"), transformer_lora_layers=get_peft_model_state_dict(model))
    out = tmp_path / "lora.mp4"
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "a fox", "--output", str(out),
                                "--steps", "2", "--noprogress", "--lora", f"{tmp_path / 'lora'}:0.5"], capsys)
    assert code == 0 and f"LoRA {tmp_path / 'lora'} x 0.5" in err, err
    assert read_video(out).shape == (9, 64, 96, 3)
    bigger = LTXVideoTransformer3DModel(**{**dataclasses.asdict(TINY_TRANSFORMER), "num_layers": 3})
    bigger.add_adapter(LoraConfig(r=2, target_modules=["to_q"], init_lora_weights=False))
    TorchLTXPipeline.save_lora_weights(str(tmp_path / "deep"),
                                       transformer_lora_layers=get_peft_model_state_dict(bigger))
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "x", "--output",
                                str(tmp_path / "never.mp4"), "--lora", str(tmp_path / "deep")], capsys)
    assert code == 2 and "'transformer_blocks.2.attn1.to_q' matches no linear layer" in err, err
    assert "loading" not in err


def test_weights_flags_with_a_lora(tmp_path, capsys, tiny_reference):
    """--weights / --text_encoder_weights on a checkpoint folder with a --lora fused at load, and on tiny-random;
    a bad value is refused by the flag parser before loading."""
    import dataclasses

    from diffusers import LTXPipeline as TorchLTXPipeline
    from diffusers import LTXVideoTransformer3DModel
    from peft import LoraConfig, get_peft_model_state_dict

    from ltx_jax.tiny_random import TINY_TRANSFORMER

    model = LTXVideoTransformer3DModel(**dataclasses.asdict(TINY_TRANSFORMER))
    model.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "ff.net.2"], init_lora_weights=False))
    TorchLTXPipeline.save_lora_weights(str(tmp_path / "lora"), transformer_lora_layers=get_peft_model_state_dict(model))
    out = tmp_path / "int8.mp4"
    code, err = run_in_process(["generate", "--model", tiny_reference["root"], "--prompt", "a fox", "--output",
                                str(out), "--steps", "2", "--noprogress", "--height", "64", "--width", "96",
                                "--num_frames", "9", "--weights", "int8",
                                "--text_encoder_weights", "int8", "--lora", f"{tmp_path / 'lora'}:0.8"], capsys)
    assert code == 0 and "weights int8, text encoder weights int8" in err and "x 0.8" in err, err
    assert read_video(out).shape == (9, 64, 96, 3)
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "a fox", "--output",
                                str(tmp_path / "fp8.mp4"), "--steps", "2", "--noprogress", "--weights", "fp8"], capsys)
    assert code == 0 and read_video(tmp_path / "fp8.mp4").shape == (9, 64, 96, 3), err
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "x", "--weights", "int4"], capsys)
    assert code != 0 and "--weights" in err and "loading" not in err, err

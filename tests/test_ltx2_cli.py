"""LTX-2 on the command line (``ltx_jax/generate_ltx2.py``, ``check_ltx2.py``, ``tiny_random_ltx2.py``): an mp4 whose
AAC track holds exactly the waveform's samples at the vocoder's rate; ``--noaudio`` writes no track; an LTX-2 folder
is recognised from its configs and generated from; mistakes are one line before anything loads; ``check`` of a
release at full size prints each component's resident bytes."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
from test_audio_output import read_sound

from ltx_jax import ffmpeg, generate_ltx2
from ltx_jax.__main__ import main
from ltx_jax.compilation_cache import enable_compilation_cache
from ltx_jax.pipelines.loop_flops import loop_counted
from ltx_jax.releases import LTX_SCHEDULER
from ltx_jax.tiny_random_ltx2 import (TINY_DEFAULTS, TINY_LTX2_CONFIGS, TINY_LTX2_MODEL, tiny_gemma_tokenizer,
                                      tiny_random_ltx2_pipeline)
from ltx_jax.video import read_video
from weight_conversion import (save_audio_vae_orbax, save_gemma_text_encoder_orbax, save_ltx2_transformer_orbax,
                               save_ltx2_vae_orbax, save_text_connectors_orbax, save_vocoder_orbax)

PROMPT = "a red fox jumps over the lazy dog"
# tiny-random-ltx2's defaults as flags, for a folder of its components (no release: diffusers' defaults otherwise)
TINY_FLAGS = ["--height", "64", "--width", "64", "--num_frames", "9", "--fps", "24", "--steps", "4", "--stg_blocks",
              "1", "--max_sequence_length", "64"]
DURATION_TOLERANCE = 0.05  # s: the sound is shorter than the video by the audio VAE's causal trim (3 mel frames)


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["ltx_jax", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tiny_random_ltx2_writes_an_mp4_with_its_sound_track(tmp_path, capsys):
    """In this process (the next tests reuse its compiled programs); test_cli runs the command line as a child."""
    out = tmp_path / "fox.mp4"
    code, stdout, err = run(["generate", "--model", TINY_LTX2_MODEL, "--prompt", PROMPT, "--output", str(out),
                             "--noprogress"], capsys)
    assert code == 0, err
    assert "the output is noise" in err and f"wrote {out}" in stdout, (err, stdout)
    assert read_video(out).shape == (9, 64, 64, 3)
    made = re.search(r"sound: (\d+) channels x (\d+) samples at 24000 Hz", stdout)  # the waveform the pipeline made
    assert made, stdout
    channels, samples = int(made[1]), int(made[2])
    rate, found_channels, decoded = read_sound(out)
    print(f"sound track: {rate} Hz x {found_channels}, {decoded.shape[1]} samples (the waveform's: {samples})")
    assert channels == TINY_LTX2_CONFIGS.vocoder.out_channels
    assert (rate, found_channels, decoded.shape[1]) == (TINY_LTX2_CONFIGS.vocoder.output_sampling_rate, channels,
                                                         samples)
    assert abs(samples / rate - 9 / TINY_DEFAULTS.frame_rate) < DURATION_TOLERANCE
    assert not [p for p in tmp_path.iterdir() if p.name != "fox.mp4"]  # no temporary left beside it


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> str:
    """tiny-random-ltx2's components saved as a pipeline folder (Orbax components, the tokenizer as transformers
    saves it, a scheduler_config.json); a name that names no release."""
    root = tmp_path_factory.mktemp("tiny_av_pipeline")
    enable_compilation_cache()  # the session's (conftest): the inits the command line compiled are read back
    pipe = tiny_random_ltx2_pipeline()
    encoder, core = pipe.encoder, pipe.core
    save_gemma_text_encoder_orbax(encoder.gemma, encoder.gemma_params, root / "text_encoder")
    for name, save in (("connectors", save_text_connectors_orbax), ("transformer", save_ltx2_transformer_orbax),
                       ("vae", save_ltx2_vae_orbax), ("audio_vae", save_audio_vae_orbax),
                       ("vocoder", save_vocoder_orbax)):
        save(getattr(core, name), pipe.params[name], root / name)
    encoder.tokenizer.save_pretrained(root / "tokenizer")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(LTX_SCHEDULER.to_dict()))
    return str(root)


def test_an_ltx2_folder_is_recognised_and_generates_without_sound(tiny_folder, tmp_path, capsys):
    out = tmp_path / "quiet.mp4"
    code, stdout, err = run(["generate", "--model", tiny_folder, "--prompt", PROMPT, "--output", str(out),
                             "--noaudio", "--noprogress", *TINY_FLAGS], capsys)
    assert code == 0, err
    assert f"loading {tiny_folder}" in err and "no sound track (--noaudio)" in stdout, (err, stdout)
    assert read_video(out).shape == (9, 64, 64, 3)
    found, reason = ffmpeg.probe_audio(str(out))
    assert found is None and "matches no streams" in reason, (found, reason)


def test_a_diffusers_ltx2_folder_is_checked_from_its_configs(tmp_path, capsys, monkeypatch):
    """transformer/config.json's class makes the run LTX-2's; check reads the configs (and the tokenizer) only."""
    import weight_conversion.mapping

    monkeypatch.setattr(weight_conversion.mapping, "convert", lambda *a, **k: pytest.fail("check read weights"))
    c = TINY_LTX2_CONFIGS
    for name, config in (("transformer", c.transformer), ("connectors", c.connectors), ("vae", c.vae),
                         ("audio_vae", c.audio_vae), ("vocoder", c.vocoder), ("text_encoder", c.gemma)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config.to_dict()))
    tiny_gemma_tokenizer().save_pretrained(tmp_path / "tokenizer")
    code, out, err = run(["check", "--model", str(tmp_path), "--dtype", "float32", *TINY_FLAGS], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{tmp_path}: 2 blocks, video 16 + audio 8 wide, Gemma 2 x 12; 64x64x9 at 24 fps"), out
    assert [line.split("  ")[0] for line in lines[2:4]] == ["text encoding", "denoising and decoding"], out
    assert all(f"{part} " in lines[4] for part in ("Gemma", "connectors", "transformer", "VAE", "audio VAE",
                                                    "vocoder")), out


@pytest.mark.parametrize("args, message", [
    (["--cfg_star"], "--cfg_star is an LTX-Video flag and tiny-random-ltx2 is LTX-2: "),
    (["--condition", "first.png@0"], "--condition is an LTX-Video flag and tiny-random-ltx2 is LTX-2: LTX-2's frame "
                                     "conditions are not on the command line yet"),
    (["--image", "first.png"], "image first.png does not exist"),
    (["--num_frames", "10"], "num_frames must be 8k + 1 (1, 9, 17, ...), got 10; nearest valid: 9"),
    (["--height", "48"], "height and width must be positive multiples of 32"),
    (["--audio_guidance_scale", "-1"], "--audio_guidance_scale must be >= 0"),
    (["--audio_guidance_scale", "nan"], "--audio_guidance_scale must be"),
    (["--audio_guidance_rescale", "1.5"], "--audio_guidance_rescale must be <= 1"),
    (["--stg_blocks", "2"], "--stg_blocks 2: the model's blocks are 0 .. 1."),
    (["--max_sequence_length", "30"], "--max_sequence_length 30: the text connectors tile their 4 learned registers"),
    (["--output", "fox.gif"], "--output fox.gif: a GIF holds no sound; add --noaudio"),
    (["--preset", "ltx-2-19b-dev"], "--preset does not go with tiny-random-ltx2"),
    (["--compute", "fp8", "--weights", "fp8"], "--compute is an LTX-Video flag and tiny-random-ltx2 is LTX-2"),
    (["--lora", "adapter.safetensors"], "--lora: tiny-random-ltx2 is built, not loaded"),
    (["--distilled_lora", "d.safetensors"], "--distilled_lora is stage 2's LoRA of the two-stage recipe; add "
                                            "--upsampler"),
    (["--upsampler", "up.safetensors"], "--upsampler tiny-random goes with --model tiny-random-ltx2"),
    (["--upsampler", "tiny-random", "--width", "96"], "--height / --width 128x96: the two-stage recipe runs stage 1 "
                                                      "at half the size, so both must be multiples of 64 (e.g. "
                                                      "128x128)."),
    (["--upsampler", "tiny-random", "--distilled_lora", "d.safetensors"], "--distilled_lora: tiny-random-ltx2 is "
                                                                          "built, not loaded"),
])
def test_mistakes_are_one_line_before_anything_loads(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(generate_ltx2, "tiny_random_ltx2_pipeline", lambda *a, **k: pytest.fail("loaded"))
    code, out, err = run(["generate", "--model", TINY_LTX2_MODEL, "--prompt", "x", *args], capsys)
    assert code == 2 and err.startswith(f"error: {message}"), err
    assert len(err.strip().splitlines()) == 1, err
    assert "loading" not in err and not out


def test_the_families_keep_their_flags(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["generate", "--model", "tiny-random", "--prompt", "x", "--noaudio"], capsys)
    assert code == 2 and err.startswith("error: --audio is an LTX-2 flag (sound, modality guidance, its two-stage "
                                        "recipe); tiny-random is LTX-Video 0.9.x"), err
    code, _, err = run(["generate", "--model", "tiny-random", "--prompt", "x", "--distilled_lora", "d.safetensors"],
                       capsys)
    assert code == 2 and err.startswith("error: --distilled_lora is an LTX-2 flag"), err
    code, _, err = run(["check", "--preset", "ltx-2-19b-dev", "--model", "tiny-random"], capsys)
    assert code == 2 and err.startswith("error: --preset ltx-2-19b-dev is an LTX-2 release, but --model tiny-random "
                                        "is LTX-Video 0.9.x"), err


def test_check_of_the_19b_distilled_release_prints_the_resident_bytes(capsys):
    code, out, err = run(["check", "--preset", "ltx-2-19b-distilled", "--dtype", "bfloat16"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("ltx-2-19b-distilled: 48 blocks, video 4096 + audio 2048 wide, Gemma 48 x 3840; "
                               "768x512x121 at 24 fps, 8 steps, 1024 prompt tokens, bfloat16"), out
    assert [line.split("  ")[0] for line in lines[2:4]] == ["text encoding", "denoising and decoding"], out
    assert "inputs.latents [1, 6144, 128]" in lines[3]  # 16 x 16 x 24 latent tokens
    transformer = 18_876_174_592 * 2 / 1024**3  # releases_ltx2's count (diffusers' class), bf16
    assert f"transformer {transformer:.2f} GiB" in lines[4], out
    assert lines[4].startswith("device memory: the parameters stay, ") and "Gemma " in lines[4], out
    print(out)


def test_tiny_random_ltx2_two_stage_writes_the_final_size(tmp_path, capsys):
    """--upsampler tiny-random: stage 1 at 64 x 64 (the tiny defaults' size), its tiny x2 upscaler, 3 refining steps
    at 128 x 128 (the final size's default: twice the defaults'), with the sound track."""
    out = tmp_path / "fox.mp4"
    code, stdout, err = run(["generate", "--model", TINY_LTX2_MODEL, "--upsampler", "tiny-random", "--prompt", PROMPT,
                             "--output", str(out), "--noprogress"], capsys)
    assert code == 0, err
    assert "128x128 at 24 fps with sound, in two stages: 4 steps at 64x64, the x2 upscaler, 3 refining steps" in err
    assert "timings: stage 1 " in stdout and re.search(r"sound: 2 channels x \d+ samples at 24000 Hz", stdout), stdout
    assert read_video(out).shape == (9, 128, 128, 3)


def _ltx2_lora(path, config) -> str:
    """A rank-1 LoRA of block 0's video and audio self-attention queries at ``config``'s widths (diffusers' names):
    a few KB that a full-size check reads as it would the release's distilled LoRA."""
    from safetensors.numpy import save_file

    video, audio = (config.num_attention_heads * config.attention_head_dim,
                    config.audio_num_attention_heads * config.audio_attention_head_dim)
    tensors = {}
    for name, width in (("attn1", video), ("audio_attn1", audio)):
        tensors[f"transformer.transformer_blocks.0.{name}.to_q.lora_A.weight"] = np.zeros((1, width), np.float32)
        tensors[f"transformer.transformer_blocks.0.{name}.to_q.lora_B.weight"] = np.zeros((width, 1), np.float32)
    save_file(tensors, str(path))
    return str(path)


def test_check_of_the_two_stage_recipes_at_full_size(tmp_path, capsys):
    """The distilled recipe at Lightricks' 1536 x 1024 x 121 (stage 1 at 768 x 512, 6,144 tokens; stage 2 at 24,576)
    and the dev recipe with its distilled LoRA (a second transformer on the device, counted), from the releases'
    configs and the upscaler's file name alone; the LoRA's audio modules pass the LTX-2 check (--lora too)."""
    from ltx_jax.releases_ltx2 import LTX2_RELEASES

    upscaler = "ltx-2-spatial-upscaler-x2-1.0.safetensors"
    code, out, err = run(["check", "--preset", "ltx-2-19b-distilled", "--upsampler", upscaler, "--dtype", "bfloat16"],
                         capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("ltx-2-19b-distilled: 48 blocks, video 4096 + audio 2048 wide, Gemma 48 x 3840; "
                               "1536x1024x121 at 24 fps, two stages (stage 1 at 768x512, the x2 upscaler), "
                               "8 steps"), out
    programs = [line.split("  ")[0] for line in lines[2:7]]
    assert programs == ["text encoding", "denoising and decoding", "upsampling", "video latents in",
                        "denoising and decoding"], out
    assert "inputs.latents [1, 6144, 128]" in lines[3] and "inputs.latents [1, 24576, 128]" in lines[6], out
    assert "upsampler 0.93 GiB" in lines[7] and "stage 2 transformer" not in lines[7], out
    distilled = out

    lora = _ltx2_lora(tmp_path / "distilled.safetensors", LTX2_RELEASES["ltx-2-19b-dev"].transformer)
    code, out, err = run(["check", "--preset", "ltx-2-19b-dev", "--upsampler", upscaler, "--distilled_lora", lora,
                          "--lora", lora, "--dtype", "bfloat16"], capsys)  # stage 2: the distilled one's program
    assert code == 0, err
    memory = next(line for line in out.splitlines() if line.startswith("device memory: "))
    assert "transformer 35.16 GiB" in memory and "stage 2 transformer 35.16 GiB" in memory, out
    assert "stage 2 with the distilled LoRA" in out.splitlines()[0], out
    print(distilled, out, sep="\n")


@pytest.mark.parametrize("upscaler, message", [
    ("ltx-2-temporal-upscaler-x2-1.0.safetensors", "it upsamples in time; the two-stage recipe takes the x2 spatial "
                                                   "upscaler"),
    ("ltx-2.3-spatial-upscaler-x1.5-1.0.safetensors", "it upsamples x1.5; the two-stage recipe doubles"),
    ("ltxv-spatial-upscaler-0.9.8.safetensors", "does not exist; pass the x2 spatial upscaler's file or a "
                                                "latent_upsampler folder (or, to check, a released file's name: "),
])
def test_an_upscaler_that_does_not_fit_the_recipe_is_one_line(upscaler, message, capsys):
    code, _, err = run(["check", "--preset", "ltx-2-19b-distilled", "--upsampler", upscaler], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_check_of_image_to_video_lowers_the_image_encoding(tmp_path, capsys):
    image = tmp_path / "first.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), np.uint8)).save(image)
    code, out, err = run(["check", "--model", TINY_LTX2_MODEL, "--image", str(image), "--dtype", "float32"], capsys)
    assert code == 0, err
    assert "64x64x9 at 24 fps, image to video" in out.splitlines()[0], out
    assert [line.split("  ")[0] for line in out.splitlines()[2:5]] == ["text encoding", "condition encoding",
                                                                       "denoising and decoding"], out


def test_loop_counted_counts_every_step_of_a_while_loop():
    """``loop_flops.loop_counted``: the ``flops=`` that makes a dry run count a while loop's every trip."""
    def program(plan, x, timesteps):
        def body(carry):
            i, y = carry
            return i + 1, y @ x
        return jax.lax.while_loop(lambda carry: carry[0] < timesteps.shape[0], body, (0, x))[1]

    x, steps = jax.ShapeDtypeStruct((4, 4), jnp.float32), jax.ShapeDtypeStruct((5,), jnp.float32)
    flops = loop_counted(program, lambda timesteps, **_: timesteps.shape[0])(plan=None, x=x, timesteps=steps)
    assert flops == 5 * 2 * 4**3, flops

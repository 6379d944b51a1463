"""The two-stage distilled recipe (``LTX2TwoStagePipeline``) against diffusers' documented composition of its
pipelines (``LTX2Pipeline(output_type="latent")`` -> ``LTX2LatentUpsamplePipeline`` -> ``LTX2Pipeline`` with the
stage-2 sigmas and ``noise_scale``), float32, CPU.

The tiny random folder of ``test_ltx2_pipeline`` with an x2 upsampler beside it. Stage 1: 8 steps on the distilled
sigmas at half size without guidance, its start latents pinned (packed, given to both sides); stage 2: 3 steps from
0.909375 at full size, its re-noising noise drawn from a seeded ``torch.Generator`` in diffusers' order (video, then
audio) and given to ours as ``stage_2_noise`` / ``stage_2_audio_noise``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import psnr, randomize_, report
from diffusers import LTX2LatentUpsamplePipeline as TorchUpsamplePipeline
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel as TorchUpsampler
from test_ltx2_core import _snr
from test_ltx2_latent_upsample_pipeline import UPSAMPLER
from test_ltx2_pipeline import T, diffusers_pipeline
from test_ltx2_pipeline import root as folder  # noqa: F401 - the shared folder fixture
from test_ltx2_text_encoding import NEGATIVES, PROMPTS

from ltx_jax.pipelines.ltx2_two_stage import NO_GUIDANCE, LTX2TwoStagePipeline
from ltx_jax.releases_ltx2 import LTX2_DISTILLED_SIGMAS, LTX2_STAGE_2_DISTILLED_SIGMAS

PSNR_MIN, SNR_MIN = 45.0, 40.0  # dB
HEIGHT, WIDTH, FRAMES = 64, 128, 9  # the final size; stage 1 at 32 x 64


@pytest.fixture(scope="module")
def root(folder):  # noqa: F811
    torch.manual_seed(0)
    randomize_(TorchUpsampler(**UPSAMPLER), seed=41).save_pretrained(os.path.join(folder, "latent_upsampler"))
    return folder


def test_distilled_two_stage_matches_diffusers(root):
    ours = LTX2TwoStagePipeline.from_pretrained(root, dtype="float32")
    reference = diffusers_pipeline(root)
    upsample = TorchUpsamplePipeline(vae=reference.vae, latent_upsampler=TorchUpsampler.from_pretrained(
        os.path.join(root, "latent_upsampler")))
    upsample.set_progress_bar_config(disable=True)
    core = ours.pipe.core
    rng = np.random.default_rng(5)
    half = core.grid(height=HEIGHT // 2, width=WIDTH // 2, num_frames=FRAMES, frame_rate=24.0)
    video_shape, audio_shape = core.latent_shapes(half, len(PROMPTS))
    latents = rng.standard_normal(video_shape).astype(np.float32)
    audio_latents = rng.standard_normal(audio_shape).astype(np.float32)
    full_video = core.latent_shapes(core.grid(height=HEIGHT, width=WIDTH, num_frames=FRAMES, frame_rate=24.0),
                                    len(PROMPTS))[0]
    generator = torch.Generator().manual_seed(9)
    noise2, audio_noise2 = torch.randn(full_video, generator=generator), torch.randn(audio_shape, generator=generator)
    sigmas, sigmas_2 = list(LTX2_DISTILLED_SIGMAS[:-1]), list(LTX2_STAGE_2_DISTILLED_SIGMAS[:-1])
    common = dict(prompt=PROMPTS, negative_prompt=NEGATIVES, num_frames=FRAMES, max_sequence_length=T, **NO_GUIDANCE)

    out = ours(**common, height=HEIGHT, width=WIDTH, num_inference_steps=len(sigmas), sigmas=sigmas, latents=latents,
               audio_latents=audio_latents, stage_2_noise=noise2.numpy(), stage_2_audio_noise=audio_noise2.numpy())
    assert set(ours.last_timings.stages) == {"stage_1", "upsampling", "stage_2"}
    with torch.no_grad():
        video_latent, audio_latent = reference(
            **common, height=HEIGHT // 2, width=WIDTH // 2, num_inference_steps=len(sigmas), sigmas=sigmas,
            latents=torch.from_numpy(latents), audio_latents=torch.from_numpy(audio_latents), output_type="latent",
            return_dict=False)
        upscaled = upsample(latents=video_latent, height=HEIGHT // 2, width=WIDTH // 2, num_frames=FRAMES,
                            output_type="latent", return_dict=False)[0]
        frames, audio = reference(**common, height=HEIGHT, width=WIDTH, latents=upscaled, audio_latents=audio_latent,
                                  num_inference_steps=len(sigmas_2), sigmas=sigmas_2, noise_scale=sigmas_2[0],
                                  generator=torch.Generator().manual_seed(9), output_type="np", return_dict=False)
    frames, audio = np.asarray(frames), audio.float().numpy()
    assert out.frames.shape == frames.shape == (len(PROMPTS), FRAMES, HEIGHT, WIDTH, 3), (out.frames.shape,
                                                                                          frames.shape)
    assert np.mean((frames > 0) & (frames < 1)) > 0.5 and np.std(audio) > 1e-3  # not saturated, not silent
    measured_psnr, measured_snr = psnr(out.frames, frames), _snr(out.audio, audio)
    report("ltx2 two-stage distilled recipe: frames PSNR dB", measured_psnr, PSNR_MIN, at_least=True)
    report("ltx2 two-stage distilled recipe: waveform SNR dB", measured_snr, SNR_MIN, at_least=True)
    assert measured_psnr >= PSNR_MIN and measured_snr >= SNR_MIN, (measured_psnr, measured_snr)


def test_duration_head_predicts_num_frames_as_diffusers(root):
    """LTX-2.5's auto-duration: a folder with duration_head/ makes num_frames=None the default; the prediction for
    the first prompt (connectors, then the head; clamped and snapped to 8 k + 1) equals diffusers'."""
    from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
    from diffusers.pipelines.ltx2.duration_head import LTX2DurationHead
    from test_ltx2_pipeline import CONNECTORS

    widths = (CONNECTORS["video_connector_num_attention_heads"] * CONNECTORS["video_connector_attention_head_dim"],
              CONNECTORS["audio_connector_num_attention_heads"] * CONNECTORS["audio_connector_attention_head_dim"])
    torch.manual_seed(0)
    head = randomize_(LTX2DurationHead(video_cross_attention_dim=widths[0], audio_cross_attention_dim=widths[1],
                                       pooler_hidden_dim=12, num_queries=2, num_pooler_heads=3, mlp_hidden_dim=7),
                      seed=43, scale=0.3)
    head.save_pretrained(os.path.join(root, "duration_head"))
    try:
        pipe = LTX2TwoStagePipeline.from_pretrained(root, dtype="float32").pipe
    finally:
        import shutil  # deferred: the folder is shared with the other test

        shutil.rmtree(os.path.join(root, "duration_head"))
    assert pipe.duration_head is not None and pipe.defaults.num_frames is None
    pe, pm, _, _ = pipe.encode_prompt(PROMPTS[:1], None, False, max_sequence_length=T)
    connectors = LTX2TextConnectors.from_pretrained(os.path.join(root, "connectors"))
    for bounds in (dict(min_seconds=0.1, max_seconds=20.0), dict(min_seconds=2.0, max_seconds=3.0)):
        request = pipe.request(prompt=PROMPTS[0], max_sequence_length=T, stg_scale=0.0, audio_stg_scale=0.0, **bounds)
        ours = pipe.resolve_num_frames(request, pe, pm)
        with torch.no_grad():
            video, audio, _ = connectors(torch.from_numpy(np.asarray(pe)), torch.from_numpy(np.asarray(pm)),
                                         padding_side="left")
            expected = head.predict_num_frames(video, audio, frame_rate=24.0, temporal_compression_ratio=8, **bounds)
        assert ours.num_frames == expected, (bounds, ours.num_frames, expected)


@pytest.fixture(scope="module")
def distilled_lora(root, tmp_path_factory) -> str:
    """A PEFT LoRA of the folder's transformer (its video and audio attention's to_q / to_v), as diffusers saves
    one: the stand-in for the release's distilled LoRA."""
    from diffusers import LTX2Pipeline as TorchLTX2Pipeline
    from diffusers import LTX2VideoTransformer3DModel
    from peft import LoraConfig, get_peft_model_state_dict

    where = tmp_path_factory.mktemp("distilled_lora")
    model = LTX2VideoTransformer3DModel.from_pretrained(os.path.join(root, "transformer"))
    config = LoraConfig(r=2, lora_alpha=2.0, init_lora_weights=False, target_modules=["to_q", "to_v"])
    torch.manual_seed(4)
    model.add_adapter(config, adapter_name="distilled")
    TorchLTX2Pipeline.save_lora_weights(os.fspath(where), transformer_lora_layers=get_peft_model_state_dict(
        model, adapter_name="distilled"), transformer_lora_adapter_metadata=config.to_dict())
    return os.path.join(os.fspath(where), "pytorch_lora_weights.safetensors")


def test_dev_recipe_fuses_the_distilled_lora_into_stage_2_only(root, distilled_lora):
    """The dev recipe: ``distilled_lora=`` loads the transformer a second time with the LoRA fused, for stage 2;
    stage 1 keeps the dev weights, every other component is shared."""
    import jax

    pipe = LTX2TwoStagePipeline.from_pretrained(root, dtype="float32", distilled_lora=[(distilled_lora, 1.0)])
    assert pipe.stage_2 is not pipe.pipe and pipe.stage_2.core is pipe.pipe.core
    first, second = pipe.pipe.params, pipe.stage_2.params
    assert all(second[k] is first[k] for k in first if k != "transformer")
    differ = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), first["transformer"],
                                                              second["transformer"]))
    assert any(differ) and not all(differ)  # the adapted projections only


def test_the_command_line_runs_the_dev_recipe_from_a_folder(root, distilled_lora, tmp_path, capsys):
    """``generate --upsampler FOLDER --distilled_lora FILE`` on a diffusers LTX-2 folder: stage 1 at half the size,
    the folder's upsampler, stage 2 through a second transformer with the LoRA fused; an mp4 of the final size with
    its sound track. The same LoRA passes the pre-load check of ``--lora`` too (its audio modules are LTX-2's)."""
    from ltx_jax.__main__ import main
    from ltx_jax.video import read_video

    out = tmp_path / "two.mp4"
    code = main(["ltx_jax", "generate", "--model", root, "--upsampler", os.path.join(root, "latent_upsampler"),
                 "--distilled_lora", distilled_lora, "--lora", f"{distilled_lora}:0.5", "--prompt", PROMPTS[0],
                 "--height", str(HEIGHT), "--width", str(WIDTH), "--num_frames", str(FRAMES), "--steps", "2",
                 "--max_sequence_length", str(T), "--stg_scale", "0", "--audio_stg_scale", "0", "--output", str(out),
                 "--noprogress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"{WIDTH}x{HEIGHT} at 24 fps with sound, in two stages: 2 steps at {WIDTH // 2}x{HEIGHT // 2}, the x2 " \
           "upscaler, 3 refining steps" in captured.err, captured.err
    assert "timings: stage 1 " in captured.out and "upsampling" in captured.out, captured.out
    assert read_video(out).shape == (FRAMES, HEIGHT, WIDTH, 3)

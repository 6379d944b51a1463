"""``LTX2Pipeline`` (``ltx_jax.pipelines.ltx2``) end to end against diffusers' ``LTX2Pipeline`` (float32, CPU).

One tiny random diffusers-style folder with every component (the tokenizer and Gemma of
``test_ltx2_text_encoding``, the transformer / connectors / VAEs / vocoder / scheduler of ``test_ltx2_core``, whose
sizes fit each other: Gemma's 12-wide 3 hidden states are the connectors' input); ours is loaded with
``LTX2Pipeline.from_pretrained`` of the folder, diffusers' from the same saved components. Same prompts and negative
prompts, pinned packed ``latents`` / ``audio_latents``, 4 steps with CFG, STG and modality guidance on; compared on
the frames (PSNR) and the waveform (SNR).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from conftest import psnr, randomize_, report
from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler
from diffusers import LTX2Pipeline as TorchLTX2Pipeline
from diffusers import LTX2VideoTransformer3DModel as TorchLTX2
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
from test_ltx2_core import AUDIO_VAE, CONNECTORS, SCALES, SIZE, STG_BLOCKS, TRANSFORMER, VAE, VOCODER, _snr
from test_ltx2_text_encoding import NEGATIVES, PROMPTS, TINY_GEMMA3_TEXT, TINY_SIGLIP, write_tokenizer
from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration

from ltx_jax.pipelines.ltx2 import LTX2Pipeline, LTX2Request
from ltx_jax.releases import LTX_SCHEDULER

PSNR_MIN, SNR_MIN = 50.0, 40.0  # dB
STEPS, T = 4, 12  # denoising steps, max_sequence_length (a multiple of the 3 connector registers)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """Every component of an LTX-2 pipeline, saved as diffusers saves them."""
    path = str(tmp_path_factory.mktemp("tiny_av_pipeline"))  # a name naming no release
    write_tokenizer(os.path.join(path, "tokenizer"))
    torch.manual_seed(0)
    gemma = Gemma3ForConditionalGeneration(Gemma3Config(text_config=TINY_GEMMA3_TEXT, vision_config=TINY_SIGLIP,
                                                        mm_tokens_per_image=4))
    parts = dict(text_encoder=randomize_(gemma, 1, 0.05), transformer=randomize_(TorchLTX2(**TRANSFORMER), seed=1),
                 connectors=randomize_(LTX2TextConnectors(**CONNECTORS), seed=2, scale=0.2),
                 vae=randomize_(AutoencoderKLLTX2Video(**VAE), seed=3),
                 audio_vae=randomize_(AutoencoderKLLTX2Audio(**AUDIO_VAE), seed=4),
                 vocoder=randomize_(LTX2Vocoder(**VOCODER), seed=5),
                 scheduler=FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(LTX_SCHEDULER)))
    with torch.no_grad():  # non-trivial latent statistics, so (de)normalisation is exercised
        parts["vae"].latents_mean.copy_(torch.linspace(-0.3, 0.3, 8))
        parts["vae"].latents_std.copy_(torch.linspace(0.6, 1.4, 8))
        parts["audio_vae"].latents_mean.copy_(torch.linspace(-0.5, 0.5, 6))
        parts["audio_vae"].latents_std.copy_(torch.linspace(0.5, 2.0, 6))
    for name, part in parts.items():
        part.save_pretrained(os.path.join(path, name))
    return path


def diffusers_pipeline(root: str, cls=TorchLTX2Pipeline):
    """One of diffusers' LTX-2 pipelines (``cls``) on the saved components."""
    load = lambda kind, name: kind.from_pretrained(os.path.join(root, name))  # noqa: E731
    pipe = cls(
        scheduler=load(FlowMatchEulerDiscreteScheduler, "scheduler"), vae=load(AutoencoderKLLTX2Video, "vae"),
        audio_vae=load(AutoencoderKLLTX2Audio, "audio_vae"), connectors=load(LTX2TextConnectors, "connectors"),
        transformer=load(TorchLTX2, "transformer"), vocoder=load(LTX2Vocoder, "vocoder"),
        text_encoder=Gemma3ForConditionalGeneration.from_pretrained(os.path.join(root, "text_encoder"),
                                                                    dtype=torch.float32),
        tokenizer=AutoTokenizer.from_pretrained(os.path.join(root, "tokenizer")))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def reference(root):
    return diffusers_pipeline(root)


@pytest.fixture(scope="module")
def pipe(root):
    return LTX2Pipeline.from_pretrained(root, dtype="float32")


def test_bad_arguments_fail_in_one_line_before_any_work(pipe, monkeypatch):
    monkeypatch.setattr(pipe, "encode_prompt", lambda *a, **k: pytest.fail("encoded before checking"))
    for kwargs, message in ((dict(height=500), "height must be a multiple of 32"),
                            (dict(num_frames=10), r"num_frames must be 8 k \+ 1"),
                            (dict(num_inference_steps=0), "num_inference_steps must be an int"),
                            (dict(guidance_scale=-1.0), "guidance_scale must be >= 0"),
                            (dict(audio_stg_scale=-0.5), "audio_stg_scale must be >= 0"),
                            (dict(output_type="pil"), "expected 'np'"),
                            (dict(stg_scale=1.0, spatio_temporal_guidance_blocks=None), "needs spatio_temporal"),
                            (dict(guidence_scale=3.0), "unknown argument"),
                            (dict(prompt=None), "exactly one of prompt and prompt_embeds"),
                            (dict(max_sequence_length=10), "not a multiple of the connectors' 3 learned registers; "
                                                           "use 12"),
                            (dict(spatio_temporal_guidance_blocks=[7]), "this transformer has 2 blocks")):
        with pytest.raises(ValueError, match=message) as caught:
            pipe(**{"prompt": "a cat", "max_sequence_length": T, **kwargs})
        assert "\n" not in str(caught.value), str(caught.value)
    with pytest.raises(ValueError, match="width must be a multiple of 32"):  # no pipeline needed at all
        LTX2Request(prompt="a cat", width=100).check()


def test_matches_diffusers_end_to_end(pipe, reference):
    assert pipe.release is None and pipe.defaults == LTX2Request()  # a tiny model: diffusers' defaults
    assert pipe.audio_sample_rate == VOCODER["output_sampling_rate"]
    core, rng = pipe.core, np.random.default_rng(7)
    video_shape, audio_shape = core.latent_shapes(core.grid(**SIZE), len(PROMPTS))
    latents = rng.standard_normal(video_shape).astype(np.float32)
    audio_latents = rng.standard_normal(audio_shape).astype(np.float32)
    common = dict(prompt=PROMPTS, negative_prompt=NEGATIVES, **SIZE, **SCALES[0], num_inference_steps=STEPS,
                  spatio_temporal_guidance_blocks=STG_BLOCKS, max_sequence_length=T)

    out = pipe(**common, latents=latents, audio_latents=audio_latents)
    with torch.no_grad():
        ref_frames, ref_audio = reference(**common, latents=torch.from_numpy(latents),
                                          audio_latents=torch.from_numpy(audio_latents), output_type="np",
                                          return_dict=False)
    ref_frames, ref_audio = np.asarray(ref_frames), ref_audio.float().numpy()
    assert out.frames.shape == ref_frames.shape == (2, 9, 32, 64, 3), (out.frames.shape, ref_frames.shape)
    assert out.audio.shape == ref_audio.shape and out.audio.shape[:2] == (2, 2), (out.audio.shape, ref_audio.shape)
    inside = np.mean((ref_frames > 0) & (ref_frames < 1))
    assert inside > 0.5 and np.std(ref_audio) > 1e-3, (inside, np.std(ref_audio))  # not saturated, not silent
    measured_psnr, measured_snr = psnr(out.frames, ref_frames), _snr(out.audio, ref_audio)
    report("ltx2 pipeline (prompts, CFG + STG + modality): frames PSNR dB", measured_psnr, PSNR_MIN, at_least=True)
    report("ltx2 pipeline (prompts, CFG + STG + modality): waveform SNR dB", measured_snr, SNR_MIN, at_least=True)
    assert measured_psnr >= PSNR_MIN and measured_snr >= SNR_MIN, (measured_psnr, measured_snr)
    assert set(pipe.last_timings.stages) == {"text_encoding", "denoise_decode"}

    # given embeddings (diffusers' encode_prompt outputs) give the same result; seeded noise is deterministic
    pe, pm, npe, npm = pipe.encode_prompt(PROMPTS, NEGATIVES, max_sequence_length=T)
    again = pipe(**{**common, "prompt": None}, prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=npe,
                 negative_prompt_attention_mask=npm, latents=latents, audio_latents=audio_latents)
    np.testing.assert_allclose(again.frames, out.frames, atol=1e-5)
    seeded = [pipe(**common, seed=3) for _ in range(2)]
    np.testing.assert_array_equal(seeded[0].frames, seeded[1].frames)
    assert not np.allclose(seeded[0].frames, out.frames) and np.isfinite(seeded[0].audio).all()


def test_release_defaults_are_valid_requests():
    """Each release's defaults as a request: the distilled sigma list (Lightricks' without its final 0, as diffusers'
    constant), LTX-2.0's STG block 29; every one passes the request's own checks."""
    from ltx_jax.pipelines.ltx2 import release_defaults
    from ltx_jax.releases_ltx2 import LTX2_DISTILLED_SIGMAS, LTX2_RELEASES

    for release in LTX2_RELEASES.values():
        dataclasses.replace(release_defaults(release), prompt="a cat").check()
    distilled = release_defaults(LTX2_RELEASES["ltx-2-19b-distilled"])
    assert distilled.sigmas == LTX2_DISTILLED_SIGMAS[:-1] and distilled.num_inference_steps == 8
    assert release_defaults(LTX2_RELEASES["ltx-2-19b-dev"]).spatio_temporal_guidance_blocks == (29,)


_SHARDED = """
import sys
import numpy as np
from ltx_jax.pipelines.ltx2 import LTX2Pipeline
pipe = LTX2Pipeline.from_pretrained(sys.argv[1], progress=False)
rng = np.random.default_rng(0)
shapes = pipe.core.latent_shapes(pipe.core.grid(height=32, width=64, num_frames=9, frame_rate=24.0), 2)
common = dict(prompt=["a cat", "a dog"], height=32, width=64, num_frames=9, num_inference_steps=2,
              max_sequence_length=12, spatio_temporal_guidance_blocks=[1],
              latents=rng.standard_normal(shapes[0]).astype(np.float32),
              audio_latents=rng.standard_normal(shapes[1]).astype(np.float32))
one = pipe(**common)
mesh = "fsdp=2,tensor=2"
out = LTX2Pipeline.from_pretrained(sys.argv[1], progress=False, mesh=mesh)(**common)
print(mesh, float(np.abs(out.frames - one.frames).max()), float(np.abs(out.audio - one.audio).max()))
"""


def test_sharded_over_a_mesh_matches_one_device(root):
    """from_pretrained(mesh=) on 4 host devices (a child process; the transformer and Gemma loaded onto their
    shards): the same frames and waveform as one device, CFG + STG + modality on."""
    import subprocess
    import sys

    env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-c", _SHARDED, root], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in result.stdout.strip().splitlines():
        mesh, frames, audio = line.split()
        report(f"ltx2 pipeline sharded {mesh} vs one device (frames, max abs)", float(frames), 1e-4)
        report(f"ltx2 pipeline sharded {mesh} vs one device (waveform, max abs)", float(audio), 1e-4)
        assert float(frames) <= 1e-4 and float(audio) <= 1e-4, line

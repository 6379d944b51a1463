"""``LTX2ImageToVideoPipeline`` and ``LTX2ConditionPipeline`` (``ltx_jax.pipelines.ltx2_conditions``) against
diffusers' (float32, CPU).

The tiny random folder of ``test_ltx2_pipeline`` (every component, Gemma 3 and its tokenizer); ours loaded with
``from_pretrained``, diffusers' pipelines built from the same saved components. The noise is pinned: diffusers draws
it from a seeded ``torch.Generator`` in a known order (the video noise in ``prepare_latents``, then the audio noise),
so the test draws the same tensors and gives them to ours as ``noise`` / ``audio_noise``. Images are given at the
output size (no resampling on either side) with CRF 0 (no H.264 round trip: ffmpeg builds differ). 4 steps with CFG,
STG and modality guidance; compared on the frames (PSNR) and the waveform (SNR).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compile_counter, psnr, report
from diffusers import LTX2ConditionPipeline as TorchConditionPipeline
from diffusers import LTX2ImageToVideoPipeline as TorchImageToVideoPipeline
from diffusers import LTX2Pipeline as TorchLTX2Pipeline
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition as TorchCondition
from test_ltx2_core import SCALES, SIZE, STG_BLOCKS, _snr
from test_ltx2_pipeline import STEPS, T, diffusers_pipeline, root  # noqa: F401 - root: the shared folder fixture
from test_ltx2_text_encoding import NEGATIVES, PROMPTS

from ltx_jax.pipelines.ltx2_conditions import LTX2ConditionPipeline, LTX2ImageToVideoPipeline, LTX2VideoCondition

PSNR_MIN, SNR_MIN = 50.0, 40.0  # dB
SEED = 11


def _image(seed: int) -> np.ndarray:
    """A smooth random uint8 image at the output size [32, 64, 3] (coarse noise, bilinear upsampled)."""
    import PIL.Image  # deferred: test images only

    coarse = np.random.default_rng(seed).uniform(0, 255, (5, 9, 3)).astype(np.uint8)
    return np.asarray(PIL.Image.fromarray(coarse).resize((SIZE["width"], SIZE["height"]), PIL.Image.BILINEAR))


def _common(scales: dict) -> dict:
    return dict(prompt=PROMPTS, negative_prompt=NEGATIVES, **SIZE, **scales, num_inference_steps=STEPS,
                spatio_temporal_guidance_blocks=STG_BLOCKS, max_sequence_length=T)


def _compare(name: str, ours, ref) -> None:
    ref_frames, ref_audio = np.asarray(ref[0]), ref[1].float().numpy()
    assert ours.frames.shape == ref_frames.shape and ours.audio.shape == ref_audio.shape
    inside = np.mean((ref_frames > 0) & (ref_frames < 1))
    assert inside > 0.5 and np.std(ref_audio) > 1e-3, (inside, np.std(ref_audio))  # not saturated, not silent
    measured_psnr, measured_snr = psnr(ours.frames, ref_frames), _snr(ours.audio, ref_audio)
    report(f"ltx2 {name}: frames PSNR dB", measured_psnr, PSNR_MIN, at_least=True)
    report(f"ltx2 {name}: waveform SNR dB", measured_snr, SNR_MIN, at_least=True)
    assert measured_psnr >= PSNR_MIN and measured_snr >= SNR_MIN, (measured_psnr, measured_snr)


def test_image_to_video_matches_diffusers_and_compiles_once(root):  # noqa: F811
    pipe = LTX2ImageToVideoPipeline.from_pretrained(root, dtype="float32")
    reference = diffusers_pipeline(root, TorchImageToVideoPipeline)
    core = pipe.core
    grid = core.grid(**SIZE)
    channels = core.transformer.config.in_channels
    for call, (scales, image_seed) in enumerate(((SCALES[0], 1), (SCALES[1], 2))):
        image = _image(image_seed)
        common = _common(scales)
        if call:  # new prompts too: the same shapes, nothing to compile
            common.update(prompt=[p + " again" for p in PROMPTS])
        generator = torch.Generator().manual_seed(SEED + call)
        noise = torch.randn((len(PROMPTS), channels, grid.frames, grid.height, grid.width), generator=generator)
        audio = torch.randn((len(PROMPTS), core.audio_vae.config.latent_channels, grid.audio_frames, grid.mel_bins),
                            generator=generator)
        with compile_counter() as compiles:
            ours = pipe(**common, image=image, image_crf=0, noise=TorchLTX2Pipeline._pack_latents(noise).numpy(),
                        audio_noise=TorchLTX2Pipeline._pack_audio_latents(audio).numpy())
        if call:
            assert not compiles, f"a second call (new prompts, image, scales) compiled {len(compiles)} program(s)"
        import PIL.Image  # deferred: diffusers' image input

        with torch.no_grad():
            ref = reference(**common, image=PIL.Image.fromarray(image), image_crf=0, output_type="np",
                            generator=torch.Generator().manual_seed(SEED + call), return_dict=False)
        _compare(f"image to video call {call + 1}", ours, ref)
        # the first frame follows the image (the VAE's reconstruction of it), not noise
        assert psnr(ours.frames[:, 0], np.broadcast_to(image / 255.0, ours.frames[:, 0].shape)) > 5


def test_conditions_match_diffusers(root):  # noqa: F811
    """A first-frame image (latent index 0, strength 1) and a keyframe at the last latent index (appended tokens
    with their own coordinates, strength 0.7), default noise_scale (1)."""
    pipe = LTX2ConditionPipeline.from_pretrained(root, dtype="float32")
    reference = diffusers_pipeline(root, TorchConditionPipeline)
    core = pipe.core
    grid = core.grid(**SIZE)
    first, last = _image(3), _image(4)
    video_shape, audio_shape = core.latent_shapes(grid, len(PROMPTS))
    keyframe_tokens = grid.height * grid.width  # one latent frame
    generator = torch.Generator().manual_seed(SEED)
    noise = torch.randn((video_shape[0], video_shape[1] + keyframe_tokens, video_shape[2]), generator=generator)
    audio = torch.randn(audio_shape, generator=generator)
    ours = pipe(**_common(SCALES[0]), noise=noise.numpy(), audio_noise=audio.numpy(),
                conditions=[LTX2VideoCondition(first, index=0, crf=0),
                            LTX2VideoCondition(last, index=-1, strength=0.7, crf=0)])
    import PIL.Image  # deferred: diffusers' image input

    conditions = [TorchCondition(PIL.Image.fromarray(first), index=0, crf=0),
                  TorchCondition(PIL.Image.fromarray(last), index=-1, strength=0.7, crf=0)]
    with torch.no_grad():
        ref = reference(**_common(SCALES[0]), conditions=conditions, output_type="np",
                        generator=torch.Generator().manual_seed(SEED), return_dict=False)
    _compare("conditions (first frame + keyframe)", ours, ref)


def test_condition_errors_are_one_line(root):  # noqa: F811
    pipe = LTX2ConditionPipeline.from_pretrained(root, dtype="float32")
    image = _image(5)
    for kwargs, message in ((dict(conditions=[LTX2VideoCondition(image, index=5)]), "past the 2 latent frames"),
                            (dict(conditions=[LTX2VideoCondition(image, strength=1.5)]), "strength must be in"),
                            (dict(conditions=["x"]), "takes LTX2VideoCondition items"),
                            (dict(noise_scale=2.0), r"noise_scale must be a number in \[0, 1\]")):
        with pytest.raises(ValueError, match=message) as caught:
            pipe(prompt="a cat", **SIZE, num_inference_steps=2, max_sequence_length=T, stg_scale=0.0,
                 audio_stg_scale=0.0, **kwargs)
        assert "\n" not in str(caught.value)
    i2v = LTX2ImageToVideoPipeline(pipe.encoder, pipe.core, pipe.params)
    with pytest.raises(ValueError, match="needs image="):
        i2v(prompt="a cat", **SIZE)
    with pytest.raises(ValueError, match=r"RGB image \[H, W, 3\]"):
        i2v(prompt="a cat", image=np.zeros((4, 4)), **SIZE)

"""LTX-2's text-to-video-with-sound core (``ltx_jax.pipelines.ltx2_core``) against diffusers' ``LTX2Pipeline``
(float32, CPU): tiny random components that fit each other, saved as one diffusers-style folder and loaded with our
loaders; both sides get the same prompt embeddings (no Gemma) and the same packed initial noise, 4 steps with CFG,
STG and modality guidance on, and are compared on the decoded frames (PSNR) and the waveform (SNR).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from conftest import compile_counter, psnr, randomize_, report
from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler, LTX2Pipeline
from diffusers import LTX2VideoTransformer3DModel as TorchLTX2
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

from ltx_jax.pipelines.ltx2_core import LTX2Core
from ltx_jax.releases import LTX_SCHEDULER
from ltx_jax.scheduler import FlowMatchSchedulerConfig
from weight_conversion import load_audio_vae, load_text_connectors, load_transformer, load_vae, load_vocoder

PSNR_MIN, SNR_MIN = 50.0, 40.0  # dB
# Sizes that fit each other: video latents 8 channels (VAE: 16x spatial, 8x temporal as stated), audio latents 2
# channels x 12 // 4 = 3 mel bins = 6 token features = the audio VAE's base_channels (its statistics' width), the
# decoded mel 2 x 12 = the vocoder's 24 inputs, connector outputs 12 wide = the transformer's caption_channels.
TRANSFORMER = dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
                   audio_in_channels=6, audio_out_channels=6, audio_num_attention_heads=2, audio_attention_head_dim=4,
                   audio_cross_attention_dim=8, num_layers=2, caption_channels=12, perturbed_attn=True)
CONNECTORS = dict(caption_channels=12, text_proj_in_factor=3, video_connector_num_attention_heads=2,
                  video_connector_attention_head_dim=6, video_connector_num_layers=1,
                  video_connector_num_learnable_registers=3, audio_connector_num_attention_heads=3,
                  audio_connector_attention_head_dim=4, audio_connector_num_layers=1,
                  audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=7, rope_type="split",
                  rope_double_precision=True)
VAE = dict(latent_channels=8, block_out_channels=(8, 16, 16, 16), layers_per_block=(1, 0, 1, 0, 1),
           decoder_block_out_channels=(8, 16, 16, 32), decoder_layers_per_block=(1, 0, 1, 0, 1),
           decoder_spatio_temporal_scaling=(True,) * 4, decoder_inject_noise=(False,) * 5,
           upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"), upsample_factor=(2, 2, 1, 2),
           upsample_residual=(False, False, False, True), patch_size=2, spatial_compression_ratio=16,
           temporal_compression_ratio=8)
AUDIO_VAE = dict(base_channels=6, ch_mult=(1, 2, 3), num_res_blocks=1, attn_resolutions=(4,), resolution=8,
                 latent_channels=2, mid_block_add_attention=True, mel_bins=12, in_channels=2, output_channels=2)
VOCODER = dict(in_channels=24, hidden_channels=12, out_channels=2, upsample_kernel_sizes=(5, 4),
               upsample_factors=(3, 2), resnet_kernel_sizes=(3, 5), resnet_dilations=((1, 3), (1, 2)),
               act_fn="leaky_relu", final_act_fn="tanh", final_bias=True, output_sampling_rate=6000)
SIZE = dict(height=32, width=64, num_frames=9, frame_rate=24.0)  # latents 2 x 2 x 4; 9 audio latent frames
B, TEXT, STEPS = 2, 6, 4
SCALES = [dict(guidance_scale=3.0, stg_scale=1.0, modality_scale=3.0, guidance_rescale=0.7, audio_guidance_scale=7.0,
               audio_stg_scale=1.0, audio_modality_scale=3.0, audio_guidance_rescale=0.7),
          dict(guidance_scale=2.0, stg_scale=0.5, modality_scale=1.5, guidance_rescale=0.3, audio_guidance_scale=4.0,
               audio_stg_scale=0.8, audio_modality_scale=2.0, audio_guidance_rescale=0.5,
               sigmas=[1.0, 0.975, 0.725, 0.421875])]  # custom sigmas (as the distilled list): traced, no recompile
STG_BLOCKS = [1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ltx2_core"))
    torch.manual_seed(0)
    transformer = randomize_(TorchLTX2(**TRANSFORMER), seed=1)
    connectors = randomize_(LTX2TextConnectors(**CONNECTORS), seed=2, scale=0.2)
    vae = randomize_(AutoencoderKLLTX2Video(**VAE), seed=3)
    audio_vae = randomize_(AutoencoderKLLTX2Audio(**AUDIO_VAE), seed=4)
    vocoder = randomize_(LTX2Vocoder(**VOCODER), seed=5)
    with torch.no_grad():  # non-trivial latent statistics, so (de)normalisation is exercised
        vae.latents_mean.copy_(torch.linspace(-0.3, 0.3, 8))
        vae.latents_std.copy_(torch.linspace(0.6, 1.4, 8))
        audio_vae.latents_mean.copy_(torch.linspace(-0.5, 0.5, 6))
        audio_vae.latents_std.copy_(torch.linspace(0.5, 2.0, 6))
    scheduler = FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(LTX_SCHEDULER))
    for name, part in (("transformer", transformer), ("connectors", connectors), ("vae", vae),
                       ("audio_vae", audio_vae), ("vocoder", vocoder), ("scheduler", scheduler)):
        part.save_pretrained(os.path.join(root, name))
    pipe = LTX2Pipeline(scheduler=scheduler, vae=vae, audio_vae=audio_vae, text_encoder=None, tokenizer=None,
                        connectors=connectors, transformer=transformer, vocoder=vocoder)
    pipe.set_progress_bar_config(disable=True)

    loaded = dict(transformer=load_transformer(root), connectors=load_text_connectors(root), vae=load_vae(root),
                  audio_vae=load_audio_vae(root), vocoder=load_vocoder(root))
    config = FlowMatchSchedulerConfig.from_json(os.path.join(root, "scheduler", "scheduler_config.json"))
    core = LTX2Core(*(loaded[k][0] for k in ("transformer", "connectors", "vae", "audio_vae", "vocoder")), config)
    return dict(pipe=pipe, core=core, params={k: v[1] for k, v in loaded.items()})


def _inputs(core: LTX2Core, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    video_shape, audio_shape = core.latent_shapes(core.grid(**SIZE), B)
    width = CONNECTORS["caption_channels"] * CONNECTORS["text_proj_in_factor"]
    mask = np.array([[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]], np.int64)  # left padding, as the Gemma tokenizer pads
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return dict(prompt_embeds=f32(B, TEXT, width), prompt_attention_mask=mask,
                negative_prompt_embeds=f32(B, TEXT, width), negative_prompt_attention_mask=mask[::-1].copy(),
                latents=f32(*video_shape), audio_latents=f32(*audio_shape))


def _diffusers(pipe, inputs: dict, scales: dict):
    with torch.no_grad():
        frames, audio = pipe(**{k: torch.from_numpy(v) for k, v in inputs.items()}, **SIZE, **scales,
                             num_inference_steps=STEPS, spatio_temporal_guidance_blocks=STG_BLOCKS,
                             output_type="np", return_dict=False)
    return np.asarray(frames), audio.float().numpy()


def _snr(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ours - ref) ** 2), 1e-300)))


def test_matches_diffusers_and_compiles_once(setup):
    core, params, pipe = setup["core"], setup["params"], setup["pipe"]
    for call, scales in enumerate(SCALES):
        inputs = _inputs(core, seed=10 + call)
        with compile_counter() as compiles:
            out = core(params, **inputs, **SIZE, **scales, num_inference_steps=STEPS,
                       spatio_temporal_guidance_blocks=STG_BLOCKS)
            frames, audio = np.asarray(out.frames), np.asarray(out.audio)
        if call:
            assert not compiles, f"the second call (new scales, new noise) compiled {len(compiles)} program(s)"
        ref_frames, ref_audio = _diffusers(pipe, inputs, scales)
        assert frames.shape == ref_frames.shape == (B, 9, 32, 64, 3), (frames.shape, ref_frames.shape)
        assert audio.shape == ref_audio.shape and audio.shape[:2] == (B, 2), (audio.shape, ref_audio.shape)
        inside = np.mean((ref_frames > 0) & (ref_frames < 1))
        assert inside > 0.5 and np.std(ref_audio) > 1e-3, (inside, np.std(ref_audio))  # not saturated, not silent
        measured_psnr, measured_snr = psnr(frames, ref_frames), _snr(audio, ref_audio)
        report(f"ltx2 core call {call + 1}: frames PSNR dB", measured_psnr, PSNR_MIN, at_least=True)
        report(f"ltx2 core call {call + 1}: waveform SNR dB", measured_snr, SNR_MIN, at_least=True)
        assert measured_psnr >= PSNR_MIN and measured_snr >= SNR_MIN, (measured_psnr, measured_snr)

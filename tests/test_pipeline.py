"""End-to-end text-to-video against diffusers' LTXPipeline (fp32, tiny random components), compile counting, input
validation and loading from every layout (the command line is tests/test_cli.py)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from conftest import build_tiny_reference, compile_counter, psnr, report
from diffusers import FlowMatchEulerDiscreteScheduler

from ltx_jax.pipelines import LTXPipeline
from ltx_jax.releases import LTX_DISTILLED_TIMESTEPS, LTX_SCHEDULER, LTX_SCHEDULER_STATIC
from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER, TINY_VAE

PSNR_MIN_DB = 50.0
HEIGHT, WIDTH, FRAMES = 64, 96, 9  # latent 2 x 2 x 3 = 12 tokens
LAT_F, LAT_H, LAT_W = 2, 2, 3
N_TOKENS = LAT_F * LAT_H * LAT_W
T_TEXT = 16


@pytest.fixture(scope="module")
def reference(tiny_reference):
    return tiny_reference


@pytest.fixture(scope="module")
def ours(reference):
    return LTXPipeline.from_pretrained(reference["root"], dtype="float32", compilation_cache=False, progress=False)


def make_embeddings(seed: int = 0, batch: int = 2, num_tokens: int = N_TOKENS):
    gen = torch.Generator().manual_seed(seed)
    embeds = torch.randn(batch, T_TEXT, TINY_T5.d_model, generator=gen)
    neg = torch.randn(batch, T_TEXT, TINY_T5.d_model, generator=gen)
    mask = torch.zeros(batch, T_TEXT, dtype=torch.long)
    neg_mask = torch.zeros(batch, T_TEXT, dtype=torch.long)
    for b in range(batch):
        mask[b, : T_TEXT - 5 * b] = 1
        neg_mask[b, : 3 + b] = 1
    latents = torch.randn(batch, num_tokens, TINY_TRANSFORMER.in_channels, generator=gen)
    return embeds, mask, neg, neg_mask, latents


# Three up blocks and no patching: the VAE compresses 8x in space (and time), where the released ones compress 32x.
TINY_VAE_8X = TINY_VAE.replace(patch_size=1)


@pytest.fixture(scope="module")
def by_ratio(tmp_path_factory, reference, ours):
    """{spatial ratio: (diffusers reference, our pipeline)} for the 32x tiny VAE and an 8x one."""
    small = build_tiny_reference(tmp_path_factory.mktemp("tiny_8x"), TINY_VAE_8X)
    return {32: (reference, ours), 8: (small, LTXPipeline.from_pretrained(
        small["root"], dtype="float32", compilation_cache=False, progress=False))}


@pytest.mark.parametrize("spatial", [32, 8])
def test_end_to_end_cfg_rescale_matches_diffusers(by_ratio, spatial):
    """Latent sizes and the RoPE scale follow the VAE's own ratios, as diffusers reads them from the VAE."""
    reference, pipe = by_ratio[spatial]
    assert pipe.vae_spatial_compression_ratio == reference["pipe"].vae_spatial_compression_ratio == spatial
    assert pipe.vae_temporal_compression_ratio == reference["pipe"].vae_temporal_compression_ratio == 8
    num_tokens = LAT_F * (HEIGHT // spatial) * (WIDTH // spatial)
    embeds, mask, neg, neg_mask, latents = make_embeddings(num_tokens=num_tokens)
    common = dict(height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=4, guidance_scale=3.0,
                  guidance_rescale=0.7, decode_timestep=0.05, decode_noise_scale=0.0, frame_rate=25)
    with torch.no_grad():
        ref = reference["pipe"](prompt_embeds=embeds, prompt_attention_mask=mask, negative_prompt_embeds=neg,
                                negative_prompt_attention_mask=neg_mask, latents=latents, output_type="np",
                                **common).frames
    frames = pipe(prompt_embeds=embeds.numpy(), prompt_attention_mask=mask.numpy(), negative_prompt_embeds=neg.numpy(),
                  negative_prompt_attention_mask=neg_mask.numpy(), latents=latents.numpy(), **common)
    assert frames.shape == ref.shape == (2, FRAMES, HEIGHT, WIDTH, 3)
    value = psnr(frames, ref)
    report(f"pipeline fp32 CFG 3 + rescale 0.7, 4 steps, {spatial}x VAE ({num_tokens} tokens): PSNR dB", value,
           PSNR_MIN_DB, at_least=True)
    assert value >= PSNR_MIN_DB
    assert pipe.scheduler_config == LTX_SCHEDULER


@pytest.mark.parametrize("spatial", [32, 8])
def test_size_errors_name_the_vae_ratio(by_ratio, spatial):
    pipe = by_ratio[spatial][1]
    embeds, mask, _, _, _ = make_embeddings(seed=3)
    with pytest.raises(ValueError, match=f"positive multiples of {spatial} \\(the VAE compresses {spatial}x\\), "
                                         f"got {HEIGHT + spatial // 2}x{WIDTH}; nearest valid"):
        pipe(prompt_embeds=embeds.numpy(), prompt_attention_mask=mask.numpy(), height=HEIGHT + spatial // 2,
             width=WIDTH, num_frames=FRAMES, num_inference_steps=1, guidance_scale=1.0)


def test_distilled_timesteps_without_guidance_match_reference_loop(reference, ours):
    """diffusers' LTXPipeline rejects explicit timesteps, so the reference loop is built from its scheduler and
    models."""
    pipe = reference["pipe"]
    embeds, mask, _, _, latents = make_embeddings(seed=1, batch=1)
    scheduler = FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(LTX_SCHEDULER_STATIC))
    scheduler.set_timesteps(timesteps=list(LTX_DISTILLED_TIMESTEPS))
    x = latents.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            v = pipe.transformer(x, embeds, t.expand(1), mask, num_frames=LAT_F, height=LAT_H, width=LAT_W,
                                 rope_interpolation_scale=(8 / 24, 32, 32), return_dict=False)[0]
            x = scheduler.step(v.float(), t, x, return_dict=False)[0]
        z = pipe._unpack_latents(x, LAT_F, LAT_H, LAT_W, 1, 1)
        z = pipe._denormalize_latents(z, pipe.vae.latents_mean, pipe.vae.latents_std, pipe.vae.config.scaling_factor)
        video = pipe.vae.decode(z, torch.tensor([0.05]), return_dict=False)[0]
    ref = pipe.video_processor.postprocess_video(video, output_type="np")
    original = ours.scheduler_config
    ours.scheduler_config = LTX_SCHEDULER_STATIC
    try:
        frames = ours(prompt_embeds=embeds.numpy(), prompt_attention_mask=mask.numpy(), latents=latents.numpy(),
                      height=HEIGHT, width=WIDTH, num_frames=FRAMES, frame_rate=24, timesteps=LTX_DISTILLED_TIMESTEPS,
                      guidance_scale=1.0, decode_timestep=0.05, decode_noise_scale=0.0)
    finally:
        ours.scheduler_config = original
    value = psnr(frames, ref)
    report("pipeline fp32 distilled timesteps, guidance 1: PSNR dB", value, PSNR_MIN_DB, at_least=True)
    assert value >= PSNR_MIN_DB


def test_prompts_through_t5_match_diffusers(reference, ours):
    prompts = ["A red fox walks along the beach at sunset.", "Close-up of a cat's face"]
    gen = torch.Generator().manual_seed(5)
    latents = torch.randn(2, N_TOKENS, TINY_TRANSFORMER.in_channels, generator=gen)
    common = dict(height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=2, guidance_scale=2.0,
                  decode_timestep=0.05, decode_noise_scale=0.0, max_sequence_length=T_TEXT)
    with torch.no_grad():
        ref = reference["pipe"](prompt=prompts, negative_prompt="blurry", latents=latents, output_type="np",
                                **common).frames
    frames = ours(prompt=prompts, negative_prompt="blurry", latents=latents.numpy(), **common)
    value = psnr(frames, ref)
    report("pipeline fp32 prompts through T5 + tokenizer: PSNR dB", value, PSNR_MIN_DB, at_least=True)
    assert value >= PSNR_MIN_DB


def test_second_call_compiles_nothing(ours):
    embeds, mask, neg, neg_mask, _ = make_embeddings(seed=2)
    kwargs = dict(prompt_embeds=embeds.numpy(), prompt_attention_mask=mask.numpy(), negative_prompt_embeds=neg.numpy(),
                  negative_prompt_attention_mask=neg_mask.numpy(), height=HEIGHT, width=WIDTH, num_frames=FRAMES,
                  num_inference_steps=3, guidance_scale=3.0, decode_timestep=0.05)
    first = ours(seed=1, **kwargs)
    with compile_counter() as compiles:  # new values, same shapes: a scale per step, and the rescale turned on
        second = ours(seed=2, guidance_rescale=[0.0, 0.7, 0.3], **{**kwargs, "guidance_scale": [4.5, 2.0, 3.5]})
    print(f"\n[pipeline] backend compiles during the second call: {len(compiles)}")
    assert compiles == []
    assert not np.allclose(first, second)
    assert ours.last_timings.denoising > 0 and ours.last_timings.decoding > 0


@pytest.mark.parametrize("change, message", [
    (dict(height=70), "multiples of 32.*nearest valid: 64x96"),
    (dict(width=100), "multiples of 32.*nearest valid: 64x96"),
    (dict(num_frames=10), "8k \\+ 1.*nearest valid: 9"),
    (dict(num_inference_steps=0), "num_inference_steps must be an int in 1 .. 1000000, got 0"),
    (dict(height=64.0), "^height must be an int, got float 64.0"),
    (dict(height="64"), "^height must be an int, got str '64'"),
    (dict(num_inference_steps=2.5), "^num_inference_steps must be an int, got float 2.5"),
    (dict(guidance_scale="3"), "^guidance_scale must be a number or a list of numbers \\(one per step\\), got str '3'"),
    (dict(guidance_scale=-1.0), "^guidance_scale must be >= 0 \\(values up to 1 turn classifier-free guidance off\\)"),
    (dict(guidance_scale=[3.0, 2.0, 1.0]), "^guidance_scale has 3 values for 2 steps"),
    (dict(negative_prompt=123), "^negative_prompt must be a string or a list of strings, got int 123"),
    (dict(seed="abc"), "^seed must be an int, got str 'abc'"),
    (dict(max_sequence_length=0), "^max_sequence_length must be an int in 1 .. 1024, got 0"),
    (dict(frame_rate=0), "^frame_rate must be > 0, got 0"),
    (dict(latents=np.zeros((2, TINY_TRANSFORMER.in_channels, LAT_F, LAT_H, LAT_W))),  # channels-first: wrong layout
     "latents have shape \\(2, 8, 2, 2, 3\\); expected channels-last \\[B, F, H, W, C\\] = \\(2, 2, 2, 3, 8\\)"),
    (dict(latents=np.full((2, N_TOKENS, TINY_TRANSFORMER.in_channels), np.nan)), "latents contain NaN or Inf"),
    (dict(prompt_attention_mask=np.ones((2, 5))), "prompt_attention_mask has shape"),
    (dict(negative_prompt_embeds=np.zeros((2, 3, TINY_T5.d_model)), negative_prompt_attention_mask=np.ones((2, 3))),
     "negative_prompt_embeds has shape"),
    (dict(output_type="pil"), "output_type"),
])
def test_validation_errors(ours, change, message):
    embeds, mask, _, _, _ = make_embeddings(seed=3)
    kwargs = dict(prompt_embeds=embeds.numpy(), prompt_attention_mask=mask.numpy(), height=HEIGHT, width=WIDTH,
                  num_frames=FRAMES, num_inference_steps=2, guidance_scale=1.0)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        ours(**kwargs)


def test_prompt_list_lengths_must_agree(ours):
    with pytest.raises(ValueError, match="negative_prompt has 1 entries but prompt has 2"):
        ours(prompt=["a", "b"], negative_prompt=["c"], height=HEIGHT, width=WIDTH, num_frames=FRAMES,
             num_inference_steps=1)


def test_from_pretrained_orbax_layout_gives_identical_frames(reference, ours, tmp_path):
    """Each component converted to Orbax (``python -m weight_conversion convert``) in the diffusers folder layout."""
    import shutil

    from weight_conversion.__main__ import main as convert_main

    root, dst = reference["root"], tmp_path / "orbax_pipeline"
    dst.mkdir()
    for component, folder in (("transformer", "transformer"), ("vae", "vae"), ("text_encoder", "text_encoder")):
        assert convert_main(["convert", os.path.join(root, folder), str(dst / folder), "--component", component]) == 0
    for folder in ("tokenizer", "scheduler"):
        shutil.copytree(os.path.join(root, folder), dst / folder)
    orbax_pipe = LTXPipeline.from_pretrained(dst, dtype="float32", compilation_cache=False, progress=False)
    kwargs = dict(prompt="a red fox", height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=2,
                  guidance_scale=3.0, decode_timestep=0.05, max_sequence_length=T_TEXT, seed=3)
    np.testing.assert_array_equal(orbax_pipe(**kwargs), ours(**kwargs))


def test_from_pretrained_single_file_with_text_encoder_folder(reference, ours, tmp_path):
    """A Lightricks-style single file (native transformer and VAE names, configs inferred from the tensors' shapes;
    transformer config from the metadata) plus a folder holding text_encoder/ and tokenizer/."""
    import json

    from conftest import to_native_key
    from safetensors.torch import save_file

    from weight_conversion.vae import native_key_function

    pipe = reference["pipe"]
    to_native_vae = native_key_function(TINY_VAE)
    tensors = {to_native_key(k): v.contiguous() for k, v in pipe.transformer.state_dict().items()}
    tensors.update({to_native_vae(k): v.contiguous() for k, v in pipe.vae.state_dict().items()})
    tensors = {k.replace("latents_mean", "per_channel_statistics.mean-of-means")
                .replace("latents_std", "per_channel_statistics.std-of-means"): v for k, v in tensors.items()}
    cfg = TINY_TRANSFORMER
    native = {"num_layers": cfg.num_layers, "num_attention_heads": cfg.num_attention_heads,
              "attention_head_dim": cfg.attention_head_dim, "in_channels": cfg.in_channels,
              "out_channels": cfg.out_channels, "caption_channels": cfg.caption_channels, "qk_norm": "rms_norm"}
    path = tmp_path / "ltxv-tiny-0.9.1.safetensors"
    save_file(tensors, str(path), metadata={"config": json.dumps({"transformer": native})})
    single = LTXPipeline.from_pretrained(path, dtype="float32", text_encoder_path=reference["root"],
                                         compilation_cache=False, progress=False)
    assert single.vae.config == ours.vae.config
    assert single.release.name == "ltx-video-0.9.1"  # from the file name
    assert single.defaults.stg_scale == 1.0 and single.defaults.skip_block_list == ()  # 0.9.1's STG, no block 19 here
    kwargs = dict(prompt="a red fox", height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=2,
                  guidance_scale=3.0, stg_scale=0.0, decode_timestep=0.05, decode_noise_scale=0.0,
                  max_sequence_length=T_TEXT, seed=4)
    np.testing.assert_array_equal(single(**kwargs), ours(**kwargs))

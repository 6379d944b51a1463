"""``LTX2LatentUpsamplePipeline`` against diffusers' (float32, CPU): a tiny random LTX-2 VAE (test_ltx2_core's sizes:
8 latent channels, 16x spatial, 8x temporal; here timestep-conditioned, so decode_timestep is exercised) and a tiny
spatial x2 upsampler (the rational resampler, as LTX-2's release), saved as one diffusers folder and loaded with our
loaders.

- latents in ([B, C, F, H, W] raw, as LTX2Pipeline(output_type="latent") returns them; and packed, normalised), raw
  latents out, with AdaIN and tone mapping on: max abs error; a second call with new latents and factors compiles
  nothing;
- a video in (10 frames of odd latent width: truncated to 9, encoded, upsampled, decoded at timestep 0.05 without
  decode noise, which each side would draw from its own generator): PSNR of the frames. The encoder's log-variance is
  pinned at its floor (std 3e-7), so diffusers' posterior sample and ours differ by nothing measurable;
- bad arguments get one line each, before any work.
"""

from __future__ import annotations

import logging
import os
import types

import numpy as np
import pytest
import torch
from conftest import compile_counter, psnr, randomize_, report
from diffusers import AutoencoderKLLTX2Video, LTX2LatentUpsamplePipeline as TorchUpsamplePipeline
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel as TorchUpsampler
from test_ltx2_core import VAE

from ltx_jax.pipelines.ltx2_latent_upsample import LTX2LatentUpsamplePipeline
from ltx_jax.pipelines.ltx2_latents import pack_video_latents

LATENT_TOL = 1e-4  # max |ours - diffusers| of the upsampled raw latents (values of order 1)
PSNR_MIN = 50.0  # dB, decoded frames
C = VAE["latent_channels"]
B, F, H, W = 2, 2, 3, 5  # latent grid (odd H and W); pixels 9 x 48 x 80
UPSAMPLER = dict(in_channels=C, mid_channels=96, num_blocks_per_stage=1, rational_spatial_scale=2.0)
CALLS = [dict(adain_factor=0.7, tone_map_compression_ratio=0.6), dict(adain_factor=1.0, tone_map_compression_ratio=0.3)]


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ltx2_upsample"))
    torch.manual_seed(0)
    vae = randomize_(AutoencoderKLLTX2Video(**VAE, timestep_conditioning=True), seed=31)
    upsampler = randomize_(TorchUpsampler(**UPSAMPLER), seed=32)
    with torch.no_grad():  # non-trivial statistics, so (de)normalisation is exercised; a sharp posterior
        vae.latents_mean.copy_(torch.linspace(-0.3, 0.3, C))
        vae.latents_std.copy_(torch.linspace(0.6, 1.4, C))
        vae.encoder.conv_out.conv.bias[-1] = -100.0  # log-variance clamped to -30
    vae.save_pretrained(os.path.join(root, "vae"))
    upsampler.save_pretrained(os.path.join(root, "latent_upsampler"))
    theirs = TorchUpsamplePipeline(vae=vae, latent_upsampler=upsampler)
    theirs.set_progress_bar_config(disable=True)
    return LTX2LatentUpsamplePipeline.from_pretrained(root), theirs, root


def _raw_latents(seed: int) -> np.ndarray:
    """[B, C, F, H, W] float32, raw (the VAE's scale: mean and std per channel)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, C, F, H, W)) * 1.3 + 0.2).astype(np.float32)


def _diffusers(pipe, **kwargs) -> np.ndarray:
    latents = kwargs.pop("latents", None)
    with torch.no_grad():
        out = pipe(latents=None if latents is None else torch.from_numpy(latents), return_dict=False, **kwargs)[0]
    return out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def test_latents_match_diffusers_and_a_second_call_compiles_nothing(pipelines):
    ours, theirs, _ = pipelines
    for call, factors in enumerate(CALLS):
        x = _raw_latents(seed=call)
        with compile_counter() as compiles:
            out = ours(latents=x, height=48, width=80, output_type="latent", **factors).frames
        if call:
            assert not compiles, f"the second call (new latents and factors) compiled {len(compiles)} program(s)"
        ref = _diffusers(theirs, latents=x, height=48, width=80, output_type="latent", **factors)
        assert out.shape == ref.shape == (B, C, F, 2 * H, 2 * W), (out.shape, ref.shape)
        err = float(np.max(np.abs(out - ref)))
        report(f"ltx2 latent upsample call {call + 1} (latents in, {factors}): max abs err", err, LATENT_TOL)
        assert err <= LATENT_TOL and np.std(ref) > 0.1, (err, np.std(ref))


def test_packed_normalised_latents_match_diffusers(pipelines):
    """Packed tokens [B, N, C] on the grid of num_frames / height / width, normalised (latents_normalized=True)."""
    ours, theirs, _ = pipelines
    tokens = pack_video_latents(np.moveaxis(_raw_latents(seed=5), 1, -1))  # [B, F H W, C]
    kw = dict(height=48, width=80, num_frames=9, latents_normalized=True, adain_factor=0.5, output_type="latent")
    out = ours(latents=tokens, **kw).frames
    ref = _diffusers(theirs, latents=tokens, **kw)
    assert out.shape == ref.shape == (B, C, F, 2 * H, 2 * W)
    err = float(np.max(np.abs(out - ref)))
    report("ltx2 latent upsample (packed, normalised latents in): max abs err", err, LATENT_TOL)
    assert err <= LATENT_TOL


def test_video_in_frames_out_match_diffusers(pipelines, caplog):
    ours, theirs, _ = pipelines
    video = np.random.default_rng(7).random((10, 48, 80, 3)).astype(np.float32)  # [F, H, W, 3] in [0, 1]
    kw = dict(height=48, width=80, adain_factor=1.0, tone_map_compression_ratio=0.3, decode_timestep=0.05,
              decode_noise_scale=0.0, output_type="np")
    with caplog.at_level(logging.WARNING, logger="ltx_jax"):
        frames = ours(video=video, **kw).frames
    assert "Truncating to 9 frames" in caplog.text
    ref = _diffusers(theirs, video=video, **kw)
    assert frames.shape == ref.shape == (1, 9, 96, 160, 3), (frames.shape, ref.shape)
    inside = np.mean((ref > 0) & (ref < 1))
    assert inside > 0.5, inside  # not saturated
    value = psnr(frames, ref)
    report("ltx2 latent upsample (video in, frames out) vs diffusers: PSNR dB", value, PSNR_MIN, at_least=True)
    assert value >= PSNR_MIN
    assert set(ours.last_timings.stages) == {"encoding", "upsampling", "decoding"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "give exactly one of video= "),
    (dict(latents=np.zeros((1, C, 2, 3, 5), np.float32), video=np.zeros((9, 48, 80, 3))), "give exactly one of"),
    (dict(tone_map_compression_ratio=1.5), "tone_map_compression_ratio must be <= 1, got 1.5"),
    (dict(adain_factor="1"), "adain_factor must be a number"),
    (dict(height=40), r"height=40 must be a multiple of 16 .*\(try 32\)"),
    (dict(output_type="pil"), "output_type='pil'; use 'np'"),
    (dict(generator=0), "unknown argument\\(s\\) generator"),
    (dict(latents=np.zeros((1, 4, 2, 3, 5), np.float32)), r"expected \[B, 8, F, H, W\]"),
    (dict(latents=np.zeros((1, 7, C), np.float32), num_frames=9), r"make \[B, 30, 8\]"),
    (dict(latents=np.full((1, C, 2, 3, 5), np.nan, np.float32)), "NaN or Inf"),
    (dict(decode_timestep=(0.1, 0.2, 0.3)), "3 values for 1 video"),
    (dict(tiling="yes"), "tiling='yes'"),
])
def test_bad_arguments_get_one_line(pipelines, kwargs, message):
    ours, _, _ = pipelines
    if "latents" not in kwargs and "video" not in kwargs and kwargs:
        kwargs = dict(latents=np.zeros((1, C, 2, 3, 5), np.float32), **kwargs)
    kwargs = dict(dict(height=48, width=80), **kwargs)
    with pytest.raises(ValueError, match=message) as error:
        ours(**kwargs)
    assert "\n" not in str(error.value), str(error.value)


def test_from_pretrained_and_from_pipe(pipelines, tmp_path):
    _, _, root = pipelines
    os.symlink(os.path.join(root, "vae"), tmp_path / "vae")
    with pytest.raises(ValueError, match="no latent upsampler found"):
        LTX2LatentUpsamplePipeline.from_pretrained(tmp_path)
    separate = LTX2LatentUpsamplePipeline.from_pretrained(tmp_path, latent_upsampler_path=os.path.join(
        root, "latent_upsampler"))
    assert separate.latent_upsampler.config.rational_spatial_scale == 2.0
    stage_one = types.SimpleNamespace(core=types.SimpleNamespace(vae=separate.vae), params={"vae": separate.vae_params})
    upsampler = (separate.latent_upsampler, separate.latent_upsampler_params)
    shared = LTX2LatentUpsamplePipeline.from_pipe(stage_one, *upsampler)
    assert shared.vae is separate.vae and shared.vae_params is separate.vae_params

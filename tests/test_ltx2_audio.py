"""LTX-2 audio VAE and vocoders: parity with diffusers' ``AutoencoderKLLTX2Audio``, ``LTX2Vocoder`` and
``LTX2VocoderWithBWE``, loading from diffusers folders, a Lightricks single file and Orbax, full-size param counts.

Tiny odd configs, fp32 on CPU, every torch weight perturbed (``randomize_``): an audio VAE of widths 6 / 12 / 18 with
attention (mid block and one level), 5 latent channels and 13 mel bins; an LTX-2-style vocoder (LeakyReLU, tanh) of
hidden width 12 over two stages (x3 with an odd kernel, x2) and resnets of kernels 3 and 5; an LTX-2.3-style BWE
vocoder (anti-aliased SnakeBeta; the 8 kHz stage's waveform through a 16-tap causal STFT and 9 mel bins into a x6
BWE stage, plus the x2 Hann-sinc skip), with a real windowed DFT basis and a random mel filterbank.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import randomize_, rel_err, report
from diffusers import AutoencoderKLLTX2Audio as TorchAudioVAE
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder as TorchVocoder
from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE as TorchVocoderWithBWE
from safetensors.torch import save_file

from ltx_jax.configs_ltx2 import LTX2AudioVAEConfig, LTX2VocoderConfig, LTX2VocoderWithBWEConfig
from ltx_jax.models import abstract_params, count_params
from ltx_jax.models.ltx2.audio_vae import AutoencoderKLLTX2Audio, pack_audio_latents, unpack_audio_latents
from ltx_jax.models.ltx2.vocoder import BUFFER_LEAVES, LTX2Vocoder, LTX2VocoderWithBWE
from weight_conversion.__main__ import main as convert_main
from weight_conversion.ltx2_audio import (load_audio_vae, load_vocoder, native_single_file_tensors,
                                          save_vocoder_orbax)
from weight_conversion.mapping import flatten
from weight_conversion.safetensors_io import CheckpointError

TOL = 1e-4  # max |ours - ref| / max |ref|
B = 2
TINY_VAE = dict(base_channels=6, ch_mult=(1, 2, 3), num_res_blocks=1, attn_resolutions=(4,), resolution=8,
                latent_channels=5, mid_block_add_attention=True, mel_bins=13, in_channels=2, output_channels=2)
TINY_VOCODER = dict(in_channels=14, hidden_channels=12, out_channels=2, upsample_kernel_sizes=(5, 4),
                    upsample_factors=(3, 2), resnet_kernel_sizes=(3, 5), resnet_dilations=((1, 3), (1, 2)),
                    act_fn="leaky_relu", final_act_fn="tanh", final_bias=True, output_sampling_rate=6000)
TINY_BWE = dict(in_channels=14, hidden_channels=8, out_channels=2, upsample_kernel_sizes=(5, 4),
                upsample_factors=(3, 2), resnet_kernel_sizes=(3, 5), resnet_dilations=((1, 3), (1, 2)),
                bwe_in_channels=18, bwe_hidden_channels=8, bwe_out_channels=2, bwe_upsample_kernel_sizes=(7, 4),
                bwe_upsample_factors=(3, 2), bwe_resnet_kernel_sizes=(3,), bwe_resnet_dilations=((1, 2),),
                filter_length=16, hop_length=3, window_length=16, num_mel_channels=9, input_sampling_rate=8000,
                output_sampling_rate=16000)
MEL_FRAMES = 10  # vocoder input frames (mel [B, 2, 10, 7] in diffusers' layout)


@functools.partial(jax.jit, static_argnums=(0, 3))
def run(module, params, x, method=None):
    """One compiled program per (equal) module and method, shared by every test that runs it."""
    return module.apply({"params": params}, x, method=method)


def torch_bwe() -> TorchVocoderWithBWE:
    """The tiny BWE vocoder with a Hann-windowed DFT basis and a random mel filterbank (diffusers leaves them zero),
    output weights scaled down so that the final clamp to [-1, 1] cuts nothing."""
    torch.manual_seed(3)
    model = TorchVocoderWithBWE(**TINY_BWE)
    n, freqs = TINY_BWE["filter_length"], TINY_BWE["filter_length"] // 2 + 1
    angle = 2 * np.pi * np.arange(freqs)[:, None] * np.arange(n) / n
    basis = np.concatenate([np.cos(angle), -np.sin(angle)]) * np.hanning(n + 1)[:-1]  # [2F, L]
    with torch.no_grad():
        model.mel_stft.stft_fn.forward_basis.copy_(torch.from_numpy(basis[:, None].astype(np.float32)))
        model.mel_stft.stft_fn.inverse_basis.copy_(torch.from_numpy(basis[:, None].astype(np.float32)) / n)
        model.mel_stft.mel_basis.copy_(torch.rand(TINY_BWE["num_mel_channels"], freqs))
    randomize_(model, seed=13)
    with torch.no_grad():
        model.vocoder.conv_out.weight.mul_(0.2)
        model.bwe_generator.conv_out.weight.mul_(0.02)
    return model


def native_metadata() -> dict:
    """The single file's ``config`` entry for the tiny audio VAE and BWE vocoder, in ltx-core's keys."""
    v = TINY_VAE
    audio_vae = {"model": {"params": {"sampling_rate": 16000, "ddconfig": {
        "ch": v["base_channels"], "out_ch": v["output_channels"], "ch_mult": list(v["ch_mult"]),
        "num_res_blocks": v["num_res_blocks"], "attn_resolutions": list(v["attn_resolutions"]),
        "resolution": v["resolution"], "z_channels": v["latent_channels"], "in_channels": v["in_channels"],
        "double_z": True, "mid_block_add_attention": True, "norm_type": "pixel", "causality_axis": "height"}}},
        "preprocessing": {"stft": {"hop_length": 160, "causal": True}, "mel": {"n_mel_channels": v["mel_bins"]}}}

    def stage(prefix: str, **extra) -> dict:
        b = {k[len(prefix):]: val for k, val in TINY_BWE.items() if k.startswith(prefix) or not prefix}
        return {"resblock": "AMP1", "activation": "snakebeta", "stereo": True,
                "upsample_initial_channel": b["hidden_channels"], "upsample_rates": list(b["upsample_factors"]),
                "upsample_kernel_sizes": list(b["upsample_kernel_sizes"]),
                "resblock_kernel_sizes": list(b["resnet_kernel_sizes"]),
                "resblock_dilation_sizes": [list(d) for d in b["resnet_dilations"]], "use_bias_at_final": False,
                **extra}

    bwe = stage("bwe_", input_sampling_rate=8000, output_sampling_rate=16000, n_fft=16, hop_length=3, num_mels=9)
    vocoder = {"vocoder": stage("", use_tanh_at_final=False), "bwe": bwe}
    return {"config": json.dumps({"audio_vae": audio_vae, "vocoder": vocoder})}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ltx2_audio")
    torch.manual_seed(1)
    vae = randomize_(TorchAudioVAE(**TINY_VAE), seed=11)
    with torch.no_grad():
        vae.latents_mean.copy_(torch.linspace(-0.5, 0.5, vae.latents_mean.numel()))
        vae.latents_std.copy_(torch.linspace(0.5, 2.0, vae.latents_std.numel()))
    torch.manual_seed(2)
    vocoder = randomize_(TorchVocoder(**TINY_VOCODER), seed=12)
    bwe = torch_bwe()
    vae.save_pretrained(root / "ltx2" / "audio_vae")
    vocoder.save_pretrained(root / "ltx2" / "vocoder")
    bwe.save_pretrained(root / "ltx23" / "vocoder")
    single = root / "ltx-2.3-tiny.safetensors"
    tensors = native_single_file_tensors({k: v.contiguous() for k, v in vae.state_dict().items()},
                                         {k: v.contiguous() for k, v in bwe.state_dict().items()})
    tensors["vae.decoder.conv_in.conv.weight"] = torch.zeros(3, 3, 1, 1, 1)  # another component's: never read
    save_file(tensors, os.fspath(single), metadata=native_metadata())
    return {"vae": vae, "vocoder": vocoder, "bwe": bwe, "ltx2": str(root / "ltx2"), "ltx23": str(root / "ltx23"),
            "single_file": str(single), "root": root}


def mel_input(seed: int, frames: int = MEL_FRAMES, bins: int = 7) -> np.ndarray:
    """Vocoder input in diffusers' layout [B, 2, T, M]."""
    return np.random.default_rng(seed).standard_normal((B, 2, frames, bins)).astype(np.float32)


def to_ours(x: np.ndarray) -> jax.Array:
    """NCHW [B, C, T, M] -> [B, T, M, C]."""
    return jnp.asarray(x.transpose(0, 2, 3, 1))


def from_ours(x) -> np.ndarray:
    return np.asarray(x).transpose(0, 3, 1, 2)


# ------------------------------------------------------------------------------------------------ audio VAE


def test_audio_vae_encode(checkpoints):
    module, params = load_audio_vae(checkpoints["ltx2"])  # the pipeline root: finds audio_vae/
    assert module.config == LTX2AudioVAEConfig(**TINY_VAE)
    mel = np.random.default_rng(0).standard_normal((B, 2, 9, 13)).astype(np.float32)  # [B, C, T, M]
    with torch.no_grad():
        posterior = checkpoints["vae"].encode(torch.from_numpy(mel)).latent_dist
    mean, logvar = run(module, params, to_ours(mel), "encode")
    assert from_ours(mean).shape == tuple(posterior.mean.shape) == (B, 5, 3, 3)
    err = max(rel_err(from_ours(mean), posterior.mean.numpy()), rel_err(from_ours(logvar), posterior.logvar.numpy()))
    report("LTX-2 audio VAE encode (mean, logvar) vs diffusers (fp32)", err, TOL)
    assert err <= TOL


def test_audio_vae_decode(checkpoints):
    module, params = load_audio_vae(os.path.join(checkpoints["ltx2"], "audio_vae"))
    z = np.random.default_rng(1).standard_normal((B, 5, 3, 4)).astype(np.float32)  # [B, L, T', M']
    with torch.no_grad():
        ref = checkpoints["vae"].decode(torch.from_numpy(z)).sample.numpy()
    ours = from_ours(run(module, params, to_ours(z), "decode"))
    assert ours.shape == ref.shape == (B, 2, 9, 13)  # 4 * 3 - 3 frames, cropped to mel_bins
    err = rel_err(ours, ref)
    report("LTX-2 audio VAE decode vs diffusers (fp32)", err, TOL)
    assert err <= TOL
    np.testing.assert_allclose(params["latents_std"], checkpoints["vae"].latents_std.numpy())
    tokens = pack_audio_latents(to_ours(z))  # diffusers' _pack_audio_latents: [B, T', L * M']
    np.testing.assert_array_equal(tokens, torch.from_numpy(z).transpose(1, 2).flatten(2, 3).numpy())
    np.testing.assert_array_equal(unpack_audio_latents(tokens, 4), to_ours(z))


# ------------------------------------------------------------------------------------------------ vocoders


def test_vocoder(checkpoints):
    module, params = load_vocoder(checkpoints["ltx2"])
    assert isinstance(module, LTX2Vocoder) and module.config == LTX2VocoderConfig(**TINY_VOCODER)
    mel = mel_input(2)
    with torch.no_grad():
        ref = checkpoints["vocoder"](torch.from_numpy(mel)).numpy()  # [B, 2, S]
    ours = np.asarray(run(module, params, to_ours(mel))).transpose(0, 2, 1)
    assert ours.shape == ref.shape == (B, 2, MEL_FRAMES * 6)
    err = rel_err(ours, ref)
    report("LTX-2 vocoder vs diffusers (fp32)", err, TOL)
    assert err <= TOL


def test_vocoder_with_bwe(checkpoints):
    module, params = load_vocoder(checkpoints["ltx23"])
    assert isinstance(module, LTX2VocoderWithBWE) and module.config == LTX2VocoderWithBWEConfig(**TINY_BWE)
    mel = mel_input(3, frames=MEL_FRAMES + 1)  # 66 samples at 8 kHz: padded to 69 for the STFT, cut back to 132
    with torch.no_grad():
        ref = checkpoints["bwe"](torch.from_numpy(mel)).numpy()
    ours = np.asarray(run(module, params, to_ours(mel))).transpose(0, 2, 1)
    assert ours.shape == ref.shape == (B, 2, (MEL_FRAMES + 1) * 6 * 2)
    assert np.abs(ref).max() < 1  # the clamp cuts nothing: every sample is compared
    err = rel_err(ours, ref)
    report("LTX-2.3 vocoder with BWE vs diffusers (fp32)", err, TOL)
    assert err <= TOL


# ------------------------------------------------------------------------------------------ other layouts


def _assert_same_params(a, b):
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for path in fa:
        np.testing.assert_array_equal(np.asarray(fa[path]), np.asarray(fb[path]), err_msg="/".join(path))


def test_native_single_file(checkpoints):
    """Lightricks' names and ltx-core's metadata config load the same modules and params as the diffusers folders
    (one file with both components, and a tensor of another component that must be left alone)."""
    vae, vae_params = load_audio_vae(checkpoints["single_file"])
    _, ref_vae_params = load_audio_vae(checkpoints["ltx2"])
    assert vae.config == LTX2AudioVAEConfig(**TINY_VAE)
    _assert_same_params(vae_params, ref_vae_params)
    vocoder, params = load_vocoder(checkpoints["single_file"])
    reference, ref_params = load_vocoder(checkpoints["ltx23"])
    assert vocoder == reference
    _assert_same_params(params, ref_params)
    mel = mel_input(3, frames=MEL_FRAMES + 1)
    with torch.no_grad():
        ref = checkpoints["bwe"](torch.from_numpy(mel)).numpy()
    err = rel_err(np.asarray(run(vocoder, params, to_ours(mel))).transpose(0, 2, 1), ref)
    report("LTX-2.3 vocoder from a Lightricks single file vs diffusers (fp32)", err, TOL)
    assert err <= TOL


def test_orbax_round_trips(checkpoints):
    """save_vocoder_orbax, and ``python -m weight_conversion convert --component audio_vae`` (the LTX-2 single file's
    audio VAE, read by its config): both load back the same params."""
    module, params = load_vocoder(checkpoints["ltx23"])
    target = checkpoints["root"] / "orbax_vocoder"
    save_vocoder_orbax(module, params, target)
    restored, restored_params = load_vocoder(target)
    assert restored == module
    _assert_same_params(restored_params, params)
    converted = checkpoints["root"] / "orbax_audio_vae"
    assert convert_main(["convert", checkpoints["single_file"], os.fspath(converted), "--component", "audio_vae"]) == 0
    vae, vae_params = load_audio_vae(checkpoints["single_file"])
    restored, restored_params = load_audio_vae(converted)
    assert restored == vae
    _assert_same_params(restored_params, vae_params)


def test_errors(checkpoints):
    wider = LTX2VocoderConfig(**dict(TINY_VOCODER, hidden_channels=16))
    with pytest.raises(CheckpointError, match=r"'conv_in.bias' has shape \(12,\), but the model expects \(16,\)"):
        load_vocoder(checkpoints["ltx2"], config=wider)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_vocoder(checkpoints["ltx23"], config=LTX2VocoderConfig(**TINY_VOCODER))
    with pytest.raises(CheckpointError, match="holds no 'audio_vae"):
        load_audio_vae(os.path.join(checkpoints["ltx23"], "vocoder", "diffusion_pytorch_model.safetensors"))
    module = LTX2Vocoder(LTX2VocoderConfig(**TINY_VOCODER))
    with pytest.raises(ValueError, match=r"C \* M = in_channels = 14"):
        jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 8, 2))))
    vae = AutoencoderKLLTX2Audio(LTX2AudioVAEConfig(**TINY_VAE))
    with pytest.raises(ValueError, match=r"expected \[B, T', M', 5\]"):
        jax.eval_shape(lambda: vae.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 4, 2)), method="decode"))


# ------------------------------------------------------------------------------------------ full-size counts


FULL_SIZE = {
    "audio_vae": (TorchAudioVAE, AutoencoderKLLTX2Audio, LTX2AudioVAEConfig()),
    "ltx2_vocoder": (TorchVocoder, LTX2Vocoder, LTX2VocoderConfig()),
    "ltx23_vocoder_bwe": (TorchVocoderWithBWE, LTX2VocoderWithBWE, LTX2VocoderWithBWEConfig()),
}


@pytest.mark.parametrize("name", list(FULL_SIZE))
def test_full_size_param_counts(name):
    """diffusers' defaults (= LTX-2's audio VAE and vocoder, LTX-2.3's BWE vocoder): our params are diffusers'
    parameters plus its persistent buffers (latent statistics, anti-aliasing filters, STFT and mel bases)."""
    torch_cls, ours_cls, config = FULL_SIZE[name]
    with torch.device("meta"):
        model = torch_cls()
    torch_params = sum(p.numel() for p in model.parameters())
    torch_state = sum(t.numel() for t in model.state_dict().values())
    flat = flatten(abstract_params(ours_cls(config)))
    ours = count_params(flat)
    buffers = sum(int(np.prod(v.shape)) for p, v in flat.items() if p[-1] in BUFFER_LEAVES or p[-1].startswith(
        "latents_"))
    print(f"\n[{name}] params: ours {ours - buffers:,} diffusers {torch_params:,}; with buffers: ours {ours:,} "
          f"diffusers {torch_state:,}")
    assert (ours - buffers, ours) == (torch_params, torch_state)

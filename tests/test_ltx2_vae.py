"""LTX-2 video VAE parity with diffusers' AutoencoderKLLTX2Video (fp32, tiny random configs), tiled decoding against
diffusers' tiled decoding, loading from a diffusers folder, a Lightricks single file (native names + config metadata)
and Orbax, and the full-size parameter counts of LTX-2's and LTX-2.3's VAEs.

The tiny config is LTX-2.3-shaped (four up blocks: two spatiotemporal, a temporal and a spatial one, upsample
factors 2, 2, 1, 2) with LTX-2's reflecting, causal decoder, so strides other than (2, 2, 2), factor-1 upsamplers,
residual upsamplers and three padding modes all run; a second one is timestep-conditioned and non-causal.
"""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import randomize_, rel_err, report
from diffusers import AutoencoderKLLTX2Video as TorchVAE
from safetensors.torch import save_file

from ltx_jax.configs_ltx2 import LTX2VideoVAEConfig
from ltx_jax.models import abstract_params, count_params
from ltx_jax.models.ltx2.vae import AutoencoderKLLTX2Video
from ltx_jax.releases_ltx2 import LTX2_VIDEO_VAE_PRESETS
from ltx_jax.models.vae_tiling import VAETiling
from weight_conversion import load_vae
from weight_conversion.ltx2_vae import config_from_native, save_ltx2_vae_orbax
from weight_conversion.mapping import flatten

TOL = 1e-4  # max |ours - ref| / max |ref|
TIMESTEP = np.array([0.05, 0.4], np.float32)

TINY = dict(
    latent_channels=8, block_out_channels=(8, 16, 16, 16), layers_per_block=(1, 0, 1, 0, 1),
    decoder_block_out_channels=(8, 16, 16, 32), decoder_layers_per_block=(1, 0, 1, 0, 1),
    decoder_spatio_temporal_scaling=(True,) * 4, decoder_inject_noise=(False,) * 5,
    upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"), upsample_factor=(2, 2, 1, 2),
    upsample_residual=(False, False, False, True), patch_size=2, spatial_compression_ratio=16,
    temporal_compression_ratio=8,
)  # stated as LTX-2's published config states them (diffusers' formula would say 32 and 16)
VARIANTS = {
    "causal reflect": TINY,
    "timestep replicate": dict(TINY, timestep_conditioning=True, decoder_causal=False,
                               encoder_spatial_padding_mode="circular", decoder_spatial_padding_mode="replicate"),
}
# The same tiny architecture in ltx-core's vocabulary (decoder blocks listed from the output side).
NATIVE = {
    "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 8,
    "patch_size": 2, "norm_layer": "pixel_norm", "latent_log_var": "uniform", "causal_decoder": True,
    "timestep_conditioning": False, "decoder_base_channels": 4,
    "encoder_blocks": [["res_x", {"num_layers": 1}], ["compress_space_res", {"multiplier": 1}],
                       ["res_x", {"num_layers": 0}], ["compress_time_res", {"multiplier": 2}],
                       ["res_x", {"num_layers": 1}], ["compress_all_res", {"multiplier": 1}],
                       ["res_x", {"num_layers": 0}], ["compress_all_res", {"multiplier": 1}],
                       ["res_x", {"num_layers": 1}]],
    "decoder_blocks": [["res_x", {"num_layers": 1}], ["compress_space", {"multiplier": 2}],
                       ["res_x", {"num_layers": 0}], ["compress_time", {"multiplier": 2}],
                       ["res_x", {"num_layers": 1}], ["compress_all", {"multiplier": 1}],
                       ["res_x", {"num_layers": 0}], ["compress_all", {"multiplier": 2, "residual": True}],
                       ["res_x", {"num_layers": 1}]],
}


def to_ncdhw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 4, 1, 2, 3)


def to_ndhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 4, 1).numpy()


def native_name(key: str, n_down: int) -> str:
    """diffusers key -> ltx-core key, written out from ltx-core's flat block lists (every block scales, none changes
    width in front of its upsampler); checked against diffusers' own converter
    (``test_native_names_match_diffusers_converter``)."""
    rules = [(r"^encoder\.down_blocks\.(\d+)\.resnets\.", lambda m: f"encoder.down_blocks.{2 * int(m[1])}.res_blocks."),
             (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.",
              lambda m: f"encoder.down_blocks.{2 * int(m[1]) + 1}."),
             (r"^encoder\.mid_block\.resnets\.", lambda m: f"encoder.down_blocks.{2 * n_down}.res_blocks."),
             (r"^decoder\.mid_block\.", lambda m: "decoder.up_blocks.0."),
             (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up_blocks.{2 * int(m[1]) + 1}."),
             (r"^decoder\.up_blocks\.(\d+)\.", lambda m: f"decoder.up_blocks.{2 * int(m[1]) + 2}."),
             (r"^decoder\.time_embedder\.", lambda m: "decoder.last_time_embedder."),
             (r"^decoder\.scale_shift_table", lambda m: "decoder.last_scale_shift_table"),
             (r"^latents_mean$", lambda m: "per_channel_statistics.mean-of-means"),
             (r"^latents_std$", lambda m: "per_channel_statistics.std-of-means")]
    for pattern, new in rules:
        key, n = re.subn(pattern, new, key)
        if n:
            break
    return "vae." + key.replace(".resnets.", ".res_blocks.")


@pytest.fixture(scope="module")
def vaes(tmp_path_factory):
    """variant -> dict(torch=reference, module, params loaded from its diffusers folder, folder)."""
    root, out = tmp_path_factory.mktemp("ltx2_vae"), {}
    for i, (variant, kwargs) in enumerate(VARIANTS.items()):
        torch.manual_seed(i)
        model = randomize_(TorchVAE(**kwargs), seed=20 + i)
        with torch.no_grad():
            model.latents_mean.copy_(torch.linspace(-0.5, 0.5, 8))
            model.latents_std.copy_(torch.linspace(0.5, 2.0, 8))
        folder = root / f"vae{i}"
        model.save_pretrained(folder)
        module, params = load_vae(folder)  # the family from config.json
        out[variant] = dict(torch=model, module=module, params=params, folder=folder, root=root)
    return out


_JIT = {}


def decode_ours(entry, z, tiling=None):
    module = entry["module"]
    fn = _JIT.setdefault((module, tiling), jax.jit(
        lambda p, z, t: module.apply({"params": p}, z, t, method="decode", tiling=tiling)))
    return np.asarray(fn(entry["params"], jnp.asarray(z), jnp.asarray(TIMESTEP[: z.shape[0]])))


def decode_ref(model, z):
    temb = torch.from_numpy(TIMESTEP[: z.shape[0]]) if model.config.timestep_conditioning else None
    with torch.no_grad():
        return to_ndhwc(model.decode(to_ncdhw(z), temb).sample)


def latents(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape + (8,)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encode_parity(vaes, variant):
    entry = vaes[variant]
    video = np.random.default_rng(1).uniform(-1, 1, (1, 9, 32, 48, 3)).astype(np.float32)  # 9 = 1 + 8 frames
    with torch.no_grad():
        dist = entry["torch"].encode(to_ncdhw(video)).latent_dist
    mean, logvar = jax.jit(lambda p, v: entry["module"].apply({"params": p}, v, method="encode"))(
        entry["params"], jnp.asarray(video))
    assert mean.shape == (1, 2, 2, 3, 8)
    err = max(rel_err(mean, to_ndhwc(dist.mean)), rel_err(logvar, to_ndhwc(dist.logvar)))
    report(f"ltx2 vae {variant} encode", err, TOL)
    assert err <= TOL


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decode_parity(vaes, variant):
    """The second variant is the timestep-conditioned case (a different timestep per batch item)."""
    entry = vaes[variant]
    z = latents((2, 2, 2, 3))
    ref, ours = decode_ref(entry["torch"], z), decode_ours(entry, z)
    assert ours.shape == ref.shape == (2, 9, 32, 48, 3)
    err = rel_err(ours, ref)
    report(f"ltx2 vae {variant} decode", err, TOL)
    assert err <= TOL


def test_tiled_decode_matches_diffusers_tiled_decode(vaes):
    """diffusers' tiles (48-pixel tiles every 32 pixels across, a partial one at the right) blended as diffusers
    blends them: the same arithmetic as the whole decode on each tile, so the whole decode's float32 tolerance holds.
    Temporal tiles are left to tests/test_vae.py (the same code; here they would double the compiled decoders)."""
    entry = vaes["causal reflect"]
    model, z = entry["torch"], latents((1, 3, 3, 6), seed=7)
    sizes = dict(tile_sample_min_height=48, tile_sample_min_width=48, tile_sample_stride_height=48,
                 tile_sample_stride_width=32)
    model.enable_tiling(**sizes)
    try:
        ref = decode_ref(model, z)
    finally:
        model.use_tiling = model.use_framewise_decoding = False
    ours = decode_ours(entry, z, tiling=VAETiling(**sizes, temporal=False))
    assert ours.shape == ref.shape == (1, 17, 48, 96, 3)
    err = rel_err(ours, ref)
    report("ltx2 vae tiled decode vs diffusers tiled", err, TOL)
    assert err <= TOL
    assert rel_err(decode_ref(model, z), ref) > 1e-2  # tiling really happened


# ------------------------------------------------------------------------------------------------------ loading


def test_single_file_and_orbax_load_the_same_params(vaes):
    """A Lightricks single file (native names, config metadata with an audio VAE entry as LTX-2 bundles have, dropped
    statistics, another component's key) and an
    Orbax round trip give the folder's params exactly."""
    entry = vaes["causal reflect"]
    tensors = {native_name(k, 4): v.contiguous() for k, v in entry["torch"].state_dict().items()}
    tensors["vae.per_channel_statistics.mean-of-stds"] = torch.ones(8)
    tensors["model.diffusion_model.proj_in.weight"] = torch.zeros(4, 4)
    path = str(entry["root"] / "ltx-2-tiny.safetensors")
    save_file(tensors, path, metadata={"config": json.dumps({"vae": NATIVE, "audio_vae": {}, "transformer": {}})})
    assert config_from_native(NATIVE) == LTX2VideoVAEConfig(**TINY)
    module, params = load_vae(path)  # the family from the metadata
    orbax = str(entry["root"] / "orbax")
    save_ltx2_vae_orbax(entry["module"], entry["params"], orbax)
    _, restored = load_vae(orbax)
    want = flatten(entry["params"])
    for got in (flatten(params), flatten(restored)):
        assert got.keys() == want.keys()
        assert all(np.array_equal(got[k], want[k]) for k in want)
    assert module.spatial_ratio == 16 and module.temporal_ratio == 8


def test_native_names_match_diffusers_converter():
    """The test's native names, fed to diffusers' own single-file converter, give back LTX-2's diffusers keys."""
    from diffusers.loaders.single_file_utils import convert_ltx2_vae_to_diffusers  # deferred: test-only import

    with torch.device("meta"):
        keys = list(TorchVAE().state_dict())
    native = {native_name(k, 4): k for k in keys}
    converted = convert_ltx2_vae_to_diffusers(dict.fromkeys(native, 0))
    assert sorted(converted) == sorted(keys)


@pytest.mark.parametrize("name", sorted(LTX2_VIDEO_VAE_PRESETS))
def test_full_size_param_count(name):
    config = LTX2_VIDEO_VAE_PRESETS[name]  # the released VAEs (ltx_jax.releases_ltx2)
    with torch.device("meta"):
        reference = sum(v.numel() for v in TorchVAE(**config.to_dict()).state_dict().values())  # + latent statistics
    ours = count_params(abstract_params(AutoencoderKLLTX2Video(config)))
    print(f"\n[{name} video VAE] params ours {ours:,} diffusers {reference:,}")
    assert ours == reference


def test_bad_inputs_are_refused(vaes):
    entry = vaes["causal reflect"]
    apply = entry["module"].apply
    with pytest.raises(ValueError, match="expected \\[B, F, H, W, 3\\]"):
        apply({"params": entry["params"]}, jnp.zeros((1, 9, 16, 16, 4)), method="encode")
    with pytest.raises(ValueError, match="1 \\+ 8k frames"):
        apply({"params": entry["params"]}, jnp.zeros((1, 8, 16, 16, 3)), method="encode")
    with pytest.raises(ValueError, match="expected \\[B, F, H, W, 8\\]"):
        apply({"params": entry["params"]}, jnp.zeros((1, 2, 2, 2, 3)), method="decode")
    conditioned = vaes["timestep replicate"]
    with pytest.raises(ValueError, match="pass a timestep"):
        conditioned["module"].apply({"params": conditioned["params"]}, jnp.zeros((1, 2, 2, 2, 8)), method="decode")

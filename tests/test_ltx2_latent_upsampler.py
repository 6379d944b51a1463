"""LTX-2 latent upsampler parity with diffusers' LTX2LatentUpsamplerModel (spatial x2 through the rational resampler
and without it, spatial x1.5, temporal x2), loading from every layout, the released upscalers' parameter counts,
and clear errors.

Tiny odd configs, fp32 on CPU: mid_channels 96 (3 channels per GroupNorm group: diffusers hard-codes 32 groups),
8 latent channels, 1-2 blocks per stage, batch 2, 3 x 5 x 7 latents (odd, so x1.5 rounds up: 5 -> 8, 7 -> 11);
every torch weight perturbed so that nothing keeps its initial value.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import randomize_, rel_err, report
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel as TorchUpsampler
from safetensors.torch import save_file

from ltx_jax.configs_ltx2 import LTX2LatentUpsamplerConfig
from ltx_jax.models import abstract_params, count_params
from ltx_jax.models.ltx2.latent_upsampler import LTX2LatentUpsampler
from weight_conversion import load_latent_upsampler
from weight_conversion.ltx2_latent_upsampler import (BLUR_KEY, is_ltx2_latent_upsampler, load_ltx2_latent_upsampler,
                                                     read_ltx2_latent_upsampler_config,
                                                     save_ltx2_latent_upsampler_orbax)
from weight_conversion.safetensors_io import CheckpointError

TOL = 1e-5  # max |ours - ref| / max |ref|
B, F, H, W = 2, 3, 5, 7
TINY = dict(in_channels=8, mid_channels=96)
MODES = {  # diffusers' config fields beyond TINY; expected (F', H', W') for (F, H, W)
    "spatial_x2": (dict(num_blocks_per_stage=2, rational_spatial_scale=2.0), (F, 2 * H, 2 * W)),
    "spatial_x1.5": (dict(num_blocks_per_stage=1, rational_spatial_scale=1.5), (F, 8, 11)),
    "spatial_x2_plain": (dict(num_blocks_per_stage=1, use_rational_resampler=False), (F, 2 * H, 2 * W)),
    "temporal_x2": (dict(num_blocks_per_stage=1, spatial_upsample=False, temporal_upsample=True), (2 * F - 1, H, W)),
}
# The released upscalers: config (beyond diffusers' defaults: in_channels 128, 4 blocks per stage, dims 3) and
# parameter count, which times 2 bytes is each bf16 file's size less its ~7.7 KB header (995,743,560;
# 1,090,125,794; 261,944,000 bytes). Configs: the files' metadata (ltx-core's keys) and diffusers' conversion script.
RELEASED = {
    "ltx-2-spatial-upscaler-x2-1.0": (dict(mid_channels=1024, rational_spatial_scale=2.0), 497_867_904),
    "ltx-2.3-spatial-upscaler-x1.5-1.0": (dict(mid_channels=1024, rational_spatial_scale=1.5), 545_058_944),
    "ltx-2.3-temporal-upscaler-x2-1.0": (dict(mid_channels=512, spatial_upsample=False, temporal_upsample=True),
                                         130_968_192),
}


def torch_upsampler(mode: str) -> TorchUpsampler:
    seed = sorted(MODES).index(mode)
    torch.manual_seed(seed)
    return randomize_(TorchUpsampler(**TINY, **MODES[mode][0]), seed=100 + seed)


def latents(seed: int = 0) -> np.ndarray:
    """[B, F, H, W, C] float32."""
    return np.random.default_rng(seed).standard_normal((B, F, H, W, TINY["in_channels"])).astype(np.float32)


def torch_forward(model: TorchUpsampler, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(x).permute(0, 4, 1, 2, 3))  # [B, C, F, H, W]
    return out.permute(0, 2, 3, 4, 1).numpy()


def forward(module, params, x: np.ndarray) -> np.ndarray:
    return np.asarray(jax.jit(module.apply)({"params": params}, jnp.asarray(x)))


def original_metadata(model: TorchUpsampler, drop: tuple[str, ...] = ()) -> dict:
    """The ``config`` metadata entry of a Lightricks upscaler file (ltx-core's LatentUpsampler keys)."""
    c = model.config
    config = {"_class_name": "LatentUpsampler", "in_channels": c.in_channels, "mid_channels": c.mid_channels,
              "num_blocks_per_stage": c.num_blocks_per_stage, "dims": c.dims, "spatial_upsample": c.spatial_upsample,
              "temporal_upsample": c.temporal_upsample, "spatial_scale": c.rational_spatial_scale,
              "rational_resampler": c.use_rational_resampler}
    return {"config": json.dumps({k: v for k, v in config.items() if k not in drop})}


def write_single_file(model: TorchUpsampler, path, metadata: dict | None, edit=None) -> str:
    """A Lightricks-layout file (ltx-core's state dict: un-prefixed keys, the blur buffer included)."""
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    if edit is not None:
        edit(tensors)
    save_file(tensors, os.fspath(path), metadata=metadata)
    return os.fspath(path)


def our_output(checkpoints: dict, mode: str) -> np.ndarray:
    """Our output for ``latents()`` from the mode's diffusers folder (computed once): every other layout must give
    exactly the same."""
    ckpt = checkpoints[mode]
    if "ours" not in ckpt:
        ckpt["ours"] = forward(*load_ltx2_latent_upsampler(ckpt["diffusers"]), latents())
    return ckpt["ours"]


def expected_config(mode: str) -> LTX2LatentUpsamplerConfig:
    return LTX2LatentUpsamplerConfig(**TINY, **MODES[mode][0])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """Per mode: the torch model, its diffusers pipeline root (``latent_upsampler/`` inside) and our output."""
    root = tmp_path_factory.mktemp("ltx2_latent_upsampler")
    out = {}
    for mode in MODES:
        model = torch_upsampler(mode)
        model.save_pretrained(root / mode / "latent_upsampler")
        out[mode] = {"torch": model, "diffusers": str(root / mode / "latent_upsampler"), "root": str(root / mode)}
    return out


# ------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("mode", list(MODES))
def test_matches_diffusers(checkpoints, mode):
    ckpt = checkpoints[mode]
    module, params = load_latent_upsampler(ckpt["root"])  # the family from config.json
    assert module.config == expected_config(mode)
    assert count_params(abstract_params(module)) == sum(p.numel() for p in ckpt["torch"].parameters())
    x = latents()
    ours, ref = forward(module, params, x), torch_forward(ckpt["torch"], x)
    assert module.output_shape(F, H, W) == MODES[mode][1]
    assert ours.shape == ref.shape == (B, *MODES[mode][1], TINY["in_channels"])
    err = rel_err(ours, ref)
    report(f"LTX-2 latent upsampler {mode} vs diffusers (fp32)", err, TOL)
    assert err <= TOL
    ckpt["ours"] = ours


@pytest.mark.parametrize("mode", ["spatial_x1.5", "temporal_x2"])
def test_lightricks_single_file(checkpoints, tmp_path, mode):
    """ltx-core's file layout with its metadata config (spatial_scale / rational_resampler) loads to the same
    params, so to the very output of the diffusers folder, and is told apart from LTX-Video's upsampler. The
    temporal file states ``spatial_scale: 1.0, rational_resampler: true`` as the released one does (both unused)."""
    model = checkpoints[mode]["torch"]
    metadata = original_metadata(model)
    if mode == "temporal_x2":
        metadata = {"config": json.dumps({**json.loads(metadata["config"]), "spatial_scale": 1.0,
                                          "rational_resampler": True})}
    path = write_single_file(model, tmp_path / "ltx-2-upscaler.safetensors", metadata)
    assert is_ltx2_latent_upsampler(path)
    module, params = load_latent_upsampler(path)  # the family from the metadata
    expected = expected_config(mode)
    if mode == "temporal_x2":
        expected = expected.replace(rational_spatial_scale=1.0)
    assert module.config == read_ltx2_latent_upsampler_config(path) == expected
    ours = forward(module, params, latents())
    err = rel_err(ours, torch_forward(model, latents()))
    report(f"LTX-2 latent upsampler {mode} Lightricks single file vs diffusers (fp32)", err, TOL)
    np.testing.assert_array_equal(ours, our_output(checkpoints, mode))


def test_config_from_shapes_and_metadata_defaults(checkpoints, tmp_path):
    """Without metadata the tensor shapes give the config (the x2 rational resampler included); a metadata config
    without mid_channels takes ltx-core's default 512, which the file then does not fit (named key and shapes)."""
    model = checkpoints["spatial_x2"]["torch"]
    bare = write_single_file(model, tmp_path / "bare.safetensors", None)
    assert read_ltx2_latent_upsampler_config(bare) == expected_config("spatial_x2")
    assert is_ltx2_latent_upsampler(bare)
    no_mid = write_single_file(model, tmp_path / "no-mid.safetensors", original_metadata(model, ("mid_channels",)))
    with pytest.raises(CheckpointError, match=r"'final_conv\.weight' has shape \(8, 96, 3, 3, 3\), but the model "
                                              r"expects \(8, 512, 3, 3, 3\)"):
        load_ltx2_latent_upsampler(no_mid)
    x15 = write_single_file(checkpoints["spatial_x1.5"]["torch"], tmp_path / "x15-bare.safetensors", None)
    with pytest.raises(CheckpointError, match=r"fixes no rational scale \(scales \[0\.75, 1\.5\] share it\); pass "
                                              r"config="):
        read_ltx2_latent_upsampler_config(x15)
    module, _ = load_ltx2_latent_upsampler(x15, config=expected_config("spatial_x1.5"))
    assert module.output_shape(F, H, W) == MODES["spatial_x1.5"][1]


def test_orbax_roundtrip(checkpoints, tmp_path):
    module, params = load_ltx2_latent_upsampler(checkpoints["spatial_x1.5"]["diffusers"])
    save_ltx2_latent_upsampler_orbax(module, params, tmp_path / "orbax")
    assert is_ltx2_latent_upsampler(tmp_path / "orbax")
    assert read_ltx2_latent_upsampler_config(tmp_path / "orbax") == module.config
    again, params_again = load_ltx2_latent_upsampler(tmp_path / "orbax")
    assert again.config == module.config
    np.testing.assert_array_equal(forward(again, params_again, latents()), our_output(checkpoints, "spatial_x1.5"))


# --------------------------------------------------------------------------------------- released configs


@pytest.mark.parametrize("name", list(RELEASED))
def test_released_parameter_counts(name):
    """Full size, nothing allocated: ``jax.eval_shape`` of our init vs diffusers' model on the meta device."""
    config, count = RELEASED[name]
    with torch.device("meta"):
        theirs = sum(p.numel() for p in TorchUpsampler(**config).parameters())
    module = LTX2LatentUpsampler(LTX2LatentUpsamplerConfig(**config), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    ours = count_params(abstract_params(module))
    print(f"{name}: {ours:,} params (diffusers {theirs:,})")
    assert ours == theirs == count


# ------------------------------------------------------------------------------------------------- errors


def test_bad_inputs_and_configs(checkpoints, tmp_path):
    module, params = load_ltx2_latent_upsampler(checkpoints["spatial_x1.5"]["diffusers"])
    with pytest.raises(ValueError, match="have 5 channels; the upsampler takes 8"):
        module.apply({"params": params}, jnp.zeros((1, 1, 2, 2, 5)))
    with pytest.raises(ValueError, match=r"have rank 4; the upsampler takes \[B, F, H, W, C\]"):
        module.apply({"params": params}, jnp.zeros((1, 2, 2, 8)))
    with pytest.raises(ValueError, match=r"rational_spatial_scale=3\.0 is not supported"):
        module.config.replace(rational_spatial_scale=3.0)
    with pytest.raises(ValueError, match="mid_channels=112 must be a multiple of 32"):
        module.config.replace(mid_channels=96 + 16)
    model = checkpoints["spatial_x1.5"]["torch"]
    blurred = write_single_file(model, tmp_path / "blur.safetensors", original_metadata(model),
                                lambda t: t.update({BLUR_KEY: torch.ones(1, 1, 5, 5) / 25}))
    with pytest.raises(CheckpointError, match="is not the 5x5 binomial blur"):
        load_ltx2_latent_upsampler(blurred)
    missing = write_single_file(model, tmp_path / "missing.safetensors", original_metadata(model),
                                lambda t: t.pop("upsampler.conv.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['upsampler\.conv\.bias'\]"):
        load_ltx2_latent_upsampler(missing)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_ltx2_latent_upsampler(tmp_path / "nowhere.safetensors")
    assert not is_ltx2_latent_upsampler(tmp_path / "nowhere.safetensors")

"""Latent upsampler parity with diffusers' LTXLatentUpsamplerModel (spatial, temporal and both, 3-D and 2-D convs)
and with the original package's LatentUpsampler, loading from every layout, and clear errors for bad checkpoints.

Tiny odd configs, fp32 on CPU: mid_channels 96 (an odd multiple of GroupNorm's 32 groups), 5 latent channels,
batch 2, 3 x 5 x 7 latents; every torch weight perturbed so that nothing keeps its initial value.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import randomize_, rel_err, report
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel as TorchUpsampler
from original_ltx import run_original
from safetensors.torch import save_file

from ltx_jax.configs import LatentUpsamplerConfig
from ltx_jax.models import abstract_params, count_params, init_params
from ltx_jax.models.latent_upsampler import LatentUpsampler
from weight_conversion import (CheckpointError, load_latent_upsampler, read_latent_upsampler_config,
                               save_latent_upsampler_orbax)
from weight_conversion.__main__ import main as cli_main

TOL = 1e-5  # max |ours - ref| / max |ref|
BF16_TOL = 2e-2  # bf16 vs fp32 of the same weights
B, F, H, W = 2, 3, 5, 7
TINY = dict(in_channels=5, mid_channels=96, num_blocks_per_stage=2)
MODES = {
    "spatial": dict(dims=3, spatial_upsample=True, temporal_upsample=False),
    "temporal": dict(dims=3, spatial_upsample=False, temporal_upsample=True),
    "both": dict(dims=3, spatial_upsample=True, temporal_upsample=True),
    "spatial_2d": dict(dims=2, spatial_upsample=True, temporal_upsample=False),
}


def torch_upsampler(mode: str) -> TorchUpsampler:
    seed = sorted(MODES).index(mode)
    torch.manual_seed(seed)
    return randomize_(TorchUpsampler(**TINY, **MODES[mode]), seed=100 + seed)


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
    """The ``config`` metadata entry of a Lightricks upscaler file (ltx_video's LatentUpsampler keys)."""
    config = {"_class_name": "LatentUpsampler", **{k: model.config[k] for k in (*TINY, "dims", "spatial_upsample",
                                                                                 "temporal_upsample")}}
    return {"config": json.dumps({k: v for k, v in config.items() if k not in drop})}


def write_single_file(model: TorchUpsampler, path, metadata: dict | None, edit=None) -> str:
    """A Lightricks-layout file (un-prefixed keys); ``edit(tensors)`` changes the tensors before writing."""
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    if edit is not None:
        edit(tensors)
    save_file(tensors, os.fspath(path), metadata=metadata)
    return os.fspath(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """Per mode: the torch model, its diffusers folder and Lightricks single files (metadata; no metadata)."""
    root = tmp_path_factory.mktemp("latent_upsampler")
    out = {}
    for mode in MODES:
        model = torch_upsampler(mode)
        folder = root / mode / "latent_upsampler"
        model.save_pretrained(folder)
        out[mode] = {
            "torch": model,
            "diffusers": str(folder),
            "root": str(root / mode),
            "single_file": write_single_file(model, root / f"{mode}.safetensors", original_metadata(model)),
            "no_metadata": write_single_file(model, root / f"{mode}-bare.safetensors", None),
        }
    return out


def expected_config(mode: str) -> LatentUpsamplerConfig:
    return LatentUpsamplerConfig(**TINY, **MODES[mode])


# ------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("mode", list(MODES))
def test_matches_diffusers(checkpoints, mode):
    ckpt = checkpoints[mode]
    module, params = load_latent_upsampler(ckpt["diffusers"])
    assert module.config == expected_config(mode)
    assert count_params(abstract_params(module)) == sum(p.numel() for p in ckpt["torch"].parameters())
    x = latents()
    ours, ref = forward(module, params, x), torch_forward(ckpt["torch"], x)
    scale = 2 if module.config.spatial_upsample else 1
    assert ours.shape == ref.shape == (B, module.config.output_frames(F), H * scale, W * scale, TINY["in_channels"])
    err = rel_err(ours, ref)
    report(f"latent upsampler {mode} vs diffusers (fp32)", err, TOL)
    assert err <= TOL


@pytest.mark.parametrize("mode", ["both", "spatial_2d"])
def test_matches_the_original(checkpoints, tmp_path, mode):
    """The original's ``LatentUpsampler.from_pretrained`` on a Lightricks file. The 2-D file's metadata omits dims
    and the upsampling flags, which both loaders then take from the original's defaults (2, True, False)."""
    model = checkpoints[mode]["torch"]
    drop = ("dims", "spatial_upsample", "temporal_upsample") if mode == "spatial_2d" else ()
    path = write_single_file(model, tmp_path / "ltxv-upscaler.safetensors", original_metadata(model, drop))
    x = latents(1)
    job = {"kind": "latent_upsampler", "checkpoint": path, "kwargs": {"latent": "@latent"}}
    ref = run_original(job, {"latent": np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))})["sample"]
    module, params = load_latent_upsampler(path)
    assert module.config == expected_config(mode)
    ours = forward(module, params, x)
    err = rel_err(ours, ref.transpose(0, 2, 3, 4, 1))
    report(f"latent upsampler {mode} vs original ltx_video (fp32)", err, TOL)
    assert err <= TOL


def test_bf16_close_to_fp32(checkpoints):
    x = latents(2)
    ours32 = forward(*load_latent_upsampler(checkpoints["both"]["diffusers"]), x)
    module, params = load_latent_upsampler(checkpoints["both"]["diffusers"], jnp.bfloat16)
    ours16 = forward(module, params, x)
    assert ours16.dtype == jnp.bfloat16
    err = rel_err(ours16.astype(np.float32), ours32)
    report("latent upsampler both bf16 vs fp32", err, BF16_TOL)
    assert err <= BF16_TOL


def test_init_params_and_abstract_params_agree():
    module = LatentUpsampler(expected_config("both"), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    params = init_params(module, jax.random.PRNGKey(0))
    shapes = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), params)
    assert shapes == jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), abstract_params(module))
    assert {x.dtype for x in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.bfloat16)}
    with pytest.raises(ValueError, match="have 4 channels; the upsampler takes 5"):
        module.apply({"params": params}, jnp.zeros((1, 1, 2, 2, 4)))


# ------------------------------------------------------------------------------------------------ loading


@pytest.fixture(scope="module")
def reference_outputs(checkpoints) -> dict[str, np.ndarray]:
    """Our output from the diffusers folder, per mode: every other layout must give exactly the same."""
    return {mode: forward(*load_latent_upsampler(c["diffusers"]), latents()) for mode, c in checkpoints.items()}


@pytest.mark.parametrize("layout", ["root", "single_file", "no_metadata"])
@pytest.mark.parametrize("mode", ["both", "spatial_2d"])
def test_layouts_give_identical_outputs(checkpoints, reference_outputs, layout, mode):
    path = checkpoints[mode][layout]
    assert read_latent_upsampler_config(path) == expected_config(mode)
    module, params = load_latent_upsampler(path)
    assert module.config == expected_config(mode)
    np.testing.assert_array_equal(forward(module, params, latents()), reference_outputs[mode])


@pytest.mark.parametrize("mode", list(MODES))
def test_config_from_shapes(checkpoints, mode):
    """Without metadata, every field of the config follows from the tensor shapes (the header alone is read)."""
    assert read_latent_upsampler_config(checkpoints[mode]["no_metadata"]) == expected_config(mode)


def test_original_defaults_for_missing_metadata_keys(checkpoints, tmp_path):
    """A metadata config without dims means dims=2 (the original's default, not diffusers' 3): a 3-D file then
    does not fit, and the error names a conv and both shapes."""
    model = checkpoints["spatial"]["torch"]
    path = write_single_file(model, tmp_path / "no-dims.safetensors", original_metadata(model, ("dims",)))
    assert read_latent_upsampler_config(path) == expected_config("spatial_2d")
    with pytest.raises(CheckpointError, match=r"'final_conv\.weight' has shape \(5, 96, 3, 3, 3\), but the model "
                                              r"expects \(5, 96, 3, 3\)"):
        load_latent_upsampler(path)


@pytest.mark.parametrize("src", ["diffusers", "single_file"])
def test_orbax_roundtrip_through_cli(checkpoints, reference_outputs, tmp_path, src, capsys):
    dst = tmp_path / "orbax"
    assert cli_main(["convert", checkpoints["both"][src], str(dst), "--component", "latent_upsampler"]) == 0
    assert "converted latent_upsampler" in capsys.readouterr().out
    assert read_latent_upsampler_config(dst) == expected_config("both")
    module, params = load_latent_upsampler(dst)
    np.testing.assert_array_equal(forward(module, params, latents()), reference_outputs["both"])


def test_orbax_save_and_load_bf16(checkpoints, tmp_path):
    module, params = load_latent_upsampler(checkpoints["spatial"]["diffusers"], jnp.bfloat16)
    save_latent_upsampler_orbax(module, params, tmp_path / "bf16")
    again, params_again = load_latent_upsampler(tmp_path / "bf16", jnp.bfloat16)
    assert again.config == module.config and again.dtype == jnp.bfloat16
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), params,
                                                              params_again))
    assert all(leaves) and {x.dtype for x in jax.tree_util.tree_leaves(params_again)} == {jnp.dtype(jnp.bfloat16)}
    with pytest.raises(ValueError, match="already exists"):
        save_latent_upsampler_orbax(module, params, tmp_path / "bf16")


# ------------------------------------------------------------------------------------------------- errors


def _edited(checkpoints, tmp_path, edit) -> str:
    model = checkpoints["both"]["torch"]
    return write_single_file(model, tmp_path / "edited.safetensors", original_metadata(model), edit)


def test_missing_key(checkpoints, tmp_path):
    path = _edited(checkpoints, tmp_path, lambda t: t.pop("post_upsample_res_blocks.1.norm2.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['post_upsample_res_blocks\.1\.norm2\.bias'\]"):
        load_latent_upsampler(path)


def test_unexpected_key(checkpoints, tmp_path):
    extra = {"res_blocks.2.conv1.weight": torch.zeros(96, 96, 3, 3, 3)}
    path = _edited(checkpoints, tmp_path, lambda t: t.update(extra))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): \['res_blocks\.2\.conv1\.weight'\]"):
        load_latent_upsampler(path)


def test_wrong_shape(checkpoints, tmp_path):
    path = _edited(checkpoints, tmp_path, lambda t: t.update({"res_blocks.0.norm1.weight": torch.ones(64)}))
    with pytest.raises(CheckpointError, match=r"'res_blocks\.0\.norm1\.weight' has shape \(64,\), but the model "
                                              r"expects \(96,\)"):
        load_latent_upsampler(path)


def test_missing_path_and_wrong_files(checkpoints, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_latent_upsampler(tmp_path / "nowhere.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_latent_upsampler_config(tmp_path / "nowhere")
    not_upsampler = tmp_path / "transformer.safetensors"
    save_file({"model.diffusion_model.proj_in.weight": torch.zeros(4, 4)}, str(not_upsampler))
    with pytest.raises(CheckpointError, match="not a latent upsampler checkpoint"):
        load_latent_upsampler(not_upsampler)
    root = tmp_path / "pipeline_without_upsampler"
    shutil.copytree(checkpoints["both"]["diffusers"], root / "vae")
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_latent_upsampler(root)

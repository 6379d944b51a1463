"""Loading the transformer from every layout gives identical params; bad checkpoints give clear errors."""

from __future__ import annotations

import copy
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import TINY_TRANSFORMER, randomize_, write_single_file
from diffusers import LTXVideoTransformer3DModel as TorchTransformer
from safetensors.torch import load_file, save_file

from ltx_jax import TransformerConfig
from weight_conversion import CheckpointError, load_transformer
from weight_conversion.__main__ import main as cli_main

B, F, H, W, T = 1, 2, 3, 3, 5


def forward(module, params, seed=0):
    rng = np.random.default_rng(seed)
    cfg = module.config
    hidden = jnp.asarray(rng.standard_normal((B, F * H * W, cfg.in_channels)), jnp.float32)
    text = jnp.asarray(rng.standard_normal((B, T, cfg.caption_channels)), jnp.float32)
    mask = jnp.asarray([[1, 1, 1, 0, 0]])
    return np.asarray(module.apply({"params": params}, hidden, text, jnp.asarray([500.0]), mask,
                                   num_frames=F, height=H, width=W))


@pytest.fixture(scope="module")
def reference_output(transformer_checkpoints):
    module, params = load_transformer(transformer_checkpoints["diffusers"])
    return forward(module, params)


@pytest.mark.parametrize("layout", ["sharded", "single_file"])
def test_layouts_give_identical_outputs(transformer_checkpoints, reference_output, layout):
    module, params = load_transformer(transformer_checkpoints[layout])
    assert module.config == TransformerConfig(**TINY_TRANSFORMER)
    np.testing.assert_array_equal(forward(module, params), reference_output)


def test_pipeline_root_folder(transformer_checkpoints, reference_output, tmp_path):
    root = tmp_path / "pipeline"
    shutil.copytree(transformer_checkpoints["diffusers"], root / "transformer")
    (root / "model_index.json").write_text("{}")
    module, params = load_transformer(root)
    np.testing.assert_array_equal(forward(module, params), reference_output)


@pytest.mark.parametrize("src", ["diffusers", "single_file"])
def test_orbax_roundtrip_through_cli(transformer_checkpoints, reference_output, tmp_path, src, capsys):
    dst = tmp_path / f"orbax_{src}"
    assert cli_main(["convert", transformer_checkpoints[src], str(dst)]) == 0
    assert "converted transformer" in capsys.readouterr().out
    module, params = load_transformer(dst)
    np.testing.assert_array_equal(forward(module, params), reference_output)
    # bf16 conversion writes bf16 params that load as bf16
    dst16 = tmp_path / f"orbax16_{src}"
    assert cli_main(["convert", transformer_checkpoints[src], str(dst16), "--dtype", "bfloat16"]) == 0
    module16, params16 = load_transformer(dst16, dtype=jnp.bfloat16)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params16)} == {jnp.dtype(jnp.bfloat16)}
    assert cli_main(["convert", transformer_checkpoints[src], str(dst)]) == 2  # refused before loading, one line
    assert capsys.readouterr().err == f"error: {dst} already exists; choose a new destination, or replace it with " \
                                      "--overwrite.\n"


def test_bf16_load_reads_bf16_file_without_upcast(torch_transformer, tmp_path):
    folder = tmp_path / "bf16"
    copy.deepcopy(torch_transformer).to(torch.bfloat16).save_pretrained(folder)  # never alter the shared reference
    module, params = load_transformer(folder, dtype=jnp.bfloat16)
    ref = torch_transformer.state_dict()["proj_in.weight"].to(torch.bfloat16).float().numpy().T
    np.testing.assert_array_equal(np.asarray(params["proj_in"]["kernel"], np.float32), ref)


def test_single_file_config_inferred_from_shapes(tmp_path):
    """Without a config in the metadata, the config comes from tensor shapes (released models have 32 heads)."""
    torch.manual_seed(2)
    model = randomize_(TorchTransformer(in_channels=3, out_channels=3, num_attention_heads=32, attention_head_dim=2,
                                        cross_attention_dim=64, num_layers=2, caption_channels=7), seed=3)
    path = write_single_file(model, str(tmp_path / "noconfig.safetensors"), with_config=False)
    module, params = load_transformer(path)
    assert module.config == TransformerConfig(**{k: v for k, v in dict(model.config).items()
                                                 if k in TransformerConfig.__dataclass_fields__})
    # The same weights through a diffusers folder with its config.json give the same outputs.
    folder = tmp_path / "with_config"
    model.save_pretrained(folder)
    module_ref, params_ref = load_transformer(folder)
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((1, 4, 3)).astype(np.float32), rng.standard_normal((1, 2, 7)).astype(np.float32),
            jnp.asarray([10.0]), jnp.ones((1, 2)))
    kw = dict(num_frames=1, height=2, width=2)
    np.testing.assert_array_equal(np.asarray(module.apply({"params": params}, *args, **kw)),
                                  np.asarray(module_ref.apply({"params": params_ref}, *args, **kw)))


# ------------------------------------------------------------------------------------------------------ errors


def _edited_folder(src, dst, edit):
    shutil.copytree(src, dst)
    weights = os.path.join(dst, "diffusion_pytorch_model.safetensors")
    state = load_file(weights)
    edit(state)
    save_file(state, weights)
    return dst


def test_missing_key_is_named(transformer_checkpoints, tmp_path):
    folder = _edited_folder(transformer_checkpoints["diffusers"], tmp_path / "m",
                            lambda s: s.pop("transformer_blocks.1.attn2.to_k.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['transformer_blocks.1.attn2.to_k.bias'\]"):
        load_transformer(folder)


def test_extra_key_is_named(transformer_checkpoints, tmp_path):
    folder = _edited_folder(transformer_checkpoints["diffusers"], tmp_path / "e",
                            lambda s: s.update({"transformer_blocks.3.ff.net.2.bias": torch.zeros(16)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): \['transformer_blocks.3.ff.net.2.bias'\]"):
        load_transformer(folder)


def test_wrong_shape_names_key_and_both_shapes(transformer_checkpoints, tmp_path):
    folder = _edited_folder(transformer_checkpoints["diffusers"], tmp_path / "s",
                            lambda s: s.update({"proj_out.weight": torch.zeros(8, 16)}))
    with pytest.raises(CheckpointError,
                       match=r"'proj_out.weight' has shape \(8, 16\), but the model expects \(7, 16\)"):
        load_transformer(folder)


def test_config_that_does_not_match(transformer_checkpoints, tmp_path):
    folder = tmp_path / "cfg"
    shutil.copytree(transformer_checkpoints["diffusers"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_layers"] = 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unexpected keys.*transformer_blocks.2"):
        load_transformer(folder)


def test_truncated_file(transformer_checkpoints, tmp_path):
    data = open(transformer_checkpoints["single_file"], "rb").read()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_transformer(path)


def test_non_safetensors_files_are_refused(tmp_path, torch_transformer):
    pickled = tmp_path / "model.safetensors"
    torch.save({"proj_in.weight": torch.zeros(2)}, pickled)  # a pickle under a safetensors name
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_transformer(pickled)
    folder = tmp_path / "bin_folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(dict(torch_transformer.config)))
    torch.save(torch_transformer.state_dict(), folder / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled checkpoints are never loaded"):
        load_transformer(folder)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_transformer(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_transformer(tmp_path / "nowhere.safetensors")

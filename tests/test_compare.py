"""``python -m ltx_jax compare``: the tests' tiny checkpoints (a diffusers pipeline root, a Lightricks single file with
a transformer and a VAE, a diffusers transformer folder with more blocks than are compared, latent upsampler folders
and files) come out within the parity bounds with exit code 0; a loader fault (a transposed kernel, a dropped bias)
exits 1 and names the component; usage errors exit 2 with one line; the partial loads compare relies on."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re

import jax
import numpy as np
import pytest
import test_latent_upsampler
import test_t5
import test_transformer
import test_vae
import torch
from conftest import randomize_, report
from diffusers.pipelines.ltx import LTXLatentUpsamplerModel as TorchUpsampler
from flax import traverse_util
from original_ltx import write_tiny_single_file
from safetensors.torch import save_file

import weight_conversion
from ltx_jax import compare
from ltx_jax.tiny_random import TINY_TRANSFORMER, TINY_UPSAMPLER, TINY_VAE
from weight_conversion import CheckpointError, orbax_io
from weight_conversion import transformer as transformer_loading
from weight_conversion.mapping import IDENTITY

ROW = re.compile(r"^  (\w+)\s+rel err\s+(\S+)\s+bound\s+(\S+)\s+(ok|FAILED)\s+(.*)  \([\d.]+ s\)$")


def run(capsys, *args: str) -> tuple[int, list[tuple[str, float, str]], list[str]]:
    """``compare`` in this process: (exit code, [(component, error, what)], the lines of stdout)."""
    code = compare.main(["ltx_jax", "compare", *args])
    lines = capsys.readouterr().out.splitlines()
    rows = [(m.group(1), float(m.group(2)), m.group(5)) for m in map(ROW.match, lines) if m]
    return code, rows, lines


def report_rows(rows, label: str) -> None:
    for component, error, what in rows:
        part = f" {what.split()[0]}" if component == "vae" else ""  # decode, encode
        report(f"compare {label}: {component}{part}", error, compare.BOUNDS[component])


@pytest.fixture(scope="module")
def single_file(tmp_path_factory) -> str:
    """A Lightricks single file: a 3-block transformer (2 compared) and a 0.9.1-style VAE, native names, metadata."""
    path = tmp_path_factory.mktemp("compare_single") / "ltxv-tiny-0.9.1.safetensors"
    return write_tiny_single_file(path, TINY_TRANSFORMER.replace(num_layers=3), TINY_VAE, seed=21)["path"]


@pytest.fixture(scope="module")
def upsampler_checkpoints(tmp_path_factory) -> dict[str, str]:
    """The tiny latent upsampler as a diffusers folder and as a Lightricks file (diffusers' names, config metadata)."""
    root = tmp_path_factory.mktemp("compare_upsampler")
    torch.manual_seed(0)
    model = randomize_(TorchUpsampler(**dataclasses.asdict(TINY_UPSAMPLER)), seed=22)
    model.save_pretrained(root / "latent_upsampler")
    config = {"_class_name": "LatentUpsampler", **dataclasses.asdict(TINY_UPSAMPLER)}
    file = os.fspath(root / "ltxv-spatial-upscaler-tiny.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, file, metadata={"config": json.dumps(config)})
    return {"folder": os.fspath(root / "latent_upsampler"), "single_file": file}


def test_bounds_are_the_parity_tests():
    assert compare.BOUNDS == {"transformer": test_transformer.TOL_FP32, "vae": test_vae.TOL,
                              "text_encoder": test_t5.TOL_FP32, "upsampler": test_latent_upsampler.TOL}


# --------------------------------------------------------------------------------------- the tiny checkpoints


def test_diffusers_root_within_bounds(tiny_reference, upsampler_checkpoints, capsys):
    code, rows, lines = run(capsys, "--model", tiny_reference["root"], "--upsampler", upsampler_checkpoints["folder"])
    report_rows(rows, "diffusers root")
    assert code == 0, "\n".join(lines)
    assert [c for c, _, _ in rows] == ["transformer", "vae", "vae", "text_encoder", "upsampler"]
    assert all(error <= compare.BOUNDS[c] for c, error, _ in rows)
    assert "one prompt" in rows[3][2] and lines[-1].startswith("ok: transformer, vae, text_encoder, upsampler")


def test_single_file_within_bounds(single_file, tiny_reference, upsampler_checkpoints, capsys):
    code, rows, lines = run(capsys, "--model", single_file, "--text_encoder", tiny_reference["root"],
                            "--upsampler", upsampler_checkpoints["single_file"])
    report_rows(rows, "single file")
    assert code == 0, "\n".join(lines)
    assert [c for c, _, _ in rows] == ["transformer", "vae", "vae", "text_encoder", "upsampler"]
    assert rows[0][2].startswith("2 of 3 blocks")  # two blocks read and run, not three
    assert "convert_ltx_vae_checkpoint_to_diffusers" in "\n".join(lines)  # diffusers' own reading of native names


def test_transformer_folder_with_more_blocks(transformer_checkpoints, capsys):
    code, rows, lines = run(capsys, "--model", transformer_checkpoints["sharded"], "--components", "transformer")
    report_rows(rows, "sharded transformer folder")
    assert code == 0, "\n".join(lines)
    assert len(rows) == 1 and rows[0][2].startswith("2 of 3 blocks")


# ------------------------------------------------------------------------------------------- loader faults


def test_transposed_kernel_fails_the_transformer(tiny_reference, monkeypatch, capsys):
    """attn1.to_q's kernel (square) read without its Linear transpose: every key and shape check passes."""
    rules = transformer_loading.transformer_rules
    to_q = ("transformer_blocks", "attn1", "to_q", "kernel")

    def transposing(config, abstract):
        return [dataclasses.replace(r, transform=IDENTITY) if r.target == to_q else r for r in rules(config, abstract)]

    monkeypatch.setattr(transformer_loading, "transformer_rules", transposing)
    code, rows, lines = run(capsys, "--model", tiny_reference["root"], "--components", "transformer,text_encoder")
    print("\n".join(lines))
    report("compare fault: transposed kernel, transformer", rows[0][1], compare.BOUNDS["transformer"], at_least=True)
    assert code == 1
    assert {c: e > compare.BOUNDS[c] for c, e, _ in rows} == {"transformer": True, "text_encoder": False}
    assert lines[-1] == f"FAILED: transformer (rel err {rows[0][1]:.1e} > 1e-05)"


def test_dropped_bias_fails_the_vae(tiny_reference, monkeypatch, capsys):
    load_vae = weight_conversion.load_vae
    bias = ("decoder", "mid_block", "resnets_0", "conv1", "conv", "bias")

    def without_bias(*args, **kwargs):
        module, params = load_vae(*args, **kwargs)
        flat = traverse_util.flatten_dict(params)
        flat[bias] = jax.numpy.zeros_like(flat[bias])
        return module, traverse_util.unflatten_dict(flat)

    monkeypatch.setattr(weight_conversion, "load_vae", without_bias)
    code, rows, lines = run(capsys, "--model", tiny_reference["root"], "--components", "vae")
    print("\n".join(lines))
    report("compare fault: zeroed bias, vae decode", rows[0][1], compare.BOUNDS["vae"], at_least=True)
    assert code == 1
    decode, encode = rows
    assert decode[1] > compare.BOUNDS["vae"] >= encode[1]  # the decoder's bias; the encoder reads right
    assert lines[-1] == f"FAILED: vae (rel err {decode[1]:.1e} > 1e-04)"


def test_a_loader_error_is_a_failed_component(tiny_reference, tmp_path, capsys):
    """A checkpoint our loader refuses (a tensor missing) is reported on its line; the others still run."""
    root = tmp_path / "root"
    os.makedirs(root)
    for name in ("vae", "transformer"):
        os.symlink(os.path.join(tiny_reference["root"], name), root / name)
    os.makedirs(root / "latent_upsampler")
    with open(root / "latent_upsampler" / "config.json", "w") as f:
        json.dump(TINY_UPSAMPLER.to_dict(), f)
    save_file({"initial_conv.weight": torch.zeros(1)}, os.fspath(root / "latent_upsampler" / "x.safetensors"))
    code, rows, lines = run(capsys, "--model", os.fspath(root), "--components", "transformer,upsampler")
    assert code == 1
    assert [c for c, _, _ in rows] == ["transformer"]
    assert any(line.startswith("  upsampler     FAILED, not compared: CheckpointError") for line in lines)
    assert lines[-1] == "FAILED: upsampler (not compared)"


# -------------------------------------------------------------------------------------------- usage errors


def test_usage_errors_are_one_line(tiny_reference, single_file, tmp_path, monkeypatch, capsys):
    orbax = tmp_path / "ltx_transformer_orbax"
    os.makedirs(orbax)
    (orbax / orbax_io.MARKER).write_text("{}")
    cases = {
        (): "--model is required",
        ("--model", os.fspath(tmp_path / "nothing")): "does not exist",
        ("--model", os.fspath(orbax)): "is an Orbax checkpoint, which torch cannot read",
        ("--model", tiny_reference["root"], "--components", "vae,unet"): "unknown ['unet']",
        ("--model", single_file, "--components", "text_encoder"): "pass --text_encoder",
        ("--model", single_file, "--upsampler", single_file): "holds no upsampler",
        ("--model", tiny_reference["root"], "--steps", "3"): "unrecognized arguments",
    }
    root = tmp_path / "root_with_orbax"
    os.makedirs(root / "transformer")
    (root / "transformer" / orbax_io.MARKER).write_text("{}")
    os.symlink(os.path.join(tiny_reference["root"], "vae"), root / "vae")
    cases[("--model", os.fspath(root))] = ("/transformer is an Orbax checkpoint, which torch cannot read; compare the "
                                           "safetensors checkpoint it was converted from, or leave it out "
                                           "(--components vae).")
    for args, message in cases.items():
        assert compare.main(["ltx_jax", "compare", *args]) == 2, args
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and message in err, (args, err)
    components, _ = compare.find_components(os.fspath(root), None, None, ["vae"])  # the Orbax part left out
    assert list(components) == ["vae"]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "diffusers" else find_spec(name, *a))
    assert compare.main(["ltx_jax", "compare", "--model", single_file]) == 2
    assert capsys.readouterr().err == ("error: compare runs diffusers as the reference, "
                                       "and diffusers is not installed: "
                                       "pip install torch diffusers transformers (or pip install -e '.[test]').\n")
    monkeypatch.undo()
    assert compare.main(["ltx_jax", "compare", "--help"]) == 0
    assert "--text_encoder PATH" in capsys.readouterr().out


def test_what_is_found_beside_a_single_file(single_file, tiny_reference, tmp_path):
    components, notes = compare.find_components(single_file, None, None, None)
    assert list(components) == ["transformer", "vae"] and notes[0].startswith("text_encoder: skipped")
    model = os.fspath(tmp_path / "ltxv.safetensors")
    os.symlink(single_file, model)
    os.symlink(os.path.join(tiny_reference["root"], "text_encoder"), tmp_path / "text_encoder")
    components, notes = compare.find_components(model, None, None, ["vae", "text_encoder"])
    assert components == {"vae": compare.Checkpoint(model, "single_file"),
                          "text_encoder": compare.Checkpoint(os.fspath(tmp_path / "text_encoder"), "folder")}
    assert notes == []


# ------------------------------------------------------------------------------ partial loads (num_layers=)


def test_first_blocks_load_as_in_the_whole_model(transformer_checkpoints, tiny_reference, tmp_path):
    for path in (transformer_checkpoints["diffusers"], transformer_checkpoints["single_file"]):
        whole = traverse_util.flatten_dict(weight_conversion.load_transformer(path)[1])
        module, first = weight_conversion.load_transformer(path, num_layers=2)
        assert module.config.num_layers == 2
        for key, value in traverse_util.flatten_dict(first).items():
            expected = whole[key][:2] if key[0] == "transformer_blocks" else whole[key]
            np.testing.assert_array_equal(value, expected)
        with pytest.raises(CheckpointError, match="has 3 blocks"):
            weight_conversion.load_transformer(path, num_layers=4)
    t5 = os.path.join(tiny_reference["root"], "text_encoder")
    whole = traverse_util.flatten_dict(weight_conversion.load_text_encoder(t5)[1])
    first = traverse_util.flatten_dict(weight_conversion.load_text_encoder(t5, num_layers=1)[1])
    assert all(np.array_equal(v, whole[k][:1] if k[0] == "block" else whole[k]) for k, v in first.items())

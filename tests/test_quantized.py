"""Low-precision weights (int8 / fp8 e4m3, per output channel): parameter bytes of the released sizes, output error
against fp32 on tiny random models, Lightricks-style fp8 single files against torch's upcast, Orbax round trips, the
LoRA hook, and the errors. fp32 references on CPU; every reference is diffusers / transformers or exact arithmetic.
"""

from __future__ import annotations

import copy
import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from conftest import rel_err, report, write_fp8_single_file
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import T5Config as TorchT5Config
from transformers import T5EncoderModel as TorchT5EncoderModel

from ltx_jax.models import abstract_params
from ltx_jax.models.t5 import T5EncoderModel
from ltx_jax.models.transformer import LTXVideoTransformer3DModel
from ltx_jax.releases import T5_PRESETS, TRANSFORMER_PRESETS
from weight_conversion import CheckpointError, load_transformer
from weight_conversion.__main__ import main as cli_main
from weight_conversion.quantize import FP8_MAX, dequantize_kernel, quantize_kernel
from weight_conversion.t5 import load_text_encoder, save_text_encoder_orbax

B, F, H, W, T = 1, 2, 3, 3, 5
BYTES_RATIO = 0.55  # DESIGN.md: int8 / fp8 parameter bytes <= 0.55x of bf16
# Output error bounds (max |ours - fp32| / max |fp32|) of the 3-layer tiny transformer and 3-layer tiny T5:
# int8: every weight is off by at most scale / 2 = max|column| / 254 (~0.4 % of the column's range, ~1 % of a typical
#   weight); a matmul's output error is the sum of `in` such errors with random signs, a few tenths of a percent of
#   the output; through 3 layers of residual blocks (and attention softmaxes that amplify logit errors) we allow 3e-2.
# fp8 e4m3: 3 mantissa bits round each weight by up to 2^-4 = 6.25 % of itself (2^-5 on average); outputs, sums of
#   such terms, are off by a few percent; we allow 0.15 (5x int8's per-weight error, same amplification).
INT8_TOL = 3e-2
FP8_TOL = 0.15
FLOAT_TOL = 1e-5  # the same dequantised weights, scale applied after the matmul instead of before: float rounding
TOLS = {"int8": INT8_TOL, "fp8": FP8_TOL}


def inputs(cfg, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((B, F * H * W, cfg.in_channels)).astype(np.float32)
    text = rng.standard_normal((B, T, cfg.caption_channels)).astype(np.float32)
    return hidden, text, np.array([500.0], np.float32), np.array([[1, 1, 1, 0, 0]])


KW = dict(num_frames=F, height=H, width=W, rope_interpolation_scale=(8 / 25, 32, 32))


def forward(module, params):
    return np.asarray(module.apply({"params": params}, *map(jnp.asarray, inputs(module.config)), **KW))


def run_torch(model, cfg):
    with torch.no_grad():
        return model(*map(torch.from_numpy, inputs(cfg)), return_dict=False, **KW)[0].numpy()


@pytest.fixture(scope="module")
def fp32(transformer_checkpoints):
    module, params = load_transformer(transformer_checkpoints["diffusers"])
    return module, params, forward(module, params)


def param_bytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))


# ----------------------------------------------------------------------------------------------- bytes, exact maths

@pytest.mark.parametrize("weights", ["int8", "fp8"])
def test_parameter_bytes_of_released_sizes(weights):
    bf16 = jnp.bfloat16
    cfg = TRANSFORMER_PRESETS["ltx-video-2b"]
    ours = param_bytes(abstract_params(LTXVideoTransformer3DModel(cfg, bf16, bf16, weights=weights)))
    ratio = ours / param_bytes(abstract_params(LTXVideoTransformer3DModel(cfg, bf16, bf16)))
    report(f"2B transformer param bytes, {weights} / bf16", ratio, BYTES_RATIO)
    assert ratio <= BYTES_RATIO
    t5 = T5_PRESETS["t5-v1_1-xxl"]
    t5_ratio = (param_bytes(abstract_params(T5EncoderModel(t5, bf16, bf16, weights=weights)))
                / param_bytes(abstract_params(T5EncoderModel(t5, bf16, bf16))))
    report(f"T5-XXL encoder param bytes, {weights} / bf16", t5_ratio, BYTES_RATIO)
    assert t5_ratio <= BYTES_RATIO


def test_quantize_kernel_error_is_within_half_a_step():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((37, 11)) * np.logspace(-3, 1, 11)).astype(np.float32)  # columns of very different range
    w[:, 4] = 0.0  # an all-zero column: scale 1, zeros
    q8, s8 = quantize_kernel(w, "int8")
    assert q8.dtype == np.int8 and s8.dtype == np.float32 and s8[4] == 1.0 and not q8[:, 4].any()
    amax = np.abs(w).max(0)
    np.testing.assert_allclose(s8, np.where(amax > 0, amax / 127, 1), rtol=1e-7)
    err8 = np.abs(dequantize_kernel(q8, s8) - w)
    assert np.all(err8 <= s8 / 2 * (1 + 1e-6)), "int8: round to nearest is within half a step"
    report("int8 kernel max error / (column max / 254)", float((err8 / (s8 / 2)).max()), 1.0 + 1e-6)
    qf, sf = quantize_kernel(w, "fp8")
    assert qf.dtype == ml_dtypes.float8_e4m3fn and np.abs(np.asarray(qf, np.float32)).max() <= FP8_MAX
    # e4m3 keeps 3 mantissa bits: relative error <= 2^-4 for normals (>= 2^-6 in scaled units); below, the
    # subnormal spacing 2^-9 gives an absolute error <= 2^-10 in scaled units.
    errf = np.abs(dequantize_kernel(qf, sf) - w)
    bound = np.maximum(np.abs(w) * 2.0**-4, sf * 2.0**-10) * (1 + 1e-6)
    assert np.all(errf <= bound)
    report("fp8 kernel max error / rounding bound", float((errf / bound).max()), 1.0)


# ----------------------------------------------------------------------------------------------- tiny transformer

@pytest.mark.parametrize("weights", ["int8", "fp8"])
def test_quantized_transformer_against_fp32(transformer_checkpoints, fp32, weights):
    _, ref_params, ref = fp32
    module, params = load_transformer(transformer_checkpoints["diffusers"], weights=weights)
    assert module.weights == weights
    blocks = params["transformer_blocks"]
    assert blocks["attn1"]["to_q"]["kernel"].dtype == {"int8": jnp.int8, "fp8": jnp.float8_e4m3fn}[weights]
    assert blocks["ff"]["net_2"]["kernel_scale"].shape == ref_params["transformer_blocks"]["ff"]["net_2"]["bias"].shape
    assert params["proj_in"]["kernel"].dtype == jnp.float32 and "kernel_scale" not in params["proj_in"]
    err = rel_err(forward(module, params), ref)
    report(f"transformer {weights} vs fp32 (3 layers)", err, TOLS[weights])
    assert err <= TOLS[weights]


@pytest.fixture(scope="module", params=["lightricks", "scaled"])
def fp8_file(request, torch_transformer, tmp_path_factory):
    path = os.path.join(tmp_path_factory.mktemp("fp8"), f"ltxv-tiny-{request.param}-fp8.safetensors")
    meant = write_fp8_single_file(torch_transformer, path, request.param)
    reference = copy.deepcopy(torch_transformer)  # diffusers' model with the weights the file means
    state = reference.state_dict()
    native = {"patchify_proj": "proj_in", "adaln_single": "time_embed", "q_norm": "norm_q", "k_norm": "norm_k"}
    for key, value in meant.items():
        name = key[len("model.diffusion_model."):]
        for old, new in native.items():
            name = name.replace(old, new)
        state[name] = value
    reference.load_state_dict(state)
    return {"path": path, "layout": request.param, "meant": meant, "torch": reference}


def test_fp8_single_file_loads_as_stored(fp8_file):
    module, params = load_transformer(fp8_file["path"], weights="fp8")
    stored = load_file(fp8_file["path"])
    kernel = params["transformer_blocks"]["attn2"]["to_k"]["kernel"]  # [L, in, out]
    for layer in range(kernel.shape[0]):
        base = f"model.diffusion_model.transformer_blocks.{layer}.attn2.to_k."
        np.testing.assert_array_equal(np.asarray(kernel[layer]).view(np.uint8),
                                      stored[base + "weight"].T.contiguous().view(torch.uint8).numpy())
        scale = stored.get(base + "weight_scale", stored.get(base + "scale_weight", torch.ones(())))
        np.testing.assert_array_equal(np.asarray(params["transformer_blocks"]["attn2"]["to_k"]["kernel_scale"][layer]),
                                      np.broadcast_to(scale.float().numpy(), kernel.shape[-1:]))
    ours = forward(module, params)
    ref = run_torch(fp8_file["torch"], module.config)  # diffusers on torch's upcast of the fp8 file
    err = rel_err(ours, ref)
    report(f"fp8 file ({fp8_file['layout']}) as stored vs diffusers on its upcast", err, FLOAT_TOL)
    assert err <= FLOAT_TOL


def test_fp8_single_file_upcast_and_int8(fp8_file):
    module, params = load_transformer(fp8_file["path"])  # weights=None: dequantised into float32 kernels
    kernel = np.asarray(params["transformer_blocks"]["ff"]["net_0_proj"]["kernel"])
    for layer in range(kernel.shape[0]):
        key = f"model.diffusion_model.transformer_blocks.{layer}.ff.net.0.proj.weight"
        np.testing.assert_array_equal(kernel[layer], fp8_file["meant"][key].numpy().T)  # exactly torch's upcast
    ref = run_torch(fp8_file["torch"], module.config)
    err = rel_err(forward(module, params), ref)
    report(f"fp8 file ({fp8_file['layout']}) upcast vs diffusers", err, FLOAT_TOL)
    assert err <= FLOAT_TOL
    module8, params8 = load_transformer(fp8_file["path"], weights="int8")  # re-quantized from the upcast values
    err8 = rel_err(forward(module8, params8), ref)
    report(f"fp8 file ({fp8_file['layout']}) as int8 vs diffusers on its upcast", err8, INT8_TOL)
    assert err8 <= INT8_TOL


# ----------------------------------------------------------------------------------------------- hook, Orbax, T5

def test_kernel_delta_is_added_before_quantizing(transformer_checkpoints, fp32, fp8_file):
    _, ref_params, _ = fp32
    target = ("transformer_blocks", "attn1", "to_v", "kernel")
    calls = []

    def delta(path, layer, shape):
        calls.append((path, layer))
        return np.full(shape, 0.25 * (layer + 1), np.float32) if path == target else None

    _, params = load_transformer(transformer_checkpoints["diffusers"], kernel_delta=delta)
    expected = (np.asarray(ref_params["transformer_blocks"]["attn1"]["to_v"]["kernel"])
                + np.array([0.25, 0.5, 0.75])[:, None, None])
    np.testing.assert_allclose(np.asarray(params["transformer_blocks"]["attn1"]["to_v"]["kernel"]), expected, rtol=1e-6)
    assert (("proj_in", "kernel"), None) in calls and (target, 2) in calls
    _, q = load_transformer(transformer_checkpoints["diffusers"], weights="int8", kernel_delta=delta)
    leaf = q["transformer_blocks"]["attn1"]["to_v"]
    got = dequantize_kernel(np.asarray(leaf["kernel"]), np.asarray(leaf["kernel_scale"]))
    assert np.all(np.abs(got - expected) <= np.asarray(leaf["kernel_scale"])[:, None, :] / 2 * (1 + 1e-6))
    _, f8 = load_transformer(fp8_file["path"], weights="fp8", kernel_delta=delta)  # stored fp8 + delta: re-quantized
    leaf = f8["transformer_blocks"]["attn1"]["to_v"]
    got = dequantize_kernel(np.asarray(leaf["kernel"]), np.asarray(leaf["kernel_scale"]))
    meant = np.stack([fp8_file["meant"][f"model.diffusion_model.transformer_blocks.{i}.attn1.to_v.weight"].numpy().T
                      for i in range(3)]) + np.array([0.25, 0.5, 0.75])[:, None, None]
    assert np.all(np.abs(got - meant)
                  <= np.abs(meant) * 2.0**-4 + np.asarray(leaf["kernel_scale"])[:, None, :] * 2.0**-10)
    with pytest.raises(ValueError, match="kernel_delta .* has shape"):
        load_transformer(transformer_checkpoints["diffusers"],
                         kernel_delta=lambda p, i, s: np.zeros((1, 1), np.float32))


def test_orbax_round_trip_of_int8(transformer_checkpoints, tmp_path, capsys):
    dst = tmp_path / "int8"
    assert cli_main(["convert", transformer_checkpoints["diffusers"], str(dst), "--weights", "int8"]) == 0
    assert "int8 weights" in capsys.readouterr().out
    assert json.loads((dst / "ltx_jax.json").read_text())["weights"] == "int8"
    direct_module, direct = load_transformer(transformer_checkpoints["diffusers"], weights="int8")
    module, params = load_transformer(dst)  # the marker rebuilds the int8 module
    assert module.weights == "int8"
    for a, b in zip(jax.tree_util.tree_leaves(direct), jax.tree_util.tree_leaves(params)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
    np.testing.assert_array_equal(forward(module, params), forward(direct_module, direct))
    with pytest.raises(CheckpointError, match="holds int8 weights, not fp8"):
        load_transformer(dst, weights="fp8")
    # a marker written before the field existed means float weights
    old = tmp_path / "float"
    assert cli_main(["convert", transformer_checkpoints["diffusers"], str(old)]) == 0
    marker = json.loads((old / "ltx_jax.json").read_text())
    del marker["weights"]
    (old / "ltx_jax.json").write_text(json.dumps(marker))
    module, params = load_transformer(old)
    assert module.weights is None and params["transformer_blocks"]["attn1"]["to_q"]["kernel"].dtype == jnp.float32
    capsys.readouterr()
    assert cli_main(["convert", transformer_checkpoints["diffusers"], str(tmp_path / "vae"), "--component", "vae",
                     "--weights", "int8"]) != 0
    assert "--weights applies to the transformer and the text_encoder" in capsys.readouterr().err
    assert not (tmp_path / "vae").exists()


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    torch.manual_seed(0)
    config = TorchT5Config(vocab_size=83, d_model=40, d_kv=6, d_ff=57, num_layers=3, num_heads=5,
                           relative_attention_num_buckets=12, relative_attention_max_distance=24,
                           feed_forward_proj="gated-gelu")
    model = TorchT5EncoderModel(config).eval()
    folder = tmp_path_factory.mktemp("t5") / "text_encoder"
    model.save_pretrained(folder)
    ids = torch.randint(0, 83, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(input_ids=ids).last_hidden_state.numpy()
    return {"folder": str(folder), "ids": ids.numpy(), "ref": ref}


@pytest.mark.parametrize("weights", ["int8", "fp8"])
def test_quantized_t5_against_transformers(t5_folder, tmp_path, weights):
    module, params = load_text_encoder(t5_folder["folder"], weights=weights)
    q = params["block"]["layer_1"]["DenseReluDense"]["wo"]
    assert q["kernel"].dtype.itemsize == 1 and q["kernel_scale"].dtype == jnp.float32
    assert params["shared"]["embedding"].dtype == jnp.float32
    out = np.asarray(module.apply({"params": params}, jnp.asarray(t5_folder["ids"])))
    err = rel_err(out, t5_folder["ref"])
    report(f"T5 encoder {weights} vs transformers fp32 (3 layers)", err, TOLS[weights])
    assert err <= TOLS[weights]
    save_text_encoder_orbax(module, params, tmp_path / "t5")
    restored_module, restored = load_text_encoder(tmp_path / "t5")
    assert restored_module.weights == weights
    np.testing.assert_array_equal(
        np.asarray(restored_module.apply({"params": restored}, jnp.asarray(t5_folder["ids"]))), out)


# ----------------------------------------------------------------------------------------------- errors

def test_unknown_weights_value_names_the_choices(transformer_checkpoints, t5_folder):
    for load, path in ((load_transformer, transformer_checkpoints["diffusers"]),
                       (load_text_encoder, t5_folder["folder"])):
        with pytest.raises(ValueError, match=r"weights='int4'; use None .*'int8' or 'fp8'") as info:
            load(path, weights="int4")
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["block_wise_scale_inv", "comfy_quant", "scale_shape", "scale_on_bf16", "two_scales"])
def test_unrecognised_fp8_layouts_are_refused(torch_transformer, tmp_path, case):
    path = str(tmp_path / "ltxv-bad-fp8.safetensors")
    write_fp8_single_file(torch_transformer, path)
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    base = "model.diffusion_model.transformer_blocks.1.ff.net.2."
    out, inner = tensors[base + "weight"].shape
    expected = {
        "block_wise_scale_inv": ("weight_scale_inv", torch.ones(1, 1), "block-wise fp8 scales"),
        "comfy_quant": ("comfy_quant", torch.zeros(8, dtype=torch.uint8), "ComfyUI mixed-precision"),
        "scale_shape": ("weight_scale", torch.ones(out, inner // 2), "not one it recognises"),
        "two_scales": ("weight_scale", torch.ones(out), "has two scales"),
    }
    if case == "scale_on_bf16":
        base = "model.diffusion_model.proj_out."
        tensors[base + "weight_scale"] = torch.ones(())
        match = "with a scale next to it"
    else:
        suffix, value, match = expected[case]
        tensors[base + suffix] = value
        if case == "two_scales":
            tensors[base + "scale_weight"] = torch.ones(())
    save_file(tensors, path, metadata=metadata)
    for weights in (None, "fp8"):
        with pytest.raises(CheckpointError, match=match):
            load_transformer(path, weights=weights)

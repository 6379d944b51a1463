"""Transformer parity with diffusers' LTXVideoTransformer3DModel (fp32, tiny odd config), bf16, and full-size shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import TINY_TRANSFORMER, rel_err, report
from diffusers import LTXVideoTransformer3DModel as TorchTransformer

from ltx_jax import TRANSFORMER_PRESETS, LTXVideoTransformer3DModel, TransformerConfig
from ltx_jax.models import abstract_params, count_params
from weight_conversion import load_transformer

TOL_FP32 = 1e-5  # max |ours - ref| / max |ref|
TOL_BF16 = 2e-2
B, F, H, W, T = 2, 3, 5, 4, 9  # latent frames x height x width = 60 tokens, 9 text tokens
N = F * H * W


def make_inputs(seed: int = 0, per_token_timestep: bool = False):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, N, TINY_TRANSFORMER["in_channels"], generator=gen)
    text = torch.randn(B, T, TINY_TRANSFORMER["caption_channels"], generator=gen)
    mask = torch.zeros(B, T)
    mask[0, :4] = 1  # rows with different numbers of real tokens
    mask[1, :T] = 1
    if per_token_timestep:
        timestep = torch.rand(B, N, generator=gen) * 1000
    else:
        timestep = torch.tensor([250.0, 731.5])
    return hidden, text, timestep, mask


def run_torch(model, hidden, text, timestep, mask, **kw):
    with torch.no_grad():
        return model(hidden, text, timestep, mask, return_dict=False, **kw)[0].numpy()


def run_jax(module, params, hidden, text, timestep, mask, **kw):
    conv = lambda t: None if t is None else jnp.asarray(t.numpy())  # noqa: E731
    kw = {k: (conv(v) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    out = module.apply({"params": params}, conv(hidden), conv(text), conv(timestep), conv(mask), **kw)
    return np.asarray(out)


@pytest.fixture(scope="module")
def loaded(transformer_checkpoints):
    return load_transformer(transformer_checkpoints["diffusers"], dtype=jnp.float32)


CASES = {
    "grid_scale_2b_24fps": dict(
        per_token=False, kw=dict(num_frames=F, height=H, width=W, rope_interpolation_scale=(8 / 24, 32, 32))),
    "grid_scale_25fps_per_token_t": dict(
        per_token=True, kw=dict(num_frames=F, height=H, width=W, rope_interpolation_scale=(8 / 25, 32, 32))),
    "grid_no_scale": dict(per_token=False, kw=dict(num_frames=F, height=H, width=W)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_transformer_parity_fp32(torch_transformer, loaded, case):
    module, params = loaded
    spec = CASES[case]
    hidden, text, timestep, mask = make_inputs(seed=3, per_token_timestep=spec["per_token"])
    ref = run_torch(torch_transformer, hidden, text, timestep, mask, **spec["kw"])
    ours = run_jax(module, params, hidden, text, timestep, mask, **spec["kw"])
    err = rel_err(ours, ref)
    report(f"transformer fp32 {case}", err, TOL_FP32)
    assert ours.shape == ref.shape == (B, N, TINY_TRANSFORMER["out_channels"])
    assert err <= TOL_FP32


def test_transformer_parity_video_coords(torch_transformer, loaded):
    module, params = loaded
    hidden, text, timestep, mask = make_inputs(seed=4, per_token_timestep=True)
    gen = torch.Generator().manual_seed(5)
    # As the condition pipeline builds them: frame index scaled by the VAE's 8x, pixel rows/columns by 32x,
    # plus a fractional offset so nothing lines up with a grid by accident.
    f, h, w = torch.meshgrid(torch.arange(F), torch.arange(H), torch.arange(W), indexing="ij")
    coords = torch.stack([f.flatten() * 8 / 25.0, h.flatten() * 32.0, w.flatten() * 32.0])[None].repeat(B, 1, 1)
    coords = coords + torch.rand(B, 3, N, generator=gen) * 3
    ref = run_torch(torch_transformer, hidden, text, timestep, mask, video_coords=coords)
    ours = run_jax(module, params, hidden, text, timestep, mask, video_coords=coords)
    err = rel_err(ours, ref)
    report("transformer fp32 video_coords, per-token t", err, TOL_FP32)
    assert err <= TOL_FP32


def test_transformer_no_mask_and_all_padded_row(torch_transformer, loaded):
    """A row with no valid text token behaves as diffusers' -10000 bias does (a uniform shift: no masking)."""
    module, params = loaded
    hidden, text, timestep, _ = make_inputs(seed=6)
    mask = torch.ones(B, T)
    mask[1] = 0
    kw = dict(num_frames=F, height=H, width=W, rope_interpolation_scale=(8 / 25, 32, 32))
    unmasked = run_jax(module, params, hidden, text, timestep, None, **kw)
    ref = run_torch(torch_transformer, hidden, text, timestep, torch.ones(B, T), **kw)
    err_unmasked = rel_err(unmasked, ref)
    ours = run_jax(module, params, hidden, text, timestep, mask, **kw)
    err_all_padded = rel_err(ours, ref)  # row 1 fully padded = attend to all; row 0 fully valid
    report("transformer fp32 mask=None", err_unmasked, TOL_FP32)
    report("transformer fp32 fully padded text row", err_all_padded, TOL_FP32)
    assert err_unmasked <= TOL_FP32 and err_all_padded <= TOL_FP32


def test_transformer_bf16_against_fp32(transformer_checkpoints, loaded):
    module32, params32 = loaded
    module16, params16 = load_transformer(transformer_checkpoints["diffusers"], dtype=jnp.bfloat16)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(params16))
    hidden, text, timestep, mask = make_inputs(seed=7)
    kw = dict(num_frames=F, height=H, width=W, rope_interpolation_scale=(8 / 25, 32, 32))
    out32 = run_jax(module32, params32, hidden, text, timestep, mask, **kw)
    out16 = run_jax(module16, params16, hidden, text, timestep, mask, **kw)
    assert out16.dtype == jnp.bfloat16
    err = rel_err(out16.astype(np.float32), out32)
    report("transformer bf16 vs fp32", err, TOL_BF16)
    assert err <= TOL_BF16


def test_jit_and_remat_match_eager(loaded):
    module, params = loaded
    hidden, text, timestep, mask = make_inputs(seed=8)
    args = [jnp.asarray(t.numpy()) for t in (hidden, text, timestep, mask)]
    eager = module.apply({"params": params}, *args, num_frames=F, height=H, width=W)
    remat = module.clone(remat=True)
    fn = jax.jit(lambda p, *a: remat.apply({"params": p}, *a, num_frames=F, height=H, width=W))
    np.testing.assert_allclose(np.asarray(fn(params, *args)), np.asarray(eager), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["ltx-video-2b", "ltx-video-13b"])
def test_full_size_param_count_matches_diffusers(preset):
    config = TRANSFORMER_PRESETS[preset]
    abstract = abstract_params(LTXVideoTransformer3DModel(config, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16))
    ours = count_params(abstract)
    with torch.device("meta"):
        ref_model = TorchTransformer(**{k: v for k, v in config.to_dict().items() if k != "_class_name"})
    ref = sum(p.numel() for p in ref_model.parameters())
    print(f"\n[{preset}] params ours {ours:,} diffusers {ref:,}")
    assert ours == ref
    assert abstract["transformer_blocks"]["attn1"]["to_q"]["kernel"].shape == (config.num_layers, config.inner_dim,
                                                                               config.inner_dim)


def test_config_roundtrip_and_errors(torch_transformer):
    config = TransformerConfig.from_dict(dict(torch_transformer.config))
    assert config == TransformerConfig(**TINY_TRANSFORMER)
    assert TransformerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown config keys"):
        TransformerConfig.from_dict({"num_layers": 2, "not_a_field": 1})
    with pytest.raises(ValueError, match="qk_norm"):
        TransformerConfig(qk_norm="layer_norm")


def test_input_errors(loaded):
    module, params = loaded
    hidden, text, timestep, mask = (jnp.asarray(t.numpy()) for t in make_inputs())
    with pytest.raises(ValueError, match="num_frames \\* height \\* width"):
        module.apply({"params": params}, hidden, text, timestep, mask, num_frames=F, height=H, width=W + 1)
    with pytest.raises(ValueError, match="video_coords"):
        module.apply({"params": params}, hidden, text, timestep, mask)
    with pytest.raises(ValueError, match="encoder_attention_mask"):
        module.apply({"params": params}, hidden, text, timestep, mask[:, :3], num_frames=F, height=H, width=W)
    with pytest.raises(ValueError, match="timestep"):
        module.apply({"params": params}, hidden, text, jnp.zeros((B, 7)), mask, num_frames=F, height=H, width=W)
    left_padded = jnp.asarray([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * T])
    cudnn = module.clone(attention_implementation="cudnn")
    with pytest.raises(ValueError, match="right-padded"):
        cudnn.apply({"params": params}, hidden, text, timestep, left_padded, num_frames=F, height=H, width=W)

"""Gemma 3 / Gemma 4 text encoders (LTX-2's prompt encoders) against transformers, their loading and their configs.

References are tiny random ``Gemma3ForConditionalGeneration`` / ``Gemma4UnifiedForConditionalGeneration`` models
built here, saved with ``save_pretrained`` and run as diffusers' ``LTX2Pipeline._get_gemma_prompt_embeds`` runs its
text encoder (left-padded ids, the tokenizer's mask, ``output_hidden_states=True``, the hidden states stacked on a last
axis). Nothing is downloaded. The tokenizer is not exercised: the pipeline uses transformers' ``AutoTokenizer`` from
its ``tokenizer/`` folder with ``padding_side="left"`` (``ltx_jax.models.gemma``'s docstring), and a Gemma tokenizer
cannot be built offline.
"""

from __future__ import annotations

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import rel_err, report
from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextModel, Gemma4UnifiedConfig,
                          Gemma4UnifiedForConditionalGeneration, Gemma4UnifiedTextModel)
from transformers import Gemma3TextConfig as TorchGemma3TextConfig
from transformers import Gemma4UnifiedTextConfig as TorchGemma4TextConfig

from ltx_jax.configs_gemma import GEMMA_PRESETS, Gemma3TextConfig, Gemma4TextConfig, gemma_text_config_from_dict
from ltx_jax.models import abstract_params, count_params
from ltx_jax.models.gemma import GemmaTextEncoder, pack_hidden_states
from weight_conversion import CheckpointError
from weight_conversion.gemma import load_gemma_text_encoder, save_gemma_text_encoder_orbax

TOL_FP32 = 1e-5  # max |ours - ref| / max |ref|, per hidden state
BF16_RATIO = 1.5  # ours in bf16 vs transformers fp32, over transformers bf16 vs fp32 (measured 1.04, 1.29)
INT8_RATIO = 2.0  # int8 layer kernels (per output channel) vs fp32, over the same (measured 1.20)
B, T = 2, 11
LENGTHS = (11, 6)  # the second prompt is left-padded with 5 pad tokens
GEMMA_VERSION = "ltx-test-finetune"

# Odd sizes; a sliding window (4) shorter than the prompts; global and local layers alternating, so the 4 layers scan
# as 2 periods of (sliding, full).
TINY_GEMMA3_TEXT = dict(
    vocab_size=99, hidden_size=36, intermediate_size=50, num_hidden_layers=4, num_attention_heads=3,
    num_key_value_heads=1, head_dim=12, query_pre_attn_scalar=10, sliding_window=4, sliding_window_pattern=2,
    rope_theta=1000.0, rope_local_base_freq=100.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
    rms_norm_eps=1e-6, pad_token_id=0,
)
TINY_SIGLIP = dict(model_type="siglip_vision_model", hidden_size=8, intermediate_size=10, num_hidden_layers=1,
                   num_attention_heads=2, image_size=14, patch_size=7)
# Gemma 4 unified: sliding layers 4 heads x 12 over 2 key heads, full layers 4 heads x 16 over one key head that is
# also the value (k_eq_v), a quarter of it rotated (proportional RoPE).
TINY_GEMMA4_TEXT = dict(
    vocab_size=99, hidden_size=36, intermediate_size=50, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, head_dim=12, global_head_dim=16, num_global_key_value_heads=1, attention_k_eq_v=True,
    sliding_window=4, layer_types=["sliding_attention", "full_attention"] * 2, rms_norm_eps=1e-6, pad_token_id=0,
    rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                     "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                        "rope_theta": 1000.0}},
)


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Moves every weight off its initial value (norm weights and layer scalars too)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * (0.1 if "norm" in name else 0.05))
        for name, buf in model.named_buffers():
            if name.endswith("layer_scalar"):
                buf.add_(torch.randn(buf.shape, generator=gen) * 0.1)
    return model.eval()


def make_batch(vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded ids and mask as the Gemma tokenizer gives them (pad id 0 before each prompt)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((B, T), np.int64)
    mask = np.zeros((B, T), np.int64)
    for row, n in enumerate(LENGTHS):
        ids[row, T - n:] = rng.integers(1, vocab, n)
        mask[row, T - n:] = 1
    return ids, mask


def diffusers_hidden_states(model, ids, mask) -> np.ndarray:
    """What ``LTX2Pipeline._get_gemma_prompt_embeds`` computes before flattening: [B, T, D, L+1]."""
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True)
    return torch.stack(out.hidden_states, dim=-1).float().numpy()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{"gemma3": folder, "gemma4": folder}: the tiny models saved as a pipeline's text_encoder/ (Gemma 3 sharded)."""
    root = tmp_path_factory.mktemp("gemma")
    torch.manual_seed(0)
    g3 = Gemma3ForConditionalGeneration(Gemma3Config(text_config=TINY_GEMMA3_TEXT, vision_config=TINY_SIGLIP,
                                                     mm_tokens_per_image=4))
    randomize_(g3, 1).save_pretrained(root / "gemma3", max_shard_size="40KB")
    torch.manual_seed(0)
    g4 = Gemma4UnifiedForConditionalGeneration(Gemma4UnifiedConfig(text_config=TINY_GEMMA4_TEXT))
    g4.config.gemma_version = GEMMA_VERSION  # what Lightricks' fine-tuned root declares
    randomize_(g4, 2).save_pretrained(root / "gemma4")
    return {"gemma3": str(root / "gemma3"), "gemma4": str(root / "gemma4")}


@pytest.fixture(scope="module")
def references(folders):
    """Each folder loaded back by transformers (as the pipeline loads it: default attention) and run on the batch."""
    classes = {"gemma3": Gemma3ForConditionalGeneration, "gemma4": Gemma4UnifiedForConditionalGeneration}
    out = {}
    for name, folder in folders.items():
        model = classes[name].from_pretrained(folder, dtype=torch.float32)
        ids, mask = make_batch(model.config.get_text_config().vocab_size)
        out[name] = (ids, mask, diffusers_hidden_states(model, ids, mask))
    return out


@pytest.fixture(scope="module")
def loaded(folders):
    return {name: load_gemma_text_encoder(folder) for name, folder in folders.items()}


@functools.lru_cache(maxsize=None)
def _compiled(module):
    return jax.jit(module.apply)  # one per distinct module (modules are hashable by value): equal ones reuse it


def _run(module, params, ids, mask):
    return np.asarray(_compiled(module)({"params": params}, jnp.asarray(ids, jnp.int32), jnp.asarray(mask)))


@pytest.mark.parametrize("name", ["gemma3", "gemma4"])
def test_hidden_states_match_transformers(name, folders, references, loaded):
    ids, mask, ref = references[name]
    module, params = loaded[name]
    ours = _run(module, params, ids, mask)
    layers = module.config.num_hidden_layers
    assert ours.shape == ref.shape == (B, T, module.config.hidden_size, layers + 1)
    per_layer = [rel_err(ours[..., i], ref[..., i]) for i in range(layers + 1)]
    valid = mask.astype(bool)
    per_layer_valid = [rel_err(ours[..., i][valid], ref[..., i][valid]) for i in range(layers + 1)]
    print(f"\n[{name}] per hidden state max|ours-ref|/max|ref|: all tokens {np.array(per_layer)}, "
          f"real tokens {np.array(per_layer_valid)}")
    report(f"{name} hidden states (worst of {layers + 1}, left-padded batch) vs transformers", max(per_layer), TOL_FP32)
    assert max(per_layer) <= TOL_FP32
    # diffusers' packing: flatten(2, 3)
    np.testing.assert_array_equal(np.asarray(pack_hidden_states(jnp.asarray(ours))), ours.reshape(B, T, -1))
    # The mask matters: the padded prompt alone (no padding, shifted positions) gives its real tokens' states too.
    n = LENGTHS[1]
    alone = _run(module, params, ids[1:, T - n:], mask[1:, T - n:])
    err = rel_err(alone[0], ours[1, T - n:])
    assert err <= TOL_FP32, err


def test_configs_read_both_transformers_forms(folders, loaded):
    config3 = loaded["gemma3"][0].config
    assert config3.layer_types == ("sliding_attention", "full_attention") * 2
    assert config3.rope_parameters.full_attention.factor == 8.0
    # transformers 5's dump (rope_parameters, layer_types) and the 4.x form of the same model read alike.
    assert Gemma3TextConfig.from_dict({"model_type": "gemma3_text", **TINY_GEMMA3_TEXT}) == config3
    assert Gemma3TextConfig.from_dict(TorchGemma3TextConfig(**config3.to_dict()).to_dict()) == config3
    config4 = loaded["gemma4"][0].config
    assert config4.full_kv_heads == 1 and config4.layer_head_dim("full_attention") == 16
    assert Gemma4TextConfig.from_dict(TorchGemma4TextConfig(**config4.to_dict()).to_dict()) == config4
    with pytest.raises(ValueError, match=r"unknown config keys \['rotary_dim'\]"):
        Gemma3TextConfig.from_dict({**TINY_GEMMA3_TEXT, "rotary_dim": 8})
    with pytest.raises(ValueError, match="num_kv_shared_layers=2 is not supported"):
        Gemma4TextConfig.from_dict({**TINY_GEMMA4_TEXT, "num_kv_shared_layers": 2})
    with pytest.raises(ValueError, match="use_bidirectional_attention=True is not supported"):
        Gemma3TextConfig.from_dict({**TINY_GEMMA3_TEXT, "use_bidirectional_attention": True})
    with pytest.raises(ValueError, match="not a Gemma text encoder"):
        gemma_text_config_from_dict({"model_type": "t5"})


def test_layouts_and_refusals(folders, loaded, references, tmp_path):
    ids, mask, _ = references["gemma3"]
    module, params = loaded["gemma3"]
    reference = _run(module, params, ids, mask)
    assert any(f.endswith(".index.json") for f in os.listdir(folders["gemma3"]))  # sharded, vision keys skipped
    root = tmp_path / "pipeline"
    shutil.copytree(folders["gemma3"], root / "text_encoder")
    orbax = tmp_path / "orbax"
    save_gemma_text_encoder_orbax(module, params, orbax)
    for layout in (root, orbax):
        m, p = load_gemma_text_encoder(layout)
        assert m.config == module.config
        np.testing.assert_array_equal(_run(m, p, ids, mask), reference, err_msg=str(layout))

    # A stock Gemma 4 (no gemma_version), a wrong version, the dense Gemma 4: refused before any tensor is read.
    stock = tmp_path / "stock"
    shutil.copytree(folders["gemma4"], stock)
    config = json.loads((stock / "config.json").read_text())
    assert config.pop("gemma_version") == GEMMA_VERSION
    (stock / "config.json").write_text(json.dumps({**config, "_name_or_path": "google/gemma-4-12B-it"}))
    with pytest.raises(CheckpointError, match=r"a stock Gemma 4 \(google/gemma-4-12B.*google/gemma-4-12B-it\)"):
        load_gemma_text_encoder(stock)
    with pytest.raises(CheckpointError, match="Gemma version mismatch"):
        load_gemma_text_encoder(folders["gemma4"], expected_gemma_version="ltx-other")
    (stock / "config.json").write_text(json.dumps({**config, "model_type": "gemma4"}))
    with pytest.raises(CheckpointError, match="LTX-2.5's prompt enhancer, not its text encoder"):
        load_gemma_text_encoder(stock)


@pytest.mark.parametrize("name", ["gemma4"])  # the larger family; Gemma 3 shares every layer it uses
def test_bf16_and_int8_loads(name, folders, references):
    """bf16 params and matmuls (the GPU setting), and int8 layer kernels quantized while loading, against the float32
    reference, measured as a ratio to transformers' own bf16 error (tiny random models are badly conditioned: bf16
    moves transformers' deepest hidden state by a few percent). Our float32 residual stream keeps bf16 at or below
    transformers' error."""
    ids, mask, ref = references[name]
    classes = {"gemma3": Gemma3ForConditionalGeneration, "gemma4": Gemma4UnifiedForConditionalGeneration}
    theirs = diffusers_hidden_states(classes[name].from_pretrained(folders[name], dtype=torch.bfloat16), ids, mask)

    def worst(x):
        return max(rel_err(x[..., i].astype(np.float32), ref[..., i]) for i in range(ref.shape[-1]))

    baseline = worst(theirs)
    errors = {}
    formats = {"bf16": dict(dtype=jnp.bfloat16)}
    if name == "gemma4":  # one family is enough for the int8 path (the same rules fill kernel and kernel_scale)
        formats["int8"] = dict(weights="int8")
    for label, kwargs in formats.items():
        module, params = load_gemma_text_encoder(folders[name], **kwargs)
        errors[label] = worst(_run(module, params, ids, mask).astype(np.float32))
    print(f"\n[{name}] worst hidden state vs transformers fp32: transformers bf16 {baseline:.2e}, ours "
          + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    limits = {"bf16": BF16_RATIO, "int8": INT8_RATIO}
    for label, error in errors.items():
        report(f"{name} {label} error / transformers' bf16 error", error / baseline, limits[label])
        assert error <= limits[label] * baseline, (label, error, baseline)


def test_full_size_param_counts_match_transformers():
    """Gemma 3 12B's and Gemma 4 12B's text models: our eval_shape against transformers on the meta device."""
    for name, torch_cls, config_cls in (("gemma-3-12b", Gemma3TextModel, TorchGemma3TextConfig),
                                        ("gemma-4-12b", Gemma4UnifiedTextModel, TorchGemma4TextConfig)):
        config = GEMMA_PRESETS[name]
        with torch.device("meta"):
            theirs = torch_cls(config_cls(**config.to_dict()))
        expected = sum(p.numel() for p in theirs.parameters()) + sum(
            b.numel() for n, b in theirs.named_buffers() if n.endswith("layer_scalar"))
        ours = count_params(abstract_params(GemmaTextEncoder(config, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)))
        print(f"\n[{name}] text model params: ours {ours:,}, transformers {expected:,}")
        assert ours == expected

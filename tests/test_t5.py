"""T5 encoder parity with transformers' T5EncoderModel, its loading, and prompt encoding against diffusers' LTX
pipelines.

Every reference is computed here from transformers / diffusers on tiny random models and a tiny sentencepiece
tokenizer trained in the test; nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tracemalloc
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import rel_err, report
from safetensors.torch import load_file, save_file
from transformers import T5Config as TorchT5Config
from transformers import T5EncoderModel as TorchT5EncoderModel
from transformers.models.t5.modeling_t5 import T5Attention as TorchT5Attention

from ltx_jax.configs import T5Config
from ltx_jax.models import abstract_params, count_params
from ltx_jax.models.t5 import T5EncoderModel, relative_position_buckets
from ltx_jax.releases import T5_PRESETS
from ltx_jax.text_encoding import PromptEncoder, _encode, encode_prompt, load_tokenizer, tokenize
from weight_conversion import CheckpointError
from weight_conversion.t5 import load_text_encoder, save_text_encoder_orbax

TOL_FP32 = 1e-5  # max |ours - ref| / max |ref|
TOL_BF16 = 2e-2  # ours in bf16 against transformers in fp32

# Odd sizes on purpose. The gated config has few buckets and a short max distance, so that a 37-token sequence
# runs through the exact, log-spaced and saturated bucket ranges; the relu config keeps transformers' defaults.
TINY_T5 = {
    "gated-gelu": dict(vocab_size=83, d_model=40, d_kv=6, d_ff=57, num_layers=3, num_heads=5,
                       relative_attention_num_buckets=12, relative_attention_max_distance=24,
                       feed_forward_proj="gated-gelu"),
    "relu": dict(vocab_size=83, d_model=36, d_kv=7, d_ff=45, num_layers=2, num_heads=3, feed_forward_proj="relu"),
}
B, T = 3, 37
VALID_TOKENS = (T, 20, 1)  # per row: a full row, a padded row, a row with a single real token

# Sentences the tiny tokenizer is trained on (and prompts drawn from the same words, plus unseen characters).
CORPUS = [
    "A red fox jumps over the lazy dog in a snowy forest.",
    "The camera slowly pans across a city skyline at sunset.",
    "A woman with long brown hair walks along the beach, waves crashing.",
    "Close-up of a cat's face, its green eyes blinking in soft light.",
]
PROMPTS = [
    "A red fox walks along the beach at sunset.",
    "",
    "Zebras & quokkas 🦘 dance (unseen characters)",
    " ".join(CORPUS),  # longer than the short max_sequence_length below: truncated
]


def randomize_t5_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Moves every weight off its initial value, keeping transformers' init scales.

    Norm weights (initialised to one) get 0.1 noise, the already random matrices 0.02: noise much larger than
    the init of q (std (d_model * d_kv) ** -0.5) makes attention so sharp that bf16 rounding of any weight moves
    the output by several percent, in transformers as in ours, and the bf16 test would measure the model's
    conditioning instead of our precision.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * (0.1 if "layer_norm" in name else 0.02))
    return model.eval()


@pytest.fixture(scope="module")
def torch_t5() -> dict[str, TorchT5EncoderModel]:
    models = {}
    for i, (name, cfg) in enumerate(sorted(TINY_T5.items())):
        torch.manual_seed(10 + i)
        models[name] = randomize_t5_(TorchT5EncoderModel(TorchT5Config(**cfg)), seed=20 + i)
    return models


@pytest.fixture(scope="module")
def t5_folders(torch_t5, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("t5")
    folders = {}
    for name, model in torch_t5.items():
        folders[name] = str(root / name)
        model.save_pretrained(folders[name])
    return folders


@pytest.fixture(scope="module")
def loaded(t5_folders):
    return {name: load_text_encoder(folder) for name, folder in t5_folders.items()}


def make_batch(vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids, right-padded with the pad id 0 as a tokenizer pads, and the matching mask."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (B, T), generator=gen)
    mask = torch.zeros(B, T, dtype=torch.long)
    for row, valid in enumerate(VALID_TOKENS):
        mask[row, :valid] = 1
        ids[row, valid - 1] = 1  # </s>
    return ids * mask, mask


def run_torch(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state.float().numpy()


def run_jax(module, params, ids, mask):
    mask = None if mask is None else jnp.asarray(mask.numpy())
    return np.asarray(module.apply({"params": params}, jnp.asarray(ids.numpy()), mask).astype(jnp.float32))


# ------------------------------------------------------------------------------------------------- the model


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (12, 24), (8, 13), (16, 64)])
def test_relative_position_buckets_match_transformers(num_buckets, max_distance):
    n = 600  # distances up to 599: exact, log-spaced and saturated ranges on both sides
    relative = torch.arange(n)[None, :] - torch.arange(n)[:, None]
    ref = TorchT5Attention._relative_position_bucket(relative, True, num_buckets, max_distance).numpy()
    ours = relative_position_buckets(n, n, num_buckets, max_distance)
    mismatches = int(np.sum(ours != ref))
    print(f"\n[t5 buckets {num_buckets}/{max_distance}] mismatches over {n}x{n} pairs: {mismatches}")
    assert mismatches == 0


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("name", sorted(TINY_T5))
def test_t5_parity_fp32(torch_t5, loaded, name, masked):
    module, params = loaded[name]
    ids, mask = make_batch(TINY_T5[name]["vocab_size"], seed=1)
    ref = run_torch(torch_t5[name], ids, mask if masked else None)
    ours = run_jax(module, params, ids, mask if masked else None)
    err = rel_err(ours, ref)
    print(f"\n[t5 fp32 {name} {'masked' if masked else 'unmasked'}] max|ours-ref|/max|ref| = {err:.3e} "
          f"(tol {TOL_FP32:.0e})")
    report(f"t5 fp32 {name} {'masked' if masked else 'unmasked'}", err, TOL_FP32)
    assert ours.shape == ref.shape == (B, T, TINY_T5[name]["d_model"])
    assert err <= TOL_FP32


@pytest.mark.parametrize("name", sorted(TINY_T5))
def test_t5_parity_bf16(torch_t5, t5_folders, name):
    module, params = load_text_encoder(t5_folders[name], dtype=jnp.bfloat16)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.bfloat16)}
    ids, mask = make_batch(TINY_T5[name]["vocab_size"], seed=2)
    ref = run_torch(torch_t5[name], ids, mask)
    out = module.apply({"params": params}, jnp.asarray(ids.numpy()), jnp.asarray(mask.numpy()))
    assert out.dtype == jnp.bfloat16
    err = rel_err(np.asarray(out.astype(jnp.float32)), ref)
    # For scale: transformers' own bf16 model against its fp32 one (not asserted).
    torch_bf16 = TorchT5EncoderModel.from_pretrained(t5_folders[name], dtype=torch.bfloat16).eval()
    torch_err = rel_err(run_torch(torch_bf16, ids, mask), ref)
    print(f"\n[t5 bf16 {name}] ours bf16 vs transformers fp32: {err:.3e} (tol {TOL_BF16:.0e}); "
          f"transformers bf16 vs fp32: {torch_err:.3e}")
    report(f"t5 bf16 {name} vs transformers fp32", err, TOL_BF16)
    assert err <= TOL_BF16


def test_xxl_parameter_count_matches_transformers():
    config = T5_PRESETS["t5-v1_1-xxl"]
    ours = count_params(abstract_params(T5EncoderModel(config)))
    with torch.device("meta"):  # shapes only, no memory
        reference = TorchT5EncoderModel(TorchT5Config(**config.to_dict()))
    expected = sum(p.numel() for p in reference.parameters())  # the tied embedding counted once
    print(f"\n[t5 xxl] params: ours {ours:,}, transformers {expected:,}")
    assert ours == expected


# ------------------------------------------------------------------------------------------------- the config


# The released text_encoder/config.json of Lightricks/LTX-Video (T5 v1.1 XXL, written by transformers 4.x).
LTX_TEXT_ENCODER_CONFIG = {
    "_name_or_path": "google/t5-v1_1-xxl", "architectures": ["T5EncoderModel"], "classifier_dropout": 0.0,
    "d_ff": 10240, "d_kv": 64, "d_model": 4096, "decoder_start_token_id": 0, "dense_act_fn": "gelu_new",
    "dropout_rate": 0.1, "eos_token_id": 1, "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0,
    "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "t5",
    "num_decoder_layers": 24, "num_heads": 64, "num_layers": 24, "output_past": True, "pad_token_id": 0,
    "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32, "tie_word_embeddings": False,
    "torch_dtype": "float32", "transformers_version": "4.42.0.dev0", "use_cache": True, "vocab_size": 32128,
}


def test_t5_config_reads_transformers_configs(t5_folders, tmp_path):
    assert T5Config.from_dict(LTX_TEXT_ENCODER_CONFIG) == T5_PRESETS["t5-v1_1-xxl"]
    for name, folder in t5_folders.items():
        config = T5Config.from_json(os.path.join(folder, "config.json"))
        assert config == T5Config(**TINY_T5[name])
        # to_dict round-trips through transformers' own config class.
        theirs = TorchT5Config(**config.to_dict())
        for field in ("d_model", "d_kv", "d_ff", "num_layers", "num_heads", "dense_act_fn", "is_gated_act",
                      "relative_attention_num_buckets", "relative_attention_max_distance", "vocab_size"):
            assert getattr(theirs, field) == getattr(config, field), field
        assert T5Config.from_dict(config.to_dict()) == config
    # transformers lets an explicit dense_act_fn override the one derived from feed_forward_proj; so do we.
    assert T5Config.from_dict({"feed_forward_proj": "gated-gelu", "dense_act_fn": "relu"}).dense_act_fn == \
        TorchT5Config(feed_forward_proj="gated-gelu", dense_act_fn="relu").dense_act_fn == "relu"
    with pytest.raises(ValueError, match=r"unknown config keys \['rotary_dim'\]"):
        T5Config.from_dict({**LTX_TEXT_ENCODER_CONFIG, "rotary_dim": 8})
    with pytest.raises(ValueError, match="umt5"):
        T5Config.from_dict({**LTX_TEXT_ENCODER_CONFIG, "model_type": "umt5"})
    with pytest.raises(ValueError, match="is_decoder"):
        T5Config.from_dict({**LTX_TEXT_ENCODER_CONFIG, "is_decoder": True})
    with pytest.raises(ValueError, match="not supported"):
        T5Config(feed_forward_proj="gated-mish")


# ------------------------------------------------------------------------------------------------- loading


def _forward(module, params, seed=3):
    ids, mask = make_batch(module.config.vocab_size, seed)
    return run_jax(module, params, ids, mask)


def _rewrite(src: str, dst, edit) -> str:
    """A copy of a text_encoder folder with its (single) safetensors file edited."""
    shutil.copytree(src, dst)
    weights = os.path.join(dst, "model.safetensors")
    state = load_file(weights)
    edit(state)
    save_file(state, weights)
    return str(dst)


def test_layouts_give_identical_outputs(torch_t5, t5_folders, loaded, tmp_path):
    name = "gated-gelu"
    module, params = loaded[name]
    reference = _forward(module, params)
    sharded = tmp_path / "sharded"
    torch_t5[name].save_pretrained(sharded, max_shard_size="10KB")
    assert (sharded / "model.safetensors.index.json").exists()
    root = tmp_path / "pipeline"
    shutil.copytree(t5_folders[name], root / "text_encoder")
    (root / "model_index.json").write_text("{}")
    shared = load_file(os.path.join(t5_folders[name], "model.safetensors"))["shared.weight"]
    both = _rewrite(t5_folders[name], tmp_path / "both",
                    lambda s: s.update({"encoder.embed_tokens.weight": shared.clone()}))
    tied_only = _rewrite(t5_folders[name], tmp_path / "tied_only",
                         lambda s: s.update({"encoder.embed_tokens.weight": s.pop("shared.weight")}))
    orbax = tmp_path / "orbax"
    save_text_encoder_orbax(module, params, orbax)
    for layout in (sharded, root, both, tied_only, orbax):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # equal tied tables: no warning
            m, p = load_text_encoder(layout)
        assert m.config == module.config
        np.testing.assert_array_equal(_forward(m, p), reference, err_msg=str(layout))
    # bf16 Orbax: written and read back as bf16.
    m16, p16 = load_text_encoder(t5_folders[name], dtype=jnp.bfloat16)
    save_text_encoder_orbax(m16, p16, tmp_path / "orbax16")
    m16b, p16b = load_text_encoder(tmp_path / "orbax16", dtype=jnp.bfloat16)
    assert {x.dtype for x in jax.tree_util.tree_leaves(p16b)} == {jnp.dtype(jnp.bfloat16)}
    np.testing.assert_array_equal(_forward(m16b, p16b), _forward(m16, p16))


def test_tied_tables_that_differ_warn_and_use_shared(t5_folders, loaded, tmp_path):
    module, params = loaded["relu"]
    folder = _rewrite(t5_folders["relu"], tmp_path / "differ",
                      lambda s: s.update({"encoder.embed_tokens.weight": torch.zeros_like(s["shared.weight"])}))
    with pytest.warns(UserWarning, match="encoder.embed_tokens.weight differs from shared.weight"):
        m, p = load_text_encoder(folder)
    np.testing.assert_array_equal(_forward(m, p), _forward(module, params))


def test_decoder_keys_are_refused_unless_asked(t5_folders, loaded, tmp_path):
    module, params = loaded["relu"]
    extra = {"decoder.final_layer_norm.weight": torch.ones(36), "lm_head.weight": torch.zeros(83, 36)}
    folder = _rewrite(t5_folders["relu"], tmp_path / "full_t5", lambda s: s.update(extra))
    with pytest.raises(CheckpointError, match=r"encoder-decoder T5 checkpoint \(2 decoder/LM-head keys"):
        load_text_encoder(folder)
    m, p = load_text_encoder(folder, ignore_decoder=True)
    np.testing.assert_array_equal(_forward(m, p), _forward(module, params))


def test_bad_checkpoints_name_the_problem(t5_folders, tmp_path):
    src = t5_folders["gated-gelu"]
    missing = _rewrite(src, tmp_path / "missing", lambda s: s.pop("encoder.block.2.layer.1.DenseReluDense.wi_1.weight"))
    with pytest.raises(CheckpointError,
                       match=r"missing keys \(1\): \['encoder.block.2.layer.1.DenseReluDense.wi_1.weight'\]"):
        load_text_encoder(missing)
    no_embedding = _rewrite(src, tmp_path / "no_embedding", lambda s: s.pop("shared.weight"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['shared.weight'\]"):
        load_text_encoder(no_embedding)
    extra = _rewrite(src, tmp_path / "extra",
                     lambda s: s.update({"encoder.block.3.layer.0.layer_norm.weight": torch.ones(40)}))
    with pytest.raises(CheckpointError,
                       match=r"unexpected keys \(1\): \['encoder.block.3.layer.0.layer_norm.weight'\]"):
        load_text_encoder(extra)
    shape = _rewrite(src, tmp_path / "shape", lambda s: s.update({"encoder.final_layer_norm.weight": torch.ones(41)}))
    with pytest.raises(CheckpointError,
                       match=r"'encoder.final_layer_norm.weight' has shape \(41,\), but the model expects \(40,\)"):
        load_text_encoder(shape)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_text_encoder(tmp_path / "nowhere")


def test_bf16_load_stays_near_the_bf16_size(tmp_path):
    """Loading a float32 file as bf16 casts tensor by tensor, so host memory stays near the bf16 size of the model.

    tracemalloc sees every numpy allocation of the load: the temporaries, and on CPU the params themselves (XLA's
    CPU client may keep the host buffers it was given). A float32 copy of the model would alone be 2x the bf16 size.
    """
    torch.manual_seed(5)
    model = TorchT5EncoderModel(TorchT5Config(vocab_size=2048, d_model=256, d_kv=32, d_ff=640, num_layers=8,
                                              num_heads=8, feed_forward_proj="gated-gelu")).eval()
    model.save_pretrained(tmp_path / "fp32")
    fp32_bytes = 4 * sum(p.numel() for p in model.parameters())
    tracemalloc.start()
    try:
        _, params = load_text_encoder(tmp_path / "fp32", dtype=jnp.bfloat16)
        jax.block_until_ready(params)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bf16_bytes = fp32_bytes // 2
    print(f"\n[t5 bf16 load] peak host (numpy) allocations {peak / 2**20:.2f} MiB = {peak / bf16_bytes:.2f}x the bf16 "
          f"model ({bf16_bytes / 2**20:.2f} MiB; fp32 {fp32_bytes / 2**20:.2f} MiB); limit 1.5x")
    assert peak < 1.5 * bf16_bytes


# ------------------------------------------------------------------------------------------------- prompts


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory) -> str:
    """A tiny T5 tokenizer folder as LTX-Video ships one: spiece.model + tokenizer_config.json (pad 0, eos 1, unk 2)."""
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("tokenizer")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=model, vocab_size=100, model_type="unigram",
        hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", minloglevel=2,
    )
    (folder / "spiece.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "extra_ids": 3, "model_max_length": 128,
         "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    return str(folder)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_folder):
    tok = load_tokenizer(tokenizer_folder)
    assert (tok.pad_token_id, tok.eos_token_id) == (0, 1) and len(tok) <= TINY_T5["gated-gelu"]["vocab_size"]
    return tok


def diffusers_prompt_encoding(pipeline_cls, torch_model, tokenizer, prompts, max_sequence_length):
    """Runs diffusers' own ``_get_t5_prompt_embeds``; records the ids (and mask) its text encoder is called with."""
    pipe = pipeline_cls(scheduler=None, vae=None, text_encoder=torch_model, tokenizer=tokenizer, transformer=None)
    calls = []
    hook = torch_model.register_forward_pre_hook(lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
    try:
        with torch.no_grad():
            embeds, mask = pipe._get_t5_prompt_embeds(
                prompts, max_sequence_length=max_sequence_length, device="cpu", dtype=torch.float32
            )
    finally:
        hook.remove()
    (args, kwargs), = calls
    ids = kwargs.get("input_ids", args[0] if args else None)
    return ids.numpy(), mask.numpy(), embeds.numpy(), kwargs.get("attention_mask")


@pytest.mark.parametrize("max_sequence_length", [24, 128])
@pytest.mark.parametrize("pipeline", ["LTXPipeline", "LTXConditionPipeline"])
def test_prompt_encoding_matches_diffusers(torch_t5, loaded, tokenizer, pipeline, max_sequence_length):
    import diffusers

    pipeline_cls = getattr(diffusers, pipeline)
    torch_model = torch_t5["gated-gelu"]
    module, params = loaded["gated-gelu"]
    ref_ids, ref_mask, ref_embeds, encoder_mask = diffusers_prompt_encoding(
        pipeline_cls, torch_model, tokenizer, PROMPTS, max_sequence_length
    )
    # LTXPipeline runs T5 over the padding unmasked; LTXConditionPipeline masks it.
    mask_encoder_padding = encoder_mask is not None
    assert mask_encoder_padding == (pipeline == "LTXConditionPipeline")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the truncation warning has its own test
        ids, mask = tokenize(tokenizer, PROMPTS, max_sequence_length)
        embeds, jmask = encode_prompt(PROMPTS, tokenizer, module, params, max_sequence_length,
                                      mask_encoder_padding=mask_encoder_padding)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_array_equal(np.asarray(jmask), ref_mask)
    assert ids.shape == (len(PROMPTS), max_sequence_length) and mask.dtype == np.bool_
    err = rel_err(np.asarray(embeds), ref_embeds)
    # The other pipeline's choice gives visibly different embeddings, so the comparison above tells them apart.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other, _ = encode_prompt(PROMPTS, tokenizer, module, params, max_sequence_length,
                                 mask_encoder_padding=not mask_encoder_padding)
    other_err = rel_err(np.asarray(other), ref_embeds)
    print(f"\n[t5 prompts {pipeline} T={max_sequence_length}] ids and mask identical; embeddings "
          f"max|ours-ref|/max|ref| = {err:.3e} (tol {TOL_FP32:.0e}); "
          f"with the other pipeline's masking: {other_err:.2e}")
    report(f"t5 prompt embeddings vs diffusers {pipeline} T={max_sequence_length}", err, TOL_FP32)
    assert err <= TOL_FP32
    assert other_err > 1e-3


def test_prompts_the_tokenizer_cannot_read_warn(tokenizer):
    with pytest.warns(UserWarning, match=r"prompt 0: \d+ of its \d+ tokens are unknown to the T5 tokenizer"):
        tokenize(tokenizer, ["🦊🦊🦊 赤い狐が雪の中を走る 🌲🌲"], 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tokenize(tokenizer, [PROMPTS[0] + " 🦊"], 64)  # one emoji in an English prompt: no warning


def test_truncation_warns_with_the_number_of_dropped_tokens(tokenizer):
    limit = 48
    long_prompt = PROMPTS[-1]
    assert len(tokenizer(PROMPTS[0]).input_ids) < limit
    full = tokenizer(long_prompt).input_ids
    dropped = len(full) - limit
    assert dropped > 0 and full[-1] == 1
    with pytest.warns(UserWarning, match=rf"prompt 1: {dropped} of its {len(full)} tokens are past "
                                         rf"max_sequence_length={limit} and were dropped, from '") as record:
        ids, mask = tokenize(tokenizer, [PROMPTS[0], long_prompt], limit)
    assert len(record) == 1, [str(r.message) for r in record]  # only the long prompt
    assert len(str(record[0].message)) < 400  # the first words of the dropped text, not all of it
    assert ids[1, -1] == 1 and mask[1].all()  # truncated, and still ends with </s>
    np.testing.assert_array_equal(ids[1, :-1], full[: limit - 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tokenize(tokenizer, [PROMPTS[0]], limit)  # fits: no warning
        exact = tokenizer.decode(full[: limit - 1])
        assert len(tokenizer(exact).input_ids) <= limit
        tokenize(tokenizer, exact, limit)


def test_prompt_encoder_from_pipeline_root_and_no_recompile(t5_folders, tokenizer_folder, tmp_path):
    root = tmp_path / "LTX-tiny"
    shutil.copytree(t5_folders["gated-gelu"], root / "text_encoder")
    shutil.copytree(tokenizer_folder, root / "tokenizer")
    encoder = PromptEncoder.from_pretrained(root)
    length = 48  # every prompt but the long one fits
    embeds, mask = encoder.encode_prompt(PROMPTS[:2], max_sequence_length=length)
    assert embeds.shape == (2, length, TINY_T5["gated-gelu"]["d_model"]) and mask.shape == (2, length)
    compiled = _encode._cache_size()
    encoder([PROMPTS[2], PROMPTS[0]], max_sequence_length=length)  # other prompts, same shapes
    embeds3, _ = encoder(PROMPTS[:2], max_sequence_length=length)
    assert _encode._cache_size() == compiled, "a second call with the same shapes recompiled"
    np.testing.assert_array_equal(np.asarray(embeds3), np.asarray(embeds))
    bf16 = PromptEncoder.from_pretrained(root, dtype=jnp.bfloat16)
    embeds16, _ = bf16(PROMPTS[:2], max_sequence_length=length)
    assert embeds16.dtype == jnp.bfloat16
    err = rel_err(np.asarray(embeds16.astype(jnp.float32)), np.asarray(embeds))
    print(f"\n[t5 PromptEncoder] bf16 vs fp32 embeddings: {err:.3e} (tol {TOL_BF16:.0e})")
    assert err <= TOL_BF16

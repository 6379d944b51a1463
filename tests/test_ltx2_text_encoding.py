"""LTX-2's prompt encoding (``ltx_jax.text_encoding_ltx2``) against diffusers' ``LTX2Pipeline.encode_prompt`` and the
connector step of its ``__call__`` (float32, CPU).

A tiny random diffusers-style root is built here, nothing downloaded: ``tokenizer/`` (a word-level ``tokenizers``
tokenizer with a BOS and no pad token, saved as a ``PreTrainedTokenizerFast`` that ``AutoTokenizer`` reads back),
``text_encoder/`` (a random ``Gemma3ForConditionalGeneration``) and ``connectors/`` (a random diffusers
``LTX2TextConnectors``, LTX-2.0-like: one shared projection, registers on the video connector only). diffusers' own
pipeline is built on those three components (the others None) and run as ``__call__`` runs them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import randomize_, rel_err, report
from diffusers import FlowMatchEulerDiscreteScheduler, LTX2Pipeline
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors as TorchConnectors
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration, PreTrainedTokenizerFast

from ltx_jax.text_encoding_ltx2 import (LTX2PromptEncoder, _encode, encode_prompt_ltx2, load_ltx2_tokenizer,
                                        prompt_lists, tokenize_ltx2)
from weight_conversion import CheckpointError

TOLERANCE = 1e-5  # max |ours - diffusers| / max |diffusers|, per output
T = 16  # max_sequence_length
PROMPTS = ["  A red fox runs through the snow at dawn ", "a cat sleeps"]  # 10 and 4 tokens with the BOS
NEGATIVES = ["blurry", "low quality , static frame"]
WORDS = ("a red fox runs through the snow at dawn cat sleeps blurry low quality , static frame on an old wooden "
         "table while rain falls outside").split()

TINY_GEMMA3_TEXT = dict(
    vocab_size=4 + len(WORDS), hidden_size=12, intermediate_size=20, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, head_dim=6, query_pre_attn_scalar=6, sliding_window=4, sliding_window_pattern=2,
    rope_theta=1000.0, rope_local_base_freq=100.0, rms_norm_eps=1e-6, pad_token_id=0,
)
TINY_SIGLIP = dict(model_type="siglip_vision_model", hidden_size=8, intermediate_size=10, num_hidden_layers=1,
                   num_attention_heads=2, image_size=14, patch_size=7)
# caption_channels = Gemma's width, text_proj_in_factor = its L + 1 hidden states.
TINY_CONNECTORS = dict(caption_channels=12, text_proj_in_factor=3, video_connector_num_attention_heads=2,
                       video_connector_attention_head_dim=6, video_connector_num_layers=2,
                       video_connector_num_learnable_registers=4, audio_connector_num_attention_heads=3,
                       audio_connector_attention_head_dim=4, audio_connector_num_layers=1,
                       audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=7,
                       rope_type="split", rope_double_precision=True)


def write_tokenizer(folder: str) -> None:
    """A Gemma-like word-level tokenizer: <pad> 0 unused as pad (no pad token: diffusers pads with EOS), <eos> 1,
    <bos> 2 prepended, <unk> 3."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                            model_max_length=1024, padding_side="left").save_pretrained(folder)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """A diffusers LTX-2 root with tokenizer/, text_encoder/ and connectors/."""
    path = tmp_path_factory.mktemp("ltx2_text")
    write_tokenizer(str(path / "tokenizer"))
    torch.manual_seed(0)
    gemma = Gemma3ForConditionalGeneration(Gemma3Config(text_config=TINY_GEMMA3_TEXT, vision_config=TINY_SIGLIP,
                                                        mm_tokens_per_image=4))
    randomize_(gemma, 1, 0.05).save_pretrained(path / "text_encoder")
    torch.manual_seed(0)
    randomize_(TorchConnectors(**TINY_CONNECTORS), 2).save_pretrained(path / "connectors")
    return str(path)


@pytest.fixture(scope="module")
def pipe(root):
    """diffusers' pipeline with the three text components, loaded as the pipeline loads them."""
    return LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, audio_vae=None, transformer=None, vocoder=None,
        text_encoder=Gemma3ForConditionalGeneration.from_pretrained(f"{root}/text_encoder", dtype=torch.float32),
        tokenizer=AutoTokenizer.from_pretrained(f"{root}/tokenizer"),
        connectors=TorchConnectors.from_pretrained(f"{root}/connectors"))


@pytest.fixture(scope="module")
def encoder(root):
    return LTX2PromptEncoder.from_pretrained(root)


def diffusers_outputs(pipe, prompt, negative_prompt, guidance: bool = True):
    """``encode_prompt``'s four outputs and the connectors' three, as ``__call__`` computes them."""
    with torch.no_grad():
        pe, pm, npe, npm = pipe.encode_prompt(prompt, negative_prompt, do_classifier_free_guidance=guidance,
                                              max_sequence_length=T, device="cpu")
        embeds, mask = (torch.cat([npe, pe]), torch.cat([npm, pm])) if guidance else (pe, pm)
        connected = pipe.connectors(embeds, mask, padding_side=pipe.tokenizer.padding_side)
    return [x if x is None else x.numpy() for x in (pe, pm, npe, npm)], [x.numpy() for x in connected]


def _check_embeds(name: str, ours, ref) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32, (name, ours.shape, ref.shape, ours.dtype)
    err = rel_err(ours, ref)
    report(f"LTX-2 prompt encoding: {name}", err, TOLERANCE)
    assert err <= TOLERANCE, (name, err)


def test_tokenizer_is_set_up_as_diffusers_sets_it(root, pipe):
    tokenizer = load_ltx2_tokenizer(root)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<eos>"
    ids, mask = tokenize_ltx2(tokenizer, PROMPTS, T)
    assert ids.shape == mask.shape == (2, T) and ids.dtype == mask.dtype == np.int32
    np.testing.assert_array_equal(mask.sum(1), [10, 4])
    assert ids[1, -4] == 2 and ids[1, 0] == 1  # BOS first, EOS as the left padding
    pipe.encode_prompt("a cat", do_classifier_free_guidance=False, max_sequence_length=T)  # diffusers' set-up
    ref = pipe.tokenizer([p.strip() for p in PROMPTS], padding="max_length", max_length=T, truncation=True,
                         add_special_tokens=True, return_tensors="np")
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])
    with pytest.warns(UserWarning, match="4 of its 14 tokens are past max_sequence_length=10"):
        tokenize_ltx2(tokenizer, "a red fox runs through the snow at dawn on an old table", 10)


def test_encode_prompt_and_connectors_match_diffusers(pipe, encoder):
    ref_encoded, ref_connected = diffusers_outputs(pipe, PROMPTS, NEGATIVES)
    ours = [np.asarray(x) for x in encoder.encode_prompt(PROMPTS, NEGATIVES, max_sequence_length=T)]
    for name, o, r in zip(("prompt_embeds", "negative_prompt_embeds"), ours[::2], ref_encoded[::2]):
        assert r.shape == (2, T, 12 * 3)
        _check_embeds(name, o, r)
    for o, r in zip(ours[1::2], ref_encoded[1::2]):
        np.testing.assert_array_equal(o, r)
    # the connector step on our encode_prompt outputs, and the fused program straight from the prompts
    stepwise = encoder.connect(*encoder.encode_prompt(PROMPTS, NEGATIVES, max_sequence_length=T))
    fused = encoder(PROMPTS, NEGATIVES, max_sequence_length=T)
    for how, outputs in (("connect", stepwise), ("fused", fused)):
        for name, o, r in zip(("video", "audio"), outputs[:2], ref_connected[:2]):
            assert r.shape[:2] == (4, T)
            _check_embeds(f"{how} {name} text embeds", np.asarray(o), r)
        np.testing.assert_array_equal(np.asarray(outputs[2]), ref_connected[2])


def test_without_guidance_and_one_string_prompt(pipe, encoder):
    ref_encoded, ref_connected = diffusers_outputs(pipe, PROMPTS[0], None, guidance=False)
    pe, pm, npe, npm = encoder.encode_prompt(PROMPTS[0], do_classifier_free_guidance=False, max_sequence_length=T)
    assert npe is None and npm is None and ref_encoded[2] is None
    _check_embeds("one prompt, no guidance", np.asarray(pe), ref_encoded[0])
    video, audio, mask = encoder(PROMPTS[0], do_classifier_free_guidance=False, max_sequence_length=T)
    _check_embeds("one prompt, no guidance: video", np.asarray(video), ref_connected[0])
    # a default negative prompt is "" (just the BOS), repeated for every prompt
    neg = encode_prompt_ltx2(PROMPTS, encoder.tokenizer, encoder.gemma, encoder.gemma_params,
                             max_sequence_length=T)[3]
    np.testing.assert_array_equal(np.asarray(neg).sum(1), [1, 1])


def test_num_videos_per_prompt_repeats_each_prompt(encoder):
    """Rows b n .. b n + n - 1 are prompt b, masks included (diffusers tiles its masks instead: module docstring);
    one compiled program per shape: a second call with the same shapes does not compile again."""
    pe, pm, npe, npm = encoder.encode_prompt(PROMPTS, NEGATIVES, num_videos_per_prompt=2, max_sequence_length=T)
    one = encoder.encode_prompt(PROMPTS, NEGATIVES, max_sequence_length=T)
    compiled = _encode._cache_size()
    encoder.encode_prompt(PROMPTS[::-1], NEGATIVES, max_sequence_length=T)
    assert _encode._cache_size() == compiled
    for ours, single in zip((pe, pm, npe, npm), one):
        np.testing.assert_allclose(np.asarray(ours), np.repeat(np.asarray(single), 2, axis=0), rtol=0, atol=1e-6)


def test_prompt_errors_are_diffusers_errors(tmp_path):
    with pytest.raises(ValueError, match="negative_prompt has 1 prompts but prompt has 2"):
        prompt_lists(PROMPTS, ["blurry"], True)
    with pytest.raises(TypeError, match="negative_prompt should be a string or a list"):
        prompt_lists(PROMPTS, ("a", "b"), True)
    assert prompt_lists(PROMPTS, ["x", "y"], False) == (PROMPTS, None)
    (tmp_path / "text_encoder").mkdir()
    with pytest.raises(CheckpointError, match="has no tokenizer/ folder beside its text_encoder/"):
        load_ltx2_tokenizer(tmp_path)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="has neither tokenizer.json nor tokenizer.model"):
        load_ltx2_tokenizer(tmp_path)
    (tmp_path / "tokenizer" / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="tokenizer.json is unreadable"):
        load_ltx2_tokenizer(tmp_path)

"""Prompts -> T5 embeddings and mask, tokenized exactly as diffusers' LTX-Video pipelines tokenize them.

    >>> encoder = PromptEncoder.from_pretrained("LTX-Video", dtype=jnp.bfloat16)   # tokenizer/ + text_encoder/
    >>> embeds, mask = encoder.encode_prompt(["a red fox in the snow"])           # [1, 128, 4096] bf16, [1, 128] bool

What diffusers does (``LTXPipeline._get_t5_prompt_embeds``), and so what we do:
  * tokenize with ``padding="max_length"``, ``max_length=max_sequence_length``, ``truncation=True``,
    ``add_special_tokens=True``: every prompt becomes exactly ``max_sequence_length`` ids, right-padded with the pad
    id (0), ending in the end-of-sequence token (1) even when truncated; the mask is True on the real tokens;
  * a prompt longer than the limit loses its tail (diffusers logs the dropped text; we warn with the count too);
  * ``LTXPipeline`` and ``LTXImageToVideoPipeline`` run the text encoder WITHOUT the mask (padding tokens are
    attended to); ``LTXConditionPipeline`` passes the mask. ``mask_encoder_padding`` picks between the two.
The mask is returned in both cases: the transformer's cross-attention uses it.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.models import as_variables
from ltx_jax.models.t5 import T5EncoderModel
from ltx_jax.programs import Program
from weight_conversion.safetensors_io import CheckpointError
from weight_conversion.t5 import load_text_encoder

DEFAULT_MAX_SEQUENCE_LENGTH = 128


def load_tokenizer(path: str | os.PathLike):
    """The T5 tokenizer of a diffusers pipeline root (``tokenizer/`` inside it) or of a tokenizer folder.

    Loaded with transformers' ``AutoTokenizer`` from local files only (a folder with ``spiece.model`` or
    ``tokenizer.json`` and ``tokenizer_config.json``); nothing is downloaded. The folder and its files are checked
    first, so a missing or unreadable one is named (``check_tokenizer_folder``).
    """
    from transformers import AutoTokenizer  # deferred: transformers loads only when a tokenizer is read

    folder = check_tokenizer_folder(path)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Cannot load the tokenizer in {folder}: {str(e).strip().splitlines()[0]}") from e


def check_tokenizer_folder(path: str | os.PathLike, vocab_files: tuple[str, str] = ("tokenizer.json", "spiece.model")
                           ) -> str:
    """The tokenizer folder of ``path`` (its ``tokenizer/``, or ``path`` itself), with the files transformers will
    read checked: one of ``vocab_files`` (T5: ``tokenizer.json`` or ``spiece.model``; Gemma: ``tokenizer.model`` or
    ``tokenizer.json``; a sentencepiece model is parsed when it is the one used), ``tokenizer_config.json`` and the
    other JSON files. A CheckpointError names a missing or unreadable file."""
    path = os.fspath(path)
    folder = os.path.join(path, "tokenizer")
    if not os.path.isdir(folder):
        if os.path.isdir(os.path.join(path, "text_encoder")) or os.path.isfile(os.path.join(path, "model_index.json")):
            raise CheckpointError(f"{path} has no tokenizer/ folder beside its text_encoder/; copy the release's "
                                  f"tokenizer/ ({vocab_files[-1]}, tokenizer_config.json) into it.")
        folder = path
    if not os.path.isdir(folder):
        raise CheckpointError(f"Tokenizer folder {folder} does not exist; "
                              "pass a pipeline root or its tokenizer/ folder.")
    files = set(os.listdir(folder))
    if not files & set(vocab_files):
        raise CheckpointError(f"Tokenizer folder {folder} has neither {vocab_files[1]} nor {vocab_files[0]}; copy "
                              "the release's tokenizer/ folder.")
    if not files & {"tokenizer_config.json", "config.json"}:
        raise CheckpointError(f"Tokenizer folder {folder} has no tokenizer_config.json; copy the release's tokenizer/ "
                              "folder.")
    for name in sorted(files & {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                "added_tokens.json"}):
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{os.path.join(folder, name)} is unreadable ({e}); download it again.") from None
    if "tokenizer.json" not in files:  # transformers builds the fast tokenizer from the sentencepiece model
        _check_sentencepiece(os.path.join(folder, next(f for f in vocab_files if f in files)))
    return folder


def _check_sentencepiece(file: str) -> None:
    """A CheckpointError unless ``file`` is a sentencepiece model (sentencepiece reads it; it is needed for it)."""
    try:
        import sentencepiece  # deferred: sentencepiece is optional (only spiece.model tokenizers need it)
    except ImportError:
        raise CheckpointError(f"{file} is a sentencepiece model and sentencepiece is not installed: pip install "
                              "sentencepiece.") from None
    try:
        with open(file, "rb") as f:
            data = f.read()
        sentencepiece.SentencePieceProcessor().LoadFromSerializedProto(data)
    except OSError as e:
        raise CheckpointError(f"{file} is unreadable ({e}).") from None
    except RuntimeError:  # sentencepiece's parse error (its C++ source line) says nothing more
        raise CheckpointError(f"{file} is unreadable: its {len(data)} bytes are not a sentencepiece model; download "
                              "it again.") from None


def _as_list(prompts: str | Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        return [prompts]
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a string or a non-empty list of strings, got {prompts!r}.")
    return prompts


QUOTED_WORDS = 6  # how much of the dropped text a truncation warning quotes
UNKNOWN_SHARE = 0.5  # warn when more of a prompt's tokens than this are unknown to the tokenizer


def _warn_about_prompts(tokenizer, prompts: list[str], max_sequence_length: int) -> None:
    """Warns, once per prompt, about text that will not reach the model: tokens past ``max_sequence_length``
    (diffusers logs the dropped text; we count it and quote its first words) and text the tokenizer cannot
    represent (T5's vocabulary has no emoji and almost no CJK: they become the unknown token)."""
    full = tokenizer(prompts, add_special_tokens=True, verbose=False)["input_ids"]  # untruncated
    unknown = getattr(tokenizer, "unk_token_id", None)
    special = set(getattr(tokenizer, "all_special_ids", ())) - {unknown}
    for i, ids in enumerate(full):
        dropped = len(ids) - max_sequence_length  # ids end with </s>, which truncation keeps
        if dropped > 0:
            words = tokenizer.decode(ids[max_sequence_length - 1 : -1]).split()
            quote = " ".join(words[:QUOTED_WORDS]) + (" ..." if len(words) > QUOTED_WORDS else "")
            warnings.warn(f"prompt {i}: {dropped} of its {len(ids)} tokens are past max_sequence_length="
                          f"{max_sequence_length} and were dropped, from {quote!r}; shorten the prompt or raise "
                          "max_sequence_length.", UserWarning, stacklevel=4)
        pieces = tokenizer.convert_ids_to_tokens([t for t in ids if t not in special])
        text = [p for p in pieces if p.strip("\u2581 ")]  # not the bare word-boundary piece
        unknowns = sum(p == tokenizer.unk_token for p in text)
        if unknown is not None and text and unknowns / len(text) > UNKNOWN_SHARE:
            warnings.warn(f"prompt {i}: {unknowns} of its {len(text)} tokens are unknown to the T5 tokenizer (emoji, "
                          "CJK and other scripts outside its vocabulary); the model sees almost nothing of it. "
                          "Write the prompt in English.", UserWarning, stacklevel=4)


def tokenize(
    tokenizer, prompts: str | Sequence[str], max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask as diffusers' LTX pipelines make them.

    Returns:
      input_ids [B, max_sequence_length] int32 and mask [B, max_sequence_length] bool (True on real tokens).
    """
    prompts = _as_list(prompts)
    inputs = tokenizer(
        prompts,
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="np",
    )
    _warn_about_prompts(tokenizer, prompts, max_sequence_length)
    return inputs["input_ids"].astype(np.int32), inputs["attention_mask"].astype(bool)


def _encode_program(module: T5EncoderModel, params, input_ids, mask, mask_encoder_padding: bool):
    return module.apply(as_variables(params), input_ids, mask if mask_encoder_padding else None)


_encode = Program(_encode_program, "text encoding", static=("module", "mask_encoder_padding"), params=("params",))


def encode_prompt(
    prompts: str | Sequence[str],
    tokenizer,
    module: T5EncoderModel,
    params,
    max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH,
    *,
    mask_encoder_padding: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Prompt embeddings and mask, as diffusers' ``LTXPipeline.encode_prompt`` computes them for one prompt list.

    Args:
      prompts: a prompt or a list of B prompts.
      tokenizer: the pipeline's T5 tokenizer (``load_tokenizer``).
      module, params: the T5 encoder (``weight_conversion.load_text_encoder``).
      max_sequence_length: every prompt is padded or truncated to this many tokens (diffusers' default 128).
      mask_encoder_padding: False runs the encoder over padding unmasked, as ``LTXPipeline`` and
        ``LTXImageToVideoPipeline`` do; True masks it, as ``LTXConditionPipeline`` does.
    Returns:
      embeddings [B, T, D] in the module's dtype and mask [B, T] bool, T = max_sequence_length. The encoder is
      jit-compiled once per (module, B, T); later calls with the same shapes reuse the compiled code.
    """
    input_ids, mask = tokenize(tokenizer, prompts, max_sequence_length)
    embeddings = _encode(module, params, jnp.asarray(input_ids), jnp.asarray(mask), mask_encoder_padding)
    return embeddings, jnp.asarray(mask)


class PromptEncoder:
    """A tokenizer and a T5 encoder with its params: ``encode_prompt(prompts) -> (embeddings, mask)``.

    The forward pass is jit-compiled and cached per (batch size, sequence length): a second call with the same
    shapes does not recompile.
    """

    def __init__(self, tokenizer, module: T5EncoderModel, params: Any, *, mask_encoder_padding: bool = False):
        self.tokenizer = tokenizer
        self.module = module
        self.params = params
        self.mask_encoder_padding = mask_encoder_padding

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, dtype: Any = jnp.float32, *, mask_encoder_padding: bool = False
    ) -> "PromptEncoder":
        """From a diffusers pipeline root holding ``tokenizer/`` and ``text_encoder/`` (safetensors or Orbax)."""
        path = os.fspath(path)
        module, params = load_text_encoder(os.path.join(path, "text_encoder"), dtype)
        return cls(load_tokenizer(path), module, params, mask_encoder_padding=mask_encoder_padding)

    def tokenize(
        self, prompts: str | Sequence[str], max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
    ) -> tuple[np.ndarray, np.ndarray]:
        """input_ids [B, T] int32 and mask [B, T] bool, as diffusers' pipelines tokenize."""
        return tokenize(self.tokenizer, prompts, max_sequence_length)

    def encode_prompt(
        self, prompts: str | Sequence[str], max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
    ) -> tuple[jax.Array, jax.Array]:
        """embeddings [B, T, D] in the module's dtype and mask [B, T] bool (see the module-level ``encode_prompt``)."""
        return encode_prompt(
            prompts, self.tokenizer, self.module, self.params, max_sequence_length,
            mask_encoder_padding=self.mask_encoder_padding,
        )

    __call__ = encode_prompt

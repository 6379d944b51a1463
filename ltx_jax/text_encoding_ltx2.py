"""LTX-2's prompts -> Gemma's packed hidden states (diffusers' ``LTX2Pipeline.encode_prompt``) -> the connectors' video
and audio text embeddings (the step of ``LTX2Pipeline.__call__`` that feeds the transformer).

    >>> encoder = LTX2PromptEncoder.from_pretrained("LTX-2", dtype=jnp.bfloat16)  # tokenizer/ text_encoder/ connectors/
    >>> video, audio, mask = encoder(["a red fox in the snow"], negative_prompt="blurry")  # CFG: [negative, positive]
    >>> video.shape, audio.shape, mask.shape      # [2, 1024, D_video], [2, 1024, D_audio], [2, 1024] int32 (all ones)

What diffusers 0.42.1 does, and so what we do:
  * the tokenizer (transformers' ``AutoTokenizer`` from ``tokenizer/``) gets ``padding_side = "left"`` and, when it
    has no pad token, ``pad_token = eos_token``; each prompt is ``strip()`` ped and tokenized with
    ``padding="max_length"``, ``max_length=max_sequence_length`` (1024), ``truncation=True``,
    ``add_special_tokens=True`` (Gemma's BOS first; a long prompt loses its tail: we warn with the count);
  * ``_get_gemma_prompt_embeds``: Gemma runs with that mask, its L + 1 hidden states are stacked on a last axis and
    flattened -> ``prompt_embeds`` [B n, T, D (L+1)] in the pipeline's dtype (the text encoder's unless given) and
    ``prompt_attention_mask`` [B n, T] (the tokenizer's 0 / 1 mask, torch int64; ours int32), n =
    ``num_videos_per_prompt``;
  * ``encode_prompt``: with classifier-free guidance the negative prompt (``""`` when None; a string is repeated for
    every prompt; a list must be a list as long as ``prompt``: TypeError / ValueError otherwise) is encoded the same
    way, else ``negative_prompt_embeds`` and its mask are None;
  * ``__call__``: with guidance, ``cat([negative, positive])`` of embeds and masks, then
    ``connectors(prompt_embeds, prompt_attention_mask, padding_side=tokenizer.padding_side)`` -> (video [2B n, T,
    D_video], audio [2B n, T, A], mask [2B n, T]), what the transformer cross-attends to.

One divergence: diffusers repeats the embeds per prompt (``p0 p0 p1 p1`` for n = 2) but tiles the mask
(``p0 p1 p0 p1``), so for several prompts of different lengths and n > 1 its masks belong to other rows. We repeat
both per prompt (rows ``b n .. b n + n - 1`` are prompt b); for n = 1 or one prompt the two agree exactly.

Every encoding is one jit-compiled program per (modules, batch, padded length, n): Gemma (and the connectors) on
the whole [negative; positive] batch, the repeats inside; only the tokenizer runs on the host.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.models import as_variables
from ltx_jax.models.gemma import GemmaTextEncoder, pack_hidden_states
from ltx_jax.models.ltx2.connectors import LTX2TextConnectors
from ltx_jax.programs import Program
from ltx_jax.text_encoding import check_tokenizer_folder
from weight_conversion.gemma import load_gemma_text_encoder
from weight_conversion.ltx2_connectors import load_text_connectors
from weight_conversion.safetensors_io import CheckpointError

DEFAULT_MAX_SEQUENCE_LENGTH = 1024  # diffusers' LTX2Pipeline default
PADDING_SIDE = "left"  # diffusers sets it on the tokenizer; the connectors' LTX-2.0 normalisation reads it
QUOTED_WORDS = 6  # how much of the dropped text a truncation warning quotes


# ------------------------------------------------------------------------------------------------- tokenizer


def load_ltx2_tokenizer(path: str | os.PathLike):
    """The Gemma tokenizer of an LTX-2 pipeline root (``tokenizer/``) or of a tokenizer folder, set up as diffusers'
    ``_get_gemma_prompt_embeds`` sets it: ``padding_side = "left"``, ``pad_token = eos_token`` when it has none.
    Local files only (``AutoTokenizer.from_pretrained(..., local_files_only=True)``)."""
    from transformers import AutoTokenizer  # deferred: transformers loads only when a tokenizer is read

    folder = check_tokenizer_folder(path, ("tokenizer.model", "tokenizer.json"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Cannot load the tokenizer in {folder}: {str(e).strip().splitlines()[0]}") from e
    return prepare_tokenizer(tokenizer)


def prepare_tokenizer(tokenizer):
    """diffusers' settings, in place: left padding, the EOS token as pad token when there is none. Returns it."""
    tokenizer.padding_side = PADDING_SIDE
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CheckpointError("The tokenizer has neither a pad token nor an end-of-sequence token to pad with.")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _as_list(prompts: str | Sequence[str], what: str = "prompt") -> list[str]:
    if isinstance(prompts, str):
        return [prompts]
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{what} must be a string or a non-empty list of strings, got {prompts!r}.")
    return prompts


def tokenize_ltx2(tokenizer, prompts: str | Sequence[str], max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask as ``_get_gemma_prompt_embeds`` makes them (stripped prompts, left padding, truncation).

    Returns:
      input_ids [B, max_sequence_length] int32 and attention_mask [B, max_sequence_length] int32 (1 on tokens).
    """
    prompts = [p.strip() for p in _as_list(prompts)]
    prepare_tokenizer(tokenizer)
    inputs = tokenizer(prompts, padding="max_length", max_length=max_sequence_length, truncation=True,
                       add_special_tokens=True, return_tensors="np")
    full = tokenizer(prompts, add_special_tokens=True, verbose=False)["input_ids"]  # untruncated
    for i, ids in enumerate(full):
        if len(ids) > max_sequence_length:
            words = tokenizer.decode(ids[max_sequence_length:]).split()
            quote = " ".join(words[:QUOTED_WORDS]) + (" ..." if len(words) > QUOTED_WORDS else "")
            warnings.warn(f"prompt {i}: {len(ids) - max_sequence_length} of its {len(ids)} tokens are past "
                          f"max_sequence_length={max_sequence_length} and were dropped, from {quote!r}; shorten the "
                          "prompt or raise max_sequence_length.", UserWarning, stacklevel=3)
    return inputs["input_ids"].astype(np.int32), inputs["attention_mask"].astype(np.int32)


def prompt_lists(prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None,
                 do_classifier_free_guidance: bool) -> tuple[list[str], list[str] | None]:
    """(prompts, negative prompts or None) as ``encode_prompt`` forms them, with its TypeError / ValueError."""
    prompts = _as_list(prompt)
    if not do_classifier_free_guidance:
        return prompts, None
    negative = negative_prompt or ""
    if isinstance(negative, str):
        return prompts, [negative] * len(prompts)
    if not isinstance(negative, list):
        raise TypeError(f"negative_prompt should be a string or a list like prompt, got {type(negative).__name__}.")
    if len(negative) != len(prompts):
        raise ValueError(f"negative_prompt has {len(negative)} prompts but prompt has {len(prompts)}; pass one "
                         "negative prompt per prompt (or a single string).")
    return prompts, _as_list(negative, "negative_prompt")


# ------------------------------------------------------------------------------------------------- programs


def _encode_program(gemma: GemmaTextEncoder, gemma_params, connectors: LTX2TextConnectors | None, connector_params,
                    input_ids, attention_mask, repeats: int, dtype):
    """ids [B, T], mask [B, T] -> packed embeds [B n, T, D (L+1)] in ``dtype`` and mask [B n, T] (connectors None),
    or the connectors' (video [B n, T, D_v], audio [B n, T, A], mask [B n, T] int32)."""
    hidden = gemma.apply(as_variables(gemma_params), input_ids, attention_mask)  # [B, T, D, L+1]
    hidden = jnp.repeat(hidden.astype(dtype), repeats, axis=0)
    mask = jnp.repeat(attention_mask, repeats, axis=0)
    if connectors is None:
        return pack_hidden_states(hidden), mask
    return connectors.apply(as_variables(connector_params), hidden, mask, PADDING_SIDE)


def _connect_program(connectors: LTX2TextConnectors, connector_params, prompt_embeds, attention_mask):
    """packed embeds [B, T, D (L+1)], mask [B, T] -> (video [B, T, D_v], audio [B, T, A], mask [B, T] int32)."""
    return connectors.apply(as_variables(connector_params), prompt_embeds, attention_mask, PADDING_SIDE)


_encode = Program(_encode_program, "text encoding", static=("gemma", "connectors", "repeats", "dtype"),
                  params=("gemma_params", "connector_params"))
_connect = Program(_connect_program, "text connectors", static=("connectors",), params=("connector_params",))


def _check_repeats(num_videos_per_prompt: int) -> int:
    if not isinstance(num_videos_per_prompt, (int, np.integer)) or num_videos_per_prompt < 1:
        raise ValueError(f"num_videos_per_prompt must be a positive integer, got {num_videos_per_prompt!r}.")
    return int(num_videos_per_prompt)


def _tokenize_batch(tokenizer, prompts: list[str], negatives: list[str] | None, max_sequence_length: int):
    """ids and mask [B or 2B, T] int32: [negative; positive] when there are negatives (the order of ``__call__``)."""
    ids, mask = tokenize_ltx2(tokenizer, prompts, max_sequence_length)
    if negatives is None:
        return ids, mask
    neg_ids, neg_mask = tokenize_ltx2(tokenizer, negatives, max_sequence_length)
    return np.concatenate([neg_ids, ids]), np.concatenate([neg_mask, mask])


def encode_prompt_ltx2(
    prompt: str | Sequence[str],
    tokenizer,
    gemma: GemmaTextEncoder,
    gemma_params,
    negative_prompt: str | Sequence[str] | None = None,
    do_classifier_free_guidance: bool = True,
    num_videos_per_prompt: int = 1,
    max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH,
    dtype: Any = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None, jax.Array | None]:
    """diffusers' ``LTX2Pipeline.encode_prompt`` (module docstring).

    Args:
      prompt: a prompt or B prompts; negative_prompt: None (""), one string, or B strings (used with guidance).
      tokenizer: ``load_ltx2_tokenizer``'s; gemma, gemma_params: ``weight_conversion.gemma.load_gemma_text_encoder``.
      num_videos_per_prompt: n, each prompt's rows repeated n times (adjacent).
      max_sequence_length: T, every prompt padded (left) or truncated to it.
      dtype: the embeds' dtype (diffusers' ``dtype``); None: Gemma's.
    Returns:
      ``(prompt_embeds [B n, T, D (L+1)], prompt_attention_mask [B n, T] int32, negative_prompt_embeds,
      negative_prompt_attention_mask)``, the negative pair of the same shapes, or None without guidance. Positive
      and negative prompts go through Gemma as one batch of one compiled program.
    """
    prompts, negatives = prompt_lists(prompt, negative_prompt, do_classifier_free_guidance)
    repeats = _check_repeats(num_videos_per_prompt)
    ids, mask = _tokenize_batch(tokenizer, prompts, negatives, max_sequence_length)
    dtype = jnp.dtype(dtype or gemma.dtype)
    embeds, masks = _encode(gemma, gemma_params, None, None, jnp.asarray(ids), jnp.asarray(mask), repeats, dtype)
    if negatives is None:
        return embeds, masks, None, None
    rows = len(prompts) * repeats  # [negative; positive]
    return embeds[rows:], masks[rows:], embeds[:rows], masks[:rows]


def connect_prompt_embeds(
    connectors: LTX2TextConnectors,
    connector_params,
    prompt_embeds: jax.Array,
    prompt_attention_mask: jax.Array,
    negative_prompt_embeds: jax.Array | None = None,
    negative_prompt_attention_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The connector step of ``LTX2Pipeline.__call__`` on ``encode_prompt``'s outputs: with negatives (guidance),
    ``cat([negative, positive])`` first, then the connectors with left padding.

    Args:
      prompt_embeds: [B, T, D (L+1)]; prompt_attention_mask: [B, T] 0 / 1; the negatives of the same shapes or None.
    Returns:
      ``(video [B', T, D_video], audio [B', T, A], mask [B', T] int32)``, B' = 2B with negatives (negative rows first)
      else B: the transformer's ``encoder_hidden_states``, ``audio_encoder_hidden_states`` and their mask.
    """
    if (negative_prompt_embeds is None) != (negative_prompt_attention_mask is None):
        raise ValueError("Pass negative_prompt_embeds and negative_prompt_attention_mask together, or neither.")
    if negative_prompt_embeds is not None:
        if negative_prompt_embeds.shape != prompt_embeds.shape:
            raise ValueError(f"negative_prompt_embeds has shape {tuple(negative_prompt_embeds.shape)} but "
                             f"prompt_embeds {tuple(prompt_embeds.shape)}; they must match.")
        prompt_embeds = jnp.concatenate([negative_prompt_embeds, prompt_embeds])
        prompt_attention_mask = jnp.concatenate([jnp.asarray(negative_prompt_attention_mask),
                                                 jnp.asarray(prompt_attention_mask)])
    return _connect(connectors, connector_params, prompt_embeds, jnp.asarray(prompt_attention_mask))


class LTX2PromptEncoder:
    """A Gemma tokenizer, Gemma and the connectors with their params.

    ``encode_prompt`` returns diffusers' four ``encode_prompt`` outputs; calling the encoder returns the
    transformer's text inputs (video, audio, mask) straight from the prompts, Gemma and the connectors in one
    compiled program per (batch, T, n).
    """

    def __init__(self, tokenizer, gemma: GemmaTextEncoder, gemma_params: Any, connectors: LTX2TextConnectors,
                 connector_params: Any):
        self.tokenizer = prepare_tokenizer(tokenizer)
        self.gemma, self.gemma_params = gemma, gemma_params
        self.connectors, self.connector_params = connectors, connector_params
        cfg = connectors.config
        if (cfg.caption_channels, cfg.text_proj_in_factor) != (gemma.config.hidden_size,
                                                               gemma.config.num_hidden_layers + 1):
            raise CheckpointError(
                f"The connectors take {cfg.text_proj_in_factor} hidden states of width {cfg.caption_channels} but the "
                f"text encoder gives {gemma.config.num_hidden_layers + 1} of width {gemma.config.hidden_size}; the "
                "text_encoder/ and connectors/ are from different releases.")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: Any = jnp.float32, **gemma_kwargs) -> "LTX2PromptEncoder":
        """From a diffusers LTX-2 root holding ``tokenizer/``, ``text_encoder/`` and ``connectors/``; ``gemma_kwargs``
        go to ``load_gemma_text_encoder`` (``weights``, ``sharding``)."""
        path = os.fspath(path)
        tokenizer = load_ltx2_tokenizer(path)
        gemma, gemma_params = load_gemma_text_encoder(os.path.join(path, "text_encoder"), dtype, **gemma_kwargs)
        connectors, connector_params = load_text_connectors(os.path.join(path, "connectors"), dtype)
        return cls(tokenizer, gemma, gemma_params, connectors, connector_params)

    def encode_prompt(self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None = None,
                      do_classifier_free_guidance: bool = True, num_videos_per_prompt: int = 1,
                      max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH, dtype: Any = None):
        """diffusers' four outputs (``encode_prompt_ltx2``)."""
        return encode_prompt_ltx2(prompt, self.tokenizer, self.gemma, self.gemma_params, negative_prompt,
                                  do_classifier_free_guidance, num_videos_per_prompt, max_sequence_length, dtype)

    def connect(self, prompt_embeds, prompt_attention_mask, negative_prompt_embeds=None,
                negative_prompt_attention_mask=None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The connectors on ``encode_prompt``'s outputs (``connect_prompt_embeds``)."""
        return connect_prompt_embeds(self.connectors, self.connector_params, prompt_embeds, prompt_attention_mask,
                                     negative_prompt_embeds, negative_prompt_attention_mask)

    def __call__(self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None = None,
                 do_classifier_free_guidance: bool = True, num_videos_per_prompt: int = 1,
                 max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH, dtype: Any = None
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Prompts -> ``(video [B', T, D_video], audio [B', T, A], mask [B', T] int32)``, B' = 2 B n with guidance
        (negative rows first) else B n: ``encode_prompt`` then ``connect`` in one program."""
        prompts, negatives = prompt_lists(prompt, negative_prompt, do_classifier_free_guidance)
        repeats = _check_repeats(num_videos_per_prompt)
        ids, mask = _tokenize_batch(self.tokenizer, prompts, negatives, max_sequence_length)
        dtype = jnp.dtype(dtype or self.gemma.dtype)
        return _encode(self.gemma, self.gemma_params, self.connectors, self.connector_params, jnp.asarray(ids),
                       jnp.asarray(mask), repeats, dtype)

"""Loading LTX-2's Gemma text encoder (``GemmaTextEncoder``) from transformers folders and Orbax checkpoints.

A diffusers LTX-2 / 2.3 pipeline's ``text_encoder/`` is a ``Gemma3ForConditionalGeneration`` folder (``config.json``
with ``model_type`` "gemma3" and a ``text_config``; safetensors, sharded with a ``model.safetensors.index.json``);
LTX-2.5's is Lightricks' fine-tuned ``Gemma4UnifiedForConditionalGeneration`` ("gemma4_unified"). The language model's
tensors sit under one prefix, by the writer: ``model.language_model.`` (transformers >= 4.52), ``language_model.model.``
(Google's original files, older transformers), ``model.`` (a ``*ForCausalLM``, ComfyUI's flattened layout) or none (a
bare ``*TextModel``). The vision / audio side (``vision_tower.*``, ``multi_modal_projector.*``, ``embed_vision.*``,
``embed_audio.*``) and the LM head (tied to the embedding) are skipped unread; any other key is an error.

Conversion is a table (``gemma_rules``: one ``mapping.Rule`` per param, layer ``g * P + j`` of the checkpoint feeding
period g of the scanned ``layers/layer_{j}``), checked against the checkpoint's keys and shapes before any tensor is
read (``mapping.convert``).

Gemma 4: ``model_type`` "gemma4" (the dense ``Gemma4ForConditionalGeneration``, e.g. google/gemma-4-E2B-it) is
LTX-2.5's prompt enhancer in diffusers, not its text encoder, and is refused. A "gemma4_unified" config without
``gemma_version`` is Google's stock google/gemma-4-12B(-it), refused as Lightricks' ltx-core refuses it ("Google's
vanilla Gemma 4 model is not interchangeable": its loader checks the Gemma root's ``gemma_version`` against the
checkpoint's ``gemma_source_checkpoint``; pass that as ``expected_gemma_version`` to check it here too).
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp

from ltx_jax.configs import read_json
from ltx_jax.configs_gemma import Gemma3TextConfig, GemmaTextConfig, gemma_text_config_from_dict
from ltx_jax.models import abstract_params, layers
from ltx_jax.models.gemma import GemmaTextEncoder, layer_period
from weight_conversion import orbax_io, quantize
from weight_conversion.common import component_folder, placement, restore_orbax
from weight_conversion.mapping import IDENTITY, LINEAR, Path, Rule, convert, flatten
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors

COMPONENT = "text_encoder"  # the pipeline's folder
ORBAX_COMPONENT = "gemma_text_encoder"  # the Orbax marker's component (a T5 text encoder is another one)
# Where the language model's tensors sit, tried in this order (by the key of its embedding).
LANGUAGE_MODEL_PREFIXES = ("model.language_model.", "language_model.model.", "model.", "")
# Tensors of the multimodal wrapper that the text model never reads.
NON_TEXT_PREFIXES = ("vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector.",
                     "model.embed_vision.", "model.embed_audio.", "model.vision_embedder.", "vision_model.",
                     "audio_projector.")
LM_HEAD_KEYS = ("lm_head.weight", "language_model.lm_head.weight", "model.lm_head.weight")  # tied to the embedding
STOCK_GEMMA4 = "google/gemma-4-12B / google/gemma-4-12B-it"


def torch_key(path: Path, prefix: str, layer: int | None = None) -> str:
    """Flax param path -> transformers state-dict key; a scanned param's ``layer`` is the checkpoint's layer index."""
    if path == ("embed_tokens", "embedding"):
        return prefix + "embed_tokens.weight"
    if path[0] == "layers":
        rest = [{"kernel": "weight"}.get(name, name) for name in path[2:]]
        return f"{prefix}layers.{layer}." + ".".join(rest)
    return prefix + ".".join({"kernel": "weight"}.get(name, name) for name in path)


def gemma_rules(config: GemmaTextConfig, abstract: Any, prefix: str) -> list[Rule]:
    """The conversion table: each param of ``abstract`` (``abstract_params`` of the module) with its torch key(s).

    ``layers/layer_{j}/...`` [L/P, ...] stacks the checkpoint's layers j, P + j, 2P + j, ... (P: the period of
    ``layer_types``); a ``kernel`` is a transposed torch Linear weight, everything else is taken as stored. A
    quantized kernel's ``kernel_scale`` is filled with it (``scale_target``).
    """
    period = len(layer_period(config.layer_types))
    groups = config.num_hidden_layers // period
    flat = flatten(abstract)
    rules = []
    for path in sorted(flat):
        if path[-1] == quantize.SCALE_LEAF and path[:-1] + ("kernel",) in flat:
            continue
        scale = path[:-1] + (quantize.SCALE_LEAF,)
        scale = scale if path[-1] == "kernel" and scale in flat else None
        transform = LINEAR if path[-1] == "kernel" else IDENTITY
        if path[0] == "layers":
            j = int(path[1][len("layer_"):])
            sources = tuple(torch_key(path, prefix, g * period + j) for g in range(groups))
            rules.append(Rule(path, sources, transform, stacked=True, scale_target=scale))
        else:
            rules.append(Rule(path, (torch_key(path, prefix),), transform, scale_target=scale))
    return rules


def language_model_prefix(source: TensorSource, folder: str) -> str:
    """The prefix of the language model's keys in ``source`` (the first of ``LANGUAGE_MODEL_PREFIXES`` whose
    embedding is there)."""
    for prefix in LANGUAGE_MODEL_PREFIXES:
        if prefix + "embed_tokens.weight" in source:
            return prefix
    raise CheckpointError(f"{folder}: no Gemma token embedding (one of "
                          f"{[p + 'embed_tokens.weight' for p in LANGUAGE_MODEL_PREFIXES]}); is this a Gemma text "
                          "encoder checkpoint?")


def check_gemma_family(config: dict, where: str, expected_gemma_version: str | None = None) -> None:
    """Refuses, by name, the Gemma checkpoints that are not LTX-2 text encoders (module docstring)."""
    model_type = config.get("model_type")
    if model_type in ("gemma4", "gemma4_text"):
        raise CheckpointError(
            f"{where}: model_type={model_type!r} is the dense Gemma 4 (e.g. google/gemma-4-E2B-it), LTX-2.5's prompt "
            "enhancer, not its text encoder. LTX-2.5 encodes prompts with Lightricks' fine-tuned Gemma 4 12B "
            "('gemma4_unified'); LTX-2 / 2.3 with Gemma 3 12B ('gemma3').")
    if model_type not in ("gemma4_unified", "gemma4_unified_text"):
        return
    version = config.get("gemma_version")
    if version is None:
        named = config.get("_name_or_path") or "no gemma_version in its config.json"
        raise CheckpointError(
            f"{where}: a stock Gemma 4 ({STOCK_GEMMA4}; {named}). LTX-2.5 was trained on Lightricks' fine-tune of it, "
            "whose config.json declares 'gemma_version'; Google's vanilla Gemma 4 is not interchangeable (ltx-core "
            "refuses it too: 'Gemma version mismatch'). Use the text encoder shipped with the LTX-2.5 checkpoint.")
    if expected_gemma_version is not None and version != expected_gemma_version:
        raise CheckpointError(f"{where}: Gemma version mismatch: the checkpoint's gemma_source_checkpoint expects "
                              f"gemma_version={expected_gemma_version!r}, this Gemma declares {version!r}.")


def read_gemma_config(path: str | os.PathLike, expected_gemma_version: str | None = None) -> GemmaTextConfig:
    """The text config of a ``text_encoder/`` folder (or pipeline root, or Orbax directory), weights unread."""
    path = component_folder(os.fspath(path), COMPONENT)
    if orbax_io.is_orbax_dir(path):
        return gemma_text_config_from_dict(orbax_io.read_marker(path)["config"])
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{folder} has no config.json; pass a Gemma text_encoder folder or config=.")
    raw = read_json(config_path)
    check_gemma_family(raw, config_path, expected_gemma_version)
    try:
        return gemma_text_config_from_dict(raw)
    except ValueError as e:
        raise CheckpointError(f"{config_path}: {e}") from e


def _ignored_keys(source: TensorSource, prefix: str) -> list[str]:
    """The wrapper's non-text tensors and the tied LM head, skipped unread; keys under the language model's prefix
    always count (so that a stray one is reported)."""
    return sorted(k for k in source if not (prefix and k.startswith(prefix))
                  and (k.startswith(NON_TEXT_PREFIXES) or k in LM_HEAD_KEYS))


def load_gemma_text_encoder(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: GemmaTextConfig | None = None,
    weights: str | None = None,
    sharding: Any = None,
    expected_gemma_version: str | None = None,
    **module_kwargs,
) -> tuple[GemmaTextEncoder, dict]:
    """Loads a Gemma 3 / Gemma 4 text encoder.

    Args:
      path: a transformers ``text_encoder/`` folder (``config.json`` + safetensors, sharded or not), a pipeline root
        holding one, or an Orbax directory written by ``save_gemma_text_encoder_orbax``.
      dtype: dtype of the params and of the module's matmuls (``jnp.bfloat16`` on GPU); each tensor is cast alone as
        it is read.
      config: overrides the config read from the checkpoint.
      weights: storage of the layers' linear kernels: None (``dtype``), "int8" or "fp8", quantized per output channel
        on the host as each layer is read (Gemma 3 12B: 23.5 GB in bf16, ~12.8 GB with int8 layers). For an Orbax
        directory None means the weights it was saved with.
      sharding: an ``ltx_jax.sharding.ShardingPlan``: each tensor goes from the file straight onto its shards.
      expected_gemma_version: the ``gemma_version`` an LTX-2.5 checkpoint's ``gemma_source_checkpoint`` names; a
        Gemma 4 declaring another one is refused.
      module_kwargs: other ``GemmaTextEncoder`` fields (``precision``, ``remat``).
    Returns:
      ``(module, params)``; run ``module.apply({"params": params}, input_ids, attention_mask)`` -> [B, T, D, L+1].
    """
    layers.check_weights(weights)
    path = component_folder(os.fspath(path), COMPONENT)
    dtype = jnp.dtype(dtype)

    def make(c):
        return GemmaTextEncoder(c, dtype=dtype, param_dtype=dtype, weights=weights, sharding=sharding, **module_kwargs)

    if orbax_io.is_orbax_dir(path):
        weights = orbax_io.resolve_weights(path, weights)
        config = config or read_gemma_config(path)
        return restore_orbax(path, ORBAX_COMPONENT, Gemma3TextConfig, config, make, sharding)
    if not os.path.exists(path):
        raise CheckpointError(f"Text encoder checkpoint {path} does not exist.")
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if config is None:
        config = read_gemma_config(folder, expected_gemma_version)
    elif os.path.exists(os.path.join(folder, "config.json")):  # an override still may not be a refused family
        check_gemma_family(read_json(os.path.join(folder, "config.json")), folder, expected_gemma_version)
    source = open_safetensors(path if not os.path.isdir(path) else folder)
    prefix = language_model_prefix(source, folder)

    module = make(config)
    abstract = abstract_params(module)
    params = convert(
        source, gemma_rules(config, abstract, prefix), abstract, dtype,
        what="Gemma text encoder", source_shape=source.shape, ignore=_ignored_keys(source, prefix),
        placement=placement(sharding, module, abstract),
    )
    return module, params


def save_gemma_text_encoder_orbax(module: GemmaTextEncoder, params: dict, path: str | os.PathLike, *,
                                  overwrite: bool = False) -> None:
    """Writes ``params`` with the module's config and weight format as an Orbax checkpoint that
    ``load_gemma_text_encoder`` reads back (atomically: ``orbax_io.save``)."""
    orbax_io.save(path, ORBAX_COMPONENT, module.config.to_dict(), params, module.param_dtype, weights=module.weights,
                  overwrite=overwrite)

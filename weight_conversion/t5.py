"""Loading the T5 text encoder from transformers ``text_encoder/`` folders and Orbax checkpoints.

A transformers ``T5EncoderModel`` folder holds ``config.json`` and ``model.safetensors`` (or shards named by
``model.safetensors.index.json``). Its keys are ``shared.weight`` (the token embedding), ``encoder.*`` and, in
some files, ``encoder.embed_tokens.weight``, which transformers ties to ``shared.weight``.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from ltx_jax.configs import T5Config
from ltx_jax.models import abstract_params, layers
from ltx_jax.models.t5 import T5EncoderModel
from weight_conversion import orbax_io
from weight_conversion.common import (component_folder, first_layers, folder_config, fuse_after_restore, placement,
                                      restore_orbax)
from weight_conversion.lora import loading_delta
from weight_conversion.mapping import IDENTITY, LINEAR, KernelDelta, Path, Rule, convert, rules_from_tree
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors

COMPONENT = "text_encoder"
SHARED_KEY = "shared.weight"
TIED_EMBED_KEY = "encoder.embed_tokens.weight"
RELATIVE_BIAS_KEY = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
BLOCK_KEY = r"encoder\.block\.(\d+)\."  # a block's keys, the block index as group 1
# Keys of a full encoder-decoder T5 (T5ForConditionalGeneration / T5Model) that the encoder never uses.
DECODER_PREFIXES = ("decoder.", "lm_head.")


def torch_key(path: Path, embed_key: str = SHARED_KEY) -> str:
    """Flax param path -> transformers state-dict key; scanned block params get a ``{i}`` layer slot."""
    if path == ("shared", "embedding"):
        return embed_key
    if path == ("relative_attention_bias",):
        return RELATIVE_BIAS_KEY
    names = []
    for name in path:
        if name.startswith("layer_") and name[len("layer_"):].isdigit():  # layer_0 -> layer.0 (nn.ModuleList)
            names.append("layer." + name[len("layer_"):])
        else:
            names.append({"kernel": "weight"}.get(name, name))
    if path[0] == "block":
        names.insert(1, "{i}")
    return "encoder." + ".".join(names)


def text_encoder_rules(config: T5Config, abstract: Any, embed_key: str = SHARED_KEY) -> list[Rule]:
    def transform_for(path: Path, ndim: int):
        return LINEAR if path[-1] == "kernel" else IDENTITY  # Embedding tables are [rows, features] in both

    return rules_from_tree(abstract, lambda p: torch_key(p, embed_key), transform_for, {"block": config.num_layers})


def _tied_tables_equal(source: TensorSource, rows_per_chunk: int = 4096) -> bool:
    """Compares shared.weight with encoder.embed_tokens.weight chunk by chunk (no full-size temporaries)."""
    a, b = source[SHARED_KEY], source[TIED_EMBED_KEY]
    if a.shape != b.shape:
        return False
    return all(np.array_equal(a[i:i + rows_per_chunk], b[i:i + rows_per_chunk])
               for i in range(0, a.shape[0], rows_per_chunk))


def _embedding_key(source: TensorSource, folder: str) -> tuple[str, list[str]]:
    """Which key holds the token embedding, and the tied duplicate to ignore (compared, with a warning if it
    differs)."""
    has_shared, has_tied = SHARED_KEY in source, TIED_EMBED_KEY in source
    if has_shared and has_tied:
        # transformers ties encoder.embed_tokens to shared after loading, so shared.weight is what it runs.
        if not _tied_tables_equal(source):
            warnings.warn(
                f"{folder}: {TIED_EMBED_KEY} differs from {SHARED_KEY}; using {SHARED_KEY}, as transformers' "
                "T5EncoderModel does (it ties the two).",
                stacklevel=3,
            )
        return SHARED_KEY, [TIED_EMBED_KEY]
    if has_tied:
        return TIED_EMBED_KEY, []
    return SHARED_KEY, []  # missing: convert() names it


def _decoder_keys(source: TensorSource) -> list[str]:
    return sorted(k for k in source if k.startswith(DECODER_PREFIXES))


def load_text_encoder(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: T5Config | None = None,
    ignore_decoder: bool = False,
    weights: str | None = None,
    lora: Sequence[tuple[str | os.PathLike, float]] | None = None,
    sharding: Any = None,
    kernel_delta: KernelDelta | None = None,
    num_layers: int | None = None,
    **module_kwargs,
) -> tuple[T5EncoderModel, dict]:
    """Loads the T5 encoder.

    Args:
      path: a transformers ``text_encoder/`` folder (``config.json`` + safetensors, sharded or not), a pipeline
        root holding one, or an Orbax directory written by ``save_text_encoder_orbax``.
      dtype: dtype of the params and of the module's matmuls (``jnp.bfloat16`` on GPU). Each tensor is cast on
        its own as it is read, so a float32 file loads into bf16 without a float32 copy of the model.
      config: overrides the config read from the checkpoint.
      ignore_decoder: accept a full encoder-decoder T5 checkpoint and skip its ``decoder.*`` / ``lm_head.*`` keys.
        Without it such keys raise: a decoder checkpoint where an encoder is expected is usually a wrong path.
      weights: storage of the encoder blocks' linear kernels: None (``dtype``), "int8" or "fp8", quantized per
        output channel on the host as each layer is read (as ``load_transformer``; T5-XXL's 4.7B params: 9.5 GB
        in bf16, ~4.8 GB in int8). For an Orbax directory None means the weights it was saved with.
      lora: LoRA files with their weights ``[(path, scale), ...]`` whose ``text_encoder.*`` modules are fused into
        the kernels as they are read (before the cast or quantization); files without T5 modules are skipped.
      sharding: an ``ltx_jax.sharding.ShardingPlan``: each tensor goes from the file straight onto its shards.
      kernel_delta: ``mapping.KernelDelta`` added to each float kernel before it is cast or quantized (what
        ``lora`` uses; added to it when both are given).
      num_layers: load only the first ``num_layers`` blocks (an encoder with that many, its final norm included):
        the later blocks' tensors are skipped unread, every other tensor is checked as for the whole encoder.
        Safetensors checkpoints only.
      module_kwargs: extra module fields (``precision``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, input_ids, attention_mask)``.
    """
    layers.check_weights(weights)
    path = component_folder(os.fspath(path), COMPONENT)
    dtype = jnp.dtype(dtype)
    if orbax_io.is_orbax_dir(path):
        if num_layers is not None:
            raise CheckpointError(f"{path} is an Orbax checkpoint: num_layers= reads part of a safetensors checkpoint; "
                                  "load the Orbax checkpoint whole.")
        if kernel_delta is not None:
            raise CheckpointError(f"{path} is an Orbax checkpoint: kernel_delta is fused while converting safetensors; "
                                  "load the safetensors checkpoint instead.")
        weights = orbax_io.resolve_weights(path, weights)
        module, params = restore_orbax(path, COMPONENT, T5Config, config, lambda c: T5EncoderModel(
            c, dtype=dtype, param_dtype=dtype, weights=weights, **module_kwargs), sharding)
        return module, fuse_after_restore(path, COMPONENT, module, params, lora, torch_key,
                                          {"block": module.config.num_layers})

    if not os.path.exists(path):
        raise CheckpointError(f"Text encoder checkpoint {path} does not exist.")
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    config = config or folder_config(folder, T5Config, "transformers text_encoder")
    source = open_safetensors(path if not os.path.isdir(path) else folder)

    ignore = []
    decoder_keys = _decoder_keys(source)
    if decoder_keys:
        if not ignore_decoder:
            raise CheckpointError(
                f"{folder} holds a full encoder-decoder T5 checkpoint ({len(decoder_keys)} decoder/LM-head keys, "
                f"e.g. {decoder_keys[:3]}); ltx_jax loads the encoder. Pass ignore_decoder=True to load only the "
                "encoder from it."
            )
        ignore += decoder_keys  # reason: the encoder never reads them (transformers' T5EncoderModel skips them too)
    embed_key, tied = _embedding_key(source, folder)
    ignore += tied  # reason: transformers ties it to shared.weight and runs that (a mismatch warned above)
    config, later_blocks = first_layers(config, num_layers, source, BLOCK_KEY, "text encoder")
    ignore += later_blocks  # reason: num_layers= asked for the first blocks only

    module = T5EncoderModel(config, dtype=dtype, param_dtype=dtype, weights=weights, **module_kwargs)
    abstract = abstract_params(module)
    kernel_delta = loading_delta(lora, COMPONENT, abstract, torch_key, {"block": config.num_layers}, also=kernel_delta)
    params = convert(
        source, text_encoder_rules(config, abstract, embed_key), abstract, dtype,
        what="text encoder", source_shape=source.shape, ignore=ignore, kernel_delta=kernel_delta,
        placement=placement(sharding, module, abstract),
    )
    return module, params


def save_text_encoder_orbax(module: T5EncoderModel, params: dict, path: str | os.PathLike, *,
                            overwrite: bool = False) -> None:
    """Writes ``params`` and the module's config and weight format as an Orbax checkpoint that
    ``load_text_encoder`` reads back (atomically: ``orbax_io.save``)."""
    orbax_io.save(path, COMPONENT, module.config.to_dict(), params, module.param_dtype, weights=module.weights,
                  overwrite=overwrite)

"""Loading the LTX-Video transformer from diffusers folders, Lightricks single files and Orbax checkpoints."""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import jax.numpy as jnp

from ltx_jax.configs import TransformerConfig
from ltx_jax.configs_ltx2 import LTX2TransformerConfig
from ltx_jax.models import abstract_params, layers
from ltx_jax.models.transformer import LTXVideoTransformer3DModel
from weight_conversion import orbax_io
from weight_conversion.common import (RenamedSource, component_folder, first_layers, folder_config, fuse_after_restore,
                                      placement, read_config, read_single_file_config, restore_orbax)
from weight_conversion.family import LTX2, checkpoint_family
from weight_conversion.lora import loading_delta
from weight_conversion.ltx2_transformer import load_ltx2_transformer, read_ltx2_transformer_config
from weight_conversion.mapping import CONV, IDENTITY, LINEAR, KernelDelta, Path, Rule, convert, rules_from_tree
from weight_conversion.quantize import FP8_E4M3
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors

# Flax module names that differ from the torch module path (everything else maps one to one, "/" -> ".").
_FLAX_TO_TORCH_NAMES = {
    "to_out_0": "to_out.0",
    "net_0_proj": "net.0.proj",
    "net_2": "net.2",
    "timestep_embedder": "emb.timestep_embedder",
}
_PARAM_NAMES = {"kernel": "weight"}

# Lightricks' native names -> diffusers' names (applied as substring replacements, in this order).
NATIVE_PREFIX = "model.diffusion_model."
NATIVE_RENAMES = (
    ("patchify_proj", "proj_in"),
    ("adaln_single", "time_embed"),
    ("q_norm", "norm_q"),
    ("k_norm", "norm_k"),
)
BLOCK_KEY = r"transformer_blocks\.(\d+)\."  # a block's keys (diffusers names), the block index as group 1

def torch_key(path: Path) -> str:
    """Flax param path -> diffusers state-dict key; scanned block params get a ``{i}`` layer slot."""
    names = [_FLAX_TO_TORCH_NAMES.get(p, p) for p in path[:-1]] + [_PARAM_NAMES.get(path[-1], path[-1])]
    if path[0] == "transformer_blocks":
        names.insert(1, "{i}")
    return ".".join(names)


def transformer_rules(config: TransformerConfig, abstract: Any) -> list[Rule]:
    def transform_for(path: Path, ndim: int):
        if path[-1] == "kernel":
            return LINEAR if ndim == 2 else CONV
        return IDENTITY

    return rules_from_tree(abstract, torch_key, transform_for, {"transformer_blocks": config.num_layers})


def native_to_diffusers_key(key: str) -> str:
    """``model.diffusion_model.patchify_proj.weight`` -> ``proj_in.weight`` (Lightricks -> diffusers names)."""
    if key.startswith(NATIVE_PREFIX):
        key = key[len(NATIVE_PREFIX):]
    for old, new in NATIVE_RENAMES:
        key = key.replace(old, new)
    return key


def config_from_native(native: dict) -> TransformerConfig:
    """A Lightricks ``config["transformer"]`` dict -> TransformerConfig (diffusers names)."""
    fields = set(TransformerConfig.__dataclass_fields__)
    kwargs = {k: v for k, v in native.items() if k in fields and k != "qk_norm"}
    if native.get("qk_norm", "rms_norm") not in ("rms_norm", "rms_norm_across_heads"):
        raise CheckpointError(f"Unsupported native qk_norm {native['qk_norm']!r}.")
    theta = native.get("positional_embedding_theta", 10000.0)
    max_pos = list(native.get("positional_embedding_max_pos", [20, 2048, 2048]))
    if float(theta) != 10000.0 or max_pos != [20, 2048, 2048]:
        raise CheckpointError(f"Unsupported RoPE settings theta={theta}, max_pos={max_pos}; "
                              "ltx_jax uses 10000, [20, 2048, 2048].")
    if "attention_head_dim" in kwargs and "num_attention_heads" in kwargs:
        kwargs.setdefault("cross_attention_dim", kwargs["attention_head_dim"] * kwargs["num_attention_heads"])
    return TransformerConfig(**kwargs)


def infer_config(source: TensorSource, keys: dict[str, str]) -> TransformerConfig:
    """Guesses the config from tensor shapes (released checkpoints all use 32 heads)."""
    shape = lambda name: source.shape(keys[name])  # noqa: E731
    try:
        inner, in_channels = shape("proj_in.weight")
        out_channels = shape("proj_out.weight")[0]
        caption_channels = shape("caption_projection.linear_1.weight")[1]
    except KeyError as e:
        raise CheckpointError(f"Cannot infer the transformer config: tensor {e} is missing. Pass config=...") from e
    layers = 1 + max(int(m.group(1)) for k in keys if (m := re.match(r"transformer_blocks\.(\d+)\.", k)))
    heads = 32
    if inner % heads:
        raise CheckpointError(f"Cannot infer heads for width {inner}; "
                              "pass config=TransformerConfig(...) to load_transformer.")
    return TransformerConfig(
        in_channels=in_channels,
        out_channels=out_channels,
        num_attention_heads=heads,
        attention_head_dim=inner // heads,
        cross_attention_dim=inner,
        num_layers=layers,
        caption_channels=caption_channels,
        attention_bias="transformer_blocks.0.attn1.to_q.bias" in keys,
        attention_out_bias="transformer_blocks.0.attn1.to_out.0.bias" in keys,
        norm_elementwise_affine="transformer_blocks.0.norm1.weight" in keys,
    )


def _make_module(config: TransformerConfig, dtype: Any, **module_kwargs) -> LTXVideoTransformer3DModel:
    return LTXVideoTransformer3DModel(config, dtype=dtype, param_dtype=dtype, **module_kwargs)


def _single_file_keys(source: TensorSource) -> dict[str, str]:
    """diffusers name -> key in a single file, for the transformer's tensors only."""
    native = [k for k in source if k.startswith(NATIVE_PREFIX)]
    if native:
        return {native_to_diffusers_key(k): k for k in native}
    other_prefixes = ("vae.", "text_encoders.", "conditioner.", "first_stage_model.")
    return {native_to_diffusers_key(k): k for k in source if not k.startswith(other_prefixes)}


def _single_file_config(source: TensorSource, keys: dict[str, str]) -> TransformerConfig:
    try:
        native = (read_single_file_config(source) or {}).get("transformer")
        return config_from_native(native) if isinstance(native, dict) else infer_config(source, keys)
    except ValueError as e:  # a config out of range, or one that cannot be read: name the file
        raise CheckpointError(f"{source.files[0].path}: the transformer's config: {e}") from None


def read_transformer_config(path: str | os.PathLike) -> TransformerConfig | LTX2TransformerConfig:
    """The config of a transformer checkpoint (any layout ``load_transformer`` reads) without reading its weights:
    ``config.json``, a single file's metadata or tensor shapes (its header only), or the Orbax marker; an
    ``LTX2TransformerConfig`` for an LTX-2 checkpoint."""
    if checkpoint_family(path) == LTX2:
        return read_ltx2_transformer_config(path)
    return read_config(path, "transformer", TransformerConfig, "diffusers transformer",
                       lambda source, _: _single_file_config(source, _single_file_keys(source)))


def stored_transformer_weights(path: str | os.PathLike) -> str | None:
    """The format a checkpoint stores the blocks' linear kernels in, from its headers alone (no weight is read):
    "fp8" where they are float8_e4m3fn (Lightricks' ``*-fp8`` files), an Orbax checkpoint's saved format, else None
    (float)."""
    path = component_folder(os.fspath(path), "transformer")
    if orbax_io.is_orbax_dir(path):
        return orbax_io.stored_weights(path)
    source = open_safetensors(path)
    keys = {k: k for k in source} if os.path.isdir(path) else _single_file_keys(source)
    fp8 = any(re.match(BLOCK_KEY + r"(attn\d|ff)\..*weight$", name) and source.dtype(key) == FP8_E4M3
              for name, key in keys.items())
    return "fp8" if fp8 else None


def load_transformer(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: TransformerConfig | LTX2TransformerConfig | None = None,
    weights: str | None = None,
    compute: str | None = None,
    lora: Sequence[tuple[str | os.PathLike, float]] | None = None,
    sharding: Any = None,
    kernel_delta: KernelDelta | None = None,
    num_layers: int | None = None,
    **module_kwargs,
) -> tuple[Any, dict]:
    """Loads the LTX-Video transformer, or LTX-2's (``LTX2VideoTransformer3DModel``, through
    ``load_ltx2_transformer`` with the same arguments) when the checkpoint's config says so (``checkpoint_family``).

    Args:
      path: a diffusers ``transformer/`` folder (``config.json`` + safetensors, sharded or not) or a pipeline root
        holding one; a Lightricks single file (``ltxv-*.safetensors``, keys ``model.diffusion_model.*``, fp8
        releases included); or an Orbax directory written by ``python -m weight_conversion convert``.
      dtype: dtype of the params and of the module's computation (e.g. ``jnp.bfloat16`` on GPU).
      config: overrides the config read from (or inferred for) the checkpoint.
      weights: storage of the blocks' attention and feed-forward kernels: None (``dtype``), "int8" or "fp8"
        (float8_e4m3fn), each with a float32 scale per output channel, quantized on the host one layer at a time
        as it is read (``weight_conversion.quantize``). Stored fp8 kernels (Lightricks' ``*-fp8`` files) load as
        stored with "fp8", are dequantised with None and re-quantized with "int8". For an Orbax directory None
        means the weights it was saved with.
      lora: LoRA files with their weights, ``[(path, scale), ...]`` (diffusers / PEFT or non-diffusers format,
        ``weight_conversion.lora``), fused into the kernels as they are read: before the cast or quantization, so
        a quantized model holds the adapted weights at no run-time cost. Each file is checked against the model
        (module names, sizes) before any weight is read. Modules of other components (``text_encoder.*``) are
        skipped here (``load_text_encoder(..., lora=)`` takes them).
      sharding: an ``ltx_jax.sharding.ShardingPlan``: every tensor goes from the file straight onto its shards
        (by the logical axes the module declares; one layer at a time, never a whole param on one device), and the
        module gets the plan (activation constraints, context-parallel attention).
      kernel_delta: ``mapping.KernelDelta`` added to each float kernel before it is cast or quantized (what
        ``lora`` uses; added to it when both are given).
      num_layers: load only the first ``num_layers`` blocks (a model with that many; ``python -m ltx_jax compare``
        checks a checkpoint so without reading it all): the later blocks' tensors are skipped unread, every other
        tensor is checked as for the whole model. Safetensors checkpoints only.
      compute: the blocks' matmuls: None (in ``dtype``) or "fp8" (fp8 activations times the fp8 kernels, cuBLASLt's fp8
        GEMM on Hopper; ``layers.fp8_matmul``). It needs fp8 kernels: ``weights="fp8"``, or None with a checkpoint that
        stores them (``stored_transformer_weights``), which then load as stored; checked before any weight is read.
      module_kwargs: extra module fields (``attention_implementation``, ``remat``, ``precision``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, ...)``.
    """
    if isinstance(config, LTX2TransformerConfig) or (config is None and checkpoint_family(path) == LTX2):
        return load_ltx2_transformer(path, dtype, config=config, weights=weights, lora=lora, sharding=sharding,
                                     kernel_delta=kernel_delta, num_layers=num_layers, compute=compute,
                                     **module_kwargs)
    layers.check_weights(weights)
    if compute == "fp8" and weights is None and stored_transformer_weights(path) == "fp8":
        weights = "fp8"  # an fp8 checkpoint's kernels, as stored
    layers.check_compute(compute, weights)
    module_kwargs["compute"] = compute
    path = component_folder(os.fspath(path), "transformer")
    dtype = jnp.dtype(dtype)
    if orbax_io.is_orbax_dir(path):
        if num_layers is not None:
            raise CheckpointError(f"{path} is an Orbax checkpoint: num_layers= reads part of a safetensors checkpoint; "
                                  "load the Orbax checkpoint whole.")
        if kernel_delta is not None:
            raise CheckpointError(f"{path} is an Orbax checkpoint: kernel_delta is fused while converting safetensors; "
                                  "load the safetensors checkpoint instead.")
        weights = orbax_io.resolve_weights(path, weights)
        module, params = restore_orbax(path, "transformer", TransformerConfig, config,
                                       lambda c: _make_module(c, dtype, weights=weights, sharding=sharding,
                                                              **module_kwargs), sharding)
        return module, fuse_after_restore(path, "transformer", module, params, lora, torch_key, _scanned(module.config))

    if os.path.isdir(path):
        folder = path
        config = config or folder_config(folder, TransformerConfig, "diffusers transformer")
        source = open_safetensors(folder)
        keys = {k: k for k in source}
    else:
        source = open_safetensors(path)
        keys = _single_file_keys(source)
        config = config or _single_file_config(source, keys)
    config, later_blocks = first_layers(config, num_layers, keys, BLOCK_KEY, "transformer")

    module = _make_module(config, dtype, weights=weights, sharding=sharding, **module_kwargs)
    abstract = abstract_params(module)
    kernel_delta = loading_delta(lora, "transformer", abstract, torch_key, _scanned(config), also=kernel_delta)
    renamed = RenamedSource(source, keys)
    params = convert(renamed, transformer_rules(config, abstract), abstract, dtype, what="transformer",
                     source_shape=renamed.shape, ignore=later_blocks, kernel_delta=kernel_delta,
                     placement=placement(sharding, module, abstract))
    return module, params


def _scanned(config: TransformerConfig) -> dict[str, int]:
    return {"transformer_blocks": config.num_layers}


def save_transformer_orbax(module: LTXVideoTransformer3DModel, params: dict, path: str | os.PathLike, *,
                           overwrite: bool = False) -> None:
    """Writes ``params`` (float or quantized) and the module's config and weight format as an Orbax checkpoint
    (atomically: ``orbax_io.save``)."""
    orbax_io.save(path, "transformer", module.config.to_dict(), params, module.param_dtype, weights=module.weights,
                  overwrite=overwrite)

"""Loading the LTX-2 audio-video transformer from diffusers folders, Lightricks single files and Orbax checkpoints.

The conversion is data: every Flax param of ``LTX2VideoTransformer3DModel`` (from ``abstract_params``) names its
diffusers key (``torch_key``), checked against the checkpoint's keys and shapes before any tensor is read
(``mapping.convert``). Lightricks' native names (``ltx-core``, keys ``model.diffusion_model.*``) are renamed to
diffusers' by two tables (``NATIVE_TOP_LEVEL``: the first path component; ``NATIVE_COMPONENTS``: any later one), as
diffusers' ``convert_ltx2_transformer_to_diffusers`` does, extended with LTX-2.3's prompt AdaLN.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax.numpy as jnp

from ltx_jax.configs_ltx2 import LTX2TransformerConfig
from ltx_jax.models import abstract_params, layers
from ltx_jax.models.ltx2.transformer import LTX2VideoTransformer3DModel
from weight_conversion import orbax_io
from weight_conversion.common import (RenamedSource, component_folder, first_layers, folder_config, fuse_after_restore,
                                      placement, read_config, read_single_file_config, restore_orbax)
from weight_conversion.lora import LTX_2, loading_delta
from weight_conversion.mapping import CONV, IDENTITY, LINEAR, KernelDelta, Path, Rule, convert, rules_from_tree
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors

# Flax module names that differ from the torch module path (everything else maps one to one, "/" -> ".").
FLAX_TO_TORCH_NAMES = {
    "to_out_0": "to_out.0",
    "net_0_proj": "net.0.proj",
    "net_2": "net.2",
    "timestep_embedder": "emb.timestep_embedder",
}
PARAM_NAMES = {"kernel": "weight"}
BLOCK_KEY = r"transformer_blocks\.(\d+)\."  # a block's keys (diffusers names), the block index as group 1

# Lightricks' native names (ltx-core's LTXModel) -> diffusers' (LTX2VideoTransformer3DModel).
NATIVE_PREFIX = "model.diffusion_model."
NATIVE_TOP_LEVEL = {  # the key's first component
    "patchify_proj": "proj_in",
    "audio_patchify_proj": "audio_proj_in",
    "adaln_single": "time_embed",
    "audio_adaln_single": "audio_time_embed",
    "prompt_adaln_single": "prompt_adaln",  # LTX-2.3
    "audio_prompt_adaln_single": "audio_prompt_adaln",  # LTX-2.3
    "av_ca_video_scale_shift_adaln_single": "av_cross_attn_video_scale_shift",
    "av_ca_a2v_gate_adaln_single": "av_cross_attn_video_a2v_gate",
    "av_ca_audio_scale_shift_adaln_single": "av_cross_attn_audio_scale_shift",
    "av_ca_v2a_gate_adaln_single": "av_cross_attn_audio_v2a_gate",
}
NATIVE_COMPONENTS = {  # any later component (inside the blocks)
    "scale_shift_table_a2v_ca_video": "video_a2v_cross_attn_scale_shift_table",
    "scale_shift_table_a2v_ca_audio": "audio_a2v_cross_attn_scale_shift_table",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}
# Native keys under the transformer's prefix that belong to another component (the text connectors).
NATIVE_OTHER_COMPONENTS = ("video_embeddings_connector.", "audio_embeddings_connector.")
# Keys of a Lightricks single file that are not the transformer's.
OTHER_PREFIXES = ("vae.", "audio_vae.", "vocoder.", "text_embedding_projection.", "text_encoders.", "conditioner.",
                  "first_stage_model.")


def torch_key(path: Path) -> str:
    """Flax param path -> diffusers state-dict key; scanned block params get a ``{i}`` layer slot."""
    names = [FLAX_TO_TORCH_NAMES.get(p, p) for p in path[:-1]] + [PARAM_NAMES.get(path[-1], path[-1])]
    if path[0] == "transformer_blocks":
        names.insert(1, "{i}")
    return ".".join(names)


def transformer_rules(config: LTX2TransformerConfig, abstract: Any) -> list[Rule]:
    def transform_for(path: Path, ndim: int):
        if path[-1] == "kernel":
            return LINEAR if ndim == 2 else CONV
        return IDENTITY

    return rules_from_tree(abstract, torch_key, transform_for, {"transformer_blocks": config.num_layers})


def native_to_diffusers_key(key: str) -> str | None:
    """``model.diffusion_model.audio_adaln_single.linear.weight`` -> ``audio_time_embed.linear.weight``; None for
    the text connectors' keys (not the transformer's)."""
    key = key.removeprefix(NATIVE_PREFIX)
    if key.startswith(NATIVE_OTHER_COMPONENTS):
        return None
    first, *rest = key.split(".")
    return ".".join([NATIVE_TOP_LEVEL.get(first, first)] + [NATIVE_COMPONENTS.get(p, p) for p in rest])


def config_from_native(native: dict) -> LTX2TransformerConfig:
    """A Lightricks ``config["transformer"]`` dict (ltx-core's ``LTXModelConfigurator`` names and defaults) ->
    ``LTX2TransformerConfig`` (diffusers names)."""
    if native.get("qk_norm", "rms_norm") not in ("rms_norm", "rms_norm_across_heads"):
        raise CheckpointError(f"Unsupported native qk_norm {native['qk_norm']!r}; LTX-2 uses 'rms_norm'.")
    if native.get("norm_elementwise_affine", False) or not native.get("attention_bias", True):
        raise CheckpointError("Unsupported native config: LTX-2 has norm_elementwise_affine=false and "
                              "attention_bias=true.")
    same = ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "num_layers",
            "cross_attention_dim", "norm_eps", "timestep_scale_multiplier", "audio_num_attention_heads",
            "audio_attention_head_dim", "audio_in_channels", "audio_out_channels", "audio_cross_attention_dim",
            "caption_channels", "use_prompt_adaln_single", "ff_bias", "audio_ff_bias",
            "use_keyframes_abs_pos_embedding")
    kwargs = {k: native[k] for k in same if k in native}
    max_pos = list(native.get("positional_embedding_max_pos", [20, 2048, 2048]))
    audio_max_pos = list(native.get("audio_positional_embedding_max_pos", [20]))
    gated, cross_mod = bool(native.get("apply_gated_attention", False)), bool(native.get("cross_attention_adaln",
                                                                                         False))
    kwargs.update(
        rope_theta=float(native.get("positional_embedding_theta", 10000.0)),
        pos_embed_max_pos=int(max_pos[0]), base_height=int(max_pos[1]), base_width=int(max_pos[2]),
        audio_pos_embed_max_pos=int(audio_max_pos[0]),
        cross_attn_timestep_scale_multiplier=native.get("av_ca_timestep_scale_multiplier", 1),  # ltx-core's default
        rope_type=native.get("rope_type", "split"),
        rope_double_precision=native.get("frequencies_precision", False) == "float64",
        gated_attn=gated, audio_gated_attn=gated, cross_attn_mod=cross_mod, audio_cross_attn_mod=cross_mod,
        use_prompt_embeddings=not native.get("caption_proj_before_connector", False),
        perturbed_attn=True,  # ltx-core's blocks always take perturbations (STG)
    )
    return LTX2TransformerConfig(**kwargs)


def _make_module(config: LTX2TransformerConfig, dtype: Any, **module_kwargs) -> LTX2VideoTransformer3DModel:
    return LTX2VideoTransformer3DModel(config, dtype=dtype, param_dtype=dtype, **module_kwargs)


def _single_file_keys(source: TensorSource) -> dict[str, str]:
    """diffusers name -> key in a single file, for the transformer's tensors only (native or diffusers names)."""
    native = [k for k in source if k.startswith(NATIVE_PREFIX)]
    if native:
        return {name: k for k in native if (name := native_to_diffusers_key(k)) is not None}
    return {k: k for k in source if not k.startswith(OTHER_PREFIXES)}


def _single_file_config(source: TensorSource) -> LTX2TransformerConfig:
    try:
        native = (read_single_file_config(source) or {}).get("transformer")
        if not isinstance(native, dict):
            raise CheckpointError("it has no 'config' metadata with a 'transformer' entry; pass config=.")
        return config_from_native(native)
    except ValueError as e:  # CheckpointError included: name the file
        raise CheckpointError(f"{source.files[0].path}: the LTX-2 transformer's config: {e}") from None


def read_ltx2_transformer_config(path: str | os.PathLike) -> LTX2TransformerConfig:
    """The config of a checkpoint ``load_ltx2_transformer`` reads, without reading its weights."""
    return read_config(path, "transformer", LTX2TransformerConfig, "diffusers LTX-2 transformer",
                       lambda source, _: _single_file_config(source))


def _scanned(config: LTX2TransformerConfig) -> dict[str, int]:
    return {"transformer_blocks": config.num_layers}


def load_ltx2_transformer(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: LTX2TransformerConfig | None = None,
    weights: str | None = None,
    lora: Sequence[tuple[str | os.PathLike, float]] | None = None,
    sharding: Any = None,
    kernel_delta: KernelDelta | None = None,
    num_layers: int | None = None,
    **module_kwargs,
) -> tuple[LTX2VideoTransformer3DModel, dict]:
    """Loads the LTX-2 transformer (as ``weight_conversion.load_transformer`` loads LTX-Video's).

    Args:
      path: a diffusers ``transformer/`` folder (``config.json`` + safetensors, sharded or not) or a pipeline root
        holding one; a Lightricks single file (``ltx-2-*.safetensors``: keys ``model.diffusion_model.*``, config in
        the ``config`` metadata's ``transformer`` entry; the VAE / vocoder / connector keys are skipped); or an
        Orbax directory (``save_ltx2_transformer_orbax``).
      dtype: dtype of the params and of the computation.
      config: overrides the checkpoint's config.
      weights: the blocks' linear kernels: None (``dtype``), "int8" or "fp8", quantized per output channel on the
        host as they are read; stored fp8 kernels load as stored with "fp8". For Orbax, None = as saved.
      lora: ``[(file, scale)]`` LoRA files (diffusers / PEFT names), fused into the kernels as they are read.
      sharding: an ``ltx_jax.sharding.ShardingPlan``: each tensor goes straight onto its shards.
      kernel_delta: an extra ``mapping.KernelDelta`` added to the float kernels before cast / quantization.
      num_layers: load only the first ``num_layers`` blocks (safetensors only).
      module_kwargs: other module fields (``attention_implementation``, ``remat``, ``precision``, ``compute``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, ...)``.
    """
    layers.check_weights(weights)
    layers.check_compute(module_kwargs.get("compute"), weights)
    path = component_folder(os.fspath(path), "transformer")
    dtype = jnp.dtype(dtype)
    if orbax_io.is_orbax_dir(path):
        if num_layers is not None or kernel_delta is not None:
            raise CheckpointError(f"{path} is an Orbax checkpoint: num_layers= and kernel_delta= apply to safetensors "
                                  "checkpoints; load it whole, or convert the safetensors checkpoint.")
        weights = orbax_io.resolve_weights(path, weights)
        module, params = restore_orbax(path, "transformer", LTX2TransformerConfig, config,
                                       lambda c: _make_module(c, dtype, weights=weights, sharding=sharding,
                                                              **module_kwargs), sharding)
        return module, fuse_after_restore(path, "transformer", module, params, lora, torch_key,
                                          _scanned(module.config), LTX_2)
    if os.path.isdir(path):
        config = config or folder_config(path, LTX2TransformerConfig, "diffusers LTX-2 transformer")
        source = open_safetensors(path)
        keys = {k: k for k in source}
    else:
        source = open_safetensors(path)
        keys = _single_file_keys(source)
        config = config or _single_file_config(source)
    config, later_blocks = first_layers(config, num_layers, keys, BLOCK_KEY, "transformer")

    module = _make_module(config, dtype, weights=weights, sharding=sharding, **module_kwargs)
    abstract = abstract_params(module)
    kernel_delta = loading_delta(lora, "transformer", abstract, torch_key, _scanned(config), also=kernel_delta,
                                 family=LTX_2)
    renamed = RenamedSource(source, keys)
    params = convert(renamed, transformer_rules(config, abstract), abstract, dtype, what="LTX-2 transformer",
                     source_shape=renamed.shape, ignore=later_blocks, kernel_delta=kernel_delta,
                     placement=placement(sharding, module, abstract))
    return module, params


def save_ltx2_transformer_orbax(module: LTX2VideoTransformer3DModel, params: dict, path: str | os.PathLike, *,
                                overwrite: bool = False) -> None:
    """Writes ``params`` (float or quantized) with the module's config and weight format as an Orbax checkpoint."""
    orbax_io.save(path, "transformer", module.config.to_dict(), params, module.param_dtype, weights=module.weights,
                  overwrite=overwrite)

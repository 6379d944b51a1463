"""Loading LTX-2's text connectors and LTX-2.5's duration head from diffusers folders, Lightricks single files and
Orbax checkpoints.

The conversion is data: every Flax param (from ``abstract_params``) names its diffusers key (``connector_torch_key``,
``duration_head_torch_key``), checked against the checkpoint's keys and shapes before any tensor is read
(``mapping.convert``).

Lightricks' native names (ltx-core's ``EmbeddingsProcessor``) become diffusers' through ``NATIVE_CONNECTOR_RENAMES``,
the substring renames of diffusers' ``scripts/convert_ltx2_to_diffusers.py`` (``LTX_2_0_CONNECTORS_KEYS_RENAME_DICT``
and LTX-2.3's), after the ``model.diffusion_model.`` (and ``connectors.``) prefix is dropped::

    model.diffusion_model.video_embeddings_connector.transformer_1d_blocks.0.attn1.q_norm.weight
        -> video_connector.transformer_blocks.0.attn1.norm_q.weight
    text_embedding_projection.aggregate_embed.weight -> text_proj_in.weight               (LTX-2.0, no prefix)
    text_embedding_projection.video_aggregate_embed.bias -> video_text_proj_in.bias       (LTX-2.3)

A single file's config comes from its ``config`` metadata's ``transformer`` entry (ltx-core's connector
configurators: ``connector_num_layers``, ``connector_num_attention_heads``, ``audio_connector_attention_head_dim``,
``connector_apply_gated_attention``, ``connector_positional_embedding_max_pos``, ``rope_type``,
``frequencies_precision``, with their defaults) and from the tensor shapes (the projections give the Gemma sizes and
the per-stream widths, ``learnable_registers`` the number of registers). The projection may sit in another file (the
text encoder's, from LTX-2.3 on): ``projection_path=``.

The duration head's native file (ltx-core's ``DurationHead``, keys ``duration_head.*``) packs the pooler's q / k / v
into ``torch.nn.MultiheadAttention``'s ``in_proj_weight`` [3P, P] / ``in_proj_bias``: each of ``to_q`` / ``to_k`` /
``to_v`` reads its third (``NATIVE_POOLER``); its config is the metadata's ``transformer`` widths and
``duration_head`` entry with ltx-core's ``DurationHeadConfigurator`` defaults.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax.numpy as jnp

from ltx_jax.configs_ltx2_text import LTX2DurationHeadConfig, LTX2TextConnectorsConfig
from ltx_jax.models import abstract_params, layers
from ltx_jax.models.ltx2.connectors import LTX2TextConnectors
from ltx_jax.models.ltx2.duration_head import LTX2DurationHead
from weight_conversion import orbax_io, quantize
from weight_conversion.common import (RenamedSource, component_folder, folder_config, read_single_file_config,
                                      restore_orbax)
from weight_conversion.mapping import IDENTITY, LINEAR, Path, Rule, Transform, convert, flatten
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors

CONNECTORS = "connectors"  # diffusers' LTX2Pipeline sub-folders, and the Orbax markers' components
DURATION_HEAD = "duration_head"

# Flax module names that differ from the torch module path (everything else maps one to one, "/" -> ".").
FLAX_TO_TORCH_NAMES = {"to_out_0": "to_out.0", "net_0_proj": "net.0.proj", "net_2": "net.2"}
PARAM_NAMES = {"kernel": "weight"}
SCANNED = "transformer_blocks"  # each connector's scanned blocks: params with a leading [L] axis

# Lightricks' native connector names -> diffusers' (diffusers' conversion renames, applied in order as substrings).
NATIVE_PREFIXES = ("model.diffusion_model.", "connectors.")
NATIVE_CONNECTOR_RENAMES = (
    ("text_embedding_projection.aggregate_embed", "text_proj_in"),  # LTX-2.0 (FeatureExtractorV1)
    ("text_embedding_projection.video_aggregate_embed", "video_text_proj_in"),  # LTX-2.3 (FeatureExtractorV2)
    ("text_embedding_projection.audio_aggregate_embed", "audio_text_proj_in"),
    ("video_embeddings_connector", "video_connector"),
    ("audio_embeddings_connector", "audio_connector"),
    ("transformer_1d_blocks", "transformer_blocks"),
    ("q_norm", "norm_q"),
    ("k_norm", "norm_k"),
)
# The connectors' keys (diffusers names); any other key of a single file belongs to another component.
CONNECTOR_ROOTS = ("text_proj_in.", "video_text_proj_in.", "audio_text_proj_in.", "video_connector.",
                   "audio_connector.")

# ltx-core's DurationHead (keys "duration_head.*"): the pooler's diffusers module -> (native key stem, third of the
# packed q / k / v it is, None for a whole tensor); the other names are diffusers'.
NATIVE_DURATION_PREFIX = "duration_head."
NATIVE_POOLER = {"to_q": ("cross_attn.in_proj_", 0), "to_k": ("cross_attn.in_proj_", 1),
                 "to_v": ("cross_attn.in_proj_", 2), "to_out": ("cross_attn.out_proj.", None)}
# ltx-core's DurationHeadConfigurator: the metadata config's duration_head key -> diffusers' field, and its defaults.
NATIVE_DURATION_FIELDS = {"pooler_hidden_dim": "pooler_hidden_dim", "num_queries": "num_queries",
                          "num_pooler_heads": "num_pooler_heads", "mlp_hidden": "mlp_hidden_dim"}


# ------------------------------------------------------------------------------------------------ rules


def _torch_name(path: Path) -> list[str]:
    return [FLAX_TO_TORCH_NAMES.get(p, p) for p in path[:-1]] + [PARAM_NAMES.get(path[-1], path[-1])]


def connector_torch_key(path: Path) -> str:
    """Flax param path -> diffusers key; a scanned block param gets a ``{i}`` layer slot
    (``video_connector/transformer_blocks/attn1/to_out_0/kernel`` -> ``video_connector.transformer_blocks.{i}.attn1
    .to_out.0.weight``)."""
    names = _torch_name(path)
    if SCANNED in path:
        names.insert(path.index(SCANNED) + 1, "{i}")
    return ".".join(names)


def connector_rules(abstract: Any) -> list[Rule]:
    """One rule per param of ``LTX2TextConnectors`` (Linear kernels transposed; a quantized kernel's
    ``kernel_scale`` is its ``scale_target``; the blocks' params stacked over their layers)."""
    flat = flatten(abstract)
    rules = []
    for path, leaf in sorted(flat.items()):
        if path[-1] == quantize.SCALE_LEAF and path[:-1] + ("kernel",) in flat:
            continue
        scale = path[:-1] + (quantize.SCALE_LEAF,)
        scale = scale if path[-1] == "kernel" and scale in flat else None
        transform = LINEAR if path[-1] == "kernel" else IDENTITY
        name = connector_torch_key(path)
        if SCANNED in path:
            sources = tuple(name.format(i=i) for i in range(leaf.shape[0]))
            rules.append(Rule(path, sources, transform, stacked=True, scale_target=scale))
        else:
            rules.append(Rule(path, (name,), transform, scale_target=scale))
    return rules


def _packed_third(index: int, linear: bool) -> Transform:
    """The ``index``-th third (q, k, v) of MultiheadAttention's ``in_proj_weight`` [3P, P] (as a Flax kernel
    [P, P]) or ``in_proj_bias`` [3P]."""
    def apply(x):
        third = x.shape[0] // 3
        part = x[index * third:(index + 1) * third]
        return LINEAR.apply(part) if linear else part

    shape = (lambda s: (3 * s[1], s[0])) if linear else (lambda s: (3 * s[0],))
    return Transform(f"packed-qkv-{index}{'-transpose' if linear else ''}", apply, shape)


def duration_head_torch_key(path: Path) -> str:
    """Flax param path -> diffusers key (``attention_pooler/to_q/kernel`` -> ``attention_pooler.to_q.weight``)."""
    return ".".join(_torch_name(path))


def duration_head_rules(abstract: Any, native: bool = False) -> list[Rule]:
    """One rule per param of ``LTX2DurationHead``: diffusers' keys, or with ``native`` ltx-core's (``duration_head.``
    prefix, the pooler's q / k / v as thirds of ``in_proj_weight`` / ``in_proj_bias``)."""
    rules = []
    for path in sorted(flatten(abstract)):
        linear = path[-1] == "kernel"
        transform = LINEAR if linear else IDENTITY
        key = duration_head_torch_key(path)
        if native:
            key = NATIVE_DURATION_PREFIX + key
            if path[0] == "attention_pooler" and path[1] in NATIVE_POOLER:
                stem, third = NATIVE_POOLER[path[1]]
                key = f"{NATIVE_DURATION_PREFIX}attention_pooler.{stem}{'weight' if linear else 'bias'}"
                if third is not None:
                    transform = _packed_third(third, linear)
        rules.append(Rule(path, (key,), transform))
    return rules


# ------------------------------------------------------------------------------------------------ connectors


def native_to_diffusers_key(key: str) -> str | None:
    """A single file's key -> diffusers' connector key, or None for another component's key (native or diffusers
    names both map: diffusers' are left as they are)."""
    for prefix in NATIVE_PREFIXES:
        key = key.removeprefix(prefix)
    for old, new in NATIVE_CONNECTOR_RENAMES:
        key = key.replace(old, new)
    return key if key.startswith(CONNECTOR_ROOTS) else None


def _single_file_keys(source: TensorSource) -> dict[str, str]:
    """diffusers name -> key in the file(s), for the connectors' tensors only."""
    keys: dict[str, str] = {}
    for key in source:
        name = native_to_diffusers_key(key)
        if name is None:
            continue
        if name in keys:
            raise CheckpointError(f"Tensors {keys[name]!r} and {key!r} are both the connectors' {name!r}.")
        keys[name] = key
    return keys


def config_from_native(native: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> LTX2TextConnectorsConfig:
    """A Lightricks ``config["transformer"]`` dict (ltx-core's connector configurators: names and defaults) and the
    connectors' tensor shapes (diffusers names) -> ``LTX2TextConnectorsConfig``."""
    if not native.get("connector_ff_bias", True):
        raise CheckpointError("connector_ff_bias=false is not supported: diffusers' connectors have feed-forward "
                              "biases.")
    per_modality = "video_text_proj_in.weight" in shapes
    projection = "video_text_proj_in" if per_modality else "text_proj_in"
    if f"{projection}.weight" not in shapes:
        raise CheckpointError("it holds no text projection (text_embedding_projection.aggregate_embed / "
                              "video_aggregate_embed): pass projection_path= (the file that holds it, e.g. the text "
                              "encoder's) or config=.")
    out_dim, in_dim = shapes[f"{projection}.weight"]
    channels = int(native.get("caption_channels", 3840)) if per_modality else out_dim
    if in_dim % channels:
        raise CheckpointError(f"{projection} takes {in_dim} features, not a multiple of caption_channels={channels}.")
    heads = native.get("connector_num_attention_heads", 30)
    head_dim = native.get("connector_attention_head_dim", 128)
    num_layers = native.get("connector_num_layers", 2)
    gated = bool(native.get("connector_apply_gated_attention", False))
    fields = dict(
        caption_channels=channels, text_proj_in_factor=in_dim // channels,
        video_connector_num_attention_heads=heads, video_connector_attention_head_dim=head_dim,
        video_connector_num_layers=num_layers, video_gated_attn=gated,
        audio_connector_num_attention_heads=native.get("audio_connector_num_attention_heads", heads),
        audio_connector_attention_head_dim=native.get("audio_connector_attention_head_dim", head_dim),
        audio_connector_num_layers=native.get("audio_connector_num_layers", num_layers), audio_gated_attn=gated,
        connector_rope_base_seq_len=int(list(native.get("connector_positional_embedding_max_pos", [1]))[0]),
        rope_theta=10000.0,  # ltx-core's connectors keep their default (positional_embedding_theta is the DiT's)
        rope_double_precision=native.get("frequencies_precision", False) == "float64",
        rope_type=native.get("rope_type", "split"), per_modality_projections=per_modality,
        proj_bias=f"{projection}.bias" in shapes)
    for stream in ("video", "audio"):
        registers = shapes.get(f"{stream}_connector.learnable_registers")
        fields[f"{stream}_connector_num_learnable_registers"] = None if registers is None else registers[0]
        if per_modality:
            fields[f"{stream}_hidden_dim"] = shapes[f"{stream}_text_proj_in.weight"][0] if (
                f"{stream}_text_proj_in.weight" in shapes) else 0
    return LTX2TextConnectorsConfig(**fields)


def _single_file_config(source: TensorSource, keys: dict[str, str], path: str) -> LTX2TextConnectorsConfig:
    if not any(k.startswith(("video_connector.", "audio_connector.")) for k in keys):
        raise CheckpointError(f"{path} holds no text connector tensors (video_embeddings_connector.* / "
                              f"video_connector.*); keys such as {sorted(source)[:3]}.")
    try:
        native = (read_single_file_config(source) or {}).get("transformer")
        if not isinstance(native, dict):
            raise CheckpointError("it has no 'config' metadata with a 'transformer' entry; pass config=.")
        return config_from_native(native, {name: tuple(source.shape(k)) for name, k in keys.items()})
    except ValueError as e:  # CheckpointError included: name the file
        raise CheckpointError(f"{path}: the LTX-2 text connectors' config: {e}") from None


def _open_single_file(path: str, projection_path: str | os.PathLike | None) -> tuple[TensorSource, dict[str, str]]:
    files = open_safetensors(path).files
    if projection_path is not None:
        projection = os.fspath(projection_path)
        if not os.path.isfile(projection):
            raise CheckpointError(f"projection_path {projection} is not a safetensors file.")
        files = files + [f for f in open_safetensors(projection).files if f.path != files[0].path]
    source = TensorSource(files)
    return source, _single_file_keys(source)


def _make_connectors(config: LTX2TextConnectorsConfig, dtype: Any, **module_kwargs) -> LTX2TextConnectors:
    return LTX2TextConnectors(config, dtype=dtype, param_dtype=dtype, **module_kwargs)


def read_text_connectors_config(path: str | os.PathLike,
                                projection_path: str | os.PathLike | None = None) -> LTX2TextConnectorsConfig:
    """The config of a checkpoint ``load_text_connectors`` reads, without reading its weights."""
    path = component_folder(os.fspath(path), CONNECTORS)
    if not os.path.exists(path):
        raise CheckpointError(f"LTX-2 text connectors checkpoint {path} does not exist.")
    if orbax_io.is_orbax_dir(path):
        return LTX2TextConnectorsConfig.from_dict(orbax_io.read_marker(path)["config"])
    if os.path.isdir(path):
        return folder_config(path, LTX2TextConnectorsConfig, "diffusers LTX-2 connectors")
    source, keys = _open_single_file(path, projection_path)
    return _single_file_config(source, keys, path)


def load_text_connectors(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: LTX2TextConnectorsConfig | None = None,
    projection_path: str | os.PathLike | None = None,
    weights: str | None = None,
    **module_kwargs,
) -> tuple[LTX2TextConnectors, dict]:
    """Loads LTX-2's text connectors.

    Args:
      path: a diffusers ``connectors/`` folder (``config.json`` + safetensors) or a pipeline root holding one; a
        Lightricks single file (``ltx-2-19b-dev.safetensors``, ``ltx-2.3-22b-*.safetensors``: keys
        ``model.diffusion_model.{video,audio}_embeddings_connector.*`` and ``text_embedding_projection.*``; every
        other component's keys are skipped); or an Orbax directory (``save_text_connectors_orbax``).
      dtype: dtype of the params and of the computation.
      config: overrides the checkpoint's config.
      projection_path: a second safetensors file holding ``text_embedding_projection.*`` (single files only), for
        a transformer file without it (the text encoder file holds it from LTX-2.3 on).
      weights: the Linear kernels: None (``dtype``), "int8" or "fp8", quantized per output channel as they are read;
        for Orbax, None = as saved.
      module_kwargs: other module fields (``attention_implementation``, ``precision``, ``compute``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, hidden_states, attention_mask)``.
    Raises:
      CheckpointError on a missing path, missing or unexpected tensors, a shape that does not fit the config, or a
      single file without the metadata or projection the config needs.
    """
    layers.check_weights(weights)
    layers.check_compute(module_kwargs.get("compute"), weights)
    path = component_folder(os.fspath(path), CONNECTORS)
    dtype = jnp.dtype(dtype)
    if not os.path.exists(path):
        raise CheckpointError(f"LTX-2 text connectors checkpoint {path} does not exist.")
    if (orbax_io.is_orbax_dir(path) or os.path.isdir(path)) and projection_path is not None:
        raise CheckpointError(f"{path} is a folder: projection_path= completes a single file only.")
    if orbax_io.is_orbax_dir(path):
        weights = orbax_io.resolve_weights(path, weights)
        return restore_orbax(path, CONNECTORS, LTX2TextConnectorsConfig, config,
                             lambda c: _make_connectors(c, dtype, weights=weights, **module_kwargs))
    if os.path.isdir(path):
        config = config or folder_config(path, LTX2TextConnectorsConfig, "diffusers LTX-2 connectors")
        source = open_safetensors(path)
        keys = {k: k for k in source}
    else:
        source, keys = _open_single_file(path, projection_path)
        config = config or _single_file_config(source, keys, path)
    module = _make_connectors(config, dtype, weights=weights, **module_kwargs)
    abstract = abstract_params(module)
    renamed = RenamedSource(source, keys)
    params = convert(renamed, connector_rules(abstract), abstract, dtype, what="LTX-2 text connectors",
                     source_shape=renamed.shape)
    return module, params


def save_text_connectors_orbax(module: LTX2TextConnectors, params: dict, path: str | os.PathLike, *,
                               overwrite: bool = False) -> None:
    """Writes ``params`` (float or quantized) with the module's config and weight format as an Orbax checkpoint
    that ``load_text_connectors`` reads back."""
    orbax_io.save(path, CONNECTORS, module.config.to_dict(), params, module.param_dtype, weights=module.weights,
                  overwrite=overwrite)


# ------------------------------------------------------------------------------------------------ duration head


def duration_head_config_from_native(config: Mapping[str, Any]) -> LTX2DurationHeadConfig:
    """A Lightricks single file's metadata ``config`` (ltx-core's ``DurationHeadConfigurator``: the connector widths
    from ``transformer``, the rest from ``duration_head``, each with its default) -> ``LTX2DurationHeadConfig``."""
    transformer = config.get("transformer") or {}
    head = config.get("duration_head") or {}
    defaults = LTX2DurationHeadConfig()
    fields = {new: head.get(old, getattr(defaults, new)) for old, new in NATIVE_DURATION_FIELDS.items()}
    return LTX2DurationHeadConfig(video_cross_attention_dim=transformer.get("cross_attention_dim", 4096),
                                  audio_cross_attention_dim=transformer.get("audio_cross_attention_dim", 2048),
                                  **fields)


def _duration_single_file(path: str) -> tuple[TensorSource, bool, LTX2DurationHeadConfig]:
    """(source, native names?, config from the metadata) of a single file."""
    source = open_safetensors(path)
    native = any(k.startswith(NATIVE_DURATION_PREFIX) for k in source)
    if not native and "video_input_proj.weight" not in source:
        raise CheckpointError(f"{path} holds no duration head tensors (duration_head.* or video_input_proj.*); keys "
                              f"such as {sorted(source)[:3]}.")
    try:
        config = duration_head_config_from_native(read_single_file_config(source) or {})
    except ValueError as e:
        raise CheckpointError(f"{path}: the LTX-2 duration head's config: {e}") from None
    return source, native, config


def read_duration_head_config(path: str | os.PathLike) -> LTX2DurationHeadConfig:
    """The config of a checkpoint ``load_duration_head`` reads, without reading its weights."""
    path = component_folder(os.fspath(path), DURATION_HEAD)
    if not os.path.exists(path):
        raise CheckpointError(f"LTX-2 duration head checkpoint {path} does not exist.")
    if orbax_io.is_orbax_dir(path):
        return LTX2DurationHeadConfig.from_dict(orbax_io.read_marker(path)["config"])
    if os.path.isdir(path):
        return folder_config(path, LTX2DurationHeadConfig, "diffusers LTX-2 duration_head")
    return _duration_single_file(path)[2]


def load_duration_head(path: str | os.PathLike, dtype: Any = jnp.float32, *,
                       config: LTX2DurationHeadConfig | None = None,
                       **module_kwargs) -> tuple[LTX2DurationHead, dict]:
    """Loads LTX-2.5's duration head.

    Args:
      path: a diffusers ``duration_head/`` folder or a pipeline root holding one; a Lightricks single file
        (``ltx-2.5-duration-head-bf16.safetensors``: keys ``duration_head.*``, or a shared file holding them); or
        an Orbax directory (``save_duration_head_orbax``).
      dtype: dtype of the params and of the computation; config: overrides the checkpoint's.
      module_kwargs: other module fields (``precision``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, video_tokens, audio_tokens)`` -> seconds [B].
    """
    path = component_folder(os.fspath(path), DURATION_HEAD)
    dtype = jnp.dtype(dtype)
    if not os.path.exists(path):
        raise CheckpointError(f"LTX-2 duration head checkpoint {path} does not exist.")

    def make(c):
        return LTX2DurationHead(c, dtype=dtype, param_dtype=dtype, **module_kwargs)

    if orbax_io.is_orbax_dir(path):
        return restore_orbax(path, DURATION_HEAD, LTX2DurationHeadConfig, config, make)
    if os.path.isdir(path):
        config = config or folder_config(path, LTX2DurationHeadConfig, "diffusers LTX-2 duration_head")
        source, native = open_safetensors(path), False
        keys = {k: k for k in source}
    else:
        source, native, file_config = _duration_single_file(path)
        config = config or file_config
        prefix = NATIVE_DURATION_PREFIX if native else ""
        keys = {k: k for k in source if k.startswith(prefix)}  # a shared file's other components are skipped
    module = make(config)
    abstract = abstract_params(module)
    renamed = RenamedSource(source, keys)
    params = convert(renamed, duration_head_rules(abstract, native), abstract, dtype, what="LTX-2 duration head",
                     source_shape=renamed.shape)
    return module, params


def save_duration_head_orbax(module: LTX2DurationHead, params: dict, path: str | os.PathLike, *,
                             overwrite: bool = False) -> None:
    """Writes ``params`` with the module's config as an Orbax checkpoint that ``load_duration_head`` reads back."""
    orbax_io.save(path, DURATION_HEAD, module.config.to_dict(), params, module.param_dtype, overwrite=overwrite)

"""Frozen model configs whose field names are diffusers' ``config.json`` names.

A config holds only what defines the architecture (and therefore the checkpoint layout). Runtime
choices (compute dtype, attention backend, rematerialisation) are fields of the modules instead.

    >>> cfg = TransformerConfig.from_json("LTX-Video/transformer/config.json")

The released architectures are in ``ltx_jax.releases`` (``TRANSFORMER_PRESETS``, ``VAE_PRESETS``, ``T5_PRESETS``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Mapping

# Keys diffusers writes into every config.json that carry no architecture.
_DIFFUSERS_BOOKKEEPING_KEYS = frozenset({"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"})


def _fits(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a field annotation (int, float, bool, str, X | None, tuple[X, ...])."""
    for option in (a.strip() for a in annotation.split("|")):
        if option == "None" and value is None:
            return True
        if option == "bool" and isinstance(value, bool):
            return True
        if option == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option == "str" and isinstance(value, str):
            return True
        element = re.fullmatch(r"tuple\[(.+), \.\.\.\]", option)
        if element and isinstance(value, (list, tuple)) and all(_fits(v, element.group(1)) for v in value):
            return True
    return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What a field's value (or each entry of a tuple field) must be: (test, the words for it).
_INT_AT_LEAST_1 = (lambda v: _is_int(v) and v >= 1, "an int >= 1")
_INT_AT_LEAST_0 = (lambda v: _is_int(v) and v >= 0, "an int >= 0")
_NUMBER_AT_LEAST_0 = (lambda v: _is_number(v) and v >= 0, "a number >= 0")
_NUMBER_ABOVE_0 = (lambda v: _is_number(v) and v > 0, "a number > 0")


def _check_fields(config, rule: tuple, *names: str) -> None:
    """Raises one line naming the field, its value and what is wanted, for the first named field (or entry of a tuple
    field) that ``rule`` refuses; a field that may be None (``_OPTIONAL_FIELDS``) passes as None."""
    test, wanted = rule
    for name in names:
        value = getattr(config, name)
        if value is None and name in _OPTIONAL_FIELDS:
            continue
        if not all(test(v) for v in (value if isinstance(value, tuple) else (value,))):
            each = "each entry " if isinstance(value, tuple) else ""
            raise ValueError(f"{type(config).__name__}: {name}={value!r}; {each}must be {wanted} "
                             "(fix the value in the config).")


def _check_length(config, name: str, needed: int, why: str) -> None:
    """A tuple field with at least ``needed`` entries, else one line naming it, its length and why it needs more."""
    have = len(getattr(config, name))
    if have < needed:
        raise ValueError(f"{type(config).__name__}: {name} has {have} entries, {needed} wanted ({why}); "
                         "fix the config.")


# Fields that may be None (derived when None); the range rules apply to their value otherwise.
_OPTIONAL_FIELDS = frozenset({"spatial_compression_ratio", "temporal_compression_ratio"})


def _dataclass_from_dict(cls, config: Mapping[str, Any], *, ignored: frozenset[str] = frozenset()):
    """Builds ``cls`` from a config dict, raising on keys the dataclass does not know and on values of the wrong
    type (naming the key and the type it wants)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in config if k not in fields and k not in _DIFFUSERS_BOOKKEEPING_KEYS and k not in ignored)
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown config keys {unknown}. Known keys: {sorted(fields)}. "
            "If this is a newer diffusers config, the field is not supported by ltx_jax yet."
        )
    for key, value in config.items():
        if key in fields and not _fits(value, str(fields[key].type)):
            raise ValueError(f"{cls.__name__}: {key!r} must be {fields[key].type}, got {type(value).__name__} "
                             f"{value!r}; fix the value in the config.")
    kwargs = {k: v for k, v in config.items() if k in fields}
    for key, value in kwargs.items():  # JSON has lists where the dataclass wants tuples
        if isinstance(value, list):
            kwargs[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return cls(**kwargs)


def read_json(path: str | os.PathLike) -> dict:
    """Reads a JSON object from a file, with an error that names the file when it is not one."""
    try:
        with open(path) as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not an object of config keys.")
    return config


def config_from_json(cls, path: str | os.PathLike):
    """``cls.from_dict`` of a JSON file; errors name the file."""
    config = read_json(path)
    try:
        return cls.from_dict(config)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Architecture of ``LTXVideoTransformer3DModel`` (diffusers' field names and defaults = the 2B model)."""

    in_channels: int = 128
    out_channels: int = 128
    patch_size: int = 1
    patch_size_t: int = 1
    num_attention_heads: int = 32
    attention_head_dim: int = 64
    cross_attention_dim: int = 2048
    num_layers: int = 28
    activation_fn: str = "gelu-approximate"
    qk_norm: str = "rms_norm_across_heads"
    norm_elementwise_affine: bool = False
    norm_eps: float = 1e-6
    caption_channels: int = 4096
    attention_bias: bool = True
    attention_out_bias: bool = True

    def __post_init__(self):
        _check_fields(self, _INT_AT_LEAST_1, "in_channels", "out_channels", "patch_size", "patch_size_t",
                      "num_attention_heads", "attention_head_dim", "cross_attention_dim", "num_layers",
                      "caption_channels")
        _check_fields(self, _NUMBER_AT_LEAST_0, "norm_eps")
        if self.activation_fn not in ("gelu-approximate", "gelu"):
            raise ValueError(f"activation_fn={self.activation_fn!r} is not supported; "
                             "use 'gelu-approximate' or 'gelu'.")
        if self.qk_norm != "rms_norm_across_heads":
            raise ValueError(f"qk_norm={self.qk_norm!r} is not supported; LTX-Video uses 'rms_norm_across_heads'.")
        if self.cross_attention_dim != self.inner_dim:
            # diffusers projects captions to inner_dim before cross-attention, so to_k/to_v of attn2 take
            # inner_dim features; a config where the two differ cannot run in diffusers either.
            raise ValueError(
                f"cross_attention_dim ({self.cross_attention_dim}) must equal num_attention_heads * attention_head_dim "
                f"({self.inner_dim}): the caption projection maps text features to the model width."
            )

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "TransformerConfig":
        return _dataclass_from_dict(cls, config)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "TransformerConfig":
        return config_from_json(cls, path)

    def to_dict(self) -> dict:
        return {"_class_name": "LTXVideoTransformer3DModel", **dataclasses.asdict(self)}

    def replace(self, **changes) -> "TransformerConfig":
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------------------- T5 text encoder

# Keys of a transformers T5 ``config.json`` that do not change the encoder's computation or weights: bookkeeping,
# training-only settings (dropout, init), generation defaults and decoder-only settings. Listed one by one so that
# any other key -- a new architecture switch we would silently mis-run -- raises instead.
_T5_IGNORED_KEYS = frozenset({
    # bookkeeping written by every transformers config
    "_name_or_path", "architectures", "dtype", "torch_dtype", "transformers_version", "_commit_hash",
    "_attn_implementation_autoset", "id2label", "label2id", "problem_type", "finetuning_task", "tokenizer_class",
    "prefix", "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
    "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward", "task_specific_params",
    # training-only
    "dropout_rate", "classifier_dropout", "initializer_factor", "gradient_checkpointing",
    # decoder / encoder-decoder / generation settings (the encoder has no decoder, cache or LM head)
    "is_encoder_decoder", "num_decoder_layers", "use_cache", "output_past", "decoder_start_token_id",
    "tie_word_embeddings", "scale_decoder_outputs", "add_cross_attention", "cross_attention_hidden_size",
    "tie_encoder_decoder", "pad_token_id", "eos_token_id", "bos_token_id", "sep_token_id", "n_positions",
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
})
# mT5 has T5 v1.1's encoder; other T5 relatives (umt5: a bias table per layer; longt5) compute differently.
_T5_MODEL_TYPES = ("t5", "mt5")
# transformers' ACT2FN names that the T5 feed-forward may use.
T5_ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "silu", "swish")


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Architecture of transformers' ``T5EncoderModel`` (transformers' field names and defaults, i.e. t5-small).

    ``dense_act_fn`` and ``is_gated_act`` are derived from ``feed_forward_proj`` as transformers derives them
    ("gated-gelu" -> gated, "gelu_new") unless given, and then, as in transformers, the given value wins.
    LTX-Video uses ``ltx_jax.releases.T5_PRESETS["t5-v1_1-xxl"]``.
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    dense_act_fn: str | None = None
    is_gated_act: bool | None = None

    def __post_init__(self):
        _check_fields(self, _INT_AT_LEAST_1, "vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                      "relative_attention_max_distance")
        _check_fields(self, _NUMBER_AT_LEAST_0, "layer_norm_epsilon")
        # transformers' bidirectional buckets: a quarter of them for exact distances (at least one), log-spaced ones
        # from there up to max_distance (which must lie past them: log(max_distance / exact) divides).
        exact = self.relative_attention_num_buckets // 4 if _is_int(self.relative_attention_num_buckets) else 0
        if exact < 1 or self.relative_attention_max_distance <= exact:
            raise ValueError(f"T5Config: relative_attention_num_buckets={self.relative_attention_num_buckets!r} and "
                             f"relative_attention_max_distance={self.relative_attention_max_distance}; need an int "
                             ">= 4 buckets and a max distance above a quarter of them (fix the values in the config).")
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(f"feed_forward_proj={self.feed_forward_proj!r}; expected 'ACT' or 'gated-ACT', "
                             "e.g. 'relu', 'gated-gelu'.")
        if self.dense_act_fn is None:
            derived = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]
            object.__setattr__(self, "dense_act_fn", derived)
        if self.is_gated_act is None:
            object.__setattr__(self, "is_gated_act", parts[0] == "gated")
        if self.dense_act_fn not in T5_ACTIVATIONS:
            raise ValueError(f"dense_act_fn={self.dense_act_fn!r} is not supported; use one of {T5_ACTIVATIONS}.")

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "T5Config":
        """From a transformers ``config.json`` dict; known non-architecture keys are dropped, unknown ones raise."""
        model_type = config.get("model_type", "t5")
        if model_type not in _T5_MODEL_TYPES:
            raise ValueError(f"T5Config: model_type={model_type!r} is not supported; "
                             f"ltx_jax runs {_T5_MODEL_TYPES} encoders.")
        if config.get("is_decoder", False):
            raise ValueError("T5Config: is_decoder=true describes a T5 decoder stack; ltx_jax runs the encoder only.")
        return _dataclass_from_dict(cls, config, ignored=_T5_IGNORED_KEYS | {"model_type", "is_decoder"})

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "T5Config":
        return config_from_json(cls, path)

    def to_dict(self) -> dict:
        """A dict that both ``from_dict`` and ``transformers.T5Config(**d)`` read back to this architecture."""
        return {"architectures": ["T5EncoderModel"], "model_type": "t5", **dataclasses.asdict(self)}

    def replace(self, **changes) -> "T5Config":
        return dataclasses.replace(self, **changes)


_VAE_DOWN_BLOCK_TYPES = ("LTXVideoDownBlock3D", "LTXVideo095DownBlock3D")
_VAE_DOWNSAMPLE_TYPES = ("conv", "spatial", "temporal", "spatiotemporal")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Architecture of ``AutoencoderKLLTXVideo`` (diffusers' field names; defaults = diffusers' = the 0.9.0 VAE).

    Encoder lists run from the input side; decoder lists too (``decoder_block_out_channels[0]`` is the width
    of the block nearest the output), exactly as in diffusers' ``config.json``. ``layers_per_block`` and
    ``decoder_layers_per_block`` have one more entry than there are blocks: the mid block's (last).
    """

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 128
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    down_block_types: tuple[str, ...] = ("LTXVideoDownBlock3D",) * 4
    decoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    decoder_layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    decoder_spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    decoder_inject_noise: tuple[bool, ...] = (False, False, False, False, False)
    downsample_type: tuple[str, ...] = ("conv", "conv", "conv", "conv")
    upsample_residual: tuple[bool, ...] = (False, False, False, False)
    upsample_factor: tuple[int, ...] = (1, 1, 1, 1)
    timestep_conditioning: bool = False
    patch_size: int = 4
    patch_size_t: int = 1
    resnet_norm_eps: float = 1e-6
    scaling_factor: float = 1.0
    encoder_causal: bool = True
    decoder_causal: bool = False
    spatial_compression_ratio: int | None = None
    temporal_compression_ratio: int | None = None

    def __post_init__(self):
        _check_fields(self, _INT_AT_LEAST_1, "in_channels", "out_channels", "latent_channels", "block_out_channels",
                      "decoder_block_out_channels", "upsample_factor", "patch_size", "patch_size_t",
                      "spatial_compression_ratio", "temporal_compression_ratio")
        _check_fields(self, _INT_AT_LEAST_0, "layers_per_block", "decoder_layers_per_block")
        _check_fields(self, _NUMBER_AT_LEAST_0, "resnet_norm_eps")
        _check_fields(self, _NUMBER_ABOVE_0, "scaling_factor")
        _check_length(self, "block_out_channels", 1, "the encoder's widths")
        _check_length(self, "decoder_block_out_channels", 1, "the decoder's widths")
        unknown = sorted(set(self.down_block_types) - set(_VAE_DOWN_BLOCK_TYPES))
        if unknown:
            raise ValueError(f"down_block_types {unknown} are not supported; use {_VAE_DOWN_BLOCK_TYPES}.")
        unknown = sorted(set(self.downsample_type) - set(_VAE_DOWNSAMPLE_TYPES))
        if unknown:
            raise ValueError(f"downsample_type {unknown} are not supported; use {_VAE_DOWNSAMPLE_TYPES}.")
        if self.patch_size_t != 1:
            raise ValueError("patch_size_t must be 1: diffusers' LTX encoder sizes conv_in for a spatial patch only.")
        # diffusers' encoder: a down block per width (0.9.5 blocks: per width after the first), then the mid block.
        n_enc = len(self.block_out_channels) - (1 if self.down_block_types and self.is_095_encoder else 0)
        for name in ("down_block_types", "spatio_temporal_scaling", "downsample_type"):
            _check_length(self, name, n_enc,
                          f"one per encoder down block of block_out_channels={self.block_out_channels}")
        _check_length(self, "layers_per_block", n_enc + 1, "one per encoder down block, then the mid block's")
        n_dec = len(self.decoder_block_out_channels)
        for name in ("decoder_spatio_temporal_scaling", "upsample_residual", "upsample_factor"):
            if len(getattr(self, name)) < n_dec:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries; the decoder has {n_dec} up blocks.")
        if len(self.decoder_layers_per_block) < n_dec + 1 or len(self.decoder_inject_noise) < n_dec + 1:
            raise ValueError(f"decoder_layers_per_block and decoder_inject_noise need {n_dec + 1} entries "
                             "(up blocks + mid).")
        if self.timestep_conditioning:
            # diffusers hands a channel-changing up block's conv_in resnet the raw timestep (not an embedding),
            # which fails there too; released timestep-conditioned VAEs never change width inside an up block.
            widths = tuple(reversed(self.decoder_block_out_channels))
            factors = tuple(reversed(self.upsample_factor))
            width = widths[0]
            for i in range(n_dec):
                if width // factors[i] != widths[i] // factors[i]:
                    raise ValueError(
                        "timestep_conditioning=True with an up block that changes width (a conv_in resnet) is not a "
                        "working diffusers configuration."
                    )
                width = widths[i] // factors[i]

    @property
    def is_095_encoder(self) -> bool:
        """0.9.5+ encoder layout (diffusers decides by the last down block type)."""
        return self.down_block_types[-1] == "LTXVideo095DownBlock3D"

    @property
    def spatial_ratio(self) -> int:
        """Pixels per latent along height and width (diffusers' ``spatial_compression_ratio``)."""
        if self.spatial_compression_ratio is not None:
            return self.spatial_compression_ratio
        return self.patch_size * 2 ** sum(self.spatio_temporal_scaling)

    @property
    def temporal_ratio(self) -> int:
        """Frames per latent frame after the first (diffusers' ``temporal_compression_ratio``)."""
        if self.temporal_compression_ratio is not None:
            return self.temporal_compression_ratio
        return self.patch_size_t * 2 ** sum(self.spatio_temporal_scaling)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "VAEConfig":
        return _dataclass_from_dict(cls, config)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "VAEConfig":
        return config_from_json(cls, path)

    def to_dict(self) -> dict:
        return {"_class_name": "AutoencoderKLLTXVideo", **dataclasses.asdict(self)}

    def replace(self, **changes) -> "VAEConfig":
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------------------- latent upsampler

GROUP_NORM_GROUPS = 32  # every GroupNorm of the latent upsampler (diffusers' and the original's constant)


@dataclasses.dataclass(frozen=True)
class LatentUpsamplerConfig:
    """Architecture of diffusers' ``LTXLatentUpsamplerModel`` / the original's ``LatentUpsampler`` (their field
    names; diffusers' defaults = the released spatial upscalers).

    ``dims`` 3: 3-D convolutions over [F, H, W] (the spatial upsampling conv still runs per frame); 2: everything per
    frame. ``spatial_upsample`` doubles height and width, ``temporal_upsample`` takes F latent frames to 2F - 1.
    """

    in_channels: int = 128
    mid_channels: int = 512
    num_blocks_per_stage: int = 4
    dims: int = 3
    spatial_upsample: bool = True
    temporal_upsample: bool = False

    def __post_init__(self):
        if self.dims not in (2, 3):
            raise ValueError(f"dims={self.dims}; the latent upsampler has 2-D (per frame) or 3-D convolutions.")
        if not (self.spatial_upsample or self.temporal_upsample):
            raise ValueError("spatial_upsample and temporal_upsample are both false; an upsampler needs one of them.")
        if self.dims == 2 and self.temporal_upsample:
            raise ValueError("dims=2 runs every frame on its own and cannot upsample in time; use dims=3.")
        _check_fields(self, _INT_AT_LEAST_1, "in_channels", "mid_channels")
        _check_fields(self, _INT_AT_LEAST_0, "num_blocks_per_stage")
        if self.mid_channels % GROUP_NORM_GROUPS:
            raise ValueError(f"mid_channels={self.mid_channels} must be a multiple of {GROUP_NORM_GROUPS} (GroupNorm "
                             f"groups).")

    @property
    def spatial_scale(self) -> int:
        return 2 if self.spatial_upsample else 1

    def output_frames(self, frames: int) -> int:
        """Latent frames out for ``frames`` in (2F - 1 when upsampling in time: the first frame is dropped)."""
        return 2 * frames - 1 if self.temporal_upsample else frames

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "LatentUpsamplerConfig":
        return _dataclass_from_dict(cls, config)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "LatentUpsamplerConfig":
        return config_from_json(cls, path)

    def to_dict(self) -> dict:
        return {"_class_name": "LTXLatentUpsamplerModel", **dataclasses.asdict(self)}

    def replace(self, **changes) -> "LatentUpsamplerConfig":
        return dataclasses.replace(self, **changes)

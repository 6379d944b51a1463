"""Frozen model configs whose field names are diffusers' ``config.json`` names.

A config holds only what defines the architecture (and therefore the checkpoint layout). Runtime
choices (compute dtype, attention backend, rematerialisation) are fields of the modules instead.

    >>> cfg = TransformerConfig.from_json("LTX-Video/transformer/config.json")
    >>> cfg = TRANSFORMER_PRESETS["ltx-video-2b"]
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

# Keys diffusers writes into every config.json that carry no architecture.
_DIFFUSERS_BOOKKEEPING_KEYS = frozenset({"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"})


def _dataclass_from_dict(cls, config: Mapping[str, Any], *, ignored: frozenset[str] = frozenset()):
    """Builds ``cls`` from a config dict, raising on keys the dataclass does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in config if k not in names and k not in _DIFFUSERS_BOOKKEEPING_KEYS and k not in ignored)
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown config keys {unknown}. Known keys: {sorted(names)}. "
            "If this is a newer diffusers config, the field is not supported by ltx_jax yet."
        )
    kwargs = {k: v for k, v in config.items() if k in names}
    for key, value in kwargs.items():  # JSON has lists where the dataclass wants tuples
        if isinstance(value, list):
            kwargs[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return cls(**kwargs)


def read_json(path: str | os.PathLike) -> dict:
    """Reads a JSON file, with an error that names the file when it is not valid JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


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
        if self.activation_fn not in ("gelu-approximate", "gelu"):
            raise ValueError(f"activation_fn={self.activation_fn!r} is not supported; use 'gelu-approximate' or 'gelu'.")
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
        return cls.from_dict(read_json(path))

    def to_dict(self) -> dict:
        return {"_class_name": "LTXVideoTransformer3DModel", **dataclasses.asdict(self)}

    def replace(self, **changes) -> "TransformerConfig":
        return dataclasses.replace(self, **changes)


TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    # 0.9.0 - 0.9.6 and 0.9.8 2B: 28 layers, 32 heads x 64, width 2048.
    "ltx-video-2b": TransformerConfig(),
    # 0.9.7 / 0.9.8 13B: 48 layers, 32 heads x 128, width 4096.
    "ltx-video-13b": TransformerConfig(num_layers=48, attention_head_dim=128, cross_attention_dim=4096),
}

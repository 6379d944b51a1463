"""Frozen configs of the Gemma text models that encode LTX-2's prompts, with transformers' field names.

    Gemma3TextConfig  <- transformers' ``Gemma3TextConfig`` (model_type "gemma3_text"): LTX-2 / 2.3's encoder,
                         Gemma 3 12B, inside a ``Gemma3ForConditionalGeneration`` folder (model_type "gemma3").
    Gemma4TextConfig  <- transformers' ``Gemma4UnifiedTextConfig`` (model_type "gemma4_unified_text"): LTX-2.5's
                         encoder, Lightricks' fine-tune of Gemma 4 12B in a ``Gemma4UnifiedForConditionalGeneration``
                         folder (model_type "gemma4_unified").

Only what defines the text model (and so its weights and its hidden states) is kept. ``from_dict`` reads a text config
or a whole multimodal ``config.json`` (its ``text_config``), in transformers 4.x form (``rope_theta``,
``rope_local_base_freq``, ``rope_scaling``, ``sliding_window_pattern``) or 5.x form (``rope_parameters`` per layer type,
``layer_types``); known keys that do not change the text model are dropped one by one (``_GEMMA_IGNORED_KEYS``), any
other key raises, and switches we do not implement raise unless they hold their "off" value.

``rope_parameters`` keeps transformers' nesting as frozen dataclasses (hashable, so a module holding the config can be a
jit static argument): ``config.rope_parameters.full_attention.rope_theta`` is transformers'
``config.rope_parameters["full_attention"]["rope_theta"]``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from ltx_jax.configs import read_json

LAYER_TYPES = ("sliding_attention", "full_attention")
ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_new", "gelu", "silu")

# Keys of a transformers Gemma text config that do not change the hidden states: bookkeeping, training-only
# settings, generation / LM-head settings (the encoder never computes logits), cache and kernel choices.
_GEMMA_IGNORED_KEYS = frozenset({
    "_name_or_path", "architectures", "dtype", "torch_dtype", "transformers_version", "_commit_hash",
    "_attn_implementation_autoset", "id2label", "label2id", "problem_type", "finetuning_task", "tokenizer_class",
    "prefix", "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
    "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward", "task_specific_params", "is_encoder_decoder",
    "initializer_range", "attention_dropout", "gradient_checkpointing",
    "use_cache", "cache_implementation", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings",
    "final_logit_softcapping", "max_position_embeddings",  # positions < max; the RoPE types we run ignore it
    "model_type",  # checked by from_dict
})
# Keys of the multimodal wrapper config (Gemma3Config / Gemma4UnifiedConfig) around ``text_config``: the vision (and
# audio) side and the special-token ids; the text model does not read them.
_WRAPPER_MODEL_TYPES = {"gemma3": "gemma3_text", "gemma4_unified": "gemma4_unified_text"}


@dataclasses.dataclass(frozen=True)
class RopeParameters:
    """One layer type's RoPE, transformers' ``rope_parameters[layer_type]`` keys.

    ``rope_type``: "default"; "linear" (inverse frequencies divided by ``factor``: Gemma 3 12B's global layers, 8);
    "proportional" (Gemma 4's global layers: only the first ``partial_rotary_factor`` of each head is rotated, with
    frequencies ``rope_theta ** (-2i / head_dim)``; the rest passes unrotated).
    """

    rope_type: str = "default"
    rope_theta: float = 10_000.0
    factor: float = 1.0
    partial_rotary_factor: float = 1.0

    def __post_init__(self):
        if self.rope_type not in ("default", "linear", "proportional"):
            raise ValueError(f"rope_type={self.rope_type!r} is not supported; Gemma 3 and 4 use 'default', 'linear' "
                             "and 'proportional'.")
        for name in ("rope_theta", "factor"):
            if not _is_number(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"RopeParameters: {name}={getattr(self, name)!r} must be a number > 0.")
        if not _is_number(self.partial_rotary_factor) or not 0 < self.partial_rotary_factor <= 1:
            raise ValueError(f"RopeParameters: partial_rotary_factor={self.partial_rotary_factor!r} must be in (0, 1].")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RopeParameters":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"rope parameters: unknown keys {unknown}; known: {sorted(fields)}.")
        return cls(**d)

    def to_dict(self) -> dict:
        out = {"rope_type": self.rope_type, "rope_theta": self.rope_theta}
        if self.rope_type != "default" and self.factor != 1.0:
            out["factor"] = self.factor
        if self.partial_rotary_factor != 1.0:
            out["partial_rotary_factor"] = self.partial_rotary_factor
        return out


@dataclasses.dataclass(frozen=True)
class RopeParametersByLayerType:
    """transformers' ``rope_parameters`` dict: one ``RopeParameters`` per layer type."""

    full_attention: RopeParameters
    sliding_attention: RopeParameters

    def to_dict(self) -> dict:
        return {t: getattr(self, t).to_dict() for t in LAYER_TYPES}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _layer_types(config: Mapping[str, Any], num_layers: int, pattern_default: int) -> tuple[str, ...]:
    """``layer_types`` as given, or transformers' derivation from ``sliding_window_pattern`` (every pattern-th layer
    global)."""
    if config.get("layer_types") is not None:
        return tuple(config["layer_types"])
    pattern = config.get("sliding_window_pattern", config.get("_sliding_window_pattern", pattern_default))
    if not _is_int(pattern) or pattern < 1:
        raise ValueError(f"sliding_window_pattern={pattern!r} must be an int >= 1.")
    return tuple("sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(num_layers))


def _unwrap(config: Mapping[str, Any], text_type: str, cls_name: str) -> dict:
    """The text config of a multimodal wrapper config (its ``text_config``), or the text config itself."""
    model_type = config.get("model_type", text_type)
    if model_type in _WRAPPER_MODEL_TYPES:
        if _WRAPPER_MODEL_TYPES[model_type] != text_type:
            raise ValueError(f"{cls_name}: a {model_type!r} config wraps a {_WRAPPER_MODEL_TYPES[model_type]!r} text "
                             f"model, not a {text_type!r} one; use the config class of that family "
                             "(gemma_text_config_from_dict picks it).")
        text = dict(config.get("text_config") or {})
        text.setdefault("model_type", text_type)
        return text
    if model_type != text_type:
        raise ValueError(f"{cls_name}: model_type={model_type!r}; expected {text_type!r} (or its wrapper).")
    return dict(config)


def _check_common(cfg) -> None:
    name = type(cfg).__name__
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "sliding_window"):
        if not _is_int(getattr(cfg, field)) or getattr(cfg, field) < 1:
            raise ValueError(f"{name}: {field}={getattr(cfg, field)!r} must be an int >= 1 (fix the config).")
    if not _is_number(cfg.rms_norm_eps) or cfg.rms_norm_eps < 0:
        raise ValueError(f"{name}: rms_norm_eps={cfg.rms_norm_eps!r} must be a number >= 0.")
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise ValueError(f"{name}: num_attention_heads={cfg.num_attention_heads} is not a multiple of "
                         f"num_key_value_heads={cfg.num_key_value_heads} (grouped-query attention).")
    if cfg.hidden_activation not in ACTIVATIONS:
        raise ValueError(f"{name}: hidden_activation={cfg.hidden_activation!r}; use one of {ACTIVATIONS}.")
    if len(cfg.layer_types) != cfg.num_hidden_layers or set(cfg.layer_types) - set(LAYER_TYPES):
        raise ValueError(f"{name}: layer_types must hold num_hidden_layers={cfg.num_hidden_layers} entries from "
                         f"{LAYER_TYPES}; got {cfg.layer_types!r}.")
    if not isinstance(cfg.rope_parameters, RopeParametersByLayerType):
        raise ValueError(f"{name}: rope_parameters must be a RopeParametersByLayerType.")


def _rope_from_dict(rope: Mapping[str, Any]) -> RopeParametersByLayerType:
    missing = [t for t in LAYER_TYPES if not isinstance(rope.get(t), Mapping)]
    if missing or set(rope) - set(LAYER_TYPES):
        raise ValueError(f"rope_parameters must map exactly {LAYER_TYPES} to their parameters; got {sorted(rope)}.")
    return RopeParametersByLayerType(**{t: RopeParameters.from_dict(rope[t]) for t in LAYER_TYPES})


def _build(cls, config: Mapping[str, Any], ignored: frozenset[str]):
    """``cls(**config)`` for the keys it knows, after refusing unknown keys; lists become tuples."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in config if k not in fields and k not in ignored)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {unknown}. Known keys: {sorted(fields)}. A newer "
                         "transformers config may carry a switch ltx_jax does not implement yet.")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in fields}
    return cls(**kwargs)


def _refuse_on(cls_name: str, config: Mapping[str, Any], off: Mapping[str, tuple]) -> None:
    """Switches we do not implement: accepted only at one of their "off" values."""
    for key, allowed in off.items():
        if key in config and config[key] not in allowed:
            raise ValueError(f"{cls_name}: {key}={config[key]!r} is not supported (the LTX-2 text encoders have "
                             f"{allowed[0]!r}).")


# ------------------------------------------------------------------------------------------------- Gemma 3


@dataclasses.dataclass(frozen=True)
class Gemma3TextConfig:
    """Gemma 3's text model (transformers' ``Gemma3TextConfig`` names; defaults = transformers' = Gemma 3 2B).

    Layers: ``input_layernorm`` -> attention (q/k RMS norms, RoPE of the layer's type, scores scaled by
    ``query_pre_attn_scalar ** -0.5``, optional tanh soft-capping, a causal mask, a ``sliding_window`` on
    "sliding_attention" layers) -> ``post_attention_layernorm`` -> residual; ``pre_feedforward_layernorm`` ->
    gated MLP -> ``post_feedforward_layernorm`` -> residual. Every RMS norm multiplies by ``1 + weight``.
    """

    vocab_size: int = 262_208
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 256
    hidden_activation: str = "gelu_pytorch_tanh"
    rms_norm_eps: float = 1e-6
    query_pre_attn_scalar: float = 256
    sliding_window: int = 4096
    layer_types: tuple[str, ...] | None = None  # None: every 6th layer global (transformers' default pattern)
    attn_logit_softcapping: float | None = None
    attention_bias: bool = False
    rope_parameters: RopeParametersByLayerType = RopeParametersByLayerType(
        full_attention=RopeParameters("default", 1_000_000.0), sliding_attention=RopeParameters("default", 10_000.0))

    model_type = "gemma3_text"

    def __post_init__(self):
        if self.layer_types is None:
            object.__setattr__(self, "layer_types", _layer_types({}, self.num_hidden_layers, 6))
        _check_common(self)
        if not _is_number(self.query_pre_attn_scalar) or self.query_pre_attn_scalar <= 0:
            raise ValueError(f"Gemma3TextConfig: query_pre_attn_scalar={self.query_pre_attn_scalar!r} must be > 0.")
        if self.attn_logit_softcapping is not None and not (
                _is_number(self.attn_logit_softcapping) and self.attn_logit_softcapping > 0):
            raise ValueError(f"Gemma3TextConfig: attn_logit_softcapping={self.attn_logit_softcapping!r} must be None "
                             "or > 0.")
        if any(r.rope_type == "proportional" for r in (self.rope_parameters.full_attention,
                                                       self.rope_parameters.sliding_attention)):
            raise ValueError("Gemma3TextConfig: 'proportional' RoPE is Gemma 4's; Gemma 3 uses 'default' / 'linear'.")

    def layer_head_dim(self, layer_type: str) -> int:
        return self.head_dim

    def layer_kv_heads(self, layer_type: str) -> int:
        return self.num_key_value_heads

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "Gemma3TextConfig":
        """From a transformers ``Gemma3TextConfig`` dict or a ``Gemma3Config`` (``Gemma3ForConditionalGeneration``)
        one, transformers 4.x or 5.x form."""
        text = _unwrap(config, cls.model_type, cls.__name__)
        _refuse_on(cls.__name__, text, {"use_bidirectional_attention": (False, None)})
        num_layers = text.get("num_hidden_layers", cls.num_hidden_layers)
        text["layer_types"] = list(_layer_types(text, num_layers, 6))
        if "rope_parameters" in text and text["rope_parameters"] is not None:
            rope = _rope_from_dict(text.pop("rope_parameters"))
        else:  # transformers 4.x: rope_theta (global), rope_local_base_freq (local), rope_scaling (global only)
            scaling = dict(text.pop("rope_scaling", None) or {"rope_type": "default"})
            scaling.setdefault("rope_type", scaling.pop("type", "default"))
            full = RopeParameters.from_dict({**scaling, "rope_theta": text.pop("rope_theta", 1_000_000.0)})
            sliding = RopeParameters("default", text.pop("rope_local_base_freq", 10_000.0))
            rope = RopeParametersByLayerType(full, sliding)
        for key in ("rope_theta", "rope_local_base_freq", "rope_scaling"):  # 5.x dumps may keep them beside
            text.pop(key, None)
        text["rope_parameters"] = rope
        ignored = _GEMMA_IGNORED_KEYS | {"sliding_window_pattern", "_sliding_window_pattern",
                                         "use_bidirectional_attention"}
        return _build(cls, text, ignored)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Gemma3TextConfig":
        return _from_json(cls.from_dict, path)

    def to_dict(self) -> dict:
        """A text config dict that ``from_dict`` and ``transformers.Gemma3TextConfig(**d)`` read back."""
        d = dataclasses.asdict(self)
        d["layer_types"] = list(self.layer_types)
        d["rope_parameters"] = self.rope_parameters.to_dict()
        return {"model_type": self.model_type, **d}

    def replace(self, **changes) -> "Gemma3TextConfig":
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------------------- Gemma 4


@dataclasses.dataclass(frozen=True)
class Gemma4TextConfig:
    """Gemma 4's unified text model (transformers' ``Gemma4UnifiedTextConfig`` names), as Gemma 3 but:

    - RMS norms multiply by ``weight`` (not ``1 + weight``); values get a weightless RMS norm (``v_norm``);
    - scores are not scaled (``scaling = 1``); no soft-capping;
    - "full_attention" layers have their own head width ``global_head_dim`` and, with ``attention_k_eq_v``,
      ``num_global_key_value_heads`` key heads whose projection is also the value (no ``v_proj``);
    - RoPE "proportional" on full layers (a quarter of each head rotated), "default" on sliding ones;
    - every layer's output is multiplied by its ``layer_scalar`` (a stored [1] tensor).

    KV sharing across layers (``num_kv_shared_layers``), the dense Gemma 4's per-layer input embeddings and MoE are
    not part of the 12B unified model and are refused.
    """

    vocab_size: int = 262_144
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 30
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 256
    global_head_dim: int = 512
    num_global_key_value_heads: int | None = None  # None: num_key_value_heads
    attention_k_eq_v: bool = False
    hidden_activation: str = "gelu_pytorch_tanh"
    rms_norm_eps: float = 1e-6
    sliding_window: int = 1024
    layer_types: tuple[str, ...] | None = None  # None: every 6th layer global, and the last one
    attention_bias: bool = False
    rope_parameters: RopeParametersByLayerType = RopeParametersByLayerType(
        full_attention=RopeParameters("proportional", 1_000_000.0, partial_rotary_factor=0.25),
        sliding_attention=RopeParameters("default", 10_000.0))

    model_type = "gemma4_unified_text"

    def __post_init__(self):
        if self.layer_types is None:
            object.__setattr__(self, "layer_types", _layer_types({}, self.num_hidden_layers, 6))
        if self.layer_types and self.layer_types[-1] != "full_attention":  # transformers forces it (with a warning)
            object.__setattr__(self, "layer_types", tuple(self.layer_types[:-1]) + ("full_attention",))
        _check_common(self)
        if not _is_int(self.global_head_dim) or self.global_head_dim < 1:
            raise ValueError(f"Gemma4TextConfig: global_head_dim={self.global_head_dim!r} must be an int >= 1.")
        kv = self.full_kv_heads
        if not _is_int(kv) or kv < 1 or self.num_attention_heads % kv:
            raise ValueError(f"Gemma4TextConfig: num_global_key_value_heads={kv!r} must divide num_attention_heads.")
        if self.rope_parameters.sliding_attention.rope_type == "proportional":
            raise ValueError("Gemma4TextConfig: sliding layers use 'default' RoPE.")

    def layer_head_dim(self, layer_type: str) -> int:
        return self.global_head_dim if layer_type == "full_attention" else self.head_dim

    @property
    def full_kv_heads(self) -> int:
        """Key/value heads of the full-attention layers (``num_global_key_value_heads``, else the sliding layers')."""
        if self.num_global_key_value_heads is not None:
            return self.num_global_key_value_heads
        return self.num_key_value_heads

    def layer_kv_heads(self, layer_type: str) -> int:
        return self.full_kv_heads if layer_type == "full_attention" else self.num_key_value_heads

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "Gemma4TextConfig":
        """From a transformers ``Gemma4UnifiedTextConfig`` dict or a ``Gemma4UnifiedConfig`` one."""
        text = _unwrap(config, cls.model_type, cls.__name__)
        _refuse_on(cls.__name__, text, {
            "num_kv_shared_layers": (0,), "enable_moe_block": (False,), "num_experts": (None, 0),
            "top_k_experts": (None, 0), "moe_intermediate_size": (None, 0), "hidden_size_per_layer_input": (0, None),
            "use_bidirectional_attention": ("vision", None),  # "vision": bidirectional over image tokens only
        })
        num_layers = text.get("num_hidden_layers", cls.num_hidden_layers)
        layer_types = _layer_types(text, num_layers, 6)
        layer_types = layer_types[:-1] + ("full_attention",)  # transformers forces the last layer global
        text["layer_types"] = list(layer_types)
        if not text.get("attention_k_eq_v", False):  # transformers applies it to full layers only with k_eq_v
            text.pop("num_global_key_value_heads", None)
        per_layer = text.pop("per_layer_config", None)
        if per_layer:  # transformers >= 5.15 writes the full layers' head_dim / kv heads as per-layer overrides
            _read_per_layer_config(text, per_layer, layer_types, cls)
        if text.get("rope_parameters") is not None:
            text["rope_parameters"] = _rope_from_dict(text["rope_parameters"])
        else:
            text.pop("rope_parameters", None)
        ignored = _GEMMA_IGNORED_KEYS | {
            "num_kv_shared_layers", "enable_moe_block", "num_experts", "top_k_experts", "moe_intermediate_size",
            "hidden_size_per_layer_input", "vocab_size_per_layer_input", "use_bidirectional_attention",
            "use_double_wide_mlp",  # widens only KV-shared layers' MLPs, and there are none (num_kv_shared_layers 0)
            "sliding_window_pattern", "_sliding_window_pattern",
        }
        return _build(cls, text, ignored)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Gemma4TextConfig":
        return _from_json(cls.from_dict, path)

    def to_dict(self) -> dict:
        """A text config dict that ``from_dict`` and ``transformers.Gemma4UnifiedTextConfig(**d)`` read back (the
        full layers' head width and key heads as transformers' ``per_layer_config`` overrides)."""
        d = dataclasses.asdict(self)
        del d["global_head_dim"], d["num_global_key_value_heads"]
        d["per_layer_config"] = {
            str(i): {"head_dim": self.global_head_dim, "num_key_value_heads": self.full_kv_heads}
            for i, t in enumerate(self.layer_types) if t == "full_attention"}
        d["layer_types"] = list(self.layer_types)
        d["rope_parameters"] = self.rope_parameters.to_dict()
        return {"model_type": self.model_type, **d}

    def replace(self, **changes) -> "Gemma4TextConfig":
        return dataclasses.replace(self, **changes)


def _read_per_layer_config(text: dict, per_layer: Mapping[str, Any], layer_types: tuple[str, ...], cls) -> None:
    """Folds transformers' ``per_layer_config`` ({layer index: {"head_dim", "num_key_value_heads"}}, the rest of each
    layer taken from the global keys) into ``head_dim`` / ``num_key_value_heads`` (sliding layers) and
    ``global_head_dim`` / ``num_global_key_value_heads`` (full layers); each layer type must be uniform."""
    overrides = {}
    for index, layer in per_layer.items():
        i = int(index)
        if not 0 <= i < len(layer_types) or not isinstance(layer, Mapping):
            raise ValueError(f"Gemma4TextConfig: per_layer_config entry {index!r} is not a layer's overrides.")
        unknown = sorted(set(layer) - {"head_dim", "num_key_value_heads"})
        if unknown:
            raise ValueError(f"Gemma4TextConfig: per_layer_config overrides {unknown} of layer {i} are not supported "
                             "(only head_dim and num_key_value_heads differ between Gemma 4's layer types).")
        overrides[i] = layer
    head, kv = text.get("head_dim", cls.head_dim), text.get("num_key_value_heads", cls.num_key_value_heads)
    by_type: dict[str, set] = {}
    for i, layer_type in enumerate(layer_types):
        layer = overrides.get(i, {})
        by_type.setdefault(layer_type, set()).add((layer.get("head_dim", head), layer.get("num_key_value_heads", kv)))
    for layer_type, values in by_type.items():
        if len(values) > 1:
            raise ValueError(f"Gemma4TextConfig: the {layer_type} layers differ in (head_dim, num_key_value_heads): "
                             f"{sorted(values)}; ltx_jax runs one shape per layer type.")
    if "sliding_attention" in by_type:
        (text["head_dim"], text["num_key_value_heads"]), = by_type["sliding_attention"]
    (text["global_head_dim"], text["num_global_key_value_heads"]), = by_type["full_attention"]


GemmaTextConfig = Gemma3TextConfig | Gemma4TextConfig


def gemma_text_config_from_dict(config: Mapping[str, Any]) -> GemmaTextConfig:
    """The text config of either family, picked by ``model_type`` (text or wrapper)."""
    model_type = config.get("model_type")
    if model_type in ("gemma3", "gemma3_text"):
        return Gemma3TextConfig.from_dict(config)
    if model_type in ("gemma4_unified", "gemma4_unified_text"):
        return Gemma4TextConfig.from_dict(config)
    raise ValueError(f"model_type={model_type!r} is not a Gemma text encoder of LTX-2; expected 'gemma3' (LTX-2, 2.3) "
                     "or 'gemma4_unified' (LTX-2.5), or their '_text' configs.")


def _from_json(from_dict, path):
    config = read_json(path)
    try:
        return from_dict(config)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# ------------------------------------------------------------------------------------------------- presets

#: The released text encoders' architectures. "gemma-3-12b": google/gemma-3-12b-it's ``text_config`` as public LTX-2
#: ports copy the text encoder's config.json (transformers 4.51 / 4.57 dumps, identical: rope_theta 1e6 with linear
#: scaling 8 on global layers, rope_local_base_freq 1e4, sliding_window 1024, a global layer every 6th, vocab 262208).
#: "gemma-4-12b": google/gemma-4-12B's ``text_config`` (its config.json, a transformers 5.10 dump), the architecture
#: of LTX-2.5's fine-tuned encoder (which adds ``gemma_version`` at the top level).
GEMMA_PRESETS: dict[str, GemmaTextConfig] = {
    "gemma-3-12b": Gemma3TextConfig.from_dict({
        "model_type": "gemma3_text", "vocab_size": 262_208, "hidden_size": 3840, "intermediate_size": 15_360,
        "num_hidden_layers": 48, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
        "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024, "sliding_window_pattern": 6, "hidden_activation": "gelu_pytorch_tanh",
    }),
    "gemma-4-12b": Gemma4TextConfig.from_dict({
        "model_type": "gemma4_unified_text", "vocab_size": 262_144, "hidden_size": 3840, "intermediate_size": 15_360,
        "num_hidden_layers": 48, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
        "global_head_dim": 512, "num_global_key_value_heads": 1, "attention_k_eq_v": True, "rms_norm_eps": 1e-6,
        "sliding_window": 1024, "sliding_window_pattern": 6, "hidden_activation": "gelu_pytorch_tanh",
        "rope_parameters": {
            "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0, "rope_type": "proportional"},
            "sliding_attention": {"rope_theta": 10_000.0, "rope_type": "default"}},
    }),
}

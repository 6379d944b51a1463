"""LoRA adapters to train: created on the transformer's linears, kept as the ``"lora"`` variable collection that
``layers.Dense`` runs (``a`` [in, r], ``b`` [r, out], ``scale`` [r]; [L, ...] in the scanned blocks), and exported
to the files diffusers, ComfyUI and ``weight_conversion.lora.read_lora`` load.

Initialisation as PEFT's default: A uniform in +-1/sqrt(in) (``kaiming_uniform_(a=sqrt(5))``), B zeros, so a new
adapter changes nothing; scale ``alpha / rank``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from ltx_jax.files import atomic_file
from weight_conversion.lora import lora_targets
from weight_conversion.mapping import flatten, unflatten
from weight_conversion.transformer import torch_key

# LTX-Video-Trainer's default targets: the attention projections of both attentions of every block.
DEFAULT_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
FORMATS = ("diffusers", "comfyui")


def _targets(params: Mapping, num_layers: int) -> dict:
    return lora_targets(params, torch_key, {"transformer_blocks": num_layers})


def _matches(name: str, patterns: Sequence[str]) -> bool:
    """PEFT's ``target_modules`` rule: the module name is a pattern or ends with "." + the pattern."""
    return any(name == p or name.endswith("." + p) for p in patterns)


def init_lora(model, params: Mapping, key: jax.Array, *, rank: int, alpha: float,
              target_modules: Sequence[str] = DEFAULT_TARGETS) -> tuple[dict, dict]:
    """A new adapter on the transformer's linears named by ``target_modules`` (every layer of the scanned blocks).

    Returns ``(trainable, fixed)``: ``{path: {"a", "b"}}`` float32 (what the optimizer changes) and
    ``{path: {"scale"}}``; ``merge_lora(trainable, fixed)`` is the ``"lora"`` collection.
    """
    if rank < 1 or alpha <= 0:
        raise ValueError(f"rank={rank}, alpha={alpha}: the rank must be >= 1 and alpha > 0.")
    targets = _targets(params, model.config.num_layers)
    chosen = {n: t for n, t in targets.items() if _matches(n, target_modules)}
    if not chosen:
        raise ValueError(f"target_modules={list(target_modules)} name no linear layer of the transformer; e.g. "
                         f"{sorted({n.split('.')[-1] for n in targets})[:12]}")
    by_path: dict = {}
    for name, target in chosen.items():
        by_path.setdefault(target.path, target)
    trainable, fixed = {}, {}
    for i, (path, target) in enumerate(sorted(by_path.items())):
        lead = (target.layers,) if target.layers else ()
        bound = 1.0 / np.sqrt(target.in_features)
        down = jax.random.uniform(jax.random.fold_in(key, i), lead + (target.in_features, rank), jnp.float32,
                                  -bound, bound)  # A: in -> rank
        trainable[path + ("a",)] = down
        trainable[path + ("b",)] = jnp.zeros(lead + (rank, target.out_features), jnp.float32)
        fixed[path + ("scale",)] = jnp.full(lead + (rank,), alpha / rank, jnp.float32)
    return unflatten(trainable), unflatten(fixed)


def merge_lora(trainable: Mapping, fixed: Mapping, dtype: Any = jnp.float32) -> dict:
    """The ``"lora"`` collection from the two halves (cast to the compute dtype)."""
    flat = {p: v.astype(dtype) for p, v in {**flatten(trainable), **flatten(fixed)}.items()}
    return unflatten(flat)


def _module_names(path: tuple[str, ...], layers: int | None) -> list[str]:
    name = torch_key(path + ("kernel",))[: -len(".weight")]
    return [name.format(i=i) for i in range(layers)] if layers else [name]


def export_lora(trainable: Mapping, fixed: Mapping, path: str | os.PathLike, *, rank: int, alpha: float,
                target_modules: Sequence[str] = DEFAULT_TARGETS, format: str = "diffusers") -> str:
    """Writes the adapter as a safetensors file (atomically, replacing an earlier export; the umask's permissions):
    ``format="diffusers"`` (diffusers' / PEFT's ``transformer.<module>.lora_A.weight`` [r, in] / ``lora_B.weight``
    [out, r], the adapter config in the ``lora_adapter_metadata`` entry as diffusers' ``save_lora_weights`` writes
    it) or ``"comfyui"`` (``diffusion_model.<native module>.lora_A/B.weight`` and ``.alpha``). Returns the path."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; use one of {FORMATS}.")
    path = os.fspath(path)
    tensors, flat = {}, flatten(trainable)
    for p in sorted({p[:-1] for p in flat}):
        # A ("down", [in, r]) and B ("up", [r, out]) of the layer (of every layer, [L, ...], in the scanned blocks)
        down, up = np.asarray(flat[p + ("a",)], np.float32), np.asarray(flat[p + ("b",)], np.float32)
        layers = down.shape[0] if down.ndim == 3 else None
        for i, name in enumerate(_module_names(p, layers)):
            layer_down, layer_up = (down[i], up[i]) if layers else (down, up)
            if format == "diffusers":
                key = "transformer." + name
            else:
                key = "diffusion_model." + re.sub(r"^proj_in", "patchify_proj",
                                                  re.sub(r"^time_embed", "adaln_single", name))
                key = key.replace(".norm_q", ".q_norm").replace(".norm_k", ".k_norm")
                tensors[key + ".alpha"] = np.array(float(alpha), np.float32)
            tensors[key + ".lora_A.weight"] = np.ascontiguousarray(layer_down.T)
            tensors[key + ".lora_B.weight"] = np.ascontiguousarray(layer_up.T)
    metadata = {"format": "pt"}
    if format == "diffusers":
        config = {"r": int(rank), "lora_alpha": float(alpha), "target_modules": sorted(target_modules),
                  "lora_dropout": 0.0, "bias": "none", "init_lora_weights": True, "use_rslora": False,
                  "use_dora": False, "rank_pattern": {}, "alpha_pattern": {}}
        metadata["lora_adapter_metadata"] = json.dumps({f"transformer.{k}": v for k, v in config.items()},
                                                       indent=2, sort_keys=True)
    with atomic_file(path, overwrite=True) as tmp:  # complete or absent, with the umask's mode (not safetensors' 0600)
        save_file(tensors, tmp, metadata=metadata)
    return path

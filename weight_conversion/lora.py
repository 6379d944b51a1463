"""LoRA adapters for the LTX-Video transformer (and T5): reading the files people have, checking them against the
model, and turning them into what ``ltx_jax.models.layers.Dense`` runs.

Formats (safetensors only; nothing is unpickled):
- diffusers / PEFT: ``transformer.<module>.lora_A.weight`` [r, in] and ``.lora_B.weight`` [out, r] (diffusers'
  module names; ``text_encoder.<module>`` for T5), alpha from the ``lora_adapter_metadata`` entry diffusers writes
  (``transformer.lora_alpha``, ``alpha_pattern``, ``rank_pattern``, ``use_rslora``) or ``.alpha`` keys;
- non-diffusers (ComfyUI, Lightricks' LTX-Video-Trainer): ``diffusion_model.<module>.lora_A/lora_B`` or
  ``lora_down/lora_up``, module names in diffusers' or Lightricks' native spelling (``patchify_proj``,
  ``adaln_single``, ``q_norm``), ``.alpha`` per module.
Without any alpha an adapter scales by 1 (alpha = rank), as diffusers does.

A module's update is ``x @ A^T @ B^T * alpha / r * weight``. Two ways to run it:
- unfused: ``lora_collection`` builds the ``"lora"`` variable collection (``a`` [in, R], ``b`` [R, out],
  ``scale`` [R] per linear; [L, ...] for the scanned blocks, zeros for layers an adapter leaves alone; several
  adapters concatenated along R), applied at run time with traced scales;
- fused: ``kernel_delta`` / ``fuse`` add ``A^T B^T * scale`` to the kernels.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from weight_conversion.mapping import Path, flatten, unflatten
from weight_conversion.safetensors_io import CheckpointError, open_safetensors

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # what diffusers' save_lora_weights writes
_METADATA_KEY = "lora_adapter_metadata"
_NATIVE_RENAMES = (("patchify_proj", "proj_in"), ("adaln_single", "time_embed"), ("q_norm", "norm_q"),
                   ("k_norm", "norm_k"))
_SUFFIXES = ((".lora_A.weight", "a"), (".lora_down.weight", "a"), (".lora_B.weight", "b"), (".lora_up.weight", "b"),
             (".alpha", "alpha"))
# Key fragments of other model families' LoRAs, and what they are.
LTX_VIDEO, LTX_2 = "LTX-Video", "LTX-2"  # the families a LoRA can be read for
_OTHER_FAMILIES = (
    (re.compile(r"audio_|av_ca_|video_to_audio|audio_to_video"), "LTX-2 (audio-video)"),
    (re.compile(r"(^|\.)blocks\.\d+\.(self_attn|cross_attn|ffn)\."), "Wan"),
    (re.compile(r"double_blocks|single_blocks|single_transformer_blocks"), "Flux / HunyuanVideo"),
    (re.compile(r"lora_unet_|lora_te\d?_"), "a kohya-format Stable Diffusion / SDXL"),
    (re.compile(r"(down|up|mid)_blocks?\.\d+\.(attentions|resnets)"), "a Stable Diffusion UNet"),
)


@dataclasses.dataclass
class LoraModule:
    """One linear's adapter: ``a`` [in, r] (lora_A transposed), ``b`` [r, out] (lora_B transposed), and its scale
    ``alpha / r`` (or ``alpha / sqrt(r)`` with rsLoRA)."""

    a: np.ndarray
    b: np.ndarray
    scale: float

    @property
    def rank(self) -> int:
        return self.a.shape[1]


@dataclasses.dataclass
class LoraAdapter:
    """A LoRA file's adapters, by component ("transformer", "text_encoder") and torch module name
    (``transformer_blocks.3.attn1.to_q``)."""

    path: str
    components: dict[str, dict[str, LoraModule]]

    def modules(self, component: str) -> dict[str, LoraModule]:
        return self.components.get(component, {})


# ------------------------------------------------------------------------------------------ reading


def lora_file(path: str | os.PathLike) -> str:
    """The safetensors file of a LoRA: the path itself, or the one adapter file in a folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        named = os.path.join(path, LORA_WEIGHT_NAME)
        if os.path.isfile(named):
            return named
        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        if len(files) != 1:
            raise CheckpointError(f"{path}: expected {LORA_WEIGHT_NAME} or one .safetensors file, found "
                                  f"{files or 'none'}.")
        return os.path.join(path, files[0])
    if not os.path.isfile(path):
        raise CheckpointError(f"LoRA {path} does not exist.")
    if not path.endswith(".safetensors"):
        raise CheckpointError(f"LoRA {path}: only .safetensors files are read (nothing is unpickled); convert it "
                              "with safetensors first.")
    return path


def _split_key(key: str) -> tuple[str, str, str]:
    """A LoRA tensor key -> (component, torch module name, "a" | "b" | "alpha")."""
    name = key.removeprefix("base_model.model.")
    component = "transformer"
    if name.startswith("diffusion_model."):
        name = name.removeprefix("diffusion_model.")
        for old, new in _NATIVE_RENAMES:
            name = name.replace(old, new)
    elif name.startswith("transformer."):
        name = name.removeprefix("transformer.")
    elif name.startswith("text_encoder."):
        component, name = "text_encoder", name.removeprefix("text_encoder.")
    name = re.sub(r"\.(lora_[AB])\.[^.]+\.weight$", r".\1.weight", name)  # PEFT with an adapter name
    for suffix, kind in _SUFFIXES:
        if name.endswith(suffix):
            return component, name[: -len(suffix)], kind
    if "dora_scale" in name:
        raise CheckpointError(f"{key}: a DoRA adapter (dora_scale); ltx_jax runs LoRA adapters only.")
    raise CheckpointError(f"{key} is not a LoRA tensor (expected lora_A / lora_B / lora_down / lora_up weights or "
                          ".alpha).")


def _pattern_value(name: str, patterns: Mapping[str, Any], default):
    """PEFT's rank_pattern / alpha_pattern lookup: the first key that is the module name or a suffix of it."""
    for key, value in (patterns or {}).items():
        if name == key or re.fullmatch(rf"(.*\.)?{key}", name):
            return value
    return default


def read_lora(path: str | os.PathLike, family: str = LTX_VIDEO) -> LoraAdapter:
    """Reads a LoRA file (any format of the module docstring) into float32 factors per module; ``family`` is the
    model it is for (``LTX_VIDEO`` or ``LTX_2``): a LoRA whose keys name another family's modules is refused."""
    file = lora_file(path)
    source = open_safetensors(file)
    keys = list(source)
    if not keys:
        raise CheckpointError(f"LoRA {file} holds no tensors.")
    for pattern, other in _OTHER_FAMILIES:
        hits = [k for k in keys if pattern.search(k)]
        if hits and not other.startswith(family):
            raise CheckpointError(f"LoRA {file} is for {other} (keys such as {hits[0]!r}), not {family}; use a LoRA "
                                  f"trained on {family}.")
    try:
        metadata = json.loads(source.metadata.get(_METADATA_KEY, "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"LoRA {file}: its {_METADATA_KEY} metadata is not JSON: {e}") from e
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    for key in keys:
        component, name, kind = _split_key(key)
        parts.setdefault((component, name), {})[kind] = key
    components: dict[str, dict[str, LoraModule]] = {}
    for (component, name), found in sorted(parts.items()):
        if "a" not in found or "b" not in found:
            missing = "lora_B (up)" if "a" in found else "lora_A (down)"
            raise CheckpointError(f"LoRA {file}: {component} module {name!r} has no {missing} weight.")
        a = np.asarray(source[found["a"]], np.float32)  # [r, in]
        b = np.asarray(source[found["b"]], np.float32)  # [out, r]
        if a.ndim != 2 or b.ndim != 2:
            raise CheckpointError(f"LoRA {file}: {name!r} has factors of shapes {a.shape} and {b.shape}; LoRA "
                                  "factors of a linear are 2-D (convolutions are not supported).")
        rank = a.shape[0]
        if b.shape[1] != rank:
            raise CheckpointError(f"LoRA {file}: {name!r} has rank {rank} in lora_A {a.shape} but {b.shape[1]} in "
                                  f"lora_B {b.shape}; the two factors must share the rank.")
        prefix = f"{component}."
        alpha = _pattern_value(name, metadata.get(prefix + "alpha_pattern"), metadata.get(prefix + "lora_alpha"))
        if "alpha" in found:
            alpha = float(np.asarray(source[found["alpha"]]).reshape(-1)[0])
        alpha = float(rank if alpha is None else alpha)
        rslora = bool(metadata.get(prefix + "use_rslora", False))
        scale = alpha / (np.sqrt(rank) if rslora else rank)
        components.setdefault(component, {})[name] = LoraModule(np.ascontiguousarray(a.T), np.ascontiguousarray(b.T),
                                                                float(scale))
    return LoraAdapter(file, components)


# ------------------------------------------------------------------------------------------ the model's linears


@dataclasses.dataclass(frozen=True)
class LoraTarget:
    """A linear a LoRA can adapt: its Flax module path, the scanned layer (None outside the scan), its sizes."""

    path: Path
    layer: int | None
    layers: int | None
    in_features: int
    out_features: int


def lora_targets(abstract: Mapping, torch_key: Callable[[Path], str],
                 scanned: Mapping[str, int]) -> dict[str, LoraTarget]:
    """torch module name -> target, for every Dense kernel of a (possibly abstract) param tree; ``scanned`` maps the
    scanned top-level name to its layer count (``torch_key`` puts ``{i}`` where the layer goes)."""
    out = {}
    for path, leaf in flatten(abstract).items():
        if path[-1] != "kernel":
            continue
        layers = scanned.get(path[0])
        shape = tuple(leaf.shape[1:] if layers else leaf.shape)
        if len(shape) != 2:
            continue  # convolutions
        name = torch_key(path)
        name = name[: -len(".weight")]
        for layer in range(layers) if layers else [None]:
            out[name.format(i=layer) if layers else name] = LoraTarget(path[:-1], layer, layers, shape[0], shape[1])
    return out


def check_adapter(adapter: LoraAdapter, component: str, targets: Mapping[str, LoraTarget]) -> None:
    """Every module of ``adapter[component]`` names a linear of the model with the right sizes."""
    for name, module in adapter.modules(component).items():
        target = targets.get(name)
        if target is None:
            near = difflib.get_close_matches(name, list(targets), n=3, cutoff=0.5)
            raise CheckpointError(f"LoRA {adapter.path}: {name!r} matches no linear layer of the {component}"
                                  f"{'; nearest: ' + ', '.join(near) if near else ''}. Is it for another model?")
        if (module.a.shape[0], module.b.shape[1]) != (target.in_features, target.out_features):
            raise CheckpointError(f"LoRA {adapter.path}: {name!r} maps {module.a.shape[0]} -> {module.b.shape[1]} "
                                  f"features but the {component}'s layer maps {target.in_features} -> "
                                  f"{target.out_features}; the LoRA is for another model size.")


def _per_module(adapters: Sequence[tuple[LoraAdapter, float]], component: str, targets: Mapping[str, LoraTarget]):
    """Flax module path -> [(adapter index, layer or None, LoraModule, weight)]."""
    grouped: dict[Path, list] = {}
    for index, (adapter, weight) in enumerate(adapters):
        check_adapter(adapter, component, targets)
        for name, module in adapter.modules(component).items():
            target = targets[name]
            grouped.setdefault(target.path, []).append((index, target, module, float(weight)))
    return grouped


def lora_collection(adapters: Sequence[tuple[LoraAdapter, float]], component: str, targets: Mapping[str, LoraTarget],
                    dtype: Any = np.float32) -> dict:
    """The ``"lora"`` variable collection of ``adapters`` with their weights: per adapted linear ``a`` [in, R],
    ``b`` [R, out], ``scale`` [R] (R = the adapters' ranks side by side; a leading [L] for the scanned blocks, zeros
    where an adapter skips a layer). Weights only change ``scale``: the same adapters with other weights give arrays
    of the same shapes, so nothing recompiles."""
    flat = {}
    for path, entries in _per_module(adapters, component, targets).items():
        first = entries[0][1]
        ranks: dict[int, int] = {}
        for index, _, module, _ in entries:
            ranks[index] = max(ranks.get(index, 0), module.rank)
        offsets, total = {}, 0
        for index in sorted(ranks):
            offsets[index], total = total, total + ranks[index]
        lead = (first.layers,) if first.layers else ()
        a = np.zeros(lead + (first.in_features, total), np.float32)
        b = np.zeros(lead + (total, first.out_features), np.float32)
        scale = np.zeros(lead + (total,), np.float32)
        for index, target, module, weight in entries:
            cols = slice(offsets[index], offsets[index] + module.rank)
            at = (target.layer,) if target.layer is not None else ()
            a[at + (slice(None), cols)] = module.a
            b[at + (cols, slice(None))] = module.b
            scale[at + (cols,)] = module.scale * weight
        for leaf, value in (("a", a), ("b", b), ("scale", scale)):
            flat[path + (leaf,)] = value.astype(dtype)
    return unflatten(flat)


def kernel_deltas(adapters: Sequence[tuple[LoraAdapter, float]], component: str,
                  targets: Mapping[str, LoraTarget]) -> dict[Path, np.ndarray]:
    """Kernel path (``.../kernel``) -> the float32 update ``a @ b * scale * weight`` summed over ``adapters``, [in,
    out] or [L, in, out] for the scanned blocks (what fusing adds to the kernel)."""
    out: dict[Path, np.ndarray] = {}
    for path, entries in _per_module(adapters, component, targets).items():
        first = entries[0][1]
        lead = (first.layers,) if first.layers else ()
        delta = out.setdefault(path + ("kernel",), np.zeros(lead + (first.in_features, first.out_features),
                                                            np.float32))
        for _, target, module, weight in entries:
            update = (module.a * np.float32(module.scale * weight)) @ module.b
            if target.layer is None:
                delta += update
            else:
                delta[target.layer] += update
    return out


def fuse(params: Mapping, deltas: Mapping[Path, np.ndarray], sign: float = 1.0) -> dict:
    """``params`` with ``sign * delta`` added to each kernel of ``deltas`` (in float32, cast back to the kernel's
    dtype); quantized kernels refuse (fuse those at load: ``load_transformer(..., lora=...)``)."""
    flat = dict(flatten(params))
    for path, delta in deltas.items():
        kernel = flat[path]
        if jnp.issubdtype(kernel.dtype, jnp.integer) or kernel.dtype.itemsize == 1 or (
                path[:-1] + ("kernel_scale",)) in flat:
            raise ValueError(f"{'/'.join(path)} is quantized; fuse LoRA adapters at load time "
                             "(load_transformer(..., lora=[(file, scale)])) or run them unfused.")
        flat[path] = (kernel.astype(jnp.float32) + jnp.float32(sign) * jnp.asarray(delta)).astype(kernel.dtype)
    return unflatten(flat)


MAX_LORA_SCALE = 100.0  # an adapter's weight; the ones people use are within a few units of 1
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """``PATH[:SCALE]`` (the command line's --lora) -> (path, scale); any number after the last colon is the scale
    (``x.safetensors:.5``, ``:1e-1``), a scale that is not finite or past +-``MAX_LORA_SCALE`` is refused."""
    path, sep, scale = spec.rpartition(":")
    if not (sep and path and _NUMBER.fullmatch(scale.strip())):
        return spec, 1.0
    value = float(scale)
    if not (math.isfinite(value) and abs(value) <= MAX_LORA_SCALE):
        raise ValueError(f"--lora {spec}: the weight {scale} must be a finite number within +-{MAX_LORA_SCALE:g} "
                         "(1 applies the adapter as trained).")
    return path, value


def adapters_from(specs: Iterable[tuple[str | os.PathLike, float]],
                  family: str = LTX_VIDEO) -> list[tuple[LoraAdapter, float]]:
    """[(path, scale)] -> [(LoraAdapter, scale)] (``read_lora`` for ``family``)."""
    return [(read_lora(path, family), float(scale)) for path, scale in specs]


def file_deltas(specs: Iterable[tuple[str | os.PathLike, float]] | None, component: str, abstract: Mapping,
                torch_key: Callable[[Path], str], scanned: Mapping[str, int],
                family: str = LTX_VIDEO) -> dict[Path, np.ndarray]:
    """``kernel_deltas`` of LoRA files ``[(path, scale)]``, each checked against the model first; files without
    modules of ``component`` are skipped (a transformer LoRA passed to the text encoder); {} when none is left."""
    adapters = [(a, w) for a, w in adapters_from(specs or [], family) if a.modules(component)]
    return kernel_deltas(adapters, component, lora_targets(abstract, torch_key, scanned)) if adapters else {}


def loading_delta(specs: Iterable[tuple[str | os.PathLike, float]] | None, component: str, abstract: Mapping,
                  torch_key: Callable[[Path], str], scanned: Mapping[str, int], also=None, family: str = LTX_VIDEO):
    """The ``mapping.KernelDelta`` that fuses LoRA files while a checkpoint is converted (``load_transformer(...,
    lora=[(file, scale)])``): ``file_deltas`` per layer, plus ``also`` (another KernelDelta) where given; ``also``
    itself when the files adapt nothing of ``component``."""
    deltas = file_deltas(specs, component, abstract, torch_key, scanned, family)
    if not deltas:
        return also

    def delta(path: Path, layer: int | None, shape: tuple[int, ...]):
        found = deltas.get(tuple(path))
        found = None if found is None else (found if layer is None else found[layer])
        extra = None if also is None else also(path, layer, shape)
        if found is None or extra is None:
            return found if extra is None else extra
        return found + extra

    return delta

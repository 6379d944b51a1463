"""diffusers' LoRA API on every pipeline: ``load_lora_weights``, ``set_adapters``, ``fuse_lora``, ``unfuse_lora``,
``unload_lora_weights``.

    pipe.load_lora_weights("cakeify.safetensors", adapter_name="cakeify")
    pipe.load_lora_weights("squish.safetensors", adapter_name="squish")
    pipe.set_adapters(["cakeify", "squish"], [0.7, 0.4])     # both, weighted: nothing recompiles
    frames = pipe(prompt="CAKEIFY ...")
    pipe.fuse_lora()                                          # merged into the kernels: no run-time cost

Unfused adapters run inside the compiled loop as a ``"lora"`` variable collection beside the params
(``weight_conversion.lora.lora_collection``): their weights are traced values, so new weights never recompile, and
other adapters recompile only when their ranks or target layers differ. A newly loaded adapter becomes the active
one (alone, weight 1), as in diffusers. Adapters with T5 modules (``text_encoder.*``) adapt the prompt encoder too.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax.numpy as jnp

from ltx_jax.models.layers import LORA_COLLECTION
from ltx_jax.text_encoding import PromptEncoder
from weight_conversion import t5 as t5_conversion
from weight_conversion import transformer as transformer_conversion
from weight_conversion.lora import check_adapter, fuse, kernel_deltas, lora_collection, lora_targets, read_lora
from weight_conversion.mapping import flatten, unflatten


@dataclasses.dataclass
class LoraState:
    """The adapters a pipeline holds: loaded (name -> ``weight_conversion.lora.LoraAdapter``), active at run time
    [(name, weight)], fused into the params [(name, weight)]."""

    adapters: dict = dataclasses.field(default_factory=dict)
    active: list = dataclasses.field(default_factory=list)
    fused: list = dataclasses.field(default_factory=list)
    cache: dict = dataclasses.field(default_factory=dict)  # (component, active) -> collection


def _component_spec(pipe, component: str):
    """(torch_key, scanned {name: layers}, params) of a component of ``pipe``."""
    if component == "transformer":
        return (transformer_conversion.torch_key, {"transformer_blocks": pipe.transformer.config.num_layers},
                pipe.transformer_params)
    encoder = pipe.prompt_encoder
    return t5_conversion.torch_key, {"block": encoder.module.config.num_layers}, encoder.params


class LoraMixin:
    """The LoRA methods of ``PipelineBase`` (module docstring)."""

    def _copy_lora_state(self, other) -> None:
        """A pipeline made from ``other`` (``from_pipe``) starts with its adapters, active and fused alike (its own
        copy of the lists: the two then change apart, as their params do)."""
        state = getattr(other, "_lora", None)
        if state is not None:
            self._lora = LoraState(dict(state.adapters), list(state.active), list(state.fused), dict(state.cache))

    @property
    def lora_state(self) -> LoraState:
        if getattr(self, "_lora", None) is None:
            self._lora = LoraState()
        return self._lora

    def _targets(self, component: str) -> dict:
        key = ("targets", component)
        state = self.lora_state
        if key not in state.cache:
            torch_key, scanned, params = _component_spec(self, component)
            state.cache[key] = lora_targets(params, torch_key, scanned)
        return state.cache[key]

    def _components(self, adapter) -> list[str]:
        return [c for c in ("transformer", "text_encoder") if adapter.modules(c)]

    def load_lora_weights(self, pretrained_model_name_or_path: str | os.PathLike, adapter_name: str | None = None,
                          **kwargs) -> None:
        """Reads a LoRA file (diffusers / PEFT or non-diffusers format: ``weight_conversion.lora``), checks it against
        the transformer (and T5), and makes it the active adapter with weight 1. ``weight_name=`` picks a file in a
        folder, as in diffusers."""
        state = self.lora_state
        if state.fused:
            raise ValueError("LoRA adapters are fused into the weights; unfuse_lora() before loading another.")
        path = os.fspath(pretrained_model_name_or_path)
        if kwargs.get("weight_name"):
            path = os.path.join(path, kwargs.pop("weight_name"))
        if kwargs:
            raise ValueError(f"load_lora_weights: unsupported arguments {sorted(kwargs)}.")
        name = adapter_name or f"default_{len(state.adapters)}"
        if name in state.adapters:
            raise ValueError(f"adapter_name {name!r} is already loaded; pass another name or unload_lora_weights().")
        adapter = read_lora(path)
        if adapter.modules("text_encoder") and self.prompt_encoder is None:
            raise ValueError(f"LoRA {adapter.path} adapts the text encoder, and this pipeline has none.")
        for component in self._components(adapter):
            check_adapter(adapter, component, self._targets(component))
        state.adapters[name] = adapter
        state.active = [(name, 1.0)]

    def set_adapters(self, adapter_names: str | Sequence[str], adapter_weights: float | Sequence[float] | None = None):
        """The adapters that run, with their weights (one number for all, or one per name; default 1)."""
        state = self.lora_state
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        unknown = [n for n in names if n not in state.adapters]
        if unknown:
            raise ValueError(f"adapters {unknown} are not loaded; loaded: {sorted(state.adapters) or 'none'}.")
        if adapter_weights is None or isinstance(adapter_weights, (int, float)):
            weights = [1.0 if adapter_weights is None else float(adapter_weights)] * len(names)
        else:
            weights = [float(w) for w in adapter_weights]
            if len(weights) != len(names):
                raise ValueError(f"{len(weights)} adapter_weights for {len(names)} adapter_names; give one per name.")
        if state.fused:
            raise ValueError("LoRA adapters are fused into the weights; unfuse_lora() before set_adapters().")
        state.active = list(zip(names, weights))

    def get_active_adapters(self) -> list[str]:
        return [name for name, _ in self.lora_state.active]

    def get_list_adapters(self) -> dict[str, list[str]]:
        """{component: [adapter names]}, as diffusers lists them."""
        out: dict[str, list[str]] = {}
        for name, adapter in self.lora_state.adapters.items():
            for component in self._components(adapter):
                out.setdefault(component, []).append(name)
        return out

    def _deltas(self, pairs, component: str):
        adapters = [(self.lora_state.adapters[n], w) for n, w in pairs
                    if self.lora_state.adapters[n].modules(component)]
        return kernel_deltas(adapters, component, self._targets(component)) if adapters else {}

    def _add_to_kernels(self, pairs, sign: float) -> None:
        """Adds the adapters ``pairs`` [(name, weight)] to the kernels (``sign`` +1: fuse) or takes them out (-1:
        unfuse), in every component they adapt."""
        for component in ("transformer", "text_encoder"):
            deltas = self._deltas(pairs, component)
            if not deltas:
                continue
            if component == "transformer":
                self.transformer_params = fuse(self.transformer_params, deltas, sign)
            else:  # a new encoder object: pipelines made with from_pipe keep theirs
                old = self.prompt_encoder
                self.prompt_encoder = PromptEncoder(old.tokenizer, old.module, fuse(old.params, deltas, sign),
                                                    mask_encoder_padding=old.mask_encoder_padding)

    def fuse_lora(self, lora_scale: float = 1.0, adapter_names: Sequence[str] | None = None) -> None:
        """Merges the active adapters (or ``adapter_names``, weight 1), times ``lora_scale``, into the kernels."""
        state = self.lora_state
        if state.fused:
            raise ValueError("LoRA adapters are fused already; unfuse_lora() first.")
        pairs = state.active if adapter_names is None else [(n, 1.0) for n in adapter_names]
        if not pairs:
            raise ValueError("no active LoRA adapter to fuse; load_lora_weights() or set_adapters() first.")
        pairs = [(n, w * float(lora_scale)) for n, w in pairs]
        self._add_to_kernels(pairs, +1.0)
        state.fused, state.active = pairs, []

    def unfuse_lora(self) -> None:
        """Takes the fused adapters out of the kernels again (exactly in float32; to bf16 rounding in bf16) and
        makes them the active ones."""
        state = self.lora_state
        if not state.fused:
            return
        self._add_to_kernels(state.fused, -1.0)
        state.active, state.fused = [(n, w) for n, w in state.fused], []

    def unload_lora_weights(self) -> None:
        """Unfuses and forgets every adapter."""
        self.unfuse_lora()
        state = self.lora_state
        state.adapters.clear()
        state.active = []
        state.cache.clear()

    def _variables(self, component: str, params) -> Any:
        """``params``, or {"params": params, "lora": the active adapters' collection} when some are active."""
        state = self.lora_state
        pairs = [(n, w) for n, w in state.active if state.adapters[n].modules(component)]
        if not pairs:
            return params
        key = (component, tuple(pairs))
        if key not in state.cache:
            dtype = self.transformer.dtype if component == "transformer" else self.prompt_encoder.module.dtype
            adapters = [(state.adapters[n], w) for n, w in pairs]
            collection = lora_collection(adapters, component, self._targets(component))
            state.cache = {k: v for k, v in state.cache.items() if k[0] == "targets"}  # one collection at a time
            state.cache[key] = {k: jnp.asarray(v, dtype) for k, v in flatten(collection).items()}
        return {"params": params, LORA_COLLECTION: unflatten(state.cache[key])}

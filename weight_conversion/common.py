"""What every component loader (and the pipelines) do the same way: find a component's folder, read its config or a
single file's metadata config, restore Orbax."""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Iterable

from ltx_jax.models import abstract_params
from weight_conversion import orbax_io
from weight_conversion.lora import LTX_VIDEO, file_deltas, fuse
from weight_conversion.mapping import flatten
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors


def component_folder(path: str, name: str) -> str:
    """A pipeline root holding ``name/`` -> that sub-folder (safetensors or Orbax); any other path unchanged."""
    sub = os.path.join(path, name)
    if (os.path.isdir(path) and os.path.isdir(sub) and not os.path.exists(os.path.join(path, "config.json"))
            and not orbax_io.is_orbax_dir(path)):
        return sub
    return path


def folder_config(folder: str, config_cls, what: str):
    """``config_cls.from_json(folder/config.json)``, with errors that name the file."""
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{folder} has no config.json; pass a {what} folder or config=.")
    try:
        return config_cls.from_json(config_path)
    except ValueError as e:  # the message names the file already
        raise CheckpointError(str(e)) from e


def read_single_file_config(source: TensorSource | str | os.PathLike) -> dict | None:
    """The JSON ``config`` entry of a Lightricks single file's metadata (``{"transformer": ..., "vae": ...,
    "allowed_inference_steps": ...}``), or None when the file has none."""
    if not isinstance(source, TensorSource):
        source = open_safetensors(source)
    raw = source.metadata.get("config")
    if raw is None:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"The 'config' metadata entry of the single file is not JSON: {e}") from e
    return config if isinstance(config, dict) else None


def read_config(path: str | os.PathLike, component: str, config_cls, what: str,
                from_single_file: Callable[[TensorSource, str], Any]):
    """A component's config without reading its weights: the Orbax marker, the folder's ``config.json``, or
    ``from_single_file(source, path)`` (metadata, tensor shapes: the header only)."""
    path = component_folder(os.fspath(path), component)
    if orbax_io.is_orbax_dir(path):
        return config_cls.from_dict(orbax_io.read_marker(path)["config"])
    if os.path.isdir(path):
        return folder_config(path, config_cls, what)
    return from_single_file(open_safetensors(path), path)


def first_layers(config, num_layers: int | None, keys: Iterable[str], block_key: str, what: str):
    r"""``(config cut to its first num_layers blocks, the keys of the blocks after them)``: a partial load that skips
    those keys unread, every other check as strict as for the whole model. ``block_key`` matches a block's keys
    with the block index as its group (``r"transformer_blocks\.(\d+)\."``); None: ``(config, [])``."""
    if num_layers is None:
        return config, []
    if not 1 <= num_layers <= config.num_layers:
        raise CheckpointError(f"num_layers={num_layers}, but the {what} has {config.num_layers} blocks; pass 1 to "
                              f"{config.num_layers}, or None for the whole model.")
    pattern = re.compile(block_key)
    later = [k for k in keys if (m := pattern.match(k)) and int(m.group(1)) >= num_layers]
    return config.replace(num_layers=num_layers), later


def restore_orbax(path: str, component: str, config_cls, config, make_module: Callable[[Any], Any], sharding=None):
    """(module, params) from an Orbax directory written by ``python -m weight_conversion convert``; with a
    ``ShardingPlan``, each param is restored onto its shards (the logical axes the module declares)."""
    config = config or config_cls.from_dict(orbax_io.read_marker(path)["config"])
    module = make_module(config)
    abstract = abstract_params(module)
    shardings = None if sharding is None else sharding.param_shardings(abstract, module)
    return module, orbax_io.restore(path, component, abstract, shardings)


def placement(sharding, module, abstract):
    """``mapping.convert``'s placement for a ``ShardingPlan``: (param path, shape) -> its ``NamedSharding``, from
    the logical axes ``module`` declares for each param of ``abstract`` (its ``abstract_params``), all checked
    before any tensor is read. None without a plan (the default device)."""
    if sharding is None:
        return None
    shardings = flatten(sharding.param_shardings(abstract, module))
    return lambda path, shape: shardings[tuple(path)]


def fuse_after_restore(path: str, component: str, module, params, lora, torch_key, scanned,
                       family: str = LTX_VIDEO) -> Any:
    """``params`` restored from an Orbax directory with ``lora`` ([(file, scale)]) fused into its float kernels;
    quantized ones cannot take a delta without a second rounding, so they are refused with what to do instead."""
    if not lora:
        return params
    deltas = file_deltas(lora, component, params, torch_key, scanned, family)
    if not deltas:
        return params
    if getattr(module, "weights", None) is not None:
        raise CheckpointError(
            f"{path} holds {module.weights} weights: LoRA files are fused into kernels before they are quantized, "
            "so load the safetensors checkpoint with lora= and weights=, or run the adapter unfused "
            "(pipe.load_lora_weights)."
        )
    return fuse(params, deltas)


class RenamedSource:
    """A view of a TensorSource under other key names (diffusers' names of a single file's native keys):
    ``keys`` maps each name to the source's key."""

    def __init__(self, source: TensorSource, keys: dict[str, str]):
        self._source, self._keys = source, keys

    def __getitem__(self, key):
        return self._source[self._keys[key]]

    def __iter__(self):
        return iter(self._keys)

    def __contains__(self, key):
        return key in self._keys

    def shape(self, key):
        return self._source.shape(self._keys[key])

    def release(self, key):
        self._source.release(self._keys[key])

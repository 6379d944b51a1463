"""Orbax checkpoints written by ``python -m weight_conversion convert``.

Layout of a converted component::

    DST/ltx_jax.json   {"format": "ltx_jax", "component": "transformer", "config": {...}, "dtype": "bfloat16"}
    DST/params/        Orbax (StandardCheckpointer) tree of the Flax params

Restoring takes the target tree from ``jax.eval_shape`` of the module's ``init``, so shapes are checked and the
params come back in the requested dtype.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp

from weight_conversion.mapping import flatten
from weight_conversion.safetensors_io import CheckpointError

MARKER = "ltx_jax.json"


def is_orbax_dir(path: str | os.PathLike) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, MARKER))


def read_marker(path: str | os.PathLike) -> dict:
    with open(os.path.join(path, MARKER)) as f:
        return json.load(f)


def save(path: str | os.PathLike, component: str, config: dict, params: Any, dtype: Any) -> None:
    """Writes ``params`` and the component's config to ``path`` (which must not exist yet)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        raise ValueError(f"{path} already exists; choose a new destination or remove it first.")
    os.makedirs(path)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(path, "params"), params)
    checkpointer.wait_until_finished()
    with open(os.path.join(path, MARKER), "w") as f:
        json.dump({"format": "ltx_jax", "component": component, "config": config, "dtype": jnp.dtype(dtype).name}, f, indent=2)


def restore(path: str | os.PathLike, component: str, abstract_params: Any, dtype: Any) -> Any:
    """Restores params saved by ``save``, checking every path and shape against ``abstract_params``."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    marker = read_marker(path)
    if marker.get("component") != component:
        raise CheckpointError(f"{path} holds a {marker.get('component')!r} checkpoint, not a {component!r} one.")
    checkpointer = ocp.StandardCheckpointer()
    stored = checkpointer.metadata(os.path.join(path, "params"))
    stored_tree = getattr(stored, "item_metadata", stored)
    stored_tree = getattr(stored_tree, "tree", stored_tree)
    stored_flat = {p: tuple(getattr(v, "shape", ())) for p, v in flatten(dict(stored_tree)).items()}
    expected_flat = {p: tuple(v.shape) for p, v in flatten(abstract_params).items()}
    if set(stored_flat) != set(expected_flat):
        diff = sorted("/".join(p) for p in set(stored_flat) ^ set(expected_flat))
        raise CheckpointError(f"{path}: params do not match the {component} config; differing paths: {diff[:12]}")
    for p, shape in expected_flat.items():
        if stored_flat[p] != shape:
            raise CheckpointError(f"{path}: param {'/'.join(p)} has shape {stored_flat[p]}, the model expects {shape}.")
    target = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.dtype(dtype)), abstract_params)
    return checkpointer.restore(os.path.join(path, "params"), target)

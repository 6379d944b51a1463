"""Orbax checkpoints written by ``python -m weight_conversion convert``.

Layout of a converted component::

    DST/ltx_jax.json   {"format": "ltx_jax", "component": "transformer", "config": {...}, "dtype": "bfloat16",
                        "weights": null | "int8" | "fp8"}
    DST/params/        Orbax (StandardCheckpointer) tree of the Flax params

Restoring takes the target tree from ``jax.eval_shape`` of the module's ``init``, so shapes are checked and the
params come back in the module's dtypes: the requested float dtype, and int8 / float8_e4m3fn kernels with float32
``kernel_scale`` for a module built with ``weights=`` (the marker's ``weights``; markers written before it existed
have none and mean float weights).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp

from ltx_jax import distributed
from weight_conversion.mapping import flatten
from weight_conversion.safetensors_io import CheckpointError

MARKER = "ltx_jax.json"


def is_orbax_dir(path: str | os.PathLike) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, MARKER))


def read_marker(path: str | os.PathLike) -> dict:
    with open(os.path.join(path, MARKER)) as f:
        return json.load(f)


def stored_weights(path: str | os.PathLike) -> str | None:
    """The weight format an Orbax directory was saved with (None: float; also every marker older than the field)."""
    return read_marker(path).get("weights")


def resolve_weights(path: str | os.PathLike, requested: str | None) -> str | None:
    """The weights to build the module with for an Orbax directory: the stored ones; ``requested`` None means
    "as stored", anything else must match them (quantized params cannot be turned into other ones losslessly)."""
    stored = stored_weights(path)
    if requested is not None and requested != stored:
        raise CheckpointError(
            f"{path} holds {stored or 'float'} weights, not {requested}: load it with weights=None (as stored), or "
            f"convert the safetensors checkpoint again with `python -m weight_conversion convert SRC DST "
            f"--weights {requested}`."
        )
    return stored


def save(path: str | os.PathLike, component: str, config: dict, params: Any, dtype: Any,
         weights: str | None = None, *, overwrite: bool = False) -> None:
    """Writes ``params`` and the component's config to ``path``; ``weights`` is the module's weight format (None,
    "int8", "fp8"), recorded so that loading rebuilds the same module.

    The checkpoint is written into a temporary folder beside ``path`` and renamed into place once complete
    (``ltx_jax.files.atomic_dir``): a failed or interrupted write (a full disk, Ctrl-C) leaves nothing, and raises an
    ``OSError`` of one line. An existing ``path`` raises ``ValueError`` unless ``overwrite`` (then the old checkpoint
    is replaced only once the new one is complete)."""
    import orbax.checkpoint as ocp  # deferred: orbax takes a second to import; only Orbax folders need it

    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise ValueError(f"{path} already exists; choose a new destination, or overwrite it (--overwrite, "
                         "overwrite=True).")
    with distributed.atomic_dir(path, overwrite=overwrite) as partial:  # several processes: one shared folder
        checkpointer = ocp.StandardCheckpointer()
        try:
            checkpointer.save(os.path.join(partial, "params"), params)
            checkpointer.wait_until_finished()
        except BaseException:
            # A failed save (a full disk) raises from its array writes while Orbax's metadata thread may still be
            # writing into the folder: waited for here, or it recreates the temporary folder after its removal.
            with contextlib.suppress(Exception):
                checkpointer.close()
            raise
        checkpointer.close()
        if not distributed.is_main():
            return
        with open(os.path.join(partial, MARKER), "w") as f:
            json.dump({"format": "ltx_jax", "component": component, "config": config, "dtype": jnp.dtype(dtype).name,
                       "weights": weights}, f, indent=2)


def restore(path: str | os.PathLike, component: str, abstract_params: Any, shardings: Any = None) -> Any:
    """Restores params saved by ``save``, checking every path and shape against ``abstract_params``, in its dtypes
    (those of the module built to load them); ``shardings``: a tree of ``jax.sharding.Sharding`` like it, each
    param read straight onto its shards."""
    import orbax.checkpoint as ocp  # deferred: orbax takes a second to import; only Orbax folders need it

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
    if shardings is None:
        target = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_params)
    else:
        target = jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                        abstract_params, shardings)
    return checkpointer.restore(os.path.join(path, "params"), target)

"""Orbax checkpoints of a training run: ``output/checkpoints/step_<n>/`` holds the ``TrainState`` (trained weights,
optimizer state, key, step) and ``run.json`` the run's config; a checkpoint is written into a temporary folder and
renamed into place once complete (``ltx_jax.files.atomic_dir``), so an interrupted save leaves the previous one as the
latest."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import jax

from ltx_jax import distributed
from ltx_jax.files import remove_leftovers

STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_dir(output: str) -> str:
    return os.path.join(os.fspath(output), "checkpoints")


def latest_checkpoint(output: str) -> str | None:
    """The newest complete ``step_<n>`` folder under ``output/checkpoints``, or None."""
    folder = checkpoint_dir(output)
    if not os.path.isdir(folder):
        return None
    steps = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := STEP_DIR.match(name))
             and os.path.exists(os.path.join(folder, name, "run.json"))]
    return os.path.join(folder, max(steps)[1]) if steps else None


def save_checkpoint(output: str, state, config, keep: int = 2) -> str:
    """Writes ``state`` (a ``TrainState``) at its step; keeps the newest ``keep`` checkpoints. Returns the path. With
    several processes every one calls it: each writes its shards (Orbax's multi-host save), process 0 the rest."""
    import orbax.checkpoint as ocp  # deferred: orbax takes a second to import; only a save or restore needs it

    step = int(jax.device_get(state.step))
    folder = checkpoint_dir(output)
    final = os.path.join(folder, f"step_{step}")
    if distributed.is_main():
        remove_leftovers(folder)  # the temporary folder of a save that was killed (one run writes to an output)
    with distributed.atomic_dir(final, overwrite=True) as partial:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(os.path.join(partial, "state"), state)
        checkpointer.wait_until_finished()
        if distributed.is_main():
            with open(os.path.join(partial, "run.json"), "w") as f:
                json.dump({"step": step, "config": dataclasses.asdict(config)}, f, indent=2)
    if distributed.is_main():
        done = sorted((int(m.group(1)), n) for n in os.listdir(folder) if (m := STEP_DIR.match(n)))
        for _, name in done[:-keep]:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    return final


def restore_checkpoint(path: str, like):
    """The ``TrainState`` saved at ``path``, with the structure, dtypes and shardings of ``like`` (a fresh
    ``Trainer.init_state()``)."""
    import orbax.checkpoint as ocp  # deferred: orbax takes a second to import; only a save or restore needs it

    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), like)
    return ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(path), "state"), target)


def read_run(path: str) -> dict:
    with open(os.path.join(path, "run.json")) as f:
        return json.load(f)

"""Fine-tuning the LTX-Video transformer: the flow-matching objective, the optax train step (LoRA or full), the
data (preprocessed latents and prompt embeddings), checkpoints, and LoRA export. ``python -m ltx_jax preprocess`` /
``train`` run them from the command line (``training/cli.py``).

Names are imported on first use (as in ``ltx_jax``), so the command line's module, ``training/cli.py``, answers
``--help`` and flag errors before JAX loads.
"""

from __future__ import annotations

from ltx_jax.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "latest_checkpoint": "ltx_jax.training.checkpoint",
    "restore_checkpoint": "ltx_jax.training.checkpoint",
    "save_checkpoint": "ltx_jax.training.checkpoint",
    "DEFAULT_TARGETS": "ltx_jax.training.lora",
    "export_lora": "ltx_jax.training.lora",
    "init_lora": "ltx_jax.training.lora",
    "merge_lora": "ltx_jax.training.lora",
    "first_frame_mask": "ltx_jax.training.objective",
    "flow_matching_loss": "ltx_jax.training.objective",
    "logit_normal_shift": "ltx_jax.training.objective",
    "sample_sigmas": "ltx_jax.training.objective",
    "Batch": "ltx_jax.training.step",
    "Trainer": "ltx_jax.training.step",
    "TrainConfig": "ltx_jax.training.step",
    "TrainState": "ltx_jax.training.step",
    "learning_rate_schedule": "ltx_jax.training.step",
    "make_optimizer": "ltx_jax.training.step",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

"""Fine-tuning the LTX-Video transformer: the flow-matching objective, the optax train step (LoRA or full), the
data (preprocessed latents and prompt embeddings), checkpoints, and LoRA export. ``python -m ltx_jax preprocess`` /
``train`` run them from the command line (``training/cli.py``)."""

from ltx_jax.training.checkpoint import latest_checkpoint, restore_checkpoint, save_checkpoint
from ltx_jax.training.lora import DEFAULT_TARGETS, export_lora, init_lora, merge_lora
from ltx_jax.training.objective import first_frame_mask, flow_matching_loss, logit_normal_shift, sample_sigmas
from ltx_jax.training.step import Batch, Trainer, TrainConfig, TrainState, learning_rate_schedule, make_optimizer

__all__ = [
    "Batch", "DEFAULT_TARGETS", "TrainConfig", "TrainState", "Trainer", "export_lora", "first_frame_mask",
    "flow_matching_loss", "init_lora", "latest_checkpoint", "learning_rate_schedule", "logit_normal_shift",
    "make_optimizer", "merge_lora", "restore_checkpoint", "sample_sigmas", "save_checkpoint",
]

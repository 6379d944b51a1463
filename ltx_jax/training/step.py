"""The jitted train step: optax AdamW with linear warm-up and cosine decay, gradient clipping and accumulation,
LoRA-only or full fine-tuning, float32 master weights with a lower-precision compute dtype, remat by policy, and the
inference mesh.

    config = TrainConfig(mode="lora", lora_rank=32, learning_rate=1e-4, steps=2000)
    trainer = Trainer.create(model, params, config, key)          # model: LTXVideoTransformer3DModel
    state = trainer.init_state()
    state, metrics = trainer.step(state, batch)                   # batch: ``Batch`` (data.py makes them)

Everything random in a step (sigmas, noise, the first-frame draw) comes from ``state.key`` folded with the step
number, so a resumed run takes exactly the steps an uninterrupted one would have taken.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding

from ltx_jax.models import count_params
from ltx_jax.sampling.latents import rope_interpolation_scale
from ltx_jax.sharding import ShardingPlan
from ltx_jax.training.lora import DEFAULT_TARGETS, init_lora, merge_lora
from ltx_jax.training.objective import SIGMA_SAMPLERS, first_frame_mask, flow_matching_loss, sample_sigmas

MODES = ("lora", "full")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a run trains and how (defaults: LTX-Video-Trainer's where it has one).

    Attributes:
      mode: "lora" (only the adapter's factors train; the model stays frozen in ``compute_dtype``) or "full".
      lora_rank, lora_alpha, lora_targets: the adapter (PEFT's target_modules rule).
      learning_rate, warmup_steps, steps: the schedule: linear warm-up to the rate, then cosine decay to
        ``final_learning_rate_fraction`` of it at ``steps`` (counted in optimizer updates).
      weight_decay, b1, b2, eps: AdamW (torch's defaults).
      max_grad_norm: global-norm clipping (0 turns it off).
      gradient_accumulation_steps: micro-batches per optimizer update (optax.MultiSteps).
      sigma_sampler, sigma_std: "shifted_logit_normal" (the trainer's) or "uniform".
      first_frame_conditioning_p: probability of a batch trained as image-to-video (first latent frame clean).
      compute_dtype: activations and the frozen weights ("bfloat16" on GPU); master weights stay float32.
      remat, remat_policy: rematerialise each block in the backward pass (``LTXVideoTransformer3DModel``).
      round_timesteps: the model sees round(sigma * 1000), as the trainer's integer timesteps.
      vae_temporal_ratio, vae_spatial_ratio: the compression of the VAE that encoded the latents (the releases': 8,
        32); RoPE's positions are scaled by them and the batch's fps as the pipelines scale them
        (``sampling.rope_interpolation_scale``).
    """

    mode: str = "lora"
    lora_rank: int = 64
    lora_alpha: float = 64.0
    lora_targets: tuple[str, ...] = DEFAULT_TARGETS
    learning_rate: float = 5e-4
    warmup_steps: int = 0
    steps: int = 3000
    final_learning_rate_fraction: float = 0.0
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    sigma_sampler: str = "shifted_logit_normal"
    sigma_std: float = 1.0
    first_frame_conditioning_p: float = 0.1
    compute_dtype: str = "float32"
    remat: bool = False
    remat_policy: str | None = None
    round_timesteps: bool = True
    same_noise_every_step: bool = False  # the same sigmas, noise and first-frame draw every step (overfitting checks)
    vae_temporal_ratio: int = 8
    vae_spatial_ratio: int = 32

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}; use one of {MODES}.")
        if self.sigma_sampler not in SIGMA_SAMPLERS:
            raise ValueError(f"sigma_sampler={self.sigma_sampler!r}; use one of {SIGMA_SAMPLERS}.")
        for name in ("steps", "gradient_accumulation_steps", "lora_rank", "vae_temporal_ratio", "vae_spatial_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1.")
        if not 0 <= self.first_frame_conditioning_p <= 1:
            raise ValueError(f"first_frame_conditioning_p={self.first_frame_conditioning_p} must be in [0, 1].")
        if self.learning_rate <= 0 or not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"learning_rate={self.learning_rate} must be > 0 and warmup_steps={self.warmup_steps} "
                             f"within 0 .. steps={self.steps}.")


@flax.struct.dataclass
class Batch:
    """One training batch of precomputed inputs; ``grid`` and ``fps`` are static (a new bucket compiles once)."""

    latents: jax.Array  # [B, N, C] packed clean latents (normalised)
    prompt_embeds: jax.Array  # [B, T, E]
    prompt_attention_mask: jax.Array  # [B, T]
    grid: tuple[int, int, int] = flax.struct.field(pytree_node=False, default=(1, 1, 1))  # latent F, H, W
    fps: float = flax.struct.field(pytree_node=False, default=24.0)


@flax.struct.dataclass
class TrainState:
    """What a checkpoint holds: the step, the trained weights (float32), the optimizer state and the key."""

    step: jax.Array  # [] int32, micro-batches taken
    trainable: Any
    opt_state: Any
    key: jax.Array


def learning_rate_schedule(config: TrainConfig):
    """Linear warm-up to ``learning_rate``, cosine decay over the remaining updates."""
    decay = max(config.steps - config.warmup_steps, 1)
    cosine = optax.cosine_decay_schedule(config.learning_rate, decay, alpha=config.final_learning_rate_fraction)
    if not config.warmup_steps:
        return cosine
    warmup = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
    return optax.join_schedules([warmup, cosine], [config.warmup_steps])


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    parts = [optax.clip_by_global_norm(config.max_grad_norm)] if config.max_grad_norm > 0 else []
    parts.append(optax.adamw(learning_rate_schedule(config), b1=config.b1, b2=config.b2, eps=config.eps,
                             weight_decay=config.weight_decay))
    optimizer = optax.chain(*parts)
    if config.gradient_accumulation_steps > 1:
        optimizer = optax.MultiSteps(optimizer, every_k_schedule=config.gradient_accumulation_steps)
    return optimizer


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The model, the frozen part of the weights, and the jitted step (``create``)."""

    model: Any  # LTXVideoTransformer3DModel in the compute dtype (with the mesh's plan, if any)
    config: TrainConfig
    frozen: Any  # mode "lora": the model's params in the compute dtype; "full": None
    lora_fixed: Any  # mode "lora": the adapters' scales; "full": None
    initial: Any  # the initial trainable tree (float32)
    optimizer: optax.GradientTransformation
    seed_key: jax.Array

    @classmethod
    def create(cls, model, params, config: TrainConfig, key: jax.Array, mesh: Any = None) -> "Trainer":
        """``params``: the model's (any float dtype). ``mesh``: as ``from_pretrained``'s; the params go onto their
        shards (FSDP over ``fsdp`` for full fine-tuning), the adapters are replicated, batches split over ``data``."""
        plan = ShardingPlan.create(mesh) if mesh is not None else getattr(model, "sharding", None)
        dtype = jnp.dtype(config.compute_dtype)
        model = model.clone(dtype=dtype, param_dtype=dtype, remat=config.remat, remat_policy=config.remat_policy,
                            sharding=plan)
        place = (lambda tree: tree) if plan is None else (lambda tree: plan.place(tree, model))
        replicate = (lambda tree: tree) if plan is None else (lambda tree: jax.device_put(tree, plan.replicated()))
        if config.mode == "lora":
            trainable, fixed = init_lora(model, params, jax.random.fold_in(key, 1), rank=config.lora_rank,
                                         alpha=config.lora_alpha, target_modules=config.lora_targets)
            frozen = place(jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), params))
            return cls(model, config, frozen, replicate(fixed), replicate(trainable), make_optimizer(config), key)
        trainable = place(jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params))
        return cls(model, config, None, None, trainable, make_optimizer(config), key)

    def init_state(self) -> TrainState:
        """A fresh state (its own copy of the initial weights: the step donates, so the trainer's stay usable)."""
        trainable = jax.tree_util.tree_map(jnp.copy, self.initial)
        state = TrainState(jnp.int32(0), trainable, self.optimizer.init(trainable), self.seed_key)
        plan = self.model.sharding
        if plan is None:
            return state
        # The step, the key and the optimizer's counters live on one device until now: replicated over the mesh, a
        # checkpoint restores them there too (and every process of a multi-process run holds them).
        return jax.tree_util.tree_map(
            lambda x: x if isinstance(x.sharding, NamedSharding) else jax.device_put(np.asarray(x), plan.replicated()),
            state)

    def loss(self, trainable, batch: Batch, key: jax.Array, frozen=None, lora_fixed=None) -> jax.Array:
        """The objective of one batch with the randomness of ``key`` (``frozen`` / ``lora_fixed``: the trainer's,
        passed in so that a jitted caller takes them as arguments, not as constants)."""
        frozen = self.frozen if frozen is None else frozen
        lora_fixed = self.lora_fixed if lora_fixed is None else lora_fixed
        cfg, dtype = self.config, self.model.dtype
        b, n = batch.latents.shape[:2]
        k_sigma, k_noise, k_cond = jax.random.split(key, 3)
        sigmas = sample_sigmas(k_sigma, b, n, cfg.sigma_sampler, cfg.sigma_std)
        noise = jax.random.normal(k_noise, batch.latents.shape, jnp.float32)
        frames, height, width = batch.grid
        mask = first_frame_mask(k_cond, b, n, height * width, cfg.first_frame_conditioning_p)
        if cfg.mode == "lora":
            params, lora = frozen, merge_lora(trainable, lora_fixed, dtype)
        else:
            params, lora = jax.tree_util.tree_map(lambda x: x.astype(dtype), trainable), None
        return flow_matching_loss(self.model, params, batch.latents, noise, sigmas, batch.prompt_embeds,
                                  batch.prompt_attention_mask, num_frames=frames, height=height, width=width,
                                  rope_interpolation_scale=rope_interpolation_scale(
                                      batch.fps, temporal_ratio=cfg.vae_temporal_ratio,
                                      spatial_ratio=cfg.vae_spatial_ratio),
                                  conditioning_mask=mask if cfg.first_frame_conditioning_p > 0 else None,
                                  lora=lora, round_timesteps=cfg.round_timesteps)

    def step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        """One micro-batch: gradients, and an optimizer update every ``gradient_accumulation_steps``."""
        return _jitted_step(self, self.frozen, self.lora_fixed, state, batch)

    def _step(self, frozen, lora_fixed, state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        key = state.key if self.config.same_noise_every_step else jax.random.fold_in(state.key, state.step)
        loss, grads = jax.value_and_grad(self.loss)(state.trainable, batch, key, frozen, lora_fixed)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        metrics = {"loss": loss, "grad_norm": _tree_norm(grads)}
        return TrainState(state.step + 1, trainable, opt_state, state.key), metrics

    def __hash__(self):  # static under jit: one compiled step per trainer
        return id(self)

    def __eq__(self, other):
        return self is other


def _tree_norm(tree) -> jax.Array:
    norm = getattr(optax.tree_utils, "tree_norm", None) or optax.tree_utils.tree_l2_norm  # renamed in optax 0.2.5
    return norm(tree)


_jitted_step = jax.jit(Trainer._step, static_argnums=0, donate_argnums=3)


count_trainable = count_params  # a trainable tree (LoRA factors or the whole model) is a param tree


def lora_export_args(config: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of ``training.lora.export_lora`` for a run's adapter."""
    return dict(rank=config.lora_rank, alpha=config.lora_alpha, target_modules=config.lora_targets)


__all__: Sequence[str] = ("TrainConfig", "TrainState", "Batch", "Trainer", "make_optimizer", "learning_rate_schedule",
                          "count_trainable", "lora_export_args")

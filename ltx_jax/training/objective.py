"""The flow-matching objective of LTX-Video fine-tuning, as Lightricks' LTX-Video-Trainer defines it
(``training_strategies.StandardTrainingStrategy``, ``timestep_samplers``):

    sigma ~ shifted logit-normal (the shift grows with the token count) or uniform, per video;
    noisy = (1 - sigma) x + sigma eps, with conditioning tokens (the first latent frame, with probability
            ``first_frame_conditioning_p``) kept clean and given timestep 0;
    target = eps - x;  loss = mean of (prediction - target)^2 over the tokens that are not conditioning and over
            channels.

Axis letters: B batch, N latent tokens (frame-major), C latent channels, T text tokens, E text channels.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp

SIGMA_SAMPLERS = ("shifted_logit_normal", "uniform")


def logit_normal_shift(num_tokens: int, min_tokens: int = 1024, max_tokens: int = 4096, min_shift: float = 0.95,
                       max_shift: float = 2.05) -> float:
    """The trainer's shift of the logit-normal mean: linear in the token count (0.95 at 1024 tokens, 2.05 at
    4096, extrapolated beyond)."""
    slope = (max_shift - min_shift) / (max_tokens - min_tokens)
    return slope * num_tokens + (min_shift - slope * min_tokens)


def sample_sigmas(key: jax.Array, batch: int, num_tokens: int, sampler: str = "shifted_logit_normal",
                  std: float = 1.0) -> jax.Array:
    """Noise levels [B] float32 in (0, 1): ``sigmoid(N(shift(N), std))`` or ``U(0, 1)``."""
    if sampler == "uniform":
        return jax.random.uniform(key, (batch,), jnp.float32)
    if sampler != "shifted_logit_normal":
        raise ValueError(f"sampler={sampler!r}; use one of {SIGMA_SAMPLERS}.")
    return jax.nn.sigmoid(jax.random.normal(key, (batch,), jnp.float32) * std + logit_normal_shift(num_tokens))


def first_frame_mask(key: jax.Array, batch: int, num_tokens: int, tokens_per_frame: int, probability: float
                     ) -> jax.Array:
    """Conditioning mask [B, N] float32: 1 on the first latent frame's tokens for the whole batch with
    ``probability`` (image-to-video training; the trainer draws once per batch), else 0. A one-frame video is never
    conditioned (nothing would be left to learn)."""
    if tokens_per_frame >= num_tokens or probability <= 0:
        return jnp.zeros((batch, num_tokens), jnp.float32)
    on = jax.random.uniform(key) < probability
    first = (jnp.arange(num_tokens) < tokens_per_frame).astype(jnp.float32)
    return jnp.broadcast_to(first * on, (batch, num_tokens))


def flow_matching_loss(model, params, latents: jax.Array, noise: jax.Array, sigmas: jax.Array,
                       prompt_embeds: jax.Array, prompt_attention_mask: jax.Array, *, num_frames: int, height: int,
                       width: int, rope_interpolation_scale: Sequence[Any] | jax.Array | None,
                       conditioning_mask: jax.Array | None = None, lora: Any = None,
                       round_timesteps: bool = False) -> jax.Array:
    """The scalar loss of one batch; usable under ``jax.grad`` (with respect to ``params`` or ``lora``).

    Args:
      model: an ``LTXVideoTransformer3DModel``.
      params: its params; lora: a ``"lora"`` variable collection (``weight_conversion.lora``'s layout) or None.
      latents: clean packed latents [B, N, C] (normalised, as the VAE encodes them); noise: [B, N, C].
      sigmas: [B] in [0, 1]; the model sees timestep ``sigma * 1000`` (rounded to an integer, as the trainer does,
        with ``round_timesteps``), 0 on conditioning tokens.
      prompt_embeds: [B, T, E]; prompt_attention_mask: [B, T].
      num_frames, height, width: the latent grid (static); rope_interpolation_scale: (8 / fps, 32, 32).
      conditioning_mask: [B, N], 1 = a clean conditioning token (kept clean, timestep 0, out of the loss).
    Returns:
      mean over the non-conditioning tokens and the channels of (prediction - (noise - latents))^2, float32.
    """
    latents, noise = latents.astype(jnp.float32), noise.astype(jnp.float32)
    s = sigmas.astype(jnp.float32)[:, None, None]
    noisy = (1.0 - s) * latents + s * noise
    timestep = sigmas.astype(jnp.float32) * 1000.0
    if round_timesteps:
        timestep = jnp.round(timestep)
    if conditioning_mask is not None:
        cond = conditioning_mask.astype(jnp.float32)
        noisy = jnp.where(cond[..., None] > 0, latents, noisy)
        timestep = timestep[:, None] * (1.0 - cond)  # [B, N]
    variables = {"params": params} if lora is None else {"params": params, "lora": lora}
    prediction = model.apply(variables, noisy.astype(model.dtype), prompt_embeds.astype(model.dtype), timestep,
                             prompt_attention_mask, num_frames=num_frames, height=height, width=width,
                             rope_interpolation_scale=rope_interpolation_scale).astype(jnp.float32)
    error = jnp.square(prediction - (noise - latents))  # [B, N, C]
    if conditioning_mask is None:
        return jnp.mean(error)
    keep = 1.0 - conditioning_mask.astype(jnp.float32)  # [B, N]
    return jnp.sum(error * keep[..., None]) / jnp.maximum(jnp.sum(keep) * error.shape[-1], 1.0)

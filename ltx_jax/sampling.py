"""The denoising loop of LTX-Video as one jit-compiled program.

A ``Sampler`` is a frozen, hashable description of everything that fixes the program's structure (the model, the
latent grid, whether classifier-free guidance and its rescale run). Everything that may change between calls
without changing shapes (latents, text embeddings, sigmas, timesteps, guidance strength, RoPE scale) travels in a
``SamplingInputs`` pytree of arrays, so a second call with the same shapes never recompiles.

The loop is a ``lax.fori_loop`` over steps. Each step runs one batched forward over [uncond; cond] when guidance is
on, combines the two, optionally rescales, and takes the Euler step in float32 (as diffusers keeps latents in
float32 whatever the model dtype).

Room for what comes next, without a rewrite:
  * conditioning (image / video): ``SamplingInputs.conditioning_mask`` [B, N] in [0, 1] marks clean tokens; their
    timestep is scaled by (1 - mask) per token and the update is masked, as diffusers' condition pipeline does;
  * spatio-temporal guidance: a third batch entry whose forward skips chosen blocks inside the scanned stack;
  * sharding: ``SamplingInputs`` is a pytree, so shardings can be given per field to ``jax.jit``.

Axis letters: B batch (videos), G guidance groups (2 with CFG: uncond, cond), N latent tokens, C latent channels,
T text tokens, E text channels, S steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp

from ltx_jax import scheduler as sched
from ltx_jax.models.transformer import LTXVideoTransformer3DModel


@flax.struct.dataclass
class SamplingInputs:
    """Arrays consumed by the loop. Shapes are what a compiled program is specialised on."""

    latents: jax.Array  # [B, N, C] float32, packed initial noise (sigma = 1) or a partially noised start
    prompt_embeds: jax.Array  # [G*B, T, E] ([uncond; cond] with guidance)
    prompt_attention_mask: jax.Array  # [G*B, T]
    sigmas: jax.Array  # [S + 1] float32, ending with the terminal sigma
    timesteps: jax.Array  # [S] float32, 0-1000 scale
    guidance_scale: jax.Array  # [] float32
    guidance_rescale: jax.Array  # [] float32
    rope_interpolation_scale: jax.Array  # [3] float32: (temporal compression / frame rate, 32, 32)
    conditioning_mask: jax.Array | None = None  # [B, N] float32, 1 = clean conditioning token (None: text-to-video)


# Progress reporting from inside the compiled loop: the loop calls back with the step index; the host-side sink is
# looked up at call time, so installing a new progress bar never changes (or recompiles) the program.
_progress_sink: Callable[[int], None] | None = None


def set_progress_sink(sink: Callable[[int], None] | None) -> None:
    global _progress_sink
    _progress_sink = sink


def _report_progress(step_index) -> None:
    if _progress_sink is not None:
        _progress_sink(int(step_index))


def rescale_noise_cfg(guided: jax.Array, cond: jax.Array, rescale: jax.Array) -> jax.Array:
    """Guidance rescale (Lin et al. 2023, sec. 3.4) with per-sample std over all but the batch axis (unbiased, as torch)."""
    axes = tuple(range(1, guided.ndim))
    std_cond = jnp.std(cond, axis=axes, keepdims=True, ddof=1)
    std_guided = jnp.std(guided, axis=axes, keepdims=True, ddof=1)
    return rescale * (guided * (std_cond / std_guided)) + (1 - rescale) * guided


@dataclasses.dataclass(frozen=True)
class Sampler:
    """Static structure of a denoising run; ``sample`` is jitted with ``self`` static.

    Attributes:
      transformer: the (hashable) Flax module.
      latent_frames, latent_height, latent_width: latent grid of the video.
      do_guidance: run [uncond; cond] per step (guidance_scale > 1 in diffusers).
      do_rescale: apply guidance rescale (guidance_rescale > 0).
      report_progress: call the host progress sink after each step.
    """

    transformer: LTXVideoTransformer3DModel
    latent_frames: int
    latent_height: int
    latent_width: int
    do_guidance: bool
    do_rescale: bool
    report_progress: bool = True

    def velocity(self, params, latents: jax.Array, t: jax.Array, inputs: SamplingInputs) -> jax.Array:
        """Guided flow velocity at timestep ``t`` ([] float32) for latents [B, N, C]; returns float32 [B, N, C]."""
        groups = 2 if self.do_guidance else 1
        model_in = jnp.concatenate([latents] * groups, axis=0) if groups > 1 else latents  # [G*B, N, C]
        timestep = jnp.broadcast_to(t, (model_in.shape[0],))  # [G*B]
        if inputs.conditioning_mask is not None:
            token_mask = jnp.concatenate([inputs.conditioning_mask] * groups, axis=0)  # [G*B, N]
            timestep = timestep[:, None] * (1.0 - token_mask)  # per-token timesteps: clean tokens at t = 0
        out = self.transformer.apply(
            {"params": params},
            model_in.astype(self.transformer.dtype),
            inputs.prompt_embeds,
            timestep,
            inputs.prompt_attention_mask,
            num_frames=self.latent_frames,
            height=self.latent_height,
            width=self.latent_width,
            rope_interpolation_scale=inputs.rope_interpolation_scale,
        ).astype(jnp.float32)
        if not self.do_guidance:
            return out
        uncond, cond = jnp.split(out, 2, axis=0)
        guided = uncond + inputs.guidance_scale * (cond - uncond)
        if self.do_rescale:
            guided = rescale_noise_cfg(guided, cond, inputs.guidance_rescale)
        return guided

    def sample(self, params, inputs: SamplingInputs) -> jax.Array:
        """Runs every step; returns the final packed latents [B, N, C] float32. Call through ``jitted_sample``."""
        num_steps = inputs.timesteps.shape[0]

        def body(i, latents):
            t = inputs.timesteps[i]
            velocity = self.velocity(params, latents, t, inputs)
            new = sched.step(velocity, latents, inputs.sigmas[i], inputs.sigmas[i + 1])
            if inputs.conditioning_mask is not None:  # conditioning tokens stay as given
                keep = inputs.conditioning_mask[..., None] > 0.5
                new = jnp.where(keep, latents, new)
            if self.report_progress:
                jax.debug.callback(_report_progress, i)
            return new

        return jax.lax.fori_loop(0, num_steps, body, inputs.latents.astype(jnp.float32))


def _sample(sampler: Sampler, params, latents: jax.Array, inputs: SamplingInputs) -> jax.Array:
    return sampler.sample(params, inputs.replace(latents=latents))


# The initial latents are consumed by the loop; donating them lets XLA write the result into the same buffer.
jitted_sample = jax.jit(_sample, static_argnums=0, donate_argnums=2)


def pack_latents(latents: jax.Array) -> jax.Array:
    """[B, F, H, W, C] channels-last latents -> [B, F*H*W, C] tokens (frame-major), as diffusers packs them (p=1)."""
    b, f, h, w, c = latents.shape
    return latents.reshape(b, f * h * w, c)


def unpack_latents(tokens: jax.Array, frames: int, height: int, width: int) -> jax.Array:
    """[B, N, C] tokens -> [B, F, H, W, C] channels-last latents."""
    return tokens.reshape(tokens.shape[0], frames, height, width, tokens.shape[-1])


def schedule(config: sched.FlowMatchSchedulerConfig, num_inference_steps: int | None, num_tokens: int,
             timesteps=None, sigmas=None) -> tuple[Any, Any]:
    """Host-side sigmas/timesteps as diffusers' LTX pipelines compute them.

    With neither ``timesteps`` nor ``sigmas`` given, LTXPipeline passes sigmas = linspace(1, 1/N, N) and
    mu from the token count (when the scheduler uses dynamic shifting).
    """
    import numpy as np

    mu = sched.mu_for_tokens(config, num_tokens) if config.use_dynamic_shifting else None
    if timesteps is None and sigmas is None:
        n = num_inference_steps
        sigmas = np.linspace(1.0, 1.0 / n, n)
        return sched.sigmas_and_timesteps(config, None, mu=mu, sigmas=sigmas)
    return sched.sigmas_and_timesteps(config, None, mu=mu, sigmas=sigmas, timesteps=timesteps)

"""The denoising loop of LTX-Video as one jit-compiled program.

A ``Sampler`` is a frozen, hashable description of everything that fixes the program's structure: the model, the
latent grid, the guidance branches, the stepping rule. Everything that may change between calls without changing
shapes (text embeddings, sigmas, timesteps, per-step guidance strengths, RoPE scale or coordinates, conditioning
mask) travels in a ``SamplingInputs`` pytree of arrays, and the initial latents next to it (donated: the loop
writes its result into their buffer), so a second call with the same shapes never recompiles.

Per call, before the loop, the transformer's step-invariant work runs once (``prepare``: RoPE tables, caption
projection, every layer's text keys and values). The loop is a ``lax.while_loop`` over steps; each step runs one
batched forward over the guidance branches, combines them (``Guidance.combine``) and takes the Euler step in float32
(as diffusers keeps latents in float32 whatever the model dtype). After each step the loop checks its latents are
finite and calls the host once (``control.poll``: progress, and whether to stop); it ends early on a stop request or
on the first non-finite step, and says so in its ``SamplingResult``.

Two stepping rules, as diffusers' pipelines have them:
  * global (``LTXPipeline``, ``LTXImageToVideoPipeline``): timestep ``t * (1 - mask)`` per token, one Euler step
    from ``sigmas[i]`` to ``sigmas[i + 1]``; tokens whose conditioning mask is 1 keep their values;
  * per token (``LTXConditionPipeline``): timestep ``min(t, (1 - mask) * 1000)`` per token, each token stepped from
    its own sigma to the next lower one of the schedule (``scheduler.step_per_token``), and a token is updated only
    where ``t / 1000 - 1e-6 < 1 - mask``.

Axis letters: B batch (videos), G guidance branches, N latent tokens, C latent channels, T text tokens, E text
channels, S steps.
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp
from jax.experimental import io_callback

from ltx_jax import scheduler as sched
from ltx_jax.models.transformer import LTXVideoTransformer3DModel, TransformerConstants
from ltx_jax.sampling import control
from ltx_jax.sampling.guidance import Guidance
from ltx_jax.sampling.latents import LatentGrid


@flax.struct.dataclass
class SamplingInputs:
    """Arrays consumed by the loop. Shapes are what a compiled program is specialised on."""

    prompt_embeds: jax.Array  # [G*B, T, E], one block of B rows per branch, in Guidance.branches order
    prompt_attention_mask: jax.Array  # [G*B, T]
    sigmas: jax.Array  # [S + 1] float32, ending with the terminal sigma
    timesteps: jax.Array  # [S] float32, 0-1000 scale
    guidance: dict  # name -> [S] float32 per-step strengths (Guidance.scale_names)
    rope_interpolation_scale: jax.Array | None = None  # [3] float32 (temporal ratio / frame rate, spatial, spatial)
    video_coords: jax.Array | None = None  # [B, 3, N] float32 token coordinates; replaces the grid + scale
    conditioning_mask: jax.Array | None = None  # [B, N] float32 in [0, 1], 1 = clean conditioning token
    control_token: jax.Array | int = control.NO_CONTROL  # [] int32, see ltx_jax.sampling.control
    image_cond_noise_scale: jax.Array | None = None  # [] float32, per-token rule: noise on mask-1 tokens each step
    noise_key: jax.Array | None = None  # PRNG key of that noise (folded with the step index)


@flax.struct.dataclass
class SamplingResult:
    """What a loop returns."""

    latents: jax.Array  # [B, N, C] float32, after the last step taken
    steps: jax.Array  # [] int32, steps taken (fewer than S when stopped or non-finite)
    nonfinite_step: jax.Array  # [] int32, the first step whose latents held NaN or Inf, or -1


@dataclasses.dataclass(frozen=True)
class Sampler:
    """Static structure of a denoising run; ``sample`` is jitted with ``self`` static (``jitted_sample``).

    Attributes:
      transformer: the (hashable) Flax module.
      grid: the latent grid of the video.
      guidance: the guidance branches and how they combine.
      per_token_timesteps: step each token from its own timestep (diffusers' ``LTXConditionPipeline``); False takes
        one global step (``LTXPipeline``, ``LTXImageToVideoPipeline``).
      host_callbacks: call the host after each step (progress, stop requests); False runs without any callback
        (inside other programs, or to measure what the callback costs).
    """

    transformer: LTXVideoTransformer3DModel
    grid: LatentGrid
    guidance: Guidance
    per_token_timesteps: bool = False
    host_callbacks: bool = True

    @property
    def num_branches(self) -> int:
        return len(self.guidance.branches)

    def _tile(self, x: jax.Array | None) -> jax.Array | None:
        """[B, ...] -> [G*B, ...]: the same rows for every branch."""
        return x if x is None or self.num_branches == 1 else jnp.concatenate([x] * self.num_branches, axis=0)

    def prepare(self, params, inputs: SamplingInputs) -> TransformerConstants:
        """The transformer's step-invariant work for every branch, once per call."""
        grid = self.grid
        return self.transformer.apply(
            {"params": params}, inputs.prompt_embeds, inputs.prompt_attention_mask,
            num_frames=grid.token_frames, height=grid.token_height, width=grid.token_width,
            rope_interpolation_scale=inputs.rope_interpolation_scale,
            video_coords=self._tile(inputs.video_coords),
            method="prepare",
        )

    def timestep(self, t: jax.Array, batch: int, inputs: SamplingInputs) -> jax.Array:
        """The model's timestep for one video batch: [B], or per token [B, 1] / [B, N], following the stepping rule."""
        mask = inputs.conditioning_mask
        if self.per_token_timesteps:
            timestep = jnp.broadcast_to(t, (batch, 1))
            return timestep if mask is None else jnp.minimum(timestep, (1.0 - mask) * 1000.0)
        timestep = jnp.broadcast_to(t, (batch,))
        return timestep if mask is None else timestep[:, None] * (1.0 - mask)

    def velocity(self, params, constants: TransformerConstants, latents: jax.Array, timestep: jax.Array, i,
                 inputs: SamplingInputs) -> jax.Array:
        """Guided flow velocity for latents [B, N, C] at this step's timestep; float32 [B, N, C]."""
        model_in = self._tile(latents).astype(self.transformer.dtype)  # [G*B, N, C]
        out = self.transformer.apply({"params": params}, model_in, self._tile(timestep), constants,
                                     method="predict").astype(jnp.float32)
        outputs = dict(zip(self.guidance.branches, jnp.split(out, self.num_branches, axis=0)))
        scales = {name: inputs.guidance[name][i] for name in self.guidance.scale_names}
        return self.guidance.combine(outputs, scales)

    def step(self, params, constants: TransformerConstants, latents: jax.Array, i, inputs: SamplingInputs,
             initial: jax.Array | None = None) -> jax.Array:
        """One denoising step i: latents [B, N, C] float32 -> the next latents (``initial``: the loop's first latents,
        for the conditioning noise)."""
        t = inputs.timesteps[i]
        if self.per_token_timesteps and inputs.conditioning_mask is not None and inputs.image_cond_noise_scale is not None:
            latents = self.noise_conditioning(latents, initial, t, i, inputs)
        timestep = self.timestep(t, latents.shape[0], inputs)
        velocity = self.velocity(params, constants, latents, timestep, i, inputs)
        mask = inputs.conditioning_mask
        if self.per_token_timesteps:
            per_token = jnp.broadcast_to(timestep, latents.shape[:2])  # [B, N]
            new = sched.step_per_token(-velocity, latents, per_token, inputs.sigmas)
            if mask is None:
                return new
            denoise = (t / 1000.0 - 1e-6) < (1.0 - mask)  # [B, N]
            return jnp.where(denoise[..., None], new, latents)
        new = sched.step(velocity, latents, inputs.sigmas[i], inputs.sigmas[i + 1])
        return new if mask is None else jnp.where((mask >= 1.0)[..., None], latents, new)

    def noise_conditioning(self, latents, initial, t, i, inputs: SamplingInputs) -> jax.Array:
        """diffusers' ``add_noise_to_image_conditioning_latents``: tokens whose mask is 1 (within 1e-6) become their
        initial latents plus ``image_cond_noise_scale * N(0, 1) * (t / 1000)^2``."""
        noise = jax.random.normal(jax.random.fold_in(inputs.noise_key, i), latents.shape, jnp.float32)
        hard = (inputs.conditioning_mask > 1.0 - 1e-6)[..., None]
        return jnp.where(hard, initial + inputs.image_cond_noise_scale * noise * (t / 1000.0) ** 2, latents)

    def sample(self, params, latents: jax.Array, inputs: SamplingInputs) -> SamplingResult:
        """Runs the steps from latents [B, N, C] (packed initial noise at sigma 1, or a partially noised start) until
        the last one, a stop request or non-finite latents. Call through ``jitted_sample``."""
        constants = self.prepare(params, inputs)
        num_steps = inputs.timesteps.shape[0]
        initial = latents.astype(jnp.float32)

        def running(carry):
            i, _, stop, nonfinite = carry
            return (i < num_steps) & ~stop & (nonfinite < 0)

        def body(carry):
            i, latents, _, nonfinite = carry
            latents = self.step(params, constants, latents, i, inputs, initial)
            nonfinite = jnp.where(jnp.all(jnp.isfinite(latents)), nonfinite, i)
            stop = jnp.bool_(False)
            if self.host_callbacks:
                stop = io_callback(control.poll, jax.ShapeDtypeStruct((), jnp.bool_), inputs.control_token, i,
                                   ordered=True)
            return i + 1, latents, stop, nonfinite

        start = (jnp.int32(0), latents.astype(jnp.float32), jnp.bool_(False), jnp.int32(-1))
        steps, latents, _, nonfinite = jax.lax.while_loop(running, body, start)
        return SamplingResult(latents, steps, nonfinite)


def _sample(sampler: Sampler, params, latents: jax.Array, inputs: SamplingInputs) -> SamplingResult:
    return sampler.sample(params, latents, inputs)


# The initial latents are consumed by the loop; donating them lets XLA write the result into the same buffer.
jitted_sample = jax.jit(_sample, static_argnums=0, donate_argnums=2)

"""LTX-2's guidance: how the predictions of one step's branches combine, per modality (video and audio alike).

diffusers' ``LTX2Pipeline`` (and its ``LTX2Guidance`` guider) combine in x0 space with the delta formulation, each
modality with its own scales:

    x0_b = sample - sigma * v_b                            each branch's velocity v_b as a clean-sample estimate
    x0 = x0_cond + (guidance_scale - 1) (x0_cond - x0_uncond)      CFG: the negative prompt ("uncond")
                 + stg_scale (x0_cond - x0_stg)                    STG: the prompt with blocks perturbed ("stg")
                 + (modality_scale - 1) (x0_cond - x0_modality)    modality isolation: no audio <-> video ("modality")
    x0 = rescale_noise_cfg(x0, x0_cond, guidance_rescale)          where guidance_rescale > 0
    v = (sample - x0) / sigma

A branch whose scale is neutral (1, 0, 1) need not run: ``LTX2Guidance.branches`` says which do, from the static
structure; the scales are traced values, so changing them (not their neutrality) never recompiles.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp

from ltx_jax.sampling.guidance import rescale_noise_cfg

#: The per-modality strengths, with their neutral values (a branch at its neutral value adds nothing).
LTX2_SCALES = {"guidance_scale": 1.0, "stg_scale": 0.0, "modality_scale": 1.0, "guidance_rescale": 0.0}


def velocity_to_x0(sample: jax.Array, velocity: jax.Array, sigma: jax.Array) -> jax.Array:
    """diffusers' ``convert_velocity_to_x0``: sample - velocity * sigma (sigma a scalar or [B] broadcast on axis 0)."""
    return sample - velocity * _per_batch(sigma, sample.ndim)


def x0_to_velocity(sample: jax.Array, x0: jax.Array, sigma: jax.Array) -> jax.Array:
    """diffusers' ``convert_x0_to_velocity``: (sample - x0) / sigma."""
    return (sample - x0) / _per_batch(sigma, sample.ndim)


def _per_batch(sigma: jax.Array, ndim: int) -> jax.Array:
    sigma = jnp.asarray(sigma, jnp.float32)
    return sigma.reshape(sigma.shape + (1,) * (ndim - sigma.ndim)) if sigma.ndim else sigma


@dataclasses.dataclass(frozen=True)
class LTX2Guidance:
    """The static structure of LTX-2's guided step: which extra branches run (for either modality: one forward
    serves both streams, so a branch runs when the video or the audio scale asks for it).

    Attributes:
      cfg: the negative prompt's branch ("uncond").
      stg: the branch with ``spatio_temporal_guidance_blocks`` perturbed ("stg").
      modality: the branch with ``isolate_modalities`` ("modality").
    """

    cfg: bool = False
    stg: bool = False
    modality: bool = False

    @classmethod
    def for_scales(cls, *scales: Mapping[str, float]) -> "LTX2Guidance":
        """The branches the given modalities' scales need (each a mapping of ``LTX2_SCALES`` names)."""
        def active(name):
            return any(abs(float(s.get(name, LTX2_SCALES[name])) - LTX2_SCALES[name]) > 0 for s in scales)

        return cls(cfg=active("guidance_scale"), stg=active("stg_scale"), modality=active("modality_scale"))

    @property
    def branches(self) -> tuple[str, ...]:
        """The forward passes of a step, in batch order: "cond" always, then the active extra branches."""
        return ("cond",) + tuple(name for name, on in (("uncond", self.cfg), ("stg", self.stg),
                                                      ("modality", self.modality)) if on)

    def combine_x0(self, x0: Mapping[str, jax.Array], scales: Mapping[str, jax.Array]) -> jax.Array:
        """The guided clean-sample estimate of one modality from its branches' estimates (``branches`` names ->
        [B, ...] float32) and its scales (``LTX2_SCALES`` names -> scalars, traced or not)."""
        cond = x0["cond"]
        guided = cond
        if self.cfg:
            guided = guided + (scales["guidance_scale"] - 1.0) * (cond - x0["uncond"])
        if self.stg:
            guided = guided + scales["stg_scale"] * (cond - x0["stg"])
        if self.modality:
            guided = guided + (scales["modality_scale"] - 1.0) * (cond - x0["modality"])
        rescale = jnp.asarray(scales.get("guidance_rescale", 0.0), jnp.float32)
        return jnp.where(rescale > 0, rescale_noise_cfg(guided, cond, rescale), guided)

    def guided_x0(self, sample: jax.Array, sigma: jax.Array, velocities: Mapping[str, jax.Array],
                  scales: Mapping[str, jax.Array]) -> jax.Array:
        """One modality's guided clean-sample estimate: its branches' velocities ([B, tokens, channels]) to x0 at
        ``sigma``, combined (``combine_x0``); float32 throughout, as diffusers upcasts."""
        sample = sample.astype(jnp.float32)
        x0 = {name: velocity_to_x0(sample, v.astype(jnp.float32), sigma) for name, v in velocities.items()}
        return self.combine_x0(x0, scales)

    def guided_velocity(self, sample: jax.Array, sigma: jax.Array, velocities: Mapping[str, jax.Array],
                        scales: Mapping[str, jax.Array]) -> jax.Array:
        """``guided_x0`` back to a velocity (what the Euler step takes)."""
        return x0_to_velocity(sample.astype(jnp.float32), self.guided_x0(sample, sigma, velocities, scales), sigma)

"""Guidance as data: which model branches run in a step's batched forward, and how their predictions combine.

A ``Guidance`` is static (it fixes a program's structure: the branches and the combining ops). The strengths are
traced per-step arrays (``SamplingInputs.guidance``, name -> [S] float32), so changing them never recompiles.

Branches: "uncond" (the negative prompt), "cond" (the prompt), "perturbed" (the prompt, with the layers of the
step's skip mask perturbed: spatio-temporal guidance). Each branch is one block of the batch, in ``branches`` order,
and sees the prompt named by ``BRANCH_PROMPTS``. The combination is the original package's (``LTXVideoPipeline``):

    uncond <- alpha * uncond, alpha = <cond, uncond> / (|uncond|^2 + 1e-8)      CFG-star, where cfg_star is 1
    x = uncond + guidance_scale * (cond - uncond)                               CFG (else x = cond)
    x = diffusers' rescale_noise_cfg(x, cond, guidance_rescale)                 where guidance_rescale > 0 (CFG)
    x = x + stg_scale * (cond - perturbed)                                      STG
    x = x * (r * std(cond) / std(x) + 1 - r), r = rescaling_scale               where stg_scale > 0 and r != 1

``guidance_rescale`` is diffusers' CFG rescale; ``rescaling_scale`` is the original's, which runs only with STG:
two different operations.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp

# Which prompt each branch is conditioned on.
BRANCH_PROMPTS = {"uncond": "negative", "cond": "positive", "perturbed": "positive"}
# The per-step strengths a loop carries (SamplingInputs.guidance), with their neutral values.
SCALES = {"guidance_scale": 1.0, "guidance_rescale": 0.0, "stg_scale": 0.0, "rescaling_scale": 1.0, "cfg_star": 0.0}


def rescale_noise_cfg(guided: jax.Array, cond: jax.Array, rescale: jax.Array) -> jax.Array:
    """diffusers' ``rescale_noise_cfg`` (Lin et al. 2023, sec. 3.4): per-sample std over all but the batch axis
    (unbiased, as torch), ``rescale * guided * std(cond) / std(guided) + (1 - rescale) * guided``."""
    axes = tuple(range(1, guided.ndim))
    std_cond = jnp.std(cond, axis=axes, keepdims=True, ddof=1)
    std_guided = jnp.std(guided, axis=axes, keepdims=True, ddof=1)
    return rescale * (guided * (std_cond / std_guided)) + (1 - rescale) * guided


def _per_sample(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class Guidance:
    """The static structure of one run of steps.

    Attributes:
      cfg: classifier-free guidance (the "uncond" branch runs).
      stg: spatio-temporal guidance (the "perturbed" branch runs, with the step's skip mask).
      skip_layer_strategy: how the perturbed branch's skipped layers are perturbed (the transformer's modes).
    """

    cfg: bool = False
    stg: bool = False
    skip_layer_strategy: str = "attention_values"

    @property
    def branches(self) -> tuple[str, ...]:
        return ("uncond",) * self.cfg + ("cond",) + ("perturbed",) * self.stg

    def combine(self, outputs: Mapping[str, jax.Array], scales: Mapping[str, jax.Array]) -> jax.Array:
        """Branch predictions ([B, N, C] float32 each) and this step's strengths ([] each) -> the guided prediction."""
        cond = outputs["cond"]
        guided = cond
        if self.cfg:
            uncond = outputs["uncond"]
            alpha = (jnp.sum(_per_sample(cond) * _per_sample(uncond), axis=1)
                     / (jnp.sum(_per_sample(uncond) ** 2, axis=1) + 1e-8))[:, None, None]
            uncond = jnp.where(scales["cfg_star"] > 0, alpha * uncond, uncond)
            guided = uncond + scales["guidance_scale"] * (cond - uncond)
            rescale = scales["guidance_rescale"]
            guided = jnp.where(rescale > 0, rescale_noise_cfg(guided, cond, rescale), guided)
        if self.stg:
            stg, r = scales["stg_scale"], scales["rescaling_scale"]
            guided = guided + stg * (cond - outputs["perturbed"])
            factor = r * (jnp.std(_per_sample(cond), axis=1, ddof=1) / jnp.std(_per_sample(guided), axis=1, ddof=1)) \
                + (1 - r)
            guided = jnp.where((stg > 0) & (r != 1), guided * factor[:, None, None], guided)
        return guided

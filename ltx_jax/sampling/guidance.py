"""Guidance as data: which model branches run in each step's batched forward, and how their predictions combine.

A ``Guidance`` is static (it fixes the program's structure: the branches and the combining ops). The strengths are
traced per-step arrays (``SamplingInputs.guidance``, name -> [S] float32), so changing them never recompiles.

Branches today: "uncond" (the negative prompt) and "cond" (the prompt). Each branch is one block of the batch, in
``Guidance.branches`` order, and sees the prompt named by ``BRANCH_PROMPTS``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Which prompt each branch is conditioned on.
BRANCH_PROMPTS = {"uncond": "negative", "cond": "positive"}


def rescale_noise_cfg(guided: jax.Array, cond: jax.Array, rescale: jax.Array) -> jax.Array:
    """diffusers' ``rescale_noise_cfg`` (Lin et al. 2023, sec. 3.4): per-sample std over all but the batch axis
    (unbiased, as torch), ``rescale * guided * std(cond) / std(guided) + (1 - rescale) * guided``."""
    axes = tuple(range(1, guided.ndim))
    std_cond = jnp.std(cond, axis=axes, keepdims=True, ddof=1)
    std_guided = jnp.std(guided, axis=axes, keepdims=True, ddof=1)
    return rescale * (guided * (std_cond / std_guided)) + (1 - rescale) * guided


@dataclasses.dataclass(frozen=True)
class Guidance:
    """The static structure of guidance.

    Attributes:
      cfg: classifier-free guidance, ``uncond + guidance_scale * (cond - uncond)`` (branches uncond, cond), followed
        by diffusers' ``guidance_rescale`` towards the std of cond at the steps whose rescale is above 0 (a traced
        choice: turning the rescale on or off does not change the program).
    """

    cfg: bool = False

    @classmethod
    def for_scales(cls, guidance_scale: Sequence[float] | np.ndarray) -> "Guidance":
        """What diffusers runs for these (per-step) scales: classifier-free guidance when a scale is above 1."""
        return cls(cfg=bool(np.max(guidance_scale) > 1.0))

    @property
    def branches(self) -> tuple[str, ...]:
        return ("uncond", "cond") if self.cfg else ("cond",)

    @property
    def scale_names(self) -> tuple[str, ...]:
        """The per-step strengths ``combine`` reads."""
        return ("guidance_scale", "guidance_rescale")

    def combine(self, outputs: Mapping[str, jax.Array], scales: Mapping[str, jax.Array]) -> jax.Array:
        """Branch predictions ([B, N, C] float32 each) and this step's strengths ([] each) -> the guided prediction."""
        cond = outputs["cond"]
        if not self.cfg:
            return cond
        guided = outputs["uncond"] + scales["guidance_scale"] * (cond - outputs["uncond"])
        rescale = scales["guidance_rescale"]
        return jnp.where(rescale > 0, rescale_noise_cfg(guided, cond, rescale), guided)

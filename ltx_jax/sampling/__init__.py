"""The compiled denoising loop: latent grid and packing, guidance branches, schedules, progress, the sampler."""

from ltx_jax.sampling.guidance import BRANCH_PROMPTS, Guidance, rescale_noise_cfg
from ltx_jax.sampling.latents import LatentGrid, pack_latents, unpack_latents
from ltx_jax.sampling.control import Interrupted, RunControl, StepBar, controlled, run
from ltx_jax.sampling.loop import Sampler, SamplingInputs, SamplingResult, jitted_sample
from ltx_jax.sampling.schedules import per_step, schedule

__all__ = [
    "BRANCH_PROMPTS", "Guidance", "Interrupted", "LatentGrid", "RunControl", "Sampler", "SamplingInputs",
    "SamplingResult", "StepBar", "controlled", "jitted_sample", "pack_latents", "per_step", "rescale_noise_cfg",
    "run", "schedule", "unpack_latents",
]

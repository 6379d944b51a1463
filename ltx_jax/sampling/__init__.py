"""The compiled denoising loop: latent grid and packing, guidance branches, the plan of the steps (step_plan.py:
sigmas, timesteps, per-step strengths), progress, the sampler."""

from ltx_jax.sampling.guidance import BRANCH_PROMPTS, SCALES, Guidance, rescale_noise_cfg
from ltx_jax.sampling.latents import LatentGrid, pack_latents, rope_interpolation_scale, unpack_latents
from ltx_jax.sampling.control import Interrupted, RunControl, StepBar, controlled, run, signal_handler
from ltx_jax.sampling.loop import (Sampler, SamplingInputs, SamplingResult, Segment, jitted_sample, sample_stepwise,
                                  segments_for)
from ltx_jax.sampling.step_plan import (diffusers_schedule, guidance_plan, guidance_steps, original_schedule, per_step,
                                        per_step_from_guidance, skip_masks, trim_schedule)


__all__ = [
    "BRANCH_PROMPTS", "Guidance", "Interrupted", "LatentGrid", "RunControl", "SCALES", "Sampler", "SamplingInputs",
    "SamplingResult", "Segment", "StepBar", "controlled", "diffusers_schedule", "guidance_plan", "guidance_steps",
    "jitted_sample", "original_schedule", "pack_latents", "per_step", "per_step_from_guidance", "rescale_noise_cfg",
    "rope_interpolation_scale", "run", "sample_stepwise", "segments_for", "signal_handler", "skip_masks",
    "trim_schedule", "unpack_latents",
]

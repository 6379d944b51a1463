"""The compiled denoising loop: latent grid and packing, guidance branches, schedules, progress, the sampler."""

from ltx_jax.sampling.guidance import BRANCH_PROMPTS, SCALES, Guidance, rescale_noise_cfg
from ltx_jax.sampling.latents import LatentGrid, pack_latents, unpack_latents
from ltx_jax.sampling.control import Interrupted, RunControl, StepBar, controlled, run, signal_handler
from ltx_jax.sampling.loop import Sampler, SamplingInputs, SamplingResult, Segment, jitted_sample, segments_for
from ltx_jax.sampling.schedules import (guidance_plan, guidance_steps, original_schedule, per_step, schedule, scheduled,
                                        skip_masks, trim_schedule)

__all__ = [
    "BRANCH_PROMPTS", "Guidance", "Interrupted", "LatentGrid", "RunControl", "SCALES", "Sampler", "SamplingInputs",
    "SamplingResult", "Segment", "StepBar", "controlled", "signal_handler", "guidance_plan", "guidance_steps", "jitted_sample",
    "original_schedule", "pack_latents", "per_step", "rescale_noise_cfg", "run", "schedule", "scheduled", "segments_for",
    "skip_masks", "trim_schedule", "unpack_latents",
]

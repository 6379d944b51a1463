"""Generation defaults of the released LTX-Video checkpoints.

Values follow the usage examples of diffusers' LTX-Video documentation and Lightricks' inference configs: distilled
checkpoints run without guidance on a fixed list of timesteps; timestep-aware VAEs (0.9.1+) decode at t = 0.05 (0.03
for 0.9.1) with a little noise (0.025). Anything passed to ``LTXPipeline.__call__`` overrides them.
"""

from __future__ import annotations

import dataclasses
import os
import re

from ltx_jax import scheduler as sched


@dataclasses.dataclass(frozen=True)
class PipelinePreset:
    """Defaults for one released checkpoint; ``diffusers-defaults`` is ``LTXPipeline.__call__``'s own defaults."""

    name: str
    num_inference_steps: int = 50
    timesteps: tuple[float, ...] | None = None
    guidance_scale: float = 3.0
    guidance_rescale: float = 0.0
    decode_timestep: float = 0.0
    decode_noise_scale: float | None = None
    scheduler: sched.FlowMatchSchedulerConfig | None = None  # used when the checkpoint ships no scheduler config


# The 0.9.7 / 0.9.8 distilled models: first pass of their multi-scale recipe, no guidance.
_DISTILLED = dict(num_inference_steps=len(sched.LTX_DISTILLED_TIMESTEPS), timesteps=tuple(sched.LTX_DISTILLED_TIMESTEPS), guidance_scale=1.0,
                  decode_timestep=0.05, decode_noise_scale=0.025, scheduler=sched.LTX_SCHEDULER_STATIC)
_DEV_095 = dict(num_inference_steps=40, guidance_scale=3.0, decode_timestep=0.05, decode_noise_scale=0.025,
                scheduler=sched.LTX_SCHEDULER_STATIC)
_DEV_13B = dict(num_inference_steps=30, guidance_scale=5.0, decode_timestep=0.05, decode_noise_scale=0.025,
                scheduler=sched.LTX_SCHEDULER_STATIC)

PIPELINE_PRESETS: dict[str, PipelinePreset] = {
    p.name: p
    for p in (
        PipelinePreset("diffusers-defaults"),
        PipelinePreset("ltx-video-0.9.0", scheduler=sched.LTX_SCHEDULER),
        PipelinePreset("ltx-video-0.9.1", decode_timestep=0.03, decode_noise_scale=0.025, scheduler=sched.LTX_SCHEDULER),
        PipelinePreset("ltx-video-0.9.5", **_DEV_095),
        PipelinePreset("ltx-video-0.9.6-dev", **_DEV_095),
        PipelinePreset("ltx-video-0.9.6-distilled", num_inference_steps=8, guidance_scale=1.0, decode_timestep=0.05,
                       decode_noise_scale=0.025, scheduler=sched.LTX_SCHEDULER_STATIC),
        PipelinePreset("ltx-video-0.9.7-13b-dev", **_DEV_13B),
        PipelinePreset("ltx-video-0.9.7-13b-distilled", **_DISTILLED),
        PipelinePreset("ltx-video-0.9.8-13b-dev", **_DEV_13B),
        PipelinePreset("ltx-video-0.9.8-13b-distilled", **_DISTILLED),
        PipelinePreset("ltx-video-0.9.8-2b-distilled", **_DISTILLED),
    )
}


def detect_preset(path: str, transformer_config, vae_config) -> PipelinePreset | None:
    """Picks a preset from the checkpoint's name (``ltxv-13b-0.9.8-distilled``, ``LTX-Video-0.9.5``...) and configs.

    Returns None when nothing identifies the release (the pipeline then uses diffusers' defaults).
    """
    name = os.path.basename(os.path.normpath(path)).lower()
    version = re.search(r"0\.9\.(\d)", name)
    big = "13b" in name or getattr(transformer_config, "num_layers", 28) == 48
    distilled = "distill" in name
    if version:
        minor = int(version.group(1))
        if minor >= 7:
            key = f"ltx-video-0.9.{minor}-{'13b' if big else '2b'}-{'distilled' if distilled else 'dev'}"
            if key in PIPELINE_PRESETS:
                return PIPELINE_PRESETS[key]
            return PIPELINE_PRESETS[f"ltx-video-0.9.8-13b-{'distilled' if distilled else 'dev'}"] if big else None
        if minor == 6:
            return PIPELINE_PRESETS[f"ltx-video-0.9.6-{'distilled' if distilled else 'dev'}"]
        return PIPELINE_PRESETS.get(f"ltx-video-0.9.{minor}")
    if big:
        return PIPELINE_PRESETS["ltx-video-0.9.8-13b-distilled" if distilled else "ltx-video-0.9.8-13b-dev"]
    if vae_config is not None and getattr(vae_config, "timestep_conditioning", False):
        return PIPELINE_PRESETS["ltx-video-0.9.1"]
    return None

"""Everything ltx_jax knows about the released LTX-Video checkpoints, one ``Release`` record each (LTX-2's records,
``LTX2_RELEASES``, live in ``ltx_jax.releases_ltx2`` and are importable from here).

    >>> release = RELEASES["ltx-video-0.9.8-2b-distilled"]
    >>> release.transformer, release.vae, release.scheduler, release.defaults.timesteps, release.files
    >>> detect_release("ltxv-13b-0.9.8-dev.safetensors", transformer_config, vae_config)

A record holds the architectures (transformer, VAE, T5), the scheduler config used when a checkpoint ships none, the
generation defaults (steps, guidance, distilled timesteps, decode noise) and the file names Lightricks publishes.
Defaults follow diffusers' LTX-Video documentation and Lightricks' inference configs (``configs/*.yaml``): distilled
checkpoints run without guidance on a fixed timestep list; timestep-aware VAEs (0.9.1+) decode at t = 0.05 (0.03 for
0.9.1) with a little noise (0.025).

Detection (``detect_release``) trusts the configs first: the transformer and VAE architectures narrow the candidates
(2B or 13B; 0.9.0, 0.9.1 or 0.9.5+ VAE), a single file's ``allowed_inference_steps`` metadata marks a distilled model,
and the file or folder name decides among releases that share an architecture.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import warnings
from typing import Any, Mapping

from ltx_jax.configs import LatentUpsamplerConfig, T5Config, TransformerConfig, VAEConfig
from ltx_jax.releases_ltx2 import (LTX2_LATENT_UPSAMPLER_PRESETS, LTX2_RELEASES,  # noqa: F401 (LTX-2's records here too)
                                   LTX2_TRANSFORMER_PRESETS, LTX2Release, detect_ltx2_release, get_ltx2_release,
                                   ltx2_release_problems)
from ltx_jax.requests import SamplingRequest
from ltx_jax.scheduler import FlowMatchSchedulerConfig

# ------------------------------------------------------------------------------------------- architectures

TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    # 0.9.0 - 0.9.6 and 0.9.8 2B: 28 layers, 32 heads x 64, width 2048.
    "ltx-video-2b": TransformerConfig(),
    # 0.9.7 / 0.9.8 13B: 48 layers, 32 heads x 128, width 4096.
    "ltx-video-13b": TransformerConfig(num_layers=48, attention_head_dim=128, cross_attention_dim=4096),
}

VAE_PRESETS: dict[str, VAEConfig] = {
    # 0.9.0: plain strided-conv downsamplers, unconditioned decoder.
    "ltx-video-0.9.0": VAEConfig(),
    # 0.9.1: wider, timestep-conditioned decoder with noise injection and residual depth-to-space upsamplers.
    "ltx-video-0.9.1": VAEConfig(
        decoder_block_out_channels=(256, 512, 1024),
        decoder_layers_per_block=(5, 6, 7, 8),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(True, True, True, False),
        upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=True,
    ),
    # 0.9.5 and later (0.9.6, 0.9.7, 0.9.8 share it): space-to-depth encoder up to 2048 channels.
    "ltx-video-0.9.5": VAEConfig(
        block_out_channels=(128, 256, 512, 1024, 2048),
        down_block_types=("LTXVideo095DownBlock3D",) * 4,
        decoder_block_out_channels=(256, 512, 1024),
        layers_per_block=(4, 6, 6, 2, 2),
        decoder_layers_per_block=(5, 5, 5, 5),
        spatio_temporal_scaling=(True, True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=True,
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    ),
}

T5_PRESETS: dict[str, T5Config] = {
    # google/t5-v1_1-xxl, the text encoder of every LTX-Video release (encoder: 4.76B parameters).
    "t5-v1_1-xxl": T5Config(
        vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu"
    ),
}

#: The latent upscalers Lightricks released, by file name (the configs in their metadata: diffusers'
#: ``LTXLatentUpsamplerModel`` defaults, 3-D convolutions 512 wide, 4 blocks a stage).
LATENT_UPSAMPLER_PRESETS: dict[str, LatentUpsamplerConfig] = {
    "ltxv-spatial-upscaler-0.9.7.safetensors": LatentUpsamplerConfig(),
    "ltxv-temporal-upscaler-0.9.7.safetensors": LatentUpsamplerConfig(spatial_upsample=False, temporal_upsample=True),
    "ltxv-spatial-upscaler-0.9.8.safetensors": LatentUpsamplerConfig(),
}

# ---------------------------------------------------------------------------------------------- schedulers

#: scheduler_config.json of Lightricks' LTX-Video 0.9.x diffusers checkpoints (as written by diffusers'
#: ``scripts/convert_ltx_to_diffusers.py``): resolution-dependent exponential shift between mu=0.95 at 1024 tokens
#: and mu=2.05 at 4096 tokens, stretched to end at 0.1. Used by diffusers' ``LTXPipeline`` /
#: ``LTXImageToVideoPipeline`` with ``sigmas=np.linspace(1, 1/N, N)`` and ``mu=calculate_shift(num_tokens, ...)``.
LTX_SCHEDULER = FlowMatchSchedulerConfig(
    num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
    base_image_seq_len=1024, max_image_seq_len=4096, invert_sigmas=False, shift_terminal=0.1,
    time_shift_type="exponential", stochastic_sampling=False,
)
#: LTX_SCHEDULER without dynamic shifting. diffusers' ``LTXConditionPipeline`` (0.9.5+ and the distilled 0.9.7/0.9.8
#: checkpoints) calls ``set_timesteps(timesteps=...)`` without ``mu``, which is only valid with
#: ``use_dynamic_shifting=False``; a checkpoint's own scheduler_config.json wins when it has one.
LTX_SCHEDULER_STATIC = LTX_SCHEDULER.replace(use_dynamic_shifting=False)
#: Timesteps diffusers' docs give for the 0.9.7 / 0.9.8 distilled checkpoints (first pass) and for the refine pass
#: after latent upsampling.
LTX_DISTILLED_TIMESTEPS = (1000.0, 993.0, 987.0, 981.0, 975.0, 909.0, 725.0, 0.03)
LTX_DISTILLED_REFINE_TIMESTEPS = (1000.0, 909.0, 725.0, 421.0, 0.0)
#: The scheduler Lightricks' single files of 0.9.x carry (the original's ``RectifiedFlowScheduler`` with SD3
#: resolution-dependent shifting, terminal 0.1, uniform sampler) gives, for a step count, exactly diffusers'
#: ``LTXPipeline`` schedule under LTX_SCHEDULER (``tests/test_original_reference.py`` checks it); explicit timesteps
#: it takes as they are. ``LTXMultiScalePipeline`` schedules its passes this way.
ORIGINAL_SCHEDULER = LTX_SCHEDULER

# ------------------------------------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class MultiScaleDefaults:
    """Lightricks' multi-scale recipe for a release (``configs/*.yaml`` with ``pipeline_type: multi-scale``): a first
    pass at ``downscale_factor`` of the size, the latent upsampler, a second pass from the upsampled latents (noised
    to its first timestep), tone mapping before the decode, a resize to the requested size.

    Attributes:
      first_pass, second_pass: each pass's schedule and guidance (the decode settings are the second pass's).
      downscale_factor: the first pass's share of the size (rounded down to the VAE's spatial ratio).
      tone_map_compression_ratio: the second pass's tone mapping of the latents before decoding (0 = none).
      latent_upsampler: Lightricks' upscaler file the recipe names (``LATENT_UPSAMPLER_PRESETS``).
      recommended_size: (height, width, num_frames) the model cards recommend for the recipe.
    """

    first_pass: SamplingRequest
    second_pass: SamplingRequest
    downscale_factor: float = 0.6666666
    tone_map_compression_ratio: float = 0.0
    latent_upsampler: str = ""
    recommended_size: tuple[int, int, int] = (704, 1216, 121)

    def for_layers(self, num_layers: int, what: str = "the recipe") -> "MultiScaleDefaults":
        """The recipe for a model of ``num_layers`` blocks (see ``SamplingRequest.for_layers``)."""
        return dataclasses.replace(self, first_pass=self.first_pass.for_layers(num_layers, f"{what}'s first pass"),
                                   second_pass=self.second_pass.for_layers(num_layers, f"{what}'s second pass"))


@dataclasses.dataclass(frozen=True)
class Release:
    """One released checkpoint.

    Attributes:
      name: ``ltx-video-<version>[-<size>-<variant>]``, e.g. "ltx-video-0.9.8-2b-distilled".
      version: "0.9.0" ... "0.9.8"; size: "2b" or "13b"; variant: "dev", "distilled", or "" (one checkpoint).
      transformer, vae, text_encoder: the architectures.
      scheduler: the scheduler config used when the checkpoint ships none.
      defaults: generation defaults.
      files: Lightricks' single-file names of this release (fp8 variants included).
      latent_upsamplers: Lightricks' latent upscaler files released with it.
      lightricks_config: the name of its inference config in Lightricks' repository (``configs/``).
      multi_scale: its multi-scale recipe (``LTXMultiScalePipeline``), for the releases that have one.
      recommended_size: (height, width, num_frames) its model card recommends for one pass (768x512x121 for 2B,
        1216x704x257 for 13B); what the full-size dry runs check (``ltx_jax.check``).
    """

    name: str
    version: str
    size: str
    variant: str
    transformer: TransformerConfig
    vae: VAEConfig
    scheduler: FlowMatchSchedulerConfig
    defaults: SamplingRequest
    files: tuple[str, ...] = ()
    latent_upsamplers: tuple[str, ...] = ()
    lightricks_config: str | None = None
    text_encoder: T5Config = T5_PRESETS["t5-v1_1-xxl"]
    multi_scale: MultiScaleDefaults | None = None
    recommended_size: tuple[int, int, int] = (512, 768, 121)

    @property
    def distilled(self) -> bool:
        return self.variant == "distilled"

    def validate(self) -> None:
        """Raises ValueError listing every way this record contradicts its own architectures (``release_problems``)."""
        problems = release_problems(self)
        if problems:
            raise ValueError(f"release {self.name}: " + "; ".join(problems))


_2B, _13B = TRANSFORMER_PRESETS["ltx-video-2b"], TRANSFORMER_PRESETS["ltx-video-13b"]
_SIZE_13B = (704, 1216, 257)  # the 13B cards: 1216x704, up to 257 frames (2B: 768x512x121, the record's default)
_VAE_090, _VAE_091, _VAE_095 = (VAE_PRESETS[f"ltx-video-0.9.{v}"] for v in (0, 1, 5))
# Lightricks' configs/ltxv-2b-0.9*.yaml (0.9.0 to 0.9.6 dev): CFG 3, STG 1 on block 19 (attention values),
# rescaling 0.7.
_DEV_2B = SamplingRequest(num_inference_steps=40, guidance_scale=3.0, stg_scale=1.0, rescaling_scale=0.7,
                             skip_block_list=(19,), decode_timestep=0.05, decode_noise_scale=0.025)
# configs/ltxv-13b-0.9.7-dev.yaml and ltxv-13b-0.9.8-dev.yaml, first pass: a guidance schedule with CFG-star.
_DEV_13B = SamplingRequest(
    num_inference_steps=30, skip_final_inference_steps=3, cfg_star_rescale=True,
    guidance_timesteps=(1.0, 0.996, 0.9933, 0.9850, 0.9767, 0.9008, 0.6180),
    guidance_scale=(1.0, 1.0, 6.0, 8.0, 6.0, 1.0, 1.0), stg_scale=(0.0, 0.0, 4.0, 4.0, 4.0, 2.0, 1.0),
    rescaling_scale=(1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0),
    skip_block_list=((), (11, 25, 35, 39), (22, 35, 39), (28,), (28,), (28,), (28,)),
    decode_timestep=0.05, decode_noise_scale=0.025)
# The 0.9.7 / 0.9.8 distilled models: the first pass of their multi-scale recipe, no guidance.
_DISTILLED = SamplingRequest(num_inference_steps=len(LTX_DISTILLED_TIMESTEPS), timesteps=LTX_DISTILLED_TIMESTEPS,
                                guidance_scale=1.0, decode_timestep=0.05, decode_noise_scale=0.025)

# The multi-scale recipes of configs/ltxv-13b-0.9.7-dev.yaml / ltxv-13b-0.9.8-dev.yaml (first pass = _DEV_13B) and of
# the distilled ltxv-*-0.9.7/0.9.8-distilled.yaml (timesteps on our 0-1000 scale; the files write them on 0-1).
_DEV_13B_SECOND_PASS = SamplingRequest(
    num_inference_steps=30, skip_initial_inference_steps=17, guidance_scale=(1.0,), stg_scale=(1.0,),
    rescaling_scale=(1.0,), guidance_timesteps=(1.0,), skip_block_list=(27,), cfg_star_rescale=True,
    decode_timestep=0.05, decode_noise_scale=0.025)
# Lightricks' distilled configs list STG block 42 (a 13B block) with an STG scale of 0: no block is perturbed, so the
# recipe carries none (with 42 the 2B distilled model, 28 blocks deep, refused its own recipe).
_DISTILLED_FIRST_PASS = SamplingRequest(
    num_inference_steps=7, timesteps=(1000.0, 993.7, 987.5, 981.2, 975.0, 909.4, 725.0), guidance_scale=1.0,
    stg_scale=0.0, rescaling_scale=1.0, decode_timestep=0.05, decode_noise_scale=0.025)
_DISTILLED_SECOND_PASS = dataclasses.replace(_DISTILLED_FIRST_PASS, num_inference_steps=3,
                                             timesteps=(909.4, 725.0, 421.9))


def _multi_scale(first: SamplingRequest, second: SamplingRequest, upsampler: str,
                 tone_map: float = 0.0) -> MultiScaleDefaults:
    return MultiScaleDefaults(first, second, tone_map_compression_ratio=tone_map, latent_upsampler=upsampler)


def _files(stem: str, fp8: bool = True) -> tuple[str, ...]:
    return (f"{stem}.safetensors",) + ((f"{stem}-fp8.safetensors",) if fp8 else ())


RELEASES: dict[str, Release] = {r.name: r for r in (
    Release("ltx-video-0.9.0", "0.9.0", "2b", "", _2B, _VAE_090, LTX_SCHEDULER, _DEV_2B,
            files=_files("ltx-video-2b-v0.9", fp8=False), lightricks_config="ltxv-2b-0.9.yaml"),
    Release("ltx-video-0.9.1", "0.9.1", "2b", "", _2B, _VAE_091, LTX_SCHEDULER, _DEV_2B,
            files=_files("ltx-video-2b-v0.9.1", fp8=False), lightricks_config="ltxv-2b-0.9.1.yaml"),
    Release("ltx-video-0.9.5", "0.9.5", "2b", "", _2B, _VAE_095, LTX_SCHEDULER_STATIC, _DEV_2B,
            files=_files("ltx-video-2b-v0.9.5", fp8=False), lightricks_config="ltxv-2b-0.9.5.yaml"),
    Release("ltx-video-0.9.6-dev", "0.9.6", "2b", "dev", _2B, _VAE_095, LTX_SCHEDULER_STATIC, _DEV_2B,
            files=_files("ltxv-2b-0.9.6-dev-04-25", fp8=False), lightricks_config="ltxv-2b-0.9.6-dev.yaml"),
    Release("ltx-video-0.9.6-distilled", "0.9.6", "2b", "distilled", _2B, _VAE_095, LTX_SCHEDULER_STATIC,
            SamplingRequest(num_inference_steps=8, guidance_scale=1.0, decode_timestep=0.05, decode_noise_scale=0.025),
            files=_files("ltxv-2b-0.9.6-distilled-04-25", fp8=False), lightricks_config="ltxv-2b-0.9.6-distilled.yaml"),
    Release("ltx-video-0.9.7-13b-dev", "0.9.7", "13b", "dev", _13B, _VAE_095, LTX_SCHEDULER_STATIC, _DEV_13B,
            files=_files("ltxv-13b-0.9.7-dev"),
            latent_upsamplers=("ltxv-spatial-upscaler-0.9.7.safetensors", "ltxv-temporal-upscaler-0.9.7.safetensors"),
            lightricks_config="ltxv-13b-0.9.7-dev.yaml", recommended_size=_SIZE_13B,
            multi_scale=_multi_scale(_DEV_13B, _DEV_13B_SECOND_PASS, "ltxv-spatial-upscaler-0.9.7.safetensors")),
    Release("ltx-video-0.9.7-13b-distilled", "0.9.7", "13b", "distilled", _13B, _VAE_095, LTX_SCHEDULER_STATIC,
            _DISTILLED, files=_files("ltxv-13b-0.9.7-distilled"),
            latent_upsamplers=("ltxv-spatial-upscaler-0.9.7.safetensors", "ltxv-temporal-upscaler-0.9.7.safetensors"),
            lightricks_config="ltxv-13b-0.9.7-distilled.yaml", recommended_size=_SIZE_13B,
            multi_scale=_multi_scale(_DISTILLED_FIRST_PASS, _DISTILLED_SECOND_PASS,
                                     "ltxv-spatial-upscaler-0.9.7.safetensors")),
    Release("ltx-video-0.9.8-13b-dev", "0.9.8", "13b", "dev", _13B, _VAE_095, LTX_SCHEDULER_STATIC, _DEV_13B,
            files=_files("ltxv-13b-0.9.8-dev"), latent_upsamplers=("ltxv-spatial-upscaler-0.9.8.safetensors",),
            lightricks_config="ltxv-13b-0.9.8-dev.yaml", recommended_size=_SIZE_13B,
            multi_scale=_multi_scale(_DEV_13B, _DEV_13B_SECOND_PASS, "ltxv-spatial-upscaler-0.9.8.safetensors")),
    Release("ltx-video-0.9.8-13b-distilled", "0.9.8", "13b", "distilled", _13B, _VAE_095, LTX_SCHEDULER_STATIC,
            _DISTILLED, files=_files("ltxv-13b-0.9.8-distilled"),
            latent_upsamplers=("ltxv-spatial-upscaler-0.9.8.safetensors",),
            lightricks_config="ltxv-13b-0.9.8-distilled.yaml", recommended_size=_SIZE_13B,
            multi_scale=_multi_scale(_DISTILLED_FIRST_PASS, _DISTILLED_SECOND_PASS,
                                     "ltxv-spatial-upscaler-0.9.8.safetensors", tone_map=0.6)),
    Release("ltx-video-0.9.8-2b-distilled", "0.9.8", "2b", "distilled", _2B, _VAE_095, LTX_SCHEDULER_STATIC,
            _DISTILLED, files=_files("ltxv-2b-0.9.8-distilled"),
            latent_upsamplers=("ltxv-spatial-upscaler-0.9.8.safetensors",),
            lightricks_config="ltxv-2b-0.9.8-distilled.yaml",
            multi_scale=_multi_scale(_DISTILLED_FIRST_PASS, _DISTILLED_SECOND_PASS,
                                     "ltxv-spatial-upscaler-0.9.8.safetensors")),
)}


def get_release(name: str) -> Release:
    """The record of a release name; an unknown name is refused with the nearest names and the whole list."""
    if name not in RELEASES:
        nearest = difflib.get_close_matches(str(name).lower(), list(RELEASES), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(nearest)}? Known" if nearest else "known"
        raise ValueError(f"unknown release {name!r}; {hint} releases: {', '.join(RELEASES)}.")
    return RELEASES[name]


# ---------------------------------------------------------------------------------------------- validation


def _values(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _defaults_problems(what: str, defaults: SamplingRequest, num_layers: int) -> list[str]:
    """What contradicts itself in one pass's defaults, or names blocks a model of ``num_layers`` lacks."""
    d, problems = defaults, []
    steps = d.num_inference_steps
    if d.timesteps is not None:
        if len(d.timesteps) != steps:
            problems.append(f"{what}: {len(d.timesteps)} timesteps for num_inference_steps={steps}")
        if any(not 0 <= t <= 1000 for t in d.timesteps) or any(a <= b for a, b in zip(d.timesteps, d.timesteps[1:])):
            problems.append(f"{what}: timesteps {d.timesteps} are not decreasing within [0, 1000]")
    run = steps - d.skip_initial_inference_steps - d.skip_final_inference_steps
    if run < 1:
        problems.append(f"{what}: the step skips leave none of its {steps} steps")
    entries, per = (len(d.guidance_timesteps), "guidance_timesteps entry") if d.guidance_timesteps else (run, "step")
    if d.guidance_timesteps and any(not 0 <= g <= 1 for g in d.guidance_timesteps):
        problems.append(f"{what}: guidance_timesteps {d.guidance_timesteps} are not within [0, 1]")
    for name in ("guidance_scale", "stg_scale", "rescaling_scale"):
        value = getattr(d, name)
        if isinstance(value, tuple) and len(value) != entries:
            problems.append(f"{what}: {name} has {len(value)} values, not one per {per} ({entries})")
    blocks = d.skip_block_list or ()
    if blocks and isinstance(blocks[0], tuple) and len(blocks) != entries:
        problems.append(f"{what}: skip_block_list has {len(blocks)} lists, not one per {per} ({entries})")
    past = [b for b in d.skipped_blocks if not 0 <= b < num_layers]
    if past:
        problems.append(f"{what}: skip_block_list holds block(s) {past}; the transformer's blocks are 0 .. "
                        f"{num_layers - 1}")
    if d.skipped_blocks and max(_values(d.stg_scale)) <= 0:
        problems.append(f"{what}: its STG scale is 0 at every step, yet it lists blocks {list(d.skipped_blocks)} "
                        "(a pass without STG carries no blocks)")
    negative = [n for n in ("guidance_scale", "guidance_rescale", "stg_scale", "decode_timestep")
                if min(_values(getattr(d, n))) < 0]
    if negative or (d.decode_noise_scale is not None and d.decode_noise_scale < 0):
        problems.append(f"{what}: {', '.join(negative) or 'decode_noise_scale'} must be >= 0")
    return problems


def _size_problems(what: str, size: tuple[int, int, int], transformer: TransformerConfig, vae: VAEConfig) -> list[str]:
    height, width, frames = size
    spatial, temporal = vae.spatial_ratio * transformer.patch_size, vae.temporal_ratio
    problems = []
    if height % spatial or width % spatial:
        problems.append(f"{what} {width}x{height} is not a multiple of {spatial} (VAE ratio x patch size)")
    if (frames - 1) % temporal or ((frames - 1) // temporal + 1) % transformer.patch_size_t:
        problems.append(f"{what}: {frames} frames is not {temporal}k + 1 (in whole temporal patches)")
    return problems


def release_problems(release: Release) -> list[str]:
    """Every way a record contradicts its own architectures: latent channels between the VAE, the transformer and
    the upsamplers; the text encoder's width against the caption projection; the recommended sizes against the VAE's
    ratios and the patch sizes; and each pass of its defaults and recipe (``SamplingRequest``: schedule lengths,
    skipped blocks within the transformer's depth, no blocks without STG). Empty when the record is sound."""
    t, vae, ms = release.transformer, release.vae, release.multi_scale
    problems = []
    if t.in_channels != vae.latent_channels * t.patch_size**2 * t.patch_size_t or t.out_channels != t.in_channels:
        problems.append(f"the transformer takes {t.in_channels} channels in and {t.out_channels} out, the VAE's "
                        f"{vae.latent_channels}-channel latents in patches of {t.patch_size}x{t.patch_size}x"
                        f"{t.patch_size_t}")
    if release.text_encoder.d_model != t.caption_channels:
        problems.append(f"the text encoder is {release.text_encoder.d_model} wide, the caption projection takes "
                        f"{t.caption_channels}")
    problems += _size_problems("recommended_size", release.recommended_size, t, vae)
    problems += _defaults_problems("defaults", release.defaults, t.num_layers)
    for name in release.latent_upsamplers:
        upsampler = LATENT_UPSAMPLER_PRESETS.get(name)
        if upsampler is None:
            problems.append(f"latent upsampler {name} has no LATENT_UPSAMPLER_PRESETS entry")
        elif upsampler.in_channels != vae.latent_channels:
            problems.append(f"latent upsampler {name} takes {upsampler.in_channels} channels, the VAE makes "
                            f"{vae.latent_channels}")
    if ms is not None:
        problems += _defaults_problems("multi_scale.first_pass", ms.first_pass, t.num_layers)
        problems += _defaults_problems("multi_scale.second_pass", ms.second_pass, t.num_layers)
        problems += _size_problems("multi_scale.recommended_size", ms.recommended_size, t, vae)
        spatial = vae.spatial_ratio * t.patch_size
        first = [int(side * ms.downscale_factor) // spatial * spatial for side in ms.recommended_size[:2]]
        if min(first) < spatial:
            problems.append(f"multi_scale: downscale_factor {ms.downscale_factor} leaves no first pass at "
                            f"{ms.recommended_size}")
        upsampler = LATENT_UPSAMPLER_PRESETS.get(ms.latent_upsampler)
        if ms.latent_upsampler not in release.latent_upsamplers:
            problems.append(f"multi_scale names {ms.latent_upsampler!r}, not one of the release's latent_upsamplers")
        elif upsampler is not None and (upsampler.temporal_upsample or not upsampler.spatial_upsample):
            problems.append(f"multi_scale names {ms.latent_upsampler}, which is not a spatial upsampler")
        second = ms.second_pass
        if second.timesteps is not None and second.timesteps[0] >= 1000 and not second.skip_initial_inference_steps:
            problems.append("multi_scale.second_pass starts at timestep 1000, which discards the upsampled latents")
    return problems


# ---------------------------------------------------------------------------------------------- detection

_VERSION = re.compile(r"(?<![\d.])0\.9(?:\.(\d))?(?![\d])")


def _name_hints(path: str) -> dict[str, str]:
    """Version / size / variant named by a file or folder name (``ltxv-13b-0.9.8-dev-fp8.safetensors``,
    ``ltx-video-2b-v0.9.safetensors``, ``LTX-Video-0.9.7-distilled``); only what the name says."""
    name = os.path.basename(os.path.normpath(os.fspath(path))).lower()
    hints = {}
    if match := _VERSION.search(name):
        hints["version"] = f"0.9.{match.group(1) or 0}"
    if match := re.search(r"(?<![\d])(2|13)b(?![a-z])", name):
        hints["size"] = f"{match.group(1)}b"
    if "distill" in name:
        hints["variant"] = "distilled"
    elif re.search(r"(?<![a-z])dev(?![a-z])", name):
        hints["variant"] = "dev"
    return hints


def _fits(release: Release, hints: Mapping[str, str]) -> bool:
    if "version" in hints and release.version != hints["version"]:
        return False
    if "size" in hints and release.size != hints["size"]:
        return False
    if "variant" in hints and release.variant != hints["variant"]:
        # Releases with one checkpoint (variant "") are the dev models of their day.
        return release.variant == "" and hints["variant"] == "dev"
    return True


def detect_release(path: str | os.PathLike, transformer_config: TransformerConfig | None = None,
                   vae_config: VAEConfig | None = None, metadata: Mapping[str, Any] | None = None) -> Release | None:
    """The release a checkpoint belongs to, or None when nothing identifies one (its defaults are then diffusers').

    Args:
      path: the single file or folder the checkpoint was loaded from (its name is the last resort).
      transformer_config, vae_config: the loaded architectures.
      metadata: the parsed ``config`` entry of a Lightricks single file's metadata (``allowed_inference_steps``
        there marks a distilled model).

    The architectures select the releases built that way; ``allowed_inference_steps`` narrows them to distilled ones;
    the name decides among the rest. When the architectures belong to no release (a fine-tune with other sizes, a
    tiny test model), the name alone picks the release whose defaults apply. When several releases remain, the newest
    one that is not distilled is taken, with a warning naming it and how to choose another.
    """
    hints = _name_hints(os.fspath(path))
    candidates = [r for r in RELEASES.values()
                  if (transformer_config is None or r.transformer == transformer_config)
                  and (vae_config is None or r.vae == vae_config)]
    released_architecture = bool(candidates)
    if not released_architecture:  # a fine-tune with other sizes, a tiny model: only the name can say
        candidates = list(RELEASES.values()) if hints else []
    if isinstance(metadata, Mapping) and metadata.get("allowed_inference_steps"):
        candidates = [r for r in candidates if r.distilled] or candidates
    named = [r for r in candidates if _fits(r, hints)]
    candidates = named if named or not released_architecture else candidates
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    choice = ([r for r in candidates if not r.distilled] or candidates)[-1]
    warnings.warn(f"{os.fspath(path)}: the checkpoint fits {len(candidates)} releases "
                  f"({', '.join(r.name for r in candidates)}) and its name does not say which; using {choice.name}'s "
                  "defaults. Pass preset=<release name> (--preset) to choose.", UserWarning, stacklevel=2)
    return choice

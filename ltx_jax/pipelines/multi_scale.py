"""Multi-scale generation: Lightricks' recipe for the 0.9.7 / 0.9.8 checkpoints (the original package's
``LTXMultiScalePipeline``), two passes of the condition pipeline around the latent upsampler.

    pipe = LTXMultiScalePipeline.from_pretrained("ltxv-2b-0.9.8-distilled.safetensors", text_encoder_path="t5/",
                                                 latent_upsampler_path="ltxv-spatial-upscaler-0.9.8.safetensors")
    frames = pipe(prompt="...", height=704, width=1216, num_frames=121)            # the release's recipe
    frames = pipe(image="first.png", prompt="...", second_pass={"timesteps": [909.4, 725.0]})

What runs, as the original runs it:
1. the first pass at ``downscale_factor`` of the size, each side rounded down to a multiple of the VAE's ratio;
2. its latents denormalised, upsampled 2x in space, normalised, and matched (AdaIN) to the first pass's per-channel
   statistics;
3. the second pass at twice the first pass's size (4/3 of the size for the 2/3 recipes), starting from the upsampled
   latents noised to its first timestep (``sigma * noise + (1 - sigma) * latents``);
4. tone mapping of the latents (``tone_map_compression_ratio``, where the recipe asks for it), the decode, and a
   bilinear resize of the frames to the requested size.
Conditions (images, keyframes, clips) apply in both passes: prepared at the requested size, resized bilinearly to
each pass's size (as the original resizes its media), encoded there. Each pass takes its own schedule and guidance
(``first_pass=`` / ``second_pass=``: dicts over the release's ``releases.MultiScaleDefaults``). Schedules are the
original's: explicit timesteps as they are, a step count shifted for the pass's token count
(``releases.ORIGINAL_SCHEDULER``).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax.pipelines import conditioning
from ltx_jax.pipelines.calls import uses_guidance
from ltx_jax.pipelines.condition import LTXConditionPipeline
from ltx_jax.pipelines.conditioning import PreparedCondition
from ltx_jax.pipelines.contracts import CallKeys
from ltx_jax.pipelines.hub import resolve_path
from ltx_jax.pipelines.latent_upsample import check_upsampler, jitted_upsample, resolve_upsampler_path
from ltx_jax.pipelines.reporting import NonFiniteError
from ltx_jax.programs import is_placeholder, label
from ltx_jax.releases import LTX_SCHEDULER, ORIGINAL_SCHEDULER, MultiScaleDefaults, detect_release, get_release
from ltx_jax.requests import DECODE, GUIDANCE, SCHEDULE, STEP_CACHE, MultiScaleRequest, SamplingRequest
from weight_conversion import (load_latent_upsampler, read_latent_upsampler_config, read_single_file_config,
                               read_transformer_config, read_vae_config, refuse_ltx2)

# What a pass dict may set: a SamplingRequest's schedule and guidance; the decode settings and tone mapping belong to
# the second pass.
PASS_FIELDS = (SamplingRequest.field_names(SCHEDULE) + SamplingRequest.field_names(GUIDANCE)
               + SamplingRequest.field_names(STEP_CACHE))
SECOND_PASS_FIELDS = PASS_FIELDS + SamplingRequest.field_names(DECODE) + ("tone_map_compression_ratio",)

def first_pass_size(height: int, width: int, downscale_factor: float, multiple: int) -> tuple[int, int]:
    """The original's first-pass size: each side times ``downscale_factor``, truncated, rounded down to ``multiple``."""
    sides = []
    for name, side in (("height", height), ("width", width)):
        scaled = int(side * downscale_factor)
        scaled -= scaled % multiple
        if scaled < multiple:
            need = int(np.ceil(multiple / downscale_factor))
            raise ValueError(f"{name}={side} x downscale_factor={downscale_factor:g} leaves no first pass (it is "
                             f"rounded down to a multiple of {multiple} px): ask for a {name} of at least {need}, or "
                             "a larger downscale_factor.")
        sides.append(scaled)
    return sides[0], sides[1]


class LTXMultiScalePipeline(LTXConditionPipeline):
    """Two-pass generation with a latent upsampler (the original's ``LTXMultiScalePipeline``); the stages are
    ``LTXConditionPipeline``'s.

    Attributes (beyond ``PipelineBase``'s):
      latent_upsampler, latent_upsampler_params: the spatial latent upscaler (``load_latent_upsampler``).
      last_timings: stages text_encoding, encoding (the conditions, both passes), first_pass, upsampling,
        second_pass, decoding, resizing.
    """

    request_type = MultiScaleRequest
    positional = ("conditions", "image", "video")
    summary = ("Generates videos in two passes around the latent upsampler, as the release's multi-scale recipe "
               "does (module docstring).")

    def __init__(self, transformer, transformer_params, vae, vae_params, prompt_encoder=None,
                 scheduler_config=LTX_SCHEDULER, release=None, progress: bool = True, latent_upsampler=None,
                 latent_upsampler_params=None):
        super().__init__(transformer, transformer_params, vae, vae_params, prompt_encoder, scheduler_config, release,
                         progress)
        self.latent_upsampler = latent_upsampler
        self.latent_upsampler_params = latent_upsampler_params
        if latent_upsampler is not None:
            check_upsampler(latent_upsampler, vae, spatial_only=True)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: Any = "bfloat16", *,
                        latent_upsampler_path: str | os.PathLike | None = None, **kwargs):
        """``PipelineBase.from_pretrained`` plus the upsampler: ``latent_upsampler_path`` (a diffusers
        ``latent_upsampler/`` folder, a Lightricks ``ltxv-spatial-upscaler-*.safetensors`` file, Orbax), else
        ``path``'s ``latent_upsampler/``, else the release's upscaler file beside a single file. The upsampler's
        config is read (and checked against the VAE) before the large components load."""
        path = resolve_path(os.fspath(path))
        refuse_ltx2(path, cls.__name__)
        vae_config = read_vae_config(path)
        if kwargs.get("preset"):
            release = get_release(kwargs["preset"])
        else:
            with warnings.catch_warnings():  # from_pretrained below detects it again, and says so once
                warnings.simplefilter("ignore")
                metadata = read_single_file_config(path) if os.path.isfile(path) else None
                release = detect_release(path, read_transformer_config(path), vae_config, metadata)
        release_file = release.multi_scale.latent_upsampler if release and release.multi_scale else None
        upsampler_path = resolve_upsampler_path(path, latent_upsampler_path, release_file)
        upsampler_config, latent_channels = read_latent_upsampler_config(upsampler_path), vae_config.latent_channels
        if upsampler_config.in_channels != latent_channels:
            raise ValueError(f"{upsampler_path} takes {upsampler_config.in_channels}-channel latents but the VAE of "
                             f"{path} makes {latent_channels}; use the upscaler released with this model.")
        pipe = super().from_pretrained(path, dtype, **kwargs)
        pipe.latent_upsampler, pipe.latent_upsampler_params = load_latent_upsampler(upsampler_path, jnp.dtype(dtype))
        if pipe.sharding is not None:  # small: every device keeps it whole
            pipe.latent_upsampler_params = jax.device_put(pipe.latent_upsampler_params, pipe.sharding.replicated())
        check_upsampler(pipe.latent_upsampler, pipe.vae, spatial_only=True)
        return pipe

    @classmethod
    def from_pipe(cls, pipe, latent_upsampler=None, latent_upsampler_params=None):
        """Over another pipeline's components (and ``latent_upsampler``, or the other pipeline's own)."""
        latent_upsampler = latent_upsampler or getattr(pipe, "latent_upsampler", None)
        latent_upsampler_params = latent_upsampler_params or getattr(pipe, "latent_upsampler_params", None)
        new = cls(pipe.transformer, pipe.transformer_params, pipe.vae, pipe.vae_params, pipe.prompt_encoder,
                  pipe.scheduler_config, pipe.release, pipe.progress, latent_upsampler, latent_upsampler_params)
        new._copy_lora_state(pipe)
        return new

    @property
    def multi_scale_defaults(self) -> MultiScaleDefaults | None:
        """The release's multi-scale recipe (for a model of other depth, without the blocks it lacks), or None."""
        if self.release is None or self.release.multi_scale is None:
            return None
        recipe = self.release.multi_scale
        if self.release.transformer != self.transformer.config:
            return recipe.for_layers(self.transformer.config.num_layers, f"{self.release.name}'s multi-scale recipe")
        return recipe

    @property
    def defaults(self) -> MultiScaleRequest:
        """A call's defaults: the release's recipe (each pass's settings, the downscale factor, the tone mapping);
        without a recipe both passes start from the release's single-pass defaults."""
        recipe = self.multi_scale_defaults
        if recipe is None:
            return MultiScaleRequest(first_pass=self.sampling_defaults, second_pass=self.sampling_defaults)
        return MultiScaleRequest(first_pass=recipe.first_pass, second_pass=recipe.second_pass,
                                 downscale_factor=recipe.downscale_factor,
                                 tone_map_compression_ratio=recipe.tone_map_compression_ratio)

    def request(self, *args, **given) -> MultiScaleRequest:
        """``PipelineBase.request`` with the passes: a ``first_pass`` / ``second_pass`` dict updates the recipe's
        pass (a step count replaces its timesteps); the second pass's dict may also set
        ``tone_map_compression_ratio``."""
        defaults = self.defaults
        for which, allowed in (("first_pass", PASS_FIELDS), ("second_pass", SECOND_PASS_FIELDS)):
            settings = given.get(which)
            if isinstance(settings, SamplingRequest):
                continue
            settings = dict(settings or {})
            unknown = sorted(set(settings) - set(allowed))
            if unknown:
                raise ValueError(f"{which}: unknown keys {unknown}; a pass takes {', '.join(allowed)}.")
            if self.multi_scale_defaults is None and not settings:
                release = self.release.name if self.release else "no release detected"
                raise ValueError(f"this checkpoint has no multi-scale recipe ({release}); pass preset= a release that "
                                 "has one (e.g. ltx-video-0.9.8-2b-distilled) or first_pass= and second_pass= dicts.")
            if "tone_map_compression_ratio" in settings:
                given["tone_map_compression_ratio"] = settings.pop("tone_map_compression_ratio")
            given[which] = getattr(defaults, which).updated(**settings)
        return super().request(*args, **given)

    def check_request(self, request: MultiScaleRequest) -> tuple[sampling.LatentGrid, sampling.LatentGrid]:
        """The passes' latent grids (the first at ``downscale_factor`` of the size, the second at the upsampler's
        scale of it), every pass's guidance against this transformer, and a second pass that starts below 1000."""
        check_upsampler(self.latent_upsampler, self.vae, spatial_only=True)
        multiple = self.vae_spatial_compression_ratio * self.transformer_spatial_patch_size
        height, width = first_pass_size(request.height, request.width, request.downscale_factor, multiple)
        scale = self.latent_upsampler.config.spatial_scale
        grids = (self.latent_grid(height, width, request.num_frames),
                 self.latent_grid(height * scale, width * scale, request.num_frames))
        self.check_sampling(request.first_pass)
        self.check_sampling(request.second_pass)
        if self.pass_sigmas_and_timesteps(request.second_pass, grids[1])[0][0] >= 1.0:
            raise ValueError("the second pass starts at timestep 1000, which would replace the upsampled latents with "
                             "noise; start it lower (second_pass timesteps below 1000, or "
                             "skip_initial_inference_steps).")
        return grids

    def pass_sigmas_and_timesteps(self, settings: SamplingRequest, grid: sampling.LatentGrid):
        """(sigmas [S + 1], timesteps [S]) of a pass: the original's schedule, trimmed by the pass's step skips."""
        sigmas, timesteps = sampling.original_schedule(ORIGINAL_SCHEDULER, settings.steps(), grid.num_latents,
                                                       timesteps=settings.timesteps)
        return sampling.trim_schedule(sigmas, timesteps, settings.skip_initial_inference_steps,
                                      settings.skip_final_inference_steps)

    def _run_pass(self, stage: str, request: MultiScaleRequest, settings: SamplingRequest, grid: sampling.LatentGrid,
                  embeds, keys: CallKeys, latents, noise, prepared: Sequence[PreparedCondition]) -> jax.Array:
        """One pass of the condition pipeline at ``grid``: packed latents [B, N, C] without the extra tokens."""
        sigmas_and_timesteps = self.pass_sigmas_and_timesteps(settings, grid)
        with label(stage.replace("_", " ")):  # a dry run records "first pass: denoising"
            ratio = self.vae_spatial_compression_ratio
            size = (grid.height * ratio, grid.width * ratio)
            conditions = [dataclasses.replace(c, frames=np.asarray(conditioning.resize_bilinear(c.frames, *size)))
                          for c in prepared]
            sigma = float(sigmas_and_timesteps[0][0]) if latents is not None else None
            start = self.prepare_latents(request.batch_size, grid, keys, latents, noise, conditions, sigma)
            out = self.denoise(start.latents, grid, *embeds, **settings.group(GUIDANCE), **settings.group(STEP_CACHE),
                               conditioning_mask=start.conditioning_mask,
                               video_coords=start.coords_per_second(request.frame_rate), per_token_timesteps=True,
                               sigmas_and_timesteps=sigmas_and_timesteps,
                               image_cond_noise_scale=(request.image_cond_noise_scale
                                                       if start.conditioning_mask is not None else None),
                               noise_key=keys.step_noise)
        self.last_timings.stages[stage] = self.last_timings.stages.pop("denoising")
        return out[:, start.num_extra_tokens:]

    def upsample(self, latents: jax.Array, grid: sampling.LatentGrid) -> jax.Array:
        """First-pass packed latents [B, N, C] -> normalised upsampled latents [B, F, 2H, 2W, C] float32, matched
        (AdaIN) to the first pass's per-channel statistics."""
        with self._stage("upsampling"):
            first = sampling.unpack_latents(latents, grid)
            out, finite = sampling.run(lambda: jitted_upsample(self.vae, self.vae_params, self.latent_upsampler,
                                                               self.latent_upsampler_params, first,
                                                               adain_factor=jnp.float32(1.0)), stage="upsampling")
            if not is_placeholder(finite) and not bool(finite):
                raise NonFiniteError("latent upsampling produced NaN or Inf (the first pass was finite); check the "
                                     "upsampler weights and dtype.")
            return out

    def generate(self, request: MultiScaleRequest) -> np.ndarray:
        """The frames of a checked request (module docstring): frames np.ndarray [B, F, height, width, 3] in [0, 1],
        or the second pass's packed latents [B, N, C] (before tone mapping) for output_type='latent'. Each pass
        compiles once per size; new prompts, images, strengths and scales reuse the programs."""
        first_grid, second_grid = self._begin(request)
        prepared = self.prepare_conditions(request, request.height, request.width, request.num_frames)
        use_cfg = uses_guidance(request.first_pass) or uses_guidance(request.second_pass)
        embeds = self.prompt_embeddings(request, use_cfg)
        first_keys, second_keys = (CallKeys.split(k) for k in jax.random.split(jax.random.PRNGKey(request.seed)))
        first = self._run_pass("first_pass", request, request.first_pass, first_grid, embeds, first_keys, None,
                               request.noise, prepared)
        upsampled = self.upsample(first, first_grid)
        latents = self._run_pass("second_pass", request, request.second_pass, second_grid, embeds, second_keys,
                                 upsampled, request.second_pass_noise, prepared)
        decode = {k: v for k, v in (("decode_timestep", request.decode_timestep),
                                    ("decode_noise_scale", request.decode_noise_scale)) if v is not None}
        out = self._finish(request, latents, second_grid, request.second_pass.updated(**decode), second_keys.decode,
                           tone_map_compression_ratio=request.tone_map_compression_ratio,
                           size=(request.height, request.width))
        return out

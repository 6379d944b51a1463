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
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax.pipelines import conditioning, validation
from ltx_jax.pipelines.base import GUIDANCE_ARGUMENTS, STEP_SKIPS, CallSettings
from ltx_jax.pipelines.condition import LTXConditionPipeline
from ltx_jax.pipelines.conditioning import LTXVideoCondition, PreparedCondition
from ltx_jax.pipelines.latent_upsample import check_upsampler, jitted_upsample, resolve_upsampler_path
from ltx_jax.pipelines.runtime import NonFiniteError
from ltx_jax.pipelines.text_to_video import DEFAULT_FRAME_RATE, DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES, DEFAULT_WIDTH
from ltx_jax.programs import Program, is_placeholder, label
from ltx_jax.releases import LTX_SCHEDULER, ORIGINAL_SCHEDULER, GenerationDefaults, MultiScaleDefaults

# What a pass dict may set (GenerationDefaults' fields; the decode settings and tone mapping belong to the second).
PASS_ARGUMENTS = ("num_inference_steps", "timesteps") + GUIDANCE_ARGUMENTS
SECOND_PASS_ARGUMENTS = PASS_ARGUMENTS + ("decode_timestep", "decode_noise_scale", "tone_map_compression_ratio")

_resize = Program(conditioning.resize_bilinear, "resizing", static=("height", "width"))


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
        from weight_conversion import (load_latent_upsampler, read_latent_upsampler_config, read_single_file_config,
                                       read_transformer_config, read_vae_config)

        from ltx_jax.pipelines.hub import resolve_path
        from ltx_jax.releases import detect_release, get_release

        path = resolve_path(os.fspath(path))
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

    def _pass_defaults(self, which: str, given: Mapping[str, Any] | None, allowed: Sequence[str],
                       recipe: MultiScaleDefaults | None) -> GenerationDefaults:
        """A pass's defaults: the recipe's, with the caller's dict on top (a step count replaces its timesteps)."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise ValueError(f"{which}: unknown keys {unknown}; a pass takes {', '.join(allowed)}.")
        if recipe is None and not given:
            release = self.release.name if self.release else "no release detected"
            raise ValueError(f"this checkpoint has no multi-scale recipe ({release}); pass preset= a release that has "
                             "one (e.g. ltx-video-0.9.8-2b-distilled) or first_pass= and second_pass= dicts.")
        base = getattr(recipe, which) if recipe is not None else self.defaults
        if "num_inference_steps" in given and "timesteps" not in given:
            given["timesteps"] = None
        given.pop("tone_map_compression_ratio", None)
        return dataclasses.replace(base, **given)

    def _pass_schedule(self, call: CallSettings):
        """(sigmas, timesteps) of a pass: the original's schedule, trimmed by the pass's step skips."""
        sigmas, timesteps = sampling.original_schedule(ORIGINAL_SCHEDULER, call.num_inference_steps,
                                                       call.grid.num_latents, timesteps=call.timesteps)
        return sampling.trim_schedule(sigmas, timesteps, *(call.guidance[name] for name in STEP_SKIPS))

    def _run_pass(self, stage: str, call: CallSettings, schedule, embeds, key: jax.Array, latents, noise,
                  prepared: Sequence[PreparedCondition], frame_rate: float, image_cond_noise_scale: float):
        """One pass of the condition pipeline at ``call.grid``: packed latents [B, N, C] without the extra tokens."""
        with label(stage.replace("_", " ")):  # a dry run records "first pass: denoising"
            ratio = self.vae_spatial_compression_ratio
            size = (call.grid.height * ratio, call.grid.width * ratio)
            conditions = [dataclasses.replace(c, frames=np.asarray(conditioning.resize_bilinear(c.frames, *size)))
                          for c in prepared]
            sigma = float(schedule[0][0]) if latents is not None else None
            packed, mask, coords, n_extra = self.prepare_latents(
                embeds[0].shape[0], call.grid, jax.random.fold_in(key, 0), latents, noise, conditions, sigma)
            coords[:, 0] = coords[:, 0] * np.float32(1.0 / frame_rate)
            guidance = {k: v for k, v in call.guidance.items() if k not in STEP_SKIPS}
            out = self.denoise(packed, call.grid, *embeds, **guidance, conditioning_mask=mask, video_coords=coords,
                               per_token_timesteps=True, schedule=schedule,
                               image_cond_noise_scale=image_cond_noise_scale if mask is not None else None,
                               noise_key=jax.random.fold_in(key, 1))
        self.last_timings.stages[stage] = self.last_timings.stages.pop("denoising")
        return out[:, n_extra:]

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

    def __call__(
        self,
        conditions: LTXVideoCondition | Sequence[LTXVideoCondition] | None = None,
        image: Any = None,
        video: Any = None,
        frame_index: int = 0,
        strength: float = 1.0,
        prompt: str | Sequence[str] | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        height: int = DEFAULT_HEIGHT,
        width: int = DEFAULT_WIDTH,
        num_frames: int = DEFAULT_NUM_FRAMES,
        frame_rate: float = DEFAULT_FRAME_RATE,
        downscale_factor: float | None = None,
        first_pass: Mapping[str, Any] | None = None,
        second_pass: Mapping[str, Any] | None = None,
        image_cond_noise_scale: float = 0.15,
        num_videos_per_prompt: int = 1,
        seed: int = 0,
        noise=None,
        second_pass_noise=None,
        prompt_embeds=None,
        prompt_attention_mask=None,
        negative_prompt_embeds=None,
        negative_prompt_attention_mask=None,
        decode_timestep: float | Sequence[float] | None = None,
        decode_noise_scale: float | Sequence[float] | None = None,
        output_type: str = "np",
        max_sequence_length: int = 256,
        tiling: Any = "auto",
        resize_mode: str = "stretch",
    ) -> np.ndarray:
        """Generates videos in two passes (module docstring); frames np.ndarray [B, F, height, width, 3] in [0, 1].

        Args (beyond ``LTXConditionPipeline``'s):
          height, width: the output size (any positive size: the frames are resized to it at the end).
          downscale_factor: the first pass's share of the size (default: the recipe's, 2/3).
          first_pass, second_pass: a pass's schedule and guidance over the recipe's: ``num_inference_steps``,
            ``timesteps`` (0-1000), ``guidance_scale``, ``stg_scale``, ``rescaling_scale``, ``skip_block_list``,
            ``skip_layer_strategy``, ``cfg_star_rescale``, ``guidance_timesteps``, ``guidance_rescale``,
            ``skip_initial_inference_steps``, ``skip_final_inference_steps``; the second pass also
            ``tone_map_compression_ratio``, ``decode_timestep``, ``decode_noise_scale``. The second pass must start
            below timestep 1000 (else it would replace the upsampled latents with noise).
          noise, second_pass_noise: each pass's initial Gaussian noise on its latent grid (packed [B, N, C] or
            channels-last), instead of drawing it from ``seed``.
          output_type: "np", or "latent" for the second pass's packed latents [B, N, C] (before tone mapping).
        Each pass compiles once per size; new prompts, images, strengths and scales reuse the programs.
        """
        arguments = dict(locals())
        check_upsampler(self.latent_upsampler, self.vae, spatial_only=True)
        recipe = self.multi_scale_defaults
        defaults1 = self._pass_defaults("first_pass", first_pass, PASS_ARGUMENTS, recipe)
        defaults2 = self._pass_defaults("second_pass", second_pass, SECOND_PASS_ARGUMENTS, recipe)
        tone_map = dict(second_pass or {}).get("tone_map_compression_ratio",
                                               recipe.tone_map_compression_ratio if recipe else 0.0)
        validation.check_number("tone_map_compression_ratio", tone_map, minimum=0, maximum=1)
        downscale_factor = downscale_factor if downscale_factor is not None else (
            recipe.downscale_factor if recipe else 2 / 3)
        validation.check_number("downscale_factor", downscale_factor, above=0, maximum=1)
        validation.check_number("image_cond_noise_scale", image_cond_noise_scale, minimum=0)
        for name, side in (("height", height), ("width", width)):
            validation.check_int(name, side, minimum=1)
        multiple = self.vae_spatial_compression_ratio * self.transformer_spatial_patch_size
        h1, w1 = first_pass_size(height, width, downscale_factor, multiple)
        scale = self.latent_upsampler.config.spatial_scale
        shared = {k: arguments[k] for k in ("num_frames", "frame_rate", "prompt", "negative_prompt",
                                            "num_videos_per_prompt", "seed", "max_sequence_length", "prompt_embeds",
                                            "prompt_attention_mask", "negative_prompt_embeds",
                                            "negative_prompt_attention_mask")}
        unset = dict.fromkeys(PASS_ARGUMENTS + ("decode_timestep", "decode_noise_scale"))
        call1 = self._begin_call({**unset, **shared, "height": h1, "width": w1, "output_type": "latent"}, defaults1)
        call2 = self._begin_call({**unset, **shared, "height": h1 * scale, "width": w1 * scale,
                                  "output_type": output_type, "decode_timestep": decode_timestep,
                                  "decode_noise_scale": decode_noise_scale}, defaults2, new_call=False)
        call2 = dataclasses.replace(call2, start=call1.start)  # the call's total counts from the first pass
        schedule1, schedule2 = self._pass_schedule(call1), self._pass_schedule(call2)
        if schedule2[0][0] >= 1.0:
            raise ValueError("the second pass starts at timestep 1000, which would replace the upsampled latents with "
                             "noise; start it lower (second_pass timesteps below 1000, or "
                             "skip_initial_inference_steps).")
        prepared = self.prepare_conditions(conditions, image, video, frame_index, strength, height=height, width=width,
                                           num_frames=num_frames, resize_mode=resize_mode)
        use_cfg = call1.do_classifier_free_guidance or call2.do_classifier_free_guidance
        embeds = self.encode_prompt(prompt, negative_prompt, use_cfg, num_videos_per_prompt, prompt_embeds,
                                    prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask,
                                    max_sequence_length)
        root = jax.random.PRNGKey(seed)
        run = dict(embeds=embeds, prepared=prepared, frame_rate=frame_rate,
                   image_cond_noise_scale=image_cond_noise_scale)
        first = self._run_pass("first_pass", call1, schedule1, key=jax.random.fold_in(root, 1), latents=None,
                               noise=noise, **run)
        upsampled = self.upsample(first, call1.grid)
        latents = self._run_pass("second_pass", call2, schedule2, key=jax.random.fold_in(root, 2), latents=upsampled,
                                 noise=second_pass_noise, **run)
        out = self._end_call(latents, call2, output_type=output_type, key=jax.random.fold_in(root, 3), tiling=tiling,
                             tone_map_compression_ratio=tone_map)
        if output_type != "latent" and out.shape[2:4] != (height, width):
            with self._stage("resizing"):
                out = np.asarray(sampling.run(lambda: _resize(out, height, width), stage="resizing"))
            self.last_timings.total += self.last_timings.resizing
        return out

"""Conditioned generation: images and clips at chosen frames (image-to-video, keyframes, extension) and
video-to-video, as diffusers' ``LTXConditionPipeline`` does them, in the one compiled loop.

    pipe = LTXConditionPipeline.from_pretrained("path/to/LTX-Video-0.9.5", dtype="bfloat16")
    frames = pipe(conditions=[LTXVideoCondition(image="first.png", frame_index=0),
                              LTXVideoCondition(video="clip.mp4", frame_index=32, strength=0.8)],
                  prompt="...", height=512, width=768, num_frames=121)
    frames = pipe(video="clip.mp4", prompt="...", num_frames=121)                       # extend a clip
    frames = pipe(latents=pipe.encode_video(...), denoise_strength=0.7, prompt="...")   # video-to-video

What diffusers' ``prepare_latents`` does, and so what happens here: each condition is encoded (a posterior sample
from ``seed``) and normalised. A condition at frame 0 is blended (``lerp`` by its strength) into the first latent
frames, whose mask becomes the strength. A condition at a later frame becomes extra tokens placed before the video's,
with their own coordinates (``video_coords``: pixel frame ``frame_index`` onwards), blended with noise by the strength;
a clip of more than two latent frames also blends its later frames into the video's own latents. The loop steps each
token from its own timestep (``min(t, (1 - mask) * 1000)``), adds ``image_cond_noise_scale`` noise to the mask-1
tokens before each step, and the extra tokens are dropped before decoding.

Compilation: new images, strengths, frame indices and scales never recompile; another number of conditions, or a
clip of another length, changes the token count and does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax.pipelines import conditioning, validation
from ltx_jax.pipelines.base import PipelineBase
from ltx_jax.pipelines.conditioning import LTXVideoCondition, PreparedCondition
from ltx_jax.pipelines.text_to_video import DEFAULT_FRAME_RATE, DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES, DEFAULT_WIDTH

NUM_PREFIX_LATENT_FRAMES = 2  # diffusers' num_prefix_latent_frames: the latent frames a later clip keeps as tokens


def linear_quadratic_sigmas(num_steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None):
    """diffusers' ``linear_quadratic_schedule``: the sigmas of LTXConditionPipeline's default schedule (float32)."""
    if linear_steps is None:
        linear_steps = num_steps // 2
    if num_steps < 2:
        return np.array([1.0], np.float32)
    linear = [i * threshold_noise / linear_steps for i in range(linear_steps)]
    step_diff = linear_steps - threshold_noise * num_steps
    quadratic_steps = num_steps - linear_steps
    quadratic_coef = step_diff / (linear_steps * quadratic_steps**2)
    linear_coef = threshold_noise / linear_steps - 2 * step_diff / (quadratic_steps**2)
    const = quadratic_coef * (linear_steps**2)
    quadratic = [quadratic_coef * (i**2) + linear_coef * i + const for i in range(linear_steps, num_steps)]
    schedule = [1.0 - x for x in linear + quadratic + [1.0]]
    return np.asarray(schedule[:-1], np.float32)


class LTXConditionPipeline(PipelineBase):
    """LTX-Video conditioned generation (diffusers' ``LTXConditionPipeline``); the stages are ``PipelineBase``'s."""

    mask_encoder_padding = True  # diffusers' condition pipeline masks T5's padding tokens

    def prepare_conditions(self, conditions, image, video, frame_index, strength, *, height: int, width: int,
                           num_frames: int, resize_mode: str = "stretch") -> list[PreparedCondition]:
        """The conditions (or the image= / video= shorthand) checked, read, resized and trimmed to the video."""
        return conditioning.prepare_conditions(conditions, image, video, frame_index, strength, height=height,
                                               width=width, num_frames=num_frames, resize_mode=resize_mode,
                                               temporal_ratio=self.vae_temporal_compression_ratio)

    def prepare_latents(self, batch_size: int, grid: sampling.LatentGrid, key: jax.Array, latents=None, noise=None,
                        conditions: Sequence[PreparedCondition] = (), sigma: float | None = None):
        """(packed latents [B, N', C], mask [B, N'] or None, video_coords [B, 3, N'] (pixel units, frames not yet
        divided by the frame rate), number of extra conditioning tokens placed first), as diffusers prepares them.

        ``latents`` with ``sigma`` (video-to-video): ``sigma * noise + (1 - sigma) * latents``.
        """
        channels = self.transformer.config.in_channels
        shape = (batch_size, grid.frames, grid.height, grid.width, channels)
        base_latents = None if latents is None else sampling.unpack_latents(
            super().prepare_latents(batch_size, grid, key, latents=latents), grid)
        noise = jax.random.normal(key, shape, jnp.float32) if noise is None else sampling.unpack_latents(
            super().prepare_latents(batch_size, grid, key, noise=noise), grid)
        x = np.array(noise if base_latents is None or sigma is None else
                     sigma * noise + (1.0 - sigma) * base_latents)  # [B, F, H, W, C], a writable copy
        ids = dict(spatial_ratio=self.vae_spatial_compression_ratio, temporal_ratio=self.vae_temporal_compression_ratio,
                   patch_size=grid.patch_size, patch_size_t=grid.patch_size_t)
        frame_mask = np.zeros((batch_size, grid.frames), np.float32)
        extra_latents, extra_ids, extra_masks = [], [], []
        for k, c in enumerate(conditions):
            cond = np.asarray(self.encode_video(c.frames, jax.random.fold_in(key, 2 * k + 1)))  # [1, Fc, H, W, C]
            n_cond = cond.shape[1]
            if c.frame_index == 0:
                x[:, :n_cond] = conditioning.lerp(x[:, :n_cond], cond, c.strength)
                frame_mask[:, :n_cond] = c.strength
                continue
            if c.frames.shape[1] > 1:
                if n_cond < NUM_PREFIX_LATENT_FRAMES:
                    raise ValueError(f"condition {k}: a clip at a later frame needs at least {NUM_PREFIX_LATENT_FRAMES} "
                                     f"latent frames, got {n_cond}.")
                if n_cond > NUM_PREFIX_LATENT_FRAMES:
                    start = c.frame_index // self.vae_temporal_compression_ratio + NUM_PREFIX_LATENT_FRAMES
                    end = start + n_cond - NUM_PREFIX_LATENT_FRAMES
                    x[:, start:end] = conditioning.lerp(x[:, start:end], cond[:, NUM_PREFIX_LATENT_FRAMES:], c.strength)
                    frame_mask[:, start:end] = c.strength
                    cond = cond[:, :NUM_PREFIX_LATENT_FRAMES]
            cond_noise = np.asarray(jax.random.normal(jax.random.fold_in(key, 2 * k + 2), cond.shape, jnp.float32))
            cond = np.broadcast_to(conditioning.lerp(cond_noise, cond, c.strength), (batch_size, *cond.shape[1:]))
            extra_grid = dataclasses.replace(grid, frames=cond.shape[1])
            extra_latents.append(np.asarray(sampling.pack_latents(jnp.asarray(cond), grid.patch_size,
                                                                  grid.patch_size_t)))
            extra_ids.append(conditioning.video_ids(batch_size, extra_grid.frames, grid.height, grid.width,
                                                    frame_index=c.frame_index, **ids))
            extra_masks.append(np.full((batch_size, extra_grid.num_tokens), c.strength, np.float32))
        coords = conditioning.video_ids(batch_size, grid.frames, grid.height, grid.width, **ids)
        token_frames = np.repeat(np.arange(grid.token_frames) * grid.patch_size_t, grid.token_height * grid.token_width)
        mask = frame_mask[:, token_frames] if conditions else None  # each token takes its latent frame's mask
        packed = np.asarray(sampling.pack_latents(jnp.asarray(x), grid.patch_size, grid.patch_size_t))
        n_extra = sum(e.shape[1] for e in extra_latents)
        if extra_latents:
            packed = np.concatenate(extra_latents + [packed], axis=1)
            coords = np.concatenate(extra_ids + [coords], axis=2)
            mask = np.concatenate(extra_masks + [mask], axis=1)
        return jnp.asarray(packed), None if mask is None else jnp.asarray(mask), coords, n_extra

    def __call__(
        self,
        conditions: LTXVideoCondition | Sequence[LTXVideoCondition] | None = None,
        image: Any = None,
        video: Any = None,
        frame_index: int = 0,
        strength: float = 1.0,
        denoise_strength: float = 1.0,
        prompt: str | Sequence[str] | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        height: int = DEFAULT_HEIGHT,
        width: int = DEFAULT_WIDTH,
        num_frames: int = DEFAULT_NUM_FRAMES,
        frame_rate: float = DEFAULT_FRAME_RATE,
        num_inference_steps: int | None = None,
        timesteps: Sequence[float] | None = None,
        guidance_scale: float | Sequence[float] | None = None,
        guidance_rescale: float | Sequence[float] | None = None,
        stg_scale: float | Sequence[float] | None = None,
        rescaling_scale: float | Sequence[float] | None = None,
        skip_block_list=None,
        skip_layer_strategy: str | None = None,
        cfg_star_rescale: bool | None = None,
        guidance_timesteps: Sequence[float] | None = None,
        skip_initial_inference_steps: int | None = None,
        skip_final_inference_steps: int | None = None,
        image_cond_noise_scale: float = 0.15,
        num_videos_per_prompt: int = 1,
        seed: int = 0,
        latents=None,
        noise=None,
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
        """Generates videos under conditions (diffusers' ``LTXConditionPipeline`` arguments and defaults).

        Args (beyond ``LTXPipeline``'s):
          conditions: ``LTXVideoCondition`` s; or the shorthand ``image=`` / ``video=`` with ``frame_index=`` and
            ``strength=`` for one condition.
          denoise_strength: < 1 starts from ``latents=`` (normalised, e.g. ``encode_video`` of a video) noised to the
            schedule's sigma at that depth, and runs only the remaining steps (video-to-video).
          image_cond_noise_scale: noise put back on the mask-1 conditioning tokens before each step, times (t/1000)^2.
          latents: with ``denoise_strength`` < 1, the video to start from (normalised latents, channels-last 5-D or
            packed).
          noise: the initial Gaussian noise on the latent grid instead of drawing it from ``seed``.
          num_inference_steps: without ``timesteps``, diffusers' linear-quadratic schedule of that many steps.
          resize_mode: "stretch" (diffusers) or "crop" (center-crop to the aspect ratio, then resize: Lightricks' inference script).
        """
        call = self._begin_call(locals())
        validation.check_number("denoise_strength", denoise_strength, above=0)
        validation.check_number("image_cond_noise_scale", image_cond_noise_scale, minimum=0)
        if denoise_strength > 1:
            raise ValueError(f"denoise_strength must be in (0, 1], got {denoise_strength}.")
        if denoise_strength < 1 and latents is None:
            raise ValueError("denoise_strength < 1 starts from latents=: pass the normalised latents of the video to "
                             "re-render (pipe.encode_video(frames, key)), or denoise_strength=1.")
        prepared = self.prepare_conditions(conditions, image, video, frame_index, strength, height=height, width=width,
                                           num_frames=num_frames, resize_mode=resize_mode)
        embeds = self.encode_prompt(prompt, negative_prompt, call.do_classifier_free_guidance, num_videos_per_prompt,
                                    prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                    negative_prompt_attention_mask, max_sequence_length)
        timesteps = call.timesteps
        if timesteps is None:
            timesteps = linear_quadratic_sigmas(call.num_inference_steps) * np.float32(1000.0)
        guidance = dict(call.guidance)
        sigmas, timesteps = sampling.trim_schedule(*self.schedule(call.grid, timesteps=timesteps),
                                                   guidance.pop("skip_initial_inference_steps"),
                                                   guidance.pop("skip_final_inference_steps"))
        steps = len(timesteps)
        start = max(steps - min(int(steps * denoise_strength), steps), 0)  # diffusers' get_timesteps
        sigmas, timesteps = sigmas[start:], timesteps[start:]
        root = jax.random.PRNGKey(seed)
        noise_key, decode_key = jax.random.split(root)
        latents, mask, coords, n_extra = self.prepare_latents(
            embeds[0].shape[0], call.grid, noise_key, latents, noise, prepared,
            float(sigmas[0]) if denoise_strength < 1 else None)
        coords[:, 0] = coords[:, 0] * np.float32(1.0 / frame_rate)  # as diffusers scales them before the loop
        latents = self.denoise(latents, call.grid, *embeds, **guidance, conditioning_mask=mask, video_coords=coords,
                               per_token_timesteps=True, schedule=(sigmas, timesteps),
                               image_cond_noise_scale=image_cond_noise_scale if mask is not None else None,
                               noise_key=jax.random.fold_in(root, 3))
        return self._end_call(latents[:, n_extra:], call, output_type=output_type, key=decode_key, tiling=tiling)

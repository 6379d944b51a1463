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
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax.pipelines import conditioning
from ltx_jax.pipelines.base import PipelineBase
from ltx_jax.pipelines.calls import uses_guidance
from ltx_jax.pipelines.conditioning import PreparedCondition
from ltx_jax.pipelines.contracts import CallKeys, PreparedLatents
from ltx_jax.requests import GUIDANCE, STEP_CACHE, ConditionFields, ConditionRequest

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
    request_type = ConditionRequest
    positional = ("conditions", "image", "video")
    summary = ("Generates videos under conditions, or re-renders one (diffusers' ``LTXConditionPipeline.__call__`` "
               "arguments and defaults, plus ``seed``, ``denoise_strength`` and the original's guidance).")

    def prepare_conditions(self, request: ConditionFields, height: int, width: int,
                           num_frames: int) -> list[PreparedCondition]:
        """The request's conditions (or its image= / video= shorthand) checked, read, resized to height x width and
        trimmed to num_frames."""
        return conditioning.prepare_conditions(request.conditions, request.image, request.video, request.frame_index,
                                               request.strength, height=height, width=width, num_frames=num_frames,
                                               resize_mode=request.resize_mode,
                                               temporal_ratio=self.vae_temporal_compression_ratio)

    def prepare_latents(self, batch_size: int, grid: sampling.LatentGrid, keys: CallKeys, latents=None, noise=None,
                        conditions: Sequence[PreparedCondition] = (), sigma: float | None = None) -> PreparedLatents:
        """As diffusers prepares them (``PreparedLatents``): packed latents [B, N', C] with the extra conditioning
        tokens first, their mask [B, N'] (None without conditions), video_coords [B, 3, N'] in pixel units, and the
        number of extra tokens. Each condition's posterior and blend noise come from ``keys.for_condition``.

        ``latents`` with ``sigma`` (video-to-video): ``sigma * noise + (1 - sigma) * latents``.
        """
        channels = self.transformer.config.in_channels
        shape = (batch_size, grid.frames, grid.height, grid.width, channels)
        base_latents = None if latents is None else sampling.unpack_latents(
            super().prepare_latents(batch_size, grid, keys, latents=latents).latents, grid)
        noise = jax.random.normal(keys.noise, shape, jnp.float32) if noise is None else sampling.unpack_latents(
            super().prepare_latents(batch_size, grid, keys, noise=noise).latents, grid)
        x = np.array(noise if base_latents is None or sigma is None else
                     sigma * noise + (1.0 - sigma) * base_latents)  # [B, F, H, W, C], a writable copy
        ratios_and_patches = dict(spatial_ratio=self.vae_spatial_compression_ratio,
                                  temporal_ratio=self.vae_temporal_compression_ratio, patch_size=grid.patch_size,
                                  patch_size_t=grid.patch_size_t)
        frame_mask = np.zeros((batch_size, grid.frames), np.float32)
        extra_latents, extra_ids, extra_masks = [], [], []
        for k, c in enumerate(conditions):
            encode_key, noise_key = keys.for_condition(k, len(conditions))
            cond = np.asarray(self.encode_video(c.frames, encode_key))  # [1, Fc, H, W, C]
            n_cond = cond.shape[1]
            if c.frame_index == 0:
                x[:, :n_cond] = conditioning.lerp(x[:, :n_cond], cond, c.strength)
                frame_mask[:, :n_cond] = c.strength
                continue
            if c.frames.shape[1] > 1:
                if n_cond < NUM_PREFIX_LATENT_FRAMES:
                    raise ValueError(f"condition {k}: a clip at a later frame needs at least "
                                     f"{NUM_PREFIX_LATENT_FRAMES} latent frames, got {n_cond}.")
                if n_cond > NUM_PREFIX_LATENT_FRAMES:
                    start = c.frame_index // self.vae_temporal_compression_ratio + NUM_PREFIX_LATENT_FRAMES
                    end = start + n_cond - NUM_PREFIX_LATENT_FRAMES
                    x[:, start:end] = conditioning.lerp(x[:, start:end], cond[:, NUM_PREFIX_LATENT_FRAMES:], c.strength)
                    frame_mask[:, start:end] = c.strength
                    cond = cond[:, :NUM_PREFIX_LATENT_FRAMES]
            cond_noise = np.asarray(jax.random.normal(noise_key, cond.shape, jnp.float32))
            cond = np.broadcast_to(conditioning.lerp(cond_noise, cond, c.strength), (batch_size, *cond.shape[1:]))
            extra_grid = dataclasses.replace(grid, frames=cond.shape[1])
            extra_latents.append(np.asarray(sampling.pack_latents(jnp.asarray(cond), grid.patch_size,
                                                                  grid.patch_size_t)))
            extra_ids.append(conditioning.video_ids(batch_size, extra_grid.frames, grid.height, grid.width,
                                                    frame_index=c.frame_index, **ratios_and_patches))
            extra_masks.append(np.full((batch_size, extra_grid.num_tokens), c.strength, np.float32))
        coords = conditioning.video_ids(batch_size, grid.frames, grid.height, grid.width, **ratios_and_patches)
        token_frames = np.repeat(np.arange(grid.token_frames) * grid.patch_size_t, grid.token_height * grid.token_width)
        mask = frame_mask[:, token_frames] if conditions else None  # each token takes its latent frame's mask
        packed = np.asarray(sampling.pack_latents(jnp.asarray(x), grid.patch_size, grid.patch_size_t))
        n_extra = sum(e.shape[1] for e in extra_latents)
        if extra_latents:
            packed = np.concatenate(extra_latents + [packed], axis=1)
            coords = np.concatenate(extra_ids + [coords], axis=2)
            mask = np.concatenate(extra_masks + [mask], axis=1)
        return PreparedLatents(jnp.asarray(packed), None if mask is None else jnp.asarray(mask), coords, n_extra)

    def sigmas_and_timesteps_for(self, request: ConditionRequest, grid: sampling.LatentGrid):
        """(sigmas [S + 1], timesteps [S]) the request runs: its timesteps, else diffusers' linear-quadratic schedule
        of num_inference_steps; trimmed by the step skips, then to the last ``denoise_strength`` of the steps
        (diffusers' ``get_timesteps``)."""
        timesteps = request.timesteps
        if timesteps is None:
            timesteps = linear_quadratic_sigmas(request.num_inference_steps) * np.float32(1000.0)
        sigmas, timesteps = sampling.trim_schedule(*self.sigmas_and_timesteps(grid, timesteps=timesteps),
                                                   request.skip_initial_inference_steps,
                                                   request.skip_final_inference_steps)
        steps = len(timesteps)
        start = max(steps - min(int(steps * request.denoise_strength), steps), 0)
        return sigmas[start:], timesteps[start:]

    def generate(self, request: ConditionRequest) -> np.ndarray:
        """The frames of a checked request: conditions read and encoded into the start, the per-token loop, the
        decode of the video's tokens."""
        grid = self._begin(request)
        conditions = self.prepare_conditions(request, request.height, request.width, request.num_frames)
        sigmas, timesteps = self.sigmas_and_timesteps_for(request, grid)
        keys = CallKeys.from_seed(request.seed)
        embeds = self.prompt_embeddings(request, uses_guidance(request))
        start = self.prepare_latents(request.batch_size, grid, keys, request.latents, request.noise, conditions,
                                     float(sigmas[0]) if request.denoise_strength < 1 else None)
        latents = self.denoise(start.latents, grid, *embeds, **request.group(GUIDANCE), **request.group(STEP_CACHE),
                               conditioning_mask=start.conditioning_mask,
                               video_coords=start.coords_per_second(request.frame_rate), per_token_timesteps=True,
                               sigmas_and_timesteps=(sigmas, timesteps),
                               image_cond_noise_scale=(request.image_cond_noise_scale
                                                       if start.conditioning_mask is not None else None),
                               noise_key=keys.step_noise)
        return self._finish(request, latents[:, start.num_extra_tokens:], grid, request, keys.decode)

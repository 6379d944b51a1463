"""Checks of pipeline arguments, run before any work: each error names the rule and a fix (the nearest valid value).

Sizes are checked against the loaded components' ratios (a VAE that compresses 8x asks for multiples of 8).
"""

from __future__ import annotations

from typing import Sequence


def _nearest(value: int, multiple: int, offset: int = 0) -> int:
    return max(multiple + offset, int(round((value - offset) / multiple)) * multiple + offset)


def check_video_size(height: int, width: int, num_frames: int, *, spatial_multiple: int, temporal_ratio: int,
                     temporal_patch: int = 1) -> None:
    """height and width multiples of ``spatial_multiple`` (VAE ratio x patch size); num_frames = k * ratio + 1."""
    m = spatial_multiple
    if height <= 0 or width <= 0 or height % m or width % m:
        raise ValueError(f"height and width must be positive multiples of {m} (the VAE compresses {m}x), got "
                         f"{height}x{width}; nearest valid: {_nearest(height, m)}x{_nearest(width, m)}.")
    r = temporal_ratio
    if num_frames < 1 or (num_frames - 1) % r:
        raise ValueError(f"num_frames must be {r}k + 1 (1, {r + 1}, {2 * r + 1}, ...), got {num_frames}; nearest "
                         f"valid: {_nearest(num_frames, r, 1)}.")
    latent_frames = (num_frames - 1) // r + 1
    if latent_frames % temporal_patch:
        raise ValueError(f"num_frames={num_frames} gives {latent_frames} latent frames, not a multiple of the "
                         f"transformer's temporal patch size {temporal_patch}.")


def check_schedule(num_inference_steps: int | None, timesteps: Sequence[float] | None) -> None:
    if timesteps is None and (num_inference_steps is None or num_inference_steps <= 0):
        raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps}; e.g. 40 "
                         "(or 8 with a distilled checkpoint's timesteps).")
    if timesteps is not None and len(timesteps) == 0:
        raise ValueError("timesteps is empty; pass at least one timestep or use num_inference_steps.")


def check_prompts(prompt, negative_prompt, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                  negative_prompt_attention_mask, num_videos_per_prompt: int) -> int:
    """Checks the text arguments; returns the number of prompts (before ``num_videos_per_prompt``)."""
    if num_videos_per_prompt < 1:
        raise ValueError(f"num_videos_per_prompt must be >= 1, got {num_videos_per_prompt}.")
    if prompt is not None and prompt_embeds is not None:
        raise ValueError("Pass either prompt or prompt_embeds, not both.")
    if prompt is None and prompt_embeds is None:
        raise ValueError("Pass prompt (a string or a list of strings) or prompt_embeds with prompt_attention_mask.")
    if prompt is not None and not isinstance(prompt, (str, list, tuple)):
        raise ValueError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}.")
    if prompt_embeds is not None:
        if prompt_attention_mask is None:
            raise ValueError("prompt_embeds needs prompt_attention_mask [B, T] (1 = real token).")
        if tuple(prompt_attention_mask.shape) != tuple(prompt_embeds.shape[:2]):
            raise ValueError(f"prompt_attention_mask has shape {tuple(prompt_attention_mask.shape)} but prompt_embeds "
                             f"is {tuple(prompt_embeds.shape)}: the mask must be [B, T] = {tuple(prompt_embeds.shape[:2])}.")
    if negative_prompt_embeds is not None:
        if negative_prompt_attention_mask is None:
            raise ValueError("negative_prompt_embeds needs negative_prompt_attention_mask [B, T].")
        if prompt_embeds is not None and tuple(negative_prompt_embeds.shape) != tuple(prompt_embeds.shape):
            raise ValueError(f"negative_prompt_embeds has shape {tuple(negative_prompt_embeds.shape)} but prompt_embeds "
                             f"is {tuple(prompt_embeds.shape)}; they must match.")
        if tuple(negative_prompt_attention_mask.shape) != tuple(negative_prompt_embeds.shape[:2]):
            raise ValueError(f"negative_prompt_attention_mask has shape {tuple(negative_prompt_attention_mask.shape)}; "
                             f"expected {tuple(negative_prompt_embeds.shape[:2])}.")
    if prompt is not None and negative_prompt is not None and not isinstance(negative_prompt, str):
        n_prompts = 1 if isinstance(prompt, str) else len(prompt)
        if len(negative_prompt) != n_prompts:
            raise ValueError(f"negative_prompt has {len(negative_prompt)} entries but prompt has {n_prompts}; give one "
                             "negative prompt per prompt, or a single string for all.")
    if prompt is not None:
        return 1 if isinstance(prompt, str) else len(prompt)
    return int(prompt_embeds.shape[0])


def check_output_type(output_type: str) -> None:
    if output_type not in ("np", "latent"):
        raise ValueError(f"output_type={output_type!r}; use 'np' (frames in [0, 1]) or 'latent'.")

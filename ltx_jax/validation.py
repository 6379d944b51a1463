"""Checks of pipeline arguments, run before any work: each error names the rule and a fix (the nearest valid value).

Types first (``height must be an int, got float 64.0``), then values. Sizes are checked against the loaded
components' ratios (a VAE that compresses 8x asks for multiples of 8).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

# Upper bounds of the arguments that have no natural one. They keep a mistyped number (a height of 1e9, a seed past
# 32 bits, a prompt of 100,000 tokens) from failing deep inside a run, after the models are loaded, or silently; each
# is far beyond what a released model or a GPU takes in one pass.
MAX_SIDE = 8192  # pixels: four times RoPE's base of 2048
MAX_FRAMES = 2049  # 8 * 256 + 1: 82 s at 25 fps
MAX_FRAME_RATE = 240.0
MAX_STEPS = 1_000_000  # the schedule and the per-step strengths are arrays of this length
MAX_GUIDANCE = 100.0  # CFG and STG scales; the releases use up to 8
MAX_SEED = 2**32 - 1  # JAX's keys take 32 bits of a seed: 2**32 would be seed 0 again
MAX_SEQUENCE_LENGTH = 1024  # prompt tokens; the pipelines default to 128 or 256
# Step caching (``ltx_jax.sampling.step_cache``): each kind and the threshold it takes when none is given (diffusers'
# First Block Cache example; ComfyUI-TeaCache's recommendation for LTX-Video, "~1.7x").
STEP_CACHE_THRESHOLDS = {"first_block": 0.05, "teacache": 0.06}


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> None:
    """An int (numpy ints too; not a bool, not a float that happens to be whole) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {_got(value)}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        within = (f"in {minimum} .. {maximum}" if minimum is not None and maximum is not None
                  else f">= {minimum}" if minimum is not None else f"<= {maximum}")
        raise ValueError(f"{name} must be an int {within}, got {value}.")


def check_number(name: str, value: Any, *, minimum: float | None = None, above: float | None = None,
                 maximum: float | None = None, per_step: bool = False, note: str = "") -> None:
    """A finite real number (or, with ``per_step``, a non-empty list of them), >= minimum / > above, <= maximum."""
    values = list(value) if per_step and isinstance(value, (list, tuple, np.ndarray)) else [value]
    what = "a number or a list of numbers (one per step)" if per_step else "a number"
    if per_step and not values:
        raise ValueError(f"{name} is an empty list; give one number or one per step.")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"{name} must be {what}, got {_got(value)}.")
        if (minimum is not None and v < minimum) or (above is not None and v <= above):
            bound = f">= {minimum}" if minimum is not None else f"> {above}"
            raise ValueError(f"{name} must be {bound}{note}, got {v}.")
        if maximum is not None and v > maximum:
            raise ValueError(f"{name} must be <= {maximum}{note}, got {v}.")


def check_text(name: str, value: Any) -> None:
    """None, a string, or a non-empty list of strings."""
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a string or a list of strings, got {_got(value)}.")


def check_generation_arguments(*, frame_rate, num_inference_steps, timesteps, guidance_scale, guidance_rescale,
                               num_videos_per_prompt, seed, decode_timestep, decode_noise_scale, max_sequence_length,
                               prompt, negative_prompt) -> None:
    """Types and ranges of ``__call__``'s scalar arguments (sizes are ``check_video_size``'s)."""
    check_number("frame_rate", frame_rate, above=0, maximum=MAX_FRAME_RATE)
    if num_inference_steps is not None:
        check_int("num_inference_steps", num_inference_steps, minimum=1, maximum=MAX_STEPS)
    if timesteps is not None:
        check_number("timesteps", timesteps, minimum=0, per_step=True)
    check_number("guidance_scale", guidance_scale, minimum=0, maximum=MAX_GUIDANCE, per_step=True,
                 note=" (values up to 1 turn classifier-free guidance off)")
    check_number("guidance_rescale", guidance_rescale, minimum=0, per_step=True)
    check_int("num_videos_per_prompt", num_videos_per_prompt, minimum=1)
    check_int("seed", seed, minimum=0, maximum=MAX_SEED)
    check_number("decode_timestep", decode_timestep, minimum=0, per_step=True)
    if decode_noise_scale is not None:
        check_number("decode_noise_scale", decode_noise_scale, minimum=0, per_step=True)
    check_int("max_sequence_length", max_sequence_length, minimum=1, maximum=MAX_SEQUENCE_LENGTH)
    check_text("prompt", prompt)
    check_text("negative_prompt", negative_prompt)


def _nearest(value: int, multiple: int, offset: int = 0) -> int:
    return max(multiple + offset, int(round((value - offset) / multiple)) * multiple + offset)


def check_video_size(height: int, width: int, num_frames: int, *, spatial_multiple: int, temporal_ratio: int,
                     temporal_patch: int = 1) -> None:
    """height and width multiples of ``spatial_multiple`` (VAE ratio x patch size) up to ``MAX_SIDE``; num_frames =
    k * ratio + 1 up to ``MAX_FRAMES``."""
    for name, value, most in (("height", height, MAX_SIDE), ("width", width, MAX_SIDE),
                              ("num_frames", num_frames, MAX_FRAMES)):
        check_int(name, value, maximum=most)
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


def check_temporal_windows(tile: int, overlap: int, temporal_ratio: int, *, prefix: str = "") -> None:
    """A long video's windows (``temporal_tile_size``, ``temporal_overlap``, in frames) against the VAE's temporal
    ratio r: a window of rk or rk + 1 frames, an overlap a multiple of r smaller than it. ``prefix``: "--" names the
    command line's flags."""
    r = temporal_ratio
    if tile < r or tile % r not in (0, 1):
        near = max(r, tile // r * r)
        raise ValueError(f"{prefix}temporal_tile_size must be latent-aligned, {r}k or {r}k + 1 frames (e.g. {near} or "
                         f"{near + 1}), got {tile}.")
    if overlap < 0 or overlap % r or overlap >= tile:
        raise ValueError(f"{prefix}temporal_overlap must be a multiple of {r} frames smaller than the window ({tile}), "
                         f"e.g. {min(3 * r, tile // r * r - r)}; got {overlap}.")


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
    if prompt_embeds is not None:
        if prompt_attention_mask is None:
            raise ValueError("prompt_embeds needs prompt_attention_mask [B, T] (1 = real token).")
        if tuple(prompt_attention_mask.shape) != tuple(prompt_embeds.shape[:2]):
            raise ValueError(f"prompt_attention_mask has shape {tuple(prompt_attention_mask.shape)} but prompt_embeds "
                             f"is {tuple(prompt_embeds.shape)}: the mask must be "
                             f"[B, T] = {tuple(prompt_embeds.shape[:2])}.")
    if negative_prompt_embeds is not None:
        if negative_prompt_attention_mask is None:
            raise ValueError("negative_prompt_embeds needs negative_prompt_attention_mask [B, T].")
        if prompt_embeds is not None and tuple(negative_prompt_embeds.shape) != tuple(prompt_embeds.shape):
            raise ValueError(f"negative_prompt_embeds has shape {tuple(negative_prompt_embeds.shape)} but "
                             f"prompt_embeds is {tuple(prompt_embeds.shape)}; they must match.")
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
    if output_type not in ("np", "uint8", "latent"):
        raise ValueError(f"output_type={output_type!r}; use 'np' (frames in [0, 1]), 'uint8' or 'latent'.")

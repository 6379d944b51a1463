"""Temporal windows of a long video (diffusers' ``LTXI2VLongMultiPromptPipeline``, ComfyUI's looping sampler):
the cutting of the latent frames into overlapping windows, each window's conditioning (the previous window's tail,
reference and negative-index frames appended after its own frames), its RoPE coordinates, and the fusing of the
windows' results (AdaIN against the first window, a linear crossfade at the seams).

Everything here is channels-last NumPy on the host, on latents (a minute at 768x512 is 35 MB of them), never on
frames: shapes that grow window by window compile nothing. The denoising of a window is ``PipelineBase.denoise``'s
loop.

Axis letters: B batch (1), F latent frames, H latent height, W latent width, C latent channels, N tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np


def split_into_temporal_windows(latent_len: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) latent-frame windows of ``tile`` frames, each starting ``max(tile - overlap, 1)`` after the last;
    the last ends at ``latent_len`` (and may be shorter), as diffusers cuts them."""
    if tile <= 0:
        raise ValueError(f"the temporal window must hold at least one latent frame, got {tile}.")
    stride = max(tile - overlap, 1)
    windows, start = [], 0
    while start < latent_len:
        end = min(start + tile, latent_len)
        windows.append((start, end))
        if end == latent_len:
            break
        start += stride
    return windows


def parse_prompt_segments(prompt: str | Sequence[str] | None,
                          prompt_segments: Sequence[dict[str, Any]] | None = None) -> list[str]:
    """The positive prompt of each window index: ``prompt_segments`` ({"start_window", "end_window", "text"}; windows
    without a text take the last one before them), else ``prompt`` split at ``|`` (a list is taken as the parts).
    Windows past the end of the list take its last entry (``prompt_for_window``)."""
    if prompt_segments:
        last_window = max(int(s.get("end_window", 0)) for s in prompt_segments)
        texts = [""] * (last_window + 1)
        for seg in prompt_segments:
            start = int(seg.get("start_window", 0))
            for w in range(start, int(seg.get("end_window", start)) + 1):
                texts[w] = seg.get("text", "")
        last = ""
        for i, text in enumerate(texts):
            texts[i] = text or last
            last = texts[i]
        return texts
    if prompt is None:
        return []
    parts = [p.strip() for p in prompt.split("|")] if isinstance(prompt, str) else list(prompt)
    return [p for p in parts if p is not None]


def prompt_for_window(texts: Sequence[str], index: int) -> str:
    """Window ``index``'s prompt: its entry, or the last one."""
    return texts[min(index, len(texts) - 1)]


@dataclasses.dataclass
class WindowInputs:
    """One window before denoising: its latents, per-frame freedom and what was appended after its own frames.

    Attributes:
      latents: [1, F, H, W, C] float32: the window's slice of the video's starting latents (zeros, the conditioning
        image on frame 0), then the appended frames (previous tail, reference, negative index).
      free: [F] float32 per latent frame, 1 = denoised from noise, 0 = kept as given, in between = blended (diffusers'
        ``window_cond_mask_5d``, constant over H and W).
      appended: latent frames appended after the window's own (dropped from the result).
      overlap_len, guiding_len, negative_len: the counts ``window_video_coords`` re-times.
    """

    latents: np.ndarray
    free: np.ndarray
    appended: int = 0
    overlap_len: int = 0
    guiding_len: int = 0
    negative_len: int = 0

    def append(self, frames: np.ndarray | None, count: int, strength: float | None) -> None:
        """diffusers' ``inject_prev_tail_latents``: the last ``min(count, F, len(frames))`` of ``frames``
        [1, k, H, W, C] go after the window's frames with freedom ``1 - strength`` (nothing without frames, count or
        strength)."""
        if frames is None or count <= 0 or strength is None or strength <= 0:
            return
        k = min(int(count), self.latents.shape[1], frames.shape[1])
        if k <= 0:
            return
        self.latents = np.concatenate([self.latents, np.asarray(frames[:, -k:], np.float32)], axis=1)
        self.free = np.concatenate([self.free, np.full((k,), 1.0 - strength, np.float32)])
        self.appended += k


def window_video_coords(frames: int, height: int, width: int, *, overlap_len: int, guiding_len: int,
                        negative_len: int, scale: tuple[int, int, int], frame_rate: float) -> np.ndarray:
    """diffusers' ``build_video_coords_for_window``: [1, 3, N] float32 (frame, row, column) coordinates of a window of
    ``frames`` x ``height`` x ``width`` latents for RoPE, frames in seconds.

    Every latent frame k sits at pixel frame ``max(0, k * s_t + 1 - s_t)`` (the causal VAE's first frame alone); the
    last ``overlap_len + guiding_len + negative_len`` frames are re-timed: the previous tail as the window's first
    frames, the reference frames right after it, the negative-index frame one latent frame before the start.
    """
    st, sy, sx = (int(s) for s in scale)

    def coords(n: int, latent_idx: int) -> np.ndarray:  # [3, n * H * W] int64, as get_latent_coords
        t, y, x = np.meshgrid(np.arange(n), np.arange(height), np.arange(width), indexing="ij")
        pixel = np.stack([t.ravel() * st, y.ravel() * sy, x.ravel() * sx]).astype(np.int64)
        frame_idx = latent_idx * st if latent_idx <= 0 else 1 + (latent_idx - 1) * st
        if frame_idx == 0:
            pixel[0] = np.maximum(pixel[0] + 1 - st, 0)
        pixel[0] += frame_idx
        return pixel

    pixel = coords(frames, 0)
    replaced = [c for c in (coords(overlap_len, 0) if overlap_len > 0 else None,
                            coords(guiding_len, overlap_len) if guiding_len > 0 else None,
                            coords(negative_len, -1) if negative_len > 0 else None) if c is not None]
    if replaced:
        tail = np.concatenate(replaced, axis=1)
        pixel[:, pixel.shape[1] - tail.shape[1]:] = tail
    out = pixel.astype(np.float32)
    out[0] = out[0] * np.float32(1.0 / frame_rate)
    return out[None]


def adain_normalize_latents(current: np.ndarray, reference: np.ndarray | None, factor: float) -> np.ndarray:
    """diffusers' ``adain_normalize_latents``: each channel of ``current`` [B, F, H, W, C] moved ``factor`` of the
    way to ``reference``'s mean and (unbiased) std over (F, H, W); ``factor`` 0 or no reference leaves it."""
    if reference is None or factor is None or factor <= 0:
        return current
    eps = np.float32(1e-6)
    factor = np.float32(factor)
    axes = (1, 2, 3)
    mu, sigma = current.mean(axes, keepdims=True), current.std(axes, keepdims=True, ddof=1)
    mu_ref, sigma_ref = reference.mean(axes, keepdims=True), reference.std(axes, keepdims=True, ddof=1)
    mu_blend = (1 - factor) * mu + factor * mu_ref
    sigma_blend = np.maximum((1 - factor) * sigma + factor * sigma_ref, eps)
    return (current - mu) / (sigma + eps) * sigma_blend + mu_blend


def linear_overlap_fuse(prev: np.ndarray, new: np.ndarray, overlap: int) -> np.ndarray:
    """diffusers' ``linear_overlap_fuse`` over frames (axis 1 of [B, F, H, W, C]): the last ``overlap`` frames of
    ``prev`` crossfade linearly into the first of ``new`` (weights ``linspace(1, 0, overlap + 2)[1:-1]``); an overlap
    of 1 or less concatenates."""
    if overlap <= 1:
        return np.concatenate([prev, new], axis=1)
    alpha = np.linspace(1.0, 0.0, overlap + 2, dtype=np.float32)[1:-1].reshape(1, overlap, 1, 1, 1)
    blended = alpha * prev[:, -overlap:] + (1 - alpha) * new[:, :overlap]
    return np.concatenate([prev[:, :-overlap], blended, new[:, overlap:]], axis=1)


def fuse_window(video: np.ndarray | None, window: np.ndarray, first: np.ndarray | None, *, overlap_lat: int,
                adain_factor: float) -> np.ndarray:
    """The video's latents [1, F, H, W, C] after one more window's result ``window`` [1, f, H, W, C] (appended frames
    already dropped), as diffusers fuses them: the first window is the video; a later one loses its first frame, is
    AdaIN-normalised against ``first`` (the first window's result), and crossfades over ``max(overlap_lat - 1, 1)``
    frames with the video's tail."""
    window = np.asarray(window, np.float32)
    if video is None:
        return window
    window = window[:, 1:]
    if window.shape[1] == 0:  # a last window of one latent frame adds nothing (diffusers fails there)
        return video
    if adain_factor > 0 and first is not None:
        window = adain_normalize_latents(window, first, adain_factor)
    n = window.shape[1]
    fused = linear_overlap_fuse(video[:, -n:], window, max(overlap_lat - 1, 1))
    return np.concatenate([video[:, :-n], fused], axis=1)


def fused_length(latent_len: int, windows: Sequence[tuple[int, int]], overlap_lat: int) -> int:
    """Latent frames of the fused video (``fuse_window`` over ``windows``): the video's own count, except that each
    seam drops a frame without overlap and keeps an extra one with an overlap of 2 latent frames (16 pixel frames),
    as diffusers fuses them."""
    total = 0
    for i, (start, end) in enumerate(windows):
        n = end - start
        if i == 0:
            total = n
            continue
        if n <= 1:
            continue
        ov = max(overlap_lat - 1, 1)
        total += (n - 1) - (ov if ov > 1 else 0)
    return total

"""Conditioning inputs (images, videos) and how they become latents, as diffusers' LTX pipelines make them.

    LTXVideoCondition(image=img, frame_index=0, strength=1.0)      # an image at a frame
    LTXVideoCondition(video=clip, frame_index=16, strength=0.8)    # a clip starting at a frame

Inputs: an image as a numpy array [H, W, 3] (uint8, or float in [0, 1]), a ``PIL.Image`` or a path; a video as
[F, H, W, 3], a list of images, or a path (a video file, a folder of images, an image). They are resized to the
generation size the way diffusers' ``VideoProcessor.preprocess`` resizes them (``resize_mode="stretch"``: PIL inputs
and paths with Lanczos, numpy arrays by nearest neighbour as ``torch.nn.functional.interpolate`` does), or, with
``resize_mode="crop"``, center-cropped to the size's aspect ratio and resized (the geometry of Lightricks' own
inference script), then mapped to [-1, 1].

Axis letters: B batch, F frames (latent frames for latents), H height, W width, C channels, N tokens.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from ltx_jax import video as media
from ltx_jax import validation

RESIZE_MODES = ("stretch", "crop")


@dataclasses.dataclass
class LTXVideoCondition:
    """One conditioning item of ``LTXConditionPipeline`` (diffusers' ``LTXVideoCondition``): an image or a video placed
    at pixel frame ``frame_index``, with ``strength`` in [0, 1] (1 = kept as given)."""

    image: Any = None
    video: Any = None
    frame_index: int = 0
    strength: float = 1.0


@dataclasses.dataclass
class PreparedCondition:
    """A condition resized to the video and trimmed: frames [1, F, H, W, 3] in [-1, 1]."""

    frames: np.ndarray
    frame_index: int
    strength: float


def _is_pil(x) -> bool:
    try:
        import PIL.Image  # deferred: Pillow loads only when an image is handled
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, PIL.Image.Image)


def _as_float_array(frames: np.ndarray, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"{what} must be uint8 or float in [0, 1], got dtype {frames.dtype}.")
    frames = frames.astype(np.float32)
    if frames.size and (np.nanmin(frames) < 0 or np.nanmax(frames) > 1 or not np.all(np.isfinite(frames))):
        raise ValueError(f"{what} holds floats outside [0, 1] (range {np.nanmin(frames):.3g} .. "
                         f"{np.nanmax(frames):.3g}); pass uint8 or floats in [0, 1].")
    return frames


def as_frames(x: Any, what: str, *, video: bool) -> list | np.ndarray:
    """An image or video input -> a list of RGB PIL images, or float32 [F, H, W, 3] in [0, 1] for array inputs."""
    if isinstance(x, (str, os.PathLike)):
        return media.read_frames(x) if video else [media.read_image(x)]
    if _is_pil(x):
        return [x.convert("RGB")]
    if isinstance(x, (list, tuple)) and x and all(_is_pil(f) for f in x):
        return [f.convert("RGB") for f in x]
    if isinstance(x, (list, tuple)) and x:
        x = np.stack([np.asarray(f) for f in x])
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        frames = np.asarray(x)
        expected = 4 if video else 3
        if frames.ndim == 3 and video:
            frames = frames[None]  # a one-frame video
        if frames.ndim != expected or frames.shape[-1] != 3:
            layout = "[F, H, W, 3]" if video else "[H, W, 3]"
            raise ValueError(f"{what} has shape {frames.shape}; expected {layout} (RGB, channels last).")
        return _as_float_array(frames if video else frames[None], what)
    raise ValueError(f"{what} must be a path, a PIL image, a numpy array{' or a list of frames' if video else ''}, "
                     f"got {type(x).__name__}.")


def _nearest(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """``torch.nn.functional.interpolate(mode="nearest")``: source index floor(i * in / out) in float32."""
    def index(out_size, in_size):
        scale = np.float32(in_size / out_size)
        return np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64), in_size - 1)

    return frames[:, index(height, frames.shape[1])][:, :, index(width, frames.shape[2])]


def _crop_and_resize(image, height: int, width: int):
    """Lightricks' ``load_image_to_tensor_with_resize_and_crop`` geometry: crop the center to the target's aspect
    ratio (sizes truncated as it truncates them), then PIL's default (bicubic) resize. Its Gaussian blur and CRF-29
    H.264 round trip are not reproduced (the latter depends on the libx264 build)."""
    target = width / height
    if image.width / image.height > target:
        new_width, new_height = int(image.height * target), image.height
        left, top = (image.width - new_width) // 2, 0
    else:
        new_width, new_height = image.width, int(image.width / target)
        left, top = 0, (image.height - new_height) // 2
    return image.crop((left, top, left + new_width, top + new_height)).resize((width, height))


def preprocess(frames: list | np.ndarray, height: int, width: int, resize_mode: str = "stretch") -> np.ndarray:
    """Frames from ``as_frames`` -> float32 [F, height, width, 3] in [-1, 1], resized as the module docstring says."""
    import PIL.Image  # deferred: Pillow loads only when an image is handled

    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode={resize_mode!r}; use one of {RESIZE_MODES}.")
    if isinstance(frames, np.ndarray):
        if resize_mode == "crop":
            frames = [PIL.Image.fromarray(np.round(f * 255).astype(np.uint8)) for f in frames]
        else:
            resized = frames if frames.shape[1:3] == (height, width) else _nearest(frames, height, width)
            return resized * 2.0 - 1.0
    if resize_mode == "crop":
        frames = [_crop_and_resize(f, height, width) for f in frames]
    else:
        frames = [f if f.size == (width, height) else f.resize((width, height), resample=PIL.Image.LANCZOS)
                  for f in frames]
    return np.stack([np.asarray(f, np.float32) / 255.0 for f in frames]) * 2.0 - 1.0


def lerp(start, end, weight):
    """``torch.lerp`` as torch computes it (exact at weight 1): start + w (end - start) below 0.5, else
    end - (end - start)(1 - w)."""
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


def _linear_taps(size_in: int, size_out: int):
    """torch's ``align_corners=False`` linear taps for one axis: (low index, high index, high weight) [size_out]."""
    scale = np.float64(np.float32(size_in) / np.float32(size_out))  # a float32 scale, then one rounding (an FMA)
    src = np.maximum(scale * (np.arange(size_out) + 0.5) - 0.5, 0).astype(np.float32)
    low = np.floor(src).astype(np.int32)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (src - low).astype(np.float32)


def resize_bilinear(x, height: int, width: int):
    """[..., H, W, C] -> [..., height, width, C] float32 as ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` (no antialiasing) resizes: what the original package does to conditioning media at each
    pass's size and to the multi-scale output. Runs under jit; the same size comes back unchanged."""
    x = jnp.asarray(x, jnp.float32)
    if x.shape[-3:-1] == (height, width):
        return x
    lo, hi, w = _linear_taps(x.shape[-2], width)  # along the width first, then the height, as torch's kernel
    x = jnp.take(x, lo, axis=-2) * (1 - w)[:, None] + jnp.take(x, hi, axis=-2) * w[:, None]
    lo, hi, w = _linear_taps(x.shape[-3], height)
    return jnp.take(x, lo, axis=-3) * (1 - w)[:, None, None] + jnp.take(x, hi, axis=-3) * w[:, None, None]


def video_ids(batch: int, frames: int, height: int, width: int, *, spatial_ratio: int, temporal_ratio: int,
              frame_index: int = 0, patch_size: int = 1, patch_size_t: int = 1) -> np.ndarray:
    """Pixel coordinates (frame, row, column) of every token, [B, 3, N] float32, as diffusers'
    ``_prepare_video_ids`` + ``_scale_video_ids`` make them: latent frame f starts at pixel frame
    max(0, f * temporal_ratio + 1 - temporal_ratio) + frame_index (the causal first frame)."""
    f, h, w = np.meshgrid(np.arange(0, frames, patch_size_t), np.arange(0, height, patch_size),
                          np.arange(0, width, patch_size), indexing="ij")
    ids = np.stack([f.reshape(-1), h.reshape(-1), w.reshape(-1)]) * np.array(
        [temporal_ratio, spatial_ratio, spatial_ratio])[:, None]  # [3, N] int
    ids[0] = np.maximum(ids[0] + 1 - temporal_ratio, 0) + frame_index
    return np.broadcast_to(ids.astype(np.float32)[None], (batch, *ids.shape)).copy()


def nearest_valid_lengths(length: int, ratio: int) -> str:
    """The k * ratio + 1 lengths either side of ``length``."""
    below = max(1, (length - 1) // ratio * ratio + 1)
    return f"{below} or {below + ratio}"


def prepare_conditions(conditions, image, video, frame_index, strength, *, height: int, width: int, num_frames: int,
                       temporal_ratio: int, resize_mode: str = "stretch") -> list[PreparedCondition]:
    """The conditions (or the image= / video= shorthand) checked, read, resized and trimmed to the video."""
    if conditions is not None and (image is not None or video is not None):
        raise ValueError("pass conditions=[LTXVideoCondition(...)] or the image= / video= shorthand, not both.")
    if conditions is None:
        if image is None and video is None:
            return []
        conditions = [LTXVideoCondition(image=image, video=video, frame_index=frame_index, strength=strength)]
    conditions = [conditions] if isinstance(conditions, LTXVideoCondition) else list(conditions)
    ratio, prepared = temporal_ratio, []
    for k, c in enumerate(conditions):
        what = f"condition {k}"
        if not isinstance(c, LTXVideoCondition):
            raise ValueError(f"{what} is a {type(c).__name__}; conditions are LTXVideoCondition(image= or video=, "
                             "frame_index=, strength=).")
        if (c.image is None) == (c.video is None):
            raise ValueError(f"{what} needs exactly one of image= and video=.")
        validation.check_int(f"{what} frame_index", c.frame_index, minimum=0)
        if c.frame_index >= num_frames:
            raise ValueError(f"{what} frame_index {c.frame_index} is at or past num_frames={num_frames}; frames are "
                             f"0 .. {num_frames - 1}.")
        validation.check_number(f"{what} strength", c.strength, minimum=0)
        if c.strength > 1:
            raise ValueError(f"{what} strength must be in [0, 1], got {c.strength}.")
        source = c.image if c.image is not None else c.video
        frames = preprocess(as_frames(source, what, video=c.video is not None), height, width, resize_mode)
        if c.video is not None:
            if (len(frames) - 1) % ratio:
                raise ValueError(f"{what}: a conditioning video needs k * {ratio} + 1 frames, got {len(frames)}; "
                                 f"nearest valid: {nearest_valid_lengths(len(frames), ratio)}.")
            room = (num_frames - c.frame_index - 1) // ratio * ratio + 1  # what fits from frame_index on
            frames = frames[: min(len(frames), room)]
        prepared.append(PreparedCondition(frames[None], c.frame_index, float(c.strength)))
    return prepared

"""LTX-2 image-to-video and frame conditions (diffusers' ``LTX2ImageToVideoPipeline`` and ``LTX2ConditionPipeline``).

    pipe = LTX2ImageToVideoPipeline.from_pretrained("LTX-2", dtype="bfloat16")
    out = pipe(image=first_frame, prompt="the fox runs off", num_frames=121)     # first_frame: [H, W, 3] uint8

    pipe = LTX2ConditionPipeline.from_pretrained("LTX-2", dtype="bfloat16")
    out = pipe(conditions=[LTX2VideoCondition(start, index=0), LTX2VideoCondition(end, index=-1, strength=0.8)],
               prompt="...")

Both are ``LTX2Pipeline`` (the same loading, prompt encoding, request checks, compiled core and outputs) with their
own start latents, passed to ``LTX2Core`` as an ``LTX2Conditioning`` (a per-token mask, the clean latents, the
appended keyframe tokens' coordinates):

- image to video: the image, VAE-encoded (the posterior's mode) and normalised, fills every latent frame; the first
  latent frame's tokens have mask 1 (kept clean: timestep 0, never stepped), the rest are noise (diffusers'
  ``latents = image * mask + noise * (1 - mask)``);
- conditions: an item at latent index 0 overwrites the first frame's tokens with mask ``strength``; an item at a
  later latent index (negative: from the end) is appended as extra tokens with mask ``strength`` and its own RoPE
  coordinates (``rope.keyframe_coords``: Lightricks' ``VideoConditionByKeyframeIndex``), removed after the loop;
  everything is then mixed with noise at ``noise_scale (1 - mask)`` (``noise_scale``: the first sigma by default).

Images: ``[H, W, 3]`` uint8 (or float in [0, 1]) arrays or PIL images; a condition's ``frames`` also ``[F, H, W, 3]``
or a list. As diffusers: a single frame is first re-compressed with H.264 at the model's CRF (33 for Gemma 3
checkpoints, 18 for LTX-2.5's Gemma 4; ``image_crf`` / ``crf`` 0 skips it; ``ffmpeg.recompress_image``); the
image-to-video image is resized with Pillow's bilinear filter to ``height x width``; condition frames are resized to
cover ``height x width`` (bilinear, no antialiasing, as ``F.interpolate``) and centre-cropped.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.ffmpeg import recompress_image
from ltx_jax.models import as_variables
from ltx_jax.models.ltx2 import rope
from ltx_jax.pipelines.ltx2 import LTX2Pipeline, LTX2Request, release_defaults
from ltx_jax.pipelines.ltx2_core import LTX2Conditioning
from ltx_jax.pipelines.ltx2_latents import pack_video_latents, vae_compression
from ltx_jax.programs import Program
from ltx_jax.requests import arg

#: The H.264 CRF of conditioning images (diffusers' ``DEFAULT_IMAGE_CRF`` / ``LTX2_5_IMAGE_CRF``), by text encoder.
DEFAULT_IMAGE_CRF, GEMMA4_IMAGE_CRF = 33, 18


@dataclasses.dataclass(frozen=True)
class LTX2VideoCondition:
    """One frame condition (diffusers' ``LTX2VideoCondition``).

    Attributes:
      frames: an image ([H, W, 3] uint8 / float in [0, 1], or PIL) or frames ([F, H, W, 3], a list).
      index: the LATENT frame it starts at (0: the first frame's tokens are replaced; > 0 or negative: appended as
        keyframe tokens).
      strength: 1 keeps it clean; between 0 and 1 a partial pull.
      crf: H.264 re-compression of a single frame (None: the model's default, 0: none).
    """

    frames: Any
    index: int = 0
    strength: float = 1.0
    crf: int | None = None


def _crf(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 51:
        raise ValueError(f"{name} must be an H.264 CRF in 0 .. 51 (0: no re-compression), got {value!r}.")


def _image(name: str, value: Any) -> None:
    for image in value if isinstance(value, (list, tuple)) else [value]:
        shape = None if hasattr(image, "convert") else np.shape(image)  # a PIL image, or an array
        if shape is not None and (len(shape) != 3 or shape[2] != 3):
            raise ValueError(f"{name} must be an RGB image [H, W, 3] (uint8, or float in [0, 1]) or a PIL image, "
                             f"got shape {shape}.")


def _conditions(name: str, value: Any) -> None:
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, LTX2VideoCondition):
            raise ValueError(f"{name} takes LTX2VideoCondition items, got {type(item).__name__}.")
        if not 0 <= float(item.strength) <= 1:
            raise ValueError(f"{name}: a condition's strength must be in [0, 1], got {item.strength}.")
        if item.crf is not None:
            _crf(f"{name} crf", item.crf)


@dataclasses.dataclass(frozen=True)
class LTX2ImageToVideoRequest(LTX2Request):
    """``LTX2ImageToVideoPipeline``'s call: ``LTX2Request`` and the image."""

    image: Any = arg(None, "the first frame: [H, W, 3] uint8 (or float in [0, 1]) or PIL; a list: one per video.",
                     _image)
    image_crf: int | None = arg(None, "H.264 CRF of the image's re-compression (None: the model's, 0: none).", _crf)

    def _check_together(self) -> None:
        super()._check_together()
        if self.image is None and self.latents is None:
            raise ValueError("image-to-video needs image= (or latents=).")


@dataclasses.dataclass(frozen=True)
class LTX2ConditionRequest(LTX2Request):
    """``LTX2ConditionPipeline``'s call: ``LTX2Request`` and the conditions; ``noise_scale`` None is the first
    sigma (1 without custom sigmas), as diffusers infers it."""

    conditions: Any = arg(None, "LTX2VideoCondition items (or one).", _conditions)
    noise_scale: float | None = arg(None, "noise mixed into the start at noise_scale (1 - mask) per token (None: "
                                          "the first sigma).", lambda n, v: _unit(n, v))

    @property
    def start_noise_scale(self) -> float:
        if self.noise_scale is not None:
            return float(self.noise_scale)
        return float(self.sigmas[0]) if self.sigmas is not None else 1.0


def _unit(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")


def _encode_program(vae, variables, pixels):
    """[B, F, H, W, 3] in [-1, 1] -> the posterior's mode, normalised [B, F', H', W', C] (diffusers'
    ``retrieve_latents(..., "argmax")`` then ``_normalize_latents``)."""
    mean, _ = vae.apply(variables, pixels, method="encode")
    return vae.apply(variables, mean.astype(jnp.float32), method="normalize_latents")


_encode = Program(_encode_program, "condition encoding", static=("vae",), params=("variables",))


class _ConditionedPipeline(LTX2Pipeline):
    """What both conditioned pipelines share: their request type, the CRF default and the image encoding."""

    request_type = LTX2Request

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.defaults, self.request_type):  # a release's defaults, over this kind's own
            plain = LTX2Request()
            changed = {f.name: getattr(self.defaults, f.name) for f in dataclasses.fields(LTX2Request)
                       if getattr(self.defaults, f.name) != getattr(plain, f.name)}
            self.defaults = self.request_type(**changed)

    @property
    def default_crf(self) -> int:
        """The model's conditioning CRF: 18 for a Gemma 4 text encoder (LTX-2.5), else 33."""
        model_type = getattr(getattr(self.encoder.gemma, "config", None), "model_type", "")
        return GEMMA4_IMAGE_CRF if str(model_type).startswith("gemma4") else DEFAULT_IMAGE_CRF

    def encode_pixels(self, pixels: np.ndarray) -> jax.Array:
        """[B, F, H, W, 3] float32 in [-1, 1] -> normalised latents [B, F', H', W', C] (one compiled program per
        shape)."""
        vae = self.core.vae
        return _encode(vae=vae, variables=as_variables(self.params["vae"]), pixels=jnp.asarray(pixels, vae.dtype))


class LTX2ImageToVideoPipeline(_ConditionedPipeline):
    """diffusers' ``LTX2ImageToVideoPipeline``: ``LTX2Pipeline`` whose first frame is the given image."""

    request_type = LTX2ImageToVideoRequest

    def _video_start(self, r: LTX2ImageToVideoRequest, batch: int, grid, key) -> dict:
        t = self.core.transformer.config
        frame0 = np.zeros((batch, grid.frames, grid.height, grid.width, 1), np.float32)
        frame0[:, 0] = 1.0
        mask = pack_video_latents(frame0, t.patch_size, t.patch_size_t)[..., 0]  # [B, N]
        if r.latents is not None:  # diffusers: packed latents as they are, [B, C, F, H, W] noised around frame 0
            latents = self.packed_video_latents(r.latents)
            noised = np.ndim(r.latents) == 5 and r.noise_scale > 0
            noise = self._noise(r.noise, key, latents.shape) if noised else None
            return dict(latents=latents, noise=noise, noise_scale=r.noise_scale,
                        conditioning=LTX2Conditioning(mask, latents))
        images = r.image if isinstance(r.image, (list, tuple)) else [r.image]
        if len(images) not in (1, batch):
            raise ValueError(f"{len(images)} images for {batch} videos; give one image, or one per video.")
        crf = self.default_crf if r.image_crf is None else r.image_crf
        pixels = np.stack([_resized(_recompressed(image, crf), r.height, r.width) for image in images])
        init = self.encode_pixels(pixels[:, None] * 2.0 - 1.0)  # [b, 1, H', W', C]
        init = jnp.broadcast_to(init, (batch, grid.frames) + init.shape[2:])
        latents = pack_video_latents(init, t.patch_size, t.patch_size_t)
        return dict(latents=latents, noise=self._fresh_video(r.noise, batch, grid, key), noise_scale=1.0,
                    conditioning=LTX2Conditioning(mask, latents))


class LTX2ConditionPipeline(_ConditionedPipeline):
    """diffusers' ``LTX2ConditionPipeline``: ``LTX2Pipeline`` with frame conditions (images or clips at latent
    indices, each with a strength)."""

    request_type = LTX2ConditionRequest

    def _video_start(self, r: LTX2ConditionRequest, batch: int, grid, key) -> dict:
        t = self.core.transformer.config
        spatial, temporal = vae_compression(self.core.vae.config)
        shape = self.core.latent_shapes(grid, batch)[0]
        latents = (self.packed_video_latents(r.latents) if r.latents is not None
                   else jnp.zeros(shape, jnp.float32))
        mask, clean = jnp.zeros(shape[:2], jnp.float32), jnp.zeros(shape, jnp.float32)
        extra_tokens, extra_mask, extra_coords = [], [], []
        items = r.conditions if isinstance(r.conditions, (list, tuple)) else [r.conditions] if r.conditions else []
        for i, item in enumerate(items):
            index = item.index % grid.frames if item.index < 0 else item.index
            if index >= grid.frames:
                raise ValueError(f"condition {i} starts at latent index {item.index}, past the {grid.frames} latent "
                                 f"frames of {r.num_frames} frames; use an index below {grid.frames} (or negative).")
            pixels = self._condition_pixels(item, r, start=max((index - 1) * temporal + 1, 0))
            z = self.encode_pixels(pixels[None])  # [1, f, H', W', C]
            tokens = pack_video_latents(z, t.patch_size, t.patch_size_t)  # [1, K, C]
            k = tokens.shape[1]
            if index == 0:  # the first frames' tokens replaced
                latents, clean = latents.at[:, :k].set(tokens[0]), clean.at[:, :k].set(tokens[0])
                mask = mask.at[:, :k].set(float(item.strength))
                continue
            extra_tokens.append(jnp.broadcast_to(tokens, (batch, k, tokens.shape[2])))
            extra_mask.append(jnp.full((batch, k), float(item.strength), jnp.float32))
            extra_coords.append(rope.keyframe_coords(
                batch, z.shape[1], z.shape[2], z.shape[3], pixel_frame=(index - 1) * temporal + 1,
                pixel_frames=pixels.shape[0], patch_size=t.patch_size, patch_size_t=t.patch_size_t,
                scale_factors=(temporal, spatial, spatial), fps=grid.fps))
        coords = None
        if extra_tokens:
            latents = jnp.concatenate([latents, *extra_tokens], axis=1)
            clean = jnp.concatenate([clean, *extra_tokens], axis=1)
            mask = jnp.concatenate([mask, *extra_mask], axis=1)
            coords = np.concatenate(extra_coords, axis=2)
        if r.noise is not None:
            noise = self._noise(r.noise, key, latents.shape)
        else:  # the grid's tokens' noise drawn as text-to-video draws it, then the keyframe tokens'
            noise = self._fresh_video(None, batch, grid, key)
            extra = (batch, latents.shape[1] - noise.shape[1], latents.shape[2])
            noise = jnp.concatenate([noise, jax.random.normal(jax.random.fold_in(key, 1), extra)], axis=1)
        return dict(latents=latents, noise=noise, noise_scale=r.start_noise_scale,
                    conditioning=LTX2Conditioning(mask, clean, coords))

    def _condition_pixels(self, item: LTX2VideoCondition, r: LTX2ConditionRequest, start: int) -> np.ndarray:
        """A condition's frames as the VAE takes them: [f, height, width, 3] in [-1, 1], f trimmed to 8 k + 1 and to
        the frames left after ``start`` (diffusers' ``preprocess_conditions``)."""
        frames = _frames_array(item.frames)  # [F, H, W, 3] in 0 .. 255
        if frames.shape[0] == 1:
            crf = self.default_crf if item.crf is None else item.crf
            frames = _recompressed(frames[0], crf, scale=255.0)[None]
        _, temporal = vae_compression(self.core.vae.config)
        count = min(frames.shape[0], r.num_frames - start)
        count = (count - 1) // temporal * temporal + 1
        frames = _cover(frames[:count].astype(np.float32), r.height, r.width)
        return frames / 127.5 - 1.0


# ------------------------------------------------------------------------------------------------ images


def _frames_array(frames: Any) -> np.ndarray:
    """[F, H, W, 3] in 0 .. 255 (uint8 kept; float in [0, 1] scaled) from an image, frames or a list."""
    if isinstance(frames, (list, tuple)):
        return np.concatenate([_frames_array(f) for f in frames])
    array = np.asarray(frames.convert("RGB")) if hasattr(frames, "convert") else np.asarray(frames)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"condition frames of shape {array.shape}; expected [H, W, 3] or [F, H, W, 3] RGB.")
    return array if array.dtype == np.uint8 else np.asarray(array, np.float32) * 255.0


def _recompressed(image: Any, crf: int, scale: float = 1.0) -> np.ndarray:
    """An image's H.264 re-compression (``crf`` 0: none): uint8 in -> uint8 out; [0, 1] floats in -> float in
    [0, ``scale``] out. diffusers requires uint8 (or PIL) whenever it re-compresses; so does this."""
    array = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
    if array.dtype == np.uint8:
        array = recompress_image(array, crf)
        return array if scale == 255.0 else array.astype(np.float32) / 255.0
    if crf:
        raise ValueError(f"H.264 re-compression (crf {crf}) needs a uint8 (or PIL) image; pass crf 0 (image_crf=0) "
                         "for a float image.")
    return np.asarray(array, np.float32) * scale


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H, W, 3] uint8 (or [0, 1] float) -> [height, width, 3] float32 in [0, 1]: Pillow's bilinear resize, as
    diffusers' ``VideoProcessor(resample="bilinear").preprocess``."""
    if image.shape[:2] != (height, width):
        import PIL.Image  # deferred: Pillow loads only when an image is resized

        uint8 = image if image.dtype == np.uint8 else np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
        image = np.asarray(PIL.Image.fromarray(uint8).resize((width, height), PIL.Image.BILINEAR))
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def _cover(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """[F, H, W, 3] float -> [F, height, width, 3]: resized so both sides cover the target (``ceil``), bilinear
    without antialiasing (``F.interpolate(mode="bilinear")``), centre-cropped."""
    src_h, src_w = frames.shape[1:3]
    scale = max(height / src_h, width / src_w)
    new_h, new_w = math.ceil(src_h * scale), math.ceil(src_w * scale)
    if (new_h, new_w) != (src_h, src_w):
        frames = np.asarray(jax.image.resize(frames, (frames.shape[0], new_h, new_w, 3), "linear", antialias=False))
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return frames[:, top:top + height, left:left + width]


def conditioned_pipeline(cls, pipe: LTX2Pipeline) -> "_ConditionedPipeline":
    """An image-to-video or condition pipeline sharing a loaded ``LTX2Pipeline``'s modules and parameters (no second
    copy of the weights)."""
    return cls(pipe.encoder, pipe.core, pipe.params, pipe.release,
               defaults=None if pipe.release is None else release_defaults(pipe.release))


__all__: Sequence[str] = ("LTX2ConditionPipeline", "LTX2ImageToVideoPipeline", "LTX2VideoCondition",
                          "conditioned_pipeline")

"""Latent upsampling: the VAE latents of a video upsampled 2x in space (or in time) by Lightricks' latent upscaler,
as diffusers' ``LTXLatentUpsamplePipeline`` does it, then decoded (or returned as latents for another pass).

    up = LTXLatentUpsamplePipeline.from_pretrained("path/to/LTX-Video-0.9.8", latent_upsampler_path=
                                                   "ltxv-spatial-upscaler-0.9.8.safetensors")
    frames = up(video="clip.mp4", height=480, width=832)                        # encode, upsample, decode
    latents = up(latents=first_pass_latents, adain_factor=1.0, output_type="latent")

diffusers' order: the normalised latents are denormalised, upsampled, matched (AdaIN, ``adain_factor``) to the input's
per-channel mean and standard deviation, tone-mapped (``tone_map_compression_ratio``) in that raw space, normalised
again, and decoded with ``decode_timestep`` / ``decode_noise_scale`` as the other pipelines decode.

Axis letters: B batch, F (latent) frames, H height, W width, C channels.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax import validation
from ltx_jax.pipelines import conditioning
from ltx_jax.pipelines.base import VAEStages
from ltx_jax.pipelines.hub import resolve_path
from ltx_jax.compilation_cache import enable_compilation_cache
from ltx_jax.pipelines.reporting import NonFiniteError, StageTimings
from ltx_jax.pipelines.vae_programs import tone_map_latents
from ltx_jax.programs import Program, is_placeholder
from ltx_jax.configs_ltx2 import LTX2LatentUpsamplerConfig
from weight_conversion import load_latent_upsampler, load_vae, refuse_ltx2

logger = logging.getLogger("ltx_jax")

UPSAMPLER_COMPONENT = "latent_upsampler"


def adain_filter_latent(latents: jax.Array, reference: jax.Array, factor: jax.Array | float = 1.0) -> jax.Array:
    """AdaIN as diffusers and the original package write it: each sample's channels of ``latents`` [B, F, H, W, C]
    get the mean and (unbiased) standard deviation of ``reference``'s (any F, H, W), then ``lerp(latents, matched,
    factor)`` (torch's lerp: exact at 1)."""
    axes = (1, 2, 3)
    mean = jnp.mean(latents, axis=axes, keepdims=True)
    std = jnp.std(latents, axis=axes, keepdims=True, ddof=1)
    ref_mean = jnp.mean(reference, axis=axes, keepdims=True)
    ref_std = jnp.std(reference, axis=axes, keepdims=True, ddof=1)
    matched = (latents - mean) / std * ref_std + ref_mean
    return jnp.where(factor < 0.5, latents + factor * (matched - latents),
                     matched - (matched - latents) * (1.0 - factor))


def _upsample_program(vae, vae_params, upsampler, upsampler_params, latents, adain_factor=None, tone_map=None,
                      normalized_in: bool = True, normalized_out: bool = True):
    """Latents [B, F, H, W, C] -> upsampled latents [B, F', H', W', C] float32 and whether they are finite:
    denormalise (``normalized_in``; else the latents are raw already), upsample, AdaIN to the raw input (when
    ``adain_factor`` is given), tone-map the raw latents (when ``tone_map`` is given), normalise (``normalized_out``;
    else they stay raw, as LTX-2's pipeline returns them). Works for LTX-Video's and LTX-2's VAEs and upsamplers."""
    raw = latents.astype(jnp.float32)
    if normalized_in:
        raw = vae.apply({"params": vae_params}, latents, method="denormalize_latents").astype(jnp.float32)
    up = upsampler.apply({"params": upsampler_params}, raw.astype(upsampler.dtype)).astype(jnp.float32)
    if adain_factor is not None:
        up = adain_filter_latent(up, raw, adain_factor)
    if tone_map is not None:
        up = tone_map_latents(up, tone_map)
    if normalized_out:
        up = vae.apply({"params": vae_params}, up, method="normalize_latents").astype(jnp.float32)
    return up, jnp.all(jnp.isfinite(up))


jitted_upsample = Program(_upsample_program, "upsampling",
                          static=("vae", "upsampler", "normalized_in", "normalized_out"),
                          params=("vae_params", "upsampler_params"))


def check_upsampler(upsampler, vae, *, spatial_only: bool = False) -> None:
    """An upsampler that fits the VAE's latents (and, for multi-scale generation, upsamples in space only)."""
    if upsampler is None:
        raise ValueError("no latent upsampler: load one with from_pretrained(..., latent_upsampler_path=...) or "
                         "weight_conversion.load_latent_upsampler.")
    if isinstance(upsampler.config, LTX2LatentUpsamplerConfig):
        raise ValueError("the latent upsampler is LTX-2's; LTX-Video's pipelines take LTX-Video's upscalers "
                         "(ltxv-spatial-upscaler-*.safetensors).")
    cfg, channels = upsampler.config, vae.config.latent_channels
    if cfg.in_channels != channels:
        raise ValueError(f"the latent upsampler takes {cfg.in_channels}-channel latents but the VAE makes {channels}; "
                         "use the upscaler released with this model (ltxv-spatial-upscaler-*.safetensors).")
    if spatial_only and (cfg.temporal_upsample or not cfg.spatial_upsample):
        raise ValueError("multi-scale generation runs a spatial latent upsampler (2x height and width); this one "
                         "upsamples in time (F -> 2F - 1): use it with LTXLatentUpsamplePipeline.")


class LTXLatentUpsamplePipeline(VAEStages):
    """diffusers' ``LTXLatentUpsamplePipeline``: the VAE and the latent upsampler.

    Attributes:
      vae, vae_params: the causal video VAE.
      latent_upsampler, latent_upsampler_params: ``ltx_jax.models.latent_upsampler.LatentUpsampler`` and its params.
      last_timings: ``StageTimings`` of the last call (encoding, upsampling, decoding).
    """

    def __init__(self, vae, vae_params, latent_upsampler, latent_upsampler_params, progress: bool = True):
        check_upsampler(latent_upsampler, vae)
        self.vae, self.vae_params = vae, vae_params
        self.latent_upsampler, self.latent_upsampler_params = latent_upsampler, latent_upsampler_params
        self.progress = progress
        self.last_timings = StageTimings()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: Any = "bfloat16", *,
                        latent_upsampler_path: str | os.PathLike | None = None, compilation_cache: bool = False,
                        cache_dir: str | None = None, progress: bool = True):
        """Loads the VAE from ``path`` (a diffusers ``LTXLatentUpsamplePipeline`` folder with ``vae/`` and
        ``latent_upsampler/``, or any checkpoint ``load_vae`` reads: a model folder, a Lightricks single file, Orbax)
        and the upsampler from ``latent_upsampler_path`` (default: ``path``'s ``latent_upsampler/``)."""
        path = resolve_path(os.fspath(path))
        refuse_ltx2(path, cls.__name__)
        upsampler_path = resolve_upsampler_path(path, latent_upsampler_path)
        if compilation_cache:
            enable_compilation_cache(cache_dir)
        dtype = jnp.dtype(dtype)
        upsampler, upsampler_params = load_latent_upsampler(upsampler_path, dtype)
        vae, vae_params = load_vae(path, dtype)
        return cls(vae, vae_params, upsampler, upsampler_params, progress)

    @classmethod
    def from_pipe(cls, pipe, latent_upsampler, latent_upsampler_params):
        """Over another pipeline's VAE (nothing is loaded or copied)."""
        return cls(pipe.vae, pipe.vae_params, latent_upsampler, latent_upsampler_params, pipe.progress)

    def upsample(self, latents, *, adain_factor: float = 0.0, tone_map_compression_ratio: float = 0.0) -> jax.Array:
        """Normalised latents [B, F, H, W, C] -> normalised upsampled latents [B, F', 2H, 2W, C] float32 (F' = F, or
        2F - 1 for a temporal upsampler), in diffusers' order (module docstring)."""
        validation.check_number("adain_factor", adain_factor, minimum=-10, maximum=10)
        validation.check_number("tone_map_compression_ratio", tone_map_compression_ratio, minimum=0, maximum=1)
        with self._stage("upsampling"):
            args = dict(adain_factor=jnp.float32(adain_factor) if adain_factor > 0 else None,
                        tone_map=jnp.float32(tone_map_compression_ratio) if tone_map_compression_ratio > 0 else None)
            out, finite = sampling.run(lambda: jitted_upsample(self.vae, self.vae_params, self.latent_upsampler,
                                                               self.latent_upsampler_params, latents, **args),
                                       stage="upsampling")
            if not is_placeholder(finite) and not bool(finite):
                raise NonFiniteError("latent upsampling produced NaN or Inf (the input was finite); a channel with "
                                     "a constant value makes AdaIN divide by zero, else check the upsampler weights.")
            return out

    def _check_latents(self, latents) -> jax.Array:
        latents = jnp.asarray(latents, jnp.float32)
        channels = self.vae.config.latent_channels
        if latents.ndim != 5 or latents.shape[-1] != channels:
            raise ValueError(f"latents have shape {tuple(latents.shape)}; expected normalised channels-last latents "
                             f"[B, F, H, W, {channels}] (e.g. a pipeline's encode_video, or unpack_latents of its "
                             "output_type='latent').")
        if not bool(jnp.all(jnp.isfinite(latents))):
            raise ValueError("latents contain NaN or Inf; pass finite latents.")
        return latents

    def __call__(self, video: Any = None, height: int = 512, width: int = 704, latents=None,
                 decode_timestep: float = 0.0, decode_noise_scale: float | None = None, adain_factor: float = 0.0,
                 tone_map_compression_ratio: float = 0.0, seed: int = 0, output_type: str = "np",
                 tiling: Any = "auto", resize_mode: str = "stretch") -> np.ndarray:
        """Upsamples ``video`` (frames or a path; encoded at ``height`` x ``width``) or ``latents`` (normalised,
        [B, F, H, W, C]) with diffusers' arguments and defaults.

        Returns frames np.ndarray [B, F, 2H, 2W, 3] in [0, 1], or with ``output_type="latent"`` the normalised
        upsampled latents [B, F', H', W', C].
        """
        start = time.perf_counter()
        self.last_timings = StageTimings()
        ratio = self.vae_spatial_compression_ratio
        for name, value in (("height", height), ("width", width)):
            validation.check_int(name, value, minimum=ratio)
            if value % ratio:
                raise ValueError(f"{name}={value} must be a multiple of {ratio} (the VAE's spatial ratio).")
        if (video is None) == (latents is None):
            raise ValueError("pass exactly one of video= (frames or a path) and latents= (normalised latents).")
        validation.check_output_type(output_type)
        validation.check_number("decode_timestep", decode_timestep, minimum=0)
        if decode_noise_scale is not None:
            validation.check_number("decode_noise_scale", decode_noise_scale, minimum=0)
        validation.check_int("seed", seed, minimum=0, maximum=validation.MAX_SEED)
        key = jax.random.PRNGKey(seed)
        if video is not None:
            frames = conditioning.as_frames(video, "video", video=True)
            temporal = self.vae_temporal_compression_ratio
            if len(frames) % temporal != 1:
                keep = len(frames) // temporal * temporal + 1
                logger.warning("the video has %d frames; the VAE takes k * %d + 1: using the first %d.",
                               len(frames), temporal, keep)
                frames = frames[:keep]
            pixels = conditioning.preprocess(frames, height, width, resize_mode)[None]
            latents = self.encode_video(pixels, jax.random.fold_in(key, 1))
        latents = self._check_latents(latents)
        out = self.upsample(latents, adain_factor=adain_factor, tone_map_compression_ratio=tone_map_compression_ratio)
        if output_type == "latent":
            result = np.asarray(out)
        else:
            result = self.decode_video(out, decode_timestep=decode_timestep, decode_noise_scale=decode_noise_scale,
                                       key=jax.random.fold_in(key, 2), tiling=tiling)
        self.last_timings.total = time.perf_counter() - start
        return result


def resolve_upsampler_path(path: str, latent_upsampler_path: str | os.PathLike | None,
                           release_file: str | None = None) -> str:
    """Where the upsampler is: ``latent_upsampler_path`` (checked), else ``path``'s ``latent_upsampler/``, else the
    release's upscaler file next to a single-file ``path``; a clear error when there is none."""
    if latent_upsampler_path is not None:
        upsampler = resolve_path(os.fspath(latent_upsampler_path))
        return upsampler
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if os.path.isdir(os.path.join(folder, UPSAMPLER_COMPONENT)):
        return os.path.join(folder, UPSAMPLER_COMPONENT)
    if release_file and os.path.isfile(os.path.join(folder, release_file)):
        return os.path.join(folder, release_file)
    named = f" or {release_file} beside it" if release_file else ""
    raise ValueError(f"no latent upsampler found: {folder} has no {UPSAMPLER_COMPONENT}/{named}; pass "
                     "latent_upsampler_path= (a diffusers latent_upsampler folder, a Lightricks "
                     "ltxv-spatial-upscaler-*.safetensors file or an Orbax folder).")

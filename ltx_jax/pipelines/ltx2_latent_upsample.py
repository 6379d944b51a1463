"""LTX-2's latent upsampling (diffusers' ``LTX2LatentUpsamplePipeline``): a video's VAE latents upsampled by
LTX-2's latent upsampler (spatial x2 / x1.5, or temporal x2), returned as latents for a second pass or decoded.

    up = LTX2LatentUpsamplePipeline.from_pretrained("LTX-2")        # vae/ and latent_upsampler/
    frames = up(video=clip, height=512, width=768).frames            # encode, upsample, decode: [B, F, H', W', 3]
    latents = up(latents=stage1, output_type="latent").frames        # raw latents in and out: [B, C, F, H', W']

What a call does, in diffusers' order (``pipeline_ltx2_latent_upsample.py``):
  1. the latents: ``video`` frames (truncated to k * 8 + 1, resized to ``height`` x ``width``, in [-1, 1]) encoded
     by the VAE, a posterior sample (mean + std * noise from ``seed``; diffusers' ``retrieve_latents`` samples it);
     or ``latents`` as given: [B, C, F, H, W] (what ``LTX2Pipeline(output_type="latent")`` returns), or packed
     tokens [B, N, C pt p p] unpacked with the grid of ``height``, ``width``, ``num_frames`` and the patch sizes.
     Given latents are raw (the VAE's own scale) unless ``latents_normalized``, which denormalises them first with
     the VAE's ``latents_mean`` / ``latents_std`` / ``scaling_factor``;
  2. the upsampler on the raw latents; AdaIN of its output to the raw input's per-sample, per-channel mean and
     (unbiased) std, blended by ``adain_factor`` (when > 0); tone mapping (``tone_map_compression_ratio`` > 0);
  3. ``output_type="latent"``: those raw latents, never normalised: the input of the second pass's ``LTX2Pipeline``
     (``latents=``, which normalises 5-D latents itself). ``"np"``: for a timestep-conditioned VAE, decode noise
     mixed in raw space at ``decode_noise_scale`` (None: ``decode_timestep``), then ``vae.decode(z,
     decode_timestep)`` and ``x / 2 + 0.5`` clipped to [0, 1].

Programs (``ltx_jax.programs.Program``, so a dry run lowers them): the encode (``vae_programs.jitted_encode``, for
``video``), the upsampling (``latent_upsample.jitted_upsample``, shared with LTX-Video's pipeline: the adain and
tone-map factors are traced, so new latents or factors compile nothing) and the decode (``vae_programs.
jitted_decode``). The encode hands the upsampling normalised latents and the upsampling hands the decode normalised
ones; the (de)normalisation pairs in between are exact up to float32 rounding.

Axis letters: B batch, C latent channels, F (latent) frames, H height, W width, N tokens; p / pt the patch sizes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling, validation
from ltx_jax.configs_ltx2 import LTX2LatentUpsamplerConfig, LTX2VideoVAEConfig
from ltx_jax.models import as_variables
from ltx_jax.models.vae_tiling import VAETiling
from ltx_jax.pipelines import conditioning
from ltx_jax.pipelines.hub import resolve_path
from ltx_jax.pipelines.latent_upsample import jitted_upsample, resolve_upsampler_path
from ltx_jax.pipelines.ltx2_latents import LTX2Grid, unpack_video_latents, vae_compression
from ltx_jax.pipelines.reporting import NonFiniteError, StageTimings
from ltx_jax.pipelines.vae_programs import jitted_decode, jitted_encode
from ltx_jax.programs import is_placeholder
from ltx_jax.requests import Request, arg, call_signature
from weight_conversion import load_latent_upsampler, load_vae

logger = logging.getLogger("ltx_jax")

OUTPUT_TYPES = ("np", "latent")


class LTX2LatentUpsampleOutput(NamedTuple):
    """diffusers' ``LTXPipelineOutput`` of the upsample pipeline."""

    frames: np.ndarray  # "np": [B, F, H, W, 3] float32 in [0, 1]; "latent": raw latents [B, C, F, H, W] float32


def _int(**bounds):
    return lambda name, value: validation.check_int(name, value, **bounds)


def _number(**bounds):
    return lambda name, value: validation.check_number(name, value, **bounds)


def _per_video(**bounds):
    return lambda name, value: validation.check_number(name, value, per_step=True, **bounds)


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")


def _output_type(name: str, value: Any) -> None:
    if value not in OUTPUT_TYPES:
        raise ValueError(f"{name}={value!r}; use 'np' (frames [B, F, H, W, 3] in [0, 1]) or 'latent' (raw latents "
                         "[B, C, F, H, W]).")


def _tiling(name: str, value: Any) -> None:
    try:
        VAETiling.resolve(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}={value!r}: {e} (use None / False for a whole decode, True for diffusers' default "
                         "tiles, or a dict of enable_tiling arguments).") from None


@dataclasses.dataclass(frozen=True)
class LTX2LatentUpsampleRequest(Request):
    """One ``LTX2LatentUpsamplePipeline`` call: diffusers' ``__call__`` arguments and defaults (``generator`` is
    ``seed``; ``output_type`` takes 'np' or 'latent', 'np' by default, and ``tiling`` is ``vae.enable_tiling``).
    ``check()`` needs nothing but the values; the sizes against the VAE are the pipeline's."""

    video: Any = arg(None, "the video to upsample: frames [F, H, W, 3] (uint8, or float in [0, 1]), a list of "
                           "frames or PIL images, or a path; encoded at height x width (batch 1, as diffusers).")
    height: int = arg(512, "pixels of the input video (not the upsampled one); a multiple of the VAE's spatial "
                           "ratio.", _int(minimum=1, maximum=validation.MAX_SIDE))
    width: int = arg(768, "pixels; as height.", _int(minimum=1, maximum=validation.MAX_SIDE))
    num_frames: int = arg(121, "frames of the input video: with packed latents, fixes their grid (with video=, "
                               "the video's own count is used).", _int(minimum=1, maximum=validation.MAX_FRAMES))
    spatial_patch_size: int = arg(1, "spatial patch size of packed latents.", _int(minimum=1))
    temporal_patch_size: int = arg(1, "temporal patch size of packed latents.", _int(minimum=1))
    latents: Any = arg(None, "latents instead of video: [B, C, F, H, W] (LTX2Pipeline's output_type='latent') or "
                             "packed tokens [B, N, C pt p p]; raw unless latents_normalized.")
    latents_normalized: bool = arg(False, "the given latents are normalised with the VAE's latents_mean / std: "
                                          "denormalised before upsampling.", _bool)
    decode_timestep: float | tuple[float, ...] = arg(
        0.0, "the VAE's decode timestep (timestep-conditioned VAEs); one value or one per video.",
        _per_video(minimum=0))
    decode_noise_scale: float | tuple[float, ...] | None = arg(
        None, "noise mixed into the raw latents before decoding (None: as much as decode_timestep).",
        _per_video(minimum=0))
    adain_factor: float = arg(0.0, "AdaIN blend of the upsampled latents towards the input's channel statistics, "
                                   "in [-10, 10]; applied when > 0.", _number(minimum=-10, maximum=10))
    tone_map_compression_ratio: float = arg(0.0, "tone-mapping strength in [0, 1] (0: none).",
                                            _number(minimum=0, maximum=1))
    seed: int = arg(0, "JAX PRNG seed of the posterior sample and the decode noise (not torch's).",
                    _int(minimum=0, maximum=validation.MAX_SEED))
    output_type: str = arg("np", "'np' (frames) or 'latent' (raw latents [B, C, F, H, W], diffusers' layout).",
                           _output_type)
    tiling: Any = arg(None, "VAE decode tiling: None / False (whole, diffusers' default), True (diffusers' "
                            "enable_tiling defaults) or a dict of enable_tiling arguments.", _tiling)

    def _check_together(self) -> None:
        if (self.video is None) == (self.latents is None):
            raise ValueError("give exactly one of video= (frames or a path) and latents= ([B, C, F, H, W] or packed "
                             "[B, N, D]).")


def check_upsampler(latent_upsampler) -> None:
    """LTX-2's latent upsampler (one ValueError line otherwise)."""
    if latent_upsampler is None or not isinstance(latent_upsampler.config, LTX2LatentUpsamplerConfig):
        raise ValueError("the latent upsampler is not LTX-2's (LTX-Video's upscalers run in "
                         "LTXLatentUpsamplePipeline): load LTX-2's latent_upsampler/ or ltx-2*-upscaler-*.safetensors.")


def check_components(vae, latent_upsampler) -> None:
    """An LTX-2 VAE and an LTX-2 upsampler that takes its latents (one ValueError line otherwise)."""
    if not isinstance(vae.config, LTX2VideoVAEConfig):
        raise ValueError("the VAE is LTX-Video's; LTX2LatentUpsamplePipeline takes LTX-2's (LTXLatentUpsamplePipeline "
                         "runs LTX-Video's).")
    check_upsampler(latent_upsampler)
    channels, takes = vae.config.latent_channels, latent_upsampler.config.in_channels
    if channels != takes:
        raise ValueError(f"the latent upsampler takes {takes}-channel latents but the VAE makes {channels}; use the "
                         "upsampler released with this VAE.")


class LTX2LatentUpsamplePipeline:
    """diffusers' ``LTX2LatentUpsamplePipeline``: the LTX-2 video VAE and an LTX-2 latent upsampler.

    Attributes:
      vae, vae_params: ``AutoencoderKLLTX2Video`` and its param tree (``weight_conversion.load_vae``).
      latent_upsampler, latent_upsampler_params: ``LTX2LatentUpsampler`` and its params (``load_latent_upsampler``).
      vae_spatial_compression_ratio, vae_temporal_compression_ratio: diffusers' (``ltx2_latents.vae_compression``).
      last_timings: ``StageTimings`` of the last call (encoding, upsampling, decoding).
    """

    def __init__(self, vae, vae_params, latent_upsampler, latent_upsampler_params):
        check_components(vae, latent_upsampler)
        self.vae, self.vae_params = vae, as_variables(vae_params)["params"]
        self.latent_upsampler = latent_upsampler
        self.latent_upsampler_params = as_variables(latent_upsampler_params)["params"]
        self.vae_spatial_compression_ratio, self.vae_temporal_compression_ratio = vae_compression(vae.config)
        self.last_timings = StageTimings()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: Any = "float32", *,
                        latent_upsampler_path: str | os.PathLike | None = None) -> "LTX2LatentUpsamplePipeline":
        """Loads the VAE from ``path`` (a diffusers LTX-2 folder with ``vae/``, or anything ``load_vae`` reads) and
        the upsampler from ``latent_upsampler_path`` (a diffusers ``latent_upsampler/`` folder, a Lightricks
        ``ltx-2*-upscaler-*.safetensors`` file or an Orbax folder; default: ``path``'s ``latent_upsampler/``), in
        ``dtype`` ("float32" / "bfloat16")."""
        path = resolve_path(os.fspath(path))
        upsampler_path = resolve_upsampler_path(path, latent_upsampler_path)
        dtype = jnp.dtype(dtype)
        upsampler, upsampler_params = load_latent_upsampler(upsampler_path, dtype)
        check_upsampler(upsampler)  # before the VAE loads
        vae, vae_params = load_vae(path, dtype)
        return cls(vae, vae_params, upsampler, upsampler_params)

    @classmethod
    def from_pipe(cls, pipe, latent_upsampler, latent_upsampler_params) -> "LTX2LatentUpsamplePipeline":
        """Over an ``LTX2Pipeline``'s VAE (nothing is loaded or copied)."""
        return cls(pipe.core.vae, pipe.params["vae"], latent_upsampler, latent_upsampler_params)

    # ------------------------------------------------------------------------------------------ the call

    def request(self, **kwargs) -> LTX2LatentUpsampleRequest:
        """``LTX2LatentUpsampleRequest(**kwargs)``, checked (one ValueError line for a wrong argument)."""
        unknown = sorted(set(kwargs) - set(LTX2LatentUpsampleRequest.field_names()))
        if unknown:
            raise ValueError(f"LTX2LatentUpsamplePipeline got unknown argument(s) {', '.join(unknown)}; see "
                             "LTX2LatentUpsampleRequest's fields.")
        return LTX2LatentUpsampleRequest(**kwargs).check()

    def __call__(self, video: Any = None, **kwargs) -> LTX2LatentUpsampleOutput:
        """Upsamples ``video`` or ``latents=`` with ``LTX2LatentUpsampleRequest``'s fields (diffusers' names);
        returns ``.frames``: [B, F, H', W', 3] float32 in [0, 1] ("np") or raw latents [B, C, F', H', W'] float32
        ("latent"), (F', H', W') = ``latent_upsampler.output_shape(F, H, W)``."""
        return self.generate(self.request(video=video, **kwargs))

    __call__.__signature__ = call_signature(LTX2LatentUpsampleRequest, ("video",))

    def generate(self, request: LTX2LatentUpsampleRequest) -> LTX2LatentUpsampleOutput:
        """Runs one request (module docstring); every check on the arguments runs before any program."""
        r = request.check()
        start = time.perf_counter()
        self.last_timings = StageTimings()
        self._check_size(r)
        tiling = VAETiling.resolve(r.tiling)
        if tiling is not None:
            tiling.check(self.vae.spatial_ratio, self.vae.temporal_ratio)
        key = jax.random.PRNGKey(r.seed)
        if r.video is not None:
            pixels = self._pixels(r)  # [1, F, H, W, 3] in [-1, 1]
            self._check_per_video(r, 1)
            with self._stage("encoding"):
                latents = sampling.run(lambda: jitted_encode(self.vae, self.vae_params, jnp.asarray(pixels),
                                                             jax.random.fold_in(key, 1)), stage="encoding")
            normalized = True  # the encode program normalises; the upsampling undoes it
        else:
            latents = self._given_latents(r)  # [B, F, H, W, C] float32
            self._check_per_video(r, latents.shape[0])
            normalized = r.latents_normalized
        upsampled = self.upsample(latents, adain_factor=r.adain_factor,
                                  tone_map_compression_ratio=r.tone_map_compression_ratio,
                                  latents_normalized=normalized, normalize_output=r.output_type != "latent")
        if r.output_type == "latent":
            result = np.moveaxis(np.asarray(upsampled), -1, 1)  # [B, C, F', H', W']
        else:
            result = self.decode(upsampled, decode_timestep=r.decode_timestep,
                                 decode_noise_scale=r.decode_noise_scale, key=jax.random.fold_in(key, 2),
                                 tiling=tiling)
        self.last_timings.total = time.perf_counter() - start
        return LTX2LatentUpsampleOutput(result)

    # ------------------------------------------------------------------------------------------ stages

    def upsample(self, latents, *, adain_factor: float = 0.0, tone_map_compression_ratio: float = 0.0,
                 latents_normalized: bool = False, normalize_output: bool = False) -> jax.Array:
        """Latents [B, F, H, W, C] (raw, or normalised with ``latents_normalized``) -> upsampled latents
        [B, F', H', W', C] float32, raw (or normalised with ``normalize_output``): the upsampler, AdaIN (when
        ``adain_factor`` > 0) and tone mapping (when ``tone_map_compression_ratio`` > 0) in raw space. The factors
        are traced: new values compile nothing."""
        validation.check_number("adain_factor", adain_factor, minimum=-10, maximum=10)
        validation.check_number("tone_map_compression_ratio", tone_map_compression_ratio, minimum=0, maximum=1)
        factors = dict(adain_factor=jnp.float32(adain_factor) if adain_factor > 0 else None,
                       tone_map=jnp.float32(tone_map_compression_ratio) if tone_map_compression_ratio > 0 else None)
        with self._stage("upsampling"):
            out, finite = sampling.run(lambda: jitted_upsample(
                self.vae, self.vae_params, self.latent_upsampler, self.latent_upsampler_params, latents, **factors,
                normalized_in=bool(latents_normalized), normalized_out=bool(normalize_output)), stage="upsampling")
        if not is_placeholder(finite) and not bool(finite):
            raise NonFiniteError("latent upsampling produced NaN or Inf (the input was finite); a channel with a "
                                 "constant value makes AdaIN divide by zero, else check the upsampler weights.")
        return out

    def decode(self, latents, *, decode_timestep: Any = 0.0, decode_noise_scale: Any = None,
               key: jax.Array | None = None, tiling: VAETiling | None = None) -> np.ndarray:
        """Normalised latents [B, F, H, W, C] -> frames np.ndarray [B, 8(F-1)+1, r H, r W, 3] float32 in [0, 1]
        (``vae_programs.jitted_decode``: denormalised, decode noise mixed in raw space for a timestep-conditioned
        VAE, as diffusers' upsample pipeline mixes it)."""
        batch = latents.shape[0]
        timestep = noise_scale = None
        if self.vae.config.timestep_conditioning:
            dt = np.broadcast_to(np.asarray(decode_timestep, np.float32).reshape(-1), (batch,))
            dns = dt if decode_noise_scale is None else np.broadcast_to(
                np.asarray(decode_noise_scale, np.float32).reshape(-1), (batch,))
            timestep, noise_scale = jnp.asarray(dt), jnp.asarray(dns)
        key = jax.random.PRNGKey(0) if key is None else key
        with self._stage("decoding"):
            frames, finite = sampling.run(lambda: jitted_decode(self.vae, self.vae_params, latents, timestep,
                                                                 noise_scale, key, tiling), stage="decoding")
        if not is_placeholder(finite) and not bool(finite):
            raise NonFiniteError("decoding produced NaN or Inf frames (the latents were finite); check the VAE "
                                 "weights and dtype.")
        return np.asarray(frames)

    # ------------------------------------------------------------------------------------------ inputs

    def _check_size(self, r: LTX2LatentUpsampleRequest) -> None:
        ratio = self.vae_spatial_compression_ratio
        for name in ("height", "width"):
            value = getattr(r, name)
            if value % ratio:
                nearest = max(ratio, value // ratio * ratio)
                raise ValueError(f"{name}={value} must be a multiple of {ratio} (the VAE's spatial compression "
                                 f"ratio), as diffusers' check_inputs requires (try {nearest}).")

    def _check_per_video(self, r: LTX2LatentUpsampleRequest, batch: int) -> None:
        for name in ("decode_timestep", "decode_noise_scale"):
            value = getattr(r, name)
            if isinstance(value, (list, tuple)) and len(value) not in (1, batch):
                raise ValueError(f"{name} has {len(value)} values for {batch} video(s); give one, or one per video.")

    def _pixels(self, r: LTX2LatentUpsampleRequest) -> np.ndarray:
        """``video`` -> [1, F, height, width, 3] float32 in [-1, 1], F truncated to k * ratio + 1 (diffusers)."""
        frames = conditioning.as_frames(r.video, "video", video=True)
        ratio = self.vae_temporal_compression_ratio
        if len(frames) % ratio != 1:
            keep = len(frames) // ratio * ratio + 1
            if keep > len(frames):
                raise ValueError(f"video has {len(frames)} frames; the VAE encodes k * {ratio} + 1 (at least 1).")
            logger.warning("Video length expected to be of the form `k * %d + 1` but is %d. Truncating to %d frames.",
                           ratio, len(frames), keep)
            frames = frames[:keep]
        return conditioning.preprocess(frames, r.height, r.width)[None]

    def _given_latents(self, r: LTX2LatentUpsampleRequest) -> np.ndarray:
        """``latents`` ([B, C, F, H, W], or packed [B, N, C pt p p] on the request's grid) -> [B, F, H, W, C]
        float32, finite, checked against the VAE's channels."""
        x = np.asarray(r.latents, np.float32)
        c = self.vae.config.latent_channels
        if x.ndim == 5:
            if x.shape[1] != c:
                raise ValueError(f"latents have shape {x.shape}; expected [B, {c}, F, H, W] (channels first, as "
                                 "LTX2Pipeline(output_type='latent') returns them) or packed [B, N, D].")
            x = np.moveaxis(x, 1, -1)
        elif x.ndim == 3:
            p, pt = r.spatial_patch_size, r.temporal_patch_size
            grid = LTX2Grid(frames=(r.num_frames - 1) // self.vae_temporal_compression_ratio + 1,
                            height=r.height // self.vae_spatial_compression_ratio,
                            width=r.width // self.vae_spatial_compression_ratio, audio_frames=0, mel_bins=0, fps=0.0)
            if grid.frames % pt or grid.height % p or grid.width % p:
                raise ValueError(f"the latent grid {grid.frames} x {grid.height} x {grid.width} (from num_frames, "
                                 f"height, width) is not divisible by the patch sizes {pt} x {p} x {p}.")
            tokens = grid.frames // pt * (grid.height // p) * (grid.width // p)
            if x.shape[1:] != (tokens, c * p * p * pt):
                raise ValueError(f"packed latents have shape {x.shape}; num_frames={r.num_frames}, height={r.height}, "
                                 f"width={r.width} make [B, {tokens}, {c * p * p * pt}].")
            x = np.asarray(unpack_video_latents(x, grid, p, pt))
        else:
            raise ValueError(f"latents have shape {x.shape}; expected [B, {c}, F, H, W] or packed [B, N, D].")
        if not np.all(np.isfinite(x)):
            raise ValueError("latents contain NaN or Inf; pass finite latents.")
        return x

    def _stage(self, name: str):
        """Times a stage into ``last_timings`` (``StageTimings.stage``)."""
        return self.last_timings.stage(name)

"""Long videos in temporal windows with a prompt per window: diffusers' ``LTXI2VLongMultiPromptPipeline`` (ComfyUI's
looping sampler, which LTX-Video 0.9.8 was released with for shots up to a minute).

    pipe = LTXI2VLongMultiPromptPipeline.from_pretrained("path/to/ltxv-13b-0.9.8-distilled")
    frames = pipe(prompt="a chimpanzee walks | a chimpanzee eats", num_frames=481, height=512, width=704,
                  temporal_tile_size=80, temporal_overlap=24, cond_image="first_frame.png")

The video's latent frames are cut into windows of ``temporal_tile_size / 8`` frames overlapping by
``temporal_overlap / 8`` (``sampling.windows``). Each window is denoised on its own, from fresh noise and the whole
schedule, with its own prompt, and is conditioned on what came before by frames appended after its own: the previous
window's tail (kept with ``temporal_overlap_cond_strength``), reference latents, and a "negative index" frame (by
default the conditioning image's latents) timed one latent frame before the window. Each step the model sees the
latents at timestep ``t * free`` per token, and the step starts from and ends with the conditioning blended back in
(``Sampler.blend_conditioning``); steps are ancestral (``LTXEulerAncestralRFScheduler``, ComfyUI's RF sampler) unless
``ancestral_scheduler`` is None. Each later window drops its first frame, is normalised towards the first window's
channel statistics (AdaIN) and crossfades into the video.

Every window runs ``PipelineBase.denoise``: one compiled loop for all windows of one shape (the first window has
no previous tail, and the last may be shorter, so a video has at most three shapes), with progress, stop requests
(Ctrl-C ends the run after the current step), step caching and sharding as the other pipelines have them. The
decoded frames of a long video are its largest object: ``decode_to_file`` streams them window by window to the file.

Differences from diffusers, all deliberate: the noise comes from the call's ``seed`` as JAX keys (window w's from
keys folded with its first latent frame, as diffusers seeds ``seed + w_start``); the output is frames in [0, 1] by
default (``output_type='latent'`` gives the fused latents, channels-last [1, F, H, W, C]); the decode tiles are the
library's (``tiling``) rather than a fixed 4 x 4 grid.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
import os
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import distributed, interrupts, sampling, validation
from ltx_jax import scheduler as sched
from ltx_jax.pipelines import conditioning
from ltx_jax.pipelines.base import PipelineBase
from ltx_jax.pipelines.calls import uses_guidance
from ltx_jax.pipelines.contracts import CallKeys
from ltx_jax.requests import GUIDANCE, STEP_CACHE, LongVideoRequest, SamplingRequest
from ltx_jax.sampling import windows as win
from ltx_jax.scheduler_ancestral import LTXEulerAncestralRFSchedulerConfig, ancestral_sigmas_and_timesteps
from ltx_jax.video_writer import open_video_writer

logger = logging.getLogger("ltx_jax")

# diffusers' LTXI2VLongMultiPromptPipeline defaults where they differ from LTXPipeline's (a model without a release)
LONG_VIDEO_DEFAULTS = SamplingRequest(num_inference_steps=8, guidance_scale=1.0, decode_timestep=0.05,
                                      decode_noise_scale=0.025)


def window_keys(keys: CallKeys, start: int) -> tuple[jax.Array, jax.Array]:
    """(initial noise key, step noise key) of the window starting at latent frame ``start``."""
    return jax.random.fold_in(keys.noise, start), jax.random.fold_in(keys.step_noise, start)


class LTXI2VLongMultiPromptPipeline(PipelineBase):
    """LTX-Video long multi-prompt generation (diffusers' ``LTXI2VLongMultiPromptPipeline``).

    Attributes (besides ``PipelineBase``'s):
      ancestral_scheduler: the ``LTXEulerAncestralRFSchedulerConfig`` the windows step with (built from
        ``scheduler_config``, as diffusers' example swaps it in); None steps with Euler (``FlowMatchEulerDiscrete``).
    """

    request_type = LongVideoRequest
    positional = ("prompt", "negative_prompt")
    summary = ("Generates one long video in temporal windows, a prompt per window (diffusers' "
               "``LTXI2VLongMultiPromptPipeline.__call__`` arguments, plus ``seed``).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ancestral_scheduler: LTXEulerAncestralRFSchedulerConfig | None = (
            LTXEulerAncestralRFSchedulerConfig.from_dict(self.scheduler_config.to_dict()))

    @property
    def sampling_defaults(self) -> SamplingRequest:
        return LONG_VIDEO_DEFAULTS if self.release is None else super().sampling_defaults

    # ------------------------------------------------------------------------------------------ checks

    def check_request(self, request: LongVideoRequest) -> sampling.LatentGrid:
        """The base rules, then the windows against the VAE's temporal ratio (one line each)."""
        grid = super().check_request(request)
        validation.check_temporal_windows(request.temporal_tile_size, request.temporal_overlap,
                                          self.vae_temporal_compression_ratio)
        if request.noise is not None:
            raise ValueError("the long-video pipeline draws each window's noise from seed: noise= is not taken.")
        shape = (1, grid.frames, grid.height, grid.width, self.transformer.config.in_channels)
        for name, value, frames in (("latents", request.latents, grid.frames),
                                    ("guidance_latents", request.guidance_latents, grid.frames),
                                    ("negative_index_latents", request.negative_index_latents, 1)):
            if value is not None and np.shape(value) != shape[:1] + (frames,) + shape[2:]:
                raise ValueError(f"{name} have shape {np.shape(value)}; expected channels-last "
                                 f"{shape[:1] + (frames,) + shape[2:]} for this size.")
        self.window_schedule(request, grid.num_tokens)  # a schedule that skips every step, before any work
        return grid

    # ------------------------------------------------------------------------------------------ stages

    def window_schedule(self, request: LongVideoRequest, num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """(sigmas [S + 1], timesteps [S]) float32 of every window, as diffusers steps them: explicit ``sigmas``
        (or ``timesteps`` / 1000 with a terminal 0) run every step; a ``num_inference_steps`` schedule runs all but
        its last timestep (diffusers loops over ``timesteps[:-1]``); steps whose sigma is above
        ``skip_steps_sigma_threshold`` are dropped from the start."""
        if request.sigmas is not None or request.timesteps is not None:
            given = (np.asarray(request.sigmas, np.float32) if request.sigmas is not None else
                     np.append(np.asarray(request.timesteps, np.float32) / np.float32(1000.0), np.float32(0.0)))
            rf = self.ancestral_scheduler or LTXEulerAncestralRFSchedulerConfig(
                num_train_timesteps=self.scheduler_config.num_train_timesteps)
            sigmas, timesteps = ancestral_sigmas_and_timesteps(rf, sigmas=given)  # checked: [0, 1], non-increasing
            timesteps = timesteps[:-1]
        else:
            config = self.scheduler_config
            mu = sched.mu_for_tokens(config, num_tokens) if config.use_dynamic_shifting else None
            full_sigmas, full_timesteps = sched.sigmas_and_timesteps(config, request.num_inference_steps, mu=mu)
            sigmas, timesteps = full_sigmas[:-1], full_timesteps[:-1]
        threshold = request.skip_steps_sigma_threshold
        if threshold is not None and threshold > 0:
            first = int(np.argmax(np.append(sigmas[:-1] <= np.float32(threshold), True)))
            sigmas, timesteps = sigmas[first:], timesteps[first:]
        if len(timesteps) == 0:
            raise ValueError(f"skip_steps_sigma_threshold={threshold} skips every step (the schedule's sigmas are "
                             "all above it); raise it, or pass None.")
        return sigmas, timesteps

    def condition_latents(self, request: LongVideoRequest, grid: sampling.LatentGrid) -> jax.Array | None:
        """``cond_image`` encoded to its posterior's mode and normalised: [1, 1, H, W, C] float32 (None without it)."""
        if request.cond_image is None or request.cond_strength <= 0:
            return None
        frames = conditioning.preprocess(conditioning.as_frames(request.cond_image, "cond_image", video=False),
                                         request.height, request.width)
        return self.encode_video(frames[None], None)

    def denoise_window(self, request: LongVideoRequest, window: win.WindowInputs, embeds, keys: tuple, schedule,
                       frame_rate: float) -> jax.Array:
        """One window, denoised: [1, F, H, W, C] float32 of its own frames (appended ones dropped)."""
        _, frames, height, width, channels = window.latents.shape
        grid = sampling.LatentGrid(frames, height, width, self.transformer_spatial_patch_size,
                                   self.transformer_temporal_patch_size)
        init_key, step_key = keys
        given = jnp.asarray(window.latents)
        free = jnp.broadcast_to(jnp.asarray(window.free)[None, :, None, None, None], (1, frames, height, width, 1))
        noise = jax.random.normal(init_key, given.shape, jnp.float32)
        start = noise * free + (1.0 - free) * given
        pack = lambda x: sampling.pack_latents(x, grid.patch_size, grid.patch_size_t)  # noqa: E731
        ratios = (self.vae_temporal_compression_ratio, self.vae_spatial_compression_ratio,
                  self.vae_spatial_compression_ratio)
        coords = win.window_video_coords(grid.token_frames, grid.token_height, grid.token_width,
                                         overlap_len=window.overlap_len, guiding_len=window.guiding_len,
                                         negative_len=window.negative_len, scale=ratios, frame_rate=frame_rate)
        latents = self.denoise(pack(start), grid, *embeds, sigmas_and_timesteps=schedule,
                               **request.group(GUIDANCE), **request.group(STEP_CACHE),
                               conditioning_mask=1.0 - pack(free)[..., 0], conditioning_latents=pack(given),
                               video_coords=coords, ancestral=self.ancestral_scheduler, noise_key=step_key)
        return sampling.unpack_latents(latents, grid)[:, :frames - window.appended]

    def window_latents(self, request: LongVideoRequest, grid: sampling.LatentGrid) -> Iterator[jax.Array]:
        """Runs the windows; yields the video's fused latents [1, F, H, W, C] float32 after each (the last is the
        video)."""
        keys = CallKeys.from_seed(request.seed)
        ratio = self.vae_temporal_compression_ratio
        tile_lat, overlap_lat = request.temporal_tile_size // ratio, request.temporal_overlap // ratio
        windows = win.split_into_temporal_windows(grid.frames, tile_lat, overlap_lat)
        fused = win.fused_length(grid.frames, windows, overlap_lat)
        if fused != grid.frames:
            change = "drops" if fused < grid.frames else "adds"
            warnings.warn(f"temporal_overlap={request.temporal_overlap} makes {1 + (fused - 1) * ratio} frames, not "
                          f"{request.num_frames}: diffusers' fusion of windows {change} one latent frame per seam at "
                          f"this overlap; {3 * ratio} frames or more keep the length.", UserWarning, stacklevel=3)
        texts = win.parse_prompt_segments(request.prompt, request.prompt_segments)
        channels = self.transformer.config.in_channels
        base = (np.array(request.latents, np.float32) if request.latents is not None else
                np.zeros((1, grid.frames, grid.height, grid.width, channels), np.float32))
        cond = self.condition_latents(request, grid)
        negative = request.negative_index_latents
        if cond is not None:
            base[:, :1] = np.asarray(cond)
            negative = cond if negative is None else negative
        negative = None if negative is None else np.asarray(negative, np.float32)
        reference = None if request.guidance_latents is None else np.asarray(request.guidance_latents, np.float32)
        cfg = uses_guidance(request)
        given = None if request.prompt_embeds is None else self.prompt_embeddings(request, cfg)  # every window's
        encoded: dict[str, tuple] = {}
        video = first = None
        for index, (start, end) in enumerate(windows):
            text = win.prompt_for_window(texts, index) if texts else ""
            if given is None and text not in encoded:
                encoded[text] = self.encode_prompt(text, request.negative_prompt, cfg,
                                                   max_sequence_length=request.max_sequence_length)
            embeds = given if given is not None else encoded[text]
            window = win.WindowInputs(base[:, start:end].copy(), np.ones(end - start, np.float32))
            if index > 0 and overlap_lat > 0:
                window.append(video[:, -min(overlap_lat, video.shape[1]):], overlap_lat,
                              request.temporal_overlap_cond_strength)
                window.overlap_len = overlap_lat
            if reference is not None:
                own = reference[:, start:end]
                window.guiding_len = own.shape[1] if index == 0 else own.shape[1] - overlap_lat
                if window.guiding_len > 0:
                    window.append(own[:, -window.guiding_len:], window.guiding_len, request.guiding_strength)
            window.append(negative, 1, request.negative_index_strength)
            window.negative_len = int(negative is not None and request.negative_index_strength > 0)
            if index == 0 and cond is not None:
                window.free[0] = 1.0 - request.cond_strength
            tokens = window.latents.shape[1] * grid.height * grid.width
            logger.info("window %d of %d: latent frames %d-%d, prompt %r", index + 1, len(windows), start, end - 1,
                        text)
            out = self.denoise_window(request, window, embeds, window_keys(keys, start),
                                      self.window_schedule(request, tokens), request.frame_rate)
            video = win.fuse_window(video, out, first, overlap_lat=overlap_lat, adain_factor=request.adain_factor)
            first = video if index == 0 else first
            yield video

    def generate(self, request: LongVideoRequest) -> np.ndarray:
        """The frames of a checked request (``output_type='latent'``: the fused latents [1, F, H, W, C])."""
        grid = self._begin(request)
        for video in self.window_latents(request, grid):
            pass
        out = np.asarray(video) if request.output_type == "latent" else self.decode_long(video, request)
        self.last_timings.total = time.perf_counter() - self._call_started
        return out

    def decode_long_stream(self, latents, *, decode_timestep: float = 0.0, decode_noise_scale: float | None = None,
                           key: jax.Array | None = None, tiling: Any = "auto", uint8: bool = True
                           ) -> tuple[Iterator[np.ndarray], int]:
        """Fused latents [1, F, H, W, C] -> (an iterator of frame chunks [f, H', W', 3], the frame count
        1 + (F - 1) * r), decoded window by window (``decode_video_stream``: memory flat in the video's length) as
        diffusers' ``vae_decode_tiled`` with ``last_frame_fix``: the last latent frame repeated, and the r frames it
        adds dropped."""
        latents = np.asarray(latents, np.float32)
        padded = np.concatenate([latents, latents[:, -1:]], axis=1)
        total = self.streamed_frames(padded) - self.vae_temporal_compression_ratio
        chunks = self.decode_video_stream(padded, decode_timestep=decode_timestep,
                                          decode_noise_scale=decode_noise_scale, key=key, tiling=tiling, uint8=uint8)

        def trimmed() -> Iterator[np.ndarray]:
            done = 0
            for chunk in chunks:
                keep = chunk[:max(0, total - done)]
                done += len(keep)
                if len(keep):
                    yield keep

        return trimmed(), total

    def decode_long(self, latents, request: LongVideoRequest) -> np.ndarray:
        """Fused latents [1, F, H, W, C] -> frames [1, 1 + (F - 1) * r, H', W', 3] (``decode_long_stream``'s chunks,
        gathered: float32 in [0, 1], uint8 for output_type='uint8')."""
        chunks, _ = self.decode_long_stream(latents, **self._decode_settings(request),
                                            uint8=request.output_type == "uint8")
        return np.concatenate(list(chunks))[None]

    def decode_long_to_file(self, latents, path: str | os.PathLike, fps: float = 25.0, *, overwrite: bool = False,
                            **decode: Any) -> list[str]:
        """Fused latents [1, F, H, W, C] straight into a video file, window by window (``decode_long_stream``'s uint8
        chunks into ``open_video_writer``: published atomically once whole; an error or Ctrl-C leaves no file).
        ``decode``: ``decode_long_stream``'s settings. Returns the paths written."""
        began = time.perf_counter()
        chunks, total = self.decode_long_stream(latents, **decode)
        # several processes: every one runs the windows' programs, process 0 writes
        writing = open_video_writer(path, fps, overwrite=overwrite, num_frames=total) if distributed.is_main() else (
            contextlib.nullcontext())
        with writing as writer:
            for chunk in chunks:
                if writer is not None:
                    writer.write(chunk)
                interrupts.agreed()  # a stop of any process stops every one after the same window
                interrupts.check("writing")
        self.last_timings.total = (self.last_timings.total or 0.0) + time.perf_counter() - began
        return [] if writer is None else writer.paths

    def _decode_settings(self, request: LongVideoRequest) -> dict:
        """``decode_long_stream``'s settings from a request."""
        return dict(decode_timestep=request.decode_timestep, decode_noise_scale=request.decode_noise_scale,
                    key=CallKeys.from_seed(request.seed).decode, tiling=request.tiling)

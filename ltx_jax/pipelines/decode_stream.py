"""Streamed temporal decoding for long videos: windows of latent frames, all of one shape, decoded one at a time;
the frames where windows overlap blended with linear ramps (the uniform tiles' blend, ``vae_tiling.blend_weights``);
every frame handed out once, in order, as soon as no later window adds to it.

    with open_video_writer("long.mp4", fps=25, num_frames=pipe.streamed_frames(latents)) as writer:
        for chunk in pipe.decode_video_stream(latents, decode_timestep=0.05, key=key):   # uint8 [f, H, W, 3]
            writer.write(chunk)
    pipe.decode_to_file(latents, "long.mp4", fps=25, decode_timestep=0.05, key=key)     # the same

A window of T latent frames starting at latent frame s decodes to frames [r s, r (s + T - 1)] of the whole decode (r
the VAE's temporal ratio, 8: the causal decoder's first latent frame gives one frame). The windows are cut as the
uniform tiles are (``vae_tiling.uniform_cut``): the fewest of one size no larger than ``window_latent_frames``,
overlapping by at least ``overlap_latent_frames``, spread evenly from the first frame to the last; so one compiled
program decodes them all. Windows overlapping by k latent frames share r (k - 1) + 1 frames (9 for k = 2), blended.

Each window is one program (``jitted_window``): slice the window's latents and decode noise out of the whole video's
(the noise is drawn once for the whole latent array, as a whole decode draws it: the same values), decode (in spatial
tiles where ``tiling`` says so), weight the frames, add the partial sums carried from earlier windows, keep the part a
later window still adds to as the next carry, clip, resize, quantise. The host keeps the window's final frames. So
device and host memory follow the window, not the video: nothing holds all the frames (the latents do: ~37 MB for a
minute at 768x512 with a 128-channel VAE). The decoder's own noise injection (0.9.1's) is a spatial map per layer,
drawn from the same key in every window, as in the whole decode. Where the decoder sees across the window's edge (a
real VAE's receptive field), the blend stands in for it, as diffusers' temporal tiles do.

The default window (``stream_window_latent_frames``) is the largest of at most ``MAX_WINDOW_LATENT_FRAMES`` whose
whole decode fits the device's free memory with the tiling policy's margin (``tiling_policy``); on a backend that
reports no memory (the CPU), the largest within the policy's pixel threshold ``AUTO_TILING_PIXELS`` (at 768x512: 7
latent frames, 49 frames). The cap keeps memory flat in the video's length on a large card; 16 latent frames (121
frames) decode each latent frame 16 / 14 times with the default overlap.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import interrupts, sampling, validation
from ltx_jax.models.vae_tiling import blend_weights, uniform_cut
from ltx_jax.pipelines.conditioning import resize_bilinear
from ltx_jax.pipelines.reporting import NonFiniteError
from ltx_jax.pipelines.tiling_policy import (DEFAULT_MARGIN, TEMPORAL_OVERLAP_LATENTS, free_device_bytes,
                                             whole_decode_bytes_estimate)
from ltx_jax.pipelines.vae_programs import AUTO_TILING_PIXELS, decoded_video, to_uint8
from ltx_jax.programs import Program, is_placeholder
from ltx_jax.video_writer import open_video_writer

MAX_WINDOW_LATENT_FRAMES = 16  # 121 frames: the default window never grows past it, however much memory is free
# Bytes per output pixel a window adds to its decode's (``whole_decode_bytes_estimate``): the float32 sums and
# carry (3 channels each, the carry at most a window) and the uint8 frames.
STREAM_BYTES_PER_PIXEL = 3 * (4 + 4 + 1)


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """A video of ``latent_frames`` latent frames cut into windows of ``window`` latent frames starting at ``starts``
    (latent frames), for a VAE of temporal ratio ``temporal_ratio``. Frame counts below are output frames."""

    latent_frames: int
    window: int
    starts: tuple[int, ...]
    temporal_ratio: int

    @property
    def num_frames(self) -> int:
        """Frames of the whole video: r (F - 1) + 1."""
        return self.temporal_ratio * (self.latent_frames - 1) + 1

    @property
    def window_frames(self) -> int:
        """Frames of one window: r (T - 1) + 1."""
        return self.temporal_ratio * (self.window - 1) + 1

    @property
    def advances(self) -> tuple[int, ...]:
        """Frames each window makes final: up to the next window's first frame (the last window: all of its own)."""
        r = self.temporal_ratio
        return tuple(r * (b - a) for a, b in zip(self.starts, self.starts[1:])) + (self.window_frames,)

    @property
    def carry_frames(self) -> int:
        """Frames of partial sums one window hands the next: the largest overlap (1 when there is one window)."""
        return max([self.window_frames - a for a in self.advances[:-1]], default=1)

    def weights(self) -> np.ndarray:
        """[K, window_frames] float32 blend weights: linear ramps over each overlap, adding up to 1 at every frame."""
        spans = [(self.temporal_ratio * s, self.temporal_ratio * s + self.window_frames) for s in self.starts]
        return blend_weights(spans)


def plan_windows(latent_frames: int, window_latent_frames: int, overlap_latent_frames: int = TEMPORAL_OVERLAP_LATENTS,
                 temporal_ratio: int = 8) -> WindowPlan:
    """The fewest windows of one size, at most ``window_latent_frames``, overlapping by at least
    ``overlap_latent_frames`` (>= 1: neighbours share at least one frame), spread evenly over ``latent_frames``."""
    for name, value, least in (("latent_frames", latent_frames, 1), ("window_latent_frames", window_latent_frames, 1),
                               ("overlap_latent_frames", overlap_latent_frames, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}.")
    if window_latent_frames < latent_frames and window_latent_frames <= overlap_latent_frames:
        raise ValueError(f"window_latent_frames={window_latent_frames} must exceed overlap_latent_frames="
                         f"{overlap_latent_frames} (or cover all {latent_frames} latent frames).")
    window, starts = uniform_cut(int(latent_frames), int(window_latent_frames), int(overlap_latent_frames))
    return WindowPlan(int(latent_frames), window, tuple(starts), int(temporal_ratio))


def stream_window_latent_frames(vae_config: Any, latent_shape: Sequence[int], dtype: Any, *,
                                overlap_latent_frames: int = TEMPORAL_OVERLAP_LATENTS, free_bytes: int | None = None,
                                device: jax.Device | None = None, margin: float = DEFAULT_MARGIN) -> int:
    """The default window, in latent frames, for latents of ``latent_shape`` ([B, F, H, W, C] or (F, H, W)) decoded
    by a VAE of ``vae_config`` in ``dtype``: the largest of at most ``MAX_WINDOW_LATENT_FRAMES`` whose whole decode
    (``whole_decode_bytes_estimate`` plus ``STREAM_BYTES_PER_PIXEL``) times ``margin`` fits ``free_bytes`` (default:
    the device's, ``free_device_bytes``); where the backend reports none (the CPU), the largest within
    ``AUTO_TILING_PIXELS`` output pixels. At least ``overlap_latent_frames + 1`` (a window's decode that does not fit
    is then tiled spatially by ``tiling="auto"``), at most the video."""
    shape = tuple(int(n) for n in latent_shape)
    frames, height, width = shape[1:4] if len(shape) == 5 else shape
    r, s = vae_config.temporal_ratio, vae_config.spatial_ratio
    free = free_device_bytes(device) if free_bytes is None else free_bytes

    def fits(window: int) -> bool:
        out = r * (window - 1) + 1
        if free is None:
            return out * height * width * s * s <= AUTO_TILING_PIXELS
        needed = whole_decode_bytes_estimate(out, height * s, width * s, dtype) + (
            out * height * width * s * s * STREAM_BYTES_PER_PIXEL)
        return needed * margin <= free

    smallest = overlap_latent_frames + 1
    window = next((w for w in range(MAX_WINDOW_LATENT_FRAMES, smallest, -1) if fits(w)), smallest)
    return max(1, min(window, frames))


def blend_window(frames: jax.Array, weights: jax.Array, carry: jax.Array, advance: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """One window's frames into the running blend.

    Args:
      frames: [f, H, W, C] float32, the window's decoded frames.
      weights: [f] float32, their blend weights (``WindowPlan.weights``).
      carry: [c, H, W, C] float32, the partial sums earlier windows left for this window's first c frames.
      advance: int32 scalar (traced), the frames up to the next window's first.
    Returns:
      (sums [f, H, W, C]: the weighted frames plus the carry, final in their first ``advance`` frames;
       the next carry [c, H, W, C]: ``sums[advance : advance + c]``, zero past the window's end).
    """
    count, kept = frames.shape[0], carry.shape[0]
    sums = (frames * weights[:, None, None, None]).at[:kept].add(carry)
    index = jnp.arange(kept) + advance
    inside = (index < count)[:, None, None, None]
    return sums, jnp.where(inside, jnp.take(sums, jnp.minimum(index, count - 1), axis=0), 0.0)


def _window_program(vae, vae_params, latents, noise, start, carry, weights, advance, timestep, noise_scale, key,
                    tiling, tone_map=None, sharding=None, window: int = 1, size: tuple[int, int] | None = None,
                    as_uint8: bool = True):
    """One window: latents [1, F, h, w, L] normalised (the whole video's) and ``noise`` (the same shape, float32, or
    None without timestep conditioning), ``start`` (int32, latent frame) -> (frames [f, H', W', 3] uint8, or float32
    in [0, 1] without ``as_uint8``, of which the first ``advance`` are final; the next carry [c, H, W, 3] float32;
    whether the sums are finite). ``window``: T latent frames; ``size``: (height, width) to resize to, or None."""
    z = jax.lax.dynamic_slice_in_dim(latents, start, window, axis=1)
    n = None if noise is None else jax.lax.dynamic_slice_in_dim(noise, start, window, axis=1)
    video = decoded_video(vae, vae_params, z, timestep, noise_scale, key, tiling, tone_map, sharding, noise=n)
    sums, carry = blend_window(video[0] / 2 + 0.5, weights, carry, advance)
    frames = jnp.clip(sums, 0.0, 1.0)
    if size is not None:
        frames = resize_bilinear(frames, *size)
    if sharding is not None:  # whole on every device, so every host can read them (several hosts)
        frames = jax.lax.with_sharding_constraint(frames, sharding.replicated())
    finite = jnp.all(jnp.isfinite(sums))  # NaN survives the clip
    return (to_uint8(frames) if as_uint8 else frames), carry, finite


jitted_window = Program(_window_program, "decoding", static=("vae", "tiling", "sharding", "window", "size", "as_uint8"),
                        params=("vae_params",), detail=lambda a: "streamed window")


def _noise_program(key, shape: tuple[int, ...]):
    """The decode noise of a whole decode of latents of ``shape``: N(0, 1) float32 from ``key``."""
    return jax.random.normal(key, shape, jnp.float32)


jitted_noise = Program(_noise_program, "decoding", static=("shape",), detail=lambda a: "decode noise")


class StreamedDecode:
    """``decode_video_stream`` / ``decode_to_file`` for the pipelines' ``VAEStages`` (whose ``vae``, ``vae_params``,
    ``sharding``, ``_tiling``, ``_stage`` and ``_decoded_size`` they use)."""

    def streamed_frames(self, latents: Any) -> int:
        """Frames ``decode_video_stream`` yields for latents [1, F, H, W, C]: r (F - 1) + 1."""
        return self.vae_temporal_compression_ratio * (latents.shape[1] - 1) + 1

    def decode_video_stream(self, latents: jax.Array, *, decode_timestep: float | Sequence[float] = 0.0,
                            decode_noise_scale: float | Sequence[float] | None = None, key: jax.Array | None = None,
                            window_latent_frames: int | None = None,
                            overlap_latent_frames: int = TEMPORAL_OVERLAP_LATENTS, tiling: Any = "auto",
                            size: tuple[int, int] | None = None, tone_map_compression_ratio: float = 0.0,
                            uint8: bool = True) -> Iterator[np.ndarray]:
        """Normalised latents [1, F, H, W, C] -> an iterator of frame chunks [f, H', W', 3] (uint8, or float32 in
        [0, 1] with ``uint8=False``) that together are the video's r (F - 1) + 1 frames, each once, in order, each
        chunk as soon as it is final (the module docstring). Arguments are checked here, before the first window.

        Args:
          decode_timestep, decode_noise_scale, key, tiling, tone_map_compression_ratio, size: as ``decode_video``'s;
            ``tiling`` applies to each window (``"auto"``: by the window's shape and the device's free memory).
          window_latent_frames: the largest window, in latent frames; None: ``stream_window_latent_frames``.
          overlap_latent_frames: the least overlap of neighbouring windows, in latent frames (>= 1; 2, diffusers'
            temporal blend, shares 9 frames).
        Raises:
          NonFiniteError: a window decoded to NaN or Inf (the frames before it were yielded).
          Interrupted: a stop was requested (Ctrl-C, SIGTERM on the command line), between or during windows.
        """
        cfg = self.vae.config
        if latents.ndim != 5 or latents.shape[0] != 1 or latents.shape[-1] != cfg.latent_channels:
            raise ValueError(f"latents have shape {tuple(latents.shape)}; a streamed decode takes one video's "
                             f"[1, F, H, W, {cfg.latent_channels}] (normalised).")
        validation.check_number("tone_map_compression_ratio", tone_map_compression_ratio, minimum=0, maximum=1)
        if window_latent_frames is None:
            window_latent_frames = stream_window_latent_frames(cfg, latents.shape, self.vae.dtype,
                                                               overlap_latent_frames=overlap_latent_frames)
        plan = plan_windows(latents.shape[1], window_latent_frames, overlap_latent_frames, cfg.temporal_ratio)
        timestep = noise_scale = None
        if cfg.timestep_conditioning:
            timestep = jnp.asarray(np.broadcast_to(np.asarray(decode_timestep, np.float32), (1,)))
            noise_scale = timestep if decode_noise_scale is None else jnp.asarray(
                np.broadcast_to(np.asarray(decode_noise_scale, np.float32), (1,)))
        arguments = dict(
            vae=self.vae, vae_params=self.vae_params, latents=latents, timestep=timestep, noise_scale=noise_scale,
            key=jax.random.PRNGKey(0) if key is None else key,
            tiling=self._tiling(tiling, (1, plan.window) + tuple(latents.shape[2:])),
            tone_map=jnp.float32(tone_map_compression_ratio) if tone_map_compression_ratio > 0 else None,
            sharding=self.sharding, window=plan.window, as_uint8=uint8,
            size=None if size is None or tuple(size) == self._decoded_size(latents.shape[2:4]) else tuple(size))
        return self._stream_windows(plan, arguments)

    def _stream_windows(self, plan: WindowPlan, arguments: dict) -> Iterator[np.ndarray]:
        """The windows of ``plan`` through ``jitted_window`` (``arguments``: its static and whole-video ones)."""
        latents = arguments["latents"]
        with self._stage("decoding"):
            noise = None if arguments["timestep"] is None else sampling.run(
                lambda: jitted_noise(arguments["key"], tuple(latents.shape)), stage="decoding")
            height, width = self._decoded_size(latents.shape[2:4])
            carry = jnp.zeros((plan.carry_frames, height, width, 3), jnp.float32)
            weights = plan.weights()  # [K, f] on the host (a few bytes a frame): a row goes with each window
        for index, (start, advance) in enumerate(zip(plan.starts, plan.advances)):
            with self._stage("decoding"):
                frames, carry, finite = sampling.run(lambda: jitted_window(
                    noise=noise, start=jnp.int32(start), carry=carry, weights=weights[index],
                    advance=jnp.int32(advance), **arguments), stage="decoding")
                if not is_placeholder(finite) and not bool(finite):
                    first = plan.temporal_ratio * start
                    raise NonFiniteError(f"decoding produced NaN or Inf frames in window {index + 1} of "
                                         f"{len(plan.starts)} (frames {first}-{first + plan.window_frames - 1}); "
                                         "check the VAE weights and dtype.")
                chunk = np.asarray(frames)[:advance]  # the one transfer of the window
            yield chunk

    def decode_to_file(self, latents: jax.Array, path: str | os.PathLike, fps: float = 25.0, *,
                       overwrite: bool = False, **stream: Any) -> list[str]:
        """Decodes normalised latents [1, F, H, W, C] straight into a video file: ``decode_video_stream(latents,
        **stream)`` (uint8 chunks) into ``open_video_writer(path, fps, overwrite=, num_frames=)`` (mp4 / gif / png
        frames, published atomically: an error or a stop leaves no file). Packed latents [1, N, C]:
        ``sampling.unpack_latents(latents, grid)`` first. Returns the paths written."""
        if "uint8" in stream:
            raise ValueError("decode_to_file writes uint8 frames; leave out uint8=.")
        chunks = self.decode_video_stream(latents, **stream)  # the arguments are checked before the file is opened
        with open_video_writer(path, fps, overwrite=overwrite, num_frames=self.streamed_frames(latents)) as writer:
            for chunk in chunks:
                writer.write(chunk)
                interrupts.check("writing")  # a stop requested while writing: the next window does not start
        return writer.paths

"""Writing videos (mp4 / gif / png frames) as their frames come, published atomically with the umask's permissions.

``open_video_writer`` yields a ``VideoWriter`` whose ``write(frames)`` sends each chunk on at once: an mp4's frames
straight into ffmpeg's input (``ltx_jax.ffmpeg.Mp4Encoder``), each frame of a ``.png`` set into its file. A GIF keeps
its frames until the end (Pillow writes a GIF whole; uint8, 3 bytes a pixel). So a minute of video never piles up in
memory: only a chunk at a time. ``write_video`` is the same writer given every frame at once.

    with open_video_writer("long.mp4", fps=25, num_frames=1441) as writer:
        for chunk in pipe.decode_video_stream(latents, decode_timestep=0.05, key=key):   # uint8 [f, H, W, 3]
            writer.write(chunk)

Everything is written into a hidden temporary folder in the target folder (``.partial-*``). On a clean exit the
result is checked (the frame count, ``num_frames`` where given; an mp4 or gif must open and hold every frame) and
published under its name through ``ltx_jax.files`` (``atomic_file``; ``atomic_files`` for a frame set, swapped in
whole). Any exception in the block or while writing (an encoder error, a full disk, Ctrl-C, or SIGTERM under a
handler that raises, as the command line installs) kills ffmpeg and leaves nothing behind. The writer's own failures
come out as one line naming the final path (``writing X failed: ...``); an exception of the block's own code comes
out unchanged. An existing output is refused before any work unless ``overwrite=True``, and without it an output
that appears while writing is never replaced.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
from typing import Iterator

import numpy as np

from ltx_jax.ffmpeg import Mp4Encoder, probe
from ltx_jax.files import PARTIAL_PREFIX, _temporary, atomic_file, atomic_files, check_creatable, one_line, write_error

VIDEO_EXTENSIONS = (".mp4", ".gif", ".png")
_CONVERT_FRAMES = 16  # float frames are made uint8 this many at a time: a float video is never copied whole


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """[F, H, W, 3] floats in [0, 1] -> uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(frames, np.float32) * 255.0), 0, 255).astype(np.uint8)


def output_paths(path: str | os.PathLike, num_frames: int) -> list[str]:
    """The files ``write_video`` writes for ``num_frames`` frames: the path itself, or ``name_00000.png``, ...
    for a ``.png`` path."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() != ".png":
        return [path]
    stem = os.path.splitext(path)[0]
    return [f"{stem}_{i:05d}.png" for i in range(num_frames)]


def check_output(path: str | os.PathLike, num_frames: int, *, fps: float = 25.0, overwrite: bool = False) -> None:
    """Every reason ``write_video`` would refuse or fail, checked before any work: the extension, the frame rate, a
    folder that cannot be written, an existing output without ``overwrite``."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"output {path!r} must end in one of {', '.join(VIDEO_EXTENSIONS)}.")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not (
            math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}; e.g. 25.")
    check_creatable(path)  # the folder is created if missing: its first existing ancestor must be writable
    taken = [p for p in output_paths(path, num_frames) if os.path.exists(p)]
    if ext == ".png":  # any frame of a set with this name: frames of two runs never mix
        taken = sorted(set(taken) | set(_frame_set(path)))
    if taken and not overwrite:
        what = taken[0] if len(taken) == 1 else f"{taken[0]} (and {len(taken) - 1} more frames)"
        raise ValueError(f"{what} already exists; choose another output, "
                         "or overwrite it (--overwrite, overwrite=True).")


class VideoWriter:
    """What ``open_video_writer`` yields: ``write`` sends frames on. ``frames_written`` counts them, ``frame_size``
    is (height, width) once the first chunk came, ``paths`` the files published (set when the block has ended)."""

    def __init__(self, path: str, fps: float, stage: str):
        self.path, self.fps = path, fps
        self.frames_written = 0
        self.frame_size: tuple[int, int] | None = None
        self.paths: list[str] = []
        self._ext = os.path.splitext(path)[1].lower()
        self._stage = stage  # the temporary folder everything is written into
        self._staged = os.path.join(stage, "video" + self._ext)  # an mp4 or gif, until published
        self._encoder: Mp4Encoder | None = None
        self._gif: list[np.ndarray] = []
        self._failure: BaseException | None = None

    def write(self, frames: np.ndarray) -> None:
        """Sends frames on: [f, H, W, 3] (or one frame [H, W, 3]), uint8 or floats in [0, 1] (rounded, clipped).
        Every chunk has the first one's height and width (``ValueError`` otherwise, nothing of it written)."""
        if self._failure is not None:
            raise OSError(f"writing {self.path} failed already: {one_line(str(self._failure))}")
        frames = np.asarray(frames)
        if frames.shape[-1:] != (3,) or frames.ndim not in (3, 4):
            raise ValueError(f"frames must be [F, H, W, 3] (or one frame [H, W, 3]), got shape {frames.shape}.")
        if frames.ndim == 3:
            frames = frames[None]
        size = tuple(frames.shape[1:3])
        if self.frame_size is None:
            self.frame_size = size
        elif size != self.frame_size:
            raise ValueError(f"frames of {size[1]}x{size[0]} after frames of {self.frame_size[1]}x"
                             f"{self.frame_size[0]}: every chunk written to {self.path} has the first one's size.")
        try:
            for begin in range(0, len(frames), _CONVERT_FRAMES):
                chunk = frames[begin:begin + _CONVERT_FRAMES]
                self._send(chunk if chunk.dtype == np.uint8 else to_uint8(chunk))
        except BaseException as e:
            self._failure = e
            raise

    def _send(self, frames: np.ndarray) -> None:
        """uint8 frames [f, H, W, 3] to the file (an mp4's encoder, a frame set's files) or kept (a GIF's)."""
        height, width = self.frame_size
        if self._ext == ".mp4":
            if self._encoder is None:
                self._encoder = Mp4Encoder(self._staged, width, height, self.fps)
            self._encoder.write(frames)
            self.frames_written += len(frames)
        elif self._ext == ".gif":
            self._gif.extend(np.array(frame) for frame in frames)  # copies: the caller may reuse its buffer
            self.frames_written += len(frames)
        else:
            import PIL.Image  # deferred: Pillow loads only when a file is written

            for frame in frames:
                PIL.Image.fromarray(frame).save(os.path.join(self._stage, f"{self.frames_written:05d}.png"),
                                                format="PNG")
                self.frames_written += 1

    def _error(self, error: Exception) -> OSError:
        """The one-line error of a failure while writing: ``writing X failed: ...`` (a frame set: its first and last
        names so far), the temporary names replaced by the final one's."""
        if self._ext != ".png":
            return write_error(self.path, error, self._staged, self._stage)
        names = output_paths(self.path, max(1, self.frames_written + 1))
        return write_error(names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]}", error, self._stage)

    def _complete(self, num_frames: int | None) -> None:
        """Ends the file (ffmpeg's trailer, the GIF) and checks it: every frame there, ``num_frames`` of them."""
        if self.frames_written == 0:
            raise OSError("no frames were written")
        if num_frames is not None and self.frames_written != num_frames:
            raise OSError(f"{self.frames_written} frames were written, not the {num_frames} announced (num_frames)")
        if self._ext == ".mp4":
            self._encoder.finish()
        elif self._ext == ".gif":
            import PIL.Image  # deferred: Pillow loads only when a file is written

            images = [PIL.Image.fromarray(frame) for frame in self._gif]
            images[0].save(self._staged, format="GIF", save_all=True, append_images=images[1:],
                           duration=1000.0 / self.fps, loop=0)
            self._gif.clear()
        if self._ext != ".png":
            _check_written(self._staged, self.frames_written, self.fps)

    def _publish(self, overwrite: bool) -> None:
        """Moves the checked result under its name (``ltx_jax.files``: its own one-line errors)."""
        if self._ext != ".png":
            with atomic_file(self.path, overwrite=overwrite) as tmp:
                os.replace(self._staged, tmp)
            self.paths = [self.path]
            return
        names = output_paths(self.path, self.frames_written)
        with atomic_files(names, overwrite=overwrite, replaces=_frame_set(self.path)) as temporaries:
            for i, tmp in enumerate(temporaries):
                os.replace(os.path.join(self._stage, f"{i:05d}.png"), tmp)
        self.paths = names

    def _close(self) -> None:
        """Stops ffmpeg if it still runs and removes the temporary folder (whatever is left in it)."""
        try:
            if self._encoder is not None:
                self._encoder.kill()
        finally:
            self._gif.clear()
            shutil.rmtree(self._stage, ignore_errors=True)


@contextlib.contextmanager
def open_video_writer(path: str | os.PathLike, fps: float = 25.0, *, overwrite: bool = False,
                      num_frames: int | None = None) -> Iterator[VideoWriter]:
    """A video written as its frames come (the module docstring): yields a ``VideoWriter``; the file appears under
    ``path`` only when the block ends cleanly and the whole video was written and checked.

    Args:
      path: ``.mp4`` (H.264 through imageio's bundled ffmpeg), ``.gif`` (kept until the end), or ``.png`` (one file
        per frame: ``name_00000.png``, ...: swapped in as one set).
      fps: frames per second (> 0).
      overwrite: replace existing files (for ``.png``, the whole earlier frame set, extra frames of a longer run
        included: only once the new set is complete); otherwise an existing output raises ``ValueError`` at once,
        and one that appears while writing ``FileExistsError``.
      num_frames: the frames the video will have, where known: checked at the end (a shorter or longer video is an
        error and nothing is published), and before any work that no frame of it exists.
    Raises:
      OSError: one line naming ``path`` when writing fails (ffmpeg's errors, the trailer's included, e.g. a full disk;
        a finished file that does not open with all its frames; no frames or not ``num_frames``); nothing is left.
    """
    path = os.fspath(path)
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer))
                                   or num_frames < 1):
        raise ValueError(f"num_frames must be a positive whole number or None, got {num_frames!r}.")
    check_output(path, 1 if num_frames is None else int(num_frames), fps=fps, overwrite=overwrite)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        stage = _temporary(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=folder))
    except OSError as e:
        raise write_error(path, e) from e
    writer = VideoWriter(path, fps, stage)
    try:
        try:
            yield writer
        except Exception as e:
            if e is writer._failure:  # the writer's own: one line naming the output
                raise writer._error(e) from e
            raise  # the block's own: unchanged (Ctrl-C and SIGTERM's exceptions too)
        try:
            writer._complete(num_frames)
        except Exception as e:
            raise writer._error(e) from e
        writer._publish(overwrite)
    finally:
        writer._close()


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 25.0, *,
                overwrite: bool = False) -> list[str]:
    """Writes one video's frames, atomically: ``open_video_writer`` given every frame at once.

    Args:
      frames: [F, H, W, 3] in [0, 1] (float) or uint8.
      path, fps, overwrite: as ``open_video_writer``'s.
    Returns:
      The paths written.
    Raises:
      OSError: one line naming ``path`` when the encoder fails or the finished file does not open with all its
        frames; nothing is left behind.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F >= 1, got shape {frames.shape}.")
    with open_video_writer(path, fps, overwrite=overwrite, num_frames=len(frames)) as writer:
        writer.write(frames)
    return writer.paths


def _frame_set(path: str) -> list[str]:
    """The existing frames of a ``.png`` output's set (``name_00000.png``, ...), whatever their count."""
    folder = os.path.dirname(os.path.abspath(path))
    stem = os.path.basename(os.path.splitext(path)[0])
    pattern = re.compile(re.escape(stem) + r"_\d{5}\.png$", re.IGNORECASE)
    names = sorted(n for n in os.listdir(folder) if pattern.match(n)) if os.path.isdir(folder) else []
    return [os.path.join(os.path.dirname(path), n) for n in names]


def _check_written(path: str, num_frames: int, fps: float) -> None:
    """The finished file opens and holds every frame: an mp4's video stream is read back without decoding (ffmpeg
    copies it to nowhere and counts its frames); a GIF's frames are counted and timed (Pillow merges identical
    neighbours into one longer frame, so: at most ``num_frames``, and the whole duration up to its 10 ms steps)."""
    if path.lower().endswith(".mp4"):
        found, reason = probe(path)
        if found is None:
            raise OSError(f"the written file does not open: {reason}")
        if found != num_frames:
            raise OSError(f"the written file holds {found} frames, not {num_frames}")
        return
    import PIL.Image  # deferred: Pillow loads only when a file is checked

    try:
        with PIL.Image.open(path) as image:
            count, total = image.n_frames, 0
            for i in range(count):
                image.seek(i)
                total += image.info.get("duration", 0)
            image.load()  # the last frame's data: the file is whole
    except Exception as e:  # noqa: BLE001 - any failure to read it back means the file is broken
        raise OSError(f"the written file does not open: {e}") from e
    expected = num_frames * 1000.0 / fps
    if count > num_frames or not expected - 10 * count < total <= expected + 0.5:
        raise OSError(f"the written file holds {count} frames of {total} ms, not {num_frames} frames of "
                      f"{expected:.0f} ms")

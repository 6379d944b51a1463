"""Reading and writing videos and images: mp4 / gif / png frames, written atomically with the umask's permissions.

A write goes through ``ltx_jax.files``: a hidden temporary file (a temporary folder for a ``.png`` frame set) in the
target folder, checked once complete (an mp4 or gif must open and hold every frame), then published under its name,
so a failed or interrupted write (an encoder error, a full disk, Ctrl-C, or SIGTERM under a handler that raises, as
the command line installs) leaves no file behind, and errors are one line naming the final path. An existing output
is refused unless ``overwrite=True``, and without it an output that appears while writing is never replaced.
Reading errors are one line too: the file and what is wrong with it, not ffmpeg's banner.
"""

from __future__ import annotations

import contextlib
import fractions
import math
import os
import re
import subprocess
import tempfile
import warnings

import numpy as np

from ltx_jax.files import atomic_file, atomic_files, check_creatable

VIDEO_EXTENSIONS = (".mp4", ".gif", ".png")


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


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 25.0, *,
                overwrite: bool = False) -> list[str]:
    """Writes one video's frames, atomically (``ltx_jax.files``): nothing appears under ``path`` unless the whole
    video was written and checked.

    Args:
      frames: [F, H, W, 3] in [0, 1] (float) or uint8.
      path: ``.mp4`` (H.264 through imageio's bundled ffmpeg), ``.gif``, or ``.png`` (one file per frame:
        ``name_00000.png``, ...: written into a temporary folder and swapped in as one set).
      fps: frames per second (> 0).
      overwrite: replace existing files (for ``.png``, the whole earlier frame set, extra frames of a longer run
        included: only once the new set is complete); otherwise an existing output raises ``ValueError``, and one
        that appears while writing ``FileExistsError``.
    Returns:
      The paths written.
    Raises:
      OSError: one line naming ``path`` when the encoder fails (ffmpeg's errors, the trailer's included, e.g. a
        full disk) or the finished file does not open with all its frames; nothing is left behind.
    """
    path = os.fspath(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F >= 1, got shape {frames.shape}.")
    check_output(path, len(frames), fps=fps, overwrite=overwrite)
    if frames.dtype != np.uint8:
        frames = to_uint8(frames)

    # Pillow directly (what imageio's GIF and PNG writers run): no retry of a failed save at exit
    import PIL.Image  # deferred: Pillow loads only when a file is written

    ext = os.path.splitext(path)[1].lower()
    if ext == ".png":
        names = output_paths(path, len(frames))
        with atomic_files(names, overwrite=overwrite, replaces=_frame_set(path)) as temporaries:
            for tmp, frame in zip(temporaries, frames):
                PIL.Image.fromarray(frame).save(tmp, format="PNG")
        return names
    with _forking_ffmpeg(), atomic_file(path, overwrite=overwrite) as tmp:
        if ext == ".mp4":
            _encode_mp4(frames, tmp, fps)
        else:
            images = [PIL.Image.fromarray(frame) for frame in frames]
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0)
        _check_written(tmp, len(frames), fps)
    return [path]


def _frame_set(path: str) -> list[str]:
    """The existing frames of a ``.png`` output's set (``name_00000.png``, ...), whatever their count."""
    folder = os.path.dirname(os.path.abspath(path))
    stem = os.path.basename(os.path.splitext(path)[0])
    pattern = re.compile(re.escape(stem) + r"_\d{5}\.png$", re.IGNORECASE)
    names = sorted(n for n in os.listdir(folder) if pattern.match(n)) if os.path.isdir(folder) else []
    return [os.path.join(os.path.dirname(path), n) for n in names]


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg  # deferred: imageio-ffmpeg loads only when a video is written or read

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg_reason(log: str) -> str:
    """ffmpeg's reason for a failure, one line: its first error line and, where it adds something, the reason its
    last line gives (``moov atom not found; Invalid data found when processing input``), without the version banner,
    the build configuration or the ``[mp4 @ 0x...]`` tags."""
    lines = []
    for line in log.splitlines():
        line = re.sub(r"^(\[[^]]*\]\s*)+", "", line).strip().rstrip(".")
        if line and not line.startswith(_FFMPEG_NOISE) and not re.match(r"lib\w+\s+\d+\.\s*\d+\.", line):
            lines.append(line)
    if not lines:
        return ""
    last = lines[-1].rpartition(": ")[2]
    return lines[0] if last in lines[0] else f"{lines[0]}; {last}"


def _probe(path: str) -> tuple[int | None, str]:
    """ffmpeg reads the file's video stream without decoding it: ``(frames, "")``, or ``(None, reason)`` when the file
    does not open (``moov atom not found``: an mp4 whose end was never written)."""
    cmd = [_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", path, "-map", "0:v:0", "-c", "copy",
           "-f", "null", "-progress", "pipe:1", "-nostats", "-"]
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", start_new_session=True)
    if result.returncode != 0:
        return None, _ffmpeg_reason(result.stderr) or f"ffmpeg exit status {result.returncode}"
    counts = re.findall(r"^frame=(\d+)$", result.stdout, re.MULTILINE)
    return (int(counts[-1]) if counts else 0), ""


_FFMPEG_NOISE = ("ffmpeg version", "built with", "configuration:", "=== stderr ===", "Could not load meta information")


def _encode_mp4(frames: np.ndarray, path: str, fps: float) -> None:
    """H.264 (libx264, CRF 10, yuv420p) through imageio's bundled ffmpeg, run here rather than through imageio so
    that every failure counts: ffmpeg's exit status (a failed trailer included) and its error log (one line)."""
    _, height, width, _ = frames.shape
    cmd = [_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-vcodec", "rawvideo",
           "-s", f"{width}x{height}", "-pix_fmt", "rgb24", "-r", str(fractions.Fraction(fps).limit_denominator()),
           "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "10", "-f", "mp4", path]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: ffmpeg never blocks on a full pipe
        # A session of its own: Ctrl-C in the terminal reaches this process, which stops ffmpeg itself.
        process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True)
        try:
            for frame in frames:
                process.stdin.write(np.ascontiguousarray(frame).tobytes())
            process.stdin.close()
        except BrokenPipeError:  # ffmpeg stopped early: its log says why
            pass
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        if code != 0:
            log.seek(0)
            reason = _ffmpeg_reason(log.read().decode(errors="replace")) or f"exit status {code}"
            raise OSError(f"the encoder (ffmpeg) failed: {reason}")


def _check_written(path: str, num_frames: int, fps: float) -> None:
    """The finished file opens and holds every frame: an mp4's video stream is read back without decoding (ffmpeg
    copies it to nowhere and counts its frames); a GIF's frames are counted and timed (Pillow merges identical
    neighbours into one longer frame, so: at most ``num_frames``, and the whole duration up to its 10 ms steps)."""
    if path.lower().endswith(".mp4"):
        found, reason = _probe(path)
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


@contextlib.contextmanager
def _forking_ffmpeg():
    """imageio starts ffmpeg with fork + exec; JAX warns about fork in a threaded process, which exec makes harmless."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*os.fork\\(\\) was called.*", category=RuntimeWarning)
        yield


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Reads a video file (mp4, gif, ...) into uint8 [F, H, W, 3]; errors name the file."""
    import imageio.v2 as imageio  # deferred: imageio loads only when a video is read

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"video {path} does not exist (or is not a file).")
    try:
        with _forking_ffmpeg():
            reader = imageio.get_reader(path)
            try:
                frames = [_rgb(np.asarray(frame)) for frame in reader]
            finally:
                reader.close()
    except Exception as e:  # noqa: BLE001 - whatever the reader raises, the file is what is wrong
        # ffmpeg's own reason, without its banner; where it opens the file, the reader's first line.
        reason = _probe(path)[1] or _ffmpeg_reason(str(e)) or type(e).__name__
        raise ValueError(f"cannot read the video {path}: {reason}.") from None
    if not frames:
        raise ValueError(f"cannot read the video {path}: it holds no frames.")
    return np.stack(frames)


def read_image(path: str | os.PathLike):
    """Reads an image file into an RGB ``PIL.Image``; errors name the file."""
    import PIL.Image  # deferred: Pillow loads only when an image is read

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"image {path} does not exist (or is not a file).")
    try:
        with PIL.Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the image {path}: {e}") from None


def read_frames(path: str | os.PathLike) -> list:
    """The frames of a video file, of a folder of images (in name order), or of one image: RGB ``PIL.Image`` s."""
    import PIL.Image  # deferred: Pillow loads only when frames are read

    path = os.fspath(path)
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".bmp")))
        if not names:
            raise ValueError(f"the folder {path} holds no image frames (.png, .jpg, ...).")
        return [read_image(os.path.join(path, n)) for n in names]
    if os.path.splitext(path)[1].lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        return [read_image(path)]
    return [PIL.Image.fromarray(frame) for frame in read_video(path)]


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return np.repeat(frame[..., None], 3, axis=-1)
    return frame[..., :3]

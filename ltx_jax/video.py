"""Reading and writing videos and images: mp4 / gif / png frames, written atomically with the umask's permissions.

A write goes to a hidden temporary file in the target folder and is renamed into place only when complete, so a
failed or interrupted write (an exception, Ctrl-C, or SIGTERM under a handler that raises, as the command line
installs) leaves no file behind, and errors name the final path. An existing output is refused unless
``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import warnings

import numpy as np

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
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.isdir(existing):  # the folder is created if missing: its first existing ancestor must be writable
        if os.path.exists(existing):
            raise ValueError(f"cannot write {path}: {existing} is a file, not a folder.")
        existing = os.path.dirname(existing)
    try:  # a real probe: permissions alone do not tell (root, read-only or virtual file systems)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ValueError(f"cannot write {path}: the folder {existing} is not writable ({e.strerror}); choose another "
                         "output.") from None
    taken = [p for p in output_paths(path, num_frames) if os.path.exists(p)]
    if taken and not overwrite:
        what = taken[0] if len(taken) == 1 else f"{taken[0]} (and {len(taken) - 1} more frames)"
        raise ValueError(f"{what} already exists; choose another output, or overwrite it (--overwrite, overwrite=True).")


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 25.0, *, overwrite: bool = False) -> list[str]:
    """Writes one video's frames.

    Args:
      frames: [F, H, W, 3] in [0, 1] (float) or uint8.
      path: ``.mp4`` (H.264 through imageio's bundled ffmpeg), ``.gif``, or ``.png`` (one file per frame:
        ``name_00000.png``, ...).
      fps: frames per second (> 0).
      overwrite: replace existing files; otherwise an existing output raises ``ValueError``.
    Returns:
      The paths written.
    """
    path = os.fspath(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {frames.shape}.")
    check_output(path, len(frames), fps=fps, overwrite=overwrite)
    if frames.dtype != np.uint8:
        frames = to_uint8(frames)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    import imageio.v2 as imageio

    ext = os.path.splitext(path)[1].lower()
    if ext == ".png":
        written = []
        try:
            for name, frame in zip(output_paths(path, len(frames)), frames):
                _atomic_write(name, lambda tmp, frame=frame: imageio.imwrite(tmp, frame, format="png"))
                written.append(name)
        except BaseException:
            for name in written:
                os.remove(name)
            raise
        return written

    def write(tmp: str):
        if ext == ".mp4":
            # macro_block_size 1 keeps sizes that are not multiples of 16 (every multiple of 32 is fine anyway).
            with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                                    pixelformat="yuv420p", macro_block_size=1) as writer:
                for frame in frames:
                    writer.append_data(frame)
        else:
            imageio.mimsave(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)

    with _forking_ffmpeg():
        _atomic_write(path, write, suffix=ext)
    return [path]


@contextlib.contextmanager
def _forking_ffmpeg():
    """imageio starts ffmpeg with fork + exec; JAX warns about fork in a threaded process, which exec makes harmless."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*os.fork\\(\\) was called.*", category=RuntimeWarning)
        yield


def file_mode() -> int:
    """The mode a new file gets from this process's umask (0o644 under umask 022)."""
    try:
        with open("/proc/self/status") as f:  # Linux: read it without changing it
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: str, write, suffix: str = "") -> None:
    """Writes through a temporary file in the same folder, renamed into place only on success."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=suffix or os.path.splitext(path)[1], dir=folder)
    except OSError as e:
        raise OSError(f"writing {path} failed: {e.strerror}") from e
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except Exception as e:
        _remove(tmp)
        raise OSError(f"writing {path} failed: {str(e).replace(tmp, path)}") from e
    except BaseException:  # Ctrl-C, SIGTERM through a raising handler: nothing is left behind
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Reads a video file (mp4, gif, ...) into uint8 [F, H, W, 3]; errors name the file."""
    import imageio.v2 as imageio

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"video {path} does not exist (or is not a file).")
    try:
        with _forking_ffmpeg():
            reader = imageio.get_reader(path)
            try:
                return np.stack([_rgb(np.asarray(frame)) for frame in reader])
            finally:
                reader.close()
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"cannot read the video {path}: {e}") from None


def read_image(path: str | os.PathLike):
    """Reads an image file into an RGB ``PIL.Image``; errors name the file."""
    import PIL.Image

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
    import PIL.Image

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

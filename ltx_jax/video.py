"""Writing generated frames to mp4 / gif / png, atomically (a failed write leaves no file behind)."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".gif", ".png")


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """[F, H, W, 3] floats in [0, 1] -> uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(frames, np.float32) * 255.0), 0, 255).astype(np.uint8)


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 25.0) -> list[str]:
    """Writes one video's frames.

    Args:
      frames: [F, H, W, 3] in [0, 1] (float) or uint8.
      path: ``.mp4`` (H.264 through imageio's bundled ffmpeg), ``.gif``, or ``.png`` (one file per frame:
        ``name_00000.png``, ...).
    Returns:
      The paths written.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"Unsupported output extension {ext!r} in {path}; use one of {VIDEO_EXTENSIONS}.")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {frames.shape}.")
    if frames.dtype != np.uint8:
        frames = to_uint8(frames)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)

    import imageio.v2 as imageio

    if ext == ".png":
        stem = os.path.splitext(path)[0]
        written = []
        try:
            for i, frame in enumerate(frames):
                name = f"{stem}_{i:05d}.png"
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

    with warnings.catch_warnings():
        # imageio starts ffmpeg with fork+exec; JAX warns about fork in a threaded process, which exec makes harmless.
        warnings.filterwarnings("ignore", message=".*os.fork\\(\\) was called.*", category=RuntimeWarning)
        _atomic_write(path, write, suffix=ext)
    return [path]


def _atomic_write(path: str, write, suffix: str = "") -> None:
    """Writes through a temporary file in the same folder, renamed into place only on success."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=suffix or os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Reads a video (or gif) into uint8 [F, H, W, 3]."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(os.fspath(path))
    try:
        return np.stack([np.asarray(frame)[..., :3] for frame in reader])
    finally:
        reader.close()

"""Reading videos and images (errors are one line: the file and what is wrong with it, not ffmpeg's banner), and
the writing API of ``ltx_jax.video_writer`` under this module's name: ``write_video``, ``open_video_writer`` (frames
written as they come), ``check_output``, ``output_paths``, ``to_uint8``.
"""

from __future__ import annotations

import os

import numpy as np

from ltx_jax.ffmpeg import ffmpeg_reason, probe, quiet_fork
from ltx_jax.video_writer import (VIDEO_EXTENSIONS, VideoWriter, check_audio, check_output, open_video_writer,
                                  output_paths, to_uint8, write_video, write_wav)

__all__ = ["VIDEO_EXTENSIONS", "VideoWriter", "check_audio", "check_output", "open_video_writer", "output_paths",
           "read_frames", "read_image", "read_video", "to_uint8", "write_video", "write_wav"]


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Reads a video file (mp4, gif, ...) into uint8 [F, H, W, 3]; errors name the file."""
    import imageio.v2 as imageio  # deferred: imageio loads only when a video is read

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"video {path} does not exist (or is not a file).")
    try:
        with quiet_fork():
            reader = imageio.get_reader(path)
            try:
                frames = [_rgb(np.asarray(frame)) for frame in reader]
            finally:
                reader.close()
    except Exception as e:  # noqa: BLE001 - whatever the reader raises, the file is what is wrong
        # ffmpeg's own reason, without its banner; where it opens the file, the reader's first line.
        reason = probe(path)[1] or ffmpeg_reason(str(e)) or type(e).__name__
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

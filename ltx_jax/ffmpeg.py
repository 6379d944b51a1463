"""ffmpeg as a subprocess (imageio's bundled binary): an H.264 encoder fed raw frames as they come, a reader that
counts a file's frames without decoding them, and its error log cut down to one line.

Every failure counts: ffmpeg's exit status (a failed trailer included, e.g. a full disk) and its error log, never its
banner. ffmpeg runs in a session of its own, so Ctrl-C in the terminal reaches only this process, which stops it.
"""

from __future__ import annotations

import contextlib
import fractions
import re
import subprocess
import tempfile
import warnings
from typing import Iterator

import numpy as np

_NOISE = ("ffmpeg version", "built with", "configuration:", "=== stderr ===", "Could not load meta information")


def ffmpeg_exe() -> str:
    """The path of imageio's bundled ffmpeg."""
    import imageio_ffmpeg  # deferred: imageio-ffmpeg loads only when a video is written or read

    return imageio_ffmpeg.get_ffmpeg_exe()


@contextlib.contextmanager
def quiet_fork() -> Iterator[None]:
    """subprocess starts ffmpeg with fork + exec; JAX warns about fork in a threaded process, which exec makes
    harmless."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*os.fork\\(\\) was called.*", category=RuntimeWarning)
        yield


def ffmpeg_reason(log: str) -> str:
    """ffmpeg's reason for a failure, one line: its first error line and, where it adds something, the reason its
    last line gives (``moov atom not found; Invalid data found when processing input``), without the version banner,
    the build configuration or the ``[mp4 @ 0x...]`` tags."""
    lines = []
    for line in log.splitlines():
        line = re.sub(r"^(\[[^]]*\]\s*)+", "", line).strip().rstrip(".")
        if line and not line.startswith(_NOISE) and not re.match(r"lib\w+\s+\d+\.\s*\d+\.", line):
            lines.append(line)
    if not lines:
        return ""
    last = lines[-1].rpartition(": ")[2]
    return lines[0] if last in lines[0] else f"{lines[0]}; {last}"


def probe(path: str) -> tuple[int | None, str]:
    """ffmpeg reads the file's video stream without decoding it: ``(frames, "")``, or ``(None, reason)`` when the file
    does not open (``moov atom not found``: an mp4 whose end was never written)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", path, "-map", "0:v:0", "-c", "copy",
           "-f", "null", "-progress", "pipe:1", "-nostats", "-"]
    with quiet_fork():
        result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", start_new_session=True)
    if result.returncode != 0:
        return None, ffmpeg_reason(result.stderr) or f"ffmpeg exit status {result.returncode}"
    counts = re.findall(r"^frame=(\d+)$", result.stdout, re.MULTILINE)
    return (int(counts[-1]) if counts else 0), ""


class Mp4Encoder:
    """H.264 (libx264, CRF 10, yuv420p) into ``path``, fed uint8 RGB frames [f, height, width, 3] on ffmpeg's stdin
    as they come (``write``); ``finish`` closes the input and waits for the file's end, ``kill`` stops ffmpeg at
    once. Errors (``OSError``, one line) carry ffmpeg's own reason: ``the encoder (ffmpeg) failed: ...``."""

    def __init__(self, path: str, width: int, height: int, fps: float):
        self.width, self.height = width, height
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-vcodec", "rawvideo",
               "-s", f"{width}x{height}", "-pix_fmt", "rgb24", "-r", str(fractions.Fraction(fps).limit_denominator()),
               "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "10", "-f", "mp4", path]
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg never blocks on a full pipe
        try:
            with quiet_fork():
                # A session of its own: Ctrl-C in the terminal reaches this process, which stops ffmpeg itself.
                self._process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                 stderr=self._log, start_new_session=True)
        except BaseException:
            self._log.close()
            raise

    def write(self, frames: np.ndarray) -> None:
        """Sends uint8 frames [f, height, width, 3] to ffmpeg, one frame at a time (no copy of the whole chunk)."""
        try:
            for frame in frames:
                self._process.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:  # ffmpeg stopped early: its log says why
            self.finish()
            raise OSError("the encoder (ffmpeg) stopped reading frames") from None

    def finish(self) -> None:
        """Closes ffmpeg's input and waits for it to write the file's end; raises ``OSError`` if it failed."""
        with contextlib.suppress(OSError):  # BrokenPipeError: ffmpeg stopped already; its exit status tells
            self._process.stdin.close()
        try:
            code = self._process.wait()
        except BaseException:
            self.kill()
            raise
        try:
            if code != 0:
                self._log.seek(0)
                reason = ffmpeg_reason(self._log.read().decode(errors="replace")) or f"exit status {code}"
                raise OSError(f"the encoder (ffmpeg) failed: {reason}")
        finally:
            self._log.close()

    def kill(self) -> None:
        """Stops ffmpeg at once (what it wrote is left for the caller to remove); safe to call more than once."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        self._log.close()

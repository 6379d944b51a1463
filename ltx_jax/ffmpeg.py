"""ffmpeg as a subprocess (imageio's bundled binary): an H.264 encoder fed raw frames as they come (with an AAC sound
track from a WAV file where there is one), a muxer that adds a sound track to a finished video, readers that count a
file's frames without decoding them and describe its audio stream, and its error log cut down to one line.

Every failure counts: ffmpeg's exit status (a failed trailer included, e.g. a full disk) and its error log, never its
banner. ffmpeg runs in a session of its own, so Ctrl-C in the terminal reaches only this process, which stops it.

Sound goes in through the same ffmpeg, not PyAV (what diffusers' LTX-2 ``encode_video`` uses, with ffmpeg's native
``aac`` encoder too): imageio-ffmpeg is already a dependency and its static binary carries the ``aac`` encoder on
every machine (the CI machine has no PyAV; PyAV would be a new dependency, a wheel of tens of MB bundling a second
copy of the FFmpeg libraries, for one stream). The waveform is small (a minute of 48 kHz stereo is 11 MB as 16-bit
PCM) and whole when it is known, so it goes to ffmpeg as a second input, a WAV file (16-bit PCM, as diffusers gives
PyAV ``s16``), while the frames keep streaming on stdin: no second pipe to feed in step with the first. A sound
track known only after the frames were sent is added by a second, cheap pass that copies the H.264 stream as it is
(``mux_audio``).

AAC (``aac``, LC) at ``AAC_KBPS_PER_CHANNEL`` kb/s a channel (192 kb/s stereo: a ceiling, the encoder spends less on
simple sound), at the waveform's own rate where AAC has it (24 kHz for LTX-2, 48 kHz for LTX-2.3), else resampled by
ffmpeg to the next AAC rate up. Both streams start at 0: the mp4 muxer's edit list hides the encoder's 1024 samples of
priming and the last frame's padding, so the sound starts with the first frame and decodes to exactly its samples.
"""

from __future__ import annotations

import contextlib
import fractions
import re
import subprocess
import tempfile
import warnings
from typing import Iterator, NamedTuple

import numpy as np

# The rates AAC (ffmpeg's native encoder) takes; a waveform at another rate is resampled to the next one up.
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
AAC_KBPS_PER_CHANNEL = 96  # 96 kb/s mono, 192 kb/s stereo: transparent for LC-AAC at 24-48 kHz
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


class AudioInput(NamedTuple):
    """A sound track for ffmpeg: a WAV file (``path``) of ``channels`` channels at ``sample_rate`` Hz."""
    path: str
    sample_rate: int
    channels: int


def aac_rate(sample_rate: int) -> int:
    """The rate the AAC track gets: ``sample_rate`` where AAC has it, else the next AAC rate up (96 kHz at most)."""
    return next((rate for rate in AAC_RATES if rate >= sample_rate), AAC_RATES[-1])


def _aac_args(audio: AudioInput) -> list[str]:
    """ffmpeg's output options for ``audio`` as AAC (the rate changed only where AAC does not have it)."""
    args = ["-c:a", "aac", "-b:a", f"{AAC_KBPS_PER_CHANNEL * audio.channels}k"]
    if aac_rate(audio.sample_rate) != audio.sample_rate:
        args += ["-ar", str(aac_rate(audio.sample_rate))]
    return args


def _without_dump(log: str) -> str:
    """ffmpeg's log at level info without its description of the inputs and outputs (indented lines, ``Input #0``,
    ``Stream mapping``...): what is left are its warnings and errors."""
    return "\n".join(line for line in log.splitlines()
                     if line.strip() and not re.match(r"\s|(Input|Output) #\d|Stream mapping|Press \[q\]", line))


def probe_audio(path: str) -> tuple[tuple[int, int, float] | None, str]:
    """ffmpeg reads the file's first audio stream without decoding it: ``((sample_rate, channels, seconds), "")``
    (``seconds``: where its last packet ends), or ``(None, reason)`` when the file does not open or holds no audio
    stream (``Stream map '0:a:0' matches no streams``)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path, "-map", "0:a:0", "-c", "copy", "-f", "null",
           "-progress", "pipe:1", "-nostats", "-"]
    with quiet_fork():
        result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", start_new_session=True)
    if result.returncode != 0:
        return None, ffmpeg_reason(_without_dump(result.stderr)) or f"ffmpeg exit status {result.returncode}"
    stream = re.search(r"^\s*Stream #0:\d+\S*: Audio: .*?, (\d+) Hz, ([^,]+),", result.stderr, re.MULTILINE)
    if stream is None:
        return None, "its audio stream is not described"
    layout = stream.group(2).strip()  # "mono", "stereo", "5.1", "3 channels"...
    numbered = re.match(r"(\d+) channels", layout)
    channels = {"mono": 1, "stereo": 2}.get(layout, int(numbered.group(1)) if numbered else 0)
    ends = re.findall(r"^out_time_us=(\d+)$", result.stdout, re.MULTILINE)
    return (int(stream.group(1)), channels, int(ends[-1]) / 1e6 if ends else 0.0), ""


def mux_audio(video: str, audio: AudioInput, path: str) -> None:
    """Writes ``path``: the mp4 ``video``'s H.264 stream as it is (copied) and ``audio`` encoded as AAC, both from
    time 0. Raises ``OSError`` (one line: ``the muxer (ffmpeg) failed: ...``); Ctrl-C stops ffmpeg."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", video, "-f", "wav", "-i",
           audio.path, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *_aac_args(audio), "-f", "mp4", path]
    with quiet_fork():
        # A session of its own: Ctrl-C reaches this process, and subprocess.run kills ffmpeg on the way out.
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                                start_new_session=True)
    if result.returncode != 0:
        reason = ffmpeg_reason(result.stderr) or f"exit status {result.returncode}"
        raise OSError(f"the muxer (ffmpeg) failed: {reason}")


class Mp4Encoder:
    """H.264 (libx264, CRF 10, yuv420p) into ``path``, fed uint8 RGB frames [f, height, width, 3] on ffmpeg's stdin
    as they come (``write``), with ``audio`` (a WAV file, whole from the start) as an AAC track where given;
    ``finish`` closes the input and waits for the file's end, ``kill`` stops ffmpeg at once. Errors (``OSError``,
    one line) carry ffmpeg's own reason: ``the encoder (ffmpeg) failed: ...``."""

    def __init__(self, path: str, width: int, height: int, fps: float, audio: AudioInput | None = None):
        self.width, self.height = width, height
        sound = ["-an"] if audio is None else ["-f", "wav", "-i", audio.path]
        streams = [] if audio is None else ["-map", "0:v:0", "-map", "1:a:0", *_aac_args(audio)]
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-vcodec", "rawvideo",
               "-s", f"{width}x{height}", "-pix_fmt", "rgb24", "-r", str(fractions.Fraction(fps).limit_denominator()),
               "-i", "-", *sound, *streams, "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "10", "-f", "mp4",
               path]
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


def recompress_image(image: np.ndarray, crf: int) -> np.ndarray:
    """One RGB frame through H.264 at ``crf`` and back, as LTX-2 was trained on conditioning images (diffusers'
    ``apply_image_conditioning_crf``, Lightricks' ``media_io.preprocess``): libx264, preset veryfast, yuv420p, the
    frame cropped to even sides. [H, W, 3] uint8 -> [H // 2 * 2, W // 2 * 2, 3] uint8; ``crf`` 0 returns it as is.
    Everything goes through pipes (raw RGB in, the H.264 stream from one ffmpeg to another, raw RGB out): nothing
    touches the disk."""
    if crf == 0:
        return image
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"H.264 re-compression (crf {crf}) takes a uint8 RGB frame [H, W, 3], got {image.dtype} "
                         f"{image.shape}; pass crf 0 to skip it.")
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    frame = np.ascontiguousarray(image[:height, :width])
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"]
    encode = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", *raw, "-i", "pipe:0", "-c:v", "libx264",
              "-preset", "veryfast", "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-f", "h264", "pipe:1"]
    decode = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "h264", "-i", "pipe:0",
              "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    with quiet_fork():
        stream = subprocess.run(encode, input=frame.tobytes(), capture_output=True, start_new_session=True)
        if stream.returncode == 0:
            stream = subprocess.run(decode, input=stream.stdout, capture_output=True, start_new_session=True)
    if stream.returncode != 0 or len(stream.stdout) < frame.nbytes:
        reason = ffmpeg_reason(stream.stderr.decode(errors="replace")) or f"exit status {stream.returncode}"
        raise RuntimeError(f"ffmpeg could not re-compress the conditioning image at crf {crf}: {reason}.")
    return np.frombuffer(stream.stdout[:frame.nbytes], np.uint8).reshape(height, width, 3)

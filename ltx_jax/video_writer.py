"""Writing videos (mp4 / gif / png frames) as their frames come, with a sound track where there is one, published
atomically with the umask's permissions.

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

Sound (LTX-2's waveform: ``audio`` [channels, samples] or [samples], floats in [-1, 1], clipped, at
``audio_sample_rate``: the vocoder's 24000 Hz for LTX-2, 48000 Hz for LTX-2.3): an mp4 gets an AAC track (96 kb/s a
channel, 192 kb/s stereo) starting with the first frame, through the same ffmpeg (``ltx_jax.ffmpeg``'s docstring says
why not PyAV). Given to ``open_video_writer`` (known before the frames), it is written to a 16-bit WAV in the
temporary folder and encoded along with the frames in one pass; given later, ``writer.set_audio`` before the block
ends (known only after the frames), it is added when the frames are done by a second pass that copies the H.264
stream as it is. A ``.png`` frame set gets its sound beside it as ``name.wav`` (16-bit PCM at the waveform's rate),
swapped in with the frames as one set: frames are what an editor takes, and the sound is what it would otherwise
lose. A GIF holds no sound: audio for a ``.gif`` is refused before any work (write ``.mp4``). ``write_wav`` writes a
waveform alone, atomically. Audio errors are one line (shape, dtype, NaN or inf, a missing or bad sample rate).

    with open_video_writer("talk.mp4", fps=24, audio_sample_rate=24000) as writer:
        for chunk in chunks:
            writer.write(chunk)
        writer.set_audio(waveform)                                      # [2, samples] floats, decoded last
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
import wave
from typing import Iterator

import numpy as np

from ltx_jax.ffmpeg import AudioInput, Mp4Encoder, aac_rate, mux_audio, probe, probe_audio
from ltx_jax.files import PARTIAL_PREFIX, _temporary, atomic_file, atomic_files, check_creatable, one_line, write_error

VIDEO_EXTENSIONS = (".mp4", ".gif", ".png")
_CONVERT_FRAMES = 16  # float frames are made uint8 this many at a time: a float video is never copied whole
_WAV_SAMPLES = 1 << 16  # samples made 16-bit this many at a time
_STAGED_SOUND = ("audio.wav", "silent.mp4")  # an mp4's temporaries for its sound track, beside video.mp4
_RATE_EXAMPLE = "e.g. 24000 for LTX-2, 48000 for LTX-2.3 (the vocoder's rate)"


def check_sample_rate(sample_rate, what: str = "audio_sample_rate") -> int:
    """``sample_rate`` as an int: a positive whole number of samples per second (``ValueError``, one line,
    otherwise; ``None`` is 'missing')."""
    if sample_rate is None:
        raise ValueError(f"{what} is missing: audio needs its sample rate, {_RATE_EXAMPLE}.")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)) or not (
            math.isfinite(sample_rate) and sample_rate > 0 and float(sample_rate).is_integer()):
        raise ValueError(f"{what} must be a positive whole number of samples per second, {_RATE_EXAMPLE}; got "
                         f"{sample_rate!r}.")
    return int(sample_rate)


def check_audio(audio) -> np.ndarray:
    """A waveform as float32 [channels, samples] clipped to [-1, 1]: ``audio`` is [channels, samples] (1 or 2
    channels) or [samples] (mono), floats (NumPy or JAX, bfloat16 included); ``ValueError`` (one line) for another
    shape, no samples, integers, NaN or inf."""
    audio = np.asarray(audio)
    shape = tuple(audio.shape)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        hint = ""
        if audio.ndim == 2 and audio.shape[1] in (1, 2):
            hint = "; for [samples, channels] pass audio.T"
        elif audio.ndim == 3:
            hint = "; for a batch [B, channels, samples] pass one video's audio[i]"
        raise ValueError(f"audio must be [channels, samples] with 1 or 2 channels (or [samples]: mono), got shape "
                         f"{shape}{hint}.")
    if audio.shape[1] == 0:
        raise ValueError(f"audio holds no samples (shape {shape}).")
    if audio.dtype.kind != "f" and "float" not in audio.dtype.name:
        raise ValueError(f"audio must be floats in [-1, 1], got {audio.dtype}"
                         f"{'; for 16-bit samples pass audio / 32768' if audio.dtype.kind in 'iu' else ''}.")
    audio = audio.astype(np.float32)
    finite = np.isfinite(audio)
    if not finite.all():
        raise ValueError(f"audio holds {audio.size - int(finite.sum())} NaN or infinite samples (of {audio.size}); "
                         "a waveform must be finite.")
    return np.clip(audio, -1.0, 1.0, out=audio)


def _write_wav_file(path: str, audio: np.ndarray, sample_rate: int) -> None:
    """A checked waveform (``check_audio``) as a 16-bit PCM WAV at ``path`` (not atomic: the callers' temporaries)."""
    with wave.open(path, "wb") as f:
        f.setnchannels(audio.shape[0])
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        for begin in range(0, audio.shape[1], _WAV_SAMPLES):
            chunk = np.round(audio[:, begin:begin + _WAV_SAMPLES].T * 32767.0).astype("<i2")  # interleaved
            f.writeframes(chunk.tobytes())


def write_wav(path: str | os.PathLike, audio, sample_rate: int, *, overwrite: bool = False) -> str:
    """Writes a waveform as a 16-bit PCM WAV, atomically (``ltx_jax.files.atomic_file``: nothing is left on failure
    or Ctrl-C).

    Args:
      path: ends in ``.wav``.
      audio: [channels, samples] (1 or 2 channels) or [samples], floats in [-1, 1] (clipped).
      sample_rate: samples per second (the vocoder's: 24000 for LTX-2, 48000 for LTX-2.3).
      overwrite: replace an existing file; otherwise it is refused before any work (``ValueError``).
    Returns:
      The path written.
    """
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() != ".wav":
        raise ValueError(f"output {path!r} must end in .wav.")
    audio, sample_rate = check_audio(audio), check_sample_rate(sample_rate, "sample_rate")
    check_creatable(path)
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"{path} already exists; choose another output, or overwrite it (overwrite=True).")
    with atomic_file(path, overwrite=overwrite) as tmp:
        _write_wav_file(tmp, audio, sample_rate)
    return path


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """[F, H, W, 3] floats in [0, 1] -> uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(frames, np.float32) * 255.0), 0, 255).astype(np.uint8)


def output_paths(path: str | os.PathLike, num_frames: int, *, audio: bool = False) -> list[str]:
    """The files ``write_video`` writes for ``num_frames`` frames: the path itself, or ``name_00000.png``, ...
    for a ``.png`` path (and ``name.wav`` last, with ``audio``)."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() != ".png":
        return [path]
    stem = os.path.splitext(path)[0]
    return [f"{stem}_{i:05d}.png" for i in range(num_frames)] + ([f"{stem}.wav"] if audio else [])


def check_output(path: str | os.PathLike, num_frames: int, *, fps: float = 25.0, overwrite: bool = False,
                 audio: bool = False) -> None:
    """Every reason ``write_video`` would refuse or fail, checked before any work: the extension, the frame rate,
    sound for a GIF (``audio``: the video has a sound track), a folder that cannot be written, an existing output
    (a frame set's ``.wav`` included) without ``overwrite``."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"output {path!r} must end in one of {', '.join(VIDEO_EXTENSIONS)}.")
    if audio and ext == ".gif":
        raise ValueError(_no_sound_in_gif(path))
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not (
            math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}; e.g. 25.")
    check_creatable(path)  # the folder is created if missing: its first existing ancestor must be writable
    taken = [p for p in output_paths(path, num_frames, audio=audio) if os.path.exists(p)]
    if ext == ".png":  # any frame of a set with this name: frames of two runs never mix
        taken = sorted(set(taken) | set(_frame_set(path)))
    if taken and not overwrite:
        what = taken[0] if len(taken) == 1 else f"{taken[0]} (and {len(taken) - 1} more frames)"
        raise ValueError(f"{what} already exists; choose another output, "
                         "or overwrite it (--overwrite, overwrite=True).")


def _no_sound_in_gif(path: str) -> str:
    return (f"a GIF holds no sound: write {os.path.splitext(path)[0]}.mp4 instead (H.264 with an AAC track), or .png "
            "frames (with a .wav beside them).")


class VideoWriter:
    """What ``open_video_writer`` yields: ``write`` sends frames on, ``set_audio`` gives the sound track where it is
    known only now. ``frames_written`` counts the frames, ``frame_size`` is (height, width) once the first chunk
    came, ``paths`` the files published (set when the block has ended)."""

    def __init__(self, path: str, fps: float, stage: str, *, overwrite: bool = False, audio: np.ndarray | None = None,
                 audio_sample_rate: int | None = None):
        self.path, self.fps = path, fps
        self.frames_written = 0
        self.frame_size: tuple[int, int] | None = None
        self.paths: list[str] = []
        self._ext = os.path.splitext(path)[1].lower()
        self._stage = stage  # the temporary folder everything is written into
        self._staged = os.path.join(stage, "video" + self._ext)  # an mp4 or gif, until published
        self._overwrite = overwrite
        self._audio, self._audio_rate = audio, audio_sample_rate  # checked: float32 [channels, samples] in [-1, 1]
        self._audio_encoded = False  # the mp4 encoder took the sound track along with the frames
        self._encoder: Mp4Encoder | None = None
        self._gif: list[np.ndarray] = []
        self._failure: BaseException | None = None

    def set_audio(self, audio, sample_rate: int | None = None) -> None:
        """The sound track, where it is known only after the writer opened (``open_video_writer``'s ``audio``
        otherwise): [channels, samples] (1 or 2 channels) or [samples], floats in [-1, 1] (clipped), at
        ``sample_rate`` (``open_video_writer``'s ``audio_sample_rate`` where not given). Once, before the block ends.
        Before the first frame, an mp4 encodes it along with them; after, it is added once the frames are done (a
        second pass copying the H.264 stream). ``ValueError`` (one line) for bad audio, a GIF, a second track, or a
        frame set whose ``.wav`` exists without ``overwrite``."""
        if self._failure is not None:
            raise OSError(f"writing {self.path} failed already: {one_line(str(self._failure))}")
        if self._ext == ".gif":
            raise ValueError(_no_sound_in_gif(self.path))
        if self._audio is not None:
            raise ValueError(f"{self.path} has its sound track already: set_audio takes one, once.")
        rate = check_sample_rate(self._audio_rate if sample_rate is None else sample_rate,
                                 "audio_sample_rate" if sample_rate is None else "sample_rate")
        audio = check_audio(audio)
        if self._ext == ".png" and not self._overwrite:
            wav = output_paths(self.path, 0, audio=True)[-1]
            if os.path.exists(wav):
                raise ValueError(f"{wav} already exists; choose another output, or overwrite it (--overwrite, "
                                 "overwrite=True).")
        self._audio, self._audio_rate = audio, rate

    def _audio_input(self) -> AudioInput:
        """The sound track as a WAV file in the temporary folder, for ffmpeg."""
        wav = os.path.join(self._stage, _STAGED_SOUND[0])
        _write_wav_file(wav, self._audio, self._audio_rate)
        return AudioInput(wav, self._audio_rate, self._audio.shape[0])

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
                audio = None if self._audio is None else self._audio_input()
                self._encoder = Mp4Encoder(self._staged, width, height, self.fps, audio)
                self._audio_encoded = audio is not None
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
            return write_error(self.path, error, self._staged, *(os.path.join(self._stage, n) for n in _STAGED_SOUND),
                               self._stage)
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
            if self._audio is not None and not self._audio_encoded:  # known only after the frames: a second pass
                silent = os.path.join(self._stage, _STAGED_SOUND[1])
                os.replace(self._staged, silent)
                mux_audio(silent, self._audio_input(), self._staged)
                os.remove(silent)
        elif self._ext == ".gif":
            import PIL.Image  # deferred: Pillow loads only when a file is written

            images = [PIL.Image.fromarray(frame) for frame in self._gif]
            images[0].save(self._staged, format="GIF", save_all=True, append_images=images[1:],
                           duration=1000.0 / self.fps, loop=0)
            self._gif.clear()
        if self._ext != ".png":
            _check_written(self._staged, self.frames_written, self.fps)
        if self._ext == ".mp4" and self._audio is not None:
            _check_sound(self._staged, self._audio.shape, self._audio_rate)

    def _publish(self, overwrite: bool) -> None:
        """Moves the checked result under its name (``ltx_jax.files``: its own one-line errors)."""
        if self._ext != ".png":
            with atomic_file(self.path, overwrite=overwrite) as tmp:
                os.replace(self._staged, tmp)
            self.paths = [self.path]
            return
        names = output_paths(self.path, self.frames_written, audio=self._audio is not None)
        wav = output_paths(self.path, 0, audio=True)[-1]  # an earlier set's sound goes with its frames
        replaces = _frame_set(self.path) + ([wav] if os.path.exists(wav) else [])
        with atomic_files(names, overwrite=overwrite, replaces=replaces) as temporaries:
            for i, tmp in enumerate(temporaries[:self.frames_written]):
                os.replace(os.path.join(self._stage, f"{i:05d}.png"), tmp)
            if self._audio is not None:  # the sound beside the frames, in the same set
                _write_wav_file(temporaries[-1], self._audio, self._audio_rate)
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
                      num_frames: int | None = None, audio=None,
                      audio_sample_rate: int | None = None) -> Iterator[VideoWriter]:
    """A video written as its frames come (the module docstring): yields a ``VideoWriter``; the file appears under
    ``path`` only when the block ends cleanly and the whole video was written and checked.

    Args:
      path: ``.mp4`` (H.264 through imageio's bundled ffmpeg), ``.gif`` (kept until the end), or ``.png`` (one file
        per frame: ``name_00000.png``, ...: swapped in as one set).
      fps: frames per second (> 0).
      overwrite: replace existing files (for ``.png``, the whole earlier frame set, extra frames of a longer run and
        its ``name.wav`` included: only once the new set is complete); otherwise an existing output raises
        ``ValueError`` at once, and one that appears while writing ``FileExistsError``.
      num_frames: the frames the video will have, where known: checked at the end (a shorter or longer video is an
        error and nothing is published), and before any work that no frame of it exists.
      audio: the sound track where known now (else ``writer.set_audio`` later, or none): [channels, samples] (1 or 2
        channels) or [samples], floats in [-1, 1] (clipped). ``.mp4``: an AAC track (96 kb/s a channel) starting
        with the first frame, as long as the waveform (not cut to the frames); ``.png``: ``name.wav`` beside the
        frames (16-bit PCM); ``.gif``: refused (``ValueError``, before any work).
      audio_sample_rate: the waveform's samples per second (the vocoder's: 24000 for LTX-2, 48000 for LTX-2.3);
        needed with ``audio``, and the default of ``set_audio``.
    Raises:
      ValueError: one line, before any work: the checks of ``check_output``; bad audio (its shape, integers, NaN or
        inf) or a missing or bad sample rate.
      OSError: one line naming ``path`` when writing fails (ffmpeg's errors, the trailer's included, e.g. a full disk;
        a finished file that does not open with all its frames, or without its sound track; no frames or not
        ``num_frames``); nothing is left (the temporary WAV included).
    """
    path = os.fspath(path)
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer))
                                   or num_frames < 1):
        raise ValueError(f"num_frames must be a positive whole number or None, got {num_frames!r}.")
    check_output(path, 1 if num_frames is None else int(num_frames), fps=fps, overwrite=overwrite,
                 audio=audio is not None)
    if audio_sample_rate is not None or audio is not None:
        audio_sample_rate = check_sample_rate(audio_sample_rate)
    if audio is not None:
        audio = check_audio(audio)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        stage = _temporary(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=folder))
    except OSError as e:
        raise write_error(path, e) from e
    writer = VideoWriter(path, fps, stage, overwrite=overwrite, audio=audio, audio_sample_rate=audio_sample_rate)
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


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 25.0, *, overwrite: bool = False,
                audio=None, audio_sample_rate: int | None = None) -> list[str]:
    """Writes one video's frames (and its sound track), atomically: ``open_video_writer`` given every frame at once.

    Args:
      frames: [F, H, W, 3] in [0, 1] (float) or uint8.
      path, fps, overwrite, audio, audio_sample_rate: as ``open_video_writer``'s.
    Returns:
      The paths written (a frame set's ``.wav`` last).
    Raises:
      OSError: one line naming ``path`` when the encoder fails or the finished file does not open with all its
        frames (and its sound track); nothing is left behind.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F >= 1, got shape {frames.shape}.")
    with open_video_writer(path, fps, overwrite=overwrite, num_frames=len(frames), audio=audio,
                           audio_sample_rate=audio_sample_rate) as writer:
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


def _check_sound(path: str, shape: tuple[int, int], sample_rate: int) -> None:
    """The finished mp4 holds its AAC track: the channels and rate asked for, as long as the waveform (up to AAC's
    1024-sample frames: the last packet ends within one frame of the waveform's end)."""
    found, reason = probe_audio(path)
    if found is None:
        raise OSError(f"the written file's sound track does not open: {reason}")
    rate, channels, seconds = found
    expected = shape[1] / sample_rate
    if (rate, channels) != (aac_rate(sample_rate), shape[0]) or abs(seconds - expected) > 1024 / rate + 1e-3:
        raise OSError(f"the written file's sound track is {channels} channel(s) at {rate} Hz of {seconds:.3f} s, not "
                      f"{shape[0]} at {aac_rate(sample_rate)} Hz of {expected:.3f} s")

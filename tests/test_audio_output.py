"""Videos with a sound track (ltx_jax/video_writer.py, ltx_jax/ffmpeg.py): an mp4's AAC track read back through
imageio-ffmpeg's binary (its rate and channels from ``ffmpeg -i``, its samples decoded to raw float32 PCM) holds the
waveform's samples, at its rate, in its channels, starting with the first frame, with the tone's 440 Hz; the sound
given before the frames (one pass) or after them (``set_audio``: a second pass); a ``.png`` frame set with its
``.wav``; ``write_wav``; bad audio as one line before any work; no leftover (the temporary WAV included) when
writing fails or is interrupted."""

from __future__ import annotations

import fractions
import os
import re
import subprocess
import wave

import numpy as np
import pytest

from ltx_jax import ffmpeg, files, video_writer
from ltx_jax.video_writer import open_video_writer, write_video, write_wav

FPS = 25
FRAMES = np.random.default_rng(2).integers(0, 256, (FPS, 32, 48, 3), dtype=np.uint8)  # 1 s of frames
TONE = 440.0
AMPLITUDES = (0.5, 0.25)  # left, right: the channels keep their order


def tone(rate: int, channels: int, seconds: float = 1.0) -> np.ndarray:
    """A 440 Hz sine [channels, samples] from phase 0 at t = 0 (its start shows where the track starts)."""
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([a * np.sin(2 * np.pi * TONE * t) for a in AMPLITUDES[:channels]]).astype(np.float32)


def read_sound(path) -> tuple[int, int, np.ndarray]:
    """(rate, channels, samples [channels, n]) of the file's first audio stream: the rate and channels as
    ``ffmpeg -i`` describes the stream, the samples decoded by ffmpeg to raw float32 PCM (its edit list applied)."""
    exe = ffmpeg.ffmpeg_exe()
    described = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    stream = re.search(r"Stream #0:\d+\S*: Audio: aac \(LC\).*?, (\d+) Hz, (mono|stereo),", described)
    assert stream, described
    rate, channels = int(stream[1]), {"mono": 1, "stereo": 2}[stream[2]]
    decoded = subprocess.run([exe, "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-c:a",
                              "pcm_f32le", "-"], capture_output=True, check=True).stdout
    return rate, channels, np.frombuffer(decoded, "<f4").reshape(-1, channels).T


def first_times(path) -> dict[str, float]:
    """The presentation time (s) of the first decoded video frame and audio sample, by ffmpeg's ``framecrc``."""
    out = subprocess.run([ffmpeg.ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-map", "0:a:0",
                          "-f", "framecrc", "-"], capture_output=True, text=True, check=True).stdout
    bases = dict(re.findall(r"^#tb (\d+): (\d+/\d+)$", out, re.MULTILINE))
    firsts = {}
    for stream, pts in re.findall(r"^(\d+),\s*-?\d+,\s*(-?\d+),", out, re.MULTILINE):
        firsts.setdefault(stream, int(pts) * fractions.Fraction(bases[stream]))
    return {"video": firsts["0"], "audio": firsts["1"]}


def assert_the_tone(path, source: np.ndarray, rate: int) -> str:
    """The track holds ``source``: its rate, its channels, its samples (exactly: ffmpeg's mp4 muxer writes an edit
    list hiding AAC's 1024 samples of priming and the last frame's padding, and its decoder applies it), from t = 0
    as the first frame, 440 Hz dominant, each channel's level and waveform (AAC is lossy, and its first frames at
    48 kHz settle: the middle 0.1-0.9 s is compared, within 5% RMS; measured 0.05-2.3%)."""
    found_rate, channels, decoded = read_sound(path)
    assert (found_rate, channels) == (rate, len(source))
    assert decoded.shape == source.shape, (decoded.shape, source.shape)
    times = first_times(path)
    assert times == {"video": 0, "audio": 0}, times
    for left, right, amplitude in zip(decoded, source, AMPLITUDES):
        spectrum = np.abs(np.fft.rfft(left * np.hanning(len(left))))
        peak = np.argmax(spectrum) * rate / len(left)
        assert abs(peak - TONE) <= rate / len(left), peak  # within one bin (1 Hz for 1 s)
        lags = range(-27, 28)  # half a period of 440 Hz at 24 kHz: a shift of the track shows as a lag
        middle = slice(rate // 10, -rate // 10)
        lag = max(lags, key=lambda k: float(np.dot(left[middle], np.roll(right, k)[middle])))
        assert lag == 0, lag
        rms = amplitude / np.sqrt(2)  # the sine's
        assert np.sqrt(np.mean(left[middle] ** 2)) == pytest.approx(rms, rel=0.02)
        assert np.sqrt(np.mean((left[middle] - right[middle]) ** 2)) < 0.05 * rms
    return f"{rate} Hz x {channels}: {decoded.shape[1]} samples, 440 Hz, from t = 0"


def everything(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize("rate", [24000, 48000])
def test_an_mp4_carries_the_sound_track(tmp_path, rate, channels):
    source = tone(rate, channels)
    audio = source[0] if channels == 1 else source  # mono as [samples]
    paths = write_video(FRAMES, tmp_path / "v.mp4", fps=FPS, audio=audio, audio_sample_rate=rate)
    assert paths == [str(tmp_path / "v.mp4")] and everything(tmp_path) == ["v.mp4"]
    print(f"\n[audio] one pass: {assert_the_tone(paths[0], source, rate)}")


def test_sound_known_only_after_the_frames_is_added_by_a_second_pass(tmp_path):
    source = tone(48000, 2)
    with open_video_writer(tmp_path / "v.mp4", fps=FPS, num_frames=len(FRAMES), audio_sample_rate=48000) as writer:
        writer.write(FRAMES[:10])
        writer.write(FRAMES[10:])
        writer.set_audio(source)
        with pytest.raises(ValueError, match=r"has its sound track already: set_audio takes one, once\.$"):
            writer.set_audio(source)
    assert everything(tmp_path) == ["v.mp4"]
    print(f"\n[audio] set_audio after the frames: {assert_the_tone(tmp_path / 'v.mp4', source, 48000)}")
    with open_video_writer(tmp_path / "w.mp4", fps=FPS) as writer:  # set before the first frame: the one pass
        writer.set_audio(source, 48000)
        writer.write(FRAMES)
    print(f"\n[audio] set_audio before the frames: {assert_the_tone(tmp_path / 'w.mp4', source, 48000)}")


def test_a_rate_aac_lacks_is_resampled_to_the_next_aac_rate(tmp_path):
    source = tone(20000, 1)
    write_video(FRAMES[:5], tmp_path / "v.mp4", fps=5, audio=source, audio_sample_rate=20000)
    rate, channels, decoded = read_sound(tmp_path / "v.mp4")
    assert (rate, channels) == (22050, 1) and abs(decoded.shape[1] - 22050) <= 64, decoded.shape


def test_a_png_frame_set_gets_its_wav_beside_it(tmp_path):
    source = tone(24000, 2) * np.array([[1.0], [4.0]], np.float32)  # the right channel clips
    paths = write_video(FRAMES[:3], tmp_path / "f.png", audio=source, audio_sample_rate=24000)
    assert [os.path.basename(p) for p in paths] == ["f_00000.png", "f_00001.png", "f_00002.png", "f.wav"]
    assert everything(tmp_path) == sorted(os.path.basename(p) for p in paths)
    with wave.open(paths[-1]) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()) == (2, 2, 24000, 24000)
        samples = np.frombuffer(f.readframes(f.getnframes()), "<i2").reshape(-1, 2).T / 32767.0
    np.testing.assert_allclose(samples, np.clip(source, -1, 1), atol=0.6 / 32767)
    (tmp_path / "g.wav").write_bytes(b"taken")  # the sound's name is taken: refused before any work
    with pytest.raises(ValueError, match=r"g\.wav already exists; choose another output"):
        write_video(FRAMES[:3], tmp_path / "g.png", audio=source, audio_sample_rate=24000)
    with pytest.raises(ValueError, match=r"g\.wav already exists; choose another output"):
        with open_video_writer(tmp_path / "g.png", audio_sample_rate=24000) as writer:
            writer.write(FRAMES[:3])
            writer.set_audio(source)
    (tmp_path / "g.wav").unlink()
    assert everything(tmp_path) == sorted(os.path.basename(p) for p in paths)
    again = write_video(FRAMES[:2], tmp_path / "f.png", overwrite=True, audio=source[:1], audio_sample_rate=24000)
    assert len(again) == 3 and not os.path.exists(tmp_path / "f_00002.png")  # swapped in as one set
    with wave.open(again[-1]) as f:
        assert f.getnchannels() == 1
    silent = write_video(FRAMES[:2], tmp_path / "f.png", overwrite=True)  # the old set's sound goes with it
    assert everything(tmp_path) == sorted(os.path.basename(p) for p in silent) == ["f_00000.png", "f_00001.png"]


def test_write_wav(tmp_path, monkeypatch):
    source = tone(48000, 1)[0]
    assert write_wav(tmp_path / "a.wav", source, 48000) == str(tmp_path / "a.wav")
    with wave.open(str(tmp_path / "a.wav")) as f:
        assert (f.getnchannels(), f.getframerate(), f.getnframes()) == (1, 48000, 48000)
    assert oct(os.stat(tmp_path / "a.wav").st_mode & 0o777) == oct(files.file_mode())
    with pytest.raises(ValueError, match=r"a\.wav already exists; choose another output, or overwrite it"):
        write_wav(tmp_path / "a.wav", source, 48000)
    with pytest.raises(ValueError, match=r"must end in \.wav\.$"):
        write_wav(tmp_path / "a.mp3", source, 48000)

    for error in (KeyboardInterrupt(), OSError(28, "No space left on device")):
        def failing(self, data, error=error):
            raise error

        monkeypatch.setattr(wave.Wave_write, "writeframes", failing)
        with pytest.raises(type(error)) as caught:
            write_wav(tmp_path / "b.wav", source, 48000)
        if isinstance(error, OSError):
            assert str(caught.value) == f"writing {tmp_path / 'b.wav'} failed: No space left on device"
        assert everything(tmp_path) == ["a.wav"]


BAD = [
    (np.zeros((3, 100), np.float32), 24000,
     "audio must be [channels, samples] with 1 or 2 channels (or [samples]: mono), got shape (3, 100)."),
    (np.zeros((100, 2), np.float32), 24000, "audio must be [channels, samples] with 1 or 2 channels (or [samples]: "
                                            "mono), got shape (100, 2); for [samples, channels] pass audio.T."),
    (np.zeros((1, 2, 100), np.float32), 24000, "audio must be [channels, samples] with 1 or 2 channels (or [samples]:"
                                               " mono), got shape (1, 2, 100); for a batch [B, channels, samples] "
                                               "pass one video's audio[i]."),
    (np.zeros((2, 0), np.float32), 24000, "audio holds no samples (shape (2, 0))."),
    (np.zeros(100, np.int16), 24000, "audio must be floats in [-1, 1], got int16; for 16-bit samples pass "
                                     "audio / 32768."),
    (np.array([0.0, np.nan, np.inf, 0.5], np.float32), 24000,
     "audio holds 2 NaN or infinite samples (of 4); a waveform must be finite."),
    (np.zeros(100, np.float32), None, "audio_sample_rate is missing: audio needs its sample rate, e.g. 24000 for "
                                      "LTX-2, 48000 for LTX-2.3 (the vocoder's rate)."),
    (np.zeros(100, np.float32), 0, "audio_sample_rate must be a positive whole number of samples per second, e.g. "
                                   "24000 for LTX-2, 48000 for LTX-2.3 (the vocoder's rate); got 0."),
    (np.zeros(100, np.float32), 24000.5, "audio_sample_rate must be a positive whole number of samples per second, "
                                         "e.g. 24000 for LTX-2, 48000 for LTX-2.3 (the vocoder's rate); got 24000.5."),
]


@pytest.mark.parametrize("audio, rate, message", BAD, ids=["3-channels", "samples-first", "batch", "empty",
                                                            "int16", "nan", "no-rate", "zero-rate", "half-rate"])
def test_bad_audio_is_one_line_before_any_work(tmp_path, audio, rate, message):
    with pytest.raises(ValueError) as caught:
        write_video(FRAMES[:2], tmp_path / "v.mp4", audio=audio, audio_sample_rate=rate)
    assert str(caught.value) == message
    with pytest.raises(ValueError) as caught:  # write_wav's argument is sample_rate
        write_wav(tmp_path / "a.wav", audio, rate)
    assert str(caught.value) == message.replace("audio_sample_rate", "sample_rate")
    assert everything(tmp_path) == []
    print(f"\n[audio] {message}")


def test_a_gif_refuses_sound_naming_the_fix(tmp_path):
    message = (f"a GIF holds no sound: write {tmp_path / 'v'}.mp4 instead (H.264 with an AAC track), or .png frames "
               "(with a .wav beside them).")
    with pytest.raises(ValueError) as caught:
        write_video(FRAMES[:2], tmp_path / "v.gif", audio=tone(24000, 1), audio_sample_rate=24000)
    assert str(caught.value) == message
    with pytest.raises(ValueError) as caught:
        with open_video_writer(tmp_path / "v.gif", fps=FPS, audio_sample_rate=24000) as writer:
            writer.write(FRAMES[:2])
            writer.set_audio(tone(24000, 1))
    assert str(caught.value) == message and everything(tmp_path) == []


class Stop(Exception):
    pass


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("error", [Stop("the decode failed"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_a_stop_leaves_nothing_the_temporary_wav_included(tmp_path, error, when):
    """The block stops with the sound track in the temporary folder (given before the frames: ffmpeg reading it)
    or set after them: nothing is left, ffmpeg is gone."""
    source = tone(24000, 2)
    with pytest.raises(type(error)) as caught:
        with open_video_writer(tmp_path / "v.mp4", fps=FPS, audio=source if when == "before" else None,
                               audio_sample_rate=24000) as writer:
            writer.write(FRAMES[:4])
            if when == "before":
                assert "audio.wav" in os.listdir(writer._stage)
            else:
                writer.set_audio(source)
            raise error
    assert caught.value is error and everything(tmp_path) == []
    assert writer._encoder._process.poll() is not None


def test_failures_while_adding_the_sound_leave_nothing(tmp_path, monkeypatch):
    """ffmpeg dies while it reads the frames and the WAV; Ctrl-C during the second pass; a finished file without
    the sound track asked for: one line naming the output (or Ctrl-C itself), nothing left."""
    source = tone(24000, 1)
    with pytest.raises(OSError) as caught:
        with open_video_writer(tmp_path / "v.mp4", fps=FPS, audio=source, audio_sample_rate=24000) as writer:
            writer.write(FRAMES[:3])
            writer._encoder._process.kill()
            writer._encoder._process.wait()
            for _ in range(200):  # until the pipe refuses: a few writes
                writer.write(FRAMES[:3])
    message = str(caught.value)
    assert message.startswith(f"writing {tmp_path / 'v.mp4'} failed: the encoder (ffmpeg) ") and "\n" not in message
    assert files.PARTIAL_PREFIX not in message and everything(tmp_path) == []

    real_mux = ffmpeg.mux_audio

    def interrupted_mux(video, audio, path):
        real_mux(video, audio, path)  # the WAV and both mp4s are in the temporary folder now
        assert sorted(os.listdir(os.path.dirname(path))) == ["audio.wav", "silent.mp4", "video.mp4"]
        raise KeyboardInterrupt

    monkeypatch.setattr(video_writer, "mux_audio", interrupted_mux)
    with pytest.raises(KeyboardInterrupt):
        with open_video_writer(tmp_path / "v.mp4", fps=FPS) as writer:
            writer.write(FRAMES)
            writer.set_audio(source, 24000)
    assert everything(tmp_path) == []
    monkeypatch.undo()

    monkeypatch.setattr(video_writer, "probe_audio", lambda path: ((24000, 2, 1.0), ""))
    with pytest.raises(OSError) as caught:
        write_video(FRAMES, tmp_path / "v.mp4", fps=FPS, audio=source, audio_sample_rate=24000)
    assert str(caught.value) == (f"writing {tmp_path / 'v.mp4'} failed: the written file's sound track is 2 channel(s) "
                                 "at 24000 Hz of 1.000 s, not 1 at 24000 Hz of 1.000 s")
    monkeypatch.setattr(video_writer, "probe_audio", lambda path: (None, "Stream map '0:a:0' matches no streams"))
    with pytest.raises(OSError, match=r"failed: the written file's sound track does not open: Stream map '0:a:0' "
                                      r"matches no streams$"):
        write_video(FRAMES, tmp_path / "v.mp4", fps=FPS, audio=source, audio_sample_rate=24000)
    assert everything(tmp_path) == []

"""The streaming writer (ltx_jax/video_writer.py): chunks written one by one make the file write_video makes of the
whole; an exception or Ctrl-C between chunks (or inside one) stops ffmpeg and leaves no file and no temporary; a
chunk of another frame size is a one-line error; the frame count announced is checked before anything is published.
The cases of a full disk, a broken file, a frame set swapped in whole and a name taken meanwhile are
tests/test_files.py's, through write_video, which is this writer given every frame at once."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ltx_jax import ffmpeg, files
from ltx_jax.video import open_video_writer, read_video, to_uint8, write_video

FRAMES = np.random.default_rng(1).random((11, 64, 96, 3)).astype(np.float32)
CHUNKS = (3, 1, 0, 7)  # an empty chunk among them: nothing to write, nothing wrong


def chunks(frames: np.ndarray):
    begin = 0
    for size in CHUNKS:
        yield frames[begin:begin + size]
        begin += size
    assert begin == len(frames)


def everything(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("ext", [".mp4", ".gif", ".png"])
def test_chunks_make_the_file_write_video_makes_of_the_whole(tmp_path, ext):
    whole = write_video(FRAMES, tmp_path / "whole" / f"v{ext}", fps=10)
    with open_video_writer(tmp_path / "streamed" / f"v{ext}", fps=10, num_frames=len(FRAMES)) as writer:
        for i, chunk in enumerate(chunks(FRAMES)):
            writer.write(chunk if i % 2 else to_uint8(chunk))  # floats and uint8 alike
    assert writer.frames_written == len(FRAMES) and writer.frame_size == (64, 96)
    assert [os.path.basename(p) for p in writer.paths] == [os.path.basename(p) for p in whole]
    if ext == ".mp4":  # H.264 of the same frames: the same decoded frames
        np.testing.assert_array_equal(read_video(writer.paths[0]), read_video(whole[0]))
    else:  # Pillow's output: the same bytes
        assert [open(p, "rb").read() for p in writer.paths] == [open(p, "rb").read() for p in whole]
    assert everything(tmp_path / "streamed") == [os.path.basename(p) for p in whole]  # no temporary left
    print(f"\n[writer] {ext}: {len(CHUNKS)} chunks -> {len(writer.paths)} file(s), as write_video of the whole")


class Stop(Exception):
    pass


@pytest.mark.parametrize("error", [Stop("the decode failed"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
@pytest.mark.parametrize("ext", [".mp4", ".png"])
def test_a_stop_between_chunks_leaves_nothing_and_kills_ffmpeg(tmp_path, ext, error):
    writer = None
    with pytest.raises(type(error)) as caught:
        with open_video_writer(tmp_path / f"v{ext}", fps=10) as writer:
            writer.write(FRAMES[:4])
            raise error
    assert caught.value is error  # the block's own exception, unchanged
    assert everything(tmp_path) == []
    if ext == ".mp4":
        assert writer._encoder._process.poll() is not None  # ffmpeg is gone
    print(f"\n[writer] {type(error).__name__} after 4 frames of {ext}: nothing left")


def test_ctrl_c_inside_a_write_leaves_nothing(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM's exception on the command line) while ffmpeg is being fed: the same."""
    real_write, calls = ffmpeg.Mp4Encoder.write, []

    def interrupted(self, frames):
        calls.append(self)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write(self, frames)

    monkeypatch.setattr(ffmpeg.Mp4Encoder, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with open_video_writer(tmp_path / "v.mp4", fps=10) as writer:
            for chunk in chunks(FRAMES):
                writer.write(chunk)
    assert everything(tmp_path) == [] and calls[0]._process.poll() is not None


def test_a_chunk_of_another_size_is_one_line(tmp_path):
    with pytest.raises(ValueError) as caught:
        with open_video_writer(tmp_path / "v.mp4", fps=10) as writer:
            writer.write(FRAMES[:2])
            writer.write(FRAMES[:2, :, :80])
    message = str(caught.value)
    print(f"\n[writer] {message}")
    assert message == (f"frames of 80x64 after frames of 96x64: every chunk written to {tmp_path / 'v.mp4'} has the "
                       "first one's size.")
    assert everything(tmp_path) == []
    with pytest.raises(ValueError, match=r"^frames must be \[F, H, W, 3\] \(or one frame \[H, W, 3\]\), got shape "
                                         r"\(2, 64, 96\)\.$"):
        with open_video_writer(tmp_path / "v.gif", fps=10) as writer:
            writer.write(FRAMES[:2, ..., 0])
    assert everything(tmp_path) == []


def test_the_announced_frame_count_is_checked_before_publishing(tmp_path):
    for written, expected in ((5, 11), (0, None)):
        with pytest.raises(OSError) as caught:
            with open_video_writer(tmp_path / "v.mp4", fps=10, num_frames=expected) as writer:
                writer.write(FRAMES[:written])
        message = str(caught.value)
        print(f"\n[writer] {message}")
        reason = "no frames were written" if not written else "5 frames were written, not the 11 announced (num_frames)"
        assert message == f"writing {tmp_path / 'v.mp4'} failed: {reason}"
        assert everything(tmp_path) == []


def test_an_encoder_failure_while_streaming_is_one_line_naming_the_output(tmp_path, monkeypatch):
    """ffmpeg dies between chunks (here: killed): the next write or the end says so, naming the final path."""
    with pytest.raises(OSError) as caught:
        with open_video_writer(tmp_path / "v.mp4", fps=10) as writer:
            writer.write(FRAMES[:3])
            writer._encoder._process.kill()
            writer._encoder._process.wait()
            for _ in range(200):  # until the pipe refuses: a few writes
                writer.write(FRAMES[:3])
    message = str(caught.value)
    print(f"\n[writer] {message}")
    assert message.startswith(f"writing {tmp_path / 'v.mp4'} failed: the encoder (ffmpeg) ") and "\n" not in message
    assert files.PARTIAL_PREFIX not in message and everything(tmp_path) == []


def test_existing_outputs_are_refused_before_any_work(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"taken")
    with pytest.raises(ValueError, match="v.mp4 already exists"):
        with open_video_writer(tmp_path / "v.mp4", fps=10):
            raise AssertionError("the block must not run")
    with pytest.raises(ValueError, match="num_frames must be a positive whole number or None, got 0"):
        with open_video_writer(tmp_path / "w.mp4", fps=10, num_frames=0):
            raise AssertionError("the block must not run")
    with open_video_writer(tmp_path / "v.mp4", fps=10, overwrite=True) as writer:
        writer.write(FRAMES[0])  # one frame [H, W, 3]
    assert read_video(tmp_path / "v.mp4").shape == (1, 64, 96, 3) and everything(tmp_path) == ["v.mp4"]

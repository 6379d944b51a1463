"""A minute-long video from the command line (tiny-random, CPU): ``generate --num_frames 1441 --prompt "a | b | c"``
writes every frame; Ctrl-C while its frames stream to the file leaves nothing; bad windows are one-line errors
before anything loads."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
from test_cli import _wait_for, _wait_or_kill, cli, run_in_process

from ltx_jax.video import read_video

MINUTE = ["--prompt", "a fox runs | a fox jumps | a fox sleeps", "--num_frames", "1441", "--noprogress"]


def test_a_minute_long_video_is_written_and_ctrl_c_while_writing_leaves_nothing(tmp_path):
    out = tmp_path / "minute.mp4"
    began = time.time()
    result = cli([*MINUTE, "--output", str(out)])
    elapsed = time.time() - began
    print(f"\n[long video cli] 1441 frames (tiny-random, CPU): {elapsed:.1f} s end to end; {result.stdout.strip()}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout and "1441 frames" in result.stdout
    assert read_video(out).shape == (1441, 64, 96, 3)

    stopped = tmp_path / "stopped.mp4"
    proc = cli([*MINUTE, "--output", str(stopped)], stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    _wait_for(proc, rb"writing ", timeout=240)  # the frames are streaming into the file
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    code = _wait_or_kill(proc, 30)
    tail = (proc.stderr.read() or b"").decode()
    assert code == 130, tail[-3000:]
    assert re.search(r"nothing was written\.$", tail.strip()), tail[-2000:]
    assert not stopped.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("args, message", [
    (["--temporal_tile_size", "85"], "error: --temporal_tile_size must be latent-aligned, 8k or 8k + 1 frames "
                                     "(e.g. 80 or 81), got 85."),
    (["--temporal_overlap", "20"], "error: --temporal_overlap must be a multiple of 8 frames smaller than the window "
                                   "(80), e.g. 24; got 20."),
    (["--temporal_tile_size", "24", "--temporal_overlap", "24"],
     "error: --temporal_overlap must be a multiple of 8 frames smaller than the window (24), e.g. 16; got 24."),
    (["--adain_factor", "2"], "error: --adain_factor must be <= 1, got 2.0."),
    (["--upsampler", "tiny-random"], "error: --upsampler does not combine with a long video"),
])
def test_bad_windows_are_one_line_errors_before_loading(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["generate", "--model", "tiny-random", "--prompt", "a | b", *args], capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if not line.startswith("usage:")]
    assert len(lines) == 1 and lines[0].startswith(message), err
    assert "loading" not in err

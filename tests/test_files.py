"""Writing files as a user relies on it (ltx_jax/files.py and every writer on it): a full disk or a failed encoder is
one error line and no file; a finished video is checked before it is published; a .png frame set is swapped in whole;
no run replaces an output that appeared while it was writing; `python -m weight_conversion convert` checks before it
loads and leaves nothing behind on failure; a bad video is one line naming it; every file follows the umask.

Cases that need a full disk mount a 64 KiB tmpfs, which needs root (the CI machine runs as root); elsewhere they skip.
Everything runs in-process on tiny inputs (no denoising: where the command line is run, its generation is stubbed)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import types

import numpy as np
import pytest

import ltx_jax.__main__ as ltx_cli
import ltx_jax.tiny_random
from ltx_jax import ffmpeg, files
from ltx_jax.video import read_video, write_video
from weight_conversion.__main__ import main as convert_main

FRAMES = np.random.default_rng(0).random((9, 64, 96, 3)).astype(np.float32)  # noise: ~53 KB as an mp4


def leftovers(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith((files.PARTIAL_PREFIX, files.ASIDE_PREFIX))]


@contextlib.contextmanager
def small_disk(folder, free_kib: int = 24):
    """A 64 KiB tmpfs at ``folder`` with about ``free_kib`` KiB free (root only; the test skips otherwise); yields
    a function that remounts it with more room."""
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a small tmpfs, and mounting one needs root (the CI machine runs as root)")
    os.makedirs(folder, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        with open(os.path.join(folder, "filler"), "wb") as f:
            f.write(b"\0" * ((64 - free_kib) * 1024))
        yield lambda size: subprocess.run(["mount", "-o", f"remount,size={size}", "tmpfs", str(folder)], check=True)
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def stub_generation(monkeypatch):
    """``generate --model tiny-random`` with its pipeline and denoising replaced by noise frames: the command's
    checks and its real writing run, in a second instead of a pipeline's 10-25 s."""
    monkeypatch.setattr(ltx_jax.tiny_random, "tiny_random_pipeline", lambda **_: types.SimpleNamespace(last_timings={}))
    monkeypatch.setattr(ltx_cli, "_pipeline_for", lambda pipe, args: pipe)
    monkeypatch.setattr(ltx_cli, "_generate", lambda pipe, args, common: FRAMES[None])


# 1. A full disk during writing: an error, no file (mp4: ffmpeg's failed trailer used to exit 0 and say "wrote").

def test_a_full_disk_is_one_error_line_and_no_file(tmp_path, monkeypatch, capsys):
    small = tmp_path / "small"
    with small_disk(small):
        for name in ("o.mp4", "o.gif", "o.png"):
            with pytest.raises(OSError) as caught:
                write_video(FRAMES, small / name)
            message = str(caught.value)
            print(message)
            assert "\n" not in message and message.startswith(f"writing {small / name.replace('.png', '_00000.png')}")
            assert "No space left on device" in message and "ffmpeg version" not in message
            assert sorted(os.listdir(small)) == ["filler"], os.listdir(small)
        stub_generation(monkeypatch)
        code = ltx_cli.main(["ltx_jax", "generate", "--model", "tiny-random", "--prompt", "fox", "--steps", "2",
                             "--output", str(small / "o.mp4"), "--noprogress", "--nocompilation_cache"])
        out, err = capsys.readouterr()
        assert code == 1 and "wrote" not in out, (code, out, err)
        print(err)
        assert err.strip().splitlines()[-2:] == [f"writing {small / 'o.mp4'}", err.strip().splitlines()[-1]], err
        last = err.strip().splitlines()[-1]  # ffmpeg's own lines (its banner, "[out#0/mp4 @ ...]") are not shown
        assert last.startswith(f"error: writing {small / 'o.mp4'} failed: the encoder (ffmpeg) failed: ") and \
            "No space left on device" in last, err
        assert sorted(os.listdir(small)) == ["filler"]


def test_a_finished_video_is_checked_before_it_is_published(tmp_path, monkeypatch):
    """An encoder that exits 0 yet leaves a file without its end (what a failed trailer leaves) or with frames
    missing: the check after encoding catches both, and nothing is published."""
    real_finish, real_write = ffmpeg.Mp4Encoder.finish, ffmpeg.Mp4Encoder.write

    def truncated(self):
        real_finish(self)
        path = os.path.join(tmp_path, next(n for n in os.listdir(tmp_path) if n.startswith(files.PARTIAL_PREFIX)),
                            "video.mp4")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)

    monkeypatch.setattr(ffmpeg.Mp4Encoder, "finish", truncated)
    with pytest.raises(OSError, match=r"^writing .*a\.mp4 failed: the written file does not open: moov atom not "
                                      r"found; Invalid data found when processing input$"):
        write_video(FRAMES, tmp_path / "a.mp4")
    monkeypatch.setattr(ffmpeg.Mp4Encoder, "finish", real_finish)
    monkeypatch.setattr(ffmpeg.Mp4Encoder, "write", lambda self, frames: real_write(self, frames[:-1]))
    with pytest.raises(OSError, match=r"^writing .*b\.mp4 failed: the written file holds 8 frames, not 9$"):
        write_video(FRAMES, tmp_path / "b.mp4")
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    assert write_video(FRAMES, tmp_path / "c.mp4") == [str(tmp_path / "c.mp4")]
    assert read_video(tmp_path / "c.mp4").shape == (9, 64, 96, 3)
    still = np.repeat(FRAMES[:1], 5, axis=0)  # Pillow merges identical frames: a still GIF holds one long frame
    assert write_video(still, tmp_path / "still.gif", fps=24) == [str(tmp_path / "still.gif")]


# 4. A .png frame set: swapped in whole.

def test_png_frames_are_swapped_in_whole(tmp_path, monkeypatch):
    import PIL.Image

    out = tmp_path / "f.png"
    first = write_video(FRAMES, out)
    before = {name: open(name, "rb").read() for name in first}
    real_save, calls = PIL.Image.Image.save, []

    def failing_save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="No space left on device"):
        write_video(1 - FRAMES, out, overwrite=True)
    monkeypatch.undo()
    assert {name: open(name, "rb").read() for name in first} == before  # the old set, whole
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(n) for n in first)
    shorter = write_video(1 - FRAMES[:5], out, overwrite=True)  # a shorter rerun: no frame of the old set is left
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(n) for n in shorter) and len(shorter) == 5
    os.remove(shorter[0])
    with pytest.raises(ValueError, match=r"f_00001\.png \(and 3 more frames\) already exists"):
        write_video(FRAMES, out)  # frames of another set with this name: refused, not mixed
    with pytest.raises(ValueError, match=r"f_00001\.png \(and 3 more frames\) already exists"):
        write_video(FRAMES[:1], out)  # ... whatever the new count


# 8. No run replaces an output that appeared while it was writing.

def test_an_output_that_appears_meanwhile_is_never_replaced(tmp_path, monkeypatch):
    import PIL.Image

    out = tmp_path / "race.gif"
    real_save = PIL.Image.Image.save

    def other_run_finishes_first(self, fp, *args, **kwargs):
        out.write_bytes(b"the other run's video")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image.Image, "save", other_run_finishes_first)
    with pytest.raises(FileExistsError, match="race.gif already exists"):
        write_video(FRAMES, out)
    monkeypatch.undo()
    assert out.read_bytes() == b"the other run's video" and leftovers(tmp_path) == []

    # The same for a file where hard links are not supported (an exclusive create claims the name), and a folder.
    def no_links(src, dst, **_):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with files.atomic_file(tmp_path / "fresh.bin") as tmp:
        open(tmp, "wb").write(b"new")
    assert (tmp_path / "fresh.bin").read_bytes() == b"new"
    with pytest.raises(FileExistsError):
        with files.atomic_file(tmp_path / "fresh.bin") as tmp:
            (tmp_path / "fresh.bin").write_bytes(b"theirs")
    assert (tmp_path / "fresh.bin").read_bytes() == b"theirs"
    with pytest.raises(FileExistsError):
        with files.atomic_dir(tmp_path / "ckpt") as tmp:
            (tmp_path / "ckpt").mkdir()
            (tmp_path / "ckpt" / "theirs").write_text("x")
    assert os.listdir(tmp_path / "ckpt") == ["theirs"] and leftovers(tmp_path) == []
    # With overwrite, a folder is replaced only once the new one is complete; a failure keeps the old one.
    with pytest.raises(OSError, match=r"writing .*ckpt failed: disk full"):
        with files.atomic_dir(tmp_path / "ckpt", overwrite=True) as tmp:
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path / "ckpt") == ["theirs"] and leftovers(tmp_path) == []
    with files.atomic_dir(tmp_path / "ckpt", overwrite=True) as tmp:
        open(os.path.join(tmp, "ours"), "w").write("y")
    assert os.listdir(tmp_path / "ckpt") == ["ours"] and leftovers(tmp_path) == []


# 5. python -m weight_conversion convert: one-line errors, checks before loading, nothing left by a failed write.

@pytest.fixture(scope="module")
def orbax_source(tmp_path_factory) -> str:
    """The tiny-random transformer as an Orbax checkpoint (a source the converter reads, no torch needed)."""
    import jax

    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from ltx_jax.tiny_random import TINY_TRANSFORMER
    from weight_conversion.transformer import save_transformer_orbax

    module = LTXVideoTransformer3DModel(TINY_TRANSFORMER)
    path = str(tmp_path_factory.mktemp("convert") / "source")
    save_transformer_orbax(module, init_params(module, jax.random.PRNGKey(0)), path)
    return path


def test_convert_errors_are_one_line_before_loading(orbax_source, tmp_path, monkeypatch, capsys):
    import weight_conversion.transformer

    def no_loading(*args, **kwargs):
        raise AssertionError("the source was loaded before the arguments were checked")

    monkeypatch.setattr(weight_conversion.transformer, "load_transformer", no_loading)
    (tmp_path / "taken").mkdir()
    cases = [
        ([str(tmp_path / "missing"), str(tmp_path / "out")], f"error: {tmp_path / 'missing'} does not exist; pass a "
                                                             "diffusers folder, a Lightricks .safetensors file or an "
                                                             "Orbax folder."),
        ([orbax_source, str(tmp_path / "taken")], f"error: {tmp_path / 'taken'} already exists; choose a new "
                                                  "destination, or replace it with --overwrite."),
        ([orbax_source, str(tmp_path / "out"), "--component", "vae", "--weights", "int8"],
         "error: --weights applies to the transformer and the text_encoder, not the vae."),
        ([orbax_source, str(tmp_path / "out"), "--component", "vae"], "error: VAEConfig: unknown config keys"),
        ([orbax_source, "/proc/ltx_jax_no_such_folder/out"], "error: cannot write /proc/ltx_jax_no_such_folder/out: "
                                                             "the folder /proc is not writable"),
        ([orbax_source, orbax_source, "--overwrite"], f"error: {orbax_source} holds the source {orbax_source}"),
    ]
    for args, message in cases:
        code = convert_main(["convert", *args])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(message), (args, err)
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_convert_leaves_nothing_behind_on_a_full_disk(orbax_source, tmp_path, monkeypatch, capsys):
    from weight_conversion import load_transformer
    import weight_conversion.__main__ as convert_cli

    small = tmp_path / "small"
    with small_disk(small, free_kib=60) as remount:
        dst = small / "converted"
        # Too little room for the parameters: refused after loading, before writing.
        assert convert_main(["convert", orbax_source, str(dst)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot write {dst}: it needs about 0.1 MiB and {small} has ") and \
            len(err.strip().splitlines()) == 1, err
        # A disk that fills while writing (the check passed): the write fails, and leaves nothing.
        monkeypatch.setattr(convert_cli, "check_free_space", lambda path, nbytes: None)
        assert convert_main(["convert", orbax_source, str(dst)]) == 1
        err = capsys.readouterr().err
        print(err.strip().splitlines()[-1])
        assert err.strip().splitlines()[-1].startswith(f"error: writing {dst} failed: ")
        assert sorted(os.listdir(small)) == ["filler"]
        remount("16m")  # room again: the same command succeeds, nothing of the failed run in its way
        with umask(0o027):
            assert convert_main(["convert", orbax_source, str(dst)]) == 0, capsys.readouterr().err
        assert sorted(os.listdir(small)) == ["converted", "filler"]
        assert oct(os.stat(dst).st_mode & 0o777) == oct(0o750)  # the umask's, not mkdtemp's 0700
        load_transformer(dst)
        # --overwrite replaces it (once the new one is complete)
        assert convert_main(["convert", orbax_source, str(dst), "--overwrite", "--dtype", "bfloat16"]) == 0
        assert sorted(os.listdir(small)) == ["converted", "filler"]


# 9. A bad video is one line naming the file; every file follows the umask.

def test_a_bad_video_is_one_line_naming_it(tmp_path, capsys):
    good = tmp_path / "good.mp4"
    write_video(FRAMES, good)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "empty.gif").write_bytes(b"")
    expected = {"cut.mp4": "moov atom not found; Invalid data found when processing input",
                "text.mp4": "moov atom not found; Invalid data found when processing input",
                "empty.gif": "empty"}
    for name, reason in expected.items():
        with pytest.raises(ValueError) as caught:
            read_video(tmp_path / name)
        message = str(caught.value)
        print(message)
        assert "\n" not in message and "ffmpeg version" not in message, message
        assert message.startswith(f"cannot read the video {tmp_path / name}: ")
        if reason != "empty":
            assert message.endswith(f": {reason}.")
    code = ltx_cli.main(["ltx_jax", "generate", "--model", "tiny-random", "--prompt", "fox", "--output",
                         str(tmp_path / "o.mp4"), "--video", str(cut), "--denoise_strength", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"error: cannot read the video {cut}: moov atom not found; Invalid data found when processing input."], err


def test_latents_loras_and_folders_follow_the_umask(tmp_path):
    from ltx_jax.training.data import Bucket, preprocess
    from ltx_jax.training.lora import export_lora

    clips = tmp_path / "clips"
    clips.mkdir()
    write_video(FRAMES, clips / "clip.mp4")
    (clips / "clip.txt").write_text("a fox")

    class Pipe:  # what preprocess asks of a pipeline: latents and a prompt's embeddings
        def encode_video(self, video, key):
            return np.zeros((1, 2, 2, 3, 4), np.float32)

        def encode_prompt(self, prompt, **_):
            return np.zeros((1, 8, 16), np.float32), np.ones((1, 8), np.int32), None, None

    trainable = {"proj_in": {"a": np.ones((4, 2), np.float32), "b": np.ones((2, 3), np.float32)}}
    with umask(0o027):
        result = preprocess(Pipe(), str(clips), str(tmp_path / "latents"), [Bucket(96, 64, 9)], progress=False)
        lora = export_lora(trainable, {}, tmp_path / "lora" / "adapter.safetensors", rank=2, alpha=2.0)
        with files.atomic_dir(tmp_path / "folder") as tmp:
            open(os.path.join(tmp, "inside"), "w").write("x")
    assert len(result["written"]) == 1, result
    modes = {name: oct(os.stat(path).st_mode & 0o777) for name, path in
             [("latents", result["written"][0]), ("lora", lora), ("folder", tmp_path / "folder")]}
    assert modes == {"latents": oct(0o640), "lora": oct(0o640), "folder": oct(0o750)}, modes
    assert leftovers(tmp_path / "latents") == [] and leftovers(tmp_path / "lora") == []

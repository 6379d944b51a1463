"""Several processes on one machine: ``python -m ltx_jax.launch --processes 2 --cpu_devices 2`` (a mesh of 4 CPU devices
over 2 processes, gloo collectives) for generation, loading, training, and the faults (a killed process, a wrong
coordinator, a process count that does not match). Every run is a subprocess with a timeout, so a hang fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = [sys.executable, "-m", "ltx_jax.launch", "--processes", "2", "--cpu_devices", "2", "--heartbeat_timeout",
          "10", "--init_timeout", "60"]
TIMEOUT_S = 150
VIDEO = ["--height", "64", "--width", "96", "--num_frames", "9", "--noprogress"]


def _launch(args: list[str], **kwargs) -> subprocess.Popen:
    """The launcher, its output piped."""
    return subprocess.Popen([*LAUNCH, "--", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **kwargs)


def _finish(proc: subprocess.Popen, timeout: float = TIMEOUT_S) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the launcher hung past {timeout} s: {err.decode()[-3000:]}")
    return proc.returncode, out.decode(), err.decode()


def _frames(prefix: str) -> np.ndarray:
    import PIL.Image

    folder, stem = os.path.split(prefix)
    names = sorted(n for n in os.listdir(folder) if n.startswith(stem + "_") and n.endswith(".png"))
    return np.stack([np.asarray(PIL.Image.open(os.path.join(folder, n))) for n in names]).astype(np.int32)


def test_generate_over_two_processes_writes_one_process_frames(tiny_reference, tmp_path):
    """--mesh data=2,fsdp=2 over 2 processes x 2 devices: the frames of one process on one device (uint8 PNGs,
    lossless), written by process 0 alone; the console shows process 0's lines once (the other is quiet)."""
    from ltx_jax.__main__ import main

    common = ["generate", "--model", tiny_reference["root"], "--prompt", "a fox", "--steps", "3", *VIDEO]
    proc = _launch([*common, "--mesh", "data=2,fsdp=2", "--output", str(tmp_path / "two" / "f.png")])
    assert main(["ltx_jax", *common, "--output", str(tmp_path / "one" / "f.png")]) == 0  # meanwhile, here
    code, out, err = _finish(proc)
    assert code == 0, err[-3000:]
    assert "process group: 2 processes, 4 devices" in err
    assert out.count("timings:") == 1 and out.count("wrote ") == 1 and err.count("generating ") == 1, out + err
    assert "Gloo" not in out + err and "Traceback" not in err
    two, one = _frames(str(tmp_path / "two" / "f")), _frames(str(tmp_path / "one" / "f"))
    assert two.shape == one.shape == (9, 64, 96, 3)
    assert sorted(os.listdir(tmp_path / "two")) == [f"f_{i:05d}.png" for i in range(9)]  # no temporaries left
    differ = float((two != one).mean())
    report("generate, 2 processes vs 1: share of uint8 values that differ (by 1 at most)", differ, 1e-3)
    assert np.abs(two - one).max() <= 1 and differ <= 1e-3


_LOAD = """
import json, os, sys
from ltx_jax import distributed
distributed.initialize()
import jax, numpy as np, jax.numpy as jnp
from ltx_jax.sharding import ShardingPlan
from weight_conversion import load_transformer
from weight_conversion.mapping import HOST_READS

folder, out = sys.argv[1], sys.argv[2]
_, params = load_transformer(folder, jnp.float32, sharding=ShardingPlan.create("fsdp=4"))
read = HOST_READS.bytes
_, whole = load_transformer(folder, jnp.float32)  # this process alone, on its first device
worst = max(float(np.abs(np.asarray(s.data) - np.asarray(w)[s.index]).max())
            for p, w in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(whole))
            for s in p.addressable_shards)
with open(os.path.join(out, f"process_{jax.process_index()}.json"), "w") as f:
    json.dump({"read": read, "worst": worst, "devices": len(jax.devices())}, f)
"""


def test_loading_reads_only_each_process_shards(tiny_reference, tmp_path):
    """fsdp=4 over 2 processes: each process reads only the slices its devices hold (about half of each sharded
    tensor), never the whole file, and the shards equal the tensors loaded whole."""
    folder = os.path.join(tiny_reference["root"], "transformer")
    code, out, err = _finish(_launch([sys.executable, "-c", _LOAD, folder, str(tmp_path)]))
    assert code == 0, err[-3000:]
    size = os.path.getsize(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    for index in range(2):
        with open(tmp_path / f"process_{index}.json") as f:
            got = json.load(f)
        assert got["devices"] == 4 and got["worst"] == 0.0
        report(f"loading, process {index}: bytes read / file size", got["read"] / size, 0.6)
        assert got["read"] < 0.6 * size


def _metrics(run) -> dict[int, dict]:
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return {r["step"]: r for r in map(json.loads, f)}


def test_train_over_two_processes_matches_one_saves_resumes_and_stops_on_sigterm(tiny_reference, tmp_path):
    """--mode full --mesh fsdp=4 over 2 processes: SIGTERM to the launcher stops both at the same step, with the
    checkpoint of that step (Orbax's multi-host save); the same command resumes over 2 processes; every loss equals
    one process's uninterrupted run within 1e-6 (relative)."""
    from safetensors.numpy import save_file

    from ltx_jax.__main__ import main
    from ltx_jax.tiny_random import TINY_TRANSFORMER

    latents = tmp_path / "latents"  # two clips as preprocess writes them (random latents and prompt embeddings)
    os.makedirs(latents)
    rng = np.random.default_rng(0)
    for name in "ab":
        save_file({"latents": rng.standard_normal((2, 2, 3, TINY_TRANSFORMER.in_channels)).astype(np.float32),
                   "prompt_embeds": rng.standard_normal((16, TINY_TRANSFORMER.caption_channels)).astype(np.float32),
                   "prompt_attention_mask": (np.arange(16) < 9).astype(np.int32)},
                  str(latents / f"{name}.latents.safetensors"),
                  metadata={"grid": "[2, 2, 3]", "fps": "24", "caption": name, "video": f"{name}.mp4",
                            "bucket": "96x64x9"})
    two, steps = tmp_path / "two", 16  # the same --steps throughout: the learning rate's schedule depends on it
    train = ["train", "--data", str(latents), "--model", tiny_reference["root"], "--mode", "full", "--batch_size", "2",
             "--warmup_steps", "1", "--steps", str(steps), "--noprogress"]
    proc = _launch([*train, "--output", str(two), "--mesh", "fsdp=4", "--checkpoint_every", "1000"])
    began = time.time()
    while not (two / "metrics.jsonl").exists() or len((two / "metrics.jsonl").read_text().splitlines()) < 2:
        assert proc.poll() is None and time.time() - began < TIMEOUT_S, proc.communicate()[1].decode()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    code, _, err = _finish(proc)
    assert code == 143, err[-3000:]
    stopped = max(_metrics(two))
    assert err.count("terminated (SIGTERM): stopped at step") == 1 and f"step_{stopped}" in err, err[-3000:]
    assert os.listdir(two / "checkpoints") == [f"step_{stopped}"]
    proc = _launch([*train, "--output", str(two), "--mesh", "fsdp=4"])
    assert main(["ltx_jax", *train, "--output", str(tmp_path / "one")]) == 0  # meanwhile
    code, out, err = _finish(proc)
    assert code == 0 and f"resumed from {two / 'checkpoints' / f'step_{stopped}'}" in out, err[-3000:]
    assert sorted(os.listdir(two / "checkpoints")) == sorted([f"step_{stopped}", f"step_{steps}"])
    assert os.path.exists(two / "transformer")
    ours, reference = _metrics(two), _metrics(tmp_path / "one")
    assert sorted(ours) == sorted(reference) == list(range(1, steps + 1))
    worst = max(abs(ours[s]["loss"] - reference[s]["loss"]) / abs(reference[s]["loss"]) for s in ours)
    report("train, 2 processes (SIGTERM, resumed) vs 1: max relative loss difference", worst, 1e-6)
    assert worst <= 1e-6


def _children(pid: int) -> dict[int, int]:
    """{process index: pid} of the launcher's children."""
    found = {}
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        for child in map(int, f.read().split()):
            with open(f"/proc/{child}/environ", "rb") as env:
                for item in env.read().split(b"\0"):
                    if item.startswith(b"JAX_PROCESS_ID="):
                        found[int(item.split(b"=")[1])] = child
    return found


def test_a_killed_process_stops_the_others_at_once_with_one_line(tiny_reference, tmp_path):
    """SIGKILL to process 1 while the processes denoise: the launcher names it in one line, the other process
    stops at once (its watchdog pipe: even inside a collective), and nothing is written."""
    out_dir = tmp_path / "out"
    proc = _launch(["generate", "--model", tiny_reference["root"], "--prompt", "a fox", "--steps", "2000",
                    "--mesh", "data=2,fsdp=2", "--output", str(out_dir / "f.mp4"), *VIDEO])
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.decode() for line in proc.stderr), daemon=True)
    reader.start()
    began = time.time()
    while not any(line.startswith("generating ") for line in lines):
        assert proc.poll() is None and time.time() - began < TIMEOUT_S, "".join(lines)[-3000:]
        time.sleep(0.2)
    time.sleep(3.0)  # into the denoising loop's collectives
    victim = _children(proc.pid)[1]
    os.kill(victim, signal.SIGKILL)
    killed = time.time()
    try:
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    took = time.time() - killed
    reader.join(5)
    err = "".join(lines)
    said = [line.strip() for line in lines if line.startswith("launch:")]
    assert said == [f"launch: process 1 (pid {victim}) was killed by SIGKILL; stopping the other 1 process(es)"], err
    assert code == 137 and "Traceback" not in err and took < 10, (code, took, err[-3000:])
    assert not os.path.exists(out_dir) or os.listdir(out_dir) == []
    report("a killed process: seconds until every process ended", took, 10)


def test_a_wrong_coordinator_or_process_count_is_one_line(tmp_path):
    """Nothing at the coordinator's address, or fewer processes than the count: one line after the join timeout
    (LTX_JAX_INIT_TIMEOUT), exit 69, instead of a hang or JAX's fatal error."""
    from ltx_jax.launch import free_port

    runs = {}
    for name, address, index in (("address", "127.0.0.1:1", 1), ("count", f"127.0.0.1:{free_port()}", 0)):
        env = dict(os.environ, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(index),
                   LTX_JAX_INIT_TIMEOUT="2", JAX_PLATFORMS="cpu")
        runs[name] = subprocess.Popen([sys.executable, "-m", "ltx_jax", "generate", "--model", "tiny-random",
                                       "--prompt", "x", "--output", str(tmp_path / f"{name}.mp4")], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for name, proc in runs.items():
        code, _, err = _finish(proc, timeout=60)
        lines = err.strip().splitlines()
        assert code == 69 and len(lines) == 1, err[-3000:]
        expected = ("nothing answers at 127.0.0.1:1" if name == "address" else
                    "not all 2 processes arrived: check that every process was started with the same process count")
        assert lines[0].startswith("error: process ") and expected in lines[0], lines
    assert os.listdir(tmp_path) == []


def test_the_same_error_in_every_process_is_said_once(tmp_path):
    """A bad flag fails every process the same way: process 0's line, once, and its exit code."""
    code, out, err = _finish(_launch(["generate", "--model", "tiny-random", "--prompt", "x", "--height", "7",
                                      "--output", str(tmp_path / "never.mp4")]), timeout=60)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "height" in errors[0], err[-3000:]
    assert "launch:" not in err and "process 1:" not in err and os.listdir(tmp_path) == []

"""Shared fixtures: tiny random diffusers models saved as checkpoints in every layout we load.

References are built once per session; every test compares against the PyTorch reference, never against
numbers saved from an earlier run of our own code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLLTXVideo as TorchVAE
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers import LTXPipeline as TorchLTXPipeline
from diffusers import LTXVideoTransformer3DModel as TorchTransformer
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import T5Config as TorchT5Config
from transformers import T5EncoderModel as TorchT5

# Tests prove numerics, not speed: LLVM's cheapest code generation compiles the tiny programs about a quarter faster
# (the suite's time is mostly XLA compiling) and computes the same IEEE float32 operations (no fast-math), so every
# parity bound holds as measured. Set before any test initialises a backend; command-line children and the
# multi-device children (which add their device count to these flags) inherit it. Benchmarks never see it.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
# One PyTorch thread per process: the references' ops are tiny, and two test workers on two cores whose OpenMP threads
# spin-wait for each other ran 9% slower. XLA keeps its thread pool (one thread each measured 30% slower).
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"  # the children: the original package's runner, the command line


def pytest_configure(config):
    """One compilation cache folder for the whole session (``LTX_JAX_CACHE_DIR``, which the command line's
    ``--compilation_cache`` uses): a command-line child reads back the programs an earlier child compiled (the
    tiny-random pipeline, its params' init: 26 s cold, 8 s warm). A fresh folder, so the suite never reads or fills
    the user's cache; test workers (xdist) and children inherit it."""
    if "LTX_JAX_CACHE_DIR" not in os.environ:
        os.environ["LTX_JAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="ltx_jax_test_cache_")
        config._ltx_jax_cache_dir = os.environ["LTX_JAX_CACHE_DIR"]


# The files by their time on the CI machine, longest first (pytest-xdist's --dist loadfile gives files to the
# workers in collection order): the long ones start at once and the short ones fill in around them, instead of one
# worker running a long file alone at the end. The first three are children of their own (the 8-device sharding
# cases, the CPU run_all, the multi-process runs), taking minutes.
SLOW_FILES_FIRST = ("test_sharding.py", "test_run_all.py", "test_multiprocess.py", "test_cli.py", "test_outputs.py",
                    "test_vae.py", "test_multi_scale.py", "test_training.py", "test_ltx2_cli.py", "test_stg.py",
                    "test_dry_run.py", "test_long_video_cli.py", "test_structure.py", "test_step_cache.py",
                    "test_original_reference.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        name = os.path.basename(str(item.fspath))
        return SLOW_FILES_FIRST.index(name) if name in SLOW_FILES_FIRST else len(SLOW_FILES_FIRST)

    items.sort(key=rank)  # stable: the other files, and each file's tests, keep their order


def pytest_unconfigure(config):
    folder = getattr(config, "_ltx_jax_cache_dir", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


# Odd sizes on purpose: width 16 (2 heads x 8) is not a multiple of 6, so the RoPE padding path runs.
TINY_TRANSFORMER = dict(
    in_channels=5,
    out_channels=7,
    num_attention_heads=2,
    attention_head_dim=8,
    cross_attention_dim=16,
    num_layers=3,
    caption_channels=11,
)


def randomize_(module: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    """Perturbs every parameter so that no weight keeps its (often zero or one) initial value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return module.eval()


NATIVE_RENAMES = {"proj_in": "patchify_proj", "time_embed": "adaln_single", "norm_q": "q_norm", "norm_k": "k_norm"}


def to_native_key(key: str) -> str:
    for new, old in NATIVE_RENAMES.items():
        key = key.replace(new, old)
    return "model.diffusion_model." + key


def write_single_file(model: TorchTransformer, path: str, with_config: bool = True) -> str:
    """Writes a Lightricks-style single file: native key names, a few VAE keys, config in the metadata."""
    tensors = {to_native_key(k): v.contiguous() for k, v in model.state_dict().items()}
    tensors["vae.decoder.conv_in.conv.weight"] = torch.zeros(3, 3, 1, 1, 1)  # belongs to the VAE; must be ignored
    metadata = None
    if with_config:
        cfg = dict(model.config)
        native = {k: cfg[k] for k in ("in_channels", "out_channels", "num_attention_heads", "attention_head_dim",
                                      "cross_attention_dim", "num_layers", "caption_channels", "norm_eps",
                                      "attention_bias", "activation_fn", "norm_elementwise_affine")}
        native.update({"_class_name": "Transformer3DModel", "qk_norm": "rms_norm", "positional_embedding_type": "rope",
                       "positional_embedding_theta": 10000.0, "positional_embedding_max_pos": [20, 2048, 2048],
                       "timestep_scale_multiplier": 1000, "use_tpu_flash_attention": False})
        metadata = {"config": json.dumps({"transformer": native, "vae": {"_class_name": "CausalVideoAutoencoder"}})}
    save_file(tensors, path, metadata=metadata)
    return path


FP8_E4M3_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448


def write_fp8_single_file(model: TorchTransformer, path: str, layout: str = "lightricks") -> dict:
    """The tiny transformer as a Lightricks fp8 single file: every block attention / feed-forward Linear weight cast
    to float8_e4m3fn as LTX-Video-Q8-Kernels' convert_weights.py does (no scale), or with ``layout="scaled"`` half of
    them with a ComfyUI per-tensor ``scale_weight`` (plus its ``scale_input``) and half with a per-channel
    ``weight_scale``. Returns the torch state dict of the weights the file means (fp8 upcast times scale)."""
    write_single_file(model, path)
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    meant = {}
    for i, key in enumerate(sorted(tensors)):
        w = tensors[key]
        if not (".transformer_blocks." in key and (".attn" in key or ".ff." in key) and w.ndim == 2):
            continue
        base = key[: -len("weight")]
        if layout == "lightricks":
            scale = torch.ones(())
        elif i % 2:
            scale = w.abs().max() / FP8_E4M3_MAX
            tensors[base + "scale_weight"], tensors[base + "scale_input"] = scale.clone(), torch.ones(())
        else:
            scale = w.abs().amax(1) / FP8_E4M3_MAX
            tensors[base + "weight_scale"] = scale.clone()
        q = (w / (scale[:, None] if scale.ndim else scale)).to(torch.float8_e4m3fn)
        tensors[key] = q
        meant[key] = q.float() * (scale[:, None] if scale.ndim else scale)
    save_file(tensors, path, metadata=metadata)
    return meant


@pytest.fixture(scope="session")
def torch_transformer() -> TorchTransformer:
    torch.manual_seed(0)
    return randomize_(TorchTransformer(**TINY_TRANSFORMER), seed=1)


@pytest.fixture(scope="session")
def transformer_checkpoints(torch_transformer, tmp_path_factory) -> dict[str, str]:
    """The tiny transformer as a diffusers folder, a sharded diffusers folder and a Lightricks single file."""
    root = tmp_path_factory.mktemp("transformer_ckpts")
    folder = os.path.join(root, "diffusers")
    torch_transformer.save_pretrained(folder)
    sharded = os.path.join(root, "sharded")
    torch_transformer.save_pretrained(sharded, max_shard_size="20KB")
    single = write_single_file(torch_transformer, os.path.join(root, "ltxv-tiny.safetensors"))
    return {"diffusers": folder, "sharded": sharded, "single_file": single}


def build_tiny_reference(root, vae_config=None) -> dict:
    """Tiny random diffusers components (ltx_jax.tiny_random's configs; ``vae_config`` replaces the VAE's) saved as a
    diffusers-layout folder under ``root``, plus the torch ``LTXPipeline`` over them: {"root", "pipe"}."""
    from ltx_jax.pipelines import write_model_index
    from ltx_jax.releases import LTX_SCHEDULER
    from ltx_jax.text_encoding import load_tokenizer
    from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER, TINY_VAE, write_tiny_tokenizer

    vae_config = vae_config or TINY_VAE
    torch.manual_seed(0)
    transformer = randomize_(TorchTransformer(**dataclasses.asdict(TINY_TRANSFORMER)), seed=11)
    vae = randomize_(TorchVAE(**dataclasses.asdict(vae_config)), seed=12, scale=0.05)
    with torch.no_grad():  # non-trivial latent statistics, so denormalisation is exercised
        vae.latents_mean.copy_(torch.linspace(-0.2, 0.3, vae_config.latent_channels))
        vae.latents_std.copy_(torch.linspace(0.8, 1.3, vae_config.latent_channels))
        # A posterior this sharp (log-variance -100, clamped to -30: std 3e-7) makes the VAE's sampling of encoded
        # images deterministic, so conditioning matches diffusers without sharing its random draws.
        vae.encoder.conv_out.conv.weight[-1] = 0.0
        vae.encoder.conv_out.conv.bias[-1] = -100.0
    t5 = TorchT5(TorchT5Config(**dataclasses.asdict(TINY_T5))).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(LTX_SCHEDULER))
    root = os.fspath(root)
    transformer.save_pretrained(os.path.join(root, "transformer"))
    vae.save_pretrained(os.path.join(root, "vae"))
    t5.save_pretrained(os.path.join(root, "text_encoder"))
    write_tiny_tokenizer(os.path.join(root, "tokenizer"))
    scheduler.save_pretrained(os.path.join(root, "scheduler"))
    write_model_index(root)
    tokenizer = load_tokenizer(os.path.join(root, "tokenizer"))
    pipe = TorchLTXPipeline(scheduler=scheduler, vae=vae, text_encoder=t5, tokenizer=tokenizer, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return {"root": root, "pipe": pipe}


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory) -> dict:
    """The tiny random pipeline (32x VAE) as a diffusers folder and as diffusers' LTXPipeline."""
    return build_tiny_reference(tmp_path_factory.mktemp("tiny_ltx"))


@contextlib.contextmanager
def compile_counter():
    """Yields a list that collects the backend compilations run inside the block."""
    import jax

    compiles = []

    def listener(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def psnr(ours, ref) -> float:
    """PSNR in dB of frames in [0, 1]."""
    mse = float(np.mean((np.asarray(ours, np.float64) - np.asarray(ref, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


_MEASURED: list[tuple[str, float, float, bool]] = []  # the parity table of the process that prints the summary
_PENDING: list[tuple[str, float, float, bool]] = []  # measured by the test running in this process, not yet reported
PARITY_PROPERTY = "ltx_jax_parity"


def report(name: str, measured: float, tolerance: float, *, at_least: bool = False) -> None:
    """Prints a measured error (shown with -s) and lists it in the end-of-run parity table (always shown).

    ``at_least=True`` is for figures where higher is better (PSNR): the bound is then a minimum. The figure travels
    in the test's report, so the table is whole when the tests run in several worker processes (pytest-xdist).
    """
    bound = "minimum" if at_least else "tolerance"
    print(f"\n[{name}] measured {measured:.3e} ({bound} {tolerance:.3g})")
    _PENDING.append((name, float(measured), float(tolerance), at_least))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Puts the figures a test (or a fixture it tore down) measured into its report."""
    outcome = yield
    if _PENDING:
        outcome.get_result().user_properties.append((PARITY_PROPERTY, list(_PENDING)))
        _PENDING.clear()


def pytest_runtest_logreport(report):
    """Collects the figures from the reports, in the process that prints the summary (the only one without xdist)."""
    for name, value in report.user_properties:
        if name == PARITY_PROPERTY:
            _MEASURED.extend(tuple(row) for row in value)


def pytest_terminal_summary(terminalreporter):
    if not _MEASURED:
        return
    terminalreporter.section("measured parity errors")
    for name, measured, bound, at_least in _MEASURED:
        ok = measured >= bound if at_least else measured <= bound
        relation = ">=" if at_least else "<="
        terminalreporter.write_line(f"{name:<62} {measured:10.3e}  {relation} {bound:7.3g}  {'ok' if ok else 'FAILED'}")


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def interrupt_at(start, moment: float, what: str) -> tuple[int, str]:
    """Starts a process (``start()`` -> Popen with stderr piped), sends it SIGINT after ``moment`` seconds, and
    returns (exit status, stderr), checked to be a clean interrupt (``ended_by_interrupt``)."""
    import signal
    import time

    began = time.time()
    proc = start()
    time.sleep(moment)
    proc.send_signal(signal.SIGINT)
    err = ended_by_interrupt(proc, f"{what}] SIGINT at {moment} s", began)
    return proc.returncode, err


def ended_by_interrupt(proc, what: str, began: float, timeout: float = 120) -> str:
    """Waits for an interrupted process and returns its stderr, checked to be a clean interrupt: exit 130, no
    traceback, nothing swallowed ("Exception ignored")."""
    import time

    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    err = err.decode()
    print(f"\n[{what}: exit {proc.returncode} after {time.time() - began:.1f} s; {err.strip().splitlines()[-1:]}")
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    return err

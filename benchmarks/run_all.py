#!/usr/bin/env python3
"""One command that checks the GPU-only paths and times every component against diffusers, in one run.

    python benchmarks/run_all.py                         # backend detected: CUDA -> bf16 at full sizes, CPU -> small
    python benchmarks/run_all.py --sections transformer,vae --out /tmp/run.json
    python benchmarks/run_all.py --list                  # the sections and the sizes each backend uses
    benchmarks/run_all.sh [--wheels DIR] [ARGS...]       # on a fresh GPU machine (offline wheel install, env)

Sections, run in this order, each a function of one ``Sizes`` (every size and dtype of a CPU or GPU run is in
``CPU_SIZES`` / ``GPU_SIZES`` below, so a GPU run changes only sizes and dtypes, never code):

  matmul_peak             the card's measured matmul rate in the run dtype (every TFLOP/s is also given as a
                          fraction of it), and torch's on the same card
  attention_cudnn_vs_xla  transformer (2B width, 4 layers, 9x32x32 tokens, right-padded text masks of real prompt
                          lengths): the default attention path (cuDNN flash attention on CUDA in bf16) against the
                          XLA path and a float32 XLA reference; the compiled HLO must hold cuDNN's fused attention
                          custom call (``__cudnn$fmha*``) on GPU and none on CPU (there the cuDNN part is skipped)
  pipeline_vs_cpu_fp32    a small-width pipeline (text encoder, 8-step CFG denoising loop, VAE decode): bf16 (and
                          float32) on the accelerator against float32 on the CPU backend with the same params (PSNR)
  transformer             forward pass at each latent shape, against diffusers (same weights), analytic FLOPs;
                          compile time with 4 and 28 layers (blocks are scanned)
  text_encoder            T5 (XXL on GPU) encode, masked and unmasked, against transformers on the same card
  scheduler               Euler step and per-token step, against diffusers' FlowMatchEulerDiscreteScheduler
  vae                     0.9.5 VAE decode tiled and untiled against diffusers (same weights), per-case peak memory
                          (out-of-memory is caught per case), compiled memory of tiled decode for F and 2F frames
  pipeline                2B + 0.9.5 VAE + T5-XXL with random weights (GPU), 768x512x121, 8 distilled steps: stage
                          times (first call and later calls), FLOPs, against diffusers' LTXPipeline

Every section runs in its own process (``--isolate process``, the default): per-section peak device memory is that
process's, an out-of-memory or a crash ends one section only, and a section that overruns its share of the time
budget is stopped with what it measured so far. A failing section records its traceback and the run goes on.
The JSON (``--out``) is rewritten atomically after every change; the markdown table is appended to
``--results-md`` at the end (also on Ctrl-C / SIGTERM / budget exhaustion), and a short summary table is printed
last. torch, diffusers and transformers are imported lazily per section: when one is missing, only the comparisons
that need it are marked skipped, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

# Must be set before JAX initialises a GPU backend: JAX and torch share the card within a section (JAX would
# otherwise take 75% of it up front), and large decodes need more than JAX's default 75% cap.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

SCHEMA = 1
PROMPT = "A red fox trots through fresh snow in a pine forest, morning light, the camera tracking alongside."
NEGATIVE_PROMPT = "blurry, low quality, distorted"


# ==================================================================================================== sizes


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every size, dtype and repeat count of one kind of run. CPU_SIZES and GPU_SIZES differ only in values.

    Component configs are (source, overrides): source is a preset name of ltx_jax.configs (or "tiny" for
    ltx_jax.tiny_random's), overrides are field replacements.
    """

    name: str
    dtype: str  # compute and parameter dtype of every timed section
    warmup: int
    repeats: int
    budget_s: float | None  # default wall-clock budget of the whole run (None: unbounded)
    # matmul_peak
    matmul_n: int
    matmul_inner: int  # back-to-back calls per timed sample (keeps the GPU busy between host syncs)
    matmul_repeats: int
    # transformer (attention check and benchmark)
    transformer: tuple[str, dict]
    transformer_layers: int
    transformer_shapes: tuple[tuple[int, int, int], ...]
    transformer_compile_layers: tuple[int, int]
    text_tokens: int
    attention_shape: tuple[int, int, int]
    attention_text_lengths: tuple[int, ...]  # valid tokens per batch row (right padded), as real prompts give
    # VAE
    vae: tuple[str, dict]
    vae_latent: tuple[int, int, int]  # latent frames, height, width
    vae_tiling: dict  # VAETiling fields ({} = diffusers' enable_tiling defaults)
    vae_warmup: int
    vae_repeats: int
    # text encoder
    t5: tuple[str, dict]
    t5_batch: int
    t5_tokens: int
    # scheduler
    scheduler_shapes: tuple[tuple[int, int, int], ...]
    # pipeline
    pipe_transformer: tuple[str, dict]
    pipe_vae: tuple[str, dict]
    pipe_t5: tuple[str, dict]
    pipe_preset: str
    pipe_video: tuple[int, int, int]  # height, width, frames
    pipe_warmup: int
    pipe_repeats: int
    # pipeline_vs_cpu_fp32
    pvc_transformer: tuple[str, dict]
    pvc_vae: tuple[str, dict]
    pvc_t5: tuple[str, dict]
    pvc_video: tuple[int, int, int]
    pvc_steps: int
    pvc_guidance: float
    # checks: (limit, what it bounds)
    attention_rel_limit: float  # max |cudnn - xla| / max |xla|, both in the run dtype
    pvc_psnr_min: float  # bfloat16 on the accelerator vs float32 on the CPU backend
    pvc_psnr_min_fp32: float  # float32 on the accelerator vs float32 on the CPU backend (TF32 matmuls on GPU)
    # rough seconds each section takes with these sizes: splits the budget, decides optional parts
    estimates: dict


# A CPU run: small widths and shapes (2 shared cores, the test suite runs it), float32.
_SMALL_TRANSFORMER = ("ltx-video-2b", dict(num_attention_heads=4, attention_head_dim=32, cross_attention_dim=128,
                                           caption_channels=64))
CPU_SIZES = Sizes(
    name="cpu", dtype="float32", warmup=1, repeats=3, budget_s=None,
    matmul_n=512, matmul_inner=1, matmul_repeats=5,
    transformer=_SMALL_TRANSFORMER, transformer_layers=4, transformer_shapes=((2, 8, 8), (3, 8, 16)),
    transformer_compile_layers=(4, 28), text_tokens=32,
    attention_shape=(2, 8, 8), attention_text_lengths=(9, 27),
    vae=("ltx-video-0.9.5", dict(decoder_block_out_channels=(16, 32, 64), decoder_layers_per_block=(1, 1, 1, 1),
                                 block_out_channels=(16, 32, 64, 64, 64), layers_per_block=(1, 1, 1, 1, 1))),
    vae_latent=(3, 4, 4),
    # Temporal tiles only (one spatial tile covers the 4x4 latent): spatial tile shapes multiply compile time, and
    # spatial tiling is checked against diffusers in tests/test_vae.py.
    vae_tiling=dict(tile_sample_min_height=128, tile_sample_min_width=128, tile_sample_stride_height=96,
                    tile_sample_stride_width=96, tile_sample_min_num_frames=16, tile_sample_stride_num_frames=8),
    vae_warmup=1, vae_repeats=2,
    t5=("custom", dict(vocab_size=512, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4,
                       feed_forward_proj="gated-gelu")),
    t5_batch=2, t5_tokens=32,
    scheduler_shapes=((2, 4096, 128), (1, 256, 128)),
    pipe_transformer=("tiny", {}), pipe_vae=("tiny", {}), pipe_t5=("tiny", {}),
    pipe_preset="ltx-video-0.9.8-2b-distilled", pipe_video=(64, 96, 17), pipe_warmup=0, pipe_repeats=2,
    pvc_transformer=("tiny", dict(num_attention_heads=2, attention_head_dim=64, cross_attention_dim=128)),
    pvc_vae=("tiny", {}), pvc_t5=("tiny", {}), pvc_video=(64, 96, 9), pvc_steps=8, pvc_guidance=3.0,
    attention_rel_limit=1e-6, pvc_psnr_min=30.0, pvc_psnr_min_fp32=60.0,
    estimates=dict(matmul_peak=10, attention_cudnn_vs_xla=20, pipeline_vs_cpu_fp32=20, transformer=30,
                   text_encoder=15, scheduler=10, vae=30, pipeline=30,
                   transformer_compile=5, vae_torch=5, vae_ours=15, vae_compile_2F=3, pipeline_torch=5),
)

# A GPU run: the shapes of the earlier issues' GPU benchmarks, bf16, everything in at most 560 s (from process start,
# compile time included) on one H100.
GPU_SIZES = Sizes(
    name="gpu", dtype="bfloat16", warmup=2, repeats=5, budget_s=560.0,
    matmul_n=8192, matmul_inner=10, matmul_repeats=10,
    transformer=("ltx-video-2b", {}), transformer_layers=4,
    transformer_shapes=((9, 32, 32), (9, 64, 64), (17, 64, 64)), transformer_compile_layers=(4, 28), text_tokens=128,
    attention_shape=(9, 32, 32), attention_text_lengths=(23, 97),
    vae=("ltx-video-0.9.5", {}), vae_latent=(16, 16, 24), vae_tiling={}, vae_warmup=1, vae_repeats=2,
    t5=("t5-v1_1-xxl", {}), t5_batch=2, t5_tokens=128,
    scheduler_shapes=((2, 4096, 128), (1, 256, 128)),
    pipe_transformer=("ltx-video-2b", {}), pipe_vae=("ltx-video-0.9.5", {}), pipe_t5=("t5-v1_1-xxl", {}),
    pipe_preset="ltx-video-0.9.8-2b-distilled", pipe_video=(512, 768, 121), pipe_warmup=0, pipe_repeats=2,
    pvc_transformer=("tiny", dict(num_attention_heads=2, attention_head_dim=64, cross_attention_dim=128)),
    pvc_vae=("tiny", {}), pvc_t5=("tiny", {}), pvc_video=(256, 384, 25), pvc_steps=8, pvc_guidance=3.0,
    attention_rel_limit=2e-2, pvc_psnr_min=30.0, pvc_psnr_min_fp32=35.0,
    # Seconds per section (they split the budget) and per optional part (run only when this much is left). First
    # guesses for an H100: rerun with the measured "seconds" of each section in the JSON if they are far off.
    estimates=dict(matmul_peak=15, attention_cudnn_vs_xla=45, pipeline_vs_cpu_fp32=35, transformer=85,
                   text_encoder=55, scheduler=12, vae=150, pipeline=165,
                   transformer_compile=45, vae_torch=35, vae_ours=100, vae_compile_2F=30, pipeline_torch=40),
)
SIZES = {"cpu": CPU_SIZES, "gpu": GPU_SIZES}


def transformer_config(spec: tuple[str, dict], layers: int | None = None):
    from ltx_jax.configs import TRANSFORMER_PRESETS
    from ltx_jax.tiny_random import TINY_TRANSFORMER

    source, overrides = spec
    cfg = TINY_TRANSFORMER if source == "tiny" else TRANSFORMER_PRESETS[source]
    cfg = cfg.replace(**overrides)
    return cfg.replace(num_layers=layers) if layers else cfg


def vae_config(spec: tuple[str, dict]):
    from ltx_jax.configs import VAE_PRESETS
    from ltx_jax.tiny_random import TINY_VAE

    source, overrides = spec
    return (TINY_VAE if source == "tiny" else VAE_PRESETS[source]).replace(**overrides)


def t5_config(spec: tuple[str, dict]):
    from ltx_jax.configs import T5_PRESETS, T5Config
    from ltx_jax.tiny_random import TINY_T5

    source, overrides = spec
    if source == "custom":
        return T5Config(**overrides)
    return (TINY_T5 if source == "tiny" else T5_PRESETS[source]).replace(**overrides)


# ============================================================================================ small helpers


def json_safe(x: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars converted, NaN/inf written as null)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, str):
        return x
    return str(x)


def write_json_atomic(path: str, data: Any) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(json_safe(data), f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def timed(fn: Callable[[], Any], warmup: int, repeats: int, block: Callable[[Any], Any]) -> list[float]:
    """Seconds of each of ``repeats`` blocked calls after ``warmup`` (benchmarks/timing.py)."""
    from timing import sample_times

    return sample_times(lambda: block(fn()), repeats, warmup)


def jax_block(x):
    import jax

    return jax.block_until_ready(x)


def rel_diff(ours, ref) -> float:
    """max |ours - ref| / max |ref|, in float32."""
    ours, ref = np.asarray(ours, np.float32), np.asarray(ref, np.float32)
    return float(np.max(np.abs(ours - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def psnr(a, b, data_range: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(data_range**2 / mse)


def is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(s in text for s in ("resource_exhausted", "out of memory", "outofmemory", "oom when allocating"))


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return ("out of memory: " if is_oom(exc) else "") + (text if len(text) < 600 else text[:600] + " ...")


CUDNN_FMHA = re.compile(r"__cudnn\$fmha\w*")
CUDNN_ANY = re.compile(r"__cudnn\$\w+")


def cudnn_attention_calls(hlo_text: str) -> list[str]:
    """Every cuDNN fused-attention custom call target in an HLO / StableHLO text (``__cudnn$fmhaSoftmax``,
    ``__cudnn$fmhaScaleBiasSoftmax``, ... as jax/_src/cudnn/fused_attention_stablehlo.py names them), in order."""
    return CUDNN_FMHA.findall(hlo_text)


def cudnn_calls(hlo_text: str) -> list[str]:
    """Every cuDNN custom call or fusion target (``__cudnn$...``): fused attention, cuDNN GEMM/conv fusions."""
    return sorted(set(CUDNN_ANY.findall(hlo_text)))


def device_peak_bytes() -> int | None:
    """Peak bytes in use on the first JAX device since the process started (None where the backend does not say,
    e.g. CPU)."""
    import jax

    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    return None if not stats or "peak_bytes_in_use" not in stats else int(stats["peak_bytes_in_use"])


def compiled_memory(compiled) -> dict | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if m is None:
        return None
    out = {k: int(getattr(m, k + "_size_in_bytes", 0) or 0) for k in ("argument", "output", "temp", "generated_code")}
    out["total"] = out["argument"] + out["output"] + out["temp"]
    return out


def cost_flops(lowered) -> float | None:
    """FLOPs of a lowered program from XLA's cost analysis (loop bodies are counted once)."""
    try:
        cost = lowered.cost_analysis()
    except Exception:  # noqa: BLE001
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def tree_bytes(tree) -> int:
    import jax

    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))


def tree_cast(tree, dtype):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def load_bench(name: str):
    """A module of benchmarks/ (bench_transformer, bench_text_encoder, ...), imported from this folder."""
    import importlib

    return importlib.import_module(name)


def word_tokenizer(max_length: int = 128):
    """A T5-like word-level tokenizer over this run's prompts, from ``tokenizers`` alone (the GPU machines have no
    sentencepiece): ``ltx_jax.tiny_random.word_level_tokenizer``."""
    from ltx_jax.tiny_random import word_level_tokenizer

    return word_level_tokenizer(max_length, texts=(PROMPT, NEGATIVE_PROMPT))


def config_kwargs(cfg) -> dict:
    """A config dataclass as constructor keyword arguments of its diffusers / transformers class (same field names)."""
    return dataclasses.asdict(cfg)


# ==================================================================================================== context


class Recorder:
    """One section's results: a dict written to disk (atomically) after every change, so a process that is stopped
    leaves what it measured. ``cases`` are timed rows, ``checks`` pass/fail correctness checks (a failed one fails
    the section), ``goals`` performance targets (reported, never failing), ``skipped`` what did not run and why."""

    def __init__(self, path: str | None = None, on_change: Callable[[dict], None] | None = None):
        self.path = path
        self.on_change = on_change
        self.data: dict = {"cases": [], "checks": {}, "goals": {}, "skipped": {}, "info": {}}

    def flush(self) -> None:
        if self.path:
            write_json_atomic(self.path, self.data)
        if self.on_change:
            self.on_change(self.data)

    def info(self, **kw) -> None:
        self.data["info"].update(kw)
        self.flush()

    def case(self, name: str, **row) -> dict:
        row = {"name": name, **row}
        self.data["cases"].append(row)
        self.flush()
        return row

    def update(self, row: dict, **kw) -> None:
        row.update(kw)
        self.flush()

    def check(self, name: str, ok: bool, value: Any = None, limit: Any = None, note: str = "") -> bool:
        self.data["checks"][name] = {"ok": bool(ok), "value": value, "limit": limit, "note": note}
        self.flush()
        return bool(ok)

    def goal(self, name: str, value: float | None, target: float, op: str = "<=", note: str = "") -> None:
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        self.data["goals"][name] = {"met": met, "value": value, "target": target, "op": op, "note": note}
        self.flush()

    def skip(self, what: str, reason: str) -> None:
        self.data["skipped"][what] = reason
        self.flush()


class Context:
    """What a section gets: its sizes, a recorder, its deadline, and lazy optional torch / diffusers."""

    def __init__(self, sizes: Sizes, rec: Recorder, deadline: float | None, use_torch: bool, log=print):
        import jax

        self.sizes = sizes
        self.rec = rec
        self.deadline = deadline
        self.use_torch = use_torch
        self.log = log
        self.on_gpu = jax.default_backend() == "gpu"

    # time
    def time_left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.time()

    def has_time(self, seconds: float, what: str) -> bool:
        left = self.time_left()
        if left >= seconds:
            return True
        self.rec.skip(what, f"time budget: {left:.0f} s left in this section, needs about {seconds:.0f} s")
        return False

    # torch
    def torch(self, what: str, need: tuple[str, ...] = ("diffusers",)):
        """torch (with the extra packages in ``need`` importable) on the device JAX uses, or None (skip recorded)."""
        reason = None
        if not self.use_torch:
            reason = "--no-torch"
        else:
            try:
                import torch
            except Exception as e:  # noqa: BLE001
                reason = f"torch not importable: {short_error(e)}"
            else:
                if self.on_gpu and not torch.cuda.is_available():
                    reason = "torch has no CUDA here (JAX runs on the GPU): a CPU torch would not be comparable"
                for mod in need:
                    if reason is None:
                        try:
                            __import__(mod)
                        except Exception as e:  # noqa: BLE001
                            reason = f"{mod} not importable: {short_error(e)}"
        if reason is not None:
            self.rec.skip(what, reason)
            return None
        import torch

        return torch

    def torch_device(self) -> str:
        return "cuda" if self.on_gpu else "cpu"


def torch_dtype(torch, name: str):
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def torch_sync(torch, out=None):
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return out


def torch_reset_peak(torch) -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def torch_peak(torch) -> int | None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated())
    return None


def torch_free(torch) -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def torch_build(torch, device: str, dtype, factory: Callable[[], Any]):
    """Builds a torch model directly on ``device`` (no host copy of a large model), then casts it to ``dtype``."""
    torch.manual_seed(0)
    with torch.device(device):
        model = factory()
    return model.to(dtype).eval()


def add_timing(row: dict, prefix: str, times: list[float]) -> float:
    med = statistics.median(times)
    row[f"{prefix}_ms"] = med * 1e3
    row[f"{prefix}_times_ms"] = [t * 1e3 for t in times]
    return med


# ============================================================================================== jax builders


def rng_key(seed: int = 0):
    """A typed key of the "rbg" generator: random init programs compile several times faster than with threefry
    (18 s -> 5 s for a small VAE decoder on CPU), and random weights need no particular generator."""
    import jax

    return jax.random.key(seed, impl="rbg")


def init_transformer(module, key):
    """Random params made under jit on the default device (never a float32 host copy). Initialised through the XLA
    attention path (the params do not depend on it), so the init program never needs cuDNN."""
    import jax
    import jax.numpy as jnp

    cfg = module.config
    init_module = module.clone(attention_implementation="xla")
    return jax.jit(lambda k: init_module.init(
        k, jnp.zeros((1, 1, cfg.in_channels), module.dtype), jnp.zeros((1, 1, cfg.caption_channels), module.dtype),
        jnp.zeros((1,), jnp.float32), None, num_frames=1, height=1, width=1)["params"])(key)


def init_vae_decoder(cfg, dtype, key):
    """Params of ``AutoencoderKLLTXVideo.decode`` only (decoder + latent statistics), made on the device."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models.vae import Decoder3d

    module = Decoder3d(cfg, dtype=dtype, param_dtype=dtype)
    z = jnp.zeros((1, 1, 1, 1, cfg.latent_channels), dtype)
    decoder = jax.jit(lambda k: module.init(k, z, jnp.zeros((1,), jnp.float32))["params"])(key)
    return vae_decode_params(decoder, cfg, dtype)


def vae_decode_params(decoder_params, cfg, dtype) -> dict:
    import jax.numpy as jnp

    latent = cfg.latent_channels
    return {"decoder": decoder_params, "latents_mean": jnp.zeros((latent,), dtype),
            "latents_std": jnp.ones((latent,), dtype)}


def vae_decoder_params_from_torch(torch_decoder, cfg, dtype) -> dict:
    """diffusers ``LTXVideoDecoder3d`` weights -> our decoder params (through the loader's conversion table)."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models.vae import Decoder3d
    from weight_conversion.mapping import convert
    from weight_conversion.vae import vae_rules

    module = Decoder3d(cfg)
    abstract = jax.eval_shape(lambda: module.init(
        jax.random.PRNGKey(0), jnp.zeros((1, 1, 1, 1, cfg.latent_channels)), jnp.zeros((1,)))["params"])
    state = torch_decoder.state_dict()

    class Source(dict):  # one tensor at a time to the host, as the conversion asks for it
        def __getitem__(self, key):
            return state[key].detach().float().cpu().numpy()

    params = convert(Source({k: None for k in state}), vae_rules(abstract), abstract, dtype, what="vae decoder",
                     source_shape=lambda k: tuple(state[k].shape))
    return jax.tree_util.tree_map(lambda p, a: jnp.asarray(p).reshape(a.shape), params, abstract)


def vae_decode_fn(cfg, dtype, tiling):
    import jax

    from ltx_jax.models.vae import AutoencoderKLLTXVideo

    vae = AutoencoderKLLTXVideo(cfg, dtype=dtype, param_dtype=dtype)
    return jax.jit(lambda p, z, t: vae.apply({"params": p}, z, t, method="decode", tiling=tiling))


def build_pipeline(tcfg, vcfg, t5cfg, dtype, preset: str, tokenizer, params: dict | None = None, key=None):
    """Our LTXPipeline over the given configs; random params made on the default device unless ``params`` is given
    ({"transformer", "vae", "text_encoder"}). Returns (pipeline, params)."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models import t5 as t5_lib
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from ltx_jax.models.vae import AutoencoderKLLTXVideo
    from ltx_jax.pipeline import LTXPipeline
    from ltx_jax.presets import PIPELINE_PRESETS
    from ltx_jax.text_encoding import PromptEncoder

    dt = jnp.dtype(dtype)
    transformer = LTXVideoTransformer3DModel(tcfg, dtype=dt, param_dtype=dt)
    vae = AutoencoderKLLTXVideo(vcfg, dtype=dt, param_dtype=dt)
    t5 = t5_lib.T5EncoderModel(t5cfg, dtype=dt, param_dtype=dt)
    if params is None:
        k_tr, k_vae, k_t5 = jax.random.split(rng_key(0) if key is None else key, 3)
        # The VAE's decoder only (and the latent statistics): text-to-video never encodes.
        params = {"text_encoder": t5_lib.init_params(t5, k_t5), "transformer": init_transformer(transformer, k_tr),
                  "vae": init_vae_decoder(vcfg, dt, k_vae)}
        params = jax.block_until_ready(params)
    pipe = LTXPipeline(transformer, params["transformer"], vae, params["vae"],
                       PromptEncoder(tokenizer, t5, params["text_encoder"]), preset=PIPELINE_PRESETS[preset],
                       progress=False)
    return pipe, params


# ================================================================================================= sections


def section_matmul_peak(ctx: Context) -> None:
    """The measured matmul rate in the run dtype: the denominator of every 'fraction of peak'."""
    import jax
    import jax.numpy as jnp

    s, rec = ctx.sizes, ctx.rec
    n, dt = s.matmul_n, jnp.dtype(s.dtype)
    flops = 2.0 * n**3
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), dt)
    b = jax.random.normal(kb, (n, n), dt)
    matmul = jax.jit(lambda x, y: x @ y)
    start = time.perf_counter()
    compiled = matmul.lower(a, b).compile()
    compile_s = time.perf_counter() - start

    def burst():  # matmul_inner calls queued back to back, one sync
        out = None
        for _ in range(s.matmul_inner):
            out = compiled(a, b)
        return out

    times = [t / s.matmul_inner for t in timed(burst, 2, s.matmul_repeats, jax_block)]
    row = rec.case(f"matmul {n}^3 {s.dtype}", flops=flops, compile_s=compile_s)
    med = add_timing(row, "ours", times)
    tflops = flops / med / 1e12
    rec.update(row, tflops=tflops, best_tflops=flops / min(times) / 1e12)
    rec.info(matmul_tflops=tflops, matmul_best_tflops=flops / min(times) / 1e12, dtype=s.dtype, n=n)
    ctx.log(f"jax matmul {n}^3 {s.dtype}: {med * 1e3:.3f} ms, {tflops:.2f} TFLOP/s")

    torch = ctx.torch("torch matmul", need=())
    if torch is None:
        return
    dev, tdt = ctx.torch_device(), torch_dtype(torch, s.dtype)
    ta = torch.from_numpy(np.array(a, np.float32)).to(dev, tdt)
    tb = torch.from_numpy(np.array(b, np.float32)).to(dev, tdt)

    def tburst():
        out = None
        with torch.inference_mode():
            for _ in range(s.matmul_inner):
                out = ta @ tb
        return out

    ttimes = [t / s.matmul_inner for t in timed(tburst, 2, s.matmul_repeats, lambda o: torch_sync(torch, o))]
    tmed = add_timing(row, "torch", ttimes)
    rec.update(row, ratio=med / tmed, torch_tflops=flops / tmed / 1e12)
    rec.info(torch_matmul_tflops=flops / tmed / 1e12)


def section_attention_cudnn_vs_xla(ctx: Context) -> None:
    """Default attention path (cuDNN on CUDA bf16) vs XLA, and the compiled HLO holding (or not) cuDNN's call."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models.transformer import LTXVideoTransformer3DModel

    bt = load_bench("bench_transformer")
    s, rec = ctx.sizes, ctx.rec
    cfg = transformer_config(s.transformer, s.transformer_layers)
    dt = jnp.dtype(s.dtype)
    shape = s.attention_shape
    f, h, w = shape
    batch, text_tokens = len(s.attention_text_lengths), s.text_tokens
    default = LTXVideoTransformer3DModel(cfg, dtype=dt, param_dtype=dt)
    xla = default.clone(attention_implementation="xla")
    resolved = default.resolved_attention_implementation
    rec.info(config=cfg.to_dict(), shape=shape, dtype=s.dtype, text_lengths=s.attention_text_lengths,
             default_implementation=resolved, backend=jax.default_backend())

    params = init_transformer(default, rng_key(0))
    rng = np.random.default_rng(0)
    hidden = jnp.asarray(rng.standard_normal((batch, f * h * w, cfg.in_channels), dtype=np.float32))
    text = jnp.asarray(rng.standard_normal((batch, text_tokens, cfg.caption_channels), dtype=np.float32))
    mask = np.zeros((batch, text_tokens), np.int32)
    for b, n in enumerate(s.attention_text_lengths):
        mask[b, :n] = 1  # right padded: valid tokens first, as T5 tokenizers give
    mask = jnp.asarray(mask)
    timestep = jnp.asarray(np.linspace(900.0, 300.0, batch, dtype=np.float32))
    args = (hidden, text, timestep, mask)
    flops = bt.forward_flops(cfg, batch, f * h * w, text_tokens)

    # The default path first: its HLO checks stand even if XLA's attention (it materialises the [B, H, N, N] scores,
    # ~22 GB in float32 at the GPU size) ran out of memory below.
    outputs, calls = {}, {}
    for label, module, prm in (("default", default, params), ("xla", xla, params)):
        fn = bt.jax_forward_fn(module, shape)
        lowered = fn.lower(prm, *args)
        start = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start
        hlo = compiled.as_text()
        calls[label] = cudnn_attention_calls(hlo)
        impl = module.resolved_attention_implementation
        row = rec.case(f"transformer {cfg.num_layers} layers {f}x{h}x{w} attention={impl} ({label})", flops=flops,
                       compile_s=compile_s, implementation=impl, cudnn_fmha_calls=calls[label],
                       cudnn_calls_in_stablehlo=cudnn_attention_calls(lowered.as_text()),
                       cudnn_targets=cudnn_calls(hlo))
        try:
            out = jax_block(compiled(prm, *args))
            outputs[label] = np.asarray(out.astype(jnp.float32))
            del out
            med = add_timing(row, "ours", timed(lambda: compiled(prm, *args), s.warmup, s.repeats, jax_block))
            rec.update(row, tflops=flops / med / 1e12, finite=bool(np.isfinite(outputs[label]).all()),
                       peak_bytes=device_peak_bytes())
            ctx.log(f"{label}: attention={impl}, compile {compile_s:.1f} s, {med * 1e3:.2f} ms, "
                    f"cuDNN fmha calls in compiled HLO: {calls[label]}")
        except Exception as e:  # noqa: BLE001
            rec.update(row, error=short_error(e))
            if not is_oom(e):
                raise
        del compiled

    rec.check("xla path: no cuDNN attention call in compiled HLO", len(calls["xla"]) == 0, value=calls["xla"], limit=[])
    rec.check("both paths ran", set(outputs) == {"default", "xla"}, value=sorted(outputs),
              note="; ".join(r.get("error", "") for r in rec.data["cases"]))
    rec.check("outputs finite", all(np.isfinite(o).all() for o in outputs.values()))
    if set(outputs) == {"default", "xla"}:
        # A float32 XLA reference puts the two paths' errors in context (on CPU the run is float32: both are 0).
        diff = rel_diff(outputs["default"], outputs["xla"])
        rec.info(rel_diff_default_vs_xla=diff)
        rec.check(f"default ({resolved}) vs XLA: max|diff| / max|xla|", diff <= s.attention_rel_limit, value=diff,
                  limit=s.attention_rel_limit)
        try:
            f32 = xla.clone(dtype=jnp.float32, param_dtype=jnp.float32)
            ref = np.asarray(bt.jax_forward_fn(f32, shape)(tree_cast(params, jnp.float32), *args))
            err_default, err_xla = rel_diff(outputs["default"], ref), rel_diff(outputs["xla"], ref)
            rec.info(rel_diff_default_vs_fp32=err_default, rel_diff_xla_vs_fp32=err_xla)
            rec.check(f"default ({resolved}) error vs float32 no worse than 2x XLA's + 1e-3",
                      err_default <= 2 * err_xla + 1e-3, value=err_default, limit=2 * err_xla + 1e-3)
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            rec.skip("float32 reference", short_error(e))
    half = dt in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    if ctx.on_gpu:
        expected = "cudnn" if half else "xla"
        rec.check("default implementation on GPU", resolved == expected, value=resolved, limit=expected)
        if half:
            rec.check("cuDNN path taken: __cudnn$fmha custom call in compiled HLO", len(calls["default"]) > 0,
                      value=calls["default"], limit=">= 1 call")
    else:
        rec.skip("cudnn", "no GPU: cuDNN attention runs on CUDA only; the XLA path, the HLO inspection and the "
                          "comparison code ran (default = XLA here, against explicit XLA and float32)")
        rec.check("default implementation off GPU is XLA", resolved == "xla", value=resolved, limit="xla")
        rec.check("no cuDNN attention call in compiled HLO (CPU)", len(calls["default"]) == 0, value=calls["default"],
                  limit=[])


def section_pipeline_vs_cpu_fp32(ctx: Context) -> None:
    """The whole pipeline in the run dtype on the accelerator against float32 on the CPU backend, same params."""
    import jax
    import jax.numpy as jnp

    s, rec = ctx.sizes, ctx.rec
    tcfg, vcfg, t5cfg = transformer_config(s.pvc_transformer), vae_config(s.pvc_vae), t5_config(s.pvc_t5)
    height, width, frames = s.pvc_video
    tokenizer = word_tokenizer()
    cpu = jax.devices("cpu")[0]
    accel = jax.devices()[0]
    rec.info(video=s.pvc_video, steps=s.pvc_steps, guidance=s.pvc_guidance, transformer=tcfg.to_dict(),
             accelerator=str(accel), reference=str(cpu))
    call = dict(prompt=PROMPT, negative_prompt=NEGATIVE_PROMPT, height=height, width=width, num_frames=frames,
                num_inference_steps=s.pvc_steps, guidance_scale=s.pvc_guidance, seed=0)
    preset = "ltx-video-0.9.1"  # timestep-conditioned decode with decode noise, dynamic shift: every stage runs

    with jax.default_device(cpu):
        pipe, params32 = build_pipeline(tcfg, vcfg, t5cfg, "float32", preset, tokenizer)
        start = time.perf_counter()
        ref = pipe(**call)
        row = rec.case("pipeline float32 on CPU (reference)", ours_ms=(time.perf_counter() - start) * 1e3,
                       device=str(cpu), shape=list(ref.shape))
    rec.check("reference frames finite", bool(np.isfinite(ref).all()))

    targets = [(f"bfloat16 on {accel.platform}", accel, "bfloat16", s.pvc_psnr_min)]  # CPU-only: bf16 on the CPU
    if ctx.on_gpu:
        targets.append((f"float32 on {accel.platform}", accel, "float32", s.pvc_psnr_min_fp32))
    for label, device, dtype, limit in targets:
        moved = jax.device_put(tree_cast(params32, jnp.dtype(dtype)), device)
        with jax.default_device(device):
            pipe, _ = build_pipeline(tcfg, vcfg, t5cfg, dtype, preset, tokenizer, params=moved)
            start = time.perf_counter()
            out = pipe(**call)
            first = time.perf_counter() - start
            start = time.perf_counter()
            again = pipe(**call)
            second = time.perf_counter() - start
        value = psnr(out, ref)
        row = rec.case(f"pipeline {label} vs float32 CPU", ours_ms=second * 1e3, first_call_ms=first * 1e3,
                       psnr_db=value, max_abs_diff=float(np.max(np.abs(out - ref))), device=str(device),
                       attention=pipe.transformer.resolved_attention_implementation,
                       repeat_identical=bool(np.array_equal(out, again)))
        ctx.log(f"{label}: PSNR vs float32 CPU {value:.2f} dB (attention {row['attention']})")
        rec.check(f"PSNR {label} vs float32 CPU (dB)", value >= limit, value=value, limit=limit)
        rec.check(f"{label}: frames finite", bool(np.isfinite(out).all()))


def section_transformer(ctx: Context) -> None:
    """Forward pass per latent shape against diffusers on the same card with the same weights; compile times."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models.transformer import LTXVideoTransformer3DModel, count_params

    bt = load_bench("bench_transformer")
    s, rec = ctx.sizes, ctx.rec
    cfg = transformer_config(s.transformer, s.transformer_layers)
    dt = jnp.dtype(s.dtype)
    batch = 1
    module = LTXVideoTransformer3DModel(cfg, dtype=dt, param_dtype=dt)
    torch = ctx.torch("diffusers transformer")
    side = None
    if torch is not None:
        side = bt.TorchSide(cfg, s.dtype, None)  # builds diffusers' model; our params are converted from it
        params = side.jax_params(module)
    else:
        params = init_transformer(module, rng_key(0))
    params = jax.block_until_ready(params)
    rec.info(config=cfg.to_dict(), params=count_params(params), param_bytes=tree_bytes(params), dtype=s.dtype,
             attention=module.resolved_attention_implementation, text_tokens=s.text_tokens, batch=batch,
             weights="shared with diffusers" if side else "random")

    for shape in s.transformer_shapes:
        f, h, w = shape
        tokens = f * h * w
        flops = bt.forward_flops(cfg, batch, tokens, s.text_tokens)
        inputs = bt.make_inputs(cfg, batch, shape, s.text_tokens)
        row = rec.case(f"transformer {cfg.num_layers} layers {f}x{h}x{w}", tokens=tokens, flops=flops)
        ref = None
        if side is not None:
            try:
                torch_reset_peak(torch)
                run = side.forward_fn(inputs, shape)
                ref = run()
                side.block(ref)
                tmed = add_timing(row, "torch", timed(run, s.warmup, s.repeats, side.block))
                ref = ref.float().cpu().numpy()
                rec.update(row, torch_tflops=flops / tmed / 1e12, torch_peak_bytes=torch_peak(torch))
            except Exception as e:  # noqa: BLE001
                rec.update(row, torch_error=short_error(e))
                ref = None
            torch_free(torch)
        try:
            dev_inputs = tuple(jnp.asarray(x) for x in inputs)
            lowered = bt.jax_forward_fn(module, shape).lower(params, *dev_inputs)
            start = time.perf_counter()
            compiled = lowered.compile()
            compile_s = time.perf_counter() - start
            out = jax_block(compiled(params, *dev_inputs))
            med = add_timing(row, "ours", timed(lambda: compiled(params, *dev_inputs), s.warmup, s.repeats, jax_block))
            out = np.asarray(out.astype(jnp.float32))
            rec.update(row, compile_s=compile_s, tflops=flops / med / 1e12, peak_bytes=device_peak_bytes(),
                       compiled_memory=compiled_memory(compiled), finite=bool(np.isfinite(out).all()))
            if ref is not None:
                rec.update(row, ratio=med / (row["torch_ms"] / 1e3), max_rel_diff=rel_diff(out, ref))
            ctx.log(f"{row['name']}: ours {row['ours_ms']:.2f} ms, torch {row.get('torch_ms')} ms")
        except Exception as e:  # noqa: BLE001
            rec.update(row, error=short_error(e))
            if not is_oom(e):
                raise
    rows = [r for r in rec.data["cases"] if "ours_ms" in r]
    rec.check("every shape ran", len(rows) == len(s.transformer_shapes), value=len(rows),
              limit=len(s.transformer_shapes))
    rec.check("outputs finite", all(r.get("finite") for r in rows))
    for r in rows:
        if "ratio" in r:
            rec.goal(f"{r['name']}: ours / diffusers", r["ratio"], 0.9 if ctx.on_gpu else 0.8)
    if ctx.on_gpu and cfg.inner_dim == 2048 and cfg.num_layers == 4:
        for r, target in zip(rows, (14.0, 130.0, 420.0)):
            rec.goal(f"{r['name']}: ms (DESIGN.md)", r["ours_ms"], target)

    lo, hi = s.transformer_compile_layers
    if ctx.has_time(s.estimates["transformer_compile"], "compile time 4 vs 28 layers"):
        c_lo = bt.compile_seconds(cfg, lo, dt, None, batch, s.transformer_shapes[0], s.text_tokens)
        c_hi = bt.compile_seconds(cfg, hi, dt, None, batch, s.transformer_shapes[0], s.text_tokens)
        f, h, w = s.transformer_shapes[0]
        rec.case(f"compile {hi} vs {lo} layers at {f}x{h}x{w}", compile_s=c_hi, compile_lo_s=c_lo, ratio=c_hi / c_lo)
        rec.goal(f"compile time {hi} / {lo} layers", c_hi / c_lo, 1.3)


def section_text_encoder(ctx: Context) -> None:
    """T5 encode (masked and unmasked) against transformers' T5EncoderModel on the same card (random weights)."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models.t5 import T5EncoderModel, init_params

    bte = load_bench("bench_text_encoder")
    s, rec = ctx.sizes, ctx.rec
    cfg = t5_config(s.t5)
    dt = jnp.dtype(s.dtype)
    ids, mask = bte.make_inputs(cfg, s.t5_batch, s.t5_tokens)
    flops = bte.matmul_flops(cfg, s.t5_batch, s.t5_tokens)
    modes = (("unmasked (LTXPipeline)", False), ("masked (LTXConditionPipeline)", True))
    rows = {label: rec.case(f"T5 {cfg.num_layers} layers d{cfg.d_model} encode {s.t5_batch}x{s.t5_tokens} {label}",
                            flops=flops)
            for label, _ in modes}

    torch = ctx.torch("transformers T5", need=("transformers",))
    if torch is not None:
        try:
            from transformers import T5Config as TorchT5Config
            from transformers import T5EncoderModel as TorchT5

            dev = ctx.torch_device()
            model = torch_build(torch, dev, torch_dtype(torch, s.dtype),
                                lambda: TorchT5(TorchT5Config(**cfg.to_dict())))
            tids = torch.from_numpy(ids).long().to(dev)
            tmask = torch.from_numpy(mask).long().to(dev)
            for label, use_mask in modes:
                def run(m=tmask if use_mask else None):
                    with torch.inference_mode():
                        return model(input_ids=tids, attention_mask=m).last_hidden_state

                torch_reset_peak(torch)
                tmed = add_timing(rows[label], "torch", timed(run, s.warmup, s.repeats, lambda o: torch_sync(torch, o)))
                rec.update(rows[label], torch_tflops=flops / tmed / 1e12, torch_peak_bytes=torch_peak(torch))
            del model
        except Exception as e:  # noqa: BLE001
            rec.skip("transformers T5", f"failed: {short_error(e)}")
            rec.info(torch_traceback=traceback.format_exc())
        torch_free(torch)

    module = T5EncoderModel(cfg, dtype=dt, param_dtype=dt)
    start = time.perf_counter()
    params = jax.block_until_ready(init_params(module, rng_key(0)))
    rec.info(config=cfg.to_dict(), params=sum(x.size for x in jax.tree_util.tree_leaves(params)),
             param_bytes=tree_bytes(params), init_s=time.perf_counter() - start, dtype=s.dtype, weights="random")
    forward = jax.jit(lambda p, i, m: module.apply({"params": p}, i, m))
    jids = jnp.asarray(ids)
    for label, use_mask in modes:
        jm = jnp.asarray(mask) if use_mask else None
        row = rows[label]
        lowered = forward.lower(params, jids, jm)
        start = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start
        out = jax_block(compiled(params, jids, jm))
        med = add_timing(row, "ours", timed(lambda: compiled(params, jids, jm), s.warmup, s.repeats, jax_block))
        rec.update(row, compile_s=compile_s, tflops=flops / med / 1e12, peak_bytes=device_peak_bytes(),
                   compiled_memory=compiled_memory(compiled),
                   finite=bool(np.isfinite(np.asarray(out.astype(jnp.float32))).all()))
        if "torch_ms" in row:
            rec.update(row, ratio=med / (row["torch_ms"] / 1e3))
    rec.check("outputs finite", all(r.get("finite") for r in rows.values()))


def section_scheduler(ctx: Context) -> None:
    """Jitted Euler step and per-token step against diffusers' scheduler.step on the same device."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.scheduler import LTX_SCHEDULER, mu_for_tokens, sigmas_and_timesteps, step, step_per_token

    s, rec = ctx.sizes, ctx.rec
    steps = 40
    mu = mu_for_tokens(LTX_SCHEDULER, 4096)
    sigmas, timesteps = sigmas_and_timesteps(LTX_SCHEDULER, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    jstep, jstep_tok = jax.jit(step), jax.jit(step_per_token)
    torch = ctx.torch("diffusers scheduler")
    reps, warm = max(20, s.repeats), max(3, s.warmup)
    rng = np.random.default_rng(0)
    for shape in s.scheduler_shapes:
        v_np = rng.standard_normal(shape).astype(np.float32)
        x_np = rng.standard_normal(shape).astype(np.float32)
        mask = np.zeros(shape[:2], np.float32)
        mask[:, : shape[1] // 8] = 1.0
        v, x = jnp.asarray(v_np), jnp.asarray(x_np)
        s0, s1 = jnp.float32(sigmas[3]), jnp.float32(sigmas[4])
        per_tok = jnp.minimum(jnp.float32(timesteps[3]), (1.0 - jnp.asarray(mask)) * 1000.0)
        sig = jnp.asarray(sigmas, jnp.float32)
        out = np.asarray(jstep(v, x, s0, s1))
        out_tok = np.asarray(jstep_tok(v, x, per_tok, sig))
        row = rec.case(f"step {list(shape)} float32")
        row_tok = rec.case(f"step_per_token {list(shape)} float32")
        add_timing(row, "ours", timed(lambda: jstep(v, x, s0, s1), warm, reps, jax_block))
        add_timing(row_tok, "ours", timed(lambda: jstep_tok(v, x, per_tok, sig), warm, reps, jax_block))
        if torch is None:
            continue
        from diffusers import FlowMatchEulerDiscreteScheduler

        dev = ctx.torch_device()
        sched = FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER.to_dict())
        sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu, device=dev)
        tv, tx = torch.from_numpy(v_np).to(dev), torch.from_numpy(x_np).to(dev)
        t3 = sched.timesteps[3]
        tper = torch.minimum(t3.expand(shape[0]).unsqueeze(-1).float(), (1 - torch.from_numpy(mask).to(dev)) * 1000.0)

        def ref_step():
            sched._step_index = 3
            return sched.step(tv, t3, tx, return_dict=False)[0]

        def ref_step_tok():
            sched._step_index = 3
            return sched.step(tv, t3, tx, per_token_timesteps=tper, return_dict=False)[0]

        for r, fn, ours_out in ((row, ref_step, out), (row_tok, ref_step_tok, out_tok)):
            ref = fn().float().cpu().numpy()
            tmed = add_timing(r, "torch", timed(fn, warm, reps, lambda o: torch_sync(torch, o)))
            rec.update(r, ratio=(r["ours_ms"] / 1e3) / tmed, max_abs_diff=float(np.max(np.abs(ours_out - ref))))
    diffs = [r["max_abs_diff"] for r in rec.data["cases"] if "max_abs_diff" in r]
    if diffs:
        rec.check("step matches diffusers (max abs diff)", max(diffs) <= 1e-5, value=max(diffs), limit=1e-5)


def section_vae(ctx: Context) -> None:
    """VAE decode tiled and untiled against diffusers (same weights); per-case memory; tiled memory for F and 2F."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models.vae import VAETiling

    s, rec = ctx.sizes, ctx.rec
    cfg = vae_config(s.vae)
    dt = jnp.dtype(s.dtype)
    frames, height, width = s.vae_latent
    shape = (1, frames, height, width, cfg.latent_channels)
    tiling = VAETiling(**s.vae_tiling)
    z_np = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t_np = np.full((1,), 0.05, np.float32)
    out_frames = (frames - 1) * cfg.temporal_ratio + 1
    video = f"{out_frames}x{height * cfg.spatial_ratio}x{width * cfg.spatial_ratio}"
    cases = (("tiled", tiling), ("untiled", None))
    rows = {name: rec.case(f"VAE decode {name} latent {frames}x{height}x{width} -> {video}") for name, _ in cases}
    rec.info(config=cfg.to_dict(), latent=s.vae_latent, tiling=dataclasses.asdict(tiling), dtype=s.dtype)

    # Analytic FLOPs of one whole (untiled) decode, from XLA's cost analysis of the lowered program (no compile);
    # tiled decoding does this work plus the overlaps.
    abstract = jax.eval_shape(lambda: init_vae_decoder(cfg, dt, rng_key(0)))
    z_abs = jax.ShapeDtypeStruct(shape, dt)
    t_abs = jax.ShapeDtypeStruct((1,), jnp.float32)
    flops = cost_flops(vae_decode_fn(cfg, dt, None).lower(abstract, z_abs, t_abs))
    rec.info(flops_untiled_decode=flops, flops_source="XLA cost analysis of the untiled decode program")
    for row in rows.values():
        rec.update(row, flops=flops)

    params = None
    torch = ctx.torch("diffusers VAE")
    # diffusers first, so that each side has the whole card (JAX keeps what it allocated), and only when there is
    # time for both: ours is never squeezed out by the comparison.
    if torch is not None and ctx.has_time(s.estimates["vae_torch"] + s.estimates["vae_ours"], "diffusers VAE"):
        from diffusers import AutoencoderKLLTXVideo as TorchVAE

        dev = ctx.torch_device()
        model = torch_build(torch, dev, torch.float32, lambda: TorchVAE(**config_kwargs(cfg)))
        params = vae_decode_params(vae_decoder_params_from_torch(model.decoder, cfg, dt), cfg, dt)
        rec.info(weights="shared with diffusers")
        model = model.to(torch_dtype(torch, s.dtype))
        z_t = torch.from_numpy(z_np).permute(0, 4, 1, 2, 3).to(dev, torch_dtype(torch, s.dtype))
        t_t = torch.from_numpy(t_np).to(dev, torch_dtype(torch, s.dtype))
        refs = {}
        for name, tl in cases:
            row = rows[name]
            if not ctx.has_time(s.estimates["vae_torch"] / 2 + s.estimates["vae_ours"], f"diffusers VAE {name}"):
                continue
            model.use_tiling = model.use_framewise_decoding = tl is not None
            if tl is not None:
                model.enable_tiling(**{k: getattr(tl, k) for k in (
                    "tile_sample_min_height", "tile_sample_min_width", "tile_sample_min_num_frames",
                    "tile_sample_stride_height", "tile_sample_stride_width", "tile_sample_stride_num_frames")})
                model.use_framewise_decoding = tl.temporal
            out = {}

            def run():
                with torch.inference_mode():
                    out["video"] = model.decode(z_t, t_t, return_dict=False)[0]
                return torch_sync(torch, out["video"])

            try:
                torch_reset_peak(torch)
                tmed = add_timing(row, "torch", timed(run, s.vae_warmup, s.vae_repeats, lambda o: o))
                refs[name] = out.pop("video").permute(0, 2, 3, 4, 1).float().cpu().numpy()
                rec.update(row, torch_peak_bytes=torch_peak(torch),
                           torch_tflops=None if flops is None else flops / tmed / 1e12)
            except Exception as e:  # noqa: BLE001
                out.clear()
                rec.update(row, torch_error=short_error(e))
                if not is_oom(e):
                    rec.info(torch_traceback=traceback.format_exc())
            torch_free(torch)
        del model, z_t, t_t
        torch_free(torch)
    else:
        refs = {}
    if params is None:
        params = init_vae_decoder(cfg, dt, rng_key(0))
        rec.info(weights="random")
    params = jax.block_until_ready(params)

    z, t = jnp.asarray(z_np, dt), jnp.asarray(t_np)
    memory = {}
    for name, tl in cases:  # tiled first: the process peak after it is the tiled decode's own
        row = rows[name]
        try:
            lowered = vae_decode_fn(cfg, dt, tl).lower(params, z, t)
            start = time.perf_counter()
            compiled = lowered.compile()
            compile_s = time.perf_counter() - start
            memory[name, frames] = compiled_memory(compiled)
            rec.update(row, compile_s=compile_s, compiled_memory=memory[name, frames])
            out = jax_block(compiled(params, z, t))
            med = add_timing(row, "ours", timed(lambda: compiled(params, z, t), s.vae_warmup, s.vae_repeats, jax_block))
            out = np.asarray(out.astype(jnp.float32))
            rec.update(row, peak_bytes=device_peak_bytes(), finite=bool(np.isfinite(out).all()),
                       tflops=None if flops is None else flops / med / 1e12)
            if name in refs:
                rec.update(row, ratio=row["ours_ms"] / row["torch_ms"], max_rel_diff=rel_diff(out, refs[name]))
            del out
            ctx.log(f"{row['name']}: ours {row['ours_ms']:.1f} ms, torch {row.get('torch_ms')}")
        except Exception as e:  # noqa: BLE001
            rec.update(row, error=short_error(e))
            if not is_oom(e):
                raise
    rec.check("tiled decode ran", "ours_ms" in rows["tiled"], note=rows["tiled"].get("error", ""))
    rec.check("outputs finite", all(r.get("finite", True) for r in rows.values()))

    # Tiled decode memory for F and 2F latent frames (compiled memory: temp + arguments + output).
    if ("tiled", frames) in memory and ctx.has_time(s.estimates["vae_compile_2F"], "tiled memory at 2F"):
        z2 = jax.ShapeDtypeStruct((1, 2 * frames, height, width, cfg.latent_channels), dt)
        start = time.perf_counter()
        compiled = vae_decode_fn(cfg, dt, tiling).lower(jax.eval_shape(lambda: params), z2, t_abs).compile()
        memory["tiled", 2 * frames] = compiled_memory(compiled)
        m1, m2 = memory["tiled", frames], memory["tiled", 2 * frames]
        ratio = None if not (m1 and m2) else (m2["temp"] + m2["output"]) / (m1["temp"] + m1["output"])
        rec.case(f"VAE tiled decode memory {2 * frames} vs {frames} latent frames",
                 compile_s=time.perf_counter() - start, memory_F=m1, memory_2F=m2, ratio=ratio)
        rec.goal(f"tiled decode memory (temp + output) {2 * frames} / {frames} latent frames", ratio, 1.25)


def section_pipeline(ctx: Context) -> None:
    """Text encoding + denoising + decoding, stage by stage, against diffusers' LTXPipeline (random weights)."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.pipeline import AUTO_TILING_PIXELS
    from ltx_jax.presets import PIPELINE_PRESETS
    from ltx_jax.scheduler import LTX_SCHEDULER

    bt, bte = load_bench("bench_transformer"), load_bench("bench_text_encoder")
    s, rec = ctx.sizes, ctx.rec
    tcfg, vcfg, t5cfg = transformer_config(s.pipe_transformer), vae_config(s.pipe_vae), t5_config(s.pipe_t5)
    dt = jnp.dtype(s.dtype)
    height, width, frames = s.pipe_video
    preset = PIPELINE_PRESETS[s.pipe_preset]
    steps = len(preset.timesteps) if preset.timesteps else preset.num_inference_steps
    guidance = preset.guidance_scale
    groups = 2 if guidance > 1 else 1
    lat = ((frames - 1) // 8 + 1, height // 32, width // 32)
    tokens = lat[0] * lat[1] * lat[2]
    text_tokens = 128
    tiled = frames * height * width > AUTO_TILING_PIXELS
    tokenizer = word_tokenizer(text_tokens)
    rec.info(video=s.pipe_video, latent=lat, steps=steps, guidance=guidance, preset=s.pipe_preset, dtype=s.dtype,
             vae_tiled=tiled, transformer=tcfg.to_dict(), vae=vcfg.to_dict(), text_encoder=t5cfg.to_dict(),
             weights="random (each side its own)")

    flops = {
        "text_encoding": bte.matmul_flops(t5cfg, groups, text_tokens),
        "denoising": steps * bt.forward_flops(tcfg, groups, tokens, text_tokens),
    }
    abstract_vae = jax.eval_shape(lambda: init_vae_decoder(vcfg, dt, rng_key(0)))
    z_abs = jax.ShapeDtypeStruct((1, *lat, vcfg.latent_channels), dt)
    flops["decoding"] = cost_flops(vae_decode_fn(vcfg, dt, None).lower(
        abstract_vae, z_abs, jax.ShapeDtypeStruct((1,), jnp.float32)))
    flops["total"] = None if flops["decoding"] is None else sum(flops.values())
    stage_rows = {k: rec.case(f"pipeline {width}x{height}x{frames} {steps} steps: {k.replace('_', ' ')}",
                              flops=flops[k])
                  for k in ("text_encoding", "denoising", "decoding", "total")}

    start = time.perf_counter()
    pipe, params = build_pipeline(tcfg, vcfg, t5cfg, s.dtype, s.pipe_preset, tokenizer)
    rec.info(build_s=time.perf_counter() - start, param_bytes={k: tree_bytes(v) for k, v in params.items()},
             attention=pipe.transformer.resolved_attention_implementation, peak_bytes_after_build=device_peak_bytes())
    call = dict(prompt=PROMPT, height=height, width=width, num_frames=frames, max_sequence_length=text_tokens)
    start = time.perf_counter()
    frames_out = pipe(**call, seed=0)
    first = time.perf_counter() - start
    first_stages = dataclasses.asdict(pipe.last_timings)
    rec.info(first_call_s=first, first_call_stages=first_stages, peak_bytes_after_first_call=device_peak_bytes())
    rec.check("frames finite", bool(np.isfinite(frames_out).all()))
    rec.check("frames shape", list(frames_out.shape) == [1, frames, height, width, 3], value=list(frames_out.shape),
              limit=[1, frames, height, width, 3])
    del frames_out
    for _ in range(s.pipe_warmup):
        pipe(**call, seed=0)
    stages = []
    for i in range(s.pipe_repeats):
        pipe(**call, seed=i + 1)
        stages.append(dataclasses.asdict(pipe.last_timings))
    for k, row in stage_rows.items():
        times = [st[k] for st in stages]
        med = add_timing(row, "ours", times)
        rec.update(row, first_call_ms=first_stages[k] * 1e3,
                   tflops=None if not flops[k] or med <= 0 else flops[k] / med / 1e12)
    total = stage_rows["total"]
    rec.update(total, peak_bytes=device_peak_bytes())
    del pipe, params

    torch = ctx.torch("diffusers LTXPipeline", need=("diffusers", "transformers"))
    # diffusers after ours (ours is the figure that matters; the comparison is skipped when the time is short). JAX
    # keeps the memory it used; torch gets the rest of the card.
    if torch is not None and ctx.has_time(s.estimates["pipeline_torch"], "diffusers LTXPipeline"):
        try:
            from diffusers import AutoencoderKLLTXVideo as TorchVAE
            from diffusers import FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
            from diffusers import LTXPipeline as TorchPipeline
            from transformers import T5Config as TorchT5Config
            from transformers import T5EncoderModel as TorchT5

            dev, tdt = ctx.torch_device(), torch_dtype(torch, s.dtype)
            theirs = TorchPipeline(
                scheduler=FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER.to_dict()),
                vae=torch_build(torch, dev, tdt, lambda: TorchVAE(**config_kwargs(vcfg))),
                text_encoder=torch_build(torch, dev, tdt, lambda: TorchT5(TorchT5Config(**t5cfg.to_dict()))),
                tokenizer=tokenizer,
                transformer=torch_build(torch, dev, tdt, lambda: LTXVideoTransformer3DModel(**config_kwargs(tcfg))),
            )
            theirs.set_progress_bar_config(disable=True)
            if tiled:
                theirs.vae.enable_tiling()
                theirs.vae.use_framewise_decoding = True
            # diffusers' LTXPipeline always passes sigmas, so it cannot take the distilled timesteps: the same number
            # of steps with its default schedule does the same work.
            kw = dict(prompt=PROMPT, height=height, width=width, num_frames=frames, num_inference_steps=steps,
                      guidance_scale=guidance, decode_timestep=preset.decode_timestep,
                      decode_noise_scale=preset.decode_noise_scale, output_type="np", max_sequence_length=text_tokens)

            def run():
                with torch.inference_mode():
                    return torch_sync(torch, theirs(**kw, generator=torch.Generator(dev).manual_seed(0)).frames)

            torch_reset_peak(torch)
            start = time.perf_counter()
            run()
            first = time.perf_counter() - start
            row = stage_rows["total"]
            tmed = add_timing(row, "torch", timed(run, 0, s.pipe_repeats, lambda o: o))
            rec.update(row, torch_first_call_ms=first * 1e3, torch_peak_bytes=torch_peak(torch),
                       torch_tflops=None if flops["total"] is None else flops["total"] / tmed / 1e12,
                       torch_note="diffusers' default 8-step schedule (it cannot take custom timesteps)")
            rec.update(row, ratio=row["ours_ms"] / row["torch_ms"])
            del theirs
        except Exception as e:  # noqa: BLE001
            rec.skip("diffusers LTXPipeline", f"failed: {short_error(e)}")
            rec.info(torch_traceback=traceback.format_exc())
        torch_free(torch)

    if ctx.on_gpu and s.pipe_video == (512, 768, 121) and tcfg.inner_dim == 2048:
        rec.goal("2B distilled 768x512x121 8 steps, total s (DESIGN.md)", total["ours_ms"] / 1e3, 1.5)


SECTIONS: dict[str, Callable[[Context], None]] = {
    "matmul_peak": section_matmul_peak,
    "attention_cudnn_vs_xla": section_attention_cudnn_vs_xla,
    "pipeline_vs_cpu_fp32": section_pipeline_vs_cpu_fp32,
    "transformer": section_transformer,
    "text_encoder": section_text_encoder,
    "scheduler": section_scheduler,
    "vae": section_vae,
    "pipeline": section_pipeline,
}


# ============================================================================================ running sections


def run_section(name: str, sizes: Sizes, rec: Recorder, deadline: float | None, use_torch: bool) -> None:
    """Runs one section in this process; status, error and peak memory go into ``rec``."""
    start = time.perf_counter()
    rec.data.update(status="running", started=datetime.datetime.now().isoformat(timespec="seconds"))
    rec.flush()
    try:
        ctx = Context(sizes, rec, deadline, use_torch, log=lambda *a: print(f"[{name}]", *a, flush=True))
        inject = os.environ.get("RUN_ALL_TEST_INJECT", "")  # test hook: "SECTION:fail" or "SECTION:hang"
        if inject.startswith(name + ":"):
            rec.case("injected partial result", ours_ms=1.0)
            if inject.endswith(":hang"):
                time.sleep(3600)
            raise RuntimeError("injected failure (RUN_ALL_TEST_INJECT)")
        SECTIONS[name](ctx)
        failed = [k for k, v in rec.data["checks"].items() if not v["ok"]]
        rec.data["status"] = "failed" if failed else "ok"
        if failed:
            rec.data["error"] = "failed checks: " + "; ".join(failed)
    except BaseException as e:  # noqa: BLE001 - recorded; KeyboardInterrupt re-raised below
        rec.data.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "error",
                        error=short_error(e), traceback=traceback.format_exc())
        if isinstance(e, KeyboardInterrupt):
            rec.data["seconds"] = time.perf_counter() - start
            rec.flush()
            raise
    rec.data["seconds"] = time.perf_counter() - start
    with contextlib.suppress(Exception):
        rec.data["peak_device_bytes"] = device_peak_bytes()
    torch_peaks = [c["torch_peak_bytes"] for c in rec.data["cases"] if c.get("torch_peak_bytes") is not None]
    rec.data["torch_peak_device_bytes"] = max(torch_peaks) if torch_peaks else None  # torch's peaks are per case
    rec.flush()


def child_main(args) -> int:
    """``--child SECTION``: one section in this (fresh) process, results written to ``--child-out`` as they come."""
    die_with_parent()
    import jax

    jax.devices()  # JAX loads its CUDA libraries (cuDNN, cuBLAS) before torch can load other versions of them
    rec = Recorder(args.child_out)
    sizes = resolve_sizes(args.sizes)
    run_section(args.child, sizes, rec, args.deadline, not args.no_torch)
    return 0


def environment() -> dict:
    """Card, driver, library versions and date, for the JSON and the markdown header."""
    import jax

    env: dict = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "python": platform.python_version(), "platform": platform.platform(),
        "backend": jax.default_backend(), "jax": jax.__version__,
    }
    try:
        import jaxlib

        env["jaxlib"] = jaxlib.__version__
    except Exception:  # noqa: BLE001
        pass
    devices = jax.devices()
    env["device_count"] = len(devices)
    env["device_kind"] = devices[0].device_kind
    with contextlib.suppress(Exception):
        stats = devices[0].memory_stats() or {}
        env["device_memory_bytes"] = stats.get("bytes_limit")
    for mod in ("flax", "numpy", "torch", "diffusers", "transformers"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001
            env[mod] = f"missing ({type(e).__name__})"
    if env["backend"] == "gpu":
        with contextlib.suppress(Exception):
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            env["nvidia_smi"] = out.stdout.strip().splitlines()[0]
            env["driver"] = env["nvidia_smi"].split(",")[1].strip()
        with contextlib.suppress(Exception):
            from jax._src.lib import cuda_versions  # not public; best effort

            env["cudnn"] = cuda_versions.cudnn_get_version()
            env["cuda_runtime"] = cuda_versions.cuda_runtime_get_version()
    else:
        env["cpu_count"] = os.cpu_count()
    return env


def probe_main(args) -> int:
    die_with_parent()
    write_json_atomic(args.child_out, environment())
    return 0


def resolve_sizes(name: str, backend: str | None = None) -> Sizes:
    if name == "auto":
        name = "gpu" if backend == "gpu" else "cpu"
    return SIZES[name]


# =================================================================================================== the runner


class Run:
    """Runs the chosen sections, keeps the JSON current, writes the markdown and the summary at the end."""

    def __init__(self, args, env: dict, sizes: Sizes, sections: list[str], start: float):
        self.args = args
        self.sizes = sizes
        self.sections = sections
        self.budget = args.budget_s if args.budget_s is not None else sizes.budget_s
        self.start = start  # the budget counts from main()'s start, the environment probe included
        self.deadline = None if not self.budget else self.start + self.budget
        self.log_dir = os.path.splitext(os.path.abspath(args.out))[0] + ".logs"
        self.data = {
            "schema": SCHEMA, "argv": sys.argv[1:] if args.argv is None else args.argv, "environment": env,
            "sizes_name": sizes.name, "sizes": dataclasses.asdict(sizes), "budget_s": self.budget,
            "isolate": args.isolate, "torch": not args.no_torch,
            "sections": {n: {"status": "pending"} for n in sections},
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "finished": None,
        }
        self.finalized = False

    def save(self) -> None:
        self.data["elapsed_s"] = time.time() - self.start
        derive(self.data)
        write_json_atomic(self.args.out, self.data)

    def section_deadline(self, index: int) -> float | None:
        """This section's share of what is left: proportional to its estimate among the sections still to run."""
        if self.deadline is None:
            return None
        left = self.deadline - time.time()
        est = [self.sizes.estimates.get(n, 30) for n in self.sections[index:]]
        return time.time() + max(0.0, left * est[0] / sum(est))

    def run(self) -> int:
        self.save()
        print(f"run_all: {len(self.sections)} sections, sizes {self.sizes.name} ({self.sizes.dtype}), "
              f"{self.data['environment'].get('device_kind')}, budget "
              f"{'none' if not self.budget else f'{self.budget:.0f} s'}; JSON -> {self.args.out}", flush=True)
        for i, name in enumerate(self.sections):
            deadline = self.section_deadline(i)
            if deadline is not None and deadline - time.time() < 3:
                self.data["sections"][name] = {"status": "skipped", "error": "time budget exhausted"}
                self.save()
                continue
            start = time.time()
            if self.args.isolate == "process":
                entry = self.run_child(name, deadline)
            else:
                rec = Recorder(on_change=lambda d, n=name: self._merge(n, d))
                try:
                    run_section(name, self.sizes, rec, deadline, not self.args.no_torch)
                finally:
                    self._merge(name, rec.data)
                entry = rec.data
            entry["wall_s"] = time.time() - start
            self._merge(name, entry)
            note = f": {entry.get('error')}" if entry.get("status") != "ok" and entry.get("error") else ""
            print(f"[{name}] {entry.get('status')} in {entry['wall_s']:.1f} s{note}", flush=True)
        return 0

    def _merge(self, name: str, section: dict) -> None:
        self.data["sections"][name] = json_safe(dict(section))
        self.save()

    def run_child(self, name: str, deadline: float | None) -> dict:
        os.makedirs(self.log_dir, exist_ok=True)
        child_out = os.path.join(self.log_dir, f"{name}.json")
        log_path = os.path.join(self.log_dir, f"{name}.log")
        with contextlib.suppress(OSError):
            os.unlink(child_out)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--child-out", child_out,
               "--sizes", self.sizes.name] + (["--no-torch"] if self.args.no_torch else [])
        if deadline is not None:
            cmd += ["--deadline", repr(deadline)]
        env = child_env()
        with open(log_path, "w") as log, open(log_path, errors="replace") as follow:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                    start_new_session=True)
            self.child = proc
            last_mtime = None
            killed = None
            try:
                while proc.poll() is None:
                    time.sleep(0.5)
                    echo_progress(follow, name)
                    with contextlib.suppress(OSError):
                        mtime = os.path.getmtime(child_out)
                        if mtime != last_mtime:
                            last_mtime = mtime
                            partial = read_json(child_out)
                            if partial:
                                self._merge(name, partial)
                    if deadline is not None and time.time() > deadline + 3:  # the section had its share
                        killed = "timeout"
                        stop(proc)
            except BaseException:
                stop(proc)
                raise
            finally:
                self.child = None
            echo_progress(follow, name)
        entry = read_json(child_out) or {}
        entry["log"] = os.path.relpath(log_path, os.path.dirname(os.path.abspath(self.args.out)))
        if killed:
            entry.update(status="timeout", error=f"stopped after its share of the time budget "
                                                 f"({entry.get('status', 'no result')} when stopped)")
        elif proc.returncode != 0 or entry.get("status") in (None, "running"):
            entry.update(status="error", error=f"process exited with {proc.returncode}: {tail(log_path, 1500)}")
        return entry

    def finalize(self, reason: str | None = None) -> None:
        if self.finalized:
            return
        self.finalized = True
        if reason:
            self.data["interrupted"] = reason
            for entry in self.data["sections"].values():
                if entry.get("status") in ("pending", "running"):
                    entry["status"] = "interrupted" if entry.get("status") == "running" else "not run"
        self.data["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        self.save()
        md = markdown(self.data)
        if self.args.results_md:
            os.makedirs(os.path.dirname(os.path.abspath(self.args.results_md)), exist_ok=True)
            new = not os.path.exists(self.args.results_md)
            with open(self.args.results_md, "a") as f:
                if new:
                    f.write("# Benchmark results\n\nTables appended by `benchmarks/run_all.py`, newest last.\n")
                f.write(md)
        print()
        print(summary_text(self.data), flush=True)


def child_env() -> dict:
    """This environment, with the repository and benchmarks/ first on PYTHONPATH (the package need not be installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, HERE] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def die_with_parent() -> None:
    """Called first in a child: the kernel kills it when the runner dies (even by SIGKILL), so no section is left
    running on the card. (Done in the child rather than in a preexec_fn: forking a threaded parent is unsafe.)"""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the runner died before the line above
        os._exit(3)


def echo_progress(follow, name: str) -> None:
    """Prints the section's own progress lines (``[name] ...``) from its log as they arrive."""
    while True:
        pos = follow.tell()
        line = follow.readline()
        if not line.endswith("\n"):  # nothing new, or a line still being written
            follow.seek(pos)
            return
        if line.startswith(f"[{name}]"):
            print(line.rstrip(), flush=True)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, SIGKILL after 3 s (its results are already on disk)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tail(path: str, chars: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


# ============================================================================================== derived figures


def derive(data: dict) -> None:
    """Fraction of the measured matmul rate for every TFLOP/s figure; the list of failing sections."""
    mm = data["sections"].get("matmul_peak", {}).get("info", {})
    peak = mm.get("matmul_tflops")
    torch_peak_rate = mm.get("torch_matmul_tflops")
    data["matmul_tflops"] = peak
    for name, entry in data["sections"].items():
        for row in entry.get("cases", []) or []:
            if peak and row.get("tflops") is not None:
                row["fraction_of_matmul_peak"] = row["tflops"] / peak
            if peak and row.get("torch_tflops") is not None:
                row["torch_fraction_of_matmul_peak"] = row["torch_tflops"] / peak
    data["matmul_tflops_torch"] = torch_peak_rate
    data["failed_sections"] = [n for n, e in data["sections"].items()
                               if e.get("status") not in ("ok", "pending", "running", "skipped")]


def fmt_ms(v) -> str:
    if v is None:
        return ""
    return f"{v:.3g}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def fmt_bytes(v) -> str:
    if v is None:
        return ""
    return f"{v / 2**30:.2f} GiB" if v >= 2**30 else f"{v / 2**20:.1f} MiB"


def fmt_num(v, spec=".2f") -> str:
    return "" if v is None else format(v, spec)


def case_rows(data: dict) -> list[list[str]]:
    rows = []
    for name, entry in data["sections"].items():
        for r in entry.get("cases", []) or []:
            notes = []
            if r.get("compile_s") is not None:
                notes.append(f"compile {r['compile_s']:.1f} s")
            if r.get("max_rel_diff") is not None:
                notes.append(f"rel diff {r['max_rel_diff']:.1e}")
            if r.get("psnr_db") is not None:
                notes.append(f"PSNR {r['psnr_db']:.1f} dB")
            if r.get("cudnn_fmha_calls") is not None:
                notes.append(f"cuDNN fmha calls {len(r['cudnn_fmha_calls'])}")
            if r.get("first_call_ms") is not None:
                notes.append(f"first call {fmt_ms(r['first_call_ms'])} ms")
            if r.get("compiled_memory"):
                notes.append(f"compiled {fmt_bytes(r['compiled_memory'].get('total'))}")
            if r.get("ratio") is not None and r.get("ours_ms") is None:
                notes.append(f"ratio {r['ratio']:.2f}")
            for k in ("error", "torch_error"):
                if r.get(k):
                    notes.append(f"{k}: {r[k][:120]}")
            frac = r.get("fraction_of_matmul_peak")
            rows.append([
                name, r["name"], fmt_ms(r.get("ours_ms")), fmt_ms(r.get("torch_ms")),
                fmt_num(r.get("ratio") if r.get("ours_ms") is not None else None),
                fmt_num(None if r.get("flops") is None else r["flops"] / 1e9, ".4g"),
                fmt_num(r.get("tflops"), ".3g"), "" if frac is None else f"{100 * frac:.0f}%",
                fmt_bytes(r.get("peak_bytes")), fmt_bytes(r.get("torch_peak_bytes")), "; ".join(notes),
            ])
    return rows


CASE_HEADER = ["section", "case", "ours ms", "diffusers ms", "ours/diffusers", "GFLOP", "TFLOP/s", "% matmul peak",
               "peak mem ours", "peak mem torch", "notes"]


def md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(data: dict) -> str:
    env = data["environment"]
    card = env.get("nvidia_smi") or env.get("device_kind")
    out = [f"\n## run_all {env.get('date', '')[:10]}: {env.get('device_kind')} ({env.get('backend')}), sizes "
           f"{data['sizes_name']} ({data['sizes']['dtype']})\n",
           f"card: {card}; driver {env.get('driver', 'n/a')}; jax {env.get('jax')} (jaxlib {env.get('jaxlib')}), "
           f"flax {env.get('flax')}, torch {env.get('torch')}, diffusers {env.get('diffusers')}, "
           f"transformers {env.get('transformers')}, python {env.get('python')}; date {env.get('date')}; "
           f"wall {data.get('elapsed_s', 0):.0f} s"
           + (f" of a {data['budget_s']:.0f} s budget" if data.get("budget_s") else "")
           + (f"; INTERRUPTED: {data['interrupted']}" if data.get("interrupted") else "") + "\n"]
    if data.get("matmul_tflops"):
        out.append(f"measured {data['sizes']['dtype']} matmul rate: {data['matmul_tflops']:.3g} TFLOP/s (ours)"
                   + (f", {data['matmul_tflops_torch']:.3g} TFLOP/s (torch)" if data.get("matmul_tflops_torch") else "")
                   + "; '% matmul peak' is relative to ours\n")
    out.append("\n" + md_table(["section", "status", "seconds", "peak device memory: ours", "torch", "note"], [
        [n, e.get("status", ""), fmt_num(e.get("wall_s") or e.get("seconds"), ".0f"),
         fmt_bytes(e.get("peak_device_bytes")), fmt_bytes(e.get("torch_peak_device_bytes")),
         (e.get("error") or "")[:200]] for n, e in data["sections"].items()]))
    out.append("\n" + md_table(CASE_HEADER, case_rows(data)))
    checks = [[n, k, "ok" if v.get("ok") else "FAIL", fmt_value(v.get("value")), fmt_value(v.get("limit"))]
              for n, e in data["sections"].items() for k, v in (e.get("checks") or {}).items()]
    if checks:
        out.append("\n" + md_table(["section", "check", "result", "value", "limit"], checks))
    goals = [[n, k, {True: "met", False: "missed", None: "n/a"}[v.get("met")], fmt_value(v.get("value")),
              f"{v.get('op')} {fmt_value(v.get('target'))}"]
             for n, e in data["sections"].items() for k, v in (e.get("goals") or {}).items()]
    if goals:
        out.append("\n" + md_table(["section", "goal", "result", "value", "target"], goals))
    skipped = [[n, k, v] for n, e in data["sections"].items() for k, v in (e.get("skipped") or {}).items()]
    if skipped:
        out.append("\n" + md_table(["section", "skipped", "why"], skipped))
    return "".join(out)


def fmt_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list) and len(v) > 6:
        return f"[{len(v)} items: {', '.join(map(str, v[:2]))}, ...]"
    return str(v)


def summary_text(data: dict) -> str:
    """The short table printed last."""
    lines = [f"run_all summary: {data['environment'].get('device_kind')}, sizes {data['sizes_name']}, "
             f"{data.get('elapsed_s', 0):.0f} s"
             + (f", matmul {data['matmul_tflops']:.3g} TFLOP/s" if data.get("matmul_tflops") else "")]
    header = ["section", "case", "ours ms", "torch ms", "ratio", "TFLOP/s", "%peak", "peak mem", "notes"]
    rows = [[r[0], r[1][:58], r[2], r[3], r[4], r[6], r[7], r[8], r[10][:60]] for r in case_rows(data)]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    for n, e in data["sections"].items():
        bad = [k for k, v in (e.get("checks") or {}).items() if not v.get("ok")]
        note = f" ({e.get('error')})" if e.get("status") != "ok" and e.get("error") else ""
        lines.append(f"{n}: {e.get('status')}{note}" + (f"; failed checks: {bad}" if bad else ""))
    lines.append("failed sections: " + (", ".join(data.get("failed_sections") or []) or "none"))
    return "\n".join(lines)


# ======================================================================================================== main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Sections: " + ", ".join(SECTIONS),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default="all", help="comma-separated section names, or 'all' (default)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/run_all_<sizes>.json)")
    p.add_argument("--results-md", default=os.path.join(HERE, "RESULTS.md"),
                   help="markdown file the table is appended to (default benchmarks/RESULTS.md; '' for none)")
    p.add_argument("--sizes", default="auto", choices=["auto", "cpu", "gpu"], help="auto: gpu on a CUDA backend")
    p.add_argument("--no-torch", action="store_true", help="skip every torch / diffusers comparison")
    p.add_argument("--budget-s", type=float, default=None,
                   help=f"wall-clock budget of the run from its start (default: the sizes' own, "
                        f"{GPU_SIZES.budget_s:.0f} s on GPU, none on CPU); each section gets a share of what is "
                        f"left, in proportion to its estimate, and is stopped past it")
    p.add_argument("--isolate", default="process", choices=["process", "none"],
                   help="process (default): each section in a fresh process; none: all in this one (debugging)")
    p.add_argument("--list", action="store_true", help="print the sections and sizes and exit")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = None if argv is None else list(argv)
    return args


def main(argv=None) -> int:
    start = time.time()
    args = parse_args(argv)
    if args.probe:
        return probe_main(args)
    if args.child:
        return child_main(args)
    if args.list:
        for name, fn in SECTIONS.items():
            print(f"{name:24s} {fn.__doc__.splitlines()[0]}")
        for sizes in SIZES.values():
            print(json.dumps(json_safe(dataclasses.asdict(sizes))))
        return 0
    sections = list(SECTIONS) if args.sections == "all" else [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = [x for x in sections if x not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    sections = [n for n in SECTIONS if n in sections]  # matmul_peak first: later sections are fractions of it

    # The environment (and so the backend) from a short child process: this process never touches the GPU.
    if args.isolate == "process":
        with tempfile.TemporaryDirectory() as tmp:
            probe = os.path.join(tmp, "env.json")
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", "--child-out", probe],
                                  capture_output=True, text=True, cwd=ROOT, env=child_env())
            env = read_json(probe)
            if env is None:
                raise SystemExit(f"could not start JAX in a child process:\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-3000:]}")
    else:
        env = environment()
    sizes = resolve_sizes(args.sizes, env["backend"])
    if args.out is None:
        args.out = os.path.join(HERE, f"run_all_{sizes.name}.json")
    run = Run(args, env, sizes, sections, start)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, on_term) if threading_is_main() else None
    try:
        run.run()
        run.finalize()
    except KeyboardInterrupt as e:
        child = getattr(run, "child", None)
        if child is not None:
            stop(child)
        run.finalize(reason=f"interrupted ({e or 'Ctrl-C'})")
        return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    return 1 if run.data.get("failed_sections") else 0


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())

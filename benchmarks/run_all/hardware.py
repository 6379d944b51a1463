"""What the device and the libraries report: peak memory, XLA's memory and cost analyses, cuDNN calls in HLO, torch
on the same card, out-of-memory errors, and the environment (card, driver, versions) of a run."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import subprocess
from typing import Any, Callable


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


CONV_LINE = re.compile(r"stablehlo\.convolution\(| convolution\(|custom_call_target=\"__cudnn\$conv")
CUDNN_CONV = re.compile(r'custom_call_target="(__cudnn\$conv\w*)"')


def conv_shapes(text: str) -> list[str]:
    """The distinct convolutions of a program's text, each as its operand and result shapes, window and dimension
    numbers, without names, layouts or metadata: what XLA's GPU autotuner times cuDNN's algorithms for, once for each
    distinct one. StableHLO (``Lowered.as_text()``: ``stablehlo.convolution``) or compiled HLO
    (``Compiled.as_text()``: ``convolution`` on the CPU, inside fusions too; cuDNN's ``__cudnn$conv*`` custom calls on
    a GPU)."""
    shapes = set()
    for line in text.splitlines():
        if not CONV_LINE.search(line):
            continue
        body = line.split(" = ", 1)[-1]  # the instruction's name off
        body = re.sub(r",?\s*(metadata|frontend_attributes)=\{[^}]*\}", "", body)
        body = re.sub(r",?\s*backend_config=.*$", "", body)  # JSON with nested braces: always last
        body = re.sub(r"\s*loc\(.*?\)", "", body)
        body = re.sub(r"%[\w.\-#]+", "%", re.sub(r"\{[\d,]*\}", "", body))  # operand names, layouts
        shapes.add(" ".join(body.split()))
    return sorted(shapes)


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


def traced_flops(fn, *args) -> float:
    """FLOPs of a jitted ``fn(*args)``: the matrix products and convolutions of its traced program, loops counted
    by their trip counts (``ltx_jax.programs.matmul_flops``). The same on every backend; XLA's cost analysis counts
    a loop body once, and on the H200 gave no count at all for the VAE decode."""
    from ltx_jax.programs import matmul_flops

    return matmul_flops(fn.trace(*args).jaxpr)


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


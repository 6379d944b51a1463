"""Low-precision weights on the host: int8 / fp8 (e4m3) per-output-channel quantization, and the fp8 layouts of
stored checkpoints.

The model side is ``ltx_jax.models.layers.Dense(weights=...)``: a kernel [in, out] in int8 or float8_e4m3fn and a
float32 ``kernel_scale`` [out]; the layer computes ``dot(x, kernel.astype(dtype)) * scale``. Here, a float kernel
becomes that pair, symmetric per output column (``scale = max|w| / QMAX``; all-zero columns get scale 1):

    int8: q = clip(round_half_even(w / scale), -127, 127)     error <= scale / 2 = max|w| / 254 of the column
    fp8:  q = float8_e4m3fn(w / scale), |w / scale| <= 448     relative error <= 2^-4 (3 mantissa bits), ~6 %

Stored fp8 checkpoints. Lightricks' fp8 releases (``ltxv-*-fp8.safetensors``) are written by LTX-Video-Q8-Kernels'
``scripts/convert_weights.py``: the 2-D ``weight`` of every ``transformer_blocks.*`` attention and feed-forward
Linear is cast with ``tensor.to(torch.float8_e4m3fn)`` and no scale is saved (its ``FP8Linear`` stores the same
plain cast); biases, norms and every tensor outside the blocks stay bf16. Other tools save a companion scale per
fp8 weight: ``<module>.scale_weight`` (ComfyUI "scaled fp8", a scalar) or ``<module>.weight_scale`` (diffusers-style,
scalar or per output channel), with an optional activation scale ``scale_input`` / ``input_scale`` that a
weight-only dequantisation does not use. So a stored fp8 tensor means ``w = fp8 * scale`` with scale 1 when there
is no companion; a scalar, [1], [out] or [out, 1] scale is read, anything else (block-wise ``weight_scale_inv``,
ComfyUI's ``comfy_quant`` records, int8 tensors with scales) is refused by name. A file written with the
Q8-kernels' ``--hadamard`` option stores rotated weights that need rotated activations: nothing in the file tells
them apart, and such files load wrong; Lightricks' released files are not rotated (the Q8 patcher rotates at load).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import ml_dtypes
import numpy as np

from weight_conversion.safetensors_io import CheckpointError

Path = tuple[str, ...]

INT8_MAX = 127.0
FP8_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)  # 448
QUANTIZED = {np.dtype(np.int8): "int8", np.dtype(ml_dtypes.float8_e4m3fn): "fp8"}
FP8_E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
FP8_DTYPES = (FP8_E4M3, np.dtype(ml_dtypes.float8_e5m2))
SCALE_LEAF = "kernel_scale"

# Companions of a stored ``<module>.weight``: its dequantisation scale, and activation scales we do not need.
WEIGHT_SCALE_SUFFIXES = ("weight_scale", "scale_weight")
INPUT_SCALE_SUFFIXES = ("input_scale", "scale_input")
# Quantization records of layouts we do not read: refused with the layout's name rather than "unexpected keys".
UNSUPPORTED_SUFFIXES = {
    "weight_scale_inv": "block-wise fp8 scales (DeepSeek / transformers' FP8 layout)",
    "comfy_quant": "ComfyUI mixed-precision quantization records",
}


def weight_format(dtype: Any) -> str | None:
    """'int8' / 'fp8' for a quantized kernel dtype, None for a float one."""
    return QUANTIZED.get(np.dtype(dtype))


def quantize_kernel(kernel: np.ndarray, weights: str) -> tuple[np.ndarray, np.ndarray]:
    """A float kernel [in, out] -> (q [in, out] int8 or float8_e4m3fn, scale [out] float32), symmetric per column."""
    w = np.asarray(kernel, np.float32)
    axes = tuple(range(w.ndim - 1))
    amax = np.maximum(np.max(w, axis=axes), -np.min(w, axis=axes))  # [out], without an |w| temporary
    qmax = {"int8": INT8_MAX, "fp8": FP8_MAX}[weights]
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    scaled = w / scale  # the one float32 temporary; the clip only guards the last ulp of the division
    np.clip(scaled, -qmax, qmax, out=scaled)
    if weights == "int8":
        return np.rint(scaled, out=scaled).astype(np.int8), scale
    return scaled.astype(ml_dtypes.float8_e4m3fn), scale


def dequantize_kernel(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(q [..., in, out], scale [..., out]) -> float32 kernel: what the quantized Dense multiplies by."""
    return np.asarray(q, np.float32) * np.asarray(scale, np.float32)[..., None, :]


def quantize_params(params: Mapping[str, Any], abstract: Mapping[str, Any]) -> dict:
    """A float param tree -> the tree of the same model built with ``weights=`` (``abstract``: its ``eval_shape``).

    Kernels whose abstract dtype is int8 / float8_e4m3fn are quantized one layer at a time on the host (leading
    axes are scanned layers) and get their ``kernel_scale``; every other leaf is kept as it is.
    """
    out = {}
    for name, target in abstract.items():
        if isinstance(target, Mapping):
            out[name] = quantize_params(params[name], target)
        elif name == SCALE_LEAF:
            continue  # filled with its kernel
        elif name == "kernel" and weight_format(target.dtype):
            kernel = np.asarray(params[name], np.float32)
            q = np.empty(target.shape, target.dtype)
            scale = np.empty(abstract[SCALE_LEAF].shape, np.float32)
            for index in np.ndindex(*kernel.shape[:-2]):
                q[index], scale[index] = quantize_kernel(kernel[index], weight_format(target.dtype))
            out[name], out[SCALE_LEAF] = jax.device_put(q), jax.device_put(scale)
        else:
            out[name] = params[name]
    return out


def weight_companions(key: str, source_keys) -> tuple[str | None, list[str]]:
    """For a checkpoint key ``<module>.weight``: (its scale key or None, the activation-scale keys to skip)."""
    if not key.endswith(".weight"):
        return None, []
    base = key[: -len("weight")]
    for suffix, layout in UNSUPPORTED_SUFFIXES.items():
        if base + suffix in source_keys:
            raise CheckpointError(
                f"{base + suffix!r}: {layout} are not a quantized layout ltx_jax reads. It reads fp8 (e4m3) weights "
                "as stored, with an optional scalar or per-output-channel '<module>.weight_scale' / "
                "'<module>.scale_weight'; convert the file to bf16, or to that layout, first."
            )
    scales = [base + s for s in WEIGHT_SCALE_SUFFIXES if base + s in source_keys]
    if len(scales) > 1:
        raise CheckpointError(f"{key!r} has two scales {scales}; keep one.")
    return (scales[0] if scales else None), [base + s for s in INPUT_SCALE_SUFFIXES if base + s in source_keys]


def check_scale_shape(scale_key: str, scale_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> None:
    """A stored scale must be per tensor (scalar, [1]) or per output channel ([out], [out, 1]) of its weight."""
    out = weight_shape[0] if weight_shape else 1
    if tuple(scale_shape) not in ((), (1,), (out,), (out, 1)):
        raise CheckpointError(
            f"{scale_key!r} has shape {tuple(scale_shape)}; for the weight of shape {tuple(weight_shape)} ltx_jax "
            f"reads a per-tensor scale (shape () or (1,)) or a per-output-channel one ({out},) / ({out}, 1). "
            "This fp8 layout is not one it recognises."
        )


def stored_scale(weight: np.ndarray, scale: np.ndarray | None, key: str) -> np.ndarray | None:
    """The float32 scale of a stored (torch-layout [out, ...]) weight, shaped to broadcast over it; None when the
    weight is a plain float tensor. Raises when a scale sits next to a tensor that is not fp8."""
    if weight.dtype not in FP8_DTYPES:
        if scale is not None:
            raise CheckpointError(
                f"{key!r} is stored as {weight.dtype} with a scale next to it; ltx_jax reads scales of fp8 (e4m3/e5m2) "
                "weights only. Convert the file to bf16 first."
            )
        if np.issubdtype(weight.dtype, np.integer):
            raise CheckpointError(f"{key!r} is an integer tensor ({weight.dtype}) where a float weight is expected.")
        return None
    if scale is None:
        return np.ones((1,) * weight.ndim, np.float32)
    scale = np.asarray(scale, np.float32).reshape(-1)
    return scale.reshape((scale.size,) + (1,) * (weight.ndim - 1))


def dequantize_stored(weight: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """A stored tensor with its scale applied: fp8 -> float32 times the broadcastable ``scale``; a float tensor
    (``scale`` None) is returned as it is, in its own dtype (a bf16 file is never upcast on the way to bf16)."""
    return weight if scale is None else weight.astype(np.float32) * scale

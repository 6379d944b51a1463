"""The one construction point of every linear layer in ltx_jax's models.

Each model builds its linears with ``dense(owner, features, ...)``, which takes the compute dtype, the param dtype,
the matmul precision and the weight format from the owning module. Quantized kernels and LoRA adapters plug in here,
once, instead of in every model:

- ``weights="int8"`` / ``"fp8"``: the kernel is stored in int8 / float8_e4m3fn with a float32 scale per output
  channel (param ``kernel_scale``); the matmul runs in the compute dtype on the upcast kernel and the scale multiplies
  its output (exact: the scale is per output column), so XLA fuses the dequantisation into the matmul.
- ``compute="fp8"`` (with ``weights="fp8"``; inference): the activation is quantized too, to float8_e4m3fn with one
  float32 scale per call (``amax / 448``, taken from the activation itself), and the matmul multiplies the two fp8
  operands (``fp8_matmul``). Written as flax's ``fp8_ops`` write it (quantize, dequantize by a scalar, dot), which
  XLA's GPU GEMM rewriter turns into one cuBLASLt fp8 GEMM (``__cublas$lt$matmul$f8``, sm_89 / sm_90 and later) with
  the scale folded in; other backends run the same program on the upcast operands (emulated: the same numbers).
- LoRA: when the ``"lora"`` collection holds ``a`` [in, R], ``b`` [R, out] and ``scale`` [R] for a layer, the layer
  adds ``((x @ a) * scale) @ b``; the scales are traced, so new adapter weights (and other adapters of the same ranks)
  never recompile (``weight_conversion.lora`` builds the collection).

Sharding: every layer names the logical axes of its kernel, ``axes`` = (in, out) (``ltx_jax.sharding``); its
``bias`` and ``kernel_scale`` take the out axis, and ``lora_axes`` derives its adapters' axes from the kernel's.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Initializer = Callable[..., jax.Array]

#: Kernel storage formats of ``Dense.weights`` (None: the param dtype).
WEIGHT_FORMATS = (None, "int8", "fp8")
QUANTIZED_DTYPES = {"int8": jnp.dtype(jnp.int8), "fp8": jnp.dtype(jnp.float8_e4m3fn)}
#: Matmul modes of ``Dense.compute`` (None: the compute dtype's matmul on the upcast kernel).
COMPUTE_MODES = (None, "fp8")
FP8_MAX = float(jnp.finfo(jnp.float8_e4m3fn).max)  # 448
LORA_COLLECTION = "lora"


def check_weights(weights: str | None, name: str = "weights") -> None:
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"{name}={weights!r}; use None (the dtype's), 'int8' or 'fp8'.")


def check_compute(compute: str | None, weights: str | None) -> None:
    """The one rule of ``compute``: one of ``COMPUTE_MODES``, and "fp8" only over fp8 kernels; a one-line error."""
    if compute not in COMPUTE_MODES:
        raise ValueError(f"compute={compute!r}; use None (matmuls in the dtype) or 'fp8' (fp8 x fp8 matmuls).")
    if compute == "fp8" and weights != "fp8":
        raise ValueError(f"compute='fp8' multiplies fp8 activations by fp8 kernels: it needs weights='fp8' (or an "
                         f"fp8 checkpoint, which loads with it), not weights={weights!r}.")


def fp8_matmul(x: jax.Array, kernel: jax.Array, kernel_scale: jax.Array, dtype: Dtype) -> jax.Array:
    """``x @ (kernel * kernel_scale)`` as an fp8 x fp8 matmul: x [..., in] (any float dtype), kernel [in, out]
    float8_e4m3fn, kernel_scale [out] float32 -> [..., out] in ``dtype``.

    x is quantized per tensor: ``act_scale = max|x| / 448`` in float32 (1 where x is all zeros), ``x8 =
    float8_e4m3fn(clip(x / act_scale))``. The dot takes ``x8 * act_scale`` (a scalar dequantisation) and the kernel
    upcast without a scale, as flax's ``fp8_ops`` do: XLA's GPU GEMM rewriter matches converts from f8 (times a scalar)
    feeding a dot and makes them one cuBLASLt fp8 GEMM with the scale as its A scale. The per-output-channel
    ``kernel_scale`` cannot go inside cuBLASLt's per-tensor scales, so it multiplies the output (exact: one factor
    per output column), fused with what follows.
    """
    amax = jnp.max(jnp.abs(x)).astype(jnp.float32)  # exact in any float dtype
    act_scale = jnp.where(amax > 0, amax / FP8_MAX, 1.0)  # [] float32
    x8 = jnp.clip(x.astype(jnp.float32) / act_scale, -FP8_MAX, FP8_MAX).astype(jnp.float8_e4m3fn)  # [..., in]
    x_dq = x8.astype(dtype) * act_scale.astype(dtype)
    contract = (((x.ndim - 1,), (0,)), ((), ()))
    y = jax.lax.dot_general(x_dq, kernel.astype(dtype), contract, preferred_element_type=dtype)  # [..., out]
    return y * kernel_scale.astype(dtype)


class Dense(nn.Module):
    """``y = x @ kernel + bias`` over the last axis; params ``kernel`` [in, out] and ``bias`` [out].

    The same params and the same arithmetic as ``flax.linen.Dense`` (inputs and params promoted to ``dtype``, one
    ``dot_general``), so checkpoints and numerics do not depend on which of the two built a layer.

    Attributes:
      features: output width.
      axes: the logical axes of ``kernel`` [in, out], e.g. ``("embed", "heads")`` (``ltx_jax.sharding``); ``bias``
        and ``kernel_scale`` [out] take ``axes[1]``.
      use_bias: add ``bias``.
      dtype: compute dtype; param_dtype: dtype of the params created by ``init``.
      precision: matmul precision (None = backend default).
      weights: kernel storage, one of ``WEIGHT_FORMATS`` (module docstring).
      compute: the matmul, one of ``COMPUTE_MODES``: None (in ``dtype``) or "fp8" (``fp8_matmul``; needs
        ``weights="fp8"``; ``precision`` does not apply).
    """

    features: int
    axes: tuple[str, str]
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    weights: str | None = None
    compute: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [..., in] -> [..., features] in ``dtype``."""
        check_weights(self.weights)
        check_compute(self.compute, self.weights)
        shape = (x.shape[-1], self.features)
        kernel_axes, out_axes = tuple(self.axes), tuple(self.axes)[1:]
        bias = None
        if self.use_bias:
            bias = self.param("bias", nn.with_logical_partitioning(self.bias_init, out_axes), (self.features,),
                              self.param_dtype)
        contract = (((x.ndim - 1,), (0,)), ((), ()))
        if self.weights is None:
            kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, kernel_axes), shape,
                                self.param_dtype)
            x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
            y = jax.lax.dot_general(x, kernel, contract, precision=self.precision)
        else:
            kernel = self.param("kernel", nn.with_logical_partitioning(nn.initializers.zeros_init(), kernel_axes),
                                shape, QUANTIZED_DTYPES[self.weights])
            scale = self.param("kernel_scale", nn.with_logical_partitioning(nn.initializers.ones_init(), out_axes),
                               (self.features,), jnp.float32)
            x, bias = nn.dtypes.promote_dtype(x, bias, dtype=self.dtype)
            if self.compute == "fp8":
                y = fp8_matmul(x, kernel, scale, self.dtype)
            else:
                y = jax.lax.dot_general(x, kernel.astype(self.dtype), contract, precision=self.precision)
                y = y * scale.astype(self.dtype)
        if self.has_variable(LORA_COLLECTION, "a"):
            a, b, s = (self.get_variable(LORA_COLLECTION, n).astype(self.dtype) for n in ("a", "b", "scale"))
            h = jax.lax.dot_general(x, a, contract, precision=self.precision) * s  # [..., R]
            y = y + jax.lax.dot_general(h, b, (((h.ndim - 1,), (0,)), ((), ())), precision=self.precision)
        return y if bias is None else y + bias


def dense(owner: nn.Module, features: int, axes: tuple[str, str], **kwargs) -> Dense:
    """A ``Dense`` to ``features`` with kernel axes ``axes`` (in, out) and the ``dtype``, ``param_dtype``,
    ``precision``, ``weights`` and ``compute`` of ``owner`` (the module that holds it; ``weights`` and ``compute``
    only where the owner has the field).

    ``kwargs`` are the other ``Dense`` fields (``use_bias``, ``kernel_init``) and ``name`` inside ``@nn.compact``.
    """
    kwargs.setdefault("weights", getattr(owner, "weights", None))
    kwargs.setdefault("compute", getattr(owner, "compute", None))
    return Dense(features, axes, dtype=owner.dtype, param_dtype=owner.param_dtype,
                 precision=getattr(owner, "precision", None), **kwargs)


def lora_axes(param_axes: Mapping[str, Any], collection: Mapping[str, Any]) -> dict:
    """The logical axes of a ``"lora"`` collection (``a`` [..., in, R], ``b`` [..., R, out], ``scale`` [..., R] per
    adapted layer, as ``weight_conversion.lora.lora_collection`` builds it), from the axes of the kernels it adapts.

    ``param_axes``: the model's (``ltx_jax.sharding.param_axes(module)``). ``a`` takes the kernel's in axis, ``b`` its
    out axis, the rank R stays whole, and a scanned kernel's leading "layers" axis leads all three. Returns a tree
    nested like ``collection`` (arrays or shapes) with a tuple of names per leaf.
    """
    if "a" in collection and not isinstance(collection["a"], Mapping):
        *lead, axis_in, axis_out = param_axes["kernel"]
        lead = tuple(lead)
        return {"a": lead + (axis_in, "replicated"), "b": lead + ("replicated", axis_out),
                "scale": lead + ("replicated",)}
    return {name: lora_axes(param_axes[name], sub) for name, sub in collection.items()}

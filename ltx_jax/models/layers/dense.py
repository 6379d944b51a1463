"""The one construction point of every linear layer in ltx_jax's models.

Each model builds its linears with ``dense(owner, features, ...)``, which takes the compute dtype, the param dtype and
the matmul precision from the owning module. Quantized kernels, LoRA adapters and sharding annotations plug in here,
once, instead of in every model.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Initializer = Callable[..., jax.Array]


class Dense(nn.Module):
    """``y = x @ kernel + bias`` over the last axis; params ``kernel`` [in, out] and ``bias`` [out].

    The same params and the same arithmetic as ``flax.linen.Dense`` (inputs and params promoted to ``dtype``, one
    ``dot_general``), so checkpoints and numerics do not depend on which of the two built a layer.

    Attributes:
      features: output width.
      use_bias: add ``bias``.
      dtype: compute dtype; param_dtype: dtype of the params created by ``init``.
      precision: matmul precision (None = backend default).
    """

    features: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [..., in] -> [..., features] in ``dtype``."""
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=self.precision)
        return y if bias is None else y + bias


def dense(owner: nn.Module, features: int, **kwargs) -> Dense:
    """A ``Dense`` with the ``dtype``, ``param_dtype`` and ``precision`` of ``owner`` (the module that holds it).

    ``kwargs`` are the other ``Dense`` fields (``use_bias``, ``kernel_init``) and ``name`` inside ``@nn.compact``.
    """
    return Dense(features, dtype=owner.dtype, param_dtype=owner.param_dtype, precision=getattr(owner, "precision", None),
                 **kwargs)

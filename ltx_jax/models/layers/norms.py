"""Normalisations shared by the models, statistics always in float32 (as the references compute them)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def rms_normalize(x: jax.Array, eps: float) -> jax.Array:
    """``x / sqrt(mean(x^2) + eps)`` over the last axis, in float32 (returns float32)."""
    x32 = x.astype(jnp.float32)
    return x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)


def layer_normalize(x: jax.Array, eps: float) -> jax.Array:
    """``(x - mean) / sqrt(var + eps)`` over the last axis (biased variance, as torch), in float32 (returns float32)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return (x32 - mean) * jax.lax.rsqrt(var + eps)


def layer_norm_no_affine(x: jax.Array, eps: float) -> jax.Array:
    """``torch.nn.LayerNorm(elementwise_affine=False)`` over the last axis, cast back to x's dtype."""
    return layer_normalize(x, eps).astype(x.dtype)


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """The VAE's weightless RMS norm over channels (diffusers' ``RMSNorm(elementwise_affine=False)``).

    Returns float32: the VAE modulates and activates before casting back.
    """
    return rms_normalize(x, eps)


class RMSNorm(nn.Module):
    """RMS norm over the last axis, computed in float32 and cast back to the input dtype.

    ``use_weight=False`` is diffusers' ``RMSNorm(elementwise_affine=False)`` (eps 1e-6 in the blocks);
    ``use_weight=True`` is ``torch.nn.RMSNorm`` with its ``weight`` [C] (eps 1e-5 on q and k; T5's layer norm), whose
    logical axis ``axis`` names (``ltx_jax.sharding``; required with a weight).
    """

    eps: float
    use_weight: bool = True
    param_dtype: Dtype = jnp.float32
    axis: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = rms_normalize(x, self.eps)
        if self.use_weight:
            weight = self.param("weight", nn.with_logical_partitioning(nn.initializers.ones, (_named(self),)),
                                (x.shape[-1],), self.param_dtype)
            y = y * weight.astype(jnp.float32)
        return y.astype(x.dtype)


class LayerNorm(nn.Module):
    """``torch.nn.LayerNorm`` over the last axis with ``weight`` and ``bias`` [C] (torch's names), statistics in
    float32; ``axis``: their logical axis (``ltx_jax.sharding``; required)."""

    eps: float
    param_dtype: Dtype = jnp.float32
    axis: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        axes = (_named(self),)
        weight = self.param("weight", nn.with_logical_partitioning(nn.initializers.ones, axes), (c,), self.param_dtype)
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, axes), (c,), self.param_dtype)
        y = layer_normalize(x, self.eps)
        return (y * weight.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


def _named(norm: nn.Module) -> str:
    if norm.axis is None:
        raise ValueError(f"{type(norm).__name__} {norm.name}: a norm with params needs axis= (the logical axis of its "
                         "weight, ltx_jax.sharding).")
    return norm.axis

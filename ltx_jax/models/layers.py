"""Small building blocks shared by the LTX-Video models.

Axis letters used in shape comments:
    B batch, N video tokens, T text tokens, D model width, H heads, K head dim, C channels.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
AttentionImplementation = Literal["xla", "cudnn"]


class RMSNorm(nn.Module):
    """RMS norm over the last axis, computed in float32 and cast back to the input dtype.

    ``use_weight=False`` is diffusers' ``RMSNorm(elementwise_affine=False)`` (eps 1e-6 in the blocks);
    ``use_weight=True`` is ``torch.nn.RMSNorm`` with its ``weight`` (eps 1e-5 on q and k).
    """

    eps: float
    use_weight: bool = True
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        if self.use_weight:
            weight = self.param("weight", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
            y = y * weight.astype(jnp.float32)
        return y.astype(x.dtype)


def layer_norm_no_affine(x: jax.Array, eps: float) -> jax.Array:
    """``torch.nn.LayerNorm(elementwise_affine=False)`` over the last axis, statistics in float32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def timestep_sinusoids(timesteps: jax.Array, dim: int = 256, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal timestep features, cos first (diffusers' ``Timesteps(flip_sin_to_cos=True, shift=0)``).

    Args:
      timesteps: [M] float, on the 0-1000 scale.
    Returns:
      [M, dim] float32.
    """
    half = dim // 2
    # Exponents rounded to float32 as torch rounds them, then exp in float64 rounded once: this matches
    # torch's float32 exp on all but 2 of the 128 frequencies (numpy's float32 exp differs on 55, XLA's on 17),
    # which matters because timesteps up to 1000 magnify a 1-ulp frequency difference to ~1e-5 in sin/cos.
    exponent = (np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32)) / np.float32(half)
    freqs = jnp.asarray(np.exp(exponent.astype(np.float64)).astype(np.float32))  # [half]
    args = timesteps.astype(jnp.float32)[:, None] * freqs[None, :]  # [M, half]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """float32 linspace computed the way torch does it (both halves stepped from their own end)."""
    if steps == 1:
        return np.array([start], dtype=np.float32)
    step = np.float32((end - start) / (steps - 1))
    i = np.arange(steps, dtype=np.float32)
    half = steps // 2
    return np.where(
        np.arange(steps) < half,
        np.float32(start) + step * i,
        np.float32(end) - step * (np.float32(steps - 1) - i),
    ).astype(np.float32)


def exact_divide(x: jax.Array, divisor: float) -> jax.Array:
    """``x / divisor`` rounded as IEEE division (and torch) round it.

    XLA rewrites division by a broadcast scalar into multiplication by its reciprocal, which differs from the
    true quotient by one ulp about half the time. RoPE angles reach ~1e5 radians, where one ulp of the
    coordinate is visible, so the divisor is hidden behind an optimisation barrier to keep a real division.
    """
    den = jax.lax.optimization_barrier(jnp.full(x.shape, divisor, x.dtype))
    return x / den


def apply_rotary_emb(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates interleaved channel pairs (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin), in float32.

    Args:
      x: [B, N, D] queries or keys (all heads flattened, as diffusers applies RoPE before the head split).
      cos, sin: [B, N, D] float32.
    Returns:
      [B, N, D] in x's dtype.
    """
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)  # [B, N, D/2, 2]
    rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)


def default_attention_implementation(dtype: Dtype, head_dim: int) -> AttentionImplementation:
    """cuDNN flash attention on CUDA for half-precision inputs with a head size it supports, XLA otherwise.

    cuDNN's fused kernel takes only fp16/bf16 and head sizes that are multiples of 8 up to 128; fp32 runs
    (parity checks) and CPU runs take the XLA path, which is exact.
    """
    on_gpu = jax.default_backend() == "gpu"
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    if on_gpu and half and head_dim % 8 == 0 and head_dim <= 128:
        return "cudnn"
    return "xla"


def attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    key_mask: jax.Array | None,
    implementation: AttentionImplementation,
) -> jax.Array:
    """Multi-head attention with an optional key padding mask.

    Args:
      query: [B, N, H, K]; key, value: [B, S, H, K].
      key_mask: None or [B, S] bool, True for keys that take part.
        A row with no valid key attends to all keys: diffusers adds a -10000 bias to every masked
        score, which shifts such a row uniformly and leaves its softmax unmasked.
      implementation: "xla" or "cudnn".
    Returns:
      [B, N, H, K].

    How the mask reaches each backend (no [B, H, N, S] bias is ever built by us):
      * "cudnn": the mask becomes ``key_value_seq_lengths`` (cuDNN's PADDING mask type, applied inside the
        fused kernel). This assumes right-padded masks (valid keys first), which is what T5 tokenizers
        produce; ``LTXVideoTransformer3DModel`` checks this when the mask is a concrete array.
      * "xla": the mask goes in as a broadcastable [B, 1, 1, S] boolean, which is exact for any mask
        pattern; XLA fuses the select into the softmax.
    """
    if key_mask is None:
        return jax.nn.dot_product_attention(query, key, value, implementation=implementation)
    key_mask = key_mask.astype(bool)
    any_valid = jnp.any(key_mask, axis=-1, keepdims=True)  # [B, 1]
    key_mask = jnp.logical_or(key_mask, jnp.logical_not(any_valid))
    if implementation == "cudnn":
        lengths = jnp.sum(key_mask, axis=-1).astype(jnp.int32)  # [B]
        return jax.nn.dot_product_attention(
            query, key, value, key_value_seq_lengths=lengths, implementation="cudnn"
        )
    mask = key_mask[:, None, None, :]  # [B, 1, 1, S]
    return jax.nn.dot_product_attention(query, key, value, mask=mask, implementation=implementation)

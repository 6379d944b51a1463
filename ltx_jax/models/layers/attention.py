"""Attention dispatch: cuDNN flash attention on CUDA in half precision, XLA elsewhere; key padding masks.

Axis letters: B batch, N queries, S keys, H heads, K head dim.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp

Dtype = Any
AttentionImplementation = Literal["xla", "cudnn"]


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

"""Attention dispatch: cuDNN flash attention on CUDA in half precision, XLA elsewhere; key padding masks.

Axis letters: B batch, N queries, S keys, H heads, K head dim.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

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


def resolve_attention_implementation(requested: str | None, dtype: Dtype, *head_dims: int) -> AttentionImplementation:
    """A module's attention backend: the one asked for ("xla" / "cudnn", checked), or with None cuDNN where every
    one of the module's head sizes can take it (``default_attention_implementation``), else XLA."""
    if requested is None:
        defaults = {default_attention_implementation(dtype, d) for d in head_dims}
        return "cudnn" if defaults == {"cudnn"} else "xla"
    if requested not in ("xla", "cudnn"):
        raise ValueError(f"attention_implementation={requested!r}; use 'xla', 'cudnn' or None (automatic).")
    return requested


def attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    key_mask: jax.Array | None,
    implementation: AttentionImplementation,
    bias: jax.Array | None = None,
) -> jax.Array:
    """Multi-head attention with an optional key padding mask and an optional additive score bias.

    Args:
      query: [B, N, H, K]; key, value: [B, S, H, K].
      key_mask: None or [B, S] bool, True for keys that take part.
        A row with no valid key attends to all keys: diffusers adds a -10000 bias to every masked
        score, which shifts such a row uniformly and leaves its softmax unmasked.
      implementation: "xla" or "cudnn".
      bias: None or an additive bias broadcastable to [B, H, N, S] (diffusers' float attention masks, e.g. LTX-2's
        video self-attention mask as ``(1 - m) * -10000``), added to the scaled scores.
    Returns:
      [B, N, H, K].

    How the mask reaches each backend (no [B, H, N, S] bias is ever built by us):
      * "cudnn": the mask becomes ``key_value_seq_lengths`` (cuDNN's PADDING mask type, applied inside the
        fused kernel). This assumes right-padded masks (valid keys first), which is what T5 tokenizers
        produce; ``LTXVideoTransformer3DModel`` checks this when the mask is a concrete array.
      * "xla": the mask goes in as a broadcastable [B, 1, 1, S] boolean, which is exact for any mask
        pattern; XLA fuses the select into the softmax.
    """
    if bias is not None:
        bias = bias.astype(query.dtype)
    if key_mask is None:
        return jax.nn.dot_product_attention(query, key, value, bias=bias, implementation=implementation)
    key_mask = key_mask.astype(bool)
    any_valid = jnp.any(key_mask, axis=-1, keepdims=True)  # [B, 1]
    key_mask = jnp.logical_or(key_mask, jnp.logical_not(any_valid))
    if implementation == "cudnn":
        lengths = jnp.sum(key_mask, axis=-1).astype(jnp.int32)  # [B]
        return jax.nn.dot_product_attention(
            query, key, value, bias=bias, key_value_seq_lengths=lengths, implementation="cudnn"
        )
    mask = key_mask[:, None, None, :]  # [B, 1, 1, S]
    return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask, implementation=implementation)


def context_parallel_attention(query: jax.Array, key: jax.Array, value: jax.Array, *, plan,
                               implementation: AttentionImplementation, key_mask: jax.Array | None = None
                               ) -> jax.Array:
    """Self-attention over tokens sharded on the mesh's ``context`` axis, Ulysses-style (DeepSpeed-Ulysses).

    Each device holds N/c tokens of every head; an all-to-all turns that into all N tokens of H/c heads, the local
    kernel (cuDNN flash attention on GPU, XLA here) runs on full sequences, and a second all-to-all brings the output
    back to N/c tokens of every head. Per device that is 4 all-to-alls of N*D/c elements (q, k, v, out): (4/c) N D
    moved, against 2 N D (c-1)/c for gathering (or ring-passing) keys and values; so for c >= 3 it moves less, it
    keeps the local kernel a stock one (a ring needs a kernel that returns its softmax statistics), and its limit
    (c divides the heads: 32 in the 2B and 13B models) is no limit in practice. Tokens are padded to a multiple of c
    and the padded keys masked out (right padding, so cuDNN's sequence lengths express it).

    Args:
      query, key, value: [B, N, H, K], the same N (self-attention).
      plan: an ``ltx_jax.sharding.ShardingPlan`` with a ``context`` axis of size c that divides H / tensor.
      key_mask: None or [B, N] bool, True for keys that take part (as ``attention``; cuDNN: right-padded).
    Returns:
      [B, N, H, K].
    """
    c = plan.size("context")
    batch, tokens = query.shape[:2]
    pad = -tokens % c
    if pad:
        widths = ((0, 0), (0, pad), (0, 0), (0, 0))
        query, key, value = (jnp.pad(x, widths) for x in (query, key, value))
        valid = jnp.broadcast_to(jnp.arange(tokens + pad) < tokens, (batch, tokens + pad))
        key_mask = valid if key_mask is None else valid & jnp.pad(key_mask.astype(bool), ((0, 0), (0, pad)))
    batch_axes = plan.batch_axes(batch) or None
    heads_axes = plan.mesh_axes("heads") or None
    spec = P(batch_axes, "context", heads_axes, None)

    def local(q, k, v, *mask):
        q, k, v = (jax.lax.all_to_all(x, "context", 2, 1, tiled=True) for x in (q, k, v))  # [b, N, h/c, K]
        out = attention(q, k, v, key_mask=mask[0] if mask else None, implementation=implementation)
        return jax.lax.all_to_all(out, "context", 1, 2, tiled=True)  # [b, N/c, h, K]

    masks = () if key_mask is None else (key_mask,)
    out = jax.shard_map(local, mesh=plan.mesh, in_specs=(spec,) * 3 + (P(batch_axes, None),) * len(masks),
                        out_specs=spec, check_vma=False)(query, key, value, *masks)
    return out[:, :tokens] if pad else out


def uses_context_parallel(plan, heads: int) -> bool:
    """Whether ``context_parallel_attention`` applies: a context axis above 1 dividing each device's heads."""
    if plan is None or plan.size("context") == 1:
        return False
    local_heads = heads // max(1, int(np.prod([plan.size(a) for a in plan.mesh_axes("heads")])))
    return local_heads % plan.size("context") == 0


def constrain(plan, x: jax.Array, *logical: str | None) -> jax.Array:
    """``plan.constrain(x, *logical)``, or x itself without a plan (one device)."""
    return x if plan is None else plan.constrain(x, *logical)

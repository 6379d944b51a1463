"""Step caching inside the compiled denoising loop: First Block Cache (diffusers' ``FirstBlockCacheConfig`` hook).

Per transformer call (the batched forward over all of a step's guidance branches), block 0 runs; its residual
``r = out0 - x`` (x: block 0's input) is compared with the residual of the last call that ran every block:

    diff = mean|r - r_prev| / mean|r_prev|            (over every element: branches, tokens, channels)
    no r_prev, or diff > threshold:  blocks 1 .. L-1 run; r_prev <- r, tail <- out_last - out0
    otherwise:                       out_last = out0 + tail   (r_prev and tail are kept, as diffusers keeps them)

then the final norm and ``proj_out`` as usual. The decision is a ``lax.cond`` on traced values (the threshold is a
traced input, so changing it never recompiles); the state (``FirstBlockCache``) lives in the loop's carry.

As diffusers' hook, the distance covers every token, conditioning tokens (mask 1) included, and the comparison is
``diff > threshold`` (so a NaN distance reuses the tail, and threshold 0 recomputes unless the residual is exactly
the cached one). diffusers needs at least two blocks (a head and a tail); so does this.

Axis letters: M rows of the batched forward (branches x videos), N tokens, D model width.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp

from ltx_jax.models import as_variables
from ltx_jax.models.transformer import LTXVideoTransformer3DModel, TransformerConstants

CACHE_KINDS = ("first_block",)


def check_cache(kind: str | None, num_layers: int) -> None:
    """Raises on an unknown cache kind, or on a model too shallow to split into a first block and the rest."""
    if kind is None:
        return
    if kind not in CACHE_KINDS:
        raise ValueError(f"cache={kind!r}; use one of {CACHE_KINDS} or None.")
    if num_layers < 2:
        raise ValueError(f"cache={kind!r} needs at least 2 transformer layers; the model has {num_layers}.")


@flax.struct.dataclass
class FirstBlockCache:
    """The First Block Cache of one run of steps with the same branches (one ``Segment``)."""

    residual: jax.Array  # [M, N, D] in the model's dtype: block 0's residual in the last call that ran every block
    tail: jax.Array  # [M, N, D]: that call's last block output minus its block 0 output
    valid: jax.Array  # [] bool: residual and tail hold such a call's values
    skipped: jax.Array  # [] bool: the latest call reused the tail (ran block 0 only)

    @classmethod
    def empty(cls, rows: int, tokens: int, width: int, dtype) -> FirstBlockCache:
        zeros = jnp.zeros((rows, tokens, width), dtype)
        return cls(zeros, zeros, jnp.bool_(False), jnp.bool_(False))


def relative_change(residual: jax.Array, previous: jax.Array) -> jax.Array:
    """diffusers' ``mean|r - r_prev| / mean|r_prev|`` ([] float32; the difference in the residuals' dtype)."""
    absmean = jnp.mean(jnp.abs(residual - previous).astype(jnp.float32))
    return absmean / jnp.mean(jnp.abs(previous).astype(jnp.float32))


def cached_predict(model: LTXVideoTransformer3DModel, params, hidden_states: jax.Array, timestep: jax.Array,
                   constants: TransformerConstants, skip_layer_mask: jax.Array | None, skip_layer_strategy: str | None,
                   cache: FirstBlockCache, threshold: jax.Array) -> tuple[jax.Array, FirstBlockCache]:
    """``model.apply(..., method="predict")`` through the First Block Cache.

    Args:
      hidden_states, timestep, constants, skip_layer_mask, skip_layer_strategy: ``predict``'s (M rows).
      cache: the state after the previous call of this run of steps (``FirstBlockCache.empty`` before the first).
      threshold: [] float32, traced.
    Returns:
      the prediction [M, N, out_channels] in the model's dtype, and the new state.
    """
    variables = as_variables(params)
    num_layers = model.config.num_layers
    skip = (skip_layer_mask, skip_layer_strategy)
    x, temb, embedded_timestep = model.apply(variables, hidden_states, timestep, constants, *skip,
                                             method="embed_step")  # [M, N, D], [M, 1|N, 6D], [M, 1|N, D]
    head = model.apply(variables, x, temb, constants, *skip, layer_range=(0, 1), method="run_blocks")
    residual = head - x
    compute = ~cache.valid | (relative_change(residual, cache.residual) > threshold)

    def run_tail(_):
        out = model.apply(variables, head, temb, constants, *skip, layer_range=(1, num_layers), method="run_blocks")
        return out, FirstBlockCache(residual, out - head, jnp.bool_(True), jnp.bool_(False))

    def reuse_tail(_):
        return head + cache.tail, cache.replace(skipped=jnp.bool_(True))

    out, cache = jax.lax.cond(compute, run_tail, reuse_tail, None)
    return model.apply(variables, out, embedded_timestep, method="project_out"), cache

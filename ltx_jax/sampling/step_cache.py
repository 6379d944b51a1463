"""Step caching inside the compiled denoising loop: First Block Cache (diffusers' ``FirstBlockCacheConfig`` hook) and
TeaCache (ComfyUI-TeaCache's LTX-Video node, ``teacache_ltxvmodel_forward``).

A *call* is one batched transformer forward over all of a step's guidance branches (M rows: G branches of B videos,
branch-major). Both kinds decide per call, with a ``lax.cond`` on traced values (the threshold is a traced input, so
changing it never recompiles); their state lives in the loop's carry, one per run of steps with the same branches
(``Segment``), empty at its start.

``"first_block"``: block 0 runs; its residual ``r = out0 - x`` (x: block 0's input) is compared with the residual of
the last call that ran every block,

    change = mean|r - r_prev| / mean|r_prev|          (over every row, token and channel)
    no r_prev, or change > threshold:  blocks 1 .. L-1 run; r_prev <- r, tail <- out_last - out0
    otherwise:                         out_last = out0 + tail   (r_prev and tail are kept, as diffusers keeps them)

then the final norm and ``proj_out``. As diffusers' hook, the comparison is ``change > threshold`` (a NaN change
reuses the tail; threshold 0 recomputes unless the residual is exactly the cached one), and the model needs at least
two blocks.

``"teacache"``: no block runs before the decision. The probe is block 0's self-attention input
``m = norm1(x) * (1 + scale_msa) + shift_msa``, compared per branch g with the previous call's (whether or not that
call ran the blocks):

    d_g = mean|m_g - m_prev_g| / mean|m_prev_g|            (over the branch's rows, tokens and channels)
    acc_g += poly(d_g)      poly: ComfyUI's LTX-Video rescaling polynomial (TEACACHE_LTXV_COEFFICIENTS)
    branch g recomputes where not acc_g < threshold, and then acc_g <- 0 (a NaN distance recomputes)
    the call runs every block if any branch recomputes (or on the first call, or with threshold <= 0, where
    ComfyUI leaves the model unpatched); it stores residual = y - x, y the *final modulation's* output (the last
    block's output after the final norm, scale and shift, before ``proj_out``: ComfyUI's residual spans them);
    otherwise y = x + residual.

A branch's accumulator is reset only by its own recompute, as ComfyUI keeps one state per cond / uncond. ComfyUI's
state starts empty at step 0 (the first call runs every block) and the last step has no rule of its own;
``start_percent`` / ``end_percent`` are left at ComfyUI's defaults (0 and 1: every step may reuse).

Conditioning tokens (mask 1: clean image / video conditions) are in both distances by default, as in diffusers and
ComfyUI; ``Sampler(cache_exclude_conditioning=True)`` passes ``free_token_weights`` so that the distances count only
the tokens with mask < 1.

Axis letters: G branches, B videos, M = G * B rows of the batched forward, N tokens, D model width.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp

from ltx_jax.models import as_variables
from ltx_jax.models.transformer import LTXVideoTransformer3DModel, TransformerConstants
from ltx_jax.validation import STEP_CACHE_THRESHOLDS

CACHE_KINDS = tuple(STEP_CACHE_THRESHOLDS)  # ("first_block", "teacache")
DEFAULT_THRESHOLDS = STEP_CACHE_THRESHOLDS  # the threshold a kind takes when none is given
# ComfyUI-TeaCache's SUPPORTED_MODELS_COEFFICIENTS["ltxv"]: the rescaling polynomial of the relative L1 distance,
# highest power first (np.poly1d's order).
TEACACHE_LTXV_COEFFICIENTS = (2.14700694e+01, -1.28016453e+01, 2.31279151e+00, 7.92487521e-01, 9.69274326e-03)


def check_cache(kind: str | None, num_layers: int) -> None:
    """Raises on an unknown cache kind, or on a model too shallow for it (the first-block cache splits the blocks
    into the first and the rest)."""
    if kind is None:
        return
    if kind not in CACHE_KINDS:
        raise ValueError(f"cache={kind!r}; use one of {CACHE_KINDS} or None.")
    if kind == "first_block" and num_layers < 2:
        raise ValueError(f"cache={kind!r} needs at least 2 transformer layers; the model has {num_layers}.")


def threshold_or_default(kind: str | None, threshold: float | None) -> float | None:
    """The threshold a call runs with: the given one, else the kind's default (None without a cache)."""
    if kind is None:
        return None
    return DEFAULT_THRESHOLDS[kind] if threshold is None else threshold


@flax.struct.dataclass
class FirstBlockCache:
    """The First Block Cache of one run of steps with the same branches (one ``Segment``)."""

    residual: jax.Array  # [M, N, D] in the model's dtype: block 0's residual in the last call that ran every block
    tail: jax.Array  # [M, N, D]: that call's last block output minus its block 0 output
    valid: jax.Array  # [] bool: residual and tail hold such a call's values
    skipped: jax.Array  # [] bool: the latest call reused the tail (ran block 0 only)
    change: jax.Array  # [] float32: the latest call's relative change (against zeros on the first call)


@flax.struct.dataclass
class TeaCache:
    """TeaCache's state in one run of steps with the same branches (one ``Segment``)."""

    modulated: jax.Array  # [M, N, D] in the model's dtype: the previous call's probe (block 0's attention input)
    residual: jax.Array  # [M, N, D]: the last call that ran every block: final modulation's output minus x
    accumulated: jax.Array  # [G] float32: each branch's accumulated rescaled distance since its last recompute
    distance: jax.Array  # [G] float32: the latest call's relative L1 distance per branch
    valid: jax.Array  # [] bool: modulated and residual hold a call's values
    skipped: jax.Array  # [] bool: the latest call reused the residual (ran no block)


def empty_state(kind: str, branches: int, batch: int, tokens: int, width: int, dtype) -> FirstBlockCache | TeaCache:
    """A kind's state before the first call of a segment of ``branches`` branches of ``batch`` videos."""
    zeros = jnp.zeros((branches * batch, tokens, width), dtype)  # [M, N, D]
    no = jnp.bool_(False)
    if kind == "first_block":
        return FirstBlockCache(zeros, zeros, no, no, jnp.float32(0.0))
    if kind == "teacache":
        acc = jnp.zeros((branches,), jnp.float32)
        return TeaCache(zeros, zeros, acc, acc, no, no)
    raise ValueError(f"cache={kind!r}; use one of {CACHE_KINDS}.")


def free_token_weights(conditioning_mask: jax.Array | None, branches: int) -> jax.Array | None:
    """1 for the tokens a distance counts (conditioning mask < 1), 0 for clean conditioning tokens: [B, N] ->
    [M, N] float32, tiled over the branches as the batched forward's rows; None without a mask."""
    if conditioning_mask is None:
        return None
    free = (conditioning_mask < 1.0).astype(jnp.float32)  # [B, N]
    return jnp.concatenate([free] * branches, axis=0)


def relative_l1(new: jax.Array, previous: jax.Array, groups: int = 1,
                token_weights: jax.Array | None = None) -> jax.Array:
    """``mean|new - previous| / mean|previous|`` per group of rows: [M, N, D] (the difference in their dtype) ->
    [groups] float32. ``token_weights`` [M, N] (0 or 1): only the tokens of weight 1 count (the ratio of means over
    them is the ratio of the weighted sums)."""
    rows = new.shape[0] // groups
    diff = jnp.abs(new - previous).astype(jnp.float32).reshape(groups, rows, *new.shape[1:])  # [G, B, N, D]
    prev = jnp.abs(previous).astype(jnp.float32).reshape(groups, rows, *new.shape[1:])
    if token_weights is None:
        return jnp.mean(diff, axis=(1, 2, 3)) / jnp.mean(prev, axis=(1, 2, 3))
    w = token_weights.astype(jnp.float32).reshape(groups, rows, -1, 1)  # [G, B, N, 1]
    return jnp.sum(diff * w, axis=(1, 2, 3)) / jnp.sum(prev * w, axis=(1, 2, 3))


def cached_predict(kind: str, model: LTXVideoTransformer3DModel, params, hidden_states: jax.Array,
                   timestep: jax.Array, constants: TransformerConstants, skip_layer_mask: jax.Array | None,
                   skip_layer_strategy: str | None, state: FirstBlockCache | TeaCache, threshold: jax.Array,
                   token_weights: jax.Array | None = None) -> tuple[jax.Array, FirstBlockCache | TeaCache]:
    """``model.apply(..., method="predict")`` through a step cache.

    Args:
      kind: one of ``CACHE_KINDS``.
      hidden_states, timestep, constants, skip_layer_mask, skip_layer_strategy: ``predict``'s (M rows).
      state: the kind's state after the previous call of this run of steps (``empty_state`` before the first).
      threshold: [] float32, traced.
      token_weights: [M, N] float32 (``free_token_weights``): the tokens the distance counts; None counts all.
    Returns:
      the prediction [M, N, out_channels] in the model's dtype, and the new state.
    """
    variables = as_variables(params)
    skip = (skip_layer_mask, skip_layer_strategy)
    x, temb, embedded_timestep = model.apply(variables, hidden_states, timestep, constants, *skip,
                                             method="embed_step")  # [M, N, D], [M, 1|N, 6D], [M, 1|N, D]
    blocks = lambda h, layer_range=None: model.apply(  # noqa: E731
        variables, h, temb, constants, *skip, layer_range=layer_range, method="run_blocks")
    if kind == "first_block":
        y, state = _first_block(model.config.num_layers, blocks, x, state, threshold, token_weights)
        y = model.apply(variables, y, embedded_timestep, method="output_modulation")
    elif kind == "teacache":
        probe = model.apply(variables, x, temb, method="first_block_input")  # [M, N, D]
        finish = lambda h: model.apply(variables, h, embedded_timestep, method="output_modulation")  # noqa: E731
        y, state = _teacache(lambda h: finish(blocks(h)), probe, x, state, threshold, token_weights)
    else:
        raise ValueError(f"cache={kind!r}; use one of {CACHE_KINDS}.")
    return model.apply(variables, y, method="output_projection"), state


def _first_block(num_layers, blocks, x, cache: FirstBlockCache, threshold, token_weights):
    """The First Block Cache's call: x [M, N, D] -> the last block's output [M, N, D] and the new state."""
    head = blocks(x, (0, 1))
    residual = head - x
    change = relative_l1(residual, cache.residual, 1, token_weights)[0]
    compute = ~cache.valid | (change > threshold)

    def run_tail(_):
        out = blocks(head, (1, num_layers))
        return out, FirstBlockCache(residual, out - head, jnp.bool_(True), jnp.bool_(False), change)

    def reuse_tail(_):
        return head + cache.tail, cache.replace(skipped=jnp.bool_(True), change=change)

    return jax.lax.cond(compute, run_tail, reuse_tail, None)


def _teacache(run_all, probe, x, cache: TeaCache, threshold, token_weights):
    """TeaCache's call: ``run_all`` (x -> every block, then the final modulation), its probe [M, N, D] and x
    [M, N, D] -> the final modulation's output [M, N, D] and the new state."""
    distance = relative_l1(probe, cache.modulated, cache.accumulated.shape[0], token_weights)  # [G]
    grown = cache.accumulated + jnp.polyval(jnp.asarray(TEACACHE_LTXV_COEFFICIENTS, jnp.float32), distance)
    recompute = ~(grown < threshold)  # [G]; a NaN distance recomputes
    accumulated = jnp.where(cache.valid, jnp.where(recompute, 0.0, grown), cache.accumulated)
    compute = ~cache.valid | jnp.any(recompute) | (threshold <= 0)

    def run(_):
        y = run_all(x)
        return y, y - x

    def reuse(_):
        return x + cache.residual, cache.residual

    y, residual = jax.lax.cond(compute, run, reuse, None)
    return y, TeaCache(probe, residual, accumulated, distance, jnp.bool_(True), ~compute)

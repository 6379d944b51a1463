"""Timestep embeddings and LTX-Video's 3D rotary position embedding (RoPE).

Axis letters: B batch, M timesteps, N video tokens, D model width.

Some float32 details are reproduced on purpose because RoPE angles reach 1e4 radians and timesteps reach 1000:
frequency tables are rounded the way torch rounds them, and coordinate divisions are real IEEE divisions.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.models.layers.dense import dense
from ltx_jax.scheduler import torch_linspace

Dtype = Any

TIMESTEP_FEATURES = 256
# Fixed by diffusers' LTXVideoRotaryPosEmbed for every released checkpoint.
ROPE_BASE_NUM_FRAMES = 20
ROPE_BASE_HEIGHT = 2048
ROPE_BASE_WIDTH = 2048
ROPE_THETA = 10000.0


# ------------------------------------------------------------------------------------------------ timesteps


def timestep_sinusoids(timesteps: jax.Array, dim: int = TIMESTEP_FEATURES, max_period: float = 10000.0) -> jax.Array:
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


class TimestepEmbedder(nn.Module):
    """Linear -> SiLU -> Linear on timestep features (diffusers' ``TimestepEmbedding``): [M, F] -> [M, features].

    ``axes``: the logical axes of the two kernels, ``(linear_1 [F, features], linear_2 [features, features])``.
    """

    features: int
    axes: tuple[tuple[str, str], tuple[str, str]]
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, t_features: jax.Array) -> jax.Array:
        x = dense(self, self.features, self.axes[0], name="linear_1")(t_features.astype(self.dtype))
        return dense(self, self.features, self.axes[1], name="linear_2")(nn.silu(x))


class TimestepEmbedding(nn.Module):
    """Sinusoids -> ``TimestepEmbedder`` (param ``timestep_embedder``): diffusers'
    ``PixArtAlphaCombinedTimestepSizeEmbeddings(features, 0)``, the VAE decoder's time embedder.

    Input [M] float32 timesteps on the 0-1000 scale; output [M, features] in ``dtype``. ``axes``: the embedder's.
    """

    features: int
    axes: tuple[tuple[str, str], tuple[str, str]]
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, timestep: jax.Array) -> jax.Array:
        embedder = TimestepEmbedder(self.features, self.axes, self.dtype, self.param_dtype, self.precision,
                                    name="timestep_embedder")
        return embedder(timestep_sinusoids(timestep))


# ------------------------------------------------------------------------------------------------------ RoPE


def exact_divide(x: jax.Array, divisor: float) -> jax.Array:
    """``x / divisor`` rounded as IEEE division (and torch) round it.

    XLA rewrites division by a broadcast scalar into multiplication by its reciprocal, which differs from the
    true quotient by one ulp about half the time. RoPE angles reach ~1e5 radians, where one ulp of the
    coordinate is visible, so the divisor is hidden behind an optimisation barrier to keep a real division.
    """
    den = jax.lax.optimization_barrier(jnp.full(x.shape, divisor, x.dtype))
    return x / den


def video_grid(
    num_frames: int,
    height: int,
    width: int,
    rope_interpolation_scale: Sequence[Any] | jax.Array | None,
    patch_size: int = 1,
    patch_size_t: int = 1,
) -> jax.Array:
    """Normalised (frame, row, column) coordinates of every token of a frames x height x width grid, frame-major.

    Returns:
      [1, N, 3] float32 with N = num_frames * height * width (the same for every batch row).
    """
    f, h, w = jnp.meshgrid(
        jnp.arange(num_frames, dtype=jnp.float32),
        jnp.arange(height, dtype=jnp.float32),
        jnp.arange(width, dtype=jnp.float32),
        indexing="ij",
    )
    if rope_interpolation_scale is not None:
        s = [jnp.asarray(rope_interpolation_scale[i], jnp.float32) for i in range(3)]
        f = exact_divide(f * s[0] * patch_size_t, ROPE_BASE_NUM_FRAMES)
        h = exact_divide(h * s[1] * patch_size, ROPE_BASE_HEIGHT)
        w = exact_divide(w * s[2] * patch_size, ROPE_BASE_WIDTH)
    return jnp.stack([f.reshape(-1), h.reshape(-1), w.reshape(-1)], axis=-1)[None]  # [1, N, 3]


def grid_from_video_coords(video_coords: jax.Array) -> jax.Array:
    """[B, 3, N] raw (frame, row, column) coordinates -> [B, N, 3] normalised grid (diffusers' video_coords path)."""
    video_coords = video_coords.astype(jnp.float32)
    return jnp.stack(
        [
            exact_divide(video_coords[:, 0], ROPE_BASE_NUM_FRAMES),
            exact_divide(video_coords[:, 1], ROPE_BASE_HEIGHT),
            exact_divide(video_coords[:, 2], ROPE_BASE_WIDTH),
        ],
        axis=-1,
    )


def rope_frequencies(grid: jax.Array, dim: int, theta: float = ROPE_THETA) -> tuple[jax.Array, jax.Array]:
    """3D rotary cos/sin tables over the flattened model width, one entry per rotated channel pair.

    Each of the dim // 6 frequencies rotates one channel pair per axis (frame, row, column, interleaved);
    the first dim % 6 channels (dim % 6 // 2 pairs) are left unrotated (cos 1, sin 0), as in diffusers. diffusers'
    tables hold every value twice (one per channel of a pair, [B, N, dim]); these hold it once, which halves what the
    q / k RoPE of every layer reads ([1, N, dim / 2] float32 twice, against a [B, N, dim] bf16 tensor).

    Angles reach theta * pi / 2 * |2 g - 1| radians (~1e4 and more), so one float32 ulp of a frequency or a
    coordinate moves them by ~1e-3. We reproduce torch's float32 arithmetic step by step (linspace, power,
    true division) so that small widths match diffusers bit for bit; at full width torch's float32 pow differs
    between CPU vector widths and CUDA, so no implementation can match every reference exactly (its linspace is
    ``ltx_jax.scheduler.torch_linspace``, bit for bit).

    Args:
      grid: [B, N, 3] float32 normalised coordinates (B may be 1 for a grid shared by the batch).
      dim: the model width (even: channels rotate in pairs).
    Returns:
      cos, sin: [B, N, dim / 2] float32 (``apply_rotary_emb``'s tables).
    """
    if dim % 2:
        raise ValueError(f"RoPE rotates channel pairs: the model width {dim} must be even.")
    num_freqs = dim // 6
    exponents = torch_linspace(0.0, 1.0, num_freqs)  # log_theta(1) .. log_theta(theta)
    # theta ** x rounded once from float64 matches torch's float32 pow far more often than a float32 pow does.
    base = (theta ** exponents.astype(np.float64)).astype(np.float32) * np.float32(np.pi / 2.0)
    freqs = jnp.asarray(base)[None, None, None, :] * (grid[..., None] * 2.0 - 1.0)  # [B, N, 3, F]
    freqs = jnp.swapaxes(freqs, -1, -2).reshape(*grid.shape[:2], 3 * num_freqs)  # [B, N, F*3], axis fastest
    cos, sin = jnp.cos(freqs), jnp.sin(freqs)
    pad = dim % 6 // 2  # unrotated pairs
    if pad:
        cos = jnp.concatenate([jnp.ones((*cos.shape[:2], pad), jnp.float32), cos], axis=-1)
        sin = jnp.concatenate([jnp.zeros((*sin.shape[:2], pad), jnp.float32), sin], axis=-1)
    return cos, sin


def apply_rotary_emb(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates interleaved channel pairs (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin), in float32.

    The same products and sums as diffusers' ``x * cos + stack(-x1, x0) * sin`` over doubled tables (a negated
    product added is the product subtracted, exactly), on tables of one entry per pair.

    Args:
      x: [B, N, D] queries or keys (all heads flattened, as diffusers applies RoPE before the head split).
      cos, sin: [B or 1, N, D / 2] float32 (``rope_frequencies``).
    Returns:
      [B, N, D] in x's dtype.
    """
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)  # [B, N, D/2, 2]
    x0, x1 = pairs[..., 0], pairs[..., 1]  # [B, N, D/2]
    rotated = jnp.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], axis=-1)  # [B, N, D/2, 2]
    return rotated.reshape(x.shape).astype(x.dtype)

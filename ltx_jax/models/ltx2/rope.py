"""LTX-2's rotary position embedding (diffusers' ``LTX2AudioVideoRotaryPosEmbed``): 3-D video and 1-D audio
coordinates, interleaved or split channel layout.

Axis letters: B batch, P position axes (3 video: frame, row, column; 1 audio and the cross-modal tables), N tokens,
F frequencies per axis, D rotated width (the model width of the stream, or ``audio_cross_attention_dim`` for the
audio <-> video cross-attention), R the table's heads.

Precision, as diffusers computes it:
  * coordinates (``video_coords`` / ``audio_coords``) are float32: the grid, the VAE scale factors, the causal shift,
    the division by fps (and for audio by the sampling rate) are float32 operations, done here in numpy float32 when
    the grid is built from sizes (concrete), and in float32 on device for explicit (possibly traced) coordinates;
  * the frequency table ``theta ** linspace(0, 1, F) * pi / 2`` is computed in float64 when
    ``rope_double_precision`` (torch's float64 linspace and pow, then rounded to float32) and in float32 otherwise.
    It depends on the config only, so it is a numpy constant: no ``jax_enable_x64`` is needed, and the float64
    table is exactly diffusers' (checked bit for bit in tests/test_ltx2_transformer.py);
  * the angles ``(2 g - 1) * freq`` and their cos / sin are float32 in diffusers too (its float64 stops at the
    table), so they are computed on device in float32, from traced coordinates as well.
"""

from __future__ import annotations

import fractions
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.models import layers

ROPE_TYPES = ("interleaved", "split")


# ------------------------------------------------------------------------------------------------ coordinates


def _pixel_bounds(num_frames: int, height: int, width: int, patch_size: int, patch_size_t: int,
                  scale_factors: Sequence[int]) -> np.ndarray:
    """[3, N, 2] float32 [start, end) of every patch in pixels (frames, rows, columns), frame-major."""
    grids = [np.arange(0, n, step, dtype=np.float32)
             for n, step in ((num_frames, patch_size_t), (height, patch_size), (width, patch_size))]
    grid = np.stack(np.meshgrid(*grids, indexing="ij"), axis=0)  # [3, F, H, W]
    ends = grid + np.asarray((patch_size_t, patch_size, patch_size), np.float32).reshape(3, 1, 1, 1)
    latent = np.stack([grid, ends], axis=-1).reshape(3, -1, 2)  # [3, N, 2]
    return latent * np.asarray(scale_factors, np.float32).reshape(3, 1, 1)


def video_coords(batch: int, num_frames: int, height: int, width: int, *, patch_size: int = 1,
                 patch_size_t: int = 1, scale_factors: Sequence[int] = (8, 32, 32), causal_offset: int = 1,
                 fps: float = 24.0) -> np.ndarray:
    """Pixel-space [start, end) bounds of every video patch (diffusers' ``prepare_video_coords``), frame-major.

    Returns [B, 3, N, 2] float32 numpy (frame bounds in seconds, rows and columns in pixels), N = frames x rows x
    columns of patches.
    """
    pixel = _pixel_bounds(num_frames, height, width, patch_size, patch_size_t, scale_factors)
    frames = np.maximum(pixel[0] + np.float32(causal_offset) - np.float32(scale_factors[0]), np.float32(0))
    pixel[0] = frames / np.float32(fps)
    return np.broadcast_to(pixel[None], (batch, *pixel.shape)).astype(np.float32)


def keyframe_coords(batch: int, num_frames: int, height: int, width: int, *, pixel_frame: int, pixel_frames: int,
                    patch_size: int = 1, patch_size_t: int = 1, scale_factors: Sequence[int] = (8, 32, 32),
                    fps: float = 24.0) -> np.ndarray:
    """Bounds of a keyframe condition's tokens appended after the video's (diffusers' ``LTX2ConditionPipeline.
    _prepare_keyframe_coords``): the latent grid of the condition (num_frames x height x width latents) in pixels,
    no causal fix, shifted to ``pixel_frame``; a one-frame condition spans [pixel_frame, pixel_frame + 1). Frames
    in seconds at ``fps``. Returns [B, 3, K, 2] float32 numpy."""
    pixel = _pixel_bounds(num_frames, height, width, patch_size, patch_size_t, scale_factors)
    pixel[0] = pixel[0] + np.float32(pixel_frame)
    if pixel_frames == 1:
        pixel[0, :, 1] = pixel[0, :, 0] + 1
    pixel[0] = pixel[0] / np.float32(fps)
    return np.broadcast_to(pixel[None], (batch, *pixel.shape)).astype(np.float32)


def audio_coords(batch: int, num_frames: int, *, patch_size_t: int = 1, scale_factor: int = 4,
                 causal_offset: int = 1, sampling_rate: int = 16000, hop_length: int = 160,
                 shift: int = 0) -> np.ndarray:
    """[start, end) timestamps in seconds of every audio latent frame (diffusers' ``prepare_audio_coords``).

    Returns [B, 1, N, 2] float32 numpy.
    """
    frames = np.arange(shift, num_frames + shift, patch_size_t, dtype=np.float32)
    scale = np.float32(scale_factor)

    def seconds(mel):
        mel = np.maximum(mel + np.float32(causal_offset) - scale, np.float32(0))
        return mel * np.float32(hop_length) / np.float32(sampling_rate)

    bounds = np.stack([seconds(frames * scale), seconds((frames + np.float32(patch_size_t)) * scale)], axis=-1)
    return np.broadcast_to(bounds[None, None], (batch, 1, *bounds.shape)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ frequencies


def _fma64(a: float, b: float, c: float) -> float:
    """float64 ``a * b + c`` rounded once (torch's vectorised float64 linspace uses a fused multiply-add)."""
    return float(fractions.Fraction(a) * fractions.Fraction(b) + fractions.Fraction(c))


def _linspace64(steps: int) -> np.ndarray:
    """``torch.linspace(0, 1, steps, dtype=torch.float64)``: the first half from 0, the rest from 1."""
    if steps <= 1:
        return np.zeros(max(steps, 0), np.float64)
    step = 1.0 / (steps - 1)
    return np.array([_fma64(step, i, 0.0) if i < steps // 2 else _fma64(-step, steps - 1 - i, 1.0)
                     for i in range(steps)], np.float64)


def frequency_table(num_freqs: int, theta: float, double_precision: bool) -> np.ndarray:
    """``(theta ** linspace(0, 1, F)) * pi / 2`` rounded to float32 ([F] numpy), as diffusers computes it: in
    float64 with ``double_precision``, else torch's float32 linspace and a float32 pow (rounded once from float64,
    which matches torch's float32 pow as ``layers.rope_frequencies`` does)."""
    if double_precision:
        return ((theta ** _linspace64(num_freqs)) * np.pi / 2.0).astype(np.float32)
    exponents = layers.torch_linspace(0.0, 1.0, num_freqs)
    return (theta ** exponents.astype(np.float64)).astype(np.float32) * np.float32(np.pi / 2.0)


def rope_tables(coords: jax.Array | np.ndarray, dim: int, max_positions: Sequence[float], *, theta: float,
                double_precision: bool, rope_type: str, heads: int) -> tuple[jax.Array, jax.Array]:
    """cos / sin tables of coordinates (diffusers' ``LTX2AudioVideoRotaryPosEmbed.forward``).

    Args:
      coords: [B, P, N, 2] [start, end) bounds (their midpoints are the positions) or [B, P, N] positions.
      dim: the rotated width D (even).
      max_positions: P divisors (``pos_embed_max_pos``, ``base_height``, ``base_width``; one for audio).
      heads: R, the heads the split layout groups the table by (diffusers' ``num_attention_heads`` of the table,
        which for the video cross-modal table is the video stream's even though the audio heads attend with it).
    Returns:
      cos, sin: [B, N, D/2] float32, one entry per rotated channel pair. "interleaved": pairs are adjacent channels,
      the first ``D % (2P) / 2`` pairs unrotated; "split": per head of R, the pairs are (channel c, channel c + half),
      the first ``D/2 - P F`` entries (over all R heads, flattened) unrotated.
    """
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"rope_type={rope_type!r}; use one of {ROPE_TYPES}.")
    if dim % 2:
        raise ValueError(f"RoPE rotates channel pairs: the width {dim} must be even.")
    coords = jnp.asarray(coords, jnp.float32)
    if coords.ndim == 4:
        coords = (coords[..., 0] + coords[..., 1]) / 2.0  # [B, P, N], halving is exact
    num_axes = coords.shape[1]
    if num_axes != len(max_positions):
        raise ValueError(f"coordinates have {num_axes} position axes; this table takes {len(max_positions)}.")
    grid = jnp.stack([layers.exact_divide(coords[:, i], float(max_positions[i])) for i in range(num_axes)],
                     axis=-1)  # [B, N, P]
    num_freqs = dim // (2 * num_axes)
    table = jnp.asarray(frequency_table(num_freqs, theta, double_precision))  # [F]
    angles = (grid[..., None] * 2.0 - 1.0) * table  # [B, N, P, F]
    angles = jnp.swapaxes(angles, -1, -2).reshape(*grid.shape[:2], num_freqs * num_axes)  # [B, N, F*P], axis fastest
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    pad = (dim % (2 * num_axes)) // 2 if rope_type == "interleaved" else dim // 2 - num_freqs * num_axes
    if pad:
        cos = jnp.concatenate([jnp.ones((*cos.shape[:2], pad), jnp.float32), cos], axis=-1)
        sin = jnp.concatenate([jnp.zeros((*sin.shape[:2], pad), jnp.float32), sin], axis=-1)
    if rope_type == "split" and (dim // 2) % heads:
        raise ValueError(f"split RoPE groups the {dim // 2} frequencies of width {dim} by {heads} heads, which does "
                         "not divide them; fix the config's head counts or widths.")
    return cos, sin


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array, rope_type: str, heads: int) -> jax.Array:
    """Rotates queries or keys x [B, N, D] (all heads flattened) by tables [B or 1, N, D/2] from ``rope_tables``,
    in float32, returning x's dtype. "split": x is grouped into the ``heads`` of the table (R, not necessarily the
    attention's heads), each group's first half paired with its second half (diffusers' ``apply_split_rotary_emb``);
    "interleaved": adjacent channels pair up (``layers.apply_rotary_emb``)."""
    if rope_type == "interleaved":
        return layers.apply_rotary_emb(x, cos, sin)
    batch, tokens, width = x.shape
    if width % (2 * heads) or cos.shape[-1] * 2 != width:
        raise ValueError(f"split RoPE of width {cos.shape[-1] * 2} over {heads} heads cannot rotate width {width}; "
                         "the config's widths do not fit together.")
    half = width // heads // 2
    x32 = x.astype(jnp.float32).reshape(batch, tokens, heads, 2, half)
    c = cos.reshape(cos.shape[0], tokens, heads, half)
    s = sin.reshape(sin.shape[0], tokens, heads, half)
    first, second = x32[:, :, :, 0], x32[:, :, :, 1]
    out = jnp.stack([first * c - second * s, second * c + first * s], axis=3)  # [B, N, R, 2, half]
    return out.reshape(x.shape).astype(x.dtype)

"""LTX-2.5's duration head (diffusers' ``LTX2DurationHead``, ltx-core's ``DurationHead``): the natural length in
seconds of the shot a caption describes, from the text connectors' outputs.

Axis letters: B batch, T / S video / audio text tokens, D / A their widths, P the pooler width, Q learned queries,
H pooler heads.

Each given stream is projected to P and tagged by adding its learned modality embedding; the tokens of both are
concatenated and pooled by Q learned queries (multi-head cross-attention, no mask: the connectors leave every token
valid); an MLP (GELU, tanh approximation, as the JAX-trained head) gives the log-duration, returned exponentiated.
``snap_num_frames`` turns seconds into a frame count on the VAE's temporal grid as diffusers'
``predict_num_frames`` does.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltx_jax.configs_ltx2_text import LTX2DurationHeadConfig
from ltx_jax.models import layers

Dtype = Any


class LTX2DurationAttentionPooler(nn.Module):
    """``num_queries`` learned tokens cross-attending to the caption tokens (diffusers' names: ``query_tokens``,
    ``to_q``, ``to_k``, ``to_v``, ``to_out``)."""

    width: int
    num_queries: int
    heads: int
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None

    def setup(self):
        self.query_tokens = self.param("query_tokens", nn.with_logical_partitioning(
            nn.initializers.normal(0.02), ("replicated", "embed")), (self.num_queries, self.width), self.param_dtype)
        self.to_q = layers.dense(self, self.width, ("embed", "heads"))
        self.to_k = layers.dense(self, self.width, ("embed", "heads"))
        self.to_v = layers.dense(self, self.width, ("embed", "heads"))
        self.to_out = layers.dense(self, self.width, ("heads", "embed"))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """tokens [B, N, P] -> [B, Q, P]."""
        batch = tokens.shape[0]
        queries = jnp.broadcast_to(self.query_tokens.astype(self.dtype), (batch, self.num_queries, self.width))

        def split(x):  # [B, n, P] -> [B, n, H, P / H]
            return x.reshape(*x.shape[:2], self.heads, -1)

        out = layers.attention(split(self.to_q(queries)), split(self.to_k(tokens)), split(self.to_v(tokens)),
                               key_mask=None, implementation="xla")
        return self.to_out(out.reshape(batch, self.num_queries, self.width).astype(self.dtype))


class LTX2DurationHead(nn.Module):
    """diffusers' ``LTX2DurationHead`` with its parameter names (``video_input_proj``, ``video_modality_emb``,
    ``audio_input_proj``, ``audio_modality_emb``, ``attention_pooler``, ``mlp_hidden``, ``mlp_out``).

    Attributes:
      config: the architecture (``LTX2DurationHeadConfig``).
      dtype: compute dtype (the inputs are cast to it, as diffusers casts them to the head's); param_dtype: the
        params' dtype; precision: matmul precision.
    """

    config: LTX2DurationHeadConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    def setup(self):
        cfg = self.config
        width = cfg.pooler_hidden_dim

        def embedding(name):
            return self.param(name, nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed",)), (width,),
                              self.param_dtype)

        self.video_input_proj = layers.dense(self, width, ("mlp", "embed"))
        self.video_modality_emb = embedding("video_modality_emb")
        self.audio_input_proj = layers.dense(self, width, ("mlp", "embed"))
        self.audio_modality_emb = embedding("audio_modality_emb")
        self.attention_pooler = LTX2DurationAttentionPooler(width, cfg.num_queries, cfg.num_pooler_heads, self.dtype,
                                                            self.param_dtype, self.precision)
        self.mlp_hidden = layers.dense(self, cfg.mlp_hidden_dim, ("embed", "mlp"))
        self.mlp_out = layers.dense(self, 1, ("mlp", "replicated"))

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (``ltx_jax.models.init_params`` / ``abstract_params``)."""
        cfg = self.config
        return (jnp.zeros((1, 1, cfg.video_cross_attention_dim), self.dtype),
                jnp.zeros((1, 1, cfg.audio_cross_attention_dim), self.dtype)), {}

    def __call__(self, video_tokens: jax.Array | None = None, audio_tokens: jax.Array | None = None) -> jax.Array:
        """The predicted duration in seconds.

        Args:
          video_tokens: [B, T, video_cross_attention_dim] the video connector's output, or None.
          audio_tokens: [B, S, audio_cross_attention_dim] the audio connector's output, or None (not both).
        Returns:
          [B] seconds, in ``dtype``.
        """
        cfg = self.config
        if video_tokens is None and audio_tokens is None:
            raise ValueError("LTX2DurationHead needs video_tokens or audio_tokens (or both); got neither.")
        groups, batch = [], None
        for name, tokens, width, proj, emb in (
                ("video_tokens", video_tokens, cfg.video_cross_attention_dim, self.video_input_proj,
                 self.video_modality_emb),
                ("audio_tokens", audio_tokens, cfg.audio_cross_attention_dim, self.audio_input_proj,
                 self.audio_modality_emb)):
            if tokens is None:
                continue
            if tokens.ndim != 3 or tokens.shape[-1] != width or (batch is not None and tokens.shape[0] != batch):
                raise ValueError(f"{name} has shape {tuple(tokens.shape)}; expected [B, tokens, {width}]"
                                 + ("" if batch is None else f" with B = {batch}") + ".")
            batch = tokens.shape[0]
            groups.append(proj(jnp.asarray(tokens).astype(self.dtype)) + emb.astype(self.dtype))
        pooled = self.attention_pooler(jnp.concatenate(groups, axis=1)).reshape(batch, -1)  # [B, Q P]
        hidden = jax.nn.gelu(self.mlp_hidden(pooled), approximate=True)
        return jnp.exp(self.mlp_out(hidden)[:, 0])


def snap_num_frames(seconds: float, *, frame_rate: float, temporal_compression_ratio: int, min_seconds: float = 1.0,
                    max_seconds: float = 20.0) -> int:
    """A predicted duration -> a frame count on the VAE's causal grid (``k * temporal_compression_ratio + 1``), as
    diffusers' ``LTX2DurationHead.predict_num_frames``: clamped to [min_seconds, max_seconds] in frames, floored to
    the grid, one grid step up if that fell below the minimum and fits under the maximum, else the nearer of the two
    grid points (where the bounds hold no grid point)."""
    min_frames = max(1, round(min_seconds * frame_rate))
    max_frames = round(max_seconds * frame_rate)
    clamped = max(min_frames, min(round(float(seconds) * frame_rate), max_frames))
    num_frames = ((clamped - 1) // temporal_compression_ratio) * temporal_compression_ratio + 1
    if num_frames < min_frames:
        up = num_frames + temporal_compression_ratio
        if up <= max_frames or abs(up - clamped) < abs(num_frames - clamped):
            num_frames = up
    return num_frames

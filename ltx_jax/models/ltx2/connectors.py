"""LTX-2's text connectors (diffusers' ``LTX2TextConnectors``): Gemma's stacked hidden states -> the video and audio
text embeddings the transformer cross-attends to.

Axis letters: B batch, T text tokens, C caption channels (Gemma's width), F hidden states per token (Gemma's
embedding output and each layer's: ``text_proj_in_factor``), D / A the video / audio connector width, H heads, K head
dim, R learned registers, L layers.

What the forward does (diffusers' ``forward``, and ltx-core's ``EmbeddingsProcessor``):
  1. normalise the stack [B, T, C, F] and flatten it to [B, T, C F] (C-major, as the pipeline's
     ``torch.stack(hidden_states, -1).flatten(2, 3)`` packs it), padding zeroed:
       LTX-2.0: per prompt and per hidden state, ``(x - masked mean) / (masked max - masked min + 1e-6) * 8`` over its
       valid tokens (``per_layer_masked_mean_norm``; valid = the last ``sum(mask)`` tokens with left padding);
       LTX-2.3 (``per_modality_projections``): per token and hidden state, an RMS norm over C (eps 1e-6), scaled by
       ``sqrt(stream width / C)`` for each stream's projection;
  2. project: one shared ``text_proj_in`` (C F -> C), or ``video_text_proj_in`` / ``audio_text_proj_in``;
  3. each connector (``LTX2ConnectorTransformer1d``): the valid tokens moved to the front in their order and the
     rest filled with the learned registers (tiled over T, indexed by absolute position), so every token is then
     attendable; 1-D RoPE over positions ``t / connector_rope_base_seq_len``; L blocks of RMS norm -> self-attention
     (q / k RMS norms, RoPE, LTX-2.3's per-head gates) -> RMS norm -> GELU(tanh) feed-forward; a final RMS norm.
     Without registers, the padding stays and is masked out of the attention's keys.
  4. the returned mask is all ones (diffusers' ``(additive mask < 1e-6)`` of a mask that is 0 or -max everywhere):
     the transformer attends to every token of the connector outputs.

Precision: the normalisations' statistics are float32 (diffusers computes them in the input dtype), the RoPE tables
are ``ltx_jax.models.ltx2.rope``'s (float64 frequencies as diffusers' ``rope_double_precision``), matmuls in ``dtype``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs_ltx2_text import LTX2TextConnectorsConfig
from ltx_jax.models import layers
from ltx_jax.models.ltx2 import rope
from ltx_jax.models.ltx2.blocks import LTX2Attention
from ltx_jax.models.transformer import FeedForward

Dtype = Any
NORM_EPS = 1e-6  # the blocks' and the output's RMS norms, the feature normalisations (diffusers' eps)
PADDING_SIDES = ("left", "right")


# ------------------------------------------------------------------------------------------------ features


def masked_mean_range_norm(x: jax.Array, lengths: jax.Array, padding_side: str = "left",
                           scale_factor: float = 8.0, eps: float = NORM_EPS) -> jax.Array:
    """LTX-2.0's feature normalisation (diffusers' ``per_layer_masked_mean_norm``), in float32.

    Args:
      x: [B, T, C, F] Gemma's stacked hidden states.
      lengths: [B] valid tokens per prompt: the last ``lengths`` tokens with left padding, the first with right.
    Returns:
      [B, T, C F] float32: per prompt and hidden state f, ``(x - mean) / (max - min + eps) * scale_factor`` with the
      statistics over the valid tokens and all C channels; 0 on padding.
    """
    batch, tokens, channels, _ = x.shape
    x = x.astype(jnp.float32)
    positions = jnp.arange(tokens)[None]  # [1, T]
    lengths = lengths.astype(jnp.int32)[:, None]  # [B, 1]
    valid = positions >= tokens - lengths if padding_side == "left" else positions < lengths  # [B, T]
    mask = valid[:, :, None, None]
    count = (lengths * channels).astype(jnp.float32).reshape(batch, 1, 1, 1)
    mean = jnp.sum(jnp.where(mask, x, 0.0), axis=(1, 2), keepdims=True) / (count + eps)  # [B, 1, 1, F]
    low = jnp.min(jnp.where(mask, x, jnp.inf), axis=(1, 2), keepdims=True)
    high = jnp.max(jnp.where(mask, x, -jnp.inf), axis=(1, 2), keepdims=True)
    normed = (x - mean) / (high - low + eps) * scale_factor
    return jnp.where(valid[:, :, None], normed.reshape(batch, tokens, -1), 0.0)


def per_token_rms_norm(x: jax.Array, valid: jax.Array, eps: float = NORM_EPS) -> jax.Array:
    """LTX-2.3's feature normalisation (diffusers' ``per_token_rms_norm`` and masking), in float32.

    Args:
      x: [B, T, C, F]; valid: [B, T] bool.
    Returns:
      [B, T, C F] float32: each token's hidden state f divided by its RMS over C; 0 where not valid.
    """
    x = x.astype(jnp.float32)
    normed = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=2, keepdims=True) + eps)
    return jnp.where(valid[:, :, None], normed.reshape(*x.shape[:2], -1), 0.0)


def rms_norm(x: jax.Array) -> jax.Array:
    """``torch.nn.RMSNorm(elementwise_affine=False, eps=1e-6)`` over the last axis, statistics in float32."""
    return layers.rms_normalize(x, NORM_EPS).astype(x.dtype)


def connector_rope(tokens: int, width: int, heads: int, config: LTX2TextConnectorsConfig):
    """cos, sin [1, T, width / 2] of positions ``t / connector_rope_base_seq_len`` (diffusers'
    ``LTX2RotaryPosEmbed1d``: ``rope.rope_tables`` of one position axis, split tables grouped by the ``heads``)."""
    positions = np.arange(tokens, dtype=np.float32)[None, None]  # [1, 1, T]
    return rope.rope_tables(positions, width, (config.connector_rope_base_seq_len,), theta=config.rope_theta,
                            double_precision=config.rope_double_precision, rope_type=config.rope_type, heads=heads)


# ------------------------------------------------------------------------------------------------ connectors


class ConnectorBlock(nn.Module):
    """One 1-D block (diffusers' ``LTX2TransformerBlock1d``): pre-norm self-attention and feed-forward, both
    residual. A scan body over the layers."""

    heads: int
    head_dim: int
    gated: bool
    rope_type: str
    implementation: layers.AttentionImplementation
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None
    compute: str | None = None

    def setup(self):
        width = self.heads * self.head_dim
        self.attn1 = LTX2Attention(
            heads=self.heads, head_dim=self.head_dim, out_features=width, use_bias=True, out_bias=True,
            gated=self.gated, rope_type=self.rope_type, implementation=self.implementation, dtype=self.dtype,
            param_dtype=self.param_dtype, precision=self.precision, weights=self.weights, compute=self.compute)
        self.ff = FeedForward(width, approximate=True, dtype=self.dtype, param_dtype=self.param_dtype,
                              precision=self.precision, weights=self.weights, compute=self.compute)

    def __call__(self, h: jax.Array, rope_tables, key_mask: jax.Array | None):
        """h [B, T, W]; rope_tables: cos, sin [1, T, W/2]; key_mask: [B, T] bool or None. -> (h, None)."""
        h = h + self.attn1(rms_norm(h), q_rope=rope_tables, rope_heads=(self.heads, self.heads), key_mask=key_mask)
        h = h + self.ff(rms_norm(h))
        return h.astype(self.dtype), None


class LTX2ConnectorTransformer1d(nn.Module):
    """One stream's connector: learned registers in place of padding, ``num_layers`` blocks under ``nn.scan`` (params
    with a leading [L] axis), a final RMS norm. ``stream``: "video" or "audio" (which of the config's fields)."""

    config: LTX2TextConnectorsConfig
    stream: str
    implementation: layers.AttentionImplementation
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None
    compute: str | None = None

    def _field(self, name: str):
        return getattr(self.config, f"{self.stream}_{name}")

    @property
    def num_registers(self) -> int | None:
        return self._field("connector_num_learnable_registers")

    def setup(self):
        heads, head_dim = self._field("connector_num_attention_heads"), self._field("connector_attention_head_dim")
        if self.num_registers is not None:
            def uniform(key, shape, dtype):  # diffusers' torch.rand * 2 - 1
                return jax.random.uniform(key, shape, dtype, -1.0, 1.0)

            self.learnable_registers = self.param(
                "learnable_registers", nn.with_logical_partitioning(uniform, ("replicated", "embed")),
                (self.num_registers, heads * head_dim), self.param_dtype)
        scan = nn.scan(ConnectorBlock, variable_axes={"params": 0, layers.LORA_COLLECTION: 0},
                       split_rngs={"params": True}, in_axes=(nn.broadcast, nn.broadcast),
                       length=self._field("connector_num_layers"), metadata_params={nn.PARTITION_NAME: "layers"})
        self.transformer_blocks = scan(heads, head_dim, self._field("gated_attn"), self.config.rope_type,
                                       self.implementation, self.dtype, self.param_dtype, self.precision,
                                       self.weights, self.compute)

    def __call__(self, h: jax.Array, valid: jax.Array) -> jax.Array:
        """h [B, T, W] projected text; valid [B, T] bool (False = padding) -> [B, T, W] in ``dtype``."""
        batch, tokens, width = h.shape
        key_mask = valid
        if self.num_registers is not None:
            if tokens % self.num_registers:
                raise ValueError(f"The {self.stream} connector tiles its {self.num_registers} learned registers over "
                                 f"the text tokens, so their number ({tokens}) must be a multiple of "
                                 f"{self.num_registers}; pad the prompts to such a length (the pipelines pad to "
                                 "1024).")
            order = jnp.argsort(jnp.logical_not(valid).astype(jnp.int32), axis=1, stable=True)  # valid tokens first
            front = jnp.take_along_axis(h, order[:, :, None], axis=1)
            filled = jnp.arange(tokens)[None] < jnp.sum(valid, axis=1, keepdims=True)  # [B, T]
            registers = jnp.tile(self.learnable_registers.astype(h.dtype), (tokens // self.num_registers, 1))
            h = jnp.where(filled[:, :, None], front, registers[None])
            key_mask = None  # every token is attendable now
        heads = self._field("connector_num_attention_heads")
        tables = connector_rope(tokens, width, heads, self.config)
        h, _ = self.transformer_blocks(h.astype(self.dtype), tables, key_mask)
        return rms_norm(h)


class LTX2TextConnectors(nn.Module):
    """diffusers' ``LTX2TextConnectors`` with its parameter names (``text_proj_in`` or ``video_text_proj_in`` /
    ``audio_text_proj_in``, ``video_connector`` / ``audio_connector`` with ``learnable_registers`` and
    ``transformer_blocks`` (scanned) of ``attn1`` and ``ff``).

    Attributes:
      config: the architecture (``LTX2TextConnectorsConfig``).
      dtype: compute dtype; param_dtype: dtype of the params ``init`` creates.
      attention_implementation: "xla", "cudnn" or None (cuDNN on CUDA in bf16 / fp16 where both connectors' head
        sizes allow it; XLA otherwise).
      precision: matmul precision of every Dense; weights: None, "int8" or "fp8" kernels (``layers.Dense``; the
        projections included: LTX-2.0's is 722M params); compute: None or "fp8".
    """

    config: LTX2TextConnectorsConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_implementation: str | None = None
    precision: Any = None
    weights: str | None = None
    compute: str | None = None

    @property
    def resolved_attention_implementation(self) -> layers.AttentionImplementation:
        cfg = self.config
        return layers.resolve_attention_implementation(self.attention_implementation, self.dtype,
                                                       cfg.video_connector_attention_head_dim,
                                                       cfg.audio_connector_attention_head_dim)

    def setup(self):
        cfg = self.config
        layers.check_weights(self.weights)
        layers.check_compute(self.compute, self.weights)
        proj = functools.partial(layers.dense, self, axes=("mlp", "embed"), use_bias=cfg.proj_bias)
        if cfg.per_modality_projections:
            self.video_text_proj_in = proj(features=cfg.video_hidden_dim)
            self.audio_text_proj_in = proj(features=cfg.audio_hidden_dim)
        else:
            self.text_proj_in = proj(features=cfg.caption_channels)
        implementation = "xla" if self.is_initializing() else self.resolved_attention_implementation
        connector = functools.partial(LTX2ConnectorTransformer1d, cfg, implementation=implementation,
                                      dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision,
                                      weights=self.weights, compute=self.compute)
        self.video_connector = connector("video")
        self.audio_connector = connector("audio")

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (``ltx_jax.models.init_params`` / ``abstract_params``): as many tokens
        as both connectors' registers tile."""
        cfg = self.config
        tokens = math.lcm(*(r for r in (cfg.video_connector_num_learnable_registers,
                                        cfg.audio_connector_num_learnable_registers) if r is not None))
        return (jnp.zeros((1, tokens, cfg.text_encoder_dim), self.dtype), jnp.ones((1, tokens), jnp.int32)), {}

    def __call__(self, text_encoder_hidden_states: jax.Array, attention_mask: jax.Array, padding_side: str = "left",
                 scale_factor: float = 8) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Gemma's hidden states -> the transformer's text embeddings (diffusers' ``forward``).

        Args:
          text_encoder_hidden_states: [B, T, C, F] Gemma's stacked hidden states (``output_hidden_states``:
            the embeddings and each layer's, stacked last), or [B, T, C F] with the last two flattened (C-major).
          attention_mask: [B, T] 1 = token, 0 = padding (the tokenizer's; the pipelines pad on the left).
          padding_side: "left" or "right", where the padding is (static). Only LTX-2.0's normalisation reads it: it
            takes the last (left) or first (right) ``sum(mask)`` tokens as the valid ones.
          scale_factor: LTX-2.0's normalisation scale (static).
        Returns:
          ``(video [B, T, D], audio [B, T, A], mask [B, T] int32)``: the video and audio text embeddings in ``dtype``
          and their attention mask, all ones (the padding was replaced by registers, or without registers kept as
          diffusers keeps it).
        """
        cfg = self.config
        x = jnp.asarray(text_encoder_hidden_states)
        if x.ndim == 3 and x.shape[-1] == cfg.text_encoder_dim:
            x = x.reshape(*x.shape[:2], cfg.caption_channels, cfg.text_proj_in_factor)
        if x.ndim != 4 or x.shape[2:] != (cfg.caption_channels, cfg.text_proj_in_factor):
            raise ValueError(f"text_encoder_hidden_states has shape {tuple(x.shape)}; expected [B, T, "
                             f"{cfg.caption_channels}, {cfg.text_proj_in_factor}] (Gemma's stacked hidden states) or "
                             f"[B, T, {cfg.text_encoder_dim}].")
        batch, tokens = x.shape[:2]
        mask = jnp.asarray(attention_mask)
        if tuple(mask.shape) != (batch, tokens):
            raise ValueError(f"attention_mask has shape {tuple(mask.shape)}; expected [B, T] = {(batch, tokens)}.")
        if padding_side not in PADDING_SIDES:
            raise ValueError(f"padding_side={padding_side!r}; use one of {PADDING_SIDES}.")

        if cfg.per_modality_projections:  # LTX-2.3
            normed = per_token_rms_norm(x, mask.astype(bool))
            video = self.video_text_proj_in(
                (normed * math.sqrt(cfg.video_hidden_dim / cfg.caption_channels)).astype(self.dtype))
            audio = self.audio_text_proj_in(
                (normed * math.sqrt(cfg.audio_hidden_dim / cfg.caption_channels)).astype(self.dtype))
        else:  # LTX-2.0
            normed = masked_mean_range_norm(x, jnp.sum(mask, axis=-1), padding_side, scale_factor)
            video = audio = self.text_proj_in(normed.astype(self.dtype))
        # diffusers' additive mask (int(mask) - 1) * max, binarised at -9000: a token is valid where int(mask) >= 1
        valid = mask.astype(jnp.int32) >= 1
        video = self.video_connector(video, valid)
        audio = self.audio_connector(audio, valid)
        return video, audio, jnp.ones((batch, tokens), jnp.int32)

"""T5 (v1.1) encoder, computed as transformers' ``T5EncoderModel``, as a Flax linen module.

Axis letters in shape comments:
    B batch, T query tokens, S key tokens (T = S: self-attention), D d_model, H heads, K d_kv (head dim),
    F d_ff, L layers, V vocab, R relative-position buckets.

Parameters keep transformers' module names so that conversion is a table; the blocks sit under ``nn.scan``:

    shared/embedding                               [V, D]     <- shared.weight (tied to encoder.embed_tokens.weight)
    relative_attention_bias                        [R, H]
        <- encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight
    block/layer_0/layer_norm/weight                [L, D]     <- encoder.block.{i}.layer.0.layer_norm.weight
    block/layer_0/SelfAttention/{q,k,v}/kernel     [L, D, HK] <- encoder.block.{i}.layer.0.SelfAttention.{q,k,v}.weight
    block/layer_0/SelfAttention/o/kernel           [L, HK, D]
    block/layer_1/layer_norm/weight                [L, D]
    block/layer_1/DenseReluDense/{wi_0,wi_1}/kernel [L, D, F] (gated; ``wi`` for the plain FFN)
    block/layer_1/DenseReluDense/wo/kernel         [L, F, D]
    final_layer_norm/weight                        [D]

Logical axes (``ltx_jax.sharding``), declared where each param is created: the embedding ("vocab", "embed"), q/k/v
("embed", "heads") and o ("heads", "embed"), wi* ("embed", "mlp") and wo ("mlp", "embed"), the norms ("embed",),
the relative-position table ("replicated", "heads"); ``nn.scan`` adds "layers" in front of the blocks'.

transformers stores the relative-position table in layer 0, which computes the bias and hands it to every later
layer; we compute that same bias once, before the scanned stack, from the same table.

Precision: norms, softmax and the residual stream are float32 whatever ``dtype`` is; matmul inputs are ``dtype``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs import T5Config
from ltx_jax.models import layers

Dtype = Any


def relative_position_buckets(
    query_length: int, key_length: int, num_buckets: int, max_distance: int
) -> np.ndarray:
    """Bidirectional relative-position bucket of every (query, key) pair, as transformers computes it.

    Half the buckets are for keys after the query, half for keys before it; within a half, distances below
    ``num_buckets // 4`` get a bucket each and larger ones share log-spaced buckets up to ``max_distance``.
    The log-spaced part is computed in float32 and truncated, step by step as torch does, so that distances on a
    bucket boundary land in the same bucket (tests compare every distance with transformers').

    Returns:
      [T, S] int32 in [0, num_buckets).
    """
    relative = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]  # [T, S] key - query
    half = num_buckets // 2
    buckets = (relative > 0).astype(np.int64) * half
    distance = np.abs(relative)
    max_exact = half // 2
    is_small = distance < max_exact
    safe = np.maximum(distance, max_exact).astype(np.float32)  # log() only where it is used
    log_ratio = np.log(safe / np.float32(max_exact)) / np.float32(math.log(max_distance / max_exact))
    large = max_exact + (log_ratio * np.float32(half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return (buckets + np.where(is_small, distance, large)).astype(np.int32)


def _activation(name: str):
    return {
        "relu": jax.nn.relu,
        "gelu": functools.partial(jax.nn.gelu, approximate=False),
        "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
        "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
        "silu": jax.nn.silu,
        "swish": jax.nn.silu,
    }[name]


def _normal(stddev: float):
    return nn.initializers.normal(stddev=stddev)


class T5Attention(nn.Module):
    """Multi-head self-attention without score scaling; the relative-position bias is added to the scores."""

    config: T5Config
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None  # kernel storage of the block linears (layers.Dense)

    @nn.compact
    def __call__(self, x: jax.Array, position_bias: jax.Array, key_mask: jax.Array | None) -> jax.Array:
        """x: [B, T, D] in dtype; position_bias: [1, H, T, S] float32; key_mask: [B, S] bool or None -> [B, T, D]."""
        cfg = self.config
        d, inner, heads, head_dim = cfg.d_model, cfg.inner_dim, cfg.num_heads, cfg.d_kv
        dense = functools.partial(layers.dense, self, use_bias=False)
        batch, length = x.shape[:2]
        column = ("embed", "heads")
        q = dense(inner, column, kernel_init=_normal((d * head_dim) ** -0.5), name="q")(x)
        k = dense(inner, column, kernel_init=_normal(d**-0.5), name="k")(x)
        v = dense(inner, column, kernel_init=_normal(d**-0.5), name="v")(x)
        q, k, v = (y.reshape(batch, length, heads, head_dim) for y in (q, k, v))  # [B, T, H, K]
        # T5 does not scale q.k by 1/sqrt(K): the scale is folded into the initialisation of q.
        scores = jnp.einsum(
            "bthk,bshk->bhts", q, k, precision=self.precision, preferred_element_type=jnp.float32
        )  # [B, H, T, S] float32
        scores = scores + position_bias
        if key_mask is not None:
            # transformers puts finfo.min on masked keys; a row with no valid key then attends uniformly, as here.
            scores = jnp.where(key_mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhts,bshk->bthk", probs, v, precision=self.precision)  # [B, T, H, K]
        out = out.reshape(batch, length, inner).astype(self.dtype)
        return dense(d, ("heads", "embed"), kernel_init=_normal(inner**-0.5), name="o")(out)


class T5DenseReluDense(nn.Module):
    """The feed-forward: ``wo(act(wi_0 x) * wi_1 x)`` when gated (T5 v1.1), ``wo(act(wi x))`` otherwise."""

    config: T5Config
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None  # kernel storage of the block linears (layers.Dense)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, T, D] in dtype -> [B, T, D] in dtype."""
        cfg = self.config
        dense = functools.partial(layers.dense, self, use_bias=False)
        act = _activation(cfg.dense_act_fn)
        wi_init = _normal(cfg.d_model**-0.5)
        if cfg.is_gated_act:
            gate = act(dense(cfg.d_ff, ("embed", "mlp"), kernel_init=wi_init, name="wi_0")(x).astype(jnp.float32))
            h = gate * dense(cfg.d_ff, ("embed", "mlp"), kernel_init=wi_init, name="wi_1")(x).astype(jnp.float32)
        else:
            h = act(dense(cfg.d_ff, ("embed", "mlp"), kernel_init=wi_init,
                          name="wi")(x).astype(jnp.float32))  # [B, T, F]
        # transformers keeps `wo` in float32 (`_keep_in_fp32_modules`), but only when loading in float16, whose
        # range T5 v1.1's FFN outputs overflow; bfloat16 has float32's range, and transformers then runs `wo` in
        # bfloat16 too. So do we: float32 `wo` would put a third of the FFN's FLOPs on the slow path for no
        # gain, and the precision that matters is kept by the float32 residual stream (see T5Block).
        return dense(cfg.d_model, ("mlp", "embed"), kernel_init=_normal(cfg.d_ff**-0.5),
                     name="wo")(h.astype(self.dtype))


class T5LayerSelfAttention(nn.Module):
    config: T5Config
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None  # kernel storage of the block linears (layers.Dense)

    @nn.compact
    def __call__(self, x, position_bias, key_mask):
        # T5's layer norm is an RMS norm (no mean subtraction, no bias) with float32 statistics.
        h = layers.RMSNorm(self.config.layer_norm_epsilon, True, self.param_dtype, axis="embed",
                           name="layer_norm")(x).astype(self.dtype)
        h = T5Attention(self.config, self.dtype, self.param_dtype, self.precision, self.weights,
                        name="SelfAttention")(h, position_bias, key_mask)
        return x + h.astype(x.dtype)


class T5LayerFF(nn.Module):
    config: T5Config
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None  # kernel storage of the block linears (layers.Dense)

    @nn.compact
    def __call__(self, x):
        # T5's layer norm is an RMS norm (no mean subtraction, no bias) with float32 statistics.
        h = layers.RMSNorm(self.config.layer_norm_epsilon, True, self.param_dtype, axis="embed",
                           name="layer_norm")(x).astype(self.dtype)
        h = T5DenseReluDense(self.config, self.dtype, self.param_dtype, self.precision, self.weights,
                             name="DenseReluDense")(h)
        return x + h.astype(x.dtype)


class T5Block(nn.Module):
    """One encoder layer, as a scan body: ``(residual, position_bias, key_mask) -> (residual, None)``.

    The residual stream stays float32 in every dtype: it is [B, T, D] (a few MB), costs nothing to keep exact,
    and is where bf16 rounding would otherwise accumulate over 24 layers. (transformers in bf16 rounds it.)
    """

    config: T5Config
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None  # kernel storage of the block linears (layers.Dense)

    @nn.compact
    def __call__(self, x, position_bias, key_mask):
        """x: [B, T, D] float32; position_bias: [1, H, T, T] float32; key_mask: [B, T] bool or None."""
        x = T5LayerSelfAttention(self.config, self.dtype, self.param_dtype, self.precision, self.weights,
                                 name="layer_0")(x, position_bias, key_mask)
        x = T5LayerFF(self.config, self.dtype, self.param_dtype, self.precision, self.weights, name="layer_1")(x)
        return x, None


class T5EncoderModel(nn.Module):
    """transformers' ``T5EncoderModel``: token ids -> last hidden states.

    Attributes:
      config: the architecture (``T5_PRESETS["t5-v1_1-xxl"]`` for LTX-Video).
      dtype: dtype of matmul inputs and of the output (bf16 on GPU); norms, softmax, the relative-position bias
        and the residual stream are float32.
      param_dtype: dtype of the parameters created by ``init``.
      precision: matmul precision passed to every Dense and einsum (None = backend default).
      weights: storage of the encoder blocks' linear kernels (q, k, v, o, wi*, wo): None (``param_dtype``), "int8"
        or "fp8", with a float32 scale per output channel (``layers.Dense``); the embedding, the relative-position
        table and the norms keep ``param_dtype``.
    """

    config: T5Config
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    weights: str | None = None

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        return (jnp.zeros((1, 1), jnp.int32),), {}

    @nn.compact
    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """Encodes token ids.

        Args:
          input_ids: [B, T] int token ids.
          attention_mask: [B, T], nonzero for tokens that keys may come from; None attends to every token
            (what diffusers' LTXPipeline does: it passes no mask to the text encoder).
        Returns:
          [B, T, D] in ``dtype``; padded positions are computed too (they attend to the valid tokens).
        """
        cfg = self.config
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids has shape {input_ids.shape}; expected [B, T] token ids.")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask has shape {attention_mask.shape}; "
                             f"expected {tuple(input_ids.shape)} like input_ids.")
        length = input_ids.shape[1]

        embed = nn.Embed(cfg.vocab_size, cfg.d_model, param_dtype=self.param_dtype, name="shared",
                         embedding_init=nn.with_logical_partitioning(_normal(1.0), ("vocab", "embed")))
        x = embed(input_ids).astype(jnp.float32)  # [B, T, D] residual stream

        table = self.param(
            "relative_attention_bias",
            nn.with_logical_partitioning(_normal(cfg.d_model**-0.5), ("replicated", "heads")),
            (cfg.relative_attention_num_buckets, cfg.num_heads), self.param_dtype,
        )  # [R, H]
        buckets = relative_position_buckets(
            length, length, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
        )  # [T, S] static
        position_bias = jnp.transpose(table.astype(jnp.float32)[jnp.asarray(buckets)], (2, 0, 1))[None]  # [1, H, T, S]

        key_mask = None if attention_mask is None else attention_mask != 0  # [B, S]
        blocks = nn.scan(
            T5Block,
            variable_axes={"params": 0, layers.LORA_COLLECTION: 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast, nn.broadcast),
            length=cfg.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(cfg, self.dtype, self.param_dtype, self.precision, self.weights, name="block")
        x, _ = blocks(x, position_bias, key_mask)
        final_norm = layers.RMSNorm(cfg.layer_norm_epsilon, True, self.param_dtype, axis="embed",
                                    name="final_layer_norm")
        return final_norm(x).astype(self.dtype)

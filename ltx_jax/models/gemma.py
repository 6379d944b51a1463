"""Gemma 3 / Gemma 4 text models as LTX-2's prompt encoder: every layer's hidden states, as diffusers' LTX2Pipeline
takes them from transformers' ``Gemma3ForConditionalGeneration`` / ``Gemma4UnifiedForConditionalGeneration``.

Design note -- our own Flax model, not Google DeepMind's ``gemma`` package (JAX). We weighed gemma 3.3.0 (PyPI, the
newest; its wheel's metadata and sources read without installing it): (1) dependencies: it requires kauldron, grain,
etils, jaxtyping, orbax-checkpoint, sentencepiece and treescope on top of jax/flax, where this module needs nothing
new; (2) checkpoints: it restores its own Orbax checkpoints (``gs://gemma-data/...``, ``gm.ckpts``) and has no reader
for the Hugging Face safetensors that LTX-2's ``text_encoder/`` folders ship (``language_model.model.*`` /
``model.language_model.*`` keys), so we would still write this conversion; (3) outputs: ``return_hidden_states``
returns the last hidden state only, while LTX-2 needs all L + 1 of them (embeddings, each layer, the final norm's),
and every call also computes the [B, T, 262k] logits; its layers are a Python list (not scanned), its ``__call__`` is
an ``nn.jit``, and it has Gemma 2 / 3 / 3n but no Gemma 4 (LTX-2.5). Our module is ~400 lines on the shared pieces
(the dense factory: int8 / fp8 kernels and LoRA; logical axes for ``ShardingPlan``; ``nn.scan`` + ``nn.remat``) and is
tested against transformers itself, layer by layer.

Axis letters in shape comments: B batch, T query tokens, S key tokens (= T), D hidden_size, H heads, N key/value heads,
G = H / N (queries per key head), K head_dim, F intermediate_size, L layers, P layers of one period of ``layer_types``,
V vocab.

What diffusers does (``LTX2Pipeline._get_gemma_prompt_embeds``, 0.42.1): the tokenizer (transformers' ``AutoTokenizer``
from the pipeline's ``tokenizer/`` folder, ``padding_side = "left"``, ``pad_token = eos_token`` when it has none) pads
each stripped prompt on the left to ``max_sequence_length`` (1024) with ``add_special_tokens=True`` (a BOS first) and
truncation; the text encoder runs with that ``attention_mask`` and ``output_hidden_states=True``; its L + 1 hidden
states (the scaled embeddings, layers 0 .. L-2's outputs, and the final norm of layer L-1's output, transformers'
``tie_last_hidden_states``) are ``torch.stack(..., dim=-1)`` -> [B, T, D, L+1], which ``GemmaTextEncoder`` returns,
then ``flatten(2, 3)`` -> [B, T, D * (L+1)] (``pack_hidden_states``) and cast to the pipeline dtype. No normalisation
happens there: the per-layer masked mean/range norm (LTX-2.0) or per-token RMS norm (2.3, 2.5) is the connectors'
first step (``LTX2TextConnectors``), as are the zeros written over padded tokens.

Positions are ``arange(T)`` whatever the padding (transformers computes ``position_ids`` without the mask in a plain
forward; only ``generate`` derives them from it): with left padding a prompt's first token sits at T - len. RoPE only
sees differences inside the prompt, so this moves nothing but rounding. Masks: causal, keys where ``attention_mask``
is 1, and on "sliding_attention" layers keys less than ``sliding_window`` back (transformers' ``q - k < window``; for
T <= window it is the full mask and is not built twice). Scores are dense [T, S] on every layer: at LTX-2's T = 1024
and the 12B models' window of 1024 the sliding layers attend to every earlier key anyway, so a banded kernel would only
pay for prompts longer than the window. A query with no key left (a left-pad position) gets a zero attention output, as
torch's SDPA (transformers' default, what the pipeline loads) gives -- transformers' eager attention spreads such a row
over all keys instead, so padded rows differ between the two while real tokens agree; the MLP still runs on padded
rows, so they hold finite values, which the connectors then zero. Token ids are used as given (transformers' Gemma 4
maps image / audio placeholder ids to the pad id; text prompts hold none).

Parameters keep transformers' names; the layers are scanned over periods of ``layer_types`` (Gemma 3 / 4 12B: 5
sliding + 1 full, 8 periods), so each layer's type -- its mask, its RoPE, and for Gemma 4 its head width and
key/value projections -- is static inside the scan body:

    embed_tokens/embedding                       [V, D]        <- {prefix}embed_tokens.weight
    layers/layer_{j}/input_layernorm/weight      [L/P, D]      <- {prefix}layers.{g*P+j}.input_layernorm.weight
    layers/layer_{j}/self_attn/{q,k,v,o}_proj/kernel  [L/P, D, H*K] (o: [L/P, H*K, D]; no v_proj on Gemma 4 k=v layers)
    layers/layer_{j}/self_attn/{q,k}_norm/weight [L/P, K]
    layers/layer_{j}/{post_attention,pre_feedforward,post_feedforward}_layernorm/weight  [L/P, D]
    layers/layer_{j}/mlp/{gate,up,down}_proj/kernel   [L/P, D, F] (down: [L/P, F, D])
    layers/layer_{j}/layer_scalar                [L/P, 1]      (Gemma 4)
    norm/weight                                  [D]

Logical axes: the embedding ("vocab", "embed"); q/k/v, gate/up ("embed", "heads" / "mlp"); o, down ("heads" / "mlp",
"embed"); D-wide norms ("embed",), head norms and layer scalars ("replicated",); "layers" in front of scanned params.

Precision: the residual stream, norms, RoPE and softmax are float32 whatever ``dtype`` is; matmul inputs are ``dtype``
(transformers in bf16 rounds the residual to bf16 after every layer).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs_gemma import Gemma4TextConfig, GemmaTextConfig, RopeParameters
from ltx_jax.models import layers

Dtype = Any

ACTIVATIONS = {
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "silu": jax.nn.silu,
}


def layer_period(layer_types: tuple[str, ...]) -> tuple[str, ...]:
    """The shortest prefix of ``layer_types`` that repeats to all of it (the whole tuple when none does)."""
    n = len(layer_types)
    for p in range(1, n + 1):
        if n % p == 0 and all(layer_types[i] == layer_types[i % p] for i in range(n)):
            return tuple(layer_types[:p])
    raise AssertionError("unreachable: the whole tuple is a period")


def rope_inverse_frequencies(rope: RopeParameters, head_dim: int) -> np.ndarray:
    """[K / 2] float32 inverse frequencies of one layer type, computed as transformers computes them (float32).

    "default": ``theta ** (-2i / K)``; "linear": the same divided by ``factor``; "proportional" (Gemma 4 global):
    the first ``int(partial_rotary_factor * K / 2)`` of ``theta ** (-2i / K)`` then zeros (those dims unrotated),
    divided by ``factor``.
    """
    base = np.float32(rope.rope_theta)
    if rope.rope_type == "proportional":
        angles = int(rope.partial_rotary_factor * head_dim // 2)
        rotated = 1.0 / (base ** (np.arange(0, 2 * angles, 2).astype(np.float32) / np.float32(head_dim)))
        inv = np.concatenate([rotated, np.zeros(head_dim // 2 - angles, np.float32)])
    else:
        inv = 1.0 / (base ** (np.arange(0, head_dim, 2).astype(np.float32) / np.float32(head_dim)))
    if rope.rope_type != "default":
        inv = inv / np.float32(rope.factor)
    return inv.astype(np.float32)


def rope_tables(rope: RopeParameters, head_dim: int, length: int) -> tuple[jax.Array, jax.Array]:
    """(cos, sin), each [T, K] float32, for positions ``arange(T)`` (transformers' ``cat(freqs, freqs)`` layout)."""
    inv = jnp.asarray(rope_inverse_frequencies(rope, head_dim))
    freqs = jnp.arange(length, dtype=jnp.float32)[:, None] * inv[None, :]  # [T, K/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B, T, heads, K] float32, cos / sin [T, K] -> ``x * cos + rotate_half(x) * sin`` (transformers' layout)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


def pack_hidden_states(hidden_states: jax.Array) -> jax.Array:
    """[B, T, D, L+1] -> [B, T, D * (L+1)], diffusers' ``flatten(2, 3)`` (entry d * (L+1) + l)."""
    b, t, d, n = hidden_states.shape
    return hidden_states.reshape(b, t, d * n)


class GemmaRMSNorm(nn.Module):
    """RMS norm over the last axis in float32 (returns float32): times ``offset + weight`` (Gemma 3: offset 1,
    weight initialised to 0; Gemma 4: offset 0, weight 1); ``axis=None``: no weight (Gemma 4's ``v_norm``)."""

    eps: float
    offset: float
    param_dtype: Dtype
    axis: str | None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = layers.rms_normalize(x, self.eps)
        if self.axis is None:
            return y
        init = nn.initializers.zeros if self.offset else nn.initializers.ones
        weight = self.param("weight", nn.with_logical_partitioning(init, (self.axis,)), (x.shape[-1],),
                            self.param_dtype)
        return y * (self.offset + weight.astype(jnp.float32))


def _norm(config: GemmaTextConfig, param_dtype, axis: str | None, name: str) -> GemmaRMSNorm:
    offset = 0.0 if isinstance(config, Gemma4TextConfig) else 1.0
    return GemmaRMSNorm(config.rms_norm_eps, offset, param_dtype, axis, name=name)


def _normal(stddev: float = 0.02):
    return nn.initializers.normal(stddev=stddev)


class GemmaAttention(nn.Module):
    """Grouped-query self-attention of one layer type (its head width, key heads, mask and RoPE are static)."""

    config: GemmaTextConfig
    layer_type: str
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None  # kernel storage of the linears (layers.Dense)

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        """x [B, T, D] in dtype; mask [B, T, S] bool (True: the key takes part); cos / sin [T, K] -> [B, T, D]."""
        cfg = self.config
        gemma4 = isinstance(cfg, Gemma4TextConfig)
        heads = cfg.num_attention_heads
        head_dim, kv_heads = cfg.layer_head_dim(self.layer_type), cfg.layer_kv_heads(self.layer_type)
        k_is_v = gemma4 and cfg.attention_k_eq_v and self.layer_type == "full_attention"
        dense = functools.partial(layers.dense, self, use_bias=cfg.attention_bias, kernel_init=_normal())
        batch, length = x.shape[:2]

        q = dense(heads * head_dim, ("embed", "heads"), name="q_proj")(x).reshape(batch, length, heads, head_dim)
        k = dense(kv_heads * head_dim, ("embed", "heads"), name="k_proj")(x).reshape(batch, length, kv_heads, head_dim)
        v = k if k_is_v else dense(kv_heads * head_dim, ("embed", "heads"), name="v_proj")(x).reshape(k.shape)
        q = apply_rope(_norm(cfg, self.param_dtype, "replicated", "q_norm")(q), cos, sin).astype(self.dtype)
        k = apply_rope(_norm(cfg, self.param_dtype, "replicated", "k_norm")(k), cos, sin).astype(self.dtype)
        if gemma4:  # Gemma 4 normalises values too, without a weight
            v = _norm(cfg, self.param_dtype, None, "v_norm")(v).astype(self.dtype)

        groups = heads // kv_heads  # query head h reads key head h // groups (transformers' repeat_kv)
        q = q.reshape(batch, length, kv_heads, groups, head_dim)
        scores = jnp.einsum("btngk,bsnk->bngts", q, k, precision=self.precision,
                            preferred_element_type=jnp.float32)  # [B, N, G, T, S] float32
        scale = 1.0 if gemma4 else cfg.query_pre_attn_scalar ** -0.5
        scores = scores * scale
        softcap = None if gemma4 else cfg.attn_logit_softcapping
        if softcap is not None:
            scores = jnp.tanh(scores / softcap) * softcap
        keep = mask[:, None, None]  # [B, 1, 1, T, S]
        probs = jax.nn.softmax(jnp.where(keep, scores, jnp.finfo(jnp.float32).min), axis=-1)
        probs = jnp.where(jnp.any(keep, axis=-1, keepdims=True), probs, 0.0)  # no key: zero output (torch SDPA)
        out = jnp.einsum("bngts,bsnk->btngk", probs.astype(self.dtype), v, precision=self.precision)
        out = out.reshape(batch, length, heads * head_dim).astype(self.dtype)
        return dense(cfg.hidden_size, ("heads", "embed"), name="o_proj")(out)


class GemmaMLP(nn.Module):
    """``down_proj(act(gate_proj x) * up_proj x)``."""

    config: GemmaTextConfig
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, D] in dtype -> [B, T, D] in dtype."""
        cfg = self.config
        dense = functools.partial(layers.dense, self, use_bias=False, kernel_init=_normal())
        gate = ACTIVATIONS[cfg.hidden_activation](
            dense(cfg.intermediate_size, ("embed", "mlp"), name="gate_proj")(x).astype(jnp.float32))
        h = gate * dense(cfg.intermediate_size, ("embed", "mlp"), name="up_proj")(x).astype(jnp.float32)  # [B, T, F]
        return dense(cfg.hidden_size, ("mlp", "embed"), name="down_proj")(h.astype(self.dtype))


class GemmaDecoderLayer(nn.Module):
    """One layer: ``x + post_attn_norm(attn(input_norm x))``, then ``x + post_ff_norm(mlp(pre_ff_norm x))``; Gemma 4
    multiplies the result by ``layer_scalar``. x: [B, T, D] float32 in and out."""

    config: GemmaTextConfig
    layer_type: str
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None

    @nn.compact
    def __call__(self, x, mask, cos, sin):
        cfg, pd = self.config, self.param_dtype
        h = _norm(cfg, pd, "embed", "input_layernorm")(x).astype(self.dtype)
        h = GemmaAttention(cfg, self.layer_type, self.dtype, pd, self.precision, self.weights, name="self_attn")(
            h, mask, cos, sin)
        x = x + _norm(cfg, pd, "embed", "post_attention_layernorm")(h)
        h = _norm(cfg, pd, "embed", "pre_feedforward_layernorm")(x).astype(self.dtype)
        h = GemmaMLP(cfg, self.dtype, pd, self.precision, self.weights, name="mlp")(h)
        x = x + _norm(cfg, pd, "embed", "post_feedforward_layernorm")(h)
        if isinstance(cfg, Gemma4TextConfig):
            scalar = self.param("layer_scalar", nn.with_logical_partitioning(nn.initializers.ones, ("replicated",)),
                                (1,), pd)
            x = x * scalar.astype(jnp.float32)
        return x


class GemmaLayerPeriod(nn.Module):
    """The scan body: one period of ``layer_types`` (``pattern``), layers named ``layer_{j}``.

    ``(x [B, T, D] float32, masks, ropes) -> (x, hidden states [P, B, T, D] in dtype)``; ``masks`` maps each layer
    type to its [B, T, S] bool mask, ``ropes`` to its (cos, sin) [T, K] (both broadcast over the scan).
    """

    config: GemmaTextConfig
    pattern: tuple[str, ...]
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None
    sharding: Any = None

    @nn.compact
    def __call__(self, x, masks, ropes):
        outs = []
        for j, layer_type in enumerate(self.pattern):
            cos, sin = ropes[layer_type]
            x = GemmaDecoderLayer(self.config, layer_type, self.dtype, self.param_dtype, self.precision, self.weights,
                                  name=f"layer_{j}")(x, masks[layer_type], cos, sin)
            x = layers.constrain(self.sharding, x, "batch", "tokens", None)
            outs.append(x.astype(self.dtype))
        return x, jnp.stack(outs)


class GemmaTextEncoder(nn.Module):
    """Token ids -> all L + 1 hidden states of a Gemma 3 / Gemma 4 text model (what LTX-2's pipelines feed the
    connectors).

    Attributes:
      config: ``Gemma3TextConfig`` or ``Gemma4TextConfig`` (``ltx_jax.configs_gemma.GEMMA_PRESETS``).
      dtype: dtype of matmul inputs and of the output (bf16 on GPU); norms, RoPE, softmax and the residual stream are
        float32.
      param_dtype: dtype of the params created by ``init``.
      precision: matmul precision of every Dense and einsum (None: the backend's default).
      weights: storage of the layers' linear kernels: None (``param_dtype``), "int8" or "fp8" with a float32 scale per
        output channel (``layers.Dense``); the embedding, norms and layer scalars keep ``param_dtype``.
      remat: recompute each period of layers in the backward pass (``nn.remat``; training through the encoder).
      sharding: an ``ltx_jax.sharding.ShardingPlan`` or None: the residual stream is constrained to
        ("batch", "tokens", None); the params' shardings are declared where they are created.
    """

    config: GemmaTextConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    weights: str | None = None
    remat: bool = False
    sharding: Any = None

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        return (jnp.zeros((1, 1), jnp.int32),), {}

    @property
    def pattern(self) -> tuple[str, ...]:
        return layer_period(self.config.layer_types)

    @nn.compact
    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """Encodes token ids.

        Args:
          input_ids: [B, T] int token ids (left-padded, as the pipeline's tokenizer gives them).
          attention_mask: [B, T], nonzero for real tokens; None: every token is real.
        Returns:
          [B, T, D, L+1] in ``dtype``: [..., 0] the scaled embeddings, [..., l] layer l-1's output for l < L, and
          [..., L] the final norm of the last layer's output; exactly ``torch.stack(outputs.hidden_states, -1)``.
        """
        cfg = self.config
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids has shape {input_ids.shape}; expected [B, T] token ids.")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask has shape {attention_mask.shape}; "
                             f"expected {tuple(input_ids.shape)} like input_ids.")
        batch, length = input_ids.shape
        layers.check_weights(self.weights)

        embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=jnp.float32, param_dtype=self.param_dtype,
                         embedding_init=nn.with_logical_partitioning(_normal(), ("vocab", "embed")),
                         name="embed_tokens")
        # transformers multiplies by sqrt(D) rounded to the weights' dtype (62.0 for 3840 in bf16).
        scale = jnp.asarray(np.float32(math.sqrt(cfg.hidden_size))).astype(self.param_dtype).astype(jnp.float32)
        x = embed(input_ids) * scale  # [B, T, D] float32, the residual stream
        x = layers.constrain(self.sharding, x, "batch", "tokens", None)
        embeddings = x.astype(self.dtype)

        position = jnp.arange(length)
        causal = position[None, :] <= position[:, None]  # [T, S]: key at or before the query
        valid = jnp.ones((batch, length), bool) if attention_mask is None else attention_mask != 0
        full = causal[None] & valid[:, None, :]  # [B, T, S]
        masks, ropes = {}, {}
        for layer_type in sorted(set(cfg.layer_types)):
            masks[layer_type] = full
            if layer_type == "sliding_attention" and cfg.sliding_window < length:  # else the window holds every key
                near = (position[:, None] - position[None, :]) < cfg.sliding_window  # [T, S]: q - k < window
                masks[layer_type] = full & near[None]
            rope = getattr(cfg.rope_parameters, layer_type)
            ropes[layer_type] = rope_tables(rope, cfg.layer_head_dim(layer_type), length)

        pattern = self.pattern
        periods = cfg.num_hidden_layers // len(pattern)
        body = nn.remat(GemmaLayerPeriod, prevent_cse=False) if self.remat else GemmaLayerPeriod
        stack = nn.scan(
            body,
            variable_axes={"params": 0, layers.LORA_COLLECTION: 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast, nn.broadcast),
            length=periods,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(cfg, pattern, self.dtype, self.param_dtype, self.precision, self.weights, self.sharding, name="layers")
        x, hidden = stack(x, masks, ropes)  # hidden: [L/P, P, B, T, D]
        hidden = hidden.reshape(cfg.num_hidden_layers, batch, length, cfg.hidden_size)
        final = _norm(cfg, self.param_dtype, "embed", "norm")(x).astype(self.dtype)
        out = jnp.concatenate([embeddings[None], hidden[:-1], final[None]], axis=0)  # [L+1, B, T, D]
        out = jnp.moveaxis(out, 0, -1)  # [B, T, D, L+1]
        return layers.constrain(self.sharding, out, "batch", "tokens", None, None)

"""LTX-2's attention and audio-video transformer block (diffusers' ``LTX2Attention`` with its two processors, and
``LTX2VideoTransformerBlock``), as Flax modules with diffusers' parameter names.

Axis letters: B batch, N video tokens, M audio tokens, T text tokens, D video width, A audio width, H heads, K head
dim, L layers.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltx_jax.configs_ltx2 import LTX2TransformerConfig
from ltx_jax.models import layers
from ltx_jax.models.ltx2.rope import apply_rope
from ltx_jax.models.transformer import FeedForward

Dtype = Any
Rope = tuple[jax.Array, jax.Array]  # cos, sin [B or 1, tokens, width / 2] float32 (rope.rope_tables)


def torch_lerp(start: jax.Array, end: jax.Array, weight: jax.Array) -> jax.Array:
    """``torch.lerp(start, end, weight)`` as torch computes it (exact at weight 0 and 1)."""
    diff = end - start
    return jnp.where(weight < 0.5, start + weight * diff, end - diff * (1 - weight))


class LTX2Attention(nn.Module):
    """q / k / v projections, RMSNorm of q and k across heads, RoPE (separate query and key tables: the audio <-> video
    cross-attention rotates each side by its own modality's times), per-head gates (``to_gate_logits``, LTX-2.3) and
    the perturbed (STG) path of ``LTX2PerturbedAttnProcessor``."""

    heads: int
    head_dim: int
    out_features: int
    use_bias: bool
    out_bias: bool
    gated: bool
    rope_type: str
    implementation: layers.AttentionImplementation
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None
    compute: str | None = None
    sharding: Any = None
    eps: float = 1e-6  # LTX2Attention's torch.nn.RMSNorm default (the config's norm_eps does not reach it)

    def setup(self):
        inner = self.heads * self.head_dim
        self.to_q = layers.dense(self, inner, ("embed", "heads"), use_bias=self.use_bias)
        self.to_k = layers.dense(self, inner, ("embed", "heads"), use_bias=self.use_bias)
        self.to_v = layers.dense(self, inner, ("embed", "heads"), use_bias=self.use_bias)
        self.norm_q = layers.RMSNorm(self.eps, True, self.param_dtype, axis="heads")
        self.norm_k = layers.RMSNorm(self.eps, True, self.param_dtype, axis="heads")
        self.to_out_0 = layers.dense(self, self.out_features, ("heads", "embed"), use_bias=self.out_bias)
        if self.gated:
            self.to_gate_logits = layers.dense(self, self.heads, ("embed", "heads"), use_bias=True)

    def key_value(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """context [B, S, C] -> keys (after norm_k, before RoPE) and values, each [B, S, H*K]."""
        return self.norm_k(self.to_k(context)), self.to_v(context)

    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        *,
        key_value: tuple[jax.Array, jax.Array] | None = None,
        q_rope: Rope | None = None,
        k_rope: Rope | None = None,
        rope_heads: tuple[int, int] = (1, 1),
        key_mask: jax.Array | None = None,
        bias: jax.Array | None = None,
        perturbation: jax.Array | None = None,
    ) -> jax.Array:
        """x [B, N, C]; context [B, S, C'] (None: self-attention over x) or its precomputed ``key_value``;
        q_rope / k_rope: tables of the queries / keys (k_rope None: q_rope's), grouped by ``rope_heads`` (q, k) in
        the split layout; key_mask [B, S] bool; bias: additive, broadcastable to [B, H, N, S]; perturbation [B]: 1 =
        attend, 0 = the values instead of the attention (STG), fractions interpolate (``torch.lerp``). -> [B, N, C]."""
        batch, n_q = x.shape[:2]
        inner = self.heads * self.head_dim
        q = self.norm_q(self.to_q(x))  # [B, N, H*K]
        k, v = key_value if key_value is not None else self.key_value(x if context is None else context)
        if q_rope is not None:
            k_rope = q_rope if k_rope is None else k_rope
            q = apply_rope(q, *q_rope, self.rope_type, rope_heads[0])
            k = apply_rope(k, *k_rope, self.rope_type, rope_heads[1])
        values = v
        n_kv = k.shape[1]
        q = q.reshape(batch, n_q, self.heads, self.head_dim)
        k = k.reshape(batch, n_kv, self.heads, self.head_dim)
        v = v.reshape(batch, n_kv, self.heads, self.head_dim)
        self_attention = context is None and key_value is None
        if self_attention and key_mask is None and bias is None and layers.uses_context_parallel(self.sharding,
                                                                                                 self.heads):
            out = layers.context_parallel_attention(q, k, v, plan=self.sharding, implementation=self.implementation)
        else:
            out = layers.attention(q, k, v, key_mask=key_mask, bias=bias, implementation=self.implementation)
        out = out.reshape(batch, n_q, inner).astype(self.dtype)  # [B, N, H*K]
        if perturbation is not None:
            out = torch_lerp(values.astype(out.dtype), out, perturbation.astype(out.dtype)[:, None, None])
        if self.gated:
            gates = 2.0 * jax.nn.sigmoid(self.to_gate_logits(x))  # [B, N, H]; logits 0 -> gates 1
            out = (out.reshape(batch, n_q, self.heads, self.head_dim) * gates[..., None]).reshape(batch, n_q, inner)
        return self.to_out_0(out)


def _modulation(table: jax.Array, temb: jax.Array, i: int) -> jax.Array:
    """Row i of a [k, W] table plus temb's i-th W channels (temb [B, 1|N, kW]): [B, 1|N, W] in temb's dtype
    (diffusers' ``get_mod_params``)."""
    width = table.shape[-1]
    return table[i].astype(temb.dtype) + temb[:, :, i * width:(i + 1) * width]


class LTX2TransformerBlock(nn.Module):
    """One audio-video block: self-attention, text cross-attention, audio -> video and video -> audio attention and
    the feed-forward of each stream, each modulated (AdaLN-single, LTX-2.3's prompt AdaLN). Both methods are scan
    bodies over the layers."""

    config: LTX2TransformerConfig
    implementation: layers.AttentionImplementation
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None
    compute: str | None = None
    sharding: Any = None

    def setup(self):
        cfg = self.config
        dim, audio_dim = cfg.inner_dim, cfg.audio_inner_dim
        attn = functools.partial(
            LTX2Attention, use_bias=cfg.attention_bias, out_bias=cfg.attention_out_bias, rope_type=cfg.rope_type,
            implementation=self.implementation, dtype=self.dtype, param_dtype=self.param_dtype,
            precision=self.precision, weights=self.weights, compute=self.compute, sharding=self.sharding)
        video = dict(heads=cfg.num_attention_heads, head_dim=cfg.attention_head_dim)
        audio = dict(heads=cfg.audio_num_attention_heads, head_dim=cfg.audio_attention_head_dim)
        self.attn1 = attn(**video, out_features=dim, gated=cfg.gated_attn)
        self.audio_attn1 = attn(**audio, out_features=audio_dim, gated=cfg.audio_gated_attn)
        self.attn2 = attn(**video, out_features=dim, gated=cfg.gated_attn)
        self.audio_attn2 = attn(**audio, out_features=audio_dim, gated=cfg.audio_gated_attn)
        self.audio_to_video_attn = attn(**audio, out_features=dim, gated=cfg.gated_attn)  # Q video, K / V audio
        self.video_to_audio_attn = attn(**audio, out_features=audio_dim, gated=cfg.audio_gated_attn)  # Q audio
        norm = functools.partial(layers.RMSNorm, cfg.norm_eps, cfg.norm_elementwise_affine, self.param_dtype,
                                 axis="embed")
        self.norm1, self.norm2, self.norm3, self.audio_to_video_norm = norm(), norm(), norm(), norm()
        self.audio_norm1, self.audio_norm2, self.audio_norm3, self.video_to_audio_norm = norm(), norm(), norm(), norm()
        approximate = cfg.activation_fn == "gelu-approximate"
        ff = functools.partial(FeedForward, approximate=approximate, dtype=self.dtype, param_dtype=self.param_dtype,
                               precision=self.precision, weights=self.weights, compute=self.compute)
        self.ff = ff(dim, use_bias=cfg.ff_bias)
        self.audio_ff = ff(audio_dim, use_bias=cfg.audio_ff_bias)

        def table(name, rows, width, std):
            return self.param(name, nn.with_logical_partitioning(nn.initializers.normal(std), ("replicated", "embed")),
                              (rows, width), self.param_dtype)

        # [6 or 9, W]: shift / scale / gate of self-attention and feed-forward (+ text-query ones with cross_attn_mod)
        self.scale_shift_table = table("scale_shift_table", 9 if cfg.cross_attn_mod else 6, dim, dim ** -0.5)
        self.audio_scale_shift_table = table("audio_scale_shift_table", 9 if cfg.audio_cross_attn_mod else 6,
                                             audio_dim, audio_dim ** -0.5)
        if cfg.prompt_modulation:  # [2, W]: shift / scale of the text keys and values
            self.prompt_scale_shift_table = table("prompt_scale_shift_table", 2, dim, 1.0)
            self.audio_prompt_scale_shift_table = table("audio_prompt_scale_shift_table", 2, audio_dim, 1.0)
        # [5, W]: a2v scale, a2v shift, v2a scale, v2a shift, gate
        self.video_a2v_cross_attn_scale_shift_table = table("video_a2v_cross_attn_scale_shift_table", 5, dim, 1.0)
        self.audio_a2v_cross_attn_scale_shift_table = table("audio_a2v_cross_attn_scale_shift_table", 5, audio_dim,
                                                            1.0)

    # ------------------------------------------------------------------------------------------- text keys / values

    def _text_kv(self, attn: LTX2Attention, context: jax.Array, table_name: str, temb_prompt: jax.Array | None):
        """The text cross-attention's keys and values of context [B, T, W]: with prompt modulation, of
        ``context * (1 + scale) + shift`` (the per-layer table, plus the prompt AdaLN of sigma where there is one)."""
        if self.config.prompt_modulation:
            table = getattr(self, table_name)
            if temb_prompt is None:  # use_prompt_adaln_single=False: timestep-independent, cacheable
                shift, scale = table[0].astype(context.dtype), table[1].astype(context.dtype)
            else:
                shift, scale = _modulation(table, temb_prompt, 0), _modulation(table, temb_prompt, 1)
            context = context * (1 + scale) + shift
        return attn.key_value(context)

    def text_key_value(self, carry, context: jax.Array, audio_context: jax.Array):
        """This layer's text keys and values of both streams (when they do not depend on the timestep)."""
        return carry, (self._text_kv(self.attn2, context, "prompt_scale_shift_table", None),
                       self._text_kv(self.audio_attn2, audio_context, "audio_prompt_scale_shift_table", None))

    # ------------------------------------------------------------------------------------------------- forward

    def __call__(self, carry, text_kv, audio_text_kv, perturbation, ctx: dict, isolate_modalities: bool):
        """carry: (video [B, N, D], audio [B, M, A]); text_kv / audio_text_kv: this layer's text (keys, values)
        [B, T, D] / [B, T, A], or None to compute them from ``ctx["context"]`` (timestep-dependent prompt AdaLN);
        perturbation: this layer's [B] STG weights or None; ctx: what all layers share (``transformer.LTX2Model``'s
        ``_block_context``); isolate_modalities: skip the audio <-> video attention (static)."""
        cfg = self.config
        h, ah = carry
        h = layers.constrain(self.sharding, h, "batch", "tokens", None)
        ah = layers.constrain(self.sharding, ah, "batch", "tokens", None)
        temb, temb_audio = ctx["temb"], ctx["temb_audio"]
        sst, asst = self.scale_shift_table, self.audio_scale_shift_table
        heads, audio_heads = cfg.num_attention_heads, cfg.audio_num_attention_heads

        # 1. self-attention
        x = self.norm1(h) * (1 + _modulation(sst, temb, 1)) + _modulation(sst, temb, 0)
        attn = self.attn1(x, q_rope=ctx["video_rope"], rope_heads=(heads, heads), bias=ctx["video_bias"],
                          perturbation=perturbation)
        h = h + attn * _modulation(sst, temb, 2)
        x = self.audio_norm1(ah) * (1 + _modulation(asst, temb_audio, 1)) + _modulation(asst, temb_audio, 0)
        attn = self.audio_attn1(x, q_rope=ctx["audio_rope"], rope_heads=(audio_heads, audio_heads),
                                perturbation=perturbation)
        ah = ah + attn * _modulation(asst, temb_audio, 2)

        # 2. text cross-attention
        if text_kv is None:
            text_kv = self._text_kv(self.attn2, ctx["context"], "prompt_scale_shift_table", ctx["temb_prompt"])
        if audio_text_kv is None:
            audio_text_kv = self._text_kv(self.audio_attn2, ctx["audio_context"], "audio_prompt_scale_shift_table",
                                          ctx["temb_prompt_audio"])
        x = self.norm2(h)
        if cfg.cross_attn_mod:
            x = x * (1 + _modulation(sst, temb, 7)) + _modulation(sst, temb, 6)
        attn = self.attn2(x, key_value=text_kv, key_mask=ctx["text_mask"])
        h = h + (attn * _modulation(sst, temb, 8) if cfg.cross_attn_mod else attn)
        x = self.audio_norm2(ah)
        if cfg.audio_cross_attn_mod:
            x = x * (1 + _modulation(asst, temb_audio, 7)) + _modulation(asst, temb_audio, 6)
        attn = self.audio_attn2(x, key_value=audio_text_kv, key_mask=ctx["audio_text_mask"])
        ah = ah + (attn * _modulation(asst, temb_audio, 8) if cfg.audio_cross_attn_mod else attn)

        # 3. audio -> video and video -> audio attention
        if not isolate_modalities:
            vt, at = self.video_a2v_cross_attn_scale_shift_table, self.audio_a2v_cross_attn_scale_shift_table
            v_ss, a_ss = ctx["temb_ca_scale_shift"], ctx["temb_ca_audio_scale_shift"]  # [B, 1|N, 4D], [B, 1|M, 4A]
            nh, nah = self.audio_to_video_norm(h), self.video_to_audio_norm(ah)
            cross_rope, audio_cross_rope = ctx["video_cross_rope"], ctx["audio_cross_rope"]

            def modulated(x, table, temb, i):  # x * (1 + scale_i) + shift_i, scale at row i, shift at i + 1
                return x * (1 + _modulation(table, temb, i)) + _modulation(table, temb, i + 1)

            attn = self.audio_to_video_attn(modulated(nh, vt, v_ss, 0), modulated(nah, at, a_ss, 0), q_rope=cross_rope,
                                            k_rope=audio_cross_rope, rope_heads=(heads, audio_heads))
            keep = ctx.get("modality_mask")  # [B, 1, 1]: 0 isolates the row (modality guidance in the batch)
            if keep is not None:
                attn = attn * keep.astype(attn.dtype)
            h_new = h + (vt[4].astype(ctx["temb_ca_gate"].dtype) + ctx["temb_ca_gate"]) * attn
            attn = self.video_to_audio_attn(modulated(nah, at, a_ss, 2), modulated(nh, vt, v_ss, 2),
                                            q_rope=audio_cross_rope, k_rope=cross_rope,
                                            rope_heads=(audio_heads, heads))
            if keep is not None:
                attn = attn * keep.astype(attn.dtype)
            ah = ah + (at[4].astype(ctx["temb_ca_audio_gate"].dtype) + ctx["temb_ca_audio_gate"]) * attn
            h = h_new

        # 4. feed-forward
        x = self.norm3(h) * (1 + _modulation(sst, temb, 4)) + _modulation(sst, temb, 3)
        h = h + self.ff(x) * _modulation(sst, temb, 5)
        x = self.audio_norm3(ah) * (1 + _modulation(asst, temb_audio, 4)) + _modulation(asst, temb_audio, 3)
        ah = ah + self.audio_ff(x) * _modulation(asst, temb_audio, 5)
        h = layers.constrain(self.sharding, h, "batch", "tokens", None)
        ah = layers.constrain(self.sharding, ah, "batch", "tokens", None)
        return (h.astype(self.dtype), ah.astype(self.dtype)), None

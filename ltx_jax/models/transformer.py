"""LTX-Video diffusion transformer (diffusers' ``LTXVideoTransformer3DModel``) as a Flax linen module.

Axis letters in shape comments:
    B batch, N video tokens (frames x height x width of the latent), T text tokens, D model width
    (heads x head dim), H heads, K head dim, C latent channels, L layers, E caption channels.

Parameter names follow diffusers (``proj_in``, ``time_embed``, ``to_q``, ``norm_q``, ``scale_shift_table``...) so
that conversion is a table; the blocks sit under ``nn.scan`` and so their params carry a leading [L] axis. Each param
names its logical axes where it is created (``ltx_jax.sharding``): q/k/v column-parallel ("embed", "heads"), the
attention output row-parallel ("heads", "embed"), the feed-forward ("embed", "mlp") then ("mlp", "embed"); the
linears outside the blocks shard one side over "embed" and the other over "mlp" (the caption projection column- then
row-parallel, as the feed-forward).

A forward pass is two methods, so that a denoising loop does the step-invariant half once per call:

    constants = model.apply(v, text, mask, num_frames=F, height=H, width=W, rope_interpolation_scale=s,
                            method="prepare")       # RoPE tables, caption projection, every layer's text keys/values
    velocity = model.apply(v, latents, timestep, constants, method="predict")   # per step

``__call__`` (diffusers' signature) is ``predict(prepare(...))``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs import TransformerConfig
from ltx_jax.models import layers

Dtype = Any

# Spatio-temporal guidance: how a layer is perturbed for the batch rows whose skip_layer_mask is 0 (the original
# package's SkipLayerStrategy, applied where its attention.py / transformer3d.py apply it).
SKIP_LAYER_STRATEGIES = ("attention_values", "attention_skip", "residual", "transformer_block")

# jax.checkpoint_policies that are policies themselves (the others are factories that need arguments).
REMAT_POLICIES = ("everything_saveable", "nothing_saveable", "dots_saveable", "checkpoint_dots",
                  "dots_with_no_batch_dims_saveable", "checkpoint_dots_with_no_batch_dims")


@flax.struct.dataclass
class TransformerConstants:
    """What a forward pass needs that does not change between denoising steps (``prepare``'s output)."""

    rope_cos: jax.Array  # [1 or B, N, D/2] float32, one entry per rotated channel pair (layers.rope_frequencies)
    rope_sin: jax.Array  # [1 or B, N, D/2] float32
    text_key: jax.Array  # [L, B, T, D] in dtype: every layer's cross-attention keys (after norm_k)
    text_value: jax.Array  # [L, B, T, D] in dtype
    text_mask: jax.Array | None  # [B, T] bool, True for real text tokens; None attends to all


# ---------------------------------------------------------------------------------------------------- sub-modules


class AdaLayerNormSingle(nn.Module):
    """Timestep -> (kD block modulation, D embedding) (diffusers' ``AdaLayerNormSingle``; LTX-2's
    ``LTX2AdaLayerNormSingle`` with k = ``num_mod_params``).

    Args:
      timestep: [M] on the 0-1000 scale.
    Returns:
      temb [M, kD] (k = 6 by default) and embedded_timestep [M, D], in ``dtype``.
    """

    features: int
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    num_mod_params: int = 6

    @nn.compact
    def __call__(self, timestep: jax.Array) -> tuple[jax.Array, jax.Array]:
        t_features = layers.timestep_sinusoids(timestep)  # [M, 256] float32
        embedded = layers.TimestepEmbedder(
            self.features, (("mlp", "embed"), ("mlp", "embed")), self.dtype, self.param_dtype, self.precision,
            name="timestep_embedder",
        )(t_features)
        temb = layers.dense(self, self.num_mod_params * self.features, ("mlp", "embed"), name="linear")(
            nn.silu(embedded))  # [M, kD]
        return temb, embedded


class CaptionProjection(nn.Module):
    """Linear -> GELU(tanh) -> Linear from caption channels to the model width (``PixArtAlphaTextProjection``)."""

    features: int
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None

    @nn.compact
    def __call__(self, caption: jax.Array) -> jax.Array:
        x = layers.dense(self, self.features, ("embed", "mlp"), name="linear_1")(caption)  # T5's width -> D
        return layers.dense(self, self.features, ("mlp", "embed"), name="linear_2")(nn.gelu(x, approximate=True))


class Attention(nn.Module):
    """LTX attention: q/k/v projections, RMSNorm on q and k across all heads, optional RoPE, output projection."""

    heads: int
    head_dim: int
    out_features: int
    use_bias: bool
    out_bias: bool
    implementation: layers.AttentionImplementation
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None
    compute: str | None = None
    sharding: Any = None  # ltx_jax.sharding.ShardingPlan or None

    def setup(self):
        inner = self.heads * self.head_dim
        self.to_q = layers.dense(self, inner, ("embed", "heads"), use_bias=self.use_bias)
        self.to_k = layers.dense(self, inner, ("embed", "heads"), use_bias=self.use_bias)
        self.to_v = layers.dense(self, inner, ("embed", "heads"), use_bias=self.use_bias)
        self.norm_q = layers.RMSNorm(1e-5, True, self.param_dtype, axis="heads")
        self.norm_k = layers.RMSNorm(1e-5, True, self.param_dtype, axis="heads")
        self.to_out_0 = layers.dense(self, self.out_features, ("heads", "embed"), use_bias=self.out_bias)

    def key_value(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """context [B, S, D] -> keys (after norm_k, before RoPE) and values, each [B, S, H*K]."""
        return self.norm_k(self.to_k(context)), self.to_v(context)

    def __call__(
        self,
        x: jax.Array,
        key_value: tuple[jax.Array, jax.Array] | None = None,
        rope: tuple[jax.Array, jax.Array] | None = None,
        key_mask: jax.Array | None = None,
        skip_mask: jax.Array | None = None,
        skip_strategy: str | None = None,
    ) -> jax.Array:
        """x: [B, N, D]; key_value: precomputed ``key_value(context)`` or None (self-attention over x);
        rope: cos, sin [B or 1, N, H*K/2] (self-attention); key_mask: [B, S] bool; skip_mask: [B], 0 = perturb the row
        with ``skip_strategy`` ("attention_skip": the attention output is replaced by its input, "attention_values":
        by the values; both before ``to_out``)."""
        inner = self.heads * self.head_dim
        q = self.norm_q(self.to_q(x))  # [B, N, H*K]
        k, v = self.key_value(x) if key_value is None else key_value  # [B, S, H*K]
        values = v
        if rope is not None:
            q = layers.apply_rotary_emb(q, *rope)
            k = layers.apply_rotary_emb(k, *rope)
        batch, n_q, n_kv = q.shape[0], q.shape[1], k.shape[1]
        q = q.reshape(batch, n_q, self.heads, self.head_dim)  # [B, N, H, K]
        k = k.reshape(batch, n_kv, self.heads, self.head_dim)  # [B, S, H, K]
        v = v.reshape(batch, n_kv, self.heads, self.head_dim)  # [B, S, H, K]
        if key_value is None and key_mask is None and layers.uses_context_parallel(self.sharding, self.heads):
            out = layers.context_parallel_attention(q, k, v, plan=self.sharding, implementation=self.implementation)
        else:
            out = layers.attention(q, k, v, key_mask=key_mask, implementation=self.implementation)
        out = out.reshape(batch, n_q, inner).astype(self.dtype)  # [B, N, H*K]
        if skip_mask is not None and skip_strategy in ("attention_skip", "attention_values"):
            m = skip_mask.astype(out.dtype)[:, None, None]  # [B, 1, 1]
            out = out * m + (x if skip_strategy == "attention_skip" else values) * (1.0 - m)
        return self.to_out_0(out)


class FeedForward(nn.Module):
    """Linear(D -> 4D) -> GELU -> Linear(4D -> D) (diffusers' ``FeedForward`` with ``GELU``; ``use_bias=False`` is
    LTX-2's ``ff_bias=False``)."""

    features: int
    approximate: bool
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None
    compute: str | None = None
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = layers.dense(self, 4 * self.features, ("embed", "mlp"), name="net_0_proj", use_bias=self.use_bias)(x)
        return layers.dense(self, self.features, ("mlp", "embed"), name="net_2", use_bias=self.use_bias)(
            jax.nn.gelu(h, approximate=self.approximate))  # [B, N, D]


class TransformerBlock(nn.Module):
    """One LTX block. Both methods are scan bodies over the layers (``carry, *inputs -> carry, outputs``)."""

    config: TransformerConfig
    implementation: layers.AttentionImplementation
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None
    weights: str | None = None
    compute: str | None = None
    sharding: Any = None  # ltx_jax.sharding.ShardingPlan or None

    def setup(self):
        cfg = self.config
        dim = cfg.inner_dim
        attn = functools.partial(
            Attention, heads=cfg.num_attention_heads, head_dim=cfg.attention_head_dim, out_features=dim,
            use_bias=cfg.attention_bias, out_bias=cfg.attention_out_bias, implementation=self.implementation,
            dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision, weights=self.weights,
            compute=self.compute, sharding=self.sharding,
        )
        norm = functools.partial(layers.RMSNorm, cfg.norm_eps, cfg.norm_elementwise_affine, self.param_dtype,
                                 axis="embed")
        # [6, D] a layer, added to every token's modulation
        self.scale_shift_table = self.param("scale_shift_table", nn.with_logical_partitioning(
            nn.initializers.normal(dim**-0.5), ("replicated", "embed")), (6, dim), self.param_dtype)
        self.norm1 = norm()
        self.attn1 = attn()
        self.attn2 = attn()
        self.norm2 = norm()
        self.ff = FeedForward(dim, cfg.activation_fn == "gelu-approximate", self.dtype, self.param_dtype,
                              self.precision, self.weights, self.compute)

    def text_key_value(self, carry, context: jax.Array):
        """This layer's cross-attention keys and values of the projected text context [B, T, D]."""
        return carry, self.attn2.key_value(context)

    def _modulation(self, temb: jax.Array, i: int) -> jax.Array:
        """The i-th of the six modulations (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp) of temb
        [B, 1|N, 6D]: this layer's table row plus temb's i-th D channels, [B, 1|N, D] in temb's dtype."""
        dim = self.config.inner_dim
        return self.scale_shift_table[i].astype(temb.dtype) + temb[:, :, i * dim:(i + 1) * dim]

    def attention_input(self, hidden_states: jax.Array, temb: jax.Array) -> jax.Array:
        """The self-attention's input ``norm1(h) * (1 + scale_msa) + shift_msa`` [B, N, D] of hidden_states [B, N, D]
        and temb [B, 1|N, 6D] (also TeaCache's probe of a step, ``sampling.step_cache``)."""
        return self.norm1(hidden_states) * (1 + self._modulation(temb, 1)) + self._modulation(temb, 0)

    def __call__(self, hidden_states, text_key_value, skip_mask, temb, rope_cos, rope_sin, text_mask, skip_strategy):
        """hidden_states [B, N, D]; text_key_value: this layer's (k, v) [B, T, D]; skip_mask: this layer's [B] (0 =
        perturb the row, spatio-temporal guidance) or None; temb [B, 1 or N, 6D]; rope [B or 1, N, D/2]; text_mask
        [B, T] or None; skip_strategy: one of ``SKIP_LAYER_STRATEGIES`` or None."""
        hidden_states = layers.constrain(self.sharding, hidden_states, "batch", "tokens", None)
        block_input = hidden_states
        # Six sums, one per modulation, each with its one consumer: with per-token timesteps a shared [B, N, 6, D]
        # sum (diffusers' ada_values) is written out and read back; these fuse into the norms and the gating.
        gate_msa, shift_mlp, scale_mlp, gate_mlp = (self._modulation(temb, i) for i in range(2, 6))  # [B, 1|N, D]

        x = self.attention_input(hidden_states, temb)
        attn = self.attn1(x, rope=(rope_cos, rope_sin), skip_mask=skip_mask, skip_strategy=skip_strategy)
        # "residual" perturbs nothing: the original gates attention's residual connection, which LTX's attention
        # layers do not have (attn.residual_connection is False), so its perturbed rows equal the unperturbed ones.
        hidden_states = hidden_states + attn * gate_msa
        hidden_states = hidden_states + self.attn2(hidden_states, key_value=text_key_value, key_mask=text_mask)
        x = self.norm2(hidden_states) * (1 + scale_mlp) + shift_mlp
        hidden_states = hidden_states + self.ff(x) * gate_mlp
        if skip_mask is not None and skip_strategy == "transformer_block":  # the block is skipped for those rows
            m = skip_mask.astype(hidden_states.dtype)[:, None, None]
            hidden_states = hidden_states * m + block_input * (1.0 - m)
        hidden_states = layers.constrain(self.sharding, hidden_states, "batch", "tokens", None)
        return hidden_states.astype(self.dtype), None


# --------------------------------------------------------------------------------------------------- the model


def _concrete_or_none(x) -> np.ndarray | None:
    """The value of x when it is known at trace time (not inside jit), else None."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _layer(stacked, index):
    """Layer ``index`` (an int or a traced [] int32) of a tree of stacked [L, ...] arrays (None leaves stay None),
    read by index: one layer's slice, never a copy of the stack."""
    return jax.tree_util.tree_map(lambda a: jax.lax.dynamic_index_in_dim(a, index, 0, keepdims=False), stacked)


def _remat_policy(name: str | None):
    if name is None:
        return None
    if name not in REMAT_POLICIES:
        raise ValueError(f"remat_policy={name!r} is not a jax.checkpoint_policies policy; use one of {REMAT_POLICIES}.")
    return getattr(jax.checkpoint_policies, name)


class LTXVideoTransformer3DModel(nn.Module):
    """The LTX-Video DiT: diffusers' ``LTXVideoTransformer3DModel`` with the same inputs and parameter names.

    Attributes:
      config: the architecture.
      dtype: compute dtype of activations (bf16 on GPU); norms, RoPE and softmax statistics stay float32.
      param_dtype: dtype of the parameters created by ``init``.
      attention_implementation: "xla", "cudnn" or None (cuDNN flash attention on CUDA in bf16/fp16, XLA otherwise).
      remat: rematerialise each block in the backward pass (``nn.remat`` inside the scan).
      remat_policy: what remat may keep: a name from ``REMAT_POLICIES`` (``jax.checkpoint_policies``), e.g.
        "dots_with_no_batch_dims_saveable"; None recomputes everything.
      precision: matmul precision passed to every Dense (None = backend default).
      weights: storage of the blocks' linear kernels: None (``param_dtype``), "int8" or "fp8" (float8_e4m3fn), each
        with a float32 scale per output channel (``layers.Dense``); ``weight_conversion.load_transformer(...,
        weights=)`` quantizes a checkpoint into it.
      compute: the blocks' linear matmuls: None (in ``dtype``) or "fp8" (with ``weights="fp8"``, inference): the
        activations quantized per tensor to float8_e4m3fn and fp8 x fp8 matmuls, cuBLASLt's fp8 GEMM on Hopper
        (``layers.fp8_matmul``).
      sharding: an ``ltx_jax.sharding.ShardingPlan`` (or None: one device): the hidden states are constrained to
        (batch, tokens) over (data x fsdp, context) and self-attention runs context-parallel
        (``layers.context_parallel_attention``); the params' own shardings come with them
        (declared where each is created: ``ltx_jax.sharding.param_axes``, ``load_transformer(..., sharding=)``).
    """

    config: TransformerConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_implementation: str | None = None
    remat: bool = False
    remat_policy: str | None = None
    precision: Any = None
    weights: str | None = None
    compute: str | None = None
    sharding: Any = None

    @property
    def resolved_attention_implementation(self) -> layers.AttentionImplementation:
        cfg = self.config
        return layers.resolve_attention_implementation(self.attention_implementation, self.dtype,
                                                       cfg.attention_head_dim)

    def setup(self):
        cfg = self.config
        dim = cfg.inner_dim
        layers.check_weights(self.weights)
        layers.check_compute(self.compute, self.weights)
        # quantized (and fp8 matmuls): the blocks' linears only
        self.proj_in = layers.dense(self, dim, ("mlp", "embed"), weights=None, compute=None)
        self.time_embed = AdaLayerNormSingle(dim, self.dtype, self.param_dtype, self.precision)
        self.caption_projection = CaptionProjection(dim, self.dtype, self.param_dtype, self.precision)
        self.transformer_blocks = self._block_stack(cfg.num_layers)
        self.scale_shift_table = self.param("scale_shift_table", nn.with_logical_partitioning(
            nn.initializers.normal(dim**-0.5), ("replicated", "embed")), (2, dim), self.param_dtype)
        self.proj_out = layers.dense(self, cfg.out_channels, ("embed", "mlp"), weights=None, compute=None)

    def _block_stack(self, length: int):
        """The model's blocks under ``nn.scan`` over ``length`` layers (built in ``setup``: its params carry [L])."""
        scan = dict(variable_axes={"params": 0, layers.LORA_COLLECTION: 0}, split_rngs={"params": True},
                    length=length, metadata_params={nn.PARTITION_NAME: "layers"})
        blocks = nn.scan(self._block_class(), methods={
            # per-layer text k/v and skip masks; the rest shared by the layers
            "__call__": dict(scan, in_axes=(0, 0) + (nn.broadcast,) * 5),
            "text_key_value": dict(scan, in_axes=(nn.broadcast,)),
        })
        return blocks(*self._block_args())

    def _block_class(self):
        """``TransformerBlock``, under ``nn.remat`` with ``remat``."""
        block = TransformerBlock
        if self.remat:
            block = nn.remat(block, prevent_cse=False, policy=_remat_policy(self.remat_policy), static_argnums=(8,))
        return block

    def _block_args(self) -> tuple:
        """A ``TransformerBlock``'s fields, as this model sets them."""
        implementation = self.resolved_attention_implementation
        if self.is_initializing():  # the params do not depend on the kernel; XLA's traces everywhere (cuDNN's: a GPU)
            implementation = "xla"
        return (self.config, implementation, self.dtype, self.param_dtype, self.precision, self.weights, self.compute,
                self.sharding)

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        cfg = self.config
        return (jnp.zeros((1, 1, cfg.in_channels), self.dtype), jnp.zeros((1, 1, cfg.caption_channels), self.dtype),
                jnp.zeros((1,), jnp.float32), None), dict(num_frames=1, height=1, width=1)

    def __call__(
        self,
        hidden_states: jax.Array,
        encoder_hidden_states: jax.Array,
        timestep: jax.Array,
        encoder_attention_mask: jax.Array | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        rope_interpolation_scale: Sequence[Any] | jax.Array | None = None,
        video_coords: jax.Array | None = None,
        skip_layer_mask: jax.Array | None = None,
        skip_layer_strategy: str | None = None,
    ) -> jax.Array:
        """Predicts the flow velocity of packed latent tokens.

        Args:
          hidden_states: [B, N, C] packed latent tokens, N = num_frames * height * width (frame-major).
          encoder_hidden_states: [B, T, E] text embeddings (T5 hidden states).
          timestep: [B] or [B, N] (per-token) on the 0-1000 scale; a scalar is broadcast over the batch.
          encoder_attention_mask: [B, T], 1 for real text tokens, 0 for padding; None attends to all.
          num_frames, height, width: latent grid sizes (static ints); not needed when ``video_coords`` is given.
          rope_interpolation_scale: (frames, height, width) scales, e.g. (8 / frame_rate, 32, 32); None uses raw
            token indices, as diffusers does.
          video_coords: [B, 3, N] explicit (frame, row, column) coordinates of each token; replaces the grid.
          skip_layer_mask: [L, B] float, 1 = run layer l normally for row b, 0 = perturb it (spatio-temporal guidance,
            the original package's convention); a traced input, so other blocks never recompile.
          skip_layer_strategy: how a layer is perturbed, one of ``SKIP_LAYER_STRATEGIES`` (the original's four
            modes: "attention_values", "attention_skip", "residual" (which perturbs nothing, as in the original),
            "transformer_block"); required with ``skip_layer_mask``.
        Returns:
          [B, N, out_channels] in ``dtype``.
        """
        self._check_tokens(hidden_states, encoder_hidden_states.shape[0], num_frames, height, width, video_coords)
        constants = self.prepare(encoder_hidden_states, encoder_attention_mask, num_frames=num_frames, height=height,
                                 width=width, rope_interpolation_scale=rope_interpolation_scale,
                                 video_coords=video_coords)
        return self.predict(hidden_states, timestep, constants, skip_layer_mask, skip_layer_strategy)

    def prepare(
        self,
        encoder_hidden_states: jax.Array,
        encoder_attention_mask: jax.Array | None = None,
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        rope_interpolation_scale: Sequence[Any] | jax.Array | None = None,
        video_coords: jax.Array | None = None,
    ) -> TransformerConstants:
        """The step-invariant part of a forward pass (same arguments as ``__call__`` without latents and timestep).

        Returns a ``TransformerConstants``: RoPE tables of the grid (or of ``video_coords``), and every layer's
        cross-attention keys and values of the projected text.
        """
        cfg = self.config
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[-1] != cfg.caption_channels:
            raise ValueError(f"encoder_hidden_states has shape {encoder_hidden_states.shape}; expected "
                             f"[B, T, {cfg.caption_channels}].")
        if video_coords is None:
            if None in (num_frames, height, width):
                raise ValueError("Pass num_frames, height and width (latent sizes) or video_coords [B, 3, N] for RoPE.")
            grid = layers.video_grid(num_frames, height, width, rope_interpolation_scale, cfg.patch_size,
                                     cfg.patch_size_t)  # [1, N, 3]
        else:
            if video_coords.ndim != 3 or video_coords.shape[:2] != (encoder_hidden_states.shape[0], 3):
                raise ValueError(f"video_coords has shape {video_coords.shape}; expected [B, 3, N] with "
                                 f"B = {encoder_hidden_states.shape[0]}.")
            grid = layers.grid_from_video_coords(video_coords)  # [B, N, 3]
        rope_cos, rope_sin = layers.rope_frequencies(grid, cfg.inner_dim)

        text_mask = None
        if encoder_attention_mask is not None:
            text_mask = self._check_text_mask(encoder_attention_mask, encoder_hidden_states)
        context = self.caption_projection(encoder_hidden_states.astype(self.dtype))  # [B, T, D]
        _, (text_key, text_value) = self.transformer_blocks.text_key_value(None, context)  # [L, B, T, D] each
        return TransformerConstants(rope_cos, rope_sin, text_key, text_value, text_mask)

    def predict(self, hidden_states: jax.Array, timestep: jax.Array, constants: TransformerConstants,
                skip_layer_mask: jax.Array | None = None, skip_layer_strategy: str | None = None) -> jax.Array:
        """The per-step part of a forward pass: latents [B, N, C] and timestep ([B], [B, 1] or [B, N]) with the
        ``prepare`` output of the same batch (and ``__call__``'s skip arguments) -> [B, N, out_channels] in
        ``dtype``. It is ``embed_step``, ``run_blocks`` over all layers, then ``project_out``; a step cache
        (``ltx_jax.sampling.step_cache``) calls these itself, to run the blocks in two parts or not at all."""
        x, temb, embedded_timestep = self.embed_step(hidden_states, timestep, constants, skip_layer_mask,
                                                     skip_layer_strategy)
        x = self.run_blocks(x, temb, constants, skip_layer_mask, skip_layer_strategy)
        return self.project_out(x, embedded_timestep)

    def embed_step(self, hidden_states: jax.Array, timestep: jax.Array, constants: TransformerConstants,
                   skip_layer_mask: jax.Array | None = None, skip_layer_strategy: str | None = None
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``predict``'s inputs, checked, to the first block's input: x [B, N, D], the blocks' modulation temb
        [B, 1|N, 6D] and the embedded timestep [B, 1|N, D] (of ``project_out``), all in ``dtype``."""
        dim = self.config.inner_dim
        self._check_hidden_states(hidden_states)
        batch, num_tokens = hidden_states.shape[:2]
        if constants.text_key.shape[1] != batch or constants.rope_cos.shape[1] != num_tokens:
            raise ValueError(f"hidden_states [B, N] = {hidden_states.shape[:2]} do not match the prepared constants "
                             f"(text batch {constants.text_key.shape[1]}, {constants.rope_cos.shape[1]} RoPE tokens).")
        hidden_states = layers.constrain(self.sharding, hidden_states, "batch", "tokens", None)
        x = self.proj_in(hidden_states.astype(self.dtype))  # [B, N, D]

        timestep = jnp.asarray(timestep)
        if timestep.ndim == 0:
            timestep = jnp.broadcast_to(timestep, (batch,))
        if (timestep.shape[0] != batch or timestep.ndim > 2
                or (timestep.ndim == 2 and timestep.shape[1] not in (1, num_tokens))):
            raise ValueError(f"timestep has shape {timestep.shape}; expected [B]={batch}, [B, 1] or "
                             f"[B, N]=[{batch}, {num_tokens}].")
        temb, embedded_timestep = self.time_embed(timestep.reshape(-1))
        temb = temb.reshape(batch, -1, 6 * dim)  # [B, 1|N, 6D]
        embedded_timestep = embedded_timestep.reshape(batch, -1, dim)  # [B, 1|N, D]
        self._check_skip(skip_layer_mask, skip_layer_strategy, batch)
        return x, temb, embedded_timestep

    def run_blocks(self, x: jax.Array, temb: jax.Array, constants: TransformerConstants,
                   skip_layer_mask: jax.Array | None = None, skip_layer_strategy: str | None = None,
                   layer_range: tuple[int, int] | None = None) -> jax.Array:
        """The blocks on x [B, N, D] (``embed_step``'s outputs) -> [B, N, D] in ``dtype``.

        ``layer_range`` (static ``(start, stop)``; None = all layers) runs layers start .. stop - 1 only: a loop over
        those layer indices that reads each layer's params, text keys / values and skip mask [L, B] out of the stacked
        ones by index (as the scan over all layers does), so no slice of the stack is ever copied.
        """
        num_layers = self.config.num_layers
        text_kv = (constants.text_key, constants.text_value)  # [L, B, T, D] each
        rest = (temb, constants.rope_cos, constants.rope_sin, constants.text_mask, skip_layer_strategy)
        if layer_range is None or tuple(layer_range) == (0, num_layers):
            x, _ = self.transformer_blocks(x, text_kv, skip_layer_mask, *rest)
            return x
        start, stop = layer_range
        if not 0 <= start < stop <= num_layers:
            raise ValueError(f"layer_range={layer_range}; expected 0 <= start < stop <= {num_layers}.")
        block = self._block_class()(*self._block_args(), parent=None)
        stacked = (dict(self.transformer_blocks.variables), text_kv, skip_layer_mask)  # [L, ...] each

        def layer(index, x):
            variables, kv, skip = _layer(stacked, index)
            return block.apply(variables, x, kv, skip, *rest)[0]

        return jax.lax.fori_loop(start, stop, layer, x)

    def first_block_input(self, x: jax.Array, temb: jax.Array) -> jax.Array:
        """Block 0's self-attention input ``norm1(x) * (1 + scale_msa) + shift_msa`` [B, N, D] in ``dtype`` of
        ``embed_step``'s x [B, N, D] and temb [B, 1|N, 6D] (TeaCache's probe, ``sampling.step_cache``)."""
        block = TransformerBlock(*self._block_args(), parent=None)
        return block.apply(_layer(dict(self.transformer_blocks.variables), 0), x, temb, method="attention_input")

    def project_out(self, x: jax.Array, embedded_timestep: jax.Array) -> jax.Array:
        """The last blocks' output x [B, N, D] and the embedded timestep [B, 1|N, D] -> the prediction
        [B, N, out_channels] in ``dtype``: ``output_projection(output_modulation(...))``."""
        return self.output_projection(self.output_modulation(x, embedded_timestep))

    def output_modulation(self, x: jax.Array, embedded_timestep: jax.Array) -> jax.Array:
        """The final AdaLN (a layer norm without affine, then the embedded timestep's scale and shift): the last
        block's output x [B, N, D] and the embedded timestep [B, 1|N, D] -> [B, N, D]."""
        mod = self.scale_shift_table[None, None].astype(embedded_timestep.dtype) + embedded_timestep[:, :, None]
        shift, scale = mod[:, :, 0], mod[:, :, 1]  # [B, 1|N, D]
        return layers.layer_norm_no_affine(x, 1e-6) * (1 + scale) + shift

    def output_projection(self, x: jax.Array) -> jax.Array:
        """``proj_out``: [B, N, D] -> [B, N, out_channels] in ``dtype``."""
        return layers.constrain(self.sharding, self.proj_out(x), "batch", "tokens", None)

    # ---------------------------------------------------------------------------------------------- checks

    def _check_skip(self, mask, strategy, batch):
        if mask is None:
            return
        if strategy not in SKIP_LAYER_STRATEGIES:
            raise ValueError(f"skip_layer_strategy={strategy!r}; use one of {SKIP_LAYER_STRATEGIES} with a "
                             "skip_layer_mask.")
        if tuple(mask.shape) != (self.config.num_layers, batch):
            raise ValueError(f"skip_layer_mask has shape {tuple(mask.shape)}; expected [layers, B] = "
                             f"[{self.config.num_layers}, {batch}] (1 = run the layer, 0 = perturb it).")

    def _check_hidden_states(self, hidden_states):
        if hidden_states.ndim != 3 or hidden_states.shape[-1] != self.config.in_channels:
            raise ValueError(f"hidden_states has shape {hidden_states.shape}; "
                             f"expected [B, N, {self.config.in_channels}] "
                             "packed latent tokens.")

    def _check_tokens(self, hidden_states, batch, num_frames, height, width, video_coords):
        self._check_hidden_states(hidden_states)
        if hidden_states.shape[0] != batch:
            raise ValueError(f"encoder_hidden_states has batch {batch} but hidden_states has {hidden_states.shape[0]}.")
        num_tokens = hidden_states.shape[1]
        if (video_coords is None and None not in (num_frames, height, width)
                and num_frames * height * width != num_tokens):
            raise ValueError(
                f"num_frames * height * width = {num_frames} * {height} * {width} = {num_frames * height * width} "
                f"but hidden_states has {num_tokens} tokens."
            )
        if video_coords is not None and video_coords.shape != (batch, 3, num_tokens):
            raise ValueError(f"video_coords has shape {video_coords.shape}; "
                             f"expected [B, 3, N] = [{batch}, 3, {num_tokens}].")

    def _check_text_mask(self, mask, encoder_hidden_states):
        if mask.shape != encoder_hidden_states.shape[:2]:
            raise ValueError(
                f"encoder_attention_mask has shape {mask.shape}; "
                f"expected [B, T] = {tuple(encoder_hidden_states.shape[:2])}."
            )
        if self.resolved_attention_implementation == "cudnn":
            value = _concrete_or_none(mask)
            if value is not None:
                valid = value.astype(bool)
                right_padded = np.all(valid[:, 1:] <= valid[:, :-1])  # never a valid token after a padded one
                if not right_padded:
                    raise ValueError(
                        "encoder_attention_mask is not right-padded (a valid token follows a padded one); the cuDNN "
                        "attention path takes padding as per-row lengths. Use attention_implementation='xla' for "
                        "arbitrary masks."
                    )
        return mask != 0

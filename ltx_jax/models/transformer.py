"""LTX-Video diffusion transformer (diffusers' ``LTXVideoTransformer3DModel``) as a Flax linen module.

Axis letters in shape comments:
    B batch, N video tokens (frames x height x width of the latent), T text tokens, D model width
    (heads x head dim), H heads, K head dim, C latent channels, L layers, E caption channels.

Parameter names follow diffusers (``proj_in``, ``time_embed``, ``to_q``, ``norm_q``, ``scale_shift_table``...) so
that conversion is a table; the blocks sit under ``nn.scan`` and so their params carry a leading [L] axis.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs import TransformerConfig
from ltx_jax.models import layers

Dtype = Any

# Fixed by diffusers' LTXVideoRotaryPosEmbed for every released checkpoint.
ROPE_BASE_NUM_FRAMES = 20
ROPE_BASE_HEIGHT = 2048
ROPE_BASE_WIDTH = 2048
ROPE_THETA = 10000.0
TIMESTEP_FEATURES = 256


# ----------------------------------------------------------------------------------------------------------- RoPE


def video_grid(
    batch_size: int,
    num_frames: int,
    height: int,
    width: int,
    rope_interpolation_scale: Sequence[Any] | jax.Array | None,
    patch_size: int = 1,
    patch_size_t: int = 1,
) -> jax.Array:
    """Normalised (frame, row, column) coordinates of every latent token, frame-major.

    Returns:
      [B, N, 3] float32 with N = num_frames * height * width.
    """
    f, h, w = jnp.meshgrid(
        jnp.arange(num_frames, dtype=jnp.float32),
        jnp.arange(height, dtype=jnp.float32),
        jnp.arange(width, dtype=jnp.float32),
        indexing="ij",
    )
    if rope_interpolation_scale is not None:
        s = [jnp.asarray(rope_interpolation_scale[i], jnp.float32) for i in range(3)]
        f = layers.exact_divide(f * s[0] * patch_size_t, ROPE_BASE_NUM_FRAMES)
        h = layers.exact_divide(h * s[1] * patch_size, ROPE_BASE_HEIGHT)
        w = layers.exact_divide(w * s[2] * patch_size, ROPE_BASE_WIDTH)
    grid = jnp.stack([f.reshape(-1), h.reshape(-1), w.reshape(-1)], axis=-1)  # [N, 3]
    return jnp.broadcast_to(grid[None], (batch_size, *grid.shape))


def grid_from_video_coords(video_coords: jax.Array) -> jax.Array:
    """[B, 3, N] raw (frame, row, column) coordinates -> [B, N, 3] normalised grid (diffusers' video_coords path)."""
    video_coords = video_coords.astype(jnp.float32)
    return jnp.stack(
        [
            layers.exact_divide(video_coords[:, 0], ROPE_BASE_NUM_FRAMES),
            layers.exact_divide(video_coords[:, 1], ROPE_BASE_HEIGHT),
            layers.exact_divide(video_coords[:, 2], ROPE_BASE_WIDTH),
        ],
        axis=-1,
    )


def rope_frequencies(grid: jax.Array, dim: int, theta: float = ROPE_THETA) -> tuple[jax.Array, jax.Array]:
    """3D rotary cos/sin tables over the flattened model width.

    Each of the dim // 6 frequencies rotates one channel pair per axis (frame, row, column, interleaved);
    the first dim % 6 channels are left unrotated (cos 1, sin 0), as in diffusers.

    Angles reach theta * pi / 2 * |2 g - 1| radians (~1e4 and more), so one float32 ulp of a frequency or a
    coordinate moves them by ~1e-3. We reproduce torch's float32 arithmetic step by step (linspace, power,
    true division) so that small widths match diffusers bit for bit; at full width torch's own linspace and
    pow differ between CPU vector widths and CUDA, so no implementation can match every reference exactly.

    Args:
      grid: [B, N, 3] float32 normalised coordinates.
    Returns:
      cos, sin: [B, N, dim] float32.
    """
    num_freqs = dim // 6
    exponents = layers.torch_linspace(0.0, 1.0, num_freqs)  # log_theta(1) .. log_theta(theta)
    # theta ** x rounded once from float64 matches torch's float32 pow far more often than a float32 pow does.
    base = (theta ** exponents.astype(np.float64)).astype(np.float32) * np.float32(np.pi / 2.0)
    freqs = jnp.asarray(base)[None, None, None, :] * (grid[..., None] * 2.0 - 1.0)  # [B, N, 3, F]
    freqs = jnp.swapaxes(freqs, -1, -2).reshape(*grid.shape[:2], 3 * num_freqs)  # [B, N, F*3], axis fastest
    cos = jnp.repeat(jnp.cos(freqs), 2, axis=-1)
    sin = jnp.repeat(jnp.sin(freqs), 2, axis=-1)
    pad = dim % 6
    if pad:
        cos = jnp.concatenate([jnp.ones((*cos.shape[:2], pad), jnp.float32), cos], axis=-1)
        sin = jnp.concatenate([jnp.zeros((*sin.shape[:2], pad), jnp.float32), sin], axis=-1)
    return cos, sin


# ---------------------------------------------------------------------------------------------------- sub-modules


class TimestepEmbedder(nn.Module):
    """Linear -> SiLU -> Linear on sinusoidal timestep features (diffusers' ``TimestepEmbedding``)."""

    features: int
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None

    @nn.compact
    def __call__(self, t_features: jax.Array) -> jax.Array:
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        x = dense(self.features, name="linear_1")(t_features.astype(self.dtype))
        return dense(self.features, name="linear_2")(nn.silu(x))


class AdaLayerNormSingle(nn.Module):
    """Timestep -> (6D block modulation, D embedding) (diffusers' ``AdaLayerNormSingle``).

    Args:
      timestep: [M] on the 0-1000 scale.
    Returns:
      temb [M, 6D] and embedded_timestep [M, D], in ``dtype``.
    """

    features: int
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None

    @nn.compact
    def __call__(self, timestep: jax.Array) -> tuple[jax.Array, jax.Array]:
        t_features = layers.timestep_sinusoids(timestep, TIMESTEP_FEATURES)  # [M, 256] float32
        embedded = TimestepEmbedder(
            self.features, self.dtype, self.param_dtype, self.precision, name="timestep_embedder"
        )(t_features)
        temb = nn.Dense(
            6 * self.features, dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision, name="linear"
        )(nn.silu(embedded))
        return temb, embedded


class CaptionProjection(nn.Module):
    """Linear -> GELU(tanh) -> Linear from caption channels to the model width (``PixArtAlphaTextProjection``)."""

    features: int
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None

    @nn.compact
    def __call__(self, caption: jax.Array) -> jax.Array:
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        x = dense(self.features, name="linear_1")(caption)
        return dense(self.features, name="linear_2")(nn.gelu(x, approximate=True))


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

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        rope: tuple[jax.Array, jax.Array] | None = None,
        key_mask: jax.Array | None = None,
    ) -> jax.Array:
        """x: [B, N, D]; context: [B, T, D] or None (self-attention); rope: cos, sin [B, N, H*K]; key_mask: [B, T]."""
        inner = self.heads * self.head_dim
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        context = x if context is None else context
        q = dense(inner, use_bias=self.use_bias, name="to_q")(x)  # [B, N, H*K]
        k = dense(inner, use_bias=self.use_bias, name="to_k")(context)  # [B, S, H*K]
        v = dense(inner, use_bias=self.use_bias, name="to_v")(context)  # [B, S, H*K]
        q = layers.RMSNorm(1e-5, True, self.param_dtype, name="norm_q")(q)
        k = layers.RMSNorm(1e-5, True, self.param_dtype, name="norm_k")(k)
        if rope is not None:
            q = layers.apply_rotary_emb(q, *rope)
            k = layers.apply_rotary_emb(k, *rope)
        batch, n_q, n_kv = q.shape[0], q.shape[1], k.shape[1]
        q = q.reshape(batch, n_q, self.heads, self.head_dim)  # [B, N, H, K]
        k = k.reshape(batch, n_kv, self.heads, self.head_dim)  # [B, S, H, K]
        v = v.reshape(batch, n_kv, self.heads, self.head_dim)  # [B, S, H, K]
        out = layers.attention(q, k, v, key_mask=key_mask, implementation=self.implementation)
        out = out.reshape(batch, n_q, inner).astype(self.dtype)  # [B, N, H*K]
        return dense(self.out_features, use_bias=self.out_bias, name="to_out_0")(out)


class FeedForward(nn.Module):
    """Linear(D -> 4D) -> GELU -> Linear(4D -> D) (diffusers' ``FeedForward`` with ``GELU``)."""

    features: int
    approximate: bool
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        h = dense(4 * self.features, name="net_0_proj")(x)  # [B, N, 4D]
        return dense(self.features, name="net_2")(jax.nn.gelu(h, approximate=self.approximate))


class TransformerBlock(nn.Module):
    """One LTX block; written as a scan body: ``(hidden_states, *broadcast) -> (hidden_states, None)``."""

    config: TransformerConfig
    implementation: layers.AttentionImplementation
    dtype: Dtype
    param_dtype: Dtype
    precision: Any = None

    @nn.compact
    def __call__(self, hidden_states, encoder_hidden_states, temb, rope_cos, rope_sin, text_mask):
        """hidden_states [B, N, D]; encoder_hidden_states [B, T, D]; temb [B, 1 or N, 6D]; rope [B, N, D]; text_mask [B, T] or None."""
        cfg = self.config
        dim = cfg.inner_dim
        attn = functools.partial(
            Attention,
            heads=cfg.num_attention_heads,
            head_dim=cfg.attention_head_dim,
            out_features=dim,
            use_bias=cfg.attention_bias,
            out_bias=cfg.attention_out_bias,
            implementation=self.implementation,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
        )
        norm = functools.partial(layers.RMSNorm, cfg.norm_eps, cfg.norm_elementwise_affine, self.param_dtype)

        table = self.param("scale_shift_table", nn.initializers.normal(dim**-0.5), (6, dim), self.param_dtype)
        batch = hidden_states.shape[0]
        ada = table[None, None].astype(temb.dtype) + temb.reshape(batch, temb.shape[1], 6, dim)  # [B, 1|N, 6, D]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (ada[:, :, i] for i in range(6))

        x = norm(name="norm1")(hidden_states) * (1 + scale_msa) + shift_msa
        hidden_states = hidden_states + attn(name="attn1")(x, rope=(rope_cos, rope_sin)) * gate_msa
        hidden_states = hidden_states + attn(name="attn2")(hidden_states, context=encoder_hidden_states, key_mask=text_mask)
        x = norm(name="norm2")(hidden_states) * (1 + scale_mlp) + shift_mlp
        ff = FeedForward(dim, cfg.activation_fn == "gelu-approximate", self.dtype, self.param_dtype, self.precision, name="ff")
        hidden_states = hidden_states + ff(x) * gate_mlp
        return hidden_states.astype(self.dtype), None


# --------------------------------------------------------------------------------------------------- the model


def _concrete_or_none(x) -> np.ndarray | None:
    """The value of x when it is known at trace time (not inside jit), else None."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


class LTXVideoTransformer3DModel(nn.Module):
    """The LTX-Video DiT: diffusers' ``LTXVideoTransformer3DModel`` with the same inputs and parameter names.

    Attributes:
      config: the architecture.
      dtype: compute dtype of activations (bf16 on GPU); norms, RoPE and softmax statistics stay float32.
      param_dtype: dtype of the parameters created by ``init``.
      attention_implementation: "xla", "cudnn" or None (cuDNN flash attention on CUDA in bf16/fp16, XLA otherwise).
      remat: rematerialise each block in the backward pass (``nn.remat`` inside the scan).
      precision: matmul precision passed to every Dense (None = backend default).
    """

    config: TransformerConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_implementation: str | None = None
    remat: bool = False
    precision: Any = None

    @property
    def resolved_attention_implementation(self) -> layers.AttentionImplementation:
        impl = self.attention_implementation
        if impl is None:
            return layers.default_attention_implementation(self.dtype, self.config.attention_head_dim)
        if impl not in ("xla", "cudnn"):
            raise ValueError(f"attention_implementation={impl!r}; use 'xla', 'cudnn' or None (automatic).")
        return impl

    @nn.compact
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
        Returns:
          [B, N, out_channels] in ``dtype``.
        """
        cfg = self.config
        dim = cfg.inner_dim
        impl = self.resolved_attention_implementation
        batch, num_tokens = self._check_inputs(hidden_states, encoder_hidden_states, num_frames, height, width, video_coords)

        # RoPE in float32.
        if video_coords is None:
            grid = video_grid(batch, num_frames, height, width, rope_interpolation_scale, cfg.patch_size, cfg.patch_size_t)
        else:
            grid = grid_from_video_coords(video_coords)
        rope_cos, rope_sin = rope_frequencies(grid, dim)  # [B, N, D] each

        text_mask = None
        if encoder_attention_mask is not None:
            text_mask = self._check_text_mask(encoder_attention_mask, encoder_hidden_states, impl)

        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        x = dense(dim, name="proj_in")(hidden_states.astype(self.dtype))  # [B, N, D]

        timestep = jnp.asarray(timestep)
        if timestep.ndim == 0:
            timestep = jnp.broadcast_to(timestep, (batch,))
        if timestep.shape[0] != batch or timestep.ndim > 2 or (timestep.ndim == 2 and timestep.shape[1] not in (1, num_tokens)):
            raise ValueError(f"timestep has shape {timestep.shape}; expected [B]={batch}, [B, 1] or [B, N]=[{batch}, {num_tokens}].")
        temb, embedded_timestep = AdaLayerNormSingle(dim, self.dtype, self.param_dtype, self.precision, name="time_embed")(
            timestep.reshape(-1)
        )
        temb = temb.reshape(batch, -1, 6 * dim)  # [B, 1|N, 6D]
        embedded_timestep = embedded_timestep.reshape(batch, -1, dim)  # [B, 1|N, D]

        context = CaptionProjection(dim, self.dtype, self.param_dtype, self.precision, name="caption_projection")(
            encoder_hidden_states.astype(self.dtype)
        )  # [B, T, D]

        block = TransformerBlock
        if self.remat:
            block = nn.remat(block, prevent_cse=False)
        blocks = nn.scan(
            block,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast,) * 5,
            length=cfg.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(cfg, impl, self.dtype, self.param_dtype, self.precision, name="transformer_blocks")
        x, _ = blocks(x, context, temb, rope_cos, rope_sin, text_mask)

        table = self.param("scale_shift_table", nn.initializers.normal(dim**-0.5), (2, dim), self.param_dtype)
        mod = table[None, None].astype(embedded_timestep.dtype) + embedded_timestep[:, :, None]  # [B, 1|N, 2, D]
        shift, scale = mod[:, :, 0], mod[:, :, 1]
        x = layers.layer_norm_no_affine(x, 1e-6) * (1 + scale) + shift
        return dense(cfg.out_channels, name="proj_out")(x)

    # ---------------------------------------------------------------------------------------------- checks

    def _check_inputs(self, hidden_states, encoder_hidden_states, num_frames, height, width, video_coords):
        cfg = self.config
        if hidden_states.ndim != 3 or hidden_states.shape[-1] != cfg.in_channels:
            raise ValueError(
                f"hidden_states has shape {hidden_states.shape}; expected [B, N, {cfg.in_channels}] packed latent tokens."
            )
        batch, num_tokens = hidden_states.shape[:2]
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != batch or encoder_hidden_states.shape[-1] != cfg.caption_channels:
            raise ValueError(
                f"encoder_hidden_states has shape {encoder_hidden_states.shape}; expected [{batch}, T, {cfg.caption_channels}]."
            )
        if video_coords is None:
            if None in (num_frames, height, width):
                raise ValueError("Pass num_frames, height and width (latent sizes) or video_coords [B, 3, N] for RoPE.")
            if num_frames * height * width != num_tokens:
                raise ValueError(
                    f"num_frames * height * width = {num_frames} * {height} * {width} = {num_frames * height * width} "
                    f"but hidden_states has {num_tokens} tokens."
                )
        elif video_coords.shape != (batch, 3, num_tokens):
            raise ValueError(f"video_coords has shape {video_coords.shape}; expected [B, 3, N] = [{batch}, 3, {num_tokens}].")
        return batch, num_tokens

    @staticmethod
    def _check_text_mask(mask, encoder_hidden_states, impl):
        if mask.shape != encoder_hidden_states.shape[:2]:
            raise ValueError(
                f"encoder_attention_mask has shape {mask.shape}; expected [B, T] = {tuple(encoder_hidden_states.shape[:2])}."
            )
        if impl == "cudnn":
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


def count_params(params) -> int:
    """Total number of parameters in a (possibly abstract) param tree."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def abstract_params(module: LTXVideoTransformer3DModel, *, batch: int = 1, text_tokens: int = 1):
    """Param shapes and dtypes from ``jax.eval_shape`` of ``init`` (no memory is allocated)."""
    cfg = module.config

    def init():
        return module.init(
            jax.random.PRNGKey(0),
            jnp.zeros((batch, 1, cfg.in_channels), module.dtype),
            jnp.zeros((batch, text_tokens, cfg.caption_channels), module.dtype),
            jnp.zeros((batch,), jnp.float32),
            None,
            num_frames=1,
            height=1,
            width=1,
        )["params"]

    return jax.eval_shape(init)

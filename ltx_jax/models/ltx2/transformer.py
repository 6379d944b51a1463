"""The LTX-2 audio-video diffusion transformer (diffusers' ``LTX2VideoTransformer3DModel``) as a Flax linen module.

Axis letters in shape comments: B batch, N video tokens, M audio tokens, T text tokens, D video width (heads x head
dim), A audio width, C / Ca latent channels, E caption channels, L layers.

Parameter names follow diffusers (``proj_in``, ``time_embed``, ``av_cross_attn_video_scale_shift``, ``attn1``,
``audio_to_video_attn``, ``to_gate_logits``...) so conversion is a table (``weight_conversion.ltx2_transformer``);
the blocks sit under ``nn.scan`` (their params carry a leading [L] axis), with ``nn.remat`` when asked, as in
LTX-Video's ``ltx_jax.models.transformer``.

A forward pass is two methods, so that a denoising loop does the step-invariant half once:

    constants = model.apply(v, text, audio_text, num_frames=F, height=H, width=W, audio_num_frames=M,
                            method="prepare")    # RoPE tables, caption projections, every layer's text keys / values
    video, audio = model.apply(v, latents, audio_latents, timestep, constants, method="predict")   # per step

``__call__`` (diffusers' forward arguments) is ``predict(prepare(...))``. The text keys and values are cached in
``prepare`` unless they depend on the timestep (LTX-2.3's prompt AdaLN, ``cross_attn_mod`` with
``use_prompt_adaln_single``): then ``prepare`` keeps the projected text and each block computes them.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs_ltx2 import LTX2TransformerConfig
from ltx_jax.models import layers
from ltx_jax.models.ltx2 import rope
from ltx_jax.models.ltx2.blocks import LTX2TransformerBlock
from ltx_jax.models.transformer import AdaLayerNormSingle, CaptionProjection, _remat_policy

Dtype = Any


class LTX2Output(NamedTuple):
    """diffusers' ``AudioVisualModelOutput``: a tuple ``(sample, audio_sample)`` with those names."""

    sample: jax.Array  # [B, N, out_channels] video velocity, in dtype
    audio_sample: jax.Array  # [B, M, audio_out_channels] audio velocity, in dtype


@flax.struct.dataclass
class LTX2Constants:
    """What a forward pass needs that does not change between denoising steps (``prepare``'s output)."""

    video_rope: tuple[jax.Array, jax.Array]  # cos, sin [1 or B, N, D/2] float32
    audio_rope: tuple[jax.Array, jax.Array]  # [1 or B, M, A/2]
    video_cross_rope: tuple[jax.Array, jax.Array]  # [1 or B, N, audio_cross_attention_dim / 2] (frame times)
    audio_cross_rope: tuple[jax.Array, jax.Array]  # [1 or B, M, audio_cross_attention_dim / 2]
    text_kv: tuple[jax.Array, jax.Array] | None  # [L, B, T, D] keys, values; None: computed per step
    audio_text_kv: tuple[jax.Array, jax.Array] | None  # [L, B, T, A]
    context: jax.Array | None  # [B, T, D] projected text, where text_kv is None
    audio_context: jax.Array | None  # [B, T, A]
    text_mask: jax.Array | None  # [B, T] bool
    audio_text_mask: jax.Array | None  # [B, T] bool


class LTX2VideoTransformer3DModel(nn.Module):
    """LTX-2's audio-video DiT with diffusers' inputs and parameter names (``LTX2VideoTransformer3DModel``).

    Attributes (the runtime ones as ``ltx_jax.models.transformer.LTXVideoTransformer3DModel``'s):
      config: the architecture (``LTX2TransformerConfig``, diffusers' config.json names).
      dtype: compute dtype (bf16 on GPU); norms, RoPE, softmax statistics stay float32.
      param_dtype: dtype of the params ``init`` creates.
      attention_implementation: "xla", "cudnn" or None (cuDNN on CUDA in bf16 / fp16 where both streams' head
        sizes allow it, XLA otherwise).
      remat, remat_policy: rematerialise each block in the backward pass (a ``jax.checkpoint_policies`` name).
      precision: matmul precision of every Dense.
      weights: the blocks' linear kernels: None, "int8" or "fp8" (``layers.Dense``); compute: None or "fp8".
      sharding: an ``ltx_jax.sharding.ShardingPlan`` or None (activation constraints, context-parallel attention).
    """

    config: LTX2TransformerConfig
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
                                                       cfg.attention_head_dim, cfg.audio_attention_head_dim)

    def setup(self):
        cfg = self.config
        dim, audio_dim = cfg.inner_dim, cfg.audio_inner_dim
        layers.check_weights(self.weights)
        layers.check_compute(self.compute, self.weights)
        if cfg.audio_cross_attention_dim != audio_dim:
            raise ValueError(f"audio_cross_attention_dim={cfg.audio_cross_attention_dim} must equal the audio width "
                             f"{audio_dim} (audio heads x head dim): it is the width of the audio <-> video RoPE.")
        # quantized kernels (and fp8 matmuls): the blocks' linears only, as for LTX-Video
        self.proj_in = layers.dense(self, dim, ("mlp", "embed"), weights=None, compute=None)
        self.audio_proj_in = layers.dense(self, audio_dim, ("mlp", "embed"), weights=None, compute=None)
        if cfg.use_keyframes_abs_pos_embedding:  # [1, D], zeros in the reference
            self.keyframes_abs_pos_embedding = self.param("keyframes_abs_pos_embedding", nn.with_logical_partitioning(
                nn.initializers.zeros_init(), ("replicated", "embed")), (1, dim), self.param_dtype)
        if cfg.use_prompt_embeddings:
            self.caption_projection = CaptionProjection(dim, self.dtype, self.param_dtype, self.precision)
            self.audio_caption_projection = CaptionProjection(audio_dim, self.dtype, self.param_dtype, self.precision)

        def ada(width, k):
            return AdaLayerNormSingle(width, self.dtype, self.param_dtype, self.precision, num_mod_params=k)

        self.time_embed = ada(dim, 9 if cfg.cross_attn_mod else 6)
        self.audio_time_embed = ada(audio_dim, 9 if cfg.audio_cross_attn_mod else 6)
        self.av_cross_attn_video_scale_shift = ada(dim, 4)
        self.av_cross_attn_audio_scale_shift = ada(audio_dim, 4)
        self.av_cross_attn_video_a2v_gate = ada(dim, 1)
        self.av_cross_attn_audio_v2a_gate = ada(audio_dim, 1)
        if self._prompt_adaln:
            self.prompt_adaln = ada(dim, 2)
            self.audio_prompt_adaln = ada(audio_dim, 2)
        for name, width in (("scale_shift_table", dim), ("audio_scale_shift_table", audio_dim)):
            setattr(self, name, self.param(name, nn.with_logical_partitioning(
                nn.initializers.normal(width ** -0.5), ("replicated", "embed")), (2, width), self.param_dtype))
        self.transformer_blocks = self._block_stack()
        self.proj_out = layers.dense(self, cfg.video_out_channels, ("embed", "mlp"), weights=None, compute=None)
        self.audio_proj_out = layers.dense(self, cfg.audio_channels_out, ("embed", "mlp"), weights=None, compute=None)

    @property
    def _prompt_adaln(self) -> bool:
        """Whether the text keys / values are modulated by sigma (so computed every step)."""
        return self.config.prompt_modulation and self.config.use_prompt_adaln_single

    def _block_stack(self):
        block = LTX2TransformerBlock
        if self.remat:
            block = nn.remat(block, prevent_cse=False, policy=_remat_policy(self.remat_policy), static_argnums=(6,))
        scan = dict(variable_axes={"params": 0, layers.LORA_COLLECTION: 0}, split_rngs={"params": True},
                    length=self.config.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
        blocks = nn.scan(block, methods={
            "__call__": dict(scan, in_axes=(0, 0, 0, nn.broadcast, nn.broadcast)),  # text k/v, STG: per layer
            "text_key_value": dict(scan, in_axes=(nn.broadcast, nn.broadcast)),
        })
        implementation = "xla" if self.is_initializing() else self.resolved_attention_implementation
        return blocks(self.config, implementation, self.dtype, self.param_dtype, self.precision, self.weights,
                      self.compute, self.sharding)

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (``ltx_jax.models.init_params`` / ``abstract_params``)."""
        cfg = self.config
        widths = ((cfg.caption_channels,) * 2 if cfg.use_prompt_embeddings
                  else (cfg.cross_attention_dim, cfg.audio_cross_attention_dim))
        args = (jnp.zeros((1, 1, cfg.in_channels), self.dtype), jnp.zeros((1, 1, cfg.audio_in_channels), self.dtype),
                jnp.zeros((1, 1, widths[0]), self.dtype), jnp.zeros((1, 1, widths[1]), self.dtype),
                jnp.zeros((1,), jnp.float32))
        return args, dict(sigma=jnp.zeros((1,), jnp.float32), num_frames=1, height=1, width=1, audio_num_frames=1)

    # ------------------------------------------------------------------------------------------------ forward

    def __call__(
        self,
        hidden_states: jax.Array,
        audio_hidden_states: jax.Array,
        encoder_hidden_states: jax.Array,
        audio_encoder_hidden_states: jax.Array,
        timestep: jax.Array,
        audio_timestep: jax.Array | None = None,
        sigma: jax.Array | None = None,
        audio_sigma: jax.Array | None = None,
        encoder_attention_mask: jax.Array | None = None,
        audio_encoder_attention_mask: jax.Array | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        fps: float = 24.0,
        audio_num_frames: int | None = None,
        video_coords: jax.Array | None = None,
        audio_coords: jax.Array | None = None,
        isolate_modalities: bool = False,
        spatio_temporal_guidance_blocks: Sequence[int] | None = None,
        perturbation_mask: jax.Array | None = None,
        use_cross_timestep: bool = False,
        video_self_attention_mask: jax.Array | None = None,
        video_keyframes_mask: jax.Array | None = None,
        modality_mask: jax.Array | None = None,
    ) -> LTX2Output:
        """Predicts the video and audio velocities (diffusers' ``forward`` with ``return_dict=False``).

        Args:
          hidden_states: [B, N, C] packed video latents, N = num_frames * height * width (frame-major).
          audio_hidden_states: [B, M, Ca] packed audio latents.
          encoder_hidden_states, audio_encoder_hidden_states: [B, T, E] text embeddings of each stream (E =
            caption_channels with ``use_prompt_embeddings``, else cross_attention_dim / audio_cross_attention_dim).
          timestep: [B], [B, 1] or [B, N] (per token), already scaled (0-1000). audio_timestep: [B], [B, 1] or
            [B, M]; None: ``timestep`` (which must then not be per token unless M = N).
          sigma, audio_sigma: [B] the prompt AdaLN's timesteps (LTX-2.3; required where the config has
            ``cross_attn_mod`` with ``use_prompt_adaln_single``, and with ``use_cross_timestep``); audio_sigma
            defaults to sigma.
          encoder_attention_mask, audio_encoder_attention_mask: [B, T], 1 = real token, 0 = padding.
          num_frames, height, width, fps: the latent video grid (static) for RoPE, unless ``video_coords``.
          audio_num_frames: the number of audio latent frames (static), unless ``audio_coords``.
          video_coords: [B, 3, N, 2] (or [B, 3, N]) explicit pixel-space bounds; audio_coords: [B, 1, M, 2] seconds.
          isolate_modalities: skip the audio <-> video attention in every block (modality guidance; static).
          modality_mask: [B] per-row isolation, traced: 1 = the row attends across modalities, 0 = it is isolated
            as ``isolate_modalities`` isolates every row (so the modality-guidance rows share one batched forward
            with the others). None: every row attends (unless ``isolate_modalities``).
          spatio_temporal_guidance_blocks: block indices where self-attention is perturbed (STG; static); needs
            ``perturbed_attn`` in the config. perturbation_mask: [B] or [B, 1, 1], 0 = perturb the row (its
            self-attention outputs its values), 1 = not; None with STG blocks: every row perturbed.
          use_cross_timestep: modulate the audio <-> video attention of each stream by the other stream's sigma.
          video_self_attention_mask: [B, N, N] multiplicative mask in [0, 1] of the video self-attention.
          video_keyframes_mask: [B, N, 1], non-zero on tokens that get ``keyframes_abs_pos_embedding`` (only with
            ``use_keyframes_abs_pos_embedding``; ignored otherwise, as in diffusers).
        Returns:
          ``LTX2Output(sample [B, N, out_channels], audio_sample [B, M, audio_out_channels])`` in ``dtype``.
        """
        constants = self.prepare(encoder_hidden_states, audio_encoder_hidden_states, encoder_attention_mask,
                                 audio_encoder_attention_mask, num_frames=num_frames, height=height, width=width,
                                 fps=fps, audio_num_frames=audio_num_frames, video_coords=video_coords,
                                 audio_coords=audio_coords)
        return self.predict(hidden_states, audio_hidden_states, timestep, constants, audio_timestep=audio_timestep,
                            sigma=sigma, audio_sigma=audio_sigma, isolate_modalities=isolate_modalities,
                            spatio_temporal_guidance_blocks=spatio_temporal_guidance_blocks,
                            perturbation_mask=perturbation_mask, use_cross_timestep=use_cross_timestep,
                            video_self_attention_mask=video_self_attention_mask,
                            video_keyframes_mask=video_keyframes_mask, modality_mask=modality_mask)

    def prepare(self, encoder_hidden_states: jax.Array, audio_encoder_hidden_states: jax.Array,
                encoder_attention_mask: jax.Array | None = None,
                audio_encoder_attention_mask: jax.Array | None = None, *, num_frames: int | None = None,
                height: int | None = None, width: int | None = None, fps: float = 24.0,
                audio_num_frames: int | None = None, video_coords: jax.Array | None = None,
                audio_coords: jax.Array | None = None) -> LTX2Constants:
        """The step-invariant part of a forward pass (``__call__``'s text and position arguments) ->
        ``LTX2Constants``."""
        cfg = self.config
        batch = encoder_hidden_states.shape[0]
        widths = ((cfg.caption_channels, cfg.caption_channels) if cfg.use_prompt_embeddings
                  else (cfg.cross_attention_dim, cfg.audio_cross_attention_dim))
        for name, text, w in (("encoder_hidden_states", encoder_hidden_states, widths[0]),
                              ("audio_encoder_hidden_states", audio_encoder_hidden_states, widths[1])):
            if text.ndim != 3 or text.shape[0] != batch or text.shape[-1] != w:
                raise ValueError(f"{name} has shape {text.shape}; expected [B={batch}, T, {w}].")
        video_coords = self._video_coords(video_coords, batch, num_frames, height, width, fps)
        audio_coords = self._audio_coords(audio_coords, batch, audio_num_frames)
        tables = dict(theta=cfg.rope_theta, double_precision=cfg.rope_double_precision, rope_type=cfg.rope_type)
        video_max = (cfg.pos_embed_max_pos, cfg.base_height, cfg.base_width)
        cross_max = (max(cfg.pos_embed_max_pos, cfg.audio_pos_embed_max_pos),)
        heads, audio_heads = cfg.num_attention_heads, cfg.audio_num_attention_heads
        video_rope = rope.rope_tables(video_coords, cfg.inner_dim, video_max, heads=heads, **tables)
        audio_rope = rope.rope_tables(audio_coords, cfg.audio_inner_dim, (cfg.audio_pos_embed_max_pos,),
                                      heads=audio_heads, **tables)
        cross = cfg.audio_cross_attention_dim
        video_cross_rope = rope.rope_tables(video_coords[:, :1], cross, cross_max, heads=heads, **tables)
        audio_cross_rope = rope.rope_tables(audio_coords[:, :1], cross, cross_max, heads=audio_heads, **tables)

        masks = [None if m is None else self._text_mask(m, t, name) for m, t, name in (
            (encoder_attention_mask, encoder_hidden_states, "encoder_attention_mask"),
            (audio_encoder_attention_mask, audio_encoder_hidden_states, "audio_encoder_attention_mask"))]
        context = encoder_hidden_states.astype(self.dtype)
        audio_context = audio_encoder_hidden_states.astype(self.dtype)
        if cfg.use_prompt_embeddings:
            context, audio_context = self.caption_projection(context), self.audio_caption_projection(audio_context)
        text_kv = audio_text_kv = None
        if not self._prompt_adaln:
            _, (text_kv, audio_text_kv) = self.transformer_blocks.text_key_value(None, context, audio_context)
            context = audio_context = None
        return LTX2Constants(video_rope, audio_rope, video_cross_rope, audio_cross_rope, text_kv, audio_text_kv,
                             context, audio_context, *masks)

    def predict(self, hidden_states: jax.Array, audio_hidden_states: jax.Array, timestep: jax.Array,
                constants: LTX2Constants, *, audio_timestep: jax.Array | None = None, sigma: jax.Array | None = None,
                audio_sigma: jax.Array | None = None, isolate_modalities: bool = False,
                spatio_temporal_guidance_blocks: Sequence[int] | None = None,
                perturbation_mask: jax.Array | None = None, use_cross_timestep: bool = False,
                video_self_attention_mask: jax.Array | None = None,
                video_keyframes_mask: jax.Array | None = None,
                modality_mask: jax.Array | None = None) -> LTX2Output:
        """The per-step part of a forward pass: latents, timesteps and ``prepare``'s constants (``__call__``'s
        other arguments) -> ``LTX2Output``."""
        cfg = self.config
        dim, audio_dim = cfg.inner_dim, cfg.audio_inner_dim
        batch, n = self._check_latents(hidden_states, cfg.in_channels, "hidden_states", constants.video_rope)
        _, m = self._check_latents(audio_hidden_states, cfg.audio_in_channels, "audio_hidden_states",
                                   constants.audio_rope, batch)
        timestep = self._timestep(timestep, batch, n, "timestep", "N")
        audio_timestep = timestep if audio_timestep is None else self._timestep(audio_timestep, batch, m,
                                                                                "audio_timestep", "M")
        if audio_timestep.ndim == 2 and audio_timestep.shape[1] not in (1, m):
            raise ValueError(f"timestep is per video token {tuple(audio_timestep.shape)} but there are {m} audio "
                             "tokens; pass audio_timestep [B] or [B, M].")
        audio_sigma = sigma if audio_sigma is None else audio_sigma
        if (self._prompt_adaln or use_cross_timestep) and sigma is None:
            raise ValueError("sigma [B] is required (prompt AdaLN of cross_attn_mod with use_prompt_adaln_single, or "
                             "use_cross_timestep); pass sigma=timestep as diffusers' pipeline does.")

        x = self.proj_in(layers.constrain(self.sharding, hidden_states, "batch", "tokens", None).astype(self.dtype))
        ax = self.audio_proj_in(audio_hidden_states.astype(self.dtype))
        if cfg.use_keyframes_abs_pos_embedding and video_keyframes_mask is not None:
            marker = (jnp.asarray(video_keyframes_mask) > 0).astype(x.dtype)  # [B, N, 1]
            x = x + marker * self.keyframes_abs_pos_embedding.astype(x.dtype)

        def embed(module, t, k, width):
            temb, embedded = module(t.reshape(-1).astype(jnp.float32))
            return temb.reshape(batch, -1, k * width), embedded.reshape(batch, -1, width)

        temb, embedded = embed(self.time_embed, timestep, 9 if cfg.cross_attn_mod else 6, dim)
        temb_audio, audio_embedded = embed(self.audio_time_embed, audio_timestep,
                                           9 if cfg.audio_cross_attn_mod else 6, audio_dim)
        temb_prompt = temb_prompt_audio = None
        if self._prompt_adaln:
            temb_prompt = embed(self.prompt_adaln, jnp.asarray(sigma), 2, dim)[0]
            temb_prompt_audio = embed(self.audio_prompt_adaln, jnp.asarray(audio_sigma), 2, audio_dim)[0]
        gate_factor = cfg.cross_attn_timestep_scale_multiplier / cfg.timestep_scale_multiplier
        video_ca_t = jnp.asarray(audio_sigma) if use_cross_timestep else timestep
        audio_ca_t = jnp.asarray(sigma) if use_cross_timestep else audio_timestep
        ctx = dict(
            temb=temb, temb_audio=temb_audio, temb_prompt=temb_prompt, temb_prompt_audio=temb_prompt_audio,
            temb_ca_scale_shift=embed(self.av_cross_attn_video_scale_shift, video_ca_t, 4, dim)[0],
            temb_ca_gate=embed(self.av_cross_attn_video_a2v_gate, video_ca_t * gate_factor, 1, dim)[0],
            temb_ca_audio_scale_shift=embed(self.av_cross_attn_audio_scale_shift, audio_ca_t, 4, audio_dim)[0],
            temb_ca_audio_gate=embed(self.av_cross_attn_audio_v2a_gate, audio_ca_t * gate_factor, 1, audio_dim)[0],
            video_rope=constants.video_rope, audio_rope=constants.audio_rope,
            video_cross_rope=constants.video_cross_rope, audio_cross_rope=constants.audio_cross_rope,
            context=constants.context, audio_context=constants.audio_context, text_mask=constants.text_mask,
            audio_text_mask=constants.audio_text_mask,
            video_bias=self._self_attention_bias(video_self_attention_mask, batch, n),
            modality_mask=self._row_mask(modality_mask, batch, "modality_mask"))
        perturbation = self._perturbation(spatio_temporal_guidance_blocks, perturbation_mask, batch)
        (x, ax), _ = self.transformer_blocks((x, ax), constants.text_kv, constants.audio_text_kv, perturbation, ctx,
                                             bool(isolate_modalities))
        video = self._project_out(x, embedded, self.scale_shift_table, self.proj_out)
        audio = self._project_out(ax, audio_embedded, self.audio_scale_shift_table, self.audio_proj_out)
        return LTX2Output(layers.constrain(self.sharding, video, "batch", "tokens", None), audio)

    @staticmethod
    def _project_out(x, embedded, table, proj):
        """Final AdaLN (a weightless layer norm, the table plus the embedded timestep's shift / scale) and the
        output projection: [B, N, W] -> [B, N, out]."""
        mod = table[None, None].astype(embedded.dtype) + embedded[:, :, None]  # [B, 1|N, 2, W]
        shift, scale = mod[:, :, 0], mod[:, :, 1]
        return proj(layers.layer_norm_no_affine(x, 1e-6) * (1 + scale) + shift)

    # -------------------------------------------------------------------------------------------- inputs, checks

    def _video_coords(self, coords, batch, num_frames, height, width, fps):
        cfg = self.config
        if coords is None:
            if None in (num_frames, height, width):
                raise ValueError("Pass num_frames, height and width (latent sizes) or video_coords [B, 3, N, 2].")
            return rope.video_coords(1, num_frames, height, width, patch_size=cfg.patch_size,
                                     patch_size_t=cfg.patch_size_t, scale_factors=cfg.vae_scale_factors,
                                     causal_offset=cfg.causal_offset, fps=fps)
        if coords.ndim not in (3, 4) or coords.shape[:2] != (batch, 3) or (coords.ndim == 4 and coords.shape[3] != 2):
            raise ValueError(f"video_coords has shape {tuple(coords.shape)}; expected [B={batch}, 3, N, 2].")
        return coords

    def _audio_coords(self, coords, batch, num_frames):
        cfg = self.config
        if coords is None:
            if num_frames is None:
                raise ValueError("Pass audio_num_frames (latent audio frames) or audio_coords [B, 1, M, 2].")
            return rope.audio_coords(1, num_frames, patch_size_t=cfg.audio_patch_size_t,
                                     scale_factor=cfg.audio_scale_factor, causal_offset=cfg.causal_offset,
                                     sampling_rate=cfg.audio_sampling_rate, hop_length=cfg.audio_hop_length)
        if coords.ndim not in (3, 4) or coords.shape[:2] != (batch, 1) or (coords.ndim == 4 and coords.shape[3] != 2):
            raise ValueError(f"audio_coords has shape {tuple(coords.shape)}; expected [B={batch}, 1, M, 2].")
        return coords

    @staticmethod
    def _check_latents(x, channels, name, rope_table, batch=None):
        if x.ndim != 3 or x.shape[-1] != channels or (batch is not None and x.shape[0] != batch):
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected [B, tokens, {channels}] packed latents"
                             + ("" if batch is None else f" with B = {batch}") + ".")
        if rope_table[0].shape[1] != x.shape[1]:
            raise ValueError(f"{name} has {x.shape[1]} tokens but the RoPE grid (num_frames x height x width, "
                             f"audio_num_frames or the coords) has {rope_table[0].shape[1]}.")
        return x.shape[0], x.shape[1]

    @staticmethod
    def _timestep(t, batch, tokens, name, letter):
        t = jnp.asarray(t, jnp.float32)
        if t.ndim == 0:
            t = jnp.broadcast_to(t, (batch,))
        if t.shape[0] != batch or t.ndim > 2 or (t.ndim == 2 and t.shape[1] not in (1, tokens)):
            raise ValueError(f"{name} has shape {tuple(t.shape)}; expected [B]={batch}, [B, 1] or "
                             f"[B, {letter}]=[{batch}, {tokens}].")
        return t

    def _text_mask(self, mask, text, name):
        if tuple(mask.shape) != tuple(text.shape[:2]):
            raise ValueError(f"{name} has shape {tuple(mask.shape)}; expected [B, T] = {tuple(text.shape[:2])}.")
        return jnp.asarray(mask) != 0

    def _self_attention_bias(self, mask, batch, n):
        if mask is None:
            return None
        if tuple(mask.shape) != (batch, n, n):
            raise ValueError(f"video_self_attention_mask has shape {tuple(mask.shape)}; expected [B, N, N] = "
                             f"[{batch}, {n}, {n}] with values in [0, 1].")
        return ((1 - jnp.asarray(mask).astype(self.dtype)) * -10000.0)[:, None]  # [B, 1, N, N]

    def _row_mask(self, mask, batch, name):
        """A traced per-row [B] weight as [B, 1, 1] in ``dtype`` (None stays None)."""
        if mask is None:
            return None
        mask = jnp.asarray(mask, self.dtype).reshape(-1)
        if mask.shape != (batch,):
            raise ValueError(f"{name} has {mask.shape[0]} entries; expected one per batch row ({batch}).")
        return mask[:, None, None]

    def _perturbation(self, blocks, mask, batch):
        """[L, B] STG weights (1 = attend) or None, from the static block list and the traced [B] mask."""
        if not blocks:
            return None
        num_layers = self.config.num_layers
        if not self.config.perturbed_attn:
            raise ValueError("spatio_temporal_guidance_blocks needs a config with perturbed_attn=True (diffusers "
                             "ignores STG otherwise); set it in the config or drop the STG blocks.")
        if any(not 0 <= int(b) < num_layers for b in blocks):
            raise ValueError(f"spatio_temporal_guidance_blocks={list(blocks)}; indices must be in [0, {num_layers}).")
        mask = jnp.zeros((batch,), self.dtype) if mask is None else jnp.asarray(mask, self.dtype).reshape(-1)
        if mask.shape != (batch,):
            raise ValueError(f"perturbation_mask has {mask.shape[0]} entries; expected one per batch row ({batch}).")
        chosen = np.isin(np.arange(num_layers), np.asarray(list(blocks), int))[:, None]  # [L, 1]
        return jnp.where(chosen, mask[None], jnp.ones((1, batch), self.dtype))

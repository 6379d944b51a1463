"""What every LTX-Video pipeline shares: loading, stage timings, and the stages themselves.

A pipeline's ``__call__`` checks its arguments as a typed request (``pipe.request``, ``ltx_jax.pipelines.calls``)
and runs ``generate``: a composition of stages that a caller can also run on their own:

    embeds = pipe.encode_prompt(prompt, negative_prompt, do_classifier_free_guidance=True)   # T5
    grid = pipe.latent_grid(height, width, num_frames)
    start = pipe.prepare_latents(batch_size, grid, CallKeys.from_seed(0))                    # PreparedLatents
    latents = pipe.denoise(start.latents, grid, *embeds, num_inference_steps=40, guidance_scale=3.0)  # one program
    frames = pipe.decode(latents, grid, decode_timestep=0.05, key=key)                       # VAE

Sizes come from the components, never from constants: the VAE's compression ratios and the transformer's patch
sizes (diffusers' ``vae_spatial_compression_ratio``, ``transformer_spatial_patch_size``, ...).
"""

from __future__ import annotations

import dataclasses
import copy
import logging
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax import scheduler as sched
from ltx_jax.models.layers import check_compute, check_weights
from ltx_jax.models.vae import VAETiling
from ltx_jax import validation
from ltx_jax.pipelines.calls import RequestCalls
from ltx_jax.pipelines.contracts import CallKeys, PreparedLatents
from ltx_jax.pipelines.decode_stream import StreamedDecode
from ltx_jax.pipelines.hub import resolve_path
from ltx_jax.pipelines.lora import LoraMixin
from ltx_jax.compilation_cache import enable_compilation_cache, persistent_cache_on
from ltx_jax.pipelines.reporting import NonFiniteError, StageTimings
from ltx_jax.pipelines.tiling_policy import auto_tiling
from ltx_jax.pipelines.vae_programs import jitted_decode, jitted_encode, jitted_resize
from ltx_jax.programs import dry_running, is_placeholder
from ltx_jax.releases import LTX_SCHEDULER, Release, detect_release, get_release
from ltx_jax.sampling import step_cache
from ltx_jax.sharding import ShardingPlan
from ltx_jax.text_encoding import PromptEncoder, check_tokenizer_folder, encode_prompt, load_tokenizer
from weight_conversion import load_text_encoder, load_transformer, load_vae, read_single_file_config, refuse_ltx2

logger = logging.getLogger("ltx_jax")

class VAEStages(StreamedDecode):
    """The VAE's stages, shared by every pipeline (``vae``, ``vae_params``, ``last_timings`` are the owner's); a long
    video's streamed decode into a file is ``StreamedDecode``'s (``decode_video_stream``, ``decode_to_file``)."""

    @property
    def sharding(self):
        """The ``ltx_jax.sharding.ShardingPlan`` the pipeline runs under (its transformer's; None: one device)."""
        return getattr(getattr(self, "transformer", None), "sharding", None)

    @property
    def vae_spatial_compression_ratio(self) -> int:
        return self.vae.config.spatial_ratio

    @property
    def vae_temporal_compression_ratio(self) -> int:
        return self.vae.config.temporal_ratio

    def _stage(self, name: str):
        """Times a stage into ``last_timings`` (``StageTimings.stage``)."""
        return self.last_timings.stage(name)

    def encode_video(self, video, key: jax.Array | None) -> jax.Array:
        """Frames [B, F, H, W, 3] in [-1, 1] (F = k * temporal ratio + 1) -> normalised latents [B, F', H', W', C]
        float32, the posterior sampled from ``key`` (what image-to-video, conditions and video-to-video start from),
        or its mode with ``key=None`` (the long-video pipeline's, as diffusers')."""
        with self._stage("encoding"):
            return sampling.run(lambda: jitted_encode(self.vae, self.vae_params, video, key),
                                stage="encoding")

    def decode_video(self, latents: jax.Array, *, decode_timestep: float | Sequence[float] = 0.0,
                     decode_noise_scale: float | Sequence[float] | None = None, key: jax.Array | None = None,
                     tiling: Any = "auto", tone_map_compression_ratio: float = 0.0,
                     size: tuple[int, int] | None = None, uint8: bool = False) -> np.ndarray:
        """Normalised latents [B, F, H, W, C] -> frames np.ndarray [B, F', H', W', 3] float32 in [0, 1], or uint8
        ``round(clip(frames, 0, 1) * 255)`` with ``uint8``; resized bilinearly to ``size`` (height, width) when
        given. Clipping, the resize and the quantisation run on the device: the frames leave it once, at the end.

        ``tone_map_compression_ratio`` > 0 first tone-maps the normalised latents (the original package's
        ``tone_map_latents``). Timestep-conditioned VAEs (0.9.1+) decode at ``decode_timestep`` after mixing in
        ``decode_noise_scale`` of noise from ``key`` (None: as much as the timestep, as diffusers), in denormalised
        space as diffusers does. ``tiling``: "auto" (by the device's free memory: ``_tiling``), None/False (whole), True
        (diffusers' default tiles), or a dict of diffusers' ``enable_tiling`` arguments.
        """
        validation.check_number("tone_map_compression_ratio", tone_map_compression_ratio, minimum=0, maximum=1)
        resize = size is not None and tuple(size) != self._decoded_size(latents.shape[2:4])
        with self._stage("decoding"):
            batch = latents.shape[0]
            timestep = noise_scale = None
            if self.vae.config.timestep_conditioning:
                dt = np.broadcast_to(np.asarray(decode_timestep, np.float32), (batch,))
                dns = dt if decode_noise_scale is None else np.broadcast_to(
                    np.asarray(decode_noise_scale, np.float32), (batch,))
                timestep, noise_scale = jnp.asarray(dt), jnp.asarray(dns)
            key = jax.random.PRNGKey(0) if key is None else key
            tiles = self._tiling(tiling, latents.shape)
            tone_map = jnp.float32(tone_map_compression_ratio) if tone_map_compression_ratio > 0 else None
            frames, finite = sampling.run(lambda: jitted_decode(self.vae, self.vae_params, latents, timestep,
                                                                 noise_scale, key, tiles, tone_map,
                                                                 sharding=self.sharding,
                                                                 as_uint8=uint8 and not resize), stage="decoding")
            if not is_placeholder(finite) and not bool(finite):
                raise NonFiniteError("decoding produced NaN or Inf frames (the latents were finite); check the VAE "
                                     "weights and dtype.")
            if not resize:
                return np.asarray(frames)  # the one transfer
        with self._stage("resizing"):
            height, width = size
            resized = sampling.run(lambda: jitted_resize(frames, height, width, as_uint8=uint8), stage="resizing")
            return np.asarray(resized)

    def _decoded_size(self, latent_size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) in pixels of latents of ``latent_size`` (height, width)."""
        ratio = self.vae_spatial_compression_ratio
        return latent_size[0] * ratio, latent_size[1] * ratio

    def _tiling(self, tiling, latent_shape: Sequence[int]):
        """Resolves the ``tiling`` argument to a hashable ``VAETiling`` (or None for a whole decode) for latents of
        ``latent_shape`` [B, F, H, W, C]: "auto" decodes whole when the device's free memory holds it with a margin,
        else in the fewest tiles that fit (``pipelines.tiling_policy``; a backend that reports no memory, the CPU,
        keeps the pixel threshold ``AUTO_TILING_PIXELS``)."""
        if isinstance(tiling, str):
            if tiling != "auto":
                raise ValueError(f"tiling={tiling!r}; use 'auto', True, False/None, "
                                 "or a dict of enable_tiling arguments.")
            return auto_tiling(self.vae.config, latent_shape, self.vae.dtype)
        return VAETiling.resolve(tiling)


class PipelineBase(RequestCalls, LoraMixin, VAEStages):
    """Components and stages shared by the LTX-Video pipelines.

    Attributes:
      transformer, transformer_params: the DiT (``weight_conversion.load_transformer``).
      vae, vae_params: the causal video VAE (``weight_conversion.load_vae``).
      prompt_encoder: tokenizer + T5 (``ltx_jax.text_encoding.PromptEncoder``); None when only embeddings are passed.
      scheduler_config: the flow-matching scheduler config.
      release: the released checkpoint these components are (``ltx_jax.releases``), whose defaults fill the arguments
        left as None; None = diffusers' defaults.
      progress: show a progress bar while denoising.
      last_timings: ``StageTimings`` of the last call.
    """

    # Whether T5 masks the prompt's padding tokens (diffusers' LTXConditionPipeline does; the others do not).
    mask_encoder_padding = False

    def __init__(self, transformer, transformer_params, vae, vae_params, prompt_encoder=None,
                 scheduler_config: sched.FlowMatchSchedulerConfig = LTX_SCHEDULER, release: Release | None = None,
                 progress: bool = True):
        self.transformer = transformer
        self.transformer_params = transformer_params
        self.vae = vae
        self.vae_params = vae_params
        self.prompt_encoder = prompt_encoder
        self.scheduler_config = scheduler_config
        self.release = release
        self.progress = progress
        self.last_timings = StageTimings()
        self.last_cached_steps: np.ndarray | None = None  # [S] bool: the last denoise's steps that reused its cache

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: Any = "bfloat16", *, text_encoder_path: str | None = None,
                        preset: str | None = None, compilation_cache: bool = False, cache_dir: str | None = None,
                        text_encoder_dtype: Any = None, progress: bool = True, weights: str | None = None,
                        text_encoder_weights: str | None = None, compute: str | None = None,
                        lora: Sequence[tuple[str | os.PathLike, float]] | None = None, mesh: Any = None):
        """Loads every component.

        Args:
          path: a diffusers-layout folder (``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``,
            ``tokenizer/``, ``scheduler/``), a Lightricks single file (``ltxv-*.safetensors``, transformer + VAE;
            give ``text_encoder_path`` for T5 and its tokenizer), a folder of Orbax checkpoints with the same
            sub-folder names, or a hub id such as ``Lightricks/LTX-Video`` (fetched when online).
          dtype: "bfloat16" (GPU) or "float32" (parity checks, CPU).
          preset: a release name from ``ltx_jax.releases.RELEASES`` whose defaults to use; detected when None.
          compilation_cache: turn on JAX's persistent compilation cache (``cache_dir`` or ``$LTX_JAX_CACHE_DIR``), a
            process-wide setting (``ltx_jax.compilation_cache``); off by default.
          weights: the transformer blocks' kernels in "int8" or "fp8" (e4m3) with per-output-channel scales, or
            None (``dtype``; for Orbax, as stored): ~0.51x the transformer's bytes, computed in ``dtype``
            (``weight_conversion.load_transformer``). Lightricks' ``*-fp8`` files load as stored with "fp8".
          text_encoder_weights: the same for T5's block kernels (T5-XXL: 9.5 GB in bf16, ~4.9 GB in int8).
          compute: "fp8" runs the transformer blocks' matmuls as fp8 x fp8 (activations quantized per tensor on the
            fly; cuBLASLt's fp8 GEMM on Hopper, emulated elsewhere); needs ``weights="fp8"`` or an fp8 checkpoint
            (loaded as stored). None: matmuls in ``dtype``.
          lora: LoRA files fused at load, ``[(path, scale), ...]``, into the transformer (and T5 where a file has
            ``text_encoder.*`` modules), before any quantization: no run-time cost, and they stay in the weights
            (adapters to switch at run time: ``load_lora_weights`` / ``set_adapters`` after loading).
          mesh: run sharded over several devices: a spec such as ``"data=2,context=4"`` (axes ``data``, ``fsdp``,
            ``context``, ``tensor``; sizes multiplying to the device count), a ``jax.sharding.Mesh`` or an
            ``ltx_jax.sharding.ShardingPlan`` (``ltx_jax.sharding``). The transformer and T5 load straight onto
            their shards, the VAE is replicated, and the frames are those of one device. Several processes:
            ``ltx_jax.distributed.initialize()`` first, in every process (``ltx_jax.launch``).
        """
        chosen = get_release(preset) if preset else None  # a wrong name fails before anything is loaded
        check_weights(weights)
        check_weights(text_encoder_weights, "text_encoder_weights")
        check_compute(compute, weights or "fp8")  # weights=None: the checkpoint's own kernels, load_transformer checks
        plan = ShardingPlan.create(mesh)  # a bad spec or device count fails before anything is loaded
        if compilation_cache:
            enable_compilation_cache(cache_dir)
        path = resolve_path(os.fspath(path))
        refuse_ltx2(path, cls.__name__)
        dtype = jnp.dtype(dtype)
        single_file = os.path.isfile(path)
        root = os.path.dirname(path) if single_file else path
        te_root = text_encoder_path or (root if os.path.isdir(os.path.join(root, "text_encoder")) else None)
        if te_root is not None:
            check_tokenizer_folder(te_root)  # a missing or unreadable tokenizer file, before any weights are read
        transformer, transformer_params = load_transformer(path, dtype, weights=weights, compute=compute, lora=lora,
                                                           sharding=plan)
        vae, vae_params = load_vae(path, dtype)
        if plan is not None:
            vae_params = jax.device_put(vae_params, plan.replicated())
        prompt_encoder = None
        if te_root is not None:
            te_module, te_params = load_text_encoder(te_root, jnp.dtype(text_encoder_dtype or dtype),
                                                     weights=text_encoder_weights, lora=lora, sharding=plan)
            prompt_encoder = PromptEncoder(load_tokenizer(te_root), te_module, te_params)
        else:
            logger.warning("No text_encoder/ found next to %s: pass prompt_embeds, or text_encoder_path=.", path)
        if chosen is None:
            metadata = read_single_file_config(path) if single_file else None
            chosen = detect_release(path, transformer.config, vae.config, metadata)
        sched_json = os.path.join(root, "scheduler", "scheduler_config.json")
        if not single_file and os.path.exists(sched_json):
            scheduler_config = sched.FlowMatchSchedulerConfig.from_json(sched_json)
        else:
            scheduler_config = chosen.scheduler if chosen is not None else LTX_SCHEDULER
        return cls(transformer, transformer_params, vae, vae_params, prompt_encoder, scheduler_config, chosen, progress)

    def to_mesh(self, mesh) -> "PipelineBase":
        """This pipeline over several devices: a new pipeline of the same class whose params are copied onto their
        shards (``from_pretrained(mesh=)`` loads them there directly; this is for pipelines built another way, such
        as ``tiny_random_pipeline``). ``mesh``: as ``from_pretrained``'s."""
        plan = ShardingPlan.create(mesh)
        if plan is None:
            raise ValueError("to_mesh(None): pass a mesh spec such as 'data=2,context=4', a Mesh or a ShardingPlan.")
        new = copy.copy(self)
        new.transformer = self.transformer.clone(sharding=plan)
        new.transformer_params = plan.place(self.transformer_params, self.transformer)
        new.vae_params = jax.device_put(self.vae_params, plan.replicated())
        if self.prompt_encoder is not None:
            old = self.prompt_encoder
            new.prompt_encoder = PromptEncoder(old.tokenizer, old.module, plan.place(old.params, old.module),
                                               mask_encoder_padding=old.mask_encoder_padding)
        if getattr(self, "latent_upsampler_params", None) is not None:
            new.latent_upsampler_params = jax.device_put(self.latent_upsampler_params, plan.replicated())
        new.last_timings = StageTimings()
        new._lora = None
        new._copy_lora_state(self)
        return new

    @classmethod
    def from_pipe(cls, pipe: "PipelineBase"):
        """This pipeline over another pipeline's components (nothing is loaded or copied), e.g.
        ``LTXConditionPipeline.from_pipe(LTXPipeline.from_pretrained(path))``."""
        new = cls(pipe.transformer, pipe.transformer_params, pipe.vae, pipe.vae_params, pipe.prompt_encoder,
                  pipe.scheduler_config, pipe.release, pipe.progress)
        new._copy_lora_state(pipe)
        return new

    # ------------------------------------------------------------------------------------------ sizes

    @property
    def transformer_spatial_patch_size(self) -> int:
        return self.transformer.config.patch_size

    @property
    def transformer_temporal_patch_size(self) -> int:
        return self.transformer.config.patch_size_t

    def latent_grid(self, height: int, width: int, num_frames: int) -> sampling.LatentGrid:
        """The latent grid of a num_frames x height x width video (sizes checked first)."""
        spatial = self.vae_spatial_compression_ratio * self.transformer_spatial_patch_size
        temporal = self.vae_temporal_compression_ratio
        validation.check_video_size(height, width, num_frames, spatial_multiple=spatial, temporal_ratio=temporal,
                                    temporal_patch=self.transformer_temporal_patch_size)
        return sampling.LatentGrid.for_video(
            num_frames, height, width, spatial_ratio=self.vae_spatial_compression_ratio, temporal_ratio=temporal,
            patch_size=self.transformer_spatial_patch_size, patch_size_t=self.transformer_temporal_patch_size)

    def rope_interpolation_scale(self, frame_rate: float) -> tuple[float, float, float]:
        """(temporal ratio / frame rate, spatial ratio, spatial ratio), as diffusers' pipelines scale RoPE."""
        return sampling.rope_interpolation_scale(frame_rate, temporal_ratio=self.vae_temporal_compression_ratio,
                                                 spatial_ratio=self.vae_spatial_compression_ratio)

    # ------------------------------------------------------------------------------------------ stages

    def encode_prompt(self, prompt: str | Sequence[str] | None, negative_prompt: str | Sequence[str] | None = None,
                      do_classifier_free_guidance: bool = True, num_videos_per_prompt: int = 1, prompt_embeds=None,
                      prompt_attention_mask=None, negative_prompt_embeds=None, negative_prompt_attention_mask=None,
                      max_sequence_length: int = 128):
        """Prompt embeddings as diffusers' ``encode_prompt`` returns them: (prompt_embeds [B, T, E], mask [B, T],
        negative_prompt_embeds, negative mask), the negative pair None without classifier-free guidance. B is the
        number of prompts times ``num_videos_per_prompt``; embeddings given instead of prompts pass through."""
        with self._stage("text_encoding"):
            if prompt_embeds is None:
                prompts = [prompt] if isinstance(prompt, str) else list(prompt)
                prompt_embeds, prompt_attention_mask = self._encode(
                    [p for p in prompts for _ in range(num_videos_per_prompt)], max_sequence_length)
            elif num_videos_per_prompt > 1:  # as diffusers repeats given embeddings: each row n times in a row
                prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask = (
                    None if x is None else jnp.repeat(jnp.asarray(x), num_videos_per_prompt, axis=0)
                    for x in (prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                              negative_prompt_attention_mask))
            batch = prompt_embeds.shape[0]
            if do_classifier_free_guidance and negative_prompt_embeds is None:
                negative = "" if negative_prompt is None else negative_prompt
                if isinstance(negative, str):
                    negative = [negative] * batch
                else:
                    negative = [p for p in negative for _ in range(num_videos_per_prompt)]
                negative_prompt_embeds, negative_prompt_attention_mask = self._encode(negative, max_sequence_length)
            out = tuple(None if x is None else jnp.asarray(x) for x in (
                prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask))
            if not do_classifier_free_guidance:
                out = out[:2] + (None, None)
            return sampling.run(lambda: out, stage="text encoding")

    def _encode(self, prompts: list[str], max_sequence_length: int):
        if self.prompt_encoder is None:
            raise ValueError("This pipeline has no text encoder: pass prompt_embeds and prompt_attention_mask "
                             "(and the negative pair with guidance), or load one with text_encoder_path=.")
        encoder = self.prompt_encoder
        variables = self._variables("text_encoder", encoder.params)  # params, or params and unfused LoRA adapters
        return encode_prompt(prompts, encoder.tokenizer, encoder.module, variables, max_sequence_length,
                             mask_encoder_padding=self.mask_encoder_padding)

    def prepare_latents(self, batch_size: int, grid: sampling.LatentGrid, keys: CallKeys | None, latents=None,
                        noise=None) -> PreparedLatents:
        """The loop's start (``PreparedLatents``): packed latents [B, N, C] float32, ``latents`` if given, else
        ``noise`` if given, else standard normal noise from ``keys.noise``; given arrays are packed [B, N, C] or
        channels-last [B, F, H, W, C] (checked)."""
        if latents is not None:
            return PreparedLatents(self._grid_array(latents, batch_size, grid, "latents"))
        if noise is not None:
            return PreparedLatents(self._grid_array(noise, batch_size, grid, "noise"))
        shape = (batch_size, grid.num_tokens, self.transformer.config.in_channels)
        return PreparedLatents(jax.random.normal(keys.noise, shape, jnp.float32))

    def _grid_array(self, latents, batch_size: int, grid: sampling.LatentGrid, name: str) -> jax.Array:
        """A caller's latents (or noise) as packed float32 [B, N, C], every axis checked against the grid."""
        channels = self.transformer.config.in_channels
        expected = (batch_size, grid.num_tokens, channels)
        latents = jnp.array(latents, jnp.float32)  # a copy: the loop consumes (donates) it, not the caller's array
        if not bool(jnp.all(jnp.isfinite(latents))):
            raise ValueError(f"{name} contain NaN or Inf; pass finite values (or none, to draw them from seed).")
        if latents.ndim == 5:
            unpacked = channels // (grid.patch_size**2 * grid.patch_size_t)
            five = (batch_size, grid.frames, grid.height, grid.width, unpacked)
            if latents.shape != five:
                raise ValueError(f"{name} have shape {latents.shape}; expected channels-last [B, F, H, W, C] = {five} "
                                 "for this size (or packed [B, N, C]).")
            latents = sampling.pack_latents(latents, grid.patch_size, grid.patch_size_t)
        if latents.shape != expected:
            raise ValueError(f"{name} have shape {latents.shape}; expected packed [B, N, C] = {expected} for a "
                             f"{grid.frames}x{grid.height}x{grid.width} latent grid.")
        return latents

    def sigmas_and_timesteps(self, grid: sampling.LatentGrid, num_inference_steps: int | None = None,
                 timesteps: Sequence[float] | None = None, sigmas: Sequence[float] | None = None):
        """(sigmas [S + 1], timesteps [S]) float32 for this grid, as diffusers' ``LTXPipeline`` sets its scheduler."""
        return sampling.diffusers_schedule(self.scheduler_config, num_inference_steps, grid.num_latents,
                                           timesteps=timesteps,
                                 sigmas=sigmas)

    def denoise(self, latents: jax.Array, grid: sampling.LatentGrid, prompt_embeds, prompt_attention_mask,
                negative_prompt_embeds=None, negative_prompt_attention_mask=None, *, frame_rate: float = 25,
                num_inference_steps: int | None = 50, timesteps: Sequence[float] | None = None,
                sigmas: Sequence[float] | None = None, guidance_scale: float | Sequence[float] = 3.0,
                guidance_rescale: float | Sequence[float] = 0.0, stg_scale: float | Sequence[float] = 0.0,
                rescaling_scale: float | Sequence[float] = 1.0, skip_block_list=None,
                skip_layer_strategy: str = "attention_values", cfg_star_rescale: bool = False,
                guidance_timesteps: Sequence[float] | None = None, skip_initial_inference_steps: int = 0,
                skip_final_inference_steps: int = 0, conditioning_mask=None, video_coords=None,
                per_token_timesteps: bool = False, sigmas_and_timesteps=None,
                image_cond_noise_scale: float | None = None,
                noise_key: jax.Array | None = None, cache: str | None = None,
                cache_threshold: float | None = None, cache_exclude_conditioning: bool = False,
                conditioning_latents=None, ancestral=None) -> jax.Array:
        """The whole denoising loop, one compiled program: packed latents [B, N, C] -> denoised [B, N, C] float32.

        Args:
          latents: initial packed latents (``prepare_latents``); consumed (their buffer is donated).
          prompt_embeds, prompt_attention_mask (and the negative pair with classifier-free guidance): [B, T, E] /
            [B, T].
          num_inference_steps / timesteps / sigmas: the schedule (diffusers' meaning; explicit lists win).
          guidance_scale, guidance_rescale: CFG scale (a step runs CFG when its scale is above 1) and diffusers' CFG
            rescale.
          stg_scale, rescaling_scale, skip_block_list, skip_layer_strategy, cfg_star_rescale: spatio-temporal guidance
            (a step runs STG when its scale is above 0: the blocks of ``skip_block_list`` are perturbed with
            ``skip_layer_strategy`` in a third branch), the original package's std rescaling (with STG only, where
            not 1) and CFG-star (see ``sampling.guidance``).
          guidance_timesteps: the original's guidance schedule: timesteps in [0, 1]; each step takes the values of
            the first entry at or below its timestep / 1000. Without it, lists are one value per step.
          skip_initial_inference_steps, skip_final_inference_steps: steps dropped from a ``num_inference_steps``
            schedule (the last kept step goes to sigma 0), as the original does.
          conditioning_mask: [B, N] in [0, 1], 1 = a clean conditioning token (see ``sampling.Sampler``).
          video_coords: [B, 3, N] token coordinates (frames already divided by the frame rate, as diffusers'
            condition pipeline passes them); replaces the grid and ``frame_rate``.
          per_token_timesteps: diffusers' ``LTXConditionPipeline`` stepping rule instead of ``LTXPipeline``'s.
          sigmas_and_timesteps: (sigmas [S + 1], timesteps [S]) to use as they are (e.g.
            ``self.sigmas_and_timesteps(...)`` trimmed for a
            ``denoise_strength``); replaces the other schedule arguments.
          image_cond_noise_scale, noise_key: per-token rule only: before each step, tokens whose mask is 1 are reset
            to their initial latents plus ``scale * N(0, 1) * (t / 1000)^2`` (diffusers' condition pipeline).
          cache, cache_threshold: step caching (``sampling.step_cache``): "first_block" runs only the first block on
            a step whose first-block residual moved by at most ``cache_threshold`` (relative), reusing the other
            blocks' last residual; "teacache" runs no block on a step whose first block's modulated input moved by
            less than ``cache_threshold`` (rescaled, accumulated since the last step that ran them), reusing their
            last residual; ``self.last_cached_steps`` then says which steps did. ``cache_threshold`` None: the
            kind's default (``step_cache.DEFAULT_THRESHOLDS``).
          cache_exclude_conditioning: the cache's distances count only the tokens whose conditioning mask is below
            1.
          conditioning_latents: [B, N, C] float32: the long-video rule (``Sampler.blend_conditioning``): each step
            starts from and ends with ``latents * (1 - conditioning_mask) + conditioning_latents *
            conditioning_mask``, the model seeing the latents at timestep ``t * (1 - conditioning_mask)``.
          ancestral: an ``LTXEulerAncestralRFSchedulerConfig``: ancestral steps with its ``eta`` / ``s_noise``, the
            noise drawn from ``noise_key`` (folded with the step index), instead of Euler steps.
        Scales, skipped blocks, CFG-star and the guidance schedule are traced inputs: changing them recompiles
        nothing unless the sequence of branch sets (which steps run CFG, which STG) changes.
        """
        with self._stage("denoising"):
            if (skip_initial_inference_steps or skip_final_inference_steps) and (
                    timesteps is not None or sigmas_and_timesteps is not None):
                raise ValueError("skip_initial_inference_steps / skip_final_inference_steps trim a num_inference_steps "
                                 "schedule; with explicit timesteps, pass the ones to run.")
            sigmas_, timesteps_ = sigmas_and_timesteps if sigmas_and_timesteps is not None else (
                self.sigmas_and_timesteps(grid, num_inference_steps, timesteps=timesteps, sigmas=sigmas))
            sigmas_, timesteps_ = sampling.trim_schedule(sigmas_, timesteps_, skip_initial_inference_steps,
                                                         skip_final_inference_steps)
            steps = len(timesteps_)
            scales, skip_masks, segments = sampling.guidance_plan(
                timesteps_, num_layers=self.transformer.config.num_layers, guidance_scale=guidance_scale,
                guidance_rescale=guidance_rescale, stg_scale=stg_scale, rescaling_scale=rescaling_scale,
                skip_block_list=skip_block_list, skip_layer_strategy=skip_layer_strategy,
                cfg_star_rescale=cfg_star_rescale, guidance_timesteps=guidance_timesteps, step_sigmas=sigmas_[:-1])
            if any(s.guidance.cfg for s in segments) and negative_prompt_embeds is None:
                raise ValueError("guidance_scale > 1 runs classifier-free guidance: pass negative_prompt_embeds and "
                                 "negative_prompt_attention_mask (or prompts, with a text encoder).")
            if (conditioning_latents is not None and conditioning_mask is None) or (
                    ancestral is not None and noise_key is None):
                raise ValueError("conditioning_latents need a conditioning_mask, and ancestral steps a noise_key.")
            sampler = sampling.Sampler(self.transformer, grid, segments, per_token_timesteps=per_token_timesteps,
                                       cache=cache, cache_exclude_conditioning=cache_exclude_conditioning,
                                       blend_conditioning=conditioning_latents is not None,
                                       ancestral=ancestral is not None)
            as_dtype = lambda x: None if x is None else jnp.asarray(x).astype(self.transformer.dtype)  # noqa: E731
            as_mask = lambda x: None if x is None else jnp.asarray(x).astype(jnp.int32)  # noqa: E731
            with sampling.StepBar(steps, self.progress) as bar:
                control = sampling.RunControl(bar)
                with sampling.controlled(control) as token:
                    inputs = sampling.SamplingInputs(
                        prompt_embeds=as_dtype(prompt_embeds), prompt_attention_mask=as_mask(prompt_attention_mask),
                        negative_prompt_embeds=as_dtype(negative_prompt_embeds),
                        negative_prompt_attention_mask=as_mask(negative_prompt_attention_mask),
                        sigmas=jnp.asarray(sigmas_), timesteps=jnp.asarray(timesteps_),
                        guidance={k: jnp.asarray(v) for k, v in scales.items()},
                        skip_masks=jnp.asarray(skip_masks) if any(s.guidance.stg for s in segments) else None,
                        rope_interpolation_scale=None if video_coords is not None else jnp.asarray(
                            self.rope_interpolation_scale(frame_rate), jnp.float32),
                        video_coords=None if video_coords is None else jnp.asarray(video_coords, jnp.float32),
                        conditioning_mask=None if conditioning_mask is None else jnp.asarray(conditioning_mask,
                                                                                             jnp.float32),
                        control_token=token,
                        image_cond_noise_scale=None if image_cond_noise_scale is None else jnp.float32(
                            image_cond_noise_scale),
                        noise_key=noise_key,
                        cache_threshold=None if cache is None else jnp.float32(
                            step_cache.threshold_or_default(cache, cache_threshold)),
                        conditioning_latents=None if conditioning_latents is None else jnp.asarray(
                            conditioning_latents, jnp.float32),
                        eta=None if ancestral is None else jnp.float32(ancestral.eta),
                        s_noise=None if ancestral is None else jnp.float32(ancestral.s_noise))
                    variables = self._variables("transformer", self.transformer_params)
                    # programs the cache can keep; with several processes, a host that can agree on a stop
                    if (persistent_cache_on() or jax.process_count() > 1) and not dry_running():
                        stepwise = dataclasses.replace(sampler, host_callbacks=False)
                        work = lambda: sampling.sample_stepwise(stepwise, variables, latents, inputs,  # noqa: E731
                                                                control)
                    else:
                        work = lambda: sampling.jitted_sample(sampler, variables, latents, inputs)  # noqa: E731
                    result = sampling.run(work, control, stage="denoising", total_steps=steps)
            self.last_cached_steps = None if cache is None or is_placeholder(result.cached_steps) else (
                np.asarray(result.cached_steps)[:int(result.steps)])
            if not is_placeholder(result.nonfinite_step) and int(result.nonfinite_step) >= 0:
                raise NonFiniteError(f"denoising produced NaN or Inf at step {int(result.nonfinite_step) + 1} of "
                                     f"{steps}; the run was stopped there (check the inputs, dtype and weights).")
            return result.latents

    def decode(self, latents: jax.Array, grid: sampling.LatentGrid, *, decode_timestep: float | Sequence[float] = 0.0,
               decode_noise_scale: float | Sequence[float] | None = None, key: jax.Array | None = None,
               tiling: Any = "auto", tone_map_compression_ratio: float = 0.0, size: tuple[int, int] | None = None,
               uint8: bool = False) -> np.ndarray:
        """Packed latents [B, N, C] -> frames np.ndarray [B, F, H, W, 3] float32 in [0, 1], or uint8
        (``decode_video``)."""
        return self.decode_video(sampling.unpack_latents(latents, grid), decode_timestep=decode_timestep,
                                 decode_noise_scale=decode_noise_scale, key=key, tiling=tiling,
                                 tone_map_compression_ratio=tone_map_compression_ratio, size=size, uint8=uint8)

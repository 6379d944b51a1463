"""Text-to-video: prompt -> T5 embeddings -> one compiled denoising loop -> timestep-conditioned VAE decode -> frames.

    pipe = LTXPipeline.from_pretrained("path/to/LTX-Video", dtype="bfloat16")
    frames = pipe(prompt="a red fox in the snow", height=512, width=768, num_frames=121, seed=0)
    # np.ndarray [B, F, H, W, 3] in [0, 1]; pipe.last_timings has the time of each stage

Arguments keep the names and defaults of diffusers' ``LTXPipeline.__call__`` (plus ``seed``), so code written for
diffusers reads the same here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax import scheduler as sched
from ltx_jax.presets import PIPELINE_PRESETS, PipelinePreset, detect_preset

logger = logging.getLogger("ltx_jax")

VAE_SPATIAL_COMPRESSION = 32
VAE_TEMPORAL_COMPRESSION = 8
# Above this many output pixels (frames x height x width) the VAE decodes in tiles by default. The decoder's widest
# activations hold ~128 channels at full resolution, several alive at once: 768x512x49 = 19M pixels is ~5 GB per
# bf16 activation, past which an untiled decode stops fitting next to the 13B transformer on an 80 GB card.
AUTO_TILING_PIXELS = 768 * 512 * 49
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ltx_jax", "jax_compilation_cache")


def enable_compilation_cache(cache_dir: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache, so a second process with the same shapes skips compilation."""
    cache_dir = cache_dir or os.environ.get("LTX_JAX_CACHE_DIR", DEFAULT_CACHE_DIR)
    os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache_dir


@dataclasses.dataclass
class StageTimings:
    """Seconds spent in each stage of the last call (each stage blocks on its result before the clock stops)."""

    text_encoding: float = 0.0
    denoising: float = 0.0
    decoding: float = 0.0
    total: float = 0.0

    def __str__(self) -> str:
        return (f"text encoding {self.text_encoding:.2f} s, denoising {self.denoising:.2f} s, "
                f"decoding {self.decoding:.2f} s, total {self.total:.2f} s")


class _StepProgress:
    """A tqdm bar fed by the compiled loop's host callback."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="denoising", unit="step", leave=False)

    def __call__(self, step_index: int) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _decode_program(vae, vae_params, latents, timestep, noise_scale, key, tiling):
    """Packed latents -> frames in [0, 1]: denormalise, add decode noise, decode, map [-1, 1] -> [0, 1]."""
    latents = vae.apply({"params": vae_params}, latents, method="denormalize_latents")
    if timestep is not None:
        noise = jax.random.normal(key, latents.shape, jnp.float32)
        scale = noise_scale[:, None, None, None, None]
        latents = (1 - scale) * latents + scale * noise
    latents = latents.astype(vae.dtype)
    noise_key = jax.random.fold_in(key, 1)  # the decoder's own noise injection (0.9.1 VAEs)
    video = vae.apply({"params": vae_params}, latents, timestep, method="decode", key=noise_key, tiling=tiling)
    return jnp.clip(video.astype(jnp.float32) / 2 + 0.5, 0.0, 1.0)


_jitted_decode = jax.jit(_decode_program, static_argnames=("vae", "tiling"))


class LTXPipeline:
    """LTX-Video text-to-video.

    Attributes:
      transformer, transformer_params: the DiT (``weight_conversion.load_transformer``).
      vae, vae_params: the causal video VAE (``weight_conversion.load_vae``).
      prompt_encoder: tokenizer + T5 (``ltx_jax.text_encoding.PromptEncoder``); None when only embeddings are passed.
      scheduler_config: the flow-matching scheduler config.
      preset: defaults of the released checkpoint (steps, guidance, timesteps, decode noise); None = diffusers' defaults.
      last_timings: ``StageTimings`` of the last call.
    """

    def __init__(self, transformer, transformer_params, vae, vae_params, prompt_encoder=None,
                 scheduler_config: sched.FlowMatchSchedulerConfig = sched.LTX_SCHEDULER,
                 preset: PipelinePreset | None = None, progress: bool = True):
        self.transformer = transformer
        self.transformer_params = transformer_params
        self.vae = vae
        self.vae_params = vae_params
        self.prompt_encoder = prompt_encoder
        self.scheduler_config = scheduler_config
        self.preset = preset
        self.progress = progress
        self.last_timings = StageTimings()

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: Any = "bfloat16", *, text_encoder_path: str | None = None,
                        preset: str | None = None, compilation_cache: bool = True, cache_dir: str | None = None,
                        text_encoder_dtype: Any = None, progress: bool = True) -> "LTXPipeline":
        """Loads every component.

        Args:
          path: a diffusers-layout folder (``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``,
            ``tokenizer/``, ``scheduler/``), a Lightricks single file (``ltxv-*.safetensors``, transformer + VAE;
            give ``text_encoder_path`` for T5 and its tokenizer), a folder of Orbax checkpoints with the same
            sub-folder names, or a hub id such as ``Lightricks/LTX-Video`` (fetched when online).
          dtype: "bfloat16" (GPU) or "float32" (parity checks, CPU).
          preset: a name from ``PIPELINE_PRESETS``; detected from the checkpoint when None.
          compilation_cache: turn on JAX's persistent compilation cache (``cache_dir`` or ``$LTX_JAX_CACHE_DIR``).
        """
        from ltx_jax.text_encoding import PromptEncoder
        from weight_conversion import load_text_encoder, load_transformer, load_vae
        from ltx_jax.text_encoding import load_tokenizer

        if compilation_cache:
            enable_compilation_cache(cache_dir)
        path = _resolve_path(os.fspath(path))
        dtype = jnp.dtype(dtype)
        text_dtype = jnp.dtype(text_encoder_dtype or dtype)
        single_file = os.path.isfile(path)
        root = os.path.dirname(path) if single_file else path
        transformer, transformer_params = load_transformer(path if single_file else _sub(path, "transformer"), dtype)
        vae, vae_params = load_vae(path if single_file else _sub(path, "vae"), dtype)
        te_root = text_encoder_path or (root if os.path.isdir(os.path.join(root, "text_encoder")) else None)
        prompt_encoder = None
        if te_root is not None:
            te_module, te_params = load_text_encoder(_sub(te_root, "text_encoder"), text_dtype)
            prompt_encoder = PromptEncoder(load_tokenizer(te_root), te_module, te_params)
        else:
            logger.warning("No text_encoder/ found next to %s: pass prompt_embeds, or text_encoder_path=.", path)
        scheduler_config = sched.LTX_SCHEDULER
        sched_json = os.path.join(root, "scheduler", "scheduler_config.json")
        if not single_file and os.path.exists(sched_json):
            scheduler_config = sched.FlowMatchSchedulerConfig.from_json(sched_json)
        chosen = PIPELINE_PRESETS[preset] if preset else detect_preset(path, transformer.config, vae.config)
        if chosen is not None and chosen.scheduler is not None and not os.path.exists(sched_json):
            scheduler_config = chosen.scheduler
        return cls(transformer, transformer_params, vae, vae_params, prompt_encoder, scheduler_config, chosen, progress)

    # ------------------------------------------------------------------------------------------ prompts

    def encode_prompt(self, prompt, negative_prompt, do_guidance: bool, prompt_embeds=None, prompt_attention_mask=None,
                      negative_prompt_embeds=None, negative_prompt_attention_mask=None, max_sequence_length: int = 128):
        """Returns (embeds [G*B, T, E], mask [G*B, T]) with [uncond; cond] stacked when guidance is on."""
        if prompt_embeds is None:
            if self.prompt_encoder is None:
                raise ValueError("This pipeline has no text encoder: pass prompt_embeds and prompt_attention_mask.")
            prompt_embeds, prompt_attention_mask = self.prompt_encoder(prompt, max_sequence_length)
        batch = prompt_embeds.shape[0]
        if not do_guidance:
            return jnp.asarray(prompt_embeds), jnp.asarray(prompt_attention_mask)
        if negative_prompt_embeds is None:
            negative = negative_prompt if negative_prompt is not None else ""
            negative = [negative] * batch if isinstance(negative, str) else list(negative)
            if self.prompt_encoder is None:
                raise ValueError("Guidance needs negative_prompt_embeds when the pipeline has no text encoder.")
            negative_prompt_embeds, negative_prompt_attention_mask = self.prompt_encoder(negative, max_sequence_length)
        embeds = jnp.concatenate([jnp.asarray(negative_prompt_embeds), jnp.asarray(prompt_embeds)], axis=0)
        mask = jnp.concatenate([jnp.asarray(negative_prompt_attention_mask), jnp.asarray(prompt_attention_mask)], axis=0)
        return embeds, mask

    # ------------------------------------------------------------------------------------------ generation

    def __call__(
        self,
        prompt: str | Sequence[str] | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        height: int = 512,
        width: int = 704,
        num_frames: int = 161,
        frame_rate: float = 25,
        num_inference_steps: int | None = None,
        timesteps: Sequence[float] | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float | None = None,
        num_videos_per_prompt: int = 1,
        seed: int = 0,
        latents=None,
        prompt_embeds=None,
        prompt_attention_mask=None,
        negative_prompt_embeds=None,
        negative_prompt_attention_mask=None,
        decode_timestep: float | Sequence[float] | None = None,
        decode_noise_scale: float | Sequence[float] | None = None,
        output_type: str = "np",
        max_sequence_length: int = 128,
        tiling: Any = "auto",
    ) -> np.ndarray:
        """Generates videos.

        Defaults left as None come from the checkpoint's preset, else diffusers' ``LTXPipeline`` defaults
        (50 steps, guidance 3, rescale 0, decode_timestep 0, decode_noise_scale = decode_timestep).

        Args:
          height, width: multiples of 32; num_frames: 8k + 1.
          timesteps: explicit timesteps (0-1000) for distilled checkpoints; replaces num_inference_steps.
          seed: seeds the initial noise and the decode noise.
          latents: initial packed latents [B, N, 128] (or channels-last [B, F, H, W, 128]), float32.
          tiling: "auto" (tiles above ``AUTO_TILING_PIXELS``), None/False (whole), True (diffusers' default
            tiles), or a dict of diffusers' ``enable_tiling`` arguments.
          output_type: "np" -> frames [B, F, H, W, 3] float32 in [0, 1]; "latent" -> packed latents [B, N, 128].
        """
        start = time.perf_counter()
        preset = self.preset or PipelinePreset(name="diffusers-defaults")
        if timesteps is None and num_inference_steps is None:  # the preset's schedule (a distilled one's timesteps)
            timesteps, num_inference_steps = preset.timesteps, preset.num_inference_steps
        if timesteps is not None:
            num_inference_steps = len(timesteps)
        guidance_scale = preset.guidance_scale if guidance_scale is None else guidance_scale
        guidance_rescale = preset.guidance_rescale if guidance_rescale is None else guidance_rescale
        decode_timestep = preset.decode_timestep if decode_timestep is None else decode_timestep
        decode_noise_scale = preset.decode_noise_scale if decode_noise_scale is None else decode_noise_scale

        batch = self._check_inputs(prompt, negative_prompt, height, width, num_frames, num_inference_steps, timesteps,
                                   prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                   negative_prompt_attention_mask, output_type, num_videos_per_prompt)
        do_guidance = guidance_scale > 1.0
        lat_f = (num_frames - 1) // VAE_TEMPORAL_COMPRESSION + 1
        lat_h, lat_w = height // VAE_SPATIAL_COMPRESSION, width // VAE_SPATIAL_COMPRESSION
        num_tokens = lat_f * lat_h * lat_w

        # 1. Text.
        t0 = time.perf_counter()
        if prompt is not None and num_videos_per_prompt > 1:
            prompt = [p for p in ([prompt] if isinstance(prompt, str) else prompt) for _ in range(num_videos_per_prompt)]
            if negative_prompt is not None and not isinstance(negative_prompt, str):
                negative_prompt = [p for p in negative_prompt for _ in range(num_videos_per_prompt)]
        embeds, mask = self.encode_prompt(prompt, negative_prompt, do_guidance, prompt_embeds, prompt_attention_mask,
                                          negative_prompt_embeds, negative_prompt_attention_mask, max_sequence_length)
        embeds = jax.block_until_ready(embeds.astype(self.transformer.dtype))
        batch = embeds.shape[0] // (2 if do_guidance else 1)
        t1 = time.perf_counter()

        # 2. Denoising, one compiled program.
        noise_key, decode_key = jax.random.split(jax.random.PRNGKey(seed))
        channels = self.transformer.config.in_channels
        if latents is None:
            latents = jax.random.normal(noise_key, (batch, num_tokens, channels), jnp.float32)
        else:
            latents = jnp.asarray(latents, jnp.float32)
            if latents.ndim == 5:
                latents = sampling.pack_latents(latents)
            if latents.shape != (batch, num_tokens, channels):
                raise ValueError(f"latents have shape {latents.shape}; expected packed [B, N, C] = "
                                 f"{(batch, num_tokens, channels)} for {num_frames}x{height}x{width}.")
        sigmas, ts = sampling.schedule(self.scheduler_config, num_inference_steps, num_tokens, timesteps=timesteps)
        inputs = sampling.SamplingInputs(
            latents=latents, prompt_embeds=embeds, prompt_attention_mask=mask.astype(jnp.int32),
            sigmas=jnp.asarray(sigmas, jnp.float32), timesteps=jnp.asarray(ts, jnp.float32),
            guidance_scale=jnp.float32(guidance_scale), guidance_rescale=jnp.float32(guidance_rescale),
            rope_interpolation_scale=jnp.asarray(
                [VAE_TEMPORAL_COMPRESSION / frame_rate, VAE_SPATIAL_COMPRESSION, VAE_SPATIAL_COMPRESSION], jnp.float32),
        )
        sampler = sampling.Sampler(self.transformer, lat_f, lat_h, lat_w, do_guidance, guidance_rescale > 0,
                                   report_progress=self.progress)
        progress = _StepProgress(len(ts), self.progress)
        sampling.set_progress_sink(progress)
        try:
            out = jax.block_until_ready(sampling.jitted_sample(sampler, self.transformer_params, inputs.latents, inputs))
        finally:
            sampling.set_progress_sink(None)
            progress.close()
        t2 = time.perf_counter()
        if output_type == "latent":
            self.last_timings = StageTimings(t1 - t0, t2 - t1, 0.0, time.perf_counter() - start)
            return np.asarray(out)

        # 3. Decode.
        latents5 = sampling.unpack_latents(out, lat_f, lat_h, lat_w)  # [B, F, H, W, C]
        timestep = None
        noise_scale = None
        if self.vae.config.timestep_conditioning:
            dt = np.broadcast_to(np.asarray(decode_timestep, np.float32), (batch,))
            dns = dt if decode_noise_scale is None else np.broadcast_to(np.asarray(decode_noise_scale, np.float32), (batch,))
            timestep, noise_scale = jnp.asarray(dt), jnp.asarray(dns)
        frames = _jitted_decode(self.vae, self.vae_params, latents5, timestep, noise_scale, decode_key,
                                self._tiling(tiling, num_frames, height, width))
        frames = np.asarray(jax.block_until_ready(frames))
        t3 = time.perf_counter()
        self.last_timings = StageTimings(t1 - t0, t2 - t1, t3 - t2, t3 - start)
        return frames

    # ------------------------------------------------------------------------------------------ helpers

    @staticmethod
    def _tiling(tiling, num_frames: int, height: int, width: int):
        """Resolves the ``tiling`` argument to a hashable ``VAETiling`` (or None for a whole decode)."""
        from ltx_jax.models.vae import VAETiling

        if isinstance(tiling, str):
            if tiling != "auto":
                raise ValueError(f"tiling={tiling!r}; use 'auto', True, False/None, or a dict of enable_tiling arguments.")
            tiling = num_frames * height * width > AUTO_TILING_PIXELS
        return VAETiling.resolve(tiling)

    def _check_inputs(self, prompt, negative_prompt, height, width, num_frames, num_inference_steps, timesteps,
                      prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask,
                      output_type, num_videos_per_prompt) -> int:
        def nearest(value: int, multiple: int, offset: int = 0) -> int:
            return max(multiple + offset, int(round((value - offset) / multiple)) * multiple + offset)

        if height % 32 or width % 32 or height <= 0 or width <= 0:
            raise ValueError(f"height and width must be positive multiples of 32, got {height}x{width}; nearest valid: "
                             f"{nearest(height, 32)}x{nearest(width, 32)}.")
        if num_frames < 1 or (num_frames - 1) % 8:
            raise ValueError(f"num_frames must be 8k + 1 (1, 9, 17, ..., 121, ...), got {num_frames}; nearest valid: "
                             f"{nearest(num_frames, 8, 1)}.")
        if timesteps is None and (num_inference_steps is None or num_inference_steps <= 0):
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps}; e.g. 40 "
                             "(or 8 with a distilled checkpoint's timesteps).")
        if timesteps is not None and len(timesteps) == 0:
            raise ValueError("timesteps is empty; pass at least one timestep or use num_inference_steps.")
        if output_type not in ("np", "latent"):
            raise ValueError(f"output_type={output_type!r}; use 'np' (frames in [0, 1]) or 'latent'.")
        if num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be >= 1, got {num_videos_per_prompt}.")
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("Pass either prompt or prompt_embeds, not both.")
        if prompt is None and prompt_embeds is None:
            raise ValueError("Pass prompt (a string or a list of strings) or prompt_embeds with prompt_attention_mask.")
        if prompt is not None and not isinstance(prompt, (str, list, tuple)):
            raise ValueError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}.")
        if prompt_embeds is not None:
            if prompt_attention_mask is None:
                raise ValueError("prompt_embeds needs prompt_attention_mask [B, T] (1 = real token).")
            if tuple(prompt_attention_mask.shape) != tuple(prompt_embeds.shape[:2]):
                raise ValueError(f"prompt_attention_mask has shape {tuple(prompt_attention_mask.shape)} but "
                                 f"prompt_embeds is {tuple(prompt_embeds.shape)}: the mask must be [B, T] = "
                                 f"{tuple(prompt_embeds.shape[:2])}.")
        if negative_prompt_embeds is not None:
            if negative_prompt_attention_mask is None:
                raise ValueError("negative_prompt_embeds needs negative_prompt_attention_mask [B, T].")
            if prompt_embeds is not None and tuple(negative_prompt_embeds.shape) != tuple(prompt_embeds.shape):
                raise ValueError(f"negative_prompt_embeds has shape {tuple(negative_prompt_embeds.shape)} but "
                                 f"prompt_embeds is {tuple(prompt_embeds.shape)}; they must match.")
            if tuple(negative_prompt_attention_mask.shape) != tuple(negative_prompt_embeds.shape[:2]):
                raise ValueError(f"negative_prompt_attention_mask has shape {tuple(negative_prompt_attention_mask.shape)}; "
                                 f"expected {tuple(negative_prompt_embeds.shape[:2])}.")
        if prompt is not None and negative_prompt is not None and not isinstance(negative_prompt, str):
            n_prompts = 1 if isinstance(prompt, str) else len(prompt)
            if len(negative_prompt) != n_prompts:
                raise ValueError(f"negative_prompt has {len(negative_prompt)} entries but prompt has {n_prompts}; give one "
                                 "negative prompt per prompt, or a single string for all.")
        if prompt is not None:
            return 1 if isinstance(prompt, str) else len(prompt)
        return int(prompt_embeds.shape[0])


def _sub(path: str, name: str) -> str:
    sub = os.path.join(path, name)
    return sub if os.path.isdir(sub) else path


def _resolve_path(path: str) -> str:
    """A local path as is; a hub id (``org/name``) fetched with huggingface_hub when it is not a local path."""
    if os.path.exists(path):
        return path
    if path.count("/") == 1 and not path.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download
        except ImportError as e:  # pragma: no cover
            raise FileNotFoundError(f"{path} is not a local path and huggingface_hub is not installed.") from e
        logger.info("fetching %s from the hub", path)
        return snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.model", "tokenizer*/*",
                                                       "*/spiece.model"])
    raise FileNotFoundError(f"{path} does not exist (and is not a hub id like Lightricks/LTX-Video).")


def write_model_index(path: str) -> None:
    """Writes a minimal diffusers ``model_index.json`` (used when saving a tiny random pipeline)."""
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump({"_class_name": "LTXPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                   "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
                   "transformer": ["diffusers", "LTXVideoTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLLTXVideo"]},
                  f, indent=2)

"""LTX-2's generation core: diffusers' LTX-2 pipelines (``LTX2Pipeline``, ``LTX2ImageToVideoPipeline``,
``LTX2ConditionPipeline``) from prompt embeddings and prepared latents on, as one compiled program
(``ltx2_program``: connectors -> joint denoising loop -> video and audio decode).

    core = LTX2Core(transformer, connectors, vae, audio_vae, vocoder, scheduler_config)   # modules: static
    params = dict(transformer=..., connectors=..., vae=..., audio_vae=..., vocoder=...)     # the loaders' trees
    out = core(params, prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=ne,
               negative_prompt_attention_mask=nm, latents=x, audio_latents=a, height=512, width=768,
               num_frames=121, frame_rate=24.0, num_inference_steps=30, guidance_scale=3.0, ...)
    out.frames  # [B, F, H, W, 3] float32 in [0, 1] (diffusers' output_type="np")
    out.audio   # [B, channels, samples] float32 (diffusers' ``vocoder(mel)``)

Axis letters: B batch (videos), N video tokens (N' = N + K with K appended keyframe tokens), C latent channels,
M audio tokens, D audio token width (L M'), T text tokens, E the Gemma stack's width.

What runs, in diffusers' order:
  1. the text connectors on ``[negative, positive]`` (``[positive]`` without CFG), padding on the left;
  2. the schedule, on the host: ``sigmas = linspace(1, 1/S, S)`` (or the given ones) shifted by
     ``mu = calculate_shift(N' video tokens)`` (``ltx_jax.scheduler``); the audio uses the same schedule;
  3. the initial latents: video ``noise * s + latents * (1 - s)`` with ``s = noise_scale (1 - mask)`` per token
     where ``noise`` is given (diffusers' ``_create_noised_state`` and the conditioning pipelines' mixing), else the
     latents as given; audio latents normalised with the audio VAE's statistics then noised alike, or fresh audio
     noise as it is;
  4. the transformer's step-invariant half (``prepare``) once, then one ``lax.fori_loop`` over the steps: ONE
     batched forward over every guidance branch (CFG, STG, modality; ``ltx2_program``), per-token video timesteps
     ``t (1 - mask)`` with a conditioning, x0-space guidance per modality, the conditioning blend, Euler steps;
  5. decode (``output_type="np"``): video tokens unpacked, a timestep-conditioned VAE's decode noise mixed in,
     denormalised, decoded, ``x / 2 + 0.5`` clipped to [0, 1]; audio denormalised, unpacked, ``audio_vae.decode``,
     ``vocoder``. ``output_type="latent"``: the denormalised latents as diffusers returns them.

Static (the compiled program's key, ``ltx2_program.Plan``): the modules, the latent grid, the step count, which
guidance branches run (CFG where either modality's ``guidance_scale > 1``, STG where a ``stg_scale > 0``, modality
isolation where a ``modality_scale > 1``, as diffusers decides), the STG blocks, ``use_cross_timestep``, whether
there is noise / a conditioning / decode noise, the keyframe token count and the output type. Traced: the text,
latents, noise, masks, schedule, every scale and the decode timestep, so a second call that changes only those
compiles nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax import scheduler as sched
from ltx_jax.models import as_variables
from ltx_jax.pipelines import ltx2_program
from ltx_jax.models.vae_tiling import VAETiling
from ltx_jax.pipelines.ltx2_latents import LTX2Grid, ltx2_grid
from ltx_jax.pipelines.reporting import NonFiniteError
from ltx_jax.pipelines.tiling_policy import auto_tiling
from ltx_jax.programs import is_placeholder
from ltx_jax.sampling.ltx2_guidance import LTX2Guidance

COMPONENTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder")
OUTPUT_TYPES = ("np", "latent")


class LTX2CoreOutput(NamedTuple):
    """diffusers' ``LTX2PipelineOutput(frames, audio)``: for ``output_type="np"`` frames [B, F, H, W, 3] float32 in
    [0, 1] and audio [B, channels, samples]; for ``"latent"`` video latents [B, C, F, H, W] and audio latents
    [B, L, T', M'], both denormalised (diffusers' layouts)."""

    frames: Any
    audio: Any


@dataclasses.dataclass(frozen=True)
class LTX2Conditioning:
    """Per-token conditioning of the packed video latents (diffusers' image-to-video and condition pipelines).

    Attributes:
      mask: [B, N'] in [0, 1]: 1 keeps the token at its clean value, 0 denoises it, between: a partial strength
        (the token's timestep is ``t (1 - mask)`` and its x0 blends toward ``clean_latents`` by ``mask``).
      clean_latents: [B, N', C] the clean values (normalised, packed; zeros where the mask is 0).
      keyframe_coords: [B, 3, K, 2] RoPE bounds of the K keyframe tokens appended after the grid's N (the last K of
        N'), or None without appended tokens.
    """

    mask: Any
    clean_latents: Any
    keyframe_coords: Any = None

    @property
    def keyframe_tokens(self) -> int:
        return 0 if self.keyframe_coords is None else int(np.shape(self.keyframe_coords)[2])


@dataclasses.dataclass(frozen=True)
class LTX2Core:
    """The loaded LTX-2 modules and the scheduler config (frozen, hashable: the compiled program's key).

    Attributes:
      transformer: ``LTX2VideoTransformer3DModel`` (``weight_conversion.load_transformer``).
      connectors: ``LTX2TextConnectors`` (``load_text_connectors``).
      vae: ``AutoencoderKLLTX2Video`` (``load_vae``); audio_vae: ``AutoencoderKLLTX2Audio`` (``load_audio_vae``).
      vocoder: ``LTX2Vocoder`` or ``LTX2VocoderWithBWE`` (``load_vocoder``).
      scheduler: ``ltx_jax.scheduler.FlowMatchSchedulerConfig`` (the checkpoint's ``scheduler_config.json``).
    """

    transformer: Any
    connectors: Any
    vae: Any
    audio_vae: Any
    vocoder: Any
    scheduler: sched.FlowMatchSchedulerConfig

    def grid(self, *, height: int, width: int, num_frames: int, frame_rate: float,
             motion_speed: float = 1.0) -> LTX2Grid:
        """The latent grid of a generation (``ltx2_latents.ltx2_grid``)."""
        return ltx2_grid(self.vae.config, self.audio_vae.config, height=height, width=width, num_frames=num_frames,
                         frame_rate=frame_rate, motion_speed=motion_speed)

    def latent_shapes(self, grid: LTX2Grid, batch: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Shapes of the packed initial latents: video [B, N, C pt p p] and audio [B, T', L M']."""
        t = self.transformer.config
        n = (grid.frames // t.patch_size_t) * (grid.height // t.patch_size) * (grid.width // t.patch_size)
        return (batch, n, t.in_channels), (batch, grid.audio_frames, t.audio_in_channels)

    def schedule(self, num_tokens: int, num_inference_steps: int,
                 sigmas: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(sigmas [S + 1], timesteps [S]) float32, as the LTX-2 pipelines set them (``sigmas = linspace(1, 1/S, S)``
        unless given, as diffusers' ``sigmas=``: S values, e.g. the distilled models' list; ``mu`` from the packed
        video token count; the audio shares them)."""
        cfg = self.scheduler
        mu = sched.calculate_shift(num_tokens, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift,
                                   cfg.max_shift)
        if sigmas is None:
            sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        elif len(sigmas) != num_inference_steps:
            raise ValueError(f"{len(sigmas)} sigmas for num_inference_steps={num_inference_steps}; give one per step.")
        sigmas = np.asarray(sigmas, np.float64)
        return sched.sigmas_and_timesteps(cfg, num_inference_steps, mu=mu, sigmas=sigmas)

    def __call__(
        self,
        params: dict,
        *,
        prompt_embeds,
        prompt_attention_mask,
        negative_prompt_embeds=None,
        negative_prompt_attention_mask=None,
        latents,
        audio_latents=None,
        noise=None,
        audio_noise=None,
        noise_scale: float = 0.0,
        audio_noise_scale: float | None = None,
        conditioning: LTX2Conditioning | None = None,
        height: int = 512,
        width: int = 768,
        num_frames: int = 121,
        frame_rate: float = 24.0,
        motion_speed: float = 1.0,
        num_inference_steps: int = 30,
        sigmas: Sequence[float] | None = None,
        guidance_scale: float = 3.0,
        stg_scale: float = 1.0,
        modality_scale: float = 3.0,
        guidance_rescale: float = 0.7,
        audio_guidance_scale: float | None = 7.0,
        audio_stg_scale: float | None = 1.0,
        audio_modality_scale: float | None = 3.0,
        audio_guidance_rescale: float | None = 0.7,
        spatio_temporal_guidance_blocks: Sequence[int] | None = (28,),
        use_cross_timestep: bool = True,
        decode_timestep: float | Sequence[float] = 0.0,
        decode_noise_scale: float | Sequence[float] | None = None,
        decode_noise=None,
        output_type: str = "np",
        tiling: Any = "auto",
        progress: bool = False,
    ) -> LTX2CoreOutput:
        """Generates video and audio from embeddings and prepared latents (defaults are diffusers').

        Args:
          params: ``{component: param tree (or variables)}`` for ``COMPONENTS``.
          prompt_embeds, negative_prompt_embeds: [B, T, E] Gemma's stacked hidden states, flattened as diffusers'
            ``encode_prompt`` returns them; the negative ones are required with CFG.
          prompt_attention_mask, negative_prompt_attention_mask: [B, T] 1 = token, 0 = (left) padding.
          latents: [B, N', C] packed video latents in the model's (normalised) space: the start itself, or what
            ``noise`` is mixed into (zeros for pure noise).
          audio_latents: [B, T', D] packed audio latents, raw (normalised here, as diffusers does), or None to start
            from ``audio_noise`` as it is.
          noise, audio_noise: [B, N', C] / [B, T', D] standard normal noise mixed in (module docstring, step 3), or
            None (no mixing; the audio then starts from ``audio_latents``).
          noise_scale, audio_noise_scale: the noise levels of the mixing (traced; the audio's None: noise_scale).
          conditioning: ``LTX2Conditioning`` (image-to-video, keyframes) or None.
          height, width, num_frames, frame_rate, motion_speed: the output video; they fix the latent grid and the
            audio length (``grid``).
          num_inference_steps: S (static). sigmas: S custom sigmas (traced), else the default.
          guidance_scale, stg_scale, modality_scale, guidance_rescale: the video's scales; audio_*: the audio's,
            a falsy value taking the video's (diffusers' ``audio_x = audio_x or x``).
          spatio_temporal_guidance_blocks: the blocks STG perturbs (needed when a ``stg_scale > 0``).
          use_cross_timestep: LTX-2.3's cross-modal timestep (diffusers' default True).
          decode_timestep, decode_noise_scale: per video or one value; used by timestep-conditioned VAEs only.
          decode_noise: [B, F, H, W, C] standard normal noise (channels-last) for a non-zero decode_noise_scale.
          output_type: "np" (decoded) or "latent" (``LTX2CoreOutput``).
          tiling: the video decode's tiling: "auto" (whole where the device's free memory holds it, else the fewest
            uniform tiles; ``tiling_policy.auto_tiling``), None / False (whole), True (diffusers' tiles) or a
            ``VAETiling`` / dict of its fields (static).
          progress: a progress bar over the denoising steps.
        Returns:
          ``LTX2CoreOutput``.
        """
        missing = [c for c in COMPONENTS if c not in params]
        if missing:
            raise ValueError(f"params lacks {missing}; pass one tree per component of {COMPONENTS}.")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r}; expected one of {OUTPUT_TYPES}.")
        video = dict(guidance_scale=guidance_scale, stg_scale=stg_scale, modality_scale=modality_scale,
                     guidance_rescale=guidance_rescale)
        given = dict(guidance_scale=audio_guidance_scale, stg_scale=audio_stg_scale,
                     modality_scale=audio_modality_scale, guidance_rescale=audio_guidance_rescale)
        audio = {k: float(given[k] or video[k]) for k in video}
        video = {k: float(v) for k, v in video.items()}
        guidance = LTX2Guidance(cfg=video["guidance_scale"] > 1 or audio["guidance_scale"] > 1,
                                stg=video["stg_scale"] > 0 or audio["stg_scale"] > 0,
                                modality=video["modality_scale"] > 1 or audio["modality_scale"] > 1)
        blocks = tuple(int(b) for b in spatio_temporal_guidance_blocks or ())
        if guidance.stg and not blocks:
            raise ValueError("stg_scale > 0 needs spatio_temporal_guidance_blocks (e.g. [29] for LTX-2.0, [28] for "
                             "LTX-2.3), as diffusers' check_inputs requires.")

        grid = self.grid(height=height, width=width, num_frames=num_frames, frame_rate=frame_rate,
                         motion_speed=motion_speed)
        keyframes = 0 if conditioning is None else conditioning.keyframe_tokens
        arrays = self._latent_inputs(grid, latents, audio_latents, noise, audio_noise, conditioning, keyframes)
        batch, tokens = arrays["latents"].shape[:2]
        text = {"pos": (prompt_embeds, prompt_attention_mask)}
        if guidance.cfg:
            if negative_prompt_embeds is None or negative_prompt_attention_mask is None:
                raise ValueError("guidance_scale > 1 needs negative_prompt_embeds and negative_prompt_attention_mask.")
            text["neg"] = (negative_prompt_embeds, negative_prompt_attention_mask)
        text = {k: (jnp.asarray(e), jnp.asarray(m, jnp.int32)) for k, (e, m) in text.items()}  # Gemma's dtype
        if any(e.shape[0] != batch or m.shape != e.shape[:2] for e, m in text.values()):
            raise ValueError(f"prompt embeddings must be [B={batch}, T, E] with masks [B, T].")
        sigmas, timesteps = self.schedule(tokens, num_inference_steps, sigmas)

        per_video = lambda v: np.broadcast_to(np.asarray(v, np.float32).reshape(-1), (batch,))  # noqa: E731
        decode_t = per_video(decode_timestep)
        decode_scale = decode_t if decode_noise_scale is None else per_video(decode_noise_scale)
        mix = bool(output_type == "np" and self.vae.config.timestep_conditioning and np.any(decode_scale != 0))
        if mix and decode_noise is None:
            raise ValueError("a non-zero decode_noise_scale (or decode_timestep) needs decode_noise [B, F, H, W, C].")
        inputs = dict(
            arrays, text=text, sigmas=jnp.asarray(sigmas), timesteps=jnp.asarray(timesteps),
            noise_scale=jnp.float32(noise_scale),
            audio_noise_scale=jnp.float32(noise_scale if audio_noise_scale is None else audio_noise_scale),
            video_scales={k: jnp.float32(v) for k, v in video.items()},
            audio_scales={k: jnp.float32(v) for k, v in audio.items()},
            decode_timestep=jnp.asarray(decode_t), decode_noise_scale=jnp.asarray(decode_scale),
            decode_noise=jnp.asarray(decode_noise, jnp.float32) if mix else None)
        if tiling == "auto":
            shape = (batch, grid.frames, grid.height, grid.width, self.vae.config.latent_channels)
            tiling = auto_tiling(self.vae, shape, self.vae.dtype) if output_type == "np" else None
        plan = ltx2_program.Plan(
            self, grid, guidance, blocks if guidance.stg else (), bool(use_cross_timestep), mix,
            conditioned=conditioning is not None, keyframe_tokens=keyframes, noised=noise is not None,
            audio_given=audio_latents is not None, audio_noised=audio_latents is not None and audio_noise is not None,
            output_latents=output_type == "latent", tiling=VAETiling.resolve(tiling))
        variables = {c: as_variables(params[c]) for c in COMPONENTS}
        steps = len(timesteps)
        with sampling.StepBar(steps, progress) as bar:  # Ctrl-C / SIGTERM stop the loop within a step
            control = sampling.RunControl(bar)
            with sampling.controlled(control) as token:
                inputs["control_token"] = token
                frames, audio_out, _, nonfinite = sampling.run(
                    lambda: ltx2_program.generate(plan=plan, variables=variables, inputs=inputs), control,
                    stage="denoising", total_steps=steps)
        if not is_placeholder(nonfinite) and int(nonfinite) >= 0:
            raise NonFiniteError(f"denoising produced NaN or Inf at step {int(nonfinite) + 1} of {steps}; the run "
                                 "was stopped there (check the inputs, dtype and weights).")
        return LTX2CoreOutput(frames, audio_out)

    def _latent_inputs(self, grid, latents, audio_latents, noise, audio_noise, conditioning, keyframes) -> dict:
        """The latent-side arrays, their shapes checked against the grid (one ValueError line)."""
        latents = jnp.asarray(latents, jnp.float32)
        batch = latents.shape[0]
        want_video, want_audio = self.latent_shapes(grid, batch)
        want_video = (batch, want_video[1] + keyframes, want_video[2])

        def checked(name, x, shape):
            if x is None:
                return None
            x = jnp.asarray(x, jnp.float32)
            if tuple(x.shape) != tuple(shape):
                raise ValueError(f"{name} has shape {tuple(x.shape)}; expected {tuple(shape)} for the grid {grid} "
                                 f"(packed, as diffusers packs them).")
            return x

        if audio_latents is None and audio_noise is None:
            raise ValueError("give audio_latents or audio_noise (the start of the audio).")
        out = dict(latents=checked("latents", latents, want_video), noise=checked("noise", noise, want_video),
                   audio_latents=checked("audio_latents", audio_latents, want_audio),
                   audio_noise=checked("audio_noise", audio_noise, want_audio))
        if conditioning is not None:
            out["conditioning_mask"] = checked("conditioning.mask", conditioning.mask, want_video[:2])
            out["clean_latents"] = checked("conditioning.clean_latents", conditioning.clean_latents, want_video)
            if keyframes:
                out["keyframe_coords"] = checked("conditioning.keyframe_coords", conditioning.keyframe_coords,
                                                 (batch, 3, keyframes, 2))
        return out

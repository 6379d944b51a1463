"""LTX-2's text-to-video-with-sound core: diffusers' ``LTX2Pipeline.__call__`` from prompt embeddings on, as one
compiled program (connectors -> joint denoising loop -> video and audio decode).

    core = LTX2Core(transformer, connectors, vae, audio_vae, vocoder, scheduler_config)   # modules: static
    params = dict(transformer=..., connectors=..., vae=..., audio_vae=..., vocoder=...)     # the loaders' trees
    out = core(params, prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=ne,
               negative_prompt_attention_mask=nm, latents=x, audio_latents=a, height=512, width=768,
               num_frames=121, frame_rate=24.0, num_inference_steps=30, guidance_scale=3.0, ...)
    out.frames  # [B, F, H, W, 3] float32 in [0, 1] (diffusers' output_type="np")
    out.audio   # [B, channels, samples] float32 (diffusers' ``vocoder(mel)``)

Axis letters: B batch (videos), G the main forward's branches, N video tokens, C latent channels, M audio tokens,
Ca audio token width (L M'), T text tokens, E the Gemma stack's width (caption channels x hidden states).

What runs, in diffusers' order (``pipeline_ltx2.py``):
  1. the text connectors on ``[negative, positive]`` (``[positive]`` without CFG), padding on the left;
  2. the schedule, on the host: ``sigmas = linspace(1, 1/N, N)`` shifted by ``mu = calculate_shift(N video tokens)``
     (``ltx_jax.scheduler``); the audio uses the same schedule (diffusers deep-copies the scheduler);
  3. the initial latents: video tokens as given (diffusers leaves packed latents unnormalised), audio tokens
     normalised with the audio VAE's statistics (diffusers normalises packed audio latents); ``noise_scale`` 0;
  4. the transformer's step-invariant half (``prepare``: RoPE tables, caption projections, text keys / values),
     once per forward kind, then one ``lax.fori_loop`` over the steps. Each step runs ONE batched forward over
     rows ``[uncond (CFG), cond, stg (STG)]`` (the STG rows perturbed through ``perturbation_mask``, the others not)
     and, with modality guidance, a second forward of the cond rows with ``isolate_modalities`` (static in the
     transformer, so it cannot share the batch). Each modality's branches combine in x0 space
     (``LTX2Guidance.guided_velocity``, its own scales) and take an Euler step (``scheduler.step``) in float32;
  5. decode: video tokens unpacked to [B, F, H, W, C], for a timestep-conditioned VAE mixed with ``decode_noise``
     at ``decode_noise_scale`` (default: ``decode_timestep``, 0: nothing added) in normalised space, denormalised,
     ``vae.decode(z, decode_timestep)``, then ``x / 2 + 0.5`` clipped to [0, 1]; audio tokens denormalised,
     unpacked, ``audio_vae.decode``, ``vocoder``.

Static (part of the compiled program's key): the modules, the latent grid, the step count, which guidance branches
run (``LTX2Guidance``: CFG where either modality's ``guidance_scale > 1``, STG where a ``stg_scale > 0``, modality
isolation where a ``modality_scale > 1``, as diffusers decides), the STG blocks, ``use_cross_timestep`` and whether
decode noise is mixed in. Traced: the text, latents, schedule, every scale and the decode timestep, so a second call
that changes only those compiles nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import scheduler as sched
from ltx_jax.models import as_variables
from ltx_jax.models.ltx2.audio_vae import denormalize_audio_latents, normalize_audio_latents, unpack_audio_latents
from ltx_jax.pipelines.ltx2_latents import LTX2Grid, ltx2_grid, unpack_video_latents
from ltx_jax.sampling.ltx2_guidance import LTX2Guidance

COMPONENTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder")


class LTX2CoreOutput(NamedTuple):
    """diffusers' ``LTX2PipelineOutput(frames, audio)`` for ``output_type="np"``."""

    frames: jax.Array  # [B, F, H, W, 3] float32 in [0, 1]
    audio: jax.Array  # [B, channels, samples] float32


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything static about one call (a jit static argument)."""

    core: "LTX2Core"
    grid: LTX2Grid
    guidance: LTX2Guidance
    stg_blocks: tuple[int, ...]
    use_cross_timestep: bool
    decode_noise: bool


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
        """(sigmas [S + 1], timesteps [S]) float32, as ``LTX2Pipeline`` sets them (``sigmas = linspace(1, 1/S, S)``
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
        audio_latents,
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
    ) -> LTX2CoreOutput:
        """Generates video and audio (diffusers' ``LTX2Pipeline.__call__`` with precomputed embeddings, pinned
        latents, ``noise_scale=0`` and ``output_type="np"``; defaults are diffusers').

        Args:
          params: ``{component: param tree (or variables)}`` for ``COMPONENTS``.
          prompt_embeds, negative_prompt_embeds: [B, T, E] Gemma's stacked hidden states, flattened as diffusers'
            ``encode_prompt`` returns them (or [B, T, C, F]); the negative ones are required with CFG.
          prompt_attention_mask, negative_prompt_attention_mask: [B, T] 1 = token, 0 = (left) padding.
          latents: [B, N, C] packed initial video latents (diffusers' ``_pack_latents`` of [B, C, F, H, W] noise;
            ``ltx2_latents.pack_video_latents`` from channels-last), used unnormalised as diffusers uses them.
          audio_latents: [B, T', L M'] packed initial audio latents (raw: normalised here, as diffusers does).
          height, width, num_frames, frame_rate, motion_speed: the output video; they fix the latent grid and the
            audio length (``grid``).
          num_inference_steps: S (static).
          sigmas: S custom sigmas (diffusers' ``sigmas=``; traced: new values compile nothing), else the default.
          guidance_scale, stg_scale, modality_scale, guidance_rescale: the video's scales; audio_*: the audio's,
            a falsy value taking the video's (diffusers' ``audio_x = audio_x or x``).
          spatio_temporal_guidance_blocks: the blocks STG perturbs (needed when a ``stg_scale > 0``).
          use_cross_timestep: LTX-2.3's cross-modal timestep (diffusers' default True).
          decode_timestep, decode_noise_scale: per video or one value; used by timestep-conditioned VAEs only.
          decode_noise: [B, F, H, W, C] standard normal noise (channels-last) for a non-zero decode_noise_scale.
        Returns:
          ``LTX2CoreOutput(frames [B, F, H, W, 3] in [0, 1], audio [B, channels, samples])``.
        """
        missing = [c for c in COMPONENTS if c not in params]
        if missing:
            raise ValueError(f"params lacks {missing}; pass one tree per component of {COMPONENTS}.")
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
        latents = np.asarray(latents, np.float32)
        audio_latents = np.asarray(audio_latents, np.float32)
        batch = latents.shape[0]
        want_video, want_audio = self.latent_shapes(grid, batch)
        if latents.shape != want_video or audio_latents.shape != want_audio:
            raise ValueError(f"latents {latents.shape} / audio_latents {audio_latents.shape} do not fit the grid "
                             f"{grid}: expected {want_video} and {want_audio} (packed, as diffusers packs them).")
        text = {"pos": (prompt_embeds, prompt_attention_mask)}
        if guidance.cfg:
            if negative_prompt_embeds is None or negative_prompt_attention_mask is None:
                raise ValueError("guidance_scale > 1 needs negative_prompt_embeds and negative_prompt_attention_mask.")
            text["neg"] = (negative_prompt_embeds, negative_prompt_attention_mask)
        text = {k: (np.asarray(e, np.float32), np.asarray(m, np.int32)) for k, (e, m) in text.items()}
        if any(e.shape[0] != batch or m.shape != e.shape[:2] for e, m in text.values()):
            raise ValueError(f"prompt embeddings must be [B={batch}, T, E] with masks [B, T].")
        sigmas, timesteps = self.schedule(latents.shape[1], num_inference_steps, sigmas)

        per_video = lambda v: np.broadcast_to(np.asarray(v, np.float32).reshape(-1), (batch,))  # noqa: E731
        decode_t = per_video(decode_timestep)
        noise_scale = decode_t if decode_noise_scale is None else per_video(decode_noise_scale)
        mix = bool(self.vae.config.timestep_conditioning and np.any(noise_scale != 0))
        if mix and decode_noise is None:
            raise ValueError("a non-zero decode_noise_scale (or decode_timestep) needs decode_noise [B, F, H, W, C].")
        inputs = dict(
            text={k: tuple(jnp.asarray(a) for a in v) for k, v in text.items()},
            latents=jnp.asarray(latents), audio_latents=jnp.asarray(audio_latents),
            sigmas=jnp.asarray(sigmas), timesteps=jnp.asarray(timesteps),
            video_scales={k: jnp.float32(v) for k, v in video.items()},
            audio_scales={k: jnp.float32(v) for k, v in audio.items()},
            decode_timestep=jnp.asarray(decode_t), decode_noise_scale=jnp.asarray(noise_scale),
            decode_noise=jnp.asarray(decode_noise, jnp.float32) if mix else None)
        plan = _Plan(self, grid, guidance, blocks if guidance.stg else (), bool(use_cross_timestep), mix)
        frames, wave = _generate(plan, {c: as_variables(params[c]) for c in COMPONENTS}, inputs)
        return LTX2CoreOutput(frames, wave)


# ------------------------------------------------------------------------------------------------ the program


@functools.partial(jax.jit, static_argnums=(0,))
def _generate(plan: _Plan, variables: dict, inputs: dict) -> tuple[jax.Array, jax.Array]:
    """The whole call under one jit: connectors, loop, decode (see the module docstring)."""
    core, grid, guidance = plan.core, plan.grid, plan.guidance
    transformer = core.transformer

    # 1. connectors on [negative, positive] (diffusers' batch), then each forward's rows
    names = ("neg", "pos") if guidance.cfg else ("pos",)
    embeds = jnp.concatenate([inputs["text"][k][0] for k in names])
    mask = jnp.concatenate([inputs["text"][k][1] for k in names])
    video_text, audio_text, text_mask = core.connectors.apply(variables["connectors"], embeds, mask,
                                                              padding_side="left")
    batch = inputs["latents"].shape[0]
    pieces = dict(zip(names, range(len(names))))

    def rows(which):  # connector outputs of the given prompts, stacked [len(which) B, T, .]
        take = lambda x: jnp.concatenate([x[pieces[w] * batch:(pieces[w] + 1) * batch] for w in which])  # noqa
        return take(video_text), take(audio_text), take(text_mask)

    main = (("neg",) if guidance.cfg else ()) + ("pos",) + (("pos",) if guidance.stg else ())
    branches = (("uncond",) if guidance.cfg else ()) + ("cond",) + (("stg",) if guidance.stg else ())
    grid_kw = dict(num_frames=grid.frames, height=grid.height, width=grid.width, fps=grid.fps,
                   audio_num_frames=grid.audio_frames)
    tvars = variables["transformer"]
    constants = transformer.apply(tvars, *rows(main), method="prepare", **grid_kw)
    isolated = transformer.apply(tvars, *rows(("pos",)), method="prepare", **grid_kw) if guidance.modality else None
    perturb = None
    if guidance.stg:
        perturb = jnp.concatenate([jnp.zeros((batch,)) if b == "stg" else jnp.ones((batch,)) for b in branches])

    audio_stats = variables["audio_vae"]["params"]
    mean, std = audio_stats["latents_mean"], audio_stats["latents_std"]
    sigmas, timesteps = inputs["sigmas"], inputs["timesteps"]

    def forward(x, ax, t, consts, copies, **kw):
        g = copies * batch
        tt = jnp.full((g,), t, jnp.float32)
        out = transformer.apply(tvars, jnp.tile(x, (copies, 1, 1)), jnp.tile(ax, (copies, 1, 1)), tt, consts,
                                sigma=tt, use_cross_timestep=plan.use_cross_timestep, method="predict", **kw)
        return out.sample.astype(jnp.float32), out.audio_sample.astype(jnp.float32)

    def step(i, carry):
        x, ax = carry
        sigma, sigma_next, t = sigmas[i], sigmas[i + 1], timesteps[i]
        v, av = forward(x, ax, t, constants, len(branches), spatio_temporal_guidance_blocks=plan.stg_blocks or None,
                        perturbation_mask=perturb)
        video_v = {b: v[k * batch:(k + 1) * batch] for k, b in enumerate(branches)}
        audio_v = {b: av[k * batch:(k + 1) * batch] for k, b in enumerate(branches)}
        if guidance.modality:
            video_v["modality"], audio_v["modality"] = forward(x, ax, t, isolated, 1, isolate_modalities=True)
        v = guidance.guided_velocity(x, sigma, video_v, inputs["video_scales"])
        av = guidance.guided_velocity(ax, sigma, audio_v, inputs["audio_scales"])
        return sched.step(v, x, sigma, sigma_next), sched.step(av, ax, sigma, sigma_next)

    x0 = inputs["latents"].astype(jnp.float32)
    ax0 = normalize_audio_latents(inputs["audio_latents"].astype(jnp.float32), mean, std)
    x, ax = jax.lax.fori_loop(0, timesteps.shape[0], step, (x0, ax0))

    # 5. decode
    tcfg = transformer.config
    z = unpack_video_latents(x, grid, tcfg.patch_size, tcfg.patch_size_t)  # [B, F, H, W, C]
    decode_t = None
    if core.vae.config.timestep_conditioning:
        decode_t = inputs["decode_timestep"]
        if plan.decode_noise:
            s = inputs["decode_noise_scale"][:, None, None, None, None]
            z = (1 - s) * z + s * inputs["decode_noise"]
    z = core.vae.apply(variables["vae"], z, method="denormalize_latents")
    video = core.vae.apply(variables["vae"], z, decode_t, method="decode").astype(jnp.float32)
    frames = jnp.clip(video / 2 + 0.5, 0.0, 1.0)

    tokens = denormalize_audio_latents(ax, mean, std)
    mel = core.audio_vae.apply(variables["audio_vae"], unpack_audio_latents(tokens, grid.mel_bins), method="decode")
    wave = core.vocoder.apply(variables["vocoder"], mel).astype(jnp.float32)  # [B, S, channels]
    return frames, jnp.swapaxes(wave, 1, 2)

"""The compiled program behind ``LTX2Core``: connectors -> joint denoising loop -> video and audio decode (or the
latents), one ``Program`` per static plan.

Axis letters: B batch (videos), G the forward's branch rows, N video tokens (N' with appended keyframe tokens),
C latent channels, M audio tokens, D audio token width (L M'), T text tokens, K keyframe tokens.

One step runs ONE batched forward over the rows ``[uncond (CFG), cond, stg (STG), modality]``: the STG rows are
perturbed through ``perturbation_mask`` and the modality rows isolated through ``modality_mask`` (both traced per
row), so CFG, STG and modality guidance cost one forward of G B rows (diffusers runs three). Each modality's branches
combine in x0 space (``LTX2Guidance.guided_x0``); with a conditioning the video x0 is blended with the clean
conditioning latents by the per-token mask (diffusers' ``LTX2ConditionPipeline``; the image-to-video pipeline's
"first frame not stepped" is the same thing at mask 1), then an Euler step in float32.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import io_callback

from ltx_jax import scheduler as sched
from ltx_jax.models.ltx2 import rope
from ltx_jax.models.ltx2.audio_vae import denormalize_audio_latents, normalize_audio_latents, unpack_audio_latents
from ltx_jax.pipelines.loop_flops import loop_counted
from ltx_jax.pipelines.ltx2_latents import LTX2Grid, unpack_video_latents
from ltx_jax.programs import Program
from ltx_jax.sampling import control
from ltx_jax.sampling.ltx2_guidance import LTX2Guidance, x0_to_velocity


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything static about one call (the program's static argument)."""

    core: Any  # LTX2Core
    grid: LTX2Grid
    guidance: LTX2Guidance
    stg_blocks: tuple[int, ...]
    use_cross_timestep: bool
    decode_noise: bool
    conditioned: bool  # a per-token conditioning mask and clean latents
    keyframe_tokens: int  # K tokens appended after the video's (their coords given)
    noised: bool  # video noise mixed into the latents at noise_scale (per token with a conditioning)
    audio_given: bool  # audio latents given (normalised, then maybe noised); else the audio noise is the start
    audio_noised: bool  # audio noise mixed into the given audio latents at audio_noise_scale
    output_latents: bool  # return the denoised latents (diffusers' output_type="latent") instead of decoding
    tiling: Any = None  # the video decode's VAETiling (None: whole)

    @property
    def branches(self) -> tuple[str, ...]:
        """The main forward's row groups, in batch order."""
        g = self.guidance
        return (("uncond",) if g.cfg else ()) + ("cond",) + (("stg",) if g.stg else ()) + (
            ("modality",) if g.modality else ())


def _program(plan: Plan, variables: dict, inputs: dict) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The whole call (module docstring). Returns (frames [B, F, H, W, 3], waveform [B, channels, samples]) or,
    with ``output_latents``, (video latents [B, C, F, H, W], audio latents [B, L, T', M']) denormalised; then the
    steps run and the first step with NaN / Inf (-1: none). After each step the host is called
    (``sampling.control.poll``: progress, and whether to stop); a stop or a non-finite step ends the loop and skips
    the decode (zeros come back)."""
    core, grid, guidance = plan.core, plan.grid, plan.guidance
    transformer, tcfg = core.transformer, core.transformer.config

    # 1. connectors on [negative, positive] (diffusers' batch)
    names = ("neg", "pos") if guidance.cfg else ("pos",)
    embeds = jnp.concatenate([inputs["text"][k][0] for k in names])
    mask = jnp.concatenate([inputs["text"][k][1] for k in names])
    video_text, audio_text, text_mask = core.connectors.apply(variables["connectors"], embeds, mask,
                                                              padding_side="left")
    batch = inputs["latents"].shape[0]
    copies = len(plan.branches)

    def take(x, which):
        k = names.index(which)
        return x[k * batch:(k + 1) * batch]

    prompts = ["neg" if b == "uncond" else "pos" for b in plan.branches]
    rows = [jnp.concatenate([take(x, p) for p in prompts]) for x in (video_text, audio_text, text_mask)]
    grid_kw = dict(num_frames=grid.frames, height=grid.height, width=grid.width, fps=grid.fps,
                   audio_num_frames=grid.audio_frames)
    if plan.keyframe_tokens:  # the grid's coords, then the keyframe tokens' own
        base = rope.video_coords(batch, grid.frames, grid.height, grid.width, patch_size=tcfg.patch_size,
                                 patch_size_t=tcfg.patch_size_t, scale_factors=tcfg.vae_scale_factors,
                                 causal_offset=tcfg.causal_offset, fps=grid.fps)
        coords = jnp.concatenate([jnp.asarray(base), inputs["keyframe_coords"]], axis=2)
        grid_kw = dict(video_coords=jnp.tile(coords, (copies, 1, 1, 1)), audio_num_frames=grid.audio_frames)
    tvars = variables["transformer"]
    constants = transformer.apply(tvars, *rows, method="prepare", **grid_kw)
    row_mask = lambda off: jnp.concatenate([jnp.full((batch,), 0.0 if b == off else 1.0)  # noqa: E731
                                            for b in plan.branches])
    perturb = row_mask("stg") if guidance.stg else None
    isolate = row_mask("modality") if guidance.modality else None

    audio_stats = variables["audio_vae"]["params"]
    mean, std = audio_stats["latents_mean"], audio_stats["latents_std"]
    sigmas, timesteps = inputs["sigmas"], inputs["timesteps"]
    cond_mask = inputs["conditioning_mask"] if plan.conditioned else None  # [B, N']

    def step(i, carry):  # one denoising step of both streams
        x, ax = carry
        sigma, sigma_next, t = sigmas[i], sigmas[i + 1], timesteps[i]
        rows_t = jnp.full((copies * batch,), t, jnp.float32)
        video_t = rows_t if cond_mask is None else t * (1.0 - jnp.tile(cond_mask, (copies, 1)))
        out = transformer.apply(tvars, jnp.tile(x, (copies, 1, 1)), jnp.tile(ax, (copies, 1, 1)), video_t, constants,
                                audio_timestep=rows_t, sigma=rows_t, use_cross_timestep=plan.use_cross_timestep,
                                spatio_temporal_guidance_blocks=plan.stg_blocks or None, perturbation_mask=perturb,
                                modality_mask=isolate, method="predict")
        v, av = out.sample.astype(jnp.float32), out.audio_sample.astype(jnp.float32)
        split = lambda y: {b: y[k * batch:(k + 1) * batch] for k, b in enumerate(plan.branches)}  # noqa: E731
        x0 = guidance.guided_x0(x, sigma, split(v), inputs["video_scales"])
        if cond_mask is not None:
            m = cond_mask[..., None]
            x0 = x0 * (1 - m) + inputs["clean_latents"] * m
        av = guidance.guided_velocity(ax, sigma, split(av), inputs["audio_scales"])
        return sched.step(x0_to_velocity(x, x0, sigma), x, sigma, sigma_next), sched.step(av, ax, sigma, sigma_next)

    def body(carry):
        i, x, ax, _, nonfinite = carry
        x, ax = step(i, (x, ax))
        nonfinite = jnp.where(jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(ax)), nonfinite, i)
        stop = io_callback(control.poll, jax.ShapeDtypeStruct((), jnp.bool_), inputs["control_token"], i,
                           ordered=True)
        return i + 1, x, ax, stop, nonfinite

    def running(carry):
        i, _, _, stop, nonfinite = carry
        return (i < timesteps.shape[0]) & ~stop & (nonfinite < 0)

    x, ax = _initial_latents(plan, inputs, cond_mask, mean, std)
    steps, x, ax, _, nonfinite = jax.lax.while_loop(running, body, (0, x, ax, jnp.bool_(False), -1))
    x = x[:, :x.shape[1] - plan.keyframe_tokens]  # the appended keyframe tokens go
    finished = (steps == timesteps.shape[0]) & (nonfinite < 0)
    shapes = jax.eval_shape(functools.partial(_finish, plan, variables, inputs), x, ax)
    empty = lambda x, ax: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # noqa: E731
    video, audio = jax.lax.cond(finished, functools.partial(_finish, plan, variables, inputs), empty, x, ax)
    return video, audio, steps, nonfinite


def _finish(plan: Plan, variables: dict, inputs: dict, x: jax.Array, ax: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Denoised tokens -> (frames, waveform), or the denormalised latents (``output_latents``)."""
    core, grid = plan.core, plan.grid
    tcfg = core.transformer.config
    audio_stats = variables["audio_vae"]["params"]
    z = unpack_video_latents(x, grid, tcfg.patch_size, tcfg.patch_size_t)  # [B, F, H, W, C]
    audio_tokens = denormalize_audio_latents(ax, audio_stats["latents_mean"], audio_stats["latents_std"])
    audio_latents = unpack_audio_latents(audio_tokens, grid.mel_bins)  # [B, T', M', L]
    if plan.output_latents:
        z = core.vae.apply(variables["vae"], z, method="denormalize_latents")
        return jnp.moveaxis(z, -1, 1), jnp.transpose(audio_latents, (0, 3, 1, 2))
    decode_t = None
    if core.vae.config.timestep_conditioning:
        decode_t = inputs["decode_timestep"]
        if plan.decode_noise:
            s = inputs["decode_noise_scale"][:, None, None, None, None]
            z = (1 - s) * z + s * inputs["decode_noise"]
    z = core.vae.apply(variables["vae"], z, method="denormalize_latents")
    video = core.vae.apply(variables["vae"], z, decode_t, method="decode", tiling=plan.tiling).astype(jnp.float32)
    frames = jnp.clip(video / 2 + 0.5, 0.0, 1.0)
    mel = core.audio_vae.apply(variables["audio_vae"], audio_latents, method="decode")
    wave = core.vocoder.apply(variables["vocoder"], mel).astype(jnp.float32)  # [B, S, channels]
    return frames, jnp.swapaxes(wave, 1, 2)


def _initial_latents(plan: Plan, inputs: dict, cond_mask, mean, std) -> tuple[jax.Array, jax.Array]:
    """diffusers' ``prepare_latents`` / ``prepare_audio_latents`` mixing: video ``noise * s + latents * (1 - s)``
    with ``s = noise_scale (1 - mask)`` per token (``_create_noised_state`` without a mask); given audio latents
    normalised, then noised alike at ``audio_noise_scale``; fresh audio noise as it is (diffusers does not
    normalise it)."""
    x = inputs["latents"].astype(jnp.float32)
    if plan.noised:
        scale = inputs["noise_scale"]
        s = scale if cond_mask is None else scale * (1.0 - cond_mask)[..., None]
        x = inputs["noise"] * s + x * (1 - s)
    if not plan.audio_given:
        return x, inputs["audio_noise"].astype(jnp.float32)
    ax = normalize_audio_latents(inputs["audio_latents"].astype(jnp.float32), mean, std)
    if plan.audio_noised:
        scale = inputs["audio_noise_scale"]
        ax = inputs["audio_noise"] * scale + ax * (1 - scale)
    return x, ax


generate = Program(_program, "denoising and decoding", static=("plan",), params=("variables",),
                   flops=loop_counted(_program, lambda inputs, **_: inputs["timesteps"].shape[0]))

"""Lightricks' two-stage LTX-2 recipes: a first pass at half the size, the x2 latent upsampler, a short refining pass
at full size (``ltx_pipelines``' ``distilled.py`` and ``ti2vid_two_stages.py``; diffusers' documented composition of
``LTX2Pipeline`` -> ``LTX2LatentUpsamplePipeline`` -> ``LTX2Pipeline``).

    pipe = LTX2TwoStagePipeline.from_pretrained("LTX-2-distilled", dtype="bfloat16")            # distilled recipe
    pipe = LTX2TwoStagePipeline.from_pretrained("LTX-2", distilled_lora=[("distilled-lora.safetensors", 1.0)])
    out = pipe(prompt="a fox in the snow", height=1024, width=1536, num_frames=121)   # the FINAL size
    out.frames, out.audio                                                               # as LTX2Pipeline's

1. stage 1: the pipeline's own call (its defaults: the distilled sigmas, or the dev model's steps and guidance) at
   ``height / 2 x width / 2``, ``output_type="latent"``; the prompts are encoded once for both stages;
2. the upsampler doubles the raw video latents (``LTX2LatentUpsamplePipeline``, diffusers' ``output_type="latent"``);
3. stage 2 at full size from the upsampled latents and stage 1's audio latents, re-noised at the first stage-2 sigma
   (``noise_scale``), ``stage_2_sigmas`` (the release's, else Lightricks' distilled ``0.909375, 0.725, 0.421875``),
   no guidance (Lightricks' stage 2 is a plain denoiser; ``stage_2`` guidance can be given), through the stage-2
   transformer: the same one for a distilled model, the dev model with the distilled LoRA fused for the dev recipe.

The image-to-video and condition pipelines work as stage 1 too (their conditioning applies to both stages, as
diffusers' pipelines apply it to given latents). Stage 2's noise comes from ``seed + 1``, or ``stage_2_noise`` /
``stage_2_audio_noise`` pin it (packed, for a parity test).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Sequence

import jax.numpy as jnp

from ltx_jax.pipelines.ltx2 import SIZE_MULTIPLE as CALL_SIZE_MULTIPLE
from ltx_jax.pipelines.ltx2 import LTX2Pipeline, LTX2PipelineOutput
from ltx_jax.pipelines.ltx2_latent_upsample import LTX2LatentUpsamplePipeline
from ltx_jax.pipelines.reporting import StageTimings
from ltx_jax.releases_ltx2 import LTX2_STAGE_2_DISTILLED_SIGMAS
from ltx_jax.sharding import ShardingPlan
from weight_conversion import load_latent_upsampler, load_transformer

#: Stage 2 without guidance (Lightricks' refining pass): every branch at its neutral value, both modalities.
NO_GUIDANCE = dict(guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0,
                   audio_guidance_scale=1.0, audio_stg_scale=0.0, audio_modality_scale=1.0, audio_guidance_rescale=0.0)
SIZE_MULTIPLE = 2 * CALL_SIZE_MULTIPLE  # the final size: each half a size a call takes


def recipe_upsampler_problem(config) -> str | None:
    """Why an upsampler's config (``LTX2LatentUpsamplerConfig``) does not serve the two-stage recipe, which doubles
    the first stage's size: None when it is a x2 spatial upsampler."""
    if config.temporal_upsample or not config.spatial_upsample:
        return "it upsamples in time; the two-stage recipe takes the x2 spatial upscaler (*spatial-upscaler-x2*)"
    if config.use_rational_resampler and config.rational_spatial_scale != 2.0:
        return (f"it upsamples x{config.rational_spatial_scale:g}; the two-stage recipe doubles the first stage's "
                "size: take the x2 spatial upscaler (*spatial-upscaler-x2*)")
    return None


class LTX2TwoStagePipeline:
    """Stage 1 (``pipe``), the x2 upsampler, stage 2 (``stage_2``, default ``pipe``).

    Attributes:
      pipe: the first stage (``LTX2Pipeline`` or its image-to-video / condition kinds).
      upsampler: ``LTX2LatentUpsamplePipeline`` over ``pipe``'s VAE.
      stage_2: the refining pipeline (shares every module; its transformer params may carry the distilled LoRA).
      stage_2_sigmas: the refining sigmas (without the final 0).
      last_timings: ``StageTimings`` (stage_1, upsampling, stage_2).
    """

    def __init__(self, pipe: LTX2Pipeline, upsampler: LTX2LatentUpsamplePipeline, stage_2: LTX2Pipeline | None = None,
                 stage_2_sigmas: Sequence[float] | None = None):
        problem = recipe_upsampler_problem(upsampler.latent_upsampler.config)
        if problem:
            raise ValueError(f"LTX2TwoStagePipeline: the latent upsampler does not fit: {problem}.")
        self.pipe, self.upsampler, self.stage_2 = pipe, upsampler, stage_2 if stage_2 is not None else pipe
        release = pipe.release
        sigmas = stage_2_sigmas
        if sigmas is None:
            sigmas = (release.defaults.stage_2_sigmas if release is not None and release.defaults.stage_2_sigmas
                      else LTX2_STAGE_2_DISTILLED_SIGMAS)
        self.stage_2_sigmas = tuple(float(s) for s in sigmas if s > 0)
        self.last_timings = StageTimings()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: Any = "float32", *,
                        latent_upsampler_path: str | os.PathLike | None = None,
                        distilled_lora: Sequence[tuple[str | os.PathLike, float]] | None = None,
                        pipeline_class: type = LTX2Pipeline, **kwargs) -> "LTX2TwoStagePipeline":
        """Loads ``pipeline_class`` from ``path`` (``LTX2Pipeline.from_pretrained``), the upsampler (default:
        ``path``'s ``latent_upsampler/``) and, for the dev recipe, the transformer again with ``distilled_lora``
        fused (``[(file, scale)]``) after ``kwargs``' ``lora`` as stage 2's (``transformer_weights`` and ``mesh`` as
        stage 1's)."""
        pipe = pipeline_class.from_pretrained(path, dtype, **kwargs)
        upsampler_path = latent_upsampler_path or os.path.join(os.fspath(path), "latent_upsampler")
        upsampler = LTX2LatentUpsamplePipeline.from_pipe(pipe, *load_latent_upsampler(upsampler_path,
                                                                                       jnp.dtype(dtype)))
        stage_2 = None
        if distilled_lora:  # stage 1's kernels, adapters and shards, then the distilled LoRA
            _, fused = load_transformer(path, jnp.dtype(dtype), weights=kwargs.get("transformer_weights"),
                                        lora=[*(kwargs.get("lora") or ()), *distilled_lora],
                                        sharding=ShardingPlan.create(kwargs.get("mesh")))
            stage_2 = pipe.with_params(transformer=fused)
        return cls(pipe, upsampler, stage_2)

    def __call__(self, *, stage_2_noise=None, stage_2_audio_noise=None, stage_2_guidance: dict | None = None,
                 **kwargs) -> LTX2PipelineOutput:
        """Generates at the final ``height`` x ``width`` (multiples of 64) with the first stage's request fields
        (``pipe.request``); ``stage_2_guidance`` overrides stage 2's ``NO_GUIDANCE`` scales."""
        r = self.pipe.request(**kwargs)
        if r.height % SIZE_MULTIPLE or r.width % SIZE_MULTIPLE:
            raise ValueError(f"the two-stage recipe needs height and width multiples of {SIZE_MULTIPLE} (stage 1 runs "
                             f"at half), got {r.height}x{r.width}.")
        if r.output_type != "np":
            raise ValueError("the two-stage recipe returns frames (output_type='np'); run the stages yourself for "
                             "latents.")
        unknown = set(stage_2_guidance or {}) - set(NO_GUIDANCE)
        if unknown:
            raise ValueError(f"stage_2_guidance takes {sorted(NO_GUIDANCE)}, not {sorted(unknown)}.")
        self.last_timings = timings = StageTimings()
        start = time.perf_counter()
        with timings.stage("stage_1"):
            pe, pm, npe, npm = self.pipe._embeddings(r, r.do_classifier_free_guidance)
            r = self.pipe.resolve_num_frames(r, pe, pm)
            text = dict(prompt=None, negative_prompt=None, prompt_embeds=pe, prompt_attention_mask=pm,
                        num_videos_per_prompt=1)
            first = self.pipe.generate(dataclasses.replace(
                r, **text, negative_prompt_embeds=npe, negative_prompt_attention_mask=npm, height=r.height // 2,
                width=r.width // 2, output_type="latent"))
        with timings.stage("upsampling"):
            up = self.upsampler(latents=first.frames, height=r.height // 2, width=r.width // 2,
                                num_frames=r.num_frames, output_type="latent").frames
        with timings.stage("stage_2"):
            second = dataclasses.replace(
                r, **text, negative_prompt_embeds=npe, negative_prompt_attention_mask=npm, latents=up,
                audio_latents=first.audio, sigmas=self.stage_2_sigmas, num_inference_steps=len(self.stage_2_sigmas),
                noise_scale=self.stage_2_sigmas[0], noise=stage_2_noise, audio_noise=stage_2_audio_noise,
                seed=r.seed + 1, **{**NO_GUIDANCE, **(stage_2_guidance or {})})
            out = self.stage_2.generate(second)
        timings.total = time.perf_counter() - start
        return out

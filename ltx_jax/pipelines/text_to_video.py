"""Text-to-video: prompt -> T5 embeddings -> one compiled denoising loop -> timestep-conditioned VAE decode -> frames.

    pipe = LTXPipeline.from_pretrained("path/to/LTX-Video", dtype="bfloat16")
    frames = pipe(prompt="a red fox in the snow", height=512, width=768, num_frames=121, seed=0)
    # np.ndarray [B, F, H, W, 3] in [0, 1]; pipe.last_timings has the time of each stage

Arguments keep the names and defaults of diffusers' ``LTXPipeline.__call__`` (plus ``seed``), so code written for
diffusers reads the same here.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

from ltx_jax.pipelines.base import PipelineBase

# diffusers' LTXPipeline defaults (the command line takes them too).
DEFAULT_HEIGHT, DEFAULT_WIDTH, DEFAULT_NUM_FRAMES, DEFAULT_FRAME_RATE = 512, 704, 161, 25


class LTXPipeline(PipelineBase):
    """LTX-Video text-to-video (diffusers' ``LTXPipeline``); the stages are ``PipelineBase``'s."""

    def __call__(
        self,
        prompt: str | Sequence[str] | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        height: int = DEFAULT_HEIGHT,
        width: int = DEFAULT_WIDTH,
        num_frames: int = DEFAULT_NUM_FRAMES,
        frame_rate: float = DEFAULT_FRAME_RATE,
        num_inference_steps: int | None = None,
        timesteps: Sequence[float] | None = None,
        guidance_scale: float | Sequence[float] | None = None,
        guidance_rescale: float | Sequence[float] | None = None,
        stg_scale: float | Sequence[float] | None = None,
        rescaling_scale: float | Sequence[float] | None = None,
        skip_block_list=None,
        skip_layer_strategy: str | None = None,
        cfg_star_rescale: bool | None = None,
        guidance_timesteps: Sequence[float] | None = None,
        skip_initial_inference_steps: int | None = None,
        skip_final_inference_steps: int | None = None,
        num_videos_per_prompt: int = 1,
        seed: int = 0,
        latents=None,
        noise=None,
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

        Defaults left as None come from the checkpoint's release (``self.defaults``), else diffusers' ``LTXPipeline``
        defaults (50 steps, guidance 3, rescale 0, decode_timestep 0, decode_noise_scale = decode_timestep).

        Args:
          height, width: multiples of the VAE's spatial ratio (32 for the releases); num_frames: k * temporal
            ratio + 1 (8k + 1 for the releases).
          timesteps: explicit timesteps (0-1000) for distilled checkpoints; replaces num_inference_steps.
          guidance_scale, guidance_rescale: one value, or one per step (changing them never recompiles).
            ``guidance_rescale`` is diffusers' CFG rescale; ``rescaling_scale`` below is the original's.
          stg_scale, rescaling_scale, skip_block_list, skip_layer_strategy, cfg_star_rescale, guidance_timesteps,
          skip_initial_inference_steps, skip_final_inference_steps: spatio-temporal guidance, CFG-star and guidance
            schedules with the original package's names and meaning (``PipelineBase.denoise``); the release's
            values when None (Lightricks' configs: STG 1 on block 19 for the 2B dev releases, a schedule for 13B dev).
          seed: seeds the initial noise and the decode noise.
          latents: initial packed latents [B, N, C] (or channels-last [B, F, H, W, C]), float32.
          noise: the initial Gaussian noise on the latent grid (same layouts), instead of drawing it from ``seed``: to
            compare with another implementation that drew the same noise. For text-to-video it is the latents.
          tiling: "auto" (tiles above ``AUTO_TILING_PIXELS``), None/False (whole), True (diffusers' default
            tiles), or a dict of diffusers' ``enable_tiling`` arguments.
          output_type: "np" -> frames [B, F, H, W, 3] float32 in [0, 1]; "latent" -> packed latents [B, N, C].
        """
        call = self._begin_call(locals())
        embeds = self.encode_prompt(prompt, negative_prompt, call.do_classifier_free_guidance, num_videos_per_prompt,
                                    prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                    negative_prompt_attention_mask, max_sequence_length)
        noise_key, decode_key = jax.random.split(jax.random.PRNGKey(seed))
        latents = self.prepare_latents(embeds[0].shape[0], call.grid, noise_key, latents, noise)
        latents = self.denoise(latents, call.grid, *embeds, frame_rate=frame_rate,
                               num_inference_steps=call.num_inference_steps, timesteps=call.timesteps, **call.guidance)
        return self._end_call(latents, call, output_type=output_type, key=decode_key, tiling=tiling)

"""Image-to-video: the image becomes latent frame 0 (conditioning mask 1), the rest is denoised from noise.

    pipe = LTXImageToVideoPipeline.from_pretrained("path/to/LTX-Video", dtype="bfloat16")
    frames = pipe(image="fox.png", prompt="a red fox walks through snow", height=512, width=768, num_frames=121)

diffusers' ``LTXImageToVideoPipeline``: the image is resized to the video's size, encoded by the VAE (a posterior
sample drawn from ``seed``), normalised and placed on every latent frame under a mask that keeps only frame 0;
each step runs the model at timestep ``t * (1 - mask)`` and takes one global Euler step on the other frames.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax.pipelines import conditioning
from ltx_jax.pipelines.base import PipelineBase
from ltx_jax.pipelines.text_to_video import DEFAULT_FRAME_RATE, DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES, DEFAULT_WIDTH


class LTXImageToVideoPipeline(PipelineBase):
    """LTX-Video image-to-video (diffusers' ``LTXImageToVideoPipeline``); the stages are ``PipelineBase``'s."""

    def prepare_image(self, image: Any, batch_size: int, height: int, width: int, resize_mode: str = "stretch"):
        """One image, or one per video: [B or 1, 1, H, W, 3] float32 in [-1, 1] for the VAE (see ``conditioning``)."""
        images = list(image) if isinstance(image, (list, tuple)) and len(image) > 1 else [image]
        if len(images) not in (1, batch_size):
            raise ValueError(f"{len(images)} images for {batch_size} videos; give one image, or one per video "
                             "(prompts x num_videos_per_prompt).")
        frames = [conditioning.preprocess(conditioning.as_frames(x, "image", video=False), height, width, resize_mode)
                  for x in images]
        return np.stack(frames)  # [B or 1, 1, H, W, 3]

    def prepare_latents(self, batch_size: int, grid: sampling.LatentGrid, key: jax.Array, latents=None, noise=None,
                        image=None, encode_key: jax.Array | None = None):
        """(packed latents [B, N, C], conditioning mask [B, N]) as diffusers' image-to-video prepares them: the
        encoded image on latent frame 0 (mask 1), noise elsewhere; given ``latents`` are used as they are."""
        channels = self.transformer.config.in_channels
        mask = np.zeros((batch_size, grid.frames, grid.height, grid.width, 1), np.float32)
        mask[:, 0] = 1.0
        packed_mask = sampling.pack_latents(jnp.asarray(mask), grid.patch_size, grid.patch_size_t)[..., 0]  # [B, N]
        if latents is not None:
            return super().prepare_latents(batch_size, grid, key, latents=latents), packed_mask
        if image is None:
            raise ValueError("image-to-video needs an image (or latents=).")
        init = self.encode_video(image, encode_key)  # [B or 1, 1, H', W', C]
        init = jnp.broadcast_to(init, (batch_size, grid.frames, grid.height, grid.width, channels))
        if noise is None:
            noise = jax.random.normal(key, init.shape, jnp.float32)
        else:
            noise = sampling.unpack_latents(super().prepare_latents(batch_size, grid, key, noise=noise), grid)
        mixed = init * mask + noise * (1.0 - mask)
        return sampling.pack_latents(mixed, grid.patch_size, grid.patch_size_t), packed_mask

    def __call__(
        self,
        image: Any = None,
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
        resize_mode: str = "stretch",
    ) -> np.ndarray:
        """Generates videos that start from ``image``.

        Arguments are ``LTXPipeline``'s (and diffusers' ``LTXImageToVideoPipeline``'s), plus:
          image: a numpy array [H, W, 3] (uint8, or float in [0, 1]), a PIL image or a path; or one per video.
          noise: the initial Gaussian noise on the latent grid, channels-last [B, F, H, W, C] or packed [B, N, C],
            instead of drawing it from ``seed`` (the image's latents replace it on frame 0).
          resize_mode: "stretch" (diffusers) or "crop" (center-crop to the aspect ratio, then resize: Lightricks' inference script).
        New images (of the same size) never recompile.
        """
        call = self._begin_call(locals())
        batch = (1 if isinstance(prompt, str) else len(prompt)) * num_videos_per_prompt if prompt is not None else (
            int(prompt_embeds.shape[0]) * num_videos_per_prompt)
        pixels = None if latents is not None else self.prepare_image(image, batch, height, width, resize_mode)
        embeds = self.encode_prompt(prompt, negative_prompt, call.do_classifier_free_guidance, num_videos_per_prompt,
                                    prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                                    negative_prompt_attention_mask, max_sequence_length)
        root = jax.random.PRNGKey(seed)
        noise_key, decode_key = jax.random.split(root)
        latents, mask = self.prepare_latents(batch, call.grid, noise_key, latents, noise, pixels,
                                             jax.random.fold_in(root, 2))
        latents = self.denoise(latents, call.grid, *embeds, frame_rate=frame_rate,
                               num_inference_steps=call.num_inference_steps, timesteps=call.timesteps, **call.guidance,
                               conditioning_mask=mask)
        return self._end_call(latents, call, output_type=output_type, key=decode_key, tiling=tiling)

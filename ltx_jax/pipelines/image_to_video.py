"""Image-to-video: the image becomes latent frame 0 (conditioning mask 1), the rest is denoised from noise.

    pipe = LTXImageToVideoPipeline.from_pretrained("path/to/LTX-Video", dtype="bfloat16")
    frames = pipe(image="fox.png", prompt="a red fox walks through snow", height=512, width=768, num_frames=121)

diffusers' ``LTXImageToVideoPipeline``: the image is resized to the video's size, encoded by the VAE (a posterior
sample drawn from ``seed``), normalised and placed on every latent frame under a mask that keeps only frame 0;
each step runs the model at timestep ``t * (1 - mask)`` and takes one global Euler step on the other frames.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax import sampling
from ltx_jax.pipelines import conditioning
from ltx_jax.pipelines.base import PipelineBase
from ltx_jax.pipelines.calls import uses_guidance
from ltx_jax.pipelines.contracts import CallKeys, PreparedLatents
from ltx_jax.requests import GUIDANCE, SCHEDULE, STEP_CACHE, ImageToVideoRequest


class LTXImageToVideoPipeline(PipelineBase):
    """LTX-Video image-to-video (diffusers' ``LTXImageToVideoPipeline``); the stages are ``PipelineBase``'s."""

    request_type = ImageToVideoRequest
    positional = ("image", "prompt", "negative_prompt")
    summary = ("Generates videos that start from ``image`` (diffusers' ``LTXImageToVideoPipeline.__call__`` "
               "arguments, plus ``seed`` and ``resize_mode``).")

    def prepare_image(self, image: Any, batch_size: int, height: int, width: int, resize_mode: str = "stretch"):
        """One image, or one per video: [B or 1, 1, H, W, 3] float32 in [-1, 1] for the VAE (see ``conditioning``)."""
        images = list(image) if isinstance(image, (list, tuple)) and len(image) > 1 else [image]
        if len(images) not in (1, batch_size):
            raise ValueError(f"{len(images)} images for {batch_size} videos; give one image, or one per video "
                             "(prompts x num_videos_per_prompt).")
        frames = [conditioning.preprocess(conditioning.as_frames(x, "image", video=False), height, width, resize_mode)
                  for x in images]
        return np.stack(frames)  # [B or 1, 1, H, W, 3]

    def prepare_latents(self, batch_size: int, grid: sampling.LatentGrid, keys: CallKeys, latents=None, noise=None,
                        image=None) -> PreparedLatents:
        """As diffusers' image-to-video prepares them: packed latents [B, N, C] with the encoded image (``image``
        from ``prepare_image``, its posterior sampled from ``keys.encode``) on latent frame 0, noise elsewhere, and
        the conditioning mask [B, N] (1 on frame 0); given ``latents`` are used as they are."""
        channels = self.transformer.config.in_channels
        mask = np.zeros((batch_size, grid.frames, grid.height, grid.width, 1), np.float32)
        mask[:, 0] = 1.0
        packed_mask = sampling.pack_latents(jnp.asarray(mask), grid.patch_size, grid.patch_size_t)[..., 0]  # [B, N]
        if latents is not None:
            return PreparedLatents(super().prepare_latents(batch_size, grid, keys, latents=latents).latents,
                                   packed_mask)
        if image is None:
            raise ValueError("image-to-video needs an image (or latents=).")
        init = self.encode_video(image, keys.encode)  # [B or 1, 1, H', W', C]
        init = jnp.broadcast_to(init, (batch_size, grid.frames, grid.height, grid.width, channels))
        if noise is None:
            noise = jax.random.normal(keys.noise, init.shape, jnp.float32)
        else:
            noise = sampling.unpack_latents(super().prepare_latents(batch_size, grid, keys, noise=noise).latents, grid)
        mixed = init * mask + noise * (1.0 - mask)
        return PreparedLatents(sampling.pack_latents(mixed, grid.patch_size, grid.patch_size_t), packed_mask)

    def generate(self, request: ImageToVideoRequest) -> np.ndarray:
        """The frames of a checked request: the image read and encoded onto latent frame 0, the loop, the decode."""
        grid = self._begin(request)
        keys = CallKeys.from_seed(request.seed)
        batch = request.batch_size
        pixels = None if request.latents is not None else self.prepare_image(
            request.image, batch, request.height, request.width, request.resize_mode)
        embeds = self.prompt_embeddings(request, uses_guidance(request))
        start = self.prepare_latents(batch, grid, keys, request.latents, request.noise, pixels)
        latents = self.denoise(start.latents, grid, *embeds, frame_rate=request.frame_rate,
                               **request.group(SCHEDULE), **request.group(GUIDANCE), **request.group(STEP_CACHE),
                               conditioning_mask=start.conditioning_mask)
        return self._finish(request, latents, grid, request, keys.decode)

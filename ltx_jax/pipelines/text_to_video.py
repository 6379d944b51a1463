"""Text-to-video: prompt -> T5 embeddings -> one compiled denoising loop -> timestep-conditioned VAE decode -> frames.

    pipe = LTXPipeline.from_pretrained("path/to/LTX-Video", dtype="bfloat16")
    frames = pipe(prompt="a red fox in the snow", height=512, width=768, num_frames=121, seed=0)
    # np.ndarray [B, F, H, W, 3] in [0, 1]; pipe.last_timings has the time of each stage

Arguments keep the names and defaults of diffusers' ``LTXPipeline.__call__`` (plus ``seed``), so code written for
diffusers reads the same here.
"""

from __future__ import annotations

import numpy as np

from ltx_jax.pipelines.base import PipelineBase
from ltx_jax.pipelines.calls import uses_guidance
from ltx_jax.pipelines.contracts import CallKeys
from ltx_jax.requests import GUIDANCE, SCHEDULE, STEP_CACHE, TextToVideoRequest

# diffusers' LTXPipeline defaults (the command line takes them too): the request's.
_DEFAULTS = TextToVideoRequest()
DEFAULT_HEIGHT, DEFAULT_WIDTH, DEFAULT_NUM_FRAMES, DEFAULT_FRAME_RATE = (
    _DEFAULTS.height, _DEFAULTS.width, _DEFAULTS.num_frames, _DEFAULTS.frame_rate)


class LTXPipeline(PipelineBase):
    """LTX-Video text-to-video (diffusers' ``LTXPipeline``); the stages are ``PipelineBase``'s."""

    request_type = TextToVideoRequest
    positional = ("prompt", "negative_prompt")
    summary = "Generates videos from prompts (diffusers' ``LTXPipeline.__call__`` arguments, plus ``seed``)."

    def generate(self, request: TextToVideoRequest) -> np.ndarray:
        """The frames of a checked request (``self.request``): embeddings, noise, the loop, the decode."""
        grid = self._begin(request)
        keys = CallKeys.from_seed(request.seed)
        embeds = self.prompt_embeddings(request, uses_guidance(request))
        start = self.prepare_latents(request.batch_size, grid, keys, request.latents, request.noise)
        latents = self.denoise(start.latents, grid, *embeds, frame_rate=request.frame_rate,
                               **request.group(SCHEDULE), **request.group(GUIDANCE),
                               **request.group(STEP_CACHE))
        return self._finish(request, latents, grid, request, keys.decode)

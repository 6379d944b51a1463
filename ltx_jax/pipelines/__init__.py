"""LTX-Video pipelines: a shared base of stages (``PipelineBase``) and the pipelines composed from them."""

from ltx_jax.pipelines.base import PipelineBase
from ltx_jax.compilation_cache import enable_compilation_cache
from ltx_jax.pipelines.hub import write_model_index
from ltx_jax.pipelines.reporting import NonFiniteError, StageTimings
from ltx_jax.pipelines.vae_programs import AUTO_TILING_PIXELS
from ltx_jax.pipelines.condition import LTXConditionPipeline
from ltx_jax.pipelines.conditioning import LTXVideoCondition
from ltx_jax.pipelines.image_to_video import LTXImageToVideoPipeline
from ltx_jax.pipelines.latent_upsample import LTXLatentUpsamplePipeline
from ltx_jax.pipelines.long_video import LTXI2VLongMultiPromptPipeline
from ltx_jax.pipelines.multi_scale import LTXMultiScalePipeline
from ltx_jax.pipelines.text_to_video import LTXPipeline

__all__ = ["AUTO_TILING_PIXELS", "LTXConditionPipeline", "LTXI2VLongMultiPromptPipeline", "LTXImageToVideoPipeline",
           "LTXLatentUpsamplePipeline",
           "LTXMultiScalePipeline", "LTXPipeline", "LTXVideoCondition", "NonFiniteError", "PipelineBase",
           "StageTimings", "enable_compilation_cache", "write_model_index"]

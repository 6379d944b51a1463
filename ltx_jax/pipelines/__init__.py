"""LTX-Video pipelines (a shared base of stages, ``PipelineBase``, and the pipelines composed from them) and LTX-2's
(video with sound: ``LTX2Pipeline`` and its image-to-video, condition, upsample and two-stage kinds)."""

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
from ltx_jax.pipelines.ltx2 import LTX2Pipeline, LTX2PipelineOutput, LTX2Request
from ltx_jax.pipelines.ltx2_conditions import LTX2ConditionPipeline, LTX2ImageToVideoPipeline, LTX2VideoCondition
from ltx_jax.pipelines.ltx2_latent_upsample import LTX2LatentUpsamplePipeline
from ltx_jax.pipelines.ltx2_two_stage import LTX2TwoStagePipeline

__all__ = ["AUTO_TILING_PIXELS", "LTX2ConditionPipeline", "LTX2ImageToVideoPipeline", "LTX2LatentUpsamplePipeline",
           "LTX2Pipeline", "LTX2PipelineOutput", "LTX2Request", "LTX2TwoStagePipeline", "LTX2VideoCondition",
           "LTXConditionPipeline", "LTXI2VLongMultiPromptPipeline", "LTXImageToVideoPipeline",
           "LTXLatentUpsamplePipeline",
           "LTXMultiScalePipeline", "LTXPipeline", "LTXVideoCondition", "NonFiniteError", "PipelineBase",
           "StageTimings", "enable_compilation_cache", "write_model_index"]

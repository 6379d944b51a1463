"""LTX-Video pipelines: a shared base of stages (``PipelineBase``) and the pipelines composed from them."""

from ltx_jax.pipelines.base import (
    AUTO_TILING_PIXELS,
    NonFiniteError,
    PipelineBase,
    StageTimings,
    enable_compilation_cache,
    write_model_index,
)
from ltx_jax.pipelines.text_to_video import LTXPipeline

__all__ = ["AUTO_TILING_PIXELS", "LTXPipeline", "NonFiniteError", "PipelineBase", "StageTimings", "enable_compilation_cache",
           "write_model_index"]

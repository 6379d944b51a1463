"""Building blocks shared by the LTX-Video models: the dense factory, norms, embeddings (timestep, RoPE), attention."""

from ltx_jax.models.layers.attention import (AttentionImplementation, attention, constrain, context_parallel_attention,
                                             default_attention_implementation, resolve_attention_implementation,
                                             uses_context_parallel)
from ltx_jax.models.layers.dense import (COMPUTE_MODES, FP8_MAX, LORA_COLLECTION, QUANTIZED_DTYPES, WEIGHT_FORMATS,
                                         Dense, check_compute, check_weights, dense, fp8_matmul, lora_axes)
from ltx_jax.models.layers.embeddings import (
    ROPE_BASE_HEIGHT,
    ROPE_BASE_NUM_FRAMES,
    ROPE_BASE_WIDTH,
    ROPE_THETA,
    TIMESTEP_FEATURES,
    TimestepEmbedder,
    TimestepEmbedding,
    apply_rotary_emb,
    exact_divide,
    grid_from_video_coords,
    rope_frequencies,
    timestep_sinusoids,
    torch_linspace,
    video_grid,
)
from ltx_jax.models.layers.norms import (
    LayerNorm,
    RMSNorm,
    layer_norm_no_affine,
    layer_normalize,
    pixel_norm,
    rms_normalize,
)

__all__ = [
    "AttentionImplementation", "COMPUTE_MODES", "Dense", "FP8_MAX", "LORA_COLLECTION", "QUANTIZED_DTYPES",
    "WEIGHT_FORMATS", "check_compute", "check_weights", "fp8_matmul",
    "LayerNorm", "RMSNorm", "ROPE_BASE_HEIGHT", "ROPE_BASE_NUM_FRAMES",
    "ROPE_BASE_WIDTH", "ROPE_THETA", "TIMESTEP_FEATURES", "TimestepEmbedder", "TimestepEmbedding", "apply_rotary_emb",
    "attention", "constrain", "context_parallel_attention", "uses_context_parallel",
    "default_attention_implementation", "dense", "resolve_attention_implementation", "exact_divide",
    "grid_from_video_coords",
    "layer_norm_no_affine", "layer_normalize", "lora_axes", "pixel_norm", "rms_normalize", "rope_frequencies",
    "timestep_sinusoids",
    "torch_linspace", "video_grid",
]

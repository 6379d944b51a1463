"""ltx_jax: LTX-Video (Lightricks' DiT text-to-video model) in JAX/Flax, numerically faithful to diffusers."""

from ltx_jax.configs import TRANSFORMER_PRESETS, TransformerConfig
from ltx_jax.models.transformer import LTXVideoTransformer3DModel

__version__ = "0.1.0"

__all__ = ["LTXVideoTransformer3DModel", "TRANSFORMER_PRESETS", "TransformerConfig", "__version__"]

"""ltx_jax: LTX-Video (Lightricks' DiT text-to-video model) in JAX/Flax, numerically faithful to diffusers."""

from ltx_jax.configs import T5_PRESETS, TRANSFORMER_PRESETS, VAE_PRESETS, T5Config, TransformerConfig, VAEConfig
from ltx_jax.models.t5 import T5EncoderModel
from ltx_jax.models.transformer import LTXVideoTransformer3DModel
from ltx_jax.models.vae import AutoencoderKLLTXVideo, VAETiling
from ltx_jax.pipeline import LTXPipeline
from ltx_jax.text_encoding import PromptEncoder, encode_prompt, load_tokenizer

__version__ = "0.1.0"

__all__ = [
    "AutoencoderKLLTXVideo",
    "LTXPipeline",
    "LTXVideoTransformer3DModel",
    "PromptEncoder",
    "T5Config",
    "T5EncoderModel",
    "T5_PRESETS",
    "TRANSFORMER_PRESETS",
    "TransformerConfig",
    "VAEConfig",
    "VAETiling",
    "VAE_PRESETS",
    "__version__",
    "encode_prompt",
    "load_tokenizer",
]

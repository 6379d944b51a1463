"""ltx_jax: LTX-Video (Lightricks' DiT text-to-video model) in JAX/Flax, numerically faithful to diffusers.

Names are imported on first use, so ``import ltx_jax`` (and ``import weight_conversion``, which needs the models)
costs nothing beyond what is used: the pipelines are not imported until one is asked for.
"""

from __future__ import annotations

from ltx_jax.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "LTXPipeline": "ltx_jax.pipelines",
    "LTXImageToVideoPipeline": "ltx_jax.pipelines",
    "LTXConditionPipeline": "ltx_jax.pipelines",
    "LTXVideoCondition": "ltx_jax.pipelines",
    "LTXLatentUpsamplePipeline": "ltx_jax.pipelines",
    "LTXMultiScalePipeline": "ltx_jax.pipelines",
    "LTXI2VLongMultiPromptPipeline": "ltx_jax.pipelines",
    "LTXEulerAncestralRFSchedulerConfig": "ltx_jax.scheduler_ancestral",
    "SamplingRequest": "ltx_jax.requests",
    "TextToVideoRequest": "ltx_jax.requests",
    "ImageToVideoRequest": "ltx_jax.requests",
    "ConditionRequest": "ltx_jax.requests",
    "MultiScaleRequest": "ltx_jax.requests",
    "LongVideoRequest": "ltx_jax.requests",
    "T5Config": "ltx_jax.configs",
    "TransformerConfig": "ltx_jax.configs",
    "VAEConfig": "ltx_jax.configs",
    "LatentUpsamplerConfig": "ltx_jax.configs",
    "RELEASES": "ltx_jax.releases",
    "Release": "ltx_jax.releases",
    "MultiScaleDefaults": "ltx_jax.releases",
    "detect_release": "ltx_jax.releases",
    "T5_PRESETS": "ltx_jax.releases",
    "TRANSFORMER_PRESETS": "ltx_jax.releases",
    "VAE_PRESETS": "ltx_jax.releases",
    "T5EncoderModel": "ltx_jax.models.t5",
    "LTXVideoTransformer3DModel": "ltx_jax.models.transformer",
    "AutoencoderKLLTXVideo": "ltx_jax.models.vae",
    "VAETiling": "ltx_jax.models.vae",
    "LatentUpsampler": "ltx_jax.models.latent_upsampler",
    "PromptEncoder": "ltx_jax.text_encoding",
    "encode_prompt": "ltx_jax.text_encoding",
    "load_tokenizer": "ltx_jax.text_encoding",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

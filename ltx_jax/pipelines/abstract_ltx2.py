"""LTX-2 pipelines put together from modules and parameters, and over abstract parameters: every component at its
real configs, its parameters ``jax.ShapeDtypeStruct`` trees that hold no memory. With ``ltx_jax.programs.dry_run``
the pipeline's own call then checks its arguments and lowers every program it would run (Gemma's text encoding, then
the connectors + denoising + decoding program), at full size, without weights or a GPU:

    pipe = abstract_ltx2_pipeline(LTX2_RELEASES["ltx-2-19b-distilled"], dtype="bfloat16", weights="fp8")
    with dry_run() as run:
        pipe(prompt="a fox barks", height=512, width=768, num_frames=121)
    run.records        # text encoding, denoising and decoding

The modules are built as the loaders build them (``weight_conversion.load_*``: the dtype for params and compute, the
transformer's and Gemma's weight format through the dense factory), the parameters are ``abstract_params`` of the
same modules. One exception: the audio VAE's latent statistics (two vectors of a few hundred floats) are concrete
(mean 0, std 1), as the pipeline normalises its initial audio noise with them on the host.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from ltx_jax.configs_gemma import GEMMA_PRESETS, GemmaTextConfig
from ltx_jax.configs_ltx2 import LTX2AudioVAEConfig, LTX2TransformerConfig, LTX2VideoVAEConfig
from ltx_jax.configs_ltx2_text import LTX2_CONNECTORS, LTX23_CONNECTORS, LTX25_CONNECTORS, LTX2TextConnectorsConfig
from ltx_jax.models import abstract_params
from ltx_jax.models.gemma import GemmaTextEncoder
from ltx_jax.models.layers import check_compute, check_weights
from ltx_jax.models.ltx2.audio_vae import AutoencoderKLLTX2Audio
from ltx_jax.models.ltx2.connectors import LTX2TextConnectors
from ltx_jax.models.ltx2.transformer import LTX2VideoTransformer3DModel
from ltx_jax.models.ltx2.vae import AutoencoderKLLTX2Video
from ltx_jax.pipelines.ltx2 import LTX2Pipeline, LTX2Request
from ltx_jax.pipelines.ltx2_core import LTX2Core
from ltx_jax.releases import LTX_SCHEDULER
from ltx_jax.releases_ltx2 import LTX2Release
from ltx_jax.scheduler import FlowMatchSchedulerConfig
from ltx_jax.text_encoding_ltx2 import LTX2PromptEncoder
from ltx_jax.tiny_random import word_level_tokenizer
from weight_conversion.ltx2_audio import make_vocoder

#: The text connectors of each LTX-2 version (``configs_ltx2_text``).
CONNECTORS_BY_VERSION = {"2.0": LTX2_CONNECTORS, "2.3": LTX23_CONNECTORS, "2.5": LTX25_CONNECTORS}
#: What a stand-in tokenizer knows when no tokenizer files are at hand: the prompt of a dry run.
STAND_IN_PROMPT = "a dog barks at the waves on a windy beach, the camera tracking beside it"


@dataclasses.dataclass(frozen=True)
class LTX2Configs:
    """The architectures of an LTX-2 pipeline's components (and its scheduler), by component name."""

    gemma: GemmaTextConfig
    connectors: LTX2TextConnectorsConfig
    transformer: LTX2TransformerConfig
    vae: LTX2VideoVAEConfig
    audio_vae: LTX2AudioVAEConfig
    vocoder: Any  # LTX2VocoderConfig or LTX2VocoderWithBWEConfig
    scheduler: FlowMatchSchedulerConfig = LTX_SCHEDULER

    @classmethod
    def of_release(cls, release: LTX2Release) -> "LTX2Configs":
        """A release's architectures: its record's, its version's connectors, its Gemma (``GEMMA_PRESETS``), and
        LTX_SCHEDULER (the schedule diffusers' LTX-2 folders ship: mu 0.95 at 1024 tokens to 2.05 at 4096)."""
        return cls(GEMMA_PRESETS[release.text_encoder], CONNECTORS_BY_VERSION[release.version], release.transformer,
                   release.video_vae, release.audio_vae, release.vocoder)

    def replace(self, **changes) -> "LTX2Configs":
        return dataclasses.replace(self, **changes)


def ltx2_modules(configs: LTX2Configs, dtype: Any = "float32", weights: str | None = None,
                 text_encoder_weights: str | None = None, compute: str | None = None) -> dict[str, Any]:
    """The modules by component name (``gemma`` and ``ltx2_core.COMPONENTS``), built as the loaders build them:
    ``dtype`` for params and compute, ``weights`` / ``compute`` for the transformer's blocks (``load_transformer``),
    ``text_encoder_weights`` for Gemma's layers (``load_gemma_text_encoder``)."""
    check_weights(weights)
    check_weights(text_encoder_weights, "text_encoder_weights")
    check_compute(compute, weights)
    dtype = jnp.dtype(dtype)
    same = dict(dtype=dtype, param_dtype=dtype)
    return dict(gemma=GemmaTextEncoder(configs.gemma, **same, weights=text_encoder_weights),
                transformer=LTX2VideoTransformer3DModel(configs.transformer, **same, weights=weights, compute=compute),
                connectors=LTX2TextConnectors(configs.connectors, **same),
                vae=AutoencoderKLLTX2Video(configs.vae, **same),
                audio_vae=AutoencoderKLLTX2Audio(configs.audio_vae, **same),
                vocoder=make_vocoder(configs.vocoder, dtype))


def assemble_ltx2_pipeline(modules: dict[str, Any], params: dict[str, Any], tokenizer,
                           scheduler: FlowMatchSchedulerConfig = LTX_SCHEDULER, release: LTX2Release | None = None,
                           defaults: LTX2Request | None = None, *, cls=LTX2Pipeline,
                           progress: bool = False) -> LTX2Pipeline:
    """A ``cls`` (``LTX2Pipeline`` or one of its subclasses, e.g. ``LTX2ImageToVideoPipeline``) of ``modules`` and
    ``params`` (both by component name: ``gemma`` and ``ltx2_core.COMPONENTS``), put together as
    ``LTX2Pipeline.from_pretrained`` puts loaded components together; ``defaults`` None: the release's (diffusers'
    without one); ``progress``: a progress bar while denoising."""
    encoder = LTX2PromptEncoder(tokenizer, modules["gemma"], params["gemma"], modules["connectors"],
                                params["connectors"])
    core = LTX2Core(modules["transformer"], modules["connectors"], modules["vae"], modules["audio_vae"],
                    modules["vocoder"], scheduler)
    return cls(encoder, core, {k: v for k, v in params.items() if k != "gemma"}, release, defaults, progress)


def word_level_gemma_tokenizer(texts=(STAND_IN_PROMPT,), model_max_length: int = 1024):
    """A Gemma-like word-level tokenizer over the words of ``texts`` (``tiny_random.word_level_tokenizer``): the tiny
    pipeline's, and a dry run's stand-in where no tokenizer files are at hand (only its shapes matter there: every
    prompt is padded to ``max_sequence_length``)."""
    return word_level_tokenizer(model_max_length, texts=tuple(texts), gemma=True)


def _with_concrete_statistics(shapes: dict) -> dict:
    """An audio VAE's abstract params with ``latents_mean`` 0 and ``latents_std`` 1 as arrays (the pipeline uses them
    on the host to normalise its initial noise)."""
    fill = {"latents_mean": jnp.zeros, "latents_std": jnp.ones}
    return {k: fill[k](v.shape, v.dtype) if k in fill else v for k, v in shapes.items()}


def abstract_ltx2_pipeline(release: LTX2Release | None = None, *, configs: LTX2Configs | None = None,
                           dtype: Any = "bfloat16", weights: str | None = None,
                           text_encoder_weights: str | None = None, compute: str | None = None, tokenizer=None,
                           defaults: LTX2Request | None = None, cls=LTX2Pipeline) -> LTX2Pipeline:
    """An ``LTX2Pipeline`` whose components have abstract parameters (module docstring).

    Args:
      release: the record whose architectures (``LTX2Configs.of_release``) and defaults to take.
      configs: the architectures (a checkpoint's own, read from its files); default the release's.
      dtype, weights, text_encoder_weights, compute: as the loaders take them (``ltx2_modules``).
      tokenizer: the Gemma tokenizer; default a stand-in (``word_level_gemma_tokenizer``).
      defaults: the calls' defaults; None: the release's (diffusers' without one).
      cls: ``LTX2Pipeline`` or a subclass (``LTX2ImageToVideoPipeline``).
    """
    if configs is None:
        if release is None:
            raise ValueError("abstract_ltx2_pipeline needs a release or configs.")
        configs = LTX2Configs.of_release(release)
    modules = ltx2_modules(configs, dtype, weights, text_encoder_weights, compute)
    params = {name: abstract_params(module) for name, module in modules.items()}
    params["audio_vae"] = _with_concrete_statistics(params["audio_vae"])
    return assemble_ltx2_pipeline(modules, params, tokenizer or word_level_gemma_tokenizer(), configs.scheduler,
                                  release, defaults, cls=cls)


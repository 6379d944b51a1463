"""Pipelines over abstract parameters: every component at its real configs, its parameters ``jax.ShapeDtypeStruct``
trees that hold no memory. With ``ltx_jax.programs.dry_run`` a pipeline's own call then checks its arguments and
lowers every program it would run, at full size, without weights or a GPU:

    pipe = abstract_pipeline(LTXMultiScalePipeline, get_release("ltx-video-0.9.8-2b-distilled"), dtype="bfloat16")
    with dry_run() as run:
        pipe(prompt="a fox", height=704, width=1216, num_frames=121)
    run.records        # text encoding, first pass, upsampling, second pass, decoding, resizing

The modules are built as the loaders build them (``weight_conversion.load_*``: the dtype for params and compute, the
weight format, the sharding plan), the parameters are ``abstract_params`` of the same modules (placed on a mesh's
shardings where one is given), so a dry run lowers the programs a loaded pipeline would compile.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ltx_jax.configs import LatentUpsamplerConfig, T5Config, TransformerConfig, VAEConfig
from ltx_jax.models import abstract_params
from ltx_jax.models.latent_upsampler import LatentUpsampler
from ltx_jax.models.layers import check_compute, check_weights
from ltx_jax.models.t5 import T5EncoderModel
from ltx_jax.models.transformer import LTXVideoTransformer3DModel
from ltx_jax.models.vae import AutoencoderKLLTXVideo
from ltx_jax.pipelines.multi_scale import LTXMultiScalePipeline
from ltx_jax.releases import LATENT_UPSAMPLER_PRESETS, LTX_SCHEDULER, Release
from ltx_jax.scheduler import FlowMatchSchedulerConfig
from ltx_jax.sharding import ShardingPlan
from ltx_jax.text_encoding import PromptEncoder
from ltx_jax.tiny_random import word_level_tokenizer

#: What a stand-in tokenizer knows when no tokenizer files are at hand: the prompt of a dry run.
STAND_IN_PROMPT = "a red fox trots through fresh snow at dawn, the camera tracking beside it"


def shaped(module, plan: ShardingPlan | None = None, *, replicated: bool = False):
    """``abstract_params(module)``, each leaf carrying its sharding on ``plan``'s mesh (from the axes its module
    declares, or whole on every device with ``replicated``) as the loaders place them."""
    shapes = abstract_params(module)
    if plan is None:
        return shapes
    shardings = (jax.tree_util.tree_map(lambda _: plan.replicated(), shapes) if replicated
                 else plan.param_shardings(shapes, module))
    return jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def stand_in_tokenizer(texts=(STAND_IN_PROMPT,), max_length: int = 128):
    """A T5-shaped word-level tokenizer over ``texts`` (pad 0, end 1): it pads and truncates as T5's does, so the
    programs it feeds have the real shapes. For dry runs without the tokenizer's files (only shapes matter there)."""
    return word_level_tokenizer(max_length, texts=tuple(texts))


def abstract_pipeline(cls, release: Release | None = None, *, transformer: TransformerConfig | None = None,
                      vae: VAEConfig | None = None, text_encoder: T5Config | None = None,
                      latent_upsampler: LatentUpsamplerConfig | None = None,
                      scheduler: FlowMatchSchedulerConfig | None = None, dtype: Any = "bfloat16",
                      text_encoder_dtype: Any = None, weights: str | None = None,
                      text_encoder_weights: str | None = None, compute: str | None = None, mesh: Any = None,
                      tokenizer=None, progress: bool = False):
    """A pipeline of class ``cls`` whose components have abstract parameters (module docstring).

    Args:
      cls: ``LTXPipeline``, ``LTXImageToVideoPipeline``, ``LTXConditionPipeline`` or ``LTXMultiScalePipeline``.
      release: the record whose architectures, scheduler and defaults to take; the config arguments replace its
        architectures (a checkpoint's own configs, read from its files).
      latent_upsampler: for ``LTXMultiScalePipeline``; default the upscaler the release's recipe names.
      dtype, text_encoder_dtype, weights, text_encoder_weights, compute, mesh: as ``from_pretrained`` takes them
        (``compute="fp8"`` with ``weights="fp8"``: the kernels' format is the abstract params').
      tokenizer: the T5 tokenizer; default a stand-in (``stand_in_tokenizer``).
    """
    check_weights(weights)
    check_weights(text_encoder_weights, "text_encoder_weights")
    check_compute(compute, weights)
    transformer = transformer or _needed(release, "transformer")
    vae = vae or _needed(release, "vae")
    text_encoder = text_encoder or _needed(release, "text_encoder")
    plan = ShardingPlan.create(mesh)
    dtype = jnp.dtype(dtype)
    te_dtype = jnp.dtype(text_encoder_dtype or dtype)
    dit = LTXVideoTransformer3DModel(transformer, dtype=dtype, param_dtype=dtype, weights=weights, compute=compute,
                                     sharding=plan)
    autoencoder = AutoencoderKLLTXVideo(vae, dtype=dtype, param_dtype=dtype)
    t5 = T5EncoderModel(text_encoder, dtype=te_dtype, param_dtype=te_dtype, weights=text_encoder_weights)
    prompt_encoder = PromptEncoder(tokenizer or stand_in_tokenizer(), t5, shaped(t5, plan))
    scheduler = scheduler or (release.scheduler if release is not None else LTX_SCHEDULER)
    components = (dit, shaped(dit, plan), autoencoder, shaped(autoencoder, plan, replicated=True), prompt_encoder,
                  scheduler, release, progress)
    if not issubclass(cls, LTXMultiScalePipeline):
        return cls(*components)
    if latent_upsampler is None:
        recipe = release.multi_scale if release is not None else None
        if recipe is None:
            raise ValueError(f"{release.name if release else 'no release'} has no multi-scale recipe: give "
                             "latent_upsampler= (a LatentUpsamplerConfig) and the passes.")
        latent_upsampler = LATENT_UPSAMPLER_PRESETS[recipe.latent_upsampler]
    upsampler = LatentUpsampler(latent_upsampler, dtype=dtype, param_dtype=dtype)
    return cls(*components, latent_upsampler=upsampler,
               latent_upsampler_params=shaped(upsampler, plan, replicated=True))


def _needed(release: Release | None, what: str):
    if release is None:
        raise ValueError(f"abstract_pipeline needs a release or a {what} config.")
    return getattr(release, what)

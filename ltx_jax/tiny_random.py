"""A whole LTX-Video pipeline with tiny random weights: an installation check and a test fixture.

Every component keeps the real architecture and the real compression ratios (32x spatial, 8x temporal), only the
widths are tiny, so a 9-frame 96x64 video runs end to end on a CPU in seconds. The output is noise.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from typing import Any

import jax
import jax.numpy as jnp

from ltx_jax.configs import LatentUpsamplerConfig, T5Config, TransformerConfig, VAEConfig
from ltx_jax.models import abstract_params, init_params
from ltx_jax.models.latent_upsampler import LatentUpsampler
from ltx_jax.models.layers import check_compute
from ltx_jax.models.t5 import T5EncoderModel
from ltx_jax.models.transformer import LTXVideoTransformer3DModel
from ltx_jax.models.vae import AutoencoderKLLTXVideo
from ltx_jax.pipelines import LTXMultiScalePipeline, LTXPipeline
from ltx_jax.releases import RELEASES
from ltx_jax.text_encoding import PromptEncoder, load_tokenizer
from weight_conversion.quantize import quantize_params

# Sentences the tiny sentencepiece tokenizer is trained on.
TOKENIZER_CORPUS = (
    "A red fox jumps over the lazy dog in a snowy forest.",
    "The camera slowly pans across a city skyline at sunset.",
    "A woman with long brown hair walks along the beach, waves crashing.",
    "Close-up of a cat's face, its green eyes blinking in soft light.",
)

TINY_T5 = T5Config(vocab_size=128, d_model=24, d_kv=6, d_ff=40, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="gated-gelu")
TINY_TRANSFORMER = TransformerConfig(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8,
                                     cross_attention_dim=16, num_layers=2, caption_channels=TINY_T5.d_model)
# A 0.9.1-style VAE (timestep-conditioned decoder, residual upsamplers) with tiny widths.
TINY_VAE = VAEConfig(
    latent_channels=8,
    block_out_channels=(8, 16, 32, 32),  # widths double per block, as in the released VAEs
    layers_per_block=(1, 1, 1, 1, 1),
    decoder_block_out_channels=(8, 16, 32),
    decoder_layers_per_block=(1, 1, 1, 1),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
)

# A spatial latent upscaler for TINY_VAE's latents (the released ones: 128 channels in, 512 wide, 4 blocks a stage).
TINY_UPSAMPLER = LatentUpsamplerConfig(in_channels=TINY_VAE.latent_channels, mid_channels=32, num_blocks_per_stage=1)
# The release whose multi-scale recipe the tiny multi-scale pipeline runs (its distilled schedules are short).
TINY_MULTI_SCALE_RELEASE = "ltx-video-0.9.8-2b-distilled"


def write_tiny_tokenizer(folder: str | os.PathLike) -> str:
    """Trains a ~100-piece sentencepiece unigram model and saves it as a T5 tokenizer folder (pad 0, eos 1, unk 2)."""
    import sentencepiece as spm  # deferred: sentencepiece is optional (word_level_tokenizer stands in without it)

    os.makedirs(folder, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_CORPUS * 20), model_writer=model, vocab_size=100, model_type="unigram",
        hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", minloglevel=2,
    )
    with open(os.path.join(folder, "spiece.model"), "wb") as f:
        f.write(model.getvalue())
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": 3, "model_max_length": 128, "eos_token": "</s>",
                   "pad_token": "<pad>", "unk_token": "<unk>"}, f)
    return os.fspath(folder)


def word_level_tokenizer(max_length: int = 128, texts=TOKENIZER_CORPUS, gemma: bool = False):
    """A word-level tokenizer over the words of ``texts`` from ``tokenizers`` alone: T5-like (pad 0, eos 1, unk 2,
    ``</s>`` appended), or with ``gemma`` Gemma-like (``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2 first, ``<unk>`` 3, no
    pad token: ``LTX2PromptEncoder`` pads with ``<eos>`` on the left, as diffusers does).

    Used when sentencepiece is not installed (e.g. GPU machines provisioned without it), by the tiny random pipelines
    and as dry runs' stand-in: transformers always brings ``tokenizers``, and both our pipelines and diffusers' call
    it like the real tokenizer.
    """
    # deferred: tokenizers and transformers load only when a tokenizer is built
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(re.findall(r"\w+|[^\w\s]", " ".join(texts).lower())))
    specials = ("<pad>", "<eos>", "<bos>", "<unk>") if gemma else ("<pad>", "</s>", "<unk>")
    vocab = {**{w: i for i, w in enumerate(specials)}, **{w: i + len(specials) for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    template = ("<bos> $A", "<bos>") if gemma else ("$A </s>", "</s>")
    tok.post_processor = processors.TemplateProcessing(single=template[0], special_tokens=[(template[1],
                                                                                            vocab[template[1]])])
    named = (dict(bos_token="<bos>", eos_token="<eos>") if gemma else dict(pad_token="<pad>", eos_token="</s>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", model_max_length=max_length, **named)


def tiny_tokenizer():
    """The tiny sentencepiece T5 tokenizer, or a word-level one when sentencepiece is missing."""
    try:
        import sentencepiece  # noqa: F401 - deferred: sentencepiece is optional; is it installed?
    except ImportError:
        return word_level_tokenizer()
    with tempfile.TemporaryDirectory() as folder:
        return load_tokenizer(write_tiny_tokenizer(folder))


def tiny_random_pipeline(dtype: Any = "float32", seed: int = 0, progress: bool = True, weights: str | None = None,
                         text_encoder_weights: str | None = None, compute: str | None = None):
    """An ``LTXPipeline`` with tiny random components (text encoder and tokenizer included) and the 0.9.1 release's
    generation defaults (its VAE kind: a timestep-conditioned decoder); ``weights`` ("int8" / "fp8"): the
    transformer's block kernels quantized from the same random float weights (``text_encoder_weights``: T5's);
    ``compute="fp8"`` (with ``weights="fp8"``): its fp8 x fp8 matmuls."""
    check_compute(compute, weights)
    dtype = jnp.dtype(dtype)
    k_t5, k_tr, k_vae = jax.random.split(jax.random.PRNGKey(seed), 3)
    t5 = T5EncoderModel(TINY_T5, dtype=dtype, param_dtype=dtype)
    transformer = LTXVideoTransformer3DModel(TINY_TRANSFORMER, dtype=dtype, param_dtype=dtype)
    transformer, transformer_params = _quantized(transformer, init_params(transformer, k_tr), weights)
    transformer = transformer.clone(compute=compute)
    t5, t5_params = _quantized(t5, init_params(t5, k_t5), text_encoder_weights)
    vae = AutoencoderKLLTXVideo(TINY_VAE, dtype=dtype, param_dtype=dtype)
    prompt_encoder = PromptEncoder(tiny_tokenizer(), t5, t5_params)
    return LTXPipeline(transformer, transformer_params, vae, init_params(vae, k_vae), prompt_encoder,
                       scheduler_config=RELEASES["ltx-video-0.9.1"].scheduler, release=RELEASES["ltx-video-0.9.1"],
                       progress=progress)


def _quantized(module, params, weights: str | None):
    """(module, params) with the block kernels in ``weights`` ("int8" / "fp8"; None: unchanged)."""
    if weights is None:
        return module, params
    module = module.clone(weights=weights)
    return module, quantize_params(params, abstract_params(module))


def tiny_random_multi_scale_pipeline(dtype: Any = "float32", seed: int = 0, progress: bool = True,
                                     weights: str | None = None, text_encoder_weights: str | None = None,
                                     compute: str | None = None):
    """``tiny_random_pipeline``'s components with a tiny random spatial upsampler, as an ``LTXMultiScalePipeline``
    running the recipe of ``TINY_MULTI_SCALE_RELEASE``."""
    pipe = tiny_random_pipeline(dtype, seed, progress, weights, text_encoder_weights, compute)
    dtype = jnp.dtype(dtype)
    upsampler = LatentUpsampler(TINY_UPSAMPLER, dtype=dtype, param_dtype=dtype)
    params = init_params(upsampler, jax.random.fold_in(jax.random.PRNGKey(seed), 7))
    multi = LTXMultiScalePipeline.from_pipe(pipe, upsampler, params)
    multi.release = RELEASES[TINY_MULTI_SCALE_RELEASE]
    return multi

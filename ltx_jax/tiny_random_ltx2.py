"""A whole LTX-2 pipeline (text to video with sound) with tiny random weights: an installation check and a test
fixture that needs no torch, no diffusers, no transformers model and no network.

Every component is one of our Flax modules at a tiny config, its params from the module's own ``init``: Gemma 3 (12
wide, 2 layers: 3 hidden states), the text connectors (12 x 3 in), the joint transformer (2 blocks), the video VAE
(32x spatial, 8x temporal, as the releases), the audio VAE (12 mel bins) and the vocoder (24 kHz, LTX-2's rate: 240
samples per mel frame of 16 kHz / hop 160). The sizes fit each other as the releases' do:

    Gemma hidden_size x (num_hidden_layers + 1) = connectors' caption_channels x text_proj_in_factor = 12 x 3
    connectors' video / audio width (12) = the transformer's caption_channels
    video VAE latent_channels (8) x patch 1 = the transformer's in_channels
    audio VAE latent_channels (2) x mel_bins / 4 (3) = the transformer's audio_in_channels = the audio VAE's base width
    audio VAE output (2 channels x 12 bins) = the vocoder's in_channels

    pipe = tiny_random_ltx2_pipeline()
    out = pipe(prompt="a red fox in the snow")      # 64 x 64, 9 frames at 24 fps, 4 steps (TINY_DEFAULTS)
    out.frames.shape, out.audio.shape               # (1, 9, 64, 64, 3), (1, 2, samples) at pipe.audio_sample_rate

The tokenizer is a Gemma-like word-level one built in memory from ``tokenizers`` (``<bos>`` first, left padding with
``<eos>``, as ``LTX2PromptEncoder`` sets Gemma's); words outside its small vocabulary become ``<unk>``. The output is
noise.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp

from ltx_jax.configs_gemma import Gemma3TextConfig
from ltx_jax.configs_ltx2 import (LTX2AudioVAEConfig, LTX2LatentUpsamplerConfig, LTX2TransformerConfig,
                                  LTX2VideoVAEConfig, LTX2VocoderConfig)
from ltx_jax.configs_ltx2_text import LTX2TextConnectorsConfig
from ltx_jax.models import abstract_params, init_params
from ltx_jax.models.ltx2.latent_upsampler import LTX2LatentUpsampler
from ltx_jax.pipelines.abstract_ltx2 import (LTX2Configs, assemble_ltx2_pipeline, ltx2_modules,
                                             word_level_gemma_tokenizer)
from ltx_jax.pipelines.ltx2 import LTX2Pipeline, LTX2Request
from ltx_jax.tiny_random import TOKENIZER_CORPUS
from weight_conversion.quantize import quantize_params

#: The name ``--model`` takes for this pipeline.
TINY_LTX2_MODEL = "tiny-random-ltx2"

#: The tokenizer's vocabulary after its four special tokens: the words of the LTX-Video tiny corpus.
WORDS = tuple(dict.fromkeys(re.findall(r"\w+|[^\w\s]", " ".join(TOKENIZER_CORPUS).lower())))

TINY_GEMMA = Gemma3TextConfig.from_dict(dict(
    model_type="gemma3_text", vocab_size=4 + len(WORDS), hidden_size=12, intermediate_size=20, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=1, head_dim=6, query_pre_attn_scalar=6, sliding_window=4,
    sliding_window_pattern=2, rope_theta=1000.0, rope_local_base_freq=100.0, rms_norm_eps=1e-6))
# caption_channels = Gemma's width, text_proj_in_factor = its L + 1 hidden states; 4 video registers: prompts are
# padded to a multiple of 4 tokens.
TINY_CONNECTORS = LTX2TextConnectorsConfig(
    caption_channels=12, text_proj_in_factor=3, video_connector_num_attention_heads=2,
    video_connector_attention_head_dim=6, video_connector_num_layers=1, video_connector_num_learnable_registers=4,
    audio_connector_num_attention_heads=3, audio_connector_attention_head_dim=4, audio_connector_num_layers=1,
    audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=7, rope_type="split",
    rope_double_precision=True)
TINY_LTX2_TRANSFORMER = LTX2TransformerConfig(
    in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
    audio_in_channels=6, audio_out_channels=6, audio_num_attention_heads=2, audio_attention_head_dim=4,
    audio_cross_attention_dim=8, num_layers=2, caption_channels=12, perturbed_attn=True)
# LTX-2.3's decoder layout (spatiotemporal, spatiotemporal, temporal, spatial) at tiny widths, patch 4: 32x / 8x.
TINY_LTX2_VAE = LTX2VideoVAEConfig(
    latent_channels=8, block_out_channels=(8, 16, 16, 16), layers_per_block=(1, 0, 1, 0, 1),
    decoder_block_out_channels=(8, 16, 16, 32), decoder_layers_per_block=(1, 0, 1, 0, 1),
    decoder_spatio_temporal_scaling=(True,) * 4, decoder_inject_noise=(False,) * 5,
    downsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
    upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"), upsample_factor=(2, 2, 1, 2),
    upsample_residual=(False, False, False, True), patch_size=4, decoder_causal=False, spatial_compression_ratio=32,
    temporal_compression_ratio=8)
TINY_AUDIO_VAE = LTX2AudioVAEConfig(
    base_channels=6, ch_mult=(1, 2, 3), num_res_blocks=1, attn_resolutions=(4,), resolution=8, latent_channels=2,
    mid_block_add_attention=True, mel_bins=12, in_channels=2, output_channels=2)
# 240 samples per mel frame (16 kHz / hop 160 = 100 frames a second): a waveform at 24 kHz, LTX-2's rate.
TINY_VOCODER = LTX2VocoderConfig(
    in_channels=24, hidden_channels=16, out_channels=2, upsample_kernel_sizes=(16, 12, 10), upsample_factors=(8, 6, 5),
    resnet_kernel_sizes=(3, 5), resnet_dilations=((1, 3), (1, 2)), output_sampling_rate=24000)

# The x2 spatial latent upsampler of the two-stage recipe (``--upsampler tiny-random``): 32 wide (its group norms'
# 32 groups), one block per stage.
TINY_LTX2_UPSAMPLER = LTX2LatentUpsamplerConfig(in_channels=8, mid_channels=32, num_blocks_per_stage=1)

#: The PRNG of the tiny params' init: XLA's RngBitGenerator compiles each module's init in seconds on a CPU where
#: threefry's takes half a minute (the VAEs' hundreds of parameters); the values differ by backend, which is no matter
#: for random weights.
TINY_KEY_IMPL = "unsafe_rbg"

#: What a call of the tiny pipeline defaults to (diffusers' guidance; a size and step count a CPU runs in seconds;
#: STG on the last of the two blocks; prompts padded to 64 tokens).
TINY_DEFAULTS = LTX2Request(height=64, width=64, num_frames=9, frame_rate=24.0, num_inference_steps=4,
                            spatio_temporal_guidance_blocks=(1,), max_sequence_length=64)


TINY_LTX2_CONFIGS = LTX2Configs(TINY_GEMMA, TINY_CONNECTORS, TINY_LTX2_TRANSFORMER, TINY_LTX2_VAE, TINY_AUDIO_VAE,
                                TINY_VOCODER)


def tiny_gemma_tokenizer():
    """The tiny Gemma's tokenizer: a word-level one over ``WORDS`` (``word_level_gemma_tokenizer``)."""
    return word_level_gemma_tokenizer(TOKENIZER_CORPUS)


def tiny_random_ltx2_pipeline(dtype: Any = "float32", seed: int = 0, weights: str | None = None,
                              text_encoder_weights: str | None = None, compute: str | None = None, *,
                              cls=LTX2Pipeline, progress: bool = False) -> LTX2Pipeline:
    """An ``LTX2Pipeline`` (or ``cls``, e.g. ``LTX2ImageToVideoPipeline``) with tiny random components (module
    docstring), ``TINY_DEFAULTS`` as its defaults; ``weights`` ("int8" / "fp8"): the transformer's block kernels
    quantized from the same random float weights (``text_encoder_weights``: Gemma's); ``compute="fp8"`` (with
    ``weights="fp8"``): its fp8 x fp8 matmuls; ``progress``: a progress bar while denoising."""
    floats = ltx2_modules(TINY_LTX2_CONFIGS, dtype)
    modules = ltx2_modules(TINY_LTX2_CONFIGS, dtype, weights, text_encoder_weights, compute)
    keys = dict(zip(floats, jax.random.split(jax.random.key(seed, impl=TINY_KEY_IMPL), len(floats))))
    params = {}
    for name, module in floats.items():
        params[name] = init_params(module, keys[name])
        if getattr(modules[name], "weights", None) is not None:
            params[name] = quantize_params(params[name], abstract_params(modules[name]))
    return assemble_ltx2_pipeline(modules, params, tiny_gemma_tokenizer(), TINY_LTX2_CONFIGS.scheduler,
                                  defaults=TINY_DEFAULTS, cls=cls, progress=progress)


def tiny_random_ltx2_upsampler(dtype: Any = "float32", seed: int = 1) -> tuple[LTX2LatentUpsampler, dict]:
    """(module, params) of ``TINY_LTX2_UPSAMPLER`` with random params: the x2 upsampler of the tiny pipeline's
    latents, for its two-stage recipe (``LTX2TwoStagePipeline``)."""
    module = LTX2LatentUpsampler(TINY_LTX2_UPSAMPLER, dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(dtype))
    return module, init_params(module, jax.random.key(seed, impl=TINY_KEY_IMPL))

"""Frozen configs of the LTX-2 models, with diffusers' ``config.json`` field names and defaults.

One dataclass per diffusers class (``_class_name``); the defaults are diffusers' (= LTX-2 19B's transformer, video VAE,
audio VAE and vocoder). Values are checked at construction, and ``from_dict`` refuses unknown keys, as for LTX-Video
(``ltx_jax.configs``).

    >>> cfg = LTX2TransformerConfig.from_json("LTX-2/transformer/config.json")
    >>> cfg.inner_dim, cfg.audio_inner_dim
    (4096, 2048)

The released architectures are records in ``ltx_jax.releases``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar, Mapping

from ltx_jax.configs import (GROUP_NORM_GROUPS, _INT_AT_LEAST_0, _INT_AT_LEAST_1, _NUMBER_ABOVE_0, _NUMBER_AT_LEAST_0,
                             _check_fields, _dataclass_from_dict, config_from_json)


class _DiffusersConfig:
    """``from_dict`` / ``from_json`` / ``to_dict`` / ``replace`` for a frozen dataclass named after ``CLASS_NAME``."""

    CLASS_NAME: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]):
        return _dataclass_from_dict(cls, config)

    @classmethod
    def from_json(cls, path: str | os.PathLike):
        return config_from_json(cls, path)

    def to_dict(self) -> dict:
        return {"_class_name": self.CLASS_NAME, **dataclasses.asdict(self)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _one_of(config, name: str, allowed: tuple) -> None:
    value = getattr(config, name)
    if value not in allowed:
        raise ValueError(f"{type(config).__name__}: {name}={value!r} is not supported; use one of {list(allowed)}.")


# ------------------------------------------------------------------------------------------------------ transformer

@dataclasses.dataclass(frozen=True)
class LTX2TransformerConfig(_DiffusersConfig):
    """Architecture of ``LTX2VideoTransformer3DModel``: a video stream and an audio stream, each with self-attention,
    text cross-attention and audio <-> video cross-attention, ``num_layers`` blocks (defaults: LTX-2 19B)."""

    CLASS_NAME: ClassVar[str] = "LTX2VideoTransformer3DModel"

    # video
    in_channels: int = 128
    out_channels: int | None = 128
    patch_size: int = 1
    patch_size_t: int = 1
    num_attention_heads: int = 32
    attention_head_dim: int = 128
    cross_attention_dim: int = 4096
    vae_scale_factors: tuple[int, ...] = (8, 32, 32)
    pos_embed_max_pos: int = 20
    base_height: int = 2048
    base_width: int = 2048
    gated_attn: bool = False
    cross_attn_mod: bool = False
    # audio
    audio_in_channels: int = 128
    audio_out_channels: int | None = 128
    audio_patch_size: int = 1
    audio_patch_size_t: int = 1
    audio_num_attention_heads: int = 32
    audio_attention_head_dim: int = 64
    audio_cross_attention_dim: int = 2048
    audio_scale_factor: int = 4
    audio_pos_embed_max_pos: int = 20
    audio_sampling_rate: int = 16000
    audio_hop_length: int = 160
    audio_gated_attn: bool = False
    audio_cross_attn_mod: bool = False
    # shared
    num_layers: int = 48
    activation_fn: str = "gelu-approximate"
    qk_norm: str = "rms_norm_across_heads"
    norm_elementwise_affine: bool = False
    norm_eps: float = 1e-6
    caption_channels: int = 3840
    attention_bias: bool = True
    attention_out_bias: bool = True
    rope_theta: float = 10000.0
    rope_double_precision: bool = True
    causal_offset: int = 1
    timestep_scale_multiplier: int = 1000
    cross_attn_timestep_scale_multiplier: int = 1000
    rope_type: str = "interleaved"
    use_prompt_embeddings: bool = True
    perturbed_attn: bool = False
    ff_bias: bool = True
    audio_ff_bias: bool = True
    use_prompt_adaln_single: bool = True
    use_keyframes_abs_pos_embedding: bool = False

    def __post_init__(self):
        _check_fields(self, _INT_AT_LEAST_1, "in_channels", "patch_size", "patch_size_t", "num_attention_heads",
                      "attention_head_dim", "cross_attention_dim", "vae_scale_factors", "pos_embed_max_pos",
                      "base_height", "base_width", "audio_in_channels", "audio_patch_size", "audio_patch_size_t",
                      "audio_num_attention_heads", "audio_attention_head_dim", "audio_cross_attention_dim",
                      "audio_scale_factor", "audio_pos_embed_max_pos", "audio_sampling_rate", "audio_hop_length",
                      "num_layers", "caption_channels", "timestep_scale_multiplier",
                      "cross_attn_timestep_scale_multiplier")
        _check_fields(self, _INT_AT_LEAST_0, "causal_offset")
        _check_fields(self, _NUMBER_AT_LEAST_0, "norm_eps")
        _check_fields(self, _NUMBER_ABOVE_0, "rope_theta")
        _one_of(self, "activation_fn", ("gelu-approximate", "gelu"))
        _one_of(self, "qk_norm", ("rms_norm_across_heads",))
        _one_of(self, "rope_type", ("interleaved", "split"))
        if len(self.vae_scale_factors) != 3:
            raise ValueError(f"LTX2TransformerConfig: vae_scale_factors={self.vae_scale_factors!r} needs 3 entries "
                             "(frames, height, width); fix the config.")

    @property
    def inner_dim(self) -> int:
        """Width of the video stream (heads x head dim)."""
        return self.num_attention_heads * self.attention_head_dim

    @property
    def audio_inner_dim(self) -> int:
        """Width of the audio stream (audio heads x audio head dim)."""
        return self.audio_num_attention_heads * self.audio_attention_head_dim

    @property
    def video_out_channels(self) -> int:
        return self.out_channels or self.in_channels

    @property
    def audio_channels_out(self) -> int:
        return self.audio_out_channels or self.audio_in_channels

    @property
    def prompt_modulation(self) -> bool:
        """Whether the text cross-attention is modulated by the timestep (LTX-2.3's ``cross_attn_mod``)."""
        return self.cross_attn_mod or self.audio_cross_attn_mod


# ---------------------------------------------------------------------------------------------------- video VAE

@dataclasses.dataclass(frozen=True)
class LTX2VideoVAEConfig(_DiffusersConfig):
    """Architecture of ``AutoencoderKLLTX2Video`` (the causal video VAE; defaults: LTX-2's)."""

    CLASS_NAME: ClassVar[str] = "AutoencoderKLLTX2Video"

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 128
    block_out_channels: tuple[int, ...] = (256, 512, 1024, 2048)
    down_block_types: tuple[str, ...] = ("LTX2VideoDownBlock3D",) * 4
    decoder_block_out_channels: tuple[int, ...] = (256, 512, 1024)
    layers_per_block: tuple[int, ...] = (4, 6, 6, 2, 2)
    decoder_layers_per_block: tuple[int, ...] = (5, 5, 5, 5)
    spatio_temporal_scaling: bool | tuple[bool, ...] = (True, True, True, True)
    decoder_spatio_temporal_scaling: bool | tuple[bool, ...] = (True, True, True)
    decoder_inject_noise: bool | tuple[bool, ...] = (False, False, False, False)
    downsample_type: tuple[str, ...] = ("spatial", "temporal", "spatiotemporal", "spatiotemporal")
    upsample_type: tuple[str, ...] = ("spatiotemporal", "spatiotemporal", "spatiotemporal")
    upsample_residual: bool | tuple[bool, ...] = (True, True, True)
    upsample_factor: tuple[int, ...] = (2, 2, 2)
    timestep_conditioning: bool = False
    patch_size: int = 4
    patch_size_t: int = 1
    resnet_norm_eps: float = 1e-6
    scaling_factor: float = 1.0
    encoder_causal: bool = True
    decoder_causal: bool = True
    encoder_spatial_padding_mode: str = "zeros"
    decoder_spatial_padding_mode: str = "reflect"
    spatial_compression_ratio: int | None = None
    temporal_compression_ratio: int | None = None

    def __post_init__(self):
        _check_fields(self, _INT_AT_LEAST_1, "in_channels", "out_channels", "latent_channels", "block_out_channels",
                      "decoder_block_out_channels", "upsample_factor", "patch_size", "patch_size_t",
                      "spatial_compression_ratio", "temporal_compression_ratio")
        _check_fields(self, _INT_AT_LEAST_0, "layers_per_block", "decoder_layers_per_block")
        _check_fields(self, _NUMBER_AT_LEAST_0, "resnet_norm_eps")
        _check_fields(self, _NUMBER_ABOVE_0, "scaling_factor")
        for name in ("encoder_spatial_padding_mode", "decoder_spatial_padding_mode"):
            _one_of(self, name, ("zeros", "reflect", "replicate", "circular"))
        for kind in self.downsample_type:
            if kind not in ("conv", "spatial", "temporal", "spatiotemporal"):
                raise ValueError(f"LTX2VideoVAEConfig: downsample_type entry {kind!r} is not supported; use "
                                 "'conv', 'spatial', 'temporal' or 'spatiotemporal'.")
        for kind in self.upsample_type:
            if kind not in ("spatial", "temporal", "spatiotemporal"):
                raise ValueError(f"LTX2VideoVAEConfig: upsample_type entry {kind!r} is not supported; use "
                                 "'spatial', 'temporal' or 'spatiotemporal'.")


# ---------------------------------------------------------------------------------------------------- audio VAE

@dataclasses.dataclass(frozen=True)
class LTX2AudioVAEConfig(_DiffusersConfig):
    """Architecture of ``AutoencoderKLLTX2Audio`` (mel-spectrogram latents, causal 2-D convolutions)."""

    CLASS_NAME: ClassVar[str] = "AutoencoderKLLTX2Audio"

    base_channels: int = 128
    output_channels: int = 2
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] | None = None
    in_channels: int = 2
    resolution: int = 256
    latent_channels: int = 8
    norm_type: str = "pixel"
    causality_axis: str | None = "height"
    dropout: float = 0.0
    mid_block_add_attention: bool = False
    sample_rate: int = 16000
    mel_hop_length: int = 160
    is_causal: bool = True
    mel_bins: int | None = 64
    double_z: bool = True

    def __post_init__(self):
        _check_fields(self, _INT_AT_LEAST_1, "base_channels", "output_channels", "ch_mult", "in_channels",
                      "resolution", "latent_channels", "sample_rate", "mel_hop_length")
        _check_fields(self, _INT_AT_LEAST_0, "num_res_blocks")
        _one_of(self, "norm_type", ("pixel", "group"))
        _one_of(self, "causality_axis", (None, "none", "width", "height", "width-compatibility"))


# ------------------------------------------------------------------------------------------------------ vocoders

@dataclasses.dataclass(frozen=True)
class LTX2VocoderConfig(_DiffusersConfig):
    """Architecture of ``LTX2Vocoder`` (mel latents -> waveform at ``output_sampling_rate``; defaults: LTX-2's)."""

    CLASS_NAME: ClassVar[str] = "LTX2Vocoder"

    in_channels: int = 128
    hidden_channels: int = 1024
    out_channels: int = 2
    upsample_kernel_sizes: tuple[int, ...] = (16, 15, 8, 4, 4)
    upsample_factors: tuple[int, ...] = (6, 5, 2, 2, 2)
    resnet_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resnet_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    act_fn: str = "leaky_relu"
    leaky_relu_negative_slope: float = 0.1
    antialias: bool = False
    antialias_ratio: int = 2
    antialias_kernel_size: int = 12
    final_act_fn: str | None = "tanh"
    final_bias: bool = True
    output_sampling_rate: int = 24000

    def __post_init__(self):
        _check_vocoder(self, "")


@dataclasses.dataclass(frozen=True)
class LTX2VocoderWithBWEConfig(_DiffusersConfig):
    """Architecture of ``LTX2VocoderWithBWE`` (LTX-2.3): a vocoder, then a bandwidth-extension vocoder fed by the
    mel spectrogram (causal STFT) of the first one's waveform, resampled from ``input_sampling_rate`` to
    ``output_sampling_rate``."""

    CLASS_NAME: ClassVar[str] = "LTX2VocoderWithBWE"

    in_channels: int = 128
    hidden_channels: int = 1536
    out_channels: int = 2
    upsample_kernel_sizes: tuple[int, ...] = (11, 4, 4, 4, 4, 4)
    upsample_factors: tuple[int, ...] = (5, 2, 2, 2, 2, 2)
    resnet_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resnet_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    act_fn: str = "snakebeta"
    leaky_relu_negative_slope: float = 0.1
    antialias: bool = True
    antialias_ratio: int = 2
    antialias_kernel_size: int = 12
    final_act_fn: str | None = None
    final_bias: bool = False
    bwe_in_channels: int = 128
    bwe_hidden_channels: int = 512
    bwe_out_channels: int = 2
    bwe_upsample_kernel_sizes: tuple[int, ...] = (12, 11, 4, 4, 4)
    bwe_upsample_factors: tuple[int, ...] = (6, 5, 2, 2, 2)
    bwe_resnet_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    bwe_resnet_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    bwe_act_fn: str = "snakebeta"
    bwe_leaky_relu_negative_slope: float = 0.1
    bwe_antialias: bool = True
    bwe_antialias_ratio: int = 2
    bwe_antialias_kernel_size: int = 12
    bwe_final_act_fn: str | None = None
    bwe_final_bias: bool = False
    filter_length: int = 512
    hop_length: int = 80
    window_length: int = 512
    num_mel_channels: int = 64
    input_sampling_rate: int = 16000
    output_sampling_rate: int = 48000

    def __post_init__(self):
        _check_vocoder(self, "")
        _check_vocoder(self, "bwe_")
        _check_fields(self, _INT_AT_LEAST_1, "filter_length", "hop_length", "window_length", "num_mel_channels",
                      "input_sampling_rate", "output_sampling_rate")

    def vocoder_config(self) -> LTX2VocoderConfig:
        """The first stage as an ``LTX2VocoderConfig`` (its waveform is at ``input_sampling_rate``)."""
        return self._stage("", self.input_sampling_rate)

    def bwe_config(self) -> LTX2VocoderConfig:
        """The bandwidth-extension stage as an ``LTX2VocoderConfig``."""
        return self._stage("bwe_", self.output_sampling_rate)

    def _stage(self, prefix: str, sampling_rate: int) -> LTX2VocoderConfig:
        names = [f.name for f in dataclasses.fields(LTX2VocoderConfig) if f.name != "output_sampling_rate"]
        return LTX2VocoderConfig(**{n: getattr(self, prefix + n) for n in names}, output_sampling_rate=sampling_rate)


def _check_vocoder(config, prefix: str) -> None:
    """The rules every vocoder stage (``prefix`` "" or "bwe_") shares."""
    def name(n):
        return prefix + n

    _check_fields(config, _INT_AT_LEAST_1, name("in_channels"), name("hidden_channels"), name("out_channels"),
                  name("upsample_kernel_sizes"), name("upsample_factors"), name("resnet_kernel_sizes"),
                  name("antialias_ratio"), name("antialias_kernel_size"))
    if len(getattr(config, name("upsample_kernel_sizes"))) != len(getattr(config, name("upsample_factors"))):
        raise ValueError(f"{type(config).__name__}: {name('upsample_kernel_sizes')} and {name('upsample_factors')} "
                         "need one entry per upsampling stage each; fix the config.")
    if len(getattr(config, name("resnet_kernel_sizes"))) != len(getattr(config, name("resnet_dilations"))):
        raise ValueError(f"{type(config).__name__}: {name('resnet_kernel_sizes')} and {name('resnet_dilations')} "
                         "need one entry per resnet branch each; fix the config.")
    _one_of(config, name("act_fn"), ("leaky_relu", "snake", "snakebeta"))
    _one_of(config, name("final_act_fn"), (None, "tanh"))


# ---------------------------------------------------------------------------------------------- latent upsampler

@dataclasses.dataclass(frozen=True)
class LTX2LatentUpsamplerConfig(_DiffusersConfig):
    """Architecture of ``LTX2LatentUpsamplerModel``: spatial x2 or x1.5 (rational resampler), or temporal x2."""

    CLASS_NAME: ClassVar[str] = "LTX2LatentUpsamplerModel"

    in_channels: int = 128
    mid_channels: int = 1024
    num_blocks_per_stage: int = 4
    dims: int = 3
    spatial_upsample: bool = True
    temporal_upsample: bool = False
    rational_spatial_scale: float = 2.0
    use_rational_resampler: bool = True

    def __post_init__(self):
        _check_fields(self, _INT_AT_LEAST_1, "in_channels", "mid_channels", "num_blocks_per_stage")
        _check_fields(self, _NUMBER_ABOVE_0, "rational_spatial_scale")
        _one_of(self, "dims", (2, 3))
        if self.mid_channels % GROUP_NORM_GROUPS:
            raise ValueError(f"LTX2LatentUpsamplerConfig: mid_channels={self.mid_channels} must be a multiple of "
                             f"{GROUP_NORM_GROUPS} (its group norms have {GROUP_NORM_GROUPS} groups); fix the config.")
        if self.spatial_upsample and self.use_rational_resampler and self.rational_spatial_scale not in (
                0.75, 1.5, 2.0, 4.0):
            raise ValueError(f"LTX2LatentUpsamplerConfig: rational_spatial_scale={self.rational_spatial_scale} is not "
                             "supported; the rational resampler takes 0.75, 1.5, 2.0 or 4.0.")
        if self.dims == 2 and self.temporal_upsample:
            raise ValueError("LTX2LatentUpsamplerConfig: a temporal upsampler needs dims=3; fix the config.")
        if not (self.spatial_upsample or self.temporal_upsample):
            raise ValueError("LTX2LatentUpsamplerConfig: spatial_upsample and temporal_upsample are both false; "
                             "an upsampler needs one of them.")


LTX2_CONFIG_CLASSES = {cls.CLASS_NAME: cls for cls in (
    LTX2TransformerConfig, LTX2VideoVAEConfig, LTX2AudioVAEConfig, LTX2VocoderConfig, LTX2VocoderWithBWEConfig,
    LTX2LatentUpsamplerConfig)}

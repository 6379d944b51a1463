"""Frozen configs of LTX-2's text side after Gemma: the text connectors (diffusers' ``LTX2TextConnectors``) and
LTX-2.5's duration head (``LTX2DurationHead``), with diffusers' ``config.json`` field names and defaults, checked at
construction as ``ltx_jax.configs_ltx2``'s are.

    >>> cfg = LTX2TextConnectorsConfig.from_json("LTX-2/connectors/config.json")
    >>> cfg.text_encoder_dim, cfg.video_inner_dim, cfg.audio_inner_dim
    (188160, 3840, 3840)

The released architectures are module constants below (``LTX2_CONNECTORS``, ``LTX23_CONNECTORS``,
``LTX25_CONNECTORS``, ``LTX25_DURATION_HEAD``), each with its source.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ltx_jax.configs import _INT_AT_LEAST_1, _NUMBER_ABOVE_0, _check_fields, _is_int
from ltx_jax.configs_ltx2 import _DiffusersConfig, _one_of


@dataclasses.dataclass(frozen=True)
class LTX2TextConnectorsConfig(_DiffusersConfig):
    """Architecture of ``LTX2TextConnectors``: Gemma's stacked hidden states ([B, T, caption_channels,
    text_proj_in_factor], its embedding output and every layer's) normalised and projected (one shared projection
    to ``caption_channels``, LTX-2.0; or one per stream to ``video_hidden_dim`` / ``audio_hidden_dim``, LTX-2.3's
    ``per_modality_projections``), then one 1-D transformer per stream (the connectors: RoPE self-attention and a
    feed-forward, ``*_connector_num_layers`` blocks, padding replaced by learned registers). Defaults: diffusers'.

    ``causal_temporal_positioning`` is stored and unused, as in diffusers (its connectors never read it).
    """

    CLASS_NAME: ClassVar[str] = "LTX2TextConnectors"

    caption_channels: int = 3840
    text_proj_in_factor: int = 49
    video_connector_num_attention_heads: int = 30
    video_connector_attention_head_dim: int = 128
    video_connector_num_layers: int = 2
    video_connector_num_learnable_registers: int | None = 128
    video_gated_attn: bool = False
    audio_connector_num_attention_heads: int = 30
    audio_connector_attention_head_dim: int = 128
    audio_connector_num_layers: int = 2
    audio_connector_num_learnable_registers: int | None = 128
    audio_gated_attn: bool = False
    connector_rope_base_seq_len: int = 4096
    rope_theta: float = 10000.0
    rope_double_precision: bool = True
    causal_temporal_positioning: bool = False
    rope_type: str = "interleaved"
    per_modality_projections: bool = False
    video_hidden_dim: int = 4096
    audio_hidden_dim: int = 2048
    proj_bias: bool = False

    def __post_init__(self):
        _check_fields(self, _INT_AT_LEAST_1, "caption_channels", "text_proj_in_factor",
                      "video_connector_num_attention_heads", "video_connector_attention_head_dim",
                      "video_connector_num_layers", "audio_connector_num_attention_heads",
                      "audio_connector_attention_head_dim", "audio_connector_num_layers", "connector_rope_base_seq_len",
                      "video_hidden_dim", "audio_hidden_dim")
        _check_fields(self, _NUMBER_ABOVE_0, "rope_theta")
        _one_of(self, "rope_type", ("interleaved", "split"))
        name = type(self).__name__
        for stream in ("video", "audio"):
            registers = getattr(self, f"{stream}_connector_num_learnable_registers")
            if registers is not None and not (_is_int(registers) and registers >= 1):
                raise ValueError(f"{name}: {stream}_connector_num_learnable_registers={registers!r}; must be an int "
                                 ">= 1 or None (no registers) (fix the value in the config).")
            head_dim = getattr(self, f"{stream}_connector_attention_head_dim")
            if _is_int(head_dim) and head_dim % 2:
                raise ValueError(f"{name}: {stream}_connector_attention_head_dim={head_dim} is odd; RoPE rotates "
                                 "channel pairs, so each head needs an even width (fix the config).")
            width_name = f"{stream}_hidden_dim" if self.per_modality_projections else "caption_channels"
            width = getattr(self, width_name)
            if self.inner_dim(stream) != width:
                raise ValueError(f"{name}: the {stream} connector is {self.inner_dim(stream)} wide (heads x head dim) "
                                 f"but its input projection gives {width_name}={width}; they must be equal (fix the "
                                 "config).")

    def inner_dim(self, stream: str) -> int:
        """Width of the "video" or "audio" connector (heads x head dim)."""
        return (getattr(self, f"{stream}_connector_num_attention_heads")
                * getattr(self, f"{stream}_connector_attention_head_dim"))

    @property
    def video_inner_dim(self) -> int:
        """Width of the video text embeddings (the transformer's ``cross_attention_dim`` or caption channels)."""
        return self.inner_dim("video")

    @property
    def audio_inner_dim(self) -> int:
        """Width of the audio text embeddings."""
        return self.inner_dim("audio")

    @property
    def text_encoder_dim(self) -> int:
        """Width of the flattened Gemma stack the projection takes (caption_channels x text_proj_in_factor)."""
        return self.caption_channels * self.text_proj_in_factor


@dataclasses.dataclass(frozen=True)
class LTX2DurationHeadConfig(_DiffusersConfig):
    """Architecture of ``LTX2DurationHead`` (LTX-2.5): both streams' connector outputs projected to
    ``pooler_hidden_dim``, pooled by ``num_queries`` learned queries (``num_pooler_heads``-head cross-attention), an
    MLP to a log-duration in seconds. Defaults: diffusers' (= ltx-core's ``DurationHeadConfigurator`` defaults)."""

    CLASS_NAME: ClassVar[str] = "LTX2DurationHead"

    video_cross_attention_dim: int = 4096
    audio_cross_attention_dim: int = 2048
    pooler_hidden_dim: int = 256
    num_queries: int = 1
    num_pooler_heads: int = 4
    mlp_hidden_dim: int = 256

    def __post_init__(self):
        _check_fields(self, _INT_AT_LEAST_1, "video_cross_attention_dim", "audio_cross_attention_dim",
                      "pooler_hidden_dim", "num_queries", "num_pooler_heads", "mlp_hidden_dim")
        if self.pooler_hidden_dim % self.num_pooler_heads:
            raise ValueError(f"LTX2DurationHeadConfig: pooler_hidden_dim={self.pooler_hidden_dim} is not a multiple "
                             f"of num_pooler_heads={self.num_pooler_heads}; fix the config.")


# ------------------------------------------------------------------------------------------- released architectures
# Parameter counts (tests/test_ltx2_connectors.py: equal to diffusers' classes at these configs) are in the module
# constants' comments.

#: LTX-2 (19B): diffusers' ``scripts/convert_ltx2_to_diffusers.py`` ``get_ltx2_connectors_config("2.0")`` (diffusers
#: commit 17b53f08): Gemma-3-12B's 3840 features x 49 hidden states, one shared projection without bias, connectors of
#: 2 blocks of 30 x 128 with 128 registers, split RoPE in float64 over positions / 4096. ltx-core agrees: its
#: ``Embeddings1DConnectorConfigurator`` defaults (30 heads x 128, 2 layers, 128 registers) and
#: ``FeatureExtractorV1`` (``aggregate_embed``: Linear(3840 x 49, 3840, bias=False)). 1,431,475,200 params.
LTX2_CONNECTORS = LTX2TextConnectorsConfig(rope_type="split", rope_double_precision=True)

#: LTX-2.3 (22B): diffusers' conversion script, ``get_ltx2_connectors_config("2.3")``: 8-block connectors, video
#: 32 x 128 (4096, the transformer's ``cross_attention_dim``), audio 32 x 64 (2048), gated attention in both, and one
#: projection per stream with bias (ltx-core's ``FeatureExtractorV2``: ``video_aggregate_embed`` /
#: ``audio_aggregate_embed``). The released files' metadata (``config.transformer``) says the same:
#: ``connector_num_layers`` 8, ``connector_num_attention_heads`` 32, ``connector_attention_head_dim`` 128,
#: ``audio_connector_attention_head_dim`` 64 (the audio heads fall back to the video connector's 32),
#: ``connector_apply_gated_attention`` true, ``connector_positional_embedding_max_pos`` [4096], ``rope_type`` split,
#: ``frequencies_precision`` float64. 3,172,227,584 params.
LTX23_CONNECTORS = LTX2_CONNECTORS.replace(
    video_connector_num_attention_heads=32, video_connector_num_layers=8, video_gated_attn=True,
    audio_connector_num_attention_heads=32, audio_connector_attention_head_dim=64, audio_connector_num_layers=8,
    audio_gated_attn=True, per_modality_projections=True, video_hidden_dim=4096, audio_hidden_dim=2048,
    proj_bias=True)

#: LTX-2.5 (22B): LTX-2.3's connectors over Gemma 4 12B (3840 wide, 48 layers + the embeddings = 49), diffusers'
#: conversion script ``get_ltx2_connectors_config("2.5")`` (it derives the two Gemma sizes from the text encoder's
#: config; these are Gemma-4-12B's).
LTX25_CONNECTORS = LTX23_CONNECTORS

#: LTX-2.5's duration head (``ltx-2.5-duration-head-bf16.safetensors``): ltx-core's ``DurationHeadConfigurator``
#: defaults (the file's metadata gives only the two connector widths, 4096 and 2048), which its tensors confirm
#: (``video_input_proj.weight`` [256, 4096], ``in_proj_weight`` [768, 256]). 1,903,361 params.
LTX25_DURATION_HEAD = LTX2DurationHeadConfig()

LTX2_TEXT_CONFIG_CLASSES = {cls.CLASS_NAME: cls for cls in (LTX2TextConnectorsConfig, LTX2DurationHeadConfig)}

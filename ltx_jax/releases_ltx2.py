"""The released LTX-2 checkpoints (LTX-2, LTX-2.3, LTX-2.5), one ``LTX2Release`` record each, and their upscalers.

    >>> release = LTX2_RELEASES["ltx-2.3-22b-distilled"]
    >>> release.transformer.gated_attn, release.vocoder.output_sampling_rate
    (True, 48000)
    >>> detect_ltx2_release("ltx-2-19b-dev-fp8.safetensors", transformer_config)

Sources: diffusers' ``scripts/convert_ltx2_to_diffusers.py`` (the LTX-2 configs it writes), Lightricks' ``ltx-core``
model configurators and the ``config`` metadata of the released single files (LTX-2.3: gated attention, timestep-
modulated text cross-attention, the caption projection moved into the text connectors, the bandwidth-extension vocoder
at 48 kHz; LTX-2.5: no video FFN biases, the learned keyframe position embedding), and the file lists of Lightricks'
``README.md`` / ``MODELS-LTX-2.3.md``. LTX-2.5's diffusion VAE decoder (neighborhood attention) is not supported: its
convolutional decoder file (``ltx-2.5-video-vae-conv-bf16.safetensors``) is.

Detection (``detect_ltx2_release``) trusts the transformer config first (LTX-2, 2.3 and 2.5 differ in it), then the
file or folder name (``dev`` / ``distilled``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings

from ltx_jax.configs_ltx2 import (LTX2AudioVAEConfig, LTX2LatentUpsamplerConfig, LTX2TransformerConfig,
                                  LTX2VideoVAEConfig, LTX2VocoderConfig, LTX2VocoderWithBWEConfig)

# ------------------------------------------------------------------------------------------- architectures
# Parameter counts (tests: equal to diffusers' classes at these configs): transformer 18,876,174,592 (LTX-2) and
# 18,988,838,144 (LTX-2.3); video VAE 1,222,479,857 / 726,106,225; audio VAE 53,248,146; vocoder 55,592,802 /
# 128,537,448 (with bandwidth extension); upscalers 497,867,904 (x2), 545,058,944 (x1.5), 130,968,192 (temporal).

#: LTX-2 (19B): video 32 x 128 (4096 wide), audio 32 x 64 (2048 wide), 48 blocks; split RoPE in float64; the caption
#: projections (Gemma's 3840 features -> each stream's width) in the transformer. ``perturbed_attn``: STG's perturbed
#: self-attention (a switch without weights; diffusers' pipelines run STG on block 28 by default).
_LTX2_19B = LTX2TransformerConfig(rope_type="split", rope_double_precision=True, perturbed_attn=True,
                                  cross_attn_timestep_scale_multiplier=1000)
#: LTX-2.3 (22B with its larger text connectors): the same widths; gated attention and timestep-modulated text
#: cross-attention in both streams; no caption projections (the connectors project).
_LTX23_22B = _LTX2_19B.replace(gated_attn=True, audio_gated_attn=True, cross_attn_mod=True, audio_cross_attn_mod=True,
                               use_prompt_embeddings=False)
#: LTX-2.5 (22B): LTX-2.3 without the video FFN biases, with the keyframe position embedding.
_LTX25_22B = _LTX23_22B.replace(ff_bias=False, use_keyframes_abs_pos_embedding=True)

LTX2_TRANSFORMER_PRESETS: dict[str, LTX2TransformerConfig] = {
    "ltx-2-19b": _LTX2_19B, "ltx-2.3-22b": _LTX23_22B, "ltx-2.5-22b": _LTX25_22B,
}

#: The video VAE of LTX-2 (diffusers' conversion): 32x spatial / 8x temporal, 128 latent channels, a non-causal
#: decoder with reflect padding, no timestep conditioning.
_VIDEO_VAE_2 = LTX2VideoVAEConfig(decoder_causal=False, spatial_compression_ratio=32, temporal_compression_ratio=8)
#: LTX-2.3's video VAE (diffusers' conversion script, version "2.3"; LTX-2.5's convolutional decoder file is taken to
#: share it): narrower deep blocks (1024 at most), a decoder of four up blocks (two spatiotemporal, a temporal and a
#: spatial one) without residual upsampling, zero padding.
_VIDEO_VAE_23 = _VIDEO_VAE_2.replace(
    block_out_channels=(256, 512, 1024, 1024), decoder_block_out_channels=(256, 512, 512, 1024),
    layers_per_block=(4, 6, 4, 2, 2), decoder_layers_per_block=(4, 6, 4, 2, 2),
    decoder_spatio_temporal_scaling=(True,) * 4, decoder_inject_noise=(False,) * 5,
    upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"), upsample_factor=(2, 2, 1, 2),
    upsample_residual=(False,) * 4, decoder_spatial_padding_mode="zeros")
LTX2_VIDEO_VAE_PRESETS: dict[str, LTX2VideoVAEConfig] = {"ltx-2": _VIDEO_VAE_2, "ltx-2.3": _VIDEO_VAE_23}
LTX2_AUDIO_VAE_PRESETS: dict[str, LTX2AudioVAEConfig] = {"ltx-2": LTX2AudioVAEConfig()}
#: LTX-2's vocoder writes 24 kHz; LTX-2.3's adds a bandwidth extension to 48 kHz.
LTX2_VOCODER_PRESETS: dict[str, LTX2VocoderConfig | LTX2VocoderWithBWEConfig] = {
    "ltx-2": LTX2VocoderConfig(), "ltx-2.3": LTX2VocoderWithBWEConfig(),
}

#: Lightricks' latent upscalers by file name (spatial x2 and x1.5 by a rational resampler, temporal x2).
_SPATIAL_X2 = LTX2LatentUpsamplerConfig()
_SPATIAL_X1_5 = LTX2LatentUpsamplerConfig(rational_spatial_scale=1.5)
# the temporal upscaler is 512 wide (its file's metadata; 261,944,000 bytes in bf16)
_TEMPORAL_X2 = LTX2LatentUpsamplerConfig(mid_channels=512, spatial_upsample=False, temporal_upsample=True)
LTX2_LATENT_UPSAMPLER_PRESETS: dict[str, LTX2LatentUpsamplerConfig] = {
    "ltx-2-spatial-upscaler-x2-1.0.safetensors": _SPATIAL_X2,
    "ltx-2-temporal-upscaler-x2-1.0.safetensors": _TEMPORAL_X2,
    "ltx-2.3-spatial-upscaler-x2-1.0.safetensors": _SPATIAL_X2,
    "ltx-2.3-spatial-upscaler-x2-1.1.safetensors": _SPATIAL_X2,
    "ltx-2.3-spatial-upscaler-x1.5-1.0.safetensors": _SPATIAL_X1_5,
    "ltx-2.3-temporal-upscaler-x2-1.0.safetensors": _TEMPORAL_X2,
    "ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0.safetensors": _SPATIAL_X2,
    "ltx-2.5-latent-temporal-upscaler-x2-bf16-1.0.safetensors": _TEMPORAL_X2,
}

# ------------------------------------------------------------------------------------------------ defaults


@dataclasses.dataclass(frozen=True)
class LTX2ModalityGuidance:
    """One modality's guidance strengths (Lightricks' ``MultiModalGuiderParams``; diffusers' ``guidance_scale``,
    ``stg_scale``, ``guidance_rescale``, ``modality_scale``; the STG blocks serve both modalities' one forward)."""

    guidance_scale: float = 1.0
    stg_scale: float = 0.0
    guidance_rescale: float = 0.0
    modality_scale: float = 1.0
    stg_blocks: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class LTX2Defaults:
    """A release's generation defaults (Lightricks' ``ltx_pipelines.utils.constants``: ``LTX_2_PARAMS``,
    ``LTX_2_3_PARAMS``, the distilled sigmas): the first stage's size, steps or sigmas, and each modality's guidance;
    ``stage_2_sigmas`` is the refining pass after the x2 upscaler (at twice the size)."""

    height: int = 512
    width: int = 768
    num_frames: int = 121
    frame_rate: float = 24.0
    num_inference_steps: int = 40
    sigmas: tuple[float, ...] | None = None
    stage_2_sigmas: tuple[float, ...] | None = None
    video: LTX2ModalityGuidance = LTX2ModalityGuidance()
    audio: LTX2ModalityGuidance = LTX2ModalityGuidance()


#: The distilled models' schedules (8 steps, then 3 refining steps from 0.909375 after the x2 upscaler).
LTX2_DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0)
LTX2_STAGE_2_DISTILLED_SIGMAS = (0.909375, 0.725, 0.421875, 0.0)
_DEV_2 = LTX2Defaults(video=LTX2ModalityGuidance(3.0, 1.0, 0.7, 3.0, (29,)),
                      audio=LTX2ModalityGuidance(7.0, 1.0, 0.7, 3.0, (29,)))
_DEV_23 = dataclasses.replace(_DEV_2, num_inference_steps=30,
                              video=dataclasses.replace(_DEV_2.video, stg_blocks=(28,)),
                              audio=dataclasses.replace(_DEV_2.audio, stg_blocks=(28,)))
_DISTILLED = LTX2Defaults(num_inference_steps=len(LTX2_DISTILLED_SIGMAS) - 1, sigmas=LTX2_DISTILLED_SIGMAS,
                          stage_2_sigmas=LTX2_STAGE_2_DISTILLED_SIGMAS)

# ------------------------------------------------------------------------------------------------- records


@dataclasses.dataclass(frozen=True)
class LTX2Release:
    """One released LTX-2 checkpoint.

    Attributes:
      name: ``ltx-<version>-<size>-<variant>``, e.g. "ltx-2.3-22b-distilled".
      version: "2.0", "2.3" or "2.5"; size: "19b" or "22b"; variant: "dev" or "distilled".
      transformer, video_vae, audio_vae, vocoder: the architectures.
      text_encoder: the Gemma it reads prompts with ("gemma-3-12b" or "gemma-4-12b"; issue 27 builds it).
      files: Lightricks' file names of this checkpoint (single files bundling every component for 2.0 / 2.3; the
        transformer file for 2.5, whose components are separate files).
      distilled_lora: the LoRA that turns the dev model into the distilled one (the two-stage recipes' second stage).
      latent_upsamplers: the upscaler files released with it (``LTX2_LATENT_UPSAMPLER_PRESETS``).
      recommended_size: (height, width, num_frames) of the model card's examples.
      defaults: generation defaults (the distilled sigmas, or the dev steps and per-modality guidance).
    """

    name: str
    version: str
    size: str
    variant: str
    transformer: LTX2TransformerConfig
    video_vae: LTX2VideoVAEConfig
    audio_vae: LTX2AudioVAEConfig
    vocoder: LTX2VocoderConfig | LTX2VocoderWithBWEConfig
    text_encoder: str
    files: tuple[str, ...] = ()
    distilled_lora: str | None = None
    latent_upsamplers: tuple[str, ...] = ()
    recommended_size: tuple[int, int, int] = (512, 768, 121)
    defaults: LTX2Defaults = LTX2Defaults()

    @property
    def distilled(self) -> bool:
        return self.variant == "distilled"

    def validate(self) -> None:
        """Raises ValueError listing every way this record contradicts its own architectures."""
        problems = ltx2_release_problems(self)
        if problems:
            raise ValueError(f"release {self.name}: " + "; ".join(problems))


_UPSCALERS_2 = ("ltx-2-spatial-upscaler-x2-1.0.safetensors", "ltx-2-temporal-upscaler-x2-1.0.safetensors")
_UPSCALERS_23 = ("ltx-2.3-spatial-upscaler-x2-1.1.safetensors", "ltx-2.3-spatial-upscaler-x2-1.0.safetensors",
                 "ltx-2.3-spatial-upscaler-x1.5-1.0.safetensors", "ltx-2.3-temporal-upscaler-x2-1.0.safetensors")
_UPSCALERS_25 = ("ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0.safetensors",
                 "ltx-2.5-latent-temporal-upscaler-x2-bf16-1.0.safetensors")
_AUDIO_VAE, _VOCODER_2, _VOCODER_23 = LTX2_AUDIO_VAE_PRESETS["ltx-2"], *LTX2_VOCODER_PRESETS.values()


def _release(version: str, size: str, variant: str, files: tuple[str, ...], **kwargs) -> LTX2Release:
    transformer = LTX2_TRANSFORMER_PRESETS[f"ltx-{version.removesuffix('.0')}-{size}"]
    defaults = dict(video_vae=_VIDEO_VAE_2 if version == "2.0" else _VIDEO_VAE_23, audio_vae=_AUDIO_VAE,
                    vocoder=_VOCODER_2 if version == "2.0" else _VOCODER_23,
                    text_encoder="gemma-4-12b" if version == "2.5" else "gemma-3-12b",
                    defaults=_DISTILLED if variant == "distilled" else _DEV_2 if version == "2.0" else _DEV_23)
    return LTX2Release(f"ltx-{version.removesuffix('.0')}-{size}-{variant}", version, size, variant, transformer,
                       files=files, **{**defaults, **kwargs})


LTX2_RELEASES: dict[str, LTX2Release] = {r.name: r for r in (
    _release("2.0", "19b", "dev", ("ltx-2-19b-dev.safetensors", "ltx-2-19b-dev-fp8.safetensors"),
             distilled_lora="ltx-2-19b-distilled-lora-384.safetensors", latent_upsamplers=_UPSCALERS_2),
    _release("2.0", "19b", "distilled", ("ltx-2-19b-distilled.safetensors", "ltx-2-19b-distilled-fp8.safetensors"),
             latent_upsamplers=_UPSCALERS_2),
    _release("2.3", "22b", "dev", ("ltx-2.3-22b-dev.safetensors",),
             distilled_lora="ltx-2.3-22b-distilled-lora-384-1.1.safetensors", latent_upsamplers=_UPSCALERS_23),
    _release("2.3", "22b", "distilled", ("ltx-2.3-22b-distilled-1.1.safetensors", "ltx-2.3-22b-distilled.safetensors"),
             latent_upsamplers=_UPSCALERS_23),
    _release("2.5", "22b", "dev", ("ltx-2.5-22b-dev-transformer-bf16.safetensors",),
             distilled_lora="ltx-2.5-22b-distilled-lora-450-bf16.safetensors", latent_upsamplers=_UPSCALERS_25),
    _release("2.5", "22b", "distilled", ("ltx-2.5-22b-distilled-transformer-bf16.safetensors",),
             latent_upsamplers=_UPSCALERS_25),
)}


def ltx2_release_problems(release: LTX2Release) -> list[str]:
    """Every way a record contradicts its own architectures (latent channels between the VAEs, the transformer and
    the upscalers; the audio latent rate against the transformer's RoPE; the recommended size against the VAE's
    ratios). Empty when the record is sound."""
    t, video, audio = release.transformer, release.video_vae, release.audio_vae
    problems = []
    video_channels = video.latent_channels * t.patch_size**2 * t.patch_size_t
    if t.in_channels != video_channels or t.video_out_channels != t.in_channels:
        problems.append(f"the transformer's video stream takes {t.in_channels} channels, the video VAE's latents in "
                        f"patches make {video_channels}")
    audio_channels = audio.latent_channels * (audio.mel_bins or 0) // 4  # mel bins / 4 after the encoder's two halvings
    if t.audio_in_channels != audio_channels:
        problems.append(f"the transformer's audio stream takes {t.audio_in_channels} channels, the audio VAE's "
                        f"latents make {audio_channels} ({audio.latent_channels} channels x {audio.mel_bins} / 4 bins)")
    if (t.audio_sampling_rate, t.audio_hop_length) != (audio.sample_rate, audio.mel_hop_length):
        problems.append(f"the transformer places audio tokens at {t.audio_sampling_rate} Hz / hop {t.audio_hop_length},"
                        f" the audio VAE's mels are {audio.sample_rate} Hz / hop {audio.mel_hop_length}")
    height, width, frames = release.recommended_size
    if height % video.spatial_compression_ratio or width % video.spatial_compression_ratio or (
            (frames - 1) % video.temporal_compression_ratio):
        problems.append(f"recommended_size {width}x{height}x{frames} does not fit the VAE's ratios")
    d = release.defaults
    for name, sigmas in (("sigmas", d.sigmas), ("stage_2_sigmas", d.stage_2_sigmas)):
        if sigmas is not None and (any(a <= b for a, b in zip(sigmas, sigmas[1:])) or not 0 <= sigmas[-1] < 1):
            problems.append(f"defaults.{name} {sigmas} do not decrease to a final value in [0, 1)")
    if d.sigmas is not None and len(d.sigmas) != d.num_inference_steps + 1:
        problems.append(f"defaults: {len(d.sigmas)} sigmas for {d.num_inference_steps} steps (steps + 1 wanted)")
    blocks = [b for g in (d.video, d.audio) for b in g.stg_blocks if not 0 <= b < t.num_layers]
    if blocks:
        problems.append(f"defaults name STG block(s) {blocks}; the transformer's blocks are 0 .. {t.num_layers - 1}")
    for name in release.latent_upsamplers:
        upsampler = LTX2_LATENT_UPSAMPLER_PRESETS.get(name)
        if upsampler is None:
            problems.append(f"latent upsampler {name} has no LTX2_LATENT_UPSAMPLER_PRESETS entry")
        elif upsampler.in_channels != video.latent_channels:
            problems.append(f"latent upsampler {name} takes {upsampler.in_channels} channels, the VAE makes "
                            f"{video.latent_channels}")
    return problems


def get_ltx2_release(name: str) -> LTX2Release:
    """The record of an LTX-2 release name; an unknown name is refused with the list."""
    if name not in LTX2_RELEASES:
        raise ValueError(f"unknown LTX-2 release {name!r}; known: {', '.join(LTX2_RELEASES)}.")
    return LTX2_RELEASES[name]


# ---------------------------------------------------------------------------------------------- detection

_LTX2_VERSION = re.compile(r"ltx[-_]?(?:video[-_]?)?2(?:\.(\d))?(?![\d])")


def _ltx2_name_hints(path: str) -> dict[str, str]:
    """Version and variant a file or folder name says (``ltx-2.3-22b-distilled-1.1.safetensors`` ->
    {"version": "2.3", "variant": "distilled"}; ``LTX-2`` -> {"version": "2.0"})."""
    name = os.path.basename(os.path.normpath(os.fspath(path))).lower()
    hints = {}
    if match := _LTX2_VERSION.search(name):
        hints["version"] = f"2.{match.group(1) or 0}"
    if "distill" in name and "lora" not in name:
        hints["variant"] = "distilled"
    elif re.search(r"(?<![a-z])dev(?![a-z])", name):
        hints["variant"] = "dev"
    return hints


def detect_ltx2_release(path: str | os.PathLike, transformer_config: LTX2TransformerConfig | None = None
                        ) -> LTX2Release | None:
    """The LTX-2 release a checkpoint belongs to, or None when nothing identifies one.

    The transformer config selects the version (2.0, 2.3 and 2.5 differ in it); the name picks dev or distilled and,
    for a config that is none of the releases' (a fine-tune, a tiny model), the version. Several candidates left: the
    dev one, with a warning naming it.
    """
    hints = _ltx2_name_hints(os.fspath(path))
    by_config = [r for r in LTX2_RELEASES.values() if r.transformer == transformer_config]
    if not by_config and not hints:
        return None
    candidates = by_config or list(LTX2_RELEASES.values())
    def fits(release, *keys):
        return all(hints.get(k, getattr(release, k)) == getattr(release, k) for k in keys)

    # the name's version and variant; a version the config contradicts still leaves the variant to the name
    candidates = ([r for r in candidates if fits(r, "version", "variant")] or
                  [r for r in by_config if fits(r, "variant")] or by_config)
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    choice = next((r for r in candidates if not r.distilled), candidates[0])
    warnings.warn(f"{os.fspath(path)}: the checkpoint fits {len(candidates)} LTX-2 releases "
                  f"({', '.join(r.name for r in candidates)}) and its name does not say which; using {choice.name}.",
                  UserWarning, stacklevel=2)
    return choice

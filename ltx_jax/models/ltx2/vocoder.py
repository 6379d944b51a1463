"""LTX-2's vocoders (diffusers' ``LTX2Vocoder`` and LTX-2.3's ``LTX2VocoderWithBWE``) as Flax linen modules,
channels-last.

Axis letters in shape comments:
    B batch, T mel frames, M mel bins, C channels (2: stereo), S waveform samples, F STFT frequencies.

Input: the audio VAE's decoded mel spectrogram [B, T, M, C] (diffusers' ``[B, C, T, M]`` permuted (0, 2, 3, 1),
what ``AutoencoderKLLTX2Audio.decode`` returns); the channels and bins are flattened to ``in_channels = C * M``
features in diffusers' order (c * M + m). Output: the waveform [B, S, out_channels] (diffusers'
``[B, out_channels, S]`` transposed), S = T * prod(upsample_factors) at ``output_sampling_rate``.

    >>> vocoder = LTX2Vocoder(LTX2VocoderConfig())                    # LTX-2: 24 kHz, x240 per mel frame
    >>> wave = vocoder.apply({"params": p}, mel)                      # [B, 240 T, 2]
    >>> bwe = LTX2VocoderWithBWE(LTX2VocoderWithBWEConfig())          # LTX-2.3: 16 kHz stage, then 48 kHz
    >>> wave = bwe.apply({"params": p}, mel)                          # [B, 480 T, 2]

Parameter names follow diffusers (``upsamplers.0.weight`` is ``upsamplers_0/kernel``, ``resnets.4.acts1.2.act.alpha``
is ``resnets_4/acts1_2/act/alpha``), so conversion is a table (``weight_conversion/ltx2_audio.py``). The persistent
buffers (anti-aliasing filters, STFT and mel bases) are params here (``vocoder_layers.BUFFER_LEAVES``); the STFT and
mel bases start as zeros, as in diffusers, and come from the checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltx_jax.configs_ltx2 import LTX2VocoderConfig, LTX2VocoderWithBWEConfig
from ltx_jax.models.ltx2.vocoder_layers import (BUFFER_LEAVES, AntiAliasAct1d, ConvTranspose1d, ResBlock, conv1d,
                                                hann_upsample, pad_time)

Dtype = Any
__all__ = ["BUFFER_LEAVES", "LTX2Vocoder", "LTX2VocoderWithBWE", "MelSTFT", "flatten_mel"]


def flatten_mel(mel: jax.Array) -> jax.Array:
    """[B, T, M, C] -> [B, T, C*M], feature index c * M + m (diffusers' ``transpose(2, 3).flatten(1, 2)``)."""
    b, t, m, c = mel.shape
    return jnp.swapaxes(mel, 2, 3).reshape(b, t, c * m)


def _check_vocoder(cfg: LTX2VocoderConfig, what: str) -> None:
    if cfg.act_fn == "leaky_relu" and cfg.antialias:
        raise ValueError(f"{what}: act_fn='leaky_relu' with antialias=True is not supported (diffusers' ResBlock "
                         "nests the anti-aliased LeakyReLUs of that combination into each other).")
    if cfg.hidden_channels % 2 ** len(cfg.upsample_factors):
        raise ValueError(f"{what}: hidden_channels={cfg.hidden_channels} halves at each of the "
                         f"{len(cfg.upsample_factors)} upsampling stages; use a multiple of "
                         f"{2 ** len(cfg.upsample_factors)}.")


class LTX2Vocoder(nn.Module):
    """diffusers' ``LTX2Vocoder`` (HiFi-GAN / BigVGAN v2 generator).

    conv_in (k7) -> per stage i: (leaky ReLU) -> ``upsamplers_i`` (ConvTranspose x factor_i, width halved) -> mean
    of the stage's ``resnets`` (one per resnet kernel size) -> ``act_out`` -> conv_out (k7) -> (tanh).

    Attributes:
      config: the architecture (defaults: LTX-2's, 24 kHz).
      dtype: compute dtype of the convolutions; activations run in float32. Lightricks runs the vocoders in float32
        (bf16 degrades their spectra), so keep the default unless memory forces otherwise.
      param_dtype: dtype of the params created by ``init``.
      precision: convolution precision (None = backend default).
    """

    config: LTX2VocoderConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, mel: jax.Array) -> jax.Array:
        """mel [B, T, M, C] with C * M = in_channels -> waveform [B, T * prod(upsample_factors), out_channels]."""
        cfg = self.config
        _check_vocoder(cfg, "LTX2Vocoder")
        if mel.ndim != 4 or mel.shape[2] * mel.shape[3] != cfg.in_channels:
            raise ValueError(f"mel has shape {mel.shape}; expected [B, T, M, C] (channels-last) with C * M = "
                             f"in_channels = {cfg.in_channels}.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        h = conv1d(cfg.hidden_channels, 7, "conv_in", **kw)(flatten_mel(mel).astype(self.dtype))
        width = cfg.hidden_channels
        per_stage = len(cfg.resnet_kernel_sizes)
        for i, (factor, kernel) in enumerate(zip(cfg.upsample_factors, cfg.upsample_kernel_sizes)):
            if cfg.act_fn == "leaky_relu":
                h = jax.nn.leaky_relu(h, cfg.leaky_relu_negative_slope)
            width //= 2
            h = ConvTranspose1d(width, kernel, factor, (kernel - factor) // 2, name=f"upsamplers_{i}", **kw)(h)
            outs = [ResBlock(k, tuple(d), cfg.act_fn, cfg.leaky_relu_negative_slope, cfg.antialias,
                             cfg.antialias_ratio, cfg.antialias_kernel_size, name=f"resnets_{i * per_stage + j}",
                             **kw)(h)
                    for j, (k, d) in enumerate(zip(cfg.resnet_kernel_sizes, cfg.resnet_dilations))]
            h = (sum(o.astype(jnp.float32) for o in outs) / per_stage).astype(self.dtype)
        if cfg.act_fn == "leaky_relu":
            h = jax.nn.leaky_relu(h, 0.01)  # torch's default slope, as diffusers (and the original) use here
        else:  # always anti-aliased SnakeBeta, whatever act_fn and antialias say
            h = AntiAliasAct1d(True, cfg.antialias_ratio, cfg.antialias_kernel_size, self.param_dtype, self.precision,
                               name="act_out")(h)
        h = conv1d(cfg.out_channels, 7, "conv_out", use_bias=cfg.final_bias, **kw)(h)
        if cfg.final_act_fn == "tanh":
            h = jnp.tanh(h)
        elif cfg.final_act_fn == "clamp":
            h = jnp.clip(h, -1, 1)
        return h

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        return (jnp.zeros((1, 2, self.config.in_channels, 1), self.dtype),), {}


class MelSTFT(nn.Module):
    """diffusers' ``MelSTFT``: a causal STFT as a strided conv with ``stft_fn/forward_basis`` [L, 1, 2F] (torch's
    [2F, 1, L] buffer, conv layout; ``inverse_basis`` is loaded but unused), magnitudes projected on ``mel_basis``
    [n_mels, F], then ``log(max(mel, 1e-5))``. Waveforms [N, S] -> log-mel [N, S / hop, n_mels] (S a multiple of
    ``hop_length``); float32 throughout."""

    filter_length: int = 512
    hop_length: int = 80
    window_length: int = 512
    num_mel_channels: int = 64
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, wave: jax.Array) -> jax.Array:
        freqs = self.filter_length // 2 + 1
        stft = _STFTBases((self.filter_length, 1, 2 * freqs), self.param_dtype, name="stft_fn")()
        mel_basis = self.param("mel_basis", nn.with_logical_partitioning(nn.initializers.zeros, ("replicated",) * 2),
                               (self.num_mel_channels, freqs), self.param_dtype)
        x = pad_time(wave.astype(jnp.float32)[..., None], max(0, self.window_length - self.hop_length), 0,
                     mode="constant")
        spec = jax.lax.conv_general_dilated(x, stft.astype(jnp.float32), (self.hop_length,), [(0, 0)],
                                            dimension_numbers=("NWC", "WIO", "NWC"),
                                            precision=self.precision)  # [N, frames, 2F]
        real, imag = spec[..., :freqs], spec[..., freqs:]
        magnitude = jnp.sqrt(real ** 2 + imag ** 2)
        mel = jnp.einsum("ntf,mf->ntm", magnitude, mel_basis.astype(jnp.float32), precision=self.precision)
        return jnp.log(jnp.maximum(mel, 1e-5))


class _STFTBases(nn.Module):
    """``stft_fn``'s two buffers ``forward_basis`` / ``inverse_basis`` (conv layout [L, 1, 2F]); returns the first."""

    shape: tuple[int, int, int]
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self) -> jax.Array:
        init = nn.with_logical_partitioning(nn.initializers.zeros, ("replicated",) * 3)
        self.param("inverse_basis", init, self.shape, self.param_dtype)
        return self.param("forward_basis", init, self.shape, self.param_dtype)


class LTX2VocoderWithBWE(nn.Module):
    """diffusers' ``LTX2VocoderWithBWE`` (LTX-2.3): ``vocoder`` (mel -> waveform at ``input_sampling_rate``), the
    waveform zero padded to a multiple of ``hop_length``, its causal log-mel (``mel_stft``) fed to ``bwe_generator``,
    whose output is a residual over the Hann-sinc resampled waveform; the sum clamped to [-1, 1] and cut to
    S * output_sampling_rate / input_sampling_rate samples.

    Attributes: as ``LTX2Vocoder`` (the STFT and mel front end always runs in float32).
    """

    config: LTX2VocoderWithBWEConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    def setup(self):
        cfg = self.config
        first, second = cfg.vocoder_config(), cfg.bwe_config()
        ratio = cfg.output_sampling_rate // cfg.input_sampling_rate
        if cfg.output_sampling_rate % cfg.input_sampling_rate:
            raise ValueError(f"LTX2VocoderWithBWEConfig: output_sampling_rate={cfg.output_sampling_rate} is not a "
                             f"multiple of input_sampling_rate={cfg.input_sampling_rate}.")
        if cfg.hop_length * ratio != math.prod(second.upsample_factors):
            raise ValueError(f"LTX2VocoderWithBWEConfig: the BWE stage makes prod(bwe_upsample_factors)="
                             f"{math.prod(second.upsample_factors)} samples per mel frame, the resampled skip "
                             f"hop_length * {ratio} = {cfg.hop_length * ratio}; they must agree.")
        if second.in_channels != first.out_channels * cfg.num_mel_channels:
            raise ValueError(f"LTX2VocoderWithBWEConfig: bwe_in_channels={second.in_channels}, but the BWE stage gets "
                             f"out_channels * num_mel_channels = {first.out_channels * cfg.num_mel_channels} features.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        self.vocoder = LTX2Vocoder(first, **kw)
        self.bwe_generator = LTX2Vocoder(second, **kw)
        self.mel_stft = MelSTFT(cfg.filter_length, cfg.hop_length, cfg.window_length, cfg.num_mel_channels,
                                self.param_dtype, self.precision)

    def __call__(self, mel: jax.Array) -> jax.Array:
        """mel [B, T, M, C] (as ``LTX2Vocoder``) -> waveform [B, T * prod(upsample_factors) * r, bwe_out_channels]
        at ``output_sampling_rate`` (r = output / input sampling rate), float32 in [-1, 1]."""
        cfg = self.config
        x = self.vocoder(mel).astype(jnp.float32)  # [B, S, C] at input_sampling_rate
        b, samples, c = x.shape
        x = pad_time(x, 0, -samples % cfg.hop_length, mode="constant")
        waves = jnp.swapaxes(x, 1, 2).reshape(b * c, x.shape[1])  # [B*C, S_pad]
        log_mel = self.mel_stft(waves)  # [B*C, frames, n_mels]
        log_mel = jnp.moveaxis(log_mel.reshape(b, c, *log_mel.shape[1:]), 1, 3)  # [B, frames, n_mels, C]
        residual = self.bwe_generator(log_mel).astype(jnp.float32)
        skip = hann_upsample(x, cfg.output_sampling_rate // cfg.input_sampling_rate, self.precision)
        out = samples * cfg.output_sampling_rate // cfg.input_sampling_rate
        return jnp.clip(residual + skip, -1.0, 1.0)[:, :out]

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        cfg = self.config
        return (jnp.zeros((1, 2, cfg.in_channels, 1), self.dtype),), {}

"""LTX-2's audio VAE (diffusers' ``AutoencoderKLLTX2Audio``) as a Flax linen module, channels-last.

Axis letters in shape comments:
    B batch, T mel frames (time), M mel bins, C channels, L latent channels; primes (T', M') are latent sizes.

A mel spectrogram is [B, T, M, C] here and ``[B, C, T, M]`` (NCHW, H = time, W = mel bins) in diffusers:
``ours = theirs.permute(0, 2, 3, 1)``. Latents are [B, T', M', L] here and ``[B, L, T', M']`` in diffusers. The
"height" causality axis is time (our axis 1), "width" the mel bins (our axis 2).

    >>> vae = AutoencoderKLLTX2Audio(LTX2AudioVAEConfig())
    >>> mean, logvar = vae.apply({"params": p}, mel, method="encode")      # [B, T', M', L] each
    >>> mel = vae.apply({"params": p}, latents, method="decode")            # [B, 4T'-3, mel_bins, output_channels]
    >>> tokens = pack_audio_latents(latents)                                # [B, T', L*M'] (the transformer's)

Parameter names follow diffusers (``encoder.down.0.block.1.conv1.conv.weight`` is ``encoder/down_0/block_1/conv1/
conv/kernel``; the mid block keeps its literal ``block_1`` / ``attn_1`` / ``block_2``), so conversion is a table
(``weight_conversion/ltx2_audio.py``). ``latents_mean`` / ``latents_std`` (diffusers' persistent buffers, [C_base])
are params here, as in the video VAE. Norms, softmax and the posterior are computed in float32, convolutions in
``dtype``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltx_jax.configs_ltx2 import LTX2AudioVAEConfig
from ltx_jax.models.layers import pixel_norm
from ltx_jax.models.vae_blocks import conv_initializers

Dtype = Any
#: diffusers' ``LATENT_DOWNSAMPLE_FACTOR``: the decoder's output frames are 4 per latent frame (minus 3 when causal),
#: whatever ``ch_mult`` says.
LATENT_DOWNSAMPLE_FACTOR = 4
_TIME, _MEL = 1, 2  # axes of [B, T, M, C]


# ------------------------------------------------------------------------------------------- latent packing


def pack_audio_latents(latents: jax.Array) -> jax.Array:
    """[B, T', M', L] -> [B, T', L*M'], feature index l*M' + m: diffusers' ``_pack_audio_latents`` (no patch sizes)
    and ``LTX2AudioAudioPatchifier.patchify`` of the NCHW latents ``[B, L, T', M']``."""
    b, t, m, c = latents.shape
    return jnp.swapaxes(latents, 2, 3).reshape(b, t, c * m)


def unpack_audio_latents(tokens: jax.Array, mel_bins: int) -> jax.Array:
    """Inverse of ``pack_audio_latents``: [B, T', L*M'] -> [B, T', M', L] (``M' = mel_bins``, the latent bins)."""
    b, t, d = tokens.shape
    if d % mel_bins:
        raise ValueError(f"audio tokens of width {d} do not split into {mel_bins} latent mel bins.")
    return jnp.swapaxes(tokens.reshape(b, t, d // mel_bins, mel_bins), 2, 3)


def normalize_audio_latents(tokens: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """diffusers' ``_normalize_audio_latents`` on packed latents [B, T', D] (D = L*M' = len(mean))."""
    return ((tokens.astype(jnp.float32) - mean.astype(jnp.float32)) / std.astype(jnp.float32)).astype(tokens.dtype)


def denormalize_audio_latents(tokens: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """diffusers' ``_denormalize_audio_latents`` on packed latents [B, T', D]."""
    return (tokens.astype(jnp.float32) * std.astype(jnp.float32) + mean.astype(jnp.float32)).astype(tokens.dtype)


def decoded_frames(latent_frames: int, causality_axis: str | None) -> int:
    """Mel frames ``decode`` returns for ``latent_frames`` latent frames (diffusers' ``target_frames``)."""
    frames = latent_frames * LATENT_DOWNSAMPLE_FACTOR
    return max(frames - (LATENT_DOWNSAMPLE_FACTOR - 1), 1) if causality_axis is not None else frames


# --------------------------------------------------------------------------------------------------- layers


def _causal_padding(kernel: tuple[int, int], causality_axis: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """((time before, after), (mel before, after)) of ``LTX2AudioCausalConv2d``."""
    ph, pw = kernel[0] - 1, kernel[1] - 1
    sym_h, sym_w = (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)
    if causality_axis == "none":
        return sym_h, sym_w
    if causality_axis in ("width", "width-compatibility"):
        return sym_h, (pw, 0)
    if causality_axis == "height":
        return (ph, 0), sym_w
    raise ValueError(f"causality_axis={causality_axis!r}; use 'none', 'width', 'height' or 'width-compatibility'.")


class CausalConv2d(nn.Module):
    """``LTX2AudioCausalConv2d``: zero padding on one side of the causal axis (both sides of the other), then a 2-D
    convolution (param ``conv``). [B, T, M, C_in] -> [B, T, M, features] in ``dtype``."""

    features: int
    kernel_size: int = 3
    causality_axis: str = "height"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = (self.kernel_size, self.kernel_size)
        pad_t, pad_m = _causal_padding(k, self.causality_axis)
        return nn.Conv(self.features, k, padding=(pad_t, pad_m), dtype=self.dtype, param_dtype=self.param_dtype,
                       precision=self.precision, name="conv", **conv_initializers(2))(x.astype(self.dtype))


def _norm(norm_type: str, param_dtype: Dtype, name: str):
    """Pixel norm (RMS over channels, eps 1e-6, no params) or GroupNorm(32 groups, eps 1e-6; torch's ``weight`` /
    ``bias`` are ``scale`` / ``bias``), as a function of x returning float32; call inside a compact method."""
    if norm_type == "pixel":
        return lambda x: pixel_norm(x, 1e-6)
    axes = ("channels",)
    group = nn.GroupNorm(num_groups=32, epsilon=1e-6, dtype=jnp.float32, param_dtype=param_dtype,
                         scale_init=nn.with_logical_partitioning(nn.initializers.ones, axes),
                         bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes), name=name)
    return lambda x: group(x.astype(jnp.float32))


class ResnetBlock(nn.Module):
    """``LTX2AudioResnetBlock`` (no timestep embedding, no dropout at inference): norm -> SiLU -> conv1 -> norm ->
    SiLU -> conv2, plus the input (through a 1x1 ``nin_shortcut`` when the width changes).
    [B, T, M, C_in] -> [B, T, M, out_channels]."""

    out_channels: int
    norm_type: str
    causality_axis: str
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(CausalConv2d, causality_axis=self.causality_axis, dtype=self.dtype,
                                 param_dtype=self.param_dtype, precision=self.precision)
        h = conv(self.out_channels, name="conv1")(nn.silu(_norm(self.norm_type, self.param_dtype, "norm1")(x)))
        h = conv(self.out_channels, name="conv2")(nn.silu(_norm(self.norm_type, self.param_dtype, "norm2")(h)))
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, kernel_size=1, name="nin_shortcut")(x)
        return x.astype(h.dtype) + h


class AttnBlock(nn.Module):
    """``LTX2AudioAttnBlock``: one-head self-attention over all T*M positions with 1x1 convs ``q``, ``k``, ``v``,
    ``proj_out``, scale C^-1/2, residual. [B, T, M, C] -> [B, T, M, C]."""

    norm_type: str
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, m, c = x.shape
        conv = functools.partial(nn.Conv, c, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype,
                                 precision=self.precision, **conv_initializers(2))
        h = _norm(self.norm_type, self.param_dtype, "norm")(x).astype(self.dtype)
        q, k, v = (conv(name=n)(h).reshape(b, t * m, c) for n in ("q", "k", "v"))
        logits = jnp.einsum("bic,bjc->bij", q, k, precision=self.precision,
                            preferred_element_type=jnp.float32) * (c ** -0.5)
        attn = jax.nn.softmax(logits, axis=-1).astype(self.dtype)  # [B, TM, TM]
        h = jnp.einsum("bij,bjc->bic", attn, v, precision=self.precision).reshape(b, t, m, c)
        return x.astype(self.dtype) + conv(name="proj_out")(h)


def _downsample_padding(causality_axis: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """((time before, after), (mel before, after)) of ``LTX2AudioDownsample`` (diffusers' F.pad (l, r, t, b))."""
    table = {"none": ((0, 1), (0, 1)), "width": ((0, 1), (2, 0)), "height": ((2, 0), (0, 1)),
             "width-compatibility": ((0, 1), (1, 0))}
    return table[causality_axis]


class Downsample(nn.Module):
    """``LTX2AudioDownsample`` (with conv): zero padding by causality, then a 3x3 stride-2 conv (param ``conv``).
    [B, T, M, C] -> [B, T', M', C] with T' = (T + pad - 3) // 2 + 1."""

    causality_axis: str
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), padding=_downsample_padding(self.causality_axis),
                       dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision, name="conv",
                       **conv_initializers(2))(x.astype(self.dtype))


class Upsample(nn.Module):
    """``LTX2AudioUpsample`` (with conv): nearest x2 on both axes, a causal 3x3 conv (param ``conv``), then the first
    row of the causal axis dropped ("height": time, "width": mel bins). [B, T, M, C] -> [B, 2T(-1), 2M(-1), C]."""

    causality_axis: str
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=_TIME), 2, axis=_MEL)
        x = CausalConv2d(x.shape[-1], 3, self.causality_axis, self.dtype, self.param_dtype, self.precision,
                         name="conv")(x)
        if self.causality_axis == "height":
            x = x[:, 1:]
        elif self.causality_axis == "width":
            x = x[:, :, 1:]
        return x


# ------------------------------------------------------------------------------------------ encoder, decoder


def _check_config(cfg: LTX2AudioVAEConfig) -> None:
    if cfg.causality_axis is None:
        raise ValueError("LTX2AudioVAEConfig: causality_axis=None is refused by diffusers' AutoencoderKLLTX2Audio; "
                         "use 'none', 'width', 'height' or 'width-compatibility'.")
    if cfg.norm_type == "group" and cfg.causality_axis != "none":
        raise ValueError(f"LTX2AudioVAEConfig: norm_type='group' needs causality_axis='none' (diffusers: causal "
                         f"ResnetBlock with GroupNorm is not supported), not {cfg.causality_axis!r}.")
    if cfg.norm_type == "group":
        widths = {cfg.base_channels * m for m in cfg.ch_mult}
        if any(w % 32 for w in widths):
            raise ValueError(f"LTX2AudioVAEConfig: norm_type='group' has 32 groups; widths {sorted(widths)} must be "
                             "multiples of 32.")


class _Stack(nn.Module):
    """Shared fields of the encoder and the decoder."""

    config: LTX2AudioVAEConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    def _kw(self) -> dict:
        return dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)

    def _resnet(self, out: int, name: str) -> ResnetBlock:
        return ResnetBlock(out, self.config.norm_type, self.config.causality_axis, name=name, **self._kw())

    def _attn(self, name: str) -> AttnBlock:
        return AttnBlock(self.config.norm_type, name=name, **self._kw())

    def _mid(self, h: jax.Array) -> jax.Array:
        width = h.shape[-1]
        h = self._resnet(width, "block_1")(h)
        if self.config.mid_block_add_attention:
            h = self._attn("attn_1")(h)
        return self._resnet(width, "block_2")(h)

    def _out(self, h: jax.Array, features: int) -> jax.Array:
        h = nn.silu(_norm(self.config.norm_type, self.param_dtype, "norm_out")(h))
        return CausalConv2d(features, 3, self.config.causality_axis, name="conv_out", **self._kw())(h)


class Encoder(_Stack):
    """``LTX2AudioEncoder``: mel [B, T, M, in_channels] -> [B, T', M', 2L] (``double_z``) or [B, T', M', L]; each
    of the ``len(ch_mult) - 1`` downsamples maps T -> (T - 1) // 2 + 1 ("height") and M -> (M - 2) // 2 + 1."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        attn_res = set(cfg.attn_resolutions or ())
        h = CausalConv2d(cfg.base_channels, 3, cfg.causality_axis, name="conv_in", **self._kw())(x)
        res = cfg.resolution
        for level, mult in enumerate(cfg.ch_mult):
            for i in range(cfg.num_res_blocks):
                # diffusers' own module names: the mid block below keeps its literal block_1 / attn_1 / block_2
                h = ResnetBlock(cfg.base_channels * mult, cfg.norm_type, cfg.causality_axis,
                                name=f"down_{level}_block_{i}", **self._kw())(h)
                if res in attn_res:
                    h = AttnBlock(cfg.norm_type, name=f"down_{level}_attn_{i}", **self._kw())(h)
            if level != len(cfg.ch_mult) - 1:
                h = Downsample(cfg.causality_axis, name=f"down_{level}_downsample", **self._kw())(h)
                res //= 2
        h = _Mid(cfg, name="mid", **self._kw())(h)
        z = 2 * cfg.latent_channels if cfg.double_z else cfg.latent_channels
        return self._out(h, z)


class Decoder(_Stack):
    """``LTX2AudioDecoder``: latents [B, T', M', L] -> mel [B, decoded_frames(T'), mel_bins (or the decoded bins),
    output_channels], cropped or zero padded to that size as diffusers does."""

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        cfg = self.config
        attn_res = set(cfg.attn_resolutions or ())
        frames, mel_bins = z.shape[_TIME], z.shape[_MEL]
        levels = len(cfg.ch_mult)
        h = CausalConv2d(cfg.base_channels * cfg.ch_mult[-1], 3, cfg.causality_axis, name="conv_in",
                         **self._kw())(z)
        h = _Mid(cfg, name="mid", **self._kw())(h)
        res = cfg.resolution // 2 ** (levels - 1)
        for level in reversed(range(levels)):
            for i in range(cfg.num_res_blocks + 1):
                h = ResnetBlock(cfg.base_channels * cfg.ch_mult[level], cfg.norm_type, cfg.causality_axis,
                                name=f"up_{level}_block_{i}", **self._kw())(h)
                if res in attn_res:
                    h = AttnBlock(cfg.norm_type, name=f"up_{level}_attn_{i}", **self._kw())(h)
            if level != 0:
                h = Upsample(cfg.causality_axis, name=f"up_{level}_upsample", **self._kw())(h)
                res *= 2
        out = self._out(h, cfg.output_channels)
        target_t = decoded_frames(frames, cfg.causality_axis)
        target_m = cfg.mel_bins if cfg.mel_bins is not None else mel_bins
        out = out[:, :target_t, :target_m]
        return jnp.pad(out, ((0, 0), (0, target_t - out.shape[_TIME]), (0, target_m - out.shape[_MEL]), (0, 0)))


class _Mid(_Stack):
    """The mid block: ``block_1`` -> (``attn_1``) -> ``block_2`` at the input's width."""

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        return self._mid(h)


# ------------------------------------------------------------------------------------------------- the VAE


class AutoencoderKLLTX2Audio(nn.Module):
    """diffusers' ``AutoencoderKLLTX2Audio`` with channels-last tensors.

    Attributes:
      config: the architecture (defaults: LTX-2 / LTX-2.3's).
      dtype: compute dtype of the convolutions; norms, softmax and the posterior stay float32.
      param_dtype: dtype of the params created by ``init``.
      precision: convolution / matmul precision (None = backend default).
    """

    config: LTX2AudioVAEConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    def setup(self):
        _check_config(self.config)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        self.encoder = Encoder(self.config, **kw)
        self.decoder = Decoder(self.config, **kw)
        width = self.config.base_channels  # diffusers' buffers are [base_channels] (= L * M' for the released VAE)
        axes = ("channels",)
        self.latents_mean = self.param("latents_mean", nn.with_logical_partitioning(nn.initializers.zeros, axes),
                                       (width,), self.param_dtype)
        self.latents_std = self.param("latents_std", nn.with_logical_partitioning(nn.initializers.ones, axes),
                                      (width,), self.param_dtype)

    def __call__(self, mel: jax.Array) -> jax.Array:
        """Encode, take the posterior mode, decode (diffusers' ``forward`` with ``sample_posterior=False``)."""
        mean, _ = self.encode(mel)
        return self.decode(mean)

    def encode(self, mel: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Posterior of a log-mel spectrogram.

        Args:
          mel: [B, T, M, in_channels] (diffusers' ``[B, C, T, M]`` permuted (0, 2, 3, 1)).
        Returns:
          (mean, logvar), each [B, T', M', L] float32: the two halves of the encoder's channels (``torch.chunk``),
          logvar clamped to [-30, 20] as ``DiagonalGaussianDistribution`` does. Each downsample maps
          T -> (T - 1) // 2 + 1 and M -> (M - 2) // 2 + 1 ("height" causality): the released VAE (two) takes
          4k + 1 frames and 64 bins to k + 1 latent frames and 16 bins, and ``decode`` gives 4k + 1 frames back.
        """
        cfg = self.config
        if mel.ndim != 4 or mel.shape[-1] != cfg.in_channels:
            raise ValueError(f"mel has shape {mel.shape}; expected [B, T, M, {cfg.in_channels}] (channels-last).")
        h = self.encoder(mel.astype(self.dtype)).astype(jnp.float32)
        half = -(-h.shape[-1] // 2)
        return h[..., :half], jnp.clip(h[..., half:], -30.0, 20.0)

    def decode(self, latents: jax.Array) -> jax.Array:
        """Decodes raw (denormalized, unpacked) latents, as diffusers' ``audio_vae.decode(z)``.

        Args:
          latents: [B, T', M', L] (diffusers' ``[B, L, T', M']`` permuted (0, 2, 3, 1); ``unpack_audio_latents``
            turns the transformer's tokens into them).
        Returns:
          mel [B, decoded_frames(T'), mel_bins, output_channels] in ``dtype`` (diffusers' ``[B, C, T, M]`` permuted
          (0, 2, 3, 1)); this is what ``LTX2Vocoder`` takes.
        """
        cfg = self.config
        if latents.ndim != 4 or latents.shape[-1] != cfg.latent_channels:
            raise ValueError(f"latents have shape {latents.shape}; expected [B, T', M', {cfg.latent_channels}].")
        return self.decoder(latents.astype(self.dtype))

    def init_inputs(self):
        """Smallest arguments of ``__call__`` (for ``ltx_jax.models.init_params`` / ``abstract_params``)."""
        size = 2 ** len(self.config.ch_mult)
        return (jnp.zeros((1, size, size, self.config.in_channels), self.dtype),), {}

    def normalize_latents(self, tokens: jax.Array) -> jax.Array:
        """Packed latents [B, T', L*M'] -> normalized with ``latents_mean`` / ``latents_std``."""
        return normalize_audio_latents(tokens, self.latents_mean, self.latents_std)

    def denormalize_latents(self, tokens: jax.Array) -> jax.Array:
        return denormalize_audio_latents(tokens, self.latents_mean, self.latents_std)

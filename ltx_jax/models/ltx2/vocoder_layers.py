"""Building blocks of the LTX-2 vocoders (diffusers' ``pipelines/ltx2/vocoder.py``), channels-last.

Axis letters in shape comments: B batch, S samples (time), C channels, K filter taps.

Every signal is [B, S, C] here and ``[B, C, S]`` in diffusers. Filters are computed in numpy float64 with diffusers'
formulas and cast once. The anti-aliasing filters diffusers keeps as persistent buffers (``upsample.filter``,
``downsample.filter``, [1, 1, K] there, [K] here) are params here, initialised to the computed filter and loaded from
the checkpoint like any weight (a bf16 checkpoint's rounded taps are what diffusers runs too); ``BUFFER_LEAVES``
names them (and the STFT / mel bases of ``vocoder.py``) so that counts and training can leave them out.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.models.vae_blocks import conv_initializers

Dtype = Any
#: Leaf names of the fixed (non-trained) tensors diffusers keeps as persistent buffers.
BUFFER_LEAVES = ("filter", "forward_basis", "inverse_basis", "mel_basis")
_DIMS = ("NWC", "WIO", "NWC")


# ------------------------------------------------------------------------------------------------- filters


def kaiser_sinc_filter1d(cutoff: float, half_width: float, kernel_size: int) -> np.ndarray:
    """diffusers' ``kaiser_sinc_filter1d``: a Kaiser-windowed sinc low-pass, normalised to sum 1; [K] float64."""
    delta_f = 4 * half_width
    half_size = kernel_size // 2
    amplitude = 2.285 * (half_size - 1) * math.pi * delta_f + 7.95
    if amplitude > 50.0:
        beta = 0.1102 * (amplitude - 8.7)
    elif amplitude >= 21.0:
        beta = 0.5842 * (amplitude - 21) ** 0.4 + 0.07886 * (amplitude - 21.0)
    else:
        beta = 0.0
    window = np.kaiser(kernel_size, beta)  # = torch.kaiser_window(periodic=False)
    if kernel_size % 2 == 0:
        time = np.arange(-half_size, half_size, dtype=np.float64) + 0.5
    else:
        time = np.arange(kernel_size, dtype=np.float64) - half_size
    if cutoff == 0.0:
        return np.zeros_like(time)
    filt = 2 * cutoff * window * np.sinc(2 * cutoff * time)
    return filt / filt.sum()


def hann_sinc_filter1d(ratio: int) -> np.ndarray:
    """The ``UpSample1d(window_type="hann")`` filter (torchaudio's resampling kernel, rolloff 0.99, 6 zero crossings);
    [2 * 7 * ratio + 1] float64."""
    rolloff, zeros = 0.99, 6
    width = math.ceil(zeros / rolloff)
    time = (np.arange(2 * width * ratio + 1, dtype=np.float64) / ratio - width) * rolloff
    window = np.cos(np.clip(time, -zeros, zeros) * math.pi / zeros / 2) ** 2
    return np.sinc(time) * window * rolloff / ratio


def _filter_param(module: nn.Module, taps: np.ndarray) -> jax.Array:
    """The ``filter`` param [K], initialised to ``taps``."""
    init = nn.with_logical_partitioning(lambda key, shape, dtype: jnp.asarray(taps, dtype), ("replicated",))
    return module.param("filter", init, taps.shape, module.param_dtype)


# ------------------------------------------------------------------------------------------- 1-D operations


def pad_time(x: jax.Array, before: int, after: int, mode: str = "edge") -> jax.Array:
    """[B, S, C] padded on the time axis (``mode`` "edge" = torch's "replicate", or "constant" zeros)."""
    return jnp.pad(x, ((0, 0), (before, after), (0, 0)), mode=mode)


def depthwise_conv(x: jax.Array, taps: jax.Array, stride: int = 1, lhs_dilation: int = 1,
                   padding: tuple[int, int] = (0, 0), precision: Any = None) -> jax.Array:
    """Every channel of x [B, S, C] correlated with the same taps [K] (torch's grouped conv1d with an expanded
    filter), with a stride, or with x dilated by ``lhs_dilation`` (a transposed conv, taps flipped by the caller)."""
    c = x.shape[-1]
    kernel = jnp.broadcast_to(taps.astype(x.dtype)[:, None, None], (taps.shape[0], 1, c))  # [K, 1, C]
    return jax.lax.conv_general_dilated(x, kernel, (stride,), [padding], lhs_dilation=(lhs_dilation,),
                                        dimension_numbers=_DIMS, feature_group_count=c, precision=precision)


def upsample_with_taps(x: jax.Array, taps: jax.Array, ratio: int, pad: int, pad_left: int, pad_right: int,
                       precision: Any = None) -> jax.Array:
    """diffusers' ``UpSample1d.forward``: replicate padding, ``ratio * conv_transpose1d(stride=ratio)`` with the
    taps, then the edges cropped. [B, S, C] -> [B, ratio * S, C]."""
    k = taps.shape[0]
    x = pad_time(x, pad, pad)
    y = depthwise_conv(x, taps[::-1], lhs_dilation=ratio, padding=(k - 1, k - 1), precision=precision)
    y = ratio * y  # [B, (S + 2 pad - 1) ratio + K, C]
    return y[:, pad_left:y.shape[1] - pad_right]


class UpSample1d(nn.Module):
    """diffusers' ``UpSample1d`` with the Kaiser-sinc filter (param ``filter`` [K]). [B, S, C] -> [B, ratio S, C]."""

    ratio: int = 2
    kernel_size: int | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        r = self.ratio
        k = int(6 * r // 2) * 2 if self.kernel_size is None else self.kernel_size
        pad = k // r - 1
        taps = _filter_param(self, kaiser_sinc_filter1d(0.5 / r, 0.6 / r, k))
        return upsample_with_taps(x, taps, r, pad, pad * r + (k - r) // 2, pad * r + (k - r + 1) // 2,
                                  self.precision)


class DownSample1d(nn.Module):
    """diffusers' ``DownSample1d``: replicate padding, Kaiser-sinc low-pass (param ``filter`` [K]), stride
    ``ratio``. [B, S, C] -> [B, S', C] (S' = S / ratio for even S)."""

    ratio: int = 2
    kernel_size: int | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        r = self.ratio
        k = self.kernel_size or int(6 * r // 2) * 2
        taps = _filter_param(self, kaiser_sinc_filter1d(0.5 / r, 0.6 / r, k))
        x = pad_time(x, k // 2 + k % 2 - 1, k // 2)
        return depthwise_conv(x, taps, stride=r, precision=self.precision)


def hann_upsample(x: jax.Array, ratio: int, precision: Any = None) -> jax.Array:
    """``UpSample1d(ratio, window_type="hann")`` (the BWE's skip resampler; its filter is not in the state dict, so it
    is a constant here). [B, S, C] -> [B, ratio S, C]."""
    taps = jnp.asarray(hann_sinc_filter1d(ratio), jnp.float32)
    width = math.ceil(6 / 0.99)
    k = taps.shape[0]
    return upsample_with_taps(x, taps, ratio, width, 2 * width * ratio, k - ratio, precision)


# ----------------------------------------------------------------------------------------------- activations


class SnakeBeta(nn.Module):
    """diffusers' ``SnakeBeta`` (log-scale): ``x + sin(x e^alpha)^2 / (e^beta + 1e-9)``; ``use_beta=False`` is
    Snake (``e^alpha`` as the amplitude too). Params ``alpha`` [C] (and ``beta`` [C]); float32 inside."""

    use_beta: bool = True
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        init = nn.with_logical_partitioning(nn.initializers.zeros, ("channels",))
        alpha = jnp.exp(self.param("alpha", init, (c,), self.param_dtype).astype(jnp.float32))
        amplitude = jnp.exp(self.param("beta", init, (c,), self.param_dtype).astype(jnp.float32)) if self.use_beta \
            else alpha
        x32 = x.astype(jnp.float32)
        return (x32 + (1.0 / (amplitude + 1e-9)) * jnp.sin(x32 * alpha) ** 2).astype(x.dtype)


class AntiAliasAct1d(nn.Module):
    """diffusers' ``AntiAliasAct1d``: ``upsample`` x ratio -> ``act`` (SnakeBeta / Snake) -> ``downsample``.
    [B, S, C] -> [B, S, C]."""

    use_beta: bool = True
    ratio: int = 2
    kernel_size: int = 12
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(param_dtype=self.param_dtype, precision=self.precision)
        x = UpSample1d(self.ratio, self.kernel_size, name="upsample", **kw)(x)
        x = SnakeBeta(self.use_beta, self.param_dtype, name="act")(x)
        return DownSample1d(self.ratio, self.kernel_size, name="downsample", **kw)(x)


def _leaky_relu(slope: float):
    return lambda x: jax.nn.leaky_relu(x, slope)


# --------------------------------------------------------------------------------------------------- layers


def conv1d(features: int, kernel_size: int, name: str, dilation: int = 1, use_bias: bool = True, *,
           dtype: Dtype, param_dtype: Dtype, precision: Any) -> nn.Conv:
    """torch ``Conv1d(padding="same")`` (for odd kernels: (K - 1) d / 2 zeros each side; torch puts the odd one of
    an even kernel's padding on the right)."""
    total = dilation * (kernel_size - 1)
    return nn.Conv(features, (kernel_size,), kernel_dilation=(dilation,), padding=[(total // 2, total - total // 2)],
                   use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, precision=precision, name=name,
                   **conv_initializers(1))


class ConvTranspose1d(nn.Module):
    """torch ``ConvTranspose1d(in, features, K, stride, padding)``: params ``kernel`` [K, in, features] (torch's
    weight [in, out, K] transposed (2, 0, 1)) and ``bias`` [features]. [B, S, in] -> [B, (S-1) stride - 2 padding + K,
    features]."""

    features: int
    kernel_size: int
    stride: int
    padding: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, c_in = self.kernel_size, x.shape[-1]
        inits = conv_initializers(1)
        kernel = self.param("kernel", inits["kernel_init"], (k, c_in, self.features), self.param_dtype)
        bias = self.param("bias", inits["bias_init"], (self.features,), self.param_dtype)
        edge = k - 1 - self.padding
        y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel[::-1].astype(self.dtype), (1,), [(edge, edge)],
                                         lhs_dilation=(self.stride,), dimension_numbers=_DIMS,
                                         precision=self.precision)
        return y + bias.astype(self.dtype)


class ResBlock(nn.Module):
    """diffusers' vocoder ``ResBlock``: for each dilation d, ``x += conv2(act2(conv1_d(act1(x))))`` with params
    ``convs1_{i}``, ``convs2_{i}`` and, for snake activations, ``acts1_{i}`` / ``acts2_{i}`` (``AntiAliasAct1d`` when
    ``antialias``, else SnakeBeta). [B, S, C] -> [B, S, C]."""

    kernel_size: int
    dilations: tuple[int, ...]
    act_fn: str
    negative_slope: float = 0.1
    antialias: bool = False
    antialias_ratio: int = 2
    antialias_kernel_size: int = 12
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    def _act(self, name: str):
        if self.act_fn == "leaky_relu":
            return _leaky_relu(self.negative_slope)
        use_beta = self.act_fn == "snakebeta"
        if self.antialias:
            return AntiAliasAct1d(use_beta, self.antialias_ratio, self.antialias_kernel_size, self.param_dtype,
                                  self.precision, name=name)
        return SnakeBeta(use_beta, self.param_dtype, name=name)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        conv = functools.partial(conv1d, c, self.kernel_size, dtype=self.dtype, param_dtype=self.param_dtype,
                                 precision=self.precision)
        for i, d in enumerate(self.dilations):
            h = conv(f"convs1_{i}", d)(self._act(f"acts1_{i}")(x))
            h = conv(f"convs2_{i}")(self._act(f"acts2_{i}")(h))
            x = x + h
        return x

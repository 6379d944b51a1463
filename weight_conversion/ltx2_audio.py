"""Loading LTX-2's audio VAE and vocoders from diffusers folders, Lightricks single files and Orbax checkpoints.

diffusers (``audio_vae/``, ``vocoder/``: ``config.json`` + ``diffusion_pytorch_model.safetensors``) names tensors as
the modules do (``ltx_jax.models.ltx2.audio_vae`` / ``vocoder`` mirror those names). Lightricks' single files
(``ltx-2-19b-*.safetensors``, ``ltx-2.3-*.safetensors``) hold every component; ours are under two prefixes:

- ``audio_vae.``: diffusers' names, with ``per_channel_statistics.mean-of-means`` / ``std-of-means`` for
  ``latents_mean`` / ``latents_std`` (diffusers' ``convert_ltx2_audio_vae_to_diffusers``);
- ``vocoder.``: ltx-core's names ``conv_pre``, ``ups``, ``resblocks``, ``act_post``, ``conv_post``,
  ``downsample.lowpass`` for diffusers' ``conv_in``, ``upsamplers``, ``resnets``, ``act_out``, ``conv_out``,
  ``downsample`` (diffusers' ``scripts/convert_ltx2_to_diffusers.py``); LTX-2.3's BWE vocoder nests them under
  ``vocoder.vocoder.``, ``vocoder.bwe_generator.`` beside ``vocoder.mel_stft.``.

A single file's config is its metadata's ``config["audio_vae"]`` / ``config["vocoder"]`` (ltx-core's keys, mapped
as ltx-core's ``AudioDecoderConfigurator`` / ``VocoderConfigurator`` read them, missing keys taking ltx-core's
defaults); without one, the architecture the tensor shapes imply over diffusers' defaults.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from ltx_jax.configs import read_json
from ltx_jax.configs_ltx2 import LTX2AudioVAEConfig, LTX2VocoderConfig, LTX2VocoderWithBWEConfig
from ltx_jax.models import abstract_params
from ltx_jax.models.ltx2.audio_vae import AutoencoderKLLTX2Audio
from ltx_jax.models.ltx2.vocoder import LTX2Vocoder, LTX2VocoderWithBWE
from weight_conversion import orbax_io
from weight_conversion.common import (RenamedSource, component_folder, folder_config, read_single_file_config,
                                      restore_orbax)
from weight_conversion.mapping import CONV, IDENTITY, Path, Rule, Transform, convert, rules_from_tree
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors

AUDIO_VAE, VOCODER = "audio_vae", "vocoder"
AUDIO_VAE_PREFIX, VOCODER_PREFIX = "audio_vae.", "vocoder."
_STATS = "per_channel_statistics."
_NATIVE_STATS = {"latents_mean": _STATS + "mean-of-means", "latents_std": _STATS + "std-of-means"}
VOCODER_CLASSES = {"LTX2Vocoder": LTX2VocoderConfig, "LTX2VocoderWithBWE": LTX2VocoderWithBWEConfig}

# torch [1, 1, K] anti-aliasing filters -> [K]; torch ConvTranspose1d [in, out, K] -> [K, in, out].
FILTER = Transform("filter", lambda x: x.reshape(x.shape[-1]), lambda s: (1, 1, s[0]))
CONV_TRANSPOSE_1D = Transform("conv-transpose-1d", lambda x: np.transpose(x, (2, 0, 1)),
                              lambda s: (s[1], s[2], s[0]), lambda x: np.transpose(x, (2, 0, 1)))

_VAE_BLOCK = re.compile(r"^(down|up)_(\d+)_(block|attn)_(\d+)$")
_VAE_RESAMPLE = re.compile(r"^(down|up)_(\d+)_(downsample|upsample)$")
_VOCODER_LIST = re.compile(r"^(upsamplers|resnets|convs1|convs2|acts1|acts2)_(\d+)$")
_LEAVES = {"kernel": "weight", "scale": "weight"}
# diffusers' vocoder module names -> ltx-core's (one path segment each)
_NATIVE_VOCODER_NAMES = {"conv_in": "conv_pre", "conv_out": "conv_post", "upsamplers": "ups", "resnets": "resblocks",
                         "act_out": "act_post"}


# ------------------------------------------------------------------------------------------ diffusers names


def audio_vae_torch_key(path: Path) -> str:
    """``encoder/down_1_block_0/conv1/conv/kernel`` -> ``encoder.down.1.block.0.conv1.conv.weight``."""
    names = [_VAE_RESAMPLE.sub(r"\1.\2.\3", _VAE_BLOCK.sub(r"\1.\2.\3.\4", p)) for p in path[:-1]]
    return ".".join(names + [_LEAVES.get(path[-1], path[-1])])


def vocoder_torch_key(path: Path) -> str:
    """``bwe_generator/resnets_4/acts1_2/act/alpha`` -> ``bwe_generator.resnets.4.acts1.2.act.alpha``."""
    names = [_VOCODER_LIST.sub(r"\1.\2", p) for p in path[:-1]]
    return ".".join(names + [_LEAVES.get(path[-1], path[-1])])


def _audio_vae_transform(path: Path, ndim: int) -> Transform:
    return CONV if path[-1] == "kernel" else IDENTITY


def _vocoder_transform(path: Path, ndim: int) -> Transform:
    if path[-1] == "kernel":
        return CONV_TRANSPOSE_1D if path[-2].startswith("upsamplers_") else CONV
    if path[-1] == "filter":
        return FILTER
    if path[-1] in ("forward_basis", "inverse_basis"):
        return CONV  # [2F, 1, L] -> [L, 1, 2F]
    return IDENTITY


def audio_vae_rules(abstract: Any, name: Callable[[Path], str] = audio_vae_torch_key) -> list[Rule]:
    return rules_from_tree(abstract, name, _audio_vae_transform)


def vocoder_rules(abstract: Any, name: Callable[[Path], str] = vocoder_torch_key) -> list[Rule]:
    return rules_from_tree(abstract, name, _vocoder_transform)


# ------------------------------------------------------------------------------------------ native names


def native_audio_vae_key(key: str) -> str:
    """diffusers key -> Lightricks key (``latents_mean`` -> ``audio_vae.per_channel_statistics.mean-of-means``)."""
    return AUDIO_VAE_PREFIX + _NATIVE_STATS.get(key, key)


def native_vocoder_key(key: str) -> str:
    """diffusers key -> Lightricks key (``resnets.0.acts1.1.downsample.filter`` ->
    ``vocoder.resblocks.0.acts1.1.downsample.lowpass.filter``)."""
    parts = key.split(".")
    out = []
    for i, part in enumerate(parts):
        out.append(_NATIVE_VOCODER_NAMES.get(part, part))
        if part == "downsample" and parts[i + 1:] == ["filter"]:
            out.append("lowpass")
    return VOCODER_PREFIX + ".".join(out)


# ------------------------------------------------------------------------------------------ native configs


def audio_vae_config_from_native(native: dict) -> LTX2AudioVAEConfig:
    """A single file's ``config["audio_vae"]`` (ltx-core's ``model.params.ddconfig`` / ``preprocessing`` keys) ->
    LTX2AudioVAEConfig; missing keys take ltx-core's defaults (``AudioDecoderConfigurator``)."""
    params = native.get("model", {}).get("params", {})
    dd = params.get("ddconfig", {})
    pre = native.get("preprocessing", {})
    stft, mel = pre.get("stft", {}), pre.get("mel", {})
    mel_bins = dd.get("mel_bins") or mel.get("n_mel_channels") or native.get("variables", {}).get("mel_bins")
    attn = dd.get("attn_resolutions", (8, 16, 32))
    return LTX2AudioVAEConfig(
        base_channels=dd.get("ch", 128), output_channels=dd.get("out_ch", 2),
        ch_mult=tuple(dd.get("ch_mult", (1, 2, 4))),
        num_res_blocks=dd.get("num_res_blocks", 2), attn_resolutions=tuple(sorted(attn)) if attn else None,
        in_channels=dd.get("in_channels", 2), resolution=dd.get("resolution", 256),
        latent_channels=dd.get("z_channels", 8), norm_type=dd.get("norm_type", "pixel"),
        causality_axis=dd.get("causality_axis", "height"), dropout=float(dd.get("dropout", 0.0)),
        mid_block_add_attention=dd.get("mid_block_add_attention", True), sample_rate=params.get("sampling_rate", 16000),
        mel_hop_length=stft.get("hop_length", 160), is_causal=stft.get("causal", True), mel_bins=mel_bins,
        double_z=dd.get("double_z", True))


def infer_audio_vae_config(shapes: dict[str, tuple[int, ...]]) -> LTX2AudioVAEConfig:
    """The architecture diffusers-named tensor shapes imply (sizes that shapes cannot tell keep the defaults)."""
    def need(key):
        if key not in shapes:
            raise CheckpointError(f"audio VAE: no {key!r} tensor; it is not an LTX-2 audio VAE checkpoint.")
        return shapes[key]

    base, in_channels = need("encoder.conv_in.conv.weight")[:2]
    out_channels, latent = need("decoder.conv_out.conv.weight")[0], need("decoder.conv_in.conv.weight")[1]
    levels = 1 + max(int(m.group(1)) for k in shapes if (m := re.match(r"decoder\.up\.(\d+)\.", k)))
    mult = tuple(shapes[f"decoder.up.{i}.block.0.conv2.conv.weight"][0] // base for i in range(levels))
    blocks = max(int(m.group(1)) for k in shapes if (m := re.match(r"decoder\.up\.0\.block\.(\d+)\.", k)))
    resolution = LTX2AudioVAEConfig.resolution
    attn = sorted({resolution // 2 ** int(m.group(1)) for k in shapes
                   if (m := re.match(r"encoder\.down\.(\d+)\.attn\.", k))})
    return LTX2AudioVAEConfig(base_channels=base, in_channels=in_channels, output_channels=out_channels,
                              latent_channels=latent, ch_mult=mult, num_res_blocks=blocks,
                              attn_resolutions=tuple(attn) or None,
                              mid_block_add_attention="decoder.mid.attn_1.q.weight" in shapes,
                              double_z=need("encoder.conv_out.conv.weight")[0] == 2 * latent)


def _native_stage(cfg: dict, final_activation: bool, sampling_rate: int) -> dict:
    """ltx-core ``Vocoder`` keys -> LTX2VocoderConfig fields (``_vocoder_from_config``'s defaults)."""
    resblock = cfg.get("resblock", "1")
    if resblock not in ("1", "AMP1"):
        raise CheckpointError(f"vocoder: resblock={resblock!r} in the single file's config; diffusers' LTX2Vocoder "
                              "has resblock '1' (LeakyReLU) and 'AMP1' (anti-aliased snake) only.")
    amp = resblock == "AMP1"
    final = None
    if final_activation and cfg.get("use_tanh_at_final", True):
        final = "tanh"
    # a clamp to [-1, 1] (final activation without tanh) is what diffusers' conversion maps to final_act_fn=None
    return dict(in_channels=128, out_channels=2, hidden_channels=cfg.get("upsample_initial_channel", 1024),
                upsample_kernel_sizes=tuple(cfg.get("upsample_kernel_sizes", (16, 15, 8, 4, 4))),
                upsample_factors=tuple(cfg.get("upsample_rates", (6, 5, 2, 2, 2))),
                resnet_kernel_sizes=tuple(cfg.get("resblock_kernel_sizes", (3, 7, 11))),
                resnet_dilations=tuple(tuple(d) for d in cfg.get("resblock_dilation_sizes", ((1, 3, 5),) * 3)),
                act_fn=cfg.get("activation", "snake") if amp else "leaky_relu", leaky_relu_negative_slope=0.1,
                antialias=amp, antialias_ratio=2, antialias_kernel_size=12, final_act_fn=final,
                final_bias=cfg.get("use_bias_at_final", True), output_sampling_rate=sampling_rate)


def vocoder_config_from_native(native: dict) -> LTX2VocoderConfig | LTX2VocoderWithBWEConfig:
    """A single file's ``config["vocoder"]`` -> the diffusers config: flat (LTX-2) or ``{"vocoder", "bwe"}``
    (LTX-2.3, with bandwidth extension), as ltx-core's ``VocoderConfigurator`` reads it."""
    if "bwe" not in native:
        return LTX2VocoderConfig(**_native_stage(native, True, native.get("output_sampling_rate", 24000)))
    bwe = native["bwe"]
    rate_in, rate_out = bwe.get("input_sampling_rate", 16000), bwe.get("output_sampling_rate", 48000)
    first = _native_stage(native.get("vocoder", {}), True, rate_in)
    second = _native_stage(bwe, False, rate_out)
    fields = {k: v for k, v in first.items() if k != "output_sampling_rate"}
    fields.update({"bwe_" + k: v for k, v in second.items() if k != "output_sampling_rate"})
    n_fft = bwe.get("n_fft", 512)
    return LTX2VocoderWithBWEConfig(**fields, filter_length=n_fft, window_length=n_fft,
                                    hop_length=bwe.get("hop_length", 80), num_mel_channels=bwe.get("num_mels", 64),
                                    input_sampling_rate=rate_in, output_sampling_rate=rate_out)


def _stage_widths(config, shapes: dict[str, tuple[int, ...]]):
    """``config`` with each stage's in / out channels from its ``conv_in`` / ``conv_out`` tensors (ltx-core builds
    them 128 -> 2 whatever its config says)."""
    bwe = isinstance(config, LTX2VocoderWithBWEConfig)
    stages = [("", "vocoder."), ("bwe_", "bwe_generator.")] if bwe else [("", "")]
    changes = {}
    for field, prefix in stages:
        if prefix + "conv_in.weight" in shapes and prefix + "conv_out.weight" in shapes:
            changes[field + "in_channels"] = shapes[prefix + "conv_in.weight"][1]
            changes[field + "out_channels"] = shapes[prefix + "conv_out.weight"][0]
    try:
        return config.replace(**changes)
    except ValueError as e:
        raise CheckpointError(f"vocoder: tensor widths {changes} do not fit the config: {e}") from None


def infer_vocoder_config(shapes: dict[str, tuple[int, ...]]) -> LTX2VocoderConfig | LTX2VocoderWithBWEConfig:
    """Without metadata: LTX-2.3's BWE vocoder when ``bwe_generator.*`` tensors are there, else LTX-2's, with the
    widths of their ``conv_in`` tensors and the STFT / mel sizes of the bases (other sizes keep diffusers' defaults:
    the shape check then names any tensor that disagrees)."""
    if any(k.startswith("bwe_generator.") for k in shapes):
        hidden, in_channels = shapes["vocoder.conv_in.weight"][:2]
        bwe_hidden, bwe_in = shapes["bwe_generator.conv_in.weight"][:2]
        mels, freqs = shapes.get("mel_stft.mel_basis", (64, 257))
        n_fft = shapes.get("mel_stft.stft_fn.forward_basis", (0, 0, 2 * (freqs - 1)))[-1]
        return LTX2VocoderWithBWEConfig(hidden_channels=hidden, in_channels=in_channels, bwe_hidden_channels=bwe_hidden,
                                        bwe_in_channels=bwe_in, num_mel_channels=mels, filter_length=n_fft,
                                        window_length=n_fft)
    if "conv_in.weight" not in shapes:
        raise CheckpointError("vocoder: no 'conv_pre.weight' tensor; it is not an LTX-2 vocoder checkpoint.")
    hidden, in_channels = shapes["conv_in.weight"][:2]
    return LTX2VocoderConfig(hidden_channels=hidden, in_channels=in_channels)


# ------------------------------------------------------------------------------------------ sources


def _audio_vae_view(source: TensorSource, path: str) -> tuple[RenamedSource, list[str]]:
    """(diffusers-named view of the ``audio_vae.*`` tensors, the statistics diffusers drops)."""
    back = {v: k for k, v in _NATIVE_STATS.items()}
    keys, ignore = {}, []
    for key in source:
        if key.startswith(AUDIO_VAE_PREFIX):
            name = key[len(AUDIO_VAE_PREFIX):]
            if name.startswith(_STATS) and name not in back:
                ignore.append(name)
            keys[back.get(name, name)] = key
    if not keys:
        raise CheckpointError(f"{path} holds no 'audio_vae.*' tensors: it is not a Lightricks LTX-2 single file. For "
                              "a diffusers diffusion_pytorch_model.safetensors, pass its folder (with config.json).")
    return RenamedSource(source, keys), ignore


def _vocoder_view(source: TensorSource, path: str) -> RenamedSource:
    keys = [k for k in source if k.startswith(VOCODER_PREFIX)]
    if not keys:
        raise CheckpointError(f"{path} holds no 'vocoder.*' tensors: it is not a Lightricks LTX-2 single file. For a "
                              "diffusers diffusion_pytorch_model.safetensors, pass its folder (with config.json).")
    back, reverse = {}, {v: k for k, v in _NATIVE_VOCODER_NAMES.items()}
    for key in keys:
        name = key[len(VOCODER_PREFIX):].replace(".downsample.lowpass.", ".downsample.").split(".")
        back[".".join(reverse.get(p, p) for p in name)] = key
    return RenamedSource(source, back)


def _shapes(view: RenamedSource) -> dict[str, tuple[int, ...]]:
    return {k: tuple(view.shape(k)) for k in view}


def _single_file_config(source: TensorSource, part: str, from_native, infer, shapes):
    try:
        native = (read_single_file_config(source) or {}).get(part)
        return from_native(native) if isinstance(native, dict) else infer(shapes())
    except CheckpointError:
        raise
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{source.files[0].path}: the {part} config in its metadata: {e}") from None


# ------------------------------------------------------------------------------------------ public API


def _vocoder_config_from_dict(config: dict, where: str):
    name = config.get("_class_name", "LTX2Vocoder")
    if name not in VOCODER_CLASSES:
        raise CheckpointError(f"{where}: _class_name {name!r} is not a vocoder; expected one of "
                              f"{sorted(VOCODER_CLASSES)}.")
    try:
        return VOCODER_CLASSES[name].from_dict(config)
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}") from None


def _vocoder_folder_config(folder: str):
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{folder} has no config.json; pass a diffusers vocoder folder or config=.")
    try:
        raw = read_json(config_path)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    return _vocoder_config_from_dict(raw, config_path)


def make_vocoder(config, dtype: Any = jnp.float32, **module_kwargs) -> LTX2Vocoder | LTX2VocoderWithBWE:
    """The module for a vocoder config (``LTX2VocoderConfig`` or ``LTX2VocoderWithBWEConfig``)."""
    cls = LTX2VocoderWithBWE if isinstance(config, LTX2VocoderWithBWEConfig) else LTX2Vocoder
    return cls(config, dtype=dtype, param_dtype=dtype, **module_kwargs)


def _check_path(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise CheckpointError(f"{what} checkpoint {path} does not exist.")


def read_audio_vae_config(path: str | os.PathLike) -> LTX2AudioVAEConfig:
    """The audio VAE's config without reading its weights: the Orbax marker, ``config.json``, or a single file's
    metadata (else its tensor shapes: the header only)."""
    path = component_folder(os.fspath(path), AUDIO_VAE)
    _check_path(path, "Audio VAE")
    if orbax_io.is_orbax_dir(path):
        return LTX2AudioVAEConfig.from_dict(orbax_io.read_marker(path)["config"])
    if os.path.isdir(path):
        return folder_config(path, LTX2AudioVAEConfig, "diffusers audio_vae")
    file = open_safetensors(path)
    view, _ = _audio_vae_view(file, path)
    return _single_file_config(file, AUDIO_VAE, audio_vae_config_from_native, infer_audio_vae_config,
                               lambda: _shapes(view))


def read_vocoder_config(path: str | os.PathLike) -> LTX2VocoderConfig | LTX2VocoderWithBWEConfig:
    """The vocoder's config (its class from ``_class_name``) without reading its weights: the Orbax marker,
    ``config.json``, or a single file's metadata and tensor shapes (the header only)."""
    path = component_folder(os.fspath(path), VOCODER)
    _check_path(path, "Vocoder")
    if orbax_io.is_orbax_dir(path):
        return _vocoder_config_from_dict(orbax_io.read_marker(path)["config"], path)
    if os.path.isdir(path):
        return _vocoder_folder_config(path)
    file = open_safetensors(path)
    view = _vocoder_view(file, path)
    return _stage_widths(_single_file_config(file, VOCODER, vocoder_config_from_native, infer_vocoder_config,
                                             lambda: _shapes(view)), _shapes(view))


def load_audio_vae(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: LTX2AudioVAEConfig | None = None,
    **module_kwargs,
) -> tuple[AutoencoderKLLTX2Audio, dict]:
    """Loads LTX-2's audio VAE.

    Args:
      path: a diffusers ``audio_vae/`` folder or a pipeline root holding one; a Lightricks single file (keys
        ``audio_vae.*``); or an Orbax directory written by ``save_audio_vae_orbax``.
      dtype: dtype of the params and of the module's convolutions.
      config: overrides the config read from (or inferred for) the checkpoint.
      module_kwargs: extra module fields (``precision``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, latents, method="decode")``.
    Raises:
      CheckpointError on a missing path, missing or unexpected tensors, or a shape that does not fit the config
      (naming the key and both shapes), all before any tensor is read.
    """
    path = component_folder(os.fspath(path), AUDIO_VAE)
    dtype = jnp.dtype(dtype)
    _check_path(path, "Audio VAE")

    def make(c):
        return AutoencoderKLLTX2Audio(c, dtype=dtype, param_dtype=dtype, **module_kwargs)

    if orbax_io.is_orbax_dir(path):
        return restore_orbax(path, AUDIO_VAE, LTX2AudioVAEConfig, config, make)
    ignore: list[str] = []
    config = config or read_audio_vae_config(path)
    if os.path.isdir(path):
        source = open_safetensors(path)
    else:
        source, ignore = _audio_vae_view(open_safetensors(path), path)
    shape = source.shape
    module = make(config)
    abstract = abstract_params(module)
    params = convert(source, audio_vae_rules(abstract), abstract, dtype, what="audio VAE", source_shape=shape,
                     ignore=ignore)
    return module, params


def load_vocoder(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: LTX2VocoderConfig | LTX2VocoderWithBWEConfig | None = None,
    **module_kwargs,
) -> tuple[LTX2Vocoder | LTX2VocoderWithBWE, dict]:
    """Loads an LTX-2 vocoder: ``LTX2Vocoder`` (LTX-2) or ``LTX2VocoderWithBWE`` (LTX-2.3), as the config's
    ``_class_name`` (or the single file's metadata / tensors) says.

    Args:
      path: a diffusers ``vocoder/`` folder or a pipeline root holding one; a Lightricks single file (keys
        ``vocoder.*``); or an Orbax directory written by ``save_vocoder_orbax``.
      dtype: dtype of the params and of the module's convolutions (float32 recommended: see ``LTX2Vocoder``).
      config: overrides the config read from (or inferred for) the checkpoint; its type picks the module.
      module_kwargs: extra module fields (``precision``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, mel)``, mel [B, T, M, C].
    Raises:
      CheckpointError as ``load_audio_vae``, and for a config.json of another class.
    """
    path = component_folder(os.fspath(path), VOCODER)
    dtype = jnp.dtype(dtype)
    _check_path(path, "Vocoder")
    config = config or read_vocoder_config(path)
    if orbax_io.is_orbax_dir(path):
        return restore_orbax(path, VOCODER, type(config), config,
                             lambda c: make_vocoder(c, dtype, **module_kwargs))
    source = open_safetensors(path) if os.path.isdir(path) else _vocoder_view(open_safetensors(path), path)
    module = make_vocoder(config, dtype, **module_kwargs)
    abstract = abstract_params(module)
    params = convert(source, vocoder_rules(abstract), abstract, dtype, what="vocoder", source_shape=source.shape)
    return module, params


def save_audio_vae_orbax(module: AutoencoderKLLTX2Audio, params: dict, path: str | os.PathLike, *,
                         overwrite: bool = False) -> None:
    """Writes ``params`` and the module's config as an Orbax checkpoint that ``load_audio_vae`` reads back
    (atomically: ``orbax_io.save``)."""
    orbax_io.save(path, AUDIO_VAE, module.config.to_dict(), params, module.param_dtype, overwrite=overwrite)


def save_vocoder_orbax(module: LTX2Vocoder | LTX2VocoderWithBWE, params: dict, path: str | os.PathLike, *,
                       overwrite: bool = False) -> None:
    """Writes ``params`` and the module's config (with its ``_class_name``) as an Orbax checkpoint that
    ``load_vocoder`` reads back."""
    orbax_io.save(path, VOCODER, module.config.to_dict(), params, module.param_dtype, overwrite=overwrite)


def native_single_file_tensors(audio_vae: dict | None = None, vocoder: dict | None = None) -> dict:
    """diffusers-named state dicts -> one dict of Lightricks single-file names (what ``load_audio_vae`` /
    ``load_vocoder`` read back from a single file; for writing test files and converted checkpoints)."""
    out = {native_audio_vae_key(k): v for k, v in (audio_vae or {}).items()}
    out.update({native_vocoder_key(k): v for k, v in (vocoder or {}).items()})
    return out


__all__ = ["load_audio_vae", "load_vocoder", "save_audio_vae_orbax", "save_vocoder_orbax", "make_vocoder",
           "audio_vae_config_from_native", "vocoder_config_from_native", "native_single_file_tensors"]

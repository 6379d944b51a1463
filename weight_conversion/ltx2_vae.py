"""Loading the LTX-2 video VAE from diffusers folders, Lightricks single files and Orbax checkpoints.

The params are our LTX-Video VAE's tree (``ltx_jax.models.ltx2.vae``), so the table is LTX-Video's
(``weight_conversion.vae.vae_rules``) with one rename: LTX-2's ``conv_shortcut`` is a plain ``Conv3d``
(``conv_shortcut.weight``), not a causal conv wrapping one. Lightricks' native names (``ltx-core``, keys ``vae.*``)
number the encoder's and decoder's sub-blocks in one flat list exactly as LTX-Video 0.9.5's do, so LTX-Video's
block-index remap (``native_key_function``) applies to the LTX-Video view of the config; ``norm3`` keeps its name
(a GroupNorm in ``ltx-core``; no released LTX-2 VAE has one). The config comes from the file's ``config`` metadata
("vae" part: ``encoder_blocks`` / ``decoder_blocks``, read as ``ltx-core``'s model configurator reads them) or,
without one, is LTX-2's published diffusers config.
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp

from ltx_jax.configs_ltx2 import LTX2VideoVAEConfig
from ltx_jax.models import abstract_params
from ltx_jax.models.ltx2.vae import AutoencoderKLLTX2Video, ltx_video_config
from weight_conversion import orbax_io
from weight_conversion.common import (component_folder, folder_config, placement, read_config,
                                      read_single_file_config, restore_orbax)
from weight_conversion.mapping import Path, Rule, convert
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors
from weight_conversion.vae import (_IGNORED_STATS, _STATS, NATIVE_PREFIX, _encoder_fields, _SourceView,
                                   native_key_function, torch_key, vae_rules)

COMPONENT = "vae"
#: LTX-2's published diffusers config (``scripts/convert_ltx2_to_diffusers.py``, version "2.0"): the class defaults
#: but for a non-causal decoder and the stated compression ratios. Used for single files without config metadata.
PUBLISHED = LTX2VideoVAEConfig(decoder_causal=False, spatial_compression_ratio=32, temporal_compression_ratio=8)
_UPSAMPLE_KINDS = {"compress_all": "spatiotemporal", "compress_time": "temporal", "compress_space": "spatial"}


# ------------------------------------------------------------------------------------------------------ names


def ltx2_torch_key(path: Path) -> str:
    """Flax param path -> diffusers ``AutoencoderKLLTX2Video`` state-dict key."""
    return torch_key(path).replace(".conv_shortcut.conv.", ".conv_shortcut.")


def ltx2_vae_rules(abstract: Any, config: LTX2VideoVAEConfig, native: bool = False) -> list[Rule]:
    """The conversion table: diffusers names, or (``native``) Lightricks' ``vae.*`` names."""
    if not native:
        return vae_rules(abstract, ltx2_torch_key)
    to_native = native_key_function(ltx_video_config(config))
    return vae_rules(abstract, lambda p: to_native(torch_key(p)).replace(".norm3.norm.", ".norm3."))


# ------------------------------------------------------------------------------------------ native configs


def _decoder_fields(blocks_desc, base: int) -> dict:
    """``ltx-core``'s ``decoder_blocks`` (listed from the output side, built reversed) -> diffusers' decoder fields.

    Per up block, in decoding order: an optional ``res_x_y`` (``conv_in``), an optional ``compress_*`` upsampler
    (``multiplier`` = diffusers' ``upsample_factor``), then ``res_x`` resnets; the block's diffusers width is its
    resnets' width times its factor. ``upsample_type`` stays in decoding order, as diffusers indexes it."""
    width = base
    for name, raw in blocks_desc:
        params = raw if isinstance(raw, dict) else {}
        if name in _UPSAMPLE_KINDS:
            width *= params.get("multiplier", 1)
        elif name == "res_x_y":
            width *= params.get("multiplier", 2)
    order = list(reversed(blocks_desc))
    if not order or order[0][0] != "res_x":
        raise CheckpointError("native LTX-2 VAE decoder must start (in decoding order) with a 'res_x' mid block.")
    mid = order[0][1] if isinstance(order[0][1], dict) else {"num_layers": order[0][1]}
    groups, current = [], {}
    for name, raw in order[1:]:
        params = raw if isinstance(raw, dict) else {"num_layers": raw}
        if name == "res_x_y" and not current:
            current["conv_in"] = True
            width //= params.get("multiplier", 2)
        elif name in _UPSAMPLE_KINDS and "kind" not in current:
            factor = params.get("multiplier", 1)
            if current.get("conv_in") and factor != 1:
                raise CheckpointError("native LTX-2 VAE decoder: a width-changing resnet before a channel-reducing "
                                      "upsampler has no diffusers equivalent.")
            current.update(kind=_UPSAMPLE_KINDS[name], factor=factor,
                           residual=name == "compress_all" and bool(params.get("residual", False)))
            width //= factor
        elif name == "res_x":
            groups.append({**current, "out": width, "layers": params["num_layers"],
                           "noise": bool(params.get("inject_noise", False))})
            current = {}
        else:
            raise CheckpointError(f"native LTX-2 VAE decoder block {name!r} here has no diffusers "
                                  "AutoencoderKLLTX2Video equivalent.")
    if current:
        raise CheckpointError("native LTX-2 VAE decoder: every up block must end with a 'res_x' block.")
    rev = lambda xs: tuple(reversed(xs))  # noqa: E731
    return {
        "decoder_block_out_channels": rev([g["out"] * g.get("factor", 1) for g in groups]),
        "decoder_layers_per_block": rev([mid["num_layers"]] + [g["layers"] for g in groups]),
        "decoder_inject_noise": rev([bool(mid.get("inject_noise", False))] + [g["noise"] for g in groups]),
        "decoder_spatio_temporal_scaling": rev(["kind" in g for g in groups]),
        "upsample_factor": rev([g.get("factor", 1) for g in groups]),
        "upsample_residual": rev([g.get("residual", False) for g in groups]),
        "upsample_type": tuple(g.get("kind", "spatiotemporal") for g in groups),
    }


def config_from_native(native: dict) -> LTX2VideoVAEConfig | None:
    """The "vae" part of an LTX-2 single file's ``config`` metadata -> ``LTX2VideoVAEConfig`` (None without blocks).

    Read as ``ltx-core``'s ``VideoEncoderConfigurator`` / ``VideoDecoderConfigurator`` read the flat
    ``CausalVideoAutoencoder`` layout: the encoder starts ``latent_channels`` wide, the decoder ends
    ``decoder_base_channels`` wide, ``spatial_padding_mode`` (default "reflect") pads the decoder and, when
    present, the encoder (else ``encoder_spatial_padding_mode``, default "zeros").
    """
    if "block_out_channels" in native:  # already diffusers' format
        return LTX2VideoVAEConfig.from_dict(
            {k: v for k, v in native.items() if k in LTX2VideoVAEConfig.__dataclass_fields__})
    if native.get("_class_name", "CausalVideoAutoencoder") != "CausalVideoAutoencoder":
        raise CheckpointError(f"native VAE _class_name={native['_class_name']!r}: only LTX-2's convolutional "
                              "'CausalVideoAutoencoder' is supported.")
    if "encoder" in native or "encoder_blocks" not in native or "decoder_blocks" not in native:
        return None
    checks = {"dims": (3, [3], (3,)), "latent_log_var": ("uniform",), "norm_layer": ("pixel_norm",)}
    for field, allowed in checks.items():
        if field in native and native[field] not in allowed:
            raise CheckpointError(f"native VAE config has {field}={native[field]!r}; LTX-2 VAEs use {allowed[0]!r}.")
    latent = int(native.get("latent_channels", 128))
    encoder = _encoder_fields(native["encoder_blocks"], latent)
    if encoder["down_block_types"] and encoder["down_block_types"][-1] != "LTXVideo095DownBlock3D":
        raise CheckpointError("native LTX-2 VAE encoder: only space-to-depth downsamplers ('compress_*_res') map to "
                              "diffusers' LTX2VideoDownBlock3D.")
    padding = native.get("spatial_padding_mode")
    fields = {
        "block_out_channels": encoder["block_out_channels"][1:],
        "down_block_types": ("LTX2VideoDownBlock3D",) * len(encoder["down_block_types"]),
        "layers_per_block": encoder["layers_per_block"],
        "spatio_temporal_scaling": encoder["spatio_temporal_scaling"],
        "downsample_type": encoder["downsample_type"],
        **_decoder_fields(native["decoder_blocks"], int(native.get("decoder_base_channels", 128))),
        "in_channels": int(native.get("in_channels", 3)),
        "out_channels": int(native.get("out_channels", 3)),
        "latent_channels": latent,
        "patch_size": int(native.get("patch_size", 4)),
        "timestep_conditioning": bool(native.get("timestep_conditioning", False)),
        "decoder_causal": bool(native.get("causal_decoder", False)),
        "encoder_spatial_padding_mode": padding or native.get("encoder_spatial_padding_mode", "zeros"),
        "decoder_spatial_padding_mode": padding or "reflect",
        "scaling_factor": float(native.get("scaling_factor", 1.0)),
    }
    config = LTX2VideoVAEConfig(**fields)
    module = AutoencoderKLLTX2Video(config)
    return config.replace(spatial_compression_ratio=module.spatial_ratio,
                          temporal_compression_ratio=module.temporal_ratio)


# ------------------------------------------------------------------------------------------------ loading


def _make_module(config: LTX2VideoVAEConfig, dtype: Any, **module_kwargs) -> AutoencoderKLLTX2Video:
    try:
        ltx_video_config(config)  # the architecture's own checks, before any tensor is read
    except ValueError as e:
        raise CheckpointError(f"LTX-2 VAE config: {e}") from None
    return AutoencoderKLLTX2Video(config, dtype=dtype, param_dtype=dtype, **module_kwargs)


def _native_keys(source: TensorSource, path: str) -> list[str]:
    keys = [k for k in source if k.startswith(NATIVE_PREFIX)]
    if not keys:
        raise CheckpointError(
            f"{path} holds no 'vae.*' tensors: it is not a Lightricks LTX-2 single file with a video VAE. For a "
            "diffusers diffusion_pytorch_model.safetensors, pass its folder (with config.json)."
        )
    return keys


def _single_file_config(source: TensorSource, path: str) -> LTX2VideoVAEConfig:
    try:
        native = (read_single_file_config(source) or {}).get("vae")
        config = config_from_native(native) if isinstance(native, dict) else None
    except ValueError as e:  # a config out of range: name the file
        raise CheckpointError(f"{path}: the LTX-2 VAE's config: {e}") from None
    return PUBLISHED if config is None else config


def read_ltx2_vae_config(path: str | os.PathLike) -> LTX2VideoVAEConfig:
    """The config of an LTX-2 VAE checkpoint without reading its weights (``config.json``, a single file's metadata,
    or the Orbax marker)."""
    return read_config(path, COMPONENT, LTX2VideoVAEConfig, "diffusers LTX-2 vae",
                       lambda source, file: (_native_keys(source, file), _single_file_config(source, file))[1])


def load_ltx2_vae(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: LTX2VideoVAEConfig | None = None,
    sharding: Any = None,
    **module_kwargs,
) -> tuple[AutoencoderKLLTX2Video, dict]:
    """Loads the LTX-2 video VAE.

    Args:
      path: a diffusers ``vae/`` folder (``config.json`` with ``_class_name`` "AutoencoderKLLTX2Video" +
        safetensors) or a pipeline root holding one; a Lightricks single file (``ltx-2-*.safetensors``, keys
        ``vae.*``; other components' keys are skipped unread); or an Orbax directory (``save_ltx2_vae_orbax``).
      dtype: dtype of the params and of the module's computation.
      config: overrides the config read from the checkpoint.
      sharding: a ``ShardingPlan``: each param goes straight to its shards (the VAE's params are replicated).
      module_kwargs: extra module fields (``precision``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, latents, method="decode")``.
    """
    path = component_folder(os.fspath(path), COMPONENT)
    dtype = jnp.dtype(dtype)
    if orbax_io.is_orbax_dir(path):
        return restore_orbax(path, COMPONENT, LTX2VideoVAEConfig, config,
                             lambda c: _make_module(c, dtype, **module_kwargs), sharding)

    if os.path.isdir(path):
        config = config or folder_config(path, LTX2VideoVAEConfig, "diffusers LTX-2 vae")
        source = open_safetensors(path)
        module = _make_module(config, dtype, **module_kwargs)
        abstract = abstract_params(module)
        params = convert(source, ltx2_vae_rules(abstract, config), abstract, dtype, what="LTX-2 vae",
                         source_shape=source.shape, placement=placement(sharding, module, abstract))
        return module, params

    source = open_safetensors(path)
    native_keys = _native_keys(source, path)
    config = config or _single_file_config(source, path)
    module = _make_module(config, dtype, **module_kwargs)
    abstract = abstract_params(module)
    stats = NATIVE_PREFIX + _STATS
    ignore = [k for k in native_keys if k.startswith(stats) and k[len(stats):] in _IGNORED_STATS]
    view = _SourceView(source, native_keys)
    params = convert(view, ltx2_vae_rules(abstract, config, native=True), abstract, dtype, what="LTX-2 vae",
                     source_shape=view.shape, ignore=ignore, placement=placement(sharding, module, abstract))
    return module, params


def save_ltx2_vae_orbax(module: AutoencoderKLLTX2Video, params: dict, path: str | os.PathLike, *,
                        overwrite: bool = False) -> None:
    """Writes ``params`` and the module's config as an Orbax checkpoint (atomically: ``orbax_io.save``)."""
    orbax_io.save(path, COMPONENT, module.config.to_dict(), params, module.param_dtype, overwrite=overwrite)

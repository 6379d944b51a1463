"""Loading the LTX-Video VAE from diffusers folders, Lightricks single files and Orbax checkpoints.

Lightricks' native layout numbers the encoder's and decoder's sub-blocks in one flat list (``down_blocks.N`` is a
resnet group, a downsampler or a width-changing resnet; ``up_blocks.0`` is the decoder's mid block) and uses a few
other names (``res_blocks``, ``norm3.norm``, ``last_time_embedder``, ``per_channel_statistics.*``). We derive that
numbering from the config, so the 0.9.0, 0.9.1 and 0.9.5 layouts (diffusers' three rename tables) and any other
config with the same block kinds map the same way. The config comes from the file's ``config`` metadata ("vae"
part, native ``blocks`` / ``encoder_blocks`` / ``decoder_blocks`` descriptions) or, without one, from key patterns
and tensor shapes.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable

import jax.numpy as jnp
import numpy as np

from ltx_jax.configs import VAEConfig
from ltx_jax.configs_ltx2 import LTX2VideoVAEConfig
from ltx_jax.models import abstract_params
from ltx_jax.models.vae import AutoencoderKLLTXVideo, decoder_specs, encoder_specs
from weight_conversion import orbax_io
from weight_conversion.common import (component_folder, folder_config, read_config, read_single_file_config,
                                      restore_orbax)
from weight_conversion.family import LTX2, checkpoint_family
from weight_conversion.mapping import CONV, IDENTITY, LINEAR, Path, Rule, Transform, convert, rules_from_tree
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors

NATIVE_PREFIX = "vae."
_STATS = "per_channel_statistics."
# per_channel_statistics entries diffusers drops (only the mean and std of the means are used).
_IGNORED_STATS = ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means")

# torch keeps the noise scales as [C, 1, 1]; we keep [C].
PER_CHANNEL = Transform("per-channel", lambda x: x.reshape(x.shape[0]), lambda s: (s[0], 1, 1))

_LIST_NAME = re.compile(r"^(down_blocks|up_blocks|resnets|downsamplers|upsamplers)_(\d+)$")


# ------------------------------------------------------------------------------------------ diffusers names


def torch_key(path: Path) -> str:
    """Flax param path -> diffusers state-dict key (``down_blocks_0/resnets_1/conv1/conv/kernel`` ->
    ``...conv.weight``)."""
    names = [_LIST_NAME.sub(r"\1.\2", p) for p in path[:-1]]
    leaf = "weight" if path[-1] == "kernel" else path[-1]
    return ".".join(names + [leaf])


def _transform_for(path: Path, ndim: int) -> Transform:
    if path[-1] == "kernel":
        return LINEAR if ndim == 2 else CONV
    if path[-1].startswith("per_channel_scale"):
        return PER_CHANNEL
    return IDENTITY


def vae_rules(abstract: Any, name: Callable[[Path], str] = torch_key) -> list[Rule]:
    return rules_from_tree(abstract, name, _transform_for)


# ------------------------------------------------------------------------------------------ native names


def native_prefixes(cfg: VAEConfig) -> list[tuple[str, str]]:
    """(diffusers prefix, native prefix) pairs: the block-index remap of Lightricks' flat block lists."""
    table = []
    down, _ = encoder_specs(cfg)
    n = 0
    for s in down:
        table.append((f"encoder.down_blocks.{s.index}.resnets.", f"encoder.down_blocks.{n}.res_blocks."))
        n += 1
        if s.scale:
            table.append((f"encoder.down_blocks.{s.index}.downsamplers.0.", f"encoder.down_blocks.{n}."))
            n += 1
        if s.has_conv_out:
            table.append((f"encoder.down_blocks.{s.index}.conv_out.", f"encoder.down_blocks.{n}."))
            n += 1
    table.append(("encoder.mid_block.resnets.", f"encoder.down_blocks.{n}.res_blocks."))
    table.append(("decoder.mid_block.resnets.", "decoder.up_blocks.0.res_blocks."))
    table.append(("decoder.mid_block.time_embedder.", "decoder.up_blocks.0.time_embedder."))
    _, up, _ = decoder_specs(cfg)
    n = 1
    for s in up:
        if s.has_conv_in:
            table.append((f"decoder.up_blocks.{s.index}.conv_in.", f"decoder.up_blocks.{n}."))
            n += 1
        if s.scale:
            table.append((f"decoder.up_blocks.{s.index}.upsamplers.0.", f"decoder.up_blocks.{n}."))
            n += 1
        table.append((f"decoder.up_blocks.{s.index}.resnets.", f"decoder.up_blocks.{n}.res_blocks."))
        table.append((f"decoder.up_blocks.{s.index}.time_embedder.", f"decoder.up_blocks.{n}.time_embedder."))
        n += 1
    table += [
        ("decoder.time_embedder.", "decoder.last_time_embedder."),
        ("decoder.scale_shift_table", "decoder.last_scale_shift_table"),
        ("latents_mean", _STATS + "mean-of-means"),
        ("latents_std", _STATS + "std-of-means"),
    ]
    return table


def native_key_function(cfg: VAEConfig, prefix: str = NATIVE_PREFIX) -> Callable[[str], str]:
    """diffusers key -> Lightricks key.

    E.g. ``encoder.down_blocks.0.conv_out.norm3.weight`` -> ``vae.encoder.down_blocks.2.norm3.norm.weight`` (0.9.0).
    """
    table = native_prefixes(cfg)

    def to_native(key: str) -> str:
        for ours, theirs in table:
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        key = key.replace(".conv_shortcut.conv.", ".conv_shortcut.").replace(".norm3.", ".norm3.norm.")
        return prefix + key

    return to_native


# ------------------------------------------------------------------------------------------ native configs


def _block_params(params) -> dict:
    return {"num_layers": params} if isinstance(params, int) else dict(params or {})


_S2D_KINDS = {"compress_space_res": "spatial", "compress_time_res": "temporal", "compress_all_res": "spatiotemporal"}
_S2D_STRIDES = {"spatial": (1, 2, 2), "temporal": (2, 1, 1), "spatiotemporal": (2, 2, 2), "conv": (2, 2, 2)}


def _encoder_fields(blocks_desc, base: int) -> dict:
    width = base
    groups: list[dict] = []
    for name, raw in blocks_desc:
        params = _block_params(raw)
        if name == "res_x":
            groups.append({"layers": params["num_layers"], "in": width, "out": width, "down": None, "conv_out": False})
            continue
        if not groups:
            raise CheckpointError(f"native VAE encoder starts with {name!r}; expected a 'res_x' block first.")
        group = groups[-1]
        if name == "compress_all" and group["down"] is None and not group["conv_out"]:
            group["down"] = "conv"
        elif name in _S2D_KINDS and group["down"] is None:
            group["down"] = _S2D_KINDS[name]
            width *= params.get("multiplier", 2)
            group["out"], group["s2d"] = width, True
        elif name == "res_x_y" and not group["conv_out"]:
            width *= params.get("multiplier", 2)
            group["out"], group["conv_out"] = width, True
        else:
            raise CheckpointError(f"native VAE encoder block {name!r} here has no diffusers "
                                  "AutoencoderKLLTXVideo equivalent.")
    mid = groups.pop()
    if mid["down"] is not None or mid["conv_out"]:
        raise CheckpointError("native VAE encoder must end with a 'res_x' mid block.")
    v095 = any(g.get("s2d") for g in groups)
    if v095 and any(g["conv_out"] for g in groups):
        raise CheckpointError("native VAE encoder mixes space-to-depth downsamplers and 'res_x_y' blocks.")
    if not v095 and groups and groups[-1]["conv_out"]:
        raise CheckpointError("native VAE encoder: diffusers' last LTXVideoDownBlock3D cannot change width.")
    fields = {
        "layers_per_block": tuple(g["layers"] for g in groups) + (mid["layers"],),
        "spatio_temporal_scaling": tuple(g["down"] is not None for g in groups),
        "downsample_type": tuple(g["down"] or "conv" for g in groups),
    }
    if v095:
        fields["block_out_channels"] = (base,) + tuple(g["out"] for g in groups)
        fields["down_block_types"] = ("LTXVideo095DownBlock3D",) * len(groups)
    else:
        fields["block_out_channels"] = tuple(g["in"] for g in groups)
        fields["down_block_types"] = ("LTXVideoDownBlock3D",) * len(groups)
    return fields


def _decoder_fields(blocks_desc, base: int) -> dict:
    width = base
    for name, raw in blocks_desc:
        params = raw if isinstance(raw, dict) else {}
        if name == "res_x_y":
            width *= params.get("multiplier", 2)
        elif name == "compress_all":
            width *= params.get("multiplier", 1)
    order = list(reversed(blocks_desc))  # decoder execution order
    if not order or order[0][0] != "res_x":
        raise CheckpointError("native VAE decoder must start (in decoding order) with a 'res_x' mid block.")
    mid = _block_params(order[0][1])
    groups, current = [], {}
    for name, raw in order[1:]:
        params = _block_params(raw)
        if name == "res_x_y" and not current:
            current["conv_in"] = True
            width //= params.get("multiplier", 2)
        elif name == "compress_all" and "up" not in current:
            current["up"] = (params.get("multiplier", 1), bool(params.get("residual", False)))
            current["width"] = width
            width //= params.get("multiplier", 1)
        elif name == "res_x":
            current.setdefault("width", width)
            groups.append({**current, "layers": params["num_layers"], "noise": bool(params.get("inject_noise", False))})
            current = {}
        else:
            raise CheckpointError(f"native VAE decoder block {name!r} here has no diffusers "
                                  "AutoencoderKLLTXVideo equivalent.")
    if current:
        raise CheckpointError("native VAE decoder: every up block must end with a 'res_x' block.")
    for g in groups:
        if g.get("conv_in") and g.get("up", (1, False))[0] != 1:
            raise CheckpointError(
                "native VAE decoder: a width-changing resnet before a channel-reducing upsampler has no diffusers "
                "equivalent."
            )
    rev = lambda xs: tuple(reversed(xs))  # noqa: E731
    return {
        "decoder_block_out_channels": rev([g["width"] for g in groups]),
        "decoder_layers_per_block": rev([mid["num_layers"]] + [g["layers"] for g in groups]),
        "decoder_inject_noise": rev([bool(mid.get("inject_noise", False))] + [g["noise"] for g in groups]),
        "decoder_spatio_temporal_scaling": rev(["up" in g for g in groups]),
        "upsample_factor": rev([g.get("up", (1, False))[0] for g in groups]),
        "upsample_residual": rev([g.get("up", (1, False))[1] for g in groups]),
    }


def config_from_native(native: dict) -> VAEConfig | None:
    """The "vae" part of a Lightricks single file's ``config`` metadata -> VAEConfig (None when it lacks the blocks)."""
    if "block_out_channels" in native:  # already diffusers' format
        return VAEConfig.from_dict({k: v for k, v in native.items() if k in VAEConfig.__dataclass_fields__})
    encoder_blocks = native.get("encoder_blocks", native.get("blocks"))
    decoder_blocks = native.get("decoder_blocks", native.get("blocks"))
    if encoder_blocks is None or decoder_blocks is None:
        return None
    checks = {"dims": (3, [3], (3,)), "latent_log_var": ("uniform",), "use_quant_conv": (False,),
              "norm_layer": ("pixel_norm",)}
    for field, allowed in checks.items():
        if field in native and native[field] not in allowed:
            raise CheckpointError(f"native VAE config has {field}={native[field]!r}; "
                                  f"LTX-Video VAEs use {allowed[0]!r}.")
    if native.get("spatial_padding_mode", "zeros") != "zeros":
        raise CheckpointError(
            f"native VAE config has spatial_padding_mode={native['spatial_padding_mode']!r}; only 'zeros' is supported."
        )
    fields = {
        **_encoder_fields(encoder_blocks, int(native.get("encoder_base_channels", 128))),
        **_decoder_fields(decoder_blocks, int(native.get("decoder_base_channels", 128))),
        "in_channels": int(native.get("in_channels", 3)),
        "out_channels": int(native.get("out_channels", 3)),
        "latent_channels": int(native["latent_channels"]),
        "patch_size": int(native.get("patch_size", 1)),
        "timestep_conditioning": bool(native.get("timestep_conditioning", False)),
        "decoder_causal": bool(native.get("causal_decoder", False)),
        "scaling_factor": float(native.get("scaling_factor", 1.0)),
    }
    # diffusers derives the compression ratios from spatio_temporal_scaling, which miscounts space-only and
    # time-only downsamplers; the 0.9.5 config states them, and so do we whenever the formula is off.
    strides = [_S2D_STRIDES[t] for t, s in zip(fields["downsample_type"], fields["spatio_temporal_scaling"]) if s]
    spatial = fields["patch_size"] * 2 ** sum(s[1] == 2 for s in strides)
    temporal = 2 ** sum(s[0] == 2 for s in strides)
    formula = 2 ** sum(fields["spatio_temporal_scaling"])
    if spatial != fields["patch_size"] * formula or temporal != formula:
        fields["spatial_compression_ratio"], fields["temporal_compression_ratio"] = spatial, temporal
    return VAEConfig(**fields)


def infer_native_config(shapes: dict[str, tuple[int, ...]]) -> dict:
    """A native VAE config rebuilt from key patterns and shapes (native names without the ``vae.`` prefix).

    Upsampler residual paths hold no weights; like diffusers' single-file loader (which picks the 0.9.1 / 0.9.5
    presets for timestep-conditioned decoders), we take them to be on exactly when the decoder is timestep-conditioned.
    """
    def need(key):
        if key not in shapes:
            raise CheckpointError(f"Cannot infer the VAE config: tensor vae.{key} is missing. "
                                  "Pass config=VAEConfig(...).")
        return shapes[key]

    def indices(part, group):
        return sorted({int(m.group(1)) for k in shapes if (m := re.match(rf"{part}\.{group}\.(\d+)\.", k))})

    def res_layers(prefix):
        return 1 + max(int(m.group(1)) for k in shapes
                       if (m := re.match(rf"{re.escape(prefix)}res_blocks\.(\d+)\.", k)))

    conv_in = need("encoder.conv_in.conv.weight")  # [C0, 3 p p, 3, 3, 3]
    patch = int(round((conv_in[1] / 3) ** 0.5))
    latent = need("decoder.conv_in.conv.weight")[1]
    if need("encoder.conv_out.conv.weight")[0] != latent + 1:
        raise CheckpointError("Only the 'uniform' log-variance encoder (latent_channels + 1 outputs) is supported.")
    timestep = "decoder.last_time_embedder.timestep_embedder.linear_1.weight" in shapes

    enc, down_idx = [], indices("encoder", "down_blocks")
    for n in down_idx:
        p = f"encoder.down_blocks.{n}."
        if p + "res_blocks.0.conv1.conv.weight" in shapes:
            enc.append(["res_x", {"num_layers": res_layers(p)}])
        elif p + "conv1.conv.weight" in shapes:
            out_c, in_c = shapes[p + "conv1.conv.weight"][:2]
            enc.append(["res_x_y", {"multiplier": out_c // in_c}])
        elif p + "conv.weight" in shapes:
            enc.append(["compress_all", {}])
        elif p + "conv.conv.weight" in shapes:
            conv_out_c, in_c = shapes[p + "conv.conv.weight"][:2]
            nxt = f"encoder.down_blocks.{n + 1}.res_blocks.0.conv1.conv.weight"
            out_c = need(nxt)[1]
            kind = {2: "compress_time_res", 4: "compress_space_res", 8: "compress_all_res"}.get(out_c // conv_out_c)
            if kind is None:
                raise CheckpointError(
                    f"Cannot infer the downsampler kind of vae.{p}: width {in_c} -> {out_c}, conv {conv_out_c}."
                )
            enc.append([kind, {"multiplier": out_c // in_c}])
        else:
            raise CheckpointError(f"Cannot infer the kind of VAE block vae.{p[:-1]} from its keys.")

    dec = []
    for n in indices("decoder", "up_blocks"):
        p = f"decoder.up_blocks.{n}."
        if p + "res_blocks.0.conv1.conv.weight" in shapes:
            dec.append(["res_x", {"num_layers": res_layers(p),
                                  "inject_noise": p + "res_blocks.0.per_channel_scale1" in shapes}])
        elif p + "conv1.conv.weight" in shapes:
            out_c, in_c = shapes[p + "conv1.conv.weight"][:2]
            dec.append(["res_x_y", {"multiplier": in_c // out_c}])
        elif p + "conv.conv.weight" in shapes:
            conv_out_c, in_c = shapes[p + "conv.conv.weight"][:2]
            dec.append(["compress_all", {"multiplier": in_c * 8 // conv_out_c, "residual": timestep}])
        else:
            raise CheckpointError(f"Cannot infer the kind of VAE block vae.{p[:-1]} from its keys.")
    out_c, final_width = need("decoder.conv_out.conv.weight")[:2]
    return {
        "_class_name": "CausalVideoAutoencoder",
        "dims": 3,
        "in_channels": conv_in[1] // patch**2,
        "out_channels": out_c // patch**2,
        "latent_channels": latent,
        "encoder_blocks": enc,
        "decoder_blocks": list(reversed(dec)),
        "encoder_base_channels": conv_in[0],
        "decoder_base_channels": final_width,
        "patch_size": patch,
        "norm_layer": "pixel_norm",
        "latent_log_var": "uniform",
        "use_quant_conv": False,
        "causal_decoder": False,
        "timestep_conditioning": timestep,
    }


# ------------------------------------------------------------------------------------------------ loading


class _SourceView:
    """A TensorSource restricted to some keys, plus synthetic tensors (a missing mean-of-means defaults to zeros)."""

    def __init__(self, source: TensorSource, keys: Iterable[str], extra: dict[str, np.ndarray] | None = None):
        self._source, self._keys, self._extra = source, set(keys), dict(extra or {})

    def __getitem__(self, key):
        return self._extra[key] if key in self._extra else self._source[key]

    def __iter__(self):
        return iter(self._keys | set(self._extra))

    def __contains__(self, key):
        return key in self._keys or key in self._extra

    def shape(self, key):
        return tuple(self._extra[key].shape) if key in self._extra else self._source.shape(key)


def _make_module(config: VAEConfig, dtype: Any, **module_kwargs) -> AutoencoderKLLTXVideo:
    return AutoencoderKLLTXVideo(config, dtype=dtype, param_dtype=dtype, **module_kwargs)


def _single_file_config(source: TensorSource, native_keys: list[str]) -> VAEConfig:
    try:
        native = (read_single_file_config(source) or {}).get("vae")
        if isinstance(native, dict):
            config = config_from_native(native)
            if config is not None:
                return config
        shapes = {k[len(NATIVE_PREFIX):]: source.shape(k) for k in native_keys}
        return config_from_native(infer_native_config(shapes))
    except ValueError as e:  # a config out of range, or one that cannot be read: name the file
        raise CheckpointError(f"{source.files[0].path}: the VAE's config: {e}") from None


def _native_keys(source: TensorSource, path: str) -> list[str]:
    native_keys = [k for k in source if k.startswith(NATIVE_PREFIX)]
    if not native_keys:
        raise CheckpointError(
            f"{path} holds no 'vae.*' tensors: it is not a Lightricks single file with a VAE. For a diffusers "
            "diffusion_pytorch_model.safetensors, pass its folder (with config.json)."
        )
    return native_keys


def read_vae_config(path: str | os.PathLike) -> VAEConfig | LTX2VideoVAEConfig:
    """The config of a VAE checkpoint (any layout ``load_vae`` reads) without reading its weights: ``config.json``,
    a single file's metadata or tensor shapes (its header only), or the Orbax marker; an ``LTX2VideoVAEConfig`` for
    an LTX-2 checkpoint."""
    if checkpoint_family(path, "vae") == LTX2:
        from weight_conversion.ltx2_vae import read_ltx2_vae_config  # cycle: the LTX-2 loader builds on this module
        return read_ltx2_vae_config(path)
    return read_config(path, "vae", VAEConfig, "diffusers vae",
                       lambda source, file: _single_file_config(source, _native_keys(source, file)))


def load_vae(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: VAEConfig | LTX2VideoVAEConfig | None = None,
    **module_kwargs,
) -> tuple[Any, dict]:
    """Loads the LTX-Video VAE, or LTX-2's video VAE (``AutoencoderKLLTX2Video``, through ``load_ltx2_vae``) when the
    checkpoint's config says so (``checkpoint_family``).

    Args:
      path: a diffusers ``vae/`` folder (``config.json`` + safetensors) or a pipeline root holding one; a Lightricks
        single file (``ltxv-*.safetensors``, keys ``vae.*`` in the native layout of 0.9.0, 0.9.1 or 0.9.5+); or an
        Orbax directory written by ``python -m weight_conversion convert --component vae``.
      dtype: dtype of the params and of the module's computation.
      config: overrides the config read from (or inferred for) the checkpoint.
      module_kwargs: extra module fields (``precision``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, latents, timestep, method="decode")``.
    """
    if isinstance(config, LTX2VideoVAEConfig) or (config is None and checkpoint_family(path, "vae") == LTX2):
        # cycle: the LTX-2 loader builds on this module's tables
        from weight_conversion.ltx2_vae import load_ltx2_vae
        return load_ltx2_vae(path, dtype, config=config, **module_kwargs)
    path = component_folder(os.fspath(path), "vae")
    dtype = jnp.dtype(dtype)
    if orbax_io.is_orbax_dir(path):
        return restore_orbax(path, "vae", VAEConfig, config, lambda c: _make_module(c, dtype, **module_kwargs))

    if os.path.isdir(path):
        folder = path
        config = config or folder_config(folder, VAEConfig, "diffusers vae")
        source = open_safetensors(folder)
        module = _make_module(config, dtype, **module_kwargs)
        abstract = abstract_params(module)
        params = convert(source, vae_rules(abstract), abstract, dtype, what="vae", source_shape=source.shape)
        return module, params

    source = open_safetensors(path)
    native_keys = _native_keys(source, path)
    config = config or _single_file_config(source, native_keys)
    module = _make_module(config, dtype, **module_kwargs)
    abstract = abstract_params(module)
    to_native = native_key_function(config)
    rules = vae_rules(abstract, lambda p: to_native(torch_key(p)))
    extra = {}
    mean_key, std_key = NATIVE_PREFIX + _STATS + "mean-of-means", NATIVE_PREFIX + _STATS + "std-of-means"
    if mean_key not in source and std_key in source:  # Lightricks' loader defaults the mean to zeros
        extra[mean_key] = np.zeros(source.shape(std_key), source[std_key].dtype)
    stats = NATIVE_PREFIX + _STATS
    ignore = [k for k in native_keys if k.startswith(stats) and k[len(stats):] in _IGNORED_STATS]
    view = _SourceView(source, native_keys, extra)
    params = convert(view, rules, abstract, dtype, what="vae", source_shape=view.shape, ignore=ignore)
    return module, params


def save_vae_orbax(module: AutoencoderKLLTXVideo, params: dict, path: str | os.PathLike, *,
                   overwrite: bool = False) -> None:
    """Writes ``params`` and the module's config as an Orbax checkpoint (atomically: ``orbax_io.save``)."""
    orbax_io.save(path, "vae", module.config.to_dict(), params, module.param_dtype, overwrite=overwrite)

"""Loading the LTX-Video latent upsampler from diffusers folders, Lightricks single files and Orbax checkpoints.

diffusers (``LTXLatentUpsamplerModel.save_pretrained``) and Lightricks (``ltxv-spatial-upscaler-0.9.8.safetensors``)
use the same tensor names without a prefix (``initial_conv.weight``, ``res_blocks.0.conv1.weight``,
``upsampler.0.weight``...). A diffusers folder states its config in ``config.json``; a single file in the JSON
``config`` entry of its metadata, whose missing keys take the defaults of the original's
``LatentUpsampler.from_config`` (``ORIGINAL_DEFAULTS``, not diffusers'); a file without one gets the config the
tensor shapes imply (every field is determined by them).
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax.numpy as jnp

from ltx_jax.configs import LatentUpsamplerConfig
from ltx_jax.configs_ltx2 import LTX2LatentUpsamplerConfig
from ltx_jax.models import abstract_params
from ltx_jax.models.latent_upsampler import LatentUpsampler
from weight_conversion import orbax_io
from weight_conversion.common import (component_folder, folder_config, read_config, read_single_file_config,
                                      restore_orbax)
from weight_conversion.mapping import CONV, IDENTITY, Path, Rule, Transform, convert, rules_from_tree
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors

COMPONENT = "latent_upsampler"
# ltx_video 0.1.2 ``LatentUpsampler.from_config``: what a single file's metadata config means for a key it lacks.
ORIGINAL_DEFAULTS = {"in_channels": 4, "mid_channels": 128, "num_blocks_per_stage": 4, "dims": 2,
                     "spatial_upsample": True, "temporal_upsample": False}

_LIST_NAME = re.compile(r"^(res_blocks|post_upsample_res_blocks|upsampler)_(\d+)$")
_PARAM_NAMES = {"kernel": "weight", "scale": "weight"}


def torch_key(path: Path) -> str:
    """Flax param path -> torch key (``res_blocks_1/norm2/scale`` -> ``res_blocks.1.norm2.weight``)."""
    return ".".join([_LIST_NAME.sub(r"\1.\2", p) for p in path[:-1]] + [_PARAM_NAMES.get(path[-1], path[-1])])


def _transform_for(path: Path, ndim: int) -> Transform:
    return CONV if path[-1] == "kernel" else IDENTITY


def latent_upsampler_rules(abstract: Any) -> list[Rule]:
    return rules_from_tree(abstract, torch_key, _transform_for)


# ------------------------------------------------------------------------------------------ single files


def config_from_original(original: dict) -> LatentUpsamplerConfig:
    """A single file's metadata config (ltx_video's ``LatentUpsampler`` keys) -> LatentUpsamplerConfig; keys it
    lacks take ``ORIGINAL_DEFAULTS`` and other keys are ignored, as ``LatentUpsampler.from_config`` does."""
    try:
        return LatentUpsamplerConfig.from_dict({k: original.get(k, v) for k, v in ORIGINAL_DEFAULTS.items()})
    except ValueError as e:
        raise CheckpointError(f"latent upsampler: the single file's metadata config does not describe an upsampler: "
                              f"{e}") from e


def infer_config(source: TensorSource) -> LatentUpsamplerConfig:
    """The config the tensor shapes imply: in / mid channels and dims from ``initial_conv.weight`` ([M, C_in, 3, 3]
    or [M, C_in, 3, 3, 3]), the blocks per stage from the ``res_blocks.{i}`` indices, the upsampling kind from
    ``upsampler.0.weight`` ([4M, M, 3, 3]: spatial; [8M, M, 3, 3, 3]: both; [2M, M, 3, 3, 3]: temporal)."""
    first, up = source.shape("initial_conv.weight"), source.shape("upsampler.0.weight")
    mid, in_channels = first[0], first[1]
    blocks = 1 + max((int(m.group(1)) for k in source if (m := re.match(r"res_blocks\.(\d+)\.", k))), default=-1)
    kinds = {(4, 4): (True, False), (8, 5): (True, True), (2, 5): (False, True)}
    factor = up[0] // mid if up[0] % mid == 0 else None
    if (factor, len(up)) not in kinds:
        raise CheckpointError(f"latent upsampler: upsampler.0.weight has shape {up}, which is none of the upsamplers "
                              f"for mid_channels={mid} ([4M, M, 3, 3], [8M, M, 3, 3, 3] or [2M, M, 3, 3, 3]).")
    spatial, temporal = kinds[factor, len(up)]
    try:
        return LatentUpsamplerConfig(in_channels=in_channels, mid_channels=mid, num_blocks_per_stage=blocks,
                                     dims=len(first) - 2, spatial_upsample=spatial, temporal_upsample=temporal)
    except ValueError as e:
        raise CheckpointError(f"latent upsampler: the tensor shapes describe no valid upsampler: {e}") from e


def _single_file_config(source: TensorSource, path: str) -> LatentUpsamplerConfig:
    missing = [k for k in ("initial_conv.weight", "upsampler.0.weight") if k not in source]
    if missing:
        raise CheckpointError(f"{path} holds no {missing[0]!r}: it is not a latent upsampler checkpoint (keys such as "
                              f"{sorted(source)[:3]}).")
    original = read_single_file_config(source)
    return config_from_original(original) if original is not None else infer_config(source)


# ------------------------------------------------------------------------------------------ public API


def _make_module(config: LatentUpsamplerConfig, dtype: Any, **module_kwargs) -> LatentUpsampler:
    return LatentUpsampler(config, dtype=dtype, param_dtype=dtype, **module_kwargs)


def read_latent_upsampler_config(path: str | os.PathLike) -> LatentUpsamplerConfig | LTX2LatentUpsamplerConfig:
    """The config of a latent upsampler checkpoint (any layout ``load_latent_upsampler`` reads) without reading its
    weights: ``config.json``, a single file's metadata or tensor shapes (its header only), or the Orbax marker."""
    if not os.path.exists(path):
        raise CheckpointError(f"Latent upsampler checkpoint {path} does not exist.")
    # cycle: the LTX-2 loader builds on this module's rules
    from weight_conversion.ltx2_latent_upsampler import is_ltx2_latent_upsampler, read_ltx2_latent_upsampler_config
    if is_ltx2_latent_upsampler(path):
        return read_ltx2_latent_upsampler_config(path)
    return read_config(path, COMPONENT, LatentUpsamplerConfig, "diffusers latent_upsampler", _single_file_config)


def load_latent_upsampler(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: LatentUpsamplerConfig | LTX2LatentUpsamplerConfig | None = None,
    **module_kwargs,
) -> tuple[Any, dict]:
    """Loads a latent upsampler: LTX-Video's, or LTX-2's (``LTX2LatentUpsampler``: spatial x2 / x1.5, temporal x2)
    when the checkpoint's config says so (``load_ltx2_latent_upsampler``).

    Args:
      path: a diffusers ``latent_upsampler/`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``) or
        a pipeline root holding one; a Lightricks single file (``ltxv-spatial-upscaler-*.safetensors``); or an Orbax
        directory written by ``python -m weight_conversion convert --component latent_upsampler``.
      dtype: dtype of the params and of the module's convolutions.
      config: overrides the config read from (or inferred for) the checkpoint.
      module_kwargs: extra module fields (``precision``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, latents)``, latents [B, F, H, W, C] raw.
    Raises:
      CheckpointError on a missing path, missing or unexpected tensors, or a shape that does not fit the config.
    """
    path = component_folder(os.fspath(path), COMPONENT)
    dtype = jnp.dtype(dtype)
    if not os.path.exists(path):
        raise CheckpointError(f"Latent upsampler checkpoint {path} does not exist.")
    # cycle: the LTX-2 loader builds on this module's rules
    from weight_conversion.ltx2_latent_upsampler import is_ltx2_latent_upsampler, load_ltx2_latent_upsampler
    if isinstance(config, LTX2LatentUpsamplerConfig) or (config is None and is_ltx2_latent_upsampler(path)):
        return load_ltx2_latent_upsampler(path, dtype, config=config, **module_kwargs)
    if orbax_io.is_orbax_dir(path):
        return restore_orbax(path, COMPONENT, LatentUpsamplerConfig, config,
                             lambda c: _make_module(c, dtype, **module_kwargs))
    if os.path.isdir(path):
        config = config or folder_config(path, LatentUpsamplerConfig, "diffusers latent_upsampler")
        source = open_safetensors(path)
    else:
        source = open_safetensors(path)
        config = config or _single_file_config(source, path)
    module = _make_module(config, dtype, **module_kwargs)
    abstract = abstract_params(module)
    params = convert(source, latent_upsampler_rules(abstract), abstract, dtype, what="latent upsampler",
                     source_shape=source.shape)
    return module, params


def save_latent_upsampler_orbax(module: LatentUpsampler, params: dict, path: str | os.PathLike, *,
                                overwrite: bool = False) -> None:
    """Writes ``params`` and the module's config as an Orbax checkpoint that ``load_latent_upsampler`` reads back
    (atomically: ``orbax_io.save``)."""
    orbax_io.save(path, COMPONENT, module.config.to_dict(), params, module.param_dtype, overwrite=overwrite)

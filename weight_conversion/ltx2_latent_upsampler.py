"""Loading LTX-2's latent upsamplers from diffusers folders, Lightricks single files and Orbax checkpoints.

diffusers (``LTX2LatentUpsamplerModel.save_pretrained``) and Lightricks (``ltx-2-spatial-upscaler-x2-1.0``,
``ltx-2.3-spatial-upscaler-x1.5-1.0``, ``ltx-2.3-temporal-upscaler-x2-1.0`` ``.safetensors``: ltx-core's
``LatentUpsampler`` state dict, which diffusers' conversion script loads unchanged) use the same tensor names, without
a prefix, as LTX-Video's upsampler (``weight_conversion.latent_upsampler``, whose rules this module reuses), plus the
rational resampler's ``upsampler.conv.weight`` / ``.bias`` and its fixed blur buffer ``upsampler.blur_down.kernel``
(checked against the binomial kernel, then not loaded: it is no param).

A diffusers folder states its config in ``config.json``; a single file in the JSON ``config`` entry of its metadata
with ltx-core's keys (``spatial_scale``, ``rational_resampler`` for diffusers' ``rational_spatial_scale``,
``use_rational_resampler``), whose missing keys take the defaults of ltx-core's ``LatentUpsamplerConfigurator``
(``ORIGINAL_DEFAULTS``, not diffusers': mid_channels 512, no rational resampler); a file without one gets the config
the tensor shapes imply (all but a rational num/den of 3/2 versus 3/4, which then needs ``config=``).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from ltx_jax.configs_ltx2 import LTX2LatentUpsamplerConfig
from ltx_jax.models import abstract_params
from ltx_jax.models.ltx2.latent_upsampler import (BLUR_KERNEL_SIZE, RATIONAL_SCALES, LTX2LatentUpsampler,
                                                  blur_kernel_1d, rational_factors)
from weight_conversion import orbax_io
from weight_conversion.common import (component_folder, folder_config, read_config, read_single_file_config,
                                      restore_orbax)
from weight_conversion.latent_upsampler import latent_upsampler_rules
from weight_conversion.mapping import Rule, convert
from weight_conversion.safetensors_io import CheckpointError, TensorSource, open_safetensors

COMPONENT = "latent_upsampler"  # diffusers' LTX2LatentUpsamplePipeline sub-folder, and the Orbax marker's component
CLASS_NAME = LTX2LatentUpsamplerConfig.CLASS_NAME
BLUR_KEY = "upsampler.blur_down.kernel"  # a persistent torch buffer, saved by both layouts; never a param
# ltx-core ``LatentUpsamplerConfigurator.from_metadata``: what a single file's metadata config means for a key it lacks.
ORIGINAL_DEFAULTS = {"in_channels": 128, "mid_channels": 512, "num_blocks_per_stage": 4, "dims": 3,
                     "spatial_upsample": True, "temporal_upsample": False, "spatial_scale": 2.0,
                     "rational_resampler": False}
# ltx-core's name -> diffusers' (every other key is the same).
ORIGINAL_NAMES = {"spatial_scale": "rational_spatial_scale", "rational_resampler": "use_rational_resampler"}


def ltx2_latent_upsampler_rules(abstract: Any) -> list[Rule]:
    """One rule per param: ``res_blocks_1/norm2/scale`` <- ``res_blocks.1.norm2.weight``, ``upsampler/conv/kernel``
    <- ``upsampler.conv.weight`` (conv layout), as for LTX-Video's upsampler."""
    return latent_upsampler_rules(abstract)


# ------------------------------------------------------------------------------------------ single files


def config_from_original(original: dict) -> LTX2LatentUpsamplerConfig:
    """A single file's metadata config (ltx-core's ``LatentUpsampler`` keys) -> LTX2LatentUpsamplerConfig; keys it
    lacks take ``ORIGINAL_DEFAULTS`` and other keys are ignored, as ltx-core's configurator does."""
    values = {ORIGINAL_NAMES.get(k, k): original.get(k, v) for k, v in ORIGINAL_DEFAULTS.items()}
    if isinstance(values["rational_spatial_scale"], (int, float)):
        values["rational_spatial_scale"] = float(values["rational_spatial_scale"])
    try:
        config = LTX2LatentUpsamplerConfig.from_dict(values)
    except ValueError as e:
        raise CheckpointError(f"LTX-2 latent upsampler: the single file's metadata config does not describe an "
                              f"upsampler: {e}") from e
    return config


def infer_config(source: TensorSource) -> LTX2LatentUpsamplerConfig:
    """The config the tensor shapes imply: in / mid channels and dims from ``initial_conv.weight`` ([M, C_in, 3, 3]
    or [M, C_in, 3, 3, 3]), the blocks per stage from the ``res_blocks.{i}`` indices, the upsampler from
    ``upsampler.0.weight`` ([4M, M, 3, 3]: spatial x2; [8M, M, 3, 3, 3]: both; [2M, M, 3, 3, 3]: temporal) or the
    rational resampler's ``upsampler.conv.weight`` ([num^2 M, M, 3, 3]: num 2 is x2, 4 is x4; 3 is x1.5 or x0.75,
    which the weights do not tell apart)."""
    first = source.shape("initial_conv.weight")
    mid, in_channels, dims = first[0], first[1], len(first) - 2
    blocks = 1 + max((int(m.group(1)) for k in source if (m := re.match(r"res_blocks\.(\d+)\.", k))), default=-1)
    fields = dict(in_channels=in_channels, mid_channels=mid, num_blocks_per_stage=blocks, dims=dims)
    if "upsampler.conv.weight" in source:
        up = source.shape("upsampler.conv.weight")
        num = round((up[0] / mid) ** 0.5) if up[0] % mid == 0 else 0
        scales = [s for s, (n, _) in RATIONAL_SCALES.items() if n == num and num * num * mid == up[0]]
        if len(up) != 4 or len(scales) != 1:
            raise CheckpointError(
                f"LTX-2 latent upsampler: upsampler.conv.weight has shape {up}, which fixes no rational scale "
                f"({'scales ' + str(scales) + ' share it' if scales else 'none of ' + str(sorted(RATIONAL_SCALES))}); "
                f"pass config= (or a file whose metadata states spatial_scale).")
        fields.update(spatial_upsample=True, temporal_upsample=False, rational_spatial_scale=scales[0],
                      use_rational_resampler=True)
    else:
        up = source.shape("upsampler.0.weight")
        kinds = {(4, 4): (True, False), (8, 5): (True, True), (2, 5): (False, True)}
        factor = up[0] // mid if up[0] % mid == 0 else None
        if (factor, len(up)) not in kinds:
            raise CheckpointError(f"LTX-2 latent upsampler: upsampler.0.weight has shape {up}, which is none of the "
                                  f"upsamplers for mid_channels={mid} ([4M, M, 3, 3], [8M, M, 3, 3, 3] or "
                                  f"[2M, M, 3, 3, 3]).")
        spatial, temporal = kinds[factor, len(up)]
        fields.update(spatial_upsample=spatial, temporal_upsample=temporal, use_rational_resampler=False)
    try:
        config = LTX2LatentUpsamplerConfig(**fields)
    except ValueError as e:
        raise CheckpointError(f"LTX-2 latent upsampler: the tensor shapes describe no valid upsampler: {e}") from e
    return config


def _single_file_config(source: TensorSource, path: str) -> LTX2LatentUpsamplerConfig:
    missing = [k for k in ("initial_conv.weight",) if k not in source]
    if missing or not ({"upsampler.0.weight", "upsampler.conv.weight"} & set(source)):
        raise CheckpointError(f"{path} holds no 'initial_conv.weight' and 'upsampler.0.weight' / "
                              f"'upsampler.conv.weight': it is not a latent upsampler checkpoint (keys such as "
                              f"{sorted(source)[:3]}).")
    original = read_single_file_config(source)
    return config_from_original(original) if original is not None else infer_config(source)


def _check_blur_kernel(source: TensorSource, config: LTX2LatentUpsamplerConfig) -> list[str]:
    """The keys to leave unread: the blur buffer, once it is known to be the kernel the module computes with (a
    model without a rational resampler has none, so there it is an unexpected key)."""
    if BLUR_KEY not in source or rational_factors(config) is None:
        return []
    expected = np.outer(blur_kernel_1d(), blur_kernel_1d())[None, None].astype(np.float32)
    shape = tuple(source.shape(BLUR_KEY))
    if shape != expected.shape or not np.allclose(np.asarray(source[BLUR_KEY], np.float32), expected, atol=1e-6):
        raise CheckpointError(f"LTX-2 latent upsampler: {BLUR_KEY} (shape {shape}) is not the {BLUR_KERNEL_SIZE}x"
                              f"{BLUR_KERNEL_SIZE} binomial blur the model computes with.")
    return [BLUR_KEY]


# ------------------------------------------------------------------------------------------ public API


def _make_module(config: LTX2LatentUpsamplerConfig, dtype: Any, **module_kwargs) -> LTX2LatentUpsampler:
    return LTX2LatentUpsampler(config, dtype=dtype, param_dtype=dtype, **module_kwargs)


def is_ltx2_latent_upsampler(path: str | os.PathLike) -> bool:
    """Whether a latent upsampler checkpoint (any layout below) is LTX-2's, from its config or header alone: an
    Orbax marker or ``config.json`` naming ``LTX2LatentUpsamplerModel``, or a single file whose metadata config has
    ltx-core's ``spatial_scale`` / ``rational_resampler`` or whose tensors include the rational resampler. A single
    file without metadata and without a rational resampler has LTX-Video's architecture, so it reads as LTX-Video's
    (either loader then computes the same)."""
    path = component_folder(os.fspath(path), COMPONENT)
    if orbax_io.is_orbax_dir(path):
        return orbax_io.read_marker(path).get("config", {}).get("_class_name") == CLASS_NAME
    if os.path.isdir(path):
        config_path = os.path.join(path, "config.json")
        if not os.path.exists(config_path):
            return False
        with open(config_path) as f:
            try:
                return json.load(f).get("_class_name") == CLASS_NAME
            except (json.JSONDecodeError, AttributeError):
                return False
    if not os.path.exists(path):
        return False
    source = open_safetensors(path)
    original = read_single_file_config(source) or {}
    return bool(set(ORIGINAL_NAMES) & set(original)) or "upsampler.conv.weight" in source


def read_ltx2_latent_upsampler_config(path: str | os.PathLike) -> LTX2LatentUpsamplerConfig:
    """The config of an LTX-2 latent upsampler checkpoint (any layout ``load_ltx2_latent_upsampler`` reads) without
    reading its weights: ``config.json``, a single file's metadata or tensor shapes (its header only), or the Orbax
    marker."""
    if not os.path.exists(path):
        raise CheckpointError(f"LTX-2 latent upsampler checkpoint {path} does not exist.")
    return read_config(path, COMPONENT, LTX2LatentUpsamplerConfig, "diffusers LTX-2 latent_upsampler",
                       _single_file_config)


def load_ltx2_latent_upsampler(
    path: str | os.PathLike,
    dtype: Any = jnp.float32,
    *,
    config: LTX2LatentUpsamplerConfig | None = None,
    **module_kwargs,
) -> tuple[LTX2LatentUpsampler, dict]:
    """Loads an LTX-2 latent upsampler.

    Args:
      path: a diffusers ``latent_upsampler/`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``) or
        a pipeline root holding one; a Lightricks single file (``ltx-2-spatial-upscaler-x2-1.0.safetensors``,
        ``ltx-2.3-spatial-upscaler-x1.5-1.0.safetensors``, ``ltx-2.3-temporal-upscaler-x2-1.0.safetensors``); or an
        Orbax directory written by ``save_ltx2_latent_upsampler_orbax``.
      dtype: dtype of the params and of the module's convolutions.
      config: overrides the config read from (or inferred for) the checkpoint.
      module_kwargs: extra module fields (``precision``).
    Returns:
      ``(module, params)``; run with ``module.apply({"params": params}, latents)``, latents [B, F, H, W, C] raw
      (un-normalised), output [B, *module.output_shape(F, H, W), C].
    Raises:
      CheckpointError on a missing path, missing or unexpected tensors, a shape that does not fit the config, or a
      config diffusers would refuse (an unsupported rational scale, mid_channels not a multiple of 32).
    """
    path = component_folder(os.fspath(path), COMPONENT)
    dtype = jnp.dtype(dtype)
    if not os.path.exists(path):
        raise CheckpointError(f"LTX-2 latent upsampler checkpoint {path} does not exist.")
    if orbax_io.is_orbax_dir(path):
        return restore_orbax(path, COMPONENT, LTX2LatentUpsamplerConfig, config,
                             lambda c: _make_module(c, dtype, **module_kwargs))
    if os.path.isdir(path):
        config = config or folder_config(path, LTX2LatentUpsamplerConfig, "diffusers LTX-2 latent_upsampler")
        source = open_safetensors(path)
    else:
        source = open_safetensors(path)
        config = config or _single_file_config(source, path)
    module = _make_module(config, dtype, **module_kwargs)
    abstract = abstract_params(module)
    params = convert(source, ltx2_latent_upsampler_rules(abstract), abstract, dtype, what="LTX-2 latent upsampler",
                     source_shape=source.shape, ignore=_check_blur_kernel(source, config))
    return module, params


def save_ltx2_latent_upsampler_orbax(module: LTX2LatentUpsampler, params: dict, path: str | os.PathLike, *,
                                     overwrite: bool = False) -> None:
    """Writes ``params`` and the module's config (``_class_name`` ``LTX2LatentUpsamplerModel``) as an Orbax
    checkpoint that ``load_ltx2_latent_upsampler`` reads back (atomically: ``orbax_io.save``)."""
    orbax_io.save(path, COMPONENT, module.config.to_dict(), params, module.param_dtype, overwrite=overwrite)

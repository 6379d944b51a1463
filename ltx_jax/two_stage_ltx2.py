"""LTX-2's two-stage recipe on the command line: ``--upsampler`` with an LTX-2 model (``LTX2TwoStagePipeline``).

    python -m ltx_jax generate --model LTX-2-distilled --upsampler LTX-2-distilled/latent_upsampler --prompt "..."
    python -m ltx_jax generate --model LTX-2 --upsampler ltx-2-spatial-upscaler-x2-1.0.safetensors \\
        --distilled_lora ltx-2-19b-distilled-lora-384.safetensors --prompt "..."            # the dev recipe
    python -m ltx_jax check --preset ltx-2-19b-distilled --upsampler ltx-2-spatial-upscaler-x2-1.0.safetensors
    python -m ltx_jax generate --model tiny-random-ltx2 --upsampler tiny-random --prompt "a fox" --output fox.mp4

Stage 1 runs the model's own call (its steps, sigmas and guidance, which the usual flags set) at half the final size,
the x2 spatial upscaler doubles its video latents, and stage 2 refines at the final size (``--height`` x
``--width``, multiples of 64; default twice the release's recommended size, Lightricks' 1536 x 1024) with the
release's refining sigmas and no guidance. The dev model's recipe refines with the distilled LoRA fused into a
second copy of the transformer (``--distilled_lora``; ``check`` counts that copy's bytes). Everything is checked from
the configs before a weight loads (``check_two_stage``): the upscaler's kind, its latent channels against the VAE's,
the sizes, the LoRA against the transformer; ``check`` takes a released upscaler's file name without the file.
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp

from ltx_jax.configs_ltx2 import LTX2LatentUpsamplerConfig
from ltx_jax.generate_flags import FLAGS
from ltx_jax.models import abstract_params
from ltx_jax.models.ltx2.latent_upsampler import LTX2LatentUpsampler
from ltx_jax.pipelines.ltx2 import LTX2Pipeline
from ltx_jax.pipelines.ltx2_latent_upsample import LTX2LatentUpsamplePipeline
from ltx_jax.pipelines.ltx2_two_stage import SIZE_MULTIPLE, LTX2TwoStagePipeline, recipe_upsampler_problem
from ltx_jax.releases_ltx2 import LTX2_LATENT_UPSAMPLER_PRESETS
from ltx_jax.tiny_random_ltx2 import TINY_LTX2_MODEL, TINY_LTX2_UPSAMPLER, tiny_random_ltx2_upsampler
from weight_conversion import load_latent_upsampler, load_ltx2_transformer
from weight_conversion.latent_upsampler import read_latent_upsampler_config
from weight_conversion.lora import parse_lora_spec

TINY_UPSAMPLER = "tiny-random"  # what --upsampler takes with tiny-random-ltx2


def check_two_stage(facts: dict, call: dict, dry: bool, check_loras) -> dict | None:
    """``--upsampler`` / ``--distilled_lora`` of an LTX-2 run checked from the configs alone (module docstring);
    puts the final size's defaults (twice ``facts["defaults"]``') into ``call`` where the flags leave it. Returns
    ``{"upsampler": config, "distilled_lora": [(path, scale)]}``, or None without ``--upsampler``. ``check_loras``
    checks ``[(path, scale)]`` against the transformer (``generate_ltx2._check_adapters``); raises ValueError
    with one line."""
    if FLAGS.upsampler is None:
        if FLAGS.distilled_lora:
            raise ValueError("--distilled_lora is stage 2's LoRA of the two-stage recipe; add --upsampler (the x2 "
                             "spatial upscaler), or pass the adapter as --lora.")
        return None
    config = _upsampler_config(facts, dry)
    channels = facts["configs"].vae.latent_channels
    if not isinstance(config, LTX2LatentUpsamplerConfig):
        raise ValueError(f"--upsampler {FLAGS.upsampler} is LTX-Video's upscaler; the LTX-2 recipe takes LTX-2's x2 "
                         "spatial upscaler (ltx-2*-spatial-upscaler-x2-*.safetensors or a latent_upsampler folder).")
    if config.in_channels != channels:
        raise ValueError(f"--upsampler {FLAGS.upsampler} takes {config.in_channels}-channel latents but the model's "
                         f"VAE makes {channels}; use the upscaler released with the model.")
    problem = recipe_upsampler_problem(config)
    if problem:
        raise ValueError(f"--upsampler {FLAGS.upsampler}: {problem}.")
    defaults = facts["defaults"]
    call.setdefault("height", 2 * defaults.height)
    call.setdefault("width", 2 * defaults.width)
    if call["height"] % SIZE_MULTIPLE or call["width"] % SIZE_MULTIPLE:
        raise ValueError(f"--height / --width {call['height']}x{call['width']}: the two-stage recipe runs stage 1 at "
                         f"half the size, so both must be multiples of {SIZE_MULTIPLE} (e.g. {2 * defaults.height}x"
                         f"{2 * defaults.width}).")
    loras = [parse_lora_spec(spec) for spec in FLAGS.distilled_lora]
    if loras and facts["tiny"]:
        raise ValueError(f"--distilled_lora: {TINY_LTX2_MODEL} is built, not loaded, so nothing fuses an adapter "
                         "into it; pass an LTX-2 checkpoint.")
    check_loras(loras)
    return dict(upsampler=config, distilled_lora=loras)


def _upsampler_config(facts: dict, dry: bool):
    if (FLAGS.upsampler == TINY_UPSAMPLER) != facts["tiny"]:
        raise ValueError(f"--upsampler {TINY_UPSAMPLER} goes with --model {TINY_LTX2_MODEL} (and a real model with a "
                         "real upscaler).")
    if facts["tiny"]:
        return TINY_LTX2_UPSAMPLER
    name = os.path.basename(FLAGS.upsampler)
    if not os.path.exists(FLAGS.upsampler):
        if dry and name in LTX2_LATENT_UPSAMPLER_PRESETS:
            return LTX2_LATENT_UPSAMPLER_PRESETS[name]
        released = [n for n in LTX2_LATENT_UPSAMPLER_PRESETS if "spatial-upscaler-x2" in n]
        raise ValueError(f"--upsampler {FLAGS.upsampler} does not exist; pass the x2 spatial upscaler's file or a "
                         "latent_upsampler folder" + (f" (or, to check, a released file's name: {', '.join(released)})"
                                                      if dry else "") + ".")
    return read_latent_upsampler_config(FLAGS.upsampler)


def two_stage_pipeline(pipe: LTX2Pipeline, facts: dict, two_stage: dict, dtype: Any, *, weights: str | None,
                       loras: list, abstract: bool = False) -> LTX2TwoStagePipeline:
    """``pipe`` (stage 1) with the checked upscaler and, for ``--distilled_lora``, stage 2's transformer (``loras``,
    the run's ``--lora``, then the distilled ones, fused as it loads; ``weights`` as stage 1's). ``abstract``: the
    upscaler's and stage 2's params are shapes only (``check``)."""
    dt = jnp.dtype(dtype)
    config = two_stage["upsampler"]
    if abstract:
        module = LTX2LatentUpsampler(config, dtype=dt, param_dtype=dt)
        upsampler = (module, abstract_params(module))
    elif facts["tiny"]:
        upsampler = tiny_random_ltx2_upsampler(dt)
    else:
        upsampler = load_latent_upsampler(FLAGS.upsampler, dt)
    stage_2 = None
    if two_stage["distilled_lora"]:
        if abstract:  # stage 1's shapes; a second copy on the device all the same (``extra_components``)
            fused = pipe.params["transformer"]
        else:
            _, fused = load_ltx2_transformer(facts["path"], dt, weights=weights,
                                             lora=[*loras, *two_stage["distilled_lora"]])
        stage_2 = pipe.with_params(transformer=fused)
    return LTX2TwoStagePipeline(pipe, LTX2LatentUpsamplePipeline.from_pipe(pipe, *upsampler), stage_2)


def extra_components(two: LTX2TwoStagePipeline) -> dict[str, Any]:
    """What the recipe keeps on the device beside stage 1's pipeline: {table name: params}."""
    extra = {"upsampler": two.upsampler.latent_upsampler_params}
    if two.stage_2 is not two.pipe:
        extra["stage 2 transformer"] = two.stage_2.params["transformer"]
    return extra

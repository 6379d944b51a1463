"""``python -m ltx_jax check`` for LTX-2: a run at full size, checked before a single weight is downloaded.

    python -m ltx_jax check --preset ltx-2-19b-distilled                       # 768 x 512 x 121 at 24 fps
    python -m ltx_jax check --preset ltx-2.3-22b-dev --weights fp8 --text_encoder_weights fp8
    python -m ltx_jax check --model LTX-2 --height 704 --width 1216             # a folder's configs, no weights
    python -m ltx_jax check --preset ltx-2-19b-distilled --upsampler ltx-2-spatial-upscaler-x2-1.0.safetensors

The same argument checks as ``generate`` (``generate_ltx2.resolve_arguments``), then the same pipeline call over an
``LTX2Pipeline`` whose parameters are abstract (``ltx_jax.pipelines.abstract_ltx2``), inside
``ltx_jax.programs.dry_run``: Gemma's text encoding and the connectors + denoising + decoding program are traced and
lowered for this machine's backend, nothing is compiled (unless ``--memory_analysis``) or run. The table is
``ltx_jax.check.report``'s: a line per program (its largest inputs, its GFLOP with the denoising loop's steps all
counted, its parameters' bytes, its inputs' and outputs'), then the parameters that stay on the device per component
(Gemma, connectors, transformer, VAE, audio VAE, vocoder) and the peak with the largest program. With
``--upsampler`` the two-stage recipe's every program (``two_stage_ltx2``: stage 1, the upscaling, stage 2 at the final
size), with the upscaler and the dev recipe's second transformer counted.
"""

from __future__ import annotations

import sys
from typing import Any

import jax

from ltx_jax.check import report
from ltx_jax.generate_flags import FLAGS
from ltx_jax.pipelines import ltx2_program
from ltx_jax.pipelines.abstract_ltx2 import abstract_ltx2_pipeline, word_level_gemma_tokenizer
from ltx_jax.pipelines.ltx2 import LTX2Pipeline
from ltx_jax.pipelines.ltx2_conditions import LTX2ImageToVideoPipeline
from ltx_jax.programs import dry_run
from ltx_jax.text_encoding_ltx2 import load_ltx2_tokenizer
from ltx_jax.tiny_random_ltx2 import tiny_gemma_tokenizer
from ltx_jax.two_stage_ltx2 import extra_components, two_stage_pipeline

#: The components in the order the table names them, and the names it gives them.
COMPONENT_NAMES = {"gemma": "Gemma", "connectors": "connectors", "transformer": "transformer", "vae": "VAE",
                   "audio_vae": "audio VAE", "vocoder": "vocoder"}


def abstract_pipeline_for(facts: dict, *, dtype: str, weights: str | None, text_encoder_weights: str | None,
                          prompt: str, cls=LTX2Pipeline) -> LTX2Pipeline:
    """The pipeline ``generate`` would load (a ``cls``), over abstract parameters: ``facts``' architectures (the
    checkpoint's configs, a release's, or tiny-random-ltx2's), its tokenizer where its files are at hand (else a
    stand-in that knows ``prompt``: only the padded shapes matter)."""
    if facts["tiny"]:
        tokenizer = tiny_gemma_tokenizer()
    elif facts["tokenizer"]:
        tokenizer = load_ltx2_tokenizer(facts["text_encoder"])
    else:
        tokenizer = word_level_gemma_tokenizer((prompt,))
    return abstract_ltx2_pipeline(facts["release"], configs=facts["configs"], dtype=dtype, weights=weights,
                                  text_encoder_weights=text_encoder_weights, tokenizer=tokenizer,
                                  defaults=facts["defaults"], cls=cls)


def component_params(pipe: LTX2Pipeline) -> dict[str, Any]:
    """{table name: params} of what an ``LTX2Pipeline`` keeps on the device between calls."""
    trees = dict(pipe.params, gemma=pipe.encoder.gemma_params)
    return {label: trees[name] for name, label in COMPONENT_NAMES.items()}


def title(pipe: LTX2Pipeline, facts: dict, request, dtype: str, compiled: bool) -> str:
    """The table's first line: the model, its size, the run's size and numerics."""
    t, gemma = pipe.core.transformer.config, pipe.encoder.gemma.config
    weights = f", {FLAGS.weights} weights" if FLAGS.weights else ""
    weights += f", Gemma {FLAGS.text_encoder_weights}" if FLAGS.text_encoder_weights else ""
    image = ", image to video" if FLAGS.image else ""
    if FLAGS.upsampler is not None:
        image += (f", two stages (stage 1 at {request.width // 2}x{request.height // 2}, the x2 upscaler"
                  f"{', stage 2 with the distilled LoRA' if FLAGS.distilled_lora else ''})")
    what = "lowered and compiled" if compiled else "lowered, not compiled"
    name = pipe.release.name if pipe.release is not None else facts["name"]
    return (f"{name}: {t.num_layers} blocks, video {t.num_attention_heads * t.attention_head_dim} + audio "
            f"{t.audio_num_attention_heads * t.audio_attention_head_dim} wide, Gemma {gemma.num_hidden_layers} x "
            f"{gemma.hidden_size}; {request.width}x{request.height}x{request.num_frames} at {request.frame_rate:g} "
            f"fps{image}, {request.num_inference_steps} steps, {request.max_sequence_length} prompt tokens, {dtype}"
            f"{weights} on {jax.default_backend()}; every program {what}, nothing run")


def check(args: dict) -> int:
    """``check`` for an LTX-2 model (``generate_ltx2.resolve_arguments``' ``args``): the dry run and its table."""
    dtype = FLAGS.dtype or "bfloat16"  # the GPU's, where the run is headed
    facts = args["facts"]
    cls = LTX2ImageToVideoPipeline if "image" in args["call"] else LTX2Pipeline
    pipe = abstract_pipeline_for(facts, dtype=dtype, weights=FLAGS.weights,
                                 text_encoder_weights=FLAGS.text_encoder_weights, prompt=args["call"]["prompt"],
                                 cls=cls)
    request = pipe.request(**args["call"])
    components = component_params(pipe)
    if args["two_stage"]:
        two = two_stage_pipeline(pipe, facts, args["two_stage"], dtype, weights=FLAGS.weights, loras=args["loras"],
                                 abstract=True)
        components.update(extra_components(two))
        with dry_run(compile=FLAGS.memory_analysis) as run:
            two(**args["call"])
    else:
        with dry_run(compile=FLAGS.memory_analysis) as run:
            pipe.generate(request)
    adapters = len(args["loras"]) + len((args["two_stage"] or {}).get("distilled_lora", ()))
    if adapters:
        print(f"{adapters} LoRA file(s) checked against the transformer; generate fuses them into the weights as "
              "they load, so the programs are the plain ones.", file=sys.stderr)
    print(report(run, pipe, title(pipe, facts, request, dtype, FLAGS.memory_analysis), components))
    if ltx2_program.generate.flops is None:  # its while loop's steps are not in the program
        print(f"GFLOP of {ltx2_program.generate.name}: the denoising loop counted once, one step of "
              f"{request.num_inference_steps} (per step), with the connectors and the decode.")
    return 0

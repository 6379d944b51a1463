"""LTX-2 on the command line: video with sound from an LTX-2 checkpoint (``LTX2Pipeline``).

    python -m ltx_jax generate --model LTX-2 --prompt "a dog barks at the sea" --output dog.mp4
    python -m ltx_jax generate --model ltx-2-19b-distilled.safetensors --text_encoder LTX-2 --prompt "..." --noaudio
    python -m ltx_jax generate --model LTX-2 --image first.png --prompt "the fox runs off" --output run.mp4
    python -m ltx_jax generate --model tiny-random-ltx2 --prompt "a red fox" --output fox.mp4   # installation check
    python -m ltx_jax generate --model LTX-2-distilled --upsampler LTX-2-distilled/latent_upsampler --prompt "..."

``__main__`` sends a run here when ``runs_ltx2()``: ``--model`` is an LTX-2 diffusers folder (``transformer/
config.json``'s class) or single file (its metadata), ``tiny-random-ltx2``, or ``check --preset`` names an LTX-2
release. ``resolve_arguments`` checks every argument before anything is loaded, from the checkpoint's configs alone
(sizes against its VAE's ratios, STG blocks against its depth, the prompt length against its connectors' registers,
the output and its sound track); a mistake is one line (``error: ...``, exit 2). The flags keep their LTX-Video
meaning (``--steps`` -> ``num_inference_steps``, ``--guidance`` -> ``guidance_scale``, ``--stg_blocks`` ->
``spatio_temporal_guidance_blocks``, ``--fps`` -> ``frame_rate``), LTX-2 adds ``--modality_scale``,
``--guidance_rescale``, their ``--audio_*`` twins and ``--audio`` / ``--noaudio``; ``--image`` runs
``LTX2ImageToVideoPipeline``, ``--upsampler`` the two-stage recipe (``two_stage_ltx2``; ``--distilled_lora`` for
the dev model's), ``--lora`` fuses adapters into the transformer as it loads, ``--tiling`` sets the decode's. A
flag left unset keeps the pipeline's default (``pipe.defaults``: the detected release's, else diffusers'), and an
LTX-Video-only flag is refused by name. The output is an mp4 with an AAC track at the
vocoder's rate (``.png`` frames get a ``.wav`` beside them; a ``.gif`` needs ``--noaudio``), written atomically: a
failure or Ctrl-C (which stops the denoising loop within a step) leaves no file.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings

import numpy as np

from ltx_jax import distributed, interrupts, validation
from ltx_jax.compilation_cache import enable_compilation_cache
from ltx_jax.generate_flags import FLAGS, LONG_VIDEO_FLAGS, UsageError, _check_numbers, _default_dtype
from ltx_jax.models import abstract_params
from ltx_jax.models.ltx2.transformer import LTX2VideoTransformer3DModel
from ltx_jax.pipelines.abstract_ltx2 import STAND_IN_PROMPT, LTX2Configs, assemble_ltx2_pipeline
from ltx_jax.pipelines.ltx2 import LTX2Pipeline, LTX2Request, register_multiple, release_defaults
from ltx_jax.pipelines.ltx2_conditions import LTX2ImageToVideoPipeline
from ltx_jax.pipelines.ltx2_latents import vae_compression
from ltx_jax.pipelines.reporting import NonFiniteError
from ltx_jax.releases import LTX_SCHEDULER
from ltx_jax.releases_ltx2 import LTX2_RELEASES, LTX2Release, detect_ltx2_release, get_ltx2_release
from ltx_jax.scheduler import FlowMatchSchedulerConfig
from ltx_jax.text_encoding import check_tokenizer_folder
from ltx_jax.text_encoding_ltx2 import load_ltx2_tokenizer
from ltx_jax.tiny_random_ltx2 import TINY_DEFAULTS, TINY_LTX2_CONFIGS, TINY_LTX2_MODEL, tiny_random_ltx2_pipeline
from ltx_jax.two_stage_ltx2 import check_two_stage, two_stage_pipeline
from ltx_jax.video import check_output, read_image, write_video
from weight_conversion import (checkpoint_family, load_audio_vae, load_gemma_text_encoder, load_ltx2_transformer,
                               load_ltx2_vae, load_text_connectors, load_vocoder, orbax_io,
                               read_ltx2_transformer_config, read_ltx2_vae_config)
from weight_conversion.family import LTX2
from weight_conversion.gemma import read_gemma_config
from weight_conversion.lora import LTX_2, check_adapter, lora_targets, parse_lora_spec, read_lora
from weight_conversion.ltx2_audio import read_audio_vae_config, read_vocoder_config
from weight_conversion.ltx2_connectors import read_text_connectors_config
from weight_conversion.ltx2_transformer import torch_key as ltx2_torch_key

GEMMA_VOCABULARY = ("tokenizer.model", "tokenizer.json")

#: LTX-Video flags an LTX-2 run refuses, each with what to do instead.
LTX_VIDEO_FLAGS = {
    **{name: "LTX-2's frame conditions are not on the command line yet (--image is: image-to-video)"
       for name in ("condition", "video", "denoise_strength", "resize_mode")},
    "mesh": "the LTX-2 pipeline runs on one device",
    "compute": "LTX-2's fp8 matmuls are not on the command line yet (--weights fp8 stores the kernels in fp8)",
    "stg_mode": "LTX-2's STG perturbs the self-attention of --stg_blocks, as diffusers' does",
    "cfg_star": "LTX-2's guidance is CFG, STG and modality guidance per modality (--guidance_rescale rescales CFG)",
    "cache": "LTX-2's denoising loop has no step cache",
    **{name: "LTX-2 makes one clip per prompt (no temporal windows)" for name in LONG_VIDEO_FLAGS},
}
#: Flags -> the ``LTX2Request`` fields they set (only when given: the pipeline's defaults stay otherwise).
REQUEST_FIELDS = {"negative_prompt": "negative_prompt", "height": "height", "width": "width",
                  "num_frames": "num_frames", "steps": "num_inference_steps", "guidance": "guidance_scale",
                  "stg_scale": "stg_scale", "modality_scale": "modality_scale", "guidance_rescale": "guidance_rescale",
                  "audio_guidance_scale": "audio_guidance_scale", "audio_stg_scale": "audio_stg_scale",
                  "audio_modality_scale": "audio_modality_scale", "audio_guidance_rescale": "audio_guidance_rescale"}
#: Flags with a default of their own (LTX-Video's), taken only when given.
GIVEN_ONLY = {"fps": "frame_rate", "max_sequence_length": "max_sequence_length"}
TILING = {"auto": "auto", "on": True, "off": None}


def _say(message: str) -> None:
    if distributed.is_main():
        print(message, file=sys.stderr, flush=True)


def runs_ltx2() -> bool:
    """Whether the flags ask for an LTX-2 run: ``--model tiny-random-ltx2``, an LTX-2 checkpoint (its config says:
    ``checkpoint_family``), or, without ``--model``, a ``--preset`` naming an LTX-2 release. A ``--preset`` of the
    other family than ``--model``'s is refused in one line."""
    model, preset = FLAGS.model, FLAGS.preset
    if model == TINY_LTX2_MODEL:
        return True
    if not model:
        return preset in LTX2_RELEASES
    if model != "tiny-random" and not os.path.exists(model):
        if preset in LTX2_RELEASES:
            raise ValueError(f"--model {model} does not exist; pass an LTX-2 diffusers folder or single file, or "
                             f"{TINY_LTX2_MODEL}.")
        return False  # LTX-Video's checks name it (a hub id, or a missing path)
    ltx2 = model != "tiny-random" and checkpoint_family(model) == LTX2
    if preset is not None and (preset in LTX2_RELEASES) != ltx2:
        kind = ("an LTX-2 release", "LTX-Video 0.9.x") if preset in LTX2_RELEASES else ("an LTX-Video release",
                                                                                          "an LTX-2 checkpoint")
        raise ValueError(f"--preset {preset} is {kind[0]}, but --model {model} is {kind[1]}; pass a preset of its "
                         f"family ({', '.join(LTX2_RELEASES) if ltx2 else 'ltx_jax.releases.RELEASES'}) or none.")
    return ltx2


def resolve_arguments(command: str = "generate") -> dict:
    """Every argument of an LTX-2 run checked and resolved before anything is loaded (module docstring); raises
    ValueError / UsageError. ``check`` needs no prompt and writes no output."""
    dry = command == "check"
    if not dry and (not FLAGS.prompt or not FLAGS.prompt.strip()):
        raise UsageError('--prompt is required, e.g. --prompt "a dog barks at the waves".')
    refused = [name for name in LTX_VIDEO_FLAGS if FLAGS[name].present]
    if refused:
        raise ValueError(f"--{refused[0]} is an LTX-Video flag and {FLAGS.model or FLAGS.preset} is LTX-2: "
                         f"{LTX_VIDEO_FLAGS[refused[0]]}.")
    _check_numbers()
    for name in ("modality_scale", "audio_guidance_scale", "audio_stg_scale", "audio_modality_scale"):
        if FLAGS[name].value is not None:
            validation.check_number(f"--{name}", FLAGS[name].value, minimum=0, maximum=validation.MAX_GUIDANCE)
    for name in ("guidance_rescale", "audio_guidance_rescale"):
        if FLAGS[name].value is not None:
            validation.check_number(f"--{name}", FLAGS[name].value, minimum=0, maximum=1)
    if FLAGS.stg_blocks is not None and not all(b.strip().isdigit() for b in FLAGS.stg_blocks):
        raise UsageError(f"--stg_blocks {','.join(FLAGS.stg_blocks)}: give block indices, e.g. --stg_blocks 28.")
    if not dry and FLAGS.audio and os.path.splitext(FLAGS.output)[1].lower() == ".gif":
        raise ValueError(f"--output {FLAGS.output}: a GIF holds no sound; add --noaudio, or write .mp4 (with an AAC "
                         "track) or .png frames (with a .wav beside them).")

    facts = _model_facts(dry)
    loras = _check_loras(facts)
    call, note = _call_arguments(facts["defaults"], FLAGS.prompt or STAND_IN_PROMPT)
    two_stage = check_two_stage(facts, call, dry, lambda specs: _check_adapters(facts, specs))
    request = dataclasses.replace(facts["defaults"], **call)
    _check_against_model(request, facts["configs"])
    request.check()
    if FLAGS.image is not None:
        call["image"] = read_image(FLAGS.image)  # read now: a bad file fails before loading
    if not dry:
        check_output(FLAGS.output, request.num_frames or 1, fps=request.frame_rate, overwrite=FLAGS.overwrite,
                     audio=FLAGS.audio)
    return dict(ltx2=True, facts=facts, call=call, note=note, loras=loras, two_stage=two_stage, height=request.height,
                width=request.width, num_frames=request.num_frames, frame_rate=request.frame_rate, audio=FLAGS.audio)


def _check_loras(facts: dict) -> list[tuple[str, float]]:
    """--lora specs read and checked against the transformer's config (the adapters are small; the model is not
    loaded): [(path, scale)], fused into the transformer as it loads."""
    specs = [parse_lora_spec(spec) for spec in FLAGS.lora]
    if specs and facts["tiny"]:
        raise ValueError(f"--lora: {TINY_LTX2_MODEL} is built, not loaded, so nothing fuses an adapter into it; pass "
                         "an LTX-2 checkpoint.")
    _check_adapters(facts, specs)
    return specs


def _check_adapters(facts: dict, specs: list[tuple[str, float]]) -> None:
    """Each adapter's modules against the transformer's linears (its config only)."""
    if specs:
        config = facts["configs"].transformer
        targets = lora_targets(abstract_params(LTX2VideoTransformer3DModel(config)), ltx2_torch_key,
                               {"transformer_blocks": config.num_layers})
        for path, _ in specs:
            check_adapter(read_lora(path, LTX_2), "transformer", targets)  # LTX-2's: its audio modules too


def _call_arguments(defaults: LTX2Request, prompt: str) -> tuple[dict, str | None]:
    """The ``LTX2Request`` fields the flags set (the unset ones keep ``defaults``), and a note for the user where a
    flag replaced a default the user did not name (a distilled sigma list for another ``--steps``)."""
    call = dict(prompt=prompt, seed=FLAGS.seed)
    call.update({field: FLAGS[flag].value for flag, field in REQUEST_FIELDS.items() if FLAGS[flag].value is not None})
    call.update({field: FLAGS[flag].value for flag, field in GIVEN_ONLY.items() if FLAGS[flag].present})
    if FLAGS.stg_blocks is not None:
        call["spatio_temporal_guidance_blocks"] = tuple(int(b) for b in FLAGS.stg_blocks)
    if FLAGS["tiling"].present:
        call["tiling"] = TILING[FLAGS.tiling]
    note = None
    steps = call.get("num_inference_steps")
    if steps is not None and defaults.sigmas is not None and len(defaults.sigmas) != steps:
        call["sigmas"] = None
        note = (f"--steps {steps}: the release's {len(defaults.sigmas)} distilled sigmas give way to the default "
                f"schedule of {steps} steps.")
    return call, note


def _check_against_model(request: LTX2Request, configs: LTX2Configs) -> None:
    """The rules that need the model's configs (not its weights): sizes against the VAE's ratios and the
    transformer's patches, STG blocks against its depth, the prompt length against the connectors' registers."""
    spatial, temporal = vae_compression(configs.vae)
    t = configs.transformer
    validation.check_video_size(request.height, request.width, request.num_frames or 1,  # None: predicted
                                spatial_multiple=spatial * t.patch_size, temporal_ratio=temporal,
                                temporal_patch=t.patch_size_t)
    stg = request.stg_scale > 0 or (request.audio_stg_scale or request.stg_scale) > 0
    too_deep = [str(b) for b in request.spatio_temporal_guidance_blocks or () if b >= t.num_layers] if stg else []
    if too_deep and FLAGS.stg_blocks is not None:
        raise ValueError(f"--stg_blocks {','.join(too_deep)}: the model's blocks are 0 .. {t.num_layers - 1}.")
    if too_deep:
        raise ValueError(f"the default STG block(s) {','.join(too_deep)} are not in this {t.num_layers}-block model; "
                         f"pass --stg_blocks (0 .. {t.num_layers - 1}), or --stg_scale 0 --audio_stg_scale 0.")
    if stg and not t.perturbed_attn:
        raise ValueError("STG needs a transformer that can perturb its blocks (this one has no perturbed_attn): pass "
                         "--stg_scale 0 --audio_stg_scale 0.")
    multiple = register_multiple(configs.connectors)
    if request.max_sequence_length % multiple:
        fit = max(multiple, request.max_sequence_length // multiple * multiple)
        raise ValueError(f"--max_sequence_length {request.max_sequence_length}: the text connectors tile their "
                         f"{multiple} learned registers over the prompt's tokens; use a multiple of {multiple}, e.g. "
                         f"{fit}.")


def _model_facts(dry: bool) -> dict:
    """What the checks and the loading need of the model, from its configs alone (no weights): ``configs``
    (``LTX2Configs``), ``release``, ``defaults`` (the ``LTX2Request`` a call starts from), ``path``,
    ``text_encoder`` (the folder holding Gemma and its tokenizer, or None), ``gemma`` (Gemma's folder),
    ``tokenizer`` (whether its files are there), ``diffusers_folder`` (a whole pipeline folder, as
    ``from_pretrained`` reads it) and ``name``. ``dry`` (check): without Gemma's folder, the release's Gemma config
    stands in."""
    model, preset = FLAGS.model, FLAGS.preset
    base = dict(path=None, text_encoder=None, tokenizer=False, diffusers_folder=False)
    if model == TINY_LTX2_MODEL:
        if preset is not None:
            raise ValueError(f"--preset does not go with {TINY_LTX2_MODEL}: its tiny model has defaults of its own.")
        return dict(base, tiny=True, name=model, configs=TINY_LTX2_CONFIGS, release=None, defaults=TINY_DEFAULTS)
    release = get_ltx2_release(preset) if preset is not None else None
    if not model:  # check --preset: the release's own configs
        return dict(base, tiny=False, name=release.name, configs=LTX2Configs.of_release(release), release=release,
                    defaults=release_defaults(release))
    if FLAGS.text_encoder is not None and not os.path.isdir(FLAGS.text_encoder):
        raise ValueError(f"--text_encoder {FLAGS.text_encoder} is not a folder; pass one holding text_encoder/ and "
                         "tokenizer/ (the LTX-2 diffusers folder, or Gemma's own folder with its tokenizer).")
    folder = model if os.path.isdir(model) else os.path.dirname(os.path.abspath(model))
    root = FLAGS.text_encoder or folder  # holds text_encoder/ and tokenizer/ (--text_encoder: or is Gemma's own)
    gemma_dir = root if FLAGS.text_encoder and not os.path.isdir(os.path.join(root, "text_encoder")) else (
        os.path.join(root, "text_encoder"))
    has_gemma = orbax_io.is_orbax_dir(gemma_dir) or os.path.isfile(os.path.join(gemma_dir, "config.json"))
    if not has_gemma and not dry:
        what = "folder has no text_encoder/" if os.path.isdir(model) else "single file holds no Gemma text encoder"
        raise ValueError(f"--model {model}: the {what}; pass --text_encoder with a folder holding text_encoder/ and "
                         "tokenizer/ (Gemma 3 12B for LTX-2 / 2.3, e.g. the diffusers LTX-2 folder).")
    transformer = read_ltx2_transformer_config(model)
    if release is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            release = detect_ltx2_release(model, transformer)
        for warning in caught:
            _say(f"warning: {warning.message}")
        if release is not None and release.transformer.num_layers != transformer.num_layers:
            release = None  # a tiny or cut model: a release's STG blocks would not exist (as from_pretrained)
    gemma = read_gemma_config(gemma_dir) if has_gemma else _release_gemma(release, model)
    scheduler_json = os.path.join(model, "scheduler", "scheduler_config.json")
    scheduler = (FlowMatchSchedulerConfig.from_json(scheduler_json) if os.path.isfile(scheduler_json)
                 else LTX_SCHEDULER)
    configs = LTX2Configs(gemma, read_text_connectors_config(model), transformer, read_ltx2_vae_config(model),
                          read_audio_vae_config(model), read_vocoder_config(model), scheduler)
    tokenizer = has_gemma and _has_tokenizer(root)
    if has_gemma and not dry:
        check_tokenizer_folder(root, GEMMA_VOCABULARY)  # the files transformers will read, before any weight
    defaults = release_defaults(release)
    if not dry and os.path.isdir(os.path.join(model, "duration_head")):  # LTX-2.5: the length from the prompt
        defaults = dataclasses.replace(defaults, num_frames=None)
    whole = os.path.isdir(model) and root == model and os.path.isfile(scheduler_json)  # what from_pretrained reads
    return dict(tiny=False, name=model, path=model, text_encoder=root if has_gemma else None, gemma=gemma_dir,
                tokenizer=tokenizer, configs=configs, release=release, defaults=defaults, diffusers_folder=whole)


def _release_gemma(release: LTX2Release | None, model: str):
    if release is None:
        raise ValueError(f"--model {model}: no Gemma config beside it and no release recognised; pass --text_encoder "
                         "(a folder with text_encoder/) or --preset.")
    return LTX2Configs.of_release(release).gemma


def _has_tokenizer(root: str) -> bool:
    folder = os.path.join(root, "tokenizer") if os.path.isdir(os.path.join(root, "tokenizer")) else root
    return any(os.path.isfile(os.path.join(folder, name)) for name in GEMMA_VOCABULARY)


def load_ltx2_pipeline(facts: dict, dtype, *, weights: str | None = None, text_encoder_weights: str | None = None,
                       lora=None, progress: bool = False, cls=LTX2Pipeline) -> LTX2Pipeline:
    """The pipeline (a ``cls``) of ``_model_facts``' checkpoint: a diffusers folder through ``cls.from_pretrained``;
    a Lightricks single file (or a folder with ``--text_encoder`` elsewhere) component by component, Gemma and the
    tokenizer from ``facts["text_encoder"]``, a stop request honoured between two of them. ``weights``: the
    transformer's kernels ("int8" / "fp8"), ``lora`` fused into them as they are read; ``text_encoder_weights``:
    Gemma's."""
    path = facts["path"]
    if facts["diffusers_folder"]:
        return cls.from_pretrained(path, dtype, progress=progress, transformer_weights=weights, lora=lora,
                                   weights=text_encoder_weights)
    tokenizer = load_ltx2_tokenizer(facts["text_encoder"])
    loaders = dict(
        gemma=lambda: load_gemma_text_encoder(facts["gemma"], dtype, weights=text_encoder_weights),
        connectors=lambda: load_text_connectors(path, dtype),
        transformer=lambda: load_ltx2_transformer(path, dtype, weights=weights, lora=lora),
        vae=lambda: load_ltx2_vae(path, dtype), audio_vae=lambda: load_audio_vae(path, dtype),
        vocoder=lambda: load_vocoder(path, dtype))
    modules, params = {}, {}
    for name, load in loaders.items():
        interrupts.check("loading")
        modules[name], params[name] = load()
    return assemble_ltx2_pipeline(modules, params, tokenizer, facts["configs"].scheduler, facts["release"],
                                  cls=cls, progress=progress)


def generate(args: dict) -> int:
    """``generate`` for an LTX-2 model (``resolve_arguments``' ``args``): load, generate, write the video with its
    sound track."""
    facts, dtype = args["facts"], _default_dtype()
    quantized = "".join(f", {name} {value}" for name, value in (
        ("weights", FLAGS.weights), ("text encoder weights", FLAGS.text_encoder_weights)) if value)
    _say(f"loading {facts['name']} ({dtype}{quantized})")
    for path, scale in args["loras"]:
        _say(f"LoRA {path} x {scale:g}")
    if FLAGS.compilation_cache:  # a process-wide JAX setting: this command's choice (--nocompilation_cache)
        _say(f"compilation cache: {enable_compilation_cache()}")
    progress = FLAGS.progress and distributed.is_main()
    cls = LTX2ImageToVideoPipeline if "image" in args["call"] else LTX2Pipeline
    if facts["tiny"]:
        _say(f"{TINY_LTX2_MODEL}: small random weights, as an installation check; the output is noise, not a video "
             "of the prompt.")
        pipe = tiny_random_ltx2_pipeline(dtype, weights=FLAGS.weights, text_encoder_weights=FLAGS.text_encoder_weights,
                                         cls=cls, progress=progress)
    else:
        pipe = load_ltx2_pipeline(facts, dtype, weights=FLAGS.weights, text_encoder_weights=FLAGS.text_encoder_weights,
                                  lora=args["loras"] or None, progress=progress, cls=cls)
    two = None
    if args["two_stage"]:
        two = two_stage_pipeline(pipe, facts, args["two_stage"], dtype, weights=FLAGS.weights, loras=args["loras"])
    interrupts.check("loading")
    request = pipe.request(**args["call"])
    if args["note"]:
        _say(args["note"])
    steps, frames = request.num_inference_steps, request.num_frames or "a predicted number of"
    passes = f"{steps} step{'s' if steps > 1 else ''}"
    if two is not None:
        passes = (f"in two stages: {passes} at {request.width // 2}x{request.height // 2}, the x2 upscaler, "
                  f"{len(two.stage_2_sigmas)} refining steps")
    _say(f"generating {frames} frames of {request.width}x{request.height} at {request.frame_rate:g} fps with sound"
         f"{' from ' + FLAGS.image if FLAGS.image else ''}, {passes}")
    out = pipe.generate(request) if two is None else two(**args["call"])
    interrupts.check("decoding")
    for what, values in (("frames", out.frames), ("sound", out.audio)):
        if not np.isfinite(values).all():
            raise NonFiniteError(f"the generated {what} hold NaN or Inf values; nothing was written (try --dtype "
                                 "float32, or another checkpoint).")
    return _write(out, request, pipe.audio_sample_rate, args["audio"], two or pipe)


def _write(out, request: LTX2Request, sample_rate: int, audio: bool, pipe) -> int:
    """The first video (and its sound track) to ``--output``, atomically; a stop request removes what was written."""
    _say(f"writing {FLAGS.output}")
    sound = dict(audio=out.audio[0], audio_sample_rate=sample_rate) if audio else {}
    with interrupts.raising("writing"):  # the write removes its partial file when a signal stops it
        written = write_video(out.frames[0], FLAGS.output, fps=request.frame_rate, overwrite=FLAGS.overwrite, **sound)
    if interrupts.requested() is not None:  # a callback inside the write swallowed the exception: the files go too
        for path in written:
            os.remove(path)
        interrupts.check("writing")
    where = written[0] if len(written) == 1 else f"{written[0]} ... {written[-1]} ({len(written)} files)"
    frames = out.frames.shape
    track = (f"; sound: {out.audio.shape[1]} channels x {out.audio.shape[2]} samples at {sample_rate} Hz" if audio
             else "; no sound track (--noaudio)")
    print(f"wrote {where}: {frames[1]} frames of {frames[3]}x{frames[2]} at {request.frame_rate:g} fps{track}")
    print(f"timings: {pipe.last_timings}")
    return 0

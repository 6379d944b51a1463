"""Command line: ``python -m ltx_jax generate --model PATH --prompt "..." --output out.mp4``.

``--model tiny-random`` runs the whole pipeline with small random weights on the CPU in well under a minute, as an
installation check (its output is noise); ``--upsampler tiny-random`` with it runs multi-scale generation so.

Every argument is checked before any model is loaded; a user error prints one line (``error: ...``, exit 2; add
``--debug`` for the traceback). Ctrl-C or SIGTERM, at any moment from the start, stops a run at its next safe point
(within one denoising step) and leaves no file (exit 130 / 143). An existing output is refused unless ``--overwrite``.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import traceback
import warnings

from ltx_jax import interrupts

if __name__ == "__main__":  # python -m ltx_jax: from here a signal is a stop request the run reads (interrupts)
    interrupts.install()

from absl import flags  # noqa: E402 - after the handlers: a signal during the imports is recorded, not raised

from absl import logging as absl_logging  # noqa: E402

from ltx_jax import validation  # noqa: E402
from ltx_jax.command_line import gnu_booleans  # noqa: E402
from ltx_jax.training.cli import main as training_main  # noqa: E402
from ltx_jax.video import check_output, read_frames, write_video  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "diffusers-layout folder, Lightricks single file, Orbax folder, hub id, or "
                    "'tiny-random'.", flag_values=FLAGS)
flags.DEFINE_string("prompt", None, "Text prompt.", flag_values=FLAGS)
flags.DEFINE_string("negative_prompt", None, "Negative prompt (used when guidance > 1).", flag_values=FLAGS)
flags.DEFINE_string("text_encoder", None, "Folder with text_encoder/ and tokenizer/ (needed with a single-file "
                    "--model).", flag_values=FLAGS)
flags.DEFINE_string("output", "output.mp4", "Output file: .mp4, .gif, or .png (one file per frame).",
                    flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Replace an existing output.", flag_values=FLAGS)
flags.DEFINE_string("image", None, "Image-to-video: the first frame (an image file).", flag_values=FLAGS)
flags.DEFINE_multi_string("condition", [], "PATH@FRAME[:STRENGTH]: an image or a clip (video file, folder of frames) "
                          "placed at pixel frame FRAME, strength in [0, 1] (default 1); repeatable: keyframes, "
                          "extending a clip.", flag_values=FLAGS)
flags.DEFINE_string("video", None, "Video-to-video: the clip to re-render (with --denoise_strength); its length is "
                    "the default --num_frames.", flag_values=FLAGS)
flags.DEFINE_float("denoise_strength", None, "Video-to-video: the share of the schedule to run, in (0, 1); lower "
                   "keeps more of --video.", flag_values=FLAGS)
flags.DEFINE_string("upsampler", None, "Multi-scale generation (0.9.7 / 0.9.8) with this latent upsampler: a "
                    "Lightricks ltxv-spatial-upscaler-*.safetensors file, a diffusers latent_upsampler folder or "
                    "Orbax (tiny-random with --model tiny-random); the two passes follow the release's recipe.",
                    flag_values=FLAGS)
flags.DEFINE_multi_string("lora", [], "PATH[:SCALE]: a LoRA adapter (diffusers / PEFT or ComfyUI format, .safetensors) "
                          "with its weight (default 1); repeatable.", flag_values=FLAGS)
flags.DEFINE_enum("weights", None, ["int8", "fp8"], "The transformer blocks' kernels in int8 or fp8 (e4m3) with "
                  "per-output-channel scales (about half the memory; computed in --dtype); default: the "
                  "checkpoint's own (a Lightricks *-fp8 file loads as stored with fp8).", flag_values=FLAGS)
flags.DEFINE_enum("text_encoder_weights", None, ["int8", "fp8"], "The same for T5's block kernels (T5-XXL: 9.5 GB "
                  "in bf16, 4.9 GB in int8).", flag_values=FLAGS)
flags.DEFINE_string("mesh", None, "Run over several devices: AXIS=SIZE,... with axes data (videos, guidance "
                    "branches), fsdp (parameters), context (video tokens), tensor (heads), e.g. data=2,context=4; the "
                    "sizes multiply to the device count (every host's, after jax.distributed.initialize()).",
                    flag_values=FLAGS)
flags.DEFINE_enum("resize_mode", "stretch", ["stretch", "crop"], "How images and clips are fitted to the size: "
                  "stretch (diffusers) or center-crop to the aspect ratio, then resize (Lightricks' inference "
                  "script).", flag_values=FLAGS)
flags.DEFINE_integer("height", None, "Height in pixels, a multiple of the VAE's ratio (32 for the releases); "
                     "default 512 (the Python API's), 64 for tiny-random.", flag_values=FLAGS)
flags.DEFINE_integer("width", None, "Width in pixels; default 704 (the Python API's), 96 for tiny-random.",
                     flag_values=FLAGS)
flags.DEFINE_integer("num_frames", None, "Frames, 8k + 1; default 161 (the Python API's), 9 for tiny-random.",
                     flag_values=FLAGS)
flags.DEFINE_float("fps", 25.0, "Frame rate of the output and of the RoPE time scale (> 0).", flag_values=FLAGS)
flags.DEFINE_integer("steps", None, "Denoising steps (default: the release's).", flag_values=FLAGS)
flags.DEFINE_float("guidance", None, "Classifier-free guidance scale, >= 0; values up to 1 turn guidance off "
                   "(default: the release's).", flag_values=FLAGS)
flags.DEFINE_float("stg_scale", None, "Spatio-temporal guidance scale, >= 0 (default: the release's; 0 turns it off).",
                   flag_values=FLAGS)
flags.DEFINE_enum("stg_mode", None, ["attention_values", "attention_skip", "residual", "transformer_block"],
                  "How STG perturbs the skipped blocks (default: the release's, attention_values).", flag_values=FLAGS)
flags.DEFINE_list("stg_blocks", None, "Blocks STG skips, e.g. 19,25 (default: the release's).", flag_values=FLAGS)
flags.DEFINE_bool("cfg_star", None, "CFG-star: rescale the unconditional prediction by its projection (default: the "
                  "release's).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=FLAGS)
flags.DEFINE_integer("max_sequence_length", 128, "Prompt tokens (longer prompts are cut, with a warning).",
                     flag_values=FLAGS)
flags.DEFINE_enum("dtype", None, ["bfloat16", "float32"], "Compute dtype (default: bfloat16 on GPU, float32 on CPU; "
                  "check: bfloat16).", flag_values=FLAGS)
flags.DEFINE_enum("tiling", "auto", ["auto", "on", "off"], "VAE tiled decoding.", flag_values=FLAGS)
flags.DEFINE_string("preset", None, "Release whose defaults to use, a name from ltx_jax.releases.RELEASES "
                    "(default: detected from the checkpoint).", flag_values=FLAGS)
flags.DEFINE_bool("compilation_cache", True, "Use JAX's persistent compilation cache ($LTX_JAX_CACHE_DIR, else "
                  "~/.cache/ltx_jax/jax_compilation_cache): a later run of the same sizes skips compiling.",
                  flag_values=FLAGS)
flags.DEFINE_bool("progress", True, "Show a step progress bar.", flag_values=FLAGS)
flags.DEFINE_bool("debug", False, "Print the traceback of an error.", flag_values=FLAGS)
flags.DEFINE_bool("memory_analysis", False, "check: also compile each program on this machine's backend for XLA's "
                  "memory analysis (minutes at full size on a CPU).", flag_values=FLAGS)

COMMANDS = ("generate", "check")
USAGE = ('usage: python -m ltx_jax generate --model PATH|tiny-random --prompt "..." [--output out.mp4] [flags]; '
         "python -m ltx_jax check --preset NAME|--model PATH [the flags that shape a run]; --help lists the flags "
         "(fine-tuning: python -m ltx_jax preprocess|train --help; a checkpoint against diffusers: "
         "python -m ltx_jax compare --help)")
TINY_SIZE = (64, 96, 9)  # height, width, frames of --model tiny-random


class UsageError(ValueError):
    """Wrong command-line use: the message and the usage line are printed."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def help_text() -> str:
    lines = [__doc__.strip(), "", USAGE, "", "flags:"]
    for flag in sorted(FLAGS.get_flags_for_module(sys.modules[__name__]), key=lambda f: f.name):
        default = "" if flag.default is None else f" (default: {flag.default_as_str})"
        lines.append(f"  --{flag.name}: {flag.help}{default}")
    return "\n".join(lines)


def resolve_arguments(command: str = "generate") -> dict:
    """Every argument checked and resolved, before anything is loaded; raises ValueError / UsageError. ``check``
    (a dry run) needs no prompt and writes no output, and takes ``--preset`` alone for a release's configs."""
    # deferred: jax loads only after the flags are checked
    from ltx_jax.pipelines.text_to_video import DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES, DEFAULT_WIDTH
    from ltx_jax.releases import get_release

    dry = command == "check"
    if not FLAGS.model and not (dry and FLAGS.preset):
        raise UsageError("--model is required (a checkpoint folder or file, a hub id, or tiny-random)"
                         + (", or --preset NAME for a release's configs." if dry else "."))
    if not dry and (not FLAGS.prompt or not FLAGS.prompt.strip()):
        raise UsageError('--prompt is required, e.g. --prompt "a red fox running through snow".')
    tiny = FLAGS.model == "tiny-random"
    _check_numbers()
    height, width, num_frames = TINY_SIZE if tiny else (DEFAULT_HEIGHT, DEFAULT_WIDTH, DEFAULT_NUM_FRAMES)
    height = height if FLAGS.height is None else FLAGS.height
    width = width if FLAGS.width is None else FLAGS.width
    source = _read_video_source()
    if FLAGS.num_frames is not None:
        num_frames = FLAGS.num_frames
    elif source is not None:
        num_frames = len(source)
    if FLAGS.preset is not None:
        get_release(FLAGS.preset)
    if FLAGS.mesh is not None:
        # deferred: jax loads only after the flags are checked
        from ltx_jax.sharding import make_mesh

        try:
            make_mesh(FLAGS.mesh)  # the spec and the device count, before anything is loaded
        except ValueError as e:
            raise UsageError(f"--{e}") from None
    if FLAGS.stg_blocks is not None and not all(b.strip().isdigit() for b in FLAGS.stg_blocks):
        raise UsageError(f"--stg_blocks {','.join(FLAGS.stg_blocks)}: give block indices, e.g. --stg_blocks 19,25.")
    if not dry:
        check_output(FLAGS.output, num_frames, fps=FLAGS.fps, overwrite=FLAGS.overwrite)
    facts = _model_facts(tiny, dry)
    if dry and facts is None:
        raise UsageError(f"--model {FLAGS.model} is a hub id; check reads a local checkpoint's configs, or --preset.")
    args = dict(tiny=tiny, height=height, width=width, num_frames=num_frames, conditions=[], source=None,
                loras=_check_loras(facts), facts=facts)
    if FLAGS.upsampler is not None:
        _check_multi_scale(tiny, facts, height, width, dry)
    if facts is not None:
        validation.check_video_size(height, width, num_frames, spatial_multiple=facts["spatial"],
                                    temporal_ratio=facts["temporal"], temporal_patch=facts["temporal_patch"])
        args.update(_conditioning_inputs(source, num_frames, height, width, facts["temporal"]))
        too_deep = [b for b in FLAGS.stg_blocks or [] if int(b) >= facts["num_layers"]]
        if too_deep:
            raise ValueError(f"--stg_blocks {','.join(too_deep)}: the model's blocks are "
                             f"0 .. {facts['num_layers'] - 1}.")
        if FLAGS.steps is not None and facts["scheduler"] is not None:  # e.g. one step of a stretched schedule
            # deferred: jax loads only after the flags are checked
            from ltx_jax.sampling import LatentGrid, diffusers_schedule

            grid = LatentGrid.for_video(num_frames, height, width, spatial_ratio=facts["spatial_ratio"],
                                        temporal_ratio=facts["temporal"])
            diffusers_schedule(facts["scheduler"], FLAGS.steps, grid.num_latents)
    return args


def _check_numbers() -> None:
    """Every numeric flag within its range (``validation``'s bounds, the pipelines' own), before anything else."""
    v = validation

    for name, most in (("height", v.MAX_SIDE), ("width", v.MAX_SIDE), ("num_frames", v.MAX_FRAMES)):
        if FLAGS[name].value is not None:
            v.check_int(f"--{name}", FLAGS[name].value, minimum=1, maximum=most)
    v.check_number("--fps", FLAGS.fps, above=0, maximum=v.MAX_FRAME_RATE)
    if FLAGS.steps is not None:
        v.check_int("--steps", FLAGS.steps, minimum=1, maximum=v.MAX_STEPS)
    if FLAGS.guidance is not None:
        v.check_number("--guidance", FLAGS.guidance, minimum=0, maximum=v.MAX_GUIDANCE,
                       note=" (values up to 1 turn classifier-free guidance off)")
    if FLAGS.stg_scale is not None:
        v.check_number("--stg_scale", FLAGS.stg_scale, minimum=0, maximum=v.MAX_GUIDANCE)
    v.check_int("--seed", FLAGS.seed, minimum=0, maximum=v.MAX_SEED)
    v.check_int("--max_sequence_length", FLAGS.max_sequence_length, minimum=1, maximum=v.MAX_SEQUENCE_LENGTH)


def _check_loras(facts: dict | None) -> list[tuple[str, float]]:
    """--lora specs read and checked against the transformer's config (adapters are small; the model is not loaded):
    [(path, scale)]."""
    # deferred: jax loads only after the flags are checked
    from weight_conversion.lora import check_adapter, lora_targets, parse_lora_spec, read_lora

    specs = [parse_lora_spec(spec) for spec in FLAGS.lora]
    if not specs or facts is None:
        return specs
    # deferred: jax loads only after the flags are checked
    from ltx_jax.models import abstract_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from weight_conversion.transformer import torch_key

    config = facts["transformer"]
    targets = lora_targets(abstract_params(LTXVideoTransformer3DModel(config)), torch_key,
                           {"transformer_blocks": config.num_layers})
    for path, _ in specs:
        check_adapter(read_lora(path), "transformer", targets)  # T5 modules are checked once T5 is loaded
    return specs


# Flags that set the one pass of a plain run; a multi-scale run takes its passes from the release's recipe.
ONE_PASS_FLAGS = ("steps", "guidance", "stg_scale", "stg_mode", "stg_blocks", "cfg_star")


def _check_multi_scale(tiny: bool, facts: dict | None, height: int, width: int, dry: bool = False) -> None:
    """--upsampler checked against the model (its config only: nothing is loaded) and the other flags; a dry run
    (``check``) also takes a released upscaler's file name (``releases.LATENT_UPSAMPLER_PRESETS``) without the file."""
    # deferred: jax loads only after the flags are checked
    from ltx_jax.pipelines.multi_scale import first_pass_size
    from ltx_jax.releases import LATENT_UPSAMPLER_PRESETS

    if (FLAGS.upsampler == "tiny-random") != tiny:
        raise UsageError("--upsampler tiny-random goes with --model tiny-random (and a real model with a real "
                         "upsampler file).")
    given = [f"--{name}" for name in ONE_PASS_FLAGS if FLAGS[name].present]
    if given:
        what = "this flag sets" if len(given) == 1 else "these flags set"
        raise UsageError(f"{', '.join(given)}: {what} the one pass of a plain run; with --upsampler the two passes "
                         "follow the release's multi-scale recipe (change a pass with the Python API's first_pass= / "
                         "second_pass=).")
    if FLAGS.video is not None:
        raise UsageError("--video (video-to-video) runs one pass; it does not combine with --upsampler.")
    if facts is None:
        return  # a hub id: checked once it is fetched
    if not tiny:
        # deferred: jax loads only after the flags are checked
        from ltx_jax.check import upsampler_config

        released = dry and os.path.basename(FLAGS.upsampler) in LATENT_UPSAMPLER_PRESETS
        if not os.path.exists(FLAGS.upsampler) and not released:
            raise ValueError(f"--upsampler {FLAGS.upsampler} does not exist; pass a "
                             "ltxv-spatial-upscaler-*.safetensors "
                             "file, a diffusers latent_upsampler folder or an Orbax folder"
                             + (f" (or, to check, a released file's name: {', '.join(LATENT_UPSAMPLER_PRESETS)})"
                                if dry else "") + ".")
        config = upsampler_config(FLAGS.upsampler)
        if config.in_channels != facts["latent_channels"]:
            raise ValueError(f"--upsampler {FLAGS.upsampler} takes {config.in_channels}-channel latents but the "
                             f"model's VAE makes {facts['latent_channels']}; use the upscaler released with the model.")
        if config.temporal_upsample or not config.spatial_upsample:
            raise ValueError(f"--upsampler {FLAGS.upsampler} upsamples in time; multi-scale generation runs a spatial "
                             "upscaler (ltxv-spatial-upscaler-*.safetensors).")
    release = facts["release"]
    if release is None or release.multi_scale is None:
        name = release.name if release is not None else "no release detected"
        raise ValueError(f"--upsampler: the model has no multi-scale recipe ({name}); pass --preset with a 0.9.7 / "
                         "0.9.8 release, e.g. --preset ltx-video-0.9.8-2b-distilled.")
    first_pass_size(height, width, release.multi_scale.downscale_factor, facts["spatial"])


def _read_video_source():
    """--video's frames (read now, so a bad file fails before loading), with the flags that go with it checked."""
    if FLAGS.image is not None and (FLAGS.condition or FLAGS.video is not None):
        raise UsageError("--image is image-to-video; it does not combine with --condition or --video.")
    if (FLAGS.video is None) != (FLAGS.denoise_strength is None):
        raise UsageError("--video and --denoise_strength go together (video-to-video); to extend a clip use "
                         "--condition CLIP@0.")
    if FLAGS.video is None:
        return None
    validation.check_number("--denoise_strength", FLAGS.denoise_strength, above=0)
    if FLAGS.denoise_strength >= 1:
        raise ValueError(f"--denoise_strength must be in (0, 1) (1 would ignore --video), "
                         f"got {FLAGS.denoise_strength}.")
    frames = read_frames(FLAGS.video)
    return frames[: (len(frames) - 1) // 8 * 8 + 1] if FLAGS.num_frames is None else frames


def _conditioning_inputs(source, num_frames: int, height: int, width: int, temporal_ratio: int) -> dict:
    """--image / --condition / --video read and checked against the video's size (nothing is loaded yet)."""
    # deferred: jax loads only after the flags are checked
    from ltx_jax.pipelines.conditioning import LTXVideoCondition, as_frames, prepare_conditions

    out: dict = {}
    if FLAGS.image is not None:
        out["image"] = as_frames(FLAGS.image, "--image", video=False)[0]
    conditions = []
    for spec in FLAGS.condition:
        path, at, place = spec.rpartition("@")
        frame, _, strength = place.partition(":")
        if not at or not path:
            raise UsageError(f"--condition {spec!r}: write PATH@FRAME or PATH@FRAME:STRENGTH, e.g. clip.mp4@16:0.8.")
        if not frame.isdigit():
            raise ValueError(f"--condition {spec!r}: the frame {frame!r} must be an int in 0 .. {num_frames - 1}.")
        try:
            strength = float(strength) if strength else 1.0
        except ValueError:
            raise ValueError(f"--condition {spec!r}: the strength {strength!r} is not a number in [0, 1].") from None
        frames = as_frames(path, f"--condition {path}", video=True)
        kind = "image" if len(frames) == 1 and not os.path.isdir(path) else "video"
        conditions.append(LTXVideoCondition(**{kind: frames[0] if kind == "image" else frames},
                                            frame_index=int(frame), strength=strength))
    prepare_conditions(conditions or None, None, None, 0, 1.0, height=height, width=width, num_frames=num_frames,
                       temporal_ratio=temporal_ratio, resize_mode=FLAGS.resize_mode)  # every rule, checked now
    out["conditions"] = conditions
    if source is not None:
        if len(source) < num_frames:
            raise ValueError(f"--video {FLAGS.video} has {len(source)} frames, fewer than --num_frames {num_frames}.")
        out["source"] = source[:num_frames]
    return out


def _model_facts(tiny: bool, dry: bool = False) -> dict | None:
    """What the checks need of the model, from its configs alone (no weights): the VAE's ratios, the transformer's
    patch sizes, the scheduler when its config is at hand; None for a hub id (checked once it is fetched). ``dry``
    (check): a single file needs no text encoder beside it (the release's T5 config stands in)."""
    # deferred: jax loads only after the flags are checked
    from ltx_jax import scheduler as sched
    from ltx_jax.releases import RELEASES, detect_release, get_release

    scheduler = None
    if tiny:
        # deferred: jax loads only after the flags are checked
        from ltx_jax.tiny_random import TINY_MULTI_SCALE_RELEASE, TINY_TRANSFORMER, TINY_VAE

        transformer, vae, scheduler = TINY_TRANSFORMER, TINY_VAE, RELEASES["ltx-video-0.9.1"].scheduler
        release = RELEASES[TINY_MULTI_SCALE_RELEASE if FLAGS.upsampler else "ltx-video-0.9.1"]
    elif FLAGS.model is None:  # check --preset: the release's own configs
        release = get_release(FLAGS.preset)
        transformer, vae, scheduler = release.transformer, release.vae, release.scheduler
    else:
        # deferred: jax loads only after the flags are checked
        from weight_conversion import read_single_file_config, read_transformer_config, read_vae_config

        path = FLAGS.model
        if not os.path.exists(path):
            # deferred: jax loads only after the flags are checked
            from ltx_jax.pipelines.hub import hub_reference

            reference = hub_reference(path)  # org/name or org/name/file.safetensors: checked once fetched
            if reference is not None:
                if reference[1] is not None and not dry and FLAGS.text_encoder is None:
                    raise ValueError(f"--model {path} is a single file without the T5 text encoder; pass "
                                     "--text_encoder with a folder holding text_encoder/ and tokenizer/.")
                return None
            raise ValueError(f"--model {path} does not exist; pass a checkpoint folder or .safetensors file, a hub "
                             "id such as Lightricks/LTX-Video, or tiny-random.")
        if not dry and os.path.isfile(path) and FLAGS.text_encoder is None and not os.path.isdir(
                os.path.join(os.path.dirname(os.path.abspath(path)), "text_encoder")):  # check takes the release's T5
            raise ValueError(f"--model {path} is a single file without the T5 text encoder; pass --text_encoder with "
                             "a folder holding text_encoder/ and tokenizer/.")
        if FLAGS.text_encoder is not None and not os.path.isdir(FLAGS.text_encoder):
            raise ValueError(f"--text_encoder {FLAGS.text_encoder} is not a folder.")
        transformer, vae = read_transformer_config(path), read_vae_config(path)
        scheduler_json = os.path.join(path, "scheduler", "scheduler_config.json")
        if os.path.isfile(scheduler_json):
            scheduler = sched.FlowMatchSchedulerConfig.from_json(scheduler_json)
        if FLAGS.preset is not None:
            release = get_release(FLAGS.preset)
        else:
            with warnings.catch_warnings():  # loading detects it again and says so
                warnings.simplefilter("ignore")
                metadata = read_single_file_config(path) if os.path.isfile(path) else None
                release = detect_release(path, transformer, vae, metadata)
    return dict(spatial=vae.spatial_ratio * transformer.patch_size, spatial_ratio=vae.spatial_ratio,
                temporal=vae.temporal_ratio, temporal_patch=transformer.patch_size_t, scheduler=scheduler,
                num_layers=transformer.num_layers, latent_channels=vae.latent_channels, release=release,
                transformer=transformer, vae=vae)


def generate(args: dict) -> int:
    # deferred: jax loads only after the flags are checked
    import jax

    from ltx_jax.compilation_cache import enable_compilation_cache
    from ltx_jax.pipelines import LTXPipeline

    dtype = _default_dtype()
    weights = "".join(f", {name} {value}" for name, value in (("weights", FLAGS.weights),
                                                              ("text encoder weights", FLAGS.text_encoder_weights))
                      if value)
    _say(f"loading {FLAGS.model} ({dtype}{weights})")
    for path, scale in args["loras"]:
        _say(f"LoRA {path} x {scale:g}")
    # LoRA files are fused as the checkpoint is read (before any quantization): no run-time cost.
    loading = dict(weights=FLAGS.weights, text_encoder_weights=FLAGS.text_encoder_weights, lora=args["loras"],
                   mesh=FLAGS.mesh)
    if FLAGS.compilation_cache:  # a process-wide JAX setting: this command's choice (--nocompilation_cache)
        _say(f"compilation cache: {enable_compilation_cache()}")
    if args["tiny"]:
        # deferred: jax loads only after the flags are checked
        from ltx_jax.tiny_random import tiny_random_multi_scale_pipeline, tiny_random_pipeline

        _say("tiny-random: small random weights, as an installation check; the output is noise, not a video of the "
             "prompt.")
        make = tiny_random_multi_scale_pipeline if FLAGS.upsampler else tiny_random_pipeline
        pipe = make(dtype=dtype, progress=FLAGS.progress, weights=FLAGS.weights,
                    text_encoder_weights=FLAGS.text_encoder_weights)
        if args["loras"]:
            _apply_loras(pipe, args["loras"])
        if FLAGS.mesh is not None:
            pipe = pipe.to_mesh(FLAGS.mesh)
    elif FLAGS.upsampler is not None:
        # deferred: jax loads only after the flags are checked
        from ltx_jax.pipelines import LTXMultiScalePipeline

        pipe = LTXMultiScalePipeline.from_pretrained(
            FLAGS.model, dtype=dtype, latent_upsampler_path=FLAGS.upsampler, text_encoder_path=FLAGS.text_encoder,
            preset=FLAGS.preset, progress=FLAGS.progress, **loading)
    else:
        pipe = LTXPipeline.from_pretrained(FLAGS.model, dtype=dtype, text_encoder_path=FLAGS.text_encoder,
                                           preset=FLAGS.preset, progress=FLAGS.progress, **loading)
    interrupts.check("loading")
    multi = f" in two passes ({pipe.release.name}'s multi-scale recipe)" if FLAGS.upsampler else ""
    _say(f"generating {args['num_frames']} frames of {args['width']}x{args['height']}{multi}")
    pipe = _pipeline_for(pipe, args)
    frames = _generate(pipe, args, _call_arguments(args, FLAGS.prompt))
    if jax.process_index() != 0:  # several hosts: every process has the same frames; process 0 writes them
        print(f"process {jax.process_index()}: done (process 0 writes {FLAGS.output})")
        return 0
    _say(f"writing {FLAGS.output}")
    with interrupts.raising("writing"):  # the write removes its partial file when a signal stops it
        written = write_video(frames[0], FLAGS.output, fps=FLAGS.fps, overwrite=FLAGS.overwrite)
    if interrupts.requested() is not None:  # a callback inside the write swallowed the exception: the file goes too
        for path in written:
            os.remove(path)
        interrupts.check("writing")
    where = written[0] if len(written) == 1 else f"{written[0]} ... {written[-1]} ({len(written)} files)"
    print(f"wrote {where}: {frames.shape[1]} frames of {frames.shape[3]}x{frames.shape[2]} at {FLAGS.fps:g} fps")
    print(f"timings: {pipe.last_timings}")
    return 0


def _default_dtype() -> str:
    # deferred: jax loads only after the flags are checked
    import jax

    return FLAGS.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")


def _call_arguments(args: dict, prompt: str) -> dict:
    """The pipeline call's arguments from the flags, by the request fields' names (``ltx_jax.requests``); the
    schedule and guidance flags are left out for multi-scale generation, whose passes take the release's recipe."""
    given = dict(prompt=prompt, negative_prompt=FLAGS.negative_prompt, height=args["height"], width=args["width"],
                 num_frames=args["num_frames"], frame_rate=FLAGS.fps, seed=FLAGS.seed,
                 max_sequence_length=FLAGS.max_sequence_length, output_type="uint8",  # made on the device
                 tiling={"auto": "auto", "on": True, "off": False}[FLAGS.tiling])
    if FLAGS.upsampler is None:
        given.update(num_inference_steps=FLAGS.steps, guidance_scale=FLAGS.guidance, stg_scale=FLAGS.stg_scale,
                     skip_layer_strategy=FLAGS.stg_mode, cfg_star_rescale=FLAGS.cfg_star,
                     skip_block_list=None if FLAGS.stg_blocks is None else [int(b) for b in FLAGS.stg_blocks])
    return given


def check(args: dict) -> int:
    """``check``: generate's path over abstract parameters, every program lowered and none run (``ltx_jax.check``);
    prints a line per program."""
    # deferred: jax loads only after the flags are checked
    from ltx_jax import check as dry
    from ltx_jax.pipelines.abstract import STAND_IN_PROMPT
    from ltx_jax.programs import dry_run

    dtype = FLAGS.dtype or "bfloat16"  # the GPU's, where the run is headed
    prompt = FLAGS.prompt or STAND_IN_PROMPT
    pipe = dry.abstract_pipeline_for(args["facts"], model=FLAGS.model, text_encoder=FLAGS.text_encoder,
                                     upsampler=FLAGS.upsampler, dtype=dtype, weights=FLAGS.weights,
                                     text_encoder_weights=FLAGS.text_encoder_weights, mesh=FLAGS.mesh, prompt=prompt)
    pipe.progress = False
    pipe = _pipeline_for(pipe, args)
    with dry_run(compile=FLAGS.memory_analysis) as run:
        _generate(pipe, args, _call_arguments(args, prompt))
    if args["loras"]:
        _say(f"{len(args['loras'])} LoRA file(s) checked against the model; generate fuses them into the weights as "
             "they load, so the programs are the plain ones.")
    print(dry.report(run, pipe, dry.title(pipe, args, dtype, FLAGS.memory_analysis)))
    return 0


def _apply_loras(pipe, loras: list[tuple[str, float]]) -> None:
    """tiny-random (built, not loaded): the --lora adapters with their weights, fused into the kernels (no run-time
    cost); on quantized weights they run unfused."""
    names = []
    for k, (path, scale) in enumerate(loras):
        names.append(f"lora{k}")
        pipe.load_lora_weights(path, adapter_name=names[-1])
    pipe.set_adapters(names, [scale for _, scale in loras])
    if getattr(pipe.transformer, "weights", None) is None:
        pipe.fuse_lora()


def _pipeline_for(pipe, args: dict):
    """The pipeline the flags ask for, over the loaded components: text-, image- or condition-to-video (multi-scale
    generation takes them all)."""
    # deferred: jax loads only after the flags are checked
    from ltx_jax.pipelines import LTXConditionPipeline, LTXImageToVideoPipeline

    if FLAGS.upsampler is not None:
        return pipe
    if "image" in args:
        return LTXImageToVideoPipeline.from_pipe(pipe)
    if args["conditions"] or args["source"] is not None:
        return LTXConditionPipeline.from_pipe(pipe)
    return pipe


def _generate(pipe, args: dict, common: dict):
    """The frames the flags ask for: ``pipe.request`` (the flags over the release's defaults, checked against the
    model) then ``pipe.generate``."""
    # deferred: jax loads only after the flags are checked
    from ltx_jax.pipelines import LTXConditionPipeline, LTXImageToVideoPipeline, LTXMultiScalePipeline
    from ltx_jax.pipelines.conditioning import preprocess
    from ltx_jax.pipelines.contracts import CallKeys

    if isinstance(pipe, LTXMultiScalePipeline):
        request = pipe.request(conditions=args["conditions"] or None, image=args.get("image"),
                               resize_mode=FLAGS.resize_mode, **common)
    elif isinstance(pipe, LTXImageToVideoPipeline):
        request = pipe.request(image=args["image"], resize_mode=FLAGS.resize_mode, **common)
    elif isinstance(pipe, LTXConditionPipeline):
        latents = None
        if args["source"] is not None:  # video-to-video starts from the clip's latents
            pixels = preprocess(args["source"], args["height"], args["width"], FLAGS.resize_mode)[None]
            latents = pipe.encode_video(pixels, CallKeys.from_seed(FLAGS.seed).source)
        request = pipe.request(conditions=args["conditions"] or None, latents=latents,
                               denoise_strength=FLAGS.denoise_strength or 1.0, resize_mode=FLAGS.resize_mode, **common)
    else:
        request = pipe.request(**common)
    return pipe.generate(request)


def _host_devices_for(spec: str) -> None:
    """check --mesh on a machine without that many devices: the CPU backend gets as many host devices as the mesh
    has (set before JAX starts its backends; a bad spec is left for the checks to name)."""
    # deferred: jax loads only after the flags are checked
    from ltx_jax.sharding import parse_mesh_spec

    flags_now = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags_now:
        return
    try:
        count = math.prod(parse_mesh_spec(spec).values())
    except ValueError:
        return
    os.environ["XLA_FLAGS"] = f"{flags_now} --xla_force_host_platform_device_count={count}".strip()


def main(argv: list[str] | None = None) -> int:
    """Runs the command line on ``argv`` (``sys.argv`` when None); returns the exit code. From its first line
    Ctrl-C and SIGTERM only ask the run to stop (``ltx_jax.interrupts``); it stops at its next safe point with one
    line and 130 / 143."""
    argv = list(sys.argv if argv is None else argv)
    with interrupts.handled():
        try:
            return _command(argv)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM; interrupts.Interrupted says where
            _say(f"{str(e) or 'interrupted'}; nothing was written.")
            return 128 + getattr(e, "signum", signal.SIGINT)


def _command(argv: list[str]) -> int:
    interrupts.check()  # a signal while Python started
    if len(argv) > 1 and argv[1] in ("preprocess", "train"):  # fine-tuning: ltx_jax/training/cli.py
        return training_main(argv)
    if len(argv) > 1 and argv[1] == "compare":  # a checkpoint against diffusers: ltx_jax/compare.py
        from ltx_jax.compare import main as compare_main  # deferred: compare loads jax; only its command needs it

        interrupts.uninstall()  # compare keeps Python's own Ctrl-C
        return compare_main(argv)
    if any(a in ("-h", "--help", "--helpfull", "-?") for a in argv[1:]):
        print(help_text())
        return 0
    try:
        FLAGS.unparse_flags()  # a second main() in one process starts from the defaults too
        rest = FLAGS(gnu_booleans(argv, FLAGS))
        if len(rest) != 2 or rest[1] not in COMMANDS:
            raise UsageError(f"expected the command generate or check, got {' '.join(rest[1:]) or 'none'}.")
    except flags.IllegalFlagValueError as e:  # a value of the wrong kind (--height nan): one line, as a range
        _say(f"error: {e}")
        return 2
    except (flags.Error, UsageError) as e:
        _say(f"error: {e}\n{USAGE}")
        return 2
    if rest[1] == "check" and FLAGS.mesh:
        _host_devices_for(FLAGS.mesh)

    absl_logging.set_verbosity(absl_logging.WARNING)  # keeps backend-probing chatter (e.g. "no TPU") off the console
    try:
        command = check if rest[1] == "check" else generate
        args = resolve_arguments(rest[1])
        interrupts.check()
        return command(args)
    except Exception as e:  # noqa: BLE001 - every error ends in one line; --debug shows where it came from
        # deferred: jax loads only after the flags are checked
        from ltx_jax.pipelines import NonFiniteError

        if FLAGS.debug:
            traceback.print_exc()
        user_error = isinstance(e, ValueError) and not isinstance(e, NonFiniteError)
        if not user_error and not isinstance(e, (OSError, NonFiniteError)):
            raise  # a bug of ours: the whole traceback
        _say(f"error: {e}" + (f"\n{USAGE}" if isinstance(e, UsageError) else ""))
        return 2 if user_error else 1


def run() -> None:
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A device may still be finishing an interrupted program: exit without waiting for it.
    os._exit(code) if code in (128 + signal.SIGINT, 128 + signal.SIGTERM) else sys.exit(code)


if __name__ == "__main__":
    run()

"""The generate and check commands' flags (absl) and their checks: every argument resolved and checked before any
model is loaded (``resolve_arguments``), each mistake one line (``UsageError`` / ``ValueError``); the commands
themselves are ``ltx_jax.__main__``'s."""

from __future__ import annotations

import os
import warnings

from absl import flags

from ltx_jax import validation
from ltx_jax.video import check_output, read_frames

FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "diffusers-layout folder, Lightricks single file, Orbax folder, hub id, or "
                    "'tiny-random'; an LTX-2 folder or single file (or 'tiny-random-ltx2') makes video with sound.",
                    flag_values=FLAGS)
flags.DEFINE_string("prompt", None, "Text prompt.", flag_values=FLAGS)
flags.DEFINE_string("negative_prompt", None, "Negative prompt (used when guidance > 1).", flag_values=FLAGS)
flags.DEFINE_string("text_encoder", None, "Folder with text_encoder/ and tokenizer/ (needed with a single-file "
                    "--model: T5 for LTX-Video, Gemma for LTX-2).", flag_values=FLAGS)
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
                    "Orbax (tiny-random with --model tiny-random); the two passes follow the release's recipe. "
                    "LTX-2: the two-stage recipe with its x2 spatial upscaler (ltx-2*-spatial-upscaler-x2-*, a "
                    "latent_upsampler folder; tiny-random with tiny-random-ltx2): --height / --width are the final "
                    "size (default twice the release's), stage 1 runs at half of it.", flag_values=FLAGS)
flags.DEFINE_multi_string("lora", [], "PATH[:SCALE]: a LoRA adapter (diffusers / PEFT or ComfyUI format, .safetensors) "
                          "with its weight (default 1); repeatable.", flag_values=FLAGS)
flags.DEFINE_enum("weights", None, ["int8", "fp8"], "The transformer blocks' kernels in int8 or fp8 (e4m3) with "
                  "per-output-channel scales (about half the memory; computed in --dtype); default: the "
                  "checkpoint's own (a Lightricks *-fp8 file loads as stored with fp8).", flag_values=FLAGS)
flags.DEFINE_enum("compute", None, ["fp8"], "fp8: the transformer blocks' matmuls as fp8 x fp8 (activations "
                  "quantized per tensor; cuBLASLt's fp8 GEMM on Hopper, emulated elsewhere); needs --weights fp8 or "
                  "an fp8 checkpoint. Default: matmuls in --dtype.", flag_values=FLAGS)
flags.DEFINE_enum("text_encoder_weights", None, ["int8", "fp8"], "The same for T5's block kernels (T5-XXL: 9.5 GB "
                  "in bf16, 4.9 GB in int8).", flag_values=FLAGS)
flags.DEFINE_string("mesh", None, "Run over several devices: AXIS=SIZE,... with axes data (videos, guidance "
                    "branches), fsdp (parameters), context (video tokens), tensor (heads), e.g. data=2,context=4; the "
                    "sizes multiply to the device count (every process's: python -m ltx_jax.launch).",
                    flag_values=FLAGS)
flags.DEFINE_enum("resize_mode", "stretch", ["stretch", "crop"], "How images and clips are fitted to the size: "
                  "stretch (diffusers) or center-crop to the aspect ratio, then resize (Lightricks' inference "
                  "script).", flag_values=FLAGS)
flags.DEFINE_integer("height", None, "Height in pixels, a multiple of the VAE's ratio (32 for the releases); "
                     "default 512 (the Python API's), 64 for tiny-random; LTX-2: the release's (512 x 768 x 121 at "
                     "24 fps), 64 x 64 x 9 for tiny-random-ltx2.", flag_values=FLAGS)
flags.DEFINE_integer("width", None, "Width in pixels; default 704 (the Python API's), 96 for tiny-random.",
                     flag_values=FLAGS)
flags.DEFINE_integer("num_frames", None, "Frames, 8k + 1; default 161 (the Python API's), 9 for tiny-random.",
                     flag_values=FLAGS)
flags.DEFINE_float("fps", 25.0, "Frame rate of the output and of the RoPE time scale (> 0); LTX-2: also the sound's "
                   "length (default: the release's 24).", flag_values=FLAGS)
flags.DEFINE_integer("steps", None, "Denoising steps (default: the release's).", flag_values=FLAGS)
flags.DEFINE_float("guidance", None, "Classifier-free guidance scale, >= 0; values up to 1 turn guidance off "
                   "(default: the release's).", flag_values=FLAGS)
flags.DEFINE_float("stg_scale", None, "Spatio-temporal guidance scale, >= 0 (default: the release's; 0 turns it off).",
                   flag_values=FLAGS)
flags.DEFINE_enum("stg_mode", None, ["attention_values", "attention_skip", "residual", "transformer_block"],
                  "How STG perturbs the skipped blocks (default: the release's, attention_values).", flag_values=FLAGS)
flags.DEFINE_list("stg_blocks", None, "Blocks STG skips, e.g. 19,25 (default: the release's).", flag_values=FLAGS)
flags.DEFINE_string("cache", None, "Step caching: KIND or KIND:THRESHOLD. first_block (default threshold 0.05): a "
                    "step runs only the first block while its residual moves by at most THRESHOLD (relative); "
                    "teacache (default 0.06, ComfyUI's TeaCache): a step runs no block while the rescaled change of "
                    "the first block's input, accumulated since the last step that ran them, stays below THRESHOLD. "
                    "Pays on many-step dev runs, little on 8-step distilled ones.", flag_values=FLAGS)
flags.DEFINE_integer("temporal_tile_size", None, "Long videos in temporal windows, a prompt per window (the "
                     "prompt's '|'-separated parts; LTXI2VLongMultiPromptPipeline): the window in frames, 8k or "
                     "8k + 1 (default 80). A prompt with '|' or any --temporal_* / --adain_factor flag makes a long "
                     "video; --image is then its first frame.", flag_values=FLAGS)
flags.DEFINE_integer("temporal_overlap", None, "Long videos: frames each window shares with the previous one, a "
                     "multiple of 8 smaller than the window (default 24).", flag_values=FLAGS)
flags.DEFINE_float("temporal_overlap_cond_strength", None, "Long videos: how strongly a window keeps the previous "
                   "window's tail, in [0, 1] (default 0.5).", flag_values=FLAGS)
flags.DEFINE_float("adain_factor", None, "Long videos: AdaIN of each later window towards the first one's "
                   "statistics, in [0, 1] (default 0.25).", flag_values=FLAGS)
flags.DEFINE_float("cond_strength", None, "Long videos: how strongly frame 0 keeps --image, in [0, 1] (default 0.5).",
                   flag_values=FLAGS)
flags.DEFINE_bool("cfg_star", None, "CFG-star: rescale the unconditional prediction by its projection (default: the "
                  "release's).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=FLAGS)
flags.DEFINE_integer("max_sequence_length", 128, "Prompt tokens (longer prompts are cut, with a warning); LTX-2: "
                     "default 1024, a multiple of the connectors' registers (128).", flag_values=FLAGS)
flags.DEFINE_enum("dtype", None, ["bfloat16", "float32"], "Compute dtype (default: bfloat16 on GPU, float32 on CPU; "
                  "check: bfloat16).", flag_values=FLAGS)
flags.DEFINE_enum("tiling", "auto", ["auto", "on", "off"], "VAE tiled decoding.", flag_values=FLAGS)
flags.DEFINE_string("preset", None, "Release whose defaults to use, a name from ltx_jax.releases.RELEASES or "
                    "ltx_jax.releases_ltx2.LTX2_RELEASES (default: detected from the checkpoint).", flag_values=FLAGS)
flags.DEFINE_bool("compilation_cache", True, "Use JAX's persistent compilation cache ($LTX_JAX_CACHE_DIR, else "
                  "~/.cache/ltx_jax/jax_compilation_cache): a later run of the same sizes skips compiling.",
                  flag_values=FLAGS)
flags.DEFINE_bool("progress", True, "Show a step progress bar.", flag_values=FLAGS)
flags.DEFINE_bool("debug", False, "Print the traceback of an error.", flag_values=FLAGS)
flags.DEFINE_bool("audio", True, "LTX-2: write the sound track (AAC in an .mp4, a .wav beside .png frames; a .gif "
                  "needs --noaudio); --noaudio writes the video alone.", flag_values=FLAGS)
flags.DEFINE_float("modality_scale", None, "LTX-2: the video's cross-modal guidance scale, >= 0 (above 1: on; default: "
                   "the release's, else diffusers' 3).", flag_values=FLAGS)
flags.DEFINE_float("guidance_rescale", None, "LTX-2: the video's CFG rescale, in [0, 1] (default: the release's, else "
                   "diffusers' 0.7).", flag_values=FLAGS)
flags.DEFINE_float("audio_guidance_scale", None, "LTX-2: the audio's CFG scale, >= 0; 0 takes --guidance (default: "
                   "the release's, else diffusers' 7).", flag_values=FLAGS)
flags.DEFINE_float("audio_stg_scale", None, "LTX-2: the audio's STG scale, >= 0; 0 takes --stg_scale (default: the "
                   "release's, else diffusers' 1).", flag_values=FLAGS)
flags.DEFINE_float("audio_modality_scale", None, "LTX-2: the audio's cross-modal guidance scale, >= 0; 0 takes "
                   "--modality_scale (default: the release's, else diffusers' 3).", flag_values=FLAGS)
flags.DEFINE_float("audio_guidance_rescale", None, "LTX-2: the audio's CFG rescale, in [0, 1]; 0 takes "
                   "--guidance_rescale (default: the release's, else diffusers' 0.7).", flag_values=FLAGS)
flags.DEFINE_multi_string("distilled_lora", [], "LTX-2, with --upsampler: PATH[:SCALE], the distilled LoRA fused "
                          "into stage 2's transformer (the dev model's two-stage recipe: the release's "
                          "*-distilled-lora-*.safetensors); repeatable.", flag_values=FLAGS)
flags.DEFINE_bool("memory_analysis", False, "check: also compile each program on this machine's backend for XLA's "
                  "memory analysis (minutes at full size on a CPU).", flag_values=FLAGS)

TINY_SIZE = (64, 96, 9)  # height, width, frames of --model tiny-random
# Flags only LTX-2 takes (ltx_jax.generate_ltx2); an LTX-Video run refuses them.
LTX2_FLAGS = ("audio", "modality_scale", "guidance_rescale", "audio_guidance_scale", "audio_stg_scale",
              "audio_modality_scale", "audio_guidance_rescale", "distilled_lora")


class UsageError(ValueError):
    """Wrong command-line use: the message and the usage line are printed."""


def parse_cache(value: str) -> tuple[str, float]:
    """``--cache KIND[:THRESHOLD]`` (``first_block``, ``teacache``; the kind's default threshold without one) ->
    (kind, threshold); a UsageError naming the fix otherwise."""
    kind, _, threshold = value.partition(":")
    defaults = validation.STEP_CACHE_THRESHOLDS
    if kind not in defaults:
        raise UsageError(f"--cache {value}: use KIND or KIND:THRESHOLD with KIND one of {', '.join(defaults)}, e.g. "
                         + " or ".join(f"--cache {k}:{t}" for k, t in defaults.items()) + ".")
    if not threshold:
        return kind, defaults[kind]
    try:
        number = float(threshold)
    except ValueError:
        number = float("nan")
    if not number >= 0 or number == float("inf"):
        raise UsageError(f"--cache {value}: the threshold must be a number >= 0, e.g. --cache {kind}:{defaults[kind]}.")
    return kind, number


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
    given = [f"--{name}" for name in LTX2_FLAGS if FLAGS[name].present]
    if given:
        raise ValueError(f"{given[0]} is an LTX-2 flag (sound, modality guidance, its two-stage recipe); "
                         f"{FLAGS.model or FLAGS.preset} is "
                         "LTX-Video 0.9.x, which makes video without sound (an LTX-2 --model, or tiny-random-ltx2, "
                         "takes it).")
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
    if FLAGS.cache is not None:
        parse_cache(FLAGS.cache)
    if FLAGS.stg_blocks is not None and not all(b.strip().isdigit() for b in FLAGS.stg_blocks):
        raise UsageError(f"--stg_blocks {','.join(FLAGS.stg_blocks)}: give block indices, e.g. --stg_blocks 19,25.")
    if not dry:
        check_output(FLAGS.output, num_frames, fps=FLAGS.fps, overwrite=FLAGS.overwrite)
    weights = _transformer_weights(tiny)
    facts = _model_facts(tiny, dry)
    if dry and facts is None:
        raise UsageError(f"--model {FLAGS.model} is a hub id; check reads a local checkpoint's configs, or --preset.")
    args = dict(tiny=tiny, height=height, width=width, num_frames=num_frames, conditions=[], source=None,
                loras=_check_loras(facts), facts=facts, weights=weights)
    if FLAGS.upsampler is not None:
        _check_multi_scale(tiny, facts, height, width, dry)
    args["long"] = _check_long_video(facts)
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


def _transformer_weights(tiny: bool) -> str | None:
    """--weights, checked against --compute: fp8 matmuls need fp8 kernels, --weights fp8 or a checkpoint that stores
    them (read from its headers; then "fp8": they load as stored)."""
    if FLAGS.compute != "fp8" or FLAGS.weights == "fp8":
        return FLAGS.weights
    if FLAGS.weights is None and not tiny and FLAGS.model is not None:
        if not os.path.exists(FLAGS.model):
            return None  # a hub id (or a missing path, which _model_facts reports): checked once it is fetched
        # deferred: jax loads only after the flags are checked
        from weight_conversion.transformer import stored_transformer_weights

        if stored_transformer_weights(FLAGS.model) == "fp8":
            return "fp8"
    held = (f"not --weights {FLAGS.weights}" if FLAGS.weights else "tiny-random's kernels are float" if tiny
            else f"{FLAGS.model} stores float kernels" if FLAGS.model else "--preset alone means float kernels")
    raise UsageError(f"--compute fp8 multiplies fp8 activations by fp8 kernels: add --weights fp8 or pass an fp8 "
                     f"checkpoint ({held}).")


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
ONE_PASS_FLAGS = ("steps", "guidance", "stg_scale", "stg_mode", "stg_blocks", "cfg_star", "cache")


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


LONG_VIDEO_FLAGS = ("temporal_tile_size", "temporal_overlap", "temporal_overlap_cond_strength", "adain_factor",
                    "cond_strength")


def _check_long_video(facts: dict | None) -> dict | None:
    """A long video's window flags, checked against the VAE's temporal ratio (one line each): the request fields
    they set, or None when the run is not a long video (no '|' in the prompt, no window flag)."""
    given = {name: FLAGS[name].value for name in LONG_VIDEO_FLAGS if FLAGS[name].value is not None}
    if not given and "|" not in (FLAGS.prompt or ""):
        return None
    for other in ("upsampler", "video"):
        if FLAGS[other].value is not None:
            raise UsageError(f"--{other} does not combine with a long video (a prompt with '|' or a --temporal_* "
                             "flag).")
    if FLAGS.condition:
        raise UsageError("--condition does not combine with a long video; its first frame is --image.")
    # deferred: the requests module loads only once the flags are read (it imports no jax)
    from ltx_jax.requests import LongVideoRequest

    ratio = facts["temporal"] if facts is not None else 8
    defaults = LongVideoRequest()  # the pipeline's defaults: one source for the window and the overlap
    tile = given.get("temporal_tile_size", defaults.temporal_tile_size)
    overlap = given.get("temporal_overlap", defaults.temporal_overlap)
    validation.check_temporal_windows(tile, overlap, ratio, prefix="--")
    for name in LONG_VIDEO_FLAGS[2:]:
        if name in given:
            validation.check_number(f"--{name}", given[name], minimum=0, maximum=1)
    return given


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


def _default_dtype() -> str:
    # deferred: jax loads only after the flags are checked
    import jax

    return FLAGS.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")

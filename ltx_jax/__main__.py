"""Command line: ``python -m ltx_jax generate --model PATH --prompt "..." --output out.mp4``.

``--model tiny-random`` runs the whole pipeline with small random weights on the CPU in well under a minute, as an
installation check (its output is noise); ``--upsampler tiny-random`` with it runs multi-scale generation so. An
LTX-2 checkpoint (or ``tiny-random-ltx2``) makes video with sound: ``ltx_jax.generate_ltx2`` / ``ltx_jax.check_ltx2``.

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

from ltx_jax import distributed, interrupts

if __name__ == "__main__":  # python -m ltx_jax: from here a signal is a stop request the run reads (interrupts)
    interrupts.install()

from absl import flags  # noqa: E402 - after the handlers: a signal during the imports is recorded, not raised

from absl import logging as absl_logging  # noqa: E402

from ltx_jax.command_line import gnu_booleans  # noqa: E402
from ltx_jax.training.cli import main as training_main  # noqa: E402
from ltx_jax.video import write_video  # noqa: E402
from ltx_jax.generate_flags import FLAGS, UsageError, _default_dtype, parse_cache, resolve_arguments  # noqa: E402

COMMANDS = ("generate", "check")
USAGE = ('usage: python -m ltx_jax generate --model PATH|tiny-random|tiny-random-ltx2 --prompt "..." '
         '[--output out.mp4] [flags]; '
         "python -m ltx_jax check --preset NAME|--model PATH [the flags that shape a run]; --help lists the flags "
         "(fine-tuning: python -m ltx_jax preprocess|train --help; a checkpoint against diffusers: "
         "python -m ltx_jax compare --help)")


def _say(message: str) -> None:
    if distributed.is_main():  # several processes: the others stay quiet (ltx_jax.launch shows them if they fail)
        print(message, file=sys.stderr, flush=True)


def help_text() -> str:
    lines = [__doc__.strip(), "", USAGE, "", "flags:"]
    for flag in sorted(FLAGS.get_flags_for_module(sys.modules["ltx_jax.generate_flags"]), key=lambda f: f.name):
        default = "" if flag.default is None else f" (default: {flag.default_as_str})"
        lines.append(f"  --{flag.name}: {flag.help}{default}")
    return "\n".join(lines)


def generate(args: dict) -> int:
    if args.get("ltx2"):  # an LTX-2 model: video with sound
        from ltx_jax import generate_ltx2  # deferred: jax loads only after the flags are checked

        return generate_ltx2.generate(args)
    # deferred: jax loads only after the flags are checked
    from ltx_jax.compilation_cache import enable_compilation_cache
    from ltx_jax.pipelines import LTXPipeline

    dtype = _default_dtype()
    progress = FLAGS.progress and distributed.is_main()
    weights = "".join(f", {name} {value}" for name, value in (("weights", args["weights"]), ("compute", FLAGS.compute),
                                                              ("text encoder weights", FLAGS.text_encoder_weights))
                      if value)
    _say(f"loading {FLAGS.model} ({dtype}{weights})")
    for path, scale in args["loras"]:
        _say(f"LoRA {path} x {scale:g}")
    # LoRA files are fused as the checkpoint is read (before any quantization): no run-time cost.
    loading = dict(weights=args["weights"], text_encoder_weights=FLAGS.text_encoder_weights, compute=FLAGS.compute,
                   lora=args["loras"], mesh=FLAGS.mesh)
    if FLAGS.compilation_cache:  # a process-wide JAX setting: this command's choice (--nocompilation_cache)
        _say(f"compilation cache: {enable_compilation_cache()}")
    if args["tiny"]:
        # deferred: jax loads only after the flags are checked
        from ltx_jax.tiny_random import tiny_random_multi_scale_pipeline, tiny_random_pipeline

        _say("tiny-random: small random weights, as an installation check; the output is noise, not a video of the "
             "prompt.")
        make = tiny_random_multi_scale_pipeline if FLAGS.upsampler else tiny_random_pipeline
        pipe = make(dtype=dtype, progress=progress, weights=args["weights"],
                    text_encoder_weights=FLAGS.text_encoder_weights, compute=FLAGS.compute)
        if args["loras"]:
            _apply_loras(pipe, args["loras"])
        if FLAGS.mesh is not None:
            pipe = pipe.to_mesh(FLAGS.mesh)
    elif FLAGS.upsampler is not None:
        # deferred: jax loads only after the flags are checked
        from ltx_jax.pipelines import LTXMultiScalePipeline

        pipe = LTXMultiScalePipeline.from_pretrained(
            FLAGS.model, dtype=dtype, latent_upsampler_path=FLAGS.upsampler, text_encoder_path=FLAGS.text_encoder,
            preset=FLAGS.preset, progress=progress, **loading)
    else:
        pipe = LTXPipeline.from_pretrained(FLAGS.model, dtype=dtype, text_encoder_path=FLAGS.text_encoder,
                                           preset=FLAGS.preset, progress=progress, **loading)
    interrupts.check("loading")
    multi = f" in two passes ({pipe.release.name}'s multi-scale recipe)" if FLAGS.upsampler else ""
    _say(f"generating {args['num_frames']} frames of {args['width']}x{args['height']}{multi}")
    pipe = _pipeline_for(pipe, args)
    if args.get("long") is not None:
        return _generate_long(pipe, args)
    frames = _generate(pipe, args, _call_arguments(args, FLAGS.prompt))
    if not distributed.is_main():  # several processes: every one has the same frames; process 0 writes them
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
    if pipe.last_cached_steps is not None:
        ran = "the first block only" if FLAGS.cache.startswith("first_block") else "no transformer block"
        print(f"step cache: {int(pipe.last_cached_steps.sum())} of {len(pipe.last_cached_steps)} steps ran {ran}")
    return 0


def _generate_long(pipe, args: dict) -> int:
    """A long video (``LTXI2VLongMultiPromptPipeline``): the windows' latents, then decoded window by window straight
    into the file (memory flat in the video's length); a stop between windows leaves no file."""
    request = pipe.request(cond_image=args.get("image"), **args["long"],
                           **{**_call_arguments(args, FLAGS.prompt), "output_type": "latent"})
    latents = pipe.generate(request)
    _say(f"writing {FLAGS.output} (decoded window by window, {latents.shape[1]} latent frames)")
    written = pipe.decode_long_to_file(latents, FLAGS.output, fps=FLAGS.fps, overwrite=FLAGS.overwrite,
                                       **pipe._decode_settings(request))
    if not distributed.is_main():  # several processes: each decoded its share; process 0 wrote the file
        return 0
    if interrupts.requested() is not None:  # a stop after the last window: the file goes too
        for path in written:
            os.remove(path)
        interrupts.check("writing")
    frames = 1 + (latents.shape[1] - 1) * pipe.vae_temporal_compression_ratio
    height, width = pipe._decoded_size(latents.shape[2:4])
    where = written[0] if len(written) == 1 else f"{written[0]} ... {written[-1]} ({len(written)} files)"
    print(f"wrote {where}: {frames} frames of {width}x{height} at {FLAGS.fps:g} fps")
    print(f"timings: {pipe.last_timings}")
    return 0


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
        if FLAGS.cache is not None:
            given["cache"], given["cache_threshold"] = parse_cache(FLAGS.cache)
    return given


def check(args: dict) -> int:
    """``check``: generate's path over abstract parameters, every program lowered and none run (``ltx_jax.check``);
    prints a line per program."""
    if args.get("ltx2"):  # an LTX-2 model: ltx_jax.check_ltx2
        from ltx_jax import check_ltx2  # deferred: jax loads only after the flags are checked

        return check_ltx2.check(args)
    # deferred: jax loads only after the flags are checked
    from ltx_jax import check as dry
    from ltx_jax.pipelines.abstract import STAND_IN_PROMPT
    from ltx_jax.programs import dry_run

    dtype = FLAGS.dtype or "bfloat16"  # the GPU's, where the run is headed
    prompt = FLAGS.prompt or STAND_IN_PROMPT
    pipe = dry.abstract_pipeline_for(args["facts"], model=FLAGS.model, text_encoder=FLAGS.text_encoder,
                                     upsampler=FLAGS.upsampler, dtype=dtype, weights=args["weights"],
                                     text_encoder_weights=FLAGS.text_encoder_weights, mesh=FLAGS.mesh, prompt=prompt,
                                     compute=FLAGS.compute)
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
    from ltx_jax.pipelines import LTXConditionPipeline, LTXI2VLongMultiPromptPipeline, LTXImageToVideoPipeline

    if FLAGS.upsampler is not None:
        return pipe
    if args.get("long") is not None:
        return LTXI2VLongMultiPromptPipeline.from_pipe(pipe)
    if "image" in args:
        return LTXImageToVideoPipeline.from_pipe(pipe)
    if args["conditions"] or args["source"] is not None:
        return LTXConditionPipeline.from_pipe(pipe)
    return pipe


def _generate(pipe, args: dict, common: dict):
    """The frames the flags ask for: ``pipe.request`` (the flags over the release's defaults, checked against the
    model) then ``pipe.generate``."""
    # deferred: jax loads only after the flags are checked
    from ltx_jax.pipelines import (LTXConditionPipeline, LTXI2VLongMultiPromptPipeline, LTXImageToVideoPipeline,
                                   LTXMultiScalePipeline)
    from ltx_jax.pipelines.conditioning import preprocess
    from ltx_jax.pipelines.contracts import CallKeys

    if isinstance(pipe, LTXI2VLongMultiPromptPipeline):
        request = pipe.request(cond_image=args.get("image"), **args["long"], **common)
    elif isinstance(pipe, LTXMultiScalePipeline):
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
        if rest[1] == "generate" and distributed.initialize():  # several processes (ltx_jax.launch, or a cluster)
            import jax  # deferred: jax loads only after the flags are checked

            _say(f"process group: {jax.process_count()} processes, {jax.device_count()} devices")
        command = check if rest[1] == "check" else generate
        from ltx_jax import generate_ltx2  # deferred: jax loads only after the flags are checked

        args = (generate_ltx2.resolve_arguments if generate_ltx2.runs_ltx2() else resolve_arguments)(rest[1])
        interrupts.check()
        return command(args)
    except Exception as e:  # noqa: BLE001 - every error ends in one line; --debug shows where it came from
        # deferred: jax loads only after the flags are checked
        from ltx_jax.pipelines import NonFiniteError

        if FLAGS.debug:
            traceback.print_exc()
        lost = _lost_process(e)
        if lost:
            _say(f"error: {lost}")
            return 1
        user_error = isinstance(e, ValueError) and not isinstance(e, NonFiniteError)
        if not user_error and not isinstance(e, (OSError, NonFiniteError)):
            raise  # a bug of ours: the whole traceback
        _say(f"error: {e}" + (f"\n{USAGE}" if isinstance(e, UsageError) else ""))
        return 2 if user_error else 1


def _lost_process(error: Exception) -> str | None:
    """The one line for a collective that failed because another process of the run ended (several processes), or
    None for any other error."""
    if "jax" not in sys.modules:
        return None
    import jax  # deferred: jax loads only after the flags are checked (and is loaded here already)

    if jax.process_count() == 1 or not isinstance(error, jax.errors.JaxRuntimeError):
        return None
    first = " ".join(str(error).split())[:160]
    return (f"another process of this run ended or was lost (a collective failed: {first}); this one stops too, "
            "nothing was written.")


def run() -> None:
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A device may still be finishing an interrupted program: exit without waiting for it.
    os._exit(code) if code in (128 + signal.SIGINT, 128 + signal.SIGTERM) else sys.exit(code)


if __name__ == "__main__":
    run()

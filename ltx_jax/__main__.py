"""Command line: ``python -m ltx_jax generate --prompt "..." --model PATH --output out.mp4``.

``--model tiny-random`` runs the whole pipeline with small random weights on the CPU in well under a minute, as an
installation check (its output is noise).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("prompt", None, "Text prompt.")
flags.DEFINE_string("negative_prompt", None, "Negative prompt (used when guidance > 1).")
flags.DEFINE_string("model", None, "diffusers-layout folder, Lightricks single file, Orbax folder, hub id, or 'tiny-random'.")
flags.DEFINE_string("text_encoder", None, "Folder with text_encoder/ and tokenizer/ (needed with a single-file --model).")
flags.DEFINE_string("output", "output.mp4", "Output file: .mp4, .gif, or .png (one file per frame).")
flags.DEFINE_integer("height", None, "Height in pixels, a multiple of 32 (default 512; 64 for tiny-random).")
flags.DEFINE_integer("width", None, "Width in pixels, a multiple of 32 (default 768; 96 for tiny-random).")
flags.DEFINE_integer("num_frames", None, "Frames, 8k + 1 (default 121; 9 for tiny-random).")
flags.DEFINE_float("fps", 25.0, "Frame rate of the output and of the RoPE time scale.")
flags.DEFINE_integer("steps", None, "Denoising steps (default: the checkpoint's preset).")
flags.DEFINE_float("guidance", None, "Classifier-free guidance scale (default: the checkpoint's preset).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_enum("dtype", None, ["bfloat16", "float32"], "Compute dtype (default: bfloat16 on GPU, float32 on CPU).")
flags.DEFINE_enum("tiling", "auto", ["auto", "on", "off"], "VAE tiled decoding.")
flags.DEFINE_string("preset", None, "Release whose defaults to use, a name from ltx_jax.releases.RELEASES (default: detected).")
flags.DEFINE_bool("compilation_cache", True, "Use JAX's persistent compilation cache.")
flags.DEFINE_bool("progress", True, "Show a step progress bar.")

COMMANDS = ("generate",)


def generate() -> int:
    import jax

    from ltx_jax.pipelines import LTXPipeline, enable_compilation_cache
    from ltx_jax.video import VIDEO_EXTENSIONS, write_video

    if not FLAGS.model:
        raise app.UsageError("--model is required (a checkpoint path, a hub id, or tiny-random).")
    if FLAGS.prompt is None:
        raise app.UsageError('--prompt is required, e.g. --prompt "a red fox running through snow".')
    ext = os.path.splitext(FLAGS.output)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise app.UsageError(f"--output must end in one of {VIDEO_EXTENSIONS}, got {FLAGS.output!r}.")
    dtype = FLAGS.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")
    tiny = FLAGS.model == "tiny-random"
    if tiny:
        from ltx_jax.tiny_random import tiny_random_pipeline

        print("tiny-random: small random weights, as an installation check; the output is noise, not a video of the prompt.")
        if FLAGS.compilation_cache:
            enable_compilation_cache()
        pipe = tiny_random_pipeline(dtype=dtype, progress=FLAGS.progress)
    else:
        pipe = LTXPipeline.from_pretrained(FLAGS.model, dtype=dtype, text_encoder_path=FLAGS.text_encoder,
                                           preset=FLAGS.preset, compilation_cache=FLAGS.compilation_cache,
                                           progress=FLAGS.progress)
    height = FLAGS.height or (64 if tiny else 512)
    width = FLAGS.width or (96 if tiny else 768)
    num_frames = FLAGS.num_frames or (9 if tiny else 121)
    tiling = {"auto": "auto", "on": True, "off": False}[FLAGS.tiling]
    frames = pipe(prompt=FLAGS.prompt, negative_prompt=FLAGS.negative_prompt, height=height, width=width,
                  num_frames=num_frames, frame_rate=FLAGS.fps, num_inference_steps=FLAGS.steps,
                  guidance_scale=FLAGS.guidance, seed=FLAGS.seed, tiling=tiling)
    written = write_video(frames[0], FLAGS.output, fps=FLAGS.fps)
    where = written[0] if len(written) == 1 else f"{written[0]} ... {written[-1]} ({len(written)} files)"
    print(f"wrote {where}: {frames.shape[1]} frames of {frames.shape[3]}x{frames.shape[2]} at {FLAGS.fps:g} fps")
    print(f"timings: {pipe.last_timings}")
    return 0


def main(argv) -> int:
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # keeps backend-probing chatter (e.g. "no TPU") off the console
    if len(argv) < 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m ltx_jax generate --prompt \"...\" --model PATH --output out.mp4 "
                             f"(commands: {', '.join(COMMANDS)})")
    if len(argv) > 2:
        raise app.UsageError(f"unexpected arguments {argv[2:]}; options are --flags.")
    return generate()


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    sys.exit(run())

"""``python -m ltx_jax preprocess`` and ``python -m ltx_jax train``.

    python -m ltx_jax preprocess --data clips/ --model LTX-Video/ --output latents/ --buckets 768x512x49
    python -m ltx_jax train --data latents/ --model LTX-Video/ --output run/ --lora_rank 32 --steps 2000

``train`` writes ``run/checkpoints/step_<n>/`` every ``--checkpoint_every`` steps, at the end and on Ctrl-C (resumed
from the newest one when it starts again with the same ``--output``), the adapter as ``run/lora/`` (diffusers /
PEFT and ComfyUI files) or the fine-tuned transformer as ``run/transformer/`` (Orbax), and, with
``--validation_prompt``, a video every ``--validation_every`` steps in ``run/validation/``.

Ctrl-C or SIGTERM lets the step under way finish; ``train`` then saves the checkpoint of the last step and stops (exit
130 / 143) without exporting; the same command resumes. Before the first step, and in ``preprocess``, nothing is left
half written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time

from absl import flags
from tqdm import tqdm

from ltx_jax import distributed, interrupts
from ltx_jax import validation as v
from ltx_jax.command_line import gnu_booleans
from ltx_jax.video import write_video

logger = logging.getLogger("ltx_jax")
FLAGS = flags.FlagValues()
flags.DEFINE_string("data", None, "preprocess: a folder of videos with captions (clip.txt or captions.jsonl); "
                    "train: the folder preprocess wrote.", flag_values=FLAGS)
flags.DEFINE_string("model", None, "The LTX-Video checkpoint (diffusers folder, Lightricks single file, Orbax).",
                    flag_values=FLAGS)
flags.DEFINE_string("output", None, "Where to write (created).", flag_values=FLAGS)
flags.DEFINE_string("text_encoder", None, "A folder with text_encoder/ and tokenizer/ (single-file --model).",
                    flag_values=FLAGS)
flags.DEFINE_string("buckets", "768x512x49", "preprocess: WxHxF sizes, comma separated (F = 8k + 1).",
                    flag_values=FLAGS)
flags.DEFINE_float("fps", 24.0, "preprocess: frame rate of the clips (RoPE's time scale).", flag_values=FLAGS)
flags.DEFINE_integer("max_sequence_length", 128, "Prompt tokens.", flag_values=FLAGS)
flags.DEFINE_enum("mode", "lora", ["lora", "full"], "train: a LoRA adapter or the whole transformer.",
                  flag_values=FLAGS)
flags.DEFINE_integer("lora_rank", 64, "train: the adapter's rank.", flag_values=FLAGS)
flags.DEFINE_float("lora_alpha", None, "train: the adapter's alpha (default: the rank).", flag_values=FLAGS)
flags.DEFINE_list("lora_targets", ["to_k", "to_q", "to_v", "to_out.0"], "train: the linears the adapter adapts.",
                  flag_values=FLAGS)
flags.DEFINE_integer("steps", 2000, "train: optimizer updates.", flag_values=FLAGS)
flags.DEFINE_float("learning_rate", 1e-4, "train: peak learning rate.", flag_values=FLAGS)
flags.DEFINE_integer("warmup_steps", 100, "train: linear warm-up updates (then cosine decay).", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 1, "train: clips per micro-batch.", flag_values=FLAGS)
flags.DEFINE_integer("gradient_accumulation_steps", 1, "train: micro-batches per update.", flag_values=FLAGS)
flags.DEFINE_float("max_grad_norm", 1.0, "train: gradient clipping (0: off).", flag_values=FLAGS)
flags.DEFINE_float("first_frame_conditioning_p", 0.1, "train: share of image-to-video batches.", flag_values=FLAGS)
flags.DEFINE_enum("sigma_sampler", "shifted_logit_normal", ["shifted_logit_normal", "uniform"],
                  "train: the noise-level distribution.", flag_values=FLAGS)
flags.DEFINE_string("dtype", None, "Compute dtype (default: bfloat16 on GPU, float32 on CPU); weights that train "
                    "stay float32.", flag_values=FLAGS)
flags.DEFINE_bool("remat", False, "train: rematerialise each block in the backward pass.", flag_values=FLAGS)
flags.DEFINE_string("remat_policy", None, "train: a jax.checkpoint_policies name for --remat.", flag_values=FLAGS)
flags.DEFINE_string("mesh", None, "train: a device mesh, e.g. data=2,fsdp=4 (ltx_jax.sharding).", flag_values=FLAGS)
flags.DEFINE_integer("checkpoint_every", 250, "train: steps between checkpoints.", flag_values=FLAGS)
flags.DEFINE_string("validation_prompt", None, "train: a prompt to render every --validation_every steps.",
                    flag_values=FLAGS)
flags.DEFINE_integer("validation_every", 500, "train: steps between validation videos.", flag_values=FLAGS)
flags.DEFINE_string("validation_size", "768x512x49", "train: WxHxF of the validation video.", flag_values=FLAGS)
flags.DEFINE_integer("validation_steps", 30, "train: denoising steps of the validation video.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the data order and of the noise.", flag_values=FLAGS)
flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=FLAGS)
flags.DEFINE_bool("compilation_cache", True, "train: use JAX's persistent compilation cache ($LTX_JAX_CACHE_DIR, "
                  "else ~/.cache/ltx_jax/jax_compilation_cache): a resumed run skips compiling its step.",
                  flag_values=FLAGS)


class UsageError(ValueError):
    pass


MAX_LORA_RANK = 4096  # the 13B model's width
MAX_BATCH = 1024


def _check_numbers() -> None:
    """Every numeric flag within its range (the generation bounds of ``ltx_jax.validation`` where they are the
    same quantity), before anything is read or loaded: one line naming the flag."""
    ints = {"max_sequence_length": (1, v.MAX_SEQUENCE_LENGTH), "lora_rank": (1, MAX_LORA_RANK),
            "steps": (1, v.MAX_STEPS), "warmup_steps": (0, v.MAX_STEPS), "batch_size": (1, MAX_BATCH),
            "gradient_accumulation_steps": (1, MAX_BATCH), "checkpoint_every": (1, v.MAX_STEPS),
            "validation_every": (1, v.MAX_STEPS), "validation_steps": (1, v.MAX_STEPS), "seed": (0, v.MAX_SEED)}
    for name, (least, most) in ints.items():
        v.check_int(f"--{name}", FLAGS[name].value, minimum=least, maximum=most)
    v.check_number("--fps", FLAGS.fps, above=0, maximum=v.MAX_FRAME_RATE)
    v.check_number("--learning_rate", FLAGS.learning_rate, above=0, maximum=1.0)
    if FLAGS.lora_alpha is not None:
        v.check_number("--lora_alpha", FLAGS.lora_alpha, above=0, maximum=float(MAX_LORA_RANK))
    v.check_number("--max_grad_norm", FLAGS.max_grad_norm, minimum=0, maximum=1e6, note=" (0: no clipping)")
    v.check_number("--first_frame_conditioning_p", FLAGS.first_frame_conditioning_p, minimum=0, maximum=1)


def _require(*names):
    missing = [f"--{n}" for n in names if not getattr(FLAGS, n)]
    if missing:
        raise UsageError(f"{' and '.join(missing)} required.")


def _dtype() -> str:
    import jax  # deferred: jax loads only after the flags are checked

    return FLAGS.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")


def preprocess_command() -> int:
    # deferred: jax loads only after the flags are checked
    from ltx_jax.pipelines import LTXPipeline
    from ltx_jax.training.data import find_clips, parse_buckets, preprocess

    _require("data", "model", "output")
    _check_numbers()
    if distributed.requested():
        raise UsageError("preprocess runs in one process (it writes a file per clip): start it without "
                         "ltx_jax.launch; train can then run over several.")
    buckets = parse_buckets(FLAGS.buckets)
    clips, _ = find_clips(FLAGS.data)  # a wrong folder fails before the model loads
    if not clips:
        raise UsageError(f"--data {FLAGS.data}: no video with a caption found.")
    pipe = LTXPipeline.from_pretrained(FLAGS.model, dtype=_dtype(), text_encoder_path=FLAGS.text_encoder,
                                       progress=False)
    interrupts.check("loading")
    try:
        result = preprocess(pipe, FLAGS.data, FLAGS.output, buckets, fps=FLAGS.fps,
                            max_sequence_length=FLAGS.max_sequence_length, seed=FLAGS.seed, progress=FLAGS.progress)
        interrupts.check("preprocessing")  # a signal during the last clip's write, which finished first
    except KeyboardInterrupt as e:  # stopped at an encoding (interrupts): each clip file is whole or absent
        print(f"{e}; the clips written to {FLAGS.output} before it are complete.", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    print(f"wrote {len(result['written'])} clips to {FLAGS.output}; skipped {len(result['skipped'])}")
    for problem in result["skipped"]:
        print(f"  skipped: {problem}")
    return 0 if result["written"] else 1


def train_command() -> int:
    # deferred: jax loads only after the flags are checked
    import jax

    from ltx_jax.training import Trainer, TrainConfig, export_lora, latest_checkpoint, restore_checkpoint
    from ltx_jax.training.checkpoint import save_checkpoint
    from ltx_jax.training.data import Loader
    from ltx_jax.training.step import lora_export_args
    from weight_conversion import load_transformer
    from weight_conversion.transformer import save_transformer_orbax

    _require("data", "model", "output")
    _check_numbers()
    if distributed.initialize() and FLAGS.validation_prompt:  # several processes (ltx_jax.launch, or a cluster)
        raise UsageError("--validation_prompt renders on one process; with several, render the exported adapter or "
                         "transformer afterwards.")
    main = distributed.is_main()  # the others stay quiet and write only their shards of the checkpoints
    if FLAGS.compilation_cache:  # a process-wide JAX setting: this command's choice (--nocompilation_cache)
        # deferred: jax loads only after the flags are checked
        from ltx_jax.compilation_cache import enable_compilation_cache

        enable_compilation_cache()
    dtype = _dtype()
    loader = Loader(FLAGS.data, FLAGS.batch_size, seed=FLAGS.seed)  # no data: fails before the model loads
    # RoPE's scale follows the VAE that encoded the data (the releases' where the samples do not show it)
    vae_ratios = {name: ratio for name, ratio in zip(("vae_temporal_ratio", "vae_spatial_ratio"), loader.vae_ratios)
                  if ratio is not None}
    config = TrainConfig(mode=FLAGS.mode, lora_rank=FLAGS.lora_rank, lora_alpha=FLAGS.lora_alpha or FLAGS.lora_rank,
                         lora_targets=tuple(FLAGS.lora_targets), learning_rate=FLAGS.learning_rate,
                         warmup_steps=min(FLAGS.warmup_steps, FLAGS.steps), steps=FLAGS.steps,
                         max_grad_norm=FLAGS.max_grad_norm,
                         gradient_accumulation_steps=FLAGS.gradient_accumulation_steps,
                         sigma_sampler=FLAGS.sigma_sampler, first_frame_conditioning_p=FLAGS.first_frame_conditioning_p,
                         compute_dtype=dtype, remat=FLAGS.remat, remat_policy=FLAGS.remat_policy, **vae_ratios)
    resume = latest_checkpoint(FLAGS.output)
    if resume:
        _check_resumable(resume, config)
    module, params = load_transformer(FLAGS.model, dtype if config.mode == "lora" else "float32")
    trainer = Trainer.create(module, params, config, jax.random.PRNGKey(FLAGS.seed), mesh=FLAGS.mesh)
    del params
    state = trainer.init_state()
    if resume:
        state = restore_checkpoint(resume, state)
        if main:
            print(f"resumed from {resume}")
    micro_total = config.steps * config.gradient_accumulation_steps
    start = int(jax.device_get(state.step))
    validation = _Validation(trainer, dtype) if FLAGS.validation_prompt else None
    if validation and config.mode == "full" and FLAGS.mesh:
        raise UsageError("--validation_prompt with --mode full and --mesh: render the saved transformer instead.")
    interrupts.check("loading")  # before the first step nothing is written
    bar = tqdm(total=micro_total, initial=start, disable=not (FLAGS.progress and main), unit="step", desc="training")
    log = _MetricsLog(FLAGS.output) if main else None
    began, step, previous, stopped = time.perf_counter(), start, None, None
    try:
        batches = loader.batches(start)
        # A signal only records a request (interrupts), read here between steps: ``state`` is always the one the
        # last step returned, never the one it was given (donated, so deleted).
        # the step count on the host; several processes stop at the same step, whichever was asked
        while step < micro_total and (stopped := interrupts.agreed()) is None:
            state, metrics = trainer.step(state, next(batches))
            step += 1
            bar.update(1)
            if previous is not None:  # the step before's loss: this one stays queued behind it while we read
                bar.set_postfix(loss=f"{float(previous[1]['loss']):.4f}",
                                steps_per_s=f"{(step - start) / (time.perf_counter() - began):.2f}")
                if log:
                    log.write(*previous)
            previous = step, metrics
            if step % (FLAGS.checkpoint_every * config.gradient_accumulation_steps) == 0:
                save_checkpoint(FLAGS.output, state, config)
            if validation and step % (FLAGS.validation_every * config.gradient_accumulation_steps) == 0:
                validation.render(state, step)
    except KeyboardInterrupt as e:  # the validation video, stopped by the same request (interrupts.Interrupted)
        stopped = getattr(e, "signum", signal.SIGINT)
    finally:
        bar.close()
        if log and previous is not None:
            log.write(*previous)
        path = save_checkpoint(FLAGS.output, state, config)  # nothing trained is lost, interrupted or not
    step = int(jax.device_get(state.step))
    stopped = stopped or interrupts.requested()  # also a signal during the last step or the save
    if stopped is not None:  # the checkpoint is what counts now; the same command resumes (and exports)
        if main:
            print(f"{interrupts.describe(stopped)}: stopped at step {step}; checkpoint {path} (run the same command "
                  "to resume)", file=sys.stderr)
        return 128 + stopped
    if config.mode == "lora":
        if not main:  # the adapter is replicated: process 0 writes it
            return 0
        for fmt in ("diffusers", "comfyui"):
            name = "pytorch_lora_weights.safetensors" if fmt == "diffusers" else "lora_comfyui.safetensors"
            export_lora(state.trainable, trainer.lora_fixed, os.path.join(FLAGS.output, "lora", name), format=fmt,
                        **lora_export_args(config))
        print(f"step {step}: checkpoint {path}; LoRA in {os.path.join(FLAGS.output, 'lora')}")
    else:
        target = os.path.join(FLAGS.output, "transformer")
        if os.path.exists(target) and main:
            shutil.rmtree(target)
        distributed.barrier("old transformer removed")
        save_transformer_orbax(module.clone(dtype="float32", param_dtype="float32"), state.trainable, target)
        if main:
            print(f"step {step}: checkpoint {path}; transformer in {target}")
    return 0


class _MetricsLog:
    """``output/metrics.jsonl``: a line per step ({"step", "loss", "grad_norm"}), appended as the run goes (a resumed
    run goes on from its checkpoint's step)."""

    def __init__(self, output: str):
        os.makedirs(output, exist_ok=True)
        self.path = os.path.join(output, "metrics.jsonl")

    def write(self, step: int, metrics: dict) -> None:
        record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


# What a checkpoint's weights and optimizer state are shaped by: a resumed run must agree on these.
SHAPING = ("mode", "lora_rank", "lora_targets", "gradient_accumulation_steps")


def _check_resumable(path: str, config) -> None:
    from ltx_jax.training.checkpoint import read_run  # deferred: jax loads only after the flags are checked

    saved = read_run(path)["config"]
    differ = [f"--{k} {saved[k]!r} there, {getattr(config, k)!r} now" for k in SHAPING
              if k in saved and (tuple(saved[k]) if isinstance(saved[k], list) else saved[k]) != getattr(config, k)]
    if differ:
        raise UsageError(f"--output {FLAGS.output} holds a run with other settings ({'; '.join(differ)}): pass the "
                         "same ones to resume it, or another --output.")


class _Validation:
    """Renders ``--validation_prompt`` with the weights being trained."""

    def __init__(self, trainer, dtype: str):
        # deferred: jax loads only after the flags are checked
        from ltx_jax.pipelines import LTXPipeline
        from ltx_jax.training.data import Bucket

        self.trainer = trainer
        self.size = Bucket.parse(FLAGS.validation_size)
        self.pipe = LTXPipeline.from_pretrained(FLAGS.model, dtype=dtype, text_encoder_path=FLAGS.text_encoder,
                                                progress=False)

    def render(self, state, step: int) -> None:
        # deferred: jax loads only after the flags are checked
        import jax
        import jax.numpy as jnp

        from ltx_jax.training import export_lora
        from ltx_jax.training.step import lora_export_args

        pipe, config = self.pipe, self.trainer.config
        pipe.unload_lora_weights()
        if config.mode == "lora":
            file = export_lora(state.trainable, self.trainer.lora_fixed,
                               os.path.join(FLAGS.output, "validation", f"lora_{step}.safetensors"),
                               **lora_export_args(config))
            pipe.load_lora_weights(file, adapter_name="training")
        else:
            pipe.transformer_params = jax.tree_util.tree_map(lambda x: x.astype(jnp.dtype(pipe.transformer.dtype)),
                                                             state.trainable)
        frames = pipe(prompt=FLAGS.validation_prompt, seed=FLAGS.seed, width=self.size.width, height=self.size.height,
                      num_frames=self.size.frames, num_inference_steps=FLAGS.validation_steps)
        write_video(frames[0], os.path.join(FLAGS.output, "validation", f"step_{step}.mp4"), overwrite=True)


COMMANDS = {"preprocess": preprocess_command, "train": train_command}


def main(argv: list[str]) -> int:
    """``argv``: [program, command, flags...]; returns the exit code."""
    if any(a in ("-h", "--help", "--helpfull") for a in argv[2:]):
        print(__doc__.strip() + "\n\nflags:\n" + FLAGS.get_help())
        return 0
    try:
        FLAGS.unparse_flags()
        rest = FLAGS(gnu_booleans([argv[0]] + argv[2:], FLAGS))
        if rest[1:]:
            raise UsageError(f"unexpected arguments {' '.join(rest[1:])}")
        return COMMANDS[argv[1]]()
    except (flags.Error, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

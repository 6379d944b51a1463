"""Command line: ``python -m weight_conversion convert SRC DST [--component transformer] [--dtype bfloat16]
[--weights int8|fp8] [--overwrite] [--debug]``.

Reads SRC (a diffusers folder, a Lightricks single file, an Orbax folder) and writes an Orbax checkpoint to DST that
the ``load_*`` functions read back directly (``--weights``: the transformer's or T5's block kernels quantized).

Every argument is checked before any weight is read (SRC exists and holds the component's config, DST does not exist
unless ``--overwrite``, its folder is writable); a mistake prints one line, ``error: ...``, and exits with 2; a
failure while converting or writing (a full disk) exits with 1, and ``--debug`` prints its traceback. DST is written
into a temporary folder beside it and renamed into place once complete, so a failed or interrupted run leaves nothing
that blocks the next one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import traceback

import jax
import jax.numpy as jnp

from ltx_jax.configs import T5Config
from ltx_jax.files import check_creatable, check_free_space
from weight_conversion import latent_upsampler, ltx2_audio, t5, transformer, vae
from weight_conversion.common import folder_config, read_config

COMPONENTS = ("transformer", "vae", "text_encoder", "latent_upsampler", "audio_vae", "vocoder")
QUANTIZABLE = ("transformer", "text_encoder")


def _functions(component: str):
    """(read the config, load, save) of a component, looked up when called."""
    return {
        "transformer": (transformer.read_transformer_config, transformer.load_transformer,
                        transformer.save_transformer_orbax),
        "text_encoder": (_read_text_encoder_config, t5.load_text_encoder, t5.save_text_encoder_orbax),
        "vae": (vae.read_vae_config, vae.load_vae, vae.save_vae_orbax),
        "latent_upsampler": (latent_upsampler.read_latent_upsampler_config, latent_upsampler.load_latent_upsampler,
                             latent_upsampler.save_latent_upsampler_orbax),
        # LTX-2's (its transformer, video VAE and upsamplers go through the entries above, by their config)
        "audio_vae": (ltx2_audio.read_audio_vae_config, ltx2_audio.load_audio_vae, ltx2_audio.save_audio_vae_orbax),
        "vocoder": (ltx2_audio.read_vocoder_config, ltx2_audio.load_vocoder, ltx2_audio.save_vocoder_orbax),
    }[component]


def _read_text_encoder_config(path: str):
    """T5's config without its weights: the Orbax marker or the folder's config.json (T5 has no single-file form)."""
    return read_config(path, "text_encoder", T5Config, "transformers text_encoder",
                       lambda _, file: folder_config(os.path.dirname(os.path.abspath(file)), T5Config,
                                                     "transformers text_encoder"))


def check_arguments(args) -> None:
    """Every check that needs no weights, before any is read; raises ValueError (one line)."""
    src, dst = os.fspath(args.src), os.fspath(args.dst)
    if not os.path.exists(src):
        raise ValueError(f"{src} does not exist; pass a diffusers folder, a Lightricks .safetensors file or an Orbax "
                         "folder.")
    if args.weights is not None and args.component not in QUANTIZABLE:
        raise ValueError(f"--weights applies to the transformer and the text_encoder, not the {args.component}.")
    if os.path.lexists(dst):
        if not args.overwrite:
            raise ValueError(f"{dst} already exists; choose a new destination, or replace it with --overwrite.")
        if os.path.exists(dst) and os.path.realpath(dst) in (os.path.realpath(src),
                                                             os.path.dirname(os.path.realpath(src))):
            raise ValueError(f"{dst} holds the source {src}; write the conversion somewhere else.")
    check_creatable(dst, advice="choose another destination")
    read_config = _functions(args.component)[0]
    read_config(src)  # the checkpoint's config (its header only for a single file): a wrong path fails here


def _convert(args) -> int:
    check_arguments(args)
    _, load, save = _functions(args.component)
    kwargs = {} if args.weights is None else {"weights": args.weights}
    start = time.perf_counter()
    module, params = load(args.src, dtype=jnp.dtype(args.dtype), **kwargs)
    loaded = time.perf_counter()
    check_free_space(args.dst, sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(params)))
    save(module, params, args.dst, overwrite=args.overwrite)
    weights = f", {args.weights} weights" if args.weights else ""
    print(f"converted {args.component} {args.src} -> {args.dst} ({args.dtype}{weights}): "
          f"load {loaded - start:.1f} s, write {time.perf_counter() - loaded:.1f} s")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m weight_conversion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert", help="safetensors checkpoint -> Orbax checkpoint")
    convert.add_argument("src", help="diffusers folder, Lightricks single .safetensors file, or Orbax folder")
    convert.add_argument("dst", help="new directory for the Orbax checkpoint")
    convert.add_argument("--component", default="transformer", choices=list(COMPONENTS))
    convert.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    convert.add_argument("--weights", default=None, choices=["int8", "fp8"],
                         help="store the block kernels in int8 / fp8 (e4m3) with per-output-channel scales")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace an existing DST (once the new checkpoint is complete)")
    convert.add_argument("--debug", action="store_true", help="print the traceback of an error")
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that the temporary checkpoint is removed as for Ctrl-C."""

    signum = signal.SIGTERM


def _raise_terminated(signum, frame):
    raise _Terminated("terminated (SIGTERM)")


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax logs a failed background write (a full disk) as several tracebacks before raising it, and its writes
    still in flight report "Event loop is closed": the raised error is the one line we print (--debug keeps them)."""
    logger = logging.getLogger("absl")
    level, hook = logger.level, sys.unraisablehook

    def unraisable(report):
        if not (isinstance(report.exc_value, RuntimeError) and str(report.exc_value) == "Event loop is closed"):
            hook(report)

    logger.setLevel(logging.CRITICAL)
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        logger.setLevel(level)
        sys.unraisablehook = hook


def main(argv=None) -> int:
    """Runs the command line on ``argv`` (``sys.argv[1:]`` when None); returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and its one-line error (or --help)
        return e.code if isinstance(e.code, int) else 2
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        with contextlib.nullcontext() if args.debug else _quiet_orbax():
            return _convert(args)
    except KeyboardInterrupt as e:
        print(f"{str(e) or 'interrupted'}; nothing was written.", file=sys.stderr, flush=True)
        return 128 + getattr(e, "signum", signal.SIGINT)
    except Exception as e:  # noqa: BLE001 - every error ends in one line; --debug shows where it came from
        if args.debug:
            traceback.print_exc()
        user_error = isinstance(e, ValueError)  # CheckpointError included: a wrong path or file
        if not user_error and not isinstance(e, OSError):
            raise  # a bug of ours: the whole traceback
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2 if user_error else 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())

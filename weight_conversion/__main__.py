"""Command line: ``python -m weight_conversion convert SRC DST [--component transformer] [--dtype bfloat16]
[--weights int8|fp8]``.

Reads SRC (a diffusers folder, a Lightricks single file) and writes an Orbax checkpoint to DST that the
``load_*`` functions read back directly (``--weights``: the transformer's or T5's block kernels quantized).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax.numpy as jnp


def _convert(args) -> int:
    from weight_conversion import latent_upsampler, t5, transformer, vae

    loaders = {
        "transformer": (transformer.load_transformer, transformer.save_transformer_orbax),
        "text_encoder": (t5.load_text_encoder, t5.save_text_encoder_orbax),
        "vae": (vae.load_vae, vae.save_vae_orbax),
        "latent_upsampler": (latent_upsampler.load_latent_upsampler, latent_upsampler.save_latent_upsampler_orbax),
    }
    load, save = loaders[args.component]
    kwargs = {}
    if args.weights is not None:
        if args.component not in ("transformer", "text_encoder"):
            raise SystemExit(f"--weights applies to the transformer and the text_encoder, not the {args.component}.")
        kwargs["weights"] = args.weights
    start = time.perf_counter()
    module, params = load(args.src, dtype=jnp.dtype(args.dtype), **kwargs)
    loaded = time.perf_counter()
    save(module, params, args.dst)
    weights = f", {args.weights} weights" if args.weights else ""
    print(f"converted {args.component} {args.src} -> {args.dst} ({args.dtype}{weights}): "
          f"load {loaded - start:.1f} s, write {time.perf_counter() - loaded:.1f} s")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weight_conversion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert", help="safetensors checkpoint -> Orbax checkpoint")
    convert.add_argument("src", help="diffusers folder or Lightricks single .safetensors file")
    convert.add_argument("dst", help="new directory for the Orbax checkpoint")
    convert.add_argument("--component", default="transformer",
                         choices=["transformer", "vae", "text_encoder", "latent_upsampler"])
    convert.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    convert.add_argument("--weights", default=None, choices=["int8", "fp8"],
                         help="store the block kernels in int8 / fp8 (e4m3) with per-output-channel scales")
    args = parser.parse_args(argv)
    return _convert(args)


if __name__ == "__main__":
    sys.exit(main())

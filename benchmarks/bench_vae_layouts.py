"""The VAE decode's tile layouts on the CPU: whole, diffusers' tiles, uniform tiles (``models/vae_tiling.py``).

The released 0.9.5 VAE (random weights, float32) decodes 4x8x12 latents (25 x 256 x 384 frames) with 192-pixel tiles
every 128 pixels, diffusers' 16-frame temporal tiles every 8 frames: the geometry of 121x512x768 with the default
tiles, at a size two CPU cores decode in under a minute. Per layout: lowering and compile seconds, the fastest of two
runs after a warm-up, the convolutions in the lowered program (all, and distinct operand shapes: one compiled
decoder each, and on a GPU one autotuning each), the compiled temporaries, and the max difference to the whole
decode relative to its max (random weights: every tiling is far from the whole decode).

Usage, from the repository root:
    python -m benchmarks.bench_vae_layouts [--layouts whole,diffusers,uniform] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.models import init_params
from ltx_jax.models.vae import AutoencoderKLLTXVideo, VAETiling
from ltx_jax.releases import VAE_PRESETS

TILES = dict(tile_sample_min_height=192, tile_sample_min_width=192, tile_sample_stride_height=128,
             tile_sample_stride_width=128)
LAYOUTS = {"whole": None, "diffusers": VAETiling(**TILES),
           "uniform": VAETiling(**TILES, temporal=False, layout="uniform"),
           "uniform_temporal": VAETiling(**TILES, layout="uniform")}


def convolutions(text: str) -> tuple[int, int]:
    """(convolutions, distinct operand shapes) in a lowered program's StableHLO text."""
    shapes = re.findall(r"stablehlo.convolution\(.* : \((.*?)\) ->", text)
    return len(shapes), len(set(shapes))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="whole,diffusers,uniform")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    cfg = VAE_PRESETS["ltx-video-0.9.5"]
    vae = AutoencoderKLLTXVideo(cfg)
    params = jax.jit(lambda: init_params(vae, jax.random.PRNGKey(0)))()
    z = jnp.asarray(np.random.default_rng(0).standard_normal((1, 4, 8, 12, cfg.latent_channels)), jnp.float32)
    t = jnp.full((1,), 0.05, jnp.float32)
    out, whole = {}, None
    for name in args.layouts.split(","):
        tiling = LAYOUTS[name]
        fn = jax.jit(lambda p, z, tiling=tiling: vae.apply({"params": p}, z, t, method="decode", tiling=tiling))
        start = time.perf_counter()
        lowered = fn.lower(params, z)
        lower_s = time.perf_counter() - start
        start = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start
        compiled(params, z).block_until_ready()
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            video = compiled(params, z).block_until_ready()
            runs.append(time.perf_counter() - start)
        video = np.asarray(video)
        assert np.isfinite(video).all(), name
        whole = video if whole is None and tiling is None else whole
        convs, shapes = convolutions(lowered.as_text())
        out[name] = dict(lower_s=round(lower_s, 2), compile_s=round(compile_s, 2), run_s=round(min(runs), 2),
                         convolutions=convs, conv_shapes=shapes,
                         temp_mb=round(compiled.memory_analysis().temp_size_in_bytes / 1e6),
                         max_rel_vs_whole=None if whole is None else
                         round(float(np.abs(video - whole).max() / np.abs(whole).max()), 4))
        print(name, out[name], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()

"""Stage-by-stage time of full generations (text-, image- and keyframe-to-video), and start-up with the persistent
compilation cache.

    python -m benchmarks.bench_pipeline                 # CPU default: tiny components, against diffusers, same run
    python -m benchmarks.bench_pipeline --size 2b       # GPU default: 2B transformer + 0.9.5 VAE + T5-XXL, random
                                                        # weights, bf16, 768x512x121, 8 distilled steps
    python -m benchmarks.bench_pipeline --modes image   # only image-to-video

(from the repository root)

Modes: ``text`` (LTXPipeline), ``image`` (LTXImageToVideoPipeline: one image at frame 0), ``keyframes``
(LTXConditionPipeline: an image at frame 0 and one at the last frame's latent, strength 1). Reports, for each mode
and our pipeline: the first call (compiles) and the median of later calls, split into stages (text encoding, VAE
encoding of the conditions, denoising, decoding; each stage blocks on its result); with the tiny size, diffusers'
pipeline of the same mode on the same weights and inputs in the same run (median total) and the ratio.
``--startup`` runs two fresh processes that share an empty compilation cache and reports each one's time from process
start to finished frames (text-to-video): the second should skip compilation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PROCESS_START = time.perf_counter()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.timing import write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # --startup children run from here, with -m
PROMPT = "A red fox trots through fresh snow in a pine forest, morning light, the camera tracking alongside."


def build_tiny(dtype: str, with_torch: bool):
    """Our tiny-random pipeline; with_torch: diffusers' pipeline over the same weights (saved and reloaded)."""
    from ltx_jax.tiny_random import tiny_random_pipeline

    if not with_torch:
        return tiny_random_pipeline(dtype=dtype, progress=False), None
    # deferred: torch, diffusers and transformers (the reference) are optional, loaded only where used
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline as TorchPipeline
    from diffusers import LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from ltx_jax.pipelines import LTXPipeline, write_model_index
    from ltx_jax.releases import LTX_SCHEDULER
    from ltx_jax.text_encoding import load_tokenizer
    from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER, TINY_VAE, write_tiny_tokenizer

    torch.manual_seed(0)
    folder = tempfile.mkdtemp(prefix="ltx_bench_")
    transformer = LTXVideoTransformer3DModel(**dataclasses.asdict(TINY_TRANSFORMER)).eval()
    vae = AutoencoderKLLTXVideo(**dataclasses.asdict(TINY_VAE)).eval()
    t5 = T5EncoderModel(T5Config(**dataclasses.asdict(TINY_T5))).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(LTX_SCHEDULER))
    for name, part in (("transformer", transformer), ("vae", vae), ("text_encoder", t5), ("scheduler", scheduler)):
        part.save_pretrained(os.path.join(folder, name))
    write_tiny_tokenizer(os.path.join(folder, "tokenizer"))
    write_model_index(folder)
    ours = LTXPipeline.from_pretrained(folder, dtype=dtype, compilation_cache=False, progress=False)
    theirs = TorchPipeline(scheduler=scheduler, vae=vae, text_encoder=t5, tokenizer=load_tokenizer(folder),
                           transformer=transformer)
    theirs.set_progress_bar_config(disable=True)
    # deferred: diffusers (the reference) is optional, loaded only where used
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the condition pipeline's "timesteps without sigmas" notice
    return ours, theirs


def build_2b(dtype: str):
    """2B transformer + 0.9.5 VAE + T5-XXL with random weights made on the device (no host copy)."""
    from ltx_jax.models import init_params
    from ltx_jax.models.t5 import T5EncoderModel
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel
    from ltx_jax.models.vae import AutoencoderKLLTXVideo
    from ltx_jax.pipelines import LTXPipeline
    from ltx_jax.releases import RELEASES, T5_PRESETS
    from ltx_jax.text_encoding import PromptEncoder
    from ltx_jax.tiny_random import tiny_tokenizer

    dt = jnp.dtype(dtype)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    release = RELEASES["ltx-video-0.9.8-2b-distilled"]
    transformer = LTXVideoTransformer3DModel(release.transformer, dtype=dt, param_dtype=dt)
    vae = AutoencoderKLLTXVideo(release.vae, dtype=dt, param_dtype=dt)
    t5 = T5EncoderModel(T5_PRESETS["t5-v1_1-xxl"], dtype=dt, param_dtype=dt)
    prompt_encoder = PromptEncoder(tiny_tokenizer(), t5, init_params(t5, keys[2]))
    return LTXPipeline(transformer, init_params(transformer, keys[0]), vae, init_params(vae, keys[1]), prompt_encoder,
                       release=release, progress=False)


MODES = ("text", "image", "keyframes")


def mode_inputs(args) -> dict:
    """The images each mode is conditioned on (the same on both sides): random RGB PIL images at the video's size."""
    # deferred: Pillow is optional, loaded only where used
    import PIL.Image

    rng = np.random.default_rng(0)
    first, last = (PIL.Image.fromarray(rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8))
                   for _ in range(2))
    return {"image": first, "keyframes": [(first, 0), (last, args.num_frames - 1)]}


def mode_pipelines(ours) -> dict:
    """Our pipeline of each mode, over the same components."""
    from ltx_jax.pipelines import LTXConditionPipeline, LTXImageToVideoPipeline

    return {"text": ours, "image": LTXImageToVideoPipeline.from_pipe(ours),
            "keyframes": LTXConditionPipeline.from_pipe(ours)}


def run_ours(pipe, args, seed, mode: str = "text", inputs: dict | None = None):
    from ltx_jax.pipelines import LTXVideoCondition

    kw = dict(prompt=PROMPT, height=args.height, width=args.width, num_frames=args.num_frames,
              num_inference_steps=None if args.distilled else args.steps, seed=seed,
              guidance_scale=1.0 if args.distilled else args.guidance)
    if mode == "image":
        return pipe(image=inputs["image"], **kw)
    if mode == "keyframes":
        return pipe(conditions=[LTXVideoCondition(image=im, frame_index=k) for im, k in inputs["keyframes"]], **kw)
    return pipe(**kw)


def run_theirs(theirs, args, mode: str, inputs: dict):
    """diffusers' pipeline of the mode over the same components (the condition pipeline on a static-shift scheduler:
    it sets explicit timesteps, which a dynamic shift refuses)."""
    # deferred: diffusers (the reference) is optional, loaded only where used
    import dataclasses as dc

    from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline, LTXImageToVideoPipeline
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    from ltx_jax.releases import LTX_SCHEDULER_STATIC

    kw = dict(prompt=PROMPT, height=args.height, width=args.width, num_frames=args.num_frames,
              num_inference_steps=args.steps, guidance_scale=args.guidance, decode_timestep=0.05, output_type="np")
    if mode == "text":
        return theirs(**kw)
    if mode == "image":
        pipe = LTXImageToVideoPipeline(**theirs.components)
        kw["image"] = inputs["image"]
    else:
        pipe = LTXConditionPipeline(**{**theirs.components,
                                       "scheduler": FlowMatchEulerDiscreteScheduler(**dc.asdict(LTX_SCHEDULER_STATIC))})
        kw["conditions"] = [LTXVideoCondition(image=im, frame_index=k) for im, k in inputs["keyframes"]]
    pipe.set_progress_bar_config(disable=True)
    return pipe(**kw)


def measure(pipe, theirs, args, mode: str, inputs: dict) -> dict:
    """First call and median stage times of ours; diffusers' median total in the same run when ``theirs``."""
    t = time.perf_counter()
    frames = run_ours(pipe, args, 0, mode, inputs)
    first = time.perf_counter() - t
    if not np.isfinite(frames).all():
        raise RuntimeError(f"non-finite frames ({mode})")
    first_stages = pipe.last_timings.as_dict()
    stages = []
    for i in range(args.repeats):
        run_ours(pipe, args, i + 1, mode, inputs)
        stages.append(pipe.last_timings.as_dict())
    median = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
    row = {"mode": mode, "first_call_s": first, "first_call_stages": first_stages, "median_stages": median}
    print(f"[{mode}] {'stage':<16} {'first call s':>13} {'median s':>10}")
    for k in median:
        print(f"[{mode}] {k:<16} {first_stages[k]:>13.3f} {median[k]:>10.3f}")
    if theirs is not None:
        # deferred: torch (the reference) is optional, loaded only where used
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        with torch.no_grad():
            run_theirs(theirs, args, mode, inputs)  # warm-up
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                run_theirs(theirs, args, mode, inputs)
                times.append(time.perf_counter() - t)
        torch_total = statistics.median(times)
        row.update({"torch_total_s": torch_total, "ratio": median["total"] / torch_total})
        print(f"[{mode}] diffusers total (median) {torch_total:.3f} s; ours / diffusers = "
              f"{median['total'] / torch_total:.2f}")
    return row


def startup_child(args) -> int:
    """One process: build, generate once, print the seconds since process start as JSON."""
    from ltx_jax.pipelines import enable_compilation_cache

    enable_compilation_cache(args.cache_dir)
    pipe = build_2b(args.dtype) if args.size == "2b" else build_tiny(args.dtype, with_torch=False)[0]
    frames = run_ours(pipe, args, seed=0)
    assert np.isfinite(frames).all()
    print(json.dumps({"startup_to_frames_s": time.perf_counter() - PROCESS_START,
                      "stages": pipe.last_timings.as_dict()}))
    return 0


def main(argv=None) -> int:
    on_gpu = jax.default_backend() == "gpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2b" if on_gpu else "tiny", choices=["tiny", "2b"])
    parser.add_argument("--dtype", default="bfloat16" if on_gpu else "float32", choices=["float32", "bfloat16"])
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--num-frames", type=int, default=None)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--distilled", action=argparse.BooleanOptionalAction, default=None,
                        help="distilled timesteps without guidance (default for --size 2b)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--compare-torch", action=argparse.BooleanOptionalAction, default=None,
                        help="diffusers on the same weights (default on for --size tiny)")
    parser.add_argument("--startup", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--startup-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    big = args.size == "2b"
    args.height = args.height or (512 if big else 64)
    args.width = args.width or (768 if big else 96)
    args.num_frames = args.num_frames or (121 if big else 17)
    args.distilled = big if args.distilled is None else args.distilled
    if args.startup_child:
        return startup_child(args)
    compare = (not big) if args.compare_torch is None else args.compare_torch
    if compare and big:
        raise SystemExit("--compare-torch is implemented for --size tiny (diffusers on the same tiny weights).")

    device = jax.devices()[0].device_kind
    print(
        f"device: {device} ({jax.default_backend()}), jax {jax.__version__}; size {args.size}, {args.dtype}, "
        f"{args.width}x{args.height}x{args.num_frames}, "
        f"{'distilled timesteps, no guidance' if args.distilled else f'{args.steps} steps, guidance {args.guidance}'}")
    ours, theirs = (build_2b(args.dtype), None) if big else build_tiny(args.dtype, with_torch=compare)

    results = {"device": device, "size": args.size, "dtype": args.dtype,
               "video": [args.num_frames, args.height, args.width], "modes": {}}
    pipes, inputs = mode_pipelines(ours), mode_inputs(args)
    for mode in args.modes.split(","):
        if mode not in MODES:
            raise SystemExit(f"unknown mode {mode!r}; use {', '.join(MODES)}")
        results["modes"][mode] = measure(pipes[mode], theirs, args, mode, inputs)

    if args.startup:
        cache = tempfile.mkdtemp(prefix="ltx_jax_cache_")
        child = [sys.executable, "-m", "benchmarks.bench_pipeline", "--startup-child", "--cache-dir", cache,
                 "--size", args.size, "--dtype", args.dtype, "--height", str(args.height), "--width", str(args.width),
                 "--num-frames", str(args.num_frames), "--steps", str(args.steps), "--guidance", str(args.guidance),
                 "--distilled" if args.distilled else "--no-distilled"]
        runs = []
        for _ in range(2):
            out = subprocess.run(child, capture_output=True, text=True, check=True, cwd=ROOT)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1])["startup_to_frames_s"])
        results["startup_s"] = {"first_process": runs[0], "second_process": runs[1]}
        print(f"process start -> frames: first process {runs[0]:.2f} s, second process (warm compilation cache) "
              f"{runs[1]:.2f} s")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

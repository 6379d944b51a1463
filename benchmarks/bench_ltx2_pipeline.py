"""End-to-end benchmark of LTX-2 text to video with sound (``LTX2Pipeline``) and of the two-stage recipe
(``LTX2TwoStagePipeline``) with random weights, optionally against diffusers' ``LTX2Pipeline`` on the same card.

    python -m benchmarks.bench_ltx2_pipeline                    # GPU: the 19B distilled release with Gemma 3 12B,
                                                                # bf16, 768x512x121 and 1536x1024x121 (stage 1 at
                                                                # 768x512), 1024 prompt tokens
    python -m benchmarks.bench_ltx2_pipeline --compare-torch    # + diffusers' LTX2Pipeline, same configs, bf16
    python -m benchmarks.bench_ltx2_pipeline --parts t2v --repeats 5
    python -m benchmarks.run_all --sections ltx2_pipeline       # the same through run_all (table, budget, goals)

(from the repository root; on a CPU the defaults are ``--release tiny``: ltx_jax.tiny_random_ltx2's configs, float32,
64x64x9 and 128x128x9, 64 prompt tokens)

The recipe is the distilled release's, without guidance (one forward per step, as Lightricks run it): ``--parts t2v``
is text to video with sound, 8 steps on the distilled sigmas, guidance 1, STG 0 and modality 1 for both modalities;
``two_stage`` is ``LTX2TwoStagePipeline`` at the final size: stage 1 at half the size (the same 8 steps, latents
out), the x2 latent upsampler, stage 2 at full size (3 steps from the release's stage-2 sigmas, re-noised at the
first), decoded. diffusers' side of the two-stage recipe is its documented composition: ``LTX2Pipeline
(output_type="latent")`` -> ``LTX2LatentUpsamplePipeline`` -> ``LTX2Pipeline`` (prompt embeddings encoded once).

Weights: every module is built as the loaders build it (``abstract_ltx2.ltx2_modules``: the dense factory, params and
compute in ``--dtype``) and its random params are its own init, jitted, on the device (``ltx_jax.models.init_params``):
a 19B bf16 model never passes through a float32 host copy. Before any is made, their bytes (``abstract_params``:
shapes only) are checked against the device's free memory: a device that cannot hold them fails in one line
(``DeviceTooSmall``). diffusers' modules are built at the same configs on the card in the run dtype (torch's default
init); its Gemma 3 has a tiny SigLIP vision tower (text prompts never run it).

What it reports, per part: the first call (compiling and running once; its own figure) and the median of
``--repeats`` later calls (new seeds), stage by stage from ``last_timings`` (each stage blocks on its result; frames
and waveform end on the host and are checked finite): text to video: text encoding, denoising + decoding, total;
two-stage: stage 1 (text encoding + denoising), stage 1's denoising alone, upsampling, stage 2 (denoising +
decoding), total. Transformer FLOPs per step (``bench_ltx2_transformer.ltx2_forward_flops``: every matmul of one
forward, text padding included; ours computes the text's keys and values once per call, so its figure is slightly
high) times the steps, and the achieved TFLOP/s; peak device memory where the backend reports it. With
``--compare-torch``, diffusers' first call and median on the same card and sizes (CUDA synchronised), and ours /
diffusers. diffusers runs first, then frees the card: JAX keeps what it allocates, and each side's weights alone take
most of an H200 at full size.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_ltx2_transformer import ltx2_forward_flops
from benchmarks.timing import write_json
from ltx_jax.configs_ltx2 import LTX2LatentUpsamplerConfig
from ltx_jax.models import abstract_params, count_params, init_params
from ltx_jax.models.ltx2 import LTX2LatentUpsampler
from ltx_jax.pipelines.abstract_ltx2 import LTX2Configs, assemble_ltx2_pipeline, ltx2_modules
from ltx_jax.pipelines.ltx2 import LTX2Pipeline
from ltx_jax.pipelines.ltx2_latent_upsample import LTX2LatentUpsamplePipeline
from ltx_jax.pipelines.ltx2_latents import ltx2_grid
from ltx_jax.pipelines.ltx2_two_stage import NO_GUIDANCE, LTX2TwoStagePipeline
from ltx_jax.releases_ltx2 import LTX2_LATENT_UPSAMPLER_PRESETS, LTX2_RELEASES
from ltx_jax.tiny_random_ltx2 import TINY_LTX2_CONFIGS, tiny_gemma_tokenizer

PROMPT = "A red fox trots through fresh snow in a pine forest, morning light, the camera tracking alongside."
FRAME_RATE = 24.0
#: The recipe of every size: the distilled release's sigmas (without the final 0), 8 then 3 steps.
RECIPE = LTX2_RELEASES["ltx-2-19b-distilled"].defaults
STAGE_1_SIGMAS = tuple(float(s) for s in RECIPE.sigmas if s > 0)
STAGE_2_SIGMAS = tuple(float(s) for s in RECIPE.stage_2_sigmas if s > 0)
#: The "tiny" upsampler: x2 spatial (the rational resampler, as the releases') at the tiny VAE's 8 channels.
TINY_UPSAMPLER = LTX2LatentUpsamplerConfig(in_channels=8, mid_channels=32, num_blocks_per_stage=1)
DEFAULTS = {  # per backend: what the command line runs without flags
    "gpu": dict(release="ltx-2-19b-distilled", upsampler="ltx-2-spatial-upscaler-x2-1.0.safetensors",
                dtype="bfloat16", video="512x768x121", two_stage_video="1024x1536x121", text_tokens=1024),
    "cpu": dict(release="tiny", upsampler="tiny", dtype="float32", video="64x64x9", two_stage_video="128x128x9",
                text_tokens=64),
}
PARTS = ("t2v", "two_stage")
#: The stages each part reports (``last_timings``' names; "stage_1_denoising" is the first stage's denoising alone).
STAGES = {"t2v": ("text_encoding", "denoise_decode", "total"),
          "two_stage": ("stage_1", "stage_1_denoising", "upsampling", "stage_2", "total")}


class DeviceTooSmall(RuntimeError):
    """The device's free memory cannot hold the random weights (a one-line message)."""


# ------------------------------------------------------------------------------------------------ configs


def pipeline_configs(source: str, overrides: dict | None = None) -> LTX2Configs:
    """The components' architectures: an LTX-2 release of ``LTX2_RELEASES`` (its Gemma, connectors, transformer,
    VAEs, vocoder) or "tiny" (``tiny_random_ltx2``'s), with ``{component: {field: value}}`` replaced."""
    configs = TINY_LTX2_CONFIGS if source == "tiny" else LTX2Configs.of_release(LTX2_RELEASES[source])
    return configs.replace(**{name: dataclasses.replace(getattr(configs, name), **fields)
                              for name, fields in (overrides or {}).items()})


def upsampler_config(source: str, overrides: dict | None = None) -> LTX2LatentUpsamplerConfig:
    """A latent upsampler by file name of ``LTX2_LATENT_UPSAMPLER_PRESETS`` or "tiny" (``TINY_UPSAMPLER``)."""
    cfg = TINY_UPSAMPLER if source == "tiny" else LTX2_LATENT_UPSAMPLER_PRESETS[source]
    return cfg.replace(**(overrides or {}))


def call_kwargs(height: int, width: int, num_frames: int, text_tokens: int) -> dict:
    """One call's arguments (ours and diffusers' share the names): the distilled 8 steps without guidance."""
    return dict(prompt=PROMPT, height=height, width=width, num_frames=num_frames, frame_rate=FRAME_RATE,
                num_inference_steps=len(STAGE_1_SIGMAS), sigmas=STAGE_1_SIGMAS, max_sequence_length=text_tokens,
                **NO_GUIDANCE)


def token_counts(configs: LTX2Configs, height: int, width: int, num_frames: int) -> tuple[int, int]:
    """(video tokens, audio tokens) the transformer sees for a video of this size (the pipeline's latent grid)."""
    grid = ltx2_grid(configs.vae, configs.audio_vae, height=height, width=width, num_frames=num_frames,
                     frame_rate=FRAME_RATE)
    t = configs.transformer
    video = (grid.frames // t.patch_size_t) * (grid.height // t.patch_size) * (grid.width // t.patch_size)
    return video, grid.audio_frames


def part_flops(configs: LTX2Configs, part: str, video: tuple[int, int, int], text_tokens: int) -> dict:
    """Transformer FLOPs of each denoising stage of a part (batch 1, no guidance: one forward per step), and per
    step: {stage: flops} plus "per_step" (of the first denoising stage)."""
    height, width, frames = video

    def forward(h: int, w: int) -> int:  # one forward at h x w, batch 1 (no guidance rows)
        return ltx2_forward_flops(configs.transformer, 1, *token_counts(configs, h, w, frames), text_tokens)

    if part == "t2v":
        step = forward(height, width)
        return {"denoise_decode": len(STAGE_1_SIGMAS) * step, "per_step": step}
    step_1, step_2 = forward(height // 2, width // 2), forward(height, width)
    return {"stage_1": len(STAGE_1_SIGMAS) * step_1, "stage_1_denoising": len(STAGE_1_SIGMAS) * step_1,
            "stage_2": len(STAGE_2_SIGMAS) * step_2, "per_step": step_1, "per_step_stage_2": step_2}


# ------------------------------------------------------------------------------------------------ ours


def tree_bytes(tree) -> int:
    return int(sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(tree)))


def free_device_bytes() -> int | None:
    """Bytes JAX may still allocate on the first device (None where the backend does not say, e.g. CPU)."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def peak_device_bytes() -> int | None:
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001
        return None
    return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None


def check_fits(needed: int, free: int | None, what: str) -> None:
    """Raises ``DeviceTooSmall`` (one line) when ``needed`` bytes exceed ``free`` (None: unknown, not checked)."""
    if free is not None and needed > free:
        raise DeviceTooSmall(f"{what}: the random weights take {needed / 2**30:.1f} GiB, the device has "
                             f"{free / 2**30:.1f} GiB free; use a card with more memory (or bf16, a smaller model)")


@dataclasses.dataclass
class Ours:
    """Our pipelines over one set of random params: ``pipe`` (text to video, and stage 1), ``two_stage`` (its
    stage 2 a second ``LTX2Pipeline`` over the same modules and params, so ``pipe.last_timings`` keeps stage 1's)."""

    pipe: LTX2Pipeline
    two_stage: LTX2TwoStagePipeline
    params: dict[str, int]  # parameters per component
    param_bytes: dict[str, int]
    build_s: float


def ltx2_components(configs: LTX2Configs, upsampler_cfg: LTX2LatentUpsamplerConfig, dtype: str
                    ) -> tuple[dict, dict]:
    """(modules, their abstract params) by component name (``gemma``, ``ltx2_core.COMPONENTS``,
    ``latent_upsampler``), built as the loaders build them in ``dtype``; nothing is allocated."""
    dt = jnp.dtype(dtype)
    modules = {**ltx2_modules(configs, dt),
               "latent_upsampler": LTX2LatentUpsampler(upsampler_cfg, dtype=dt, param_dtype=dt)}
    return modules, {name: abstract_params(module) for name, module in modules.items()}


def build_ours(configs: LTX2Configs, modules: dict, shapes: dict, seed: int = 0) -> Ours:
    """``ltx2_components``' modules with random params made on the device (module docstring), after
    ``DeviceTooSmall`` when they cannot fit."""
    start = time.perf_counter()
    sizes = {name: tree_bytes(tree) for name, tree in shapes.items()}
    check_fits(sum(sizes.values()), free_device_bytes(), "our LTX-2 pipeline")
    keys = jax.random.split(jax.random.key(seed, impl="rbg"), len(modules))  # rbg: init programs compile faster
    params = {}
    for (name, module), key in zip(modules.items(), keys):
        params[name] = jax.block_until_ready(init_params(module, key))  # one component at a time on the device
    upsampler = (modules["latent_upsampler"], params.pop("latent_upsampler"))
    pipe = assemble_ltx2_pipeline(modules, params, tiny_gemma_tokenizer(), configs.scheduler)
    stage_2 = pipe.with_params()  # a pipeline of its own for stage 2, sharing every module and parameter
    two_stage = LTX2TwoStagePipeline(pipe, LTX2LatentUpsamplePipeline.from_pipe(pipe, *upsampler), stage_2,
                                     STAGE_2_SIGMAS)
    return Ours(pipe, two_stage, {k: count_params(v) for k, v in shapes.items()}, sizes, time.perf_counter() - start)


def run_ours(ours: Ours, part: str, call: dict, seed: int) -> tuple[dict, Any]:
    """One call of a part: ({stage: seconds}, output with .frames and .audio on the host)."""
    if part == "t2v":
        out = ours.pipe(**call, seed=seed)
        return ours.pipe.last_timings.as_dict(), out
    out = ours.two_stage(**call, seed=seed)
    stages = ours.two_stage.last_timings.as_dict()
    stages["stage_1_denoising"] = ours.pipe.last_timings.stages["denoise_decode"]  # latents out: denoising only
    return stages, out


def output_check(frames, audio, call: dict) -> dict:
    """Finite frames and waveform of the expected shapes: {"finite", "frames_shape", "audio_shape", "shape_ok"}."""
    frames, audio = np.asarray(frames), np.asarray(audio)
    want = [1, call["num_frames"], call["height"], call["width"], 3]
    return {"finite": bool(np.isfinite(frames).all() and np.isfinite(audio).all()),
            "frames_shape": list(frames.shape), "audio_shape": list(audio.shape),
            "shape_ok": list(frames.shape) == want and audio.ndim == 3 and audio.shape[0] == 1}


# ------------------------------------------------------------------------------------------------ diffusers


@contextlib.contextmanager
def torch_defaults(torch, device: str, dtype):
    """Modules built inside are created on ``device`` in ``dtype`` (no float32 host copy of a 19B model)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


class DiffusersLTX2:
    """diffusers' ``LTX2Pipeline`` and ``LTX2LatentUpsamplePipeline`` at the same configs, random weights (torch's
    default init, seed 0) made on the card in ``dtype``; its VAE decodes tiled on CUDA (``enable_tiling``: a whole
    decode at these sizes does not fit beside the weights). ``DeviceTooSmall`` when the free memory is short."""

    def __init__(self, configs: LTX2Configs, upsampler_cfg: LTX2LatentUpsamplerConfig, dtype: str,
                 needed_bytes: int | None = None):
        # deferred: torch, diffusers and transformers (the reference) are optional, loaded only where used
        import torch
        from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler
        from diffusers import LTX2LatentUpsamplePipeline as TorchUpsamplePipeline
        from diffusers import LTX2Pipeline as TorchLTX2Pipeline
        from diffusers import LTX2VideoTransformer3DModel
        from diffusers.pipelines.ltx2 import vocoder as vocoders
        from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
        from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
        from diffusers.utils import logging as diffusers_logging
        from transformers import Gemma3Config, Gemma3ForConditionalGeneration

        if configs.gemma.to_dict().get("model_type") != "gemma3_text":
            raise NotImplementedError("the diffusers side builds Gemma 3 text encoders only (LTX-2.0 / 2.3)")
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        if self.device == "cuda" and needed_bytes:
            check_fits(needed_bytes, torch.cuda.mem_get_info()[0], "diffusers' LTX-2 pipeline")
        diffusers_logging.set_verbosity_error()
        kwargs = lambda cfg: {k: v for k, v in cfg.to_dict().items() if k != "_class_name"}  # noqa: E731
        torch.manual_seed(0)
        with torch_defaults(torch, self.device, self.dtype):
            vision = dict(model_type="siglip_vision_model", hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                          num_attention_heads=2, image_size=14, patch_size=7)
            gemma = Gemma3ForConditionalGeneration(Gemma3Config(text_config=configs.gemma.to_dict(),
                                                                vision_config=vision, mm_tokens_per_image=4))
            vocoder_cls = getattr(vocoders, type(configs.vocoder).CLASS_NAME)
            self.pipe = TorchLTX2Pipeline(
                scheduler=FlowMatchEulerDiscreteScheduler(**dataclasses.asdict(configs.scheduler)),
                vae=AutoencoderKLLTX2Video(**kwargs(configs.vae)),
                audio_vae=AutoencoderKLLTX2Audio(**kwargs(configs.audio_vae)), text_encoder=gemma,
                tokenizer=tiny_gemma_tokenizer(), connectors=LTX2TextConnectors(**kwargs(configs.connectors)),
                transformer=LTX2VideoTransformer3DModel(**kwargs(configs.transformer)),
                vocoder=vocoder_cls(**kwargs(configs.vocoder)))
            self.upsample = TorchUpsamplePipeline(vae=self.pipe.vae,
                                                  latent_upsampler=LTX2LatentUpsamplerModel(**kwargs(upsampler_cfg)))
        for part in (self.pipe, self.upsample):
            part.to(self.device, self.dtype)
            part.set_progress_bar_config(disable=True)
        if self.device == "cuda":
            self.pipe.vae.enable_tiling()

    def sync(self, x=None):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        return x

    def _generator(self, seed: int):
        return self.torch.Generator(self.device).manual_seed(seed)

    def _kwargs(self, call: dict) -> dict:
        kw = {k: list(v) if k == "sigmas" else v for k, v in call.items()}
        return dict(kw, spatio_temporal_guidance_blocks=None, return_dict=False)

    def run(self, part: str, call: dict, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
        """One call of a part: ({stage: seconds}, frames [1, F, H, W, 3], waveform [1, channels, samples])."""
        torch, stages = self.torch, {}
        start = time.perf_counter()
        with torch.inference_mode():
            if part == "t2v":
                frames, audio = self.pipe(**self._kwargs(call), output_type="np", generator=self._generator(seed))
                self.sync()
            else:
                kw = self._kwargs(call)
                prompt, height, width = kw.pop("prompt"), kw.pop("height"), kw.pop("width")
                pe, pm, _, _ = self.pipe.encode_prompt(prompt, do_classifier_free_guidance=False,
                                                       max_sequence_length=kw["max_sequence_length"],
                                                       device=self.device)
                kw.update(prompt_embeds=pe, prompt_attention_mask=pm)
                latents, audio_latents = self.pipe(**kw, height=height // 2, width=width // 2, output_type="latent",
                                                   generator=self._generator(seed))
                stages["stage_1"] = time.perf_counter() - start
                mark = time.perf_counter()
                upsampled = self.sync(self.upsample(latents=latents, height=height // 2, width=width // 2,
                                                    num_frames=kw["num_frames"], output_type="latent",
                                                    return_dict=False)[0])
                stages["upsampling"] = time.perf_counter() - mark
                mark = time.perf_counter()
                kw.update(num_inference_steps=len(STAGE_2_SIGMAS), sigmas=list(STAGE_2_SIGMAS))
                frames, audio = self.pipe(**kw, height=height, width=width, latents=upsampled,
                                          audio_latents=audio_latents, noise_scale=STAGE_2_SIGMAS[0],
                                          output_type="np", generator=self._generator(seed + 1))
                self.sync()
                stages["stage_2"] = time.perf_counter() - mark
        stages["total"] = time.perf_counter() - start
        return stages, np.asarray(frames), audio.float().cpu().numpy()

    def reset_peak(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self) -> int | None:
        return int(self.torch.cuda.max_memory_allocated()) if self.device == "cuda" else None

    def close(self) -> None:
        """Frees the card (torch's cached blocks go back to the driver)."""
        self.pipe = self.upsample = None
        gc.collect()
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ timing


def measure(run: Callable[[int], tuple[dict, Any, Any]], call: dict, repeats: int,
            on_first: Callable[[dict], None] | None = None) -> dict:
    """The first call (seed 0: compiles and runs; ``on_first`` gets its record at once), then ``repeats`` calls
    (seeds 1..): {"first_call_s", "first_call_stages", "check" (of the first call's output), "stages" (one dict per
    timed call), "median_stages"}."""
    start = time.perf_counter()
    stages, frames, audio = run(0)
    first = {"first_call_s": time.perf_counter() - start, "first_call_stages": stages,
             "check": output_check(frames, audio, call)}
    del frames, audio
    if on_first is not None:
        on_first(first)
    timed = [run(seed)[0] for seed in range(1, repeats + 1)]
    median = {k: statistics.median(t[k] for t in timed) for k in timed[0]} if timed else {}
    return {**first, "stages": timed, "median_stages": median}


def ours_runner(ours: Ours, part: str, call: dict) -> Callable[[int], tuple[dict, Any, Any]]:
    def run(seed: int):
        stages, out = run_ours(ours, part, call, seed)
        return stages, out.frames, out.audio

    return run


# ------------------------------------------------------------------------------------------------ command line


def parse_video(text: str) -> tuple[int, int, int]:
    """"HxWxF" (height x width x frames) -> (height, width, frames)."""
    height, width, frames = (int(x) for x in text.lower().split("x"))
    return height, width, frames


def parse_args(argv, backend: str):
    d = DEFAULTS["gpu" if backend == "gpu" else "cpu"]
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_ltx2_pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--release", default=d["release"], choices=["tiny", *LTX2_RELEASES])
    p.add_argument("--upsampler", default=d["upsampler"], choices=["tiny", *LTX2_LATENT_UPSAMPLER_PRESETS])
    p.add_argument("--dtype", default=d["dtype"], choices=["float32", "bfloat16"])
    p.add_argument("--video", default=d["video"], help="text to video: HEIGHTxWIDTHxFRAMES")
    p.add_argument("--two-stage-video", default=d["two_stage_video"], help="two-stage final size (stage 1 at half)")
    p.add_argument("--text-tokens", type=int, default=d["text_tokens"], help="max_sequence_length (left padded)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma separated, of {', '.join(PARTS)}")
    p.add_argument("--repeats", type=int, default=2, help="timed calls after the first of each part")
    p.add_argument("--compare-torch", action="store_true", help="diffusers' pipelines too, on the same card")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    if set(args.parts) - set(PARTS):
        p.error(f"--parts takes {', '.join(PARTS)}")
    return args


def print_part(part: str, label: str, ours: dict, theirs: dict | None, flops: dict) -> None:
    print(f"[{part}] {label}: first call {ours['first_call_s']:.2f} s (compiles); outputs {ours['check']}")
    print(f"[{part}] {'stage':<18} {'first call s':>12} {'median s':>9} {'GFLOP':>10} {'TFLOP/s':>8} "
          f"{'diffusers s':>11} {'ours/diff':>9}")
    for stage in STAGES[part]:
        med = ours["median_stages"].get(stage)
        tf = flops.get(stage)
        rate = f"{tf / med / 1e12:8.3g}" if tf and med else f"{'':8}"
        their = (theirs or {}).get("median_stages", {}).get(stage)
        print(f"[{part}] {stage:<18} {ours['first_call_stages'][stage]:>12.3f} "
              f"{'' if med is None else f'{med:.3f}':>9} {'' if not tf else f'{tf / 1e9:.4g}':>10} {rate} "
              f"{'' if their is None else f'{their:.3f}':>11} "
              f"{'' if not (their and med) else f'{med / their:.2f}':>9}")


def main(argv=None) -> int:
    backend = jax.default_backend()
    args = parse_args(argv, backend)
    configs, ucfg = pipeline_configs(args.release), upsampler_config(args.upsampler)
    videos = {"t2v": parse_video(args.video), "two_stage": parse_video(args.two_stage_video)}
    print(f"device: {jax.devices()[0].device_kind} ({backend}), jax {jax.__version__}; {args.release}, {args.dtype}, "
          f"{args.text_tokens} prompt tokens; parts {', '.join(args.parts)}")
    results: dict = {"device": jax.devices()[0].device_kind, "backend": backend, "release": args.release,
                     "dtype": args.dtype, "text_tokens": args.text_tokens, "parts": {}}
    calls = {part: call_kwargs(*videos[part], args.text_tokens) for part in args.parts}
    modules, shapes = ltx2_components(configs, ucfg, args.dtype)
    needed = sum(tree_bytes(tree) for tree in shapes.values())
    theirs = {}
    try:
        if args.compare_torch:  # diffusers first, then freed: JAX keeps what it allocates (module docstring)
            side = DiffusersLTX2(configs, ucfg, args.dtype, needed)
            for part in args.parts:
                side.reset_peak()
                theirs[part] = measure(lambda seed, p=part: side.run(p, calls[p], seed), calls[part], args.repeats)
                theirs[part]["peak_bytes"] = side.peak_bytes()
            side.close()
        ours = build_ours(configs, modules, shapes)
    except DeviceTooSmall as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"built in {ours.build_s:.1f} s: {sum(ours.params.values()):,} params, "
          f"{sum(ours.param_bytes.values()) / 2**30:.2f} GiB ({ours.params})")
    for part in args.parts:
        flops = part_flops(configs, part, videos[part], args.text_tokens)
        mine = measure(ours_runner(ours, part, calls[part]), calls[part], args.repeats)
        mine["peak_bytes"] = peak_device_bytes()
        height, width, frames = videos[part]
        print_part(part, f"{width}x{height}x{frames}", mine, theirs.get(part), flops)
        if not mine["check"]["finite"]:
            raise RuntimeError(f"non-finite output ({part})")
        results["parts"][part] = {"video": videos[part], "flops": flops, "ours": mine, "diffusers": theirs.get(part)}
    results["peak_bytes"] = peak_device_bytes()
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

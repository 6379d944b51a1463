"""Sizes of a run: the ``Sizes`` dataclass, its CPU and GPU values, the prompts, and the configs a size names.

A CPU run and a GPU run differ only here, in values, never in code. The config helpers resolve a (source, overrides)
spec against ltx_jax's presets: with builders.py, the only place that knows where ltx_jax keeps them.
"""

from __future__ import annotations

import dataclasses

PROMPT = "A red fox trots through fresh snow in a pine forest, morning light, the camera tracking alongside."
NEGATIVE_PROMPT = "blurry, low quality, distorted"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every size, dtype and repeat count of one kind of run. CPU_SIZES and GPU_SIZES differ only in values.

    Component configs are (source, overrides): source is a preset name of ltx_jax.releases (or "tiny" for
    ltx_jax.tiny_random's), overrides are field replacements.
    """

    name: str
    dtype: str  # compute and parameter dtype of every timed section
    warmup: int
    repeats: int
    budget_s: float | None  # default wall-clock budget of the whole run (None: unbounded)
    # matmul_peak
    matmul_n: int
    matmul_inner: int  # back-to-back calls per timed sample (keeps the GPU busy between host syncs)
    matmul_repeats: int
    # transformer (attention check and benchmark)
    transformer: tuple[str, dict]
    transformer_layers: int
    transformer_shapes: tuple[tuple[int, int, int], ...]
    transformer_compile_layers: tuple[int, int]
    text_tokens: int
    attention_shape: tuple[int, int, int]
    attention_text_lengths: tuple[int, ...]  # valid tokens per batch row (right padded), as real prompts give
    # ltx2_transformer (LTX-2's audio-video transformer against diffusers): the config as (source, overrides) with
    # source a preset of ltx_jax.releases_ltx2, its layers, the video latent grid (frames, height, width; the audio
    # tokens of the same clip follow from the config, benchmarks/bench_ltx2_transformer.py), text tokens
    ltx2_transformer: tuple[str, dict]
    ltx2_layers: int
    ltx2_shape: tuple[int, int, int]
    ltx2_text_tokens: int
    # ltx2_pipeline (benchmarks/bench_ltx2_pipeline.py: LTX-2 text to video with sound end to end, then the two-stage
    # recipe, the distilled sigmas without guidance, random weights, against diffusers): the components as (source,
    # {component: {field: value}}) with source a release of ltx_jax.releases_ltx2 or "tiny" (ltx_jax.tiny_random_ltx2's
    # configs), the latent upsampler as (a file name of LTX2_LATENT_UPSAMPLER_PRESETS or "tiny", overrides), the
    # text-to-video and the two-stage (final) videos as (height, width, frames), the prompt tokens, timed calls after
    # the first call of each part
    ltx2_pipe: tuple[str, dict]
    ltx2_pipe_upsampler: tuple[str, dict]
    ltx2_pipe_video: tuple[int, int, int]
    ltx2_pipe_two_stage_video: tuple[int, int, int]
    ltx2_pipe_text_tokens: int
    ltx2_pipe_repeats: int
    ltx2_pipe_two_stage_repeats: int
    # VAE
    vae: tuple[str, dict]
    vae_latent: tuple[int, int, int]  # latent frames, height, width
    vae_tiling: dict  # VAETiling fields ({} = diffusers' enable_tiling defaults)
    vae_warmup: int
    vae_repeats: int
    # text encoder
    t5: tuple[str, dict]
    t5_batch: int
    t5_tokens: int
    # scheduler
    scheduler_shapes: tuple[tuple[int, int, int], ...]
    # pipeline
    pipe_transformer: tuple[str, dict]
    pipe_vae: tuple[str, dict]
    pipe_t5: tuple[str, dict]
    pipe_preset: str
    pipe_video: tuple[int, int, int]  # height, width, frames
    pipe_warmup: int
    pipe_repeats: int
    # step_cache (benchmarks.bench_sampler.cache_runs: the 2B dev recipe's loop, random weights; thresholds as
    # "KIND:THRESHOLD,...", each kind's default and thresholds that skip steps of random weights)
    cache_transformer: tuple[str, dict]
    cache_layers: int | None  # None: the config's
    cache_video: tuple[int, int, int]  # height, width, frames
    cache_steps: int
    cache_thresholds: str
    cache_repeats: int
    # sharding (benchmarks.bench_sharding: models "tiny" / "2b", the 2B slice's layers, meshes separated by ";")
    sharding_models: str
    sharding_layers: int
    sharding_meshes: str
    sharding_repeats: int
    # multi_scale (the pipeline section's components, plus a latent upsampler)
    ms_upsampler: tuple[str, dict]
    ms_preset: str
    ms_video: tuple[int, int, int]  # height, width, frames (the output; the passes run at 2/3 and 4/3 of it)
    ms_repeats: int
    # compile (the pipeline and multi_scale sections' pipelines and sizes, each call in new processes): the runs, in
    # order, of sections/compile.py's RUNS
    compile_runs: tuple[str, ...]
    # pipeline_vs_cpu_fp32
    pvc_transformer: tuple[str, dict]
    pvc_vae: tuple[str, dict]
    pvc_t5: tuple[str, dict]
    pvc_video: tuple[int, int, int]
    pvc_steps: int
    pvc_guidance: float
    # checks: (limit, what it bounds)
    attention_rel_limit: float  # max |cudnn - xla| / max |xla|, both in the run dtype
    pvc_psnr_min: float  # bfloat16 on the accelerator vs float32 on the CPU backend
    pvc_psnr_min_fp32: float  # float32 on the accelerator vs float32 on the CPU backend (TF32 matmuls on GPU)
    # rough seconds each section takes with these sizes, process start included (keys: the section names), and each
    # optional part of a section (run only when this much of the section's share is left): they split the budget
    estimates: dict
    # seconds from the run's start to its first section (the environment probe): counted in the budget
    start_s: float = 0.0
    # sections left out of the default run with these sizes (the rest fits ``budget_s``): run only when named in
    # --sections, or with --sections all
    optional: tuple[str, ...] = ()

    def estimate(self, section: str, device_count: int = 1) -> float:
        """Seconds ``section`` takes with these sizes on ``device_count`` devices (``sharding`` skips itself on one
        GPU: a mesh needs several)."""
        if section == "sharding" and device_count == 1:
            return self.estimates["sharding_one_device"]
        return self.estimates.get(section, 30)

    def total_estimate(self, sections, device_count: int = 1) -> float:
        """Seconds a run of ``sections`` takes, its start included."""
        return self.start_s + sum(self.estimate(n, device_count) for n in sections)


# A CPU run: small widths and shapes (2 shared cores, the test suite runs it), float32.
_SMALL_TRANSFORMER = ("ltx-video-2b", dict(num_attention_heads=4, attention_head_dim=32, cross_attention_dim=128,
                                           caption_channels=64))
CPU_SIZES = Sizes(
    name="cpu", dtype="float32", warmup=1, repeats=3, budget_s=None,
    matmul_n=512, matmul_inner=1, matmul_repeats=5,
    transformer=_SMALL_TRANSFORMER, transformer_layers=4, transformer_shapes=((2, 8, 8), (3, 8, 16)),
    transformer_compile_layers=(4, 28), text_tokens=32,
    attention_shape=(2, 8, 8), attention_text_lengths=(9, 27),
    # LTX-2 19B's architecture at a small width (video 4 x 32, audio 4 x 16), 2 layers: 32 video + 9 audio tokens
    ltx2_transformer=("ltx-2-19b", dict(num_attention_heads=4, attention_head_dim=32, cross_attention_dim=128,
                                        audio_num_attention_heads=4, audio_attention_head_dim=16,
                                        audio_cross_attention_dim=64, caption_channels=64)),
    ltx2_layers=2, ltx2_shape=(2, 4, 4), ltx2_text_tokens=16,
    # tiny_random_ltx2's pipeline cut to what compiles fastest (one transformer block, no VAE / audio VAE resnets, one
    # vocoder resnet): the section's programs (text to video, stage 1, stage 2) are most of its time on a CPU
    ltx2_pipe=("tiny", dict(transformer=dict(num_layers=1),
                            vae=dict(layers_per_block=(0,) * 5, decoder_layers_per_block=(0,) * 5),
                            audio_vae=dict(num_res_blocks=0, attn_resolutions=(), mid_block_add_attention=False),
                            vocoder=dict(resnet_kernel_sizes=(3,), resnet_dilations=((1,),)))),
    ltx2_pipe_upsampler=("tiny", {}), ltx2_pipe_video=(64, 64, 9), ltx2_pipe_two_stage_video=(128, 128, 9),
    ltx2_pipe_text_tokens=64, ltx2_pipe_repeats=2, ltx2_pipe_two_stage_repeats=2,
    vae=("ltx-video-0.9.5", dict(decoder_block_out_channels=(16, 32, 64), decoder_layers_per_block=(1, 1, 1, 1),
                                 block_out_channels=(16, 32, 64, 64, 64), layers_per_block=(1, 1, 1, 1, 1))),
    vae_latent=(3, 4, 4),
    # Temporal tiles only (one spatial tile covers the 4x4 latent): spatial tile shapes multiply compile time, and
    # spatial tiling is checked against diffusers in tests/test_vae.py.
    vae_tiling=dict(tile_sample_min_height=128, tile_sample_min_width=128, tile_sample_stride_height=96,
                    tile_sample_stride_width=96, tile_sample_min_num_frames=16, tile_sample_stride_num_frames=8),
    vae_warmup=1, vae_repeats=2,
    t5=("custom", dict(vocab_size=512, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4,
                       feed_forward_proj="gated-gelu")),
    t5_batch=2, t5_tokens=32,
    scheduler_shapes=((2, 4096, 128), (1, 256, 128)),
    pipe_transformer=("tiny", {}), pipe_vae=("tiny", {}), pipe_t5=("tiny", {}),
    pipe_preset="ltx-video-0.9.8-2b-distilled", pipe_video=(64, 96, 17), pipe_warmup=0, pipe_repeats=2,
    ms_upsampler=("tiny", {}), ms_preset="ltx-video-0.9.8-2b-distilled", ms_video=(64, 96, 17), ms_repeats=2,
    cache_transformer=_SMALL_TRANSFORMER, cache_layers=8, cache_video=(64, 96, 17), cache_steps=20,
    cache_thresholds="first_block:0.45,teacache:0.4", cache_repeats=1,
    compile_runs=("cold", "warm"),  # a CPU has no autotuning; "off" (as cold, never written) is left to GPU runs
    sharding_models="tiny", sharding_layers=2, sharding_meshes="fsdp=8;data=2,fsdp=2,context=2", sharding_repeats=2,
    pvc_transformer=("tiny", dict(num_attention_heads=2, attention_head_dim=64, cross_attention_dim=128)),
    pvc_vae=("tiny", {}), pvc_t5=("tiny", {}), pvc_video=(64, 96, 9), pvc_steps=8, pvc_guidance=3.0,
    attention_rel_limit=1e-6, pvc_psnr_min=30.0, pvc_psnr_min_fp32=60.0,
    estimates=dict(matmul_peak=10, attention_cudnn_vs_xla=20, pipeline_vs_cpu_fp32=20, transformer=30,
                   ltx2_transformer=10, ltx2_pipeline=45, ltx2_pipeline_two_stage=10, ltx2_pipeline_torch=5,
                   ltx2_pipeline_torch_two_stage=3,
                   text_encoder=15, scheduler=10, vae=30, pipeline=30, step_cache=15, multi_scale=25, sharding=20,
                   sharding_one_device=20,  # on a CPU the meshes are host devices: the section always runs
                   transformer_compile=5, vae_torch=5, vae_ours=15, vae_compile_2F=3, pipeline_torch=5,
                   compile=75, compile_text_to_video=15, compile_multi_scale=20, compile_decode_programs=5),
    start_s=5.0,
)

# A GPU run: the shapes of the earlier issues' GPU benchmarks, bf16. The default sections (all but ``optional``) fit
# 560 s from process start, compile time included, on one H200 (the run of 2026-12-04; see ``estimates``).
GPU_SIZES = Sizes(
    name="gpu", dtype="bfloat16", warmup=2, repeats=5, budget_s=560.0,
    matmul_n=8192, matmul_inner=10, matmul_repeats=10,
    transformer=("ltx-video-2b", {}), transformer_layers=4,
    transformer_shapes=((9, 32, 32), (9, 64, 64), (17, 64, 64)), transformer_compile_layers=(4, 28), text_tokens=128,
    attention_shape=(9, 32, 32), attention_text_lengths=(23, 97),
    # LTX-2 19B's width, 4 layers, 768x512x121 (16x16x24 latents: 6144 video tokens, 126 audio tokens), prompts
    # padded to 1024 tokens as LTX2Pipeline pads them
    ltx2_transformer=("ltx-2-19b", {}), ltx2_layers=4, ltx2_shape=(16, 16, 24), ltx2_text_tokens=1024,
    # LTX-2 19B distilled with Gemma 3 12B (about 33B parameters, 66 GB in bf16) and the x2 upscaler: 768x512x121
    # (6144 video + 126 audio tokens, 8 steps), then 1536x1024x121 by the two-stage recipe (stage 2: 24576 tokens)
    ltx2_pipe=("ltx-2-19b-distilled", {}), ltx2_pipe_upsampler=("ltx-2-spatial-upscaler-x2-1.0.safetensors", {}),
    ltx2_pipe_video=(512, 768, 121), ltx2_pipe_two_stage_video=(1024, 1536, 121), ltx2_pipe_text_tokens=1024,
    ltx2_pipe_repeats=2, ltx2_pipe_two_stage_repeats=1,
    vae=("ltx-video-0.9.5", {}), vae_latent=(16, 16, 24), vae_tiling={}, vae_warmup=1, vae_repeats=2,
    t5=("t5-v1_1-xxl", {}), t5_batch=2, t5_tokens=128,
    scheduler_shapes=((2, 4096, 128), (1, 256, 128)),
    pipe_transformer=("ltx-video-2b", {}), pipe_vae=("ltx-video-0.9.5", {}), pipe_t5=("t5-v1_1-xxl", {}),
    pipe_preset="ltx-video-0.9.8-2b-distilled", pipe_video=(512, 768, 121), pipe_warmup=0, pipe_repeats=2,
    ms_upsampler=("released", {}), ms_preset="ltx-video-0.9.8-2b-distilled", ms_video=(704, 1216, 121),
    ms_repeats=1,
    # the 2B at 768x512x121, 40 steps of 3 branches: each run some seconds; the thresholds past the defaults are the
    # CPU model's (random 2B weights at full width not measured yet: a row that skips nothing shows the overhead)
    cache_transformer=("ltx-video-2b", {}), cache_layers=None, cache_video=(512, 768, 121), cache_steps=40,
    cache_thresholds="first_block:0.05,first_block:0.45,first_block:0.6,teacache:0.06,teacache:0.4,teacache:0.8",
    cache_repeats=2,
    compile_runs=("cold", "warm", "off", "autotune_cache", "no_autotune"),
    sharding_models="2b", sharding_layers=4, sharding_meshes="fsdp=2;context=2;data=2,context=4;fsdp=8;context=8",
    sharding_repeats=5,
    pvc_transformer=("tiny", dict(num_attention_heads=2, attention_head_dim=64, cross_attention_dim=128)),
    pvc_vae=("tiny", {}), pvc_t5=("tiny", {}), pvc_video=(256, 384, 25), pvc_steps=8, pvc_guidance=3.0,
    attention_rel_limit=2e-2, pvc_psnr_min=30.0, pvc_psnr_min_fp32=35.0,
    # Seconds per section (they split the budget) and per optional part (run only when this much is left). Measured
    # on one H200 on 2026-12-04 (jax 0.11.2, commit 4a159ca; benchmarks/RESULTS.md, "GPU: NVIDIA H200"): a section's
    # "wall_s" in that run's JSON, process start included, rounded up. Where a figure was not measured, it says so.
    estimates=dict(
        matmul_peak=10,  # H200 2026-12-04: 8.5 s (run a)
        attention_cudnn_vs_xla=35,  # H200 2026-12-04: 33.5 s (run a)
        pipeline_vs_cpu_fp32=50,  # H200 2026-12-04: 49.0 s (run d; its float32 CPU reference alone is 11.7 s)
        transformer=80,  # H200 2026-12-04: 57.6 s without the compile-time case (run a), + transformer_compile
        ltx2_transformer=90,  # not measured yet (first guess): diffusers' 4-layer 19B-wide model built in float32 on
                              # the host (1.6e9 params), converted, one compile, 7 calls a side of ~17 TFLOP each
        # Not measured yet (first guesses): ours: process start, the random init (seven init programs, 33B values),
        # the first call (Gemma's program, the 48-layer loop + tiled decode + audio program: ~110 s), 2 calls of
        # ~5 s; the two-stage recipe: two more loop programs and the upsampler (~150 s), 2 calls of ~20 s;
        # diffusers: its build on the card (~40 s) and 3 calls of ~20 s; its two-stage recipe, 2 calls of ~60 s.
        ltx2_pipeline=640,  # every part: ours (text to video ~200 s, two-stage ~200 s) and diffusers' (~240 s)
        ltx2_pipeline_two_stage=200,  # ours: the two-stage recipe (its first call and its timed calls)
        ltx2_pipeline_torch=100,  # diffusers: its build and text to video
        ltx2_pipeline_torch_two_stage=140,  # diffusers: its two-stage recipe
        text_encoder=55,  # not measured yet (first guess, unchanged)
        scheduler=12,  # not measured yet (first guess, unchanged)
        vae=240,  # H200 2026-12-04: 107.1 s without the diffusers comparison (run b); about 240 s with it (issue 20)
        pipeline=130,  # H200 2026-12-04: 128.6 s, diffusers' LTXPipeline included (run a)
        step_cache=300,  # not measured yet (first guess): 21 runs of 40 steps of 3 branches at 6144 tokens (about
                         # 0.2 s a step uncached, less where steps skip), 3 compiles of the 28-layer loop, the init
        multi_scale=130,  # H200 2026-12-04: 130.1 s (run c, with the recipe fix of issue 20 item 1)
        sharding=60,  # several GPUs: not measured yet (first guess, unchanged)
        sharding_one_device=5,  # one GPU: the section skips itself; process start only (~3.5 s in run a)
        transformer_compile=20,  # not measured (skipped by the budget in run a): two compiles at 9x32x32, the
                                 # 4-layer one 5.3 s (run a), 28 scanned layers about as long
        vae_torch=135,  # the diffusers part of vae: about 240 s - 107 s (issue 20; skipped by the budget in run b)
        vae_ours=85,  # H200 2026-12-04: vae's 103 s without diffusers less the 18.8 s compile at 2F (run b)
        vae_compile_2F=20,  # H200 2026-12-04: 18.8 s (run b)
        pipeline_torch=35,  # H200 2026-12-04: ~33 s: the section's 128.6 s less ours (build 44.4 s, first call
                            # 45.6 s, 2 calls of 1.5 s, process start) (run a)
        # Not measured yet (first guesses from run a / c's figures): a process per run and kind, each Python's and
        # CUDA's start (~15 s), the build (44 s / 57 s the first time; its init programs then come from the
        # section's own cache) and the first call (45.6 s / 63.0 s cold, less with the cache), two calls in all.
        compile=850,  # 5 runs x 2 kinds + the decode programs
        compile_text_to_video=110,  # the cold run: 15 s start + 44 s build + 45.6 s first call + 1.5 s
        compile_multi_scale=145,  # the cold run: 15 s start + 57 s build + 63.0 s first call + 5.8 s
        compile_decode_programs=45,  # tiled 24.9 s + whole 5.7 s compiles (run b), uniform tiles, tracing, lowering
    ),
    start_s=15.0,  # H200 2026-12-04: 14.6 s from the run's start to its first section (run a; 16.9 s in run b)
    # Everything takes about 2650 s on one H200 (--list adds it up); without vae, step_cache, compile,
    # ltx2_transformer and ltx2_pipeline about 520 s, within the 560 s budget. Those cannot fit beside the others:
    # --sections vae (about 240 s), --sections step_cache (about 300 s), --sections ltx2_transformer (about 90 s),
    # --sections ltx2_pipeline --budget-s 640 and --sections compile --budget-s 850 run them alone.
    optional=("vae", "step_cache", "compile", "ltx2_transformer", "ltx2_pipeline"),
)
SIZES = {"cpu": CPU_SIZES, "gpu": GPU_SIZES}


def transformer_config(spec: tuple[str, dict], layers: int | None = None):
    from ltx_jax.releases import TRANSFORMER_PRESETS
    from ltx_jax.tiny_random import TINY_TRANSFORMER

    source, overrides = spec
    cfg = TINY_TRANSFORMER if source == "tiny" else TRANSFORMER_PRESETS[source]
    cfg = cfg.replace(**overrides)
    return cfg.replace(num_layers=layers) if layers else cfg


def ltx2_transformer_config(spec: tuple[str, dict], layers: int | None = None):
    """An LTX-2 transformer config from (preset of ltx_jax.releases_ltx2, overrides), cut to ``layers``."""
    # deferred: sizes.py loads ltx_jax only where a config is built
    from ltx_jax.releases_ltx2 import LTX2_TRANSFORMER_PRESETS

    source, overrides = spec
    cfg = LTX2_TRANSFORMER_PRESETS[source].replace(**overrides)
    return cfg.replace(num_layers=layers) if layers else cfg


def vae_config(spec: tuple[str, dict]):
    from ltx_jax.releases import VAE_PRESETS
    from ltx_jax.tiny_random import TINY_VAE

    source, overrides = spec
    return (TINY_VAE if source == "tiny" else VAE_PRESETS[source]).replace(**overrides)


def upsampler_config(spec: tuple[str, dict]):
    """"tiny" (ltx_jax.tiny_random's) or "released" (diffusers' defaults: the released spatial upscalers)."""
    from ltx_jax.configs import LatentUpsamplerConfig
    from ltx_jax.tiny_random import TINY_UPSAMPLER

    source, overrides = spec
    return (TINY_UPSAMPLER if source == "tiny" else LatentUpsamplerConfig()).replace(**overrides)


def t5_config(spec: tuple[str, dict]):
    from ltx_jax.configs import T5Config
    from ltx_jax.releases import T5_PRESETS
    from ltx_jax.tiny_random import TINY_T5

    source, overrides = spec
    if source == "custom":
        return T5Config(**overrides)
    return (TINY_T5 if source == "tiny" else T5_PRESETS[source]).replace(**overrides)


def vae_tiling(fields: dict):
    """``VAETiling`` from a Sizes' ``vae_tiling`` fields ({} = diffusers' enable_tiling defaults)."""
    from ltx_jax.models.vae import VAETiling

    return VAETiling(**fields)


def generation_defaults(release: str):
    """The generation defaults of a release of ltx_jax.releases (steps or distilled timesteps, guidance, decode
    timestep and noise) by name."""
    from ltx_jax.releases import get_release

    return get_release(release).defaults


def scheduler_config():
    """The LTX-Video flow-matching scheduler config (ours, and diffusers' constructor arguments via ``to_dict``)."""
    from ltx_jax.releases import LTX_SCHEDULER

    return LTX_SCHEDULER


def config_kwargs(cfg) -> dict:
    """A config dataclass as constructor keyword arguments of its diffusers / transformers class (same field names)."""
    return dataclasses.asdict(cfg)


def resolve_sizes(name: str, backend: str | None = None) -> Sizes:
    if name == "auto":
        name = "gpu" if backend == "gpu" else "cpu"
    return SIZES[name]


"""Forward-pass benchmark of the LTX-2 audio-video transformer (a release's width, cut to a few layers), optionally
against diffusers' ``LTX2VideoTransformer3DModel`` with the same weights.

    python -m benchmarks.bench_transformer --family ltx2                   # GPU: bf16, LTX-2 19B width x 4 layers,
                                                                           # 16x16x24 video latents (768x512x121)
    python -m benchmarks.bench_transformer --family ltx2 --compare-torch   # + diffusers on the same card and shapes
    python -m benchmarks.bench_transformer --family ltx2 --preset ltx-2.3-22b --shapes 2x4x4 --text-tokens 16
    python -m benchmarks.bench_ltx2_transformer ...                        # the same command line, directly

(from the repository root; on a CPU the defaults are float32, 2x4x4 video latents and 16 text tokens)

Each shape is a video latent grid F x H x W (F * H * W video tokens) with the audio tokens of the same clip: the video
lasts ``(F - 1) * temporal ratio + 1`` frames at 24 fps, and LTX-2's audio latents run at ``audio_sampling_rate /
audio_hop_length / audio_scale_factor`` per second (16 kHz / 160 / 4 = 25), rounded as diffusers' ``LTX2Pipeline``
does (121 frames -> 5.04 s -> 126 audio tokens). The text is ``--text-tokens`` tokens (diffusers' ``LTX2Pipeline``
pads prompts to ``max_sequence_length=1024``), right padded per batch row, shared by both streams.

What it reports per shape: the compile time of our jitted forward, its median wall time over ``--repeats`` runs after
``--warmup`` (every run blocks on both outputs), the analytic FLOPs of one forward (``ltx2_forward_flops``) and the
achieved TFLOP/s; with ``--compare-torch`` diffusers' median on the same inputs and weights (bf16 on GPU, float32 on
CPU; ``torch.no_grad``, CUDA synchronised), the speed-up (diffusers' time / ours: > 1 = we are faster) and the max
relative difference (max |ours - theirs| / max |theirs|) of the video and of the audio output. Outputs are checked
to be finite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import sample_times, write_json
from ltx_jax.configs_ltx2 import LTX2TransformerConfig
from ltx_jax.models import abstract_params, count_params
from ltx_jax.models.ltx2 import LTX2VideoTransformer3DModel
from ltx_jax.releases_ltx2 import LTX2_TRANSFORMER_PRESETS

FPS = 24.0  # the frame rate of the clip the shapes stand for (diffusers' LTX2Pipeline default, frame_rate=24)
GPU_SHAPES, CPU_SHAPES = "16x16x24", "2x4x4"  # 768x512x121: 16 latent frames x 16 x 24 = 6144 video tokens
GPU_TEXT_TOKENS, CPU_TEXT_TOKENS = 1024, 16  # LTX2Pipeline's max_sequence_length: prompts are padded to 1024


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    return [tuple(int(x) for x in item.lower().split("x")) for item in text.split(",")]


def video_frames(cfg: LTX2TransformerConfig, latent_frames: int) -> int:
    """Pixel frames of ``latent_frames`` latent frames (the VAE's causal first frame plus ``ratio`` per later one)."""
    return (latent_frames - 1) * cfg.vae_scale_factors[0] + 1


def audio_tokens_for(cfg: LTX2TransformerConfig, latent_frames: int, fps: float = FPS) -> int:
    """Audio latent tokens of the clip of ``latent_frames`` video latent frames at ``fps``: its seconds times the
    audio latents per second (``audio_sampling_rate / audio_hop_length / audio_scale_factor``), rounded as
    diffusers' LTX2Pipeline does (121 frames at 24 fps with LTX-2's 16 kHz / 160 / 4: 126)."""
    per_second = cfg.audio_sampling_rate / cfg.audio_hop_length / cfg.audio_scale_factor
    return max(1, round(video_frames(cfg, latent_frames) / fps * per_second))


def text_widths(cfg: LTX2TransformerConfig) -> tuple[int, int]:
    """Feature widths of the video and the audio text inputs (Gemma's features, or each stream's width where the
    text connectors project: LTX-2.3 and later)."""
    if cfg.use_prompt_embeddings:
        return cfg.caption_channels, cfg.caption_channels
    return cfg.cross_attention_dim, cfg.audio_cross_attention_dim


def ltx2_forward_flops(cfg: LTX2TransformerConfig, batch: int, video_tokens: int, audio_tokens: int,
                       text_tokens: int) -> int:
    """Analytic FLOPs of one forward pass: every matmul, 2 FLOPs per multiply-add.

    N, M, T: video, audio and text tokens; D, A: video and audio widths (heads x head dim); E: the text features; Hv,
    Ha: video and audio heads; L layers; feed-forwards 4x wide. Per layer:

      video self-attention        8 N D^2 (q, k, v, out)            + 4 N^2 D (scores, probabilities @ values)
      video text cross-attention  4 N D^2 (q, out) + 4 T D^2 (k, v) + 4 N T D
      audio self-attention        8 M A^2                           + 4 M^2 A
      audio text cross-attention  4 M A^2 + 4 T A^2                 + 4 M T A
      audio -> video (a2v)        q 2 N D A, k and v 4 M A^2, out 2 N A D  + 4 N M A (queries N, keys M, width A)
      video -> audio (v2a)        q 2 M A^2, k and v 4 N D A, out 2 M A^2  + 4 M N A
      feed-forwards               16 N D^2 + 16 M A^2
      gates (gated_attn, LTX-2.3) 2 x (2 N D Hv) + 2 N D Ha (video self / text / a2v), 3 x (2 M A Ha) (audio ones)

    Once per forward: proj_in / proj_out of each stream (2 N C D + 2 N D C', 2 M Ca A + 2 M A Ca'); the caption
    projections where the transformer has them (2 T (E D + D^2) + 2 T (E A + A^2)); the AdaLN-single linears of one
    timestep per sample, 2 (256 W + W^2 + k W^2) each: time_embed (D, k = 6 or 9 with cross_attn_mod), audio_time_embed
    (A, 6 or 9), the a2v / v2a scale-shift (D and A, k = 4) and gate (D and A, k = 1) embeddings, and LTX-2.3's prompt
    AdaLN (D and A, k = 2). Attention counts every text token, padding included (both implementations compute it).
    Norms, RoPE, softmax and the modulations are elementwise and left out.
    """
    n, m, t = video_tokens, audio_tokens, text_tokens
    d, a, e = cfg.inner_dim, cfg.audio_inner_dim, text_widths(cfg)
    hv, ha = cfg.num_attention_heads, cfg.audio_num_attention_heads
    per_layer = (
        8 * n * d * d + 4 * n * n * d  # video self-attention
        + 4 * n * d * d + 4 * t * d * d + 4 * n * t * d  # video text cross-attention
        + 8 * m * a * a + 4 * m * m * a  # audio self-attention
        + 4 * m * a * a + 4 * t * a * a + 4 * m * t * a  # audio text cross-attention
        + 4 * n * d * a + 4 * m * a * a + 4 * n * m * a  # audio -> video: q and out on video, k and v on audio
        + 4 * m * a * a + 4 * n * d * a + 4 * m * n * a  # video -> audio: q and out on audio, k and v on video
        + 16 * n * d * d + 16 * m * a * a  # feed-forwards D -> 4D -> D, A -> 4A -> A
    )
    if cfg.gated_attn:  # to_gate_logits of attn1, attn2 (video heads) and audio_to_video_attn (audio heads)
        per_layer += 2 * (2 * n * d * hv) + 2 * n * d * ha
    if cfg.audio_gated_attn:  # audio_attn1, audio_attn2, video_to_audio_attn
        per_layer += 3 * (2 * m * a * ha)

    def ada(width: int, k: int) -> int:  # AdaLayerNormSingle of one timestep: 256 -> W -> W, then W -> k W
        return 2 * (256 * width + width * width + k * width * width)

    outside = (
        2 * n * cfg.in_channels * d + 2 * n * d * cfg.video_out_channels  # video proj_in, proj_out
        + 2 * m * cfg.audio_in_channels * a + 2 * m * a * cfg.audio_channels_out  # audio proj_in, proj_out
        + ada(d, 9 if cfg.cross_attn_mod else 6) + ada(a, 9 if cfg.audio_cross_attn_mod else 6)
        + ada(d, 4) + ada(a, 4) + ada(d, 1) + ada(a, 1)  # a2v / v2a scale-shift and gate embeddings
    )
    if cfg.use_prompt_embeddings:  # caption projections E -> W -> W
        outside += 2 * t * (e[0] * d + d * d) + 2 * t * (e[1] * a + a * a)
    if cfg.prompt_modulation and cfg.use_prompt_adaln_single:  # prompt AdaLN of sigma
        outside += ada(d, 2) + ada(a, 2)
    return batch * (cfg.num_layers * per_layer + outside)


def make_inputs(cfg: LTX2TransformerConfig, batch: int, shape, audio_tokens: int, text_tokens: int,
                seed: int = 0) -> dict:
    """diffusers' forward arguments (its names) as float32 numpy arrays: packed video and audio latents, the text of
    each stream with right-padded masks (row b keeps all but (b + 1) eighths of its tokens, at least one), one
    timestep per row, and ``sigma`` (= the timestep, as LTX2Pipeline passes it) where the config uses it."""
    f, h, w = shape
    rng = np.random.default_rng(seed)
    video_width, audio_width = text_widths(cfg)
    mask = np.zeros((batch, text_tokens), np.float32)
    for b in range(batch):
        mask[b, : max(1, text_tokens - max(1, text_tokens // 8) * (b + 1))] = 1
    timestep = np.linspace(900.0, 300.0, batch).astype(np.float32)
    inputs = dict(
        hidden_states=rng.standard_normal((batch, f * h * w, cfg.in_channels), dtype=np.float32),
        audio_hidden_states=rng.standard_normal((batch, audio_tokens, cfg.audio_in_channels), dtype=np.float32),
        encoder_hidden_states=rng.standard_normal((batch, text_tokens, video_width), dtype=np.float32),
        audio_encoder_hidden_states=rng.standard_normal((batch, text_tokens, audio_width), dtype=np.float32),
        timestep=timestep, encoder_attention_mask=mask, audio_encoder_attention_mask=mask.copy())
    if cfg.prompt_modulation and cfg.use_prompt_adaln_single:
        inputs["sigma"] = timestep.copy()
    return inputs


def grid(shape, audio_tokens: int) -> dict:
    """The static forward arguments of a shape (latent grid sizes, fps, audio latent frames)."""
    f, h, w = shape
    return dict(num_frames=f, height=h, width=w, fps=FPS, audio_num_frames=audio_tokens)


def build_jax(cfg: LTX2TransformerConfig, dtype, attention_implementation=None):
    """Our model computing and keeping its params in ``dtype`` (params: ``random_params`` or
    ``TorchSide.jax_params``)."""
    return LTX2VideoTransformer3DModel(cfg, dtype=dtype, param_dtype=dtype,
                                       attention_implementation=attention_implementation)


def random_params(module, seed: int = 0):
    abstract = abstract_params(module)
    leaves, treedef = jax.tree_util.tree_flatten(abstract)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [(jax.random.normal(k, x.shape, jnp.float32) * 0.02).astype(x.dtype) for k, x in zip(keys, leaves)])


def jax_forward_fn(module, shape, audio_tokens: int):
    """Our jitted forward of one shape: (params, ``make_inputs``' arrays) -> (video, audio)."""
    static = grid(shape, audio_tokens)

    @jax.jit
    def forward(params, inputs):
        return tuple(module.apply({"params": params}, **inputs, **static))

    return forward


def rel_diff(ours, ref) -> float:
    """max |ours - ref| / max |ref|, in float32."""
    ours, ref = np.asarray(ours, np.float32), np.asarray(ref, np.float32)
    return float(np.max(np.abs(ours - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


class TorchSide:
    """diffusers' ``LTX2VideoTransformer3DModel`` with the same config (torch's default init, seed 0); our params are
    converted from its weights through ``weight_conversion.ltx2_transformer``'s rules, so both share them."""

    def __init__(self, cfg: LTX2TransformerConfig, dtype: str, threads: int | None = None):
        # deferred: torch and diffusers (the reference) are optional, loaded only where used
        import torch
        from diffusers import LTX2VideoTransformer3DModel as TorchLTX2

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        torch.manual_seed(0)
        kwargs = {k: v for k, v in cfg.to_dict().items() if k != "_class_name"}
        self.model = TorchLTX2(**kwargs).to(self.device, self.dtype).eval()

    def jax_params(self, module):
        """Our params from the live model's state dict (no disk), one tensor at a time."""
        # deferred: weight_conversion is needed only with the comparison
        from weight_conversion.ltx2_transformer import transformer_rules
        from weight_conversion.mapping import convert

        state = self.model.state_dict()

        class Source(dict):
            def __getitem__(self, key):
                return state[key].float().cpu().numpy()

        abstract = abstract_params(module)
        return convert(Source({k: None for k in state}), transformer_rules(module.config, abstract), abstract,
                       module.param_dtype, what="LTX-2 transformer", source_shape=lambda k: tuple(state[k].shape))

    def forward_fn(self, inputs: dict, shape, audio_tokens: int):
        """diffusers' forward on ``make_inputs``' arrays (latents and text in the model dtype) -> (video, audio)."""
        torch = self.torch
        floats = ("hidden_states", "audio_hidden_states", "encoder_hidden_states", "audio_encoder_hidden_states")
        args = {k: torch.from_numpy(np.asarray(v)).to(self.device) for k, v in inputs.items()}
        args.update({k: args[k].to(self.dtype) for k in floats})
        static = grid(shape, audio_tokens)

        def run():
            with torch.no_grad():
                return self.model(**args, **static, return_dict=False)

        return run

    def block(self, out):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        return out

    def reset_peak(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self) -> int | None:
        return int(self.torch.cuda.max_memory_allocated()) if self.device == "cuda" else None


def measure(module, params, batch: int, shape, text_tokens: int, repeats: int, warmup: int,
            torch_side: TorchSide | None = None):
    """One shape: our jitted forward (compiled first, then ``warmup`` untimed and ``repeats`` timed calls, each
    blocking on both outputs) and, with ``torch_side``, diffusers' on the same inputs. -> (row, our compiled
    program). The row: shape, video / audio / text tokens, flops, compile_s, ms (median), times_ms, tflops, finite;
    with torch: torch_ms, torch_times_ms, torch_tflops, torch_peak_bytes, ratio (ours / theirs), speedup (theirs /
    ours), rel_diff_video, rel_diff_audio, max_rel_diff (the larger)."""
    cfg = module.config
    audio = audio_tokens_for(cfg, shape[0])
    tokens = shape[0] * shape[1] * shape[2]
    flops = ltx2_forward_flops(cfg, batch, tokens, audio, text_tokens)
    inputs = make_inputs(cfg, batch, shape, audio, text_tokens)
    dev_inputs = jax.block_until_ready({k: jnp.asarray(v) for k, v in inputs.items()})
    start = time.perf_counter()
    compiled = jax_forward_fn(module, shape, audio).lower(params, dev_inputs).compile()
    compile_s = time.perf_counter() - start
    outs = jax.block_until_ready(compiled(params, dev_inputs))
    outs = [np.asarray(o.astype(jnp.float32)) for o in outs]
    finite = all(bool(np.isfinite(o).all()) for o in outs)
    times = sample_times(lambda: jax.block_until_ready(compiled(params, dev_inputs)), repeats, warmup)
    ours = statistics.median(times)
    row = {"shape": "x".join(map(str, shape)), "video_tokens": tokens, "audio_tokens": audio,
           "text_tokens": text_tokens, "flops": flops, "compile_s": compile_s, "ms": ours * 1e3,
           "times_ms": [t * 1e3 for t in times], "tflops": flops / ours / 1e12, "finite": finite}
    if torch_side is not None:
        torch_side.reset_peak()
        run = torch_side.forward_fn(inputs, shape, audio)
        ref = torch_side.block(run())
        ttimes = sample_times(lambda: torch_side.block(run()), repeats, warmup)
        theirs = statistics.median(ttimes)
        ref = [r.float().cpu().numpy() for r in ref]
        diffs = [rel_diff(o, r) for o, r in zip(outs, ref)]
        row.update(torch_ms=theirs * 1e3, torch_times_ms=[t * 1e3 for t in ttimes], torch_tflops=flops / theirs / 1e12,
                   torch_peak_bytes=torch_side.peak_bytes(), ratio=ours / theirs, speedup=theirs / ours,
                   rel_diff_video=diffs[0], rel_diff_audio=diffs[1], max_rel_diff=max(diffs),
                   torch_finite=all(bool(np.isfinite(r).all()) for r in ref))
    return row, compiled


def parse_args(argv, on_gpu: bool):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_transformer --family ltx2",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ltx-2-19b", choices=sorted(LTX2_TRANSFORMER_PRESETS))
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--shapes", default=GPU_SHAPES if on_gpu else CPU_SHAPES,
                        help="video latent frames x height x width, comma separated (the audio tokens follow)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--text-tokens", type=int, default=GPU_TEXT_TOKENS if on_gpu else CPU_TEXT_TOKENS)
    parser.add_argument("--dtype", default="bfloat16" if on_gpu else "float32", choices=["float32", "bfloat16"])
    parser.add_argument("--attention", default=None, choices=[None, "xla", "cudnn"], help="default: automatic")
    parser.add_argument("--repeats", type=int, default=10 if on_gpu else 5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compare-torch", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    on_gpu = jax.default_backend() == "gpu"
    args = parse_args(argv, on_gpu)
    cfg = LTX2_TRANSFORMER_PRESETS[args.preset].replace(num_layers=args.layers)
    dtype = jnp.dtype(args.dtype)
    shapes = parse_shapes(args.shapes)
    device = jax.devices()[0].device_kind
    print(f"device: {device} ({jax.default_backend()}), jax {jax.__version__}, {args.preset} x {args.layers} layers "
          f"(video {cfg.inner_dim} wide, audio {cfg.audio_inner_dim}), {args.dtype}, batch {args.batch}, "
          f"{args.text_tokens} text tokens")

    torch_side = TorchSide(cfg, args.dtype, args.torch_threads) if args.compare_torch else None
    module = build_jax(cfg, dtype, args.attention)
    params = torch_side.jax_params(module) if torch_side is not None else random_params(module)
    params = jax.block_until_ready(params)
    print(f"params: {count_params(params):,} ({'shared with diffusers' if torch_side else 'random'}); attention: "
          f"{module.resolved_attention_implementation}")

    results = {"family": "ltx2", "device": device, "backend": jax.default_backend(), "jax": jax.__version__,
               "preset": args.preset, "config": cfg.to_dict(), "params": count_params(params), "dtype": args.dtype,
               "layers": args.layers, "batch": args.batch, "text_tokens": args.text_tokens, "fps": FPS, "shapes": []}
    header = (f"{'video FxHxW':>12} {'video tok':>9} {'audio tok':>9} {'text tok':>8} {'GFLOP':>9} {'compile s':>9} "
              f"{'ours ms':>9} {'TFLOP/s':>8}")
    if torch_side:
        header += f" {'torch ms':>9} {'speedup':>7} {'rel diff video':>14} {'rel diff audio':>14}"
    print(header)
    for shape in shapes:
        row, _ = measure(module, params, args.batch, shape, args.text_tokens, args.repeats, args.warmup, torch_side)
        if not row["finite"]:
            raise RuntimeError(f"non-finite output at {row['shape']}")
        line = (f"{row['shape']:>12} {row['video_tokens']:>9} {row['audio_tokens']:>9} {row['text_tokens']:>8} "
                f"{row['flops'] / 1e9:>9.1f} {row['compile_s']:>9.2f} {row['ms']:>9.2f} {row['tflops']:>8.3f}")
        if torch_side:
            line += (f" {row['torch_ms']:>9.2f} {row['speedup']:>7.2f} {row['rel_diff_video']:>14.2e} "
                     f"{row['rel_diff_audio']:>14.2e}")
        print(line, flush=True)
        results["shapes"].append(row)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

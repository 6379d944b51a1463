"""Benchmark the LTX-Video 0.9.5 VAE decoder (random weights) against diffusers, and the memory of tiled decoding.

CPU (default, fp32):
  * decode time at latent 3x8x8 (17 x 256 x 256 video), ours (jit, after warm-up) and diffusers' decoder with the
    same weights in the same run, their ratio and their max relative difference;
  * peak memory of tiled decode (diffusers' default tiles, temporal tiling on) for F and 2F latent frames, from
    XLA's compiled memory analysis (temp + output bytes), and the ratio; untiled decode for contrast; and the
    compile time of each tiled program (full temporal tiles run in one lax.scan, so it should not grow).
GPU (--gpu, bf16): decode time at 768x512x121 (latent 16x16x24) tiled and untiled with peak device memory, the
  tiled-memory ratio for 16 and 32 latent frames, and diffusers on CUDA when torch has it.

Usage, from the repository root:
    python -m benchmarks.bench_vae [--gpu] [--repeats 3] [--no-diffusers] [--memory-frames 8]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import median_time
from ltx_jax.models import abstract_params, init_params
from ltx_jax.releases import VAE_PRESETS
from ltx_jax.models.vae import AutoencoderKLLTXVideo, Decoder3d, VAETiling

CONFIG = VAE_PRESETS["ltx-video-0.9.5"]
TIMESTEP = 0.05

try:
    import torch
    from diffusers.models.autoencoders.autoencoder_kl_ltx import LTXVideoDecoder3d
except ImportError:  # the JAX numbers stand alone
    torch = None




def torch_decoder():
    cfg = CONFIG
    torch.manual_seed(0)
    return LTXVideoDecoder3d(
        in_channels=cfg.latent_channels, out_channels=cfg.out_channels,
        block_out_channels=cfg.decoder_block_out_channels,
        spatio_temporal_scaling=cfg.decoder_spatio_temporal_scaling, layers_per_block=cfg.decoder_layers_per_block,
        patch_size=cfg.patch_size, patch_size_t=cfg.patch_size_t, resnet_norm_eps=cfg.resnet_norm_eps,
        is_causal=cfg.decoder_causal, inject_noise=cfg.decoder_inject_noise,
        timestep_conditioning=cfg.timestep_conditioning,
        upsample_residual=cfg.upsample_residual, upsample_factor=cfg.upsample_factor,
    ).eval()


def vae_params(decoder_params, dtype) -> dict:
    """Params for ``AutoencoderKLLTXVideo.decode``: the decoder's, plus the latent statistics (the encoder is
    unused)."""
    latent = CONFIG.latent_channels
    return {"decoder": decoder_params, "latents_mean": jnp.zeros((latent,), dtype),
            "latents_std": jnp.ones((latent,), dtype)}


def decoder_params_from_torch(model) -> dict:
    from weight_conversion.mapping import convert
    from weight_conversion.vae import vae_rules

    abstract = abstract_params(Decoder3d(CONFIG))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    params = convert(state, vae_rules(abstract), abstract, jnp.float32, what="vae decoder")
    return jax.tree_util.tree_map(lambda p, a: p.reshape(a.shape), params, abstract)


def random_decoder_params(dtype) -> dict:
    return init_params(Decoder3d(CONFIG, dtype=dtype, param_dtype=dtype), jax.random.PRNGKey(0))


def decode_fn(dtype, tiling):
    vae = AutoencoderKLLTXVideo(CONFIG, dtype=dtype, param_dtype=dtype)
    return jax.jit(lambda p, z, t: vae.apply({"params": p}, z, t, method="decode", tiling=tiling))


def compiled_memory(dtype, tiling, latent_shape) -> tuple[int, int, float]:
    """(temp bytes, output bytes, compile seconds) of decode at ``latent_shape`` [B, F, H, W, L], from shapes alone."""
    abstract_decoder = jax.eval_shape(lambda: random_decoder_params(dtype))
    params = jax.eval_shape(lambda: vae_params(abstract_decoder, dtype))
    z = jax.ShapeDtypeStruct(latent_shape, dtype)
    t = jax.ShapeDtypeStruct((latent_shape[0],), jnp.float32)
    start = time.perf_counter()
    compiled = decode_fn(dtype, tiling).lower(params, z, t).compile()
    seconds = time.perf_counter() - start
    stats = compiled.memory_analysis()
    return int(stats.temp_size_in_bytes), int(stats.output_size_in_bytes), seconds


def gib(n: float) -> str:
    return f"{n / 2**30:8.2f} GiB" if n >= 2**30 else f"{n / 2**20:8.1f} MiB"


def run_cpu(args, rows):
    dtype = jnp.float32
    shape = (1, 3, 8, 8, CONFIG.latent_channels)
    z = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t = np.full((1,), TIMESTEP, np.float32)
    if torch is not None and not args.no_diffusers:
        torch.set_num_threads(os.cpu_count() or 1)
        model = torch_decoder()
        params = vae_params(decoder_params_from_torch(model), dtype)
        z_t, t_t = torch.from_numpy(z).permute(0, 4, 1, 2, 3), torch.from_numpy(t)

        def run_torch():
            with torch.no_grad():
                return model(z_t, t_t)

        t_ref = median_time(run_torch, args.repeats)
        ref = run_torch().permute(0, 2, 3, 4, 1).numpy()
        del model
    else:
        params, t_ref, ref = vae_params(random_decoder_params(dtype), dtype), None, None
    fn = decode_fn(dtype, None)
    start = time.perf_counter()
    out = fn(params, z, t).block_until_ready()
    compile_s = time.perf_counter() - start
    t_ours = median_time(lambda: fn(params, z, t).block_until_ready(), args.repeats)
    label = f"decode fp32 CPU latent 3x8x8 -> {out.shape[1]}x{out.shape[2]}x{out.shape[3]}"
    rows.append((label + " (ours)", f"{t_ours * 1e3:10.0f} ms", f"first call {compile_s:.1f} s"))
    if t_ref is not None:
        err = float(np.max(np.abs(np.asarray(out) - ref)) / np.max(np.abs(ref)))
        notes = f"ratio diffusers/ours {t_ref / t_ours:.2f}, rel err {err:.1e}"
        rows.append((label + " (diffusers)", f"{t_ref * 1e3:10.0f} ms", notes))
    params = out = None  # frees them (the timing closure above names params)

    memory_table(rows, dtype, "fp32 CPU", (8, 8), args.memory_frames, with_untiled=not args.skip_untiled_memory)


def memory_table(rows, dtype, where, hw, f, with_untiled):
    """Compiled temp / output bytes of tiled (and untiled) decode for F and 2F latent frames, and the ratios."""
    mem = {}
    for frames in (f, 2 * f):
        for name, tiling in (("tiled", VAETiling()), ("untiled", None)):
            if name == "untiled" and not with_untiled:
                continue
            temp, out, seconds = compiled_memory(dtype, tiling, (1, frames, *hw, CONFIG.latent_channels))
            mem[name, frames] = temp + out
            rows.append((f"{name} decode {where} latent {frames}x{hw[0]}x{hw[1]}: temp+output", gib(temp + out),
                         f"temp {gib(temp).strip()}, output {gib(out).strip()}, compile {seconds:.1f} s"))
    for name in ("tiled", "untiled"):
        if (name, f) in mem:
            ratio = mem[name, 2 * f] / mem[name, f]
            rows.append((f"{name} peak memory ratio {2 * f} / {f} latent frames", f"{ratio:10.2f}x", ""))


def run_gpu(args, rows):
    dtype = jnp.bfloat16
    frames, height, width = args.gpu_latent
    shape = (1, frames, height, width, CONFIG.latent_channels)  # default 16x16x24: 121 x 512 x 768
    params = vae_params(random_decoder_params(dtype), dtype)
    z = jnp.asarray(np.random.default_rng(0).standard_normal(shape), dtype)
    t = jnp.full((1,), TIMESTEP, jnp.float32)
    for name, tiling in (("tiled", VAETiling()), ("untiled", None)):
        fn = decode_fn(dtype, tiling)
        compiled = fn.lower(params, z, t).compile()
        stats = compiled.memory_analysis()
        seconds = median_time(lambda: compiled(params, z, t).block_until_ready(), args.repeats)
        rows.append((f"{name} decode bf16 {jax.default_backend()} latent {frames}x{height}x{width}",
                     f"{seconds * 1e3:10.1f} ms",
                     f"temp+output {gib(stats.temp_size_in_bytes + stats.output_size_in_bytes).strip()}"))
    peak = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in peak:
        rows.append(("process peak device memory (all of the above)", gib(peak["peak_bytes_in_use"]), ""))
    memory_table(rows, dtype, f"bf16 {jax.default_backend()}", (height, width), frames, with_untiled=True)
    if torch is not None and torch.cuda.is_available() and not args.no_diffusers:
        # deferred: diffusers (the reference) is optional, loaded only where used
        from diffusers import AutoencoderKLLTXVideo as TorchVAE

        vae = TorchVAE(**{k: v for k, v in CONFIG.to_dict().items() if k != "_class_name"}).to(
            "cuda", torch.bfloat16).eval()
        z_t = torch.from_numpy(np.asarray(z, np.float32)).permute(0, 4, 1, 2, 3).to("cuda", torch.bfloat16)
        t_t = torch.full((1,), TIMESTEP, device="cuda", dtype=torch.bfloat16)
        for name, tiled in (("tiled", True), ("untiled", False)):
            vae.use_tiling = vae.use_framewise_decoding = tiled
            torch.cuda.reset_peak_memory_stats()

            def run():
                with torch.no_grad():
                    vae.decode(z_t, t_t)
                torch.cuda.synchronize()

            seconds = median_time(run, args.repeats)
            rows.append((f"{name} decode bf16 cuda latent {frames}x{height}x{width} (diffusers)",
                         f"{seconds * 1e3:10.1f} ms", f"peak {gib(torch.cuda.max_memory_allocated()).strip()}"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="GPU sizes in bf16 (768x512x121)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-diffusers", action="store_true", help="skip the diffusers reference")
    parser.add_argument("--memory-frames", type=int, default=8, help="F for the F / 2F tiled-memory ratio on CPU")
    parser.add_argument("--gpu-latent", type=lambda v: tuple(int(x) for x in v.split(",")), default=(16, 16, 24),
                        help="latent frames,height,width for --gpu (default 16,16,24 = 121x512x768)")
    parser.add_argument("--skip-untiled-memory", action="store_true", help="only analyse the tiled programs on CPU")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, str]] = []
    print(f"backend {jax.default_backend()}, devices {jax.devices()}")
    (run_gpu if args.gpu else run_cpu)(args, rows)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'what':<{width}}  {'value':>12}  notes")
    for what, value, notes in rows:
        print(f"{what:<{width}}  {value:>12}  {notes}")


if __name__ == "__main__":
    main()

"""What the pipelines run besides the denoising loop: the VAE's encode and decode programs, stage timings, the
persistent compilation cache, checkpoint paths (hub ids) and the errors the stages raise."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp

from ltx_jax.programs import Program


# Above this many output pixels (frames x height x width) the VAE decodes in tiles by default. The decoder's widest
# activations hold ~128 channels at full resolution, several alive at once: 768x512x49 = 19M pixels is ~5 GB per
# bf16 activation, past which an untiled decode stops fitting next to the 13B transformer on an 80 GB card.
AUTO_TILING_PIXELS = 768 * 512 * 49
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ltx_jax", "jax_compilation_cache")


def enable_compilation_cache(cache_dir: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache, so a second process with the same shapes skips compilation."""
    cache_dir = cache_dir or os.environ.get("LTX_JAX_CACHE_DIR", DEFAULT_CACHE_DIR)
    os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache_dir


class NonFiniteError(RuntimeError):
    """NaN or Inf appeared in a stage's output (the message names the stage, and the step for denoising)."""


class StageTimings:
    """Seconds of each stage of the last call, in the order they ran (each stage blocks on its result before its
    clock stops); ``total`` is the whole call. Read as ``timings.denoising`` or ``timings.stages["denoising"]``."""

    def __init__(self):
        self.stages: dict[str, float] = {}
        self.total = 0.0

    def __getattr__(self, name: str) -> float:
        stages = self.__dict__.get("stages", {})
        if name in stages:
            return stages[name]
        raise AttributeError(f"no stage {name!r} in the last call (stages: {', '.join(stages) or 'none'})")

    def as_dict(self) -> dict[str, float]:
        """{stage: seconds, ..., "total": seconds}."""
        return {**self.stages, "total": self.total}

    def __str__(self) -> str:
        parts = [f"{name.replace('_', ' ')} {seconds:.2f} s" for name, seconds in self.stages.items()]
        return ", ".join(parts + [f"total {self.total:.2f} s"])


def tone_map_latents(latents: jax.Array, compression: jax.Array | float) -> jax.Array:
    """The original package's (and diffusers') ``tone_map_latents``: a sigmoid compression of large values,
    ``x * (1 - 0.8 s sigmoid(4 s (|x| - 1)))`` with ``s = 0.75 * compression`` (0 = identity, 1 = the most)."""
    scale = compression * 0.75
    return latents * (1.0 - 0.8 * scale * jax.nn.sigmoid(4.0 * scale * (jnp.abs(latents) - 1.0)))


def _decode_program(vae, vae_params, latents, timestep, noise_scale, key, tiling, tone_map=None, sharding=None):
    """Normalised latents [B, F, H, W, C] -> frames in [0, 1]: tone-map (when ``tone_map`` is given), denormalise,
    add decode noise, decode, map [-1, 1] -> [0, 1]. With a ``ShardingPlan``, a tiled decode deals its spatial tiles
    over the devices (``AutoencoderKLLTXVideo.decode(spread=)``); a whole decode splits the videos over the batch
    axes."""
    if sharding is not None:
        latents = sharding.constrain(latents, "batch", None, None, None, None)
    if tone_map is not None:
        latents = tone_map_latents(latents, tone_map)
    latents = vae.apply({"params": vae_params}, latents, method="denormalize_latents")
    if timestep is not None:
        noise = jax.random.normal(key, latents.shape, jnp.float32)
        scale = noise_scale[:, None, None, None, None]
        latents = (1 - scale) * latents + scale * noise
    latents = latents.astype(vae.dtype)
    noise_key = jax.random.fold_in(key, 1)  # the decoder's own noise injection (0.9.1 VAEs)
    video = vae.apply({"params": vae_params}, latents, timestep, method="decode", key=noise_key, tiling=tiling,
                      spread=sharding)
    frames = jnp.clip(video.astype(jnp.float32) / 2 + 0.5, 0.0, 1.0)
    if sharding is not None:  # whole on every device, so every host can read them (several hosts)
        frames = jax.lax.with_sharding_constraint(frames, sharding.replicated())
    return frames, jnp.all(jnp.isfinite(frames))  # NaN survives the clip


jitted_decode = Program(_decode_program, "decoding", static=("vae", "tiling", "sharding"), params=("vae_params",),
                        detail=lambda a: "whole" if a["tiling"] is None else "tiled")


def _encode_program(vae, vae_params, video, key):
    """Frames [B, F, H, W, 3] in [-1, 1] -> normalised latents [B, F', H', W', C] float32: a posterior sample
    (mean + std * N(0, 1) from ``key``, as diffusers' ``retrieve_latents`` samples it), normalised."""
    mean, logvar = vae.apply({"params": vae_params}, video.astype(vae.dtype), method="encode")
    mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
    sample = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, jnp.float32)
    return vae.apply({"params": vae_params}, sample, method="normalize_latents")


jitted_encode = Program(_encode_program, "encoding", static=("vae",), params=("vae_params",))


def write_model_index(path: str) -> None:
    """Writes a minimal diffusers ``model_index.json`` (used when saving a tiny random pipeline)."""
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump({"_class_name": "LTXPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                   "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
                   "transformer": ["diffusers", "LTXVideoTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLLTXVideo"]},
                  f, indent=2)

"""The VAE's compiled programs that every pipeline runs around the denoising loop: the encode of images and clips
(a posterior sample) and the decode of latents to frames (tone mapping, decode noise, tiling)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ltx_jax.pipelines.conditioning import resize_bilinear
from ltx_jax.programs import Program

# Above this many output pixels (frames x height x width) the VAE decodes in tiles by default. The decoder's widest
# activations hold ~128 channels at full resolution, several alive at once: 768x512x49 = 19M pixels is ~5 GB per
# bf16 activation, past which an untiled decode stops fitting next to the 13B transformer on an 80 GB card.
AUTO_TILING_PIXELS = 768 * 512 * 49


def tone_map_latents(latents: jax.Array, compression: jax.Array | float) -> jax.Array:
    """The original package's (and diffusers') ``tone_map_latents``: a sigmoid compression of large values,
    ``x * (1 - 0.8 s sigmoid(4 s (|x| - 1)))`` with ``s = 0.75 * compression`` (0 = identity, 1 = the most)."""
    scale = compression * 0.75
    return latents * (1.0 - 0.8 * scale * jax.nn.sigmoid(4.0 * scale * (jnp.abs(latents) - 1.0)))


def to_uint8(frames: jax.Array) -> jax.Array:
    """Frames in [0, 1] -> uint8 ``round(clip(frames, 0, 1) * 255)`` (on the device, as ``ltx_jax.video.to_uint8``
    does on the host)."""
    return jnp.clip(jnp.round(frames.astype(jnp.float32) * 255.0), 0, 255).astype(jnp.uint8)


def decoded_video(vae, vae_params, latents, timestep, noise_scale, key, tiling, tone_map=None, sharding=None,
                  noise=None) -> jax.Array:
    """Normalised latents [B, F, H, W, C] -> the VAE's video [B, F', H', W', 3] float32, about [-1, 1], not clipped:
    tone-map (when ``tone_map`` is given), denormalise, add decode noise (``noise``, [B, F, H, W, C] float32, or drawn
    from ``key``), decode (the decoder's own noise injection from ``fold_in(key, 1)``). With a ``ShardingPlan``, a
    tiled decode deals its spatial tiles over the devices (``AutoencoderKLLTXVideo.decode(spread=)``)."""
    if tone_map is not None:
        latents = tone_map_latents(latents, tone_map)
    latents = vae.apply({"params": vae_params}, latents, method="denormalize_latents")
    if timestep is not None:
        noise = jax.random.normal(key, latents.shape, jnp.float32) if noise is None else noise
        scale = noise_scale[:, None, None, None, None]
        latents = (1 - scale) * latents + scale * noise
    latents = latents.astype(vae.dtype)
    noise_key = jax.random.fold_in(key, 1)  # the decoder's own noise injection (0.9.1 VAEs)
    video = vae.apply({"params": vae_params}, latents, timestep, method="decode", key=noise_key, tiling=tiling,
                      spread=sharding)
    return video.astype(jnp.float32)


def _decode_program(vae, vae_params, latents, timestep, noise_scale, key, tiling, tone_map=None, sharding=None,
                    as_uint8: bool = False):
    """Normalised latents [B, F, H, W, C] -> frames in [0, 1] float32 (uint8 with ``as_uint8``) and whether they
    are finite: ``decoded_video`` mapped [-1, 1] -> [0, 1]. With a ``ShardingPlan`` a whole decode splits the videos
    over the batch axes."""
    if sharding is not None:
        latents = sharding.constrain(latents, "batch", None, None, None, None)
    video = decoded_video(vae, vae_params, latents, timestep, noise_scale, key, tiling, tone_map, sharding)
    frames = jnp.clip(video / 2 + 0.5, 0.0, 1.0)
    if sharding is not None:  # whole on every device, so every host can read them (several hosts)
        frames = jax.lax.with_sharding_constraint(frames, sharding.replicated())
    finite = jnp.all(jnp.isfinite(frames))  # NaN survives the clip
    return (to_uint8(frames) if as_uint8 else frames), finite


jitted_decode = Program(_decode_program, "decoding", static=("vae", "tiling", "sharding", "as_uint8"),
                        params=("vae_params",),
                        detail=lambda a: "whole" if a["tiling"] is None else "tiled")


def _encode_program(vae, vae_params, video, key):
    """Frames [B, F, H, W, 3] in [-1, 1] -> normalised latents [B, F', H', W', C] float32: a posterior sample
    (mean + std * N(0, 1) from ``key``, as diffusers' ``retrieve_latents`` samples it), or its mode (the mean)
    when ``key`` is None, normalised."""
    mean, logvar = vae.apply({"params": vae_params}, video.astype(vae.dtype), method="encode")
    mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
    sample = mean if key is None else mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, jnp.float32)
    return vae.apply({"params": vae_params}, sample, method="normalize_latents")


jitted_encode = Program(_encode_program, "encoding", static=("vae",), params=("vae_params",))


def _resize_program(frames: jax.Array, height: int, width: int, as_uint8: bool = False) -> jax.Array:
    """Frames [B, F, H, W, 3] in [0, 1] -> [B, F, height, width, 3] resized bilinearly as torch does (the original's
    multi-scale output), float32 or uint8; on the device, between the decode and the one transfer to the host."""
    resized = resize_bilinear(frames, height, width)
    return to_uint8(resized) if as_uint8 else resized


jitted_resize = Program(_resize_program, "resizing", static=("height", "width", "as_uint8"))

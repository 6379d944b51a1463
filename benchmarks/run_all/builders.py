"""Every use of the ltx_jax / weight_conversion model API the sections make: modules, random params, weights
converted from diffusers, the jitted VAE decode, the pipeline and its tokenizer, param-tree sizes.

Sections build models only through these functions (and configs and presets through sizes.py), so a change of that
API is an edit here. ltx_jax is imported inside each function: importing the package (``--list``, ``--help``, the
parent of the section processes) never loads it or JAX.
"""

from __future__ import annotations

from .sizes import NEGATIVE_PROMPT, PROMPT


# ------------------------------------------------------------------------------------------------- modules


def transformer_module(cfg, dtype):
    """Our ``LTXVideoTransformer3DModel`` computing and keeping its params in ``dtype``."""
    import jax.numpy as jnp

    from ltx_jax.models.transformer import LTXVideoTransformer3DModel

    dt = jnp.dtype(dtype)
    return LTXVideoTransformer3DModel(cfg, dtype=dt, param_dtype=dt)


def vae_module(cfg, dtype):
    """Our ``AutoencoderKLLTXVideo`` computing and keeping its params in ``dtype``."""
    import jax.numpy as jnp

    from ltx_jax.models.vae import AutoencoderKLLTXVideo

    dt = jnp.dtype(dtype)
    return AutoencoderKLLTXVideo(cfg, dtype=dt, param_dtype=dt)


def t5_module(cfg, dtype):
    """Our ``T5EncoderModel`` computing and keeping its params in ``dtype``."""
    import jax.numpy as jnp

    from ltx_jax.models.t5 import T5EncoderModel

    dt = jnp.dtype(dtype)
    return T5EncoderModel(cfg, dtype=dt, param_dtype=dt)


# -------------------------------------------------------------------------------------------------- params


def rng_key(seed: int = 0):
    """A typed key of the "rbg" generator: random init programs compile several times faster than with threefry
    (18 s -> 5 s for a small VAE decoder on CPU), and random weights need no particular generator."""
    import jax

    return jax.random.key(seed, impl="rbg")


def init_params(module, key):
    """Random params of any of our models, made under jit on the default device (never a float32 host copy;
    ``ltx_jax.models.init_params``)."""
    from ltx_jax.models import init_params as init

    return init(module, key)


def init_vae_decoder(cfg, dtype, key):
    """Params of ``AutoencoderKLLTXVideo.decode`` only (decoder + latent statistics), made on the device."""
    import jax.numpy as jnp

    from ltx_jax.models.vae import Decoder3d

    dt = jnp.dtype(dtype)
    return vae_decode_params(init_params(Decoder3d(cfg, dtype=dt, param_dtype=dt), key), cfg, dt)


def vae_decode_params(decoder_params, cfg, dtype) -> dict:
    import jax.numpy as jnp

    latent = cfg.latent_channels
    return {"decoder": decoder_params, "latents_mean": jnp.zeros((latent,), dtype),
            "latents_std": jnp.ones((latent,), dtype)}


def vae_decoder_params_from_torch(torch_decoder, cfg, dtype) -> dict:
    """diffusers ``LTXVideoDecoder3d`` weights -> our decoder params (through the loader's conversion table)."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models import abstract_params
    from ltx_jax.models.vae import Decoder3d
    from weight_conversion.mapping import convert
    from weight_conversion.vae import vae_rules

    abstract = abstract_params(Decoder3d(cfg))
    state = torch_decoder.state_dict()

    class Source(dict):  # one tensor at a time to the host, as the conversion asks for it
        def __getitem__(self, key):
            return state[key].detach().float().cpu().numpy()

    params = convert(Source({k: None for k in state}), vae_rules(abstract), abstract, dtype, what="vae decoder",
                     source_shape=lambda k: tuple(state[k].shape))
    return jax.tree_util.tree_map(lambda p, a: jnp.asarray(p).reshape(a.shape), params, abstract)


# ------------------------------------------------------------------------------------- programs, pipeline


def vae_decode_fn(cfg, dtype, tiling):
    """``decode`` of our VAE under jit, as a function of (params, latents [B, F, H, W, C], timestep [B])."""
    import jax

    vae = vae_module(cfg, dtype)
    return jax.jit(lambda p, z, t: vae.apply({"params": p}, z, t, method="decode", tiling=tiling))


def build_pipeline(tcfg, vcfg, t5cfg, dtype, preset: str, tokenizer, params: dict | None = None, key=None):
    """Our LTXPipeline over the given configs with the defaults of the release named ``preset``; random params made
    on the default device unless ``params`` is given ({"transformer", "vae", "text_encoder"}). Returns
    (pipeline, params)."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.pipelines import LTXPipeline
    from ltx_jax.releases import get_release
    from ltx_jax.text_encoding import PromptEncoder

    dt = jnp.dtype(dtype)
    transformer, vae, t5 = transformer_module(tcfg, dt), vae_module(vcfg, dt), t5_module(t5cfg, dt)
    if params is None:
        k_tr, k_vae, k_t5 = jax.random.split(rng_key(0) if key is None else key, 3)
        # The VAE's decoder only (and the latent statistics): text-to-video never encodes.
        params = {"text_encoder": init_params(t5, k_t5), "transformer": init_params(transformer, k_tr),
                  "vae": init_vae_decoder(vcfg, dt, k_vae)}
        params = jax.block_until_ready(params)
    pipe = LTXPipeline(transformer, params["transformer"], vae, params["vae"],
                       PromptEncoder(tokenizer, t5, params["text_encoder"]), release=get_release(preset),
                       progress=False)
    return pipe, params


def build_multi_scale_pipeline(tcfg, vcfg, t5cfg, ucfg, dtype, preset: str, tokenizer):
    """Our LTXMultiScalePipeline over ``build_pipeline``'s components (random params) and a latent upsampler of
    ``ucfg`` with random params, the recipe of the release named ``preset``. Returns (pipeline, params), params
    with the upsampler's under "latent_upsampler"."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.models.latent_upsampler import LatentUpsampler
    from ltx_jax.pipelines import LTXMultiScalePipeline

    pipe, params = build_pipeline(tcfg, vcfg, t5cfg, dtype, preset, tokenizer)
    dt = jnp.dtype(dtype)
    upsampler = LatentUpsampler(ucfg, dtype=dt, param_dtype=dt)
    upsampler_params = jax.block_until_ready(init_params(upsampler, rng_key(7)))
    return (LTXMultiScalePipeline.from_pipe(pipe, upsampler, upsampler_params),
            {**params, "latent_upsampler": upsampler_params})


def word_tokenizer(max_length: int = 128):
    """A T5-like word-level tokenizer over this run's prompts, from ``tokenizers`` alone (the GPU machines have no
    sentencepiece): ``ltx_jax.tiny_random.word_level_tokenizer``."""
    from ltx_jax.tiny_random import word_level_tokenizer

    return word_level_tokenizer(max_length, texts=(PROMPT, NEGATIVE_PROMPT))


def pipeline_tiles_vae(frames: int, height: int, width: int) -> bool:
    """Whether our pipeline decodes a video of this size tiled (it does above ``AUTO_TILING_PIXELS``)."""
    from ltx_jax.pipelines import AUTO_TILING_PIXELS

    return frames * height * width > AUTO_TILING_PIXELS


# --------------------------------------------------------------------------------------------- param trees


def count_params(tree) -> int:
    """Number of parameters in a (possibly abstract) param tree."""
    from ltx_jax.models import count_params as count

    return count(tree)


def tree_bytes(tree) -> int:
    import jax

    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))


def tree_cast(tree, dtype):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

"""VAE parity with diffusers' AutoencoderKLLTXVideo (fp32, tiny odd configs of the 0.9.0, 0.9.1 and 0.9.5 kinds),
tiled decoding against diffusers' tiled decoding, noise injection, and loading from every layout.

Each tiny config is also written as a Lightricks single file with a hand-written native config (Lightricks'
``encoder_blocks`` / ``decoder_blocks`` vocabulary), so the native parser and the block-index remap are checked
on layouts other than the released ones; the remap itself is checked against diffusers' own single-file
converter on the released presets at full size (meta tensors, no memory).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import randomize_, rel_err, report
from diffusers import AutoencoderKLLTXVideo as TorchVAE
from safetensors.torch import load_file, save_file

from ltx_jax.configs import VAEConfig
from ltx_jax.models import abstract_params
from ltx_jax.models.vae import AutoencoderKLLTXVideo, VAETiling, denormalize_latents, normalize_latents
from ltx_jax.models.vae_blocks import injection_noise
from ltx_jax.releases import VAE_PRESETS
from vae_configs import NATIVE, RELEASED_NATIVE, TINY
from weight_conversion.safetensors_io import CheckpointError
from weight_conversion.vae import (
    config_from_native,
    infer_native_config,
    load_vae,
    native_key_function,
    save_vae_orbax,
)

TOL = 1e-4  # max |ours - ref| / max |ref|
BATCH = 2
TIMESTEP = np.array([0.05, 0.4], np.float32)


# ---------------------------------------------------------------------------------------------------- fixtures


def to_ncdhw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 4, 1, 2, 3)


def to_ndhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 4, 1).numpy()


def zero_noise_scales_(model: TorchVAE) -> TorchVAE:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "per_channel_scale" in name:
                p.zero_()
    return model


def write_single_file(model: TorchVAE, cfg: VAEConfig, path, native_config: dict | None) -> str:
    """A Lightricks-style file: native VAE names under ``vae.``, dropped statistics, a transformer key, config
    metadata."""
    to_native = native_key_function(cfg)
    tensors = {to_native(k): v.contiguous() for k, v in model.state_dict().items()}
    latent = cfg.latent_channels
    for extra in ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means"):
        tensors[f"vae.per_channel_statistics.{extra}"] = torch.arange(latent, dtype=torch.float32)
    tensors["model.diffusion_model.proj_in.weight"] = torch.zeros(4, 4)  # the transformer's; must be ignored
    metadata = None
    if native_config is not None:
        metadata = {"config": json.dumps({"transformer": {"_class_name": "Transformer3DModel"}, "vae": native_config})}
    save_file(tensors, str(path), metadata=metadata)
    return str(path)


@pytest.fixture(scope="module")
def vaes(tmp_path_factory):
    """variant -> dict(torch=reference, folder=diffusers folder, module, params loaded from the folder)."""
    out = {}
    root = tmp_path_factory.mktemp("vae_ckpts")
    for i, (variant, kwargs) in enumerate(TINY.items()):
        torch.manual_seed(i)
        model = zero_noise_scales_(randomize_(TorchVAE(**kwargs), seed=10 + i))
        with torch.no_grad():  # non-trivial latent statistics
            model.latents_mean.copy_(torch.linspace(-0.5, 0.5, model.latents_mean.numel()))
            model.latents_std.copy_(torch.linspace(0.5, 2.0, model.latents_std.numel()))
        folder = root / variant
        model.save_pretrained(folder)
        module, params = load_vae(folder)
        out[variant] = dict(torch=model, folder=str(folder), module=module, params=params)
    return out


@functools.lru_cache(maxsize=None)
def jitted(config: VAEConfig, method: str, tiling: VAETiling | None = None):
    module = AutoencoderKLLTXVideo(config)
    if method == "encode":
        return jax.jit(lambda p, video: module.apply({"params": p}, video, method="encode"))
    return jax.jit(lambda p, z, t, key=None: module.apply({"params": p}, z, t, key=key, method="decode", tiling=tiling))


def decode_ref(model: TorchVAE, z: np.ndarray) -> np.ndarray:
    temb = torch.from_numpy(TIMESTEP[: z.shape[0]]) if model.config.timestep_conditioning else None
    with torch.no_grad():
        return to_ndhwc(model.decode(to_ncdhw(z), temb).sample)


def decode_ours(entry, z: np.ndarray, tiling=None, key=None) -> np.ndarray:
    fn = jitted(entry["module"].config, "decode", tiling)
    return np.asarray(fn(entry["params"], jnp.asarray(z), jnp.asarray(TIMESTEP[: z.shape[0]]), key))


def latents(cfg: VAEConfig, frames: int, height: int = 2, width: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(
        (BATCH, frames, height, width, cfg.latent_channels)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("variant", list(TINY))
@pytest.mark.parametrize("frames", [1, 9, 17])
def test_encode_parity(vaes, variant, frames):
    entry = vaes[variant]
    cfg = entry["module"].config
    r = cfg.spatial_ratio
    video = np.random.default_rng(frames).uniform(-1, 1, (BATCH, frames, 2 * r, 3 * r, 3)).astype(np.float32)
    mean, logvar = jitted(cfg, "encode")(entry["params"], jnp.asarray(video))
    with torch.no_grad():
        posterior = entry["torch"].encode(to_ncdhw(video)).latent_dist
    assert mean.shape == (BATCH, (frames - 1) // 8 + 1, 2, 3, cfg.latent_channels)
    err = max(rel_err(mean, to_ndhwc(posterior.mean)), rel_err(logvar, to_ndhwc(posterior.logvar)))
    report(f"vae {variant} encode frames={frames} batch={BATCH}", err, TOL)
    assert err <= TOL


@pytest.mark.parametrize("variant", list(TINY))
@pytest.mark.parametrize("latent_frames", [1, 2, 3])  # 1, 9 and 17 video frames
def test_decode_parity(vaes, variant, latent_frames):
    entry = vaes[variant]
    cfg = entry["module"].config
    z = latents(cfg, latent_frames, seed=latent_frames)
    ours, ref = decode_ours(entry, z), decode_ref(entry["torch"], z)
    r = cfg.spatial_ratio
    assert ours.shape == ref.shape == (BATCH, 8 * (latent_frames - 1) + 1, 2 * r, 3 * r, 3)
    err = rel_err(ours, ref)
    report(f"vae {variant} decode frames={8 * (latent_frames - 1) + 1} batch={BATCH}", err, TOL)
    assert err <= TOL


def test_timestep_is_required_and_used(vaes):
    entry = vaes["0.9.1"]
    z = latents(entry["module"].config, 1)
    with pytest.raises(ValueError, match="timestep-conditioned"):
        entry["module"].apply({"params": entry["params"]}, jnp.asarray(z), method="decode")
    fn = jitted(entry["module"].config, "decode")
    other = np.asarray(fn(entry["params"], jnp.asarray(z), jnp.full((BATCH,), 0.9, jnp.float32)))
    assert rel_err(other, decode_ours(entry, z)) > 1e-3


def test_noise_injection_matches_diffusers(vaes, tmp_path, monkeypatch):
    """With non-zero noise scales, diffusers fed our noise maps (in its draw order) gives our output, and the output
    moves away from the noise-free decode by what the scales imply."""
    model = copy.deepcopy(vaes["0.9.1"]["torch"])
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "per_channel_scale" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.save_pretrained(tmp_path / "noisy")
    module, params = load_vae(tmp_path / "noisy")
    key = jax.random.PRNGKey(11)
    draws = []

    def our_noise(*shape, generator=None, device=None, dtype=None, **_):
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else tuple(shape)
        draws.append(shape)
        return torch.from_numpy(np.array(injection_noise(key, len(draws) - 1, *shape))).to(dtype)

    z = latents(module.config, 2, seed=5)
    monkeypatch.setattr(torch, "randn", our_noise)
    ref = decode_ref(model, z)
    monkeypatch.undo()
    entry = dict(module=module, params=params)
    ours, quiet = decode_ours(entry, z, key=key), decode_ours(entry, z)
    noisy_resnets = 1 * 1 + 1 * 1 + 1 * 1  # mid, up1, up2 inject noise (1 resnet each); up0 does not
    assert len(draws) == 2 * noisy_resnets
    err = rel_err(ours, ref)
    report("vae 0.9.1 decode with noise injection (diffusers fed our noise)", err, TOL)
    assert err <= TOL
    assert rel_err(quiet, ours) > 1e-2  # the noise path is live
    # Scales zero (the shared reference): a key changes nothing.
    shared = vaes["0.9.1"]
    np.testing.assert_array_equal(decode_ours(shared, z, key=key), decode_ours(shared, z))


def test_normalize_latents_as_pipelines_do(vaes):
    from diffusers import LTXPipeline

    entry = vaes["0.9.0"]
    model = entry["torch"]
    z = latents(entry["module"].config, 2)
    ours = entry["module"].apply({"params": entry["params"]}, jnp.asarray(z), method="normalize_latents")
    ref = LTXPipeline._normalize_latents(to_ncdhw(z), model.latents_mean, model.latents_std, 1.0)
    np.testing.assert_allclose(np.asarray(ours), to_ndhwc(ref), rtol=1e-6, atol=1e-6)
    back = entry["module"].apply({"params": entry["params"]}, ours, method="denormalize_latents")
    ref_back = LTXPipeline._denormalize_latents(ref, model.latents_mean, model.latents_std, 1.0)
    np.testing.assert_allclose(np.asarray(back), to_ndhwc(ref_back), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(denormalize_latents(normalize_latents(z, 0.3, 2.0, 0.5), 0.3, 2.0, 0.5)), z, rtol=1e-5, atol=1e-6
    )


# ------------------------------------------------------------------------------------------------------ tiling

TILE_NAMES = ("tile_sample_min_height", "tile_sample_min_width", "tile_sample_min_num_frames",
              "tile_sample_stride_height", "tile_sample_stride_width", "tile_sample_stride_num_frames")
TILED_CASES = {
    # variant, latent (frames, height, width), tile sizes and strides in pixels / frames as diffusers takes them,
    # temporal (diffusers' use_framewise_decoding). Edge tiles are partial: with overlapping tiles diffusers' grid
    # always ends in shorter tiles, and we decode those exactly as it does.
    "0.9.1 spatial+temporal": ("0.9.1", (4, 3, 4), (64, 64, 16, 32, 32, 8), True),
    "0.9.5 spatial+temporal, stride 2": ("0.9.5", (5, 5, 3), (48, 32, 24, 32, 16, 16), True),
    "0.9.0 spatial only": ("0.9.0", (2, 4, 3), (96, 64, 16, 64, 32, 8), False),
}


@pytest.mark.parametrize("case", list(TILED_CASES))
def test_tiled_decode_matches_diffusers_tiled_decode(vaes, case):
    variant, (frames, height, width), sizes, temporal = TILED_CASES[case]
    entry = vaes[variant]
    model = entry["torch"]
    z = latents(entry["module"].config, frames, height, width, seed=7)
    settings = dict(zip(TILE_NAMES, sizes))
    model.enable_tiling(**settings)
    model.use_framewise_decoding = temporal
    try:
        ref = decode_ref(model, z)
    finally:
        model.use_tiling = model.use_framewise_decoding = False
    whole = decode_ref(model, z)
    ours = decode_ours(entry, z, tiling=VAETiling(**settings, temporal=temporal))
    assert ours.shape == ref.shape
    err = rel_err(ours, ref)
    report(f"vae {variant} tiled decode ({case}) vs diffusers tiled", err, TOL)
    assert err <= TOL
    assert rel_err(whole, ref) > 1e-2  # tiling really happened (it changes the output in diffusers too)


def test_tiled_decode_traces_the_same_program_for_longer_videos(vaes):
    """Full temporal tiles go through one lax.scan: twice the frames adds no convolutions to the program."""
    entry = vaes["0.9.0"]
    cfg = entry["module"].config
    tiling = VAETiling(64, 64, 16, 32, 32, 8)

    def count_convs(jaxpr) -> int:
        total = 0
        for eqn in jaxpr.eqns:
            total += eqn.primitive.name == "conv_general_dilated"
            total += sum(count_convs(sub) for sub in _subjaxprs(eqn))
        return total

    def convs(frames):
        z = jnp.zeros((1, frames, 3, 3, cfg.latent_channels))
        fn = lambda p, z: entry["module"].apply({"params": p}, z, method="decode", tiling=tiling)  # noqa: E731
        return count_convs(jax.make_jaxpr(fn)(entry["params"], z).jaxpr)

    assert convs(6) == convs(12) > 0


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if hasattr(v, "jaxpr"):
                yield v.jaxpr if not hasattr(v.jaxpr, "jaxpr") else v.jaxpr.jaxpr
            elif hasattr(v, "eqns"):
                yield v


UNIFORM_CASES = {
    # variant, latent (frames, height, width), tile sizes / strides (pixels, frames), temporal
    "0.9.1 spatial+temporal": ("0.9.1", (12, 7, 9), (128, 128, 48, 96, 96, 40), True),
    "0.9.5 spatial+temporal": ("0.9.5", (12, 7, 9), (64, 64, 48, 48, 48, 40), True),
}


@pytest.mark.parametrize("case", list(UNIFORM_CASES))
def test_uniform_tiles_stay_as_close_to_the_whole_decode_as_diffusers_tiles(vaes, case):
    """The uniform layout against the whole decode, beside diffusers' layout with the same settings. Random tiny
    decoders see far across a tile (every tiling is far from their whole decode: 0.3-1.0 relative), so the bound is
    diffusers' own tiling error at the same settings, which the uniform layout must not exceed."""
    variant, (frames, height, width), sizes, temporal = UNIFORM_CASES[case]
    entry = vaes[variant]
    z = latents(entry["module"].config, frames, height, width, seed=11)
    settings = dict(zip(TILE_NAMES, sizes), temporal=temporal)
    whole = decode_ours(entry, z)
    diffusers_layout = decode_ours(entry, z, tiling=VAETiling(**settings))
    uniform = decode_ours(entry, z, tiling=VAETiling(**settings, layout="uniform"))
    assert uniform.shape == whole.shape
    bound = rel_err(diffusers_layout, whole)
    err = rel_err(uniform, whole)
    report(f"vae {variant} uniform tiles ({case}) vs whole decode", err, bound)
    assert 1e-3 < err <= bound  # tiled (it differs) and no worse than diffusers' tiles


def _local_decode(rs: int, rt: int):
    """A stand-in decoder whose every output pixel depends on its own latent only (frame j of a window <- latent
    ceil(j / rt), as the causal VAE lays frames out): any correct tiling of it equals its whole decode."""
    def decode(z, key):
        frames = z.shape[1]
        index = -(-np.arange(rt * (frames - 1) + 1) // rt)
        video = jnp.take(z, jnp.asarray(index), axis=1)
        video = jnp.repeat(jnp.repeat(video, rs, axis=2), rs, axis=3)
        return video[..., :3] * 2.0 + 1.0
    return decode


@pytest.mark.parametrize("shape, sizes, temporal", [
    ((13, 9, 11), (4, 4, 4, 2, 2, 2), True), ((6, 5, 7), (3, 5, 8, 1, 3, 4), True),
    ((4, 17, 3), (6, 2, 4, 4, 1, 4), False), ((2, 2, 2), (4, 4, 4, 2, 2, 2), True)])
def test_uniform_tiles_reassemble_a_local_decoder_exactly(shape, sizes, temporal):
    """The blend weights of the tiles covering each pixel add up to 1 and every tile lands where it belongs."""
    from ltx_jax.models.vae_tiling import tiled_decode

    rs, rt = 2, 4
    z = jnp.asarray(np.random.default_rng(0).standard_normal((2, *shape, 5)), jnp.float32)
    decode = _local_decode(rs, rt)
    scaled = (sizes[0] * rs, sizes[1] * rs, sizes[2] * rt, sizes[3] * rs, sizes[4] * rs, sizes[5] * rt)
    tiling = VAETiling(*scaled, temporal=temporal, layout="uniform")
    tiling.check(rs, rt)
    out = jax.jit(lambda z: tiled_decode(decode, z, None, tiling, rs, rt))(z)
    np.testing.assert_allclose(np.asarray(out), np.asarray(decode(z, None)), rtol=1e-6, atol=1e-6)


def _convolutions(fn, *args) -> tuple[int, int]:
    """(convolutions, distinct convolution shapes) in the lowered StableHLO of ``fn(*args)``."""
    import re

    text = jax.jit(fn).lower(*args).as_text()
    convs = re.findall(r"stablehlo.convolution\(.* : \((.*?)\) ->", text)
    return len(convs), len(set(convs))


def test_uniform_tiles_hold_one_decoder_in_the_program(vaes):
    """diffusers' layout compiles a decoder per tile shape (here 8: full and partial tiles in time, height and
    width); the uniform layout compiles the whole decode's one, on a tile, whatever the video's length."""
    entry = vaes["0.9.1"]
    cfg = entry["module"].config
    t = jnp.full((1,), 0.05)

    def count(frames, tiling):
        z = jnp.zeros((1, frames, 7, 9, cfg.latent_channels))
        return _convolutions(lambda p, z: entry["module"].apply({"params": p}, z, t, method="decode", tiling=tiling),
                             entry["params"], z)

    settings = dict(zip(TILE_NAMES, (128, 128, 48, 96, 96, 40)))
    whole = count(6, None)
    diffusers_layout = count(12, VAETiling(**settings))
    uniform, uniform_longer = count(12, VAETiling(**settings, layout="uniform")), count(30, VAETiling(
        **settings, layout="uniform"))
    print(f"\n[vae] convolutions (all, distinct shapes): whole {whole}, diffusers' tiles {diffusers_layout}, "
          f"uniform tiles {uniform} (30 latent frames: {uniform_longer})")
    assert uniform == uniform_longer and uniform[0] == whole[0] and uniform[1] <= whole[1]
    assert diffusers_layout[0] >= 4 * whole[0]


def test_tiling_settings_are_checked(vaes):
    entry = vaes["0.9.0"]
    z = jnp.zeros((1, 2, 2, 2, entry["module"].config.latent_channels))
    with pytest.raises(ValueError, match="multiples of the compression ratio 32"):
        entry["module"].apply({"params": entry["params"]}, z, method="decode", tiling={"tile_sample_min_height": 100})
    with pytest.raises(ValueError, match="tiling must be"):
        entry["module"].apply({"params": entry["params"]}, z, method="decode", tiling="yes")


# ----------------------------------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def reference_outputs(vaes):
    """Decode outputs of the folder-loaded params, one per variant (9 frames)."""
    return {v: decode_ours(e, latents(e["module"].config, 2, seed=21)) for v, e in vaes.items()}


def _assert_same_outputs(vaes, reference_outputs, variant, module, params):
    assert module.config == vaes[variant]["module"].config
    entry = dict(module=module, params=params)
    np.testing.assert_array_equal(decode_ours(entry, latents(module.config, 2, seed=21)), reference_outputs[variant])
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(vaes[variant]["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("variant", list(TINY))
def test_single_file_with_native_config(vaes, reference_outputs, tmp_path, variant):
    entry = vaes[variant]
    path = write_single_file(entry["torch"], entry["module"].config, tmp_path / "ltxv.safetensors", NATIVE[variant])
    module, params = load_vae(path)
    _assert_same_outputs(vaes, reference_outputs, variant, module, params)


@pytest.mark.parametrize("variant", ["0.9.0", "0.9.5"])  # 0.9.1 tiny mixes residual and plain upsamplers: not inferable
def test_single_file_config_inferred_from_keys(vaes, reference_outputs, tmp_path, variant):
    entry = vaes[variant]
    path = write_single_file(entry["torch"], entry["module"].config, tmp_path / "noconfig.safetensors", None)
    module, params = load_vae(path)
    _assert_same_outputs(vaes, reference_outputs, variant, module, params)


@pytest.mark.parametrize("variant", ["0.9.1", "0.9.5"])
def test_orbax_roundtrip(vaes, reference_outputs, tmp_path, variant):
    entry = vaes[variant]
    save_vae_orbax(entry["module"], entry["params"], tmp_path / "orbax")
    module, params = load_vae(tmp_path / "orbax")
    _assert_same_outputs(vaes, reference_outputs, variant, module, params)
    with pytest.raises(ValueError, match="already exists"):
        save_vae_orbax(entry["module"], entry["params"], tmp_path / "orbax")
    module16, params16 = load_vae(tmp_path / "orbax", dtype=jnp.bfloat16)
    assert module16.dtype == jnp.bfloat16
    assert {x.dtype for x in jax.tree_util.tree_leaves(params16)} == {jnp.dtype(jnp.bfloat16)}


def test_pipeline_root_folder(vaes, reference_outputs, tmp_path):
    root = tmp_path / "pipeline"
    shutil.copytree(vaes["0.9.0"]["folder"], root / "vae")
    (root / "model_index.json").write_text("{}")
    module, params = load_vae(root)
    _assert_same_outputs(vaes, reference_outputs, "0.9.0", module, params)


def test_bf16_decode_as_close_as_diffusers_bf16(vaes, reference_outputs):
    """bf16 params and activations (norms in float32). Random tiny VAEs amplify rounding far more than trained ones
    (rounding the weights alone moves the output by ~1%), so the bound is diffusers' own bf16 error on the same
    model."""
    entry = vaes["0.9.5"]
    module, params = load_vae(entry["folder"], dtype=jnp.bfloat16)
    z = latents(module.config, 2, seed=21)
    out = jax.jit(functools.partial(module.apply, method="decode"))({"params": params}, jnp.asarray(z),
                                                                    jnp.asarray(TIMESTEP))
    assert out.dtype == jnp.bfloat16
    err = rel_err(np.asarray(out, np.float32), reference_outputs["0.9.5"])
    model16 = copy.deepcopy(entry["torch"]).to(torch.bfloat16)
    with torch.no_grad():
        ref16 = model16.decode(to_ncdhw(z).to(torch.bfloat16), torch.from_numpy(TIMESTEP).to(torch.bfloat16)).sample
    diffusers_err = rel_err(to_ndhwc(ref16.float()), decode_ref(entry["torch"], z))
    print(f"diffusers bf16 vs fp32 on the same model: {diffusers_err:.3e}")
    tol = max(2e-2, 1.5 * diffusers_err)
    report("vae 0.9.5 decode bf16 vs fp32", err, tol)
    assert err <= tol


# ---------------------------------------------------------------------------------------------- native layouts


@pytest.mark.parametrize("preset", list(VAE_PRESETS))
def test_native_remap_inverts_diffusers_single_file_conversion(preset):
    """Our native names, fed to diffusers' own converter (its 0.9.0 / 0.9.1 / 0.9.5 rename tables), come back as
    diffusers' keys, each to its own tensor; and the config inferred from those shapes is the preset."""
    from accelerate import init_empty_weights
    from diffusers.loaders.single_file_utils import convert_ltx_vae_checkpoint_to_diffusers

    cfg = VAE_PRESETS[preset]
    with init_empty_weights():
        model = TorchVAE(**{k: v for k, v in cfg.to_dict().items() if k != "_class_name"})
    state = model.state_dict()
    to_native = native_key_function(cfg)
    native = {to_native(k): v for k, v in state.items()}
    back = convert_ltx_vae_checkpoint_to_diffusers(dict(native))
    assert set(back) == set(state)
    assert all(back[k] is state[k] for k in state)
    shapes = {k[len("vae."):]: tuple(v.shape) for k, v in native.items()}
    assert config_from_native(infer_native_config(shapes)) == cfg


@pytest.mark.parametrize("preset", list(VAE_PRESETS))
def test_released_native_configs_parse_to_presets(preset):
    assert config_from_native(RELEASED_NATIVE[preset]) == VAE_PRESETS[preset]


@pytest.mark.parametrize("variant", list(TINY))
def test_tiny_native_configs_parse(variant):
    assert config_from_native(NATIVE[variant]) == VAEConfig(**TINY[variant])


def test_config_json_roundtrip(vaes):
    cfg = VAEConfig.from_json(os.path.join(vaes["0.9.5"]["folder"], "config.json"))
    assert cfg == VAEConfig(**TINY["0.9.5"])
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown config keys"):
        VAEConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_full_size_presets_shapes():
    """Full-size param trees without memory: 0.9.5's encoder reaches 2048 channels, decoders end at 128."""
    for name, cfg in VAE_PRESETS.items():
        params = abstract_params(AutoencoderKLLTXVideo(cfg))
        assert params["encoder"]["conv_out"]["conv"]["kernel"].shape[-2:] == (cfg.block_out_channels[-1], 129)
        assert params["decoder"]["conv_out"]["conv"]["kernel"].shape[-1] == 48
        assert ("time_embedder" in params["decoder"]) == cfg.timestep_conditioning


# ------------------------------------------------------------------------------------------------------ errors


def _edited_folder(src, dst, edit):
    shutil.copytree(src, dst)
    weights = os.path.join(dst, "diffusion_pytorch_model.safetensors")
    state = load_file(weights)
    edit(state)
    save_file(state, weights)
    return dst


def test_missing_key_is_named(vaes, tmp_path):
    key = "decoder.up_blocks.1.upsamplers.0.conv.conv.bias"
    folder = _edited_folder(vaes["0.9.0"]["folder"], tmp_path / "m", lambda s: s.pop(key))
    with pytest.raises(CheckpointError, match=rf"missing keys \(1\): \['{key}'\]"):
        load_vae(folder)


def test_extra_key_is_named(vaes, tmp_path):
    key = "decoder.up_blocks.4.resnets.0.conv1.conv.bias"
    folder = _edited_folder(vaes["0.9.0"]["folder"], tmp_path / "e", lambda s: s.update({key: torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=rf"unexpected keys \(1\): \['{key}'\]"):
        load_vae(folder)


def test_wrong_shape_names_key_and_both_shapes(vaes, tmp_path):
    key = "encoder.conv_out.conv.weight"
    folder = _edited_folder(vaes["0.9.0"]["folder"], tmp_path / "s",
                            lambda s: s.update({key: torch.zeros(9, 20, 3, 3, 3)}))
    with pytest.raises(CheckpointError,
                       match=rf"'{key}' has shape \(9, 20, 3, 3, 3\), but the model expects \(8, 20, 3, 3, 3\)"):
        load_vae(folder)


def test_single_file_errors_name_native_keys(vaes, tmp_path):
    entry = vaes["0.9.1"]
    path = write_single_file(entry["torch"], entry["module"].config, tmp_path / "full.safetensors", NATIVE["0.9.1"])
    tensors = load_file(path)
    tensors.pop("vae.decoder.last_scale_shift_table")
    tensors["vae.decoder.up_blocks.9.res_blocks.0.conv1.conv.bias"] = torch.zeros(3)
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata={"config": json.dumps({"vae": NATIVE["0.9.1"]})})
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): \['vae.decoder.last_scale_shift_table'\].*"
                                              r"unexpected keys \(1\): \['vae.decoder.up_blocks.9"):
        load_vae(broken)


def test_truncated_file(vaes, tmp_path):
    entry = vaes["0.9.0"]
    path = write_single_file(entry["torch"], entry["module"].config, tmp_path / "full.safetensors", NATIVE["0.9.0"])
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_vae(truncated)


def test_non_safetensors_files_are_refused(vaes, tmp_path):
    pickled = tmp_path / "model.safetensors"
    torch.save({"vae.encoder.conv_in.conv.weight": torch.zeros(2)}, pickled)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_vae(pickled)
    folder = tmp_path / "bin_folder"
    folder.mkdir()
    shutil.copy(os.path.join(vaes["0.9.0"]["folder"], "config.json"), folder / "config.json")
    torch.save(vaes["0.9.0"]["torch"].state_dict(), folder / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled checkpoints are never loaded"):
        load_vae(folder)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_vae(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vae(tmp_path / "nowhere.safetensors")
    transformer_only = tmp_path / "transformer_only.safetensors"
    save_file({"model.diffusion_model.proj_in.weight": torch.zeros(2, 2)}, str(transformer_only))
    with pytest.raises(CheckpointError, match="holds no 'vae.\\*' tensors"):
        load_vae(transformer_only)

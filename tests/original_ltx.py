"""The ORIGINAL Lightricks LTX-Video package (``ltx-video==0.1.2``, module ``ltx_video``) as a test reference.

ltx_video pins transformers < 4.52, so it lives in a virtual environment of its own, built on first use and cached
(``$LTX_JAX_ORIGINAL_VENV``, default ``~/.cache/ltx_jax/ltx-video-0.1.2-py311``; one builder at a time under an fcntl
lock; every build step is idempotent, so an unfinished environment is completed, never deleted; a marker file is
written only after the import check passes). ``tests/original_runner.py`` runs inside it in a subprocess. This module
runs in the main environment:

    >>> ckpt = write_tiny_single_file(tmp / "ltxv-tiny.safetensors", TINY_TRANSFORMER, TINY_VAE, seed=0)
    >>> out = run_original({"kind": "pipeline", "checkpoint": ckpt["path"], "kwargs": {...}}, arrays)

``ckpt["transformer"]`` / ``ckpt["vae"]`` are the diffusers models holding the same weights. Job format, draw sites
and outputs: the docstring of ``tests/original_runner.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from diffusers import AutoencoderKLLTXVideo as TorchVAE
from diffusers import LTXVideoTransformer3DModel as TorchTransformer
from safetensors.torch import save_file

from conftest import randomize_, to_native_key
from ltx_jax.configs import TransformerConfig, VAEConfig
from weight_conversion.vae import NATIVE_PREFIX, config_from_native, infer_native_config, native_key_function

REQUIREMENTS = ("torch==2.13.0", "ltx-video==0.1.2")
VENV_VARIABLE = "LTX_JAX_ORIGINAL_VENV"
DEFAULT_VENV = os.path.join("~", ".cache", "ltx_jax", "ltx-video-0.1.2-py311")
MARKER = "ltx_jax_ready.json"
IMPORT_CHECK = "import ltx_video.pipelines.pipeline_ltx_video"
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "original_runner.py")
BUILD_TIMEOUT_S = 1800  # one pip step; the whole build takes ~40 s with the wheels cached locally
LOCK_TIMEOUT_S = 3600

# RectifiedFlowScheduler config that ltx_video pairs with diffusers' LTX scheduler_config.json (dynamic exponential
# shift between 1024 and 4096 tokens, stretched to end at 0.1; ltx_video/utils/diffusers_config_mapping.py).
ORIGINAL_SCHEDULER = {"_class_name": "RectifiedFlowScheduler", "_diffusers_version": "0.25.1",
                      "num_train_timesteps": 1000, "shifting": "SD3", "base_resolution": None,
                      "target_shift_terminal": 0.1, "sampler": "Uniform"}


# --------------------------------------------------------------------------------------------- the venv


def original_venv_dir() -> str:
    return os.path.abspath(os.path.expanduser(os.environ.get(VENV_VARIABLE) or DEFAULT_VENV))


def _marker_text() -> str:
    return json.dumps({"requirements": list(REQUIREMENTS), "python": sys.version.split()[0],
                       "import_check": IMPORT_CHECK}, sort_keys=True)


def _ready(venv: str) -> bool:
    try:
        with open(os.path.join(venv, MARKER)) as f:
            return f.read() == _marker_text() and os.path.isfile(os.path.join(venv, "bin", "python"))
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive_lock(path: str, timeout_s: float = LOCK_TIMEOUT_S):
    """An fcntl lock on ``path``: one builder at a time across processes."""
    with open(path, "a") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"waited {timeout_s:.0f} s for {path}: another process is still building.")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tail(text, n: int = 4000) -> str:
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text or "")
    return text if len(text) <= n else "..." + text[-n:]


def _build(venv: str) -> None:
    """Creates (or completes: every step is idempotent) the environment, then writes the marker."""
    if os.path.isdir(venv) and os.listdir(venv) and not os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        raise RuntimeError(f"{venv} exists and is not a virtual environment; remove it or point ${VENV_VARIABLE} "
                           "at another folder.")
    python, pip = os.path.join(venv, "bin", "python"), os.path.join(venv, "bin", "pip")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    steps = [
        [sys.executable, "-m", "venv", venv],
        [pip, "install", *REQUIREMENTS],
        [pip, "uninstall", "-y", "torchvision"],  # pulled in by ltx_video's dependencies; its wheel breaks imports
        [python, "-c", IMPORT_CHECK],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            rc, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, output = f"timeout after {BUILD_TIMEOUT_S} s", _tail(e.stdout) + _tail(e.stderr)
        except OSError as e:
            rc, output = "OSError", str(e)
        if rc != 0:
            raise RuntimeError(f"building the ltx-video 0.1.2 environment in {venv} failed at `{' '.join(cmd)}` "
                               f"(exit {rc}):\n{_tail(output)}")
    with open(os.path.join(venv, MARKER + ".tmp"), "w") as f:
        f.write(_marker_text())
    os.replace(os.path.join(venv, MARKER + ".tmp"), os.path.join(venv, MARKER))


def original_python() -> str:
    """The python of the cached ltx-video 0.1.2 environment, built first if needed (~40 s); raises RuntimeError
    with pip's output when it cannot be built."""
    venv = original_venv_dir()
    if not _ready(venv):
        os.makedirs(os.path.dirname(venv), exist_ok=True)
        with _exclusive_lock(venv + ".lock"):
            if not _ready(venv):  # another process may have built it while we waited
                _build(venv)
    return os.path.join(venv, "bin", "python")


# ---------------------------------------------------------------------------------------------- running


def run_original(job: dict, arrays: dict[str, np.ndarray], timeout: float = 600) -> dict[str, np.ndarray]:
    """Runs ``tests/original_runner.py`` on ``job`` (``"@name"`` strings refer to ``arrays``) in the ltx-video
    environment, offline, in a temporary directory; returns its output arrays. Raises RuntimeError with the child's
    stderr when it fails."""
    python = original_python()
    job = dict(job)
    if "checkpoint" in job:
        job["checkpoint"] = os.path.abspath(os.fspath(job["checkpoint"]))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", DIFFUSERS_OFFLINE="1",
               PYTHONNOUSERSITE="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory(prefix="ltx_original_") as tmp:
        paths = [os.path.join(tmp, name) for name in ("job.json", "inputs.npz", "outputs.npz")]
        with open(paths[0], "w") as f:
            json.dump(job, f)
        np.savez(paths[1], **{k: np.asarray(v) for k, v in arrays.items()})
        try:
            proc = subprocess.run([python, RUNNER, *paths], cwd=tmp, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"the original ltx_video run ({job.get('kind')}) took over {timeout} s:\n"
                               f"{_tail(e.stderr)}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"the original ltx_video run ({job.get('kind')}) failed (exit {proc.returncode}):\n"
                               f"{_tail(proc.stderr)}")
        with np.load(paths[2], allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


# ------------------------------------------------------------------------------------------ checkpoints


def original_transformer_config(cfg: TransformerConfig, causal_temporal_positioning: bool) -> dict:
    """A ``Transformer3DModel`` config (ltx_video's names, as in released single files) equal to ``cfg``."""
    return {
        "_class_name": "Transformer3DModel", "_diffusers_version": "0.25.1",
        "activation_fn": cfg.activation_fn, "attention_bias": cfg.attention_bias,
        "attention_head_dim": cfg.attention_head_dim, "attention_type": "default",
        "caption_channels": cfg.caption_channels, "cross_attention_dim": cfg.cross_attention_dim,
        "double_self_attention": False, "dropout": 0.0, "in_channels": cfg.in_channels,
        "norm_elementwise_affine": cfg.norm_elementwise_affine, "norm_eps": cfg.norm_eps, "norm_num_groups": 32,
        "num_attention_heads": cfg.num_attention_heads, "num_embeds_ada_norm": 1000, "num_layers": cfg.num_layers,
        "num_vector_embeds": None, "only_cross_attention": False, "out_channels": cfg.out_channels,
        "upcast_attention": False, "use_linear_projection": False,
        "qk_norm": "rms_norm", "standardization_norm": "rms_norm", "positional_embedding_type": "rope",
        "positional_embedding_theta": 10000.0, "positional_embedding_max_pos": [20, 2048, 2048],
        "timestep_scale_multiplier": 1000, "causal_temporal_positioning": causal_temporal_positioning,
    }


def original_vae_config(vae_cfg: VAEConfig, native_state: dict[str, torch.Tensor]) -> dict:
    """A ``CausalVideoAutoencoder`` config (Lightricks' block vocabulary) read back from the native tensors;
    raises when it does not describe ``vae_cfg`` (a config ltx_video would build differently)."""
    shapes = {k[len(NATIVE_PREFIX):]: tuple(v.shape) for k, v in native_state.items()}
    native = infer_native_config(shapes)
    # Residual upsampler paths hold no weights, so the shapes cannot tell them: take them from the config.
    residual = iter(r for r, s in zip(vae_cfg.upsample_residual, vae_cfg.decoder_spatio_temporal_scaling) if s)
    for name, params in native["decoder_blocks"]:  # native order = the config's order (both decode backwards)
        if name == "compress_all":
            params["residual"] = next(residual)
    unset = dict(spatial_compression_ratio=None, temporal_compression_ratio=None)  # derived, stated or not
    back = dataclasses.replace(config_from_native(native), **unset)
    wanted = dataclasses.replace(vae_cfg, **unset)
    diff = [f.name for f in dataclasses.fields(VAEConfig) if getattr(back, f.name) != getattr(wanted, f.name)]
    if diff:
        raise ValueError(f"no native (ltx_video) VAE config reproduces this VAEConfig; it differs in {diff}.")
    return native


def write_tiny_single_file(path, transformer_config: TransformerConfig, vae_config: VAEConfig, seed: int, *,
                           causal_temporal_positioning: bool = True, scheduler_config: dict | None = None,
                           allowed_inference_steps: list[float] | None = None, sharp_posterior: bool = False) -> dict:
    """Tiny random diffusers transformer and VAE (weights perturbed like conftest's ``randomize_``, non-trivial
    latent statistics) saved as a Lightricks single file that ltx_video (and ltx_jax) load.

    Keys: ``model.diffusion_model.*`` and ``vae.*`` in native names; metadata ``config`` = {"transformer", "vae",
    "scheduler"} in ltx_video's format (``Transformer3DModel`` / ``CausalVideoAutoencoder`` /
    ``RectifiedFlowScheduler.from_pretrained``). ``causal_temporal_positioning=True`` gives the 0.9.5+ coordinates
    (first latent frame at pixel frame 0: diffusers' LTXConditionPipeline); False the 0.9.0/0.9.1 ones (diffusers'
    LTXPipeline / LTXImageToVideoPipeline). ``scheduler_config`` defaults to ``ORIGINAL_SCHEDULER``.
    ``sharp_posterior``: the encoder's log-variance channel is -100 (clamped to -30: std 3e-7), so a posterior sample
    is its mean to ~1e-6 in every implementation, whatever it draws.

    Returns {"path", "transformer": diffusers model, "vae": diffusers model, "config": the metadata dict}.
    """
    torch.manual_seed(seed)
    transformer = randomize_(TorchTransformer(**dataclasses.asdict(transformer_config)), seed=seed + 1)
    vae = randomize_(TorchVAE(**dataclasses.asdict(vae_config)), seed=seed + 2, scale=0.05)
    with torch.no_grad():  # non-trivial latent statistics, so (de)normalisation is exercised
        vae.latents_mean.copy_(torch.linspace(-0.2, 0.3, vae_config.latent_channels))
        vae.latents_std.copy_(torch.linspace(0.8, 1.3, vae_config.latent_channels))
        if sharp_posterior:
            vae.encoder.conv_out.conv.weight[-1] = 0.0
            vae.encoder.conv_out.conv.bias[-1] = -100.0
    vae_native = native_key_function(vae_config)
    vae_state = {vae_native(k): v.contiguous() for k, v in vae.state_dict().items()}
    config = {
        "transformer": original_transformer_config(transformer_config, causal_temporal_positioning),
        "vae": original_vae_config(vae_config, vae_state),
        "scheduler": dict(scheduler_config or ORIGINAL_SCHEDULER),
    }
    if allowed_inference_steps is not None:
        config["allowed_inference_steps"] = list(allowed_inference_steps)
    tensors = {to_native_key(k): v.contiguous() for k, v in transformer.state_dict().items()}
    tensors.update(vae_state)
    path = os.fspath(path)
    save_file(tensors, path, metadata={"config": json.dumps(config)})
    return {"path": path, "transformer": transformer, "vae": vae, "config": config}


def media_item(frames: np.ndarray) -> np.ndarray:
    """Frames [B, F, H, W, 3] in [0, 1] -> a ``ConditioningItem.media_item`` array [B, 3, F, H, W] in [-1, 1]:
    2x - 1, diffusers' normalisation (ltx_video's loader computes the same as x * 255 / 127.5 - 1)."""
    frames = np.asarray(frames, np.float32)
    return np.ascontiguousarray((2.0 * frames - 1.0).transpose(0, 4, 1, 2, 3))


# --------------------------------------------------------------------- the same draws in diffusers


def condition_pipeline_draws(out: dict[str, np.ndarray], vae: TorchVAE, latent_grid: tuple[int, int, int]) -> list:
    """The original run's draws (``out`` of a pipeline job) in the order and form diffusers' LTXConditionPipeline
    makes them: both draw the initial noise, then per conditioning item the posterior sample (and the noise of a
    non-frame-0 item), then the conditioning noise of each step, then the decode noise. Two conversions: the
    initial noise is drawn packed [B, N, C] by the original and unpacked [B, C, F, H, W] by diffusers; the decode
    noise is mixed into normalised latents by the original and into denormalised ones by diffusers, so
    n_diffusers = n_original * latents_std + latents_mean gives the same decoder input."""
    frames, height, width = latent_grid
    draws = []
    for line in out["draw_log"]:
        name = str(line).split()[0]
        site, x = name.split(".")[1], torch.from_numpy(np.array(out[name]))
        if site == "latents":
            x = x.reshape(x.shape[0], frames, height, width, -1).permute(0, 4, 1, 2, 3).contiguous()
        elif site == "decode":
            x = x * vae.latents_std.view(1, -1, 1, 1, 1) + vae.latents_mean.view(1, -1, 1, 1, 1)
        elif site not in ("vae_encode", "conditioning", "image_cond"):
            raise ValueError(f"{name}: LTXConditionPipeline draws nothing of the kind at that point.")
        draws.append(x)
    return draws


@contextlib.contextmanager
def injected_diffusers_noise(draws: list):
    """Serves ``draws``, in order, to diffusers' LTXConditionPipeline (its ``randn_tensor`` and the VAE posterior
    sample's); raises on a shape mismatch, on a draw too many, and at exit on draws left over."""
    import diffusers.models.autoencoders.vae as diffusers_vae
    import diffusers.pipelines.ltx.pipeline_ltx_condition as condition

    queue = list(draws)

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        if not queue:
            raise RuntimeError(f"diffusers draws {tuple(shape)} beyond the {len(draws)} draws supplied.")
        x = queue.pop(0)
        if tuple(x.shape) != tuple(shape):
            raise RuntimeError(f"diffusers draws {tuple(shape)} where the supplied draw is {tuple(x.shape)}.")
        return x.to(dtype=dtype or torch.float32)

    saved = condition.randn_tensor, diffusers_vae.randn_tensor
    condition.randn_tensor = diffusers_vae.randn_tensor = randn_tensor
    try:
        yield
    finally:
        condition.randn_tensor, diffusers_vae.randn_tensor = saved
    if queue:
        raise RuntimeError(f"diffusers left {len(queue)} of the {len(draws)} supplied draws unused.")

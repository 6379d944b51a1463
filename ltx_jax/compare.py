"""``python -m ltx_jax compare --model PATH``: a checkpoint as our loaders read it against the same checkpoint as
diffusers / transformers read it, on the same random inputs in float32.

    python -m ltx_jax compare --model path/to/LTX-Video                                  # a diffusers folder
    python -m ltx_jax compare --model ltxv-2b-0.9.8-distilled.safetensors --text_encoder path/to/LTX-Video \\
        --upsampler ltxv-spatial-upscaler-0.9.8.safetensors                             # a Lightricks single file

What runs, small enough for a CPU at any model size: the transformer's first two blocks (both sides build a two-block
model and read only those blocks' tensors) on a 2x4x4 latent grid; the whole VAE, decoding a 2x2x3 latent and
encoding a video of the size it decodes to; T5's first two blocks (and its final norm) on one prompt; the latent
upsampler on a 2x4x4 latent. Each prints its relative error, max|ours - ref| / max|ref|, against the bound of our
parity test (``BOUNDS``). Exit code 0: all within; 1: one past its bound or not compared (the last line names it);
2: a usage error (one line, before anything is loaded).

The reference reads each checkpoint its own way, never through our key mapping: diffusers' and transformers'
``from_pretrained`` for folders; for a Lightricks single file, diffusers' single-file converters
(``convert_ltx_transformer_checkpoint_to_diffusers``, ``convert_ltx_vae_checkpoint_to_diffusers``) on its tensors,
loaded strictly into a model built from the config; an upscaler file, whose tensors carry diffusers' names, loaded
strictly as it is. A single file's architecture comes from its metadata or tensor shapes (our ``read_*_config``, for
both sides: nothing is downloaded); the reference's strict loading checks every shape against it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

import weight_conversion  # the loaders, looked up at each call (tests/test_compare.py replaces one with a faulty one)
from ltx_jax.configs import T5Config
from ltx_jax.models.vae_blocks import injection_noise
from ltx_jax.text_encoding import load_tokenizer, tokenize
from weight_conversion import CheckpointError, open_safetensors, orbax_io
from weight_conversion.transformer import BLOCK_KEY

# max |ours - ref| / max |ref| of our parity tests in float32 (tests/test_transformer.py TOL_FP32, test_vae.py TOL,
# test_t5.py TOL_FP32, test_latent_upsampler.py TOL); tests/test_compare.py holds this table to them.
BOUNDS = {"transformer": 1e-5, "vae": 1e-4, "text_encoder": 1e-5, "upsampler": 1e-5}
COMPONENTS = tuple(BOUNDS)
# Sub-folders of a diffusers pipeline root; class names of a component folder's config.json.
FOLDERS = {"transformer": "transformer", "vae": "vae", "text_encoder": "text_encoder", "upsampler": "latent_upsampler"}
CLASS_NAMES = {"LTXVideoTransformer3DModel": "transformer", "AutoencoderKLLTXVideo": "vae",
               "LTXLatentUpsamplerModel": "upsampler"}

COMPARED_BLOCKS = 2  # transformer and T5 blocks loaded and run
TRANSFORMER_GRID = (2, 4, 4)  # latent frames x height x width
TEXT_TOKENS, REAL_TEXT_TOKENS = 16, 12  # the transformer's caption tokens; the rest are masked padding
ROPE_SCALE = (8 / 25, 32, 32)  # the releases' RoPE interpolation scale at 25 fps
VAE_GRID = (2, 2, 3)
DECODE_TIMESTEP = 0.05
UPSAMPLER_GRID = (2, 4, 4)
PROMPT = "A red fox jumps over the lazy dog in a snowy forest."
PROMPT_TOKENS = 64


class UsageError(Exception):
    """A mistake in the command line: printed as one line, exit code 2."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where one component is read from: its folder (``layout`` "folder"), a single file ("single_file"), or an
    Orbax folder ("orbax": found in a pipeline root, refused when it is to be compared)."""

    path: str
    layout: str


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One line of the report: ``error`` is None when ``problem`` says why nothing was measured."""

    component: str
    what: str
    error: float | None
    problem: str | None = None

    @property
    def bound(self) -> float:
        return BOUNDS[self.component]

    @property
    def ok(self) -> bool:
        return self.problem is None and self.error is not None and self.error <= self.bound


def relative_error(ours, ref) -> float:
    """max |ours - ref| / max |ref| in float64 (tests/conftest.py ``rel_err``); inf when the shapes differ."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(ours - ref)) / max(float(np.max(np.abs(ref))), np.finfo(np.float64).tiny))


# ------------------------------------------------------------------------------------------------ finding the parts


def _refuse_orbax(path: str, flag: str, leave_out: str = "") -> None:
    if orbax_io.is_orbax_dir(path):
        raise UsageError(f"{flag} {path} is an Orbax checkpoint, which torch cannot read; compare the safetensors "
                         f"checkpoint it was converted from{leave_out}.")


def _folder_kind(folder: str, flag: str) -> str:
    """The component a folder with a config.json holds (diffusers' ``_class_name``, or a transformers T5)."""
    try:
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{flag} {folder}: config.json cannot be read ({e}).") from None
    if config.get("_class_name") in CLASS_NAMES:
        return CLASS_NAMES[config["_class_name"]]
    if config.get("model_type") in ("t5", "mt5"):
        return "text_encoder"
    described = config.get("_class_name") or config.get("model_type")
    raise UsageError(f"{flag} {folder}: its config.json describes {described!r}, no LTX-Video component; pass a "
                     "pipeline root or a component folder.")


def _single_file_kinds(path: str, flag: str) -> list[str]:
    """The components a single file holds, from its tensor names (the header only)."""
    try:
        keys = list(open_safetensors(path))
    except CheckpointError as e:
        raise UsageError(f"{flag} {path}: {e}") from None
    kinds = []
    if any(k.startswith("model.diffusion_model.") or "transformer_blocks." in k for k in keys):
        kinds.append("transformer")
    if any(k.startswith("vae.") for k in keys):
        kinds.append("vae")
    if "initial_conv.weight" in keys and "upsampler.0.weight" in keys:
        kinds.append("upsampler")
    if not kinds:
        raise UsageError(f"{flag} {path} holds no LTX-Video transformer, VAE or upsampler tensors (keys such as "
                         f"{sorted(keys)[:3]}).")
    return kinds


def _components_at(path: str, flag: str) -> dict[str, Checkpoint]:
    """The components of a pipeline root, a component folder or a single file."""
    if not os.path.exists(path):
        raise UsageError(f"{flag} {path} does not exist.")
    _refuse_orbax(path, flag)
    if not os.path.isdir(path):
        return {kind: Checkpoint(path, "single_file") for kind in _single_file_kinds(path, flag)}
    if os.path.exists(os.path.join(path, "config.json")):
        return {_folder_kind(path, flag): Checkpoint(path, "folder")}
    found = {}
    for component, sub in FOLDERS.items():
        folder = os.path.join(path, sub)
        if os.path.isdir(folder):
            found[component] = Checkpoint(folder, "orbax" if orbax_io.is_orbax_dir(folder) else "folder")
    if not found:
        raise UsageError(f"{flag} {path} holds none of {', '.join(f + '/' for f in FOLDERS.values())}: pass a "
                         "diffusers pipeline root, a component folder or a Lightricks single file.")
    return found


def find_components(model: str, text_encoder: str | None, upsampler: str | None,
                    requested: list[str] | None) -> tuple[dict[str, Checkpoint], list[str]]:
    """``({component: Checkpoint}, notes about what is skipped)`` for the command line's paths (``requested``: the
    components asked for, None: every one found); a T5 beside a single file or a component folder (``text_encoder/``
    in its directory) is found too. Raises UsageError before anything is loaded."""
    found = _components_at(model, "--model")
    if text_encoder is not None:
        found["text_encoder"] = _only(_components_at(text_encoder, "--text_encoder"), "text_encoder", "--text_encoder",
                                      text_encoder)
    elif "text_encoder" not in found:
        beside = os.path.join(os.path.dirname(os.path.abspath(model)), FOLDERS["text_encoder"])
        if os.path.isdir(beside):
            found["text_encoder"] = Checkpoint(beside, "orbax" if orbax_io.is_orbax_dir(beside) else "folder")
    if upsampler is not None:
        found["upsampler"] = _only(_components_at(upsampler, "--upsampler"), "upsampler", "--upsampler", upsampler)
    missing = [c for c in requested or () if c not in found]
    if missing:
        hints = {"text_encoder": " (pass --text_encoder)", "upsampler": " (pass --upsampler)"}
        raise UsageError(f"--components asks for {', '.join(missing)}, which {model} does not hold"
                         f"{''.join(hints.get(c, '') for c in missing)}.")
    notes = []
    if "text_encoder" not in found and not requested:
        notes.append("text_encoder: skipped, none beside --model; pass --text_encoder (a folder with text_encoder/ "
                     "and tokenizer/)")
    if requested:
        found = {c: found[c] for c in COMPONENTS if c in requested}
    for component, ckpt in found.items():
        others = ",".join(c for c in found if c != component)
        _refuse_orbax(ckpt.path, component, f", or leave it out (--components {others})" if others else "")
    return found, notes


def _only(found: dict[str, Checkpoint], component: str, flag: str, path: str) -> Checkpoint:
    if component not in found:
        raise UsageError(f"{flag} {path} holds no {component} (it holds {', '.join(found)}).")
    return found[component]


# ----------------------------------------------------------------------------------------------- the torch reference


@contextlib.contextmanager
def _quiet_reference():
    """diffusers' and transformers' logging at error level (a two-block load lists every skipped tensor) and no
    progress bars; both as they were afterwards."""
    # deferred: diffusers and transformers are optional (the reference side)
    import diffusers
    import transformers

    logs = (diffusers.utils.logging, transformers.utils.logging)
    before = [(log.get_verbosity(), log.is_progress_bar_enabled()) for log in logs]
    for log in logs:
        log.set_verbosity_error()
        log.disable_progress_bar()
    try:
        yield
    finally:
        for log, (level, bars) in zip(logs, before):
            log.set_verbosity(level)
            if bars:
                log.enable_progress_bar()


def _from_pretrained(cls, folder: str, **overrides):
    """``cls.from_pretrained`` of a local folder, cast to float32 (exactly, from any stored float type); a missing or
    misshapen tensor raises instead of leaving a random initialisation."""
    with _quiet_reference():
        model, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True, **overrides)
    missing = [k for k in info.get("missing_keys", ()) if k != "encoder.embed_tokens.weight"]  # tied to shared
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise ValueError(f"{cls.__name__}.from_pretrained({folder}): missing {sorted(missing)[:6]}, mismatched "
                         f"{mismatched[:6]}.")
    return model.float().eval()


def _read_tensors(path: str, keep: Callable[[str], bool]) -> dict:
    """The tensors of a safetensors file whose names ``keep`` accepts (the others are not read)."""
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if keep(k)}


def _load_strictly(cls, config, state: dict):
    """A ``cls`` built from ``config`` (our configs' fields are diffusers' constructor names) holding ``state`` in
    float32: built on the meta device and given the tensors themselves, so only one copy of the weights exists.
    Every key of both must match, and every shape."""
    import torch  # deferred: torch is optional (the reference side)

    with torch.device("meta"):
        model = cls(**dataclasses.asdict(config))
    state = {k: v.to(torch.float32) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    unset = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if missing or unexpected or unset:
        raise ValueError(f"{cls.__name__}: the converted tensors do not fit: missing {sorted(missing)[:6]}, "
                         f"unexpected {sorted(unexpected)[:6]}, unset {unset[:6]}.")
    return model.eval()


def _block_index(key: str) -> int | None:
    m = re.search(r"(?:^|\.)" + BLOCK_KEY, key)
    return None if m is None else int(m.group(1))


def reference_transformer(ckpt: Checkpoint, config, blocks: int):
    from diffusers import LTXVideoTransformer3DModel  # deferred: diffusers is optional (the reference side)

    if ckpt.layout == "folder":
        return _from_pretrained(LTXVideoTransformer3DModel, ckpt.path, num_layers=blocks)
    from diffusers.loaders import single_file_utils  # deferred: diffusers is optional (the reference side)

    # The tensors the converter keeps ("vae" not in the name), of the first blocks only.
    state = _read_tensors(ckpt.path, lambda k: "vae" not in k and (_block_index(k) or 0) < blocks)
    state = single_file_utils.convert_ltx_transformer_checkpoint_to_diffusers(state)
    return _load_strictly(LTXVideoTransformer3DModel, config.replace(num_layers=blocks), state)


def reference_vae(ckpt: Checkpoint, config):
    from diffusers import AutoencoderKLLTXVideo  # deferred: diffusers is optional (the reference side)

    if ckpt.layout == "folder":
        return _from_pretrained(AutoencoderKLLTXVideo, ckpt.path)
    from diffusers.loaders import single_file_utils  # deferred: diffusers is optional (the reference side)

    state = single_file_utils.convert_ltx_vae_checkpoint_to_diffusers(_read_tensors(ckpt.path, lambda k: "vae." in k))
    return _load_strictly(AutoencoderKLLTXVideo, config, state)


def reference_text_encoder(ckpt: Checkpoint, blocks: int):
    from transformers import T5EncoderModel  # deferred: transformers is optional (the reference side)

    return _from_pretrained(T5EncoderModel, ckpt.path, num_layers=blocks)


def reference_upsampler(ckpt: Checkpoint, config):
    from diffusers.pipelines.ltx import LTXLatentUpsamplerModel  # deferred: diffusers is optional (the reference side)

    if ckpt.layout == "folder":
        return _from_pretrained(LTXLatentUpsamplerModel, ckpt.path)
    return _load_strictly(LTXLatentUpsamplerModel, config, _read_tensors(ckpt.path, lambda k: True))


# ---------------------------------------------------------------------------------------------- the comparisons


def _run_ours(fn, *args):
    """``fn(*args)`` jit-compiled with float32 matmuls and convolutions at full precision (no TF32 on GPUs)."""
    with jax.default_matmul_precision("highest"):
        return np.asarray(jax.jit(fn)(*args), np.float32)


def _to_ncdhw(x: np.ndarray):
    """Our channels-last video or latents [B, F, H, W, C] -> a torch tensor [B, C, F, H, W]."""
    import torch  # deferred: torch is optional (the reference side)

    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 4, 1, 2, 3)


def _to_ndhwc(x) -> np.ndarray:
    return x.permute(0, 2, 3, 4, 1).numpy()


def _shape(x) -> str:
    return "[" + ", ".join(str(d) for d in np.shape(x)) + "]"


def compare_transformer(ckpt: Checkpoint, rng: np.random.Generator) -> list[Comparison]:
    """Ours, then the reference (one model in memory at a time), on the same inputs."""
    import torch  # deferred: torch is optional (the reference side)

    weight_conversion.refuse_ltx2(ckpt.path, "compare")
    config = weight_conversion.read_transformer_config(ckpt.path)
    blocks = min(COMPARED_BLOCKS, config.num_layers)
    frames, height, width = TRANSFORMER_GRID
    hidden = rng.standard_normal((1, frames * height * width, config.in_channels), np.float32)
    text = rng.standard_normal((1, TEXT_TOKENS, config.caption_channels), np.float32)
    timestep = rng.uniform(0, 1000, (1,)).astype(np.float32)
    mask = (np.arange(TEXT_TOKENS) < REAL_TEXT_TOKENS)[None].astype(np.float32)
    grid = {"num_frames": frames, "height": height, "width": width, "rope_interpolation_scale": ROPE_SCALE}
    module, params = weight_conversion.load_transformer(ckpt.path, jnp.float32, num_layers=blocks)
    ours = _run_ours(lambda p, *x: module.apply({"params": p}, *x, **grid), params, hidden, text, timestep, mask)
    del params
    reference = reference_transformer(ckpt, config, blocks)
    with torch.no_grad():
        ref = reference(*(torch.from_numpy(x) for x in (hidden, text, timestep, mask)), return_dict=False,
                        **grid)[0].numpy()
    what = (f"{blocks} of {config.num_layers} blocks; latents {frames}x{height}x{width} {_shape(hidden)} + text "
            f"{_shape(text)} -> {_shape(ref)}")
    return [Comparison("transformer", what, relative_error(ours, ref))]


@contextlib.contextmanager
def _torch_draws_our_noise(key: jax.Array):
    """diffusers' decoder draws its injected noise with ``torch.randn(H, W)``, one map per noise-injecting conv;
    inside this block it gets ours, in the same order (``injection_noise``), so the two decodes see the same noise."""
    import torch  # deferred: torch is optional (the reference side)

    draws, torch_randn = [], torch.randn

    def our_noise(*shape, dtype=None, **_):
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else tuple(shape)
        draws.append(shape)
        return torch.from_numpy(np.asarray(injection_noise(key, len(draws) - 1, *shape))).to(dtype or torch.float32)

    torch.randn = our_noise
    try:
        yield
    finally:
        torch.randn = torch_randn


def compare_vae(ckpt: Checkpoint, rng: np.random.Generator) -> list[Comparison]:
    import torch  # deferred: torch is optional (the reference side)

    config = weight_conversion.read_vae_config(ckpt.path)
    z = rng.standard_normal((1, *VAE_GRID, config.latent_channels), np.float32)
    timestep = np.full((1,), DECODE_TIMESTEP, np.float32)
    key = jax.random.PRNGKey(int(rng.integers(2**31)))
    frames = config.temporal_ratio * (VAE_GRID[0] - 1) + 1
    size = (VAE_GRID[1] * config.spatial_ratio, VAE_GRID[2] * config.spatial_ratio)
    video = rng.uniform(-1, 1, (1, frames, *size, config.in_channels)).astype(np.float32)

    module, params = weight_conversion.load_vae(ckpt.path, jnp.float32)
    decoded = _run_ours(lambda p, z, t, k: module.apply({"params": p}, z, t, key=k, method="decode"),
                        params, z, timestep, key)
    mean, logvar = _run_ours(lambda p, v: jnp.stack(module.apply({"params": p}, v, method="encode")), params, video)
    del params
    reference = reference_vae(ckpt, config)
    with torch.no_grad(), _torch_draws_our_noise(key):
        ref_decoded = _to_ndhwc(reference.decode(_to_ncdhw(z), torch.from_numpy(timestep)
                                                if config.timestep_conditioning else None).sample)
    with torch.no_grad():
        posterior = reference.encode(_to_ncdhw(video)).latent_dist
    encode_error = max(relative_error(mean, _to_ndhwc(posterior.mean)),
                       relative_error(logvar, _to_ndhwc(posterior.logvar)))
    noise = "; the same injected noise" if any(config.decoder_inject_noise) else ""
    return [Comparison("vae", f"decode {_shape(z)} -> {_shape(ref_decoded)}{noise}",
                       relative_error(decoded, ref_decoded)),
            Comparison("vae", f"encode {_shape(video)} -> mean, logvar {_shape(mean)}", encode_error)]


def _prompt_ids(ckpt: Checkpoint, vocab_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(ids [1, T] int32, mask [1, T] bool, description): ``PROMPT`` through the tokenizer beside the encoder, or
    random ids when there is none."""
    tokenizer_folder = os.path.join(os.path.dirname(os.path.abspath(ckpt.path)), "tokenizer")
    if os.path.isdir(tokenizer_folder):
        ids, mask = tokenize(load_tokenizer(tokenizer_folder), PROMPT, PROMPT_TOKENS)
        return ids, mask, f"one prompt, {int(mask.sum())} of {PROMPT_TOKENS} tokens"
    real = PROMPT_TOKENS * 3 // 4
    ids = rng.integers(2, vocab_size, (1, PROMPT_TOKENS)).astype(np.int32)
    mask = np.arange(PROMPT_TOKENS)[None] < real
    return ids * mask, mask, f"random ids (no tokenizer/ beside it), {real} of {PROMPT_TOKENS} tokens"


def compare_text_encoder(ckpt: Checkpoint, rng: np.random.Generator) -> list[Comparison]:
    import torch  # deferred: torch is optional (the reference side)

    total = T5Config.from_json(os.path.join(ckpt.path, "config.json")).num_layers
    blocks = min(COMPARED_BLOCKS, total)
    module, params = weight_conversion.load_text_encoder(ckpt.path, jnp.float32, num_layers=blocks)
    ids, mask, prompt = _prompt_ids(ckpt, module.config.vocab_size, rng)
    ours = _run_ours(lambda p, i, m: module.apply({"params": p}, i, m), params, ids, mask)
    del params
    reference = reference_text_encoder(ckpt, blocks)
    with torch.no_grad():
        ref = reference(input_ids=torch.from_numpy(ids).long(),
                        attention_mask=torch.from_numpy(mask).long()).last_hidden_state.numpy()
    what = f"{blocks} of {total} blocks; {prompt} -> {_shape(ref)}"
    return [Comparison("text_encoder", what, relative_error(ours, ref))]


def compare_upsampler(ckpt: Checkpoint, rng: np.random.Generator) -> list[Comparison]:
    import torch  # deferred: torch is optional (the reference side)

    config = weight_conversion.read_latent_upsampler_config(ckpt.path)
    x = rng.standard_normal((1, *UPSAMPLER_GRID, config.in_channels), np.float32)
    module, params = weight_conversion.load_latent_upsampler(ckpt.path, jnp.float32)
    ours = _run_ours(lambda p, x: module.apply({"params": p}, x), params, x)
    del params
    reference = reference_upsampler(ckpt, config)
    with torch.no_grad():
        ref = _to_ndhwc(reference(_to_ncdhw(x)))
    return [Comparison("upsampler", f"{_shape(x)} -> {_shape(ref)}", relative_error(ours, ref))]


COMPARE = {"transformer": compare_transformer, "vae": compare_vae, "text_encoder": compare_text_encoder,
           "upsampler": compare_upsampler}
REFERENCE_READS = {
    ("transformer", "folder"): "diffusers LTXVideoTransformer3DModel.from_pretrained",
    ("transformer", "single_file"): "diffusers convert_ltx_transformer_checkpoint_to_diffusers",
    ("vae", "folder"): "diffusers AutoencoderKLLTXVideo.from_pretrained",
    ("vae", "single_file"): "diffusers convert_ltx_vae_checkpoint_to_diffusers",
    ("text_encoder", "folder"): "transformers T5EncoderModel.from_pretrained",
    ("upsampler", "folder"): "diffusers LTXLatentUpsamplerModel.from_pretrained",
    ("upsampler", "single_file"): "diffusers LTXLatentUpsamplerModel, the file's tensors as they are",
}


def run_comparisons(components: dict[str, Checkpoint], seed: int, *, debug: bool = False) -> list[Comparison]:
    """Each component compared, its lines printed as it finishes; a component that fails to load or run is a
    Comparison with a ``problem`` (the traceback too with ``debug``)."""
    rows = []
    for index, (component, ckpt) in enumerate(components.items()):
        start = time.perf_counter()
        try:
            new = COMPARE[component](ckpt, np.random.default_rng([seed, index]))
        except Exception as e:  # noqa: BLE001  any failure of either side is this component's result
            if debug:
                traceback.print_exc()
            new = [Comparison(component, "", None, f"{type(e).__name__}: {e}")]
        for row in new:
            print(_format(row, time.perf_counter() - start), flush=True)
        rows += new
    return rows


def _format(row: Comparison, seconds: float) -> str:
    if row.problem is not None:
        return f"  {row.component:<13} FAILED, not compared: {row.problem}"
    status = "ok" if row.ok else "FAILED"
    return (f"  {row.component:<13} rel err {row.error:9.3e}  bound {row.bound:.0e}  {status:<6}  {row.what}  "
            f"({seconds:.1f} s)")


def _failure(component: str, rows: list[Comparison]) -> str:
    """``transformer (rel err 1.3e-01 > 1e-05)`` or ``vae (not compared)``, for the last line."""
    bad = [row for row in rows if row.component == component and not row.ok]
    if any(row.problem is not None for row in bad):
        return f"{component} (not compared)"
    return f"{component} (rel err {max(row.error for row in bad):.1e} > {BOUNDS[component]:.0e})"


# ------------------------------------------------------------------------------------------------ the command


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ltx_jax compare", add_help=False, allow_abbrev=False,
                     description=__doc__.split("\n\n")[0].replace("``", ""))
    add = parser.add_argument
    add("--model", metavar="PATH", help="a diffusers pipeline root or component folder, or a Lightricks single file")
    add("--text_encoder", metavar="PATH", help="a folder with text_encoder/ and tokenizer/ (default: beside --model; "
        "without one T5 is skipped)")
    add("--upsampler", metavar="PATH", help="a latent upsampler: diffusers folder or Lightricks "
        "ltxv-spatial-upscaler-*.safetensors (default: a pipeline root's latent_upsampler/)")
    add("--components", metavar="LIST", help=f"a comma-separated subset of {','.join(COMPONENTS)} (default: every "
        "one found)")
    add("--seed", type=int, metavar="N", default=0, help="seed of the random inputs (default 0)")
    add("--debug", action="store_true", help="print the traceback of a component that fails")
    add("-h", "--help", action="store_true", help="show this help")
    return parser


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _requested(components: str | None) -> list[str] | None:
    if components is None:
        return None
    names = [c.strip() for c in components.split(",") if c.strip()]
    unknown = [c for c in names if c not in COMPONENTS]
    if unknown or not names:
        raise UsageError(f"--components {components!r}: unknown {unknown or 'empty'}; choose from "
                         f"{','.join(COMPONENTS)}.")
    return names


def _check_reference_installed() -> None:
    missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"compare runs diffusers as the reference, and {', '.join(missing)} is not installed: "
                         "pip install torch diffusers transformers (or pip install -e '.[test]').")


def main(argv: list[str]) -> int:
    """``argv``: [program, "compare", flags...]; returns the exit code (0 within bounds, 1 past one, 2 usage)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv[2:])
        if args.help:
            print(parser.format_help() + "\n" + __doc__.split("\n\n", 1)[1])
            return 0
        if not args.model:
            raise UsageError("--model is required: a diffusers folder or a Lightricks single file.")
        requested = _requested(args.components)
        components, notes = find_components(args.model, args.text_encoder, args.upsampler, requested)
        _check_reference_installed()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    # deferred: torch, diffusers and transformers are optional (the reference side; checked above)
    import diffusers
    import torch
    import transformers

    print(f"compare: float32, seed {args.seed}; reference diffusers {diffusers.__version__}, transformers "
          f"{transformers.__version__}, torch {torch.__version__}; ours on {jax.devices()[0].platform}")
    for component, ckpt in components.items():
        print(f"  {component:<13} {ckpt.path} ({ckpt.layout.replace('_', ' ')}; reference: "
              f"{REFERENCE_READS[component, ckpt.layout]})")
    for note in notes:
        print(f"  {note}")
    rows = run_comparisons(components, args.seed, debug=args.debug)
    failed = list(dict.fromkeys(row.component for row in rows if not row.ok))
    if failed:
        print(f"FAILED: {', '.join(_failure(component, rows) for component in failed)}")
        return 1
    print(f"ok: {', '.join(components)} within the parity bounds ({len(rows)} comparisons)")
    return 0

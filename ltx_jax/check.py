"""``python -m ltx_jax check``: a run at full size, checked before a single weight is downloaded.

    python -m ltx_jax check --preset ltx-video-0.9.8-13b-dev --height 704 --width 1216 --num_frames 121
    python -m ltx_jax check --model ltxv-2b-0.9.8-distilled.safetensors --text_encoder t5/ \\
        --upsampler ltxv-spatial-upscaler-0.9.8.safetensors --height 704 --width 1216 --num_frames 121

The command takes ``generate``'s flags and runs ``generate``'s own path (the same argument checks, the same pipeline
call) over a pipeline whose parameters are abstract (``ltx_jax.pipelines.abstract``), inside
``ltx_jax.programs.dry_run``: every program the run would compile is traced and lowered instead (text encoding, each
denoising pass, the upsampler, the decode, the resize), on this machine's backend, without weights, a GPU or the
network. ``--preset`` takes a release's configs from ``ltx_jax.releases``; ``--model`` reads only a checkpoint's
configs and metadata (and its tokenizer, when it has one). It prints one line per program: its largest inputs, its
GFLOP, the bytes of its parameters, and the device memory it needs (parameters, inputs and outputs; with
``--memory_analysis`` the program is compiled too and XLA's temporaries are added).
"""

from __future__ import annotations

import os
from typing import Any

import jax

from ltx_jax.configs import LatentUpsamplerConfig, T5Config
from ltx_jax.pipelines import LTXMultiScalePipeline, LTXPipeline
from ltx_jax.pipelines.abstract import abstract_pipeline, stand_in_tokenizer
from ltx_jax.programs import DryRun, ProgramRecord, tree_bytes
from ltx_jax.releases import LATENT_UPSAMPLER_PRESETS
from ltx_jax.text_encoding import load_tokenizer
from ltx_jax.tiny_random import TINY_T5, TINY_UPSAMPLER
from weight_conversion import read_latent_upsampler_config
from weight_conversion.common import read_config

GiB = 1024**3
INPUTS_WIDTH = 80  # characters of the inputs column


def text_encoder_root(model: str | None, text_encoder: str | None) -> str | None:
    """The folder holding T5's ``text_encoder/``: ``--text_encoder`` (or T5's own folder given there), else the
    model's folder (a diffusers root, or the folder of a single file); None where neither has one."""
    if text_encoder is not None:
        return text_encoder
    if not model or model == "tiny-random":
        return None
    folder = os.path.dirname(os.path.abspath(model)) if os.path.isfile(model) else model
    return folder if os.path.isdir(os.path.join(folder, "text_encoder")) else None


def text_encoder_config(root: str) -> T5Config:
    """T5's config from ``text_encoder_root``'s folder (``config.json`` or an Orbax marker; no weight is read)."""
    def single_file(source, path):
        raise ValueError(f"{path}: a text encoder is a transformers folder (text_encoder/ with config.json).")

    return read_config(root, "text_encoder", T5Config, "transformers text_encoder", single_file)


def upsampler_config(upsampler: str | None) -> LatentUpsamplerConfig | None:
    """An upsampler's config: a released file's name (``LATENT_UPSAMPLER_PRESETS``, no file needed) or a path."""
    if upsampler is None:
        return None
    if not os.path.exists(upsampler) and os.path.basename(upsampler) in LATENT_UPSAMPLER_PRESETS:
        return LATENT_UPSAMPLER_PRESETS[os.path.basename(upsampler)]
    return read_latent_upsampler_config(upsampler)


def abstract_pipeline_for(facts: dict, *, model: str | None, text_encoder: str | None, upsampler: str | None,
                          dtype: str, weights: str | None, text_encoder_weights: str | None, mesh: str | None,
                          prompt: str, compute: str | None = None):
    """The pipeline ``generate`` would load, over abstract parameters: the architectures of ``facts`` (the command
    line's ``_model_facts``: a checkpoint's configs or a release's), T5's from the text encoder's folder (else the
    release's), the tokenizer from its folder where there is one (else a stand-in that knows ``prompt``)."""
    release = facts["release"]
    root = text_encoder_root(model, text_encoder)
    t5 = text_encoder_config(root) if root else None
    if model == "tiny-random":
        t5, up = TINY_T5, TINY_UPSAMPLER if upsampler else None
    else:
        up = upsampler_config(upsampler)
    if t5 is None and release is None:
        raise ValueError("the model's text encoder config is not at hand and no release is known: pass --text_encoder "
                         "or --preset.")
    has_tokenizer = root is not None and os.path.isdir(os.path.join(root, "tokenizer"))
    tokenizer = load_tokenizer(root) if has_tokenizer else stand_in_tokenizer((prompt,))
    cls = LTXMultiScalePipeline if upsampler else LTXPipeline
    return abstract_pipeline(cls, release, transformer=facts["transformer"], vae=facts["vae"], text_encoder=t5,
                             latent_upsampler=up, scheduler=facts["scheduler"], dtype=dtype, weights=weights,
                             text_encoder_weights=text_encoder_weights, compute=compute, mesh=mesh,
                             tokenizer=tokenizer)


def _bytes(n: int) -> str:
    if n >= GiB / 10:
        return f"{n / GiB:,.2f} GiB"
    return f"{n / 1024**2:,.1f} MiB" if n >= 1024**2 / 10 else f"{n / 1024:,.1f} KiB"


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def report(run: DryRun, pipe: Any, title: str, components: dict[str, Any] | None = None) -> str:
    """The table ``check`` prints: a line per program, then what stays on the device between them: ``components``
    ({name: params}; default an LTX-Video pipeline's, ``_component_params``)."""
    components = _component_params(pipe) if components is None else components
    head = ["program", "inputs", "GFLOP", "parameters", "inputs + outputs" + (" + temporaries" if run.compile else "")]
    rows = []
    for r in run.records:
        name = r.name + (f" ({r.detail})" if r.detail else "") + (f" x{r.calls}" if r.calls > 1 else "")
        working = _bytes(_working_bytes(r)) + ("" if r.temporary_bytes is not None or not run.compile
                                               else " (no analysis)")
        rows.append([name, r.inputs, f"{r.gflop:,.0f}" if r.gflop >= 10 else f"{r.gflop:.3g}",
                     _bytes(r.parameter_bytes), working])
    for row in rows:
        row[1] = row[1] if len(row[1]) <= INPUTS_WIDTH else row[1][: INPUTS_WIDTH - 3] + "..."
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    lines = [title, _row(head, widths)] + [_row(row, widths) for row in rows]
    resident = sum(tree_bytes(params) for params in components.values())
    largest = max(run.records, key=_working_bytes, default=None)
    if largest is not None:
        peak = resident + _working_bytes(largest)
        parts = ", ".join(f"{name} {_bytes(tree_bytes(params))}" for name, params in components.items())
        lines.append(f"device memory: the parameters stay, {_bytes(resident)} ({parts}); with "
                     f"the largest program's inputs, outputs{' and temporaries' if run.compile else ''} "
                     f"({largest.name}): {_bytes(peak)}{'' if run.compile else ' at least'}.")
    if not run.compile:
        lines.append("--memory_analysis compiles each program on this machine's backend for XLA's temporaries too.")
    return "\n".join(lines)


def _working_bytes(record: ProgramRecord) -> int:
    """What a program needs beyond the parameters the pipeline keeps on the device."""
    return record.memory_bytes - record.parameter_bytes


def _component_params(pipe) -> dict[str, Any]:
    parts = {"transformer": pipe.transformer_params, "VAE": pipe.vae_params}
    if getattr(pipe, "prompt_encoder", None) is not None:
        parts["T5"] = pipe.prompt_encoder.params
    if getattr(pipe, "latent_upsampler_params", None) is not None:
        parts["upsampler"] = pipe.latent_upsampler_params
    return parts


def resident_bytes(pipe) -> int:
    """Bytes of every component's parameters one device holds (a pipeline keeps them all between calls)."""
    return sum(tree_bytes(params) for params in _component_params(pipe).values())


def title(pipe, args: dict, dtype: str, compiled: bool) -> str:
    release = pipe.release.name if pipe.release is not None else "no release"
    config = pipe.transformer.config
    weights = f", {pipe.transformer.weights} weights" if getattr(pipe.transformer, "weights", None) else ""
    weights += f", {pipe.transformer.compute} matmuls" if getattr(pipe.transformer, "compute", None) else ""
    mesh = f", mesh {dict(pipe.sharding.mesh.shape)}" if pipe.sharding is not None else ""
    what = "lowered and compiled" if compiled else "lowered, not compiled"
    return (f"{release}: {config.num_layers} blocks x {config.inner_dim} wide; {args['width']}x{args['height']}x"
            f"{args['num_frames']}, {dtype}{weights}{mesh} on {jax.default_backend()}; every program {what}, "
            "nothing run")


"""Every release at full size, without weights: each pipeline that applies to it runs its own call over abstract
parameters (``ltx_jax.pipelines.abstract``) inside ``ltx_jax.programs.dry_run``, with the release's defaults, at the
size its card recommends. The call's argument checks run as they would for a user, and every program it would
compile (text encoding, each denoising pass, the VAE encode, the upsampler, the decode tiled and whole, the resize)
is traced and lowered; nothing is compiled or run (the registry's own consistency: tests/test_releases.py).

Tiny models cannot show a default that only a full-size model reaches (the 0.9.8 2B distilled recipe once carried
the 13B's STG block 42): these tests are where such a default fails, instead of in a user's call.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import pytest
from conftest import report
from safetensors.numpy import save_file

from ltx_jax.pipelines import (LTXConditionPipeline, LTXImageToVideoPipeline, LTXMultiScalePipeline, LTXPipeline,
                               LTXVideoCondition)
from ltx_jax.pipelines.abstract import STAND_IN_PROMPT, abstract_pipeline
from ltx_jax.programs import dry_run, placeholder
from ltx_jax.releases import RELEASES

DRY_RUN_BUDGET_S = 180  # the bound for all of them together on the CI machine (printed, not asserted)
KINDS = ("text-to-video", "image-to-video", "conditions", "video-to-video", "lora", "int8", "fp8")
_SECONDS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def timing():
    start = time.perf_counter()
    yield
    total = time.perf_counter() - start
    slowest = sorted(_SECONDS.items(), key=lambda kv: -kv[1])[:3]
    print(f"\nfull-size dry runs: {total:.1f} s in all; slowest: "
          + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in slowest))
    report("full-size dry runs, every release x pipeline (seconds)", total, DRY_RUN_BUDGET_S)


# ------------------------------------------------------------------------------------------------ dry runs

_PIPES: dict = {}


def _pipe(release, weights=None):
    """One abstract text-to-video pipeline per release and weight format (the others are ``from_pipe`` of it)."""
    key = (release.name, weights)
    if key not in _PIPES:
        _PIPES[key] = abstract_pipeline(LTXPipeline, release, dtype="bfloat16", weights=weights,
                                        text_encoder_weights=weights)
    return _PIPES[key]


def _lora_file(tmp_path, release) -> str:
    """A rank-2 adapter on every block's self-attention query and value, in diffusers' format, at this size."""
    config, rank = release.transformer, 2
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(config.num_layers):
        for name in ("to_q", "to_v"):
            base = f"transformer.transformer_blocks.{layer}.attn1.{name}"
            tensors[f"{base}.lora_A.weight"] = rng.standard_normal((rank, config.inner_dim), np.float32)
            tensors[f"{base}.lora_B.weight"] = rng.standard_normal((config.inner_dim, rank), np.float32)
    path = tmp_path / f"{release.size}_lora.safetensors"
    save_file(tensors, str(path))
    return str(path)


def _names(run) -> list[str]:
    return [r.name + (f" ({r.detail})" if r.detail else "") for r in run.records]


def _call(release, kind, tmp_path):
    """Runs one pipeline of ``release`` at its recommended size with its defaults; (frames, programs)."""
    height, width, frames = release.recommended_size
    size = dict(height=height, width=width, num_frames=frames)
    image = np.zeros((height, width, 3), np.uint8)
    pipe = _pipe(release, kind if kind in ("int8", "fp8") else None)
    with dry_run() as run:
        if kind == "image-to-video":  # the whole decode here, the tiled one (auto at these sizes) elsewhere
            out = LTXImageToVideoPipeline.from_pipe(pipe)(image=image, prompt=STAND_IN_PROMPT, tiling=False, **size)
        elif kind == "conditions":  # two keyframes and a clip
            clip = np.zeros((9, height, width, 3), np.uint8)
            conditions = [LTXVideoCondition(image=image, frame_index=0), LTXVideoCondition(video=clip, frame_index=40,
                                                                                            strength=0.8),
                          LTXVideoCondition(image=image, frame_index=frames - 1)]
            out = LTXConditionPipeline.from_pipe(pipe)(conditions=conditions, prompt=STAND_IN_PROMPT, **size)
        elif kind == "video-to-video":
            condition = LTXConditionPipeline.from_pipe(pipe)
            latents = condition.encode_video(placeholder((1, frames, height, width, 3), np.float32),
                                             jax.random.PRNGKey(0))
            out = condition(latents=latents, denoise_strength=0.6, prompt=STAND_IN_PROMPT, **size)
        elif kind == "lora":
            unfused = LTXPipeline.from_pipe(pipe)
            unfused.load_lora_weights(_lora_file(tmp_path, release), adapter_name="style")
            out = unfused(prompt=STAND_IN_PROMPT, **size)
        else:
            out = pipe(prompt=STAND_IN_PROMPT, **size)
    assert out.shape == (1, frames, height, width, 3)
    return out, run


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_every_pipeline_dry_runs_at_the_recommended_size(name, tmp_path):
    release = RELEASES[name]
    guided = max(np.atleast_1d(release.defaults.guidance_scale)) > 1
    for kind in KINDS:
        start = time.perf_counter()
        _, run = _call(release, kind, tmp_path)
        _SECONDS[f"{name} {kind}"] = time.perf_counter() - start
        names = _names(run)
        decode = "decoding (whole)" if kind == "image-to-video" else "decoding (tiled)"
        assert {"text encoding", "denoising"} <= set(names) and names[-1] == decode, (kind, names)
        text = next(r for r in run.records if r.name == "text encoding")
        assert text.calls == 1 + guided, (kind, "the negative prompt is encoded with CFG")
        assert ("encoding" in names) == (kind in ("image-to-video", "conditions", "video-to-video")), (kind, names)
        denoising = next(r for r in run.records if r.name == "denoising")
        assert denoising.gflop > 0 and denoising.parameter_bytes > 0


MULTI_SCALE = sorted(name for name, r in RELEASES.items() if r.multi_scale is not None)


@pytest.mark.parametrize("name", MULTI_SCALE)
def test_every_multi_scale_recipe_dry_runs_with_its_upsampler(name):
    release = RELEASES[name]
    height, width, frames = release.multi_scale.recommended_size
    start = time.perf_counter()
    pipe = abstract_pipeline(LTXMultiScalePipeline, release, dtype="bfloat16")
    with dry_run() as run:
        out = pipe(prompt=STAND_IN_PROMPT, height=height, width=width, num_frames=frames,
                   conditions=[LTXVideoCondition(image=np.zeros((height, width, 3), np.uint8), frame_index=0)])
    _SECONDS[f"{name} multi-scale"] = time.perf_counter() - start
    assert out.shape == (1, frames, height, width, 3)
    names = _names(run)
    assert names == ["text encoding", "first pass: encoding", "first pass: denoising", "upsampling",
                     "second pass: encoding", "second pass: denoising", "decoding (tiled)", "resizing"], names


def test_the_2b_distilled_multi_scale_recipe_runs_at_1216x704x121():
    """What crashed on the H200 before its first step: the recommended recipe of 0.9.8 2B distilled, as released."""
    pipe = abstract_pipeline(LTXMultiScalePipeline, RELEASES["ltx-video-0.9.8-2b-distilled"], dtype="bfloat16")
    with dry_run() as run:
        out = pipe(prompt=STAND_IN_PROMPT, height=704, width=1216, num_frames=121)
    assert out.shape == (1, 121, 704, 1216, 3)
    by_name = {r.name: r for r in run.records}
    first, second = by_name["first pass: denoising"], by_name["second pass: denoising"]
    assert first.inputs.startswith("latents [1, 5600, 128]")  # 800x448: 25 x 14 x 16 latent tokens
    assert second.inputs.startswith("latents [1, 22400, 128]")  # 1600x896 after the 2x upsampler
    # The first GPU run counted 1.809e5 and 5.685e5 GFLOP for these passes (benchmarks/RESULTS.md).
    assert first.gflop == pytest.approx(1.809e5, rel=0.02) and second.gflop == pytest.approx(5.685e5, rel=0.02)
    assert list(by_name) == ["text encoding", "first pass: denoising", "upsampling", "second pass: denoising",
                             "decoding", "resizing"]

"""LTX-2's guidance combination against diffusers' (``LTX2Guidance`` and the pipeline's velocity <-> x0 conversions),
on random predictions, every branch combination, with and without rescaling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import rel_err, report
from diffusers.guiders.ltx2_guidance import LTX2Guidance as TorchGuidance

from ltx_jax.sampling.ltx2_guidance import LTX2Guidance, velocity_to_x0, x0_to_velocity

TOL = 1e-6  # float32 elementwise arithmetic, the same order of operations


@pytest.mark.parametrize("cfg,stg,modality", list(itertools.product([False, True], repeat=3)))
@pytest.mark.parametrize("rescale", [0.0, 0.7])
def test_combination_matches_diffusers(cfg, stg, modality, rescale):
    rng = np.random.default_rng(int(cfg) + 2 * int(stg) + 4 * int(modality) + int(10 * rescale))
    sample = rng.standard_normal((2, 7, 5)).astype(np.float32)
    sigma = np.float32(0.63)
    velocities = {name: rng.standard_normal((2, 7, 5)).astype(np.float32)
                  for name in ("cond", "uncond", "stg", "modality")}
    scales = dict(guidance_scale=3.0 if cfg else 1.0, stg_scale=1.5 if stg else 0.0,
                  modality_scale=3.0 if modality else 1.0, guidance_rescale=rescale)
    guidance = LTX2Guidance.for_scales(scales)
    assert guidance == LTX2Guidance(cfg, stg, modality)
    ours = guidance.guided_velocity(sample, sigma, {b: velocities[b] for b in guidance.branches}, scales)

    t = {k: torch.from_numpy(v) for k, v in velocities.items()}
    x0 = {k: torch.from_numpy(sample) - v * float(sigma) for k, v in t.items()}  # the pipeline's conversion
    guider = TorchGuidance(**scales)
    pred = guider.forward(x0["cond"], x0["uncond"], x0["stg"], x0["modality"]).pred
    ref = ((torch.from_numpy(sample) - pred) / float(sigma)).numpy()
    err = rel_err(np.asarray(ours), ref)
    if cfg and stg and modality:
        report(f"ltx2 guidance CFG + STG + modality, rescale {rescale}", err, TOL)
    assert err <= TOL, err


def test_conversions_round_trip_per_sample_sigma():
    rng = np.random.default_rng(0)
    sample, velocity = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((2, 3, 4))
    sigma = np.array([0.5, 0.9], np.float32)
    x0 = velocity_to_x0(sample, velocity.astype(np.float32), sigma)
    assert np.allclose(np.asarray(x0)[1], sample[1] - 0.9 * velocity[1], atol=1e-6)
    assert np.allclose(np.asarray(x0_to_velocity(sample, x0, sigma)), velocity, atol=1e-5)


def test_branches_follow_either_modality():
    video = dict(guidance_scale=3.0, stg_scale=0.0, modality_scale=1.0)
    audio = dict(guidance_scale=1.0, stg_scale=1.0, modality_scale=3.0)
    assert LTX2Guidance.for_scales(video, audio).branches == ("cond", "uncond", "stg", "modality")
    assert LTX2Guidance.for_scales(dict(guidance_scale=1.0)).branches == ("cond",)

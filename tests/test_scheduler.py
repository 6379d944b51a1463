"""Parity tests of ltx_jax.scheduler against diffusers' FlowMatchEulerDiscreteScheduler.

diffusers/torch are imported at module top on purpose: without them these tests must fail,
not skip.  Run: PYTHONPATH=/work/main python -m pytest tests/test_scheduler.py -q -s
"""

import json
import warnings

import jax
from conftest import report
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift as diffusers_calculate_shift
from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule
from diffusers.utils import logging as diffusers_logging

from ltx_jax.releases import (LTX_DISTILLED_REFINE_TIMESTEPS, LTX_DISTILLED_TIMESTEPS, LTX_SCHEDULER,
                              LTX_SCHEDULER_STATIC)
from ltx_jax.scheduler import (
    FlowMatchSchedulerConfig,
    calculate_shift,
    mu_for_tokens,
    scale_noise,
    sigmas_and_timesteps,
    step,
    step_per_token,
    torch_linspace,
)

diffusers_logging.set_verbosity_error()  # silence "timesteps passed without sigmas" warnings

SCHEDULE_TOL = 1e-6  # absolute, on sigmas and on timesteps (0..1000 scale)
STEPS = (1, 7, 8, 20, 40, 50)
TOKENS = (256, 1024, 4096, 6144)

# scheduler_config.json of Lightricks' LTX-Video 0.9.x diffusers checkpoints.
LTX_09_SCHEDULER_JSON = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "_diffusers_version": "0.32.0.dev0",
    "base_image_seq_len": 1024,
    "base_shift": 0.95,
    "invert_sigmas": False,
    "max_image_seq_len": 4096,
    "max_shift": 2.05,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.1,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}

CONFIGS = {
    "ltx": LTX_SCHEDULER,
    "ltx_no_terminal": LTX_SCHEDULER.replace(shift_terminal=None),
    "ltx_linear_shift": LTX_SCHEDULER.replace(time_shift_type="linear"),
    "ltx_static": LTX_SCHEDULER_STATIC,
    "static_shift3": FlowMatchSchedulerConfig(shift=3.0),
    "static_shift3_terminal": FlowMatchSchedulerConfig(shift=3.0, shift_terminal=0.05),
    "static_default": FlowMatchSchedulerConfig(),
    "inverted_t500": FlowMatchSchedulerConfig(num_train_timesteps=500, shift=1.7, invert_sigmas=True),
}


def _diffusers(cfg: FlowMatchSchedulerConfig) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(**cfg.to_dict())


def _diffusers_schedule(cfg, n=None, **kw):
    sched = _diffusers(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers' own 0/0 warning for the NaN case
        sched.set_timesteps(n, **kw)
    return sched.sigmas.numpy(), sched.timesteps.numpy()


def _max_err(ours, ref):
    s, t = ours
    rs, rt = ref
    assert s.dtype == np.float32 and t.dtype == np.float32
    assert s.shape == rs.shape and t.shape == rt.shape, (s.shape, rs.shape, t.shape, rt.shape)
    return float(max(np.abs(s - rs).max(), np.abs(t - rt).max()))


# ------------------------------------------------------------------------ shift / mu
def test_torch_linspace_is_torch_linspace_bit_for_bit():
    """``torch_linspace`` (the RoPE frequencies', the original schedule's) against torch.linspace in float32 over 400
    (start, end, steps): the RoPE and schedule ranges, random ends and counts up to 3000 (every count torch
    vectorises), 0 and 1 steps. Bound: 0 differing bits."""
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("torch runs without FMA here (ATEN_CPU_CAPABILITY=default): it rounds twice, as no GPU does")
    rng = np.random.default_rng(0)
    cases = [(0.0, 1.0, n) for n in (*range(0, 60), 64, 128, 170, 341, 512, 682, 1024)]
    cases += [(1.0, 1.0 / n, n) for n in range(1, 101)]
    cases += [(float(a), float(b), int(n)) for a, b, n in zip(rng.uniform(-1e3, 1e3, 100), rng.uniform(-1e-2, 1e4, 100),
                                                              rng.integers(2, 3000, 100))]
    cases += [(float(a), float(b), int(n)) for a, b, n in zip(rng.uniform(-2, 2, 133), rng.uniform(-2, 2, 133),
                                                              rng.integers(2, 64, 133))]
    assert len(cases) == 400
    differing = [(start, end, steps) for start, end, steps in cases
                 if not np.array_equal(torch_linspace(start, end, steps).view(np.int32),
                                       torch.linspace(start, end, steps, dtype=torch.float32).numpy().view(np.int32))]
    print(f"\n[torch_linspace] {len(differing)} of {len(cases)} cases differ from torch.linspace")
    assert not differing, differing[:5]


def test_calculate_shift_and_mu_for_tokens_match_diffusers():
    err = 0.0
    for tok in TOKENS + (1, 99999):
        ref = diffusers_calculate_shift(tok, 1024, 4096, 0.95, 2.05)
        err = max(err, abs(calculate_shift(tok, 1024, 4096, 0.95, 2.05) - ref),
                  abs(mu_for_tokens(LTX_SCHEDULER, tok) - ref))
        err = max(err, abs(calculate_shift(tok) - diffusers_calculate_shift(tok)))
    print(f"\n[calculate_shift] max |mu - diffusers| = {err:.3e}")
    assert err == 0.0
    assert mu_for_tokens(LTX_SCHEDULER, 1024) == pytest.approx(0.95)
    assert mu_for_tokens(LTX_SCHEDULER, 4096) == pytest.approx(2.05)


# ------------------------------------------------------------------------ schedules
def _mode_kwargs(mode, cfg, n):
    if mode == "steps":  # set_timesteps(N)
        return n, {}
    if mode == "pipeline_sigmas":  # what diffusers' LTXPipeline passes
        return None, {"sigmas": np.linspace(1.0, 1 / n, n)}
    if mode == "timesteps":
        return None, {"timesteps": np.linspace(1.0, 1 / n, n) * cfg.num_train_timesteps}
    if mode == "both":
        return n, {"sigmas": np.linspace(1.0, 1 / n, n),
                   "timesteps": np.linspace(0.999, 0.003, n) * cfg.num_train_timesteps}
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["steps", "pipeline_sigmas", "timesteps", "both"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_schedule_parity(name, mode):
    cfg = CONFIGS[name]
    err, cases, nan_cases = 0.0, 0, 0
    for n in STEPS:
        for tok in TOKENS if cfg.use_dynamic_shifting else (None,):
            mu = mu_for_tokens(cfg, tok) if tok is not None else None
            num, kw = _mode_kwargs(mode, cfg, n)
            ref = _diffusers_schedule(cfg, num, mu=mu, **kw)
            if np.isnan(ref[0]).any():
                # shift_terminal with a single step at sigma=1 is 0/0 in diffusers; we raise instead.
                assert n == 1 and cfg.shift_terminal
                with pytest.raises(ValueError, match="shift_terminal"):
                    sigmas_and_timesteps(cfg, num, mu=mu, **kw)
                nan_cases += 1
                continue
            ours = sigmas_and_timesteps(cfg, num, mu=mu, **kw)
            assert ours[0].shape == (n + 1,) and ours[1].shape == (n,)
            err = max(err, _max_err(ours, ref))
            cases += 1
    print(f"\n[schedule {name}/{mode}] {cases} cases (+{nan_cases} diffusers-NaN cases raised), "
          f"max abs err sigmas/timesteps = {err:.3e}")
    report(f"scheduler sigmas/timesteps {name}/{mode} (abs)", err, SCHEDULE_TOL)
    assert err <= SCHEDULE_TOL


EXPLICIT_SIGMAS = {
    "ltx097_distilled_first_pass": [1.0, 0.9937, 0.9875, 0.9812, 0.975, 0.9094, 0.725],
    "ltx097_distilled_second_pass": [0.9094, 0.725, 0.4219],
    "linear_quadratic_30": linear_quadratic_schedule(30).tolist(),
    "single": [0.5],
    "with_zero": [1.0, 0.5, 0.0],
}


@pytest.mark.parametrize("name", ["ltx", "ltx_static", "static_shift3", "static_default", "inverted_t500"])
def test_explicit_sigma_list_parity(name):
    cfg = CONFIGS[name]
    mu = mu_for_tokens(cfg, 4096) if cfg.use_dynamic_shifting else None
    err = 0.0
    for key, sig in EXPLICIT_SIGMAS.items():
        if cfg.use_dynamic_shifting and key == "with_zero":
            continue  # exp shift divides by sigma; checked separately below
        ref = _diffusers_schedule(cfg, None, sigmas=sig, mu=mu)
        err = max(err, _max_err(sigmas_and_timesteps(cfg, sigmas=sig, mu=mu), ref))
    print(f"\n[explicit sigmas {name}] max abs err = {err:.3e}")
    assert err <= SCHEDULE_TOL


def test_explicit_sigma_zero_with_dynamic_shift():
    cfg = LTX_SCHEDULER.replace(shift_terminal=None)
    mu = mu_for_tokens(cfg, 4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _diffusers_schedule(cfg, None, sigmas=[1.0, 0.5, 0.0], mu=mu)
    err = _max_err(sigmas_and_timesteps(cfg, sigmas=[1.0, 0.5, 0.0], mu=mu), ref)
    print(f"\n[explicit sigma 0 under exp shift] max abs err = {err:.3e}")
    assert err <= SCHEDULE_TOL


DISTILLED_LISTS = {
    "ltx_distilled": list(LTX_DISTILLED_TIMESTEPS),
    "ltx_distilled_refine": list(LTX_DISTILLED_REFINE_TIMESTEPS),
    "condition_pipeline_default_40": (linear_quadratic_schedule(40) * 1000).tolist(),
}


@pytest.mark.parametrize("name", ["ltx_static", "static_default", "ltx", "static_shift3_terminal"])
def test_explicit_timestep_list_parity(name):
    cfg = CONFIGS[name]
    mu = mu_for_tokens(cfg, 6144) if cfg.use_dynamic_shifting else None
    err = 0.0
    for key, ts in DISTILLED_LISTS.items():
        if cfg.use_dynamic_shifting and ts[-1] == 0:
            continue
        ref = _diffusers_schedule(cfg, None, timesteps=ts, mu=mu)
        ours = sigmas_and_timesteps(cfg, timesteps=ts, mu=mu)
        err = max(err, _max_err(ours, ref))
        # timesteps come back exactly as given (float32)
        np.testing.assert_array_equal(ours[1], np.asarray(ts, np.float32))
        # with num_inference_steps given too
        err = max(err, _max_err(sigmas_and_timesteps(cfg, len(ts), timesteps=ts, mu=mu), ref))
    print(f"\n[explicit timesteps {name}] max abs err = {err:.3e}")
    assert err <= SCHEDULE_TOL


# ------------------------------------------------------------------------ steps
def _random_velocities(n, shape, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + shape).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_step_full_loop_parity(dtype):
    cfg, n, shape = LTX_SCHEDULER, 20, (2, 256, 32)
    mu = mu_for_tokens(cfg, 4096)
    sigmas, timesteps = sigmas_and_timesteps(cfg, sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    vel = _random_velocities(n, shape, 0)
    x0 = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    tdt = getattr(torch, dtype)

    sched = _diffusers(cfg)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    x_ref = torch.from_numpy(x0).to(tdt)
    for i, t in enumerate(sched.timesteps):
        x_ref = sched.step(torch.from_numpy(vel[i]).to(tdt), t, x_ref, return_dict=False)[0]
    x_ref = x_ref.float().numpy()

    jdt = jnp.dtype(dtype)
    vel_j = jnp.asarray(vel).astype(jdt)
    sig_j = jnp.asarray(sigmas)

    # eager Python loop
    x = jnp.asarray(x0).astype(jdt)
    for i in range(n):
        x = step(vel_j[i], x, sig_j[i], sig_j[i + 1])
    assert x.dtype == jdt
    err_eager = float(jnp.max(jnp.abs(x.astype(jnp.float32) - x_ref)))

    # jitted lax.fori_loop with the schedule as a traced array
    @jax.jit
    def run(x, vel, sig):
        return jax.lax.fori_loop(0, n, lambda i, x: step(vel[i], x, sig[i], sig[i + 1]), x)

    xj = run(jnp.asarray(x0).astype(jdt), vel_j, sig_j)
    err_jit = float(jnp.max(jnp.abs(xj.astype(jnp.float32) - x_ref)))
    # f32: same ops in the same order -> eager is exact; XLA may contract to FMA under jit.
    # bf16/f16: step() reproduces torch's rounding of dt*v to 16 bit, so both are expected
    # exact on CPU; the tolerance still allows 1 ulp at the largest magnitude for other backends.
    ulp = {"float32": 1e-5, "bfloat16": 2.0 ** -7, "float16": 2.0 ** -10}[dtype]
    tol = 1e-5 if dtype == "float32" else ulp * float(np.abs(x_ref).max())
    assert err_eager <= (1e-6 if dtype == "float32" else 0.0)
    frac = float(jnp.mean(xj.astype(jnp.float32) != x_ref))
    print(f"\n[step loop {dtype}] max abs err eager = {err_eager:.3e}, jit fori_loop = {err_jit:.3e} "
          f"(tol {tol:.3e}, {frac:.2%} of jit elements differ)")
    report(f"scheduler step loop {dtype} jit (abs)", err_jit, tol)
    assert err_eager <= tol and err_jit <= tol


def test_step_single_parity_and_jit():
    sched = _diffusers(LTX_SCHEDULER)
    sched.set_timesteps(8, mu=1.3)
    sigmas = sched.sigmas.numpy()
    rng = np.random.default_rng(3)
    m, x = rng.standard_normal((2, 2, 64, 16)).astype(np.float32)
    err = 0.0
    jstep = jax.jit(step)
    for i, t in enumerate(sched.timesteps):
        sched._step_index = i
        ref = sched.step(torch.from_numpy(m), t, torch.from_numpy(x), return_dict=False)[0].numpy()
        eager = np.asarray(step(jnp.asarray(m), jnp.asarray(x), sigmas[i], sigmas[i + 1]))
        jitted = np.asarray(jstep(jnp.asarray(m), jnp.asarray(x), jnp.float32(sigmas[i]), jnp.float32(sigmas[i + 1])))
        err = max(err, np.abs(eager - ref).max(), np.abs(jitted - ref).max())
    print(f"\n[step single f32, eager+jit] max abs err = {err:.3e}")
    assert err <= 1e-6


def test_stochastic_step_parity():
    cfg = LTX_SCHEDULER.replace(stochastic_sampling=True)
    n, shape = 8, (1, 128, 16)
    sched = _diffusers(cfg)
    sched.set_timesteps(n, mu=1.5)
    sigmas = jnp.asarray(sched.sigmas.numpy())
    vel = _random_velocities(n, shape, 5)
    x0 = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    g_ref, g_ours = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    x_ref, x = torch.from_numpy(x0), jnp.asarray(x0)
    for i, t in enumerate(sched.timesteps):
        x_ref = sched.step(torch.from_numpy(vel[i]), t, x_ref, generator=g_ref, return_dict=False)[0]
        noise = jnp.asarray(torch.randn(shape, generator=g_ours, dtype=torch.float32).numpy())
        x = step(jnp.asarray(vel[i]), x, sigmas[i], sigmas[i + 1], noise=noise)
    err = float(jnp.max(jnp.abs(x - x_ref.numpy())))
    print(f"\n[stochastic step loop] max abs err = {err:.3e}")
    assert err <= 1e-5


def _per_token_loop(cfg, timesteps, cond_mask, vel, x0, noise_seed=None):
    """Reference (diffusers, as LTXConditionPipeline's loop) and ours, side by side."""
    sched = _diffusers(cfg)
    sched.set_timesteps(timesteps=timesteps)
    sigmas = jnp.asarray(sched.sigmas.numpy())
    mask_t = torch.from_numpy(cond_mask)
    x_ref, x = torch.from_numpy(x0), jnp.asarray(x0)
    g_ref = torch.Generator().manual_seed(noise_seed) if noise_seed is not None else None
    g_ours = torch.Generator().manual_seed(noise_seed) if noise_seed is not None else None

    @jax.jit
    def ours_step(v, x, t, sig, mask, noise):
        per_tok = jnp.minimum(t, (1.0 - mask) * 1000.0)
        out = step_per_token(-v, x, per_tok, sig, noise=noise)
        denoise = (t / 1000.0 - 1e-6 < (1.0 - mask))[..., None]
        return jnp.where(denoise, out, x)

    err_single = 0.0
    for i, t in enumerate(sched.timesteps):
        v = torch.from_numpy(vel[i])
        per_tok = torch.min(t.expand(x0.shape[0]).unsqueeze(-1).float(), (1 - mask_t) * 1000.0)
        out = sched.step(-v, t, x_ref, per_token_timesteps=per_tok, generator=g_ref, return_dict=False)[0]
        # single-step check on the same input
        noise = None
        if g_ours is not None:
            noise = jnp.asarray(torch.randn(x0.shape, generator=g_ours, dtype=torch.float32).numpy())
        single = step_per_token(-jnp.asarray(vel[i]), jnp.asarray(x_ref.numpy()), jnp.asarray(per_tok.numpy()),
                                sigmas, noise=noise)
        err_single = max(err_single, float(jnp.max(jnp.abs(single - out.numpy()))))
        keep = (t / 1000 - 1e-6 < (1.0 - mask_t)).unsqueeze(-1)
        x_ref = torch.where(keep, out, x_ref)
        x = ours_step(jnp.asarray(vel[i]), x, jnp.float32(t.item()), sigmas, jnp.asarray(cond_mask), noise)
    return err_single, float(jnp.max(jnp.abs(x - x_ref.numpy())))


def _cond_mask(b, tok, seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((b, tok), np.float32)
    mask[:, :32] = 1.0  # hard-conditioned first-frame tokens
    mask[:, 32:64] = rng.uniform(0.0, 1.0, (b, 32)).astype(np.float32)  # partial-strength conditioning
    mask[1, 64:80] = 0.6
    return mask


@pytest.mark.parametrize("sched_name,ts", [
    ("ltx_static", list(LTX_DISTILLED_TIMESTEPS)),
    ("ltx_static", (linear_quadratic_schedule(30) * 1000).tolist()),
    ("static_default", list(LTX_DISTILLED_REFINE_TIMESTEPS)),
])
def test_step_per_token_parity(sched_name, ts):
    cfg, b, tok, c = CONFIGS[sched_name], 2, 256, 16
    vel = _random_velocities(len(ts), (b, tok, c), 11)
    x0 = np.random.default_rng(12).standard_normal((b, tok, c)).astype(np.float32)
    err_single, err_loop = _per_token_loop(cfg, ts, _cond_mask(b, tok, 13), vel, x0)
    print(f"\n[per-token {sched_name} N={len(ts)}] max abs err single step = {err_single:.3e}, "
          f"jitted full loop = {err_loop:.3e}")
    report(f"scheduler per-token step {sched_name} jitted loop (abs)", err_loop, 1e-5)
    assert err_single <= 1e-6 and err_loop <= 1e-5


def test_step_per_token_stochastic_parity():
    cfg, b, tok, c = LTX_SCHEDULER_STATIC.replace(stochastic_sampling=True), 2, 128, 8
    ts = list(LTX_DISTILLED_TIMESTEPS)
    vel = _random_velocities(len(ts), (b, tok, c), 21)
    x0 = np.random.default_rng(22).standard_normal((b, tok, c)).astype(np.float32)
    err_single, err_loop = _per_token_loop(cfg, ts, _cond_mask(b, tok, 23), vel, x0, noise_seed=24)
    print(f"\n[per-token stochastic] max abs err single = {err_single:.3e}, loop = {err_loop:.3e}")
    assert err_single <= 1e-6 and err_loop <= 1e-5


def test_step_per_token_uniform_equals_step():
    """With every token at the schedule timestep, per-token step == -step(-v)."""
    sigmas, timesteps = sigmas_and_timesteps(LTX_SCHEDULER, 10, mu=1.0)
    v = jnp.asarray(_random_velocities(1, (2, 64, 8), 31)[0])
    x = jnp.asarray(_random_velocities(1, (2, 64, 8), 32)[0])
    err = 0.0
    for i in range(10):
        per_tok = jnp.full((2, 64), timesteps[i], jnp.float32)
        a = step_per_token(-v, x, per_tok, jnp.asarray(sigmas))
        bb = step(v, x, sigmas[i], sigmas[i + 1])
        err = max(err, float(jnp.max(jnp.abs(a - bb))))
    print(f"\n[per-token uniform vs step] max abs err = {err:.3e}")
    assert err <= 1e-5


def test_scale_noise_parity():
    sched = _diffusers(LTX_SCHEDULER_STATIC)
    sched.set_timesteps(timesteps=list(LTX_DISTILLED_REFINE_TIMESTEPS))
    sched.set_begin_index(1)
    rng = np.random.default_rng(41)
    x, nz = rng.standard_normal((2, 2, 32, 8)).astype(np.float32)
    ref = sched.scale_noise(torch.from_numpy(x), sched.timesteps[1:2].repeat(2), torch.from_numpy(nz)).numpy()
    sig = float(sched.sigmas[1])
    err = max(float(jnp.max(jnp.abs(scale_noise(jnp.asarray(x), jnp.asarray(nz), sig) - ref))),
              float(jnp.max(jnp.abs(scale_noise(jnp.asarray(x), jnp.asarray(nz), jnp.full((2,), sig)) - ref))))
    print(f"\n[scale_noise] max abs err = {err:.3e}")
    assert err <= 1e-6


# ------------------------------------------------------------------------ config
def test_ltx_preset_equals_checkpoint_json(tmp_path):
    assert FlowMatchSchedulerConfig.from_dict(LTX_09_SCHEDULER_JSON) == LTX_SCHEDULER
    p = tmp_path / "scheduler_config.json"
    p.write_text(json.dumps(LTX_09_SCHEDULER_JSON))
    cfg = FlowMatchSchedulerConfig.from_json(p)
    assert cfg == LTX_SCHEDULER and hash(cfg) == hash(LTX_SCHEDULER)
    # diffusers reads our dict back to the same config
    d = FlowMatchEulerDiscreteScheduler.from_config(LTX_09_SCHEDULER_JSON).config
    assert {k: d[k] for k in cfg.to_dict()} == cfg.to_dict()
    # partial config -> diffusers defaults
    assert FlowMatchSchedulerConfig.from_dict({"shift": 3.0}) == FlowMatchSchedulerConfig(shift=3.0)


def test_config_validation_errors():
    with pytest.raises(ValueError, match="foo_bar.*zeta|unknown scheduler config key"):
        FlowMatchSchedulerConfig.from_dict({**LTX_09_SCHEDULER_JSON, "foo_bar": 1, "zeta": 2})
    with pytest.raises(ValueError) as ei:
        FlowMatchSchedulerConfig.from_dict({"foo_bar": 1, "zeta": 2})
    assert "foo_bar" in str(ei.value) and "zeta" in str(ei.value)
    with pytest.raises(ValueError, match="use_karras_sigmas=True.*not supported"):
        FlowMatchSchedulerConfig.from_dict({"use_karras_sigmas": True})
    with pytest.raises(ValueError, match="use_beta_sigmas"):
        FlowMatchSchedulerConfig(use_beta_sigmas=True)
    with pytest.raises(ValueError, match="time_shift_type"):
        FlowMatchSchedulerConfig(time_shift_type="cosine")
    with pytest.raises(ValueError, match="DPMSolverMultistepScheduler"):
        FlowMatchSchedulerConfig.from_dict({"_class_name": "DPMSolverMultistepScheduler"})
    with pytest.raises(ValueError, match="shift_terminal"):
        FlowMatchSchedulerConfig(shift_terminal=1.5)
    with pytest.raises(ValueError, match="shift"):
        FlowMatchSchedulerConfig(shift=0.0)
    with pytest.raises(ValueError, match="num_train_timesteps"):
        FlowMatchSchedulerConfig(num_train_timesteps=0)
    with pytest.raises(ValueError, match="must be a bool"):
        FlowMatchSchedulerConfig(use_dynamic_shifting="yes")


def test_schedule_validation_errors():
    with pytest.raises(ValueError, match="`mu` is required.*Fix: pass mu=mu_for_tokens"):
        sigmas_and_timesteps(LTX_SCHEDULER, 20)
    with pytest.raises(ValueError, match="all None"):
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC)
    with pytest.raises(ValueError, match="num_inference_steps must|integer >= 1"):
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC, 0)
    with pytest.raises(ValueError, match="num_inference_steps=5 but the explicit list has 3"):
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC, 5, sigmas=[1.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC, sigmas=[1.0, 0.5], timesteps=[1000.0])
    with pytest.raises(ValueError, match="non-increasing"):
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC, sigmas=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\].*not timesteps"):
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC, sigmas=[1000.0, 500.0])
    with pytest.raises(ValueError, match=r"\[0, 1000\]"):
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC, timesteps=[2000.0, 10.0])
    with pytest.raises(ValueError, match="finite"):
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC, sigmas=[1.0, float("nan")])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC, sigmas=[])
    with pytest.raises(ValueError, match="shift_terminal stretch is undefined"):
        sigmas_and_timesteps(LTX_SCHEDULER, 1, mu=1.0)
    with pytest.raises(ValueError, match="FlowMatchSchedulerConfig"):
        sigmas_and_timesteps(LTX_09_SCHEDULER_JSON, 10)
    with pytest.raises(ValueError, match="positive number"):
        mu_for_tokens(LTX_SCHEDULER, 0)
    with pytest.raises(ValueError, match="per_token_timesteps shape"):
        step_per_token(jnp.zeros((2, 8, 4)), jnp.zeros((2, 8, 4)), jnp.zeros((2, 7)), jnp.ones(3))

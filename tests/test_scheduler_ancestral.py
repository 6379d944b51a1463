"""Parity tests of ltx_jax.scheduler_ancestral against diffusers' LTXEulerAncestralRFScheduler.

The schedules are compared entry by entry; the sampling trajectories run a fixed host-side (numpy float32) velocity
function on both sides with the noise pinned: diffusers' ``randn_tensor`` is replaced by the same numpy draws fed to
ours, or diffusers keeps its torch generator and ours gets that generator's draws. diffusers/torch are imported at
the top on purpose: without them these tests must fail, not skip.
"""

import dataclasses
import functools
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import compile_counter, rel_err, report
from diffusers import LTXEulerAncestralRFScheduler
from diffusers.schedulers import scheduling_ltx_euler_ancestral_rf as diffusers_ancestral
from diffusers.utils import logging as diffusers_logging

import ltx_jax.scheduler as scheduler_module
import ltx_jax.scheduler_ancestral as ancestral_module
from ltx_jax.releases import LTX_SCHEDULER
from ltx_jax.scheduler import (FlowMatchSchedulerConfig, LTXEulerAncestralRFSchedulerConfig,
                               ancestral_sigmas_and_timesteps, ancestral_step, mu_for_tokens)

diffusers_logging.set_verbosity_error()  # silence diffusers' "last sigma is not zero" and ignored-key warnings

SCHEDULE_TOL = 1e-6  # absolute, on sigmas and on timesteps (0..1000 scale)
TRAJECTORY_TOL = 1e-6  # relative (max abs difference / max abs value), float32 end to end
SHAPE = (2, 15, 7)  # [B, tokens, C], odd on purpose
MU = mu_for_tokens(LTX_SCHEDULER, 3 * 15 * 22)

# scheduler_config.json dicts as diffusers' from_config receives them.
LTX_FLOW_MATCH_JSON = {"_class_name": "FlowMatchEulerDiscreteScheduler", **LTX_SCHEDULER.to_dict()}
CONFIGS = {
    "default": {},
    "from_ltx_flow_match": LTX_FLOW_MATCH_JSON,
    "shift3_terminal_eta0.5": {"shift": 3.0, "shift_terminal": 0.05, "eta": 0.5},
    "t500_shift1.7": {"num_train_timesteps": 500, "shift": 1.7, "s_noise": 0.8},
}
# ComfyUI-style explicit schedules (terminal 0 included): the distilled LTX sigmas, a plain line.
COMFY_SIGMAS = [1.0, 0.9937, 0.9875, 0.9812, 0.975, 0.9094, 0.725, 0.4219, 0.0]
LINE_SIGMAS = np.linspace(1.0, 0.0, 11).tolist()


def _diffusers(config: dict) -> LTXEulerAncestralRFScheduler:
    return LTXEulerAncestralRFScheduler.from_config(config)


def _diffusers_schedule(config: dict, **kwargs):
    sched = _diffusers(config)
    sched.set_timesteps(**kwargs)
    return sched


def _schedule_err(ours, sched) -> float:
    sigmas, timesteps = ours
    ref_sigmas, ref_timesteps = sched.sigmas.numpy(), sched.timesteps.numpy()
    assert sigmas.dtype == np.float32 and timesteps.dtype == np.float32
    assert sigmas.shape == ref_sigmas.shape and timesteps.shape == ref_timesteps.shape, \
        (sigmas.shape, ref_sigmas.shape, timesteps.shape, ref_timesteps.shape)
    return float(max(np.abs(sigmas - ref_sigmas).max(), np.abs(timesteps - ref_timesteps).max()))


# ------------------------------------------------------------------------------------------------ (a) schedules
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_generated_schedule_parity(name):
    """``set_timesteps(num_inference_steps, mu=...)``: the flow-match schedule of the options the config carries."""
    cfg = LTXEulerAncestralRFSchedulerConfig.from_dict(CONFIGS[name])
    err = 0.0
    for n in (1, 2, 7, 20, 50):
        if n == 1 and cfg.shift_terminal:
            continue  # one step at sigma 1 stretched to shift_terminal is 0/0 (diffusers: NaN; ltx_jax raises)
        ours = ancestral_sigmas_and_timesteps(cfg, n, mu=MU)
        err = max(err, _schedule_err(ours, _diffusers_schedule(CONFIGS[name], num_inference_steps=n, mu=MU)))
    report(f"ancestral schedule generated {name} (abs)", err, SCHEDULE_TOL)
    assert err <= SCHEDULE_TOL


def test_explicit_schedule_parity():
    """ComfyUI-style sigma lists (timesteps = sigmas * num_train_timesteps, N + 1 of each), ``timesteps=`` read as
    sigmas, a list that does not end at 0 (both warn), lists and arrays."""
    cases = [
        ("default", dict(sigmas=COMFY_SIGMAS)),
        ("default", dict(sigmas=LINE_SIGMAS)),
        ("default", dict(sigmas=np.array(COMFY_SIGMAS[3:]))),
        ("default", dict(timesteps=[1.0, 0.8, 0.3, 0.0])),
        ("default", dict(sigmas=[0.9, 0.6, 0.6, 0.2, 0.0], timesteps=[0.5, 0.1])),  # sigmas win, as in diffusers
        ("t500_shift1.7", dict(sigmas=COMFY_SIGMAS)),
        ("from_ltx_flow_match", dict(sigmas=LINE_SIGMAS, mu=MU)),  # explicit lists ignore the shift and mu
    ]
    err = 0.0
    for name, kwargs in cases:
        ref_kwargs = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        ours = ancestral_sigmas_and_timesteps(LTXEulerAncestralRFSchedulerConfig.from_dict(CONFIGS[name]), **kwargs)
        err = max(err, _schedule_err(ours, _diffusers_schedule(CONFIGS[name], **ref_kwargs)))
    with pytest.warns(UserWarning, match="not 0"):
        ours = ancestral_sigmas_and_timesteps(LTXEulerAncestralRFSchedulerConfig(), sigmas=[1.0, 0.5, 0.05])
    err = max(err, _schedule_err(ours, _diffusers_schedule({}, sigmas=[1.0, 0.5, 0.05])))
    report("ancestral schedule explicit sigma lists (abs)", err, SCHEDULE_TOL)
    assert err <= SCHEDULE_TOL


def test_schedule_errors():
    cfg = LTXEulerAncestralRFSchedulerConfig()
    with pytest.raises(ValueError, match="nothing to build"):
        ancestral_sigmas_and_timesteps(cfg)
    with pytest.raises(ValueError, match="non-increasing"):
        ancestral_sigmas_and_timesteps(cfg, sigmas=[0.5, 0.9, 0.0])
    with pytest.raises(ValueError, match="reads `timesteps` as sigmas"):
        ancestral_sigmas_and_timesteps(cfg, timesteps=[1000.0, 500.0, 0.0])
    with pytest.raises(ValueError, match="makes 8 steps"):
        ancestral_sigmas_and_timesteps(cfg, 9, sigmas=COMFY_SIGMAS)
    with pytest.raises(ValueError, match="mu"):  # dynamic shifting needs mu, as in diffusers
        ancestral_sigmas_and_timesteps(LTXEulerAncestralRFSchedulerConfig.from_dict(LTX_FLOW_MATCH_JSON), 8)


# ------------------------------------------------------------------------------------------------ (b) trajectories
def _fake_velocity(x: np.ndarray, sigma: float, target: np.ndarray) -> np.ndarray:
    """A fixed nonlinear 'model' in numpy float32, run on the host for both sides."""
    return (np.tanh(x * np.float32(1.5)) - target * np.float32(1.0 - 0.5 * sigma)).astype(np.float32)


def _trajectory_inputs(num_steps: int, seed: int):
    rng = np.random.default_rng(seed)
    x_init = rng.standard_normal(SHAPE).astype(np.float32)
    target = rng.standard_normal(SHAPE).astype(np.float32)
    noises = rng.standard_normal((num_steps,) + SHAPE).astype(np.float32)
    return x_init, target, noises


def _diffusers_trajectory(monkeypatch, config, schedule, x_init, target, noises, start=0):
    """diffusers' loop as LTXI2VLongMultiPromptPipeline runs it (steps before ``start`` skipped, ``step`` called with
    the timestep value), its noise draws pinned to ``noises[i]`` at step i. Returns (latents, steps that drew)."""
    sched = _diffusers_schedule(config, **schedule)
    current, drew = [0], []

    def pinned_randn(shape, generator=None, device=None, dtype=None, layout=None):
        assert tuple(shape) == SHAPE and dtype == torch.float32
        drew.append(current[0])
        return torch.from_numpy(noises[current[0]])

    monkeypatch.setattr(diffusers_ancestral, "randn_tensor", pinned_randn)
    x = torch.from_numpy(x_init)
    for i in range(start, len(sched.sigmas) - 1):
        current[0] = i
        velocity = torch.from_numpy(_fake_velocity(x.numpy(), float(sched.sigmas[i]), target))
        x = sched.step(velocity, sched.timesteps[i], x, return_dict=False)[0]
    return x.numpy(), drew


def _our_trajectory(step_fn, sigmas, x_init, target, noises, start=0):
    x = jnp.asarray(x_init)
    for i in range(start, len(sigmas) - 1):
        velocity = _fake_velocity(np.asarray(x), float(sigmas[i]), target)
        x = step_fn(velocity, x, sigmas[i], sigmas[i + 1], noise=noises[i])
    return np.asarray(x)


TRAJECTORIES = {
    # name: (config, set_timesteps arguments, first step)
    "comfy_sigmas": ({}, dict(sigmas=COMFY_SIGMAS), 0),
    "comfy_sigmas_from_step2": ({}, dict(sigmas=COMFY_SIGMAS), 2),  # the pipeline's skip_steps_sigma_threshold
    "ltx_20steps_eta.7_snoise1.1": ({**LTX_FLOW_MATCH_JSON, "eta": 0.7, "s_noise": 1.1},
                                       dict(num_inference_steps=20, mu=MU), 0),
    "eta0_deterministic": ({"eta": 0.0}, dict(sigmas=LINE_SIGMAS), 0),
    "snoise0_eta1": ({"s_noise": 0.0}, dict(sigmas=COMFY_SIGMAS), 0),
    "ends_at_0.05": ({"eta": 0.3}, dict(sigmas=[1.0, 0.8, 0.5, 0.2, 0.05]), 0),
}


@pytest.mark.parametrize("name", sorted(TRAJECTORIES))
def test_trajectory_parity_pinned_noise(name, monkeypatch):
    """Whole sampling loops against diffusers with the same noise, ours jitted with eta / s_noise as Python numbers
    (decided while tracing) and as traced arrays (decided in the program). diffusers must draw exactly on the steps
    that add noise (eta > 0, s_noise > 0, next sigma not 0)."""
    config, schedule, start = TRAJECTORIES[name]
    cfg = LTXEulerAncestralRFSchedulerConfig.from_dict(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a schedule that does not end at 0
        sigmas, _ = ancestral_sigmas_and_timesteps(cfg, **schedule)
    x_init, target, noises = _trajectory_inputs(len(sigmas) - 1, seed=len(name))
    ref, drew = _diffusers_trajectory(monkeypatch, config, schedule, x_init, target, noises, start)
    noisy = cfg.eta > 0 and cfg.s_noise > 0
    assert drew == [i for i in range(start, len(sigmas) - 1) if noisy and sigmas[i + 1] != 0], drew

    static = jax.jit(functools.partial(ancestral_step, eta=cfg.eta, s_noise=cfg.s_noise))
    traced = jax.jit(ancestral_step)
    ours_static = _our_trajectory(static, sigmas, x_init, target, noises, start)
    ours_traced = _our_trajectory(functools.partial(traced, eta=jnp.float32(cfg.eta), s_noise=jnp.float32(cfg.s_noise)),
                                  sigmas, x_init, target, noises, start)
    ours_eager = _our_trajectory(functools.partial(ancestral_step, eta=cfg.eta, s_noise=cfg.s_noise),
                                 sigmas, x_init, target, noises, start)
    err = max(rel_err(ours_static, ref), rel_err(ours_traced, ref))
    report(f"ancestral trajectory {name} jit (rel)", err, TRAJECTORY_TOL)
    # Op by op, every float32 operation is diffusers' own, in its order: bit for bit. Under jit XLA fuses a
    # multiply and an add into one FMA (one rounding instead of two), hence the jit tolerance.
    eager_err = rel_err(ours_eager, ref)
    report(f"ancestral trajectory {name} eager (rel)", eager_err, 0.0)
    assert err <= TRAJECTORY_TOL and eager_err == 0.0


def test_trajectory_parity_torch_generator():
    """diffusers with its own torch generator; ours given that generator's draws (``torch.randn(sample.shape,
    generator)``, float32, one per step that adds noise): what diffusers' randn_tensor draws, and when."""
    config, schedule = {"eta": 0.8}, dict(sigmas=COMFY_SIGMAS)
    cfg = LTXEulerAncestralRFSchedulerConfig.from_dict(config)
    sigmas, _ = ancestral_sigmas_and_timesteps(cfg, **schedule)
    x_init, target, _ = _trajectory_inputs(len(sigmas) - 1, seed=5)
    sched = _diffusers_schedule(config, **schedule)
    generator, replay = torch.Generator().manual_seed(1234), torch.Generator().manual_seed(1234)
    x = torch.from_numpy(x_init)
    ours = jnp.asarray(x_init)
    step_fn = jax.jit(functools.partial(ancestral_step, eta=cfg.eta, s_noise=cfg.s_noise))
    for i in range(len(sigmas) - 1):
        velocity = _fake_velocity(x.numpy(), float(sigmas[i]), target)
        x = sched.step(torch.from_numpy(velocity), sched.timesteps[i], x, generator=generator, return_dict=False)[0]
        noise = torch.randn(SHAPE, generator=replay, dtype=torch.float32).numpy() if sigmas[i + 1] != 0 else None
        ours = step_fn(_fake_velocity(np.asarray(ours), float(sigmas[i]), target), ours, sigmas[i], sigmas[i + 1],
                       noise=noise if noise is not None else np.zeros(SHAPE, np.float32))
    err = rel_err(ours, x.numpy())
    report("ancestral trajectory torch generator (rel)", err, TRAJECTORY_TOL)
    assert err <= TRAJECTORY_TOL
    assert torch.equal(generator.get_state(), replay.get_state())  # diffusers drew no more and no less


def test_single_step_bfloat16_parity(monkeypatch):
    """bf16 latents and velocity: diffusers upcasts both, steps in float32 and casts back to the sample's dtype."""
    rng = np.random.default_rng(7)
    sample, velocity, noise = (rng.standard_normal(SHAPE).astype(np.float32) for _ in range(3))
    monkeypatch.setattr(diffusers_ancestral, "randn_tensor", lambda *a, **k: torch.from_numpy(noise))
    worst = 0.0
    for i in range(len(COMFY_SIGMAS) - 1):
        sched = _diffusers_schedule({"eta": 0.6}, sigmas=COMFY_SIGMAS)
        sched.set_begin_index(i)
        ref = sched.step(torch.from_numpy(velocity).bfloat16(), sched.timesteps[i], torch.from_numpy(sample).bfloat16(),
                         return_dict=False)[0]
        ours = ancestral_step(jnp.asarray(velocity, jnp.bfloat16), jnp.asarray(sample, jnp.bfloat16),
                              COMFY_SIGMAS[i], COMFY_SIGMAS[i + 1], eta=0.6, noise=noise)
        assert ours.dtype == jnp.bfloat16 and ref.dtype == torch.bfloat16
        worst = max(worst, rel_err(np.asarray(ours, np.float32), ref.float().numpy()))
    report("ancestral single step bf16 (rel)", worst, 0.0)
    assert worst == 0.0


# ------------------------------------------------------------------------------------------------ (c) keys and jit
def test_key_noise_is_deterministic_and_compiles_once():
    """Under one jit: the same key gives the same latents, another key others; the key's noise is
    ``jax.random.normal(key, shape, float32)``; new sigmas, keys (and traced eta / s_noise) compile nothing new."""
    rng = np.random.default_rng(3)
    sample = jnp.asarray(rng.standard_normal(SHAPE), jnp.float32)
    velocity = jnp.asarray(rng.standard_normal(SHAPE), jnp.float32)
    step_fn = jax.jit(ancestral_step)
    key, other_key = jax.random.key(0), jax.random.key(1)
    calls = [(0.9, 0.7, 1.0, key), (0.9, 0.7, 1.0, key), (0.9, 0.7, 1.0, other_key)]
    calls += [(sigma, sigma_next, 0.5 + i / 10, jax.random.fold_in(key, i))
              for i, (sigma, sigma_next) in enumerate([(1.0, 0.99), (0.5, 0.25), (0.2, 0.0)])]
    calls = [tuple(jnp.float32(v) for v in call[:3]) + call[3:] for call in calls]  # made before counting
    with compile_counter() as compiles:
        outputs = [np.asarray(step_fn(velocity, sample, sigma, sigma_next, eta=eta, key=step_key))
                   for sigma, sigma_next, eta, step_key in calls]
    first, again, other = outputs[:3]
    print(f"\n[ancestral_step jit] {len(compiles)} backend compilation(s) for {len(calls)} calls")
    assert len(compiles) == 1, compiles
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)
    # The key's noise is jax.random.normal(key, shape, float32): exactly so op by op; under jit to fusion's roundings.
    eager = np.asarray(ancestral_step(velocity, sample, 0.9, 0.7, key=key))
    pinned = np.asarray(ancestral_step(velocity, sample, 0.9, 0.7, noise=jax.random.normal(key, SHAPE, jnp.float32)))
    assert np.array_equal(eager, pinned)
    assert rel_err(first, pinned) <= TRAJECTORY_TOL


def test_whole_loop_under_one_jit():
    """The module docstring's loop: ``lax.fori_loop`` over traced ``sigmas[i]`` with ``fold_in(key, i)`` per step
    against the same steps taken one call at a time (op by op)."""
    cfg = LTXEulerAncestralRFSchedulerConfig(eta=0.9)
    sigmas, timesteps = map(jnp.asarray, ancestral_sigmas_and_timesteps(cfg, sigmas=COMFY_SIGMAS))
    x_init, target, _ = _trajectory_inputs(0, seed=11)
    key = jax.random.key(42)

    def model(x, t):
        return jnp.tanh(x * 1.5) - target * (1.0 - 0.5 * t / 1000.0)

    def body(i, x):
        return ancestral_step(model(x, timesteps[i]), x, sigmas[i], sigmas[i + 1], eta=cfg.eta, s_noise=cfg.s_noise,
                              key=jax.random.fold_in(key, i))

    looped = jax.jit(lambda x: jax.lax.fori_loop(0, len(sigmas) - 1, body, x))(jnp.asarray(x_init))
    x = jnp.asarray(x_init)
    for i in range(len(sigmas) - 1):
        x = body(i, x)
    err = rel_err(looped, x)
    report("ancestral fori_loop vs step by step (rel)", err, TRAJECTORY_TOL)
    assert err <= TRAJECTORY_TOL


def test_step_argument_errors():
    x = jnp.zeros(SHAPE)
    with pytest.raises(ValueError, match="either `key`"):
        ancestral_step(x, x, 0.9, 0.7, key=jax.random.key(0), noise=x)
    with pytest.raises(ValueError, match="adds noise"):
        ancestral_step(x, x, 0.9, 0.7)
    with pytest.raises(ValueError, match="0-d"):
        ancestral_step(x, x, jnp.ones(2), 0.7, noise=x)
    # a deterministic step (eta or s_noise a Python number <= 0) needs no noise
    assert ancestral_step(x, x, 0.9, 0.7, eta=0.0).shape == SHAPE
    assert ancestral_step(x, x, 0.9, 0.7, s_noise=0).shape == SHAPE
    assert ancestral_step(x, x, 0.9, 0.0).shape == SHAPE  # the final step returns x0


# ------------------------------------------------------------------------------------------------ (d) config
def test_config_round_trips_scheduler_config_json(tmp_path):
    """diffusers' saved scheduler_config.json -> ours -> to_dict is the file (bookkeeping aside), and diffusers reads
    our to_dict back to the same config; built from a flow-match config, the carried options survive both ways."""
    cases = {
        "plain": LTXEulerAncestralRFScheduler(eta=0.6, s_noise=0.9, num_train_timesteps=500),
        "from_ltx_flow_match": _diffusers(LTX_FLOW_MATCH_JSON),
        "from_flow_match_defaults_dropped": _diffusers({**LTX_FLOW_MATCH_JSON, "_use_default_values": ["shift"]}),
    }
    for name, torch_sched in cases.items():
        folder = os.fspath(tmp_path / name)
        torch_sched.save_pretrained(folder)
        path = os.path.join(folder, "scheduler_config.json")
        saved = json.load(open(path))
        cfg = LTXEulerAncestralRFSchedulerConfig.from_json(path)
        assert cfg.to_dict() == {k: v for k, v in saved.items() if k != "_diffusers_version"}, name
        hash(cfg)  # frozen: usable as a static jit argument
        json.dump(cfg.to_dict(), open(path, "w"))
        back = LTXEulerAncestralRFScheduler.from_pretrained(folder)
        assert {k: v for k, v in back.config.items() if not k.startswith("_")} == \
            {k: v for k, v in cfg.to_dict().items() if not k.startswith("_")}, name
    carried = LTXEulerAncestralRFSchedulerConfig.from_dict(LTX_FLOW_MATCH_JSON)
    assert carried.flow_match_config() == LTX_SCHEDULER
    assert LTXEulerAncestralRFSchedulerConfig().flow_match_config() == FlowMatchSchedulerConfig()
    assert LTXEulerAncestralRFSchedulerConfig.from_dict({"shift_terminal": None}) == \
        LTXEulerAncestralRFSchedulerConfig()
    own = {"num_train_timesteps", "eta", "s_noise"}
    flow_match = {f.name for f in dataclasses.fields(FlowMatchSchedulerConfig)}
    assert {f.name for f in dataclasses.fields(LTXEulerAncestralRFSchedulerConfig)} == own | flow_match


def test_config_rejects():
    with pytest.raises(ValueError, match="unknown config keys"):
        LTXEulerAncestralRFSchedulerConfig.from_dict({"eta": 1.0, "sigma_min": 0.1})
    with pytest.raises(ValueError, match="'eta' must be float"):
        LTXEulerAncestralRFSchedulerConfig.from_dict({"eta": "1.0"})
    with pytest.raises(ValueError, match="DDIMScheduler"):
        LTXEulerAncestralRFSchedulerConfig.from_dict({"_class_name": "DDIMScheduler"})
    with pytest.raises(ValueError, match="use_karras_sigmas"):  # carried flow-match options are checked on load
        LTXEulerAncestralRFSchedulerConfig.from_dict({"use_karras_sigmas": True})
    with pytest.raises(ValueError, match="finite"):
        LTXEulerAncestralRFSchedulerConfig(eta=float("nan"))


def test_scheduler_module_reexports():
    for name in ancestral_module.__all__:
        assert getattr(scheduler_module, name) is getattr(ancestral_module, name)
        assert name in scheduler_module.__all__ and name in dir(scheduler_module)

"""Host-side schedules: sigmas / timesteps as diffusers' LTX pipelines compute them, and per-step strength arrays."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ltx_jax import scheduler as sched


def schedule(config: sched.FlowMatchSchedulerConfig, num_inference_steps: int | None, num_tokens: int,
             timesteps=None, sigmas=None) -> tuple[np.ndarray, np.ndarray]:
    """(sigmas [S + 1], timesteps [S]) float32, as diffusers' LTX pipelines pass them to ``set_timesteps``.

    With neither ``timesteps`` nor ``sigmas`` given, ``LTXPipeline`` passes sigmas = linspace(1, 1/N, N); ``mu`` comes
    from the latent token count when the scheduler shifts dynamically.
    """
    mu = sched.mu_for_tokens(config, num_tokens) if config.use_dynamic_shifting else None
    if timesteps is None and sigmas is None:
        sigmas = np.linspace(1.0, 1.0 / num_inference_steps, num_inference_steps)
    return sched.sigmas_and_timesteps(config, None, mu=mu, sigmas=sigmas, timesteps=timesteps)


def per_step(name: str, value: float | Sequence[float] | Any, num_steps: int) -> np.ndarray:
    """A strength given once or once per step -> [num_steps] float32 (the shape the compiled loop always takes, so a
    scalar and a list of the same length run the same program)."""
    values = np.asarray(value, dtype=np.float32)
    if values.ndim == 0:
        return np.full((num_steps,), values, np.float32)
    if values.shape != (num_steps,):
        raise ValueError(f"{name} has {values.size} values for {num_steps} steps; give one number or one per step.")
    return values

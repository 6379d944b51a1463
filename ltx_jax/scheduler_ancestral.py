"""Euler-ancestral rectified-flow scheduler for LTX-Video (diffusers' ``LTXEulerAncestralRFScheduler``), as pure
functions.

diffusers' class mirrors ComfyUI's ``sample_euler_ancestral_RF``; its ``LTXI2VLongMultiPromptPipeline`` runs with it.
Like :mod:`ltx_jax.scheduler`, the stateful object splits into:

* **Host side, once per generation**: :func:`ancestral_sigmas_and_timesteps` returns the float32 ``sigmas`` and
  ``timesteps`` that ``scheduler.set_timesteps`` leaves on the object, either an explicit ComfyUI-style sigma list
  (terminal 0 included) or the flow-match schedule of ``num_inference_steps``.
* **Device side, every step**: :func:`ancestral_step` takes ``sigma = sigmas[i]`` and ``sigma_next = sigmas[i + 1]``
  (possibly traced), the stochasticity ``eta`` / ``s_noise``, and a PRNG ``key`` (or pinned ``noise``)::

      cfg = LTXEulerAncestralRFSchedulerConfig(eta=1.0, s_noise=1.0)
      sigmas, timesteps = map(jnp.asarray, ancestral_sigmas_and_timesteps(cfg, sigmas=[1.0, 0.99, 0.7, 0.4, 0.0]))

      def body(i, x):
          v = model(x, timesteps[i])
          return ancestral_step(v, x, sigmas[i], sigmas[i + 1], eta=cfg.eta, s_noise=cfg.s_noise,
                                key=jax.random.fold_in(key, i))

      x = jax.lax.fori_loop(0, len(sigmas) - 1, body, x)

diffusers draws its noise with ``randn_tensor(sample.shape, generator)`` once per step that adds noise; here it is
``jax.random.normal(key, sample.shape, float32)`` of the step's key, so the noise differs from torch's unless it is
passed in as ``noise`` (the parity tests pin it that way).

This module imports ``ltx_jax.scheduler`` (the flow-match schedule it reuses); ``ltx_jax.scheduler`` re-exports
these names lazily, so neither import order makes a cycle.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs import _dataclass_from_dict, config_from_json
from ltx_jax.scheduler import FlowMatchSchedulerConfig, sigmas_and_timesteps

__all__ = [
    "LTXEulerAncestralRFSchedulerConfig",
    "ancestral_sigmas_and_timesteps",
    "ancestral_step",
]

_CLASS_NAME = "LTXEulerAncestralRFScheduler"
# diffusers' pipeline example builds this scheduler with ``from_config(flow_match_scheduler.config)``.
_COMPATIBLE_CLASS_NAME = "FlowMatchEulerDiscreteScheduler"
# Options of FlowMatchEulerDiscreteScheduler that diffusers keeps in this scheduler's config (and scheduler_config.json)
# when it is built from a flow-match config; they shape the schedule of ``set_timesteps(num_inference_steps)``.
_FLOW_MATCH_KEYS = tuple(f.name for f in dataclasses.fields(FlowMatchSchedulerConfig)
                         if f.name != "num_train_timesteps")
# diffusers compares ``abs(sigma_next) < 1e-8`` in float64; for a float32 sigma that is ``<=`` float32(1e-8)
# (float32(1e-8) lies just below 1e-8, the next float32 above it).
_FINAL_SIGMA = np.float32(1e-8)

ArrayLike = Union[np.ndarray, jnp.ndarray, Sequence[float]]


@dataclasses.dataclass(frozen=True)
class LTXEulerAncestralRFSchedulerConfig:
    """Options of diffusers' ``LTXEulerAncestralRFScheduler``, under its ``scheduler_config.json`` names and defaults.

    Attributes:
        num_train_timesteps: ``timesteps = sigmas * this`` for explicit sigma lists.
        eta: Stochasticity: 0 is a deterministic DDIM-like step, 1 ComfyUI's RF default.
        s_noise: Scale of the added noise.
        shift ... stochastic_sampling: ``FlowMatchEulerDiscreteScheduler`` options, None when absent (flow-match
            defaults then). diffusers keeps the ones it was given when this scheduler is built with
            ``from_config(flow_match_config)`` and builds ``set_timesteps(num_inference_steps)``'s schedule from them
            (:meth:`flow_match_config`); they do not affect explicit sigma lists or the step. A JSON ``null`` reads
            as absent.
    """

    num_train_timesteps: int = 1000
    eta: float = 1.0
    s_noise: float = 1.0
    shift: float | None = None
    use_dynamic_shifting: bool | None = None
    base_shift: float | None = None
    max_shift: float | None = None
    base_image_seq_len: int | None = None
    max_image_seq_len: int | None = None
    invert_sigmas: bool | None = None
    shift_terminal: float | None = None
    use_karras_sigmas: bool | None = None
    use_exponential_sigmas: bool | None = None
    use_beta_sigmas: bool | None = None
    time_shift_type: str | None = None
    stochastic_sampling: bool | None = None

    def __post_init__(self) -> None:
        n = self.num_train_timesteps
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{type(self).__name__}: num_train_timesteps={n!r}; must be an int >= 1 "
                             "(1000 for LTX-Video).")
        object.__setattr__(self, "num_train_timesteps", int(n))
        for name in ("eta", "s_noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value):
                raise ValueError(f"{type(self).__name__}: {name}={value!r}; must be a finite number (1.0 by default).")
            object.__setattr__(self, name, float(value))
        self.flow_match_config()  # the carried flow-match options are checked where they are used

    def flow_match_config(self) -> FlowMatchSchedulerConfig:
        """The ``FlowMatchEulerDiscreteScheduler`` options the generated schedule comes from (diffusers:
        ``FlowMatchEulerDiscreteScheduler.from_config(self.config)``): the carried ones, defaults for the rest."""
        carried = {k: getattr(self, k) for k in _FLOW_MATCH_KEYS if getattr(self, k) is not None}
        return FlowMatchSchedulerConfig(num_train_timesteps=self.num_train_timesteps, **carried)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "LTXEulerAncestralRFSchedulerConfig":
        """From a ``scheduler_config.json`` dict of this scheduler, or of ``FlowMatchEulerDiscreteScheduler`` (as
        diffusers' ``from_config`` takes it). Bookkeeping keys are ignored; unknown keys and wrong types raise."""
        class_name = config.get("_class_name")
        if class_name not in (None, _CLASS_NAME, _COMPATIBLE_CLASS_NAME):
            raise ValueError(f"{cls.__name__}: the config is for {class_name!r}, not {_CLASS_NAME!r} (or the "
                             f"compatible {_COMPATIBLE_CLASS_NAME!r}); load the matching scheduler_config.json.")
        present = {k: v for k, v in config.items() if not (v is None and k in _FLOW_MATCH_KEYS)}
        return _dataclass_from_dict(cls, present)

    @classmethod
    def from_json(cls, path: Union[str, os.PathLike]) -> "LTXEulerAncestralRFSchedulerConfig":
        return config_from_json(cls, path)

    def to_dict(self) -> dict:
        """``scheduler_config.json``'s keys: the class name, the three own options and the carried flow-match ones
        (what diffusers' ``from_config`` / ``from_pretrained`` read back to this scheduler)."""
        own = {"num_train_timesteps": self.num_train_timesteps, "eta": self.eta, "s_noise": self.s_noise}
        carried = {k: getattr(self, k) for k in _FLOW_MATCH_KEYS if getattr(self, k) is not None}
        return {"_class_name": _CLASS_NAME, **own, **carried}

    def replace(self, **changes: Any) -> "LTXEulerAncestralRFSchedulerConfig":
        return dataclasses.replace(self, **changes)


def ancestral_sigmas_and_timesteps(
    config: LTXEulerAncestralRFSchedulerConfig,
    num_inference_steps: Optional[int] = None,
    *,
    sigmas: Optional[ArrayLike] = None,
    timesteps: Optional[ArrayLike] = None,
    mu: Optional[float] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """The schedule diffusers' ``LTXEulerAncestralRFScheduler.set_timesteps`` leaves in ``.sigmas`` / ``.timesteps``.

    * ``sigmas=[...]`` (ComfyUI style, the terminal 0 included): used as given in float32 and
      ``timesteps = sigmas * num_train_timesteps``, so both have ``N + 1`` entries (the last timestep is the
      terminal one; diffusers' pipeline loops over ``timesteps[:-1]``). ``mu`` is ignored.
    * ``timesteps=[...]`` without ``sigmas``: diffusers treats them *as sigmas* (not divided by
      ``num_train_timesteps``), and so does this; with ``sigmas`` they are ignored.
    * ``num_inference_steps`` only: the flow-match schedule of ``config.flow_match_config()``
      (:func:`ltx_jax.scheduler.sigmas_and_timesteps`, ``mu`` as there): sigmas ``[N + 1]``, timesteps ``[N]``.

    A last sigma other than 0 warns, as in diffusers. Where diffusers warns that ``num_inference_steps`` disagrees
    with an explicit list and overrides it, this raises.

    Looping ``i`` over ``sigmas[i] -> sigmas[i + 1]`` is diffusers' loop, with one exception: diffusers' first ``step``
    looks its index up by timestep value and takes the *second* of equal ones, so a schedule whose first sigma
    repeats (``[1.0, 1.0, ...]``) starts at index 1 there and its last call leaves the sample unchanged.

    Returns:
        ``(sigmas, timesteps)``: float32 numpy arrays, shapes above.
    """
    if not isinstance(config, LTXEulerAncestralRFSchedulerConfig):
        raise TypeError(f"`config` must be an LTXEulerAncestralRFSchedulerConfig, got {type(config).__name__}; build "
                        "one with LTXEulerAncestralRFSchedulerConfig.from_json(...) or its constructor.")
    if sigmas is None and timesteps is None:
        if num_inference_steps is None:
            raise ValueError("nothing to build a schedule from: pass num_inference_steps=N or sigmas=[..., 0.0].")
        return sigmas_and_timesteps(config.flow_match_config(), num_inference_steps, mu=mu)
    name = "sigmas" if sigmas is not None else "timesteps"
    given = np.asarray(sigmas if sigmas is not None else timesteps, dtype=np.float32)
    if given.ndim != 1 or given.size < 2:
        raise ValueError(f"`{name}` must be a 1-D list of at least two sigmas (the last the terminal 0), got shape "
                         f"{given.shape}.")
    if not np.all(np.isfinite(given)) or given.min() < 0 or given.max() > 1 or np.any(np.diff(given) > 0):
        raise ValueError(f"`{name}` must be non-increasing sigmas in [0, 1], got {given.tolist()}"
                         + ("; diffusers' LTXEulerAncestralRFScheduler reads `timesteps` as sigmas, so pass "
                            "timestep / num_train_timesteps." if sigmas is None else "."))
    if num_inference_steps is not None and num_inference_steps != given.size - 1:
        raise ValueError(f"num_inference_steps={num_inference_steps} but `{name}` makes {given.size - 1} steps "
                         f"({given.size} entries with the terminal one); drop num_inference_steps or make them agree.")
    if abs(float(given[-1])) > 1e-6:
        warnings.warn(f"the last sigma of the schedule is {float(given[-1]):.6f}, not 0: the last step leaves noise "
                      "in the latents (ComfyUI's RF sampler ends at 0).", stacklevel=2)
    return given, given * np.float32(config.num_train_timesteps)


def _adds_noise(eta: Any, s_noise: Any, sigma_next: Any) -> Optional[bool]:
    """Whether the step adds noise (diffusers: ``eta > 0 and s_noise > 0`` and not the final step), when that is
    known before tracing: False as soon as one of them is a Python / numpy number that says no, True when all three
    are numbers that say yes, None (decided inside the program) otherwise."""
    numbers = (int, float, np.integer, np.floating)
    known = [bool(v > 0) if isinstance(v, numbers) else None for v in (eta, s_noise)]
    known.append(bool(abs(np.float32(sigma_next)) > _FINAL_SIGMA) if isinstance(sigma_next, numbers) else None)
    if False in known:
        return False
    return None if None in known else True


def ancestral_step(
    model_output: jnp.ndarray,
    sample: jnp.ndarray,
    sigma: Union[float, jnp.ndarray],
    sigma_next: Union[float, jnp.ndarray],
    *,
    eta: Union[float, jnp.ndarray] = 1.0,
    s_noise: Union[float, jnp.ndarray] = 1.0,
    key: Optional[jax.Array] = None,
    noise: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
    """One Euler-ancestral RF step (diffusers' ``LTXEulerAncestralRFScheduler.step``), in float32.

    With ``x0 = sample - sigma * model_output`` (CONST parametrisation, ``model_output`` the velocity):

    * ``sigma_next == 0`` (within 1e-8): returns ``x0``.
    * else ``sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)`` and the deterministic step
      ``x = (sigma_down / sigma) * sample + (1 - sigma_down / sigma) * x0``; when ``eta > 0`` and ``s_noise > 0``
      it is rescaled to the next noise level and re-noised:
      ``x * (1 - sigma_next) / (1 - sigma_down) + noise * s_noise * sqrt(sigma_next**2 - sigma_down**2 *
      (1 - sigma_next)**2 / (1 - sigma_down)**2)`` (diffusers' 1e-12 guards included).

    Jittable: ``sigma``, ``sigma_next``, ``eta``, ``s_noise`` and ``key`` may be traced (one program for every step).
    The step past the last sigma, which diffusers answers with the sample unchanged, is the caller's loop bound.

    Args:
        model_output: velocity ``[*S]`` (any float dtype; upcast to float32).
        sample: latents ``x_t`` ``[*S]``, dtype ``D``.
        sigma, sigma_next: 0-d float32 noise levels ``sigmas[i]``, ``sigmas[i + 1]``.
        eta, s_noise: the config's stochasticity and noise scale (Python numbers or 0-d arrays).
        key: PRNG key for the step's noise, ``jax.random.normal(key, S, float32)``; or
        noise: that noise given, standard normal ``[*S]`` (e.g. pinned to torch's draws). Exactly one of the two is
            needed when the step can add noise; neither when ``eta`` or ``s_noise`` is a Python number <= 0 or
            ``sigma_next`` the Python number 0.

    Returns:
        next latents ``[*S]`` in ``D`` (computed in float32 and cast back, as diffusers).
    """
    sample = jnp.asarray(sample)
    out_dtype = sample.dtype
    x = sample.astype(jnp.float32)
    velocity = jnp.asarray(model_output).astype(jnp.float32)
    if velocity.shape != x.shape:
        raise ValueError(f"model_output shape {velocity.shape} must equal the sample's {x.shape}.")
    adds_noise = _adds_noise(eta, s_noise, sigma_next)  # before they become arrays
    sigma = jnp.asarray(sigma, jnp.float32)
    sigma_next = jnp.asarray(sigma_next, jnp.float32)
    if sigma.ndim or sigma_next.ndim:
        raise ValueError(f"sigma and sigma_next must be 0-d (one noise level per step), got shapes {sigma.shape} "
                         f"and {sigma_next.shape}; pass sigmas[i] and sigmas[i + 1].")
    if key is not None and noise is not None:
        raise ValueError("pass either `key` (the step draws its noise) or `noise` (pinned), not both.")
    eta = jnp.asarray(eta, jnp.float32)
    s_noise = jnp.asarray(s_noise, jnp.float32)

    # Scalars first, then broadcast, in diffusers' order of float32 operations.
    denoised = x - sigma * velocity
    downstep_ratio = 1.0 + (sigma_next / sigma - 1.0) * eta
    sigma_down = sigma_next * downstep_ratio
    alpha_next = 1.0 - sigma_next
    alpha_down = 1.0 - sigma_down
    sigma_ratio = sigma_down / sigma
    prev = sigma_ratio * x + (1.0 - sigma_ratio) * denoised
    if adds_noise is not False:
        if noise is None and key is None:
            raise ValueError("this step adds noise (eta > 0 and s_noise > 0): pass `key=` (a jax PRNG key) or "
                             "`noise=` (standard normal, the sample's shape).")
        if noise is None:
            noise = jax.random.normal(key, x.shape, jnp.float32)
        noise = jnp.asarray(noise)
        if noise.shape != x.shape:
            raise ValueError(f"noise shape {noise.shape} must equal the sample's {x.shape}.")
        renoise_coeff = jnp.sqrt(jnp.maximum(
            sigma_next ** 2 - sigma_down ** 2 * alpha_next ** 2 / (alpha_down ** 2 + 1e-12), 0.0))
        renoised = (alpha_next / (alpha_down + 1e-12)) * prev + noise.astype(jnp.float32) * renoise_coeff * s_noise
        prev = renoised if adds_noise else jnp.where((eta > 0.0) & (s_noise > 0.0), renoised, prev)
    prev = jnp.where(jnp.abs(sigma_next) <= _FINAL_SIGMA, denoised, prev)
    return prev.astype(out_dtype)

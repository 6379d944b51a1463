"""Flow-matching Euler scheduler for LTX-Video, written as pure functions.

This module reproduces the numerics of diffusers' ``FlowMatchEulerDiscreteScheduler``
(the scheduler every LTX-Video 0.9.x checkpoint ships with) without its mutable
Python state.

Functional design
-----------------
diffusers keeps ``sigmas``, ``timesteps`` and a ``step_index`` counter on a stateful
object that ``step`` advances.  That cannot live inside ``jax.jit``/``lax.fori_loop``.
Here the split is:

* **Host side, once per generation** (plain numpy, no tracing):
  :func:`sigmas_and_timesteps` turns a :class:`FlowMatchSchedulerConfig` plus
  ``num_inference_steps`` / ``mu`` / explicit lists into two float32 arrays,
  ``sigmas`` of shape ``[N + 1]`` (ending with the terminal sigma) and
  ``timesteps`` of shape ``[N]`` on the ``0..num_train_timesteps`` scale.  These are
  bit-for-bit what ``scheduler.set_timesteps`` leaves in ``scheduler.sigmas`` /
  ``scheduler.timesteps``.
* **Device side, every step** (jittable, no Python control flow on traced values):
  :func:`step` takes ``sigma = sigmas[i]`` and ``sigma_next = sigmas[i + 1]`` as
  (possibly traced) scalars, and :func:`step_per_token` takes the whole ``sigmas``
  array plus per-token timesteps.  The "scheduler state" is therefore just the
  ``sigmas`` array and the loop index, which a ``lax.fori_loop``/``lax.scan`` carries::

      sigmas, timesteps = sigmas_and_timesteps(cfg, 40, mu=mu_for_tokens(cfg, n_tok))

      def body(i, x):
          v = model(x, timesteps[i])
          return step(v, x, sigmas[i], sigmas[i + 1])

      x = jax.lax.fori_loop(0, len(timesteps), body, x)

The config is a frozen (hashable) dataclass, so it can also be a static jit argument.
The configs and timestep lists of the released checkpoints are in ``ltx_jax.releases`` (``LTX_SCHEDULER``,
``LTX_DISTILLED_TIMESTEPS``...). This module imports only numpy, jax, the standard library and ``ltx_jax.lazy``.

The Euler-ancestral RF scheduler (diffusers' ``LTXEulerAncestralRFScheduler``) is in ``ltx_jax.scheduler_ancestral``;
its names are re-exported here on first use.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.lazy import lazy_exports

__all__ = [
    "FlowMatchSchedulerConfig",
    "calculate_shift",
    "mu_for_tokens",
    "sigmas_and_timesteps",
    "step",
    "step_per_token",
    "scale_noise",
]

ArrayLike = Union[np.ndarray, jnp.ndarray, Sequence[float]]

_CLASS_NAME = "FlowMatchEulerDiscreteScheduler"
# Metadata keys diffusers writes into scheduler_config.json that carry no scheduler option.
_METADATA_KEYS = frozenset({"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"})


def _err(rule: str, fix: str) -> ValueError:
    return ValueError(f"{rule} Fix: {fix}")


@dataclasses.dataclass(frozen=True)
class FlowMatchSchedulerConfig:
    """Options of diffusers' ``FlowMatchEulerDiscreteScheduler``, under the names its
    ``scheduler_config.json`` uses.  Defaults equal diffusers' constructor defaults, so a
    partial json is read the way diffusers reads it.

    Attributes:
        num_train_timesteps: Training timestep count; ``timesteps = sigmas * this``.
        shift: Static shift ``s -> shift*s / (1 + (shift-1)*s)``, used when
            ``use_dynamic_shifting`` is False.
        use_dynamic_shifting: Resolution-dependent shift; then ``mu`` is required by
            :func:`sigmas_and_timesteps` (see :func:`mu_for_tokens`).
        base_shift, max_shift, base_image_seq_len, max_image_seq_len: The line used by
            :func:`calculate_shift` to map a token count to ``mu``.
        invert_sigmas: Mochi-style inversion (``sigmas = 1 - sigmas``, terminal sigma 1).
        shift_terminal: If set (non-zero), stretch the shifted schedule so its last
            non-terminal sigma equals this value.
        time_shift_type: ``"exponential"`` (``e^mu / (e^mu + 1/t - 1)``) or ``"linear"``
            (``mu / (mu + 1/t - 1)``).
        stochastic_sampling: If True, steps re-noise the x0 estimate with caller-supplied
            noise instead of taking the deterministic Euler step.
        use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas: Present so diffusers
            configs load; only ``False`` is supported (no LTX checkpoint uses them).
    """

    num_train_timesteps: int = 1000
    shift: float = 1.0
    use_dynamic_shifting: bool = False
    base_shift: Optional[float] = 0.5
    max_shift: Optional[float] = 1.15
    base_image_seq_len: int = 256
    max_image_seq_len: int = 4096
    invert_sigmas: bool = False
    shift_terminal: Optional[float] = None
    use_karras_sigmas: bool = False
    use_exponential_sigmas: bool = False
    use_beta_sigmas: bool = False
    time_shift_type: str = "exponential"
    stochastic_sampling: bool = False

    def __post_init__(self) -> None:
        for name in ("use_dynamic_shifting", "invert_sigmas", "use_karras_sigmas",
                     "use_exponential_sigmas", "use_beta_sigmas", "stochastic_sampling"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise _err(f"`{name}` must be a bool, got {getattr(self, name)!r}.",
                           f"pass {name}=True or {name}=False.")
        for name in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
            if getattr(self, name):
                raise _err(f"`{name}=True` is not supported by ltx_jax.scheduler (no LTX-Video "
                           "checkpoint uses Karras/exponential/beta sigma spacing).",
                           f"set {name}=False, or pass the converted schedule explicitly via "
                           "sigmas_and_timesteps(..., sigmas=[...]).")
        n = self.num_train_timesteps
        if isinstance(n, bool) or not isinstance(n, (int, np.integer, float)) or n != int(n) or int(n) < 1:
            raise _err(f"`num_train_timesteps` must be a positive integer, got {n!r}.",
                       "use the value from scheduler_config.json (1000 for LTX-Video).")
        object.__setattr__(self, "num_train_timesteps", int(n))
        if self.time_shift_type not in ("exponential", "linear"):
            raise _err(f"`time_shift_type` must be 'exponential' or 'linear', got {self.time_shift_type!r}.",
                       "use 'exponential' (what LTX-Video uses).")
        if not _is_real(self.shift) or not self.shift > 0:
            raise _err(f"`shift` must be a positive number, got {self.shift!r}.",
                       "use shift=1.0 for no static shift.")
        object.__setattr__(self, "shift", float(self.shift))
        if self.shift_terminal is not None:
            if not _is_real(self.shift_terminal) or not 0.0 <= self.shift_terminal < 1.0:
                raise _err(f"`shift_terminal` must be None or in [0, 1), got {self.shift_terminal!r}.",
                           "use None (or 0) to disable the stretch, 0.1 for LTX-Video.")
            object.__setattr__(self, "shift_terminal", float(self.shift_terminal))
        for name in ("base_shift", "max_shift"):
            v = getattr(self, name)
            if v is not None:
                if not _is_real(v):
                    raise _err(f"`{name}` must be a number or None, got {v!r}.", f"pass a float {name}.")
                object.__setattr__(self, name, float(v))
        for name in ("base_image_seq_len", "max_image_seq_len"):
            v = getattr(self, name)
            if not _is_real(v):
                raise _err(f"`{name}` must be a number, got {v!r}.", f"pass an integer {name}.")
        if self.use_dynamic_shifting and self.time_shift_type == "linear" and self.base_shift is not None \
                and self.base_shift <= 0:
            raise _err("linear time shift needs a positive mu, so `base_shift` must be > 0.",
                       "use time_shift_type='exponential' or a positive base_shift.")

    # ----------------------------------------------------------------- (de)serialisation
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FlowMatchSchedulerConfig":
        """Build from a diffusers ``scheduler_config.json`` dict.

        Metadata keys (``_class_name``, ``_diffusers_version``, ...) are ignored, except that a
        ``_class_name`` other than ``FlowMatchEulerDiscreteScheduler`` raises.  Unknown keys raise
        a ValueError naming them.
        """
        if not isinstance(d, Mapping):
            raise _err(f"from_dict expects a mapping, got {type(d).__name__}.",
                       "pass the parsed scheduler_config.json dict, or use from_json(path).")
        cls_name = d.get("_class_name")
        if cls_name is not None and cls_name != _CLASS_NAME:
            raise _err(f"scheduler config is for `{cls_name}`, not `{_CLASS_NAME}`.",
                       "load the LTX-Video scheduler_config.json (FlowMatchEulerDiscreteScheduler).")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in d if k not in fields and k not in _METADATA_KEYS)
        if unknown:
            raise _err(f"unknown scheduler config key(s): {', '.join(unknown)}. "
                       f"Known keys: {', '.join(sorted(fields))}.",
                       "remove these keys, or check that the file is a FlowMatchEulerDiscreteScheduler config "
                       "from a diffusers version this module supports.")
        return cls(**{k: v for k, v in d.items() if k in fields})

    @classmethod
    def from_json(cls, path: Union[str, os.PathLike]) -> "FlowMatchSchedulerConfig":
        """Read a diffusers ``scheduler_config.json`` file (see :meth:`from_dict`)."""
        try:
            with open(path, "r", encoding="utf-8") as f:
                return cls.from_dict(json.load(f))
        except ValueError as e:  # also json.JSONDecodeError
            raise ValueError(f"{path}: {e}") from None

    def to_dict(self) -> dict:
        """Plain dict with diffusers' key names (loadable by ``FlowMatchEulerDiscreteScheduler(**d)``)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "FlowMatchSchedulerConfig":
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


# --------------------------------------------------------------------------- shift helpers
def calculate_shift(
    image_seq_len: float,
    base_seq_len: float = 256,
    max_seq_len: float = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """``mu`` on the line through ``(base_seq_len, base_shift)`` and ``(max_seq_len, max_shift)``.

    Same signature/defaults as diffusers' ``calculate_shift`` (Flux/LTX pipelines); Python float
    math.  Not clamped: token counts outside the range extrapolate, as in diffusers.
    """
    if max_seq_len == base_seq_len:
        raise _err("calculate_shift needs max_seq_len != base_seq_len (the line is undefined).",
                   "fix base_image_seq_len / max_image_seq_len in the scheduler config.")
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    intercept = base_shift - slope * base_seq_len
    return image_seq_len * slope + intercept


def mu_for_tokens(config: FlowMatchSchedulerConfig, num_tokens: int) -> float:
    """``mu`` for a latent of ``num_tokens`` tokens (``frames * height * width`` in latent/patch
    units, as diffusers' LTX pipelines count it) using the config's shift line."""
    if config.base_shift is None or config.max_shift is None:
        raise _err("mu_for_tokens needs `base_shift` and `max_shift` in the config, got None.",
                   "set them (LTX-Video: base_shift=0.95, max_shift=2.05) or pass mu directly.")
    if isinstance(num_tokens, bool) or not _is_real(num_tokens) or num_tokens <= 0:
        raise _err(f"`num_tokens` must be a positive number, got {num_tokens!r}.",
                   "pass latent_frames * latent_height * latent_width.")
    return calculate_shift(num_tokens, config.base_image_seq_len, config.max_image_seq_len,
                           config.base_shift, config.max_shift)


# --------------------------------------------------------------------------- schedule
def _as_1d(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise _err(f"`{name}` must be a non-empty 1-D list, got shape {arr.shape}.",
                   f"pass a flat list like {name}=[...] with one entry per inference step.")
    if not np.all(np.isfinite(arr)):
        raise _err(f"`{name}` must be finite, got {values!r}.", f"remove NaN/inf from `{name}`.")
    if np.any(np.diff(arr) > 0):
        raise _err(f"`{name}` must be non-increasing (denoising runs from noise to data), got {values!r}.",
                   f"sort `{name}` in descending order.")
    return arr


def torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps, dtype=torch.float32)`` bit for bit: ends rounded to float32, the step
    ``(end - start) / (steps - 1)`` in float32, the first half ``start + i * step`` and the rest
    ``end - (steps - 1 - i) * step``, each one fused multiply-add, as torch's CUDA kernel and its AVX2 / AVX-512 CPU
    kernels compute them (tests/test_scheduler.py holds it to torch; a CPU build without FMA,
    ``ATEN_CPU_CAPABILITY=default``, rounds twice). The RoPE frequencies and the original package's step-count
    schedule are built on it."""
    if steps <= 1:
        return np.full(max(steps, 0), start, np.float32)
    first, last = np.float32(start), np.float32(end)
    step = (last - first) / np.float32(steps - 1)
    index = np.arange(steps)
    lower = index < steps // 2
    counts = np.where(lower, index, steps - 1 - index).astype(np.float32)  # steps from the nearer end
    return _fused_multiply_add(np.where(lower, step, -step), counts, np.where(lower, first, last))


def _fused_multiply_add(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a * b + c`` rounded once. The product of two float32 values is exact in float64; the sum is rounded
    to float64 "to odd" (an inexact result with an even last bit moves one ulp towards the exact sum), which makes
    the final rounding to float32 the single correct one."""
    product = a.astype(np.float64) * b.astype(np.float64)
    addend = c.astype(np.float64)
    total = product + addend
    back = total - product  # TwoSum: total + error == product + addend exactly
    error = (product - (total - back)) + (addend - back)
    even = (total.view(np.int64) & 1) == 0
    total = np.where((error != 0) & even, np.nextafter(total, total + error), total)
    return total.astype(np.float32)


def _training_sigma_range(config: FlowMatchSchedulerConfig) -> Tuple[float, float]:
    """(sigma_max, sigma_min) of the training schedule, computed in float32 like diffusers' init."""
    n = config.num_train_timesteps
    ends = np.array([n, 1], dtype=np.float32) / np.float32(n)
    if not config.use_dynamic_shifting:
        s = np.float32(config.shift)
        ends = s * ends / (np.float32(1.0) + np.float32(config.shift - 1.0) * ends)
    return float(ends[0]), float(ends[1])


def _shift(config: FlowMatchSchedulerConfig, s: np.ndarray, mu: Optional[float]) -> np.ndarray:
    """Apply the time shift in the precision of `s` (float64 for the default spacing, float32 for
    explicit lists -- diffusers does exactly this, Python scalars taking the array's dtype)."""
    dt = s.dtype.type
    if config.use_dynamic_shifting:  # the resolution's shift: exp(mu) (or mu, time_shift_type "linear")
        shift = dt(math.exp(mu)) if config.time_shift_type == "exponential" else dt(mu)
        with np.errstate(divide="ignore"):  # s == 0 -> 1/s = inf -> shifted sigma 0
            return shift / (shift + (dt(1.0) / s - dt(1.0)))
    shift = dt(config.shift)
    return shift * s / (dt(1.0) + dt(config.shift - 1.0) * s)


def sigmas_and_timesteps(
    config: FlowMatchSchedulerConfig,
    num_inference_steps: Optional[int] = None,
    *,
    mu: Optional[float] = None,
    sigmas: Optional[ArrayLike] = None,
    timesteps: Optional[ArrayLike] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """The schedule diffusers' ``set_timesteps`` produces, as host numpy arrays.

    Exactly one of these modes, as in diffusers:

    * ``num_inference_steps`` only: timesteps spaced linearly from the (shifted) training
      ``sigma_max * T`` down to ``sigma_min * T``, then shifted (float64 math).
    * ``sigmas=[...]`` (e.g. ``np.linspace(1, 1/N, N)`` as diffusers' ``LTXPipeline`` passes):
      the list is shifted (float32 math) and ``timesteps = sigmas * T``.
    * ``timesteps=[...]`` (distilled checkpoints, e.g. :data:`LTX_DISTILLED_TIMESTEPS`):
      timesteps are returned as given; sigmas are ``timesteps / T`` passed through the
      shift/stretch (so they may differ from ``timesteps / T`` -- diffusers does the same).
    * both lists: shifted sigmas, timesteps as given.

    Shifting is dynamic (``mu`` required) when ``config.use_dynamic_shifting``, else static
    ``config.shift`` (``mu`` is then ignored, as diffusers does).  Then the ``shift_terminal``
    stretch, then ``invert_sigmas``.

    Args:
        config: scheduler options.
        num_inference_steps: N; optional when a list is given (must then equal its length).
        mu: resolution shift, e.g. ``mu_for_tokens(config, num_tokens)``.
        sigmas: explicit non-increasing sigmas in [0, 1], length N (without the terminal 0).
        timesteps: explicit non-increasing timesteps in [0, T], length N.

    Returns:
        ``(sigmas, timesteps)``: float32 numpy arrays of shape ``[N + 1]`` (last entry the
        terminal sigma: 0, or 1 with ``invert_sigmas``) and ``[N]`` (0..T scale).
    """
    if not isinstance(config, FlowMatchSchedulerConfig):
        raise _err(f"`config` must be a FlowMatchSchedulerConfig, got {type(config).__name__}.",
                   "use FlowMatchSchedulerConfig.from_dict(...) / from_json(...) or ltx_jax.releases.LTX_SCHEDULER.")
    T = config.num_train_timesteps
    if config.use_dynamic_shifting:
        if mu is None:
            raise _err("`mu` is required when config.use_dynamic_shifting is True.",
                       "pass mu=mu_for_tokens(config, num_tokens), or use a config with "
                       "use_dynamic_shifting=False.")
        if not _is_real(mu):
            raise _err(f"`mu` must be a finite number, got {mu!r}.", "pass mu=mu_for_tokens(config, num_tokens).")
        if config.time_shift_type == "linear" and mu <= 0:
            raise _err(f"linear time shift needs mu > 0, got {mu!r}.",
                       "check the token count / shift line, or use time_shift_type='exponential'.")
    if sigmas is not None:
        sigmas = _as_1d("sigmas", sigmas)
        if sigmas.min() < 0 or sigmas.max() > 1:
            raise _err(f"`sigmas` must lie in [0, 1], got range [{sigmas.min()}, {sigmas.max()}].",
                       "pass noise levels (sigma = timestep / num_train_timesteps), not timesteps.")
    if timesteps is not None:
        timesteps = _as_1d("timesteps", timesteps)
        if timesteps.min() < 0 or timesteps.max() > T:
            raise _err(f"`timesteps` must lie in [0, {T}], got range [{timesteps.min()}, {timesteps.max()}].",
                       f"pass timesteps on the 0..{T} scale (sigma * {T}), or pass them as `sigmas`.")
    if sigmas is not None and timesteps is not None and len(sigmas) != len(timesteps):
        raise _err(f"`sigmas` (len {len(sigmas)}) and `timesteps` (len {len(timesteps)}) differ in length.",
                   "pass one entry per step in both lists, or only one of them.")
    given = sigmas if sigmas is not None else timesteps
    if num_inference_steps is not None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)) \
                or num_inference_steps < 1:
            raise _err(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}.",
                       "pass a positive step count.")
        if given is not None and len(given) != num_inference_steps:
            raise _err(f"num_inference_steps={num_inference_steps} but the explicit list has {len(given)} entries.",
                       "drop num_inference_steps (it is inferred from the list) or make them agree.")
    elif given is None:
        raise _err("nothing to build a schedule from: num_inference_steps, sigmas and timesteps are all None.",
                   "pass num_inference_steps=N, or an explicit sigmas=[...] / timesteps=[...] list.")
    n = int(num_inference_steps) if num_inference_steps is not None else len(given)

    ts_given = timesteps.astype(np.float32) if timesteps is not None else None
    # 1. Unshifted sigmas.
    if sigmas is not None:
        s = sigmas.astype(np.float32)
    elif ts_given is not None:
        s = ts_given / np.float32(T)
    else:
        sigma_max, sigma_min = _training_sigma_range(config)
        s = np.linspace(sigma_max * T, sigma_min * T, n) / T  # float64, as diffusers
    # 2. Shift.
    s = _shift(config, s, mu)
    # 3. Stretch so that the last sigma equals shift_terminal.
    if config.shift_terminal:
        one_minus = s.dtype.type(1.0) - s
        if not one_minus[-1] > 0:
            raise _err("shift_terminal stretch is undefined when the last shifted sigma is 1 (0/0: "
                       "diffusers returns NaN here), e.g. a single step starting at sigma=1.",
                       "use num_inference_steps >= 2, a final sigma/timestep below 1, or a config "
                       "with shift_terminal=None.")
        scale = one_minus[-1] / s.dtype.type(1.0 - config.shift_terminal)
        s = s.dtype.type(1.0) - one_minus / scale
    s = s.astype(np.float32)
    # 4. Timesteps, inversion, terminal sigma.
    t = ts_given if ts_given is not None else s * np.float32(T)
    if config.invert_sigmas:
        s = np.float32(1.0) - s
        t = s * np.float32(T)
        terminal = np.float32(1.0)
    else:
        terminal = np.float32(0.0)
    return np.append(s, terminal).astype(np.float32), np.asarray(t, dtype=np.float32)


# --------------------------------------------------------------------------- steps
def _mul_like_torch(scalar: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """``scalar * x`` with torch's 0-dim promotion: a float32 0-d scalar times a bf16/fp16
    tensor is computed in the tensor's dtype (scalar rounded to it first, product rounded).

    Returned in float32.  For 16-bit ``x`` the product of two 16-bit values is exact in
    float32 and is then rounded with ``lax.reduce_precision``, which XLA keeps under jit
    (a plain bf16 multiply may be evaluated with excess precision by XLA on CPU/GPU).
    """
    if x.dtype == jnp.float32:
        return scalar * x
    if x.dtype in (jnp.bfloat16, jnp.float16):
        fi = jnp.finfo(x.dtype)
        prod = scalar.astype(x.dtype).astype(jnp.float32) * x.astype(jnp.float32)
        rounded = jax.lax.reduce_precision(prod, exponent_bits=fi.nexp, mantissa_bits=fi.nmant)
        if x.dtype == jnp.float16:  # reduce_precision does not reproduce fp16 subnormal rounding
            quantum = float(fi.smallest_subnormal)  # 2**-24, exact power of two
            sub = jnp.round(prod / quantum) * quantum  # round-half-even onto the subnormal grid
            rounded = jnp.where(jnp.abs(prod) < float(fi.tiny), sub, rounded)
        return rounded
    return (scalar.astype(x.dtype) * x).astype(jnp.float32)


def step(
    model_output: jnp.ndarray,
    sample: jnp.ndarray,
    sigma: Union[float, jnp.ndarray],
    sigma_next: Union[float, jnp.ndarray],
    *,
    noise: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
    """One Euler step ``sample + (sigma_next - sigma) * model_output`` (diffusers ``step``).

    Jittable; ``sigma``/``sigma_next`` may be traced (e.g. ``sigmas[i]``, ``sigmas[i + 1]``).

    Args:
        model_output: velocity prediction, any shape ``S``, float dtype ``D`` (f32/bf16/f16).
        sample: current latents, shape ``S`` (any float dtype; upcast to float32).
        sigma, sigma_next: 0-d noise levels (float32) of this and the next step.
        noise: only for ``stochastic_sampling`` configs -- standard normal noise of shape ``S``;
            then the result is ``(1 - sigma_next) * x0 + sigma_next * noise`` with
            ``x0 = sample - sigma * model_output``.

    Returns:
        next latents, shape ``S``, dtype ``D`` (computed in float32, cast back like diffusers).
    """
    out_dtype = model_output.dtype
    x = jnp.asarray(sample).astype(jnp.float32)
    sigma = jnp.asarray(sigma, jnp.float32)
    sigma_next = jnp.asarray(sigma_next, jnp.float32)
    if noise is None:
        prev = x + _mul_like_torch(sigma_next - sigma, model_output)
    else:
        x0 = x - _mul_like_torch(sigma, model_output)
        prev = (jnp.float32(1.0) - sigma_next) * x0 + sigma_next * noise
    return prev.astype(out_dtype)


def step_per_token(
    model_output: jnp.ndarray,
    sample: jnp.ndarray,
    per_token_timesteps: jnp.ndarray,
    sigmas: jnp.ndarray,
    *,
    num_train_timesteps: int = 1000,
    noise: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
    """Per-token Euler step, as diffusers' ``step(..., per_token_timesteps=...)`` (used by
    ``LTXConditionPipeline``, where conditioning tokens sit at a lower noise level).

    For every token: ``sigma_tok = per_token_timesteps / num_train_timesteps`` and
    ``sigma_next_tok`` = the largest schedule sigma strictly below ``sigma_tok - 1e-6`` (0 if
    none), then ``sample + (sigma_tok - sigma_next_tok) * model_output``.

    NOTE the sign: ``dt = sigma_tok - sigma_next_tok >= 0`` -- the opposite of :func:`step`.
    diffusers' pipeline therefore passes the *negated* velocity (``-noise_pred``); do the same.

    Jittable (no Python branching on values).

    Args:
        model_output: ``[..., C]`` (e.g. ``[B, tokens, C]``), any float dtype.
        sample: ``[..., C]``, upcast to float32.
        per_token_timesteps: ``[...]`` (= ``model_output.shape[:-1]``, e.g. ``[B, tokens]``) on the
            0..T scale, e.g. ``min(t, (1 - conditioning_mask) * 1000)``.
        sigmas: the full schedule ``[N + 1]`` from :func:`sigmas_and_timesteps`.
        num_train_timesteps: T of the config.
        noise: for ``stochastic_sampling`` configs, standard normal noise ``[..., C]``.

    Returns:
        next latents ``[..., C]`` in float32 (diffusers does not cast back on this path).
    """
    if per_token_timesteps.shape != model_output.shape[:-1]:
        raise _err(f"per_token_timesteps shape {per_token_timesteps.shape} must equal model_output.shape[:-1] "
                   f"= {model_output.shape[:-1]}.",
                   "pass one timestep per token, e.g. shape [batch, tokens] for latents [batch, tokens, C].")
    if sigmas.ndim != 1:
        raise _err(f"`sigmas` must be the 1-D schedule, got shape {sigmas.shape}.",
                   "pass the first array returned by sigmas_and_timesteps.")
    x = jnp.asarray(sample).astype(jnp.float32)
    sig = jnp.asarray(sigmas, jnp.float32)
    tok_sigma = jnp.asarray(per_token_timesteps, jnp.float32) / jnp.float32(num_train_timesteps)
    sched = sig.reshape((-1,) + (1,) * tok_sigma.ndim)
    below = sched < (tok_sigma - jnp.float32(1e-6))[None]
    next_sigma = jnp.max(jnp.where(below, sched, jnp.float32(0.0)), axis=0)
    cur = tok_sigma[..., None]
    nxt = next_sigma[..., None]
    if noise is None:
        return x + (cur - nxt) * model_output
    x0 = x - cur * model_output
    return (jnp.float32(1.0) - nxt) * x0 + nxt * noise


def scale_noise(sample: jnp.ndarray, noise: jnp.ndarray, sigma: Union[float, jnp.ndarray]) -> jnp.ndarray:
    """Forward flow-matching noising ``sigma * noise + (1 - sigma) * sample`` (diffusers
    ``scale_noise``), e.g. to start img2img / ``denoise_strength < 1`` from ``sigmas[k]``.

    Args:
        sample, noise: ``[B, ...]``, same dtype.
        sigma: scalar, or ``[B]`` (one per batch item, broadcast over trailing dims).

    Returns:
        ``[B, ...]`` in ``sample.dtype``.
    """
    s = jnp.asarray(sigma, sample.dtype)
    if s.ndim == 1:
        s = s.reshape(s.shape + (1,) * (sample.ndim - 1))
    return s * noise + (1.0 - s) * sample


# ltx_jax.scheduler_ancestral builds its generated schedules with sigmas_and_timesteps above, so its names are
# imported on first use (ltx_jax.lazy) rather than at the top: either module can then be imported first, no cycle.
_ANCESTRAL_EXPORTS = {name: "ltx_jax.scheduler_ancestral" for name in (
    "LTXEulerAncestralRFSchedulerConfig", "ancestral_sigmas_and_timesteps", "ancestral_step")}
__all__ += list(_ANCESTRAL_EXPORTS)
__getattr__ = lazy_exports(__name__, _ANCESTRAL_EXPORTS, globals())[0]


def __dir__() -> list:
    return sorted(set(globals()) | set(_ANCESTRAL_EXPORTS))

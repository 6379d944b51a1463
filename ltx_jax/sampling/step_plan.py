"""The plan of a run's steps, made on the host before the compiled loop: each step's sigma and timestep (as
diffusers' LTX pipelines or the original package compute them), its guidance strengths and its skip masks.

(``ltx_jax.scheduler`` is diffusers' scheduler itself: the schedule's math and the Euler step.)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ltx_jax import scheduler as sched
from ltx_jax.models.transformer import SKIP_LAYER_STRATEGIES
from ltx_jax.sampling.loop import segments_for


def diffusers_schedule(config: sched.FlowMatchSchedulerConfig, num_inference_steps: int | None, num_tokens: int,
                       timesteps=None, sigmas=None) -> tuple[np.ndarray, np.ndarray]:
    """(sigmas [S + 1], timesteps [S]) float32, as diffusers' LTX pipelines pass them to ``set_timesteps``.

    With neither ``timesteps`` nor ``sigmas`` given, ``LTXPipeline`` passes sigmas = linspace(1, 1/N, N); ``mu`` comes
    from the latent token count when the scheduler shifts dynamically.
    """
    mu = sched.mu_for_tokens(config, num_tokens) if config.use_dynamic_shifting else None
    if timesteps is None and sigmas is None:
        sigmas = np.linspace(1.0, 1.0 / num_inference_steps, num_inference_steps)
    return sched.sigmas_and_timesteps(config, None, mu=mu, sigmas=sigmas, timesteps=timesteps)


def original_schedule(config: sched.FlowMatchSchedulerConfig, num_inference_steps: int | None, num_tokens: int,
                      timesteps=None) -> tuple[np.ndarray, np.ndarray]:
    """(sigmas [S + 1], timesteps [S]) float32 as the original package's ``RectifiedFlowScheduler`` sets them.

    Explicit ``timesteps`` (our 0-1000 scale: its 0-1 scale times 1000) are taken as they are (sigma = t / 1000, no
    shift), the last step going to 0. A step count takes its uniform sampler and SD3 resolution shift with the
    terminal stretch, as the released single files configure it (``releases.ORIGINAL_SCHEDULER``: the shift's
    ``mu`` from the token count between ``base_image_seq_len`` and ``max_image_seq_len``), in float32 with torch's
    order of operations (``exp(mu) / (exp(mu) + 1/t - 1)`` is a reciprocal times ``exp(mu)`` in torch), so that the
    first timestep rounds as the original's does (it can land 1 ulp below 1, which decides the step's entry of a
    guidance schedule). diffusers' ``LTXPipeline`` schedule under the same config is the same function, rounded
    otherwise: 6e-5 away at 22400 tokens.
    """
    f = np.float32
    if timesteps is not None:
        timesteps = np.asarray(timesteps, np.float32)
        return np.append(timesteps / f(config.num_train_timesteps), f(0.0)).astype(np.float32), timesteps
    t = sched.torch_linspace(1.0, 1.0 / num_inference_steps, num_inference_steps)
    e = f(math.exp(sched.mu_for_tokens(config, num_tokens)))
    shifted = (f(1.0) / ((f(1.0) / t - f(1.0)) + e)) * e
    if config.shift_terminal:
        one_minus = f(1.0) - shifted
        shifted = f(1.0) - one_minus / (one_minus[-1] / f(1.0 - config.shift_terminal))
    sigmas = shifted.astype(np.float32)
    return np.append(sigmas, f(0.0)).astype(np.float32), (sigmas * f(config.num_train_timesteps)).astype(np.float32)


def per_step(name: str, value: float | Sequence[float] | Any, num_steps: int) -> np.ndarray:
    """A strength given once or once per step -> [num_steps] float32 (the shape the compiled loop always takes, so a
    scalar and a list of the same length run the same program)."""
    values = np.asarray(value, dtype=np.float32)
    if values.ndim == 0:
        return np.full((num_steps,), values, np.float32)
    if values.shape != (num_steps,):
        raise ValueError(f"{name} has {values.size} values for {num_steps} steps; give one number or one per step.")
    return values


def guidance_steps(timesteps: np.ndarray, guidance_timesteps: Sequence[float] | None,
                   step_sigmas: np.ndarray | None = None) -> np.ndarray | None:
    """For each step, the entry of a guidance schedule it takes, as the original package maps them: the first
    guidance timestep at or below the step's timestep on its 0-1 scale (``step_sigmas``, else ours / 1000), else the
    last entry; compared in float32, as torch compares a number with a float32 tensor."""
    if guidance_timesteps is None:
        return None
    marks = np.asarray(guidance_timesteps, np.float64)
    if marks.ndim != 1 or marks.size == 0:
        raise ValueError(f"guidance_timesteps must be a non-empty list of timesteps in [0, 1], got "
                         f"{guidance_timesteps!r}.")
    marks = marks.astype(np.float32)
    values = np.asarray(timesteps, np.float64) / 1000.0 if step_sigmas is None else np.asarray(step_sigmas)
    out = []
    for t in values.astype(np.float32):
        at_or_below = np.nonzero(marks <= t)[0]
        out.append(int(at_or_below[0]) if at_or_below.size else len(marks) - 1)
    return np.asarray(out)


def per_step_from_guidance(name: str, value: Any, num_steps: int, guidance_timesteps: Sequence[float] | None,
                           mapping: np.ndarray | None) -> np.ndarray:
    """One strength for every step, [S] float32: a number; a list with one value per ``guidance_timesteps`` entry
    (``mapping`` from ``guidance_steps``); or, without a guidance schedule, one value per step."""
    if guidance_timesteps is not None and np.ndim(value) == 1:
        values = np.asarray(value, np.float32)
        if len(values) != len(guidance_timesteps):
            raise ValueError(f"{name} has {len(values)} values but guidance_timesteps has {len(guidance_timesteps)}; "
                             "give one value per guidance timestep (or a single number).")
        return values[mapping]
    return per_step(name, value, num_steps)


def skip_masks(skip_block_list, num_layers: int, num_steps: int, guidance_timesteps: Sequence[float] | None,
               mapping: np.ndarray | None) -> np.ndarray:
    """[S, L] float32, 0 where a step's perturbed branch skips a layer: ``skip_block_list`` is None (skip nothing),
    a list of block indices (every step), or a list of such lists (one per ``guidance_timesteps`` entry, or one per
    step without a guidance schedule)."""
    masks = np.ones((num_steps, num_layers), np.float32)
    if skip_block_list is None:
        return masks
    if not isinstance(skip_block_list, (list, tuple)):
        raise ValueError(f"skip_block_list must be a list of block indices or a list of such lists, got "
                         f"{skip_block_list!r}.")
    nested = len(skip_block_list) > 0 and all(isinstance(b, (list, tuple)) for b in skip_block_list)
    if nested:
        expected, what = ((num_steps, "steps") if guidance_timesteps is None
                          else (len(guidance_timesteps), "guidance_timesteps entries"))
        if len(skip_block_list) != expected:
            raise ValueError(f"skip_block_list has {len(skip_block_list)} lists for {expected} {what}; give one list "
                             f"of blocks for every step, or one list per {what[:-1]}.")
        per_step_blocks = [skip_block_list[i] for i in (range(num_steps) if mapping is None else mapping)]
    else:
        per_step_blocks = [skip_block_list] * num_steps
    for i, blocks in enumerate(per_step_blocks):
        for b in blocks:
            if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 0 <= b < num_layers:
                raise ValueError(f"skip_block_list holds block {b!r}; the transformer's blocks are 0 .. "
                                 f"{num_layers - 1}.")
            masks[i, b] = 0.0
    return masks


def trim_schedule(sigmas: np.ndarray, timesteps: np.ndarray, skip_initial: int = 0, skip_final: int = 0):
    """The original package's ``skip_initial_inference_steps`` / ``skip_final_inference_steps``: drop steps from the
    start and the end; the last step kept then goes to the terminal sigma."""
    for name, value in (("skip_initial_inference_steps", skip_initial), ("skip_final_inference_steps", skip_final)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}.")
    steps = len(timesteps)
    if skip_initial + skip_final >= steps:
        raise ValueError(f"skip_initial_inference_steps + skip_final_inference_steps = {skip_initial + skip_final} "
                         f"leaves none of the {steps} steps; skip fewer.")
    if not skip_initial and not skip_final:
        return sigmas, timesteps
    keep = slice(skip_initial, steps - skip_final)
    return np.append(sigmas[keep], sigmas[-1]).astype(np.float32), np.asarray(timesteps[keep], np.float32)


def guidance_plan(timesteps: np.ndarray, *, num_layers: int, guidance_scale=3.0, guidance_rescale=0.0, stg_scale=0.0,
                  rescaling_scale=1.0, skip_block_list=None, skip_layer_strategy: str = "attention_values",
                  cfg_star_rescale: bool = False, guidance_timesteps=None, step_sigmas: np.ndarray | None = None):
    """Every step's guidance, for the loop: (strengths name -> [S] float32, skip masks [S, L], segments).

    Lists map to steps through ``guidance_timesteps`` as the original package maps them (``guidance_steps``, on
    ``step_sigmas`` [S] when given: the steps' sigmas), or, with no guidance schedule, are one value per step. A step
    runs CFG where its scale is above 1 and STG where its scale is above 0 (``segments_for``).
    """
    if skip_layer_strategy not in SKIP_LAYER_STRATEGIES:
        raise ValueError(f"skip_layer_strategy={skip_layer_strategy!r}; use one of {', '.join(SKIP_LAYER_STRATEGIES)}.")
    if not isinstance(cfg_star_rescale, (bool, np.bool_)):
        raise ValueError(f"cfg_star_rescale must be True or False, got {cfg_star_rescale!r}.")
    if guidance_timesteps is not None and (np.ndim(guidance_timesteps) != 1 or len(guidance_timesteps) == 0 or any(
            not 0 <= float(g) <= 1 for g in guidance_timesteps)):
        raise ValueError(f"guidance_timesteps must be a non-empty list of timesteps in [0, 1] (the original's scale: "
                         f"ours / 1000), got {guidance_timesteps!r}.")
    steps = len(timesteps)
    mapping = guidance_steps(timesteps, guidance_timesteps, step_sigmas)
    values = {"guidance_scale": guidance_scale, "guidance_rescale": guidance_rescale, "stg_scale": stg_scale,
              "rescaling_scale": rescaling_scale, "cfg_star": float(bool(cfg_star_rescale))}
    scales = {name: per_step_from_guidance(name, value, steps, guidance_timesteps, mapping)
              for name, value in values.items()}
    masks = skip_masks(skip_block_list, num_layers, steps, guidance_timesteps, mapping)
    return scales, masks, segments_for(scales["guidance_scale"], scales["stg_scale"], skip_layer_strategy)

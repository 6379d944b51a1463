"""Benchmark ltx_jax.scheduler against diffusers' FlowMatchEulerDiscreteScheduler.

Times (median wall clock over --repeats, after warm-up, JAX results block_until_ready):
  * step          -- jitted Euler step on latents [2, 4096, 128] and a small [1, 256, 128]
  * step_per_token -- jitted per-token step (LTXConditionPipeline path), same shapes
  * schedule      -- sigmas_and_timesteps vs diffusers set_timesteps (host side)
and the diffusers/torch time on the same shapes, with the ratio diffusers / ours.

Usage, from the repository root:
    python -m benchmarks.bench_scheduler [--repeats 50] [--warmup 5] [--steps 40]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import median_time
from ltx_jax.scheduler import (
    LTX_DISTILLED_TIMESTEPS,
    LTX_SCHEDULER,
    LTX_SCHEDULER_STATIC,
    mu_for_tokens,
    sigmas_and_timesteps,
    step,
    step_per_token,
)

try:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
except ImportError:  # the JAX numbers are still useful without diffusers
    torch = None




def fmt(seconds):
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e6:10.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:10.3f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=50, help="timed repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed warm-up calls (incl. jit compile)")
    ap.add_argument("--steps", type=int, default=40, help="num_inference_steps for the schedule")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="latent dtype")
    args = ap.parse_args()

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; "
          f"torch {torch.__version__ if torch else 'missing'}; dtype {args.dtype}; "
          f"repeats {args.repeats}, warmup {args.warmup}")
    rows = []
    n = args.steps
    mu = mu_for_tokens(LTX_SCHEDULER, 4096)
    sigmas, timesteps = sigmas_and_timesteps(LTX_SCHEDULER, sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    jstep = jax.jit(step)
    jstep_tok = jax.jit(step_per_token)
    rng = np.random.default_rng(0)

    for shape in [(2, 4096, 128), (1, 256, 128)]:
        v_np = rng.standard_normal(shape).astype(np.float32)
        x_np = rng.standard_normal(shape).astype(np.float32)
        v = jnp.asarray(v_np).astype(args.dtype)
        x = jnp.asarray(x_np).astype(args.dtype)
        s0, s1 = jnp.float32(sigmas[3]), jnp.float32(sigmas[4])
        ours = median_time(lambda: jstep(v, x, s0, s1).block_until_ready(), args.repeats, args.warmup)

        mask = np.zeros(shape[:2], np.float32)
        mask[:, : shape[1] // 8] = 1.0
        per_tok = jnp.minimum(jnp.float32(timesteps[3]), (1.0 - jnp.asarray(mask)) * 1000.0)
        sig_j = jnp.asarray(sigmas)
        ours_tok = median_time(lambda: jstep_tok(v, x, per_tok, sig_j).block_until_ready(),
                               args.repeats, args.warmup)

        ref = ref_tok = None
        if torch is not None:
            tdt = getattr(torch, args.dtype)
            sched = FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER.to_dict())
            sched.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
            tv, tx = torch.from_numpy(v_np).to(tdt), torch.from_numpy(x_np).to(tdt)
            t3 = sched.timesteps[3]

            def ref_step():
                sched._step_index = 3
                return sched.step(tv, t3, tx, return_dict=False)[0]

            ref = median_time(ref_step, args.repeats, args.warmup)
            tper = torch.min(t3.expand(shape[0]).unsqueeze(-1).float(), (1 - torch.from_numpy(mask)) * 1000.0)

            def ref_step_tok():
                sched._step_index = 3
                return sched.step(-tv, t3, tx, per_token_timesteps=tper, return_dict=False)[0]

            ref_tok = median_time(ref_step_tok, args.repeats, args.warmup)
        rows.append((f"step {list(shape)}", ours, ref))
        rows.append((f"step_per_token {list(shape)}", ours_tok, ref_tok))

    def ours_sched():
        sigmas_and_timesteps(LTX_SCHEDULER, sigmas=np.linspace(1.0, 1 / n, n), mu=mu)

    def ours_sched_ts():
        sigmas_and_timesteps(LTX_SCHEDULER_STATIC, timesteps=LTX_DISTILLED_TIMESTEPS)

    ref_sched = ref_sched_ts = None
    if torch is not None:
        d = FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER.to_dict())
        ds = FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER_STATIC.to_dict())
        ref_sched = median_time(lambda: d.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu),
                                args.repeats, args.warmup)
        ref_sched_ts = median_time(lambda: ds.set_timesteps(timesteps=list(LTX_DISTILLED_TIMESTEPS)),
                                   args.repeats, args.warmup)
    rows.append((f"schedule N={n} (sigmas+mu)", median_time(ours_sched, args.repeats, args.warmup), ref_sched))
    rows.append(("schedule distilled timesteps", median_time(ours_sched_ts, args.repeats, args.warmup),
                 ref_sched_ts))

    w = max(len(r[0]) for r in rows)
    print(f"\n{'op':<{w}} | {'ltx_jax':>13} | {'diffusers':>13} | diffusers/ltx_jax")
    print("-" * (w + 52))
    for name, ours, ref in rows:
        ratio = f"{ref / ours:8.2f}x" if ref is not None else "     n/a"
        print(f"{name:<{w}} | {fmt(ours):>13} | {fmt(ref):>13} | {ratio}")


if __name__ == "__main__":
    main()

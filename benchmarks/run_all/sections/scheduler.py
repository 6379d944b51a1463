"""Section scheduler: the jitted Euler step and per-token step against diffusers' FlowMatchEulerDiscreteScheduler."""

from __future__ import annotations

import numpy as np

from ..context import Context, add_timing, jax_block, timed
from ..hardware import torch_sync
from ..sizes import scheduler_config


def section_scheduler(ctx: Context) -> None:
    """Jitted Euler step and per-token step against diffusers' scheduler.step on the same device."""
    import jax
    import jax.numpy as jnp

    from ltx_jax.scheduler import mu_for_tokens, sigmas_and_timesteps, step, step_per_token

    s, rec = ctx.sizes, ctx.rec
    config = scheduler_config()
    steps = 40
    mu = mu_for_tokens(config, 4096)
    sigmas, timesteps = sigmas_and_timesteps(config, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    jstep, jstep_tok = jax.jit(step), jax.jit(step_per_token)
    torch = ctx.torch("diffusers scheduler")
    reps, warm = max(20, s.repeats), max(3, s.warmup)
    rng = np.random.default_rng(0)
    for shape in s.scheduler_shapes:
        v_np = rng.standard_normal(shape).astype(np.float32)
        x_np = rng.standard_normal(shape).astype(np.float32)
        mask = np.zeros(shape[:2], np.float32)
        mask[:, : shape[1] // 8] = 1.0
        v, x = jnp.asarray(v_np), jnp.asarray(x_np)
        s0, s1 = jnp.float32(sigmas[3]), jnp.float32(sigmas[4])
        per_tok = jnp.minimum(jnp.float32(timesteps[3]), (1.0 - jnp.asarray(mask)) * 1000.0)
        sig = jnp.asarray(sigmas, jnp.float32)
        out = np.asarray(jstep(v, x, s0, s1))
        out_tok = np.asarray(jstep_tok(v, x, per_tok, sig))
        row = rec.case(f"step {list(shape)} float32")
        row_tok = rec.case(f"step_per_token {list(shape)} float32")
        add_timing(row, "ours", timed(lambda: jstep(v, x, s0, s1), warm, reps, jax_block))
        add_timing(row_tok, "ours", timed(lambda: jstep_tok(v, x, per_tok, sig), warm, reps, jax_block))
        if torch is None:
            continue
        # deferred: diffusers (the reference) is optional, loaded only where used
        from diffusers import FlowMatchEulerDiscreteScheduler

        dev = ctx.torch_device()
        sched = FlowMatchEulerDiscreteScheduler(**config.to_dict())
        sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu, device=dev)
        tv, tx = torch.from_numpy(v_np).to(dev), torch.from_numpy(x_np).to(dev)
        t3 = sched.timesteps[3]
        tper = torch.minimum(t3.expand(shape[0]).unsqueeze(-1).float(), (1 - torch.from_numpy(mask).to(dev)) * 1000.0)

        def ref_step():
            sched._step_index = 3
            return sched.step(tv, t3, tx, return_dict=False)[0]

        def ref_step_tok():
            sched._step_index = 3
            return sched.step(tv, t3, tx, per_token_timesteps=tper, return_dict=False)[0]

        for r, fn, ours_out in ((row, ref_step, out), (row_tok, ref_step_tok, out_tok)):
            ref = fn().float().cpu().numpy()
            tmed = add_timing(r, "torch", timed(fn, warm, reps, lambda o: torch_sync(torch, o)))
            rec.update(r, ratio=(r["ours_ms"] / 1e3) / tmed, max_abs_diff=float(np.max(np.abs(ours_out - ref))))
    diffs = [r["max_abs_diff"] for r in rec.data["cases"] if "max_abs_diff" in r]
    if diffs:
        rec.check("step matches diffusers (max abs diff)", max(diffs) <= 1e-5, value=max(diffs), limit=1e-5)


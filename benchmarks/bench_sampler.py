"""Per-step costs of the denoising loop: guidance branches (text only, CFG, CFG + STG), and what the loop's safety
costs: the per-step host callback (progress and Ctrl-C) and the NaN checks.

    python -m benchmarks.bench_sampler                 # tiny model (the callback's absolute cost) and a 2B-width slice

Branches: the same loop with one, two and three branches per step (a step's batched forward grows with them; the
ratios should be about 1 : 2 : 3 where the matmuls dominate).

Each case runs the same compiled loop twice, with the per-step host callback (``Sampler(host_callbacks=True)``, what
the pipelines run) and without it, and reports the median time per step of each and their difference. The latents'
finiteness check runs inside every step in both; its cost is measured on its own (the reduction over one step's
latents, jitted alone) next to the step time, and so is the check of decoded frames at 768x512x121. A third run
steps the loop from the host (``sampling.sample_stepwise``, what the pipelines run with the persistent cache on: one
program call and one wait per step); its difference to the loop without callbacks is its cost per step.
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp

from benchmarks.timing import sample_times


def loop_times(module, params, grid, steps: int, repeats: int, host_callbacks: bool = True,
               guidance=None, stepwise: bool = False) -> list[float]:
    """Seconds of whole ``steps``-step runs of the compiled loop (blocked on, after a warm-up run); ``stepwise``:
    stepped from the host (``sampling.sample_stepwise``, no callbacks)."""
    from ltx_jax import sampling

    cfg = module.config
    guidance = guidance or sampling.Guidance()
    sampler = sampling.Sampler(module, grid, (sampling.Segment(0, steps, guidance),),
                               host_callbacks=host_callbacks and not stepwise)
    text = jnp.ones((1, 16, cfg.caption_channels), module.dtype)
    scales = {**sampling.SCALES, "guidance_scale": 3.0, "stg_scale": 1.0}
    inputs = sampling.SamplingInputs(
        prompt_embeds=text, prompt_attention_mask=jnp.ones((1, 16), jnp.int32), negative_prompt_embeds=text,
        negative_prompt_attention_mask=jnp.ones((1, 16), jnp.int32),
        sigmas=jnp.linspace(1.0, 0.0, steps + 1), timesteps=jnp.linspace(1000.0, 1.0, steps),
        guidance={k: jnp.full((steps,), v, jnp.float32) for k, v in scales.items()},
        skip_masks=jnp.ones((steps, cfg.num_layers)).at[:, 0].set(0.0),
        rope_interpolation_scale=jnp.asarray([0.32, 32.0, 32.0]))

    def run():
        latents = jnp.zeros((1, grid.num_tokens, cfg.in_channels), jnp.float32)
        if stepwise:
            return jax.block_until_ready(sampling.sample_stepwise(sampler, params, latents, inputs))
        return jax.block_until_ready(sampling.jitted_sample(sampler, params, latents, inputs))

    return sample_times(run, repeats, warmup=1)


def check_time(shape, repeats: int = 20) -> float:
    """Median seconds of ``jnp.all(jnp.isfinite(x))`` over a float32 array of ``shape``, jitted alone."""
    x = jnp.zeros(shape, jnp.float32)
    check = jax.jit(lambda a: jnp.all(jnp.isfinite(a)))
    return statistics.median(sample_times(lambda: jax.block_until_ready(check(x)), repeats, warmup=2))


def case(name, cfg, grid, steps: int, repeats: int) -> dict:
    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel

    module = LTXVideoTransformer3DModel(cfg)
    params = init_params(module, jax.random.PRNGKey(0))
    with_cb = statistics.median(loop_times(module, params, grid, steps, repeats, True)) / steps
    without = statistics.median(loop_times(module, params, grid, steps, repeats, False)) / steps
    stepped = statistics.median(loop_times(module, params, grid, steps, repeats, stepwise=True)) / steps
    finite = check_time((1, grid.num_tokens, cfg.in_channels))
    return dict(name=name, tokens=grid.num_tokens, steps=steps, step_ms=without * 1e3, step_cb_ms=with_cb * 1e3,
                callback_us=(with_cb - without) * 1e6, stepwise_us=(stepped - without) * 1e6,
                finite_check_us=finite * 1e6)


def main(argv=None) -> int:
    from ltx_jax.releases import TRANSFORMER_PRESETS
    from ltx_jax.sampling import LatentGrid
    from ltx_jax.tiny_random import TINY_TRANSFORMER

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tiny-steps", type=int, default=2000)
    p.add_argument("--slice-steps", type=int, default=6)
    args = p.parse_args(argv)
    slice_cfg = TRANSFORMER_PRESETS["ltx-video-2b"].replace(num_layers=2)
    rows = [case("tiny (2 layers, width 16)", TINY_TRANSFORMER, LatentGrid(2, 2, 3), args.tiny_steps, args.repeats),
            case("2B width, 2 layers", slice_cfg, LatentGrid(2, 8, 8), args.slice_steps, args.repeats)]
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, float32")
    print(f"{'case':<28} {'tokens':>6} {'steps':>6} {'ms/step':>10} {'+callback':>10} {'callback us':>12} "
          f"{'stepwise us':>12} {'finite check us':>16}")
    for r in rows:
        print(f"{r['name']:<28} {r['tokens']:>6} {r['steps']:>6} {r['step_ms']:>10.3f} {r['step_cb_ms']:>10.3f} "
              f"{r['callback_us']:>12.1f} {r['stepwise_us']:>12.1f} {r['finite_check_us']:>16.1f}")
    frames = check_time((1, 121, 512, 768, 3), repeats=5)
    print(f"finite check of decoded frames, 121 x 512 x 768 x 3 float32: {frames * 1e3:.1f} ms")
    branch_times(slice_cfg, LatentGrid(2, 8, 8), args.slice_steps, args.repeats)
    return 0


def branch_times(cfg, grid, steps: int, repeats: int) -> dict:
    """ms per step with one branch (text only), two (CFG) and three (CFG + STG), on the same loop."""
    from ltx_jax import sampling
    from ltx_jax.models import init_params
    from ltx_jax.models.transformer import LTXVideoTransformer3DModel

    module = LTXVideoTransformer3DModel(cfg)
    params = init_params(module, jax.random.PRNGKey(0))
    rows = {}
    for name, guidance in (("text only", sampling.Guidance()), ("CFG", sampling.Guidance(cfg=True)),
                           ("CFG + STG", sampling.Guidance(cfg=True, stg=True))):
        rows[name] = statistics.median(loop_times(module, params, grid, steps, repeats, guidance=guidance)) / steps
    base = rows["text only"]
    print(f"branches per step ({cfg.num_layers} layers, width {cfg.inner_dim}, {grid.num_tokens} tokens): " + ", ".join(
        f"{name} {t * 1e3:.1f} ms ({t / base:.2f}x)" for name, t in rows.items()))
    return rows


if __name__ == "__main__":
    raise SystemExit(main())

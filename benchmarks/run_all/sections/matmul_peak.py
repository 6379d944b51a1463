"""Section matmul_peak: the measured matmul rate in the run dtype (every TFLOP/s is also a fraction of it), and
torch's on the same card."""

from __future__ import annotations

import time

import numpy as np

from ..context import Context, add_timing, jax_block, timed
from ..hardware import torch_dtype, torch_sync


def section_matmul_peak(ctx: Context) -> None:
    """The measured matmul rate in the run dtype: the denominator of every 'fraction of peak'."""
    import jax
    import jax.numpy as jnp

    s, rec = ctx.sizes, ctx.rec
    n, dt = s.matmul_n, jnp.dtype(s.dtype)
    flops = 2.0 * n**3
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), dt)
    b = jax.random.normal(kb, (n, n), dt)
    matmul = jax.jit(lambda x, y: x @ y)
    start = time.perf_counter()
    compiled = matmul.lower(a, b).compile()
    compile_s = time.perf_counter() - start

    def burst():  # matmul_inner calls queued back to back, one sync
        out = None
        for _ in range(s.matmul_inner):
            out = compiled(a, b)
        return out

    times = [t / s.matmul_inner for t in timed(burst, 2, s.matmul_repeats, jax_block)]
    row = rec.case(f"matmul {n}^3 {s.dtype}", flops=flops, compile_s=compile_s)
    med = add_timing(row, "ours", times)
    tflops = flops / med / 1e12
    rec.update(row, tflops=tflops, best_tflops=flops / min(times) / 1e12)
    rec.info(matmul_tflops=tflops, matmul_best_tflops=flops / min(times) / 1e12, dtype=s.dtype, n=n)
    ctx.log(f"jax matmul {n}^3 {s.dtype}: {med * 1e3:.3f} ms, {tflops:.2f} TFLOP/s")

    torch = ctx.torch("torch matmul", need=())
    if torch is None:
        return
    dev, tdt = ctx.torch_device(), torch_dtype(torch, s.dtype)
    ta = torch.from_numpy(np.array(a, np.float32)).to(dev, tdt)
    tb = torch.from_numpy(np.array(b, np.float32)).to(dev, tdt)

    def tburst():
        out = None
        with torch.inference_mode():
            for _ in range(s.matmul_inner):
                out = ta @ tb
        return out

    ttimes = [t / s.matmul_inner for t in timed(tburst, 2, s.matmul_repeats, lambda o: torch_sync(torch, o))]
    tmed = add_timing(row, "torch", ttimes)
    rec.update(row, ratio=med / tmed, torch_tflops=flops / tmed / 1e12)
    rec.info(torch_matmul_tflops=flops / tmed / 1e12)


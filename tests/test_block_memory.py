"""Memory traffic of one transformer block at the 2B width: the token-sized buffers its optimized HLO writes, against
what an ideal fused block needs and against what diffusers' eager block writes (``ltx_jax.models.block_traffic``).

The block is compiled alone with abstract params, at 2 x 120 tokens (batch 2, as classifier-free guidance runs;
120 has a factor 5 that no weight shape has, so a weight is never taken for an activation) and 16 text tokens.
"""

from __future__ import annotations

import jax.numpy as jnp
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ltx_jax import TRANSFORMER_PRESETS
from ltx_jax.models import block_traffic as bt

CONFIG = TRANSFORMER_PRESETS["ltx-video-2b"]
B, N, T = 2, 120, 16
D = CONFIG.inner_dim

# What the CPU backend cannot fuse, on top of the ideal block's writes (bt.IDEAL_WRITES [B, N, D] tensors), in
# [B, N, D] tensors: a backend with matmul epilogues and a fused attention kernel (cuBLAS / cuDNN) writes none of it.
CPU_UNFUSABLE = {
    "matmul outputs written before their bias + gate + residual or bias + GELU (CPU matmuls take no epilogue): "
    "attn1 / attn2 out, feed-forward in (4) and out": 7,
    "layout copies around XLA's attention: the values in, each attention's output back to [B, N, D]": 3,
    "q / k / attn2 q plus bias written for the norms' statistics (CPU reductions take no fused producer)": 3,
}


def _show(label: str, traffic: bt.BlockTraffic) -> None:
    print(f"\n[{label}] {traffic.summary()}")
    for b in traffic.buffers:
        print(f"    {b.name:28s} {b.op:16s} {b.dtype:5s} {str(b.shape):22s} {b.units:.1f}")


@pytest.fixture(scope="module")
def traffic():
    return {(name, per_token): bt.block_traffic(CONFIG, dtype, B, N, T, implementation="xla",
                                                per_token_timestep=per_token)
            for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)) for per_token in (False, True)}


def test_float32_block_writes_only_what_the_cpu_cannot_fuse(traffic):
    """Norm + AdaLN modulation, q / k norm + RoPE, gate + residual each fuse into one kernel: in float32 (where the
    CPU computes in the block's dtype) the block writes the ideal block's tensors plus the CPU's unfusable ones."""
    measured = traffic[("float32", False)]
    bound = bt.IDEAL_WRITES + sum(CPU_UNFUSABLE.values())
    _show("float32 block", measured)
    print(f"    written {measured.units:.1f} [B, N, D] tensors <= {bound} (ideal {bt.IDEAL_WRITES} + CPU "
          f"{sum(CPU_UNFUSABLE.values())})")
    assert measured.units <= bound


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_per_token_timesteps_write_nothing_more(traffic, dtype):
    """With per-token timesteps (temb [B, N, 6D]) each of the six modulations fuses into its one consumer: no
    [B, N, 6, D] sum is written (diffusers' ada_values is), and in float32 the bytes grow by one read of temb (in
    bf16 XLA's CPU cost model charges the whole temb to each of the four fusions that read slices of it: printed)."""
    shared, per_token = traffic[(dtype, False)], traffic[(dtype, True)]
    temb_bytes = B * N * 6 * D * jnp.dtype(dtype).itemsize
    extra = per_token.bytes_accessed - shared.bytes_accessed
    print(f"\n[{dtype}] per-token timesteps: {per_token.count} buffers ({per_token.units:.1f} tensors) against "
          f"{shared.count} ({shared.units:.1f}); bytes accessed +{extra / 1e6:.2f} MB, one read of temb "
          f"{temb_bytes / 1e6:.2f} MB")
    assert per_token.units == shared.units
    if dtype == "float32":
        assert extra <= 1.2 * temb_bytes


def _diffusers_block_writes(dtype: torch.dtype) -> list[tuple[str, tuple[int, ...], float]]:
    """Every op output of diffusers' ``LTXVideoTransformerBlock`` forward (eager) with >= B * N * D / 2 elements, as
    (op, shape, [B, N, D] tensors in ``dtype``); views write nothing and are left out."""
    # deferred: the reference is only needed here
    from diffusers.models.transformers.transformer_ltx import LTXVideoRotaryPosEmbed, LTXVideoTransformerBlock

    views = {"view", "_unsafe_view", "unbind", "transpose", "t", "expand", "select", "slice", "permute", "alias",
             "detach", "split", "as_strided", "unsqueeze", "squeeze"}
    unit = B * N * D * torch.finfo(dtype).bits // 8
    torch.manual_seed(0)
    block = LTXVideoTransformerBlock(D, CONFIG.num_attention_heads, CONFIG.attention_head_dim, D).to(dtype).eval()
    hidden, text = torch.randn(B, N, D, dtype=dtype), torch.randn(B, T, D, dtype=dtype)
    temb = torch.randn(B, 1, 6 * D, dtype=dtype)
    rope = LTXVideoRotaryPosEmbed(D, 20, 2048, 2048, 1, 1, 10000.0)(hidden, 2, 6, 10, (8 / 25, 32, 32))
    bias = torch.zeros(B, 1, T, dtype=dtype)

    class Writes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.rows = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for o in out if isinstance(out, (tuple, list)) else [out]:
                if (isinstance(o, torch.Tensor) and o.numel() * 2 >= B * N * D and o.numel() % (N * N)
                        and func.__name__.split(".")[0] not in views):
                    self.rows.append((func.__name__, tuple(o.shape), o.numel() * o.element_size() / unit))
            return out

    with torch.no_grad(), Writes() as writes:
        block(hidden, text, temb, rope, bias)
    return writes.rows


def test_bfloat16_block_writes_less_than_diffusers(traffic):
    """In bf16 our block writes fewer token-sized tensors than diffusers' eager block (each op a round trip), though
    the CPU runs our matmuls in float32 (their outputs and inputs count twice here)."""
    ours = traffic[("bfloat16", False)]
    reference = _diffusers_block_writes(torch.bfloat16)
    ref_units = sum(r[-1] for r in reference)
    _show("bfloat16 block", ours)
    print(f"    diffusers' eager block: {len(reference)} token-sized outputs, {ref_units:.1f} [B, N, D] tensors; ideal "
          f"{bt.IDEAL_WRITES}")
    for op, shape, units in reference:
        print(f"      {op:48s} {str(shape):22s} {units:.1f}")
    assert ours.units < ref_units

"""Memory traffic of one transformer block: one ``TransformerBlock`` compiled alone, its token-sized buffers in the
optimized HLO, and XLA's bytes accessed.

A block's elementwise glue (RMSNorm, AdaLN modulation, RoPE, the q / k norms, gating, residuals) should fuse into the
ops around it, so that no [B, N, D] tensor makes more round trips to memory than the matmuls and the attention
kernel need. ``block_traffic`` compiles one block with abstract params (no weights, no device memory) on the
default backend and reports what the compiled program writes: a regression of the fusions shows as more token-sized
buffers (tests bound them) and as more bytes accessed (the benchmarks record them next to the time).

    traffic = block_traffic(TRANSFORMER_PRESETS["ltx-video-2b"], jnp.bfloat16, batch=2, tokens=17 * 64 * 64)
    print(traffic.bytes_accessed, traffic.count, traffic.units)
    for buffer in traffic.buffers: print(buffer)

Axis letters: B batch, N video tokens, T text tokens, D model width.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.configs import TransformerConfig
from ltx_jax.models import layers
from ltx_jax.models.transformer import TransformerBlock

# What an ideal fused block reads and writes, in [B, N, D] tensors (the feed-forward's hidden layer counts 4):
# norm1 + modulation R1 W1; q, k, v projections R3 W3; q / k norm + RoPE R2 W2; self-attention R3 W1; out projection
# + gate + residual R2 W1; attn2 q projection R1 W1; its norm R1 W1; cross-attention R1 W1; out projection +
# residual R2 W1; norm2 + modulation R1 W1; feed-forward in + GELU R1 W4; out + gate + residual R5 W1.
IDEAL_READS, IDEAL_WRITES = 23, 18

# Instructions that move no data of their own (views, tuples, arguments).
_NOT_BUFFERS = {"parameter", "bitcast", "get-tuple-element", "tuple", "constant", "call", "after-all"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([a-z][\w\-]*)\(")
_ARRAY = re.compile(r"\b([a-z]+\d*(?:e\d+m\d+\w*)?)\[([\d,]*)\]")


@dataclasses.dataclass(frozen=True)
class TokenBuffer:
    """One array a compiled block writes that holds at least half a [B, N, D] tensor's elements."""

    name: str  # the HLO instruction
    op: str  # its opcode, and the fusion kind for a fusion
    dtype: str
    shape: tuple[int, ...]
    units: float  # its bytes / the bytes of a [B, N, D] tensor in the block's dtype


@dataclasses.dataclass(frozen=True)
class BlockTraffic:
    """What one compiled block moves. ``buffers`` excludes the attention scores of an XLA attention ([B, H, N, N],
    which a fused attention kernel never writes); ``ideal_bytes`` is ``IDEAL_READS + IDEAL_WRITES`` [B, N, D]
    tensors plus the block's weights, read once."""

    bytes_accessed: float  # XLA's cost analysis of the compiled block
    buffers: tuple[TokenBuffer, ...]
    ideal_bytes: float
    weight_bytes: float

    @property
    def count(self) -> int:
        return len(self.buffers)

    @property
    def units(self) -> float:
        return sum(b.units for b in self.buffers)

    def summary(self) -> str:
        return (f"{self.count} token-sized buffers ({self.units:.1f} [B, N, D] tensors written), "
                f"{self.bytes_accessed / 1e6:.1f} MB accessed ({self.bytes_accessed / self.ideal_bytes:.2f}x ideal)")


def block_inputs(config: TransformerConfig, dtype: Any, batch: int, tokens: int, text_tokens: int,
                 per_token_timestep: bool = False) -> tuple:
    """Abstract arguments of ``TransformerBlock.__call__`` (hidden states, text keys / values, temb, RoPE tables,
    text mask), as the model passes them: ([B, N, D], ([B, T, D],) * 2, [B, 1 or N, 6D], ``rope_frequencies``' two
    tables of a grid shared by the batch, [B, T] bool)."""
    d = config.inner_dim
    s = jax.ShapeDtypeStruct
    cos, sin = jax.eval_shape(lambda: layers.rope_frequencies(jnp.zeros((1, tokens, 3), jnp.float32), d))
    return (s((batch, tokens, d), dtype), (s((batch, text_tokens, d), dtype),) * 2,
            s((batch, tokens if per_token_timestep else 1, 6 * d), dtype), cos, sin, s((batch, text_tokens), bool))


def compile_block(config: TransformerConfig, dtype: Any, batch: int, tokens: int, text_tokens: int = 128,
                  implementation: str | None = None, per_token_timestep: bool = False):
    """One block (params in ``dtype``, attention ``implementation``: None picks the model's default) lowered and
    compiled for the default backend with abstract params; returns (compiled, abstract params)."""
    dtype = jnp.dtype(dtype)
    if implementation is None:
        implementation = layers.default_attention_implementation(dtype, config.attention_head_dim)
    block = TransformerBlock(config, implementation, dtype, dtype)
    h, kv, temb, cos, sin, mask = block_inputs(config, dtype, batch, tokens, text_tokens, per_token_timestep)
    init = TransformerBlock(config, "xla", dtype, dtype)
    zeros = lambda x: jnp.zeros(x.shape, x.dtype)  # noqa: E731
    params = jax.eval_shape(lambda: init.init(jax.random.key(0), zeros(h), (zeros(kv[0]),) * 2, None, zeros(temb),
                                              zeros(cos), zeros(sin), zeros(mask), None))

    def forward(p, h, kv, temb, cos, sin, mask):
        return block.apply(p, h, kv, None, temb, cos, sin, mask, None)[0]

    return jax.jit(forward).lower(params, h, kv, temb, cos, sin, mask).compile(), params


def token_buffers(hlo: str, batch: int, tokens: int, width: int, heads: int, dtype: Any) -> tuple[TokenBuffer, ...]:
    """The arrays that the kernels of an optimized HLO module (``Compiled.as_text()``) write and that hold at least
    B * N * D / 2 elements with N among their factors, attention scores (N twice among their dimensions, B * H * N^2
    elements or a multiple) excepted. N should have a prime factor that no weight's size has (17 * 64 * 64 tokens:
    17), or a backend's copy of a weight (the CPU's float32 one of a bf16 kernel) counts too.

    Instructions inside fusions are not buffers (a fusion writes only its outputs); every other computation (the
    entry, and those a backend outlines into calls) is read instruction by instruction.
    """
    fused = set(re.findall(r"\bfusion\(.*?calls=%?([\w.\-]+)", hlo))
    full = batch * tokens * width
    unit = full * jnp.dtype(dtype).itemsize
    found, computation = [], None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if header and not line.startswith(" "):
            computation = header.group(1)
            continue
        m = _INSTRUCTION.match(line)
        if not m or computation in fused:
            continue
        name, kind_text, op = m.groups()
        if op in _NOT_BUFFERS:
            continue
        kind = re.search(r"kind=(\w+)", line)
        for dt, dims in _ARRAY.findall(kind_text):
            shape = tuple(int(x) for x in dims.split(",") if x)
            size = math.prod(shape)
            scores = shape.count(tokens) >= 2 and size % (batch * heads * tokens * tokens) == 0
            if size * 2 < full or size % tokens or scores:
                continue
            nbytes = size * np.dtype(jnp.dtype(_DTYPES.get(dt, dt))).itemsize
            found.append(TokenBuffer(name, f"{op} {kind.group(1)}" if kind else op, dt, shape, nbytes / unit))
    return tuple(found)


_DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64", "s32": "int32", "u8": "uint8",
           "s8": "int8", "pred": "bool", "f8e4m3fn": "float8_e4m3fn", "f8e5m2": "float8_e5m2"}


def block_traffic(config: TransformerConfig, dtype: Any, batch: int, tokens: int, text_tokens: int = 128,
                  implementation: str | None = None, per_token_timestep: bool = False) -> BlockTraffic:
    """Compiles one block (``compile_block``) and measures it (module docstring)."""
    compiled, params = compile_block(config, dtype, batch, tokens, text_tokens, implementation, per_token_timestep)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    weight_bytes = float(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params)))
    activation = batch * tokens * config.inner_dim * jnp.dtype(dtype).itemsize
    return BlockTraffic(
        bytes_accessed=float(cost.get("bytes accessed", float("nan"))),
        buffers=token_buffers(compiled.as_text(), batch, tokens, config.inner_dim, config.num_attention_heads, dtype),
        ideal_bytes=(IDEAL_READS + IDEAL_WRITES) * activation + weight_bytes,
        weight_bytes=weight_bytes,
    )

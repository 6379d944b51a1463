"""The compiled programs of a pipeline call, and dry runs of them: every program at full size, no weights, no device.

Each jit-compiled program a pipeline runs (T5, the denoising loop, the VAE's encode and decode, the upsampler, the
resize) is a ``Program``: called, it is the ``jax.jit`` function it wraps. Inside ``dry_run()`` a call is traced and
lowered for its arguments' shapes instead, and returns ``Placeholder`` arrays of its outputs' shapes; nothing is
compiled or run, and the parameters may be ``jax.ShapeDtypeStruct`` trees (``ltx_jax.pipelines.abstract``). So a
pipeline's own ``__call__``, with its own argument checks, walks a release's real sizes on a laptop:

    pipe = abstract_pipeline(LTXPipeline, RELEASES["ltx-video-0.9.8-2b-distilled"], dtype="bfloat16")
    with dry_run() as run:
        pipe(prompt="a fox", height=512, width=768, num_frames=121)     # the call's checks, then lowering only
    for record in run.records:    # text encoding, denoising, decoding
        print(record.name, record.inputs, record.gflop, record.parameter_bytes, record.memory_bytes)

A ``Placeholder`` holds no memory (a broadcast zero) and carries only a shape and a dtype; ``is_placeholder`` tells a
pipeline's health checks (NaN flags, the first non-finite step) that there is no value to check. A program lowered
once in a process, for the same shapes, is not traced again by a later dry run (``ltx_jax.check`` prints the table).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import math
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np


class Placeholder(np.ndarray):
    """A program's output in a dry run: the right shape and dtype, all zeros, no memory (a broadcast view)."""


def placeholder(shape: Sequence[int], dtype: Any) -> Placeholder:
    return np.broadcast_to(np.zeros((), dtype), tuple(shape)).view(Placeholder)


def is_placeholder(x: Any) -> bool:
    """True for a dry run's stand-in of a program output (its values are unknown, only its shape is real)."""
    return isinstance(x, Placeholder)


def tree_bytes(tree: Any) -> int:
    """Bytes one device holds of a tree's arrays / shape structs (a sharded leaf counts its largest shard)."""
    total = 0
    for x in jax.tree_util.tree_leaves(tree):
        shape = tuple(getattr(x, "shape", ()))
        sharding = getattr(x, "sharding", None)
        if sharding is not None and hasattr(sharding, "shard_shape"):
            shape = sharding.shard_shape(shape)
        total += math.prod(shape) * np.dtype(x.dtype).itemsize
    return total


def _abstract(x: Any) -> Any:
    """An argument leaf as the shape the lowering needs (arrays of any kind become ``ShapeDtypeStruct`` s, keeping
    the sharding of a jax.Array spread over several devices; one on a single device goes where the program's others
    are, as an uncommitted array does); Python scalars and static values stay as they are."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    if isinstance(x, jax.Array):
        spread = len(x.sharding.device_set) > 1
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding if spread else None)
    if isinstance(x, np.ndarray):
        return jax.ShapeDtypeStruct(x.shape, x.dtype)
    return x


def describe(tree: Any, limit: int | None = None) -> str:
    """``latents [1, 6144, 128] float32, inputs.prompt_embeds [1, 128, 4096] bfloat16`` for the array leaves of a
    tree (a dict of named arguments), the largest first; past ``limit`` leaves, how many more there are."""
    leaves = [(jax.tree_util.keystr(path, simple=True, separator="."), x)
              for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
              if hasattr(x, "shape") and hasattr(x, "dtype")]
    leaves.sort(key=lambda item: -math.prod(item[1].shape) * np.dtype(item[1].dtype).itemsize)
    shown = [f"{name} [{', '.join(map(str, x.shape))}] {np.dtype(x.dtype).name}" for name, x in leaves[:limit]]
    more = len(leaves) - len(shown)
    return ", ".join(shown + ([f"{more} more"] if more else [])) or "-"


@dataclasses.dataclass
class ProgramRecord:
    """One program a dry run lowered (the same program with the same shapes is recorded once, with a count).

    Attributes:
      name: the stage it serves ("text encoding", "denoising", "decoding", ...); detail: what varies between
        programs of one stage (e.g. "tiled").
      inputs: the largest array arguments other than parameters, described (``describe``).
      gflop: the program's matrix-product and convolution work, every loop counted as often as it runs
        (``matmul_flops``, or the program's own ``flops`` where a while loop's count is not in the program).
      parameter_bytes, argument_bytes, output_bytes: bytes one device holds (sharded arrays: one shard).
      temporary_bytes: XLA's ``memory_analysis`` of the compiled program (``dry_run(compile=True)``), else None.
      calls: how many times the call ran it; lower_seconds: the time tracing and lowering took.
    """

    name: str
    detail: str
    inputs: str
    gflop: float
    parameter_bytes: int
    argument_bytes: int
    output_bytes: int
    temporary_bytes: int | None = None
    calls: int = 1
    lower_seconds: float = 0.0

    @property
    def memory_bytes(self) -> int:
        """Device memory of one run: parameters, the other arguments and outputs, and (when compiled) XLA's
        temporaries; without the temporaries it is a lower bound."""
        return self.parameter_bytes + self.argument_bytes + self.output_bytes + (self.temporary_bytes or 0)


class DryRun:
    """What ``dry_run()`` collects: ``records`` in the order the call first ran each program."""

    def __init__(self, compile: bool = False):
        self.compile = compile
        self.records: list[ProgramRecord] = []
        self._index: dict[Any, ProgramRecord] = {}

    def lower(self, program: "Program", args: tuple, kwargs: dict) -> Any:
        """Records one call of ``program`` (lowering it unless this process lowered it already) and returns
        placeholders of its outputs."""
        bound = program.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        abstract = {name: (value if name in program.static else jax.tree_util.tree_map(_abstract, value))
                    for name, value in bound.arguments.items()}
        start = time.perf_counter()
        lowered = _lowered(program, abstract, self.compile)
        name = f"{_LABEL.get()}: {program.name}" if _LABEL.get() else program.name
        detail = program.detail(bound.arguments)
        params = {k: abstract[k] for k in program.params if k in abstract}
        others = {k: v for k, v in abstract.items() if k not in program.params and k not in program.static}
        key = (name, detail, describe(others), describe(params), describe(lowered.out_info))
        if key in self._index:
            self._index[key].calls += 1
        else:
            self._index[key] = record = ProgramRecord(
                name=name, detail=detail, inputs=describe(others, limit=3), gflop=lowered.flops / 1e9,
                parameter_bytes=tree_bytes(params), argument_bytes=tree_bytes(others),
                output_bytes=tree_bytes(lowered.out_info), temporary_bytes=lowered.temporary_bytes,
                lower_seconds=time.perf_counter() - start)
            self.records.append(record)
        return jax.tree_util.tree_map(lambda s: placeholder(s.shape, s.dtype), lowered.out_info)


@dataclasses.dataclass(frozen=True)
class _Lowered:
    """What a dry run keeps of a lowered program."""

    out_info: Any
    flops: float
    temporary_bytes: int | None


# Programs this process has lowered, by program, static arguments and the other arguments' shapes, dtypes and
# shardings: a program lowered once is not traced again by a later dry run (the tests run a hundred of them).
_LOWERED: dict[Any, _Lowered] = {}


def _signature_key(program: "Program", abstract: dict) -> Any:
    def leaf(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return (tuple(x.shape), np.dtype(x.dtype).name, x.sharding)
        return (type(x).__name__, np.shape(x), np.result_type(x).name) if hasattr(x, "dtype") else x

    static = tuple((k, abstract[k]) for k in program.static)
    dynamic = {k: v for k, v in abstract.items() if k not in program.static}
    leaves, treedef = jax.tree_util.tree_flatten(dynamic)
    return program, static, treedef, tuple(leaf(x) for x in leaves)


def _lowered(program: "Program", abstract: dict, compile: bool) -> _Lowered:
    key = (_signature_key(program, abstract), compile)
    if key not in _LOWERED:
        traced = program.jitted.trace(**abstract)
        lowered = traced.lower()
        flops = program.flops(**abstract) if program.flops is not None else matmul_flops(traced.jaxpr)
        temporary = None
        if compile:
            analysis = lowered.compile().memory_analysis()
            temporary = None if analysis is None else int(analysis.temp_size_in_bytes)
        _LOWERED[key] = _Lowered(lowered.out_info, flops, temporary)
    return _LOWERED[key]


def _sub_jaxprs(params: dict) -> Iterator[Any]:
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(item, "eqns"):
                yield item
            elif hasattr(getattr(item, "jaxpr", None), "eqns"):
                yield item.jaxpr


def matmul_flops(jaxpr) -> float:
    """FLOPs (two per multiply-add) of every matrix product and convolution of a jaxpr (or closed jaxpr), each loop's
    body counted as often as it runs: a scan ``length`` times, a while loop once (its count is not in the program;
    a caller that knows it scales the body), a conditional by its costliest branch, a ``shard_map`` body (one
    device's shard) once per device. Work a sharded program repeats on several devices counts once.

    XLA's own cost analysis (``Lowered.cost_analysis``) counts every loop body once, whatever its trip count: the
    28 scanned blocks of the 2B transformer would count as one. Elementwise work is left out; matrix products and
    convolutions are what the model's time goes to."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contracting, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contracting)
        elif name == "conv_general_dilated":
            kernel = eqn.invars[1].aval.shape  # out features x in features / groups x window
            per_output = math.prod(kernel) / kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output
        elif name == "cond":
            total += max((matmul_flops(b) for b in eqn.params["branches"]), default=0.0)
        elif name == "shard_map":  # the body sees one device's shard and runs on every device of its manual axes
            mesh = eqn.params["mesh"]
            axes = eqn.params.get("newly_manual_axes") or mesh.axis_names
            total += math.prod(dict(mesh.shape)[a] for a in axes) * matmul_flops(eqn.params["jaxpr"])
        else:
            inner = sum(matmul_flops(j) for j in _sub_jaxprs(eqn.params))
            total += inner * (eqn.params["length"] if name == "scan" else 1)
    return total


_ACTIVE: contextvars.ContextVar[DryRun | None] = contextvars.ContextVar("ltx_jax_dry_run", default=None)
_LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("ltx_jax_program_label", default="")


@contextlib.contextmanager
def label(text: str) -> Iterator[None]:
    """Programs run inside the block are recorded as ``"<text>: <program name>"`` (e.g. a multi-scale call's
    "first pass: denoising")."""
    token = _LABEL.set(text)
    try:
        yield
    finally:
        _LABEL.reset(token)


def dry_running() -> bool:
    """Whether programs called now are lowered for a dry run instead of run (``dry_run``)."""
    return _ACTIVE.get() is not None


@contextlib.contextmanager
def dry_run(compile: bool = False) -> Iterator[DryRun]:
    """Within the block every ``Program`` call is lowered (and, with ``compile``, compiled for XLA's memory
    analysis) instead of run, and returns placeholders; yields the ``DryRun`` that collects the records."""
    run = DryRun(compile)
    token = _ACTIVE.set(run)
    try:
        yield run
    finally:
        _ACTIVE.reset(token)


def in_dry_run() -> bool:
    return _ACTIVE.get() is not None


class Program:
    """A ``jax.jit`` function that a dry run lowers instead of running (module docstring).

    Args:
      fn: the function; name: the stage it serves (a dry run's record name).
      static, donate: argument names passed to ``jax.jit`` as ``static_argnames`` / ``donate_argnames``.
      params: argument names that hold parameters (counted apart in a dry run's records).
      detail: ``detail(arguments) -> str``, what tells programs of one stage apart (e.g. tiled or whole).
      flops: ``flops(**arguments) -> float`` for a program whose while loops run a number of times the program does
        not hold (the denoising loop's steps); default ``matmul_flops`` of the traced program.
    Attributes the jitted function has (``lower``, ``trace``, ``_cache_size``) are its.
    """

    def __init__(self, fn: Callable, name: str, *, static: Sequence[str] = (), donate: Sequence[str] = (),
                 params: Sequence[str] = (), detail: Callable[[dict], str] | None = None,
                 flops: Callable[..., float] | None = None):
        self.fn, self.name = fn, name
        self.static, self.params = tuple(static), tuple(params)
        self.signature = inspect.signature(fn)
        self.detail = detail or (lambda arguments: "")
        self.flops = flops
        self.jitted = jax.jit(fn, static_argnames=self.static, donate_argnames=tuple(donate))

    def __call__(self, *args, **kwargs):
        run = _ACTIVE.get()
        if run is None:
            return self.jitted(*args, **kwargs)
        return run.lower(self, args, kwargs)

    def __getattr__(self, name: str):
        jitted = self.__dict__.get("jitted")
        if jitted is None:  # not initialised (copying, unpickling)
            raise AttributeError(name)
        return getattr(jitted, name)

    def __repr__(self) -> str:
        return f"Program({self.name!r}, {getattr(self.fn, '__qualname__', self.fn)!r})"

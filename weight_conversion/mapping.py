"""Conversion as data: rules that map each Flax param to torch tensor key(s), plus small shape transforms.

A ``Rule`` names one Flax param path, the torch key it comes from (or one key per layer, stacked on a new
leading axis for scanned layers) and a ``Transform`` (identity, Linear transpose, conv layout). ``convert``
checks that the rules cover every param of the model (from ``jax.eval_shape`` of ``init``), that every torch key
is used, and every shape, and names the key and both shapes when something does not fit.

Low-precision weights follow the model's own tree: a kernel whose abstract dtype is int8 / float8_e4m3fn (a
``Dense(weights=...)``) has a rule with a ``scale_target`` (its ``kernel_scale`` leaf), and ``convert`` quantizes
each layer of it on the host as it is read (``weight_conversion.quantize``). Stored fp8 tensors (with an optional
``<module>.weight_scale`` / ``.scale_weight``) are dequantised for float params, and kept as stored for fp8 ones.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from ltx_jax import interrupts
from weight_conversion import quantize
from weight_conversion.safetensors_io import CheckpointError

Path = tuple[str, ...]


class _HostReads:
    """Bytes of checkpoint tensors this process has read into host memory (whole tensors, or slices of them when
    several processes share a param): how a test sees that no process reads the whole file."""

    def __init__(self):
        self.bytes = 0

    def add(self, nbytes: int) -> None:
        self.bytes += int(nbytes)


HOST_READS = _HostReads()
# ``kernel_delta(target, layer, shape)``: an additive float32 change [in, out] to one layer's kernel (layer None for
# an unscanned param) in Flax layout, or None; added before the kernel is cast or quantized (how LoRA is fused).
KernelDelta = Callable[[Path, "int | None", tuple[int, ...]], "np.ndarray | None"]


@dataclasses.dataclass(frozen=True)
class Transform:
    """How a torch tensor becomes a Flax param: ``apply`` on arrays, ``torch_shape`` on the expected Flax shape."""

    name: str
    apply: Callable[[np.ndarray], np.ndarray]
    torch_shape: Callable[[tuple[int, ...]], tuple[int, ...]]
    view: Callable[[np.ndarray], np.ndarray] | None = None  # ``apply`` as a view (no copy), where one exists


def _transposed(x: np.ndarray, rows: int = 256) -> np.ndarray:
    """``x.T`` as a new C-ordered array, copied in blocks of rows: a plain strided copy of a [8192, 2048] bf16
    weight takes 5x longer (each block's reads and writes stay in cache)."""
    out = np.empty(x.shape[::-1], x.dtype)
    for i in range(0, x.shape[0], rows):
        out[:, i:i + rows] = x[i:i + rows].T
    return out


IDENTITY = Transform("identity", lambda x: x, lambda s: tuple(s), lambda x: x)
# torch Linear weight [out, in] -> Flax Dense kernel [in, out].
LINEAR = Transform("linear-transpose", _transposed, lambda s: tuple(reversed(s)), lambda x: x.T)
# torch ConvNd weight [out, in, *k] -> Flax Conv kernel [*k, in, out] (a view: the same function is both).
_conv_layout = lambda x: np.transpose(x, (*range(2, x.ndim), 1, 0))  # noqa: E731
CONV = Transform("conv-transpose", _conv_layout, lambda s: (s[-1], s[-2], *s[:-2]), _conv_layout)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One Flax param: its path, its torch key(s) (several = stacked on axis 0) and the transform of each.

    ``scale_target``: for a quantized kernel, the path of its float32 ``kernel_scale`` (filled with it).
    """

    target: Path
    sources: tuple[str, ...]
    transform: Transform = IDENTITY
    stacked: bool = False
    scale_target: Path | None = None


def flatten(tree: Mapping[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    """Nested dict -> {path tuple: leaf}."""
    out: dict[Path, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def unflatten(flat: Mapping[Path, Any]) -> dict:
    tree: dict = {}
    for path, leaf in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = leaf
    return tree


def rules_from_tree(
    abstract_params: Mapping[str, Any],
    torch_name: Callable[[Path], str],
    transform_for: Callable[[Path, int], Transform],
    stacked_prefixes: Mapping[str, int] | None = None,
) -> list[Rule]:
    """Derives the table from the model's own param tree.

    Args:
      abstract_params: the ``eval_shape`` of ``init``'s params.
      torch_name: flax path (without the stacked prefix's layer index) -> torch key; for stacked params the
        name must contain ``{i}`` where the layer index goes.
      transform_for: (flax path, ndim of one layer's param) -> Transform.
      stacked_prefixes: top-level names whose params are stacked over layers (nn.scan) -> number of layers.
    A ``kernel_scale`` leaf gets no rule of its own: it is the ``scale_target`` of its sibling ``kernel``.
    """
    stacked_prefixes = dict(stacked_prefixes or {})
    flat = flatten(abstract_params)
    rules = []
    for path, leaf in sorted(flat.items()):
        if path[-1] == quantize.SCALE_LEAF and path[:-1] + ("kernel",) in flat:
            continue
        scale = path[:-1] + (quantize.SCALE_LEAF,)
        scale = scale if path[-1] == "kernel" and scale in flat else None
        layers = stacked_prefixes.get(path[0])
        name = torch_name(path)
        if layers is None:
            rules.append(Rule(path, (name,), transform_for(path, len(leaf.shape)), scale_target=scale))
        else:
            sources = tuple(name.format(i=i) for i in range(layers))
            rules.append(Rule(path, sources, transform_for(path, len(leaf.shape) - 1), stacked=True,
                              scale_target=scale))
    return rules


def convert(
    source: Mapping[str, np.ndarray],
    rules: Sequence[Rule],
    abstract_params: Mapping[str, Any],
    dtype: Any,
    *,
    what: str,
    source_shape: Callable[[str], tuple[int, ...]] | None = None,
    ignore: Iterable[str] = (),
    kernel_delta: KernelDelta | None = None,
    placement: Callable[[Path, tuple[int, ...]], Any] | None = None,
) -> dict:
    """Builds the param tree from ``source`` with ``rules``, checking keys and shapes, casting to ``dtype``.

    Each param is assembled in host memory in the target dtype (one torch tensor at a time is upcast or
    downcast), then moved to the default device before the next one, so a bf16 model never passes through a
    float32 copy of itself. Quantized kernels (int8 / float8_e4m3fn in ``abstract_params``) are quantized one layer
    at a time, so the host holds one float32 layer plus the result; an fp8 tensor stored in the checkpoint goes into
    an fp8 kernel as it is (bit for bit, its stored scale or 1 as ``kernel_scale``) unless a delta is added to it.

    Args:
      source: torch key -> array (lazy); ``source_shape`` gives a key's shape without reading it. A source with a
        ``release(key)`` method is told when a tensor has been used (its memory-mapped pages can go).
      what: name of the component for error messages, e.g. "transformer".
      ignore: torch keys that are known and deliberately unused.
      kernel_delta: ``KernelDelta`` called for every ``kernel`` (each layer of a stacked one); a returned
        float32 array [in, out] is added to the kernel (dequantised first if it was stored in fp8) before it is
        cast or quantized. This is where LoRA is fused.
      placement: (flax path, shape) -> the ``jax.sharding.Sharding`` of that param (``ShardingPlan``); each layer
        of a stacked param then goes straight to its shards (written into the sharded buffer, donated), so no
        device and no host ever holds more than one layer of a sharded param. None: the default device.
    Raises:
      CheckpointError naming missing keys, unused keys, or the key and both shapes of a mismatch, and stored
      quantization layouts that are not read (``weight_conversion.quantize``).
    """
    dtype = jnp.dtype(dtype)
    flat_abstract = flatten(abstract_params)
    targets = {r.target for r in rules} | {r.scale_target for r in rules if r.scale_target is not None}
    if targets != set(flat_abstract):
        raise AssertionError(f"conversion table for {what} does not match the model: "
                             f"{sorted(targets ^ set(flat_abstract))}")

    needed = [k for r in rules for k in r.sources]
    available = set(source)
    scale_of, companions = {}, set()  # stored fp8 scales of the needed weights; activation scales we skip
    for key in needed:
        scale, input_scales = quantize.weight_companions(key, available)
        if scale is not None:
            scale_of[key] = scale
        companions.update(input_scales)
    missing = [k for k in needed if k not in available]
    unused = sorted(available - set(needed) - set(scale_of.values()) - companions - set(ignore))
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:12]}{' ...' if len(missing) > 12 else ''}")
    if unused:
        problems.append(f"unexpected keys ({len(unused)}): {unused[:12]}{' ...' if len(unused) > 12 else ''}")
    if problems:
        raise CheckpointError(
            f"The checkpoint does not fit the {what} config: " + "; ".join(problems)
            + ". Check that the checkpoint and its config.json belong together (layers, widths, variant)."
        )

    shape_of = source_shape or (lambda k: tuple(source[k].shape))
    for rule in rules:  # check every shape before reading any data
        per_layer = tuple(flat_abstract[rule.target].shape[1:] if rule.stacked else flat_abstract[rule.target].shape)
        expected = tuple(rule.transform.torch_shape(per_layer))
        for key in rule.sources:
            got = tuple(shape_of(key))
            if got != expected:
                raise CheckpointError(
                    f"{what}: checkpoint tensor {key!r} has shape {got}, but the model expects {expected} "
                    f"(Flax param {'/'.join(rule.target)} {tuple(flat_abstract[rule.target].shape)}). "
                    "The config does not match this checkpoint."
                )
            if key in scale_of:
                quantize.check_scale_shape(scale_of[key], shape_of(scale_of[key]), got)

    reader = _Reader(source, scale_of, kernel_delta, what)
    flat_params = {}
    for rule in rules:
        interrupts.check("loading")  # the command line's Ctrl-C / SIGTERM, between two params
        shape = tuple(flat_abstract[rule.target].shape)
        layers = list(enumerate(rule.sources)) if rule.stacked else [(None, rule.sources[0])]
        place = _Placement(None if placement is None else placement(rule.target, shape), shape, rule.stacked)
        if rule.scale_target is not None:
            weights = quantize.weight_format(flat_abstract[rule.target].dtype)
            if weights is None:
                raise AssertionError(f"{what}: {'/'.join(rule.target)} has a kernel_scale but a float dtype")
            scale_shape = tuple(flat_abstract[rule.scale_target].shape)
            scale_place = _Placement(None if placement is None else placement(rule.scale_target, scale_shape),
                                     scale_shape, rule.stacked)
            kernel, scale = place.start(flat_abstract[rule.target].dtype), scale_place.start(np.float32)
            for i, key in layers:
                q, s = reader.quantized(rule, i, key, weights)
                kernel, scale = place.put(kernel, q, i), scale_place.put(scale, s, i)
            flat_params[rule.scale_target] = scale_place.finish(scale)
        else:
            kernel = place.start(dtype)
            for i, key in layers:
                view = reader.view(rule, key) if place.sliced else None
                if view is not None:  # several processes: each reads only its shards' part of the tensor
                    kernel = place.put_view(kernel, view, dtype, i)
                    reader.done(key)
                else:
                    kernel = place.put(kernel, reader.value(rule, i, key, dtype), i)
        flat_params[rule.target] = place.finish(kernel)
        del kernel
    return unflatten(flat_params)


class _Placement:
    """Where one param's layers go: a host array moved once at the end (no sharding), or a sharded device buffer
    that each layer is written into as it is read."""

    def __init__(self, sharding, shape: tuple[int, ...], stacked: bool):
        self.sharding, self.shape, self.stacked = sharding, shape, stacked
        # shards on devices of other processes: each process reads only the parts its own devices hold
        self.sliced = sharding is not None and not sharding.is_fully_addressable

    def put_view(self, buffer, view: np.ndarray, dtype, layer: int | None):
        """``put`` of a view of the file: each of this process's devices gets its slice, read and cast alone."""
        sharding = _layer_sharding(self.sharding) if self.stacked else self.sharding
        read: dict = {}

        def part(index):
            where = tuple((s.start, s.stop, s.step) for s in index)
            if where not in read:  # devices holding the same slice read it once
                part_view = view[index]
                read[where] = np.asarray(part_view, dtype=dtype)
                HOST_READS.add(part_view.nbytes)
            return read[where]

        value = jax.make_array_from_callback(tuple(view.shape), sharding, part)
        if not self.stacked:
            return value
        return _write_layer(buffer, value, layer)

    def start(self, dtype):
        if not self.stacked:
            return None
        if self.sharding is None:
            return np.empty(self.shape, dtype)
        return jnp.zeros(self.shape, dtype, device=self.sharding)  # made on its shards, no jit per param

    def put(self, buffer, value: np.ndarray, layer: int | None):
        if self.sharding is None:
            if layer is None:
                return value  # the whole param, already in its dtype
            buffer[layer] = value
            return buffer
        if not self.stacked:
            return jax.device_put(value, self.sharding)
        return _write_layer(buffer, jax.device_put(value, _layer_sharding(self.sharding)), layer)

    def finish(self, buffer):
        return jax.device_put(buffer) if self.sharding is None else buffer


def _layer_sharding(sharding):
    """The sharding of one layer of a stacked param (its leading "layers" axis dropped)."""
    return NamedSharding(sharding.mesh, PartitionSpec(*tuple(sharding.spec)[1:]))


@functools.partial(jax.jit, donate_argnums=0)
def _write_layer(buffer: jax.Array, layer_value: jax.Array, index) -> jax.Array:
    return jax.lax.dynamic_update_index_in_dim(buffer, layer_value.astype(buffer.dtype), index, 0)


class _Reader:
    """Reads one torch tensor (one layer of a param) at a time: stored scale, transform, delta, then a cast or
    quantization by the caller; tells the source when the tensor's pages may go."""

    def __init__(self, source, scale_of: dict[str, str], kernel_delta: KernelDelta | None, what: str):
        self.source, self.scale_of, self.kernel_delta, self.what = source, scale_of, kernel_delta, what
        self._release = getattr(source, "release", None)

    def view(self, rule: Rule, key: str) -> np.ndarray | None:
        """One layer of a float param as a view of the file in Flax layout (nothing read yet), or None where it
        needs the whole tensor first (a stored scale, a kernel delta, a source that is not a file view)."""
        if key in self.scale_of or rule.transform.view is None or (
                self.kernel_delta is not None and rule.target[-1] == "kernel"):
            return None
        stored = self.source[key]
        return rule.transform.view(stored) if isinstance(stored, np.ndarray) else None

    def _stored(self, key: str) -> tuple[np.ndarray, np.ndarray | None]:
        stored = self.source[key]
        HOST_READS.add(stored.nbytes)
        scale_key = self.scale_of.get(key)
        return stored, quantize.stored_scale(stored, None if scale_key is None else self.source[scale_key], key)

    def _delta(self, rule: Rule, layer: int | None, shape: tuple[int, ...]) -> np.ndarray | None:
        if self.kernel_delta is None or rule.target[-1] != "kernel":
            return None
        delta = self.kernel_delta(rule.target, layer, shape)
        if delta is not None and tuple(delta.shape) != tuple(shape):
            raise ValueError(f"{self.what}: kernel_delta for {'/'.join(rule.target)} (layer {layer}) has shape "
                             f"{tuple(delta.shape)}; the kernel is {tuple(shape)}.")
        return delta

    def done(self, key: str) -> None:
        if self._release is not None:
            self._release(key)
            if key in self.scale_of:
                self._release(self.scale_of[key])

    def value(self, rule: Rule, layer: int | None, key: str, dtype: Any) -> np.ndarray:
        """One layer of a float param in Flax layout, a C-ordered copy in ``dtype`` (0-d params stay 0-d)."""
        stored, scale = self._stored(key)
        value = rule.transform.apply(quantize.dequantize_stored(stored, scale))
        delta = self._delta(rule, layer, value.shape)
        if delta is not None:
            value = value.astype(np.float32) + delta
        if np.may_share_memory(value, stored):  # a view of the file: copied before its pages are released
            value = np.array(value, dtype=dtype, order="C")
        value = np.asarray(value, dtype=dtype, order="C")
        self.done(key)
        return value

    def quantized(self, rule: Rule, layer: int | None, key: str, weights: str) -> tuple[np.ndarray, np.ndarray]:
        """One layer of a quantized kernel: (q [in, out], scale [out])."""
        if rule.transform is not LINEAR:
            raise AssertionError(f"{self.what}: quantized param {'/'.join(rule.target)} is not a Linear kernel")
        stored, scale = self._stored(key)  # torch Linear weight [out, in]
        out = stored.shape[0]
        delta = self._delta(rule, layer, (stored.shape[1], out))
        if weights == "fp8" and stored.dtype == quantize.FP8_E4M3 and delta is None:  # as stored, bit for bit
            q, s = rule.transform.apply(stored), np.broadcast_to(scale.reshape(-1), (out,))  # a copy (transposed)
        else:
            value = rule.transform.apply(quantize.dequantize_stored(stored, scale)).astype(np.float32, copy=False)
            q, s = quantize.quantize_kernel(value if delta is None else value + delta, weights)
        self.done(key)
        return q, s

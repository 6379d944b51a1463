"""Conversion as data: rules that map each Flax param to torch tensor key(s), plus small shape transforms.

A ``Rule`` names one Flax param path, the torch key it comes from (or one key per layer, stacked on a new
leading axis for scanned layers) and a ``Transform`` (identity, Linear transpose, conv layout). ``convert``
checks that the rules cover every param of the model (from ``jax.eval_shape`` of ``init``), that every torch key
is used, and every shape, and names the key and both shapes when something does not fit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from weight_conversion.safetensors_io import CheckpointError

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Transform:
    """How a torch tensor becomes a Flax param: ``apply`` on arrays, ``torch_shape`` on the expected Flax shape."""

    name: str
    apply: Callable[[np.ndarray], np.ndarray]
    torch_shape: Callable[[tuple[int, ...]], tuple[int, ...]]


IDENTITY = Transform("identity", lambda x: x, lambda s: tuple(s))
# torch Linear weight [out, in] -> Flax Dense kernel [in, out].
LINEAR = Transform("linear-transpose", lambda x: x.T, lambda s: tuple(reversed(s)))
# torch ConvNd weight [out, in, *k] -> Flax Conv kernel [*k, in, out].
CONV = Transform(
    "conv-transpose",
    lambda x: np.transpose(x, (*range(2, x.ndim), 1, 0)),
    lambda s: (s[-1], s[-2], *s[:-2]),
)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One Flax param: its path, its torch key(s) (several = stacked on axis 0) and the transform of each."""

    target: Path
    sources: tuple[str, ...]
    transform: Transform = IDENTITY
    stacked: bool = False


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
    """
    stacked_prefixes = dict(stacked_prefixes or {})
    rules = []
    for path, leaf in sorted(flatten(abstract_params).items()):
        layers = stacked_prefixes.get(path[0])
        name = torch_name(path)
        if layers is None:
            rules.append(Rule(path, (name,), transform_for(path, len(leaf.shape))))
        else:
            sources = tuple(name.format(i=i) for i in range(layers))
            rules.append(Rule(path, sources, transform_for(path, len(leaf.shape) - 1), stacked=True))
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
) -> dict:
    """Builds the param tree from ``source`` with ``rules``, checking keys and shapes, casting to ``dtype``.

    Each param is assembled in host memory in the target dtype (one torch tensor at a time is upcast or
    downcast), then moved to the default device before the next one, so a bf16 model never passes through a
    float32 copy of itself.

    Args:
      source: torch key -> array (lazy); ``source_shape`` gives a key's shape without reading it.
      what: name of the component for error messages, e.g. "transformer".
      ignore: torch keys that are known and deliberately unused.
    Raises:
      CheckpointError naming missing keys, unused keys, or the key and both shapes of a mismatch.
    """
    dtype = jnp.dtype(dtype)
    flat_abstract = flatten(abstract_params)
    targets = {r.target for r in rules}
    if targets != set(flat_abstract):
        raise AssertionError(f"conversion table for {what} does not match the model: {sorted(targets ^ set(flat_abstract))}")

    needed = [k for r in rules for k in r.sources]
    available = set(source)
    missing = [k for k in needed if k not in available]
    unused = sorted(available - set(needed) - set(ignore))
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

    flat_params = {}
    for rule in rules:
        shape = tuple(flat_abstract[rule.target].shape)
        if rule.stacked:
            host = np.empty(shape, dtype)
            for i, key in enumerate(rule.sources):
                host[i] = rule.transform.apply(source[key]).astype(dtype)
        else:
            host = np.array(rule.transform.apply(source[rule.sources[0]]), dtype=dtype, order="C")  # keeps 0-d params 0-d
        flat_params[rule.target] = jax.device_put(host)
        del host
    return unflatten(flat_params)

"""XLA SPMD sharding of the models: a device mesh with named axes, and one table of rules from logical axis names to
mesh axes.

    plan = ShardingPlan.create("data=2,context=4")          # or ShardingPlan(mesh) for a jax.sharding.Mesh
    pipe = LTXPipeline.from_pretrained(path, mesh="data=2,context=4")

Mesh axes (``MESH_AXES``; any may be 1 and is then left out of every spec):
  * ``data``: videos of a batch and the guidance branches (uncond / cond / perturbed rows of one forward);
  * ``fsdp``: parameters sharded along their model width (gathered per layer inside the scanned blocks) and the
    batch sharded with ``data``, as ZeRO-3 does; where the batch does not divide (a CFG pair over fsdp=8) the video
    tokens take it instead, so no device computes another's activations;
  * ``context``: the video tokens; self-attention is context-parallel (``context_parallel_attention``: an
    all-to-all over heads, Ulysses-style), cross-attention stays local (text keys are replicated);
  * ``tensor``: attention heads and the feed-forward's hidden width (Megatron-style column / row parallel linears).

Logical names are what the model code and the parameter table speak: activations ``batch``, ``tokens``, ``heads``,
``mlp``; parameters ``embed`` (the model width), ``heads``, ``mlp``, ``vocab``, ``layers``. ``DEFAULT_RULES`` maps
them to mesh axes; a new layout is a new rules tuple, not new model code. ``PARAM_TABLE`` gives each parameter's
logical axes by path. A dimension a mesh axis does not divide is left replicated on that axis (tiny odd configs
shard what they can), and activations the same way (context-parallel attention pads its tokens itself).

Several hosts: call ``jax.distributed.initialize()`` first in every process; ``jax.devices()`` is then every host's
devices and the mesh spans them (README, "Several GPUs, several hosts").
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "context", "tensor")
Rules = tuple[tuple[str, tuple[str, ...]], ...]

# logical name -> mesh axes (in order; a dimension is sharded over their product).
DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("tokens", ("context", "fsdp")),  # fsdp too where the batch cannot take it (a CFG pair over fsdp=8)
    ("embed", ("fsdp",)),
    ("heads", ("tensor",)),
    ("mlp", ("tensor",)),
    ("vocab", ()),
    ("layers", ()),
    ("replicated", ()),  # small params every device keeps whole
)

# (regex over the "/"-joined param path, logical axes of one layer's param). Scanned blocks (``SCANNED``) get a
# leading "layers" axis. The first match wins; a param nothing matches shards its largest dimension over "embed"
# and its next over "mlp".
PARAM_TABLE: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    # LTX transformer blocks: q/k/v column-parallel, out row-parallel; feed-forward up / down the same way.
    (r"attn\d/to_[qkv]/kernel$", ("embed", "heads")),
    (r"attn\d/to_[qkv]/(bias|kernel_scale)$", ("heads",)),
    (r"attn\d/norm_[qk]/weight$", ("heads",)),
    (r"attn\d/to_out_0/kernel$", ("heads", "embed")),
    (r"ff/net_0_proj/kernel$", ("embed", "mlp")),
    (r"ff/net_0_proj/(bias|kernel_scale)$", ("mlp",)),
    (r"ff/net_2/kernel$", ("mlp", "embed")),
    (r"transformer_blocks/scale_shift_table$", ("replicated", "replicated")),  # 6 x D a layer, mixed with temb
    # T5 encoder blocks.
    (r"SelfAttention/[qkv]/kernel$", ("embed", "heads")),
    (r"SelfAttention/o/kernel$", ("heads", "embed")),
    (r"DenseReluDense/wi(_\d)?/kernel$", ("embed", "mlp")),
    (r"DenseReluDense/wo/kernel$", ("mlp", "embed")),
    (r"shared/embedding$", ("vocab", "embed")),
    (r"relative_attention_bias$", (None, "heads")),
)
SCANNED = ("transformer_blocks", "block")


def parse_mesh_spec(spec: str) -> dict[str, int]:
    """``"data=2,context=4"`` -> {"data": 2, "context": 4}, every name one of ``MESH_AXES``."""
    sizes: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in MESH_AXES or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"mesh {spec!r}: {part!r} is not AXIS=SIZE with AXIS one of {', '.join(MESH_AXES)} and "
                             "SIZE >= 1, e.g. 'data=2,context=4'.")
        if name in sizes:
            raise ValueError(f"mesh {spec!r}: {name} is given twice.")
        sizes[name] = int(value)
    if not sizes:
        raise ValueError(f"mesh {spec!r} names no axis; e.g. 'data=2,context=4'.")
    return sizes


def make_mesh(spec: str | Mapping[str, int], devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh with the four ``MESH_AXES`` (the unnamed ones of size 1) over ``devices`` (default: all of them,
    every host's after ``jax.distributed.initialize()``); the sizes must multiply to the device count."""
    sizes = parse_mesh_spec(spec) if isinstance(spec, str) else dict(spec)
    devices = list(jax.devices() if devices is None else devices)
    shape = tuple(sizes.get(axis, 1) for axis in MESH_AXES)
    if math.prod(shape) != len(devices):
        described = ",".join(f"{a}={s}" for a, s in zip(MESH_AXES, shape) if s > 1) or "1 device"
        raise ValueError(f"mesh {described} needs {math.prod(shape)} devices but {len(devices)} are visible "
                         f"({devices[0].platform}); make the sizes multiply to {len(devices)}.")
    try:
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(shape, devices=devices)  # the interconnect's topology, where known
    except Exception:  # noqa: BLE001 - any layout is correct; the plain one is used where the topology is unknown
        grid = np.asarray(devices, dtype=object).reshape(shape)
    return Mesh(grid, MESH_AXES)


@dataclasses.dataclass(frozen=True)
class ShardingPlan:
    """A mesh and the rules that place logical axes on it; hashable, so modules hold it as a field.

    Attributes:
      mesh: a ``jax.sharding.Mesh`` whose axis names are among ``MESH_AXES``.
      rules: logical name -> mesh axes (``DEFAULT_RULES``).
    """

    mesh: Mesh
    rules: Rules = DEFAULT_RULES

    def __post_init__(self):
        unknown = [a for a in self.mesh.axis_names if a not in MESH_AXES]
        if unknown:
            raise ValueError(f"mesh axes {unknown} are not among {MESH_AXES}; name them so (ltx_jax.sharding).")

    @classmethod
    def create(cls, mesh: "str | Mesh | ShardingPlan | None", rules: Rules = DEFAULT_RULES) -> "ShardingPlan | None":
        """From a spec string (``make_mesh``), a Mesh or a plan; None stays None (one device, nothing sharded)."""
        if mesh is None or isinstance(mesh, ShardingPlan):
            return mesh
        return cls(mesh if isinstance(mesh, Mesh) else make_mesh(mesh), rules)

    def size(self, axis: str) -> int:
        """Devices along a mesh axis (1 for an axis the mesh does not have)."""
        return int(self.mesh.shape.get(axis, 1))

    def mesh_axes(self, logical: str | None) -> tuple[str, ...]:
        """The mesh axes (of size > 1) a logical name is sharded over."""
        if logical is None:
            return ()
        axes = dict(self.rules).get(logical)
        if axes is None:
            raise KeyError(f"logical axis {logical!r} has no rule; rules name {[name for name, _ in self.rules]}.")
        return tuple(a for a in axes if self.size(a) > 1)

    def spec(self, logical: Sequence[str | None], shape: Sequence[int] | None = None) -> PartitionSpec:
        """The PartitionSpec of an array with these logical axes. With ``shape`` (parameters, arrays placed with
        ``device_put``), mesh axes that do not divide their dimension are dropped, last first."""
        entries, used = [], set()
        for i, name in enumerate(logical):
            axes = [a for a in self.mesh_axes(name) if a not in used]
            if shape is not None:
                while axes and shape[i] % math.prod(self.size(a) for a in axes):
                    axes.pop()
            used.update(axes)
            entries.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
        return PartitionSpec(*entries)

    def sharding(self, logical: Sequence[str | None], shape: Sequence[int] | None = None) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec(logical, shape))

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def constrain(self, x: jax.Array, *logical: str | None) -> jax.Array:
        """``with_sharding_constraint`` of an activation (inside jit) to its logical axes, leaving a dimension
        unsharded on the mesh axes that do not divide it (a batch of 3 rows over data=2 stays whole on ``data``)."""
        return jax.lax.with_sharding_constraint(x, self.sharding(logical, x.shape))

    def spread(self, x: jax.Array) -> jax.Array:
        """``x`` [devices, ...] constrained to one slice per device (over every mesh axis; VAE tiles)."""
        axes = tuple(a for a in self.mesh.axis_names if self.size(a) > 1)
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, PartitionSpec(axes or None)))

    def batch_axes(self, batch: int) -> tuple[str, ...]:
        """The "batch" mesh axes whose product divides ``batch`` (for ``shard_map``, which needs even shards)."""
        axes = list(self.mesh_axes("batch"))
        while axes and batch % math.prod(self.size(a) for a in axes):
            axes.pop()
        return tuple(axes)

    # ------------------------------------------------------------------------------------------ parameters

    def param_logical_axes(self, path: Sequence[str], ndim: int) -> tuple[str | None, ...]:
        """Logical axes of the param at ``path`` (a tuple of names) with ``ndim`` dimensions."""
        joined = "/".join(path)
        lead = ("layers",) if path[0] in SCANNED else ()
        for pattern, axes in PARAM_TABLE:
            if re.search(pattern, joined) and len(lead) + len(axes) == ndim:
                return lead + axes
        return lead + (None,) * (ndim - len(lead))  # resolved to the largest dimension in ``param_spec``

    def param_spec(self, path: Sequence[str], shape: Sequence[int]) -> PartitionSpec:
        logical = list(self.param_logical_axes(path, len(shape)))
        if all(a is None or a == "layers" for a in logical) and None in logical:
            # The default: the largest dimension over "embed" (FSDP), the next over "mlp" (tensor).
            free = sorted((i for i, a in enumerate(logical) if a is None), key=lambda i: -shape[i])
            for i, name in zip(free, ("embed", "mlp")):
                logical[i] = name
        return self.spec(logical, shape)

    def param_shardings(self, params: Any) -> Any:
        """The NamedSharding of every leaf of a param tree (arrays or ``jax.eval_shape`` structs)."""
        def one(path, leaf):
            names = tuple(getattr(k, "key", getattr(k, "name", str(k))) for k in path)
            return NamedSharding(self.mesh, self.param_spec(names, leaf.shape))

        return jax.tree_util.tree_map_with_path(one, params)

    def place(self, params: Any) -> Any:
        """A param tree moved onto its shardings (already placed leaves are resharded)."""
        return jax.tree_util.tree_map(jax.device_put, params, self.param_shardings(params))


def shard_bytes(tree: Any) -> int:
    """Bytes of a tree's arrays held by one device (the largest per-device total): what sharding saves."""
    per_device: dict[Any, int] = {}
    for leaf in jax.tree_util.tree_leaves(tree):
        for shard in leaf.addressable_shards:
            per_device[shard.device] = per_device.get(shard.device, 0) + shard.data.size * shard.data.dtype.itemsize
    return max(per_device.values()) if per_device else 0

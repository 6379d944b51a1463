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

Logical names are what the model code speaks: activations ``batch``, ``tokens``, ``heads``, ``mlp``; parameters
``embed`` (the model width), ``heads``, ``mlp``, ``vocab``, ``layers``, ``channels`` (the VAE's and the upsampler's),
``replicated``. Each parameter declares its logical axes where it is created (``nn.with_logical_partitioning``, or
``layers.dense(..., axes)``; ``nn.scan`` adds the leading ``layers``), and ``param_axes(module)`` reads them back;
``DEFAULT_RULES`` maps the names to mesh axes, so a new layout is a new rules tuple, not new model code, and a new
model family declares its own axes instead of needing a table. A dimension a mesh axis does not divide is left
replicated on that axis (tiny odd configs shard what they can), and activations the same way (context-parallel
attention pads its tokens itself).

    axes = param_axes(module)                 # {"proj_in": {"kernel": ("mlp", "embed"), ...}, ...}, like the params
    params = plan.place(params, axes)         # or plan.place(params, module); plan.param_shardings(shapes, axes)

Several processes: call ``ltx_jax.distributed.initialize()`` (``jax.distributed.initialize`` with the environment
``ltx_jax.launch`` or a cluster sets) first in every process; ``jax.devices()`` is then every process's devices and
the mesh spans them (README, "Several processes").
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "context", "tensor")
Rules = tuple[tuple[str, tuple[str, ...]], ...]

# logical name -> mesh axes (in order; a dimension is sharded over their product).
DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("tokens", ("context", "fsdp")),  # fsdp too where the batch cannot take it (a CFG pair over fsdp=8)
    ("embed", ("fsdp",)),
    ("heads", ("tensor",)),
    ("mlp", ("tensor",)),  # the feed-forward's hidden width, and the far side of the few [in, D] / [D, out] linears
    ("vocab", ()),
    ("layers", ()),
    ("channels", ()),  # the VAE's and the upsampler's widths: each device decodes whole tiles, so keeps them whole
    ("replicated", ()),  # small params every device keeps whole
)

Axes = tuple[str, ...]  # one logical name per dimension of a param


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

    def one_slice_per_device(self, x: jax.Array) -> jax.Array:
        """``x`` [devices, ...] constrained so that device i holds slice ``x[i]`` (over every mesh axis; VAE tiles)."""
        axes = tuple(a for a in self.mesh.axis_names if self.size(a) > 1)
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, PartitionSpec(axes or None)))

    def batch_axes(self, batch: int) -> tuple[str, ...]:
        """The "batch" mesh axes whose product divides ``batch`` (for ``shard_map``, which needs even shards)."""
        axes = list(self.mesh_axes("batch"))
        while axes and batch % math.prod(self.size(a) for a in axes):
            axes.pop()
        return tuple(axes)

    # ------------------------------------------------------------------------------------------ parameters

    def param_shardings(self, params: Any, axes: Any) -> Any:
        """The NamedSharding of every leaf of a param tree.

        Args:
          params: a param tree (arrays, or ``jax.ShapeDtypeStruct`` from ``abstract_params``), or any tree of them
            such as ``{"params": ..., "lora": ...}``.
          axes: their logical axes: a tree nested as ``params`` with a tuple of names per leaf, one per dimension
            (``("layers", "embed", "heads")`` for a scanned [L, D, H*K] kernel), as ``param_axes(module)`` returns;
            or the module itself. Entries that ``params`` lacks are ignored.
        Returns:
          A tree like ``params`` of ``NamedSharding``. A leaf without declared axes, or whose names do not match its
          dimensions one to one, is an error that names its path.
        """
        declared = flat_axes(param_axes(axes) if isinstance(axes, nn.Module) else axes)

        def one(path, leaf):
            names = _path_names(path)
            logical = declared.get(names)
            if logical is None:
                raise ValueError(f"param {'/'.join(names)} {tuple(leaf.shape)} has no declared logical axes; create it "
                                 "with nn.with_logical_partitioning(init, names) (ltx_jax.sharding).")
            if len(logical) != len(leaf.shape):
                raise ValueError(f"param {'/'.join(names)} has shape {tuple(leaf.shape)} but logical axes {logical}: "
                                 "one name per dimension.")
            return self.sharding(logical, leaf.shape)

        return jax.tree_util.tree_map_with_path(one, params)

    def place(self, params: Any, axes: Any) -> Any:
        """``params`` moved onto their shardings (``param_shardings(params, axes)``; placed leaves are resharded)."""
        return jax.tree_util.tree_map(jax.device_put, params, self.param_shardings(params, axes))


# ---------------------------------------------------------------------------------------------- logical axes


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _is_axes(x) -> bool:
    return isinstance(x, tuple) and all(isinstance(n, str) for n in x)


def flat_axes(axes: Any) -> dict[tuple[str, ...], Axes]:
    """A logical-axes tree (``param_axes``) -> {param path (a tuple of names): its axes}."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(axes, is_leaf=_is_axes)
    return {_path_names(path): tuple(names) for path, names in leaves}


def logical_axes(boxed: Any) -> dict:
    """The logical axes of an ``init`` tree whose params are ``nn.LogicallyPartitioned`` boxes (made by
    ``nn.with_logical_partitioning``): a tree like it with a tuple of names per param, one per dimension. A param
    created without names, or with a name count that is not its rank, is an error naming its path."""
    def one(path, leaf):
        where = "/".join(_path_names(path))
        if not isinstance(leaf, nn.LogicallyPartitioned):
            raise ValueError(f"param {where} {tuple(getattr(leaf, 'shape', ()))} declares no logical axes; create it "
                             "with nn.with_logical_partitioning(init, names) (ltx_jax.sharding).")
        names, shape = tuple(leaf.names), tuple(leaf.value.shape)
        if len(names) != len(shape) or not _is_axes(names):
            raise ValueError(f"param {where} has shape {shape} but declares logical axes {names}: one name (a str) "
                             "per dimension.")
        return names

    return jax.tree_util.tree_map_with_path(one, boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def param_axes(module: nn.Module) -> dict:
    """The logical axes of every param of ``module``, as each declares them where it is created.

    ``module``: a model with ``init_inputs()`` (the transformer, T5, the VAE or its decoder, the latent upsampler);
    its ``init`` runs under ``jax.eval_shape`` (no memory), once per distinct module. Returns a tree nested like its
    params with a tuple of logical names per param, one per dimension, e.g. ``{"transformer_blocks": {"attn1":
    {"to_q": {"kernel": ("layers", "embed", "heads"), ...}}}, ...}``.
    """
    try:
        hash(module)
    except TypeError:  # a field holding a list: not cached
        flat = _declared_axes.__wrapped__(module)
    else:
        flat = _declared_axes(module)
    tree: dict = {}
    for path, names in flat:
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = names
    return tree


@functools.lru_cache(maxsize=32)
def _declared_axes(module) -> tuple[tuple[tuple[str, ...], Axes], ...]:
    args, kwargs = module.init_inputs()
    boxed = jax.eval_shape(lambda key: module.init(key, *args, **kwargs)["params"], jax.random.PRNGKey(0))
    return tuple(flat_axes(logical_axes(boxed)).items())


def shard_bytes(tree: Any) -> int:
    """Bytes of a tree's arrays held by one device (the largest per-device total): what sharding saves."""
    per_device: dict[Any, int] = {}
    for leaf in jax.tree_util.tree_leaves(tree):
        for shard in leaf.addressable_shards:
            per_device[shard.device] = per_device.get(shard.device, 0) + shard.data.size * shard.data.dtype.itemsize
    return max(per_device.values()) if per_device else 0

"""Creating a model's params, for real or as shapes only, and their logical axes: the same functions for every model.

Each model module says how to call it once (``init_inputs()``: tiny example arguments); from that,

    params = init_params(module, key)          # random params, made under jit on the default device in param_dtype
    shapes = abstract_params(module)           # jax.ShapeDtypeStruct tree from eval_shape (no memory)
    count_params(shapes)                       # number of parameters
    axes = param_axes(module)                  # logical axes of each param (ltx_jax.sharding), the same nesting

Each param is created inside an ``nn.LogicallyPartitioned`` box naming its axes; the trees these functions return
are plain arrays (the boxes are dropped), the same names and structure as the checkpoints.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import numpy as np

from ltx_jax import interrupts
from ltx_jax.sharding import param_axes  # noqa: F401 - re-exported beside init_params and abstract_params


def _init(module, key):
    args, kwargs = module.init_inputs()
    return nn.meta.unbox(module.init(key, *args, **kwargs)["params"])


# One compiled init per distinct module (modules are hashable by value): a second pipeline of the same configs reuses
# it instead of compiling again (the tiny VAE's init takes 12 s to compile on a CPU).
_jitted_init = jax.jit(_init, static_argnums=0)


def init_params(module, key: jax.Array):
    """Random params of ``module`` (its ``init`` distributions), created under jit on the default device, directly
    in ``param_dtype`` (a bf16 model never passes through a float32 host copy)."""
    interrupts.check("loading")  # the command line's Ctrl-C / SIGTERM, between two models (tiny-random)
    try:
        hash(module)
    except TypeError:  # a field that is not hashable: compiled for this call only
        return jax.jit(functools.partial(_init, module))(key)
    return _jitted_init(module, key)


def abstract_params(module):
    """Param shapes and dtypes of ``module`` from ``jax.eval_shape`` of ``init`` (nothing is allocated)."""
    return jax.eval_shape(functools.partial(_init, module), jax.random.PRNGKey(0))


def as_variables(params) -> dict:
    """The variables ``apply`` takes: a param tree becomes {"params": tree}; variables already ({"params": ...,
    "lora": ...}, what a pipeline passes while LoRA adapters run unfused) pass through."""
    return params if "params" in params else {"params": params}


def count_params(params) -> int:
    """Total number of parameters in a (possibly abstract) param tree."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))

"""FLOPs of a program whose denoising loop is a ``lax.while_loop``: ``programs.matmul_flops`` counts a while loop's
body once (its trip count is not in the program); a ``Program`` that knows the count says so with ``flops=``:

    generate = Program(_program, "denoising and decoding", static=("plan",), params=("variables",),
                       flops=loop_counted(_program, lambda inputs, **_: inputs["timesteps"].shape[0]))

so that ``check`` (a dry run) reports the whole run's work, every step counted.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax

from ltx_jax.programs import matmul_flops


def flops_with_trips(jaxpr: Any, trips: int) -> float:
    """``matmul_flops`` of a (closed) jaxpr with each of its top-level while loops run ``trips`` times instead of
    once (loops nested deeper, or inside other calls, keep ``matmul_flops``' count)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    extra = sum(matmul_flops(eqn.params["body_jaxpr"]) for eqn in jaxpr.eqns if eqn.primitive.name == "while")
    return matmul_flops(jaxpr) + (trips - 1) * extra


def loop_counted(fn: Callable, trips: Callable[..., int], static: tuple[str, ...] = ("plan",)
                 ) -> Callable[..., float]:
    """A ``Program``'s ``flops=`` for ``fn``: it traces ``fn`` for the program's arguments (``static`` ones bound as
    they are, the others abstract) and counts its top-level while loops ``trips(**arguments)`` times (the denoising
    loop's steps: ``len(timesteps)``, which the program's inputs hold as a shape)."""

    def flops(**arguments) -> float:
        bound = {k: v for k, v in arguments.items() if k in static}
        names = [k for k in arguments if k not in static]
        jaxpr = jax.make_jaxpr(lambda *values: functools.partial(fn, **bound)(**dict(zip(names, values))))(
            *(arguments[k] for k in names))
        return flops_with_trips(jaxpr, int(trips(**arguments)))

    return flops

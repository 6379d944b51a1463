"""Packages whose public names are imported on first use (``ltx_jax``, ``ltx_jax.training``): importing the package
costs nothing until a name is asked for, so the command lines answer ``--help`` before JAX loads."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``, whose ``exports`` map each public name to
    the module that defines it; a name once loaded is stored in ``namespace`` (the package's globals)."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__():
        return sorted(exports) + [n for n in namespace.get("__all__", ()) if n not in exports]

    return __getattr__, __dir__

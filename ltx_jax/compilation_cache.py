"""JAX's persistent compilation cache: compiled programs kept on disk, so a second process with the same shapes
skips compilation (the first call of a full-size pipeline spends most of its time compiling).

This is a process-wide JAX setting (``jax.config``), so nothing turns it on behind the caller's back: the command line
does (``--compilation_cache``, on by default), a library user calls ``enable_compilation_cache()`` once, or passes
``compilation_cache=True`` to a pipeline's ``from_pretrained``.
"""

from __future__ import annotations

import os

import jax

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ltx_jax", "jax_compilation_cache")


def enable_compilation_cache(cache_dir: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache in ``cache_dir`` (default ``$LTX_JAX_CACHE_DIR``, else
    ``DEFAULT_CACHE_DIR``), for every program compiled in this process from now on; returns the folder."""
    cache_dir = cache_dir or os.environ.get("LTX_JAX_CACHE_DIR", DEFAULT_CACHE_DIR)
    os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache_dir

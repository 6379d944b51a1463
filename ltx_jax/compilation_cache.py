"""JAX's persistent compilation cache: compiled programs kept on disk, so a second process with the same shapes
skips compilation (the first call of a full-size pipeline spends most of its time compiling).

This is a process-wide JAX setting (``jax.config``), so nothing turns it on behind the caller's back: the command line
does (``--compilation_cache``, on by default), a library user calls ``enable_compilation_cache()`` once, or passes
``compilation_cache=True`` to a pipeline's ``from_pretrained``.

Beside JAX's whole compiled programs, the cache folder holds XLA's own GPU caches (``XLA_CACHES``), which help where
a program is new but its pieces are not: a video of another length or size whose decode has the same tile shapes,
another pipeline with the same convolutions. A program that calls the host (the denoising loop's per-step callback
for progress and stop requests) is never written to the cache: JAX refuses host callbacks there.
"""

from __future__ import annotations

import os

import jax

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ltx_jax", "jax_compilation_cache")

# XLA's caches that jax keeps in subfolders of the cache folder (jax's ``jax_persistent_cache_enable_xla_caches``,
# jax 0.4.32 and later; a comma-separated list, "all", or "" for none). Here: XLA's GPU autotuning results, one file
# per autotuned instruction (the Triton / cuBLAS / cuDNN choice XLA timed for a fusion, a GEMM, a convolution), in
# ``<cache_dir>/xla_gpu_per_fusion_autotune_cache_dir``: a new program reuses them instead of timing the candidates
# again (jax's own default, pinned here). Not "all": that adds XLA's compiled-kernel cache
# (``xla_gpu_kernel_cache_file``), which jax leaves off by default (it switches on XLA's split LLVM module
# compilation, and has clashed with the persistent cache's kernel names).
XLA_CACHES = "xla_gpu_per_fusion_autotune_cache_dir"


def enable_compilation_cache(cache_dir: str | None = None, xla_caches: str | None = XLA_CACHES) -> str:
    """Turns on JAX's persistent compilation cache in ``cache_dir`` (default ``$LTX_JAX_CACHE_DIR``, else
    ``DEFAULT_CACHE_DIR``), for every program compiled in this process from now on; returns the folder.

    Every program is kept, however short its compile. ``xla_caches``: which of XLA's own caches live beside it, in
    subfolders (``XLA_CACHES``: the GPU autotuning results; "all" adds XLA's compiled-kernel cache; None leaves jax's
    setting as it is). Set only where the installed jax has the option (``jax_persistent_cache_enable_xla_caches``).
    """
    cache_dir = cache_dir or os.environ.get("LTX_JAX_CACHE_DIR", DEFAULT_CACHE_DIR)
    os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if xla_caches is not None and hasattr(jax.config, "jax_persistent_cache_enable_xla_caches"):
        jax.config.update("jax_persistent_cache_enable_xla_caches", xla_caches)
    return cache_dir


def persistent_cache_on() -> bool:
    """Whether this process keeps compiled programs on disk (``jax_compilation_cache_dir`` is set): the pipelines
    then step the denoising loop from the host, so that a second process reads the loop from the cache
    (``sampling.loop.sample_stepwise``)."""
    return bool(jax.config.jax_compilation_cache_dir)

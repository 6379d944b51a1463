"""ltx_jax.compilation_cache: what enable_compilation_cache sets in jax.config, XLA's autotune cache beside the
compiled programs included, and that it still works on a jax without that option. The settings are process-wide:
each test puts them back as they were."""

from __future__ import annotations

import os
import types

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from ltx_jax import compilation_cache
from ltx_jax.compilation_cache import XLA_CACHES, enable_compilation_cache

SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes", "jax_persistent_cache_enable_xla_caches")


@pytest.fixture
def restored_settings():
    saved = {name: getattr(jax.config, name) for name in SETTINGS}
    try:
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)
        jax_cache.reset_cache()  # jax opens the cache folder again (or not) at the next compile


def test_enable_compilation_cache_keeps_xla_autotune_results_beside_the_programs(tmp_path, restored_settings):
    assert XLA_CACHES == "xla_gpu_per_fusion_autotune_cache_dir"
    jax.config.update("jax_persistent_cache_enable_xla_caches", "all")  # something else first: ours replaces it
    folder = enable_compilation_cache(str(tmp_path / "cache"))
    assert folder == str(tmp_path / "cache") and os.path.isdir(folder)
    assert jax.config.jax_compilation_cache_dir == folder
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == 0
    assert jax.config.jax_persistent_cache_enable_xla_caches == XLA_CACHES

    enable_compilation_cache(folder, xla_caches="all")  # the caller's choice
    assert jax.config.jax_persistent_cache_enable_xla_caches == "all"
    enable_compilation_cache(folder, xla_caches=None)  # None: jax's setting left as it is
    assert jax.config.jax_persistent_cache_enable_xla_caches == "all"


def test_enable_compilation_cache_on_a_jax_without_xla_caches(tmp_path, monkeypatch):
    """An older jax (before 0.4.32) has no ``jax_persistent_cache_enable_xla_caches``: the cache is still turned
    on, the option is not asked for."""
    updates = {}

    class OldConfig:
        def update(self, name, value):
            if name == "jax_persistent_cache_enable_xla_caches":
                raise AttributeError(name)
            updates[name] = value

    monkeypatch.setattr(compilation_cache, "jax", types.SimpleNamespace(config=OldConfig()))
    folder = enable_compilation_cache(str(tmp_path / "old"))
    assert updates == {"jax_compilation_cache_dir": folder, "jax_persistent_cache_min_compile_time_secs": 0.0,
                       "jax_persistent_cache_min_entry_size_bytes": 0}

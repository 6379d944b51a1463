"""Benchmarks of ltx_jax against diffusers, run from the repository root as modules: ``python -m benchmarks.bench_vae``,
``python -m benchmarks.run_all`` (every check and timing in one command)."""

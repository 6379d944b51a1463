"""The package's structure: lazy imports and one layering, one dense factory, one init/abstract pair per model."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from conftest import rel_err

from ltx_jax.models import abstract_params, count_params, init_params
from ltx_jax.models.latent_upsampler import LatentUpsampler
from ltx_jax.models.t5 import T5EncoderModel
from ltx_jax.models.transformer import LTXVideoTransformer3DModel
from ltx_jax.models.vae import AutoencoderKLLTXVideo, Decoder3d
from ltx_jax.tiny_random import TINY_T5, TINY_TRANSFORMER, TINY_UPSAMPLER, TINY_VAE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bottom to top; a module may import only from its own layer or the ones below.
LAYERS = [
    ("ltx_jax.configs", "ltx_jax.configs_ltx2", "ltx_jax.configs_ltx2_text", "ltx_jax.configs_gemma",
     "ltx_jax.scheduler", "ltx_jax.releases", "ltx_jax.releases_ltx2", "ltx_jax.sharding", "ltx_jax.programs",
     "ltx_jax.files", "ltx_jax.ffmpeg", "ltx_jax.interrupts", "ltx_jax.command_line", "ltx_jax.validation",
     "ltx_jax.requests", "ltx_jax.lazy", "ltx_jax.compilation_cache", "ltx_jax.scheduler_ancestral"),
    ("ltx_jax.models",),
    ("weight_conversion",),
    ("ltx_jax.text_encoding", "ltx_jax.text_encoding_ltx2", "ltx_jax.sampling", "ltx_jax.video",
     "ltx_jax.video_writer"),
    ("ltx_jax.pipelines", "ltx_jax.tiny_random", "ltx_jax.tiny_random_ltx2"),
    ("ltx_jax.training",),
    ("ltx_jax.__main__", "ltx_jax.generate_flags", "ltx_jax.generate_ltx2", "ltx_jax.two_stage_ltx2", "ltx_jax.check",
     "ltx_jax.check_ltx2", "ltx_jax.compare"),
]


def _layer(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def _imports(path: str) -> list[str]:
    tree = ast.parse(open(path).read())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _sources():
    for package in ("ltx_jax", "weight_conversion"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield path, rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def test_nothing_imports_upward():
    """configs -> models -> weight_conversion -> sampling / text encoding -> pipelines -> CLI (imports inside
    functions included: the layering is about what depends on what)."""
    upward = []
    for path, module in _sources():
        own = _layer(module)
        if own is None:
            continue
        for name in _imports(path):
            other = _layer(name)
            if other is not None and other > own:
                upward.append(f"{module} imports {name}")
    assert not upward, upward


def test_import_weight_conversion_does_not_import_the_pipelines():
    code = ("import sys, weight_conversion; "
            "print(sorted(m for m in sys.modules if m.startswith(('ltx_jax.pipelines', 'ltx_jax.sampling', "
            "'ltx_jax.text_encoding'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    lazy = subprocess.run([sys.executable, "-c", "import sys, ltx_jax; assert 'ltx_jax.pipelines' not in sys.modules; "
                           "from ltx_jax import LTXPipeline; print(LTXPipeline.__module__)"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert lazy.returncode == 0 and lazy.stdout.strip() == "ltx_jax.pipelines.text_to_video", lazy.stderr[-2000:]


DEFERRAL_MARKS = ("deferred", "cycle")


def _imports_in_functions(path: str) -> list[tuple[int, int]]:
    """(first line, last line) of every import statement inside a function body, in line order."""
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child.lineno, child.end_lineno))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(open(path).read()), False)
    return sorted(found)


def test_imports_inside_functions_say_why():
    """Imports go at the top of the module; one inside a function breaks an import cycle or defers a heavy optional
    dependency (torch, diffusers, imageio, PIL, orbax, transformers, or JAX until the command line's flags are
    checked), and says so: a comment with "deferred" or "cycle" on its line or the line above. A run of import lines
    (blank lines between them allowed) is covered by the comment above its first line."""
    offenders = []
    for path, _ in _sources():
        lines = open(path).read().splitlines()
        covered_until = -1  # last line of the latest import covered by a comment
        for first, last in _imports_in_functions(path):
            comments = [line.partition("#")[2] for line in lines[max(first - 2, 0):first]]
            said = any(mark in comment for comment in comments for mark in DEFERRAL_MARKS)
            if said or (0 < covered_until < first and not "".join(lines[covered_until:first - 1]).strip()):
                covered_until = last
            else:
                offenders.append(f"{os.path.relpath(path, ROOT)}:{first}: {lines[first - 1].strip()}")
    files = sorted({o.split(":")[0] for o in offenders})
    assert not offenders, (f"{len(offenders)} in-function imports without a reason comment in {len(files)} files "
                           f"({', '.join(files)}):\n" + "\n".join(offenders))


def test_the_command_lines_answer_help_and_flag_errors_before_jax_loads():
    """What the command lines' deferred imports (``# deferred: jax loads only after the flags are checked``) are for:
    --help and a flag of the wrong kind answer without importing JAX, for generate / check and preprocess / train."""
    code = ("import contextlib, io, sys\n"
            "from ltx_jax.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    codes = [main(['ltx_jax', *a]) for a in (['--help'], ['generate', '--height', 'x'],\n"
            "             ['train', '--help'], ['preprocess', '--help'], ['train', '--steps', 'x'])]\n"
            "print(codes, sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[0, 2, 0, 0, 2] []", out.stdout


def test_every_linear_comes_from_the_dense_factory():
    offenders = [module for path, module in _sources()
                 if module.startswith("ltx_jax.models") and "nn.Dense" in open(path).read()]
    assert not offenders, offenders


@pytest.mark.parametrize("module", [
    LTXVideoTransformer3DModel(TINY_TRANSFORMER, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16),
    T5EncoderModel(TINY_T5),
    AutoencoderKLLTXVideo(TINY_VAE),
    Decoder3d(TINY_VAE, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16),
    LatentUpsampler(TINY_UPSAMPLER),
], ids=["transformer", "t5", "vae", "vae_decoder", "latent_upsampler"])
def test_init_params_and_abstract_params_agree(module):
    params = init_params(module, jax.random.PRNGKey(0))
    abstract = abstract_params(module)
    shapes = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), params)
    assert shapes == jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), abstract)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params)} == {jnp.dtype(module.param_dtype)}
    assert count_params(params) == count_params(abstract) > 0


def test_remat_policy():
    module = LTXVideoTransformer3DModel(TINY_TRANSFORMER)
    params = init_params(module, jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 6, TINY_TRANSFORMER.in_channels))
    text = jax.random.normal(jax.random.PRNGKey(3), (1, 5, TINY_TRANSFORMER.caption_channels))

    def loss(m, p):
        return jnp.sum(m.apply({"params": p}, x, text, jnp.array([500.0]), None, num_frames=1, height=2, width=3) ** 2)

    ref = jax.grad(lambda p: loss(module, p))(params)
    for policy in ("dots_with_no_batch_dims_saveable", "nothing_saveable"):
        remat = module.clone(remat=True, remat_policy=policy)
        grads = jax.jit(jax.grad(lambda p: loss(remat, p)))(params)
        errors = jax.tree_util.tree_leaves(jax.tree_util.tree_map(rel_err, grads, ref))
        assert max(errors) <= 1e-5, (policy, max(errors))  # recomputation may reorder float sums, nothing more
    with pytest.raises(ValueError, match="remat_policy='save_everything' is not a jax.checkpoint_policies policy"):
        init_params(module.clone(remat=True, remat_policy="save_everything"), jax.random.PRNGKey(0))


def test_ruff_is_clean():
    """The project's lint rules (pyproject.toml's [tool.ruff]) over every file."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", ROOT], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]

"""``python -m benchmarks.run_all``: one command that checks the GPU-only paths and times every component against
diffusers, in one run. The manual (sections, isolation, budget, outputs) is the docstring of cli.py and ``--help``.

One concern a module:

  sizes.py       ``Sizes``, CPU_SIZES / GPU_SIZES, the prompts, the configs and presets a size names
  builders.py    every model the sections build through the ltx_jax / weight_conversion API
  context.py     ``Context`` (what a section gets) and the timing / comparison helpers
  hardware.py    device and torch memory, XLA analyses, cuDNN calls and convolution shapes in HLO, errors, the
                 environment
  results.py     JSON on disk and the ``Recorder`` of one section
  sections/      one module per section; ``SECTIONS`` in run order
  first_call.py  the compile section's child process: one pipeline call, its first call split by JAX's compile events
  runner.py      a section in this process or in a child process, and the ``Run`` over all of them
  goals.py       the performance goals (one list), each met, missed or not measured from a run's records
  report.py      derived figures, the markdown table and the summary
  cli.py         ``parse_args`` and ``main``
"""

import os

# Must be set before JAX initialises a GPU backend: JAX and torch share the card within a section (JAX would
# otherwise take 75% of it up front), and large decodes need more than JAX's default 75% cap.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from .builders import init_params, init_vae_decoder, rng_key  # noqa: E402
from .cli import main, parse_args  # noqa: E402
from .context import Context  # noqa: E402
from .hardware import cudnn_attention_calls, cudnn_calls  # noqa: E402
from .report import markdown, summary_text  # noqa: E402
from .results import SCHEMA, Recorder  # noqa: E402
from .runner import Run, run_section  # noqa: E402
from .sections import SECTIONS  # noqa: E402
from .sizes import (CPU_SIZES, GPU_SIZES, SIZES, Sizes, resolve_sizes, t5_config,  # noqa: E402
                    transformer_config, vae_config)

__all__ = [
    "CPU_SIZES", "GPU_SIZES", "SCHEMA", "SECTIONS", "SIZES", "Context", "Recorder", "Run", "Sizes",
    "cudnn_attention_calls", "cudnn_calls", "init_params", "init_vae_decoder", "main", "markdown", "parse_args",
    "resolve_sizes", "rng_key", "run_section", "summary_text", "t5_config", "transformer_config", "vae_config",
]

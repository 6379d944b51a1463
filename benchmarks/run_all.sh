#!/usr/bin/env bash
# One command on a CUDA machine: checks the GPU-only paths and times every component against diffusers.
#
#   benchmarks/run_all.sh [--wheels DIR] [run_all arguments...]
#
# --wheels DIR  installs every wheel file in DIR first (offline: --no-index --no-deps), e.g. diffusers and the
#               pure-Python packages it needs that the machine lacks (Pillow, importlib_metadata). Without
#               diffusers the run still completes; the diffusers comparisons are marked skipped in the JSON.
# Everything else goes to python -m benchmarks.run_all (--out, --results-md, --sections, --no-torch, --budget-s, ...).
# The package does not need to be installed: the repository root is put on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--wheels" ]]; then
  shopt -s nullglob
  wheels=("${2:?--wheels needs a folder}"/*.whl)
  shift 2
  if (( ${#wheels[@]} )); then
    python3 -m pip install --quiet --no-index --no-deps "${wheels[@]}"
  fi
fi

# JAX must not take 75% of the card up front (torch runs beside it in a section), and may grow to 92%.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m benchmarks.run_all "$@"

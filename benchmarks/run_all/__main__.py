"""``python -m benchmarks.run_all [ARGS]`` (from the repository root): runs ``cli.main``."""

import sys

from benchmarks.run_all.cli import main

sys.exit(main())

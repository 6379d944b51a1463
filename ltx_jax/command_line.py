"""What the commands of ltx_jax's command line (``generate``, ``check``, ``preprocess``, ``train``) share in how they
read their flags."""

from __future__ import annotations


def gnu_booleans(argv: list[str], flag_values) -> list[str]:
    """``--no-progress`` (the GNU spelling) as absl's ``--noprogress``, for the boolean flags of ``flag_values``."""
    booleans = {name for name in flag_values if flag_values[name].boolean}
    return [f"--no{a[5:]}" if a.startswith("--no-") and a[5:].split("=")[0] in booleans else a for a in argv]

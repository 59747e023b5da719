"""The shipped content every environment starts from, as `praneya` subcommands: the vocabulary and
its concept table, the starter interaction knowledge and the interactions by mechanism, the global
rules and the demo tenants.

One list for `praneya deploy --demo`, `praneya dev up` and the soak. The operations tools run the
steps as `praneya` processes (they stand beside the CLI and never import it); `dev up` runs them in
its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from store.config import PROJECT_ROOT

__all__ = ["SHIPPED_CONTENT_STEPS", "install_shipped_content"]

_KNOWLEDGE = "rules/knowledge"
SHIPPED_CONTENT_STEPS: tuple[tuple[str, ...], ...] = (
    ("knowledge", "vocabulary", "--dir", _KNOWLEDGE),
    ("knowledge", "import", f"{_KNOWLEDGE}/interactions.csv", "--source", "praneya-starter"),
    # Interactions by mechanism, expanded to ingredient pairs (rules/knowledge/build_mechanisms.py).
    ("knowledge", "import", f"{_KNOWLEDGE}/mechanism_pairs.csv", "--source", "praneya-mechanisms"),
    ("rules", "sync", "rules", "--global"),
    ("demo", "seed"),
)


def install_shipped_content(env: Mapping[str, str] | None = None) -> str | None:
    """Runs each step as `python -m engine.doors.cli …` from the project root; the first step that
    fails is returned (its output went to this process's stdout and stderr), None when all passed."""
    for step in SHIPPED_CONTENT_STEPS:
        done = subprocess.run(
            [sys.executable, "-m", "engine.doors.cli", *step],
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if done.returncode != 0:
            return " ".join(step)
    return None

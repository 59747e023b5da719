"""Praneya Clinical Safety Engine: the pure core (no database, no gRPC).

The public surface is small; import submodules (engine.knowledge, engine.rules, engine.facts,
engine.evaluate, engine.cases) for the rest. Names load lazily so that `import engine.model` stays
cheap for the store and the gRPC edge.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.evaluate import evaluate
    from engine.knowledge import Knowledge, load_knowledge_files
    from engine.rules import Rule, RuleSet

__all__ = ["Knowledge", "Rule", "RuleSet", "evaluate", "load_knowledge_files", "native_status"]

_HOME = {
    "evaluate": "engine.evaluate",
    "Knowledge": "engine.knowledge",
    "load_knowledge_files": "engine.knowledge",
    "Rule": "engine.rules",
    "RuleSet": "engine.rules",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


# -- compiled modules (engine/ops/native.py) -------------------------------------------------------
# A module compiled by `make install` is loaded only while its source is the one it was compiled from
# (the manifest's SHA-256): one edited since is imported from its source, so that a stale extension
# never runs. PRANEYA_PURE_PYTHON=1 imports every module from its source.

_HERE = Path(__file__).resolve().parent


def _native_states(here: Path, *, pure: bool) -> dict[str, str]:
    """Each compiled module of the package in `here`: "compiled" when it may be loaded, else why its
    source is imported instead."""
    try:
        manifest = json.loads((here / "_native.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    modules = manifest.get("modules", {}) if isinstance(manifest, dict) else {}
    # The other engine modules the extensions were compiled against (their types are checked at run time).
    changed = sorted(
        name
        for name, digest in (manifest.get("sources", {}) if isinstance(manifest, dict) else {}).items()
        if not (here / name).is_file() or hashlib.sha256((here / name).read_bytes()).hexdigest() != digest
    )
    states: dict[str, str] = {}
    # An extension the manifest does not list (left from an earlier build) is never loaded.
    for path in here.glob("*.so"):
        name = path.name.split(".", 1)[0]
        if not name.endswith("__mypyc") and name not in modules:
            states[name] = "source (its compiled module is not in the manifest)"
    for name, digest in sorted(modules.items()):
        source = here / f"{name}.py"
        if not any(here.glob(f"{name}.*.so")):
            states[name] = "source (no compiled module)"
        elif manifest.get("python") != sys.implementation.cache_tag:
            states[name] = "source (compiled for another Python)"
        elif pure:
            states[name] = "source (PRANEYA_PURE_PYTHON=1)"
        elif not source.is_file() or hashlib.sha256(source.read_bytes()).hexdigest() != digest:
            states[name] = "source (changed since it was compiled: run `make native`)"
        elif changed:
            states[name] = f"source (engine/{changed[0]} changed since the build: run `make native`)"
        else:
            states[name] = "compiled"
    return dict(sorted(states.items()))


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Imports the named engine modules from their .py files, ahead of any compiled extension."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / f"{fullname.rsplit('.', 1)[1]}.py")


_NATIVE = _native_states(_HERE, pure=os.environ.get("PRANEYA_PURE_PYTHON") == "1")
_FROM_SOURCE = frozenset(f"engine.{n}" for n, state in _NATIVE.items() if state != "compiled")
if _FROM_SOURCE:
    sys.meta_path.insert(0, _SourceFirst(_FROM_SOURCE))


def native_status() -> dict[str, str]:
    """Each compiled module's state in this process: "compiled", or why it runs from its source."""
    return dict(_NATIVE)

"""Praneya Clinical Safety Engine: the pure core (no database, no gRPC).

The public surface is small; import submodules (engine.knowledge, engine.rules, engine.facts,
engine.evaluate, engine.cases) for the rest. Names load lazily so that `import engine.model` stays
cheap for the store and the gRPC edge.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.evaluate import evaluate
    from engine.knowledge import Knowledge, load_knowledge_files
    from engine.rules import Rule, RuleSet

__all__ = ["Knowledge", "Rule", "RuleSet", "evaluate", "load_knowledge_files"]

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

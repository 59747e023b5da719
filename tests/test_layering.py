"""The engine core stays pure: no database driver, no ORM, no gRPC (DESIGN.md, Layout)."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "engine.model",
    "engine.logic",
    "engine.knowledge",
    "engine.knowledge_import",
    "engine.facts",
    "engine.rules",
    "engine.evaluate",
    "engine.cases",
    "engine.ruletool",
]
FORBIDDEN = ["grpc", "sqlalchemy", "psycopg", "store"]


def test_the_engine_core_imports_no_database_and_no_grpc() -> None:
    # A fresh interpreter: this test process has long since imported everything.
    code = (
        f"import sys\nfor m in {CORE!r}: __import__(m)\nprint(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_store_does_not_import_the_grpc_edge() -> None:
    code = (
        "import sys, pkgutil, importlib, store\n"
        "for m in pkgutil.iter_modules(store.__path__): importlib.import_module('store.' + m.name)\n"
        "print(sorted(m for m in ('grpc', 'engine.api') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

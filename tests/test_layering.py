"""The layout of DESIGN.md, kept by tests: dependencies point one way, and no module imports its way
back to itself.

    doors (engine/doors: grpc, cdshooks, cli)  ─►  use cases (engine/app)  ─►  engine core, FHIR mapping, store
    operations tools (engine/ops) stand beside the doors: they may drive a door, no door imports them
    — except the CLI, which is how an operator starts them.

The graph is read from the source (every `import`, at any depth, lazy ones included), so an import
hidden inside a function counts like one at the top of the file.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

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
    "engine.identity",
    "engine.adhoc",
    "engine.fhir",
    "engine.units",
    "engine.dose",
    "engine.dose_limits",
]
FORBIDDEN = ["grpc", "sqlalchemy", "psycopg", "store"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    """module → the project modules it imports (engine.* and store.*; generated code left out)."""
    files = [
        p
        for top in ("engine", "store")
        for p in (ROOT / top).rglob("*.py")
        if "gen" not in p.relative_to(ROOT).parts
    ]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base]).strip(".")
                found = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in found:
                # The deepest project module the import names: `from engine.doors.grpc.gen... import x`
                # is an import of the gRPC door's generated code.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


GRAPH = _graph()


def _room(module: str) -> str:
    """The room a module lives in: engine.core (engine/*.py), engine.fhir, engine.app, a door, ops, store."""
    parts = module.split(".")
    if parts[0] == "store":
        return "store"
    if len(parts) >= 3 and parts[1] == "doors" and (ROOT / "engine" / "doors" / parts[2]).is_dir():
        return ".".join(parts[:3])
    if len(parts) >= 2 and parts[1] in ("app", "fhir", "ops", "doors"):
        return ".".join(parts[:2])
    return "engine.core"


# Which rooms each room may import (its own room always).
ALLOWED = {
    "engine.core": set(),
    "engine.fhir": {"engine.core"},
    "store": {"engine.core"},
    "engine.app": {"engine.core", "engine.fhir", "store"},
    "engine.doors": {"engine.app", "engine.core", "store", "engine.doors.grpc", "engine.doors.cdshooks"},
    "engine.doors.grpc": {"engine.app", "engine.core", "engine.fhir", "store", "engine.doors"},
    "engine.doors.cdshooks": {"engine.app", "engine.core", "engine.fhir", "store", "engine.doors"},
    "engine.doors.cli": {"engine.app", "engine.core", "engine.fhir", "store", "engine.doors", "engine.doors.grpc",
                         "engine.doors.cdshooks", "engine.ops"},
    "engine.ops": {"engine.app", "engine.core", "engine.fhir", "store", "engine.doors", "engine.doors.grpc",
                   "engine.doors.cdshooks"},
}


def test_every_module_lives_in_a_known_room() -> None:
    assert {_room(m) for m in GRAPH} <= set(ALLOWED), sorted({_room(m) for m in GRAPH} - set(ALLOWED))
    # The graph reader sees the imports: the gRPC servicer imports the use cases it adapts.
    assert any(_room(t) == "engine.app" for t in GRAPH["engine.doors.grpc.servicer"])


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_imports_point_one_way(room: str) -> None:
    wrong = sorted(
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if _room(m) == room
        for t in targets
        if _room(t) != room and _room(t) not in ALLOWED[room]
    )
    assert wrong == []


def test_no_import_circles() -> None:
    # Tarjan's strongly connected components over the module graph: any component of two or more
    # modules is a circle (lazy imports included — they are circles too, only deferred).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert circles == []


def test_the_engine_core_imports_no_database_and_no_grpc() -> None:
    # A fresh interpreter: this test process has long since imported everything.
    code = (
        f"import sys\nfor m in {CORE!r}: __import__(m)\nprint(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_store_does_not_import_the_doors() -> None:
    code = (
        "import sys, pkgutil, importlib, store\n"
        "for m in pkgutil.iter_modules(store.__path__): importlib.import_module('store.' + m.name)\n"
        "print(sorted(m for m in ('grpc', 'engine.doors', 'engine.app', 'engine.ops') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_use_cases_import_no_transport() -> None:
    code = (
        "import sys, pkgutil, importlib, engine.app\n"
        "for m in pkgutil.iter_modules(engine.app.__path__): importlib.import_module('engine.app.' + m.name)\n"
        "print(sorted(m for m in ('grpc', 'aiohttp', 'httpx', 'starlette', 'uvicorn', 'engine.doors')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

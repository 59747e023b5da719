"""The engine's compiled modules (engine/ops/native.py): loaded only while their source is the one
they were compiled from, never a stale or unlisted extension."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import engine
from engine import _native_states
from engine.ops.native import MANIFEST, MODULES
from store.config import PROJECT_ROOT


def _package(tmp_path: Path, sources: dict[str, str], compiled: list[str], manifest: dict[str, str] | None) -> Path:
    for name, text in sources.items():
        (tmp_path / f"{name}.py").write_text(text)
    for name in compiled:
        (tmp_path / f"{name}.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
        (tmp_path / f"{name}__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    if manifest is not None:
        doc = {"python": sys.implementation.cache_tag, "modules": manifest}
        (tmp_path / "_native.json").write_text(json.dumps(doc))
    return tmp_path


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_compiled_module_is_loaded_only_while_its_source_is_unchanged(tmp_path: Path) -> None:
    sources = {"same": "x = 1\n", "edited": "x = 2\n", "uncompiled": "x = 3\n", "unlisted": "x = 4\n"}
    here = _package(tmp_path, sources, ["same", "edited", "unlisted"],
                    {"same": _sha("x = 1\n"), "edited": _sha("x = 1\n"), "uncompiled": _sha("x = 3\n")})  # fmt: skip
    states = _native_states(here, pure=False)
    assert states["same"] == "compiled"
    assert states["edited"].startswith("source (changed since it was compiled")
    assert states["uncompiled"] == "source (no compiled module)"
    assert states["unlisted"] == "source (its compiled module is not in the manifest)"
    assert "same__mypyc" not in states  # the helper libraries are not modules of their own
    # Forced to source, and for another Python: nothing compiled is loaded.
    assert set(_native_states(here, pure=True).values()) >= {"source (PRANEYA_PURE_PYTHON=1)"}
    assert "compiled" not in _native_states(here, pure=True).values()
    (here / "_native.json").write_text(json.dumps({"python": "cpython-00", "modules": {"same": _sha("x = 1\n")}}))
    assert _native_states(here, pure=False)["same"] == "source (compiled for another Python)"


def test_a_change_to_what_they_were_compiled_against_makes_every_extension_stale(tmp_path: Path) -> None:
    here = _package(tmp_path, {"a": "x = 1\n", "types": "T = int\n"}, ["a"], {"a": _sha("x = 1\n")})
    doc = json.loads((here / "_native.json").read_text())
    doc["sources"] = {"a.py": _sha("x = 1\n"), "types.py": _sha("T = int\n")}
    (here / "_native.json").write_text(json.dumps(doc))
    assert _native_states(here, pure=False) == {"a": "compiled"}
    (here / "types.py").write_text("T = str\n")
    stale = "source (engine/types.py changed since the build: run `make native`)"
    assert _native_states(here, pure=False) == {"a": stale}


def test_no_manifest_means_no_compiled_module_is_loaded(tmp_path: Path) -> None:
    here = _package(tmp_path, {"a": "x = 1\n"}, ["a"], None)
    assert _native_states(here, pure=False) == {"a": "source (its compiled module is not in the manifest)"}


def _imported_from(env_extra: dict[str, str]) -> dict[str, str]:
    code = (
        "import importlib, json, sys; print(json.dumps({m: importlib.import_module('engine.' + m).__file__"
        " for m in sys.argv[1:]}))"
    )
    out = subprocess.run([sys.executable, "-c", code, *MODULES], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, **env_extra})  # fmt: skip
    return {m: Path(f).name for m, f in json.loads(out.stdout).items()}


def test_this_checkout_imports_what_its_state_says() -> None:
    # Built (make install, make test): every listed module is its extension, unless edited since;
    # PRANEYA_PURE_PYTHON=1 imports every one from its source. Not built: no extension is there.
    states = engine.native_status()
    if not MANIFEST.exists():
        assert not list(MANIFEST.parent.glob("*.so"))
        return
    files = _imported_from({})
    for name in MODULES:
        compiled = states[name] == "compiled"
        assert files[name].endswith(".so") == compiled, (name, states[name], files[name])
    assert all(f.endswith(".py") for f in _imported_from({"PRANEYA_PURE_PYTHON": "1"}).values())

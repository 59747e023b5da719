"""The engine's hot modules compiled to C extensions with mypyc (`make install` runs `build`).

    python -m engine.ops.native build    compile them in place (engine/<name>.*.so) and write the manifest
    python -m engine.ops.native clean    remove the compiled modules and the manifest
    python -m engine.ops.native status   which modules run compiled, and why any does not

mypyc compiles the type-annotated (strict mypy) source as it is: same code, same answers, the
annotations checked at run time. Measured on the shipped rules and knowledge, engine CPU per
evaluation (engine.evaluate.evaluate alone): 15 medications 3.9 -> 1.5-2.6 ms, 40 medications 9.3 ->
5.3-6.4 ms (README, "Performance").

The manifest (engine/_native.json) records the SHA-256 of each source as compiled, and of every other
module of the engine package it was compiled against. engine/__init__.py loads a compiled module only
while all of them are unchanged: after an edit the engine runs from its source (until the next build),
so a stale extension never runs. PRANEYA_PURE_PYTHON=1
imports every module from its source.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import engine

__all__ = ["MODULES", "build", "clean", "main"]

# The modules an evaluation spends most of its time in (py-spy, make bench). engine.model and
# engine.knowledge stay Python: their classes are built and pickled by the store and the doors, and
# the knowledge load is not per call. Nor are the modules that `raise ... from None` (demographics,
# dose_limits, renal, hepatic): mypyc does not apply the `from None`, and an error's context can quote
# a patient's value (engine/logic.py sets it by hand where it raises; a test checks it).
MODULES = ("logic", "identity", "allergy", "facts", "evaluate")

ENGINE = Path(engine.__file__).resolve().parent
ROOT = ENGINE.parent
MANIFEST = ENGINE / "_native.json"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _compiled(name: str) -> list[Path]:
    return sorted(ENGINE.glob(f"{name}.*.so")) + sorted(ENGINE.glob(f"{name}__mypyc.*.so"))


def clean() -> None:
    # Every extension in the package, not only today's MODULES: one left from an earlier list would
    # otherwise outlive its manifest entry.
    for path in ENGINE.glob("*.so"):
        path.unlink()
    MANIFEST.unlink(missing_ok=True)


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    clean()
    digests = {name: _digest(ENGINE / f"{name}.py") for name in MODULES}  # what is compiled
    # And what it was compiled against: mypyc checks at run time the types the other engine modules
    # declared at build time, so a change to any of them makes every extension stale.
    against = {path.name: _digest(path) for path in sorted(ENGINE.glob("*.py"))}
    started = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypyc names the modules by their path relative to here
    try:
        setup(
            name="praneya-native",
            ext_modules=mypycify([f"engine/{name}.py" for name in MODULES], separate=True, opt_level="3"),
            script_args=["--quiet", "build_ext", "--inplace", "--build-temp", "build/native", "-j", "2"],
        )
    finally:
        os.chdir(cwd)
    missing = [name for name in MODULES if not _compiled(name)]
    if missing:
        raise SystemExit(f"mypyc built no extension for: {', '.join(missing)}")
    MANIFEST.write_text(
        json.dumps({"python": sys.implementation.cache_tag, "modules": digests, "sources": against}, indent=2,
                   sort_keys=True) + "\n"
    )
    print(f"compiled {len(MODULES)} engine modules with mypyc in {time.perf_counter() - started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.ops.native", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("build", "clean", "status"))
    args = parser.parse_args(argv)
    if args.command == "build":
        build()
    elif args.command == "clean":
        clean()
    else:
        for name, state in engine.native_status().items():
            print(f"engine.{name:14} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

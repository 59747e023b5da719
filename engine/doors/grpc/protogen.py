"""Generates the Python code for protos/ into engine/doors/grpc/gen/ (committed; a test checks it is current).

protoc writes absolute imports (`from praneya.safety.v1 import safety_pb2`); we rewrite them to the
package the code lives in, so no top-level `praneya` package is needed on sys.path.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from store.config import PROJECT_ROOT

__all__ = ["GEN", "PROTOS", "generate"]

PROTOS = PROJECT_ROOT / "protos"
GEN = PROJECT_ROOT / "engine" / "doors" / "grpc" / "gen"
_PACKAGE = "engine.doors.grpc.gen"


def generate(out: Path = GEN) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(PROTOS.rglob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *map(str, protos),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    written = []
    for path in sorted(out.rglob("*.py*")):
        text = path.read_text()
        text = re.sub(r"^from (praneya\.[\w.]+) import", rf"from {_PACKAGE}.\1 import", text, flags=re.M)
        path.write_text(text)
        written.append(path)
    for d in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    return written


if __name__ == "__main__":
    for p in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else GEN):
        print(p.relative_to(PROJECT_ROOT) if p.is_relative_to(PROJECT_ROOT) else p)

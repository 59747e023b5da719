"""The committed generated code is exactly what the protos produce today."""

from __future__ import annotations

from pathlib import Path

from engine.doors.grpc.protogen import GEN, generate


def test_regenerating_the_protos_changes_nothing(tmp_path: Path) -> None:
    fresh = tmp_path / "gen"
    generate(fresh)
    committed = {
        p.relative_to(GEN): p.read_bytes() for p in GEN.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    regenerated = {p.relative_to(fresh): p.read_bytes() for p in fresh.rglob("*") if p.is_file()}
    assert sorted(committed) == sorted(regenerated)
    stale = [str(name) for name in regenerated if committed[name] != regenerated[name]]
    assert stale == [], f"run `python -m engine.doors.grpc.protogen`: {stale} are out of date"

"""The rules workflow: a sync runs every case first, removed files retire their rules (or are listed),
`rules list | diff | history` against a real PostgreSQL, and lint's "did you mean" and one line per
schema error."""

from __future__ import annotations

import copy
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, text

from engine.doors.cli import main as praneya
from engine.ruletool import lint_main
from store.config import PROJECT_ROOT

RULES = PROJECT_ROOT / "rules"
NSAID = yaml.safe_load((RULES / "ddi" / "ddi-warfarin-nsaid.yaml").read_text())
PPI = yaml.safe_load((RULES / "duplicate" / "duplicate-ppi.yaml").read_text())


def _write(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / f"{doc['id']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _folder(tmp_path: Path, *docs: dict[str, Any]) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    for doc in docs:
        _write(folder, doc)
    return folder


def _rows(admin_engine: Engine, tenant: str) -> dict[str, tuple[int, str]]:
    with admin_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT rule_key, version, status::text FROM clinical.clinical_rules WHERE tenant_id = :t"),
            {"t": tenant},
        ).all()
    return {r[0]: (r[1], r[2]) for r in rows}


# -- sync runs the cases first ----------------------------------------------------------------------


@pytest.mark.db
def test_a_failing_case_stops_the_sync_and_names_the_rule_and_case(
    tmp_path: Path,
    admin_engine: Engine,
    make_tenant: Callable[[], str],
    cli_db: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = make_tenant()
    wrong = copy.deepcopy(NSAID)
    wrong["cases"][0]["expect"] = {"fires": True, "severity": "LOW"}  # the rule says HIGH
    folder = _folder(tmp_path, PPI, wrong)
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant]) == 1
    err = capsys.readouterr().err
    assert "FAIL" in err and "ddi-warfarin-nsaid: Coumadin with Advil" in err
    assert "1 case(s) failed; nothing was written" in err
    assert _rows(admin_engine, tenant) == {}  # not even the rule whose cases pass


# -- removed files ----------------------------------------------------------------------------------


@pytest.mark.db
def test_a_removed_file_is_listed_then_retired_with_retire_missing(
    tmp_path: Path,
    admin_engine: Engine,
    make_tenant: Callable[[], str],
    cli_db: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = make_tenant()
    folder = _folder(tmp_path, PPI, NSAID)
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant, "--actor", "dr-a"]) == 0
    assert "2 created" in capsys.readouterr().out
    (folder / "duplicate-ppi.yaml").unlink()

    assert praneya(["rules", "sync", str(folder), "--tenant", tenant]) == 0
    out = capsys.readouterr().out
    assert "0 retired" in out
    assert "still live duplicate-ppi: its file is gone" in out
    assert _rows(admin_engine, tenant)["duplicate-ppi"] == (PPI["version"], "active")

    assert praneya(["rules", "diff", str(folder), "--tenant", tenant]) == 0
    out = capsys.readouterr().out
    assert "retired   duplicate-ppi" in out and "unchanged ddi-warfarin-nsaid" in out

    assert praneya(["rules", "sync", str(folder), "--tenant", tenant, "--retire-missing", "--actor", "dr-b"]) == 0
    assert "retired duplicate-ppi: its file is gone" in capsys.readouterr().out
    assert _rows(admin_engine, tenant)["duplicate-ppi"] == (PPI["version"] + 1, "retired")
    with admin_engine.connect() as conn:
        audit = (
            conn.execute(
                text('SELECT action FROM audit.audit_logs WHERE resource_id = :id ORDER BY "timestamp"'),
                {"id": f"{tenant}:duplicate-ppi"},
            )
            .scalars()
            .all()
        )
    assert audit == ["RULE_CREATED", "RULE_RETIRED"]

    # Bringing it back takes a version above the retirement.
    _write(folder, PPI)
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant]) == 1
    assert f"retired at version {PPI['version'] + 1}" in capsys.readouterr().err
    _write(folder, dict(PPI, version=PPI["version"] + 2))
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant]) == 0
    assert _rows(admin_engine, tenant)["duplicate-ppi"] == (PPI["version"] + 2, "active")
    capsys.readouterr()

    # history: every version, who synced it and when
    assert praneya(["rules", "history", "duplicate-ppi", "--tenant", tenant]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(v[1], v[2], v[3]) for v in lines] == [
        (str(PPI["version"]), "active", "dr-a"),
        (str(PPI["version"] + 1), "retired", "dr-b"),
        (str(PPI["version"] + 2), "active", "praneya-cli"),
    ]


# -- diff and list ----------------------------------------------------------------------------------


@pytest.mark.db
def test_diff_says_what_a_sync_would_change_without_writing(
    tmp_path: Path,
    admin_engine: Engine,
    make_tenant: Callable[[], str],
    cli_db: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = make_tenant()
    folder = _folder(tmp_path, NSAID)
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant]) == 0
    capsys.readouterr()
    _write(folder, dict(NSAID, version=NSAID["version"] + 1, description="Revised."))
    _write(folder, PPI)
    assert praneya(["rules", "diff", str(folder), "--tenant", tenant]) == 0
    out = capsys.readouterr().out
    assert "created   duplicate-ppi" in out and "updated   ddi-warfarin-nsaid" in out
    assert "1 created, 1 updated, 0 retired, 0 unchanged, 0 refused; nothing written" in out
    assert _rows(admin_engine, tenant) == {"ddi-warfarin-nsaid": (NSAID["version"], "active")}
    # A change without a version bump is what the sync would refuse.
    _write(folder, dict(NSAID, description="Revised again."))
    assert praneya(["rules", "diff", str(folder), "--tenant", tenant]) == 1
    assert "refused   ddi-warfarin-nsaid: content changed but version" in capsys.readouterr().out


@pytest.mark.db
def test_list_shows_what_is_live_with_who_synced_it(
    tmp_path: Path,
    make_tenant: Callable[[], str],
    cli_db: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = make_tenant()
    folder = _folder(tmp_path, NSAID, PPI)
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant, "--actor", "dr-list"]) == 0
    (folder / "duplicate-ppi.yaml").unlink()
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant, "--retire-missing"]) == 0
    capsys.readouterr()
    assert praneya(["rules", "list", "--tenant", tenant]) == 0
    own = [line.split() for line in capsys.readouterr().out.splitlines() if f" {tenant} " in line]
    assert [(r[0], r[2], r[3], r[4]) for r in own] == [
        ("ddi-warfarin-nsaid", str(NSAID["version"]), "active", "dr-list")
    ]
    assert own[0][5].startswith("20")  # synced at, ISO 8601
    assert praneya(["rules", "list", "--tenant", tenant, "--all"]) == 0
    assert any(line.startswith("duplicate-ppi") and "retired" in line for line in capsys.readouterr().out.splitlines())


@pytest.fixture
def cli_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)


# -- lint ---------------------------------------------------------------------------------------------


def _lint(path: Path) -> list[str]:
    out = StringIO()
    lint_main([str(path)], RULES / "knowledge", out=out)
    return out.getvalue().splitlines()


def test_lint_suggests_close_ingredients_and_classes(tmp_path: Path) -> None:
    doc = copy.deepcopy(NSAID)
    doc["applies_to"]["ingredients"] = ["warfrin"]
    doc["applies_to"]["classes"] = ["nsiad"]
    doc["when"] = {"and": [{"in": ["warfrin", {"var": "ingredients"}]}, {"in": ["nsiad", {"var": "classes"}]}]}
    lines = _lint(_write(_folder(tmp_path), doc))
    assert any(
        "applies_to.ingredients: 'warfrin' is not in the vocabulary (did you mean 'warfarin'?)" in x for x in lines
    )
    assert any("applies_to.classes: 'nsiad' is not in the vocabulary (did you mean 'nsaid'?)" in x for x in lines)
    assert any("'nsiad' is not a known class in the vocabulary (did you mean 'nsaid'?)" in x for x in lines)
    assert any("'warfrin' is not a known ingredient in the vocabulary (did you mean 'warfarin'?)" in x for x in lines)


def test_each_schema_error_is_reported_once_on_its_own_line(tmp_path: Path) -> None:
    doc = copy.deepcopy(NSAID)
    doc["severity"] = "SEVERE"
    doc["alert"]["colour"] = "red"
    path = _write(_folder(tmp_path), doc)
    lines = [x for x in _lint(path) if ": error: " in x]
    source = path.read_text().splitlines()
    severity = [x for x in lines if "SEVERE" in x]
    colour = [x for x in lines if "colour" in x]
    assert len(severity) == 1 and len(colour) == 1, lines
    for line, key in ((severity[0], "severity:"), (colour[0], "colour:")):
        number = int(line.split(":")[1])
        assert source[number - 1].strip().startswith(key), (line, source[number - 1])

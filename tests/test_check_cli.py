"""`praneya check` from files, without a database: flags with codes, and the batch `--cases` mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.doors.cli import main as praneya
from store.config import PROJECT_ROOT

FILES = ["--knowledge", str(PROJECT_ROOT / "rules" / "knowledge"), "--rules", str(PROJECT_ROOT / "rules")]


def _json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert praneya(["check", "--json", *FILES, *args]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_a_display_string_meets_a_trimethoprim_allergy(capsys: pytest.CaptureFixture[str]) -> None:
    result = _json(
        ["--med", "Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet", "--allergy", "trimethoprim"], capsys
    )
    alerts = result["alerts"]
    assert isinstance(alerts, list)
    assert [a["kind"] for a in alerts] == ["DRUG_ALLERGY"]
    assert result["complete"] is True


def test_an_unknown_drug_is_named_and_the_answer_is_incomplete(capsys: pytest.CaptureFixture[str]) -> None:
    assert praneya(["check", *FILES, "--med", "zzqx"]) == 0
    out = capsys.readouterr().out
    assert "UNRESOLVED medication 'zzqx': unrecognised" in out
    assert "complete=false" in out


def test_a_misspelling_is_suggested(capsys: pytest.CaptureFixture[str]) -> None:
    result = _json(["--med", "warfrin"], capsys)
    unresolved = result["unresolved"]
    assert isinstance(unresolved, list) and len(unresolved) == 1
    assert unresolved[0]["suggestions"] == ["warfarin"]


def test_a_malformed_code_is_refused_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert praneya(["check", *FILES, "--med", "rxnorm:12ab"]) != 0
    assert "--med" in capsys.readouterr().err


def test_cases_one_json_line_per_patient(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases.jsonl"
    lines = [
        {"id": "a", "medications": [{"name": "warfarin"}], "proposed": [{"name": "ibuprofen"}], "age": 70},
        {"id": "b", "medications": [{"name": "zzqx"}]},
        {"id": "c", "medications": [{"name": "Bactrim DS"}], "allergies": [{"name": "sulfa"}], "labs": {"egfr": 25}},
        {"id": "d", "medication": []},
    ]
    cases.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n", encoding="utf-8")
    assert praneya(["check", *FILES, "--cases", str(cases)]) == 1  # two lines could not be read
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_id = {o.get("id", f"line{o.get('line')}"): o for o in out}
    assert any(a["rule_id"] == "ddi-warfarin-nsaid" for a in by_id["a"]["alerts"])
    assert by_id["b"]["complete"] is False and by_id["b"]["unresolved"][0]["text"] == "zzqx"
    assert any(a["kind"] == "DRUG_ALLERGY" for a in by_id["c"]["alerts"])
    assert "unknown field 'medication'" in by_id["line4"]["error"]
    assert "not JSON" in by_id["line5"]["error"]

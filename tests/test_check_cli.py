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


# --- `--fhir`: the patient from FHIR R4 files (tests/data/fhir: Synthea, Apache-2.0) ------------------

FHIR = PROJECT_ROOT / "tests" / "data" / "fhir"


def test_a_fhir_bundle_is_the_patient_and_draft_orders_are_proposed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Cleo Friesen's record holds warfarin; proposing an NSAID gives the bleeding interaction.
    result = _json(["--fhir", str(FHIR / "synthea-cleo-friesen.json"), "--propose", "ibuprofen"], capsys)
    alerts = result["alerts"]
    assert isinstance(alerts, list)
    warfarin_nsaid = [a for a in alerts if a["rule_id"] == "ddi-warfarin-nsaid"]
    assert len(warfarin_nsaid) == 1
    assert "MedicationRequest/5e27078a-3ea4-4def-9062-7ed28709e683" in warfarin_nsaid[0]["involved"]
    # Its grass-pollen allergy is coded in SNOMED CT, which the allergen vocabulary lacks: named, incomplete.
    assert result["complete"] is False
    # The same through a draft order file: the alert names the order.
    orders = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": "draft-9",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/f49a43d9-bb72-4b37-a4a6-70df40c40c92"},
                    "medicationCodeableConcept": {"text": "naproxen"},
                }
            }
        ],
    }
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(orders))
    result = _json(["--fhir", str(FHIR / "synthea-cleo-friesen.json"), "--draft-orders", str(path)], capsys)
    assert isinstance(result["alerts"], list)
    assert any(
        a["rule_id"] == "ddi-warfarin-nsaid" and "MedicationRequest/draft-9" in a["involved"]
        for a in result["alerts"]
    )


def test_bulk_ndjson_files_take_the_patient_named(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in (FHIR / "bulk").glob("*.ndjson"))
    patients = [
        json.loads(line)["id"] for line in (FHIR / "bulk" / "Patient.000.ndjson").read_text().splitlines() if line
    ]
    assert len(patients) >= 2
    args = [a for f in files for a in ("--fhir", f)]
    # Several patients without --patient: refused, naming the problem.
    assert praneya(["check", "--json", *FILES, *args]) == 1
    assert "patient" in capsys.readouterr().err.lower()
    for pid in patients:
        result = _json([*args, "--patient", pid], capsys)
        assert "alerts" in result and "complete" in result


def test_malformed_fhir_names_the_element_and_no_value(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = json.loads((FHIR / "synthea-cleo-friesen.json").read_text())
    index = next(i for i, e in enumerate(doc["entry"]) if e["resource"]["resourceType"] == "MedicationRequest")
    doc["entry"][index]["resource"]["status"] = "Friesen-status"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert praneya(["check", *FILES, "--fhir", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"Bundle.entry[{index}].resource.status" in err and "Friesen-status" not in err
    (tmp_path / "nojson.json").write_text("{")
    assert praneya(["check", *FILES, "--fhir", str(tmp_path / "nojson.json")]) == 1
    assert "is not JSON" in capsys.readouterr().err
    assert praneya(["check", *FILES, "--fhir", str(bad), "--med", "warfarin"]) == 1
    assert "do not mix" in capsys.readouterr().err

"""The lab catalog (rules/knowledge/labs.yaml, engine/labs.py): conversion, plausibility, LOINC
mapping, the rules' recency (max_age_days), and the CLI's lab inputs. No database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.adhoc import CaseError, case_from_json, parse_lab_text
from engine.doors.cli import main as praneya
from engine.evaluate import run_rules
from engine.facts import build_facts
from engine.fhir._codes import READINGS
from engine.knowledge import Knowledge, load_knowledge_files
from engine.labs import LabInputError, lab_catalog
from engine.model import BiometricFact, EvaluationRequest, MedicationFact, PatientSnapshot
from engine.rules import LAB_TYPES, Rule, RuleSet, RuleValidationError
from store.config import PROJECT_ROOT

CATALOG = lab_catalog()
FILES = ["--knowledge", str(PROJECT_ROOT / "rules" / "knowledge"), "--rules", str(PROJECT_ROOT / "rules")]


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge_files(PROJECT_ROOT / "rules" / "knowledge")


# --- the catalog ----------------------------------------------------------------------------------


def test_every_type_has_a_unit_a_reasoned_range_and_sourced_codes() -> None:
    for lab in CATALOG.types.values():
        assert lab.low < lab.high and lab.plausible_reason.strip(), lab.name
        # The canonical unit and every listed one convert (a value inside the range round-trips).
        middle = (lab.low + lab.high) / 2
        assert CATALOG.convert(lab, middle, lab.unit) == pytest.approx(middle)
        for unit in lab.also:
            # Every listed unit is understood; a value may fall outside the range once converted.
            try:
                CATALOG.convert(lab, 1.0, unit)
            except LabInputError as exc:
                assert exc.field == "value", (lab.name, unit)
    for code, row in CATALOG.by_loinc.items():
        assert row.source.strip(), code
        assert CATALOG.for_loinc(code) is CATALOG.types[row.reading_type]


def test_one_table_feeds_the_fhir_mapping_and_the_rules() -> None:
    assert {code: r.reading_type for code, r in READINGS.items()} == {
        code: row.reading_type for code, row in CATALOG.by_loinc.items()
    }
    assert set(LAB_TYPES) == set(CATALOG.types)
    schema = json.loads((PROJECT_ROOT / "rules" / "schema" / "rule.schema.json").read_text(encoding="utf-8"))
    assert schema["properties"]["applies_to"]["properties"]["biometrics"]["items"]["enum"] == list(CATALOG.names)
    assert list(schema["properties"]["max_age_days"]["propertyNames"]["enum"]) == list(CATALOG.names)


@pytest.mark.parametrize(
    ("reading_type", "value", "unit", "expected", "canonical"),
    [
        ("potassium", 5.8, "mEq/L", 5.8, "mmol/L"),
        ("creatinine", 88.4, "umol/L", 1.0, "mg/dL"),
        ("creatinine", 1.2, "mg/dl", 1.2, "mg/dL"),
        ("glucose", 5.5, "mmol/L", 99.09, "mg/dL"),
        ("magnesium", 0.8, "mmol/L", 1.94, "mg/dL"),
        ("magnesium", 1.6, "mEq/L", 1.94, "mg/dL"),  # Mg2+: 1.6 mEq is 0.8 mmol
        ("bilirubin", 17.1, "umol/L", 1.0, "mg/dL"),
        ("hemoglobin", 130, "g/L", 13.0, "g/dL"),
        ("platelets", 150_000, "/uL", 150.0, "10*3/uL"),
        ("platelets", 150, "K/uL", 150.0, "10*3/uL"),
        ("anc", 1.2, "10*9/L", 1.2, "10*3/uL"),
        ("alt", 1, "ukat/L", 60.0, "U/L"),
        ("ast", 40, "IU/L", 40.0, "U/L"),
        ("tsh", 2.5, "uIU/mL", 2.5, "m[IU]/L"),
        ("tsh", 2.5, "mU/L", 2.5, "m[IU]/L"),
        ("qtc", 0.48, "s", 480.0, "ms"),
        ("inr", 2.5, "", 2.5, "{INR}"),
        ("inr", 2.5, "{ratio}", 2.5, "{INR}"),
        ("egfr", 45, "mL/min", 45.0, "mL/min/{1.73_m2}"),
        ("egfr", 45, "mL/min/1.73m2", 45.0, "mL/min/{1.73_m2}"),
        ("weight", 150, "lb", 68.04, "kg"),
        ("systolic_bp", 16, "kPa", 120.01, "mm[Hg]"),
        ("hr", 80, "bpm", 80.0, "/min"),
    ],
)
def test_units_are_converted_by_the_unit_library(
    reading_type: str, value: float, unit: str, expected: float, canonical: str
) -> None:
    reading = CATALOG.reading(value, unit, reading_type=reading_type)
    assert (round(reading.value, 2), reading.unit) == (expected, canonical)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(value=-5, unit="furlongs", reading_type="egfr"), "unit"),  # the example
        (dict(value=-5, unit="mL/min", reading_type="egfr"), "value"),
        (dict(value=88, unit="mg/dL", reading_type="creatinine"), "value"),  # umol/L written as mg/dL
        (dict(value=5, unit="mg/dL", reading_type="potassium"), "unit"),  # a mass: no molar mass for K
        (dict(value=5, unit="", reading_type="potassium"), "unit"),
        (dict(value=2, unit="%", reading_type="inr"), "unit"),
        (dict(value=50, unit="mmol/mol", reading_type="hba1c"), "unit"),  # IFCC: not a unit factor
        (dict(value=float("nan"), unit="mmol/L", reading_type="potassium"), "value"),
        (dict(value=5, unit="mmol/L", reading_type="ferritin"), "reading_type"),
        (dict(value=5, unit="mmol/L", loinc="99999-9"), "coding.code"),
        (dict(value=5, unit="mmol/L", loinc="x"), "coding.code"),
        (dict(value=5, unit="mmol/L", loinc="2823-3", reading_type="sodium"), "coding.code"),
    ],
)
def test_bad_readings_name_the_field_and_never_the_value(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(LabInputError) as caught:
        CATALOG.reading(**kwargs)
    assert caught.value.field == field
    assert "furlongs" not in str(caught.value) and "88" not in str(caught.value)


def test_a_loinc_code_alone_names_the_type() -> None:
    reading = CATALOG.reading(5.8, "mmol/L", loinc="2823-3")
    assert (reading.reading_type, reading.code) == ("potassium", "2823-3")
    assert CATALOG.reading(5.8, "mmol/L", loinc="2823-3", reading_type="K").reading_type == "potassium"


# --- recency --------------------------------------------------------------------------------------

RULE: dict[str, Any] = {
    "id": "test-k",
    "version": 1,
    "title": "K high on lisinopril",
    "type": "LAB_VALUE",
    "kind": "LAB_VALUE",
    "severity": "HIGH",
    "applies_to": {"ingredients": ["lisinopril"], "biometrics": ["potassium"]},
    "when": {"and": [{"in": ["lisinopril", {"var": "ingredients"}]}, {">=": [{"var": "labs.potassium"}, 5.5]}]},
    "alert": {"summary": "K high"},
    "max_age_days": {"potassium": 7},
}


def _outcome(knowledge: Knowledge, taken: datetime | None, now: datetime) -> Any:
    snapshot = PatientSnapshot(
        "p",
        "t",
        medications=(MedicationFact("m1", "lisinopril 10 mg"),),
        biometrics=(BiometricFact("b1", "potassium", 6.0, "mmol/L", observed_at=taken),),
    )
    facts = build_facts(snapshot, EvaluationRequest(), knowledge)
    return run_rules(facts, RuleSet.build([Rule.from_dict(RULE)], "t"), now=now)[0]


def test_a_recent_reading_is_used(knowledge: Knowledge) -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert _outcome(knowledge, now - timedelta(days=6), now).status == "FIRED"


def test_an_old_reading_is_insufficient_data_with_its_age(knowledge: Knowledge) -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    outcome = _outcome(knowledge, now - timedelta(days=8), now)
    assert outcome.status == "INSUFFICIENT_DATA" and outcome.error.insufficient_data
    assert "8 days old" in outcome.error.reason and "at most 7" in outcome.error.reason


def test_an_undated_reading_is_insufficient_data(knowledge: Knowledge) -> None:
    outcome = _outcome(knowledge, None, datetime(2026, 11, 30, tzinfo=UTC))
    assert outcome.status == "INSUFFICIENT_DATA" and "no time" in outcome.error.reason


def _quiet_outcome(knowledge: Knowledge, readings: tuple[BiometricFact, ...], now: datetime) -> Any:
    snapshot = PatientSnapshot("p", "t", medications=(MedicationFact("m1", "lisinopril 10 mg"),), biometrics=readings)
    facts = build_facts(snapshot, EvaluationRequest(), knowledge)
    rule = Rule.from_dict({**RULE, "missing_reading": "quiet"})
    return run_rules(facts, RuleSet.build([rule], "t"), now=now)[0]


def test_a_monitoring_rule_is_quiet_without_a_reading_but_never_with_an_old_one(knowledge: Knowledge) -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert _quiet_outcome(knowledge, (), now).status == "NOT_FIRED"
    old = (BiometricFact("b1", "potassium", 6.0, "mmol/L", observed_at=now - timedelta(days=30)),)
    stale = _quiet_outcome(knowledge, old, now)
    assert stale.status == "INSUFFICIENT_DATA" and "30 days old" in stale.error.reason
    undated = _quiet_outcome(knowledge, (BiometricFact("b1", "potassium", 6.0, "mmol/L"),), now)
    assert undated.status == "INSUFFICIENT_DATA"
    recent = (BiometricFact("b1", "potassium", 6.0, "mmol/L", observed_at=now - timedelta(days=1)),)
    assert _quiet_outcome(knowledge, recent, now).status == "FIRED"
    # the default stays insufficient data when there is no reading at all
    assert run_rules(
        build_facts(PatientSnapshot("p", "t", medications=(MedicationFact("m1", "lisinopril 10 mg"),)),
                    EvaluationRequest(), knowledge),
        RuleSet.build([Rule.from_dict(RULE)], "t"), now=now,
    )[0].status == "INSUFFICIENT_DATA"  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "message"),
    [({"missing_reading": "sometimes"}, "insufficient or quiet"),
     ({"missing_reading": "quiet", "max_age_days": {}}, "quiet needs max_age_days")],
)  # fmt: skip
def test_missing_reading_is_validated(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleValidationError) as caught:
        Rule.from_dict({**RULE, **doc})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("max_age", "message"),
    [
        ({"ferritin": 7}, "not a reading type"),
        ({"potassium": 0}, "whole number of days"),
        ({"potassium": "7"}, "whole number of days"),
    ],
)
def test_max_age_days_is_validated(max_age: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleValidationError) as caught:
        Rule.from_dict({**RULE, "max_age_days": max_age})
    assert message in str(caught.value)


# --- CLI and --cases ------------------------------------------------------------------------------


def test_lab_flags_parse() -> None:
    assert parse_lab_text("potassium=5.8mmol/L") == {"type": "potassium", "value": 5.8, "unit": "mmol/L"}
    assert parse_lab_text("loinc:2823-3=5.8 mmol/L@2026-11-30") == {
        "code": "loinc:2823-3",
        "value": 5.8,
        "unit": "mmol/L",
        "taken_at": "2026-11-30",
    }
    assert parse_lab_text("egfr=25") == {"type": "egfr", "value": 25.0}
    with pytest.raises(CaseError):
        parse_lab_text("potassium=high")


def test_cases_take_both_lab_shapes() -> None:
    _, snapshot, _ = case_from_json({"id": 1, "labs": {"potassium": 5.8}})
    (k,) = snapshot.biometrics
    assert (k.reading_type, k.value, k.unit) == ("potassium", 5.8, "mmol/L") and k.observed_at is not None
    _, snapshot, _ = case_from_json(
        {"id": 2, "labs": [{"code": "loinc:2160-0", "value": 176.8, "unit": "umol/L", "taken_at": "2026-01-02"}]}
    )
    (c,) = snapshot.biometrics
    assert (c.reading_type, round(c.value, 2), c.code) == ("creatinine", 2.0, "2160-0")
    assert c.observed_at == datetime(2026, 1, 2, tzinfo=UTC)
    for bad, where in (
        ({"potassium": 45}, "labs.potassium"),
        ([{"type": "potassium", "value": 5, "unit": "mg/dL"}], "labs[0].unit"),
        ([{"code": "snomed:123", "value": 5}], "labs[0].code"),
        ([{"code": "loinc:2823-3", "value": 5, "taken_at": "yesterday"}], "labs[0].taken_at"),
    ):
        with pytest.raises(CaseError) as caught:
            case_from_json({"id": 3, "labs": bad})
        assert str(caught.value).startswith(where), str(caught.value)


def _check(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert praneya(["check", "--json", *FILES, *args]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_check_with_a_coded_lab_fires_and_a_stale_one_is_incomplete(capsys: pytest.CaptureFixture[str]) -> None:
    fresh = _check(["--med", "lisinopril", "--lab", "loinc:2823-3=5.8 mmol/L"], capsys)
    assert "labs-potassium-high-raas" in {a["rule_id"] for a in fresh["alerts"]}
    stale = _check(["--med", "lisinopril", "--lab", "potassium=5.8mEq/L@2020-01-01"], capsys)
    assert "labs-potassium-high-raas" not in {a["rule_id"] for a in stale["alerts"]}
    assert stale["complete"] is False
    reason = next(e["reason"] for e in stale["rule_errors"] if e["rule_id"] == "labs-potassium-high-raas")
    assert "days old" in reason


def test_check_refuses_an_implausible_lab(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert praneya(["check", *FILES, "--med", "lisinopril", "--lab", "potassium=58"]) != 0
    assert "plausible range for potassium" in capsys.readouterr().err

"""Age, weight, height, pregnancy and lactation as data (issue 11 section 6): the pure engine, the FHIR
mapping and `praneya check` (flags and `--cases`). The stored path and gRPC: test_demographics_db.py."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.adhoc import CaseError, case_from_json
from engine.demographics import demographics, mosteller_bsa
from engine.doors.cli import main as praneya
from engine.evaluate import evaluate
from engine.facts import build_facts
from engine.fhir import parse_patient_data
from engine.knowledge import Knowledge, load_knowledge_files
from engine.model import (
    AlertKind,
    BiometricFact,
    EvaluationRequest,
    LactationFact,
    MedicationFact,
    PatientSnapshot,
    PregnancyFact,
)
from engine.rules import RuleSet, load_rule_files
from store.config import PROJECT_ROOT

FILES = ["--knowledge", str(PROJECT_ROOT / "rules" / "knowledge"), "--rules", str(PROJECT_ROOT / "rules")]
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge_files(PROJECT_ROOT / "rules" / "knowledge")


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return RuleSet.build([r.rule for r in load_rule_files([PROJECT_ROOT / "rules"]) if r.rule is not None], "shipped")


def snap(**kw: Any) -> PatientSnapshot:
    return PatientSnapshot(patient_id="p", tenant_id="t", as_of=NOW, **kw)


def weight(kg: float, days_ago: int | None, rid: str = "w") -> BiometricFact:
    when = None if days_ago is None else NOW - timedelta(days=days_ago)
    return BiometricFact(rid, "weight_kg", kg, "kg", observed_at=when)


# -- age ---------------------------------------------------------------------------------------------


def test_age_is_computed_on_the_evaluation_date_in_years_months_and_days() -> None:
    d = demographics(snap(birth_date=date(1960, 3, 2)))
    assert d.age_years == 65  # the 66th birthday is tomorrow
    d = demographics(snap(birth_date=date(1960, 3, 1)))
    assert d.age_years == 66
    infant = demographics(snap(birth_date=date(2025, 12, 15)))
    assert (infant.age_years, infant.age_months, infant.age_days) == (0, 2, 76)
    # The birth date wins over a stale integer age; without one the integer is used.
    assert demographics(snap(birth_date=date(1960, 3, 1), age=40)).age_years == 66
    assert demographics(snap(age=40)).age_days is None
    assert demographics(snap(birth_date=date(2027, 1, 1))).age_years is None


def test_beers_uses_the_computed_age(knowledge: Knowledge, ruleset: RuleSet) -> None:
    med = MedicationFact("m1", "meperidine 50 mg", proposed=True)
    older = evaluate(snap(birth_date=date(1961, 2, 28)), EvaluationRequest((med,)), ruleset, knowledge)
    younger = evaluate(snap(birth_date=date(1961, 3, 2)), EvaluationRequest((med,)), ruleset, knowledge)
    assert "beers-meperidine" in {a.rule_id for a in older.alerts}  # 65 on the evaluation date
    assert "beers-meperidine" not in {a.rule_id for a in younger.alerts}  # 64 until tomorrow


# -- weight and height ---------------------------------------------------------------------------------


def test_weight_recency_depends_on_age() -> None:
    adult = demographics(snap(birth_date=date(1980, 1, 1), biometrics=(weight(70, 170),)))
    assert adult.weight_kg == 70
    stale = demographics(snap(birth_date=date(1980, 1, 1), biometrics=(weight(70, 200),)))
    assert stale.weight is None and "200 days old" in (stale.weight_problem or "")
    child = demographics(snap(birth_date=date(2020, 1, 1), biometrics=(weight(18, 100),)))
    assert child.weight is None and "at most 90" in (child.weight_problem or "")
    infant = demographics(snap(birth_date=date(2025, 10, 1), biometrics=(weight(6, 31),)))
    assert infant.weight is None and "at most 30" in (infant.weight_problem or "")
    # The latest of several readings is the one used; pounds are converted.
    newer = BiometricFact("new", "weight", 154, "lb", observed_at=NOW)
    two = demographics(snap(biometrics=(weight(80, 20, "old"), newer)))
    assert two.weight is not None and two.weight.reading_id == "new" and two.weight_kg == pytest.approx(69.85, 0.01)


def test_bsa_by_mosteller_needs_recent_weight_and_height() -> None:
    height = BiometricFact("h", "height_cm", 170, "cm", observed_at=NOW - timedelta(days=30))
    d = demographics(snap(birth_date=date(1980, 1, 1), biometrics=(weight(70, 10), height)))
    assert d.bsa_m2 == pytest.approx(mosteller_bsa(170, 70)) == pytest.approx(1.818, abs=0.001)
    inches = BiometricFact("h", "height", 67, "in", observed_at=None)
    assert demographics(snap(biometrics=(inches,))).height_cm == pytest.approx(170.18)
    no_height = demographics(snap(biometrics=(weight(70, 10),)))
    assert no_height.bsa_m2 is None


def test_paediatric_dose_limit_needs_a_recent_weight(knowledge: Knowledge, ruleset: RuleSet) -> None:
    order = MedicationFact("m1", "acetaminophen", dose="500 mg", route="oral", frequency="every 6 hours", proposed=True)
    child = date(2023, 6, 1)
    request = EvaluationRequest((order,))
    fresh = evaluate(snap(birth_date=child, biometrics=(weight(12, 10),)), request, ruleset, knowledge)
    assert any(a.kind is AlertKind.DOSE_RANGE and "acetaminophen-pediatric" in a.rule_id for a in fresh.alerts)
    old = evaluate(snap(birth_date=child, biometrics=(weight(12, 120),)), request, ruleset, knowledge)
    assert not old.complete
    assert any("120 days old" in e.reason for e in old.rule_errors if e.insufficient_data)
    assert not any(a.kind is AlertKind.DOSE_RANGE for a in old.alerts)


def test_unknown_age_is_insufficient_data_for_age_specific_limits(knowledge: Knowledge, ruleset: RuleSet) -> None:
    order = MedicationFact("m1", "acetaminophen", dose="500 mg", route="oral", frequency="every 6 hours", proposed=True)
    result = evaluate(snap(), EvaluationRequest((order,)), ruleset, knowledge)
    assert not result.complete
    assert any("age unknown" in e.reason for e in result.rule_errors)
    adult = evaluate(snap(birth_date=date(1980, 1, 1)), EvaluationRequest((order,)), ruleset, knowledge)
    assert not any("age unknown" in e.reason for e in adult.rule_errors)


# -- pregnancy and lactation --------------------------------------------------------------------------


def test_gestational_age_moves_on_from_when_it_was_recorded() -> None:
    recorded = PregnancyFact("pregnant", NOW - timedelta(days=30), gestational_days=18 * 7 + 2)
    d = demographics(snap(pregnancy=recorded))
    assert (d.gestational_days, d.gestational_weeks, d.trimester, d.pregnant) == (158, 22, 2, True)
    due = NOW.date() + timedelta(days=70)
    by_edd = demographics(snap(pregnancy=PregnancyFact("pregnant", NOW, estimated_delivery=due)))
    assert (by_edd.gestational_weeks, by_edd.trimester) == (30, 3)
    first = demographics(snap(pregnancy=PregnancyFact("pregnant", NOW, gestational_days=13 * 7 + 6)))
    assert first.trimester == 1


def test_out_of_date_pregnancy_and_lactation_are_unknown() -> None:
    over = demographics(snap(pregnancy=PregnancyFact("pregnant", NOW - timedelta(days=200), gestational_days=20 * 7)))
    assert over.pregnant is None and "ended" in (over.pregnancy_problem or "")
    undated_ga = demographics(snap(pregnancy=PregnancyFact("pregnant", NOW - timedelta(days=320))))
    assert undated_ga.pregnant is None
    negative = demographics(snap(pregnancy=PregnancyFact("not_pregnant", NOW - timedelta(days=92))))
    assert negative.pregnant is None and "91" in (negative.pregnancy_problem or "")
    assert demographics(snap(pregnancy=PregnancyFact("not_pregnant", NOW - timedelta(days=90)))).pregnant is False
    assert demographics(snap(lactation=LactationFact(True, NOW - timedelta(days=181)))).lactating is None
    assert demographics(snap(lactation=LactationFact(True, NOW - timedelta(days=10)))).lactating is True
    # Undated (the plain flags, older records): taken as current.
    assert demographics(snap(pregnancy=PregnancyFact("not_pregnant"))).pregnant is False


def test_the_fact_model_carries_them(knowledge: Knowledge) -> None:
    s = snap(
        birth_date=date(1995, 2, 1),
        sex="female",
        pregnancy=PregnancyFact("pregnant", NOW, gestational_days=150),
        lactation=LactationFact(False, NOW),
        biometrics=(weight(70, 1), BiometricFact("h", "height_cm", 165, "cm", observed_at=NOW)),
    )
    data = build_facts(s, EvaluationRequest(), knowledge).data
    assert data["age"] == 31 and data["demographics"]["age_days"] == (NOW.date() - date(1995, 2, 1)).days
    assert data["pregnant"] is True and data["pregnancy"] == {
        "status": "pregnant", "gestational_days": 150, "gestational_weeks": 21, "trimester": 2
    }
    assert data["lactating"] is False and data["weight_kg"] == 70 and data["height_cm"] == 165
    assert data["bsa_m2"] == pytest.approx(1.79, abs=0.01)
    empty = build_facts(snap(), EvaluationRequest(), knowledge).data
    assert "pregnant" not in empty and empty["pregnancy"] == {} and "lactating" not in empty


def test_nsaid_rule_by_gestational_age(knowledge: Knowledge, ruleset: RuleSet) -> None:
    order = EvaluationRequest((MedicationFact("m1", "ibuprofen 400 mg", proposed=True),))

    def rules(**kw: Any) -> tuple[set[str], set[str]]:
        r = evaluate(snap(sex="female", **kw), order, ruleset, knowledge)
        return {a.rule_id for a in r.alerts}, {e.rule_id for e in r.rule_errors if e.insufficient_data}

    fired, _ = rules(pregnancy=PregnancyFact("pregnant", NOW, gestational_days=20 * 7))
    assert "pregnancy-nsaid-20-weeks" in fired
    fired, _ = rules(pregnancy=PregnancyFact("pregnant", NOW, gestational_days=19 * 7 + 6))
    assert "pregnancy-nsaid-20-weeks" not in fired
    fired, missing = rules(pregnant=True)
    assert "pregnancy-nsaid-20-weeks" not in fired and "pregnancy-nsaid-20-weeks" in missing
    fired, missing = rules(pregnancy=PregnancyFact("not_pregnant", NOW - timedelta(days=120)))
    assert "pregnancy-nsaid-20-weeks" in missing


def test_lactation_rule(knowledge: Knowledge, ruleset: RuleSet) -> None:
    order = EvaluationRequest((MedicationFact("m1", "amiodarone 200 mg", proposed=True),))
    nursing = evaluate(snap(sex="female", lactation=LactationFact(True, NOW)), order, ruleset, knowledge)
    assert "lactation-amiodarone" in {a.rule_id for a in nursing.alerts}
    unknown = evaluate(snap(sex="female"), order, ruleset, knowledge)
    assert "lactation-amiodarone" in {e.rule_id for e in unknown.rule_errors if e.insufficient_data}


# -- FHIR -------------------------------------------------------------------------------------------


def _obs(rid: str, code: str, **value: Any) -> dict[str, Any]:
    return {
        "resource": {
            "resourceType": "Observation", "id": rid, "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": "2026-02-20", **value,
        }
    }


def _bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    patient = {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1992-04-10"}}
    return {"resourceType": "Bundle", "type": "collection", "entry": [patient, *entries]}


PREGNANT = {"valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA15173-0"}]}}
WEEKS = {"valueQuantity": {"value": 21, "unit": "weeks", "system": "http://unitsofmeasure.org", "code": "wk"}}


def test_fhir_pregnancy_with_a_gestational_age_component_and_body_size() -> None:
    status = _obs("preg", "82810-3", **PREGNANT)
    status["resource"]["component"] = [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "49051-6"}]}, **WEEKS}
    ]
    data = parse_patient_data(_bundle(
        status,
        _obs("bf", "63895-7", valueBoolean=True),
        _obs("ht", "8302-2", valueQuantity={"value": 165, "unit": "cm", "system": "http://unitsofmeasure.org",
                                            "code": "cm"}),
        _obs("wt", "29463-7", valueQuantity={"value": 68, "unit": "kg", "system": "http://unitsofmeasure.org",
                                             "code": "kg"}),
    ))
    s = data.snapshot("Patient/p1", "t", on=NOW.date())
    d = demographics(PatientSnapshot(**{**_fields(s), "as_of": NOW}))
    assert d.age_years == 33 and d.gestational_weeks == 22 and d.pregnant is True  # 21 weeks 9 days ago
    assert d.lactating is True and d.weight_kg == 68 and d.height_cm == 165


def test_fhir_standalone_edd_and_days() -> None:
    data = parse_patient_data(_bundle(
        _obs("preg", "82810-3", **PREGNANT),
        _obs("edd", "11778-8", valueDateTime="2026-06-01"),
    ))
    assert data.pregnancy is not None and data.pregnancy.estimated_delivery == date(2026, 6, 1)
    days = parse_patient_data(_bundle(
        _obs("preg", "82810-3", **PREGNANT),
        _obs("ga", "49052-4", valueQuantity={"value": 150, "unit": "day", "system": "http://unitsofmeasure.org",
                                             "code": "d"}),
    ))
    assert days.pregnancy is not None and days.pregnancy.gestational_days == 150
    # A gestational age without a pregnancy status is not read as a pregnancy (a newborn's, an old one).
    alone = parse_patient_data(_bundle(_obs("ga", "49051-6", **WEEKS)))
    assert alone.pregnancy is None and alone.pregnant is None
    # A gestational age in another unit is noted, not guessed.
    bad = parse_patient_data(_bundle(
        _obs("preg", "82810-3", **PREGNANT),
        _obs("ga", "49051-6", valueQuantity={"value": 5, "unit": "mo", "system": "http://unitsofmeasure.org",
                                             "code": "mo"}),
    ))
    assert bad.pregnancy is not None and bad.pregnancy.gestational_days is None
    assert any("49051-6" in n for n in bad.notes)


def test_synthea_body_height_is_read() -> None:
    doc = json.loads((PROJECT_ROOT / "tests" / "data" / "fhir" / "synthea-douglas-walsh.json").read_text())
    data = parse_patient_data(doc)
    assert any(r.reading_type == "height_cm" and r.code == "8302-2" for r in data.readings)


def _fields(s: PatientSnapshot) -> dict[str, Any]:
    return {k: getattr(s, k) for k in s.__slots__}


# -- CLI and --cases --------------------------------------------------------------------------------


def _check(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert praneya(["check", "--json", *FILES, *args]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_check_flags(capsys: pytest.CaptureFixture[str]) -> None:
    out = _check(["--propose", "ibuprofen 400 mg", "--sex", "female", "--pregnant", "--gestational-weeks", "22+3",
                  "--birth-date", "1990-03-02", "--weight", f"70kg@{date.today().isoformat()}", "--height", "170cm",
                  "--lab", "egfr=90"], capsys)
    assert "pregnancy-nsaid-20-weeks" in {a["rule_id"] for a in out["alerts"]}
    out = _check(["--propose", "lithium carbonate 300 mg", "--sex", "female", "--lactating"], capsys)
    assert "lactation-lithium" in {a["rule_id"] for a in out["alerts"]}


def test_check_flags_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert praneya(["check", *FILES, "--propose", "ibuprofen", "--gestational-weeks", "22"]) != 0
    assert "--gestational-weeks goes with --pregnant" in capsys.readouterr().err
    assert praneya(["check", *FILES, "--propose", "ibuprofen", "--birth-date", "2999-01-01"]) != 0
    assert "birth_date: is in the future" in capsys.readouterr().err
    assert praneya(["check", *FILES, "--propose", "ibuprofen", "--weight", "70 parsecs"]) != 0
    assert "weight.unit" in capsys.readouterr().err


def test_cases_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        {"id": "a", "proposed": [{"name": "ibuprofen 400 mg"}], "sex": "female", "as_of": "2026-03-01",
         "birth_date": "1990-01-01", "labs": {"egfr": 90},
         "pregnancy": {"status": "pregnant", "gestational_weeks": 18, "recorded_on": "2026-02-01"}},
        {"id": "b", "proposed": [{"name": "acetaminophen", "dose": "500 mg", "route": "oral",
                                  "frequency": "every 6 hours"}],
         "as_of": "2026-03-01", "birth_date": "2023-06-01",
         "weight": {"value": 12, "unit": "kg", "taken_at": "2026-02-20"}, "height": {"value": 90, "unit": "cm"}},
        {"id": "c", "proposed": [{"name": "ibuprofen"}], "age": 30, "pregnant": True},  # old keys still work
        {"id": "d", "proposed": [{"name": "ibuprofen"}], "pregnancy": {"status": "pregnant", "gestational_weeks": 46}},
        {"id": "e", "proposed": [{"name": "ibuprofen"}], "pregnant": False, "pregnancy": {"status": "pregnant"}},
        {"id": "f", "proposed": [{"name": "ibuprofen"}], "weight": {"value": 70, "unit": "kg", "when": "x"}},
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert praneya(["check", *FILES, "--cases", str(path)]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_id = {o.get("id", o.get("line")): o for o in out}
    assert "pregnancy-nsaid-20-weeks" in {a["rule_id"] for a in by_id["a"]["alerts"]}  # 18+0 a month ago: 22 weeks
    assert any(a["rule_id"] == "kb:dose:acetaminophen-pediatric" for a in by_id["b"]["alerts"])
    assert "alerts" in by_id["c"]
    assert "pregnancy.gestational_weeks" in by_id[4]["error"]
    assert "disagrees with pregnant" in by_id[5]["error"]
    assert "weight: unknown field 'when'" in by_id[6]["error"]


def test_case_reader_refuses_weight_twice() -> None:
    with pytest.raises(CaseError, match="not both"):
        case_from_json({"id": "x", "labs": {"weight_kg": 70}, "weight": 71})

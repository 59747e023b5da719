"""Hepatic function (Child-Pugh class) and hepatic dosing (issue 11, section 3, the hepatic part)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.adhoc import CaseError, case_from_json, flags_case
from engine.evaluate import evaluate
from engine.hepatic import (
    HEPATIC_MAX_AGE,
    HepaticKnowledgeError,
    child_pugh,
    child_pugh_class,
    hepatic_knowledge_from_document,
    shipped_hepatic_knowledge,
)
from engine.knowledge import Knowledge, load_knowledge_files
from engine.model import (
    Alert,
    AlertKind,
    BiometricFact,
    EvaluationRequest,
    EvaluationResult,
    MedicationFact,
    PatientSnapshot,
    Severity,
)
from engine.rules import RuleSet

ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE: Knowledge = load_knowledge_files(ROOT / "rules" / "knowledge")
NO_RULES = RuleSet.build([], "none")
NOW = datetime.now(UTC)  # evaluate() takes the evaluation time from the real clock
# A class in the middle of each band's points, so that the score->class step is exercised too.
SCORE = {"A": 5, "B": 8, "C": 12}


# --------------------------------------------------------------------------------------------------
# Score -> class (Pugh RN et al. Br J Surg 1973;60:646-9: A 5-6, B 7-9, C 10-15 points)


@pytest.mark.parametrize(
    ("score", "klass"), [(5, "A"), (6, "A"), (7, "B"), (9, "B"), (10, "C"), (15, "C")]
)  # fmt: skip
def test_score_to_class_at_every_edge(score: int, klass: str) -> None:
    assert child_pugh_class(score) == klass


@pytest.mark.parametrize("score", [4, 16, 7.5, 0, -1])
def test_an_impossible_score_has_no_class(score: float) -> None:
    with pytest.raises(ValueError, match="5 to 15"):
        child_pugh_class(score)


def _cp(value: float, *, kind: str = "child_pugh_score", days_ago: float | None = 1) -> BiometricFact:
    when = NOW - timedelta(days=days_ago) if days_ago is not None else None
    return BiometricFact("r-cp", kind, value, "{score}", observed_at=when)


def _snapshot(*readings: BiometricFact, meds: tuple[MedicationFact, ...] = ()) -> PatientSnapshot:
    return PatientSnapshot("p1", "t1", age=60, sex="male", biometrics=readings, medications=meds)


def test_the_latest_recent_assessment_is_used_and_an_old_one_is_not() -> None:
    older = BiometricFact("old", "child_pugh_score", 6, None, observed_at=NOW - timedelta(days=20))
    newer = BiometricFact("new", "child_pugh_score", 11, None, observed_at=NOW - timedelta(days=2))
    cp = child_pugh(_snapshot(older, newer), NOW)
    assert (cp.klass, cp.score, cp.reading_id) == ("C", 11, "new")
    stale = child_pugh(_snapshot(_cp(8, days_ago=HEPATIC_MAX_AGE.days + 1)), NOW)
    assert stale.klass is None and stale.recorded and "91 days old" in str(stale.problem)
    edge = child_pugh(_snapshot(_cp(8, days_ago=HEPATIC_MAX_AGE.days - 1)), NOW)
    assert edge.klass == "B"
    # a class given without its score (encoded 1-3 for A-C, see engine.hepatic.CLASS_CODES)
    assert child_pugh(_snapshot(_cp(3, kind="child_pugh_class")), NOW).klass == "C"
    implausible = child_pugh(_snapshot(_cp(20)), NOW)
    assert implausible.klass is None and implausible.recorded and "plausible" in str(implausible.problem)
    none = child_pugh(_snapshot(), NOW)
    assert none.klass is None and not none.recorded


# --------------------------------------------------------------------------------------------------
# Every band fires in its classes and not in the others


def _run(
    name: str, dose: str | None, frequency: str | None, *readings: BiometricFact, route: str | None = "PO",
    current: bool = False,
) -> EvaluationResult:  # fmt: skip
    med = MedicationFact("m1", name, dose, route if dose else None, frequency, proposed=not current)
    snapshot = _snapshot(*readings, meds=(med,) if current else ())
    request = EvaluationRequest(proposed_medications=() if current else (med,))
    return evaluate(snapshot, request, NO_RULES, KNOWLEDGE)


def _hepatic(result: EvaluationResult) -> list[Alert]:
    return [a for a in result.alerts if a.rule_id.startswith("kb:hepatic:")]


def _hepatic_errors(result: EvaluationResult) -> list[str]:
    return [e.reason for e in result.rule_errors if e.rule_id.startswith("kb:hepatic:")]


def _band_cases() -> list[Any]:
    knowledge = shipped_hepatic_knowledge()
    assert knowledge is not None
    cases = []
    for ingredient, bands in knowledge.bands.items():
        for band in bands:
            for klass in "ABC":
                cases.append(pytest.param(ingredient, band.id, klass, klass in band.classes, id=f"{band.id}-{klass}"))
    return cases


@pytest.mark.parametrize(("ingredient", "band_id", "klass", "fires"), _band_cases())
def test_each_band_fires_in_its_classes_only(ingredient: str, band_id: str, klass: str, fires: bool) -> None:
    # No dose: a reduce band cannot compare the order and says the adjustment passively (MODERATE).
    result = _run(ingredient, None, None, _cp(SCORE[klass]))
    ids = {a.rule_id for a in _hepatic(result)}
    assert (f"kb:hepatic:{band_id}" in ids) is fires, (ids, _hepatic_errors(result))
    assert not _hepatic_errors(result)


def test_alert_kinds_and_severities_follow_the_policy() -> None:
    (contra,) = _hepatic(_run("nevirapine", "200 mg", "bid", _cp(SCORE["B"])))
    assert contra.kind is AlertKind.DRUG_CONDITION and contra.severity is Severity.CRITICAL and contra.interruptive
    assert "Viramune" in contra.references[0] and "Contraindications" in contra.references[0]
    assert any("Pugh RN" in r for r in contra.references)  # the class was derived from the score
    assert "8 points" in contra.detail and set(contra.involved_ids) == {"m1", "r-cp"}
    (avoid,) = _hepatic(_run("rivaroxaban", "20 mg", "daily", _cp(SCORE["C"])))
    assert avoid.kind is AlertKind.DRUG_CONDITION and avoid.severity is Severity.HIGH
    assert "Xarelto" in avoid.references[0] and "8.6" in avoid.references[0]
    (caution,) = _hepatic(_run("oxycodone", "10 mg", "q12h", _cp(SCORE["A"])))
    assert caution.kind is AlertKind.DOSE_RANGE and caution.severity is Severity.MODERATE and not caution.interruptive
    assert "1/3 to 1/2" in caution.references[0] or "one third" in caution.detail


def test_tramadol_over_the_child_pugh_c_maximum_and_within_it() -> None:
    severe = _cp(SCORE["C"])
    (over,) = _hepatic(_run("tramadol", "100 mg", "q6h", severe))
    assert over.kind is AlertKind.DOSE_RANGE and over.severity is Severity.HIGH
    assert over.rule_id == "kb:hepatic:tramadol-cp-c" and "single dose 100 mg (maximum 50 mg)" in over.summary
    assert "Ultram" in over.references[0]
    (daily,) = _hepatic(_run("tramadol", "50 mg", "q6h", severe))
    assert "daily dose 200 mg (maximum 100 mg)" in daily.summary
    assert not _hepatic(_run("tramadol", "50 mg", "q12h", severe))
    # the same order in class B is quiet for the hepatic check
    assert not _hepatic(_run("tramadol", "100 mg", "q6h", _cp(SCORE["B"])))


@pytest.mark.parametrize(
    ("name", "klass", "over", "within", "rule"),
    [
        (("zolpidem", "10 mg", "qhs"), "A", True, ("zolpidem", "5 mg", "qhs"), "zolpidem-cp-ab"),
        (("ondansetron", "8 mg", "bid"), "C", True, ("ondansetron", "8 mg", "daily"), "ondansetron-cp-c"),
        (("escitalopram", "20 mg", "daily"), "A", True, ("escitalopram", "10 mg", "daily"), "escitalopram-hepatic"),
        (("solifenacin", "10 mg", "daily"), "B", True, ("solifenacin", "5 mg", "daily"), "solifenacin-cp-b"),
        (("celecoxib", "200 mg", "bid"), "B", True, ("celecoxib", "100 mg", "bid"), "celecoxib-cp-b"),
        (("eszopiclone", "3 mg", "qhs"), "C", True, ("eszopiclone", "1 mg", "qhs"), "eszopiclone-cp-c"),
    ],
)
def test_reduce_bands_compare_the_orders_dose(
    name: tuple[str, str, str], klass: str, over: bool, within: tuple[str, str, str], rule: str
) -> None:
    (alert,) = _hepatic(_run(*name, _cp(SCORE[klass])))
    assert alert.rule_id == f"kb:hepatic:{rule}" and alert.severity is Severity.HIGH and "maximum" in alert.summary
    quiet = _run(*within, _cp(SCORE[klass]))
    assert not _hepatic(quiet) and not _hepatic_errors(quiet)


def test_a_band_for_another_route_does_not_apply() -> None:
    topical = _run("ketoconazole", "1 application", "daily", _cp(SCORE["A"]), route="topical")
    assert not _hepatic(topical)
    (oral,) = _hepatic(_run("ketoconazole", "200 mg", "daily", _cp(SCORE["A"])))
    assert oral.rule_id == "kb:hepatic:ketoconazole-hepatic" and oral.severity is Severity.CRITICAL


def test_a_combination_product_is_checked_by_its_ingredient() -> None:
    (alert,) = _hepatic(_run("Zepatier", None, None, _cp(SCORE["B"])))
    assert alert.rule_id == "kb:hepatic:elbasvir-cp-bc" and alert.severity is Severity.CRITICAL


# --------------------------------------------------------------------------------------------------
# Missing, stale, undated


def test_missing_class_for_a_drug_contraindicated_in_a_class_is_insufficient_data() -> None:
    result = _run("carvedilol", "6.25 mg", "bid")
    assert not result.complete and not _hepatic(result)
    (error,) = [e for e in result.rule_errors if e.rule_id == "kb:hepatic:carvedilol"]
    assert error.insufficient_data and "no Child-Pugh assessment" in error.reason


def test_missing_class_for_a_drug_with_only_avoid_or_dose_bands_is_quiet() -> None:
    for name, dose, freq in (("zolpidem", "5 mg", "qhs"), ("escitalopram", "10 mg", "daily")):
        result = _run(name, dose, freq)
        assert not _hepatic(result) and not _hepatic_errors(result), name


def test_a_stale_assessment_is_insufficient_data_for_every_drug_with_bands() -> None:
    stale = _cp(SCORE["C"], days_ago=120)
    for name, dose, freq in (("zolpidem", "10 mg", "qhs"), ("nevirapine", "200 mg", "bid")):
        result = _run(name, dose, freq, stale)
        assert not _hepatic(result) and not result.complete, name
        (reason,) = _hepatic_errors(result)
        assert "120 days old" in reason, reason


def test_an_implausible_score_is_insufficient_data_not_safe() -> None:
    result = _run("zolpidem", "10 mg", "qhs", _cp(3))
    assert not _hepatic(result) and not result.complete
    assert "plausible" in _hepatic_errors(result)[0]


def test_an_undated_assessment_is_used_and_said_to_be_undated() -> None:
    (alert,) = _hepatic(_run("nevirapine", "200 mg", "bid", _cp(SCORE["C"], days_ago=None)))
    assert "was not recorded" in alert.detail


def test_a_current_medication_is_checked_but_never_made_incomplete() -> None:
    (alert,) = _hepatic(_run("valproic acid", "500 mg", "bid", _cp(SCORE["A"]), current=True))
    assert alert.rule_id == "kb:hepatic:valproate-hepatic"
    assert _run("valproic acid", "500 mg", "bid", current=True).complete
    stale = _run("valproic acid", "500 mg", "bid", _cp(SCORE["A"], days_ago=200), current=True)
    assert stale.complete and not _hepatic(stale)


# --------------------------------------------------------------------------------------------------
# The knowledge file


def test_the_core_set_cites_labels_and_every_ingredient_is_known() -> None:
    knowledge = shipped_hepatic_knowledge()
    assert knowledge is not None and len(knowledge.bands) >= 15
    assert KNOWLEDGE.hepatic is not None and KNOWLEDGE.hepatic.version == knowledge.version
    for ingredient, bands in knowledge.bands.items():
        assert KNOWLEDGE.vocabulary.normalize_drug(ingredient).recognised, ingredient
        for band in bands:
            assert band.source.startswith("FDA label: "), band.id
            if band.action == "contraindicated":
                assert "Contraindications" in band.source, band.id
                assert knowledge.unknown[ingredient] == "insufficient", ingredient


_BAND = {"id": "x", "classes": ["C"], "action": "avoid", "advice": "a", "source": "s"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": ["D"]}, "classes"),
        ({"classes": []}, "classes"),
        ({"action": "maybe"}, "action"),
        ({"source": None}, "source"),
        ({"max_daily": "5 mg"}, "reduce"),
        ({"action": "reduce"}, "max_dose or max_daily"),
        ({"action": "reduce", "max_daily": "5 furlongs"}, "max_daily"),
        ({"action": "reduce", "max_daily": "1 mg/kg"}, "positive amount"),
    ],
)
def test_malformed_bands_are_refused(change: dict[str, Any], message: str) -> None:
    row = {k: v for k, v in (_BAND | change).items() if v is not None}
    with pytest.raises(HepaticKnowledgeError, match=message):
        hepatic_knowledge_from_document({"ingredients": {"tramadol": {"bands": [row]}}})


def test_overlapping_bands_and_an_unknown_policy_are_refused() -> None:
    two = [_BAND, _BAND | {"id": "y", "classes": ["B", "C"]}]
    with pytest.raises(HepaticKnowledgeError, match="overlaps"):
        hepatic_knowledge_from_document({"ingredients": {"tramadol": {"bands": two}}})
    with pytest.raises(HepaticKnowledgeError, match="unknown"):
        hepatic_knowledge_from_document({"ingredients": {"tramadol": {"bands": [_BAND], "unknown": "maybe"}}})
    quiet = hepatic_knowledge_from_document(
        {"ingredients": {"tramadol": {"bands": [_BAND | {"action": "contraindicated"}], "unknown": "quiet"}}}
    )
    assert quiet.unknown["tramadol"] == "quiet"


# --------------------------------------------------------------------------------------------------
# Input: --cases lines and CLI flags


def test_cases_lines_carry_the_class_the_score_and_the_date() -> None:
    _, snap, _ = case_from_json({"id": 1, "child_pugh": "b"})
    assert child_pugh(snap, NOW).klass == "B"
    _, snap, _ = case_from_json({"id": 1, "child_pugh_score": 11})
    assert (child_pugh(snap, NOW).klass, child_pugh(snap, NOW).score) == ("C", 11)
    old = (NOW - timedelta(days=100)).date().isoformat()
    _, snap, _ = case_from_json({"id": 1, "child_pugh": {"class": "C", "score": 10, "date": old}})
    assert child_pugh(snap, NOW).klass is None and "days old" in str(child_pugh(snap, NOW).problem)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"child_pugh": "D"}, "child_pugh: a Child-Pugh class"),
        ({"child_pugh_score": 16}, "child_pugh_score: a whole number of points from 5 to 15"),
        ({"child_pugh_score": 7.5}, "child_pugh_score"),
        ({"child_pugh": "A", "child_pugh_score": 8}, "does not match"),
        ({"child_pugh": {"class": "B", "date": "next week"}}, "child_pugh.date: expected YYYY-MM-DD"),
        ({"child_pugh": {"class": "B", "date": "2999-01-01"}}, "in the future"),
        ({"child_pugh": {"grade": "B"}}, "unknown field 'grade'"),
    ],
)
def test_bad_child_pugh_input_names_the_field(case: dict[str, Any], message: str) -> None:
    with pytest.raises(CaseError, match=message):
        case_from_json({"id": 1, **case}, line=3)


def test_flags_make_the_same_case() -> None:
    flags: dict[str, Any] = dict(
        meds=[], proposed=["tramadol"], allergies=[], conditions=[], labs={}, foods=[], age=None, sex=None,
        pregnant=None, tier="PREMIUM",
    )  # fmt: skip
    case = flags_case(**flags, child_pugh="C", child_pugh_score=12, child_pugh_date="2026-01-02")
    assert case["child_pugh"] == {"class": "C", "score": 12, "date": "2026-01-02"}
    assert "child_pugh" not in flags_case(**flags)


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.doors.cli", "check", "--knowledge", str(ROOT / "rules" / "knowledge"), *args],
        cwd=ROOT, capture_output=True, text=True, input=stdin, timeout=300, check=False,
    )  # fmt: skip


def test_cli_child_pugh_flags_and_cases() -> None:
    out = _cli("--child-pugh-score", "11", "--propose", "nevirapine", "--json")
    assert out.returncode == 0, out.stderr
    alerts = json.loads(out.stdout)["alerts"]
    assert any(a["rule_id"] == "kb:hepatic:nevirapine-cp-bc" and a["severity"] == "CRITICAL" for a in alerts)
    text_out = _cli("--child-pugh", "b", "--propose", "rivaroxaban")
    assert "kb:hepatic:rivaroxaban-cp-bc" in text_out.stdout, text_out.stderr
    bad = _cli("--child-pugh-score", "20", "--propose", "tramadol")
    assert bad.returncode != 0 and "--child-pugh-score" in bad.stderr
    lines = "\n".join(
        json.dumps(c)
        for c in (
            {"id": "c", "proposed": [{"name": "tramadol", "dose": "100 mg", "route": "PO", "frequency": "q6h"}],
             "child_pugh": "C"},
            {"id": "x", "proposed": ["carvedilol"]},
        )
    )  # fmt: skip
    batch = _cli("--cases", "-", stdin=lines)
    assert batch.returncode == 0, batch.stderr
    by_id = {r["id"]: r for r in map(json.loads, batch.stdout.splitlines())}
    assert any(a["rule_id"] == "kb:hepatic:tramadol-cp-c" for a in by_id["c"]["alerts"])
    assert not by_id["x"]["complete"]
    assert any(e["rule_id"] == "kb:hepatic:carvedilol" for e in by_id["x"]["rule_errors"])


# --------------------------------------------------------------------------------------------------
# Through the real gRPC server: a Child-Pugh score stored with PutBiometricReading


@pytest.mark.db
def test_a_stored_child_pugh_score_drives_the_hepatic_bands(
    grpc_service: Any, make_patient: Callable[..., str]
) -> None:
    from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
    from tests.test_grpc_service import ADVISOR, TENANT

    svc, stub = grpc_service, grpc_service.stub()
    patient = make_patient(TENANT)
    proposed = [pb.ProposedMedication(name="tramadol", dose="100 mg", route="oral", frequency="q6h")]
    before = stub.EvaluateSafety(
        pb.EvaluateSafetyRequest(patient_id=patient, proposed_medications=proposed),
        metadata=svc.md(ADVISOR),
        timeout=30,
    )
    assert not any(a.rule_id.startswith("kb:hepatic:") for a in before.alerts)
    reading = pb.BiometricReading(reading_type="child_pugh_score", value=11, unit="{score}")
    stub.PutBiometricReading(
        pb.PutBiometricReadingRequest(patient_id=patient, reading=reading), metadata=svc.md(ADVISOR), timeout=15
    )
    after = stub.EvaluateSafety(
        pb.EvaluateSafetyRequest(patient_id=patient, proposed_medications=proposed),
        metadata=svc.md(ADVISOR),
        timeout=30,
    )
    (alert,) = [a for a in after.alerts if a.rule_id.startswith("kb:hepatic:")]
    assert alert.rule_id == "kb:hepatic:tramadol-cp-c" and alert.severity == pb.HIGH and alert.interruptive
    assert alert.kind == pb.DOSE_RANGE and "maximum 50 mg" in alert.summary
    assert "Child-Pugh class C, 11 points" in alert.detail
    assert "hepatic:" in after.knowledge_version

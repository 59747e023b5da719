"""Alerts clinicians trust: the same ingredient twice is a duplicate order (not an interaction with
itself), one alert per finding with every source and a count of what it absorbed, and a clinician's
authored text over the knowledge base's — on the shipped rules and knowledge."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.doors.cli import main as praneya
from engine.evaluate import evaluate
from engine.knowledge import load_knowledge_files
from engine.model import (
    AlertKind,
    AllergyFact,
    EvaluationRequest,
    EvaluationResult,
    MedicationFact,
    PatientSnapshot,
    Severity,
)
from engine.rules import Rule, RuleSet, load_rule_files
from store.config import PROJECT_ROOT

KNOWLEDGE = load_knowledge_files(PROJECT_ROOT / "rules" / "knowledge")
RULES = RuleSet.build([r.rule for r in load_rule_files([PROJECT_ROOT / "rules"]) if r.rule is not None], "shipped")
FILES = ["--knowledge", str(PROJECT_ROOT / "rules" / "knowledge"), "--rules", str(PROJECT_ROOT / "rules")]


def _run(
    current: tuple[str, ...],
    proposed: tuple[str, ...] = (),
    allergies: tuple[str, ...] = (),
    ruleset: RuleSet = RULES,
    age: int | None = None,
) -> EvaluationResult:
    snapshot = PatientSnapshot(
        "p",
        "t",
        age=age,
        medications=tuple(MedicationFact(f"m{i}", n) for i, n in enumerate(current)),
        allergies=tuple(AllergyFact(f"a{i}", n) for i, n in enumerate(allergies)),
    )
    request = EvaluationRequest(
        proposed_medications=tuple(MedicationFact(f"p{i}", n, proposed=True) for i, n in enumerate(proposed))
    )
    return evaluate(snapshot, request, ruleset, KNOWLEDGE)


def _check(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert praneya(["check", "--json", *FILES, *args]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_proposing_warfarin_to_a_patient_on_warfarin_is_one_duplicate_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = _check(["--med", "warfarin", "--propose", "warfarin"], capsys)
    (alert,) = result["alerts"]
    assert alert["kind"] == "DUPLICATE_THERAPY"
    assert alert["summary"] == "warfarin is already on the medication list"
    assert alert["severity"] == "HIGH"  # an anticoagulant: a high-alert medication
    assert alert["involved"] == ["med-1", "proposed-1"]
    assert not [a for a in result["alerts"] if a["kind"] == "DRUG_DRUG_INTERACTION"]


def test_a_duplicate_of_a_drug_that_is_not_high_alert_is_moderate() -> None:
    result = _run(("omeprazole 20 mg",), ("Prilosec 20 mg",))
    (alert,) = [a for a in result.alerts if a.kind is AlertKind.DUPLICATE_THERAPY]
    assert alert.severity is Severity.MODERATE and not alert.interruptive
    assert alert.rule_id == "kb:duplicate-ingredient" and alert.involved_ids == ("m0", "p0")
    assert not [a for a in result.alerts if a.kind is AlertKind.DRUG_DRUG_INTERACTION]


def test_two_different_ingredients_of_one_class_still_meet_class_rules() -> None:
    result = _run(("ibuprofen 400 mg",), ("naproxen 500 mg",))
    (alert,) = result.alerts
    # The KB's NSAID + NSAID class pair and the clinicians' duplicate-nsaid rule: one finding.
    assert alert.kind is AlertKind.DUPLICATE_THERAPY and alert.rule_id == "duplicate-nsaid"
    assert alert.summary == "Duplicate therapy: two or more NSAIDs"
    assert "Therapeutic duplication (clinical consensus); FDA class labeling" in alert.references
    assert alert.suppressed == 1 and result.suppressed_duplicates == 1
    two_anticoagulants = _run(("warfarin",), ("apixaban",))
    assert [(a.kind, a.rule_id) for a in two_anticoagulants.alerts] == [
        (AlertKind.DUPLICATE_THERAPY, "duplicate-anticoagulant")
    ]


def test_an_interaction_is_one_alert_whichever_copy_of_a_duplicated_drug_it_pairs() -> None:
    result = _run(("warfarin 5 mg", "ibuprofen 400 mg"), ("warfarin 2 mg",))
    interactions = [a for a in result.alerts if a.kind is AlertKind.DRUG_DRUG_INTERACTION]
    (ddi,) = interactions
    assert ddi.rule_id == "ddi-warfarin-nsaid" and ddi.involved_ids == ("m0", "m1", "p0")
    # The rule, and two KB pairs (warfarin with an NSAID; anticoagulant with an NSAID, by mechanism)
    # each met once for each warfarin order: four folded in.
    assert ddi.suppressed == 4
    assert "FDA prescribing information: warfarin (Coumadin)" in ddi.references
    (dup,) = [a for a in result.alerts if a.kind is AlertKind.DUPLICATE_THERAPY]
    assert dup.involved_ids == ("m0", "p0")


def test_bactrim_with_a_sulfa_allergy_is_one_critical_alert(capsys: pytest.CaptureFixture[str]) -> None:
    result = _check(["--allergy", "sulfa", "--propose", "Bactrim"], capsys)
    (alert,) = result["alerts"]
    assert alert["severity"] == "CRITICAL" and alert["kind"] == "DRUG_ALLERGY"
    assert alert["rule_id"] == "allergy-sulfonamide-antibiotic"  # the clinicians' words
    assert alert["suppressed"] == 1 and result["suppressed_duplicates"] == 1
    assert "Praneya allergen knowledge: sulfa" in alert["references"]
    assert any(r.startswith("Khan DA") for r in alert["references"])


def _terse_rule(severity: str) -> Rule:
    return Rule.from_dict(
        {
            "id": "local-amoxicillin-pcn",
            "version": 1,
            "title": "Amoxicillin and penicillin allergy",
            "type": "ALLERGY_CHECK",
            "kind": "DRUG_ALLERGY",
            "severity": severity,
            "applies_to": {"classes": ["penicillin"]},
            "when": {"in": ["penicillin", {"var": "allergens"}]},
            "alert": {"summary": "Ask the allergy team first", "references": ["Local policy 12"]},
        }
    )


@pytest.mark.parametrize("severity", ["MODERATE", "CRITICAL"])
def test_an_authored_rule_speaks_for_the_finding_over_the_knowledge_base(severity: str) -> None:
    # The KB's text is longer ("richer"), and at MODERATE the rule grades lower than the KB's
    # CRITICAL: the grade is the highest of any source, the words are the clinician's.
    result = _run((), ("amoxicillin",), ("penicillin",), ruleset=RuleSet.build([_terse_rule(severity)], "v"))
    (alert,) = result.alerts
    assert alert.summary == "Ask the allergy team first" and alert.rule_id == "local-amoxicillin-pcn"
    assert alert.severity is Severity.CRITICAL
    assert set(alert.references) == {"Local policy 12", "Praneya allergen knowledge: penicillin"}
    assert alert.suppressed == 1


def test_without_a_rule_the_knowledge_base_speaks() -> None:
    result = _run((), ("amoxicillin",), ("penicillin",), ruleset=RuleSet.build([], "v"))
    (alert,) = result.alerts
    assert alert.rule_id == "kb:allergen:penicillin" and alert.suppressed == 0
    assert result.suppressed_duplicates == 0

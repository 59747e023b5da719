"""Allergy checks: allergen groups, classes, cross-reactivity, food allergies."""

from __future__ import annotations

from pathlib import Path

from engine.evaluate import evaluate
from engine.knowledge import load_knowledge_files
from engine.model import (
    Alert,
    AlertKind,
    AllergyFact,
    EvaluationRequest,
    MedicationFact,
    PatientSnapshot,
    Severity,
)
from engine.rules import RuleSet

KNOWLEDGE = load_knowledge_files(Path(__file__).parent / "data" / "knowledge")
NO_RULES = RuleSet.build([], "none")


def _allergy_alerts(
    allergies: tuple[AllergyFact, ...], medications: tuple[str, ...] = (), foods: tuple[str, ...] = ()
) -> list[Alert]:
    snapshot = PatientSnapshot("p", "t", allergies=allergies)
    request = EvaluationRequest(
        proposed_medications=tuple(
            MedicationFact(f"m{i}", n, proposed=True) for i, n in enumerate(medications)
        ),
        proposed_foods=foods,
    )
    result = evaluate(snapshot, request, NO_RULES, KNOWLEDGE)
    return [a for a in result.alerts if a.kind in (AlertKind.DRUG_ALLERGY, AlertKind.FOOD_ALLERGY)]


def test_penicillin_allergy_matches_amoxicillin_by_class() -> None:
    (alert,) = _allergy_alerts(
        (AllergyFact("a1", "Penicillin", "DRUG", "ANAPHYLACTIC"),), ("amoxicillin 500 mg",)
    )
    assert alert.kind is AlertKind.DRUG_ALLERGY
    assert alert.severity is Severity.CRITICAL
    assert alert.involved_ids == ("a1", "m0")


def test_combination_product_containing_the_allergen_matches() -> None:
    (alert,) = _allergy_alerts((AllergyFact("a1", "penicillin"),), ("Augmentin",))
    assert alert.severity is Severity.CRITICAL  # unknown reaction severity is treated as severe


def test_mild_documented_reaction_is_high_not_critical() -> None:
    (alert,) = _allergy_alerts((AllergyFact("a1", "penicillin", severity="MILD"),), ("amoxicillin",))
    assert alert.severity is Severity.HIGH


def test_cross_reactivity_at_its_own_lower_severity() -> None:
    (alert,) = _allergy_alerts((AllergyFact("a1", "penicillin", severity="MILD"),), ("Keflex",))
    assert alert.severity is Severity.MODERATE
    assert "cross" in alert.summary and "cross-reactivity" in alert.detail


def test_cross_reactivity_one_step_higher_after_a_severe_reaction() -> None:
    # A severe or anaphylactic history makes a related drug more dangerous (AAAAI 2022: after
    # anaphylaxis to a penicillin, avoid cephalosporins sharing its side chain).
    (alert,) = _allergy_alerts((AllergyFact("a1", "penicillin", severity="SEVERE"),), ("Keflex",))
    assert alert.severity is Severity.HIGH
    assert "one step higher" in alert.detail


def test_no_match_for_unrelated_drug() -> None:
    assert _allergy_alerts((AllergyFact("a1", "penicillin"),), ("sertraline", "clarithromycin")) == []


def test_allergy_recorded_as_a_drug_name() -> None:
    (alert,) = _allergy_alerts((AllergyFact("a1", "Advil"),), ("ibuprofen 400 mg",))
    assert alert.involved_ids == ("a1", "m0")


def test_unknown_allergen_still_meets_a_medication_of_the_same_name() -> None:
    (alert,) = _allergy_alerts((AllergyFact("a1", "Zyxorelin"),), ("zyxorelin 5 mg",))
    assert alert.kind is AlertKind.DRUG_ALLERGY


def test_food_allergy_against_recipe_ingredients_and_groups() -> None:
    alerts = _allergy_alerts(
        (AllergyFact("a1", "peanut", "FOOD", "ANAPHYLACTIC"), AllergyFact("a2", "shellfish", "FOOD", "MILD")),
        foods=("2 tbsp peanut butter", "shrimp", "rice"),
    )
    found = {(a.involved_ids, a.severity) for a in alerts}
    assert found == {
        (("a1", "food:peanut butter"), Severity.CRITICAL),
        (("a2", "food:shrimp"), Severity.HIGH),
    }
    assert all(a.kind is AlertKind.FOOD_ALLERGY for a in alerts)


def test_food_allergy_does_not_fire_on_unrelated_food() -> None:
    assert _allergy_alerts((AllergyFact("a1", "peanut", "FOOD"),), foods=("milk", "spinach")) == []

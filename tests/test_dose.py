"""Structured dose, units and dose limits (issue 11, sections 1 and 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.dose import parse_dose, parse_strengths
from engine.dose_limits import DoseKnowledgeError, dose_knowledge_from_document
from engine.evaluate import evaluate
from engine.knowledge import Knowledge, load_knowledge_files
from engine.model import (
    AlertKind,
    BiometricFact,
    ConditionFact,
    EvaluationRequest,
    EvaluationResult,
    MedicationFact,
    PatientSnapshot,
    Severity,
)
from engine.rules import RuleSet, load_rule_files
from engine.units import UnitError, dose_unit, weight_in_kg

ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE: Knowledge = load_knowledge_files(ROOT / "rules" / "knowledge")
NO_RULES = RuleSet.build([], "none")
SHIPPED_RULES = RuleSet.build([r.rule for r in load_rule_files([ROOT / "rules"]) if r.rule is not None], "shipped")

# --------------------------------------------------------------------------------------------------
# Parser table: text -> (amount high, UCUM unit code, route, administrations/day, dosing days/week, prn)
# None in a column: that part is absent. "?" in the unit column: no amount can be read.

PARSES: list[tuple[str, float | None, str | None, str | None, float | None, float | None, bool]] = [
    ("10 mg PO BID", 10, "mg", "oral", 2, 7, False),
    ("1 tab q6h prn", 1, "{tbl}", None, 4, 7, True),
    ("1000 mg every 4 hours", 1000, "mg", None, 6, 7, False),
    ("once weekly on Mondays", None, None, None, 1, 1, False),
    ("500mg TDS", 500, "mg", None, 3, 7, False),
    ("2 puffs", 2, "{puff}", None, None, None, False),
    ("5 mL", 5, "mL", None, None, None, False),
    ("0.5 mg/kg", 0.5, "mg/kg", None, None, None, False),
    ("2 per 1 d", None, None, None, 2, 7, False),
    ("1 per 6 h", None, None, None, 4, 7, False),
    ("1-2 per 4-6 h", None, None, None, 12, 7, False),
    ("1 per 1 wk", None, None, None, 1, 1, False),
    ("2 per 1 wk", None, None, None, 1, 2, False),
    ("250 mg po qid", 250, "mg", "oral", 4, 7, False),
    ("1 g IV q8h", 1, "g", "intravenous", 3, 7, False),
    ("40 mg IV push daily", 40, "mg", "intravenous", 1, 7, False),
    ("4 mg IM once", 4, "mg", "intramuscular", None, None, False),
    ("10 units subcut qhs", 10, "[iU]", "subcutaneous", 1, 7, False),
    ("6 U SC tid with meals", 6, "[iU]", "subcutaneous", 3, 7, False),
    ("100 mcg po every morning", 100, "ug", "oral", 1, 7, False),
    ("25 µg daily", 25, "ug", None, 1, 7, False),
    ("50 ug once daily", 50, "ug", None, 1, 7, False),
    ("20 mEq PO BID", 20, "meq", "oral", 2, 7, False),
    ("1-2 tabs PO q4-6h prn pain", 2, "{tbl}", "oral", 6, 7, True),
    ("2 tablets by mouth twice a day", 2, "{tbl}", "oral", 2, 7, False),
    ("1 cap po tid", 1, "{cap}", "oral", 3, 7, False),
    ("1 capsule three times daily", 1, "{cap}", None, 3, 7, False),
    ("one tablet daily", 1, "{tbl}", None, 1, 7, False),
    ("half tablet bid", 0.5, "{tbl}", None, 2, 7, False),
    ("1/2 tab qd", 0.5, "{tbl}", None, 1, 7, False),
    ("½ tab nightly", 0.5, "{tbl}", None, 1, 7, False),
    ("2 puffs inhaled q4h prn wheeze", 2, "{puff}", "inhalation", 6, 7, True),
    ("1 spray each nostril bid", 1, "{spray}", "nasal", 2, 7, False),
    ("1 drop each eye qid", 1, "[drp]", "ophthalmic", 4, 7, False),
    ("1 patch q72h", 1, "{patch}", None, 1, 7 / 3, False),
    ("25 mcg/hr patch every 72 hours", 25, "ug/h", None, 1, 7 / 3, False),
    ("650 mg PR q6h x 5 days", 650, "mg", "rectal", 4, 7, False),
    ("15 mg weekly", 15, "mg", None, 1, 1, False),
    ("7.5 mg once a week", 7.5, "mg", None, 1, 1, False),
    ("2.5 mg po q12h x3 doses weekly", 2.5, "mg", "oral", 2, 7, False),
    ("10 mg every other day", 10, "mg", None, 1, 3.5, False),
    ("5 mg qod", 5, "mg", None, 1, 3.5, False),
    ("200 mg twice weekly", 200, "mg", None, 1, 2, False),
    ("1 tab monday wednesday friday", 1, "{tbl}", None, 1, 3, False),
    ("70 mg weekly on Sundays", 70, "mg", None, 1, 1, False),
    ("1 g q24h", 1, "g", None, 1, 7, False),
    ("500 mg q 8 hours", 500, "mg", None, 3, 7, False),
    ("5 mg sl q5min prn chest pain", 5, "mg", "sublingual", 288, 7, True),
    ("0.4 mg SL every 5 minutes", 0.4, "mg", "sublingual", 288, 7, False),
    ("2 mg/kg/day divided q12h", 2, "mg/kg/d", None, 2, 7, False),
    ("15 mg/kg IV q6h", 15, "mg/kg", "intravenous", 4, 7, False),
    ("0.1 mg/kg/dose IV once", 0.1, None, "intravenous", None, None, False),
    ("5 mcg/kg/min", 5, "ug/kg/min", None, None, None, False),
    ("2 mg/h continuous infusion", 2, "mg/h", None, None, None, False),
    ("100 mg/m2 IV", 100, "mg/m2", "intravenous", None, None, False),
    ("1,000 mg po daily", 1000, "mg", "oral", 1, 7, False),
    ("0.125 mg daily", 0.125, "mg", None, 1, 7, False),
    (".5 mg bid", 0.5, "mg", None, 2, 7, False),
    ("2 grams IV every 12 hours", 2, "g", "intravenous", 2, 7, False),
    ("1 gm po bid", 1, "g", "oral", 2, 7, False),
    ("500 milligrams four times a day", 500, "mg", None, 4, 7, False),
    ("20 mg PO 3 times a day", 20, "mg", "oral", 3, 7, False),
    ("10 mg 2x daily", 10, "mg", None, 2, 7, False),
    ("1 tab at bedtime", 1, "{tbl}", None, 1, 7, False),
    ("5 mL of 250 mg/5 mL po bid", 5, "mL", "oral", 2, 7, False),
    ("10 ml by mouth every 8 hours as needed", 10, "mL", "oral", 3, 7, True),
    ("1 suppository pr q12h prn", 1, "{supp}", "rectal", 2, 7, True),
    ("1 vial via nebulizer q6h", 1, "{each}", "inhalation", 4, 7, False),
    ("50 mg po stat", 50, "mg", "oral", None, None, False),
    ("10 mg daily for 2 weeks", 10, "mg", None, 1, 7, False),
    ("100 mg po once monthly", 100, "mg", "oral", 1, 7 / 30, False),
    ("1 tab po q8h prn, max 3 tabs/day", 1, "{tbl}", "oral", 3, 7, True),
]


@pytest.mark.parametrize(
    ("text", "amount", "unit", "route", "per_day", "days", "prn"), PARSES, ids=[p[0] for p in PARSES]
)
def test_parse_table(
    text: str, amount: float | None, unit: str | None, route: str | None, per_day: float | None,
    days: float | None, prn: bool,
) -> None:
    dose = parse_dose(text)
    if amount is None:
        assert dose.amount is None
    else:
        assert dose.amount is not None and dose.amount.high == pytest.approx(amount)
        if unit is not None:
            assert dose.amount.unit.code == unit
    assert dose.route == route
    assert dose.per_day == (pytest.approx(per_day) if per_day is not None else None)
    assert dose.days_per_week == (pytest.approx(days) if days is not None else None)
    assert dose.prn is prn


def test_the_table_is_large_enough() -> None:
    assert len(PARSES) >= 60


def test_structured_fields_read_like_one_sig() -> None:
    dose = parse_dose("10 mg", "oral", "2 per 1 d")
    assert dose.amount is not None and dose.amount.high == 10 and dose.amount.unit.code == "mg"
    assert (dose.route, dose.per_day, dose.days_per_week, dose.problems) == ("oral", 2, 7, ())
    prn = parse_dose("650 mg", "oral", "prn")
    assert prn.prn and prn.per_day is None and prn.administrations_per_day is None


def test_duration_once_and_stated_maxima() -> None:
    assert parse_dose("500 mg po tid x 7 days").duration_days == 7
    assert parse_dose("500 mg po tid for 2 weeks").duration_days == 14
    assert parse_dose("2 g IV once").once
    capped = parse_dose("1 tab po q4h prn", frequency="max 4 doses/day")
    assert capped.administrations_per_day == 4
    stated = parse_dose("1000 mg q4h prn, max 3 g/day")
    assert stated.max_daily is not None and stated.max_daily.canonical_high == 3000


@pytest.mark.parametrize(
    "text", ["2 q6h", "10 zz daily", "take as directed", "5 mg", "10 mg blorp"], ids=lambda t: t
)
def test_what_cannot_be_read_is_named(text: str) -> None:
    dose = parse_dose(text, frequency="as directed" if text == "5 mg" else None)
    assert dose.problems or dose.amount is None or not dose.frequency_known


# --------------------------------------------------------------------------------------------------
# Units


@pytest.mark.parametrize(
    ("written", "code", "kind", "factor"),
    [
        ("mg", "mg", "mass", 1.0), ("g", "g", "mass", 1000.0), ("mcg", "ug", "mass", 0.001),
        ("µg", "ug", "mass", 0.001), ("ug", "ug", "mass", 0.001), ("ng", "ng", "mass", 1e-6),
        ("mL", "mL", "volume", 1.0), ("L", "L", "volume", 1000.0), ("units", "[iU]", "unit", 1.0),
        ("[iU]", "[iU]", "unit", 1.0), ("U", "[iU]", "unit", 1.0), ("mEq", "meq", "substance", 1.0),
        ("mmol", "mmol", "substance", 1.0), ("tabs", "{tbl}", "count", 1.0),
    ],
)  # fmt: skip
def test_units_through_ucum(written: str, code: str, kind: str, factor: float) -> None:
    unit = dose_unit(written)
    assert (unit.code, unit.kind) == (code, kind)
    assert unit.factor == pytest.approx(factor)


def test_compound_units_are_dimensional_not_textual() -> None:
    per_kg_day = dose_unit("mg/(kg.d)")
    assert per_kg_day.per_kg and per_kg_day.per_day and per_kg_day.same_basis(dose_unit("mg/kg/day"))
    assert dose_unit("mcg/kg/min").factor == pytest.approx(1.44)  # mg/kg/d
    assert dose_unit("ug/h").factor == pytest.approx(0.024)  # mg/d
    concentration = dose_unit("mg/mL")
    assert concentration.per_ml and not concentration.per_kg
    assert dose_unit("g").same_basis(dose_unit("ug")) and not dose_unit("mg").same_basis(dose_unit("mg/kg"))
    assert not dose_unit("[iU]").same_basis(dose_unit("mg"))
    for bad in ("%", "m", "Cel", "zz", "mg/kg/m"):
        with pytest.raises(UnitError):
            dose_unit(bad)


def test_body_weight_units() -> None:
    assert weight_in_kg(44, "lb") == pytest.approx(19.958, abs=0.001)
    assert weight_in_kg(20000, "g") == pytest.approx(20)
    assert weight_in_kg(20, None) == 20
    with pytest.raises(UnitError):
        weight_in_kg(20, "furlongs")


def test_strengths_of_products() -> None:
    five_325 = parse_strengths("5 MG / 325 MG")
    assert five_325 is not None and [s.value for s in five_325] == [5, 325]
    ratio = parse_strengths("percocet 5/325 mg")
    assert ratio is not None and [s.value for s in ratio] == [5, 325]
    suspension = parse_strengths("amoxicillin 400 mg/5 mL oral suspension")
    assert suspension is not None and suspension[0].value == 80 and suspension[0].per_ml
    patch = parse_strengths("fentanyl 25 mcg/hr patch")
    assert patch is not None and patch[0].per_day and patch[0].value == pytest.approx(0.6)
    assert parse_strengths("12 HR oxycodone hydrochloride 15 MG Extended Release Oral Tablet") is not None
    assert parse_strengths("tylenol") is None
    assert parse_strengths("percocet 5/325") is None  # no unit: never assumed here


# --------------------------------------------------------------------------------------------------
# Limits, end to end through evaluate()


def _run(
    *orders: tuple[str, str | None, str | None, str | None],
    age: int | None = 50,
    weight: float | None = None,
    current: tuple[tuple[str, str | None, str | None, str | None], ...] = (),
    conditions: tuple[ConditionFact, ...] = (),
    labs: tuple[BiometricFact, ...] = (),
    rules: RuleSet = NO_RULES,
) -> EvaluationResult:
    biometrics = labs + ((BiometricFact("r-weight", "weight", weight, "kg"),) if weight is not None else ())
    snapshot = PatientSnapshot(
        "p1", "t1", age=age, biometrics=biometrics, conditions=conditions,
        medications=tuple(MedicationFact(f"c{i}", n, d, r, f) for i, (n, d, r, f) in enumerate(current)),
    )  # fmt: skip
    request = EvaluationRequest(
        proposed_medications=tuple(
            MedicationFact(f"m{i}", n, d, r, f, proposed=True) for i, (n, d, r, f) in enumerate(orders)
        )
    )
    return evaluate(snapshot, request, rules, KNOWLEDGE)


def _dose_alerts(result: EvaluationResult) -> list[Any]:
    return [a for a in result.alerts if a.kind is AlertKind.DOSE_RANGE]


def test_daily_methotrexate_for_arthritis_is_critical() -> None:
    result = _run(("methotrexate 2.5 mg tablet", "7.5 mg", "PO", "daily"))
    (alert,) = _dose_alerts(result)
    assert alert.severity is Severity.CRITICAL and alert.rule_id == "kb:dose:methotrexate-weekly"
    assert "weekly" in alert.summary and any("ISMP" in r for r in alert.references)
    weekly = _run(("methotrexate 2.5 mg tablet", "7.5 mg", "PO", "once weekly on Mondays"))
    assert not _dose_alerts(weekly) and weekly.complete


def test_daily_methotrexate_with_a_recorded_malignancy_asks_to_confirm() -> None:
    result = _run(("methotrexate", "2.5 mg", "PO", "daily"), conditions=(ConditionFact("k1", "leukaemia", "C91.00"),))
    (alert,) = _dose_alerts(result)
    assert alert.severity is Severity.HIGH and "malignancy" in alert.detail


def test_six_grams_of_acetaminophen_across_tylenol_and_percocet() -> None:
    result = _run(
        ("Percocet 5/325", "2 tabs", "PO", "q6h"),
        current=(("Tylenol Extra Strength", "1000 mg", "PO", "q4h"),),
    )
    alerts = _dose_alerts(result)
    cumulative = [a for a in alerts if a.rule_id == "kb:dose:acetaminophen-cumulative"]
    assert len(cumulative) == 1 and set(cumulative[0].involved_ids) == {"c0", "m0"}
    assert "8,600 mg/day" in cumulative[0].summary  # 6,000 (Tylenol) + 2,600 (Percocet)
    assert cumulative[0].severity is Severity.CRITICAL  # more than twice 4 g


def test_acetaminophen_within_the_daily_maximum_across_products_is_quiet() -> None:
    result = _run(("Percocet 5/325", "1 tab", "PO", "q6h"), current=(("acetaminophen", "500 mg", "PO", "qid"),))
    assert not _dose_alerts(result) and result.complete


def test_single_and_daily_maxima() -> None:
    (single,) = _dose_alerts(_run(("acetaminophen", "2 g", "PO", "once")))
    assert "single dose 2,000 mg" in single.summary and single.severity is Severity.HIGH
    (daily,) = _dose_alerts(_run(("acetaminophen", "1000 mg every 4 hours", None, None)))
    assert "daily dose 6,000 mg" in daily.summary and "4,000 mg" in daily.summary


def test_geriatric_maxima_apply_from_their_age() -> None:
    assert not _dose_alerts(_run(("citalopram", "40 mg", "PO", "daily"), age=55))
    (alert,) = _dose_alerts(_run(("citalopram", "40 mg", "PO", "daily"), age=72))
    assert "at 60 years and over" in alert.summary


def test_renal_band_placeholder_applies_on_its_lab() -> None:
    crcl = (BiometricFact("r-crcl", "crcl", 25, "mL/min"),)
    (alert,) = _dose_alerts(_run(("gabapentin", "600 mg", "PO", "tid"), labs=crcl))
    assert alert.rule_id == "kb:dose:gabapentin-crcl-30"
    assert not _dose_alerts(_run(("gabapentin", "600 mg", "PO", "tid")))


def test_mme_for_an_opioid_naive_patient() -> None:
    (alert,) = _dose_alerts(_run(("oxycodone 10 mg tablet", "10 mg", "PO", "q4h")))
    assert alert.rule_id == "kb:dose:opioid-mme" and alert.severity is Severity.HIGH
    assert "90 MME/day" in alert.summary and "opioid-naive" in alert.summary
    assert not _dose_alerts(_run(("oxycodone 5 mg tablet", "5 mg", "PO", "q6h prn")))


def test_mme_counts_current_opioids_and_tolerance() -> None:
    current = (("morphine 30 mg extended-release tablet", "30 mg", "PO", "q12h"),)  # 60 MME: tolerant
    quiet = _run(("oxycodone 5 mg tablet", "5 mg", "PO", "q6h"), current=current)  # +30 = 90: MODERATE only
    (alert,) = _dose_alerts(quiet)
    assert alert.severity is Severity.MODERATE and "opioid-tolerant" in alert.summary


def test_a_fentanyl_patch_for_an_opioid_naive_patient() -> None:
    result = _run(("fentanyl 25 mcg/hr transdermal patch", "1 patch", "transdermal", "q72h"), age=75)
    (alert,) = _dose_alerts(result)
    assert alert.severity is Severity.CRITICAL and alert.rule_id == "kb:dose:opioid-naive-long-acting"
    assert "60 MME/day" in alert.detail  # 25 mcg/h x 2.4, folded in as a second finding


def test_paediatric_weight_based_limits() -> None:
    over = _run(("amoxicillin 400 mg/5 mL oral suspension", "10 mL", "PO", "bid"), age=2, weight=12)
    (alert,) = _dose_alerts(over)
    assert "children" in alert.summary and "at 12 kg" in alert.detail
    ok = _run(("amoxicillin 400 mg/5 mL oral suspension", "6.75 mL", "PO", "bid"), age=2, weight=12)
    assert not _dose_alerts(ok) and ok.complete


def test_weight_in_pounds_is_converted() -> None:
    snapshot = PatientSnapshot("p", "t", age=6, biometrics=(BiometricFact("w", "weight", 44, "lb"),))
    request = EvaluationRequest(
        proposed_medications=(MedicationFact("m", "ibuprofen 100 mg/5 mL oral suspension", "15 mL", "PO", "q6h", True),)
    )
    (alert,) = _dose_alerts(evaluate(snapshot, request, NO_RULES, KNOWLEDGE))
    assert "20 kg" in alert.detail


def test_twenty_paediatric_drugs_have_weight_based_limits() -> None:
    assert KNOWLEDGE.dose is not None
    paediatric = {
        d.ingredient
        for d in KNOWLEDGE.dose.ingredients.values()
        for limit in d.limits
        if limit.population == "pediatric"
        and any(v is not None and v.per_kg for v in (limit.max_dose, limit.max_daily))
    }
    assert len(paediatric) >= 20, sorted(paediatric)


def test_every_limit_names_its_source_and_resolves_in_the_vocabulary() -> None:
    assert KNOWLEDGE.dose is not None
    for ingredient, dosing in KNOWLEDGE.dose.ingredients.items():
        assert KNOWLEDGE.vocabulary.normalize_drug(ingredient).ingredients == (ingredient,), ingredient
        for limit in dosing.limits:
            assert limit.source.strip()


def test_a_limit_without_a_source_is_refused() -> None:
    with pytest.raises(DoseKnowledgeError, match="source"):
        dose_knowledge_from_document({"ingredients": {"x": {"limits": [{"max_daily": "10 mg"}]}}})
    with pytest.raises(DoseKnowledgeError, match="limit"):
        dose_knowledge_from_document({"ingredients": {"x": {"limits": [{"max_daily": "2 tabs", "source": "s"}]}}})


# --------------------------------------------------------------------------------------------------
# Fail closed


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (("levetiracetam", "500 zz", "PO", "bid"), "unit"),
        (("levetiracetam", "2", "PO", "bid"), "number without a unit"),
        (("acetaminophen", "650 mg", "PO", "prn"), "as needed"),
        (("Tylenol", "2 tabs", "PO", "q6h"), "strength"),
        (("methotrexate", "10 mg", "PO", "as directed"), "schedule"),
        (("amoxicillin", "500 mg", "PO", "bid"), "weight"),
        (("cefdinir", "7 mg/kg", "PO", "bid"), "weight"),
    ],
    ids=lambda v: v if isinstance(v, str) else v[1],
)
def test_an_unreadable_dose_on_a_drug_with_a_limit_is_insufficient_data(
    order: tuple[str, str, str, str], reason: str
) -> None:
    result = _run(order, age=4 if reason == "weight" else 50)
    assert not result.complete
    errors = [e for e in result.rule_errors if e.rule_id.startswith("kb:dose:")]
    assert errors and all(e.insufficient_data for e in errors)
    assert any(reason in e.reason for e in errors), [e.reason for e in errors]


def test_a_drug_without_limits_or_without_a_dose_is_not_held_up() -> None:
    assert _run(("sertraline", "50 zz", "PO", "daily")).complete  # no dose limit known for it
    assert _run(("acetaminophen", None, None, None)).complete  # a name alone is not a dose order


def test_dose_knowledge_missing_is_reported() -> None:
    bare = Knowledge(KNOWLEDGE.vocabulary, KNOWLEDGE.interactions, KNOWLEDGE.allergens, "no-dose")
    snapshot = PatientSnapshot("p", "t", age=40)
    request = EvaluationRequest(proposed_medications=(MedicationFact("m", "ibuprofen", "400 mg", "PO", "q6h", True),))
    result = evaluate(snapshot, request, NO_RULES, bare)
    assert not result.complete and result.rule_errors[0].rule_id == "kb:dose"


# --------------------------------------------------------------------------------------------------
# The Leapfrog-style order set


ORDER_SET = yaml.safe_load((ROOT / "tests" / "data" / "order_set_dose.yaml").read_text(encoding="utf-8"))["orders"]


def _med(spec: dict[str, Any], med_id: str, proposed: bool) -> MedicationFact:
    return MedicationFact(med_id, spec["name"], spec.get("dose"), spec.get("route"), spec.get("frequency"), proposed)


def _order_result(case: dict[str, Any]) -> EvaluationResult:
    patient = case.get("patient") or {}
    weight = patient.get("weight_kg")
    biometrics = (BiometricFact("r-weight", "weight", float(weight), "kg"),) if weight is not None else ()
    snapshot = PatientSnapshot(
        "p-" + case["id"], "t", age=patient.get("age"), biometrics=biometrics,
        conditions=tuple(
            ConditionFact(f"k{i}", c["name"], c.get("code")) for i, c in enumerate(patient.get("conditions") or ())
        ),
        medications=tuple(_med(m, f"c{i}", False) for i, m in enumerate(patient.get("current") or ())),
    )  # fmt: skip
    request = EvaluationRequest(proposed_medications=(_med(case["order"], "order", True),))
    return evaluate(snapshot, request, SHIPPED_RULES, KNOWLEDGE)


def _outcome(case: dict[str, Any], result: EvaluationResult) -> tuple[bool, int]:
    """(caught or passed as expected, interruptive alerts on a quiet order)."""
    dose_alerts = [a for a in result.alerts if a.kind is AlertKind.DOSE_RANGE and a.interruptive]
    dose_errors = [e for e in result.rule_errors if e.rule_id.startswith("kb:dose")]
    if case["expect"] == "alert":
        wanted = Severity[case.get("severity", "HIGH")]
        return any(a.severity >= wanted for a in dose_alerts), 0
    if case["expect"] == "incomplete":
        return bool(dose_errors) and not result.complete, 0
    interruptive = [a for a in result.alerts if a.interruptive]
    return not interruptive and not dose_errors, len(interruptive)


def test_order_set_is_large_enough_and_sourced() -> None:
    assert len(ORDER_SET) >= 40
    assert all(case.get("reference") for case in ORDER_SET)
    assert len({case["id"] for case in ORDER_SET}) == len(ORDER_SET)
    assert sum(case["expect"] == "quiet" for case in ORDER_SET) >= 10


@pytest.mark.parametrize("case", ORDER_SET, ids=[c["id"] for c in ORDER_SET])
def test_order_set_case(case: dict[str, Any]) -> None:
    result = _order_result(case)
    ok, _ = _outcome(case, result)
    seen = [(a.severity.name, a.kind.value, a.summary) for a in result.alerts]
    assert ok, [*seen, *(e.reason for e in result.rule_errors)]


def test_order_set_catch_rate_and_quiet_orders() -> None:
    should_catch = [c for c in ORDER_SET if c["expect"] != "quiet"]
    quiet = [c for c in ORDER_SET if c["expect"] == "quiet"]
    caught = sum(_outcome(c, _order_result(c))[0] for c in should_catch)
    interruptions = sum(_outcome(c, _order_result(c))[1] for c in quiet)
    rate = caught / len(should_catch)
    print(f"dose order set: {caught}/{len(should_catch)} caught ({rate:.1%}); "
          f"{interruptions} interruptive alerts on {len(quiet)} quiet orders")  # fmt: skip
    assert rate >= 0.95
    assert interruptions == 0

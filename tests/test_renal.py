"""Renal function and renal dosing (issue 11, section 3; section 4's "how recent" for renal readings)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.evaluate import evaluate
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
from engine.renal import (
    RenalKnowledgeError,
    cockcroft_gault,
    renal_function,
    renal_knowledge_from_document,
    shipped_renal_knowledge,
)
from engine.rules import RuleSet
from engine.units import UnitError, creatinine_mg_dl

ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE: Knowledge = load_knowledge_files(ROOT / "rules" / "knowledge")
NO_RULES = RuleSet.build([], "none")
# Readings are dated relative to the real clock: evaluate() takes the evaluation time from it.
NOW = datetime.now(UTC)


# --------------------------------------------------------------------------------------------------
# Cockcroft-Gault: worked examples from public references


@pytest.mark.parametrize(
    ("age", "kg", "female", "scr", "expected", "reference"),
    [
        # theprimecalculator.com, "Creatinine Clearance (Cockcroft-Gault) Formula", worked example
        (50, 80, False, 1.0, 100.0, "90 x 80 / 72 = 100"),
        # superglobalcalculator.com/formulas/health/creatinine-clearance, example 1 (its example 2, a woman
        # of 45, 65 kg, 0.9 mg/dL, prints 80.9 where 6175 / 64.8 x 0.85 is 81.0: not used)
        (60, 80, False, 1.2, 74.1, "6400 / 86.4"),
        # superglobalcalculator.com/formulas/pharmacology/creatinine-clearance, examples 1 and 2
        (65, 70, False, 1.4, 52.1, "75 x 70 / 100.8"),
        (45, 60, True, 0.9, 74.8, "5700 / 64.8 x 0.85"),
    ],
)
def test_cockcroft_gault_worked_examples(
    age: float, kg: float, female: bool, scr: float, expected: float, reference: str
) -> None:
    assert cockcroft_gault(age, kg, female, scr) == pytest.approx(expected, abs=0.05), reference


def test_creatinine_units_are_converted_by_the_unit_library() -> None:
    assert creatinine_mg_dl(88.4, "umol/L") == pytest.approx(1.0, abs=0.001)
    assert creatinine_mg_dl(88.4, "µmol/L") == pytest.approx(1.0, abs=0.001)
    assert creatinine_mg_dl(0.0884, "mmol/L") == pytest.approx(1.0, abs=0.001)
    assert creatinine_mg_dl(12, "mg/L") == pytest.approx(1.2)
    assert creatinine_mg_dl(1.2, "mg/dL") == 1.2
    assert creatinine_mg_dl(1.2, None) == 1.2  # no unit: mg/dL, the fact model's convention
    for wrong in ("kg", "furlongs", "mL/min"):
        with pytest.raises(UnitError):
            creatinine_mg_dl(1.0, wrong)


def _snapshot(
    *readings: BiometricFact, age: int | None = 80, sex: str | None = "female", meds: tuple[MedicationFact, ...] = ()
) -> PatientSnapshot:
    return PatientSnapshot("p1", "t1", age=age, sex=sex, biometrics=readings, medications=meds)


def _r(kind: str, value: float, unit: str | None, days_ago: float | None = 1) -> BiometricFact:
    when = NOW - timedelta(days=days_ago) if days_ago is not None else None
    return BiometricFact(f"r-{kind}", kind, value, unit, observed_at=when)


def test_crcl_from_umol_per_litre_matches_mg_per_decilitre() -> None:
    mg = renal_function(_snapshot(_r("creatinine", 1.5, "mg/dL"), _r("weight", 60, "kg")), NOW)
    umol = renal_function(_snapshot(_r("creatinine", 132.6, "umol/L"), _r("weight", 60, "kg")), NOW)
    assert mg.crcl is not None and umol.crcl is not None
    # (140 - 80) x 60 / (72 x 1.5) x 0.85 = 28.3 mL/min
    assert mg.crcl.value == pytest.approx(28.33, abs=0.01)
    assert umol.crcl.value == pytest.approx(mg.crcl.value, abs=0.05)
    assert "Cockcroft-Gault" in mg.crcl.how and set(mg.crcl.reading_ids) == {"r-creatinine", "r-weight"}


def test_weight_in_pounds_and_a_reported_crcl_wins() -> None:
    lb = renal_function(_snapshot(_r("creatinine", 1.5, "mg/dL"), _r("weight", 132.277, "[lb_av]")), NOW)
    assert lb.crcl is not None and lb.crcl.value == pytest.approx(28.33, abs=0.05)
    reported = renal_function(
        _snapshot(_r("creatinine", 1.5, "mg/dL"), _r("weight", 60, "kg"), _r("crcl", 44, "mL/min")), NOW
    )
    assert reported.crcl is not None and reported.crcl.value == 44 and reported.crcl.how == "reported"


def test_what_cockcroft_gault_lacks_is_named() -> None:
    no_sex = renal_function(_snapshot(_r("creatinine", 1.5, "mg/dL"), _r("weight", 60, "kg"), sex=None), NOW)
    assert no_sex.crcl is None and "sex" in no_sex.problems["crcl"]
    no_weight = renal_function(_snapshot(_r("creatinine", 1.5, "mg/dL")), NOW)
    assert no_weight.crcl is None and "weight" in no_weight.problems["crcl"]
    child = renal_function(_snapshot(_r("creatinine", 0.5, "mg/dL"), _r("weight", 30, "kg"), age=9), NOW)
    assert child.crcl is None and "adults" in child.problems["crcl"]
    # 132 with no unit is a umol/L value written without its unit: not plausible as mg/dL, never guessed.
    unitless = renal_function(_snapshot(_r("creatinine", 132, None), _r("weight", 60, "kg")), NOW)
    assert unitless.crcl is None and "plausible" in unitless.problems["crcl"]


def test_old_readings_are_not_used() -> None:
    stale = renal_function(_snapshot(_r("creatinine", 1.5, "mg/dL", days_ago=120), _r("weight", 60, "kg")), NOW)
    assert stale.crcl is None and "120 days old" in stale.problems["crcl"]
    old_egfr = renal_function(_snapshot(_r("egfr", 25, "mL/min/{1.73_m2}", days_ago=91)), NOW)
    assert old_egfr.egfr is None and "91 days old" in old_egfr.problems["egfr"]
    fresh = renal_function(_snapshot(_r("egfr", 25, "mL/min/{1.73_m2}", days_ago=89)), NOW)
    assert fresh.egfr is not None and fresh.egfr.value == 25


# --------------------------------------------------------------------------------------------------
# Bands, end to end through evaluate()


def _run(
    name: str, dose: str | None, frequency: str | None, *readings: BiometricFact, current: bool = False,
    age: int | None = 80, sex: str | None = "female",
) -> EvaluationResult:  # fmt: skip
    med = MedicationFact("m1", name, dose, "PO" if dose else None, frequency, proposed=not current)
    snapshot = _snapshot(*readings, age=age, sex=sex, meds=(med,) if current else ())
    request = EvaluationRequest(proposed_medications=() if current else (med,))
    return _evaluate(snapshot, request)


def _evaluate(snapshot: PatientSnapshot, request: EvaluationRequest) -> EvaluationResult:
    return evaluate(snapshot, request, NO_RULES, KNOWLEDGE)


def _renal(result: EvaluationResult) -> list[Alert]:
    return [a for a in result.alerts if a.kind is AlertKind.RENAL]


CRCL_28 = (_r("creatinine", 1.5, "mg/dL"), _r("weight", 60, "kg"))  # 80-year-old woman: 28.3 mL/min


def test_contraindication_by_computed_crcl() -> None:
    result = _run("nitrofurantoin", "100 mg", "bid", *CRCL_28)
    (alert,) = _renal(result)
    assert alert.severity is Severity.HIGH and alert.rule_id == "kb:renal:nitrofurantoin-crcl-60"
    assert "CrCl 28 mL/min" in alert.summary and "Cockcroft-Gault" in alert.detail
    assert any("Macrobid" in r and "Contraindications" in r for r in alert.references)
    assert set(alert.involved_ids) == {"m1", "r-creatinine", "r-weight"}
    assert result.complete


def test_dose_over_the_bands_maximum_and_within_it() -> None:
    (over,) = _renal(_run("dabigatran", "150 mg", "bid", *CRCL_28))
    assert over.severity is Severity.HIGH and over.rule_id == "kb:renal:dabigatran-crcl-30"
    assert "daily dose 300 mg" in over.summary and "Pradaxa" in over.references[0]
    within = _run("dabigatran", "75 mg", "bid", *CRCL_28)
    assert not _renal(within) and within.complete
    # the same order at a CrCl above the band is quiet
    young = _run("dabigatran", "150 mg", "bid", *CRCL_28, age=30, sex="male")
    assert not _renal(young) and young.complete


def test_dofetilide_bands_in_micrograms_and_below_twenty_contraindicated() -> None:
    (over,) = _renal(_run("dofetilide", "500 mcg", "bid", *CRCL_28))
    assert over.rule_id == "kb:renal:dofetilide-crcl-40" and "maximum 0.25 mg" in over.summary
    assert not _renal(_run("dofetilide", "125 mcg", "bid", *CRCL_28))
    severe = (_r("creatinine", 3.0, "mg/dL"), _r("weight", 60, "kg"))  # 14.2 mL/min
    (contra,) = _renal(_run("dofetilide", "125 mcg", "bid", *severe))
    assert contra.severity is Severity.CRITICAL and contra.rule_id == "kb:renal:dofetilide-crcl-20"


def test_egfr_band_as_reported() -> None:
    egfr = _r("egfr", 24, "mL/min/{1.73_m2}")
    (alert,) = _renal(_run("metformin", "500 mg", "bid", egfr))
    assert alert.severity is Severity.CRITICAL and "eGFR 24" in alert.summary
    (sita,) = _renal(_run("sitagliptin", "100 mg", "daily", egfr))
    assert sita.rule_id == "kb:renal:sitagliptin-egfr-30"
    assert not _renal(_run("sitagliptin", "25 mg", "daily", egfr))


def test_an_order_without_a_dose_in_a_reduce_band_is_told_the_adjustment_passively() -> None:
    (alert,) = _renal(_run("pregabalin", None, None, *CRCL_28))
    assert alert.severity is Severity.MODERATE and not alert.interruptive
    assert "25-150 mg" in alert.detail and "could not be compared" in alert.detail


def test_a_reduce_band_without_a_maximum_states_its_adjustment_passively() -> None:
    # renal.yaml: a band whose adjustment has no number (spironolactone at eGFR 30-50) is a passive
    # alert with the label's advice, whatever the dose ordered; never silence.
    egfr = _r("egfr", 40, "mL/min/{1.73_m2}")
    (alert,) = _renal(_run("spironolactone", "25 mg", "daily", egfr))
    assert alert.rule_id == "kb:renal:spironolactone-egfr-50"
    assert alert.severity is Severity.MODERATE and not alert.interruptive
    assert "every other day" in alert.detail
    assert not _renal(_run("spironolactone", "25 mg", "daily", _r("egfr", 70, "mL/min/{1.73_m2}")))


def test_the_added_bands_meropenem_by_three_bands_and_levocetirizine_in_esrd() -> None:
    # CRCL_28: 28.3 mL/min -> meropenem's 26-50 band: 1 g q8h (3 g/day) is within the q12h maximum of 4 g
    assert not _renal(_run("meropenem", "1 g", "q8h", *CRCL_28))
    severe = (_r("creatinine", 3.0, "mg/dL"), _r("weight", 60, "kg"))  # 14.2 mL/min: the 10-25 band
    (over,) = _renal(_run("meropenem", "1 g", "q8h", *severe))
    assert over.rule_id == "kb:renal:meropenem-crcl-25" and over.severity is Severity.HIGH
    esrd = (_r("creatinine", 6.0, "mg/dL"), _r("weight", 60, "kg"))  # 7.1 mL/min
    (contra,) = _renal(_run("levocetirizine", "2.5 mg", "daily", *esrd))
    assert contra.rule_id == "kb:renal:levocetirizine-crcl-10" and contra.severity is Severity.CRITICAL


def test_gabapentins_dose_limits_use_the_computed_crcl() -> None:
    result = _run("gabapentin", "600 mg", "tid", *CRCL_28)
    assert any(a.rule_id == "kb:dose:gabapentin-crcl-30" for a in result.alerts)


def test_missing_renal_function_is_insufficient_data_never_silent() -> None:
    result = _run("dabigatran", "150 mg", "bid", _r("weight", 60, "kg"))
    assert not result.complete and not _renal(result)
    (error,) = [e for e in result.rule_errors if e.rule_id == "kb:renal:dabigatran etexilate"]
    assert error.insufficient_data and "serum creatinine" in error.reason
    # gabapentin's renal rows live in the dose limits; it needs renal function too
    gaba = _run("gabapentin", "300 mg", "tid")
    assert not gaba.complete and any(e.rule_id == "kb:renal:gabapentin" for e in gaba.rule_errors)


def test_a_stale_creatinine_is_insufficient_data_not_safe() -> None:
    stale = (_r("creatinine", 1.5, "mg/dL", days_ago=200), _r("weight", 60, "kg"))
    result = _run("nitrofurantoin", "100 mg", "bid", *stale)
    assert not _renal(result) and not result.complete
    (error,) = [e for e in result.rule_errors if e.rule_id == "kb:renal:nitrofurantoin"]
    assert "200 days old" in error.reason
    # a stale eGFR does not reach the dose limits either
    old = _run("gabapentin", "600 mg", "tid", _r("crcl", 25, "mL/min", days_ago=100))
    assert not any(a.rule_id.startswith("kb:dose:gabapentin-crcl") for a in old.alerts) and not old.complete


def test_an_undated_reading_is_used_and_said_to_be_undated() -> None:
    undated = (_r("creatinine", 1.5, "mg/dL", days_ago=None), _r("weight", 60, "kg", days_ago=None))
    (alert,) = _renal(_run("nitrofurantoin", "100 mg", "bid", *undated))
    assert "was not recorded" in alert.detail


def test_a_current_medication_is_checked_when_the_data_are_there() -> None:
    (alert,) = _renal(_run("nitrofurantoin", "100 mg", "bid", *CRCL_28, current=True))
    assert alert.rule_id == "kb:renal:nitrofurantoin-crcl-60"
    # without renal function a current medication does not make the answer incomplete (module docstring)
    assert _run("nitrofurantoin", "100 mg", "bid", current=True).complete


def test_a_band_for_another_route_does_not_apply() -> None:
    med = MedicationFact("m1", "ciprofloxacin", "400 mg", "IV", "q8h", proposed=True)
    result = _evaluate(_snapshot(*CRCL_28), EvaluationRequest(proposed_medications=(med,)))
    assert not _renal(result)
    (oral,) = _renal(_run("ciprofloxacin", "500 mg", "q12h", *CRCL_28))
    assert oral.rule_id == "kb:renal:ciprofloxacin-crcl-30" and "daily dose 1,000 mg" in oral.summary


# --------------------------------------------------------------------------------------------------
# The knowledge file


def test_every_band_names_its_label_and_every_ingredient_is_known() -> None:
    knowledge = shipped_renal_knowledge()
    assert knowledge is not None and len(knowledge.bands) >= 30
    for ingredient, bands in knowledge.bands.items():
        assert KNOWLEDGE.vocabulary.normalize_drug(ingredient).recognised, ingredient
        for band in bands:
            assert band.source.startswith("FDA label: "), band.id


def test_bands_of_one_drug_do_not_overlap() -> None:
    knowledge = shipped_renal_knowledge()
    assert knowledge is not None
    for ingredient, bands in knowledge.bands.items():
        for measure in ("crcl", "egfr"):
            of = [b for b in bands if b.measure == measure]
            for value in [x / 2 for x in range(0, 400)]:
                held = [b.id for b in of if b.holds(value) and not b.routes]
                assert len(held) <= 1, (ingredient, value, held)


_BAND = {"id": "x", "measure": "crcl", "below": 30, "action": "avoid", "advice": "a", "source": "s"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"measure": "bun"}, "measure"),
        ({"below": None}, "below, at_most"),
        ({"source": None}, "source"),
        ({"max_daily": "5 mg"}, "reduce"),
        ({"action": "reduce", "max_daily": "5 furlongs"}, "max_daily"),
    ],
)
def test_malformed_bands_are_refused(change: dict[str, Any], message: str) -> None:
    row = {k: v for k, v in (_BAND | change).items() if v is not None}
    with pytest.raises(RenalKnowledgeError, match=message):
        renal_knowledge_from_document({"ingredients": {"dabigatran": [row]}})

"""Our own Leapfrog-style CPOE order set for the "advanced" categories of issue 11: drug-dose (single
and daily), drug-renal, drug-age, drug-lab, drug-diagnosis (with pregnancy) and drug-hepatic
(tests/data/order_set_cpoe.yaml), each order written from a public reference named on its row.

The categories are those of the Leapfrog CPOE Evaluation Tool as Classen et al. describe them (JAMA Netw
Open 2020;3(5):e205547): each order is a patient and one proposed medication, with the outcome a
medication-safety committee expects:

- `alert`: an interruptive alert (HIGH or CRITICAL; `severity` raises the floor) of the expected
  `kind` (DOSE_RANGE, RENAL, LAB_VALUE, DRUG_CONDITION, AGE_RELATED, PREGNANCY);
- `quiet`: the tool's "nuisance" orders: no interruptive alert of any kind, and the answer complete
  (a silent pass on data that could not be checked is not a quiet pass);
- `incomplete`: the data needed is missing or too old: the answer must be `complete = false` (reported
  as insufficient data, never "safe"), with `missing` (words of the reason) among the reasons given.

Every order goes through the pure engine (`engine.evaluate.evaluate`) with the shipped rules and
knowledge, its patient built as a `PatientSnapshot` with the fields engine/model.py has (as
tests/test_dose.py does). Orders whose feature is being built on another branch carry
`needs: [labs|dx|demo|hepatic]`: they are evaluated and reported apart, outside the 95% assertion, until
the lead drops the mark after the merge.

    python -m tests.order_set_report       # the README's table, the misses, the `needs` orders
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.adhoc import _child_pugh
from engine.evaluate import evaluate
from engine.knowledge import Knowledge, load_knowledge_files
from engine.model import (
    AlertKind,
    BiometricFact,
    ConditionFact,
    EvaluationRequest,
    EvaluationResult,
    LactationFact,
    MedicationFact,
    PatientSnapshot,
    PregnancyFact,
    Severity,
)
from engine.rules import RuleSet, load_rule_files

ROOT = Path(__file__).resolve().parents[1]
ORDER_SET = ROOT / "tests" / "data" / "order_set_cpoe.yaml"
CATEGORIES = ("dose", "renal", "age", "lab", "diagnosis", "hepatic")
CATEGORY_TEXT = {
    "dose": "drug-dose (single and daily maxima, weekly methotrexate, cumulative acetaminophen, MME, weight-based)",
    "renal": "drug-renal (eGFR / Cockcroft-Gault CrCl bands)",
    "age": "drug-age (Beers 2023 at 65+, geriatric and paediatric limits)",
    "lab": "drug-lab (potassium, INR, platelets, QTc, sodium, glucose, ALT, TSH...)",
    "diagnosis": "drug-diagnosis (conditions by name, ICD-10-CM or SNOMED CT; pregnancy, lactation)",
    "hepatic": "drug-hepatic (Child-Pugh class)",
}
EXPECTS = ("alert", "quiet", "incomplete")
BRANCHES = ("labs", "dx", "demo", "hepatic")
CAUGHT_TARGET = 0.95


@cache
def shipped() -> tuple[Knowledge, RuleSet]:
    knowledge = load_knowledge_files(ROOT / "rules" / "knowledge")
    rules = [r.rule for r in load_rule_files([ROOT / "rules"]) if r.rule is not None]
    return knowledge, RuleSet.build(rules, "shipped")


@cache
def orders() -> tuple[Mapping[str, Any], ...]:
    return tuple(yaml.safe_load(ORDER_SET.read_text(encoding="utf-8"))["orders"])


# --------------------------------------------------------------------------------------------------
# An order's patient -> PatientSnapshot (only the fields engine/model.py has; see `_optional`)

_SNAPSHOT_FIELDS = frozenset(f.name for f in dataclasses.fields(PatientSnapshot))


def _when(reading: Mapping[str, Any], now: datetime) -> datetime | None:
    """A reading's time: `days_ago` before the evaluation (the order set does not age), or none."""
    if "days_ago" in reading:
        return now - timedelta(days=float(reading["days_ago"]))
    return None


def _med(spec: Mapping[str, Any] | str, med_id: str, proposed: bool) -> MedicationFact:
    if isinstance(spec, str):
        return MedicationFact(med_id, spec, proposed=proposed)
    return MedicationFact(med_id, spec["name"], spec.get("dose"), spec.get("route"), spec.get("frequency"), proposed)


def _condition(spec: Mapping[str, Any] | str, i: int) -> ConditionFact:
    if isinstance(spec, str):
        return ConditionFact(f"k{i}", spec)
    # `code`: ICD-10-CM or SNOMED CT as the record holds it (the code taken from a source row in the repo).
    return ConditionFact(f"k{i}", str(spec.get("name") or spec.get("code")), spec.get("code"))


def snapshot_of(order: Mapping[str, Any], now: datetime) -> PatientSnapshot:
    patient: Mapping[str, Any] = order.get("patient") or {}
    biometrics: list[BiometricFact] = []
    if "weight_kg" in patient:
        biometrics.append(BiometricFact("r-weight", "weight", float(patient["weight_kg"]), "kg"))
    for i, lab in enumerate(patient.get("labs") or ()):
        biometrics.append(
            BiometricFact(
                f"r{i}", str(lab["type"]), float(lab["value"]), lab.get("unit"), lab.get("loinc"), _when(lab, now)
            )
        )
    if "child_pugh" in patient:  # the class as engine.hepatic reads it (the `--cases` reader makes the same)
        biometrics.extend(_child_pugh(patient["child_pugh"], None))
    birth_date: date | None = None
    if "age_days" in patient:  # an infant: the birth date, so that age is not rounded to whole years
        birth_date = now.date() - timedelta(days=int(patient["age_days"]))
    fields: dict[str, Any] = {
        "age": patient.get("age"),
        "sex": patient.get("sex"),
        "birth_date": birth_date,
        "pregnant": patient.get("pregnant"),
        "biometrics": tuple(biometrics),
        "conditions": tuple(_condition(c, i) for i, c in enumerate(patient.get("conditions") or ())),
        "medications": tuple(_med(m, f"c{i}", False) for i, m in enumerate(patient.get("current") or ())),
    }
    # Dated pregnancy and lactation (engine.demographics): recorded today.
    if "gestational_age_weeks" in patient:
        fields["pregnancy"] = PregnancyFact("pregnant", now, int(patient["gestational_age_weeks"]) * 7, now.date())
    if "lactating" in patient:
        fields["lactation"] = LactationFact(bool(patient["lactating"]), now)
    return PatientSnapshot("p-" + str(order["id"]), "t", **fields)


def result_of(order: Mapping[str, Any]) -> EvaluationResult:
    knowledge, rules = shipped()
    now = datetime.now(UTC)
    request = EvaluationRequest(proposed_medications=(_med(order["order"], "order", True),))
    return evaluate(snapshot_of(order, now), request, rules, knowledge)


# --------------------------------------------------------------------------------------------------
# Judging


@dataclass(frozen=True)
class Outcome:
    order_id: str
    category: str
    expect: str
    needs: tuple[str, ...]
    passed: bool  # alert: caught; incomplete: reported incomplete; quiet: no interruptive alert, complete
    interruptive: bool  # any interruptive alert appeared
    complete: bool
    detail: str  # what the engine said, for the misses


def judge(order: Mapping[str, Any]) -> Outcome:
    result = result_of(order)
    alerts = ", ".join(f"{a.severity.name} {a.kind.value} ({a.rule_id})" for a in result.alerts) or "no alert"
    errors = "; ".join(e.reason for e in result.rule_errors)
    unresolved = ", ".join(f"{u.kind}:{u.text!r}" for u in result.unresolved)
    detail = alerts + (f"; errors: {errors}" if errors else "") + (f"; unresolved {unresolved}" if unresolved else "")
    detail += "" if result.complete else "; INCOMPLETE"
    interruptive = any(a.interruptive for a in result.alerts)
    expect = str(order["expect"])
    if expect == "alert":
        kind, floor = AlertKind(order["kind"]), Severity[order.get("severity", "HIGH")]
        passed = any(a.kind is kind and a.severity >= floor and a.interruptive for a in result.alerts)
    elif expect == "incomplete":
        # Reported incomplete, and for the reason the order is about (`missing`: words of the reason), not
        # for some other missing datum.
        reasons = [e.reason.lower() for e in result.rule_errors] + [u.reason.lower() for u in result.unresolved]
        missing = str(order.get("missing") or "").lower()
        passed = not result.complete and (not missing or any(missing in r for r in reasons))
    else:
        passed = not interruptive and result.complete
    needs = tuple(order.get("needs") or ())
    return Outcome(
        str(order["id"]), str(order["category"]), expect, needs, passed, interruptive, result.complete, detail
    )


@cache
def outcomes() -> tuple[Outcome, ...]:
    return tuple(judge(order) for order in orders())


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def table(group: Sequence[Outcome] | None = None) -> str:
    """The per-category table: orders, by expectation, caught, missed, quiet orders interrupted."""
    every = list(outcomes() if group is None else group)
    head = (
        "| category | orders | should alert | should be reported incomplete | should pass quietly "
        "| caught | missed | caught share | quiet with an interruptive alert | quiet but incomplete |"
    )
    rows = [head, "|---|---|---|---|---|---|---|---|---|---|"]

    def row(label: str, items: Sequence[Outcome]) -> str:
        catch = [o for o in items if o.expect != "quiet"]
        quiet = [o for o in items if o.expect == "quiet"]
        caught = sum(o.passed for o in catch)
        loud = sum(o.interruptive for o in quiet)
        partial = sum(not o.complete for o in quiet)
        n_alert = sum(o.expect == "alert" for o in items)
        n_incomplete = sum(o.expect == "incomplete" for o in items)
        return (
            f"| {label} | {len(items)} | {n_alert} | {n_incomplete} | {len(quiet)} | {caught} "
            f"| {len(catch) - caught} | {_pct(caught, len(catch))} | {loud} | {partial} |"
        )

    for category in CATEGORIES:
        items = [o for o in every if o.category == category]
        if items:
            rows.append(row(CATEGORY_TEXT[category], items))
    rows.append(row("**all**", every))
    return "\n".join(rows)


def counted() -> list[Outcome]:
    """The orders the targets are asserted on: every order whose feature is on main (no `needs`)."""
    return [o for o in outcomes() if not o.needs]


# --------------------------------------------------------------------------------------------------
# Tests


def test_the_order_set_is_large_sourced_and_spread() -> None:
    every = orders()
    assert len(every) >= 120
    assert len({o["id"] for o in every}) == len(every)
    for order in every:
        assert order.get("reference"), order["id"]
        assert order["category"] in CATEGORIES, order["id"]
        assert order["expect"] in EXPECTS, order["id"]
        assert set(order.get("needs") or ()) <= set(BRANCHES), order["id"]
        if order["expect"] == "alert":
            AlertKind(order["kind"])
        else:
            assert "kind" not in order and "severity" not in order, order["id"]
        assert bool(order.get("missing")) is (order["expect"] == "incomplete"), order["id"]
    quiet = sum(o["expect"] == "quiet" for o in every)
    assert 0.25 <= quiet / len(every) <= 0.35, quiet
    assert sum(o["expect"] == "incomplete" for o in every) >= 8
    for category in CATEGORIES:
        assert sum(o["category"] == category for o in every) >= 10, category


def test_at_least_95_percent_caught_on_the_features_in_main() -> None:
    should_catch = [o for o in counted() if o.expect != "quiet"]
    misses = [f"{o.order_id}: {o.detail}" for o in should_catch if not o.passed]
    print("\n" + table(counted()))
    assert (len(should_catch) - len(misses)) / len(should_catch) >= CAUGHT_TARGET, "\n".join(misses)


@pytest.mark.parametrize("order_id", [str(o["id"]) for o in orders() if o["expect"] == "quiet" and not o.get("needs")])
def test_quiet_orders_get_no_interruptive_alert(order_id: str) -> None:
    (outcome,) = [o for o in outcomes() if o.order_id == order_id]
    assert not outcome.interruptive, outcome.detail
    assert outcome.complete, outcome.detail


@pytest.mark.parametrize(
    "order_id", [str(o["id"]) for o in orders() if o["expect"] == "incomplete" and not o.get("needs")]
)
def test_incomplete_orders_are_reported_incomplete(order_id: str) -> None:
    (outcome,) = [o for o in outcomes() if o.order_id == order_id]
    assert not outcome.complete, outcome.detail


def test_orders_waiting_for_other_branches_are_reported_apart() -> None:
    waiting = [o for o in outcomes() if o.needs]
    print(f"\n{len(waiting)} orders wait for a branch: " + ", ".join(f"{o.order_id} {list(o.needs)}" for o in waiting))
    # Not asserted on until the lead merges the branch and drops the mark; only that they run.
    assert all(o.detail for o in waiting)

"""Our own order set for the knowledge categories (issue 10): at least 100 orders across allergy,
drug-drug, drug-food and duplication, each written from a public reference
(tests/data/order_set_knowledge.yaml), screened through the pure engine path `praneya check --knowledge`
uses (shipped rules and knowledge from files).

- caught: an alert of the expected kind at the expected severity or above;
- quiet: no interruptive (HIGH/CRITICAL) alert of any kind (asserted for every quiet order); a quiet
  order with an item the engine could not screen is counted apart, as unscreened: a silent pass is not a
  quiet one.

    python -m tests.test_order_set_knowledge      # prints the README's "Order set" table and the misses
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.adhoc import case_from_json
from engine.evaluate import evaluate
from engine.knowledge import Knowledge, load_knowledge_files
from engine.model import AlertKind, EvaluationResult, Severity
from engine.rules import RuleSet, load_rule_files
from store.config import PROJECT_ROOT

ORDER_SET = Path(__file__).parent / "data" / "order_set_knowledge.yaml"
CATEGORIES = ("allergy", "drug-drug", "drug-food", "duplication")
CAUGHT_TARGET = 0.95


@cache
def shipped() -> tuple[Knowledge, RuleSet]:
    knowledge = load_knowledge_files(PROJECT_ROOT / "rules" / "knowledge")
    rules = [r.rule for r in load_rule_files([PROJECT_ROOT / "rules"]) if r.rule is not None]
    return knowledge, RuleSet.build(rules, "shipped")


@cache
def orders() -> tuple[Mapping[str, Any], ...]:
    data = yaml.safe_load(ORDER_SET.read_text(encoding="utf-8"))
    return tuple(data["orders"])


def case_of(order: Mapping[str, Any]) -> dict[str, Any]:
    """An order as a `praneya check --cases` line: the patient's lists, the proposed drug or food."""
    patient = order.get("patient") or {}
    proposed = order["order"]
    case: dict[str, Any] = {
        "id": order["id"],
        "medications": list(patient.get("meds") or []),
        "allergies": list(patient.get("allergies") or []),
        "foods": list(patient.get("foods") or []),
        "proposed": [],
    }
    if "age" in patient:
        case["age"] = patient["age"]
    if "drug" in proposed:
        case["proposed"].append({"name": proposed["drug"]})
    else:
        case["foods"].append(proposed["food"])
    return case


@dataclass(frozen=True)
class Outcome:
    order_id: str
    category: str
    passed: bool  # caught; for a quiet order: no interruptive alert and every item screened
    interruptive: bool  # an interruptive (HIGH/CRITICAL) alert appeared
    unscreened: bool  # an item the engine could not recognise (result.unresolved)
    detail: str  # what the engine said, for the misses


def judge(order: Mapping[str, Any]) -> Outcome:
    knowledge, rules = shipped()
    _, snapshot, request = case_from_json(case_of(order))
    result: EvaluationResult = evaluate(snapshot, request, rules, knowledge)
    alerts = ", ".join(f"{a.severity.name} {a.kind.value}" for a in result.alerts) or "no alert"
    unresolved = ", ".join(f"{u.kind}:{u.text!r}" for u in result.unresolved)
    detail = alerts + (f"; unresolved {unresolved}" if unresolved else "")
    expect = order["expect"]
    interruptive = any(a.interruptive for a in result.alerts)
    unscreened = bool(result.unresolved)
    if expect.get("quiet"):
        passed = not interruptive and not unscreened
    else:
        kind, floor = AlertKind(expect["kind"]), Severity[expect["severity"]]
        passed = any(a.kind is kind and a.severity >= floor for a in result.alerts)
    return Outcome(str(order["id"]), str(order["category"]), passed, interruptive, unscreened, detail)


@cache
def outcomes() -> tuple[Outcome, ...]:
    return tuple(judge(order) for order in orders())


def table() -> str:
    rows = ["| category | orders | caught | share |", "|---|---|---|---|"]
    every = [o for o in outcomes() if o.category != "quiet"]
    for category in CATEGORIES:
        group = [o for o in every if o.category == category]
        caught = sum(o.passed for o in group)
        rows.append(f"| {category} | {len(group)} | {caught} | {caught / len(group):.1%} |")
    caught = sum(o.passed for o in every)
    rows.append(f"| **all alerting orders** | {len(every)} | {caught} | {caught / len(every):.1%} |")
    quiet = [o for o in outcomes() if o.category == "quiet"]
    loud = sum(o.interruptive for o in quiet)
    unscreened = sum(o.unscreened for o in quiet)
    for label, count in (("an interruptive alert", loud), ("an unscreened item", unscreened)):
        rows.append(f"| quiet orders with {label} | {len(quiet)} | {count} | {count / len(quiet):.1%} |")
    return "\n".join(rows)


def test_the_order_set_is_realistic_in_size_and_spread() -> None:
    every = orders()
    assert len({o["id"] for o in every}) == len(every)
    assert sum(o["category"] != "quiet" for o in every) >= 100
    assert sum(o["category"] == "quiet" for o in every) >= 25
    for category in CATEGORIES:
        assert sum(o["category"] == category for o in every) >= 15, category
    for order in every:
        assert order["category"] in (*CATEGORIES, "quiet"), order["id"]
        assert order.get("reference"), order["id"]
        assert order["expect"].get("quiet") is (True if order["category"] == "quiet" else None), order["id"]


def test_at_least_95_percent_of_the_alerting_orders_are_caught() -> None:
    every = [o for o in outcomes() if o.category != "quiet"]
    misses = [f"{o.order_id}: {o.detail}" for o in every if not o.passed]
    caught = len(every) - len(misses)
    assert caught / len(every) >= CAUGHT_TARGET, "\n".join(misses)


@pytest.mark.parametrize("order_id", [o["id"] for o in orders() if o["category"] == "quiet"])
def test_quiet_orders_get_no_interruptive_alert(order_id: str) -> None:
    (outcome,) = [o for o in outcomes() if o.order_id == order_id]
    assert not outcome.interruptive, outcome.detail


def main() -> int:
    print(table())
    misses = [o for o in outcomes() if not o.passed]
    if misses:
        print("\nmisses:")
        for o in misses:
            print(f"  {o.order_id} ({o.category}): {o.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

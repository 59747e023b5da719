"""Rule cases: the `cases:` of each rule file, as engine inputs and an expectation.

One loader for every consumer: `praneya rules test`, pytest (`parametrize(ids=case.case_id)`) and the
gRPC end-to-end tests (which send `snapshot`/`request` through the service instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.demographics import DEMOGRAPHIC_KEYS, DemographicInputError, read_demographics
from engine.evaluate import run_rules
from engine.facts import build_facts
from engine.identity import Coding, coding_from_text
from engine.knowledge import Knowledge
from engine.labs import LabInputError, lab_catalog
from engine.model import (
    AllergyFact,
    BiometricFact,
    ConditionFact,
    EvaluationRequest,
    MedicationFact,
    PatientSnapshot,
    Severity,
)
from engine.rules import LoadedRule, Rule, RuleSet, load_rule_files

__all__ = [
    "CaseExpectation",
    "CaseFormatError",
    "CaseResult",
    "RuleCase",
    "cases_of_rule",
    "load_rule_cases",
    "run_case",
]

_GIVEN_KEYS = frozenset(
    {
        "medications",
        "proposed_medications",
        "allergies",
        "conditions",
        "foods",
        "biometrics",
        "age",
        "sex",
        "pregnant",
        "tier",
        *DEMOGRAPHIC_KEYS,
    }
)


class CaseFormatError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CaseExpectation:
    fires: bool | None = None
    severity: Severity | None = None
    insufficient_data: bool = False

    def describe(self) -> str:
        if self.insufficient_data:
            return "insufficient data"
        if self.fires:
            return "fires" + (f" at {self.severity.name}" if self.severity is not None else "")
        return "does not fire"


@dataclass(frozen=True)
class RuleCase:
    rule_id: str
    name: str
    snapshot: PatientSnapshot
    request: EvaluationRequest
    expect: CaseExpectation
    rule: Rule | None = None
    location: str = ""  # "rules/x.yaml:42"

    @property
    def case_id(self) -> str:
        return f"{self.rule_id}: {self.name}"


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: RuleCase
    passed: bool
    outcome: str  # what happened, in the words of CaseExpectation.describe
    reason: str = ""


def _medication(value: Any, item_id: str, proposed: bool) -> MedicationFact:
    if isinstance(value, str):
        return MedicationFact(id=item_id, name=value, proposed=proposed)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return MedicationFact(
            id=str(value.get("id", item_id)),
            name=value["name"],
            dose=value.get("dose"),
            route=value.get("route"),
            frequency=value.get("frequency"),
            proposed=proposed,
        )
    raise CaseFormatError(f"a medication is a name or {{name, dose, route, frequency}}, got {value!r}")


def _allergy(value: Any, item_id: str) -> AllergyFact:
    if isinstance(value, str):
        return AllergyFact(id=item_id, allergen=value)
    if isinstance(value, Mapping) and isinstance(value.get("allergen"), str):
        reactions = value.get("reactions") or ()
        if not isinstance(reactions, list | tuple):
            raise CaseFormatError(f"an allergy's reactions are a list, got {reactions!r}")
        return AllergyFact(
            id=str(value.get("id", item_id)),
            allergen=value["allergen"],
            category=value.get("category"),
            severity=value.get("severity"),
            reactions=tuple(str(r) for r in reactions),
        )
    raise CaseFormatError(
        f"an allergy is a name or {{allergen, category, severity, reactions}}, got {value!r}"
    )


def _condition(value: Any, item_id: str) -> ConditionFact:
    if isinstance(value, str):
        return ConditionFact(id=item_id, name=value)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        code = value.get("code")
        codings: tuple[Coding, ...] = ()
        if code is not None:
            # `icd10:J45.909`, `snomed:195967001`, `system|code`, or a bare ICD-10 code (as before).
            try:
                coding = coding_from_text(str(code))
            except ValueError as exc:
                raise CaseFormatError(f"condition code {code!r}: {exc}") from None
            if coding is not None:
                if coding.system not in ("icd10", "snomed"):
                    raise CaseFormatError(f"condition code {code!r}: conditions take icd10 or snomed codes")
                codings = (coding,)
        return ConditionFact(id=str(value.get("id", item_id)), name=value["name"], code=code, codings=codings)
    raise CaseFormatError(f"a condition is a name or {{name, code}}, got {value!r}")


_READING_KEYS = frozenset({"value", "unit", "days_ago"})


def _reading(name: str, value: Any) -> BiometricFact:
    """`potassium: 5.8` (the catalog's canonical unit, taken now) or
    `potassium: {value: 5.8, unit: mEq/L, days_ago: 30}` -> a reading, read through the lab catalog."""
    where = f"given.biometrics.{name}"
    unit = None
    days_ago: Any = 0
    if isinstance(value, Mapping):
        unknown = set(value) - _READING_KEYS
        if unknown:
            raise CaseFormatError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        unit, days_ago, value = value.get("unit"), value.get("days_ago", 0), value.get("value")
        if unit is not None and not isinstance(unit, str):
            raise CaseFormatError(f"{where}.unit must be text")
        if isinstance(days_ago, bool) or not isinstance(days_ago, int | float) or days_ago < 0:
            raise CaseFormatError(f"{where}.days_ago must be a number of days, 0 or more")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CaseFormatError(f"{where} must be a number, or {{value, unit, days_ago}}")
    try:
        lab = lab_catalog().reading(float(value), unit, reading_type=name, unit_optional=True)
    except LabInputError as exc:
        raise CaseFormatError(f"{where}: {exc}") from None
    return BiometricFact(
        id=f"biometric-{name}",
        reading_type=lab.reading_type,
        value=lab.value,
        unit=lab.unit,
        observed_at=datetime.now(UTC) - timedelta(days=float(days_ago)),
    )


def _list(given: Mapping[str, Any], key: str) -> list[Any]:
    value = given.get(key) or []
    if not isinstance(value, list):
        raise CaseFormatError(f"given.{key} must be a list")
    return value


def given_to_inputs(given: Mapping[str, Any]) -> tuple[PatientSnapshot, EvaluationRequest]:
    """A patient in the clinician's words -> the engine's inputs, with ids like med-1, allergy-1."""
    if not isinstance(given, Mapping):
        raise CaseFormatError(
            f"given is a mapping like {{medications: [...], age: 70}}, got {type(given).__name__}"
        )
    unknown = set(given) - _GIVEN_KEYS
    if unknown:
        raise CaseFormatError(f"unknown key(s) in given: {', '.join(sorted(map(str, unknown)))}")
    biometrics = given.get("biometrics") or {}
    if not isinstance(biometrics, Mapping):
        raise CaseFormatError("given.biometrics is a mapping like {egfr: 25}")
    readings = [_reading(str(name), value) for name, value in biometrics.items()]
    age = given.get("age")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int)):
        raise CaseFormatError("given.age must be whole years")
    pregnant = given.get("pregnant")
    if pregnant is not None and not isinstance(pregnant, bool):
        raise CaseFormatError("given.pregnant must be true or false")
    try:
        demo = read_demographics(given, pregnant=pregnant)
    except DemographicInputError as exc:
        raise CaseFormatError(f"given.{exc}") from None
    extra = demo.pop("readings")
    if extra and any(r.reading_type in ("weight_kg", "height_cm") for r in readings):
        raise CaseFormatError("given: weight and height go in weight/height or in biometrics, not both")
    readings.extend(extra)
    snapshot = PatientSnapshot(
        patient_id="case-patient",
        tenant_id="case-tenant",
        age=age,
        sex=given.get("sex"),
        pregnant=pregnant,
        **demo,
        subscription_tier=str(given.get("tier", "BASIC")),
        medications=tuple(
            _medication(m, f"med-{i}", False) for i, m in enumerate(_list(given, "medications"), 1)
        ),
        allergies=tuple(_allergy(a, f"allergy-{i}") for i, a in enumerate(_list(given, "allergies"), 1)),
        conditions=tuple(
            _condition(c, f"condition-{i}") for i, c in enumerate(_list(given, "conditions"), 1)
        ),
        biometrics=tuple(readings),
    )
    request = EvaluationRequest(
        proposed_medications=tuple(
            _medication(m, f"proposed-{i}", True)
            for i, m in enumerate(_list(given, "proposed_medications"), 1)
        ),
        proposed_foods=tuple(str(f) for f in _list(given, "foods")),
    )
    return snapshot, request


def _expectation(expect: Any) -> CaseExpectation:
    if not isinstance(expect, Mapping):
        raise CaseFormatError("expect is {fires: true|false, severity: ...} or {insufficient_data: true}")
    unknown = set(expect) - {"fires", "severity", "insufficient_data"}
    if unknown:
        raise CaseFormatError(f"unknown key(s) in expect: {', '.join(sorted(map(str, unknown)))}")
    insufficient = expect.get("insufficient_data", False) is True
    fires = expect.get("fires")
    if insufficient and fires is not None:
        raise CaseFormatError("expect either fires or insufficient_data, not both")
    if not insufficient and not isinstance(fires, bool):
        raise CaseFormatError("expect.fires must be true or false")
    severity = expect.get("severity")
    if severity is not None:
        if not fires:
            raise CaseFormatError("expect.severity only goes with fires: true")
        try:
            severity = Severity[str(severity)]
        except KeyError:
            raise CaseFormatError(f"expect.severity {severity!r} is not a severity") from None
    return CaseExpectation(fires=fires, severity=severity, insufficient_data=insufficient)


def cases_of_rule(rule: Rule, loaded: LoadedRule | None = None) -> list[RuleCase]:
    cases = []
    for i, raw in enumerate(rule.cases):
        location = f"{loaded.path}:{loaded.line_of(('cases', i))}" if loaded is not None else ""
        name = str(raw.get("name") or f"case {i + 1}")
        try:
            given = raw.get("given")
            snapshot, request = given_to_inputs({} if given is None else given)
            expect = _expectation(raw.get("expect"))
        except CaseFormatError as exc:
            raise CaseFormatError(f"{location or rule.id}: case {name!r}: {exc}") from None
        cases.append(RuleCase(rule.id, name, snapshot, request, expect, rule, location))
    return cases


def load_rule_cases(paths: Iterable[str | Path]) -> list[RuleCase]:
    """Every case of every valid rule under the given paths. Invalid rule files are lint's business
    and raise here, so a broken file cannot hide its cases."""
    cases: list[RuleCase] = []
    for loaded in load_rule_files(paths):
        if loaded.rule is None:
            raise CaseFormatError("; ".join(loaded.errors))
        cases.extend(cases_of_rule(loaded.rule, loaded))
    return cases


def run_case(case: RuleCase, knowledge: Knowledge) -> CaseResult:
    """Run one rule, exactly as production would (relevance index, tier, missing data), on the case."""
    if case.rule is None:
        raise ValueError(f"case {case.case_id} carries no rule")
    # Retired and shadow rules are still tested: their logic must be right before they go live.
    rule = replace(case.rule, status="active")
    ruleset = RuleSet.build([rule], version="case")
    facts = build_facts(case.snapshot, case.request, knowledge)
    outcomes = run_rules(facts, ruleset)
    status = outcomes[0].status if outcomes else "NOT_FIRED"
    if status == "TIER":
        status = "NOT_FIRED"
    expect = case.expect
    outcome = {"FIRED": "fires", "NOT_FIRED": "does not fire", "INSUFFICIENT_DATA": "insufficient data"}.get(
        status, "error"
    )
    if status == "FIRED" and outcomes[0].alert is not None:
        outcome += f" at {outcomes[0].alert.severity.name}"
    if status == "ERROR":
        error = outcomes[0].error
        return CaseResult(case, False, "error", error.reason if error else "error")
    if expect.insufficient_data:
        passed = status == "INSUFFICIENT_DATA"
    elif expect.fires:
        passed = status == "FIRED"
        alert = outcomes[0].alert if outcomes else None
        if passed and expect.severity is not None and alert is not None and alert.severity != expect.severity:
            passed = False
    else:
        passed = status == "NOT_FIRED"
    reason = ""
    if not passed:
        reason = f"expected: {expect.describe()}; got: {outcome}"
        if status == "INSUFFICIENT_DATA" and outcomes[0].error is not None:
            reason += f" ({outcomes[0].error.reason})"
        if not outcomes:
            reason += " (the rule was not relevant: nothing in the case matches its applies_to)"
    return CaseResult(case, passed, outcome, reason)

"""Ad-hoc patients: `praneya check` flags and `--cases` JSON lines -> engine facts; results -> JSON.

Pure: no files, no database. The CLI reads and writes; this module says what the input means and
refuses what it cannot read, naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from engine.demographics import DEMOGRAPHIC_KEYS, DemographicInputError, read_demographics
from engine.hepatic import CLASS_CODES, child_pugh_class
from engine.identity import Coding, coding_from_text, parse_coding
from engine.labs import LOINC_SYSTEMS, LabInputError, lab_catalog
from engine.model import (
    AllergyFact,
    BiometricFact,
    ConditionFact,
    EvaluationRequest,
    EvaluationResult,
    MedicationFact,
    PatientSnapshot,
)

__all__ = ["CaseError", "case_from_json", "coded_item", "flags_case", "parse_lab_text", "quantity_flag", "result_json"]

_CASE_KEYS = frozenset(
    {"id", "medications", "proposed", "allergies", "conditions", "labs", "age", "sex", "pregnant", "foods", "tier"}
    | {"child_pugh", "child_pugh_score"}
    | DEMOGRAPHIC_KEYS
)
_ITEM_KEYS = frozenset({"name", "code", "system", "dose", "route", "frequency", "category", "severity", "reactions"})
_MAX_ITEMS = 500
_MAX_TEXT = 500


class CaseError(ValueError):
    """Input that cannot be evaluated; the message names the field."""


def coded_item(text: str, where: str) -> tuple[str, Coding | None]:
    """A CLI value: a name, or a code (`rxnorm:11289`, `http://www.nlm.nih.gov/research/umls/rxnorm|11289`)."""
    try:
        coding = coding_from_text(text)
    except ValueError as exc:
        raise CaseError(f"{where}: {exc}") from None
    return ("" if coding is not None else text), coding


def _text(value: Any, where: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise CaseError(f"{where}: required")
        return None
    if not isinstance(value, str):
        raise CaseError(f"{where}: expected a string")
    if len(value) > _MAX_TEXT or "\x00" in value:
        raise CaseError(f"{where}: longer than {_MAX_TEXT} characters or holds NUL")
    return value


def _coding(item: Mapping[str, Any], where: str) -> Coding | None:
    code = item.get("code")
    if code is None:
        return None
    if isinstance(code, Mapping):  # {"system": ..., "code": ...}
        system, value = code.get("system"), code.get("code")
    else:
        system, value = item.get("system"), code
    value = _text(value, f"{where}.code", required=True)
    assert value is not None
    if system is None:
        try:
            coding = coding_from_text(value)
        except ValueError as exc:
            raise CaseError(f"{where}.code: {exc}") from None
        if coding is None:
            raise CaseError(f"{where}.code: {value[:40]!r} names no code system (write rxnorm:CODE or system|code)")
        return coding
    system = _text(system, f"{where}.system", required=True)
    assert system is not None
    try:
        return parse_coding(system, value)
    except ValueError as exc:
        raise CaseError(f"{where}.code: {exc}") from None


def _items(value: Any, where: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CaseError(f"{where}: expected a list")
    if len(value) > _MAX_ITEMS:
        raise CaseError(f"{where}: more than {_MAX_ITEMS} items")
    out: list[Mapping[str, Any]] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping):
            raise CaseError(f"{where}[{i}]: expected an object or a name")
        unknown = set(item) - _ITEM_KEYS
        if unknown:
            raise CaseError(f"{where}[{i}]: unknown field {sorted(unknown)[0]!r}")
        if item.get("name") is None and item.get("code") is None:
            raise CaseError(f"{where}[{i}]: needs a name or a code")
        out.append(item)
    return out


def _medications(value: Any, where: str, prefix: str, *, proposed: bool) -> tuple[MedicationFact, ...]:
    meds = []
    for i, item in enumerate(_items(value, where), 1):
        w = f"{where}[{i - 1}]"
        meds.append(
            MedicationFact(
                id=f"{prefix}-{i}",
                name=_text(item.get("name"), f"{w}.name") or "",
                dose=_text(item.get("dose"), f"{w}.dose"),
                route=_text(item.get("route"), f"{w}.route"),
                frequency=_text(item.get("frequency"), f"{w}.frequency"),
                proposed=proposed,
                coding=_coding(item, w),
            )
        )
    return tuple(meds)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CaseError(f"{where}: expected a finite number")
    return float(value)


_LAB_KEYS = frozenset({"type", "code", "value", "unit", "taken_at"})


def parse_lab_text(text: str) -> dict[str, Any]:
    """`--lab potassium=5.8mmol/L`, `--lab "loinc:2823-3=5.8 mmol/L@2026-11-30"`, `--lab egfr=25`
    -> a `labs` list entry {"type" | "code", "value", "unit", "taken_at"}."""
    name, sep, rest = text.partition("=")
    rest, _, when = rest.partition("@")
    match = _LAB_VALUE.match(rest.strip())
    if not sep or not name.strip() or match is None:
        raise CaseError(f"--lab {text[:60]!r}: expected TYPE=NUMBER[UNIT][@DATE], e.g. potassium=5.8mmol/L")
    entry: dict[str, Any] = {"value": float(match.group(1))}
    key = name.strip()
    if key.lower().startswith("loinc:"):
        entry["code"] = key
    else:
        entry["type"] = key
    if match.group(2).strip():
        entry["unit"] = match.group(2).strip()
    if when.strip():
        entry["taken_at"] = when.strip()
    return entry


_LAB_VALUE = re.compile(r"^([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*(.*)$")


def _taken_at(value: Any, where: str, now: datetime) -> datetime:
    text = _text(value, where, required=True)
    assert text is not None
    try:
        taken = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CaseError(f"{where}: expected an ISO date or date-time (2026-11-30, 2026-11-30T08:00:00Z)") from None
    taken = taken if taken.tzinfo is not None else taken.replace(tzinfo=UTC)
    if taken > now + timedelta(minutes=5):
        raise CaseError(f"{where}: is in the future")
    return taken


def _labs(labs: Any) -> tuple[BiometricFact, ...]:
    """`labs`: {"potassium": 5.8} (the lab catalog's canonical unit, taken now) or a list of
    {"type" or "code" ("loinc:2823-3"), "value", "unit", "taken_at"}; read through the lab catalog."""
    now = datetime.now(UTC)
    if labs is None:
        return ()
    entries: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(labs, Mapping):
        entries = [(f"labs.{name}", {"type": str(name), "value": value}) for name, value in sorted(labs.items())]
    elif isinstance(labs, list):
        if len(labs) > _MAX_ITEMS:
            raise CaseError(f"labs: more than {_MAX_ITEMS} items")
        for i, item in enumerate(labs):
            if not isinstance(item, Mapping):
                raise CaseError(f"labs[{i}]: expected an object {{type or code, value, unit, taken_at}}")
            unknown = set(item) - _LAB_KEYS
            if unknown:
                raise CaseError(f"labs[{i}]: unknown field {sorted(map(str, unknown))[0]!r}")
            entries.append((f"labs[{i}]", item))
    else:
        raise CaseError("labs: expected an object of TYPE: NUMBER or a list of readings")
    catalog = lab_catalog()
    out = []
    for i, (where, item) in enumerate(entries, 1):
        value = _number(item.get("value"), f"{where}.value" if where.startswith("labs[") else where)
        rtype = _text(item.get("type"), f"{where}.type")
        code = _text(item.get("code"), f"{where}.code")
        loinc = None
        if code is not None:
            system, _, loinc = code.rpartition("|") if "|" in code else code.partition(":")
            if system.strip().rstrip("/").lower() not in LOINC_SYSTEMS:
                raise CaseError(f"{where}.code: a LOINC code, written loinc:CODE or http://loinc.org|CODE")
        unit = _text(item.get("unit"), f"{where}.unit")
        try:
            lab = catalog.reading(value, unit, reading_type=rtype, loinc=loinc, unit_optional=True)
        except LabInputError as exc:
            field = {"coding.code": "code", "reading_type": "type"}.get(exc.field, exc.field)
            target = where if where.startswith("labs.") and field in ("value", "type") else f"{where}.{field}"
            raise CaseError(f"{target}: {exc.message}") from None
        taken = _taken_at(item["taken_at"], f"{where}.taken_at", now) if item.get("taken_at") is not None else now
        out.append(BiometricFact(f"lab-{i}", lab.reading_type, lab.value, lab.unit, lab.code, taken))
    return tuple(out)


def case_from_json(case: Any, *, line: int | None = None) -> tuple[str, PatientSnapshot, EvaluationRequest]:
    """One `--cases` line: {"id", "medications", "proposed", "allergies", "conditions", "labs", "age",
    "sex", "pregnant", "foods"} -> (id, snapshot, request)."""
    at = f"line {line}: " if line is not None else ""
    try:
        return _case(case)
    except CaseError as exc:
        raise CaseError(f"{at}{exc}") from None


def _case(case: Any) -> tuple[str, PatientSnapshot, EvaluationRequest]:
    if not isinstance(case, Mapping):
        raise CaseError("expected a JSON object")
    unknown = set(case) - _CASE_KEYS
    if unknown:
        raise CaseError(f"unknown field {sorted(unknown)[0]!r}")
    case_id = case.get("id")
    if not isinstance(case_id, str | int) or isinstance(case_id, bool) or str(case_id) == "":
        raise CaseError("id: required (a string or a number)")
    allergies = []
    for i, item in enumerate(_items(case.get("allergies"), "allergies"), 1):
        w = f"allergies[{i - 1}]"
        reactions = item.get("reactions") or []
        if not isinstance(reactions, list) or not all(isinstance(r, str) for r in reactions):
            raise CaseError(f"{w}.reactions: expected a list of strings")
        category = _text(item.get("category"), f"{w}.category")
        allergies.append(
            AllergyFact(
                id=f"allergy-{i}",
                allergen=_text(item.get("name"), f"{w}.name") or "",
                category=category.upper() if category else None,
                severity=_text(item.get("severity"), f"{w}.severity"),
                reactions=tuple(reactions),
                coding=_coding(item, w),
            )
        )
    conditions = []
    for i, item in enumerate(_items(case.get("conditions"), "conditions"), 1):
        w = f"conditions[{i - 1}]"
        coding = _coding(item, w)
        if coding is not None and coding.system not in ("icd10", "snomed"):
            raise CaseError(f"{w}.code: conditions take icd10 (ICD-10-CM) or snomed (SNOMED CT) codes")
        conditions.append(
            ConditionFact(
                id=f"condition-{i}",
                name=_text(item.get("name"), f"{w}.name") or "",
                code=coding.code if coding is not None else None,
                codings=(coding,) if coding is not None else (),
            )
        )
    biometrics = _labs(case.get("labs"))
    biometrics += _child_pugh(case.get("child_pugh"), case.get("child_pugh_score"))
    age = case.get("age")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= 130):
        raise CaseError("age: expected a whole number of years, 0 to 130")
    sex = _text(case.get("sex"), "sex")
    pregnant = case.get("pregnant")
    if pregnant is not None and not isinstance(pregnant, bool):
        raise CaseError("pregnant: expected true or false")
    foods = case.get("foods") or []
    if not isinstance(foods, list) or not all(isinstance(f, str) for f in foods):
        raise CaseError("foods: expected a list of strings")
    tier = case.get("tier", "PREMIUM")
    if tier not in ("BASIC", "ENHANCED", "PREMIUM"):
        raise CaseError("tier: one of BASIC, ENHANCED, PREMIUM")
    # birth_date, weight, height, pregnancy, lactating (and as_of, the evaluation date): engine.demographics.
    try:
        demo = read_demographics(case, pregnant=pregnant)
    except DemographicInputError as exc:
        raise CaseError(str(exc)) from None
    extra = demo.pop("readings")
    if extra and any(b.reading_type in ("weight", "weight_kg", "height", "height_cm") for b in biometrics):
        raise CaseError("labs: weight and height go in weight/height or in labs, not both")
    snapshot = PatientSnapshot(
        patient_id=str(case_id),
        tenant_id="adhoc",
        age=age,
        sex=sex,
        pregnant=pregnant,
        subscription_tier=tier,
        medications=_medications(case.get("medications"), "medications", "med", proposed=False),
        allergies=tuple(allergies),
        conditions=tuple(conditions),
        biometrics=(*biometrics, *extra),
        **demo,
    )
    request = EvaluationRequest(
        proposed_medications=_medications(case.get("proposed"), "proposed", "proposed", proposed=True),
        proposed_foods=tuple(foods),
    )
    return str(case_id), snapshot, request


def _child_pugh(given: Any, score: Any) -> tuple[BiometricFact, ...]:
    """`"child_pugh": "B"` or `{"class": "B", "score": 8, "date": "YYYY-MM-DD"}`, and/or `"child_pugh_score": 8`
    -> the Child-Pugh reading engine.hepatic reads (the score when given, else the class)."""
    klass: Any = None
    when: Any = None
    where = "child_pugh"
    if isinstance(given, Mapping):
        unknown = set(given) - {"class", "score", "date"}
        if unknown:
            raise CaseError(f"child_pugh: unknown field {sorted(unknown)[0]!r}")
        klass, when = given.get("class"), given.get("date")
        if given.get("score") is not None:
            if score is not None and given.get("score") != score:
                raise CaseError("child_pugh.score: differs from child_pugh_score")
            score, where = given.get("score"), "child_pugh.score"
    elif given is not None:
        klass = given
    if score is not None:
        where = "child_pugh_score" if where == "child_pugh" else where
        if isinstance(score, bool) or not isinstance(score, int | float) or score != int(score) or not 5 <= score <= 15:
            raise CaseError(f"{where}: a whole number of points from 5 to 15")
    if klass is not None:
        if not isinstance(klass, str) or klass.strip().upper() not in CLASS_CODES:
            raise CaseError("child_pugh: a Child-Pugh class, A, B or C")
        klass = klass.strip().upper()
        if score is not None and child_pugh_class(score) != klass:
            raise CaseError(f"child_pugh: class {klass} does not match a score of {int(score)} points")
    if klass is None and score is None:
        if when is not None:
            raise CaseError("child_pugh.date: given without a class or a score")
        return ()
    observed = None
    if when is not None:
        try:
            day = date.fromisoformat(when) if isinstance(when, str) else None
        except ValueError:
            day = None
        if day is None:
            raise CaseError("child_pugh.date: expected YYYY-MM-DD")
        observed = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if observed > datetime.now(UTC):
            raise CaseError("child_pugh.date: in the future")
    if score is not None:
        return (BiometricFact("child-pugh", "child_pugh_score", float(score), "{score}", observed_at=observed),)
    code = float(CLASS_CODES[klass])
    return (BiometricFact("child-pugh", "child_pugh_class", code, "{class}", observed_at=observed),)


def result_json(result: EvaluationResult, *, case_id: str | None = None) -> dict[str, Any]:
    """What `praneya check --json` prints (and each `--cases` output line, with its id)."""
    out: dict[str, Any] = {} if case_id is None else {"id": case_id}
    out.update(
        {
            "complete": result.complete,
            "ruleset_version": result.ruleset_version,
            "knowledge_version": result.knowledge_version,
            "vocabulary_version": result.vocabulary_version,
            "alerts": [
                {
                    "severity": a.severity.name,
                    "kind": a.kind.value,
                    "summary": a.summary,
                    "rule_id": a.rule_id,
                    "rule_version": a.rule_version,
                    "evidence": a.evidence.name,
                    "involved": list(a.involved_ids),
                    "interruptive": a.interruptive,
                    "recommendation": a.recommendation,
                    "references": list(a.references),
                    "suppressed": a.suppressed,
                }
                for a in result.alerts
            ],
            "suppressed_duplicates": result.suppressed_duplicates,
            "unresolved": [
                {
                    "item": u.item_id,
                    "kind": u.kind,
                    "text": u.text,
                    "reason": u.reason,
                    "parts": list(u.parts),
                    "suggestions": list(u.suggestions),
                    "notes": list(u.notes),
                }
                for u in result.unresolved
            ],
            "rule_errors": [{"rule_id": e.rule_id, "reason": e.reason} for e in result.rule_errors],
        }
    )
    return out


def medication_classes(vocabulary: Any, medications: Sequence[MedicationFact]) -> list[dict[str, Any]]:
    """Each medication's ingredients and their FDA pharmacologic classes ("epc:...", "moa:...", "cs:...",
    "pe:..."), for `praneya check --json`: what the vocabulary read the item as. Names are cached."""
    out: list[dict[str, Any]] = []
    for med in medications:
        drug = vocabulary.normalize_drug(med.name, med.coding)
        known = [i for i in drug.ingredients if i not in drug.unrecognised]
        out.append(
            {
                "id": med.id,
                "name": med.name,
                "proposed": med.proposed,
                "recognised": drug.recognised,
                "ingredients": known,
                "pharm_classes": {i: list(vocabulary.pharm_classes_of(i)) for i in known},
            }
        )
    return out


def flags_case(
    *,
    meds: Sequence[str],
    proposed: Sequence[str],
    allergies: Sequence[str],
    conditions: Sequence[str],
    labs: Sequence[Mapping[str, Any]] | Mapping[str, float],
    foods: Sequence[str],
    age: int | None,
    sex: str | None,
    pregnant: bool | None,
    tier: str,
    child_pugh: str | None = None,
    child_pugh_score: int | None = None,
    child_pugh_date: str | None = None,
    demographics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`praneya check` flags as a case object, so flags and `--cases` lines share one reader."""

    def item(text: str, where: str) -> dict[str, Any]:
        name, coding = coded_item(text, where)
        if coding is None:
            return {"name": name}
        return {"code": {"system": coding.system, "code": coding.code}}

    def condition(text: str) -> dict[str, Any]:
        name, coding = coded_item(text, "--condition")
        if coding is None:
            return {"name": name}
        if coding.system not in ("icd10", "snomed"):
            raise CaseError(f"--condition {text!r}: conditions take icd10: or snomed: codes")
        return {"name": "", "code": {"system": coding.system, "code": coding.code}}

    case: dict[str, Any] = {
        "id": "check",
        "medications": [item(m, "--med") for m in meds],
        "proposed": [item(m, "--propose") for m in proposed],
        "allergies": [item(a, "--allergy") for a in allergies],
        "conditions": [condition(c) for c in conditions],
        "labs": dict(labs) if isinstance(labs, Mapping) else list(labs),
        "foods": list(foods),
        "tier": tier,
    }
    for key, value in (("age", age), ("sex", sex), ("pregnant", pregnant)):
        if value is not None:
            case[key] = value
    if child_pugh is not None or child_pugh_score is not None or child_pugh_date is not None:
        assessment = {"class": child_pugh, "score": child_pugh_score, "date": child_pugh_date}
        case["child_pugh"] = {k: v for k, v in assessment.items() if v is not None}
    case.update({k: v for k, v in (demographics or {}).items() if v is not None})
    return case


def quantity_flag(text: str, flag: str, default_unit: str) -> dict[str, Any]:
    """`--weight 70kg@2026-01-10` (or `70`, `154 lb`, `70 kg @ 2026-01-10T08:00`) -> {value, unit, taken_at}."""
    amount, _, when = text.partition("@")
    amount = amount.strip()
    i = 0
    while i < len(amount) and (amount[i].isdigit() or amount[i] == "."):
        i += 1
    try:
        value = float(amount[:i])
    except ValueError:
        raise CaseError(f"{flag} {text!r}: expected a number with a unit, e.g. 70kg or 70kg@2026-01-10") from None
    out: dict[str, Any] = {"value": value, "unit": amount[i:].strip() or default_unit}
    if when.strip():
        out["taken_at"] = when.strip()
    return out

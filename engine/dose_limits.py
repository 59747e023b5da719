"""Dose limits as knowledge, and the checks that apply them (DOSE_RANGE alerts).

The knowledge (`rules/knowledge/dose_limits.yaml`, every row with its source) holds, per
ingredient: single-dose, daily and weekly maxima by population (adult, geriatric, paediatric by
weight, and renal bands), whether the ingredient counts across products (acetaminophen in
combinations), a weekly-only schedule (oral methotrexate), opioid morphine milligram equivalent
(MME) factors, and which ISMP high-alert category it belongs to. `dose_findings` checks every
medication that carries a dose against it.

Fail closed: a dose that cannot be read, a strength that cannot be found ("1 tablet" of a product
whose strength is unknown), a weight-based limit without a weight, a PRN order without a maximum
frequency on a drug with a daily limit: each is a RuleError with `insufficient_data`, so the answer
is incomplete. A medication without any dose is not a dose order and is not checked.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

import engine._yaml as _yaml
from engine.demographics import demographics
from engine.dose import Amount, Dose, Strength, parse_dose, parse_strengths
from engine.identity import fold, parse_drug_text
from engine.model import Alert, AlertKind, EvidenceLevel, PatientSnapshot, RuleError, Severity
from engine.units import DoseUnit, UnitError, dose_unit, warm

__all__ = [
    "DOSE_FILE",
    "DoseKnowledge",
    "DoseKnowledgeError",
    "DoseLimit",
    "IngredientDosing",
    "MedicationDose",
    "check_doses",
    "dose_knowledge_from_document",
    "load_dose_knowledge",
    "shipped_dose_knowledge",
]

DOSE_FILE = "dose_limits.yaml"


class DoseKnowledgeError(ValueError):
    """The dose limits file is malformed; the message names the row."""


KnowledgeFileError = DoseKnowledgeError  # the loader's own name for it below


class Vocabulary(Protocol):
    """What the checks need of engine.knowledge.Vocabulary (which imports this module's loader, so this
    module names the shape rather than importing it)."""

    @property
    def concepts(self) -> Mapping[str, Any]: ...

    def normalize_drug(self, name: str) -> Any: ...


def severity_from_source(value: str) -> Severity:
    try:
        return Severity[value.strip().upper()]
    except KeyError:
        raise ValueError(f"{value!r} is not one of {', '.join(s.name for s in Severity)}") from None
_SHIPPED = Path(__file__).resolve().parents[1] / "rules" / "knowledge"
_EVIDENCE = {e.name: e for e in EvidenceLevel}
_POPULATIONS = ("adult", "geriatric", "pediatric", "renal")
_WEIGHT_TYPES = frozenset({"weight", "weight_kg", "body_weight", "bodyweight"})
_SUMMARY_MAX = 140


@dataclass(frozen=True, slots=True)
class LimitValue:
    value: float  # in canonical units (mg, [iU], mmol), per kg when `per_kg`
    unit: DoseUnit

    @property
    def per_kg(self) -> bool:
        return self.unit.per_kg

    def text(self) -> str:
        return f"{_fmt(self.value / self.unit.factor)} {self.unit.code}"


@dataclass(frozen=True, slots=True)
class DoseLimit:
    id: str
    ingredient: str
    population: str  # adult | geriatric | pediatric | renal (what the row is for; applicability below)
    source: str
    routes: tuple[str, ...] = ()  # empty: any route
    age_min: float | None = None  # years, inclusive
    age_max: float | None = None  # years, exclusive
    renal_measure: str | None = None  # "egfr" | "crcl": the lab the band is on (the renal work fills these)
    renal_below: float | None = None
    max_dose: LimitValue | None = None  # one administration
    max_daily: LimitValue | None = None
    max_weekly: LimitValue | None = None
    cap_dose: LimitValue | None = None  # absolute ceilings of a weight-based limit ("not to exceed 1 g")
    cap_daily: LimitValue | None = None
    severity: Severity = Severity.HIGH
    evidence: EvidenceLevel = EvidenceLevel.CLINICAL_TRIAL
    note: str = ""


@dataclass(frozen=True, slots=True)
class WeeklySchedule:
    """An ingredient that must be given on one or two days a week by these routes (oral methotrexate
    for non-oncologic use): an order on more days is a CRITICAL alert."""

    routes: tuple[str, ...]
    max_days_per_week: float
    source: str
    severity: Severity = Severity.CRITICAL
    # ICD-10 code prefixes of conditions for which a daily schedule can be intended (oncology): the
    # alert is then HIGH, asking to confirm the protocol, not CRITICAL.
    exception_icd10_prefixes: tuple[str, ...] = ()
    exception_source: str = ""


@dataclass(frozen=True, slots=True)
class MmeFactor:
    factor: float
    source: str
    routes: tuple[str, ...] = ()  # the routes the factor is for (oral; fentanyl: transdermal)
    rate_per_hour_mcg: bool = False  # fentanyl transdermal: the factor applies to mcg/h
    long_acting: bool = False  # extended-release/long-acting by nature (methadone, transdermal fentanyl)


@dataclass(frozen=True, slots=True)
class IngredientDosing:
    ingredient: str
    limits: tuple[DoseLimit, ...] = ()
    cumulative: bool = False  # the daily maximum counts this ingredient across every product
    weekly: WeeklySchedule | None = None
    mme: MmeFactor | None = None
    high_alert: str | None = None  # the ISMP high-alert category it falls in


@dataclass(frozen=True, slots=True)
class OpioidThresholds:
    naive_mme: float  # proposed total for an opioid-naive patient at or above which HIGH
    any_mme: float  # total at or above which a MODERATE alert for anyone
    tolerant_mme: float  # current opioids at or above this MME/day: opioid-tolerant (FDA definition)
    source: str
    tolerant_source: str
    naive_long_acting_source: str


@dataclass(frozen=True)
class DoseKnowledge:
    ingredients: Mapping[str, IngredientDosing]
    # Combination products whose strengths are written as a bare ratio after the name ("Percocet
    # 5/325"): folded name -> the ingredients in the order the label states the strengths.
    ratio_order: Mapping[str, tuple[str, ...]]
    opioids: OpioidThresholds | None
    version: str
    high_alert_scope: Mapping[str, str] = field(default_factory=dict)  # ISMP category -> how covered

    def dosing(self, ingredient: str) -> IngredientDosing | None:
        return self.ingredients.get(ingredient)


# --------------------------------------------------------------------------------------------------
# Loading


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _limit_value(text: Any, where: str) -> LimitValue | None:
    if text is None:
        return None
    parts = str(text).strip().split(None, 1)
    if len(parts) != 2:
        raise KnowledgeFileError(f"{where}: {text!r} is not '<number> <unit>'")
    try:
        number = float(parts[0])
        unit = dose_unit(parts[1])
    except (ValueError, UnitError) as exc:
        raise KnowledgeFileError(f"{where}: {exc}") from None
    if unit.kind in ("count", "volume") or unit.per_ml or unit.per_m2:
        raise KnowledgeFileError(f"{where}: a limit is an amount of the ingredient (mg, units, mmol), per kg or not")
    if number <= 0:
        raise KnowledgeFileError(f"{where}: must be positive")
    # A daily unit written as "mg/d" is the daily maximum's own; the number is what counts.
    return LimitValue(number * unit.factor, unit)


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise KnowledgeFileError(f"{where}: expected a list of names")


def _map(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KnowledgeFileError(f"{where}: expected a mapping")
    return value


def _source(spec: Mapping[str, Any], where: str) -> str:
    source = str(spec.get("source") or "").strip()
    if not source:
        raise KnowledgeFileError(f"{where}: every limit names its source")
    return source


def dose_knowledge_from_document(doc: Mapping[str, Any], *, version: str = "") -> DoseKnowledge:
    ingredients: dict[str, IngredientDosing] = {}
    for name, spec in _map(doc.get("ingredients"), "ingredients").items():
        where = f"ingredients.{name}"
        spec = _map(spec, where)
        ingredient = fold(str(name))
        limits: list[DoseLimit] = []
        for i, row in enumerate(spec.get("limits") or ()):
            w = f"{where}.limits[{i}]"
            row = _map(row, w)
            population = str(row.get("population", "adult"))
            if population not in _POPULATIONS:
                raise KnowledgeFileError(f"{w}.population: one of {', '.join(_POPULATIONS)}")
            try:
                severity = severity_from_source(str(row.get("severity", "HIGH")))
            except ValueError as exc:
                raise KnowledgeFileError(f"{w}.severity: {exc}") from None
            evidence = _EVIDENCE.get(str(row.get("evidence", "CLINICAL_TRIAL")).upper())
            if evidence is None:
                raise KnowledgeFileError(f"{w}.evidence: one of {', '.join(_EVIDENCE)}")
            renal = _map(row.get("renal"), f"{w}.renal")
            limit = DoseLimit(
                id=str(row.get("id") or f"{ingredient.replace(' ', '-')}-{population}-{i}"),
                ingredient=ingredient,
                population=population,
                source=_source(row, w),
                routes=_strs(row.get("routes"), f"{w}.routes"),
                age_min=float(row["age_min"]) if row.get("age_min") is not None else None,
                age_max=float(row["age_max"]) if row.get("age_max") is not None else None,
                renal_measure=str(renal["measure"]) if renal.get("measure") else None,
                renal_below=float(renal["below"]) if renal.get("below") is not None else None,
                max_dose=_limit_value(row.get("max_dose"), f"{w}.max_dose"),
                max_daily=_limit_value(row.get("max_daily"), f"{w}.max_daily"),
                max_weekly=_limit_value(row.get("max_weekly"), f"{w}.max_weekly"),
                cap_dose=_limit_value(row.get("cap_dose"), f"{w}.cap_dose"),
                cap_daily=_limit_value(row.get("cap_daily"), f"{w}.cap_daily"),
                severity=severity,
                evidence=evidence,
                note=str(row.get("note") or ""),
            )
            if not (limit.max_dose or limit.max_daily or limit.max_weekly or limit.cap_dose or limit.cap_daily):
                raise KnowledgeFileError(f"{w}: states no maximum")
            if population == "renal" and (limit.renal_measure not in ("egfr", "crcl") or limit.renal_below is None):
                raise KnowledgeFileError(f"{w}.renal: needs measure (egfr or crcl) and below")
            limits.append(limit)
        weekly = None
        if spec.get("weekly_only") is not None:
            ws = _map(spec["weekly_only"], f"{where}.weekly_only")
            weekly = WeeklySchedule(
                routes=_strs(ws.get("routes"), f"{where}.weekly_only.routes"),
                max_days_per_week=float(ws.get("max_days_per_week", 2)),
                source=_source(ws, f"{where}.weekly_only"),
                exception_icd10_prefixes=_strs(ws.get("exception_icd10_prefixes"), f"{where}.weekly_only"),
                exception_source=str(ws.get("exception_source") or ""),
            )
        mme = None
        if spec.get("mme") is not None:
            ms = _map(spec["mme"], f"{where}.mme")
            mme = MmeFactor(
                factor=float(ms["factor"]),
                source=_source(ms, f"{where}.mme"),
                routes=_strs(ms.get("routes"), f"{where}.mme.routes"),
                rate_per_hour_mcg=bool(ms.get("per_mcg_per_hour", False)),
                long_acting=bool(ms.get("long_acting", False)),
            )
        ingredients[ingredient] = IngredientDosing(
            ingredient=ingredient,
            limits=tuple(limits),
            cumulative=bool(spec.get("cumulative", False)),
            weekly=weekly,
            mme=mme,
            high_alert=str(spec["high_alert"]) if spec.get("high_alert") else None,
        )
    ratio_order = {
        fold(str(name)): tuple(fold(i) for i in _strs(_map(spec, f"ratio_order.{name}").get("ingredients"), name))
        for name, spec in _map(doc.get("ratio_order"), "ratio_order").items()
    }
    for name, spec in _map(doc.get("ratio_order"), "ratio_order").items():
        _source(_map(spec, f"ratio_order.{name}"), f"ratio_order.{name}")
    opioids = None
    if doc.get("opioids") is not None:
        op = _map(doc["opioids"], "opioids")
        opioids = OpioidThresholds(
            naive_mme=float(op["naive_mme_per_day"]),
            any_mme=float(op["mme_per_day"]),
            tolerant_mme=float(op["tolerant_mme_per_day"]),
            source=_source(op, "opioids"),
            tolerant_source=str(op.get("tolerant_source") or ""),
            naive_long_acting_source=str(op.get("naive_long_acting_source") or ""),
        )
    scope = {str(k): str(v) for k, v in _map(doc.get("high_alert_scope"), "high_alert_scope").items()}
    return DoseKnowledge(ingredients, ratio_order, opioids, version, scope)


def load_dose_knowledge(directory: Path) -> DoseKnowledge | None:
    """The dose limits of a knowledge folder (None when it has none). Builds the unit library too, so
    that no evaluation pays for it."""
    path = directory / DOSE_FILE
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    try:
        doc = _yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KnowledgeFileError(f"{path}: {exc}") from None
    warm()
    try:
        return dose_knowledge_from_document(
            _map(doc, "dose limits"), version=f"dose:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
        )
    except KnowledgeFileError as exc:
        raise KnowledgeFileError(f"{path}: {exc}") from None


@functools.cache
def shipped_dose_knowledge() -> DoseKnowledge | None:
    """The dose limits shipped in rules/knowledge, read once per process."""
    return load_dose_knowledge(_SHIPPED)


# --------------------------------------------------------------------------------------------------
# Per medication: what one administration and one day hold, per ingredient


@dataclass(frozen=True, slots=True)
class IngredientDose:
    single: float | None  # canonical units of the ingredient per administration
    daily: float | None  # most in one day
    weekly: float | None
    kind: str  # mass | unit | substance
    problem: str | None = None  # why single/daily could not be computed


@dataclass(frozen=True, slots=True)
class MedicationDose:
    med_id: str
    proposed: bool
    label: str
    dose: Dose
    route: str | None
    per_ingredient: Mapping[str, IngredientDose]
    dose_form: str | None


def _age_years(snapshot: PatientSnapshot, today: date | None = None) -> float | None:
    # engine.demographics: from the birth date on the evaluation date when there is one.
    at = datetime(today.year, today.month, today.day, 12, tzinfo=UTC) if today is not None else None
    years = demographics(snapshot, at).age_years
    return None if years is None else float(years)


def _weight_kg(snapshot: PatientSnapshot, today: date | None = None) -> tuple[float | None, str | None, str | None]:
    """(kg, reading id, problem): the latest weight recent enough for the patient's age
    (engine.demographics), or why there is none."""
    at = datetime(today.year, today.month, today.day, 12, tzinfo=UTC) if today is not None else None
    demo = demographics(snapshot, at)
    if demo.weight is not None:
        return demo.weight.value, demo.weight.reading_id, None
    return None, demo.weight_reading_id, demo.weight_problem


def _product_strengths(
    name: str,
    code: str | None,
    ingredients: Sequence[str],
    vocabulary: Vocabulary,
    ratio: Mapping[str, tuple[str, ...]],
) -> Mapping[str, Strength] | str:
    """Per ingredient, how much one unit of the product holds; or why that is not known. Cached per
    vocabulary and product: a service sees the same products again and again."""
    key = (id(vocabulary), id(ratio), name, code, tuple(ingredients))
    cached = _STRENGTH_CACHE.get(key)
    if cached is None:
        cached = _find_product_strengths(name, code, ingredients, vocabulary, ratio)
        if len(_STRENGTH_CACHE) >= 20_000:
            _STRENGTH_CACHE.clear()
        _STRENGTH_CACHE[key] = cached
    return cached


_STRENGTH_CACHE: dict[tuple[int, int, str, str | None, tuple[str, ...]], Mapping[str, Strength] | str] = {}


def _find_product_strengths(
    name: str,
    code: str | None,
    ingredients: Sequence[str],
    vocabulary: Vocabulary,
    ratio: Mapping[str, tuple[str, ...]],
) -> Mapping[str, Strength] | str:
    if code is not None and code.startswith("rxnorm:"):
        concept = vocabulary.concepts.get(code.split(":", 1)[1])
        if concept is not None and concept.strength:
            values = parse_strengths(concept.strength)
            if values is not None and len(values) == 1 and len(ingredients) == 1:
                return {ingredients[0]: values[0]}
    values = parse_strengths(name)
    if values is None and any(fold(c) in ratio for c in parse_drug_text(name).components):
        # "Percocet 5/325": the labels of the products in `ratio_order` state their strengths in mg.
        values = parse_strengths(f"{name} mg")
    if values is None:
        return "the product's strength is not known"
    if len(ingredients) == 1 and len(values) == 1:
        return {ingredients[0]: values[0]}
    if len(values) != len(ingredients):
        return "the product's strengths do not match its ingredients"
    parsed = parse_drug_text(name)
    order: list[str] = []
    for component in parsed.components:
        found = vocabulary.normalize_drug(component).ingredients
        if len(found) == 1:
            order.append(found[0])
        else:
            key = fold(component)
            known = ratio.get(key)
            if known is None:
                return "which strength belongs to which ingredient is not known"
            order.extend(known)
    if sorted(order) != sorted(ingredients):
        return "which strength belongs to which ingredient is not known"
    return dict(zip(order, values, strict=True))


def _amount_of(
    amount: Amount, ingredient: str, ingredients: Sequence[str], strengths: Mapping[str, Strength] | str,
    concentration: Amount | None, weight: float | None, high: bool = True,
) -> tuple[float | None, str, str | None, bool]:
    """One amount of the order -> (canonical amount of the ingredient, kind, problem, is a daily rate)."""
    unit = amount.unit
    value = amount.high if high else amount.low
    if unit.per_m2:
        return None, "", "a dose per body surface area (no height or surface area to compute it from)", False
    if unit.per_kg:
        if weight is None:
            return None, "", "a dose per kg without the patient's weight", False
        value *= weight
    if unit.kind in ("mass", "unit", "substance") and not unit.per_ml:
        if len(ingredients) > 1:
            return None, "", "an amount of a combination product, not of one ingredient", False
        return value * unit.factor, unit.kind, None, unit.per_day
    if isinstance(strengths, str) and unit.kind == "volume" and concentration is not None and len(ingredients) == 1:
        per_ml = concentration.high * concentration.unit.factor
        strengths = {ingredient: Strength(per_ml, concentration.unit.kind, True)}
    if isinstance(strengths, str):
        return None, "", strengths, False
    strength = strengths.get(ingredient)
    if strength is None:
        return None, "", "the product's strength is not known", False
    if unit.kind == "count":
        if strength.per_ml:
            return None, "", "a count of a liquid product", False
        if strength.per_day:
            return strength.value * value, strength.kind, None, True  # patches: each delivers a daily rate
        return strength.value * value * unit.factor, strength.kind, None, unit.per_day
    if unit.kind == "volume":
        if not strength.per_ml:
            return None, "", "a volume of a product whose strength is not per mL", False
        return strength.value * value * unit.factor, strength.kind, None, unit.per_day
    return None, "", "the dose's unit does not fit the product", False


def medication_dose(
    med_id: str, name: str, code: str | None, proposed: bool, ingredients: Sequence[str], drug_route: str | None,
    dose_form: str | None, dose: Dose, vocabulary: Vocabulary, knowledge: DoseKnowledge, weight: float | None,
) -> MedicationDose:
    strengths = _product_strengths(name, code, ingredients, vocabulary, knowledge.ratio_order)
    route = dose.route or drug_route or _route_of_form(dose_form)
    per: dict[str, IngredientDose] = {}
    for ingredient in ingredients:
        if dose.amount is None:
            per[ingredient] = IngredientDose(None, None, None, "", "; ".join(dose.problems) or "no amount")
            continue
        if dose.problems:
            per[ingredient] = IngredientDose(None, None, None, "", "; ".join(dose.problems))
            continue
        value, kind, problem, rate = _amount_of(
            dose.amount, ingredient, ingredients, strengths, dose.concentration, weight
        )
        if value is None:
            per[ingredient] = IngredientDose(None, None, None, "", problem)
            continue
        times = dose.administrations_per_day
        single: float | None
        daily: float | None
        problem = None
        if rate:
            # A daily amount ("2 mg/kg/day divided q12h") or a rate (mg/h; a patch's mcg/h): the
            # single dose is the daily one divided, when there are administrations to divide it by.
            daily = value
            single = daily / times if times and dose.amount.unit.kind != "count" else None
        else:
            single = value
            daily = value * times if times is not None else None
        if dose.max_daily is not None:
            cap, _, _, _ = _amount_of(dose.max_daily, ingredient, ingredients, strengths, dose.concentration, weight)
            if cap is not None:
                daily = cap if daily is None else min(daily, cap)
        if daily is None:
            problem = "as needed without a maximum frequency" if dose.prn else "no frequency"
        weekly = None
        if daily is not None and (dose.days_per_week is not None or dose.once):
            weekly = daily if dose.once else daily * min(7.0, dose.days_per_week or 7.0)
        per[ingredient] = IngredientDose(single, daily, weekly, kind, problem)
    return MedicationDose(med_id, proposed, name, dose, route, per, dose_form)


def _route_of_form(dose_form: str | None) -> str | None:
    if not dose_form:
        return None
    form = fold(dose_form)
    for word, route in (
        ("oral", "oral"), ("tablet", "oral"), ("capsule", "oral"), ("transdermal", "transdermal"),
        ("rectal", "rectal"), ("suppository", "rectal"), ("ophthalmic", "ophthalmic"), ("topical", "topical"),
        ("inhal", "inhalation"), ("nasal", "nasal"), ("sublingual", "sublingual"),
    ):  # fmt: skip
        if word in form:
            return route
    return None


# --------------------------------------------------------------------------------------------------
# Checks


@dataclass(frozen=True, slots=True)
class _Finding:
    ids: tuple[str, ...]
    severity: Severity
    evidence: EvidenceLevel
    summary: str
    detail: str
    recommendation: str
    rule_id: str
    references: tuple[str, ...]
    ratio: float  # how far over (for ranking findings of one alert)


def _applies(limit: DoseLimit, age: float | None, route: str | None, labs: Mapping[str, float]) -> bool:
    if limit.routes and route is not None and route not in limit.routes:
        return False
    if limit.age_min is not None and (age is None or age < limit.age_min):
        return False
    if limit.age_max is not None and (age is None or age >= limit.age_max):
        return False
    if limit.population == "renal":
        value = labs.get(limit.renal_measure or "")
        if value is None or limit.renal_below is None or value >= limit.renal_below:
            return False
    return True


def _who(limit: DoseLimit) -> str:
    if limit.population == "renal":
        return f"with {limit.renal_measure} below {_fmt(limit.renal_below or 0)}"
    if limit.population == "pediatric":
        return "for children"
    if limit.population == "geriatric":
        return f"at {limit.age_min:g} years and over" if limit.age_min else "for older adults"
    return "for adults"


def _unit_word(kind: str) -> str:
    return {"mass": "mg", "unit": "units", "substance": "mmol"}.get(kind, "")


def _limit_checks(
    limit: DoseLimit, dose: IngredientDose, weight: float | None
) -> tuple[list[tuple[str, float, float, str]], list[str]]:
    """[(what, ordered, maximum, how the maximum is stated)] over the limit; problems."""
    over: list[tuple[str, float, float, str]] = []
    problems: list[str] = []
    pairs = (
        ("single dose", dose.single, limit.max_dose),
        ("daily dose", dose.daily, limit.max_daily),
        ("weekly dose", dose.weekly, limit.max_weekly),
        ("single dose", dose.single, limit.cap_dose),
        ("daily dose", dose.daily, limit.cap_daily),
    )
    for what, ordered, maximum in pairs:
        if maximum is None:
            continue
        if maximum.unit.kind != dose.kind and dose.kind:
            problems.append(f"the {what} is in other units than its limit")
            continue
        allowed = maximum.value
        stated = maximum.text()
        if maximum.per_kg:
            if weight is None:
                problems.append(f"a weight-based {what} limit without the patient's weight")
                continue
            allowed = maximum.value * weight
            stated = f"{maximum.text()} ({_fmt(allowed)} {_unit_word(dose.kind)} at {_fmt(weight)} kg)"
        if ordered is None:
            if what == "daily dose" and dose.single is not None:
                problems.append(dose.problem or "no frequency")
            elif what == "weekly dose" and dose.daily is not None:
                continue
            elif dose.problem:
                problems.append(dose.problem)
            continue
        # 0.5% slack: "4 g" written as 4000 mg by one and 4 x 1 g by another must not differ.
        if ordered > allowed * 1.005:
            over.append((what, ordered, allowed, stated))
    return over, problems


def check_doses(
    items: Iterable[Any],
    snapshot: PatientSnapshot,
    vocabulary: Vocabulary,
    knowledge: DoseKnowledge | None,
    labs: Mapping[str, float],
    *,
    today: date | None = None,
) -> tuple[list[Alert], list[RuleError]]:
    """DOSE_RANGE alerts, and the checks that could not be made, for every medication (an
    `engine.facts.MedicationItem`) that carries a dose."""
    with_dose = [m for m in items if any(_given(v) for v in (m.fact.dose, m.fact.route, m.fact.frequency))]
    if not with_dose:
        return [], []
    if knowledge is None:
        return [], [RuleError("kb:dose", 0, "error: the dose limits are not loaded; doses were not checked")]
    age = _age_years(snapshot, today)
    weight, weight_id, weight_problem = _weight_kg(snapshot, today)
    findings: list[_Finding] = []
    errors: dict[tuple[str, str], str] = {}
    doses: list[MedicationDose] = []
    for m in with_dose:
        relevant = [i for i in m.drug.ingredients if knowledge.dosing(i) is not None]
        if not relevant:
            continue
        dose = parse_dose(m.fact.dose, m.fact.route, m.fact.frequency)
        md = medication_dose(
            m.fact.id, m.fact.name, m.drug.code, m.fact.proposed, tuple(m.drug.ingredients), m.drug.route,
            m.drug.dose_form, dose, vocabulary, knowledge, weight,
        )
        doses.append(md)
        for ingredient in relevant:
            dosing = knowledge.ingredients[ingredient]
            idose = md.per_ingredient[ingredient]
            _check_limits(md, dosing, idose, age, weight, weight_id, weight_problem, labs, findings, errors)
            _check_weekly(md, dosing, idose, snapshot, findings, errors)
            if age is None and any(lim.age_min is not None or lim.age_max is not None for lim in dosing.limits):
                # Without an age the paediatric or geriatric rows cannot be chosen: the rows for any
                # age were checked; that the others were not is reported, never taken as safe.
                key = (m.fact.id, ingredient)
                why = "age unknown: the age-specific (paediatric/geriatric) limits were not checked"
                errors[key] = f"{errors[key]}; {why}" if key in errors else why
    _check_cumulative(doses, knowledge, age, weight, weight_id, labs, findings, errors)
    _check_mme(doses, knowledge, findings, errors)
    alerts = _alerts(findings)
    # What makes the answer incomplete is a dose that cannot be checked on an order being placed. A
    # current medication's dose is checked when it can be read; when it cannot (a stored dose with no
    # frequency, as records often hold), that is not reported as a gap of this answer — judgement
    # call, as for the renal checks of current medications (engine/renal.py): flagging every existing
    # record would make every answer incomplete and teach callers to ignore the flag.
    proposed = {m.fact.id for m in with_dose if m.fact.proposed}
    rule_errors = [
        RuleError(f"kb:dose:{ingredient}", 0, f"insufficient data: dose of {med_id}: {reason}", insufficient_data=True)
        for (med_id, ingredient), reason in sorted(errors.items())
        if med_id in proposed
    ]
    return alerts, rule_errors


def _given(value: str | None) -> bool:
    return bool(value and fold(value))


def _check_limits(
    md: MedicationDose, dosing: IngredientDosing, idose: IngredientDose, age: float | None, weight: float | None,
    weight_id: str | None, weight_problem: str | None, labs: Mapping[str, float], findings: list[_Finding],
    errors: dict[tuple[str, str], str],
) -> None:
    applicable = [lim for lim in dosing.limits if _applies(lim, age, md.route, labs)]
    if not applicable:
        return
    if idose.single is None and idose.daily is None:
        errors[(md.med_id, dosing.ingredient)] = idose.problem or "the dose could not be read"
        return
    worst: tuple[float, DoseLimit, str, float, float, str] | None = None
    problems: list[str] = []
    for limit in applicable:
        over, lim_problems = _limit_checks(limit, idose, weight)
        problems.extend(p if weight_problem is None or "weight" not in p else weight_problem for p in lim_problems)
        for what, ordered, allowed, stated in over:
            ratio = ordered / allowed
            if worst is None or ratio > worst[0] or (ratio == worst[0] and limit.severity > worst[1].severity):
                worst = (ratio, limit, what, ordered, allowed, stated)
    if problems and worst is None:
        errors[(md.med_id, dosing.ingredient)] = "; ".join(dict.fromkeys(problems))
    if worst is None:
        return
    ratio, limit, what, ordered, allowed, stated = worst
    unit = _unit_word(idose.kind)
    ids = (md.med_id,)
    # More than twice a maximum is the gross error (the tenfold slip, a dose meant per day given per
    # dose): CRITICAL whatever the row's own grade.
    severity = Severity.CRITICAL if ratio > 2 else limit.severity
    over_by = f"{ratio:.1f} times" if ratio >= 2 else f"{(ratio - 1) * 100:.0f}% over"
    high_alert = (
        f" {dosing.ingredient} is a high-alert medication (ISMP: {dosing.high_alert})." if dosing.high_alert else ""
    )
    findings.append(
        _Finding(
            ids=ids,
            severity=severity,
            evidence=limit.evidence,
            summary=f"{dosing.ingredient}: {what} {_fmt(ordered)} {unit} is over the maximum {_fmt(allowed)} {unit} "
            f"{_who(limit)}",
            detail=(
                f"The order ({md.dose.text}) gives {_fmt(ordered)} {unit} of {dosing.ingredient} as its {what}; the "
                f"maximum {_who(limit)} is {stated} ({over_by}).{high_alert}"
                + (f" {limit.note}" if limit.note else "")
            ),
            recommendation=f"Reduce the {what} of {dosing.ingredient} to at most {_fmt(allowed)} {unit}, or document "
            "why this patient needs more.",
            rule_id=f"kb:dose:{limit.id}",
            references=(limit.source,),
            ratio=ratio,
        )
    )


def _malignancy(snapshot: PatientSnapshot, prefixes: Sequence[str]) -> bool:
    return any(
        c.code and any(c.code.upper().replace(".", "").startswith(p) for p in prefixes) for c in snapshot.conditions
    )


def _check_weekly(
    md: MedicationDose, dosing: IngredientDosing, idose: IngredientDose, snapshot: PatientSnapshot,
    findings: list[_Finding], errors: dict[tuple[str, str], str],
) -> None:
    weekly = dosing.weekly
    if weekly is None or (weekly.routes and md.route is not None and md.route not in weekly.routes):
        return
    dose = md.dose
    if dose.once:
        return
    days = dose.days_per_week
    if days is None:
        errors[(md.med_id, dosing.ingredient)] = "the schedule (weekly) could not be read"
        return
    if days <= weekly.max_days_per_week:
        return
    oncology = _malignancy(snapshot, weekly.exception_icd10_prefixes)
    schedule = "daily" if days >= 7 else f"on {days:g} days a week"
    findings.append(
        _Finding(
            ids=(md.med_id,),
            severity=Severity.HIGH if oncology else weekly.severity,
            evidence=EvidenceLevel.CASE_REPORTS,
            summary=f"{dosing.ingredient} ordered {schedule}: for non-cancer use it is given once weekly",
            detail=(
                f"The order ({dose.text}) gives {dosing.ingredient} {schedule}. Outside cancer protocols oral "
                f"{dosing.ingredient} is dosed once a week; daily dosing by mistake has caused fatal marrow and "
                "organ toxicity."
                + (" The patient has a recorded malignancy: confirm the protocol." if oncology else "")
            ),
            recommendation="Order it once weekly on a named day; if a daily schedule is intended, confirm the oncology "
            "indication and protocol.",
            rule_id=f"kb:dose:{dosing.ingredient.replace(' ', '-')}-weekly",
            references=(weekly.source,) + ((weekly.exception_source,) if oncology and weekly.exception_source else ()),
            ratio=days,
        )
    )


def _check_cumulative(
    doses: Sequence[MedicationDose], knowledge: DoseKnowledge, age: float | None, weight: float | None,
    weight_id: str | None, labs: Mapping[str, float], findings: list[_Finding], errors: dict[tuple[str, str], str],
) -> None:
    by_ingredient: dict[str, list[MedicationDose]] = {}
    for md in doses:
        for ingredient in md.per_ingredient:
            dosing = knowledge.dosing(ingredient)
            if dosing is not None and dosing.cumulative:
                by_ingredient.setdefault(ingredient, []).append(md)
    for ingredient, group in sorted(by_ingredient.items()):
        if len(group) < 2:
            continue
        dosing = knowledge.ingredients[ingredient]
        dailies = [(md, md.per_ingredient[ingredient]) for md in group]
        known = [(md, d) for md, d in dailies if d.daily is not None]
        unknown = [md for md, d in dailies if d.daily is None]
        total = sum(d.daily or 0.0 for _, d in known)
        kind = next((d.kind for _, d in known), "mass")
        limits = [
            lim for lim in dosing.limits
            if (lim.max_daily or lim.cap_daily) and _applies(lim, age, None, labs)
        ]  # fmt: skip
        worst: tuple[float, DoseLimit, float, str] | None = None
        for limit in limits:
            for maximum in (limit.max_daily, limit.cap_daily):
                if maximum is None:
                    continue
                allowed = maximum.value
                stated = maximum.text()
                if maximum.per_kg:
                    if weight is None:
                        continue
                    allowed *= weight
                    stated = f"{maximum.text()} ({_fmt(allowed)} {_unit_word(kind)} at {_fmt(weight)} kg)"
                if total > allowed * 1.005:
                    ratio = total / allowed
                    if worst is None or ratio > worst[0]:
                        worst = (ratio, limit, allowed, stated)
        if worst is None:
            for md in unknown:
                errors.setdefault(
                    (md.med_id, ingredient),
                    f"its daily {ingredient} is unknown, so the total across products was not checked",
                )
            continue
        ratio, limit, allowed, stated = worst
        unit = _unit_word(kind)
        parts = ", ".join(f"{md.med_id} {_fmt(d.daily or 0)} {unit}" for md, d in known)
        findings.append(
            _Finding(
                ids=tuple(sorted(md.med_id for md in group)),
                severity=Severity.CRITICAL if ratio > 2 else limit.severity,
                evidence=limit.evidence,
                summary=f"{ingredient} from {len(group)} products: {_fmt(total)} {unit}/day is over the maximum "
                f"{_fmt(allowed)} {unit}/day",
                detail=(
                    f"{ingredient} is in {len(group)} of the patient's medications ({parts}): "
                    f"{_fmt(total)} {unit} a day"
                    f" in all, over the maximum {_who(limit)} of {stated}."
                    + (f" Not counted, dose unknown: {', '.join(md.med_id for md in unknown)}." if unknown else "")
                ),
                recommendation=f"Count {ingredient} across every product, combinations included; keep the total at or "
                f"under {_fmt(allowed)} {unit} a day.",
                rule_id=f"kb:dose:{ingredient.replace(' ', '-')}-cumulative",
                references=(limit.source,),
                ratio=ratio,
            )
        )


def _mme_of(md: MedicationDose, ingredient: str, factor: MmeFactor) -> tuple[float | None, str | None]:
    d = md.per_ingredient[ingredient]
    if factor.routes and md.route is not None and md.route not in factor.routes:
        return None, None  # a parenteral opioid: the CDC factors are for oral (and transdermal) use
    if d.daily is None:
        return None, d.problem or "the daily dose is unknown"
    if d.kind != "mass":
        return None, "the dose is not a mass"
    if factor.rate_per_hour_mcg:
        return d.daily * 1000 / 24 * factor.factor, None
    return d.daily * factor.factor, None


def _long_acting(md: MedicationDose, factor: MmeFactor) -> bool:
    if factor.long_acting:
        return True
    words = fold(f"{md.label} {md.dose_form or ''}").replace("-", " ")
    return any(w in words.split() for w in ("er", "xr", "cr", "sr", "la", "er/la", "xl")) or "extended release" in words


def _check_mme(
    doses: Sequence[MedicationDose], knowledge: DoseKnowledge, findings: list[_Finding],
    errors: dict[tuple[str, str], str],
) -> None:
    thresholds = knowledge.opioids
    if thresholds is None:
        return
    current_mme = 0.0
    proposed_mme = 0.0
    opioid_ids: list[str] = []
    proposed_long: list[str] = []
    uncounted: list[str] = []
    any_proposed = False
    for md in doses:
        for ingredient in md.per_ingredient:
            dosing = knowledge.dosing(ingredient)
            if dosing is None or dosing.mme is None:
                continue
            mme, problem = _mme_of(md, ingredient, dosing.mme)
            if md.proposed:
                any_proposed = True
                if _long_acting(md, dosing.mme):
                    proposed_long.append(md.med_id)
            if mme is None:
                if problem is not None:
                    errors.setdefault((md.med_id, ingredient), f"MME not computed: {problem}")
                else:
                    uncounted.append(md.med_id)
                continue
            opioid_ids.append(md.med_id)
            if md.proposed:
                proposed_mme += mme
            else:
                current_mme += mme
    if not any_proposed:
        return
    tolerant = current_mme >= thresholds.tolerant_mme
    total = current_mme + proposed_mme
    ids = tuple(sorted(set(opioid_ids) | set(proposed_long)))
    note = f" Not counted (route without a CDC factor): {', '.join(sorted(set(uncounted)))}." if uncounted else ""
    status = (
        f"opioid-tolerant (current opioids {_fmt(current_mme)} MME/day)"
        if tolerant
        else f"opioid-naive (current opioids {_fmt(current_mme)} MME/day, under {_fmt(thresholds.tolerant_mme)})"
    )
    if not tolerant and proposed_long:
        findings.append(
            _Finding(
                ids=tuple(sorted(set(proposed_long))),
                severity=Severity.CRITICAL,
                evidence=EvidenceLevel.CASE_REPORTS,
                summary="Extended-release or long-acting opioid proposed for an opioid-naive patient",
                detail=(
                    f"The patient is {status}. Extended-release/long-acting opioids (transdermal fentanyl among "
                    "them) are for opioid-tolerant patients only: in opioid-naive patients they have caused fatal "
                    f"respiratory depression.{note}"
                ),
                recommendation="Start with an immediate-release opioid at the lowest effective dose instead.",
                rule_id="kb:dose:opioid-naive-long-acting",
                references=tuple(s for s in (thresholds.naive_long_acting_source, thresholds.tolerant_source) if s),
                ratio=10.0,
            )
        )
    if not tolerant and total >= thresholds.naive_mme:
        severity, threshold = Severity.HIGH, thresholds.naive_mme
    elif total >= thresholds.any_mme:
        severity, threshold = Severity.MODERATE, thresholds.any_mme
    else:
        return
    findings.append(
        _Finding(
            ids=ids,
            severity=severity,
            evidence=EvidenceLevel.OBSERVATIONAL,
            summary=f"Opioids total {_fmt(total)} MME/day (at or over {_fmt(threshold)}) for an "
            f"{'opioid-tolerant' if tolerant else 'opioid-naive'} patient",
            detail=(
                f"Morphine milligram equivalents a day: {_fmt(proposed_mme)} proposed + {_fmt(current_mme)} current = "
                f"{_fmt(total)}; the patient is {status}. Overdose risk rises with dose; at {_fmt(threshold)} MME/day "
                f"and above, benefit rarely outweighs it.{note}"
            ),
            recommendation="Use the lowest effective dose; reassess benefit and risk before reaching or exceeding "
            "this dose; offer naloxone.",
            rule_id="kb:dose:opioid-mme",
            references=(thresholds.source,),
            ratio=total / threshold,
        )
    )


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY_MAX else text[: _SUMMARY_MAX - 1].rstrip() + "…"


def _alerts(findings: Iterable[_Finding]) -> list[Alert]:
    """One alert per set of medications: the gravest finding speaks, the others are in the detail."""
    groups: dict[tuple[str, ...], list[_Finding]] = {}
    for f in findings:
        groups.setdefault(f.ids, []).append(f)
    alerts: list[Alert] = []
    for ids, group in sorted(groups.items()):
        group.sort(key=lambda f: (-f.severity, -f.ratio, f.rule_id))
        voice = group[0]
        detail = voice.detail
        if len(group) > 1:
            detail += " Also: " + " ".join(f.summary + "." for f in group[1:])
        alerts.append(
            Alert(
                kind=AlertKind.DOSE_RANGE,
                severity=max(f.severity for f in group),
                summary=_clip(voice.summary),
                detail=detail,
                recommendation=voice.recommendation,
                evidence=max(f.evidence for f in group),
                involved_ids=ids,
                rule_id=voice.rule_id,
                rule_version=0,
                finding_key=f"{AlertKind.DOSE_RANGE.value}:{'+'.join(ids)}",
                references=tuple(dict.fromkeys(r for f in group for r in f.references)),
            )
        )
    return alerts

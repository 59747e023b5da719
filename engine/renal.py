"""Renal function, and the renal dose adjustments and contraindications that depend on it (RENAL alerts).

Renal function comes from the patient's readings:
- eGFR as reported (reading "egfr"/"gfr", mL/min/1.73 m2);
- creatinine clearance as reported (reading "crcl"), or else by Cockcroft-Gault (Cockcroft DW, Gault MH.
  Nephron 1976;16:31-41) from age, weight (reading "weight"), sex and serum creatinine (reading
  "creatinine", mg/dL or umol/L, converted by engine.units):
      CrCl (mL/min) = (140 - age) x weight (kg) / (72 x SCr (mg/dL)), x 0.85 for a woman.
  Actual body weight is used (the weight the patient has; ideal/adjusted weight needs a height). The
  equation is for adults: under 18 years no CrCl is computed.

How recent a reading must be (issue 11, section 4): creatinine, eGFR and CrCl readings at most
RENAL_MAX_AGE (90 days) before the evaluation, weight at most WEIGHT_MAX_AGE (180 days). An older
reading is not used; a drug that needs renal function is then insufficient data, with the reason.
Stored readings carry the time the sample was taken (`taken_at`), FHIR Observations their effective
time. Readings without a time (an Observation without effective[x]): taken as current, and every RENAL
alert built on one says that its date was not recorded. Judgement: refusing them would make every
evaluation of a renally cleared drug from such a source incomplete; the alert text keeps the
uncertainty visible. (Lab rules are stricter: a rule's max_age_days refuses an undated reading.)

The bands (rules/knowledge/renal.yaml, each with its label and section) are checked for every
medication on the list, current and proposed: renal function falls while a drug is taken. Missing or
stale renal function is insufficient data (`RuleError(insufficient_data=True)`, so `complete=false`)
for a proposed medication that has bands; for a current one it is not, because the order was made
and checked before and the record of every current renally cleared drug would otherwise be incomplete
until a new creatinine is drawn (a RENAL alert is still raised whenever the data are there).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml

import engine._yaml as _yaml
from engine.dose import parse_dose
from engine.dose_limits import DoseKnowledge, Vocabulary, medication_dose
from engine.identity import fold
from engine.model import Alert, AlertKind, EvidenceLevel, PatientSnapshot, RuleError, Severity
from engine.units import DoseUnit, UnitError, creatinine_mg_dl, dose_unit, weight_in_kg

__all__ = [
    "RENAL_FILE",
    "RENAL_MAX_AGE",
    "WEIGHT_MAX_AGE",
    "RenalBand",
    "RenalFunction",
    "RenalKnowledge",
    "RenalKnowledgeError",
    "check_renal",
    "cockcroft_gault",
    "load_renal_knowledge",
    "renal_function",
    "renal_knowledge_from_document",
    "shipped_renal_knowledge",
]

RENAL_FILE = "renal.yaml"
RENAL_MAX_AGE = timedelta(days=90)
WEIGHT_MAX_AGE = timedelta(days=180)
_SHIPPED = Path(__file__).resolve().parents[1] / "rules" / "knowledge"
_ACTIONS = ("contraindicated", "avoid", "reduce")
_MEASURES = ("crcl", "egfr")
_EGFR_TYPES = frozenset({"egfr", "gfr", "e_gfr"})
_CRCL_TYPES = frozenset({"crcl", "creatinine_clearance"})
_CREATININE_TYPES = frozenset({"creatinine", "serum_creatinine", "scr"})
_WEIGHT_TYPES = frozenset({"weight", "weight_kg", "body_weight", "bodyweight"})
_SEX = {"f": "female", "female": "female", "woman": "female", "m": "male", "male": "male", "man": "male"}
_MEASURE_TEXT = {"crcl": "CrCl", "egfr": "eGFR"}
_MEASURE_UNIT = {"crcl": "mL/min", "egfr": "mL/min/1.73 m2"}


class RenalKnowledgeError(ValueError):
    """The renal bands file is malformed; the message names the row."""


@dataclass(frozen=True, slots=True)
class RenalBand:
    id: str
    ingredient: str
    measure: str  # crcl | egfr
    action: str  # contraindicated | avoid | reduce
    source: str
    advice: str
    below: float | None = None  # value < below
    at_most: float | None = None  # value <= at_most
    at_least: float | None = None  # value >= at_least
    routes: tuple[str, ...] = ()
    max_dose: DoseUnit | None = None
    max_dose_value: float | None = None  # canonical units (mg), per kg when the unit is
    max_daily: DoseUnit | None = None
    max_daily_value: float | None = None
    severity: Severity = Severity.HIGH

    def holds(self, value: float) -> bool:
        if self.below is not None and not value < self.below:
            return False
        if self.at_most is not None and not value <= self.at_most:
            return False
        return not (self.at_least is not None and value < self.at_least)

    def range_text(self) -> str:
        m = _MEASURE_TEXT[self.measure]
        edge = self.below if self.below is not None else self.at_most
        if self.at_least is not None:
            return f"{m} {self.at_least:g}-{edge:g} {_MEASURE_UNIT[self.measure]}"
        upper = "<" if self.below is not None else "<="
        return f"{m} {upper} {edge:g} {_MEASURE_UNIT[self.measure]}"


@dataclass(frozen=True)
class RenalKnowledge:
    bands: Mapping[str, tuple[RenalBand, ...]]  # ingredient -> bands
    version: str


def _limit(text: Any, where: str) -> tuple[DoseUnit | None, float | None]:
    if text is None:
        return None, None
    parts = str(text).strip().split(None, 1)
    if len(parts) != 2:
        raise RenalKnowledgeError(f"{where}: {text!r} is not '<number> <unit>'")
    try:
        number = float(parts[0])
        unit = dose_unit(parts[1])
    except (ValueError, UnitError) as exc:
        raise RenalKnowledgeError(f"{where}: {exc}") from None
    if unit.kind not in ("mass", "unit", "substance") or unit.per_ml or unit.per_m2 or number <= 0:
        raise RenalKnowledgeError(f"{where}: a maximum is a positive amount of the ingredient")
    return unit, number * unit.factor


def _number(row: Mapping[str, Any], key: str, where: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RenalKnowledgeError(f"{where}.{key}: a number of mL/min")
    return float(value)


def renal_knowledge_from_document(doc: Mapping[str, Any], *, version: str = "") -> RenalKnowledge:
    ingredients = doc.get("ingredients")
    if not isinstance(ingredients, dict):
        raise RenalKnowledgeError("ingredients: expected a mapping")
    bands: dict[str, tuple[RenalBand, ...]] = {}
    seen: set[str] = set()
    for name, rows in ingredients.items():
        ingredient = fold(str(name))
        if not isinstance(rows, list) or not rows:
            raise RenalKnowledgeError(f"ingredients.{name}: expected a list of bands")
        found: list[RenalBand] = []
        for i, row in enumerate(rows):
            w = f"ingredients.{name}[{i}]"
            if not isinstance(row, dict):
                raise RenalKnowledgeError(f"{w}: expected a mapping")
            band_id = str(row.get("id") or "")
            if not band_id or band_id in seen:
                raise RenalKnowledgeError(f"{w}.id: missing or repeated")
            seen.add(band_id)
            measure, action = str(row.get("measure")), str(row.get("action"))
            if measure not in _MEASURES:
                raise RenalKnowledgeError(f"{w}.measure: one of {', '.join(_MEASURES)}")
            if action not in _ACTIONS:
                raise RenalKnowledgeError(f"{w}.action: one of {', '.join(_ACTIONS)}")
            source, advice = str(row.get("source") or "").strip(), str(row.get("advice") or "").strip()
            if not source or not advice:
                raise RenalKnowledgeError(f"{w}: every band names its source and its advice")
            below, at_most = _number(row, "below", w), _number(row, "at_most", w)
            if (below is None) == (at_most is None):
                raise RenalKnowledgeError(f"{w}: exactly one of below, at_most")
            max_dose, max_dose_value = _limit(row.get("max_dose"), f"{w}.max_dose")
            max_daily, max_daily_value = _limit(row.get("max_daily"), f"{w}.max_daily")
            if action != "reduce" and (max_dose or max_daily):
                raise RenalKnowledgeError(f"{w}: only a 'reduce' band states maxima")
            default = {"contraindicated": "CRITICAL", "avoid": "HIGH", "reduce": "HIGH"}[action]
            try:
                severity = Severity[str(row.get("severity", default)).upper()]
            except KeyError:
                raise RenalKnowledgeError(f"{w}.severity: one of {', '.join(s.name for s in Severity)}") from None
            routes = row.get("routes") or []
            if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
                raise RenalKnowledgeError(f"{w}.routes: a list of routes")
            found.append(
                RenalBand(
                    id=band_id, ingredient=ingredient, measure=measure, action=action, source=source,
                    advice=advice, below=below, at_most=at_most, at_least=_number(row, "at_least", w),
                    routes=tuple(routes), max_dose=max_dose, max_dose_value=max_dose_value, max_daily=max_daily,
                    max_daily_value=max_daily_value, severity=severity,
                )
            )  # fmt: skip
        bands[ingredient] = tuple(found)
    return RenalKnowledge(bands, version)


def load_renal_knowledge(directory: Path) -> RenalKnowledge | None:
    path = directory / RENAL_FILE
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    try:
        doc = _yaml.safe_load(text)
        if not isinstance(doc, dict):
            raise RenalKnowledgeError("expected a mapping")
        return renal_knowledge_from_document(doc, version=f"renal:{hashlib.sha256(text.encode()).hexdigest()[:12]}")
    except (yaml.YAMLError, RenalKnowledgeError) as exc:
        raise RenalKnowledgeError(f"{path}: {exc}") from None


@functools.cache
def shipped_renal_knowledge() -> RenalKnowledge | None:
    return load_renal_knowledge(_SHIPPED)


# --------------------------------------------------------------------------------------------------
# Renal function


def cockcroft_gault(age: float, weight_kg: float, female: bool, creatinine_mg_per_dl: float) -> float:
    """Creatinine clearance in mL/min (Cockcroft and Gault, 1976)."""
    if creatinine_mg_per_dl <= 0:
        raise ValueError("serum creatinine must be positive")
    crcl = (140 - age) * weight_kg / (72 * creatinine_mg_per_dl)
    return crcl * 0.85 if female else crcl


@dataclass(frozen=True, slots=True)
class Measure:
    value: float
    reading_ids: tuple[str, ...]  # the readings it rests on
    how: str  # "reported" | "Cockcroft-Gault (...)"
    undated: bool  # a reading it rests on has no time


@dataclass(frozen=True, slots=True)
class RenalFunction:
    egfr: Measure | None
    crcl: Measure | None
    # measure -> why it is not known ("no eGFR reading", "the creatinine is 120 days old", ...)
    problems: Mapping[str, str]

    def get(self, measure: str) -> Measure | None:
        return self.egfr if measure == "egfr" else self.crcl


def _kind(reading_type: str) -> str:
    return fold(reading_type).replace(" ", "_").replace("-", "_")


def _age(snapshot: PatientSnapshot, today: date) -> float | None:
    if snapshot.birth_date is not None:
        b = snapshot.birth_date
        return float(today.year - b.year - ((today.month, today.day) < (b.month, b.day)))
    return float(snapshot.age) if snapshot.age is not None else None


def _when(observed: datetime | None) -> datetime | None:
    if observed is None:
        return None
    return observed if observed.tzinfo is not None else observed.replace(tzinfo=UTC)


def renal_function(snapshot: PatientSnapshot, now: datetime) -> RenalFunction:
    """eGFR and CrCl of the patient at `now` (UTC), from readings recent enough, or why not."""
    now = _when(now) or now
    latest: dict[str, Any] = {}
    stale: dict[str, str] = {}
    for reading in snapshot.biometrics:
        kind = _kind(reading.reading_type)
        group = (
            "egfr" if kind in _EGFR_TYPES else "crcl" if kind in _CRCL_TYPES
            else "creatinine" if kind in _CREATININE_TYPES else "weight" if kind in _WEIGHT_TYPES else None
        )  # fmt: skip
        if group is None:
            continue
        when = _when(reading.observed_at)
        limit = WEIGHT_MAX_AGE if group == "weight" else RENAL_MAX_AGE
        if when is not None and now - when > limit:
            stale[group] = f"the latest {group} reading is {(now - when).days} days old (at most {limit.days} allowed)"
            continue
        held = latest.get(group)
        held_when = _when(held.observed_at) if held is not None else None
        if held is None or (when is not None and (held_when is None or when > held_when)):
            latest[group] = reading
    problems: dict[str, str] = {}

    egfr = None
    if "egfr" in latest:
        r = latest["egfr"]
        if 0 < r.value <= 200:
            egfr = Measure(float(r.value), (r.id,), "reported", r.observed_at is None)
        else:
            problems["egfr"] = "the eGFR reading is not plausible"
    else:
        problems["egfr"] = stale.get("egfr", "no eGFR reading")

    crcl = None
    if "crcl" in latest:
        r = latest["crcl"]
        if 0 < r.value <= 250:
            crcl = Measure(float(r.value), (r.id,), "reported", r.observed_at is None)
        else:
            problems["crcl"] = "the creatinine clearance reading is not plausible"
    else:
        crcl, why = _computed_crcl(snapshot, now, latest, stale)
        if why:
            problems["crcl"] = why
    return RenalFunction(egfr, crcl, problems)


def _computed_crcl(
    snapshot: PatientSnapshot, now: datetime, latest: Mapping[str, Any], stale: Mapping[str, str]
) -> tuple[Measure | None, str | None]:
    missing = []
    scr_reading = latest.get("creatinine")
    weight_reading = latest.get("weight")
    age = _age(snapshot, now.date())
    sex = _SEX.get(fold(snapshot.sex or ""))
    if scr_reading is None:
        missing.append(stale.get("creatinine", "serum creatinine"))
    if weight_reading is None:
        missing.append(stale.get("weight", "weight"))
    if age is None:
        missing.append("age")
    if sex is None:
        missing.append("sex (male or female)")
    if missing:
        return None, "no CrCl reading, and Cockcroft-Gault needs: " + ", ".join(missing)
    assert scr_reading is not None and weight_reading is not None and age is not None
    if age < 18:
        return None, "Cockcroft-Gault is for adults; no CrCl reading for a patient under 18"
    try:
        scr = creatinine_mg_dl(scr_reading.value, scr_reading.unit)
    except UnitError:
        return None, "the serum creatinine's unit is not a concentration (mg/dL or umol/L)"
    try:
        kg = weight_in_kg(weight_reading.value, weight_reading.unit)
    except UnitError:
        return None, "the weight's unit is not a unit of mass"
    if not 0.1 <= scr <= 20:
        return None, "the serum creatinine is not plausible (in mg/dL; a umol/L value needs its unit)"
    if not 20 <= kg <= 500:
        return None, "the weight is not plausible for an adult"
    value = cockcroft_gault(age, kg, sex == "female", scr)
    how = f"Cockcroft-Gault: age {age:g}, {sex}, weight {kg:.1f} kg, serum creatinine {scr:.2f} mg/dL"
    undated = scr_reading.observed_at is None or weight_reading.observed_at is None
    return Measure(value, (scr_reading.id, weight_reading.id), how, undated), None


# --------------------------------------------------------------------------------------------------
# Checks


def _dose_view(
    item: Any, vocabulary: Vocabulary, dose_knowledge: DoseKnowledge | None, weight: float | None
) -> tuple[Any, str | None]:
    """(MedicationDose or None, route): the order's dose as engine.dose_limits reads it."""
    fact = item.fact
    if not any(v and fold(v) for v in (fact.dose, fact.route, fact.frequency)) or dose_knowledge is None:
        return None, fact.route or item.drug.route
    dose = parse_dose(fact.dose, fact.route, fact.frequency)
    md = medication_dose(
        fact.id,
        fact.name,
        item.drug.code,
        fact.proposed,
        tuple(item.drug.ingredients),
        item.drug.route,
        item.drug.dose_form,
        dose,
        vocabulary,
        dose_knowledge,
        weight,
    )
    return md, md.route


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def check_renal(
    items: Iterable[Any],
    snapshot: PatientSnapshot,
    vocabulary: Vocabulary,
    knowledge: RenalKnowledge | None,
    dose_knowledge: DoseKnowledge | None,
    *,
    now: datetime | None = None,
) -> tuple[list[Alert], list[RuleError], dict[str, float]]:
    """RENAL alerts for medications (`engine.facts.MedicationItem`) in a band of the patient's renal
    function; the checks that could not be made; and the renal values (`egfr`, `crcl`) recent enough to
    use, for the dose limits' renal rows."""
    items = list(items)
    now = now or datetime.now(UTC)
    # Ingredients the dose limits band by renal function (gabapentin): they need renal function too.
    dose_renal: dict[str, set[str]] = {}
    if dose_knowledge is not None:
        for name, dosing in dose_knowledge.ingredients.items():
            for lim in dosing.limits:
                if lim.population == "renal" and lim.renal_measure:
                    dose_renal.setdefault(name, set()).add(lim.renal_measure)
    bands = knowledge.bands if knowledge is not None else {}
    relevant = [m for m in items if any(i in bands or i in dose_renal for i in m.drug.ingredients)]
    if not relevant:
        return [], [], {}
    if knowledge is None:
        return [], [RuleError("kb:renal", 0, "error: the renal bands are not loaded; renal dosing was not checked")], {}
    function = renal_function(snapshot, now)
    values = {k: m.value for k, m in (("egfr", function.egfr), ("crcl", function.crcl)) if m is not None}
    weight = _weight(snapshot)
    alerts: list[Alert] = []
    errors: dict[tuple[str, str], str] = {}
    for item in relevant:
        md, route = None, None
        viewed = False
        for ingredient in dict.fromkeys(item.drug.ingredients):
            measures = {b.measure for b in bands.get(ingredient, ())} | dose_renal.get(ingredient, set())
            for measure in sorted(measures):
                if function.get(measure) is None and item.fact.proposed:
                    errors[(item.fact.id, ingredient)] = (
                        f"{_MEASURE_TEXT[measure]} unknown: {function.problems.get(measure, 'not given')}"
                    )
            for band in bands.get(ingredient, ()):
                m = function.get(band.measure)
                if m is None or not band.holds(m.value):
                    continue
                if not viewed:
                    md, route = _dose_view(item, vocabulary, dose_knowledge, weight)
                    viewed = True
                if band.routes and route is not None and route not in band.routes:
                    continue
                alert = _band_alert(item, ingredient, band, m, md, weight)
                if alert is not None:
                    alerts.append(alert)
    rule_errors = [
        RuleError(f"kb:renal:{ingredient}", 0, f"insufficient data: renal function for {med_id}: {why}", True)
        for (med_id, ingredient), why in sorted(errors.items())
    ]
    return _one_per_medication(alerts), rule_errors, values


def _weight(snapshot: PatientSnapshot) -> float | None:
    for reading in snapshot.biometrics:
        if _kind(reading.reading_type) in _WEIGHT_TYPES:
            try:
                kg = weight_in_kg(reading.value, reading.unit)
            except UnitError:
                return None
            return kg if 0.3 <= kg <= 500 else None
    return None


def _band_alert(item: Any, ingredient: str, band: RenalBand, m: Measure, md: Any, weight: float | None) -> Alert | None:
    measured = f"{_MEASURE_TEXT[band.measure]} {m.value:.0f} {_MEASURE_UNIT[band.measure]}"
    basis = f"{measured} ({m.how}{'; the date of a reading it rests on was not recorded' if m.undated else ''})"
    severity = band.severity
    if band.action in ("contraindicated", "avoid"):
        word = "contraindicated" if band.action == "contraindicated" else "to be avoided"
        summary = f"{ingredient} is {word} at {band.range_text()}; the patient's {measured}"
        detail = f"The patient's renal function is {basis}. {band.advice}"
        recommendation = f"Do not use {ingredient} at this renal function; choose an alternative. {band.advice}"
    else:
        # A band without a maximum states its adjustment in words (renal.yaml): passive, never silent.
        over = _over(md, ingredient, band, weight) if (band.max_daily or band.max_dose) else "unstated"
        if over is None:
            return None  # within the band's maximum
        if over == "unstated":
            severity = Severity.MODERATE
            summary = f"{ingredient}: dose adjustment for {band.range_text()} (patient's {measured})"
            detail = f"The patient's renal function is {basis}. The label adjusts the dose in this band: {band.advice}"
        elif over == "unchecked":
            severity = Severity.MODERATE
            summary = f"{ingredient}: dose adjustment for {band.range_text()} (patient's {measured})"
            detail = (
                f"The patient's renal function is {basis}. The label adjusts the dose in this band: {band.advice} "
                "The order's dose could not be compared with it."
            )
        else:
            summary = f"{ingredient}: {over} is over the maximum for {band.range_text()}"
            detail = f"The patient's renal function is {basis}; the order gives {over}. {band.advice}"
        recommendation = f"Adjust the dose of {ingredient} to the renal function: {band.advice}"
    return Alert(
        kind=AlertKind.RENAL,
        severity=severity,
        summary=_clip(summary),
        detail=detail,
        recommendation=recommendation,
        evidence=EvidenceLevel.CLINICAL_TRIAL if band.action == "reduce" else EvidenceLevel.OBSERVATIONAL,
        involved_ids=tuple(sorted({item.fact.id, *m.reading_ids})),
        rule_id=f"kb:renal:{band.id}",
        rule_version=0,
        finding_key=f"{AlertKind.RENAL.value}:{'+'.join(sorted({item.fact.id, *m.reading_ids}))}",
        references=(band.source,),
    )


class DoseMaxima(Protocol):
    """A band's maxima (a renal band, engine.hepatic's bands): what `_over` compares an order with."""

    @property
    def max_dose(self) -> DoseUnit | None: ...
    @property
    def max_dose_value(self) -> float | None: ...
    @property
    def max_daily(self) -> DoseUnit | None: ...
    @property
    def max_daily_value(self) -> float | None: ...


def _over(md: Any, ingredient: str, band: DoseMaxima, weight: float | None) -> str | None:
    """What of the order is over the band's maximum ("daily dose 1,500 mg"), None when nothing is,
    "unchecked" when the dose could not be read."""
    if md is None:
        return "unchecked"
    d = md.per_ingredient.get(ingredient)
    if d is None or (d.single is None and d.daily is None):
        return "unchecked"
    unchecked = False
    for what, ordered, unit, maximum in (
        ("single dose", d.single, band.max_dose, band.max_dose_value),
        ("daily dose", d.daily, band.max_daily, band.max_daily_value),
    ):
        if unit is None or maximum is None:
            continue
        if ordered is None or (d.kind and unit.kind != d.kind):
            unchecked = True
            continue
        allowed = maximum
        if unit.per_kg:
            if weight is None:
                unchecked = True
                continue
            allowed *= weight
        if ordered > allowed * 1.005:
            word = {"mass": "mg", "unit": "units", "substance": "mmol"}.get(d.kind, "")
            return f"{what} {_fmt(ordered)} {word} (maximum {_fmt(allowed)} {word})"
    return "unchecked" if unchecked else None


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 140 else text[:139].rstrip() + "…"


def _one_per_medication(alerts: Sequence[Alert]) -> list[Alert]:
    """The gravest band speaks for each medication (bands of one drug are disjoint, but a drug with two
    ingredients can meet two)."""
    best: dict[str, Alert] = {}
    for alert in alerts:
        held = best.get(alert.finding_key)
        if held is None or (alert.severity, alert.rule_id) > (held.severity, held.rule_id):
            best[alert.finding_key] = alert
    return [best[k] for k in sorted(best)]

"""Hepatic function (Child-Pugh class), and the hepatic dose adjustments and contraindications that depend on it.

The Child-Pugh class comes from the patient's readings (issue 11, section 3):
- reading "child_pugh_score": the score, a whole number of points 5-15; the class is derived from it as
  the classification defines (Pugh RN, Murray-Lyon IM, Dawson JL, Pietroni MC, Williams R. Br J Surg
  1973;60:646-9): 5-6 points class A, 7-9 class B, 10-15 class C;
- reading "child_pugh_class": a class given without its score, encoded 1, 2, 3 for A, B, C (how
  `praneya check --child-pugh B` and a `--cases` line's "child_pugh": "B" reach the engine; see
  `CLASS_CODES`).
A value outside those (a score of 3, 7.5 points, a class 4) is not plausible and not used.
No LOINC code is mapped: none was found in a public source row (SOURCES.md "Hepatic bands"), so a FHIR
Observation does not carry a Child-Pugh assessment yet.

How recent (judgement, written down): an assessment at most HEPATIC_MAX_AGE (90 days) before the
evaluation. Its components (bilirubin, albumin, INR, ascites, encephalopathy) change as cirrhosis
decompensates or recovers, and 90 days is the window the renal readings use (engine.renal), so one
clinical rule of thumb holds for both organ functions. An older assessment is not used; a drug with bands
is then insufficient data, with the reason. An assessment without a time is taken as current and every
alert built on it says its date was not recorded (the record store keeps no reading time yet; the same
judgement as engine.renal).

What a missing class means (judgement, written down, per drug in rules/knowledge/hepatic.yaml `unknown`):
a patient without liver disease has no Child-Pugh class, so no class is not in itself a gap. For a
proposed drug that the label contraindicates in some class (the default `unknown: insufficient`), the
check cannot be made without the class and the answer is incomplete (`RuleError(insufficient_data=True)`),
as engine.renal does for renal function. For the other drugs (avoid / dose adjustment only) a missing
class is quiet. A recorded but stale or implausible assessment is always insufficient data for a proposed
drug with bands: the patient is known to have liver disease, and its grade now is unknown. A current
medication is never made incomplete (it was ordered and checked before), but raises its alert whenever
the class is there.

Alert kinds (no HEPATIC kind exists; adding one would change the protobuf and database enums):
contraindicated and avoid bands are DRUG_CONDITION (the drug against the patient's liver disease); reduce
and caution bands are DOSE_RANGE (a dose adjustment). Severity: contraindicated CRITICAL, avoid HIGH
(interruptive); reduce HIGH when the order is over the band's maximum, MODERATE (passive) when the dose
could not be read; caution MODERATE (passive), with the label's adjustment.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

import engine._yaml as _yaml
from engine.dose_limits import DoseKnowledge, Vocabulary
from engine.identity import fold
from engine.model import Alert, AlertKind, EvidenceLevel, PatientSnapshot, RuleError, Severity
from engine.renal import _dose_view, _over, _weight
from engine.units import DoseUnit, UnitError, dose_unit

__all__ = [
    "CHILD_PUGH_REFERENCE",
    "CLASS_CODES",
    "HEPATIC_FILE",
    "HEPATIC_MAX_AGE",
    "ChildPugh",
    "HepaticBand",
    "HepaticKnowledge",
    "HepaticKnowledgeError",
    "check_hepatic",
    "child_pugh",
    "child_pugh_class",
    "hepatic_knowledge_from_document",
    "load_hepatic_knowledge",
    "shipped_hepatic_knowledge",
]

HEPATIC_FILE = "hepatic.yaml"
HEPATIC_MAX_AGE = timedelta(days=90)
CHILD_PUGH_REFERENCE = "Pugh RN et al. Br J Surg 1973;60:646-9 (Child-Pugh classes: A 5-6, B 7-9, C 10-15 points)"
SCORE_TYPE = "child_pugh_score"
CLASS_TYPE = "child_pugh_class"
CLASS_CODES: Mapping[str, int] = {"A": 1, "B": 2, "C": 3}
_CLASS_OF_CODE = {v: k for k, v in CLASS_CODES.items()}
_CLASSES = ("A", "B", "C")
_ACTIONS = ("contraindicated", "avoid", "reduce", "caution")
_UNKNOWN = ("insufficient", "quiet")
_SHIPPED = Path(__file__).resolve().parents[1] / "rules" / "knowledge"
_GRADE = {"A": "mild", "B": "moderate", "C": "severe"}


class HepaticKnowledgeError(ValueError):
    """The hepatic bands file is malformed; the message names the row."""


def child_pugh_class(score: float) -> str:
    """The class of a Child-Pugh score (Pugh et al. 1973): 5-6 A, 7-9 B, 10-15 C."""
    if isinstance(score, bool) or score != int(score) or not 5 <= score <= 15:
        raise ValueError("a Child-Pugh score is a whole number of points from 5 to 15")
    return "A" if score <= 6 else "B" if score <= 9 else "C"


@dataclass(frozen=True, slots=True)
class HepaticBand:
    id: str
    ingredient: str
    classes: frozenset[str]
    action: str  # contraindicated | avoid | reduce | caution
    source: str
    advice: str
    routes: tuple[str, ...] = ()
    max_dose: DoseUnit | None = None
    max_dose_value: float | None = None  # canonical units (mg)
    max_daily: DoseUnit | None = None
    max_daily_value: float | None = None
    severity: Severity = Severity.HIGH

    def classes_text(self) -> str:
        return "Child-Pugh " + "/".join(sorted(self.classes))


@dataclass(frozen=True)
class HepaticKnowledge:
    bands: Mapping[str, tuple[HepaticBand, ...]]  # ingredient -> bands
    unknown: Mapping[str, str]  # ingredient -> "insufficient" | "quiet": a proposed order without a class
    version: str


def _limit(text: Any, where: str) -> tuple[DoseUnit | None, float | None]:
    if text is None:
        return None, None
    parts = str(text).strip().split(None, 1)
    if len(parts) != 2:
        raise HepaticKnowledgeError(f"{where}: {text!r} is not '<number> <unit>'")
    try:
        number = float(parts[0])
        unit = dose_unit(parts[1])
    except (ValueError, UnitError) as exc:
        raise HepaticKnowledgeError(f"{where}: {exc}") from None
    if unit.kind not in ("mass", "unit", "substance") or unit.per_ml or unit.per_m2 or unit.per_kg or number <= 0:
        raise HepaticKnowledgeError(f"{where}: a maximum is a positive amount of the ingredient")
    return unit, number * unit.factor


def hepatic_knowledge_from_document(doc: Mapping[str, Any], *, version: str = "") -> HepaticKnowledge:
    ingredients = doc.get("ingredients")
    if not isinstance(ingredients, dict):
        raise HepaticKnowledgeError("ingredients: expected a mapping")
    bands: dict[str, tuple[HepaticBand, ...]] = {}
    unknown: dict[str, str] = {}
    seen: set[str] = set()
    for name, entry in ingredients.items():
        ingredient = fold(str(name))
        w0 = f"ingredients.{name}"
        if not isinstance(entry, dict) or set(entry) - {"bands", "unknown"}:
            raise HepaticKnowledgeError(f"{w0}: expected a mapping of bands (and unknown)")
        rows = entry.get("bands")
        if not isinstance(rows, list) or not rows:
            raise HepaticKnowledgeError(f"{w0}.bands: expected a list of bands")
        found: list[HepaticBand] = []
        held: set[str] = set()
        for i, row in enumerate(rows):
            w = f"{w0}.bands[{i}]"
            if not isinstance(row, dict):
                raise HepaticKnowledgeError(f"{w}: expected a mapping")
            band_id = str(row.get("id") or "")
            if not band_id or band_id in seen:
                raise HepaticKnowledgeError(f"{w}.id: missing or repeated")
            seen.add(band_id)
            classes = row.get("classes")
            if not isinstance(classes, list) or not classes or not all(c in _CLASSES for c in classes):
                raise HepaticKnowledgeError(f"{w}.classes: a list of Child-Pugh classes A, B, C")
            routes = row.get("routes") or []
            if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
                raise HepaticKnowledgeError(f"{w}.routes: a list of routes")
            if not routes and held & set(classes):
                raise HepaticKnowledgeError(f"{w}.classes: overlaps another band of {name}")
            if not routes:
                held |= set(classes)
            action = str(row.get("action"))
            if action not in _ACTIONS:
                raise HepaticKnowledgeError(f"{w}.action: one of {', '.join(_ACTIONS)}")
            source, advice = str(row.get("source") or "").strip(), str(row.get("advice") or "").strip()
            if not source or not advice:
                raise HepaticKnowledgeError(f"{w}: every band names its source and its advice")
            max_dose, max_dose_value = _limit(row.get("max_dose"), f"{w}.max_dose")
            max_daily, max_daily_value = _limit(row.get("max_daily"), f"{w}.max_daily")
            if action != "reduce" and (max_dose or max_daily):
                raise HepaticKnowledgeError(f"{w}: only a 'reduce' band states maxima")
            if action == "reduce" and not (max_dose or max_daily):
                raise HepaticKnowledgeError(f"{w}: a 'reduce' band states max_dose or max_daily (else: caution)")
            default = {"contraindicated": "CRITICAL", "avoid": "HIGH", "reduce": "HIGH", "caution": "MODERATE"}[action]
            try:
                severity = Severity[str(row.get("severity", default)).upper()]
            except KeyError:
                raise HepaticKnowledgeError(f"{w}.severity: one of {', '.join(s.name for s in Severity)}") from None
            found.append(
                HepaticBand(
                    id=band_id, ingredient=ingredient, classes=frozenset(classes), action=action, source=source,
                    advice=advice, routes=tuple(routes), max_dose=max_dose, max_dose_value=max_dose_value,
                    max_daily=max_daily, max_daily_value=max_daily_value, severity=severity,
                )
            )  # fmt: skip
        policy = entry.get("unknown")
        if policy is None:
            policy = "insufficient" if any(b.action == "contraindicated" for b in found) else "quiet"
        if policy not in _UNKNOWN:
            raise HepaticKnowledgeError(f"{w0}.unknown: one of {', '.join(_UNKNOWN)}")
        bands[ingredient] = tuple(found)
        unknown[ingredient] = str(policy)
    return HepaticKnowledge(bands, unknown, version)


def load_hepatic_knowledge(directory: Path) -> HepaticKnowledge | None:
    path = directory / HEPATIC_FILE
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    try:
        doc = _yaml.safe_load(text)
        if not isinstance(doc, dict):
            raise HepaticKnowledgeError("expected a mapping")
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return hepatic_knowledge_from_document(doc, version=f"hepatic:{digest}")
    except (yaml.YAMLError, HepaticKnowledgeError) as exc:
        raise HepaticKnowledgeError(f"{path}: {exc}") from None


@functools.cache
def shipped_hepatic_knowledge() -> HepaticKnowledge | None:
    return load_hepatic_knowledge(_SHIPPED)


# --------------------------------------------------------------------------------------------------
# The patient's Child-Pugh class


@dataclass(frozen=True, slots=True)
class ChildPugh:
    klass: str | None  # A | B | C, or None: not known (see `problem`)
    score: int | None  # when the class was derived from a score
    reading_id: str | None
    undated: bool
    recorded: bool  # an assessment was recorded (even if stale or implausible): the patient has liver disease
    problem: str | None  # why the class is not known

    def text(self) -> str:
        assert self.klass is not None
        points = f", {self.score} points" if self.score is not None else ""
        return f"Child-Pugh class {self.klass}{points} ({_GRADE[self.klass]} hepatic impairment)"


def _kind(reading_type: str) -> str:
    return fold(reading_type).replace(" ", "_").replace("-", "_")


def _when(observed: datetime | None) -> datetime | None:
    if observed is None:
        return None
    return observed if observed.tzinfo is not None else observed.replace(tzinfo=UTC)


def child_pugh(snapshot: PatientSnapshot, now: datetime) -> ChildPugh:
    """The patient's Child-Pugh class at `now`, from the latest assessment recent enough, or why not."""
    now = _when(now) or now
    latest: Any = None
    stale: str | None = None
    for reading in snapshot.biometrics:
        if _kind(reading.reading_type) not in (SCORE_TYPE, CLASS_TYPE):
            continue
        when = _when(reading.observed_at)
        if when is not None and now - when > HEPATIC_MAX_AGE:
            stale = (
                f"the latest Child-Pugh assessment is {(now - when).days} days old "
                f"(at most {HEPATIC_MAX_AGE.days} allowed)"
            )
            continue
        held_when = _when(latest.observed_at) if latest is not None else None
        # The most recent wins; of two equally dated (or undated), the score (it is the more exact).
        if latest is None or (
            when is not None and (held_when is None or when > held_when)
        ) or (when == held_when and _kind(reading.reading_type) == SCORE_TYPE):  # fmt: skip
            latest = reading
    if latest is None:
        return ChildPugh(None, None, None, False, stale is not None, stale or "no Child-Pugh assessment")
    undated = latest.observed_at is None
    if _kind(latest.reading_type) == SCORE_TYPE:
        try:
            klass = child_pugh_class(latest.value)
        except ValueError:
            why = "the Child-Pugh score is not plausible (5-15 points)"
            return ChildPugh(None, None, latest.id, undated, True, why)
        return ChildPugh(klass, int(latest.value), latest.id, undated, True, None)
    klass_of = _CLASS_OF_CODE.get(int(latest.value)) if latest.value == int(latest.value) else None
    if klass_of is None:
        return ChildPugh(None, None, latest.id, undated, True, "the Child-Pugh class is not A, B or C")
    return ChildPugh(klass_of, None, latest.id, undated, True, None)


# --------------------------------------------------------------------------------------------------
# Checks


def check_hepatic(
    items: Iterable[Any],
    snapshot: PatientSnapshot,
    vocabulary: Vocabulary,
    knowledge: HepaticKnowledge | None,
    dose_knowledge: DoseKnowledge | None,
    *,
    now: datetime | None = None,
) -> tuple[list[Alert], list[RuleError]]:
    """Alerts for medications (`engine.facts.MedicationItem`) in a band of the patient's Child-Pugh
    class, and the checks that could not be made."""
    now = now or datetime.now(UTC)
    bands = knowledge.bands if knowledge is not None else {}
    relevant = [m for m in items if any(i in bands for i in m.drug.ingredients)]
    if not relevant or knowledge is None:
        return [], []
    cp = child_pugh(snapshot, now)
    weight = _weight(snapshot)
    alerts: dict[str, Alert] = {}
    errors: dict[tuple[str, str], str] = {}
    for item in relevant:
        viewed, md, route = False, None, None
        for ingredient in dict.fromkeys(item.drug.ingredients):
            if ingredient not in bands:
                continue
            if cp.klass is None:
                if item.fact.proposed and (cp.recorded or knowledge.unknown.get(ingredient) == "insufficient"):
                    errors[(item.fact.id, ingredient)] = str(cp.problem)
                continue
            for band in bands[ingredient]:
                if cp.klass not in band.classes:
                    continue
                if not viewed:
                    md, route = _dose_view(item, vocabulary, dose_knowledge, weight)
                    viewed = True
                if band.routes and route is not None and route not in band.routes:
                    continue
                alert = _band_alert(item, ingredient, band, cp, md, weight)
                if alert is None:
                    continue
                held = alerts.get(alert.finding_key)
                # The gravest band speaks for each medication (a drug of two ingredients can meet two).
                if held is None or (alert.severity, alert.rule_id) > (held.severity, held.rule_id):
                    alerts[alert.finding_key] = alert
    rule_errors = [
        RuleError(f"kb:hepatic:{ingredient}", 0, f"insufficient data: Child-Pugh class for {med_id}: {why}", True)
        for (med_id, ingredient), why in sorted(errors.items())
    ]
    return [alerts[k] for k in sorted(alerts)], rule_errors


def _band_alert(
    item: Any, ingredient: str, band: HepaticBand, cp: ChildPugh, md: Any, weight: float | None
) -> Alert | None:
    basis = cp.text()
    if cp.score is not None:
        basis += " (class from the score, Pugh et al. 1973)"
    if cp.undated:
        basis += "; the date of the assessment was not recorded"
    severity = band.severity
    ids = tuple(sorted({item.fact.id, *((cp.reading_id,) if cp.reading_id else ())}))
    adjustment = f"{ingredient}: dose adjustment for {band.classes_text()} hepatic impairment (class {cp.klass})"
    if band.action in ("contraindicated", "avoid"):
        kind = AlertKind.DRUG_CONDITION
        word = "contraindicated" if band.action == "contraindicated" else "to be avoided"
        summary = f"{ingredient} is {word} in {band.classes_text()} hepatic impairment; the patient is class {cp.klass}"
        detail = f"The patient's hepatic function: {basis}. {band.advice}"
        recommendation = f"Do not use {ingredient} at this hepatic function; choose an alternative. {band.advice}"
    elif band.action == "caution":
        kind = AlertKind.DOSE_RANGE
        summary = adjustment
        detail = f"The patient's hepatic function: {basis}. The label adjusts the dose: {band.advice}"
        recommendation = f"Adjust the dose of {ingredient} to the hepatic function: {band.advice}"
    else:
        kind = AlertKind.DOSE_RANGE
        over = _over(md, ingredient, band, weight)
        if over is None:
            return None  # within the band's maximum
        if over == "unchecked":
            severity = Severity.MODERATE
            summary = adjustment
            detail = (
                f"The patient's hepatic function: {basis}. The label adjusts the dose in this class: {band.advice} "
                "The order's dose could not be compared with it."
            )
        else:
            summary = f"{ingredient}: {over} is over the maximum for {band.classes_text()} hepatic impairment"
            detail = f"The patient's hepatic function: {basis}; the order gives {over}. {band.advice}"
        recommendation = f"Adjust the dose of {ingredient} to the hepatic function: {band.advice}"
    return Alert(
        kind=kind,
        severity=severity,
        summary=_clip(summary),
        detail=detail,
        recommendation=recommendation,
        evidence=EvidenceLevel.CLINICAL_TRIAL if kind is AlertKind.DOSE_RANGE else EvidenceLevel.OBSERVATIONAL,
        involved_ids=ids,
        rule_id=f"kb:hepatic:{band.id}",
        rule_version=0,
        finding_key=f"{kind.value}:hepatic:{'+'.join(ids)}",
        references=(band.source, CHILD_PUGH_REFERENCE) if cp.score is not None else (band.source,),
    )


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 140 else text[:139].rstrip() + "…"

"""Dosage -> plain text for MedicationFact.dose / route / frequency.

Kept on its own so that it can later return structured data (the dose parser reads this text).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.fhir._read import Node

__all__ = ["DosageText", "dosage_text"]

_PERIOD_UNITS = frozenset("s min h d wk mo a".split())  # valueset-units-of-time (required)


@dataclass(frozen=True, slots=True)
class DosageText:
    dose: str | None = None  # "10 mg", "1-2 {tbl}", or the dosage's text when no quantity is given
    route: str | None = None  # "Oral route", as coded or written
    frequency: str | None = None  # "2 per 1 d", "BID", "prn", "1 per 1 d, prn"


def _number(value: float) -> str:
    return f"{value:g}"


def _quantity(q: Node) -> str | None:
    value = q.decimal("value")
    if value is None:
        return None
    unit = q.string("unit") or q.code("code")
    return f"{_number(value)} {unit}" if unit else _number(value)


def _concept_text(cc: Node) -> str | None:
    text = cc.string("text")
    if text:
        return text
    for coding in cc.objs("coding"):
        shown = coding.string("display") or coding.code("code")
        if shown:
            return shown
    return None


def dosage_text(dosages: list[Node]) -> DosageText:
    """The first Dosage (by `sequence`, then order) of a dosageInstruction / dosage array."""
    if not dosages:
        return DosageText()
    ordered = sorted(enumerate(dosages), key=lambda item: (item[1].decimal("sequence") or 0, item[0]))
    dosage = ordered[0][1]
    dose: str | None = None
    for rate in dosage.objs("doseAndRate"):
        quantity = rate.obj("doseQuantity")
        if quantity is not None:
            dose = _quantity(quantity)
        span = rate.obj("doseRange")
        if dose is None and span is not None:
            low, high = span.obj("low"), span.obj("high")
            low_text = _quantity(low) if low is not None else None
            high_text = _quantity(high) if high is not None else None
            if low_text and high_text:
                low_value = low.decimal("value") if low is not None else None
                dose = f"{_number(low_value) if low_value is not None else low_text}-{high_text}"
            else:
                dose = low_text or high_text
        if dose is not None:
            break
    if dose is None:
        dose = dosage.string("text")

    route_node = dosage.obj("route")
    route = _concept_text(route_node) if route_node is not None else None

    parts: list[str] = []
    timing = dosage.obj("timing")
    if timing is not None:
        repeat = timing.obj("repeat")
        if repeat is not None:
            frequency = repeat.decimal("frequency")
            period = repeat.decimal("period")
            unit = repeat.code("periodUnit", _PERIOD_UNITS)
            if period is not None and unit is not None:
                parts.append(f"{_number(frequency if frequency is not None else 1)} per {_number(period)} {unit}")
        code = timing.obj("code")
        if code is not None:
            shown = _concept_text(code)
            if shown:
                parts.append(shown)
    as_needed = dosage.boolean("asNeededBoolean")
    if as_needed or dosage.has("asNeededCodeableConcept"):
        if dosage.has("asNeededCodeableConcept"):
            dosage.obj("asNeededCodeableConcept")  # checked to be an object
        parts.append("prn")
    return DosageText(dose=dose, route=route, frequency=", ".join(parts) or None)

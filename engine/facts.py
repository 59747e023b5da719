"""The fact model (rules/README.md) built from a patient snapshot and a request.

Besides the dict that rules see, `Facts` keeps which item ids carry which ingredient, class,
allergen, condition, food or reading, so every alert can name the items it is about.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from engine.demographics import demographics
from engine.knowledge import (
    FoodLine,
    Knowledge,
    NormalizedAllergen,
    NormalizedDrug,
    NormalizedFood,
    clean_name,
)
from engine.labs import lab_catalog
from engine.model import AllergyFact, EvaluationRequest, MedicationFact, PatientSnapshot, UnresolvedItem
from engine.rules import AppliesTo

__all__ = [
    "AllergyItem",
    "Facts",
    "FoodItem",
    "FoodLineItem",
    "MedicationItem",
    "build_facts",
    "parse_dose_mg",
]

_DOSE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s*(mg|milligrams?|g|grams?|mcg|micrograms?|µg|ug)(?![\w/])", re.IGNORECASE
)
_TO_MG = {
    "mg": 1.0,
    "milligram": 1.0,
    "g": 1000.0,
    "gram": 1000.0,
    "mcg": 0.001,
    "microgram": 0.001,
    "µg": 0.001,
    "ug": 0.001,
}

PREGNANCY_CONDITION = "pregnancy"  # the condition id (conditions.yaml) that means a current pregnancy
_SEX = {"f": "female", "female": "female", "woman": "female", "m": "male", "male": "male", "man": "male"}
_SEX_UNKNOWN = frozenset({"", "unknown", "u", "not recorded"})


def parse_dose_mg(text: str | None) -> float | None:
    """One simple strength in mg ("500 mg", "1 g", "250mcg"); None when absent or not simple
    ("800/160 mg", "5 mg/kg", "1 tablet")."""
    if not text:
        return None
    found = _DOSE.findall(text)
    if len(found) != 1 or "/" in text:
        return None
    value, unit = found[0]
    unit = unit.lower().rstrip("s")
    return float(value) * _TO_MG[unit]


def _lab_type(reading_type: str) -> str:
    """The fact model's labs.<type>: the lab catalog's name for the type or one of its aliases."""
    key = clean_name(reading_type).replace(" ", "_").replace("-", "_")
    lab = lab_catalog().lab_type(key)
    return lab.name if lab is not None else key


@dataclass(frozen=True, slots=True)
class MedicationItem:
    fact: MedicationFact
    drug: NormalizedDrug
    dose_mg: float | None


@dataclass(frozen=True, slots=True)
class AllergyItem:
    fact: AllergyFact
    allergen: NormalizedAllergen


@dataclass(frozen=True, slots=True)
class FoodItem:
    id: str  # "food:<normalised name>"; for a line not fully understood, "food:<the line's words>"
    food: NormalizedFood
    # The words of the line(s) it came from: an allergy named by a food or not recognised at all is
    # also looked for in them ("lupin" in "2 cups lupin flour" even when lupin were unknown).
    words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FoodLineItem:
    """A proposed food or recipe ingredient line as given, and how it was read."""

    id: str  # "food:<the line's words>"
    text: str  # as the caller gave it
    line: FoodLine


@dataclass(frozen=True)
class Facts:
    data: Mapping[str, Any]  # the fact model; what `when` sees
    medications: tuple[MedicationItem, ...]
    allergies: tuple[AllergyItem, ...]
    foods: tuple[FoodItem, ...]
    # bookkeeping: (dimension, value) -> ids of the items that carry it, dimensions as in
    # engine.rules.APPLIES_TO_DIMENSIONS
    item_ids: Mapping[tuple[str, str], tuple[str, ...]]
    # the same for allergies, by what they cover: kept apart because only an allergy rule is about
    # the allergy itself (an interaction rule on penicillins is not about a penicillin allergy)
    allergy_ids: Mapping[tuple[str, str], tuple[str, ...]]
    # Recorded allergies not screened because their verification status says they are not real
    # (FHIR 'refuted', 'entered-in-error'): (allergy id, status).
    ignored_allergies: tuple[tuple[str, str], ...] = ()
    food_lines: tuple[FoodLineItem, ...] = ()
    # labs.<type> -> when the reading was taken (None: not recorded), for the rules' max_age_days
    lab_times: Mapping[str, datetime | None] = field(default_factory=dict)

    def relevance_keys(self) -> Iterator[tuple[str, str]]:
        yield from self.item_ids
        yield from self.allergy_ids
        for name, key in (("age", "age"), ("sex", "sex"), ("pregnant", "pregnancy"), ("lactating", "lactation")):
            if name in self.data:
                yield "demographic", key

    def involved_ids(self, applies_to: AppliesTo, *, allergies: bool = False) -> tuple[str, ...]:
        """Ids of the items whose ingredients, classes, conditions, foods or readings a rule is about."""
        ids: set[str] = set()
        for key in applies_to.keys():
            ids.update(self.item_ids.get(key, ()))
            if allergies:
                ids.update(self.allergy_ids.get(key, ()))
        return tuple(sorted(ids))

    def unresolved(self) -> tuple[UnresolvedItem, ...]:
        """Every medication and screenable allergen that did not resolve to ingredients, and every
        proposed food or ingredient line not fully understood. Allergens recorded as environmental,
        insect or latex are not screened against drugs or foods, so an unknown one leaves nothing
        unscreened."""
        items = [
            UnresolvedItem(
                item_id=m.fact.id,
                kind="medication",
                text=m.fact.name or (str(m.fact.coding) if m.fact.coding else ""),
                reason=m.drug.status,
                parts=m.drug.unrecognised,
                suggestions=m.drug.suggestions,
                notes=m.drug.notes,
            )
            for m in self.medications
            if not m.drug.recognised
        ]
        items.extend(
            UnresolvedItem(
                item_id=a.fact.id,
                kind="allergy",
                text=a.fact.allergen or (str(a.fact.coding) if a.fact.coding else ""),
                reason=a.allergen.status,
                parts=(a.allergen.name,),
                suggestions=a.allergen.suggestions,
                notes=a.allergen.notes,
            )
            for a in self.allergies
            if not a.allergen.recognised and a.allergen.category in _SCREENED_ALLERGEN_CATEGORIES
        )
        # A line that names a food we do not know was not screened for allergens or interactions:
        # "no alert" about it would mean nothing, so the evaluation is incomplete and says which.
        items.extend(
            UnresolvedItem(
                item_id=f.id,
                kind="food",
                text=f.text,
                reason=f.line.status,
                parts=f.line.unrecognised or (f.line.text,),
                suggestions=f.line.suggestions,
            )
            for f in self.food_lines
            if f.line.status != "resolved"
        )
        return tuple(items)


_SCREENED_ALLERGEN_CATEGORIES = (None, "DRUG", "FOOD", "OTHER")
_NOT_AN_ALLERGY = frozenset({"refuted", "entered-in-error"})


def _sorted(values: Iterable[str]) -> list[str]:
    return sorted(set(values))


def build_facts(snapshot: PatientSnapshot, request: EvaluationRequest, knowledge: Knowledge) -> Facts:
    vocabulary = knowledge.vocabulary
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)

    medications: list[MedicationItem] = []
    for med in (*snapshot.medications, *request.proposed_medications):
        proposed = med.proposed or med in request.proposed_medications
        if proposed != med.proposed:
            med = replace(med, proposed=True)
        drug = vocabulary.normalize_drug(med.name, med.coding)
        dose_mg = parse_dose_mg(med.dose) if med.dose else parse_dose_mg(med.name)
        medications.append(MedicationItem(med, drug, dose_mg))
        for ingredient in drug.ingredients:
            ids[("ingredient", ingredient)].add(med.id)
        for cls in drug.classes:
            ids[("class", cls)].add(med.id)

    allergies: list[AllergyItem] = []
    allergy_ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    ignored: list[tuple[str, str]] = []
    for allergy in snapshot.allergies:
        verification = (allergy.verification or "").strip().lower().replace(" ", "-")
        if verification in _NOT_AN_ALLERGY:
            # A refuted allergy (ruled out, e.g. by a negative challenge) or one entered in error
            # is no allergy: screening it would re-label a patient an allergist has de-labelled.
            ignored.append((allergy.id, verification))
            continue
        allergen = vocabulary.normalize_allergen(allergy.allergen, allergy.category, allergy.coding)
        allergies.append(AllergyItem(allergy, allergen))
        # An allergy is "about" the drugs and foods it covers, so an allergy rule names it.
        for dimension, values in (
            ("ingredient", allergen.ingredients),
            ("class", allergen.classes),
            ("food_group", (*allergen.foods, *allergen.food_groups)),
        ):
            for value in values:
                allergy_ids[(dimension, value)].add(allergy.id)

    conditions: list[str] = []
    for condition in snapshot.conditions:
        normalized = vocabulary.normalize_condition(condition.name, condition.code, condition.codings)
        for cid in normalized.ids or (normalized.id,):
            conditions.append(cid)
            ids[("condition", cid)].add(condition.id)

    foods: dict[str, FoodItem] = {}
    food_lines: dict[str, FoodLineItem] = {}
    for text in request.proposed_foods:
        line = vocabulary.food_line(text)
        line_id = f"food:{line.text}"
        if line_id in food_lines:
            continue
        food_lines[line_id] = FoodLineItem(line_id, text, line)
        found = list(line.foods)
        if line.status != "resolved":
            # What was not understood stays an item of its own, so that an allergy to the unknown
            # word itself still meets it and the alert can name it.
            found.append(NormalizedFood(line.text, (), False))
        for food in found:
            item_id = f"food:{food.name}"
            if item_id in foods:
                continue
            foods[item_id] = FoodItem(item_id, food, line.words)
            for value in (food.name, *food.groups):
                ids[("food_group", value)].add(item_id)

    labs: dict[str, float] = {}
    lab_times: dict[str, datetime | None] = {}
    for reading in snapshot.biometrics:
        lab = _lab_type(reading.reading_type)
        # The snapshot holds the latest reading of each type; if a type repeats, the last wins.
        labs[lab] = reading.value
        lab_times[lab] = reading.observed_at
        ids[("biometric", lab)] = {reading.id}

    def ingredients_of(items: Iterable[MedicationItem]) -> list[str]:
        return _sorted(i for m in items for i in m.drug.ingredients)

    def classes_of(items: Iterable[MedicationItem]) -> list[str]:
        return _sorted(c for m in items for c in m.drug.classes)

    current = [m for m in medications if not m.fact.proposed]
    proposed_items = [m for m in medications if m.fact.proposed]
    all_ingredients = ingredients_of(medications)
    # Every known class has a count, zero included: "no NSAID" is a fact, not missing data.
    counts: dict[str, int] = dict.fromkeys(vocabulary.classes, 0)
    for ingredient in all_ingredients:
        for cls in vocabulary.classes_of(ingredient):
            counts[cls] = counts.get(cls, 0) + 1

    data: dict[str, Any] = {
        "tier": snapshot.subscription_tier,
        "ingredients": all_ingredients,
        "classes": classes_of(medications),
        "medications": [
            {
                "id": m.fact.id,
                "name": m.fact.name,
                "ingredients": list(m.drug.ingredients),
                "classes": list(m.drug.classes),
                "dose": m.fact.dose,
                "dose_mg": m.dose_mg,
                "route": m.fact.route,
                "frequency": m.fact.frequency,
                "proposed": m.fact.proposed,
            }
            for m in medications
        ],
        "proposed": {"ingredients": ingredients_of(proposed_items), "classes": classes_of(proposed_items)},
        "current": {"ingredients": ingredients_of(current), "classes": classes_of(current)},
        "allergies": [
            {
                "id": a.fact.id,
                "allergen": a.allergen.name,
                "category": a.allergen.category,
                "severity": a.fact.severity,
                "reactions": list(a.fact.reactions),
                "type": a.fact.type,
                "criticality": a.fact.criticality,
                "verification": a.fact.verification,
            }
            for a in allergies
        ],
        "allergens": _sorted(a.allergen.name for a in allergies),
        "conditions": _sorted(conditions),
        "foods": _sorted(f.food.name for f in foods.values()),
        "food_groups": _sorted(g for f in foods.values() for g in f.food.groups),
        "labs": labs,
        "counts": counts,
    }
    # Missing demographics are absent keys, never a default: a rule comparing them gets
    # "insufficient data" rather than a guess. Age, body size, pregnancy and lactation are read on
    # the evaluation date (engine.demographics): a value too old to use is absent too.
    demo = demographics(snapshot)
    if demo.age_years is not None:
        data["age"] = demo.age_years
    ages = {"age_years": demo.age_years, "age_months": demo.age_months, "age_days": demo.age_days}
    data["demographics"] = {k: v for k, v in ages.items() if v is not None}
    if snapshot.sex is not None:
        sex = clean_name(snapshot.sex)
        if sex not in _SEX_UNKNOWN:
            data["sex"] = _SEX.get(sex, "other")
    if demo.pregnant is not None:
        data["pregnant"] = demo.pregnant
    pregnancy: dict[str, Any] = {}
    if demo.pregnancy_status is not None:
        pregnancy["status"] = demo.pregnancy_status
    if demo.gestational_days is not None:
        pregnancy["gestational_days"] = demo.gestational_days
        pregnancy["gestational_weeks"] = demo.gestational_weeks
        pregnancy["trimester"] = demo.trimester
    data["pregnancy"] = pregnancy
    if demo.lactating is not None:
        data["lactating"] = demo.lactating
    for key, measure in (("weight_kg", demo.weight_kg), ("height_cm", demo.height_cm), ("bsa_m2", demo.bsa_m2)):
        if measure is not None:
            data[key] = round(measure, 2) if key == "bsa_m2" else measure
    if PREGNANCY_CONDITION in conditions:
        # A current pregnancy recorded as a condition (the eCQM Pregnancy value set, or the name) is a
        # pregnancy for the pregnancy rules, even beside a status that says otherwise: the two disagree,
        # and the safe reading of a disagreement about teratogen exposure is "pregnant".
        data["pregnant"] = True
        ids[("demographic", "pregnancy")] |= ids[("condition", PREGNANCY_CONDITION)]

    return Facts(
        data=data,
        medications=tuple(medications),
        allergies=tuple(allergies),
        foods=tuple(foods.values()),
        item_ids={k: tuple(sorted(v)) for k, v in ids.items()},
        allergy_ids={k: tuple(sorted(v)) for k, v in allergy_ids.items()},
        ignored_allergies=tuple(ignored),
        food_lines=tuple(food_lines.values()),
        lab_times=lab_times,
    )

"""FHIR R4 resources (parsed JSON) -> the engine's facts. Pure: no I/O, no store, no transport."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import engine.fhir._codes as C
from engine.fhir._dosage import dosage_text
from engine.fhir._read import FhirError, FhirIssue, Node, code_value
from engine.identity import CODE_SYSTEMS, Coding, parse_coding
from engine.labs import LabInputError, lab_catalog
from engine.model import (
    AllergyFact,
    BiometricFact,
    ConditionFact,
    LactationFact,
    MedicationFact,
    PatientSnapshot,
    PregnancyFact,
)

__all__ = ["PatientData", "iter_ndjson", "parse_draft_orders", "parse_patient_data"]

MAX_RESOURCES = 20_000
MAX_ISSUES = 10

_MAPPED = frozenset(
    {
        "Patient",
        "MedicationRequest",
        "MedicationStatement",
        "AllergyIntolerance",
        "Condition",
        "Observation",
        "NutritionOrder",
        "Medication",
    }
)


@dataclass(frozen=True)
class PatientData:
    """What a FHIR Bundle (or a list of resources) says about one patient, as engine facts.

    Fact ids are FHIR references ("MedicationRequest/123"), so an alert names the resource it is
    about; a resource without an id is named by its fullUrl, or by its place ("entry[4]")."""

    patient_ref: str | None = None  # "Patient/<id>", when the input holds the Patient
    patient_id: str | None = None
    birth_date: date | None = None  # a full birthDate only; a partial one is in `_birth`
    sex: str | None = None  # administrative gender: male | female | other | unknown
    pregnant: bool | None = None  # from the latest pregnancy status Observation
    # That Observation dated, with its gestational age (a component, or the latest gestational age or
    # estimated delivery date Observation), and the latest breastfeeding status Observation.
    pregnancy: PregnancyFact | None = None
    lactation: LactationFact | None = None
    medications: tuple[MedicationFact, ...] = ()
    allergies: tuple[AllergyFact, ...] = ()
    conditions: tuple[ConditionFact, ...] = ()
    readings: tuple[BiometricFact, ...] = ()  # every mapped reading; `snapshot` keeps the latest of each type
    foods: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)  # resources read, by type (for the audit)
    # Observations not used, with why (a unit the rules are not written in, a comparator, ...): codes
    # and units only, never values.
    notes: tuple[str, ...] = ()
    _birth: tuple[int, int | None, int | None] | None = field(default=None, repr=False)

    def age_on(self, on: date) -> int | None:
        """Whole years on `on`; None when unknown, or when a partial birthDate leaves it open."""
        if self._birth is None:
            return None
        year, month, day = self._birth
        if month is None or day is None:
            low = on.year - year - 1
            high = on.year - year
            if month is not None:
                if on.month > month:
                    low = high
                elif on.month < month:
                    high = low
            return high if low == high and high >= 0 else None
        age = on.year - year - ((on.month, on.day) < (month, day))
        return age if age >= 0 else None

    def snapshot(self, patient_id: str, tenant_id: str, *, on: date) -> PatientSnapshot:
        latest: dict[str, BiometricFact] = {}
        floor = datetime.min.replace(tzinfo=None)
        for reading in self.readings:
            held = latest.get(reading.reading_type)
            when = reading.observed_at.replace(tzinfo=None) if reading.observed_at else floor
            held_when = held.observed_at.replace(tzinfo=None) if held and held.observed_at else floor
            if held is None or when >= held_when:
                latest[reading.reading_type] = reading
        return PatientSnapshot(
            patient_id=patient_id,
            tenant_id=tenant_id,
            age=self.age_on(on),
            sex=self.sex,
            birth_date=self.birth_date,
            pregnant=self.pregnant,
            pregnancy=self.pregnancy,
            lactation=self.lactation,
            medications=self.medications,
            allergies=self.allergies,
            conditions=self.conditions,
            biometrics=tuple(latest[k] for k in sorted(latest)),
        )


# --------------------------------------------------------------------------------------------------
# Input shapes


@dataclass(frozen=True, slots=True)
class _Item:
    node: Node
    kind: str
    full_url: str | None
    ref: str  # what fact ids use: "Type/id", else the fullUrl, else the place


def iter_ndjson(lines: Iterable[str | bytes], *, source: str = "") -> Iterator[tuple[str, Any]]:
    """NDJSON lines -> (label, parsed resource), the label naming the line ("x.ndjson line 3").
    Blank lines are skipped; a line that is not JSON is a FhirError naming it."""
    prefix = f"{source} " if source else ""
    for number, line in enumerate(lines, 1):
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        if not text.strip():
            continue
        try:
            yield f"{prefix}line {number}", json.loads(text)
        except (ValueError, RecursionError):
            raise FhirError(f"{prefix}line {number}", "not a JSON value") from None


def _items(doc: Any, issues: list[FhirIssue]) -> list[_Item]:
    if isinstance(doc, Mapping):
        kind = doc.get("resourceType")
        if kind == "Bundle":
            return _bundle_items(Node(doc, "Bundle"), issues)
        located: list[tuple[str, Any]] = [("", doc)]
    elif isinstance(doc, list | tuple):
        if len(doc) > MAX_RESOURCES:
            raise FhirError("(input)", f"more than {MAX_RESOURCES} resources")
        located = [
            (str(item[0]), item[1])
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            else (f"[{i}]", item)
            for i, item in enumerate(doc)
        ]
    else:
        raise FhirError("(input)", "expected a FHIR resource, a Bundle or a list of resources")
    out: list[_Item] = []
    for label, value in located:
        root = _root(label, value)
        try:
            node = Node(value, root)
            kind = _resource_type(node)
            if kind == "Bundle":
                out.extend(_bundle_items(node, issues))
                continue
            out.append(_item(node, kind, None, root))
        except FhirError as exc:
            issues.append(FhirIssue(exc.path, exc.problem))
    return out


def _root(label: str, value: Any) -> str:
    kind = value.get("resourceType") if isinstance(value, Mapping) else None
    kind = kind if isinstance(kind, str) and kind.isalpha() and len(kind) <= 64 else "(resource)"
    return f"{label} {kind}" if label else kind


def _resource_type(node: Node) -> str:
    kind = node.value.get("resourceType")
    if not isinstance(kind, str) or not kind.isalpha() or not kind[:1].isupper() or len(kind) > 64:
        raise node.error("resourceType", "required: the resource's type name")
    return kind


def _item(node: Node, kind: str, full_url: str | None, place: str) -> _Item:
    rid = node.id()
    ref = f"{kind}/{rid}" if rid else (full_url or place)
    return _Item(node, kind, full_url, ref)


def _bundle_items(bundle: Node, issues: list[FhirIssue]) -> list[_Item]:
    bundle.code("type", C.BUNDLE_TYPE, required=True)
    entries = bundle.value.get("entry")
    if entries is not None and not isinstance(entries, list):
        raise bundle.error("entry", "expected an array")
    if entries and len(entries) > MAX_RESOURCES:
        raise bundle.error("entry", f"more than {MAX_RESOURCES} entries")
    out: list[_Item] = []
    for entry in bundle.objs("entry"):
        try:
            full_url = entry.string("fullUrl")
            resource = entry.obj("resource")
            if resource is None:  # a response or a delete request carries none
                continue
            kind = _resource_type(resource)
            if kind == "Bundle":
                raise resource.error(None, "a Bundle inside a Bundle is not read")
            out.append(_item(resource, kind, full_url, entry.path))
        except FhirError as exc:
            issues.append(FhirIssue(exc.path, exc.problem))
            if len(issues) >= MAX_ISSUES:
                break
    return out


class _Index:
    """Resources by the references that may point at them: "Type/id", fullUrl."""

    def __init__(self, items: Sequence[_Item]) -> None:
        self.by_ref: dict[str, _Item] = {}
        for item in items:
            rid = item.node.value.get("id")
            if isinstance(rid, str):
                self.by_ref.setdefault(f"{item.kind}/{rid}", item)
            if item.full_url:
                self.by_ref.setdefault(item.full_url, item)

    def resolve(self, reference: str) -> _Item | None:
        found = self.by_ref.get(reference)
        if found is not None:
            return found
        # An absolute reference "https://ehr.example/fhir/Medication/7" to a bundled "Medication/7".
        parts = reference.rstrip("/").split("/")
        if len(parts) >= 2 and "://" in reference:
            return self.by_ref.get(f"{parts[-2]}/{parts[-1]}")
        return None


# --------------------------------------------------------------------------------------------------
# Codings


def _codings(cc: Node) -> Iterator[tuple[Node, str | None, str | None]]:
    for coding in cc.objs("coding"):
        yield coding, coding.string("system"), coding.code("code")


def _known(coding: Node, system: str | None, code: str | None, wanted: tuple[str, ...]) -> Coding | None:
    if system is None or code is None:
        return None
    short = CODE_SYSTEMS.get(system.strip().lower().rstrip("/"))
    if short is None or short not in wanted or not system.startswith("http"):
        return None
    try:
        return parse_coding(system, code)
    except ValueError:
        raise coding.error("code", f"not a valid {short} code") from None


def _concept(cc: Node, wanted: tuple[str, ...]) -> tuple[str, Coding | None, tuple[Coding, ...]]:
    """(name, the preferred known coding, every known coding) of a CodeableConcept. The name is its
    text, else a display, else "system|code" of an unknown coding, so that the engine can say
    what it could not resolve."""
    text = cc.string("text")
    known: list[Coding] = []
    display: str | None = None
    unknown: str | None = None
    for coding, system, code in _codings(cc):
        found = _known(coding, system, code, wanted)
        shown = coding.string("display")
        if found is not None:
            known.append(found)
            display = display or shown
        else:
            display = display or shown
            if unknown is None and code is not None:
                unknown = f"{system or '(no system)'}|{code}"
    known.sort(key=lambda c: wanted.index(c.system))
    preferred = known[0] if known else None
    name = text or display or (unknown if preferred is None else "") or ""
    if not name and preferred is None:
        raise cc.error(None, "neither a known coding, a display nor a text: nothing to screen")
    return name, preferred, tuple(dict.fromkeys(known))


_DRUG = ("rxnorm", "ndc")
_ALLERGEN = ("rxnorm", "ndc", "snomed")
_CONDITION = ("icd10", "snomed")


def _status_code(cc: Node | None, system: str, allowed: frozenset[str]) -> str | None:
    """The code of a status CodeableConcept with a required binding (clinicalStatus, ...)."""
    if cc is None:
        return None
    for coding, coding_system, code in _codings(cc):
        if coding_system == system:
            if code is None:
                raise coding.error("code", "required")
            return code_value(code, coding.at("code"), allowed)
    raise cc.error("coding", f"no coding from {system} (required binding)")


# --------------------------------------------------------------------------------------------------
# Resources


class _Patients:
    """Which patient the resources are about: all must be about one."""

    def __init__(self, wanted: str | None) -> None:
        self.wanted = wanted
        self.refs: set[str] = set()
        self.id: str | None = None

    def adopt(self, item: _Item) -> None:
        rid = item.node.value.get("id")
        if isinstance(rid, str):
            self.id = rid
            self.refs.add(f"Patient/{rid}")
        if item.full_url:
            self.refs.add(item.full_url)

    def about(self, reference: str) -> bool:
        if reference in self.refs:
            return True
        return self.id is not None and reference.endswith(f"/Patient/{self.id}")

    def check(self, node: Node, key: str) -> bool:
        """True when the resource is about our patient; False when about another one and a patient
        was asked for (the resource is skipped); FhirError when the input mixes patients."""
        ref = node.obj(key, required=True)
        assert ref is not None
        reference = ref.string("reference")
        if reference is None:
            return True  # an identifier or display only: cannot be checked, taken as ours
        if not self.refs:
            if self.wanted is None:
                self.refs.add(reference)
                return True
            if reference in (self.wanted, f"Patient/{self.wanted}") or reference.endswith(f"/Patient/{self.wanted}"):
                self.refs.add(reference)
                return True
            return False
        if self.about(reference):
            return True
        if self.wanted is not None:
            return False
        raise ref.error("reference", "names another patient than the rest of the input (one patient per request)")


def _medication_concept(resource: Node, index: _Index, wanted: tuple[str, ...]) -> tuple[str, Coding | None]:
    cc = resource.obj("medicationCodeableConcept")
    ref = resource.obj("medicationReference")
    if cc is not None and ref is not None:
        raise resource.error("medication[x]", "both medicationCodeableConcept and medicationReference")
    if cc is not None:
        name, coding, _ = _concept(cc, wanted)
        return name, coding
    if ref is None:
        raise resource.error("medication[x]", "required (medicationCodeableConcept or medicationReference)")
    reference = ref.string("reference", required=True)
    assert reference is not None
    medication = _resolve_medication(resource, ref, reference, index)
    return _medication_resource(medication, index)


def _resolve_medication(resource: Node, ref: Node, reference: str, index: _Index) -> Node:
    if reference.startswith("#"):
        for contained in resource.objs("contained"):
            if contained.value.get("id") == reference[1:]:
                if _resource_type(contained) != "Medication":
                    raise ref.error("reference", "resolves to a contained resource that is not a Medication")
                return contained
        raise ref.error("reference", "resolves to no contained Medication")
    item = index.resolve(reference)
    if item is None:
        raise ref.error("reference", "resolves to no Medication in the input")
    if item.kind != "Medication":
        raise ref.error("reference", "resolves to a resource that is not a Medication")
    return item.node


def _medication_resource(medication: Node, index: _Index) -> tuple[str, Coding | None]:
    """A Medication: its code when it has a known one (a product code covers every ingredient);
    else its ingredients, one coded ingredient as that coding, several as their names joined by
    " / " (the engine's name grammar splits a combination there)."""
    code = medication.obj("code")
    name, coding = ("", None)
    if code is not None:
        name, coding, _ = _concept(code, _DRUG)
        if coding is not None:
            return name, coding
    parts: list[tuple[str, Coding | None]] = []
    for ingredient in medication.objs("ingredient"):
        item = ingredient.obj("itemCodeableConcept")
        ref = ingredient.obj("itemReference")
        if item is None and ref is None:
            raise ingredient.error("item[x]", "required (itemCodeableConcept or itemReference)")
        if item is None:
            assert ref is not None
            reference = ref.string("reference", required=True)
            assert reference is not None
            target = index.resolve(reference) if not reference.startswith("#") else None
            if target is None or target.kind not in ("Substance", "Medication"):
                raise ref.error("reference", "resolves to no Substance or Medication in the input")
            item = target.node.obj("code", required=True)
            assert item is not None
        ingredient_name, ingredient_coding, _ = _concept(item, _DRUG)
        parts.append((ingredient_name, ingredient_coding))
    if not parts:
        if code is None:
            raise medication.error(None, "neither a code nor an ingredient: nothing to screen")
        return name, coding
    if len(parts) == 1:
        return (name or parts[0][0]), parts[0][1]
    # Several ingredients and no known product code: the engine takes one code per medication, so
    # the ingredients go by name; an ingredient named only by its code stays unresolved (fail closed).
    return " / ".join(p[0] or (str(p[1]) if p[1] else "") for p in parts), None


def _medication_fact(resource: Node, ref: str, index: _Index, *, proposed: bool, dosage_key: str) -> MedicationFact:
    name, coding = _medication_concept(resource, index, _DRUG)
    dosage = dosage_text(list(resource.objs(dosage_key)))
    return MedicationFact(
        id=ref,
        name=name,
        dose=dosage.dose,
        route=dosage.route,
        frequency=dosage.frequency,
        proposed=proposed,
        coding=coding,
    )


def _allergy(resource: Node, ref: str) -> AllergyFact | None:
    clinical = _status_code(resource.obj("clinicalStatus"), C.ALLERGY_CLINICAL_SYSTEM, C.ALLERGY_CLINICAL)
    verification = _status_code(
        resource.obj("verificationStatus"), C.ALLERGY_VERIFICATION_SYSTEM, C.ALLERGY_VERIFICATION
    )
    kind = resource.code("type", C.ALLERGY_TYPE)
    categories = set(resource.codes("category", C.ALLERGY_CATEGORY))
    criticality = resource.code("criticality", C.ALLERGY_CRITICALITY)
    severities: list[str] = []
    reactions: list[str] = []
    for reaction in resource.objs("reaction"):
        severity = reaction.code("severity", C.REACTION_SEVERITY)
        if severity:
            severities.append(severity)
        manifestations = list(reaction.objs("manifestation"))
        if not manifestations:
            raise reaction.error("manifestation", "required (1..*)")
        for manifestation in manifestations:
            text, _, _ = _concept(manifestation, ())
            reactions.append(text)
    code = resource.obj("code")
    allergen, coding = ("", None)
    if code is not None:
        allergen, coding, _ = _concept(code, _ALLERGEN)
    if clinical in C.EXCLUDED_ALLERGY_CLINICAL:
        return None
    # One category names what to screen against; several (or none) leave it to the engine, which
    # then screens the allergen against drugs and foods both.
    category = C.ALLERGY_CATEGORY_TO_ENGINE[next(iter(categories))] if len(categories) == 1 else None
    order = ("mild", "moderate", "severe")
    severity_out = C.REACTION_SEVERITY_TO_ENGINE[max(severities, key=order.index)] if severities else None
    return AllergyFact(
        id=ref,
        allergen=allergen,
        category=category,
        severity=severity_out,
        reactions=tuple(dict.fromkeys(reactions)),
        coding=coding,
        type=kind,
        criticality=criticality,
        verification=verification,
    )


def _condition(resource: Node, ref: str) -> ConditionFact | None:
    clinical = _status_code(resource.obj("clinicalStatus"), C.CONDITION_CLINICAL_SYSTEM, C.CONDITION_CLINICAL)
    verification = _status_code(
        resource.obj("verificationStatus"), C.CONDITION_VERIFICATION_SYSTEM, C.CONDITION_VERIFICATION
    )
    code = resource.obj("code")
    if code is None:
        raise resource.error("code", "required here: a condition without a code cannot be screened")
    name, preferred, codings = _concept(code, _CONDITION)
    if clinical is not None and clinical not in C.CURRENT_CONDITION:
        return None
    if verification in C.EXCLUDED_CONDITION_VERIFICATION:
        return None
    chosen = next((c for c in codings if c.system == "icd10"), preferred)
    return ConditionFact(id=ref, name=name, code=chosen.code if chosen else None, codings=codings)


def _effective(resource: Node) -> datetime | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if resource.has(key):
            return resource.datetime(key)
    period = resource.obj("effectivePeriod")
    if period is not None:
        return period.datetime("end") or period.datetime("start")
    return None


def _loinc(cc: Node) -> list[str]:
    return [code for _, system, code in _codings(cc) if system == C.LOINC and code is not None]


def _reading(holder: Node, ref: str, when: datetime | None, notes: list[str], loinc: list[str]) -> BiometricFact | None:
    mapped = next((c for c in loinc if c in C.READINGS), None)
    if mapped is None:
        return None
    spec = C.READINGS[mapped]
    quantity = holder.obj("valueQuantity")
    if quantity is None:
        if holder.has("valueString") or holder.has("valueCodeableConcept") or holder.has("valueInteger"):
            notes.append(f"{ref}: loinc {mapped} has no valueQuantity; not used")
        return None
    value = quantity.decimal("value")
    if value is None:
        notes.append(f"{ref}: loinc {mapped} valueQuantity has no value; not used")
        return None
    comparator = quantity.code("comparator", frozenset({"<", "<=", ">=", ">"}))
    if comparator is not None:
        notes.append(f"{ref}: loinc {mapped} value has comparator {comparator!r}, not an exact value; not used")
        return None
    system = quantity.string("system")
    unit = quantity.code("code")
    if system is not None and system != C.UCUM:
        notes.append(f"{ref}: loinc {mapped} unit is not UCUM; not used")
        return None
    catalog = lab_catalog()
    lab = catalog.types[spec.reading_type]
    if unit is None and not lab.unitless:
        notes.append(f"{ref}: loinc {mapped} has no unit code; not used (the lab catalog's unit is {lab.unit})")
        return None
    try:
        converted = catalog.convert(lab, value, unit)
    except LabInputError as exc:
        if exc.field == "value":
            # A value no patient has: a unit slip or a typing error, refused rather than dropped, so the
            # sender learns of it (400 / INVALID_ARGUMENT naming the element). Never the value itself.
            raise quantity.error("value", exc.message) from None
        notes.append(
            f"{ref}: loinc {mapped} unit is not a unit of {lab.name} (UCUM, e.g. {lab.unit}); not used"
        )
        return None
    return BiometricFact(
        id=ref, reading_type=lab.name, value=converted, unit=lab.unit, code=mapped, observed_at=when
    )


# (pregnant, when observed, gestational age in days on that day, estimated delivery date)
_Pregnancy = tuple[bool | None, datetime | None, int | None, date | None]
# ("gestation", days, when) | ("edd", date, when) | ("lactation", bool, when)
_Dated = tuple[str, Any, datetime | None]


_DATED_CODES = (C.GESTATIONAL_AGE_WEEKS, C.GESTATIONAL_AGE_DAYS, C.ESTIMATED_DELIVERY_DATE, C.BREASTFEEDING_STATUS)


def _gestation(holder: Node, ref: str, notes: list[str], code: str) -> int | None:
    quantity = holder.obj("valueQuantity")
    value = quantity.decimal("value") if quantity is not None else None
    unit = quantity.code("code") if quantity is not None else None
    factor = C.GESTATIONAL_AGE_UNITS[code].get(unit or "")
    if value is None or factor is None or (quantity is not None and quantity.string("system") not in (None, C.UCUM)):
        notes.append(f"{ref}: loinc {code} has no value in UCUM {'/'.join(C.GESTATIONAL_AGE_UNITS[code])}; not used")
        return None
    days = round(value * factor)
    if not 0 <= days <= 45 * 7:
        notes.append(f"{ref}: loinc {code} gestational age outside 0 to 45 weeks; not used")
        return None
    return days


def _delivery_date(holder: Node, ref: str, notes: list[str]) -> date | None:
    moment = holder.datetime("valueDateTime")
    if moment is None:
        notes.append(f"{ref}: loinc {C.ESTIMATED_DELIVERY_DATE} has no valueDateTime; not used")
        return None
    return moment.date()


def _dated_observation(resource: Node, ref: str, notes: list[str]) -> _Dated | None:
    """A gestational age, estimated delivery date or breastfeeding status Observation of its own, with
    a result status; None for any other Observation (read by `_observation`)."""
    concept = resource.obj("code")
    loinc = _loinc(concept) if concept is not None else []
    if not any(c in loinc for c in _DATED_CODES):
        return None
    if resource.code("status", C.OBSERVATION_STATUS, required=True) not in C.RESULT_STATUS:
        return None
    when = _effective(resource)
    for code in (C.GESTATIONAL_AGE_WEEKS, C.GESTATIONAL_AGE_DAYS):
        if code in loinc:
            days = _gestation(resource, ref, notes, code)
            return None if days is None else ("gestation", days, when)
    if C.ESTIMATED_DELIVERY_DATE in loinc:
        edd = _delivery_date(resource, ref, notes)
        return None if edd is None else ("edd", edd, when)
    if C.BREASTFEEDING_STATUS in loinc:
        value = resource.boolean("valueBoolean")
        if value is None:
            notes.append(f"{ref}: breastfeeding status without valueBoolean; taken as unknown")
            return None
        return ("lactation", value, when)
    return None


def _observation(resource: Node, ref: str, notes: list[str]) -> tuple[list[BiometricFact], _Pregnancy | None]:
    status = resource.code("status", C.OBSERVATION_STATUS, required=True)
    code = resource.obj("code", required=True)
    assert code is not None
    loinc = _loinc(code)
    components = list(resource.objs("component"))
    pregnancy = C.PREGNANCY_STATUS in loinc
    # Most observations (smoking status, scores, panels) are neither a reading nor a pregnancy
    # status: checked for shape, not read further.
    if status not in C.RESULT_STATUS or not (pregnancy or components or any(c in C.READINGS for c in loinc)):
        return [], None
    when = _effective(resource)
    gestation: int | None = None
    edd: date | None = None
    if pregnancy:
        answer = resource.obj("valueCodeableConcept")
        pregnant: bool | None = None
        if answer is not None:
            for _, system, value in _codings(answer):
                if system is not None and value is not None and (system, value) in C.PREGNANCY_ANSWERS:
                    pregnant = C.PREGNANCY_ANSWERS[(system, value)]
                    break
            else:
                notes.append(f"{ref}: pregnancy status answer not recognised; taken as unknown")
        for i, component in enumerate(components):
            component_code = component.obj("code", required=True)
            assert component_code is not None
            codes = _loinc(component_code)
            where = f"{ref}.component[{i}]"
            for ga_code in (C.GESTATIONAL_AGE_WEEKS, C.GESTATIONAL_AGE_DAYS):
                if ga_code in codes:
                    gestation = _gestation(component, where, notes, ga_code)
            if C.ESTIMATED_DELIVERY_DATE in codes:
                edd = _delivery_date(component, where, notes)
        return [], (pregnant, when, gestation, edd)
    readings: list[BiometricFact] = []
    reading = _reading(resource, ref, when, notes, loinc)
    if reading is not None:
        readings.append(reading)
    for i, component in enumerate(components):
        component_code = component.obj("code", required=True)
        assert component_code is not None
        reading = _reading(component, f"{ref}.component[{i}]", when, notes, _loinc(component_code))
        if reading is not None:
            readings.append(reading)
    return readings, None


def _foods(resource: Node) -> list[str]:
    foods: list[str] = []
    diet = resource.obj("oralDiet")
    if diet is not None:
        for kind in diet.objs("type"):
            name, _, _ = _concept(kind, ())
            foods.append(name)
    for supplement in resource.objs("supplement"):
        product = supplement.string("productName")
        concept = supplement.obj("type")
        if product is None and concept is not None:
            product = _concept(concept, ())[0]
        if product:
            foods.append(product)
    formula = resource.obj("enteralFormula")
    if formula is not None:
        product = formula.string("baseFormulaProductName")
        concept = formula.obj("baseFormulaType")
        if product is None and concept is not None:
            product = _concept(concept, ())[0]
        if product:
            foods.append(product)
    return foods


def parse_patient_data(doc: Any, *, patient: str | None = None) -> PatientData:
    """A Bundle (any type), one resource, or a list of resources (or of (label, resource) pairs from
    `iter_ndjson`) -> PatientData. All resources must be about one patient; with `patient` (an id),
    resources about other patients are skipped instead (bulk NDJSON holds many patients).
    Raises FhirError naming the element path of the first problem, with the others in `.issues`."""
    issues: list[FhirIssue] = []
    items = _items(doc, issues)
    index = _Index(items)
    counts: Counter[str] = Counter()
    patients = _Patients(patient)
    medications: list[MedicationFact] = []
    allergies: list[AllergyFact] = []
    conditions: list[ConditionFact] = []
    readings: list[BiometricFact] = []
    foods: list[str] = []
    notes: list[str] = []
    pregnancy: _Pregnancy | None = None
    dated: dict[str, _Dated] = {}
    floor_utc = datetime.min.replace(tzinfo=UTC)
    gender: str | None = None
    birth: tuple[int, int | None, int | None] | None = None
    patient_item: _Item | None = None

    for item in items:
        if item.kind != "Patient":
            continue
        try:
            rid = item.node.id()
            if patient is not None and rid != patient:
                counts["Patient (other patients)"] += 1
                continue
            if patient_item is not None:
                raise item.node.error(None, "a second Patient: one patient per request")
            patient_item = item
            patients.adopt(item)
            gender = item.node.code("gender", C.GENDER)
            birth = item.node.date("birthDate")
            counts["Patient"] += 1
        except FhirError as exc:
            issues.append(FhirIssue(exc.path, exc.problem))

    for item in items:
        if len(issues) >= MAX_ISSUES:
            break
        node, kind = item.node, item.kind
        if kind == "Patient":
            continue
        try:
            node.id()
            if kind not in _MAPPED:
                counts[kind] += 1
                continue
            if kind == "Medication":
                counts[kind] += 1
                continue
            key = "patient" if kind in ("AllergyIntolerance", "NutritionOrder") else "subject"
            if not patients.check(node, key):
                counts[f"{kind} (other patients)"] += 1
                continue
            counts[kind] += 1
            if kind == "MedicationRequest":
                status = node.code("status", C.MEDICATION_REQUEST_STATUS, required=True)
                intent = node.code("intent", C.MEDICATION_REQUEST_INTENT, required=True)
                fact = _medication_fact(node, item.ref, index, proposed=False, dosage_key="dosageInstruction")
                if status in C.CURRENT_REQUEST_STATUS and intent in C.CURRENT_REQUEST_INTENT:
                    medications.append(fact)
            elif kind == "MedicationStatement":
                status = node.code("status", C.MEDICATION_STATEMENT_STATUS, required=True)
                fact = _medication_fact(node, item.ref, index, proposed=False, dosage_key="dosage")
                if status in C.CURRENT_STATEMENT_STATUS:
                    medications.append(fact)
            elif kind == "AllergyIntolerance":
                allergy = _allergy(node, item.ref)
                if allergy is not None:
                    allergies.append(allergy)
            elif kind == "Condition":
                condition = _condition(node, item.ref)
                if condition is not None:
                    conditions.append(condition)
            elif kind == "Observation" and (dated_obs := _dated_observation(node, item.ref, notes)) is not None:
                held = dated.get(dated_obs[0])
                if held is None or (dated_obs[2] or floor_utc) >= (held[2] or floor_utc):
                    dated[dated_obs[0]] = dated_obs
            elif kind == "Observation":
                found, preg = _observation(node, item.ref, notes)
                readings.extend(found)
                if preg is not None:
                    floor = datetime.min
                    if pregnancy is None or (preg[1] or floor).replace(tzinfo=None) >= (pregnancy[1] or floor).replace(
                        tzinfo=None
                    ):
                        pregnancy = preg
            elif kind == "NutritionOrder":
                status = node.code("status", C.REQUEST_STATUS, required=True)
                node.code("intent", C.REQUEST_INTENT, required=True)
                ordered = _foods(node)
                if status in C.NUTRITION_ORDER_CURRENT:
                    foods.extend(ordered)
        except FhirError as exc:
            issues.append(FhirIssue(exc.path, exc.problem))

    if issues:
        raise FhirError.of(issues[:MAX_ISSUES])
    full_birth = date(*birth) if birth is not None and birth[1] and birth[2] else None  # type: ignore[arg-type]
    pregnancy_fact = _pregnancy_fact(pregnancy, dated)
    lactation = dated.get("lactation")
    return PatientData(
        patient_ref=patient_item.ref if patient_item is not None else None,
        patient_id=patients.id,
        birth_date=full_birth,
        sex=gender,
        pregnant=pregnancy[0] if pregnancy is not None else None,
        pregnancy=pregnancy_fact,
        lactation=LactationFact(bool(lactation[1]), lactation[2]) if lactation is not None else None,
        medications=tuple(medications),
        allergies=tuple(allergies),
        conditions=tuple(conditions),
        readings=tuple(readings),
        foods=tuple(dict.fromkeys(foods)),
        counts=dict(sorted(counts.items())),
        notes=tuple(notes),
        _birth=birth,
    )


def _pregnancy_fact(pregnancy: _Pregnancy | None, dated: Mapping[str, _Dated]) -> PregnancyFact | None:
    """The latest pregnancy status, dated, with a gestational age: its own component, else the latest
    gestational age (or estimated delivery date) Observation of the same pregnancy. Judgement: a
    gestational age or EDD without a pregnancy status is not read as a pregnancy (it may be a newborn's
    gestational age at birth, or an old pregnancy's)."""
    if pregnancy is None or pregnancy[0] is None:
        return None
    pregnant, when, gestation, edd = pregnancy
    status = "pregnant" if pregnant else "not_pregnant"
    if not pregnant:
        return PregnancyFact(status, when)
    on = when.date() if when is not None else None
    if gestation is None and edd is None:
        floor = datetime.min.replace(tzinfo=UTC)
        start = (when or floor) - timedelta(days=300)
        ga, due = dated.get("gestation"), dated.get("edd")
        # Only an Observation of this pregnancy: not before the status by more than a pregnancy lasts.
        if ga is not None and (ga[2] or floor) >= start:
            gestation, on = int(ga[1]), (ga[2].date() if ga[2] is not None else on)
        elif due is not None and (due[2] or floor) >= start:
            edd = due[1]
    return PregnancyFact(status, when, gestation, on if gestation is not None else None, edd)


def parse_draft_orders(doc: Any) -> tuple[MedicationFact, ...]:
    """CDS Hooks `draftOrders` (a Bundle) or `selections`' resources (a list) -> proposed medications.
    Each MedicationRequest needs an id: the fact id is "MedicationRequest/<id>", which the cards
    point at. Orders of other kinds (ServiceRequest, NutritionOrder, ...) are not medications and are
    not returned; cancelled, completed, stopped and entered-in-error orders are not being ordered."""
    issues: list[FhirIssue] = []
    items = _items(doc, issues)
    index = _Index(items)
    facts: list[MedicationFact] = []
    for item in items:
        if len(issues) >= MAX_ISSUES:
            break
        if item.kind != "MedicationRequest":
            continue
        node = item.node
        try:
            rid = node.id(required=True)
            status = node.code("status", C.MEDICATION_REQUEST_STATUS, required=True)
            node.code("intent", C.MEDICATION_REQUEST_INTENT, required=True)
            node.obj("subject", required=True)
            fact = _medication_fact(
                node, f"MedicationRequest/{rid}", index, proposed=True, dosage_key="dosageInstruction"
            )
            if status in C.DRAFT_ORDER_STATUS:
                facts.append(fact)
        except FhirError as exc:
            issues.append(FhirIssue(exc.path, exc.problem))
    if issues:
        raise FhirError.of(issues[:MAX_ISSUES])
    return tuple(facts)

"""The laboratory catalog (rules/knowledge/labs.yaml): reading types, canonical UCUM units, unit
conversion, plausible ranges and the LOINC codes that map to each type.

Every path that takes a reading reads it here: the records use case (PutBiometricReading), the FHIR
mapping (Observations), the CLI (`--lab`, `--cases`) and rule cases. A reading comes in as a reading
type or a LOINC code, a number and a unit as written; it leaves as the canonical type, the value in
the canonical unit, and that unit - or as `LabInputError` naming the field that is wrong. Messages
name fields, types and units of the catalog, never the caller's value (a result is PHI).

Units are converted by the unit library (engine.units: pint with ucumvert's UCUM grammar), never by
comparing strings: any UCUM unit of the canonical unit's dimension is accepted; a molar concentration
converts to a mass concentration (and back) through the catalog's molar mass; an equivalent is a
mole times the ion's charge (UCUM's `eq` is a mole, which is right only for a univalent ion).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.units import UnitError, ucum_quantity

__all__ = [
    "LABS_FILE",
    "LOINC_SYSTEMS",
    "LabCatalog",
    "LabCatalogError",
    "LabInputError",
    "LabType",
    "LabValue",
    "LoincRow",
    "lab_catalog",
    "load_lab_catalog",
]

LABS_FILE = "labs.yaml"
_SHIPPED = Path(__file__).resolve().parents[1] / "rules" / "knowledge" / LABS_FILE
LOINC_SYSTEMS = frozenset({"http://loinc.org", "loinc"})
_LOINC_CODE = re.compile(r"^[0-9]{1,7}-[0-9]$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class LabCatalogError(ValueError):
    """The catalog file is malformed; the message names the row."""


class LabInputError(ValueError):
    """A reading that cannot be taken. `field` is relative to the reading: "reading_type",
    "coding.code", "coding.system", "unit" or "value"; the message never holds the value."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class LoincRow:
    code: str
    reading_type: str
    source: str  # repository@commit and the file the row was read from


@dataclass(frozen=True, slots=True)
class LabType:
    name: str  # the fact model's labs.<name>
    title: str
    unit: str  # canonical UCUM code
    low: float  # plausible range, canonical unit, inclusive
    high: float
    plausible_reason: str
    also: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    molar_mass: float | None = None  # g/mol
    charge: int | None = None  # of the ion, for equivalents
    synonyms: Mapping[str, str] = field(default_factory=dict)
    loinc: tuple[LoincRow, ...] = ()

    @property
    def unitless(self) -> bool:
        """An annotation-only unit ("{INR}"): the number is the whole result; a unit is optional."""
        return self.unit.startswith("{") and self.unit.endswith("}")


@dataclass(frozen=True, slots=True)
class LabValue:
    reading_type: str
    value: float  # in `unit`
    unit: str  # the canonical UCUM code
    code: str | None = None  # the LOINC code, when one was given


def _fold(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


@dataclass(frozen=True)
class LabCatalog:
    types: Mapping[str, LabType]
    by_loinc: Mapping[str, LoincRow]
    unit_synonyms: Mapping[str, str]
    version: str
    _names: Mapping[str, str] = field(repr=False, default_factory=dict)  # name or alias -> name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.types))

    def lab_type(self, name: str) -> LabType | None:
        """The type a reading type or one of its aliases names ("K", "serum potassium"), or None."""
        canonical = self._names.get(_fold(name))
        return self.types[canonical] if canonical is not None else None

    def for_loinc(self, code: str) -> LabType | None:
        row = self.by_loinc.get(code.strip())
        return self.types[row.reading_type] if row is not None else None

    def reading(
        self,
        value: float,
        unit: str | None,
        *,
        reading_type: str | None = None,
        loinc: str | None = None,
        unit_optional: bool = False,
    ) -> LabValue:
        """A reading by type or LOINC code (or both, which must agree) -> the canonical reading.

        `unit_optional`: a missing unit means the canonical unit (the CLI's and rule cases'
        convention); otherwise a missing unit is refused for every type that has one."""
        lab = None
        if loinc is not None and loinc.strip():
            code = loinc.strip()
            if not _LOINC_CODE.match(code):
                raise LabInputError("coding.code", "is not a LOINC code (digits, '-', a check digit)")
            lab = self.for_loinc(code)
            if lab is None:
                raise LabInputError(
                    "coding.code", "is not a LOINC code of the lab catalog (rules/knowledge/labs.yaml)"
                )
        named = None
        if reading_type is not None and reading_type.strip():
            named = self.lab_type(reading_type)
            if named is None:
                raise LabInputError(
                    "reading_type", f"is not a known reading type (one of {', '.join(self.names)})"
                )
        if lab is not None and named is not None and lab.name != named.name:
            raise LabInputError("coding.code", f"is a LOINC code for {lab.name}, not for {named.name}")
        lab = lab or named
        if lab is None:
            raise LabInputError("reading_type", "a reading type or a LOINC coding is required")
        converted = self.convert(lab, value, unit, unit_optional=unit_optional)
        return LabValue(lab.name, converted, lab.unit, loinc.strip() if loinc and loinc.strip() else None)

    def ucum(self, lab: LabType, unit: str) -> str:
        """A unit as written -> the UCUM code it is read as (the lab's own synonyms, then the catalog's)."""
        written = unit.strip()
        key = " ".join(written.lower().split())
        return lab.synonyms.get(key) or self.unit_synonyms.get(key) or written

    def convert(self, lab: LabType, value: float, unit: str | None, *, unit_optional: bool = False) -> float:
        """`value` in `unit` -> in the lab's canonical unit, checked for plausibility."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise LabInputError("value", "must be a finite number")
        if unit is None or not unit.strip():
            if not (unit_optional or lab.unitless):
                raise LabInputError("unit", f"is required for {lab.name} (UCUM, e.g. {lab.unit})")
            result = float(value)
        else:
            result = self._converted(lab, float(value), self.ucum(lab, unit))
        if not lab.low <= result <= lab.high:
            raise LabInputError(
                "value", f"is outside the plausible range for {lab.name} ({lab.low:g} to {lab.high:g} {lab.unit})"
            )
        return result

    def _converted(self, lab: LabType, value: float, code: str) -> float:
        wrong = LabInputError("unit", f"is not a unit of {lab.name} (UCUM, e.g. {', '.join((lab.unit, *lab.also))})")
        if code == lab.unit:
            return value
        try:
            given = ucum_quantity(code)
        except UnitError:
            raise LabInputError("unit", "is not a UCUM unit (unitsofmeasure.org)") from None
        if lab.unitless:
            # "{INR}", "{ratio}", "1": a pure number; a percentage or anything with a dimension is not.
            if code == "1" or (code.startswith("{") and code.endswith("}")):
                return value
            raise wrong
        canonical = ucum_quantity(lab.unit)
        if lab.unit == "%" or str(canonical.units) == "percent":
            raise wrong  # a percentage is only ever given as one
        quantity = value * given
        if "equivalent" in str(quantity.units):
            if lab.charge is None:
                raise wrong
            # UCUM defines eq as mol: right for K+ and Na+, half the moles for Mg2+.
            quantity = quantity / lab.charge
        try:
            if quantity.dimensionality == canonical.dimensionality:
                return float(quantity.to(canonical.units).magnitude / canonical.magnitude)
            if lab.molar_mass is not None:
                molar = ucum_quantity("mmol/L").dimensionality
                mass = ucum_quantity("mg/dL").dimensionality
                g_per_mol = ucum_quantity("g/mol") * lab.molar_mass
                if quantity.dimensionality == molar and canonical.dimensionality == mass:
                    return float((quantity * g_per_mol).to(canonical.units).magnitude / canonical.magnitude)
                if quantity.dimensionality == mass and canonical.dimensionality == molar:
                    return float((quantity / g_per_mol).to(canonical.units).magnitude / canonical.magnitude)
        except Exception:  # noqa: BLE001 - the library's conversion errors are one answer: not this unit
            raise wrong from None
        raise wrong


def _number(row: Mapping[str, Any], key: str, where: str, *, positive: bool = False) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (positive and value <= 0):
        raise LabCatalogError(f"{where}.{key}: a {'positive ' if positive else ''}number")
    return float(value)


def catalog_from_document(doc: Mapping[str, Any], *, version: str = "") -> LabCatalog:
    if not isinstance(doc, Mapping):
        raise LabCatalogError("expected a mapping")
    sources = doc.get("sources") or {}
    synonyms = doc.get("unit_synonyms") or {}
    labs = doc.get("labs")
    if not isinstance(sources, Mapping) or not isinstance(synonyms, Mapping) or not isinstance(labs, Mapping):
        raise LabCatalogError("sources, unit_synonyms and labs are mappings")
    types: dict[str, LabType] = {}
    by_loinc: dict[str, LoincRow] = {}
    names: dict[str, str] = {}
    for name, row in labs.items():
        where = f"labs.{name}"
        if not isinstance(name, str) or not _NAME.match(name) or not isinstance(row, Mapping):
            raise LabCatalogError(f"{where}: a lower-case name and a mapping")
        unit = row.get("unit")
        plausible = row.get("plausible")
        reason = row.get("plausible_reason")
        if not isinstance(unit, str) or not unit:
            raise LabCatalogError(f"{where}.unit: the canonical UCUM unit")
        if (
            not isinstance(plausible, list)
            or len(plausible) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in plausible)
            or plausible[0] >= plausible[1]
        ):
            raise LabCatalogError(f"{where}.plausible: [min, max]")
        if not isinstance(reason, str) or not reason.strip():
            raise LabCatalogError(f"{where}.plausible_reason: every range says why")
        molar = _number(row, "molar_mass", where, positive=True)
        if molar is not None and not row.get("molar_mass_source"):
            raise LabCatalogError(f"{where}.molar_mass_source: a molar mass names its source")
        charge = row.get("charge")
        if charge is not None and (isinstance(charge, bool) or not isinstance(charge, int) or charge < 1):
            raise LabCatalogError(f"{where}.charge: a whole number of at least 1")
        rows = []
        for i, entry in enumerate(row.get("loinc") or []):
            w = f"{where}.loinc[{i}]"
            code = str(entry.get("code", "")) if isinstance(entry, Mapping) else ""
            source = entry.get("source") if isinstance(entry, Mapping) else None
            if not _LOINC_CODE.match(code):
                raise LabCatalogError(f"{w}.code: a LOINC code")
            if source not in sources:
                raise LabCatalogError(f"{w}.source: one of the sources ({', '.join(map(str, sources))})")
            if code in by_loinc:
                raise LabCatalogError(f"{w}.code: {code} maps to {by_loinc[code].reading_type} already")
            loinc_row = LoincRow(code, name, f"{sources[source]} {entry.get('row') or ''}".strip())
            by_loinc[code] = loinc_row
            rows.append(loinc_row)
        aliases = tuple(str(a) for a in row.get("aliases") or ())
        for alias in (name, *aliases):
            folded = _fold(alias)
            if names.get(folded, name) != name:
                raise LabCatalogError(f"{where}.aliases: {alias!r} names {names[folded]} already")
            names[folded] = name
        own = row.get("synonyms") or {}
        types[name] = LabType(
            name=name,
            title=str(row.get("name") or name),
            unit=unit,
            low=float(plausible[0]),
            high=float(plausible[1]),
            plausible_reason=reason,
            also=tuple(str(u) for u in row.get("also") or ()),
            aliases=aliases,
            molar_mass=molar,
            charge=charge,
            synonyms={str(k).lower(): str(v) for k, v in own.items()},
            loinc=tuple(rows),
        )
    return LabCatalog(
        types=types,
        by_loinc=by_loinc,
        unit_synonyms={" ".join(str(k).lower().split()): str(v) for k, v in synonyms.items()},
        version=version,
        _names=names,
    )


def load_lab_catalog(path: Path) -> LabCatalog:
    try:
        text = path.read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
        return catalog_from_document(doc, version=f"labs:{hashlib.sha256(text.encode()).hexdigest()[:12]}")
    except (OSError, yaml.YAMLError, LabCatalogError) as exc:
        raise LabCatalogError(f"{path}: {exc}") from None


@functools.cache
def lab_catalog() -> LabCatalog:
    """The shipped catalog, read once per process (it is part of the release, like the unit library)."""
    return load_lab_catalog(_SHIPPED)

"""Units of dose quantities, read as UCUM codes and converted by a real unit library.

Prescribers write "mcg", "mEq", "units", "tabs"; FHIR dosage carries UCUM codes ("ug", "meq",
"[iU]", "mg/(kg.d)", "{tbl}"). Both are turned into one UCUM code here, the code is parsed by
ucumvert's UCUM grammar into a pint unit, and pint's dimensional algebra says what it measures and
the factor to our canonical units: mg (mass), mL (volume), mmol (amount of substance; a milli-
equivalent is a millimole in UCUM), international units, or a count of doses (tablets, puffs);
each possibly per kilogram of body weight, per square metre of body surface, per volume (a
concentration) or per time (a rate). Nothing is ever compared as a string of unit text.

Cost: the unit registry and the UCUM parser take about half a second to build, once per process
(`warm()` at knowledge load time, so that no evaluation pays it, and no evaluation reads a file);
each distinct unit code is then analysed once and cached, so a parse costs a dictionary look-up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "UNIT_SYNONYMS",
    "DoseUnit",
    "UnitError",
    "dose_unit",
    "height_in_cm",
    "to_ucum",
    "ucum_quantity",
    "warm",
    "weight_in_kg",
]

UnitKind = Literal["mass", "volume", "substance", "unit", "count"]
# What a canonical quantity is expressed in, per kind (UCUM codes).
CANONICAL: dict[str, str] = {"mass": "mg", "volume": "mL", "substance": "mmol", "unit": "[iU]"}


class UnitError(ValueError):
    """A unit that is not a UCUM code nor a known way of writing one, or that measures nothing a dose
    can be in (a length, a temperature, a percentage)."""


@dataclass(frozen=True, slots=True)
class DoseUnit:
    code: str  # the UCUM code it was read as ("mg", "ug", "[iU]", "mg/kg", "{tbl}")
    kind: UnitKind
    factor: float  # one of this unit in canonical units (1 ug -> 0.001 mg; 1 mg/h -> 24 mg/d)
    per_kg: bool = False  # per kilogram of body weight
    per_m2: bool = False  # per square metre of body surface area
    per_ml: bool = False  # per millilitre: a concentration ("mg/mL", "[iU]/mL")
    per_day: bool = False  # a rate, in canonical units per day ("mg/h", "ug/min", "mg/kg/d")
    count: str | None = None  # for kind "count": what is counted ("tbl", "cap", "puff")

    @property
    def canonical(self) -> str:
        """The canonical unit this one converts to, written as a UCUM code."""
        base = f"{{{self.count}}}" if self.kind == "count" else CANONICAL[self.kind]
        for flag, part in ((self.per_kg, "kg"), (self.per_m2, "m2"), (self.per_ml, "mL"), (self.per_day, "d")):
            if flag:
                base += f"/{part}"
        return base

    def same_basis(self, other: DoseUnit) -> bool:
        """True when quantities in the two units can be compared after conversion."""
        return (self.kind, self.count, self.per_kg, self.per_m2, self.per_ml, self.per_day) == (
            other.kind,
            other.count,
            other.per_kg,
            other.per_m2,
            other.per_ml,
            other.per_day,
        )


# How prescriptions and labels write units -> the UCUM code. Keys are lower-cased; UCUM itself is
# case-sensitive, so a code not listed here is tried as UCUM exactly as given.
UNIT_SYNONYMS: dict[str, str] = {
    "mg": "mg", "milligram": "mg", "milligrams": "mg", "mgs": "mg",
    "g": "g", "gm": "g", "gram": "g", "grams": "g", "gms": "g",
    "mcg": "ug", "ug": "ug", "µg": "ug", "μg": "ug", "microgram": "ug", "micrograms": "ug", "mcgs": "ug",
    "ng": "ng", "nanogram": "ng", "nanograms": "ng",
    "kg": "kg", "kilogram": "kg", "kilograms": "kg", "kgs": "kg",
    "lb": "[lb_av]", "lbs": "[lb_av]", "pound": "[lb_av]", "pounds": "[lb_av]",
    "ml": "mL", "mls": "mL", "cc": "mL", "milliliter": "mL", "milliliters": "mL", "millilitre": "mL",
    "millilitres": "mL",
    "l": "L", "liter": "L", "liters": "L", "litre": "L", "litres": "L",
    # Insulin, heparin and the like: "units" are the drug's (USP) units, numerically the WHO
    # international units they are standardised against. UCUM's "U" is the enzyme unit (umol/min), a
    # thing no dose is written in, so in a dose it is read as the drug's unit (judgement: what every
    # insulin order written "10 U" means).
    "unit": "[iU]", "units": "[iU]", "u": "[iU]", "iu": "[iU]", "[iu]": "[iU]", "[usp'u]": "[iU]",
    "international unit": "[iU]", "international units": "[iU]", "unt": "[iU]",
    "meq": "meq", "milliequivalent": "meq", "milliequivalents": "meq",
    "mmol": "mmol", "millimole": "mmol", "millimoles": "mmol",
    "m2": "m2", "m^2": "m2", "m²": "m2", "sq m": "m2",
    "d": "d", "day": "d", "days": "d", "24h": "d", "24 h": "d", "24hr": "d", "24 hr": "d",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "min": "min", "minute": "min", "minutes": "min",
    "wk": "wk", "week": "wk", "weeks": "wk",
    # Counted dose units: UCUM annotations (a count with a label).
    "tab": "{tbl}", "tabs": "{tbl}", "tablet": "{tbl}", "tablets": "{tbl}", "tbl": "{tbl}", "{tbl}": "{tbl}",
    "cap": "{cap}", "caps": "{cap}", "capsule": "{cap}", "capsules": "{cap}", "{cap}": "{cap}",
    "puff": "{puff}", "puffs": "{puff}", "inhalation": "{puff}", "inhalations": "{puff}", "{puff}": "{puff}",
    "actuation": "{puff}", "actuations": "{puff}", "actuat": "{puff}",
    "spray": "{spray}", "sprays": "{spray}", "{spray}": "{spray}",
    "patch": "{patch}", "patches": "{patch}", "{patch}": "{patch}",
    "suppository": "{supp}", "suppositories": "{supp}", "supp": "{supp}", "{supp}": "{supp}",
    "each": "{each}", "ea": "{each}", "dose": "{each}", "doses": "{each}", "{each}": "{each}",
    "lozenge": "{each}", "lozenges": "{each}", "vial": "{each}", "vials": "{each}", "ampule": "{each}",
    # UCUM's drop is a volume (1/20 mL); a drop of an eye solution is dosed as a count.
    "drop": "[drp]", "drops": "[drp]", "gtt": "[drp]", "gtts": "[drp]", "[drp]": "[drp]",
}  # fmt: skip


def to_ucum(text: str) -> str:
    """A unit as written ("mcg/kg/min", "mg per kg per day", "units") -> a UCUM code ("ug/kg/min").
    Pieces not in UNIT_SYNONYMS pass through unchanged, to be read as UCUM by `dose_unit`."""
    cleaned = " ".join(text.strip().replace(" per ", "/").split())
    whole = UNIT_SYNONYMS.get(cleaned.lower())
    if whole is not None:
        return whole
    if "/" not in cleaned or "(" in cleaned:
        return cleaned
    pieces = [p.strip() for p in cleaned.split("/")]
    return "/".join(UNIT_SYNONYMS.get(p.lower(), p) for p in pieces)


_lock = threading.Lock()
_registry: Any = None
_parser: Any = None
_transformer: Any = None
_cache: dict[str, DoseUnit | UnitError] = {}
_CACHE_BOUND = 10_000  # unit codes come from callers: bounded


def _library() -> tuple[Any, Any, Any]:
    global _registry, _parser, _transformer
    if _registry is None:
        with _lock:
            if _registry is None:
                # Our own registry, with UCUM's definitions added: ucumvert's PintUcumRegistry would
                # hand quantities of pint's shared application registry back, mixing two registries.
                import pint
                import ucumvert
                from ucumvert import UcumToPintTransformer, get_ucum_parser

                registry: Any = pint.UnitRegistry()
                registry.load_definitions(Path(ucumvert.__file__).parent / "pint_ucum_defs.txt")
                _parser = get_ucum_parser()
                _transformer = UcumToPintTransformer(ureg=registry)
                _registry = registry
    return _registry, _parser, _transformer


def warm() -> None:
    """Build the unit library now (knowledge load time), so that no evaluation pays for it."""
    for code in ("mg", "mg/kg", "mg/mL", "[iU]", "mg/(kg.d)", "{tbl}"):
        dose_unit(code)


def dose_unit(text: str) -> DoseUnit:
    """What a dose unit measures and its factor to canonical units; UnitError when it is none."""
    cached = _cache.get(text)
    if cached is None:
        cached = _cache.get(code := to_ucum(text))
    if cached is None:
        try:
            cached = _analyse(code)
        except UnitError as exc:
            cached = exc
        if len(_cache) < _CACHE_BOUND:
            _cache[code] = cached
            _cache[text] = cached
    if isinstance(cached, UnitError):
        raise cached
    return cached


def _analyse(code: str) -> DoseUnit:
    registry, parser, transformer = _library()
    from ucumvert import parse_ucum

    count: str | None = None
    parse_code = code
    if code.startswith("{") and "}" in code:
        # "{tbl}" or "{tbl}/d": a count. UCUM reads an annotation as the number 1, so the library
        # analyses the rest ("1/d") and the label is kept here.
        count = code[1 : code.index("}")]
        rest = code[code.index("}") + 1 :]
        parse_code = "1" + rest if rest else "1"
    try:
        quantity = transformer.transform(parse_ucum(parse_code, parser))
    except Exception as exc:
        raise UnitError(f"{code[:40]!r} is not a unit of dose (UCUM)") from exc
    if not hasattr(quantity, "unit_items"):
        raise UnitError(f"{code[:40]!r} is not a unit of dose (UCUM)")
    numerator: list[tuple[str, str]] = []  # (pint unit name, kind)
    per_kg = per_m2 = per_ml = per_day = False
    target = registry.Quantity(1, "dimensionless")
    iu = registry.Unit("international_unit")
    usp = registry.Unit("US_pharmacopeia_unit")
    for name, exponent in quantity.unit_items():
        unit = registry.Unit(name)
        dims = registry.get_dimensionality(name)
        if exponent > 0:
            if dims == registry.get_dimensionality("g") and exponent == 1:
                numerator.append((name, "mass"))
            elif dims == registry.get_dimensionality("mL") and exponent == 1:
                numerator.append((name, "volume"))
            elif dims == registry.get_dimensionality("mmol") and exponent == 1:
                numerator.append((name, "substance"))
            elif unit in (iu, usp) and exponent == 1:
                numerator.append((name, "unit"))
            else:
                raise UnitError(f"{code[:40]!r} does not measure a dose")
            continue
        if dims == registry.get_dimensionality("kg") and exponent == -1 and not per_kg:
            per_kg = True
            target = target / registry.Quantity(1, "kg")
        elif dims == registry.get_dimensionality("m") and exponent == -2 and not per_m2:
            per_m2 = True
            target = target / registry.Quantity(1, "m**2")
        elif dims == registry.get_dimensionality("mL") and exponent == -1 and not per_ml:
            per_ml = True
            target = target / registry.Quantity(1, "mL")
        elif dims == registry.get_dimensionality("d") and exponent == -1 and not per_day:
            per_day = True
            target = target / registry.Quantity(1, "day")
        else:
            raise UnitError(f"{code[:40]!r} does not measure a dose")
    kind: UnitKind
    if count is not None:
        if numerator:
            raise UnitError(f"{code[:40]!r} does not measure a dose")
        kind = "count"
    elif len(numerator) == 1:
        kind = numerator[0][1]  # type: ignore[assignment]
        canonical = (
            registry.Quantity(1, "international_unit")
            if kind == "unit"
            else registry.Quantity(1, {"mass": "mg", "volume": "mL", "substance": "mmol"}[kind])
        )
        target = target * canonical
    else:
        raise UnitError(f"{code[:40]!r} does not measure a dose")
    factor = float(quantity.to(target.units).magnitude) / float(target.magnitude)
    return DoseUnit(code, kind, factor, per_kg, per_m2, per_ml, per_day, count)


def weight_in_kg(value: float, unit: str | None) -> float:
    """A body weight in kilograms; a missing unit means kilograms (the fact model's convention).
    UnitError for a unit that is not a mass."""
    if not unit:
        return value
    _, parser, transformer = _library()
    from ucumvert import parse_ucum

    code = to_ucum(unit)
    try:
        quantity = transformer.transform(parse_ucum(code, parser))
        return float((value * quantity).to("kg").magnitude)
    except Exception as exc:
        raise UnitError(f"{unit[:40]!r} is not a unit of body weight") from exc


# Body length units as people write them -> UCUM (inches and feet are UCUM's international ones).
_LENGTH_SYNONYMS = {"in": "[in_i]", "inch": "[in_i]", "inches": "[in_i]", "ft": "[ft_i]", "feet": "[ft_i]"}


def height_in_cm(value: float, unit: str | None) -> float:
    """A body height (or length) in centimetres; a missing unit means centimetres (the fact model's
    `height_cm`). UnitError for a unit that is not a length."""
    if not unit:
        return value
    _, parser, transformer = _library()
    from ucumvert import parse_ucum

    written = unit.strip()
    code = _LENGTH_SYNONYMS.get(written.lower(), written)
    try:
        quantity = transformer.transform(parse_ucum(code, parser))
        return float((value * quantity).to("cm").magnitude)
    except Exception as exc:
        raise UnitError(f"{unit[:40]!r} is not a unit of body height") from exc


# Creatinine (C4H7N3O): molar mass 113.12 g/mol (PubChem CID 588, public domain). 1 umol/L is
# 113.12 ug/L = 0.011312 mg/dL (the "divide by 88.4" of the clinical laboratory).
CREATININE_G_PER_MOL = 113.12


def creatinine_mg_dl(value: float, unit: str | None) -> float:
    """A serum creatinine in mg/dL, from a mass concentration (mg/dL, mg/L, ...) or a molar one
    (umol/L, mmol/L), converted by the unit library. A missing unit means mg/dL (the fact model's
    convention); UnitError for a unit that is not a concentration."""
    if not unit:
        return value
    registry, parser, transformer = _library()
    from ucumvert import parse_ucum

    written = unit.strip()
    code = _CONCENTRATION_SYNONYMS.get(written.lower(), written)
    try:
        quantity = value * transformer.transform(parse_ucum(code, parser))
    except Exception as exc:
        raise UnitError(f"{unit[:40]!r} is not a unit of serum creatinine") from exc
    dims = quantity.dimensionality
    if dims == registry.get_dimensionality("mg/dL"):
        return float(quantity.to("mg/dL").magnitude)
    if dims == registry.get_dimensionality("mmol/L"):
        # mmol/L x g/mol = mg/L; / 10 = mg/dL
        return float(quantity.to("mmol/L").magnitude * CREATININE_G_PER_MOL / 10)
    raise UnitError(f"{unit[:40]!r} is not a unit of serum creatinine")


# Ways laboratories write the two creatinine units -> UCUM (case matters in UCUM: L, dL).
_CONCENTRATION_SYNONYMS = {
    "µmol/l": "umol/L",
    "μmol/l": "umol/L",
    "umol/l": "umol/L",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "mg/l": "mg/L",
}


_quantities: dict[str, Any] = {}


def ucum_quantity(code: str) -> Any:
    """One of a UCUM unit as a quantity of the unit library (pint), for dimensional checks and
    conversion (engine.labs). A bare annotation ("{INR}", "{ratio}") is the number 1, as UCUM reads
    it. UnitError for text that is not UCUM. Cached, bounded like `dose_unit`."""
    held = _quantities.get(code)
    if held is not None:
        return held
    registry, parser, transformer = _library()
    from ucumvert import parse_ucum

    try:
        parsed = transformer.transform(parse_ucum(code, parser))
    except Exception as exc:
        raise UnitError("is not a UCUM unit") from exc
    quantity = parsed if hasattr(parsed, "dimensionality") else registry.Quantity(1, "dimensionless")
    if len(_quantities) < _CACHE_BOUND:
        _quantities[code] = quantity
    return quantity

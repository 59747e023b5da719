"""Age, body size, pregnancy and lactation of a patient on the evaluation date. Pure: no I/O.

What a snapshot records (a birth date, dated weight and height readings, a dated pregnancy status with
a gestational age or an estimated delivery date, a dated lactation status) is read here, once per
evaluation, into `Demographics`: the values on the evaluation date, or why a value is not known.
The fact model (`engine.facts`, rules/README.md) and the dose limits (`engine.dose_limits`) take
their age, weight, pregnancy and lactation from here, so a value too old to use is unknown
everywhere, never "safe" in one place and used in another.

How old a value may be (judgement calls, README "Age, weight, pregnancy as data"):
- weight: under 1 year 30 days, under 18 years 90 days, adults 180 days (renal.WEIGHT_MAX_AGE).
  Infants gain about 1 kg a month in the first months, so a month-old weight is already 10-20% off
  a weight-based dose; children's weight changes over a season; adults' over months.
- height: under 18 years 180 days; adults 5 years (adult height changes slowly).
- a "pregnant" status: while the gestational age it implies is under 43 weeks (301 days); without a
  gestational age, 301 days after it was recorded. Past that the pregnancy has ended.
- a "not pregnant" status: 91 days (13 weeks, one trimester). A pregnancy begun since could be in
  its second trimester, where ACE inhibitor/ARB and NSAID fetal toxicity starts.
- a lactation status (either way): 180 days.
Values recorded without a date (the CLI's and rule cases' plain flags, records written before dates
were kept) are taken as current, as engine/renal.py does with undated readings.

Gestational age on the evaluation date = the recorded gestational age + days since it was recorded;
from an estimated delivery date (EDD) = 280 days - (EDD - evaluation date) (Naegele's rule: the EDD
is 280 days after the last menstrual period). Trimesters: first 0+0 to 13+6 weeks, second 14+0 to
27+6, third from 28+0 (the convention of ACOG and of the obstetric literature).

Body surface area, Mosteller: BSA (m2) = sqrt(height (cm) x weight (kg) / 3600) (Mosteller RD.
Simplified calculation of body-surface area. N Engl J Med 1987;317(17):1098), only when both are
recent enough.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from engine.identity import fold
from engine.model import BiometricFact, LactationFact, PatientSnapshot, PregnancyFact
from engine.units import UnitError, height_in_cm, weight_in_kg

__all__ = [
    "DEMOGRAPHIC_KEYS",
    "GESTATION_DAYS",
    "HEIGHT_MAX_AGE_ADULT",
    "HEIGHT_MAX_AGE_CHILD",
    "HEIGHT_TYPES",
    "LACTATION_MAX_AGE",
    "NOT_PREGNANT_MAX_AGE",
    "PREGNANCY_MAX_GESTATION_DAYS",
    "WEIGHT_MAX_AGE_ADULT",
    "WEIGHT_MAX_AGE_CHILD",
    "WEIGHT_MAX_AGE_INFANT",
    "WEIGHT_TYPES",
    "BodyMeasure",
    "DemographicInputError",
    "Demographics",
    "age_parts",
    "check_birth_date",
    "check_gestation",
    "demographics",
    "mosteller_bsa",
    "read_demographics",
    "trimester",
]

WEIGHT_MAX_AGE_INFANT = timedelta(days=30)
WEIGHT_MAX_AGE_CHILD = timedelta(days=90)
WEIGHT_MAX_AGE_ADULT = timedelta(days=180)
HEIGHT_MAX_AGE_CHILD = timedelta(days=180)
HEIGHT_MAX_AGE_ADULT = timedelta(days=5 * 365)
GESTATION_DAYS = 280  # Naegele: the EDD is 280 days after the last menstrual period
PREGNANCY_MAX_GESTATION_DAYS = 301  # 43 weeks: a "pregnant" status past it is out of date
NOT_PREGNANT_MAX_AGE = timedelta(days=91)
LACTATION_MAX_AGE = timedelta(days=180)

WEIGHT_TYPES = frozenset({"weight", "weight_kg", "body_weight", "bodyweight"})
HEIGHT_TYPES = frozenset({"height", "height_cm", "body_height", "length", "body_length", "stature"})


def _kind(reading_type: str) -> str:
    return fold(reading_type).replace(" ", "_").replace("-", "_")


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def age_parts(birth: date, on: date) -> tuple[int, int, int] | None:
    """(completed years, completed months, days) of life on `on`; None when born after `on`."""
    if birth > on:
        return None
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    return years, months, (on - birth).days


def trimester(gestational_days: int) -> int:
    return 1 if gestational_days < 14 * 7 else 2 if gestational_days < 28 * 7 else 3


def mosteller_bsa(height_cm: float, weight_kg: float) -> float:
    return math.sqrt(height_cm * weight_kg / 3600.0)


@dataclass(frozen=True, slots=True)
class BodyMeasure:
    value: float  # kg or cm
    reading_id: str
    observed_at: datetime | None  # None: undated (taken as current)


@dataclass(frozen=True, slots=True)
class Demographics:
    on: date
    age_years: int | None = None
    age_months: int | None = None  # from a birth date only
    age_days: int | None = None  # from a birth date only
    weight: BodyMeasure | None = None
    weight_problem: str | None = None  # why there is no usable weight, when a reading was there
    weight_reading_id: str | None = None  # the reading the problem is about
    height: BodyMeasure | None = None
    height_problem: str | None = None
    bsa_m2: float | None = None
    pregnant: bool | None = None
    pregnancy_status: str | None = None  # pregnant | not_pregnant (None: unknown or out of date)
    pregnancy_problem: str | None = None
    gestational_days: int | None = None  # on `on`
    lactating: bool | None = None
    lactation_problem: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def gestational_weeks(self) -> int | None:
        return None if self.gestational_days is None else self.gestational_days // 7

    @property
    def trimester(self) -> int | None:
        return None if self.gestational_days is None else trimester(self.gestational_days)

    @property
    def weight_kg(self) -> float | None:
        return None if self.weight is None else self.weight.value

    @property
    def height_cm(self) -> float | None:
        return None if self.height is None else self.height.value


def _weight_limit(age_years: int | None, age_months: int | None) -> timedelta:
    if age_months is not None and age_months < 12:
        return WEIGHT_MAX_AGE_INFANT
    if age_years is not None and age_years < 18:
        return WEIGHT_MAX_AGE_CHILD
    return WEIGHT_MAX_AGE_ADULT


def _latest(readings: tuple[BiometricFact, ...], types: frozenset[str]) -> BiometricFact | None:
    found: BiometricFact | None = None
    for reading in readings:
        if _kind(reading.reading_type) not in types:
            continue
        if found is None:
            found = reading
            continue
        when, held = _aware(reading.observed_at), _aware(found.observed_at)
        if when is not None and (held is None or when > held):
            found = reading
    return found


def _body(
    reading: BiometricFact | None, what: str, now: datetime, limit: timedelta, lo: float, hi: float
) -> tuple[BodyMeasure | None, str | None]:
    if reading is None:
        return None, None
    try:
        convert = weight_in_kg if what == "weight" else height_in_cm
        value = convert(reading.value, reading.unit)
    except UnitError:
        unit = "mass" if what == "weight" else "length"
        return None, f"the {what}'s unit is not a unit of {unit}"
    if not (math.isfinite(value) and lo <= value <= hi):
        return None, f"the {what} is not plausible"
    when = _aware(reading.observed_at)
    if when is not None:
        age = now - when
        if age > limit:
            return None, f"the latest {what} is {age.days} days old (at most {limit.days} allowed at this age)"
        if age < -timedelta(days=1):
            return None, f"the latest {what} is dated in the future"
    return BodyMeasure(value, reading.id, when), None


def demographics(snapshot: PatientSnapshot, now: datetime | None = None) -> Demographics:
    """The snapshot's demographics on its evaluation date (`snapshot.as_of`, else `now`, else now)."""
    at = _aware(snapshot.as_of or now) or datetime.now(UTC)
    on = at.date()
    notes: list[str] = []

    years: int | None = snapshot.age
    months = days = None
    if snapshot.birth_date is not None:
        parts = age_parts(snapshot.birth_date, on)
        if parts is None:
            notes.append("the birth date is after the evaluation date; age unknown")
            years = None
        else:
            years, months, days = parts

    weight, weight_problem = _body(
        _latest(snapshot.biometrics, WEIGHT_TYPES), "weight", at, _weight_limit(years, months), 0.3, 500.0
    )
    weight_reading = _latest(snapshot.biometrics, WEIGHT_TYPES)
    height_limit = HEIGHT_MAX_AGE_CHILD if years is None or years < 18 else HEIGHT_MAX_AGE_ADULT
    height, height_problem = _body(_latest(snapshot.biometrics, HEIGHT_TYPES), "height", at, height_limit, 20.0, 272.0)
    bsa = mosteller_bsa(height.value, weight.value) if height is not None and weight is not None else None

    pregnant = snapshot.pregnant
    status: str | None = None if pregnant is None else ("pregnant" if pregnant else "not_pregnant")
    problem = None
    gestation = None
    record = snapshot.pregnancy
    if record is not None:
        status, pregnant = record.status, record.status == "pregnant"
        recorded = _aware(record.recorded_at)
        if record.status == "pregnant":
            if record.gestational_days is not None:
                base = record.gestational_on or (recorded.date() if recorded is not None else on)
                gestation = record.gestational_days + (on - base).days
            elif record.estimated_delivery is not None:
                gestation = GESTATION_DAYS - (record.estimated_delivery - on).days
            if gestation is not None and gestation > PREGNANCY_MAX_GESTATION_DAYS:
                problem = (
                    f"the recorded pregnancy would be at {gestation // 7} weeks today; past"
                    f" {PREGNANCY_MAX_GESTATION_DAYS // 7} weeks it has ended: pregnancy status out of date"
                )
            elif gestation is None and recorded is not None and (at - recorded).days > PREGNANCY_MAX_GESTATION_DAYS:
                problem = f"the pregnancy status was recorded {(at - recorded).days} days ago: out of date"
            elif gestation is not None and gestation < 0:
                problem = "the gestational age is before conception on the evaluation date"
        elif recorded is not None and at - recorded > NOT_PREGNANT_MAX_AGE:
            problem = (
                f"'not pregnant' was recorded {(at - recorded).days} days ago (at most"
                f" {NOT_PREGNANT_MAX_AGE.days} allowed): pregnancy status unknown"
            )
        if problem is not None:
            status = pregnant = gestation = None

    lactating = None
    lactation_problem = None
    if snapshot.lactation is not None:
        lactating = snapshot.lactation.lactating
        recorded = _aware(snapshot.lactation.recorded_at)
        if recorded is not None and at - recorded > LACTATION_MAX_AGE:
            lactation_problem = (
                f"the lactation status was recorded {(at - recorded).days} days ago (at most"
                f" {LACTATION_MAX_AGE.days} allowed): lactation unknown"
            )
            lactating = None

    return Demographics(
        on=on,
        age_years=years,
        age_months=months,
        age_days=days,
        weight=weight,
        weight_problem=weight_problem,
        weight_reading_id=weight_reading.id if weight_reading is not None else None,
        height=height,
        height_problem=height_problem,
        bsa_m2=bsa,
        pregnant=pregnant,
        pregnancy_status=status,
        pregnancy_problem=problem,
        gestational_days=gestation,
        lactating=lactating,
        lactation_problem=lactation_problem,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------------
# Input in plain words (`praneya check`, `--cases` lines, rule cases): one reader, so each door
# refuses the same things with the same field names.

MAX_AGE_YEARS = 130
MAX_GESTATIONAL_WEEKS = 45
DEMOGRAPHIC_KEYS = frozenset({"birth_date", "as_of", "weight", "height", "pregnancy", "lactating"})
_PREGNANCY_KEYS = frozenset(
    {"status", "gestational_weeks", "gestational_days", "estimated_delivery_date", "recorded_on"}
)
_QUANTITY_KEYS = frozenset({"value", "unit", "taken_at"})


class DemographicInputError(ValueError):
    """Input that cannot be read; the message starts with the field's name."""


def _date_field(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise DemographicInputError(f"{where}: expected a date, YYYY-MM-DD")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise DemographicInputError(f"{where}: expected a date, YYYY-MM-DD") from None


def _moment_field(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        return _aware(value) or value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise DemographicInputError(f"{where}: expected a date (YYYY-MM-DD) or an ISO date-time") from None
        return _aware(parsed) or parsed
    raise DemographicInputError(f"{where}: expected a date (YYYY-MM-DD) or an ISO date-time")


def check_birth_date(birth: date, on: date, where: str = "birth_date") -> None:
    parts = age_parts(birth, on)
    if parts is None:
        raise DemographicInputError(f"{where}: is in the future")
    if parts[0] > MAX_AGE_YEARS:
        raise DemographicInputError(f"{where}: is more than {MAX_AGE_YEARS} years ago")


def check_gestation(weeks: int, days: int, where: str = "pregnancy") -> int:
    """Gestational age as weeks + days -> days; refused outside 0+0 to 45+0 weeks."""
    if not 0 <= weeks <= MAX_GESTATIONAL_WEEKS:
        raise DemographicInputError(f"{where}.gestational_weeks: must be 0 to {MAX_GESTATIONAL_WEEKS}")
    if not 0 <= days <= 6:
        raise DemographicInputError(f"{where}.gestational_days: must be 0 to 6 (days past the completed weeks)")
    total = weeks * 7 + days
    if total > MAX_GESTATIONAL_WEEKS * 7:
        raise DemographicInputError(f"{where}.gestational_days: {MAX_GESTATIONAL_WEEKS}+0 weeks is the most")
    return total


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DemographicInputError(f"{where}: expected a whole number")
    return value


def _quantity(value: Any, where: str, default_unit: str) -> tuple[float, str | None, datetime | None]:
    if isinstance(value, bool):
        raise DemographicInputError(f"{where}: expected a number or {{value, unit, taken_at}}")
    if isinstance(value, int | float):
        number, unit, taken = float(value), default_unit, None
    elif isinstance(value, Mapping):
        unknown = set(value) - _QUANTITY_KEYS
        if unknown:
            raise DemographicInputError(f"{where}: unknown field {sorted(map(str, unknown))[0]!r}")
        raw = value.get("value")
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise DemographicInputError(f"{where}.value: expected a number")
        number = float(raw)
        unit_value = value.get("unit", default_unit)
        if not isinstance(unit_value, str) or not unit_value.strip():
            raise DemographicInputError(f"{where}.unit: expected a unit such as {default_unit}")
        unit = unit_value.strip()
        taken = _moment_field(value["taken_at"], f"{where}.taken_at") if value.get("taken_at") is not None else None
    else:
        raise DemographicInputError(f"{where}: expected a number or {{value, unit, taken_at}}")
    if not (math.isfinite(number) and number > 0):
        raise DemographicInputError(f"{where}.value: expected a positive number")
    return number, unit, taken


def read_demographics(doc: Mapping[str, Any], *, pregnant: bool | None = None) -> dict[str, Any]:
    """`birth_date`, `as_of`, `weight`, `height`, `pregnancy`, `lactating` of a plain-words patient ->
    PatientSnapshot fields (`birth_date`, `as_of`, `pregnancy`, `lactation`) and `readings` (weight in
    kg, height in cm, as BiometricFacts). `pregnant` (the plain flag) must agree with `pregnancy`."""
    out: dict[str, Any] = {}
    as_of = _moment_field(doc["as_of"], "as_of") if doc.get("as_of") is not None else None
    if as_of is not None:
        out["as_of"] = as_of
    today = (as_of or datetime.now(UTC)).date()
    if doc.get("birth_date") is not None:
        birth = _date_field(doc["birth_date"], "birth_date")
        check_birth_date(birth, today)
        out["birth_date"] = birth
    readings: list[BiometricFact] = []
    for key, default, convert, reading_type, unit_word in (
        ("weight", "kg", weight_in_kg, "weight_kg", "kg"),
        ("height", "cm", height_in_cm, "height_cm", "cm"),
    ):
        if doc.get(key) is None:
            continue
        number, unit, taken = _quantity(doc[key], key, default)
        try:
            value = convert(number, unit)
        except UnitError:
            raise DemographicInputError(
                f"{key}.unit: {unit!r} is not a unit of {'mass' if key == 'weight' else 'length'}"
            ) from None
        if taken is not None and taken.date() > today:
            raise DemographicInputError(f"{key}.taken_at: is in the future")
        readings.append(BiometricFact(f"{key}-1", reading_type, value, unit_word, observed_at=taken))
    out["readings"] = tuple(readings)
    if doc.get("pregnancy") is not None:
        p = doc["pregnancy"]
        if not isinstance(p, Mapping):
            raise DemographicInputError("pregnancy: expected {status, gestational_weeks, ...}")
        unknown = set(p) - _PREGNANCY_KEYS
        if unknown:
            raise DemographicInputError(f"pregnancy: unknown field {sorted(map(str, unknown))[0]!r}")
        status = p.get("status")
        if status not in ("pregnant", "not_pregnant"):
            raise DemographicInputError("pregnancy.status: one of pregnant, not_pregnant")
        recorded = _moment_field(p["recorded_on"], "pregnancy.recorded_on") if p.get("recorded_on") else None
        if recorded is not None and recorded.date() > today:
            raise DemographicInputError("pregnancy.recorded_on: is in the future")
        gestation = edd = None
        has_ga = p.get("gestational_weeks") is not None or p.get("gestational_days") is not None
        if (has_ga or p.get("estimated_delivery_date") is not None) and status != "pregnant":
            raise DemographicInputError("pregnancy.gestational_weeks: only with status pregnant")
        if has_ga:
            if p.get("gestational_weeks") is None:
                raise DemographicInputError("pregnancy.gestational_weeks: required with gestational_days")
            weeks = _whole(p["gestational_weeks"], "pregnancy.gestational_weeks")
            days = _whole(p.get("gestational_days", 0), "pregnancy.gestational_days")
            gestation = check_gestation(weeks, days)
        if p.get("estimated_delivery_date") is not None:
            edd = _date_field(p["estimated_delivery_date"], "pregnancy.estimated_delivery_date")
            implied = GESTATION_DAYS - (edd - (recorded.date() if recorded else today)).days
            if not 0 <= implied <= MAX_GESTATIONAL_WEEKS * 7:
                raise DemographicInputError(
                    "pregnancy.estimated_delivery_date: implies a gestational age outside 0 to 45 weeks"
                )
        if pregnant is not None and pregnant != (status == "pregnant"):
            raise DemographicInputError("pregnancy.status: disagrees with pregnant")
        gestational_on = recorded.date() if recorded is not None and gestation is not None else None
        out["pregnancy"] = PregnancyFact(status, recorded, gestation, gestational_on, edd)
    if doc.get("lactating") is not None:
        given: Any = doc["lactating"]
        when = None
        if isinstance(given, Mapping):
            unknown = set(given) - {"value", "recorded_on"}
            if unknown:
                raise DemographicInputError(f"lactating: unknown field {sorted(map(str, unknown))[0]!r}")
            if given.get("recorded_on") is not None:
                when = _moment_field(given["recorded_on"], "lactating.recorded_on")
                if when.date() > today:
                    raise DemographicInputError("lactating.recorded_on: is in the future")
            given = given.get("value")
        if not isinstance(given, bool):
            raise DemographicInputError("lactating: expected true or false (or {value, recorded_on})")
        out["lactation"] = LactationFact(given, when)
    return out

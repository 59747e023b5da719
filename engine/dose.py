"""Structured dose: amount, unit, route, frequency, PRN and duration, read from a medication's
dose, route and frequency fields or from one free-text sig ("10 mg PO BID", "1 tab q6h prn",
"1000 mg every 4 hours", "once weekly on Mondays", "2 per 1 d" as FHIR timing is written).

Pure text parsing; units go through `engine.units` (UCUM, pint). What could not be read is listed
in `Dose.problems`, never guessed: a dose check that needs it reports insufficient data.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from engine.identity import fold
from engine.units import DoseUnit, UnitError, dose_unit

__all__ = [
    "ROUTES",
    "Amount",
    "Dose",
    "Strength",
    "parse_dose",
    "parse_strengths",
]


@dataclass(frozen=True, slots=True)
class Amount:
    """A quantity of one administration (or a rate): `low`..`high` (equal unless a range, "1-2 tabs")."""

    low: float
    high: float
    unit: DoseUnit

    @property
    def canonical_high(self) -> float:
        return self.high * self.unit.factor

    def __str__(self) -> str:
        value = _number(self.low) if self.low == self.high else f"{_number(self.low)}-{_number(self.high)}"
        return f"{value} {self.unit.code}"


@dataclass(frozen=True, slots=True)
class Strength:
    """How much of one ingredient one unit of the product holds: per each (tablet, capsule, patch)
    or, with `per_ml`, per millilitre. `value` is in canonical units of `kind` (mg, [iU], mmol)."""

    value: float
    kind: str
    per_ml: bool = False
    per_day: bool = False  # a rate the product delivers (a patch: mcg/h), in canonical units a day


@dataclass(frozen=True, slots=True)
class Dose:
    text: str  # the folded text that was read
    amount: Amount | None = None  # one administration; None when none was written or readable
    route: str | None = None  # canonical route ("oral", "intravenous", ...)
    per_day: float | None = None  # most administrations in one day: BID 2, q4-6h 6, weekly 1
    days_per_week: float | None = None  # dosing days a week: daily 7, weekly 1, every other day 3.5
    once: bool = False  # a single dose (stat, once, x1)
    prn: bool = False
    duration_days: float | None = None
    weekdays: tuple[str, ...] = ()
    max_daily: Amount | None = None  # a maximum the order itself states ("max 3 g/day")
    max_per_day: float | None = None  # "max 4 doses a day"
    concentration: Amount | None = None  # a strength written with the dose ("5 mL of 250 mg/5 mL")
    problems: tuple[str, ...] = ()

    @property
    def frequency_known(self) -> bool:
        return self.once or self.per_day is not None or (self.amount is not None and self.amount.unit.per_day)

    @property
    def administrations_per_day(self) -> float | None:
        """Most administrations in any one day, the order's own cap applied."""
        if self.once:
            return 1.0
        per_day = self.per_day
        if self.max_per_day is not None:
            per_day = self.max_per_day if per_day is None else min(per_day, self.max_per_day)
        return per_day


def _number(value: float) -> str:
    return f"{value:g}"


# --------------------------------------------------------------------------------------------------
# Vocabulary of sigs

ROUTES: dict[str, str] = {
    "po": "oral", "p.o.": "oral", "oral": "oral", "orally": "oral", "by mouth": "oral", "per os": "oral",
    "iv": "intravenous", "ivp": "intravenous", "ivpb": "intravenous", "intravenous": "intravenous",
    "intravenously": "intravenous", "iv push": "intravenous", "iv piggyback": "intravenous",
    "im": "intramuscular", "intramuscular": "intramuscular", "intramuscularly": "intramuscular",
    "sc": "subcutaneous", "sq": "subcutaneous", "subq": "subcutaneous", "subcut": "subcutaneous",
    "s.c.": "subcutaneous", "subcutaneous": "subcutaneous", "subcutaneously": "subcutaneous",
    "sl": "sublingual", "sublingual": "sublingual", "sublingually": "sublingual", "under the tongue": "sublingual",
    "pr": "rectal", "rectal": "rectal", "rectally": "rectal", "per rectum": "rectal",
    "top": "topical", "topical": "topical", "topically": "topical", "cutaneous": "topical",
    "inh": "inhalation", "inhaled": "inhalation", "inhalation": "inhalation", "neb": "inhalation",
    "nebulized": "inhalation", "via nebulizer": "inhalation",
    "td": "transdermal", "transdermal": "transdermal", "transdermally": "transdermal",
    "ng": "enteral", "per ng tube": "enteral", "via ng tube": "enteral", "peg": "enteral", "per tube": "enteral",
    "via g-tube": "enteral", "per g-tube": "enteral", "enteral": "enteral",
    "buccal": "buccal", "intranasal": "nasal", "nasal": "nasal", "nasally": "nasal", "each nostril": "nasal",
    "ophthalmic": "ophthalmic", "each eye": "ophthalmic", "both eyes": "ophthalmic", "ou": "ophthalmic",
    "od eye": "ophthalmic", "otic": "otic", "each ear": "otic",
    "vaginal": "vaginal", "vaginally": "vaginal", "pv": "vaginal",
    "intrathecal": "intrathecal", "it": "intrathecal", "epidural": "epidural", "intradermal": "intradermal",
}  # fmt: skip
_ROUTE_RE = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(ROUTES, key=len, reverse=True)) + r")(?![\w])"
)

_NAKED_DECIMAL_RE = re.compile(r"(?<![\d.])\.(\d)")
_NUM = r"(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)"
_WORD_NUMBERS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "half": "0.5", "a half": "0.5", "one half": "0.5", "½": "0.5", "¼": "0.25",
    "once": "1", "twice": "2", "thrice": "3",
}  # fmt: skip
_WORD_NUMBER_RE = re.compile(
    r"(?<![\w])(one half|a half|one|two|three|four|five|six|seven|eight|nine|ten|half)(?![\w])"
)
_FRACTION_RE = re.compile(r"(?<![\d.])(\d+)\s*/\s*(\d+)(?=\s*(?:tab|tablet|cap|capsule|pill)s?\b)")

_PRN_RE = re.compile(r"(?<![\w])(?:prn|p\.r\.n\.?|as needed|as required|when required|if needed|when needed)(?![\w])")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_RE = re.compile(r"(?<![\w])(mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|sday|urday)?s?(?![\w])")
_PERIOD_UNIT = r"(?:min(?:ute)?s?|h|hrs?|hours?|d|days?|wks?|weeks?|w|mo|mos|months?)"
_DURATION_RE = re.compile(
    rf"(?<![\w])(?:for|x|×|times)\s*({_NUM})\s*(d|days?|wks?|weeks?|w|mo|months?)(?![\w])(?:\s*(?:only|total))?"
)
_MAX_AMOUNT_RE = re.compile(
    rf"(?<![\w])(?:max(?:imum)?(?:\s+dose)?|not to exceed|nte|no more than|do not exceed|up to)\s*(?:of\s*)?"
    rf"({_NUM})\s*([a-zµμ]+)\s*(?:/|per|in|a|each|every)\s*(?:24\s*h(?:ours?|rs?)?|d|day)(?![\w])"
)
_MAX_COUNT_RE = re.compile(
    rf"(?<![\w])(?:max(?:imum)?(?:\s+of)?|not to exceed|nte|no more than|do not exceed|up to)\s*({_NUM})\s*"
    r"(?:doses?|times)\s*(?:/|per|in|a|each|every)\s*"
    r"(?:24\s*h(?:ours?|rs?)?|d|day)(?![\w])"
)
_UNIT_TEXT = r"(?:[a-zµμ\[\]{}'%²^]+(?:\s*/\s*(?:[a-zµμ\[\]{}'%²^0-9]+|\([a-z.]+\)))*)"
_AMOUNT_RE = re.compile(rf"(?<![\w.])({_NUM})(?:\s*(?:-|to|–)\s*({_NUM}))?\s*({_UNIT_TEXT})")
_CONCENTRATION_RE = re.compile(rf"(?<![\w.])({_NUM})\s*([a-zµμ]+)\s*/\s*({_NUM})?\s*(ml|l)(?![\w])")

# (pattern, administrations per day, dosing days per week); ordered: longer phrases first.
_FREQUENCIES: list[tuple[re.Pattern[str], float, float]] = [
    (re.compile(p), per_day, days)
    for p, per_day, days in [
        (r"(?<![\w])(?:every other day|qod|q\.o\.d\.|on alternate days|alternate days|alt days|q48h|q 48 h)(?![\w])",
         1, 3.5),
        (r"(?<![\w])(?:twice (?:a |per |every )?week(?:ly)?|biw|2 times (?:a |per )?week(?:ly)?|"
         r"2x (?:a |per )?week(?:ly)?)"
         r"(?![\w])", 1, 2),
        (r"(?<![\w])(?:three times (?:a |per )?week(?:ly)?|tiw|3 times (?:a |per )?week(?:ly)?|"
         r"3x (?:a |per )?week(?:ly)?)"
         r"(?![\w])", 1, 3),
        (r"(?<![\w])(?:once (?:a |per |every )?week(?:ly)?|weekly|every week|each week|q ?week|q ?wk|q1w|"
         r"q ?7 ?d(?:ays)?|"
         r"every 7 days|1 time (?:a |per )?week|1x (?:a |per )?week(?:ly)?|one time (?:a |per )?week)(?![\w])", 1, 1),
        (r"(?<![\w])(?:once (?:a |per |every )?month(?:ly)?|monthly|every month|q ?month|q ?mo)(?![\w])", 1, 7 / 30),
        (r"(?<![\w])(?:four times (?:a |per )?day|four times daily|qid|q\.i\.d\.|qds|4 times (?:a |per )?day|"
         r"4 times daily|4x (?:a |per )?day|4x daily|4x/d)(?![\w])", 4, 7),
        (r"(?<![\w])(?:five times (?:a |per )?day|five times daily|5 times (?:a |per )?day|5 times daily|"
         r"5x daily)(?![\w])",
         5, 7),
        (r"(?<![\w])(?:six times (?:a |per )?day|six times daily|6 times (?:a |per )?day|6 times daily)(?![\w])", 6, 7),
        (r"(?<![\w])(?:three times (?:a |per )?day|three times daily|tid|t\.i\.d\.|tds|3 times (?:a |per )?day|"
         r"3 times daily|3x (?:a |per )?day|3x daily|3x/d)(?![\w])", 3, 7),
        (r"(?<![\w])(?:twice (?:a |per )?day|twice daily|bid|b\.i\.d\.|bd|2 times (?:a |per )?day|2 times daily|"
         r"2x (?:a |per )?day|2x daily|2x/d|every morning and (?:every )?evening|morning and evening|morning and night)"
         r"(?![\w])", 2, 7),
        (r"(?<![\w])(?:once (?:a |per )?day|once daily|daily|qd|q\.d\.|od|q ?24 ?h(?:ours?|rs?)?|every day|each day|"
         r"every 24 hours|qday|q ?am|q ?pm|qhs|hs|at bedtime|nightly|every night|every morning|every evening|"
         r"each morning|each evening|in the morning|at night|1 time (?:a |per )?day|1x daily|1x (?:a |per )?day|"
         r"one time (?:a |per )?day|1 time daily|once in the (?:morning|evening))(?![\w])", 1, 7),
    ]
]  # fmt: skip
_TIMES_PER_DAY_RE = re.compile(rf"(?<![\w])({_NUM})\s*(?:x|times)\s*(?:a|per|each|/)?\s*(?:day|daily|d)(?![\w])")
_TIMES_PER_WEEK_RE = re.compile(rf"(?<![\w])({_NUM})\s*(?:x|times)\s*(?:a|per|each|/)?\s*(?:week|weekly|wk)(?![\w])")
# q6h, q4-6h, q 8 hours, every 4 hours, every 4 to 6 hours
_EVERY_HOURS_RE = re.compile(
    rf"(?<![\w])(?:q|every)\s*({_NUM})\s*(?:(?:-|to|–)\s*({_NUM}))?\s*(?:h|hr|hrs|hours?)(?![\w])"
)
_EVERY_MINUTES_RE = re.compile(rf"(?<![\w])(?:q|every)\s*({_NUM})\s*(?:min|mins|minutes?)(?![\w])")
_EVERY_DAYS_RE = re.compile(rf"(?<![\w])(?:q|every)\s*({_NUM})\s*(?:d|days?)(?![\w])")
_EVERY_WEEKS_RE = re.compile(rf"(?<![\w])(?:q|every)\s*({_NUM})\s*(?:w|wks?|weeks?)(?![\w])")
# FHIR timing as the mapping writes it: "2 per 1 d", "1-2 per 4-6 h", "1 per 1 wk"
_FHIR_TIMING_RE = re.compile(
    rf"(?<![\w])({_NUM})(?:\s*-\s*({_NUM}))?\s*per\s*({_NUM})?(?:\s*-\s*({_NUM}))?\s*({_PERIOD_UNIT})(?![\w])"
)
_ONCE_RE = re.compile(
    r"(?<![\w])(?:once only|one time only|one time|single dose|once|stat|now|x ?1(?: dose)?|x one|one dose)(?![\w])"
)
_CONTINUOUS_RE = re.compile(r"(?<![\w])(?:continuous(?:ly)?|infusion|drip|titrate)(?![\w])")
_HOURS = {"min": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0, "mo": 720.0}


def _period_hours(unit: str) -> float:
    unit = unit.lower()
    if unit.startswith("mi"):
        return _HOURS["min"]
    if unit.startswith("mo"):
        return _HOURS["mo"]
    if unit.startswith("h"):
        return _HOURS["h"]
    if unit.startswith("d"):
        return _HOURS["d"]
    return _HOURS["w"]


def _float(text: str) -> float:
    return float(text.replace(",", ""))


def _amount(low: str, high: str | None, unit_text: str) -> Amount:
    unit = dose_unit(unit_text)  # UnitError when the unit is none
    lo = _float(low)
    hi = _float(high) if high else lo
    if hi < lo:
        lo, hi = hi, lo
    return Amount(lo, hi, unit)


def _frequency_from_timing(m: re.Match[str]) -> tuple[float, float] | None:
    """(administrations per day on a dosing day, dosing days per week) of "F[-Fmax] per P[-Pmax] unit"."""
    times = _float(m.group(2) or m.group(1))
    period = _float(m.group(3) or "1")
    if m.group(4):
        period = min(period, _float(m.group(4)))
    hours = period * _period_hours(m.group(5))
    if times <= 0 or hours <= 0:
        return None
    if hours <= 24:
        return times * 24 / hours, 7.0
    # Less often than daily: one administration on each dosing day (judgement: "2 per 1 wk" is two
    # days a week, not two doses on one day).
    days = times * 168 / hours
    return 1.0, min(days, 7.0)


@functools.lru_cache(maxsize=8192)
def parse_dose(dose: str | None, route: str | None = None, frequency: str | None = None) -> Dose:
    """Read a dose from the three fields (any of them may hold the whole sig). Cached: a service sees
    the same few thousand sigs again and again, and a Dose is immutable."""
    # A naked decimal point (".5 mg", an ISMP error-prone notation) is read as 0.5 before folding,
    # which would strip the leading dot and leave a tenfold overdose.
    raw = " ".join(p for p in (dose, route, frequency) if p and p.strip())
    text = fold(_NAKED_DECIMAL_RE.sub(r"0.\1", raw))
    problems: list[str] = []
    work = " " + text.replace("½", " 0.5 ").replace("¼", " 0.25 ") + " "
    work = _FRACTION_RE.sub(lambda m: f"{int(m.group(1)) / int(m.group(2)):g}", work)
    work = _WORD_NUMBER_RE.sub(lambda m: _WORD_NUMBERS[m.group(1)], work)

    def cut(m: re.Match[str]) -> str:
        nonlocal work
        work = work[: m.start()] + " ; " + work[m.end() :]
        return m.group(0)

    prn = False
    while (m := _PRN_RE.search(work)) is not None:
        prn = True
        cut(m)

    max_per_day: float | None = None
    if (m := _MAX_COUNT_RE.search(work)) is not None:
        max_per_day = _float(m.group(1))
        cut(m)
    max_daily: Amount | None = None
    if (m := _MAX_AMOUNT_RE.search(work)) is not None:
        try:
            max_daily = _amount(m.group(1), None, m.group(2))
            cut(m)
        except UnitError:
            pass

    duration: float | None = None
    if (m := _DURATION_RE.search(work)) is not None:
        n = _float(m.group(1))
        unit = m.group(2)
        duration = n * (7 if unit.startswith("w") else 30 if unit.startswith("mo") else 1)
        cut(m)

    per_day: float | None = None
    days_per_week: float | None = None
    once = False
    if (m := _FHIR_TIMING_RE.search(work)) is not None:
        timing = _frequency_from_timing(m)
        if timing is not None:
            per_day, days_per_week = timing
            cut(m)
    if per_day is None and (m := _EVERY_HOURS_RE.search(work)) is not None:
        hours = _float(m.group(1))
        if m.group(2):
            hours = min(hours, _float(m.group(2)))
        if hours > 0:
            per_day, days_per_week = (24 / hours, 7.0) if hours <= 24 else (1.0, min(7.0, 168 / hours))
            cut(m)
    if per_day is None and (m := _EVERY_MINUTES_RE.search(work)) is not None and _float(m.group(1)) > 0:
        per_day, days_per_week = 1440 / _float(m.group(1)), 7.0
        cut(m)
    if per_day is None and (m := _EVERY_WEEKS_RE.search(work)) is not None and _float(m.group(1)) > 0:
        per_day, days_per_week = 1.0, 1 / _float(m.group(1))
        cut(m)
    if per_day is None and (m := _EVERY_DAYS_RE.search(work)) is not None and _float(m.group(1)) > 0:
        per_day, days_per_week = 1.0, 7 / _float(m.group(1))
        cut(m)
    if per_day is None:
        for pattern, n, days in _FREQUENCIES:
            if (m := pattern.search(work)) is not None:
                per_day, days_per_week = float(n), float(days)
                cut(m)
                break
    if per_day is None and (m := _TIMES_PER_WEEK_RE.search(work)) is not None:
        per_day, days_per_week = 1.0, min(7.0, _float(m.group(1)))
        cut(m)
    if per_day is None and (m := _TIMES_PER_DAY_RE.search(work)) is not None:
        per_day, days_per_week = _float(m.group(1)), 7.0
        cut(m)

    weekdays: list[str] = []
    for m in list(_DAY_RE.finditer(work)):
        day = next(d for d in _DAYS if d.startswith(m.group(1)[:3]))
        if day not in weekdays:
            weekdays.append(day)
    if weekdays:
        work = _DAY_RE.sub(" ; ", work)
        if per_day is None:
            per_day, days_per_week = 1.0, float(len(weekdays))
        elif days_per_week is not None and days_per_week >= 7:
            # "daily on Mondays" says less than it seems; the named days are the schedule.
            days_per_week = float(len(weekdays))
    if per_day is None and (m := _ONCE_RE.search(work)) is not None:
        once = True
        cut(m)

    found_route: str | None = None
    for m in _ROUTE_RE.finditer(work):
        candidate = ROUTES[m.group(1)]
        if found_route is None:
            found_route = candidate
        elif found_route != candidate:
            problems.append("more than one route")
            break
    if route and fold(route) and found_route is None:
        problems.append("route not recognised")
    work = _ROUTE_RE.sub(" ; ", work)

    concentration: Amount | None = None
    if (m := _CONCENTRATION_RE.search(work)) is not None and (m.group(3) or m.start() > 0):
        # "5 ml of 250 mg/5 ml": a strength beside the dose, per millilitre.
        try:
            per = _float(m.group(3) or "1") * (1000 if m.group(4) == "l" else 1)
            mass = _amount(m.group(1), None, m.group(2))
            if per > 0 and not mass.unit.per_ml and mass.unit.kind != "count":
                concentration = Amount(mass.low / per, mass.high / per, dose_unit(f"{mass.unit.code}/mL"))
                work = work[: m.start()] + " ; " + work[m.end() :]
        except UnitError:
            pass

    amount: Amount | None = None
    for m in _AMOUNT_RE.finditer(work):
        unit_text = m.group(3).strip()
        try:
            amount = _amount(m.group(1), m.group(2), unit_text)
        except UnitError:
            # "2 q6h" leaves "q" as the would-be unit: a number without a unit.
            problems.append(f"unit {unit_text[:20]!r} not recognised")
        break
    if amount is None and not any(p.startswith("unit") for p in problems):
        if re.search(r"\d", work):
            problems.append("a number without a unit")
        elif dose and fold(dose):
            problems.append("no amount")

    if frequency and fold(frequency) and per_day is None and not once and not prn:
        problems.append("frequency not recognised")
    if amount is not None and amount.unit.per_day and per_day is None:
        once = False  # a rate (mg/h, mcg/kg/min) needs no frequency
    elif amount is not None and per_day is None and not once and _CONTINUOUS_RE.search(work):
        problems.append("an infusion without a rate")
    if amount is not None and (math.isinf(amount.high) or amount.high <= 0):
        problems.append("amount out of range")
        amount = None
    return Dose(
        text=text,
        amount=amount,
        route=found_route,
        per_day=per_day,
        days_per_week=days_per_week,
        once=once,
        prn=prn,
        duration_days=duration,
        weekdays=tuple(weekdays),
        max_daily=max_daily,
        max_per_day=max_per_day,
        concentration=concentration,
        problems=tuple(problems),
    )


# --------------------------------------------------------------------------------------------------
# Strength of a product, from its name or RxNorm's strength text

_LEADING_PACKAGE_RE = re.compile(r"^(?:\d+(?:\.\d+)?\s*(?:hr|ml|actuat|day|days)\s+)+")
_STRENGTH_TOKEN_RE = re.compile(rf"{_NUM}|/|[a-zµμ\[\]'{{}}%]+")
_VOLUME_WORDS = frozenset({"ml", "l"})
_TIME_WORDS = frozenset({"h", "hr", "hour", "d", "day", "24hr"})


def _is_number(token: str) -> bool:
    return token[0].isdigit() or (token[0] == "." and len(token) > 1)


def _strength(value: float, unit_text: str, per_ml_volume: float | None) -> Strength | None:
    try:
        unit = dose_unit(unit_text)
    except UnitError:
        return None
    if unit.kind in ("count", "volume") or unit.per_kg or unit.per_m2:
        return None
    if unit.per_day:
        return None if unit.per_ml else Strength(value * unit.factor, unit.kind, False, True)
    if unit.per_ml:
        return Strength(value * unit.factor, unit.kind, True)
    if per_ml_volume is not None:
        return Strength(value * unit.factor / per_ml_volume, unit.kind, True)
    return Strength(value * unit.factor, unit.kind, False)


@functools.lru_cache(maxsize=8192)
def parse_strengths(text: str) -> tuple[Strength, ...] | None:
    """The strengths a product name or an RxNorm strength states, in the order written:
    "5 MG / 325 MG" and "5/325 mg" -> (5 mg, 325 mg); "250 mg/5 mL" -> (50 mg per mL);
    "10 MG/ML" -> (10 mg per mL). None when the text states none, or one that cannot be read (a
    number without a unit, a unit that is not a strength): never a guess."""
    folded = _LEADING_PACKAGE_RE.sub("", fold(text))
    tokens = _STRENGTH_TOKEN_RE.findall(folded)
    values: list[Strength] = []
    i = 0
    while i < len(tokens):
        if not _is_number(tokens[i]):
            i += 1
            continue
        # One group: NUM [UNIT] (/ NUM [UNIT])* [/ [NUM] ML]
        items: list[tuple[float, str | None]] = []
        volume: float | None = None
        while i < len(tokens) and _is_number(tokens[i]):
            number = _float(tokens[i])
            follows = tokens[i + 1] if i + 1 < len(tokens) else "/"
            unit = None if _is_number(follows) or follows == "/" else follows
            if unit in _VOLUME_WORDS and items:
                # "250 mg/5 ml": the number before ml is the volume the amount is in
                volume = number * (1000 if unit == "l" else 1)
                i += 2
                break
            items.append((number, unit))
            i += 2 if unit is not None else 1
            if i < len(tokens) and tokens[i] == "/":
                nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
                if nxt in _VOLUME_WORDS:
                    volume = 1000.0 if nxt == "l" else 1.0
                    i += 2
                    break
                if nxt in _TIME_WORDS and items[-1][1] is not None:
                    # "25 mcg/hr": a rate (a patch)
                    items[-1] = (items[-1][0], f"{items[-1][1]}/{nxt}")
                    i += 2
                    break
                if nxt and _is_number(nxt):
                    i += 1
                    continue
            break
        last_unit = next((u for _, u in reversed(items) if u), None)
        for number, unit in items:
            unit = unit or last_unit
            if unit is None:
                return None
            found = _strength(number, unit, volume)
            if found is None:
                return None
            values.append(found)
    return tuple(values) or None

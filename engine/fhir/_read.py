"""Reading untrusted FHIR R4 JSON (already parsed) element by element, with the element's path.

Every reader checks the JSON type and the FHIR primitive's lexical form of what it reads and raises
`FhirError` naming the path. Messages name element paths, code systems and codes, never values that
could be about a person (names, free text, identifiers, dates).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["FhirError", "FhirIssue", "Node"]

# FHIR R4 primitive types, lexical forms as in the specification's datatypes page.
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_CODE = re.compile(r"^[^\s]+( [^\s]+)*$")
_DATE = re.compile(r"^([0-9]{4})(?:-(0[1-9]|1[0-2])(?:-(0[1-9]|[12][0-9]|3[01]))?)?$")
_DATETIME = re.compile(
    r"^([0-9]{4})(?:-(0[1-9]|1[0-2])(?:-(0[1-9]|[12][0-9]|3[01])"
    r"(?:T([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]+)?(Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$"
)
MAX_TEXT = 4096  # longer strings are refused: nothing we read is legitimately that long


@dataclass(frozen=True, slots=True)
class FhirIssue:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class FhirError(ValueError):
    """FHIR input that cannot be mapped: `path` names the element (FHIRPath-like), `problem` what
    is wrong; `issues` holds every problem found (the first few), the first being `path`/`problem`."""

    def __init__(self, path: str, problem: str, issues: tuple[FhirIssue, ...] = ()) -> None:
        self.path = path
        self.problem = problem
        self.issues = issues or (FhirIssue(path, problem),)
        super().__init__(f"{path}: {problem}")

    @classmethod
    def of(cls, issues: list[FhirIssue]) -> FhirError:
        return cls(issues[0].path, issues[0].problem, tuple(issues))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return "a value of another type"


class Node:
    """A JSON object at a path. `Node(obj, "Bundle.entry[0].resource")`. The path of a child is
    built only when an error names it: reading a valid resource allocates no path strings."""

    __slots__ = ("_key", "_parent", "_root", "value")

    def __init__(self, value: Any, root: str, parent: Node | None = None, key: str = "") -> None:
        self._root = root
        self._parent = parent
        self._key = key
        if not isinstance(value, Mapping):
            raise FhirError(self.path, f"expected an object, got {_kind(value)}")
        self.value: Mapping[str, Any] = value

    @property
    def path(self) -> str:
        if self._parent is None:
            return self._root
        return f"{self._parent.path}{self._key}"

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def _child(self, value: Any, key: str) -> Node:
        return Node(value, "", self, key)

    def error(self, key: str | None, problem: str) -> FhirError:
        return FhirError(self.at(key) if key else self.path, problem)

    def has(self, key: str) -> bool:
        return self.value.get(key) is not None

    def _present(self, key: str, required: bool) -> Any:
        value = self.value.get(key)
        if value is None:
            if required:
                raise self.error(key, "required")
            return None
        return value

    def obj(self, key: str, *, required: bool = False) -> Node | None:
        value = self._present(key, required)
        return None if value is None else self._child(value, f".{key}")

    def objs(self, key: str) -> Iterator[Node]:
        """The objects of an array element (0..*); a lone object where an array belongs is refused,
        as FHIR JSON requires arrays for repeating elements."""
        value = self.value.get(key)
        if value is None:
            return
        if not isinstance(value, list):
            raise self.error(key, f"expected an array, got {_kind(value)}")
        for i, item in enumerate(value):
            yield self._child(item, f".{key}[{i}]")

    def strings(self, key: str) -> list[str]:
        value = self.value.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"expected an array, got {_kind(value)}")
        return [_string(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value)]

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self._present(key, required)
        if value is None:
            return None
        if type(value) is str and 0 < len(value) <= MAX_TEXT and value.strip() and "\x00" not in value:
            return value  # the common case, checked without building the path
        return _string(value, self.at(key))

    def code(self, key: str, allowed: frozenset[str] | None = None, *, required: bool = False) -> str | None:
        value = self._present(key, required)
        if value is None:
            return None
        if type(value) is str and (allowed is None or value in allowed) and len(value) <= 256 and _CODE.match(value):
            return value
        return code_value(value, self.at(key), allowed)

    def codes(self, key: str, allowed: frozenset[str]) -> list[str]:
        value = self.value.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"expected an array, got {_kind(value)}")
        return [code_value(item, f"{self.at(key)}[{i}]", allowed) for i, item in enumerate(value)]

    def boolean(self, key: str) -> bool | None:
        value = self.value.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_kind(value)}")
        return value

    def decimal(self, key: str, *, required: bool = False) -> float | None:
        value = self._present(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {_kind(value)}")
        return float(value)

    def id(self, *, required: bool = False) -> str | None:
        value = self._present("id", required)
        if value is None:
            return None
        if not isinstance(value, str) or not _ID.match(value):
            raise self.error("id", "not a FHIR id (1 to 64 of A-Z a-z 0-9 - .)")
        return value

    def date(self, key: str) -> tuple[int, int | None, int | None] | None:
        """A FHIR `date`: (year, month or None, day or None)."""
        text = self.string(key)
        if text is None:
            return None
        match = _DATE.match(text)
        if not match:
            raise self.error(key, "not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")
        year, month, day = (int(g) if g else None for g in match.groups())
        assert year is not None
        if day is not None:
            try:
                date(year, month or 1, day)
            except ValueError:
                raise self.error(key, "not a calendar date") from None
        return year, month, day

    def datetime(self, key: str) -> datetime | None:
        """A FHIR `dateTime` or `instant` as a UTC time; a partial one (year, month or day only) is
        taken at its start, midnight UTC."""
        text = self.string(key)
        if text is None:
            return None
        match = _DATETIME.match(text)
        if not match:
            raise self.error(key, "not a FHIR dateTime")
        year, month, day, hour = match.group(1, 2, 3, 4)
        try:
            if hour is None:
                return datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
            return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            raise self.error(key, "not a calendar date and time") from None


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FhirError(path, f"expected a string, got {_kind(value)}")
    if not value.strip():
        raise FhirError(path, "empty string (FHIR strings hold at least one non-whitespace character)")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise FhirError(path, f"longer than {MAX_TEXT} characters or holds NUL")
    return value


def code_value(value: Any, path: str, allowed: frozenset[str] | None = None) -> str:
    if not isinstance(value, str):
        raise FhirError(path, f"expected a code (a string), got {_kind(value)}")
    if not _CODE.match(value) or len(value) > 256:
        raise FhirError(path, "not a FHIR code (no leading, trailing or double whitespace)")
    if allowed is not None and value not in allowed:
        # The allowed codes are the specification's and safe to name; the value sent is not echoed,
        # since a wrong value may be anything (a name typed into the wrong field).
        raise FhirError(path, f"not in the required value set ({', '.join(sorted(allowed))})")
    return value

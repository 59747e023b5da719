"""Validation helpers shared by hook requests and feedback.

Every problem is a (path, message) pair. The path is where in the JSON body the problem is, written
as `context.draftOrders.entry[2].resource.id`; the message says what is wrong with it in fixed words.
Neither ever contains a value from the body: values are patient data, tokens or free text, and
error bodies end up in the client's logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

__all__ = ["MAX_PROBLEMS", "HookRequestError", "Problem", "Problems"]

# A body can be wrong in thousands of places (a Bundle of 5,000 bad entries); the first fifty say
# what to fix, and the answer stays small.
MAX_PROBLEMS = 50

# FHIR R4 `id` datatype: [A-Za-z0-9\-\.]{1,64} (https://hl7.org/fhir/R4/datatypes.html#id).
FHIR_ID = re.compile(r"[A-Za-z0-9.\-]{1,64}")
# A relative literal reference, `Type/id`, as CDS Hooks uses for userId and selections.
RELATIVE_REFERENCE = re.compile(r"([A-Z][A-Za-z]{0,63})/([A-Za-z0-9.\-]{1,64})")


class Problem(NamedTuple):
    path: str  # "" is the body itself
    message: str


class HookRequestError(ValueError):
    """The body is not a valid CDS Hooks document; `problems` says where and why (no values)."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems: list[Problem] = [Problem(p, m) for p, m in problems]
        if not self.problems:
            self.problems = [Problem("", "is not a valid CDS Hooks document")]
        super().__init__("; ".join(f"{p.path or '(body)'}: {p.message}" for p in self.problems))


class Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.more = 0

    def add(self, path: str, message: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(path, message))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.more:
            self.items.append(Problem("", f"and {self.more} more problems"))
        if self.items:
            raise HookRequestError(self.items)


def at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def idx(path: str, i: int) -> str:
    return f"{path}[{i}]"


def has_control(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def text(
    problems: Problems,
    obj: dict[str, Any],
    key: str,
    path: str,
    *,
    required: bool,
    limit: int,
    pattern: re.Pattern[str] | None = None,
    what: str = "",
) -> str | None:
    """A string member: present when required, a non-empty JSON string (CDS Hooks 2.0, Use of JSON:
    "JSON elements SHALL NOT be empty"), at most `limit` characters, no control characters, and of
    `pattern` when given (`what` names the expected form in the message)."""
    where = at(path, key)
    if key not in obj:
        if required:
            problems.add(where, "is required")
        return None
    value = obj[key]
    if not isinstance(value, str):
        problems.add(where, "must be a string")
        return None
    if not value:
        problems.add(where, "must not be empty (omit an optional member instead)")
        return None
    if len(value) > limit:
        problems.add(where, f"is longer than {limit} characters")
        return None
    if has_control(value):
        problems.add(where, "contains control characters")
        return None
    if pattern is not None and not pattern.fullmatch(value):
        problems.add(where, f"must be {what}" if what else "is not of the expected form")
        return None
    return value


def obj_member(
    problems: Problems, obj: dict[str, Any], key: str, path: str, *, required: bool
) -> dict[str, Any] | None:
    where = at(path, key)
    if key not in obj:
        if required:
            problems.add(where, "is required")
        return None
    value = obj[key]
    if not isinstance(value, dict):
        problems.add(where, "must be a JSON object")
        return None
    return value


def array_member(
    problems: Problems, obj: dict[str, Any], key: str, path: str, *, required: bool, limit: int
) -> Sequence[Any] | None:
    where = at(path, key)
    if key not in obj:
        if required:
            problems.add(where, "is required")
        return None
    value = obj[key]
    if not isinstance(value, list):
        problems.add(where, "must be a JSON array")
        return None
    if not value:
        problems.add(where, "must not be empty (omit an optional member instead)")
        return None
    if len(value) > limit:
        problems.add(where, f"has more than {limit} items")
        return None
    return value

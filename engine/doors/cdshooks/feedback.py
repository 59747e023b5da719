"""Feedback (`POST {baseUrl}/cds-services/{id}/feedback`, CDS Hooks 2.0 §Feedback), checked.

The body is `{"feedback": [...]}`; each item has `card` (the card's uuid), `outcome` (`accepted` or
`overridden`), `acceptedSuggestions` (required when accepted: `[{"id": suggestion uuid}]`),
`overrideReason` (`reason`, a Coding, and/or `userComment`: at least one, invariant cds-fb-3) and
`outcomeTimestamp` (RFC 3339 §5.6; any offset is accepted and converted to UTC).

Judgement calls:
- `acceptedSuggestions` with `overridden`, or `overrideReason` with `accepted`, is refused: the
  specification has a card either accepted (through suggestions) or overridden, never both.
- An override reason from our code system must be one of its codes; a reason from another system
  is accepted as OTHER_REASON, because §Card Attributes lets a client "augment the override reasons
  presented to the user with its own reasons" (the Coding is kept for the record).
- `overridden` without a reason is valid CDS Hooks ("Overridden guidance"): `reason_name` is then
  None, and the caller decides what its store records.
- `userComment`: at most 1000 characters (the limit of RecordAlertFeedback's comment); tabs and line
  breaks become spaces, any other control character is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from engine.doors.cdshooks._checks import HookRequestError, Problems, at, idx, obj_member, text
from engine.doors.cdshooks.cards import OVERRIDE_REASONS, override_reason_system

__all__ = ["Feedback", "HookRequestError", "OverrideReason", "ReasonCoding", "override_reason_name", "parse_feedback"]

MAX_FEEDBACK = 100
MAX_COMMENT = 1000
_CARD_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_RFC3339 = re.compile(
    # [0-9], not \d: Python's \d also matches other scripts' digits, which int() would then read.
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


@dataclass(frozen=True, slots=True)
class ReasonCoding:
    system: str
    code: str
    display: str | None = None


@dataclass(frozen=True, slots=True)
class OverrideReason:
    reason: ReasonCoding | None
    user_comment: str | None


@dataclass(frozen=True, slots=True)
class Feedback:
    card: str  # the card uuid: an alert id
    outcome: str  # "accepted" | "overridden"
    outcome_timestamp: datetime  # UTC
    accepted_suggestions: tuple[str, ...] = ()
    override_reason: OverrideReason | None = None
    # praneya.safety.v1.OverrideReason name, for overridden cards with a reason; else None.
    reason_name: str | None = None


def override_reason_name(coding: ReasonCoding, *, source_url: str) -> str | None:
    """Our coded reason → its OverrideReason name; a client's own reason → OTHER_REASON; a code
    our system does not have → None (refused by parse_feedback)."""
    if coding.system != override_reason_system(source_url):
        return "OTHER_REASON"
    return coding.code if coding.code in OVERRIDE_REASONS else None


def parse_feedback(body: Any, *, source_url: str) -> list[Feedback]:
    """The feedback items of `body`; HookRequestError lists every problem (paths, never values).
    `source_url` is the same service base URL the cards were made with (it names our code system)."""
    if not isinstance(body, dict):
        raise HookRequestError([("", "must be a JSON object")])
    problems = Problems()
    items = body.get("feedback")
    if "feedback" not in body:
        problems.add("feedback", "is required")
    elif not isinstance(items, list):
        problems.add("feedback", "must be a JSON array")
    elif not items:
        problems.add("feedback", "must not be empty")
    elif len(items) > MAX_FEEDBACK:
        problems.add("feedback", f"has more than {MAX_FEEDBACK} items")
    else:
        out = [_item(problems, item, idx("feedback", i), source_url) for i, item in enumerate(items)]
        problems.raise_if_any()
        return [f for f in out if f is not None]
    problems.raise_if_any()
    return []  # unreachable: a problem was added


def _item(problems: Problems, item: Any, path: str, source_url: str) -> Feedback | None:
    if not isinstance(item, dict):
        problems.add(path, "must be a JSON object")
        return None
    before = len(problems.items)
    card = text(problems, item, "card", path, required=True, limit=128, pattern=_CARD_ID, what="a card uuid")
    outcome = text(problems, item, "outcome", path, required=True, limit=16)
    if outcome is not None and outcome not in ("accepted", "overridden"):
        problems.add(at(path, "outcome"), "must be accepted or overridden")
    stamp = _timestamp(problems, item, at(path, "outcomeTimestamp"))

    accepted: tuple[str, ...] = ()
    if "acceptedSuggestions" in item:
        if outcome == "overridden":
            problems.add(at(path, "acceptedSuggestions"), "is only for an accepted outcome")
        else:
            accepted = _accepted(problems, item["acceptedSuggestions"], at(path, "acceptedSuggestions"))
    elif outcome == "accepted":
        problems.add(at(path, "acceptedSuggestions"), "is required when the outcome is accepted")

    reason: OverrideReason | None = None
    name: str | None = None
    if "overrideReason" in item:
        if outcome == "accepted":
            problems.add(at(path, "overrideReason"), "is only for an overridden outcome")
        else:
            reason, name = _override_reason(problems, item, path, source_url)
    if len(problems.items) > before or card is None or outcome is None or stamp is None:
        return None
    return Feedback(card, outcome, stamp, accepted, reason, name)


def _accepted(problems: Problems, value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        problems.add(path, "must be a JSON array")
        return ()
    if not value:
        problems.add(path, "must not be empty")
        return ()
    if len(value) > MAX_FEEDBACK:
        problems.add(path, f"has more than {MAX_FEEDBACK} items")
        return ()
    ids: list[str] = []
    for i, entry in enumerate(value):
        where = idx(path, i)
        if not isinstance(entry, dict):
            problems.add(where, "must be a JSON object")
            continue
        sid = text(problems, entry, "id", where, required=True, limit=128, pattern=_CARD_ID, what="a suggestion uuid")
        if sid is None:
            continue
        if sid in ids:
            problems.add(at(where, "id"), "repeats an earlier accepted suggestion")
        ids.append(sid)
    return tuple(ids)


def _override_reason(
    problems: Problems, item: Mapping[str, Any], path: str, source_url: str
) -> tuple[OverrideReason | None, str | None]:
    p = at(path, "overrideReason")
    value = obj_member(problems, dict(item), "overrideReason", path, required=True)
    if value is None:
        return None, None
    before = len(problems.items)
    coding: ReasonCoding | None = None
    name: str | None = None
    raw = obj_member(problems, value, "reason", p, required=False)
    if raw is not None:
        rp = at(p, "reason")
        system = text(problems, raw, "system", rp, required=True, limit=512)
        code = text(problems, raw, "code", rp, required=True, limit=64)
        display = text(problems, raw, "display", rp, required=False, limit=256)
        if system is not None and code is not None:
            coding = ReasonCoding(system, code, display)
            name = override_reason_name(coding, source_url=source_url)
            if name is None:
                problems.add(at(rp, "code"), "is not a code of this service's override reasons")
    comment = _comment(problems, value, at(p, "userComment"))
    if "reason" not in value and "userComment" not in value:
        problems.add(p, "must have a reason, a userComment, or both")
    if len(problems.items) > before:
        return None, None
    return OverrideReason(coding, comment), name


def _comment(problems: Problems, value: Mapping[str, Any], path: str) -> str | None:
    if "userComment" not in value:
        return None
    raw = value["userComment"]
    if not isinstance(raw, str):
        problems.add(path, "must be a string")
        return None
    flat = raw.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace("\t", " ").strip()
    if not flat:
        problems.add(path, "must not be empty (omit it instead)")
        return None
    if len(flat) > MAX_COMMENT:
        problems.add(path, f"is longer than {MAX_COMMENT} characters")
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in flat):
        problems.add(path, "contains control characters")
        return None
    return flat


def _timestamp(problems: Problems, item: Mapping[str, Any], path: str) -> datetime | None:
    if "outcomeTimestamp" not in item:
        problems.add(path, "is required")
        return None
    raw = item["outcomeTimestamp"]
    m = _RFC3339.fullmatch(raw) if isinstance(raw, str) else None
    if m is None:
        problems.add(path, "must be an RFC 3339 date-time, e.g. 2021-12-11T10:05:31Z")
        return None
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    try:
        offset = timedelta(0) if zulu else (1 if sign == "+" else -1) * timedelta(hours=int(oh), minutes=int(om))
        stamp = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((frac or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
        return stamp.astimezone(UTC)
    except (ValueError, OverflowError):
        problems.add(path, "is not a valid date and time")
        return None

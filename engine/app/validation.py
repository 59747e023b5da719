"""Checks of caller-supplied values that every door applies the same way; errors name the field and
never echo the value."""

from __future__ import annotations

import re
import unicodedata

from engine.app.failures import invalid

__all__ = ["ID", "MAX_CODE", "MAX_DISPLAY", "MAX_REASON", "MAX_TEXT", "check_id", "check_reason", "check_text",
           "visible_characters"]

MAX_TEXT = 200
MAX_REASON = 1000
MAX_CODE = 40
MAX_DISPLAY = 500
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
_ID = ID


def check_id(field: str, value: str) -> str:
    if not value:
        raise invalid(field, "is required")
    if not _ID.match(value):
        raise invalid(field, "is not a valid id (letters, digits, and _.:@- up to 128 characters)")
    return value


# A break-the-glass reason (and the reason for ending a grant early) is read by a reviewer: it needs
# real text. 8 visible characters let "overdose", "code blue" or "unresponsive" through and refuse
# "x", "n/a", "test", and text made of zero-width, format or blank characters only.
MIN_REASON_VISIBLE = 8
# Letters and symbols that draw nothing (Hangul fillers, the blank braille pattern): category says
# letter or symbol, the screen says nothing.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def visible_characters(text: str) -> int:
    """How many characters of `text` a reader sees: after NFKC, neither control, format, private-use,
    unassigned or surrogate (C*), nor separators and white space (Z*), nor combining marks on their
    own (Mn, Me), nor blank glyphs."""
    return sum(
        1
        for ch in unicodedata.normalize("NFKC", text)
        if not ch.isspace()
        and unicodedata.category(ch)[0] not in "CZ"
        and unicodedata.category(ch) not in ("Mn", "Me")
        and ch not in _BLANK_GLYPHS
    )


def check_reason(field: str, value: str) -> str:
    reason = check_text(field, value, required=True, limit=MAX_REASON)
    assert reason is not None
    if visible_characters(reason) < MIN_REASON_VISIBLE:
        raise invalid(
            field,
            f"needs at least {MIN_REASON_VISIBLE} visible characters (invisible, format and space characters"
            " do not count)",
        )
    return reason


def check_text(field: str, value: str, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    value = value.strip()
    if not value:
        if required:
            raise invalid(field, "is required")
        return None
    if len(value) > limit:
        raise invalid(field, f"is longer than {limit} characters")
    if any(ord(c) < 32 for c in value):
        raise invalid(field, "contains control characters")
    return value

"""engine.logic against JsonLogic's official suite and against json-logic-qubit, deviations included.

The suite is read from ../shared beside the project root at test time (never copied into the repo);
every known deviation lives in tests/conformance_exceptions.yaml and is checked here as such.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import json_logic
import pytest
import yaml

from engine import logic as engine_logic
from engine.logic import apply

SUITE_PATH = Path(__file__).resolve().parents[2] / "shared/conformance/jsonlogic/tests.json"
EXCEPTIONS_PATH = Path(__file__).resolve().parent / "conformance_exceptions.yaml"
EXCEPTIONS: dict[str, Any] = yaml.safe_load(EXCEPTIONS_PATH.read_text(encoding="utf-8"))


def strictly_equal(a: Any, b: Any) -> bool:
    """Equal values of equal JSON types: 1, 1.0 and True are three different answers."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strictly_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _slug(section: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", section.lstrip("#").strip().lower()).strip("-")[:40]


def load_suite() -> list[tuple[str, Any, Any, Any]]:
    # Strings in the file are headings: "# ..." for sections, bare ones for sub-sections; we number
    # cases within the nearest heading so an id reads like "substring-3".
    if not SUITE_PATH.is_file():
        return []
    entries = json.loads(SUITE_PATH.read_text(encoding="utf-8"))
    cases: list[tuple[str, Any, Any, Any]] = []
    section, index = "start", 0
    for entry in entries:
        if isinstance(entry, str):
            section, index = _slug(entry), 0
            continue
        index += 1
        rule, data, expected = entry
        cases.append((f"{section}-{index}", rule, data, expected))
    return cases


SUITE = load_suite()
SUITE_EXCEPTIONS: dict[str, Any] = {e["id"]: e for e in EXCEPTIONS["suite"] or []}
skip_without_suite = pytest.mark.skipif(
    not SUITE, reason=f"JsonLogic conformance suite not found at {SUITE_PATH} (../shared beside the repo)"
)


def qubit(rule: Any, data: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # qubit warns about its own non-core operators
        return json_logic.jsonLogic(rule, data)


# --- the official suite -----------------------------------------------------------------------------


@skip_without_suite
def test_suite_is_the_expected_one() -> None:
    ids = [case[0] for case in SUITE]
    assert len(SUITE) == 277
    assert len(set(ids)) == len(ids), "test ids must be unique"


@skip_without_suite
@pytest.mark.parametrize(
    ("rule", "data", "expected"),
    [pytest.param(rule, data, expected, id=case_id) for case_id, rule, data, expected in SUITE]
    or [pytest.param(None, None, None, id="suite-missing")],
)
def test_official_suite(request: pytest.FixtureRequest, rule: Any, data: Any, expected: Any) -> None:
    case_id = request.node.callspec.id
    exception = SUITE_EXCEPTIONS.get(case_id)
    if exception is not None:
        expected = exception["we"]["returns"]
    assert strictly_equal(apply(rule, data), expected)


@skip_without_suite
def test_package_fails_the_suite_only_where_listed() -> None:
    # If json-logic-qubit (the reference semantics) disagreed with the suite, the disagreement would
    # have to be decided and written down; this keeps that list honest.
    failing = []
    for case_id, rule, data, expected in SUITE:
        try:
            ok = strictly_equal(qubit(rule, data), expected)
        except Exception:  # noqa: BLE001 - any failure of the reference counts as a disagreement
            ok = False
        if not ok:
            failing.append(case_id)
    listed = sorted(i for i, e in SUITE_EXCEPTIONS.items() if "package_fails" in e)
    assert sorted(failing) == listed


def test_suite_exceptions_name_real_cases() -> None:
    if not SUITE:
        pytest.skip(f"JsonLogic conformance suite not found at {SUITE_PATH}")
    known = {case[0] for case in SUITE}
    assert set(SUITE_EXCEPTIONS) <= known
    for entry in SUITE_EXCEPTIONS.values():
        assert entry.get("reason"), entry


# --- documented deviations from json-logic-qubit ----------------------------------------------------


def _expand(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__range__"}:
            return list(range(value["__range__"]))
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _case(entry: dict[str, Any]) -> tuple[Any, Any]:
    build = entry.get("build")
    if build is None:
        return entry["rule"], _expand(entry.get("data"))
    if "deep" in build:
        operator, depth, leaf = build["deep"]
        rule = leaf
        for _ in range(depth):
            rule = {operator: rule}
        return rule, None
    operator, width, leaf = build["wide"]
    return {operator: [leaf] * width}, None


def _check(outcome: dict[str, Any], run: Any, caplog: pytest.LogCaptureFixture) -> None:
    if "raises" in outcome:
        with pytest.raises(Exception) as info:  # the class is checked by name below
            run()
        assert type(info.value).__name__ == outcome["raises"]
        if "message_excludes" in outcome:
            assert outcome["message_excludes"] not in str(info.value)
            assert info.value.__cause__ is None and info.value.__suppress_context__
        return
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        result = run()
    if "returns" in outcome:
        assert strictly_equal(result, outcome["returns"]), result
    else:
        assert outcome == {"completes": True}
    if outcome.get("writes_log") is False:
        assert caplog.records == []


PACKAGE_EXCEPTIONS = EXCEPTIONS["package"]


def test_package_exceptions_are_well_formed() -> None:
    ids = [e["id"] for e in PACKAGE_EXCEPTIONS]
    assert len(set(ids)) == len(ids)
    for entry in PACKAGE_EXCEPTIONS:
        assert entry.get("reason") and entry.get("we") and entry.get("package"), entry["id"]
        assert ("rule" in entry) != ("build" in entry), entry["id"]


@pytest.mark.parametrize("entry", PACKAGE_EXCEPTIONS, ids=[e["id"] for e in PACKAGE_EXCEPTIONS])
def test_documented_deviation_ours(entry: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    rule, data = _case(entry)
    _check(entry["we"], lambda: apply(rule, data), caplog)


@pytest.mark.parametrize("entry", PACKAGE_EXCEPTIONS, ids=[e["id"] for e in PACKAGE_EXCEPTIONS])
def test_documented_deviation_package(entry: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    # The other half: the package really behaves as written, so an upgrade that changes it shows.
    rule, data = _case(entry)
    _check(entry["package"], lambda: qubit(rule, data), caplog)


def test_error_classes_in_exceptions_file_exist() -> None:
    for entry in PACKAGE_EXCEPTIONS:
        name = entry["we"].get("raises")
        if name is not None:
            assert issubclass(getattr(engine_logic, name), engine_logic.LogicError)

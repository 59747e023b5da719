"""Property tests: random JsonLogic trees agree with json-logic-qubit, and three-valued mode is sound.

The generator stays inside the allow-listed operators with valid argument counts, and away from the
documented deviations in tests/conformance_exceptions.yaml (falsy array elements inside
map/filter/..., logic as reduce's initial value), which are tested there case by case.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import json_logic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.logic import (
    ConditionStatus,
    LogicError,
    apply,
    compile_logic,
    evaluate_condition,
)

PATHS = ["", "a", "b", "c", "x", "a.a", "a.b", "b.0", "0", "1", "-1", "current", "accumulator", "current.a"]
KEYS = ["a", "b", "c"]

# Scalars as JSON gives them; includes the troublesome ones: 0, "", "1", "2.5", true, null.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, -2.5, 1.0, 3.25]),
    st.sampled_from(["", "a", "b", "1", "2.5", "abc", "a.b"]),
)
truthy_scalars = scalars.filter(bool)
# Arrays a map/filter/... will iterate: truthy elements only (see the module docstring).
elements = st.one_of(truthy_scalars, st.dictionaries(st.sampled_from(KEYS), scalars, min_size=1, max_size=2))
arrays = st.lists(elements, max_size=4)
data_values = st.one_of(
    scalars,
    arrays,
    st.dictionaries(st.sampled_from(KEYS), st.one_of(scalars, arrays), max_size=3),
)
datasets = st.dictionaries(st.sampled_from([*KEYS, "x"]), data_values, max_size=4)

EAGER_ARITY: dict[str, tuple[int, int]] = {
    "==": (2, 2),
    "===": (2, 2),
    "!=": (2, 2),
    "!==": (2, 2),
    ">": (2, 2),
    ">=": (2, 2),
    "<": (2, 3),
    "<=": (2, 3),
    "!": (1, 1),
    "!!": (1, 1),
    "+": (0, 3),
    "-": (1, 2),
    "*": (0, 3),
    "/": (2, 2),
    "%": (2, 2),
    "min": (0, 3),
    "max": (0, 3),
    "in": (2, 2),
    "cat": (0, 3),
    "substr": (2, 3),
    "merge": (0, 3),
    "log": (1, 1),
    "and": (0, 3),
    "or": (0, 3),
    "if": (0, 5),
    "?:": (3, 3),
}


def var_rules() -> st.SearchStrategy[Any]:
    path = st.sampled_from(PATHS)
    return st.one_of(
        path.map(lambda p: {"var": p}),
        st.tuples(path, scalars).map(lambda t: {"var": [t[0], t[1]]}),
        st.just({"var": []}),
    )


def leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        scalars,
        var_rules(),
        st.lists(st.sampled_from(PATHS), max_size=3).map(lambda names: {"missing": names}),
        st.tuples(st.integers(0, 2), st.lists(st.sampled_from(PATHS), max_size=3)).map(
            lambda t: {"missing_some": [t[0], t[1]]}
        ),
        st.sampled_from([{}, {"p": 1, "q": 2}]),
    )


def rules(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return leaves()
    child = rules(depth - 1)

    def eager(op: str) -> st.SearchStrategy[Any]:
        low, high = EAGER_ARITY[op]
        return st.lists(child, min_size=low, max_size=high).map(lambda args: {op: args})

    # A literal array in a rule holds no one-key objects: those are operators, not data.
    scoped_array = st.one_of(
        st.sampled_from(KEYS).map(lambda k: {"var": k}), st.lists(truthy_scalars, max_size=4)
    )
    scoped = st.one_of(
        st.tuples(st.sampled_from(["map", "filter", "all", "none", "some"]), scoped_array, child).map(
            lambda t: {t[0]: [t[1], t[2]]}
        ),
        st.tuples(scoped_array, child, scalars).map(lambda t: {"reduce": [t[0], t[1], t[2]]}),
        st.tuples(scoped_array, child).map(lambda t: {"reduce": [t[0], t[1]]}),
    )
    operators = st.sampled_from(sorted(EAGER_ARITY)).flatmap(eager)
    # one_of picks branches about evenly: repeat the operator branch so trees are not mostly leaves.
    return st.one_of(
        leaves(),
        operators,
        operators,
        operators,
        scoped,
        st.lists(child, max_size=3),
        child.map(lambda c: {"var": [c]}),
    )


def same(a: Any, b: Any) -> bool:
    """Equal values of the same JSON type, recursively; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def reference(rule: Any, data: Any) -> tuple[bool, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return True, json_logic.jsonLogic(rule, data)
        except Exception:  # noqa: BLE001 - whatever the reference raises, it did not return
            return False, None


PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


@PROPERTY_SETTINGS
@given(rule=rules(5), data=datasets)
def test_agrees_with_json_logic_qubit(rule: Any, data: Any) -> None:
    returned, expected = reference(rule, data)
    try:
        ours = apply(rule, data)
    except LogicError:
        # Allowed only where the reference fails too: we may refuse what it crashes on, never more.
        assert not returned, f"qubit returned {expected!r}, we raised"
        return
    if returned:
        assert same(ours, expected), f"qubit {expected!r} != ours {ours!r}"


@PROPERTY_SETTINGS
@given(rule=rules(4), data=datasets)
def test_three_valued_outcome_is_never_contradicted_by_the_data(rule: Any, data: Any) -> None:
    # When three-valued mode decides (FIRED / NOT_FIRED) despite missing data, the decision must be
    # the one plain evaluation reaches on the data as it is: missing data changed nothing.
    try:
        compiled = compile_logic(rule)
        outcome = evaluate_condition(compiled, data)
        plain = compiled.evaluate(data)
    except LogicError:
        return
    if outcome.status is ConditionStatus.INSUFFICIENT_DATA:
        assert outcome.missing
    else:
        assert outcome.missing == ()
        assert (outcome.status is ConditionStatus.FIRED) == bool(plain)


@PROPERTY_SETTINGS
@given(rule=rules(4), data=datasets)
def test_compiled_rule_is_reusable(rule: Any, data: Any) -> None:
    try:
        compiled = compile_logic(rule)
        first = compiled.evaluate(data)
    except LogicError:
        return
    assert same(compiled.evaluate(data), first)

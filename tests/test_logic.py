"""engine.logic: refusals, limits, three-valued conditions, static analysis."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest

from engine.logic import (
    COMPUTED_PATH,
    OPERATORS,
    CompiledLogic,
    ConditionOutcome,
    ConditionStatus,
    ForbiddenOperator,
    InvalidLogic,
    LogicError,
    LogicEvaluationError,
    LogicLimitExceeded,
    LogicLimits,
    UnknownOperator,
    apply,
    compile_logic,
    evaluate_condition,
    operators_used,
    unguarded_comparisons,
    variables_used,
)
from tests.calls import count_calls

FIRED = ConditionStatus.FIRED
NOT_FIRED = ConditionStatus.NOT_FIRED
INSUFFICIENT = ConditionStatus.INSUFFICIENT_DATA


def nest(operator: str, levels: int, leaf: Any) -> Any:
    rule = leaf
    for _ in range(levels):
        rule = {operator: rule}
    return rule


def nest_lists(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# --- allow-list -------------------------------------------------------------------------------------


def test_operator_allow_list_is_jsonlogic_core_without_method() -> None:
    assert "method" not in OPERATORS
    assert {"map", "filter", "reduce", "all", "none", "some", "missing_some", "?:", "log"} <= OPERATORS
    assert len(OPERATORS) == 35


@pytest.mark.parametrize(
    "rule",
    [
        {"method": ["abc", "upper"]},
        {"method": [{"var": "x"}, "__class__"]},
        {"and": [True, {"if": [False, {"method": ["a", "upper"]}, 1]}]},
        {"map": [[1], {"method": [{"var": ""}, "bit_length"]}]},
    ],
)
def test_method_is_refused_wherever_it_appears(rule: Any) -> None:
    with pytest.raises(ForbiddenOperator, match=r"'method'.*forbidden.*arbitrary Python") as info:
        compile_logic(rule)
    assert info.value.operator == "method"
    assert isinstance(info.value, UnknownOperator)
    with pytest.raises(ForbiddenOperator):
        apply(rule, {"x": "abc"})


@pytest.mark.parametrize("operator", ["count", "datetime.date", "frobnicate", "", "Var", "__import__"])
def test_unknown_operator_is_refused_by_name(operator: str) -> None:
    with pytest.raises(UnknownOperator, match="unknown JsonLogic operator") as info:
        compile_logic({"and": [True, {operator: [1]}]})
    assert info.value.operator == operator
    assert repr(operator) in str(info.value)
    assert "$.and[1]" in str(info.value)  # where in the rule


def test_errors_are_value_errors() -> None:
    for cls in (InvalidLogic, UnknownOperator, ForbiddenOperator, LogicLimitExceeded, LogicEvaluationError):
        assert issubclass(cls, LogicError)
    assert issubclass(LogicError, ValueError)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"<": [1]}, r"'<' at \$ takes 2\.\.3 arguments, got 1"),
        ({"!": [1, 2]}, r"'!' at \$ takes 1 arguments, got 2"),
        ({"?:": [1, 2]}, r"takes 3 arguments"),
        ({"var": ["a", 1, 2]}, r"takes 0\.\.2 arguments"),
        ({"map": [[1]]}, r"'map' at \$ takes 2 arguments"),
        ({"==": [1, datetime.date(2024, 1, 1)]}, r"date, which is not a JSON value"),
        ({"==": [1, float("nan")]}, r"non-finite"),
        ({"==": [1, {"a": 1, 2: 3}]}, r"key .* must be a string"),
        ({"in": ["x", {1, 2}]}, r"set, which is not a JSON value"),
    ],
)
def test_malformed_rules_are_refused_at_compile_time(rule: Any, message: str) -> None:
    with pytest.raises(InvalidLogic, match=message):
        compile_logic(rule)


def test_operand_errors_are_wrapped_without_values() -> None:
    with pytest.raises(LogicEvaluationError, match=r"'\+' failed on its operands \(ValueError\)") as info:
        apply({"+": [{"var": "allergen"}, 1]}, {"allergen": "penicillin"})
    assert "penicillin" not in str(info.value)
    with pytest.raises(LogicEvaluationError, match="ZeroDivisionError"):
        apply({"/": [1, 0]})
    with pytest.raises(LogicEvaluationError, match="'in'"):
        apply({"in": [[1], "abc"]})


# --- limits -----------------------------------------------------------------------------------------


def test_depth_limit_is_64_levels() -> None:
    assert apply(nest("!!", 63, True)) is True
    with pytest.raises(LogicLimitExceeded, match="deeper than 64 levels"):
        compile_logic(nest("!!", 64, True))
    # arrays count as levels too, and literal objects
    with pytest.raises(LogicLimitExceeded):
        compile_logic(nest("!!", 40, nest_lists(30)))
    deep_literal: Any = {"a": 1, "b": 2}
    for _ in range(70):
        deep_literal = {"a": deep_literal, "b": 0}
    with pytest.raises(LogicLimitExceeded):
        compile_logic({"==": [1, deep_literal]})


def test_absurd_nesting_fails_cleanly_not_with_recursion_error() -> None:
    rule: Any = True
    for _ in range(100_000):
        rule = [rule]
    with pytest.raises(LogicLimitExceeded):
        apply(rule)
    with pytest.raises(LogicLimitExceeded):
        operators_used(rule)


def test_node_count_limit() -> None:
    assert compile_logic({"+": [1] * 4999}).node_count == 5000
    with pytest.raises(LogicLimitExceeded, match="more than 5000 nodes"):
        compile_logic({"+": [1] * 5000})
    with pytest.raises(LogicLimitExceeded, match="more than 10 nodes"):
        compile_logic({"in": ["x", list("abcdefghij")]}, limits=LogicLimits(max_nodes=10))


def _refused(rule: Any, data: Any, match: str | None = None) -> None:
    with pytest.raises(LogicLimitExceeded, match=match):
        apply(rule, data)


class _Counted(list[Any]):
    """A list that counts the elements taken from it (the engine may be compiled: its own calls are
    not Python calls a profiler sees, but taking an element from this list is)."""

    def __init__(self, items: Any) -> None:
        super().__init__(items)
        self.taken = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            self.taken += 1
            yield item


def test_huge_map_is_bounded_by_the_step_budget() -> None:
    rule = {"map": [{"var": "xs"}, {"+": [{"var": ""}, 1]}]}
    small = _Counted(range(20_000))
    assert apply(rule, {"xs": small})[-1] == 20_000 and small.taken == 20_000  # control: all of them
    # Work counted, not timed: the budget stops after ~25,000 elements, so refusing a million takes
    # no more of them than mapping 20,000 in full (each element costs the same steps in both).
    huge = _Counted(range(1_000_000))
    _refused(rule, {"xs": huge}, "step budget")
    assert 20_000 < huge.taken < 2 * small.taken


def test_nested_map_pays_for_inner_iterations() -> None:
    rule = {"some": [{"var": "xs"}, {"some": [{"var": "ys"}, {"==": [{"var": ""}, -1]}]}]}
    compiled = compile_logic(rule, limits=LogicLimits(max_steps=1_000))
    items = [{"ys": list(range(100))} for _ in range(100)]
    with pytest.raises(LogicLimitExceeded):
        compiled.evaluate({"xs": items})
    with pytest.raises(LogicLimitExceeded):
        evaluate_condition(compiled, {"xs": items})


@pytest.mark.parametrize(
    "step",
    [
        [{"var": "accumulator"}, {"var": "accumulator"}],  # shared structure, exponential when unfolded
        {"merge": [{"var": "accumulator"}, {"var": "accumulator"}]},
        {"cat": [{"var": "accumulator"}, {"var": "accumulator"}]},
        {"*": [{"var": "accumulator"}, {"var": "accumulator"}]},
    ],
)
def test_reduce_cannot_grow_values_exponentially(step: Any) -> None:
    rule = {"reduce": [{"var": "xs"}, step, 3]}
    # Work counted, not timed: refused by the step budget or a size limit after a few calls per step
    # of the budget at most, never after building 2**200 of anything.
    calls = count_calls(lambda: _refused({"==": [rule, 1]}, {"xs": list(range(200))}))
    assert calls < 5 * LogicLimits().max_steps


def test_budget_is_per_evaluation() -> None:
    compiled = compile_logic({"map": [{"var": "xs"}, {"var": ""}]}, limits=LogicLimits(max_steps=100))
    for _ in range(10):
        assert compiled.evaluate({"xs": list(range(1, 51))}) == list(range(1, 51))


# --- compilation ------------------------------------------------------------------------------------


def test_compiled_logic_describes_the_rule() -> None:
    rule = {"and": [{"in": ["ssri", {"var": "classes"}]}, {"<": [{"var": "labs.egfr"}, 30]}]}
    compiled = compile_logic(rule)
    assert isinstance(compiled, CompiledLogic)
    assert compiled.logic is rule
    assert compiled.operators == {"and", "in", "var", "<"}
    assert compiled.node_count == 9
    assert compiled.depth == 4
    assert compiled.evaluate({"classes": ["ssri"], "labs": {"egfr": 25}}) is True
    assert compiled.evaluate({"classes": ["ssri"], "labs": {"egfr": 45}}) is False
    assert compiled.evaluate() is False


def test_literal_objects_are_not_shared_between_evaluations() -> None:
    compiled = compile_logic({"if": [True, {"a": [1], "b": 2}]})
    first = compiled.evaluate()
    first["a"].append(99)
    assert compiled.evaluate() == {"a": [1], "b": 2}


def test_apply_caches_by_canonical_json_and_still_validates() -> None:
    assert apply({"+": [1, 2]}) == 3
    assert apply(json.loads('{"+": [1, 2]}')) == 3
    assert apply({"cat": ["a", {"var": "b"}]}, {"b": "c"}) == "ac"
    with pytest.raises(InvalidLogic):
        apply({"==": [1, datetime.date(2024, 1, 1)]})


def test_log_returns_its_argument_and_writes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG"):
        assert apply({"log": {"var": "name"}}, {"name": "Jane Doe"}) == "Jane Doe"
    assert "Jane Doe" not in caplog.text


# --- three-valued conditions ------------------------------------------------------------------------

EGFR_LOW = {"<": [{"var": "labs.egfr"}, 30]}
POTASSIUM_HIGH = {">": [{"var": "labs.potassium"}, 5.5]}
ON_SSRI = {"in": ["ssri", {"var": "classes"}]}
DOSES_HIGH = {"some": [{"var": "medications"}, {">": [{"var": "dose_mg"}, 100]}]}

# (name, rule, facts, status, missing)
THREE_VALUED: list[tuple[str, Any, Any, ConditionStatus, tuple[str, ...]]] = [
    ("missing var in <", EGFR_LOW, {}, INSUFFICIENT, ("labs.egfr",)),
    ("missing var, parent present", EGFR_LOW, {"labs": {}}, INSUFFICIENT, ("labs.egfr",)),
    ("null is missing", EGFR_LOW, {"labs": {"egfr": None}}, INSUFFICIENT, ("labs.egfr",)),
    ("present and low", EGFR_LOW, {"labs": {"egfr": 25}}, FIRED, ()),
    ("present and normal", EGFR_LOW, {"labs": {"egfr": 90}}, NOT_FIRED, ()),
    ("negation of unknown is unknown", {"!": EGFR_LOW}, {}, INSUFFICIENT, ("labs.egfr",)),
    ("!! of unknown is unknown", {"!!": EGFR_LOW}, {}, INSUFFICIENT, ("labs.egfr",)),
    ("or: a true operand decides", {"or": [EGFR_LOW, ON_SSRI]}, {"classes": ["ssri"]}, FIRED, ()),
    ("or: true first, unknown after", {"or": [ON_SSRI, EGFR_LOW]}, {"classes": ["ssri"]}, FIRED, ()),
    ("or: false and unknown", {"or": [EGFR_LOW, ON_SSRI]}, {"classes": []}, INSUFFICIENT, ("labs.egfr",)),
    ("and: a false operand decides", {"and": [EGFR_LOW, ON_SSRI]}, {"classes": []}, NOT_FIRED, ()),
    ("and: false first", {"and": [ON_SSRI, EGFR_LOW]}, {"classes": ["nsaid"]}, NOT_FIRED, ()),
    (
        "and: true and unknown",
        {"and": [ON_SSRI, EGFR_LOW]},
        {"classes": ["ssri"]},
        INSUFFICIENT,
        ("labs.egfr",),
    ),
    (
        "every missing path is reported",
        {"and": [EGFR_LOW, POTASSIUM_HIGH]},
        {"labs": {}},
        INSUFFICIENT,
        ("labs.egfr", "labs.potassium"),
    ),
    ("arithmetic with unknown", {">": [{"+": [{"var": "a"}, 1]}, 0]}, {}, INSUFFICIENT, ("a",)),
    ("in with unknown array", ON_SSRI, {}, INSUFFICIENT, ("classes",)),
    ("empty list is data", ON_SSRI, {"classes": []}, NOT_FIRED, ()),
    ("empty list is data for some", DOSES_HIGH, {"medications": []}, NOT_FIRED, ()),
    ("false is data", {"!": {"var": "pregnant"}}, {"pregnant": False}, FIRED, ()),
    ("zero is data", {"<": [{"var": "age"}, 1]}, {"age": 0}, FIRED, ()),
    ("empty string is missing", {"==": [{"var": "sex"}, "female"]}, {"sex": ""}, INSUFFICIENT, ("sex",)),
    # guards
    ("missing guard: absent", {"and": [{"!": {"missing": ["labs.egfr"]}}, EGFR_LOW]}, {}, NOT_FIRED, ()),
    (
        "missing guard: present",
        {"and": [{"!": {"missing": ["labs.egfr"]}}, EGFR_LOW]},
        {"labs": {"egfr": 20}},
        FIRED,
        (),
    ),
    ("fire when unknown", {"or": [{"missing": ["labs.egfr"]}, EGFR_LOW]}, {}, FIRED, ()),
    (
        "missing_some guard",
        {"if": [{"missing_some": [1, ["labs.egfr", "labs.creatinine"]]}, False, True]},
        {},
        NOT_FIRED,
        (),
    ),
    ("explicit default", {"<": [{"var": ["labs.egfr", 90]}, 30]}, {}, NOT_FIRED, ()),
    ("explicit null default is a guard", {"==": [{"var": ["labs.egfr", None]}, None]}, {}, FIRED, ()),
    (
        "default that is itself missing",
        {"<": [{"var": ["labs.egfr", {"var": "labs.crcl"}]}, 30]},
        {},
        INSUFFICIENT,
        ("labs.crcl",),
    ),
    # if
    ("if: unknown condition, equal branches", {"if": [EGFR_LOW, False, False]}, {}, NOT_FIRED, ()),
    (
        "if: unknown condition, different branches",
        {"if": [EGFR_LOW, True, False]},
        {},
        INSUFFICIENT,
        ("labs.egfr",),
    ),
    ("if: known condition", {"if": [ON_SSRI, EGFR_LOW, False]}, {"classes": []}, NOT_FIRED, ()),
    ("?: like if", {"?:": [EGFR_LOW, "yes", "yes"]}, {}, FIRED, ()),
    # or/and return values: truthiness can be known while the value is not
    ("or value unknown, truthiness known", {"!!": {"or": [{"var": "x"}, 5]}}, {}, FIRED, ()),
    ("or value unknown, compared", {"==": [{"or": [{"var": "x"}, 5]}, 5]}, {}, INSUFFICIENT, ("x",)),
    # arrays
    (
        "some: one element decides",
        DOSES_HIGH,
        {"medications": [{"name": "a"}, {"dose_mg": 500}]},
        FIRED,
        (),
    ),
    (
        "some: undecided element is reported with its index",
        DOSES_HIGH,
        {"medications": [{"dose_mg": 5}, {"name": "b"}]},
        INSUFFICIENT,
        ("medications.1.dose_mg",),
    ),
    (
        "all: one false element decides",
        {"all": [{"var": "medications"}, {">": [{"var": "dose_mg"}, 100]}]},
        {"medications": [{}, {"dose_mg": 5}]},
        NOT_FIRED,
        (),
    ),
    (
        "none: unknown",
        {"none": [{"var": "medications"}, {">": [{"var": "dose_mg"}, 100]}]},
        {"medications": [{}, {"dose_mg": 5}]},
        INSUFFICIENT,
        ("medications.0.dose_mg",),
    ),
    (
        "filter with unknown membership",
        {">": [{"filter": [{"var": "medications"}, {">": [{"var": "dose_mg"}, 100]}]}, []]},
        {"medications": [{}]},
        INSUFFICIENT,
        ("medications.0.dose_mg",),
    ),
    (
        "reduce over a missing value",
        {">": [{"reduce": [{"var": "m"}, {"+": [{"var": "accumulator"}, {"var": "current.d"}]}, 0]}, 10]},
        {"m": [{"d": 1}, {}]},
        INSUFFICIENT,
        ("m.1.d",),
    ),
    (
        "reduce complete",
        {">": [{"reduce": [{"var": "m"}, {"+": [{"var": "accumulator"}, {"var": "current.d"}]}, 0]}, 10]},
        {"m": [{"d": 8}, {"d": 3}]},
        FIRED,
        (),
    ),
    ("missing array", DOSES_HIGH, {}, INSUFFICIENT, ("medications",)),
    (
        "nested element path",
        {"some": [{"var": "a.b"}, {"var": "c"}]},
        {"a": {"b": [{}]}},
        INSUFFICIENT,
        ("a.b.0.c",),
    ),
    (
        "computed array",
        {"some": [{"merge": [[1]]}, {"var": "c"}]},
        {},
        INSUFFICIENT,
        ("<some>.0.c",),
    ),
]


@pytest.mark.parametrize(
    ("rule", "facts", "status", "missing"),
    [pytest.param(r, f, s, m, id=name) for name, r, f, s, m in THREE_VALUED],
)
def test_three_valued_conditions(
    rule: Any, facts: Any, status: ConditionStatus, missing: tuple[str, ...]
) -> None:
    assert evaluate_condition(compile_logic(rule), facts) == ConditionOutcome(status, missing)


def test_plain_mode_keeps_json_logic_semantics_on_missing_data() -> None:
    # The same rule, evaluated plainly, is plain JsonLogic: qubit says false for None < 30.
    assert compile_logic(EGFR_LOW).evaluate({}) is False
    assert compile_logic({"!": EGFR_LOW}).evaluate({}) is True


def test_three_valued_evaluation_never_raises_for_missing_data() -> None:
    # In plain mode `+` on null raises; three-valued mode knows it is missing and does not run it.
    rule = {">": [{"+": [{"var": "labs.egfr"}, 1]}, 30]}
    with pytest.raises(LogicEvaluationError):
        apply(rule, {})
    assert evaluate_condition(compile_logic(rule), {}).status is INSUFFICIENT


# --- static analysis --------------------------------------------------------------------------------

RENAL = {
    "and": [
        {"in": ["nsaid", {"var": "classes"}]},
        {"!": {"missing": ["labs.egfr"]}},
        {"<": [{"var": "labs.egfr"}, 30]},
        {">": [{"var": "age"}, 65]},
        {"some": [{"var": "medications"}, {">=": [{"var": "dose_mg"}, {"var": ["max_mg", 100]}]}]},
    ]
}


def test_operators_used() -> None:
    assert operators_used(RENAL) == {"and", "in", "var", "!", "missing", "<", ">", "some", ">="}
    # unknown and forbidden ones are reported too: the linter says what is wrong
    assert operators_used({"or": [{"method": ["a", "b"]}, {"foo": 1}]}) == {"or", "method", "foo"}
    # a multi-key object is a literal, not an operator
    assert operators_used({"==": [{"a": {"var": "x"}, "b": 1}, 1]}) == {"=="}


def test_variables_used() -> None:
    assert variables_used(RENAL) == {
        "classes",
        "labs.egfr",
        "age",
        "medications",
        "medications.*.dose_mg",
        "medications.*.max_mg",
    }
    assert variables_used({"var": [{"cat": ["labs.", {"var": "kind"}]}]}) == {COMPUTED_PATH, "kind"}
    assert variables_used({"missing_some": [1, ["a", "b"]]}) == {"a", "b"}
    assert variables_used({"var": 1}) == {"1"}
    assert variables_used(
        {"reduce": [{"var": "meds"}, {"+": [{"var": "accumulator"}, {"var": "current.dose"}]}, 0]}
    ) == {"meds", "meds.*.dose"}
    assert variables_used({"map": [{"merge": [{"var": "a"}]}, {"var": "b"}]}) == {"a", "<computed>.*.b"}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (RENAL, ["age", "medications.*.dose_mg"]),  # egfr is guarded; max_mg has a default
        ({"<": [{"var": "labs.egfr"}, 30]}, ["labs.egfr"]),
        ({"<": [{"var": ["labs.egfr", 90]}, 30]}, []),
        ({"and": [{"<": [{"var": "labs.egfr"}, 30]}, {"!": {"missing": ["labs.egfr"]}}]}, ["labs.egfr"]),
        ({"or": [{"missing": ["labs.egfr"]}, {"<": [{"var": "labs.egfr"}, 30]}]}, []),
        ({"if": [{"missing": ["age"]}, False, {">": [{"var": "age"}, 65]}]}, []),
        ({"if": [{">": [{"var": "age"}, 65]}, {"missing": ["age"]}, False]}, ["age"]),
        ({"and": [{"!": {"missing_some": [2, ["a", "b"]]}}, {"==": [{"var": "a"}, {"var": "b"}]}]}, []),
        ({"==": [{"var": "sex"}, "female"]}, ["sex"]),
        ({"in": ["ssri", {"var": "classes"}]}, []),
        (
            {"and": [{">": [{"var": "b"}, 1]}, {"<": [{"var": "a"}, 1]}, {"!=": [{"var": "b"}, 3]}]},
            ["b", "a"],
        ),
        (
            {"some": [{"var": "medications"}, {">": [{"var": "dose_mg"}, 100]}]},
            ["medications.*.dose_mg"],
        ),
    ],
)
def test_unguarded_comparisons(rule: Any, expected: list[str]) -> None:
    assert unguarded_comparisons(rule) == expected


def test_static_helpers_tolerate_malformed_rules() -> None:
    weird = {"and": [{"<": []}, {"var": []}, {"missing_some": 1}, {"map": 1}, {1: 2}, None]}
    assert "and" in operators_used(weird)
    assert isinstance(variables_used(weird), set)
    assert unguarded_comparisons(weird) == []

"""Hardened, compiled JsonLogic for clinical rule conditions.

Semantics are those of the `json-logic-qubit` package (the reference named in DESIGN.md), with the
deviations listed, case by case, in `tests/conformance_exceptions.yaml`. The differences that matter:

* Only allow-listed operators run. `method` (arbitrary Python method calls) is refused, as is anything
  not in `OPERATORS`; the whole tree is checked at compile time, including branches never taken.
* Rules are bounded: nesting depth and node count at compile time, and at run time a step budget for
  map/filter/reduce/all/none/some plus caps on the size of strings, arrays and integers they build.
* `compile_logic` turns a rule into a tree of closures once; `CompiledLogic.evaluate` runs it.
* `evaluate_condition` evaluates in three-valued (Kleene) mode: a `var` that finds nothing (absent,
  null or "" — the same test `missing` uses) and has no explicit default is UNKNOWN, and UNKNOWN at
  the top is INSUFFICIENT_DATA, never FIRED or NOT_FIRED.

Errors all derive from `LogicError(ValueError)`. Messages name operators and rule locations, never
operand values: facts are PHI and error messages reach logs.
"""

from __future__ import annotations

import copy
import enum
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

__all__ = [
    "COMPUTED_PATH",
    "DEFAULT_LIMITS",
    "OPERATORS",
    "CompiledLogic",
    "ConditionOutcome",
    "ConditionStatus",
    "ForbiddenOperator",
    "InvalidLogic",
    "LogicError",
    "LogicEvaluationError",
    "LogicLimitExceeded",
    "LogicLimits",
    "UnknownOperator",
    "apply",
    "compile_logic",
    "evaluate_condition",
    "operators_used",
    "unguarded_comparisons",
    "variables_used",
]


# ---------------------------------------------------------------------------------------------------
# Errors


class LogicError(ValueError):
    pass


class InvalidLogic(LogicError):
    """The rule is not well-formed JsonLogic (non-JSON value, wrong number of arguments, ...)."""


class UnknownOperator(LogicError):
    def __init__(self, operator: str, where: str = "$", message: str | None = None) -> None:
        self.operator = operator
        self.where = where
        super().__init__(
            message
            or f"unknown JsonLogic operator {operator!r} at {where}; allowed: {', '.join(sorted(OPERATORS))}"
        )


class ForbiddenOperator(UnknownOperator):
    def __init__(self, operator: str, where: str = "$") -> None:
        super().__init__(
            operator,
            where,
            f"JsonLogic operator {operator!r} at {where} is forbidden: it calls arbitrary Python methods "
            "and must never run from rules stored in a database",
        )


class LogicLimitExceeded(LogicError):
    pass


class LogicEvaluationError(LogicError):
    """An operator failed on its operands (e.g. a number expected, a string found)."""


# ---------------------------------------------------------------------------------------------------
# Limits


@dataclass(frozen=True, slots=True)
class LogicLimits:
    max_depth: int = 64
    # Every JSON node of the rule counts, literals included (a 500-name `in` list costs 501).
    max_nodes: int = 5_000
    # Each element a map/filter/reduce/all/none/some visits costs the node count of its logic, and
    # a reduce accumulator that is an array or object costs its size after every step (that is what
    # stops `reduce` from doubling a shared structure into an exponential one). Per evaluation.
    max_steps: int = 100_000
    max_string_length: int = 100_000
    max_array_length: int = 10_000
    max_int_bits: int = 4_096


DEFAULT_LIMITS: Final = LogicLimits()


class _Budget:
    __slots__ = ("steps",)

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def charge(self, cost: int) -> None:
        self.steps -= cost
        if self.steps < 0:
            raise LogicLimitExceeded("JsonLogic step budget exhausted (map/filter/reduce/all/none/some)")


# ---------------------------------------------------------------------------------------------------
# Operators and their arity (after qubit's normalisation: a non-array argument is a one-element list).
# qubit raises TypeError on a wrong count when the node runs; we refuse it when the rule is compiled.

_MANY: Final = 1 << 30
_ARITY: Final[dict[str, tuple[int, int]]] = {
    "var": (0, 2),
    "missing": (0, _MANY),
    "missing_some": (2, 2),
    "if": (0, _MANY),
    "?:": (3, 3),
    "and": (0, _MANY),
    "or": (0, _MANY),
    "==": (2, 2),
    "===": (2, 2),
    "!=": (2, 2),
    "!==": (2, 2),
    "!": (1, 1),
    "!!": (1, 1),
    ">": (2, 2),
    ">=": (2, 2),
    "<": (2, 3),
    "<=": (2, 3),
    "max": (0, _MANY),
    "min": (0, _MANY),
    "+": (0, _MANY),
    "-": (1, 2),
    "*": (0, _MANY),
    "/": (2, 2),
    "%": (2, 2),
    "in": (2, 2),
    "cat": (0, _MANY),
    "substr": (2, 3),
    "merge": (0, _MANY),
    "log": (1, 1),
    "map": (2, 2),
    "filter": (2, 2),
    "reduce": (2, 3),
    "all": (2, 2),
    "none": (2, 2),
    "some": (2, 2),
}
OPERATORS: Final[frozenset[str]] = frozenset(_ARITY)
_FORBIDDEN: Final = frozenset({"method"})
_SCOPED: Final = frozenset({"map", "filter", "reduce", "all", "none", "some"})
_COMPARISONS: Final = frozenset({"==", "===", "!=", "!==", "<", "<=", ">", ">="})


# ---------------------------------------------------------------------------------------------------
# Parsed rule tree (validated once; both evaluation modes are compiled from it)


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class _Array:
    items: tuple[_Node, ...]
    size: int


@dataclass(frozen=True, slots=True)
class _Op:
    op: str
    args: tuple[_Node, ...]
    size: int


_Node = _Literal | _Array | _Op


def _size(node: _Node) -> int:
    return 1 if isinstance(node, _Literal) else node.size


class _Parser:
    def __init__(self, limits: LogicLimits) -> None:
        self.limits = limits
        self.nodes = 0
        self.depth = 0
        self.operators: set[str] = set()

    def _enter(self, depth: int, where: str) -> None:
        if depth > self.limits.max_depth:
            raise LogicLimitExceeded(
                f"JsonLogic rule nested deeper than {self.limits.max_depth} levels at {where}"
            )
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise LogicLimitExceeded(f"JsonLogic rule has more than {self.limits.max_nodes} nodes")
        self.depth = max(self.depth, depth)

    def parse(self, raw: Any, depth: int, where: str) -> _Node:
        self._enter(depth, where)
        if isinstance(raw, dict):
            if len(raw) != 1:
                # qubit passes a dict with 0 or 2+ keys through as a literal, unevaluated.
                self._check_json(raw, depth, where)
                return _Literal(raw)
            ((op, value),) = raw.items()
            if not isinstance(op, str):
                raise InvalidLogic(f"JsonLogic operator at {where} must be a string")
            if op in _FORBIDDEN:
                raise ForbiddenOperator(op, where)
            if op not in _ARITY:
                raise UnknownOperator(op, where)
            args = value if isinstance(value, list | tuple) else [value]
            low, high = _ARITY[op]
            if not low <= len(args) <= high:
                if low == high:
                    expected = str(low)
                else:
                    expected = f"{low}..{high}" if high < _MANY else f"at least {low}"
                raise InvalidLogic(
                    f"JsonLogic operator {op!r} at {where} takes {expected} arguments, got {len(args)}"
                )
            self.operators.add(op)
            before = self.nodes
            parsed = tuple(self.parse(a, depth + 1, f"{where}.{op}[{i}]") for i, a in enumerate(args))
            return _Op(op, parsed, 1 + self.nodes - before)
        if isinstance(raw, list | tuple):
            before = self.nodes
            items = tuple(self.parse(a, depth + 1, f"{where}[{i}]") for i, a in enumerate(raw))
            return _Array(items, 1 + self.nodes - before)
        self._check_scalar(raw, where)
        return _Literal(raw)

    def _check_scalar(self, raw: Any, where: str) -> None:
        if raw is None or isinstance(raw, bool | int | str):
            return
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise InvalidLogic(f"JsonLogic rule at {where} holds a non-finite number (not JSON)")
            return
        # YAML turns 2024-01-01 into a date; say so rather than compare a date object at run time.
        kind = type(raw).__name__
        raise InvalidLogic(f"JsonLogic rule at {where} holds a {kind}, which is not a JSON value")

    def _check_json(self, raw: Any, depth: int, where: str) -> None:
        if isinstance(raw, dict):
            for key, value in raw.items():
                if not isinstance(key, str):
                    raise InvalidLogic(f"JSON object key at {where} must be a string")
                self._enter(depth + 1, f"{where}.{key}")
                self._check_json(value, depth + 1, f"{where}.{key}")
        elif isinstance(raw, list | tuple):
            for i, value in enumerate(raw):
                self._enter(depth + 1, f"{where}[{i}]")
                self._check_json(value, depth + 1, f"{where}[{i}]")
        else:
            self._check_scalar(raw, where)


# ---------------------------------------------------------------------------------------------------
# Reference semantics of the operators (behaviour of json-logic-qubit 0.9.1, written afresh)

_NUMBER_TYPES: Final = (int, float)
_ARRAY_TYPES: Final = (list, tuple)
# What an operator may raise on bad operands; turned into LogicEvaluationError without the message,
# because Python's messages quote the operand (e.g. "invalid literal for int(): 'penicillin'").
_OPERAND_ERRORS: Final = (TypeError, ValueError, ArithmeticError, IndexError, KeyError, RecursionError)


class _Nothing:
    __slots__ = ()


_NOTHING: Final = _Nothing()


def _to_number(value: Any) -> Any:
    # qubit's coercion: a string with a dot is a float, anything else goes through int(); a float
    # with no fractional part becomes an int (so 2.0 prints and compares as 2).
    if isinstance(value, str) and "." in value:
        value = float(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    return int(value)


def _is_number(value: Any) -> bool:
    # Exact types: qubit does not count bool as a number here.
    return type(value) in _NUMBER_TYPES


def _loose_equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) is bool(b)
    return bool(a == b)


def _strict_equal(a: Any, b: Any) -> bool:
    if type(a) is type(b):
        return bool(a == b)
    if _is_number(a) and _is_number(b):
        return bool(_to_number(a) == _to_number(b))
    return False


def _less(a: Any, b: Any, c: Any = _NOTHING) -> bool:
    if a is None or b is None:
        return False
    if _is_number(a) or _is_number(b):
        try:
            a, b = _to_number(a), _to_number(b)
        except TypeError:
            return False
    # The chained form compares against the *coerced* middle operand, as qubit does.
    return bool(a < b) and (c is _NOTHING or _less(b, c))


def _less_equal(a: Any, b: Any, c: Any = _NOTHING) -> bool:
    return (_less(a, b) or _loose_equal(a, b)) and (c is _NOTHING or _less_equal(b, c))


def _contains(a: Any, b: Any) -> bool:
    if hasattr(b, "__contains__"):
        return a in b
    return False


def _substr(source: Any, start: Any, length: Any = None) -> Any:
    return source[start:][:length]


def _minimum(*args: Any) -> Any:
    return min(_to_number(a) for a in args) if args else None


def _maximum(*args: Any) -> Any:
    return max(_to_number(a) for a in args) if args else None


def _merge_arrays(*args: Any) -> list[Any]:
    out: list[Any] = []
    for arg in args:
        if isinstance(arg, _ARRAY_TYPES):
            out.extend(arg)
        else:
            out.append(arg)
    return out


def _var_steps(name: Any) -> tuple[tuple[str, int | None], ...] | None:
    if name is None or (isinstance(name, str) and name == ""):
        return None
    steps = []
    for key in str(name).split("."):
        try:
            index: int | None = int(key)
        except ValueError:
            index = None
        steps.append((key, index))
    return tuple(steps)


def _resolve(data: Any, steps: tuple[tuple[str, int | None], ...] | None) -> Any:
    # qubit: data[key], and when that is a TypeError (a list or string), data[int(key)]. Anything
    # that fails is "not found". qubit lets an out-of-range index raise IndexError; we treat it as
    # not found, as JavaScript JsonLogic does (documented deviation).
    if steps is None:
        return data
    for key, index in steps:
        if type(data) is dict:
            try:
                data = data[key]
            except KeyError:
                return _NOTHING
            continue
        if type(data) is _Unknown:
            # Only a reduce accumulator in three-valued mode; a part of an unknown is unknown.
            return _Unknown(data.missing)
        try:
            data = data[key]
        except TypeError:
            if index is None:
                return _NOTHING
            try:
                data = data[index]
            except (TypeError, IndexError, KeyError):
                return _NOTHING
        except (KeyError, IndexError, ValueError):
            return _NOTHING
    return data


def _missing_names(data: Any, args: Sequence[Any]) -> list[Any]:
    names = args[0] if args and isinstance(args[0], _ARRAY_TYPES) else args
    out = []
    for name in names:
        value = _resolve(data, _var_steps(name))
        if value is _NOTHING or value is None or (isinstance(value, str) and value == ""):
            out.append(name)
    return out


def _missing_some(data: Any, need: Any, names: Any) -> list[Any]:
    missing = _missing_names(data, [names])
    if len(names) - len(missing) >= need:
        return []
    return missing


# ---------------------------------------------------------------------------------------------------
# Plain evaluation: closures over (data, budget)

_Fn = Callable[[Any, _Budget], Any]


def _operand_error(op: str, exc: BaseException) -> LogicEvaluationError:
    error = LogicEvaluationError(f"JsonLogic operator {op!r} failed on its operands ({type(exc).__name__})")
    # What `raise ... from None` does, set here too: compiled by mypyc (engine/ops/native.py), the
    # `from None` is not applied, and the operands' own error (its message can quote a patient's
    # value) must not be chained to this one in a traceback or a log.
    error.__cause__ = None
    error.__suppress_context__ = True
    return error


class _Sized:
    """The size caps shared by both modes."""

    def __init__(self, limits: LogicLimits) -> None:
        self.limits = limits

    def number(self, value: Any) -> Any:
        value = _to_number(value)
        if type(value) is int and value.bit_length() > self.limits.max_int_bits:
            raise LogicLimitExceeded(f"JsonLogic integer larger than {self.limits.max_int_bits} bits")
        return value

    def add(self, *args: Any) -> Any:
        return self.number(sum(_to_number(a) for a in args))

    def subtract(self, a: Any, b: Any = _NOTHING) -> Any:
        return self.number(-_to_number(a) if b is _NOTHING else _to_number(a) - _to_number(b))

    def multiply(self, *args: Any) -> Any:
        total: Any = 1
        for arg in args:
            total = self.number(total * _to_number(arg))
        return self.number(total)

    def divide(self, a: Any, b: Any) -> Any:
        return self.number(_to_number(a) / _to_number(b))

    def modulo(self, a: Any, b: Any) -> Any:
        return self.number(_to_number(a) % _to_number(b))

    def cat(self, *args: Any) -> str:
        out = "".join(str(a) for a in args)
        if len(out) > self.limits.max_string_length:
            raise LogicLimitExceeded(f"JsonLogic string longer than {self.limits.max_string_length}")
        return out

    def merge(self, *args: Any) -> list[Any]:
        out = _merge_arrays(*args)
        if len(out) > self.limits.max_array_length:
            raise LogicLimitExceeded(f"JsonLogic array longer than {self.limits.max_array_length}")
        return out


def _charge_value(value: Any, budget: _Budget) -> None:
    # Walks a reduce accumulator, paying one step per element; stops as soon as the budget runs out,
    # so a self-similar structure of exponential unfolded size costs at most the budget.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _ARRAY_TYPES):
            budget.charge(len(item) + 1)
            stack.extend(item)
        elif isinstance(item, dict):
            budget.charge(len(item) + 1)
            stack.extend(item.values())


def _eager_impls(sized: _Sized) -> dict[str, Callable[..., Any]]:
    return {
        "==": _loose_equal,
        "===": _strict_equal,
        "!=": lambda a, b: not _loose_equal(a, b),
        "!==": lambda a, b: not _strict_equal(a, b),
        ">": lambda a, b: _less(b, a),
        ">=": lambda a, b: _less_equal(b, a),
        "<": _less,
        "<=": _less_equal,
        "!": lambda a: not a,
        "!!": bool,
        # `log` returns its argument; it writes nothing, since what it would log is patient data.
        "log": lambda a: a,
        "in": _contains,
        "cat": sized.cat,
        "substr": _substr,
        "+": sized.add,
        "-": sized.subtract,
        "*": sized.multiply,
        "/": sized.divide,
        "%": sized.modulo,
        "min": _minimum,
        "max": _maximum,
        "merge": sized.merge,
    }


def _guarded_call(op: str, impl: Callable[..., Any], values: Sequence[Any]) -> Any:
    try:
        return impl(*values)
    except LogicError:
        raise
    except _OPERAND_ERRORS as exc:
        raise _operand_error(op, exc) from None


class _PlainCompiler:
    def __init__(self, limits: LogicLimits) -> None:
        self.sized = _Sized(limits)
        self.impls = _eager_impls(self.sized)

    def compile(self, node: _Node) -> _Fn:
        if isinstance(node, _Literal):
            return _literal_fn(node.value)
        if isinstance(node, _Array):
            fns = tuple(self.compile(item) for item in node.items)
            return lambda data, budget: [f(data, budget) for f in fns]
        op = node.op
        if op == "var":
            return self._var(node)
        if op in ("if", "?:"):
            return self._if(node)
        if op == "and":
            return self._and(node)
        if op == "or":
            return self._or(node)
        if op in _SCOPED:
            return self._scoped(node)
        fns = tuple(self.compile(a) for a in node.args)
        if op == "missing":
            return lambda data, budget: _missing_names(data, [f(data, budget) for f in fns])
        if op == "missing_some":
            return self._call(op, lambda data, a, b: _missing_some(data, a, b), fns, with_data=True)
        return self._call(op, self.impls[op], fns)

    @staticmethod
    def _call(op: str, impl: Callable[..., Any], fns: tuple[_Fn, ...], with_data: bool = False) -> _Fn:
        # Specialised for one and two operands: most nodes in clinical rules are `!` and comparisons.
        if with_data:
            return lambda data, budget: _guarded_call(op, impl, [data, *(f(data, budget) for f in fns)])
        if len(fns) == 1:
            (f0,) = fns

            def unary(data: Any, budget: _Budget) -> Any:
                a = f0(data, budget)
                try:
                    return impl(a)
                except LogicError:
                    raise
                except _OPERAND_ERRORS as exc:
                    raise _operand_error(op, exc) from None

            return unary
        if len(fns) == 2:
            f0, f1 = fns

            def binary(data: Any, budget: _Budget) -> Any:
                a = f0(data, budget)
                b = f1(data, budget)
                try:
                    return impl(a, b)
                except LogicError:
                    raise
                except _OPERAND_ERRORS as exc:
                    raise _operand_error(op, exc) from None

            return binary
        return lambda data, budget: _guarded_call(op, impl, [f(data, budget) for f in fns])

    def _var(self, node: _Op) -> _Fn:
        args = node.args
        default_fn = self.compile(args[1]) if len(args) > 1 else None
        first = args[0] if args else _Literal(None)
        if isinstance(first, _Literal):
            steps = _var_steps(first.value)

            def var_literal(data: Any, budget: _Budget) -> Any:
                value = _resolve(data, steps)
                if value is _NOTHING:
                    return None if default_fn is None else default_fn(data, budget)
                return value

            return var_literal
        path_fn = self.compile(args[0])

        def var_computed(data: Any, budget: _Budget) -> Any:
            value = _resolve(data, _var_steps(path_fn(data, budget)))
            if value is _NOTHING:
                return None if default_fn is None else default_fn(data, budget)
            return value

        return var_computed

    def _if(self, node: _Op) -> _Fn:
        fns = tuple(self.compile(a) for a in node.args)
        pairs = tuple((fns[i], fns[i + 1]) for i in range(0, len(fns) - 1, 2))
        otherwise = fns[-1] if len(fns) % 2 else None

        def if_(data: Any, budget: _Budget) -> Any:
            for cond, then in pairs:
                if cond(data, budget):
                    return then(data, budget)
            return None if otherwise is None else otherwise(data, budget)

        return if_

    def _and(self, node: _Op) -> _Fn:
        fns = tuple(self.compile(a) for a in node.args)

        def and_(data: Any, budget: _Budget) -> Any:
            value: Any = False
            for f in fns:
                value = f(data, budget)
                if not value:
                    return value
            return value

        return and_

    def _or(self, node: _Op) -> _Fn:
        fns = tuple(self.compile(a) for a in node.args)

        def or_(data: Any, budget: _Budget) -> Any:
            value: Any = False
            for f in fns:
                value = f(data, budget)
                if value:
                    return value
            return value

        return or_

    def _scoped(self, node: _Op) -> _Fn:
        op = node.op
        array_fn = self.compile(node.args[0])
        logic = self.compile(node.args[1])
        cost = _size(node.args[1])
        # Deviation: qubit passes reduce's initial value through unevaluated; JsonLogic evaluates it.
        initial_fn = self.compile(node.args[2]) if len(node.args) > 2 else None

        def scoped(data: Any, budget: _Budget) -> Any:
            array = array_fn(data, budget)
            if op == "reduce":
                acc = None if initial_fn is None else initial_fn(data, budget)
                if not isinstance(array, _ARRAY_TYPES):
                    return acc
                for item in array:
                    budget.charge(cost)
                    acc = logic({"accumulator": acc, "current": item}, budget)
                    _charge_value(acc, budget)
                return acc
            if not isinstance(array, _ARRAY_TYPES):
                return [] if op in ("map", "filter") else op == "none"
            if op == "map":
                out = []
                for item in array:
                    budget.charge(cost)
                    out.append(logic(item, budget))
                return out
            if op == "filter":
                kept = []
                for item in array:
                    budget.charge(cost)
                    if logic(item, budget):
                        kept.append(item)
                return kept
            if op == "all":
                if not array:
                    return False
                for item in array:
                    budget.charge(cost)
                    if not logic(item, budget):
                        return False
                return True
            # some / none: qubit filters the whole array first; stopping at the first truthy element
            # gives the same answer with less work.
            for item in array:
                budget.charge(cost)
                if logic(item, budget):
                    return op == "some"
            return op == "none"

        return scoped


def _literal_fn(value: Any) -> _Fn:
    if isinstance(value, dict):
        # A literal object is handed out as a copy: a caller mutating a result must not change the rule.
        return lambda data, budget: copy.deepcopy(value)
    return lambda data, budget: value


# ---------------------------------------------------------------------------------------------------
# Three-valued (Kleene) evaluation: closures over (data, budget, scope)


class _Unknown:
    """A value we do not know because data is missing.

    `truth` is its truthiness when that is known even though the value is not: `or` of an unknown
    and `5` is truthy, but which value it returns depends on the unknown, so `==` on it stays unknown.
    """

    __slots__ = ("missing", "truth")

    def __init__(self, missing: frozenset[str], truth: bool | None = None) -> None:
        self.missing = missing
        self.truth = truth

    def __repr__(self) -> str:
        return f"UNKNOWN(missing={sorted(self.missing)}, truth={self.truth})"


def _truth(value: Any) -> bool | None:
    return value.truth if type(value) is _Unknown else bool(value)


def _unknown_of(values: Iterable[Any], truth: bool | None = None) -> _Unknown:
    missing: set[str] = set()
    for v in values:
        if type(v) is _Unknown:
            missing |= v.missing
    return _Unknown(frozenset(missing), truth)


def _same(a: Any, b: Any) -> bool:
    # Conservative: equal type and repr (so 1, 1.0 and True differ); unequal means "don't know".
    return a is b or (type(a) is type(b) and repr(a) == repr(b))


class _ReduceFrame(dict[str, Any]):
    """The data a reduce step sees; a distinct type so `{"var": ""}` can spot an unknown accumulator."""

    __slots__ = ()


class _Scope:
    """Where the data of a map/filter/... element came from, to report missing paths in full."""

    __slots__ = ("array", "index", "parent", "reduce")

    def __init__(self, parent: _Scope | None, array: str, reduce: bool) -> None:
        self.parent = parent
        self.array = array
        self.reduce = reduce
        self.index = 0

    def qualify(self, path: str) -> str:
        element = _join(_qualify(self.parent, self.array), str(self.index))
        if not self.reduce:
            return _join(element, path)
        if path == "current" or path.startswith("current."):
            return _join(element, path[len("current.") :])
        return _join(element, f"<reduce>.{path}")


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return f"{prefix}.{path}" if path else prefix


def _qualify(scope: _Scope | None, path: str) -> str:
    return path if scope is None else scope.qualify(path)


def _missing_path(scope: _Scope | None, name: Any) -> str:
    path = "" if name is None else str(name)
    return _qualify(scope, path) or "<data>"


_KFn = Callable[[Any, _Budget, _Scope | None], Any]


class _KleeneCompiler:
    def __init__(self, limits: LogicLimits, plain: _PlainCompiler) -> None:
        self.plain = plain
        self.impls = plain.impls

    def compile(self, node: _Node) -> _KFn:
        if isinstance(node, _Literal):
            const = _literal_fn(node.value)
            return lambda data, budget, scope: const(data, budget)
        if isinstance(node, _Array):
            fns = tuple(self.compile(item) for item in node.items)

            def array(data: Any, budget: _Budget, scope: _Scope | None) -> Any:
                values = [f(data, budget, scope) for f in fns]
                if any(type(v) is _Unknown for v in values):
                    return _unknown_of(values, bool(values))
                return values

            return array
        op = node.op
        if op == "var":
            return self._var(node)
        if op in ("missing", "missing_some"):
            # Guards see the data as it is, never UNKNOWN: evaluate them exactly as in plain mode.
            guard = self.plain.compile(node)
            return lambda data, budget, scope: guard(data, budget)
        if op in ("if", "?:"):
            return self._if(node)
        if op in ("and", "or"):
            return self._and_or(node)
        if op in ("!", "!!"):
            return self._not(node)
        if op in _SCOPED:
            return self._scoped(node)
        return self._strict(node)

    def _strict(self, node: _Op) -> _KFn:
        # Every other operator is strict: any unknown operand makes the result unknown. All operands
        # are evaluated so that every missing path is reported, not just the first.
        op = node.op
        impl = self.impls[op]
        fns = tuple(self.compile(a) for a in node.args)

        if len(fns) == 2:
            f0, f1 = fns

            def binary(data: Any, budget: _Budget, scope: _Scope | None) -> Any:
                a = f0(data, budget, scope)
                b = f1(data, budget, scope)
                if type(a) is _Unknown or type(b) is _Unknown:
                    return _unknown_of((a, b))
                try:
                    return impl(a, b)
                except LogicError:
                    raise
                except _OPERAND_ERRORS as exc:
                    raise _operand_error(op, exc) from None

            return binary

        def strict(data: Any, budget: _Budget, scope: _Scope | None) -> Any:
            values = [f(data, budget, scope) for f in fns]
            for v in values:
                if type(v) is _Unknown:
                    return _unknown_of(values)
            return _guarded_call(op, impl, values)

        return strict

    def _var(self, node: _Op) -> _KFn:
        args = node.args
        path_fn = self.compile(args[0]) if args else None
        default_fn = self.compile(args[1]) if len(args) > 1 else None
        first = args[0] if args else _Literal(None)
        literal = isinstance(first, _Literal)
        literal_name: Any = first.value if isinstance(first, _Literal) else None
        literal_steps = _var_steps(literal_name)

        if literal and default_fn is None and literal_steps is not None:
            # The common case, `{"var": "labs.egfr"}`, without the generality below.
            def var_path(data: Any, budget: _Budget, scope: _Scope | None) -> Any:
                value = _resolve(data, literal_steps)
                if value is _NOTHING or value is None or (type(value) is str and value == ""):
                    return _Unknown(frozenset({_missing_path(scope, literal_name)}))
                return value

            return var_path

        def var(data: Any, budget: _Budget, scope: _Scope | None) -> Any:
            if literal:
                name: Any = literal_name
                steps = literal_steps
            else:
                assert path_fn is not None
                name = path_fn(data, budget, scope)
                if type(name) is _Unknown:
                    return _Unknown(name.missing)
                steps = _var_steps(name)
            value = _resolve(data, steps)
            if steps is None and type(data) is _ReduceFrame and type(data["accumulator"]) is _Unknown:
                return _Unknown(data["accumulator"].missing)
            if default_fn is not None:
                # An explicit default is a guard: whatever is found is used as it is.
                return default_fn(data, budget, scope) if value is _NOTHING else value
            if value is _NOTHING or value is None or (isinstance(value, str) and value == ""):
                return _Unknown(frozenset({_missing_path(scope, name)}))
            return value

        return var

    def _not(self, node: _Op) -> _KFn:
        negate = node.op == "!"
        f = self.compile(node.args[0])

        def not_(data: Any, budget: _Budget, scope: _Scope | None) -> Any:
            value = f(data, budget, scope)
            if type(value) is _Unknown:
                if value.truth is None:
                    return _Unknown(value.missing)
                return value.truth is not negate
            return (not value) if negate else bool(value)

        return not_

    def _and_or(self, node: _Op) -> _KFn:
        # `and` stops at the first falsy operand, `or` at the first truthy one ("decisive"). An
        # operand of unknown truthiness before the decisive one makes the value unknown but, once a
        # decisive operand is found, not its truthiness.
        decisive = node.op == "or"
        fns = tuple(self.compile(a) for a in node.args)

        def and_or(data: Any, budget: _Budget, scope: _Scope | None) -> Any:
            pending: list[_Unknown] = []
            value: Any = False
            for f in fns:
                value = f(data, budget, scope)
                truth = value.truth if type(value) is _Unknown else bool(value)
                if truth is None:
                    pending.append(value)
                elif truth is decisive:
                    return _unknown_of(pending, decisive) if pending else value
            if pending:
                return _unknown_of(pending)
            return value

        return and_or

    def _if(self, node: _Op) -> _KFn:
        fns = tuple(self.compile(a) for a in node.args)

        def branch(i: int, data: Any, budget: _Budget, scope: _Scope | None) -> Any:
            remaining = len(fns) - i
            if remaining <= 0:
                return None
            if remaining == 1:
                return fns[i](data, budget, scope)
            cond = fns[i](data, budget, scope)
            truth = _truth(cond)
            if truth is True:
                return fns[i + 1](data, budget, scope)
            if truth is False:
                return branch(i + 2, data, budget, scope)
            # Unknown condition: the result is known only if both ways agree.
            then = fns[i + 1](data, budget, scope)
            other = branch(i + 2, data, budget, scope)
            if type(then) is not _Unknown and type(other) is not _Unknown and _same(then, other):
                return then
            t1, t2 = _truth(then), _truth(other)
            return _unknown_of((cond, then, other), t1 if t1 is not None and t1 == t2 else None)

        return lambda data, budget, scope: branch(0, data, budget, scope)

    def _scoped(self, node: _Op) -> _KFn:
        op = node.op
        array_node = node.args[0]
        array_fn = self.compile(array_node)
        logic = self.compile(node.args[1])
        cost = _size(node.args[1])
        initial_fn = self.compile(node.args[2]) if len(node.args) > 2 else None
        if (
            isinstance(array_node, _Op)
            and array_node.op == "var"
            and len(array_node.args) >= 1
            and isinstance(array_node.args[0], _Literal)
        ):
            label = "" if array_node.args[0].value is None else str(array_node.args[0].value)
        else:
            label = f"<{op}>"

        def scoped(data: Any, budget: _Budget, outer: _Scope | None) -> Any:
            array = array_fn(data, budget, outer)
            if type(array) is _Unknown:
                return _Unknown(array.missing)
            scope = _Scope(outer, label, op == "reduce")
            if op == "reduce":
                acc = None if initial_fn is None else initial_fn(data, budget, outer)
                if not isinstance(array, _ARRAY_TYPES):
                    return acc
                for i, item in enumerate(array):
                    budget.charge(cost)
                    scope.index = i
                    frame = _ReduceFrame(accumulator=acc, current=item)
                    acc = logic(frame, budget, scope)
                    if type(acc) is not _Unknown:
                        _charge_value(acc, budget)
                return acc
            if not isinstance(array, _ARRAY_TYPES):
                return [] if op in ("map", "filter") else op == "none"
            pending: list[Any] = []
            if op == "map":
                out = []
                for i, item in enumerate(array):
                    budget.charge(cost)
                    scope.index = i
                    value = logic(item, budget, scope)
                    if type(value) is _Unknown:
                        pending.append(value)
                    out.append(value)
                # A non-empty list is truthy whatever its elements are.
                return _unknown_of(pending, True) if pending else out
            if op == "filter":
                kept = []
                for i, item in enumerate(array):
                    budget.charge(cost)
                    scope.index = i
                    value = logic(item, budget, scope)
                    truth = _truth(value)
                    if truth is None:
                        pending.append(value)
                    elif truth:
                        kept.append(item)
                return _unknown_of(pending, True if kept else None) if pending else kept
            if op == "all" and not array:
                return False
            # all: a falsy element decides (False); some: a truthy one decides (True);
            # none: a truthy one decides (False).
            decisive = op != "all"
            for i, item in enumerate(array):
                budget.charge(cost)
                scope.index = i
                value = logic(item, budget, scope)
                truth = _truth(value)
                if truth is None:
                    pending.append(value)
                elif truth is decisive:
                    return op == "some"
            if pending:
                return _unknown_of(pending)
            return op != "some"

        return scoped


# ---------------------------------------------------------------------------------------------------
# Public API


class ConditionStatus(enum.Enum):
    FIRED = "FIRED"
    NOT_FIRED = "NOT_FIRED"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


@dataclass(frozen=True, slots=True)
class ConditionOutcome:
    status: ConditionStatus
    # Only for INSUFFICIENT_DATA: the variable paths whose absence left the condition undecided,
    # sorted. Paths inside map/filter/... are qualified with the array and index
    # ("medications.1.dose_mg"), or with "<op>" when the array was computed.
    missing: tuple[str, ...] = ()


class CompiledLogic:
    __slots__ = ("_kleene", "_plain", "depth", "limits", "logic", "node_count", "operators")

    def __init__(self, logic: Any, limits: LogicLimits = DEFAULT_LIMITS) -> None:
        parser = _Parser(limits)
        tree = parser.parse(logic, 1, "$")
        plain = _PlainCompiler(limits)
        self.logic: Any = logic
        self.limits = limits
        self.node_count = parser.nodes
        self.depth = parser.depth
        self.operators: frozenset[str] = frozenset(parser.operators)
        self._plain = plain.compile(tree)
        self._kleene = _KleeneCompiler(limits, plain).compile(tree)

    def evaluate(self, data: Any = None) -> Any:
        # qubit evaluates against {} when given no data; any other value, falsy or not, is data.
        return self._plain({} if data is None else data, _Budget(self.limits.max_steps))

    def __repr__(self) -> str:
        return f"CompiledLogic(nodes={self.node_count}, operators={sorted(self.operators)})"


def compile_logic(logic: Any, *, limits: LogicLimits = DEFAULT_LIMITS) -> CompiledLogic:
    return CompiledLogic(logic, limits)


def evaluate_condition(compiled: CompiledLogic, facts: Any) -> ConditionOutcome:
    value = compiled._kleene({} if facts is None else facts, _Budget(compiled.limits.max_steps), None)
    truth = _truth(value)
    if truth is None:
        return ConditionOutcome(ConditionStatus.INSUFFICIENT_DATA, tuple(sorted(value.missing)))
    return ConditionOutcome(ConditionStatus.FIRED if truth else ConditionStatus.NOT_FIRED)


@lru_cache(maxsize=512)
def _compile_canonical(canonical: str) -> CompiledLogic:
    return CompiledLogic(json.loads(canonical))


def apply(logic: Any, data: Any = None) -> Any:
    try:
        canonical = json.dumps(logic, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        # Not JSON, or absurdly deep: let the compiler say precisely what is wrong.
        return compile_logic(logic).evaluate(data)
    return _compile_canonical(canonical).evaluate(data)


# ---------------------------------------------------------------------------------------------------
# Static analysis for the rules linter. These walk the raw JSON and never raise on a malformed rule
# (compile_logic is the place for that), except LogicLimitExceeded on absurd nesting.
#
# Paths are reported as written, qualified inside map/filter/all/none/some/reduce by the array's path
# and "*" ("medications.*.dose_mg"; reduce's "current.x" becomes "<array>.*.x" and its "accumulator"
# is not a fact, so it is left out). An array that is not a literal `var` is "<computed>". A `var`
# whose path is itself computed is reported as COMPUTED_PATH.

COMPUTED_PATH: Final = "<computed>"


def _args(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _as_op(node: Any) -> tuple[str, list[Any]] | None:
    if isinstance(node, dict) and len(node) == 1:
        ((op, value),) = node.items()
        if isinstance(op, str):
            return op, _args(value)
    return None


def _is_literal_name(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _static_path(prefix: tuple[str, bool] | None, name: Any) -> str | None:
    # prefix is (element path, is_reduce). None means "not a fact" (a reduce accumulator).
    path = "" if name is None else str(name)
    if prefix is None:
        return path
    element, is_reduce = prefix
    if is_reduce:
        if path == "current" or path.startswith("current."):
            return _join(element, path[len("current.") :])
        return None
    return _join(element, path)


class _Walker:
    def __init__(self) -> None:
        self.operators: set[str] = set()
        self.variables: dict[str, None] = {}  # ordered set
        self.guard_names: dict[str, None] = {}

    def walk(self, node: Any, prefix: tuple[str, bool] | None, depth: int = 0) -> None:
        if depth > DEFAULT_LIMITS.max_depth:
            raise LogicLimitExceeded(f"JsonLogic rule nested deeper than {DEFAULT_LIMITS.max_depth} levels")
        if isinstance(node, list | tuple):
            for item in node:
                self.walk(item, prefix, depth + 1)
            return
        parsed = _as_op(node)
        if parsed is None:
            return
        op, args = parsed
        self.operators.add(op)
        if op == "var":
            if args and _is_literal_name(args[0]):
                self._add(_static_path(prefix, args[0]))
            elif args:
                self._add(COMPUTED_PATH)
            self.walk(args, prefix, depth + 1)
        elif op in ("missing", "missing_some"):
            names_arg = args[1] if op == "missing_some" and len(args) > 1 else None
            names = (
                _args(names_arg)
                if op == "missing_some"
                else (list(args[0]) if args and isinstance(args[0], list | tuple) else args)
            )
            for name in names:
                if _is_literal_name(name):
                    path = _static_path(prefix, name)
                    self._add(path)
                    if path is not None:
                        self.guard_names[path] = None
                else:
                    self._add(COMPUTED_PATH)
                    self.walk(name, prefix, depth + 1)
        elif op in _SCOPED and len(args) >= 2:
            self.walk(args[0], prefix, depth + 1)
            self.walk(args[2:], prefix, depth + 1)
            self.walk(args[1], _element_prefix(prefix, args[0], op), depth + 1)
        else:
            self.walk(args, prefix, depth + 1)

    def _add(self, path: str | None) -> None:
        if path is not None:
            self.variables[path] = None


def _element_prefix(prefix: tuple[str, bool] | None, array: Any, op: str) -> tuple[str, bool]:
    parsed = _as_op(array)
    base: str | None = None
    if parsed is not None and parsed[0] == "var" and parsed[1] and _is_literal_name(parsed[1][0]):
        base = _static_path(prefix, parsed[1][0])
    return (_join(base if base is not None else "<computed>", "*"), op == "reduce")


def operators_used(logic: Any) -> set[str]:
    walker = _Walker()
    walker.walk(logic, None)
    return walker.operators


def variables_used(logic: Any) -> set[str]:
    """Paths read by `var`, `missing` and `missing_some`; see the section comment for qualification."""
    walker = _Walker()
    walker.walk(logic, None)
    return set(walker.variables)


def _guards(node: Any, prefix: tuple[str, bool] | None) -> set[str]:
    walker = _Walker()
    walker.walk(node, prefix)
    return set(walker.guard_names)


def unguarded_comparisons(logic: Any) -> list[str]:
    """Variables compared (==, ===, !=, !==, <, <=, >, >=) with no guard; first-seen order, no repeats.

    A compared `{"var": P}` is guarded when it has an explicit default, or when P is named by a
    `missing`/`missing_some` in an earlier operand of an enclosing `and`/`or`, or in a condition of an
    enclosing `if`/`?:` evaluated before it. The guard's polarity is not checked: `missing` appearing
    there is taken as the author having thought about absence. `in` is not a comparison here (its
    array operands are lists the fact model always provides). In evaluate_condition an unguarded
    comparison on a missing variable yields INSUFFICIENT_DATA, which is what the linter warns about.
    """
    found: dict[str, None] = {}

    def walk(node: Any, prefix: tuple[str, bool] | None, guarded: frozenset[str], depth: int) -> None:
        if depth > DEFAULT_LIMITS.max_depth:
            raise LogicLimitExceeded(f"JsonLogic rule nested deeper than {DEFAULT_LIMITS.max_depth} levels")
        if isinstance(node, list | tuple):
            for item in node:
                walk(item, prefix, guarded, depth + 1)
            return
        parsed = _as_op(node)
        if parsed is None:
            return
        op, args = parsed
        if op in _COMPARISONS:
            for arg in args:
                var = _as_op(arg)
                if var is not None and var[0] == "var" and len(var[1]) < 2:
                    name = var[1][0] if var[1] else None
                    if _is_literal_name(name):
                        path = _static_path(prefix, name)
                        if path is not None and path not in guarded:
                            found[path] = None
        if op in ("and", "or"):
            seen = guarded
            for arg in args:
                walk(arg, prefix, seen, depth + 1)
                seen = seen | _guards(arg, prefix)
        elif op in ("if", "?:"):
            seen = guarded
            for i, arg in enumerate(args):
                is_condition = i % 2 == 0 and i < len(args) - 1
                if is_condition:
                    walk(arg, prefix, seen, depth + 1)
                    seen = seen | _guards(arg, prefix)
                else:
                    walk(arg, prefix, seen, depth + 1)
        elif op in _SCOPED and len(args) >= 2:
            walk(args[0], prefix, guarded, depth + 1)
            walk(args[2:], prefix, guarded, depth + 1)
            walk(args[1], _element_prefix(prefix, args[0], op), guarded, depth + 1)
        else:
            walk(args, prefix, guarded, depth + 1)

    walk(logic, None, frozenset(), 0)
    return list(found)

"""Clinical rules: parsed and validated from the authored document, compiled once, indexed by relevance.

The document a clinician writes (rules/README.md) is the unit: the store keeps the same dict as JSONB,
so a rule read back from the database goes through exactly the validation a rule file does.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from engine.labs import lab_catalog
from engine.logic import CompiledLogic, LogicError, compile_logic
from engine.model import AlertKind, EvidenceLevel, Severity

__all__ = [
    "APPLIES_TO_DIMENSIONS",
    "DEMOGRAPHICS",
    "LAB_TYPES",
    "MAX_AGE_DAYS_LIMIT",
    "MAX_NESTING",
    "MAX_NODES",
    "RULE_TYPES",
    "STATUSES",
    "TIERS",
    "AppliesTo",
    "CompiledRule",
    "LoadedRule",
    "Rule",
    "RuleProblem",
    "RuleSet",
    "RuleValidationError",
    "document_bounds_problem",
    "find_rule_files",
    "load_rule_files",
    "logic_operators",
    "tier_allows",
]

RULE_TYPES = (
    "DRUG_INTERACTION",
    "ALLERGY_CHECK",
    "FOOD_INTERACTION",
    "DUPLICATE_THERAPY",
    "AGE_RESTRICTION",
    "PREGNANCY",
    "RENAL_DOSING",
    "CONDITION",
    "LAB_VALUE",
)
TIERS = ("BASIC", "ENHANCED", "PREMIUM")
STATUSES = ("active", "shadow", "retired")
DEMOGRAPHICS = ("age", "pregnancy", "sex", "lactation")
# The fact model's labs.<type>: the lab catalog's reading types (rules/knowledge/labs.yaml).
LAB_TYPES = lab_catalog().names
MAX_AGE_DAYS_LIMIT = 3650  # a rule's max_age_days: 1 day to 10 years
# applies_to key -> the dimension name used in relevance keys (see RuleSet.relevant)
APPLIES_TO_DIMENSIONS: dict[str, str] = {
    "ingredients": "ingredient",
    "classes": "class",
    "conditions": "condition",
    "food_groups": "food_group",
    "biometrics": "biometric",
    "demographics": "demographic",
}
SUMMARY_MAX = 140
# Bounds on a rule document, in a file or a JSONB row. Real rules nest about 10 lists and mappings deep
# and hold a few hundred values; past these, the walks below (and PyYAML's, jsonschema's, json's) would
# exhaust the stack or the memory, so a document beyond them is refused before anything walks it.
MAX_NESTING = 64  # lists and mappings, counting the rule's own mapping as 1
MAX_NODES = 50_000  # values, mapping keys included
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_TOP_KEYS = frozenset(
    {
        "id",
        "version",
        "title",
        "type",
        "kind",
        "severity",
        "evidence_level",
        "description",
        "applies_to",
        "when",
        "alert",
        "min_tier",
        "status",
        "max_age_days",
        "missing_reading",
        "cases",
    }
)
_ALERT_KEYS = frozenset({"summary", "detail", "recommendation", "references"})

Where = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class RuleProblem:
    where: Where  # path inside the document, e.g. ("alert", "summary")
    message: str

    def __str__(self) -> str:
        loc = ".".join(str(p) for p in self.where)
        return f"{loc}: {self.message}" if loc else self.message


class RuleValidationError(ValueError):
    def __init__(self, rule_id: str, problems: Sequence[RuleProblem]) -> None:
        self.rule_id = rule_id
        self.problems = tuple(problems)
        super().__init__(f"rule {rule_id or '?'}: " + "; ".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class AppliesTo:
    ingredients: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    food_groups: tuple[str, ...] = ()
    biometrics: tuple[str, ...] = ()
    demographics: tuple[str, ...] = ()

    def keys(self) -> Iterator[tuple[str, str]]:
        for attr, dimension in APPLIES_TO_DIMENSIONS.items():
            for value in getattr(self, attr):
                yield dimension, value

    def is_empty(self) -> bool:
        return not any(True for _ in self.keys())


def logic_operators(logic: Any) -> Iterator[tuple[str, Where]]:
    """Every operator in a JsonLogic tree with where it occurs (our own walk, so `method` is found
    whatever the compiler does). Depth-first, in document order; iterative, so depth costs no stack."""

    def children(node: Any, where: Where) -> Iterator[tuple[bool, Any, Where]]:
        # (True, operator, where it occurs) or (False, a value to walk, its place)
        if isinstance(node, dict):
            for key, value in node.items():
                yield True, str(key), where
                yield False, value, (*where, str(key))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield False, item, (*where, i)

    def walk() -> Iterator[tuple[str, Where]]:
        stack = [children(logic, ())]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                stack.pop()
                continue
            is_operator, item, where = step
            if is_operator:
                yield item, where
            elif isinstance(item, dict | list):
                stack.append(children(item, where))

    return walk()


def document_bounds_problem(doc: Any) -> RuleProblem | None:
    """Why `doc` is too deep or too big to walk (MAX_NESTING, MAX_NODES), or None.

    Measured iteratively, before any recursive walk; a cyclic document counts as too deep."""
    nodes = 0
    stack: list[tuple[Any, Where]] = [(doc, ())]
    while stack:
        node, where = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return RuleProblem((), f"more than {MAX_NODES:,} values; a rule is far smaller")
        if isinstance(node, Mapping | list | tuple):
            if len(where) >= MAX_NESTING:
                return RuleProblem(where[:MAX_NESTING], f"nested deeper than {MAX_NESTING} levels")
            if isinstance(node, Mapping):
                nodes += len(node)  # the keys
                stack.extend((value, (*where, str(key))) for key, value in node.items())
            else:
                stack.extend((item, (*where, i)) for i, item in enumerate(node))
    return None


def tier_allows(patient_tier: str, min_tier: str) -> bool:
    # An unknown tier gets what the lowest tier gets.
    rank = TIERS.index(patient_tier) if patient_tier in TIERS else 0
    return rank >= TIERS.index(min_tier)


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    title: str
    type: str
    kind: AlertKind
    severity: Severity
    evidence: EvidenceLevel
    description: str
    applies_to: AppliesTo
    when: Any
    summary: str
    detail: str
    recommendation: str
    references: tuple[str, ...]
    min_tier: Literal["BASIC", "ENHANCED", "PREMIUM"]
    status: Literal["active", "shadow", "retired"]
    cases: tuple[Mapping[str, Any], ...] = ()
    # labs.<type> -> how many days old its reading may be; an older one is insufficient data
    max_age_days: Mapping[str, int] = field(default_factory=dict)
    # A monitoring rule (fires on a recent abnormal value) says "quiet": a patient with no reading at all
    # of a max_age_days type is not reported for it; a reading too old, or undated, stays insufficient.
    missing_reading: Literal["insufficient", "quiet"] = "insufficient"
    document: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Rule:
        """Validate an authored rule document (YAML file or JSONB row) and build the rule.

        Raises RuleValidationError listing every problem, each with its place in the document.
        """
        problems: list[RuleProblem] = []

        def need(key: str, kind: type | tuple[type, ...], where: Where = ()) -> Any:
            container: Any = doc
            for step in where:
                container = container.get(step, {}) if isinstance(container, Mapping) else {}
            if not isinstance(container, Mapping) or key not in container:
                problems.append(RuleProblem(where, f"'{key}' is required"))
                return None
            value = container[key]
            # bool is an int in Python; a YAML `yes` must not pass as a version.
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
                problems.append(RuleProblem((*where, key), f"expected {names}, got {type(value).__name__}"))
                return None
            return value

        def choice(key: str, allowed: Iterable[str], default: str | None = None) -> str:
            allowed = tuple(allowed)
            value = doc.get(key, default)
            if value is None:
                problems.append(RuleProblem((), f"'{key}' is required"))
                return allowed[0]
            if value not in allowed:
                problems.append(RuleProblem((key,), f"{value!r} is not one of {', '.join(allowed)}"))
                return allowed[0]
            return str(value)

        if not isinstance(doc, Mapping):
            raise RuleValidationError("", [RuleProblem((), "a rule is a mapping")])
        too_big = document_bounds_problem(doc)
        if too_big is not None:
            # Nothing below walks it: a JSONB row this deep would end the walk with RecursionError.
            raw_id = doc.get("id")
            raise RuleValidationError(raw_id if isinstance(raw_id, str) else "", [too_big])
        rule_id = need("id", str) or ""
        if rule_id and not _ID.match(rule_id):
            problems.append(RuleProblem(("id",), "use lowercase letters, digits and single '-'"))
        for key in doc:
            if key not in _TOP_KEYS:
                problems.append(RuleProblem((str(key),), "unknown key"))
        version = need("version", int)
        if version is None:
            version = 1
        elif version < 1:
            problems.append(RuleProblem(("version",), "must be at least 1"))
        title = need("title", str) or ""
        rule_type = choice("type", RULE_TYPES)
        kind = AlertKind(choice("kind", [k.value for k in AlertKind]))
        severity = Severity[choice("severity", [s.name for s in Severity])]
        evidence = EvidenceLevel[choice("evidence_level", [e.name for e in EvidenceLevel], "UNKNOWN")]
        description = doc.get("description", "")
        if not isinstance(description, str):
            problems.append(RuleProblem(("description",), "expected text"))
            description = ""
        min_tier = choice("min_tier", TIERS, "BASIC")
        status = choice("status", STATUSES, "active")

        applies_doc = doc.get("applies_to", {})
        applies: dict[str, tuple[str, ...]] = {}
        if not isinstance(applies_doc, Mapping):
            problems.append(RuleProblem(("applies_to",), "expected a mapping"))
            applies_doc = {}
        for key, value in applies_doc.items():
            if key not in APPLIES_TO_DIMENSIONS:
                problems.append(RuleProblem(("applies_to", str(key)), "unknown key"))
                continue
            if value is None:
                value = []
            if not isinstance(value, list):
                problems.append(
                    RuleProblem(("applies_to", key), f"expected a list of names, got {type(value).__name__}")
                )
                continue
            bad = [i for i, v in enumerate(value) if not isinstance(v, str) or not v]
            for i in bad:
                got = "empty text" if value[i] == "" else type(value[i]).__name__
                problems.append(RuleProblem(("applies_to", key, i), f"expected a name, got {got}"))
            if not bad:
                applies[key] = tuple(value)
        for d in applies.get("demographics", ()):
            if d not in DEMOGRAPHICS:
                problems.append(
                    RuleProblem(("applies_to", "demographics"), f"{d!r} is not one of {', '.join(DEMOGRAPHICS)}")
                )

        if "when" not in doc:
            problems.append(RuleProblem((), "'when' is required"))
        when = doc.get("when")
        for op, where in logic_operators(when):
            if op == "method":
                problems.append(
                    RuleProblem(
                        ("when", *where), "the 'method' operator is refused: it calls arbitrary Python"
                    )
                )

        alert = doc.get("alert")
        summary = detail = recommendation = ""
        references: tuple[str, ...] = ()
        if not isinstance(alert, Mapping):
            problems.append(
                RuleProblem(("alert",) if alert is not None else (), "'alert' is required (a mapping)")
            )
        else:
            for key in alert:
                if key not in _ALERT_KEYS:
                    problems.append(RuleProblem(("alert", str(key)), "unknown key"))
            summary = need("summary", str, ("alert",)) or ""
            if len(summary) > SUMMARY_MAX:
                problems.append(
                    RuleProblem(("alert", "summary"), f"{len(summary)} characters; at most {SUMMARY_MAX}")
                )
            if not summary.strip() and "summary" in alert:
                problems.append(RuleProblem(("alert", "summary"), "is empty"))
            detail = alert.get("detail", "") if isinstance(alert.get("detail", ""), str) else ""
            recommendation = alert.get("recommendation", "")
            if not isinstance(recommendation, str):
                problems.append(RuleProblem(("alert", "recommendation"), "expected text"))
                recommendation = ""
            refs = alert.get("references", [])
            if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
                problems.append(RuleProblem(("alert", "references"), "expected a list of citations"))
                refs = []
            references = tuple(refs)

        max_age: dict[str, int] = {}
        max_age_doc = doc.get("max_age_days", {})
        if not isinstance(max_age_doc, Mapping):
            problems.append(RuleProblem(("max_age_days",), "expected a mapping of reading type to days"))
            max_age_doc = {}
        for lab, days in max_age_doc.items():
            if lab not in LAB_TYPES:
                problems.append(
                    RuleProblem(("max_age_days", str(lab)), f"{lab!r} is not a reading type of the lab catalog")
                )
            elif isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_AGE_DAYS_LIMIT:
                problems.append(
                    RuleProblem(("max_age_days", str(lab)), f"a whole number of days, 1 to {MAX_AGE_DAYS_LIMIT}")
                )
            else:
                max_age[str(lab)] = days

        missing_reading = doc.get("missing_reading", "insufficient")
        if missing_reading not in ("insufficient", "quiet"):
            problems.append(RuleProblem(("missing_reading",), "expected insufficient or quiet"))
            missing_reading = "insufficient"
        elif missing_reading == "quiet" and not max_age:
            problems.append(RuleProblem(("missing_reading",), "quiet needs max_age_days: the readings it is about"))

        cases = doc.get("cases", [])
        if not isinstance(cases, list) or not all(isinstance(c, Mapping) for c in cases):
            problems.append(RuleProblem(("cases",), "expected a list of cases"))
            cases = []

        if problems:
            raise RuleValidationError(rule_id, problems)
        return cls(
            id=rule_id,
            version=version,
            title=title,
            type=rule_type,
            kind=kind,
            severity=severity,
            evidence=evidence,
            description=description,
            applies_to=AppliesTo(**applies),
            when=when,
            summary=summary,
            detail=detail,
            recommendation=recommendation,
            references=references,
            min_tier=min_tier,  # type: ignore[arg-type]  # checked by choice()
            status=status,  # type: ignore[arg-type]
            cases=tuple(cases),
            max_age_days=max_age,
            missing_reading=missing_reading,
            document=doc,
        )


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    logic: CompiledLogic | None  # None when `when` did not compile: evaluating it is an error
    compile_error: str | None = None


@dataclass(frozen=True)
class RuleSet:
    """Active and shadow rules, each compiled once, indexed by what makes them relevant."""

    version: str
    rules: tuple[CompiledRule, ...]
    _index: Mapping[tuple[str, str], tuple[int, ...]] = field(repr=False)
    _always: tuple[int, ...] = field(repr=False)

    @classmethod
    def build(cls, rules: Iterable[Rule], version: str) -> RuleSet:
        by_id: dict[str, Rule] = {}
        for rule in rules:
            if rule.id in by_id:
                raise ValueError(f"rule id {rule.id!r} appears twice in one rule set")
            by_id[rule.id] = rule
        compiled: list[CompiledRule] = []
        for rule_id in sorted(by_id):
            rule = by_id[rule_id]
            if rule.status == "retired":
                continue
            try:
                compiled.append(CompiledRule(rule, compile_logic(rule.when)))
            except LogicError as exc:
                # Kept, not dropped: every evaluation it is relevant to reports it (complete=false).
                compiled.append(CompiledRule(rule, None, f"{type(exc).__name__}: {exc}"))
        index: dict[tuple[str, str], list[int]] = defaultdict(list)
        always: list[int] = []
        for i, item in enumerate(compiled):
            if item.rule.applies_to.is_empty():
                always.append(i)
            for key in item.rule.applies_to.keys():
                index[key].append(i)
        return cls(
            version=version,
            rules=tuple(compiled),
            _index={k: tuple(v) for k, v in index.items()},
            _always=tuple(always),
        )

    @property
    def compile_errors(self) -> tuple[CompiledRule, ...]:
        return tuple(r for r in self.rules if r.logic is None)

    def relevant(self, keys: Iterable[tuple[str, str]]) -> list[CompiledRule]:
        """Rules any of whose applies_to entries the patient has, plus rules that apply to everyone.

        keys are (dimension, value): ("ingredient", "metformin"), ("class", "ssri"),
        ("condition", "heart_failure"), ("food_group", "grapefruit"), ("biometric", "egfr"),
        ("demographic", "age"). Returned in rule id order, so evaluation is deterministic.
        """
        hits = set(self._always)
        for key in keys:
            hits.update(self._index.get(key, ()))
        return [self.rules[i] for i in sorted(hits)]

    def __len__(self) -> int:
        return len(self.rules)


# --------------------------------------------------------------------------------------------------
# Rule files


@dataclass(frozen=True)
class LoadedRule:
    path: Path
    document: Mapping[str, Any] | None
    lines: Mapping[Where, int]
    rule: Rule | None
    problems: tuple[RuleProblem, ...] = ()

    def line_of(self, where: Where) -> int:
        """The line of `where`, or of its nearest ancestor the file spells out."""
        while where:
            if where in self.lines:
                return self.lines[where]
            where = where[:-1]
        return self.lines.get((), 1)

    def located(self, problem: RuleProblem) -> str:
        return f"{self.path}:{self.line_of(problem.where)}: {problem}"

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(self.located(p) for p in self.problems)


_NOT_RULES = frozenset({"knowledge", "schema"})


def find_rule_files(paths: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                rel = candidate.relative_to(path).parts
                if candidate.suffix in (".yaml", ".yml") and not _NOT_RULES.intersection(rel[:-1]):
                    found.append(candidate)
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def _record_lines(
    node: yaml.Node, where: Where, lines: dict[Where, int], problems: list[RuleProblem]
) -> None:
    lines.setdefault(where, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                # PyYAML keeps the last of two equal keys without a word; a clinician who wrote
                # `severity:` twice must hear about it.
                problems.append(RuleProblem((*where, key), "key appears twice in one mapping"))
            seen.add(key)
            lines[(*where, key)] = key_node.start_mark.line + 1
            _record_lines(value_node, (*where, key), lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, (*where, i), lines, problems)


_YAML_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


def _line_at(text: str, index: int) -> int:
    """The line of text[index], counting line breaks the way PyYAML's marks do."""
    return len(_YAML_LINE_BREAK.findall(text, 0, max(0, index))) + 1


def _yaml_error_line(text: str, exc: yaml.YAMLError) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    position = getattr(exc, "position", None)  # a ReaderError: a character YAML does not allow
    return _line_at(text, position) if isinstance(position, int) else 1


def _yaml_event_problem(text: str) -> tuple[int, RuleProblem] | None:
    """Scan the YAML event stream, which PyYAML produces without recursion, for what composing it would
    choke on: an alias (a billion laughs, a cycle), nesting past MAX_NESTING, more than MAX_NODES
    values. The line and the problem, or None (a syntax error is left to the composer to report)."""
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark is not None else 1
            if isinstance(event, yaml.AliasEvent):
                return line, RuleProblem(
                    (),
                    f"alias *{event.anchor} refused: rule files do not use YAML anchors (&) and aliases (*); "
                    "write the value out",
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    return line, RuleProblem((), f"nested deeper than {MAX_NESTING} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    return line, RuleProblem((), f"more than {MAX_NODES:,} values; a rule is far smaller")
    except yaml.YAMLError:
        return None
    return None


def _unconstructable_line(root: yaml.Node) -> int:
    """The line of the first scalar PyYAML cannot construct (`2024-13-45`, `!!int x`), else 1."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            try:
                yaml.constructor.SafeConstructor().construct_object(node)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError):
                return int(node.start_mark.line) + 1
        elif isinstance(node, yaml.MappingNode):
            stack.extend(child for pair in reversed(node.value) for child in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return 1


def _not_loaded(path: Path, line: int, problem: RuleProblem) -> LoadedRule:
    return LoadedRule(path, None, {(): line}, None, (problem,))


def parse_rule_text(text: str, path: Path) -> LoadedRule:
    """Parse one rule file. Never raises: whatever is wrong is a problem located in the file."""
    problems: list[RuleProblem] = []
    lines: dict[Where, int] = {}
    refused = _yaml_event_problem(text)
    if refused is not None:
        return _not_loaded(path, *refused)
    loader: yaml.SafeLoader | None = None
    node: yaml.Node | None = None
    try:
        loader = yaml.SafeLoader(text)  # refuses characters YAML does not allow (ReaderError)
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
        if node is not None:
            _record_lines(node, (), lines, problems)
    except yaml.YAMLError as exc:
        return _not_loaded(path, _yaml_error_line(text, exc), RuleProblem((), f"not valid YAML: {exc}"))
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors let some out: a date like 2024-13-45, `!!int x`.
        line = _unconstructable_line(node) if node is not None else 1
        return _not_loaded(path, line, RuleProblem((), f"not valid YAML: {exc}"))
    except RecursionError:
        # Last resort: the event scan above bounds nesting, so this should not happen.
        return _not_loaded(path, 1, RuleProblem((), "nested too deeply to read"))
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(document, dict):
        problems.append(RuleProblem((), "a rule file holds one mapping (see rules/README.md)"))
        return LoadedRule(path, None, lines, None, tuple(problems))
    # Values the fact model cannot hold (YAML dates, binary) would not survive JSONB either.
    try:
        json.dumps(document)
    except (TypeError, ValueError) as exc:
        problems.append(RuleProblem((), f"not representable as JSON: {exc}"))
    rule: Rule | None = None
    try:
        rule = Rule.from_dict(document)
    except RuleValidationError as exc:
        problems.extend(exc.problems)
    if problems:
        rule = None
    return LoadedRule(path, document, lines, rule, tuple(problems))


def _not_utf8(path: Path) -> LoadedRule:
    """A file that is not UTF-8: the problem on the line of its first bad byte."""
    line, detail = 1, ""
    try:
        data = path.read_bytes()
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        line, detail = _line_at(before, len(before)), f" (byte {data[exc.start]:#04x})"
    except OSError:
        pass
    return _not_loaded(path, line, RuleProblem((), f"not UTF-8 text{detail}"))


def load_rule_files(paths: Iterable[str | Path]) -> list[LoadedRule]:
    """Load every rule file under the given files or folders, keeping lines for error messages."""
    loaded: list[LoadedRule] = []
    for path in find_rule_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            loaded.append(
                LoadedRule(path, None, {}, None, (RuleProblem((), f"cannot read: {exc.strerror}"),))
            )
            continue
        except UnicodeDecodeError:
            loaded.append(_not_utf8(path))
            continue
        loaded.append(parse_rule_text(text, path))
    return loaded

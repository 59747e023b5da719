"""`praneya rules lint` and `praneya rules test`: check rule files and run their cases, offline.

Both read the knowledge files next to the rules (`rules/knowledge/`) or from an explicit folder, and
print one line per finding as `file:line: error|warning: message`, the way compilers do, so editors
can jump to it.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jsonschema

from engine.cases import CaseFormatError, cases_of_rule, run_case
from engine.knowledge import Knowledge, KnowledgeFileError, Vocabulary, load_knowledge_files
from engine.logic import (
    COMPUTED_PATH,
    OPERATORS,
    LogicError,
    compile_logic,
    unguarded_comparisons,
    variables_used,
)
from engine.rules import LAB_TYPES, LoadedRule, Where, load_rule_files, logic_operators

__all__ = ["LintReport", "lint", "lint_main", "run_rule_cases", "test_main"]

_REPO_RULES = Path(__file__).resolve().parents[1] / "rules"

# Fact-model fields (rules/README.md) that are always present, so comparing them needs no guard.
_LISTS = ("ingredients", "classes", "allergens", "conditions", "foods", "food_groups")
_MEDICATION_FIELDS = (
    "id",
    "name",
    "ingredients",
    "classes",
    "dose",
    "dose_mg",
    "route",
    "frequency",
    "proposed",
)
_ALLERGY_FIELDS = ("id", "allergen", "category", "severity", "reactions")
_DEMOGRAPHIC_FIELDS = ("age_years", "age_months", "age_days")
_PREGNANCY_FIELDS = ("status", "gestational_weeks", "gestational_days", "trimester")
_ALWAYS_PRESENT_ROOTS = frozenset({"tier", "counts", *_LISTS, "proposed", "current"})


@dataclass
class LintReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _find_upwards(paths: Iterable[str | Path], relative: str) -> Path | None:
    for raw in paths:
        start = Path(raw).resolve()
        for folder in (start, *start.parents) if start.is_dir() else start.parents:
            if (folder / relative).exists():
                return folder / relative
            if (folder / "rules" / relative).exists():
                return folder / "rules" / relative
    return None


def _knowledge_dir(paths: list[str], explicit: str | Path | None) -> Path:
    if explicit is not None:
        return Path(explicit)
    found = _find_upwards(paths, "knowledge/vocabulary.yaml")
    return found.parent if found is not None else _REPO_RULES / "knowledge"


def _schema(paths: list[str]) -> dict[str, Any]:
    found = _find_upwards(paths, "schema/rule.schema.json") or _REPO_RULES / "schema" / "rule.schema.json"
    schema: dict[str, Any] = json.loads(found.read_text(encoding="utf-8"))
    return schema


# --------------------------------------------------------------------------------------------------
# Checks on `when`


def _check_variable(path: str, vocabulary: Vocabulary) -> str | None:
    """None when `path` names something in the fact model, else why not."""
    if path == COMPUTED_PATH or path.startswith(COMPUTED_PATH):
        return None if path != COMPUTED_PATH else "a variable name is computed; the linter cannot check it"
    parts = ["*" if p.isdigit() else p for p in path.split(".")] if path else [""]
    head, rest = parts[0], parts[1:]

    def ok(condition: bool) -> str | None:
        return None if condition else f"variable {path!r} is not in the fact model (rules/README.md)"

    if head in ("age", "sex", "pregnant", "tier", "lactating", "weight_kg", "height_cm", "bsa_m2"):
        return ok(not rest)
    if head == "demographics":
        return ok(len(rest) == 1 and rest[0] in _DEMOGRAPHIC_FIELDS)
    if head == "pregnancy":
        return ok(len(rest) == 1 and rest[0] in _PREGNANCY_FIELDS)
    if head in _LISTS:
        return ok(rest in ([], ["*"]))
    if head in ("proposed", "current"):
        return ok(not rest or (rest[0] in ("ingredients", "classes") and rest[1:] in ([], ["*"])))
    if head == "medications":
        return ok(
            (len(rest) <= 1 and rest in ([], ["*"]))
            or (
                (len(rest) >= 2 and rest[0] == "*" and rest[1] in _MEDICATION_FIELDS)
                and (len(rest) == 2 or (rest[1] in ("ingredients", "classes") and rest[2:] == ["*"]))
            )
        )
    if head == "allergies":
        return ok(
            rest in ([], ["*"])
            or (
                (len(rest) >= 2 and rest[0] == "*" and rest[1] in _ALLERGY_FIELDS)
                and (len(rest) == 2 or (rest[1] == "reactions" and rest[2:] == ["*"]))
            )
        )
    if head == "labs":
        if len(rest) == 1 and rest[0] not in LAB_TYPES:
            return f"labs.{rest[0]} is not a known reading ({', '.join(LAB_TYPES)})"
        return ok(len(rest) <= 1)
    if head == "counts":
        if len(rest) == 1 and rest[0] not in vocabulary.classes:
            return f"counts.{rest[0]}: {rest[0]!r} is not a drug class in the vocabulary"
        return ok(len(rest) <= 1)
    return ok(False)


def _literal_ids(logic: Any) -> Iterator[tuple[str, str, Where]]:
    """(list variable, literal, where) for `{"in": ["ssri", {"var": "classes"}]}`-style tests."""

    def walk(node: Any, where: Where) -> Iterator[tuple[str, str, Where]]:
        if isinstance(node, dict):
            for op, args in node.items():
                if op == "in" and isinstance(args, list) and len(args) == 2 and isinstance(args[0], str):
                    target = args[1]
                    if isinstance(target, dict) and isinstance(target.get("var"), str):
                        yield target["var"].split(".")[-1], args[0], where
                yield from walk(args, (*where, str(op)))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, (*where, i))

    return walk(logic, ())


def _known(vocabulary: Vocabulary, dimension: str, value: str) -> bool:
    if dimension in ("ingredients",):
        return value in vocabulary.ingredients
    if dimension == "classes":
        return value in vocabulary.classes
    if dimension == "conditions":
        return value in vocabulary.conditions
    if dimension in ("food_groups", "foods"):
        return value in vocabulary.foods or value in vocabulary.food_groups
    if dimension == "allergens":
        # `allergens` holds allergen group names, or the ingredient, class or food an allergy was
        # recorded as ("amoxicillin"); see Vocabulary.normalize_allergen.
        return any(
            value in names
            for names in (
                vocabulary.allergens,
                vocabulary.ingredients,
                vocabulary.classes,
                vocabulary.foods,
                vocabulary.food_groups,
            )
        )
    return True


def _is_always_present(path: str) -> bool:
    return path.split(".")[0] in _ALWAYS_PRESENT_ROOTS


# --------------------------------------------------------------------------------------------------
# Lint


def _lint_vocabulary(knowledge: Knowledge, where: str, report: LintReport) -> None:
    vocabulary = knowledge.vocabulary
    for name, ingredient in sorted(vocabulary.ingredients.items()):
        for cls in ingredient.classes:
            if cls not in vocabulary.classes:
                report.errors.append(f"{where}: error: ingredient {name!r} lists unknown class {cls!r}")
    _lint_fda_classes(vocabulary, where, report)
    for alias, targets in sorted(vocabulary.aliases.items()):
        for target in targets:
            if target not in vocabulary.ingredients:
                report.errors.append(
                    f"{where}: error: alias {alias!r} points to unknown ingredient {target!r}"
                )
    for name, allergen in sorted(vocabulary.allergens.items()):
        for cls in (*allergen.match_classes, *(c.target for c in allergen.cross if c.target_kind == "class")):
            if cls not in vocabulary.classes:
                report.errors.append(f"{where}: error: allergen {name!r} names unknown class {cls!r}")


def fda_class_problems(vocabulary: Vocabulary) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the classes that follow FDA pharmacologic classes (`fda` in
    vocabulary.yaml): a member FDA does not index in one of them must be listed in `outside_fda`
    (with its source); an `outside_fda` entry must be a member, and is stale once FDA indexes it."""
    errors: list[str] = []
    warnings: list[str] = []
    members: dict[str, list[str]] = {}
    for name, ingredient in vocabulary.ingredients.items():
        for cls in ingredient.classes:
            members.setdefault(cls, []).append(name)
    # FDA's substance name may be an alias of the ingredient (an ester: "sulfisoxazole acetyl")
    fda_names: dict[str, set[str]] = {}
    for alias, targets in vocabulary.aliases.items():
        if len(targets) == 1:
            fda_names.setdefault(targets[0], set()).add(alias)

    def fda_classes_of(name: str) -> set[str]:
        found = set(vocabulary.pharm_classes_of(name))
        for alias in fda_names.get(name, ()):
            found.update(vocabulary.pharm_classes_of(alias))
        return found

    for cls_rec in sorted(vocabulary.classes.values(), key=lambda c: c.id):
        if not cls_rec.fda:
            if cls_rec.outside_fda:
                errors.append(f"class {cls_rec.id!r} lists outside_fda but follows no FDA class (fda)")
            continue
        follows = set(cls_rec.fda)
        for name in sorted(members.get(cls_rec.id, ())):
            indexed = follows.intersection(fda_classes_of(name))
            if not indexed and name not in cls_rec.outside_fda:
                errors.append(
                    f"ingredient {name!r} is in class {cls_rec.id!r}, but FDA does not index it in "
                    f"{', '.join(sorted(follows))} and the class does not list it in outside_fda"
                )
            elif indexed and name in cls_rec.outside_fda:
                warnings.append(
                    f"class {cls_rec.id!r} lists {name!r} in outside_fda, but FDA indexes it in "
                    f"{', '.join(sorted(indexed))}"
                )
        for name in cls_rec.outside_fda:
            if name not in members.get(cls_rec.id, ()):
                errors.append(f"class {cls_rec.id!r} lists {name!r} in outside_fda, but it is not a member")
    return errors, warnings


def _lint_fda_classes(vocabulary: Vocabulary, where: str, report: LintReport) -> None:
    errors, warnings = fda_class_problems(vocabulary)
    report.errors.extend(f"{where}: error: {e}" for e in errors)
    report.warnings.extend(f"{where}: warning: {w}" for w in warnings)


def _schema_problems(err: jsonschema.ValidationError) -> list[tuple[Where, str]]:
    """(where, message) of one schema error; an unexpected key is placed on its own line."""
    where: Where = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
        extra = [k for k in err.instance if k not in allowed]
        if extra and allowed:
            known = ", ".join(sorted(allowed))
            return [((*where, k), f"unknown key (known: {known})") for k in extra]
    return [(where, err.message)]


def _did_you_mean(vocabulary: Vocabulary, dimension: str, value: str) -> str:
    """ " (did you mean 'warfarin'?)" for a near miss of an ingredient or a class, else ""."""
    if dimension == "ingredients":
        close = [s for s in vocabulary.suggest(value) if s in vocabulary.ingredients] or difflib.get_close_matches(
            value, list(vocabulary.ingredients), n=3, cutoff=0.8
        )
    elif dimension == "classes":
        close = difflib.get_close_matches(value, list(vocabulary.classes), n=3, cutoff=0.6)
    else:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


_SINGULAR = {"ingredients": "ingredient", "classes": "class", "conditions": "condition", "allergens": "allergen"}


def _lint_rule(
    loaded: LoadedRule, knowledge: Knowledge, validator: jsonschema.Draft202012Validator
) -> LintReport:
    report = LintReport()

    def error(where: Where, message: str) -> None:
        report.errors.append(f"{loaded.path}:{loaded.line_of(where)}: error: {message}")

    def warning(where: Where, message: str) -> None:
        report.warnings.append(f"{loaded.path}:{loaded.line_of(where)}: warning: {message}")

    document = loaded.document
    # The schema and the loader check some of the same things (an unknown severity, an unknown
    # key): each problem is reported once, at the line of the key it is about, in the schema's words
    # (what editors show from rule.schema.json).
    reported: set[Where] = set()
    if document is not None:
        try:
            schema_errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
        except RecursionError:
            # jsonschema recurses per level; the loader's nesting bound should keep it from getting here.
            error((), "schema: the document is nested too deeply to check")
            schema_errors = []
        for where, message in dict.fromkeys(p for err in schema_errors for p in _schema_problems(err)):
            reported.add(where)
            error(where, f"schema: {'.'.join(str(p) for p in where) or '(top)'}: {message}")
    for problem in loaded.problems:
        if problem.where not in reported or not problem.where:
            error(problem.where, str(problem))
    if document is None:
        return report

    vocabulary = knowledge.vocabulary
    when = document.get("when")
    for op, where in logic_operators(when):
        if op != "method" and op not in OPERATORS:
            error(("when", *where), f"unknown operator {op!r}")
    try:
        compile_logic(when)
    except LogicError as exc:
        error(("when",), f"condition does not compile: {exc}")
    else:
        try:
            # These count lists as levels too, so a `when` the compiler accepts can exceed their depth.
            used, unguarded = sorted(variables_used(when)), unguarded_comparisons(when)
        except LogicError as exc:
            error(("when",), f"condition is too deep to check its variables: {exc}")
            used, unguarded = [], []
        for path in used:
            why = _check_variable(path, vocabulary)
            if why:
                error(("when",), why)
        # Every reading a rule compares must be recent enough for it: the rule says how recent.
        max_age = document.get("max_age_days")
        stated = max_age if isinstance(max_age, dict) else {}
        for lab in sorted({p.split(".")[1] for p in used if p.startswith("labs.") and p.count(".") == 1}):
            if lab in LAB_TYPES and lab not in stated:
                error(
                    ("when",),
                    f"labs.{lab}: say how recent its reading must be (max_age_days: {{{lab}: DAYS}}); "
                    "an older reading is then insufficient data",
                )
        for lab in stated:
            if isinstance(lab, str) and f"labs.{lab}" not in used:
                warning(("max_age_days", lab), f"max_age_days.{lab}: the rule does not read labs.{lab}")
        for path in unguarded:
            if not _is_always_present(path):
                warning(
                    ("when",),
                    f"comparison on {path!r}, which may be missing, without a guard: "
                    "patients without it get 'insufficient data'",
                )
        for variable, literal, where in _literal_ids(when):
            if not _known(vocabulary, variable, literal):
                noun = _SINGULAR.get(variable, variable.rstrip("s"))
                hint = _did_you_mean(vocabulary, variable, literal)
                error(("when", *where), f"{literal!r} is not a known {noun} in the vocabulary{hint}")

    applies = document.get("applies_to")
    if isinstance(applies, dict):
        for dimension in ("ingredients", "classes", "conditions", "food_groups"):
            names = applies.get(dimension)
            if not isinstance(names, list):
                continue  # not a list: Rule.from_dict has said so
            for i, value in enumerate(names):
                if isinstance(value, str) and not _known(vocabulary, dimension, value):
                    error(
                        ("applies_to", dimension, i),
                        f"applies_to.{dimension}: {value!r} is not in the vocabulary"
                        + _did_you_mean(vocabulary, dimension, value),
                    )

    rule = loaded.rule
    if rule is not None:
        try:
            cases = cases_of_rule(rule, loaded)
        except CaseFormatError as exc:
            error(("cases",), str(exc))
        else:
            if not any(c.expect.fires is True for c in cases):
                error(("cases",), "no case in which the rule fires")
            if not any(c.expect.fires is False for c in cases):
                error(("cases",), "no case in which the rule does not fire")
    return report


def lint(paths: list[str], knowledge: Knowledge, schema: dict[str, Any]) -> LintReport:
    report = LintReport()
    validator = jsonschema.Draft202012Validator(schema)
    loaded_rules = load_rule_files(paths)
    if not loaded_rules:
        report.errors.append(f"{', '.join(paths)}: error: no rule files found")
    ids: dict[str, list[LoadedRule]] = defaultdict(list)
    for loaded in loaded_rules:
        sub = _lint_rule(loaded, knowledge, validator)
        report.errors.extend(dict.fromkeys(sub.errors))
        report.warnings.extend(dict.fromkeys(sub.warnings))
        rule_id = loaded.document.get("id") if loaded.document else None
        if isinstance(rule_id, str):
            ids[rule_id].append(loaded)
    for rule_id, holders in sorted(ids.items()):
        if len(holders) > 1:
            for loaded in holders:
                others = ", ".join(str(h.path) for h in holders if h is not loaded)
                line = loaded.line_of(("id",))
                report.errors.append(
                    f"{loaded.path}:{line}: error: duplicate rule id {rule_id!r} (also in {others})"
                )
    return report


def _load_knowledge(paths: list[str], knowledge_dir: str | Path | None, out: TextIO) -> Knowledge | None:
    directory = _knowledge_dir(paths, knowledge_dir)
    try:
        return load_knowledge_files(directory)
    except KnowledgeFileError as exc:
        print(f"{directory}: error: knowledge did not load: {exc}", file=out)
        return None


def lint_main(paths: list[str], knowledge_dir: str | Path | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    paths = list(paths) or ["rules"]
    knowledge = _load_knowledge(paths, knowledge_dir, out)
    if knowledge is None:
        return 1
    report = LintReport()
    _lint_vocabulary(knowledge, str(_knowledge_dir(paths, knowledge_dir) / "vocabulary.yaml"), report)
    sub = lint(paths, knowledge, _schema(paths))
    report.errors.extend(sub.errors)
    report.warnings.extend(sub.warnings)
    for line in [*report.errors, *report.warnings]:
        print(line, file=out)
    print(f"rules lint: {len(report.errors)} error(s), {len(report.warnings)} warning(s)", file=out)
    return 1 if report.errors else 0


def test_main(paths: list[str], knowledge_dir: str | Path | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    paths = list(paths) or ["rules"]
    knowledge = _load_knowledge(paths, knowledge_dir, out)
    if knowledge is None:
        return 1
    loaded_rules = load_rule_files(paths)
    if not loaded_rules:
        print(f"{', '.join(paths)}: error: no rule files found", file=out)
        return 1
    total, problems = run_rule_cases(loaded_rules, knowledge)
    for line in problems:
        print(line, file=out)
    print(f"rules test: {total} case(s), {len(problems)} failure(s)", file=out)
    return 1 if problems or total == 0 else 0


def run_rule_cases(loaded_rules: Iterable[LoadedRule], knowledge: Knowledge) -> tuple[int, list[str]]:
    """Run every case of every rule: (cases run, one line per failure naming the rule and the case).
    What `rules test` prints, and what stops `rules sync` before it writes anything."""
    failures: list[str] = []
    total = 0
    for loaded in loaded_rules:
        if loaded.rule is None:
            failures.extend(f"{line} (run `praneya rules lint`)" for line in loaded.errors)
            continue
        try:
            cases = cases_of_rule(loaded.rule, loaded)
        except CaseFormatError as exc:
            failures.append(f"error: {exc}")
            continue
        for case in cases:
            total += 1
            result = run_case(case, knowledge)
            if not result.passed:
                failures.append(f"FAIL {case.location} {case.case_id}: {result.reason}")
    return total, failures


# pytest collects module-level names starting with "test"; this one is a command, not a test.
test_main.__test__ = False  # type: ignore[attr-defined]

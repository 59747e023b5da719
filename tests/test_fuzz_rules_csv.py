"""Property-based fuzzing of rule files and interaction-import CSVs: only documented errors, no hangs.

Rules. Documents and YAML texts go through every entry point a rule takes: `parse_rule_text` (the
file loader; it reports problems, it never raises), `Rule.from_dict` (RuleValidationError only: the
same validation a JSONB row from the database gets), `RuleSet.build` (a `when` that does not compile is
kept with its LogicError, never raised), `lint` (findings are report lines; it never raises) and
`evaluate_condition` on random fact documents (a ConditionOutcome, or a LogicError subclass). The
drawn inputs: random YAML text; structurally valid rules whose `when` is a random JsonLogic tree
(allow-listed, unknown and forbidden operators, `method` anywhere, wrong arities), nested 200+ levels,
with huge arrays and strings; non-JSON values (dates, binary); anchors and aliases with a bounded
expansion. Input sizes are bounded so that every example is quick.

The crashes fuzzing found (the cyclic and billion-laughs YAML documents, nesting past Python's
recursion limit, control characters, cases that are not mappings, CSV fields over the csv module's
limit, CR line ends, NUL characters, files that are not UTF-8) have tests of their own at the end of
each part. A rule file or document is refused past MAX_NESTING lists and mappings or MAX_NODES values,
and a rule file with any YAML alias is refused.

CSVs. `parse_interactions_csv` on random text, random bytes decoded the way `praneya knowledge
import` decodes them, wrong headers, huge fields, quotes, CRLF, BOM, NULs and a 100,000-row file:
the answer is a CsvImportError whose every message starts with "line N:", or a list of well-formed
pairs (kinds known, names non-empty, severities on our scale, no two with the same id, never two foods).
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.knowledge import (
    CsvImportError,
    InteractionPair,
    Knowledge,
    load_knowledge_files,
    parse_interactions_csv,
)
from engine.logic import (
    OPERATORS,
    ConditionOutcome,
    LogicError,
    compile_logic,
    evaluate_condition,
)
from engine.model import EvidenceLevel, Severity
from engine.rules import MAX_NESTING, LoadedRule, Rule, RuleSet, RuleValidationError, parse_rule_text
from engine.ruletool import LintReport, lint

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _base_rule() -> dict[str, Any]:
    doc = yaml.safe_load((RULES / "ddi" / "ddi-clopidogrel-omeprazole.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    Rule.from_dict(doc)  # the starting point is valid
    return doc


BASE = _base_rule()
KNOWLEDGE: Knowledge = load_knowledge_files(RULES / "knowledge")
SCHEMA: dict[str, Any] = json.loads((RULES / "schema" / "rule.schema.json").read_text(encoding="utf-8"))


# -- strategies -------------------------------------------------------------------------------------------
texts = st.text(max_size=12)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**200), 2**200),
    st.floats(allow_nan=True, allow_infinity=True), texts,
)
# Values a YAML file can hold but JSON (and the fact model) cannot.
non_json = st.one_of(st.dates(), st.datetimes(), st.binary(max_size=16), st.sets(st.integers(), max_size=3))
scalars = json_scalars | non_json
FACT_PATHS = ("age", "sex", "pregnant", "tier", "ingredients", "classes", "allergens", "conditions", "foods",
              "medications", "medications.0.dose_mg", "medications.0.ingredients", "allergies.0.severity",
              "labs.egfr", "labs.potassium", "counts.ssri", "proposed.ingredients", "current", "", "x.y.z")
operator_keys = st.one_of(
    st.sampled_from(sorted(OPERATORS)),
    st.sampled_from(("method", "eval", "__class__", "__import__", "Var", "var ", "", "in ", "+=")),
    texts,
)


def _op(key: str, args: Any) -> dict[str, Any]:
    return {key: args}


# A JsonLogic-shaped tree: operators (known or not) over lists of subtrees, vars and literals.
logic_leaves = st.one_of(
    json_scalars,
    st.builds(lambda p: {"var": p}, st.sampled_from(FACT_PATHS)),
    st.builds(lambda p, d: {"var": [p, d]}, st.sampled_from(FACT_PATHS), json_scalars),
)
logic_trees = st.recursive(
    logic_leaves,
    lambda inner: st.one_of(
        st.builds(_op, operator_keys, st.lists(inner, max_size=4)),
        st.builds(_op, operator_keys, inner),
        st.lists(inner, max_size=3),
        st.dictionaries(operator_keys, inner, min_size=2, max_size=3),  # two operators in one node
    ),
    max_leaves=25,
)


@st.composite
def deep_trees(draw: st.DrawFn) -> Any:
    """200-300 levels of one operator (or plain lists) around a leaf: deeper than the compiler and the
    rule loader allow (deeper still is tested below)."""
    node: Any = draw(logic_leaves)
    wrap = draw(st.sampled_from(("!", "and", "or", "if", "method", "bogus", "list", "mixed")))
    for i in range(draw(st.integers(200, 300))):
        key = wrap if wrap != "mixed" else ("!", "and", "method", "list")[i % 4]
        node = [node] if key == "list" else {key: [node]}
    return node


@st.composite
def big_trees(draw: st.DrawFn) -> Any:
    """Huge arrays and strings in otherwise reasonable conditions."""
    n = draw(st.sampled_from((1_000, 10_001)))
    s = draw(st.sampled_from((1_000, 100_001, 150_000)))
    return draw(st.sampled_from((
        {"in": ["warfarin", ["x"] * n]},
        {"in": ["x" * s, {"var": "ingredients"}]},
        {"==": [{"var": "x" * s}, 1]},
        {"cat": ["a" * s, "b" * s]},
        {"some": [list(range(n)), {">": [{"var": ""}, 0]}]},
        {"merge": [[1] * n, [2] * n]},
        {"and": [{"var": "age"}] * min(n, 10_000)},
    )))


method_anywhere = st.sampled_from((
    {"method": [{"var": "ingredients"}, "append", ["x"]]},
    {"and": [True, {"method": ["abc", "upper"]}]},
    {"if": [{"var": "age"}, {"method": [{"var": "sex"}, "__class__"]}, False]},
    {"map": [{"var": "medications"}, {"method": [{"var": "name"}, "lower"]}]},
))
whens = st.one_of(logic_trees, deep_trees(), big_trees(), method_anywhere, scalars)

TOP_KEYS = [*sorted(BASE), "extra", "method", "when ", "Id"]


@st.composite
def rule_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The valid base rule with a random `when`, then a few random mutations anywhere in it."""
    doc: dict[str, Any] = json.loads(json.dumps(BASE))
    doc["when"] = draw(whens)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(TOP_KEYS))
        action = draw(st.sampled_from(("drop", "set", "nest")))
        if action == "drop":
            doc.pop(key, None)
        elif action == "set":
            doc[key] = draw(scalars | st.lists(scalars, max_size=3) | st.dictionaries(texts, scalars, max_size=3))
        elif isinstance(doc.get(key), dict):
            doc[key][draw(st.sampled_from(("summary", "method", "ingredients", "x")))] = draw(scalars | whens)
        elif isinstance(doc.get(key), list) and doc[key]:
            doc[key][0] = draw(scalars | st.dictionaries(texts, scalars, max_size=3) | st.lists(scalars, max_size=2))
    if draw(st.booleans()):  # random cases: the lint runs them through the case parser
        doc["cases"] = draw(st.lists(st.fixed_dictionaries(
            {"name": texts,
             "given": st.dictionaries(st.sampled_from(("medications", "age", "biometrics", "x")),
                                      scalars | st.lists(texts, max_size=2), max_size=2)
             | st.lists(texts, max_size=2) | texts | st.none() | json_scalars
             | st.lists(st.dictionaries(texts, texts, max_size=2), min_size=1, max_size=2),
             "expect": st.dictionaries(st.sampled_from(("fires", "severity", "insufficient_data", "x")),
                                       scalars, max_size=2)}), max_size=2))
    return doc


# Fact documents with the wrong types where the rules expect others.
fact_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ("name", "dose_mg", "ingredients", "classes", "severity", "egfr", "0", "")), inner, max_size=3),
    max_leaves=20,
)
facts_documents = st.one_of(
    st.dictionaries(st.sampled_from(tuple(p.split(".")[0] for p in FACT_PATHS if p)), fact_values, max_size=8),
    fact_values,
)


# -- the properties ---------------------------------------------------------------------------------------
def _dump(doc: Any) -> str | None:
    """The document as a YAML file (dates and binary included), or None if PyYAML cannot write it."""
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:
        return None


def _lint_text(text: str) -> LintReport:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz-rule.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return lint([str(path)], KNOWLEDGE, SCHEMA)


def check_loaded(loaded: LoadedRule) -> None:
    assert isinstance(loaded, LoadedRule)
    assert (loaded.rule is None) == bool(loaded.problems), "a rule without problems, or problems and a rule"
    for line in loaded.errors:  # every problem is located in the file
        assert re.match(r".*:\d+: ", line), line


def check_rule(doc: Any, facts: list[Any]) -> None:
    """Rule.from_dict -> RuleSet.build -> evaluate_condition: documented errors only."""
    try:
        rule = Rule.from_dict(doc)
    except RuleValidationError as exc:
        assert exc.problems
        return
    ruleset = RuleSet.build([rule], "fuzz")
    for compiled in ruleset.rules:
        if compiled.logic is None:
            assert compiled.compile_error
            continue
        for fact in facts:
            try:
                assert isinstance(evaluate_condition(compiled.logic, fact), ConditionOutcome)
            except LogicError:
                pass


def nesting(value: Any) -> int:
    """How many lists and mappings deep a document goes (iteratively: it may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


@FUZZ
@given(doc=rule_documents(), facts=st.lists(facts_documents, max_size=4))
def test_rule_documents_raise_only_documented_errors(doc: dict[str, Any], facts: list[Any]) -> None:
    check_rule(doc, facts)
    text = _dump(doc)
    if text is not None:
        loaded = parse_rule_text(text, Path("fuzz.yaml"))
        check_loaded(loaded)
        if nesting(doc) > MAX_NESTING:
            assert loaded.document is None and any("nested deeper than" in e for e in loaded.errors)
        assert isinstance(_lint_text(text), LintReport)


@FUZZ
@given(when=logic_trees | method_anywhere, facts=st.lists(facts_documents, min_size=1, max_size=6))
def test_compiled_conditions_raise_only_logic_errors_on_any_facts(when: Any, facts: list[Any]) -> None:
    try:
        compiled = compile_logic(when)
    except LogicError:
        return
    for fact in facts:
        try:
            outcome = evaluate_condition(compiled, fact)
        except LogicError:
            continue
        assert isinstance(outcome, ConditionOutcome)


yaml_alphabet = st.sampled_from([*"abcdefxyz019 -:,.[]{}&*!|>'\"#%@`?\n\t\\", "\ufeff", "é", "\u2028", "\x00",
                                 "\x7f", "\r"])
yaml_texts = st.one_of(
    st.text(max_size=200),
    st.text(yaml_alphabet, max_size=300),
    # A real rule file, cut or spliced at random places.
    st.builds(lambda cut, junk: (_dump(BASE) or "")[:cut] + junk, st.integers(0, 2000), st.text(yaml_alphabet,
                                                                                                  max_size=40)),
)


@FUZZ
@given(text=yaml_texts)
def test_random_yaml_text_is_a_list_of_problems(text: str) -> None:
    check_loaded(parse_rule_text(text, Path("fuzz.yaml")))
    assert isinstance(_lint_text(text), LintReport)


def _alias_document(width: int, levels: int, where: str) -> str:
    """Anchors and aliases fanning out width**levels times (kept small here; see the billion laughs),
    inside `when` (as literal arrays of `in`) or in another key."""
    top = _dump({k: v for k, v in BASE.items() if k not in ("when", "description")}) or ""
    items = ['&l0 ["lol"]'] + [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    if where == "when":
        return top + "when:\n  or:\n" + "".join(f"  - in: [lol, {item}]\n" for item in items)
    return (top + "description:\n" + "".join(f"  - {item}\n" for item in items)
            + f"when: {{in: [lol, *l{levels}]}}\n")


@FUZZ
@given(width=st.integers(1, 6), levels=st.integers(0, 4), where=st.sampled_from(("when", "extra")))
def test_anchors_and_aliases_with_a_bounded_expansion(width: int, levels: int, where: str) -> None:
    text = _alias_document(width, levels, where)
    loaded = parse_rule_text(text, Path("fuzz.yaml"))
    check_loaded(loaded)
    if loaded.document is not None:
        check_rule(loaded.document, [{}, {"ingredients": ["a"]}])
    assert isinstance(_lint_text(text), LintReport)


# -- rules: the crashes fuzzing found ---------------------------------------------------------------------------
BILLION_LAUGHS = "\n".join(
    ['id: lol', 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    + ["when: {in: [lol, *i]}"]
)


def _in_child(code: str, stdin: str, *, seconds: float = 10, memory_mb: int = 1024) -> str:
    """Run engine code in a child process with a time and memory limit; its stdout, or why it died."""
    prelude = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_mb << 20}, {memory_mb << 20}))\n"
               "import sys\n")
    try:
        done = subprocess.run([sys.executable, "-c", prelude + code], input=stdin, capture_output=True, text=True,
                              timeout=seconds, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        return f"hung for more than {seconds} s"
    if done.returncode != 0:
        return f"died: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    return done.stdout.strip()


def test_a_billion_laughs_rule_file_is_refused_quickly() -> None:
    out = _in_child(
        "from pathlib import Path\nfrom engine.rules import parse_rule_text\n"
        "loaded = parse_rule_text(sys.stdin.read(), Path('lol.yaml'))\n"
        "print('problems' if loaded.problems else 'accepted')\n",
        BILLION_LAUGHS)
    assert out == "problems", out


def test_a_billion_laughs_rule_file_is_refused_at_its_first_alias() -> None:
    loaded = parse_rule_text(BILLION_LAUGHS, Path("lol.yaml"))
    assert loaded.document is None
    assert [e.split(" refused")[0] for e in loaded.errors] == ["lol.yaml:3: alias *a"], loaded.errors


@pytest.mark.parametrize("char", ["\x00", "\x0c", "\x1f", "\x7f", "\ud800"])
def test_a_control_character_in_a_rule_file_is_a_problem_not_a_crash(char: str) -> None:
    text = (_dump(BASE) or "").replace("title: ", f"title: {char}", 1)
    loaded = parse_rule_text(text, Path("control.yaml"))
    check_loaded(loaded)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("title: "))
    assert loaded.errors[0].startswith(f"control.yaml:{line}: not valid YAML"), loaded.errors


@pytest.mark.parametrize("text", ["id: x\nwhen: &a [*a]\n", "&a {id: x, when: *a}\n",
                                  "id: x\nwhen: &a {and: [{var: age}, *a]}\n"])
def test_a_cyclic_alias_is_a_problem_not_a_crash(text: str) -> None:
    loaded = parse_rule_text(text, Path("cycle.yaml"))
    check_loaded(loaded)
    assert loaded.document is None and "alias *a refused" in loaded.errors[0], loaded.errors


@pytest.mark.parametrize("style", ["flow-list", "flow-map", "block"])
def test_nesting_past_the_recursion_limit_is_a_problem_not_a_crash(style: str) -> None:
    depth = 2_000
    when = {"flow-list": "[" * depth + "]" * depth,
            "flow-map": "{a: " * depth + "1" + "}" * depth,
            "block": "\n" + "\n".join(" " * (i + 1) + "-" for i in range(depth)) + " 1"}[style]
    loaded = parse_rule_text(f"id: deep\nwhen: {when}\n", Path("deep.yaml"))
    check_loaded(loaded)
    assert loaded.document is None and f"nested deeper than {MAX_NESTING} levels" in loaded.errors[0], loaded.errors


def test_a_deep_when_from_the_database_is_a_validation_error() -> None:
    # A rule read back from JSONB goes through Rule.from_dict too (engine/rules.py's docstring).
    when: Any = {"var": "age"}
    for _ in range(2_000):
        when = {"!": [when]}
    with pytest.raises(RuleValidationError, match=f"nested deeper than {MAX_NESTING} levels"):
        Rule.from_dict({**BASE, "when": when})


@pytest.mark.parametrize("levels", [32, 48, 62])
def test_lint_reports_a_when_the_compiler_accepts(levels: int) -> None:
    when: Any = {"var": "age"}
    for _ in range(levels):
        when = {"!": [when]}
    compile_logic(when)  # within the compiler's max_depth (64 operators; 63 is past it)
    # The file nests two levels (a mapping and a list) per operator: past MAX_NESTING, refused by line.
    report = _lint_text(_dump({**BASE, "when": when}) or "")
    assert report.errors and all(re.match(r".*fuzz-rule\.yaml:\d+: error: ", e) for e in report.errors)
    assert any(f"nested deeper than {MAX_NESTING} levels" in e for e in report.errors), report.errors


def test_lint_reports_a_when_nested_200_levels() -> None:
    when: Any = {"var": "age"}
    for _ in range(200):
        when = {"!": [when]}
    # As JSON in flow style (YAML's superset): PyYAML's dumper would recurse per level.
    text = (_dump({**BASE, "when": None}) or "").replace("when: null", f"when: {json.dumps(when)}")
    assert json.dumps(when) in text
    report = _lint_text(text)
    # Refused by the loader (nesting), before the schema check or the compiler sees it.
    assert any(f"nested deeper than {MAX_NESTING} levels" in e for e in report.errors), report.errors


@pytest.mark.parametrize("value", [True, 3, 2.5])
def test_an_applies_to_that_is_not_a_list_is_a_lint_error(value: Any) -> None:
    report = _lint_text(_dump({**BASE, "applies_to": {"ingredients": value}}) or "")
    assert any("applies_to" in e for e in report.errors), report.errors
    report = _lint_text(_dump({**BASE, "applies_to": {"ingredients": ["warfarin", value]}}) or "")
    # Once (the schema's words; the loader's "expected a name" said the same on a second line).
    (line,) = [e for e in report.errors if "applies_to.ingredients.1:" in e]
    assert "is not of type 'string'" in line, report.errors


@pytest.mark.parametrize("given_value", [5, 2.5, True, [{"medications": ["Plavix 75 mg"]}]])
def test_a_case_whose_given_is_not_a_mapping_is_a_lint_error(given_value: Any) -> None:
    doc = {**BASE, "cases": [{"name": "bad", "given": given_value, "expect": {"fires": True}}]}
    report = _lint_text(_dump(doc) or "")
    assert any("case 'bad': given is a mapping" in e for e in report.errors), report.errors


# -- CSV ------------------------------------------------------------------------------------------------------
HEADER = ("drug_a", "drug_b", "severity", "description", "recommendation", "interaction_type", "evidence_level",
          "avoid_combination", "source")
KINDS = frozenset({"ingredient", "class", "food", "food_group"})
LINE = re.compile(r"^line \d+: ")
SEVERITIES = ("major", "moderate", "minor", "contraindicated", "unknown", "1", "2", "3", "9", "X", "D", "C", "B",
              "A", "HIGH", "critical", "Major ", "bogus", "")


def check_csv(source: str | Path, *, nul_ok: bool = True) -> list[InteractionPair] | CsvImportError:
    try:
        pairs = parse_interactions_csv(source, default_source="fuzz")
    except CsvImportError as exc:
        assert exc.errors
        for error in exc.errors:
            assert LINE.match(error), error
        return exc
    assert isinstance(pairs, list)
    ids = set()
    for p in pairs:
        assert isinstance(p, InteractionPair)
        assert p.a_kind in KINDS and p.b_kind in KINDS
        assert p.a and p.b and isinstance(p.a, str) and isinstance(p.b, str)
        assert not (p.a_kind.startswith("food") and p.b_kind.startswith("food"))
        assert isinstance(p.severity, Severity) and isinstance(p.evidence, EvidenceLevel)
        assert isinstance(p.avoid_combination, bool)
        assert p.id not in ids
        ids.add(p.id)
        if not nul_ok:  # PostgreSQL text cannot hold NUL: such a pair cannot be imported
            fields = (p.a, p.b, p.source_severity, p.description, p.recommendation, p.source, p.interaction_type)
            assert not any("\x00" in f for f in fields), "a NUL character in a pair"
    return pairs


csv_tokens = st.sampled_from([*'ab ,"\r\n;:|\t', "\ufeff", "\x00", "é", "class:", "food:", "warfarin", "drug_a",
                              "drug_b", "severity", "major", "\u2028"])
csv_texts = st.builds("".join, st.lists(csv_tokens, max_size=120))
cells = st.one_of(
    st.sampled_from(("warfarin", "aspirin", "class:ssri", "food:grapefruit", "food_group:citrus", "ingredient:x",
                     "class:", "food:", "", " ", "Plavix 75 mg", "a/b", "a + b")),
    st.sampled_from(SEVERITIES),
    st.sampled_from(("true", "false", "yes", "maybe", "", "excellent", "theoretical", "CLINICAL_TRIAL")),
    st.text(max_size=20),
    st.builds(lambda c, n: c * n, st.sampled_from(("x", '"', "\x00", "é")), st.sampled_from((1_000, 100_000))),
)


@st.composite
def csv_documents(draw: st.DrawFn) -> str:
    header = list(draw(st.one_of(
        st.just(HEADER[:3]), st.just(HEADER),
        st.lists(st.sampled_from((*HEADER, "Drug_A ", "drug_c", "", "severity")), min_size=0, max_size=10),
        st.permutations(HEADER),
    )))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(header) + 2), max_size=12))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(("\n", "\r\n", "\r"))),
                        quoting=draw(st.sampled_from((csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC))))
    writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.booleans()):  # a stray quote or a cut, as a broken export would have
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(('"', "", "\x00", "\r", '""'))) + text[at:]
    return draw(st.sampled_from(("", "\ufeff"))) + text


@FUZZ
@given(text=csv_documents())
def test_structured_csv_is_refused_by_line_or_parsed_into_pairs(text: str) -> None:
    check_csv(text)


@FUZZ
@given(text=st.one_of(st.text(max_size=300), csv_texts))
def test_random_text_csv_is_refused_by_line_or_parsed_into_pairs(text: str) -> None:
    check_csv(text)


@FUZZ
@given(data=st.binary(max_size=400) | st.builds(lambda s: s.encode("utf-8"), csv_texts))
def test_random_bytes_as_the_import_command_decodes_them(data: bytes) -> None:
    try:
        text = data.decode("utf-8-sig")  # `praneya knowledge import` reads bytes and decodes them so
    except UnicodeDecodeError:
        return  # ... and says "not UTF-8 text; nothing was imported"
    check_csv(text)


def _rows(n: int, make: Callable[[int], str]) -> str:
    return "drug_a,drug_b,severity,description\r\n" + "".join(make(i) for i in range(n))


def test_a_100k_row_file_parses_into_100k_pairs() -> None:
    pairs = check_csv(_rows(100_000, lambda i: f"drug{i},class:c{i % 7},major,\"a, quoted\r\nnote\"\r\n"))
    assert isinstance(pairs, list) and len(pairs) == 100_000


def test_a_100k_row_file_with_bad_lines_names_them() -> None:
    # Each row spans two physical lines (a quoted newline), lines 2 + 2i and 3 + 2i; the error names
    # the record's first line.
    def row(i: int) -> str:
        return f"drug{i},other{i},{'sometimes' if i in (3, 99_998) else 'major'},\"x\ny\"\r\n"

    err = check_csv(_rows(100_000, row))
    assert isinstance(err, CsvImportError)
    assert [e.split(":")[0] for e in err.errors] == ["line 8", "line 199998"]


def test_wrong_headers_are_refused_on_line_1() -> None:
    for header in ("", "drug_a,drug_b", "a,b,c", "drug_a,drug_b,severity,severity", "drug_a\x00,drug_b,severity",
                   "drug_a;drug_b;severity", '"drug_a,drug_b",severity'):
        err = check_csv(header + "\nx,y,major\n")
        assert isinstance(err, CsvImportError) and err.errors[0].startswith("line 1: "), header


# -- CSV: the crashes fuzzing found --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["huge-field", "stray-quote-in-a-big-file", "cr-line-ends", "cr-in-a-cell"])
def test_what_the_csv_module_refuses_is_a_line_numbered_error(case: str) -> None:
    text = {
        "huge-field": "drug_a,drug_b,severity\nwarfarin,aspirin,major\n" + "x" * 200_000 + ",aspirin,major\n",
        # One stray quote swallows the rest of the file into one field.
        "stray-quote-in-a-big-file": _rows(10_000, lambda i: f'drug{i},other{i},major,{"x" if i != 5 else chr(34)}\n'),
        # Excel for Mac's "CSV (Macintosh)" ends lines with CR alone.
        "cr-line-ends": "drug_a,drug_b,severity\rwarfarin,aspirin,major\r",
        "cr-in-a-cell": "drug_a,drug_b,severity,description\nwarfarin,aspirin,major,bleeding\rrisk\n",
    }[case]
    result = check_csv(text)
    if case == "cr-line-ends":  # CR alone ends a line, as in the file Excel for Mac writes
        assert isinstance(result, list) and [(p.a, p.b) for p in result] == [("warfarin", "aspirin")], result
        return
    assert isinstance(result, CsvImportError)
    first = {"huge-field": "line 3: a field is longer", "stray-quote-in-a-big-file": "line 7: a field is longer",
             "cr-in-a-cell": "line 3: drug_b is empty"}[case]
    assert result.errors[0].startswith(first), result.errors


@pytest.mark.parametrize("row", ["warfa\x00rin,aspirin,major", "warfarin,aspirin,major,\x00note"])
def test_a_nul_character_is_a_line_numbered_error(row: str) -> None:
    result = check_csv("drug_a,drug_b,severity,description\n" + row + "\n", nul_ok=False)
    assert isinstance(result, CsvImportError)
    assert result.errors == ("line 2: contains a NUL character",)


def test_a_file_that_is_not_utf8_is_a_csv_import_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("drug_a,drug_b,severity\nd\xe9xamethasone,aspirin,major\n".encode("latin-1"))
    err = check_csv(path)
    assert isinstance(err, CsvImportError)
    assert err.errors == ("line 2: not UTF-8 text (byte 0xe9); nothing was imported",)


def test_dates_and_binary_in_a_rule_file_are_problems() -> None:
    for value in (date(2024, 1, 1), datetime(2024, 1, 1, 12), b"\x00\x01"):
        text = _dump({**BASE, "description": value})
        assert text is not None
        loaded = parse_rule_text(text, Path("types.yaml"))
        check_loaded(loaded)
        assert loaded.rule is None

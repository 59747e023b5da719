"""Regression tests for the crashes fuzzing found in the rule loader, the linter, the case loader and the
interactions CSV parser (tests/test_fuzz_rules_csv.py fuzzes them): each answer is a documented error
that says where, never an uncaught exception."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from engine.cases import CaseFormatError, cases_of_rule, given_to_inputs
from engine.knowledge import CsvImportError, load_knowledge_files, parse_interactions_csv
from engine.rules import (
    MAX_NESTING,
    MAX_NODES,
    LoadedRule,
    Rule,
    RuleValidationError,
    load_rule_files,
    logic_operators,
    parse_rule_text,
)
from engine.ruletool import _lint_rule, _schema

ROOT = Path(__file__).resolve().parents[1]
RULE_FILE = ROOT / "rules" / "ddi" / "ddi-clopidogrel-omeprazole.yaml"
BASE: dict[str, Any] = yaml.safe_load(RULE_FILE.read_text(encoding="utf-8"))
HEADER = "drug_a,drug_b,severity,description\n"


def _nested(levels: int) -> Any:
    when: Any = {"var": "age"}
    for _ in range(levels):
        when = {"!": [when]}
    return when


# -- Rule.from_dict (files and JSONB rows) ---------------------------------------------------------------
def test_from_dict_accepts_the_deepest_allowed_document_and_refuses_one_level_more() -> None:
    # The rule mapping is level 1, `when` level 2, each operator adds a mapping and a list.
    ok = _nested((MAX_NESTING - 2) // 2)
    Rule.from_dict({**BASE, "when": ok})
    with pytest.raises(RuleValidationError, match=f"when(\\.[!0-9]+)+: nested deeper than {MAX_NESTING}"):
        Rule.from_dict({**BASE, "when": {"!": [ok]}})


def test_from_dict_refuses_a_cyclic_document() -> None:
    when: dict[str, Any] = {"and": []}
    when["and"].append(when)
    with pytest.raises(RuleValidationError, match="nested deeper than"):
        Rule.from_dict({**BASE, "when": when})


def test_from_dict_refuses_a_shared_reference_blow_up() -> None:
    node: Any = ["lol"] * 9
    for _ in range(8):  # 9**9 leaves if walked, in a few hundred bytes of objects
        node = [node] * 9
    with pytest.raises(RuleValidationError, match=f"more than {MAX_NODES:,} values"):
        Rule.from_dict({**BASE, "when": {"in": ["lol", node]}})


@pytest.mark.parametrize("value", [True, 3, None, "", ["x"]])
def test_applies_to_items_that_are_not_names_are_located(value: Any) -> None:
    with pytest.raises(RuleValidationError) as info:
        Rule.from_dict({**BASE, "applies_to": {"ingredients": ["clopidogrel", value]}})
    assert [str(p) for p in info.value.problems] == [
        f"applies_to.ingredients.1: expected a name, got {'empty text' if value == '' else type(value).__name__}"
    ]


def test_logic_operators_walks_in_document_order_without_recursion() -> None:
    when = {"and": [{"var": "a"}, {"or": [{"method": [1]}, {"var": "b"}]}], "!": 1}
    assert list(logic_operators(when)) == [
        ("and", ()),
        ("var", ("and", 0)),
        ("or", ("and", 1)),
        ("method", ("and", 1, "or", 0)),
        ("var", ("and", 1, "or", 1)),
        ("!", ()),
    ]
    assert sum(1 for _ in logic_operators(_nested(5_000))) == 5_001


# -- rule files ----------------------------------------------------------------------------------------------
def test_an_anchor_without_an_alias_is_allowed() -> None:
    text = RULE_FILE.read_text(encoding="utf-8").replace("title: ", "title: &t ", 1)
    assert parse_rule_text(text, Path("r.yaml")).rule is not None


def test_too_many_values_are_refused_on_the_line_past_the_limit() -> None:
    text = "id: big\nwhen:\n" + "".join(f"- {i}\n" for i in range(MAX_NODES))
    loaded = parse_rule_text(text, Path("big.yaml"))
    assert loaded.document is None
    # 4 values before the list's items: the top mapping, `id`, `big`, `when` (the list is the 5th).
    assert loaded.errors == (f"big.yaml:{MAX_NODES - 5 + 3}: more than {MAX_NODES:,} values; a rule is far smaller",)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("id: x\ncreated: 2024-13-45\n", 2, "month must be in 1..12"),
        ("id: x\nwhen: [1, {c: !!int abc}]\n", 2, "invalid literal for int()"),
        ("id: x\nwhen: {in: [\n", 3, "not valid YAML"),
        ("id: x\n\ntitle: a\x00b\n", 3, "special characters are not allowed"),
        ("id: x\r\ntitle: a\x0cb\r\n", 2, "special characters are not allowed"),
    ],
)
def test_yaml_the_loader_refuses_is_a_located_problem(text: str, line: int, message: str) -> None:
    loaded = parse_rule_text(text, Path("r.yaml"))
    assert loaded.rule is None and loaded.errors[0].startswith(f"r.yaml:{line}: not valid YAML")
    assert message in loaded.errors[0]


def test_a_rule_file_that_is_not_utf8_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("id: x\r\ntitle: ok\r\ndescription: d\xe9j\xe0\r\n".encode("latin-1"))
    (loaded,) = load_rule_files([path])
    assert loaded.errors == (f"{path}:3: not UTF-8 text (byte 0xe9)",)


# -- lint and cases ------------------------------------------------------------------------------------------
def test_lint_reports_what_the_static_helpers_refuse() -> None:
    # Past the loader's nesting bound a file never gets here; a document handed over directly can.
    loaded = LoadedRule(Path("deep.yaml"), {**BASE, "when": _nested(40)}, {("when",): 7}, None)
    report = _lint_rule(
        loaded, load_knowledge_files(ROOT / "rules" / "knowledge"), jsonschema.Draft202012Validator(_schema(["rules"]))
    )
    assert any(e.startswith("deep.yaml:7: error: condition is too deep to check its variables") for e in report.errors)


@pytest.mark.parametrize("given", [5, 2.5, True, False, 0, [], ["age"], [{"age": 70}], "age"])
def test_a_given_that_is_not_a_mapping_is_a_case_format_error(given: Any) -> None:
    with pytest.raises(CaseFormatError, match=f"given is a mapping like .*, got {type(given).__name__}"):
        given_to_inputs(given)
    rule = Rule.from_dict({**BASE, "cases": [{"name": "bad", "given": given, "expect": {"fires": True}}]})
    with pytest.raises(CaseFormatError, match="case 'bad': given is a mapping"):
        cases_of_rule(rule)


def test_a_case_with_no_given_is_an_empty_patient() -> None:
    rule = Rule.from_dict({**BASE, "cases": [{"name": "empty", "given": None, "expect": {"fires": False}}]})
    (case,) = cases_of_rule(rule)
    assert case.snapshot.medications == () and case.request.proposed_medications == ()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({1: "x", "y": 2}, "unknown key\\(s\\) in given: 1, y"),
        ({"allergies": [{"allergen": "penicillin", "reactions": 5}]}, "reactions are a list"),
    ],
)
def test_malformed_givens_are_case_format_errors(given: Any, message: str) -> None:
    with pytest.raises(CaseFormatError, match=message):
        given_to_inputs(given)


# -- interactions CSV -----------------------------------------------------------------------------------------
def test_a_quoted_crlf_is_kept_and_cr_alone_ends_a_line() -> None:
    (pair,) = parse_interactions_csv(HEADER + 'warfarin,aspirin,major,"a\r\nb"\r\n')
    assert pair.description == "a\r\nb"
    rows = "warfarin,aspirin,major,x\rwarfarin,ibuprofen,minor,y\r"
    pairs = parse_interactions_csv(HEADER.replace("\n", "\r") + rows)
    assert [(p.b, p.description) for p in pairs] == [("aspirin", "x"), ("ibuprofen", "y")]


def test_an_open_text_stream_is_read_too() -> None:
    (pair,) = parse_interactions_csv(io.StringIO(HEADER + "warfarin,aspirin,major,x\n", newline=""))
    assert (pair.a, pair.b) == ("warfarin", "aspirin")


def test_errors_name_a_multi_line_records_first_line() -> None:
    with pytest.raises(CsvImportError) as info:
        parse_interactions_csv(HEADER + 'a,b,major,"one\ntwo\nthree"\nc,d,bogus,"x\ny"\n')
    assert info.value.errors == ("line 5: severity 'bogus' is not on a known scale",)


def test_nul_characters_are_refused_by_line_even_in_a_quoted_cell_or_the_header() -> None:
    with pytest.raises(CsvImportError) as info:
        parse_interactions_csv(HEADER + 'a,b,major,"x\ny\x00"\nc,d,major,\x00\ne,f,major,ok\n')
    assert info.value.errors == ("line 3: contains a NUL character", "line 4: contains a NUL character")
    with pytest.raises(CsvImportError) as info:
        parse_interactions_csv("drug_a\x00,drug_b,severity\nx,y,major\n")
    assert info.value.errors == ("line 1: contains a NUL character",)


def test_a_huge_field_is_an_error_and_the_lines_after_it_are_still_checked() -> None:
    with pytest.raises(CsvImportError) as info:
        parse_interactions_csv(HEADER + "x" * 200_000 + ",b,major\nc,d,bogus\n")
    assert [e.split(":")[0] for e in info.value.errors] == ["line 2", "line 3"]
    assert "a field is longer than 131,072 characters" in info.value.errors[0]
    with pytest.raises(CsvImportError, match="line 1: a field is longer"):
        parse_interactions_csv("drug_a,drug_b,severity," + "y" * 200_000 + "\n")


def test_a_csv_file_with_a_bom_and_crlf_parses_like_its_text(tmp_path: Path) -> None:
    text = HEADER.replace("\n", "\r\n") + "warfarin,aspirin,major,x\r\n"
    path = tmp_path / "i.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert parse_interactions_csv(path) == parse_interactions_csv(text)


def test_a_csv_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "a,b,major,x\rc,d,major,d\xe9j\xe0\r").encode("latin-1"))
    with pytest.raises(CsvImportError) as info:
        parse_interactions_csv(path)
    assert info.value.errors == ("line 3: not UTF-8 text (byte 0xe9); nothing was imported",)

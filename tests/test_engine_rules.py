"""Rule documents: validation, file loading with line numbers, compilation and the relevance index."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from engine.rules import AppliesTo, Rule, RuleSet, RuleValidationError, load_rule_files, parse_rule_text

RULES = Path(__file__).parent / "data" / "rules"


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "x-rule",
        "version": 1,
        "title": "X",
        "type": "DRUG_INTERACTION",
        "kind": "DRUG_DRUG_INTERACTION",
        "severity": "HIGH",
        "applies_to": {"classes": ["ssri"]},
        "when": {"in": ["ssri", {"var": "classes"}]},
        "alert": {"summary": "X"},
    }
    doc.update(changes)
    return doc


def _problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(RuleValidationError) as caught:
        Rule.from_dict(doc)
    return [str(p) for p in caught.value.problems]


def test_minimal_rule_gets_defaults() -> None:
    rule = Rule.from_dict(_doc())
    assert (rule.min_tier, rule.status, rule.evidence.name) == ("BASIC", "active", "UNKNOWN")
    assert rule.applies_to == AppliesTo(classes=("ssri",))


def test_method_is_refused_anywhere_in_when() -> None:
    doc = _doc(when={"and": [True, {"==": [{"method": [{"var": "age"}, "bit_length"]}, 3]}]})
    assert any("method" in p and p.startswith("when.and.1.==.0") for p in _problems(doc))


def test_summary_over_140_characters_is_refused() -> None:
    assert any("141 characters" in p for p in _problems(_doc(alert={"summary": "x" * 141})))
    Rule.from_dict(_doc(alert={"summary": "x" * 140}))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"id": "Bad_Id"}, "id:"),
        ({"version": 0}, "version"),
        ({"version": True}, "version"),
        ({"severity": "SEVERE"}, "severity"),
        ({"kind": "NOPE"}, "kind"),
        ({"status": "draft"}, "status"),
        ({"min_tier": "GOLD"}, "min_tier"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"applies_to": {"drugs": ["x"]}}, "applies_to.drugs"),
        ({"applies_to": {"demographics": ["height"]}}, "height"),
        ({"alert": {"summary": "x", "sumary": "y"}}, "alert.sumary"),
    ],
)
def test_invalid_documents_name_the_place(changes: dict[str, Any], fragment: str) -> None:
    assert any(fragment in p for p in _problems(_doc(**changes)))


def test_missing_required_fields() -> None:
    doc = _doc()
    del doc["when"], doc["severity"]
    problems = _problems(doc)
    assert "'when' is required" in problems and "'severity' is required" in problems


def test_jsonb_roundtrip_is_the_same_rule() -> None:
    import json

    doc = _doc(cases=[{"name": "c", "given": {}, "expect": {"fires": False}}])
    assert Rule.from_dict(json.loads(json.dumps(doc))) == Rule.from_dict(copy.deepcopy(doc))


def test_files_load_with_line_numbers(tmp_path: Path) -> None:
    text = (RULES / "interactions" / "ssri-maoi.yaml").read_text()
    bad = text.replace("severity: CRITICAL", "severity: SEVERE")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    (loaded,) = load_rule_files([tmp_path])
    assert loaded.rule is None
    line = next(i for i, row in enumerate(bad.splitlines(), 1) if row.startswith("severity:"))
    assert any(e.startswith(f"{path}:{line}: severity:") for e in loaded.errors)


def test_duplicate_yaml_keys_are_reported() -> None:
    loaded = parse_rule_text("id: a\nseverity: HIGH\nseverity: LOW\n", Path("r.yaml"))
    assert any("key appears twice" in e and e.startswith("r.yaml:3:") for e in loaded.errors)


def test_broken_yaml_reports_its_line() -> None:
    loaded = parse_rule_text("id: a\nwhen: {in: [\n", Path("r.yaml"))
    assert loaded.rule is None and "not valid YAML" in loaded.errors[0]


def test_knowledge_and_schema_folders_are_not_rules(tmp_path: Path) -> None:
    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / "vocabulary.yaml").write_text("classes: {}\n")
    (tmp_path / "r.yaml").write_text((RULES / "interactions" / "ssri-maoi.yaml").read_text())
    assert [loaded.path.name for loaded in load_rule_files([tmp_path])] == ["r.yaml"]


def _rule(rule_id: str, **applies: list[str]) -> Rule:
    return Rule.from_dict(_doc(id=rule_id, applies_to=applies, when=True))


def test_index_returns_only_relevant_rules_in_id_order() -> None:
    rules = [_rule(f"r-{i:04d}", ingredients=[f"drug{i}"]) for i in range(5000)]
    rules += [
        _rule("b-ssri", classes=["ssri"]),
        _rule("a-global"),
        _rule("c-ckd", conditions=["chronic_kidney_disease"]),
        _rule("d-egfr", biometrics=["egfr"]),
        _rule("e-age", demographics=["age"]),
    ]
    ruleset = RuleSet.build(rules, "v1")
    ids = [
        r.rule.id
        for r in ruleset.relevant([("ingredient", "drug42"), ("class", "ssri"), ("biometric", "egfr")])
    ]
    assert ids == ["a-global", "b-ssri", "d-egfr", "r-0042"]
    assert [r.rule.id for r in ruleset.relevant([("demographic", "age")])] == ["a-global", "e-age"]


def test_retired_rules_are_not_built_and_duplicate_ids_refused() -> None:
    retired = Rule.from_dict(_doc(id="old", status="retired"))
    assert len(RuleSet.build([retired, _rule("new")], "v")) == 1
    with pytest.raises(ValueError, match="twice"):
        RuleSet.build([_rule("same"), _rule("same")], "v")


def test_rule_that_does_not_compile_is_kept_as_an_error() -> None:
    rule = Rule.from_dict(_doc(when={"frobnicate": [1]}))
    ruleset = RuleSet.build([rule], "v")
    (compiled,) = ruleset.compile_errors
    assert compiled.logic is None and compiled.compile_error and "frobnicate" in compiled.compile_error

"""`praneya rules lint` and `praneya rules test` on fixture rules and on deliberately broken ones."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from engine.ruletool import lint_main, test_main

DATA = Path(__file__).parent / "data"
GOOD = (DATA / "rules" / "interactions" / "ssri-maoi.yaml").read_text()


def _tree(tmp_path: Path, **files: str) -> Path:
    root = tmp_path / "rules"
    shutil.copytree(DATA / "knowledge", root / "knowledge")
    for name, text in files.items():
        (root / f"{name}.yaml").write_text(text)
    return root


def _lint(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = lint_main([str(root)], out=out)
    return code, out.getvalue()


def _test(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = test_main([str(root)], out=out)
    return code, out.getvalue()


def test_fixture_rules_lint_and_pass() -> None:
    out = io.StringIO()
    assert lint_main([str(DATA / "rules")], DATA / "knowledge", out=out) == 0, out.getvalue()
    assert "labs.egfr" in out.getvalue()  # the unguarded comparison is a warning, not an error
    out = io.StringIO()
    assert test_main([str(DATA / "rules")], DATA / "knowledge", out=out) == 0, out.getvalue()
    assert "10 case(s), 0 failure(s)" in out.getvalue()


def test_knowledge_is_found_next_to_the_rules(tmp_path: Path) -> None:
    assert _lint(_tree(tmp_path, good=GOOD))[0] == 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("severity: CRITICAL", "severity: SEVERE"), "schema: severity"),
        (
            ("in: [ssri, {var: classes}]", "in: [ssri, {var: drug_classes}]"),
            "'drug_classes' is not in the fact model",
        ),
        (("in: [maoi, {var: classes}]", "in: [maoi, {method: [{var: classes}, copy]}]"), "method"),
        (("in: [maoi, {var: classes}]", "frobnicate: [maoi]"), "unknown operator 'frobnicate'"),
        (
            ("classes: [ssri, maoi]", "classes: [ssri, maoi, snri_typo]"),
            "'snri_typo' is not in the vocabulary",
        ),
        (("in: [maoi, {var: classes}]", "in: [moai, {var: classes}]"), "'moai' is not a known class"),
        (('summary: "SSRI', 'summary: "' + "x" * 140 + " SSRI"), "is too long"),
        (
            ("    expect: {fires: false}", "    expect: {fires: true}"),
            "no case in which the rule does not fire",
        ),
        (
            ("in: [ssri, {var: classes}]", "'>': [{var: labs.ferritin}, 3]"),
            "labs.ferritin is not a known reading",
        ),
        (
            ("in: [ssri, {var: classes}]", "'>': [{var: labs.potassium}, 5]"),
            "labs.potassium: say how recent its reading must be (max_age_days",
        ),
        (("in: [ssri, {var: classes}]", "'>': [{var: counts.ssris}, 1]"), "'ssris' is not a drug class"),
    ],
)
def test_lint_finds(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    assert edit[0] in GOOD
    code, out = _lint(_tree(tmp_path, bad=GOOD.replace(edit[0], edit[1], 1)))
    assert code == 1
    assert message in out, out
    assert "bad.yaml:" in out


def test_lint_reports_line_numbers(tmp_path: Path) -> None:
    bad = GOOD.replace("severity: CRITICAL", "severity: SEVERE")
    line = next(i for i, row in enumerate(bad.splitlines(), 1) if row.startswith("severity:"))
    _code, out = _lint(_tree(tmp_path, bad=bad))
    assert f"bad.yaml:{line}: error: schema: severity" in out


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    code, out = _lint(_tree(tmp_path, one=GOOD, two=GOOD))
    assert code == 1 and out.count("duplicate rule id 'test-ssri-maoi'") == 2


def test_unguarded_comparison_is_a_warning_and_a_guard_silences_it(tmp_path: Path) -> None:
    unguarded = GOOD.replace("in: [ssri, {var: classes}]", "'>=': [{var: age}, 65]")
    guarded = GOOD.replace("in: [ssri, {var: classes}]", "'>=': [{var: age, default: 0}, 65]")
    _code, out = _lint(_tree(tmp_path / "a", r=unguarded))
    assert "warning: comparison on 'age'" in out
    _code, out = _lint(_tree(tmp_path / "b", r=guarded))
    assert "comparison on 'age'" not in out


def test_no_rules_is_an_error(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert _lint(root)[0] == 1
    assert _test(root)[0] == 1


def test_failing_case_is_printed_with_why(tmp_path: Path) -> None:
    wrong = GOOD.replace("expect: {fires: true, severity: CRITICAL}", "expect: {fires: true, severity: HIGH}")
    code, out = _test(_tree(tmp_path, wrong=wrong))
    assert code == 1
    assert "FAIL" in out and "sertraline with phenelzine" in out
    assert "expected: fires at HIGH; got: fires at CRITICAL" in out


def test_case_that_expects_a_fire_but_the_rule_is_not_relevant(tmp_path: Path) -> None:
    wrong = GOOD.replace("classes: [ssri, maoi]", "classes: [maoi]").replace(
        "given: {medications: [sertraline 50 mg], proposed_medications: [Nardil]}",
        "given: {medications: [sertraline 50 mg]}",
    )
    wrong = wrong.replace("expect: {fires: false}", "expect: {fires: true}")
    code, out = _test(_tree(tmp_path, wrong=wrong))
    assert code == 1 and "not relevant" in out


def test_insufficient_data_is_not_a_pass_for_does_not_fire(tmp_path: Path) -> None:
    rule = GOOD.replace("in: [ssri, {var: classes}]", "'<': [{var: labs.egfr}, 30]")
    code, out = _test(_tree(tmp_path, r=rule))
    assert code == 1 and "got: insufficient data" in out

"""Every case of every rule under rules/, and the two commands clinicians run, as pytest tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cases import RuleCase, load_rule_cases, run_case
from engine.doors.cli import main
from engine.knowledge import load_knowledge_files

RULES = Path(__file__).resolve().parents[1] / "rules"
KNOWLEDGE = load_knowledge_files(RULES / "knowledge")
CASES = load_rule_cases([RULES])


def test_there_are_rules_with_cases() -> None:
    assert CASES, f"no rule cases under {RULES}"


@pytest.mark.parametrize("case", CASES, ids=[c.case_id for c in CASES])
def test_rule_case(case: RuleCase) -> None:
    result = run_case(case, KNOWLEDGE)
    assert result.passed, f"{case.location}: {result.reason}"


def test_praneya_rules_lint() -> None:
    assert main(["rules", "lint", str(RULES)]) == 0


def test_praneya_rules_test() -> None:
    assert main(["rules", "test", str(RULES)]) == 0

"""Knowledge coverage, measured on public lists nobody here wrote (tests/data/onc_*.tsv, provenance in
their headers), through the whole engine (shipped rules and knowledge, as `praneya check` sees them):

- every ONC high-priority member pair (Phansalkar 2012, Table 2 as revised) whose two drugs the
  vocabulary knows is graded CRITICAL;
- class-level knowledge gives at least 3,000 ingredient pairs, each with a source;
- at most 5% of the pairs on the ONC "non-interruptive" list (Phansalkar 2013) are graded interruptive
  (HIGH or CRITICAL).

    python -m tests.test_mechanism_coverage      # prints the README's "Knowledge coverage" table
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from engine.evaluate import evaluate
from engine.knowledge import Knowledge, load_knowledge_files
from engine.model import AlertKind, EvaluationRequest, MedicationFact, PatientSnapshot, Severity
from engine.rules import RuleSet, load_rule_files
from store.config import PROJECT_ROOT

DATA = Path(__file__).parent / "data"
KNOWLEDGE_DIR = PROJECT_ROOT / "rules" / "knowledge"
_PAIR_KINDS = frozenset({AlertKind.DRUG_DRUG_INTERACTION, AlertKind.DUPLICATE_THERAPY})


@cache
def shipped() -> tuple[Knowledge, RuleSet]:
    knowledge = load_knowledge_files(KNOWLEDGE_DIR)
    rules = [r.rule for r in load_rule_files([PROJECT_ROOT / "rules"]) if r.rule is not None]
    return knowledge, RuleSet.build(rules, "shipped")


@dataclass(frozen=True)
class ListedPair:
    group: str
    a: str
    b: str


def listed_pairs(name: str) -> Iterator[ListedPair]:
    with (DATA / name).open(encoding="utf-8") as handle:
        rows = csv.reader((line for line in handle if not line.startswith("#")), delimiter="\t")
        for row in rows:
            yield ListedPair(row[0], row[5], row[6])


def pair_grade(a: str, b: str) -> Severity | str | None:
    """The highest grade the engine gives drug a (current) with drug b (proposed): an alert about both;
    None when nothing fires; "unknown" when the vocabulary does not resolve one of them."""
    knowledge, rules = shipped()
    vocabulary = knowledge.vocabulary
    if not all(vocabulary.normalize_drug(n).recognised for n in (a, b)):
        return "unknown"
    snapshot = PatientSnapshot("p", "t", medications=(MedicationFact("m0", a),))
    request = EvaluationRequest(proposed_medications=(MedicationFact("p0", b, proposed=True),))
    result = evaluate(snapshot, request, rules, knowledge)
    grades = [
        alert.severity
        for alert in result.alerts
        if alert.kind in _PAIR_KINDS and {"m0", "p0"} <= set(alert.involved_ids)
    ]
    return max(grades) if grades else None


@dataclass(frozen=True)
class ListFigures:
    listed: int
    unknown: int  # a drug the vocabulary lacks
    graded: Counter[str]  # by grade name ("none" for no alert), pairs both of whose drugs are known
    failures: tuple[ListedPair, ...]

    @property
    def known(self) -> int:
        return self.listed - self.unknown


def measure(name: str, failing: frozenset[str]) -> ListFigures:
    graded: Counter[str] = Counter()
    unknown = 0
    failures = []
    pairs = list(listed_pairs(name))
    for pair in pairs:
        grade = pair_grade(pair.a, pair.b)
        if grade == "unknown":
            unknown += 1
            continue
        label = grade.name if isinstance(grade, Severity) else "none"
        graded[label] += 1
        if label in failing:
            failures.append(pair)
    return ListFigures(len(pairs), unknown, graded, tuple(failures))


def onc_figures() -> ListFigures:
    return measure("onc_high_priority.tsv", frozenset({"none", "INFO", "LOW", "MODERATE", "HIGH"}))


def non_interruptive_figures() -> ListFigures:
    return measure("onc_non_interruptive.tsv", frozenset({"HIGH", "CRITICAL"}))


def mechanism_rows() -> list[dict[str, str]]:
    with (KNOWLEDGE_DIR / "mechanism_pairs.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------------------------------


def test_every_onc_high_priority_member_pair_is_critical() -> None:
    figures = onc_figures()
    assert figures.listed >= 400
    shown = ", ".join(f"{p.a}+{p.b} (group {p.group})" for p in figures.failures[:20])
    assert not figures.failures, f"{len(figures.failures)} ONC pairs below CRITICAL: {shown}"
    assert figures.graded["CRITICAL"] == figures.known


def test_class_level_knowledge_gives_3000_ingredient_pairs_each_with_a_source() -> None:
    rows = mechanism_rows()
    vocabulary = shipped()[0].vocabulary
    pairs = {frozenset((r["drug_a"], r["drug_b"])) for r in rows}
    assert len(pairs) == len(rows) >= 3000
    assert all(r["source"].strip() and r["description"].strip() and r["recommendation"].strip() for r in rows)
    # Both ends are ingredients as the vocabulary names them (the join key), never free text.
    names = {n for r in rows for n in (r["drug_a"], r["drug_b"])}
    assert names <= set(vocabulary.ingredients)


def test_at_most_5_percent_of_the_non_interruptive_list_is_interruptive() -> None:
    figures = non_interruptive_figures()
    assert figures.known >= 1000
    interruptive = figures.graded["HIGH"] + figures.graded["CRITICAL"]
    shown = ", ".join(f"{p.a}+{p.b}" for p in figures.failures[:10])
    assert interruptive <= 0.05 * figures.known, f"{interruptive} of {figures.known} interruptive: {shown}"


def main() -> int:
    onc = onc_figures()
    quiet = non_interruptive_figures()
    rows = mechanism_rows()
    by_grade = Counter(r["severity"] for r in rows)
    interruptive = quiet.graded["HIGH"] + quiet.graded["CRITICAL"]
    print("| measure | figure | target |")
    print("|---|---|---|")
    print(
        f"| ONC high-priority member pairs (Phansalkar 2012, Table 2 as revised) graded CRITICAL | "
        f"{onc.graded['CRITICAL']} of {onc.known} with both drugs known ({onc.listed} listed, {onc.unknown} with a "
        f"drug the vocabulary lacks) | all |"
    )
    print(
        f"| ingredient pairs from class-level knowledge (`mechanism_pairs.csv`), each with a source | "
        f"{len(rows):,} ({', '.join(f'{k} {v:,}' for k, v in sorted(by_grade.items()))}) | ≥ 3,000 |"
    )
    print(
        f"| ONC non-interruptive pairs (Phansalkar 2013) graded interruptive (HIGH/CRITICAL) | "
        f"{interruptive} of {quiet.known} = {100 * interruptive / quiet.known:.1f}% ({quiet.listed:,} listed, "
        f"{quiet.unknown} with a drug the vocabulary lacks) | ≤ 5% |"
    )
    if onc.failures:
        print("ONC pairs below CRITICAL:", ", ".join(f"{p.a}+{p.b}" for p in onc.failures), file=sys.stderr)
    if quiet.failures:
        print("non-interruptive pairs graded interruptive:", file=sys.stderr)
        for group, n in sorted(Counter(p.group for p in quiet.failures).items(), key=lambda kv: int(kv[0])):
            sample = ", ".join(f"{p.a}+{p.b}" for p in quiet.failures if p.group == group)[:160]
            print(f"  group {group}: {n} ({sample})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

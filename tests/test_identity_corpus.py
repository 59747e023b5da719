"""The drug-name corpus (tests/data/drug_name_corpus.tsv, gathered from public sources independent of the
shipped vocabulary; provenance in drug_name_corpus.md): correct / wrong / unresolved, and never wrong.

`python -m tests.test_identity_corpus` prints the table the README quotes.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from engine.identity import fold
from engine.knowledge import Vocabulary, load_knowledge_files

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "drug_name_corpus.tsv"

# Where the corpus names an ingredient that the RxNorm release models otherwise, with the reason.
# Each is RxNorm's own modelling, read from the shipped concept table, not a normaliser choice.
RXNORM_MODELS_IT_OTHERWISE = {
    # BN KADCYLA (1371046) lists ingredient 224905 (trastuzumab): the release holds ado-trastuzumab
    # emtansine as a precise ingredient of trastuzumab, not as an ingredient of its own.
    "ado-trastuzumab emtansine": "trastuzumab",
    # RxNorm's ingredient 51428 is named "insulin aspart, human".
    "insulin aspart": "insulin aspart, human",
}


@dataclass(frozen=True)
class Outcome:
    text: str
    kind: str
    expected: str
    got: str | None
    verdict: str  # correct | wrong | unresolved


def _canonical(vocabulary: Vocabulary, name: str) -> str:
    """An expected ingredient name as the vocabulary's ingredient: by exact name only (RxNorm's own
    synonymy: a precise ingredient is its ingredient), never by the normaliser under test."""
    name = RXNORM_MODELS_IT_OTHERWISE.get(name, name)
    found = vocabulary._names.get(fold(name))
    if found is not None and len(found) == 1:
        name = found[0]
    return re.sub(r" \((?:usp|nf)\)$", "", fold(name))


def evaluate_corpus(vocabulary: Vocabulary) -> list[Outcome]:
    outcomes = []
    with CORPUS.open(encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE):
            drug = vocabulary.normalize_drug(row["text"])
            got = (
                " + ".join(sorted({_canonical(vocabulary, i) for i in drug.ingredients})) if drug.recognised else None
            )
            expected = row["expected"]
            if expected.startswith("!"):
                # Must not resolve: a non-drug, or a misspelling (which gets a suggestion instead).
                verdict = "correct" if got is None else "wrong"
            else:
                expected = " + ".join(sorted({_canonical(vocabulary, n) for n in expected.split(" + ")}))
                verdict = "unresolved" if got is None else ("correct" if got == expected else "wrong")
            outcomes.append(Outcome(row["text"], row["kind"], expected, got, verdict))
    return outcomes


VOCABULARY = load_knowledge_files(ROOT / "rules" / "knowledge").vocabulary
OUTCOMES = evaluate_corpus(VOCABULARY)


def test_the_corpus_is_large_and_varied() -> None:
    kinds = Counter(o.kind for o in OUTCOMES)
    assert len(OUTCOMES) >= 1000
    for kind in ("ehr_display", "brand", "generic", "label", "misspelling", "inn", "unicode", "negative"):
        assert kinds[kind] >= 40, kind


def test_no_corpus_string_resolves_to_the_wrong_ingredients() -> None:
    wrong = [o for o in OUTCOMES if o.verdict == "wrong"]
    assert not wrong, "\n".join(f"{o.text!r}: expected {o.expected}, got {o.got}" for o in wrong[:20])


def test_misspellings_are_suggested_not_resolved() -> None:
    with CORPUS.open(encoding="utf-8", newline="") as stream:
        rows = [
            r for r in csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE) if r["expected"].startswith("!?")
        ]
    suggested = 0
    for row in rows:
        drug = VOCABULARY.normalize_drug(row["text"])
        assert not drug.recognised, row["text"]
        meant = {_canonical(VOCABULARY, n) for n in row["expected"][2:].split(" + ")}
        if meant & {_canonical(VOCABULARY, s) for s in drug.suggestions}:
            suggested += 1
    # Most misspellings get the intended drug offered (the rest are too far from any name to offer one).
    assert suggested >= len(rows) // 2


def test_most_of_the_corpus_resolves() -> None:
    correct = sum(o.verdict == "correct" for o in OUTCOMES)
    assert correct / len(OUTCOMES) >= 0.9


def report() -> str:
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for o in OUTCOMES:
        by_kind[o.kind][o.verdict] += 1
        by_kind["all"][o.verdict] += 1
    lines = ["| kind | strings | correct | wrong | unresolved |", "|---|---|---|---|---|"]
    for kind in sorted(by_kind, key=lambda k: (k == "all", k)):
        c = by_kind[kind]
        total = sum(c.values())
        lines.append(f"| {kind} | {total} | {c['correct']} | {c['wrong']} | {c['unresolved']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())

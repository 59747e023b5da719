"""The RxNorm table's "A" gap (issue 9): ingredients the prescribable-content snapshot lacked resolve
by their RxNorm code through the shipped table. Every code here is read from rules/knowledge/rxnorm.tsv,
never typed: the test follows the data and fails if a row goes missing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from engine.evaluate import evaluate
from engine.identity import Coding, coding_from_text
from engine.knowledge import load_knowledge_files
from engine.model import EvaluationRequest, MedicationFact, PatientSnapshot
from engine.rules import RuleSet, load_rule_files

RULES = Path(__file__).resolve().parents[1] / "rules"
TABLE = RULES / "knowledge" / "rxnorm.tsv"
KNOWLEDGE = load_knowledge_files(RULES / "knowledge")
VOCAB = KNOWLEDGE.vocabulary

# Curated ingredients (vocabulary.yaml) that had no RXCUI before the OHDSI source was added.
RESTORED = (
    "acetaminophen", "almotriptan", "alprazolam", "amlodipine", "amoxapine", "amoxicillin", "amphetamine",
    "ampicillin", "apixaban", "atenolol", "azithromycin", "aztreonam", "indinavir", "saquinavir",
)


def _rows() -> list[dict[str, str]]:
    with TABLE.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = _rows()


def _in_row(name: str) -> dict[str, str]:
    hits = [r for r in ROWS if r["tty"] == "IN" and r["name"].lower() == name]
    assert len(hits) == 1, f"{name}: {len(hits)} IN rows in {TABLE}"
    return hits[0]


@pytest.mark.parametrize("name", RESTORED)
def test_a_restored_ingredient_resolves_by_its_shipped_code(name: str) -> None:
    row = _in_row(name)
    assert row["source"] == "ohdsi_phl" and row["ingredients"] == row["code"]
    for text in (f"rxnorm:{row['code']}", f"http://www.nlm.nih.gov/research/umls/rxnorm|{row['code']}"):
        coding = coding_from_text(text)
        assert coding == Coding("rxnorm", row["code"])
        drug = VOCAB.normalize_drug("", coding)
        assert drug.recognised and drug.ingredients == (name,), (text, drug)
    # The code wins over a name that says something else, and the name alone still resolves.
    assert VOCAB.normalize_drug("zzqx", Coding("rxnorm", row["code"])).ingredients == (name,)
    assert VOCAB.normalize_drug(name).ingredients == (name,)


def test_every_ohdsi_row_is_a_lone_ingredient_with_a_name_no_other_row_has() -> None:
    ohdsi = [r for r in ROWS if r["source"] == "ohdsi_phl"]
    assert ohdsi and all(r["tty"] == "IN" and r["ingredients"] == r["code"] and r["name"] for r in ohdsi)
    names = [r["name"].lower() for r in ROWS if r["tty"] == "IN"]
    assert len(names) == len(set(names))
    codes = [r["code"] for r in ROWS]
    assert len(codes) == len(set(codes))


def test_an_interaction_is_found_when_the_ingredient_comes_by_code_alone() -> None:
    """apixaban given only as its RxNorm code still meets the DOAC + NSAID interaction."""
    apixaban = _in_row("apixaban")["code"]
    snapshot = PatientSnapshot(
        patient_id="p", tenant_id="t", age=50, sex="female", pregnant=False,
        medications=(
            MedicationFact("m0", "", coding=Coding("rxnorm", apixaban)),
            MedicationFact("m1", "ibuprofen 400 mg tablet", proposed=True),
        ),
        allergies=(),
    )
    ruleset = RuleSet.build([r.rule for r in load_rule_files([RULES]) if r.rule is not None], version="test")
    result = evaluate(snapshot, EvaluationRequest(), ruleset, KNOWLEDGE)
    assert not [u for u in result.unresolved if u.kind == "medication"], result.unresolved
    assert any({"m0", "m1"} <= set(a.involved_ids) and a.severity.interruptive for a in result.alerts), [
        (a.summary, a.involved_ids) for a in result.alerts
    ]

"""The interaction knowledge base: CSV import, pair ids, indexed lookup, tenant overrides."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from engine.evaluate import evaluate
from engine.knowledge import (
    CsvImportError,
    EntityKey,
    InteractionKnowledge,
    InteractionPair,
    Knowledge,
    PairOverride,
    load_knowledge_files,
    parse_interactions_csv,
)
from engine.model import (
    AlertKind,
    EvaluationRequest,
    EvidenceLevel,
    MedicationFact,
    PatientSnapshot,
    Severity,
)
from engine.rules import RuleSet
from tests.calls import count_calls

KNOWLEDGE = load_knowledge_files(Path(__file__).parent / "data" / "knowledge")
COLUMNS = "drug_a drug_b severity description recommendation interaction_type evidence_level"
COLUMNS += " avoid_combination source"
HEADER = ",".join(COLUMNS.split()) + "\n"
NO_RULES = RuleSet.build([], "none")


def _meds(*names: str) -> tuple[MedicationFact, ...]:
    return tuple(MedicationFact(id=f"m{i}", name=n) for i, n in enumerate(names))


def _alerts(
    knowledge: Knowledge, *names: str, foods: tuple[str, ...] = ()
) -> list[tuple[AlertKind, Severity, tuple[str, ...]]]:
    result = evaluate(
        PatientSnapshot("p", "t", medications=_meds(*names)),
        EvaluationRequest(proposed_foods=foods),
        NO_RULES,
        knowledge,
    )
    return [(a.kind, a.severity, a.involved_ids) for a in result.alerts if a.kind is not AlertKind.OTHER]


def test_parse_maps_columns_by_header() -> None:
    text = "severity,drug_b,drug_a\nmajor,class:NSAID,Warfarin Sodium\n"
    (pair,) = parse_interactions_csv(text, vocabulary=KNOWLEDGE.vocabulary)
    assert (pair.a_kind, pair.a, pair.b_kind, pair.b) == ("ingredient", "warfarin", "class", "nsaid")
    assert pair.severity is Severity.HIGH and pair.source_severity == "major"
    assert pair.evidence is EvidenceLevel.UNKNOWN and pair.interaction_type == "DRUG_DRUG"


def test_pair_id_is_deterministic_and_unordered() -> None:
    (one,) = parse_interactions_csv(HEADER + "warfarin,class:nsaid,2,a,,,,,FDB\n")
    (two,) = parse_interactions_csv(HEADER + "class:nsaid,warfarin,major,b,,,,,FDB\n")
    (other_source,) = parse_interactions_csv(HEADER + "warfarin,class:nsaid,2,a,,,,,Lexicomp\n")
    assert one.id == two.id != other_source.id


def test_errors_are_all_listed_with_line_numbers_and_nothing_is_imported() -> None:
    text = (
        HEADER
        + "warfarin,class:nsaid,2,,,,,,\n"
        + "a,b,Q,,,,,,\n"
        + ",b,1,,,,,,\n"
        + "a,b,1,,,,strong,maybe,\n"
    )
    with pytest.raises(CsvImportError) as caught:
        parse_interactions_csv(text)
    errors = caught.value.errors
    assert "line 3: severity 'Q' is not on a known scale" in errors
    assert any(e.startswith("line 4: drug_a") for e in errors)
    assert any(e.startswith("line 5:") and "evidence" in e for e in errors)
    assert any(e.startswith("line 5:") and "avoid_combination" in e for e in errors)
    assert not any(e.startswith("line 2") for e in errors)


def test_header_problems() -> None:
    with pytest.raises(CsvImportError, match="missing required column"):
        parse_interactions_csv("drug_a,drug_b\nx,y\n")
    with pytest.raises(CsvImportError, match="unknown column"):
        parse_interactions_csv("drug_a,drug_b,severity,recomendation\nx,y,1,z\n")


def test_duplicate_pair_in_one_file_is_refused() -> None:
    with pytest.raises(CsvImportError, match="line 3: the same pair"):
        parse_interactions_csv(HEADER + "a,b,1,,,,,,S\nb,a,2,,,,,,S\n")


def test_combination_product_in_a_column_is_refused_with_vocabulary() -> None:
    with pytest.raises(CsvImportError, match="combination"):
        parse_interactions_csv(HEADER + "bactrim,warfarin,1,,,,,,\n", vocabulary=KNOWLEDGE.vocabulary)


def test_contraindicated_defaults_to_avoid() -> None:
    (pair,) = parse_interactions_csv(HEADER + "a,b,X,,,,,,\n")
    assert pair.avoid_combination


def test_ingredient_class_and_class_class_pairs_are_found() -> None:
    # simvastatin (ingredient) x strong CYP3A4 inhibitor (class)
    assert _alerts(KNOWLEDGE, "simvastatin 40 mg", "clarithromycin") == [
        (AlertKind.DRUG_DRUG_INTERACTION, Severity.CRITICAL, ("m0", "m1"))
    ]
    # class x class, through brand names
    assert _alerts(KNOWLEDGE, "Zoloft", "Nardil") == [
        (AlertKind.DRUG_DRUG_INTERACTION, Severity.CRITICAL, ("m0", "m1"))
    ]
    assert _alerts(KNOWLEDGE, "sertraline", "paracetamol") == []


def test_food_drug_pairs_use_food_groups() -> None:
    assert _alerts(KNOWLEDGE, "simvastatin", foods=("1 glass grapefruit juice",)) == [
        (AlertKind.FOOD_DRUG_INTERACTION, Severity.HIGH, ("food:grapefruit juice", "m0"))
    ]


def test_overrides_regrade_or_disable() -> None:
    pairs = list(KNOWLEDGE.interactions.pairs)
    target = next(p for p in pairs if p.a == "warfarin" and p.b == "nsaid")
    regraded = Knowledge(
        KNOWLEDGE.vocabulary,
        InteractionKnowledge.from_pairs(pairs, [PairOverride(target.id, severity=Severity.CRITICAL)]),
        KNOWLEDGE.allergens,
        "t",
    )
    disabled = Knowledge(
        KNOWLEDGE.vocabulary,
        InteractionKnowledge.from_pairs(pairs, [PairOverride(target.id, disabled=True)]),
        KNOWLEDGE.allergens,
        "t",
    )
    assert _alerts(KNOWLEDGE, "warfarin", "ibuprofen")[0][1] is Severity.HIGH
    assert _alerts(regraded, "warfarin", "ibuprofen")[0][1] is Severity.CRITICAL
    assert _alerts(disabled, "warfarin", "ibuprofen") == []


def _bulk_csv(rows: int) -> str:
    out = io.StringIO()
    out.write(HEADER)
    for i in range(rows):
        out.write(f"drug{i},drug{i + 1},{'123'[i % 3]},desc {i},rec,PHARMACOKINETIC,OBSERVATIONAL,false,Bulk\n")
    return out.getvalue()


class _CountingIndex(Mapping[EntityKey, tuple[InteractionPair, ...]]):
    """The pair index by entity, counting how many pairs a lookup walks."""

    def __init__(self, inner: Mapping[EntityKey, tuple[InteractionPair, ...]]) -> None:
        self.inner = inner
        self.walked = 0

    def __getitem__(self, key: EntityKey) -> tuple[InteractionPair, ...]:
        found = self.inner[key]
        self.walked += len(found)
        return found

    def __iter__(self) -> Iterator[EntityKey]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class _UnscannedPairs(tuple[InteractionPair, ...]):
    """Every pair, refusing to be walked: an evaluation must go through the index."""

    def __iter__(self) -> Iterator[InteractionPair]:
        raise AssertionError("the evaluation scanned every interaction pair")


def test_150k_rows_import_and_lookup_do_work_proportional_to_what_they_touch() -> None:
    # Counts, not seconds (speed is `make bench`'s business): ten times the rows costs about ten
    # times the calls (a quadratic import would cost a hundred), and an evaluation walks only the
    # pairs its medications take part in, never the whole knowledge base.
    small, large = _bulk_csv(1_500), _bulk_csv(15_000)
    ratio = count_calls(lambda: InteractionKnowledge.from_pairs(parse_interactions_csv(large))) / count_calls(
        lambda: InteractionKnowledge.from_pairs(parse_interactions_csv(small))
    )
    assert ratio < 12, f"10x the rows made {ratio:.1f}x the calls"

    pairs = parse_interactions_csv(_bulk_csv(150_000))
    assert len(pairs) == 150_000
    kb = InteractionKnowledge.from_pairs([*pairs, *KNOWLEDGE.interactions.pairs])
    assert len(kb) == 150_000 + len(KNOWLEDGE.interactions)
    index = _CountingIndex(kb._by_entity)
    watched = replace(kb, pairs=_UnscannedPairs(kb.pairs), _by_entity=index)
    big = Knowledge(KNOWLEDGE.vocabulary, watched, KNOWLEDGE.allergens, "big")
    names = ["warfarin", "ibuprofen", "drug7", "drug8", *[f"drug{i * 10}" for i in range(16)]]
    found = _alerts(big, *names)
    assert (AlertKind.DRUG_DRUG_INTERACTION, Severity.HIGH, ("m0", "m1")) in found
    assert any(ids == ("m2", "m3") for _, _, ids in found)
    # 38 today: two pairs per drugN, a few dozen for warfarin, ibuprofen and their classes; a scan
    # of the knowledge base would be 150,000.
    assert 0 < index.walked <= 200, f"{index.walked} pairs walked for 20 medications"

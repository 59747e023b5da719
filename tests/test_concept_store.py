"""The compact vocabulary (engine.concept_store) answers exactly as the dicts it replaced.

Every NDC, RxNorm code and name of a sample of the shipped tables (rules/knowledge/rxnorm.tsv and
rxnorm_ndc.tsv.gz, read here, never typed) is looked up in the compact forms and compared with a
plain dict built from the same rows the way the vocabulary used to build it; codes and names that
are not there answer None. The same sample goes through every way in: the constructors, the
shipped-file readers (line by line and by block) and the database (a COPY each). Codes made up for
edge cases are in the 9,000,000,000 range, outside RxNorm's.
"""

from __future__ import annotations

import gzip
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from engine.concept_store import CodedDrug, ConceptRows, NameIndex, NdcIndex, TrigramIndex
from engine.identity import fold
from engine.knowledge import (
    CONCEPT_COLUMNS,
    DrugConcept,
    KnowledgeFileError,
    Vocabulary,
    load_concept_files,
    parse_concepts_tsv,
    parse_ndc_tsv,
    read_concept_lines,
    read_ndc_file,
)
from store import provision
from store.config import PROJECT_ROOT, sqlalchemy_url
from store.knowledge_repo import load_vocabulary, sync_shipped_concepts
from tests.fix_db import db_name, migrate

KNOWLEDGE = PROJECT_ROOT / "rules" / "knowledge"
HEADER = "\t".join(CONCEPT_COLUMNS)


def _shipped_lines(name: str) -> list[str]:
    path = KNOWLEDGE / name
    data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    lines = data.decode("utf-8").splitlines()
    assert lines[0] == HEADER
    return lines[1:]


@pytest.fixture(scope="module")
def ndc_sample() -> list[str]:
    """Every 50th NDC row of the shipped table, and its first and last: over 4,000 NDCs, from every
    labeler range (and so from every 2**32 bucket the index splits them into)."""
    lines = _shipped_lines("rxnorm_ndc.tsv.gz")
    return sorted({*lines[::50], lines[0], lines[-1]})


@pytest.fixture(scope="module")
def concept_sample() -> list[str]:
    """Every ingredient (TTY IN) of the shipped table and every 7th other concept."""
    lines = _shipped_lines("rxnorm.tsv")
    ingredients = [line for line in lines if line.split("\t")[2] == "IN"]
    others = [line for line in lines if line.split("\t")[2] != "IN"]
    return ingredients + others[::7]


def _pairs(lines: Sequence[str]) -> dict[str, str]:
    return {cells[1]: cells[5] for cells in (line.split("\t") for line in lines)}


def _unknown_ndcs(known: dict[str, str]) -> list[str]:
    near = {str(int(n) + d).zfill(11) for n in known for d in (-1, 1)} - set(known)
    return [*sorted(near), "", "x", "0", "00000000000", "99999999999", "1" * 13, "12345678901234567890", "12-34"]


# -- NDC -> product ----------------------------------------------------------------------------------


def test_every_ndc_answers_its_product_whichever_way_the_index_is_built(
    ndc_sample: list[str], tmp_path: Path
) -> None:
    expected = _pairs(ndc_sample)
    assert len(expected) > 4000 and len({int(n) >> 32 for n in expected}) > 10
    as_ints = sorted((int(n), int(p)) for n, p in expected.items())
    shuffled = list(expected.items())
    random.Random(9).shuffle(shuffled)
    table = tmp_path / "rxnorm_ndc.tsv.gz"
    table.write_bytes(gzip.compress("\n".join([HEADER, *ndc_sample, ""]).encode()))
    assert table.stat().st_size > 0 and len("\n".join(ndc_sample)) > 4 * (1 << 16)  # several blocks
    indexes = {
        "pairs, shuffled": NdcIndex(shuffled),
        "sorted integers": NdcIndex.from_sorted(as_ints),
        "blocks": NdcIndex.from_blocks([([n for n, _ in as_ints[:700]], [p for _, p in as_ints[:700]]),
                                        ([], []),
                                        ([n for n, _ in as_ints[700:]], [p for _, p in as_ints[700:]])]),
        "shipped-file reader": read_ndc_file(table),
        "parse_ndc_tsv": NdcIndex(parse_ndc_tsv(gzip.decompress(table.read_bytes()).decode())),
    }  # fmt: skip
    unknown = _unknown_ndcs(expected)
    for how, index in indexes.items():
        assert len(index) == len(expected), how
        assert {ndc: index.product(ndc) for ndc in expected} == expected, how
        assert [index.product(ndc) for ndc in unknown] == [None] * len(unknown), how
        assert list(index) == as_ints, how


def test_an_ndc_given_twice_answers_its_smallest_product_and_other_rows_are_skipped() -> None:
    # What the sorted pairs of the previous index answered (bisection finds the first).
    index = NdcIndex([("90000000001", "9000000012"), ("90000000001", "9000000011"), ("x", "1"), ("90000000002", "")])
    assert index.product("90000000001") == "9000000011"
    assert len(index) == 1 and index.product("90000000002") is None
    empty = NdcIndex()
    assert len(empty) == 0 and empty.product("90000000001") is None and list(empty) == []
    with pytest.raises(ValueError, match="ascending"):
        NdcIndex.from_sorted([(90000000002, 1), (90000000001, 1)])


def test_the_ndc_file_reader_reports_and_skips_what_parse_ndc_tsv_does(ndc_sample: list[str], tmp_path: Path) -> None:
    def written(lines: list[str]) -> Path:
        path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.tsv.gz"
        path.write_bytes(gzip.compress("\n".join([HEADER, *lines]).encode()))
        return path

    rows = ndc_sample[:3000]
    # A bad row deep in the file (a block read by column) is named by its line, as parse_ndc_tsv names it.
    bad = [*rows[:2500], rows[2500].replace("\t", " ", 1), *rows[2501:]]
    with pytest.raises(KnowledgeFileError) as by_parser:
        list(parse_ndc_tsv("\n".join([HEADER, *bad])))
    bad_file = written(bad)
    with pytest.raises(KnowledgeFileError) as by_reader:
        read_ndc_file(bad_file)
    assert str(by_parser.value) == "ndc:2502: expected an ndc row naming its product"
    assert str(by_reader.value) == f"{bad_file}:2502: expected an ndc row naming its product"
    # Empty lines, CRLF line ends and a row whose code is not digits (skipped, as before).
    cells = rows[10].split("\t")
    odd = [*rows[:5], "", rows[5] + "\r", "\t".join([cells[0], "NOTDIGITS", *cells[2:]]), *rows[6:]]
    from_text = NdcIndex(parse_ndc_tsv("\n".join([HEADER, *odd])))
    from_file = read_ndc_file(written(odd))
    assert list(from_file) == list(from_text) and len(from_file) == len(rows)
    # Out of NDC order: read again and sorted, the same index.
    assert list(read_ndc_file(written(list(reversed(rows))))) == list(NdcIndex(_pairs(rows).items()))
    headerless = tmp_path / "headerless.tsv.gz"
    headerless.write_bytes(gzip.compress("\n".join(rows).encode()))
    for path in (headerless, written([]).with_name("empty.tsv.gz")):
        if not path.exists():
            path.write_bytes(gzip.compress(b""))
        with pytest.raises(KnowledgeFileError, match="the first line must be the header"):
            read_ndc_file(path)


# -- RXCUI -> what the code denotes --------------------------------------------------------------------


def _reference(concepts: Sequence[DrugConcept]) -> tuple[dict[str, CodedDrug], dict[str, tuple[str, ...] | None]]:
    """What the vocabulary built before the compact forms: a dict per code (the last row of a code
    wins) and a dict per folded name (a name given two ingredient sets is ambiguous: None)."""
    in_names = {c.code: fold(c.name) for c in concepts if c.system == "rxnorm" and c.tty == "IN"}
    coded: dict[str, CodedDrug] = {}
    names: dict[str, set[tuple[str, ...]]] = {}
    for name in in_names.values():
        names.setdefault(fold(name), set()).add((name,))
    for c in concepts:
        if c.system != "rxnorm":
            continue
        found = [in_names.get(i) for i in c.ingredients]
        ingredients = tuple(sorted({n for n in found if n})) if found and None not in found else None
        coded[c.code] = CodedDrug(ingredients, c.strength, c.dose_form, c.active)
        if c.active and ingredients is not None:
            names.setdefault(fold(c.name), set()).add(ingredients)
    return coded, {n: next(iter(s)) if len(s) == 1 else None for n, s in names.items()}


def _edge_concepts() -> list[DrugConcept]:
    """Made-up codes: a code listed twice (the last row wins), one with a leading zero (not the
    same code as without it), one above 2**32, a retired product, one naming an unknown ingredient,
    and two products given one name with different ingredients (ambiguous)."""
    a, b = "9000000001", "9000000002"
    return [
        DrugConcept("rxnorm", a, "IN", "Alphazine", (a,)),
        DrugConcept("rxnorm", b, "IN", "betazole test", (b,)),
        DrugConcept("rxnorm", "9000000003", "SCD", "alphazine 5 MG Oral Tablet", (a,), strength="5 MG"),
        DrugConcept("rxnorm", "9000000003", "SCD", "alphazine 10 MG Oral Tablet", (a,), strength="10 MG",
                    dose_form="Oral Tablet"),
        DrugConcept("rxnorm", "09000000004", "BN", "Leadzero", (a, b)),
        DrugConcept("rxnorm", "9999999999", "BN", "Bigcode", (b,)),
        DrugConcept("rxnorm", "9000000005", "SBD", "Retired Thing", (a,), strength="", active=False),
        DrugConcept("rxnorm", "9000000006", "SCD", "unknownol 1 MG", ("9000000099",)),
        DrugConcept("rxnorm", "9000000007", "BN", "Twinname", (a,)),
        DrugConcept("rxnorm", "9000000008", "BN", "twinname", (b,)),
        DrugConcept("ndc", "90000000001", "NDC", "Alphazine pack", (a,), product="9000000003"),
    ]  # fmt: skip


def _vocabularies(concepts: list[DrugConcept], lines: list[str]) -> dict[str, Vocabulary]:
    rows = ConceptRows()
    for c in concepts:
        rows.add(c.system, c.code, c.tty, c.name, ",".join(c.ingredients), c.strength, c.dose_form, c.active)
    return {
        "DrugConcepts": Vocabulary(concepts=concepts),
        "ConceptRows": Vocabulary(concepts=rows),
        "table lines": Vocabulary(concepts=read_concept_lines(lines)),
    }


def test_every_code_and_name_answers_as_the_dicts_did(concept_sample: list[str]) -> None:
    shipped = parse_concepts_tsv("\n".join([HEADER, *concept_sample]))
    concepts = [*shipped, *_edge_concepts()]
    edge_lines = ["\t".join((c.system, c.code, c.tty, c.name, ",".join(c.ingredients), c.product or "",
                             c.strength or "", c.dose_form or "", "", "1" if c.active else "0", "test"))
                  for c in _edge_concepts()]  # fmt: skip
    coded, names = _reference(concepts)
    assert len(coded) > 5000 and any(v is None for v in names.values())
    unknown_codes = ["0", "", "x", "9000000004", "4294967296", "99999999999", "900000000x", "٩٠٠٠٠٠٠٠٠١",
                     *(str(int(c) + 1) for c in list(coded)[:50] if str(int(c) + 1) not in coded)]  # fmt: skip
    for how, vocab in _vocabularies(concepts, [*concept_sample, *edge_lines]).items():
        # The table lines carry "" for no strength where a DrugConcept may carry "": read as None.
        want = coded if how != "table lines" else {
            k: CodedDrug(v.ingredients, v.strength or None, v.dose_form or None, v.active) for k, v in coded.items()
        }  # fmt: skip
        assert len(vocab.concepts) == len(want), how
        assert {code: vocab.concepts.get(code) for code in want} == want, how
        assert {code: vocab.concepts[code] for code in want} == want, how
        assert sorted(vocab.concepts) == sorted(want), how
        assert [vocab.concepts.get(code) for code in unknown_codes] == [None] * len(unknown_codes), how
        assert all(code not in vocab.concepts for code in unknown_codes), how
        assert vocab.concepts["9000000003"].strength == "10 MG" and "09000000004" in vocab.concepts, how
        assert {name: vocab._names.get(name) for name in names} == names, how
        assert len(vocab._names) == len(names) and set(vocab._names) == set(names), how
        assert vocab.ambiguous_names == {"twinname": (("alphazine",), ("betazole test",))}, how
        assert vocab._names.get("twinname", ()) is None and "twinname" in vocab._names, how
        assert vocab._names.get("not a drug name") is None and "not a drug name" not in vocab._names, how
        assert vocab.ingredient_codes["alphazine"] == "9000000001", how
        assert vocab.normalize_drug("Leadzero").ingredients == ("alphazine", "betazole test"), how


def test_the_shipped_files_load_into_the_compact_forms() -> None:
    rows, ndc = load_concept_files(KNOWLEDGE)
    assert isinstance(rows, ConceptRows) and len(rows) == len(_shipped_lines("rxnorm.tsv"))
    assert len(ndc) == len(_shipped_lines("rxnorm_ndc.tsv.gz"))
    empty_rows, empty_ndc = load_concept_files(PROJECT_ROOT / "tests")
    assert len(empty_rows) == 0 and len(empty_ndc) == 0


# -- names and trigrams --------------------------------------------------------------------------------


def test_a_name_index_answers_every_name_and_only_those() -> None:
    names: dict[str, tuple[str, ...] | None] = {
        "warfarin": ("warfarin",), "": ("empty",), "phénelzine": ("phenelzine",), "ambiguous": None,
        "a\ud800b": ("surrogate",), "日本": ("kanji",), **{f"name {i}": (f"n{i % 7}",) for i in range(3000)},
    }  # fmt: skip
    index = NameIndex(names)
    assert len(index) == len(names) and set(index) == set(names)
    assert {name: index.get(name, ("missing",)) for name in names} == names
    assert {name: index[name] for name in names} == names
    for absent in ("warfarin ", "Warfarin", "name 3000", "a\ud800", "phenelzine", "日"):
        assert absent not in index and index.get(absent) is None and index.get(absent, ("d",)) == ("d",)
        with pytest.raises(KeyError):
            index[absent]
    assert "ambiguous" in index and index.get("ambiguous", ("d",)) is None


class _CollidingNameIndex(NameIndex):
    """Names hashed to one of three values: every lookup meets other names with its hash."""

    _hash = staticmethod(lambda name: len(name) % 3)


def test_names_whose_hashes_collide_are_told_apart_by_their_bytes() -> None:
    names: dict[str, tuple[str, ...] | None] = {f"drug {i:04}": (f"i{i}",) for i in range(500)}
    names["ambiguous x"] = None
    index = _CollidingNameIndex(names)
    assert {name: index.get(name, ("missing",)) for name in names} == names
    for absent in ("drug 0500", "drug 050", "drug  001", "gurd 0001", "ambiguous y"):
        assert absent not in index and index.get(absent) is None


def test_a_trigram_index_lists_the_names_of_each_trigram_in_order() -> None:
    def grams(text: str) -> set[str]:
        padded = f"  {text} "
        return {padded[i : i + 3] for i in range(len(padded) - 2)}

    names = sorted({fold(line.split("\t")[3]) for line in _shipped_lines("rxnorm.tsv")[::5]})
    expected: dict[str, list[int]] = {}
    for position, name in enumerate(names):
        for gram in grams(name):
            expected.setdefault(gram, []).append(position)
    index = TrigramIndex(names, grams)
    assert len(index) == len(expected)
    assert {gram: list(index.get(gram)) for gram in expected} == expected
    assert list(index.get("zq§")) == [] and list(index.get("ab")) == []


# -- from the database ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_database(server_url: str, db_worker: str) -> Iterator[str]:
    name = db_name("concepts", db_worker, str(os.getpid()))
    url = provision.recreate_database(server_url, name)
    migrate(url)
    yield url
    provision.drop_database(server_url, name)


@pytest.mark.db
def test_the_database_load_answers_as_the_files_do(
    sample_database: str, concept_sample: list[str], ndc_sample: list[str], tmp_path: Path
) -> None:
    lines = [*concept_sample, *ndc_sample]
    table = parse_concepts_tsv("\n".join([HEADER, *lines]))
    engine = create_engine(sqlalchemy_url(sample_database))
    try:
        with engine.begin() as conn:
            sync_shipped_concepts(conn, table, "rxnorm-sample")
        with engine.connect() as conn:
            stored = load_vocabulary(conn)
    finally:
        engine.dispose()
    (tmp_path / "rxnorm.tsv").write_text("\n".join([HEADER, *concept_sample, ""]), encoding="utf-8")
    (tmp_path / "rxnorm_ndc.tsv.gz").write_bytes(gzip.compress("\n".join([HEADER, *ndc_sample, ""]).encode()))
    rows, ndc = load_concept_files(tmp_path)
    files = Vocabulary(concepts=rows, ndc=ndc)
    expected = _pairs(ndc_sample)
    unknown = _unknown_ndcs(expected)
    assert {n: stored.ndc.product(n) for n in [*expected, *unknown]} == {n: files.ndc.product(n) for n in
                                                                         [*expected, *unknown]}  # fmt: skip
    assert {n: stored.ndc.product(n) for n in expected} == expected and list(stored.ndc) == list(files.ndc)
    coded, names = _reference(table)
    assert {code: stored.concepts.get(code) for code in coded} == coded
    assert dict(stored.concepts) == dict(files.concepts) == coded
    assert {name: stored._names.get(name) for name in names} == names
    assert stored.ingredient_codes == files.ingredient_codes and stored._suggestable == files._suggestable

"""Importing other knowledge bases' exports: profiles, unresolved names, folding, expansion.

The DDInter-shaped files here are made up (real drug names, invented rows and grades): DDInter's own
data is CC BY-NC-SA and is not in this repository. The first half is pure (engine.knowledge_import),
the second imports through `praneya knowledge import` into the test database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, text

from engine.doors.cli import main as praneya
from engine.knowledge import (
    AliasRecord,
    CsvImportError,
    IngredientRecord,
    InteractionKnowledge,
    Vocabulary,
    load_knowledge_files,
    pair_id,
    parse_interactions_csv,
    vocabulary_from_document,
)
from engine.knowledge_import import (
    ImportPlan,
    ImportProfile,
    ProfileError,
    describe_folds,
    load_profile_document,
    plan_import,
    profile_from_document,
    unresolved_report_tsv,
    with_flags,
)
from engine.model import Severity
from store.config import PROJECT_ROOT

KNOWLEDGE = PROJECT_ROOT / "rules" / "knowledge"
PROFILES = KNOWLEDGE / "profiles"
DDINTER_PROFILE = PROFILES / "ddinter-example.yaml"
HEADER = "DDInterID_A,Drug_A,DDInterID_B,Drug_B,Level\n"


def ddinter_csv(*rows: tuple[str, str, str]) -> bytes:
    lines = [f"DDInter{2 * i + 1},{a},DDInter{2 * i + 2},{b},{level}\n" for i, (a, b, level) in enumerate(rows)]
    return (HEADER + "".join(lines)).encode()


# Made-up rows, real names: lines 2 and 3 fold onto warfarin + aspirin with different grades; line 5 is
# a combination product.
ROWS = (
    ("Warfarin Sodium", "Aspirin", "Moderate"),
    ("warfarin", "aspirin 81 mg", "Major"),
    ("Simvastatin", "Clarithromycin", "Major"),
    ('"sulfamethoxazole / trimethoprim"', "Warfarin", "Moderate"),
    ("Erythromycin", "Simvastatin", "Minor"),
    ("Aspirin", "Ibuprofen", "Unknown"),
)


def _profile(path: Path) -> ImportProfile:
    return profile_from_document(load_profile_document(path.read_text(), where=str(path)), where=str(path))


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    """The curated vocabulary alone: what `praneya knowledge vocabulary` puts in the database."""
    return vocabulary_from_document(yaml.safe_load((KNOWLEDGE / "vocabulary.yaml").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def coded_vocabulary() -> Vocabulary:
    """With the shipped RxNorm concept table, so codes resolve."""
    return load_knowledge_files(KNOWLEDGE).vocabulary


@pytest.fixture(scope="module")
def ddinter() -> ImportProfile:
    return _profile(DDINTER_PROFILE)


def _pairs(plan: ImportPlan) -> dict[frozenset[str], Severity]:
    return {frozenset((p.a, p.b)): p.severity for p in plan.pairs if not p.unresolved}


# -- pure: profiles ---------------------------------------------------------------------------------------


def test_the_shipped_profiles_load() -> None:
    dd = _profile(DDINTER_PROFILE)
    assert dd.columns == {"drug_a": "Drug_A", "drug_b": "Drug_B", "severity": "Level"}
    assert dd.severity == {
        "major": Severity.HIGH,
        "moderate": Severity.MODERATE,
        "minor": Severity.LOW,
        "unknown": Severity.INFO,
    }
    assert dd.source == "ddinter" and dd.code_system is None
    ours = _profile(PROFILES / "praneya.yaml")
    assert ours.severity is None and ours.unmapped_columns == "refuse"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"severity": {"Major": "HIGH", "Unknown": "SOMETIMES"}}, "severity.Unknown"),
        ({"severity": {"Major": "HIGH", False: "LOW"}}, "severity.False"),
        ({"severity": {"Major": "HIGH", "major": "LOW"}}, "severity.major"),
        ({"columns": {"drug_a": "Drug_A", "severity": "Level"}}, "columns.drug_b"),
        ({"columns": {"drug_a": "Drug_A", "drug_b": "Drug_B", "severity": "Level", "drug_c": "X"}}, "columns.drug_c"),
        ({"columns": {"drug_a": "Drug_A", "drug_b": "Drug_A", "severity": "Level"}}, "columns.drug_b"),
        ({"columns": {"drug_a": "A", "drug_b": "B", "severity": "L", "drug_a_code": "RxA"}}, "code_system"),
        ({"code_system": "snomed"}, "code_system"),
        ({"delimiter": ";;"}, "delimiter"),
        ({"encoding": "utf-9"}, "encoding"),
        ({"evidence": "anecdote"}, "evidence"),
        ({"unmapped_columns": "warn"}, "unmapped_columns"),
        ({"colums": {}}, "colums"),
    ],
)
def test_a_profile_error_names_the_field(change: dict[object, object], field: str) -> None:
    doc = dict(load_profile_document(DDINTER_PROFILE.read_text(), where="dd.yaml"), **change)  # type: ignore[arg-type]
    with pytest.raises(ProfileError) as err:
        profile_from_document(doc, where="dd.yaml")
    assert f"dd.yaml: {field}:" in str(err.value)


def test_flags_replace_the_profiles_entries_or_make_a_profile_of_their_own() -> None:
    base = load_profile_document(DDINTER_PROFILE.read_text(), where="dd")
    doc = with_flags(base, columns=["drug_b=Other_B"], severities=["Unknown=LOW"], delimiter="tab")
    profile = profile_from_document(doc, where="dd")
    assert profile.columns["drug_b"] == "Other_B" and profile.columns["drug_a"] == "Drug_A"
    assert profile.severity is not None and profile.severity["unknown"] is Severity.LOW
    assert profile.delimiter == "\t"
    alone = profile_from_document(
        with_flags(None, columns=["drug_a=Drug1", "drug_b=Drug2", "severity=Level"], severities=["X=CRITICAL"]),
        where="flags",
    )
    assert alone.columns == {"drug_a": "Drug1", "drug_b": "Drug2", "severity": "Level"}
    with pytest.raises(ProfileError, match=r"columns\.severity: required"):
        profile_from_document(with_flags(None, columns=["drug_a=A", "drug_b=B"]), where="flags")
    with pytest.raises(ProfileError, match="expected NAME=VALUE"):
        with_flags(None, columns=["drug_a"])


# -- pure: an import plan ---------------------------------------------------------------------------------


def test_grades_are_mapped_folded_rows_keep_the_highest_and_combinations_expand(
    vocabulary: Vocabulary, ddinter: ImportProfile
) -> None:
    plan = plan_import(ddinter_csv(*ROWS), ddinter, vocabulary, source="dd")
    assert plan.rows_read == 6 and not plan.unresolved
    assert _pairs(plan) == {
        frozenset({"warfarin", "aspirin"}): Severity.HIGH,  # Moderate (line 2) and Major (line 3): Major kept
        frozenset({"simvastatin", "clarithromycin"}): Severity.HIGH,
        frozenset({"sulfamethoxazole", "warfarin"}): Severity.MODERATE,
        frozenset({"trimethoprim", "warfarin"}): Severity.MODERATE,
        frozenset({"erythromycin", "simvastatin"}): Severity.LOW,
        frozenset({"aspirin", "ibuprofen"}): Severity.INFO,
    }
    [fold] = plan.folded
    assert (fold.kept, fold.kept_line, fold.conflicting) == (Severity.HIGH, 3, True)
    assert [(r.line, r.drug_a, r.drug_b, r.source_severity) for r in fold.rows] == [
        (2, "Warfarin Sodium", "Aspirin", "Moderate"),
        (3, "warfarin", "aspirin 81 mg", "Major"),
    ]
    assert plan.folded_rows == 1
    [line] = describe_folds(plan)
    assert "line 2" in line and "line 3" in line and "kept the highest: HIGH from line 3" in line
    kept = next(p for p in plan.pairs if {p.a, p.b} == {"warfarin", "aspirin"})
    assert kept.source_severity == "Major"
    [expanded] = plan.expanded
    assert (expanded.line, expanded.column, expanded.ingredients) == (5, "Drug_A", ("sulfamethoxazole", "trimethoprim"))


def test_two_different_ingredients_never_fold_together(vocabulary: Vocabulary, ddinter: ImportProfile) -> None:
    # Both lose "potassium" on the way to an ingredient, and are still two drugs.
    plan = plan_import(
        ddinter_csv(
            ("Penicillin V Potassium", "Methotrexate", "Major"), ("Penicillin G Potassium", "Methotrexate", "Minor")
        ),
        ddinter,
        vocabulary,
        source="dd",
    )
    assert not plan.folded
    assert _pairs(plan) == {
        frozenset({"penicillin v", "methotrexate"}): Severity.HIGH,
        frozenset({"penicillin g", "methotrexate"}): Severity.LOW,
    }
    assert all(p.a in vocabulary.ingredients and p.b in vocabulary.ingredients for p in plan.pairs)


def test_a_combination_with_its_own_ingredient_makes_no_pair_of_its_parts(
    vocabulary: Vocabulary, ddinter: ImportProfile
) -> None:
    plan = plan_import(
        ddinter_csv(('"amoxicillin / clavulanate"', "Amoxicillin", "Minor"), ("Bactrim", "Methotrexate", "Major")),
        ddinter,
        vocabulary,
        source="dd",
    )
    assert _pairs(plan) == {
        frozenset({"sulfamethoxazole", "methotrexate"}): Severity.HIGH,
        frozenset({"trimethoprim", "methotrexate"}): Severity.HIGH,
    }
    assert any("line 2" in n and "no pair" in n for n in plan.notes)
    assert [e.line for e in plan.expanded] == [2, 3]


def test_unresolved_names_are_listed_and_their_pairs_flagged_never_new_ingredients(
    vocabulary: Vocabulary, ddinter: ImportProfile
) -> None:
    plan = plan_import(
        ddinter_csv(
            ("Fooxamab", "Warfarin", "Major"), ("warfrin", "Aspirin", "Minor"), ("Warfarin", "Aspirin", "Major")
        ),
        ddinter,
        vocabulary,
        source="dd",
    )
    assert [(u.line, u.column, u.text, u.reason) for u in plan.unresolved] == [
        (2, "Drug_A", "Fooxamab", "unrecognised"),
        (3, "Drug_A", "warfrin", "unrecognised"),
    ]
    assert "warfarin" in plan.unresolved[1].suggestions
    flagged = [p for p in plan.pairs if p.unresolved]
    assert {frozenset((p.a, p.b)) for p in flagged} == {
        frozenset({"fooxamab", "warfarin"}),
        frozenset({"warfrin", "aspirin"}),
    }
    assert plan.flagged == 2 and "fooxamab" not in vocabulary.ingredients
    assert _pairs(plan) == {frozenset({"warfarin", "aspirin"}): Severity.HIGH}
    # The engine never matches a flagged pair, even for a patient whose medication is written the same way.
    kb = InteractionKnowledge.from_pairs(plan.pairs)
    assert kb.involving("ingredient", "fooxamab") == ()
    assert len(kb) == 1
    report = unresolved_report_tsv(plan).splitlines()
    assert report[0] == "line\tcolumn\ttext\treason\tsuggestions"
    assert report[1] == "2\tDrug_A\tFooxamab\tunrecognised\t"
    assert report[2].startswith("3\tDrug_A\twarfrin\tunrecognised\twarfarin")


def test_an_ambiguous_name_is_unresolved_and_says_what_it_could_be(ddinter: ImportProfile) -> None:
    vocab = Vocabulary(
        ingredients=[IngredientRecord("warfarin"), IngredientRecord("aspirin"), IngredientRecord("xyz")],
        aliases=[AliasRecord("xyz", ("aspirin",))],
    )
    plan = plan_import(ddinter_csv(("XYZ", "Warfarin", "Major")), ddinter, vocab, source="dd")
    [name] = plan.unresolved
    assert name.reason == "ambiguous: not resolved: xyz; 'xyz' could be aspirin or xyz"
    assert [p.unresolved for p in plan.pairs] == [True]


def test_a_grade_not_in_the_map_refuses_the_file_naming_the_line(
    vocabulary: Vocabulary, ddinter: ImportProfile
) -> None:
    with pytest.raises(CsvImportError) as err:
        plan_import(
            ddinter_csv(("Warfarin", "Aspirin", "Major"), ("Simvastatin", "Clarithromycin", "Severe")),
            ddinter,
            vocabulary,
            source="dd",
        )
    assert err.value.errors == (
        "line 3: severity 'Severe' is not in the profile's severity map (Major, Moderate, Minor, Unknown)",
    )


def test_a_mapped_column_missing_from_the_header_is_line_1(vocabulary: Vocabulary, ddinter: ImportProfile) -> None:
    with pytest.raises(CsvImportError) as err:
        plan_import(b"DrugA,Drug_B,Level\nwarfarin,aspirin,Major\n", ddinter, vocabulary, source="dd")
    assert err.value.errors[0].startswith("line 1: no column 'Drug_A' (profile ddinter-example: columns.drug_a)")


def test_delimiter_and_encoding_come_from_the_profile(vocabulary: Vocabulary) -> None:
    doc = with_flags(
        None,
        columns=["drug_a=Wirkstoff 1", "drug_b=Wirkstoff 2", "severity=Schweregrad"],
        severities=["schwer=HIGH", "mäßig=MODERATE"],
        delimiter=";",
        encoding="cp1252",
    )
    profile = profile_from_document(doc, where="flags")
    data = "Wirkstoff 1;Wirkstoff 2;Schweregrad\nWarfarin;Aspirin;schwer\nSimvastatin;Clarithromycin;mäßig\n"
    plan = plan_import(data.encode("cp1252"), profile, vocabulary, source="de")
    assert _pairs(plan) == {
        frozenset({"warfarin", "aspirin"}): Severity.HIGH,
        frozenset({"simvastatin", "clarithromycin"}): Severity.MODERATE,
    }
    with pytest.raises(CsvImportError, match="line 3: not cp1252"):
        plan_import(
            b"Wirkstoff 1;Wirkstoff 2;Schweregrad\nwarfarin;aspirin;schwer\nx\x81;y;schwer\n",
            profile,
            vocabulary,
            source="de",
        )


def test_coded_rows_resolve_by_code_first(coded_vocabulary: Vocabulary) -> None:
    profile = profile_from_document(
        with_flags(
            None,
            columns=["drug_a=Name1", "drug_b=Name2", "severity=Grade", "drug_a_code=RxCUI1", "drug_b_code=RxCUI2"],
            code_system="rxnorm",
        ),
        where="flags",
    )
    # RxNorm RXCUIs from the shipped concept table: 11289 warfarin, 1191 aspirin, 36567 simvastatin,
    # 21212 clarithromycin.
    data = (
        "Name1,RxCUI1,Name2,RxCUI2,Grade\n"
        "WARF-X 5,11289,ASA,1191,major\n"  # names that resolve by code only
        "simvastatin,36567,clarithromycin,21212,contraindicated\n"
        "aspirin,11289,simvastatin,,minor\n"  # the code says warfarin, the text aspirin: not resolved
    )
    plan = plan_import(data.encode(), profile, coded_vocabulary, source="coded")
    assert _pairs(plan) == {
        frozenset({"warfarin", "aspirin"}): Severity.HIGH,
        frozenset({"simvastatin", "clarithromycin"}): Severity.CRITICAL,
    }
    [mismatch] = plan.unresolved
    assert (mismatch.line, mismatch.column, mismatch.text) == (4, "Name1", "aspirin (rxnorm:11289)")
    assert mismatch.reason.startswith("mismatch: code rxnorm:11289 (warfarin) disagrees with the text (aspirin)")
    assert [(p.a, p.b) for p in plan.pairs if p.unresolved] == [("aspirin", "simvastatin")]
    # A resolved row for the same pair: it is the pair, and the flagged row cannot lend it its content.
    plan = plan_import((data + "aspirin,,simvastatin,,moderate\n").encode(), profile, coded_vocabulary, source="coded")
    assert not any(p.unresolved for p in plan.pairs) and len(plan.unresolved) == 1
    assert _pairs(plan)[frozenset({"aspirin", "simvastatin"})] is Severity.MODERATE
    assert any("1 flagged pair(s) not stored" in n for n in plan.notes)
    with pytest.raises(CsvImportError, match="line 2: drug_a \\(Name1\\) code 'x12' is not a valid rxnorm code"):
        plan_import(
            b"Name1,RxCUI1,Name2,RxCUI2,Grade\nwarfarin,x12,aspirin,,major\n", profile, coded_vocabulary, source="coded"
        )


def test_our_own_format_goes_through_the_same_code_with_the_same_pairs(coded_vocabulary: Vocabulary) -> None:
    # The database's vocabulary after `praneya knowledge vocabulary` holds the shipped RxNorm table
    # too, and the starter pairs name ingredients found only there (tacrolimus, eltrombopag...).
    vocabulary = coded_vocabulary
    data = (KNOWLEDGE / "interactions.csv").read_bytes()
    plan = plan_import(data, _profile(PROFILES / "praneya.yaml"), vocabulary, source="praneya-starter")
    old = parse_interactions_csv(data.decode("utf-8-sig"), default_source="praneya-starter", vocabulary=vocabulary)
    assert plan.pairs == tuple(old)
    assert not plan.unresolved and not plan.folded and not plan.expanded
    with pytest.raises(CsvImportError, match="line 1: unknown column\\(s\\) 'recomendation'"):
        plan_import(
            b"drug_a,drug_b,severity,recomendation\nwarfarin,aspirin,major,x\n",
            _profile(PROFILES / "praneya.yaml"),
            vocabulary,
            source="s",
        )


# -- through the CLI into the database ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocabulary_loaded(database_url: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        assert praneya(["knowledge", "vocabulary", "--dir", str(KNOWLEDGE)]) == 0


@pytest.fixture
def source(
    vocabulary_loaded: None,
    database_url: str,
    admin_engine: Engine,
    uid: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A source of this test's own; its pairs are removed afterwards so other tests see the knowledge as shipped."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    name = uid("ddinter-test")
    yield name
    with admin_engine.begin() as conn:
        conn.execute(text("DELETE FROM clinical.interaction_pairs WHERE source = :s"), {"s": name})


def _stored(admin_engine: Engine, source: str) -> dict[frozenset[str], tuple[str, str, bool]]:
    with admin_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a_name, b_name, severity::text, source_severity, unresolved"
                " FROM clinical.interaction_pairs WHERE source = :s"
            ),
            {"s": source},
        ).all()
    return {frozenset((r[0], r[1])): (r[2], r[3], r[4]) for r in rows}


@pytest.mark.db
def test_a_ddinter_export_imports_with_its_grades_mapped_and_folds_reported(
    source: str, tmp_path: Path, admin_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "ddinter.csv"
    export.write_bytes(ddinter_csv(*ROWS))
    assert praneya(["knowledge", "import", str(export), "--profile", str(DDINTER_PROFILE), "--source", source]) == 0
    out = capsys.readouterr().out
    assert _stored(admin_engine, source) == {
        frozenset({"warfarin", "aspirin"}): ("HIGH", "Major", False),
        frozenset({"simvastatin", "clarithromycin"}): ("HIGH", "Major", False),
        frozenset({"sulfamethoxazole", "warfarin"}): ("MODERATE", "Moderate", False),
        frozenset({"trimethoprim", "warfarin"}): ("MODERATE", "Moderate", False),
        frozenset({"erythromycin", "simvastatin"}): ("LOW", "Minor", False),
        frozenset({"aspirin", "ibuprofen"}): ("INFO", "Unknown", False),
    }
    assert "folded aspirin + warfarin" in out and "kept the highest: HIGH from line 3" in out
    assert "expanded line 5 Drug_A" in out
    assert "6 rows read; 6 pairs stored (6 new, 0 changed, 0 unchanged; 0 flagged" in out
    assert "1 folded duplicates; 0 unresolved names; 1 expanded combinations;" in out
    assert not (tmp_path / "ddinter.csv.unresolved.tsv").exists()
    # Idempotent: the same file again changes nothing.
    assert praneya(["knowledge", "import", str(export), "--profile", str(DDINTER_PROFILE), "--source", source]) == 0
    assert "(0 new, 0 changed, 6 unchanged" in capsys.readouterr().out


@pytest.mark.db
def test_an_unresolved_name_refuses_the_import_and_writes_the_report(
    source: str, tmp_path: Path, admin_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "ddinter.csv"
    export.write_bytes(ddinter_csv(*ROWS, ("Fooxamab", "Warfarin", "Major"), ("Simvastatin", "warfrin", "Minor")))
    assert praneya(["knowledge", "import", str(export), "--profile", str(DDINTER_PROFILE), "--source", source]) == 1
    err = capsys.readouterr().err
    report = tmp_path / "ddinter.csv.unresolved.tsv"
    assert f"2 name(s) did not resolve to known ingredients (listed in {report}); nothing was imported" in err
    assert report.read_text().splitlines() == [
        "line\tcolumn\ttext\treason\tsuggestions",
        "8\tDrug_A\tFooxamab\tunrecognised\t",
        "9\tDrug_B\twarfrin\tunrecognised\twarfarin",
    ]
    assert _stored(admin_engine, source) == {}
    elsewhere = tmp_path / "review" / "names.tsv"
    elsewhere.parent.mkdir()
    assert (
        praneya(
            [
                "knowledge",
                "import",
                str(export),
                "--profile",
                str(DDINTER_PROFILE),
                "--source",
                source,
                "--unresolved-report",
                str(elsewhere),
            ]
        )
        == 1
    )
    assert str(elsewhere) in capsys.readouterr().err and elsewhere.is_file()


@pytest.mark.db
def test_with_allow_unresolved_the_pairs_are_stored_flagged_and_never_alert(
    source: str, tmp_path: Path, admin_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "ddinter.csv"
    export.write_bytes(ddinter_csv(("Fooxamab", "Warfarin", "Major"), ("Simvastatin", "Clarithromycin", "Major")))
    args = ["knowledge", "import", str(export), "--profile", str(DDINTER_PROFILE), "--source", source]
    assert praneya([*args, "--allow-unresolved"]) == 0
    out = capsys.readouterr().out
    assert "2 rows read; 2 pairs stored (2 new, 0 changed, 0 unchanged; 1 flagged unresolved" in out
    assert "1 unresolved names" in out
    assert (tmp_path / "ddinter.csv.unresolved.tsv").is_file()
    assert _stored(admin_engine, source) == {
        frozenset({"fooxamab", "warfarin"}): ("HIGH", "Major", True),
        frozenset({"simvastatin", "clarithromycin"}): ("HIGH", "Major", False),
    }
    flagged = f"kb:{pair_id(('ingredient', 'fooxamab'), ('ingredient', 'warfarin'), source)}"

    def alerts() -> list[str]:
        # "fooxamab" is unknown to the vocabulary, so the engine keeps it as a literal ingredient name:
        # exactly what the flagged pair would match if it were loaded.
        assert praneya(["check", "--json", "--med", "fooxamab", "--med", "warfarin"]) == 0
        return [a["rule_id"] for a in json.loads(capsys.readouterr().out)["alerts"]]

    assert flagged not in alerts()
    # The control: the same pair unflagged does alert, so the absence above is the flag's doing.
    with admin_engine.begin() as conn:
        conn.execute(text("UPDATE clinical.interaction_pairs SET unresolved = false WHERE source = :s"), {"s": source})
    try:
        assert flagged in alerts()
    finally:
        with admin_engine.begin() as conn:
            conn.execute(
                text("UPDATE clinical.interaction_pairs SET unresolved = true WHERE id = :id"),
                {"id": flagged.removeprefix("kb:")},
            )


@pytest.mark.db
def test_a_profile_error_or_an_unmapped_grade_imports_nothing_and_says_where(
    source: str, tmp_path: Path, admin_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "ddinter.csv"
    export.write_bytes(ddinter_csv(*ROWS))
    bad = tmp_path / "bad-profile.yaml"
    doc = yaml.safe_load(DDINTER_PROFILE.read_text())
    doc["severity"]["Unknown"] = "SOMETIMES"
    bad.write_text(yaml.safe_dump(doc))
    assert praneya(["knowledge", "import", str(export), "--profile", str(bad), "--source", source]) == 1
    assert "severity.Unknown: 'SOMETIMES' is not a severity we can place" in capsys.readouterr().err
    export.write_bytes(ddinter_csv(*ROWS, ("Warfarin", "Ibuprofen", "Serious")))
    assert praneya(["knowledge", "import", str(export), "--profile", str(DDINTER_PROFILE), "--source", source]) == 1
    assert "line 8: severity 'Serious' is not in the profile's severity map" in capsys.readouterr().err
    assert _stored(admin_engine, source) == {}


@pytest.mark.db
def test_flags_alone_describe_an_export(
    source: str, tmp_path: Path, admin_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "other.tsv"
    export.write_text("Drug1\tDrug2\tLevel\tDesc\nwarfarin\taspirin\tX\tBleeding risk\n")
    args = ["knowledge", "import", str(export), "--source", source, "--delimiter", "tab"]
    args += ["--column", "drug_a=Drug1", "--column", "drug_b=Drug2", "--column", "severity=Level"]
    args += ["--column", "description=Desc", "--severity", "X=CRITICAL"]
    assert praneya(args) == 0
    capsys.readouterr()
    assert _stored(admin_engine, source) == {frozenset({"warfarin", "aspirin"}): ("CRITICAL", "X", False)}
    with admin_engine.connect() as conn:
        assert conn.execute(
            text("SELECT description, avoid_combination FROM clinical.interaction_pairs WHERE source = :s"),
            {"s": source},
        ).one() == ("Bleeding risk", True)

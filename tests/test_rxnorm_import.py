"""RxNorm releases into clinical.drug_concepts: the RRF reader, the apply path, the CLI, the grants.

Each test gets a database of its own, cloned from one migrated template: the concepts are global
(no tenant), so tests sharing a database would retire each other's codes. The fixture releases are
written here in NLM's RRF format with made-up codes (9000001...), one relation row in the
documented direction ("RXCUI2 has RELA to RXCUI1") and, for some, only the inverse row, so that a
reader with the direction backwards fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from engine.doors.cli import main as praneya
from engine.knowledge import DrugConcept
from store import provision
from store.config import app_database_url, sqlalchemy_url
from store.knowledge_repo import knowledge_fingerprint, load_concepts, load_ndc_products, sync_shipped_concepts
from store.rxnorm_import import RRF_COLUMNS, RetireRefused, RrfError, find_release, import_rxnorm_release
from tests.fix_db import _libpq, db_name, migrate

pytestmark = pytest.mark.db

SMX, TMP, SMX_NA, SMX_TMP_MIN, BRAND = "9000001", "9000002", "9000003", "9000004", "9000005"
SCDC_SMX, SCDC_TMP, SCD, SBD, GPCK, DF_TAB = "9000006", "9000007", "9000008", "9000009", "9000010", "9000020"
OBSOLETE, OTHER_SAB = "9000011", "9000012"
NDC_SCD, NDC_SBD, NDC_OTHER_SAB = "00000900001", "00000900002", "00000900003"


# -- fixture releases in RRF -------------------------------------------------------------------------


@dataclass
class Release:
    """A release being written: rows of RXNCONSO, RXNREL, RXNSAT, each as its fields."""

    conso: list[list[str]] = field(default_factory=list)
    rel: list[list[str]] = field(default_factory=list)
    sat: list[list[str]] = field(default_factory=list)

    def atom(
        self, rxcui: str, tty: str, name: str, *, sab: str = "RXNORM", suppress: str = "N", code: str = ""
    ) -> None:
        aui = f"A{rxcui}{len(self.conso)}"
        row = dict.fromkeys(RRF_COLUMNS["RXNCONSO.RRF"], "")
        row.update(RXCUI=rxcui, LAT="ENG", RXAUI=aui, SAB=sab, TTY=tty, CODE=code or rxcui, STR=name,
                   SUPPRESS=suppress, CVF="4096")
        self.conso.append(list(row.values()))

    def relation(
        self, subject: str, rela: str, obj: str, *, inverse: str | None = None, only_inverse: bool = False
    ) -> None:
        """`subject` has `rela` to `obj`: RXCUI2 = subject, RXCUI1 = obj. With `inverse`, also (or
        only) the row the other way round."""
        def row(cui1: str, cui2: str, name: str) -> list[str]:
            r = dict.fromkeys(RRF_COLUMNS["RXNREL.RRF"], "")
            r.update(RXCUI1=cui1, STYPE1="CUI", REL="RO", RXCUI2=cui2, STYPE2="CUI", RELA=name,
                     RUI=f"R{len(self.rel)}", SAB="RXNORM", SUPPRESS="N")
            return list(r.values())
        if not only_inverse:
            self.rel.append(row(obj, subject, rela))
        if inverse is not None:
            self.rel.append(row(subject, obj, inverse))

    def attribute(self, rxcui: str, atn: str, atv: str, *, sab: str = "RXNORM", suppress: str = "N") -> None:
        r = dict.fromkeys(RRF_COLUMNS["RXNSAT.RRF"], "")
        r.update(RXCUI=rxcui, STYPE="AUI", CODE=rxcui, ATUI=f"AT{len(self.sat)}", ATN=atn, SAB=sab, ATV=atv,
                 SUPPRESS=suppress)
        self.sat.append(list(r.values()))

    def write(self, folder: Path) -> Path:
        rrf = folder / "rrf"
        rrf.mkdir(parents=True, exist_ok=True)
        for name, rows in (("RXNCONSO.RRF", self.conso), ("RXNREL.RRF", self.rel), ("RXNSAT.RRF", self.sat)):
            (rrf / name).write_text("".join("|".join(r) + "|\n" for r in rows), encoding="utf-8")
        return folder


def first_release() -> Release:
    r = Release()
    r.atom(SMX, "IN", "sulfamethoxazole")
    r.atom(SMX, "SU", "SULFAMETHOXAZOLE", sab="MTHSPL", code="TESTUNII01")
    r.atom(TMP, "IN", "trimethoprim")
    r.atom(SMX_NA, "PIN", "sulfamethoxazole sodium")
    r.atom(SMX_TMP_MIN, "MIN", "sulfamethoxazole / trimethoprim")
    r.atom(BRAND, "BN", "Septrazole")
    r.atom(SCDC_SMX, "SCDC", "sulfamethoxazole 800 MG")
    r.atom(SCDC_TMP, "SCDC", "trimethoprim 160 MG")
    r.atom(SCD, "SCD", "sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet")
    r.atom(SCD, "SY", "SMX-TMP 800-160 tablet")  # a synonym: not the concept's name
    r.atom(SBD, "SBD", "sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet [Septrazole]")
    r.atom(GPCK, "GPCK", "{14 (sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet) } Pack")
    r.atom(DF_TAB, "DF", "Oral Tablet")
    r.atom(OBSOLETE, "IN", "oldoxazole", suppress="O")  # obsolete: ignored
    r.atom(OTHER_SAB, "IN", "vendorazole", sab="MMSL")  # another source's atom: ignored
    r.relation(SMX_NA, "form_of", SMX, inverse="has_form", only_inverse=True)
    r.relation(SMX_TMP_MIN, "has_part", SMX, inverse="part_of")
    r.relation(SMX_TMP_MIN, "has_part", TMP)
    r.relation(BRAND, "tradename_of", SMX, inverse="has_tradename")
    r.relation(BRAND, "tradename_of", TMP, inverse="has_tradename", only_inverse=True)
    r.relation(SCDC_SMX, "has_ingredient", SMX, inverse="ingredient_of")
    r.relation(SCDC_SMX, "has_precise_ingredient", SMX_NA)
    r.relation(SCDC_TMP, "has_ingredient", TMP, inverse="ingredient_of", only_inverse=True)
    r.relation(SCD, "consists_of", SCDC_SMX, inverse="constitutes")
    r.relation(SCD, "consists_of", SCDC_TMP)
    r.relation(SCD, "has_dose_form", DF_TAB, inverse="dose_form_of")
    r.relation(SBD, "tradename_of", SCD, inverse="has_tradename")
    r.relation(SBD, "has_ingredient", BRAND)
    r.relation(GPCK, "contains", SCD, inverse="contained_in", only_inverse=True)
    r.relation(OBSOLETE, "has_tradename", BRAND)  # to an ignored concept: dropped
    r.attribute(SCD, "RXN_AVAILABLE_STRENGTH", "800 MG / 160 MG")
    r.attribute(SCDC_SMX, "RXN_STRENGTH", "800 MG")
    r.attribute(SCD, "NDC", NDC_SCD)
    r.attribute(SBD, "NDC", NDC_SBD)
    r.attribute(SCD, "NDC", NDC_OTHER_SAB, sab="MTHSPL")  # NDCs of other sources: ignored
    r.attribute(SCD, "NDC", "not-an-ndc")  # counted, not stored
    return r


# -- a database per test -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template_db(server_url: str, db_worker: str) -> Iterator[str]:
    name = db_name("rx_tpl", db_worker, str(os.getpid()))
    url = provision.recreate_database(server_url, name)
    migrate(url)
    yield name
    provision.drop_database(server_url, name)


@pytest.fixture
def db(server_url: str, template_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated database of this test's own (admin URL); the CLI points at it."""
    name = db_name("rx", uuid.uuid4().hex[:12])
    maintenance = sqlalchemy_url(server_url).set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(_libpq(maintenance), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    url = _libpq(sqlalchemy_url(server_url).set(database=name).render_as_string(hide_password=False))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("PRANEYA_APP_DATABASE_URL", raising=False)
    yield url
    provision.drop_database(server_url, name)


@pytest.fixture
def engine(db: str) -> Iterator[Engine]:
    e = create_engine(sqlalchemy_url(db))
    yield e
    e.dispose()


def concepts(engine: Engine) -> dict[tuple[str, str], dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM clinical.drug_concepts")).mappings().all()
    return {(r["system"], r["code"]): dict(r) for r in rows}


def history(engine: Engine, code: str | None = None) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT * FROM clinical.drug_concept_history WHERE CAST(:c AS text) IS NULL OR code = :c ORDER BY id"
            ),
            {"c": code},
        ).mappings().all()
    return [dict(r) for r in rows]


def table_counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(text(f"SELECT count(*) FROM clinical.{t}")).scalar_one()
            for t in ("drug_concepts", "drug_concept_history", "vocabulary_releases")
        )


def run_import(engine: Engine, folder: Path, **kwargs: Any) -> Any:
    with engine.begin() as conn:
        return import_rxnorm_release(conn, folder, **kwargs)


# -- tests -----------------------------------------------------------------------------------------------


def test_a_release_gives_concepts_with_their_ingredients(engine: Engine, tmp_path: Path) -> None:
    folder = first_release().write(tmp_path / "RxNorm_full_01052026")
    files = find_release(folder)
    assert (files.version, files.kind) == ("2026-01-05", "full")
    result = run_import(engine, folder)
    assert not result.already_imported
    stored = concepts(engine)
    rx = {code: row for (system, code), row in stored.items() if system == "rxnorm"}
    assert set(rx) == {SMX, TMP, SMX_NA, SMX_TMP_MIN, BRAND, SCD, SBD, GPCK}  # no SCDC, DF, obsolete, MMSL
    assert {c: (r["tty"], r["ingredients"]) for c, r in rx.items()} == {
        SMX: ("IN", [SMX]),
        TMP: ("IN", [TMP]),
        SMX_NA: ("PIN", [SMX]),
        SMX_TMP_MIN: ("MIN", [SMX, TMP]),
        BRAND: ("BN", [SMX, TMP]),
        SCD: ("SCD", [SMX, TMP]),
        SBD: ("SBD", [SMX, TMP]),
        GPCK: ("GPCK", [SMX, TMP]),
    }
    scd = rx[SCD]
    assert scd["name"] == "sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet"
    assert (scd["strength"], scd["dose_form"]) == ("800 MG / 160 MG", "Oral Tablet")
    assert (rx[SBD]["strength"], rx[SBD]["dose_form"]) == ("800 MG / 160 MG", "Oral Tablet")  # from its SCD
    assert rx[SMX]["unii"] == "TESTUNII01" and rx[TMP]["unii"] is None
    ndc = {code: row for (system, code), row in stored.items() if system == "ndc"}
    assert set(ndc) == {NDC_SCD, NDC_SBD}
    assert (ndc[NDC_SCD]["product"], ndc[NDC_SCD]["ingredients"], ndc[NDC_SCD]["tty"]) == (SCD, [SMX, TMP], "NDC")
    assert ndc[NDC_SBD]["product"] == SBD
    assert all(r["active"] and r["release_id"] == r["first_release_id"] == result.release_id for r in stored.values())
    assert result.counts["SCD"] == {"added": 1} and result.counts["NDC"] == {"added": 2}
    assert result.skipped["ndc_malformed"] == 1
    assert {h["change"] for h in history(engine)} == {"added"} and len(history(engine)) == len(stored)
    with engine.connect() as conn:
        release = conn.execute(text("SELECT * FROM clinical.vocabulary_releases")).mappings().one()
        by_reader = {(c.system, c.code): c for c in load_concepts(conn)}
        assert dict(load_ndc_products(conn)) == {NDC_SCD: SCD, NDC_SBD: SBD}
    assert (release["source"], release["version"], release["kind"], release["concept_count"]) == (
        "RXNORM", "2026-01-05", "full", 10
    )
    assert release["content_sha256"] == files.digest() and release["counts"]["IN"] == {"added": 2}
    assert by_reader[("rxnorm", SCD)] == DrugConcept(
        "rxnorm", SCD, "SCD", scd["name"], (SMX, TMP), None, "800 MG / 160 MG", "Oral Tablet", None, True, "rxnorm"
    )


def test_reimporting_the_same_release_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    folder = first_release().write(tmp_path / "RxNorm_full_01052026")
    first = run_import(engine, folder)
    before = table_counts(engine), concepts(engine)
    again = run_import(engine, folder)
    assert again.already_imported and again.release_id == first.release_id
    assert "already imported" in again.summary()
    assert (table_counts(engine), concepts(engine)) == before


def test_a_later_release_retires_changes_and_reinstates_with_history(engine: Engine, tmp_path: Path) -> None:
    run_import(engine, first_release().write(tmp_path / "RxNorm_full_01052026"))
    second = first_release()
    second.conso = [r for r in second.conso if r[0] != GPCK]  # the pack is gone
    for r in second.conso:
        if r[0] == TMP and r[12] == "IN":
            r[14] = "trimethoprim (renamed)"
    v2 = run_import(engine, second.write(tmp_path / "RxNorm_full_02022026"), max_retire_percent=None)
    assert v2.counts["GPCK"] == {"retired": 1}
    assert v2.counts["IN"] == {"renamed": 1, "unchanged": 1}
    stored = concepts(engine)
    pack = stored[("rxnorm", GPCK)]  # kept, retired
    assert (pack["active"], pack["retired_release_id"], pack["release_id"]) == (False, v2.release_id, 1)
    assert stored[("rxnorm", TMP)]["name"] == "trimethoprim (renamed)"
    assert all(r["release_id"] == v2.release_id for k, r in stored.items() if k != ("rxnorm", GPCK))
    assert [(h["change"], h["release_id"], h["new_values"]) for h in history(engine, GPCK)] == [
        ("added", 1, None),
        ("retired", v2.release_id, {"retired_release_id": v2.release_id}),
    ]
    renamed = history(engine, TMP)[-1]
    assert (renamed["change"], renamed["old_values"], renamed["new_values"]) == (
        "renamed", {"name": "trimethoprim"}, {"name": "trimethoprim (renamed)"}
    )
    with engine.connect() as conn:
        retired = {c.code: c for c in load_concepts(conn, systems=("rxnorm",))}[GPCK]
    assert not retired.active and retired.ingredients == (SMX, TMP)
    # The pack comes back in the next release: reinstated, its history says so.
    v3 = run_import(engine, first_release().write(tmp_path / "RxNorm_full_03022026"))
    assert v3.counts["GPCK"] == {"reinstated": 1}
    assert concepts(engine)[("rxnorm", GPCK)]["active"]
    back = history(engine, GPCK)[-1]
    assert (back["change"], back["old_values"], back["new_values"]) == (
        "reinstated", {"retired_release_id": v2.release_id}, {"retired_release_id": None}
    )


def test_a_release_that_would_retire_too_much_is_refused(engine: Engine, tmp_path: Path) -> None:
    run_import(engine, first_release().write(tmp_path / "RxNorm_full_01052026"))
    before = table_counts(engine)
    partial = first_release()
    partial.sat = []  # every NDC gone: 2 of the 10 codes
    with pytest.raises(RetireRefused, match="retire 2 of the 10"):
        run_import(engine, partial.write(tmp_path / "RxNorm_full_02022026"), max_retire_percent=5)
    assert table_counts(engine) == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("short_rel_line", r"RXNREL.RRF line 3: 15 columns, expected 16"),
        ("long_conso_line", r"RXNCONSO.RRF line 2: 19 columns, expected 18"),
        ("missing_sat", r"RXNSAT.RRF: not found in"),
        ("bad_utf8", r"RXNCONSO.RRF line 1: not UTF-8"),
    ],
)
def test_a_malformed_release_names_file_and_line_and_writes_nothing(
    engine: Engine, tmp_path: Path, damage: str, message: str
) -> None:
    run_import(engine, first_release().write(tmp_path / "RxNorm_full_01052026"))
    before = table_counts(engine), concepts(engine)
    second = first_release()
    second.conso = [r for r in second.conso if r[0] != GPCK]
    folder = second.write(tmp_path / "RxNorm_full_02022026")
    rrf = folder / "rrf"
    if damage == "short_rel_line":
        lines = (rrf / "RXNREL.RRF").read_text().splitlines(keepends=True)
        lines[2] = lines[2].replace("|", "", 1)
        (rrf / "RXNREL.RRF").write_text("".join(lines))
    elif damage == "long_conso_line":
        lines = (rrf / "RXNCONSO.RRF").read_text().splitlines(keepends=True)
        lines[1] = lines[1].rstrip("\n") + "extra|\n"
        (rrf / "RXNCONSO.RRF").write_text("".join(lines))
    elif damage == "missing_sat":
        (rrf / "RXNSAT.RRF").unlink()
    else:
        data = (rrf / "RXNCONSO.RRF").read_bytes()
        (rrf / "RXNCONSO.RRF").write_bytes(data.replace(b"sulfamethoxazole", b"sulfameth\xffoxazole", 1))
    with pytest.raises(RrfError, match=message):
        run_import(engine, folder, max_retire_percent=None)
    assert (table_counts(engine), concepts(engine)) == before


def test_the_cli_imports_draws_progress_and_summarises(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = first_release().write(tmp_path / "RxNorm_full_01052026")
    assert praneya(["knowledge", "rxnorm", "import", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert "RXNORM 2026-01-05 (full): release 1;" in out and "SCD +1 ~0 -0 =0" in out and "NDC +2" in out
    assert "RXNREL.RRF MB [" in err and "applying [" in err
    assert praneya(["knowledge", "rxnorm", "import", str(folder / "rrf")]) == 0
    assert "already imported (release 1)" in capsys.readouterr().out
    shutil.rmtree(folder / "rrf")
    assert praneya(["knowledge", "rxnorm", "import", str(folder)]) == 1
    assert "RXNCONSO.RRF: not found" in capsys.readouterr().err
    bad = first_release()
    bad.conso = bad.conso[:3]  # nearly everything gone
    assert praneya(["knowledge", "rxnorm", "import", str(bad.write(tmp_path / "RxNorm_full_02022026"))]) == 1
    assert "--allow-retire" in capsys.readouterr().err


def test_shipped_table_goes_through_the_same_path_and_yields_to_rxnorm_releases(
    engine: Engine, tmp_path: Path
) -> None:
    def concept(code: str, name: str, tty: str = "IN", active: bool = True) -> DrugConcept:
        return DrugConcept("rxnorm", code, tty, name, (code,), active=active, source="rxnorm_cpc")

    table = [concept(SMX, "sulfamethoxazole (shipped)"), concept("9000100", "shippedonly"),
             concept("9000101", "gone next time")]
    with engine.begin() as conn:
        first = sync_shipped_concepts(conn, table, "rxnorm-cpc-test-1")
    assert first.counts["IN"] == {"added": 3} and first.kind == "shipped"
    with engine.begin() as conn:
        assert sync_shipped_concepts(conn, list(reversed(table)), "rxnorm-cpc-test-1").already_imported
    # An RxNorm release takes over the codes it lists; the shipped-only ones stay the shipped table's.
    run_import(engine, first_release().write(tmp_path / "RxNorm_full_01052026"))
    assert concepts(engine)[("rxnorm", SMX)]["name"] == "sulfamethoxazole"
    with engine.connect() as conn:
        fingerprint = knowledge_fingerprint(conn, None)
    # A new shipped table: leaves the RxNorm release's codes alone, retires its own dropped code.
    newer = [concept(SMX, "sulfamethoxazole (older spelling)"), concept("9000100", "shippedonly"),
             concept("9000101", "gone next time", active=False)]
    with engine.begin() as conn:
        second = sync_shipped_concepts(conn, newer, "rxnorm-cpc-test-2")
    assert second.counts["IN"] == {"superseded": 1, "unchanged": 1, "retired": 1}
    stored = concepts(engine)
    assert stored[("rxnorm", SMX)]["name"] == "sulfamethoxazole"
    assert not stored[("rxnorm", "9000101")]["active"] and stored[("rxnorm", "9000100")]["active"]
    with engine.connect() as conn:
        assert knowledge_fingerprint(conn, None) != fingerprint


def test_the_runtime_role_reads_concepts_and_cannot_write_them(engine: Engine, db: str, tmp_path: Path) -> None:
    run_import(engine, first_release().write(tmp_path / "RxNorm_full_01052026"))
    with psycopg.connect(_libpq(app_database_url(db)), autocommit=True) as app:
        assert app.execute("SELECT current_user").fetchone() == ("praneya_app",)
        assert app.execute("SELECT count(*) FROM clinical.drug_concepts").fetchone() == (10,)
        assert app.execute("SELECT count(*) FROM clinical.vocabulary_releases").fetchone() == (1,)
        assert app.execute("SELECT count(*) FROM clinical.drug_concept_history").fetchone() == (10,)
        for statement in (
            "INSERT INTO clinical.drug_concepts (system, code, tty, name, source, release_id, first_release_id)"
            " VALUES ('rxnorm', '1', 'IN', 'x', 'x', 1, 1)",
            "UPDATE clinical.drug_concepts SET name = 'x'",
            "DELETE FROM clinical.drug_concepts",
            "UPDATE clinical.vocabulary_releases SET version = 'x'",
            "DELETE FROM clinical.drug_concept_history",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)


def test_concepts_are_never_deleted_and_history_never_rewritten_even_by_the_admin(
    engine: Engine, tmp_path: Path
) -> None:
    run_import(engine, first_release().write(tmp_path / "RxNorm_full_01052026"))
    for statement in (
        "DELETE FROM clinical.drug_concepts",
        "UPDATE clinical.drug_concept_history SET change = 'added'",
    ):
        with pytest.raises(DBAPIError, match="not allowed"), engine.begin() as conn:
            conn.execute(text(statement))
    assert table_counts(engine) == (10, 10, 1)



def test_the_release_date_and_kind_come_from_the_release_folder_and_readme(tmp_path: Path) -> None:
    folder = tmp_path / "unpacked"
    Release().write(folder)
    (folder / "Readme_Full_Prescribe_10062025.txt").write_text("RxNorm Current Prescribable Content\n")
    for given in (folder, folder / "rrf"):
        files = find_release(given)
        assert (files.version, files.kind) == ("2025-10-06", "prescribe")
    bare = tmp_path / "no-date-here"
    Release().write(bare)
    assert (find_release(bare).version, find_release(bare).kind) == ("no-date-here", "full")

"""Knowledge and rules in PostgreSQL: vocabulary, CSV import, rule sync, `praneya check` end to end."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, text

from engine.doors.cli import main as praneya
from store.config import PROJECT_ROOT

pytestmark = pytest.mark.db

RULES = PROJECT_ROOT / "rules"
CSV = RULES / "knowledge" / "interactions.csv"


@pytest.fixture
def cli_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI pointed at this worker's test database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    yield


@pytest.fixture(scope="session")
def _knowledge_once(database_url: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        assert praneya(["knowledge", "vocabulary", "--dir", str(RULES / "knowledge")]) == 0
        assert praneya(["knowledge", "import", str(CSV), "--source", "praneya-starter"]) == 0
        assert praneya(["rules", "sync", str(RULES), "--global"]) == 0


@pytest.fixture
def knowledge_loaded(_knowledge_once: None, cli_db: None, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()


def test_reimport_and_resync_change_nothing(
    knowledge_loaded: None, admin_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with admin_engine.connect() as conn:
        before = conn.execute(text("SELECT count(*), max(imported_at) FROM clinical.interaction_pairs")).one()
        audit_before = conn.execute(
            text("SELECT count(*) FROM audit.audit_logs WHERE action LIKE 'RULE_%'")
        ).scalar_one()
    assert praneya(["knowledge", "import", str(CSV), "--source", "praneya-starter"]) == 0
    assert "0 new, 0 changed" in capsys.readouterr().out
    assert praneya(["rules", "sync", str(RULES), "--global"]) == 0
    assert "0 created, 0 updated" in capsys.readouterr().out
    with admin_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*), max(imported_at) FROM clinical.interaction_pairs")).one() == before
        assert (
            conn.execute(text("SELECT count(*) FROM audit.audit_logs WHERE action LIKE 'RULE_%'")).scalar_one()
            == audit_before
        )


def test_a_bad_csv_imports_nothing_and_names_the_line(
    knowledge_loaded: None, tmp_path: Path, admin_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("drug_a,drug_b,severity\nwarfarin,aspirin,major\nfluoxetine,phenelzine,Q\n")
    with admin_engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM clinical.interaction_pairs")).scalar_one()
    assert praneya(["knowledge", "import", str(bad), "--source", "bad"]) == 1
    assert "line 3" in capsys.readouterr().err
    with admin_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM clinical.interaction_pairs")).scalar_one() == before


def test_rule_sync_versions_audits_and_is_all_or_nothing(
    knowledge_loaded: None,
    tmp_path: Path,
    admin_engine: Engine,
    make_tenant: Callable[[], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A tenant's own copy of a global rule, so other tests keep the global rule set as shipped.
    tenant = make_tenant()
    src = RULES / "renal" / "renal-metformin-egfr-below-30.yaml"
    doc = yaml.safe_load(src.read_text())
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / src.name).write_text(yaml.safe_dump(doc))
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant]) == 0
    assert "1 created" in capsys.readouterr().out
    changed = dict(doc, version=doc["version"] + 1, description=doc.get("description", "") + " Revised.")
    (folder / src.name).write_text(yaml.safe_dump(changed))
    broken = dict(doc, id="broken-rule", when={"method": [{"var": "age"}, "bit_length"]})
    (folder / "broken-rule.yaml").write_text(yaml.safe_dump(broken))
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant]) == 1
    assert "nothing was written" in capsys.readouterr().err
    with admin_engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT version FROM clinical.clinical_rules WHERE id = :id"),
                {"id": f"{tenant}:{doc['id']}"},
            ).scalar_one()
            == doc["version"]
        )
    (folder / "broken-rule.yaml").unlink()
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant]) == 0
    assert "0 created, 1 updated" in capsys.readouterr().out
    with admin_engine.connect() as conn:
        versions = (
            conn.execute(
                text("SELECT version FROM clinical.clinical_rule_versions WHERE rule_id = :id ORDER BY version"),
                {"id": f"{tenant}:{doc['id']}"},
            )
            .scalars()
            .all()
        )
        assert versions == [doc["version"], doc["version"] + 1]
        audit = (
            conn.execute(
                text('SELECT action FROM audit.audit_logs WHERE resource_id = :id ORDER BY "timestamp"'),
                {"id": f"{tenant}:{doc['id']}"},
            )
            .scalars()
            .all()
        )
        assert audit == ["RULE_CREATED", "RULE_UPDATED"]


def _onc_pairs() -> list[tuple[str, list[str]]]:
    """For every ONC high-priority rule, the medications of its first firing case."""
    out = []
    for path in sorted((RULES / "onc").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        case = next(c for c in doc["cases"] if c["expect"].get("fires"))
        given = case["given"]
        meds = [m if isinstance(m, str) else m["name"] for m in given.get("medications", [])]
        meds += [m if isinstance(m, str) else m["name"] for m in given.get("proposed_medications", [])]
        out.append((doc["id"], meds))
    return out


ONC = _onc_pairs()


def test_there_are_fifteen_onc_groups() -> None:
    assert len(ONC) == 15


@pytest.mark.parametrize(("rule_id", "meds"), ONC, ids=[r for r, _ in ONC])
def test_check_flags_every_onc_high_priority_group(
    rule_id: str, meds: list[str], knowledge_loaded: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["check", "--json", "--age", "45", "--sex", "male"]
    for m in meds:
        args += ["--med", m]
    assert praneya(args) == 0
    result = json.loads(capsys.readouterr().out)
    critical = [a for a in result["alerts"] if a["severity"] == "CRITICAL" and a["kind"] == "DRUG_DRUG_INTERACTION"]
    assert critical, f"{rule_id}: no critical interaction alert for {meds}"
    assert rule_id in {a["rule_id"] for a in result["alerts"]} | {a["rule_id"] for a in critical}, (
        f"{rule_id} did not fire (alerts: {[a['rule_id'] for a in result['alerts']]})"
    )


def test_a_tenant_regrades_or_disables_a_pair_for_itself(
    knowledge_loaded: None, admin_engine: Engine, make_tenant: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, other = make_tenant(), make_tenant()

    def kb_alerts(for_tenant: str) -> dict[str, str]:
        # A pair only the knowledge base knows (no rule says the same), so its alert is the pair's own.
        assert (
            praneya(["check", "--json", "--tenant", for_tenant, "--med", "atorvastatin", "--med", "clarithromycin"])
            == 0
        )
        result = json.loads(capsys.readouterr().out)
        return {a["rule_id"]: a["severity"] for a in result["alerts"] if a["rule_id"].startswith("kb:")}

    def override(pair: str, *how: str) -> None:
        assert praneya(["knowledge", "override", "--tenant", tenant, "--pair", pair, *how]) == 0
        capsys.readouterr()

    before = kb_alerts(tenant)
    assert list(before.values()) == ["HIGH"], "the shipped knowledge grades atorvastatin-clarithromycin major"
    # The finding is graded by every source that knows the pair (the starter pair and the CYP3A4
    # mechanism pair): lowering one leaves the other's grade, until the tenant has lowered each.
    lowered: list[str] = []
    current = before
    while current and list(current.values()) != ["LOW"] and len(lowered) < 5:
        pair = next(iter(current)).removeprefix("kb:")
        override(pair, "--severity", "LOW", "--reason", "local protocol")
        lowered.append(pair)
        current = kb_alerts(tenant)
    assert list(current.values()) == ["LOW"] and set(current) <= {f"kb:{p}" for p in lowered}
    for pair in lowered:
        override(pair, "--disable", "--reason", "covered by a rule")
    assert kb_alerts(tenant) == {}
    assert kb_alerts(other) == before  # another tenant is untouched
    assert (
        praneya(["knowledge", "override", "--tenant", tenant, "--pair", "no-such-pair", "--disable", "--reason", "x"])
        == 1
    )
    assert "no interaction pair" in capsys.readouterr().err
    with admin_engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM audit.audit_logs WHERE tenant_id = :t AND action = 'KNOWLEDGE_OVERRIDE'"),
            {"t": tenant},
        ).scalar_one()
    assert n == 2 * len(lowered)


# -- drug identity through the database (the shipped RxNorm concept table) ---------------------------


def _check_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert praneya(["check", "--json", *args]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def _shipped_code(name: str, tty: str = "IN") -> str:
    # Read from the shipped table, never typed: the test follows the data.
    for line in (RULES / "knowledge" / "rxnorm.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        cells = line.split("\t")
        if cells[2] == tty and cells[3].lower() == name:
            return cells[1]
    raise AssertionError(f"{name} ({tty}) is not in rules/knowledge/rxnorm.tsv")


def test_check_by_rxnorm_code_flags_warfarin_with_an_nsaid(
    knowledge_loaded: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _shipped_code("warfarin")
    for med in (f"rxnorm:{code}", f"http://www.nlm.nih.gov/research/umls/rxnorm|{code}"):
        result = _check_json(["--med", med, "--propose", "ibuprofen"], capsys)
        alerts = result["alerts"]
        assert isinstance(alerts, list)
        assert any(a["rule_id"] == "ddi-warfarin-nsaid" for a in alerts), alerts
        assert not result["unresolved"]
        assert str(result["vocabulary_version"]).startswith("rxnorm-")


def test_check_reads_the_rxnorm_display_grammar_against_the_database(
    knowledge_loaded: None, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _check_json(
        ["--med", "Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet", "--allergy", "trimethoprim"], capsys
    )
    alerts = result["alerts"]
    assert isinstance(alerts, list)
    assert any(a["kind"] == "DRUG_ALLERGY" for a in alerts), alerts


def test_check_names_an_unrecognised_drug_and_is_incomplete(
    knowledge_loaded: None, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _check_json(["--med", "zzqx"], capsys)
    assert result["complete"] is False
    assert result["unresolved"] == [
        {
            "item": "med-1",
            "kind": "medication",
            "text": "zzqx",
            "reason": "unrecognised",
            "parts": ["zzqx"],
            "suggestions": [],
            "notes": [],
        }
    ]


def test_an_ndc_resolves_through_the_stored_index(knowledge_loaded: None, capsys: pytest.CaptureFixture[str]) -> None:
    with (RULES / "knowledge" / "rxnorm.tsv").open(encoding="utf-8") as table:
        products = {
            c[1] for c in (line.split("\t") for line in table) if c[2] == "SCD" and c[4] == _shipped_code("warfarin")
        }
    import gzip

    ndc = next(
        c[1]
        for c in (
            line.split("\t")
            for line in gzip.decompress((RULES / "knowledge" / "rxnorm_ndc.tsv.gz").read_bytes())
            .decode()
            .splitlines()[1:]
        )
        if c[5] in products
    )
    result = _check_json(["--med", f"ndc:{ndc}", "--propose", "ibuprofen"], capsys)
    alerts = result["alerts"]
    assert isinstance(alerts, list)
    assert any(a["rule_id"] == "ddi-warfarin-nsaid" for a in alerts)

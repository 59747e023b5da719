"""Key rotation, re-encryption, master-key rotation, the demo seed, and what never leaks."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from engine.doors.cli import main as praneya
from store import demo
from store.config import sqlalchemy_url
from store.crypto import KeyProviderError, LocalKeyFileProvider, TenantKeyring, generate_master_key_file
from store.keys import KeyStore, create_data_key, reencrypt_tenant, rotate_master_key
from store.patients import AllergyInput, MedicationInput, put_allergy, put_medication, read_patient
from store.phi import ENCRYPTED_COLUMNS
from store.session import Database, Principal

pytestmark = pytest.mark.db


def _versions(admin_engine: Engine, tenant: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    with admin_engine.connect() as conn:
        for table, columns in ENCRYPTED_COLUMNS.items():
            for col in columns:
                for v, n in conn.execute(
                    text(
                        f"SELECT split_part({col}, '.', 2)::int, count(*) FROM {table}"
                        f" WHERE tenant_id = :t AND {col} IS NOT NULL GROUP BY 1"
                    ),
                    {"t": tenant},
                ):
                    counts[v] = counts.get(v, 0) + n
    return counts


def test_rotation_keeps_values_readable_and_reencrypt_leaves_nothing_on_old_versions(
    app_db: Database,
    keys: KeyStore,
    provider: LocalKeyFileProvider,
    admin_engine: Engine,
    make_tenant: Callable[[], str],
    make_patient: Callable[..., str],
    advisor: Callable[[str], Principal],
) -> None:
    tenant = make_tenant()
    patient = make_patient(tenant)
    who = advisor(tenant)
    with app_db.scoped(who) as conn:
        put_medication(conn, keys, patient, MedicationInput("metformin", dosage="500 mg"))
    with admin_engine.begin() as conn:
        assert create_data_key(conn, provider, tenant) == 2
    keys.forget(tenant)
    with app_db.scoped(who) as conn:  # mixed versions: the old value and a new one both read
        put_allergy(conn, keys, patient, AllergyInput("latex", "LATEX", "MODERATE"))
        rec = read_patient(conn, keys, patient)
    assert [m["generic_name"] for m in rec.medications] == ["metformin"]
    assert rec.allergies[0]["allergen"] == "latex"
    before = _versions(admin_engine, tenant)
    assert before.get(1, 0) > 0 and before.get(2, 0) > 0
    moved = reencrypt_tenant(admin_engine, provider, tenant, batch_size=2)
    assert moved > 0
    assert set(_versions(admin_engine, tenant)) == {2}
    assert reencrypt_tenant(admin_engine, provider, tenant) == 0  # resumable: a rerun finds nothing left
    keys.forget(tenant)
    with app_db.scoped(who) as conn:
        rec = read_patient(conn, keys, patient)  # integrity hash still verifies after re-encryption
    assert rec.medications[0]["dosage"] == "500 mg"


def test_master_key_rotation_rewraps_and_a_wrong_old_key_writes_nothing(
    tmp_path: Path,
    app_db: Database,
    provider: LocalKeyFileProvider,
    admin_engine: Engine,
    make_tenant: Callable[[], str],
    make_patient: Callable[..., str],
    advisor: Callable[[str], Principal],
    keys: KeyStore,
) -> None:
    tenant = make_tenant()
    patient = make_patient(tenant)
    who = advisor(tenant)
    generate_master_key_file(tmp_path / "new.key")
    generate_master_key_file(tmp_path / "wrong.key")
    new, wrong = LocalKeyFileProvider(tmp_path / "new.key"), LocalKeyFileProvider(tmp_path / "wrong.key")
    with admin_engine.connect() as conn:
        before = conn.execute(
            text("SELECT tenant_id, key_version, wrapped_key FROM public.tenant_data_keys ORDER BY 1, 2")
        ).all()
    with pytest.raises(KeyProviderError, match="wrong master key"), admin_engine.begin() as conn:
        rotate_master_key(conn, wrong, new)
    with admin_engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT tenant_id, key_version, wrapped_key FROM public.tenant_data_keys ORDER BY 1, 2")
            ).all()
            == before
        )
    with admin_engine.begin() as conn:
        assert rotate_master_key(conn, provider, new) == len(before)
    try:
        with app_db.scoped(who) as conn:
            assert read_patient(conn, KeyStore(new), patient).patient_id == patient
        with app_db.scoped(who) as conn, pytest.raises(KeyProviderError):
            read_patient(conn, KeyStore(provider), patient)
    finally:  # other tests on this worker still use the session's master key
        with admin_engine.begin() as conn:
            rotate_master_key(conn, new, provider)


def _plain_dump(database_url: str, admin_engine: Engine) -> str:
    pg_dump = shutil.which("pg_dump") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None
    )
    if pg_dump:
        url = sqlalchemy_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        return subprocess.run(
            [str(pg_dump), "--data-only", "--schema=public", "--schema=healthcare", "--schema=audit", url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    # No client tools: the same content, row by row, through SQL.
    with admin_engine.connect() as conn:
        tables = (
            conn.execute(
                text(
                    "SELECT schemaname || '.' || tablename FROM pg_tables"
                    " WHERE schemaname IN ('public', 'healthcare', 'audit')"
                )
            )
            .scalars()
            .all()
        )
        return "\n".join(str(r[0]) for t in tables for r in conn.execute(text(f"SELECT t::text FROM {t} t")))


CIPHERTEXT = re.compile(r"pv1\.[0-9]+\.[A-Za-z0-9_-]+=*")
DEMO_PLAINTEXTS = [
    "John",
    "Jane",
    "Jimmy",
    "Garcia",
    "Sarah",
    "warfarin",
    "Coumadin",
    "ibuprofen",
    "simvastatin",
    "sertraline",
    "Zoloft",
    "sumatriptan",
    "albuterol",
    "EpiPen",
    "lisinopril",
    "spironolactone",
    "penicillin",
    "shellfish",
    "peanut",
    "tree nut",
    "sulfamethoxazole",
    "Stevens-Johnson",
    "atrial fibrillation",
    "migraine",
    "asthma",
    "heart failure",
    "1954-03-14",
    "2016-09-01",
    "sarah.smith@demo.example",
]


def test_demo_seed_is_idempotent_and_the_dump_holds_no_plaintext(
    database_url: str,
    admin_engine: Engine,
    app_db: Database,
    provider: LocalKeyFileProvider,
    keys: KeyStore,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    first = demo.seed_demo(admin_engine, app_db, provider, keys)
    second = demo.seed_demo(admin_engine, app_db, provider, keys)
    assert second == dict.fromkeys(first, 0)
    # Other tests may add their own users to the demo tenant: count the demo's own rows by id.
    demo_users = [u for staff in demo.STAFF.values() for u, _ in staff] + [
        p.user_id for patients in demo.PATIENTS.values() for p in patients]
    with admin_engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM public.users WHERE id = ANY(:u)),"
                " (SELECT count(*) FROM healthcare.medications WHERE user_id = ANY(:u)),"
                " (SELECT count(*) FROM public.family_members WHERE family_account_id = :f)"
            ),
            {"u": demo_users, "f": demo.FAMILY},
        ).one()
    assert tuple(counts) == (8, 9, 3)
    who = Principal(demo.DEMO_TENANT, demo.CLINICIAN, "CLINICAL_ADVISOR", mfa=True)
    with app_db.scoped(who) as conn:
        john = read_patient(conn, keys, demo.PARENT)
    assert {m["generic_name"] for m in john.medications} == {"warfarin", "ibuprofen", "simvastatin"}
    # Other tests share this database: keep the demo tenants' rows (every one names its tenant).
    dump = "\n".join(
        line
        for line in _plain_dump(database_url, admin_engine).splitlines()
        if demo.DEMO_TENANT in line or demo.SECOND_TENANT in line
    )
    assert "pv1." in dump and demo.PARENT in dump  # the dump is real and holds the ciphertexts
    # Searched outside the ciphertexts (store/crypto.py: pv1.<key version>.<base64url>): four letters of
    # base64 spell "john" in some case by chance often enough to fail a case-blind search of them.
    outside = CIPHERTEXT.sub("pv1.<ciphertext>", dump).lower()
    leaked = [p for p in DEMO_PLAINTEXTS if p.lower() in outside]
    assert leaked == []
    logs = caplog.text + capsys.readouterr().err
    assert [p for p in DEMO_PLAINTEXTS if p in logs] == []


def test_cli_errors_name_the_problem_without_plaintext(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PRANEYA_MASTER_KEY_FILE", raising=False)
    assert praneya(["keys", "rotate", "--tenant", "x"]) == 1
    assert "PRANEYA_MASTER_KEY_FILE is not set" in capsys.readouterr().err
    monkeypatch.setenv("PRANEYA_MASTER_KEY_FILE", str(tmp_path / "nope.key"))
    assert praneya(["demo", "seed"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_keyring_cache_never_holds_plaintext_keys_in_repr(keys: KeyStore) -> None:
    assert "bytes" not in repr(TenantKeyring("t", {1: b"\x00" * 32}))

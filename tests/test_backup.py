"""Encrypted backups: round trip, owners and RLS after restore, wrong keys, tampering, flat memory, the CLI."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine

from engine.doors.cli import main as praneya
from store import backup as backup_module
from store import demo
from store.backup import (
    APP_SCHEMAS,
    MAGIC,
    BackupError,
    BackupKeyError,
    create_backup,
    decrypt_stream,
    encrypt_stream,
    read_backup_header,
    restore_backup,
    verify_backup,
)
from store.config import PROJECT_ROOT, app_database_url, sqlalchemy_url
from store.crypto import LocalKeyFileProvider, generate_master_key_file
from store.keys import KeyStore
from store.patients import MedicationInput, put_medication, read_patient
from store.session import Database, Principal
from tests.fix_db import create_database, db_name, migrate

pytestmark = pytest.mark.db

RULES = PROJECT_ROOT / "rules"


def _libpq(url: str) -> str:
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _drop(server_url: str, name: str) -> None:
    base = sqlalchemy_url(server_url).set(database="postgres")
    with psycopg.connect(_libpq(base.render_as_string(False)), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def source_url(server_url: str, db_worker: str, master_key_file: Path, provider: LocalKeyFileProvider) -> Iterator[str]:
    """A database of its own: migrated, with knowledge, rules, the demo seed and a few more rows."""
    name = db_name("bk_src", db_worker, str(os.getpid()))
    url = create_database(server_url, name)
    migrate(url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url)
        mp.setenv("PRANEYA_MASTER_KEY_FILE", str(master_key_file))
        assert praneya(["knowledge", "vocabulary", "--dir", str(RULES / "knowledge")]) == 0
        assert praneya(["knowledge", "import", str(RULES / "knowledge" / "interactions.csv"), "--source", "bk"]) == 0
        assert praneya(["rules", "sync", str(RULES), "--global"]) == 0
    admin = create_engine(sqlalchemy_url(url))
    app = Database(app_database_url(url), pool_size=2)
    keys = KeyStore(provider)  # its own: the session's KeyStore caches another database's data keys
    try:
        demo.seed_demo(admin, app, provider, keys)
        who = Principal(demo.DEMO_TENANT, demo.CLINICIAN, "CLINICAL_ADVISOR", mfa=True)
        with app.scoped(who) as conn:
            put_medication(conn, keys, demo.SPOUSE, MedicationInput("metformin", dosage="500 mg"))
    finally:
        app.dispose()
        admin.dispose()
    yield url
    _drop(server_url, name)


@pytest.fixture(scope="module")
def backup_file(source_url: str, provider: LocalKeyFileProvider, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bk") / "source.pbak"
    create_backup(source_url, out, provider)
    return out


@pytest.fixture(scope="module")
def small_chunk_backup(
    source_url: str, provider: LocalKeyFileProvider, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Many small chunks, so there are chunks to swap."""
    out = tmp_path_factory.mktemp("bk") / "small.pbak"
    summary = create_backup(source_url, out, provider, chunk_size=16 * 1024)
    assert summary.chunks >= 4
    return out


@pytest.fixture
def target(server_url: str, db_worker: str) -> Iterator[str]:
    """A new, empty database to restore into; dropped afterwards."""
    name = db_name("bk_dst", db_worker, str(os.getpid()))
    url = create_database(server_url, name)
    yield url
    _drop(server_url, name)


def _tables(conn: psycopg.Connection[Any]) -> list[str]:
    # Leaf tables only: a partitioned parent would count its partitions' rows a second time.
    rows = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) AND c.relkind = 'r' ORDER BY 1",
        (list(APP_SCHEMAS),),
    ).fetchall()
    return [r[0] for r in rows]


def _fingerprint(url: str) -> dict[str, tuple[int, str]]:
    """Row count and md5 of every table's rows in text form, sorted, plus every sequence's position."""
    out: dict[str, tuple[int, str]] = {}
    with psycopg.connect(_libpq(url)) as conn:
        for table in _tables(conn):
            row = conn.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {table} t"
            ).fetchone()
            assert row is not None
            out[table] = (row[0], row[1])
        for name, last in conn.execute(
            "SELECT schemaname || '.' || sequencename, coalesce(last_value, 0) FROM pg_sequences"
            " WHERE schemaname = ANY(%s)",
            (list(APP_SCHEMAS),),
        ):
            out[f"sequence {name}"] = (last, "")
    return out


def _security(url: str) -> dict[str, Any]:
    """Owners, forced RLS, policies and grants of the application's objects."""
    with psycopg.connect(_libpq(url)) as conn:
        relations = conn.execute(
            "SELECT n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity,"
            " c.relforcerowsecurity, coalesce(c.relacl::text, '') FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) ORDER BY 1",
            (list(APP_SCHEMAS),),
        ).fetchall()
        policies = conn.execute(
            "SELECT schemaname, tablename, policyname, cmd, roles::text, qual, with_check FROM pg_policies"
            " WHERE schemaname = ANY(%s) ORDER BY 1, 2, 3",
            (list(APP_SCHEMAS),),
        ).fetchall()
        functions = conn.execute(
            "SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',"
            " pg_get_userbyid(p.proowner), p.prosecdef, coalesce(p.proacl::text, '') FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%s) ORDER BY 1",
            (list(APP_SCHEMAS),),
        ).fetchall()
        app_owns = conn.execute("SELECT count(*) FROM pg_class WHERE relowner = 'praneya_app'::regrole").fetchone()
    return {"relations": relations, "policies": policies, "functions": functions, "app_owns": app_owns}


def _app_objects(url: str) -> list[str]:
    with psycopg.connect(_libpq(url)) as conn:
        tables = _tables(conn)
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) AND nspname <> 'public'",
            (list(APP_SCHEMAS),),
        ).fetchall()
    return tables + [f"schema {s[0]}" for s in schemas]


def test_round_trip_restores_every_row_owner_policy_and_grant(
    source_url: str, backup_file: Path, target: str, provider: LocalKeyFileProvider
) -> None:
    header = read_backup_header(backup_file)
    assert header.database == sqlalchemy_url(source_url).database
    assert header.master_key_id == provider.master_key_id
    assert header.pg_dump_version.startswith("pg_dump (PostgreSQL)")

    progress: list[tuple[str, int]] = []
    summary = restore_backup(backup_file, target, provider, progress=lambda p, n: progress.append((p, n)))
    assert summary.header.backup_id == header.backup_id
    assert {p for p, _ in progress} == {"verify", "restore"}
    assert progress[-1] == ("restore", summary.plaintext_bytes)

    before, after = _fingerprint(source_url), _fingerprint(target)
    assert after == before
    assert before["healthcare.medications"][0] > 0 and before["clinical.interaction_pairs"][0] > 0
    assert sum(n for table, (n, _) in before.items() if table.startswith("audit.")) > 0

    sec_before, sec_after = _security(source_url), _security(target)
    assert sec_after == sec_before
    forced = {name for name, _, rls, force, _ in sec_after["relations"] if rls and force}
    assert "healthcare.health_profiles" in forced and "public.users" in forced
    assert len(sec_after["policies"]) > 10
    assert sec_after["app_owns"] == (0,)  # praneya_app still owns nothing: RLS applies to it
    assert {owner for _, owner, *_ in sec_after["relations"]} == {"praneya_owner"}

    # The restored database works for the app, as praneya_app with the same master key.
    app = Database(app_database_url(target), pool_size=1)
    try:
        who = Principal(demo.DEMO_TENANT, demo.CLINICIAN, "CLINICAL_ADVISOR", mfa=True)
        with app.scoped(who) as conn:
            john = read_patient(conn, KeyStore(provider), demo.PARENT)
            spouse = read_patient(conn, KeyStore(provider), demo.SPOUSE)
        other = Principal(demo.SECOND_TENANT, demo.OTHER_CLINICIAN, "CLINICAL_ADVISOR", mfa=True)
        with app.scoped(other) as conn, pytest.raises(LookupError):
            read_patient(conn, KeyStore(provider), demo.PARENT)  # RLS still isolates tenants
    finally:
        app.dispose()
    assert "warfarin" in [m["generic_name"] for m in john.medications]
    assert "metformin" in [m["generic_name"] for m in spouse.medications]


def test_a_backup_holds_no_plaintext(backup_file: Path, provider: LocalKeyFileProvider, tmp_path: Path) -> None:
    raw = backup_file.read_bytes()
    for word in (b"warfarin", b"penicillin", b"John", b"praneya_owner", b"CREATE TABLE"):
        assert word.lower() not in raw.lower(), word
    # ... while the decrypted stream is a whole pg_dump archive that does hold them (knowledge is
    # plaintext in the database), so the absence above means something.
    dump = tmp_path / "plain.dump"
    with open(backup_file, "rb") as src, open(dump, "wb") as out:
        decrypt_stream(src.read, out.write, provider)
    listing = subprocess.run(
        [backup_module._tool("pg_restore"), "--file=-", str(dump)], capture_output=True, check=True
    ).stdout.lower()
    assert b"warfarin" in listing and b"create table healthcare.health_profiles" in listing


def test_a_wrong_master_key_fails_clearly_and_writes_nothing(
    backup_file: Path, target: str, tmp_path: Path, provider: LocalKeyFileProvider
) -> None:
    other_file = tmp_path / "other.key"
    generate_master_key_file(other_file)
    other = LocalKeyFileProvider(other_file)
    with pytest.raises(BackupKeyError) as err:
        restore_backup(backup_file, target, other)
    message = str(err.value)
    assert f"this backup was made with master key {provider.master_key_id}" in message
    assert f"the configured key {other.master_key_id} cannot unwrap it" in message
    assert _app_objects(target) == []
    with pytest.raises(BackupKeyError):
        verify_backup(backup_file, other)


def _records(data: bytes) -> list[tuple[int, int]]:
    """(offset, total length) of every record, walking the documented layout."""
    _, _, header_len = struct.unpack(">8sHI", data[:14])
    pos = 14 + header_len
    out = []
    while pos < len(data):
        _, length = struct.unpack(">cI", data[pos : pos + 5])
        out.append((pos, 5 + length))
        pos += 5 + length
    return out


def _flip_middle(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _truncate(data: bytes) -> bytes:
    # Cut at a record boundary two thirds in: every record left is intact, only the end is missing.
    records = _records(data)
    return data[: records[len(records) * 2 // 3][0]]


def _swap_chunks(data: bytes) -> bytes:
    (a, la), (b, lb) = _records(data)[1:3]
    assert la == lb  # full chunks of the same size: only their order changes
    return data[:a] + data[b : b + lb] + data[a : a + la] + data[b + lb :]


def _drop_trailer(data: bytes) -> bytes:
    return data[: _records(data)[-1][0]]


@pytest.mark.parametrize("verify_first", [True, False], ids=["verified-first", "streaming-only"])
@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_flip_middle, "failed authentication"),
        (_truncate, "truncated"),
        (_swap_chunks, "failed authentication"),
        (_drop_trailer, "truncated"),
    ],
    ids=["flipped-byte", "truncated", "swapped-chunks", "no-trailer"],
)
def test_a_damaged_backup_fails_clearly_and_leaves_the_target_empty(
    small_chunk_backup: Path,
    target: str,
    tmp_path: Path,
    provider: LocalKeyFileProvider,
    damage: Callable[[bytes], bytes],
    expected: str,
    verify_first: bool,
) -> None:
    bad = tmp_path / "damaged.pbak"
    bad.write_bytes(damage(small_chunk_backup.read_bytes()))
    with pytest.raises(BackupError, match=expected) as err:
        restore_backup(bad, target, provider, verify_first=verify_first)
    if verify_first:
        assert "the target was not touched" in str(err.value)
    # Without the verification pass pg_restore has already received the chunks before the damage;
    # its single transaction dies with it.
    assert _app_objects(target) == []


def test_restore_refuses_a_database_that_is_not_empty(
    backup_file: Path, source_url: str, provider: LocalKeyFileProvider
) -> None:
    before = _fingerprint(source_url)
    with pytest.raises(BackupError, match="the restore target is not empty"):
        restore_backup(backup_file, source_url, provider)
    assert _fingerprint(source_url) == before


def test_a_failing_pg_dump_is_named_and_leaves_no_file(
    server_url: str, provider: LocalKeyFileProvider, tmp_path: Path
) -> None:
    missing = sqlalchemy_url(server_url).set(database="praneya_bk_no_such_db").render_as_string(False)
    out = tmp_path / "x" / "never.pbak"
    with pytest.raises(BackupError, match=r"pg_dump failed \(exit 1\): .*praneya_bk_no_such_db"):
        create_backup(missing, out, provider)
    assert list(out.parent.iterdir()) == []


class _LazySource:
    """64 MiB of plaintext made up on demand, never held whole."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.sha = hashlib.sha256()
        self.counter = 0

    def read(self, n: int) -> bytes:
        n = min(n, self.left, 300_000)  # short reads, like a pipe
        self.left -= n
        self.counter += 1
        block = (self.counter.to_bytes(4, "big") * (n // 4 + 1))[:n]
        self.sha.update(block)
        return block


def test_memory_stays_flat_whatever_the_size(provider: LocalKeyFileProvider, tmp_path: Path) -> None:
    total = 64 * 1024 * 1024
    source = _LazySource(total)
    sealed = tmp_path / "big.pbak"
    tracemalloc.start()
    try:
        with open(sealed, "wb") as out:
            summary = encrypt_stream(source.read, out.write, provider, database="synthetic", pg_dump_version="-")
        _, encrypt_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sink = hashlib.sha256()
        with open(sealed, "rb") as f:
            opened = decrypt_stream(f.read, sink.update, provider)
        _, decrypt_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.plaintext_bytes == opened.plaintext_bytes == total
    assert summary.chunks == opened.chunks == 64
    assert sink.hexdigest() == source.sha.hexdigest() == opened.sha256
    assert sealed.read_bytes()[:8] == MAGIC
    # A few 1 MiB chunks in flight, never the 64 MiB stream.
    assert encrypt_peak < 6 * 1024 * 1024, encrypt_peak
    assert decrypt_peak < 6 * 1024 * 1024, decrypt_peak


def test_an_empty_stream_round_trips(provider: LocalKeyFileProvider) -> None:
    sealed: list[bytes] = []
    encrypt_stream(lambda n: b"", sealed.append, provider, database="d", pg_dump_version="-")
    data = b"".join(sealed)
    plain: list[bytes] = []
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        pos += n
        return data[pos - n : pos]

    assert decrypt_stream(read, plain.append, provider).chunks == 1
    assert plain == [b""]


def test_cli_create_verify_and_restore_which_never_defaults_to_database_url(
    source_url: str,
    target: str,
    master_key_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", source_url)
    monkeypatch.setenv("PRANEYA_MASTER_KEY_FILE", str(master_key_file))
    out = tmp_path / "cli.pbak"
    assert praneya(["backup", "create", "--out", str(out)]) == 0
    assert f"written to {out}" in capsys.readouterr().out
    assert praneya(["backup", "create", "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert praneya(["backup", "verify", str(out)]) == 0
    assert "is intact" in capsys.readouterr().out

    assert praneya(["backup", "restore", str(out)]) == 1
    assert "needs --target-url" in capsys.readouterr().err
    assert praneya(["backup", "restore", str(out), "--target-url", target]) == 0
    captured = capsys.readouterr()
    assert "restored backup" in captured.out and "restore:" in captured.err
    assert _fingerprint(target) == _fingerprint(source_url)

    assert praneya(["backup", "restore", str(out), "--target-url", target]) == 1
    assert "not empty" in capsys.readouterr().err


def test_a_failure_after_pg_restore_did_work_rolls_all_of_it_back(
    small_chunk_backup: Path,
    target: str,
    tmp_path: Path,
    provider: LocalKeyFileProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Streaming without the verification pass, damage in the trailer: pg_restore has created every
    table (inside its transaction) by the time the damage is read, and none of it survives."""
    data = small_chunk_backup.read_bytes()
    records = _records(data)
    trailer_at = records[-1][0] + 10
    bad = tmp_path / "bad-trailer.pbak"
    bad.write_bytes(data[:trailer_at] + bytes([data[trailer_at] ^ 0x01]) + data[trailer_at + 1 :])
    chunks = len(records) - 1
    target_db = sqlalchemy_url(target).database
    locks_seen = 0

    def busy_pg_restore_locks() -> int:
        with psycopg.connect(_libpq(target), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE a.datname = %s AND a.application_name = 'pg_restore' AND l.locktype = 'relation'"
                " AND l.mode = 'AccessExclusiveLock'",
                (target_db,),
            ).fetchone()
        return int(row[0]) if row else 0

    real = backup_module.decrypt_stream

    def paced(read: Any, write: Any, provider: Any, **kw: Any) -> Any:
        written = 0

        def forward(chunk: bytes) -> None:
            nonlocal written, locks_seen
            write(chunk)
            written += 1
            if written == chunks - 1:  # everything but the final chunk is in pg_restore's hands
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and (locks_seen := busy_pg_restore_locks()) < 20:
                    time.sleep(0.1)

        return real(read, forward, provider, **kw)

    monkeypatch.setattr(backup_module, "decrypt_stream", paced)
    with pytest.raises(BackupError, match="failed authentication"):
        restore_backup(bad, target, provider, verify_first=False)
    assert locks_seen >= 20  # pg_restore had created tables in its open transaction ...
    assert _app_objects(target) == []  # ... and the kill rolled them back

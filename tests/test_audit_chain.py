"""The audit hash chain against a real PostgreSQL: sealing, verification, and each kind of tamper.

Audit rows come from real writes through the store as praneya_app (put_medication fires the PHI
audit trigger), plus rows inserted directly as admin where a test needs an old timestamp. Tampering
is done the only way the append-only trigger allows: as praneya_owner. Every test seals and
verifies only its own tenants (lag 0), so tests sharing the database do not see each other.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from engine.cli import main as praneya
from store import audit_chain
from store.audit_chain import (
    GENESIS_HASH,
    SIGNATURE_DOMAIN,
    AuditChainError,
    ChainReport,
    SealResult,
    seal,
    seal_hash_of,
    verify,
)
from store.keys import KeyStore
from store.patients import MedicationInput, put_medication
from store.session import Database, Principal
from store.signing import SIGNING_KEY_ENV, Signer, generate_signing_key, verify_signature

pytestmark = pytest.mark.db

NOW = timedelta(0)  # lag 0: tests run no concurrent writers into their own tenants


@pytest.fixture(scope="module")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signing") / "audit-seal.pem"
    generate_signing_key(path)
    return path


@pytest.fixture(scope="module")
def signer(signing_key_file: Path) -> Signer:
    return Signer.from_file(signing_key_file)


@pytest.fixture
def world(
    app_db: Database,
    keys: KeyStore,
    make_tenant: Callable[[], str],
    make_patient: Callable[..., str],
    advisor: Callable[[str], Principal],
) -> Callable[[], tuple[str, Callable[[int], None]]]:
    """A tenant with a patient, and a function that writes n medications (n audit rows) as praneya_app."""

    def make() -> tuple[str, Callable[[int], None]]:
        tenant = make_tenant()
        patient = make_patient(tenant)
        who = advisor(tenant)

        def write(n: int) -> None:
            for i in range(n):
                with app_db.scoped(who) as conn:
                    put_medication(conn, keys, patient, MedicationInput(f"drug-{i}", dosage="5 mg"))

        return tenant, write

    return make


def _seal(engine: Engine, signer: Signer, tenant: str) -> list[SealResult]:
    with engine.begin() as conn:
        return seal(conn, signer, lag=NOW, tenant_id=tenant)


def _check(engine: Engine, signer: Signer, tenant: str | None, public_raw: bytes | None = None) -> ChainReport:
    with _snapshot(engine) as conn:
        report = verify(conn, public_raw or signer.public_raw, tenant_id=tenant, operator=tenant is None)
    assert len(report.chains) == 1
    return report.chains[0]


@pytest.fixture
def snapshot_of(admin_engine: Engine) -> Callable[[], Any]:
    return lambda: _snapshot(admin_engine)


class _snapshot:
    """A REPEATABLE READ transaction on the admin engine, as verify() requires."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> Connection:
        self.conn = self.engine.connect().execution_options(isolation_level="REPEATABLE READ")
        self.tx = self.conn.begin()
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.tx.rollback()
        self.conn.close()


def _as_owner(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> int:
    """Tamper the only way the append-only triggers allow: as the owner."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE praneya_owner"))
        return conn.execute(text(sql), params or {}).rowcount


def _rows(engine: Engine, tenant: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    'SELECT id COLLATE "C" AS id, "timestamp", row_hash FROM audit.audit_logs WHERE tenant_id = :t'
                    ' UNION ALL SELECT id COLLATE "C", "timestamp", row_hash FROM audit.audit_logs_archive'
                    ' WHERE tenant_id = :t ORDER BY "timestamp", id'
                ),
                {"t": tenant},
            )
        )


def _insert_row(engine: Engine, tenant: str | None, at: datetime, action: str = "TEST_BACKDATED") -> str:
    with engine.begin() as conn:
        return str(
            conn.execute(
                text('INSERT INTO audit.audit_logs (tenant_id, action, "timestamp") VALUES (:t, :a, :ts) RETURNING id'),
                {"t": tenant, "a": action, "ts": at},
            ).scalar_one()
        )


def test_seal_then_verify(admin_engine: Engine, signer: Signer, world: Callable[[], Any]) -> None:
    tenant, write = world()
    write(3)
    rows = _rows(admin_engine, tenant)
    assert len(rows) >= 3, "control: the writes produced audit rows"

    [s] = _seal(admin_engine, signer, tenant)
    assert (s.tenant_id, s.seq, s.range_start, s.row_count) == (tenant, 1, None, len(rows))
    # The documented formats, recomputed independently: digest of the hex row hashes in
    # (timestamp, id) order, and a signature over the domain tag and the raw seal hash.
    expected_digest = hashlib.sha256("".join(r.row_hash for r in rows).encode("ascii")).hexdigest()
    assert s.rows_digest == expected_digest
    assert s.seal_hash == seal_hash_of(tenant, 1, None, s.range_end, len(rows), expected_digest, GENESIS_HASH)
    with admin_engine.connect() as conn:
        stored = conn.execute(
            text("SELECT prev_hash, signature, key_id FROM audit.audit_seals WHERE tenant_id = :t"), {"t": tenant}
        ).one()
    assert stored.prev_hash == GENESIS_HASH and stored.key_id == signer.key_id
    assert verify_signature(signer.public_raw, SIGNATURE_DOMAIN + bytes.fromhex(s.seal_hash), stored.signature)

    report = _check(admin_engine, signer, tenant)
    assert report.ok, report.line()
    assert (report.seals, report.sealed_rows, report.unsealed_rows) == (1, len(rows), 0)
    assert report.line().startswith(f"tenant {tenant}: OK (1 seals covering {len(rows)} rows")
    # Nothing new: nothing to seal.
    assert _seal(admin_engine, signer, tenant) == []


def test_second_seal_links_to_the_first_and_pages_stream(
    admin_engine: Engine, signer: Signer, world: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny pages so the row cursor spans several fetches and seals come in several pages.
    monkeypatch.setattr(audit_chain, "ROW_BATCH", 2)
    monkeypatch.setattr(audit_chain, "SEAL_PAGE", 2)
    tenant, write = world()
    sealed: list[SealResult] = []
    for _ in range(5):
        write(2)
        sealed += _seal(admin_engine, signer, tenant)
    assert [s.seq for s in sealed] == [1, 2, 3, 4, 5]
    for prev, nxt in itertools.pairwise(sealed):
        assert nxt.range_start == prev.range_end
        assert nxt.seal_hash == seal_hash_of(
            tenant, nxt.seq, nxt.range_start, nxt.range_end, nxt.row_count, nxt.rows_digest, prev.seal_hash
        )
    write(1)  # written after the last seal: checked, but not yet sealed
    report = _check(admin_engine, signer, tenant)
    assert report.ok, report.line()
    assert report.seals == 5
    assert report.sealed_rows == sum(s.row_count for s in sealed)
    assert report.unsealed_rows >= 1


def test_an_edited_row_is_reported_by_id(admin_engine: Engine, signer: Signer, world: Callable[[], Any]) -> None:
    tenant, write = world()
    write(3)
    [s] = _seal(admin_engine, signer, tenant)
    victim = _rows(admin_engine, tenant)[1]
    assert (
        _as_owner(admin_engine, "UPDATE audit.audit_logs SET outcome = 'FAILURE' WHERE id = :id", {"id": victim.id})
        == 1
    )
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.row_timestamp, report.broken.seal_seq) == (
        victim.id,
        victim.timestamp,
        s.seq,
    )
    assert "row hash mismatch" in report.broken.problem
    assert report.line().startswith(f"tenant {tenant}: BROKEN at row {victim.id} at ")


def test_an_edited_row_not_yet_sealed_is_reported(
    admin_engine: Engine, signer: Signer, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(2)
    victim = _rows(admin_engine, tenant)[0]
    _as_owner(admin_engine, "UPDATE audit.audit_logs SET action = 'X' WHERE id = :id", {"id": victim.id})
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None and report.broken.row_id == victim.id
    assert "(not yet sealed)" in str(report.broken)


def test_an_edited_row_with_a_recomputed_hash_breaks_the_seal(
    admin_engine: Engine, signer: Signer, world: Callable[[], Any]
) -> None:
    # A careful editor also rewrites row_hash: the row looks consistent, the seal's digest does not.
    tenant, write = world()
    write(3)
    [s] = _seal(admin_engine, signer, tenant)
    victim = _rows(admin_engine, tenant)[0]
    _as_owner(admin_engine, "UPDATE audit.audit_logs SET outcome = 'FAILURE' WHERE id = :id", {"id": victim.id})
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_logs a SET row_hash = audit.audit_row_hash(to_jsonb(a)) WHERE id = :id",
        {"id": victim.id},
    )
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None and report.broken.seal_seq == 1 and report.broken.row_id is None
    assert report.broken.problem.startswith("rows changed or replaced")
    assert f"expected {s.row_count} rows, found {s.row_count}" in report.broken.problem


def test_a_deleted_row_is_a_digest_mismatch(admin_engine: Engine, signer: Signer, world: Callable[[], Any]) -> None:
    tenant, write = world()
    write(2)
    [first] = _seal(admin_engine, signer, tenant)
    write(3)
    [second] = _seal(admin_engine, signer, tenant)
    victim = _rows(admin_engine, tenant)[-1]  # in the second seal
    assert _as_owner(admin_engine, "DELETE FROM audit.audit_logs WHERE id = :id", {"id": victim.id}) == 1
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None
    assert str(report.broken).startswith("seal 2: 1 row missing")
    assert f"(digest mismatch, expected {second.row_count} rows, found {second.row_count - 1})" in report.broken.problem
    assert (report.seals, report.sealed_rows) == (1, first.row_count), "seal 1 verified before the break"


def test_a_row_backdated_into_a_sealed_range_is_reported(
    admin_engine: Engine, signer: Signer, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(2)
    [first] = _seal(admin_engine, signer, tenant)
    write(2)
    [second] = _seal(admin_engine, signer, tenant)
    # Later, a row appears inside seal 2's range (between its start and end).
    assert second.range_start == first.range_end is not None
    inside = first.range_end + (second.range_end - first.range_end) / 2
    _insert_row(admin_engine, tenant, inside)
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None and report.broken.seal_seq == 2
    assert report.broken.problem.startswith("1 row added")
    assert f"expected {second.row_count} rows, found {second.row_count + 1}" in report.broken.problem


def test_a_forged_seal_is_a_bad_signature(admin_engine: Engine, signer: Signer, world: Callable[[], Any]) -> None:
    # The forger deletes a row and rewrites the seal to match: digest, count and seal_hash all
    # consistent again; only the signature (which needs the private key) gives it away.
    tenant, write = world()
    write(3)
    [s] = _seal(admin_engine, signer, tenant)
    rows = _rows(admin_engine, tenant)
    _as_owner(admin_engine, "DELETE FROM audit.audit_logs WHERE id = :id", {"id": rows[0].id})
    kept = rows[1:]
    digest = hashlib.sha256("".join(r.row_hash for r in kept).encode("ascii")).hexdigest()
    forged = seal_hash_of(tenant, 1, None, s.range_end, len(kept), digest, GENESIS_HASH)
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_seals SET rows_digest = :d, row_count = :n, seal_hash = :h"
        " WHERE tenant_id = :t AND seq = 1",
        {"d": digest, "n": len(kept), "h": forged, "t": tenant},
    )
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None
    assert str(report.broken) == "seal 1: bad signature"

    # Re-signed with the forger's own key: still not the service's key.
    other = tmp_signer()
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_seals SET signature = :s, key_id = :k WHERE tenant_id = :t AND seq = 1",
        {"s": other.sign(SIGNATURE_DOMAIN + bytes.fromhex(forged)), "k": other.key_id, "t": tenant},
    )
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None
    assert report.broken.problem == f"bad signature (sealed with key {other.key_id}, verifying with {signer.key_id})"
    # ...and the forger's key does verify it: the check really is the key.
    assert _check(admin_engine, signer, tenant, public_raw=other.public_raw).ok


def tmp_signer() -> Signer:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Signer(Ed25519PrivateKey.generate())


def test_seal_fields_edited_and_seals_removed(admin_engine: Engine, signer: Signer, world: Callable[[], Any]) -> None:
    tenant, write = world()
    sealed = []
    for _ in range(3):
        write(1)
        sealed += _seal(admin_engine, signer, tenant)
    assert [s.seq for s in sealed] == [1, 2, 3]
    # An edited field without a recomputed seal_hash.
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_seals SET row_count = row_count + 1 WHERE tenant_id = :t AND seq = 2",
        {"t": tenant},
    )
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None and str(report.broken) == "seal 2: seal_hash does not match the seal's fields"
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_seals SET row_count = row_count - 1 WHERE tenant_id = :t AND seq = 2",
        {"t": tenant},
    )
    assert _check(admin_engine, signer, tenant).ok, "control: restored, the chain verifies again"
    # A broken link.
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_seals SET prev_hash = :z WHERE tenant_id = :t AND seq = 3",
        {"t": tenant, "z": GENESIS_HASH},
    )
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None and str(report.broken) == "seal 3: prev_hash does not link to seal 2"
    # A seal removed from the middle.
    _as_owner(admin_engine, "DELETE FROM audit.audit_seals WHERE tenant_id = :t AND seq = 2", {"t": tenant})
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None and str(report.broken) == "seal 3: seal 2 is missing (the next seal found is 3)"


def test_retention_moves_sealed_rows_to_the_archive_and_the_chain_still_verifies(
    admin_engine: Engine, signer: Signer, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    eight_years_ago = datetime.now(UTC) - timedelta(days=8 * 366)
    old = [_insert_row(admin_engine, tenant, eight_years_ago + timedelta(minutes=i), "TEST_OLD") for i in range(3)]
    write(2)
    [s] = _seal(admin_engine, signer, tenant)
    assert s.row_count == len(_rows(admin_engine, tenant))
    with admin_engine.begin() as conn:
        conn.execute(text("SELECT public.manage_healthcare_retention()"))
        archived = (
            conn.execute(text("SELECT id FROM audit.audit_logs_archive WHERE tenant_id = :t"), {"t": tenant})
            .scalars()
            .all()
        )
        left = conn.execute(
            text("SELECT count(*) FROM audit.audit_logs WHERE id = ANY(:ids)"), {"ids": old}
        ).scalar_one()
    assert sorted(archived) == sorted(old) and left == 0, "control: retention moved the old rows"

    report = _check(admin_engine, signer, tenant)
    assert report.ok, report.line()
    assert report.sealed_rows == s.row_count
    # The archive really is part of the digest: a row deleted there breaks the seal.
    _as_owner(admin_engine, "DELETE FROM audit.audit_logs_archive WHERE id = :id", {"id": old[1]})
    report = _check(admin_engine, signer, tenant)
    assert report.broken is not None and str(report.broken).startswith("seal 1: 1 row missing")


def test_operator_rows_form_their_own_chain(admin_engine: Engine, signer: Signer) -> None:
    # Rows without a tenant (operator actions) are sealed with tenant_id NULL and verified alike.
    _insert_row(admin_engine, None, datetime.now(UTC) - timedelta(seconds=1), "TEST_OPERATOR")
    with admin_engine.begin() as conn:
        results = seal(conn, signer, lag=NOW, operator=True)
    assert [(r.tenant_id, r.row_count > 0) for r in results] == [(None, True)]
    report = _check(admin_engine, signer, None)
    assert report.ok, report.line()
    assert report.line().startswith("operator (no tenant): OK")
    with admin_engine.connect() as conn:
        seqs = (
            conn.execute(text("SELECT seq FROM audit.audit_seals WHERE tenant_id IS NULL ORDER BY seq")).scalars().all()
        )
    assert seqs == list(range(1, len(seqs) + 1)) and results[0].seq == seqs[-1]


def test_isolation_levels_are_enforced(admin_engine: Engine, signer: Signer, world: Callable[[], Any]) -> None:
    tenant, _ = world()
    with admin_engine.begin() as conn, pytest.raises(AuditChainError, match="REPEATABLE READ"):
        verify(conn, signer.public_raw, tenant_id=tenant)
    with _snapshot(admin_engine) as conn, pytest.raises(AuditChainError, match="READ COMMITTED"):
        seal(conn, signer, lag=NOW, tenant_id=tenant)
    with admin_engine.begin() as conn, pytest.raises(AuditChainError, match="no tenant"):
        seal(conn, signer, lag=NOW, tenant_id=tenant + "-nope")


def test_concurrent_sealers_never_collide(admin_engine: Engine, signer: Signer, world: Callable[[], Any]) -> None:
    tenant, write = world()
    write(3)
    errors: list[Exception] = []
    results: list[SealResult] = []
    started = threading.Barrier(3)

    def sealer(barrier: threading.Barrier | None = None) -> None:
        try:
            with admin_engine.begin() as conn:
                conn.execute(text("SELECT 1"))  # the transaction (and its now()) begins here
                if barrier is not None:
                    barrier.wait()
                results.extend(seal(conn, signer, lag=NOW, tenant_id=tenant))
        except Exception as exc:  # noqa: BLE001 - any failure in a sealer thread is the finding
            errors.append(exc)

    # Hold the chain's lock so both sealers are inside their transactions and queued on it before
    # either can seal: they then run one after the other, the second continuing from the first.
    key = f"praneya.audit_seal.tenant:{tenant}"
    with admin_engine.begin() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})
        threads = [threading.Thread(target=sealer, args=(started,)) for _ in range(2)]
        for t in threads:
            t.start()
        started.wait()
        _wait_for_lock_waiters(admin_engine, 2)
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert [r.seq for r in results] == [1], "one seals the rows, the other finds nothing newer"
    # Free-running now: whichever order they take, the chain continues without a gap or clash.
    write(1)
    threads = [threading.Thread(target=sealer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert [r.seq for r in results] == [1, 2]
    assert _check(admin_engine, signer, tenant).ok


def _wait_for_lock_waiters(engine: Engine, n: int) -> None:
    # Polls pg_locks until n sessions wait on an advisory lock (a condition, not a duration).
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
        if waiting >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"expected {n} sealers waiting on the chain lock")


def test_evaluations_do_not_wait_for_a_sealer(admin_engine: Engine, signer: Signer, world: Callable[[], Any]) -> None:
    # While a sealer's transaction is open (lock held, seal inserted, not committed), the service
    # still writes audit rows for the same tenant: praneya_app's lock_timeout (2 s) would fail it
    # if it had to wait on anything the sealer holds.
    tenant, write = world()
    write(2)
    with admin_engine.begin() as conn:
        assert seal(conn, signer, lag=NOW, tenant_id=tenant)
        write(2)
    report = _check(admin_engine, signer, tenant)
    assert report.ok and report.unsealed_rows >= 2


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, signing_key_file: Path) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv(SIGNING_KEY_ENV, str(signing_key_file))
    yield


def test_cli_seal_and_verify(
    cli_env: None,
    admin_engine: Engine,
    signer: Signer,
    world: Callable[[], Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, write = world()
    write(2)
    n = len(_rows(admin_engine, tenant))
    assert praneya(["audit", "seal", "--tenant", tenant, "--lag-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert f"tenant {tenant}: sealed {n} rows from the first row up to " in out and "as seal 1" in out
    assert praneya(["audit", "seal", "--tenant", tenant, "--lag-seconds", "0"]) == 0
    assert f"tenant {tenant}: nothing to seal" in capsys.readouterr().out

    assert praneya(["audit", "verify", "--tenant", tenant]) == 0
    assert capsys.readouterr().out == f"tenant {tenant}: OK (1 seals covering {n} rows, 0 rows not yet sealed)\n"

    # An auditor with only the published public key.
    pem = tmp_path / "seal.pub.pem"
    pem.write_text(signer.public_pem)
    monkeypatch.delenv(SIGNING_KEY_ENV)
    assert praneya(["audit", "verify", "--tenant", tenant, "--public-key", str(pem)]) == 0
    capsys.readouterr()
    wrong = tmp_path / "wrong.pub.pem"
    wrong.write_text(tmp_signer().public_pem)
    assert praneya(["audit", "verify", "--tenant", tenant, "--public-key", str(wrong)]) == 1
    assert "BROKEN at seal 1: bad signature (sealed with key" in capsys.readouterr().out

    # Tampered: exit 1, the first broken link on stdout, a summary on stderr.
    victim = _rows(admin_engine, tenant)[0]
    _as_owner(admin_engine, "DELETE FROM audit.audit_logs WHERE id = :id", {"id": victim.id})
    assert praneya(["audit", "verify", "--tenant", tenant, "--public-key", str(pem)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"tenant {tenant}: BROKEN at seal 1: 1 row missing")
    assert f"expected {n} rows, found {n - 1}" in captured.out
    assert "audit chain broken for 1 of 1 chains" in captured.err


def test_cli_errors_are_one_clear_line(
    cli_env: None, world: Callable[[], Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = world()
    assert praneya(["audit", "seal", "--tenant", "no-such-tenant-x", "--lag-seconds", "0"]) == 1
    assert "praneya: no tenant 'no-such-tenant-x'" in capsys.readouterr().err
    monkeypatch.delenv(SIGNING_KEY_ENV)
    for cmd in (["audit", "seal", "--tenant", tenant], ["audit", "verify", "--tenant", tenant]):
        assert praneya(cmd) == 1
        err = capsys.readouterr().err
        assert err.startswith("praneya: ") and SIGNING_KEY_ENV in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        praneya(["audit", "verify", "--tenant", tenant, "--operator"])

"""The audit hash chain against a real PostgreSQL: sealing, verification, and each kind of tamper.

Audit rows come from real writes through the store as praneya_app (put_medication fires the PHI
audit trigger), plus rows inserted directly as admin where a test needs an old timestamp. Tampering
is done the only way the append-only trigger allows: as praneya_owner (the attacker with database
access alone: no signing key, no access to the anchor). Every test seals and verifies only its own
tenants (lag 0) against an anchor file of its own, so tests sharing the database do not see each
other, and removes its tenants' rows and seals afterwards: other files seal and verify every chain
of this database with keys of their own (test_grpc_service).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import itertools
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from engine.doors.cli import main as praneya
from store import audit_chain
from store.audit_anchor import ANCHOR_DOMAIN, ANCHOR_ENV, AnchorState, FileAnchor, anchor_path
from store.audit_chain import (
    GENESIS_HASH,
    SIGNATURE_DOMAIN,
    AuditChainError,
    ChainReport,
    SealResult,
    SealRun,
    VerifyReport,
    seal,
    seal_hash_of,
    verify,
    verify_chain,
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
def anchor(tmp_path: Path) -> FileAnchor:
    """This test's anchor (its folder does not exist yet: the first seal creates it)."""
    return FileAnchor(tmp_path / "audit-anchor" / "anchor.jsonl")


@pytest.fixture
def tenants(admin_engine: Engine, make_tenant: Callable[[], str]) -> Iterator[Callable[[], str]]:
    """make_tenant, and afterwards the tenants' audit rows and seals removed (as the owner)."""
    made: list[str] = []

    def make() -> str:
        made.append(make_tenant())
        return made[-1]

    yield make
    if made:
        for table in ("audit.audit_seals", "audit.audit_logs", "audit.audit_logs_archive"):
            _as_owner(admin_engine, f"DELETE FROM {table} WHERE tenant_id = ANY(:t)", {"t": made})


@pytest.fixture
def world(
    app_db: Database,
    keys: KeyStore,
    tenants: Callable[[], str],
    make_patient: Callable[..., str],
    advisor: Callable[[str], Principal],
) -> Callable[[], tuple[str, Callable[[int], None]]]:
    """A tenant with a patient, and a function that writes n medications (n audit rows) as praneya_app."""

    def make() -> tuple[str, Callable[[int], None]]:
        tenant = tenants()
        patient = make_patient(tenant)
        who = advisor(tenant)

        def write(n: int) -> None:
            for i in range(n):
                with app_db.scoped(who) as conn:
                    put_medication(conn, keys, patient, MedicationInput(f"drug-{i}", dosage="5 mg"))

        return tenant, write

    return make


def _seal_run(
    engine: Engine,
    signer: Signer,
    anchor: FileAnchor,
    tenant: str | None = None,
    *,
    operator: bool = False,
    append: bool = True,
) -> SealRun:
    """What `praneya audit seal` does: read the anchor, seal, commit holding the anchor, append.
    append=False stops after the commit, as a sealer that crashed there would."""
    anchored = anchor.heads(signer.public_raw)
    with engine.connect() as conn:
        tx = conn.begin()
        run = seal(conn, signer, anchored=anchored, lag=NOW, tenant_id=tenant, operator=operator)
        with anchor.holding(exclusive=True):
            tx.commit()
            if append:
                anchor.append(run.to_anchor, signer)
    return run


def _seal(engine: Engine, signer: Signer, anchor: FileAnchor, tenant: str) -> list[SealResult]:
    run = _seal_run(engine, signer, anchor, tenant)
    assert not run.refused, run.refused
    return list(run.sealed)


def _verify(
    engine: Engine, signer: Signer, anchor: FileAnchor, tenant: str | None, public_raw: bytes | None = None
) -> VerifyReport:
    with _snapshot(engine) as conn:
        return verify(conn, public_raw or signer.public_raw, anchor, tenant_id=tenant, operator=tenant is None)


def _check(
    engine: Engine, signer: Signer, anchor: FileAnchor, tenant: str | None, public_raw: bytes | None = None
) -> ChainReport:
    report = _verify(engine, signer, anchor, tenant, public_raw)
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


def test_seal_then_verify(admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]) -> None:
    tenant, write = world()
    write(3)
    rows = _rows(admin_engine, tenant)
    assert len(rows) >= 3, "control: the writes produced audit rows"

    [s] = _seal(admin_engine, signer, anchor, tenant)
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

    report = _check(admin_engine, signer, anchor, tenant)
    assert report.ok, report.line()
    assert (report.seals, report.sealed_rows, report.unsealed_rows) == (1, len(rows), 0)
    assert report.line().startswith(f"tenant {tenant}: OK (1 seals covering {len(rows)} rows")
    # Nothing new: nothing to seal.
    assert _seal(admin_engine, signer, anchor, tenant) == []


def test_second_seal_links_to_the_first_and_pages_stream(
    admin_engine: Engine,
    signer: Signer,
    anchor: FileAnchor,
    world: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Tiny pages so the row cursor spans several fetches and seals come in several pages.
    monkeypatch.setattr(audit_chain, "ROW_BATCH", 2)
    monkeypatch.setattr(audit_chain, "SEAL_PAGE", 2)
    tenant, write = world()
    sealed: list[SealResult] = []
    for _ in range(5):
        write(2)
        sealed += _seal(admin_engine, signer, anchor, tenant)
    assert [s.seq for s in sealed] == [1, 2, 3, 4, 5]
    for prev, nxt in itertools.pairwise(sealed):
        assert nxt.range_start == prev.range_end
        assert nxt.seal_hash == seal_hash_of(
            tenant, nxt.seq, nxt.range_start, nxt.range_end, nxt.row_count, nxt.rows_digest, prev.seal_hash
        )
    write(1)  # written after the last seal: checked, but not yet sealed
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.ok, report.line()
    assert report.seals == 5
    assert report.sealed_rows == sum(s.row_count for s in sealed)
    assert report.unsealed_rows >= 1


def test_an_edited_row_is_reported_by_id(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(3)
    [s] = _seal(admin_engine, signer, anchor, tenant)
    victim = _rows(admin_engine, tenant)[1]
    assert (
        _as_owner(admin_engine, "UPDATE audit.audit_logs SET outcome = 'FAILURE' WHERE id = :id", {"id": victim.id})
        == 1
    )
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.row_timestamp, report.broken.seal_seq) == (
        victim.id,
        victim.timestamp,
        s.seq,
    )
    assert "row hash mismatch" in report.broken.problem
    assert report.line().startswith(f"tenant {tenant}: BROKEN at row {victim.id} at ")


def test_an_edited_row_not_yet_sealed_is_reported(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(2)
    victim = _rows(admin_engine, tenant)[0]
    _as_owner(admin_engine, "UPDATE audit.audit_logs SET action = 'X' WHERE id = :id", {"id": victim.id})
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None and report.broken.row_id == victim.id
    assert "(not yet sealed)" in str(report.broken)


def test_an_edited_row_with_a_recomputed_hash_breaks_the_seal(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    # A careful editor also rewrites row_hash: the row looks consistent, the seal's digest does not.
    tenant, write = world()
    write(3)
    [s] = _seal(admin_engine, signer, anchor, tenant)
    victim = _rows(admin_engine, tenant)[0]
    _as_owner(admin_engine, "UPDATE audit.audit_logs SET outcome = 'FAILURE' WHERE id = :id", {"id": victim.id})
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_logs a SET row_hash = audit.audit_row_hash(to_jsonb(a)) WHERE id = :id",
        {"id": victim.id},
    )
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None and report.broken.seal_seq == 1 and report.broken.row_id is None
    assert report.broken.problem.startswith("rows changed or replaced")
    assert f"expected {s.row_count} rows, found {s.row_count}" in report.broken.problem


def test_a_deleted_row_is_a_digest_mismatch(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(2)
    [first] = _seal(admin_engine, signer, anchor, tenant)
    write(3)
    [second] = _seal(admin_engine, signer, anchor, tenant)
    victim = _rows(admin_engine, tenant)[-1]  # in the second seal
    assert _as_owner(admin_engine, "DELETE FROM audit.audit_logs WHERE id = :id", {"id": victim.id}) == 1
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None
    assert str(report.broken).startswith("seal 2: 1 row missing")
    assert f"(digest mismatch, expected {second.row_count} rows, found {second.row_count - 1})" in report.broken.problem
    assert (report.seals, report.sealed_rows) == (1, first.row_count), "seal 1 verified before the break"


def test_a_row_backdated_into_a_sealed_range_is_reported(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(2)
    [first] = _seal(admin_engine, signer, anchor, tenant)
    write(2)
    [second] = _seal(admin_engine, signer, anchor, tenant)
    # Later, a row appears inside seal 2's range (between its start and end).
    assert second.range_start == first.range_end is not None
    inside = first.range_end + (second.range_end - first.range_end) / 2
    _insert_row(admin_engine, tenant, inside)
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None and report.broken.seal_seq == 2
    assert report.broken.problem.startswith("1 row added")
    assert f"expected {second.row_count} rows, found {second.row_count + 1}" in report.broken.problem


def test_a_forged_seal_is_a_bad_signature(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    # The forger deletes a row and rewrites the seal to match: digest, count and seal_hash all
    # consistent again; only the signature (which needs the private key) gives it away.
    tenant, write = world()
    write(3)
    [s] = _seal(admin_engine, signer, anchor, tenant)
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
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None
    assert str(report.broken) == "seal 1: bad signature"

    # Re-signed with the forger's own key: still not the service's key.
    other = tmp_signer()
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_seals SET signature = :s, key_id = :k WHERE tenant_id = :t AND seq = 1",
        {"s": other.sign(SIGNATURE_DOMAIN + bytes.fromhex(forged)), "k": other.key_id, "t": tenant},
    )
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None
    assert report.broken.problem == f"bad signature (sealed with key {other.key_id}, verifying with {signer.key_id})"
    # ...and the forger's key does verify the chain: the check really is the key. (Not the anchor:
    # its record was signed by the service, so under the forger's key it holds nothing.)
    forged_view = _verify(admin_engine, signer, anchor, tenant, public_raw=other.public_raw)
    assert forged_view.chains[0].broken is None
    assert forged_view.anchor.problems == (
        f"line 1: bad signature (signed with key {signer.key_id}, verifying with {other.key_id})",
    )


def tmp_signer() -> Signer:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Signer(Ed25519PrivateKey.generate())


def test_seal_fields_edited_and_seals_removed(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    sealed = []
    for _ in range(3):
        write(1)
        sealed += _seal(admin_engine, signer, anchor, tenant)
    assert [s.seq for s in sealed] == [1, 2, 3]
    # An edited field without a recomputed seal_hash.
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_seals SET row_count = row_count + 1 WHERE tenant_id = :t AND seq = 2",
        {"t": tenant},
    )
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None and str(report.broken) == "seal 2: seal_hash does not match the seal's fields"
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_seals SET row_count = row_count - 1 WHERE tenant_id = :t AND seq = 2",
        {"t": tenant},
    )
    assert _check(admin_engine, signer, anchor, tenant).ok, "control: restored, the chain verifies again"
    # A broken link.
    _as_owner(
        admin_engine,
        "UPDATE audit.audit_seals SET prev_hash = :z WHERE tenant_id = :t AND seq = 3",
        {"t": tenant, "z": GENESIS_HASH},
    )
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None and str(report.broken) == "seal 3: prev_hash does not link to seal 2"
    # A seal removed from the middle.
    _as_owner(admin_engine, "DELETE FROM audit.audit_seals WHERE tenant_id = :t AND seq = 2", {"t": tenant})
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None and str(report.broken) == "seal 3: seal 2 is missing (the next seal found is 3)"


def test_retention_moves_sealed_rows_to_the_archive_and_the_chain_still_verifies(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    eight_years_ago = datetime.now(UTC) - timedelta(days=8 * 366)
    old = [_insert_row(admin_engine, tenant, eight_years_ago + timedelta(minutes=i), "TEST_OLD") for i in range(3)]
    write(2)
    [s] = _seal(admin_engine, signer, anchor, tenant)
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

    report = _check(admin_engine, signer, anchor, tenant)
    assert report.ok, report.line()
    assert report.sealed_rows == s.row_count
    # The archive really is part of the digest: a row deleted there breaks the seal.
    _as_owner(admin_engine, "DELETE FROM audit.audit_logs_archive WHERE id = :id", {"id": old[1]})
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None and str(report.broken).startswith("seal 1: 1 row missing")


@pytest.fixture
def operator_rows(admin_engine: Engine) -> Iterator[Callable[[], str]]:
    """Inserts operator rows; afterwards removes them and the operator seals made meanwhile."""
    with admin_engine.connect() as conn:
        before = conn.execute(text("SELECT coalesce(max(seq), 0) FROM audit.audit_seals WHERE tenant_id IS NULL"))
        last_seq = int(before.scalar_one())
    ids: list[str] = []

    def insert() -> str:
        ids.append(_insert_row(admin_engine, None, datetime.now(UTC) - timedelta(seconds=1), "TEST_OPERATOR"))
        return ids[-1]

    yield insert
    _as_owner(admin_engine, "DELETE FROM audit.audit_seals WHERE tenant_id IS NULL AND seq > :s", {"s": last_seq})
    _as_owner(admin_engine, "DELETE FROM audit.audit_logs WHERE id = ANY(:ids)", {"ids": ids})


def test_operator_rows_form_their_own_chain(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, operator_rows: Callable[[], str]
) -> None:
    # Rows without a tenant (operator actions) are sealed with tenant_id NULL and verified alike.
    operator_rows()
    run = _seal_run(admin_engine, signer, anchor, operator=True)
    results = list(run.sealed)
    assert [(r.tenant_id, r.row_count > 0) for r in results] == [(None, True)]
    assert [(h.tenant_id, h.seq) for h in run.to_anchor] == [(None, results[0].seq)]
    report = _check(admin_engine, signer, anchor, None)
    assert report.ok, report.line()
    assert report.line().startswith("operator (no tenant): OK")
    with admin_engine.connect() as conn:
        seqs = (
            conn.execute(text("SELECT seq FROM audit.audit_seals WHERE tenant_id IS NULL ORDER BY seq")).scalars().all()
        )
    assert seqs == list(range(1, len(seqs) + 1)) and results[0].seq == seqs[-1]


def test_isolation_levels_are_enforced(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, _ = world()
    empty = anchor.heads(signer.public_raw)
    with admin_engine.begin() as conn, pytest.raises(AuditChainError, match="REPEATABLE READ"):
        verify(conn, signer.public_raw, anchor, tenant_id=tenant)
    with _snapshot(admin_engine) as conn, pytest.raises(AuditChainError, match="READ COMMITTED"):
        seal(conn, signer, anchored=empty, lag=NOW, tenant_id=tenant)
    with admin_engine.begin() as conn, pytest.raises(AuditChainError, match="no tenant"):
        seal(conn, signer, anchored=empty, lag=NOW, tenant_id=tenant + "-nope")


def test_concurrent_sealers_never_collide(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(3)
    errors: list[Exception] = []
    results: list[SealResult] = []
    started = threading.Barrier(3)

    def sealer(barrier: threading.Barrier | None = None) -> None:
        # As `praneya audit seal` does it, each with an anchor object of its own (one is not for
        # sharing between threads): the two serialise on the file's lock as two processes would.
        own = FileAnchor(anchor.path)
        try:
            anchored = own.heads(signer.public_raw)
            with admin_engine.connect() as conn:
                tx = conn.begin()
                conn.execute(text("SELECT 1"))  # the transaction (and its now()) begins here
                if barrier is not None:
                    barrier.wait()
                run = seal(conn, signer, anchored=anchored, lag=NOW, tenant_id=tenant)
                with own.holding(exclusive=True):
                    tx.commit()
                    own.append(run.to_anchor, signer)
                results.extend(run.sealed)
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
    assert _check(admin_engine, signer, anchor, tenant).ok


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


def test_evaluations_do_not_wait_for_a_sealer(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    # While a sealer's transaction is open (lock held, seal inserted, not committed), the service
    # still writes audit rows for the same tenant: praneya_app's lock_timeout (2 s) would fail it
    # if it had to wait on anything the sealer holds.
    tenant, write = world()
    write(2)
    with admin_engine.begin() as conn:
        run = seal(conn, signer, anchored=anchor.heads(signer.public_raw), lag=NOW, tenant_id=tenant)
        assert run.sealed
        write(2)
    anchor.append(run.to_anchor, signer)
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.ok and report.unsealed_rows >= 2


# --- the anchor: rollbacks by someone with database access alone --------------------------------


def _anchor_lines(anchor: FileAnchor) -> list[dict[str, Any]]:
    return [json.loads(line) for line in anchor.path.read_text().splitlines()]


def _delete_seal(engine: Engine, tenant: str, seq: int) -> None:
    assert _as_owner(engine, "DELETE FROM audit.audit_seals WHERE tenant_id = :t AND seq = :s", {"t": tenant, "s": seq})


def _edit_and_rehash(engine: Engine, row_id: str) -> None:
    """Edit a row and recompute its row_hash, so the row alone looks untouched."""
    _as_owner(engine, "UPDATE audit.audit_logs SET outcome = 'FAILURE' WHERE id = :id", {"id": row_id})
    _as_owner(
        engine,
        "UPDATE audit.audit_logs a SET row_hash = audit.audit_row_hash(to_jsonb(a)) WHERE id = :id",
        {"id": row_id},
    )


def test_the_anchor_is_signed_append_only_json_lines(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(2)
    run = _seal_run(admin_engine, signer, anchor, tenant)
    [s] = run.sealed
    assert stat.S_IMODE(anchor.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(anchor.path.parent.stat().st_mode) == 0o700
    [rec] = _anchor_lines(anchor)
    assert (rec["n"], rec["tenant_id"], rec["seq"], rec["seal_hash"], rec["row_count"], rec["key_id"]) == (
        1,
        tenant,
        1,
        s.seal_hash,
        s.row_count,
        signer.key_id,
    )
    # The documented format, checked independently: the signature covers the domain tag and the
    # record's compact sorted JSON without the signature.
    body = {k: v for k, v in rec.items() if k != "signature"}
    signed = ANCHOR_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")
    assert verify_signature(signer.public_raw, signed, base64.b64decode(rec["signature"]))

    first = anchor.path.read_bytes()
    write(1)
    assert [r.seq for r in _seal(admin_engine, signer, anchor, tenant)] == [2]
    assert _seal(admin_engine, signer, anchor, tenant) == []  # nothing new: nothing appended either
    after = anchor.path.read_bytes()
    assert after.startswith(first) and after.count(b"\n") == 2, "appended, never rewritten"
    assert [(r["n"], r["seq"]) for r in _anchor_lines(anchor)] == [(1, 1), (2, 2)]
    report = _verify(admin_engine, signer, anchor, tenant)
    assert report.ok and report.anchor.records == 2
    assert report.chains[0].line().endswith("0 rows not yet sealed, newest seal anchored)")


def test_deleting_the_newest_seal_and_rehashing_its_rows_is_caught(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(2)
    _seal(admin_engine, signer, anchor, tenant)
    write(2)
    [second] = _seal(admin_engine, signer, anchor, tenant)
    assert _check(admin_engine, signer, anchor, tenant).ok, "control: intact before the attack"

    # The attack: drop the newest seal, then edit a row it covered and give it a matching hash.
    _delete_seal(admin_engine, tenant, 2)
    _edit_and_rehash(admin_engine, _rows(admin_engine, tenant)[-1].id)
    with _snapshot(admin_engine) as conn:
        unanchored = verify_chain(conn, signer.public_raw, tenant)
    assert unanchored.broken is None, "control: without the anchor the shorter chain verifies (the finding)"

    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None and report.broken.seal_seq == 2
    assert report.line().startswith(
        f"tenant {tenant}: BROKEN at seal 2: the anchor has seal 2 (seal_hash {second.seal_hash[:16]}…, anchored "
    )
    assert report.broken.problem.endswith(
        f"the database's newest seal is 1 (seal_hash {_seal_hashes(admin_engine, tenant)[0][:16]}…): seals were removed"
    )

    # The next seal would sign the edited rows: it refuses, names the chain, and signs nothing.
    run = _seal_run(admin_engine, signer, anchor, tenant)
    assert run.sealed == () and run.to_anchor == ()
    [refusal] = run.refused
    assert refusal.tenant_id == tenant
    assert refusal.line().startswith(
        f"tenant {tenant}: refused to seal: the database does not reach the anchored head: the anchor has seal 2"
    )
    assert _seal_hashes(admin_engine, tenant) == _seal_hashes(admin_engine, tenant)[:1]


def _seal_hashes(engine: Engine, tenant: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT seal_hash FROM audit.audit_seals WHERE tenant_id = :t ORDER BY seq"), {"t": tenant}
            ).scalars()
        )


def test_a_replaced_newest_seal_is_not_the_anchored_one(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    # Drop the newest seal, edit its rows, and let a sealer without the anchor re-seal them: a
    # genuinely signed seal 2, but over edited rows. The anchor still has the original.
    tenant, write = world()
    write(2)
    [original] = _seal(admin_engine, signer, anchor, tenant)
    _delete_seal(admin_engine, tenant, 1)
    _edit_and_rehash(admin_engine, _rows(admin_engine, tenant)[0].id)
    elsewhere = FileAnchor(anchor.path.with_name("another.jsonl"))
    [resealed] = _seal(admin_engine, signer, elsewhere, tenant)
    assert resealed.seq == 1 and resealed.seal_hash != original.seal_hash
    report = _check(admin_engine, signer, anchor, tenant)
    assert report.broken is not None
    assert str(report.broken).startswith(
        f"seal 1: not the anchored seal: the anchor has seal 1 (seal_hash {original.seal_hash[:16]}…"
    )
    assert str(report.broken).endswith(f"the database seal_hash {resealed.seal_hash[:16]}…")
    [refusal] = _seal_run(admin_engine, signer, anchor, tenant).refused
    assert "is not the anchored one" in refusal.reason


def test_a_tenant_whose_rows_and_seals_were_deleted_is_named(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, tenants: Callable[[], str]
) -> None:
    gone, kept = tenants(), tenants()
    for t in (gone, kept):
        _insert_row(admin_engine, t, datetime.now(UTC) - timedelta(seconds=1), "TEST_TENANT_ROW")
        _seal(admin_engine, signer, anchor, t)

    # The attack: every trace of one tenant's trail removed from the database, tenant row included.
    for table in ("audit.audit_seals", "audit.audit_logs", "audit.audit_logs_archive"):
        _as_owner(admin_engine, f"DELETE FROM {table} WHERE tenant_id = :t", {"t": gone})
    _as_owner(admin_engine, "DELETE FROM public.tenant_data_keys WHERE tenant_id = :t", {"t": gone})
    assert _as_owner(admin_engine, "DELETE FROM public.tenants WHERE id = :t", {"t": gone}) == 1
    with admin_engine.connect() as conn:
        assert gone not in audit_chain.chains_with_audit(conn), "control: the database alone has forgotten it"

    # Every chain: the database's (other tests' too, not in this anchor) and the anchor's.
    with _snapshot(admin_engine) as conn:
        report = verify(conn, signer.public_raw, anchor)
    by_chain = {c.tenant_id: c for c in report.chains}
    assert by_chain[kept].ok, by_chain[kept].line()
    missing = by_chain[gone]
    assert missing.broken is not None and not report.ok
    assert missing.line() == (
        f"tenant {gone}: BROKEN at seal 1: the anchor has {anchor.heads(signer.public_raw).heads[gone].describe()},"
        f" the database has no seal of this chain (and no tenant {gone!r} in public.tenants): seals were removed"
    )
    # Asked for by name, it is still found (not "no tenant"), and sealing it is refused.
    assert not _check(admin_engine, signer, anchor, gone).ok
    [refusal] = _seal_run(admin_engine, signer, anchor, gone).refused
    assert refusal.tenant_id == gone and "the database has no seal of this chain" in refusal.reason


def test_forged_and_garbled_anchor_lines_fail_verification(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(1)
    _seal(admin_engine, signer, anchor, tenant)
    [rec] = _anchor_lines(anchor)
    # An anchor-only attacker claims a later head (re-numbered, unsigned), signs one with a key of
    # their own, and appends junk.
    forged = {**rec, "n": 2, "seq": 7}
    other = tmp_signer()
    own_key = {**rec, "n": 3, "key_id": other.key_id}
    body = {k: v for k, v in own_key.items() if k != "signature"}
    own_key["signature"] = base64.b64encode(
        other.sign(ANCHOR_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii"))
    ).decode()
    with anchor.path.open("a") as f:
        for doc in (forged, own_key):
            f.write(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
        f.write("not json\n")
    report = _verify(admin_engine, signer, anchor, tenant)
    assert report.anchor.problems == (
        "line 2: bad signature",
        f"line 3: bad signature (signed with key {other.key_id}, verifying with {signer.key_id})",
        "line 4: not a JSON record",
    )
    assert not report.ok
    assert report.chains[0].ok, "forged lines never count as heads: the chain itself is fine"
    assert report.anchor.heads[tenant].head.seq == 1

    # The sealer ignores them (and says so on the CLI) and numbers on from the last valid record.
    write(1)
    _seal(admin_engine, signer, anchor, tenant)
    assert json.loads(anchor.path.read_text().splitlines()[-1])["n"] == 2


def test_a_truncated_anchor_is_reported_until_the_next_seal(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    for _ in range(3):
        write(1)
        _seal(admin_engine, signer, anchor, tenant)
    lines = anchor.path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3

    # A line taken out of the middle is a gap in n.
    anchor.path.write_bytes(lines[0] + lines[2])
    report = _verify(admin_engine, signer, anchor, tenant)
    assert report.anchor.problems == (
        "line 2: record 3 where record 2 was expected (records removed, reordered or copied in)",
    )
    assert not report.ok

    # The tail cut off: the anchor is shorter than the database's chain, which names what is missing.
    anchor.path.write_bytes(lines[0])
    report = _verify(admin_engine, signer, anchor, tenant)
    assert report.anchor.ok and not report.ok
    assert report.chains[0].line() == (
        f"tenant {tenant}: NOT ANCHORED: seals 2..3 not in the anchor (its head for this chain is seal 1): the anchor"
        " lost records, or a sealing run could not append them; the next `praneya audit seal` anchors them"
    )
    # The whole file gone: the same, for every seal.
    anchor.path.unlink()
    report = _verify(admin_engine, signer, anchor, tenant)
    assert report.chains[0].unanchored is not None
    assert report.chains[0].unanchored.startswith("seals 1..3 not in the anchor (it holds no seal of this chain)")

    # The database still holds the signed chain, so the next seal anchors its head again.
    run = _seal_run(admin_engine, signer, anchor, tenant)
    assert run.sealed == () and [(h.tenant_id, h.seq) for h in run.to_anchor] == [(tenant, 3)]
    assert _verify(admin_engine, signer, anchor, tenant).ok


def test_a_seal_committed_but_not_anchored_is_anchored_by_the_next_run(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    tenant, write = world()
    write(1)
    _seal(admin_engine, signer, anchor, tenant)
    write(1)
    crashed = _seal_run(admin_engine, signer, anchor, tenant, append=False)
    assert [s.seq for s in crashed.sealed] == [2]
    assert _check(admin_engine, signer, anchor, tenant).unanchored is not None
    write(1)
    run = _seal_run(admin_engine, signer, anchor, tenant)
    assert [s.seq for s in run.sealed] == [3] and [h.seq for h in run.to_anchor] == [3]
    assert _check(admin_engine, signer, anchor, tenant).ok


def test_a_forged_seal_after_the_anchored_head_is_refused(
    admin_engine: Engine, signer: Signer, anchor: FileAnchor, world: Callable[[], Any]
) -> None:
    # A seal appended in the database by someone without the key: the sealer will not build on it.
    tenant, write = world()
    write(1)
    [s] = _seal(admin_engine, signer, anchor, tenant)
    other = tmp_signer()
    fake = seal_hash_of(tenant, 2, s.range_end, s.range_end + timedelta(seconds=1), 0, GENESIS_HASH, s.seal_hash)
    _as_owner(
        admin_engine,
        "INSERT INTO audit.audit_seals (tenant_id, seq, range_start, range_end, row_count, rows_digest, prev_hash,"
        " seal_hash, key_id, signature) VALUES (:t, 2, :a, :b, 0, :z, :p, :h, :k, :sig)",
        {
            "t": tenant,
            "a": s.range_end,
            "b": s.range_end + timedelta(seconds=1),
            "z": GENESIS_HASH,
            "p": s.seal_hash,
            "h": fake,
            "k": other.key_id,
            "sig": other.sign(SIGNATURE_DOMAIN + bytes.fromhex(fake)),
        },
    )
    [refusal] = _seal_run(admin_engine, signer, anchor, tenant).refused
    assert refusal.reason.startswith("seal 2, not yet anchored, does not verify: bad signature (sealed with key")


def test_the_file_lock_keeps_verifiers_out_while_a_sealer_commits(tmp_path: Path, signer: Signer) -> None:
    # verify() reads the anchor and takes its snapshot holding the lock shared; the sealer holds it
    # exclusively from before its commit until it has appended. Checked with non-blocking flocks.
    path = tmp_path / "a" / "anchor.jsonl"
    sealer = FileAnchor(path)
    with sealer.holding(exclusive=True):
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        assert sealer.heads(signer.public_raw).records == 0, "re-entrant inside its own hold"
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released: no exception
    finally:
        os.close(fd)


def test_anchor_location() -> None:
    from store.config import PROJECT_ROOT

    assert anchor_path("praneya", {}) == PROJECT_ROOT / ".local" / "audit-anchor" / "praneya.jsonl"
    assert anchor_path("a/b c", {ANCHOR_ENV: "/srv/witness/"}) == Path("/srv/witness/a_b_c.jsonl")
    assert anchor_path("praneya", {ANCHOR_ENV: "/srv/witness/prod.jsonl"}) == Path("/srv/witness/prod.jsonl")
    assert AnchorState("x", 0, 0, {}).ok


# --- the database dates audit rows --------------------------------------------------------------


def test_the_runtime_role_cannot_choose_an_audit_rows_time(
    app_db: Database, admin_engine: Engine, world: Callable[[], Any], advisor: Callable[[str], Principal]
) -> None:
    tenant, _ = world()
    who = advisor(tenant)
    insert = text(
        "INSERT INTO audit.audit_logs (tenant_id, user_id, action, \"timestamp\") VALUES (:t, :u, 'TEST_DATED', :ts)"
    )
    for chosen in (datetime.now(UTC) - timedelta(days=400), datetime.now(UTC) - timedelta(minutes=5)):
        with pytest.raises(DBAPIError, match='"timestamp" is set by the database'), app_db.scoped(who) as conn:
            conn.execute(insert, {"t": tenant, "u": who.user_id, "ts": chosen})
    # Without one (as the service writes), the row gets the database's time: its transaction's start.
    with app_db.scoped(who) as conn:
        started = conn.execute(text("SELECT now()")).scalar_one()
        conn.execute(
            text("INSERT INTO audit.audit_logs (tenant_id, user_id, action) VALUES (:t, :u, 'TEST_DATED')"),
            {"t": tenant, "u": who.user_id},
        )
    with admin_engine.connect() as conn:
        dated = conn.execute(
            text("""SELECT "timestamp" FROM audit.audit_logs WHERE tenant_id = :t AND action = 'TEST_DATED'"""),
            {"t": tenant},
        ).scalars()
        assert list(dated) == [started], "only the undated row was written, with the database's time"
    # Straight into a partition: no privilege there at all.
    with admin_engine.connect() as conn:
        partition = conn.execute(text("SELECT 'audit.audit_logs_p' || to_char(now(), 'YYYYMM')")).scalar_one()
    with pytest.raises(DBAPIError, match="permission denied"), app_db.scoped(who) as conn:
        conn.execute(
            text(f"INSERT INTO {partition} (tenant_id, user_id, action) VALUES (:t, :u, 'TEST_DATED')"),
            {"t": tenant, "u": who.user_id},
        )


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, signing_key_file: Path, anchor: FileAnchor
) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv(SIGNING_KEY_ENV, str(signing_key_file))
    monkeypatch.setenv(ANCHOR_ENV, str(anchor.path))
    yield


def test_cli_seal_and_verify(
    cli_env: None,
    admin_engine: Engine,
    signer: Signer,
    anchor: FileAnchor,
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
    assert f"tenant {tenant}: seal 1 anchored as record 1 of {anchor.path}" in out
    assert praneya(["audit", "seal", "--tenant", tenant, "--lag-seconds", "0"]) == 0
    assert f"tenant {tenant}: nothing to seal" in capsys.readouterr().out

    assert praneya(["audit", "verify", "--tenant", tenant]) == 0
    assert capsys.readouterr().out == (
        f"anchor {anchor.path}: 1 records, heads of 1 chains\n"
        f"tenant {tenant}: OK (1 seals covering {n} rows, 0 rows not yet sealed, newest seal anchored)\n"
    )

    # An auditor with only the published public key (and a copy of the anchor, named explicitly).
    pem = tmp_path / "seal.pub.pem"
    pem.write_text(signer.public_pem)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(anchor.path.read_bytes())
    monkeypatch.delenv(SIGNING_KEY_ENV)
    monkeypatch.delenv(ANCHOR_ENV)
    assert praneya(["audit", "verify", "--tenant", tenant, "--public-key", str(pem), "--anchor", str(copy)]) == 0
    capsys.readouterr()
    monkeypatch.setenv(ANCHOR_ENV, str(anchor.path))
    wrong = tmp_path / "wrong.pub.pem"
    wrong.write_text(tmp_signer().public_pem)
    assert praneya(["audit", "verify", "--tenant", tenant, "--public-key", str(wrong)]) == 1
    assert "BROKEN at seal 1: bad signature (sealed with key" in capsys.readouterr().out

    # Tampered: exit 1, the first broken link on stdout, a summary on stderr.
    victim = _rows(admin_engine, tenant)[0]
    _as_owner(admin_engine, "DELETE FROM audit.audit_logs WHERE id = :id", {"id": victim.id})
    assert praneya(["audit", "verify", "--tenant", tenant, "--public-key", str(pem)]) == 1
    captured = capsys.readouterr()
    assert f"\ntenant {tenant}: BROKEN at seal 1: 1 row missing" in captured.out
    assert f"expected {n} rows, found {n - 1}" in captured.out
    assert "audit chain broken or not anchored for 1 of 1 chains" in captured.err


def test_cli_a_rollback_fails_seal_and_verify_naming_the_chain(
    cli_env: None,
    admin_engine: Engine,
    anchor: FileAnchor,
    world: Callable[[], Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant, write = world()
    for _ in range(2):
        write(1)
        assert praneya(["audit", "seal", "--tenant", tenant, "--lag-seconds", "0"]) == 0
    capsys.readouterr()
    _delete_seal(admin_engine, tenant, 2)
    _edit_and_rehash(admin_engine, _rows(admin_engine, tenant)[-1].id)

    assert praneya(["audit", "verify", "--tenant", tenant]) == 1
    captured = capsys.readouterr()
    assert f"tenant {tenant}: BROKEN at seal 2: the anchor has seal 2 (seal_hash " in captured.out
    assert "the database's newest seal is 1 (seal_hash " in captured.out
    write(1)
    assert praneya(["audit", "seal", "--tenant", tenant, "--lag-seconds", "0"]) == 1
    captured = capsys.readouterr()
    assert f"praneya: tenant {tenant}: refused to seal: the database does not reach the anchored head" in captured.err
    assert f"refused 1 chains: they do not extend the heads anchored in {anchor.path}" in captured.err
    assert "sealed" not in captured.out

    # A forged line: verify fails on it, seal warns and goes on.
    with anchor.path.open("a") as f:
        f.write("{}\n")
    assert praneya(["audit", "verify", "--tenant", tenant]) == 1
    captured = capsys.readouterr()
    assert f"anchor {anchor.path}: line 3: not a praneya-audit-anchor-v1 record" in captured.out
    assert "the anchor has 1 invalid records" in captured.err


def test_cli_errors_are_one_clear_line(
    cli_env: None,
    anchor: FileAnchor,
    world: Callable[[], Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    tenant, _ = world()
    assert praneya(["audit", "seal", "--tenant", "no-such-tenant-x", "--lag-seconds", "0"]) == 1
    assert "praneya: no tenant 'no-such-tenant-x'" in capsys.readouterr().err
    # An anchor that cannot be written: nothing is sealed (the failure comes before the commit).
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the anchor's folder should be")
    assert (
        praneya(["audit", "seal", "--tenant", tenant, "--lag-seconds", "0", "--anchor", str(blocked / "a.jsonl")]) == 1
    )
    err = capsys.readouterr().err
    assert err.startswith(f"praneya: the anchor {blocked}") and "Traceback" not in err
    monkeypatch.delenv(SIGNING_KEY_ENV)
    for cmd in (["audit", "seal", "--tenant", tenant], ["audit", "verify", "--tenant", tenant]):
        assert praneya(cmd) == 1
        err = capsys.readouterr().err
        assert err.startswith("praneya: ") and SIGNING_KEY_ENV in err and "Traceback" not in err
    # verify needs only a public key, and says where the development key is when it has none.
    assert praneya(["audit", "verify", "--tenant", tenant]) == 1
    err = capsys.readouterr().err
    assert "--public-key PEM" in err and str(Path(".local") / "dev" / "signing.pem") in err
    with pytest.raises(SystemExit):
        praneya(["audit", "verify", "--tenant", tenant, "--operator"])

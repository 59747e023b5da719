"""Tamper evidence for the audit log: seal rows in signed, chained batches; verify the chain.

Every audit row already carries row_hash, the SHA-256 of its own content, set by the database as
the row is written (migration 0003). A *seal* covers one chain's rows in a time range
(range_start exclusive, range_end inclusive) and is appended to audit.audit_seals:

    rows_digest = sha256( row_hash_1 || row_hash_2 || ... || row_hash_n )
        each row_hash as its 64 lowercase hex characters in ASCII, no separator, rows in
        ("timestamp", id COLLATE "C") order, taken from audit.audit_logs and
        audit.audit_logs_archive together (retention moves old rows to the archive). A row whose
        row_hash is NULL (written before migration 0003) contributes the hash recomputed at
        sealing time, audit.audit_row_hash(to_jsonb(row)).
    seal_hash   = sha256( canonical_seal_document )  (see seal_document())
    signature   = Ed25519( SIGNATURE_DOMAIN || bytes.fromhex(seal_hash) )

A chain is a tenant's rows, or the *operator chain*: rows with tenant_id NULL (global rule syncs
and other operator actions), whose seals have tenant_id NULL (migration 0004). Evaluations never
wait on the sealer: it only reads audit rows and serialises sealers among themselves with a
per-chain advisory lock.

Seals live in the database they protect, so each chain's newest seal is also written to an anchor
outside it (store/audit_anchor.py): seal() refuses a chain that does not extend its anchored head
and says which heads to anchor once its transaction commits; verify() requires every anchored head
to be in the database, and every chain's newest seal to be anchored. Which chains are expected:
every chain the anchor holds (so one whose rows, seals and tenant were all deleted is still named)
and every chain with audit rows or seals in the database.

Nothing here commits: the caller owns the transaction. seal() needs READ COMMITTED (after waiting
for another sealer's lock it must see that sealer's seal); verify() needs REPEATABLE READ or
SERIALIZABLE (seals and rows must come from one snapshot, or a seal committed mid-verification
would cover rows the row stream cannot see).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, text

from store.audit_anchor import AnchorRecord, AnchorState, AnchorStore, ChainHead, chain_label
from store.signing import Signer, key_id_of, verify_signature

__all__ = [
    "GENESIS_HASH",
    "SEAL_FORMAT",
    "SIGNATURE_DOMAIN",
    "AuditChainError",
    "BrokenLink",
    "ChainReport",
    "SealRefusal",
    "SealRefused",
    "SealResult",
    "SealRun",
    "VerifyReport",
    "chain_label",
    "chains_with_audit",
    "seal",
    "seal_chain",
    "seal_document",
    "seal_hash_of",
    "verify",
    "verify_chain",
]

SEAL_FORMAT: Final = "praneya-audit-seal-v1"
# The signature covers a domain tag and the raw seal hash: the same key signs evaluation results
# (compact JSON), so a tagged message can never be mistaken for one of those, nor the reverse.
SIGNATURE_DOMAIN: Final = b"praneya-audit-seal-v1\x00"
GENESIS_HASH: Final = "0" * 64
DEFAULT_LAG: Final = timedelta(minutes=2)
# Rows per round trip when streaming a chain, and seals per page: memory stays flat whatever the
# number of rows or seals.
ROW_BATCH: Final = 5000
SEAL_PAGE: Final = 1000

Chain = str | None  # a tenant id, or None for the operator chain


class AuditChainError(RuntimeError):
    """The chain cannot be sealed or verified as asked (not a finding about the data)."""


class SealRefused(AuditChainError):
    """The database's chain does not extend its anchored head: sealing would sign edited rows."""


# --- formats ---------------------------------------------------------------------------------


def _ts(value: datetime | None) -> str | None:
    # Fixed-width UTC with microseconds (PostgreSQL's precision), so a timestamp has exactly one
    # encoding whatever the session time zone.
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seal_document(
    tenant_id: Chain,
    seq: int,
    range_start: datetime | None,
    range_end: datetime,
    row_count: int,
    rows_digest: str,
    prev_hash: str,
) -> bytes:
    """The canonical bytes seal_hash is the SHA-256 of.

    Compact JSON, keys sorted, ASCII only (json.dumps(..., sort_keys=True, separators=(",", ":"),
    ensure_ascii=True)) of {"format": "praneya-audit-seal-v1", "tenant_id": str or null, "seq": int,
    "range_start": "YYYY-MM-DDTHH:MM:SS.ffffffZ" or null, "range_end": same, "row_count": int,
    "rows_digest": hex, "prev_hash": hex}. JSON rather than joined fields: tenant ids are free text.
    """
    doc = {
        "format": SEAL_FORMAT,
        "tenant_id": tenant_id,
        "seq": seq,
        "range_start": _ts(range_start),
        "range_end": _ts(range_end),
        "row_count": row_count,
        "rows_digest": rows_digest,
        "prev_hash": prev_hash,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def seal_hash_of(
    tenant_id: Chain,
    seq: int,
    range_start: datetime | None,
    range_end: datetime,
    row_count: int,
    rows_digest: str,
    prev_hash: str,
) -> str:
    doc = seal_document(tenant_id, seq, range_start, range_end, row_count, rows_digest, prev_hash)
    return hashlib.sha256(doc).hexdigest()


def _signed_message(seal_hash: str) -> bytes:
    return SIGNATURE_DOMAIN + bytes.fromhex(seal_hash)


# --- queries ---------------------------------------------------------------------------------


def _tenant_predicate(tenant_id: Chain, alias: str) -> str:
    # Two spellings rather than IS NOT DISTINCT FROM, which no index can serve.
    return f"{alias}.tenant_id = :tenant" if tenant_id is not None else f"{alias}.tenant_id IS NULL"


def _rows_sql(tenant_id: Chain, *, lower: bool, upper: bool, recompute: bool) -> str:
    """A chain's rows from both tables in digest order: ts, id, row_hash (+ recomputed hash)."""
    conds = []
    if lower:
        conds.append('"timestamp" > :lower')
    if upper:
        conds.append('"timestamp" <= :upper')
    # Sealing trusts the stored hash (computed at insert) and only fills in missing ones;
    # verification recomputes every hash to catch rows edited after they were written.
    stored = "coalesce(x.row_hash, audit.audit_row_hash(pg_catalog.to_jsonb(x)))"
    recomputed = ", audit.audit_row_hash(pg_catalog.to_jsonb(x)) AS recomputed" if recompute else ""
    branches = []
    for table in ("audit.audit_logs", "audit.audit_logs_archive"):
        where = " AND ".join([_tenant_predicate(tenant_id, "x"), *conds])
        columns = f'x."timestamp" AS ts, x.id COLLATE "C" AS id, {stored} AS row_hash{recomputed}'
        branches.append(f"SELECT {columns} FROM {table} x WHERE {where}")  # noqa: S608 - fixed fragments, values bound
    # id COLLATE "C" (in each branch: a UNION's ORDER BY takes only output columns): the order,
    # and so the digest, must not depend on the database's collation, or a restore into a
    # database with another locale would break every seal.
    return " UNION ALL ".join(branches) + " ORDER BY ts, id"


def _stream(conn: Connection, sql: str, params: dict[str, Any]) -> Generator[Any]:
    # A server-side cursor: rows arrive ROW_BATCH at a time, never all at once.
    # Options on this statement only: Connection.execution_options() would change the caller's
    # connection for every later statement.
    result = conn.execute(text(sql), params, execution_options={"stream_results": True, "yield_per": ROW_BATCH})
    try:
        yield from result
    finally:
        result.close()


def _isolation(conn: Connection) -> str:
    return str(conn.execute(text("SELECT current_setting('transaction_isolation')")).scalar_one())


def _lock_chain(conn: Connection, tenant_id: Chain) -> None:
    # Serialises sealers of one chain until the end of the caller's transaction. An advisory lock
    # touches no row: evaluations inserting audit rows (and their FK check on the tenant row)
    # never wait for it. A hash collision between two chains only serialises them needlessly.
    key = "praneya.audit_seal.operator" if tenant_id is None else f"praneya.audit_seal.tenant:{tenant_id}"
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


def _has_operator_rows(conn: Connection) -> bool:
    return bool(
        conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM audit.audit_logs WHERE tenant_id IS NULL)"
                " OR EXISTS (SELECT 1 FROM audit.audit_logs_archive WHERE tenant_id IS NULL)"
                " OR EXISTS (SELECT 1 FROM audit.audit_seals WHERE tenant_id IS NULL)"
            )
        ).scalar_one()
    )


def chains_with_audit(conn: Connection) -> list[Chain]:
    """Tenants that have audit rows or seals (by id), then None if operator rows exist.

    Probes each tenant through the (tenant_id, "timestamp") indexes rather than a DISTINCT over
    millions of audit rows.
    """
    tenants = conn.execute(
        text(
            "SELECT t.id FROM public.tenants t WHERE"
            " EXISTS (SELECT 1 FROM audit.audit_logs a WHERE a.tenant_id = t.id)"
            " OR EXISTS (SELECT 1 FROM audit.audit_logs_archive a WHERE a.tenant_id = t.id)"
            " OR EXISTS (SELECT 1 FROM audit.audit_seals s WHERE s.tenant_id = t.id)"
            ' ORDER BY t.id COLLATE "C"'
        )
    ).scalars()
    chains: list[Chain] = list(tenants)
    if _has_operator_rows(conn):
        chains.append(None)
    return chains


def _tenant_exists(conn: Connection, tenant_id: str) -> bool:
    return conn.execute(text("SELECT 1 FROM public.tenants WHERE id = :t"), {"t": tenant_id}).first() is not None


def _select_chains(conn: Connection, tenant_id: str | None, operator: bool, anchored: AnchorState) -> list[Chain]:
    """The chains asked for: the database's chains and the anchor's, so that a chain whose rows,
    seals and tenant were deleted is still checked (and named) as long as the anchor holds it."""
    if tenant_id is not None and operator:
        raise AuditChainError("choose a tenant or the operator chain, not both")
    if operator:
        return [None]
    if tenant_id is not None:
        if tenant_id not in anchored.heads and not _tenant_exists(conn, tenant_id):
            raise AuditChainError(f"no tenant {tenant_id!r}")
        return [tenant_id]
    found = chains_with_audit(conn)
    # Python orders str by code point, as COLLATE "C" orders UTF-8 bytes.
    tenants = sorted({c for c in found if c is not None} | {c for c in anchored.heads if c is not None})
    chains: list[Chain] = list(tenants)
    if None in found or None in anchored.heads:
        chains.append(None)
    return chains


# --- seals in the database -------------------------------------------------------------------


@dataclass(frozen=True)
class _Seal:
    seq: int
    range_start: datetime | None
    range_end: datetime
    row_count: int
    rows_digest: str
    prev_hash: str
    seal_hash: str
    key_id: str
    signature: bytes

    def head(self, tenant_id: Chain) -> ChainHead:
        return ChainHead(tenant_id, self.seq, self.seal_hash, self.row_count, self.range_end)


_SEAL_COLUMNS = "seq, range_start, range_end, row_count, rows_digest, prev_hash, seal_hash, key_id, signature"


def _seal_of(r: Any) -> _Seal:
    return _Seal(
        r.seq,
        r.range_start,
        r.range_end,
        r.row_count,
        r.rows_digest,
        r.prev_hash,
        r.seal_hash,
        r.key_id,
        bytes(r.signature),
    )


def _seals(conn: Connection, tenant_id: Chain, *, after: int = 0) -> Iterator[_Seal]:
    # Keyset pages by seq, interleaved with the open row cursor on the same connection.
    sql = text(
        f"SELECT {_SEAL_COLUMNS} FROM audit.audit_seals s WHERE "  # noqa: S608 - fixed fragments
        + _tenant_predicate(tenant_id, "s")
        + " AND seq > :after ORDER BY seq LIMIT :page"
    )
    while True:
        page = conn.execute(sql, {"tenant": tenant_id, "after": after, "page": SEAL_PAGE}).all()
        yield from (_seal_of(r) for r in page)
        if len(page) < SEAL_PAGE:
            return
        after = page[-1].seq


def _newest_seal(conn: Connection, tenant_id: Chain) -> _Seal | None:
    row = conn.execute(
        text(
            f"SELECT {_SEAL_COLUMNS} FROM audit.audit_seals s WHERE "  # noqa: S608 - fixed fragments
            + _tenant_predicate(tenant_id, "s")
            + " ORDER BY seq DESC LIMIT 1"
        ),
        {"tenant": tenant_id},
    ).first()
    return _seal_of(row) if row is not None else None


def _seal_at(conn: Connection, tenant_id: Chain, seq: int) -> _Seal | None:
    row = conn.execute(
        text(
            f"SELECT {_SEAL_COLUMNS} FROM audit.audit_seals s WHERE "  # noqa: S608 - fixed fragments
            + _tenant_predicate(tenant_id, "s")
            + " AND seq = :seq"
        ),
        {"tenant": tenant_id, "seq": seq},
    ).first()
    return _seal_of(row) if row is not None else None


def _seal_problem(
    s: _Seal, tenant_id: Chain, expected_seq: int, prev: _Seal | None, public_key_raw: bytes, key_id: str
) -> str | None:
    """What is wrong with the seal itself, before its rows are looked at; None if nothing."""
    prev_hash = prev.seal_hash if prev else GENESIS_HASH
    if s.seq != expected_seq:
        return f"seal {expected_seq} is missing (the next seal found is {s.seq})"
    if s.prev_hash != prev_hash:
        return f"prev_hash does not link to seal {prev.seq}" if prev else "prev_hash is not the genesis hash"
    recomputed = seal_hash_of(tenant_id, s.seq, s.range_start, s.range_end, s.row_count, s.rows_digest, s.prev_hash)
    if s.seal_hash != recomputed:
        return "seal_hash does not match the seal's fields"
    # Authenticity before content: a forged seal (edited digest, recomputed hash) is reported as
    # forged, not as a digest mismatch with rows that are in fact intact or deliberately matched.
    if s.key_id != key_id:
        return f"bad signature (sealed with key {s.key_id}, verifying with {key_id})"
    try:
        message = _signed_message(s.seal_hash)
    except ValueError:
        return "bad signature (seal_hash is not hex)"
    if not verify_signature(public_key_raw, message, s.signature):
        return "bad signature"
    expected_start = prev.range_end if prev else None
    if s.range_start != expected_start:
        return f"range does not continue seal {prev.seq}" if prev else "the first seal's range has a start"
    return None


def _short(seal_hash: str) -> str:
    return f"seal_hash {seal_hash[:16]}…"


def _anchor_gap(conn: Connection, tenant_id: Chain, anchored: AnchorRecord, newest: _Seal | None) -> str | None:
    """How the database falls short of the anchored head, or None when it reaches it (same seal
    at the anchored seq; whether the seals after it verify is for the caller)."""
    found: str | None = None
    if newest is None:
        found = "the database has no seal of this chain"
        if tenant_id is not None and not _tenant_exists(conn, tenant_id):
            found += f" (and no tenant {tenant_id!r} in public.tenants)"
    elif newest.seq < anchored.head.seq:
        found = f"the database's newest seal is {newest.seq} ({_short(newest.seal_hash)})"
    if found is not None:
        return f"the anchor has {anchored.describe()}, {found}: seals were removed"
    return None


# --- sealing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealResult:
    tenant_id: Chain
    seq: int
    range_start: datetime | None
    range_end: datetime
    row_count: int
    rows_digest: str
    seal_hash: str
    key_id: str

    def line(self) -> str:
        since = f"after {_ts(self.range_start)}" if self.range_start else "from the first row"
        return (
            f"{chain_label(self.tenant_id)}: sealed {self.row_count} rows {since} up to {_ts(self.range_end)}"
            f" as seal {self.seq} (seal_hash {self.seal_hash[:16]}…, key {self.key_id})"
        )

    def head(self) -> ChainHead:
        return ChainHead(self.tenant_id, self.seq, self.seal_hash, self.row_count, self.range_end)


@dataclass(frozen=True)
class SealRefusal:
    tenant_id: Chain
    reason: str

    def line(self) -> str:
        return f"{chain_label(self.tenant_id)}: refused to seal: {self.reason}"


@dataclass(frozen=True)
class SealRun:
    """What one sealing transaction did. `to_anchor` must be appended to the anchor once the
    transaction has committed (never before: a seal that did not commit must not be anchored)."""

    sealed: tuple[SealResult, ...]
    to_anchor: tuple[ChainHead, ...]  # each chain's newest seal, where the anchor lacks it
    refused: tuple[SealRefusal, ...]


def _check_extends(conn: Connection, public_key_raw: bytes, tenant_id: Chain, anchored: AnchorRecord | None) -> None:
    """Raises SealRefused unless the database's chain extends its anchored head: the seal at the
    anchored seq is the anchored one, and every seal after it links, recomputes and verifies.

    Without an anchored head (a chain never anchored) every seal of the chain is checked once;
    after that only the seals since the head are, normally none.
    """
    prev: _Seal | None = None
    if anchored is not None:
        a = anchored.head
        at = _seal_at(conn, tenant_id, a.seq)
        if at is None:
            gap = _anchor_gap(conn, tenant_id, anchored, _newest_seal(conn, tenant_id))
            raise SealRefused(f"the database does not reach the anchored head: {gap}")
        fields = seal_hash_of(
            tenant_id, at.seq, at.range_start, at.range_end, at.row_count, at.rows_digest, at.prev_hash
        )
        if at.seal_hash != a.seal_hash or fields != at.seal_hash:
            raise SealRefused(
                f"seal {a.seq} in the database ({_short(at.seal_hash)}) is not the anchored one:"
                f" the anchor has {anchored.describe()}"
            )
        prev = at
    key_id = key_id_of(public_key_raw)
    expected = (prev.seq if prev else 0) + 1
    for s in _seals(conn, tenant_id, after=expected - 1):
        problem = _seal_problem(s, tenant_id, expected, prev, public_key_raw, key_id)
        if problem is not None:
            raise SealRefused(f"seal {s.seq}, not yet anchored, does not verify: {problem}")
        prev = s
        expected += 1


def _seal_new_rows(
    conn: Connection, signer: Signer, tenant_id: Chain, last: _Seal | None, lag: timedelta
) -> SealResult | None:
    cutoff: datetime = conn.execute(text("SELECT now() - :lag"), {"lag": lag}).scalar_one()
    range_start: datetime | None = last.range_end if last else None
    if range_start is not None and cutoff <= range_start:
        return None  # another sealer, whose transaction began after ours, already went further

    digest = hashlib.sha256()
    count = 0
    sql = _rows_sql(tenant_id, lower=range_start is not None, upper=True, recompute=False)
    for row in _stream(conn, sql, {"tenant": tenant_id, "lower": range_start, "upper": cutoff}):
        digest.update(row.row_hash.encode("ascii"))
        count += 1
    if count == 0:
        return None

    seq = (last.seq + 1) if last else 1
    prev_hash = last.seal_hash if last else GENESIS_HASH
    rows_digest = digest.hexdigest()
    # range_end is the cutoff, not the newest row's time: the seal also asserts that nothing else
    # was written up to the cutoff, so a row back-dated into that gap later is caught as well.
    seal_hash = seal_hash_of(tenant_id, seq, range_start, cutoff, count, rows_digest, prev_hash)
    conn.execute(
        text(
            "INSERT INTO audit.audit_seals (tenant_id, seq, range_start, range_end, row_count, rows_digest,"
            " prev_hash, seal_hash, key_id, signature)"
            " VALUES (:tenant, :seq, :start, :end, :count, :digest, :prev, :hash, :key_id, :sig)"
        ),
        {
            "tenant": tenant_id,
            "seq": seq,
            "start": range_start,
            "end": cutoff,
            "count": count,
            "digest": rows_digest,
            "prev": prev_hash,
            "hash": seal_hash,
            "key_id": signer.key_id,
            "sig": signer.sign(_signed_message(seal_hash)),
        },
    )
    return SealResult(tenant_id, seq, range_start, cutoff, count, rows_digest, seal_hash, signer.key_id)


def seal_chain(
    conn: Connection,
    signer: Signer,
    tenant_id: Chain,
    *,
    anchored: AnchorRecord | None,
    lag: timedelta = DEFAULT_LAG,
) -> tuple[SealResult | None, ChainHead | None]:
    """Seal one chain's rows written since its last seal and older than `lag`.

    Returns the new seal (None if there were no such rows) and the chain's newest seal if the
    anchor does not hold it yet (the new one, or one whose anchoring an earlier run could not
    finish). Raises SealRefused, before signing anything, when the chain does not extend
    `anchored`, the head the anchor holds for it.

    The lag is what makes a seal final: a row's "timestamp" is its transaction's start (set by the
    database, migration 0008), and it becomes visible only at commit, so rows of transactions still
    in flight could otherwise land in a range already sealed. Service transactions are short
    (statement_timeout 5 s), so two minutes is far beyond any of them.
    """
    if lag < timedelta(0):
        raise AuditChainError("the sealing lag cannot be negative")
    _lock_chain(conn, tenant_id)
    # Read after the lock, in a new READ COMMITTED snapshot: a sealer we waited for has committed
    # its seal by now and we continue from it instead of colliding on its seq.
    _check_extends(conn, signer.public_raw, tenant_id, anchored)
    last = _newest_seal(conn, tenant_id)
    result = _seal_new_rows(conn, signer, tenant_id, last, lag)
    newest = result.head() if result is not None else last.head(tenant_id) if last is not None else None
    if newest is None or (anchored is not None and newest.seq <= anchored.head.seq):
        return result, None
    return result, newest


def seal(
    conn: Connection,
    signer: Signer,
    *,
    anchored: AnchorState,
    lag: timedelta = DEFAULT_LAG,
    tenant_id: str | None = None,
    operator: bool = False,
) -> SealRun:
    """Seal every chain with new rows (or only `tenant_id`, or only the operator chain).

    `anchored` is the anchor as read with the signer's public key, before this transaction or in
    it (an older read only makes the check weaker, never wrong). A chain that does not extend its
    anchored head is refused and left alone; the others are sealed.

    Runs in the caller's transaction (READ COMMITTED); each chain's advisory lock is held until
    that transaction ends. The caller commits, then appends `to_anchor` to the anchor.
    """
    if _isolation(conn) != "read committed":
        raise AuditChainError("sealing needs a READ COMMITTED transaction (see store/audit_chain.py)")
    sealed: list[SealResult] = []
    to_anchor: list[ChainHead] = []
    refused: list[SealRefusal] = []
    for chain in _select_chains(conn, tenant_id, operator, anchored):
        try:
            result, head = seal_chain(conn, signer, chain, anchored=anchored.heads.get(chain), lag=lag)
        except SealRefused as exc:
            refused.append(SealRefusal(chain, str(exc)))
            continue
        if result is not None:
            sealed.append(result)
        if head is not None:
            to_anchor.append(head)
    return SealRun(tuple(sealed), tuple(to_anchor), tuple(refused))


# --- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokenLink:
    """The first place a chain is broken: a seal (by seq) or a row (by id and time), never contents."""

    problem: str
    seal_seq: int | None = None
    row_id: str | None = None
    row_timestamp: datetime | None = None

    def __str__(self) -> str:
        if self.row_id is not None:
            where = f"row {self.row_id} at {_ts(self.row_timestamp)}"
            where += f" (in seal {self.seal_seq})" if self.seal_seq is not None else " (not yet sealed)"
            return f"{where}: {self.problem}"
        return f"seal {self.seal_seq}: {self.problem}"


@dataclass(frozen=True)
class ChainReport:
    tenant_id: Chain
    seals: int  # seals verified before the break (all of them when intact: the newest seq)
    sealed_rows: int
    unsealed_rows: int  # rows after the last seal, hash-checked but not yet covered by a seal
    broken: BrokenLink | None = None
    anchored_seq: int | None = None  # the anchor's head for this chain; None if it holds none

    @property
    def unanchored(self) -> str | None:
        """The intact chain's seals the anchor does not hold, or None."""
        start = self.anchored_seq or 0
        if self.broken is not None or self.seals <= start:
            return None
        span = f"seal {self.seals}" if self.seals == start + 1 else f"seals {start + 1}..{self.seals}"
        head = f"its head for this chain is seal {start}" if start else "it holds no seal of this chain"
        return (
            f"{span} not in the anchor ({head}): the anchor lost records, or a sealing run could not"
            " append them; the next `praneya audit seal` anchors them"
        )

    @property
    def ok(self) -> bool:
        return self.broken is None and self.unanchored is None

    def line(self) -> str:
        label = chain_label(self.tenant_id)
        if self.broken is not None:
            return f"{label}: BROKEN at {self.broken}"
        if self.unanchored is not None:
            return f"{label}: NOT ANCHORED: {self.unanchored}"
        anchored = ", newest seal anchored" if self.seals else ""
        return (
            f"{label}: OK ({self.seals} seals covering {self.sealed_rows} rows,"
            f" {self.unsealed_rows} rows not yet sealed{anchored})"
        )


@dataclass(frozen=True)
class VerifyReport:
    chains: tuple[ChainReport, ...]
    anchor: AnchorState

    @property
    def ok(self) -> bool:
        return self.anchor.ok and all(c.ok for c in self.chains)

    def anchor_lines(self) -> list[str]:
        a = self.anchor
        lines = [f"anchor {a.location}: {a.records} records, heads of {len(a.heads)} chains"]
        lines += [f"anchor {a.location}: {p}" for p in a.problems]
        return lines


def _digest_problem(s: _Seal, found: int, digest: str) -> str | None:
    if found == s.row_count and digest == s.rows_digest:
        return None
    span = f"rows after {_ts(s.range_start)}" if s.range_start else "rows"
    span += f" up to {_ts(s.range_end)}"
    diff = found - s.row_count
    if diff < 0:
        what = f"{-diff} row{'s' if diff < -1 else ''} missing"
    elif diff > 0:
        what = f"{diff} row{'s' if diff > 1 else ''} added"
    else:
        what = "rows changed or replaced"
    return f"{what} in {span} (digest mismatch, expected {s.row_count} rows, found {found})"


def verify_chain(
    conn: Connection, public_key_raw: bytes, tenant_id: Chain, anchored: AnchorRecord | None = None
) -> ChainReport:
    """Walk one chain in order, seals and rows together, and stop at the first broken link.

    For each row: the stored row_hash equals the hash recomputed from its content (an edited
    row). For each seal, in seq order: seq contiguous from 1, prev_hash links to the previous
    seal, seal_hash recomputes, the signature verifies, the range continues the previous one,
    the seal at the anchored seq is the anchored one, then the rows now in its range (both
    tables) digest and count to what was sealed (a deleted, inserted or replaced row). After the
    seals: the database reaches the anchored head (newest seals deleted, a chain gone). Memory is
    flat: rows stream, seals come in pages.
    """
    key_id = key_id_of(public_key_raw)
    anchored_seq = anchored.head.seq if anchored is not None else None
    rows = _stream(conn, _rows_sql(tenant_id, lower=False, upper=False, recompute=True), {"tenant": tenant_id})
    try:
        pending = next(rows, None)
        prev: _Seal | None = None
        verified = sealed_rows = 0

        def report(broken: BrokenLink | None, unsealed: int = 0) -> ChainReport:
            return ChainReport(tenant_id, verified, sealed_rows, unsealed, broken, anchored_seq)

        for s in _seals(conn, tenant_id):
            problem = _seal_problem(s, tenant_id, verified + 1, prev, public_key_raw, key_id)
            if problem is None and anchored is not None and s.seq == anchored.head.seq:
                if s.seal_hash != anchored.head.seal_hash:
                    problem = (
                        f"not the anchored seal: the anchor has {anchored.describe()},"
                        f" the database {_short(s.seal_hash)}"
                    )
            if problem is not None:
                return report(BrokenLink(problem, seal_seq=s.seq))
            digest = hashlib.sha256()
            found = 0
            while pending is not None and pending.ts <= s.range_end:
                if pending.row_hash != pending.recomputed:
                    return report(
                        BrokenLink("row hash mismatch (edited after it was written)", s.seq, pending.id, pending.ts)
                    )
                # Stored hashes are hex; anything else was written by hand and cannot match.
                digest.update(pending.row_hash.encode("utf-8"))
                found += 1
                pending = next(rows, None)
            problem = _digest_problem(s, found, digest.hexdigest())
            if problem is not None:
                return report(BrokenLink(problem, seal_seq=s.seq))
            verified += 1
            sealed_rows += found
            prev = s
        if anchored is not None:
            gap = _anchor_gap(conn, tenant_id, anchored, prev)
            if gap is not None:
                return report(BrokenLink(gap, seal_seq=anchored.head.seq))
        unsealed = 0
        while pending is not None:
            if pending.row_hash != pending.recomputed:
                return report(
                    BrokenLink("row hash mismatch (edited after it was written)", None, pending.id, pending.ts),
                    unsealed,
                )
            unsealed += 1
            pending = next(rows, None)
        return report(None, unsealed)
    finally:
        rows.close()


def verify(
    conn: Connection,
    public_key_raw: bytes,
    anchor: AnchorStore,
    *,
    tenant_id: str | None = None,
    operator: bool = False,
) -> VerifyReport:
    """Verify every chain (or one tenant's, or the operator chain) against the sealing public key
    and the anchor: every chain the database or the anchor knows, each required to reach its
    anchored head and to have its newest seal anchored.

    Must be the first query of a REPEATABLE READ (or SERIALIZABLE) transaction: one snapshot for
    seals and rows, taken while the anchor is held shared, after reading it. A sealer holds it
    exclusively from before its commit until it has appended, so every seal this snapshot sees was
    anchored by then (or its anchoring failed), and every anchored seal is visible.
    """
    with anchor.holding(exclusive=False):
        anchored = anchor.heads(public_key_raw)
        if _isolation(conn) not in ("repeatable read", "serializable"):  # takes the snapshot
            raise AuditChainError(
                "verification needs a REPEATABLE READ transaction, so seals and rows come from one snapshot"
            )
    chains: Sequence[Chain] = _select_chains(conn, tenant_id, operator, anchored)
    return VerifyReport(
        tuple(verify_chain(conn, public_key_raw, c, anchored.heads.get(c)) for c in chains),
        anchored,
    )

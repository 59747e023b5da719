"""The audit anchor: every chain head `praneya audit seal` signs, also kept outside the database.

Seals live in the database they protect, so someone with database access alone (a superuser, the
owner role, a restored older dump) could delete the newest seals, edit the rows they covered and
present a shorter chain that still verifies. The anchor remembers how far each chain had got: after
each sealing run commits, the sealer appends one record per chain whose newest seal the anchor does
not hold yet. `verify` then requires the database to reach every anchored head, and `seal` refuses
to sign a chain that does not extend its anchored head.

A record is one line of compact JSON, keys sorted, ASCII only:

    {"anchored_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "format": "praneya-audit-anchor-v1",
     "key_id": "ed25519:…", "n": 12, "range_end": "…Z", "row_count": 3, "seal_hash": "<hex>",
     "seq": 5, "signature": "<base64>", "tenant_id": "t-1" or null (the operator chain)}

    signature = Ed25519( ANCHOR_DOMAIN || the same JSON without "signature" )

`n` numbers the records of one anchor 1, 2, 3, … so a record taken out of the middle, reordered
or copied in from another anchor shows as a gap; a record is never rewritten. The head of a chain
is its valid record with the highest seq.

What an attacker who can write the anchor but not the database (and has no signing key) can do:
append lines (they fail their signature: verify reports them), remove lines from the middle (a gap
in n: verify reports it), remove lines from the end or the whole file (every chain whose newest
seal is then no longer anchored is reported by verify, until the next `audit seal` anchors the
database's heads again, which it does only for seals that verify and extend what is still
anchored). They cannot make verify accept a database that was rolled back, nor hide anything the
database still holds. Both stores at once is outside what this detects.

AnchorStore is the interface a witness implements (a second host, object storage with object
lock, a transparency log); FileAnchor is the default, a local append-only file.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from store.signing import Signer, key_id_of, verify_signature

__all__ = [
    "ANCHOR_DOMAIN",
    "ANCHOR_ENV",
    "ANCHOR_FORMAT",
    "AnchorRecord",
    "AnchorState",
    "AnchorStore",
    "ChainHead",
    "FileAnchor",
    "anchor_path",
    "chain_label",
    "read_records",
    "record_line",
]

ANCHOR_FORMAT: Final = "praneya-audit-anchor-v1"
# Its own domain tag: the same key signs seals and evaluation results, and a record must never be
# mistaken for either.
ANCHOR_DOMAIN: Final = b"praneya-audit-anchor-v1\x00"
ANCHOR_ENV: Final = "PRANEYA_AUDIT_ANCHOR"
_FIELDS: Final = frozenset(
    {"anchored_at", "format", "key_id", "n", "range_end", "row_count", "seal_hash", "seq", "signature", "tenant_id"}
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"

Chain = str | None  # a tenant id, or None for the operator chain


def chain_label(tenant_id: Chain) -> str:
    return f"tenant {tenant_id}" if tenant_id is not None else "operator (no tenant)"


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime(_TS_FORMAT)


@dataclass(frozen=True)
class ChainHead:
    """A chain's newest seal, as the sealer hands it to the anchor."""

    tenant_id: Chain
    seq: int
    seal_hash: str
    row_count: int
    range_end: datetime


@dataclass(frozen=True)
class AnchorRecord:
    n: int
    head: ChainHead
    anchored_at: datetime
    key_id: str

    def describe(self) -> str:
        return f"seal {self.head.seq} (seal_hash {self.head.seal_hash[:16]}…, anchored {_ts(self.anchored_at)})"


@dataclass(frozen=True)
class AnchorState:
    """What an anchor holds, read with one public key: the head of each chain and what is wrong."""

    location: str
    records: int  # valid records
    last_n: int  # the highest n among them (0 when empty)
    heads: Mapping[Chain, AnchorRecord]
    problems: tuple[str, ...] = ()  # lines that are not valid records, gaps in n

    @property
    def ok(self) -> bool:
        return not self.problems


class AnchorStore(Protocol):
    """Where the signed chain heads are kept, outside the database.

    An implementation appends records and never rewrites or removes one. `holding` is the store's
    lock: the sealer holds it exclusively from just before its commit until its records are
    appended, verify holds it shared while it reads the heads and takes its database snapshot, so
    verify never sees a seal that is committed but not yet anchored. A store that cannot lock may
    yield without locking; verify may then, rarely, report a seal committed a moment ago as not
    anchored (run it again).
    """

    @property
    def location(self) -> str: ...

    def holding(self, *, exclusive: bool) -> AbstractContextManager[None]: ...

    def heads(self, public_key_raw: bytes) -> AnchorState: ...

    def append(self, heads: Sequence[ChainHead], signer: Signer) -> list[AnchorRecord]: ...


# --- the record format -----------------------------------------------------------------------


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _body(n: int, head: ChainHead, anchored_at: datetime, key_id: str) -> dict[str, Any]:
    return {
        "anchored_at": _ts(anchored_at),
        "format": ANCHOR_FORMAT,
        "key_id": key_id,
        "n": n,
        "range_end": _ts(head.range_end),
        "row_count": head.row_count,
        "seal_hash": head.seal_hash,
        "seq": head.seq,
        "tenant_id": head.tenant_id,
    }


def record_line(n: int, head: ChainHead, signer: Signer, anchored_at: datetime | None = None) -> bytes:
    """One signed record, newline included."""
    body = _body(n, head, anchored_at or datetime.now(UTC), signer.key_id)
    signature = signer.sign(ANCHOR_DOMAIN + _canonical(body))
    return _canonical({**body, "signature": base64.b64encode(signature).decode("ascii")}) + b"\n"


def _is_int(value: object) -> bool:
    return type(value) is int  # JSON true/false are bools, which isinstance(…, int) would accept


def _parse(raw: bytes, public_key_raw: bytes, key_id: str) -> AnchorRecord | str:
    """The record on one line, or what is wrong with it."""
    try:
        doc = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return "not a JSON record"
    if not isinstance(doc, dict) or set(doc) != _FIELDS or doc["format"] != ANCHOR_FORMAT:
        return f"not a {ANCHOR_FORMAT} record"
    tenant_id = doc["tenant_id"]
    if not (
        _is_int(doc["n"])
        and doc["n"] >= 1
        and _is_int(doc["seq"])
        and doc["seq"] >= 1
        and _is_int(doc["row_count"])
        and (tenant_id is None or isinstance(tenant_id, str))
        and isinstance(doc["seal_hash"], str)
        and _HEX64.fullmatch(doc["seal_hash"])
        and all(isinstance(doc[k], str) for k in ("anchored_at", "range_end", "key_id", "signature"))
    ):
        return "a field has the wrong type"
    if doc["key_id"] != key_id:
        return f"bad signature (signed with key {doc['key_id']}, verifying with {key_id})"
    try:
        signature = base64.b64decode(doc.pop("signature"), validate=True)
    except (binascii.Error, ValueError):
        return "bad signature (not base64)"
    if not verify_signature(public_key_raw, ANCHOR_DOMAIN + _canonical(doc), signature):
        return "bad signature"
    try:
        anchored_at = datetime.strptime(doc["anchored_at"], _TS_FORMAT).replace(tzinfo=UTC)
        range_end = datetime.strptime(doc["range_end"], _TS_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return "a timestamp is malformed"
    head = ChainHead(tenant_id, doc["seq"], doc["seal_hash"], doc["row_count"], range_end)
    return AnchorRecord(doc["n"], head, anchored_at, doc["key_id"])


def read_records(lines: Iterable[bytes], public_key_raw: bytes, location: str) -> AnchorState:
    """Checks every line (signature, format, n in sequence) and keeps each chain's newest head.

    `lines` are the anchor's lines without their newline; an empty last line is what a final newline
    leaves. Invalid lines are reported and never count as heads.
    """
    key_id = key_id_of(public_key_raw)
    heads: dict[Chain, AnchorRecord] = {}
    seen: dict[tuple[Chain, int], str] = {}
    problems: list[str] = []
    records = last_n = 0
    items = list(lines)
    if items and items[-1] == b"":
        items.pop()
    for number, raw in enumerate(items, 1):
        parsed = _parse(raw, public_key_raw, key_id)
        if isinstance(parsed, str):
            problems.append(f"line {number}: {parsed}")
            continue
        if parsed.n != last_n + 1:
            problems.append(
                f"line {number}: record {parsed.n} where record {last_n + 1} was expected"
                " (records removed, reordered or copied in)"
            )
        records += 1
        last_n = max(last_n, parsed.n)
        head = parsed.head
        earlier = seen.setdefault((head.tenant_id, head.seq), head.seal_hash)
        if earlier != head.seal_hash:
            problems.append(f"line {number}: {chain_label(head.tenant_id)} seal {head.seq} anchored twice, differently")
        current = heads.get(head.tenant_id)
        if current is None or head.seq > current.head.seq:
            heads[head.tenant_id] = parsed
    return AnchorState(location, records, last_n, heads, tuple(problems))


# --- the local file --------------------------------------------------------------------------


def anchor_path(database_name: str, environ: Mapping[str, str] | None = None) -> Path:
    """The anchor file for a database: PRANEYA_AUDIT_ANCHOR, else .local/audit-anchor/<database>.jsonl.

    PRANEYA_AUDIT_ANCHOR names the file, or a directory (it exists, or the value ends with "/") that
    holds one file per database name. One anchor per database: a recreated database starts an anchor
    of its own, or its empty chains would read as a rollback of the old one's.
    """
    from store.config import PROJECT_ROOT

    env = os.environ if environ is None else environ
    file_name = re.sub(r"[^A-Za-z0-9._-]", "_", database_name or "praneya") + ".jsonl"
    configured = env.get(ANCHOR_ENV)
    if not configured:
        return PROJECT_ROOT / ".local" / "audit-anchor" / file_name
    path = Path(configured).expanduser()
    if configured.endswith(("/", os.sep)) or path.is_dir():
        return path / file_name
    return path


class FileAnchor:
    """An append-only file of records on the sealer's host (not the database's).

    Created with mode 0600 in a directory created 0700; written only with O_APPEND, one fsync'd
    write per sealing run, under an exclusive flock; never truncated or rewritten by this code.
    Keep it off the database host (README, "Tamper evidence"). One instance is not for sharing
    between threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._exclusive = False

    @property
    def location(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"FileAnchor({self.location!r})"

    def _open_for_append(self) -> int:
        created_dir = not self.path.parent.exists()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if created_dir:
            _fsync_dir(self.path.parent)
        return fd

    @contextmanager
    def holding(self, *, exclusive: bool) -> Iterator[None]:
        """The anchor's flock, re-entrant within this instance (a second flock on another open of
        the same file would wait for the first)."""
        if self._fd is not None:
            if exclusive and not self._exclusive:
                raise RuntimeError("the anchor is held shared; cannot take it exclusively inside")
            yield
            return
        if exclusive:
            fd = self._open_for_append()
        else:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                # No anchor yet, so nothing to lock. Only a first sealing run creating it right now
                # could race this verifier (its seals may show as not anchored: verify again).
                yield
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            self._fd, self._exclusive = fd, exclusive
            yield
        finally:
            self._fd, self._exclusive = None, False
            os.close(fd)  # releases the lock

    def _lines(self) -> list[bytes]:
        try:
            return self.path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return []

    def heads(self, public_key_raw: bytes) -> AnchorState:
        with self.holding(exclusive=False):
            lines = self._lines()
        return read_records(lines, public_key_raw, self.location)

    def append(self, heads: Sequence[ChainHead], signer: Signer) -> list[AnchorRecord]:
        if not heads:
            return []
        with self.holding(exclusive=True):
            assert self._fd is not None
            lines = self._lines()
            state = read_records(lines, signer.public_raw, self.location)
            now = datetime.now(UTC)
            # A last line without its newline (a write cut short, or an edit) stays a line of its
            # own, reported by verify, instead of swallowing the first new record.
            data = b"" if not lines or lines[-1] == b"" else b"\n"
            written = []
            for i, head in enumerate(heads, state.last_n + 1):
                data += record_line(i, head, signer, now)
                written.append(AnchorRecord(i, head, now, signer.key_id))
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        return written


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

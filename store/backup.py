"""Encrypted backups: `pg_dump --format=custom` streamed through AES-256-GCM, and the way back.

The dump never touches the disk in clear: pg_dump's stdout is read in chunks, each chunk sealed and
written, so memory stays at a few chunks whatever the database size. A random data key per backup
is wrapped by the key provider (the same master key that wraps the tenants' data keys), so a backup
is exactly as readable as the live database and no more.

File format (version 1), all integers big-endian::

    magic "PRNYBKUP" | u16 format version | u32 header length | header (UTF-8 JSON)
    record*          : u8 kind | u32 length | AES-256-GCM ciphertext+tag
        kind 'C' a data chunk, 'F' the final data chunk (exactly one, possibly empty), 'T' the trailer
    trailer plaintext: u64 chunk count | u64 plaintext bytes | SHA-256 of the plaintext stream
    end of file right after the trailer

The header holds the backup id, the wrapped data key, the id (a fingerprint) of the master key that
wrapped it, the nonce prefix, created_at, the database name, pg_dump's version and the chunk size;
no secrets. Record i is sealed with nonce = 4-byte random prefix || u64 i, and associated data
binding the SHA-256 of the whole header (so the backup id and every header field), i, and the kind:
a record moved to another position, a chunk spliced in from another backup, a final chunk turned
into an ordinary one (or the file cut after any chunk) and an edited header all fail to authenticate.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from store.config import sqlalchemy_url
from store.crypto import KeyProvider

__all__ = [
    "APP_SCHEMAS",
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "BackupError",
    "BackupHeader",
    "BackupKeyError",
    "BackupSummary",
    "Progress",
    "create_backup",
    "decrypt_stream",
    "encrypt_stream",
    "read_backup_header",
    "restore_backup",
    "verify_backup",
]

MAGIC = b"PRNYBKUP"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 1024 * 1024
# Bounds on what a file may claim, so a damaged or hostile file cannot make us allocate gigabytes.
_MIN_CHUNK, _MAX_CHUNK = 4096, 64 * 1024 * 1024
_MAX_HEADER = 64 * 1024
_TAG = 16
_PREFIX = struct.Struct(">8sHI")  # magic, format version, header length
_RECORD = struct.Struct(">cI")  # kind, length
_TRAILER = struct.Struct(">QQ32s")  # chunk count, plaintext bytes, sha-256
KIND_CHUNK, KIND_FINAL, KIND_TRAILER = b"C", b"F", b"T"
# The schemas the application owns; a restore target with anything in them is not empty.
APP_SCHEMAS = ("public", "healthcare", "audit", "clinical")

Progress = Callable[[str, int], None]
"""Called as progress(phase, plaintext bytes so far); phase is "backup", "verify" or "restore"."""

Reader = Callable[[int], bytes]
Writer = Callable[[bytes], Any]


class BackupError(RuntimeError):
    """A backup or restore failed; the message says why and what was (not) written. Never data."""


class BackupKeyError(BackupError):
    """The configured master key cannot unwrap the backup's data key."""


@dataclass(frozen=True)
class BackupHeader:
    backup_id: str
    master_key_id: str
    wrapped_key: bytes
    nonce_prefix: bytes
    created_at: str
    database: str
    pg_dump_version: str
    chunk_size: int

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "backup_id": self.backup_id,
                "cipher": "AES-256-GCM",
                "master_key_id": self.master_key_id,
                "wrapped_key": base64.b64encode(self.wrapped_key).decode("ascii"),
                "nonce_prefix": base64.b64encode(self.nonce_prefix).decode("ascii"),
                "created_at": self.created_at,
                "database": self.database,
                "pg_dump_version": self.pg_dump_version,
                "chunk_size": self.chunk_size,
            },
            sort_keys=True,
        ).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> BackupHeader:
        try:
            d = json.loads(raw.decode("utf-8"))
            header = cls(
                backup_id=str(d["backup_id"]),
                master_key_id=str(d["master_key_id"]),
                wrapped_key=base64.b64decode(d["wrapped_key"], validate=True),
                nonce_prefix=base64.b64decode(d["nonce_prefix"], validate=True),
                created_at=str(d["created_at"]),
                database=str(d["database"]),
                pg_dump_version=str(d["pg_dump_version"]),
                chunk_size=int(d["chunk_size"]),
            )
            cipher = d["cipher"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise BackupError("the backup header is damaged (not the expected JSON)") from None
        if cipher != "AES-256-GCM" or len(header.nonce_prefix) != 4:
            raise BackupError("the backup header names an unknown cipher or nonce layout")
        if not _MIN_CHUNK <= header.chunk_size <= _MAX_CHUNK:
            raise BackupError(f"the backup header claims a chunk size of {header.chunk_size} bytes, out of range")
        return header


@dataclass(frozen=True)
class BackupSummary:
    header: BackupHeader
    chunks: int
    plaintext_bytes: int
    sha256: str
    path: Path | None = None
    file_bytes: int | None = None


def _wrap_context(backup_id: str) -> bytes:
    # Binds the wrapped data key to this backup: a key block pasted from another backup's header
    # does not unwrap.
    return f"praneya-backup-key|{backup_id}".encode()


def _aad(header_digest: bytes, index: int, kind: bytes) -> bytes:
    return b"praneya-backup|v1|" + header_digest + index.to_bytes(8, "big") + kind


def _nonce(prefix: bytes, index: int) -> bytes:
    # Deterministic per record, unique within the backup (one key per backup, counter never repeats).
    return prefix + index.to_bytes(8, "big")


def _read_full(read: Reader, n: int) -> bytes:
    """Up to n bytes; fewer only at end of stream (pipes and sockets may return short reads)."""
    first = read(n)
    if len(first) == n or not first:
        return first
    parts = [first]
    got = len(first)
    while got < n:
        more = read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _read_exact(read: Reader, n: int, what: str) -> bytes:
    data = _read_full(read, n)
    if len(data) != n:
        raise BackupError(f"the backup ends early (inside {what}): the file is truncated")
    return data


def _emit(progress: Progress | None, phase: str, done: int) -> None:
    if progress is not None:
        progress(phase, done)


# --- the stream format -------------------------------------------------------------------------


def encrypt_stream(
    read: Reader,
    write: Writer,
    provider: KeyProvider,
    *,
    database: str,
    pg_dump_version: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> BackupSummary:
    """Reads plaintext until end of stream and writes the sealed backup. Holds about three chunks."""
    if not _MIN_CHUNK <= chunk_size <= _MAX_CHUNK:
        raise BackupError(f"chunk size must be between {_MIN_CHUNK} and {_MAX_CHUNK} bytes")
    backup_id = str(uuid.uuid4())
    data_key = AESGCM.generate_key(bit_length=256)
    header = BackupHeader(
        backup_id=backup_id,
        master_key_id=provider.master_key_id,
        wrapped_key=provider.wrap(data_key, _wrap_context(backup_id)),
        nonce_prefix=os.urandom(4),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        database=database,
        pg_dump_version=pg_dump_version,
        chunk_size=chunk_size,
    )
    body = header.to_json()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(body)) + body
    digest = hashlib.sha256(prefix).digest()
    write(prefix)
    aead = AESGCM(data_key)
    plain_hash = hashlib.sha256()
    total = 0
    index = 0

    def seal(kind: bytes, plaintext: bytes) -> None:
        sealed = aead.encrypt(_nonce(header.nonce_prefix, index), plaintext, _aad(digest, index, kind))
        write(_RECORD.pack(kind, len(sealed)))
        write(sealed)

    # One chunk of look-ahead: the last chunk must be sealed as final, and only the next read says
    # whether there is more.
    pending = _read_full(read, chunk_size)
    while True:
        following = _read_full(read, chunk_size) if len(pending) == chunk_size else b""
        kind = KIND_CHUNK if following else KIND_FINAL
        plain_hash.update(pending)
        total += len(pending)
        seal(kind, pending)
        index += 1
        _emit(progress, "backup", total)
        if kind == KIND_FINAL:
            break
        pending = following
    sha = plain_hash.digest()
    seal(KIND_TRAILER, _TRAILER.pack(index, total, sha))
    return BackupSummary(header, index, total, sha.hex())


def _read_prefix(read: Reader) -> tuple[BackupHeader, bytes]:
    head = _read_full(read, _PREFIX.size)
    if len(head) < _PREFIX.size or head[:8] != MAGIC:
        raise BackupError("not a praneya backup (the file does not start with the backup magic)")
    _, version, length = _PREFIX.unpack(head)
    if version != FORMAT_VERSION:
        raise BackupError(f"backup format version {version} is not supported (this build reads {FORMAT_VERSION})")
    if length > _MAX_HEADER:
        raise BackupError("the backup header is damaged (implausible length)")
    body = _read_exact(read, length, "the header")
    return BackupHeader.from_json(body), hashlib.sha256(head + body).digest()


def _unwrap(header: BackupHeader, provider: KeyProvider) -> bytes:
    if header.master_key_id != provider.master_key_id:
        raise BackupKeyError(
            f"this backup was made with master key {header.master_key_id}; the configured key"
            f" {provider.master_key_id} cannot unwrap it. Point PRANEYA_MASTER_KEY_FILE at the key"
            " the backup was made with (after a master key rotation, keep the old key file for old backups)"
        )
    try:
        key = provider.unwrap(header.wrapped_key, _wrap_context(header.backup_id))
    except Exception:  # noqa: BLE001 - any provider failure (local file or KMS) means the same thing here
        raise BackupKeyError(
            f"the backup's data key does not unwrap with master key {provider.master_key_id}"
            " although the ids match: the header was altered or the file is damaged"
        ) from None
    if len(key) != 32:
        raise BackupKeyError("the backup's data key has the wrong length: the header was altered")
    return key


def decrypt_stream(
    read: Reader,
    write: Writer,
    provider: KeyProvider,
    *,
    phase: str = "verify",
    progress: Progress | None = None,
) -> BackupSummary:
    """Authenticates every record before handing its plaintext to write; fails on any change.

    A failure can come after earlier chunks were written: callers that feed a consumer which acts
    on data (pg_restore) must be able to undo it (a single transaction), or verify first. The final
    chunk is held back until the trailer checks out, so a consumer never sees the end of the stream
    (and pg_restore never reaches COMMIT) before the whole file has been authenticated. The encoder
    seals an empty final chunk only for an empty stream, so the held chunk always carries the end.
    """
    header, digest = _read_prefix(read)
    aead = AESGCM(_unwrap(header, provider))
    limit = header.chunk_size + _TAG
    plain_hash = hashlib.sha256()
    total = 0
    index = 0
    final_seen = False
    held = b""
    while True:
        raw = _read_full(read, _RECORD.size)
        if not raw:
            what = "the trailer" if final_seen else f"the data (after chunk {index}, no final chunk)"
            raise BackupError(f"the backup ends before {what}: the file is truncated")
        if len(raw) < _RECORD.size:
            raise BackupError(f"the backup ends inside record {index}: the file is truncated")
        kind, length = _RECORD.unpack(raw)
        if kind not in (KIND_CHUNK, KIND_FINAL, KIND_TRAILER) or length < _TAG or length > limit:
            raise BackupError(f"record {index} is damaged (bad kind or length): the file was altered")
        if (kind == KIND_TRAILER) != final_seen:
            raise BackupError(f"record {index} is out of place: the file was altered, cut or spliced")
        sealed = _read_exact(read, length, f"record {index}")
        try:
            plaintext = aead.decrypt(_nonce(header.nonce_prefix, index), sealed, _aad(digest, index, kind))
        except InvalidTag:
            raise BackupError(
                f"record {index} failed authentication: the file was altered, reordered, cut or spliced"
                " from another backup"
            ) from None
        if kind == KIND_TRAILER:
            break
        plain_hash.update(plaintext)
        total += len(plaintext)
        index += 1
        final_seen = kind == KIND_FINAL
        if final_seen:
            held = plaintext
        else:
            write(plaintext)
            _emit(progress, phase, total)
    # Everything was authenticated record by record; the trailer is the end-to-end cross-check.
    if len(plaintext) != _TRAILER.size:
        raise BackupError("the backup trailer is damaged")
    chunks, size, sha = _TRAILER.unpack(plaintext)
    if chunks != index or size != total or sha != plain_hash.digest():
        raise BackupError("the backup trailer does not match its data (chunk count, size or SHA-256)")
    if read(1):
        raise BackupError("the backup has bytes after its trailer: the file was altered")
    write(held)
    _emit(progress, phase, total)
    return BackupSummary(header, index, total, sha.hex())


def read_backup_header(path: Path) -> BackupHeader:
    with open(path, "rb") as f:
        return _read_prefix(f.read)[0]


# --- pg_dump and pg_restore --------------------------------------------------------------------


def _tool(name: str) -> str:
    # The server's own bindir first (pg_dump must be at least the server's version), then PATH.
    from store.provision import _server_bindir

    bindir = _server_bindir()
    if bindir is not None and (bindir / name).exists():
        return str(bindir / name)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools (postgresql-client-15)")
    return found


def _libpq_and_env(database_url: str) -> tuple[str, dict[str, str], str]:
    """A libpq URL without the password (argv is visible in ps), the environment carrying it, the db name."""
    url = sqlalchemy_url(database_url)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    clean = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return clean, env, url.database or ""


def _first_line(stream: IO[bytes]) -> str:
    stream.seek(0)
    for line in stream.read(4096).decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()
    return "(no message)"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_backup(
    database_url: str,
    out_path: Path,
    provider: KeyProvider,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> BackupSummary:
    """pg_dump of the whole database (schemas, data, policies, functions, grants), sealed to out_path.

    Written to a temporary file beside out_path and renamed at the end, so out_path is either a
    complete backup or absent.
    """
    pg_dump = _tool("pg_dump")
    version = subprocess.run([pg_dump, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    url, env, database = _libpq_and_env(database_url)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if out_path.exists():
        raise BackupError(f"{out_path} already exists; choose another --out")
    partial = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.partial")
    with tempfile.TemporaryFile() as errors:
        # stderr to a file, not a pipe: a chatty pg_dump must not block on a pipe nobody reads.
        proc = subprocess.Popen(
            [pg_dump, "--format=custom", "--no-password", "--dbname", url],
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert proc.stdout is not None
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                summary = encrypt_stream(
                    proc.stdout.read,
                    out.write,
                    provider,
                    database=database,
                    pg_dump_version=version,
                    chunk_size=chunk_size,
                    progress=progress,
                )
                out.flush()
                os.fsync(out.fileno())
            proc.stdout.close()
            # A pg_dump that failed half way still ends its stdout cleanly: only its exit status
            # says whether the stream is a whole dump.
            code = proc.wait()
            if code != 0:
                raise BackupError(f"pg_dump failed (exit {code}): {_first_line(errors)}; no backup was written")
            os.replace(partial, out_path)
            _fsync_dir(out_path.parent)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            partial.unlink(missing_ok=True)
            raise
    return BackupSummary(
        summary.header,
        summary.chunks,
        summary.plaintext_bytes,
        summary.sha256,
        out_path,
        out_path.stat().st_size,
    )


def verify_backup(in_path: Path, provider: KeyProvider, *, progress: Progress | None = None) -> BackupSummary:
    """Decrypts and authenticates the whole file without writing anything anywhere."""
    in_path = Path(in_path)
    try:
        with open(in_path, "rb") as f:
            summary = decrypt_stream(f.read, lambda _chunk: None, provider, phase="verify", progress=progress)
    except FileNotFoundError:
        raise BackupError(f"{in_path}: no such file") from None
    except BackupError as exc:
        raise type(exc)(f"{in_path}: {exc}") from None
    return BackupSummary(
        summary.header, summary.chunks, summary.plaintext_bytes, summary.sha256, in_path, in_path.stat().st_size
    )


def _refuse_non_empty(url: str, env: dict[str, str]) -> None:
    try:
        conn = psycopg.connect(url, password=env.get("PGPASSWORD"), connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or ["(no message)"])[-1]
        raise BackupError(f"cannot connect to the restore target (it must exist and be empty): {first}") from None
    with conn:
        # Objects that belong to an extension (pg_stat_statements views) are not the application's.
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
            " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass"
            "                 AND d.objid = c.oid AND d.deptype = 'e')"
            " ORDER BY 1 LIMIT 3",
            (list(APP_SCHEMAS),),
        ).fetchall()
        if rows:
            names = ", ".join(r[0] for r in rows)
            raise BackupError(
                f"the restore target is not empty (it has {names}, ...): restore only into a new, empty database"
            )
        schemas = conn.execute(
            "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s) AND nspname <> 'public' ORDER BY 1",
            (list(APP_SCHEMAS),),
        ).fetchall()
        if schemas:
            raise BackupError(
                f"the restore target is not empty (it has schema {schemas[0][0]}): restore only into a new, empty"
                " database"
            )


def _bootstrap_roles(database_url: str) -> None:
    # Roles are cluster-wide and not in a pg_dump: the owner and runtime roles must exist before
    # pg_restore assigns ownership and grants to them, exactly as the first migration creates them.
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from store.roles import bootstrap_roles

    engine = create_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            bootstrap_roles(conn)
    finally:
        engine.dispose()


class _RestoreToolExited(Exception):
    """pg_restore closed its input: it stopped early, its stderr says why."""


def restore_backup(
    in_path: Path,
    database_url: str,
    provider: KeyProvider,
    *,
    progress: Progress | None = None,
    verify_first: bool = True,
) -> BackupSummary:
    """Restores a backup into an existing, empty database, with the original owners, RLS and grants.

    Order: the master key must unwrap the header (nothing touched otherwise); with verify_first the
    whole file is authenticated before the target is touched; the target must be empty; roles are
    bootstrapped; then the decrypted stream goes into `pg_restore --single-transaction`, which is
    killed on any failure so the target keeps nothing of a half-read file.
    """
    in_path = Path(in_path)
    try:
        with open(in_path, "rb") as f:
            _unwrap(_read_prefix(f.read)[0], provider)
    except FileNotFoundError:
        raise BackupError(f"{in_path}: no such file") from None
    except BackupError as exc:
        raise type(exc)(f"{in_path}: {exc}; the target was not touched") from None
    if verify_first:
        try:
            verify_backup(in_path, provider, progress=progress)
        except BackupError as exc:
            raise type(exc)(f"{exc}; the target was not touched") from None
    url, env, _ = _libpq_and_env(database_url)
    _refuse_non_empty(url, env)
    _bootstrap_roles(database_url)
    pg_restore = _tool("pg_restore")
    with tempfile.TemporaryFile() as errors, open(in_path, "rb") as f:
        # With owners (no --no-owner): praneya_owner must own everything again, or forced RLS and
        # the grants to praneya_app would not mean what the migrations made them mean.
        proc = subprocess.Popen(
            [pg_restore, "--dbname", url, "--single-transaction", "--exit-on-error", "--no-password"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=env,
        )
        assert proc.stdin is not None
        stdin = proc.stdin

        def feed(chunk: bytes) -> None:
            try:
                stdin.write(chunk)
            except BrokenPipeError:
                raise _RestoreToolExited from None

        try:
            summary = decrypt_stream(f.read, feed, provider, phase="restore", progress=progress)
            stdin.close()
        except _RestoreToolExited:
            proc.wait()
            raise BackupError(
                f"pg_restore failed: {_first_line(errors)}; its single transaction was rolled back"
            ) from None
        except BaseException as exc:
            # Kill before closing its input: a cleanly closed pipe could let pg_restore reach COMMIT
            # with part of the data; a killed one drops its connection and the server rolls back.
            proc.kill()
            proc.wait()
            if isinstance(exc, BackupError):
                raise type(exc)(f"{in_path}: {exc}; pg_restore was stopped and nothing was restored") from None
            raise
        code = proc.wait()
        if code != 0:
            raise BackupError(
                f"pg_restore failed (exit {code}): {_first_line(errors)}; its single transaction was rolled back"
            )
    return BackupSummary(
        summary.header, summary.chunks, summary.plaintext_bytes, summary.sha256, in_path, in_path.stat().st_size
    )

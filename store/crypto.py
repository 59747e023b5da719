"""PHI encryption: envelope encryption with one data key per tenant and version, AES-256-GCM.

A key provider holds the master key and wraps/unwraps data keys; the database only ever stores
wrapped keys and ciphertexts. Every ciphertext's associated data binds it to tenant, table, column,
row id and key version, so a value copied to another row, column or tenant does not decrypt.

Ciphertext format (text, safe in any column): ``pv1.<key_version>.<base64url(nonce || ciphertext+tag)>``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "FORMAT",
    "DecryptionError",
    "KeyProvider",
    "KeyProviderError",
    "LocalKeyFileProvider",
    "TenantKeyring",
    "generate_master_key_file",
    "key_provider_from_env",
]

FORMAT = "pv1"
_NONCE = 12
MASTER_KEY_ENV = "PRANEYA_MASTER_KEY_FILE"


class KeyProviderError(RuntimeError):
    """The master key is missing, unreadable or wrong. Never carries key material."""


class DecryptionError(RuntimeError):
    """A ciphertext failed to decrypt. Names where it lives, never what it holds."""

    def __init__(self, table: str, column: str, row_id: str, reason: str) -> None:
        super().__init__(f"cannot decrypt {table}.{column} of row {row_id}: {reason}")
        self.table = table
        self.column = column
        self.row_id = row_id


class KeyProvider(Protocol):
    """Holds the master key. A KMS-backed provider implements the same three members."""

    @property
    def master_key_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalKeyFileProvider:
    """Master key from a local file (32 random bytes, base64). For development and small installs."""

    def __init__(self, path: Path) -> None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise KeyProviderError(f"{MASTER_KEY_ENV} names {path}, which does not exist") from None
        except OSError as exc:
            raise KeyProviderError(
                f"{MASTER_KEY_ENV} names {path}, which cannot be read: {exc.strerror}"
            ) from None
        try:
            key = base64.b64decode(raw.strip(), validate=True)
        except ValueError:
            raise KeyProviderError(f"the master key file {path} is not base64") from None
        if len(key) != 32:
            raise KeyProviderError(f"the master key file {path} must hold 32 bytes (AES-256), not {len(key)}")
        self._aead = AESGCM(key)
        # A fingerprint, not the key: lets us tell which master key wrapped a data key.
        self._id = "local:" + hashlib.sha256(b"praneya-master-key-id" + key).hexdigest()[:16]

    @property
    def master_key_id(self) -> str:
        return self._id

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], context)
        except InvalidTag:
            raise KeyProviderError(
                "a data key does not unwrap with this master key: wrong master key file, or the key row was altered"
            ) from None


def generate_master_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(os.urandom(32)) + b"\n")


def key_provider_from_env(environ: Mapping[str, str] | None = None) -> LocalKeyFileProvider:
    env = os.environ if environ is None else environ
    path = env.get(MASTER_KEY_ENV)
    if not path:
        raise KeyProviderError(f"{MASTER_KEY_ENV} is not set: point it at the master key file")
    return LocalKeyFileProvider(Path(path))


def wrap_context(tenant_id: str, key_version: int) -> bytes:
    return f"praneya-data-key|{tenant_id}|{key_version}".encode()


def _field(value: str) -> bytes:
    raw = value.encode()
    return len(raw).to_bytes(4, "big") + raw


@functools.lru_cache(maxsize=4096)
def _aad_prefix(tenant_id: str, table: str, column: str) -> bytes:
    return _field(FORMAT) + _field(tenant_id) + _field(table) + _field(column)


def _aad(tenant_id: str, table: str, column: str, row_id: str, key_version: int) -> bytes:
    # Length-prefixed fields: no choice of ids can make two different bindings collide. The
    # (tenant, table, column) prefix repeats on every value of a snapshot, so it is built once.
    return _aad_prefix(tenant_id, table, column) + _field(row_id) + _field(str(key_version))


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"praneya|" + purpose).derive(key)


@dataclass
class TenantKeyring:
    """One tenant's unwrapped data keys, by version. Lives in memory only."""

    tenant_id: str
    keys: dict[int, bytes]
    _aeads: dict[int, AESGCM] = field(default_factory=dict, repr=False)
    _subkeys: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyProviderError(f"tenant {self.tenant_id} has no data key")
        self._aeads = {v: AESGCM(k) for v, k in self.keys.items()}

    def __repr__(self) -> str:  # never print keys
        return f"TenantKeyring(tenant_id={self.tenant_id!r}, versions={sorted(self.keys)})"

    @property
    def current_version(self) -> int:
        return max(self.keys)

    def encrypt(self, table: str, column: str, row_id: str, plaintext: str) -> str:
        version = self.current_version
        nonce = os.urandom(_NONCE)
        ct = self._aeads[version].encrypt(
            nonce, plaintext.encode("utf-8"), _aad(self.tenant_id, table, column, row_id, version)
        )
        return f"{FORMAT}.{version}.{base64.urlsafe_b64encode(nonce + ct).decode('ascii')}"

    def encrypt_optional(self, table: str, column: str, row_id: str, plaintext: str | None) -> str | None:
        return None if plaintext is None else self.encrypt(table, column, row_id, plaintext)

    @staticmethod
    def version_of(ciphertext: str) -> int:
        try:
            fmt, version, _ = ciphertext.split(".", 2)
            if fmt != FORMAT:
                raise ValueError
            return int(version)
        except ValueError:
            raise ValueError("not a praneya ciphertext") from None

    def decrypt(self, table: str, column: str, row_id: str, ciphertext: str) -> str:
        try:
            fmt, version_text, body = ciphertext.split(".", 2)
            version = int(version_text)
        except ValueError:
            raise DecryptionError(table, column, row_id, "not in the pv1 ciphertext format") from None
        if fmt != FORMAT:
            raise DecryptionError(table, column, row_id, f"unknown ciphertext format {fmt[:8]!r}")
        aead = self._aeads.get(version)
        if aead is None:
            raise DecryptionError(table, column, row_id, f"no data key version {version} for this tenant")
        try:
            blob = base64.urlsafe_b64decode(body.encode("ascii"))
            plain = aead.decrypt(
                blob[:_NONCE], blob[_NONCE:], _aad(self.tenant_id, table, column, row_id, version)
            )
        except (InvalidTag, ValueError, UnicodeEncodeError):
            raise DecryptionError(
                table,
                column,
                row_id,
                "authentication failed (altered, or moved from another row, column or tenant)",
            ) from None
        return plain.decode("utf-8")

    def decrypt_optional(self, table: str, column: str, row_id: str, ciphertext: str | None) -> str | None:
        return None if ciphertext is None else self.decrypt(table, column, row_id, ciphertext)

    def _derived(self, purpose: bytes) -> bytes:
        # HKDF once per keyring and purpose: every snapshot read verifies four section MACs.
        key = self._subkeys.get(purpose)
        if key is None:
            key = self._subkeys[purpose] = _derive(self.keys[min(self.keys)], purpose)
        return key

    def integrity_hash(self, canonical: bytes) -> str:
        """HMAC-SHA256 under a key derived from the tenant's first data key (stable across rotation)."""
        key = self._derived(b"integrity")
        return "hmac-sha256:" + hmac.new(key, canonical, hashlib.sha256).hexdigest()

    def blind_index(self, value: str) -> str:
        """Keyed, deterministic digest of a normalised identifier (email) for equality lookups."""
        key = self._derived(b"blind-index")
        return hmac.new(key, value.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()

    def record_index(self, table: str, patient_id: str, external_id: str) -> str:
        """Keyed, deterministic digest of an EHR's identifier of a record, for equality lookups.

        Exact (an EHR's ids are case-sensitive, so nothing is folded) and bound to the table and the
        patient: the same identifier on two patients, or on a medication and an allergy, gives
        unrelated digests, so the column says nothing across patients. Stable across key rotation,
        like the integrity MACs."""
        key = self._derived(b"record-index")
        return hmac.new(key, _field(table) + _field(patient_id) + _field(external_id), hashlib.sha256).hexdigest()

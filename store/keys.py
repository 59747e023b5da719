"""Tenant data keys: creation, rotation, re-encryption, master-key rotation, and the in-memory cache.

Unwrapped keys live only in this process's memory. The database holds them wrapped by the master
key; SQL never sees a key (so neither do its logs nor pg_stat_statements).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from store.crypto import KeyProvider, KeyProviderError, TenantKeyring, wrap_context
from store.phi import ENCRYPTED_COLUMNS
from store.session import Tx

__all__ = ["KeyStore", "ReencryptProgress", "create_data_key", "reencrypt_tenant", "rotate_master_key"]

_KEY_CACHE_SECONDS = 60.0


class BoundedCache:
    """A small LRU with an age limit, for values derived from decrypted data (never for keys' bytes).

    Used for verified patient snapshots: re-evaluating a patient whose stored rows are byte for byte
    unchanged skips decrypting and re-verifying them. Entries are keyed by a digest of everything the
    snapshot statement returned, so any change to the stored data is a miss and is verified afresh;
    the age limit bounds how long decrypted PHI stays in this process after its last use.
    """

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self._items: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        # Lookups that found a live entry and those that did not (the benchmark reports the hit rate).
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                self.misses += 1
                return None
            if time.monotonic() - hit[0] > self.ttl:
                del self._items[key]
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return hit[1]

    def put(self, key: bytes, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class KeyStore:
    """Unwrapped keyrings by tenant, refreshed after a minute or when a newer version shows up."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        # Verified snapshots belong to the keys that decrypted them: another key store (another
        # master key) starts empty and must unwrap for itself.
        self.verified_snapshots = BoundedCache(
            size=int(os.environ.get("PRANEYA_SNAPSHOT_CACHE_SIZE", "512")),
            ttl=float(os.environ.get("PRANEYA_SNAPSHOT_CACHE_SECONDS", "30")),
        )
        self._cache: dict[str, tuple[float, TenantKeyring]] = {}
        self._lock = threading.Lock()

    def keyring(self, conn: Tx, tenant_id: str, *, refresh: bool = False) -> TenantKeyring:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(tenant_id)
        if hit is not None and not refresh and now - hit[0] < _KEY_CACHE_SECONDS:
            return hit[1]
        rows = conn.execute(
            text("SELECT key_version, wrapped_key FROM public.tenant_data_keys WHERE tenant_id = :t"),
            {"t": tenant_id},
        ).all()
        if not rows:
            raise KeyProviderError(
                f"tenant {tenant_id} has no data key (or is not visible to this principal)"
            )
        ring = TenantKeyring(
            tenant_id,
            {int(v): self.provider.unwrap(bytes(w), wrap_context(tenant_id, int(v))) for v, w in rows},
        )
        with self._lock:
            self._cache[tenant_id] = (now, ring)
        return ring

    def forget(self, tenant_id: str | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._cache.clear()
            else:
                self._cache.pop(tenant_id, None)
        self.verified_snapshots.clear()


def create_data_key(conn: Connection, provider: KeyProvider, tenant_id: str) -> int:
    """Adds the tenant's next data key version (version 1 at tenant creation). Admin connection."""
    # Serialise concurrent rotations of one tenant on its tenant row.
    conn.execute(text("SELECT 1 FROM public.tenants WHERE id = :t FOR UPDATE"), {"t": tenant_id})
    version = int(
        conn.execute(
            text(
                "SELECT COALESCE(max(key_version), 0) + 1 FROM public.tenant_data_keys WHERE tenant_id = :t"
            ),
            {"t": tenant_id},
        ).scalar_one()
    )
    wrapped = provider.wrap(os.urandom(32), wrap_context(tenant_id, version))
    conn.execute(
        text(
            "INSERT INTO public.tenant_data_keys (tenant_id, key_version, wrapped_key, master_key_id)"
            " VALUES (:t, :v, :w, :m)"
        ),
        {"t": tenant_id, "v": version, "w": wrapped, "m": provider.master_key_id},
    )
    conn.execute(
        text("UPDATE public.tenants SET encryption_key_id = :k, updated_at = now() WHERE id = :t"),
        {"k": f"{tenant_id}/v{version}", "t": tenant_id},
    )
    return version


def admin_keyring(conn: Connection, provider: KeyProvider, tenant_id: str) -> TenantKeyring:
    rows = conn.execute(
        text("SELECT key_version, wrapped_key FROM public.tenant_data_keys WHERE tenant_id = :t"),
        {"t": tenant_id},
    ).all()
    if not rows:
        raise KeyProviderError(f"tenant {tenant_id} has no data key")
    return TenantKeyring(
        tenant_id, {int(v): provider.unwrap(bytes(w), wrap_context(tenant_id, int(v))) for v, w in rows}
    )


def rotate_master_key(conn: Connection, old: KeyProvider, new: KeyProvider) -> int:
    """Re-wraps every data key under the new master key, in the caller's single transaction.

    Every key is unwrapped with the old master key before anything is written, so a wrong old key
    fails with nothing changed.
    """
    rows = conn.execute(
        text(
            "SELECT tenant_id, key_version, wrapped_key FROM public.tenant_data_keys"
            " ORDER BY tenant_id, key_version FOR UPDATE"
        )
    ).all()
    plain = [(t, int(v), old.unwrap(bytes(w), wrap_context(t, int(v)))) for t, v, w in rows]
    for tenant_id, version, key in plain:
        conn.execute(
            text(
                "UPDATE public.tenant_data_keys SET wrapped_key = :w, master_key_id = :m"
                " WHERE tenant_id = :t AND key_version = :v"
            ),
            {
                "w": new.wrap(key, wrap_context(tenant_id, version)),
                "m": new.master_key_id,
                "t": tenant_id,
                "v": version,
            },
        )
    return len(plain)


@dataclass
class ReencryptProgress:
    """How far a re-encryption has come; drawing it is the caller's business."""

    done: int = 0
    total: int = 0


def _stale_filter(columns: tuple[str, ...]) -> str:
    # Column names come from store.phi, never from input.
    return " OR ".join(f"({c} IS NOT NULL AND split_part({c}, '.', 2)::int < :current)" for c in columns)


def reencrypt_tenant(
    engine: Engine,
    provider: KeyProvider,
    tenant_id: str,
    *,
    batch_size: int = 500,
    on_progress: Callable[[ReencryptProgress], None] | None = None,
) -> int:
    """Moves every PHI value of a tenant to its newest key version, one committed batch at a time.

    Online (short transactions, row locks per batch) and resumable (each batch re-selects only
    values still on an older version, so a rerun continues where an interrupted one stopped).
    Runs on an admin engine: operators re-encrypt across every patient, whatever RLS would show.
    """
    with engine.begin() as conn:
        ring = admin_keyring(conn, provider, tenant_id)
        current = ring.current_version
        progress = ReencryptProgress()
        for table, columns in ENCRYPTED_COLUMNS.items():
            progress.total += int(
                conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t AND ({_stale_filter(columns)})"),  # noqa: S608
                    {"t": tenant_id, "current": current},
                ).scalar_one()
            )
    changed = 0
    for table, columns in ENCRYPTED_COLUMNS.items():
        while True:
            with engine.begin() as conn:
                rows = (
                    conn.execute(
                        text(
                            f"SELECT id, {', '.join(columns)} FROM {table} WHERE tenant_id = :t"  # noqa: S608
                            f" AND ({_stale_filter(columns)}) ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"
                        ),
                        {"t": tenant_id, "current": current, "n": batch_size},
                    )
                    .mappings()
                    .all()
                )
                if not rows:
                    break
                for row in rows:
                    values: dict[str, str | None] = {}
                    for col in columns:
                        ct = row[col]
                        if ct is None or TenantKeyring.version_of(ct) >= current:
                            continue
                        plain = ring.decrypt(table, col, row["id"], ct)
                        values[col] = ring.encrypt(table, col, row["id"], plain)
                    sets = ", ".join(f"{c} = :{c}" for c in values)
                    conn.execute(
                        text(f"UPDATE {table} SET {sets} WHERE id = :id"),  # noqa: S608
                        {**values, "id": row["id"]},
                    )
                changed += len(rows)
                progress.done += len(rows)
            if on_progress:
                on_progress(progress)
    return changed

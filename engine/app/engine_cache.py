"""Rule sets and knowledge per tenant, compiled once and reused until the database's copy changes.

Rules are synced without redeploying: every `refresh_seconds` a request checks two cheap
fingerprints and rebuilds only what changed. The global interaction pairs are loaded once and
shared by every tenant; a tenant with overrides gets its own index over the same pair objects.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from sqlalchemy import Connection

from engine.knowledge import InteractionPair, Knowledge, Vocabulary
from engine.rules import RuleSet
from store import knowledge_repo

__all__ = ["EngineCache"]

log = logging.getLogger("praneya.engine")


def _release_memory() -> None:
    # Loading 150,000 pairs leaves the rows it parsed in freed malloc arenas; give them back to the
    # operating system so a worker's resident memory reflects what it keeps.
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


@dataclass
class _Entry:
    ruleset: RuleSet
    knowledge: Knowledge
    rules_fp: str
    knowledge_fp: str
    checked_at: float


class EngineCache:
    def __init__(self, refresh_seconds: float = 5.0) -> None:
        self.refresh_seconds = refresh_seconds
        self._entries: dict[str, _Entry] = {}
        self._pairs: tuple[str, tuple[InteractionPair, ...]] | None = None
        # The vocabulary (curated tables, RxNorm concepts, NDC index) is global: one per worker.
        self._vocabulary: tuple[str, Vocabulary] | None = None
        self._lock = threading.Lock()
        # Fingerprint checks made and rebuilds done, for the benchmark's report.
        self.checks = 0
        self.rebuilds = 0

    def get(self, conn: Connection, tenant_id: str) -> tuple[RuleSet, Knowledge]:
        return self.get_via(tenant_id, lambda: nullcontext(conn))

    def get_via(
        self, tenant_id: str, connect: Callable[[], AbstractContextManager[Connection]]
    ) -> tuple[RuleSet, Knowledge]:
        """The tenant's engine; `connect()` opens a transaction in the caller's scope only when the
        fingerprints are due for a check (every `refresh_seconds`), so most calls open none."""
        now = time.monotonic()
        entry = self._entries.get(tenant_id)
        if entry is not None and now - entry.checked_at < self.refresh_seconds:
            return entry.ruleset, entry.knowledge
        # One loader at a time. A tenant already loaded is answered with what it has while one call
        # checks the fingerprints (and rebuilds, when they changed): the others do not queue behind
        # that call, so a check or a rebuild of seconds is paid by one call, not by every call in
        # flight. What they use is at most one interval plus that check old. A tenant not loaded
        # yet has nothing to answer with: its callers wait for the first load instead of loading too.
        if not self._lock.acquire(blocking=entry is None):
            assert entry is not None
            return entry.ruleset, entry.knowledge
        try:
            entry = self._entries.get(tenant_id)  # loaded or checked while this call waited
            if entry is not None and time.monotonic() - entry.checked_at < self.refresh_seconds:
                return entry.ruleset, entry.knowledge
            with connect() as conn:
                return self._refresh(conn, tenant_id)
        finally:
            self._lock.release()

    def _refresh(self, conn: Connection, tenant_id: str) -> tuple[RuleSet, Knowledge]:
        entry = self._entries.get(tenant_id)
        if entry is not None and time.monotonic() - entry.checked_at < self.refresh_seconds:
            return entry.ruleset, entry.knowledge
        self.checks += 1
        rules_fp = knowledge_repo.rules_fingerprint(conn, tenant_id)
        knowledge_fp = knowledge_repo.knowledge_fingerprint(conn, tenant_id)
        if entry is not None and entry.rules_fp == rules_fp and entry.knowledge_fp == knowledge_fp:
            entry.checked_at = time.monotonic()
            return entry.ruleset, entry.knowledge
        started = time.perf_counter()
        self.rebuilds += 1
        rebuilt: list[str] = []
        if entry is not None and entry.rules_fp == rules_fp:
            ruleset = entry.ruleset
        else:
            ruleset = knowledge_repo.load_rules(conn, tenant_id)
            rebuilt.append("rules")
        if entry is not None and entry.knowledge_fp == knowledge_fp:
            knowledge = entry.knowledge
        else:
            global_fp = knowledge_fp.rsplit(":", 1)[0]
            if self._pairs is None or self._pairs[0] != global_fp:
                self._pairs = (global_fp, knowledge_repo.load_pairs(conn))
                rebuilt.append("interaction_pairs")
            if self._vocabulary is None or self._vocabulary[0] != global_fp:
                self._vocabulary = (global_fp, knowledge_repo.load_vocabulary(conn))
                rebuilt.append("vocabulary")
            knowledge = knowledge_repo.load_knowledge(
                conn, tenant_id, shared_pairs=self._pairs[1], shared_vocabulary=self._vocabulary[1]
            )
            rebuilt.append("knowledge")
        self._entries[tenant_id] = _Entry(ruleset, knowledge, rules_fp, knowledge_fp, time.monotonic())
        _release_memory()
        # Fingerprints and counts only: what changed, and what it cost this worker.
        log.info(
            "engine rebuilt",
            extra={
                "tenant": tenant_id,
                "rebuilt": rebuilt,
                "fingerprints": {
                    "rules": {"old": entry.rules_fp if entry else None, "new": rules_fp},
                    "knowledge": {"old": entry.knowledge_fp if entry else None, "new": knowledge_fp},
                },
                "counts": {"rules": len(ruleset.rules), "interaction_pairs": len(knowledge.interactions)},
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return ruleset, knowledge

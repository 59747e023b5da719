"""The engine cache (engine/app/engine_cache.py) against the real database: rebuilt only when a
fingerprint changes, and a check in progress never holds up the calls of a tenant already loaded."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from engine.app.engine_cache import EngineCache
from store.session import Database, Principal

pytestmark = pytest.mark.db


def test_a_check_in_progress_does_not_hold_up_a_loaded_tenant(
    app_db: Database, make_tenant: Callable[[], str], advisor: Callable[[str], Principal]
) -> None:
    tenant = make_tenant()
    who = advisor(tenant)
    cache = EngineCache(refresh_seconds=0)  # every call finds its entry due for a check
    with app_db.scoped(who) as conn:
        first = cache.get(conn, tenant)
    assert (cache.checks, cache.rebuilds) == (1, 1)
    answered: list[object] = []

    def call() -> None:
        with app_db.scoped(who) as conn:
            answered.append(cache.get(conn, tenant))

    cache._lock.acquire()  # another call is checking the fingerprints (or rebuilding) right now
    try:
        t = threading.Thread(target=call, daemon=True)
        t.start()
        t.join(30)
        # Answered with what the tenant has, not queued behind the check (before: waited for the lock).
        assert answered == [first]
    finally:
        cache._lock.release()
    with app_db.scoped(who) as conn:  # the next call checks; nothing changed, nothing is rebuilt
        assert cache.get(conn, tenant) == first
    assert (cache.checks, cache.rebuilds) == (2, 1)


def test_a_tenant_not_loaded_yet_waits_for_its_first_load(
    app_db: Database, make_tenant: Callable[[], str], advisor: Callable[[str], Principal]
) -> None:
    tenant = make_tenant()
    who = advisor(tenant)
    cache = EngineCache(refresh_seconds=60)
    answered: list[object] = []

    def call() -> None:
        with app_db.scoped(who) as conn:
            answered.append(cache.get(conn, tenant))

    cache._lock.acquire()
    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(0.5)
    assert answered == [] and t.is_alive()  # nothing to answer with: it waits for the loader
    cache._lock.release()
    t.join(30)
    assert len(answered) == 1 and cache.rebuilds == 1

"""The evaluation path's psycopg transactions (store/lean.py): the RLS context as `Database.scoped` sets it,
transaction-local, as praneya_app; a connection the server closed is replaced before the first statement
and only then; a failure after the first statement is never retried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from engine.app.failures import Code, classify
from store.config import app_database_url
from store.session import Database, Principal, RequestMeta

pytestmark = pytest.mark.db

WHO = Principal("lean-tenant", "lean-user", "CLINICAL_ADVISOR", mfa=True)
_CONTEXT = text(
    "SELECT current_user AS role, current_setting('app.tenant_id', true) AS tenant,"
    " current_setting('app.user_id', true) AS u, current_setting('app.request_id', true) AS rid,"
    " current_setting('statement_timeout') AS timeout, pg_backend_pid() AS pid"
)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    # Its own pool of one connection, so the tests know which backend the next transaction gets.
    d = Database(app_database_url(database_url), pool_size=1)
    yield d
    d.dispose()


def _context(db: Database, meta: RequestMeta | None = None) -> dict[str, Any]:
    with db.lean_scoped(WHO, meta) as conn:
        return dict(conn.execute(_CONTEXT).mappings().one())


def test_the_context_is_set_first_and_lives_for_one_transaction(db: Database) -> None:
    seen = _context(db, RequestMeta(request_id="r-1", statement_timeout_ms=1234))
    assert (seen["role"], seen["tenant"], seen["u"], seen["rid"]) == ("praneya_app", "lean-tenant", "lean-user", "r-1")
    assert seen["timeout"] == "1234ms"
    raw: Any = db.lean._open()
    with raw.connection() as conn:  # the same pooled connection, outside a scoped transaction
        row = conn.execute(
            "SELECT pg_backend_pid(), current_setting('app.tenant_id', true), current_setting('statement_timeout')"
        ).fetchone()
    assert row[0] == seen["pid"], "one connection in the pool"
    assert row[1] in (None, ""), "the context did not outlive its transaction"
    assert row[2] == "5s", "the connection's own statement timeout is back"


def test_a_connection_the_server_closed_is_replaced_before_the_first_statement(
    db: Database, admin: psycopg.Connection[dict[str, Any]]
) -> None:
    first = _context(db)["pid"]
    admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    second = _context(db)  # the first statement fails on the dead connection: retried on a new one
    assert second["pid"] != first and second["tenant"] == "lean-tenant"


def test_a_failure_after_the_first_statement_is_not_retried(
    db: Database, admin: psycopg.Connection[dict[str, Any]]
) -> None:
    ran = 0
    with pytest.raises(psycopg.OperationalError) as info:
        with db.lean_scoped(WHO) as conn:
            ran += 1
            pid = conn.execute(_CONTEXT).mappings().one()["pid"]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            conn.execute(_CONTEXT)
    assert ran == 1, "the transaction's body ran once: nothing after the first statement is retried"
    assert classify(info.value).code == Code.UNAVAILABLE
    assert _context(db)["tenant"] == "lean-tenant", "the broken connection was discarded"


def test_an_error_rolls_the_transaction_back(db: Database) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable) as info:
        with db.lean_scoped(WHO) as conn:
            conn.execute(text("SELECT 1 FROM no_such_table"))
    assert classify(info.value).code == Code.INTERNAL
    assert _context(db)["tenant"] == "lean-tenant"

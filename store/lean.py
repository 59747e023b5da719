"""The evaluation's transactions on plain psycopg: a psycopg_pool pool, statements prepared per connection.

The evaluation path (engine/app/evaluation.py) runs three to five statements per call: the RLS
context, the patient's snapshot, the audit row (and now and then the tenant's key ring). Through
SQLAlchemy each of them also paid the layer's compile cache, result machinery and — the largest
cost at 32 concurrent calls — a pre-ping round trip per transaction (`pool_pre_ping`). Here the same
SQL (the store's own `text()` statements, compiled once for psycopg) runs on a psycopg connection:

- same identity and TLS: the URL, role (praneya_app) and connection options of `Database`;
- same RLS: the context is set first in every transaction by the very statement `Database.scoped`
  runs (`SET_CONTEXT`, transaction-local, so a pooled connection never carries one call's identity
  into the next);
- no pre-ping: a connection the server closed while it sat in the pool fails its first statement,
  and only then — before anything of the transaction ran — the pool's idle connections are tested
  (dead ones replaced) and the transaction is retried once on another connection. A failure after
  the first statement is never retried (it may follow a write): it rolls back and reaches the
  caller as today. The pool discards a broken connection when it
  comes back, and replaces connections after 30 minutes (`pool_recycle` of the layer's pool).

`LeanConnection` answers the small part of SQLAlchemy's `Connection.execute` that the store's
read-path and audit functions use (`store.session.Tx`), so those functions run unchanged on either.
SQLAlchemy stays for everything else (records, migrations, the drift check, administration).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import Connection as PgConnection
from psycopg_pool import ConnectionPool
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.sql.elements import TextClause

__all__ = ["LeanConnection", "LeanPool", "LeanResult", "psycopg_sql"]

_COMPILED: dict[str, str] = {}
_NAMES: dict[str, list[str]] = {}  # the column names of each statement's result, by its SQL
_COMPILED_LOCK = threading.Lock()
_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]


def psycopg_sql(statement: TextClause) -> str:
    """A `text()` statement as psycopg takes it (`:name` → `%(name)s`, `%` doubled), compiled once per
    SQL text: the store's statements are fixed strings, so the cache is bounded by the code."""
    sql = _COMPILED.get(statement.text)
    if sql is None:
        sql = str(statement.compile(dialect=_DIALECT))
        with _COMPILED_LOCK:
            _COMPILED[statement.text] = sql
    return sql


class _RowCount(RuntimeError):
    """A statement returned another number of rows than its caller requires (SQLAlchemy's
    NoResultFound / MultipleResultsFound): a bug, never a "not found"."""


class _Mappings:
    def __init__(self, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        self._names = names
        self._rows = rows

    def one(self) -> Mapping[str, Any]:
        if len(self._rows) != 1:
            raise _RowCount(f"expected one row, the statement returned {len(self._rows)}")
        return dict(zip(self._names, self._rows[0], strict=True))


class _Scalars:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def all(self) -> Sequence[Any]:
        return [r[0] for r in self._rows]


class LeanResult:
    """A statement's rows, fetched at once (every statement of the path returns a handful)."""

    __slots__ = ("_names", "_rows")

    def __init__(self, cursor: psycopg.Cursor[tuple[Any, ...]], sql: str) -> None:
        result = cursor.pgresult
        columns = result.nfields if result is not None else 0
        if not columns:
            self._names: list[str] = []
            self._rows: list[tuple[Any, ...]] = []
            return
        # A statement's column names are fixed by its text: read once (the cursor's `description`
        # builds a Column object per column on every call), checked against the count every time.
        names = _NAMES.get(sql)
        if names is None or len(names) != columns:
            names = [d.name for d in cursor.description or ()]
            _NAMES[sql] = names
        self._names = names
        self._rows = cursor.fetchall()

    def mappings(self) -> _Mappings:
        return _Mappings(self._names, self._rows)

    def all(self) -> Sequence[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalars(self) -> _Scalars:
        return _Scalars(self._rows)

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise _RowCount(f"expected one row, the statement returned {len(self._rows)}")
        return self._rows[0][0]

    def scalar_one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise _RowCount(f"expected at most one row, the statement returned {len(self._rows)}")
        return self._rows[0][0] if self._rows else None


class LeanConnection:
    """One transaction on a pooled psycopg connection, as the store's functions use a connection."""

    __slots__ = ("first", "raw")

    def __init__(self, raw: PgConnection[tuple[Any, ...]], first: LeanResult) -> None:
        self.raw = raw
        self.first = first  # what the transaction's first statement returned

    def execute(self, statement: TextClause, parameters: Mapping[str, Any] | None = None, /) -> LeanResult:
        sql = psycopg_sql(statement)
        return LeanResult(self.raw.execute(sql, parameters or {}), sql)


def _prepare_at_once(conn: PgConnection[Any]) -> None:
    # Every statement of the path runs on every call: prepare it the first time a connection sees it.
    conn.prepare_threshold = 0


def _roll_back(conn: PgConnection[Any]) -> None:
    if conn.broken or conn.closed:
        return  # the pool discards it when it comes back
    try:
        conn.rollback()
    except psycopg.Error:  # the connection failed under us: broken now, and discarded
        pass


class LeanPool:
    """A psycopg pool opened on first use (after the worker process started), sized like the layer's."""

    def __init__(self, conninfo: str, kwargs: Mapping[str, Any], *, size: int, timeout: float) -> None:
        self._conninfo = conninfo
        self._kwargs = dict(kwargs)
        self._size = size
        self._timeout = timeout
        self._pool: ConnectionPool[PgConnection[tuple[Any, ...]]] | None = None
        self._lock = threading.Lock()

    def _open(self) -> ConnectionPool[PgConnection[tuple[Any, ...]]]:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=self._size,
                    kwargs=self._kwargs,
                    configure=_prepare_at_once,
                    timeout=self._timeout,
                    max_lifetime=1800.0,
                    name="evaluation",
                    open=True,
                )
            return self._pool

    @contextmanager
    def transaction(self, first: TextClause, parameters: Mapping[str, Any]) -> Iterator[LeanConnection]:
        """A transaction whose first statement is `first` (the RLS context); commits when the block
        ends, rolls back when it raises. Retried once, on a fresh connection, only when the first
        statement fails because the connection is gone — before anything of the transaction ran."""
        pool = self._open()
        sql = psycopg_sql(first)
        conn = pool.getconn()
        try:
            first_rows = LeanResult(conn.execute(sql, parameters), sql)
        except psycopg.OperationalError:
            retry = conn.broken
            _roll_back(conn)
            pool.putconn(conn)  # a broken connection is discarded, not kept
            if not retry:
                raise
            # The server went away once (a restart, a failover): the other idle connections are
            # likely dead too. Test them now (as the layer's pool invalidates itself on a
            # disconnect), so that the retry and the calls after it get live ones.
            pool.check()
            conn = pool.getconn()
            try:
                first_rows = LeanResult(conn.execute(sql, parameters), sql)
            except BaseException:
                _roll_back(conn)
                pool.putconn(conn)
                raise
        except BaseException:
            _roll_back(conn)
            pool.putconn(conn)
            raise
        try:
            yield LeanConnection(conn, first_rows)
            conn.commit()
        except BaseException:
            _roll_back(conn)
            raise
        finally:
            pool.putconn(conn)

    def run_one(self, statement: TextClause, parameters: Mapping[str, Any]) -> LeanResult:
        """One statement in a transaction of its own, committed before this returns. Retried like any
        first statement: only when the connection was found gone, so nothing was committed."""
        with self.transaction(statement, parameters) as conn:
            return conn.first

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

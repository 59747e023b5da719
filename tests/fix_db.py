"""Database fixtures: one migrated database per test worker, and connections as praneya_app.

Data for a test is set up through an admin connection and committed, under tenant ids unique to
the test, because row-level security can only be tested from a *different* connection logged in
as praneya_app (a superuser or the table owner would bypass it). Tests never share tenants, so
they need no cleanup and can run in parallel.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from store import migrate as store_migrate
from store import provision
from store.config import app_database_url

# Shared with the rest of the suite under the names tests import.
_libpq = provision.libpq_url
create_database = provision.recreate_database

def pytest_configure(config: pytest.Config) -> None:
    # The audit anchor of every test database in a folder of this run's own: test databases are named
    # after their worker process, and an anchor left by an earlier run under a reused name would make
    # `audit seal` rightly refuse a chain it has never seen. Servers started by tests inherit it.
    if "PRANEYA_AUDIT_ANCHOR" not in os.environ:
        import tempfile

        os.environ["PRANEYA_AUDIT_ANCHOR"] = tempfile.mkdtemp(prefix="praneya-test-anchor-")


DEFAULT_DB_PREFIX = "praneya_"
_DB_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,29}")
_MAX_NAME_BYTES = 63  # PostgreSQL cuts longer identifiers, and two cut names could be one database


def db_prefix(env: Mapping[str, str] = os.environ) -> str:
    """What every test database's name starts with: PRANEYA_TEST_DB_PREFIX, default `praneya_`.

    Several runs can share one server (CI jobs, developers, a checkout beside another), each with
    a prefix of its own, so that each finds, and drops or cleans up, only its own databases.
    """
    prefix = env.get("PRANEYA_TEST_DB_PREFIX") or DEFAULT_DB_PREFIX
    if not _DB_PREFIX.fullmatch(prefix):
        raise pytest.UsageError(
            f"PRANEYA_TEST_DB_PREFIX={prefix!r}: use lower-case letters, digits and _, starting with a letter"
            " (at most 30 characters)"
        )
    return prefix


def db_name(*parts: str, env: Mapping[str, str] = os.environ) -> str:
    """A test database's name: the prefix, then parts joined by _ (db_name("test", "gw0", "123"))."""
    name = db_prefix(env) + "_".join(parts)
    if len(name.encode()) > _MAX_NAME_BYTES:
        raise pytest.UsageError(f"test database name {name!r} is longer than {_MAX_NAME_BYTES} bytes")
    return name


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return provision.up()


def migrate(url: str, revision: str = "head", *, down: bool = False) -> None:
    if down:
        store_migrate.downgrade(revision, database_url=url)
    else:
        store_migrate.upgrade(revision, database_url=url)


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope="session")
def database_url(server_url: str, db_worker: str) -> Iterator[str]:
    """A freshly migrated database for this test worker (admin URL), dropped at the end.

    The name carries the prefix and the process id: two test runs on one cluster never share (or drop)
    a database.
    """
    name = db_name("test", db_worker, str(os.getpid()))
    url = create_database(server_url, name)
    migrate(url)
    yield url
    provision.drop_database(server_url, name)


@pytest.fixture(scope="session")
def app_url(database_url: str) -> str:
    return _libpq(app_database_url(database_url))


@pytest.fixture
def admin(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A superuser connection for setting up data (autocommit). Never for asserting visibility."""
    with psycopg.connect(_libpq(database_url), autocommit=True, row_factory=dict_row) as conn:
        yield conn


class AppSession:
    """Opens transactions as praneya_app with the RLS context set transaction-locally."""

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.url, row_factory=dict_row)

    @contextmanager
    def scoped(
        self,
        tenant: str | None,
        user: str | None,
        role: str | None,
        conn: psycopg.Connection[dict[str, Any]] | None = None,
    ) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        own = conn is None
        c = conn or self.connect()
        try:
            with c.transaction():
                c.execute(
                    "SELECT set_config('app.tenant_id', %s, true), set_config('app.user_id', %s, true),"
                    " set_config('app.role', %s, true)",
                    (tenant or "", user or "", role or ""),
                )
                yield c
        finally:
            if own:
                c.close()


@pytest.fixture(scope="session")
def app(app_url: str) -> AppSession:
    return AppSession(app_url)


@pytest.fixture
def uid() -> Any:
    """Ids unique to this test: uid('tenant') -> 'tenant-1a2b3c4d'."""
    suffix = uuid.uuid4().hex[:10]
    return lambda prefix: f"{prefix}-{suffix}"


@pytest.fixture(scope="session")
def db_worker(request: pytest.FixtureRequest) -> str:
    # pytest-xdist provides this fixture; without xdist there is one worker.
    return str(getattr(request.config, "workerinput", {}).get("workerid", "main"))

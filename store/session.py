"""One pool for praneya_app; one transaction per request with the RLS context set first.

`scoped(principal)` is the only way service code reaches tenant data. The context is set with
set_config(..., true) — transaction-local — so a pooled connection never carries one request's
identity into the next. Store code may flush, never commit: the transaction belongs to the caller.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.sql.elements import TextClause

from store.config import app_database_url
from store.lean import LeanConnection, LeanPool

__all__ = [
    "CLIENT_ROLE",
    "HEALTHCARE_ROLES",
    "SET_CONTEXT",
    "Database",
    "Principal",
    "PrincipalMismatch",
    "RequestMeta",
    "Tx",
    "verify_caller",
]

HEALTHCARE_ROLES = ("END_USER", "CLINICAL_ADVISOR", "SUPER_ADMIN", "EMERGENCY_RESPONDER")
CLIENT_ROLE = "CLIENT"  # the role of a registered client's principal; not a healthcare role


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    user_id: str
    role: str
    mfa: bool = False
    purpose: str = "TREATMENT"
    # A registered client (an EHR or backend) rather than a user: its id, the scopes its token carries,
    # and the user it acts for (CDS Hooks `userId`, e.g. "Practitioner/123"), recorded beside it.
    client_id: str | None = None
    scopes: tuple[str, ...] = ()
    acting_for: str | None = None

    def __post_init__(self) -> None:
        if self.client_id is not None:
            # A client is never a user with a healthcare role: RLS would give it that role's rights.
            if self.role != CLIENT_ROLE or not self.client_id:
                raise ValueError(f"a client's principal has the role {CLIENT_ROLE}")
        elif self.role not in HEALTHCARE_ROLES:
            raise ValueError(f"unknown healthcare role {self.role!r}")
        if not self.tenant_id or not self.user_id:
            raise ValueError("a principal needs a tenant and a user")


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Who is calling from where; carried into audit rows (triggers read it from the context)."""

    client_addr: str = ""
    user_agent: str = ""
    request_id: str = ""
    statement_timeout_ms: int | None = None


class _MappingRows(Protocol):
    def one(self) -> Mapping[Any, Any]: ...


class _ScalarRows(Protocol):
    def all(self) -> Sequence[Any]: ...


class _Rows(Protocol):
    def mappings(self) -> _MappingRows: ...
    def all(self) -> Sequence[Any]: ...
    def first(self) -> Any: ...
    def scalars(self) -> _ScalarRows: ...
    def scalar_one(self) -> Any: ...
    def scalar_one_or_none(self) -> Any: ...


class Tx(Protocol):
    """A connection inside one scoped transaction, as the read-path and audit functions of the store
    use it: SQLAlchemy's `Connection` (`Database.scoped`) or psycopg's (`Database.lean_scoped`)."""

    def execute(self, statement: TextClause, parameters: Mapping[str, Any] | None = None, /) -> _Rows: ...


class PrincipalMismatch(PermissionError):
    """The token's user is not an active user of its tenant with the role it claims."""


# The caller as the database knows them (migration 0011): an active user's healthcare role, or
# CLIENT for an active registered client of the tenant; NULL for anyone else.
_CALLER = text("SELECT public.current_caller_role()")


def verify_caller(conn: Tx, principal: Principal) -> None:
    """A well-signed token is not enough: its user must be an active user of its tenant, in its role
    (or its client an active client of its tenant)."""
    if conn.execute(_CALLER).scalar_one_or_none() != principal.role:
        if principal.client_id is not None:
            raise PrincipalMismatch("the caller is not an active client of this tenant")
        raise PrincipalMismatch("the caller is not an active user of this tenant with this role")


# One round trip sets the whole context, transaction-locally. (Also the benchmark's lean floor's first
# statement, on plain psycopg: engine/doors/grpc/floor.py.)
SET_CONTEXT = _SET_CONTEXT = text(
    "SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true),"
    " set_config('app.role', :role, true), set_config('app.client_addr', :addr, true),"
    " set_config('app.user_agent', :ua, true), set_config('app.request_id', :rid, true),"
    " set_config('statement_timeout', :timeout, true), set_config('app.client_id', :client, true),"
    " set_config('app.client_scopes', :scopes, true), set_config('app.acting_for', :acting_for, true)"
)


class Database:
    def __init__(
        self,
        url: str | None = None,
        *,
        pool_size: int = 8,
        pool_timeout: float = 5.0,
        statement_timeout_ms: int = 5000,
        application_name: str = "praneya-safety",
    ) -> None:
        connect_args: dict[str, object] = {
            "connect_timeout": int(os.environ.get("PRANEYA_DB_CONNECT_TIMEOUT", "5")),
            # Bounded statements: a slow database turns into a clear error, not a hung request.
            # idle_in_transaction: no transaction of the service stays open long enough to slip an audit
            # row into a range the sealer has already sealed (its lag is minutes).
            "options": f"-c statement_timeout={statement_timeout_ms} -c lock_timeout=2000"
            " -c idle_in_transaction_session_timeout=30000",
            "application_name": application_name,
        }
        sslmode = os.environ.get("PRANEYA_DB_SSLMODE")
        if sslmode:
            connect_args["sslmode"] = sslmode
            if os.environ.get("PRANEYA_DB_SSLROOTCERT"):
                connect_args["sslrootcert"] = os.environ["PRANEYA_DB_SSLROOTCERT"]
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_args = connect_args  # also what the benchmark's lean floor connects with
        self.engine: Engine = create_engine(
            url or app_database_url(),
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout,
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args=connect_args,
        )
        # The evaluation path's own pool (store/lean.py): the same URL, role and options, on psycopg.
        self.lean = LeanPool(
            self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            connect_args,
            size=pool_size,
            timeout=pool_timeout,
        )

    @contextmanager
    def scoped(
        self, principal: Principal, meta: RequestMeta | None = None, *, verify: bool = False
    ) -> Iterator[Connection]:
        """One transaction as praneya_app, RLS context first; commits on success, rolls back on error.

        verify=True also checks the principal against the users table, or a client against the client
        registry (one more round trip; the evaluation path does the same check inside its snapshot
        statement instead). A client's transaction has app.role CLIENT, app.client_id, its token's
        scopes in app.client_scopes and the user it acts for in app.acting_for, and no app.user_id.
        """
        with self.engine.begin() as conn:
            conn.execute(_SET_CONTEXT, self.context_parameters(principal, meta))
            if verify:
                verify_caller(conn, principal)
            yield conn

    @contextmanager
    def lean_scoped(
        self, principal: Principal, meta: RequestMeta | None = None, *, verify: bool = False
    ) -> Iterator[LeanConnection]:
        """`scoped` on the evaluation path's psycopg pool (store/lean.py): the same role, the same RLS
        context set first by the same statement, the same commit-or-roll-back; no pre-ping (a dead
        connection is replaced before the first statement, and nothing after it is retried)."""
        with self.lean.transaction(_SET_CONTEXT, self.context_parameters(principal, meta)) as conn:
            if verify:
                verify_caller(conn, principal)
            yield conn

    def context_parameters(self, principal: Principal, meta: RequestMeta | None = None) -> dict[str, str]:
        """The parameters of SET_CONTEXT for this principal and request (also the lean floor's)."""
        m = meta or RequestMeta()
        timeout = m.statement_timeout_ms if m.statement_timeout_ms is not None else self.statement_timeout_ms
        return {
            "tenant": principal.tenant_id,
            # A client is not a user: no app.user_id, so no "own record" branch can match it.
            "user": "" if principal.client_id else principal.user_id,
            "role": principal.role,
            "client": principal.client_id or "",
            "scopes": " ".join(principal.scopes) if principal.client_id else "",
            "acting_for": (principal.acting_for or "")[:200] if principal.client_id else "",
            "addr": m.client_addr[:200],
            "ua": m.user_agent[:300],
            "rid": m.request_id[:100],
            "timeout": str(max(1, int(timeout))),
        }

    def dispose(self) -> None:
        self.lean.close()
        self.engine.dispose()

"""The RLS context lives for one transaction: it never leaks to the next one on the same connection.

The service sets app.tenant_id / app.user_id / app.role with set_config(..., true) at the start of
each transaction. If a value survived COMMIT, the next request served by the same pooled
connection would run as the previous caller. These tests prove it does not, and (as a control)
that the same probes do detect a leak when a value is set session-wide.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from tests.fix_db import AppSession
from tests.fix_world import Patient, World

pytestmark = pytest.mark.db

Conn = psycopg.Connection[dict[str, Any]]
UNSET = {"t": None, "u": None, "r": None}


def context(c: Conn) -> dict[str, Any]:
    row = c.execute("SELECT public.current_tenant_id() AS t, public.current_user_id() AS u,"
                    " public.current_healthcare_role()::text AS r").fetchone()
    assert row is not None
    return row


def medications_seen(c: Conn, patient: Patient) -> int:
    row = c.execute("SELECT count(*) AS n FROM healthcare.medications WHERE user_id = %s",
                    (patient.user,)).fetchone()
    assert row is not None
    return int(row["n"])


def set_context(c: Conn, patient: Patient, *, local: bool = True) -> None:
    c.execute("SELECT set_config('app.tenant_id', %s, %s), set_config('app.user_id', %s, %s),"
              " set_config('app.role', 'END_USER', %s)", (patient.tenant, local, patient.user, local, local))


@pytest.fixture
def patient(world: World) -> Patient:
    return world.patient(world.tenant())


def test_context_functions_return_null_when_never_set(app: AppSession) -> None:
    with app.connect() as c:
        assert context(c) == UNSET


def test_context_functions_return_null_when_set_empty(app: AppSession) -> None:
    with app.scoped("", "", "") as c:
        assert context(c) == UNSET


def test_context_functions_read_the_transaction_context(app: AppSession, patient: Patient) -> None:
    with app.scoped(patient.tenant, patient.user, "END_USER") as c:
        assert context(c) == {"t": patient.tenant, "u": patient.user, "r": "END_USER"}
        assert medications_seen(c, patient) == 1


def test_after_commit_the_same_connection_sees_nothing(app: AppSession, patient: Patient) -> None:
    with app.connect() as c:
        with app.scoped(patient.tenant, patient.user, "END_USER", conn=c):
            assert medications_seen(c, patient) == 1  # control: the context worked
        # scoped() committed; the next transaction on the same session has no context.
        with c.transaction():
            assert context(c) == UNSET
            assert medications_seen(c, patient) == 0


def test_after_rollback_the_same_connection_sees_nothing(app: AppSession, patient: Patient) -> None:
    class Boom(Exception):
        pass

    with app.connect() as c:
        with pytest.raises(Boom), app.scoped(patient.tenant, patient.user, "END_USER", conn=c):
            assert medications_seen(c, patient) == 1
            raise Boom
        with c.transaction():
            assert context(c) == UNSET
            assert medications_seen(c, patient) == 0


def test_a_reused_pooled_connection_sees_nothing(app_url: str, patient: Patient) -> None:
    with ConnectionPool(app_url, min_size=1, max_size=1, open=True, connection_class=Conn,
                        kwargs={"row_factory": dict_row}) as pool:
        with pool.connection() as c:
            first_pid = c.info.backend_pid
            set_context(c, patient)
            assert medications_seen(c, patient) == 1
        # The pool commits on return; the one connection is handed out again.
        with pool.connection() as c:
            assert c.info.backend_pid == first_pid, "the pool must have reused the connection"
            assert context(c) == UNSET
            assert medications_seen(c, patient) == 0


def test_control_a_session_wide_setting_would_leak(app: AppSession, patient: Patient) -> None:
    # Proves the probes above can fail: set_config(..., false) survives COMMIT. This is why the
    # service must only ever use set_config(..., true).
    with app.connect() as c:
        with c.transaction():
            set_context(c, patient, local=False)
        with c.transaction():
            assert context(c)["u"] == patient.user
            assert medications_seen(c, patient) == 1

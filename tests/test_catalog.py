"""The catalog itself proves the walls: RLS forced everywhere, runtime roles without privilege."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.db

SCHEMAS = ("public", "healthcare", "audit", "clinical")


def _tenant_owned_tables(admin: psycopg.Connection[dict[str, Any]]) -> list[dict[str, Any]]:
    return admin.execute(
        """
        SELECT n.nspname || '.' || c.relname AS name, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
               c.relispartition
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s)
          AND (EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                       AND NOT a.attisdropped) OR (n.nspname, c.relname) = ('public', 'tenants'))
        ORDER BY 1
        """,
        (list(SCHEMAS),),
    ).fetchall()


def test_every_tenant_owned_table_and_partition_forces_rls(admin: psycopg.Connection[dict[str, Any]]) -> None:
    tables = _tenant_owned_tables(admin)
    names = {t["name"] for t in tables}
    # The set is what the mission needs, partitions included: a shrinking set would hide a gap.
    for expected in (
        "public.users",
        "healthcare.medications",
        "healthcare.consents",
        "audit.audit_logs",
        "audit.audit_logs_default",
        "clinical.clinical_rules",
        "clinical.interaction_overrides",
    ):
        assert expected in names
    assert any(t["relispartition"] for t in tables), "audit partitions must be checked too"
    unprotected = [t["name"] for t in tables if not (t["relrowsecurity"] and t["relforcerowsecurity"])]
    assert unprotected == []


def test_runtime_role_owns_nothing_and_bypasses_nothing(admin: psycopg.Connection[dict[str, Any]]) -> None:
    role = admin.execute(
        "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb FROM pg_roles"
        " WHERE rolname = 'praneya_app'"
    ).fetchone()
    assert role == {
        "rolsuper": False,
        "rolbypassrls": False,
        "rolcanlogin": True,
        "rolcreaterole": False,
        "rolcreatedb": False,
    }
    owned = admin.execute(
        "SELECT count(*) AS n FROM pg_class c WHERE c.relowner = 'praneya_app'::regrole"
    ).fetchone()
    assert owned == {"n": 0}
    assert admin.execute("SELECT pg_has_role('praneya_app', 'authenticated', 'MEMBER') AS m").fetchone() == {
        "m": True
    }
    owners = admin.execute(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'S', 'i')",
        (list(SCHEMAS),),
    ).fetchall()
    assert owners == [{"owner": "praneya_owner"}]


def test_security_definer_functions_pin_search_path_and_refuse_public(
    admin: psycopg.Connection[dict[str, Any]],
) -> None:
    rows = admin.execute(
        """
        SELECT n.nspname || '.' || p.proname AS name, p.proconfig,
               has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prosecdef AND n.nspname = ANY(%s)
        """,
        (list(SCHEMAS),),
    ).fetchall()
    assert len(rows) >= 10
    bad_path = [r["name"] for r in rows if not r["proconfig"] or 'search_path=""' not in r["proconfig"]]
    assert bad_path == []
    public = [r["name"] for r in rows if r["public_exec"]]
    assert public == []

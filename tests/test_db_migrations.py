"""Alembic from an empty database to head and back, on databases of their own.

Each test creates (and drops) a database with a unique name on the same cluster, so it can run
beside the per-worker test database: roles are cluster-wide and already exist, which is itself
one of the cases under test ("roles pre-existing works").
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from sqlalchemy import create_engine, text

from store.config import PROJECT_ROOT, sqlalchemy_url
from store.migrate import DriftDetected, check_drift
from store.roles import bootstrap_roles
from tests.fix_db import _libpq, create_database, db_name, migrate

pytestmark = pytest.mark.db

Conn = psycopg.Connection[dict[str, Any]]
OURS = ("public", "healthcare", "audit", "clinical")

# Every table issue 2 names (and what the mission needs beside the seed). A subset check: later
# migrations may add tables.
TABLES = {
    "public.tenants", "public.tenant_data_keys", "public.users", "public.family_accounts",
    "public.family_members", "public.recipes", "public.recipe_ingredients",
    "healthcare.health_profiles", "healthcare.medications", "healthcare.allergies", "healthcare.conditions",
    "healthcare.biometric_readings", "healthcare.consents", "healthcare.emergency_access_grants",
    "clinical.drug_interactions", "clinical.clinical_rules", "clinical.clinical_rule_versions",
    "clinical.drug_classes", "clinical.drug_ingredients", "clinical.drug_aliases",
    "clinical.interaction_pairs", "clinical.interaction_overrides", "clinical.knowledge_imports",
    "audit.audit_logs", "audit.audit_logs_archive", "audit.retention_policy",
}
ENUMS: dict[str, list[str] | None] = {
    "plan_type": None,
    "healthcare_role": ["END_USER", "CLINICAL_ADVISOR", "SUPER_ADMIN", "EMERGENCY_RESPONDER"],
    "subscription_tier": ["BASIC", "ENHANCED", "PREMIUM"],
    "interaction_severity": None,
    "interaction_type": None,
    "evidence_level": None,
    "allergen_category": None,
    "allergy_severity": ["MILD", "MODERATE", "SEVERE", "ANAPHYLACTIC"],
    "family_relationship": None,
    "permission_level": ["VIEW_ONLY", "MEMBER", "GUARDIAN", "ADMIN"],
    "clinical_rule_type": None,
    "rule_severity": ["INFO", "LOW", "MODERATE", "HIGH", "CRITICAL"],
}
FUNCTIONS = {
    "current_tenant_id", "current_user_id", "current_healthcare_role", "can_access_family_data",
    "has_emergency_access", "trigger_audit_phi_access", "emergency_health_access",
    "validate_hipaa_compliance",
    "manage_healthcare_retention", "prepare_point_in_time_recovery", "identify_slow_queries",
    "monitor_index_performance", "identify_unused_indexes", "update_healthcare_statistics",
}


@pytest.fixture
def fresh_db(server_url: str) -> Iterator[Callable[[], str]]:
    """Makes empty databases with unique names; drops them afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(db_name("mig", uuid.uuid4().hex[:12]))
        return create_database(server_url, names[-1])

    yield make
    base = sqlalchemy_url(server_url).set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(_libpq(base), autocommit=True) as c:
        for name in names:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _connect(url: str) -> Conn:
    return psycopg.connect(_libpq(url), autocommit=True, row_factory=dict_row)


def tables(c: Conn) -> set[str]:
    rows = c.execute("SELECT schemaname || '.' || tablename AS t FROM pg_tables WHERE schemaname = ANY(%s)",
                     (list(OURS),)).fetchall()
    return {r["t"] for r in rows}


def leftovers(c: Conn) -> dict[str, list[str]]:
    """Everything of ours that a downgrade to base must have removed."""
    q = {
        "schemas": "SELECT nspname AS x FROM pg_namespace"
                   " WHERE nspname IN ('healthcare', 'audit', 'clinical')",
        "relations": "SELECT n.nspname || '.' || c.relname AS x FROM pg_class c"
                     " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                     " AND c.relname NOT IN ('alembic_version', 'alembic_version_pkc')",
        "types": "SELECT typname AS x FROM pg_type WHERE typnamespace = 'public'::regnamespace"
                 " AND typname NOT IN ('alembic_version', '_alembic_version')",
        "functions": "SELECT proname AS x FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
        "policies": "SELECT policyname AS x FROM pg_policies",
        "default_acls": "SELECT defaclrole::regrole::text AS x FROM pg_default_acl",
    }
    return {k: sorted(r["x"] for r in c.execute(v).fetchall()) for k, v in q.items()}


def test_upgrade_head_creates_the_whole_database(fresh_db: Callable[[], str]) -> None:
    url = fresh_db()
    migrate(url)
    with _connect(url) as c:
        schemas = {r["nspname"] for r in c.execute("SELECT nspname FROM pg_namespace").fetchall()}
        assert set(OURS) <= schemas
        missing = TABLES - tables(c)
        assert missing == set()
        enums = {r["typname"]: r["labels"] for r in c.execute(
            "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels FROM pg_type t"
            " JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace = 'public'::regnamespace"
            " GROUP BY t.typname").fetchall()}
        for name, labels in ENUMS.items():
            assert name in enums
            if labels is not None:
                assert enums[name] == labels, name
        functions = {r["proname"] for r in c.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace").fetchall()}
        assert functions >= FUNCTIONS
        # Monthly audit partitions (current and next months) and the default one.
        parts = {r["relname"] for r in c.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'audit.audit_logs'::regclass").fetchall()}
        current = c.execute(
            "SELECT 'audit_logs_p' || to_char(now(), 'YYYYMM') AS p,"
            " 'audit_logs_p' || to_char(now() + interval '1 month', 'YYYYMM') AS n").fetchone()
        assert current is not None
        assert {current["p"], current["n"], "audit_logs_default"} <= parts
        owners = c.execute("SELECT DISTINCT tableowner AS o FROM pg_tables WHERE schemaname = ANY(%s)"
                           " AND tablename <> 'alembic_version'", (list(OURS),)).fetchall()
        assert owners == [{"o": "praneya_owner"}]


def test_downgrade_to_base_leaves_nothing_and_upgrade_again_works(fresh_db: Callable[[], str]) -> None:
    url = fresh_db()
    migrate(url)
    with _connect(url) as c:
        assert leftovers(c)["functions"], "control: an upgraded database has our functions"
    migrate(url, "base", down=True)
    with _connect(url) as c:
        kinds = ("schemas", "relations", "types", "functions", "policies", "default_acls")
        assert leftovers(c) == {k: [] for k in kinds}
        assert c.execute("SELECT count(*) AS n FROM public.alembic_version").fetchone() == {"n": 0}
    # Round trip: the same database goes up again, and matches the models.
    migrate(url)
    with _connect(url) as c:
        assert TABLES <= tables(c)
    check_drift(url)


def test_step_by_step_downgrade_and_upgrade(fresh_db: Callable[[], str]) -> None:
    # Every revision's downgrade undoes exactly its upgrade: down one step, up one step, at each level.
    url = fresh_db()
    migrate(url)
    with _connect(url) as c:
        head = c.execute("SELECT version_num AS v FROM public.alembic_version").fetchone()
        before = tables(c)
    migrate(url, "-1", down=True)
    migrate(url, "+1")
    with _connect(url) as c:
        assert c.execute("SELECT version_num AS v FROM public.alembic_version").fetchone() == head
        assert tables(c) == before


def test_drift_check_is_clean(database_url: str) -> None:
    check_drift(database_url)


def test_drift_check_can_fail(fresh_db: Callable[[], str]) -> None:
    # Control for the test above: a schema change the models do not know about is detected.
    url = fresh_db()
    migrate(url)
    with _connect(url) as c:
        c.execute("ALTER TABLE healthcare.medications ADD COLUMN sneaky text")
    with pytest.raises(DriftDetected, match="sneaky"):
        check_drift(url)


def test_bootstrap_twice_and_migrating_an_up_to_date_database_is_harmless(
    fresh_db: Callable[[], str], admin: Conn,
) -> None:
    url = fresh_db()
    migrate(url)
    migrate(url)  # bootstraps the roles again, then has nothing to do
    engine = create_engine(sqlalchemy_url(url))
    try:
        for _ in range(2):
            with engine.begin() as conn:
                bootstrap_roles(conn)
                assert conn.execute(text("SELECT count(*) FROM public.tenants")).scalar_one() == 0
    finally:
        engine.dispose()
    role = admin.execute("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles"
                         " WHERE rolname = 'praneya_app'").fetchone()
    assert role == {"rolsuper": False, "rolbypassrls": False, "rolcanlogin": True}


def test_two_databases_on_one_cluster_migrate_at_the_same_time(fresh_db: Callable[[], str]) -> None:
    # Separate processes (Alembic's context is process-global), racing on the cluster-wide roles.
    urls = [fresh_db(), fresh_db()]
    script = "import sys; from tests.fix_db import migrate; migrate(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", script, url], cwd=PROJECT_ROOT, stderr=subprocess.PIPE)
             for url in urls]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    for url in urls:
        with _connect(url) as c:
            assert TABLES <= tables(c)


def test_0010_downgrade_keeps_reviews_and_ended_grants(fresh_db: Callable[[], str]) -> None:
    # Downgrading past the review history refuses while it holds reviews (they would be lost), and a
    # grant that was ended early stays ended once only its expiry can say so.
    url = fresh_db()
    migrate(url)
    with _connect(url) as c:
        c.execute("INSERT INTO public.tenants (id, name, encryption_key_id) VALUES ('t', 'T', 'k')")
        for user in ("patient", "responder", "admin"):
            c.execute("INSERT INTO public.users (id, tenant_id) VALUES (%s, 't')", (user,))
        c.execute(
            "INSERT INTO healthcare.emergency_access_grants (id, tenant_id, patient_user_id, grantee_user_id,"
            " reason_code, encrypted_reason_text, granted_at, expires_at, ended_at, ended_by, encrypted_end_reason)"
            " VALUES ('g', 't', 'patient', 'responder', 'BTG', 'pv1.1.x', now() - interval '10 minutes',"
            " now() + interval '50 minutes', now() - interval '5 minutes', 'responder', 'pv1.1.y')"
        )
        c.execute(
            "INSERT INTO healthcare.emergency_access_reviews (id, tenant_id, grant_id, patient_user_id,"
            " reviewer_user_id, outcome) VALUES ('r', 't', 'g', 'patient', 'admin', 'APPROPRIATE')"
        )
    with pytest.raises(Exception, match="reviews exist in the history"):
        migrate(url, "0009_alert_exposures", down=True)
    with _connect(url) as c:
        c.execute("SET ROLE praneya_owner")  # the only role the append-only trigger lets delete
        c.execute("DELETE FROM healthcare.emergency_access_reviews")
    migrate(url, "0009_alert_exposures", down=True)
    with _connect(url) as c:
        closed = c.execute(
            "SELECT expires_at <= now() AS closed FROM healthcare.emergency_access_grants WHERE id = 'g'"
        ).fetchone()
        assert closed == {"closed": True}
    migrate(url)


_HELPERS = ("current_tenant_id", "current_user_id", "current_healthcare_role", "current_client_id",
            "current_acting_for", "is_family_member", "can_access_family_data", "has_emergency_access",
            "current_client_scopes", "current_caller_role", "audit_row_hash", "redact_phi")  # fmt: skip


def _helpers(c: Conn) -> dict[str, tuple[Any, ...]]:
    rows = c.execute(
        "SELECT p.proname, l.lanname, p.prosecdef, p.provolatile, p.proparallel, p.proconfig,"
        " pg_get_function_identity_arguments(p.oid) AS args, p.prorettype::regtype::text AS returns,"
        " coalesce(p.proacl::text, '') AS acl"
        " FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('public', 'audit') AND p.proname = ANY(%s)",
        (list(_HELPERS),),
    ).fetchall()
    return {r["proname"]: tuple(v for k, v in r.items() if k != "proname") for r in rows}


def _answers(c: Conn) -> list[Any]:
    # The helpers' results in one caller's context: the same before and after the language changes.
    c.execute("BEGIN")
    c.execute("SELECT set_config('app.tenant_id', 't', true), set_config('app.user_id', 'u', true),"
              " set_config('app.role', 'END_USER', true)")  # fmt: skip
    row = c.execute(
        "SELECT current_tenant_id() AS t, current_user_id() AS u, current_healthcare_role()::text AS r,"
        " current_client_id() AS c, current_acting_for() AS a, is_family_member('f') AS fm,"
        " can_access_family_data('other') AS fam, has_emergency_access('other') AS btg,"
        " current_client_scopes() AS scopes, current_caller_role() AS caller,"
        " audit.audit_row_hash('{\"a\": 1, \"row_hash\": \"x\"}'::jsonb) AS h,"
        " audit.redact_phi('{\"encrypted_x\": \"pv1\", \"wrapped_key\": \"k\", \"y\": 2}'::jsonb) AS red"
    ).fetchone()
    c.execute("ROLLBACK")
    return list(row.values()) if row else []


def test_0016_rls_helpers_are_plpgsql_with_the_same_attributes_and_answers(fresh_db: Callable[[], str]) -> None:
    # SQL functions with a SET clause are parsed and planned on every call; PL/pgSQL keeps its plans.
    # The language is all that changes: security, volatility, search_path, privileges and results stay.
    url = fresh_db()
    migrate(url)
    with _connect(url) as c:
        head, head_answers = _helpers(c), _answers(c)
    assert sorted(head) == sorted(_HELPERS)
    assert {name: h[0] for name, h in head.items()} == {name: "plpgsql" for name in _HELPERS}
    assert head_answers[:3] == ["t", "u", "END_USER"] and head_answers[6] is False
    assert head_answers[11] == {"encrypted_x": "sha256:" + head_answers[11]["encrypted_x"][7:], "wrapped_key":
                                "[redacted]", "y": 2} and len(head_answers[11]["encrypted_x"]) == 23  # fmt: skip
    migrate(url, "0015_condition_snomed", down=True)
    with _connect(url) as c:
        before, before_answers = _helpers(c), _answers(c)
    assert {name: h[0] for name, h in before.items()} == {name: "sql" for name in _HELPERS}
    assert {n: h[1:] for n, h in before.items()} == {n: h[1:] for n, h in head.items()}
    assert before_answers == head_answers

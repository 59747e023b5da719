"""The seed's functions, exercised for real: break-the-glass, HIPAA validation, recovery and
maintenance helpers.

emergency_health_access() and validate_hipaa_compliance() are what the service calls, so they are
called as praneya_app. The others are operator functions (not executable by the runtime role, which
is checked too) and are called as the superuser.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.fix_db import AppSession
from tests.fix_world import Patient, World, ciphertext

pytestmark = pytest.mark.db

Conn = psycopg.Connection[dict[str, Any]]
CALL = "SELECT public.emergency_health_access(%s, %s, %s) AS r"


# -- emergency_health_access ----------------------------------------------------------------------
@dataclass(frozen=True)
class Emergency:
    tenant: str
    patient: Patient
    responder: str
    critical: frozenset[str]  # active SEVERE / ANAPHYLACTIC allergies
    active_meds: frozenset[str]
    active_conditions: frozenset[str]


@pytest.fixture
def emergency(world: World) -> Emergency:
    t = world.tenant()
    uid = world.user(t)
    pid = world.profile(t, uid)
    a = {sev: world.allergy(t, uid, pid, sev) for sev in ("MILD", "MODERATE", "SEVERE", "ANAPHYLACTIC")}
    world.allergy(t, uid, pid, "ANAPHYLACTIC", active=False)  # resolved: not critical any more
    meds = {world.medication(t, uid, pid), world.medication(t, uid, pid, is_emergency_medication=True)}
    world.medication(t, uid, pid, active=False)
    condition = world.condition(t, uid, pid, is_critical=True)
    world.condition(t, uid, pid, active=False)
    return Emergency(t, Patient(t, uid, pid), world.user(t, "EMERGENCY_RESPONDER"),
                     frozenset({a["SEVERE"], a["ANAPHYLACTIC"]}), frozenset(meds), frozenset({condition}))


def _grants(admin: Conn, patient: str) -> int:
    row = admin.execute("SELECT count(*) AS n FROM healthcare.emergency_access_grants"
                        " WHERE patient_user_id = %s", (patient,)).fetchone()
    assert row is not None
    return int(row["n"])


@pytest.mark.parametrize("reason", ["", "   ", "\t\n", None], ids=["empty", "spaces", "whitespace", "null"])
def test_break_glass_refuses_a_missing_reason(emergency: Emergency, app: AppSession, admin: Conn,
                                              reason: str | None) -> None:
    e = emergency
    with app.scoped(e.tenant, e.responder, "EMERGENCY_RESPONDER") as c, pytest.raises(
            psycopg.errors.InvalidParameterValue, match="reason is required"):
        c.execute(CALL, (e.patient.user, e.responder, reason))
    assert _grants(admin, e.patient.user) == 0


@pytest.mark.parametrize("role", ["END_USER", "SUPER_ADMIN", "NURSE", None], ids=str)
def test_break_glass_refuses_roles_that_may_not_break_it(
    emergency: Emergency, world: World, app: AppSession, admin: Conn, role: str | None,
) -> None:
    e = emergency
    caller = world.user(e.tenant, role if role in ("END_USER", "SUPER_ADMIN") else "END_USER")
    with app.scoped(e.tenant, caller, role) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute(CALL, (e.patient.user, caller, ciphertext("reason")))
    assert _grants(admin, e.patient.user) == 0


def test_break_glass_refuses_a_request_in_someone_elses_name(
    emergency: Emergency, world: World, app: AppSession, admin: Conn,
) -> None:
    e = emergency
    colleague = world.user(e.tenant, "EMERGENCY_RESPONDER")
    with app.scoped(e.tenant, e.responder, "EMERGENCY_RESPONDER") as c, pytest.raises(
            psycopg.errors.InsufficientPrivilege, match="authenticated user"):
        c.execute(CALL, (e.patient.user, colleague, ciphertext("reason")))
    assert _grants(admin, e.patient.user) == 0


def test_break_glass_refuses_without_context(emergency: Emergency, app: AppSession) -> None:
    e = emergency
    with app.connect() as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute(CALL, (e.patient.user, e.responder, ciphertext("reason")))


def test_a_patient_of_another_tenant_looks_exactly_like_a_missing_one(
    emergency: Emergency, world: World, app: AppSession, admin: Conn,
) -> None:
    e = emergency
    elsewhere = world.patient(world.tenant())
    messages = []
    for target in (elsewhere.user, world.id("nobody")):
        with app.scoped(e.tenant, e.responder, "EMERGENCY_RESPONDER") as c, pytest.raises(
                psycopg.errors.NoDataFound) as err:
            c.execute(CALL, (target, e.responder, ciphertext("reason")))
        messages.append(err.value.diag.message_primary)
    assert messages == ["patient not found", "patient not found"]
    assert _grants(admin, elsewhere.user) == 0


@pytest.mark.parametrize("minutes", [0, -5, 721])
def test_break_glass_refuses_an_unreasonable_window(
    emergency: Emergency, app: AppSession, minutes: int,
) -> None:
    e = emergency
    with app.scoped(e.tenant, e.responder, "EMERGENCY_RESPONDER") as c, pytest.raises(
            psycopg.errors.InvalidParameterValue):
        c.execute("SELECT public.emergency_health_access(%s, %s, %s, 'ETREAT', %s)",
                  (e.patient.user, e.responder, ciphertext("reason"), minutes))


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_break_glass_returns_critical_data_grants_and_audits(
    emergency: Emergency, app: AppSession, admin: Conn,
) -> None:
    e = emergency
    reason = ciphertext("reason")
    with app.scoped(e.tenant, e.responder, "EMERGENCY_RESPONDER") as c:
        row = c.execute("SELECT now() AS at, " + CALL.removeprefix("SELECT "),
                        (e.patient.user, e.responder, reason)).fetchone()
    assert row is not None
    result, started = row["r"], row["at"]

    assert result["patient_user_id"] == e.patient.user
    assert result["health_profile_id"] == e.patient.profile
    allergies = result["critical_allergies"]
    assert {a["id"] for a in allergies} == e.critical
    assert {a["severity"] for a in allergies} == {"SEVERE", "ANAPHYLACTIC"}
    stored = {r["id"]: r["encrypted_allergen"] for r in admin.execute(
        "SELECT id, encrypted_allergen FROM healthcare.allergies WHERE user_id = %s", (e.patient.user,))}
    assert all(a["encrypted_allergen"] == stored[a["id"]] for a in allergies)  # ciphertext, as stored
    assert {m["id"] for m in result["active_medications"]} == e.active_meds
    assert all(m["encrypted_generic_name"].startswith("v1:ct:") for m in result["active_medications"])
    assert {x["id"] for x in result["active_conditions"]} == e.active_conditions
    expires = _at(result["expires_at"])
    assert abs(expires - (started + timedelta(minutes=60))) < timedelta(seconds=5)

    grant = admin.execute("SELECT * FROM healthcare.emergency_access_grants WHERE id = %s",
                          (result["grant_id"],)).fetchone()
    assert grant is not None
    assert (grant["grantee_user_id"], grant["patient_user_id"], grant["tenant_id"]) == (
        e.responder, e.patient.user, e.tenant)
    assert grant["expires_at"] == expires

    audit = admin.execute("SELECT * FROM audit.audit_logs WHERE action = 'EMERGENCY_ACCESS'"
                          " AND patient_id = %s", (e.patient.user,)).fetchall()
    assert len(audit) == 1
    assert "BREAK_GLASS" in audit[0]["compliance_flags"]
    assert audit[0]["risk_score"] >= 0.9
    assert audit[0]["user_id"] == e.responder
    assert audit[0]["phi_accessed"] is True
    assert audit[0]["details"]["grant_id"] == result["grant_id"]
    # The reason reached the grant only; no audit row of the tenant carries it.
    leaked = admin.execute("SELECT count(*) AS n FROM audit.audit_logs a WHERE tenant_id = %s"
                           " AND strpos(a::text, %s) > 0", (e.tenant, reason)).fetchone()
    assert leaked == {"n": 0}


def test_the_grant_opens_that_patient_and_then_expires(
    emergency: Emergency, world: World, app: AppSession, admin: Conn,
) -> None:
    e = emergency

    def meds_seen() -> int:
        with app.scoped(e.tenant, e.responder, "EMERGENCY_RESPONDER") as c:
            row = c.execute("SELECT count(*) AS n FROM healthcare.medications").fetchone()
        assert row is not None
        return int(row["n"])

    world.patient(e.tenant)  # someone else in the tenant, never visible to the responder
    assert meds_seen() == 0
    grant = world.emergency_grant(e.tenant, e.responder, e.patient.user)
    assert meds_seen() == 3  # that patient's medications, all of them, and nobody else's
    admin.execute("UPDATE healthcare.emergency_access_grants SET granted_at = now() - interval '61 minutes',"
                  " expires_at = now() - interval '1 minute' WHERE id = %s", (grant["grant_id"],))
    assert meds_seen() == 0


def test_a_clinical_advisor_may_also_break_the_glass(emergency: Emergency, world: World) -> None:
    e = emergency
    advisor = world.user(e.tenant, "CLINICAL_ADVISOR")
    result = world.emergency_grant(e.tenant, advisor, e.patient.user, role="CLINICAL_ADVISOR")
    assert {a["id"] for a in result["critical_allergies"]} == e.critical


# -- validate_hipaa_compliance --------------------------------------------------------------------
def validate(conn: Conn, tenant: str) -> tuple[dict[str, Any], dict[str, bool]]:
    row = conn.execute("SELECT public.validate_hipaa_compliance(%s) AS r", (tenant,)).fetchone()
    assert row is not None
    report: dict[str, Any] = row["r"]
    return report, {c["check"]: c["passed"] for c in report["checks"]}


@pytest.fixture
def compliant_tenant(world: World) -> str:
    t = world.tenant()
    for role in ("CLINICAL_ADVISOR", "SUPER_ADMIN", "EMERGENCY_RESPONDER"):
        world.user(t, role, mfa=True)
    world.user(t, "END_USER", mfa=False)  # end users see only their own data: MFA not required
    world.user(t, "CLINICAL_ADVISOR", mfa=False, active=False)  # inactive accounts do not count
    return t


def _ssl_on(admin: Conn) -> bool:
    row = admin.execute("SELECT current_setting('ssl') = 'on' AS on").fetchone()
    assert row is not None
    return bool(row["on"])


def test_a_compliant_tenant_passes_every_check_the_database_controls(
    compliant_tenant: str, admin: Conn,
) -> None:
    report, checks = validate(admin, compliant_tenant)
    # ssl is the server's configuration, not ours: it must merely be reported truthfully.
    assert checks == {"rls_forced": True, "phi_audit_triggers": True, "tenant_data_key": True,
                      "mfa_for_phi_roles": True, "ssl": _ssl_on(admin), "audit_retention": True,
                      "runtime_roles_no_bypass": True}
    passed = sum(checks.values())
    assert (report["passed"], report["total"]) == (passed, len(checks))
    assert float(report["score"]) == round(100 * passed / len(checks), 1)
    assert report["compliant"] is (passed == len(checks))
    assert len(report["recommendations"]) == len(checks) - passed


def test_a_phi_role_without_mfa_fails_the_mfa_check(compliant_tenant: str, world: World, admin: Conn) -> None:
    baseline, _ = validate(admin, compliant_tenant)
    world.user(compliant_tenant, "SUPER_ADMIN", mfa=False)
    report, checks = validate(admin, compliant_tenant)
    assert checks["mfa_for_phi_roles"] is False
    assert report["passed"] == baseline["passed"] - 1
    assert float(report["score"]) < float(baseline["score"])
    assert any("MFA" in r for r in report["recommendations"])


@pytest.mark.parametrize("how", ["no-key", "retired-key"])
def test_a_tenant_without_an_active_data_key_fails_the_key_check(world: World, admin: Conn, how: str) -> None:
    t = world.tenant(with_key=how != "no-key")
    if how == "retired-key":
        admin.execute("UPDATE public.tenant_data_keys SET retired_at = now() WHERE tenant_id = %s", (t,))
    ok = world.tenant()
    good, _ = validate(admin, ok)
    report, checks = validate(admin, t)
    assert checks["tenant_data_key"] is False
    assert float(report["score"]) < float(good["score"])


@pytest.mark.parametrize(("sabotage", "check"), [
    ("ALTER TABLE healthcare.medications NO FORCE ROW LEVEL SECURITY", "rls_forced"),
    ("ALTER TABLE audit.audit_logs_default DISABLE ROW LEVEL SECURITY", "rls_forced"),
    ("ALTER TABLE healthcare.allergies DISABLE TRIGGER audit_allergies_phi", "phi_audit_triggers"),
    ("DROP TRIGGER audit_consents_phi ON healthcare.consents", "phi_audit_triggers"),
    ("UPDATE audit.retention_policy SET retention_period = '6 years'", None),  # still enough
], ids=["rls-not-forced", "partition-without-rls", "trigger-disabled", "trigger-dropped",
        "six-years-is-enough"])
def test_breaking_a_catalog_safeguard_lowers_the_score(
    compliant_tenant: str, admin: Conn, sabotage: str, check: str | None,
) -> None:
    baseline, _ = validate(admin, compliant_tenant)
    # DDL is transactional: the sabotage is rolled back and never seen by any other test.
    with admin.transaction(force_rollback=True):
        admin.execute(sabotage)
        report, checks = validate(admin, compliant_tenant)
    if check is None:
        assert report["passed"] == baseline["passed"]
    else:
        assert checks[check] is False
        assert report["passed"] == baseline["passed"] - 1
        assert float(report["score"]) < float(baseline["score"])
    assert validate(admin, compliant_tenant)[0]["passed"] == baseline["passed"]


def test_the_service_may_validate_its_own_tenant_only(
    compliant_tenant: str, world: World, app: AppSession,
) -> None:
    boss = world.user(compliant_tenant, "SUPER_ADMIN")
    other = world.tenant()
    with app.scoped(compliant_tenant, boss, "SUPER_ADMIN") as c:
        _, checks = validate(c, compliant_tenant)
        assert checks["tenant_data_key"] is True
    with app.scoped(compliant_tenant, boss, "SUPER_ADMIN") as c, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        validate(c, other)


def test_validating_an_unknown_tenant_fails(admin: Conn, world: World) -> None:
    with pytest.raises(psycopg.errors.NoDataFound):
        validate(admin, world.id("no-such-tenant"))


# -- operator functions ---------------------------------------------------------------------------
OPERATOR_CALLS = [
    "SELECT public.prepare_point_in_time_recovery()",
    "SELECT * FROM public.identify_slow_queries()",
    "SELECT * FROM public.monitor_index_performance()",
    "SELECT * FROM public.identify_unused_indexes()",
    "SELECT public.update_healthcare_statistics()",
    "SELECT public.manage_healthcare_retention()",
]


@pytest.mark.parametrize("call", OPERATOR_CALLS, ids=lambda c: c.split("public.")[1].split("(")[0])
def test_operator_functions_are_not_for_the_runtime_role(world: World, app: AppSession, call: str) -> None:
    t = world.tenant()
    boss = world.user(t, "SUPER_ADMIN")
    with app.scoped(t, boss, "SUPER_ADMIN") as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute(call)


def test_prepare_point_in_time_recovery_reports_wal_and_a_current_lsn(admin: Conn) -> None:
    row = admin.execute("SELECT public.prepare_point_in_time_recovery() AS r,"
                        " current_setting('wal_level') AS wal,"
                        " current_setting('archive_mode') AS archive").fetchone()
    assert row is not None
    r = row["r"]
    assert (r["wal_level"], r["archive_mode"]) == (row["wal"], row["archive"])
    assert r["in_recovery"] is False
    lsn = admin.execute("SELECT %s::pg_lsn <= pg_current_wal_lsn() AS ok", (r["current_wal_lsn"],)).fetchone()
    assert lsn == {"ok": True}
    assert r["ready"] is (r["recommendations"] == [])
    assert r["ready"] is (row["wal"] in ("replica", "logical") and row["archive"] != "off")


def test_identify_slow_queries_answers_with_or_without_pg_stat_statements(admin: Conn) -> None:
    installed = admin.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
    rows = admin.execute("SELECT * FROM public.identify_slow_queries(0, 5)").fetchall()
    if installed is None:
        assert len(rows) == 1
        assert rows[0]["query"] is None
        assert "pg_stat_statements is not installed" in rows[0]["message"]
        assert "CREATE EXTENSION pg_stat_statements" in rows[0]["message"]
    else:
        assert len(rows) <= 5
        assert all(r["message"] is None and r["calls"] >= 1 for r in rows)


def test_monitor_index_performance_lists_our_indexes(admin: Conn) -> None:
    rows = admin.execute("SELECT * FROM public.monitor_index_performance()").fetchall()
    names = {r["index_name"] for r in rows}
    for expected in ("idx_medications_profile_active", "idx_allergies_emergency",
                     "idx_consents_grantee_active", "idx_emergency_grants_grantee",
                     "idx_biometric_readings_trend", "idx_users_tenant_email"):
        assert expected in names
    # A partitioned table's indexes are reported per partition (the parent index holds no data).
    assert any(r["table_name"] == "audit_logs_default" for r in rows)
    assert {r["schema_name"] for r in rows} <= {"public", "healthcare", "audit", "clinical"}
    assert all(r["index_size_bytes"] > 0 for r in rows)


def test_identify_unused_indexes_names_only_droppable_indexes(admin: Conn) -> None:
    rows = admin.execute("SELECT * FROM public.identify_unused_indexes()").fetchall()
    assert rows, "a freshly migrated test database has indexes nobody has scanned yet"
    assert all(not r["definition"].startswith("CREATE UNIQUE") for r in rows)
    assert not any(r["index_name"].endswith("_pkey") for r in rows)
    assert {r["schema_name"] for r in rows} <= {"public", "healthcare", "audit", "clinical"}


def test_update_healthcare_statistics_analyzes_our_tables(admin: Conn) -> None:
    before = admin.execute("SELECT now() AS at").fetchone()
    assert before is not None
    row = admin.execute("SELECT public.update_healthcare_statistics() AS r").fetchone()
    assert row is not None
    analyzed = set(row["r"]["analyzed"])
    assert {"healthcare.medications", "healthcare.allergies", "public.users", "audit.audit_logs",
            "clinical.clinical_rules"} <= analyzed
    # The statistics system records it (flushed asynchronously: allow it a moment).
    for _ in range(50):
        admin.execute("SELECT pg_stat_clear_snapshot()")
        stat = admin.execute("SELECT last_analyze FROM pg_stat_user_tables"
                             " WHERE schemaname = 'healthcare' AND relname = 'medications'").fetchone()
        if stat and stat["last_analyze"] and stat["last_analyze"] >= before["at"]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("healthcare.medications was not analyzed")

"""The audit trail: every PHI write leaves a row naming the end user, without the PHI itself; the
trail is append-only for runtime roles; retention archives only what is past the period; and the
health profile's version counts every clinical change.

Writes under test run as praneya_app with an end user's context. Audit rows are then read back as
the superuser, because what matters here is what was written, not who may read it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.fix_db import AppSession
from tests.fix_world import Patient, World, ciphertext, insert

pytestmark = pytest.mark.db

Conn = psycopg.Connection[dict[str, Any]]
NOW = datetime.now().astimezone()


def digest(value: str) -> str:
    """What audit.redact_phi() writes in place of an encrypted_ value."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PhiTable:
    table: str
    encrypted: str  # the encrypted column the test writes and changes

    def row(self, world: World, p: Patient, user: str, value: str) -> dict[str, Any]:
        base = {"id": world.id(self.table.split(".")[1]), "tenant_id": p.tenant, "user_id": user}
        if self.table == "healthcare.health_profiles":
            return {**base, self.encrypted: value}
        extras: dict[str, dict[str, Any]] = {
            "healthcare.allergies": {"allergen_category": "FOOD", "severity": "SEVERE"},
            "healthcare.biometric_readings": {"reading_type": "weight", "taken_at": NOW},
        }
        extra = extras.get(self.table, {})
        return {**base, "health_profile_id": p.profile, self.encrypted: value, **extra}


PHI = [
    PhiTable("healthcare.health_profiles", "encrypted_blood_type"),
    PhiTable("healthcare.medications", "encrypted_generic_name"),
    PhiTable("healthcare.allergies", "encrypted_allergen"),
    PhiTable("healthcare.conditions", "encrypted_name"),
    PhiTable("healthcare.biometric_readings", "encrypted_value"),
]


def audit_rows(admin: Conn, resource_id: str) -> list[dict[str, Any]]:
    return admin.execute(
        "SELECT a.*, a::text AS whole FROM audit.audit_logs a WHERE resource_id = %s"
        " ORDER BY \"timestamp\", action",
        (resource_id,)).fetchall()


@pytest.mark.parametrize("phi", PHI, ids=[p.table.split(".")[1] for p in PHI])
def test_phi_writes_are_audited_naming_the_end_user_without_ciphertext(
    world: World, app: AppSession, admin: Conn, phi: PhiTable,
) -> None:
    t = world.tenant()
    owner = world.user(t)
    patient = Patient(t, owner, world.profile(t, owner))
    boss = world.user(t, "SUPER_ADMIN")
    # A profile row is the user's profile itself: the user gets a fresh one (one profile per user).
    user = world.user(t) if phi.table == "healthcare.health_profiles" else owner
    first, second = ciphertext("first"), ciphertext("second")
    row = phi.row(world, patient, user, first)
    with app.scoped(t, user, "END_USER") as c:
        insert(c, phi.table, row, returning=False)
    with app.scoped(t, user, "END_USER") as c:
        c.execute(f"UPDATE {phi.table} SET {phi.encrypted} = %s WHERE id = %s", (second, row["id"]))
    with app.scoped(t, boss, "SUPER_ADMIN") as c:  # only a super admin deletes health records
        assert c.execute(f"DELETE FROM {phi.table} WHERE id = %s", (row["id"],)).rowcount == 1

    rows = audit_rows(admin, row["id"])
    assert [(r["action"], r["user_id"]) for r in rows] == [
        ("PHI_INSERT", user), ("PHI_UPDATE", user), ("PHI_DELETE", boss)]
    for r in rows:
        assert r["tenant_id"] == t
        assert r["patient_id"] == user
        assert r["resource_type"] == phi.table
        assert r["db_role"] == "praneya_app"
        assert r["phi_accessed"] is True
        assert "NO_END_USER" not in r["compliance_flags"]
        # Neither ciphertext appears anywhere in the audit row, in any column.
        assert first not in r["whole"] and second not in r["whole"]
    insert_row, update_row, delete_row = rows
    assert insert_row["old_values"] is None
    assert insert_row["new_values"][phi.encrypted] == digest(first)
    assert update_row["old_values"][phi.encrypted] == digest(first)
    assert update_row["new_values"][phi.encrypted] == digest(second)
    assert delete_row["old_values"][phi.encrypted] == digest(second)
    assert delete_row["new_values"] is None
    # Non-PHI columns stay readable, so the trail still says what changed.
    assert insert_row["new_values"]["id"] == row["id"]


def test_a_write_without_an_end_user_is_flagged(world: World, admin: Conn) -> None:
    # Setup writes (superuser, no context) are audited too, and say that nobody was named.
    t = world.tenant()
    p = world.patient(t)
    rows = audit_rows(admin, p.rows["healthcare.medications"])
    assert [r["action"] for r in rows] == ["PHI_INSERT"]
    assert rows[0]["user_id"] is None
    assert rows[0]["compliance_flags"] == ["NO_END_USER"]


def test_end_user_reads_own_audit_rows_only(world: World, app: AppSession) -> None:
    t = world.tenant()
    me, other = world.patient(t), world.patient(t)
    for p in (me, other):
        with app.scoped(t, p.user, "END_USER") as c:
            c.execute("UPDATE healthcare.medications SET is_active = false WHERE id = %s",
                      (p.rows["healthcare.medications"],))
    with app.scoped(t, me.user, "END_USER") as c:
        users = {r["user_id"] for r in c.execute("SELECT user_id FROM audit.audit_logs").fetchall()}
    assert users == {me.user}


# -- append-only ----------------------------------------------------------------------------------
@pytest.fixture
def audited_tenant(world: World, app: AppSession) -> Iterator[tuple[str, str]]:
    t = world.tenant()
    p = world.patient(t)
    boss = world.user(t, "SUPER_ADMIN")
    with app.scoped(t, p.user, "END_USER") as c:
        c.execute("UPDATE healthcare.medications SET is_active = false WHERE user_id = %s", (p.user,))
    insert(world.admin, "audit.audit_logs_archive", {
        "id": world.id("archived"), "tenant_id": t, "db_role": "praneya_app", "action": "OLD",
        "outcome": "SUCCESS", "phi_accessed": True, "risk_score": 0.2, "compliance_flags": ["X"],
        "timestamp": NOW - timedelta(days=3000)})
    yield t, boss


@pytest.mark.parametrize("table", ["audit.audit_logs", "audit.audit_logs_archive"])
@pytest.mark.parametrize("statement", ["UPDATE {} SET action = 'TAMPERED'", "DELETE FROM {}"],
                         ids=["update", "delete"])
def test_runtime_role_cannot_change_or_remove_audit_rows(
    audited_tenant: tuple[str, str], app: AppSession, admin: Conn, table: str, statement: str,
) -> None:
    t, boss = audited_tenant
    count = f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %s"
    with app.scoped(t, boss, "SUPER_ADMIN") as c:
        before = c.execute(count, (t,)).fetchone()
        assert before is not None and before["n"] > 0  # control: the super admin sees the rows
        with pytest.raises(psycopg.errors.InsufficientPrivilege), c.transaction():
            c.execute(statement.format(table) + " WHERE tenant_id = %s", (t,))
    assert admin.execute(count, (t,)).fetchone() == before
    tampered = admin.execute(f"SELECT count(*) AS n FROM {table} WHERE action = 'TAMPERED'").fetchone()
    assert tampered == {"n": 0}


def test_even_a_superuser_that_is_not_the_owner_is_refused(
    audited_tenant: tuple[str, str], admin: Conn,
) -> None:
    # Defence in depth: the append-only trigger refuses anyone but praneya_owner (retention).
    t, _ = audited_tenant
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        admin.execute("DELETE FROM audit.audit_logs WHERE tenant_id = %s", (t,))


# -- retention ------------------------------------------------------------------------------------
def _audit_at(world: World, tenant: str, years_ago: float, label: str) -> str:
    return str(insert(world.admin, "audit.audit_logs", {
        "tenant_id": tenant, "action": label, "db_role": "test",
        "timestamp": datetime.now().astimezone() - timedelta(days=365.25 * years_ago)})["id"])


def _where_is(admin: Conn, audit_id: str) -> str:
    live = admin.execute("SELECT 1 FROM audit.audit_logs WHERE id = %s", (audit_id,)).fetchone()
    archived = admin.execute("SELECT 1 FROM audit.audit_logs_archive WHERE id = %s", (audit_id,)).fetchone()
    assert not (live and archived), "a row must be in exactly one place"
    return "live" if live else "archive" if archived else "gone"


def test_retention_archives_only_rows_beyond_the_period(world: World, admin: Conn) -> None:
    t = world.tenant()
    old = _audit_at(world, t, 8, "EIGHT_YEARS")
    inside = _audit_at(world, t, 6.5, "SIX_AND_A_HALF_YEARS")
    recent = _audit_at(world, t, 0.01, "RECENT")
    original = admin.execute("SELECT * FROM audit.audit_logs WHERE id = %s", (old,)).fetchone()
    assert original is not None

    result = admin.execute("SELECT public.manage_healthcare_retention() AS r").fetchone()
    assert result is not None and result["r"]["archived"] >= 1
    assert result["r"]["retention_period"] == "7 years"
    assert {k: _where_is(admin, v) for k, v in {"old": old, "inside": inside, "recent": recent}.items()} == {
        "old": "archive", "inside": "live", "recent": "live"}
    # The archived row is the same row, every column intact.
    moved = admin.execute("SELECT * FROM audit.audit_logs_archive WHERE id = %s", (old,)).fetchone()
    assert moved is not None and moved["archived_at"] is not None
    assert {k: moved[k] for k in original} == original

    # The period is configurable (here: down to HIPAA's six years for this call).
    admin.execute("SELECT public.manage_healthcare_retention('6 years')")
    assert (_where_is(admin, inside), _where_is(admin, recent)) == ("archive", "live")


def test_a_longer_configured_period_keeps_more(world: World, admin: Conn) -> None:
    t = world.tenant()
    old = _audit_at(world, t, 8, "EIGHT_YEARS")
    with admin.transaction(force_rollback=True):
        admin.execute("UPDATE audit.retention_policy SET retention_period = '10 years'")
        admin.execute("SELECT public.manage_healthcare_retention()")
        assert _where_is(admin, old) == "live"


def test_a_retention_shorter_than_six_years_is_refused(world: World, admin: Conn) -> None:
    t = world.tenant()
    five = _audit_at(world, t, 5.5, "FIVE_AND_A_HALF_YEARS")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="six years"):
        admin.execute("SELECT public.manage_healthcare_retention('5 years 11 months')")
    assert _where_is(admin, five) == "live"
    with pytest.raises(psycopg.errors.CheckViolation):
        admin.execute("UPDATE audit.retention_policy SET retention_period = '5 years'")


def test_retention_is_an_operator_function(world: World, app: AppSession) -> None:
    t = world.tenant()
    boss = world.user(t, "SUPER_ADMIN")
    with app.scoped(t, boss, "SUPER_ADMIN") as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("SELECT public.manage_healthcare_retention()")


# -- health profile version -----------------------------------------------------------------------
def _version(admin: Conn, profile: str) -> int:
    row = admin.execute("SELECT version FROM healthcare.health_profiles WHERE id = %s", (profile,)).fetchone()
    assert row is not None
    return int(row["version"])


@pytest.mark.parametrize("phi", PHI[1:4], ids=[p.table.split(".")[1] for p in PHI[1:4]])
def test_version_counts_every_change_to_medications_allergies_conditions(
    world: World, app: AppSession, admin: Conn, phi: PhiTable,
) -> None:
    t = world.tenant()
    owner = world.user(t)
    p = Patient(t, owner, world.profile(t, owner))
    boss = world.user(t, "SUPER_ADMIN")
    start = _version(admin, p.profile)
    row = phi.row(world, p, owner, ciphertext())
    with app.scoped(t, owner, "END_USER") as c:
        insert(c, phi.table, row, returning=False)
    assert _version(admin, p.profile) == start + 1
    with app.scoped(t, owner, "END_USER") as c:
        c.execute(f"UPDATE {phi.table} SET is_active = false WHERE id = %s", (row["id"],))
    assert _version(admin, p.profile) == start + 2
    with app.scoped(t, boss, "SUPER_ADMIN") as c:
        c.execute(f"DELETE FROM {phi.table} WHERE id = %s", (row["id"],))
    assert _version(admin, p.profile) == start + 3


@pytest.mark.parametrize(("change", "bumps"), [
    ("encrypted_blood_type = 'v1:ct:new-blood'", True),
    ("encrypted_pregnancy_status = 'v1:ct:pregnant'", True),
    ("subscription_tier = 'PREMIUM'", True),
    ("data_integrity_hash = 'hmac:abc'", False),
    ("last_verified = now()", False),
    ("data_integrity_hash = 'hmac:def', last_verified = now()", False),
], ids=["blood-type", "pregnancy-status", "tier", "integrity-hash-only", "last-verified-only",
        "hash-and-verified"])
def test_version_counts_profile_changes_but_not_the_integrity_refresh(
    world: World, app: AppSession, admin: Conn, change: str, bumps: bool,
) -> None:
    t = world.tenant()
    owner = world.user(t)
    profile = world.profile(t, owner)
    start = _version(admin, profile)
    with app.scoped(t, owner, "END_USER") as c:
        assert c.execute(f"UPDATE healthcare.health_profiles SET {change} WHERE id = %s",
                         (profile,)).rowcount == 1
    assert _version(admin, profile) == start + (1 if bumps else 0)


def test_version_cannot_be_set_to_an_arbitrary_number(world: World, app: AppSession, admin: Conn) -> None:
    t = world.tenant()
    owner = world.user(t)
    profile = world.profile(t, owner)
    start = _version(admin, profile)
    with app.scoped(t, owner, "END_USER") as c:
        c.execute("UPDATE healthcare.health_profiles SET version = 999 WHERE id = %s", (profile,))
    assert _version(admin, profile) == start + 1


def test_erasing_a_profile_with_its_records_works(world: World, app: AppSession, admin: Conn) -> None:
    # The cascade deletes children whose version trigger updates the profile being deleted.
    t = world.tenant()
    p = world.patient(t)
    boss = world.user(t, "SUPER_ADMIN")
    with app.scoped(t, boss, "SUPER_ADMIN") as c:
        assert c.execute("DELETE FROM healthcare.health_profiles WHERE id = %s", (p.profile,)).rowcount == 1
    assert admin.execute("SELECT count(*) AS n FROM healthcare.medications WHERE user_id = %s",
                         (p.user,)).fetchone() == {"n": 0}

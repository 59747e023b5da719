"""DESIGN.md's "Who sees what" table, row by row, on every table of one patient's health data.

Each case builds one tenant with a subject (a patient with a row in each PHI table) and a viewer,
then asks, as praneya_app with the viewer's context, which of the subject's rows are visible. The
expected answer is given per table, because consent is per category: a consent covering
MEDICATIONS opens healthcare.medications and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.fix_db import AppSession
from tests.fix_world import PHI_TABLES, Patient, World, ciphertext, insert, visible_ids

pytestmark = pytest.mark.db

Conn = psycopg.Connection[dict[str, Any]]
ALL = frozenset(t for t, _ in PHI_TABLES)
NONE: frozenset[str] = frozenset()
CATEGORY_TABLE = {c: t for t, c in PHI_TABLES}
TODAY = date.today()
NOW = datetime.now().astimezone()


@dataclass(frozen=True)
class Scene:
    tenant: str
    subject: Patient
    viewer: str
    viewer_role: str


def seen_tables(app: AppSession, scene: Scene, patient: Patient | None = None) -> frozenset[str]:
    """The PHI tables in which the viewer sees the patient's row (and never a row it should not)."""
    target = patient or scene.subject
    seen = set()
    with app.scoped(scene.tenant, scene.viewer, scene.viewer_role) as c:
        for table, _ in PHI_TABLES:
            ids = visible_ids(c, table, "user_id = %s", (target.user,))
            assert ids <= {target.rows[table]}
            if ids:
                seen.add(table)
    return frozenset(seen)


# -- family: a minor and their guardian --------------------------------------------------------------
@dataclass(frozen=True)
class FamilyCase:
    permission_level: str = "GUARDIAN"
    can_view_health_data: bool = True
    is_minor: bool = True
    minor_until: date | None = TODAY + timedelta(days=400)
    guardian_consent: bool = True
    same_family: bool = True


FAMILY_CASES = {
    "guardian-of-minor-with-guardian-consent": (FamilyCase(), ALL),
    "admin-member-of-minor-with-guardian-consent": (FamilyCase(permission_level="ADMIN"), ALL),
    "minor-turns-18-tomorrow-still-visible": (FamilyCase(minor_until=TODAY + timedelta(days=1)), ALL),
    "guardian-without-guardian-consent": (FamilyCase(guardian_consent=False), NONE),
    "guardian-without-can-view-health-data": (FamilyCase(can_view_health_data=False), NONE),
    "minor-turned-18-today": (FamilyCase(minor_until=TODAY), NONE),
    "minor-turned-18-last-year": (FamilyCase(minor_until=TODAY - timedelta(days=365)), NONE),
    "viewer-is-plain-member-not-guardian": (FamilyCase(permission_level="MEMBER"), NONE),
    "viewer-is-view-only-not-guardian": (FamilyCase(permission_level="VIEW_ONLY"), NONE),
    "guardian-of-a-minor-in-another-family": (FamilyCase(same_family=False), NONE),
}


@pytest.mark.parametrize(("case", "expected"), FAMILY_CASES.values(), ids=FAMILY_CASES.keys())
def test_family_guardian_of_minor(world: World, app: AppSession, case: FamilyCase,
                                  expected: frozenset[str]) -> None:
    t = world.tenant()
    child = world.patient(t)
    parent = world.user(t)
    family = world.family(t, parent)
    world.member(t, family, parent, relationship="PARENT", permission_level=case.permission_level,
                 can_view_health_data=case.can_view_health_data)
    child_family = family if case.same_family else world.family(t, child.user)
    world.member(t, child_family, child.user, relationship="CHILD", is_minor=case.is_minor,
                 minor_until=case.minor_until, guardian_consent=case.guardian_consent)
    assert seen_tables(app, Scene(t, child, parent, "END_USER")) == expected


# -- family: consent between adult members ------------------------------------------------------------
@dataclass(frozen=True)
class ConsentCase:
    categories: tuple[str, ...] = ("MEDICATIONS",)
    expires_in: timedelta | None = None
    revoked: bool = False
    can_view_health_data: bool = True
    same_family: bool = True
    to_viewer: bool = True  # False: the consent names someone else


CONSENT_CASES: dict[str, tuple[ConsentCase, frozenset[str]]] = {
    **{f"active-consent-for-{c.lower()}-opens-only-{t.split('.')[1]}": (ConsentCase(categories=(c,)),
                                                                        frozenset({t}))
       for c, t in CATEGORY_TABLE.items()},
    "consent-for-two-categories": (ConsentCase(categories=("ALLERGIES", "CONDITIONS")),
                                   frozenset({"healthcare.allergies", "healthcare.conditions"})),
    "consent-expiring-in-an-hour-still-open": (ConsentCase(expires_in=timedelta(hours=1)),
                                               frozenset({"healthcare.medications"})),
    "consent-expired": (ConsentCase(expires_in=timedelta(seconds=-1)), NONE),
    "consent-revoked": (ConsentCase(revoked=True), NONE),
    "consent-but-viewer-lacks-can-view-health-data": (ConsentCase(can_view_health_data=False), NONE),
    "consent-between-users-not-in-the-same-family": (ConsentCase(same_family=False), NONE),
    "consent-granted-to-someone-else": (ConsentCase(to_viewer=False), NONE),
}


@pytest.mark.parametrize(("case", "expected"), CONSENT_CASES.values(), ids=CONSENT_CASES.keys())
def test_family_consent(world: World, app: AppSession, case: ConsentCase, expected: frozenset[str]) -> None:
    t = world.tenant()
    subject = world.patient(t)
    viewer = world.user(t)
    family = world.family(t, subject.user)
    world.member(t, family, subject.user, relationship="SELF", permission_level="ADMIN")
    viewer_family = family if case.same_family else world.family(t, viewer)
    world.member(t, viewer_family, viewer, relationship="SPOUSE",
                 can_view_health_data=case.can_view_health_data)
    grantee = viewer if case.to_viewer else world.user(t)
    # An expired consent must have been granted before it expired (CHECK expires_at > granted_at).
    granted = NOW - timedelta(days=30)
    world.consent(t, subject.user, grantee, case.categories, granted_at=granted,
                  expires_at=datetime.now().astimezone() + case.expires_in if case.expires_in else None,
                  revoked_at=NOW - timedelta(days=1) if case.revoked else None)
    assert seen_tables(app, Scene(t, subject, viewer, "END_USER")) == expected


def test_revoking_a_consent_ends_access_at_once(world: World, app: AppSession, admin: Conn) -> None:
    t = world.tenant()
    subject, viewer = world.patient(t), world.user(t)
    family = world.family(t, subject.user)
    world.member(t, family, subject.user)
    world.member(t, family, viewer, can_view_health_data=True)
    consent = world.consent(t, subject.user, viewer, ["MEDICATIONS"])
    scene = Scene(t, subject, viewer, "END_USER")
    assert seen_tables(app, scene) == {"healthcare.medications"}
    # The subject revokes it themselves, as praneya_app.
    with app.scoped(t, subject.user, "END_USER") as c:
        assert c.execute("UPDATE healthcare.consents SET revoked_at = now() WHERE id = %s",
                         (consent,)).rowcount == 1
    assert seen_tables(app, scene) == NONE


# -- roles ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["END_USER", "CLINICAL_ADVISOR", "SUPER_ADMIN", "EMERGENCY_RESPONDER"])
def test_everyone_sees_their_own_record(world: World, app: AppSession, role: str) -> None:
    t = world.tenant()
    me = world.patient(t, role)
    assert seen_tables(app, Scene(t, me, me.user, role)) == ALL


@pytest.mark.parametrize(("role", "expected"), [("CLINICAL_ADVISOR", ALL), ("SUPER_ADMIN", ALL),
                                                ("END_USER", NONE), ("EMERGENCY_RESPONDER", NONE)])
def test_any_patient_in_tenant_only_for_clinical_staff(
    world: World, app: AppSession, role: str, expected: frozenset[str],
) -> None:
    t = world.tenant()
    stranger = world.patient(t)
    viewer = world.user(t, role)
    assert seen_tables(app, Scene(t, stranger, viewer, role)) == expected


def test_emergency_grant_shows_that_patient_only_until_it_expires(
    world: World, app: AppSession, admin: Conn,
) -> None:
    t = world.tenant()
    patient, other = world.patient(t), world.patient(t)
    responder = world.user(t, "EMERGENCY_RESPONDER")
    scene = Scene(t, patient, responder, "EMERGENCY_RESPONDER")
    assert seen_tables(app, scene) == NONE  # no grant yet
    grant = world.emergency_grant(t, responder, patient.user)
    assert seen_tables(app, scene) == ALL
    assert seen_tables(app, scene, other) == NONE  # the grant is for one patient
    # Time passes: the grant's window closes (granted_at moves too, for the window CHECK).
    admin.execute("UPDATE healthcare.emergency_access_grants SET granted_at = now() - interval '2 hours',"
                  " expires_at = now() - interval '1 second' WHERE id = %s", (grant["grant_id"],))
    assert seen_tables(app, scene) == NONE


def test_an_expired_grant_inserted_directly_opens_nothing(world: World, app: AppSession, admin: Conn) -> None:
    t = world.tenant()
    patient = world.patient(t)
    responder = world.user(t, "EMERGENCY_RESPONDER")
    insert(admin, "healthcare.emergency_access_grants", {
        "id": world.id("grant"), "tenant_id": t, "patient_user_id": patient.user,
        "grantee_user_id": responder, "reason_code": "BTG", "encrypted_reason_text": ciphertext(),
        "granted_at": NOW - timedelta(hours=3), "expires_at": NOW - timedelta(hours=2)})
    assert seen_tables(app, Scene(t, patient, responder, "EMERGENCY_RESPONDER")) == NONE


def test_a_grant_for_another_responder_opens_nothing(world: World, app: AppSession) -> None:
    t = world.tenant()
    patient = world.patient(t)
    responder, colleague = world.user(t, "EMERGENCY_RESPONDER"), world.user(t, "EMERGENCY_RESPONDER")
    world.emergency_grant(t, responder, patient.user)
    assert seen_tables(app, Scene(t, patient, colleague, "EMERGENCY_RESPONDER")) == NONE


# -- writes ---------------------------------------------------------------------------------------------
def _medication(patient: Patient, new_id: Callable[[str], str]) -> dict[str, Any]:
    return {"id": new_id("med"), "tenant_id": patient.tenant, "health_profile_id": patient.profile,
            "user_id": patient.user, "encrypted_generic_name": ciphertext()}


def test_end_user_writes_own_medication(world: World, app: AppSession) -> None:
    t = world.tenant()
    me = world.patient(t)
    row = _medication(me, world.id)
    with app.scoped(t, me.user, "END_USER") as c:
        insert(c, "healthcare.medications", row, returning=False)
    with app.scoped(t, me.user, "END_USER") as c:
        assert visible_ids(c, "healthcare.medications", "id = %s", (row["id"],)) == {row["id"]}


def test_end_user_cannot_write_a_family_members_medication_even_with_consent(
    world: World, app: AppSession,
) -> None:
    t = world.tenant()
    child, parent = world.patient(t), world.user(t)
    family = world.family(t, parent)
    world.member(t, family, parent, permission_level="GUARDIAN", can_view_health_data=True)
    world.member(t, family, child.user, relationship="CHILD", is_minor=True,
                 minor_until=TODAY + timedelta(days=900), guardian_consent=True)
    world.consent(t, child.user, parent, ["MEDICATIONS"])
    assert "healthcare.medications" in seen_tables(app, Scene(t, child, parent, "END_USER"))  # reads: yes
    with app.scoped(t, parent, "END_USER") as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        insert(c, "healthcare.medications", _medication(child, world.id), returning=False)
    # Nor may the viewer change one of the child's rows.
    with app.scoped(t, parent, "END_USER") as c:
        assert c.execute("UPDATE healthcare.medications SET is_active = false WHERE user_id = %s",
                         (child.user,)).rowcount == 0


def test_clinical_advisor_writes_a_patients_medication(world: World, app: AppSession) -> None:
    t = world.tenant()
    patient, advisor = world.patient(t), world.user(t, "CLINICAL_ADVISOR")
    row = _medication(patient, world.id)
    with app.scoped(t, advisor, "CLINICAL_ADVISOR") as c:
        insert(c, "healthcare.medications", row, returning=False)
    with app.scoped(t, patient.user, "END_USER") as c:
        assert visible_ids(c, "healthcare.medications", "id = %s", (row["id"],)) == {row["id"]}


def test_end_user_cannot_promote_themselves_or_switch_on_their_own_mfa_flag(
    world: World, app: AppSession, admin: Conn,
) -> None:
    # The compliance check trusts mfa_enabled; only a super admin may set it (as the role).
    t = world.tenant()
    me = world.user(t, "CLINICAL_ADVISOR", mfa=False)
    with app.scoped(t, me, "CLINICAL_ADVISOR") as c:
        for change in ("healthcare_role = 'SUPER_ADMIN'", "mfa_enabled = true"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), c.transaction():
                c.execute(f"UPDATE public.users SET {change} WHERE id = %s", (me,))
    boss = world.user(t, "SUPER_ADMIN")
    with app.scoped(t, boss, "SUPER_ADMIN") as c:
        assert c.execute("UPDATE public.users SET mfa_enabled = true WHERE id = %s", (me,)).rowcount == 1
    assert admin.execute("SELECT mfa_enabled FROM public.users WHERE id = %s", (me,)).fetchone() == {
        "mfa_enabled": True}


# -- family constraints --------------------------------------------------------------------------------
def test_a_family_holds_at_most_max_members(world: World, app: AppSession) -> None:
    t = world.tenant()
    primary = world.user(t)
    family = world.family(t, primary)  # default max_members = 6
    for _ in range(5):
        world.member(t, family, world.user(t))

    def join(user: str) -> None:
        # The family's primary user manages the roster, as praneya_app.
        with app.scoped(t, primary, "END_USER") as c:
            insert(c, "public.family_members", returning=False, row={
                "id": world.id("member"), "tenant_id": t, "family_account_id": family, "user_id": user,
                "relationship": "OTHER"})

    join(world.user(t))  # the 6th fits
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        join(world.user(t))
    assert "max_members = 6" in str(err.value)


def test_family_size_cap_also_counts_a_member_moved_in(world: World, admin: Conn) -> None:
    t = world.tenant()
    small = world.family(t, world.user(t), max_members=1)
    world.member(t, small, world.user(t))
    other = world.family(t, world.user(t))
    mover = world.member(t, other, world.user(t))
    with pytest.raises(psycopg.errors.CheckViolation):
        admin.execute("UPDATE public.family_members SET family_account_id = %s WHERE id = %s", (small, mover))


def test_guardian_consent_only_for_minors(world: World, app: AppSession) -> None:
    t = world.tenant()
    primary = world.user(t)
    family = world.family(t, primary)
    admin_user = world.user(t, role="SUPER_ADMIN")
    # A super admin, because only super admins may record guardian consent at all.
    with app.scoped(t, admin_user, "SUPER_ADMIN") as c, pytest.raises(psycopg.errors.CheckViolation) as err:
        insert(c, "public.family_members", returning=False, row={
            "id": world.id("member"), "tenant_id": t, "family_account_id": family, "user_id": world.user(t),
            "relationship": "SPOUSE", "is_minor": False, "guardian_consent": True})
    assert err.value.diag.constraint_name == "family_members_guardian_consent_only_minors"


# Regression: a family's primary user once could enrol any tenant user as their 'minor' ward and
# read their health data; minor status and guardian consent are now recorded by super admins only.
def test_a_roster_manager_cannot_make_a_stranger_their_ward(world: World, app: AppSession) -> None:
    t = world.tenant()
    victim, attacker = world.patient(t), world.user(t)
    family = world.id("family")
    with app.scoped(t, attacker, "END_USER") as c:
        try:
            insert(c, "public.family_accounts", returning=False,
                   row={"id": family, "tenant_id": t, "primary_user_id": attacker})
            for user, extra in ((attacker, {"permission_level": "GUARDIAN", "can_view_health_data": True}),
                                (victim.user, {"is_minor": True, "guardian_consent": True,
                                               "minor_until": TODAY + timedelta(days=9000)})):
                insert(c, "public.family_members", returning=False, row={
                    "id": world.id("member"), "tenant_id": t, "family_account_id": family, "user_id": user,
                    "relationship": "OTHER", **extra})
        except psycopg.errors.InsufficientPrivilege:
            return  # refused: the fix is in
    assert seen_tables(app, Scene(t, victim, attacker, "END_USER")) == NONE

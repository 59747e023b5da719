"""Randomised row-level-security check: random worlds against an independent model of DESIGN.md.

Hypothesis draws worlds of 2-3 tenants, each with 3-8 users of random roles, health records for some
of them, 0-2 families with random rosters (relationship, permission level, can_view_health_data; minors
with or without guardian consent, turning 18 in the past or the future), consents between random users
(mostly inside a family, sometimes not; expired, revoked or active; random categories) and emergency
grants (active or expired). Everything is written by the superuser through tests/fix_world.py; minors
and guardian consent in particular are recorded as admin, which mirrors that only super admins may
record them.

Then, for every user of the world acting as themselves (their tenant, id and role, exactly as the
service sets the context), `SELECT id FROM <table>` as praneya_app must return exactly the rows the
model below says, for every table in MODEL_TABLES. The query has no WHERE clause: a row of any other
test's tenant showing up is a mismatch too. Writes: a principal's INSERTs into another tenant's tables
are refused by RLS, and an END_USER cannot insert, update or delete another patient's medications
(even one they may read), while they can insert their own.

The model is written from DESIGN.md's "Who sees what" table, not from the SQL policies:

Health data (health_profiles, medications, allergies, conditions, biometric_readings; the consent
category of each is its PHI_TABLES entry). A row of patient P in tenant T is visible to principal
(T', U, R) iff T' == T and one of
  1. own record:        U == P (every role, EMERGENCY_RESPONDER included, as the hand-written tests say);
  2. clinical staff:    R in {CLINICAL_ADVISOR, SUPER_ADMIN} ("any patient in tenant");
  3. family (END_USER only: the table gives clinical staff "—" here because (2) covers them, and an
     EMERGENCY_RESPONDER is an integration identity that "sees nothing without a grant"; but see
     FAMILY_ACCESS_ROLES for the known defect): there is a family F of which both U and P are
     members, U's membership *in F* has can_view_health_data, and
       (a) P's membership in F is a minor (is_minor, minor_until > today) with guardian_consent, and
           U's permission_level in F is GUARDIAN or ADMIN (a family's ADMIN is at least its
           guardian; tests/test_rls_who_sees_what.py settles the same), or
       (b) P granted U a consent covering the table's category that is granted (granted_at <= now),
           not revoked (revoked_at NULL) and not expired (expires_at NULL or > now).
     can_view_health_data in one family does not open the data of someone met only in another.
  4. emergency:         U holds a grant for P that has not expired (any role).
Consents and grants are drawn with granted_at in the past only: every path that creates them (the
column default, GrantConsent, emergency_health_access()) stamps now(), and the database ignores
granted_at (a row dated in the future counts as already active; reported, not reachable at runtime).

Where DESIGN.md is silent, the least privilege that lets the product work (the three rules marked *
were first written narrower; the database's broader answer was judged right, for the reason given):
  public.users           own row; CLINICAL_ADVISOR and SUPER_ADMIN: every user of the tenant (they
                         look patients up); anyone*: the users who share a family with them (the
                         roster shows names, and family_members already shows membership to any
                         member whatever their role); the patients they hold an active grant for.
  healthcare.consents    the subject (to see and revoke what they granted) and the grantee (to know
                         what they may see); SUPER_ADMIN: all of the tenant (administration).
  healthcare.emergency_access_grants
                         the grantee and the patient (a patient learns who broke the glass on them);
                         SUPER_ADMIN: all of the tenant (the review queue).
  public.family_members  the whole roster of every family the user is a member of; CLINICAL_ADVISOR*
                         and SUPER_ADMIN: all of the tenant (an advisor who sees every record needs
                         to know a minor's guardians); the primary user of a family they are not a
                         member of*: its adult rows only, the ones they manage (minors and guardian
                         consent are super-admin facts; this is narrower than "the whole roster").
  public.family_accounts the families the user is a member or the primary user of; CLINICAL_ADVISOR*
                         and SUPER_ADMIN: all of the tenant (as family_members).
Nothing crosses tenants. Where the database and this model disagree, the test fails with the
principal, the table and the rows each side has that the other does not.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from store.crypto import KeyProvider
from tests.fix_db import AppSession
from tests.fix_world import PHI_TABLES, World, ciphertext, insert, visible_ids

pytestmark = pytest.mark.db

Conn = psycopg.Connection[dict[str, Any]]

ROLES = ("END_USER", "CLINICAL_ADVISOR", "SUPER_ADMIN", "EMERGENCY_RESPONDER")
STAFF = frozenset({"CLINICAL_ADVISOR", "SUPER_ADMIN"})
RELATIONSHIPS = ("SELF", "SPOUSE", "PARTNER", "CHILD", "PARENT", "SIBLING", "GRANDPARENT", "GRANDCHILD",
                 "GUARDIAN", "OTHER")
PERMISSIONS = ("GUARDIAN", "ADMIN", "MEMBER", "VIEW_ONLY")
GUARDIAN_LEVELS = frozenset({"GUARDIAN", "ADMIN"})
# Roles to which rule 3 (family access) applies. DESIGN.md: END_USER only (a responder who is also a
# family member breaks the glass like anyone else; see test_an_emergency_responder_reads_family_data_...).
FAMILY_ACCESS_ROLES = frozenset({"END_USER"})
CATEGORIES = tuple(c for _, c in PHI_TABLES)
CATEGORY_OF = dict(PHI_TABLES)
CHILD_TABLES = ("healthcare.medications", "healthcare.allergies", "healthcare.conditions",
                "healthcare.biometric_readings")
OTHER_TABLES = ("public.users", "healthcare.consents", "healthcare.emergency_access_grants",
                "public.family_members", "public.family_accounts")
MODEL_TABLES = tuple(t for t, _ in PHI_TABLES) + OTHER_TABLES
# Days from today to a minor's 18th birthday. Never 0 or +-1: the database's current_date follows
# its session time zone, the model's today the machine's; the boundary itself is tested by hand in
# tests/test_rls_who_sees_what.py.
MINOR_UNTIL_DAYS = (-400, -2, 2, 400)


# -- the drawn shape of a world (plain data, so hypothesis can shrink it) ------------------------------
@dataclass(frozen=True)
class UserSpec:
    role: str
    profile: bool
    children: tuple[int, int, int, int]  # rows in each of CHILD_TABLES (when profile)


@dataclass(frozen=True)
class MemberSpec:
    user: int
    relationship: str
    permission_level: str
    can_view_health_data: bool
    minor_until_days: int | None  # None: an adult member
    guardian_consent: bool


@dataclass(frozen=True)
class FamilySpec:
    primary: int
    members: tuple[MemberSpec, ...]


@dataclass(frozen=True)
class ConsentSpec:
    subject: int
    grantee: int
    categories: tuple[str, ...]
    expires: str | None  # past | future | None
    revoked: bool


@dataclass(frozen=True)
class GrantSpec:
    grantee: int
    patient: int
    state: str  # active | expired


@dataclass(frozen=True)
class TenantSpec:
    users: tuple[UserSpec, ...]
    families: tuple[FamilySpec, ...]
    consents: tuple[ConsentSpec, ...]
    grants: tuple[GrantSpec, ...]


def _pair(draw: st.DrawFn, n: int) -> tuple[int, int]:
    """Two different user indices."""
    a = draw(st.integers(0, n - 1))
    b = (a + 1 + draw(st.integers(0, n - 2))) % n
    return a, b


@st.composite
def tenant_specs(draw: st.DrawFn) -> TenantSpec:
    n = draw(st.integers(3, 8))
    users = tuple(
        UserSpec(role=draw(st.sampled_from(ROLES)), profile=draw(st.booleans()),
                 children=draw(st.tuples(*(st.integers(0, 2) for _ in CHILD_TABLES))))
        for _ in range(n)
    )
    families = []
    for _ in range(draw(st.sampled_from((0, 1, 1, 2, 2)))):
        roster = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=min(n, 6), unique=True))
        members = []
        for u in roster:
            minor = draw(st.none() | st.sampled_from(MINOR_UNTIL_DAYS))
            members.append(MemberSpec(
                user=u, relationship=draw(st.sampled_from(RELATIONSHIPS)),
                permission_level=draw(st.sampled_from(PERMISSIONS)),
                can_view_health_data=draw(st.sampled_from((True, True, False))), minor_until_days=minor,
                guardian_consent=minor is not None and draw(st.sampled_from((True, True, False)))))
        families.append(FamilySpec(primary=draw(st.integers(0, n - 1)), members=tuple(members)))
    rosters = [[m.user for m in f.members] for f in families if len(f.members) >= 2]
    consents = []
    for _ in range(draw(st.integers(0, 6))):
        # Mostly between members of one family (where a consent can open something), else anyone.
        if rosters and draw(st.sampled_from((True, True, False))):
            subject, grantee = draw(st.permutations(draw(st.sampled_from(rosters))))[:2]
        else:
            subject, grantee = _pair(draw, n)
        consents.append(ConsentSpec(
            subject=subject, grantee=grantee,
            categories=tuple(draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3, unique=True))),
            expires=draw(st.sampled_from((None, "past", "future"))),
            revoked=draw(st.sampled_from((False, False, True)))))
    grants = []
    for _ in range(draw(st.integers(0, 3))):
        grantee, patient = _pair(draw, n)
        grants.append(GrantSpec(grantee=grantee, patient=patient,
                                state=draw(st.sampled_from(("active", "expired")))))
    return TenantSpec(users=users, families=tuple(families), consents=tuple(consents), grants=tuple(grants))


worlds = st.lists(tenant_specs(), min_size=2, max_size=3)


# -- what was built: the facts the model reasons on ------------------------------------------------------
@dataclass(frozen=True)
class Member:
    id: str
    family: str
    user: str
    permission_level: str
    can_view_health_data: bool
    is_minor: bool
    minor_until: date | None
    guardian_consent: bool


@dataclass(frozen=True)
class Consent:
    id: str
    subject: str
    grantee: str
    categories: frozenset[str]
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Grant:
    id: str
    patient: str
    grantee: str
    granted_at: datetime
    expires_at: datetime


@dataclass
class Facts:
    """One world's rows, per tenant, as the model sees them."""

    user_tenant: dict[str, str] = field(default_factory=dict)
    user_role: dict[str, str] = field(default_factory=dict)
    phi: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # table -> [(row id, patient)]
    profile_of: dict[str, str] = field(default_factory=dict)  # user -> profile id
    families: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (tenant, primary user)
    members: list[Member] = field(default_factory=list)
    consents: dict[str, tuple[str, Consent]] = field(default_factory=dict)  # id -> (tenant, consent)
    grants: dict[str, tuple[str, Grant]] = field(default_factory=dict)

    def tenant_users(self, tenant: str) -> list[str]:
        return [u for u, t in self.user_tenant.items() if t == tenant]


def build(world: World, specs: list[TenantSpec], now: datetime) -> Facts:
    facts = Facts(phi={t: [] for t, _ in PHI_TABLES})
    today = now.date()
    for spec in specs:
        tenant = world.tenant()
        ids: list[str] = []
        for u in spec.users:
            user = world.user(tenant, u.role)
            ids.append(user)
            facts.user_tenant[user] = tenant
            facts.user_role[user] = u.role
            if not u.profile:
                continue
            profile = world.profile(tenant, user)
            facts.profile_of[user] = profile
            facts.phi["healthcare.health_profiles"].append((profile, user))
            makers: tuple[Callable[[str, str, str], str], ...] = (
                world.medication, world.allergy, world.condition, world.biometric)
            for table, make, count in zip(CHILD_TABLES, makers, u.children, strict=True):
                for _ in range(count):
                    facts.phi[table].append((make(tenant, user, profile), user))
        for f in spec.families:
            family = world.family(tenant, ids[f.primary])
            facts.families[family] = (tenant, ids[f.primary])
            for m in f.members:
                minor_until = None if m.minor_until_days is None else today + timedelta(days=m.minor_until_days)
                mid = world.member(tenant, family, ids[m.user], relationship=m.relationship,
                                   permission_level=m.permission_level,
                                   can_view_health_data=m.can_view_health_data,
                                   is_minor=minor_until is not None, minor_until=minor_until,
                                   guardian_consent=m.guardian_consent)
                facts.members.append(Member(mid, family, ids[m.user], m.permission_level, m.can_view_health_data,
                                            minor_until is not None, minor_until, m.guardian_consent))
        for c in spec.consents:
            granted_at = now - timedelta(days=30)
            expires_at = {None: None, "past": now - timedelta(days=1),
                          "future": now + timedelta(days=2)}[c.expires]
            revoked_at = now - timedelta(days=1) if c.revoked else None
            cid = world.consent(tenant, ids[c.subject], ids[c.grantee], c.categories, granted_at=granted_at,
                                expires_at=expires_at, revoked_at=revoked_at)
            facts.consents[cid] = (tenant, Consent(cid, ids[c.subject], ids[c.grantee], frozenset(c.categories),
                                                   granted_at, expires_at, revoked_at))
        for g in spec.grants:
            granted_at, expires_at = {
                "active": (now - timedelta(minutes=10), now + timedelta(hours=1)),
                "expired": (now - timedelta(hours=3), now - timedelta(hours=2)),
            }[g.state]
            gid = world.id("grant")
            # Inserted directly (as tests/test_rls_who_sees_what.py does for an expired grant) so any
            # window can be drawn; emergency_health_access() itself is tested elsewhere.
            insert(world.admin, "healthcare.emergency_access_grants", {
                "id": gid, "tenant_id": tenant, "patient_user_id": ids[g.patient],
                "grantee_user_id": ids[g.grantee], "reason_code": "BTG", "encrypted_reason_text": ciphertext(),
                "granted_at": granted_at, "expires_at": expires_at}, returning=False)
            facts.grants[gid] = (tenant, Grant(gid, ids[g.patient], ids[g.grantee], granted_at, expires_at))
    return facts


# -- the model ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    tenant: str
    user: str
    role: str


class Model:
    """DESIGN.md's "Who sees what", in plain Python (see the module docstring)."""

    def __init__(self, facts: Facts, now: datetime) -> None:
        self.f = facts
        self.now = now
        self.today = now.date()

    def _memberships(self, user: str) -> dict[str, Member]:
        return {m.family: m for m in self.f.members if m.user == user}

    def _active_consent(self, subject: str, grantee: str, category: str) -> bool:
        return any(
            c.subject == subject and c.grantee == grantee and category in c.categories
            and c.granted_at <= self.now and c.revoked_at is None
            and (c.expires_at is None or c.expires_at > self.now)
            for _, c in self.f.consents.values()
        )

    def _family_access(self, viewer: str, patient: str, category: str) -> str | None:
        """Which of rule 3's branches lets the viewer in, or None."""
        theirs = self._memberships(patient)
        for family, mine in self._memberships(viewer).items():
            other = theirs.get(family)
            if other is None or not mine.can_view_health_data:
                continue
            if (other.is_minor and other.minor_until is not None and other.minor_until > self.today
                    and other.guardian_consent and mine.permission_level in GUARDIAN_LEVELS):
                return "guardian of a minor"
            if self._active_consent(patient, viewer, category):
                return "consent"
        return None

    def _emergency(self, viewer: str, patient: str) -> bool:
        return any(g.grantee == viewer and g.patient == patient and g.granted_at <= self.now < g.expires_at
                   for _, g in self.f.grants.values())

    def sees_health_data(self, p: Principal, patient: str, category: str) -> bool:
        if self.f.user_tenant.get(patient) != p.tenant:
            return False
        if patient == p.user or p.role in STAFF:
            return True
        family = self._family_access(p.user, patient, category) if p.role in FAMILY_ACCESS_ROLES else None
        emergency = self._emergency(p.user, patient)
        # Which rules the drawn worlds exercise: `pytest --hypothesis-show-statistics`.
        event(f"another patient's health data opened by: family {family}, emergency grant {emergency}")
        return family is not None or emergency

    def _families_of(self, p: Principal) -> set[str]:
        return {m.family for m in self.f.members if m.user == p.user} | {
            fid for fid, (t, primary) in self.f.families.items() if t == p.tenant and primary == p.user}

    def visible(self, p: Principal, table: str) -> set[str]:
        f = self.f
        if table in CATEGORY_OF:
            return {rid for rid, patient in f.phi[table] if self.sees_health_data(p, patient, CATEGORY_OF[table])}
        admin = p.role == "SUPER_ADMIN"
        if table == "public.users":
            if p.role in STAFF:
                return set(f.tenant_users(p.tenant))
            families = {m.family for m in f.members if m.user == p.user}
            mine = {p.user} | {m.user for m in f.members if m.family in families}
            mine |= {g.patient for t, g in f.grants.values()
                     if t == p.tenant and g.grantee == p.user and g.granted_at <= self.now < g.expires_at}
            return mine
        if table == "healthcare.consents":
            return {cid for cid, (t, c) in f.consents.items()
                    if t == p.tenant and (admin or p.user in (c.subject, c.grantee))}
        if table == "healthcare.emergency_access_grants":
            return {gid for gid, (t, g) in f.grants.items()
                    if t == p.tenant and (admin or p.user in (g.patient, g.grantee))}
        if table == "public.family_members":
            member_of = {m.family for m in f.members if m.user == p.user}
            primary_of = {fid for fid, (t, primary) in f.families.items() if t == p.tenant and primary == p.user}
            return {m.id for m in f.members
                    if f.families[m.family][0] == p.tenant
                    and (p.role in STAFF or m.family in member_of
                         or (m.family in primary_of and not m.is_minor and not m.guardian_consent
                             and m.permission_level in ("MEMBER", "VIEW_ONLY")))}
        if table == "public.family_accounts":
            families = self._families_of(p)
            return {fid for fid, (t, _) in f.families.items()
                    if t == p.tenant and (p.role in STAFF or fid in families)}
        raise AssertionError(f"no model for {table}")


# -- the test ---------------------------------------------------------------------------------------------
@pytest.fixture
def app_conn(app: AppSession) -> Iterator[Conn]:
    with app.connect() as conn:
        yield conn


def _world(admin: Conn, app: AppSession, provider: KeyProvider) -> World:
    suffix = uuid.uuid4().hex[:10]  # fresh per example: examples never share a tenant
    return World(admin, app, lambda prefix: f"{prefix}-{suffix}", provider)


def _principals(facts: Facts) -> list[Principal]:
    return [Principal(facts.user_tenant[u], u, facts.user_role[u]) for u in facts.user_tenant]


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(specs=worlds)
def test_every_principal_sees_what_the_model_says(
    specs: list[TenantSpec], admin: Conn, app: AppSession, app_conn: Conn, provider: KeyProvider,
) -> None:
    now = datetime.now().astimezone()
    facts = build(_world(admin, app, provider), specs, now)
    model = Model(facts, now)
    mismatches = []
    for p in _principals(facts):
        with app.scoped(p.tenant, p.user, p.role, conn=app_conn) as c:
            for table in MODEL_TABLES:
                got = visible_ids(c, table)
                want = model.visible(p, table)
                if got != want:
                    mismatches.append(f"{p.role} {p.user} on {table}: database only {sorted(got - want)}, "
                                      f"model only {sorted(want - got)}")
    assert not mismatches, "\n".join(mismatches)


# -- writes -----------------------------------------------------------------------------------------------
def _refused(app: AppSession, conn: Conn, p: Principal, table: str, row: dict[str, Any]) -> str | None:
    """None when an INSERT as the principal is refused by row-level security, else what happened."""
    try:
        with app.scoped(p.tenant, p.user, p.role, conn=conn) as c:
            insert(c, table, row, returning=False)
    except psycopg.errors.InsufficientPrivilege:
        return None
    except psycopg.Error as exc:  # refused, but not by the policy: say so, a row may be malformed
        return f"{p.role} INSERT into {table}: {type(exc).__name__}: {exc}"
    return f"{p.role} {p.user} INSERTed into {table} of tenant {row['tenant_id']}"


def _medication_row(world: World, tenant: str, patient: str, profile: str) -> dict[str, Any]:
    return {"id": world.id("medication"), "tenant_id": tenant, "health_profile_id": profile,
            "user_id": patient, "encrypted_generic_name": ciphertext("drug")}


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(specs=worlds, data=st.data())
def test_writes_into_other_tenants_and_other_patients_are_refused(
    specs: list[TenantSpec], data: st.DataObject, admin: Conn, app: AppSession, app_conn: Conn,
    provider: KeyProvider,
) -> None:
    now = datetime.now().astimezone()
    world = _world(admin, app, provider)
    facts = build(world, specs, now)
    principals = _principals(facts)
    failures: list[str] = []

    # Into another tenant: every tenant-owned table the world has rows of, as a random principal.
    for p in data.draw(st.lists(st.sampled_from(principals), min_size=1, max_size=4, unique=True)):
        victims = [u for u in facts.user_tenant if facts.user_tenant[u] != p.tenant]
        victim = data.draw(st.sampled_from(victims))
        vt = facts.user_tenant[victim]
        others = [u for u in facts.tenant_users(vt) if u != victim]
        rows: list[tuple[str, dict[str, Any]]] = [
            ("public.users", {"id": world.id("user"), "tenant_id": vt, "healthcare_role": "SUPER_ADMIN"}),
            ("healthcare.consents", {"id": world.id("consent"), "tenant_id": vt, "subject_user_id": victim,
                                     "grantee_user_id": others[0], "categories": list(CATEGORIES)}),
            ("healthcare.emergency_access_grants", {
                "id": world.id("grant"), "tenant_id": vt, "patient_user_id": victim, "grantee_user_id": others[0],
                "reason_code": "BTG", "encrypted_reason_text": ciphertext(), "expires_at": now + timedelta(hours=1)}),
            ("public.family_accounts", {"id": world.id("family"), "tenant_id": vt, "primary_user_id": victim}),
        ]
        if victim in facts.profile_of:
            profile = facts.profile_of[victim]
            rows.append(("healthcare.medications", _medication_row(world, vt, victim, profile)))
            child = {"tenant_id": vt, "health_profile_id": profile, "user_id": victim}
            rows += [
                ("healthcare.allergies", {**child, "id": world.id("allergy"), "encrypted_allergen": ciphertext(),
                                          "allergen_category": "DRUG", "severity": "SEVERE"}),
                ("healthcare.conditions", {**child, "id": world.id("condition"), "encrypted_name": ciphertext()}),
                ("healthcare.biometric_readings", {**child, "id": world.id("biometric"), "reading_type": "heart_rate",
                                                   "encrypted_value": ciphertext(), "taken_at": now}),
            ]
        else:
            rows.append(("healthcare.health_profiles", {"id": world.id("profile"), "tenant_id": vt,
                                                        "user_id": victim}))
        # A family with room (max_members 6): a full one is refused by the size trigger, before RLS.
        for fid, (t, _) in facts.families.items():
            listed = {m.user for m in facts.members if m.family == fid}
            free = [u for u in facts.tenant_users(vt) if u not in listed]
            if t == vt and free and len(listed) < 6:
                rows.append(("public.family_members", {
                    "id": world.id("member"), "tenant_id": vt, "family_account_id": fid,
                    "user_id": free[0], "relationship": "OTHER", "can_view_health_data": True}))
                break
        for table, row in rows:
            problem = _refused(app, app_conn, p, table, row)
            if problem:
                failures.append(problem)

    # An END_USER and another patient of the same tenant (possibly one they may read).
    for p in principals:
        if p.role != "END_USER":
            continue
        if p.user in facts.profile_of:  # sanity: the same INSERT on their own record is allowed
            with app.scoped(p.tenant, p.user, p.role, conn=app_conn) as c:
                insert(c, "healthcare.medications",
                       _medication_row(world, p.tenant, p.user, facts.profile_of[p.user]), returning=False)
        for patient in facts.tenant_users(p.tenant):
            if patient == p.user or patient not in facts.profile_of:
                continue
            problem = _refused(app, app_conn, p, "healthcare.medications",
                               _medication_row(world, p.tenant, patient, facts.profile_of[patient]))
            if problem:
                failures.append(problem)
            with app.scoped(p.tenant, p.user, p.role, conn=app_conn) as c:
                changed = c.execute("UPDATE healthcare.medications SET is_active = NOT is_active "
                                    "WHERE user_id = %s", (patient,)).rowcount
                removed = c.execute("DELETE FROM healthcare.medications WHERE user_id = %s", (patient,)).rowcount
            if changed or removed:
                failures.append(f"END_USER {p.user} updated {changed} / deleted {removed} medications of {patient}")
    assert not failures, "\n".join(failures)


# -- regressions: defects this check found, fixed in the migrations ------------------------------------------
FUTURE = date.today() + timedelta(days=900)


def test_an_emergency_responder_reads_family_data_only_through_a_grant(world: World, app: AppSession) -> None:
    # The schema's own comment: EMERGENCY_RESPONDER "may break the glass, sees nothing without a grant".
    # DESIGN.md gives family access to END_USER only; a responder account that is also a family member
    # must not read a member's record without breaking the glass (which audits and queues a review).
    t = world.tenant()
    patient = world.patient(t)
    responder = world.user(t, "EMERGENCY_RESPONDER")
    family = world.family(t, patient.user)
    world.member(t, family, patient.user, relationship="SELF")
    world.member(t, family, responder, relationship="SIBLING", can_view_health_data=True)
    world.consent(t, patient.user, responder, ["MEDICATIONS"])
    with app.scoped(t, responder, "EMERGENCY_RESPONDER") as c:
        assert visible_ids(c, "healthcare.medications", "user_id = %s", (patient.user,)) == set()


def test_a_roster_manager_cannot_make_someone_the_guardian_of_a_minor(world: World, app: AppSession) -> None:
    # A super admin verified the minor and the guardian consent. Who is the minor's guardian opens the
    # minor's record just as much, so it must not be the roster manager's say-so either.
    t = world.tenant()
    child = world.patient(t)
    manager, stranger = world.user(t), world.user(t)
    family = world.family(t, manager)
    world.member(t, family, child.user, relationship="CHILD", is_minor=True, minor_until=FUTURE,
                 guardian_consent=True)
    with app.scoped(t, manager, "END_USER") as c:
        try:
            insert(c, "public.family_members", returning=False, row={
                "id": world.id("member"), "tenant_id": t, "family_account_id": family, "user_id": stranger,
                "relationship": "OTHER", "permission_level": "GUARDIAN", "can_view_health_data": True})
        except psycopg.errors.InsufficientPrivilege:
            return
    with app.scoped(t, stranger, "END_USER") as c:
        assert visible_ids(c, "healthcare.medications", "user_id = %s", (child.user,)) == set()


def test_a_refused_cross_tenant_insert_says_nothing_about_the_other_tenant(world: World, app: AppSession) -> None:
    # healthcare.check_profile_owner() and public.enforce_family_size() run before the RLS check and
    # with the owner's rights: their errors tell a principal of tenant A whether a profile of tenant B
    # exists for a user, and how many members a family of tenant B has.
    a, b = world.tenant(), world.tenant()
    me = world.user(a)
    victim = world.patient(b)
    family = world.family(b, victim.user)
    for _ in range(6):
        world.member(b, family, world.user(b))
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("healthcare.medications", _medication_row(world, b, victim.user, victim.profile)),
        ("healthcare.medications", _medication_row(world, b, victim.user, "no-such-profile")),
        ("public.family_members", {"id": world.id("member"), "tenant_id": b, "family_account_id": family,
                                   "user_id": victim.user, "relationship": "OTHER"}),
    ]
    answers = []
    for table, row in attempts:
        with pytest.raises(psycopg.Error) as err, app.scoped(a, me, "END_USER") as c:
            insert(c, table, row, returning=False)
        answers.append(type(err.value).__name__)
    assert answers == ["InsufficientPrivilege"] * 3, answers

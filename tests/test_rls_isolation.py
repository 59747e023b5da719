"""Tenant isolation: nothing ever crosses tenants, whoever asks and however they ask.

Two tenants are built with the same shape of data (patient, staff, family, consent, emergency
grant, recipes, rules, overrides, audit rows). Every principal of tenant A then tries to read tenant
B with a predicate that would match everything (`tenant_id = B OR true`), to write rows into B, and
to move A's rows into B. Only row-level security stands in the way: every attack row is first
proven valid by inserting it as the superuser (rolled back), so a failure as praneya_app can only
come from the policies or missing privileges, never from a bad row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from store.crypto import KeyProvider
from tests.fix_db import AppSession, _libpq
from tests.fix_world import PHI_TABLES, Patient, World, ciphertext, insert

pytestmark = pytest.mark.db

Conn = psycopg.Connection[dict[str, Any]]

PRINCIPALS = ("END_USER", "CLINICAL_ADVISOR", "SUPER_ADMIN", "EMERGENCY_RESPONDER")

# Every tenant-owned table and the column naming its tenant. Checked against the catalog below, so
# a new tenant-owned table fails this module until it is covered here.
TENANT_COLUMN: dict[str, str] = {
    "public.tenants": "id",
    "public.tenant_data_keys": "tenant_id",
    "public.users": "tenant_id",
    "public.family_accounts": "tenant_id",
    "public.family_members": "tenant_id",
    "public.recipes": "tenant_id",
    "public.recipe_ingredients": "tenant_id",
    "healthcare.health_profiles": "tenant_id",
    "healthcare.medications": "tenant_id",
    "healthcare.allergies": "tenant_id",
    "healthcare.conditions": "tenant_id",
    "healthcare.biometric_readings": "tenant_id",
    "healthcare.consents": "tenant_id",
    "healthcare.emergency_access_grants": "tenant_id",
    "healthcare.emergency_access_reviews": "tenant_id",
    "clinical.interaction_overrides": "tenant_id",
    "clinical.drug_interactions": "tenant_id",
    "clinical.clinical_rules": "tenant_id",
    "clinical.clinical_rule_versions": "tenant_id",
    "clinical.alert_feedback": "tenant_id",
    "audit.audit_logs": "tenant_id",
    "audit.audit_logs_archive": "tenant_id",
    "audit.audit_seals": "tenant_id",
    "public.clients": "tenant_id",
    "public.client_token_uses": "tenant_id",
}
TABLES = tuple(TENANT_COLUMN)
PHI_NAMES = tuple(t for t, _ in PHI_TABLES)
# Global clinical rules (tenant_id NULL) are shared knowledge every tenant reads by design.
GLOBAL_ROWS_ALLOWED = {"clinical.clinical_rules", "clinical.clinical_rule_versions"}
# Tables on which praneya_app holds no UPDATE privilege on tenant_id at all.
NO_UPDATE = {"public.tenants", "public.tenant_data_keys", "healthcare.emergency_access_grants",
             "healthcare.emergency_access_reviews", "clinical.clinical_rule_versions", "clinical.alert_feedback",
             "audit.audit_logs", "audit.audit_logs_archive", "audit.audit_seals", "public.clients",
             "public.client_token_uses"}


@dataclass(frozen=True)
class TenantWorld:
    tenant: str
    patient: Patient
    staff: dict[str, str]  # role -> user id; END_USER is the patient
    lonely: str  # a user with no profile and no family: a valid target for new rows
    family: str
    recipe: str
    rule: str
    spare_pair: str  # an interaction pair this tenant has no override for yet
    client: str  # a registered client of this tenant
    keys: dict[str, tuple[str, tuple[Any, ...]]]  # table -> (WHERE, params) of one row of this tenant


def _pair(admin: Conn, pair_id: str) -> str:
    insert(admin, "clinical.interaction_pairs", {
        "id": pair_id, "a_kind": "ingredient", "a_name": f"a-{pair_id}", "b_kind": "ingredient",
        "b_name": f"b-{pair_id}", "severity": "HIGH", "source_severity": "major", "source": "test",
        "content_hash": "h"})
    return pair_id


def build_tenant(w: World, admin: Conn) -> TenantWorld:
    t = w.tenant()
    patient = w.patient(t)
    staff = {"END_USER": patient.user}
    for role in ("CLINICAL_ADVISOR", "SUPER_ADMIN", "EMERGENCY_RESPONDER"):
        staff[role] = w.user(t, role)
    relative = w.patient(t)
    lonely = w.user(t)
    family = w.family(t, patient.user)
    w.member(t, family, patient.user, relationship="SELF", permission_level="ADMIN",
             can_view_health_data=True)
    w.member(t, family, relative.user, relationship="SPOUSE", can_view_health_data=True)
    consent = w.consent(t, patient.user, relative.user, ["MEDICATIONS"])
    grant = w.emergency_grant(t, staff["EMERGENCY_RESPONDER"], patient.user)
    recipe = insert(admin, "public.recipes", {"id": w.id("recipe"), "tenant_id": t, "title": "Soup",
                                              "created_by": patient.user})["id"]
    ingredient = insert(admin, "public.recipe_ingredients", {
        "id": w.id("ingredient"), "tenant_id": t, "recipe_id": recipe, "position": 0, "name": "leek"})["id"]
    pair = _pair(admin, w.id("pair"))
    spare = _pair(admin, w.id("pair"))
    insert(admin, "clinical.interaction_overrides", {"tenant_id": t, "pair_id": pair, "disabled": True,
                                                     "reason": "formulary"})
    interaction = insert(admin, "clinical.drug_interactions", {
        "id": w.id("ddi"), "tenant_id": t, "user_id": patient.user,
        "medication_id": patient.rows["healthcare.medications"], "severity": "MAJOR",
        "interaction_type": "OTHER"})["id"]
    rule = insert(admin, "clinical.clinical_rules", _rule_row(w, t))["id"]
    insert(admin, "clinical.clinical_rule_versions", {"rule_id": rule, "version": 1, "tenant_id": t,
                                                      "definition": {}, "content_hash": "h"})
    # Audit rows every principal could own: the patient's, and one in the archive.
    audit = insert(admin, "audit.audit_logs",
                   {"tenant_id": t, "user_id": patient.user, "action": "TEST"})["id"]
    archived = insert(admin, "audit.audit_logs_archive", _archive_row(w, t))["id"]
    feedback = insert(admin, "clinical.alert_feedback", _feedback_row(w, t, staff["CLINICAL_ADVISOR"]))["id"]
    insert(admin, "audit.audit_seals", _seal_row(t, 1))
    review = insert(admin, "healthcare.emergency_access_reviews",
                    _review_row(w, t, grant["grant_id"], patient.user, staff["SUPER_ADMIN"]))["id"]
    client = insert(admin, "public.clients", _client_row(w, t))["id"]
    insert(admin, "public.client_token_uses", _token_use_row(w, t, client))
    keys: dict[str, tuple[str, tuple[Any, ...]]] = {
        "public.tenants": ("id = %s", (t,)),
        "public.tenant_data_keys": ("tenant_id = %s AND key_version = 1", (t,)),
        "public.users": ("id = %s", (lonely,)),
        "public.family_accounts": ("id = %s", (family,)),
        "public.family_members": ("family_account_id = %s AND user_id = %s", (family, relative.user)),
        "public.recipes": ("id = %s", (recipe,)),
        "public.recipe_ingredients": ("id = %s", (ingredient,)),
        **{table: ("id = %s", (patient.rows[table],)) for table, _ in PHI_TABLES},
        "healthcare.consents": ("id = %s", (consent,)),
        "healthcare.emergency_access_grants": ("id = %s", (grant["grant_id"],)),
        "healthcare.emergency_access_reviews": ("id = %s", (review,)),
        "clinical.interaction_overrides": ("tenant_id = %s AND pair_id = %s", (t, pair)),
        "clinical.drug_interactions": ("id = %s", (interaction,)),
        "clinical.clinical_rules": ("id = %s", (rule,)),
        "clinical.clinical_rule_versions": ("rule_id = %s", (rule,)),
        "audit.audit_logs": ("id = %s", (audit,)),
        "audit.audit_logs_archive": ("id = %s", (archived,)),
        "clinical.alert_feedback": ("id = %s", (feedback,)),
        "audit.audit_seals": ("tenant_id = %s AND seq = 1", (t,)),
        "public.clients": ("id = %s", (client,)),
        "public.client_token_uses": ("client_id = %s", (client,)),
    }
    return TenantWorld(tenant=t, patient=patient, staff=staff, lonely=lonely, family=family, recipe=recipe,
                       rule=rule, spare_pair=spare, client=client, keys=keys)


def _rule_row(w: World, tenant: str) -> dict[str, Any]:
    return {"id": w.id("rule"), "tenant_id": tenant, "rule_key": w.id("rule-key"), "version": 1,
            "rule_type": "CONDITION", "name": "test rule", "conditions": {}, "actions": {},
            "severity": "HIGH", "definition": {}, "content_hash": "h"}


def _archive_row(w: World, tenant: str) -> dict[str, Any]:
    return {"id": w.id("archived"), "tenant_id": tenant, "db_role": "praneya_app", "action": "TEST",
            "outcome": "SUCCESS", "phi_accessed": True, "risk_score": 0.1, "compliance_flags": ["TEST"],
            "timestamp": datetime.now().astimezone() - timedelta(days=365 * 8)}


def _feedback_row(w: World, tenant: str, author: str) -> dict[str, Any]:
    return {"id": w.id("feedback"), "tenant_id": tenant, "user_id": author, "evaluation_id": w.id("eval"),
            "alert_id": "a1", "rule_id": "r1", "outcome": "ACCEPTED"}


def _review_row(w: World, tenant: str, grant: str, patient: str, reviewer: str) -> dict[str, Any]:
    return {"id": w.id("review"), "tenant_id": tenant, "grant_id": grant, "patient_user_id": patient,
            "reviewer_user_id": reviewer, "outcome": "APPROPRIATE", "encrypted_notes": ciphertext()}


def _client_row(w: World, tenant: str) -> dict[str, Any]:
    return {"id": w.id("client"), "tenant_id": tenant, "display_name": "EHR", "issuer": w.id("https://iss"),
            "jwks": {"keys": []}, "algorithms": ["ES384"], "scopes": ["evaluate.supplied"]}


def _token_use_row(w: World, tenant: str, client: str) -> dict[str, Any]:
    return {"tenant_id": tenant, "client_id": client, "jti": w.id("jti"),
            "expires_at": datetime.now().astimezone() + timedelta(minutes=5)}


def _seal_row(tenant: str, seq: int) -> dict[str, Any]:
    return {"tenant_id": tenant, "seq": seq, "range_end": datetime.now().astimezone(), "row_count": 0,
            "rows_digest": "d", "prev_hash": "p", "seal_hash": "s", "key_id": "k", "signature": b"sig"}


def attack_row(table: str, target: TenantWorld, actor: str, w: World) -> dict[str, Any]:
    """A row that is valid for `target`'s tenant and that `actor` would own if it were theirs."""
    t, p = target.tenant, target.patient
    child = {"tenant_id": t, "health_profile_id": p.profile, "user_id": p.user}
    rows: dict[str, dict[str, Any]] = {
        "public.tenants": {"id": w.id("tenant"), "name": "intruder", "encryption_key_id": "k"},
        "public.tenant_data_keys": {"tenant_id": t, "key_version": 2, "wrapped_key": b"\x01",
                                    "master_key_id": "m"},  # never committed: always refused or rolled back
        "public.users": {"id": w.id("user"), "tenant_id": t},
        "public.family_accounts": {"id": w.id("family"), "tenant_id": t, "primary_user_id": target.lonely},
        "public.family_members": {"id": w.id("member"), "tenant_id": t, "family_account_id": target.family,
                                  "user_id": target.lonely, "relationship": "OTHER"},
        "public.recipes": {"id": w.id("recipe"), "tenant_id": t, "title": "Stew", "created_by": actor},
        "public.recipe_ingredients": {"id": w.id("ingredient"), "tenant_id": t, "recipe_id": target.recipe,
                                      "position": 99, "name": "salt"},
        "healthcare.health_profiles": {"id": w.id("profile"), "tenant_id": t, "user_id": target.lonely},
        "healthcare.medications": {"id": w.id("med"), **child, "encrypted_generic_name": ciphertext()},
        "healthcare.allergies": {"id": w.id("allergy"), **child, "encrypted_allergen": ciphertext(),
                                 "allergen_category": "FOOD", "severity": "MILD"},
        "healthcare.conditions": {"id": w.id("condition"), **child, "encrypted_name": ciphertext()},
        "healthcare.biometric_readings": {"id": w.id("reading"), **child, "reading_type": "weight",
                                          "encrypted_value": ciphertext(),
                                          "taken_at": datetime.now().astimezone()},
        "healthcare.consents": {"id": w.id("consent"), "tenant_id": t, "subject_user_id": p.user,
                                "grantee_user_id": target.lonely, "categories": ["PROFILE"]},
        "healthcare.emergency_access_grants": {
            "id": w.id("grant"), "tenant_id": t, "patient_user_id": p.user,
            "grantee_user_id": target.staff["EMERGENCY_RESPONDER"], "reason_code": "BTG",
            "encrypted_reason_text": ciphertext(),
            "expires_at": datetime.now().astimezone() + timedelta(hours=1)},
        "clinical.interaction_overrides": {"tenant_id": t, "pair_id": target.spare_pair, "disabled": True,
                                           "reason": "intrusion"},
        "clinical.drug_interactions": {"id": w.id("ddi"), "tenant_id": t, "user_id": p.user,
                                       "medication_id": p.rows["healthcare.medications"], "severity": "MINOR",
                                       "interaction_type": "OTHER"},
        "clinical.clinical_rules": _rule_row(w, t),
        "clinical.clinical_rule_versions": {"rule_id": target.rule, "version": 99, "tenant_id": t,
                                            "definition": {}, "content_hash": "h"},
        "audit.audit_logs": {"tenant_id": t, "user_id": actor, "action": "FORGED"},
        "audit.audit_logs_archive": _archive_row(w, t),
        # The author must be a user of the row's tenant (composite foreign key).
        "clinical.alert_feedback": _feedback_row(
            w, t, actor if actor in target.staff.values() else target.lonely),
        "audit.audit_seals": _seal_row(t, 2),
        "public.clients": _client_row(w, t),
        "public.client_token_uses": _token_use_row(w, t, target.client),
        # A review of the target's grant, under the actor's name when the actor is of that tenant
        # (the reviewer is a user of the row's tenant: composite foreign key).
        "healthcare.emergency_access_reviews": _review_row(
            w, t, target.keys["healthcare.emergency_access_grants"][1][0], p.user,
            actor if actor in target.staff.values() else target.staff["SUPER_ADMIN"]),
    }
    return rows[table]


@pytest.fixture(scope="module")
def pair_of_tenants(database_url: str, app: AppSession,
                    provider: KeyProvider) -> Iterator[tuple[World, TenantWorld, TenantWorld]]:
    """Two tenants with the same shape of data, built once for the module (tests only read or fail)."""
    suffix = uuid.uuid4().hex[:10]
    with psycopg.connect(_libpq(database_url), autocommit=True, row_factory=dict_row) as admin:
        w = World(admin, app, lambda prefix: f"{prefix}-{suffix}", provider)
        yield w, build_tenant(w, admin), build_tenant(w, admin)


def _tbl(table: str) -> sql.Composed:
    schema, name = table.split(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _frag(clause: str) -> sql.SQL:
    # Clauses are constants of this module, never input: safe to splice.
    return sql.SQL(clause)


def test_the_table_list_is_every_tenant_owned_table(admin: Conn) -> None:
    rows = admin.execute(
        """
        SELECT n.nspname || '.' || c.relname AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname IN ('public', 'healthcare', 'audit', 'clinical')
          AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                      AND NOT a.attisdropped)
        """).fetchall()
    assert {r["name"] for r in rows} | {"public.tenants"} == set(TABLES)


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("role", PRINCIPALS)
def test_principal_reads_only_its_tenant_even_with_or_true(
    pair_of_tenants: tuple[World, TenantWorld, TenantWorld], app: AppSession, role: str, table: str,
) -> None:
    _, a, b = pair_of_tenants
    col = sql.Identifier(TENANT_COLUMN[table])
    query = sql.SQL("SELECT {c} AS t FROM {t} WHERE {c} = %s OR true").format(c=col, t=_tbl(table))
    with app.scoped(a.tenant, a.staff[role], role) as c:
        seen = [r["t"] for r in c.execute(query, (b.tenant,)).fetchall()]
    allowed: set[str | None] = {a.tenant, None} if table in GLOBAL_ROWS_ALLOWED else {a.tenant}
    assert set(seen) <= allowed, f"{role} of {a.tenant} saw rows of {set(seen) - allowed}"
    # Not vacuous: each principal does see its own tenant's patient (own record, role or grant), and a
    # super admin sees something of its tenant in every table.
    if role == "SUPER_ADMIN" or table in {"public.tenants", "public.tenant_data_keys", *PHI_NAMES}:
        assert a.tenant in seen


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("role", PRINCIPALS)
def test_principal_cannot_insert_into_another_tenant(
    pair_of_tenants: tuple[World, TenantWorld, TenantWorld], app: AppSession, admin: Conn, role: str,
    table: str,
) -> None:
    w, a, b = pair_of_tenants
    actor = a.staff[role]
    row = attack_row(table, b, actor, w)
    # Control: the row itself is valid; only the policies can stop it.
    with admin.transaction():
        insert(admin, table, row)
        raise psycopg.Rollback()
    with app.scoped(a.tenant, actor, role) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            insert(c, table, row, returning=False)


@pytest.mark.parametrize("table", [t for t in TABLES if t not in NO_UPDATE and t != "public.tenants"])
def test_super_admin_can_insert_the_same_row_into_its_own_tenant(
    pair_of_tenants: tuple[World, TenantWorld, TenantWorld], app: AppSession, table: str,
) -> None:
    # The other half of the proof above: the refusal is about the tenant, not the kind of row.
    w, a, _ = pair_of_tenants
    actor = a.staff["SUPER_ADMIN"]
    with app.scoped(a.tenant, actor, "SUPER_ADMIN") as c, c.transaction(force_rollback=True):
        insert(c, table, attack_row(table, a, actor, w), returning=False)


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("role", PRINCIPALS)
def test_principal_cannot_update_another_tenants_rows(
    pair_of_tenants: tuple[World, TenantWorld, TenantWorld], app: AppSession, role: str, table: str,
) -> None:
    _, a, b = pair_of_tenants
    col = sql.Identifier(TENANT_COLUMN[table])
    clause, params = b.keys[table]
    query = sql.SQL("UPDATE {t} SET {c} = {c} WHERE {w}").format(t=_tbl(table), c=col, w=_frag(clause))
    with app.scoped(a.tenant, a.staff[role], role) as c:
        try:
            with c.transaction():
                cur = c.execute(query, params)
                # B's row is invisible: the statement matches nothing.
                assert cur.rowcount == 0
        except psycopg.errors.InsufficientPrivilege:
            pass  # no UPDATE privilege at all is an equally good answer


@pytest.mark.parametrize("table", TABLES)
def test_super_admin_cannot_move_a_row_to_another_tenant(
    pair_of_tenants: tuple[World, TenantWorld, TenantWorld], app: AppSession, admin: Conn, table: str,
) -> None:
    _, a, b = pair_of_tenants
    col = sql.Identifier(TENANT_COLUMN[table])
    clause, params = a.keys[table]
    in_place = sql.SQL("UPDATE {t} SET {c} = {c} WHERE {w}").format(t=_tbl(table), c=col, w=_frag(clause))
    move = sql.SQL("UPDATE {t} SET {c} = %s WHERE {w}").format(t=_tbl(table), c=col, w=_frag(clause))
    with app.scoped(a.tenant, a.staff["SUPER_ADMIN"], "SUPER_ADMIN") as c:
        if table not in NO_UPDATE:
            # Control: the super admin may update this very row where it is.
            with c.transaction(force_rollback=True):
                assert c.execute(in_place, params).rowcount == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege), c.transaction():
            c.execute(move, (b.tenant, *params))
    select = sql.SQL("SELECT {c} AS t FROM {t} WHERE {w}").format(c=col, t=_tbl(table), w=_frag(clause))
    still = admin.execute(select, params).fetchall()
    assert [r["t"] for r in still] == [a.tenant]


def test_end_user_cannot_move_own_medication_to_another_tenant(
    pair_of_tenants: tuple[World, TenantWorld, TenantWorld], app: AppSession,
) -> None:
    _, a, b = pair_of_tenants
    med = a.patient.rows["healthcare.medications"]
    with app.scoped(a.tenant, a.patient.user, "END_USER") as c:
        with c.transaction(force_rollback=True):  # control: own row, updatable in place
            assert c.execute("UPDATE healthcare.medications SET is_active = is_active WHERE id = %s",
                             (med,)).rowcount == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege), c.transaction():
            c.execute("UPDATE healthcare.medications SET tenant_id = %s WHERE id = %s", (b.tenant, med))


def _count(c: Conn, table: str) -> int:
    extra = " AND tenant_id IS NOT NULL" if table in GLOBAL_ROWS_ALLOWED else ""
    query = sql.SQL("SELECT count(*) AS n FROM {t} WHERE true{x}").format(t=_tbl(table), x=_frag(extra))
    row = c.execute(query).fetchone()
    assert row is not None
    return int(row["n"])


@pytest.mark.parametrize("table", TABLES)
def test_without_any_context_every_table_is_empty(
    pair_of_tenants: tuple[World, TenantWorld, TenantWorld], app: AppSession, table: str,
) -> None:
    # A fresh session where app.* was never set (current_setting returns NULL) ...
    with app.connect() as c:
        assert _count(c, table) == 0
    # ... and one where the service set them to empty strings.
    with app.scoped(None, None, None) as c:
        assert _count(c, table) == 0


@pytest.mark.parametrize("table", [t for t, _ in PHI_TABLES] + ["healthcare.consents", "audit.audit_logs"])
def test_tenant_alone_without_user_or_role_sees_no_health_data(
    pair_of_tenants: tuple[World, TenantWorld, TenantWorld], app: AppSession, table: str,
) -> None:
    _, a, _ = pair_of_tenants
    with app.scoped(a.tenant, None, None) as c:
        assert _count(c, table) == 0


@pytest.mark.parametrize("bad_role", ["ROOT", "super_admin", "SUPER_ADMIN ", "CLINICAL_ADVISOR,SUPER_ADMIN",
                                      "' OR true --"])
def test_an_unknown_role_denies(
    pair_of_tenants: tuple[World, TenantWorld, TenantWorld], app: AppSession, bad_role: str,
) -> None:
    _, a, _ = pair_of_tenants
    advisor = a.staff["CLINICAL_ADVISOR"]
    tables = [t for t, _ in PHI_TABLES] + ["healthcare.consents", "healthcare.emergency_access_grants",
                                           "audit.audit_logs_archive"]
    with app.scoped(a.tenant, advisor, "CLINICAL_ADVISOR") as c:  # control: the real role sees the patient
        assert _count(c, "healthcare.medications") > 0
    with app.scoped(a.tenant, advisor, bad_role) as c:
        role = c.execute("SELECT public.current_healthcare_role() AS r").fetchone()
        assert role == {"r": None}
        assert {t: _count(c, t) for t in tables} == dict.fromkeys(tables, 0)

"""A small builder for test worlds: tenants, users, health records, families, consents, grants.

Everything is written through the superuser `admin` connection (autocommit), because setting up
data is not what is under test and must not depend on the policies being tested. The one
exception is an emergency grant: it is created only by the real `emergency_health_access()`
function, called as praneya_app in a scoped transaction, exactly as the service will call it.

Each tenant gets a data-key row wrapped by the session's master key (fix_store's `provider`): the
key is never used here, but other suites (master-key rotation) unwrap every key in the database, so
it must be a real wrapped key rather than junk bytes.

Ids come from the test's `uid()` plus a counter, so two tests never share a tenant and the whole
suite can run in parallel without cleanup. Encrypted columns hold opaque placeholder strings
("v1:ct:..."): the app-side crypto arrives in a later issue, and the database must treat them as
opaque anyway.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from store.crypto import KeyProvider, wrap_context
from tests.fix_db import AppSession

Admin = psycopg.Connection[dict[str, Any]]

# (table, consent category) of every table holding one patient's health data.
PHI_TABLES: tuple[tuple[str, str], ...] = (
    ("healthcare.health_profiles", "PROFILE"),
    ("healthcare.medications", "MEDICATIONS"),
    ("healthcare.allergies", "ALLERGIES"),
    ("healthcare.conditions", "CONDITIONS"),
    ("healthcare.biometric_readings", "BIOMETRICS"),
)


def ciphertext(label: str = "x") -> str:
    """An opaque placeholder for an app-encrypted value; unique so it can be searched for."""
    return f"v1:ct:{label}:{uuid.uuid4().hex}"


def _ident(table: str) -> sql.Composed:
    schema, name = table.split(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def insert(conn: Admin, table: str, row: dict[str, Any], *, returning: bool = True) -> dict[str, Any]:
    """INSERT one row (any connection) and return it as stored.

    As praneya_app, pass returning=False to test the INSERT policy alone: RETURNING also applies
    the SELECT policy to the new row, which could hide a permissive INSERT policy.
    """
    cols = list(row)
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}){}").format(
        _ident(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in cols),
        sql.SQL(", ").join(sql.Placeholder() for _ in cols),
        sql.SQL(" RETURNING *" if returning else ""),
    )
    values = [Jsonb(v) if isinstance(v, dict) else v for v in row.values()]
    cur = conn.execute(query, values)
    if not returning:
        assert cur.rowcount == 1
        return row
    out = cur.fetchone()
    assert out is not None
    return out


@dataclass(frozen=True)
class Patient:
    """A user with a health profile and one row in every PHI table."""

    tenant: str
    user: str
    profile: str
    rows: dict[str, str] = field(default_factory=dict)  # table -> id of this patient's row


class World:
    """Builds committed test data under ids unique to the current test."""

    def __init__(self, admin: Admin, app: AppSession, uid: Callable[[str], str],
                 provider: KeyProvider) -> None:
        self.admin = admin
        self.app = app
        self.provider = provider
        self._uid = uid
        self._n = itertools.count(1)

    def id(self, prefix: str) -> str:
        return f"{self._uid(prefix)}-{next(self._n)}"

    # -- tenants and users ------------------------------------------------------------------------
    def tenant(self, *, with_key: bool = True) -> str:
        tid = self.id("tenant")
        insert(self.admin, "public.tenants", {"id": tid, "name": f"Tenant {tid}",
                                              "encryption_key_id": f"k-{tid}"})
        if with_key:
            wrapped = self.provider.wrap(os.urandom(32), wrap_context(tid, 1))
            insert(self.admin, "public.tenant_data_keys", {
                "tenant_id": tid, "key_version": 1, "wrapped_key": wrapped,
                "master_key_id": self.provider.master_key_id})
        return tid

    def user(self, tenant: str, role: str = "END_USER", *, mfa: bool = True, active: bool = True) -> str:
        user_id = self.id(role.lower())
        insert(self.admin, "public.users", {
            "id": user_id, "tenant_id": tenant, "healthcare_role": role, "mfa_enabled": mfa,
            "is_active": active, "encrypted_first_name": ciphertext("first_name")})
        return user_id

    # -- health records ----------------------------------------------------------------------------
    def profile(self, tenant: str, user: str, **cols: Any) -> str:
        pid = self.id("profile")
        insert(self.admin, "healthcare.health_profiles", {
            "id": pid, "tenant_id": tenant, "user_id": user, "encrypted_blood_type": ciphertext("blood"),
            **cols})
        return pid

    def medication(self, tenant: str, user: str, profile: str, *, active: bool = True, **cols: Any) -> str:
        return self._child("healthcare.medications", tenant, user, profile, {
            "encrypted_generic_name": ciphertext("drug"), "is_active": active, **cols})

    def allergy(self, tenant: str, user: str, profile: str, severity: str = "SEVERE", *, active: bool = True,
                **cols: Any) -> str:
        return self._child("healthcare.allergies", tenant, user, profile, {
            "encrypted_allergen": ciphertext("allergen"), "allergen_category": "DRUG", "severity": severity,
            "is_active": active, **cols})

    def condition(self, tenant: str, user: str, profile: str, *, active: bool = True, **cols: Any) -> str:
        return self._child("healthcare.conditions", tenant, user, profile, {
            "encrypted_name": ciphertext("condition"), "is_active": active, **cols})

    def biometric(self, tenant: str, user: str, profile: str, **cols: Any) -> str:
        return self._child("healthcare.biometric_readings", tenant, user, profile, {
            "reading_type": "heart_rate", "encrypted_value": ciphertext("bpm"),
            "taken_at": datetime.now().astimezone(), **cols})

    def _child(self, table: str, tenant: str, user: str, profile: str, cols: dict[str, Any]) -> str:
        row_id = self.id(table.split(".")[1])
        insert(self.admin, table, {"id": row_id, "tenant_id": tenant, "user_id": user,
                                   "health_profile_id": profile, **cols})
        return row_id

    def patient(self, tenant: str, role: str = "END_USER", user: str | None = None) -> Patient:
        """A user (new unless given) with a profile and one row in each PHI table."""
        uid = user or self.user(tenant, role)
        pid = self.profile(tenant, uid)
        rows = {
            "healthcare.health_profiles": pid,
            "healthcare.medications": self.medication(tenant, uid, pid),
            "healthcare.allergies": self.allergy(tenant, uid, pid),
            "healthcare.conditions": self.condition(tenant, uid, pid),
            "healthcare.biometric_readings": self.biometric(tenant, uid, pid),
        }
        return Patient(tenant=tenant, user=uid, profile=pid, rows=rows)

    # -- families and consents ---------------------------------------------------------------------
    def family(self, tenant: str, primary_user: str, *, max_members: int = 6) -> str:
        fid = self.id("family")
        insert(self.admin, "public.family_accounts", {
            "id": fid, "tenant_id": tenant, "primary_user_id": primary_user, "max_members": max_members})
        return fid

    def member(self, tenant: str, family: str, user: str, *, relationship: str = "OTHER",
               permission_level: str = "MEMBER", can_view_health_data: bool = False, is_minor: bool = False,
               minor_until: date | None = None, guardian_consent: bool = False) -> str:
        mid = self.id("member")
        insert(self.admin, "public.family_members", {
            "id": mid, "tenant_id": tenant, "family_account_id": family, "user_id": user,
            "relationship": relationship, "permission_level": permission_level,
            "can_view_health_data": can_view_health_data, "is_minor": is_minor, "minor_until": minor_until,
            "guardian_consent": guardian_consent})
        return mid

    def consent(self, tenant: str, subject: str, grantee: str, categories: Sequence[str], *,
                granted_at: datetime | None = None, expires_at: datetime | None = None,
                revoked_at: datetime | None = None) -> str:
        cid = self.id("consent")
        row: dict[str, Any] = {"id": cid, "tenant_id": tenant, "subject_user_id": subject,
                               "grantee_user_id": grantee, "categories": list(categories),
                               "expires_at": expires_at, "revoked_at": revoked_at}
        if granted_at is not None:
            row["granted_at"] = granted_at
        insert(self.admin, "healthcare.consents", row)
        return cid

    # -- emergency access --------------------------------------------------------------------------
    def emergency_grant(self, tenant: str, responder: str, patient: str, *, role: str = "EMERGENCY_RESPONDER",
                        reason: str | None = None, minutes: int = 60) -> dict[str, Any]:
        """Break the glass through the real function, as praneya_app; returns its JSONB answer."""
        with self.app.scoped(tenant, responder, role) as c:
            row = c.execute(
                "SELECT public.emergency_health_access(%s, %s, %s, 'BTG', %s) AS r",
                (patient, responder, reason or ciphertext("reason"), minutes),
            ).fetchone()
        assert row is not None
        result: dict[str, Any] = row["r"]
        return result


def visible_ids(conn: psycopg.Connection[dict[str, Any]], table: str, where: str = "true",
                params: Iterable[Any] = ()) -> set[str]:
    """Ids of the rows of `table` this connection may see (filtered by a trusted SQL fragment)."""
    query = sql.SQL("SELECT id FROM {} WHERE ").format(_ident(table)) + sql.SQL(where)
    return {r["id"] for r in conn.execute(query, list(params)).fetchall()}


@pytest.fixture
def world(admin: Admin, app: AppSession, uid: Callable[[str], str], provider: KeyProvider) -> World:
    return World(admin, app, uid, provider)

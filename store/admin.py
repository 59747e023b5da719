"""Operator functions: tenants (with their first data key), users (PII encrypted), families, consents.

They run on the caller's connection and never commit. The CLI runs them on the admin connection
(DATABASE_URL) because creating a tenant is a platform operation above any tenant's RLS; the
database triggers still audit every PHI write they make.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, text

from store.crypto import KeyProvider
from store.keys import KeyStore, create_data_key
from store.patients import new_id

__all__ = [
    "AdminError",
    "UserInput",
    "add_family_member",
    "create_family",
    "create_tenant",
    "create_user",
    "grant_consent",
    "revoke_consent",
]

CONSENT_CATEGORIES = ("PROFILE", "MEDICATIONS", "ALLERGIES", "CONDITIONS", "BIOMETRICS")


class AdminError(ValueError):
    """Bad input to an operator function; the message names the field."""


@dataclass(frozen=True, slots=True)
class UserInput:
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    date_of_birth: date | None = None
    healthcare_role: str = "END_USER"
    subscription_tier: str = "BASIC"
    mfa_enabled: bool = False
    firebase_uid: str | None = None


def create_tenant(
    conn: Connection,
    provider: KeyProvider,
    tenant_id: str,
    name: str,
    subdomain: str | None = None,
    plan_type: str = "BASIC",
) -> bool:
    """Creates the tenant and its first data key. Returns False when it already exists (idempotent)."""
    if not tenant_id or not tenant_id.replace("-", "").replace("_", "").isalnum():
        raise AdminError("tenant id must be letters, digits, '-' or '_'")
    if not name.strip():
        raise AdminError("tenant name must not be empty")
    created = conn.execute(
        text(
            "INSERT INTO public.tenants (id, name, subdomain, plan_type, encryption_key_id)"
            " VALUES (:id, :name, :sub, CAST(:plan AS public.plan_type), 'pending')"
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        {"id": tenant_id, "name": name, "sub": subdomain, "plan": plan_type},
    ).one_or_none()
    if created is None:
        return False
    create_data_key(conn, provider, tenant_id)
    return True


def create_user(conn: Connection, keys: KeyStore, tenant_id: str, user_id: str, user: UserInput) -> bool:
    """Creates a user with encrypted PII. Returns False when the id already exists (idempotent)."""
    ring = keys.keyring(conn, tenant_id, refresh=True)
    table = "public.users"
    created = conn.execute(
        text("""
        INSERT INTO public.users (id, tenant_id, encrypted_email, email_blind_index, firebase_uid,
            encrypted_first_name, encrypted_last_name, encrypted_phone, encrypted_date_of_birth, healthcare_role,
            subscription_tier, mfa_enabled)
        VALUES (:id, :t, :email, :bidx, :fb, :fn, :ln, :ph, :dob, CAST(:role AS public.healthcare_role),
            CAST(:tier AS public.subscription_tier), :mfa)
        ON CONFLICT (id) DO NOTHING RETURNING id
    """),
        {
            "id": user_id,
            "t": tenant_id,
            "email": ring.encrypt_optional(table, "encrypted_email", user_id, user.email),
            "bidx": ring.blind_index(user.email) if user.email else None,
            "fb": user.firebase_uid,
            "fn": ring.encrypt_optional(table, "encrypted_first_name", user_id, user.first_name),
            "ln": ring.encrypt_optional(table, "encrypted_last_name", user_id, user.last_name),
            "ph": ring.encrypt_optional(table, "encrypted_phone", user_id, user.phone),
            "dob": ring.encrypt_optional(
                table,
                "encrypted_date_of_birth",
                user_id,
                user.date_of_birth.isoformat() if user.date_of_birth else None,
            ),
            "role": user.healthcare_role,
            "tier": user.subscription_tier,
            "mfa": user.mfa_enabled,
        },
    ).one_or_none()
    return created is not None


def create_family(
    conn: Connection,
    keys: KeyStore,
    tenant_id: str,
    family_id: str,
    primary_user_id: str,
    family_name: str | None,
    max_members: int = 6,
    subscription_tier: str = "BASIC",
) -> bool:
    ring = keys.keyring(conn, tenant_id)
    created = conn.execute(
        text("""
        INSERT INTO public.family_accounts (id, tenant_id, primary_user_id, encrypted_family_name, max_members,
            subscription_tier)
        VALUES (:id, :t, :p, :n, :max, CAST(:tier AS public.subscription_tier))
        ON CONFLICT (id) DO NOTHING RETURNING id
    """),
        {
            "id": family_id,
            "t": tenant_id,
            "p": primary_user_id,
            "n": ring.encrypt_optional(
                "public.family_accounts", "encrypted_family_name", family_id, family_name
            ),
            "max": max_members,
            "tier": subscription_tier,
        },
    ).one_or_none()
    return created is not None


def add_family_member(
    conn: Connection,
    tenant_id: str,
    family_id: str,
    user_id: str,
    relationship: str,
    permission_level: str = "MEMBER",
    can_view_health_data: bool = False,
    minor_until: date | None = None,
    guardian_consent: bool = False,
    member_id: str | None = None,
) -> str:
    """Adds (or updates) a membership. A minor is a member with a `minor_until` date (their 18th birthday)."""
    if guardian_consent and minor_until is None:
        raise AdminError("guardian_consent applies only to minors: give minor_until (the 18th birthday)")
    mid = member_id or new_id("fm")
    row = conn.execute(
        text("""
        INSERT INTO public.family_members (id, tenant_id, family_account_id, user_id, relationship, permission_level,
            can_view_health_data, is_minor, minor_until, guardian_consent)
        VALUES (:id, :t, :f, :u, CAST(:rel AS public.family_relationship), CAST(:perm AS public.permission_level),
            :view, :minor, :until, :gc)
        ON CONFLICT (family_account_id, user_id) DO UPDATE SET relationship = EXCLUDED.relationship,
            permission_level = EXCLUDED.permission_level, can_view_health_data = EXCLUDED.can_view_health_data,
            is_minor = EXCLUDED.is_minor, minor_until = EXCLUDED.minor_until,
            guardian_consent = EXCLUDED.guardian_consent
        RETURNING id
    """),
        {
            "id": mid,
            "t": tenant_id,
            "f": family_id,
            "u": user_id,
            "rel": relationship,
            "perm": permission_level,
            "view": can_view_health_data,
            "minor": minor_until is not None,
            "until": minor_until,
            "gc": guardian_consent,
        },
    ).one()
    return str(row[0])


def grant_consent(
    conn: Connection,
    keys: KeyStore,
    tenant_id: str,
    subject_user_id: str,
    grantee_user_id: str,
    categories: list[str],
    expires_in: timedelta | None = None,
    purpose: str | None = None,
    consent_id: str | None = None,
) -> str:
    if not categories:
        raise AdminError("categories: name at least one of " + ", ".join(CONSENT_CATEGORIES))
    unknown = sorted(set(categories) - set(CONSENT_CATEGORIES))
    if unknown:
        raise AdminError(f"categories: unknown {', '.join(unknown)}; use {', '.join(CONSENT_CATEGORIES)}")
    if subject_user_id == grantee_user_id:
        raise AdminError("grantee must differ from the subject")
    cid = consent_id or new_id("consent")
    expires = datetime.now(UTC) + expires_in if expires_in else None
    # The purpose is the member's own words ("so she can manage my insulin"): PHI, so encrypted.
    encrypted_purpose = keys.keyring(conn, tenant_id).encrypt_optional(
        "healthcare.consents", "encrypted_purpose", cid, purpose
    )
    conn.execute(
        text("""
        INSERT INTO healthcare.consents (id, tenant_id, subject_user_id, grantee_user_id, categories,
            encrypted_purpose, expires_at)
        VALUES (:id, :t, :s, :g, CAST(:cats AS public.consent_category[]), :p, :exp)
        ON CONFLICT (id) DO NOTHING
    """),
        {
            "id": cid,
            "t": tenant_id,
            "s": subject_user_id,
            "g": grantee_user_id,
            "cats": sorted(set(categories)),
            "p": encrypted_purpose,
            "exp": expires,
        },
    )
    return cid


def revoke_consent(conn: Connection, consent_id: str) -> bool:
    """Revokes at once; returns False when there is no such active consent visible to the caller."""
    row = conn.execute(
        text(
            "UPDATE healthcare.consents SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL RETURNING id"
        ),
        {"id": consent_id},
    ).one_or_none()
    return row is not None

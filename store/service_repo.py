"""What the gRPC service reads and writes besides patient records: audit rows, recipes, break-the-glass
grants and their review, alert feedback. Never commits; the RPC owns the transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from store.keys import KeyStore
from store.patients import PatientNotFound
from store.session import Tx

__all__ = [
    "AUDIT_INSERT",
    "AUDIT_TABLE",
    "SEALED_RULES",
    "EmergencyGrant",
    "GrantAlreadyEnded",
    "GrantEvent",
    "GrantReview",
    "break_the_glass",
    "end_grant",
    "feedback_id",
    "latest_evaluation_showing",
    "list_grants",
    "override_rates",
    "recipe_ingredients",
    "record_feedback",
    "review_grant",
    "write_audit",
]

_GRANTS = "healthcare.emergency_access_grants"
AUDIT_TABLE = "audit.audit_logs"
# The details key of an evaluation's audit row holding, encrypted with the tenant's data key, which rules
# fired (rule ids name drugs and allergens); the associated data binds it to that row's id.
SEALED_RULES = "sealed_rules"


# One audit row; client address and user agent come from the transaction's context (set_config), and
# in a registered client's transaction the client and the user it acts for (see write_audit).
AUDIT_INSERT = text("""
    INSERT INTO audit.audit_logs (id, tenant_id, user_id, action, resource_type, resource_id, patient_id,
        outcome, details, phi_accessed, risk_score, compliance_flags, ip_address, user_agent)
    VALUES (:id, :t, CASE WHEN public.current_client_id() IS NULL THEN CAST(:u AS text) END, :action, :rt,
        :rid, :patient, :outcome,
        CAST(:details AS jsonb) || CASE WHEN public.current_client_id() IS NULL THEN '{}'::jsonb
            ELSE jsonb_strip_nulls(jsonb_build_object('client_id', public.current_client_id(),
                                                      'acting_for', public.current_acting_for())) END,
        :phi, :risk, CAST(:flags AS text[]) || CASE WHEN public.current_client_id() IS NULL THEN '{}'::text[]
            ELSE ARRAY['CLIENT'] END,
        NULLIF(current_setting('app.client_addr', true), ''), NULLIF(current_setting('app.user_agent', true), ''))
""")


def write_audit(
    conn: Tx,
    *,
    audit_id: str,
    tenant_id: str,
    user_id: str | None,
    action: str,
    outcome: str,
    patient_id: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    details: Mapping[str, Any] | None = None,
    phi_accessed: bool = False,
    risk_score: float = 0.0,
    flags: Sequence[str] = (),
) -> None:
    """One audit row in the caller's transaction; client address and user agent come from the context.

    So does a registered client: in a client's transaction the row has no user (a client is not a
    user; `user_id` is ignored) and `details` name the client and the user it acts for, whatever
    the caller passed, so no door can leave them out."""
    conn.execute(
        AUDIT_INSERT,
        {
            "id": audit_id,
            "t": tenant_id,
            "u": user_id,
            "action": action,
            "rt": resource_type,
            "rid": resource_id,
            "patient": patient_id,
            "outcome": outcome,
            "details": json.dumps(dict(details or {}), sort_keys=True),
            "phi": phi_accessed,
            "risk": risk_score,
            "flags": list(flags),
        },
    )


def recipe_ingredients(conn: Tx, recipe_id: str) -> list[str]:
    rows = (
        conn.execute(
            text(
                "SELECT i.name FROM public.recipes r JOIN public.recipe_ingredients i ON i.recipe_id = r.id"
                " AND i.tenant_id = r.tenant_id WHERE r.id = :r ORDER BY i.position"
            ),
            {"r": recipe_id},
        )
        .scalars()
        .all()
    )
    if not rows and conn.execute(text("SELECT 1 FROM public.recipes WHERE id = :r"), {"r": recipe_id}).first() is None:
        raise LookupError("recipe not found")
    return list(rows)


@dataclass(frozen=True)
class EmergencyGrant:
    grant_id: str
    audit_id: str
    expires_at: datetime
    critical_allergies: list[dict[str, Any]]
    active_medications: list[dict[str, Any]]
    active_conditions: list[dict[str, Any]]


def break_the_glass(
    conn: Connection,
    keys: KeyStore,
    *,
    tenant_id: str,
    requesting_user_id: str,
    patient_id: str,
    reason_code: str,
    reason_text: str,
    grant_minutes: int,
) -> EmergencyGrant:
    """Calls the database's emergency_health_access() and decrypts what it returns."""
    ring = keys.keyring(conn, tenant_id)
    grant_id = str(uuid.uuid4())
    encrypted_reason = ring.encrypt(_GRANTS, "encrypted_reason_text", grant_id, reason_text)
    result: dict[str, Any] = conn.execute(
        text(
            "SELECT public.emergency_health_access(:patient, :me, :reason,"
            " CAST(:code AS public.emergency_reason_code), :minutes, :gid)"
        ),
        {
            "patient": patient_id,
            "me": requesting_user_id,
            "reason": encrypted_reason,
            "code": reason_code,
            "minutes": grant_minutes,
            "gid": grant_id,
        },
    ).scalar_one()

    def dec(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key.startswith("encrypted_"):
                out[key.removeprefix("encrypted_")] = ring.decrypt_optional(table, key, row["id"], value)
            else:
                out[key] = value
        return out

    allergies = [dec("healthcare.allergies", a) for a in result["critical_allergies"]]
    for a in allergies:
        a["reactions"] = json.loads(a["reactions"]) if a.get("reactions") else []
    return EmergencyGrant(
        grant_id=result["grant_id"],
        audit_id=result["audit_id"],
        expires_at=datetime.fromisoformat(result["expires_at"]),
        critical_allergies=allergies,
        active_medications=[dec("healthcare.medications", m) for m in result["active_medications"]],
        active_conditions=[dec("healthcare.conditions", c) for c in result["active_conditions"]],
    )


@dataclass(frozen=True)
class GrantReview:
    review_id: str
    outcome: str
    reviewer_user_id: str
    notes: str
    reviewed_at: datetime


@dataclass(frozen=True)
class GrantEvent:
    grant_id: str
    patient_id: str
    grantee_user_id: str
    reason_code: str
    reason_text: str
    granted_at: datetime
    expires_at: datetime
    reviews: tuple[GrantReview, ...] = ()  # oldest first
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    @property
    def latest_review(self) -> GrantReview | None:
        return self.reviews[-1] if self.reviews else None


class GrantAlreadyEnded(RuntimeError):
    """The grant was ended early or has expired: there is nothing left to end."""


_REVIEWS = "healthcare.emergency_access_reviews"
_GRANT_COLUMNS = """id, tenant_id, patient_user_id, grantee_user_id, reason_code::text AS reason_code,
    encrypted_reason_text, granted_at, expires_at, review_outcome, reviewed_by, reviewed_at,
    encrypted_review_notes, ended_at, ended_by, encrypted_end_reason"""
_GRANTS_BY_ID = text(f"SELECT {_GRANT_COLUMNS} FROM healthcare.emergency_access_grants WHERE id = :id")  # noqa: S608
_REVIEWS_OF = text(
    "SELECT id, grant_id, outcome, reviewer_user_id, encrypted_notes, reviewed_at"
    " FROM healthcare.emergency_access_reviews WHERE grant_id = ANY(:ids) ORDER BY reviewed_at, id"
)


def _grant_events(keys: KeyStore, conn: Connection, rows: Sequence[Any]) -> list[GrantEvent]:
    """Grants with their review history, oldest review first; one query for the reviews of them all.

    A review recorded before migration 0010 (or by a release that still writes the grant's own
    columns) lives in the grant row, its notes bound to the grant: it is the first of the history."""
    history: dict[str, list[GrantReview]] = {}
    if rows:
        ring_of = {t: keys.keyring(conn, t) for t in {r.tenant_id for r in rows}}
        tenant_of = {r.id: r.tenant_id for r in rows}
        for rv in conn.execute(_REVIEWS_OF, {"ids": [r.id for r in rows]}).all():
            ring = ring_of[tenant_of[rv.grant_id]]
            notes = ring.decrypt_optional(_REVIEWS, "encrypted_notes", rv.id, rv.encrypted_notes) or ""
            history.setdefault(rv.grant_id, []).append(
                GrantReview(rv.id, rv.outcome, rv.reviewer_user_id, notes, rv.reviewed_at)
            )
    events = []
    for row in rows:
        ring = keys.keyring(conn, row.tenant_id)
        reviews = history.get(row.id, [])
        if row.reviewed_at is not None:
            legacy_notes = ring.decrypt_optional(_GRANTS, "encrypted_review_notes", row.id, row.encrypted_review_notes)
            reviews.insert(
                0, GrantReview(row.id, row.review_outcome, row.reviewed_by or "", legacy_notes or "", row.reviewed_at)
            )
        events.append(
            GrantEvent(
                row.id,
                row.patient_user_id,
                row.grantee_user_id,
                row.reason_code,
                ring.decrypt(_GRANTS, "encrypted_reason_text", row.id, row.encrypted_reason_text),
                row.granted_at,
                row.expires_at,
                tuple(reviews),
                row.ended_at,
                row.ended_by,
                ring.decrypt_optional(_GRANTS, "encrypted_end_reason", row.id, row.encrypted_end_reason),
            )
        )
    return events


def list_grants(
    conn: Connection, keys: KeyStore, *, unreviewed_only: bool, limit: int, after: tuple[datetime, str] | None
) -> list[GrantEvent]:
    """The review queue, newest first, keyset-paginated on (granted_at, id), each grant with its reviews."""
    rows = conn.execute(
        text(f"""
        SELECT {_GRANT_COLUMNS}
        FROM healthcare.emergency_access_grants g
        WHERE (NOT :unreviewed OR (reviewed_at IS NULL
                                   AND NOT EXISTS (SELECT FROM healthcare.emergency_access_reviews r
                                                   WHERE r.grant_id = g.id)))
          AND (CAST(:after_ts AS timestamptz) IS NULL OR (granted_at, id) < (CAST(:after_ts AS timestamptz), :after_id))
        ORDER BY granted_at DESC, id DESC LIMIT :n
    """),  # noqa: S608 - the column list is a constant
        {
            "unreviewed": unreviewed_only,
            "after_ts": after[0] if after else None,
            "after_id": after[1] if after else "",
            "n": limit,
        },
    ).all()
    return _grant_events(keys, conn, rows)


def review_grant(
    conn: Connection,
    keys: KeyStore,
    *,
    tenant_id: str,
    grant_id: str,
    reviewer: str,
    outcome: str,
    notes: str,
) -> GrantEvent:
    """Appends a review to the grant's history (never overwrites one) and returns the grant with it."""
    row = conn.execute(_GRANTS_BY_ID, {"id": grant_id}).one_or_none()
    if row is None:
        raise PatientNotFound("emergency access event not found")
    ring = keys.keyring(conn, tenant_id)
    review_id = str(uuid.uuid4())
    conn.execute(
        text("""
        INSERT INTO healthcare.emergency_access_reviews
            (id, tenant_id, grant_id, patient_user_id, reviewer_user_id, outcome, encrypted_notes)
        VALUES (:id, :t, :g, :p, :me, :outcome, :notes)
    """),
        {
            "id": review_id,
            "t": tenant_id,
            "g": grant_id,
            "p": row.patient_user_id,
            "me": reviewer,
            "outcome": outcome,
            "notes": ring.encrypt_optional(_REVIEWS, "encrypted_notes", review_id, notes or None),
        },
    )
    return _grant_events(keys, conn, [row])[0]


def end_grant(conn: Connection, keys: KeyStore, *, tenant_id: str, grant_id: str, reason: str) -> GrantEvent:
    """Ends a grant before it expires (the grantee or a super admin; the database function decides).

    Raises PatientNotFound for a grant this caller may not end (missing, another tenant's, another
    responder's: the same answer), GrantAlreadyEnded for one that has ended or expired."""
    ring = keys.keyring(conn, tenant_id)
    try:
        conn.execute(
            text("SELECT public.end_emergency_access(:id, :reason)"),
            {"id": grant_id, "reason": ring.encrypt(_GRANTS, "encrypted_end_reason", grant_id, reason)},
        )
    except DBAPIError as exc:
        if isinstance(exc.orig, pg_errors.NoDataFound):
            raise PatientNotFound("emergency access grant not found") from None
        if isinstance(exc.orig, pg_errors.ObjectNotInPrerequisiteState):
            raise GrantAlreadyEnded("the emergency access grant has already ended") from None
        raise
    row = conn.execute(_GRANTS_BY_ID, {"id": grant_id}).one()
    return _grant_events(keys, conn, [row])[0]


def record_feedback(
    conn: Connection,
    keys: KeyStore,
    *,
    tenant_id: str,
    user_id: str,
    evaluation_id: str,
    alert_id: str,
    outcome: str,
    reason: str | None,
    comment: str,
) -> str:
    """Feedback on an alert of an evaluation the caller can see in the audit trail (their own)."""
    details = conn.execute(
        text(
            "SELECT details FROM audit.audit_logs"
            " WHERE id = :id AND action IN ('EVALUATE_SAFETY', 'EVALUATE_SUPPLIED')"
        ),
        {"id": evaluation_id},
    ).scalar_one_or_none()
    if details is None:
        raise LookupError("evaluation not found")
    ring = keys.keyring(conn, tenant_id)
    sealed = details.get(SEALED_RULES)
    alerts = json.loads(ring.decrypt(AUDIT_TABLE, SEALED_RULES, evaluation_id, sealed))["alerts"] if sealed else []
    alert = next((a for a in alerts if a.get("alert_id") == alert_id), None)
    if alert is None:
        raise LookupError("alert not found in that evaluation")
    fid = str(uuid.uuid4())
    conn.execute(
        text("""
        INSERT INTO clinical.alert_feedback (id, tenant_id, user_id, client_id, evaluation_id, alert_id, rule_id,
            outcome, reason_code, encrypted_comment)
        VALUES (:id, :t, CASE WHEN public.current_client_id() IS NULL THEN CAST(:u AS text) END,
            public.current_client_id(), :e, :a, :r, :o, :reason, :c)
    """),
        {
            "id": fid,
            "t": tenant_id,
            "u": user_id,
            "e": evaluation_id,
            "a": alert_id,
            "r": alert["rule_id"],
            "o": outcome,
            "reason": reason,
            "c": ring.encrypt_optional("clinical.alert_feedback", "encrypted_comment", fid, comment or None),
        },
    )
    return fid


def latest_evaluation_showing(conn: Connection, *, user_id: str, alert_id: str) -> str | None:
    """The id of the caller's most recent successful evaluation that showed `alert_id` (its audit row
    lists the ids it showed), or None. A registered client's are the rows that name it."""
    return conn.execute(
        text("""
        SELECT id FROM audit.audit_logs
        WHERE (CASE WHEN public.current_client_id() IS NULL THEN user_id = :u
                    ELSE user_id IS NULL AND details ->> 'client_id' = public.current_client_id() END)
          AND action IN ('EVALUATE_SAFETY', 'EVALUATE_SUPPLIED')
          AND outcome IN ('SUCCESS', 'TRUNCATED') AND details -> 'alert_ids' ? :a
        ORDER BY "timestamp" DESC LIMIT 1
    """),
        {"u": user_id, "a": alert_id},
    ).scalar_one_or_none()


def feedback_id(conn: Connection, *, evaluation_id: str, alert_id: str, user_id: str) -> str | None:
    """The id of the answer already recorded for this alert of this evaluation by this user, if any."""
    return conn.execute(
        text(
            "SELECT id FROM clinical.alert_feedback WHERE evaluation_id = :e AND alert_id = :a"
            " AND user_id IS NOT DISTINCT FROM (CASE WHEN public.current_client_id() IS NULL THEN CAST(:u AS text) END)"
            " AND client_id IS NOT DISTINCT FROM public.current_client_id()"
        ),
        {"e": evaluation_id, "a": alert_id, "u": user_id},
    ).scalar_one_or_none()


def override_rates(
    conn: Connection, keys: KeyStore, *, tenant_id: str, since_days: int
) -> list[tuple[str, int, int]]:
    """(rule_id, times shown, times overridden) for the tenant's evaluations of the last `since_days`.

    Shown counts every alert of every successful evaluation, from the evaluation audit rows (their
    sealed rule lists, through audit.evaluation_alert_seals: the tenant's, to its clinical advisors and
    super admins). Overridden counts the shown alerts with an OVERRIDDEN answer, once each however many
    users answered, so a rate never exceeds 1 and an alert shown dozens of times and overridden once
    is not "always overridden". Most overridden first, then by rule id."""
    overridden_alerts = {
        (r.evaluation_id, r.alert_id)
        for r in conn.execute(
            text("""
            SELECT DISTINCT evaluation_id, alert_id FROM clinical.alert_feedback
            WHERE tenant_id = :t AND outcome = 'OVERRIDDEN' AND created_at > now() - make_interval(days => :d)
        """),
            {"t": tenant_id, "d": since_days},
        )
    }
    ring = keys.keyring(conn, tenant_id)
    shown: dict[str, int] = {}
    overridden: dict[str, int] = {}
    seals = conn.execute(
        text("SELECT evaluation_id, sealed_rules FROM audit.evaluation_alert_seals(:d)"),
        {"d": since_days},
        execution_options={"yield_per": 1000},  # a server-side cursor: months of evaluations, one batch at a time
    )
    for row in seals:
        for alert in json.loads(ring.decrypt(AUDIT_TABLE, SEALED_RULES, row.evaluation_id, row.sealed_rules))["alerts"]:
            rule = alert["rule_id"]
            shown[rule] = shown.get(rule, 0) + 1
            if (row.evaluation_id, alert["alert_id"]) in overridden_alerts:
                overridden[rule] = overridden.get(rule, 0) + 1
    return sorted(
        ((rule, n, overridden.get(rule, 0)) for rule, n in shown.items()), key=lambda r: (-r[2], r[0])
    )

"""Break the glass, from any door: a responder's time-limited grant to one patient's critical
allergies, active medications and conditions, with a reason and an audit trail; the review queue of
past grants; a grant's review; and a grant ended before it expires.

A grant is a user's act (a responder or clinical advisor, with MFA), never a registered client's:
these calls name no client scope, so `Calls.run` refuses clients.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from engine.app.calls import Calls, audit_failure
from engine.app.failures import invalid
from engine.app.validation import ID, MAX_REASON, check_id, check_reason, check_text
from store import service_repo
from store.keys import KeyStore
from store.service_repo import GrantEvent, GrantReview
from store.session import Database, Principal, RequestMeta

__all__ = [
    "BREAK_GLASS_ROLES",
    "REASON_CODES",
    "REVIEW_OUTCOMES",
    "BreakGlass",
    "EmergencyAccess",
    "EmergencyAllergyView",
    "EmergencyConditionView",
    "EmergencyMedicationView",
    "EmergencySummary",
    "EventsPage",
    "GrantEnded",
    "GrantEvent",
    "GrantReview",
]

BREAK_GLASS_ROLES = ("EMERGENCY_RESPONDER", "CLINICAL_ADVISOR")
REASON_CODES = ("ETREAT", "BTG")  # HL7 v3 ActReason: emergency treatment, break the glass
REVIEW_OUTCOMES = ("APPROPRIATE", "INAPPROPRIATE", "NEEDS_FOLLOW_UP")
MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class BreakGlass:
    patient_id: str
    reason_code: str  # ETREAT or BTG; "" when the caller gave none
    reason_text: str


@dataclass(frozen=True, slots=True)
class EmergencyMedicationView:
    medication_id: str
    name: str
    brand_name: str
    dose: str
    frequency: str
    route: str
    is_emergency_medication: bool


@dataclass(frozen=True, slots=True)
class EmergencyAllergyView:
    allergy_id: str
    allergen: str
    category: str
    severity: str
    reactions: tuple[str, ...]
    emergency_medication: str


@dataclass(frozen=True, slots=True)
class EmergencyConditionView:
    condition_id: str
    name: str
    code: str
    is_critical: bool


@dataclass(frozen=True, slots=True)
class EmergencySummary:
    grant_id: str
    expires_at: datetime
    audit_id: str
    critical_allergies: tuple[EmergencyAllergyView, ...]
    active_medications: tuple[EmergencyMedicationView, ...]
    active_conditions: tuple[EmergencyConditionView, ...]

    @property
    def emergency_medications(self) -> tuple[EmergencyMedicationView, ...]:
        return tuple(m for m in self.active_medications if m.is_emergency_medication)


@dataclass(frozen=True, slots=True)
class EventsPage:
    events: tuple[GrantEvent, ...]
    next_page_token: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class GrantEnded:
    grant_id: str
    ended_at: datetime
    audit_id: str


def _summary(grant: service_repo.EmergencyGrant) -> EmergencySummary:
    return EmergencySummary(
        grant_id=grant.grant_id,
        expires_at=grant.expires_at,
        audit_id=grant.audit_id,
        critical_allergies=tuple(
            EmergencyAllergyView(
                allergy_id=a["id"],
                allergen=a["allergen"] or "",
                category=a["allergen_category"],
                severity=a["severity"],
                reactions=tuple(a["reactions"]),
                emergency_medication=a.get("emergency_medication") or "",
            )
            for a in grant.critical_allergies
        ),
        active_medications=tuple(
            EmergencyMedicationView(
                medication_id=m["id"],
                name=m["generic_name"] or "",
                brand_name=m.get("brand_name") or "",
                dose=m.get("dosage") or "",
                frequency=m.get("frequency") or "",
                route=m.get("route") or "",
                is_emergency_medication=bool(m.get("is_emergency_medication")),
            )
            for m in grant.active_medications
        ),
        active_conditions=tuple(
            EmergencyConditionView(
                condition_id=c["id"],
                name=c["name"] or "",
                code=c.get("code") or "",
                is_critical=bool(c["is_critical"]),
            )
            for c in grant.active_conditions
        ),
    )


class EmergencyAccess:
    def __init__(self, db: Database, keys: KeyStore, calls: Calls, *, grant_minutes: int = 60) -> None:
        self.db = db
        self.keys = keys
        self.calls = calls
        self.grant_minutes = grant_minutes  # PRANEYA_EMERGENCY_GRANT_MINUTES

    def break_the_glass(
        self, principal: Principal, meta: RequestMeta, request: BreakGlass, *, door: str = "grpc"
    ) -> EmergencySummary:
        def run(principal: Principal, meta: RequestMeta) -> EmergencySummary:
            check_id("patient_id", request.patient_id)
            if not request.reason_code:
                raise invalid("reason_code", "is required (ETREAT or BTG)")
            if request.reason_code not in REASON_CODES:
                raise invalid("reason_code", "must be ETREAT or BTG")
            reason = check_reason("reason_text", request.reason_text)
            with self.db.scoped(principal, meta, verify=True) as conn:
                grant = service_repo.break_the_glass(
                    conn,
                    self.keys,
                    tenant_id=principal.tenant_id,
                    requesting_user_id=principal.user_id,
                    patient_id=request.patient_id,
                    reason_code=request.reason_code,
                    reason_text=reason,
                    grant_minutes=self.grant_minutes,
                )
            return _summary(grant)

        return self.calls.run(
            "EmergencyAccess",
            principal,
            meta,
            run,
            roles=BREAK_GLASS_ROLES,
            on_failure=audit_failure("EMERGENCY_ACCESS", request.patient_id or None),
            door=door,
        )

    def list_events(
        self,
        principal: Principal,
        meta: RequestMeta,
        *,
        page_size: int = 0,
        page_token: str = "",
        unreviewed_only: bool = False,
        door: str = "grpc",
    ) -> EventsPage:
        """The review queue, newest first; `page_size` 0 means 50."""

        def run(principal: Principal, meta: RequestMeta) -> EventsPage:
            size = page_size or 50
            if not 1 <= size <= MAX_PAGE:
                raise invalid("page_size", f"must be between 1 and {MAX_PAGE}")
            after = _decode_page_token(page_token) if page_token else None
            with self.db.scoped(principal, meta, verify=True) as conn:
                events = service_repo.list_grants(
                    conn, self.keys, unreviewed_only=unreviewed_only, limit=size + 1, after=after
                )
            page, more = events[:size], len(events) > size
            token = _encode_page_token(page[-1].granted_at, page[-1].grant_id) if more else ""
            return EventsPage(tuple(page), token)

        return self.calls.run("ListEmergencyAccessEvents", principal, meta, run, roles=("SUPER_ADMIN",), door=door)

    def review(
        self,
        principal: Principal,
        meta: RequestMeta,
        grant_id: str,
        outcome: str,
        notes: str = "",
        *,
        door: str = "grpc",
    ) -> GrantEvent:
        def run(principal: Principal, meta: RequestMeta) -> GrantEvent:
            check_id("grant_id", grant_id)
            if outcome not in REVIEW_OUTCOMES:
                raise invalid("outcome", "must be APPROPRIATE, INAPPROPRIATE or NEEDS_FOLLOW_UP")
            checked_notes = check_text("notes", notes, limit=MAX_REASON) or ""
            with self.db.scoped(principal, meta, verify=True) as conn:
                return service_repo.review_grant(
                    conn,
                    self.keys,
                    tenant_id=principal.tenant_id,
                    grant_id=grant_id,
                    reviewer=principal.user_id,
                    outcome=outcome,
                    notes=checked_notes,
                )

        return self.calls.run("ReviewEmergencyAccessEvent", principal, meta, run, roles=("SUPER_ADMIN",), door=door)

    def end(
        self, principal: Principal, meta: RequestMeta, grant_id: str, reason: str, *, door: str = "grpc"
    ) -> GrantEnded:
        """Ends a grant before it expires: its grantee, or a super admin of the tenant."""

        def run(principal: Principal, meta: RequestMeta) -> GrantEnded:
            check_id("grant_id", grant_id)
            checked_reason = check_reason("reason", reason)
            audit_id = str(uuid.uuid4())
            with self.db.scoped(principal, meta, verify=True) as conn:
                event = service_repo.end_grant(
                    conn, self.keys, tenant_id=principal.tenant_id, grant_id=grant_id, reason=checked_reason
                )
                assert event.ended_at is not None
                service_repo.write_audit(
                    conn,
                    audit_id=audit_id,
                    tenant_id=principal.tenant_id,
                    user_id=principal.user_id,
                    action="END_EMERGENCY_ACCESS",
                    outcome="SUCCESS",
                    patient_id=event.patient_id,
                    resource_type="healthcare.emergency_access_grants",
                    resource_id=event.grant_id,
                    phi_accessed=False,
                    risk_score=0.3,
                    flags=["BREAK_GLASS_ENDED"]
                    + ([] if event.grantee_user_id == principal.user_id else ["ENDED_BY_ADMIN"]),
                    details={
                        "request_id": meta.request_id,
                        "grant_id": event.grant_id,
                        "grantee_user_id": event.grantee_user_id,
                        "expires_at": event.expires_at.isoformat(),
                    },
                )
            return GrantEnded(event.grant_id, event.ended_at, audit_id)

        return self.calls.run(
            "EndEmergencyAccess",
            principal,
            meta,
            run,
            roles=(*BREAK_GLASS_ROLES, "SUPER_ADMIN"),
            on_failure=audit_failure("END_EMERGENCY_ACCESS", None),
            door=door,
        )


def _encode_page_token(ts: datetime, grant_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ts.isoformat(), grant_id]).encode()).decode()


def _decode_page_token(token: str) -> tuple[datetime, str]:
    # A page token comes back from the client: whatever it holds (NUL, a naive or absurd time, an id
    # of megabytes) is refused here, before it reaches SQL, the same way as a token that is not base64.
    try:
        ts, gid = json.loads(base64.urlsafe_b64decode(token.encode("utf-8", "surrogatepass")))
        after = datetime.fromisoformat(ts)
    except (ValueError, TypeError, OverflowError):
        raise invalid("page_token", "is not a token this service issued") from None
    if after.tzinfo is None or not isinstance(gid, str) or not ID.fullmatch(gid):
        raise invalid("page_token", "is not a token this service issued")
    return after, gid

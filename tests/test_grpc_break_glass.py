"""Issue 13, item 6, end to end: break the glass needs a reason a reviewer can read, reviews are a
history that is returned with its notes, and a grant can be ended early, closing access at once.

A real server over TLS and PostgreSQL as praneya_app (tests/fix_grpc.py); what row-level security
lets a responder see is checked as praneya_app too (tests/fix_db.py's `app`), never as an owner.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import psycopg
import pytest
from sqlalchemy import Engine, text

from engine.app.validation import MIN_REASON_VISIBLE, visible_characters
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from store.crypto import LocalKeyFileProvider
from store.keys import KeyStore, create_data_key, reencrypt_tenant
from store.service_repo import break_the_glass, list_grants, review_grant
from store.session import Database, Principal
from tests.fix_db import AppSession
from tests.fix_grpc import Service
from tests.test_grpc_service import ADMIN, ADVISOR, TENANT, admin_exec, audit_row, fail, med

pytestmark = pytest.mark.db

REASON = "found unconscious, medic alert bracelet"


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()


@pytest.fixture
def patient(svc: Service, stub: Any, make_patient: Callable[..., str]) -> str:
    """A fresh patient of the demo tenant with one active medication (something for a grant to show)."""
    who = make_patient(TENANT)
    stub.PutMedication(
        pb.PutMedicationRequest(patient_id=who, medication=med("metformin", dose="500 mg")),
        metadata=svc.md(ADVISOR),
        timeout=15,
    )
    return who


def _break_glass(svc: Service, stub: Any, patient: str, responder: str, reason: str = REASON) -> Any:
    return stub.EmergencyAccess(
        pb.EmergencyAccessRequest(patient_id=patient, reason_code=pb.BTG, reason_text=reason),
        metadata=svc.md(responder),
        timeout=15,
    )


def _grants_of(svc: Service, responder: str) -> int:
    with svc.admin.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM healthcare.emergency_access_grants WHERE grantee_user_id = :r"),
                {"r": responder},
            ).scalar_one()
        )


def _event(svc: Service, stub: Any, grant_id: str) -> Any:
    events = stub.ListEmergencyAccessEvents(
        pb.ListEmergencyAccessEventsRequest(page_size=500), metadata=svc.md(ADMIN), timeout=15
    ).events
    [event] = [e for e in events if e.grant_id == grant_id]
    return event


# -- a reason a reviewer can read -----------------------------------------------------------------------

INVISIBLE_OR_TOO_SHORT = [
    "\u200b" * 40,  # zero-width spaces
    "\u200b\u200c\u200d\u2060\ufeff" * 8,  # every zero-width and joiner character, and the BOM
    "\u202e\u2066\u2069\u00ad" * 10,  # direction overrides and isolates, soft hyphens
    "\U000e0041\U000e0042" * 10,  # tag characters
    "\u3164" * 12,  # Hangul filler: a "letter" that draws nothing
    "\u2800" * 12,  # the blank braille pattern
    "\u0301" * 12,  # combining marks with nothing to combine with
    "\u00a0\u2003\u3000" * 6,  # no-break, em and ideographic spaces
    "x",
    "n/a",
    "test",
    "\u200bx\u200by\u200bz\u200b",
    "a b c d e f g",  # seven visible characters, spaces between
]


@pytest.mark.parametrize("reason", INVISIBLE_OR_TOO_SHORT, ids=range(len(INVISIBLE_OR_TOO_SHORT)))
def test_a_reason_without_enough_visible_text_creates_no_grant(
    svc: Service, stub: Any, patient: str, make_patient: Callable[..., str], reason: str
) -> None:
    responder = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    details = fail(
        stub.EmergencyAccess,
        pb.EmergencyAccessRequest(patient_id=patient, reason_code=pb.ETREAT, reason_text=reason),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(responder),
    )
    # Blank after stripping is "is required"; the rest names the rule.
    assert details.startswith("reason_text:"), details
    assert f"{MIN_REASON_VISIBLE} visible" in details or (not reason.strip() and "required" in details), details
    assert _grants_of(svc, responder) == 0


def test_visible_text_is_counted_after_folding() -> None:
    assert MIN_REASON_VISIBLE == 8
    assert visible_characters("overdose") == 8
    assert visible_characters("o\u200bv\u200be\u200brdose") == 8  # invisible characters between letters
    assert visible_characters("\uff4f\uff56\uff45\uff52\uff44\uff4f\uff53\uff45") == 8  # full-width
    assert visible_characters("code blue") == 8
    assert visible_characters("phe\u0301nelzine") == 10  # the accent belongs to its letter


def test_a_short_real_reason_is_enough(svc: Service, stub: Any, patient: str, make_patient: Callable[..., str]) -> None:
    responder = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    assert _break_glass(svc, stub, patient, responder, "\u200boverdose\u200b").grant_id
    assert _grants_of(svc, responder) == 1


# -- reviews: an append-only history, returned with its notes -------------------------------------------


def test_reviews_are_appended_and_returned_with_their_notes(
    svc: Service, stub: Any, patient: str, make_patient: Callable[..., str]
) -> None:
    responder = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    second_admin = make_patient(TENANT, role="SUPER_ADMIN")
    grant = _break_glass(svc, stub, patient, responder).grant_id

    def review(who: str, outcome: str, notes: str) -> Any:
        return stub.ReviewEmergencyAccessEvent(
            pb.ReviewEmergencyAccessEventRequest(grant_id=grant, outcome=outcome, notes=notes),
            metadata=svc.md(who),
            timeout=15,
        ).event

    first = review(ADMIN, "NEEDS_FOLLOW_UP", "asked the responder for the run sheet")
    assert [(r.outcome, r.reviewer_user_id, r.notes) for r in first.reviews] == [
        ("NEEDS_FOLLOW_UP", ADMIN, "asked the responder for the run sheet")
    ]
    second = review(second_admin, "APPROPRIATE", "run sheet matches; access justified")
    assert (second.review_outcome, second.reviewed_by) == ("APPROPRIATE", second_admin)  # the latest
    listed = _event(svc, stub, grant)
    assert [(r.outcome, r.reviewer_user_id, r.notes) for r in listed.reviews] == [
        ("NEEDS_FOLLOW_UP", ADMIN, "asked the responder for the run sheet"),
        ("APPROPRIATE", second_admin, "run sheet matches; access justified"),
    ]
    assert listed.reviews[0].reviewed_at.ToDatetime() <= listed.reviews[1].reviewed_at.ToDatetime()
    assert len({r.review_id for r in listed.reviews}) == 2
    assert (listed.review_outcome, listed.reviewed_by, listed.reviewed_at) == (
        "APPROPRIATE",
        second_admin,
        listed.reviews[1].reviewed_at,
    )
    # Reviewed, so out of the queue; the grant's own review columns were never written.
    queue = stub.ListEmergencyAccessEvents(
        pb.ListEmergencyAccessEventsRequest(unreviewed_only=True, page_size=500), metadata=svc.md(ADMIN), timeout=15
    )
    assert grant not in {e.grant_id for e in queue.events}
    with svc.admin.connect() as conn:
        row = conn.execute(
            text("SELECT review_outcome, encrypted_review_notes FROM healthcare.emergency_access_grants WHERE id = :g"),
            {"g": grant},
        ).one()
        stored = conn.execute(
            text("SELECT encrypted_notes FROM healthcare.emergency_access_reviews WHERE grant_id = :g"), {"g": grant}
        ).scalars()
        assert tuple(row) == (None, None)
        assert all(n.startswith("pv1.") and "run sheet" not in n for n in stored)  # encrypted at rest


def test_a_review_recorded_before_the_history_is_its_first_entry(
    svc: Service, stub: Any, patient: str, make_patient: Callable[..., str], keys: KeyStore
) -> None:
    responder = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    grant = _break_glass(svc, stub, patient, responder).grant_id
    # What the previous release wrote: the review in the grant's own columns, notes bound to the grant.
    with svc.admin.begin() as conn:
        notes = keys.keyring(conn, TENANT).encrypt(
            "healthcare.emergency_access_grants", "encrypted_review_notes", grant, "legacy note"
        )
        conn.execute(
            text(
                "UPDATE healthcare.emergency_access_grants SET reviewed_at = now() - interval '1 minute',"
                " reviewed_by = :a, review_outcome = 'INAPPROPRIATE', encrypted_review_notes = :n WHERE id = :g"
            ),
            {"a": ADMIN, "n": notes, "g": grant},
        )
    event = stub.ReviewEmergencyAccessEvent(
        pb.ReviewEmergencyAccessEventRequest(grant_id=grant, outcome="APPROPRIATE", notes="overturned on appeal"),
        metadata=svc.md(ADMIN),
        timeout=15,
    ).event
    assert [(r.outcome, r.notes) for r in event.reviews] == [
        ("INAPPROPRIATE", "legacy note"),
        ("APPROPRIATE", "overturned on appeal"),
    ]


def test_reviews_cannot_be_changed_or_removed_and_are_for_super_admins(
    svc: Service, stub: Any, patient: str, make_patient: Callable[..., str], app: AppSession
) -> None:
    responder = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    grant = _break_glass(svc, stub, patient, responder).grant_id
    stub.ReviewEmergencyAccessEvent(
        pb.ReviewEmergencyAccessEventRequest(grant_id=grant, outcome="APPROPRIATE", notes="fine"),
        metadata=svc.md(ADMIN),
        timeout=15,
    )
    for sql in (
        "UPDATE healthcare.emergency_access_reviews SET outcome = 'INAPPROPRIATE' WHERE grant_id = %s",
        "DELETE FROM healthcare.emergency_access_reviews WHERE grant_id = %s",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app.scoped(TENANT, ADMIN, "SUPER_ADMIN") as c:
            c.execute(sql, (grant,))
    # The append-only trigger holds even for a role with the privilege (here the test's superuser).
    with pytest.raises(Exception, match="append-only"):
        admin_exec(
            svc, "UPDATE healthcare.emergency_access_reviews SET outcome = 'INAPPROPRIATE' WHERE grant_id = :g", g=grant
        )
    with pytest.raises(Exception, match="append-only"):
        admin_exec(svc, "DELETE FROM healthcare.emergency_access_reviews WHERE grant_id = :g", g=grant)
    # A review is written under the reviewer's own name only, by a super admin only.
    insert = (
        "INSERT INTO healthcare.emergency_access_reviews (id, tenant_id, grant_id, patient_user_id,"
        " reviewer_user_id, outcome) VALUES (%s, %s, %s, %s, %s, 'APPROPRIATE')"
    )
    for user, role, reviewer in ((ADMIN, "SUPER_ADMIN", responder), (responder, "EMERGENCY_RESPONDER", responder)):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app.scoped(TENANT, user, role) as c:
            c.execute(insert, (str(uuid.uuid4()), TENANT, grant, patient, reviewer))
    # Nobody but the tenant's super admins sees them: not the responder, not the patient, not a clinician.
    for user, role in ((responder, "EMERGENCY_RESPONDER"), (patient, "END_USER"), (ADVISOR, "CLINICAL_ADVISOR")):
        with app.scoped(TENANT, user, role) as c:
            assert c.execute("SELECT count(*) AS n FROM healthcare.emergency_access_reviews").fetchone() == {"n": 0}
    with app.scoped(TENANT, ADMIN, "SUPER_ADMIN") as c:
        found = c.execute("SELECT count(*) AS n FROM healthcare.emergency_access_reviews WHERE grant_id = %s", (grant,))
        assert found.fetchone() == {"n": 1}


def test_key_rotation_reencrypts_review_notes(
    app_db: Database,
    admin_engine: Engine,
    provider: LocalKeyFileProvider,
    make_tenant: Callable[[], str],
    make_patient: Callable[..., str],
) -> None:
    tenant = make_tenant()
    patient, responder, admin = (
        make_patient(tenant),
        make_patient(tenant, role="EMERGENCY_RESPONDER"),
        make_patient(tenant, role="SUPER_ADMIN"),
    )
    keys = KeyStore(provider)
    with app_db.scoped(Principal(tenant, responder, "EMERGENCY_RESPONDER", mfa=True)) as conn:
        grant = break_the_glass(
            conn,
            keys,
            tenant_id=tenant,
            requesting_user_id=responder,
            patient_id=patient,
            reason_code="BTG",
            reason_text=REASON,
            grant_minutes=5,
        ).grant_id
    as_admin = Principal(tenant, admin, "SUPER_ADMIN", mfa=True)
    with app_db.scoped(as_admin) as conn:
        review_grant(conn, keys, tenant_id=tenant, grant_id=grant, reviewer=admin, outcome="APPROPRIATE", notes="ok")
    with admin_engine.begin() as conn:
        assert create_data_key(conn, provider, tenant) == 2
    assert reencrypt_tenant(admin_engine, provider, tenant) >= 1  # the trigger lets re-encryption through
    with admin_engine.connect() as conn:
        versions = conn.execute(
            text(
                "SELECT split_part(encrypted_notes, '.', 2) FROM healthcare.emergency_access_reviews"
                " WHERE grant_id = :g"
            ),
            {"g": grant},
        ).scalars()
        assert list(versions) == ["2"]
    with app_db.scoped(as_admin) as conn:
        [event] = list_grants(conn, KeyStore(provider), unreviewed_only=False, limit=10, after=None)
        assert [r.notes for r in event.reviews] == ["ok"]


# -- ending a grant early --------------------------------------------------------------------------------


def _sees_medications(app: AppSession, patient: str, responder: str) -> int:
    """What RLS shows the responder of the patient, as praneya_app."""
    with app.scoped(TENANT, responder, "EMERGENCY_RESPONDER") as c:
        row = c.execute("SELECT count(*) AS n FROM healthcare.medications WHERE user_id = %s", (patient,)).fetchone()
        assert row is not None
        return int(row["n"])


def test_the_responder_ends_their_grant_and_access_ends_at_once(
    svc: Service, stub: Any, patient: str, make_patient: Callable[..., str], app: AppSession
) -> None:
    responder = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    other = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    grant = _break_glass(svc, stub, patient, responder).grant_id
    evaluate = pb.EvaluateSafetyRequest(patient_id=patient)
    assert stub.EvaluateSafety(evaluate, metadata=svc.md(responder), timeout=15).evaluation_id
    assert _sees_medications(app, patient, responder) == 1
    end = pb.EndEmergencyAccessRequest(grant_id=grant, reason="patient handed over to the ward team")

    # Another responder cannot end it (the same answer as for a grant that does not exist), a patient
    # may not ask, and the reason needs visible text like the grant's own.
    not_theirs = fail(stub.EndEmergencyAccess, end, grpc.StatusCode.NOT_FOUND, metadata=svc.md(other))
    missing = fail(
        stub.EndEmergencyAccess,
        pb.EndEmergencyAccessRequest(grant_id=str(uuid.uuid4()), reason="handed over"),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(responder),
    )
    assert not_theirs == missing
    fail(stub.EndEmergencyAccess, end, grpc.StatusCode.PERMISSION_DENIED, metadata=svc.md(patient))
    fail(stub.EndEmergencyAccess, end, grpc.StatusCode.PERMISSION_DENIED, metadata=svc.md(responder, mfa=False))
    assert fail(
        stub.EndEmergencyAccess,
        pb.EndEmergencyAccessRequest(grant_id=grant, reason="\u200b" * 20),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(responder),
    ).startswith("reason:")
    assert _sees_medications(app, patient, responder) == 1  # none of that ended anything

    ended = stub.EndEmergencyAccess(end, metadata=svc.md(responder), timeout=15)
    assert ended.grant_id == grant and ended.ended_at.ToSeconds() > 0  # set (a timestamp)
    # At once: row-level security as praneya_app, and the service.
    assert _sees_medications(app, patient, responder) == 0
    fail(stub.EvaluateSafety, evaluate, grpc.StatusCode.NOT_FOUND, metadata=svc.md(responder))
    fail(
        stub.GetHealthProfile,
        pb.GetHealthProfileRequest(patient_id=patient),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(responder),
    )
    # Audited, naming the patient and the grant, without the reason's text.
    audit = audit_row(svc, ended.audit_id)
    assert (audit["action"], audit["user_id"], audit["patient_id"], audit["resource_id"]) == (
        "END_EMERGENCY_ACCESS",
        responder,
        patient,
        grant,
    )
    assert "BREAK_GLASS_ENDED" in audit["compliance_flags"] and "ENDED_BY_ADMIN" not in audit["compliance_flags"]
    assert "ward team" not in str(audit)
    # Once ended, it stays ended; the review queue shows who ended it, when and why.
    assert "already ended" in fail(
        stub.EndEmergencyAccess, end, grpc.StatusCode.FAILED_PRECONDITION, metadata=svc.md(responder)
    )
    event = _event(svc, stub, grant)
    assert (event.ended_by, event.end_reason) == (responder, "patient handed over to the ward team")
    assert event.ended_at == ended.ended_at
    # Breaking the glass again is a new grant, with its own reason and review.
    again = _break_glass(svc, stub, patient, responder, "re-admitted, collapsed again")
    assert again.grant_id != grant and _sees_medications(app, patient, responder) == 1


def test_a_super_admin_ends_a_responders_grant(
    svc: Service, stub: Any, patient: str, make_patient: Callable[..., str], app: AppSession
) -> None:
    responder = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    grant = _break_glass(svc, stub, patient, responder).grant_id
    assert _sees_medications(app, patient, responder) == 1
    ended = stub.EndEmergencyAccess(
        pb.EndEmergencyAccessRequest(grant_id=grant, reason="no clinical reason on record"),
        metadata=svc.md(ADMIN),
        timeout=15,
    )
    assert _sees_medications(app, patient, responder) == 0
    fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=patient),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(responder),
    )
    audit = audit_row(svc, ended.audit_id)
    assert audit["user_id"] == ADMIN and "ENDED_BY_ADMIN" in audit["compliance_flags"]
    assert _event(svc, stub, grant).ended_by == ADMIN
    # Another tenant's super admin cannot end this tenant's grants.
    other_tenant_admin = make_patient("demo-riverside", role="SUPER_ADMIN")
    fresh = _break_glass(svc, stub, patient, responder).grant_id
    fail(
        stub.EndEmergencyAccess,
        pb.EndEmergencyAccessRequest(grant_id=fresh, reason="not our patient at all"),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(other_tenant_admin),
    )
    assert _sees_medications(app, patient, responder) == 1

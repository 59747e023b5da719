"""Issue 13, item 4, end to end: who the caller is is settled before anything about a patient, and
a token may not live longer than the service allows.

A real server over TLS and PostgreSQL as praneya_app (tests/fix_grpc.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from tests.fix_grpc import Service, answer, audit_rows_of
from tests.test_grpc_service import ADVISOR, PARENT, TENANT, admin_exec, fail

pytestmark = pytest.mark.db

SERVICE = pb.DESCRIPTOR.services_by_name["ClinicalSafety"]
YEAR = 365 * 24 * 3600


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()



# -- item 4: the existence oracle ---------------------------------------------------------------------


def test_a_deactivated_caller_gets_the_same_answer_for_an_existing_and_a_missing_patient(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    clinician = make_patient(TENANT, role="CLINICAL_ADVISOR")
    responder = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    mds = {who: svc.md(who) for who in (clinician, responder)}  # signed while they were active
    admin_exec(svc, "UPDATE public.users SET is_active = false WHERE id IN (:a, :b)", a=clinician, b=responder)
    missing = f"no-such-patient-{uuid.uuid4().hex[:8]}"

    def both(call: Callable[..., Any], make: Callable[[str], Any], who: str) -> None:
        existing = answer(call, make(PARENT), mds[who])
        absent = answer(call, make(missing), mds[who])
        assert existing == absent, (existing, absent)
        assert existing[0] == grpc.StatusCode.UNAUTHENTICATED, existing

    both(stub.EvaluateSafety, lambda p: pb.EvaluateSafetyRequest(patient_id=p), clinician)
    both(stub.GetHealthProfile, lambda p: pb.GetHealthProfileRequest(patient_id=p), clinician)
    both(
        stub.PutCondition,
        lambda p: pb.PutConditionRequest(patient_id=p, condition=pb.Condition(name="gout")),
        clinician,
    )
    both(
        stub.EmergencyAccess,
        lambda p: pb.EmergencyAccessRequest(patient_id=p, reason_code=pb.BTG, reason_text="found unconscious"),
        responder,
    )
    # Nothing was written under identities the database does not vouch for.
    assert audit_rows_of(svc, clinician) == audit_rows_of(svc, responder) == 0


def test_token_lifetime_is_capped(svc: Service, stub: Any) -> None:
    cap = svc.settings.jwt_max_lifetime_seconds
    assert cap == 3600  # the documented default; `praneya dev token` mints exactly this by default
    req = pb.EvaluateSafetyRequest(patient_id=PARENT)
    details = fail(stub.EvaluateSafety, req, grpc.StatusCode.UNAUTHENTICATED, metadata=svc.md(ADVISOR, ttl=100 * YEAR))
    assert "lifetime" in details and not any(ch.isdigit() for ch in details), details
    fail(stub.EvaluateSafety, req, grpc.StatusCode.UNAUTHENTICATED, metadata=svc.md(ADVISOR, ttl=cap + 1))
    assert stub.EvaluateSafety(req, metadata=svc.md(ADVISOR, ttl=cap), timeout=15).evaluation_id

"""Issue 13, item 5, end to end: every answer is one of the documented status codes (README, Status
codes), whatever bytes arrive and whoever claims to send them. Random and mutated wire bytes are
fuzzed in tests/test_fuzz_grpc.py; these pin the cases the issue names.

A real server over TLS and PostgreSQL as praneya_app (tests/fix_grpc.py).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from tests.fix_grpc import Service, answer, audit_rows_of
from tests.test_grpc_service import ADMIN, ADVISOR, OTHER_ADVISOR, PARENT, TENANT, fail

pytestmark = pytest.mark.db

SERVICE = pb.DESCRIPTOR.services_by_name["ClinicalSafety"]
YEAR = 365 * 24 * 3600


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()



# -- item 5: only documented codes --------------------------------------------------------------------

UNKNOWN_CALLERS = [
    ("nobody-at-all", TENANT),  # no such user
    (f"ghost-{uuid.uuid4().hex[:6]}", "no-such-tenant"),  # no such tenant
    (OTHER_ADVISOR, TENANT),  # a real user, claiming another tenant
]


@pytest.mark.parametrize(("user", "tenant"), UNKNOWN_CALLERS, ids=["unknown-user", "unknown-tenant", "other-tenant"])
def test_a_caller_the_database_does_not_know_is_unauthenticated_whatever_they_send(
    svc: Service, stub: Any, user: str, tenant: str
) -> None:
    before = audit_rows_of(svc, user)
    answers = set()
    for role, mfa, call, request in (
        ("CLINICAL_ADVISOR", True, stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id="a\x00b")),
        ("CLINICAL_ADVISOR", True, stub.EvaluateSafety, pb.EvaluateSafetyRequest()),
        ("CLINICAL_ADVISOR", True, stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id=PARENT)),
        ("CLINICAL_ADVISOR", False, stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id=PARENT)),
        ("CLINICAL_ADVISOR", True, stub.GetHealthProfile, pb.GetHealthProfileRequest(patient_id="bad id!")),
        ("EMERGENCY_RESPONDER", True, stub.EmergencyAccess, pb.EmergencyAccessRequest(patient_id=PARENT)),
        ("END_USER", True, stub.EmergencyAccess, pb.EmergencyAccessRequest(patient_id=PARENT)),
        ("SUPER_ADMIN", True, stub.ListEmergencyAccessEvents, pb.ListEmergencyAccessEventsRequest(page_size=9999)),
        ("CLINICAL_ADVISOR", True, stub.RecordAlertFeedback, pb.RecordAlertFeedbackRequest()),
        ("CLINICAL_ADVISOR", True, stub.GetOverrideRates, pb.GetOverrideRatesRequest(since_days=-1)),
        ("END_USER", True, stub.GrantConsent, pb.GrantConsentRequest(grantee_user_id="x", expires_in_days=-5)),
    ):
        md = svc.md(user, tenant=tenant, role=role, mfa=mfa)
        code, details = answer(call, request, md)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (call, request, code, details)
        answers.add(details)
    assert len(answers) == 1, answers  # nothing about the input shows through
    assert audit_rows_of(svc, user) == before  # like a bad token: logged, not audited under a claimed identity


def _raw(svc: Service, method: str) -> Any:
    return svc.channel.unary_unary(
        f"/{SERVICE.full_name}/{method}", request_serializer=None, response_deserializer=None
    )


MALFORMED = [
    b"\xff\xff\xff\xff\xff",  # a field number and wire type that do not exist, then garbage
    b"\x0a\x05ab",  # a length-delimited field cut short
    b"\x08" + b"\xff" * 11,  # a varint longer than 10 bytes
]


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
def test_malformed_bytes_are_invalid_argument(svc: Service, method: str) -> None:
    call = _raw(svc, method)
    user = ADMIN if "Emergency" in method and "EmergencyAccess" != method else ADVISOR
    first = SERVICE.methods_by_name[method].input_type.fields_by_number.get(1)
    not_utf8 = [b"\x0a\x02\xc3\x28"] if first is not None and first.type == first.TYPE_STRING else []
    for body in MALFORMED + not_utf8:
        code, details = answer(call, body, svc.md(user))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (body, code, details)
        assert "Exception" not in details and method in details, details
        # Without a valid token, the bytes are never even parsed.
        assert answer(call, body, ())[0] == grpc.StatusCode.UNAUTHENTICATED
    health = health_pb2_grpc.HealthStub(svc.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def _page_token(doc: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "\x00",
        "abc\x00def",
        _page_token(["2026-01-01T00:00:00+00:00", "a\x00b"]),
        _page_token(["2026-01-01T00:00:00\x00", "grant-1"]),
        _page_token(["2026-01-01T00:00:00", "grant-1"]),  # no time zone: not one of ours
        _page_token(["not a time", "grant-1"]),
        _page_token({"a": 1, "b": 2}),
        _page_token([1, 2]),
        _page_token(["2026-01-01T00:00:00+00:00", "x" * 5000]),
        "%%%",
    ],
    ids=range(10),
)
def test_a_forged_page_token_is_invalid_argument_naming_the_field(svc: Service, stub: Any, token: str) -> None:
    details = fail(
        stub.ListEmergencyAccessEvents,
        pb.ListEmergencyAccessEventsRequest(page_token=token),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(ADMIN),
    )
    assert details.startswith("page_token:"), details


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (253402300800, 0),  # 10000-01-01
        (2**62, 0),
        (-62135596801, 0),  # before 0001-01-01
        (0, 1_000_000_000),
        (0, -1),
    ],
)
def test_a_timestamp_outside_what_a_timestamp_can_hold_is_invalid_argument(
    svc: Service, stub: Any, make_patient: Callable[..., str], seconds: int, nanos: int
) -> None:
    patient = make_patient(TENANT)
    reading = pb.BiometricReading(
        reading_type="egfr", value=50, unit="mL/min/{1.73_m2}", taken_at=Timestamp(seconds=seconds, nanos=nanos)
    )
    details = fail(
        stub.PutBiometricReading,
        pb.PutBiometricReadingRequest(patient_id=patient, reading=reading),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(ADVISOR),
    )
    assert details.startswith("reading.taken_at:"), details

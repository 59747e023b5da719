"""Issue 13, item 3, end to end: a lab reading edited without the keys fails closed.

The tamper is what the issue found: praneya_app with a valid row-level security context (the
advisor's own), which may write the row but has no key to reseal the record. A real server over TLS
and PostgreSQL (tests/fix_grpc.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text

from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from store.session import Database, Principal
from tests.fix_grpc import Service
from tests.test_grpc_service import ADVISOR, TENANT, evaluate, fail, put_meds

pytestmark = pytest.mark.db

RULE = "labs-potassium-high-raas"
EDITS = {
    # the older, normal reading becomes the latest
    "back-dated": "UPDATE healthcare.biometric_readings SET taken_at = taken_at - interval '3 days' WHERE id = :id",
    # the high reading no longer counts as potassium
    "relabelled": "UPDATE healthcare.biometric_readings SET reading_type = 'sodium' WHERE id = :id",
}


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()


def put_reading(stub: Any, svc: Service, patient: str, value: float, taken_at: datetime) -> str:
    ts = Timestamp()
    ts.FromDatetime(taken_at)
    reading = pb.BiometricReading(reading_type="potassium", value=value, unit="mmol/L", taken_at=ts)
    return str(
        stub.PutBiometricReading(
            pb.PutBiometricReadingRequest(patient_id=patient, reading=reading), metadata=svc.md(ADVISOR), timeout=15
        ).id
    )


def hyperkalaemic_patient(stub: Any, svc: Service, make_patient: Callable[..., str]) -> tuple[str, str]:
    patient = make_patient(TENANT)
    put_meds(stub, svc, patient, ADVISOR, "lisinopril")
    now = datetime.now(UTC)
    put_reading(stub, svc, patient, 4.2, now - timedelta(days=2))
    high = put_reading(stub, svc, patient, 6.1, now - timedelta(hours=1))
    return patient, high


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_reading_edited_with_a_valid_context_is_data_loss(
    edit: str, svc: Service, stub: Any, app_db: Database, make_patient: Callable[..., str]
) -> None:
    patient, high = hyperkalaemic_patient(stub, svc, make_patient)
    assert RULE in {a.rule_id for a in evaluate(stub, svc, patient, ADVISOR).alerts}
    untouched, _ = hyperkalaemic_patient(stub, svc, make_patient)
    with app_db.scoped(Principal(TENANT, ADVISOR, "CLINICAL_ADVISOR", mfa=True)) as conn:
        assert conn.execute(text(EDITS[edit]), {"id": high}).rowcount == 1
    details = fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=patient),
        grpc.StatusCode.DATA_LOSS,
        metadata=svc.md(ADVISOR),
    )
    assert "integrity" in details
    fail(
        stub.GetHealthProfile,
        pb.GetHealthProfileRequest(patient_id=patient),
        grpc.StatusCode.DATA_LOSS,
        metadata=svc.md(ADVISOR),
    )
    # A patient whose readings nobody touched still evaluates, alert and all.
    assert RULE in {a.rule_id for a in evaluate(stub, svc, untouched, ADVISOR).alerts}

"""Issue 13, item 1, end to end: the work one call can cause is bounded.

Active items per patient and category (PRANEYA_MAX_ACTIVE_ITEMS), alerts per answer
(PRANEYA_MAX_ALERTS) and the answer's size (the send limit, from PRANEYA_MAX_MESSAGE_BYTES), each
with the audit row saying what the caller actually got. Real servers over TLS and PostgreSQL
(tests/fix_grpc.py); the caps are made small on servers of their own so the tests stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest

from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc
from tests.fix_grpc import Service, running_server
from tests.test_grpc_service import ADVISOR, TENANT, audit_row, audit_rows_for, evaluate, fail, put_meds

pytestmark = pytest.mark.db

# Seven alerts, and every rule that applies has its data (checked against the uncapped server).
SEROTONERGIC = ("sertraline", "fluoxetine", "phenelzine", "tramadol")
CAP = 4


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()


@contextmanager
def server_with(svc: Service, **env: str) -> Iterator[Any]:
    """A second server on the same database, keys and tokens, with some settings changed."""
    with running_server({**svc.env, **env}, svc.ca) as running, running.channel() as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield pb_grpc.ClinicalSafetyStub(channel)


def test_the_101st_active_medication_is_refused(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    assert svc.settings.max_active_items == 100  # the default
    patient = make_patient(TENANT)
    ids = put_meds(stub, svc, patient, ADVISOR, *(f"vitamin {i}" for i in range(100)))
    details = fail(
        stub.PutMedication,
        pb.PutMedicationRequest(patient_id=patient, medication=pb.Medication(generic_name="aspirin")),
        grpc.StatusCode.FAILED_PRECONDITION,
        metadata=svc.md(ADVISOR),
    )
    assert "100" in details and "PRANEYA_MAX_ACTIVE_ITEMS" in details
    # An update of an active one takes no new place; a deactivated one frees its place.
    stub.PutMedication(
        pb.PutMedicationRequest(patient_id=patient, medication=pb.Medication(medication_id=ids[0], generic_name="c")),
        metadata=svc.md(ADVISOR),
        timeout=15,
    )
    stub.DeactivateMedication(
        pb.DeactivateMedicationRequest(patient_id=patient, medication_id=ids[1]), metadata=svc.md(ADVISOR), timeout=15
    )
    put_meds(stub, svc, patient, ADVISOR, "aspirin")
    assert evaluate(stub, svc, patient, ADVISOR).evaluation_id  # 100 active: within the bound


def test_past_the_alert_cap_the_answer_is_truncated_flagged_and_audited_as_such(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    put_meds(stub, svc, patient, ADVISOR, *SEROTONERGIC)
    full = evaluate(stub, svc, patient, ADVISOR)
    assert len(full.alerts) > CAP and full.complete and full.completeness == pb.COMPLETE
    assert audit_row(svc, full.evaluation_id)["outcome"] == "SUCCESS"
    with server_with(svc, PRANEYA_MAX_ALERTS=str(CAP)) as capped:
        got = evaluate(capped, svc, patient, ADVISOR)
    assert len(got.alerts) == CAP
    # The highest-ranked alerts, in the same order, then the summary of the rest.
    assert [a.alert_id for a in got.alerts[: CAP - 1]] == [a.alert_id for a in full.alerts[: CAP - 1]]
    summary = got.alerts[-1]
    omitted = len(full.alerts) - (CAP - 1)
    assert summary.rule_id == "limit:alerts" and summary.kind == pb.OTHER
    assert summary.summary.startswith(f"{omitted} more alerts not shown")
    assert summary.severity == max(a.severity for a in full.alerts[CAP - 1 :])
    assert not got.complete and got.completeness == pb.INCOMPLETE
    row = audit_row(svc, got.evaluation_id)
    assert row["outcome"] == "TRUNCATED"
    assert {"TRUNCATED", "INCOMPLETE"} <= set(row["compliance_flags"])
    assert len(row["details"]["alert_ids"]) == CAP - 1 and row["details"]["alerts_omitted"] == omitted


def test_an_answer_over_the_send_limit_is_resource_exhausted_and_not_audited_as_success(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    put_meds(stub, svc, patient, ADVISOR, *SEROTONERGIC)
    before = len(audit_rows_for(svc, patient, "EVALUATE_SAFETY"))
    # 1024-byte messages: a send limit of 4096 bytes, less than seven signed alerts.
    with server_with(svc, PRANEYA_MAX_MESSAGE_BYTES="1024") as small:
        details = fail(
            small.EvaluateSafety,
            pb.EvaluateSafetyRequest(patient_id=patient),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            metadata=svc.md(ADVISOR),
        )
    assert "4096" in details
    rows = audit_rows_for(svc, patient, "EVALUATE_SAFETY")[before:]
    assert [r["outcome"] for r in rows] == ["RESOURCE_EXHAUSTED"]
    assert "FAILED_CALL" in rows[0]["compliance_flags"]

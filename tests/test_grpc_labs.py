"""Issue 11, section 4, end to end: laboratory values through PutBiometricReading and EvaluateSafety.

A real server over TLS and PostgreSQL (tests/fix_grpc.py): a reading by LOINC code or by type, in any
UCUM unit of its dimension, is stored in the lab catalog's canonical unit; a bad one is refused
naming its field, without its value, and nothing is written; a reading older than a rule allows is
insufficient data, never "safe".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from tests.fix_grpc import Service
from tests.test_grpc_service import ADVISOR, TENANT, evaluate, fail, put_meds

pytestmark = pytest.mark.db

RULE = "labs-potassium-high-raas"
LOINC = "http://loinc.org"


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()


def put(stub: Any, svc: Service, patient: str, reading: Any) -> Any:
    return stub.PutBiometricReading(
        pb.PutBiometricReadingRequest(patient_id=patient, reading=reading), metadata=svc.md(ADVISOR), timeout=15
    )


def readings(stub: Any, svc: Service, patient: str) -> dict[str, Any]:
    profile = stub.GetHealthProfile(
        pb.GetHealthProfileRequest(patient_id=patient), metadata=svc.md(ADVISOR), timeout=15
    )
    return {b.reading_type: b for b in profile.latest_biometrics}


def ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def test_a_loinc_coded_reading_is_stored_canonical_and_drives_the_rule(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    put_meds(stub, svc, patient, ADVISOR, "lisinopril")
    put(stub, svc, patient, pb.BiometricReading(value=5.9, unit="mEq/L", coding=pb.Coding(system=LOINC, code="2823-3")))
    put(stub, svc, patient, pb.BiometricReading(reading_type="creatinine", value=176.8, unit="umol/L"))
    put(stub, svc, patient, pb.BiometricReading(reading_type="plt", value=210, unit="K/uL"))
    stored = readings(stub, svc, patient)
    assert (stored["potassium"].value, stored["potassium"].unit) == (5.9, "mmol/L")
    assert (round(stored["creatinine"].value, 2), stored["creatinine"].unit) == (2.0, "mg/dL")
    assert (stored["platelets"].value, stored["platelets"].unit) == (210.0, "10*3/uL")
    result = evaluate(stub, svc, patient, ADVISOR)
    assert RULE in {a.rule_id for a in result.alerts}


BAD = [
    # (the reading, the field named); the eGFR of -5 in furlongs is the issue's own example
    (dict(reading_type="egfr", value=-5, unit="furlongs"), "reading.unit"),
    (dict(reading_type="egfr", value=-5, unit="mL/min/{1.73_m2}"), "reading.value"),
    (dict(reading_type="potassium", value=45, unit="mmol/L"), "reading.value"),
    (dict(reading_type="potassium", value=5.1, unit="mg/dL"), "reading.unit"),
    (dict(reading_type="potassium", value=5.1), "reading.unit"),
    (dict(reading_type="ferritin", value=80, unit="ng/mL"), "reading.reading_type"),
    (dict(value=5.1, unit="mmol/L", coding=pb.Coding(system=LOINC, code="99999-9")), "reading.coding.code"),
    (dict(reading_type="sodium", value=5.1, unit="mmol/L", coding=pb.Coding(system=LOINC, code="2823-3")),
     "reading.coding.code"),
    (dict(value=5.1, unit="mmol/L", coding=pb.Coding(system="http://snomed.info/sct", code="2823-3")),
     "reading.coding.system"),
    (dict(value=5.1, unit="mmol/L"), "reading.reading_type"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "field"), BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_a_bad_reading_is_refused_naming_its_field_and_nothing_is_written(
    fields: dict[str, Any], field: str, svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    details = fail(
        stub.PutBiometricReading,
        pb.PutBiometricReadingRequest(patient_id=patient, reading=pb.BiometricReading(**fields)),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(ADVISOR),
    )
    assert details.startswith(f"{field}:"), details
    value = fields["value"]
    assert f"{value:g}" not in details.replace("-", " ").split()  # the value is never echoed
    assert readings(stub, svc, patient) == {}


def test_a_reading_older_than_the_rule_allows_is_insufficient_data(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    put_meds(stub, svc, patient, ADVISOR, "lisinopril")
    old = datetime.now(UTC) - timedelta(days=45)  # the rule takes a potassium at most 30 days old
    put(stub, svc, patient, pb.BiometricReading(reading_type="potassium", value=6.1, unit="mmol/L", taken_at=ts(old)))
    result = evaluate(stub, svc, patient, ADVISOR)
    assert RULE not in {a.rule_id for a in result.alerts}
    assert not result.complete
    issue = next(i for i in result.incomplete_rules if i.rule_id == RULE)
    assert issue.insufficient_data and "45 days old" in issue.reason
    # A fresh reading of the same value fires the rule.
    put(stub, svc, patient, pb.BiometricReading(reading_type="potassium", value=6.1, unit="mmol/L"))
    assert RULE in {a.rule_id for a in evaluate(stub, svc, patient, ADVISOR).alerts}

"""Demographics in the stored record (issue 11 section 6): migration 0014, encryption at rest and the
integrity seal, PutDemographics through the real gRPC server (writes, refusals, nothing half-written),
GetHealthProfile, and EvaluateSafety using them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from store.phi import ENCRYPTED_COLUMNS
from tests.fix_db import migrate
from tests.fix_grpc import Service
from tests.test_db_migrations import _connect, fresh_db  # noqa: F401 - the fixture
from tests.test_grpc_service import ADVISOR, TENANT, fail

pytestmark = pytest.mark.db

COLUMNS = (
    "encrypted_birth_date",
    "encrypted_pregnancy_recorded_at",
    "encrypted_gestational_age",
    "encrypted_estimated_delivery_date",
    "encrypted_lactation_status",
    "encrypted_lactation_recorded_at",
)


def test_0014_adds_the_columns_and_downgrade_refuses_while_they_hold_data(fresh_db: Callable[[], str]) -> None:  # noqa: F811
    url = fresh_db()
    migrate(url)
    assert set(COLUMNS) <= set(ENCRYPTED_COLUMNS["healthcare.health_profiles"])
    with _connect(url) as c:
        found = {r["column_name"] for r in c.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'healthcare'"
            " AND table_name = 'health_profiles'").fetchall()}
        assert set(COLUMNS) <= found
        c.execute("INSERT INTO public.tenants (id, name, encryption_key_id) VALUES ('t', 'T', 'k')")
        c.execute("INSERT INTO public.users (id, tenant_id) VALUES ('u', 't')")
        c.execute("INSERT INTO healthcare.health_profiles (id, tenant_id, user_id, encrypted_birth_date)"
                  " VALUES ('hp', 't', 'u', 'pv1.1.x')")
    with pytest.raises(Exception, match="demographics recorded"):
        migrate(url, "0013_client_feedback", down=True)
    with _connect(url) as c:
        c.execute("UPDATE healthcare.health_profiles SET encrypted_birth_date = NULL")
    migrate(url, "0013_client_feedback", down=True)
    with _connect(url) as c:
        found = {r["column_name"] for r in c.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'healthcare'"
            " AND table_name = 'health_profiles'").fetchall()}
        assert not set(COLUMNS) & found
    migrate(url)


def _put(stub: Any, svc: Service, **req: Any) -> Any:
    return stub.PutDemographics(pb.PutDemographicsRequest(**req), metadata=svc.md(ADVISOR), timeout=15)


def _pregnancy(weeks: int | None = None, days: int | None = None, **kw: Any) -> Any:
    p = pb.Pregnancy(status=pb.PREGNANCY_STATUS_PREGNANT, **kw)
    if weeks is not None:
        p.gestational_weeks = weeks
    if days is not None:
        p.gestational_days = days
    return p


def _profile(stub: Any, svc: Service, patient: str) -> Any:
    return stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=patient), metadata=svc.md(ADVISOR), timeout=15)


def test_put_demographics_is_encrypted_sealed_returned_and_evaluated(
    grpc_service: Service, make_patient: Callable[..., str]
) -> None:
    svc, stub = grpc_service, grpc_service.stub()
    patient = make_patient(TENANT, sex="female", dob=date(1990, 1, 1))
    recorded = datetime.now(UTC) - timedelta(days=14)
    preg = _pregnancy(20, 3)
    preg.recorded_at.FromDatetime(recorded)
    lact = pb.Lactation(status=pb.LACTATION_STATUS_NOT_LACTATING)
    written = _put(stub, svc, patient_id=patient, birth_date="1991-07-04", pregnancy=preg, lactation=lact)
    assert written.profile_version >= 2

    view = _profile(stub, svc, patient)
    assert view.birth_date == "1991-07-04"  # the record's birth date wins over the account's
    assert view.pregnancy.status == pb.PREGNANCY_STATUS_PREGNANT
    assert (view.pregnancy.gestational_weeks, view.pregnancy.gestational_days) == (20, 3)  # on recorded_at
    assert view.lactation.status == pb.LACTATION_STATUS_NOT_LACTATING

    # At rest: ciphertext only, none of the plaintexts.
    with svc.admin.connect() as conn:
        row = conn.execute(
            text("SELECT " + ", ".join(COLUMNS) + " FROM healthcare.health_profiles WHERE user_id = :u"),
            {"u": patient},
        ).mappings().one()
    assert row["encrypted_estimated_delivery_date"] is None  # not given
    for column in COLUMNS:
        value = row[column]
        if column == "encrypted_estimated_delivery_date":
            continue
        assert value is not None, column
        for plain in ("1991-07-04", "20+3", "lactating", recorded.date().isoformat()):
            assert plain not in value, column

    # Evaluation uses them: 20+3 weeks two weeks ago is 22+3 today.
    result = stub.EvaluateSafety(
        pb.EvaluateSafetyRequest(patient_id=patient, proposed_medications=[pb.ProposedMedication(name="ibuprofen")]),
        metadata=svc.md(ADVISOR), timeout=15,
    )
    assert "pregnancy-nsaid-20-weeks" in {a.rule_id for a in result.alerts}

    # Tampering with a sealed value fails closed.
    with svc.admin.begin() as conn:
        conn.execute(
            text("UPDATE healthcare.health_profiles SET encrypted_gestational_age = NULL WHERE user_id = :u"),
            {"u": patient},
        )
    with pytest.raises(grpc.RpcError) as info:
        _profile(stub, svc, patient)
    assert info.value.code() not in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN)


def test_refusals_name_the_field_and_write_nothing(grpc_service: Service, make_patient: Callable[..., str]) -> None:
    svc, stub = grpc_service, grpc_service.stub()
    patient = make_patient(TENANT, sex="female", dob=date(1980, 5, 5))
    before = _profile(stub, svc, patient)
    md = svc.md(ADVISOR)
    future = (date.today() + timedelta(days=2)).isoformat()
    cases = [
        (dict(birth_date=future), "birth_date"),
        (dict(birth_date="1850-01-01"), "birth_date"),
        (dict(birth_date="05/05/1980"), "birth_date"),
        (dict(birth_date="1981-01-01", pregnancy=_pregnancy(46)), "pregnancy.gestational_weeks"),
        (dict(birth_date="1981-01-01", pregnancy=_pregnancy(20, 7)), "pregnancy.gestational_days"),
        (dict(pregnancy=pb.Pregnancy(status=pb.PREGNANCY_STATUS_NOT_PREGNANT, gestational_weeks=3)),
         "pregnancy.gestational_weeks"),
        (dict(pregnancy=pb.Pregnancy()), "pregnancy.status"),
        (dict(pregnancy=_pregnancy(estimated_delivery_date="2000-01-01")), "pregnancy.estimated_delivery_date"),
        (dict(sex="robot"), "sex"),
        (dict(sex="male", pregnancy=_pregnancy(10)), "pregnancy.status"),
        (dict(lactation=pb.Lactation()), "lactation.status"),
        ({}, "birth_date"),
    ]
    for req, field in cases:
        details = fail(stub.PutDemographics, pb.PutDemographicsRequest(patient_id=patient, **req),
                       grpc.StatusCode.INVALID_ARGUMENT, metadata=md)
        assert details.startswith(field), (req, details)
    after = _profile(stub, svc, patient)
    assert after.version == before.version and after.birth_date == before.birth_date == "1980-05-05"
    assert not after.HasField("pregnancy")

    # A male record: pregnancy refused until the sex is recorded otherwise (then accepted).
    man = make_patient(TENANT, sex="male")
    fail(stub.PutDemographics, pb.PutDemographicsRequest(patient_id=man, pregnancy=_pregnancy(12)),
         grpc.StatusCode.INVALID_ARGUMENT, metadata=md)
    fail(stub.PutDemographics, pb.PutDemographicsRequest(
        patient_id=man, lactation=pb.Lactation(status=pb.LACTATION_STATUS_LACTATING)),
        grpc.StatusCode.INVALID_ARGUMENT, metadata=md)
    _put(stub, svc, patient_id=man, sex="other", pregnancy=_pregnancy(12))
    assert _profile(stub, svc, man).pregnancy.gestational_weeks == 12

    # Roles as for the other record writes: an end user may not write another patient's record.
    other = make_patient(TENANT)
    fail(stub.PutDemographics, pb.PutDemographicsRequest(patient_id=patient, birth_date="1980-05-05"),
         grpc.StatusCode.NOT_FOUND, metadata=svc.md(other))


def test_stored_weight_recency_for_a_child(grpc_service: Service, make_patient: Callable[..., str]) -> None:
    svc, stub = grpc_service, grpc_service.stub()
    two_years_ago = date.today() - timedelta(days=2 * 365 + 30)
    child = make_patient(TENANT, sex="female", dob=two_years_ago)
    md = svc.md(ADVISOR)
    reading = pb.BiometricReading(reading_type="weight_kg", value=12, unit="kg")
    reading.taken_at.FromDatetime(datetime.now(UTC) - timedelta(days=120))
    stub.PutBiometricReading(pb.PutBiometricReadingRequest(patient_id=child, reading=reading), metadata=md, timeout=15)
    order = pb.ProposedMedication(name="acetaminophen", dose="500 mg", route="oral", frequency="every 6 hours")

    def evaluate() -> Any:
        return stub.EvaluateSafety(pb.EvaluateSafetyRequest(patient_id=child, proposed_medications=[order]),
                                   metadata=md, timeout=15)

    stale = evaluate()
    assert stale.completeness == pb.INCOMPLETE
    assert any("days old" in e.reason for e in stale.incomplete_rules)
    fresh = pb.BiometricReading(reading_type="weight_kg", value=12, unit="kg")
    fresh.taken_at.FromDatetime(datetime.now(UTC) - timedelta(days=3))
    stub.PutBiometricReading(pb.PutBiometricReadingRequest(patient_id=child, reading=fresh), metadata=md, timeout=15)
    assert any(a.rule_id == "kb:dose:acetaminophen-pediatric" for a in evaluate().alerts)

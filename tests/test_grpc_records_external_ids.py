"""Issue 12, §3: record writes accept the EHR's own ids, and a patient's active medication list is
replaced in one call — end to end through the real server (tests/fix_grpc.py), TLS and PostgreSQL
as praneya_app.

An EHR id is stored encrypted with a keyed index (migration 0012): the tests check what the EHR sees
(upserts, replacement, isolation between patients and tenants), and what it must not (its ids or
drug names in errors, logs, audit rows or plain columns; an index moved between rows, or an id
removed behind the service's back, fails closed).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from tests.fix_grpc import Service
from tests.test_grpc_bounds import server_with
from tests.test_grpc_service import (
    ADVISOR,
    OTHER_ADVISOR,
    OTHER_TENANT,
    TENANT,
    admin_exec,
    audit_rows_for,
    evaluate,
    fail,
    phi_in,
)

pytestmark = pytest.mark.db

# What these tests write: none of it may reach an error, a log line or an audit row in plain text.
DRUGS = ("metformin", "atorvastatin", "amlodipine", "omeprazole", "levothyroxine")


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()


def ehr_id(kind: str = "MedicationRequest") -> str:
    """A fresh EHR identifier, distinctive enough to search for in logs and audit rows."""
    return f"{kind}/ehr-{uuid.uuid4().hex[:12]}"


def put(stub: Any, svc: Service, patient: str, name: str, user: str = ADVISOR, **kw: Any) -> Any:
    return stub.PutMedication(
        pb.PutMedicationRequest(patient_id=patient, medication=pb.Medication(generic_name=name, **kw)),
        metadata=svc.md(user),
        timeout=15,
    )


def profile(stub: Any, svc: Service, patient: str, user: str = ADVISOR) -> Any:
    return stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=patient), metadata=svc.md(user), timeout=15)


def replace(stub: Any, svc: Service, patient: str, *meds: Any, user: str = ADVISOR) -> Any:
    return stub.ReplaceActiveMedications(
        pb.ReplaceActiveMedicationsRequest(patient_id=patient, medications=list(meds)),
        metadata=svc.md(user),
        timeout=15,
    )


def active(stub: Any, svc: Service, patient: str, user: str = ADVISOR) -> dict[str, tuple[str, str, str]]:
    """medication id -> (external id, name, dose) of the patient's active medications."""
    meds = profile(stub, svc, patient, user).medications
    return {m.medication_id: (m.external_id, m.generic_name, m.dose) for m in meds}


def leaked(value: str, *secrets: str) -> list[str]:
    lowered = value.lower()
    return [s for s in (*DRUGS, *secrets) if s.lower() in lowered] + phi_in(value)


def admin_query(svc: Service, sql: str, **params: Any) -> list[Any]:
    with svc.admin.connect() as conn:
        return list(conn.execute(text(sql), params).mappings().all())


def test_put_medication_upserts_by_external_id(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    patient = make_patient(TENANT)
    x, y = ehr_id(), ehr_id()
    first = put(stub, svc, patient, "metformin", dose="500 mg", external_id=x)
    # The same EHR id again: the same record, updated; no second one.
    again = put(stub, svc, patient, "metformin", dose="1000 mg", external_id=x)
    assert again.id == first.id and again.profile_version > first.profile_version
    other = put(stub, svc, patient, "amlodipine", external_id=y)
    assert other.id != first.id
    assert active(stub, svc, patient) == {first.id: (x, "metformin", "1000 mg"), other.id: (y, "amlodipine", "")}
    # A deactivated record comes back when the EHR sends its id again: reactivated, not duplicated.
    stub.DeactivateMedication(
        pb.DeactivateMedicationRequest(patient_id=patient, medication_id=first.id), metadata=svc.md(ADVISOR), timeout=15
    )
    assert set(active(stub, svc, patient)) == {other.id}
    back = put(stub, svc, patient, "metformin", dose="850 mg", external_id=x)
    assert back.id == first.id
    assert active(stub, svc, patient)[first.id] == (x, "metformin", "850 mg")
    # An update by our id that names no EHR id keeps the one stored.
    put(stub, svc, patient, "metformin", dose="500 mg", medication_id=first.id)
    assert active(stub, svc, patient)[first.id] == (x, "metformin", "500 mg")
    # Our id with a new EHR id re-links the record.
    z = ehr_id()
    assert put(stub, svc, patient, "amlodipine", medication_id=other.id, external_id=z).id == other.id
    assert active(stub, svc, patient)[other.id][0] == z
    assert put(stub, svc, patient, "amlodipine", external_id=y).id not in (first.id, other.id)  # y is free again
    assert evaluate(stub, svc, patient, ADVISOR).evaluation_id  # every write resealed the record


def test_allergies_and_conditions_upsert_by_external_id(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    md = svc.md(ADVISOR)
    ax, cx = ehr_id("AllergyIntolerance"), ehr_id("Condition")

    def allergy(severity: str) -> str:
        entry = pb.Allergy(allergen="latex", category="LATEX", severity=severity, external_id=ax)
        req = pb.PutAllergyRequest(patient_id=patient, allergy=entry)
        return str(stub.PutAllergy(req, metadata=md, timeout=15).id)

    def condition(critical: bool) -> str:
        req = pb.PutConditionRequest(
            patient_id=patient, condition=pb.Condition(name="asthma", is_critical=critical, external_id=cx)
        )
        return str(stub.PutCondition(req, metadata=md, timeout=15).id)

    assert allergy("MILD") == allergy("SEVERE")
    assert condition(False) == condition(True)
    got = profile(stub, svc, patient)
    assert [(a.external_id, a.severity) for a in got.allergies] == [(ax, "SEVERE")]
    assert [(c.external_id, c.is_critical) for c in got.conditions] == [(cx, True)]
    # The same identifier on a medication is another record: ids are per kind of record.
    assert put(stub, svc, patient, "metformin", external_id=ax).id not in {a.allergy_id for a in got.allergies}


def test_our_id_and_an_ehr_id_naming_different_records_is_refused(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    x = ehr_id()
    a = put(stub, svc, patient, "metformin", external_id=x).id
    b = put(stub, svc, patient, "amlodipine").id
    before = profile(stub, svc, patient)
    details = fail(
        stub.PutMedication,
        pb.PutMedicationRequest(
            patient_id=patient, medication=pb.Medication(generic_name="omeprazole", medication_id=b, external_id=x)
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        metadata=svc.md(ADVISOR),
    )
    assert details == "external_id already names another medication of this patient"
    assert leaked(details, x, a, b) == []
    assert profile(stub, svc, patient) == before


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("M" * 201, "is longer than 200 characters"),
        ("MedicationRequest/1\n", "contains control or format characters"),
        ("MedicationRequest/\u200b1", "contains control or format characters"),
        ("MedicationRequest/1\x00", "contains control or format characters"),
        (" MedicationRequest/1", "has leading or trailing white space"),
    ],
    ids=["201 characters", "newline", "zero-width space", "NUL", "leading space"],
)
def test_a_malformed_external_id_is_invalid_and_not_echoed(
    svc: Service, stub: Any, make_patient: Callable[..., str], value: str, problem: str
) -> None:
    patient = make_patient(TENANT)
    details = fail(
        stub.PutMedication,
        pb.PutMedicationRequest(
            patient_id=patient, medication=pb.Medication(generic_name="metformin", external_id=value)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(ADVISOR),
    )
    assert details == f"medication.external_id: {problem}"
    details = fail(
        stub.ReplaceActiveMedications,
        pb.ReplaceActiveMedicationsRequest(
            patient_id=patient, medications=[pb.Medication(generic_name="metformin", external_id=value)]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(ADVISOR),
    )
    assert details == f"medications[0].external_id: {problem}"
    assert profile(stub, svc, patient).medications == []
    # 200 characters of anything visible (a "system|value" identifier) are fine.
    longest = "urn:oid:2.16.840.1.113883.19|" + "v" * 171
    assert len(longest) == 200 and put(stub, svc, patient, "metformin", external_id=longest).id


def test_replace_adds_keeps_updates_and_deactivates(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    patient = make_patient(TENANT)
    x, y, z = ehr_id(), ehr_id(), ehr_id()
    a = put(stub, svc, patient, "metformin", dose="500 mg", external_id=x).id
    b = put(stub, svc, patient, "atorvastatin", dose="20 mg", external_id=y).id
    c = put(stub, svc, patient, "amlodipine", dose="5 mg").id  # entered by hand: no EHR id
    version = profile(stub, svc, patient).version
    done = replace(
        stub,
        svc,
        patient,
        pb.Medication(generic_name="metformin", dose="500 mg", external_id=x),  # as stored: kept
        pb.Medication(generic_name="atorvastatin", dose="40 mg", external_id=y),  # dose changed
        pb.Medication(generic_name="omeprazole", dose="20 mg", external_id=z),  # new
        pb.Medication(generic_name="amlodipine", dose="5 mg", medication_id=c),  # by our id, as stored
    )
    new = done.medication_ids[2]
    assert list(done.medication_ids) == [a, b, new, c] and new not in (a, b, c)
    assert (done.created, done.updated, done.unchanged, list(done.deactivated_medication_ids)) == (1, 1, 2, [])
    got = profile(stub, svc, patient)
    assert done.profile_version == got.version > version
    assert {m.medication_id: (m.external_id, m.generic_name, m.dose) for m in got.medications} == {
        a: (x, "metformin", "500 mg"),
        b: (y, "atorvastatin", "40 mg"),
        new: (z, "omeprazole", "20 mg"),
        c: ("", "amlodipine", "5 mg"),
    }
    # Unchanged rows were not rewritten: one trigger row each for the update and the insert only.
    rows = [
        r
        for r in audit_rows_for(svc, patient, "PHI_UPDATE") + audit_rows_for(svc, patient, "PHI_INSERT")
        if r["resource_type"] == "healthcare.medications" and r["resource_id"] in (a, c)
    ]
    assert len(rows) == 2  # their own inserts, nothing since
    # The next reconciliation drops two: deactivated (kept as history, not deleted).
    done = replace(
        stub,
        svc,
        patient,
        pb.Medication(generic_name="omeprazole", dose="20 mg", external_id=z),
        pb.Medication(generic_name="metformin", dose="500 mg", external_id=x),
    )
    assert list(done.medication_ids) == [new, a]
    assert sorted(done.deactivated_medication_ids) == sorted([b, c])
    assert (done.created, done.updated, done.unchanged) == (0, 0, 2)
    assert set(active(stub, svc, patient)) == {a, new}
    ended = admin_query(
        svc,
        "SELECT id FROM healthcare.medications WHERE id IN (:b, :c) AND NOT is_active AND ended_on IS NOT NULL",
        b=b,
        c=c,
    )
    assert len(ended) == 2
    # One audit row per call ties the trigger rows to it: ids and counts, no drug, no EHR id.
    calls = audit_rows_for(svc, patient, "REPLACE_ACTIVE_MEDICATIONS")
    assert [r["outcome"] for r in calls] == ["SUCCESS", "SUCCESS"]
    assert calls[-1]["user_id"] == ADVISOR
    assert calls[-1]["details"]["deactivated_ids"] == sorted([b, c])
    assert leaked(json.dumps([r["details"] for r in calls], default=str), x, y, z) == []
    # An empty list ends them all; the record still verifies.
    done = replace(stub, svc, patient)
    assert sorted(done.deactivated_medication_ids) == sorted([a, new]) and active(stub, svc, patient) == {}
    assert evaluate(stub, svc, patient, ADVISOR).evaluation_id


def test_replace_is_all_or_nothing(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    patient, neighbour = make_patient(TENANT), make_patient(TENANT)
    x = ehr_id()
    a = put(stub, svc, patient, "metformin", external_id=x).id
    theirs = put(stub, svc, neighbour, "levothyroxine").id
    before = profile(stub, svc, patient)
    good = [pb.Medication(generic_name="atorvastatin", external_id=ehr_id()), pb.Medication(generic_name="amlodipine")]
    cases = [
        # refused before anything is written
        ([*good, pb.Medication(generic_name="  ")], grpc.StatusCode.INVALID_ARGUMENT, "medications[2].generic_name"),
        (
            [*good, pb.Medication(generic_name="omeprazole", coding=pb.Coding(system="http://loinc.org", code="1"))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "medications[2].coding.system",
        ),
        (
            [pb.Medication(generic_name="metformin", external_id=x), pb.Medication(generic_name="b", external_id=x)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "medications[1].external_id: repeats medications[0].external_id",
        ),
        # refused after the first entries were written: the transaction takes them back
        ([*good, pb.Medication(generic_name="omeprazole", medication_id=theirs)], grpc.StatusCode.NOT_FOUND, ""),
        (
            [
                *good,
                pb.Medication(generic_name="metformin", external_id=x),
                pb.Medication(generic_name="metformin", medication_id=a),
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            "medications[3] names the same record as medications[2]",
        ),
        (
            [*good, pb.Medication(generic_name="omeprazole", medication_id=theirs, external_id=x)],
            grpc.StatusCode.NOT_FOUND,
            "",
        ),
    ]
    for meds, code, starts in cases:
        details = fail(
            stub.ReplaceActiveMedications,
            pb.ReplaceActiveMedicationsRequest(patient_id=patient, medications=meds),
            code,
            metadata=svc.md(ADVISOR),
        )
        assert details.startswith(starts), details
        assert leaked(details, x) == [], details
        assert profile(stub, svc, patient) == before, f"{starts or code}: the record changed"
    assert [m.generic_name for m in profile(stub, svc, neighbour).medications] == ["levothyroxine"]
    failed = audit_rows_for(svc, patient, "REPLACE_ACTIVE_MEDICATIONS")
    assert [r["outcome"] for r in failed] == [code.name for _, code, _ in cases]
    assert all("FAILED_CALL" in r["compliance_flags"] for r in failed)


def test_replace_respects_the_bound_on_active_items(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    with server_with(svc, PRANEYA_MAX_ACTIVE_ITEMS="3") as small:
        old = [put(small, svc, patient, n).id for n in DRUGS[:3]]  # at the bound
        four = [pb.Medication(generic_name=n, external_id=ehr_id()) for n in DRUGS[1:5]]
        details = fail(
            small.ReplaceActiveMedications,
            pb.ReplaceActiveMedicationsRequest(patient_id=patient, medications=four),
            grpc.StatusCode.INVALID_ARGUMENT,
            metadata=svc.md(ADVISOR),
        )
        assert details.startswith("medications: at most 3 (PRANEYA_MAX_ACTIVE_ITEMS)"), details
        assert set(active(stub, svc, patient)) == set(old)
        # Three new ones replace three old ones: the bound is on the list that results.
        done = replace(small, svc, patient, *four[:3])
        assert done.created == 3 and sorted(done.deactivated_medication_ids) == sorted(old)
        assert set(active(stub, svc, patient)) == set(done.medication_ids)
        fail(
            small.PutMedication,
            pb.PutMedicationRequest(patient_id=patient, medication=pb.Medication(generic_name="aspirin")),
            grpc.StatusCode.FAILED_PRECONDITION,
            metadata=svc.md(ADVISOR),
        )


def test_external_ids_are_per_patient_and_per_tenant(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    a, b, elsewhere = make_patient(TENANT), make_patient(TENANT), make_patient(OTHER_TENANT)
    x = ehr_id()
    ma = put(stub, svc, a, "metformin", dose="500 mg", external_id=x).id
    mb = put(stub, svc, b, "amlodipine", dose="5 mg", external_id=x).id
    assert ma != mb
    # Another tenant's patient with the same EHR id: a record of its own, written by its own staff.
    mo = put(stub, svc, elsewhere, "atorvastatin", user=OTHER_ADVISOR, external_id=x).id
    assert mo not in (ma, mb)
    # Updating a's record by the EHR id touches nothing of b's, nor of the other tenant's.
    assert put(stub, svc, a, "metformin", dose="1000 mg", external_id=x).id == ma
    assert active(stub, svc, b) == {mb: (x, "amlodipine", "5 mg")}
    assert active(stub, svc, elsewhere, OTHER_ADVISOR)[mo] == (x, "atorvastatin", "")
    # Replacing b's list with a's id, or the other tenant's, is refused; nothing moves.
    for foreign in (ma, mo):
        with pytest.raises(grpc.RpcError) as info:
            replace(stub, svc, b, pb.Medication(generic_name="amlodipine", medication_id=foreign, external_id=x))
        err: Any = info.value
        assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED), err.details()
    assert active(stub, svc, a) == {ma: (x, "metformin", "1000 mg")}
    assert active(stub, svc, b) == {mb: (x, "amlodipine", "5 mg")}
    # A caller of one tenant cannot write another tenant's patient by EHR id at all.
    fail(
        stub.PutMedication,
        pb.PutMedicationRequest(
            patient_id=elsewhere, medication=pb.Medication(generic_name="metformin", external_id=x)
        ),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(ADVISOR),
    )
    # In the database: the value is ciphertext, and its index differs per patient (it links nothing).
    rows = admin_query(
        svc,
        "SELECT id, encrypted_external_id, external_id_index FROM healthcare.medications WHERE id IN (:a, :b, :o)",
        a=ma,
        b=mb,
        o=mo,
    )
    assert len(rows) == 3 and len({r["external_id_index"] for r in rows}) == 3
    assert all(r["encrypted_external_id"].startswith("pv1.") and x not in r["encrypted_external_id"] for r in rows)


def test_ehr_ids_stay_out_of_logs_audit_rows_and_plain_columns(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    x, y = ehr_id(), ehr_id()
    put(stub, svc, patient, "metformin", external_id=x)
    replace(stub, svc, patient, pb.Medication(generic_name="atorvastatin", external_id=y))
    with pytest.raises(grpc.RpcError):
        replace(stub, svc, patient, pb.Medication(generic_name="omeprazole", external_id=y + "\x01"))
    with pytest.raises(grpc.RpcError):
        put(stub, svc, patient, "amlodipine", external_id=y, medication_id="med_unknown")
    lines = [line for line in list(svc.logs) if x in line or y in line]
    assert lines == []
    audit = admin_query(svc, "SELECT * FROM audit.audit_logs WHERE patient_id = :p", p=patient)
    meds = admin_query(svc, "SELECT * FROM healthcare.medications WHERE user_id = :p", p=patient)
    assert audit and meds
    dumped = json.dumps([dict(r) for r in audit] + [dict(r) for r in meds], default=str)
    assert leaked(dumped, x, y) == []


def test_an_ehr_id_moved_or_removed_behind_the_service_fails_closed(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    x, y = ehr_id(), ehr_id()
    a = put(stub, svc, patient, "metformin", external_id=x).id
    b = put(stub, svc, patient, "amlodipine", external_id=y).id
    # Someone with database access swaps the two indexes: x's index now finds b, whose id is y.
    rows = admin_query(svc, "SELECT id, external_id_index FROM healthcare.medications WHERE user_id = :p", p=patient)
    index = {r["id"]: r["external_id_index"] for r in rows}
    move = "UPDATE healthcare.medications SET external_id_index = :x WHERE id = :id"
    admin_exec(svc, move, x="moving", id=a)  # the unique key holds at every step
    admin_exec(svc, move, x=index[a], id=b)
    admin_exec(svc, move, x=index[b], id=a)
    fail(
        stub.PutMedication,
        pb.PutMedicationRequest(patient_id=patient, medication=pb.Medication(generic_name="metformin", external_id=x)),
        grpc.StatusCode.DATA_LOSS,
        metadata=svc.md(ADVISOR),
    )
    assert {m.medication_id: m.external_id for m in profile(stub, svc, patient).medications} == {a: x, b: y}
    # The identifier is sealed with the row: removing it is tampering like any other edit.
    admin_exec(
        svc,
        "UPDATE healthcare.medications SET encrypted_external_id = NULL, external_id_index = NULL WHERE id = :a",
        a=a,
    )
    fail(
        stub.GetHealthProfile,
        pb.GetHealthProfileRequest(patient_id=patient),
        grpc.StatusCode.DATA_LOSS,
        metadata=svc.md(ADVISOR),
    )
    fail(
        stub.ReplaceActiveMedications,
        pb.ReplaceActiveMedicationsRequest(patient_id=patient, medications=[pb.Medication(generic_name="metformin")]),
        grpc.StatusCode.DATA_LOSS,
        metadata=svc.md(ADVISOR),
    )


def test_only_staff_and_the_patient_replace_a_list(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    patient, stranger = make_patient(TENANT), make_patient(TENANT)
    put(stub, svc, patient, "metformin", external_id=ehr_id())
    before = profile(stub, svc, patient)
    # Another end user of the tenant: the patient is invisible to them, like a missing one.
    fail(
        stub.ReplaceActiveMedications,
        pb.ReplaceActiveMedicationsRequest(patient_id=patient),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(stranger),
    )
    # Without MFA: refused before anything is read.
    fail(
        stub.ReplaceActiveMedications,
        pb.ReplaceActiveMedicationsRequest(patient_id=patient),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=svc.md(ADVISOR, mfa=False),
    )
    assert profile(stub, svc, patient) == before

"""Registered clients call the record use cases (engine/app/records.py) as an EHR would: `records.write`
writes (by its own ids, and replaces the active medication list), `evaluate.stored` reads the profile
back, and nothing else opens; never another tenant's patient; break the glass is a user's act only.
The use cases run against this worker's PostgreSQL as praneya_app, with the principal a verified
client token gives."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Engine, text

from engine.app.calls import Calls
from engine.app.emergency import BreakGlass, EmergencyAccess
from engine.app.failures import Code, Failure
from engine.app.records import MedicationEntry, Records
from store.keys import KeyStore
from store.session import Database, Principal, RequestMeta
from tests.fix_clients import ClientFactory

pytestmark = pytest.mark.db

META = RequestMeta(request_id="records-clients-test")


def as_client(c: Any, *scopes: str) -> Principal:
    return Principal(tenant_id=c.tenant, user_id=f"client:{c.id}", role="CLIENT", client_id=c.id,
                     scopes=scopes, acting_for="Practitioner/42")


@pytest.fixture
def records(app_db: Database, keys: KeyStore) -> Records:
    return Records(app_db, keys, Calls(app_db), max_active_items=10)


def refused(call: Callable[[], Any], code: Code) -> str:
    with pytest.raises(Failure) as info:
        call()
    assert info.value.code == code, info.value.message
    return info.value.message


def test_records_write_writes_by_ehr_id_and_evaluate_stored_reads_back(
    records: Records, make_client: ClientFactory, make_tenant: Callable[[], str],
    make_patient: Callable[..., str], admin_engine: Engine,
) -> None:
    tenant = make_tenant()
    patient = make_patient(tenant)
    writer = make_client(tenant, scopes=("records.write",))
    reader = make_client(tenant, scopes=("evaluate.stored",))
    w, r = as_client(writer, "records.write"), as_client(reader, "evaluate.stored")
    first = records.put_medication(w, META, patient, MedicationEntry("metformin", external_id="MedicationRequest/1"))
    again = records.put_medication(w, META, patient, MedicationEntry("metformin", dose="1 g",
                                                                     external_id="MedicationRequest/1"))
    assert again.id == first.id
    done = records.replace_active_medications(w, META, patient, [
        MedicationEntry("metformin", dose="1 g", external_id="MedicationRequest/1"),
        MedicationEntry("amlodipine", external_id="MedicationRequest/2"),
    ])
    assert done.medication_ids[0] == first.id and (done.created, done.unchanged) == (1, 1)
    view = records.health_profile(r, META, patient)
    assert {(m.external_id, m.generic_name, m.dose) for m in view.medications} == {
        ("MedicationRequest/1", "metformin", "1 g"), ("MedicationRequest/2", "amlodipine", "")}
    # The audit rows name the client and the user it acts for.
    with admin_engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT action, details, compliance_flags FROM audit.audit_logs WHERE patient_id = :p"
            " AND action IN ('REPLACE_ACTIVE_MEDICATIONS', 'READ_HEALTH_PROFILE')"), {"p": patient}).all()
    assert {row.action for row in rows} == {"REPLACE_ACTIVE_MEDICATIONS", "READ_HEALTH_PROFILE"}
    for row in rows:
        assert row.details["client_id"] in (writer.id, reader.id) and row.details["acting_for"] == "Practitioner/42"
        assert "CLIENT" in row.compliance_flags


def test_each_scope_opens_only_what_it_names(
    records: Records, app_db: Database, keys: KeyStore, make_client: ClientFactory,
    make_tenant: Callable[[], str], make_patient: Callable[..., str],
) -> None:
    tenant = make_tenant()
    patient = make_patient(tenant)
    reader = as_client(make_client(tenant, scopes=("evaluate.stored",)), "evaluate.stored")
    supplied = as_client(make_client(tenant, scopes=("evaluate.supplied",)), "evaluate.supplied")
    writer = as_client(make_client(tenant, scopes=("records.write",)), "records.write")
    entry = MedicationEntry("metformin", external_id="MedicationRequest/1")
    for principal in (reader, supplied):
        message = refused(partial(records.put_medication, principal, META, patient, entry), Code.PERMISSION_DENIED)
        assert message == "PutMedication needs the scope records.write for a client"
        refused(partial(records.replace_active_medications, principal, META, patient, [entry]), Code.PERMISSION_DENIED)
    refused(lambda: records.health_profile(supplied, META, patient), Code.PERMISSION_DENIED)
    refused(lambda: records.health_profile(writer, META, patient), Code.PERMISSION_DENIED)
    emergency = EmergencyAccess(app_db, keys, Calls(app_db))
    message = refused(
        lambda: emergency.break_the_glass(writer, META, BreakGlass(patient, "ETREAT", "unresponsive on arrival")),
        Code.PERMISSION_DENIED,
    )
    assert message == "EmergencyAccess is not available to clients"


def test_a_client_never_writes_another_tenants_patient(
    records: Records, make_client: ClientFactory, make_tenant: Callable[[], str], make_patient: Callable[..., str],
) -> None:
    mine, theirs = make_tenant(), make_tenant()
    patient = make_patient(theirs)
    writer = as_client(make_client(mine, scopes=("records.write",)), "records.write")
    entry = MedicationEntry("metformin", external_id="MedicationRequest/1")
    refused(lambda: records.put_medication(writer, META, patient, entry), Code.NOT_FOUND)
    refused(lambda: records.replace_active_medications(writer, META, patient, [entry]), Code.NOT_FOUND)
    owner = as_client(make_client(theirs, scopes=("evaluate.stored",)), "evaluate.stored")
    assert records.health_profile(owner, META, patient).medications == ()

"""Row-level security knows registered clients: each scope opens exactly what it names, in the
client's own tenant, and nothing opens for a client that is deactivated, in another tenant's
context, or whose token did not carry the scope. Everything as praneya_app through the service's
own `Database.scoped` (the context the service sets), never as a superuser.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from store import service_repo
from store.clients import deactivate_client
from store.keys import KeyStore
from store.patients import PatientNotFound, read_patient
from store.session import Database, Principal, PrincipalMismatch
from tests.fix_clients import ClientFactory
from tests.fix_world import PHI_TABLES, Patient, World, ciphertext
from tests.test_rls_isolation import TABLES, TENANT_COLUMN

pytestmark = pytest.mark.db

PHI = [t for t, _ in PHI_TABLES]
READABLE = [*PHI, "clinical.drug_interactions"]


def client(c: Any, scopes: tuple[str, ...] | None = None, acting_for: str | None = "Practitioner/7") -> Principal:
    return Principal(tenant_id=c.tenant, user_id=f"client:{c.id}", role="CLIENT", client_id=c.id,
                     scopes=scopes if scopes is not None else c.scopes, acting_for=acting_for)


@dataclass(frozen=True)
class Side:
    tenant: str
    patient: Patient
    staff: str
    stored: Any
    supplied: Any
    writer: Any


@dataclass(frozen=True)
class Registered:
    id: str
    tenant: str
    scopes: tuple[str, ...]


def _side(world: World, make_client: ClientFactory) -> Side:
    t = world.tenant()
    patient = world.patient(t)
    world.admin.execute(
        "INSERT INTO clinical.drug_interactions (id, tenant_id, user_id, medication_id, severity, interaction_type)"
        " VALUES (%s, %s, %s, %s, 'MAJOR', 'OTHER')",
        (world.id("ddi"), t, patient.user, patient.rows["healthcare.medications"]))
    staff = world.user(t, "CLINICAL_ADVISOR")

    def reg(*scopes: str) -> Registered:
        c = make_client(t, scopes=scopes)
        return Registered(c.id, t, tuple(sorted(scopes)))

    return Side(t, patient, staff, reg("evaluate.stored"), reg("evaluate.supplied"), reg("records.write"))


@pytest.fixture
def sides(world: World, make_client: ClientFactory) -> tuple[Side, Side]:
    return _side(world, make_client), _side(world, make_client)


def _count(conn: Connection, table: str, other_tenant: str) -> dict[str, int]:
    col = TENANT_COLUMN[table]
    rows = conn.execute(text(f"SELECT {col} AS tenant, count(*) AS n FROM {table} WHERE {col} = :o OR true GROUP BY 1"),
                        {"o": other_tenant}).all()
    return {r.tenant: r.n for r in rows}


@pytest.mark.parametrize("kind", ["stored", "supplied", "writer"])
def test_a_client_never_reads_another_tenant(sides: tuple[Side, Side], app_db: Database, kind: str) -> None:
    a, b = sides
    principal = client(getattr(a, kind))
    with app_db.scoped(principal) as conn:
        seen = {table: _count(conn, table, b.tenant) for table in TABLES}
    leaked = {t: n for t, n in seen.items() if set(n) - {a.tenant, None}}
    assert leaked == {}


def test_evaluate_stored_reads_its_tenants_patients_read_only(sides: tuple[Side, Side], app_db: Database) -> None:
    a, b = sides
    with app_db.scoped(client(a.stored)) as conn:
        for table in READABLE:
            assert _count(conn, table, b.tenant) == {a.tenant: 1}, table
        users = conn.execute(text("SELECT id FROM public.users")).scalars().all()
        assert users == [a.patient.user]  # the patient, not the staff
    with app_db.scoped(client(a.stored)) as conn:
        for table in PHI:  # read-only: an UPDATE finds nothing to change
            assert conn.execute(text(f"UPDATE {table} SET tenant_id = tenant_id WHERE id = :id"),
                                {"id": a.patient.rows[table]}).rowcount == 0, table


def test_evaluate_stored_cannot_write(sides: tuple[Side, Side], app_db: Database) -> None:
    a, _ = sides
    p = a.patient
    with pytest.raises(DBAPIError) as caught, app_db.scoped(client(a.stored)) as conn:
        conn.execute(text(
            "INSERT INTO healthcare.medications (id, tenant_id, health_profile_id, user_id, encrypted_generic_name)"
            " VALUES ('m-new', :t, :p, :u, :n)"), {"t": a.tenant, "p": p.profile, "u": p.user, "n": ciphertext()})
    assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)
    with app_db.scoped(client(a.stored)) as conn:
        moved = conn.execute(text("UPDATE healthcare.medications SET is_active = false WHERE id = :id"),
                             {"id": p.rows["healthcare.medications"]})
        assert moved.rowcount == 0


def test_evaluate_supplied_reads_no_patient_data_but_writes_audit_rows(
    sides: tuple[Side, Side], app_db: Database, admin_engine: Engine,
) -> None:
    a, _ = sides
    with app_db.scoped(client(a.supplied)) as conn:
        for table in [*READABLE, "public.users", "healthcare.consents", "healthcare.emergency_access_grants",
                      "clinical.alert_feedback", "public.clients"]:
            assert _count(conn, table, a.tenant) == {}, table
        # What an evaluation of supplied data needs: its tenant and its keys (to seal and sign).
        assert _count(conn, "public.tenant_data_keys", a.tenant) == {a.tenant: 1}
        service_repo.write_audit(conn, audit_id="audit-supplied-1-" + a.tenant, tenant_id=a.tenant,
                                 user_id="client:ignored", action="EVALUATE_SUPPLIED", outcome="SUCCESS",
                                 details={"request_id": "r1"})
    with admin_engine.connect() as conn:
        row = conn.execute(text("SELECT user_id, details, compliance_flags FROM audit.audit_logs WHERE id = :i"),
                           {"i": "audit-supplied-1-" + a.tenant}).one()
    assert row.user_id is None
    assert row.details == {"request_id": "r1", "client_id": a.supplied.id, "acting_for": "Practitioner/7"}
    assert row.compliance_flags == ["CLIENT"]


def test_a_client_cannot_write_audit_rows_for_another_tenant_or_a_user(
    sides: tuple[Side, Side], app_db: Database,
) -> None:
    a, b = sides
    for tenant, user in ((b.tenant, None), (a.tenant, a.staff)):
        with pytest.raises(DBAPIError) as caught, app_db.scoped(client(a.supplied)) as conn:
            conn.execute(text("INSERT INTO audit.audit_logs (tenant_id, user_id, action) VALUES (:t, :u, 'FORGED')"),
                         {"t": tenant, "u": user})
        assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)


def test_records_write_writes_its_tenants_records_and_the_trigger_names_the_client(
    sides: tuple[Side, Side], app_db: Database, admin_engine: Engine,
) -> None:
    a, b = sides
    p = a.patient
    insert = text(
        "INSERT INTO healthcare.medications (id, tenant_id, health_profile_id, user_id, encrypted_generic_name)"
        " VALUES (:id, :t, :p, :u, :n)")
    med = "med-by-client-" + a.tenant
    with app_db.scoped(client(a.writer)) as conn:
        conn.execute(insert, {"id": med, "t": a.tenant, "p": p.profile, "u": p.user, "n": ciphertext()})
        assert conn.execute(text("UPDATE healthcare.allergies SET is_active = false WHERE id = :id"),
                            {"id": p.rows["healthcare.allergies"]}).rowcount == 1
    with admin_engine.connect() as conn:
        row = conn.execute(text(
            "SELECT user_id, details, compliance_flags FROM audit.audit_logs"
            " WHERE action = 'PHI_INSERT' AND resource_id = :id"), {"id": med}).one()
    assert row.user_id is None
    assert row.details == {"client_id": a.writer.id, "acting_for": "Practitioner/7"}
    assert row.compliance_flags == ["CLIENT"]
    # Never into another tenant, and never a delete.
    bp = b.patient
    with pytest.raises(DBAPIError) as caught, app_db.scoped(client(a.writer)) as conn:
        conn.execute(insert, {"id": "med-x-" + a.tenant, "t": b.tenant, "p": bp.profile, "u": bp.user,
                              "n": ciphertext()})
    assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)
    with app_db.scoped(client(a.writer)) as conn:
        assert conn.execute(text("DELETE FROM healthcare.medications WHERE id = :id"), {"id": med}).rowcount == 0


def test_records_write_creates_patients_but_never_staff(sides: tuple[Side, Side], app_db: Database) -> None:
    a, _ = sides
    new_user = text("INSERT INTO public.users (id, tenant_id, healthcare_role, mfa_enabled) VALUES (:id, :t, :r, :m)")
    with app_db.scoped(client(a.writer)) as conn, conn.begin_nested() as sp:
        conn.execute(new_user, {"id": "ehr-patient-" + a.tenant, "t": a.tenant, "r": "END_USER", "m": False})
        sp.rollback()
    for role, mfa in (("SUPER_ADMIN", True), ("CLINICAL_ADVISOR", False), ("END_USER", True)):
        with pytest.raises(DBAPIError) as caught, app_db.scoped(client(a.writer)) as conn:
            conn.execute(new_user, {"id": f"ehr-{role}-{a.tenant}", "t": a.tenant, "r": role, "m": mfa})
        assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)
    with pytest.raises(DBAPIError), app_db.scoped(client(a.writer)) as conn:
        conn.execute(text("UPDATE public.users SET healthcare_role = 'SUPER_ADMIN' WHERE id = :u"),
                     {"u": a.patient.user})


@pytest.mark.parametrize("case", ["deactivated", "scope_not_in_token", "scope_not_granted", "other_tenant",
                                  "user_beside_client", "unknown_client"])
def test_nothing_opens_without_an_active_client_of_this_tenant_holding_the_scope(
    sides: tuple[Side, Side], app_db: Database, admin_engine: Engine, case: str,
) -> None:
    a, b = sides
    principal = client(a.stored)
    if case == "deactivated":
        with admin_engine.begin() as conn:
            deactivate_client(conn, a.stored.id)
    elif case == "scope_not_in_token":
        principal = client(a.stored, scopes=("evaluate.supplied",))
    elif case == "scope_not_granted":  # a service bug claiming more than the registry grants
        principal = client(a.supplied, scopes=("evaluate.stored", "records.write"))
    elif case == "other_tenant":
        principal = replace(principal, tenant_id=b.tenant)
    elif case == "unknown_client":
        principal = replace(principal, client_id="no-such-client")
    if case == "user_beside_client":
        with app_db.engine.connect() as conn, conn.begin():
            conn.execute(text(
                "SELECT set_config('app.tenant_id', :t, true), set_config('app.user_id', :u, true),"
                " set_config('app.role', 'CLIENT', true), set_config('app.client_id', :c, true),"
                " set_config('app.client_scopes', 'evaluate.stored', true)"),
                {"t": a.tenant, "u": a.staff, "c": a.stored.id})
            assert conn.execute(text("SELECT public.current_client_scopes()")).scalar() == []
            assert _count(conn, "healthcare.medications", a.tenant) == {}
        return
    with app_db.scoped(principal) as conn:
        assert conn.execute(text("SELECT public.current_client_scopes()")).scalar() == []
        for table in READABLE:
            assert _count(conn, table, a.tenant) == {}, table
        assert conn.execute(text("SELECT public.current_caller_role()")).scalar() == (
            None if case in ("deactivated", "other_tenant", "unknown_client") else "CLIENT")


def test_the_service_verifies_a_client_like_a_user(sides: tuple[Side, Side], app_db: Database,
                                                   admin_engine: Engine) -> None:
    a, _ = sides
    with app_db.scoped(client(a.stored), verify=True):
        pass
    with admin_engine.begin() as conn:
        deactivate_client(conn, a.stored.id)
    with pytest.raises(PrincipalMismatch, match="not an active client"), app_db.scoped(client(a.stored), verify=True):
        pass


def test_the_snapshot_reads_for_evaluate_stored_only(
    make_client: ClientFactory, make_tenant: Any, make_patient: Any, app_db: Database, keys: KeyStore,
) -> None:
    tenant = make_tenant()
    patient = make_patient(tenant)
    stored = make_client(tenant, scopes=("evaluate.stored",))
    supplied = make_client(tenant, scopes=("evaluate.supplied",))
    with app_db.scoped(client(Registered(stored.id, tenant, ("evaluate.stored",)))) as conn:
        record = read_patient(conn, keys, patient, expected_role="CLIENT")
    assert record.tenant_id == tenant
    with pytest.raises(PatientNotFound), app_db.scoped(
            client(Registered(supplied.id, tenant, ("evaluate.supplied",)))) as conn:
        read_patient(conn, keys, patient, expected_role="CLIENT")


def test_the_registry_is_read_only_through_its_function(
    sides: tuple[Side, Side], app_db: Database, admin_engine: Engine,
) -> None:
    a, _ = sides
    with app_db.engine.connect() as conn:  # no context at all: the service's cache loader
        assert conn.execute(text("SELECT count(*) FROM public.clients")).scalar() == 0
        ids = set(conn.execute(text("SELECT id FROM public.registered_clients()")).scalars())
        assert {a.stored.id, a.supplied.id, a.writer.id} <= ids
        with pytest.raises(DBAPIError) as caught:
            conn.execute(text("UPDATE public.clients SET scopes = '{records.write}' WHERE id = :c"),
                         {"c": a.supplied.id})
        assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)
    with admin_engine.begin() as conn:
        deactivate_client(conn, a.writer.id)
    with app_db.engine.connect() as conn:
        assert a.writer.id not in set(conn.execute(text("SELECT id FROM public.registered_clients()")).scalars())

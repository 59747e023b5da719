"""The ClinicalSafety service end to end: a real server on a loopback port, TLS, real PostgreSQL.

Every call goes through the network stack, the authentication interceptor, the servicer and the
database as praneya_app. Demo data (store/demo.py) gives the read-only cases stable ids; tests that
write make their own patients (make_patient / make_tenant), so no test depends on another's order.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import text

from engine.app.tokens import generate_dev_keypair
from engine.doors.cli import main as praneya
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.verify import signed_content, verify_response
from store.admin import add_family_member, create_family
from store.keys import KeyStore
from store.signing import verify_signature
from tests.fix_grpc import USER_AGENT, Service, running_server

pytestmark = pytest.mark.db

SERVICE = "praneya.safety.v1.ClinicalSafety"
TENANT, OTHER_TENANT = "demo-clinic", "demo-riverside"
ADVISOR, ADMIN, ER = "demo-advisor-01", "demo-admin-01", "demo-er-01"
PARENT, SPOUSE, CHILD = "demo-patient-01", "demo-patient-02", "demo-patient-03"
OTHER_ADVISOR, OTHER_PATIENT = "rv-advisor-01", "rv-patient-01"

# Plaintexts of the demo data (and of what tests send) that must never reach a log, an error
# message or an audit row. Drug and allergen names match case-insensitively; first names as words.
PHI_WORDS = (
    "warfarin",
    "ibuprofen",
    "penicillin",
    "peanut",
    "coumadin",
    "advil",
    "simvastatin",
    "sertraline",
    "sumatriptan",
    "shellfish",
    "sulfamethoxazole",
    "albuterol",
    "epipen",
    "phenelzine",
    "lisinopril",
    "spironolactone",
    "atrial fibrillation",
    "anaphylaxis",
)
PHI_NAMES = ("John", "Jane", "Jimmy", "Maria", "Doe", "Garcia")
_PHI_RE = re.compile(
    "|".join([re.escape(w) for w in PHI_WORDS]) + "|" + "|".join(rf"\b{n}\b" for n in PHI_NAMES), re.IGNORECASE
)


def phi_in(value: str) -> list[str]:
    return sorted({m.group(0).lower() for m in _PHI_RE.finditer(value)})


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()


def fail(call: Callable[..., Any], request: Any, code: grpc.StatusCode, **kwargs: Any) -> str:
    """Makes a call that must fail with `code`; returns its details, checked to carry no PHI."""
    kwargs.setdefault("timeout", 15)
    with pytest.raises(grpc.RpcError) as info:
        call(request, **kwargs)
    err: Any = info.value
    assert err.code() != grpc.StatusCode.UNKNOWN, err.details()
    assert err.code() == code, f"{err.code()}: {err.details()}"
    details = err.details() or ""
    assert "Traceback" not in details
    assert phi_in(details) == [], details
    return str(details)


def admin_exec(svc: Service, sql: str, **params: Any) -> Any:
    with svc.admin.begin() as conn:
        return conn.execute(text(sql), params)


def audit_row(svc: Service, audit_id: str) -> dict[str, Any]:
    with svc.admin.connect() as conn:
        rows = conn.execute(text("SELECT * FROM audit.audit_logs WHERE id = :id"), {"id": audit_id}).mappings().all()
    assert len(rows) == 1, f"{len(rows)} audit rows for {audit_id}"
    return dict(rows[0])


def audit_rows_for(svc: Service, patient: str, action: str) -> list[dict[str, Any]]:
    with svc.admin.connect() as conn:
        rows = conn.execute(
            text('SELECT * FROM audit.audit_logs WHERE patient_id = :p AND action = :a ORDER BY "timestamp"'),
            {"p": patient, "a": action},
        ).mappings()
        return [dict(r) for r in rows]


def evaluate(stub: Any, svc: Service, patient: str, user: str, **req: Any) -> Any:
    return stub.EvaluateSafety(pb.EvaluateSafetyRequest(patient_id=patient, **req), metadata=svc.md(user), timeout=15)


def med(name: str, **kw: Any) -> Any:
    return pb.Medication(generic_name=name, **kw)


def put_meds(stub: Any, svc: Service, patient: str, user: str, *names: str) -> list[str]:
    return [
        stub.PutMedication(
            pb.PutMedicationRequest(patient_id=patient, medication=med(n, dose="5 mg", route="oral")),
            metadata=svc.md(user),
            timeout=15,
        ).id
        for n in names
    ]


SEVERITY_RANK = {pb.INFO: 1, pb.LOW: 2, pb.MODERATE: 3, pb.HIGH: 4, pb.CRITICAL: 5}


# -- success paths -------------------------------------------------------------------------------


def test_evaluate_safety_ranks_signs_and_reports_completeness(svc: Service, stub: Any) -> None:
    resp = evaluate(stub, svc, PARENT, ADVISOR)
    assert UUID_RE.match(resp.evaluation_id)
    assert resp.alerts, "the demo parent takes warfarin and ibuprofen"
    ranks = [SEVERITY_RANK[a.severity] for a in resp.alerts]
    assert ranks == sorted(ranks, reverse=True), "alerts are ranked by severity, highest first"
    ddi = [a for a in resp.alerts if a.kind == pb.DRUG_DRUG_INTERACTION and a.rule_id == "ddi-warfarin-nsaid"]
    assert len(ddi) == 1
    assert set(ddi[0].involved_item_ids) == {f"{PARENT}-med-1", f"{PARENT}-med-2"}
    assert ddi[0].severity >= pb.HIGH and ddi[0].interruptive
    assert all(a.interruptive == (a.severity >= pb.HIGH) for a in resp.alerts)
    assert len({a.alert_id for a in resp.alerts}) == len(resp.alerts)
    # complete and incomplete_rules say the same thing
    assert resp.complete == (len(resp.incomplete_rules) == 0)
    assert all(r.rule_id and r.reason for r in resp.incomplete_rules)
    assert resp.ruleset_version and resp.knowledge_version
    assert abs(resp.evaluated_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)

    # The signature verifies with the published key, over exactly the bytes that describe this response.
    key = stub.GetSigningKey(pb.GetSigningKeyRequest(), metadata=svc.md(ADVISOR), timeout=15)
    assert key.public_key == svc.signing_public_key
    sig = resp.signature
    assert sig.algorithm == "Ed25519" and sig.key_id == key.key_id and sig.scheme == "praneya-result-v2"
    assert not sig.canonical, "no copy of the content travels with the answer"
    assert verify_response(resp, key.public_key, PARENT)
    # A client verifies what it reads: any signed field changed, or another patient, fails.
    tampered = pb.EvaluateSafetyResponse()
    tampered.CopyFrom(resp)
    tampered.alerts[0].severity = pb.LOW
    assert not verify_response(tampered, key.public_key, PARENT)
    tampered.CopyFrom(resp)
    del tampered.alerts[-1]
    assert not verify_response(tampered, key.public_key, PARENT)
    assert not verify_response(resp, key.public_key, SPOUSE)
    assert verify_signature(key.public_key, sig.digest, sig.signature)
    doc = signed_content(resp, PARENT)
    assert doc["evaluation_id"] == resp.evaluation_id and doc["patient_id"] == PARENT
    assert doc["complete"] == resp.complete
    assert doc["ruleset_version"] == resp.ruleset_version and doc["knowledge_version"] == resp.knowledge_version
    assert doc["evaluated_at"] == resp.evaluated_at.ToJsonString()
    assert [(a["alert_id"], a["severity"], a["rule_id"], a["kind"]) for a in doc["alerts"]] == [
        (a.alert_id, pb.Severity.Name(a.severity), a.rule_id, pb.AlertKind.Name(a.kind)) for a in resp.alerts
    ]
    assert [a["involved_item_ids"] for a in doc["alerts"]] == [list(a.involved_item_ids) for a in resp.alerts]
    assert [r["rule_id"] for r in doc["incomplete_rules"]] == [r.rule_id for r in resp.incomplete_rules]


def test_evaluate_with_a_proposed_maoi_raises_a_critical_serotonin_alert(svc: Service, stub: Any) -> None:
    before = evaluate(stub, svc, SPOUSE, ADVISOR)
    assert not any(a.severity == pb.CRITICAL for a in before.alerts)
    resp = evaluate(
        stub,
        svc,
        SPOUSE,
        ADVISOR,
        proposed_medications=[pb.ProposedMedication(name="phenelzine", dose="15 mg", route="oral", frequency="tid")],
    )
    critical = [a for a in resp.alerts if a.severity == pb.CRITICAL]
    assert critical, [a.rule_id for a in resp.alerts]
    assert resp.alerts[0].severity == pb.CRITICAL
    serotonin = [a for a in critical if "serotonin" in (a.summary + a.detail).lower()]
    assert serotonin and all(a.interruptive for a in serotonin)
    assert any("proposed:0" in a.involved_item_ids and f"{SPOUSE}-med-1" in a.involved_item_ids for a in serotonin)


def test_evaluate_with_proposed_foods(svc: Service, stub: Any) -> None:
    # The child is anaphylactic to peanut; the food allergy alert names the proposed food item.
    resp = evaluate(stub, svc, CHILD, ADVISOR, proposed_foods=["peanut butter", "apple"])
    food = [a for a in resp.alerts if a.kind == pb.FOOD_ALLERGY]
    assert food, [pb.AlertKind.Name(a.kind) for a in resp.alerts]
    assert food[0].severity >= pb.HIGH and food[0].interruptive
    assert any(i.startswith("food:") for i in food[0].involved_item_ids)
    assert f"{CHILD}-alg-1" in food[0].involved_item_ids
    plain = evaluate(stub, svc, CHILD, ADVISOR, proposed_foods=["apple"])
    assert not [a for a in plain.alerts if a.kind == pb.FOOD_ALLERGY]


def test_patient_record_writes_and_profile(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    patient = make_patient(TENANT)
    md = svc.md(ADVISOR)
    v0 = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=patient), metadata=md, timeout=15)
    assert v0.patient_id == patient and not v0.medications and v0.sex == "female"

    m1 = stub.PutMedication(
        pb.PutMedicationRequest(
            patient_id=patient,
            medication=med(
                "warfarin",
                brand_name="Coumadin",
                dose="5 mg",
                frequency="daily",
                route="oral",
                indication="atrial fibrillation",
                prescribed_by="Dr Who",
            ),
        ),
        metadata=md,
        timeout=15,
    )
    m2 = stub.PutMedication(
        pb.PutMedicationRequest(patient_id=patient, medication=med("ibuprofen")), metadata=md, timeout=15
    )
    a1 = stub.PutAllergy(
        pb.PutAllergyRequest(
            patient_id=patient,
            allergy=pb.Allergy(
                allergen="penicillin",
                category="drug",
                severity="anaphylactic",
                reactions=["hives", "anaphylaxis"],
                emergency_medication="epinephrine",
            ),
        ),
        metadata=md,
        timeout=15,
    )
    c1 = stub.PutCondition(
        pb.PutConditionRequest(patient_id=patient, condition=pb.Condition(name="hypertension", code="I10")),
        metadata=md,
        timeout=15,
    )
    taken = datetime.now(UTC) - timedelta(hours=1)
    reading = pb.BiometricReading(reading_type="egfr", value=48.5, unit="mL/min/1.73m2")
    reading.taken_at.FromDatetime(taken)
    b1 = stub.PutBiometricReading(
        pb.PutBiometricReadingRequest(patient_id=patient, reading=reading), metadata=md, timeout=15
    )
    versions = [v0.version, m1.profile_version, m2.profile_version, a1.profile_version, c1.profile_version]
    assert versions == sorted(versions) and len(set(versions)) == len(versions), versions
    assert b1.profile_version >= c1.profile_version
    assert all(r.id for r in (m1, m2, a1, c1, b1))

    profile = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=patient), metadata=md, timeout=15)
    assert profile.version == b1.profile_version
    meds = {m.medication_id: m for m in profile.medications}
    assert set(meds) == {m1.id, m2.id}
    assert (meds[m1.id].generic_name, meds[m1.id].brand_name, meds[m1.id].dose, meds[m1.id].indication) == (
        "warfarin",
        "Coumadin",
        "5 mg",
        "atrial fibrillation",
    )
    [allergy] = profile.allergies
    assert (allergy.allergy_id, allergy.allergen, allergy.category, allergy.severity) == (
        a1.id,
        "penicillin",
        "DRUG",
        "ANAPHYLACTIC",
    )
    assert list(allergy.reactions) == ["hives", "anaphylaxis"] and allergy.emergency_medication == "epinephrine"
    assert [(c.condition_id, c.name, c.code) for c in profile.conditions] == [(c1.id, "hypertension", "I10")]
    [bio] = profile.latest_biometrics
    # Stored in the lab catalog's canonical unit (the UCUM code of what was written).
    assert (bio.reading_id, bio.reading_type, bio.value, bio.unit) == (b1.id, "egfr", 48.5, "mL/min/{1.73_m2}")
    assert abs(bio.taken_at.ToDatetime(tzinfo=UTC) - taken) < timedelta(seconds=1)

    # The evaluation sees the new records; deactivating one of the pair ends the interaction alert.
    assert any(a.rule_id == "ddi-warfarin-nsaid" for a in evaluate(stub, svc, patient, ADVISOR).alerts)
    d = stub.DeactivateMedication(
        pb.DeactivateMedicationRequest(patient_id=patient, medication_id=m2.id), metadata=md, timeout=15
    )
    assert d.id == m2.id and d.profile_version > profile.version
    after = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=patient), metadata=md, timeout=15)
    assert [m.medication_id for m in after.medications] == [m1.id]
    assert not any(a.rule_id == "ddi-warfarin-nsaid" for a in evaluate(stub, svc, patient, ADVISOR).alerts)
    fail(
        stub.DeactivateMedication,
        pb.DeactivateMedicationRequest(patient_id=patient, medication_id=m2.id),
        grpc.StatusCode.NOT_FOUND,
        metadata=md,
    )

    # An update by id keeps the id and changes the value.
    upd = stub.PutMedication(
        pb.PutMedicationRequest(patient_id=patient, medication=med("warfarin", medication_id=m1.id, dose="2.5 mg")),
        metadata=md,
        timeout=15,
    )
    assert upd.id == m1.id and upd.profile_version > d.profile_version
    final = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=patient), metadata=md, timeout=15)
    assert [(m.medication_id, m.dose) for m in final.medications] == [(m1.id, "2.5 mg")]


def test_a_write_naming_another_patients_record_id_is_refused(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    """Put* with the id of another patient's record must neither touch that record nor report a write
    that did not happen."""
    a, b = make_patient(TENANT), make_patient(TENANT)
    md = svc.md(ADVISOR)
    [theirs] = put_meds(stub, svc, b, ADVISOR, "metformin")
    allergy = stub.PutAllergy(
        pb.PutAllergyRequest(patient_id=b, allergy=pb.Allergy(allergen="latex", category="LATEX", severity="MILD")),
        metadata=md,
        timeout=15,
    ).id
    condition = stub.PutCondition(
        pb.PutConditionRequest(patient_id=b, condition=pb.Condition(name="asthma")), metadata=md, timeout=15
    ).id
    before_a = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=a), metadata=md, timeout=15)
    before_b = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=b), metadata=md, timeout=15)
    for call, req in (
        (stub.PutMedication, pb.PutMedicationRequest(patient_id=a, medication=med("aspirin", medication_id=theirs))),
        (
            stub.PutAllergy,
            pb.PutAllergyRequest(
                patient_id=a,
                allergy=pb.Allergy(allergy_id=allergy, allergen="peanut", category="FOOD", severity="SEVERE"),
            ),
        ),
        (
            stub.PutCondition,
            pb.PutConditionRequest(patient_id=a, condition=pb.Condition(condition_id=condition, name="gout")),
        ),
    ):
        fail(call, req, grpc.StatusCode.NOT_FOUND, metadata=md)
    after_a = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=a), metadata=md, timeout=15)
    after_b = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=b), metadata=md, timeout=15)
    assert after_a == before_a and after_b == before_b
    # Another tenant's record id: refused and nothing written. (Found: the answer is PERMISSION_DENIED,
    # from RLS on the ON CONFLICT path, not NOT_FOUND, so it tells that the id exists somewhere.)
    with pytest.raises(grpc.RpcError) as info:
        stub.PutMedication(
            pb.PutMedicationRequest(patient_id=a, medication=med("aspirin", medication_id=f"{OTHER_PATIENT}-med-1")),
            metadata=md,
            timeout=15,
        )
    err: Any = info.value
    assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)
    assert stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=a), metadata=md, timeout=15) == before_a
    other = stub.GetHealthProfile(
        pb.GetHealthProfileRequest(patient_id=OTHER_PATIENT), metadata=svc.md(OTHER_ADVISOR), timeout=15
    )
    assert [m.generic_name for m in other.medications if m.medication_id == f"{OTHER_PATIENT}-med-1"] == ["lisinopril"]


def test_alert_feedback_and_override_rates(
    svc: Service, stub: Any, make_tenant: Callable[[], str], make_patient: Callable[..., str]
) -> None:
    tenant = make_tenant()  # its own tenant: the override rates below are exactly this test's feedback
    clinician = make_patient(tenant, role="CLINICAL_ADVISOR")
    patient = make_patient(tenant)
    md = svc.md(clinician)
    put_meds(stub, svc, patient, clinician, "warfarin", "ibuprofen")
    resp = evaluate(stub, svc, patient, clinician)
    ddi = next(a for a in resp.alerts if a.rule_id == "ddi-warfarin-nsaid")
    other = next(a for a in resp.alerts if a.rule_id != "ddi-warfarin-nsaid")

    def feedback(alert_id: str, outcome: int, reason: int = 0, comment: str = "", evaluation: str = "") -> Any:
        return pb.RecordAlertFeedbackRequest(
            evaluation_id=evaluation or resp.evaluation_id,
            alert_id=alert_id,
            outcome=outcome,
            reason=reason,
            comment=comment,
        )

    accepted = stub.RecordAlertFeedback(feedback(ddi.alert_id, pb.ACCEPTED), metadata=md, timeout=15)
    stub.RecordAlertFeedback(feedback(other.alert_id, pb.ACCEPTED), metadata=md, timeout=15)
    # One answer per alert of an evaluation and user; the next evaluation shows the same alert again.
    fail(
        stub.RecordAlertFeedback,
        feedback(ddi.alert_id, pb.OVERRIDDEN, pb.WILL_MONITOR),
        grpc.StatusCode.ALREADY_EXISTS,
        metadata=md,
    )
    again = evaluate(stub, svc, patient, clinician)
    assert ddi.alert_id in {a.alert_id for a in again.alerts}, "alert ids are stable for the same finding"
    overridden = stub.RecordAlertFeedback(
        feedback(ddi.alert_id, pb.OVERRIDDEN, pb.WILL_MONITOR, "INR checked weekly", evaluation=again.evaluation_id),
        metadata=md,
        timeout=15,
    )
    assert UUID_RE.match(accepted.feedback_id) and accepted.feedback_id != overridden.feedback_id

    details = fail(
        stub.RecordAlertFeedback, feedback(ddi.alert_id, pb.OVERRIDDEN), grpc.StatusCode.INVALID_ARGUMENT, metadata=md
    )
    assert details.startswith("reason")
    fail(
        stub.RecordAlertFeedback,
        feedback("al_000000000000000000000000", pb.ACCEPTED),
        grpc.StatusCode.NOT_FOUND,
        metadata=md,
    )
    fail(
        stub.RecordAlertFeedback,
        feedback(ddi.alert_id, pb.ACCEPTED, evaluation=str(uuid.uuid4())),
        grpc.StatusCode.NOT_FOUND,
        metadata=md,
    )
    assert fail(
        stub.RecordAlertFeedback, feedback(ddi.alert_id, 0), grpc.StatusCode.INVALID_ARGUMENT, metadata=md
    ).startswith("outcome")

    rates = stub.GetOverrideRates(pb.GetOverrideRatesRequest(since_days=30), metadata=md, timeout=15)
    by_rule = {r.rule_id: r for r in rates.rules}
    # Over the alerts shown (two evaluations), not over the answers: every rule that fired counts.
    assert set(by_rule) == {a.rule_id for a in resp.alerts}
    assert (by_rule[ddi.rule_id].shown, by_rule[ddi.rule_id].overridden) == (2, 1)
    assert by_rule[ddi.rule_id].override_rate == pytest.approx(0.5)
    assert (by_rule[other.rule_id].shown, by_rule[other.rule_id].overridden) == (2, 0)
    assert rates.rules[0].rule_id == ddi.rule_id, "most overridden first"
    # Another tenant's clinician sees none of it; a patient may not ask at all.
    theirs = stub.GetOverrideRates(pb.GetOverrideRatesRequest(), metadata=svc.md(OTHER_ADVISOR), timeout=15)
    assert not {ddi.rule_id, other.rule_id} & {r.rule_id for r in theirs.rules if r.shown >= 2}
    fail(
        stub.GetOverrideRates, pb.GetOverrideRatesRequest(), grpc.StatusCode.PERMISSION_DENIED, metadata=svc.md(patient)
    )


def test_get_signing_key(svc: Service, stub: Any) -> None:
    key = stub.GetSigningKey(pb.GetSigningKeyRequest(), metadata=svc.md(PARENT, mfa=False), timeout=15)
    assert key.algorithm == "Ed25519" and len(key.public_key) == 32
    assert key.public_key == svc.signing_public_key
    assert key.key_id.startswith("ed25519:") and "BEGIN PUBLIC KEY" in key.public_key_pem


# -- authentication and status codes ----------------------------------------------------------


def test_unauthenticated(svc: Service, stub: Any, tmp_path: Path) -> None:
    req = pb.EvaluateSafetyRequest(patient_id=PARENT)
    fail(stub.EvaluateSafety, req, grpc.StatusCode.UNAUTHENTICATED)
    fail(stub.EvaluateSafety, req, grpc.StatusCode.UNAUTHENTICATED, metadata=(("authorization", "Bearer garbage"),))
    fail(stub.EvaluateSafety, req, grpc.StatusCode.UNAUTHENTICATED, metadata=(("authorization", "Basic abc"),))
    fail(stub.GetSigningKey, pb.GetSigningKeyRequest(), grpc.StatusCode.UNAUTHENTICATED)
    assert "expired" in fail(
        stub.EvaluateSafety, req, grpc.StatusCode.UNAUTHENTICATED, metadata=svc.md(ADVISOR, ttl=-300)
    )
    assert "audience" in fail(
        stub.EvaluateSafety,
        req,
        grpc.StatusCode.UNAUTHENTICATED,
        metadata=svc.md(ADVISOR, audience="some-other-service"),
    )
    generate_dev_keypair(tmp_path / "other.pem", tmp_path / "other-pub.pem")
    assert "signature" in fail(
        stub.EvaluateSafety,
        req,
        grpc.StatusCode.UNAUTHENTICATED,
        metadata=svc.md(ADVISOR, key_file=tmp_path / "other.pem"),
    )
    fail(stub.EvaluateSafety, req, grpc.StatusCode.UNAUTHENTICATED, metadata=svc.md(ADVISOR, role="NOT_A_ROLE"))


def test_permission_denied(svc: Service, stub: Any) -> None:
    details = fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=PARENT),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=svc.md(ADVISOR, mfa=False),
    )
    assert "multi-factor" in details
    fail(
        stub.GetHealthProfile,
        pb.GetHealthProfileRequest(patient_id=PARENT),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=svc.md(PARENT, mfa=False),
    )
    fail(
        stub.PutMedication,
        pb.PutMedicationRequest(patient_id=PARENT, medication=med("aspirin")),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=svc.md(ADVISOR, mfa=False),
    )
    emergency = pb.EmergencyAccessRequest(patient_id=PARENT, reason_code=pb.ETREAT, reason_text="collapsed in clinic")
    assert "EmergencyAccess" in fail(
        stub.EmergencyAccess, emergency, grpc.StatusCode.PERMISSION_DENIED, metadata=svc.md(SPOUSE)
    )
    fail(stub.EmergencyAccess, emergency, grpc.StatusCode.PERMISSION_DENIED, metadata=svc.md(ADMIN))
    fail(
        stub.ListEmergencyAccessEvents,
        pb.ListEmergencyAccessEventsRequest(),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=svc.md(ADVISOR),
    )
    fail(
        stub.ReviewEmergencyAccessEvent,
        pb.ReviewEmergencyAccessEventRequest(grant_id="x", outcome="APPROPRIATE"),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=svc.md(ER),
    )


def test_not_found_is_the_same_for_missing_and_foreign_patients(svc: Service, stub: Any) -> None:
    md = svc.md(ADVISOR)
    missing = fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id="no-such-patient"),
        grpc.StatusCode.NOT_FOUND,
        metadata=md,
    )
    foreign = fail(
        stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id=OTHER_PATIENT), grpc.StatusCode.NOT_FOUND, metadata=md
    )
    assert missing == foreign
    for call, req in (
        (stub.GetHealthProfile, pb.GetHealthProfileRequest(patient_id=OTHER_PATIENT)),
        (stub.PutMedication, pb.PutMedicationRequest(patient_id=OTHER_PATIENT, medication=med("aspirin"))),
        (stub.PutCondition, pb.PutConditionRequest(patient_id=OTHER_PATIENT, condition=pb.Condition(name="x"))),
        (
            stub.EmergencyAccess,
            pb.EmergencyAccessRequest(patient_id=OTHER_PATIENT, reason_code=pb.BTG, reason_text="unconscious"),
        ),
    ):
        fail(call, req, grpc.StatusCode.NOT_FOUND, metadata=md)
    # ... and the other tenant's clinician sees their own patient but not ours.
    assert evaluate(stub, svc, OTHER_PATIENT, OTHER_ADVISOR).evaluation_id
    assert (
        fail(
            stub.EvaluateSafety,
            pb.EvaluateSafetyRequest(patient_id=PARENT),
            grpc.StatusCode.NOT_FOUND,
            metadata=svc.md(OTHER_ADVISOR),
        )
        == missing
    )


def test_invalid_argument_names_the_field(svc: Service, stub: Any) -> None:
    md = svc.md(ADVISOR)
    ev = stub.EvaluateSafety

    def bad(req: Any, field: str, call: Any = ev) -> None:
        details = fail(call, req, grpc.StatusCode.INVALID_ARGUMENT, metadata=md)
        assert details.startswith(field), details

    bad(pb.EvaluateSafetyRequest(patient_id=""), "patient_id")
    bad(pb.EvaluateSafetyRequest(patient_id="bad id with spaces"), "patient_id")
    bad(
        pb.EvaluateSafetyRequest(
            patient_id=PARENT, proposed_medications=[pb.ProposedMedication(name=f"drug{i}") for i in range(51)]
        ),
        "proposed_medications",
    )
    bad(pb.EvaluateSafetyRequest(patient_id=PARENT, proposed_foods=["apple"] * 201), "proposed_foods")
    bad(
        pb.EvaluateSafetyRequest(patient_id=PARENT, proposed_medications=[pb.ProposedMedication(name="warfarin\x00")]),
        "proposed_medications[0].name",
    )
    bad(
        pb.EvaluateSafetyRequest(
            patient_id=PARENT,
            proposed_medications=[pb.ProposedMedication(name="aspirin"), pb.ProposedMedication(name="x", dose="5\nmg")],
        ),
        "proposed_medications[1].dose",
    )
    bad(
        pb.EvaluateSafetyRequest(patient_id=PARENT, proposed_medications=[pb.ProposedMedication(name="  ")]),
        "proposed_medications[0].name",
    )
    bad(pb.EvaluateSafetyRequest(patient_id=PARENT, proposed_foods=["peanut\x07"]), "proposed_foods[0]")
    bad(
        pb.EvaluateSafetyRequest(patient_id=PARENT, proposed_medications=[pb.ProposedMedication(name="a" * 201)]),
        "proposed_medications[0].name",
    )

    er = svc.md(ER)
    for req, field in (
        (pb.EmergencyAccessRequest(patient_id=PARENT, reason_text="collapsed"), "reason_code"),
        (pb.EmergencyAccessRequest(patient_id=PARENT, reason_code=pb.BTG), "reason_text"),
        (pb.EmergencyAccessRequest(patient_id=PARENT, reason_code=pb.BTG, reason_text=" \t  "), "reason_text"),
        (pb.EmergencyAccessRequest(patient_id=PARENT, reason_code=pb.BTG, reason_text="x" * 1001), "reason_text"),
    ):
        assert fail(stub.EmergencyAccess, req, grpc.StatusCode.INVALID_ARGUMENT, metadata=er).startswith(field)

    bad(
        pb.PutAllergyRequest(patient_id=PARENT, allergy=pb.Allergy(allergen="x", category="FOOD", severity="BAD")),
        "allergy.severity",
        stub.PutAllergy,
    )
    bad(
        pb.PutAllergyRequest(patient_id=PARENT, allergy=pb.Allergy(allergen="x", category="?", severity="MILD")),
        "allergy.category",
        stub.PutAllergy,
    )
    bad(pb.PutMedicationRequest(patient_id=PARENT, medication=med("")), "medication.generic_name", stub.PutMedication)
    reading = pb.BiometricReading(reading_type="egfr", value=float("nan"))
    bad(pb.PutBiometricReadingRequest(patient_id=PARENT, reading=reading), "reading.value", stub.PutBiometricReading)
    bad(
        pb.PutBiometricReadingRequest(patient_id=PARENT, reading=pb.BiometricReading(reading_type="eGFR!", value=1)),
        "reading.reading_type",
        stub.PutBiometricReading,
    )
    assert fail(
        stub.ListEmergencyAccessEvents,
        pb.ListEmergencyAccessEventsRequest(page_token="not-a-token"),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(ADMIN),
    ).startswith("page_token")
    fail(
        stub.ListEmergencyAccessEvents,
        pb.ListEmergencyAccessEventsRequest(page_size=501),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(ADMIN),
    )
    fail(
        stub.ReviewEmergencyAccessEvent,
        pb.ReviewEmergencyAccessEventRequest(grant_id="g", outcome="FINE"),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(ADMIN),
    )


def test_unknown_enum_numbers_are_invalid_argument_not_internal(svc: Service, stub: Any) -> None:
    """Protobuf enums are open: a client may send a number this server does not know."""
    eid = evaluate(stub, svc, PARENT, ADVISOR).evaluation_id
    details = fail(
        stub.EmergencyAccess,
        pb.EmergencyAccessRequest(patient_id=PARENT, reason_code=77, reason_text="collapsed"),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=svc.md(ER),
    )
    assert details.startswith("reason_code")
    for outcome, reason, field in ((9, 0, "outcome"), (pb.OVERRIDDEN, 99, "reason")):
        req = pb.RecordAlertFeedbackRequest(
            evaluation_id=eid, alert_id="al_000000000000000000000000", outcome=outcome, reason=reason
        )
        assert fail(
            stub.RecordAlertFeedback, req, grpc.StatusCode.INVALID_ARGUMENT, metadata=svc.md(ADVISOR)
        ).startswith(field)


def test_oversized_request_is_resource_exhausted(svc: Service, stub: Any) -> None:
    big = "a" * (2 << 20)
    fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=PARENT, proposed_foods=[big]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        metadata=svc.md(ADVISOR),
    )
    # The connection is still good afterwards.
    assert evaluate(stub, svc, PARENT, ADVISOR).evaluation_id


def test_integrity_failure_is_data_loss_and_audited(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    patient = make_patient(TENANT)
    [mid] = put_meds(stub, svc, patient, ADVISOR, "warfarin")
    assert evaluate(stub, svc, patient, ADVISOR).evaluation_id
    # Someone with database access hides the medication behind the service's back.
    admin_exec(svc, "UPDATE healthcare.medications SET is_active = false WHERE id = :id", id=mid)
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
    rows = [r for r in audit_rows_for(svc, patient, "EVALUATE_SAFETY") if r["outcome"] == "DATA_LOSS"]
    assert len(rows) == 1
    assert "INTEGRITY_FAILURE" in rows[0]["compliance_flags"] and rows[0]["user_id"] == ADVISOR
    # A ciphertext moved to another row (same tenant, same key) fails its associated data: also DATA_LOSS.
    other = make_patient(TENANT)
    [a, b] = put_meds(stub, svc, other, ADVISOR, "aspirin", "metformin")
    admin_exec(
        svc,
        "UPDATE healthcare.medications SET encrypted_generic_name ="
        " (SELECT encrypted_generic_name FROM healthcare.medications WHERE id = :b) WHERE id = :a",
        a=a,
        b=b,
    )
    fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=other),
        grpc.StatusCode.DATA_LOSS,
        metadata=svc.md(ADVISOR),
    )


def test_unreachable_database_is_unavailable_and_not_serving(grpc_env: dict[str, str], svc: Service) -> None:
    env = dict(grpc_env, PRANEYA_APP_DATABASE_URL="postgresql+psycopg://praneya_app@127.0.0.1:1/praneya")
    with running_server(env, svc.ca) as broken, broken.channel() as channel:
        from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc

        s = pb_grpc.ClinicalSafetyStub(channel)
        details = fail(
            s.EvaluateSafety,
            pb.EvaluateSafetyRequest(patient_id=PARENT),
            grpc.StatusCode.UNAVAILABLE,
            metadata=svc.md(ADVISOR),
        )
        assert "database" in details
        fail(
            s.GetHealthProfile,
            pb.GetHealthProfileRequest(patient_id=PARENT),
            grpc.StatusCode.UNAVAILABLE,
            metadata=svc.md(ADVISOR),
        )
        fail(
            s.EmergencyAccess,
            pb.EmergencyAccessRequest(patient_id=PARENT, reason_code=pb.BTG, reason_text="found unconscious"),
            grpc.StatusCode.UNAVAILABLE,
            metadata=svc.md(ER),
        )
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        # Authentication still answers first: no token is UNAUTHENTICATED, not UNAVAILABLE.
        fail(s.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id=PARENT), grpc.StatusCode.UNAUTHENTICATED)


def test_a_cold_server_answers_its_first_evaluation(grpc_env: dict[str, str], svc: Service) -> None:
    """The first evaluation of a fresh process loads rules and knowledge inside the call's transaction,
    which must stay usable for the audit row written after it (regression: a streamed load switched the
    whole connection to server-side cursors and the audit INSERT failed with INTERNAL)."""
    from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc

    with running_server(grpc_env, svc.ca) as cold, cold.channel() as channel:
        s = pb_grpc.ClinicalSafetyStub(channel)
        resp = s.EvaluateSafety(pb.EvaluateSafetyRequest(patient_id=PARENT), metadata=svc.md(ADVISOR), timeout=30)
        assert any(a.rule_id == "ddi-warfarin-nsaid" for a in resp.alerts)
        assert audit_row(svc, resp.evaluation_id)["outcome"] == "SUCCESS"


class _Proxy:
    """A TCP relay to PostgreSQL that can be cut, so the database 'goes away' under a running server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.closed:
                    client.close()
                    return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            self.closed = True
        try:  # wakes the thread blocked in accept(); close() alone would leave the port listening
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


@contextmanager
def _proxied_server(grpc_env: dict[str, str], svc: Service) -> Iterator[tuple[Any, Any, _Proxy]]:
    from sqlalchemy.engine import make_url

    from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc

    url = make_url(grpc_env["PRANEYA_APP_DATABASE_URL"])
    proxy = _Proxy((url.host or "127.0.0.1", url.port or 5432))
    env = dict(grpc_env, PRANEYA_APP_DATABASE_URL=url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    try:
        with running_server(env, svc.ca, health_interval=0.2) as server, server.channel() as channel:
            yield pb_grpc.ClinicalSafetyStub(channel), health_pb2_grpc.HealthStub(channel), proxy
    finally:
        proxy.cut()


def test_health_turns_not_serving_when_the_database_goes_away(grpc_env: dict[str, str], svc: Service) -> None:
    with _proxied_server(grpc_env, svc) as (s, health, proxy):
        assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        assert s.EvaluateSafety(
            pb.EvaluateSafetyRequest(patient_id=PARENT), metadata=svc.md(ADVISOR), timeout=15
        ).evaluation_id
        proxy.cut()
        deadline = time.monotonic() + 15
        status = None
        while time.monotonic() < deadline:
            status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.1)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        fail(
            s.EvaluateSafety,
            pb.EvaluateSafetyRequest(patient_id=PARENT),
            grpc.StatusCode.UNAVAILABLE,
            metadata=svc.md(ADVISOR),
        )


# -- audit ------------------------------------------------------------------------------------------


def test_one_audit_row_per_evaluation(svc: Service, stub: Any, keys: KeyStore) -> None:
    resp = evaluate(stub, svc, PARENT, ADVISOR, proposed_medications=[pb.ProposedMedication(name="aspirin")])
    row = audit_row(svc, resp.evaluation_id)
    assert (row["action"], row["outcome"], row["user_id"], row["patient_id"], row["tenant_id"]) == (
        "EVALUATE_SAFETY",
        "SUCCESS",
        ADVISOR,
        PARENT,
        TENANT,
    )
    assert row["phi_accessed"] is True and "PHI_READ" in row["compliance_flags"]
    details = row["details"]
    counts: dict[str, int] = {}
    for a in resp.alerts:
        counts[pb.Severity.Name(a.severity)] = counts.get(pb.Severity.Name(a.severity), 0) + 1
    assert {k: v for k, v in details["alert_counts"].items() if v} == counts
    assert details["alert_ids"] == [a.alert_id for a in resp.alerts]
    assert details["incomplete_rule_count"] == len(resp.incomplete_rules)
    assert details["ruleset_version"] == resp.ruleset_version
    assert details["knowledge_version"] == resp.knowledge_version
    assert details["complete"] == resp.complete and details["proposed_medications"] == 1
    assert row["ip_address"] and "127.0.0.1" in row["ip_address"]
    assert row["user_agent"] and USER_AGENT in row["user_agent"]
    # No plaintext anywhere in the row: not the patient's drugs, not the proposed drug's name, not
    # allergens or names, and not the rule ids (which name drugs): those are sealed with the tenant key.
    plain = json.dumps({**row, "details": {k: v for k, v in details.items() if k != "sealed_rules"}}, default=str)
    assert phi_in(plain) == [], plain
    assert "aspirin" not in plain.lower() and "ddi-" not in plain
    with svc.admin.connect() as conn:
        ring = keys.keyring(conn, TENANT)
        sealed = json.loads(
            ring.decrypt("audit.audit_logs", "sealed_rules", resp.evaluation_id, details["sealed_rules"])
        )
    assert [(a["alert_id"], a["rule_id"], a["severity"]) for a in sealed["alerts"]] == [
        (a.alert_id, a.rule_id, pb.Severity.Name(a.severity)) for a in resp.alerts
    ]
    assert [r["rule_id"] for r in sealed["incomplete_rules"]] == [r.rule_id for r in resp.incomplete_rules]
    with svc.admin.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM audit.audit_logs WHERE details->>'request_id' = :r"),
            {"r": details["request_id"]},
        ).scalar_one()
    assert n == 1, "exactly one audit row for the call"


def test_evaluation_audit_rows_carry_no_drug_name_at_all(svc: Service, stub: Any) -> None:
    """Rule ids such as 'ddi-warfarin-nsaid' or 'allergy-food-peanut' next to a patient id disclose the
    patient's medications and allergies (regression: they were stored in the clear)."""
    for patient, extra in ((PARENT, {}), (CHILD, {"proposed_foods": ["peanut"]}), (SPOUSE, {})):
        resp = evaluate(stub, svc, patient, ADVISOR, **extra)
        assert resp.alerts
        row = audit_row(svc, resp.evaluation_id)
        row["details"].pop("sealed_rules")  # ciphertext: scanning it for words would only find chance matches
        assert phi_in(json.dumps(row, default=str)) == []
        assert not any(a.rule_id in json.dumps(row, default=str) for a in resp.alerts)


def test_failed_calls_are_audited(svc: Service, stub: Any) -> None:
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=ghost),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(ADVISOR),
    )
    [row] = audit_rows_for(svc, ghost, "EVALUATE_SAFETY")
    assert (row["outcome"], row["user_id"], row["tenant_id"]) == ("NOT_FOUND", ADVISOR, TENANT)
    assert "FAILED_CALL" in row["compliance_flags"] and row["phi_accessed"] is False
    fail(
        stub.EmergencyAccess,
        pb.EmergencyAccessRequest(patient_id=ghost, reason_code=pb.BTG, reason_text="found unconscious"),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(ER),
    )
    [er_row] = audit_rows_for(svc, ghost, "EMERGENCY_ACCESS")
    assert (er_row["outcome"], er_row["user_id"]) == ("NOT_FOUND", ER)


def test_audit_chain_verifies(
    svc: Service, stub: Any, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluate(stub, svc, PARENT, ADVISOR)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        mp.setenv("PRANEYA_SIGNING_KEY_FILE", svc.env["PRANEYA_SIGNING_KEY_FILE"])
        mp.setenv("PRANEYA_MASTER_KEY_FILE", svc.env["PRANEYA_MASTER_KEY_FILE"])
        # This test's own anchor, and this service's tenant: other tests of the worker's database plant
        # forged seals on purpose (tests/test_rls_isolation.py), which seal now rightly refuses.
        mp.setenv("PRANEYA_AUDIT_ANCHOR", str(tmp_path / "anchor.jsonl"))
        assert praneya(["audit", "seal", "--tenant", TENANT]) == 0, capsys.readouterr()
        capsys.readouterr()
        assert praneya(["audit", "verify", "--tenant", TENANT]) == 0, capsys.readouterr()


# -- tenants, families and consents -------------------------------------------------------------


def test_family_and_consent_table(svc: Service, stub: Any) -> None:
    me = svc.md(PARENT)  # END_USER with MFA
    assert evaluate(stub, svc, PARENT, PARENT).evaluation_id
    own = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=PARENT), metadata=me, timeout=15)
    assert {m.generic_name for m in own.medications} >= {"warfarin", "ibuprofen"}
    # Their minor child (guardian consent, parent is an ADMIN member with can_view_health_data).
    child = evaluate(stub, svc, CHILD, PARENT, proposed_foods=["peanut"])
    assert any(a.kind == pb.FOOD_ALLERGY for a in child.alerts)
    assert stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=CHILD), metadata=me, timeout=15).allergies
    # The spouse's consent covers MEDICATIONS and ALLERGIES only, not PROFILE: the health profile row
    # is hidden by RLS (health_profiles needs PROFILE), so the whole record is NOT_FOUND.
    hidden = fail(
        stub.GetHealthProfile, pb.GetHealthProfileRequest(patient_id=SPOUSE), grpc.StatusCode.NOT_FOUND, metadata=me
    )
    assert hidden == fail(
        stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id=SPOUSE), grpc.StatusCode.NOT_FOUND, metadata=me
    )
    # The child cannot see a parent; the spouse (no consent from the parent) cannot see the parent.
    fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=PARENT),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(CHILD),
    )
    fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=PARENT),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(SPOUSE),
    )
    # An END_USER cannot write another member's records.
    fail(
        stub.PutMedication,
        pb.PutMedicationRequest(patient_id=SPOUSE, medication=med("aspirin")),
        grpc.StatusCode.NOT_FOUND,
        metadata=me,
    )

    # The spouse revokes her consent over gRPC, and grants an equivalent new one.
    spouse = svc.md(SPOUSE)
    assert stub.RevokeConsent(
        pb.RevokeConsentRequest(consent_id="demo-consent-01"), metadata=spouse, timeout=15
    ).revoked
    fail(
        stub.RevokeConsent,
        pb.RevokeConsentRequest(consent_id="demo-consent-01"),
        grpc.StatusCode.NOT_FOUND,
        metadata=spouse,
    )
    with svc.admin.connect() as conn:
        assert conn.execute(
            text("SELECT revoked_at IS NOT NULL FROM healthcare.consents WHERE id = 'demo-consent-01'")
        ).scalar_one()
    new = stub.GrantConsent(
        pb.GrantConsentRequest(
            grantee_user_id=PARENT,
            categories=["medications", "ALLERGIES"],
            expires_in_days=365,
            purpose="family care coordination",
        ),
        metadata=spouse,
        timeout=15,
    ).consent_id
    with svc.admin.connect() as conn:
        row = conn.execute(
            text(
                "SELECT subject_user_id, grantee_user_id, categories::text[] AS c, revoked_at"
                " FROM healthcare.consents WHERE id = :id"
            ),
            {"id": new},
        ).one()
    assert (row.subject_user_id, row.grantee_user_id, sorted(row.c), row.revoked_at) == (
        SPOUSE,
        PARENT,
        ["ALLERGIES", "MEDICATIONS"],
        None,
    )
    # Only the subject may revoke it.
    fail(stub.RevokeConsent, pb.RevokeConsentRequest(consent_id=new), grpc.StatusCode.NOT_FOUND, metadata=me)
    assert fail(
        stub.GrantConsent,
        pb.GrantConsentRequest(grantee_user_id=PARENT, categories=["DIARY"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=spouse,
    ).startswith("categories")


def _family(svc: Service, keys: KeyStore, tenant: str, members: list[tuple[str, str, str, bool]]) -> None:
    family = f"fam-{uuid.uuid4().hex[:10]}"
    with svc.admin.begin() as conn:
        create_family(conn, keys, tenant, family, members[0][0], None)
        for user, relationship, level, can_view in members:
            add_family_member(conn, tenant, family, user, relationship, level, can_view)


def test_consent_over_grpc_opens_and_closes_access(
    svc: Service, stub: Any, make_patient: Callable[..., str], keys: KeyStore
) -> None:
    a, b = make_patient(TENANT), make_patient(TENANT)
    _family(svc, keys, TENANT, [(a, "SELF", "ADMIN", True), (b, "SPOUSE", "MEMBER", True)])
    put_meds(stub, svc, b, ADVISOR, "metformin")
    fail(stub.GetHealthProfile, pb.GetHealthProfileRequest(patient_id=b), grpc.StatusCode.NOT_FOUND, metadata=svc.md(a))
    every = ["PROFILE", "MEDICATIONS", "ALLERGIES", "CONDITIONS", "BIOMETRICS"]
    cid = stub.GrantConsent(
        pb.GrantConsentRequest(grantee_user_id=a, categories=every), metadata=svc.md(b), timeout=15
    ).consent_id
    seen = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=b), metadata=svc.md(a), timeout=15)
    assert [m.generic_name for m in seen.medications] == ["metformin"]
    assert evaluate(stub, svc, b, a).evaluation_id
    assert stub.RevokeConsent(pb.RevokeConsentRequest(consent_id=cid), metadata=svc.md(b), timeout=15).revoked
    fail(stub.GetHealthProfile, pb.GetHealthProfileRequest(patient_id=b), grpc.StatusCode.NOT_FOUND, metadata=svc.md(a))


def test_partial_consent_is_not_reported_as_data_loss(
    svc: Service, stub: Any, make_patient: Callable[..., str], keys: KeyStore
) -> None:
    """A consent covering the profile but not every category must not look like tampering."""
    a, b = make_patient(TENANT), make_patient(TENANT)
    _family(svc, keys, TENANT, [(a, "SELF", "ADMIN", True), (b, "SPOUSE", "MEMBER", True)])
    put_meds(stub, svc, b, ADVISOR, "metformin")
    stub.PutCondition(
        pb.PutConditionRequest(patient_id=b, condition=pb.Condition(name="diabetes", code="E11")),
        metadata=svc.md(ADVISOR),
        timeout=15,
    )
    stub.GrantConsent(
        pb.GrantConsentRequest(grantee_user_id=a, categories=["PROFILE", "MEDICATIONS"]), metadata=svc.md(b), timeout=15
    )
    # The consent covers the profile and medications: those are shown (and verified), the rest withheld.
    seen = stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=b), metadata=svc.md(a), timeout=15)
    assert [m.generic_name for m in seen.medications] == ["metformin"] and not seen.conditions
    assert list(seen.withheld_categories) == ["ALLERGIES", "BIOMETRICS", "CONDITIONS"]
    flagged = [r for r in audit_rows_for(svc, b, "READ_HEALTH_PROFILE") if "INTEGRITY_FAILURE" in r["compliance_flags"]]
    assert flagged == []
    # Evaluating on what the consent shows would miss what it hides: refused, naming what is missing.
    details = fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=b),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=svc.md(a),
    )
    assert "ALLERGIES, CONDITIONS" in details


# -- break the glass ------------------------------------------------------------------------------


def test_break_the_glass_end_to_end(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    er = svc.md(ER)
    req = pb.EvaluateSafetyRequest(patient_id=PARENT)
    # Make sure no grant from an earlier run of this test in this session is still active.
    admin_exec(
        svc,
        "UPDATE healthcare.emergency_access_grants SET expires_at = granted_at + interval '1 second'"
        " WHERE grantee_user_id = :er AND patient_user_id = :p AND expires_at > now()",
        er=ER,
        p=PARENT,
    )
    before = fail(stub.EvaluateSafety, req, grpc.StatusCode.NOT_FOUND, metadata=er)
    assert before == fail(
        stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id="nobody"), grpc.StatusCode.NOT_FOUND, metadata=er
    )
    # Refused without a reason, and for an END_USER.
    fail(
        stub.EmergencyAccess,
        pb.EmergencyAccessRequest(patient_id=PARENT, reason_code=pb.ETREAT),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=er,
    )
    fail(
        stub.EmergencyAccess,
        pb.EmergencyAccessRequest(patient_id=PARENT, reason_code=pb.ETREAT, reason_text="collapsed"),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=svc.md(SPOUSE),
    )
    fail(
        stub.EmergencyAccess,
        pb.EmergencyAccessRequest(patient_id=PARENT, reason_code=pb.ETREAT, reason_text="collapsed"),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=svc.md(ER, mfa=False),
    )

    resp = stub.EmergencyAccess(
        pb.EmergencyAccessRequest(
            patient_id=PARENT,
            reason_code=pb.ETREAT,
            reason_text="unresponsive on arrival, on anticoagulants per family",
        ),
        metadata=er,
        timeout=15,
    )
    minutes = svc.settings.emergency_grant_minutes
    expires = resp.expires_at.ToDatetime(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(minutes=minutes))) < timedelta(minutes=2)
    # Critical means SEVERE or ANAPHYLACTIC: the penicillin anaphylaxis and the severe shellfish allergy.
    allergies = {a.allergen: a for a in resp.critical_allergies}
    assert {(a.allergen, a.severity, a.category) for a in resp.critical_allergies} == {
        ("penicillin", "ANAPHYLACTIC", "DRUG"),
        ("shellfish", "SEVERE", "FOOD"),
    }
    assert list(allergies["penicillin"].reactions) == ["anaphylaxis", "hives"]
    assert allergies["penicillin"].emergency_medication == "epinephrine 0.3 mg IM"
    assert {m.name for m in resp.active_medications} == {"warfarin", "ibuprofen", "simvastatin"}
    assert {c.name for c in resp.active_conditions} >= {"atrial fibrillation"}
    assert UUID_RE.match(resp.grant_id) or resp.grant_id
    audit = audit_row(svc, resp.audit_id)
    assert audit["user_id"] == ER and audit["patient_id"] == PARENT
    assert "BREAK_GLASS" in audit["compliance_flags"]
    assert phi_in(json.dumps(audit, default=str)) == []

    # While the grant lasts, the responder may evaluate the patient (flagged as emergency access).
    during = stub.EvaluateSafety(req, metadata=er, timeout=15)
    assert any(a.rule_id == "ddi-warfarin-nsaid" for a in during.alerts)
    assert "EMERGENCY_ACCESS" in audit_row(svc, during.evaluation_id)["compliance_flags"]

    # It shows in the review queue, and can be reviewed once.
    admin = svc.md(ADMIN)
    queue = stub.ListEmergencyAccessEvents(
        pb.ListEmergencyAccessEventsRequest(unreviewed_only=True), metadata=admin, timeout=15
    )
    [event] = [e for e in queue.events if e.grant_id == resp.grant_id]
    assert (event.patient_id, event.grantee_user_id, event.reason_code) == (PARENT, ER, pb.ETREAT)
    assert event.reason_text.startswith("unresponsive on arrival") and not event.review_outcome
    reviewed = stub.ReviewEmergencyAccessEvent(
        pb.ReviewEmergencyAccessEventRequest(grant_id=resp.grant_id, outcome="APPROPRIATE", notes="documented"),
        metadata=admin,
        timeout=15,
    ).event
    assert (reviewed.review_outcome, reviewed.reviewed_by) == ("APPROPRIATE", ADMIN)
    assert reviewed.reviewed_at.ToSeconds() > 0  # set (a timestamp, not a duration)
    after = stub.ListEmergencyAccessEvents(
        pb.ListEmergencyAccessEventsRequest(unreviewed_only=True, page_size=500), metadata=admin, timeout=15
    )
    assert resp.grant_id not in {e.grant_id for e in after.events}
    everything = stub.ListEmergencyAccessEvents(
        pb.ListEmergencyAccessEventsRequest(page_size=500), metadata=admin, timeout=15
    )
    assert resp.grant_id in {e.grant_id for e in everything.events}
    fail(
        stub.ReviewEmergencyAccessEvent,
        pb.ReviewEmergencyAccessEventRequest(grant_id=str(uuid.uuid4()), outcome="APPROPRIATE"),
        grpc.StatusCode.NOT_FOUND,
        metadata=admin,
    )
    # Another tenant's admin sees none of it.
    rv_admin = svc.md(make_patient(OTHER_TENANT, role="SUPER_ADMIN"))
    theirs = stub.ListEmergencyAccessEvents(
        pb.ListEmergencyAccessEventsRequest(page_size=500), metadata=rv_admin, timeout=15
    )
    assert resp.grant_id not in {e.grant_id for e in theirs.events}

    # The grant ends by itself when it expires.
    admin_exec(
        svc,
        "UPDATE healthcare.emergency_access_grants SET granted_at = now() - interval '2 hours',"
        " expires_at = now() - interval '1 hour' WHERE id = :id",
        id=resp.grant_id,
    )
    assert fail(stub.EvaluateSafety, req, grpc.StatusCode.NOT_FOUND, metadata=er) == before


def test_emergency_access_for_a_fresh_patient_and_pagination(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    responder = make_patient(TENANT, role="EMERGENCY_RESPONDER")
    stub.PutAllergy(
        pb.PutAllergyRequest(
            patient_id=patient,
            allergy=pb.Allergy(allergen="latex", category="LATEX", severity="SEVERE", reactions=["wheeze"]),
        ),
        metadata=svc.md(ADVISOR),
        timeout=15,
    )
    stub.PutAllergy(
        pb.PutAllergyRequest(
            patient_id=patient, allergy=pb.Allergy(allergen="strawberry", category="FOOD", severity="MILD")
        ),
        metadata=svc.md(ADVISOR),
        timeout=15,
    )
    stub.PutMedication(
        pb.PutMedicationRequest(patient_id=patient, medication=med("glucagon", is_emergency_medication=True)),
        metadata=svc.md(ADVISOR),
        timeout=15,
    )
    grants = []
    for code in (pb.BTG, pb.ETREAT, pb.BTG):
        r = stub.EmergencyAccess(
            pb.EmergencyAccessRequest(patient_id=patient, reason_code=code, reason_text="found unconscious"),
            metadata=svc.md(responder),
            timeout=15,
        )
        assert [a.allergen for a in r.critical_allergies] == ["latex"], "only SEVERE and ANAPHYLACTIC are critical"
        assert [m.name for m in r.emergency_medications] == ["glucagon"]
        grants.append(r.grant_id)
    # Page through the queue two at a time: every grant appears exactly once.
    seen: list[str] = []
    token = ""
    for _ in range(1000):
        page = stub.ListEmergencyAccessEvents(
            pb.ListEmergencyAccessEventsRequest(page_size=2, page_token=token), metadata=svc.md(ADMIN), timeout=15
        )
        assert len(page.events) <= 2
        seen += [e.grant_id for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert set(grants) <= set(seen)


# -- health, reflection ---------------------------------------------------------------------------


def test_health_and_reflection_need_no_token(svc: Service) -> None:
    health = health_pb2_grpc.HealthStub(svc.channel)
    for name in ("", SERVICE):
        assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

    refl = reflection_pb2_grpc.ServerReflectionStub(svc.channel)
    [answer] = list(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    )
    names = {s.name for s in answer.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    [desc] = list(
        refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]), timeout=10
        )
    )
    assert desc.file_descriptor_response.file_descriptor_proto


def test_plaintext_client_cannot_talk_to_the_tls_port(svc: Service) -> None:
    from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc

    with grpc.insecure_channel(svc.address) as channel:
        s = pb_grpc.ClinicalSafetyStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            s.GetSigningKey(pb.GetSigningKeyRequest(), metadata=svc.md(ADVISOR), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


# -- never UNKNOWN, no PHI in logs ----------------------------------------------------------------


def test_odd_requests_never_get_unknown_or_internal(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    md = svc.md(ADVISOR)
    scratch = make_patient(TENANT)  # writes go to a patient of this test's own
    odd: list[tuple[Any, Any, Any]] = [
        (stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id=PARENT, recipe_id="no-such-recipe"), md),
        (stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id="é" * 10), md),
        (stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id="x" * 129), md),
        (
            stub.EvaluateSafety,
            pb.EvaluateSafetyRequest(
                patient_id=PARENT, proposed_medications=[pb.ProposedMedication(name="ẅarfarin ☃ 5 mg")]
            ),
            md,
        ),
        (stub.GetHealthProfile, pb.GetHealthProfileRequest(patient_id="' OR 1=1 --"), md),
        (stub.PutMedication, pb.PutMedicationRequest(patient_id=scratch), md),
        (
            stub.PutMedication,
            pb.PutMedicationRequest(patient_id=scratch, medication=med("aspirin", medication_id="zz-unknown")),
            md,
        ),
        (stub.DeactivateMedication, pb.DeactivateMedicationRequest(patient_id=scratch, medication_id="nope"), md),
        (stub.PutAllergy, pb.PutAllergyRequest(patient_id=scratch), md),
        (stub.PutCondition, pb.PutConditionRequest(patient_id=scratch), md),
        (stub.PutBiometricReading, pb.PutBiometricReadingRequest(patient_id=scratch), md),
        (stub.GrantConsent, pb.GrantConsentRequest(grantee_user_id=ADVISOR, categories=[]), svc.md(SPOUSE)),
        (stub.GrantConsent, pb.GrantConsentRequest(grantee_user_id=SPOUSE, categories=["PROFILE"]), svc.md(SPOUSE)),
        (
            stub.GrantConsent,
            pb.GrantConsentRequest(grantee_user_id=OTHER_PATIENT, categories=["PROFILE"]),
            svc.md(SPOUSE),
        ),
        (
            stub.GrantConsent,
            pb.GrantConsentRequest(grantee_user_id=PARENT, categories=["PROFILE"], expires_in_days=-1),
            svc.md(SPOUSE),
        ),
        (stub.RevokeConsent, pb.RevokeConsentRequest(consent_id="nope"), svc.md(SPOUSE)),
        (stub.RecordAlertFeedback, pb.RecordAlertFeedbackRequest(), md),
        (stub.GetOverrideRates, pb.GetOverrideRatesRequest(since_days=-5), md),
        (stub.ListEmergencyAccessEvents, pb.ListEmergencyAccessEventsRequest(page_size=-1), svc.md(ADMIN)),
        (stub.ListEmergencyAccessEvents, pb.ListEmergencyAccessEventsRequest(page_token="WzEsMl0="), svc.md(ADMIN)),
        (stub.ListEmergencyAccessEvents, pb.ListEmergencyAccessEventsRequest(page_token="e30="), svc.md(ADMIN)),
        (stub.ReviewEmergencyAccessEvent, pb.ReviewEmergencyAccessEventRequest(), svc.md(ADMIN)),
    ]
    bad: list[str] = []
    for call, req, meta in odd:
        try:
            call(req, metadata=meta, timeout=15)
        except grpc.RpcError as err:
            e: Any = err
            if e.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
                bad.append(f"{type(req).__name__}: {e.code()} {e.details()}")
            assert phi_in(e.details() or "") == []
    assert bad == []


def test_no_phi_in_logs(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    # PHI-heavy traffic of every kind first (successes, failures, rejected tokens), then the logs.
    evaluate(
        stub,
        svc,
        PARENT,
        ADVISOR,
        proposed_medications=[pb.ProposedMedication(name="phenelzine")],
        proposed_foods=["peanut"],
    )
    patient = make_patient(TENANT, first_name="Maria")
    put_meds(stub, svc, patient, ADVISOR, "warfarin", "Coumadin")
    stub.EmergencyAccess(
        pb.EmergencyAccessRequest(patient_id=CHILD, reason_code=pb.BTG, reason_text="peanut anaphylaxis, Jimmy Doe"),
        metadata=svc.md(make_patient(TENANT, role="EMERGENCY_RESPONDER")),
        timeout=15,
    )
    for req in (
        pb.EvaluateSafetyRequest(patient_id=PARENT, proposed_medications=[pb.ProposedMedication(name="warfarin\x01")]),
        pb.EvaluateSafetyRequest(patient_id="probe-7f3a-request-value"),
    ):
        with pytest.raises(grpc.RpcError):
            stub.EvaluateSafety(req, metadata=svc.md(ADVISOR), timeout=15)
    with pytest.raises(grpc.RpcError):
        stub.EvaluateSafety(
            pb.EvaluateSafetyRequest(patient_id=PARENT),
            metadata=(("authorization", "Bearer warfarin.penicillin.John"),),
            timeout=15,
        )
    assert any('"rpc":"EvaluateSafety"' in line for line in svc.logs), "the server's logs are being captured"
    leaks = [(phi_in(line), line) for line in list(svc.logs) if phi_in(line)]
    assert leaks == []
    assert not any("probe-7f3a-request-value" in line for line in svc.logs), "request values are not logged"


def test_dob_round_trip_and_age(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    patient = make_patient(TENANT, dob=date(2000, 1, 1))
    profile = stub.GetHealthProfile(
        pb.GetHealthProfileRequest(patient_id=patient), metadata=svc.md(ADVISOR), timeout=15
    )
    today = date.today()
    assert profile.age == today.year - 2000 - (1 if (today.month, today.day) < (1, 1) else 0)


# -- a well-signed token is not enough -------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "tenant", "role"),
    [
        (OTHER_ADVISOR, TENANT, "CLINICAL_ADVISOR"),  # a real user, claiming another tenant
        (PARENT, TENANT, "CLINICAL_ADVISOR"),  # a real patient, claiming a clinician's role
        ("nobody-at-all", TENANT, "SUPER_ADMIN"),  # no such user
    ],
    ids=["other-tenant", "escalated-role", "unknown-user"],
)
def test_a_token_must_match_an_active_user_of_its_tenant(
    svc: Service, stub: Any, user: str, tenant: str, role: str
) -> None:
    md = svc.md(user, tenant=tenant, role=role)
    fail(stub.EvaluateSafety, pb.EvaluateSafetyRequest(patient_id=PARENT), grpc.StatusCode.UNAUTHENTICATED, metadata=md)
    fail(
        stub.GetHealthProfile,
        pb.GetHealthProfileRequest(patient_id=PARENT),
        grpc.StatusCode.UNAUTHENTICATED,
        metadata=md,
    )
    fail(
        stub.PutCondition,
        pb.PutConditionRequest(patient_id=PARENT, condition=pb.Condition(name="gout")),
        grpc.StatusCode.UNAUTHENTICATED,
        metadata=md,
    )


def test_updating_a_record_of_another_patient_or_tenant_is_not_found(svc: Service, stub: Any) -> None:
    md = svc.md(ADVISOR)

    def put(record_id: str) -> str:
        med = pb.Medication(medication_id=record_id, generic_name="aspirin")
        return fail(
            stub.PutMedication,
            pb.PutMedicationRequest(patient_id=PARENT, medication=med),
            grpc.StatusCode.NOT_FOUND,
            metadata=md,
        )

    other_tenant = put(f"{OTHER_PATIENT}-med-1")  # exists, in another tenant
    other_patient = put(f"{SPOUSE}-med-1")  # exists, same tenant, another patient
    unknown = put("med-that-does-not-exist")
    assert other_tenant == other_patient == unknown


def test_metrics_count_evaluations_alerts_and_codes(svc: Service, stub: Any) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    evaluations = sample("praneya_evaluation_seconds_count")
    high = sample("praneya_alerts_total", severity="HIGH")
    not_found = sample("praneya_rpcs_total", method="EvaluateSafety", code="NOT_FOUND")
    resp = evaluate(stub, svc, PARENT, ADVISOR)
    fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id="nobody"),
        grpc.StatusCode.NOT_FOUND,
        metadata=svc.md(ADVISOR),
    )
    assert sample("praneya_evaluation_seconds_count") == evaluations + 1
    highs = sum(1 for a in resp.alerts if a.severity == pb.HIGH)
    assert sample("praneya_alerts_total", severity="HIGH") == high + highs
    assert sample("praneya_rpcs_total", method="EvaluateSafety", code="NOT_FOUND") == not_found + 1


def test_mutual_tls_refuses_a_client_without_a_certificate(grpc_env: dict[str, str], svc: Service) -> None:
    folder = Path(grpc_env["DEV_FOLDER"])
    env = dict(grpc_env, PRANEYA_TLS_CLIENT_CA_FILE=str(folder / "ca.pem"), PRANEYA_TLS_REQUIRE_CLIENT_CERT="1")
    with running_server(env, svc.ca) as mtls:
        check = health_pb2.HealthCheckRequest(service="")
        with mtls.channel() as anonymous:  # server-verified TLS, but no client certificate
            with pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(anonymous).Check(check, timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        creds = grpc.ssl_channel_credentials(
            root_certificates=svc.ca,
            private_key=(folder / "client-key.pem").read_bytes(),
            certificate_chain=(folder / "client.pem").read_bytes(),
        )
        with grpc.secure_channel(mtls.address, creds) as identified:
            status = health_pb2_grpc.HealthStub(identified).Check(check, timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING

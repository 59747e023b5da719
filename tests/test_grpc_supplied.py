"""FHIR over gRPC: EvaluateSuppliedData evaluates patient data the caller holds (a Synthea bundle)
without reading or storing a record, audited by digest and counts, signed; EvaluateSafety takes FHIR
draft orders beside its proposed medications. A real server over TLS, PostgreSQL as praneya_app.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.app.supplied import digest_of
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.verify import signed_content, verify_response
from store.config import PROJECT_ROOT
from tests.fix_grpc import Service, answer
from tests.test_grpc_coded import rxnorm_ingredient
from tests.test_grpc_service import ADVISOR, SPOUSE, admin_exec, audit_row, evaluate, fail

pytestmark = pytest.mark.db

CLEO = json.loads((PROJECT_ROOT / "tests" / "data" / "fhir" / "synthea-cleo-friesen.json").read_text())
CLEO_ID = "f49a43d9-bb72-4b37-a4a6-70df40c40c92"
WARFARIN_ORDER = "MedicationRequest/5e27078a-3ea4-4def-9062-7ed28709e683"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
# The bundle's own words that must never reach an audit row or an error (its name, its drugs).
BUNDLE_WORDS = ("Cleo", "Friesen", "Warfarin", "Digoxin", "Verapamil", CLEO_ID)


def draft_orders(name: str, order_id: str = "draft-1") -> dict[str, Any]:
    """A draft MedicationRequest coded by the shipped table's RXCUI of the ingredient."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": order_id,
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": f"Patient/{CLEO_ID}"},
                    "medicationCodeableConcept": {
                        "coding": [{"system": RXNORM, "code": rxnorm_ingredient(name)}],
                        "text": name,
                    },
                }
            }
        ],
    }


def supplied(stub: Any, svc: Service, user: str = ADVISOR, **req: Any) -> Any:
    return stub.EvaluateSuppliedData(pb.EvaluateSuppliedDataRequest(**req), metadata=svc.md(user), timeout=20)


def _medication_rows(svc: Service) -> int:
    return int(admin_exec(svc, "SELECT count(*) FROM healthcare.medications").scalar_one())


def test_a_synthea_patient_is_evaluated_without_a_record_and_audited_by_digest(grpc_service: Service) -> None:
    stub = grpc_service.stub()
    before = _medication_rows(grpc_service)
    patient = json.dumps(CLEO).encode()
    orders = json.dumps(draft_orders("ibuprofen")).encode()
    resp = supplied(stub, grpc_service, patient_data=patient, draft_orders=orders)

    # Warfarin (in the record) with ibuprofen (the draft order): the bleeding interaction, naming both.
    hits = [
        a
        for a in resp.alerts
        if a.kind == pb.DRUG_DRUG_INTERACTION and "MedicationRequest/draft-1" in a.involved_item_ids
    ]
    assert hits, [(pb.AlertKind.Name(a.kind), a.summary, list(a.involved_item_ids)) for a in resp.alerts]
    assert any(WARFARIN_ORDER in a.involved_item_ids and a.severity >= pb.HIGH for a in hits)
    # Signed like any evaluation, for the caller's reference of the patient.
    key = stub.GetSigningKey(pb.GetSigningKeyRequest(), metadata=grpc_service.md(ADVISOR), timeout=10)
    assert verify_response(resp, key.public_key, f"Patient/{CLEO_ID}")
    doc = signed_content(resp, f"Patient/{CLEO_ID}")
    assert doc["patient_id"] == f"Patient/{CLEO_ID}" and doc["evaluation_id"] == resp.evaluation_id

    # Nothing stored; the audit row holds a digest and counts, no patient id and none of the content.
    assert _medication_rows(grpc_service) == before
    row = audit_row(grpc_service, resp.evaluation_id)
    assert row["action"] == "EVALUATE_SUPPLIED" and row["outcome"] == "SUCCESS"
    assert row["patient_id"] is None and row["phi_accessed"] is False
    assert "SUPPLIED_DATA" in row["compliance_flags"]
    details = row["details"]
    assert details["supplied_digest"] == digest_of(CLEO, draft_orders("ibuprofen"))
    assert details["supplied_counts"]["MedicationRequest"] == 6 and details["supplied_counts"]["draft_orders"] == 1
    text = json.dumps(row, default=str)
    for word in BUNDLE_WORDS:
        assert word.lower() not in text.lower(), word


def test_the_same_data_gives_the_same_alerts_and_a_changed_record_another_digest(grpc_service: Service) -> None:
    stub = grpc_service.stub()
    first = supplied(stub, grpc_service, patient_data=json.dumps(CLEO).encode())
    second = supplied(stub, grpc_service, patient_data=json.dumps(CLEO).encode())
    assert [a.alert_id for a in first.alerts] == [a.alert_id for a in second.alerts]
    changed = copy.deepcopy(CLEO)
    changed["entry"] = [e for e in changed["entry"] if e["resource"].get("id") != WARFARIN_ORDER.split("/")[1]]
    third = supplied(stub, grpc_service, patient_data=json.dumps(changed).encode())
    digests = {audit_row(grpc_service, r.evaluation_id)["details"]["supplied_digest"] for r in (first, second, third)}
    assert len(digests) == 2
    assert not any(WARFARIN_ORDER in a.involved_item_ids for a in third.alerts)


def test_malformed_fhir_is_invalid_argument_naming_the_element_and_audited(grpc_service: Service) -> None:
    stub = grpc_service.stub()
    broken = copy.deepcopy(CLEO)
    index = next(i for i, e in enumerate(broken["entry"]) if e["resource"]["resourceType"] == "MedicationRequest")
    broken["entry"][index]["resource"]["status"] = "activ"
    md = grpc_service.md(ADVISOR)
    details = fail(
        stub.EvaluateSuppliedData,
        pb.EvaluateSuppliedDataRequest(patient_data=json.dumps(broken).encode()),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=md,
    )
    assert f"patient_data: Bundle.entry[{index}].resource.status" in details
    assert "activ" not in details.replace("active", "")  # the value sent is not echoed
    for payload, expected in ((b"{not json", "patient_data: is not JSON"), (b"", "patient_data: is required")):
        assert expected in fail(
            stub.EvaluateSuppliedData,
            pb.EvaluateSuppliedDataRequest(patient_data=payload),
            grpc.StatusCode.INVALID_ARGUMENT,
            metadata=md,
        )
    rows = admin_exec(
        grpc_service,
        "SELECT outcome FROM audit.audit_logs WHERE action = 'EVALUATE_SUPPLIED' AND outcome = 'INVALID_ARGUMENT'",
    ).all()
    assert len(rows) >= 3


def test_supplied_data_needs_mfa_like_any_patient_data(grpc_service: Service) -> None:
    stub = grpc_service.stub()
    fail(
        stub.EvaluateSuppliedData,
        pb.EvaluateSuppliedDataRequest(patient_data=json.dumps(CLEO).encode()),
        grpc.StatusCode.PERMISSION_DENIED,
        metadata=grpc_service.md(ADVISOR, mfa=False),
    )


def test_evaluate_safety_takes_fhir_draft_orders_beside_proposed_medications(grpc_service: Service) -> None:
    stub = grpc_service.stub()
    # demo-patient-02 takes sertraline (the demo data): a draft ibuprofen order alerts on its own id.
    orders = draft_orders("ibuprofen", "order-77")
    orders["entry"][0]["resource"]["subject"] = {"reference": f"Patient/{SPOUSE}"}
    resp = evaluate(stub, grpc_service, SPOUSE, ADVISOR, draft_orders=json.dumps(orders).encode())
    assert any(
        "MedicationRequest/order-77" in a.involved_item_ids and a.kind == pb.DRUG_DRUG_INTERACTION for a in resp.alerts
    ), [(a.summary, list(a.involved_item_ids)) for a in resp.alerts]
    row = audit_row(grpc_service, resp.evaluation_id)
    assert row["action"] == "EVALUATE_SAFETY" and row["details"]["proposed_medications"] == 1
    bad = fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id=SPOUSE, draft_orders=b'{"resourceType": "Bundle", "entry": 3}'),
        grpc.StatusCode.INVALID_ARGUMENT,
        metadata=grpc_service.md(ADVISOR),
    )
    assert bad.startswith("draft_orders: ")


_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
_value = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entry=st.integers(min_value=0, max_value=len(CLEO["entry"]) - 1),
    key=st.text(min_size=1, max_size=20)
    | st.sampled_from(
        [
            "status",
            "code",
            "subject",
            "medicationCodeableConcept",
            "clinicalStatus",
            "valueQuantity",
            "effectiveDateTime",
            "birthDate",
            "resourceType",
            "id",
        ]
    ),
    value=_value,
)
def test_mutated_fhir_is_answered_or_refused_never_an_internal_error(
    grpc_service: Service, entry: int, key: str, value: Any
) -> None:
    doc = copy.deepcopy(CLEO)
    doc["entry"][entry]["resource"][key] = value
    code, details = answer(
        grpc_service.stub().EvaluateSuppliedData,
        pb.EvaluateSuppliedDataRequest(patient_data=json.dumps(doc).encode()),
        grpc_service.md(ADVISOR),
    )
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (code, details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert details.startswith("patient_data: ")

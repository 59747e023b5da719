"""CDS Hooks 2.0 end to end: a real HTTPS server (uvicorn, TLS) on the real use cases and PostgreSQL
as praneya_app, called through a real HTTP client (httpx), answers checked against JSON Schemas
written from the specification. Patient data: a Synthea patient (tests/data/fhir, Apache-2.0)."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from sqlalchemy import text

from engine.doors.cdshooks.discovery import SERVICES
from store.config import PROJECT_ROOT
from tests.fix_cdshooks import ORDER_SELECT, ORDER_SIGN, PATIENT_VIEW, CdsService

pytestmark = pytest.mark.db

SCHEMAS = PROJECT_ROOT / "tests" / "schemas" / "cdshooks"
CLEO_ID = "f49a43d9-bb72-4b37-a4a6-70df40c40c92"
# As a FHIR server's searches return it: references relative (Patient/<id>), not the bundle's urn:uuid.
CLEO = json.loads(
    (PROJECT_ROOT / "tests" / "data" / "fhir" / "synthea-cleo-friesen.json")
    .read_text()
    .replace(f"urn:uuid:{CLEO_ID}", f"Patient/{CLEO_ID}")
)
WARFARIN_ORDER = "MedicationRequest/5e27078a-3ea4-4def-9062-7ed28709e683"
PRACTITIONER = "Practitioner/prac-77"
PHI_WORDS = ("Cleo", "Friesen", "warfarin", "ibuprofen", "digoxin", CLEO_ID)


def _schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


DISCOVERY, RESPONSE, FEEDBACK, REQUEST = (
    _schema(n)
    for n in ("discovery.schema.json", "cards-response.schema.json", "feedback.schema.json", "hook-request.schema.json")
)


def _valid(validator: Draft202012Validator, doc: Any) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _of(kind: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(e["resource"]) for e in CLEO["entry"] if e["resource"]["resourceType"] == kind]


def prefetch() -> dict[str, Any]:
    return {
        "patient": _of("Patient")[0],
        "medicationRequests": _searchset(_of("MedicationRequest")),
        "medicationStatements": _searchset([]),
        "allergies": _searchset(_of("AllergyIntolerance")),
        "conditions": _searchset(_of("Condition")),
        "observations": _searchset(_of("Observation")),
    }


def draft(order_id: str = "draft-1", text_: str = "ibuprofen 400 MG Oral Tablet") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{CLEO_ID}"},
        "medicationCodeableConcept": {"text": text_},
    }


def hook_request(hook: str = "order-select", **over: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": PRACTITIONER, "patientId": CLEO_ID}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft()}]}
    if hook == "order-select":
        context["selections"] = ["MedicationRequest/draft-1"]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch()}
    body.update(over)
    return body


def post(cds: CdsService, service_id: str, body: Any, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", None) or cds.headers(service_id)
    with cds.client() as client:
        return client.post(f"/cds-services/{service_id}", json=body, headers=headers, **kw)


def audit(cds: CdsService, audit_id: str) -> dict[str, Any]:
    with cds.grpc.admin.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM audit.audit_logs WHERE id = :i"), {"i": audit_id}).mappings().one()
        )


# --- discovery -------------------------------------------------------------------------------------


def test_discovery_lists_the_three_medication_safety_services(cds_service: CdsService) -> None:
    with cds_service.client() as client:
        r = client.get("/cds-services")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    _valid(DISCOVERY, doc)
    assert {s["hook"] for s in doc["services"]} == {"order-select", "order-sign", "patient-view"}
    assert {s["id"] for s in doc["services"]} == set(SERVICES)
    assert all("patient" in s["prefetch"] for s in doc["services"])


# --- hooks -----------------------------------------------------------------------------------------


def test_order_select_with_full_prefetch_gives_ranked_cards_and_one_audit_row(cds_service: CdsService) -> None:
    body = hook_request()
    _valid(REQUEST, body)
    r = post(cds_service, ORDER_SELECT, body)
    assert r.status_code == 200, r.text
    doc = r.json()
    _valid(RESPONSE, doc)
    cards = doc["cards"]
    bleeding = [c for c in cards if "Warfarin with an NSAID" in c["summary"]]
    assert len(bleeding) == 1, [c["summary"] for c in cards]
    card = bleeding[0]
    assert card["indicator"] == "critical" and card["uuid"].startswith("al_") and len(card["summary"]) <= 140
    assert card["source"]["label"]
    # Its suggestion removes the draft order; reasons to override are coded.
    actions = [a for s in card.get("suggestions", []) for a in s.get("actions", [])]
    assert {"type": "delete", "resourceId": "MedicationRequest/draft-1"}.items() <= actions[0].items()
    assert card["selectionBehavior"] == "at-most-one"
    assert {r["code"] for r in card["overrideReasons"]} >= {"BENEFIT_OUTWEIGHS_RISK", "WILL_MONITOR"}
    # The grass-pollen allergy is coded in SNOMED CT, which the allergen vocabulary lacks: the answer
    # says what it could not screen, first.
    assert cards[0]["indicator"] in ("warning", "critical") and "not" in cards[0]["summary"].lower()

    # Audited in the evaluation's transaction: the client beside the practitioner it acts for, no
    # patient id, no content.
    with cds_service.grpc.admin.connect() as conn:
        row = (
            conn.execute(
                text(
                    "SELECT * FROM audit.audit_logs WHERE action = 'EVALUATE_SUPPLIED' AND details -> 'alert_ids' ? :a"
                    ' ORDER BY "timestamp" DESC LIMIT 1'
                ),
                {"a": card["uuid"]},
            )
            .mappings()
            .one()
        )
    assert row["user_id"] is None and row["patient_id"] is None
    assert row["details"]["client_id"] == cds_service.client_id and row["details"]["acting_for"] == PRACTITIONER
    assert "CLIENT" in row["compliance_flags"] and card["uuid"] in row["details"]["alert_ids"]
    dumped = json.dumps(dict(row), default=str).lower()
    for word in PHI_WORDS:
        assert word.lower() not in dumped, word


def test_order_sign_and_patient_view_answer_with_cards(cds_service: CdsService) -> None:
    for service_id, hook in ((ORDER_SIGN, "order-sign"), (PATIENT_VIEW, "patient-view")):
        r = post(cds_service, service_id, hook_request(hook))
        assert r.status_code == 200, r.text
        _valid(RESPONSE, r.json())
    # patient-view without a draft: the record's own interactions (digoxin with verapamil: P-gp, AV block).
    summaries = [
        c["summary"].lower() for c in post(cds_service, PATIENT_VIEW, hook_request("patient-view")).json()["cards"]
    ]
    assert any("digoxin" in s and "verapamil" in s for s in summaries), summaries


def test_missing_prefetch_without_a_fhir_server_is_412(cds_service: CdsService) -> None:
    body = hook_request()
    del body["prefetch"]["allergies"]
    r = post(cds_service, ORDER_SELECT, body)
    assert r.status_code == 412
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and "allergies" in outcome["issue"][0]["diagnostics"]


def test_missing_prefetch_is_read_from_the_fhir_server_with_its_token(cds_service: CdsService) -> None:
    fhir = cds_service.fhir
    fhir.resources.clear()
    fhir.calls.clear()
    fhir.resources["AllergyIntolerance"] = _searchset(_of("AllergyIntolerance"))
    fhir.resources["MedicationRequest"] = _searchset(_of("MedicationRequest"))
    body = hook_request(
        fhirServer=fhir.base,
        fhirAuthorization={
            "access_token": "fhir-access-token-1",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "praneya",
        },
    )
    del body["prefetch"]["allergies"]
    del body["prefetch"]["medicationRequests"]
    r = post(cds_service, ORDER_SELECT, body)
    assert r.status_code == 200, r.text
    paths = sorted(p for p, _ in fhir.calls)
    assert paths[0].startswith("/fhir/AllergyIntolerance?patient=") and paths[1].startswith("/fhir/MedicationRequest?")
    assert all(auth == "Bearer fhir-access-token-1" for _, auth in fhir.calls)
    # The medications read from the server were screened: warfarin with the draft ibuprofen.
    assert any("Warfarin with an NSAID" in c["summary"] for c in r.json()["cards"])


def test_a_fhir_server_not_allowed_for_the_client_is_refused(cds_service: CdsService) -> None:
    body = hook_request(
        fhirServer="http://localhost:9/fhir",
        fhirAuthorization={
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "s",
            "subject": "x",
        },
    )
    del body["prefetch"]["allergies"]
    r = post(cds_service, ORDER_SELECT, body)
    assert r.status_code == 502 and "not an allowed FHIR server host" in r.text


def test_malformed_requests_are_400_with_an_operation_outcome_naming_the_element(cds_service: CdsService) -> None:
    body = hook_request()
    body["prefetch"]["medicationRequests"]["entry"][0]["resource"]["status"] = "Friesen-status"
    r = post(cds_service, ORDER_SELECT, body)
    assert r.status_code == 400
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    expressions = [x for issue in outcome["issue"] for x in issue.get("expression", [])]
    assert any(x.startswith("prefetch.") and x.endswith("].resource.status") for x in expressions), outcome
    assert "Friesen" not in r.text
    body = hook_request()
    body["context"]["patientId"] = ""
    r = post(cds_service, ORDER_SELECT, body)
    assert r.status_code == 400 and "context.patientId" in r.text
    with cds_service.client() as client:
        bad_json = client.post(
            f"/cds-services/{ORDER_SELECT}",
            content=b"{",
            headers={**cds_service.headers(), "content-type": "application/json"},
        )
        wrong_type = client.post(
            f"/cds-services/{ORDER_SELECT}",
            content=b"{}",
            headers={**cds_service.headers(), "content-type": "text/plain"},
        )
        unknown = client.post("/cds-services/no-such-service", json={}, headers=cds_service.headers("no-such-service"))
    assert bad_json.status_code == 400 and "not JSON" in bad_json.text
    assert wrong_type.status_code == 415
    assert unknown.status_code == 404


# --- feedback --------------------------------------------------------------------------------------


def test_feedback_is_recorded_once_per_card(cds_service: CdsService) -> None:
    cards = post(cds_service, ORDER_SELECT, hook_request()).json()["cards"]
    card = next(c for c in cards if "Warfarin with an NSAID" in c["summary"])
    reason = next(r for r in card["overrideReasons"] if r["code"] == "BENEFIT_OUTWEIGHS_RISK")
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": reason, "userComment": "discussed with the patient"},
                "outcomeTimestamp": "2026-12-01T12:00:00Z",
            }
        ]
    }
    _valid(FEEDBACK, feedback)
    url = f"/cds-services/{ORDER_SELECT}/feedback"
    with cds_service.client() as client:
        first = client.post(url, json=feedback, headers=cds_service.headers(f"{ORDER_SELECT}/feedback"))
        again = client.post(url, json=feedback, headers=cds_service.headers(f"{ORDER_SELECT}/feedback"))
        unknown = client.post(
            url,
            json={"feedback": [{**feedback["feedback"][0], "card": "al_" + "0" * 24}]},
            headers=cds_service.headers(f"{ORDER_SELECT}/feedback"),
        )
    assert first.status_code == 200 and again.status_code == 200, (first.text, again.text)
    assert unknown.status_code == 404
    with cds_service.grpc.admin.connect() as conn:
        rows = conn.execute(
            text("SELECT user_id, client_id, outcome, reason_code FROM clinical.alert_feedback WHERE alert_id = :a"),
            {"a": card["uuid"]},
        ).all()
    assert [tuple(r) for r in rows] == [(None, cds_service.client_id, "OVERRIDDEN", "BENEFIT_OUTWEIGHS_RISK")]


# --- security --------------------------------------------------------------------------------------


def _hs256(cds: CdsService) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": cds.kid}).encode()).rstrip(b"=")
    now = int(time.time())
    claims = {
        "iss": cds.issuer,
        "aud": f"{cds.base_url}/cds-services/{ORDER_SELECT}",
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    # HMAC keyed with the client's public key: the classic algorithm-confusion forgery.
    key = Path(cds.key_file).read_bytes()
    sig = base64.urlsafe_b64encode(hmac.new(key, header + b"." + payload, hashlib.sha256).digest()).rstrip(b"=")
    return (header + b"." + payload + b"." + sig).decode()


def test_client_tokens_are_checked_as_the_specification_requires(cds_service: CdsService) -> None:
    body = hook_request()
    now = int(time.time())
    unsigned = jwt.encode(
        {
            "iss": cds_service.issuer,
            "aud": f"{cds_service.base_url}/cds-services/{ORDER_SELECT}",
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        },
        key="",
        algorithm="none",
    )
    replayed = cds_service.token(ORDER_SELECT)
    assert post(cds_service, ORDER_SELECT, body, headers={"authorization": f"Bearer {replayed}"}).status_code == 200
    cases = {
        "no token": {},
        "not bearer": {"authorization": "Basic dXNlcjpwYXNz"},
        "alg none": {"authorization": f"Bearer {unsigned}"},
        "HMAC": {"authorization": f"Bearer {_hs256(cds_service)}"},
        "foreign aud": {"authorization": f"Bearer {cds_service.token(ORDER_SIGN)}"},
        "aud of the base URL": {"authorization": f"Bearer {cds_service.token(None)}"},
        "replayed jti": {"authorization": f"Bearer {replayed}"},
        "expired": {"authorization": f"Bearer {cds_service.token(ttl_seconds=-120)}"},
        "unregistered key": {"authorization": f"Bearer {cds_service.token(key=cds_service.other_key)}"},
        "lives too long": {"authorization": f"Bearer {cds_service.token(ttl_seconds=3600)}"},
    }
    for name, headers in cases.items():
        with cds_service.client() as client:
            r = client.post(f"/cds-services/{ORDER_SELECT}", json=body, headers=headers)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        assert "Cleo" not in r.text


def test_cors_only_for_registered_origins(cds_service: CdsService) -> None:
    allowed, foreign = "https://ehr.test.example", "https://evil.example"
    with cds_service.client() as client:
        pre = client.options(
            f"/cds-services/{ORDER_SELECT}",
            headers={"origin": allowed, "access-control-request-method": "POST"},
        )
        refused = client.options(
            f"/cds-services/{ORDER_SELECT}", headers={"origin": foreign, "access-control-request-method": "POST"}
        )
        plain = client.get("/cds-services", headers={"origin": foreign})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == allowed
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


# --- fuzzing ---------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutation=st.sampled_from(["replace", "context", "prefetch", "drafts"]),
    value=_json,
    key=st.sampled_from(["hook", "hookInstance", "context", "prefetch", "fhirServer", "fhirAuthorization"]),
)
def test_fuzzed_hook_requests_are_never_a_server_error(
    cds_service: CdsService, mutation: str, value: Any, key: str
) -> None:
    body = hook_request()
    if mutation == "replace":
        body[key] = value
    elif mutation == "context":
        body["context"]["patientId" if isinstance(value, str) else "selections"] = value
    elif mutation == "prefetch":
        body["prefetch"]["medicationRequests"] = value
    else:
        body["context"]["draftOrders"]["entry"][0]["resource"]["medicationCodeableConcept"] = value
    r = post(cds_service, ORDER_SELECT, copy.deepcopy(body))
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code == 200:
        _valid(RESPONSE, r.json())
    else:
        assert r.json()["resourceType"] == "OperationOutcome"

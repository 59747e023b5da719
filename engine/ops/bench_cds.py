"""The CDS Hooks door in `make bench`: an `order-select` call with full prefetch against gRPC on the same content.

Patients: 15-medication patients of the mix, their stored records turned into FHIR R4 (Patient,
active MedicationRequests coded in RxNorm from the vocabulary, AllergyIntolerances, Conditions,
Observations coded in LOINC from engine/fhir's own table), with one draft order (ibuprofen). The
same content goes three ways:

  order-select   POST /cds-services/{id} over HTTPS (httpx, HTTP/1.1 keep-alive, several connections)
  supplied       gRPC EvaluateSuppliedData with the same Bundle and draft order
  stored         gRPC EvaluateSafety of the stored record with the same draft order

A CDS client's token is single-use (its jti), so every call carries a fresh one: they are minted
before each phase, and the minting cost is reported apart (it is the EHR's, not the service's).
FHIR parsing (engine.fhir.parse_patient_data) is timed on its own, in this process.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["CdsBench", "patient_bundle"]

DRAFT_DRUG = "ibuprofen"


def patient_bundle(record: Any, ingredient_codes: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """A stored record as the FHIR resources an EHR would prefetch, by prefetch key."""
    from engine.fhir._codes import LOINC, READINGS

    def fid(value: str) -> str:  # our ids have underscores; a FHIR id is [A-Za-z0-9.-]
        return value.replace("_", "-")

    pid = record.patient_id
    subject = {"reference": f"Patient/{pid}"}
    from engine.labs import lab_catalog

    # Each reading in its catalog's canonical unit (the value the mix holds is in it).
    canonical = lab_catalog().types
    loinc = {c.reading_type: (code, canonical[c.reading_type].unit) for code, c in READINGS.items()}
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": record.profile.get("sex") or "unknown"}
    if record.date_of_birth:
        patient["birthDate"] = record.date_of_birth.isoformat()
    meds = []
    for m in record.medications:
        concept: dict[str, Any] = {"text": m["generic_name"]}
        code = ingredient_codes.get(m["generic_name"])
        if code:
            concept["coding"] = [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code,
                                  "display": m["generic_name"]}]  # fmt: skip
        meds.append({
            "resourceType": "MedicationRequest", "id": fid(m["id"]), "status": "active", "intent": "order",
            "subject": subject, "medicationCodeableConcept": concept,
            "dosageInstruction": [{"text": f"{m['dosage'] or ''} {m['frequency'] or ''}".strip()}],
        })  # fmt: skip
    allergies = [
        {
            "resourceType": "AllergyIntolerance", "id": fid(a["id"]), "patient": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                           "code": "active"}]},
            "category": ["food" if a["allergen_category"] == "FOOD" else "medication"],
            "criticality": "high" if a["severity"] in ("SEVERE", "LIFE_THREATENING") else "low",
            "code": {"text": a["allergen"]},
        }
        for a in record.allergies
    ]  # fmt: skip
    conditions = [
        {
            "resourceType": "Condition", "id": fid(c["id"]), "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"text": c["name"]},
        }
        for c in record.conditions
    ]  # fmt: skip
    observations = []
    for b in record.biometrics:
        if b["reading_type"] not in loinc:
            continue  # no LOINC row for it in engine/fhir's table: not sent rather than typed from memory
        code, unit = loinc[b["reading_type"]]
        observations.append({
            "resourceType": "Observation", "id": fid(b["id"]), "status": "final", "subject": subject,
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": "2026-11-01T08:00:00Z",
            "valueQuantity": {"value": b["value"], "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        })  # fmt: skip
    return {"patient": [patient], "medicationRequests": meds, "allergies": allergies, "conditions": conditions,
            "observations": observations}  # fmt: skip


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _draft(pid: str, code: str | None) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": DRAFT_DRUG}
    if code:
        concept["coding"] = [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code}]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "draft-1", "status": "draft", "intent": "order",
        "subject": {"reference": f"Patient/{pid}"}, "medicationCodeableConcept": concept}}]}  # fmt: skip


class CdsBench:
    """The three ways to the same content, as `call(slot)` functions for engine/ops/bench_measure."""

    def __init__(
        self, base_url: str, ca: Path, grpc_client: Any, contents: list[tuple[str, dict[str, list[dict[str, Any]]]]],
        ingredient_codes: dict[str, str], mint: Callable[[str], str], *, connections: int,
    ) -> None:  # fmt: skip
        import httpx

        from engine.doors.cdshooks.discovery import service_id_for

        self.service = service_id_for("order-select")
        self.audience = f"{base_url}/cds-services/{self.service}"
        self.mint = mint
        # Keep-alive HTTP/1.1 clients, each with its own connection pool; calls rotate over them.
        self.http = [
            httpx.Client(base_url=base_url, verify=str(ca), timeout=30, http2=False,
                         limits=httpx.Limits(max_connections=8, max_keepalive_connections=8))
            for _ in range(connections)
        ]  # fmt: skip
        self.grpc = grpc_client
        code = ingredient_codes.get(DRAFT_DRUG)
        self.bodies: list[bytes] = []
        self.supplied: list[Any] = []
        self.stored: list[Any] = []
        self.bundles: list[dict[str, Any]] = []
        from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb

        for pid, content in contents:
            draft = _draft(pid, code)
            prefetch = {
                "patient": content["patient"][0],
                "medicationRequests": _searchset(content["medicationRequests"]),
                "medicationStatements": _searchset([]),
                "allergies": _searchset(content["allergies"]),
                "conditions": _searchset(content["conditions"]),
                "observations": _searchset(content["observations"]),
            }
            body = {"hook": "order-select", "hookInstance": "", "context": {
                "userId": "Practitioner/bench-1", "patientId": pid, "draftOrders": draft,
                "selections": ["MedicationRequest/draft-1"]}, "prefetch": prefetch}  # fmt: skip
            self.bodies.append(json.dumps(body).encode())
            bundle = {"resourceType": "Bundle", "type": "collection",
                      "entry": [{"resource": r} for group in content.values() for r in group]}  # fmt: skip
            self.bundles.append(bundle)
            draft_bytes = json.dumps(draft).encode()
            self.supplied.append(pb.EvaluateSuppliedDataRequest(
                patient_data=json.dumps(bundle).encode(), draft_orders=draft_bytes, patient_reference=pid))
            self.stored.append(pb.EvaluateSafetyRequest(patient_id=pid, draft_orders=draft_bytes))
        self._tokens: Iterator[str] = iter(())
        self._lock = threading.Lock()
        self._n = 0

    def close(self) -> None:
        for c in self.http:
            c.close()

    def mint_tokens(self, n: int) -> float:
        """Mints `n` single-use tokens for the next phase; returns µs of CPU per token (client side)."""
        t0 = time.thread_time()
        tokens = [self.mint(self.audience) for _ in range(n)]
        per = (time.thread_time() - t0) / max(1, n) * 1e6
        self._tokens = iter(tokens)
        return round(per, 1)

    def _next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def order_select(self) -> Callable[[int], None]:
        n_http, n_bodies = len(self.http), len(self.bodies)

        def call(slot: int) -> None:
            i = self._next()
            instance = f'"hookInstance": "{uuid.uuid4()}"'.encode()
            body = self.bodies[i % n_bodies].replace(b'"hookInstance": ""', instance)
            token = next(self._tokens)
            r = self.http[slot % n_http].post(
                f"/cds-services/{self.service}", content=body,
                headers={"authorization": f"Bearer {token}", "content-type": "application/json"})  # fmt: skip
            if r.status_code != 200 or not r.json().get("cards"):
                raise RuntimeError(f"order-select answered {r.status_code}: {r.text[:300]}")

        return call

    def grpc_call(self, *, supplied: bool) -> Callable[[int], None]:
        requests = self.supplied if supplied else self.stored
        stubs, n_req = self.grpc.safety, len(requests)

        def call(slot: int) -> None:
            i = self._next()
            stub = stubs[slot % len(stubs)]
            method = stub.EvaluateSuppliedData if supplied else stub.EvaluateSafety
            resp = method(requests[i % n_req], metadata=self.grpc._md(slot), timeout=30)
            assert resp.evaluation_id

        return call

    def parse_us(self, iterations: int) -> dict[str, Any]:
        """engine.fhir.parse_patient_data alone: CPU µs per bundle (the draft order not included)."""
        from engine.fhir import parse_patient_data

        bundle = self.bundles[0]
        parse_patient_data(bundle)
        t0 = time.thread_time()
        for _ in range(iterations):
            parse_patient_data(bundle)
        return {
            "parse_patient_data_us": round((time.thread_time() - t0) / iterations * 1e6, 1),
            "resources": len(bundle["entry"]),
            "bundle_bytes": len(json.dumps(bundle)),
        }

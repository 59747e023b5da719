"""How a caller verifies a signed gRPC answer (`EvaluateSafetyResponse`): re-derive the digest from the
answer's own fields, then check the Ed25519 signature over it with the key `GetSigningKey` publishes.

This is the reference for clients in any language (README: "Verifying a result"); the service itself
signs with `engine.app.evaluation.signed_digest`, and the tests verify every signed answer here.
"""

from __future__ import annotations

import hmac
from typing import Any

from engine.app.signed_result import SCHEME, result_digest
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from store.signing import ALGORITHM, verify_signature

__all__ = ["response_digest", "signed_content", "verify_response"]


def signed_content(resp: Any, patient_id: str) -> dict[str, Any]:
    """The content the signature covers, as the gRPC API names it (enum names, RFC 3339 time).

    `patient_id` is the patient the caller asked about (EvaluateSafety's `patient_id`, or
    EvaluateSuppliedData's `patient_reference`): it is signed but not repeated in the answer, so an
    answer about another patient does not verify."""
    return {
        "evaluation_id": resp.evaluation_id,
        "patient_id": patient_id,
        "complete": resp.complete,
        "completeness": pb.Completeness.Name(resp.completeness),
        "ruleset_version": resp.ruleset_version,
        "knowledge_version": resp.knowledge_version,
        "evaluated_at": resp.evaluated_at.ToJsonString(),
        "vocabulary_version": resp.vocabulary_version,
        "alerts": [
            {
                "alert_id": a.alert_id,
                "kind": pb.AlertKind.Name(a.kind),
                "severity": pb.Severity.Name(a.severity),
                "summary": a.summary,
                "detail": a.detail,
                "recommendation": a.recommendation,
                "evidence": pb.EvidenceLevel.Name(a.evidence),
                "involved_item_ids": list(a.involved_item_ids),
                "rule_id": a.rule_id,
                "rule_version": a.rule_version,
                "interruptive": a.interruptive,
                "references": list(a.references),
            }
            for a in resp.alerts
        ],
        "incomplete_rules": [
            {
                "rule_id": r.rule_id,
                "rule_version": r.rule_version,
                "reason": r.reason,
                "insufficient_data": r.insufficient_data,
            }
            for r in resp.incomplete_rules
        ],
        "unresolved_items": [
            {
                "item_id": u.item_id,
                "kind": pb.UnresolvedKind.Name(u.kind),
                "reason": pb.UnresolvedReason.Name(u.reason),
                "text": u.text,
                "parts": list(u.parts),
                "suggestions": list(u.suggestions),
                "notes": list(u.notes),
            }
            for u in resp.unresolved_items
        ],
    }


def response_digest(resp: Any, patient_id: str) -> bytes:
    """The SHA-256 digest of the answer's serialisation (scheme praneya-result-v2)."""
    c = signed_content(resp, patient_id)
    return result_digest(
        evaluation_id=c["evaluation_id"],
        patient_id=c["patient_id"],
        complete=c["complete"],
        completeness=c["completeness"],
        ruleset_version=c["ruleset_version"],
        knowledge_version=c["knowledge_version"],
        evaluated_at=c["evaluated_at"],
        vocabulary_version=c["vocabulary_version"],
        alerts=[
            (
                a["alert_id"],
                a["kind"],
                a["severity"],
                a["summary"],
                a["detail"],
                a["recommendation"],
                a["evidence"],
                a["involved_item_ids"],
                a["rule_id"],
                a["rule_version"],
                a["interruptive"],
                a["references"],
            )
            for a in c["alerts"]
        ],
        incomplete_rules=[
            (r["rule_id"], r["rule_version"], r["reason"], r["insufficient_data"]) for r in c["incomplete_rules"]
        ],
        unresolved_items=[
            (u["item_id"], u["kind"], u["reason"], u["text"], u["parts"], u["suggestions"], u["notes"])
            for u in c["unresolved_items"]
        ],
    )


def verify_response(resp: Any, public_key: bytes, patient_id: str) -> bool:
    """True when `resp` is what the service signed for `patient_id`, under `public_key` (raw Ed25519,
    from GetSigningKey). Any change to a signed field, another patient, another scheme or algorithm,
    or another key: False."""
    sig = resp.signature
    if sig.algorithm != ALGORITHM or sig.scheme != SCHEME:
        return False
    digest = response_digest(resp, patient_id)
    # The digest sent is informational (it tells content from key when verification fails); what
    # counts is the signature over the digest derived here.
    return verify_signature(public_key, digest, sig.signature) and hmac.compare_digest(digest, sig.digest)

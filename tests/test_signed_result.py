"""The signed digest of an answer: the service's derivation (from engine objects) and a client's (from the
gRPC response) agree, every signed field counts, and the serialisation is the one the README describes."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.app.evaluation import Evaluation, ResultSignature, alert_id, signed_digest
from engine.app.signed_result import SCHEME, AlertFields, result_digest
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.servicer import evaluation_pb
from engine.doors.grpc.verify import response_digest, signed_content, verify_response
from engine.model import (
    Alert,
    AlertKind,
    EvaluationResult,
    EvidenceLevel,
    RuleError,
    Severity,
    UnresolvedItem,
)
from store.signing import Signer


def _alert(i: int, **kw: Any) -> Alert:
    fields: dict[str, Any] = dict(
        kind=AlertKind.DRUG_DRUG_INTERACTION,
        severity=Severity.HIGH,
        summary=f"Warfarin + ibuprofen {i}: bleeding risk — façade ✓",
        detail="Both increase bleeding.\nMonitor INR.",
        recommendation="Avoid; use paracetamol.",
        evidence=EvidenceLevel.UNKNOWN,
        involved_ids=(f"med-{i}", f"med-{i + 1}"),
        rule_id="ddi-warfarin-nsaid",
        rule_version=3,
        finding_key=f"k{i}",
        references=("FDA label", "kb:pair-1"),
    )
    fields.update(kw)
    return Alert(**fields)


def _evaluation(signer: Signer, at: datetime, *, patient: str = "patient-1", complete: bool = False) -> Evaluation:
    alerts = (_alert(1), _alert(2, severity=Severity.CRITICAL, references=()), _alert(3, involved_ids=()))
    result = EvaluationResult(
        alerts=alerts,
        complete=complete,
        rule_errors=(RuleError("renal-metformin", 2, "insufficient data: egfr", True),),
        unresolved=(
            UnresolvedItem("proposed:0", "medication", "zzqx", "unrecognised", parts=("zzqx",)),
            UnresolvedItem("alg-1", "allergy", "pollen", "ambiguous", suggestions=("a", "b"), notes=("n",)),
        ),
        ruleset_version="rules-1",
        knowledge_version="kb-1",
        vocabulary_version="vocab-1",
    )
    ranked = tuple((alert_id(a), a) for a in alerts)
    digest = signed_digest(
        evaluation_id="e-1", patient_id=patient, result=result, alerts=ranked, complete=complete, evaluated_at=at
    )
    return Evaluation(
        evaluation_id="e-1",
        patient_id=patient,
        result=result,
        alerts=ranked,
        omitted=0,
        evaluated_at=at,
        supplied=False,
        signature=ResultSignature(signer.algorithm, signer.key_id, SCHEME, digest, signer.sign(digest)),
    )


@pytest.fixture(scope="module")
def signer() -> Signer:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Signer(Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 12, 1, 9, 30, 0, tzinfo=UTC),  # no fraction
        datetime(2026, 12, 1, 9, 30, 0, 250_000, tzinfo=UTC),  # milliseconds
        datetime(2026, 12, 1, 9, 30, 0, 250_001, tzinfo=UTC),  # microseconds
    ],
)
def test_a_client_derives_the_digest_the_service_signed(signer: Signer, at: datetime) -> None:
    evaluation = _evaluation(signer, at)
    resp = pb.EvaluateSafetyResponse.FromString(evaluation_pb(evaluation).SerializeToString())
    assert resp.signature.scheme == SCHEME and not resp.signature.canonical
    assert response_digest(resp, "patient-1") == evaluation.signature.digest == resp.signature.digest
    assert verify_response(resp, signer.public_raw, "patient-1")
    assert not verify_response(resp, signer.public_raw, "patient-2"), "signed for the patient asked about"


def _tamperings() -> list[tuple[str, Any]]:
    def alert(field: str, value: Any) -> Any:
        def edit(r: Any) -> None:
            setattr(r.alerts[1], field, value)

        return edit

    return [
        ("severity", alert("severity", pb.MODERATE)),
        ("summary", alert("summary", "Warfarin + ibuprofen 2: no risk")),
        ("detail", alert("detail", "")),
        ("recommendation", alert("recommendation", "Go ahead.")),
        ("evidence", alert("evidence", pb.CLINICAL_TRIAL)),
        ("rule_version", alert("rule_version", 4)),
        ("interruptive", alert("interruptive", False)),
        ("kind", alert("kind", pb.DRUG_ALLERGY)),
        ("involved", lambda r: r.alerts[1].involved_item_ids.append("med-9")),
        ("reference moved", lambda r: r.alerts[2].references.append(r.alerts[0].references.pop())),
        ("alert dropped", lambda r: r.alerts.pop()),
        ("alerts reordered", lambda r: r.alerts.reverse()),
        ("completeness", lambda r: setattr(r, "completeness", pb.COMPLETE)),
        ("complete", lambda r: setattr(r, "complete", True)),
        ("incomplete rule dropped", lambda r: r.incomplete_rules.pop()),
        ("unresolved dropped", lambda r: r.unresolved_items.pop()),
        ("unresolved part", lambda r: r.unresolved_items[0].parts.append("x")),
        ("time", lambda r: setattr(r.evaluated_at, "seconds", r.evaluated_at.seconds + 1)),
        ("ruleset", lambda r: setattr(r, "ruleset_version", "rules-2")),
        ("vocabulary", lambda r: setattr(r, "vocabulary_version", "vocab-0")),
        ("evaluation id", lambda r: setattr(r, "evaluation_id", "e-2")),
    ]


@pytest.mark.parametrize(("what", "edit"), _tamperings(), ids=[t[0] for t in _tamperings()])
def test_every_signed_field_counts(signer: Signer, what: str, edit: Any) -> None:
    resp = evaluation_pb(_evaluation(signer, datetime(2026, 12, 1, 9, 30, tzinfo=UTC)))
    assert verify_response(resp, signer.public_raw, "patient-1")
    edit(resp)
    assert not verify_response(resp, signer.public_raw, "patient-1"), what


def test_another_key_or_scheme_does_not_verify(signer: Signer) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    resp = evaluation_pb(_evaluation(signer, datetime(2026, 12, 1, 9, 30, tzinfo=UTC)))
    assert not verify_response(resp, Signer(Ed25519PrivateKey.generate()).public_raw, "patient-1")
    resp.signature.scheme = "praneya-result-v1"
    assert not verify_response(resp, signer.public_raw, "patient-1")


def test_the_serialisation_is_the_one_the_readme_describes() -> None:
    """An independent writing of README "Verifying a result": header, counts, lengths, bytes."""
    alerts: list[AlertFields] = [
        ("al_1", "ALLERGY", "HIGH", "Pénicilline", "d", "r", "EVIDENCE_UNKNOWN", ["alg-1"], "r1", 2, True, [])
    ]
    texts = ["e", "p", "false", "INCOMPLETE", "rs", "kb", "2026-12-01T09:30:00Z", "v"]
    texts += ["al_1", "ALLERGY", "HIGH", "Pénicilline", "d", "r", "EVIDENCE_UNKNOWN", "alg-1", "r1", "2", "true"]
    texts += ["x", "1", "why", "false"]
    counts = [1, 1, 0, 1, 0]  # alerts; involved and references of the alert; incomplete rules; unresolved
    data = [t.encode() for t in texts]
    expected = hashlib.sha256(
        b"praneya-result-v2\n"
        + b"".join(struct.pack(">I", c) for c in counts)
        + b"".join(struct.pack(">I", len(d)) for d in data)
        + b"".join(data)
    ).digest()
    assert (
        result_digest(
            evaluation_id="e",
            patient_id="p",
            complete=False,
            completeness="INCOMPLETE",
            ruleset_version="rs",
            knowledge_version="kb",
            evaluated_at="2026-12-01T09:30:00Z",
            vocabulary_version="v",
            alerts=alerts,
            incomplete_rules=[("x", 1, "why", False)],
            unresolved_items=[],
        )
        == expected
    )


def test_moving_text_between_fields_changes_the_digest(signer: Signer) -> None:
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    base = _evaluation(signer, at)
    a = base.alerts[0][1]
    moved = replace(a, summary=a.summary + a.detail[:4], detail=a.detail[4:])
    digest = signed_digest(
        evaluation_id="e-1",
        patient_id="patient-1",
        result=base.result,
        alerts=((base.alerts[0][0], moved), *base.alerts[1:]),
        complete=False,
        evaluated_at=at,
    )
    assert digest != base.signature.digest
    assert signed_content(evaluation_pb(base), "patient-1")["alerts"][0]["summary"] == a.summary

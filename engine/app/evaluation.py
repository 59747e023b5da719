"""The evaluation use case, written once for every door (gRPC, CDS Hooks, the CLI against a server).

principal → one RLS-scoped transaction → the stored patient record, or patient data the caller
supplied (FHIR, mapped by engine/fhir) → the engine → the audit row → the signature → the door's
answer, rendered inside the transaction so that an answer too large to send rolls the audit row back.

Nothing here knows a transport: failures are `engine.app.failures.Failure`, the answer is an
`Evaluation`, and each door turns it into its own message (a protobuf response, CDS Hooks cards).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from engine.app import metrics
from engine.app.calls import Calls, audit_failure
from engine.app.engine_cache import EngineCache
from engine.app.failures import Code, Failure
from engine.app.signed_result import SCHEME, result_digest
from engine.evaluate import evaluate
from engine.knowledge import Knowledge
from engine.model import (
    Alert,
    AlertKind,
    EvaluationRequest,
    EvaluationResult,
    EvidenceLevel,
    MedicationFact,
    PatientSnapshot,
    Severity,
)
from engine.rules import RuleSet
from store import patients, service_repo
from store.keys import KeyStore
from store.session import Database, Principal, RequestMeta, Tx
from store.signing import Signer

__all__ = [
    "MAX_FOODS",
    "MAX_PROPOSED_MEDICATIONS",
    "OMITTED_ALERTS_RULE",
    "Evaluation",
    "Evaluations",
    "Proposal",
    "ResultSignature",
    "SuppliedPatient",
    "alert_id",
    "json_time",
    "signed_digest",
]

R = TypeVar("R")

MAX_PROPOSED_MEDICATIONS = 50
MAX_FOODS = 200
OMITTED_ALERTS_RULE = "limit:alerts"
_PHI_ROLES_ANY_PATIENT = ("CLINICAL_ADVISOR", "SUPER_ADMIN")
_EVALUATION_NEEDS = frozenset({"MEDICATIONS", "ALLERGIES", "CONDITIONS"})


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the caller asks about: proposed medications (coded or named, dose as given), foods, a recipe."""

    medications: tuple[MedicationFact, ...] = ()
    foods: tuple[str, ...] = ()
    recipe_id: str | None = None

    def check(self) -> None:
        if len(self.medications) > MAX_PROPOSED_MEDICATIONS:
            raise Failure(Code.INVALID_ARGUMENT, f"proposed_medications: at most {MAX_PROPOSED_MEDICATIONS}")
        if len(self.foods) > MAX_FOODS:
            raise Failure(Code.INVALID_ARGUMENT, f"proposed_foods: at most {MAX_FOODS}")


@dataclass(frozen=True, slots=True)
class SuppliedPatient:
    """Patient data the caller sent (a FHIR Bundle, mapped): evaluated, never read from or written to
    the store. `reference` is the caller's own patient reference (signed back to the caller, never
    stored); `digest` and `counts` are what the audit row records of it."""

    snapshot: PatientSnapshot
    reference: str
    digest: str
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResultSignature:
    algorithm: str
    key_id: str
    scheme: str  # the serialisation whose SHA-256 is signed (engine/app/signed_result.py)
    digest: bytes  # the bytes signed
    signature: bytes


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation as every door reports it."""

    evaluation_id: str
    patient_id: str  # the stored patient's id, or the caller's reference for supplied data
    result: EvaluationResult
    # Ranked, with their ids; past the cap, the highest-ranked then one alert that counts the rest.
    alerts: tuple[tuple[str, Alert], ...]
    omitted: int
    evaluated_at: datetime
    supplied: bool
    signature: ResultSignature

    @property
    def complete(self) -> bool:
        return self.result.complete and not self.omitted


def alert_id(alert: Alert) -> str:
    return "al_" + hashlib.sha256(alert.stable_id.encode()).hexdigest()[:24]


def json_time(value: datetime) -> str:
    """RFC 3339 in UTC as protobuf's Timestamp JSON writes it (0, 3 or 6 fractional digits, 'Z')."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    micros = value.microsecond
    if micros:
        text += f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    return text + "Z"


_EVIDENCE_NAME = {EvidenceLevel.UNKNOWN: "EVIDENCE_UNKNOWN"}
_UNRESOLVED_KINDS = {"medication": "MEDICATION", "allergy": "ALLERGY", "food": "FOOD"}
_UNRESOLVED_REASONS = frozenset({"UNRECOGNISED", "AMBIGUOUS", "PARTIAL", "MISMATCH"})


def _unresolved_reason(reason: str) -> str:
    return reason.upper() if reason.upper() in _UNRESOLVED_REASONS else "UNRESOLVED_REASON_UNSPECIFIED"


def signed_digest(
    *,
    evaluation_id: str,
    patient_id: str,
    result: EvaluationResult,
    alerts: Sequence[tuple[str, Alert]],
    complete: bool,
    evaluated_at: datetime,
) -> bytes:
    """The digest the service signs: SHA-256 of the deterministic serialisation of the answer's
    clinical content, with the enum names of the gRPC API (engine/app/signed_result.py; README:
    "Verifying a result")."""
    return result_digest(
        evaluation_id=evaluation_id,
        patient_id=patient_id,
        complete=complete,
        completeness="COMPLETE" if complete else "INCOMPLETE",
        ruleset_version=result.ruleset_version,
        knowledge_version=result.knowledge_version,
        evaluated_at=json_time(evaluated_at),
        vocabulary_version=result.vocabulary_version,
        alerts=[
            (
                aid,
                a.kind.value,
                a.severity.name,
                a.summary,
                a.detail,
                a.recommendation,
                _EVIDENCE_NAME.get(a.evidence, a.evidence.name),
                a.involved_ids,
                a.rule_id,
                a.rule_version,
                a.interruptive,
                a.references,
            )
            for aid, a in alerts
        ],
        incomplete_rules=[(r.rule_id, r.rule_version, r.reason, r.insufficient_data) for r in result.rule_errors],
        # What was not screened is clinical content too: a verifier must see the answer was partial.
        unresolved_items=[
            (
                u.item_id,
                _UNRESOLVED_KINDS.get(u.kind, "UNRESOLVED_KIND_UNSPECIFIED"),
                _unresolved_reason(u.reason),
                u.text,
                u.parts,
                u.suggestions,
                u.notes,
            )
            for u in result.unresolved
        ],
    )


def _capped(alerts: Sequence[Alert], cap: int) -> tuple[Sequence[Alert], Sequence[Alert]]:
    """(shown, omitted): all of them when they fit, else the cap - 1 highest-ranked (the summary of the
    rest takes the last place, so an answer never carries more than `cap` alerts)."""
    if len(alerts) <= cap:
        return alerts, ()
    return alerts[: cap - 1], alerts[cap - 1 :]


def _omitted_alert(omitted: Sequence[Alert], cap: int) -> tuple[str, Alert]:
    # Counts and severities only: the omitted alerts' texts and items are exactly what is not sent.
    top = max(a.severity for a in omitted)
    by_severity = ", ".join(
        f"{n} {s.name}" for s in sorted(Severity, reverse=True) if (n := sum(1 for a in omitted if a.severity == s))
    )
    aid = "al_" + hashlib.sha256(f"{OMITTED_ALERTS_RULE}|{len(omitted)}".encode()).hexdigest()[:24]
    return aid, Alert(
        kind=AlertKind.OTHER,
        severity=top,
        summary=f"{len(omitted)} more alerts not shown: an answer carries at most {cap}",
        detail=f"The {cap - 1} highest-ranked alerts are shown; {len(omitted)} more were found ({by_severity}).",
        recommendation="Review the patient's record with a clinician: the medication list is longer than this"
        " service screens in one answer.",
        evidence=EvidenceLevel.UNKNOWN,
        involved_ids=(),
        rule_id=OMITTED_ALERTS_RULE,
        rule_version=0,
        finding_key=OMITTED_ALERTS_RULE,
    )


class Evaluations:
    """EvaluateSafety's path, for a stored record or for supplied data."""

    def __init__(
        self,
        db: Database,
        keys: KeyStore,
        signer: Signer,
        engines: EngineCache,
        calls: Calls,
        *,
        max_active_items: int = 100,
        max_alerts: int = 200,
    ) -> None:
        self.db = db
        self.keys = keys
        self.signer = signer
        self.engines = engines
        self.calls = calls
        self.max_active_items = max_active_items
        self.max_alerts = max_alerts

    # -- the two entry points ------------------------------------------------------------------------

    def stored(
        self,
        name: str,
        principal: Principal,
        meta: RequestMeta,
        patient_id: str,
        proposal: Proposal,
        render: Callable[[Evaluation], R],
        *,
        door: str = "grpc",
        prepare: Callable[[], Proposal] | None = None,
    ) -> R:
        """Evaluates the stored record of `patient_id`. `prepare`, when given, builds (and checks) the
        proposal inside the call, so its failures are audited like any other."""
        logged: dict[str, str] = {}

        def run(principal: Principal, meta: RequestMeta) -> R:
            from engine.app.validation import check_id

            check_id("patient_id", patient_id)
            asked = prepare() if prepare is not None else proposal
            asked.check()
            if asked.recipe_id:
                check_id("recipe_id", asked.recipe_id)
            engine = self._engine(principal, meta)
            with self.db.lean_scoped(principal, meta) as conn:
                record = patients.read_patient(conn, self.keys, patient_id, expected_role=principal.role)
                needed = record.withheld & _EVALUATION_NEEDS
                if needed:
                    # Evaluating a partial record would answer "no alerts" for what the caller cannot
                    # see: refuse instead, naming what the patient's consent would have to cover.
                    raise Failure(
                        Code.PERMISSION_DENIED,
                        "evaluating this patient needs their consent to " + ", ".join(sorted(needed)),
                    )
                self._require_bounded(record)
                foods = list(asked.foods)
                if asked.recipe_id:
                    foods += service_repo.recipe_ingredients(conn, asked.recipe_id)
                    if len(foods) > MAX_FOODS:
                        raise Failure(
                            Code.FAILED_PRECONDITION,
                            f"proposed_foods and the recipe's ingredients: at most {MAX_FOODS} together",
                        )
                via_grant = principal.role not in _PHI_ROLES_ANY_PATIENT and patient_id != principal.user_id
                answer, evaluation_id = self._evaluate(
                    conn,
                    engine,
                    principal,
                    meta,
                    record.to_snapshot(),
                    Proposal(asked.medications, tuple(foods), asked.recipe_id),
                    render,
                    patient_id=patient_id,
                    audit=dict(
                        action="EVALUATE_SAFETY",
                        patient_id=patient_id,
                        resource_type="healthcare.health_profiles",
                        resource_id=record.profile_id,
                        phi_accessed=True,
                        flags=["PHI_READ"],
                        after_role=["DELEGATED_ACCESS"] if via_grant else [],
                        details={},
                    ),
                    supplied=False,
                )
            logged["evaluation_id"] = evaluation_id  # committed: the id names a real row
            return answer

        return self.calls.run(
            name,
            principal,
            meta,
            run,
            scopes=("evaluate.stored",),
            on_failure=audit_failure("EVALUATE_SAFETY", patient_id or None),
            log_fields=logged,
            door=door,
        )

    def supplied(
        self,
        name: str,
        principal: Principal,
        meta: RequestMeta,
        build: Callable[[], tuple[SuppliedPatient, Proposal]],
        render: Callable[[Evaluation], R],
        *,
        door: str = "grpc",
    ) -> R:
        """Evaluates patient data the caller supplied, without reading or storing the patient's record.
        `build` maps the caller's data (FHIR) inside the call, so a malformed resource is an audited
        INVALID_ARGUMENT like any other refusal. Still authenticated, tenant-scoped, audited (what was
        evaluated, by digest and counts, never its content) and signed."""
        logged: dict[str, str] = {}

        def run(principal: Principal, meta: RequestMeta) -> R:
            supplied, proposal = build()
            proposal.check()
            if proposal.recipe_id:
                raise Failure(Code.INVALID_ARGUMENT, "recipe_id: recipes are stored data; send the foods instead")
            for category, items in (
                ("medications", supplied.snapshot.medications),
                ("allergies", supplied.snapshot.allergies),
                ("conditions", supplied.snapshot.conditions),
                ("readings", supplied.snapshot.biometrics),
            ):
                if len(items) > self.max_active_items:
                    raise Failure(
                        Code.INVALID_ARGUMENT,
                        f"the supplied data has {len(items)} active {category}, over the limit of"
                        f" {self.max_active_items} (PRANEYA_MAX_ACTIVE_ITEMS)",
                    )
            engine = self._engine(principal, meta)
            with self.db.lean_scoped(principal, meta, verify=True) as conn:
                answer, evaluation_id = self._evaluate(
                    conn,
                    engine,
                    principal,
                    meta,
                    supplied.snapshot,
                    proposal,
                    render,
                    patient_id=supplied.reference,
                    audit=dict(
                        action="EVALUATE_SUPPLIED",
                        patient_id=None,
                        resource_type="supplied",
                        resource_id=None,
                        phi_accessed=False,
                        flags=["SUPPLIED_DATA"],
                        after_role=[],
                        details={"supplied_digest": supplied.digest, "supplied_counts": dict(supplied.counts)},
                    ),
                    supplied=True,
                )
            logged["evaluation_id"] = evaluation_id  # committed: the id names a real row
            return answer

        return self.calls.run(
            name,
            principal,
            meta,
            run,
            scopes=("evaluate.supplied",),
            on_failure=audit_failure("EVALUATE_SUPPLIED", None),
            log_fields=logged,
            door=door,
        )

    # -- shared ----------------------------------------------------------------------------------------

    def _engine(self, principal: Principal, meta: RequestMeta) -> tuple[RuleSet, Knowledge]:
        """The tenant's rules and knowledge. When its fingerprints are due for a check (once per
        `refresh_seconds`), the check runs in a transaction of its own, in the caller's scope and only
        after the caller is verified there (a caller the database does not know never makes its
        tenant's engine check or rebuild), and before the evaluation's transaction opens, so that a
        rebuild of seconds never keeps that transaction idle."""
        return self.engines.get_via(principal.tenant_id, lambda: self.db.scoped(principal, meta, verify=True))

    def _require_bounded(self, record: patients.PatientRecord) -> None:
        # A record written before the bound (or behind the service's back) is refused, not evaluated
        # for seconds: the write path keeps new records within it.
        for category, items in (
            ("medications", record.medications),
            ("allergies", record.allergies),
            ("conditions", record.conditions),
            ("reading types", record.biometrics),
        ):
            if len(items) > self.max_active_items:
                raise Failure(
                    Code.FAILED_PRECONDITION,
                    f"the patient has {len(items)} active {category}, over the limit of {self.max_active_items}"
                    " (PRANEYA_MAX_ACTIVE_ITEMS); deactivate some before evaluating",
                )

    def _evaluate(
        self,
        conn: Tx,
        engine: tuple[RuleSet, Knowledge],
        principal: Principal,
        meta: RequestMeta,
        snapshot: PatientSnapshot,
        proposal: Proposal,
        render: Callable[[Evaluation], R],
        *,
        patient_id: str,
        audit: dict[str, Any],
        supplied: bool,
    ) -> tuple[R, str]:
        evaluation_id = str(uuid.uuid4())
        started = time.perf_counter()
        ruleset, knowledge = engine
        result = evaluate(snapshot, EvaluationRequest(proposal.medications, proposal.foods), ruleset, knowledge)
        evaluated_at = datetime.now(UTC)
        shown, omitted = _capped(result.alerts, self.max_alerts)
        alerts = tuple((alert_id(a), a) for a in shown)
        if omitted:
            alerts += (_omitted_alert(omitted, self.max_alerts),)
        complete = result.complete and not omitted
        digest = signed_digest(
            evaluation_id=evaluation_id,
            patient_id=patient_id,
            result=result,
            alerts=alerts,
            complete=complete,
            evaluated_at=evaluated_at,
        )
        evaluation = Evaluation(
            evaluation_id=evaluation_id,
            patient_id=patient_id,
            result=result,
            alerts=alerts,
            omitted=len(omitted),
            evaluated_at=evaluated_at,
            supplied=supplied,
            signature=ResultSignature(
                algorithm=self.signer.algorithm,
                key_id=self.signer.key_id,
                scheme=SCHEME,
                digest=digest,
                signature=self.signer.sign(digest),
            ),
        )
        # The door's answer, before the audit row: an answer it cannot send (too large) raises here,
        # and the transaction takes nothing with it; the failure's own audit row says what happened.
        answer = render(evaluation)
        responder = principal.role == "EMERGENCY_RESPONDER"
        shown_ids = [aid for aid, _ in alerts[: len(shown)]]
        service_repo.write_audit(
            conn,
            audit_id=evaluation_id,
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            action=audit["action"],
            outcome="TRUNCATED" if omitted else "SUCCESS",
            patient_id=audit["patient_id"],
            resource_type=audit["resource_type"],
            resource_id=audit["resource_id"],
            phi_accessed=audit["phi_accessed"],
            risk_score=0.6 if responder else 0.1,
            flags=audit["flags"]
            + (["EMERGENCY_ACCESS"] if responder else [])
            + audit["after_role"]
            + ([] if complete else ["INCOMPLETE"])
            + (["TRUNCATED"] if omitted else [])
            + (["UNRESOLVED_ITEMS"] if result.unresolved else []),
            details={
                **_evaluation_details(
                    result,
                    shown,
                    shown_ids,
                    len(omitted),
                    meta,
                    started,
                    len(proposal.medications),
                    len(proposal.foods),
                    seal=lambda doc: self.keys.keyring(conn, principal.tenant_id).encrypt(
                        service_repo.AUDIT_TABLE, service_repo.SEALED_RULES, evaluation_id, doc
                    ),
                    cap=self.max_alerts,
                ),
                **audit["details"],  # a client's id and whom it acts for: added by write_audit, from the context
            },
        )
        metrics.observe_evaluation(time.perf_counter() - started, result)
        return answer, evaluation_id


def _evaluation_details(
    result: EvaluationResult,
    shown: Sequence[Alert],
    alert_ids: list[str],
    omitted: int,
    meta: RequestMeta,
    started: float,
    proposed: int,
    foods: int,
    *,
    seal: Callable[[str], str],
    cap: int,
) -> dict[str, Any]:
    # Ids, codes and counts only: no drug names, no allergens, no free text. Rule ids are authored names
    # ("ddi-warfarin-nsaid", "allergy-food-peanut"): next to a patient id they disclose the patient's
    # medications and allergies, so which rules fired is sealed with the tenant's data key.
    counts = {s.name: 0 for s in Severity}
    for a in result.alerts:
        counts[a.severity.name] += 1
    rules = {
        "alerts": [
            {"alert_id": aid, "rule_id": a.rule_id, "rule_version": a.rule_version, "severity": a.severity.name}
            for a, aid in zip(shown, alert_ids, strict=True)
        ],
        # Bounded like the answer: the row lists what was shown and counts the rest.
        "shadow_alerts": [{"rule_id": a.rule_id, "severity": a.severity.name} for a in result.shadow_alerts[:cap]],
        "incomplete_rules": [
            {"rule_id": e.rule_id, "insufficient_data": e.insufficient_data} for e in result.rule_errors
        ],
    }
    # What could not be resolved is counted, never named: a drug's name or code next to a patient
    # id is PHI.
    unresolved_medications = sum(1 for u in result.unresolved if u.kind == "medication")
    unresolved_foods = sum(1 for u in result.unresolved if u.kind == "food")
    return {
        "request_id": meta.request_id,
        "ruleset_version": result.ruleset_version,
        "knowledge_version": result.knowledge_version,
        "vocabulary_version": result.vocabulary_version,
        "complete": result.complete,
        "unresolved_medications": unresolved_medications,
        "unresolved_allergies": len(result.unresolved) - unresolved_medications - unresolved_foods,
        "unresolved_foods": unresolved_foods,
        "alert_counts": counts,
        "alert_ids": alert_ids,
        "alerts_omitted": omitted,  # past PRANEYA_MAX_ALERTS: counted, not listed
        "incomplete_rule_count": len(result.rule_errors),
        "shadow_alert_count": len(result.shadow_alerts),
        service_repo.SEALED_RULES: seal(json.dumps(rules, sort_keys=True, separators=(",", ":"))),
        "rules_evaluated": result.rules_evaluated,
        "proposed_medications": proposed,
        "proposed_foods": foods,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }

"""The ClinicalSafety servicer: protobuf in, one RLS-scoped transaction, protobuf out.

Every RPC runs through `_call`, which owns the mapping from failures to status codes, so handlers
hold only their clinical logic. No handler turns an error into "no alerts": an evaluation either
answers with its audit row written, or fails with a status the caller can act on.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from engine.app.calls import OnFailure, audit_failure
from engine.app.evaluation import MAX_FOODS, MAX_PROPOSED_MEDICATIONS, Evaluation, Proposal, SuppliedPatient
from engine.app.failures import Code, Failure, invalid
from engine.app.feedback import Feedback
from engine.app.service import Services
from engine.app.supplied import supplied_from_fhir
from engine.app.validation import ID as _ID
from engine.app.validation import MAX_CODE, MAX_DISPLAY, MAX_REASON, MAX_TEXT  # noqa: F401 - re-exported limits
from engine.app.validation import check_id as _check_id
from engine.app.validation import check_reason as _check_reason
from engine.app.validation import check_text as _check_text
from engine.doors.grpc.auth import current_principal
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc
from engine.doors.grpc.request_ids import current_request_id
from engine.fhir import FhirError, parse_draft_orders
from engine.identity import CODE_SYSTEMS, SYSTEM_URIS, parse_coding
from engine.model import Alert, MedicationFact, UnresolvedItem
from store import patients, service_repo
from store.admin import grant_consent, revoke_consent
from store.session import Principal, RequestMeta

__all__ = ["ClinicalSafetyServicer", "abort", "evaluation_pb"]

log = logging.getLogger("praneya.api")
T = TypeVar("T")

_BREAK_GLASS_ROLES = ("EMERGENCY_RESPONDER", "CLINICAL_ADVISOR")
# Which code systems identify what: a medication is a drug product or ingredient (RxNorm, NDC); an
# allergen may also be a food or substance (SNOMED CT). A condition code on a drug is refused, not ignored.
_MEDICATION_SYSTEMS = ("rxnorm", "ndc")
_ALLERGEN_SYSTEMS = ("rxnorm", "ndc", "snomed")


def _coding(field: str, parent: Any, systems: tuple[str, ...]) -> patients.CodedAs | None:
    """`parent.coding` -> a coding of one of `systems`, or None when absent (unset, or all empty).

    Errors name the field and never echo the code: a code names a drug, and error details reach
    clients' logs."""
    if not parent.HasField("coding"):
        return None
    c = parent.coding
    if not (c.system.strip() or c.code.strip() or c.display.strip()):
        return None
    system = _check_text(f"{field}.system", c.system, required=True)
    code = _check_text(f"{field}.code", c.code, required=True, limit=MAX_CODE)
    display = _check_text(f"{field}.display", c.display, limit=MAX_DISPLAY)
    assert system is not None and code is not None
    # The same lookup parse_coding makes, so that a bad system and a bad code name different fields.
    short = CODE_SYSTEMS.get(system.lower().rstrip("/"))
    if short is None or short not in systems:
        allowed = ", ".join(f"{s} ({SYSTEM_URIS[s]})" for s in systems)
        raise invalid(f"{field}.system", f"must be one of {allowed}")
    try:
        coding = parse_coding(system, code)
    except ValueError:
        raise invalid(f"{field}.code", f"is not a valid {short} code") from None
    return patients.CodedAs(coding, display)


def _proposed(i: int, m: pb.ProposedMedication) -> MedicationFact:
    where = f"proposed_medications[{i}]"
    coded = _coding(f"{where}.coding", m, _MEDICATION_SYSTEMS)
    name = _check_text(f"{where}.name", m.name)
    if name is None and coded is None:
        raise invalid(f"{where}.name", "is required when there is no coding")
    return MedicationFact(
        id=f"proposed:{i}",
        name=name or "",
        dose=_check_text(f"{where}.dose", m.dose),
        route=_check_text(f"{where}.route", m.route),
        frequency=_check_text(f"{where}.frequency", m.frequency),
        proposed=True,
        coding=coded.coding if coded is not None else None,
    )


def _json(field: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise invalid(field, "is not JSON (UTF-8)") from None


def _draft_orders(field: str, data: bytes) -> tuple[MedicationFact, ...]:
    """FHIR draft orders (JSON bytes) → proposed medications; errors name the element path."""
    if not data:
        return ()
    try:
        return parse_draft_orders(_json(field, data))
    except FhirError as exc:
        raise invalid(field, str(exc)) from None


def _coding_pb(stored: dict[str, Any] | None) -> pb.Coding | None:
    if stored is None:
        return None
    return pb.Coding(system=SYSTEM_URIS[stored["system"]], code=stored["code"], display=stored.get("display") or "")


_UNRESOLVED_KIND = {"medication": pb.MEDICATION, "allergy": pb.ALLERGY, "food": pb.FOOD}


def _unresolved_pb(item: UnresolvedItem) -> pb.UnresolvedItem:
    reason = item.reason.upper()
    return pb.UnresolvedItem(
        item_id=item.item_id,
        kind=_UNRESOLVED_KIND.get(item.kind, pb.UNRESOLVED_KIND_UNSPECIFIED),
        reason=pb.UnresolvedReason.Value(reason)
        if reason in pb.UnresolvedReason.keys()
        else pb.UNRESOLVED_REASON_UNSPECIFIED,
        text=item.text,
        parts=list(item.parts),
        suggestions=list(item.suggestions),
        notes=list(item.notes),
    )


def _ts(value: datetime | None) -> Timestamp:
    ts = Timestamp()
    if value is not None:
        ts.FromDatetime(value.astimezone(UTC))
    return ts


_EVIDENCE = {"UNKNOWN": pb.EVIDENCE_UNKNOWN}


def _alert_pb(alert: Alert, aid: str) -> pb.Alert:
    return pb.Alert(
        alert_id=aid,
        kind=pb.AlertKind.Value(alert.kind.value),
        severity=pb.Severity.Value(alert.severity.name),
        summary=alert.summary,
        detail=alert.detail,
        recommendation=alert.recommendation,
        evidence=_EVIDENCE.get(alert.evidence.name) or pb.EvidenceLevel.Value(alert.evidence.name),
        involved_item_ids=list(alert.involved_ids),
        rule_id=alert.rule_id,
        rule_version=alert.rule_version,
        interruptive=alert.interruptive,
        references=list(alert.references),
    )


def _meta(context: grpc.ServicerContext, request_id: str, statement_timeout_ms: int) -> RequestMeta:
    md = dict(context.invocation_metadata() or ())
    remaining = context.time_remaining()
    timeout = statement_timeout_ms
    if remaining is not None:
        # Honour the caller's deadline inside the database too.
        timeout = max(1, min(timeout, int(remaining * 1000) - 20))
    return RequestMeta(
        client_addr=context.peer() or "",
        user_agent=str(md.get("user-agent", ""))[:300],
        request_id=request_id,
        statement_timeout_ms=timeout,
    )


def abort(context: grpc.ServicerContext, failure: Failure) -> NoReturn:
    context.abort(grpc.StatusCode[failure.code.name], failure.message)
    raise AssertionError("context.abort returns only by raising")


def evaluation_pb(e: Evaluation) -> pb.EvaluateSafetyResponse:
    """An evaluation as the gRPC API answers it (the signed canonical bytes say the same)."""
    result = e.result
    return pb.EvaluateSafetyResponse(
        evaluation_id=e.evaluation_id,
        alerts=[_alert_pb(a, aid) for aid, a in e.alerts],
        complete=e.complete,
        completeness=pb.COMPLETE if e.complete else pb.INCOMPLETE,
        incomplete_rules=[
            pb.RuleIssue(
                rule_id=r.rule_id,
                rule_version=r.rule_version,
                reason=r.reason,
                insufficient_data=r.insufficient_data,
            )
            for r in result.rule_errors
        ],
        ruleset_version=result.ruleset_version,
        knowledge_version=result.knowledge_version,
        evaluated_at=_ts(e.evaluated_at),
        unresolved_items=[_unresolved_pb(u) for u in result.unresolved],
        vocabulary_version=result.vocabulary_version,
        signature=pb.ResultSignature(
            algorithm=e.signature.algorithm,
            key_id=e.signature.key_id,
            canonical=e.signature.canonical,
            signature=e.signature.signature,
        ),
    )


class ClinicalSafetyServicer(pb_grpc.ClinicalSafetyServicer):  # type: ignore[misc]
    def __init__(
        self,
        services: Services,
        *,
        emergency_grant_minutes: int = 60,
        statement_timeout_ms: int = 5000,
        max_active_items: int = 100,
        max_response_bytes: int = 4 << 20,
    ) -> None:
        self.services = services
        self.db = services.db
        self.keys = services.keys
        self.signer = services.signer
        self.calls = services.calls
        self.evaluations = services.evaluations
        self.feedback = services.feedback
        self.emergency_grant_minutes = emergency_grant_minutes
        self.statement_timeout_ms = statement_timeout_ms
        # The bounds on one call's work (issue 13, item 1): active items per patient and category
        # (refused on write; the evaluation use case refuses a record that holds more), alerts per
        # answer (the use case), and the answer's size (checked here, before the commit).
        self.max_active_items = max_active_items
        self.max_response_bytes = max_response_bytes

    # -- the one place failures become statuses ---------------------------------------------------

    def _call(
        self,
        name: str,
        context: grpc.ServicerContext,
        fn: Callable[[Principal, RequestMeta], T],
        *,
        phi: bool = True,
        roles: tuple[str, ...] | None = None,
        scopes: tuple[str, ...] = (),
        on_failure: OnFailure | None = None,
        log_fields: dict[str, str] | None = None,
    ) -> T:
        """`fn` through the use cases' runner (engine/app/calls.py); its Failure becomes the status."""
        principal = current_principal.get()
        meta = self._meta(context)
        try:
            return self.calls.run(
                name, principal, meta, fn, phi=phi, roles=roles, scopes=scopes, on_failure=on_failure,
                log_fields=log_fields,
            )
        except Failure as failure:
            abort(context, failure)

    def _meta(self, context: grpc.ServicerContext) -> RequestMeta:
        # The id the request-id interceptor sent back to the caller; a fresh one if it is not installed.
        return _meta(context, current_request_id.get("") or uuid.uuid4().hex, self.statement_timeout_ms)

    def refuse_undecodable(self, rpc: str, context: grpc.ServicerContext) -> None:
        """How the decoding interceptor (engine/doors/grpc/decoding.py) refuses bytes that are not a request
        message: through `_call`, so it is logged and counted, and an unknown caller hears
        UNAUTHENTICATED as for any other failure."""

        def fail(principal: Principal, meta: RequestMeta) -> None:
            raise Failure(Code.INVALID_ARGUMENT, f"the request is not a valid {rpc} request message")

        self._call(rpc, context, fail, phi=False)

    # -- EvaluateSafety -----------------------------------------------------------------------------

    def EvaluateSafety(
        self, request: pb.EvaluateSafetyRequest, context: grpc.ServicerContext
    ) -> pb.EvaluateSafetyResponse:
        def prepare() -> Proposal:
            if len(request.proposed_medications) > MAX_PROPOSED_MEDICATIONS:
                raise invalid("proposed_medications", f"at most {MAX_PROPOSED_MEDICATIONS}")
            if len(request.proposed_foods) > MAX_FOODS:
                raise invalid("proposed_foods", f"at most {MAX_FOODS}")
            drafts = _draft_orders("draft_orders", request.draft_orders)
            return Proposal(
                medications=tuple(_proposed(i, m) for i, m in enumerate(request.proposed_medications)) + drafts,
                foods=tuple(
                    f
                    for i, raw in enumerate(request.proposed_foods)
                    if (f := _check_text(f"proposed_foods[{i}]", raw, required=True)) is not None
                ),
                recipe_id=request.recipe_id or None,
            )

        try:
            return self.evaluations.stored(
                "EvaluateSafety",
                current_principal.get(),
                self._meta(context),
                request.patient_id,
                Proposal(),
                self._render,
                prepare=prepare,
            )
        except Failure as failure:
            abort(context, failure)

    def EvaluateSuppliedData(
        self, request: pb.EvaluateSuppliedDataRequest, context: grpc.ServicerContext
    ) -> pb.EvaluateSafetyResponse:
        principal = current_principal.get()

        def build() -> tuple[SuppliedPatient, Proposal]:
            if not request.patient_data:
                raise invalid("patient_data", "is required (a FHIR R4 Bundle or array of resources, as JSON)")
            if len(request.proposed_medications) > MAX_PROPOSED_MEDICATIONS:
                raise invalid("proposed_medications", f"at most {MAX_PROPOSED_MEDICATIONS}")
            if len(request.proposed_foods) > MAX_FOODS:
                raise invalid("proposed_foods", f"at most {MAX_FOODS}")
            reference = _check_text("patient_reference", request.patient_reference)
            return supplied_from_fhir(
                _json("patient_data", request.patient_data),
                tenant_id=principal.tenant_id,
                on=datetime.now(UTC).date(),
                draft_orders=_json("draft_orders", request.draft_orders) if request.draft_orders else None,
                reference=reference,
                data_label="patient_data: ",
                orders_label="draft_orders: ",
                extra_medications=tuple(_proposed(i, m) for i, m in enumerate(request.proposed_medications)),
                foods=tuple(
                    f
                    for i, raw in enumerate(request.proposed_foods)
                    if (f := _check_text(f"proposed_foods[{i}]", raw, required=True)) is not None
                ),
            )

        try:
            meta = self._meta(context)
            return self.evaluations.supplied("EvaluateSuppliedData", principal, meta, build, self._render)
        except Failure as failure:
            abort(context, failure)

    def _render(self, evaluation: Evaluation) -> pb.EvaluateSafetyResponse:
        response = evaluation_pb(evaluation)
        size = response.ByteSize()
        if size > self.max_response_bytes:
            # Before the commit: the rollback takes the audit row with it, and the failure's own
            # audit row (RESOURCE_EXHAUSTED) says what the caller got. Sizes, never content.
            raise Failure(
                Code.RESOURCE_EXHAUSTED,
                f"the answer is {size} bytes, over the {self.max_response_bytes}-byte limit"
                " (PRANEYA_MAX_MESSAGE_BYTES); nothing was returned",
            )
        return response

    # -- break the glass ----------------------------------------------------------------------------

    def EmergencyAccess(
        self, request: pb.EmergencyAccessRequest, context: grpc.ServicerContext
    ) -> pb.EmergencyAccessResponse:
        def run(principal: Principal, meta: RequestMeta) -> pb.EmergencyAccessResponse:
            _check_id("patient_id", request.patient_id)
            if request.reason_code == pb.EMERGENCY_REASON_CODE_UNSPECIFIED:
                raise invalid("reason_code", "is required (ETREAT or BTG)")
            if request.reason_code not in (pb.ETREAT, pb.BTG):  # enums are open: any number can arrive
                raise invalid("reason_code", "must be ETREAT or BTG")
            reason = _check_reason("reason_text", request.reason_text)
            with self.db.scoped(principal, meta, verify=True) as conn:
                grant = service_repo.break_the_glass(
                    conn,
                    self.keys,
                    tenant_id=principal.tenant_id,
                    requesting_user_id=principal.user_id,
                    patient_id=request.patient_id,
                    reason_code=pb.EmergencyReasonCode.Name(request.reason_code),
                    reason_text=reason,
                    grant_minutes=self.emergency_grant_minutes,
                )
            meds = [
                pb.EmergencyMedication(
                    medication_id=m["id"],
                    name=m["generic_name"] or "",
                    brand_name=m.get("brand_name") or "",
                    dose=m.get("dosage") or "",
                    frequency=m.get("frequency") or "",
                    route=m.get("route") or "",
                    is_emergency_medication=bool(m.get("is_emergency_medication")),
                )
                for m in grant.active_medications
            ]
            return pb.EmergencyAccessResponse(
                grant_id=grant.grant_id,
                expires_at=_ts(grant.expires_at),
                audit_id=grant.audit_id,
                critical_allergies=[
                    pb.EmergencyAllergy(
                        allergy_id=a["id"],
                        allergen=a["allergen"] or "",
                        category=a["allergen_category"],
                        severity=a["severity"],
                        reactions=a["reactions"],
                        emergency_medication=a.get("emergency_medication") or "",
                    )
                    for a in grant.critical_allergies
                ],
                active_medications=meds,
                active_conditions=[
                    pb.EmergencyCondition(
                        condition_id=c["id"],
                        name=c["name"] or "",
                        code=c.get("code") or "",
                        is_critical=bool(c["is_critical"]),
                    )
                    for c in grant.active_conditions
                ],
                emergency_medications=[m for m in meds if m.is_emergency_medication],
            )

        return self._call(
            "EmergencyAccess",
            context,
            run,
            roles=_BREAK_GLASS_ROLES,
            on_failure=audit_failure("EMERGENCY_ACCESS", request.patient_id or None),
        )

    def ListEmergencyAccessEvents(
        self, request: pb.ListEmergencyAccessEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListEmergencyAccessEventsResponse:
        def run(principal: Principal, meta: RequestMeta) -> pb.ListEmergencyAccessEventsResponse:
            size = request.page_size or 50
            if not 1 <= size <= 500:
                raise invalid("page_size", "must be between 1 and 500")
            after = _decode_page_token(request.page_token) if request.page_token else None
            with self.db.scoped(principal, meta, verify=True) as conn:
                events = service_repo.list_grants(
                    conn, self.keys, unreviewed_only=request.unreviewed_only, limit=size + 1, after=after
                )
            page, more = events[:size], len(events) > size
            token = _encode_page_token(page[-1].granted_at, page[-1].grant_id) if more else ""
            return pb.ListEmergencyAccessEventsResponse(events=[_event_pb(e) for e in page], next_page_token=token)

        return self._call("ListEmergencyAccessEvents", context, run, roles=("SUPER_ADMIN",))

    def ReviewEmergencyAccessEvent(
        self, request: pb.ReviewEmergencyAccessEventRequest, context: grpc.ServicerContext
    ) -> pb.ReviewEmergencyAccessEventResponse:
        def run(principal: Principal, meta: RequestMeta) -> pb.ReviewEmergencyAccessEventResponse:
            _check_id("grant_id", request.grant_id)
            if request.outcome not in ("APPROPRIATE", "INAPPROPRIATE", "NEEDS_FOLLOW_UP"):
                raise invalid("outcome", "must be APPROPRIATE, INAPPROPRIATE or NEEDS_FOLLOW_UP")
            notes = _check_text("notes", request.notes, limit=MAX_REASON) or ""
            with self.db.scoped(principal, meta, verify=True) as conn:
                event = service_repo.review_grant(
                    conn,
                    self.keys,
                    tenant_id=principal.tenant_id,
                    grant_id=request.grant_id,
                    reviewer=principal.user_id,
                    outcome=request.outcome,
                    notes=notes,
                )
            return pb.ReviewEmergencyAccessEventResponse(event=_event_pb(event))

        return self._call("ReviewEmergencyAccessEvent", context, run, roles=("SUPER_ADMIN",))

    def EndEmergencyAccess(
        self, request: pb.EndEmergencyAccessRequest, context: grpc.ServicerContext
    ) -> pb.EndEmergencyAccessResponse:
        def run(principal: Principal, meta: RequestMeta) -> pb.EndEmergencyAccessResponse:
            _check_id("grant_id", request.grant_id)
            reason = _check_reason("reason", request.reason)
            audit_id = str(uuid.uuid4())
            with self.db.scoped(principal, meta, verify=True) as conn:
                event = service_repo.end_grant(
                    conn, self.keys, tenant_id=principal.tenant_id, grant_id=request.grant_id, reason=reason
                )
                assert event.ended_at is not None
                service_repo.write_audit(
                    conn,
                    audit_id=audit_id,
                    tenant_id=principal.tenant_id,
                    user_id=principal.user_id,
                    action="END_EMERGENCY_ACCESS",
                    outcome="SUCCESS",
                    patient_id=event.patient_id,
                    resource_type="healthcare.emergency_access_grants",
                    resource_id=event.grant_id,
                    phi_accessed=False,
                    risk_score=0.3,
                    flags=["BREAK_GLASS_ENDED"]
                    + ([] if event.grantee_user_id == principal.user_id else ["ENDED_BY_ADMIN"]),
                    details={
                        "request_id": meta.request_id,
                        "grant_id": event.grant_id,
                        "grantee_user_id": event.grantee_user_id,
                        "expires_at": event.expires_at.isoformat(),
                    },
                )
            return pb.EndEmergencyAccessResponse(
                grant_id=event.grant_id, ended_at=_ts(event.ended_at), audit_id=audit_id
            )

        return self._call(
            "EndEmergencyAccess",
            context,
            run,
            roles=(*_BREAK_GLASS_ROLES, "SUPER_ADMIN"),
            on_failure=audit_failure("END_EMERGENCY_ACCESS", None),
        )

    # -- patient records ----------------------------------------------------------------------------

    def _write(
        self, name: str, context: grpc.ServicerContext, patient_id: str, write: Callable[[Any], str]
    ) -> pb.RecordWriteResponse:
        def run(principal: Principal, meta: RequestMeta) -> pb.RecordWriteResponse:
            _check_id("patient_id", patient_id)
            with self.db.scoped(principal, meta, verify=True) as conn:
                row_id = write(conn)
                version = patients.profile_version(conn, patient_id)
            return pb.RecordWriteResponse(id=row_id, profile_version=version)

        return self._call(name, context, run)

    def PutMedication(self, request: pb.PutMedicationRequest, context: grpc.ServicerContext) -> pb.RecordWriteResponse:
        m = request.medication

        def write(conn: Any) -> str:
            med = patients.MedicationInput(
                generic_name=_required("medication.generic_name", m.generic_name),
                brand_name=_check_text("medication.brand_name", m.brand_name),
                dosage=_check_text("medication.dose", m.dose),
                frequency=_check_text("medication.frequency", m.frequency),
                route=_check_text("medication.route", m.route),
                indication=_check_text("medication.indication", m.indication),
                prescribed_by=_check_text("medication.prescribed_by", m.prescribed_by),
                is_emergency_medication=m.is_emergency_medication,
                coding=_coding("medication.coding", m, _MEDICATION_SYSTEMS),
            )
            mid = _check_id("medication.medication_id", m.medication_id) if m.medication_id else None
            return patients.put_medication(
                conn,
                self.keys,
                request.patient_id,
                med,
                medication_id=mid,
                must_exist=mid is not None,
                max_active=self.max_active_items,
            )

        return self._write("PutMedication", context, request.patient_id, write)

    def DeactivateMedication(
        self, request: pb.DeactivateMedicationRequest, context: grpc.ServicerContext
    ) -> pb.RecordWriteResponse:
        def write(conn: Any) -> str:
            mid = _check_id("medication_id", request.medication_id)
            patients.deactivate_medication(conn, self.keys, request.patient_id, mid)
            return mid

        return self._write("DeactivateMedication", context, request.patient_id, write)

    def PutAllergy(self, request: pb.PutAllergyRequest, context: grpc.ServicerContext) -> pb.RecordWriteResponse:
        a = request.allergy

        def write(conn: Any) -> str:
            category = a.category.strip().upper()
            if category not in ("DRUG", "FOOD", "ENVIRONMENTAL", "INSECT", "LATEX", "OTHER"):
                raise invalid("allergy.category", "must be DRUG, FOOD, ENVIRONMENTAL, INSECT, LATEX or OTHER")
            severity = a.severity.strip().upper()
            if severity not in ("MILD", "MODERATE", "SEVERE", "ANAPHYLACTIC"):
                raise invalid("allergy.severity", "must be MILD, MODERATE, SEVERE or ANAPHYLACTIC")
            if len(a.reactions) > 20:
                raise invalid("allergy.reactions", "at most 20")
            reactions = tuple(
                r for i, raw in enumerate(a.reactions) if (r := _check_text(f"allergy.reactions[{i}]", raw)) is not None
            )
            allergy = patients.AllergyInput(
                _required("allergy.allergen", a.allergen),
                category,
                severity,
                reactions,
                _check_text("allergy.emergency_medication", a.emergency_medication),
                _coding("allergy.coding", a, _ALLERGEN_SYSTEMS),
            )
            aid = _check_id("allergy.allergy_id", a.allergy_id) if a.allergy_id else None
            return patients.put_allergy(
                conn,
                self.keys,
                request.patient_id,
                allergy,
                allergy_id=aid,
                must_exist=aid is not None,
                max_active=self.max_active_items,
            )

        return self._write("PutAllergy", context, request.patient_id, write)

    def PutCondition(self, request: pb.PutConditionRequest, context: grpc.ServicerContext) -> pb.RecordWriteResponse:
        c = request.condition

        def write(conn: Any) -> str:
            condition = patients.ConditionInput(
                _required("condition.name", c.name),
                _check_text("condition.code", c.code),
                None,
                c.is_critical,
            )
            cid = _check_id("condition.condition_id", c.condition_id) if c.condition_id else None
            return patients.put_condition(
                conn,
                self.keys,
                request.patient_id,
                condition,
                condition_id=cid,
                must_exist=cid is not None,
                max_active=self.max_active_items,
            )

        return self._write("PutCondition", context, request.patient_id, write)

    def PutBiometricReading(
        self, request: pb.PutBiometricReadingRequest, context: grpc.ServicerContext
    ) -> pb.RecordWriteResponse:
        r = request.reading

        def write(conn: Any) -> str:
            rtype = r.reading_type.strip().lower()
            if not re.match(r"^[a-z][a-z0-9_]{0,39}$", rtype):
                raise invalid("reading.reading_type", "must be a lower-case name such as egfr or potassium")
            if not math.isfinite(r.value):
                raise invalid("reading.value", "must be a finite number")
            taken = _timestamp("reading.taken_at", r.taken_at) if r.HasField("taken_at") else None
            if taken is not None and taken > datetime.now(UTC) + timedelta(minutes=5):
                raise invalid("reading.taken_at", "is in the future")
            reading = patients.BiometricInput(rtype, r.value, _check_text("reading.unit", r.unit), taken)
            return patients.put_biometric(
                conn, self.keys, request.patient_id, reading, max_active=self.max_active_items
            )

        return self._write("PutBiometricReading", context, request.patient_id, write)

    def GetHealthProfile(self, request: pb.GetHealthProfileRequest, context: grpc.ServicerContext) -> pb.HealthProfile:
        def run(principal: Principal, meta: RequestMeta) -> pb.HealthProfile:
            _check_id("patient_id", request.patient_id)
            with self.db.scoped(principal, meta) as conn:
                rec = patients.read_patient(conn, self.keys, request.patient_id, expected_role=principal.role)
                service_repo.write_audit(
                    conn,
                    audit_id=str(uuid.uuid4()),
                    tenant_id=principal.tenant_id,
                    user_id=principal.user_id,
                    action="READ_HEALTH_PROFILE",
                    outcome="SUCCESS",
                    patient_id=request.patient_id,
                    resource_type="healthcare.health_profiles",
                    resource_id=rec.profile_id,
                    phi_accessed=True,
                    risk_score=0.2,
                    flags=["PHI_READ"],
                    details={"request_id": meta.request_id},
                )
            return pb.HealthProfile(
                patient_id=rec.patient_id,
                version=rec.version,
                subscription_tier=rec.subscription_tier,
                age=rec.age() or 0,
                sex=rec.profile.get("sex") or "",
                pregnancy_status=rec.profile.get("pregnancy_status") or "",
                medications=[
                    pb.Medication(
                        medication_id=m["id"],
                        generic_name=m["generic_name"],
                        brand_name=m["brand_name"] or "",
                        dose=m["dosage"] or "",
                        frequency=m["frequency"] or "",
                        route=m["route"] or "",
                        indication=m["indication"] or "",
                        prescribed_by=m["prescribed_by"] or "",
                        is_emergency_medication=m["is_emergency_medication"],
                        coding=_coding_pb(m["coding"]),
                    )
                    for m in rec.medications
                ],
                allergies=[
                    pb.Allergy(
                        allergy_id=a["id"],
                        allergen=a["allergen"],
                        category=a["allergen_category"],
                        severity=a["severity"],
                        reactions=a["reactions"],
                        emergency_medication=a["emergency_medication"] or "",
                        coding=_coding_pb(a["coding"]),
                    )
                    for a in rec.allergies
                ],
                conditions=[
                    pb.Condition(
                        condition_id=c["id"],
                        name=c["name"],
                        code=c["code"] or "",
                        is_critical=c["is_critical"],
                    )
                    for c in rec.conditions
                ],
                latest_biometrics=[
                    pb.BiometricReading(
                        reading_id=b["id"],
                        reading_type=b["reading_type"],
                        value=b["value"],
                        unit=b["unit"] or "",
                        taken_at=_ts(datetime.fromisoformat(b["taken_at"])),
                    )
                    for b in rec.biometrics
                ],
                withheld_categories=sorted(rec.withheld),
            )

        return self._call(
            "GetHealthProfile",
            context,
            run,
            on_failure=audit_failure("READ_HEALTH_PROFILE", request.patient_id or None),
        )

    def GrantConsent(self, request: pb.GrantConsentRequest, context: grpc.ServicerContext) -> pb.GrantConsentResponse:
        def run(principal: Principal, meta: RequestMeta) -> pb.GrantConsentResponse:
            grantee = _check_id("grantee_user_id", request.grantee_user_id)
            if not 0 <= request.expires_in_days <= 3650:
                raise invalid("expires_in_days", "must be between 0 (no expiry) and 3650")
            categories = [c.strip().upper() for c in request.categories]
            with self.db.scoped(principal, meta, verify=True) as conn:
                cid = grant_consent(
                    conn,
                    self.keys,
                    principal.tenant_id,
                    principal.user_id,
                    grantee,
                    categories,
                    timedelta(days=request.expires_in_days) if request.expires_in_days else None,
                    _check_text("purpose", request.purpose),
                )
            return pb.GrantConsentResponse(consent_id=cid)

        return self._call("GrantConsent", context, run)

    def RevokeConsent(
        self, request: pb.RevokeConsentRequest, context: grpc.ServicerContext
    ) -> pb.RevokeConsentResponse:
        def run(principal: Principal, meta: RequestMeta) -> pb.RevokeConsentResponse:
            cid = _check_id("consent_id", request.consent_id)
            with self.db.scoped(principal, meta, verify=True) as conn:
                if not revoke_consent(conn, cid):
                    raise LookupError("consent not found")
            return pb.RevokeConsentResponse(revoked=True)

        return self._call("RevokeConsent", context, run)

    # -- alert feedback -----------------------------------------------------------------------------

    def RecordAlertFeedback(
        self, request: pb.RecordAlertFeedbackRequest, context: grpc.ServicerContext
    ) -> pb.RecordAlertFeedbackResponse:
        # Enums are open: any number can arrive; an unknown one is named, not taken for "unspecified".
        if request.outcome == pb.FEEDBACK_OUTCOME_UNSPECIFIED:
            outcome = ""
        else:
            known = request.outcome in pb.FeedbackOutcome.values()
            outcome = pb.FeedbackOutcome.Name(request.outcome) if known else "?"
        if request.reason == pb.OVERRIDE_REASON_UNSPECIFIED:
            reason = None
        else:
            reason = pb.OverrideReason.Name(request.reason) if request.reason in pb.OverrideReason.values() else "?"
        feedback = Feedback(
            alert_id=request.alert_id,
            outcome=outcome,
            reason=reason,
            comment=request.comment,
            evaluation_id=request.evaluation_id,
        )
        try:
            principal, meta = current_principal.get(), self._meta(context)
            [fid] = self.feedback.record("RecordAlertFeedback", principal, meta, [feedback])
        except Failure as failure:
            abort(context, failure)
        return pb.RecordAlertFeedbackResponse(feedback_id=fid)

    def GetOverrideRates(
        self, request: pb.GetOverrideRatesRequest, context: grpc.ServicerContext
    ) -> pb.GetOverrideRatesResponse:
        def run(principal: Principal, meta: RequestMeta) -> pb.GetOverrideRatesResponse:
            days = request.since_days or 90
            if not 1 <= days <= 3650:
                raise invalid("since_days", "must be between 1 and 3650")
            with self.db.scoped(principal, meta, verify=True) as conn:
                rows = service_repo.override_rates(conn, self.keys, tenant_id=principal.tenant_id, since_days=days)
            return pb.GetOverrideRatesResponse(
                rules=[
                    pb.RuleOverrideRate(rule_id=r, shown=n, overridden=o, override_rate=o / n if n else 0.0)
                    for r, n, o in rows
                ]
            )

        return self._call("GetOverrideRates", context, run, phi=False, roles=("CLINICAL_ADVISOR", "SUPER_ADMIN"))

    def GetSigningKey(
        self, request: pb.GetSigningKeyRequest, context: grpc.ServicerContext
    ) -> pb.GetSigningKeyResponse:
        def run(principal: Principal, meta: RequestMeta) -> pb.GetSigningKeyResponse:
            # The key is public, but the rule is the same for every RPC: a token whose user the
            # database does not vouch for gets UNAUTHENTICATED, not an answer.
            with self.db.scoped(principal, meta, verify=True):
                pass
            return pb.GetSigningKeyResponse(
                algorithm=self.signer.algorithm,
                key_id=self.signer.key_id,
                public_key=self.signer.public_raw,
                public_key_pem=self.signer.public_pem,
            )

        return self._call("GetSigningKey", context, run, phi=False)


def _required(field: str, value: str) -> str:
    text = _check_text(field, value, required=True)
    assert text is not None
    return text


def _event_pb(e: service_repo.GrantEvent) -> pb.EmergencyAccessEvent:
    latest = e.latest_review
    return pb.EmergencyAccessEvent(
        grant_id=e.grant_id,
        patient_id=e.patient_id,
        grantee_user_id=e.grantee_user_id,
        reason_code=pb.EmergencyReasonCode.Value(e.reason_code),
        reason_text=e.reason_text,
        granted_at=_ts(e.granted_at),
        expires_at=_ts(e.expires_at),
        review_outcome=latest.outcome if latest else "",
        reviewed_by=latest.reviewer_user_id if latest else "",
        reviewed_at=_ts(latest.reviewed_at) if latest else None,
        reviews=[
            pb.EmergencyAccessReview(
                review_id=r.review_id,
                outcome=r.outcome,
                reviewer_user_id=r.reviewer_user_id,
                notes=r.notes,
                reviewed_at=_ts(r.reviewed_at),
            )
            for r in e.reviews
        ],
        ended_at=_ts(e.ended_at) if e.ended_at else None,
        ended_by=e.ended_by or "",
        end_reason=e.end_reason or "",
    )


# What google.protobuf.Timestamp may hold: 0001-01-01T00:00:00Z up to 9999-12-31T23:59:59.999999999Z.
_TIMESTAMP_SECONDS = (-62135596800, 253402300799)


def _timestamp(field: str, ts: Timestamp) -> datetime:
    """A request's timestamp as an aware datetime; out of range (the wire allows any int64) is the
    caller's mistake, named as theirs, not an error converting it."""
    if not (_TIMESTAMP_SECONDS[0] <= ts.seconds <= _TIMESTAMP_SECONDS[1] and 0 <= ts.nanos <= 999_999_999):
        raise invalid(field, "is outside 0001-01-01 to 9999-12-31 (or its nanos outside 0 to 999999999)")
    taken: datetime = ts.ToDatetime(tzinfo=UTC)
    return taken


def _encode_page_token(ts: datetime, grant_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ts.isoformat(), grant_id]).encode()).decode()


def _decode_page_token(token: str) -> tuple[datetime, str]:
    # A page token comes back from the client: whatever it holds (NUL, a naive or absurd time, an id
    # of megabytes) is refused here, before it reaches SQL, the same way as a token that is not base64.
    try:
        ts, gid = json.loads(base64.urlsafe_b64decode(token.encode("utf-8", "surrogatepass")))
        after = datetime.fromisoformat(ts)
    except (ValueError, TypeError, OverflowError):
        raise invalid("page_token", "is not a token this service issued") from None
    if after.tzinfo is None or not isinstance(gid, str) or not _ID.fullmatch(gid):
        raise invalid("page_token", "is not a token this service issued")
    return after, gid

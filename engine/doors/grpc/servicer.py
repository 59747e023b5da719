"""The ClinicalSafety servicer: protobuf in, a use case of engine/app, protobuf out.

Each RPC converts its request into the use case's plain inputs, calls it (the use case runs the call
through `Calls.run` and opens the one transaction), and converts the answer back; a `Failure` becomes
the status (`abort`). No handler turns an error into "no alerts": an evaluation either answers with
its audit row written, or fails with a status the caller can act on.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from engine.app.calls import OnFailure
from engine.app.emergency import BreakGlass, EmergencyMedicationView
from engine.app.evaluation import MAX_FOODS, MAX_PROPOSED_MEDICATIONS, Evaluation, Proposal, SuppliedPatient
from engine.app.failures import Code, Failure, invalid
from engine.app.feedback import Feedback
from engine.app.records import (
    MEDICATION_SYSTEMS,
    AllergyEntry,
    CodingText,
    ConditionEntry,
    ConsentGrant,
    DemographicsEntry,
    HealthProfileView,
    LactationEntry,
    MedicationEntry,
    MedicationView,
    PregnancyEntry,
    ReadingEntry,
    RecordWritten,
    check_coding,
)
from engine.app.service import Services
from engine.app.supplied import supplied_from_fhir
from engine.app.validation import MAX_CODE, MAX_DISPLAY, MAX_REASON, MAX_TEXT  # noqa: F401 - re-exported limits
from engine.app.validation import check_text as _check_text
from engine.doors.grpc.auth import current_principal
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc
from engine.doors.grpc.request_ids import current_request_id
from engine.fhir import FhirError, parse_draft_orders
from engine.model import Alert, MedicationFact, UnresolvedItem
from store import service_repo
from store.session import Principal, RequestMeta

__all__ = ["ClinicalSafetyServicer", "abort", "evaluation_pb"]

log = logging.getLogger("praneya.api")
T = TypeVar("T")


def _coding_text(parent: Any) -> CodingText | None:
    """`parent.coding` as the use cases take it; None when unset."""
    if not parent.HasField("coding"):
        return None
    c = parent.coding
    return CodingText(c.system, c.code, c.display)


def _enum_name(enum: Any, number: int) -> str:
    """An enum field as the use cases take it: "" when unspecified (0), "?" for a number this
    version does not know (enums are open: any number can arrive), else its name."""
    if number == 0:
        return ""
    return str(enum.Name(number)) if number in enum.values() else "?"


def _medication_entry(m: pb.Medication) -> MedicationEntry:
    return MedicationEntry(
        generic_name=m.generic_name,
        medication_id=m.medication_id,
        external_id=m.external_id,
        brand_name=m.brand_name,
        dose=m.dose,
        frequency=m.frequency,
        route=m.route,
        indication=m.indication,
        prescribed_by=m.prescribed_by,
        is_emergency_medication=m.is_emergency_medication,
        coding=_coding_text(m),
    )


def _medication_pb(v: MedicationView) -> pb.Medication:
    return pb.Medication(
        medication_id=v.medication_id,
        generic_name=v.generic_name,
        brand_name=v.brand_name,
        dose=v.dose,
        frequency=v.frequency,
        route=v.route,
        indication=v.indication,
        prescribed_by=v.prescribed_by,
        is_emergency_medication=v.is_emergency_medication,
        coding=_coding_pb(v.coding),
        external_id=v.external_id,
    )


def _emergency_medication_pb(v: EmergencyMedicationView) -> pb.EmergencyMedication:
    return pb.EmergencyMedication(
        medication_id=v.medication_id,
        name=v.name,
        brand_name=v.brand_name,
        dose=v.dose,
        frequency=v.frequency,
        route=v.route,
        is_emergency_medication=v.is_emergency_medication,
    )


def _proposals(request: Any) -> tuple[tuple[MedicationFact, ...], tuple[str, ...]]:
    """The proposed medications and foods of an evaluation request, checked."""
    if len(request.proposed_medications) > MAX_PROPOSED_MEDICATIONS:
        raise invalid("proposed_medications", f"at most {MAX_PROPOSED_MEDICATIONS}")
    if len(request.proposed_foods) > MAX_FOODS:
        raise invalid("proposed_foods", f"at most {MAX_FOODS}")
    medications = tuple(_proposed(i, m) for i, m in enumerate(request.proposed_medications))
    foods = tuple(
        f
        for i, raw in enumerate(request.proposed_foods)
        if (f := _check_text(f"proposed_foods[{i}]", raw, required=True)) is not None
    )
    return medications, foods


def _proposed(i: int, m: pb.ProposedMedication) -> MedicationFact:
    where = f"proposed_medications[{i}]"
    coded = check_coding(f"{where}.coding", _coding_text(m), MEDICATION_SYSTEMS)
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


def _coding_pb(coding: CodingText | None) -> pb.Coding | None:
    if coding is None:
        return None
    return pb.Coding(system=coding.system, code=coding.code, display=coding.display)


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
            signature=e.signature.signature,
            digest=e.signature.digest,
            scheme=e.signature.scheme,
        ),
    )


class ClinicalSafetyServicer(pb_grpc.ClinicalSafetyServicer):  # type: ignore[misc]
    def __init__(
        self,
        services: Services,
        *,
        statement_timeout_ms: int = 5000,
        max_response_bytes: int = 4 << 20,
    ) -> None:
        self.services = services
        self.db = services.db
        self.keys = services.keys
        self.signer = services.signer
        self.calls = services.calls
        self.evaluations = services.evaluations
        self.feedback = services.feedback
        self.statement_timeout_ms = statement_timeout_ms
        # The bounds on one call's work (issue 13, item 1): active items per patient and category
        # (the records use case refuses them on write, the evaluation use case refuses a record that
        # holds more), alerts per answer (the evaluation use case), and the answer's size (checked
        # here, before the commit).
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
            medications, foods = _proposals(request)
            drafts = _draft_orders("draft_orders", request.draft_orders)
            return Proposal(medications=medications + drafts, foods=foods, recipe_id=request.recipe_id or None)

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
            medications, foods = _proposals(request)
            reference = _check_text("patient_reference", request.patient_reference)
            return supplied_from_fhir(
                _json("patient_data", request.patient_data),
                tenant_id=principal.tenant_id,
                on=datetime.now(UTC).date(),
                draft_orders=_json("draft_orders", request.draft_orders) if request.draft_orders else None,
                reference=reference,
                data_label="patient_data: ",
                orders_label="draft_orders: ",
                extra_medications=medications,
                foods=foods,
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

    def _run(self, context: grpc.ServicerContext, fn: Callable[[Principal, RequestMeta], T]) -> T:
        """A use case's call with this request's principal and meta; its Failure becomes the status."""
        try:
            return fn(current_principal.get(), self._meta(context))
        except Failure as failure:
            abort(context, failure)

    def EmergencyAccess(
        self, request: pb.EmergencyAccessRequest, context: grpc.ServicerContext
    ) -> pb.EmergencyAccessResponse:
        reason_code = _enum_name(pb.EmergencyReasonCode, request.reason_code)
        ask = BreakGlass(request.patient_id, reason_code, request.reason_text)
        s = self._run(context, lambda p, m: self.services.emergency.break_the_glass(p, m, ask))
        meds = [_emergency_medication_pb(v) for v in s.active_medications]
        return pb.EmergencyAccessResponse(
            grant_id=s.grant_id,
            expires_at=_ts(s.expires_at),
            audit_id=s.audit_id,
            critical_allergies=[
                pb.EmergencyAllergy(
                    allergy_id=a.allergy_id,
                    allergen=a.allergen,
                    category=a.category,
                    severity=a.severity,
                    reactions=list(a.reactions),
                    emergency_medication=a.emergency_medication,
                )
                for a in s.critical_allergies
            ],
            active_medications=meds,
            active_conditions=[
                pb.EmergencyCondition(condition_id=c.condition_id, name=c.name, code=c.code, is_critical=c.is_critical)
                for c in s.active_conditions
            ],
            emergency_medications=[m for m in meds if m.is_emergency_medication],
        )

    def ListEmergencyAccessEvents(
        self, request: pb.ListEmergencyAccessEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListEmergencyAccessEventsResponse:
        page = self._run(
            context,
            lambda p, m: self.services.emergency.list_events(
                p, m, page_size=request.page_size, page_token=request.page_token,
                unreviewed_only=request.unreviewed_only,
            ),
        )
        return pb.ListEmergencyAccessEventsResponse(
            events=[_event_pb(e) for e in page.events], next_page_token=page.next_page_token
        )

    def ReviewEmergencyAccessEvent(
        self, request: pb.ReviewEmergencyAccessEventRequest, context: grpc.ServicerContext
    ) -> pb.ReviewEmergencyAccessEventResponse:
        event = self._run(
            context,
            lambda p, m: self.services.emergency.review(p, m, request.grant_id, request.outcome, request.notes),
        )
        return pb.ReviewEmergencyAccessEventResponse(event=_event_pb(event))

    def EndEmergencyAccess(
        self, request: pb.EndEmergencyAccessRequest, context: grpc.ServicerContext
    ) -> pb.EndEmergencyAccessResponse:
        ended = self._run(context, lambda p, m: self.services.emergency.end(p, m, request.grant_id, request.reason))
        return pb.EndEmergencyAccessResponse(
            grant_id=ended.grant_id, ended_at=_ts(ended.ended_at), audit_id=ended.audit_id
        )

    # -- patient records ----------------------------------------------------------------------------

    @staticmethod
    def _written(w: RecordWritten) -> pb.RecordWriteResponse:
        return pb.RecordWriteResponse(id=w.id, profile_version=w.profile_version)

    def PutMedication(self, request: pb.PutMedicationRequest, context: grpc.ServicerContext) -> pb.RecordWriteResponse:
        entry = _medication_entry(request.medication)
        return self._written(
            self._run(context, lambda p, m: self.services.records.put_medication(p, m, request.patient_id, entry))
        )

    def DeactivateMedication(
        self, request: pb.DeactivateMedicationRequest, context: grpc.ServicerContext
    ) -> pb.RecordWriteResponse:
        return self._written(
            self._run(
                context,
                lambda p, m: self.services.records.deactivate_medication(
                    p, m, request.patient_id, request.medication_id
                ),
            )
        )

    def PutAllergy(self, request: pb.PutAllergyRequest, context: grpc.ServicerContext) -> pb.RecordWriteResponse:
        a = request.allergy
        entry = AllergyEntry(
            allergen=a.allergen,
            category=a.category,
            severity=a.severity,
            reactions=tuple(a.reactions),
            emergency_medication=a.emergency_medication,
            coding=_coding_text(a),
            allergy_id=a.allergy_id,
            external_id=a.external_id,
        )
        return self._written(
            self._run(context, lambda p, m: self.services.records.put_allergy(p, m, request.patient_id, entry))
        )

    def PutCondition(self, request: pb.PutConditionRequest, context: grpc.ServicerContext) -> pb.RecordWriteResponse:
        c = request.condition
        entry = ConditionEntry(
            name=c.name, code=c.code, is_critical=c.is_critical, condition_id=c.condition_id, external_id=c.external_id
        )
        return self._written(
            self._run(context, lambda p, m: self.services.records.put_condition(p, m, request.patient_id, entry))
        )

    def PutBiometricReading(
        self, request: pb.PutBiometricReadingRequest, context: grpc.ServicerContext
    ) -> pb.RecordWriteResponse:
        r = request.reading

        def entry() -> ReadingEntry:
            # Inside the call: a timestamp out of range is the caller's mistake, answered like any other.
            taken = _timestamp("reading.taken_at", r.taken_at) if r.HasField("taken_at") else None
            return ReadingEntry(
                reading_type=r.reading_type, value=r.value, unit=r.unit, taken_at=taken, coding=_coding_text(r)
            )

        return self._written(
            self._run(context, lambda p, m: self.services.records.put_reading(p, m, request.patient_id, entry))
        )

    def PutDemographics(
        self, request: pb.PutDemographicsRequest, context: grpc.ServicerContext
    ) -> pb.RecordWriteResponse:
        def entry() -> DemographicsEntry:
            # Inside the call: a bad timestamp or enum is the caller's mistake, answered like any other.
            pregnancy = lactation = None
            if request.HasField("pregnancy"):
                p = request.pregnancy
                if p.status not in _PREGNANCY_STATUS:
                    raise invalid("pregnancy.status", "is required: PREGNANT, NOT_PREGNANT or UNKNOWN")
                pregnancy = PregnancyEntry(
                    status=_PREGNANCY_STATUS[p.status],
                    recorded_at=(
                        _timestamp("pregnancy.recorded_at", p.recorded_at) if p.HasField("recorded_at") else None
                    ),
                    gestational_weeks=p.gestational_weeks if p.HasField("gestational_weeks") else None,
                    gestational_days=p.gestational_days if p.HasField("gestational_days") else None,
                    estimated_delivery_date=p.estimated_delivery_date,
                )
            if request.HasField("lactation"):
                lact = request.lactation
                if lact.status not in _LACTATION_STATUS:
                    raise invalid("lactation.status", "is required: LACTATING, NOT_LACTATING or UNKNOWN")
                lactation = LactationEntry(
                    status=_LACTATION_STATUS[lact.status],
                    recorded_at=(
                        _timestamp("lactation.recorded_at", lact.recorded_at) if lact.HasField("recorded_at") else None
                    ),
                )
            return DemographicsEntry(
                birth_date=request.birth_date, sex=request.sex, pregnancy=pregnancy, lactation=lactation
            )

        return self._written(
            self._run(context, lambda p, m: self.services.records.put_demographics(p, m, request.patient_id, entry))
        )

    def GetHealthProfile(self, request: pb.GetHealthProfileRequest, context: grpc.ServicerContext) -> pb.HealthProfile:
        v = self._run(context, lambda p, m: self.services.records.health_profile(p, m, request.patient_id))
        return pb.HealthProfile(
            patient_id=v.patient_id,
            version=v.version,
            subscription_tier=v.subscription_tier,
            age=v.age or 0,
            sex=v.sex,
            pregnancy_status=v.pregnancy_status,
            medications=[_medication_pb(med) for med in v.medications],
            allergies=[
                pb.Allergy(
                    allergy_id=a.allergy_id,
                    allergen=a.allergen,
                    category=a.category,
                    severity=a.severity,
                    reactions=list(a.reactions),
                    emergency_medication=a.emergency_medication,
                    coding=_coding_pb(a.coding),
                    external_id=a.external_id,
                )
                for a in v.allergies
            ],
            conditions=[
                pb.Condition(
                    condition_id=c.condition_id,
                    name=c.name,
                    code=c.code,
                    is_critical=c.is_critical,
                    external_id=c.external_id,
                )
                for c in v.conditions
            ],
            latest_biometrics=[
                pb.BiometricReading(
                    reading_id=b.reading_id,
                    reading_type=b.reading_type,
                    value=b.value,
                    unit=b.unit,
                    taken_at=_ts(b.taken_at),
                )
                for b in v.latest_biometrics
            ],
            withheld_categories=list(v.withheld_categories),
            birth_date=v.birth_date,
            **_demographics_pb(v),
        )

    def GrantConsent(self, request: pb.GrantConsentRequest, context: grpc.ServicerContext) -> pb.GrantConsentResponse:
        grant = ConsentGrant(
            grantee_user_id=request.grantee_user_id,
            categories=tuple(request.categories),
            expires_in_days=request.expires_in_days,
            purpose=request.purpose,
        )
        cid = self._run(context, lambda p, m: self.services.records.grant_consent(p, m, grant))
        return pb.GrantConsentResponse(consent_id=cid)

    def RevokeConsent(
        self, request: pb.RevokeConsentRequest, context: grpc.ServicerContext
    ) -> pb.RevokeConsentResponse:
        self._run(context, lambda p, m: self.services.records.revoke_consent(p, m, request.consent_id))
        return pb.RevokeConsentResponse(revoked=True)

    def ReplaceActiveMedications(
        self, request: pb.ReplaceActiveMedicationsRequest, context: grpc.ServicerContext
    ) -> pb.ReplaceActiveMedicationsResponse:
        entries = [_medication_entry(med) for med in request.medications]
        done = self._run(
            context,
            lambda p, m: self.services.records.replace_active_medications(p, m, request.patient_id, entries),
        )
        return pb.ReplaceActiveMedicationsResponse(
            medication_ids=list(done.medication_ids),
            deactivated_medication_ids=list(done.deactivated_ids),
            created=done.created,
            updated=done.updated,
            unchanged=done.unchanged,
            profile_version=done.profile_version,
        )

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


_PREGNANCY_STATUS = {
    pb.PREGNANCY_STATUS_PREGNANT: "pregnant",
    pb.PREGNANCY_STATUS_NOT_PREGNANT: "not_pregnant",
    pb.PREGNANCY_STATUS_UNKNOWN: "unknown",
}
_LACTATION_STATUS = {
    pb.LACTATION_STATUS_LACTATING: "lactating",
    pb.LACTATION_STATUS_NOT_LACTATING: "not_lactating",
    pb.LACTATION_STATUS_UNKNOWN: "unknown",
}


def _demographics_pb(v: HealthProfileView) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if v.pregnancy is not None:
        p = v.pregnancy
        out["pregnancy"] = pb.Pregnancy(
            status=pb.PREGNANCY_STATUS_PREGNANT if p.status == "pregnant" else pb.PREGNANCY_STATUS_NOT_PREGNANT,
            recorded_at=_ts(p.recorded_at) if p.recorded_at else None,
            gestational_weeks=p.gestational_weeks,
            gestational_days=p.gestational_days,
            estimated_delivery_date=p.estimated_delivery_date,
        )
    if v.lactation is not None:
        out["lactation"] = pb.Lactation(
            status=pb.LACTATION_STATUS_LACTATING if v.lactation.lactating else pb.LACTATION_STATUS_NOT_LACTATING,
            recorded_at=_ts(v.lactation.recorded_at) if v.lactation.recorded_at else None,
        )
    return out


def _timestamp(field: str, ts: Timestamp) -> datetime:
    """A request's timestamp as an aware datetime; out of range (the wire allows any int64) is the
    caller's mistake, named as theirs, not an error converting it."""
    if not (_TIMESTAMP_SECONDS[0] <= ts.seconds <= _TIMESTAMP_SECONDS[1] and 0 <= ts.nanos <= 999_999_999):
        raise invalid(field, "is outside 0001-01-01 to 9999-12-31 (or its nanos outside 0 to 999999999)")
    taken: datetime = ts.ToDatetime(tzinfo=UTC)
    return taken

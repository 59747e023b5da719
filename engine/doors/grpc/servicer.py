"""The ClinicalSafety servicer: protobuf in, one RLS-scoped transaction, protobuf out.

Every RPC runs through `_call`, which owns the mapping from failures to status codes, so handlers
hold only their clinical logic. No handler turns an error into "no alerts": an evaluation either
answers with its audit row written, or fails with a status the caller can act on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import time
import traceback
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg import errors as pg_errors
from sqlalchemy import exc as sa_exc

from engine.app import metrics
from engine.app.engine_cache import EngineCache
from engine.doors.grpc.auth import current_principal
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc
from engine.doors.grpc.request_ids import current_request_id
from engine.evaluate import evaluate
from engine.identity import CODE_SYSTEMS, SYSTEM_URIS, parse_coding
from engine.model import Alert, EvaluationRequest, EvaluationResult, MedicationFact, Severity, UnresolvedItem
from store import patients, service_repo
from store.admin import AdminError, grant_consent, revoke_consent
from store.crypto import DecryptionError, KeyProviderError
from store.keys import KeyStore
from store.session import Database, Principal, PrincipalMismatch, RequestMeta
from store.signing import Signer

__all__ = ["ClinicalSafetyServicer", "RpcFailure", "canonical_result"]

log = logging.getLogger("praneya.api")
T = TypeVar("T")

MAX_PROPOSED_MEDICATIONS = 50
MAX_FOODS = 200
MAX_TEXT = 200
MAX_REASON = 1000
MAX_CODE = 40
MAX_DISPLAY = 500
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
_PHI_ROLES_ANY_PATIENT = ("CLINICAL_ADVISOR", "SUPER_ADMIN")
_BREAK_GLASS_ROLES = ("EMERGENCY_RESPONDER", "CLINICAL_ADVISOR")
_EVALUATION_NEEDS = frozenset({"MEDICATIONS", "ALLERGIES", "CONDITIONS"})
# Which code systems identify what: a medication is a drug product or ingredient (RxNorm, NDC); an
# allergen may also be a food or substance (SNOMED CT). A condition code on a drug is refused, not ignored.
_MEDICATION_SYSTEMS = ("rxnorm", "ndc")
_ALLERGEN_SYSTEMS = ("rxnorm", "ndc", "snomed")


class RpcFailure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(field: str, problem: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {problem}")


def _check_id(field: str, value: str) -> str:
    if not value:
        raise invalid(field, "is required")
    if not _ID.match(value):
        raise invalid(field, "is not a valid id (letters, digits, and _.:@- up to 128 characters)")
    return value


# A break-the-glass reason (and the reason for ending a grant early) is read by a reviewer: it needs
# real text. 8 visible characters let "overdose", "code blue" or "unresponsive" through and refuse
# "x", "n/a", "test", and text made of zero-width, format or blank characters only.
MIN_REASON_VISIBLE = 8
# Letters and symbols that draw nothing (Hangul fillers, the blank braille pattern): category says
# letter or symbol, the screen says nothing.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def visible_characters(text: str) -> int:
    """How many characters of `text` a reader sees: after NFKC, neither control, format, private-use,
    unassigned or surrogate (C*), nor separators and white space (Z*), nor combining marks on their
    own (Mn, Me), nor blank glyphs."""
    return sum(
        1
        for ch in unicodedata.normalize("NFKC", text)
        if not ch.isspace()
        and unicodedata.category(ch)[0] not in "CZ"
        and unicodedata.category(ch) not in ("Mn", "Me")
        and ch not in _BLANK_GLYPHS
    )


def _check_reason(field: str, value: str) -> str:
    reason = _check_text(field, value, required=True, limit=MAX_REASON)
    assert reason is not None
    if visible_characters(reason) < MIN_REASON_VISIBLE:
        raise invalid(
            field,
            f"needs at least {MIN_REASON_VISIBLE} visible characters (invisible, format and space characters"
            " do not count)",
        )
    return reason


def _check_text(field: str, value: str, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    value = value.strip()
    if not value:
        if required:
            raise invalid(field, "is required")
        return None
    if len(value) > limit:
        raise invalid(field, f"is longer than {limit} characters")
    if any(ord(c) < 32 for c in value):
        raise invalid(field, "contains control characters")
    return value


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


def _coding_pb(stored: dict[str, Any] | None) -> pb.Coding | None:
    if stored is None:
        return None
    return pb.Coding(system=SYSTEM_URIS[stored["system"]], code=stored["code"], display=stored.get("display") or "")


_UNRESOLVED_KIND = {"medication": pb.MEDICATION, "allergy": pb.ALLERGY}


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


def alert_id(alert: Alert) -> str:
    return "al_" + hashlib.sha256(alert.stable_id.encode()).hexdigest()[:24]


def canonical_result(resp: pb.EvaluateSafetyResponse, patient_id: str) -> bytes:
    """The exact bytes the service signs: the response's clinical content as sorted, compact JSON."""
    doc = {
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
        # What was not screened is clinical content too: a verifier must see the answer was partial.
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
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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


OMITTED_ALERTS_RULE = "limit:alerts"


def _capped(alerts: Sequence[Alert], cap: int) -> tuple[Sequence[Alert], Sequence[Alert]]:
    """(shown, omitted): all of them when they fit, else the cap - 1 highest-ranked (the summary of the
    rest takes the last place, so an answer never carries more than `cap` alerts)."""
    if len(alerts) <= cap:
        return alerts, ()
    return alerts[: cap - 1], alerts[cap - 1 :]


def _omitted_alert_pb(omitted: Sequence[Alert], cap: int) -> pb.Alert:
    # Counts and severities only: the omitted alerts' texts and items are exactly what is not sent.
    top = max(a.severity for a in omitted)
    by_severity = ", ".join(
        f"{n} {s.name}" for s in sorted(Severity, reverse=True) if (n := sum(1 for a in omitted if a.severity == s))
    )
    return pb.Alert(
        alert_id="al_" + hashlib.sha256(f"{OMITTED_ALERTS_RULE}|{len(omitted)}".encode()).hexdigest()[:24],
        kind=pb.OTHER,
        severity=pb.Severity.Value(top.name),
        summary=f"{len(omitted)} more alerts not shown: an answer carries at most {cap}",
        detail=f"The {cap - 1} highest-ranked alerts are shown; {len(omitted)} more were found ({by_severity}).",
        recommendation="Review the patient's record with a clinician: the medication list is longer than this"
        " service screens in one answer.",
        evidence=pb.EVIDENCE_UNKNOWN,
        rule_id=OMITTED_ALERTS_RULE,
        interruptive=top.interruptive,
    )


def _map_exception(exc: BaseException) -> RpcFailure:
    """Known failures to documented status codes; messages name places, never values."""
    if isinstance(exc, RpcFailure):
        return exc
    if isinstance(exc, patients.PatientNotFound):
        return RpcFailure(grpc.StatusCode.NOT_FOUND, str(exc) or "not found")
    if isinstance(exc, PrincipalMismatch):
        return RpcFailure(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    if isinstance(exc, patients.TooManyItems):
        return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, patients.IntegrityError):
        return RpcFailure(
            grpc.StatusCode.DATA_LOSS,
            "the patient's record failed its integrity check; refusing to evaluate it",
        )
    if isinstance(exc, DecryptionError):
        return RpcFailure(
            grpc.StatusCode.DATA_LOSS,
            f"a stored value could not be decrypted ({exc.table}.{exc.column}, row {exc.row_id}); refusing to evaluate",
        )
    if isinstance(exc, KeyProviderError):
        return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, "the tenant's data keys are not available")
    if isinstance(exc, service_repo.GrantAlreadyEnded):
        return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, AdminError):
        return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, LookupError):
        return RpcFailure(grpc.StatusCode.NOT_FOUND, str(exc) or "not found")
    if isinstance(exc, sa_exc.TimeoutError):  # pool exhausted
        return RpcFailure(grpc.StatusCode.UNAVAILABLE, "the service is at capacity; retry with backoff")
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        if isinstance(orig, pg_errors.QueryCanceled):
            return RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, "the database did not answer in time")
        if isinstance(orig, pg_errors.InsufficientPrivilege):
            return RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "not permitted for this principal")
        if isinstance(orig, pg_errors.NoDataFound):
            return RpcFailure(grpc.StatusCode.NOT_FOUND, "patient not found")
        if isinstance(orig, pg_errors.InvalidParameterValue):
            diag = getattr(orig, "diag", None)
            return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, getattr(diag, "message_primary", None) or "invalid")
        if isinstance(orig, pg_errors.ForeignKeyViolation):
            return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, "a referenced record does not exist in this tenant")
        if isinstance(orig, pg_errors.UniqueViolation):
            diag = getattr(orig, "diag", None)
            return RpcFailure(
                grpc.StatusCode.ALREADY_EXISTS,
                f"already recorded ({getattr(diag, 'constraint_name', None) or 'a unique key'})",
            )
        if isinstance(orig, (pg_errors.CheckViolation, pg_errors.NotNullViolation)):
            diag = getattr(orig, "diag", None)
            return RpcFailure(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"rejected by constraint {getattr(diag, 'constraint_name', None) or 'of the database'}",
            )
        if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or isinstance(
            orig, (pg_errors.OperationalError, pg_errors.AdminShutdown)
        ):
            return RpcFailure(grpc.StatusCode.UNAVAILABLE, "the database is unavailable; retry with backoff")
    return RpcFailure(grpc.StatusCode.INTERNAL, "internal error")


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


class ClinicalSafetyServicer(pb_grpc.ClinicalSafetyServicer):  # type: ignore[misc]
    def __init__(
        self,
        db: Database,
        keys: KeyStore,
        signer: Signer,
        engines: EngineCache,
        *,
        emergency_grant_minutes: int = 60,
        statement_timeout_ms: int = 5000,
        max_active_items: int = 100,
        max_alerts: int = 200,
        max_response_bytes: int = 4 << 20,
    ) -> None:
        self.db = db
        self.keys = keys
        self.signer = signer
        self.engines = engines
        self.emergency_grant_minutes = emergency_grant_minutes
        self.statement_timeout_ms = statement_timeout_ms
        # The bounds on one call's work (issue 13, item 1): active items per patient and category
        # (refused on write, refused on evaluation of a record that holds more), alerts per answer
        # (the highest-ranked, then a summary), and the answer's size (checked before the commit).
        self.max_active_items = max_active_items
        self.max_alerts = max_alerts
        self.max_response_bytes = max_response_bytes

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
                raise RpcFailure(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the patient has {len(items)} active {category}, over the limit of {self.max_active_items}"
                    " (PRANEYA_MAX_ACTIVE_ITEMS); deactivate some before evaluating",
                )

    # -- the one place failures become statuses ---------------------------------------------------

    def _call(
        self,
        name: str,
        context: grpc.ServicerContext,
        fn: Callable[[Principal, RequestMeta], T],
        *,
        phi: bool = True,
        roles: tuple[str, ...] | None = None,
        on_failure: Callable[[Any, Principal, RequestMeta, RpcFailure], None] | None = None,
        log_fields: dict[str, str] | None = None,
    ) -> T:
        # The id the request-id interceptor sent back to the caller; a fresh one if it is not installed.
        request_id = current_request_id.get(None) or uuid.uuid4().hex
        started = time.perf_counter()
        principal = current_principal.get()
        meta = _meta(context, request_id, self.statement_timeout_ms)
        failure: RpcFailure | None = None
        try:
            if roles is not None and principal.role not in roles:
                raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, f"{name} is not available to role {principal.role}")
            if phi and not principal.mfa:
                raise RpcFailure(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "multi-factor authentication is required for patient data",
                )
            if meta.statement_timeout_ms is not None and meta.statement_timeout_ms <= 1:
                raise RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline expired before the call started")
            result = fn(principal, meta)
        except Exception as exc:  # noqa: BLE001 - every failure is mapped to a status, none is swallowed
            failure = _map_exception(exc)
            if failure.code == grpc.StatusCode.INTERNAL:
                # Type and frames only: exception messages can carry values from the database.
                frames = "; ".join(
                    f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}"
                    for f in traceback.extract_tb(exc.__traceback__)[-6:]
                )
                log.error(
                    "internal error",
                    extra={
                        "rpc": name,
                        "request_id": request_id,
                        "error_type": type(exc).__name__,
                        "frames": frames,
                    },
                )
            if failure.code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE):
                failure = self._answerable(name, principal, meta, failure, on_failure)
        elapsed = time.perf_counter() - started
        code = failure.code if failure else grpc.StatusCode.OK
        metrics.RPCS.labels(name, code.name).inc()
        log.info(
            "rpc",
            extra={
                "rpc": name,
                "code": code.name,
                "duration_ms": round(elapsed * 1000, 2),
                "tenant": principal.tenant_id,
                "user": principal.user_id,
                "request_id": request_id,
                **(log_fields or {}),  # ids the handler adds (EvaluateSafety: evaluation_id)
            },
        )
        if failure is not None:
            context.abort(failure.code, failure.message)
        return result

    def _answerable(
        self,
        name: str,
        principal: Principal,
        meta: RequestMeta,
        failure: RpcFailure,
        on_failure: Callable[[Any, Principal, RequestMeta, RpcFailure], None] | None,
    ) -> RpcFailure:
        """The failure as this caller may hear it, audited when the RPC audits its failures.

        A caller the database does not vouch for (unknown user or tenant, deactivated, another role)
        learns only that, UNAUTHENTICATED, whatever else went wrong: what a request got wrong, or
        whether a patient exists, is for verified callers. Successful calls verified the caller in
        their own transaction; a failure may have come before that, so it is checked here, in the
        transaction that writes the failure's audit row. UNAUTHENTICATED and UNAVAILABLE never come
        here: there is no established identity to audit under (like a bad token, they go to the
        log), or no database to take the row.
        """
        try:
            with self.db.scoped(principal, meta, verify=True) as conn:
                if on_failure is not None:
                    on_failure(conn, principal, meta, failure)
        except PrincipalMismatch as exc:
            return _map_exception(exc)
        except Exception as exc:  # noqa: BLE001 - the caller could not be checked, or the audit not written
            if on_failure is not None:
                metrics.AUDIT_FAILURES.inc()
                log.error(
                    "failure audit not written",
                    extra={"rpc": name, "request_id": meta.request_id, "error_type": type(exc).__name__},
                )
                return RpcFailure(
                    grpc.StatusCode.UNAVAILABLE, f"{failure.message}; and the audit trail could not record it"
                )
            if failure.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return failure
            checked = _map_exception(exc)
            if checked.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return checked
            return RpcFailure(grpc.StatusCode.UNAVAILABLE, "the caller could not be verified; retry with backoff")
        return failure

    def refuse_undecodable(self, rpc: str, context: grpc.ServicerContext) -> None:
        """How the decoding interceptor (engine/doors/grpc/decoding.py) refuses bytes that are not a request
        message: through `_call`, so it is logged and counted, and an unknown caller hears
        UNAUTHENTICATED as for any other failure."""

        def fail(principal: Principal, meta: RequestMeta) -> None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {rpc} request message")

        self._call(rpc, context, fail, phi=False)

    def _audit_failure(
        self, action: str, patient_id: str | None
    ) -> Callable[[Any, Principal, RequestMeta, RpcFailure], None]:
        def write(conn: Any, principal: Principal, meta: RequestMeta, failure: RpcFailure) -> None:
            # A malformed id (control characters, NUL, megabytes) is recorded by its digest: the
            # probe leaves a trace, and the audit row stays writable and free of whatever it carried.
            recorded = patient_id
            flags = ["FAILED_CALL"]
            if patient_id is not None and not _ID.match(patient_id):
                digest = hashlib.sha256(patient_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]
                recorded = f"invalid:{digest}"
                flags.append("INVALID_ID")
            service_repo.write_audit(
                conn,
                audit_id=str(uuid.uuid4()),
                tenant_id=principal.tenant_id,
                user_id=principal.user_id,
                action=action,
                outcome=failure.code.name,
                patient_id=recorded,
                details={"request_id": meta.request_id, "status": failure.code.name},
                phi_accessed=False,
                risk_score=0.5 if failure.code == grpc.StatusCode.DATA_LOSS else 0.2,
                flags=flags + (["INTEGRITY_FAILURE"] if failure.code == grpc.StatusCode.DATA_LOSS else []),
            )

        return write

    # -- EvaluateSafety -----------------------------------------------------------------------------

    def EvaluateSafety(
        self, request: pb.EvaluateSafetyRequest, context: grpc.ServicerContext
    ) -> pb.EvaluateSafetyResponse:
        patient_id = request.patient_id

        def run(principal: Principal, meta: RequestMeta) -> pb.EvaluateSafetyResponse:
            _check_id("patient_id", patient_id)
            if len(request.proposed_medications) > MAX_PROPOSED_MEDICATIONS:
                raise invalid("proposed_medications", f"at most {MAX_PROPOSED_MEDICATIONS}")
            if len(request.proposed_foods) > MAX_FOODS:
                raise invalid("proposed_foods", f"at most {MAX_FOODS}")
            proposed = []
            for i, m in enumerate(request.proposed_medications):
                where = f"proposed_medications[{i}]"
                coded = _coding(f"{where}.coding", m, _MEDICATION_SYSTEMS)
                name = _check_text(f"{where}.name", m.name)
                if name is None and coded is None:
                    raise invalid(f"{where}.name", "is required when there is no coding")
                proposed.append(
                    MedicationFact(
                        id=f"proposed:{i}",
                        name=name or "",
                        dose=_check_text(f"{where}.dose", m.dose),
                        route=_check_text(f"{where}.route", m.route),
                        frequency=_check_text(f"{where}.frequency", m.frequency),
                        proposed=True,
                        coding=coded.coding if coded is not None else None,
                    )
                )
            foods = [
                f
                for i, raw in enumerate(request.proposed_foods)
                if (f := _check_text(f"proposed_foods[{i}]", raw, required=True)) is not None
            ]
            if request.recipe_id:
                _check_id("recipe_id", request.recipe_id)
            evaluation_id = str(uuid.uuid4())
            started = time.perf_counter()
            with self.db.scoped(principal, meta) as conn:
                record = patients.read_patient(conn, self.keys, patient_id, expected_role=principal.role)
                needed = record.withheld & _EVALUATION_NEEDS
                if needed:
                    # Evaluating a partial record would answer "no alerts" for what the caller cannot
                    # see: refuse instead, naming what the patient's consent would have to cover.
                    raise RpcFailure(
                        grpc.StatusCode.PERMISSION_DENIED,
                        "evaluating this patient needs their consent to " + ", ".join(sorted(needed)),
                    )
                self._require_bounded(record)
                if request.recipe_id:
                    foods += service_repo.recipe_ingredients(conn, request.recipe_id)
                    if len(foods) > MAX_FOODS:
                        raise RpcFailure(
                            grpc.StatusCode.FAILED_PRECONDITION,
                            f"proposed_foods and the recipe's ingredients: at most {MAX_FOODS} together",
                        )
                ruleset, knowledge = self.engines.get(conn, principal.tenant_id)
                snapshot = record.to_snapshot()
                result = evaluate(snapshot, EvaluationRequest(tuple(proposed), tuple(foods)), ruleset, knowledge)
                evaluated_at = datetime.now(UTC)
                # Past the cap: the highest-ranked alerts, then one that says how many more there were.
                shown, omitted = _capped(result.alerts, self.max_alerts)
                alert_ids = [alert_id(a) for a in shown]  # once: audit row and response share them
                via_grant = principal.role not in _PHI_ROLES_ANY_PATIENT and patient_id != principal.user_id
                response = pb.EvaluateSafetyResponse(
                    evaluation_id=evaluation_id,
                    alerts=[_alert_pb(a, aid) for a, aid in zip(shown, alert_ids, strict=True)]
                    + ([_omitted_alert_pb(omitted, self.max_alerts)] if omitted else []),
                    complete=result.complete and not omitted,
                    completeness=pb.COMPLETE if result.complete and not omitted else pb.INCOMPLETE,
                    incomplete_rules=[
                        pb.RuleIssue(
                            rule_id=e.rule_id,
                            rule_version=e.rule_version,
                            reason=e.reason,
                            insufficient_data=e.insufficient_data,
                        )
                        for e in result.rule_errors
                    ],
                    ruleset_version=result.ruleset_version,
                    knowledge_version=result.knowledge_version,
                    evaluated_at=_ts(evaluated_at),
                    unresolved_items=[_unresolved_pb(u) for u in result.unresolved],
                    vocabulary_version=result.vocabulary_version,
                )
                canonical = canonical_result(response, patient_id)
                response.signature.CopyFrom(
                    pb.ResultSignature(
                        algorithm=self.signer.algorithm,
                        key_id=self.signer.key_id,
                        canonical=canonical,
                        signature=self.signer.sign(canonical),
                    )
                )
                size = response.ByteSize()
                if size > self.max_response_bytes:
                    # Before the commit: the rollback takes this row with it, and the failure's own
                    # audit row (RESOURCE_EXHAUSTED) says what the caller got. Sizes, never content.
                    raise RpcFailure(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the answer is {size} bytes, over the {self.max_response_bytes}-byte limit"
                        " (PRANEYA_MAX_MESSAGE_BYTES); nothing was returned",
                    )
                service_repo.write_audit(
                    conn,
                    audit_id=evaluation_id,
                    tenant_id=principal.tenant_id,
                    user_id=principal.user_id,
                    action="EVALUATE_SAFETY",
                    outcome="TRUNCATED" if omitted else "SUCCESS",
                    patient_id=patient_id,
                    resource_type="healthcare.health_profiles",
                    resource_id=record.profile_id,
                    phi_accessed=True,
                    risk_score=0.6 if principal.role == "EMERGENCY_RESPONDER" else 0.1,
                    flags=["PHI_READ"]
                    + (["EMERGENCY_ACCESS"] if principal.role == "EMERGENCY_RESPONDER" else [])
                    + (["DELEGATED_ACCESS"] if via_grant else [])
                    + ([] if result.complete and not omitted else ["INCOMPLETE"])
                    + (["TRUNCATED"] if omitted else [])
                    + (["UNRESOLVED_ITEMS"] if result.unresolved else []),
                    details=_evaluation_details(
                        result,
                        shown,
                        alert_ids,
                        len(omitted),
                        meta,
                        started,
                        len(proposed),
                        len(foods),
                        seal=lambda doc: self.keys.keyring(conn, principal.tenant_id).encrypt(
                            service_repo.AUDIT_TABLE, service_repo.SEALED_RULES, evaluation_id, doc
                        ),
                        cap=self.max_alerts,
                    ),
                )
            metrics.observe_evaluation(time.perf_counter() - started, result)
            logged["evaluation_id"] = evaluation_id  # its audit row is committed: the id names a real row
            return response

        logged: dict[str, str] = {}
        return self._call(
            "EvaluateSafety",
            context,
            run,
            on_failure=self._audit_failure("EVALUATE_SAFETY", patient_id or None),
            log_fields=logged,
        )

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
            on_failure=self._audit_failure("EMERGENCY_ACCESS", request.patient_id or None),
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
            on_failure=self._audit_failure("END_EMERGENCY_ACCESS", None),
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
            on_failure=self._audit_failure("READ_HEALTH_PROFILE", request.patient_id or None),
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
        def run(principal: Principal, meta: RequestMeta) -> pb.RecordAlertFeedbackResponse:
            _check_id("evaluation_id", request.evaluation_id)
            _check_id("alert_id", request.alert_id)
            if request.outcome == pb.FEEDBACK_OUTCOME_UNSPECIFIED:
                raise invalid("outcome", "is required (ACCEPTED or OVERRIDDEN)")
            if request.outcome not in (pb.ACCEPTED, pb.OVERRIDDEN):  # enums are open: any number can arrive
                raise invalid("outcome", "must be ACCEPTED or OVERRIDDEN")
            if request.reason not in pb.OverrideReason.values():
                raise invalid("reason", "is not a known override reason")
            outcome = pb.FeedbackOutcome.Name(request.outcome)
            reason = (
                pb.OverrideReason.Name(request.reason) if request.reason != pb.OVERRIDE_REASON_UNSPECIFIED else None
            )
            if outcome == "OVERRIDDEN" and reason is None:
                raise invalid("reason", "is required when the alert is overridden")
            comment = _check_text("comment", request.comment, limit=MAX_REASON) or ""
            with self.db.scoped(principal, meta, verify=True) as conn:
                fid = service_repo.record_feedback(
                    conn,
                    self.keys,
                    tenant_id=principal.tenant_id,
                    user_id=principal.user_id,
                    evaluation_id=request.evaluation_id,
                    alert_id=request.alert_id,
                    outcome=outcome,
                    reason=reason,
                    comment=comment,
                )
            return pb.RecordAlertFeedbackResponse(feedback_id=fid)

        return self._call("RecordAlertFeedback", context, run)

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
    return {
        "request_id": meta.request_id,
        "ruleset_version": result.ruleset_version,
        "knowledge_version": result.knowledge_version,
        "vocabulary_version": result.vocabulary_version,
        "complete": result.complete,
        "unresolved_medications": unresolved_medications,
        "unresolved_allergies": len(result.unresolved) - unresolved_medications,
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

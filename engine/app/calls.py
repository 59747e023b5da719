"""The one place a call's failures become documented outcomes, whatever the door.

Every use case runs through `Calls.run`: the role and MFA requirements, the deadline, the mapping of
any exception to a `Failure` (never a traceback with values in it), the failure's audit row, the rule
that an unverified caller hears only UNAUTHENTICATED, one log line and the call counter. The doors
translate the `Failure` into their own status (gRPC, HTTP) and nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from engine.app import metrics
from engine.app.failures import Code, Failure, classify
from engine.app.validation import ID
from store import service_repo
from store.session import Database, Principal, PrincipalMismatch, RequestMeta

__all__ = ["Calls", "OnFailure"]

log = logging.getLogger("praneya.api")
T = TypeVar("T")
OnFailure = Callable[[Any, Principal, RequestMeta, Failure], None]


class Calls:
    def __init__(self, db: Database) -> None:
        self.db = db

    def run(
        self,
        name: str,
        principal: Principal,
        meta: RequestMeta,
        fn: Callable[[Principal, RequestMeta], T],
        *,
        phi: bool = True,
        roles: tuple[str, ...] | None = None,
        scopes: tuple[str, ...] = (),
        on_failure: OnFailure | None = None,
        log_fields: dict[str, str] | None = None,
        door: str = "grpc",
    ) -> T:
        """`fn(principal, meta)`, or a `Failure` raised as the caller may hear it (audited when
        `on_failure` is given). `scopes`: a registered client needs one of them; a user needs `roles`
        (when given) and MFA for patient data."""
        started = time.perf_counter()
        failure: Failure | None = None
        result: T | None = None
        try:
            if principal.client_id is not None:
                if scopes and not set(scopes) & set(principal.scopes):
                    raise Failure(
                        Code.PERMISSION_DENIED, f"{name} needs the scope {' or '.join(scopes)} for a client"
                    )
                if not scopes:
                    raise Failure(Code.PERMISSION_DENIED, f"{name} is not available to clients")
            else:
                if roles is not None and principal.role not in roles:
                    raise Failure(Code.PERMISSION_DENIED, f"{name} is not available to role {principal.role}")
                if phi and not principal.mfa:
                    raise Failure(Code.PERMISSION_DENIED, "multi-factor authentication is required for patient data")
            if meta.statement_timeout_ms is not None and meta.statement_timeout_ms <= 1:
                raise Failure(Code.DEADLINE_EXCEEDED, "the deadline expired before the call started")
            result = fn(principal, meta)
        except Exception as exc:  # noqa: BLE001 - every failure is mapped to a status, none is swallowed
            failure = classify(exc)
            if failure.code == Code.INTERNAL:
                # Type and frames only: exception messages can carry values from the database.
                frames = "; ".join(
                    f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}"
                    for f in traceback.extract_tb(exc.__traceback__)[-6:]
                )
                log.error(
                    "internal error",
                    extra={
                        "rpc": name,
                        "door": door,
                        "request_id": meta.request_id,
                        "error_type": type(exc).__name__,
                        "frames": frames,
                    },
                )
            if failure.code not in (Code.UNAUTHENTICATED, Code.UNAVAILABLE):
                failure = self._answerable(name, principal, meta, failure, on_failure)
        elapsed = time.perf_counter() - started
        code = failure.code.name if failure else "OK"
        metrics.count_rpc(name, code)
        log.info(
            "rpc",
            extra={
                "rpc": name,
                "door": door,
                "code": code,
                "duration_ms": round(elapsed * 1000, 2),
                "tenant": principal.tenant_id,
                "user": principal.user_id,
                **({"client": principal.client_id} if principal.client_id else {}),
                "request_id": meta.request_id,
                **(log_fields or {}),  # ids the handler adds (EvaluateSafety: evaluation_id)
            },
        )
        if failure is not None:
            raise failure
        return result  # type: ignore[return-value]  # fn returned it

    def _answerable(
        self,
        name: str,
        principal: Principal,
        meta: RequestMeta,
        failure: Failure,
        on_failure: OnFailure | None,
    ) -> Failure:
        """The failure as this caller may hear it, audited when the call audits its failures.

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
            return classify(exc)
        except Exception as exc:  # noqa: BLE001 - the caller could not be checked, or the audit not written
            if on_failure is not None:
                metrics.AUDIT_FAILURES.inc()
                log.error(
                    "failure audit not written",
                    extra={"rpc": name, "request_id": meta.request_id, "error_type": type(exc).__name__},
                )
                return Failure(Code.UNAVAILABLE, f"{failure.message}; and the audit trail could not record it")
            if failure.code == Code.DEADLINE_EXCEEDED:
                return failure
            checked = classify(exc)
            if checked.code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED):
                return checked
            return Failure(Code.UNAVAILABLE, "the caller could not be verified; retry with backoff")
        return failure


def audit_failure(action: str, patient_id: str | None) -> OnFailure:
    """The audit row of a failed call: who, what, the status; a malformed patient id by its digest."""

    def write(conn: Any, principal: Principal, meta: RequestMeta, failure: Failure) -> None:
        # A malformed id (control characters, NUL, megabytes) is recorded by its digest: the
        # probe leaves a trace, and the audit row stays writable and free of whatever it carried.
        recorded = patient_id
        flags = ["FAILED_CALL"]
        if patient_id is not None and not ID.match(patient_id):
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
            risk_score=0.5 if failure.code == Code.DATA_LOSS else 0.2,
            flags=flags + (["INTEGRITY_FAILURE"] if failure.code == Code.DATA_LOSS else []),
        )

    return write

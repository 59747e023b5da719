"""What the clinician did with an alert (accepted, overridden with a coded reason), from any door:
gRPC RecordAlertFeedback names the evaluation; CDS Hooks feedback names only the card, whose uuid is
the alert id, so the caller's latest evaluation that showed it is the one answered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.app.calls import Calls
from engine.app.failures import Code, Failure, invalid
from engine.app.validation import MAX_REASON, check_id, check_text
from store import service_repo
from store.keys import KeyStore
from store.session import Database, Principal, RequestMeta

__all__ = ["OUTCOMES", "OVERRIDE_REASONS", "Feedback", "FeedbackService"]

OUTCOMES = ("ACCEPTED", "OVERRIDDEN")
# The coded override reasons (the gRPC OverrideReason names; CDS Hooks cards offer the same codes).
OVERRIDE_REASONS = (
    "NOT_CLINICALLY_RELEVANT",
    "BENEFIT_OUTWEIGHS_RISK",
    "PATIENT_ALREADY_TOLERATES",
    "WILL_MONITOR",
    "DOSE_ADJUSTED",
    "ALERT_INCORRECT",
    "OTHER_REASON",
)


@dataclass(frozen=True, slots=True)
class Feedback:
    alert_id: str
    outcome: str  # ACCEPTED | OVERRIDDEN
    reason: str | None = None  # one of OVERRIDE_REASONS; required when OVERRIDDEN
    comment: str = ""
    evaluation_id: str | None = None  # None: the caller's latest evaluation that showed the alert

    def checked(self) -> Feedback:
        if self.evaluation_id is not None:
            check_id("evaluation_id", self.evaluation_id)
        check_id("alert_id", self.alert_id)
        if not self.outcome:
            raise invalid("outcome", "is required (ACCEPTED or OVERRIDDEN)")
        if self.outcome not in OUTCOMES:
            raise invalid("outcome", "must be ACCEPTED or OVERRIDDEN")
        if self.reason is not None and self.reason not in OVERRIDE_REASONS:
            raise invalid("reason", "is not a known override reason")
        if self.outcome == "OVERRIDDEN" and self.reason is None:
            raise invalid("reason", "is required when the alert is overridden")
        comment = check_text("comment", self.comment, limit=MAX_REASON) or ""
        return Feedback(self.alert_id, self.outcome, self.reason, comment, self.evaluation_id)


class FeedbackService:
    def __init__(self, db: Database, keys: KeyStore, calls: Calls) -> None:
        self.db = db
        self.keys = keys
        self.calls = calls

    def record(
        self,
        name: str,
        principal: Principal,
        meta: RequestMeta,
        feedback: Sequence[Feedback],
        *,
        idempotent: bool = False,
        door: str = "grpc",
    ) -> list[str]:
        """The feedback ids, all recorded in one transaction or none. `idempotent`: an answer already
        recorded for the same alert of the same evaluation by the same caller gives its id instead of
        ALREADY_EXISTS (CDS Hooks clients retry)."""

        def run(principal: Principal, meta: RequestMeta) -> list[str]:
            checked = [f.checked() for f in feedback]
            ids = []
            with self.db.scoped(principal, meta, verify=True) as conn:
                for f in checked:
                    evaluation_id = f.evaluation_id or service_repo.latest_evaluation_showing(
                        conn, user_id=principal.user_id, alert_id=f.alert_id
                    )
                    if evaluation_id is None:
                        raise Failure(Code.NOT_FOUND, "no evaluation of this caller showed that card")
                    existing = (
                        service_repo.feedback_id(
                            conn, evaluation_id=evaluation_id, alert_id=f.alert_id, user_id=principal.user_id
                        )
                        if idempotent
                        else None
                    )
                    ids.append(
                        existing
                        or service_repo.record_feedback(
                            conn,
                            self.keys,
                            tenant_id=principal.tenant_id,
                            user_id=principal.user_id,
                            evaluation_id=evaluation_id,
                            alert_id=f.alert_id,
                            outcome=f.outcome,
                            reason=f.reason,
                            comment=f.comment,
                        )
                    )
            return ids

        return self.calls.run(name, principal, meta, run, scopes=("evaluate.stored", "evaluate.supplied"), door=door)

"""Patient data the caller supplies as FHIR R4 (a Bundle, a list of resources, NDJSON lines read by
a door) → what the evaluation use case evaluates: a `SuppliedPatient` and the `Proposal` of draft
orders. A malformed resource is INVALID_ARGUMENT naming the element path (every problem in
`Failure.problems`), never anything else."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from engine.app.evaluation import Proposal, SuppliedPatient
from engine.app.failures import Code, Failure
from engine.fhir import FhirError, parse_draft_orders, parse_patient_data

__all__ = ["digest_of", "supplied_from_fhir"]

MAX_PROBLEMS = 20


def digest_of(*documents: Any) -> str:
    """SHA-256 of the documents' canonical JSON: what the audit row records of supplied data."""
    h = hashlib.sha256()
    for doc in documents:
        h.update(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def _invalid(exc: FhirError, prefix: str) -> Failure:
    issues = getattr(exc, "issues", None) or [exc]
    problems = tuple(
        (f"{prefix}{getattr(i, 'path', '')}".rstrip("."), str(getattr(i, "problem", i))) for i in issues[:MAX_PROBLEMS]
    )
    first = f"{prefix}{exc}" if prefix else str(exc)
    more = f" (and {len(issues) - 1} more problems)" if len(issues) > 1 else ""
    return Failure(Code.INVALID_ARGUMENT, first + more, problems)


def supplied_from_fhir(
    patient_data: Any,
    *,
    tenant_id: str,
    on: date,
    draft_orders: Any = None,
    reference: str | None = None,
    data_label: str = "",
    orders_label: str = "draftOrders.",
    extra_medications: Sequence[Any] = (),
    foods: Sequence[str] = (),
) -> tuple[SuppliedPatient, Proposal]:
    """`patient_data`: a Bundle, a resource or a list of resources about one patient; `draft_orders`:
    a Bundle (or list) of the orders being placed, evaluated as proposed. Paths in errors are
    prefixed with the labels (the door's name for where the data came from)."""
    try:
        data = parse_patient_data(patient_data)
    except FhirError as exc:
        raise _invalid(exc, data_label) from None
    proposed: tuple[Any, ...] = ()
    if draft_orders is not None:
        try:
            proposed = parse_draft_orders(draft_orders)
        except FhirError as exc:
            raise _invalid(exc, orders_label) from None
    ref = reference or data.patient_ref or "supplied"
    counts = {k: int(v) for k, v in data.counts.items()}
    if draft_orders is not None:
        counts["draft_orders"] = len(proposed)
    supplied = SuppliedPatient(
        snapshot=data.snapshot(ref, tenant_id, on=on),
        reference=ref,
        digest=digest_of(patient_data, draft_orders),
        counts=counts,
    )
    return supplied, Proposal(medications=(*proposed, *extra_medications), foods=(*data.foods, *foods))

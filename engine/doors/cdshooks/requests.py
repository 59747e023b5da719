"""A hook call's body (`POST {baseUrl}/cds-services/{id}`) checked against CDS Hooks 2.0.

What is checked, with the section of the specification:
- §Calling a CDS Service: `hook` (must be the service's hook), `hookInstance` (a UUID), `fhirServer`
  (a base URL; https unless the caller allows http, as in development: "The scheme MUST be https
  when production data is exchanged"), `fhirAuthorization` (and then `fhirServer` is required),
  `context`, `prefetch`.
- §Passing the Access Token: `access_token`, `token_type` (Bearer), `expires_in`, `scope`,
  `subject` are required; `patient` optional.
- The hooks' context tables: `userId` (a Practitioner or PractitionerRole reference; patient-view
  also allows Patient and RelatedPerson) and `patientId` required, `encounterId` optional;
  order-select `selections` and `draftOrders`, order-sign `draftOrders`.
- §Prefetch Template: values are the resource a read returns, the searchset Bundle a search
  returns, `null` when the client has no data, or an OperationOutcome when it failed to fetch.

Beyond the letter of the specification, because screening the wrong data is worse than refusing:
- every resource in the prefetch and in `draftOrders` that names a patient must name
  `context.patientId`, and the prefetched Patient must be that patient;
- every `selections` item must be an entry of `draftOrders`, and every draft order needs an `id`
  (a card's "remove the draft order" suggestion and the report of what was not screened name it);
- a prefetch key the service did not ask for is refused (§Prefetch Template: "services SHALL only
  receive the data they requested in their prefetch").
Unknown top-level and context members are ignored (extensions, later hook versions).

Problems carry paths and fixed messages, never values (`_checks`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from engine.doors.cdshooks._checks import (
    FHIR_ID,
    RELATIVE_REFERENCE,
    HookRequestError,
    Problem,
    Problems,
    array_member,
    at,
    idx,
    obj_member,
    text,
)
from engine.doors.cdshooks.discovery import PREFETCH, SERVICES, PrefetchTemplate, fill_prefetch_template

__all__ = [
    "FhirAuthorization",
    "HookContext",
    "HookRequest",
    "HookRequestError",
    "Problem",
    "draft_order_labels",
    "missing_prefetch",
    "operation_outcome",
    "parse_hook_request",
    "prefetch_query",
]

MAX_SELECTIONS = 200
MAX_DRAFT_ORDERS = 200
MAX_BUNDLE_ENTRIES = 5000
MAX_URL = 2048
MAX_ACCESS_TOKEN = 16384
MAX_SCOPE = 4096
MAX_SUBJECT = 256

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ORDER_USERS = ("Practitioner", "PractitionerRole")
_USER_TYPES = {
    "order-select": _ORDER_USERS,
    "order-sign": _ORDER_USERS,
    "patient-view": (*_ORDER_USERS, "Patient", "RelatedPerson"),
}
_TEMPLATES: Mapping[str, PrefetchTemplate] = {t.key: t for t in PREFETCH}


@dataclass(frozen=True, slots=True)
class FhirAuthorization:
    access_token: str = field(repr=False)  # a credential: never in a repr, a log or an error
    token_type: str  # "Bearer"
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


@dataclass(frozen=True, slots=True)
class HookContext:
    user_id: str  # "Practitioner/abc"
    patient_id: str
    encounter_id: str | None = None
    selections: tuple[str, ...] = ()  # "MedicationRequest/103": entries of draft_orders
    draft_orders: Mapping[str, Any] | None = field(default=None, repr=False)  # the FHIR Bundle, as sent


@dataclass(frozen=True, slots=True)
class HookRequest:
    service_id: str
    hook: str
    hook_instance: str  # lower-case canonical UUID
    context: HookContext
    fhir_server: str | None = None
    fhir_authorization: FhirAuthorization | None = field(default=None, repr=False)
    # key -> the resource or searchset Bundle as sent, or None ("no data", §Prefetch Template).
    prefetch: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict, repr=False)
    prefetch_failed: frozenset[str] = frozenset()  # keys the client answered with an OperationOutcome
    prefetch_partial: frozenset[str] = frozenset()  # keys whose Bundle has a `next` page (not given whole)

    def draft_order_references(self) -> tuple[str, ...]:
        """`Type/id` of every draftOrders entry, in the Bundle's order."""
        bundle = self.context.draft_orders
        if bundle is None:
            return ()
        entries = bundle.get("entry") or []
        return tuple(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries)


def parse_hook_request(service_id: str, body: Any, *, allow_http: bool = False) -> HookRequest:
    """The body of a call to `service_id`, checked; HookRequestError lists every problem found."""
    hook = SERVICES.get(service_id)
    if hook is None:
        raise HookRequestError([("", "names no CDS service of this server")])
    if not isinstance(body, dict):
        raise HookRequestError([("", "must be a JSON object")])
    problems = Problems()

    sent_hook = text(problems, body, "hook", "", required=True, limit=64)
    if sent_hook is not None and sent_hook != hook:
        problems.add("hook", f"does not match the service called (its hook is {hook})")
    instance = text(
        problems,
        body,
        "hookInstance",
        "",
        required=True,
        limit=36,
        pattern=_UUID,
        what="a UUID (8-4-4-4-12 hex digits)",
    )
    fhir_server = _fhir_server(problems, body, allow_http=allow_http)

    context = _context(problems, body, hook)
    patient_id = context.patient_id if context is not None else None
    authorization = _authorization(problems, body, patient_id)
    if authorization is not None and "fhirServer" not in body:
        problems.add("fhirServer", "is required when fhirAuthorization is given")

    prefetch, failed, partial = _prefetch(problems, body, patient_id)
    problems.raise_if_any()
    assert sent_hook is not None and instance is not None and context is not None  # else a problem was added
    return HookRequest(
        service_id=service_id,
        hook=hook,
        hook_instance=instance.lower(),
        context=context,
        fhir_server=fhir_server,
        fhir_authorization=authorization,
        prefetch=prefetch,
        prefetch_failed=failed,
        prefetch_partial=partial,
    )


def missing_prefetch(request: HookRequest) -> list[str]:
    """The service's prefetch keys the request does not answer in full: absent (the client chose not
    to, or could not), answered with an OperationOutcome, or a Bundle with a further page. The server
    reads these from `fhirServer` with `fhirAuthorization`; without them it answers 412 (§Prefetch
    Template: "the service SHALL respond with an HTTP 412 Precondition Failed status code").
    A null value is an answer: the client has no such data."""
    return [
        t.key
        for t in PREFETCH
        if t.key not in request.prefetch or t.key in request.prefetch_failed or t.key in request.prefetch_partial
    ]


def prefetch_query(request: HookRequest, key: str) -> str:
    """The relative FHIR URL of prefetch `key` for this request's context (tokens filled in)."""
    ctx = request.context
    values = {"userId": ctx.user_id, "patientId": ctx.patient_id}
    if ctx.encounter_id is not None:
        values["encounterId"] = ctx.encounter_id
    return fill_prefetch_template(_TEMPLATES[key].template, context=values)


def draft_order_labels(request: HookRequest) -> dict[str, str]:
    """Draft MedicationRequest reference → the medication's text as the client sent it
    (`medicationCodeableConcept.text`, else its first coding's `display`, else
    `medicationReference.display`), for card suggestions. Orders without such text are left out."""
    labels: dict[str, str] = {}
    bundle = request.context.draft_orders
    for entry in (bundle.get("entry") or []) if bundle is not None else []:
        resource = entry["resource"]
        if resource["resourceType"] != "MedicationRequest":
            continue
        label = _display_of(resource.get("medicationCodeableConcept")) or _text_of(
            resource.get("medicationReference"), "display"
        )
        if label:
            labels[f"MedicationRequest/{resource['id']}"] = label
    return labels


def _text_of(value: Any, key: str) -> str | None:
    if isinstance(value, dict):
        text_value = value.get(key)
        if isinstance(text_value, str) and text_value.strip():
            return text_value
    return None


def _display_of(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    found = _text_of(concept, "text")
    if found:
        return found
    codings = concept.get("coding")
    for coding in codings if isinstance(codings, list) else []:
        found = _text_of(coding, "display")
        if found:
            return found
    return None


def operation_outcome(problems: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome for a 400 answer: one error issue per problem, `expression` its path.
    The issue code follows the message: "is required…" → required, "…is not supported…" →
    not-supported, anything else → invalid (every message is written in this package)."""
    issues = []
    for path, message in problems:
        if message.startswith("is required"):
            code = "required"
        elif "not supported" in message:
            code = "not-supported"
        else:
            code = "invalid"
        issue: dict[str, Any] = {
            "severity": "error",
            "code": code,
            "diagnostics": f"{path}: {message}" if path else f"the request body {message}",
        }
        if path:
            issue["expression"] = [path]
        issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}


# -- members ---------------------------------------------------------------------------------------------


def _fhir_server(problems: Problems, body: dict[str, Any], *, allow_http: bool) -> str | None:
    url = text(problems, body, "fhirServer", "", required=False, limit=MAX_URL)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port
    except ValueError:
        problems.add("fhirServer", "is not a URL")
        return None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in ("https", "http") or not parts.hostname or not port_ok or any(c.isspace() for c in url):
        problems.add("fhirServer", "must be an absolute https URL")
    elif parts.scheme not in schemes:
        problems.add("fhirServer", "must use https")
    elif parts.username is not None or parts.password is not None:
        problems.add("fhirServer", "must not carry credentials")
    elif parts.query or parts.fragment:
        problems.add("fhirServer", "must be a base URL without query or fragment")
    else:
        return url.rstrip("/")
    return None


def _authorization(problems: Problems, body: dict[str, Any], patient_id: str | None) -> FhirAuthorization | None:
    auth = obj_member(problems, body, "fhirAuthorization", "", required=False)
    if auth is None:
        return None
    p = "fhirAuthorization"
    before = len(problems.items)
    token = text(problems, auth, "access_token", p, required=True, limit=MAX_ACCESS_TOKEN)
    token_type = text(problems, auth, "token_type", p, required=True, limit=16)
    # RFC 6749 §5.1: the token type is case-insensitive; CDS Hooks fixes it to Bearer.
    if token_type is not None and token_type.lower() != "bearer":
        problems.add(at(p, "token_type"), "must be Bearer")
    expires = auth.get("expires_in")
    if "expires_in" not in auth:
        problems.add(at(p, "expires_in"), "is required")
    elif not isinstance(expires, int) or isinstance(expires, bool) or not 0 <= expires <= 2**31 - 1:
        problems.add(at(p, "expires_in"), "must be a non-negative integer (seconds)")
    scope = text(problems, auth, "scope", p, required=True, limit=MAX_SCOPE)
    subject = text(problems, auth, "subject", p, required=True, limit=MAX_SUBJECT)
    patient = text(problems, auth, "patient", p, required=False, limit=64, pattern=FHIR_ID, what="a FHIR id")
    if patient is not None and patient_id is not None and patient != patient_id:
        problems.add(at(p, "patient"), "names another patient than context.patientId")
    if len(problems.items) > before or token is None or scope is None or subject is None:
        return None
    assert isinstance(expires, int)
    return FhirAuthorization(token, "Bearer", expires, scope, subject, patient)


def _context(problems: Problems, body: dict[str, Any], hook: str) -> HookContext | None:
    ctx = obj_member(problems, body, "context", "", required=True)
    if ctx is None:
        return None
    p = "context"
    before = len(problems.items)
    types = _USER_TYPES[hook]
    user = text(
        problems, ctx, "userId", p, required=True, limit=130, pattern=RELATIVE_REFERENCE, what="a reference Type/id"
    )
    if user is not None and user.partition("/")[0] not in types:
        problems.add(at(p, "userId"), f"must reference a {' or '.join(types)}")
    patient = text(problems, ctx, "patientId", p, required=True, limit=64, pattern=FHIR_ID, what="a FHIR id")
    encounter = text(problems, ctx, "encounterId", p, required=False, limit=64, pattern=FHIR_ID, what="a FHIR id")

    selections: tuple[str, ...] = ()
    draft: dict[str, Any] | None = None
    if hook in ("order-select", "order-sign"):
        draft_path = at(p, "draftOrders")
        draft = obj_member(problems, ctx, "draftOrders", p, required=True)
        refs: list[str] | None = None
        if draft is not None:
            refs = _bundle(problems, draft, draft_path, patient, limit=MAX_DRAFT_ORDERS, need_ids=True)
        if hook == "order-select":
            selections = _selections(problems, ctx, p, refs)
    if len(problems.items) > before or user is None or patient is None:
        return None
    return HookContext(user, patient, encounter, selections, draft)


def _selections(problems: Problems, ctx: dict[str, Any], p: str, refs: list[str] | None) -> tuple[str, ...]:
    path = at(p, "selections")
    items = array_member(problems, ctx, "selections", p, required=True, limit=MAX_SELECTIONS)
    if items is None:
        return ()
    out: list[str] = []
    known = set(refs) if refs is not None else None
    for i, item in enumerate(items):
        where = idx(path, i)
        if not isinstance(item, str) or not RELATIVE_REFERENCE.fullmatch(item):
            problems.add(where, "must be a reference Type/id")
        elif known is not None and item not in known:
            problems.add(where, "names no entry of context.draftOrders")
        elif item in out:
            problems.add(where, "repeats an earlier selection")
        else:
            out.append(item)
    return tuple(out)


def _bundle(
    problems: Problems,
    bundle: dict[str, Any],
    path: str,
    patient_id: str | None,
    *,
    limit: int,
    need_ids: bool,
    entry_types: frozenset[str] | None = None,
) -> list[str] | None:
    """The `Type/id` of each entry (entries without an id are skipped when ids are not needed), or
    None when the Bundle has problems."""
    before = len(problems.items)
    if bundle.get("resourceType") != "Bundle":
        problems.add(at(path, "resourceType"), "must be Bundle")
        return None
    if entry_types is not None and "type" in bundle and bundle["type"] not in ("searchset", "collection"):
        problems.add(at(path, "type"), "must be searchset or collection")
    refs: list[str] = []
    # FHIR JSON omits an empty array, but a search with no results sent as `"entry": []` means the
    # same thing; refusing it would only fail a call over a formality.
    entries = bundle.get("entry")
    if entries is None or entries == []:
        entries = []
    elif not isinstance(entries, list):
        problems.add(at(path, "entry"), "must be a JSON array")
        entries = []
    elif len(entries) > limit:
        problems.add(at(path, "entry"), f"has more than {limit} items")
        entries = []
    for i, entry in enumerate(entries):
        where = idx(at(path, "entry"), i)
        if not isinstance(entry, dict):
            problems.add(where, "must be a JSON object")
            continue
        resource = obj_member(problems, entry, "resource", where, required=True)
        if resource is None:
            continue
        rpath = at(where, "resource")
        rtype = _resource_type(problems, resource, rpath)
        if rtype is None:
            continue
        if entry_types is not None and rtype not in entry_types:
            problems.add(at(rpath, "resourceType"), f"must be {' or '.join(sorted(entry_types))}")
            continue
        rid = text(problems, resource, "id", rpath, required=need_ids, limit=64, pattern=FHIR_ID, what="a FHIR id")
        _same_patient(problems, resource, rpath, patient_id)
        if rid is not None:
            ref = f"{rtype}/{rid}"
            if ref in refs:
                problems.add(at(rpath, "id"), "repeats an earlier entry's resource")
            refs.append(ref)
    return refs if len(problems.items) == before else None


def _resource_type(problems: Problems, resource: dict[str, Any], path: str) -> str | None:
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not _RESOURCE_TYPE.fullmatch(rtype):
        problems.add(at(path, "resourceType"), "must be a FHIR resource type")
        return None
    return rtype


def _same_patient(problems: Problems, resource: dict[str, Any], path: str, patient_id: str | None) -> None:
    """A resource's `subject` or `patient`, when it is a literal Patient reference, must be the
    patient in context: data of another patient must never be screened as this one's."""
    if patient_id is None:
        return
    for member in ("subject", "patient"):
        ref = resource.get(member)
        if not isinstance(ref, dict):
            continue
        value = ref.get("reference")
        if not isinstance(value, str):
            continue
        segments = value.split("/_history/")[0].rstrip("/").split("/")
        if len(segments) >= 2 and segments[-2] == "Patient" and segments[-1] != patient_id:
            problems.add(at(at(path, member), "reference"), "names another patient than context.patientId")


def _prefetch(
    problems: Problems, body: dict[str, Any], patient_id: str | None
) -> tuple[dict[str, Mapping[str, Any] | None], frozenset[str], frozenset[str]]:
    out: dict[str, Mapping[str, Any] | None] = {}
    failed: set[str] = set()
    partial: set[str] = set()
    values = obj_member(problems, body, "prefetch", "", required=False)
    if values is None:
        return out, frozenset(), frozenset()
    if not values:
        problems.add("prefetch", "must not be empty (omit it when nothing was prefetched)")
        return out, frozenset(), frozenset()
    unknown = sum(1 for k in values if k not in _TEMPLATES)
    if unknown:
        # The keys themselves are not echoed: they are the client's text.
        problems.add(
            "prefetch",
            f"has {unknown} keys this service did not ask for; that is not supported"
            f" (its keys: {', '.join(_TEMPLATES)})",
        )
    for key, template in _TEMPLATES.items():
        if key not in values:
            continue
        value = values[key]
        path = at("prefetch", key)
        if value is None:
            out[key] = None
            continue
        if not isinstance(value, dict):
            problems.add(path, "must be a FHIR resource (JSON object) or null")
            continue
        rtype = _resource_type(problems, value, path)
        if rtype is None:
            continue
        if rtype == "OperationOutcome":
            failed.add(key)
            continue
        if template.search:
            refs = _bundle(
                problems,
                value,
                path,
                patient_id,
                limit=MAX_BUNDLE_ENTRIES,
                need_ids=False,
                entry_types=frozenset({template.resource_type, "OperationOutcome"}),
            )
            if refs is None:
                continue
            if _has_next_page(value):
                partial.add(key)
        else:
            if rtype != template.resource_type:
                problems.add(at(path, "resourceType"), f"must be {template.resource_type}")
                continue
            if rtype == "Patient":
                # Without an id nothing says this is the patient in context.
                if "id" not in value:
                    problems.add(at(path, "id"), "is required")
                    continue
                if patient_id is not None and value["id"] != patient_id:
                    problems.add(at(path, "id"), "is not context.patientId")
                    continue
            _same_patient(problems, value, path, patient_id)
        out[key] = value
    return out, frozenset(failed), frozenset(partial)


def _has_next_page(bundle: Mapping[str, Any]) -> bool:
    links = bundle.get("link")
    if not isinstance(links, list):
        return False
    return any(isinstance(link, dict) and link.get("relation") == "next" for link in links)

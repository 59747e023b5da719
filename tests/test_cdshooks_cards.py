"""CDS Hooks 2.0 without a transport: discovery, hook requests, cards, feedback, and the JSON Schemas
written from the specification (tests/schemas/cdshooks/), which must also reject what it forbids."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from engine.doors.cdshooks.cards import (
    OVERRIDE_REASONS,
    OVERRIDE_REASONS_BY_KIND,
    SUMMARY_LIMIT,
    cards_for,
    incomplete_card_id,
    indicator_for,
    override_reason_code_system,
    override_reason_system,
    rule_system,
    shorten,
    suggestion_uuid,
)
from engine.doors.cdshooks.discovery import (
    PREFETCH,
    SERVICES,
    check_prefetch_template,
    discovery_document,
)
from engine.doors.cdshooks.feedback import parse_feedback
from engine.doors.cdshooks.requests import (
    HookRequest,
    HookRequestError,
    draft_order_labels,
    missing_prefetch,
    operation_outcome,
    parse_hook_request,
    prefetch_query,
)
from engine.model import (
    Alert,
    AlertKind,
    EvaluationResult,
    EvidenceLevel,
    RuleError,
    Severity,
    UnresolvedItem,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "tests" / "schemas" / "cdshooks"
BASE = "https://cds.example.org/cds-services"
SELECT = "praneya-medication-safety-order-select"
SIGN = "praneya-medication-safety-order-sign"
VIEW = "praneya-medication-safety-patient-view"
CANARY = "CANARY-Zq81"  # a value that must never come back in an error


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


DISCOVERY = _validator("discovery.schema.json")
RESPONSE = _validator("cards-response.schema.json")
FEEDBACK = _validator("feedback.schema.json")
REQUEST = _validator("hook-request.schema.json")


def _errors(validator: Draft202012Validator, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def _proto_override_reasons() -> list[str]:
    proto = (ROOT / "protos" / "praneya" / "safety" / "v1" / "safety.proto").read_text()
    block = re.search(r"enum OverrideReason \{(.*?)\}", proto, re.S)
    assert block is not None
    names = re.findall(r"^\s*([A-Z_]+)\s*=\s*\d+;", block.group(1), re.M)
    return [n for n in names if n != "OVERRIDE_REASON_UNSPECIFIED"]


# -- fixtures: alerts, results, requests -------------------------------------------------------------


def _alert(
    *,
    kind: AlertKind = AlertKind.DRUG_DRUG_INTERACTION,
    severity: Severity = Severity.HIGH,
    summary: str = "warfarin with ibuprofen: bleeding risk",
    detail: str = "NSAIDs add to the anticoagulant effect of warfarin.",
    recommendation: str = "Avoid; use paracetamol for pain.",
    involved: tuple[str, ...] = ("med-current-1", "med-draft-1"),
    rule_id: str = "kb:pair-0001",
    references: tuple[str, ...] = ("Praneya starter interactions",),
) -> Alert:
    return Alert(
        kind=kind,
        severity=severity,
        summary=summary,
        detail=detail,
        recommendation=recommendation,
        evidence=EvidenceLevel.CLINICAL_TRIAL,
        involved_ids=involved,
        rule_id=rule_id,
        rule_version=0 if rule_id.startswith("kb:") else 3,
        finding_key=f"{kind.value}:{'+'.join(involved)}",
        references=references,
    )


def _result(*alerts: Alert, **kw: Any) -> EvaluationResult:
    kw.setdefault("complete", not kw.get("unresolved") and not kw.get("rule_errors"))
    return EvaluationResult(
        alerts=alerts, ruleset_version="rs-7", knowledge_version="kb-2", vocabulary_version="voc-1", **kw
    )


DRAFTS = {"med-draft-1": "MedicationRequest/draft-1", "med-draft-2": "MedicationRequest/draft-2"}


def _cards(*pairs: tuple[str, Alert], omitted: int = 0, result: EvaluationResult | None = None) -> list[dict[str, Any]]:
    res = result if result is not None else _result(*(a for _, a in pairs))
    cards = cards_for(list(pairs), res, omitted=omitted, draft_orders=DRAFTS, source_url=BASE)
    assert _errors(RESPONSE, {"cards": cards}) == []
    return cards


def _med_request(rid: str, patient: str = "pat-1", text: str = "ibuprofen 400 MG Oral Tablet") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
    }


def _bundle(*resources: dict[str, Any], kind: str = "searchset") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


def _prefetch() -> dict[str, Any]:
    return {
        "patient": {"resourceType": "Patient", "id": "pat-1", "birthDate": "1952-04-02", "gender": "male"},
        "medicationRequests": _bundle({**_med_request("active-1"), "status": "active"}),
        "medicationStatements": None,
        "allergies": _bundle(
            {"resourceType": "AllergyIntolerance", "id": "al-1", "patient": {"reference": "Patient/pat-1"}}
        ),
        "conditions": {"resourceType": "Bundle", "type": "searchset"},
        "observations": _bundle(
            {"resourceType": "Observation", "id": "obs-1", "subject": {"reference": "Patient/pat-1"}}
        ),
    }


def _request(hook: str = "order-select") -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/prac-1", "patientId": "pat-1", "encounterId": "enc-1"}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = _bundle(_med_request("draft-1"), _med_request("draft-2"), kind="collection")
    if hook == "order-select":
        context["selections"] = ["MedicationRequest/draft-2"]
    return {
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": "https://ehr.example.org/fhir/R4",
        "fhirAuthorization": {
            "access_token": "opaque-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/MedicationRequest.read",
            "subject": "praneya-cds",
        },
        "context": context,
        "prefetch": _prefetch(),
    }


def _problems(service: str, body: Any, **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(HookRequestError) as err:
        parse_hook_request(service, body, **kw)
    assert CANARY not in str(err.value)
    assert CANARY not in json.dumps(operation_outcome(err.value.problems))
    return [(p.path, p.message) for p in err.value.problems]


def _paths(service: str, body: Any, **kw: Any) -> list[str]:
    return [p for p, _ in _problems(service, body, **kw)]


# -- discovery ---------------------------------------------------------------------------------------------


def test_discovery_document_validates_and_routes_every_hook() -> None:
    doc = discovery_document()
    assert _errors(DISCOVERY, doc) == []
    services = {s["id"]: s for s in doc["services"]}
    assert services.keys() == SERVICES.keys() == {SELECT, SIGN, VIEW}
    assert {s["hook"] for s in services.values()} == {"order-select", "order-sign", "patient-view"}
    for sid, service in services.items():
        assert SERVICES[sid] == service["hook"]
        assert set(service["prefetch"]) == {t.key for t in PREFETCH}
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        for template in service["prefetch"].values():
            assert check_prefetch_template(template, service["hook"]) == [], template


@pytest.mark.parametrize(
    "template",
    [
        "Patient/{{context.draftOrders}}",  # not a prefetch token of the hook
        "Patient/{{context.medication.id}}",  # not a root-level field
        "Observation?patient={{context.patientId}}&code:text=potassium",  # a token modifier other than :in
        "Observation?patient={{context.patientId}}&date=sa2020-01-01",  # a date prefix outside eq/lt/gt/ge/le
        "Observation?patient={{context.patientId}}&_sort=-colour",  # sort by an unknown parameter
        "Observation?patient={{context.patientId}}&_count=ten",
        "Observation?patient={{context.patientId}}&_has:Condition:subject:code=x",  # reverse chaining
        "Patient/{{context.patientId}}/Observation?x=1",  # not type-level
        "Patient/{{context.patientId}",  # unbalanced
    ],
)
def test_the_prefetch_check_refuses_what_the_restrictions_forbid(template: str) -> None:
    assert check_prefetch_template(template, "order-select") != []


def test_prefetch_query_fills_the_patient_percent_encoded() -> None:
    body = _request()
    body["context"]["patientId"] = "pat.1-x"
    for entry in body["context"]["draftOrders"]["entry"]:
        entry["resource"]["subject"]["reference"] = "Patient/pat.1-x"
    del body["prefetch"]
    request = parse_hook_request(SELECT, body)
    assert prefetch_query(request, "patient") == "Patient/pat.1-x"
    assert prefetch_query(request, "conditions") == (
        "Condition?patient=pat.1-x&clinical-status=active,recurrence,relapse"
    )


# -- cards -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "indicator"),
    [
        (Severity.CRITICAL, "critical"),
        (Severity.HIGH, "critical"),
        (Severity.MODERATE, "warning"),
        (Severity.LOW, "info"),
        (Severity.INFO, "info"),
    ],
)
def test_indicator_follows_severity(severity: Severity, indicator: str) -> None:
    assert indicator_for(severity) == indicator
    (card,) = _cards(("al_" + "a" * 24, _alert(severity=severity)))
    assert card["indicator"] == indicator


def test_summary_is_cut_on_a_word_with_an_ellipsis() -> None:
    words = "the patient takes warfarin and the proposed order adds ibuprofen which raises the bleeding risk"
    long = f"{words} {words}"
    short = shorten(long)
    assert len(short) <= SUMMARY_LIMIT < 140
    assert short.endswith("…")
    head = short[:-1]
    assert long.startswith(head) and long[len(head)] == " "  # cut between words
    assert len(head) > SUMMARY_LIMIT // 2
    assert shorten("x" * SUMMARY_LIMIT) == "x" * SUMMARY_LIMIT
    assert shorten("x" * 300) == "x" * (SUMMARY_LIMIT - 1) + "…"  # one word: cut inside it
    assert shorten("two\nlines\x00 and\tcontrol") == "two lines and control"
    (card,) = _cards(("al_" + "b" * 24, _alert(summary=long)))
    assert card["summary"] == short


def test_alert_card_fields_source_and_markdown_detail() -> None:
    alert = _alert(
        detail="Raises INR. <img src=https://evil.example/p.png> [click](https://evil.example) *bold* # head",
        recommendation="- Avoid",
        rule_id="ddi_warfarin-nsaid",
    )
    (card,) = _cards(("al_" + "c" * 24, alert))
    assert card["uuid"] == "al_" + "c" * 24
    assert card["summary"] == alert.summary
    assert card["source"] == {
        "label": "Praneya clinical rule ddi_warfarin-nsaid (version 3)",
        "url": BASE,
        "topic": {
            "system": rule_system(BASE),
            "code": "ddi_warfarin-nsaid",
            "display": "Praneya clinical rule ddi_warfarin-nsaid (version 3)",
        },
    }
    detail = card["detail"]
    assert "\\<img src=https://evil.example/p.png\\>" in detail
    assert "\\[click\\]\\(https://evil.example\\)" in detail
    assert "\\*bold\\*" in detail and "\\# head" in detail
    assert "**Recommendation:** \\- Avoid" in detail
    assert "**Severity:** high · **Evidence:** clinical trials" in detail
    # Inside a code span a backslash is shown as itself, so the id is not escaped there.
    assert "rule `ddi_warfarin-nsaid` version 3 of rule set rs-7" in detail
    assert "**References:** Praneya starter interactions" in detail
    assert "links" not in card


def test_knowledge_base_sources_are_named() -> None:
    labels = {
        "kb:pair-9": "Praneya interaction knowledge base",
        "kb:allergen:penicillins": "Praneya allergen knowledge",
        "kb:duplicate-ingredient": "Praneya duplicate-therapy check",
        "kb:vocabulary": "Praneya drug vocabulary",
    }
    for rule_id, label in labels.items():
        (card,) = _cards(("al_" + "d" * 24, _alert(rule_id=rule_id)))
        assert card["source"]["label"] == label
        assert card["source"]["topic"]["code"] == rule_id
        assert f"knowledge base entry `{rule_id}`" in card["detail"]


def test_draft_orders_in_a_finding_get_removal_suggestions() -> None:
    aid = "al_" + "e" * 24
    both = _alert(involved=("med-draft-1", "med-draft-2"))
    (card,) = _cards((aid, both))
    assert card["selectionBehavior"] == "at-most-one"
    refs = ["MedicationRequest/draft-1", "MedicationRequest/draft-2"]
    assert [s["actions"] for s in card["suggestions"]] == [
        [{"type": "delete", "description": f"Remove the draft order {r} from this ordering session.", "resourceId": r}]
        for r in refs
    ]
    assert [s["uuid"] for s in card["suggestions"]] == [suggestion_uuid(aid, r) for r in refs]
    assert all(uuid.UUID(s["uuid"]).version == 5 for s in card["suggestions"])
    assert len({s["uuid"] for s in card["suggestions"]}) == 2
    assert not any(s.get("isRecommended") for s in card["suggestions"])
    # Deterministic: the same finding, the same suggestion ids, on another call.
    (again,) = _cards((aid, both))
    assert again["suggestions"] == card["suggestions"]
    assert suggestion_uuid("al_" + "f" * 24, refs[0]) != suggestion_uuid(aid, refs[0])

    # One draft order and a current medication: one suggestion, for the draft.
    (one,) = _cards((aid, _alert()))
    assert [s["actions"][0]["resourceId"] for s in one["suggestions"]] == ["MedicationRequest/draft-1"]
    # No draft order involved (patient-view, or current medications only): no suggestions.
    (none,) = _cards((aid, _alert(involved=("med-current-1", "med-current-2"))))
    assert "suggestions" not in none and "selectionBehavior" not in none
    # "Not recognised" is fixed by naming the drug, not by deleting it.
    unknown = _alert(kind=AlertKind.OTHER, severity=Severity.INFO, involved=("med-draft-1",), rule_id="kb:vocabulary")
    (vocab,) = _cards((aid, unknown))
    assert "suggestions" not in vocab


def test_suggestion_labels_use_the_order_text_the_client_sent() -> None:
    request = parse_hook_request(SELECT, _request())
    labels = draft_order_labels(request)
    assert labels == {
        "MedicationRequest/draft-1": "ibuprofen 400 MG Oral Tablet",
        "MedicationRequest/draft-2": "ibuprofen 400 MG Oral Tablet",
    }
    alert = _alert()
    (card,) = cards_for(
        [("al_" + "1" * 24, alert)],
        _result(alert),
        omitted=0,
        draft_orders=DRAFTS,
        source_url=BASE,
        order_labels=labels,
    )
    assert card["suggestions"][0]["label"] == "Remove the draft order: ibuprofen 400 MG Oral Tablet"


def test_override_reasons_are_the_grpc_reasons_chosen_per_kind() -> None:
    proto = _proto_override_reasons()
    assert list(OVERRIDE_REASONS) == proto
    assert set(OVERRIDE_REASONS_BY_KIND) == set(AlertKind)
    for kind, reasons in OVERRIDE_REASONS_BY_KIND.items():
        assert set(reasons) <= set(proto) and "OTHER_REASON" in reasons, kind
        (card,) = _cards(("al_" + "2" * 24, _alert(kind=kind)))
        assert [c["code"] for c in card["overrideReasons"]] == list(reasons)
        assert all(c["system"] == override_reason_system(BASE) and c["display"] for c in card["overrideReasons"])
    assert "DOSE_ADJUSTED" not in OVERRIDE_REASONS_BY_KIND[AlertKind.DRUG_ALLERGY]
    assert "DOSE_ADJUSTED" not in OVERRIDE_REASONS_BY_KIND[AlertKind.DOSE_RANGE]
    assert "PATIENT_ALREADY_TOLERATES" not in OVERRIDE_REASONS_BY_KIND[AlertKind.PREGNANCY]
    assert OVERRIDE_REASONS_BY_KIND[AlertKind.DRUG_DRUG_INTERACTION] == tuple(proto)
    system = override_reason_code_system(BASE)
    assert system["url"] == override_reason_system(BASE)
    assert [c["code"] for c in system["concept"]] == proto


def test_an_unscreened_medication_makes_a_critical_card_first() -> None:
    unresolved = (
        UnresolvedItem("med-draft-2", "medication", "Zyxofen ![x](https://evil.example/p.png)", "unrecognised"),
        UnresolvedItem("allergy-7", "allergy", "moonflower dust", "unrecognised", suggestions=("moonflower",)),
    )
    alert = _alert()
    result = _result(alert, unresolved=unresolved, complete=False)
    cards = _cards(("al_" + "3" * 24, alert), result=result)
    assert len(cards) == 2
    coverage, alert_card = cards
    assert alert_card["uuid"] == "al_" + "3" * 24
    assert coverage["indicator"] == "critical"
    assert coverage["summary"] == "Screening incomplete: 1 medication not screened; 1 allergy record not screened"
    assert coverage["uuid"] == incomplete_card_id(result, 0)
    assert re.fullmatch(r"al_[0-9a-f]{24}", coverage["uuid"])
    assert "suggestions" not in coverage and "links" not in coverage
    detail = coverage["detail"]
    # The draft order is named by its reference; the caller's text comes back escaped.
    assert "- Medication MedicationRequest/draft\\-2" not in detail
    assert (
        "- Medication MedicationRequest/draft-2 (sent as “Zyxofen \\!\\[x\\]\\(https://evil.example/p.png\\)”)"
        in detail
    )
    assert ": not in the drug vocabulary." in detail
    assert (
        "- Allergy allergy-7 (sent as “moonflower dust”): not in the drug vocabulary; did you mean moonflower?"
        in detail
    )
    assert "Zyxofen" not in coverage["summary"]
    assert [c["code"] for c in coverage["overrideReasons"]] == [
        "NOT_CLINICALLY_RELEVANT",
        "WILL_MONITOR",
        "ALERT_INCORRECT",
        "OTHER_REASON",
    ]


def test_rule_errors_and_omitted_alerts_make_a_warning_card() -> None:
    errors = (
        RuleError("renal-metformin", 2, "insufficient data: egfr", insufficient_data=True),
        RuleError("beers-x", 1, "error: KeyError: path"),
    )
    result = _result(rule_errors=errors, complete=False)
    (coverage,) = _cards(result=result, omitted=4)
    assert coverage["indicator"] == "warning"
    assert coverage["summary"] == "Screening incomplete: 2 rules not evaluated; 4 more alerts not shown"
    assert "- Rule `renal-metformin` (version 2): insufficient data: egfr." in coverage["detail"]
    assert "- Rule `beers-x` (version 1): could not be evaluated." in coverage["detail"]
    assert "KeyError" not in coverage["detail"]
    assert "**Alerts not shown:** 4 more alerts were found" in coverage["detail"]
    assert incomplete_card_id(result, 4) != incomplete_card_id(result, 3)
    (only_omitted,) = _cards(result=_result(), omitted=1)
    assert only_omitted["summary"] == "Screening incomplete: 1 more alert not shown"
    (flagged,) = _cards(result=_result(complete=False))
    assert "reported the evaluation incomplete" in flagged["detail"]


def test_a_complete_evaluation_has_no_coverage_card() -> None:
    assert _cards(result=_result()) == []
    with pytest.raises(ValueError, match="source_url"):
        cards_for([], _result(), omitted=0, draft_orders={}, source_url="cds-services")


# -- hook requests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "hook"), [(SELECT, "order-select"), (SIGN, "order-sign"), (VIEW, "patient-view")])
def test_valid_requests_parse_and_match_the_schema(service: str, hook: str) -> None:
    body = _request(hook)
    assert _errors(REQUEST, body) == []
    request = parse_hook_request(service, body)
    assert request.hook == hook and request.service_id == service
    assert request.context.user_id == "Practitioner/prac-1"
    assert request.context.patient_id == "pat-1" and request.context.encounter_id == "enc-1"
    assert request.fhir_server == "https://ehr.example.org/fhir/R4"
    assert request.fhir_authorization is not None and request.fhir_authorization.expires_in == 300
    assert "opaque-token" not in repr(request)
    assert set(request.prefetch) == {t.key for t in PREFETCH}
    assert request.prefetch["medicationStatements"] is None
    assert missing_prefetch(request) == []
    if hook == "patient-view":
        assert request.draft_order_references() == () and request.context.selections == ()
    else:
        assert request.draft_order_references() == ("MedicationRequest/draft-1", "MedicationRequest/draft-2")
    if hook == "order-select":
        assert request.context.selections == ("MedicationRequest/draft-2",)


def test_the_specifications_own_example_request_parses() -> None:
    # §Calling a CDS Service / Example: patient-view with an http fhirServer (development only).
    body = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": "http://hooks.smarthealthit.org:9080",
        "hook": "patient-view",
        "fhirAuthorization": {
            "access_token": "some-opaque-fhir-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "cds-service4",
        },
        "context": {"userId": "Practitioner/example", "patientId": "1288992", "encounterId": "89284"},
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "gender": "male",
                "birthDate": "1925-12-23",
                "id": "1288992",
                "active": True,
            }
        },
    }
    assert _errors(REQUEST, body) == []
    assert _paths(VIEW, body) == ["fhirServer"]  # http is refused outside development
    request = parse_hook_request(VIEW, body, allow_http=True)
    assert request.fhir_server == "http://hooks.smarthealthit.org:9080"
    assert missing_prefetch(request) == [t.key for t in PREFETCH if t.key != "patient"]


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DELETE:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("service", "path", "value", "expected"),
    [
        (SELECT, "hook", _DELETE, [("hook", "is required")]),
        (SELECT, "hook", "order-sign", [("hook", "does not match the service called (its hook is order-select)")]),
        (SELECT, "hookInstance", CANARY, [("hookInstance", "must be a UUID (8-4-4-4-12 hex digits)")]),
        (SELECT, "hookInstance", "", [("hookInstance", "must not be empty (omit an optional member instead)")]),
        (SELECT, "fhirServer", "http://ehr.example.org/fhir", [("fhirServer", "must use https")]),
        (SELECT, "fhirServer", f"https://{CANARY}:pw@ehr.example.org", [("fhirServer", "must not carry credentials")]),
        (
            SELECT,
            "fhirServer",
            f"https://ehr.example.org/fhir?{CANARY}",
            [("fhirServer", "must be a base URL without query or fragment")],
        ),
        (SELECT, "fhirServer", CANARY, [("fhirServer", "must be an absolute https URL")]),
        (SELECT, "fhirServer", _DELETE, [("fhirServer", "is required when fhirAuthorization is given")]),
        (SELECT, "fhirAuthorization.token_type", CANARY, [("fhirAuthorization.token_type", "must be Bearer")]),
        (
            SELECT,
            "fhirAuthorization.expires_in",
            True,
            [("fhirAuthorization.expires_in", "must be a non-negative integer (seconds)")],
        ),
        (
            SELECT,
            "fhirAuthorization.expires_in",
            -1,
            [("fhirAuthorization.expires_in", "must be a non-negative integer (seconds)")],
        ),
        (SELECT, "fhirAuthorization.subject", _DELETE, [("fhirAuthorization.subject", "is required")]),
        (
            SELECT,
            "fhirAuthorization.access_token",
            f"a\n{CANARY}",
            [("fhirAuthorization.access_token", "contains control characters")],
        ),
        (
            SELECT,
            "fhirAuthorization.patient",
            "pat-2",
            [("fhirAuthorization.patient", "names another patient than context.patientId")],
        ),
        (SELECT, "context", _DELETE, [("context", "is required")]),
        (SELECT, "context", [CANARY], [("context", "must be a JSON object")]),
        (
            SELECT,
            "context.userId",
            f"Patient/{CANARY}",
            [("context.userId", "must reference a Practitioner or PractitionerRole")],
        ),
        (SELECT, "context.userId", CANARY, [("context.userId", "must be a reference Type/id")]),
        (SELECT, "context.patientId", _DELETE, [("context.patientId", "is required")]),
        (SELECT, "context.patientId", "pat 1", [("context.patientId", "must be a FHIR id")]),
        (SELECT, "context.encounterId", 12, [("context.encounterId", "must be a string")]),
        (SELECT, "context.draftOrders", _DELETE, [("context.draftOrders", "is required")]),
        (
            SELECT,
            "context.draftOrders.resourceType",
            "Parameters",
            [("context.draftOrders.resourceType", "must be Bundle")],
        ),
        (
            SELECT,
            "context.draftOrders.entry.0.resource.id",
            _DELETE,
            [("context.draftOrders.entry[0].resource.id", "is required")],
        ),
        (
            SELECT,
            "context.draftOrders.entry.1.resource.id",
            "draft-1",
            [("context.draftOrders.entry[1].resource.id", "repeats an earlier entry's resource")],
        ),
        (
            SELECT,
            "context.draftOrders.entry.1.resource.subject.reference",
            "Patient/pat-2",
            [
                (
                    "context.draftOrders.entry[1].resource.subject.reference",
                    "names another patient than context.patientId",
                )
            ],
        ),
        (SELECT, "context.draftOrders.entry.0", CANARY, [("context.draftOrders.entry[0]", "must be a JSON object")]),
        (SELECT, "context.selections", _DELETE, [("context.selections", "is required")]),
        (
            SELECT,
            "context.selections",
            [],
            [("context.selections", "must not be empty (omit an optional member instead)")],
        ),
        (
            SELECT,
            "context.selections.0",
            "MedicationRequest/elsewhere",
            [("context.selections[0]", "names no entry of context.draftOrders")],
        ),
        (SELECT, "context.selections.0", CANARY, [("context.selections[0]", "must be a reference Type/id")]),
        (
            SELECT,
            "context.selections",
            ["MedicationRequest/draft-1", "MedicationRequest/draft-1"],
            [("context.selections[1]", "repeats an earlier selection")],
        ),
        (SIGN, "context.draftOrders", _DELETE, [("context.draftOrders", "is required")]),
        (VIEW, "context.userId", "Patient/pat-1", []),
        (SELECT, "prefetch", {}, [("prefetch", "must not be empty (omit it when nothing was prefetched)")]),
        (SELECT, "prefetch.patient", CANARY, [("prefetch.patient", "must be a FHIR resource (JSON object) or null")]),
        (SELECT, "prefetch.patient.id", "pat-2", [("prefetch.patient.id", "is not context.patientId")]),
        (SELECT, "prefetch.patient.id", _DELETE, [("prefetch.patient.id", "is required")]),
        (
            SELECT,
            "prefetch.patient.resourceType",
            "Practitioner",
            [("prefetch.patient.resourceType", "must be Patient")],
        ),
        (
            SELECT,
            "prefetch.conditions.resourceType",
            "Condition",
            [("prefetch.conditions.resourceType", "must be Bundle")],
        ),
        (
            SELECT,
            "prefetch.observations.type",
            "history",
            [("prefetch.observations.type", "must be searchset or collection")],
        ),
        (
            SELECT,
            "prefetch.allergies.entry.0.resource.patient.reference",
            "https://ehr.example.org/fhir/Patient/pat-9/_history/2",
            [
                (
                    "prefetch.allergies.entry[0].resource.patient.reference",
                    "names another patient than context.patientId",
                )
            ],
        ),
        (
            SELECT,
            "prefetch.observations.entry.0.resource.resourceType",
            "Condition",
            [("prefetch.observations.entry[0].resource.resourceType", "must be Observation or OperationOutcome")],
        ),
    ],
)
def test_request_problems_name_the_exact_path(
    service: str, path: str, value: Any, expected: list[tuple[str, str]]
) -> None:
    hook = SERVICES[service]
    body = _set(_request(hook), path, value)
    if not expected:
        parse_hook_request(service, body)
        return
    assert _problems(service, body) == expected


def test_unknown_prefetch_keys_are_refused_without_echoing_them() -> None:
    body = _request()
    body["prefetch"][CANARY] = {"resourceType": "Patient"}
    ((path, message),) = _problems(SELECT, body)
    assert path == "prefetch" and "1 keys this service did not ask for" in message
    outcome = operation_outcome([(path, message)])
    assert outcome["issue"][0]["code"] == "not-supported"


def test_bodies_that_are_not_objects_and_unknown_services() -> None:
    assert _problems(SELECT, [CANARY]) == [("", "must be a JSON object")]
    assert _problems("no-such-service", _request()) == [("", "names no CDS service of this server")]


def test_every_problem_is_reported_at_once_and_bounded() -> None:
    body = _request()
    body["hookInstance"] = "x"
    body["context"]["patientId"] = 5
    del body["fhirAuthorization"]["scope"]
    assert sorted(_paths(SELECT, body)) == ["context.patientId", "fhirAuthorization.scope", "hookInstance"]
    many = _request()
    many["prefetch"]["observations"]["entry"] = [{"resource": {"resourceType": "Condition"}}] * 400
    problems = _problems(SELECT, many)
    assert len(problems) == 51 and problems[-1] == ("", "and 350 more problems")


def test_missing_prefetch_lists_absent_failed_and_paged_keys() -> None:
    body = _request()
    del body["prefetch"]["patient"]
    body["prefetch"]["allergies"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
    body["prefetch"]["observations"]["link"] = [{"relation": "next", "url": "https://ehr.example.org/fhir/x"}]
    request = parse_hook_request(SELECT, body)
    assert missing_prefetch(request) == ["patient", "allergies", "observations"]
    assert request.prefetch_failed == {"allergies"} and request.prefetch_partial == {"observations"}
    del body["prefetch"]
    assert missing_prefetch(parse_hook_request(SELECT, body)) == [t.key for t in PREFETCH]


def test_operation_outcome_codes_and_expressions() -> None:
    outcome = operation_outcome(
        [
            ("context.draftOrders", "is required"),
            ("hookInstance", "must be a UUID (8-4-4-4-12 hex digits)"),
            ("prefetch", "has 1 keys this service did not ask for; that is not supported (its keys: patient)"),
            ("", "must be a JSON object"),
        ]
    )
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in outcome["issue"]] == ["required", "invalid", "not-supported", "invalid"]
    assert all(i["severity"] == "error" for i in outcome["issue"])
    assert outcome["issue"][0]["expression"] == ["context.draftOrders"]
    assert outcome["issue"][0]["diagnostics"] == "context.draftOrders: is required"
    assert "expression" not in outcome["issue"][3]
    assert outcome["issue"][3]["diagnostics"] == "the request body must be a JSON object"


# -- feedback ----------------------------------------------------------------------------------------------

ACCEPTED: dict[str, Any] = {
    "feedback": [
        {
            "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
            "outcomeTimestamp": "2021-12-11T10:05:31Z",
        }
    ]
}
OVERRIDDEN: dict[str, Any] = {
    "feedback": [
        {
            "card": "al_" + "4" * 24,
            "outcome": "overridden",
            "overrideReason": {
                "reason": {"code": "WILL_MONITOR", "system": override_reason_system(BASE), "display": "Will monitor"},
                "userComment": "INR\ncheck\tin 3 days",
            },
            "outcomeTimestamp": "2020-12-11T01:30:00.52+01:30",
        }
    ]
}


def test_feedback_examples_parse_and_match_the_schema() -> None:
    for doc in (ACCEPTED, OVERRIDDEN):
        assert _errors(FEEDBACK, doc) == []
    (accepted,) = parse_feedback(ACCEPTED, source_url=BASE)
    assert accepted.outcome == "accepted" and accepted.reason_name is None
    assert accepted.accepted_suggestions == ("e56e1945-20b3-4393-8503-a1a20fd73152",)
    assert accepted.outcome_timestamp == datetime(2021, 12, 11, 10, 5, 31, tzinfo=UTC)
    (overridden,) = parse_feedback(OVERRIDDEN, source_url=BASE)
    assert overridden.reason_name == "WILL_MONITOR"
    assert overridden.override_reason is not None and overridden.override_reason.user_comment == "INR check in 3 days"
    assert overridden.outcome_timestamp == datetime(2020, 12, 11, 0, 0, 0, 520000, tzinfo=UTC)
    # §Overridden guidance: no reason at all is valid.
    bare = {
        "feedback": [{"card": "al_" + "5" * 24, "outcome": "overridden", "outcomeTimestamp": "2020-12-11T00:00:00Z"}]
    }
    assert _errors(FEEDBACK, bare) == []
    (none,) = parse_feedback(bare, source_url=BASE)
    assert none.reason_name is None and none.override_reason is None
    # A reason the client added from its own code system is OTHER_REASON.
    foreign = _set(OVERRIDDEN, "feedback.0.overrideReason.reason.system", "https://ehr.example.org/reasons")
    assert parse_feedback(foreign, source_url=BASE)[0].reason_name == "OTHER_REASON"


def _feedback_problems(body: Any) -> list[tuple[str, str]]:
    with pytest.raises(HookRequestError) as err:
        parse_feedback(body, source_url=BASE)
    assert CANARY not in str(err.value)
    return [(p.path, p.message) for p in err.value.problems]


@pytest.mark.parametrize(
    ("base", "path", "value", "expected"),
    [
        (ACCEPTED, "feedback", [], [("feedback", "must not be empty")]),
        (ACCEPTED, "feedback.0.card", _DELETE, [("feedback[0].card", "is required")]),
        (ACCEPTED, "feedback.0.card", f"{CANARY} x", [("feedback[0].card", "must be a card uuid")]),
        (ACCEPTED, "feedback.0.outcome", CANARY, [("feedback[0].outcome", "must be accepted or overridden")]),
        (
            ACCEPTED,
            "feedback.0.acceptedSuggestions",
            _DELETE,
            [("feedback[0].acceptedSuggestions", "is required when the outcome is accepted")],
        ),
        (ACCEPTED, "feedback.0.acceptedSuggestions.0", {}, [("feedback[0].acceptedSuggestions[0].id", "is required")]),
        (
            ACCEPTED,
            "feedback.0.outcomeTimestamp",
            CANARY,
            [("feedback[0].outcomeTimestamp", "must be an RFC 3339 date-time, e.g. 2021-12-11T10:05:31Z")],
        ),
        (
            ACCEPTED,
            "feedback.0.outcomeTimestamp",
            "2021-02-30T10:05:31Z",
            [("feedback[0].outcomeTimestamp", "is not a valid date and time")],
        ),
        (
            ACCEPTED,
            "feedback.0.outcomeTimestamp",
            "2021-12-11T10:05:31",
            [("feedback[0].outcomeTimestamp", "must be an RFC 3339 date-time, e.g. 2021-12-11T10:05:31Z")],
        ),
        (
            ACCEPTED,
            "feedback.0.overrideReason",
            {"userComment": "x"},
            [("feedback[0].overrideReason", "is only for an overridden outcome")],
        ),
        (
            OVERRIDDEN,
            "feedback.0.acceptedSuggestions",
            [{"id": "x"}],
            [("feedback[0].acceptedSuggestions", "is only for an accepted outcome")],
        ),
        (
            OVERRIDDEN,
            "feedback.0.overrideReason",
            {},
            [("feedback[0].overrideReason", "must have a reason, a userComment, or both")],
        ),
        (
            OVERRIDDEN,
            "feedback.0.overrideReason.reason.code",
            CANARY,
            [("feedback[0].overrideReason.reason.code", "is not a code of this service's override reasons")],
        ),
        (
            OVERRIDDEN,
            "feedback.0.overrideReason.reason.system",
            _DELETE,
            [("feedback[0].overrideReason.reason.system", "is required")],
        ),
        (
            OVERRIDDEN,
            "feedback.0.overrideReason.userComment",
            "x" * 1001,
            [("feedback[0].overrideReason.userComment", "is longer than 1000 characters")],
        ),
        (
            OVERRIDDEN,
            "feedback.0.overrideReason.userComment",
            f"{CANARY}\x07",
            [("feedback[0].overrideReason.userComment", "contains control characters")],
        ),
    ],
)
def test_feedback_problems_name_the_exact_path(
    base: dict[str, Any], path: str, value: Any, expected: list[tuple[str, str]]
) -> None:
    assert _feedback_problems(_set(base, path, value)) == expected


def test_feedback_on_our_own_cards_round_trips() -> None:
    aid = "al_" + "6" * 24
    (card,) = _cards((aid, _alert()))
    doc = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": "2024-03-01T08:00:00Z",
            },
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": card["overrideReasons"][1]},
                "outcomeTimestamp": "2024-03-01T08:00:01Z",
            },
        ]
    }
    assert _errors(FEEDBACK, doc) == []
    accepted, overridden = parse_feedback(doc, source_url=BASE)
    assert accepted.card == aid and accepted.accepted_suggestions == (
        suggestion_uuid(aid, "MedicationRequest/draft-1"),
    )
    assert overridden.reason_name == card["overrideReasons"][1]["code"] == "BENEFIT_OUTWEIGHS_RISK"


# -- the schemas refuse what the specification forbids ----------------------------------------------------

_CARD = {"summary": "s", "indicator": "info", "source": {"label": "l"}}
_SUGGESTION = {"label": "x", "actions": [{"type": "delete", "description": "d", "resourceId": "MedicationRequest/1"}]}


def _card(**kw: Any) -> dict[str, Any]:
    return {"cards": [{**_CARD, **kw}]}


@pytest.mark.parametrize(
    ("validator", "doc"),
    [
        (RESPONSE, {}),  # cards is required
        (RESPONSE, {"cards": [{"summary": "s", "indicator": "info"}]}),  # source is required
        (RESPONSE, _card(summary="x" * 140)),  # "<140-character"
        (RESPONSE, _card(summary="")),  # no empty strings
        (RESPONSE, _card(indicator="severe")),
        (RESPONSE, _card(source={"url": "https://x.example"})),  # source.label is required
        (RESPONSE, _card(source={"label": "l", "url": "not a url"})),
        (RESPONSE, _card(suggestions=[_SUGGESTION])),  # suggestions need selectionBehavior
        (RESPONSE, _card(suggestions=[_SUGGESTION], selectionBehavior="all")),
        (RESPONSE, _card(suggestions=[{**_SUGGESTION, "isRecommended": True}] * 2, selectionBehavior="at-most-one")),
        (RESPONSE, _card(overrideReasons=[{"code": "c", "system": "s"}])),  # a display is required
        (RESPONSE, _card(overrideReasons=[])),
        (
            RESPONSE,
            _card(
                suggestions=[{"label": "x", "actions": [{"type": "delete", "description": "d"}]}],
                selectionBehavior="any",
            ),
        ),
        (
            RESPONSE,
            _card(
                suggestions=[{"label": "x", "actions": [{"type": "create", "description": "d"}]}],
                selectionBehavior="any",
            ),
        ),
        (
            RESPONSE,
            _card(
                suggestions=[{"label": "x", "actions": [{"type": "delete", "resourceId": "A/1"}]}],
                selectionBehavior="any",
            ),
        ),
        (RESPONSE, _card(links=[{"label": "l", "url": "https://x.example", "type": "absolute", "appContext": "c"}])),
        (RESPONSE, _card(links=[{"label": "l", "url": "https://x.example", "type": "launch"}])),
        (RESPONSE, _card(severity="high")),  # not a card member
        (RESPONSE, {"cards": [], "systemActions": []}),
        (DISCOVERY, {}),
        (DISCOVERY, {"services": [{"hook": "patient-view", "id": "x"}]}),  # description is required
        (DISCOVERY, {"services": [{"hook": "patient-view", "id": "a/b", "description": "d"}]}),
        (DISCOVERY, {"services": [{"hook": "patient-view", "id": "x", "description": "d", "prefetch": {}}]}),
        (DISCOVERY, {"services": [{"hook": "patient-view", "id": "x", "description": "d", "prefetch": {"p": 1}}]}),
        (FEEDBACK, {"feedback": []}),
        (FEEDBACK, _set(ACCEPTED, "feedback.0.acceptedSuggestions", _DELETE)),
        (FEEDBACK, _set(ACCEPTED, "feedback.0.outcome", "dismissed")),
        (FEEDBACK, _set(ACCEPTED, "feedback.0.outcomeTimestamp", "11 Dec 2021")),
        (FEEDBACK, _set(OVERRIDDEN, "feedback.0.overrideReason", {})),
        (FEEDBACK, _set(OVERRIDDEN, "feedback.0.overrideReason.reason.system", _DELETE)),
        (REQUEST, _set(_request(), "hookInstance", _DELETE)),
        (REQUEST, _set(_request(), "hookInstance", "not-a-uuid")),
        (REQUEST, _set(_request(), "fhirServer", _DELETE)),  # fhirAuthorization needs fhirServer
        (REQUEST, _set(_request(), "fhirAuthorization.token_type", "MAC")),
        (REQUEST, _set(_request(), "fhirAuthorization.expires_in", "300")),
        (REQUEST, _set(_request(), "context.selections", _DELETE)),
        (REQUEST, _set(_request("order-sign"), "context.draftOrders", _DELETE)),
        (REQUEST, _set(_request("order-sign"), "context.userId", "Patient/pat-1")),
        (REQUEST, _set(_request(), "context.patientId", _DELETE)),
        (REQUEST, _set(_request(), "prefetch.patient", "Patient/pat-1")),
        (REQUEST, _set(_request(), "context.draftOrders.resourceType", "Parameters")),
    ],
)
def test_the_schemas_reject_known_bad_documents(validator: Draft202012Validator, doc: Any) -> None:
    assert _errors(validator, doc) != []


def test_the_schemas_accept_the_specifications_examples() -> None:
    # §Discovery Example (prefetch tokens written plainly, without the page's Liquid escapes).
    discovery = {
        "services": [
            {
                "hook": "patient-view",
                "title": "Static CDS Service Example",
                "description": "An example of a CDS Service that returns a static set of cards",
                "id": "static-patient-greeter",
                "prefetch": {"patientToGreet": "Patient/{{context.patientId}}"},
            },
            {
                "hook": "order-sign",
                "title": "Pharmacogenomics CDS Service",
                "description": "An example of a more advanced, precision medicine CDS Service",
                "id": "pgx-on-order-sign",
                "usageRequirements": "Note: functionality of this CDS Service is degraded without access to a FHIR"
                " Restful API as part of CDS recommendation generation.",
            },
        ]
    }
    assert _errors(DISCOVERY, discovery) == []
    # §CDS Service Response / Example.
    response = {
        "cards": [
            {
                "uuid": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
                "summary": "Example Card",
                "indicator": "info",
                "detail": "This is an example card.",
                "source": {
                    "label": "Static CDS Service Example",
                    "url": "https://example.com",
                    "icon": "https://example.com/img/icon-100px.png",
                },
                "links": [
                    {"label": "Google", "url": "https://google.com", "type": "absolute"},
                    {
                        "label": "SMART Example App",
                        "url": "https://smart.example.com/launch",
                        "type": "smart",
                        "appContext": '{"session":3456356,"settings":{"module":4235}}',
                    },
                ],
            },
            {
                "summary": "Another card",
                "indicator": "warning",
                "source": {"label": "Static CDS Service Example"},
                "overrideReasons": [
                    {
                        "code": "reason-code-provided-by-service",
                        "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons",
                        "display": "Patient refused",
                    }
                ],
            },
        ],
        # §System Action's example omits `description`, which §Action's table makes REQUIRED; the
        # table is followed here, so the action below carries one.
        "systemActions": [
            {"type": "update", "description": "d", "resource": {"resourceType": "ServiceRequest", "id": "x"}}
        ],
    }
    assert _errors(RESPONSE, response) == []


# -- fuzzing: only HookRequestError, never another exception ----------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=24,
)


# Printable text, so that some mutations keep a member valid and the parser's acceptances get tested.
_printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=16)


def _member_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        paths.append((*prefix, key))
        paths.extend(_member_paths(child, (*prefix, key)))
    return paths


@st.composite
def _mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with a few members replaced by arbitrary JSON, or removed."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 2))):
        paths = _member_paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        how = draw(st.sampled_from(["delete", "json", "text"]))
        if how == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_json if how == "json" else _printable)
    return doc


_REQUEST_BASES = [
    (sid, _request(hook)) for sid, hook in ((SELECT, "order-select"), (SIGN, "order-sign"), (VIEW, "patient-view"))
]
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_refuse(parse: Callable[[], object]) -> object | None:
    try:
        return parse()
    except HookRequestError as err:
        assert err.problems and all(isinstance(p, str) and isinstance(m, str) for p, m in err.problems)
        operation_outcome(err.problems)
        return None


@_FUZZ
@given(service=st.sampled_from(sorted(SERVICES)), body=_json, allow_http=st.booleans())
def test_fuzz_arbitrary_bodies_are_refused_cleanly(service: str, body: Any, allow_http: bool) -> None:
    _parse_or_refuse(lambda: parse_hook_request(service, body, allow_http=allow_http))
    _parse_or_refuse(lambda: parse_feedback(body, source_url=BASE))


@_FUZZ
@given(data=st.data())
def test_fuzz_mutated_requests_parse_only_when_the_schema_agrees(data: st.DataObject) -> None:
    service, base = data.draw(st.sampled_from(_REQUEST_BASES))
    body = data.draw(_mutated(base))
    parsed = _parse_or_refuse(lambda: parse_hook_request(service, body))
    if parsed is not None:
        assert isinstance(parsed, HookRequest)
        # The parser is stricter than the schema, except that it reads token_type case-insensitively
        # (RFC 6749 §5.1).
        assume(body.get("fhirAuthorization", {}).get("token_type", "Bearer") == "Bearer")
        assert _errors(REQUEST, body) == []


@_FUZZ
@given(data=st.data())
def test_fuzz_mutated_feedback_parses_only_when_the_schema_agrees(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from([ACCEPTED, OVERRIDDEN]))
    body = data.draw(_mutated(base))
    if _parse_or_refuse(lambda: parse_feedback(body, source_url=BASE)) is not None:
        assert _errors(FEEDBACK, body) == []


# -- the real engine behind the cards, and the package's purity --------------------------------------------


def test_cards_from_a_real_evaluation() -> None:
    from engine.evaluate import evaluate
    from engine.knowledge import load_knowledge_files
    from engine.model import AllergyFact, EvaluationRequest, MedicationFact, PatientSnapshot
    from engine.rules import RuleSet, load_rule_files

    data = ROOT / "tests" / "data"
    knowledge = load_knowledge_files(data / "knowledge")
    rules = RuleSet.build([x.rule for x in load_rule_files([data / "rules"]) if x.rule is not None], "fixture-1")
    snapshot = PatientSnapshot(
        "pat-1",
        "t",
        age=80,
        medications=(MedicationFact("MedicationRequest/cur-1", "warfarin"),),
        allergies=(AllergyFact("AllergyIntolerance/a1", "penicillin", category="DRUG", severity="SEVERE"),),
    )
    drafts = ("ibuprofen", "amoxicillin", "Zyxofen 5 mg")
    proposed = tuple(MedicationFact(f"MedicationRequest/d{i}", n, proposed=True) for i, n in enumerate(drafts, 1))
    result = evaluate(snapshot, EvaluationRequest(proposed_medications=proposed), rules, knowledge)
    pairs = [(f"al_{i:024x}", a) for i, a in enumerate(result.alerts)]
    draft_orders = {m.id: m.id for m in proposed}
    cards = cards_for(pairs, result, omitted=0, draft_orders=draft_orders, source_url=BASE)
    assert _errors(RESPONSE, {"cards": cards}) == []

    coverage, *alert_cards = cards
    assert coverage["indicator"] == "critical"  # a draft medication could not be screened
    assert coverage["summary"] == "Screening incomplete: 1 medication not screened"
    assert "MedicationRequest/d3 (sent as “Zyxofen 5 mg”)" in coverage["detail"]
    by_rule = {c["source"]["topic"]["code"]: c for c in alert_cards}
    allergy = by_rule["test-penicillin-allergy"]
    assert allergy["indicator"] == "critical"
    assert [s["actions"][0]["resourceId"] for s in allergy["suggestions"]] == ["MedicationRequest/d2"]
    (interaction,) = (c for code, c in by_rule.items() if code.startswith("kb:ix-"))
    assert interaction["indicator"] == "critical"
    assert [s["actions"][0]["resourceId"] for s in interaction["suggestions"]] == ["MedicationRequest/d1"]
    assert "suggestions" not in by_rule["kb:vocabulary"]
    assert by_rule["kb:vocabulary"]["indicator"] == "info"


def test_the_cds_hooks_package_does_no_io_and_imports_no_transport() -> None:
    import subprocess
    import sys

    modules = [
        "engine.doors.cdshooks",
        "engine.doors.cdshooks.discovery",
        "engine.doors.cdshooks.requests",
        "engine.doors.cdshooks.cards",
        "engine.doors.cdshooks.feedback",
    ]
    forbidden = ["grpc", "sqlalchemy", "psycopg", "store", "engine.api", "http.client", "urllib.request", "ssl"]
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        f"print(sorted(m for m in {forbidden!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

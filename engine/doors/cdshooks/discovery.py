"""The discovery document (`GET {baseUrl}/cds-services`) and the services' prefetch templates.

CDS Hooks 2.0 §Discovery: each service has `hook`, `description` and `id` (required), `title`
(recommended), `prefetch` and `usageRequirements` (optional). One service per hook, each with its
own id, so that the server routes by id alone.

The prefetch templates ask for what the engine screens: the patient (age, sex), the active
medication list (MedicationRequest and MedicationStatement: an EHR keeps home medications as
statements), every allergy record, the active conditions and the most recent observations. They
keep to §Prefetch query restrictions: type-level searches, references, token equality, `_sort` and
`_count`; the only tokens are `context.patientId` (a root-level context field every one of our hooks
marks "Prefetch Token: Yes").

Judgement calls, with their reasons:
- AllergyIntolerance is asked for without a status filter: a record without `clinicalStatus` (the
  element is optional in R4) would drop out of a `clinical-status=active` search, and an allergy
  missed is worse than one inactive record too many; the FHIR mapping reads the statuses.
- Condition asks for `active,recurrence,relapse`: token equality does not include a code's
  descendants, and in R4 recurrence and relapse are children of active
  (http://hl7.org/fhir/R4/valueset-condition-clinical.html).
- Observations are the 200 most recent of any category (`_sort=-date&_count=200`): no prefetch token
  stands for "today", so "recent" can only be "latest first"; no category filter, because the
  engine reads labs (laboratory), blood pressure (vital-signs) and pregnancy status (social-history
  in US Core). A ward patient with very frequent vitals may push an older lab out of the 200; the
  server can read further from `fhirServer` when it has one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

__all__ = [
    "HOOKS",
    "PREFETCH",
    "PREFETCH_TOKEN_FIELDS",
    "SERVICES",
    "PrefetchTemplate",
    "check_prefetch_template",
    "discovery_document",
    "fill_prefetch_template",
    "service_id_for",
]

HOOKS = ("order-select", "order-sign", "patient-view")
_SERVICE_PREFIX = "praneya-medication-safety-"

# Context fields each hook marks "Prefetch Token: Yes" (hook pages, hookVersion 1.0).
PREFETCH_TOKEN_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {hook: frozenset({"userId", "patientId", "encounterId"}) for hook in HOOKS}
)
# §Prefetch tokens identifying the user: allowed in any hook's templates.
_USER_TOKENS = frozenset({"userPractitionerId", "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"})


@dataclass(frozen=True, slots=True)
class PrefetchTemplate:
    key: str
    template: str
    resource_type: str  # what a read returns, or what a search's Bundle holds
    search: bool  # True: the value is a searchset Bundle (or null); False: one resource (or null)


_P = "{{context.patientId}}"
PREFETCH: tuple[PrefetchTemplate, ...] = (
    PrefetchTemplate("patient", f"Patient/{_P}", "Patient", search=False),
    PrefetchTemplate("medicationRequests", f"MedicationRequest?patient={_P}&status=active", "MedicationRequest", True),
    PrefetchTemplate(
        "medicationStatements", f"MedicationStatement?patient={_P}&status=active", "MedicationStatement", True
    ),
    PrefetchTemplate("allergies", f"AllergyIntolerance?patient={_P}", "AllergyIntolerance", True),
    PrefetchTemplate(
        "conditions", f"Condition?patient={_P}&clinical-status=active,recurrence,relapse", "Condition", True
    ),
    PrefetchTemplate("observations", f"Observation?patient={_P}&_sort=-date&_count=200", "Observation", True),
)

_TITLES = {
    "order-select": "Medication safety while ordering",
    "order-sign": "Medication safety before signing",
    "patient-view": "Medication safety of the current medication list",
}
_DESCRIPTIONS = {
    "order-select": (
        "Screens the newly selected draft orders against the patient's active medications, allergies,"
        " conditions and recent results: drug-drug and drug-food interactions, drug allergies with"
        " cross-reactivity, duplicate therapy, and clinician-authored rules (age, renal function,"
        " pregnancy, labs). Cards are ranked by severity; a card says when something could not be screened."
    ),
    "order-sign": (
        "Screens every draft order about to be signed against the patient's active medications,"
        " allergies, conditions and recent results, as on order-select, with the complete order details."
        " A card says when something could not be screened."
    ),
    "patient-view": (
        "Screens the patient's current medication list against their allergies, conditions and recent"
        " results when the chart is opened. A card says when something could not be screened."
    ),
}
_USAGE = (
    "Calls must carry a bearer JWT signed by a CDS client registered for the tenant (CDS Hooks 2.0"
    " §Trusting CDS Clients). Send every prefetch key, or fhirServer with a fhirAuthorization that may"
    " read Patient, MedicationRequest, MedicationStatement, AllergyIntolerance, Condition and Observation"
    " for the patient; with neither the service answers 412 Precondition Failed. Medications are"
    " screened by RxNorm code when one is given."
)


def service_id_for(hook: str) -> str:
    return _SERVICE_PREFIX + hook


# Service id -> hook, for the server's routing.
SERVICES: Mapping[str, str] = MappingProxyType({service_id_for(h): h for h in HOOKS})


def discovery_document() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": hook,
                "title": _TITLES[hook],
                "description": _DESCRIPTIONS[hook],
                "id": service_id_for(hook),
                "prefetch": {t.key: t.template for t in PREFETCH},
                "usageRequirements": _USAGE,
            }
            for hook in HOOKS
        ]
    }


# -- the prefetch query restrictions (§Prefetch query restrictions) ------------------------------------

_TOKEN = re.compile(r"\{\{([^{}]*)\}\}")
# The search parameters our templates may use, with their FHIR search type (R4 search parameter
# registry). A parameter not listed here fails the check: it must be looked up and added on purpose.
_PARAM_TYPES = {
    "patient": "reference",
    "status": "token",
    "clinical-status": "token",
    "category": "token",
    "code": "token",
    "date": "date",
}
_DATE_PREFIXES = ("eq", "lt", "gt", "ge", "le")


def check_prefetch_template(template: str, hook: str) -> list[str]:
    """What in `template` goes beyond the prefetch restrictions of CDS Hooks 2.0; [] when it keeps
    to them. Instance reads, type searches, references, token equality (or `:in`), dates with the
    prefixes eq/lt/gt/ge/le, `_count` and `_sort`; tokens naming a root-level context field the hook
    allows, or one of the user tokens."""
    problems: list[str] = []
    allowed = PREFETCH_TOKEN_FIELDS.get(hook)
    if allowed is None:
        return [f"unknown hook {hook!r}"]
    for name in _TOKEN.findall(template):
        if name in _USER_TOKENS:
            continue
        field = name.removeprefix("context.")
        if not name.startswith("context.") or field not in allowed:
            problems.append(f"token {{{{{name}}}}} is not a prefetch token of {hook}")
    if template.count("{{") != len(_TOKEN.findall(template)) or template.count("}}") != template.count("{{"):
        problems.append("unbalanced token delimiters")
    path, sep, query = template.partition("?")
    parts = path.split("/")
    if not re.fullmatch(r"[A-Z][A-Za-z]+", parts[0]):
        problems.append("must start with a resource type")
    if sep:
        if len(parts) != 1:
            problems.append("a search must be type-level (Type?params)")
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            if not eq or not value:
                problems.append(f"parameter {name!r} has no value")
                continue
            base, _, modifier = name.partition(":")
            if base == "_count":
                if modifier or not value.isdigit():
                    problems.append("_count takes a number")
            elif base == "_sort":
                if modifier or any(_PARAM_TYPES.get(v.removeprefix("-")) is None for v in value.split(",")):
                    problems.append("_sort must name known search parameters (optionally with '-')")
            elif base not in _PARAM_TYPES:
                problems.append(f"parameter {base!r} is not one whose type is known here")
            elif _PARAM_TYPES[base] == "token":
                if modifier not in ("", "in"):
                    problems.append(f"token parameter {base!r} takes no modifier but :in")
            elif _PARAM_TYPES[base] == "date":
                if modifier or not (value[:2] in _DATE_PREFIXES or value[:1].isdigit() or value.startswith("{{")):
                    problems.append(f"date parameter {base!r} takes only the prefixes eq, lt, gt, ge, le")
            elif modifier:
                problems.append(f"reference parameter {base!r} takes no modifier")
    elif len(parts) != 2 or not parts[1]:
        problems.append("a read must be Type/id")
    return problems


def fill_prefetch_template(template: str, *, context: Mapping[str, str]) -> str:
    """The relative FHIR URL for `template`, with each `{{context.X}}` token replaced by the context
    value, percent-encoded. A token without a value is a KeyError (the caller validated the context)."""

    def value(m: re.Match[str]) -> str:
        return quote(context[m.group(1).removeprefix("context.")], safe="")

    return _TOKEN.sub(value, template)

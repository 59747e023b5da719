"""Cards (CDS Hooks 2.0 §CDS Service Response, §Card Attributes) from an evaluation's alerts.

One card per alert, in the order given (already ranked), and before them one card for an incomplete
evaluation. What each field carries, and why:
- `uuid`: the alert id, as the issue asks (the 2.0 text types `uuid` as a string), so that feedback
  names the alert it is about.
- `summary`: the alert's summary, whitespace collapsed, shortened on a word boundary with "…" to at
  most 139 characters: the specification says "<140-character", the issue "at most 140"; 139 keeps
  both.
- `indicator`: `critical` for CRITICAL and HIGH (the interruptive severities), `warning` for
  MODERATE, `info` for LOW and INFO.
- `detail`: GitHub Flavored Markdown: the alert's detail and recommendation, its severity, evidence
  and source. Every text from the engine is escaped as plain text: alert texts can carry what the
  caller typed (a medication name the vocabulary did not know), and markdown from there must not
  become a link, an image (a fetch of someone's URL) or HTML in the clinician's screen.
- `source`: `label` naming the rule or knowledge source, `url` (the service's base URL, given by the
  caller), `topic` a Coding of the rule id in `{base}/CodeSystem/rule` (`kb:…` ids name the
  knowledge base entries: an interaction pair, an allergen, the duplicate-therapy check, the
  vocabulary).
- `overrideReasons`: Codings of `{base}/CodeSystem/override-reason`, whose codes are the names of
  `praneya.safety.v1.OverrideReason`, so that feedback lands in the same store as
  RecordAlertFeedback. Each alert kind offers the reasons that can be true of it
  (`OVERRIDE_REASONS_BY_KIND`, with the reasons written there).
- `suggestions`: when a draft order is among the alert's items, one suggestion per such order that
  removes it (`delete` with `resourceId` the order's reference), `selectionBehavior` `at-most-one`
  (removing either order of an interacting pair resolves it; none is marked recommended, since which
  one to keep is the prescriber's decision). The suggestion uuid is a UUID v5 of the alert id and
  the reference, so the same finding gets the same id on every call. An "alternative the rule
  names" has no structured form in the engine's alerts (the recommendation is text), so there is no
  `create` suggestion. The vocabulary's "not recognised" alerts get none: their remedy is to name
  the drug better, not to drop it.
- `links`: none.

The incomplete-evaluation card (`result.complete` false, unresolved items, rule errors, or alerts
left out of the answer): indicator `critical` when a medication could not be screened (an
interaction or allergy with it may be missed), else `warning`. Its summary gives counts only; its
detail names each item by its id (the draft order's reference when it is one) and by the text the
caller sent. Decision: that text is shown back, because the card goes to the same client that sent
it, for the clinician who entered it, and "MedicationRequest/7f3a could not be screened" alone does
not tell a prescriber which drug to check by hand. It is escaped and shortened like every other
text, and it never goes into a summary, a log or an error.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from engine.model import Alert, AlertKind, EvaluationResult, EvidenceLevel, Severity, UnresolvedItem

__all__ = [
    "COVERAGE_TOPIC",
    "OVERRIDE_REASONS",
    "OVERRIDE_REASONS_BY_KIND",
    "OVERRIDE_REASONS_INCOMPLETE",
    "SUMMARY_LIMIT",
    "cards_for",
    "incomplete_card_id",
    "indicator_for",
    "override_reason_code_system",
    "override_reason_system",
    "rule_system",
    "shorten",
    "suggestion_uuid",
]

SUMMARY_LIMIT = 139
_LABEL_LIMIT = 100
_ITEM_TEXT_LIMIT = 100

# praneya.safety.v1.OverrideReason names (protos/praneya/safety/v1/safety.proto) and their displays
# (CDS Hooks 2.0 §Reasons for rejecting a card: the service MUST give a display).
OVERRIDE_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "NOT_CLINICALLY_RELEVANT": "Not clinically relevant for this patient",
        "BENEFIT_OUTWEIGHS_RISK": "Benefit outweighs the risk",
        "PATIENT_ALREADY_TOLERATES": "Patient already tolerates this",
        "WILL_MONITOR": "Will monitor the patient",
        "DOSE_ADJUSTED": "Dose adjusted",
        "ALERT_INCORRECT": "Alert is incorrect",
        "OTHER_REASON": "Other reason",
    }
)

_ALL = tuple(OVERRIDE_REASONS)


def _without(*names: str) -> tuple[str, ...]:
    return tuple(n for n in _ALL if n not in names)


# Which reasons can be true of an alert of each kind. Left out, and why:
# - DRUG_ALLERGY, FOOD_ALLERGY: DOSE_ADJUSTED. An allergic reaction is not prevented by a smaller
#   dose (hypersensitivity is not dose-dependent the way toxicity is); offering it invites a wrong
#   reason for giving the drug.
# - DOSE_RANGE: DOSE_ADJUSTED. Adjusting the dose is accepting this alert, not overriding it.
# - PREGNANCY: PATIENT_ALREADY_TOLERATES and DOSE_ADJUSTED. The mother's tolerance says nothing
#   of the risk to the fetus, and the teratogenic risk the rules flag is not made safe by a dose.
# Every other kind (interactions, duplicates, conditions, age, renal, labs, other) can be overridden
# for any of the reasons: each of them can be clinically irrelevant, outweighed, already tolerated,
# monitored, handled by a dose change, or wrong.
OVERRIDE_REASONS_BY_KIND: Mapping[AlertKind, tuple[str, ...]] = MappingProxyType(
    {
        kind: (
            _without("DOSE_ADJUSTED")
            if kind in (AlertKind.DRUG_ALLERGY, AlertKind.FOOD_ALLERGY, AlertKind.DOSE_RANGE)
            else _without("PATIENT_ALREADY_TOLERATES", "DOSE_ADJUSTED")
            if kind is AlertKind.PREGNANCY
            else _ALL
        )
        for kind in AlertKind
    }
)
# Dismissing "screening incomplete": the prescriber will check by hand (WILL_MONITOR), the item is
# not a drug that matters here, or the item was recognised after all; tolerance, benefit and dose do
# not apply to a gap in screening.
OVERRIDE_REASONS_INCOMPLETE = ("NOT_CLINICALLY_RELEVANT", "WILL_MONITOR", "ALERT_INCORRECT", "OTHER_REASON")

COVERAGE_TOPIC = "coverage:incomplete"
_NO_REMOVAL_RULES = frozenset({"kb:vocabulary"})  # "not recognised": the remedy is a better name or code

# Fixed namespace for suggestion UUIDs (UUID v5 of this URL-like name): never change it, or
# feedback on earlier cards stops matching.
_SUGGESTION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:praneya:cds-hooks:suggestion")

_KIND_WORDS = {
    AlertKind.DRUG_DRUG_INTERACTION: "Drug–drug interaction",
    AlertKind.DRUG_ALLERGY: "Drug allergy",
    AlertKind.FOOD_ALLERGY: "Food allergy",
    AlertKind.FOOD_DRUG_INTERACTION: "Food–drug interaction",
    AlertKind.DUPLICATE_THERAPY: "Duplicate therapy",
    AlertKind.DRUG_CONDITION: "Drug–condition",
    AlertKind.DOSE_RANGE: "Dose range",
    AlertKind.AGE_RELATED: "Age-related",
    AlertKind.PREGNANCY: "Pregnancy",
    AlertKind.RENAL: "Renal function",
    AlertKind.LAB_VALUE: "Laboratory value",
    AlertKind.OTHER: "Other",
}
_EVIDENCE_WORDS = {
    EvidenceLevel.UNKNOWN: "not graded",
    EvidenceLevel.EXPERT_OPINION: "expert opinion",
    EvidenceLevel.CASE_REPORTS: "case reports",
    EvidenceLevel.OBSERVATIONAL: "observational studies",
    EvidenceLevel.CLINICAL_TRIAL: "clinical trials",
    EvidenceLevel.SYSTEMATIC_REVIEW: "systematic reviews",
}
_UNRESOLVED_WORDS = {
    "unrecognised": "not in the drug vocabulary",
    "ambiguous": "matches more than one drug",
    "partial": "only partly recognised",
    "mismatch": "its code and its name are different drugs",
}


def indicator_for(severity: Severity) -> str:
    if severity >= Severity.HIGH:
        return "critical"
    if severity == Severity.MODERATE:
        return "warning"
    return "info"


def _base(source_url: str) -> str:
    return source_url.rstrip("/")


def override_reason_system(source_url: str) -> str:
    return f"{_base(source_url)}/CodeSystem/override-reason"


def rule_system(source_url: str) -> str:
    return f"{_base(source_url)}/CodeSystem/rule"


def override_reason_code_system(source_url: str) -> dict[str, Any]:
    """The FHIR R4 CodeSystem resource of the override reasons, for the server to publish at its URL."""
    return {
        "resourceType": "CodeSystem",
        "url": override_reason_system(source_url),
        "name": "PraneyaOverrideReason",
        "title": "Praneya medication safety: reasons for overriding an alert",
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "concept": [{"code": code, "display": display} for code, display in OVERRIDE_REASONS.items()],
    }


def suggestion_uuid(alert_id: str, reference: str) -> str:
    return str(uuid.uuid5(_SUGGESTION_NAMESPACE, f"{alert_id}|delete|{reference}"))


# Control characters (C0 and DEL) read as spaces.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def shorten(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """`text` on one line, at most `limit` characters: cut at the last word that fits, then "…"."""
    # Printable ASCII with single spaces inside is already one line (most alert texts): kept as is.
    if not (text.isascii() and text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " "):
        text = " ".join(_CONTROL.sub(" ", text).split())
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if not text[limit - 1].isspace():
        space = head.rfind(" ")
        # A word longer than half the room is cut inside; otherwise at the word before it.
        if space >= limit // 2:
            head = head[:space]
    return head.rstrip(" ,;:-–—") + "…"


# The backslash first, so that the escapes added after it are not escaped again. (A replace per
# character present is several times faster than a regular expression's substitution here.)
_MD_SPECIAL = "\\`*_{}[]<>()#+!|~&"
_MD_LINE_START = re.compile(r"^(\s*)(\d*)([-=+.)])")


def _md(text: str, limit: int | None = None) -> str:
    """Plain text as markdown that renders as that text: one line, every markdown character escaped."""
    one_line = shorten(text, limit) if limit is not None else shorten(text, 1_000_000)
    escaped = one_line
    for c in _MD_SPECIAL:
        if c in escaped:
            escaped = escaped.replace(c, "\\" + c)
    # A line that starts like a list item or a setext underline ("- x", "1. x", "= x"): escape the
    # punctuation (a backslash before a digit is not an escape in CommonMark).
    # (`shorten` left no space at the start: only a first digit or one of -=+.) can begin one.)
    if escaped[:1].isdigit() or escaped[:1] in ("-", "=", "+", ".", ")"):
        return _MD_LINE_START.sub(lambda m: m.group(1) + m.group(2) + "\\" + m.group(3), escaped)
    return escaped


def _code(text: str) -> str:
    """`text` as an inline code span. Backslash escapes do not work inside one, so backticks are
    dropped instead (rule and knowledge ids are ours and carry none)."""
    return "`" + shorten(text.replace("`", ""), 200) + "`"


def _coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": OVERRIDE_REASONS[code]}


def _source_label(alert: Alert) -> str:
    rid = alert.rule_id
    if not rid.startswith("kb:"):
        label = f"Praneya clinical rule {rid} (version {alert.rule_version})"
    elif rid == "kb:vocabulary":
        label = "Praneya drug vocabulary"
    elif rid == "kb:duplicate-ingredient":
        label = "Praneya duplicate-therapy check"
    elif rid.startswith("kb:allergen:"):
        label = "Praneya allergen knowledge"
    else:
        label = "Praneya interaction knowledge base"
    return shorten(label, _LABEL_LIMIT)


def _detail(alert: Alert, result: EvaluationResult) -> str:
    parts: list[str] = []
    if alert.detail.strip():
        parts.append(_md(alert.detail))
    if alert.recommendation.strip():
        parts.append(f"**Recommendation:** {_md(alert.recommendation)}")
    parts.append(
        f"**Severity:** {alert.severity.name.lower()} · **Evidence:** {_EVIDENCE_WORDS[alert.evidence]}"
        f" · **Kind:** {_KIND_WORDS[alert.kind].lower()}"
    )
    rid = alert.rule_id
    if rid.startswith("kb:"):
        version = result.vocabulary_version if rid == "kb:vocabulary" else result.knowledge_version
        source = f"knowledge base entry {_code(rid)}" + (f", version {_md(version)}" if version else "")
    else:
        source = f"rule {_code(rid)} version {alert.rule_version}" + (
            f" of rule set {_md(result.ruleset_version)}" if result.ruleset_version else ""
        )
    parts.append(f"**Source:** {source}")
    if alert.references:
        parts.append("**References:** " + "; ".join(_md(r, 300) for r in alert.references))
    if alert.suppressed:
        parts.append(f"{alert.suppressed} other alerts for the same finding were merged into this one.")
    return "\n\n".join(parts)


def _suggestions(
    alert_id: str, alert: Alert, draft_orders: Mapping[str, str], order_labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    if alert.rule_id in _NO_REMOVAL_RULES:
        return []
    references = list(dict.fromkeys(draft_orders[i] for i in alert.involved_ids if i in draft_orders))
    return [
        {
            # A suggestion label is plain text (not markdown); the order's own text, when the caller
            # gives it, is what the prescriber recognises.
            "label": shorten(
                f"Remove the draft order: {order_labels[ref]}"
                if order_labels.get(ref, "").strip()
                else f"Remove the draft order {ref}",
                _LABEL_LIMIT,
            ),
            "uuid": suggestion_uuid(alert_id, ref),
            "actions": [
                {
                    "type": "delete",
                    "description": f"Remove the draft order {ref} from this ordering session.",
                    "resourceId": ref,
                }
            ],
        }
        for ref in references
    ]


def _alert_card(
    alert_id: str,
    alert: Alert,
    result: EvaluationResult,
    draft_orders: Mapping[str, str],
    order_labels: Mapping[str, str],
    source_url: str,
) -> dict[str, Any]:
    label = _source_label(alert)
    source: dict[str, Any] = {"label": label, "url": source_url}
    source["topic"] = {"system": rule_system(source_url), "code": alert.rule_id, "display": label}
    card: dict[str, Any] = {
        "uuid": alert_id,
        "summary": shorten(alert.summary) or shorten(f"{_KIND_WORDS[alert.kind]} alert"),
        "detail": _detail(alert, result),
        "indicator": indicator_for(alert.severity),
        "source": source,
    }
    suggestions = _suggestions(alert_id, alert, draft_orders, order_labels)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    system = override_reason_system(source_url)
    card["overrideReasons"] = [_coding(system, c) for c in OVERRIDE_REASONS_BY_KIND[alert.kind]]
    return card


def incomplete_card_id(result: EvaluationResult, omitted: int) -> str:
    """The same shape as alert ids (`al_` and 24 hex digits), from what was not screened: the same
    gap gets the same id on every call."""
    key = "|".join(
        [
            "coverage",
            ",".join(sorted(f"{u.kind}:{u.item_id}:{u.reason}" for u in result.unresolved)),
            ",".join(sorted(f"{e.rule_id}:{e.rule_version}" for e in result.rule_errors)),
            str(omitted),
            str(result.complete),
        ]
    )
    return "al_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _unresolved_line(item: UnresolvedItem, draft_orders: Mapping[str, str]) -> str:
    ref = draft_orders.get(item.item_id, item.item_id)
    what = {"medication": "Medication", "allergy": "Allergy", "food": "Food"}.get(item.kind, "Item")
    line = f"- {what} {_md(ref, _ITEM_TEXT_LIMIT)}"
    if item.text.strip():
        line += f" (sent as “{_md(item.text, _ITEM_TEXT_LIMIT)}”)"
    line += f": {_md(_UNRESOLVED_WORDS.get(item.reason, item.reason))}"
    if item.parts:
        line += "; unmatched: " + ", ".join(_md(p, _ITEM_TEXT_LIMIT) for p in item.parts[:10])
    if item.suggestions:
        line += "; did you mean " + ", ".join(_md(s, _ITEM_TEXT_LIMIT) for s in item.suggestions[:5]) + "?"
    return line + "."


def _incomplete_card(
    result: EvaluationResult, omitted: int, draft_orders: Mapping[str, str], source_url: str
) -> dict[str, Any] | None:
    if result.complete and not result.unresolved and not result.rule_errors and omitted <= 0:
        return None
    meds = [u for u in result.unresolved if u.kind == "medication"]
    allergies = [u for u in result.unresolved if u.kind == "allergy"]
    others = [u for u in result.unresolved if u.kind not in ("medication", "allergy")]
    counts: list[str] = []
    if meds:
        counts.append(_plural(len(meds), "medication", "medications") + " not screened")
    if allergies:
        counts.append(_plural(len(allergies), "allergy record", "allergy records") + " not screened")
    if others:
        counts.append(_plural(len(others), "item", "items") + " not screened")
    if result.rule_errors:
        counts.append(_plural(len(result.rule_errors), "rule", "rules") + " not evaluated")
    if omitted > 0:
        counts.append(_plural(omitted, "more alert", "more alerts") + " not shown")
    summary = "Screening incomplete: " + ("; ".join(counts) if counts else "the evaluation did not cover everything")

    parts = [
        "This answer does not cover everything: the absence of a card is not a sign of safety for what"
        " is listed here. Check it by hand; a medication entered by its RxNorm code can be screened."
    ]
    if result.unresolved:
        lines = [_unresolved_line(u, draft_orders) for u in result.unresolved]
        parts.append("**Not screened**\n\n" + "\n".join(lines))
    if result.rule_errors:
        lines = []
        for e in result.rule_errors:
            # An insufficient-data reason names the missing datum ("insufficient data: egfr"); an
            # error's reason is for operators, not for the clinician's screen.
            why = _md(e.reason, 120) if e.insufficient_data else "could not be evaluated"
            lines.append(f"- Rule {_code(e.rule_id)} (version {e.rule_version}): {why}.")
        parts.append("**Rules not evaluated**\n\n" + "\n".join(lines))
    if omitted > 0:
        parts.append(
            f"**Alerts not shown:** {_plural(omitted, 'more alert was', 'more alerts were')} found than this"
            " answer carries; the highest-ranked are shown."
        )
    if not result.complete and not (result.unresolved or result.rule_errors or omitted > 0):
        parts.append("The engine reported the evaluation incomplete.")

    label = "Praneya medication safety: screening coverage"
    source: dict[str, Any] = {"label": label, "url": source_url}
    source["topic"] = {
        "system": rule_system(source_url),
        "code": COVERAGE_TOPIC,
        "display": "What could not be screened",
    }
    system = override_reason_system(source_url)
    return {
        "uuid": incomplete_card_id(result, omitted),
        "summary": shorten(summary),
        "detail": "\n\n".join(parts),
        "indicator": "critical" if meds else "warning",
        "source": source,
        "overrideReasons": [_coding(system, c) for c in OVERRIDE_REASONS_INCOMPLETE],
    }


def cards_for(
    alerts: Sequence[tuple[str, Alert]],
    result: EvaluationResult,
    *,
    omitted: int,
    draft_orders: Mapping[str, str],
    source_url: str,
    order_labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The `cards` of a hook response: the incomplete-evaluation card first when there is one (it
    changes how every other card reads), then one card per (alert id, alert), in the given order.

    `omitted`: how many alerts the answer leaves out; `draft_orders`: medication fact id → the FHIR
    reference of its draft order; `source_url`: the service's absolute base URL (source.url, and the
    base of the code systems); `order_labels`: a draft order's reference → its text as the caller
    sent it (`requests.draft_order_labels`), for the suggestions' labels."""
    if not re.match(r"https?://[^/\s]+", source_url):
        raise ValueError("source_url must be an absolute http(s) URL")
    labels = order_labels or {}
    cards: list[dict[str, Any]] = []
    incomplete = _incomplete_card(result, omitted, draft_orders, source_url)
    if incomplete is not None:
        cards.append(incomplete)
    cards.extend(_alert_card(aid, alert, result, draft_orders, labels, source_url) for aid, alert in alerts)
    return cards

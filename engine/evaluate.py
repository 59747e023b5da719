"""One evaluation: knowledge-base interactions, allergies, relevant rules; merged and ranked.

Fail closed: a rule that cannot be evaluated (insufficient data, an error, a rule that did not
compile) is reported in `rule_errors` and makes the result incomplete. It is never read as "no alert".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from engine.allergy import AllergyMatch, allergy_matches
from engine.dose_limits import check_doses
from engine.facts import Facts, FoodItem, MedicationItem, build_facts
from engine.hepatic import check_hepatic
from engine.knowledge import EntityKey, InteractionPair, Knowledge
from engine.logic import evaluate_condition
from engine.model import (
    Alert,
    AlertKind,
    EvaluationRequest,
    EvaluationResult,
    EvidenceLevel,
    PatientSnapshot,
    RuleError,
    Severity,
    UnresolvedItem,
)
from engine.renal import check_renal
from engine.rules import SUMMARY_MAX, CompiledRule, Rule, RuleSet, tier_allows

__all__ = [
    "AllergyMatch",
    "RuleOutcome",
    "allergy_matches",
    "duplicate_ingredient_alerts",
    "evaluate",
    "finding_key",
    "interaction_alerts",
    "merge_alerts",
    "rank_alerts",
    "run_rules",
]

_ALLERGY_KINDS = frozenset({AlertKind.DRUG_ALLERGY, AlertKind.FOOD_ALLERGY})


def finding_key(kind: AlertKind, involved_ids: Iterable[str]) -> str:
    return f"{kind.value}:{'+'.join(sorted(set(involved_ids)))}"


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _first_sentence(text: str) -> str:
    head, _, _ = text.partition(". ")
    return head.rstrip(".")


def _label(item: MedicationItem) -> str:
    return "/".join(item.drug.ingredients) or item.fact.name


# --------------------------------------------------------------------------------------------------
# Interaction knowledge base


def _drug_keys(item: MedicationItem) -> list[EntityKey]:
    return [("ingredient", i) for i in item.drug.ingredients] + [("class", c) for c in item.drug.classes]


def _food_keys(item: FoodItem) -> list[EntityKey]:
    return [("food", item.food.name)] + [("food_group", g) for g in item.food.groups]


def _pair_alert(
    pair: InteractionPair, kind: AlertKind, ids: Sequence[str], a: str, b: str, drug: Mapping[str, str]
) -> Alert:
    headline = f"{a} with {b}"
    if pair.description:
        headline += f": {_first_sentence(pair.description)}"
    detail = pair.description
    if pair.source:
        detail = f"{detail} (source: {pair.source}, graded {pair.source_severity!r})".strip()
    recommendation = pair.recommendation or ("Avoid this combination." if pair.avoid_combination else "")
    return Alert(
        kind=kind,
        severity=pair.severity,
        summary=_summary(headline),
        detail=detail,
        recommendation=recommendation,
        evidence=pair.evidence,
        involved_ids=tuple(sorted(set(ids))),
        rule_id=f"kb:{pair.id}",
        rule_version=0,
        # Keyed by ingredient at once (what `_keyed_by_ingredient` would make of it).
        finding_key=finding_key(kind, (drug.get(i, i) for i in ids)),
        references=(pair.source,) if pair.source else (),
    )


def _holders(item: MedicationItem, key: EntityKey, knowledge: Knowledge) -> set[str]:
    """The ingredients of the medication that take this end of a pair."""
    kind, name = key
    if kind == "ingredient":
        return {name} & set(item.drug.ingredients)
    if kind == "class":
        return {i for i in item.drug.ingredients if name in knowledge.vocabulary.classes_of(i)}
    return set()


def _different_ingredients_meet(
    pair: InteractionPair, ma: MedicationItem, mb: MedicationItem, knowledge: Knowledge
) -> bool:
    """True when two different ingredients, one from each medication, take the pair's two ends.

    The current and the proposed warfarin are one ingredient twice: that is a duplicate order
    (`duplicate_ingredient_alerts`), not warfarin interacting with itself, so neither an ingredient
    pair nor a class pair (anticoagulant + anticoagulant) fires for it. Two different NSAIDs still
    meet the NSAID + NSAID class pair.
    """
    end_a, end_b = pair.keys
    if end_a[0] == "ingredient" and end_b[0] == "ingredient":
        # Two ingredients, one on each medication (that is how the pair was found): they meet
        # unless they are one ingredient twice.
        return end_a[1] != end_b[1]
    for first, second in ((end_a, end_b), (end_b, end_a)):
        left, right = _holders(ma, first, knowledge), _holders(mb, second, knowledge)
        if any(x != y for x in left for y in right):
            return True
    return False


def _pair_kind(pair: InteractionPair) -> AlertKind:
    # A class pair the source calls a duplication (two NSAIDs, two SSRIs) is duplicate therapy: it
    # is the same finding as a clinician's duplicate-therapy rule, and merges with it.
    return AlertKind.DUPLICATE_THERAPY if pair.interaction_type == "DUPLICATE" else AlertKind.DRUG_DRUG_INTERACTION


def interaction_alerts(facts: Facts, knowledge: Knowledge) -> list[Alert]:
    """Drug-drug pairs among all medications (current and proposed) and drug-food pairs against the
    proposed foods, at ingredient and class level."""
    kb = knowledge.interactions
    drug = _ingredient_names(facts)
    alerts: list[Alert] = []
    # In id order, so that the wording ("A with B") does not depend on the order of the record.
    keys = [(m, _drug_keys(m)) for m in sorted(facts.medications, key=lambda m: m.fact.id)]
    # Two current medications were (presumably) reviewed when prescribed, but a new allergy, a new
    # rule or a new KB entry can make an old pair dangerous: every pair is checked, current ones too.
    for i, j, pair in kb.pairs_among([k for _, k in keys]):
        ma, mb = keys[i][0], keys[j][0]
        if not _different_ingredients_meet(pair, ma, mb, knowledge):
            continue
        alerts.append(_pair_alert(pair, _pair_kind(pair), (ma.fact.id, mb.fact.id), _label(ma), _label(mb), drug))
    for food in facts.foods:
        food_keys = _food_keys(food)
        for med, mk in keys:
            for pair in kb.between(mk, food_keys):
                alerts.append(
                    _pair_alert(
                        pair,
                        AlertKind.FOOD_DRUG_INTERACTION,
                        (med.fact.id, food.id),
                        _label(med),
                        food.food.name,
                        drug,
                    )
                )
    return alerts


# --------------------------------------------------------------------------------------------------
# The same ingredient twice

# ISMP's List of High-Alert Medications in Community/Ambulatory Care (2021): drugs where an error,
# and a doubled dose above all, is most likely to do serious harm (bleeding, respiratory depression,
# hypoglycaemia, marrow or organ toxicity). Only the classes the vocabulary carries.
HIGH_ALERT_CLASSES = frozenset(
    {"anticoagulant", "opioid", "sulfonylurea", "antimetabolite", "calcineurin_inhibitor", "protease_inhibitor"}
)


def duplicate_ingredient_alerts(facts: Facts, knowledge: Knowledge) -> list[Alert]:
    """One DUPLICATE_THERAPY alert per ingredient on two or more medications (current and proposed).

    Graded HIGH (interruptive) when the ingredient is a high-alert medication, MODERATE otherwise:
    a second order of a high-alert drug doubles the dose of a drug whose overdose injures, and must
    stop the prescriber; any other duplicate is a reconciliation error worth a passive alert, not an
    interruption (alert fatigue is what makes clinicians override the alerts that matter).
    """
    by_ingredient: dict[str, list[MedicationItem]] = {}
    for med in facts.medications:
        for ingredient in dict.fromkeys(med.drug.ingredients):
            by_ingredient.setdefault(ingredient, []).append(med)
    alerts: list[Alert] = []
    for ingredient, meds in sorted(by_ingredient.items()):
        if len(meds) < 2:
            continue
        ids = tuple(sorted(m.fact.id for m in meds))
        proposed = [m for m in meds if m.fact.proposed]
        if proposed and len(proposed) < len(meds):
            summary = f"{ingredient} is already on the medication list"
            detail = f"{ingredient} is proposed while {ingredient} is already an active medication."
        else:
            summary = f"{ingredient} is on the medication list {len(meds)} times"
            detail = f"{len(meds)} medications on the list contain {ingredient}."
        high_alert = HIGH_ALERT_CLASSES.intersection(knowledge.vocabulary.classes_of(ingredient))
        if high_alert:
            detail += f" It is a high-alert medication ({', '.join(sorted(high_alert))}): a doubled dose can harm."
        alerts.append(
            Alert(
                kind=AlertKind.DUPLICATE_THERAPY,
                severity=Severity.HIGH if high_alert else Severity.MODERATE,
                summary=_summary(summary),
                detail=detail,
                recommendation=(
                    "Confirm whether this replaces the current order (then stop the current one) or is a"
                    " deliberate change of dose; do not give both."
                ),
                evidence=EvidenceLevel.EXPERT_OPINION,
                involved_ids=ids,
                rule_id="kb:duplicate-ingredient",
                rule_version=0,
                finding_key=finding_key(AlertKind.DUPLICATE_THERAPY, ids),
                references=("ISMP List of High-Alert Medications in Community/Ambulatory Care Settings (2021)",)
                if high_alert
                else (),
            )
        )
    return alerts


# --------------------------------------------------------------------------------------------------
# Rules

OutcomeStatus = Literal["FIRED", "NOT_FIRED", "INSUFFICIENT_DATA", "ERROR", "TIER"]


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    rule: CompiledRule
    status: OutcomeStatus
    alert: Alert | None = None
    error: RuleError | None = None


def _rule_alert(compiled: CompiledRule, facts: Facts) -> Alert:
    rule = compiled.rule
    ids = facts.involved_ids(rule.applies_to, allergies=rule.kind in _ALLERGY_KINDS)
    # A rule about no particular item (age alone) is its own finding; it must not merge with others.
    key = finding_key(rule.kind, ids) if ids else f"{rule.kind.value}:rule:{rule.id}"
    return Alert(
        kind=rule.kind,
        severity=rule.severity,
        summary=rule.summary,
        detail=rule.detail or rule.description,
        recommendation=rule.recommendation,
        evidence=rule.evidence,
        involved_ids=ids,
        rule_id=rule.id,
        rule_version=rule.version,
        finding_key=key,
        references=rule.references,
    )


def _stale_labs(rule_max_age: Mapping[str, int], facts: Facts, now: datetime) -> dict[str, str]:
    """labs.<type> the rule may not use, each with why: older than the rule's max_age_days, or with
    no recorded time (a reading of unknown age cannot be shown to be recent enough)."""
    labs = facts.data.get("labs") or {}
    stale: dict[str, str] = {}
    for lab, days in rule_max_age.items():
        if lab not in labs:
            continue
        taken = facts.lab_times.get(lab)
        if taken is None:
            stale[lab] = f"{lab} (the reading has no time; the rule needs one at most {days} days old)"
            continue
        taken = taken if taken.tzinfo is not None else taken.replace(tzinfo=UTC)
        age = now - taken
        if age > timedelta(days=days):
            stale[lab] = f"{lab} (the latest reading is {age.days} days old; the rule needs one at most {days})"
    return stale


def _only_absent_readings(missing: Iterable[str], rule: Rule, facts: Facts, stale: Mapping[str, str]) -> bool:
    """Every missing variable is a `labs.<type>` the rule's max_age_days names and the patient has no
    reading of at all (a stale or undated one does not count as absent: it stays insufficient)."""
    labs = facts.data.get("labs") or {}
    names = list(missing)
    for name in names:
        lab = name.removeprefix("labs.")
        if lab == name or lab not in rule.max_age_days or lab in stale or lab in labs:
            return False
    return bool(names)


def run_rules(facts: Facts, ruleset: RuleSet, *, now: datetime | None = None) -> list[RuleOutcome]:
    """Evaluate the rules relevant to these facts, each on its own; nothing merged yet.

    A rule's `max_age_days` hides from it the readings older than it allows: the rule sees them as
    missing, so a comparison on one is insufficient data (reported with the reading's age), never
    "safe"."""
    now = now or datetime.now(UTC)
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    outcomes: list[RuleOutcome] = []
    tier = str(facts.data.get("tier", "BASIC"))
    for compiled in ruleset.relevant(facts.relevance_keys()):
        rule = compiled.rule
        if not tier_allows(tier, rule.min_tier):
            outcomes.append(RuleOutcome(compiled, "TIER"))
            continue
        if compiled.logic is None:
            error = RuleError(rule.id, rule.version, f"error: rule did not compile: {compiled.compile_error}")
            outcomes.append(RuleOutcome(compiled, "ERROR", error=error))
            continue
        data = facts.data
        stale = _stale_labs(rule.max_age_days, facts, now) if rule.max_age_days else {}
        if stale:
            data = {**facts.data, "labs": {k: v for k, v in facts.data["labs"].items() if k not in stale}}
        try:
            outcome = evaluate_condition(compiled.logic, data)
            status = outcome.status.value
        except Exception as exc:  # noqa: BLE001 - reported as a RuleError and complete=false, never dropped
            # The class only: messages can quote patient values (PHI) and travel to logs and audit.
            error = RuleError(rule.id, rule.version, f"error: {type(exc).__name__}")
            outcomes.append(RuleOutcome(compiled, "ERROR", error=error))
            continue
        if status == "FIRED":
            outcomes.append(RuleOutcome(compiled, "FIRED", alert=_rule_alert(compiled, facts)))
        elif status == "NOT_FIRED":
            outcomes.append(RuleOutcome(compiled, "NOT_FIRED"))
        elif rule.missing_reading == "quiet" and _only_absent_readings(outcome.missing, rule, facts, stale):
            # A monitoring rule and no reading at all of what it watches: nothing known to be abnormal.
            outcomes.append(RuleOutcome(compiled, "NOT_FIRED"))
        else:
            missing = ", ".join(
                stale.get(m.removeprefix("labs."), m) for m in outcome.missing
            ) or "unspecified"
            error = RuleError(rule.id, rule.version, f"insufficient data: {missing}", insufficient_data=True)
            outcomes.append(RuleOutcome(compiled, "INSUFFICIENT_DATA", error=error))
    return outcomes


# --------------------------------------------------------------------------------------------------
# Merge and rank


def _text_weight(alert: Alert) -> int:
    return len(alert.detail) + len(alert.recommendation)


def _authored(alert: Alert) -> bool:
    return not alert.rule_id.startswith("kb:")


def merge_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    """One alert per finding (same kind, same finding key): the highest severity and evidence of any
    source, every reference, and how many alerts were folded in (`suppressed`).

    Whose words: a clinician's authored rule speaks for the finding whenever one fired for it (the
    most severe of them), even where the knowledge base grades the finding higher: the rule is the
    text the clinicians of this service wrote and reviewed. Without one, the most severe
    knowledge-base alert does (the fullest text among equals). The alert is attributed (rule id,
    version) to whoever's text it shows.
    """
    groups: dict[tuple[str, str], list[Alert]] = {}
    for alert in alerts:
        groups.setdefault((alert.kind.value, alert.finding_key), []).append(alert)
    merged: list[Alert] = []
    for members in groups.values():
        if len(members) == 1:
            merged.append(members[0])
            continue
        members = rank_alerts(members)
        authored = [a for a in members if _authored(a)]
        if authored:
            voice = min(authored, key=lambda a: (-a.severity, -a.evidence, a.stable_id))
        else:
            # The most severe source speaks, so the words match the grade shown; among equals the
            # fullest text.
            voice = max(members, key=lambda a: (a.severity, _text_weight(a), -members.index(a)))
        references = tuple(dict.fromkeys(r for a in [voice, *members] for r in a.references))
        merged.append(
            replace(
                voice,
                severity=max(a.severity for a in members),
                evidence=max(a.evidence for a in members),
                involved_ids=tuple(sorted({i for a in members for i in a.involved_ids})),
                references=references,
                suppressed=sum(1 + a.suppressed for a in members) - 1 - voice.suppressed,
            )
        )
    return merged


def _keyed_by_ingredient(alerts: Iterable[Alert], facts: Facts) -> list[Alert]:
    """Finding keys that name a medication by its ingredients, not its record id.

    The current and the proposed warfarin are one drug: "warfarin with ibuprofen" is one finding
    whichever warfarin order the knowledge base or a rule paired with the ibuprofen.
    """
    drug = _ingredient_names(facts)
    keyed = []
    for alert in alerts:
        if alert.involved_ids and alert.kind is not AlertKind.OTHER:
            key = finding_key(alert.kind, (drug.get(i, i) for i in alert.involved_ids))
            if key != alert.finding_key:
                alert = replace(alert, finding_key=key)
        keyed.append(alert)
    return keyed


def _ingredient_names(facts: Facts) -> dict[str, str]:
    """A medication's record id → its ingredients, as finding keys name a drug."""
    return {m.fact.id: "drug:" + "/".join(m.drug.ingredients) for m in facts.medications if m.drug.ingredients}


def _rank_key(alert: Alert) -> tuple[int, int, str, str, str, str, tuple[str, ...], int]:
    # Severity, then evidence, then the stable id; the remaining fields only make the order total
    # for alerts that share a stable id.
    return (
        -alert.severity,
        -alert.evidence,
        alert.stable_id,
        alert.summary,
        alert.detail,
        alert.recommendation,
        alert.references,
        alert.rule_version,
    )


def rank_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    return sorted(alerts, key=_rank_key)


# --------------------------------------------------------------------------------------------------


_UNRESOLVED_SUMMARY = {
    "unrecognised": "not in the drug vocabulary; not screened",
    "ambiguous": "matches more than one drug; not screened until it is named exactly",
    "partial": "only partly recognised; the rest was not screened",
    "mismatch": "its code and its name are different drugs; screened by the code",
}


_UNRESOLVED_FOOD_SUMMARY = {
    "unrecognised": "not a food in the vocabulary; not screened",
    "partial": "only partly recognised; the rest was not screened",
}


def _unresolved_food_alert(item: UnresolvedItem) -> Alert:
    hint = f" Did you mean {', '.join(item.suggestions)}?" if item.suggestions else ""
    return Alert(
        kind=AlertKind.OTHER,
        severity=Severity.INFO,
        summary=_summary(f"{item.text}: {_UNRESOLVED_FOOD_SUMMARY.get(item.reason, item.reason)}"),
        detail=(
            f"Not understood: {', '.join(item.parts)}. Food allergies and food-drug interactions could not be "
            "checked for it; the evaluation is incomplete." + hint
        ),
        recommendation="Name the food plainly (for example 'cheddar', 'soy sauce'), or check it against the patient's "
        "allergies and medications by hand.",
        evidence=EvidenceLevel.UNKNOWN,
        involved_ids=(item.item_id,),
        rule_id="kb:vocabulary",
        rule_version=0,
        finding_key=f"{AlertKind.OTHER.value}:unrecognised:{item.item_id}",
    )


def _unresolved_alerts(unresolved: Iterable[UnresolvedItem]) -> list[Alert]:
    alerts = []
    for item in unresolved:
        if item.kind == "food":
            alerts.append(_unresolved_food_alert(item))
        if item.kind != "medication":
            continue
        hint = f" Did you mean {', '.join(item.suggestions)}?" if item.suggestions else ""
        alerts.append(
            Alert(
                kind=AlertKind.OTHER,
                severity=Severity.INFO,
                summary=_summary(f"{item.text}: {_UNRESOLVED_SUMMARY.get(item.reason, item.reason)}"),
                detail=(
                    "The medication could not be matched to its ingredients, so interactions, allergies and "
                    "rules could not be fully checked for it; the evaluation is incomplete." + hint
                ),
                recommendation="Record the medication by its RxNorm code, or by its exact generic name.",
                evidence=EvidenceLevel.UNKNOWN,
                involved_ids=(item.item_id,),
                rule_id="kb:vocabulary",
                rule_version=0,
                finding_key=f"{AlertKind.OTHER.value}:unrecognised:{item.item_id}",
            )
        )
    return alerts


def evaluate(
    snapshot: PatientSnapshot,
    request: EvaluationRequest,
    ruleset: RuleSet,
    knowledge: Knowledge,
    *,
    facts: Facts | None = None,
    now: datetime | None = None,
) -> EvaluationResult:
    facts = facts if facts is not None else build_facts(snapshot, request, knowledge)
    found: list[Alert] = interaction_alerts(facts, knowledge)
    found.extend(duplicate_ingredient_alerts(facts, knowledge))
    found.extend(m.alert() for m in allergy_matches(facts, knowledge.vocabulary))
    unresolved = facts.unresolved()
    found.extend(_unresolved_alerts(unresolved))

    # Dose limits (engine.dose_limits): their alerts, and the doses that could not be checked.
    # Renal function and its bands (engine.renal); the dose limits' renal rows get the same, recent, values.
    renal_alerts, errors, renal_values = check_renal(
        facts.medications, snapshot, knowledge.vocabulary, knowledge.renal, knowledge.dose, now=now
    )
    found.extend(renal_alerts)
    # Child-Pugh class and its bands (engine.hepatic).
    hepatic_alerts, hepatic_errors = check_hepatic(
        facts.medications, snapshot, knowledge.vocabulary, knowledge.hepatic, knowledge.dose
    )
    found.extend(hepatic_alerts)
    errors.extend(hepatic_errors)
    labs = {k: v for k, v in facts.data["labs"].items() if k not in ("egfr", "crcl")} | renal_values
    dose_alerts, dose_errors = check_doses(facts.medications, snapshot, knowledge.vocabulary, knowledge.dose, labs)
    found.extend(dose_alerts)
    errors.extend(dose_errors)
    shadow: list[Alert] = []
    shadow_errors: list[str] = []
    outcomes = run_rules(facts, ruleset, now=now)
    for outcome in outcomes:
        is_shadow = outcome.rule.rule.status == "shadow"
        if outcome.alert is not None:
            (shadow if is_shadow else found).append(outcome.alert)
        if outcome.error is not None:
            # A shadow rule is on trial: its failures are recorded but do not make the live answer
            # incomplete.
            if is_shadow:
                shadow_errors.append(f"{outcome.error.rule_id}: {outcome.error.reason}")
            else:
                errors.append(outcome.error)

    extra: dict[str, str] = {}
    if facts.ignored_allergies:
        # Said, not silently dropped: the caller sees which recorded allergies were not screened.
        extra["ignored_allergies"] = "; ".join(f"{i} ({why})" for i, why in facts.ignored_allergies)
    if shadow_errors:
        extra["shadow_rule_errors"] = "; ".join(shadow_errors)
    alerts = merge_alerts(_keyed_by_ingredient(found, facts))
    return EvaluationResult(
        alerts=tuple(rank_alerts(alerts)),
        complete=not errors and not unresolved,
        rule_errors=tuple(sorted(errors, key=lambda e: (e.rule_id, e.reason))),
        unresolved=unresolved,
        shadow_alerts=tuple(rank_alerts(shadow)),
        ruleset_version=ruleset.version,
        knowledge_version=knowledge.version,
        vocabulary_version=knowledge.vocabulary.version,
        rules_evaluated=sum(1 for o in outcomes if o.status != "TIER"),
        extra=extra,
        suppressed_duplicates=sum(a.suppressed for a in alerts),
    )

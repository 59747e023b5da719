"""Allergy checks: each recorded allergy against each medication and proposed food, graded.

How an allergy reaches a drug (`relation`):
- direct: the allergy names the drug's ingredient, or a class the drug belongs to;
- class: the allergy names another member of a class whose members cross-react (lisinopril ->
  enalapril, Augmentin -> piperacillin);
- side_chain: a beta-lactam with an R1 side chain identical to one the allergy covers (ampicillin or
  a penicillin allergy -> cefaclor);
- cross: a related class the allergen group lists (penicillins -> carbapenems).

Grades (the reasons are in rules/knowledge/SOURCES.md, "Allergy grading"): direct CRITICAL, HIGH
after a documented mild or moderate reaction or with criticality low; the others at their
knowledge grade, one step higher after a high-risk reaction (anaphylaxis, angioedema, SJS/TEN,
DRESS, severity SEVERE or ANAPHYLACTIC, or criticality high). An intolerance (FHIR type
"intolerance": not immune-mediated) is one step lower than an allergy, never below LOW. A refuted
or entered-in-error allergy never reaches here (engine.facts leaves it out and names it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from engine.facts import AllergyItem, Facts, MedicationItem
from engine.knowledge import CrossReactivity, Vocabulary
from engine.model import Alert, AlertKind, AllergyFact, EvidenceLevel, Severity
from engine.recipe import singular_forms
from engine.rules import SUMMARY_MAX

__all__ = ["AllergyMatch", "allergy_matches", "high_risk_history"]

Relation = Literal["direct", "class", "side_chain", "cross"]
_RELATION_RANK = {"direct": 3, "class": 2, "side_chain": 1, "cross": 0}
_MILD_REACTIONS = frozenset({"MILD", "MODERATE"})
_HIGH_RISK_SEVERITIES = frozenset({"SEVERE", "ANAPHYLACTIC", "LIFE_THREATENING", "LIFE-THREATENING"})
# Reactions after which any related drug is more dangerous: immediate systemic reactions and the
# severe cutaneous adverse reactions (AAAAI 2022: avoid the whole group after SJS/TEN or DRESS).
_HIGH_RISK_REACTIONS = re.compile(
    r"anaphyla|angio-?\s?o?edema|stevens|\bsjs\b|toxic epidermal|\bten\b|\bdress\b|eosinophilia and systemic"
    r"|bronchospasm|laryngeal|airway (?:swelling|obstruction)|hypotension|shock|cardiac arrest",
    re.IGNORECASE,
)


def high_risk_history(fact: AllergyFact) -> bool:
    """A reaction, or a clinician's judgement, that makes any re-exposure more dangerous."""
    if (fact.severity or "").upper() in _HIGH_RISK_SEVERITIES or (fact.criticality or "").lower() == "high":
        return True
    return any(_HIGH_RISK_REACTIONS.search(r) for r in fact.reactions)


def _step(severity: Severity, by: int) -> Severity:
    return Severity(max(Severity.LOW, min(Severity.CRITICAL, severity + by)))


def _is_intolerance(fact: AllergyFact) -> bool:
    return (fact.type or "").lower() == "intolerance"


def _direct_grade(fact: AllergyFact) -> Severity:
    # A documented allergy met head-on is a hard stop unless the recorded reaction was mild or
    # moderate (or the recorder judged the risk low); an allergy of unknown severity is treated as
    # severe.
    if high_risk_history(fact):
        grade = Severity.CRITICAL
    elif (fact.severity or "").upper() in _MILD_REACTIONS:
        grade = Severity.HIGH
    elif not fact.severity and (fact.criticality or "").lower() == "low":
        grade = Severity.HIGH
    else:
        grade = Severity.CRITICAL
    return _step(grade, -1) if _is_intolerance(fact) else grade


def _related_grade(fact: AllergyFact, item: CrossReactivity) -> Severity:
    grade = _step(item.severity, 1) if high_risk_history(fact) else item.severity
    return _step(grade, -1) if _is_intolerance(fact) else grade


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _finding_key(kind: AlertKind, ids: tuple[str, ...]) -> str:
    return f"{kind.value}:{'+'.join(sorted(set(ids)))}"


@dataclass(frozen=True, slots=True)
class AllergyMatch:
    allergy: AllergyItem
    item_id: str  # the medication id or "food:<name>"
    item_label: str
    kind: AlertKind  # DRUG_ALLERGY or FOOD_ALLERGY
    relation: Relation
    severity: Severity
    note: str = ""
    via: str = ""  # the class or side-chain group a non-direct match went through (its display name)

    @property
    def cross_reactive(self) -> bool:
        return self.relation != "direct"

    def _recorded(self) -> str:
        """'allergy to penicillin', 'unconfirmed allergy to penicillin', 'intolerance of codeine'."""
        fact = self.allergy.fact
        name = self.allergy.allergen.name
        noun = f"intolerance of {name}" if _is_intolerance(fact) else f"allergy to {name}"
        verification = (fact.verification or "").lower()
        if verification in ("unconfirmed", "presumed"):
            return f"{verification} {noun}"
        return noun

    def alert(self) -> Alert:
        fact = self.allergy.fact
        name = self.allergy.allergen.name
        recorded = self._recorded()
        label = self.item_label
        if self.relation == "direct":
            if recorded == f"allergy to {name}":
                summary = f"{label}: patient is allergic to {name}"
            else:
                summary = f"{label}: {recorded}"
            reaction = f" ({fact.severity.lower()})" if fact.severity else ""
            detail = f"The recorded {recorded}{reaction} covers {label}."
            if self.allergy.allergen.note:
                detail += f" {self.allergy.allergen.note}"
            recommendation = "Do not give; choose an agent outside this allergen group."
            # The patient's own documented reaction: the strongest evidence the engine has about them.
            evidence = EvidenceLevel.CLINICAL_TRIAL
        else:
            if self.relation == "class":
                summary = f"{label}: same class ({self.via}) as the recorded {recorded}"
                detail = f"{label} belongs to {self.via}, as does the drug of the recorded {recorded}."
                recommendation = (
                    "Avoid the class unless an allergist has cleared it; choose an agent from another class."
                )
            elif self.relation == "side_chain":
                summary = f"{label}: shares a beta-lactam R1 side chain with the recorded {recorded}"
                detail = f"{label} and the drug of the recorded {recorded} share an R1 side chain."
                recommendation = (
                    "Prefer a beta-lactam with a dissimilar side chain, or give after allergy review (test dose)."
                )
            else:
                summary = f"{label}: possible cross-reactivity with the recorded {recorded}"
                detail = f"{label} may cross-react with the recorded {recorded}."
                recommendation = "Check the reaction history; consider an alternative or a supervised first dose."
            if self.note:
                detail += f" {self.note}"
            # Cross-reactivity rates come from population studies, not from this patient.
            evidence = EvidenceLevel.OBSERVATIONAL
        if high_risk_history(fact) and self.relation != "direct":
            detail += " Graded one step higher: the recorded reaction was severe (or its criticality high)."
        if _is_intolerance(fact):
            detail += (
                " Recorded as an intolerance (not immune-mediated), so graded one step below an allergy;"
                " the same adverse effect may recur."
            )
        verification = (fact.verification or "").lower()
        if verification == "unconfirmed":
            detail += (
                " The allergy is unconfirmed (suspected, not verified): screened as if true until it is ruled out."
            )
        elif verification == "presumed":
            detail += " The allergy is presumed (likely, not verified); it is screened as if true."
        ids = (fact.id, self.item_id)
        suffix = "" if self.relation == "direct" else ":" + self.relation.replace("_", "-")
        reference = {
            "direct": "",
            "class": " (same class)",
            "side_chain": " (R1 side chain; Zagursky 2018, AAAAI 2022)",
            "cross": " (cross-reactivity)",
        }[self.relation]
        return Alert(
            kind=self.kind,
            severity=self.severity,
            summary=_summary(summary),
            detail=detail,
            recommendation=recommendation,
            evidence=evidence,
            involved_ids=tuple(sorted(ids)),
            rule_id=f"kb:allergen:{name}{suffix}",
            rule_version=0,
            finding_key=_finding_key(self.kind, ids),
            # Named, so that a rule saying the same still lists this source once merged.
            references=(f"Praneya allergen knowledge: {name}{reference}",),
        )


def _label(item: MedicationItem) -> str:
    return "/".join(item.drug.ingredients) or item.fact.name


def _via(vocabulary: Vocabulary | None, item: CrossReactivity) -> str:
    if item.target_kind == "class" and vocabulary is not None and item.target in vocabulary.classes:
        return vocabulary.classes[item.target].name
    return item.target.replace("_", " ")


def allergy_matches(facts: Facts, vocabulary: Vocabulary | None = None) -> list[AllergyMatch]:
    """One match per (allergy, item), the strongest way the allergy reaches it."""
    matches: list[AllergyMatch] = []
    for allergy in facts.allergies:
        allergen = allergy.allergen
        fact = allergy.fact
        for med in facts.medications:
            ingredients, classes = set(med.drug.ingredients), set(med.drug.classes)
            label = _label(med)
            if ingredients.intersection(allergen.ingredients) or classes.intersection(allergen.classes):
                matches.append(
                    AllergyMatch(allergy, med.fact.id, label, AlertKind.DRUG_ALLERGY, "direct", _direct_grade(fact))
                )
                continue
            reached = [
                c
                for c in allergen.cross
                if (c.target_kind == "class" and c.target in classes)
                or (c.target_kind == "ingredient" and c.target in ingredients)
            ]
            if reached:
                best = max(reached, key=lambda c: (_related_grade(fact, c), _RELATION_RANK[c.relation]))
                matches.append(
                    AllergyMatch(
                        allergy,
                        med.fact.id,
                        label,
                        AlertKind.DRUG_ALLERGY,
                        best.relation,
                        _related_grade(fact, best),
                        best.note,
                        _via(vocabulary, best),
                    )
                )
        covered = set(allergen.foods) | set(allergen.food_groups)
        phrases = [tuple(p.split()) for p in allergen.food_phrases if p]
        for food in facts.foods:
            if covered.intersection((food.food.name, *food.food.groups)) or any(
                _names_within(phrase, tuple(food.food.name.split())) or _names_within(phrase, food.words)
                for phrase in phrases
            ):
                grade = _direct_grade(fact)
                matches.append(AllergyMatch(allergy, food.id, food.food.name, AlertKind.FOOD_ALLERGY, "direct", grade))
    return matches


def _names_within(phrase: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """The phrase occurs in the words, word for word, either in the singular or the plural
    ("walnut" in "toasted walnuts", "coconut" in "coconut milk"; not "nut" in "coconut")."""
    if not phrase or len(phrase) > len(words):
        return False
    forms = [{w, *singular_forms(w)} for w in words]
    wanted = [{w, *singular_forms(w)} for w in phrase]
    return any(
        all(wanted[k] & forms[start + k] for k in range(len(phrase))) for start in range(len(words) - len(phrase) + 1)
    )

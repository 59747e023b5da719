"""Clinical types shared by the pure engine core.

Everything here is plain data: frozen dataclasses and enums, no I/O. The gRPC edge converts
protobuf messages to and from these types; the store builds `PatientSnapshot` from decrypted rows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime

from engine.identity import Coding

__all__ = [
    "Alert",
    "AlertKind",
    "AllergyFact",
    "BiometricFact",
    "ConditionFact",
    "EvaluationRequest",
    "EvaluationResult",
    "EvidenceLevel",
    "LactationFact",
    "MedicationFact",
    "PatientSnapshot",
    "PregnancyFact",
    "RuleError",
    "Severity",
]


class Severity(enum.IntEnum):
    """Our one severity scale, low to high (DESIGN.md: INFO, LOW, MODERATE, HIGH, CRITICAL)."""

    INFO = 0
    LOW = 1
    MODERATE = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def interruptive(self) -> bool:
        # Alert tiering: only the two highest severities interrupt the workflow; the rest are
        # passive, because interrupting on everything is what produces alert fatigue.
        return self >= Severity.HIGH


class EvidenceLevel(enum.IntEnum):
    """Strength of evidence, weakest to strongest; ranks alerts of equal severity."""

    UNKNOWN = 0
    EXPERT_OPINION = 1
    CASE_REPORTS = 2
    OBSERVATIONAL = 3
    CLINICAL_TRIAL = 4
    SYSTEMATIC_REVIEW = 5


class AlertKind(enum.StrEnum):
    DRUG_DRUG_INTERACTION = "DRUG_DRUG_INTERACTION"
    DRUG_ALLERGY = "DRUG_ALLERGY"
    FOOD_ALLERGY = "FOOD_ALLERGY"
    FOOD_DRUG_INTERACTION = "FOOD_DRUG_INTERACTION"
    DUPLICATE_THERAPY = "DUPLICATE_THERAPY"
    DRUG_CONDITION = "DRUG_CONDITION"
    DOSE_RANGE = "DOSE_RANGE"
    AGE_RELATED = "AGE_RELATED"
    PREGNANCY = "PREGNANCY"
    RENAL = "RENAL"
    LAB_VALUE = "LAB_VALUE"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class MedicationFact:
    id: str
    name: str  # as entered: brand, generic, with or without salt ("Toprol XL", "metoprolol succinate")
    dose: str | None = None
    route: str | None = None
    frequency: str | None = None
    proposed: bool = False
    coding: Coding | None = None  # RxNorm or NDC; a known code wins over the name


@dataclass(frozen=True, slots=True)
class AllergyFact:
    id: str
    allergen: str
    category: str | None = None  # allergen_category: DRUG, FOOD, ENVIRONMENTAL, ...
    severity: str | None = None  # allergy_severity: MILD, MODERATE, SEVERE, ANAPHYLACTIC
    reactions: tuple[str, ...] = ()
    coding: Coding | None = None  # RxNorm/NDC for drugs, SNOMED CT for foods and substances
    # FHIR AllergyIntolerance semantics, when the source says (None: not recorded):
    type: str | None = None  # "allergy" | "intolerance"
    criticality: str | None = None  # "low" | "high" | "unable-to-assess"
    verification: str | None = None  # "confirmed" | "unconfirmed" | "presumed" | "refuted" | "entered-in-error"


@dataclass(frozen=True, slots=True)
class ConditionFact:
    id: str
    name: str
    code: str | None = None  # ICD-10 or SNOMED code when known
    codings: tuple[Coding, ...] = ()  # every known coding the source gave (FHIR: ICD-10-CM and SNOMED CT)


@dataclass(frozen=True, slots=True)
class BiometricFact:
    id: str
    reading_type: str  # egfr, potassium, inr, qtc, systolic_bp, ...
    value: float
    unit: str | None = None
    code: str | None = None  # LOINC code when known
    observed_at: datetime | None = None  # effective time of the reading, when known (UTC)


@dataclass(frozen=True, slots=True)
class PregnancyFact:
    """A pregnancy status as recorded, dated (engine.demographics reads it on the evaluation date).

    Gestational age is given as of `gestational_on` (default: the day it was recorded), or as an
    estimated delivery date; on the evaluation date it is that plus the days since."""

    status: str  # "pregnant" | "not_pregnant"
    recorded_at: datetime | None = None  # when the status was observed; None: not recorded (taken as current)
    gestational_days: int | None = None  # gestational age, in days (22 weeks 3 days = 157), on gestational_on
    gestational_on: date | None = None
    estimated_delivery: date | None = None


@dataclass(frozen=True, slots=True)
class LactationFact:
    lactating: bool
    recorded_at: datetime | None = None  # None: not recorded (taken as current)


@dataclass(frozen=True, slots=True)
class PatientSnapshot:
    patient_id: str
    tenant_id: str
    age: int | None = None  # whole years; with a birth date, derived from it on the evaluation date
    sex: str | None = None
    birth_date: date | None = None  # when known, age is computed from it on the evaluation date
    pregnant: bool | None = None  # with `pregnancy`, derived from it (a status too old is unknown)
    subscription_tier: str = "BASIC"
    medications: tuple[MedicationFact, ...] = ()
    allergies: tuple[AllergyFact, ...] = ()
    conditions: tuple[ConditionFact, ...] = ()
    biometrics: tuple[BiometricFact, ...] = ()  # the latest reading of each type
    # Dated pregnancy and lactation status (engine.demographics); weight and height are readings
    # (`weight_kg`, `height_cm`) in `biometrics`.
    pregnancy: PregnancyFact | None = None
    lactation: LactationFact | None = None
    # The moment the snapshot is evaluated at (ages, gestational ages, how old a reading is); None: now.
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    proposed_medications: tuple[MedicationFact, ...] = ()
    proposed_foods: tuple[str, ...] = ()  # foods, or a recipe's ingredients


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    severity: Severity
    summary: str  # at most 140 characters
    detail: str
    recommendation: str
    evidence: EvidenceLevel
    involved_ids: tuple[str, ...]  # medication / allergy / condition / biometric ids, or "food:<name>"
    rule_id: str  # a clinical rule id, or "kb:<pair id>" for the interaction knowledge base
    rule_version: int
    finding_key: str  # identifies the clinical finding, so a KB pair and a rule saying the same merge
    references: tuple[str, ...] = ()
    # How many other alerts for this same finding (a KB pair, an allergen match, another rule) were
    # folded into this one; their grades are in `severity` (the highest) and their sources in
    # `references`.
    suppressed: int = 0

    @property
    def interruptive(self) -> bool:
        return self.severity.interruptive

    @property
    def stable_id(self) -> str:
        return f"{self.kind.value}|{self.finding_key}|{self.rule_id}|{','.join(sorted(self.involved_ids))}"


@dataclass(frozen=True, slots=True)
class RuleError:
    rule_id: str
    rule_version: int
    reason: str  # "insufficient data: egfr" or "error: <exception class>: <message without PHI>"
    insufficient_data: bool = False


@dataclass(frozen=True, slots=True)
class UnresolvedItem:
    """A medication, allergen or food that could not be resolved to ingredients or foods: it was not (fully)
    screened, so the evaluation is incomplete, and the caller is told which item and why."""

    item_id: str
    kind: str  # "medication" | "allergy" | "food" (a proposed food or recipe ingredient line)
    text: str  # as the caller gave it (or its code)
    reason: str  # unrecognised | ambiguous | partial | mismatch
    parts: tuple[str, ...] = ()  # the parts that matched nothing, or several things
    suggestions: tuple[str, ...] = ()  # "did you mean"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    alerts: tuple[Alert, ...]
    complete: bool
    rule_errors: tuple[RuleError, ...] = ()
    unresolved: tuple[UnresolvedItem, ...] = ()
    shadow_alerts: tuple[Alert, ...] = ()
    ruleset_version: str = ""
    knowledge_version: str = ""
    vocabulary_version: str = ""
    rules_evaluated: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    suppressed_duplicates: int = 0  # alerts folded into another alert for the same finding

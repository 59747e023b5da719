"""FHIR R4 required value sets we check, and the LOINC codes we map to the engine's reading types.

Value sets: the FHIR R4 (4.0.1) specification, hl7.org/fhir/R4/valueset-<name>.html (CC0). The
LOINC rows come from source rows named beside each entry (never typed from memory); the LOINC codes
themselves are LOINC (c) Regenstrief Institute, used under the LOINC licence (free of charge).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.labs import lab_catalog

__all__ = ["LOINC", "READINGS", "UCUM", "ReadingCode"]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"

# valueset-bundle-type
BUNDLE_TYPE = frozenset(
    "document message transaction transaction-response batch batch-response history searchset collection".split()
)
# valueset-administrative-gender
GENDER = frozenset("male female other unknown".split())
# valueset-medicationrequest-status / -intent
MEDICATION_REQUEST_STATUS = frozenset(
    "active on-hold cancelled completed entered-in-error stopped draft unknown".split()
)
MEDICATION_REQUEST_INTENT = frozenset(
    "proposal plan order original-order reflex-order filler-order instance-order option".split()
)
# valueset-medication-statement-status
MEDICATION_STATEMENT_STATUS = frozenset(
    "active completed entered-in-error intended stopped on-hold unknown not-taken".split()
)
# valueset-allergyintolerance-clinical / -verification (CodeableConcept, required binding), and
# the code elements type, category, criticality, reaction.severity
ALLERGY_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_CLINICAL = frozenset("active inactive resolved".split())
ALLERGY_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
ALLERGY_VERIFICATION = frozenset("unconfirmed confirmed refuted entered-in-error".split())
ALLERGY_TYPE = frozenset("allergy intolerance".split())
ALLERGY_CATEGORY = frozenset("food medication environment biologic".split())
ALLERGY_CRITICALITY = frozenset("low high unable-to-assess".split())
REACTION_SEVERITY = frozenset("mild moderate severe".split())
# valueset-condition-clinical / condition-ver-status
CONDITION_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_CLINICAL = frozenset("active recurrence relapse inactive remission resolved".split())
CONDITION_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_VERIFICATION = frozenset("unconfirmed provisional differential confirmed refuted entered-in-error".split())
# valueset-observation-status
OBSERVATION_STATUS = frozenset(
    "registered preliminary final amended corrected cancelled entered-in-error unknown".split()
)
# NutritionOrder.status: valueset-request-status; .intent: valueset-request-intent
REQUEST_STATUS = frozenset("draft active on-hold revoked completed entered-in-error unknown".split())
REQUEST_INTENT = frozenset(
    "proposal plan directive order original-order reflex-order filler-order instance-order option".split()
)

# Judgement calls (what counts as the patient's current list), with their reasons in README.md
# ("FHIR R4 input"):
# - MedicationRequest active, on-hold (held, not stopped: it may resume, so it is still screened) and
#   unknown (the source does not know: screening it errs towards an alert, never towards silence);
#   intents that are prescriptions or plans - not `proposal` or `option`, which nobody has decided.
CURRENT_REQUEST_STATUS = frozenset({"active", "on-hold", "unknown"})
CURRENT_REQUEST_INTENT = frozenset(
    {"plan", "order", "original-order", "reflex-order", "filler-order", "instance-order"}
)
# - MedicationStatement active, intended (about to be taken), on-hold and unknown, as above.
CURRENT_STATEMENT_STATUS = frozenset({"active", "intended", "on-hold", "unknown"})
# - Draft orders (CDS Hooks draftOrders / selections): every order that is still being decided.
DRAFT_ORDER_STATUS = frozenset({"draft", "active", "on-hold", "unknown"})
# - Conditions: active, recurrence, relapse (or no clinical status: unknown is screened); not when
#   verification says refuted or entered-in-error.
CURRENT_CONDITION = frozenset({"active", "recurrence", "relapse"})
EXCLUDED_CONDITION_VERIFICATION = frozenset({"refuted", "entered-in-error"})
# - Allergies: all but clinicalStatus inactive / resolved; verification passed through to the engine.
EXCLUDED_ALLERGY_CLINICAL = frozenset({"inactive", "resolved"})
# - Observations with a result: preliminary results are used (a value to act on), registered,
#   cancelled, entered-in-error and unknown are not.
RESULT_STATUS = frozenset({"preliminary", "final", "amended", "corrected"})
NUTRITION_ORDER_CURRENT = frozenset({"active", "on-hold", "draft", "unknown"})

# AllergyIntolerance.category -> the engine's allergen_category.
ALLERGY_CATEGORY_TO_ENGINE = {"medication": "DRUG", "food": "FOOD", "environment": "ENVIRONMENTAL", "biologic": "OTHER"}
REACTION_SEVERITY_TO_ENGINE = {"mild": "MILD", "moderate": "MODERATE", "severe": "SEVERE"}


@dataclass(frozen=True, slots=True)
class ReadingCode:
    reading_type: str  # the fact model's labs.<type> (rules/README.md)
    units: frozenset[str]  # the canonical UCUM unit and the others the catalog lists as converted
    source: str


# LOINC code -> reading type: the lab catalog's rows (rules/knowledge/labs.yaml, each with its source);
# no second table here. Values are converted to the catalog's canonical unit by engine.labs.
READINGS: dict[str, ReadingCode] = {
    code: ReadingCode(
        row.reading_type,
        frozenset((lab_catalog().types[row.reading_type].unit, *lab_catalog().types[row.reading_type].also)),
        row.source,
    )
    for code, row in lab_catalog().by_loinc.items()
}

# Pregnancy status (an Observation whose value is a coded answer).
# Code: cqframework/cpg-example-anthrax input/fsh/test-cases/observations/observation-31.fsh
# ($loinc#82810-3 "Pregnancy status"); answers: WorldHealthOrganization/smart-example-immz
# input/fsh/valuesets/pregnancystatus-values.fsh (its LOINC and SNOMED CT answers). Licences of
# these rows: tests/data/fhir/SOURCE.md.
PREGNANCY_STATUS = "82810-3"
PREGNANCY_ANSWERS: dict[tuple[str, str], bool | None] = {
    (LOINC, "LA15173-0"): True,  # Pregnant
    (LOINC, "LA26683-5"): False,  # Not pregnant
    (LOINC, "LA4489-6"): None,  # Unknown
    (SNOMED, "77386006"): True,  # Pregnant
    (SNOMED, "60001007"): False,  # Not pregnant
    (SNOMED, "261665006"): None,  # Unknown
}

# Gestational age and estimated delivery date: components of the pregnancy status Observation or
# Observations of their own. Rows: hl7ch/ch-epreg@f9d26d9b input/fsh/examples/ObservationPreg/
# UC1-GestationalAgeInWeeks.fsh ($loinc#49051-6 "Gestational age in weeks", valueQuantity $ucum#wk);
# hl7ch/hl7ch.github.io@1274bb0b ig/ch-epreg/1.0.0/Observation-UC1-GestationalAgeInDays-20250205.md
# (49052-4 "Gestational age in days", UCUM d); HL7/fhir-ips@7bd05b66
# input/fsh/instances/observation-pregnancy-edd-1.fsh ($loinc#11778-8 "Delivery date Estimated",
# valueDateTime), the same code as a pregnancy status component in ch-epreg's UC1 pregnancy status.
GESTATIONAL_AGE_WEEKS = "49051-6"
GESTATIONAL_AGE_DAYS = "49052-4"
GESTATIONAL_AGE_UNITS = {GESTATIONAL_AGE_WEEKS: {"wk": 7.0}, GESTATIONAL_AGE_DAYS: {"d": 1.0}}
ESTIMATED_DELIVERY_DATE = "11778-8"
# Breastfeeding status, valueBoolean: BIH-CEI/medikationsplan@a640f37d input/fsh/Observation-stillzeit.fsh
# (profile "Breastfeeding": code.coding[loinc] = $loinc#63895-7, value[x] only boolean). No public
# row we read gives coded answers for it, so only valueBoolean is read (anything else is noted).
BREASTFEEDING_STATUS = "63895-7"

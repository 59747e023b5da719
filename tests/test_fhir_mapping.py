"""FHIR R4 in (engine.fhir): resources -> engine facts, the statuses, Medications, errors, fuzzing."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.fhir import FhirError, PatientData, dosage_text, iter_ndjson, parse_draft_orders, parse_patient_data
from engine.fhir._read import Node
from engine.identity import Coding

DATA = Path(__file__).parent / "data" / "fhir"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
# RXCUIs as the Synthea fixtures carry them (tests/data/fhir/SOURCE.md)
WARFARIN_5MG = "855332"
HCTZ_25MG = "316049"
DIGOXIN = "197604"
# Codes only from sources: RXCUIs of rules/knowledge/rxnorm.tsv (penicillin G, lisinopril,
# hydrochlorothiazide), an NDC of rules/knowledge/rxnorm_ndc.tsv.gz, ICD-10 I10 of
# rules/knowledge/vocabulary.yaml (hypertension), SNOMED CT hypertension of the Synthea fixture.
PENICILLIN_G = "7980"
LISINOPRIL = "29046"
HCTZ = "5487"
NDC_ZEPBOUND = "00002-0152-01"  # rxnorm_ndc.tsv.gz row 00002015201
HYPERTENSION_ICD10 = "I10"
HYPERTENSION_SNOMED = "38341003"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-06-15", **extra}


def med_request(rid: str = "m1", *, status: str = "active", intent: str = "order", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": intent,
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": WARFARIN_5MG, "display": "Warfarin Sodium 5 MG Oral Tablet"}],
            "text": "Warfarin Sodium 5 MG Oral Tablet",
        },
    }
    resource.update(extra)
    return resource


def bundle(*resources: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


def error_of(doc: Any, **kw: Any) -> FhirError:
    with pytest.raises(FhirError) as caught:
        parse_patient_data(doc, **kw)
    return caught.value


# --------------------------------------------------------------------------------------------------
# Synthea patients, counted by hand from the trimmed bundles (SOURCE.md)


def test_synthea_dennis_durgan_maps_every_resource_type() -> None:
    data = parse_patient_data(load("synthea-dennis-durgan.json"))
    assert data.counts == {
        "AllergyIntolerance": 4,
        "Condition": 9,
        "MedicationRequest": 6,
        "Observation": 39,
        "Patient": 1,
    }
    assert data.patient_ref == "Patient/0ac13d55-d566-450a-aea0-f6a71f1ad73b"
    assert (data.sex, data.birth_date) == ("male", date(1949, 4, 19))
    # 6 MedicationRequests, all active orders
    assert len(data.medications) == 6
    assert {m.coding for m in data.medications} == {
        Coding("rxnorm", c) for c in ("1049630", "316049", "849574", "866414", "315971", "1719286")
    }
    metoprolol = next(m for m in data.medications if m.coding == Coding("rxnorm", "866414"))
    assert (metoprolol.dose, metoprolol.frequency, metoprolol.proposed) == ("1", "1 per 1 d", False)
    diphenhydramine = next(m for m in data.medications if m.coding == Coding("rxnorm", "1049630"))
    assert diphenhydramine.frequency == "prn"
    # 4 food allergies, active and confirmed
    first = data.allergies[0]
    assert (first.allergen, first.category, first.criticality, first.verification, first.type) == (
        "Allergy to tree pollen",
        "FOOD",
        "low",
        "confirmed",
        "allergy",
    )
    assert len(data.allergies) == 4
    # 9 conditions, 2 of them resolved (viral sinusitis twice)
    assert len(data.conditions) == 7
    assert "Viral sinusitis (disorder)" not in {c.name for c in data.conditions}
    hypertension = next(c for c in data.conditions if c.name == "Hypertension")
    assert hypertension.codings == (Coding("snomed", HYPERTENSION_SNOMED),)
    snapshot = data.snapshot("pat-1", "tenant-1", on=date(2008, 11, 12))
    assert snapshot.age == 59
    labs = {b.reading_type: b for b in snapshot.biometrics}
    assert set(labs) == {
        "albumin",
        "alt",
        "ast",
        "bilirubin",
        "creatinine",
        "diastolic_bp",
        "egfr",
        "glucose",
        "height_cm",
        "hemoglobin",
        "platelets",
        "potassium",
        "sodium",
        "systolic_bp",
        "wbc",
        "weight_kg",
    }
    # Stored in the lab catalog's canonical unit: Synthea's eGFR "mL/min" is per 1.73 m2 already.
    assert labs["egfr"].code == "33914-3" and labs["egfr"].unit == "mL/min/{1.73_m2}"
    assert round(labs["egfr"].value, 2) == 19.84
    assert labs["egfr"].observed_at == datetime(2008, 11, 10, 12, 17, 10, tzinfo=UTC)
    assert round(labs["systolic_bp"].value) == 171
    assert labs["systolic_bp"].id.endswith(".component[1]")


def test_synthea_douglas_walsh_stopped_orders_are_not_current() -> None:
    data = parse_patient_data(load("synthea-douglas-walsh.json"))
    assert data.counts["MedicationRequest"] == 11
    assert len(data.medications) == 8  # 3 stopped: acetaminophen, a carbamazepine, clonazepam
    assert Coding("rxnorm", "1153378") not in {m.coding for m in data.medications}  # clonazepam, stopped
    assert Coding("rxnorm", "308971") in {m.coding for m in data.medications}  # carbamazepine, one active
    assert len(data.conditions) == 7  # 10, 3 resolved
    # One blood pressure panel has components without a unit: not used, and said so.
    assert any("8480-6" in note and "no unit" in note for note in data.notes)


def test_synthea_cleo_friesen_warfarin_and_egfr_per_body_surface() -> None:
    data = parse_patient_data(load("synthea-cleo-friesen.json"))
    assert {m.coding for m in data.medications} >= {
        Coding("rxnorm", WARFARIN_5MG),
        Coding("rxnorm", DIGOXIN),
        Coding("rxnorm", HCTZ_25MG),
    }
    assert len(data.medications) == 6
    egfr = [b for b in data.readings if b.reading_type == "egfr"]
    assert [b.unit for b in egfr] == ["mL/min/{1.73_m2}"]
    assert data.snapshot("x", "t", on=date(1991, 4, 1)).age == 70


def test_bulk_ndjson_across_files_with_a_bundled_medication() -> None:
    lines = [
        x
        for f in sorted((DATA / "bulk").glob("*.ndjson"))
        for x in iter_ndjson(f.read_text().splitlines(), source=f.name)
    ]
    # Two patients in the files: without saying which, that is refused
    err = error_of(lines)
    assert err.path == "Patient.000.ndjson line 2 Patient"
    assert "second Patient" in err.problem
    data = parse_patient_data(lines, patient="7bc002fa-dc52-17d6-1563-fd8901826f7d")
    assert data.counts == {
        "Condition": 23,
        "Condition (other patients)": 6,
        "Medication": 4,
        "MedicationRequest": 9,
        "MedicationRequest (other patients)": 3,
        "Patient": 1,
        "Patient (other patients)": 1,
    }
    assert [m.coding for m in data.medications] == [Coding("rxnorm", "314231")]  # simvastatin, the one active
    # A stopped request with a bundled Medication, made active: its coding comes from the Medication
    reference = next(
        json.loads(text)
        for text in (DATA / "bulk" / "MedicationRequest.000.ndjson").read_text().splitlines()
        if "medicationReference" in text and "7bc002fa" in text
    )
    reference["status"] = "active"
    medications = [json.loads(t) for t in (DATA / "bulk" / "Medication.000.ndjson").read_text().splitlines()]
    data = parse_patient_data([reference, *medications])
    target = next(m for m in medications if f"Medication/{m['id']}" == reference["medicationReference"]["reference"])
    assert data.medications[0].coding == Coding("rxnorm", target["code"]["coding"][0]["code"])
    assert data.medications[0].id == f"MedicationRequest/{reference['id']}"


# --------------------------------------------------------------------------------------------------
# Statuses


@pytest.mark.parametrize(
    ("status", "intent", "current"),
    [
        ("active", "order", True),
        ("on-hold", "order", True),
        ("unknown", "order", True),
        ("active", "plan", True),
        ("active", "original-order", True),
        ("active", "proposal", False),
        ("active", "option", False),
        ("stopped", "order", False),
        ("completed", "order", False),
        ("cancelled", "order", False),
        ("entered-in-error", "order", False),
        ("draft", "order", False),
    ],
)
def test_medication_request_status_and_intent(status: str, intent: str, current: bool) -> None:
    data = parse_patient_data(bundle(patient(), med_request(status=status, intent=intent)))
    assert bool(data.medications) is current


@pytest.mark.parametrize(
    ("status", "current"),
    [
        ("active", True),
        ("intended", True),
        ("on-hold", True),
        ("unknown", True),
        ("completed", False),
        ("stopped", False),
        ("not-taken", False),
        ("entered-in-error", False),
    ],
)
def test_medication_statement_status(status: str, current: bool) -> None:
    statement = med_request("s1", status=status)
    statement["resourceType"] = "MedicationStatement"
    del statement["intent"]
    statement["dosage"] = [{"text": "one tablet daily"}]
    data = parse_patient_data(bundle(patient(), statement))
    assert bool(data.medications) is current
    if current:
        assert data.medications[0].id == "MedicationStatement/s1"
        assert data.medications[0].dose == "one tablet daily"


def test_medication_request_status_outside_its_value_set_names_the_path() -> None:
    err = error_of(bundle(patient(), med_request(status="activ")))
    assert err.path == "Bundle.entry[1].resource.status"
    assert err.problem.startswith("not in the required value set (active, cancelled")
    assert str(err) == f"{err.path}: {err.problem}"


def allergy(
    rid: str = "a1", clinical: str | None = "active", verification: str | None = "confirmed", **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": rid,
        "patient": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": RXNORM, "code": PENICILLIN_G, "display": "Penicillin G"}]},
    }
    if clinical:
        resource["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    if verification:
        resource["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
    resource.update(extra)
    return resource


@pytest.mark.parametrize(
    ("clinical", "kept"), [("active", True), ("inactive", False), ("resolved", False), (None, True)]
)
def test_allergy_clinical_status(clinical: str | None, kept: bool) -> None:
    data = parse_patient_data(bundle(patient(), allergy(clinical=clinical)))
    assert bool(data.allergies) is kept


@pytest.mark.parametrize("verification", ["confirmed", "unconfirmed", "presumed", "refuted", "entered-in-error"])
def test_allergy_verification_is_passed_through(verification: str) -> None:
    doc = bundle(patient(), allergy(verification=verification, clinical=None))
    if verification == "presumed":  # R4's value set has no "presumed" (R5 does)
        assert error_of(doc).path == "Bundle.entry[1].resource.verificationStatus.coding[0].code"
        return
    assert parse_patient_data(doc).allergies[0].verification == verification


def test_allergy_semantics_category_severity_reactions() -> None:
    resource = allergy(
        type="allergy",
        category=["medication"],
        criticality="high",
        reaction=[
            {
                "severity": "moderate",
                "manifestation": [{"text": "Hives"}],
            },
            {"severity": "severe", "manifestation": [{"text": "Anaphylaxis"}]},
        ],
    )
    fact = parse_patient_data(bundle(patient(), resource)).allergies[0]
    assert (fact.id, fact.allergen, fact.coding) == (
        "AllergyIntolerance/a1",
        "Penicillin G",
        Coding("rxnorm", PENICILLIN_G),
    )
    assert (fact.category, fact.type, fact.criticality, fact.severity) == ("DRUG", "allergy", "high", "SEVERE")
    assert fact.reactions == ("Hives", "Anaphylaxis")
    for category, engine in (
        (["food"], "FOOD"),
        (["environment"], "ENVIRONMENTAL"),
        (["biologic"], "OTHER"),
        (["food", "medication"], None),
    ):
        assert parse_patient_data(allergy(category=category)).allergies[0].category == engine


def test_allergy_status_from_another_code_system_is_refused() -> None:
    resource = allergy()
    resource["clinicalStatus"]["coding"][0]["system"] = CONDITION_CLINICAL
    err = error_of(resource)
    assert err.path == "AllergyIntolerance.clinicalStatus.coding"
    assert CLINICAL in err.problem


def condition(
    rid: str, codings: list[dict[str, str]], clinical: str | None = "active", verification: str | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": codings},
    }
    if clinical:
        resource["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL, "code": clinical}]}
    if verification:
        resource["verificationStatus"] = {"coding": [{"system": CONDITION_VERIFICATION, "code": verification}]}
    return resource


@pytest.mark.parametrize(
    ("clinical", "verification", "kept"),
    [
        ("active", None, True),
        ("recurrence", None, True),
        ("relapse", None, True),
        ("inactive", None, False),
        ("remission", None, False),
        ("resolved", None, False),
        (None, None, True),
        ("active", "refuted", False),
        ("active", "entered-in-error", False),
        ("active", "provisional", True),
    ],
)
def test_condition_statuses(clinical: str | None, verification: str | None, kept: bool) -> None:
    resource = condition(
        "c1", [{"system": SNOMED, "code": HYPERTENSION_SNOMED, "display": "Hypertension"}], clinical, verification
    )
    assert bool(parse_patient_data(resource).conditions) is kept


def test_condition_icd10cm_is_the_code_snomed_kept_beside_it() -> None:
    resource = condition(
        "c1",
        [
            {"system": SNOMED, "code": HYPERTENSION_SNOMED, "display": "Hypertension"},
            {"system": ICD10CM, "code": HYPERTENSION_ICD10.lower()},
        ],
    )
    fact = parse_patient_data(resource).conditions[0]
    assert (fact.id, fact.name, fact.code) == ("Condition/c1", "Hypertension", "I10")
    assert fact.codings == (Coding("icd10", HYPERTENSION_ICD10), Coding("snomed", HYPERTENSION_SNOMED))


# --------------------------------------------------------------------------------------------------
# Medications: contained, bundled, combinations, unknown codes


def medication(rid: str, **body: Any) -> dict[str, Any]:
    return {"resourceType": "Medication", "id": rid, **body}


def by_reference(reference: str, **extra: Any) -> dict[str, Any]:
    request = med_request(**extra)
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {"reference": reference}
    return request


CODE_HCTZ = {"coding": [{"system": RXNORM, "code": HCTZ_25MG, "display": "Hydrochlorothiazide 25 MG"}]}


def test_contained_medication() -> None:
    request = by_reference("#med", contained=[medication("med", code=CODE_HCTZ)])
    fact = parse_patient_data(request).medications[0]
    assert (fact.id, fact.coding, fact.name) == (
        "MedicationRequest/m1",
        Coding("rxnorm", HCTZ_25MG),
        "Hydrochlorothiazide 25 MG",
    )


@pytest.mark.parametrize("reference", ["Medication/med", "urn:uuid:5e0e", "https://ehr.example/fhir/Medication/med"])
def test_bundled_medication(reference: str) -> None:
    doc: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": med_request() | {"medicationReference": {"reference": reference}}},
            {"fullUrl": "urn:uuid:5e0e", "resource": medication("med", code=CODE_HCTZ)},
        ],
    }
    del doc["entry"][0]["resource"]["medicationCodeableConcept"]
    assert parse_patient_data(doc).medications[0].coding == Coding("rxnorm", HCTZ_25MG)


def test_medication_reference_that_resolves_to_nothing() -> None:
    err = error_of(bundle(patient(), by_reference("Medication/absent")))
    assert (err.path, err.problem) == (
        "Bundle.entry[1].resource.medicationReference.reference",
        "resolves to no Medication in the input",
    )
    err = error_of(by_reference("#nothing", contained=[medication("med", code=CODE_HCTZ)]))
    assert (err.path, err.problem) == (
        "MedicationRequest.medicationReference.reference",
        "resolves to no contained Medication",
    )
    err = error_of([patient(), by_reference("Patient/p1")])
    assert (err.path, err.problem) == (
        "[1] MedicationRequest.medicationReference.reference",
        "resolves to a resource that is not a Medication",
    )


def ingredient(code: str | None, name: str | None) -> dict[str, Any]:
    cc: dict[str, Any] = {}
    if code:
        cc["coding"] = [{"system": RXNORM, "code": code}]
    if name:
        cc["text"] = name
    return {"itemCodeableConcept": cc}


def test_combination_product_by_ingredients() -> None:
    combo = medication(
        "combo", ingredient=[ingredient(LISINOPRIL, "lisinopril"), ingredient(HCTZ, "hydrochlorothiazide")]
    )
    fact = parse_patient_data(by_reference("#combo", contained=[combo])).medications[0]
    # The engine takes one code per medication: the ingredients go by name, split there by its grammar.
    assert (fact.name, fact.coding) == ("lisinopril / hydrochlorothiazide", None)
    single = medication("one", ingredient=[ingredient(LISINOPRIL, "lisinopril")])
    assert parse_patient_data(by_reference("#one", contained=[single])).medications[0].coding == Coding(
        "rxnorm", LISINOPRIL
    )
    # A product code covers every ingredient and wins
    both = medication("both", code=CODE_HCTZ, ingredient=[ingredient(LISINOPRIL, "lisinopril"), ingredient(HCTZ, None)])
    assert parse_patient_data(by_reference("#both", contained=[both])).medications[0].coding == Coding(
        "rxnorm", HCTZ_25MG
    )
    # An ingredient with neither code nor name: nothing to screen
    err = error_of(by_reference("#bad", contained=[medication("bad", ingredient=[{"itemCodeableConcept": {}}])]))
    assert err.path == "MedicationRequest.contained[0].ingredient[0].itemCodeableConcept"


def test_unknown_code_system_is_kept_for_the_engine_to_report() -> None:
    request = med_request(medicationCodeableConcept={"coding": [{"system": "urn:oid:1.2.3", "code": "X9"}]})
    fact = parse_patient_data(request).medications[0]
    assert (fact.name, fact.coding) == ("urn:oid:1.2.3|X9", None)  # unresolved, so the answer is incomplete
    err = error_of(med_request(medicationCodeableConcept={"coding": []}))
    assert err.path == "MedicationRequest.medicationCodeableConcept"


def test_malformed_rxnorm_code_names_the_coding() -> None:
    request = med_request(medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "Gerlach374"}]})
    err = error_of(bundle(patient(), request))
    assert (err.path, err.problem) == (
        "Bundle.entry[1].resource.medicationCodeableConcept.coding[0].code",
        "not a valid rxnorm code",
    )


def test_ndc_coding() -> None:
    request = med_request(
        medicationCodeableConcept={"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": NDC_ZEPBOUND}]}
    )
    assert parse_patient_data(request).medications[0].coding == Coding("ndc", "00002015201")


# --------------------------------------------------------------------------------------------------
# Dosage


def test_dosage_text() -> None:
    dosage = {
        "sequence": 1,
        "route": {"coding": [{"display": "Oral route"}]},
        "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg", "system": UCUM, "code": "mg"}}],
    }
    fact = parse_patient_data(med_request(dosageInstruction=[dosage])).medications[0]
    assert (fact.dose, fact.route, fact.frequency) == ("10 mg", "Oral route", "2 per 1 d")
    ranged = {
        "doseAndRate": [{"doseRange": {"low": {"value": 1, "unit": "tablet"}, "high": {"value": 2, "unit": "tablet"}}}],
        "timing": {"code": {"text": "BID"}},
        "asNeededBoolean": True,
        "route": {"text": "oral"},
    }
    text = dosage_text([Node(ranged, "Dosage")])
    assert (text.dose, text.route, text.frequency) == ("1-2 tablet", "oral", "BID, prn")
    assert dosage_text([Node({"asNeededCodeableConcept": {"text": "pain"}}, "Dosage")]).frequency == "prn"
    err = error_of(med_request(dosageInstruction=[{"timing": {"repeat": {"period": 1, "periodUnit": "day"}}}]))
    assert err.path == "MedicationRequest.dosageInstruction[0].timing.repeat.periodUnit"


# --------------------------------------------------------------------------------------------------
# Observations, pregnancy, patient, foods


def observation(rid: str, code: str, value: Any = None, status: str = "final", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": LOINC, "code": code}]},
        **extra,
    }
    if value is not None:
        resource["valueQuantity"] = value
    return resource


def egfr(value: float, unit: str = "mL/min/{1.73_m2}", **extra: Any) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit, **extra}


def test_observations_latest_reading_units_comparators_statuses() -> None:
    doc = bundle(
        patient(),
        observation("o1", "33914-3", egfr(40), effectiveDateTime="2024-01-01T08:00:00Z"),
        observation("o2", "33914-3", egfr(25), effectivePeriod={"start": "2024-03-01", "end": "2024-03-02"}),
        observation("o3", "33914-3", egfr(90), status="cancelled", effectiveDateTime="2024-06-01"),
        observation("o4", "33914-3", egfr(60, comparator=">"), effectiveDateTime="2024-07-01"),
        observation("o5", "6298-4", egfr(5.9, unit="mg/dL"), effectiveDateTime="2024-07-01"),
        observation("o6", "72166-2", None, valueCodeableConcept={"text": "Never smoker"}),
    )
    data = parse_patient_data(doc)
    labs = {b.reading_type: b for b in data.snapshot("p", "t", on=date(2024, 8, 1)).biometrics}
    assert list(labs) == ["egfr"]
    assert (labs["egfr"].id, labs["egfr"].value) == ("Observation/o2", 25.0)
    assert labs["egfr"].observed_at == datetime(2024, 3, 2, tzinfo=UTC)
    assert len(data.readings) == 2
    assert any(n.startswith("Observation/o4:") and "comparator" in n for n in data.notes)
    assert any(n.startswith("Observation/o5:") and "not a unit of potassium" in n for n in data.notes)
    err = error_of(observation("o7", "33914-3", egfr(40), effectiveDateTime="2024-13-01"))
    assert err.path == "Observation.effectiveDateTime"


@pytest.mark.parametrize(
    ("system", "code", "pregnant"),
    [
        (LOINC, "LA15173-0", True),
        (LOINC, "LA26683-5", False),
        (LOINC, "LA4489-6", None),
        (SNOMED, "77386006", True),
        (SNOMED, "60001007", False),
    ],
)
def test_pregnancy_status(system: str, code: str, pregnant: bool | None) -> None:
    old = observation(
        "old",
        "82810-3",
        valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA15173-0"}]},
        effectiveDateTime="2020-01-01",
    )
    new = observation(
        "new",
        "82810-3",
        valueCodeableConcept={"coding": [{"system": system, "code": code}]},
        effectiveDateTime="2024-01-01",
    )
    data = parse_patient_data(bundle(patient(), new, old))
    assert data.pregnant is pregnant
    assert data.snapshot("p", "t", on=date(2024, 2, 1)).pregnant is pregnant


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        ("1980-06-15", date(2024, 6, 14), 43),
        ("1980-06-15", date(2024, 6, 15), 44),
        ("1980-06", date(2024, 7, 1), 44),
        ("1980-06", date(2024, 6, 20), None),
        ("1980", date(2024, 6, 1), None),
        ("2030-01-01", date(2024, 1, 1), None),
    ],
)
def test_age_from_birth_date(birth: str, on: date, age: int | None) -> None:
    data = parse_patient_data(patient(birthDate=birth))
    assert data.snapshot("p", "t", on=on).age == age
    assert data.birth_date == (date.fromisoformat(birth) if len(birth) == 10 else None)


def test_patient_errors() -> None:
    assert error_of(patient(gender="F")).path == "Patient.gender"
    assert error_of(patient(birthDate="15/06/1980")).path == "Patient.birthDate"
    assert error_of(patient(birthDate="1980-02-30")).problem == "not a calendar date"
    two = bundle(patient(), patient(id="p2"))
    assert (error_of(two).path, error_of(two).problem) == (
        "Bundle.entry[1].resource",
        "a second Patient: one patient per request",
    )
    other = med_request(subject={"reference": "Patient/p2"})
    err = error_of(bundle(patient(), other))
    assert err.path == "Bundle.entry[1].resource.subject.reference"
    assert parse_patient_data(bundle(patient(), other), patient="p1").medications == ()


def test_nutrition_order_foods() -> None:
    order = {
        "resourceType": "NutritionOrder",
        "id": "n1",
        "status": "active",
        "intent": "order",
        "patient": {"reference": "Patient/p1"},
        "dateTime": "2024-01-01",
        "oralDiet": {"type": [{"text": "Low sodium diet"}]},
        "supplement": [{"productName": "Grapefruit juice"}],
    }
    assert parse_patient_data(bundle(patient(), order)).foods == ("Low sodium diet", "Grapefruit juice")
    order["status"] = "completed"
    assert parse_patient_data(bundle(patient(), order)).foods == ()


# --------------------------------------------------------------------------------------------------
# Draft orders (CDS Hooks)


def test_draft_orders() -> None:
    draft = med_request("d1", status="draft", dosageInstruction=[{"text": "5 mg daily"}])
    done = med_request("d2", status="completed")
    service = {"resourceType": "ServiceRequest", "id": "s1", "status": "draft", "intent": "order"}
    contained = by_reference("#m", status="draft", contained=[medication("m", code=CODE_HCTZ)])
    contained["id"] = "d3"
    facts = parse_draft_orders(bundle(draft, done, service, contained))
    assert [(f.id, f.proposed, f.coding) for f in facts] == [
        ("MedicationRequest/d1", True, Coding("rxnorm", WARFARIN_5MG)),
        ("MedicationRequest/d3", True, Coding("rxnorm", HCTZ_25MG)),
    ]
    assert facts[0].dose == "5 mg daily"
    assert parse_draft_orders([draft])[0].id == "MedicationRequest/d1"  # selections' resources
    nameless = med_request(status="draft")
    del nameless["id"]
    with pytest.raises(FhirError) as caught:
        parse_draft_orders(bundle(nameless))
    assert (caught.value.path, caught.value.problem) == ("Bundle.entry[0].resource.id", "required")


# --------------------------------------------------------------------------------------------------
# Errors: shapes, paths, several at once, no PHI


def test_error_paths_and_several_issues() -> None:
    assert error_of({"resourceType": "Bundle", "type": "list"}).path == "Bundle.type"
    assert error_of({"resourceType": "Bundle", "type": "collection", "entry": {}}).path == "Bundle.entry"
    assert error_of("a string").path == "(input)"
    assert error_of([{"id": "x"}]).path == "[0] (resource).resourceType"
    no_intent = med_request("m2")
    del no_intent["intent"]
    bad = bundle(
        patient(),
        med_request(status="x"),
        no_intent,
        med_request("m3", medicationCodeableConcept={"coding": [{"system": 3, "code": "1"}]}),
    )
    err = error_of(bad)
    assert [str(i) for i in err.issues] == [
        "Bundle.entry[1].resource.status: not in the required value set (active, cancelled, completed, draft,"
        " entered-in-error, on-hold, stopped, unknown)",
        "Bundle.entry[2].resource.intent: required",
        "Bundle.entry[3].resource.medicationCodeableConcept.coding[0].system: expected a string, got a number",
    ]
    assert (err.path, err.problem) == (err.issues[0].path, err.issues[0].problem)


def test_ndjson_line_numbers() -> None:
    lines = [json.dumps(patient()), "", "{not json", json.dumps(med_request())]
    with pytest.raises(FhirError) as caught:
        list(iter_ndjson(lines, source="MedicationRequest.ndjson"))
    assert caught.value.path == "MedicationRequest.ndjson line 3"
    lines[2] = json.dumps(med_request("m2", status="bad"))
    err = error_of(list(iter_ndjson(lines)))
    assert err.path == "line 3 MedicationRequest.status"


def test_errors_never_echo_values() -> None:
    name = "Lindsay928 Gerlach374"
    doc = bundle(
        patient(name=[{"family": name}]),
        med_request(status=name),
        med_request("m2", medicationCodeableConcept={"coding": [{"system": RXNORM, "code": name}]}),
        allergy(clinical=None, verification=None, type=name),
        observation("o1", "33914-3", egfr(40), effectiveDateTime=name),
    )
    err = error_of(doc)
    assert len(err.issues) == 4
    assert all("Lindsay" not in str(i) and "Gerlach" not in str(i) for i in err.issues)
    assert "Lindsay" not in str(err)


# --------------------------------------------------------------------------------------------------
# Fuzzing: mutated bundles and random JSON -> PatientData or FhirError, never another exception

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
SEED = load("synthea-dennis-durgan.json")
SEED["entry"] = SEED["entry"][:25]
SEED["entry"].append(
    {
        "resource": by_reference(
            "#c", contained=[medication("c", code=CODE_HCTZ)], subject={"reference": SEED["entry"][0]["fullUrl"]}
        )
    }
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_paths(item, (*prefix, i)))
    return out


PATHS = _paths(SEED)


def _outcome(doc: Any) -> None:
    try:
        result = parse_patient_data(doc)
        assert isinstance(result, PatientData)
    except FhirError as exc:
        assert exc.path and exc.problem and 1 <= len(exc.issues) <= 10
    try:
        parse_draft_orders(doc)
    except FhirError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), JSON, st.booleans()), min_size=1, max_size=4))
def test_fuzz_mutated_bundles(mutations: list[tuple[tuple[Any, ...], Any, bool]]) -> None:
    doc = copy.deepcopy(SEED)
    for path, value, delete in mutations:
        if not path:
            doc = value
            continue
        holder: Any = doc
        try:
            for key in path[:-1]:
                holder = holder[key]
            if delete and isinstance(holder, dict):
                holder.pop(path[-1], None)
            else:
                holder[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    _outcome(doc)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_fuzz_random_json(doc: Any) -> None:
    _outcome(doc)
    _outcome({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": doc}]})
    _outcome(
        [
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                **(doc if isinstance(doc, dict) else {}),
            }
        ]
    )


def test_observations_are_converted_to_the_catalog_units() -> None:
    def quantity(value: float, code: str) -> dict[str, Any]:
        return {"value": value, "unit": code, "system": UCUM, "code": code}

    doc = bundle(
        patient(),
        observation("c", "2160-0", quantity(176.8, "umol/L"), effectiveDateTime="2024-07-01"),
        observation("g", "2345-7", quantity(5.5, "mmol/L"), effectiveDateTime="2024-07-01"),
        observation("p", "26515-7", quantity(45, "K/uL"), effectiveDateTime="2024-07-01"),
        observation("m", "19123-9", quantity(0.5, "mmol/L"), effectiveDateTime="2024-07-01"),
        observation("i", "34714-6", quantity(3.2, "{INR}"), effectiveDateTime="2024-07-01"),
        observation("q", "8636-3", quantity(0.51, "s"), effectiveDateTime="2024-07-01"),
    )
    labs = {b.reading_type: b for b in parse_patient_data(doc).snapshot("p", "t", on=date(2024, 8, 1)).biometrics}
    assert {k: (round(b.value, 2), b.unit) for k, b in labs.items()} == {
        "creatinine": (2.0, "mg/dL"),
        "glucose": (99.09, "mg/dL"),
        "platelets": (45.0, "10*3/uL"),
        "magnesium": (1.22, "mg/dL"),
        "inr": (3.2, "{INR}"),
        "qtc": (510.0, "ms"),
    }
    assert labs["qtc"].code == "8636-3" and labs["qtc"].observed_at == datetime(2024, 7, 1, tzinfo=UTC)


def test_an_implausible_observation_is_refused_naming_its_element() -> None:
    # A creatinine in umol/L sent as mg/dL: 88 mg/dL is no patient's; refused, never silently dropped.
    doc = bundle(
        patient(),
        observation("c", "2160-0", {"value": 88, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}),
    )
    with pytest.raises(FhirError) as caught:
        parse_patient_data(doc)
    assert caught.value.path.endswith("valueQuantity.value")
    assert "plausible range for creatinine" in caught.value.problem
    assert "88" not in str(caught.value)

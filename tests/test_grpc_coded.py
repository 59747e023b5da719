"""Coded drugs over gRPC and in the store, and fail-closed recognition on the wire and in the audit.

A real server over TLS and PostgreSQL as praneya_app (tests/fix_grpc.py). Codes come from the shipped
RxNorm concept table (rules/knowledge/rxnorm.tsv, rxnorm_ndc.tsv.gz), never typed here. The server's
vocabulary may or may not hold that table yet: a code it does not know falls back to the name it
travels with (with a note) and, alone, is unresolved; the tests below hold either way.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.verify import signed_content, verify_response
from engine.identity import Coding
from store import patients
from store.config import PROJECT_ROOT
from store.keys import KeyStore
from tests.fix_grpc import Service
from tests.test_grpc_service import ADVISOR, SPOUSE, TENANT, admin_exec, audit_row, audit_rows_for, evaluate, fail

pytestmark = pytest.mark.db

KNOWLEDGE = PROJECT_ROOT / "rules" / "knowledge"
RXNORM_URI = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC_URI = "http://hl7.org/fhir/sid/ndc"


@cache
def rxnorm_ingredient(name: str) -> str:
    """The RXCUI of an ingredient (TTY IN), read from the shipped concept table."""
    with (KNOWLEDGE / "rxnorm.tsv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["tty"] == "IN" and row["name"] == name and row["active"] == "1":
                return row["code"]
    raise AssertionError(f"{name} is not an ingredient of rules/knowledge/rxnorm.tsv")


@cache
def ndc_of(ingredient_code: str) -> str:
    """An active NDC of a single-ingredient product of that ingredient, from the shipped NDC table."""
    with gzip.open(KNOWLEDGE / "rxnorm_ndc.tsv.gz", "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["ingredients"] == ingredient_code and row["active"] == "1":
                return row["code"]
    raise AssertionError(f"no NDC of ingredient {ingredient_code} in rules/knowledge/rxnorm_ndc.tsv.gz")


def holds_token(haystack: str, token: str) -> bool:
    # A code as a whole token: short RXCUIs can occur by chance inside uuids, hashes and durations.
    return re.search(rf"(?<![\w.]){re.escape(token)}(?![\w.])", haystack) is not None


def audit_text(row: dict[str, Any]) -> str:
    details = {k: v for k, v in row["details"].items() if k != "sealed_rules"}  # ciphertext
    return json.dumps({**row, "details": details}, default=str)


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()


def profile(stub: Any, svc: Service, patient: str) -> Any:
    return stub.GetHealthProfile(pb.GetHealthProfileRequest(patient_id=patient), metadata=svc.md(ADVISOR), timeout=15)


def put_med(stub: Any, svc: Service, patient: str, **med: Any) -> str:
    return str(
        stub.PutMedication(
            pb.PutMedicationRequest(patient_id=patient, medication=pb.Medication(**med)),
            metadata=svc.md(ADVISOR),
            timeout=15,
        ).id
    )


def put_allergy(stub: Any, svc: Service, patient: str, **allergy: Any) -> str:
    return str(
        stub.PutAllergy(
            pb.PutAllergyRequest(patient_id=patient, allergy=pb.Allergy(**allergy)),
            metadata=svc.md(ADVISOR),
            timeout=15,
        ).id
    )


def unresolved_of(resp: Any, item_id: str) -> list[Any]:
    return [u for u in resp.unresolved_items if u.item_id == item_id]


def signed(stub: Any, svc: Service, resp: Any, patient_id: str = SPOUSE) -> dict[str, Any]:
    """The signed content of `resp`, after verifying it as a client does."""
    key = stub.GetSigningKey(pb.GetSigningKeyRequest(), metadata=svc.md(ADVISOR), timeout=15)
    assert verify_response(resp, key.public_key, patient_id)
    return signed_content(resp, patient_id)


# -- EvaluateSafety ----------------------------------------------------------------------------------


def test_a_coded_proposed_medication(svc: Service, stub: Any) -> None:
    """Phenelzine by RxNorm code for the spouse, who takes sertraline: the serotonin alert."""
    code = rxnorm_ingredient("phenelzine")

    def serotonin(resp: Any) -> list[Any]:
        return [
            a
            for a in resp.alerts
            if a.severity == pb.CRITICAL and "proposed:0" in a.involved_item_ids and "serotonin" in a.summary.lower()
        ]

    # Coded and named: the code wins when the vocabulary knows it, the name carries it otherwise.
    both = evaluate(
        stub,
        svc,
        SPOUSE,
        ADVISOR,
        proposed_medications=[
            pb.ProposedMedication(name="phenelzine", coding=pb.Coding(system=RXNORM_URI, code=code, display="x"))
        ],
    )
    assert serotonin(both), [a.summary for a in both.alerts]
    assert unresolved_of(both, "proposed:0") == []

    # The code alone, with the short system name.
    alone = evaluate(
        stub,
        svc,
        SPOUSE,
        ADVISOR,
        proposed_medications=[pb.ProposedMedication(coding=pb.Coding(system="rxnorm", code=code))],
    )
    items = unresolved_of(alone, "proposed:0")
    if items:  # the vocabulary does not hold the concept table: unresolved, never guessed
        [item] = items
        assert (item.kind, item.reason, item.text) == (pb.MEDICATION, pb.UNRECOGNISED, f"rxnorm:{code}")
        assert any("unknown code" in n for n in item.notes), list(item.notes)
        assert alone.complete is False
    else:
        assert serotonin(alone), [a.summary for a in alone.alerts]
    doc = signed(stub, svc, alone)
    assert doc["vocabulary_version"] == alone.vocabulary_version
    assert [u["item_id"] for u in doc["unresolved_items"]] == [u.item_id for u in alone.unresolved_items]


def test_an_unrecognised_proposed_drug_is_named_and_makes_the_evaluation_incomplete(svc: Service, stub: Any) -> None:
    before = evaluate(stub, svc, SPOUSE, ADVISOR)
    resp = evaluate(stub, svc, SPOUSE, ADVISOR, proposed_medications=[pb.ProposedMedication(name="zzqx")])
    assert resp.complete is False
    [item] = unresolved_of(resp, "proposed:0")
    assert (item.kind, item.reason, item.text, list(item.parts)) == (pb.MEDICATION, pb.UNRECOGNISED, "zzqx", ["zzqx"])
    assert list(item.suggestions) == []
    [info] = [a for a in resp.alerts if a.rule_id == "kb:vocabulary" and "proposed:0" in a.involved_item_ids]
    assert info.severity == pb.INFO and not info.interruptive and "zzqx" in info.summary
    # Nothing else changed: the record's own items resolve as they did without the proposal.
    assert [u.item_id for u in resp.unresolved_items if u.item_id != "proposed:0"] == [
        u.item_id for u in before.unresolved_items
    ]

    # The signature covers what was not screened.
    doc = signed(stub, svc, resp)
    mine = [u for u in doc["unresolved_items"] if u["item_id"] == "proposed:0"]
    assert mine == [
        {
            "item_id": "proposed:0",
            "kind": "MEDICATION",
            "reason": "UNRECOGNISED",
            "text": "zzqx",
            "parts": ["zzqx"],
            "suggestions": [],
            "notes": [],
        }
    ]
    assert doc["complete"] is False

    # The audit row counts, and names nothing.
    row = audit_row(svc, resp.evaluation_id)
    details = row["details"]
    meds = sum(1 for u in resp.unresolved_items if u.kind == pb.MEDICATION)
    assert (details["unresolved_medications"], details["unresolved_allergies"]) == (
        meds,
        len(resp.unresolved_items) - meds,
    )
    assert meds >= 1 and details["vocabulary_version"] == resp.vocabulary_version
    assert {"INCOMPLETE", "UNRESOLVED_ITEMS"} <= set(row["compliance_flags"])
    assert "zzqx" not in audit_text(row).lower()


def test_a_misspelt_drug_carries_a_suggestion_the_audit_row_does_not(svc: Service, stub: Any) -> None:
    resp = evaluate(
        stub, svc, SPOUSE, ADVISOR, proposed_medications=[pb.ProposedMedication(name="warfrin", dose="5 mg")]
    )
    assert resp.complete is False
    [item] = unresolved_of(resp, "proposed:0")
    assert item.reason == pb.UNRECOGNISED and item.text == "warfrin"
    assert "warfarin" in item.suggestions
    [info] = [a for a in resp.alerts if a.rule_id == "kb:vocabulary" and "proposed:0" in a.involved_item_ids]
    assert "warfarin" in info.detail  # "Did you mean warfarin?"
    plain = audit_text(audit_row(svc, resp.evaluation_id)).lower()
    assert "warfrin" not in plain and "warfarin" not in plain


def test_unknown_screened_allergens_are_unresolved_environmental_ones_are_not(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    food = put_allergy(stub, svc, patient, allergen="zzqy", category="FOOD", severity="MODERATE")
    put_allergy(stub, svc, patient, allergen="zzqw", category="ENVIRONMENTAL", severity="MILD")
    resp = evaluate(stub, svc, patient, ADVISOR)
    assert resp.complete is False
    assert [(u.item_id, u.kind, u.reason, u.text) for u in resp.unresolved_items] == [
        (food, pb.ALLERGY, pb.UNRECOGNISED, "zzqy")
    ]
    row = audit_row(svc, resp.evaluation_id)
    assert (row["details"]["unresolved_medications"], row["details"]["unresolved_allergies"]) == (0, 1)
    assert "UNRESOLVED_ITEMS" in row["compliance_flags"]
    assert "zzq" not in audit_text(row)


def test_bad_codings_are_invalid_argument_naming_the_field(svc: Service, stub: Any) -> None:
    md = svc.md(ADVISOR)
    code = rxnorm_ingredient("warfarin")

    def bad(call: Any, req: Any, field: str) -> str:
        details = fail(call, req, grpc.StatusCode.INVALID_ARGUMENT, metadata=md)
        assert details.startswith(field + ":"), details
        return details

    def proposing(*meds: Any) -> Any:
        return pb.EvaluateSafetyRequest(patient_id=SPOUSE, proposed_medications=list(meds))

    ok = pb.ProposedMedication(name="aspirin")
    bad(
        stub.EvaluateSafety,
        proposing(ok, ok, pb.ProposedMedication(name="x", coding=pb.Coding(system="http://loinc.org", code="1"))),
        "proposed_medications[2].coding.system",
    )
    # A condition's code system is no drug's.
    bad(
        stub.EvaluateSafety,
        proposing(pb.ProposedMedication(coding=pb.Coding(system="icd10", code="I10"))),
        "proposed_medications[0].coding.system",
    )
    details = bad(
        stub.EvaluateSafety,
        proposing(pb.ProposedMedication(coding=pb.Coding(system="rxnorm", code="12ab9x"))),
        "proposed_medications[0].coding.code",
    )
    assert "12ab9x" not in details  # a code names a drug: never echoed
    bad(
        stub.EvaluateSafety,
        proposing(pb.ProposedMedication(name="x", coding=pb.Coding(system=RXNORM_URI))),
        "proposed_medications[0].coding.code",
    )
    bad(
        stub.EvaluateSafety,
        proposing(pb.ProposedMedication(coding=pb.Coding(code=code))),
        "proposed_medications[0].coding.system",
    )
    # Neither a name nor a coding (an empty coding is no coding).
    bad(stub.EvaluateSafety, proposing(pb.ProposedMedication(dose="5 mg")), "proposed_medications[0].name")
    bad(stub.EvaluateSafety, proposing(pb.ProposedMedication(coding=pb.Coding())), "proposed_medications[0].name")

    bad(
        stub.PutMedication,
        pb.PutMedicationRequest(
            patient_id=SPOUSE,
            medication=pb.Medication(generic_name="warfarin", coding=pb.Coding(system="snomed", code="123456")),
        ),
        "medication.coding.system",
    )
    bad(
        stub.PutAllergy,
        pb.PutAllergyRequest(
            patient_id=SPOUSE,
            allergy=pb.Allergy(
                allergen="x", category="DRUG", severity="MILD", coding=pb.Coding(system=NDC_URI, code="12-34")
            ),
        ),
        "allergy.coding.code",
    )
    bad(
        stub.PutAllergy,
        pb.PutAllergyRequest(
            patient_id=SPOUSE,
            allergy=pb.Allergy(
                allergen="x",
                category="DRUG",
                severity="MILD",
                coding=pb.Coding(system="rxnorm", code=code, display="\x07"),
            ),
        ),
        "allergy.coding.display",
    )


# -- the record ---------------------------------------------------------------------------------------


def test_coded_medications_and_allergies_round_trip(svc: Service, stub: Any, make_patient: Callable[..., str]) -> None:
    patient = make_patient(TENANT)
    warfarin = rxnorm_ingredient("warfarin")
    ndc = ndc_of(warfarin)
    penicillin = rxnorm_ingredient("penicillin G")
    m1 = put_med(
        stub,
        svc,
        patient,
        generic_name="warfarin",
        dose="5 mg",
        coding=pb.Coding(system="rxnorm", code=warfarin, display="warfarin"),
    )
    # An NDC in its hyphenated 5-4-2 layout comes back as the 11 digits RxNorm uses.
    m2 = put_med(
        stub,
        svc,
        patient,
        generic_name="warfarin sodium 1 MG Oral Tablet",
        coding=pb.Coding(system=NDC_URI, code=f"{ndc[:5]}-{ndc[5:9]}-{ndc[9:]}"),
    )
    m3 = put_med(stub, svc, patient, generic_name="ibuprofen")
    a1 = put_allergy(
        stub,
        svc,
        patient,
        allergen="penicillin G",
        category="DRUG",
        severity="ANAPHYLACTIC",
        coding=pb.Coding(system=RXNORM_URI + "/", code=penicillin),
    )
    got = profile(stub, svc, patient)
    meds = {m.medication_id: m for m in got.medications}
    assert (meds[m1].coding.system, meds[m1].coding.code, meds[m1].coding.display) == (RXNORM_URI, warfarin, "warfarin")
    assert (meds[m2].coding.system, meds[m2].coding.code, meds[m2].coding.display) == (NDC_URI, ndc, "")
    assert not meds[m3].HasField("coding")
    [allergy] = got.allergies
    assert allergy.allergy_id == a1
    assert (allergy.coding.system, allergy.coding.code) == (RXNORM_URI, penicillin)

    # The evaluation screens the coded records (by code, or by name where the code is not known).
    resp = evaluate(stub, svc, patient, ADVISOR)
    assert any(a.rule_id == "ddi-warfarin-nsaid" for a in resp.alerts)
    assert not [u for u in resp.unresolved_items if u.item_id in (m1, m2, a1)]

    # An update without a coding removes it; the record still verifies.
    put_med(stub, svc, patient, medication_id=m1, generic_name="warfarin", dose="2.5 mg")
    again = {m.medication_id: m for m in profile(stub, svc, patient).medications}
    assert not again[m1].HasField("coding") and again[m2].coding.code == ndc


def test_the_stored_coding_is_ciphertext_and_audited_by_digest(
    svc: Service, stub: Any, make_patient: Callable[..., str]
) -> None:
    patient = make_patient(TENANT)
    ndc = ndc_of(rxnorm_ingredient("warfarin"))
    penicillin = rxnorm_ingredient("penicillin V")
    mid = put_med(stub, svc, patient, generic_name="warfarin", coding=pb.Coding(system="ndc", code=ndc))
    aid = put_allergy(
        stub,
        svc,
        patient,
        allergen="penicillin",
        category="DRUG",
        severity="SEVERE",
        coding=pb.Coding(system="rxnorm", code=penicillin),
    )
    with svc.admin.connect() as conn:  # the owner: what anyone with the database sees
        med_row = dict(
            conn.execute(text("SELECT * FROM healthcare.medications WHERE id = :id"), {"id": mid}).mappings().one()
        )
        alg_row = dict(
            conn.execute(text("SELECT * FROM healthcare.allergies WHERE id = :id"), {"id": aid}).mappings().one()
        )
    for row, code in ((med_row, ndc), (alg_row, penicillin)):
        assert str(row["encrypted_coding"]).startswith("pv1.")
        raw = json.dumps(row, default=str)
        assert not holds_token(raw, code) and '"system"' not in raw
    # The PHI-write trigger's rows show the coding column by digest only.
    writes = [r for r in audit_rows_for(svc, patient, "PHI_INSERT") if r["resource_id"] in (mid, aid)]
    assert len(writes) == 2
    for r in writes:
        assert str(r["new_values"]["encrypted_coding"]).startswith("sha256:")
        trail = json.dumps(r, default=str)
        assert not holds_token(trail, ndc) and not holds_token(trail, penicillin)


def test_an_edited_coding_fails_closed(
    svc: Service, stub: Any, make_patient: Callable[..., str], keys: KeyStore
) -> None:
    warfarin, ibuprofen = rxnorm_ingredient("warfarin"), rxnorm_ingredient("ibuprofen")

    def refused(patient: str) -> None:
        fail(
            stub.EvaluateSafety,
            pb.EvaluateSafetyRequest(patient_id=patient),
            grpc.StatusCode.DATA_LOSS,
            metadata=svc.md(ADVISOR),
        )
        fail(
            stub.GetHealthProfile,
            pb.GetHealthProfileRequest(patient_id=patient),
            grpc.StatusCode.DATA_LOSS,
            metadata=svc.md(ADVISOR),
        )

    def coded_patient() -> tuple[str, str, str]:
        patient = make_patient(TENANT)
        a = put_med(stub, svc, patient, generic_name="warfarin", coding=pb.Coding(system="rxnorm", code=warfarin))
        b = put_med(stub, svc, patient, generic_name="ibuprofen", coding=pb.Coding(system="rxnorm", code=ibuprofen))
        assert evaluate(stub, svc, patient, ADVISOR).evaluation_id
        return patient, a, b

    # A flipped byte of the ciphertext does not decrypt.
    patient, a, _ = coded_patient()
    admin_exec(
        svc,
        "UPDATE healthcare.medications SET encrypted_coding = overlay(encrypted_coding placing"
        " CASE WHEN substr(encrypted_coding, 12, 1) = 'A' THEN 'B' ELSE 'A' END from 12 for 1) WHERE id = :id",
        id=a,
    )
    refused(patient)

    # The other medication's ciphertext, moved here, fails its associated data.
    patient, a, b = coded_patient()
    admin_exec(
        svc,
        "UPDATE healthcare.medications SET encrypted_coding ="
        " (SELECT encrypted_coding FROM healthcare.medications WHERE id = :b) WHERE id = :a",
        a=a,
        b=b,
    )
    refused(patient)

    # A well-formed ciphertext of another code, by someone holding the tenant key but not going
    # through the service: the profile's MAC no longer matches.
    patient, a, _ = coded_patient()
    with svc.admin.begin() as conn:
        forged = keys.keyring(conn, TENANT).encrypt(
            "healthcare.medications",
            "encrypted_coding",
            a,
            patients.CodedAs(Coding("rxnorm", ibuprofen)).stored(),
        )
        conn.execute(
            text("UPDATE healthcare.medications SET encrypted_coding = :c WHERE id = :id"), {"c": forged, "id": a}
        )
    refused(patient)

    # The coding removed (the name alone would then be screened): also a changed record.
    patient, a, _ = coded_patient()
    admin_exec(svc, "UPDATE healthcare.medications SET encrypted_coding = NULL WHERE id = :id", id=a)
    refused(patient)

    # A coding added to an allergy that had none.
    patient = make_patient(TENANT)
    aid = put_allergy(stub, svc, patient, allergen="penicillin", category="DRUG", severity="SEVERE")
    with svc.admin.begin() as conn:
        forged = keys.keyring(conn, TENANT).encrypt(
            "healthcare.allergies",
            "encrypted_coding",
            aid,
            patients.CodedAs(Coding("rxnorm", rxnorm_ingredient("penicillin G"))).stored(),
        )
        conn.execute(
            text("UPDATE healthcare.allergies SET encrypted_coding = :c WHERE id = :id"), {"c": forged, "id": aid}
        )
    refused(patient)


def test_a_profile_sealed_before_codings_existed_still_verifies(
    svc: Service, stub: Any, make_patient: Callable[..., str], keys: KeyStore
) -> None:
    """A release before migration 0006 sealed medication and allergy rows with no `coding` key at all."""
    patient = make_patient(TENANT)
    put_med(stub, svc, patient, generic_name="warfarin", dose="5 mg")
    put_allergy(stub, svc, patient, allergen="penicillin", category="DRUG", severity="SEVERE", reactions=["hives"])
    with svc.admin.begin() as conn:
        record = patients.read_patient(conn, keys, patient)

        def before(rows: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
            return [{k: v for k, v in r.items() if k != "coding"} for r in rows]

        old_seal = patients._integrity_value(
            keys.keyring(conn, TENANT),
            patients._section_content(
                record.profile,
                before(record.medications),
                before(record.allergies),
                list(record.conditions),
                list(record.biometrics),
            ),
            seal=patients._SEAL_V2,  # that release's seal did not cover readings either
        )
        conn.execute(
            text("UPDATE healthcare.health_profiles SET data_integrity_hash = :h WHERE id = :id"),
            {"h": old_seal, "id": record.profile_id},
        )
    got = profile(stub, svc, patient)
    assert [m.generic_name for m in got.medications] == ["warfarin"]
    assert not got.medications[0].HasField("coding") and not got.allergies[0].HasField("coding")
    assert evaluate(stub, svc, patient, ADVISOR).evaluation_id

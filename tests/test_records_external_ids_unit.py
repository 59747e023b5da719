"""The EHR identifier's pieces without a database: the check every door applies, the keyed index
(what it binds, and that key rotation keeps it), and the seal's form for rows written before it."""

from __future__ import annotations

import os

import pytest

from engine.app.failures import Code, Failure
from engine.app.records import MedicationEntry, check_external_id
from store.crypto import TenantKeyring
from store.patients import _canonical, _sealed_form


@pytest.mark.parametrize(
    "value",
    ["MedicationRequest/123", "urn:oid:2.16.840.1.113883.19.5|rx-0001", "x", "Ä/ü-ß", "a" * 200],
)
def test_identifiers_are_taken_exactly(value: str) -> None:
    assert check_external_id("medication.external_id", value) == value


def test_empty_is_none() -> None:
    assert check_external_id("medication.external_id", "") is None


@pytest.mark.parametrize(
    "value",
    ["a" * 201, "Medication\tRequest/1", "MedicationRequest/1\u2028", "Medication\u200dRequest/1", "\ufeffM/1",
     "M/1\x7f", "M/1\x85", "M/1 ", "\u00a0M/1"],
)
def test_what_could_make_two_ids_look_alike_is_refused(value: str) -> None:
    with pytest.raises(Failure) as info:
        check_external_id("medication.external_id", value)
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message.startswith("medication.external_id: ")
    assert value.strip() not in info.value.message


def test_a_medication_entry_carries_it_to_the_store() -> None:
    mid, med = MedicationEntry(generic_name="metformin", external_id="MedicationRequest/9").checked()
    assert mid is None and med.external_id == "MedicationRequest/9"
    assert MedicationEntry(generic_name="metformin").checked()[1].external_id is None


def test_the_index_binds_table_and_patient_and_survives_rotation() -> None:
    first = os.urandom(32)
    ring = TenantKeyring("t1", {1: first})
    rotated = TenantKeyring("t1", {1: first, 2: os.urandom(32)})
    meds = "healthcare.medications"
    x = ring.record_index(meds, "patient-a", "MedicationRequest/1")
    assert rotated.record_index(meds, "patient-a", "MedicationRequest/1") == x
    assert ring.record_index(meds, "patient-b", "MedicationRequest/1") != x
    assert ring.record_index("healthcare.allergies", "patient-a", "MedicationRequest/1") != x
    assert ring.record_index(meds, "patient-a", "medicationrequest/1") != x  # case matters
    # Length-prefixed: moving characters between patient and identifier changes the digest.
    assert ring.record_index(meds, "patient-a|", "MedicationRequest/1") != ring.record_index(
        meds, "patient-a", "|MedicationRequest/1"
    )
    assert TenantKeyring("t1", {1: os.urandom(32)}).record_index(meds, "patient-a", "MedicationRequest/1") != x


def test_rows_without_an_identifier_keep_the_form_they_were_sealed_with() -> None:
    before_0012 = {"id": "med_1", "generic_name": "metformin", "coding": None}
    after_0012 = {**before_0012, "external_id": None}
    assert _canonical(_sealed_form(after_0012)) == _canonical(_sealed_form(before_0012))
    with_one = {**before_0012, "external_id": "MedicationRequest/1"}
    assert _canonical(_sealed_form(with_one)) != _canonical(_sealed_form(before_0012))
    assert "MedicationRequest/1" in _canonical(_sealed_form(with_one)).decode()

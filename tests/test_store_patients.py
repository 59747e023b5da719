"""The store against a real PostgreSQL, as praneya_app: snapshots, writes, integrity, tamper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from store import patients
from store.crypto import DecryptionError
from store.keys import KeyStore
from store.patients import (
    AllergyInput,
    BiometricInput,
    ConditionInput,
    IntegrityError,
    MedicationInput,
    PatientNotFound,
    deactivate_medication,
    put_allergy,
    put_biometric,
    put_condition,
    put_medication,
    read_patient,
    refresh_integrity,
)
from store.session import Database, Principal

pytestmark = pytest.mark.db


def _fill(app_db: Database, keys: KeyStore, who: Principal, patient: str) -> dict[str, str]:
    with app_db.scoped(who) as conn:
        return {
            "warfarin": put_medication(
                conn,
                keys,
                patient,
                MedicationInput("warfarin", brand_name="Coumadin", dosage="5 mg", frequency="daily", route="oral"),
            ),
            "ibuprofen": put_medication(conn, keys, patient, MedicationInput("ibuprofen", dosage="400 mg")),
            "penicillin": put_allergy(
                conn,
                keys,
                patient,
                AllergyInput("penicillin", "DRUG", "ANAPHYLACTIC", ("hives", "wheeze"), "epinephrine"),
            ),
            "ckd": put_condition(conn, keys, patient, ConditionInput("chronic kidney disease", "N18.4")),
            "egfr": put_biometric(conn, keys, patient, BiometricInput("egfr", 28.0, "mL/min/1.73m2")),
        }


@dataclass(frozen=True)
class Filled:
    tenant: str
    patient: str
    who: Principal
    ids: dict[str, str]


@pytest.fixture
def filled(
    app_db: Database,
    keys: KeyStore,
    make_tenant: Callable[[], str],
    make_patient: Callable[..., str],
    advisor: Callable[[str], Principal],
) -> Filled:
    """A patient of a fresh tenant with medications, an allergy, a condition and a reading."""
    tenant = make_tenant()
    patient = make_patient(tenant, pregnancy_status="not_pregnant")
    who = advisor(tenant)
    return Filled(tenant, patient, who, _fill(app_db, keys, who, patient))


def test_every_encrypted_field_round_trips(
    filled: Filled,
    app_db: Database,
    keys: KeyStore,
) -> None:
    patient, who, ids = filled.patient, filled.who, filled.ids
    with app_db.scoped(who) as conn:
        rec = read_patient(conn, keys, patient)
    med = {m["id"]: m for m in rec.medications}[ids["warfarin"]]
    assert (med["generic_name"], med["brand_name"], med["dosage"], med["frequency"], med["route"]) == (
        "warfarin",
        "Coumadin",
        "5 mg",
        "daily",
        "oral",
    )
    alg = rec.allergies[0]
    assert (alg["allergen"], alg["severity"], alg["reactions"], alg["emergency_medication"]) == (
        "penicillin",
        "ANAPHYLACTIC",
        ["hives", "wheeze"],
        "epinephrine",
    )
    assert (rec.conditions[0]["name"], rec.conditions[0]["code"]) == ("chronic kidney disease", "N18.4")
    assert rec.biometrics[0]["value"] == 28.0 and rec.biometrics[0]["unit"] == "mL/min/1.73m2"
    assert rec.profile["sex"] == "female" and rec.profile["pregnancy_status"] == "not_pregnant"
    snap = rec.to_snapshot()
    assert snap.age is not None and snap.age >= 60
    assert snap.pregnant is False
    assert {m.name for m in snap.medications} == {"warfarin", "ibuprofen"}


def test_writes_bump_version_and_deactivation_leaves_the_snapshot(
    filled: Filled,
    app_db: Database,
    keys: KeyStore,
) -> None:
    patient, who, ids = filled.patient, filled.who, filled.ids
    with app_db.scoped(who) as conn:
        before = read_patient(conn, keys, patient).version
        deactivate_medication(conn, keys, patient, ids["ibuprofen"])
        after = read_patient(conn, keys, patient)
    assert after.version == before + 1
    assert [m["generic_name"] for m in after.medications] == ["warfarin"]


def test_other_tenant_and_missing_patient_look_the_same(
    app_db: Database,
    keys: KeyStore,
    make_tenant: Callable[[], str],
    make_patient: Callable[..., str],
    advisor: Callable[[str], Principal],
) -> None:
    t1, t2 = make_tenant(), make_tenant()
    patient = make_patient(t1)
    with app_db.scoped(advisor(t2)) as conn:
        with pytest.raises(PatientNotFound) as hidden:
            read_patient(conn, keys, patient)
    with app_db.scoped(advisor(t2)) as conn:
        with pytest.raises(PatientNotFound) as missing:
            read_patient(conn, keys, "user-does-not-exist")
    assert str(hidden.value) == str(missing.value)


@pytest.mark.parametrize("where", ["other-row", "other-column", "other-tenant"])
def test_ciphertext_moved_fails_with_its_place_named(
    where: str,
    filled: Filled,
    app_db: Database,
    keys: KeyStore,
    admin_engine: Engine,
    make_tenant: Callable[[], str],
    make_patient: Callable[..., str],
    advisor: Callable[[str], Principal],
) -> None:
    patient, who, ids = filled.patient, filled.who, filled.ids
    with admin_engine.begin() as conn:
        if where == "other-row":
            src = conn.execute(
                text("SELECT encrypted_generic_name FROM healthcare.medications WHERE id = :id"),
                {"id": ids["ibuprofen"]},
            ).scalar_one()
        elif where == "other-column":
            src = conn.execute(
                text("SELECT encrypted_dosage FROM healthcare.medications WHERE id = :id"),
                {"id": ids["warfarin"]},
            ).scalar_one()
        else:
            other_tenant = make_tenant()
            other = make_patient(other_tenant)
            with app_db.scoped(advisor(other_tenant)) as c2:
                oid = put_medication(c2, keys, other, MedicationInput("aspirin"))
            src = conn.execute(
                text("SELECT encrypted_generic_name FROM healthcare.medications WHERE id = :id"), {"id": oid}
            ).scalar_one()
        conn.execute(
            text("UPDATE healthcare.medications SET encrypted_generic_name = :c WHERE id = :id"),
            {"c": src, "id": ids["warfarin"]},
        )
    with app_db.scoped(who) as conn, pytest.raises(DecryptionError) as err:
        read_patient(conn, keys, patient)
    message = str(err.value)
    assert f"healthcare.medications.encrypted_generic_name of row {ids['warfarin']}" in message
    for plaintext in ("warfarin", "ibuprofen", "aspirin", "400 mg"):
        assert plaintext not in message


def test_nothing_readable_without_context_and_plaintext_never_stored(filled: Filled, admin_engine: Engine) -> None:
    tenant = filled.tenant
    with admin_engine.connect() as conn:
        dump = conn.execute(
            text(
                "SELECT string_agg(t::text, ' ') FROM (SELECT to_jsonb(m) AS t FROM healthcare.medications m"
                " WHERE tenant_id = :t UNION ALL SELECT to_jsonb(a) FROM healthcare.allergies a WHERE tenant_id = :t"
                " UNION ALL SELECT to_jsonb(l) FROM audit.audit_logs l WHERE tenant_id = :t) x"
            ),
            {"t": tenant},
        ).scalar_one()
    for plaintext in ("warfarin", "Coumadin", "ibuprofen", "penicillin", "epinephrine", "wheeze"):
        assert plaintext not in dump


EDITS = {
    "medication-deactivated": "UPDATE healthcare.medications SET is_active = false WHERE id = :warfarin",
    "allergy-downgraded": "UPDATE healthcare.allergies SET severity = 'MILD' WHERE id = :penicillin",
    "condition-deleted": "DELETE FROM healthcare.conditions WHERE id = :ckd",
    "profile-tier-raised": "UPDATE healthcare.health_profiles SET subscription_tier = 'PREMIUM' WHERE user_id = :u",
    "profile-fields-cleared": "UPDATE healthcare.health_profiles SET encrypted_sex = NULL WHERE user_id = :u",
}


@pytest.mark.parametrize("read_first", [False, True], ids=["fresh", "after-a-cached-read"])
@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_behind_the_services_back_is_detected(
    edit: str, read_first: bool, filled: Filled, app_db: Database, keys: KeyStore, admin_engine: Engine
) -> None:
    if read_first:
        with app_db.scoped(filled.who) as conn:
            read_patient(conn, keys, filled.patient)  # verified, and now in the verified-snapshot cache
    with admin_engine.begin() as conn:  # someone with database access, triggers and all
        conn.execute(text(EDITS[edit]), {**filled.ids, "u": filled.patient})
    with app_db.scoped(filled.who) as conn, pytest.raises(IntegrityError, match="integrity"):
        read_patient(conn, keys, filled.patient)


def test_unchanged_rows_are_served_from_the_verified_cache(filled: Filled, app_db: Database, keys: KeyStore) -> None:
    with app_db.scoped(filled.who) as conn:
        first = read_patient(conn, keys, filled.patient)
        assert read_patient(conn, keys, filled.patient) is first
    keys.verified_snapshots.clear()
    with app_db.scoped(filled.who) as conn:
        assert read_patient(conn, keys, filled.patient) is not first


# Edits of the latest potassium reading that would hide a hyperkalaemia alert: back-dated so the
# older, normal reading becomes the latest; relabelled so it no longer counts as potassium.
READING_EDITS = {
    "back-dated": "UPDATE healthcare.biometric_readings SET taken_at = taken_at - interval '3 days' WHERE id = :high",
    "relabelled": "UPDATE healthcare.biometric_readings SET reading_type = 'sodium' WHERE id = :high",
    "re-valued": "UPDATE healthcare.biometric_readings SET encrypted_value ="
    " (SELECT encrypted_value FROM healthcare.biometric_readings WHERE id = :low) WHERE id = :high",
}


def _potassium(app_db: Database, keys: KeyStore, filled: Filled) -> dict[str, str]:
    now = datetime.now(UTC)
    with app_db.scoped(filled.who) as conn:
        low = put_biometric(
            conn, keys, filled.patient, BiometricInput("potassium", 4.2, "mmol/L", now - timedelta(days=2))
        )
        high = put_biometric(
            conn, keys, filled.patient, BiometricInput("potassium", 6.1, "mmol/L", now - timedelta(hours=1))
        )
    return {"low": low, "high": high}


@pytest.mark.parametrize("edit", list(READING_EDITS))
def test_a_reading_edited_without_the_keys_fails_closed(
    edit: str, filled: Filled, app_db: Database, keys: KeyStore
) -> None:
    ids = _potassium(app_db, keys, filled)
    with app_db.scoped(filled.who) as conn:
        latest = {b["reading_type"]: b for b in read_patient(conn, keys, filled.patient).biometrics}
    assert latest["potassium"]["id"] == ids["high"] and latest["potassium"]["value"] == 6.1
    # praneya_app with the advisor's valid row-level security context: allowed to write the row,
    # but without the tenant's keys it cannot reseal the record.
    with app_db.scoped(filled.who) as conn:
        assert conn.execute(text(READING_EDITS[edit]), ids).rowcount == 1
    # Both are DATA_LOSS to a caller: a moved ciphertext fails its associated data, the rest the seal.
    with app_db.scoped(filled.who) as conn, pytest.raises((IntegrityError, DecryptionError)):
        read_patient(conn, keys, filled.patient)


def test_a_profile_sealed_before_readings_were_sealed_still_verifies_and_is_resealed_on_write(
    filled: Filled, app_db: Database, keys: KeyStore
) -> None:
    ids = _potassium(app_db, keys, filled)
    with app_db.scoped(filled.who) as conn:
        rec = read_patient(conn, keys, filled.patient)
        ring = keys.keyring(conn, filled.tenant)
        sections = patients._section_content(
            rec.profile, rec.medications, rec.allergies, rec.conditions, rec.biometrics
        )
        v2 = patients._integrity_value(ring, sections, seal=patients._SEAL_V2)
        v3 = patients._integrity_value(ring, sections)
        assert v2.startswith("v2;") and "BIOMETRICS=" not in v2 and "BIOMETRICS=" in v3
        # A v3 seal cut down to v2 (its BIOMETRICS part dropped) does not verify: each v3 MAC covers "v3".
        cut = "v2;" + ";".join(p for p in v3.split(";")[1:] if not p.startswith("BIOMETRICS="))
        assert not patients._verify_sections(ring, cut, sections, frozenset())
        conn.execute(
            text("UPDATE healthcare.health_profiles SET data_integrity_hash = :h WHERE id = :id"),
            {"h": v2, "id": rec.profile_id},
        )
    keys.verified_snapshots.clear()
    with app_db.scoped(filled.who) as conn:
        assert {b["id"] for b in read_patient(conn, keys, filled.patient).biometrics} >= {ids["high"]}
        refresh_integrity(conn, keys, filled.patient)  # what every write does
        stored = conn.execute(
            text("SELECT data_integrity_hash FROM healthcare.health_profiles WHERE id = :id"), {"id": rec.profile_id}
        ).scalar_one()
    assert stored.startswith("v3;") and "BIOMETRICS=" in stored
    with app_db.scoped(filled.who) as conn:
        conn.execute(text(READING_EDITS["back-dated"]), ids)
    with app_db.scoped(filled.who) as conn, pytest.raises(IntegrityError):
        read_patient(conn, keys, filled.patient)

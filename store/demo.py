"""`praneya demo seed`: the seed's demo scenarios with stable ids, idempotent.

Tenants, users, families and consents are created on the admin connection (operator work); the
patients' health data is entered by the demo clinical advisor through the app role, so the audit
trail of the demo names her as the end user, as it would for real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Connection, Engine, text

from store.admin import UserInput, add_family_member, create_family, create_tenant, create_user, grant_consent
from store.crypto import KeyProvider
from store.keys import KeyStore
from store.patients import (
    AllergyInput,
    BiometricInput,
    ConditionInput,
    MedicationInput,
    ProfileInput,
    create_profile,
    put_allergy,
    put_biometric,
    put_condition,
    put_medication,
)
from store.session import Database, Principal

__all__ = ["DEMO_TENANT", "SECOND_TENANT", "DemoPatient", "seed_demo"]

DEMO_TENANT = "demo-clinic"
SECOND_TENANT = "demo-riverside"


@dataclass(frozen=True)
class DemoPatient:
    user_id: str
    first_name: str
    last_name: str
    date_of_birth: date
    sex: str
    pregnancy_status: str | None
    medications: tuple[MedicationInput, ...] = ()
    allergies: tuple[AllergyInput, ...] = ()
    conditions: tuple[ConditionInput, ...] = ()
    biometrics: tuple[BiometricInput, ...] = ()


# Ids are stable (documented in the README) and opaque: an id must not carry a name or a drug.
CLINICIAN = "demo-advisor-01"
ADMIN = "demo-admin-01"
RESPONDER = "demo-er-01"
PARENT, SPOUSE, CHILD = "demo-patient-01", "demo-patient-02", "demo-patient-03"
FAMILY = "demo-family-01"
CONSENT = "demo-consent-01"
OTHER_CLINICIAN, OTHER_PATIENT = "rv-advisor-01", "rv-patient-01"

STAFF = {
    DEMO_TENANT: [
        (
            CLINICIAN,
            UserInput(
                first_name="Sarah",
                last_name="Smith",
                email="sarah.smith@demo.example",
                healthcare_role="CLINICAL_ADVISOR",
                mfa_enabled=True,
                subscription_tier="PREMIUM",
            ),
        ),
        (
            ADMIN,
            UserInput(
                first_name="Alex",
                last_name="Kim",
                email="alex.kim@demo.example",
                healthcare_role="SUPER_ADMIN",
                mfa_enabled=True,
            ),
        ),
        (
            RESPONDER,
            UserInput(
                first_name="Riley",
                last_name="Okafor",
                email="er@demo.example",
                healthcare_role="EMERGENCY_RESPONDER",
                mfa_enabled=True,
            ),
        ),
    ],
    SECOND_TENANT: [
        (
            OTHER_CLINICIAN,
            UserInput(
                first_name="Priya",
                last_name="Raman",
                email="priya@riverside.example",
                healthcare_role="CLINICAL_ADVISOR",
                mfa_enabled=True,
            ),
        ),
    ],
}

PATIENTS = {
    DEMO_TENANT: [
        DemoPatient(
            PARENT,
            "John",
            "Doe",
            date(1954, 3, 14),
            "male",
            None,
            medications=(
                MedicationInput("warfarin", "Coumadin", "5 mg", "once daily", "oral", "atrial fibrillation"),
                MedicationInput(
                    "ibuprofen", "Advil", "400 mg", "every 6 hours as needed", "oral", "knee pain"
                ),
                MedicationInput("simvastatin", "Zocor", "40 mg", "at bedtime", "oral", "hyperlipidaemia"),
            ),
            allergies=(
                AllergyInput(
                    "penicillin", "DRUG", "ANAPHYLACTIC", ("anaphylaxis", "hives"), "epinephrine 0.3 mg IM"
                ),
                AllergyInput("shellfish", "FOOD", "SEVERE", ("angioedema",)),
            ),
            conditions=(
                ConditionInput("atrial fibrillation", "I48.91", is_critical=True),
                ConditionInput("hypertension", "I10"),
            ),
            biometrics=(BiometricInput("inr", 2.8), BiometricInput("egfr", 52.0, "mL/min/1.73m2")),
        ),
        DemoPatient(
            SPOUSE,
            "Jane",
            "Doe",
            date(1975, 7, 2),
            "female",
            "not_pregnant",
            medications=(
                MedicationInput("sertraline", "Zoloft", "50 mg", "once daily", "oral", "depression"),
                MedicationInput("sumatriptan", "Imitrex", "50 mg", "as needed", "oral", "migraine"),
            ),
            allergies=(AllergyInput("sulfamethoxazole", "DRUG", "SEVERE", ("Stevens-Johnson syndrome",)),),
            conditions=(ConditionInput("migraine", "G43.909"),),
            biometrics=(BiometricInput("potassium", 4.2, "mmol/L"),),
        ),
        DemoPatient(
            CHILD,
            "Jimmy",
            "Doe",
            date(2016, 9, 1),
            "male",
            None,
            medications=(
                MedicationInput(
                    "albuterol",
                    "ProAir",
                    "90 mcg",
                    "as needed",
                    "inhaled",
                    "asthma",
                    is_emergency_medication=True,
                ),
                MedicationInput(
                    "epinephrine",
                    "EpiPen Jr",
                    "0.15 mg",
                    "as needed",
                    "intramuscular",
                    "anaphylaxis",
                    is_emergency_medication=True,
                ),
            ),
            allergies=(
                AllergyInput("peanut", "FOOD", "ANAPHYLACTIC", ("anaphylaxis",), "epinephrine 0.15 mg IM"),
                AllergyInput("tree nut", "FOOD", "SEVERE", ("urticaria", "vomiting")),
            ),
            conditions=(ConditionInput("asthma", "J45.909", is_critical=True),),
        ),
    ],
    SECOND_TENANT: [
        DemoPatient(
            OTHER_PATIENT,
            "Maria",
            "Garcia",
            date(1948, 11, 30),
            "female",
            None,
            medications=(
                MedicationInput("lisinopril", "Zestril", "20 mg", "once daily", "oral"),
                MedicationInput("spironolactone", "Aldactone", "25 mg", "once daily", "oral"),
            ),
            allergies=(AllergyInput("aspirin", "DRUG", "MODERATE", ("bronchospasm",)),),
            conditions=(ConditionInput("heart failure", "I50.9"),),
            biometrics=(
                BiometricInput("potassium", 5.7, "mmol/L"),
                BiometricInput("egfr", 38.0, "mL/min/1.73m2"),
            ),
        ),
    ],
}

ADVISOR = {DEMO_TENANT: CLINICIAN, SECOND_TENANT: OTHER_CLINICIAN}


def _exists(conn: Connection, table: str, row_id: str) -> bool:
    return conn.execute(text(f"SELECT 1 FROM {table} WHERE id = :id"), {"id": row_id}).first() is not None  # noqa: S608


def seed_demo(admin: Engine, app: Database, provider: KeyProvider, keys: KeyStore) -> dict[str, int]:
    """Creates what is missing and leaves what exists; returns how many rows of each kind it created."""
    created = {"tenants": 0, "users": 0, "profiles": 0, "records": 0, "families": 0, "consents": 0}
    names = {DEMO_TENANT: "Praneya Demo Clinic", SECOND_TENANT: "Riverside Family Practice"}
    with admin.begin() as conn:
        for tenant, name in names.items():
            created["tenants"] += create_tenant(conn, provider, tenant, name, subdomain=tenant)
        for tenant, staff in STAFF.items():
            for user_id, user in staff:
                created["users"] += create_user(conn, keys, tenant, user_id, user)
        for tenant, patients in PATIENTS.items():
            for p in patients:
                created["users"] += create_user(
                    conn,
                    keys,
                    tenant,
                    p.user_id,
                    UserInput(
                        first_name=p.first_name,
                        last_name=p.last_name,
                        date_of_birth=p.date_of_birth,
                        email=f"{p.first_name.lower()}@family.example",
                    ),
                )
                if not conn.execute(
                    text("SELECT 1 FROM healthcare.health_profiles WHERE user_id = :u"), {"u": p.user_id}
                ).first():
                    create_profile(
                        conn,
                        keys,
                        tenant,
                        p.user_id,
                        ProfileInput(sex=p.sex, pregnancy_status=p.pregnancy_status),
                        profile_id=f"hp-{p.user_id}",
                    )
                    created["profiles"] += 1
        created["families"] += create_family(
            conn, keys, DEMO_TENANT, FAMILY, PARENT, "Doe", max_members=6, subscription_tier="PREMIUM"
        )
        add_family_member(conn, DEMO_TENANT, FAMILY, PARENT, "SELF", "ADMIN", True, member_id=f"{FAMILY}-m1")
        add_family_member(
            conn, DEMO_TENANT, FAMILY, SPOUSE, "SPOUSE", "GUARDIAN", True, member_id=f"{FAMILY}-m2"
        )
        add_family_member(
            conn,
            DEMO_TENANT,
            FAMILY,
            CHILD,
            "CHILD",
            "MEMBER",
            False,
            minor_until=date(2034, 9, 1),
            guardian_consent=True,
            member_id=f"{FAMILY}-m3",
        )
        if not _exists(conn, "healthcare.consents", CONSENT):
            # The spouse lets the parent see her medications and allergies.
            grant_consent(
                conn,
                keys,
                DEMO_TENANT,
                SPOUSE,
                PARENT,
                ["MEDICATIONS", "ALLERGIES"],
                expires_in=timedelta(days=365),
                purpose="family care coordination",
                consent_id=CONSENT,
            )
            created["consents"] += 1
    for tenant, patients in PATIENTS.items():
        who = Principal(tenant, ADVISOR[tenant], "CLINICAL_ADVISOR", mfa=True)
        with app.scoped(who) as conn:
            for p in patients:
                for i, med in enumerate(p.medications, 1):
                    mid = f"{p.user_id}-med-{i}"
                    if not _exists(conn, "healthcare.medications", mid):
                        put_medication(conn, keys, p.user_id, med, medication_id=mid)
                        created["records"] += 1
                for i, allergy in enumerate(p.allergies, 1):
                    aid = f"{p.user_id}-alg-{i}"
                    if not _exists(conn, "healthcare.allergies", aid):
                        put_allergy(conn, keys, p.user_id, allergy, allergy_id=aid)
                        created["records"] += 1
                for i, condition in enumerate(p.conditions, 1):
                    cid = f"{p.user_id}-cond-{i}"
                    if not _exists(conn, "healthcare.conditions", cid):
                        put_condition(conn, keys, p.user_id, condition, condition_id=cid)
                        created["records"] += 1
                for i, reading in enumerate(p.biometrics, 1):
                    bid = f"{p.user_id}-bio-{i}"
                    if not _exists(conn, "healthcare.biometric_readings", bid):
                        put_biometric(conn, keys, p.user_id, reading, reading_id=bid)
                        created["records"] += 1
    return created

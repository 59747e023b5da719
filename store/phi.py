"""Which columns hold ciphertext. One list, used by writes, re-encryption and the leak tests."""

from __future__ import annotations

__all__ = ["ENCRYPTED_COLUMNS"]

ENCRYPTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "public.users": (
        "encrypted_email",
        "encrypted_first_name",
        "encrypted_last_name",
        "encrypted_phone",
        "encrypted_date_of_birth",
    ),
    "public.family_accounts": ("encrypted_family_name",),
    "healthcare.health_profiles": (
        "encrypted_sex",
        "encrypted_pregnancy_status",
        "encrypted_blood_type",
        "encrypted_notes",
        "encrypted_birth_date",
        "encrypted_pregnancy_recorded_at",
        "encrypted_gestational_age",
        "encrypted_estimated_delivery_date",
        "encrypted_lactation_status",
        "encrypted_lactation_recorded_at",
    ),
    "healthcare.medications": (
        "encrypted_generic_name",
        "encrypted_brand_name",
        "encrypted_dosage",
        "encrypted_frequency",
        "encrypted_route",
        "encrypted_indication",
        "encrypted_prescribed_by",
        "encrypted_coding",
        "encrypted_external_id",
    ),
    "healthcare.allergies": (
        "encrypted_allergen",
        "encrypted_reactions",
        "encrypted_emergency_medication",
        "encrypted_coding",
        "encrypted_external_id",
    ),
    "healthcare.conditions": ("encrypted_name", "encrypted_code", "encrypted_notes", "encrypted_external_id"),
    "healthcare.biometric_readings": ("encrypted_value", "encrypted_unit"),
    "healthcare.consents": ("encrypted_purpose",),
    "healthcare.emergency_access_grants": ("encrypted_reason_text", "encrypted_review_notes", "encrypted_end_reason"),
    "healthcare.emergency_access_reviews": ("encrypted_notes",),
    "clinical.drug_interactions": ("encrypted_interacting_substance",),
    "clinical.alert_feedback": ("encrypted_comment",),
}

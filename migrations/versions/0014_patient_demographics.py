"""Patient demographics as data: the clinical birth date, a dated pregnancy with its gestational age
or estimated delivery date, a dated lactation status.

Revision ID: 0014_patient_demographics
Revises: 0013_client_feedback
Create Date: 2026-12-01

Every value is PHI (dates of birth, delivery and observation, pregnancy and breastfeeding), so each is
a ciphertext like the profile's other `encrypted_` columns: AES-256-GCM under the tenant's data key,
bound to table, column and row (store/crypto.py), listed in store/phi.py (re-encryption, leak tests).
The profile's integrity seal covers them (store/patients.py, PROFILE section); the version trigger
counts their changes as it counts every column's. Row-level security is the table's, unchanged.

- encrypted_birth_date: YYYY-MM-DD, the clinical record's birth date (PutDemographics). When absent
  the account's date of birth (public.users.encrypted_date_of_birth) stands in, as before.
- encrypted_pregnancy_recorded_at: when encrypted_pregnancy_status was observed (ISO 8601, UTC).
- encrypted_gestational_age: "W+D" (weeks + days) on the day the status was recorded.
- encrypted_estimated_delivery_date: YYYY-MM-DD.
- encrypted_lactation_status: "lactating" | "not_lactating"; encrypted_lactation_recorded_at as above.

Reminder: this migration must not break the release that is running while it is applied. That
release neither reads nor writes these columns (it selects its columns by name); they are nullable,
and a profile without them seals and verifies exactly as before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_patient_demographics"
down_revision: str | None = "0013_client_feedback"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "encrypted_birth_date",
    "encrypted_pregnancy_recorded_at",
    "encrypted_gestational_age",
    "encrypted_estimated_delivery_date",
    "encrypted_lactation_status",
    "encrypted_lactation_recorded_at",
)


def upgrade() -> None:
    op.execute(
        "ALTER TABLE healthcare.health_profiles "
        + ", ".join(f"ADD COLUMN {c} text" for c in COLUMNS)
    )


def downgrade() -> None:
    # Dropping them loses recorded clinical data: a downgrade is for a release rolled back before
    # any demographics were written (PutDemographics), and says so by refusing otherwise.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT FROM healthcare.health_profiles WHERE "
        + " OR ".join(f"{c} IS NOT NULL" for c in COLUMNS)
        + ") THEN RAISE EXCEPTION 'demographics recorded in healthcare.health_profiles: refusing to drop them';"
        " END IF; END $$"
    )
    op.execute(
        "ALTER TABLE healthcare.health_profiles " + ", ".join(f"DROP COLUMN {c}" for c in COLUMNS)
    )

"""Medications, allergies and conditions keep the EHR's own identifier of the record.

Revision ID: 0012_record_external_ids
Revises: 0011_client_identities
Create Date: 2026-12-03

An EHR names its records with its own ids ("MedicationRequest/123", "system|value"); writes accept
them so that the EHR can update, and replace, what it sent before without keeping our ids.

Is an EHR's record id PHI? It names a record, not its clinical content, but it is a unique number
tied to one patient's chart (HIPAA's Safe Harbor lists "any other unique identifying number"), EHRs
often build it from the MRN or the encounter, and anyone holding the EHR can look the patient up with
it. So it is treated as PHI: the value is encrypted by the service like every other encrypted_
column (`encrypted_external_id`, AES-256-GCM bound to tenant, table, column and row), the PHI-write
audit trigger replaces it by a digest, and it is sealed with the row by the profile's integrity MACs.
What the database can index is `external_id_index`, a keyed HMAC of the value bound to the table and
the patient (store/crypto.py, `record_index`): without the tenant's key it reveals nothing, not even
whether two patients share an identifier. The service checks, when an index finds a row, that the
row's decrypted identifier is the one asked for, so an index moved between rows fails closed.

Unique per (tenant, patient, identifier) among all rows, active or not: an identifier that comes
back after its record was deactivated reactivates that record. Row-level security needs nothing new:
the columns belong to tables whose row policies (and table-level grants) already cover every column.

Reminder: this migration must not break the release that is running while it is applied. The
running release names its columns in every statement and never reads these; both are nullable
without a default, so adding them rewrites no row, and existing rows keep their integrity MACs (the
sealed form leaves out an identifier that is absent). Building the unique indexes holds a lock that
blocks writes to these tables for as long as a scan of each takes (seconds for millions of rows);
CREATE INDEX CONCURRENTLY cannot run inside the migration's transaction. The CHECK constraints are
added NOT VALID and validated after, so their scan does not block writes.

Downgrade refuses while any row holds an identifier: dropping the columns would lose them and fail
those profiles' integrity checks.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_record_external_ids"
down_revision: str | None = "0011_client_identities"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("medications", "allergies", "conditions")


def _upgrade(table: str) -> str:
    return f"""
ALTER TABLE healthcare.{table}
    ADD COLUMN encrypted_external_id text,
    ADD COLUMN external_id_index text,
    -- The value and its index come together or not at all.
    ADD CONSTRAINT {table}_external_id_pair
        CHECK ((encrypted_external_id IS NULL) = (external_id_index IS NULL)) NOT VALID,
    ADD CONSTRAINT {table}_patient_external_id_key UNIQUE (tenant_id, user_id, external_id_index);
ALTER TABLE healthcare.{table} VALIDATE CONSTRAINT {table}_external_id_pair;
"""


def _downgrade(table: str) -> str:
    return f"""
ALTER TABLE healthcare.{table}
    DROP CONSTRAINT {table}_patient_external_id_key,
    DROP CONSTRAINT {table}_external_id_pair,
    DROP COLUMN external_id_index,
    DROP COLUMN encrypted_external_id;
"""


REFUSE_DOWNGRADE = """
DO $$
BEGIN
    IF EXISTS (SELECT FROM healthcare.medications WHERE encrypted_external_id IS NOT NULL)
       OR EXISTS (SELECT FROM healthcare.allergies WHERE encrypted_external_id IS NOT NULL)
       OR EXISTS (SELECT FROM healthcare.conditions WHERE encrypted_external_id IS NOT NULL) THEN
        RAISE EXCEPTION 'records with EHR identifiers exist: dropping encrypted_external_id would lose them and '
                        'fail those profiles'' integrity checks (their MACs cover the identifier)'
            USING ERRCODE = 'object_in_use';
    END IF;
END
$$;
"""


def upgrade() -> None:
    op.execute("".join(_upgrade(t) for t in TABLES))


def downgrade() -> None:
    op.execute(REFUSE_DOWNGRADE + "".join(_downgrade(t) for t in reversed(TABLES)))

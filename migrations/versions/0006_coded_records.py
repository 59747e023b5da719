"""Medications and allergies keep the code they were recorded with (RxNorm, NDC, SNOMED CT).

Revision ID: 0006_coded_records
Revises: 0005_drug_concepts
Create Date: 2026-11-26

`encrypted_coding` holds {"system", "code"[, "display"]} as JSON, encrypted with the tenant's data
key like every other encrypted_ column: a code names the drug or the allergen, so it is PHI. The
PHI-write audit trigger already replaces every encrypted_ column by a digest, this one included.
The column is nullable and has no default, so adding it rewrites no row and existing rows keep
their integrity MACs (the canonical form leaves out a coding that is absent).

Reminder: this migration must not break the release that is running while it is applied. The
running release names its columns in every statement and never reads this one.

Downgrade refuses while any row holds a coding: dropping the column would lose the codes and make
those profiles fail their integrity check (their MACs cover the coding). Rewrite or deactivate
the coded records first.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_coded_records"
down_revision: str | None = "0005_drug_concepts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TABLE healthcare.medications ADD COLUMN encrypted_coding text;
ALTER TABLE healthcare.allergies ADD COLUMN encrypted_coding text;
"""

DOWNGRADE = """
DO $$
BEGIN
    IF EXISTS (SELECT FROM healthcare.medications WHERE encrypted_coding IS NOT NULL)
       OR EXISTS (SELECT FROM healthcare.allergies WHERE encrypted_coding IS NOT NULL) THEN
        RAISE EXCEPTION 'coded medications or allergies exist: dropping encrypted_coding would lose them and '
                        'fail those profiles'' integrity checks; rewrite them without a coding first'
            USING ERRCODE = 'object_in_use';
    END IF;
END
$$;
ALTER TABLE healthcare.allergies DROP COLUMN encrypted_coding;
ALTER TABLE healthcare.medications DROP COLUMN encrypted_coding;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

"""Condition terms carry SNOMED CT codes beside their ICD-10-CM codes.

Revision ID: 0015_condition_snomed
Revises: 0014_patient_demographics
Create Date: 2026-12-01

The condition vocabulary (`clinical.condition_terms`) held names and ICD-10 codes only, so a condition
recorded with a SNOMED CT code (what FHIR Conditions mostly carry) matched by its display text at best.
The shipped knowledge now lists, per condition, the SNOMED CT and ICD-10-CM codes of the public value
sets it is built from (rules/knowledge/condition_codes.tsv); `knowledge sync` writes them here and the
service reads them back with the rest of the vocabulary.

Reminder: this migration must not break the release that is running while it is applied. That release
neither reads nor writes the new column, which has a default; its `knowledge sync` inserts rows without
it and they get no SNOMED codes (as before).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_condition_snomed"
down_revision: str | None = "0014_patient_demographics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TABLE clinical.condition_terms
    ADD COLUMN snomed text[] NOT NULL DEFAULT '{}'::text[],
    -- SNOMED CT concept ids are 6 to 18 digits, never starting with 0 (the CLI and FHIR readers check the same).
    ADD CONSTRAINT condition_terms_snomed_check CHECK (array_to_string(snomed, ',') ~ '^([1-9][0-9]{5,17}(,|$))*$');
"""

DOWNGRADE = """
ALTER TABLE clinical.condition_terms DROP CONSTRAINT condition_terms_snomed_check, DROP COLUMN snomed;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

"""Interaction pairs whose endpoint names did not resolve are stored flagged, never matched.

Revision ID: 0007_pairs_unresolved
Revises: 0006_coded_records
Create Date: 2026-11-26

`praneya knowledge import --allow-unresolved` keeps the pairs of names the drug vocabulary did not
resolve for review: their "ingredient" is only the text the source wrote, so the engine must never
match them. `unresolved` marks them; the service loads only pairs where it is false. A constant
default makes adding the column a catalogue change (no table rewrite).

Reminder: this migration must not break the release that is running while it is applied. The
running release names its columns and never reads this one; it does not know the flag either, so
import with --allow-unresolved only once the release that filters on it serves.

Downgrade refuses while flagged pairs exist: without the column they would be matched as if they
were known ingredients. Delete them (or resolve their names and re-import) first.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_pairs_unresolved"
down_revision: str | None = "0006_coded_records"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TABLE clinical.interaction_pairs ADD COLUMN unresolved boolean NOT NULL DEFAULT false;
"""

DOWNGRADE = """
DO $$
BEGIN
    IF EXISTS (SELECT FROM clinical.interaction_pairs WHERE unresolved) THEN
        RAISE EXCEPTION 'unresolved interaction pairs exist: without the flag they would be matched as known '
                        'ingredients; delete them (DELETE FROM clinical.interaction_pairs WHERE unresolved) first'
            USING ERRCODE = 'object_in_use';
    END IF;
END
$$;
ALTER TABLE clinical.interaction_pairs DROP COLUMN unresolved;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

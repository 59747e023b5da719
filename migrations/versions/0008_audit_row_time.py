"""The database dates every audit row: a runtime role can no longer choose "timestamp".

Revision ID: 0008_audit_row_time
Revises: 0007_pairs_unresolved
Create Date: 2026-11-27

Seals cover each chain's rows by "timestamp" (store/audit_chain.py), and retention archives by it.
The column defaulted to now(), but praneya_app could supply any value: back-date a row into a range
already sealed (breaking that seal: a denial of the chain), or date one ahead of the sealer's cutoff
so it lands in a seal of its choosing. Now a row's time is the database's: for anyone but the owner
(and superusers, who can drop this trigger anyway), a "timestamp" other than now() — the inserting
transaction's start, what the default gives and what the sealing lag is reasoned from — is refused.
Refused rather than overwritten: an overwritten time could belong to another monthly partition,
and a BEFORE trigger cannot move a row to another partition, so overwriting would only give an
obscure error for some values and silently rewrite others.

The trigger on the partitioned table is cloned onto every partition, present and future, so an
insert straight into a partition is checked too.

Reminder: this migration must not break the release that is running while it is applied. The
running release never supplies "timestamp" as praneya_app (its rows take the default); the PHI
audit trigger and break-the-glass function run as the owner; operators' backfills (bench history,
tests' back-dated rows) run on the admin connection, a member of praneya_owner.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_audit_row_time"
down_revision: str | None = "0007_pairs_unresolved"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
CREATE FUNCTION audit.refuse_chosen_audit_time() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
    -- current_user: inside a SECURITY DEFINER function (the PHI trigger, break-the-glass) that is
    -- the owner, who writes the default anyway. pg_has_role is true for superusers too.
    IF NEW."timestamp" IS DISTINCT FROM pg_catalog.now()
       AND NOT pg_catalog.pg_has_role(current_user, 'praneya_owner', 'MEMBER') THEN
        RAISE EXCEPTION 'audit.audit_logs: "timestamp" is set by the database (now()), not by the writer'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_logs_database_time BEFORE INSERT ON audit.audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_chosen_audit_time();
"""

DOWNGRADE = """
DROP TRIGGER audit_logs_database_time ON audit.audit_logs;
DROP FUNCTION audit.refuse_chosen_audit_time();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

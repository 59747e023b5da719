"""Audit seals for operator actions (no tenant), and a tenant index on the audit archive.

Revision ID: 0004_audit_chain_nulls
Revises: 0003_knowledge_feedback_chain
Create Date: 2026-11-25

Audit rows without a tenant (operator actions: global rule syncs, PHI written on the admin
connection) are part of the trail too, so they get a hash chain of their own: its seals have
tenant_id NULL. A primary key cannot hold a NULL, so (tenant_id, seq) becomes a unique constraint
with NULLS NOT DISTINCT (PostgreSQL 15): the operator chain has one seal per seq like any tenant.

Verification and sealing read a tenant's rows from the archive too (retention moves sealed rows
there), so the archive gets the (tenant_id, "timestamp") index audit_logs already has; without it
every tenant's check would scan the whole archive.

Reminder: this migration must not break the release that is running while it is applied. The
running release never writes seals (only the sealer does) and reads them by tenant.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_audit_chain_nulls"
down_revision: str | None = "0003_knowledge_feedback_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TABLE audit.audit_seals DROP CONSTRAINT audit_seals_pkey;
ALTER TABLE audit.audit_seals ALTER COLUMN tenant_id DROP NOT NULL;
ALTER TABLE audit.audit_seals
    ADD CONSTRAINT audit_seals_chain_seq UNIQUE NULLS NOT DISTINCT (tenant_id, seq);
CREATE INDEX idx_audit_archive_tenant_time ON audit.audit_logs_archive (tenant_id, "timestamp");
"""

# The operator chain's seals cannot survive the NOT NULL primary key; removing them loses only
# tamper evidence for operator rows, which a later upgrade and seal re-creates from seq 1. Migrations
# run as praneya_owner, the one role the append-only trigger lets delete.
DOWNGRADE = """
DROP INDEX audit.idx_audit_archive_tenant_time;
DELETE FROM audit.audit_seals WHERE tenant_id IS NULL;
ALTER TABLE audit.audit_seals DROP CONSTRAINT audit_seals_chain_seq;
ALTER TABLE audit.audit_seals ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE audit.audit_seals ADD CONSTRAINT audit_seals_pkey PRIMARY KEY (tenant_id, seq);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

"""Feedback from registered clients: a CDS Hooks client answers the cards it was shown.

Revision ID: 0013_client_feedback
Revises: 0012_record_external_ids
Create Date: 2026-12-01

A client's evaluation has no user (a client is not a user: its audit rows carry no user id and name
the client in their details). Its feedback must still land in `clinical.alert_feedback`, the store
RecordAlertFeedback writes and override rates read, so a row is now authored by a user or by a client,
never both, never neither; one answer per card per author. The client finds the evaluation that
showed the card among its own audit rows: it may read the evaluation rows that name it, and only
those (never a user's, never another client's, never another tenant's).

Reminder: this migration must not break the release that is running while it is applied. That
release writes feedback only for users, with a user id, which every new constraint still accepts.
Downgrade refuses while client feedback exists (it has no user to keep it under).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_client_feedback"
down_revision: str | None = "0012_record_external_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
ALTER TABLE clinical.alert_feedback
    ALTER COLUMN user_id DROP NOT NULL,
    ADD COLUMN client_id text REFERENCES public.clients(id),
    ADD CONSTRAINT alert_feedback_one_author CHECK ((user_id IS NULL) <> (client_id IS NULL)),
    DROP CONSTRAINT alert_feedback_once;
-- One answer per card of an evaluation per author (a client's retries are idempotent).
CREATE UNIQUE INDEX alert_feedback_once ON clinical.alert_feedback
    (evaluation_id, alert_id, COALESCE(user_id, ''), COALESCE(client_id, ''));

-- A client records its own feedback and reads it back; a user's policies are unchanged.
CREATE POLICY alert_feedback_insert_client ON clinical.alert_feedback FOR INSERT TO authenticated WITH CHECK (
    tenant_id = (SELECT public.current_tenant_id())
    AND user_id IS NULL
    AND client_id = (SELECT public.current_client_id()));
CREATE POLICY alert_feedback_select_client ON clinical.alert_feedback FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND client_id = (SELECT public.current_client_id()));

-- A client reads the audit rows of its own calls (the evaluations whose cards it answers).
CREATE POLICY audit_read_client ON audit.audit_logs FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND user_id IS NULL
    AND details ->> 'client_id' = (SELECT public.current_client_id()));
"""

DOWNGRADE = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM clinical.alert_feedback WHERE client_id IS NOT NULL) THEN
        RAISE EXCEPTION 'clinical.alert_feedback holds feedback from clients; downgrading would lose it';
    END IF;
END
$$;
DROP POLICY audit_read_client ON audit.audit_logs;
DROP POLICY alert_feedback_select_client ON clinical.alert_feedback;
DROP POLICY alert_feedback_insert_client ON clinical.alert_feedback;
DROP INDEX clinical.alert_feedback_once;
ALTER TABLE clinical.alert_feedback
    DROP CONSTRAINT alert_feedback_one_author,
    DROP COLUMN client_id,
    ALTER COLUMN user_id SET NOT NULL,
    ADD CONSTRAINT alert_feedback_once UNIQUE (evaluation_id, alert_id, user_id);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

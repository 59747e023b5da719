"""Override rates over the alerts shown: the sealed rule lists of a tenant's evaluations.

Revision ID: 0009_alert_exposures
Revises: 0008_audit_row_time
Create Date: 2026-11-27

An override rate is overrides / times the rule's alert was shown. How often it was shown is in the
evaluation audit rows (`details.sealed_rules`, encrypted with the tenant's data key because rule ids
name drugs and allergens), and RLS lets a clinical advisor read only their own audit rows, so their
rates would cover their own evaluations while the feedback they see covers the tenant's.
`audit.evaluation_alert_seals` gives clinical advisors and super admins, for their own tenant only,
each successful evaluation's id and its sealed rule list — ciphertext, no patient, no user: the
service opens them with the tenant key and answers with counts per rule.

Reminder: this migration must not break the release that is running while it is applied. It only
adds a function the running release does not call.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_alert_exposures"
down_revision: str | None = "0008_audit_row_time"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
-- SECURITY DEFINER (the owner bypasses RLS): the tenant and role checks below are the whole policy.
-- Clinical advisors and super admins of the calling tenant get, per successful evaluation of the
-- last since_days days, its id and the ciphertext of which rules fired; anyone else gets nothing.
CREATE FUNCTION audit.evaluation_alert_seals(since_days integer)
RETURNS TABLE (evaluation_id text, sealed_rules text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT a.id, a.details ->> 'sealed_rules'
    FROM audit.audit_logs a
    WHERE a.tenant_id = (SELECT public.current_tenant_id())
      AND (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')
      AND a.action = 'EVALUATE_SAFETY' AND a.outcome = 'SUCCESS'
      AND a."timestamp" > pg_catalog.now() - pg_catalog.make_interval(days => since_days)
      AND a.details ? 'sealed_rules'
$$;
REVOKE EXECUTE ON FUNCTION audit.evaluation_alert_seals(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.evaluation_alert_seals(integer) TO authenticated;
"""

DOWNGRADE = """
DROP FUNCTION audit.evaluation_alert_seals(integer);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

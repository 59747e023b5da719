"""Salt words for the drug vocabulary, alert feedback, and the audit hash chain.

Revision ID: 0003_knowledge_feedback_chain
Revises: 0002_seed_functions
Create Date: 2026-11-24

Reminder: this migration must not break the release that is running while it is applied.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_knowledge_feedback_chain"
down_revision: str | None = "0002_seed_functions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
-- The service's health check compares the applied revision with the code's head.
GRANT SELECT ON public.alembic_version TO authenticated;
-- Words stripped from drug names before lookup (salts, esters, release forms): "metoprolol
-- succinate ER" is metoprolol.
CREATE TABLE clinical.drug_salt_words (
    word text PRIMARY KEY CHECK (word = lower(btrim(word)))
);
GRANT SELECT ON clinical.drug_salt_words TO authenticated;

-- What clinicians did with an alert. Alert fatigue is measured here: override rates per rule.
CREATE TABLE clinical.alert_feedback (
    id                 text PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES public.tenants(id),
    user_id            text NOT NULL,
    evaluation_id      text NOT NULL,
    alert_id           text NOT NULL,
    rule_id            text NOT NULL,
    outcome            text NOT NULL CHECK (outcome IN ('ACCEPTED', 'OVERRIDDEN')),
    reason_code        text CHECK (reason_code IN ('NOT_CLINICALLY_RELEVANT', 'BENEFIT_OUTWEIGHS_RISK',
                           'PATIENT_ALREADY_TOLERATES', 'WILL_MONITOR', 'DOSE_ADJUSTED', 'ALERT_INCORRECT',
                           'OTHER_REASON')),
    encrypted_comment  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_feedback_user_fkey FOREIGN KEY (tenant_id, user_id) REFERENCES public.users (tenant_id, id),
    CONSTRAINT alert_feedback_override_has_reason CHECK (outcome <> 'OVERRIDDEN' OR reason_code IS NOT NULL),
    CONSTRAINT alert_feedback_once UNIQUE (evaluation_id, alert_id, user_id)
);
CREATE INDEX idx_alert_feedback_rule ON clinical.alert_feedback (tenant_id, rule_id, created_at);
ALTER TABLE clinical.alert_feedback ENABLE ROW LEVEL SECURITY;
ALTER TABLE clinical.alert_feedback FORCE ROW LEVEL SECURITY;
-- alert_feedback: the author records their own feedback; clinical advisors and super admins of the
-- tenant read it all (override rates), an author their own.
CREATE POLICY alert_feedback_insert ON clinical.alert_feedback FOR INSERT TO authenticated WITH CHECK (
    tenant_id = (SELECT public.current_tenant_id()) AND user_id = (SELECT public.current_user_id()));
CREATE POLICY alert_feedback_select ON clinical.alert_feedback FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (user_id = (SELECT public.current_user_id())
         OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')));
GRANT SELECT, INSERT ON clinical.alert_feedback TO authenticated;

-- Tamper evidence, part 1: every audit row carries the SHA-256 of its own content, computed by the
-- database as the row is written (the jsonb text form is canonical: keys in a fixed order).
ALTER TABLE audit.audit_logs ADD COLUMN row_hash text;
ALTER TABLE audit.audit_logs_archive ADD COLUMN row_hash text;

CREATE FUNCTION audit.audit_row_hash(row_data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = ''
AS $$
    SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
        (row_data - 'row_hash' - 'archived_at')::text, 'UTF8')), 'hex')
$$;

CREATE FUNCTION audit.set_audit_row_hash() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
    NEW.row_hash := audit.audit_row_hash(pg_catalog.to_jsonb(NEW));
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_logs_row_hash BEFORE INSERT ON audit.audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit.set_audit_row_hash();
-- The trigger runs as whoever inserts (the service writes its own audit rows as praneya_app).
GRANT EXECUTE ON FUNCTION audit.audit_row_hash(jsonb) TO authenticated;

-- Tamper evidence, part 2: seals. A sealer periodically takes a tenant's rows older than a safety
-- lag (so no transaction still in flight can add a row to a sealed range), digests their row hashes
-- in (timestamp, id) order, and appends a seal linked to the previous one and signed by the
-- service's key. Evaluations never wait on it: they only insert rows.
CREATE TABLE audit.audit_seals (
    tenant_id      text NOT NULL REFERENCES public.tenants(id),
    seq            bigint NOT NULL CHECK (seq >= 1),
    range_start    timestamptz,            -- exclusive; NULL for the first seal
    range_end      timestamptz NOT NULL,   -- inclusive
    row_count      bigint NOT NULL,
    rows_digest    text NOT NULL,
    prev_hash      text NOT NULL,
    seal_hash      text NOT NULL,
    key_id         text NOT NULL,
    signature      bytea NOT NULL,
    sealed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq),
    CONSTRAINT audit_seals_range CHECK (range_start IS NULL OR range_end > range_start)
);
ALTER TABLE audit.audit_seals ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit.audit_seals FORCE ROW LEVEL SECURITY;
CREATE TRIGGER audit_seals_append_only BEFORE UPDATE OR DELETE ON audit.audit_seals
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_audit_change();
-- audit_seals: super admins of the tenant read them; written only by the sealer (owner connection).
CREATE POLICY audit_seals_read ON audit.audit_seals FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
GRANT SELECT ON audit.audit_seals TO authenticated;
"""

DOWNGRADE = """
DROP TABLE audit.audit_seals;
DROP TRIGGER audit_logs_row_hash ON audit.audit_logs;
DROP FUNCTION audit.set_audit_row_hash();
DROP FUNCTION audit.audit_row_hash(jsonb);
ALTER TABLE audit.audit_logs DROP COLUMN row_hash;
ALTER TABLE audit.audit_logs_archive DROP COLUMN row_hash;
DROP TABLE clinical.alert_feedback;
DROP TABLE clinical.drug_salt_words;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

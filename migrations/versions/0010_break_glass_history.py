"""Break the glass: reviews kept as an append-only history, and grants that can be ended early.

Revision ID: 0010_break_glass_history
Revises: 0009_alert_exposures
Create Date: 2026-12-01

A review used to be four columns of the grant, overwritten by the next review, with notes no call
returned. `healthcare.emergency_access_reviews` keeps every review (outcome, reviewer, time, notes
encrypted by the service and bound to the review's id); nothing updates or deletes one. Reviews
recorded before this migration stay where they were, in the grant's own columns, and are read as
the grant's first review; this migration cannot move them, because their notes are encrypted with
associated data naming the grant's row and the database holds no keys.

A grant can now end before it expires: `public.end_emergency_access(grant_id, reason)` lets the
responder who holds the grant, or a super admin of the tenant, end it; `has_emergency_access()`
stops counting it at once, so every policy that lets the grantee see the patient closes.

Reminder: this migration must not break the release that is running while it is applied. That
release keeps working: it still writes reviews into the grant's columns (their UPDATE policy and
column grants are kept until no running release writes them; a later migration can revoke them),
which this release reads as the grant's first review, and it never ends grants early.

Downgrade refuses while reviews exist in the history (they would be lost); grants that were ended
early keep ended by having their expiry moved to the moment they ended.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_break_glass_history"
down_revision: str | None = "0009_alert_exposures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
-- Ending a grant early: when, by whom, and why (the reason encrypted by the service, bound to the
-- grant's id). The grant's patient is part of a key the review history refers to, so a review can
-- only name a grant together with that grant's own patient.
ALTER TABLE healthcare.emergency_access_grants
    ADD COLUMN ended_at timestamptz,
    ADD COLUMN ended_by text,
    ADD COLUMN encrypted_end_reason text,
    ADD CONSTRAINT emergency_access_grants_ended CHECK (
        (ended_at IS NULL) = (ended_by IS NULL) AND (ended_at IS NULL) = (encrypted_end_reason IS NULL)
        AND (ended_at IS NULL OR ended_at >= granted_at)),
    ADD CONSTRAINT emergency_access_grants_tenant_patient_key UNIQUE (tenant_id, id, patient_user_id);

-- Reviews of break-the-glass grants, append-only: a later review adds a row, never edits one.
CREATE TABLE healthcare.emergency_access_reviews (
    id                text PRIMARY KEY,
    tenant_id         text NOT NULL REFERENCES public.tenants(id),
    grant_id          text NOT NULL,
    patient_user_id   text NOT NULL,
    reviewer_user_id  text NOT NULL,
    outcome           text NOT NULL CHECK (outcome IN ('APPROPRIATE', 'INAPPROPRIATE', 'NEEDS_FOLLOW_UP')),
    -- The reviewer's notes, encrypted by the service; the associated data names this row.
    encrypted_notes   text,
    reviewed_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT emergency_access_reviews_grant_fkey FOREIGN KEY (tenant_id, grant_id, patient_user_id)
        REFERENCES healthcare.emergency_access_grants (tenant_id, id, patient_user_id),
    CONSTRAINT emergency_access_reviews_reviewer_fkey FOREIGN KEY (tenant_id, reviewer_user_id)
        REFERENCES public.users (tenant_id, id)
);
CREATE INDEX idx_emergency_access_reviews_grant ON healthcare.emergency_access_reviews (grant_id, reviewed_at);
ALTER TABLE healthcare.emergency_access_reviews ENABLE ROW LEVEL SECURITY;
ALTER TABLE healthcare.emergency_access_reviews FORCE ROW LEVEL SECURITY;
-- emergency_access_reviews: super admins of the tenant (who review break-the-glass access) add
-- reviews under their own name and read every review of their tenant; nobody else sees them.
CREATE POLICY emergency_access_reviews_insert ON healthcare.emergency_access_reviews FOR INSERT TO authenticated
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
                AND reviewer_user_id = (SELECT public.current_user_id())
                AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
CREATE POLICY emergency_access_reviews_select ON healthcare.emergency_access_reviews FOR SELECT TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
-- No UPDATE or DELETE privilege for runtime roles; and for everyone else a trigger allows only what
-- key rotation does (re-encrypting the notes, nothing else changed) and the owner's deletions.
GRANT SELECT, INSERT ON healthcare.emergency_access_reviews TO authenticated;
CREATE FUNCTION healthcare.keep_reviews_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_user = 'praneya_owner' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE'
       AND (pg_catalog.to_jsonb(NEW) - 'encrypted_notes') = (pg_catalog.to_jsonb(OLD) - 'encrypted_notes')
       AND (NEW.encrypted_notes IS NULL) = (OLD.encrypted_notes IS NULL) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'healthcare.emergency_access_reviews is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER emergency_access_reviews_append_only BEFORE UPDATE OR DELETE ON healthcare.emergency_access_reviews
    FOR EACH ROW EXECUTE FUNCTION healthcare.keep_reviews_append_only();
CREATE TRIGGER audit_emergency_access_reviews_phi AFTER INSERT OR UPDATE OR DELETE
    ON healthcare.emergency_access_reviews
    FOR EACH ROW EXECUTE FUNCTION public.trigger_audit_phi_access();

-- A grant ended early no longer counts: the grantee's access to the patient ends with it.
CREATE OR REPLACE FUNCTION public.has_emergency_access(target_user_id text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT FROM healthcare.emergency_access_grants g
        WHERE g.tenant_id = public.current_tenant_id()
          AND g.grantee_user_id = public.current_user_id()
          AND g.patient_user_id = target_user_id
          AND g.expires_at > pg_catalog.now()
          AND g.ended_at IS NULL)
$$;

-- Ends a break-the-glass grant before it expires. Allowed to the responder who holds it and to a
-- super admin of the tenant; any other caller, a missing grant and another tenant's get the same
-- no_data_found. A grant already ended or expired is object_not_in_prerequisite_state. The reason
-- arrives encrypted by the service (bound to the grant's id), like the reason the grant was made for.
CREATE FUNCTION public.end_emergency_access(p_grant_id text, p_encrypted_reason text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    tenant text := public.current_tenant_id();
    me text := public.current_user_id();
    role public.healthcare_role := public.current_healthcare_role();
    g healthcare.emergency_access_grants%ROWTYPE;
    ended timestamptz := pg_catalog.now();
BEGIN
    IF tenant IS NULL OR me IS NULL THEN
        RAISE EXCEPTION 'ending emergency access needs an authenticated context'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_encrypted_reason IS NULL OR p_encrypted_reason !~ '[^[:space:]]' THEN
        RAISE EXCEPTION 'a reason is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO g FROM healthcare.emergency_access_grants
        WHERE id = p_grant_id AND tenant_id = tenant AND (grantee_user_id = me OR role = 'SUPER_ADMIN')
        FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'emergency access grant not found' USING ERRCODE = 'no_data_found';
    END IF;
    IF g.ended_at IS NOT NULL OR g.expires_at <= ended THEN
        RAISE EXCEPTION 'the emergency access grant has already ended'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE healthcare.emergency_access_grants
        SET ended_at = ended, ended_by = me, encrypted_end_reason = p_encrypted_reason
        WHERE id = g.id;
    RETURN pg_catalog.jsonb_build_object('grant_id', g.id, 'patient_id', g.patient_user_id,
                                         'grantee_user_id', g.grantee_user_id, 'ended_at', ended);
END
$$;
REVOKE EXECUTE ON FUNCTION public.end_emergency_access(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.end_emergency_access(text, text) TO authenticated;
REVOKE EXECUTE ON FUNCTION healthcare.keep_reviews_append_only() FROM PUBLIC;
"""

DOWNGRADE = """
DO $$
BEGIN
    IF EXISTS (SELECT FROM healthcare.emergency_access_reviews) THEN
        RAISE EXCEPTION 'emergency access reviews exist in the history; the previous schema keeps one review '
                        'per grant and would lose them: export them first'
            USING ERRCODE = 'object_in_use';
    END IF;
END
$$;
-- A grant ended early stays ended: its expiry becomes the moment it ended.
UPDATE healthcare.emergency_access_grants
    SET expires_at = GREATEST(ended_at, granted_at + interval '1 microsecond')
    WHERE ended_at IS NOT NULL AND expires_at > ended_at;
DROP FUNCTION public.end_emergency_access(text, text);
CREATE OR REPLACE FUNCTION public.has_emergency_access(target_user_id text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT FROM healthcare.emergency_access_grants g
        WHERE g.tenant_id = public.current_tenant_id()
          AND g.grantee_user_id = public.current_user_id()
          AND g.patient_user_id = target_user_id
          AND g.expires_at > pg_catalog.now())
$$;
DROP TABLE healthcare.emergency_access_reviews;
DROP FUNCTION healthcare.keep_reviews_append_only();
ALTER TABLE healthcare.emergency_access_grants
    DROP CONSTRAINT emergency_access_grants_tenant_patient_key,
    DROP CONSTRAINT emergency_access_grants_ended,
    DROP COLUMN encrypted_end_reason,
    DROP COLUMN ended_by,
    DROP COLUMN ended_at;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)

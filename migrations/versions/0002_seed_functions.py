"""The seed's functions: emergency access, HIPAA validation, retention, recovery and maintenance.

Revision ID: 0002_seed_functions
Revises: 0001_foundation
Create Date: 2026-11-24

Reminder: this migration must not break the release that is running while it is applied.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_seed_functions"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = """
-- Break the glass. Refuses an empty reason, a caller acting for someone else, and roles that may
-- not break the glass; creates a time-limited grant; audits with BREAK_GLASS and a high risk
-- score; returns the patient's critical allergies (SEVERE, ANAPHYLACTIC), active medications and
-- active conditions. Encrypted columns are returned as ciphertext: only the service holds keys.
-- emergency_reason is the caller's justification; the service passes it already encrypted.
CREATE FUNCTION public.emergency_health_access(
    target_user_id text,
    requesting_user_id text,
    emergency_reason text,
    reason_code public.emergency_reason_code DEFAULT 'BTG',
    grant_minutes integer DEFAULT 60,
    p_grant_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    tenant text := public.current_tenant_id();
    role public.healthcare_role := public.current_healthcare_role();
    -- The service chooses the grant id, so the reason it encrypted is bound to this row's id.
    grant_id text := COALESCE(p_grant_id, pg_catalog.gen_random_uuid()::text);
    expires timestamptz;
    profile text;
    audit_id text;
BEGIN
    IF tenant IS NULL OR public.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'emergency access needs an authenticated context' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF requesting_user_id IS DISTINCT FROM public.current_user_id() THEN
        RAISE EXCEPTION 'emergency access must be requested by the authenticated user'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF role IS NULL OR role NOT IN ('EMERGENCY_RESPONDER', 'CLINICAL_ADVISOR') THEN
        RAISE EXCEPTION 'role % may not break the glass', COALESCE(role::text, 'none')
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Blank means no non-space character at all (tabs and newlines included, not only spaces).
    IF emergency_reason IS NULL OR emergency_reason !~ '[^[:space:]]' THEN
        RAISE EXCEPTION 'an emergency reason is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF grant_minutes IS NULL OR grant_minutes < 1 OR grant_minutes > 720 THEN
        RAISE EXCEPTION 'grant_minutes must be between 1 and 720' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT p.id INTO profile FROM healthcare.health_profiles p
        JOIN public.users u ON u.id = p.user_id AND u.tenant_id = p.tenant_id
        WHERE p.user_id = target_user_id AND p.tenant_id = tenant;
    IF profile IS NULL THEN
        -- Same answer for a missing patient and one in another tenant.
        RAISE EXCEPTION 'patient not found' USING ERRCODE = 'no_data_found';
    END IF;
    expires := pg_catalog.now() + pg_catalog.make_interval(mins => grant_minutes);
    INSERT INTO healthcare.emergency_access_grants
        (id, tenant_id, patient_user_id, grantee_user_id, reason_code, encrypted_reason_text, expires_at)
        VALUES (grant_id, tenant, target_user_id, requesting_user_id, reason_code, emergency_reason, expires);
    INSERT INTO audit.audit_logs (tenant_id, user_id, db_role, action, resource_type, resource_id, patient_id,
                                  details, phi_accessed, risk_score, compliance_flags, ip_address, user_agent)
        VALUES (tenant, requesting_user_id, session_user, 'EMERGENCY_ACCESS', 'healthcare.health_profiles',
                profile, target_user_id,
                pg_catalog.jsonb_build_object('grant_id', grant_id, 'reason_code', reason_code,
                                              'expires_at', expires, 'grant_minutes', grant_minutes,
                                              'request_id', NULLIF(pg_catalog.current_setting('app.request_id', true), '')),
                true, 0.9, ARRAY['BREAK_GLASS', 'HIPAA_EMERGENCY', 'REVIEW_REQUIRED'],
                NULLIF(pg_catalog.current_setting('app.client_addr', true), ''),
                NULLIF(pg_catalog.current_setting('app.user_agent', true), ''))
        RETURNING id INTO audit_id;
    RETURN pg_catalog.jsonb_build_object(
        'grant_id', grant_id,
        'audit_id', audit_id,
        'patient_user_id', target_user_id,
        'health_profile_id', profile,
        'expires_at', expires,
        'critical_allergies', COALESCE((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'id', a.id, 'encrypted_allergen', a.encrypted_allergen, 'allergen_category', a.allergen_category,
                'severity', a.severity, 'encrypted_reactions', a.encrypted_reactions,
                'encrypted_emergency_medication', a.encrypted_emergency_medication) ORDER BY a.severity DESC, a.id)
            FROM healthcare.allergies a
            WHERE a.health_profile_id = profile AND a.is_active AND a.severity IN ('SEVERE', 'ANAPHYLACTIC')),
            '[]'::jsonb),
        'active_medications', COALESCE((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'id', m.id, 'encrypted_generic_name', m.encrypted_generic_name,
                'encrypted_brand_name', m.encrypted_brand_name, 'encrypted_dosage', m.encrypted_dosage,
                'encrypted_frequency', m.encrypted_frequency, 'encrypted_route', m.encrypted_route,
                'is_emergency_medication', m.is_emergency_medication) ORDER BY m.id)
            FROM healthcare.medications m WHERE m.health_profile_id = profile AND m.is_active),
            '[]'::jsonb),
        'active_conditions', COALESCE((
            SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'id', c.id, 'encrypted_name', c.encrypted_name, 'encrypted_code', c.encrypted_code,
                'is_critical', c.is_critical) ORDER BY c.is_critical DESC, c.id)
            FROM healthcare.conditions c WHERE c.health_profile_id = profile AND c.is_active),
            '[]'::jsonb));
END
$$;

-- Moves audit rows older than the retention period (audit.retention_policy, default 7 years) to
-- audit.audit_logs_archive; rows inside the period are never touched.
CREATE FUNCTION public.manage_healthcare_retention(retention interval DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    period interval := COALESCE(retention, (SELECT retention_period FROM audit.retention_policy));
    cutoff timestamptz;
    moved bigint;
BEGIN
    IF period < interval '6 years' THEN
        RAISE EXCEPTION 'retention period % is shorter than HIPAA''s six years', period
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cutoff := pg_catalog.now() - period;
    -- Column-agnostic copy, so later columns (row_hash) move with their rows unchanged.
    WITH archived AS (
        DELETE FROM audit.audit_logs WHERE "timestamp" < cutoff RETURNING *
    )
    INSERT INTO audit.audit_logs_archive
    SELECT (pg_catalog.jsonb_populate_record(NULL::audit.audit_logs_archive,
                pg_catalog.to_jsonb(a) || pg_catalog.jsonb_build_object('archived_at', pg_catalog.now()))).*
    FROM archived a;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN pg_catalog.jsonb_build_object('archived', moved, 'cutoff', cutoff, 'retention_period', period::text);
END
$$;

CREATE FUNCTION public.prepare_point_in_time_recovery()
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    wal_level text := pg_catalog.current_setting('wal_level');
    archive_mode text := pg_catalog.current_setting('archive_mode');
    recs text[] := '{}';
BEGIN
    IF wal_level NOT IN ('replica', 'logical') THEN
        recs := recs || 'set wal_level = replica (or logical) so WAL can be archived'::text;
    END IF;
    IF archive_mode = 'off' THEN
        recs := recs || 'set archive_mode = on and an archive_command (or archive_library) that ships WAL off the host'::text;
    END IF;
    RETURN pg_catalog.jsonb_build_object(
        'wal_level', wal_level,
        'archive_mode', archive_mode,
        'archive_timeout', pg_catalog.current_setting('archive_timeout'),
        'current_wal_lsn', CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
                                ELSE pg_catalog.pg_current_wal_lsn()::text END,
        'in_recovery', pg_catalog.pg_is_in_recovery(),
        'ready', pg_catalog.cardinality(recs) = 0,
        'recommendations', pg_catalog.to_jsonb(recs),
        'checked_at', pg_catalog.now());
END
$$;

-- Slowest statements by mean time, from pg_stat_statements when installed; otherwise one row whose
-- message says how to install it.
CREATE FUNCTION public.identify_slow_queries(min_mean_ms double precision DEFAULT 100, max_rows integer DEFAULT 20)
RETURNS TABLE (query text, calls bigint, mean_ms double precision, total_ms double precision, message text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    ext_schema text;
BEGIN
    SELECT n.nspname INTO ext_schema FROM pg_catalog.pg_extension e
        JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements';
    IF ext_schema IS NULL THEN
        RETURN QUERY SELECT NULL::text, NULL::bigint, NULL::double precision, NULL::double precision,
            'pg_stat_statements is not installed: add it to shared_preload_libraries, restart, then '
            'CREATE EXTENSION pg_stat_statements'::text;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT s.query, s.calls, s.mean_exec_time, s.total_exec_time, NULL::text '
        'FROM %I.pg_stat_statements s JOIN pg_catalog.pg_database d ON d.oid = s.dbid '
        'WHERE d.datname = pg_catalog.current_database() AND s.mean_exec_time >= $1 '
        'ORDER BY s.mean_exec_time DESC LIMIT $2', ext_schema)
        USING min_mean_ms, max_rows;
END
$$;

CREATE FUNCTION public.monitor_index_performance()
RETURNS TABLE (schema_name text, table_name text, index_name text, index_scans bigint,
               tuples_read bigint, tuples_fetched bigint, index_size_bytes bigint, table_seq_scans bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT i.schemaname::text, i.relname::text, i.indexrelname::text, i.idx_scan, i.idx_tup_read, i.idx_tup_fetch,
           pg_catalog.pg_relation_size(i.indexrelid), t.seq_scan
    FROM pg_catalog.pg_stat_user_indexes i
    JOIN pg_catalog.pg_stat_user_tables t ON t.relid = i.relid
    WHERE i.schemaname IN ('public', 'healthcare', 'audit', 'clinical')
    ORDER BY i.schemaname, i.relname, i.indexrelname
$$;

-- Indexes never scanned that enforce nothing (not unique, not a primary key): candidates to drop.
CREATE FUNCTION public.identify_unused_indexes()
RETURNS TABLE (schema_name text, table_name text, index_name text, index_size_bytes bigint, definition text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT i.schemaname::text, i.relname::text, i.indexrelname::text, pg_catalog.pg_relation_size(i.indexrelid),
           pg_catalog.pg_get_indexdef(i.indexrelid)
    FROM pg_catalog.pg_stat_user_indexes i
    JOIN pg_catalog.pg_index x ON x.indexrelid = i.indexrelid
    WHERE i.schemaname IN ('public', 'healthcare', 'audit', 'clinical')
      AND i.idx_scan = 0 AND NOT x.indisunique AND NOT x.indisprimary
    ORDER BY pg_catalog.pg_relation_size(i.indexrelid) DESC
$$;

CREATE FUNCTION public.update_healthcare_statistics()
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    t record;
    done text[] := '{}';
BEGIN
    FOR t IN SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname IN ('public', 'healthcare', 'audit', 'clinical') AND c.relkind IN ('r', 'p')
             ORDER BY 1, 2 LOOP
        EXECUTE pg_catalog.format('ANALYZE %I.%I', t.nspname, t.relname);
        done := done || (t.nspname || '.' || t.relname);
    END LOOP;
    RETURN pg_catalog.jsonb_build_object('analyzed', pg_catalog.to_jsonb(done), 'at', pg_catalog.now());
END
$$;

-- HIPAA technical-safeguard checks on the live catalog and data; each check is worth one share of
-- the score. Scoped to the caller's tenant when called by the service (a tenant may check only
-- itself); operators may name any tenant.
CREATE FUNCTION public.validate_hipaa_compliance(p_tenant_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    checks jsonb := '[]'::jsonb;
    recs text[] := '{}';
    passed integer := 0;
    total integer := 0;
    missing text[];
    n bigint;
    ok boolean;
    ssl_on boolean;
    period interval;
BEGIN
    -- Inside this SECURITY DEFINER function current_user is always the owner: ask who logged in.
    IF NOT pg_catalog.pg_has_role(session_user, 'praneya_owner', 'MEMBER')
       AND p_tenant_id IS DISTINCT FROM public.current_tenant_id() THEN
        RAISE EXCEPTION 'a tenant may validate only itself' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT FROM public.tenants WHERE id = p_tenant_id) THEN
        RAISE EXCEPTION 'tenant % not found', p_tenant_id USING ERRCODE = 'no_data_found';
    END IF;

    -- 1. RLS enabled and forced on every table holding tenant data, partitions included.
    SELECT pg_catalog.array_agg(n.nspname || '.' || c.relname ORDER BY 1) INTO missing
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'healthcare', 'audit', 'clinical')
      AND EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                  AND NOT a.attisdropped)
      AND NOT (c.relrowsecurity AND c.relforcerowsecurity);
    ok := missing IS NULL;
    checks := checks || pg_catalog.jsonb_build_object('check', 'rls_forced', 'passed', ok,
                                                      'detail', pg_catalog.to_jsonb(COALESCE(missing, '{}')));
    IF NOT ok THEN recs := recs || ('enable and force row-level security on ' || pg_catalog.array_to_string(missing, ', ')); END IF;
    total := total + 1; passed := passed + ok::int;

    -- 2. PHI audit trigger on every PHI table.
    SELECT pg_catalog.array_agg(t ORDER BY t) INTO missing
    FROM pg_catalog.unnest(ARRAY['healthcare.health_profiles', 'healthcare.medications', 'healthcare.allergies',
                                 'healthcare.conditions', 'healthcare.biometric_readings', 'healthcare.consents',
                                 'healthcare.emergency_access_grants', 'public.users']) AS t
    WHERE NOT EXISTS (
        SELECT FROM pg_catalog.pg_trigger tr JOIN pg_catalog.pg_proc p ON p.oid = tr.tgfoid
        WHERE tr.tgrelid = t::regclass AND p.proname = 'trigger_audit_phi_access' AND tr.tgenabled <> 'D');
    ok := missing IS NULL;
    checks := checks || pg_catalog.jsonb_build_object('check', 'phi_audit_triggers', 'passed', ok,
                                                      'detail', pg_catalog.to_jsonb(COALESCE(missing, '{}')));
    IF NOT ok THEN recs := recs || ('restore the PHI audit trigger on ' || pg_catalog.array_to_string(missing, ', ')); END IF;
    total := total + 1; passed := passed + ok::int;

    -- 3. The tenant has an active wrapped data key.
    ok := EXISTS (SELECT FROM public.tenant_data_keys k WHERE k.tenant_id = p_tenant_id AND k.retired_at IS NULL);
    checks := checks || pg_catalog.jsonb_build_object('check', 'tenant_data_key', 'passed', ok);
    IF NOT ok THEN recs := recs || 'create a data key for the tenant (praneya keys rotate --tenant ...)'::text; END IF;
    total := total + 1; passed := passed + ok::int;

    -- 4. MFA on every active user whose role reaches other people's PHI.
    SELECT pg_catalog.count(*) INTO n FROM public.users u
    WHERE u.tenant_id = p_tenant_id AND u.is_active AND NOT u.mfa_enabled
      AND u.healthcare_role IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN', 'EMERGENCY_RESPONDER');
    ok := n = 0;
    checks := checks || pg_catalog.jsonb_build_object('check', 'mfa_for_phi_roles', 'passed', ok, 'detail', n);
    IF NOT ok THEN recs := recs || (n || ' clinical or admin users have no MFA: enable it'); END IF;
    total := total + 1; passed := passed + ok::int;

    -- 5. Encryption in transit: the server has SSL on (the calling connection is reported too).
    ssl_on := pg_catalog.current_setting('ssl') = 'on';
    checks := checks || pg_catalog.jsonb_build_object('check', 'ssl', 'passed', ssl_on,
        'detail', pg_catalog.jsonb_build_object('server_ssl', ssl_on, 'this_connection',
            COALESCE((SELECT s.ssl FROM pg_catalog.pg_stat_ssl s WHERE s.pid = pg_catalog.pg_backend_pid()), false)));
    IF NOT ssl_on THEN recs := recs || 'turn on ssl in postgresql.conf and connect with sslmode=verify-full'::text; END IF;
    total := total + 1; passed := passed + ssl_on::int;

    -- 6. Audit retention of at least six years, and next month's audit partition exists.
    SELECT retention_period INTO period FROM audit.retention_policy;
    ok := period >= interval '6 years' AND EXISTS (
        SELECT FROM pg_catalog.pg_tables WHERE schemaname = 'audit'
        AND tablename = 'audit_logs_p' || pg_catalog.to_char(pg_catalog.now() + interval '1 month', 'YYYYMM'));
    checks := checks || pg_catalog.jsonb_build_object('check', 'audit_retention', 'passed', ok,
                                                      'detail', period::text);
    IF NOT ok THEN recs := recs || 'keep audit retention >= 6 years and run audit.ensure_audit_partitions()'::text; END IF;
    total := total + 1; passed := passed + ok::int;

    -- 7. Runtime roles cannot bypass RLS.
    ok := NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname IN ('praneya_app', 'authenticated')
                      AND (rolsuper OR rolbypassrls));
    checks := checks || pg_catalog.jsonb_build_object('check', 'runtime_roles_no_bypass', 'passed', ok);
    IF NOT ok THEN recs := recs || 'ALTER ROLE praneya_app NOSUPERUSER NOBYPASSRLS'::text; END IF;
    total := total + 1; passed := passed + ok::int;

    RETURN pg_catalog.jsonb_build_object(
        'tenant_id', p_tenant_id,
        'score', pg_catalog.round(100.0 * passed / total, 1),
        'passed', passed,
        'total', total,
        'compliant', passed = total,
        'checks', checks,
        'recommendations', pg_catalog.to_jsonb(recs),
        'checked_at', pg_catalog.now());
END
$$;
"""

# Every function: not executable by PUBLIC; the runtime role gets only what it calls directly or
# what its policies call.
PRIVILEGES = """
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public, healthcare, audit, clinical FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    public.current_tenant_id(), public.current_user_id(), public.current_healthcare_role(),
    public.is_family_member(text), public.can_access_family_data(text, public.consent_category),
    public.has_emergency_access(text),
    public.emergency_health_access(text, text, text, public.emergency_reason_code, integer, text),
    public.validate_hipaa_compliance(text)
    TO authenticated;
"""


def upgrade() -> None:
    op.execute(FUNCTIONS)
    op.execute(PRIVILEGES)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION public.emergency_health_access(text, text, text, public.emergency_reason_code, integer, text), "
        "public.manage_healthcare_retention(interval), public.prepare_point_in_time_recovery(), "
        "public.identify_slow_queries(double precision, integer), public.monitor_index_performance(), "
        "public.identify_unused_indexes(), public.update_healthcare_statistics(), "
        "public.validate_hipaa_compliance(text)"
    )

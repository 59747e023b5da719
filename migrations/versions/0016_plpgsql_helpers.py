"""The row-level-security helpers and the audit row hash in PL/pgSQL: same bodies, plans kept.

Revision ID: 0016_plpgsql_helpers
Revises: 0015_condition_snomed
Create Date: 2026-12-01

Every policy on the health tables calls these functions, once per statement (their results are
stable within it) — and every one of them was `LANGUAGE sql` with `SET search_path = ''`. A SQL
function with a SET clause is never inlined: PostgreSQL runs it through its SQL-function executor,
which parses, analyses and plans the body afresh on every call. Measured on the evaluation's snapshot
read (`perf` on the backend, 15-medication patient): 46% of its CPU was that parsing and planning, and
the audit insert pays it again in its policy check and its row-hash trigger.

PL/pgSQL compiles a function once per session and keeps the plans of its statements, and a body that
is one expression runs without the executor at all. So each function keeps its signature, volatility,
SECURITY DEFINER or INVOKER, `SET search_path = ''` and privileges (CREATE OR REPLACE keeps them), and
its body is the same expression as before, returned. `#variable_conflict use_column` keeps the SQL
functions' rule for a parameter named like a column (the column wins). The downgrade writes the SQL
functions back from the same expressions.

Reminder: this migration must not break the release that is running while it is applied. It changes
no signature and no result, only how the server runs the bodies.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_plpgsql_helpers"
down_revision: str | None = "0015_condition_snomed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONTEXT = "STABLE PARALLEL SAFE SET search_path = ''"
_DEFINER = "STABLE SECURITY DEFINER SET search_path = ''"
_PURE = "IMMUTABLE SET search_path = ''"

# (signature and result, attributes, the body's one expression)
FUNCTIONS: tuple[tuple[str, str, str], ...] = (
    ("public.current_tenant_id() RETURNS text", _CONTEXT,
     "NULLIF(pg_catalog.current_setting('app.tenant_id', true), '')"),
    ("public.current_user_id() RETURNS text", _CONTEXT,
     "NULLIF(pg_catalog.current_setting('app.user_id', true), '')"),
    ("public.current_healthcare_role() RETURNS public.healthcare_role", _CONTEXT, """(
        SELECT r FROM pg_catalog.unnest(pg_catalog.enum_range(NULL::public.healthcare_role)) AS r
        WHERE r::text = NULLIF(pg_catalog.current_setting('app.role', true), ''))"""),
    ("public.current_client_id() RETURNS text", _CONTEXT,
     "CASE WHEN pg_catalog.current_setting('app.role', true) = 'CLIENT'"
     " THEN NULLIF(pg_catalog.current_setting('app.client_id', true), '') END"),
    ("public.current_acting_for() RETURNS text", _CONTEXT,
     "CASE WHEN public.current_client_id() IS NOT NULL"
     " THEN NULLIF(pg_catalog.current_setting('app.acting_for', true), '') END"),
    ("public.is_family_member(family_id text) RETURNS boolean", _DEFINER, """EXISTS (
        SELECT FROM public.family_members m
        WHERE m.family_account_id = family_id
          AND m.user_id = public.current_user_id()
          AND m.tenant_id = public.current_tenant_id())"""),
    ("public.can_access_family_data(target_user_id text,"
     " category public.consent_category DEFAULT 'PROFILE'::public.consent_category) RETURNS boolean", _DEFINER,
     # Family access is an END_USER's (DESIGN.md); staff and responders have their own ways in, and a
     # responder who is also a family member must break the glass like anyone else.
     """target_user_id IS NOT NULL
       AND target_user_id <> public.current_user_id()
       AND public.current_healthcare_role() = 'END_USER'
       AND EXISTS (
        SELECT FROM public.family_members viewer
        JOIN public.family_members subject
          ON subject.family_account_id = viewer.family_account_id
         AND subject.tenant_id = viewer.tenant_id
        WHERE viewer.tenant_id = public.current_tenant_id()
          AND viewer.user_id = public.current_user_id()
          AND viewer.can_view_health_data
          AND subject.user_id = target_user_id
          AND (
               (subject.is_minor
                AND subject.guardian_consent
                AND CURRENT_DATE < subject.minor_until
                AND viewer.permission_level IN ('GUARDIAN', 'ADMIN'))
            OR EXISTS (
                SELECT FROM healthcare.consents c
                WHERE c.tenant_id = viewer.tenant_id
                  AND c.subject_user_id = target_user_id
                  AND c.grantee_user_id = viewer.user_id
                  AND c.revoked_at IS NULL
                  AND (c.expires_at IS NULL OR c.expires_at > pg_catalog.now())
                  AND category = ANY (c.categories))))"""),
    ("public.has_emergency_access(target_user_id text) RETURNS boolean", _DEFINER, """EXISTS (
        SELECT FROM healthcare.emergency_access_grants g
        WHERE g.tenant_id = public.current_tenant_id()
          AND g.grantee_user_id = public.current_user_id()
          AND g.patient_user_id = target_user_id
          AND g.expires_at > pg_catalog.now()
          AND g.ended_at IS NULL)"""),
    ("public.current_client_scopes() RETURNS text[]", _DEFINER, """COALESCE((
        SELECT pg_catalog.array_agg(s ORDER BY s)
        FROM public.clients c, pg_catalog.unnest(c.scopes) AS s
        WHERE c.id = public.current_client_id()
          AND c.tenant_id = public.current_tenant_id()
          AND c.is_active
          AND public.current_user_id() IS NULL
          AND s = ANY (pg_catalog.string_to_array(pg_catalog.current_setting('app.client_scopes', true), ' '))),
        '{}'::text[])"""),
    ("public.current_caller_role() RETURNS text", _DEFINER, """CASE WHEN pg_catalog.current_setting('app.role', true) = 'CLIENT' THEN
        (SELECT 'CLIENT' FROM public.clients c
         WHERE c.id = public.current_client_id() AND c.tenant_id = public.current_tenant_id() AND c.is_active
           AND public.current_user_id() IS NULL)
    ELSE
        (SELECT u.healthcare_role::text FROM public.users u
         WHERE u.id = public.current_user_id() AND u.tenant_id = public.current_tenant_id() AND u.is_active)
    END"""),
    ("audit.audit_row_hash(row_data jsonb) RETURNS text", _PURE, """pg_catalog.encode(pg_catalog.sha256(
        pg_catalog.convert_to((row_data - 'row_hash' - 'archived_at')::text, 'UTF8')), 'hex')"""),
    ("audit.redact_phi(row_data jsonb) RETURNS jsonb", _PURE, """(SELECT pg_catalog.jsonb_object_agg(key,
        CASE WHEN key LIKE 'encrypted\\_%' AND value <> 'null'::jsonb
             THEN pg_catalog.to_jsonb('sha256:' || pg_catalog.left(pg_catalog.encode(
                      pg_catalog.sha256(pg_catalog.convert_to(value #>> '{}', 'UTF8')), 'hex'), 16))
             WHEN key = 'wrapped_key' THEN '"[redacted]"'::jsonb
             ELSE value END)
    FROM pg_catalog.jsonb_each(row_data))"""),
)


def plpgsql(signature: str, attributes: str, expression: str) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION {signature} LANGUAGE plpgsql {attributes} AS $body$\n"
        f"#variable_conflict use_column\nBEGIN\n    RETURN {expression};\nEND\n$body$;"
    )


def sql(signature: str, attributes: str, expression: str) -> str:
    return f"CREATE OR REPLACE FUNCTION {signature} LANGUAGE sql {attributes} AS $body$ SELECT {expression} $body$;"


def upgrade() -> None:
    for f in FUNCTIONS:
        op.execute(plpgsql(*f))


def downgrade() -> None:
    for f in FUNCTIONS:
        op.execute(sql(*f))

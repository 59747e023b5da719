"""Registered clients (an EHR or a backend): a registry per tenant, single-use token ids, and
row-level security that knows a client and its scopes.

Revision ID: 0011_client_identities
Revises: 0010_break_glass_history
Create Date: 2026-12-02

`public.clients` holds each client's issuer (`iss`), public keys (a JWKS document and/or a JWKS
URL), allowed algorithms (ES384, RS384, EdDSA; never `none` or HMAC), the scopes it is granted,
the FHIR server hosts and CORS origins it may use, and whether it is active. Operators write it
(the admin connection); the service reads it before any tenant is known, because the token's
issuer is what names the client. It does so through one SECURITY DEFINER function,
`public.registered_clients()`, which returns the active clients' verification data only (public
keys are not secret, but the service gets nothing else: no display names, no history), and
super admins of a tenant may read their own tenant's rows.

`public.client_token_uses` remembers every accepted token id (`jti`) until the token could no
longer be accepted anyway; `public.claim_client_token()` records one and says whether it was
new, so a token is accepted once across every worker process. It also refuses a deactivated
client at once, whatever a process's cache still holds.

The context gains `app.client_id`, `app.client_scopes` (space-separated, what the token carries)
and `app.acting_for` (the user the client acts for, e.g. CDS Hooks `userId`), set per transaction
like the rest; a client's transaction has `app.role = 'CLIENT'` and no `app.user_id`.
`current_client_scopes()` is the token's scopes intersected with the registry's grant, and empty
unless the client is active in the current tenant, so revoking a scope or deactivating a client
takes effect in the next statement. Policies:
- `evaluate.stored`: reads the health data (and the user row) of the patients of its own tenant.
- `records.write`: inserts and updates health records in its tenant, creates and updates patients
  (END_USER users without MFA). PostgreSQL needs the rows an UPDATE touches to be visible, so at
  the database it reads what `evaluate.stored` reads; the use cases decide what it is told.
- `evaluate.supplied`: no patient data at all; like every client, it writes audit rows.
Audit rows written in a client's transaction (by the service or by the PHI trigger) have no user
(a client is not a user) and name the client and the user it acts for in `details`.

Reminder: this migration must not break the release that is running while it is applied. The
running release never sets app.role = 'CLIENT', so every branch added here is closed to it, and
the policies it relies on keep their meaning for users.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_client_identities"
down_revision: str | None = "0010_break_glass_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPES = ("evaluate.supplied", "evaluate.stored", "records.write")
ALGORITHMS = ("ES384", "RS384", "EdDSA")

REGISTRY = f"""
CREATE TABLE public.clients (
    id                 text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{{0,127}}$'),
    tenant_id          text NOT NULL REFERENCES public.tenants(id),
    display_name       text NOT NULL CHECK (length(btrim(display_name)) BETWEEN 1 AND 200),
    issuer             text NOT NULL CHECK (length(issuer) BETWEEN 1 AND 500 AND issuer !~ '[[:space:][:cntrl:]]'),
    -- The client's public keys as a JWK Set (RFC 7517) and/or where to fetch it (https outside development).
    jwks               jsonb CHECK (jwks IS NULL OR jsonb_typeof(jwks -> 'keys') = 'array'),
    jwks_url           text CHECK (jwks_url IS NULL OR (jwks_url ~ '^https?://[^[:space:]]+$' AND length(jwks_url) <= 2000)),
    algorithms         text[] NOT NULL CHECK (cardinality(algorithms) > 0
                           AND algorithms <@ ARRAY[{", ".join(f"'{a}'" for a in ALGORITHMS)}]::text[]),
    scopes             text[] NOT NULL DEFAULT '{{}}'
                           CHECK (scopes <@ ARRAY[{", ".join(f"'{s}'" for s in SCOPES)}]::text[]),
    fhir_server_hosts  text[] NOT NULL DEFAULT '{{}}',
    -- Explicit origins only: a wildcard would let any web page call with a stolen token.
    cors_origins       text[] NOT NULL DEFAULT '{{}}' CHECK ('*' <> ALL (cors_origins) AND 'null' <> ALL (cors_origins)),
    is_active          boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    rotated_at         timestamptz,
    deactivated_at     timestamptz,
    CONSTRAINT clients_has_keys CHECK (jwks IS NOT NULL OR jwks_url IS NOT NULL),
    CONSTRAINT clients_deactivated CHECK (is_active = (deactivated_at IS NULL)),
    CONSTRAINT clients_tenant_id_id_key UNIQUE (tenant_id, id)
);
-- The issuer names the client (and so the tenant): one active client per issuer.
CREATE UNIQUE INDEX clients_active_issuer_key ON public.clients (issuer) WHERE is_active;
ALTER TABLE public.clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.clients FORCE ROW LEVEL SECURITY;
-- clients: super admins see their own tenant's registrations; only operators (the owner) write them.
CREATE POLICY clients_select ON public.clients FOR SELECT TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
GRANT SELECT ON public.clients TO authenticated;

-- Token ids (jti) already accepted, kept until the token could not be accepted anyway (exp + leeway).
CREATE TABLE public.client_token_uses (
    tenant_id   text NOT NULL,
    client_id   text NOT NULL,
    jti         text NOT NULL CHECK (length(jti) BETWEEN 1 AND 255),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, jti),
    CONSTRAINT client_token_uses_client_fkey FOREIGN KEY (tenant_id, client_id)
        REFERENCES public.clients (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX idx_client_token_uses_expiry ON public.client_token_uses (expires_at);
ALTER TABLE public.client_token_uses ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.client_token_uses FORCE ROW LEVEL SECURITY;
-- client_token_uses: super admins of the tenant may look (which token ids a client used, when);
-- rows are written only by claim_client_token().
CREATE POLICY client_token_uses_select ON public.client_token_uses FOR SELECT TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
GRANT SELECT ON public.client_token_uses TO authenticated;
"""

FUNCTIONS = """
-- The calling client, when the transaction is a client's (app.role = 'CLIENT'); NULL otherwise.
CREATE FUNCTION public.current_client_id() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE SET search_path = ''
    AS $$ SELECT CASE WHEN pg_catalog.current_setting('app.role', true) = 'CLIENT'
                      THEN NULLIF(pg_catalog.current_setting('app.client_id', true), '') END $$;
-- The user a client acts for (CDS Hooks userId), recorded beside it; NULL for users' transactions.
CREATE FUNCTION public.current_acting_for() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE SET search_path = ''
    AS $$ SELECT CASE WHEN public.current_client_id() IS NOT NULL
                      THEN NULLIF(pg_catalog.current_setting('app.acting_for', true), '') END $$;

-- What the calling client may do here: the scopes its token carries that the registry grants it,
-- and none unless it is an active client of the current tenant and no user is set beside it.
-- SECURITY DEFINER: the registry is not readable by the runtime role.
CREATE FUNCTION public.current_client_scopes() RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT COALESCE((
        SELECT pg_catalog.array_agg(s ORDER BY s)
        FROM public.clients c, pg_catalog.unnest(c.scopes) AS s
        WHERE c.id = public.current_client_id()
          AND c.tenant_id = public.current_tenant_id()
          AND c.is_active
          AND public.current_user_id() IS NULL
          AND s = ANY (pg_catalog.string_to_array(pg_catalog.current_setting('app.client_scopes', true), ' '))),
        '{}'::text[])
$$;

-- The caller as the database knows them: a user's healthcare role if they are an active user of
-- the tenant; 'CLIENT' for an active client of the tenant; NULL for anyone else.
CREATE FUNCTION public.current_caller_role() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT CASE WHEN pg_catalog.current_setting('app.role', true) = 'CLIENT' THEN
        (SELECT 'CLIENT' FROM public.clients c
         WHERE c.id = public.current_client_id() AND c.tenant_id = public.current_tenant_id() AND c.is_active
           AND public.current_user_id() IS NULL)
    ELSE
        (SELECT u.healthcare_role::text FROM public.users u
         WHERE u.id = public.current_user_id() AND u.tenant_id = public.current_tenant_id() AND u.is_active)
    END
$$;

-- The active clients' verification data, for the service's cache: read before any tenant is known
-- (the token's issuer names the client). Public keys only; nothing else of the registry.
CREATE FUNCTION public.registered_clients()
RETURNS TABLE (id text, tenant_id text, issuer text, jwks jsonb, jwks_url text, algorithms text[],
               scopes text[], fhir_server_hosts text[], cors_origins text[], updated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT c.id, c.tenant_id, c.issuer, c.jwks, c.jwks_url, c.algorithms, c.scopes, c.fhir_server_hosts,
           c.cors_origins, c.updated_at
    FROM public.clients c WHERE c.is_active ORDER BY c.id
$$;

-- Accept a client token's id once: 'accepted' the first time, 'replayed' after, 'inactive' when the
-- client is not (or no longer) an active client. Expired ids are cleared a few at a time as calls
-- come in (SKIP LOCKED: concurrent workers never wait on each other's cleanup). A token lives at
-- most minutes, so an expiry further out is refused rather than kept.
CREATE FUNCTION public.claim_client_token(p_client_id text, p_jti text, p_expires_at timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    tenant text;
BEGIN
    IF p_jti IS NULL OR pg_catalog.length(p_jti) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'a token id (jti) of 1 to 255 characters is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_expires_at IS NULL OR p_expires_at > pg_catalog.now() + interval '15 minutes' THEN
        RAISE EXCEPTION 'a client token expiry at most 15 minutes ahead is required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT c.tenant_id INTO tenant FROM public.clients c WHERE c.id = p_client_id AND c.is_active;
    IF NOT FOUND THEN
        RETURN 'inactive';
    END IF;
    DELETE FROM public.client_token_uses u
        WHERE (u.client_id, u.jti) IN (SELECT x.client_id, x.jti FROM public.client_token_uses x
                                       WHERE x.expires_at < pg_catalog.now() LIMIT 20 FOR UPDATE SKIP LOCKED);
    INSERT INTO public.client_token_uses (tenant_id, client_id, jti, expires_at)
        VALUES (tenant, p_client_id, p_jti, p_expires_at)
        ON CONFLICT (client_id, jti) DO NOTHING;
    RETURN CASE WHEN FOUND THEN 'accepted' ELSE 'replayed' END;
END
$$;

REVOKE EXECUTE ON FUNCTION public.current_client_id(), public.current_acting_for(), public.current_client_scopes(),
    public.current_caller_role(), public.registered_clients(), public.claim_client_token(text, text, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.current_client_id(), public.current_acting_for(), public.current_client_scopes(),
    public.current_caller_role(), public.registered_clients(), public.claim_client_token(text, text, timestamptz)
    TO authenticated;
"""

# (table, consent category) of every table holding one patient's health data (as in 0001).
PHI_TABLES = [
    ("healthcare.health_profiles", "PROFILE"),
    ("healthcare.medications", "MEDICATIONS"),
    ("healthcare.allergies", "ALLERGIES"),
    ("healthcare.conditions", "CONDITIONS"),
    ("healthcare.biometric_readings", "BIOMETRICS"),
]

_CLIENT_READS = "(SELECT public.current_client_scopes()) && ARRAY['evaluate.stored', 'records.write']::text[]"
_CLIENT_WRITES = "ARRAY['records.write']::text[] <@ (SELECT public.current_client_scopes())"


def _phi_policies(table: str, category: str, *, clients: bool) -> str:
    short = table.split(".")[1]
    reads = f"\n        OR {_CLIENT_READS}" if clients else ""
    writes = f"\n         OR {_CLIENT_WRITES}" if clients else ""
    writer = f"""tenant_id = (SELECT public.current_tenant_id())
    AND (user_id = (SELECT public.current_user_id())
         OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN'){writes})"""
    return f"""
-- {short}: as in 0001, and a client with evaluate.stored or records.write of the tenant reads.
ALTER POLICY {short}_select ON {table} USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (
        user_id = (SELECT public.current_user_id())
        OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')
        OR public.can_access_family_data(user_id, '{category}')
        OR public.has_emergency_access(user_id){reads}));
-- {short}: as in 0001, and a client with records.write of the tenant writes.
ALTER POLICY {short}_insert ON {table} WITH CHECK ({writer});
ALTER POLICY {short}_update ON {table} USING ({writer}) WITH CHECK ({writer});
"""


def _other_policies(*, clients: bool) -> str:
    patient = (
        "EXISTS (SELECT FROM healthcare.health_profiles hp WHERE hp.tenant_id = users.tenant_id"
        " AND hp.user_id = users.id)"
    )
    new_patient = "healthcare_role = 'END_USER' AND NOT mfa_enabled"
    return f"""
-- users: as in 0001; and a client that reads records sees the users that are patients (own a
-- health profile) of its tenant.
ALTER POLICY users_select ON public.users USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (id = (SELECT public.current_user_id())
         OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')
         OR EXISTS (SELECT FROM public.family_members fm
                    WHERE fm.user_id = users.id AND public.is_family_member(fm.family_account_id))
         OR public.has_emergency_access(id){f" OR ({_CLIENT_READS} AND {patient})" if clients else ""}));
-- users: as in 0001; and a client with records.write creates and updates patients (END_USER, no
-- MFA flag) of its tenant; the role guard trigger keeps it from changing roles.
ALTER POLICY users_insert ON public.users WITH CHECK (
    tenant_id = (SELECT public.current_tenant_id())
    AND ((SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'{
        f" OR ({_CLIENT_WRITES} AND {new_patient})" if clients else ""}));
ALTER POLICY users_update ON public.users
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (id = (SELECT public.current_user_id()) OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'{
        f" OR ({_CLIENT_WRITES} AND healthcare_role = 'END_USER')" if clients else ""}))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (id = (SELECT public.current_user_id()) OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'{
        f" OR ({_CLIENT_WRITES} AND {new_patient})" if clients else ""}));
-- drug_interactions: visible exactly like the patient's medications.
ALTER POLICY drug_interactions_select ON clinical.drug_interactions USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (user_id = (SELECT public.current_user_id())
         OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')
         OR public.can_access_family_data(user_id, 'MEDICATIONS')
         OR public.has_emergency_access(user_id){f" OR {_CLIENT_READS}" if clients else ""}));
"""


def _phi_audit_trigger(*, clients: bool) -> str:
    # The body of 0001, with (when clients) the client and the user it acts for in details, and the
    # flag CLIENT instead of NO_END_USER for a client's write (a client is not a user).
    details = (
        "CASE WHEN public.current_client_id() IS NOT NULL THEN pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
        "'client_id', public.current_client_id(), 'acting_for', public.current_acting_for())) END"
        if clients
        else "NULL"
    )
    flags = (
        "CASE WHEN public.current_client_id() IS NOT NULL THEN ARRAY['CLIENT']\n"
        "                 WHEN public.current_user_id() IS NULL THEN ARRAY['NO_END_USER'] ELSE ARRAY[]::text[] END"
        if clients
        else "CASE WHEN public.current_user_id() IS NULL THEN ARRAY['NO_END_USER'] ELSE ARRAY[]::text[] END"
    )
    return f"""
CREATE OR REPLACE FUNCTION public.trigger_audit_phi_access() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    rec jsonb := CASE WHEN TG_OP = 'DELETE' THEN pg_catalog.to_jsonb(OLD) ELSE pg_catalog.to_jsonb(NEW) END;
    patient text := COALESCE(rec ->> 'user_id', rec ->> 'subject_user_id', rec ->> 'patient_user_id');
BEGIN
    INSERT INTO audit.audit_logs (tenant_id, user_id, db_role, action, resource_type, resource_id, patient_id,
                                  old_values, new_values, details, phi_accessed, risk_score, compliance_flags,
                                  ip_address, user_agent)
    VALUES (rec ->> 'tenant_id',
            public.current_user_id(),
            session_user,
            'PHI_' || TG_OP,
            TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
            rec ->> 'id',
            patient,
            CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN audit.redact_phi(pg_catalog.to_jsonb(OLD)) END,
            CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN audit.redact_phi(pg_catalog.to_jsonb(NEW)) END,
            {details},
            true,
            CASE TG_OP WHEN 'DELETE' THEN 0.6 WHEN 'UPDATE' THEN 0.3 ELSE 0.2 END,
            {flags},
            -- Set by the service per transaction next to the RLS context; NULL for operators.
            NULLIF(pg_catalog.current_setting('app.client_addr', true), ''),
            NULLIF(pg_catalog.current_setting('app.user_agent', true), ''));
    RETURN NULL;
END
$$;
"""


DOWNGRADE_FUNCTIONS = """
DROP FUNCTION public.claim_client_token(text, text, timestamptz);
DROP FUNCTION public.registered_clients();
DROP FUNCTION public.current_caller_role();
DROP FUNCTION public.current_client_scopes();
DROP FUNCTION public.current_acting_for();
DROP FUNCTION public.current_client_id();
DROP TABLE public.client_token_uses;
DROP TABLE public.clients;
"""


def upgrade() -> None:
    op.execute(REGISTRY)
    op.execute(FUNCTIONS)
    op.execute("".join(_phi_policies(t, c, clients=True) for t, c in PHI_TABLES))
    op.execute(_other_policies(clients=True))
    op.execute(_phi_audit_trigger(clients=True))


def downgrade() -> None:
    # Policies and the trigger first: they call the functions dropped below.
    op.execute("".join(_phi_policies(t, c, clients=False) for t, c in PHI_TABLES))
    op.execute(_other_policies(clients=False))
    op.execute(_phi_audit_trigger(clients=False))
    op.execute(DOWNGRADE_FUNCTIONS)

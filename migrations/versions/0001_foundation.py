"""Foundation: schemas, enums, every table of the seed and what the mission needs, keys, RLS.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-24

Reminder: this migration must not break the release that is running while it is applied.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_foundation"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = """
-- Functions are created executable by PUBLIC unless told otherwise; ours are granted one by one.
ALTER DEFAULT PRIVILEGES FOR ROLE praneya_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS healthcare;
CREATE SCHEMA IF NOT EXISTS audit;
CREATE SCHEMA IF NOT EXISTS clinical;
GRANT USAGE ON SCHEMA public, healthcare, audit, clinical TO authenticated;
"""

ENUMS = """
CREATE TYPE public.plan_type AS ENUM ('BASIC', 'PROFESSIONAL', 'ENTERPRISE');
-- EMERGENCY_RESPONDER: the role ER integrations authenticate as; may break the glass, sees nothing
-- without a grant.
CREATE TYPE public.healthcare_role AS ENUM ('END_USER', 'CLINICAL_ADVISOR', 'SUPER_ADMIN', 'EMERGENCY_RESPONDER');
CREATE TYPE public.subscription_tier AS ENUM ('BASIC', 'ENHANCED', 'PREMIUM');
CREATE TYPE public.interaction_severity AS ENUM ('UNKNOWN', 'MINOR', 'MODERATE', 'MAJOR', 'CONTRAINDICATED');
CREATE TYPE public.interaction_type AS ENUM ('PHARMACODYNAMIC', 'PHARMACOKINETIC', 'FOOD', 'DUPLICATE', 'OTHER');
CREATE TYPE public.evidence_level AS ENUM
    ('UNKNOWN', 'EXPERT_OPINION', 'CASE_REPORTS', 'OBSERVATIONAL', 'CLINICAL_TRIAL', 'SYSTEMATIC_REVIEW');
CREATE TYPE public.allergen_category AS ENUM ('DRUG', 'FOOD', 'ENVIRONMENTAL', 'INSECT', 'LATEX', 'OTHER');
CREATE TYPE public.allergy_severity AS ENUM ('MILD', 'MODERATE', 'SEVERE', 'ANAPHYLACTIC');
CREATE TYPE public.family_relationship AS ENUM
    ('SELF', 'SPOUSE', 'PARTNER', 'CHILD', 'PARENT', 'SIBLING', 'GRANDPARENT', 'GRANDCHILD', 'GUARDIAN', 'OTHER');
CREATE TYPE public.permission_level AS ENUM ('VIEW_ONLY', 'MEMBER', 'GUARDIAN', 'ADMIN');
CREATE TYPE public.clinical_rule_type AS ENUM
    ('DRUG_INTERACTION', 'ALLERGY_CHECK', 'FOOD_INTERACTION', 'DUPLICATE_THERAPY', 'AGE_RESTRICTION',
     'PREGNANCY', 'RENAL_DOSING', 'CONDITION', 'LAB_VALUE');
CREATE TYPE public.rule_severity AS ENUM ('INFO', 'LOW', 'MODERATE', 'HIGH', 'CRITICAL');
CREATE TYPE public.rule_status AS ENUM ('active', 'shadow', 'retired');
CREATE TYPE public.consent_category AS ENUM ('PROFILE', 'MEDICATIONS', 'ALLERGIES', 'CONDITIONS', 'BIOMETRICS');
CREATE TYPE public.emergency_reason_code AS ENUM ('ETREAT', 'BTG');
"""

# Context: set per transaction by the service with set_config(..., true). NULL when unset, so every
# policy that compares against them denies by default. Not SECURITY DEFINER: they read only the
# caller's own settings.
CONTEXT_FUNCTIONS = """
CREATE FUNCTION public.current_tenant_id() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE SET search_path = ''
    AS $$ SELECT NULLIF(pg_catalog.current_setting('app.tenant_id', true), '') $$;
CREATE FUNCTION public.current_user_id() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE SET search_path = ''
    AS $$ SELECT NULLIF(pg_catalog.current_setting('app.user_id', true), '') $$;
-- An unknown role name yields NULL rather than an error, so a bad context denies instead of failing.
CREATE FUNCTION public.current_healthcare_role() RETURNS public.healthcare_role
    LANGUAGE sql STABLE PARALLEL SAFE SET search_path = ''
    AS $$
        SELECT r FROM pg_catalog.unnest(pg_catalog.enum_range(NULL::public.healthcare_role)) AS r
        WHERE r::text = NULLIF(pg_catalog.current_setting('app.role', true), '')
    $$;
"""

TABLES = """
CREATE TABLE public.tenants (
    id                 text PRIMARY KEY,
    name               text NOT NULL CHECK (length(btrim(name)) > 0),
    subdomain          text UNIQUE,
    plan_type          public.plan_type NOT NULL DEFAULT 'BASIC',
    encryption_key_id  text NOT NULL,
    hipaa_compliant    boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- One data key per tenant and version, stored only wrapped by the master key (envelope encryption).
CREATE TABLE public.tenant_data_keys (
    tenant_id       text NOT NULL REFERENCES public.tenants(id) ON DELETE CASCADE,
    key_version     integer NOT NULL CHECK (key_version >= 1),
    wrapped_key     bytea NOT NULL,
    master_key_id   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz,
    PRIMARY KEY (tenant_id, key_version)
);

CREATE TABLE public.users (
    id                        text PRIMARY KEY,
    tenant_id                 text NOT NULL REFERENCES public.tenants(id),
    -- The seed's plaintext email is PII: kept encrypted, with a keyed blind index for lookups.
    encrypted_email           text,
    email_blind_index         text,
    firebase_uid              text UNIQUE,
    encrypted_first_name      text,
    encrypted_last_name       text,
    encrypted_phone           text,
    encrypted_date_of_birth   text,
    healthcare_role           public.healthcare_role NOT NULL DEFAULT 'END_USER',
    subscription_tier         public.subscription_tier NOT NULL DEFAULT 'BASIC',
    mfa_enabled               boolean NOT NULL DEFAULT false,
    is_active                 boolean NOT NULL DEFAULT true,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_tenant_email_key UNIQUE (tenant_id, email_blind_index),
    CONSTRAINT users_tenant_id_id_key UNIQUE (tenant_id, id)
);

CREATE TABLE public.family_accounts (
    id                     text PRIMARY KEY,
    tenant_id              text NOT NULL REFERENCES public.tenants(id),
    primary_user_id        text NOT NULL,
    encrypted_family_name  text,
    subscription_tier      public.subscription_tier NOT NULL DEFAULT 'BASIC',
    max_members            integer NOT NULL DEFAULT 6 CHECK (max_members BETWEEN 1 AND 20),
    privacy_settings       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT family_accounts_tenant_id_id_key UNIQUE (tenant_id, id),
    -- Composite keys keep every reference inside one tenant.
    CONSTRAINT family_accounts_primary_user_fkey FOREIGN KEY (tenant_id, primary_user_id)
        REFERENCES public.users (tenant_id, id)
);

CREATE TABLE public.family_members (
    id                    text PRIMARY KEY,
    tenant_id             text NOT NULL REFERENCES public.tenants(id),
    family_account_id     text NOT NULL,
    user_id               text NOT NULL,
    relationship          public.family_relationship NOT NULL,
    permission_level      public.permission_level NOT NULL DEFAULT 'MEMBER',
    can_view_health_data  boolean NOT NULL DEFAULT false,
    is_minor              boolean NOT NULL DEFAULT false,
    -- The day the member turns 18: guardian access ends then, without anyone updating the row.
    minor_until           date,
    guardian_consent      boolean NOT NULL DEFAULT false,
    joined_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT family_members_family_user_key UNIQUE (family_account_id, user_id),
    CONSTRAINT family_members_family_fkey FOREIGN KEY (tenant_id, family_account_id)
        REFERENCES public.family_accounts (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT family_members_user_fkey FOREIGN KEY (tenant_id, user_id) REFERENCES public.users (tenant_id, id),
    CONSTRAINT family_members_minor_has_end CHECK (NOT is_minor OR minor_until IS NOT NULL),
    CONSTRAINT family_members_guardian_consent_only_minors CHECK (NOT guardian_consent OR is_minor)
);

CREATE TABLE public.recipes (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES public.tenants(id),
    title       text NOT NULL CHECK (length(btrim(title)) > 0),
    description text,
    created_by  text,
    is_public   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recipes_tenant_id_id_key UNIQUE (tenant_id, id)
);

CREATE TABLE public.recipe_ingredients (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES public.tenants(id),
    recipe_id   text NOT NULL,
    position    integer NOT NULL CHECK (position >= 0),
    name        text NOT NULL CHECK (length(btrim(name)) > 0),
    quantity    numeric,
    unit        text,
    CONSTRAINT recipe_ingredients_recipe_fkey FOREIGN KEY (tenant_id, recipe_id)
        REFERENCES public.recipes (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT recipe_ingredients_recipe_position_key UNIQUE (recipe_id, position)
);

CREATE TABLE healthcare.health_profiles (
    id                          text PRIMARY KEY,
    tenant_id                   text NOT NULL REFERENCES public.tenants(id),
    user_id                     text NOT NULL UNIQUE,
    subscription_tier           public.subscription_tier NOT NULL DEFAULT 'BASIC',
    encrypted_sex               text,
    encrypted_pregnancy_status  text,
    encrypted_blood_type        text,
    encrypted_notes             text,
    -- HMAC-SHA256 (tenant key) over a canonical form of the clinical content; written by the app.
    data_integrity_hash         text,
    last_verified               timestamptz,
    version                     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT health_profiles_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT health_profiles_user_fkey FOREIGN KEY (tenant_id, user_id) REFERENCES public.users (tenant_id, id)
);

-- user_id on every health row is the patient's: denormalised from the profile so that policies
-- test the row itself instead of joining per row.
CREATE TABLE healthcare.medications (
    id                         text PRIMARY KEY,
    tenant_id                  text NOT NULL REFERENCES public.tenants(id),
    health_profile_id          text NOT NULL,
    user_id                    text NOT NULL,
    encrypted_generic_name     text NOT NULL,
    encrypted_brand_name       text,
    encrypted_dosage           text,
    encrypted_frequency        text,
    encrypted_route            text,
    encrypted_indication       text,
    encrypted_prescribed_by    text,
    is_active                  boolean NOT NULL DEFAULT true,
    is_emergency_medication    boolean NOT NULL DEFAULT false,
    started_on                 date,
    ended_on                   date,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT medications_profile_fkey FOREIGN KEY (tenant_id, health_profile_id)
        REFERENCES healthcare.health_profiles (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT medications_dates CHECK (ended_on IS NULL OR started_on IS NULL OR ended_on >= started_on)
);

CREATE TABLE healthcare.allergies (
    id                              text PRIMARY KEY,
    tenant_id                       text NOT NULL REFERENCES public.tenants(id),
    health_profile_id               text NOT NULL,
    user_id                         text NOT NULL,
    encrypted_allergen              text NOT NULL,
    allergen_category               public.allergen_category NOT NULL,
    severity                        public.allergy_severity NOT NULL,
    encrypted_reactions             text,
    encrypted_emergency_medication  text,
    is_active                       boolean NOT NULL DEFAULT true,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT allergies_profile_fkey FOREIGN KEY (tenant_id, health_profile_id)
        REFERENCES healthcare.health_profiles (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE healthcare.conditions (
    id                 text PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES public.tenants(id),
    health_profile_id  text NOT NULL,
    user_id            text NOT NULL,
    encrypted_name     text NOT NULL,
    encrypted_code     text,
    encrypted_notes    text,
    is_critical        boolean NOT NULL DEFAULT false,
    is_active          boolean NOT NULL DEFAULT true,
    diagnosed_on       date,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conditions_profile_fkey FOREIGN KEY (tenant_id, health_profile_id)
        REFERENCES healthcare.health_profiles (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE healthcare.biometric_readings (
    id                 text PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES public.tenants(id),
    health_profile_id  text NOT NULL,
    user_id            text NOT NULL,
    reading_type       text NOT NULL CHECK (reading_type ~ '^[a-z][a-z0-9_]{0,39}$'),
    encrypted_value    text NOT NULL,
    encrypted_unit     text,
    trend_direction    text CHECK (trend_direction IN ('UP', 'DOWN', 'STABLE')),
    taken_at           timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT biometric_readings_profile_fkey FOREIGN KEY (tenant_id, health_profile_id)
        REFERENCES healthcare.health_profiles (tenant_id, id) ON DELETE CASCADE
);

-- A member's consent that another member may see a category of their health data.
CREATE TABLE healthcare.consents (
    id                text PRIMARY KEY,
    tenant_id         text NOT NULL REFERENCES public.tenants(id),
    subject_user_id   text NOT NULL,
    grantee_user_id   text NOT NULL,
    categories        public.consent_category[] NOT NULL CHECK (cardinality(categories) > 0),
    encrypted_purpose text,
    granted_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz,
    revoked_at        timestamptz,
    CONSTRAINT consents_subject_fkey FOREIGN KEY (tenant_id, subject_user_id) REFERENCES public.users (tenant_id, id),
    CONSTRAINT consents_grantee_fkey FOREIGN KEY (tenant_id, grantee_user_id) REFERENCES public.users (tenant_id, id),
    CONSTRAINT consents_not_self CHECK (subject_user_id <> grantee_user_id),
    CONSTRAINT consents_expiry_after_grant CHECK (expires_at IS NULL OR expires_at > granted_at),
    CONSTRAINT consents_revoked_after_grant CHECK (revoked_at IS NULL OR revoked_at >= granted_at)
);

-- Break-the-glass grants, created only by emergency_health_access(); reviewed afterwards.
CREATE TABLE healthcare.emergency_access_grants (
    id                      text PRIMARY KEY,
    tenant_id               text NOT NULL REFERENCES public.tenants(id),
    patient_user_id         text NOT NULL,
    grantee_user_id         text NOT NULL,
    reason_code             public.emergency_reason_code NOT NULL,
    -- The caller's free-text justification, encrypted by the service before it reaches SQL.
    encrypted_reason_text   text NOT NULL,
    granted_at              timestamptz NOT NULL DEFAULT now(),
    expires_at              timestamptz NOT NULL,
    reviewed_at             timestamptz,
    reviewed_by             text,
    review_outcome          text CHECK (review_outcome IN ('APPROPRIATE', 'INAPPROPRIATE', 'NEEDS_FOLLOW_UP')),
    encrypted_review_notes  text,
    CONSTRAINT emergency_access_grants_patient_fkey FOREIGN KEY (tenant_id, patient_user_id)
        REFERENCES public.users (tenant_id, id),
    CONSTRAINT emergency_access_grants_grantee_fkey FOREIGN KEY (tenant_id, grantee_user_id)
        REFERENCES public.users (tenant_id, id),
    CONSTRAINT emergency_access_grants_window CHECK (expires_at > granted_at),
    CONSTRAINT emergency_access_grants_review CHECK ((reviewed_at IS NULL) = (review_outcome IS NULL))
);

-- Clinical schema: knowledge shared by every tenant (no tenant_id, read-only for runtime roles)
CREATE TABLE clinical.drug_classes (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9_]+$'),
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('ATC', 'CLINICAL')),
    atc_code    text,
    source      text
);

CREATE TABLE clinical.drug_ingredients (
    name        text PRIMARY KEY CHECK (name = lower(btrim(name))),
    atc_code    text,
    classes     text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE clinical.drug_aliases (
    alias        text PRIMARY KEY CHECK (alias = lower(btrim(alias))),
    ingredients  text[] NOT NULL CHECK (cardinality(ingredients) > 0)
);

CREATE TABLE clinical.foods (
    name    text PRIMARY KEY CHECK (name = lower(btrim(name))),
    groups  text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE clinical.allergen_groups (
    name        text PRIMARY KEY CHECK (name = lower(btrim(name))),
    category    public.allergen_category NOT NULL,
    definition  jsonb NOT NULL
);

CREATE TABLE clinical.condition_terms (
    id        text PRIMARY KEY CHECK (id ~ '^[a-z0-9_]+$'),
    synonyms  text[] NOT NULL DEFAULT '{}',
    icd10     text[] NOT NULL DEFAULT '{}'
);

-- The interaction knowledge base. Severity is normalised onto our scale; the source's own grade is
-- kept beside it. a/b are ordered (a_kind, a_name) <= (b_kind, b_name) so a pair is stored once.
CREATE TABLE clinical.interaction_pairs (
    id                 text PRIMARY KEY,
    a_kind             text NOT NULL CHECK (a_kind IN ('ingredient', 'class', 'food', 'food_group')),
    a_name             text NOT NULL,
    b_kind             text NOT NULL CHECK (b_kind IN ('ingredient', 'class', 'food', 'food_group')),
    b_name             text NOT NULL,
    severity           public.rule_severity NOT NULL,
    source_severity    text NOT NULL,
    interaction_type   public.interaction_type NOT NULL DEFAULT 'OTHER',
    evidence_level     public.evidence_level NOT NULL DEFAULT 'UNKNOWN',
    description        text NOT NULL DEFAULT '',
    recommendation     text NOT NULL DEFAULT '',
    avoid_combination  boolean NOT NULL DEFAULT false,
    source             text NOT NULL,
    content_hash       text NOT NULL,
    imported_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT interaction_pairs_ordered CHECK ((a_kind, a_name) <= (b_kind, b_name)),
    CONSTRAINT interaction_pairs_pair_source_key UNIQUE (a_kind, a_name, b_kind, b_name, source)
);

CREATE TABLE clinical.knowledge_imports (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        text NOT NULL,
    file_sha256   text NOT NULL,
    rows_total    integer NOT NULL,
    rows_changed  integer NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now(),
    imported_by   text
);

-- Tenant-owned: a tenant may re-grade or disable a pair for itself.
CREATE TABLE clinical.interaction_overrides (
    tenant_id   text NOT NULL REFERENCES public.tenants(id),
    pair_id     text NOT NULL REFERENCES clinical.interaction_pairs(id) ON DELETE CASCADE,
    severity    public.rule_severity,
    disabled    boolean NOT NULL DEFAULT false,
    reason      text NOT NULL CHECK (length(btrim(reason)) > 0),
    updated_by  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, pair_id),
    CONSTRAINT interaction_overrides_does_something CHECK (disabled OR severity IS NOT NULL)
);

-- Seed table: an interaction recorded against one patient's medication.
CREATE TABLE clinical.drug_interactions (
    id                          text PRIMARY KEY,
    tenant_id                   text NOT NULL REFERENCES public.tenants(id),
    user_id                     text NOT NULL,
    medication_id               text NOT NULL REFERENCES healthcare.medications(id) ON DELETE CASCADE,
    interacting_medication_id   text REFERENCES healthcare.medications(id) ON DELETE CASCADE,
    encrypted_interacting_substance text,
    pair_id                     text REFERENCES clinical.interaction_pairs(id) ON DELETE SET NULL,
    severity                    public.interaction_severity NOT NULL,
    interaction_type            public.interaction_type NOT NULL,
    description                 text,
    recommendation              text,
    avoid_combination           boolean NOT NULL DEFAULT false,
    evidence_level              public.evidence_level NOT NULL DEFAULT 'UNKNOWN',
    detected_at                 timestamptz NOT NULL DEFAULT now()
);

-- Clinical rules: tenant_id NULL is the global rule set every tenant gets; a tenant's own rule with
-- the same rule_key replaces the global one for that tenant.
CREATE TABLE clinical.clinical_rules (
    id              text PRIMARY KEY,
    tenant_id       text REFERENCES public.tenants(id),
    rule_key        text NOT NULL CHECK (rule_key ~ '^[a-z0-9][a-z0-9-]{0,99}$'),
    version         integer NOT NULL CHECK (version >= 1),
    rule_type       public.clinical_rule_type NOT NULL,
    name            text NOT NULL,
    description     text,
    conditions      jsonb NOT NULL,
    actions         jsonb NOT NULL,
    applies_to      jsonb NOT NULL DEFAULT '{}'::jsonb,
    severity        public.rule_severity NOT NULL,
    evidence_level  public.evidence_level NOT NULL DEFAULT 'UNKNOWN',
    min_tier        public.subscription_tier NOT NULL DEFAULT 'BASIC',
    status          public.rule_status NOT NULL DEFAULT 'active',
    is_active       boolean GENERATED ALWAYS AS (status <> 'retired') STORED,
    definition      jsonb NOT NULL,
    content_hash    text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX clinical_rules_scope_key ON clinical.clinical_rules (COALESCE(tenant_id, ''), rule_key);

CREATE TABLE clinical.clinical_rule_versions (
    rule_id       text NOT NULL REFERENCES clinical.clinical_rules(id) ON DELETE CASCADE,
    version       integer NOT NULL,
    tenant_id     text REFERENCES public.tenants(id),
    definition    jsonb NOT NULL,
    content_hash  text NOT NULL,
    synced_at     timestamptz NOT NULL DEFAULT now(),
    synced_by     text,
    PRIMARY KEY (rule_id, version)
);
"""

# Audit: partitioned by month for 7-year retention; append-only for runtime roles.
AUDIT = """
CREATE TABLE audit.audit_logs (
    id                text NOT NULL DEFAULT gen_random_uuid()::text,
    tenant_id         text REFERENCES public.tenants(id),
    user_id           text REFERENCES public.users(id),
    db_role           text NOT NULL DEFAULT current_user,
    action            text NOT NULL,
    resource_type     text,
    resource_id       text,
    patient_id        text,
    outcome           text NOT NULL DEFAULT 'SUCCESS',
    old_values        jsonb,
    new_values        jsonb,
    details           jsonb,
    phi_accessed      boolean NOT NULL DEFAULT false,
    risk_score        double precision NOT NULL DEFAULT 0.0 CHECK (risk_score BETWEEN 0 AND 1),
    compliance_flags  text[] NOT NULL DEFAULT '{}',
    ip_address        text,
    user_agent        text,
    "timestamp"       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");

CREATE TABLE audit.audit_logs_archive (
    id                text NOT NULL,
    tenant_id         text,
    user_id           text,
    db_role           text NOT NULL,
    action            text NOT NULL,
    resource_type     text,
    resource_id       text,
    patient_id        text,
    outcome           text NOT NULL,
    old_values        jsonb,
    new_values        jsonb,
    details           jsonb,
    phi_accessed      boolean NOT NULL,
    risk_score        double precision NOT NULL,
    compliance_flags  text[] NOT NULL,
    ip_address        text,
    user_agent        text,
    "timestamp"       timestamptz NOT NULL,
    archived_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, "timestamp")
);

-- One row: how long audit rows stay in audit.audit_logs before they move to the archive.
CREATE TABLE audit.retention_policy (
    id                boolean PRIMARY KEY DEFAULT true CHECK (id),
    retention_period  interval NOT NULL DEFAULT '7 years' CHECK (retention_period >= interval '6 years'),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit.retention_policy DEFAULT VALUES;

-- Creates the monthly partitions covering [from_month - 0, from_month + months_ahead], each with
-- RLS enabled, forced and the same policies as the parent (a partition queried directly uses its
-- own policies, not the parent's).
CREATE FUNCTION audit.ensure_audit_partitions(from_month date DEFAULT now()::date, months_ahead integer DEFAULT 12)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    m date := pg_catalog.date_trunc('month', from_month)::date;
    last date := (pg_catalog.date_trunc('month', from_month) + pg_catalog.make_interval(months => months_ahead))::date;
    part text;
    created integer := 0;
BEGIN
    WHILE m <= last LOOP
        part := 'audit_logs_p' || pg_catalog.to_char(m, 'YYYYMM');
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_tables WHERE schemaname = 'audit' AND tablename = part) THEN
            EXECUTE pg_catalog.format(
                'CREATE TABLE audit.%I PARTITION OF audit.audit_logs FOR VALUES FROM (%L) TO (%L)',
                part, m, (m + interval '1 month')::date);
            PERFORM audit.secure_audit_partition(part);
            created := created + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END
$$;

CREATE FUNCTION audit.secure_audit_partition(part text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
    EXECUTE pg_catalog.format('ALTER TABLE audit.%I ENABLE ROW LEVEL SECURITY', part);
    EXECUTE pg_catalog.format('ALTER TABLE audit.%I FORCE ROW LEVEL SECURITY', part);
    EXECUTE pg_catalog.format(
        'CREATE POLICY audit_read ON audit.%I FOR SELECT TO authenticated USING ('
        'tenant_id = (SELECT public.current_tenant_id()) AND ('
        '(SELECT public.current_healthcare_role()) = ''SUPER_ADMIN'' OR user_id = (SELECT public.current_user_id())))',
        part);
    EXECUTE pg_catalog.format(
        'CREATE POLICY audit_append ON audit.%I FOR INSERT TO authenticated WITH CHECK ('
        'tenant_id = (SELECT public.current_tenant_id()) AND user_id IS NOT DISTINCT FROM (SELECT public.current_user_id()))',
        part);
END
$$;
"""


def _rls(table: str) -> str:
    return f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n"


TENANT_OWNED = [
    "public.tenants",
    "public.tenant_data_keys",
    "public.users",
    "public.family_accounts",
    "public.family_members",
    "public.recipes",
    "public.recipe_ingredients",
    "healthcare.health_profiles",
    "healthcare.medications",
    "healthcare.allergies",
    "healthcare.conditions",
    "healthcare.biometric_readings",
    "healthcare.consents",
    "healthcare.emergency_access_grants",
    "clinical.interaction_overrides",
    "clinical.drug_interactions",
    "clinical.clinical_rules",
    "clinical.clinical_rule_versions",
    "audit.audit_logs",
    "audit.audit_logs_archive",
]

# (table, consent category) of every table holding one patient's health data.
PHI_TABLES = [
    ("healthcare.health_profiles", "PROFILE"),
    ("healthcare.medications", "MEDICATIONS"),
    ("healthcare.allergies", "ALLERGIES"),
    ("healthcare.conditions", "CONDITIONS"),
    ("healthcare.biometric_readings", "BIOMETRICS"),
]

ACCESS_FUNCTIONS = """
-- Is the current user a member of this family account (same tenant)?
CREATE FUNCTION public.is_family_member(family_id text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT FROM public.family_members m
        WHERE m.family_account_id = family_id
          AND m.user_id = public.current_user_id()
          AND m.tenant_id = public.current_tenant_id())
$$;

-- May the current user see this family member's health data of this category? (DESIGN.md, END_USER)
--  (a) the member is a minor (today < minor_until) whose membership has guardian_consent, and the
--      viewer is their guardian: a GUARDIAN or ADMIN member of the same family; or
--  (b) the member granted the viewer an active (not revoked), unexpired consent covering the category;
-- and in both cases the viewer's own membership in that family has can_view_health_data.
CREATE FUNCTION public.can_access_family_data(target_user_id text, category public.consent_category DEFAULT 'PROFILE')
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    -- Family access is an END_USER's (DESIGN.md); staff and responders have their own ways in, and a
    -- responder who is also a family member must break the glass like anyone else.
    SELECT target_user_id IS NOT NULL
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
                  AND category = ANY (c.categories))))
$$;

-- Does the current user hold an active, unexpired break-the-glass grant for this patient?
CREATE FUNCTION public.has_emergency_access(target_user_id text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT FROM healthcare.emergency_access_grants g
        WHERE g.tenant_id = public.current_tenant_id()
          AND g.grantee_user_id = public.current_user_id()
          AND g.patient_user_id = target_user_id
          AND g.expires_at > pg_catalog.now())
$$;
"""


def _phi_policies(table: str, category: str) -> str:
    short = table.split(".")[1]
    return f"""
-- {short}: the patient, clinical advisors and super admins of the tenant, family members the patient
-- (or guardianship) lets in, and an active emergency grant; every branch inside the caller's tenant.
CREATE POLICY {short}_select ON {table} FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (
        user_id = (SELECT public.current_user_id())
        OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')
        OR public.can_access_family_data(user_id, '{category}')
        OR public.has_emergency_access(user_id)));
-- {short}: written by the patient or by clinical staff of the tenant; family viewers and emergency
-- grantees only read.
CREATE POLICY {short}_insert ON {table} FOR INSERT TO authenticated WITH CHECK (
    tenant_id = (SELECT public.current_tenant_id())
    AND (user_id = (SELECT public.current_user_id())
         OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')));
CREATE POLICY {short}_update ON {table} FOR UPDATE TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (user_id = (SELECT public.current_user_id())
                OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (user_id = (SELECT public.current_user_id())
                OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')));
-- {short}: health records are deactivated, not deleted; only a super admin deletes (erasure requests).
CREATE POLICY {short}_delete ON {table} FOR DELETE TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO authenticated;
"""


OTHER_POLICIES = """
-- tenants: a principal sees only its own tenant row; tenants are created by operators (owner role).
CREATE POLICY tenants_select ON public.tenants FOR SELECT TO authenticated
    USING (id = (SELECT public.current_tenant_id()));
GRANT SELECT ON public.tenants TO authenticated;

-- tenant_data_keys: the service reads its tenant's wrapped keys; only operators write them.
CREATE POLICY tenant_data_keys_select ON public.tenant_data_keys FOR SELECT TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id()));
GRANT SELECT ON public.tenant_data_keys TO authenticated;

-- users: yourself; everyone in the tenant for clinical advisors and super admins; co-members of your
-- families (names only, health data is separate); a patient you hold an emergency grant for.
CREATE POLICY users_select ON public.users FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (id = (SELECT public.current_user_id())
         OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')
         OR EXISTS (SELECT FROM public.family_members fm
                    WHERE fm.user_id = users.id AND public.is_family_member(fm.family_account_id))
         OR public.has_emergency_access(id)));
-- users: super admins create and change users of their tenant; a user may change their own row
-- (the role guard trigger stops self-promotion).
CREATE POLICY users_insert ON public.users FOR INSERT TO authenticated WITH CHECK (
    tenant_id = (SELECT public.current_tenant_id())
    AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
CREATE POLICY users_update ON public.users FOR UPDATE TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (id = (SELECT public.current_user_id()) OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (id = (SELECT public.current_user_id()) OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'));
GRANT SELECT, INSERT, UPDATE ON public.users TO authenticated;

-- family_accounts: members of the family, clinical staff; created by the primary user or a super admin.
CREATE POLICY family_accounts_select ON public.family_accounts FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (primary_user_id = (SELECT public.current_user_id())
         OR public.is_family_member(id)
         OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')));
CREATE POLICY family_accounts_write ON public.family_accounts FOR ALL TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (primary_user_id = (SELECT public.current_user_id())
                OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (primary_user_id = (SELECT public.current_user_id())
                OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.family_accounts TO authenticated;

-- family_members: members see their family's roster.
CREATE POLICY family_members_select ON public.family_members FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (user_id = (SELECT public.current_user_id())
         OR public.is_family_member(family_account_id)
         OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')));
-- family_members: super admins manage any membership of their tenant, minors included.
CREATE POLICY family_members_admin ON public.family_members FOR ALL TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN')
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
-- family_members: the family's primary user manages adult, non-guardian memberships only. Minor
-- status, guardian consent and who is a guardian (GUARDIAN or ADMIN) open a minor's health data, so
-- they are facts a super admin records after verifying them, never the roster manager's say-so.
CREATE POLICY family_members_primary ON public.family_members FOR ALL TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND NOT is_minor AND NOT guardian_consent AND permission_level IN ('MEMBER', 'VIEW_ONLY')
           AND EXISTS (SELECT FROM public.family_accounts fa WHERE fa.id = family_account_id
                       AND fa.primary_user_id = (SELECT public.current_user_id())))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND NOT is_minor AND NOT guardian_consent AND permission_level IN ('MEMBER', 'VIEW_ONLY')
           AND EXISTS (SELECT FROM public.family_accounts fa WHERE fa.id = family_account_id
                       AND fa.primary_user_id = (SELECT public.current_user_id())));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.family_members TO authenticated;

-- recipes: shared within the tenant; written by their author or a super admin.
CREATE POLICY recipes_select ON public.recipes FOR SELECT TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id()));
CREATE POLICY recipes_write ON public.recipes FOR ALL TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (created_by = (SELECT public.current_user_id()) OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (created_by = (SELECT public.current_user_id()) OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'));
CREATE POLICY recipe_ingredients_select ON public.recipe_ingredients FOR SELECT TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id()));
CREATE POLICY recipe_ingredients_write ON public.recipe_ingredients FOR ALL TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND EXISTS (SELECT FROM public.recipes r WHERE r.id = recipe_id))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND EXISTS (SELECT FROM public.recipes r WHERE r.id = recipe_id
                       AND (r.created_by = (SELECT public.current_user_id())
                            OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN')));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.recipes, public.recipe_ingredients TO authenticated;

-- consents: the subject and the grantee see them; the subject (or a super admin) grants and revokes.
CREATE POLICY consents_select ON healthcare.consents FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (subject_user_id = (SELECT public.current_user_id())
         OR grantee_user_id = (SELECT public.current_user_id())
         OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'));
CREATE POLICY consents_write ON healthcare.consents FOR ALL TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (subject_user_id = (SELECT public.current_user_id())
                OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (subject_user_id = (SELECT public.current_user_id())
                OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'));
GRANT SELECT, INSERT, UPDATE ON healthcare.consents TO authenticated;

-- emergency_access_grants: the grantee, the patient (transparency) and super admins (review) see
-- them; rows are created only by emergency_health_access(); super admins record the review.
CREATE POLICY emergency_access_grants_select ON healthcare.emergency_access_grants FOR SELECT TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (grantee_user_id = (SELECT public.current_user_id())
                OR patient_user_id = (SELECT public.current_user_id())
                OR (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN'));
CREATE POLICY emergency_access_grants_review ON healthcare.emergency_access_grants FOR UPDATE TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN')
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
GRANT SELECT ON healthcare.emergency_access_grants TO authenticated;
GRANT UPDATE (reviewed_at, reviewed_by, review_outcome, encrypted_review_notes)
    ON healthcare.emergency_access_grants TO authenticated;

-- Knowledge shared by all tenants: read-only for runtime roles.
GRANT SELECT ON clinical.drug_classes, clinical.drug_ingredients, clinical.drug_aliases, clinical.foods,
    clinical.allergen_groups, clinical.condition_terms, clinical.interaction_pairs,
    clinical.knowledge_imports TO authenticated;

-- interaction_overrides: the tenant's clinical advisors and super admins re-grade or disable pairs.
CREATE POLICY interaction_overrides_select ON clinical.interaction_overrides FOR SELECT TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id()));
CREATE POLICY interaction_overrides_write ON clinical.interaction_overrides FOR ALL TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN'))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN'));
GRANT SELECT, INSERT, UPDATE, DELETE ON clinical.interaction_overrides TO authenticated;

-- drug_interactions: visible exactly like the patient's medications.
CREATE POLICY drug_interactions_select ON clinical.drug_interactions FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (user_id = (SELECT public.current_user_id())
         OR (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')
         OR public.can_access_family_data(user_id, 'MEDICATIONS')
         OR public.has_emergency_access(user_id)));
CREATE POLICY drug_interactions_write ON clinical.drug_interactions FOR ALL TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN'))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN'));
GRANT SELECT, INSERT, UPDATE, DELETE ON clinical.drug_interactions TO authenticated;

-- clinical_rules: everyone reads the global rules and their tenant's; the tenant's clinical
-- advisors and super admins write their tenant's rules; global rules are written by operators.
CREATE POLICY clinical_rules_select ON clinical.clinical_rules FOR SELECT TO authenticated
    USING (tenant_id IS NULL OR tenant_id = (SELECT public.current_tenant_id()));
CREATE POLICY clinical_rules_write ON clinical.clinical_rules FOR ALL TO authenticated
    USING (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN'))
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN'));
CREATE POLICY clinical_rule_versions_select ON clinical.clinical_rule_versions FOR SELECT TO authenticated
    USING (tenant_id IS NULL OR tenant_id = (SELECT public.current_tenant_id()));
CREATE POLICY clinical_rule_versions_insert ON clinical.clinical_rule_versions FOR INSERT TO authenticated
    WITH CHECK (tenant_id = (SELECT public.current_tenant_id())
           AND (SELECT public.current_healthcare_role()) IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN'));
GRANT SELECT, INSERT, UPDATE, DELETE ON clinical.clinical_rules TO authenticated;
GRANT SELECT, INSERT ON clinical.clinical_rule_versions TO authenticated;

-- audit: super admins read their tenant's trail, users their own rows; append-only: INSERT and
-- SELECT are the only privileges, and a trigger refuses UPDATE/DELETE from anyone but the owner.
CREATE POLICY audit_read ON audit.audit_logs FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND ((SELECT public.current_healthcare_role()) = 'SUPER_ADMIN' OR user_id = (SELECT public.current_user_id())));
CREATE POLICY audit_append ON audit.audit_logs FOR INSERT TO authenticated WITH CHECK (
    tenant_id = (SELECT public.current_tenant_id())
    AND user_id IS NOT DISTINCT FROM (SELECT public.current_user_id()));
CREATE POLICY audit_archive_read ON audit.audit_logs_archive FOR SELECT TO authenticated USING (
    tenant_id = (SELECT public.current_tenant_id())
    AND (SELECT public.current_healthcare_role()) = 'SUPER_ADMIN');
GRANT SELECT, INSERT ON audit.audit_logs TO authenticated;
GRANT SELECT ON audit.audit_logs_archive, audit.retention_policy TO authenticated;
"""

TRIGGERS = """
-- Audit of every PHI write: names the end user from the context (and the database role), keeps
-- old/new values with every encrypted_ column replaced by a digest of its ciphertext, so the trail
-- shows what changed without holding plaintext or ciphertext.
CREATE FUNCTION audit.redact_phi(row_data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_object_agg(key,
        CASE WHEN key LIKE 'encrypted\\_%' AND value <> 'null'::jsonb
             THEN pg_catalog.to_jsonb('sha256:' || pg_catalog.left(pg_catalog.encode(
                      pg_catalog.sha256(pg_catalog.convert_to(value #>> '{}', 'UTF8')), 'hex'), 16))
             WHEN key = 'wrapped_key' THEN '"[redacted]"'::jsonb
             ELSE value END)
    FROM pg_catalog.jsonb_each(row_data)
$$;

CREATE FUNCTION public.trigger_audit_phi_access() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    rec jsonb := CASE WHEN TG_OP = 'DELETE' THEN pg_catalog.to_jsonb(OLD) ELSE pg_catalog.to_jsonb(NEW) END;
    patient text := COALESCE(rec ->> 'user_id', rec ->> 'subject_user_id', rec ->> 'patient_user_id');
BEGIN
    INSERT INTO audit.audit_logs (tenant_id, user_id, db_role, action, resource_type, resource_id, patient_id,
                                  old_values, new_values, phi_accessed, risk_score, compliance_flags,
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
            true,
            CASE TG_OP WHEN 'DELETE' THEN 0.6 WHEN 'UPDATE' THEN 0.3 ELSE 0.2 END,
            CASE WHEN public.current_user_id() IS NULL THEN ARRAY['NO_END_USER'] ELSE ARRAY[]::text[] END,
            -- Set by the service per transaction next to the RLS context; NULL for operators.
            NULLIF(pg_catalog.current_setting('app.client_addr', true), ''),
            NULLIF(pg_catalog.current_setting('app.user_agent', true), ''));
    RETURN NULL;
END
$$;

-- Append-only: nobody but the owner (retention runs as the owner) may change or remove audit rows.
CREATE FUNCTION audit.refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
    IF current_user <> 'praneya_owner' THEN
        RAISE EXCEPTION 'audit.audit_logs is append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit.audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_audit_change();
CREATE TRIGGER audit_logs_archive_append_only BEFORE UPDATE OR DELETE ON audit.audit_logs_archive
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_audit_change();

-- health_profiles.version counts every change to the profile's clinical content or to its
-- medications, allergies and conditions. The app's own refresh of the integrity hash and
-- verification time does not count.
CREATE FUNCTION healthcare.bump_profile_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
    -- A changed version means a child row changed (bump_parent_profile_version): count it once,
    -- whatever value was written, so nobody can set the version to an arbitrary number.
    IF NEW.version IS DISTINCT FROM OLD.version
       OR (pg_catalog.to_jsonb(NEW) - ARRAY['data_integrity_hash', 'last_verified', 'version', 'updated_at'])
       IS DISTINCT FROM (pg_catalog.to_jsonb(OLD) - ARRAY['data_integrity_hash', 'last_verified', 'version', 'updated_at']) THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := pg_catalog.now();
    ELSE
        NEW.version := OLD.version;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER health_profiles_version BEFORE UPDATE ON healthcare.health_profiles
    FOR EACH ROW EXECUTE FUNCTION healthcare.bump_profile_version();

-- SECURITY DEFINER: a clinical advisor adding a medication must move the profile's version even
-- where the profile policy would not let that statement update the profile row.
CREATE FUNCTION healthcare.bump_parent_profile_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    profile text := CASE WHEN TG_OP = 'DELETE' THEN OLD.health_profile_id ELSE NEW.health_profile_id END;
BEGIN
    UPDATE healthcare.health_profiles SET version = version + 1, updated_at = pg_catalog.now()
        WHERE id = profile;
    IF TG_OP = 'UPDATE' AND OLD.health_profile_id <> NEW.health_profile_id THEN
        UPDATE healthcare.health_profiles SET version = version + 1, updated_at = pg_catalog.now()
            WHERE id = OLD.health_profile_id;
    END IF;
    RETURN NULL;
END
$$;

-- Health rows carry the patient's user_id; it must be the profile's owner.
CREATE FUNCTION healthcare.check_profile_owner() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
BEGIN
    -- A row aimed at another tenant is left to row-level security to refuse: answering here, with
    -- the owner's rights and before RLS, would tell the caller what exists in that tenant.
    IF public.current_tenant_id() IS NOT NULL AND NEW.tenant_id IS DISTINCT FROM public.current_tenant_id() THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT FROM healthcare.health_profiles p
                   WHERE p.id = NEW.health_profile_id AND p.user_id = NEW.user_id AND p.tenant_id = NEW.tenant_id) THEN
        RAISE EXCEPTION '%.user_id does not own health profile %', TG_TABLE_NAME, NEW.health_profile_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

-- A family has at most max_members members. Locks the account row so concurrent joins serialise.
CREATE FUNCTION public.enforce_family_size() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
    cap integer;
    n integer;
BEGIN
    -- Another tenant's family: row-level security refuses it; say nothing about its size first.
    IF public.current_tenant_id() IS NOT NULL AND NEW.tenant_id IS DISTINCT FROM public.current_tenant_id() THEN
        RETURN NEW;
    END IF;
    SELECT max_members INTO cap FROM public.family_accounts WHERE id = NEW.family_account_id FOR UPDATE;
    SELECT pg_catalog.count(*) INTO n FROM public.family_members
        WHERE family_account_id = NEW.family_account_id AND id <> NEW.id;
    IF n + 1 > cap THEN
        RAISE EXCEPTION 'family account % already has % members (max_members = %)', NEW.family_account_id, n, cap
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER family_members_size BEFORE INSERT OR UPDATE OF family_account_id ON public.family_members
    FOR EACH ROW EXECUTE FUNCTION public.enforce_family_size();

-- Only a super admin changes a healthcare role or MFA flag; nobody promotes themselves.
CREATE FUNCTION public.guard_user_privileges() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
    IF current_user <> 'praneya_owner'
       AND (NEW.healthcare_role IS DISTINCT FROM OLD.healthcare_role OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
            OR NEW.mfa_enabled IS DISTINCT FROM OLD.mfa_enabled)
       AND public.current_healthcare_role() IS DISTINCT FROM 'SUPER_ADMIN' THEN
        RAISE EXCEPTION 'only a super admin may change a healthcare role or MFA flag'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_guard_privileges BEFORE UPDATE ON public.users
    FOR EACH ROW EXECUTE FUNCTION public.guard_user_privileges();
"""

PHI_WRITE_AUDITED = [
    "public.users",
    "public.family_members",
    "healthcare.health_profiles",
    "healthcare.medications",
    "healthcare.allergies",
    "healthcare.conditions",
    "healthcare.biometric_readings",
    "healthcare.consents",
    "healthcare.emergency_access_grants",
    "clinical.drug_interactions",
]


def _audit_trigger(table: str) -> str:
    short = table.split(".")[1]
    return (
        f"CREATE TRIGGER audit_{short}_phi AFTER INSERT OR UPDATE OR DELETE ON {table}\n"
        "    FOR EACH ROW EXECUTE FUNCTION public.trigger_audit_phi_access();\n"
    )


def _child_triggers(table: str) -> str:
    short = table.split(".")[1]
    return (
        f"CREATE TRIGGER {short}_profile_owner BEFORE INSERT OR UPDATE OF user_id, health_profile_id ON {table}\n"
        "    FOR EACH ROW EXECUTE FUNCTION healthcare.check_profile_owner();\n"
    )


def _version_trigger(table: str) -> str:
    short = table.split(".")[1]
    return (
        f"CREATE TRIGGER {short}_profile_version AFTER INSERT OR UPDATE OR DELETE ON {table}\n"
        "    FOR EACH ROW EXECUTE FUNCTION healthcare.bump_parent_profile_version();\n"
    )


INDEXES = """
-- Seed performance section, adapted: email is encrypted, so the tenant lookup is on its blind index.
CREATE INDEX idx_users_tenant_email ON public.users (tenant_id, email_blind_index)
    INCLUDE (healthcare_role, subscription_tier);
CREATE INDEX idx_family_members_permissions ON public.family_members (user_id, permission_level, can_view_health_data);
CREATE INDEX idx_family_members_family ON public.family_members (family_account_id) INCLUDE (user_id, is_minor);
CREATE INDEX idx_family_accounts_tenant ON public.family_accounts (tenant_id, primary_user_id);
CREATE INDEX idx_medications_profile_active ON healthcare.medications (health_profile_id, is_active)
    INCLUDE (encrypted_generic_name, encrypted_dosage);
CREATE INDEX idx_medications_patient_active ON healthcare.medications (tenant_id, user_id) WHERE is_active;
CREATE INDEX idx_allergies_emergency ON healthcare.allergies (health_profile_id, severity)
    WHERE severity IN ('SEVERE', 'ANAPHYLACTIC') AND is_active = true;
CREATE INDEX idx_allergies_patient_active ON healthcare.allergies (tenant_id, user_id) WHERE is_active;
CREATE INDEX idx_conditions_patient_active ON healthcare.conditions (tenant_id, user_id) WHERE is_active;
CREATE INDEX idx_conditions_profile ON healthcare.conditions (health_profile_id);
CREATE INDEX idx_allergies_profile ON healthcare.allergies (health_profile_id);
CREATE INDEX idx_biometric_readings_trend ON healthcare.biometric_readings (user_id, reading_type, taken_at DESC)
    INCLUDE (encrypted_value, trend_direction);
CREATE INDEX idx_biometric_readings_profile ON healthcare.biometric_readings (health_profile_id);
CREATE INDEX idx_health_profiles_tenant ON healthcare.health_profiles (tenant_id, user_id);
CREATE INDEX idx_consents_grantee_active ON healthcare.consents (grantee_user_id, subject_user_id)
    INCLUDE (categories, expires_at) WHERE revoked_at IS NULL;
CREATE INDEX idx_consents_subject ON healthcare.consents (tenant_id, subject_user_id);
CREATE INDEX idx_emergency_grants_grantee ON healthcare.emergency_access_grants (grantee_user_id, patient_user_id, expires_at);
CREATE INDEX idx_emergency_grants_review_queue ON healthcare.emergency_access_grants (tenant_id, granted_at)
    WHERE reviewed_at IS NULL;
CREATE INDEX idx_audit_logs_phi_access ON audit.audit_logs (phi_accessed, "timestamp" DESC) WHERE phi_accessed = true;
CREATE INDEX idx_audit_logs_tenant_time ON audit.audit_logs (tenant_id, "timestamp" DESC);
CREATE INDEX idx_audit_logs_user ON audit.audit_logs (user_id, "timestamp" DESC);
CREATE INDEX idx_audit_archive_time ON audit.audit_logs_archive ("timestamp");
CREATE INDEX idx_clinical_rules_type_active ON clinical.clinical_rules (rule_type, is_active, severity) WHERE is_active = true;
CREATE INDEX idx_clinical_rules_tenant ON clinical.clinical_rules (tenant_id);
CREATE INDEX idx_interaction_pairs_a ON clinical.interaction_pairs (a_kind, a_name);
CREATE INDEX idx_interaction_pairs_b ON clinical.interaction_pairs (b_kind, b_name);
CREATE INDEX idx_drug_interactions_medication ON clinical.drug_interactions (medication_id);
CREATE INDEX idx_drug_interactions_patient ON clinical.drug_interactions (tenant_id, user_id);
CREATE INDEX idx_recipes_tenant ON public.recipes (tenant_id);
CREATE INDEX idx_recipe_ingredients_recipe ON public.recipe_ingredients (tenant_id, recipe_id);
CREATE INDEX idx_tenant_data_keys_active ON public.tenant_data_keys (tenant_id) WHERE retired_at IS NULL;
"""


def upgrade() -> None:
    op.execute(SCHEMAS)
    op.execute(ENUMS)
    op.execute(CONTEXT_FUNCTIONS)
    op.execute(TABLES)
    op.execute(AUDIT)
    op.execute("SELECT audit.ensure_audit_partitions((now() - interval '1 month')::date, 13)")
    op.execute(
        "CREATE TABLE audit.audit_logs_default PARTITION OF audit.audit_logs DEFAULT;\n"
        "SELECT audit.secure_audit_partition('audit_logs_default');"
    )
    op.execute("".join(_rls(t) for t in TENANT_OWNED))
    op.execute(ACCESS_FUNCTIONS)
    op.execute("".join(_phi_policies(t, c) for t, c in PHI_TABLES))
    op.execute(OTHER_POLICIES)
    op.execute(TRIGGERS)
    op.execute("".join(_audit_trigger(t) for t in PHI_WRITE_AUDITED))
    children = ["healthcare.medications", "healthcare.allergies", "healthcare.conditions",
                "healthcare.biometric_readings"]
    op.execute("".join(_child_triggers(t) for t in children))
    op.execute("".join(_version_trigger(t) for t in children[:3]))
    op.execute(INDEXES)


def downgrade() -> None:
    # Roles are cluster-wide and may serve other databases: they stay.
    op.execute("DROP SCHEMA healthcare, audit, clinical CASCADE")
    op.execute("ALTER DEFAULT PRIVILEGES FOR ROLE praneya_owner GRANT EXECUTE ON FUNCTIONS TO PUBLIC")
    op.execute(
        "DROP TABLE public.recipe_ingredients, public.recipes, public.family_members, public.family_accounts, "
        "public.users, public.tenant_data_keys, public.tenants CASCADE"
    )
    op.execute(
        "DROP FUNCTION public.current_tenant_id(), public.current_user_id(), public.current_healthcare_role(), "
        "public.is_family_member(text), public.can_access_family_data(text, public.consent_category), "
        "public.has_emergency_access(text), public.trigger_audit_phi_access(), public.enforce_family_size(), "
        "public.guard_user_privileges()"
    )
    op.execute(
        "DROP TYPE public.plan_type, public.healthcare_role, public.subscription_tier, public.interaction_severity, "
        "public.interaction_type, public.evidence_level, public.allergen_category, public.allergy_severity, "
        "public.family_relationship, public.permission_level, public.clinical_rule_type, public.rule_severity, "
        "public.rule_status, public.consent_category, public.emergency_reason_code"
    )

"""The database as SQLAlchemy sees it: Core tables mirroring the migrations.

The migrations are the source of truth (policies, triggers and functions live only there); these
tables exist for typed queries in store/ and for Alembic's drift check (`alembic check`), which
fails when they and the migrations disagree. Monthly audit partitions are not declared here.
"""

import enum

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Double,
    Enum,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import INTERVAL, JSONB

metadata = MetaData()


class AllergenCategory(enum.StrEnum):
    DRUG = "DRUG"
    FOOD = "FOOD"
    ENVIRONMENTAL = "ENVIRONMENTAL"
    INSECT = "INSECT"
    LATEX = "LATEX"
    OTHER = "OTHER"


class AllergySeverity(enum.StrEnum):
    MILD = "MILD"
    MODERATE = "MODERATE"
    SEVERE = "SEVERE"
    ANAPHYLACTIC = "ANAPHYLACTIC"


class ClinicalRuleType(enum.StrEnum):
    DRUG_INTERACTION = "DRUG_INTERACTION"
    ALLERGY_CHECK = "ALLERGY_CHECK"
    FOOD_INTERACTION = "FOOD_INTERACTION"
    DUPLICATE_THERAPY = "DUPLICATE_THERAPY"
    AGE_RESTRICTION = "AGE_RESTRICTION"
    PREGNANCY = "PREGNANCY"
    RENAL_DOSING = "RENAL_DOSING"
    CONDITION = "CONDITION"
    LAB_VALUE = "LAB_VALUE"


class ConsentCategory(enum.StrEnum):
    PROFILE = "PROFILE"
    MEDICATIONS = "MEDICATIONS"
    ALLERGIES = "ALLERGIES"
    CONDITIONS = "CONDITIONS"
    BIOMETRICS = "BIOMETRICS"


class EmergencyReasonCode(enum.StrEnum):
    ETREAT = "ETREAT"
    BTG = "BTG"


class EvidenceLevel(enum.StrEnum):
    UNKNOWN = "UNKNOWN"
    EXPERT_OPINION = "EXPERT_OPINION"
    CASE_REPORTS = "CASE_REPORTS"
    OBSERVATIONAL = "OBSERVATIONAL"
    CLINICAL_TRIAL = "CLINICAL_TRIAL"
    SYSTEMATIC_REVIEW = "SYSTEMATIC_REVIEW"


class FamilyRelationship(enum.StrEnum):
    SELF = "SELF"
    SPOUSE = "SPOUSE"
    PARTNER = "PARTNER"
    CHILD = "CHILD"
    PARENT = "PARENT"
    SIBLING = "SIBLING"
    GRANDPARENT = "GRANDPARENT"
    GRANDCHILD = "GRANDCHILD"
    GUARDIAN = "GUARDIAN"
    OTHER = "OTHER"


class HealthcareRole(enum.StrEnum):
    END_USER = "END_USER"
    CLINICAL_ADVISOR = "CLINICAL_ADVISOR"
    SUPER_ADMIN = "SUPER_ADMIN"
    EMERGENCY_RESPONDER = "EMERGENCY_RESPONDER"


class InteractionSeverity(enum.StrEnum):
    UNKNOWN = "UNKNOWN"
    MINOR = "MINOR"
    MODERATE = "MODERATE"
    MAJOR = "MAJOR"
    CONTRAINDICATED = "CONTRAINDICATED"


class InteractionType(enum.StrEnum):
    PHARMACODYNAMIC = "PHARMACODYNAMIC"
    PHARMACOKINETIC = "PHARMACOKINETIC"
    FOOD = "FOOD"
    DUPLICATE = "DUPLICATE"
    OTHER = "OTHER"


class PermissionLevel(enum.StrEnum):
    VIEW_ONLY = "VIEW_ONLY"
    MEMBER = "MEMBER"
    GUARDIAN = "GUARDIAN"
    ADMIN = "ADMIN"


class PlanType(enum.StrEnum):
    BASIC = "BASIC"
    PROFESSIONAL = "PROFESSIONAL"
    ENTERPRISE = "ENTERPRISE"


class RuleSeverity(enum.StrEnum):
    INFO = "INFO"
    LOW = "LOW"
    MODERATE = "MODERATE"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class RuleStatus(enum.StrEnum):
    ACTIVE = "active"
    SHADOW = "shadow"
    RETIRED = "retired"


class SubscriptionTier(enum.StrEnum):
    BASIC = "BASIC"
    ENHANCED = "ENHANCED"
    PREMIUM = "PREMIUM"


t_audit_logs_archive = Table(
    "audit_logs_archive",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text),
    Column("user_id", Text),
    Column("db_role", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("resource_type", Text),
    Column("resource_id", Text),
    Column("patient_id", Text),
    Column("outcome", Text, nullable=False),
    Column("old_values", JSONB),
    Column("new_values", JSONB),
    Column("details", JSONB),
    Column("phi_accessed", Boolean, nullable=False),
    Column("risk_score", Double(53), nullable=False),
    Column("compliance_flags", ARRAY(Text()), nullable=False),
    Column("ip_address", Text),
    Column("user_agent", Text),
    Column("timestamp", DateTime(True), primary_key=True),
    Column("row_hash", Text),
    Column("archived_at", DateTime(True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", "timestamp", name="audit_logs_archive_pkey"),
    Index("idx_audit_archive_time", "timestamp"),
    Index("idx_audit_archive_tenant_time", "tenant_id", "timestamp"),
    schema="audit",
)

t_retention_policy = Table(
    "retention_policy",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=text("true")),
    Column("retention_period", INTERVAL, nullable=False, server_default=text("'7 years'::interval")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint("id", name="retention_policy_id_check"),
    CheckConstraint(
        "retention_period >= '6 years'::interval", name="retention_policy_retention_period_check"
    ),
    PrimaryKeyConstraint("id", name="retention_policy_pkey"),
    schema="audit",
)

t_allergen_groups = Table(
    "allergen_groups",
    metadata,
    Column("name", Text, primary_key=True),
    Column(
        "category",
        Enum(
            AllergenCategory,
            values_callable=lambda cls: [member.value for member in cls],
            name="allergen_category",
        ),
        nullable=False,
    ),
    Column("definition", JSONB, nullable=False),
    CheckConstraint("name = lower(btrim(name))", name="allergen_groups_name_check"),
    PrimaryKeyConstraint("name", name="allergen_groups_pkey"),
    schema="clinical",
)

t_condition_terms = Table(
    "condition_terms",
    metadata,
    Column("id", Text, primary_key=True),
    Column("synonyms", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    Column("icd10", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    Column("snomed", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    CheckConstraint("id ~ '^[a-z0-9_]+$'::text", name="condition_terms_id_check"),
    CheckConstraint(
        "array_to_string(snomed, ','::text) ~ '^([1-9][0-9]{5,17}(,|$))*$'::text", name="condition_terms_snomed_check"
    ),
    PrimaryKeyConstraint("id", name="condition_terms_pkey"),
    schema="clinical",
)

t_drug_aliases = Table(
    "drug_aliases",
    metadata,
    Column("alias", Text, primary_key=True),
    Column("ingredients", ARRAY(Text()), nullable=False),
    CheckConstraint("alias = lower(btrim(alias))", name="drug_aliases_alias_check"),
    CheckConstraint("cardinality(ingredients) > 0", name="drug_aliases_ingredients_check"),
    PrimaryKeyConstraint("alias", name="drug_aliases_pkey"),
    schema="clinical",
)

t_drug_classes = Table(
    "drug_classes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("atc_code", Text),
    Column("source", Text),
    CheckConstraint("id ~ '^[a-z0-9_]+$'::text", name="drug_classes_id_check"),
    CheckConstraint("kind = ANY (ARRAY['ATC'::text, 'CLINICAL'::text])", name="drug_classes_kind_check"),
    PrimaryKeyConstraint("id", name="drug_classes_pkey"),
    schema="clinical",
)

t_drug_ingredients = Table(
    "drug_ingredients",
    metadata,
    Column("name", Text, primary_key=True),
    Column("atc_code", Text),
    Column("classes", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    CheckConstraint("name = lower(btrim(name))", name="drug_ingredients_name_check"),
    PrimaryKeyConstraint("name", name="drug_ingredients_pkey"),
    schema="clinical",
)

t_foods = Table(
    "foods",
    metadata,
    Column("name", Text, primary_key=True),
    Column("groups", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    CheckConstraint("name = lower(btrim(name))", name="foods_name_check"),
    PrimaryKeyConstraint("name", name="foods_pkey"),
    schema="clinical",
)

t_interaction_pairs = Table(
    "interaction_pairs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("a_kind", Text, nullable=False),
    Column("a_name", Text, nullable=False),
    Column("b_kind", Text, nullable=False),
    Column("b_name", Text, nullable=False),
    Column(
        "severity",
        Enum(
            RuleSeverity, values_callable=lambda cls: [member.value for member in cls], name="rule_severity"
        ),
        nullable=False,
    ),
    Column("source_severity", Text, nullable=False),
    Column(
        "interaction_type",
        Enum(
            InteractionType,
            values_callable=lambda cls: [member.value for member in cls],
            name="interaction_type",
        ),
        nullable=False,
        server_default=text("'OTHER'::interaction_type"),
    ),
    Column(
        "evidence_level",
        Enum(
            EvidenceLevel, values_callable=lambda cls: [member.value for member in cls], name="evidence_level"
        ),
        nullable=False,
        server_default=text("'UNKNOWN'::evidence_level"),
    ),
    Column("description", Text, nullable=False, server_default=text("''::text")),
    Column("recommendation", Text, nullable=False, server_default=text("''::text")),
    Column("avoid_combination", Boolean, nullable=False, server_default=text("false")),
    Column("source", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("imported_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("unresolved", Boolean, nullable=False, server_default=text("false")),  # migration 0007
    CheckConstraint("ROW(a_kind, a_name) <= ROW(b_kind, b_name)", name="interaction_pairs_ordered"),
    CheckConstraint(
        "a_kind = ANY (ARRAY['ingredient'::text, 'class'::text, 'food'::text, 'food_group'::text])",
        name="interaction_pairs_a_kind_check",
    ),
    CheckConstraint(
        "b_kind = ANY (ARRAY['ingredient'::text, 'class'::text, 'food'::text, 'food_group'::text])",
        name="interaction_pairs_b_kind_check",
    ),
    PrimaryKeyConstraint("id", name="interaction_pairs_pkey"),
    UniqueConstraint(
        "a_kind", "a_name", "b_kind", "b_name", "source", name="interaction_pairs_pair_source_key"
    ),
    Index("idx_interaction_pairs_a", "a_kind", "a_name"),
    Index("idx_interaction_pairs_b", "b_kind", "b_name"),
    schema="clinical",
)

t_knowledge_imports = Table(
    "knowledge_imports",
    metadata,
    Column(
        "id",
        BigInteger,
        Identity(
            always=True, start=1, increment=1, minvalue=1, maxvalue=9223372036854775807, cycle=False, cache=1
        ),
        primary_key=True,
        autoincrement=True,
    ),
    Column("source", Text, nullable=False),
    Column("file_sha256", Text, nullable=False),
    Column("rows_total", Integer, nullable=False),
    Column("rows_changed", Integer, nullable=False),
    Column("imported_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("imported_by", Text),
    PrimaryKeyConstraint("id", name="knowledge_imports_pkey"),
    schema="clinical",
)

t_tenants = Table(
    "tenants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("subdomain", Text),
    Column(
        "plan_type",
        Enum(PlanType, values_callable=lambda cls: [member.value for member in cls], name="plan_type"),
        nullable=False,
        server_default=text("'BASIC'::plan_type"),
    ),
    Column("encryption_key_id", Text, nullable=False),
    Column("hipaa_compliant", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint("length(btrim(name)) > 0", name="tenants_name_check"),
    PrimaryKeyConstraint("id", name="tenants_pkey"),
    UniqueConstraint("subdomain", name="tenants_subdomain_key"),
)

t_clinical_rules = Table(
    "clinical_rules",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text),
    Column("rule_key", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column(
        "rule_type",
        Enum(
            ClinicalRuleType,
            values_callable=lambda cls: [member.value for member in cls],
            name="clinical_rule_type",
        ),
        nullable=False,
    ),
    Column("name", Text, nullable=False),
    Column("description", Text),
    Column("conditions", JSONB, nullable=False),
    Column("actions", JSONB, nullable=False),
    Column("applies_to", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column(
        "severity",
        Enum(
            RuleSeverity, values_callable=lambda cls: [member.value for member in cls], name="rule_severity"
        ),
        nullable=False,
    ),
    Column(
        "evidence_level",
        Enum(
            EvidenceLevel, values_callable=lambda cls: [member.value for member in cls], name="evidence_level"
        ),
        nullable=False,
        server_default=text("'UNKNOWN'::evidence_level"),
    ),
    Column(
        "min_tier",
        Enum(
            SubscriptionTier,
            values_callable=lambda cls: [member.value for member in cls],
            name="subscription_tier",
        ),
        nullable=False,
        server_default=text("'BASIC'::subscription_tier"),
    ),
    Column(
        "status",
        Enum(RuleStatus, values_callable=lambda cls: [member.value for member in cls], name="rule_status"),
        nullable=False,
        server_default=text("'active'::rule_status"),
    ),
    Column("is_active", Boolean, Computed("(status <> 'retired'::rule_status)", persisted=True)),
    Column("definition", JSONB, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint("rule_key ~ '^[a-z0-9][a-z0-9-]{0,99}$'::text", name="clinical_rules_rule_key_check"),
    CheckConstraint("version >= 1", name="clinical_rules_version_check"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="clinical_rules_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="clinical_rules_pkey"),
    Index("clinical_rules_scope_key", text("COALESCE(tenant_id, ''::text)"), "rule_key", unique=True),
    Index("idx_clinical_rules_tenant", "tenant_id"),
    Index(
        "idx_clinical_rules_type_active",
        "rule_type",
        "is_active",
        "severity",
        postgresql_where="(is_active = true)",
    ),
    schema="clinical",
)

t_interaction_overrides = Table(
    "interaction_overrides",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("pair_id", Text, primary_key=True),
    Column(
        "severity",
        Enum(
            RuleSeverity, values_callable=lambda cls: [member.value for member in cls], name="rule_severity"
        ),
    ),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    Column("reason", Text, nullable=False),
    Column("updated_by", Text),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint("disabled OR severity IS NOT NULL", name="interaction_overrides_does_something"),
    CheckConstraint("length(btrim(reason)) > 0", name="interaction_overrides_reason_check"),
    ForeignKeyConstraint(
        ["pair_id"],
        ["clinical.interaction_pairs.id"],
        ondelete="CASCADE",
        name="interaction_overrides_pair_id_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="interaction_overrides_tenant_id_fkey"),
    PrimaryKeyConstraint("tenant_id", "pair_id", name="interaction_overrides_pkey"),
    schema="clinical",
)

t_recipes = Table(
    "recipes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("created_by", Text),
    Column("is_public", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint("length(btrim(title)) > 0", name="recipes_title_check"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="recipes_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="recipes_pkey"),
    UniqueConstraint("tenant_id", "id", name="recipes_tenant_id_id_key"),
    Index("idx_recipes_tenant", "tenant_id"),
)

t_tenant_data_keys = Table(
    "tenant_data_keys",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("key_version", Integer, primary_key=True),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("master_key_id", Text, nullable=False),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("retired_at", DateTime(True)),
    CheckConstraint("key_version >= 1", name="tenant_data_keys_key_version_check"),
    ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], ondelete="CASCADE", name="tenant_data_keys_tenant_id_fkey"
    ),
    PrimaryKeyConstraint("tenant_id", "key_version", name="tenant_data_keys_pkey"),
    Index("idx_tenant_data_keys_active", "tenant_id", postgresql_where="(retired_at IS NULL)"),
)

t_users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("encrypted_email", Text),
    Column("email_blind_index", Text),
    Column("firebase_uid", Text),
    Column("encrypted_first_name", Text),
    Column("encrypted_last_name", Text),
    Column("encrypted_phone", Text),
    Column("encrypted_date_of_birth", Text),
    Column(
        "healthcare_role",
        Enum(
            HealthcareRole,
            values_callable=lambda cls: [member.value for member in cls],
            name="healthcare_role",
        ),
        nullable=False,
        server_default=text("'END_USER'::healthcare_role"),
    ),
    Column(
        "subscription_tier",
        Enum(
            SubscriptionTier,
            values_callable=lambda cls: [member.value for member in cls],
            name="subscription_tier",
        ),
        nullable=False,
        server_default=text("'BASIC'::subscription_tier"),
    ),
    Column("mfa_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="users_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="users_pkey"),
    UniqueConstraint("firebase_uid", name="users_firebase_uid_key"),
    UniqueConstraint("tenant_id", "email_blind_index", name="users_tenant_email_key"),
    UniqueConstraint("tenant_id", "id", name="users_tenant_id_id_key"),
    Index(
        "idx_users_tenant_email",
        "tenant_id",
        "email_blind_index",
        postgresql_include=["healthcare_role", "subscription_tier"],
    ),
)

t_audit_logs = Table(
    "audit_logs",
    metadata,
    Column("id", Text, primary_key=True, server_default=text("(gen_random_uuid())::text")),
    Column("tenant_id", Text),
    Column("user_id", Text),
    Column("db_role", Text, nullable=False, server_default=text("CURRENT_USER")),
    Column("action", Text, nullable=False),
    Column("resource_type", Text),
    Column("resource_id", Text),
    Column("patient_id", Text),
    Column("outcome", Text, nullable=False, server_default=text("'SUCCESS'::text")),
    Column("old_values", JSONB),
    Column("new_values", JSONB),
    Column("details", JSONB),
    Column("phi_accessed", Boolean, nullable=False, server_default=text("false")),
    Column("risk_score", Double(53), nullable=False, server_default=text("0.0")),
    Column("compliance_flags", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    Column("ip_address", Text),
    Column("user_agent", Text),
    Column("timestamp", DateTime(True), primary_key=True, server_default=text("now()")),
    Column("row_hash", Text),
    CheckConstraint(
        "risk_score >= 0::double precision AND risk_score <= 1::double precision",
        name="audit_logs_risk_score_check",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="audit_logs_tenant_id_fkey"),
    ForeignKeyConstraint(["user_id"], ["users.id"], name="audit_logs_user_id_fkey"),
    PrimaryKeyConstraint("id", "timestamp", name="audit_logs_pkey"),
    Index(
        "idx_audit_logs_phi_access",
        "phi_accessed",
        text('"timestamp" DESC'),
        postgresql_where="(phi_accessed = true)",
    ),
    Index("idx_audit_logs_tenant_time", "tenant_id", text('"timestamp" DESC')),
    Index("idx_audit_logs_user", "user_id", text('"timestamp" DESC')),
    schema="audit",
)

t_clinical_rule_versions = Table(
    "clinical_rule_versions",
    metadata,
    Column("rule_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("tenant_id", Text),
    Column("definition", JSONB, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("synced_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("synced_by", Text),
    ForeignKeyConstraint(
        ["rule_id"],
        ["clinical.clinical_rules.id"],
        ondelete="CASCADE",
        name="clinical_rule_versions_rule_id_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="clinical_rule_versions_tenant_id_fkey"),
    PrimaryKeyConstraint("rule_id", "version", name="clinical_rule_versions_pkey"),
    schema="clinical",
)

t_consents = Table(
    "consents",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("subject_user_id", Text, nullable=False),
    Column("grantee_user_id", Text, nullable=False),
    Column(
        "categories",
        ARRAY(
            Enum(
                ConsentCategory,
                values_callable=lambda cls: [member.value for member in cls],
                name="consent_category",
            )
        ),
        nullable=False,
    ),
    Column("encrypted_purpose", Text),
    Column("granted_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("expires_at", DateTime(True)),
    Column("revoked_at", DateTime(True)),
    CheckConstraint("cardinality(categories) > 0", name="consents_categories_check"),
    CheckConstraint("expires_at IS NULL OR expires_at > granted_at", name="consents_expiry_after_grant"),
    CheckConstraint("revoked_at IS NULL OR revoked_at >= granted_at", name="consents_revoked_after_grant"),
    CheckConstraint("subject_user_id <> grantee_user_id", name="consents_not_self"),
    ForeignKeyConstraint(
        ["tenant_id", "grantee_user_id"], ["users.tenant_id", "users.id"], name="consents_grantee_fkey"
    ),
    ForeignKeyConstraint(
        ["tenant_id", "subject_user_id"], ["users.tenant_id", "users.id"], name="consents_subject_fkey"
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="consents_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="consents_pkey"),
    Index(
        "idx_consents_grantee_active",
        "grantee_user_id",
        "subject_user_id",
        postgresql_include=["categories", "expires_at"],
        postgresql_where="(revoked_at IS NULL)",
    ),
    Index("idx_consents_subject", "tenant_id", "subject_user_id"),
    schema="healthcare",
)

t_emergency_access_grants = Table(
    "emergency_access_grants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("patient_user_id", Text, nullable=False),
    Column("grantee_user_id", Text, nullable=False),
    Column(
        "reason_code",
        Enum(
            EmergencyReasonCode,
            values_callable=lambda cls: [member.value for member in cls],
            name="emergency_reason_code",
        ),
        nullable=False,
    ),
    Column("encrypted_reason_text", Text, nullable=False),
    Column("granted_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("expires_at", DateTime(True), nullable=False),
    Column("reviewed_at", DateTime(True)),
    Column("reviewed_by", Text),
    Column("review_outcome", Text),
    Column("encrypted_review_notes", Text),
    Column("ended_at", DateTime(True)),
    Column("ended_by", Text),
    Column("encrypted_end_reason", Text),
    CheckConstraint(
        "(reviewed_at IS NULL) = (review_outcome IS NULL)", name="emergency_access_grants_review"
    ),
    CheckConstraint("expires_at > granted_at", name="emergency_access_grants_window"),
    CheckConstraint(
        "review_outcome = ANY (ARRAY['APPROPRIATE'::text, 'INAPPROPRIATE'::text, 'NEEDS_FOLLOW_UP'::text])",
        name="emergency_access_grants_review_outcome_check",
    ),
    ForeignKeyConstraint(
        ["tenant_id", "grantee_user_id"],
        ["users.tenant_id", "users.id"],
        name="emergency_access_grants_grantee_fkey",
    ),
    ForeignKeyConstraint(
        ["tenant_id", "patient_user_id"],
        ["users.tenant_id", "users.id"],
        name="emergency_access_grants_patient_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="emergency_access_grants_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="emergency_access_grants_pkey"),
    UniqueConstraint("tenant_id", "id", "patient_user_id", name="emergency_access_grants_tenant_patient_key"),
    Index("idx_emergency_grants_grantee", "grantee_user_id", "patient_user_id", "expires_at"),
    Index(
        "idx_emergency_grants_review_queue",
        "tenant_id",
        "granted_at",
        postgresql_where="(reviewed_at IS NULL)",
    ),
    schema="healthcare",
)

t_emergency_access_reviews = Table(
    "emergency_access_reviews",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("grant_id", Text, nullable=False),
    Column("patient_user_id", Text, nullable=False),
    Column("reviewer_user_id", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("encrypted_notes", Text),
    Column("reviewed_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint(
        "outcome = ANY (ARRAY['APPROPRIATE'::text, 'INAPPROPRIATE'::text, 'NEEDS_FOLLOW_UP'::text])",
        name="emergency_access_reviews_outcome_check",
    ),
    ForeignKeyConstraint(
        ["tenant_id", "grant_id", "patient_user_id"],
        [
            "healthcare.emergency_access_grants.tenant_id",
            "healthcare.emergency_access_grants.id",
            "healthcare.emergency_access_grants.patient_user_id",
        ],
        name="emergency_access_reviews_grant_fkey",
    ),
    ForeignKeyConstraint(
        ["tenant_id", "reviewer_user_id"],
        ["users.tenant_id", "users.id"],
        name="emergency_access_reviews_reviewer_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="emergency_access_reviews_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="emergency_access_reviews_pkey"),
    Index("idx_emergency_access_reviews_grant", "grant_id", "reviewed_at"),
    schema="healthcare",
)

t_health_profiles = Table(
    "health_profiles",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column(
        "subscription_tier",
        Enum(
            SubscriptionTier,
            values_callable=lambda cls: [member.value for member in cls],
            name="subscription_tier",
        ),
        nullable=False,
        server_default=text("'BASIC'::subscription_tier"),
    ),
    Column("encrypted_sex", Text),
    Column("encrypted_pregnancy_status", Text),
    Column("encrypted_blood_type", Text),
    Column("encrypted_notes", Text),
    Column("data_integrity_hash", Text),
    Column("last_verified", DateTime(True)),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    # 0014_patient_demographics
    Column("encrypted_birth_date", Text),
    Column("encrypted_pregnancy_recorded_at", Text),
    Column("encrypted_gestational_age", Text),
    Column("encrypted_estimated_delivery_date", Text),
    Column("encrypted_lactation_status", Text),
    Column("encrypted_lactation_recorded_at", Text),
    CheckConstraint("version >= 1", name="health_profiles_version_check"),
    ForeignKeyConstraint(
        ["tenant_id", "user_id"], ["users.tenant_id", "users.id"], name="health_profiles_user_fkey"
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="health_profiles_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="health_profiles_pkey"),
    UniqueConstraint("tenant_id", "id", name="health_profiles_tenant_id_id_key"),
    UniqueConstraint("user_id", name="health_profiles_user_id_key"),
    Index("idx_health_profiles_tenant", "tenant_id", "user_id"),
    schema="healthcare",
)

t_family_accounts = Table(
    "family_accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("primary_user_id", Text, nullable=False),
    Column("encrypted_family_name", Text),
    Column(
        "subscription_tier",
        Enum(
            SubscriptionTier,
            values_callable=lambda cls: [member.value for member in cls],
            name="subscription_tier",
        ),
        nullable=False,
        server_default=text("'BASIC'::subscription_tier"),
    ),
    Column("max_members", Integer, nullable=False, server_default=text("6")),
    Column("privacy_settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint("max_members >= 1 AND max_members <= 20", name="family_accounts_max_members_check"),
    ForeignKeyConstraint(
        ["tenant_id", "primary_user_id"],
        ["users.tenant_id", "users.id"],
        name="family_accounts_primary_user_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="family_accounts_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="family_accounts_pkey"),
    UniqueConstraint("tenant_id", "id", name="family_accounts_tenant_id_id_key"),
    Index("idx_family_accounts_tenant", "tenant_id", "primary_user_id"),
)

t_recipe_ingredients = Table(
    "recipe_ingredients",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("recipe_id", Text, nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("quantity", Numeric),
    Column("unit", Text),
    CheckConstraint('"position" >= 0', name="recipe_ingredients_position_check"),
    CheckConstraint("length(btrim(name)) > 0", name="recipe_ingredients_name_check"),
    ForeignKeyConstraint(
        ["tenant_id", "recipe_id"],
        ["recipes.tenant_id", "recipes.id"],
        ondelete="CASCADE",
        name="recipe_ingredients_recipe_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="recipe_ingredients_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="recipe_ingredients_pkey"),
    UniqueConstraint("recipe_id", "position", name="recipe_ingredients_recipe_position_key"),
    Index("idx_recipe_ingredients_recipe", "tenant_id", "recipe_id"),
)

t_allergies = Table(
    "allergies",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("health_profile_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("encrypted_allergen", Text, nullable=False),
    Column(
        "allergen_category",
        Enum(
            AllergenCategory,
            values_callable=lambda cls: [member.value for member in cls],
            name="allergen_category",
        ),
        nullable=False,
    ),
    Column(
        "severity",
        Enum(
            AllergySeverity,
            values_callable=lambda cls: [member.value for member in cls],
            name="allergy_severity",
        ),
        nullable=False,
    ),
    Column("encrypted_reactions", Text),
    Column("encrypted_emergency_medication", Text),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("encrypted_coding", Text),  # migration 0006: {"system", "code"[, "display"]} as JSON
    # migration 0012: the EHR's identifier of the record, encrypted, and its keyed index (store/crypto.py)
    Column("encrypted_external_id", Text),
    Column("external_id_index", Text),
    CheckConstraint(
        "(encrypted_external_id IS NULL) = (external_id_index IS NULL)", name="allergies_external_id_pair"
    ),
    UniqueConstraint("tenant_id", "user_id", "external_id_index", name="allergies_patient_external_id_key"),
    ForeignKeyConstraint(
        ["tenant_id", "health_profile_id"],
        ["healthcare.health_profiles.tenant_id", "healthcare.health_profiles.id"],
        ondelete="CASCADE",
        name="allergies_profile_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="allergies_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="allergies_pkey"),
    Index(
        "idx_allergies_emergency",
        "health_profile_id",
        "severity",
        postgresql_where=(
            "((severity = ANY (ARRAY['SEVERE'::allergy_severity, 'ANAPHYLACTIC'::allergy_severity]))"
            " AND (is_active = true))"
        ),
    ),
    Index("idx_allergies_patient_active", "tenant_id", "user_id", postgresql_where="is_active"),
    Index("idx_allergies_profile", "health_profile_id"),
    schema="healthcare",
)

t_biometric_readings = Table(
    "biometric_readings",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("health_profile_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("reading_type", Text, nullable=False),
    Column("encrypted_value", Text, nullable=False),
    Column("encrypted_unit", Text),
    Column("trend_direction", Text),
    Column("taken_at", DateTime(True), nullable=False),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint(
        "reading_type ~ '^[a-z][a-z0-9_]{0,39}$'::text", name="biometric_readings_reading_type_check"
    ),
    CheckConstraint(
        "trend_direction = ANY (ARRAY['UP'::text, 'DOWN'::text, 'STABLE'::text])",
        name="biometric_readings_trend_direction_check",
    ),
    ForeignKeyConstraint(
        ["tenant_id", "health_profile_id"],
        ["healthcare.health_profiles.tenant_id", "healthcare.health_profiles.id"],
        ondelete="CASCADE",
        name="biometric_readings_profile_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="biometric_readings_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="biometric_readings_pkey"),
    Index("idx_biometric_readings_profile", "health_profile_id"),
    Index(
        "idx_biometric_readings_trend",
        "user_id",
        "reading_type",
        text("taken_at DESC"),
        postgresql_include=["encrypted_value", "trend_direction"],
    ),
    schema="healthcare",
)

t_conditions = Table(
    "conditions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("health_profile_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("encrypted_name", Text, nullable=False),
    Column("encrypted_code", Text),
    Column("encrypted_notes", Text),
    Column("is_critical", Boolean, nullable=False, server_default=text("false")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("diagnosed_on", Date),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    # migration 0012: the EHR's identifier of the record, encrypted, and its keyed index (store/crypto.py)
    Column("encrypted_external_id", Text),
    Column("external_id_index", Text),
    CheckConstraint(
        "(encrypted_external_id IS NULL) = (external_id_index IS NULL)", name="conditions_external_id_pair"
    ),
    UniqueConstraint("tenant_id", "user_id", "external_id_index", name="conditions_patient_external_id_key"),
    ForeignKeyConstraint(
        ["tenant_id", "health_profile_id"],
        ["healthcare.health_profiles.tenant_id", "healthcare.health_profiles.id"],
        ondelete="CASCADE",
        name="conditions_profile_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="conditions_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="conditions_pkey"),
    Index("idx_conditions_patient_active", "tenant_id", "user_id", postgresql_where="is_active"),
    Index("idx_conditions_profile", "health_profile_id"),
    schema="healthcare",
)

t_medications = Table(
    "medications",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("health_profile_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("encrypted_generic_name", Text, nullable=False),
    Column("encrypted_brand_name", Text),
    Column("encrypted_dosage", Text),
    Column("encrypted_frequency", Text),
    Column("encrypted_route", Text),
    Column("encrypted_indication", Text),
    Column("encrypted_prescribed_by", Text),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("is_emergency_medication", Boolean, nullable=False, server_default=text("false")),
    Column("started_on", Date),
    Column("ended_on", Date),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("encrypted_coding", Text),  # migration 0006: {"system", "code"[, "display"]} as JSON
    # migration 0012: the EHR's identifier of the record, encrypted, and its keyed index (store/crypto.py)
    Column("encrypted_external_id", Text),
    Column("external_id_index", Text),
    CheckConstraint(
        "(encrypted_external_id IS NULL) = (external_id_index IS NULL)", name="medications_external_id_pair"
    ),
    UniqueConstraint("tenant_id", "user_id", "external_id_index", name="medications_patient_external_id_key"),
    CheckConstraint(
        "ended_on IS NULL OR started_on IS NULL OR ended_on >= started_on", name="medications_dates"
    ),
    ForeignKeyConstraint(
        ["tenant_id", "health_profile_id"],
        ["healthcare.health_profiles.tenant_id", "healthcare.health_profiles.id"],
        ondelete="CASCADE",
        name="medications_profile_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="medications_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="medications_pkey"),
    Index("idx_medications_patient_active", "tenant_id", "user_id", postgresql_where="is_active"),
    Index(
        "idx_medications_profile_active",
        "health_profile_id",
        "is_active",
        postgresql_include=["encrypted_generic_name", "encrypted_dosage"],
    ),
    schema="healthcare",
)

t_family_members = Table(
    "family_members",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("family_account_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column(
        "relationship",
        Enum(
            FamilyRelationship,
            values_callable=lambda cls: [member.value for member in cls],
            name="family_relationship",
        ),
        nullable=False,
    ),
    Column(
        "permission_level",
        Enum(
            PermissionLevel,
            values_callable=lambda cls: [member.value for member in cls],
            name="permission_level",
        ),
        nullable=False,
        server_default=text("'MEMBER'::permission_level"),
    ),
    Column("can_view_health_data", Boolean, nullable=False, server_default=text("false")),
    Column("is_minor", Boolean, nullable=False, server_default=text("false")),
    Column("minor_until", Date),
    Column("guardian_consent", Boolean, nullable=False, server_default=text("false")),
    Column("joined_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint("NOT guardian_consent OR is_minor", name="family_members_guardian_consent_only_minors"),
    CheckConstraint("NOT is_minor OR minor_until IS NOT NULL", name="family_members_minor_has_end"),
    ForeignKeyConstraint(
        ["tenant_id", "family_account_id"],
        ["family_accounts.tenant_id", "family_accounts.id"],
        ondelete="CASCADE",
        name="family_members_family_fkey",
    ),
    ForeignKeyConstraint(
        ["tenant_id", "user_id"], ["users.tenant_id", "users.id"], name="family_members_user_fkey"
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="family_members_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="family_members_pkey"),
    UniqueConstraint("family_account_id", "user_id", name="family_members_family_user_key"),
    Index("idx_family_members_family", "family_account_id", postgresql_include=["user_id", "is_minor"]),
    Index("idx_family_members_permissions", "user_id", "permission_level", "can_view_health_data"),
)

t_drug_interactions = Table(
    "drug_interactions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("medication_id", Text, nullable=False),
    Column("interacting_medication_id", Text),
    Column("encrypted_interacting_substance", Text),
    Column("pair_id", Text),
    Column(
        "severity",
        Enum(
            InteractionSeverity,
            values_callable=lambda cls: [member.value for member in cls],
            name="interaction_severity",
        ),
        nullable=False,
    ),
    Column(
        "interaction_type",
        Enum(
            InteractionType,
            values_callable=lambda cls: [member.value for member in cls],
            name="interaction_type",
        ),
        nullable=False,
    ),
    Column("description", Text),
    Column("recommendation", Text),
    Column("avoid_combination", Boolean, nullable=False, server_default=text("false")),
    Column(
        "evidence_level",
        Enum(
            EvidenceLevel, values_callable=lambda cls: [member.value for member in cls], name="evidence_level"
        ),
        nullable=False,
        server_default=text("'UNKNOWN'::evidence_level"),
    ),
    Column("detected_at", DateTime(True), nullable=False, server_default=text("now()")),
    ForeignKeyConstraint(
        ["interacting_medication_id"],
        ["healthcare.medications.id"],
        ondelete="CASCADE",
        name="drug_interactions_interacting_medication_id_fkey",
    ),
    ForeignKeyConstraint(
        ["medication_id"],
        ["healthcare.medications.id"],
        ondelete="CASCADE",
        name="drug_interactions_medication_id_fkey",
    ),
    ForeignKeyConstraint(
        ["pair_id"],
        ["clinical.interaction_pairs.id"],
        ondelete="SET NULL",
        name="drug_interactions_pair_id_fkey",
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="drug_interactions_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="drug_interactions_pkey"),
    Index("idx_drug_interactions_medication", "medication_id"),
    Index("idx_drug_interactions_patient", "tenant_id", "user_id"),
    schema="clinical",
)

t_drug_salt_words = Table(
    "drug_salt_words",
    metadata,
    Column("word", Text, primary_key=True),
    CheckConstraint("word = lower(btrim(word))", name="drug_salt_words_word_check"),
    PrimaryKeyConstraint("word", name="drug_salt_words_pkey"),
    schema="clinical",
)

t_audit_seals = Table(
    "audit_seals",
    metadata,
    Column("tenant_id", Text),  # NULL: the operator chain (audit rows without a tenant)
    Column("seq", BigInteger, nullable=False),
    Column("range_start", DateTime(True)),
    Column("range_end", DateTime(True), nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("rows_digest", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("seal_hash", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("sealed_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint("range_start IS NULL OR range_end > range_start", name="audit_seals_range"),
    CheckConstraint("seq >= 1", name="audit_seals_seq_check"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="audit_seals_tenant_id_fkey"),
    UniqueConstraint("tenant_id", "seq", name="audit_seals_chain_seq", postgresql_nulls_not_distinct=True),
    schema="audit",
)

t_alert_feedback = Table(
    "alert_feedback",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("user_id", Text),
    Column("evaluation_id", Text, nullable=False),
    Column("alert_id", Text, nullable=False),
    Column("rule_id", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("reason_code", Text),
    Column("encrypted_comment", Text),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("client_id", Text),
    CheckConstraint("(user_id IS NULL) <> (client_id IS NULL)", name="alert_feedback_one_author"),
    CheckConstraint(
        "outcome <> 'OVERRIDDEN'::text OR reason_code IS NOT NULL", name="alert_feedback_override_has_reason"
    ),
    CheckConstraint(
        "outcome = ANY (ARRAY['ACCEPTED'::text, 'OVERRIDDEN'::text])", name="alert_feedback_outcome_check"
    ),
    CheckConstraint(
        "reason_code = ANY (ARRAY['NOT_CLINICALLY_RELEVANT'::text, 'BENEFIT_OUTWEIGHS_RISK'::text,"
        " 'PATIENT_ALREADY_TOLERATES'::text, 'WILL_MONITOR'::text, 'DOSE_ADJUSTED'::text, 'ALERT_INCORRECT'::text,"
        " 'OTHER_REASON'::text])",
        name="alert_feedback_reason_code_check",
    ),
    ForeignKeyConstraint(
        ["tenant_id", "user_id"], ["users.tenant_id", "users.id"], name="alert_feedback_user_fkey"
    ),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="alert_feedback_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="alert_feedback_pkey"),
    ForeignKeyConstraint(["client_id"], ["clients.id"], name="alert_feedback_client_id_fkey"),
    Index(
        "alert_feedback_once",
        "evaluation_id",
        "alert_id",
        text("COALESCE(user_id, ''::text)"),
        text("COALESCE(client_id, ''::text)"),
        unique=True,
    ),
    Index("idx_alert_feedback_rule", "tenant_id", "rule_id", "created_at"),
    schema="clinical",
)

t_vocabulary_releases = Table(
    "vocabulary_releases",
    metadata,
    Column(
        "id",
        BigInteger,
        Identity(
            always=True, start=1, increment=1, minvalue=1, maxvalue=9223372036854775807, cycle=False, cache=1
        ),
        primary_key=True,
        autoincrement=True,
    ),
    Column("source", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("content_sha256", Text, nullable=False),
    Column("concept_count", BigInteger, nullable=False, server_default=text("0")),
    Column("counts", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("imported_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("imported_by", Text),
    CheckConstraint(
        "kind = ANY (ARRAY['full'::text, 'prescribe'::text, 'shipped'::text])", name="vocabulary_releases_kind_check"
    ),
    CheckConstraint("content_sha256 ~ '^[0-9a-f]{64}$'::text", name="vocabulary_releases_content_sha256_check"),
    PrimaryKeyConstraint("id", name="vocabulary_releases_pkey"),
    Index("idx_vocabulary_releases_stream", "source", "kind", "id"),
    schema="clinical",
)

t_drug_concepts = Table(
    "drug_concepts",
    metadata,
    Column("system", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("tty", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("ingredients", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    Column("product", Text),
    Column("strength", Text),
    Column("dose_form", Text),
    Column("unii", Text),
    Column("source", Text, nullable=False),
    Column("release_id", BigInteger, nullable=False),
    Column("first_release_id", BigInteger, nullable=False),
    Column("retired_release_id", BigInteger),
    Column("active", Boolean, Computed("(retired_release_id IS NULL)", persisted=True)),
    CheckConstraint("system = ANY (ARRAY['rxnorm'::text, 'ndc'::text])", name="drug_concepts_system_check"),
    CheckConstraint(
        "CASE system WHEN 'rxnorm'::text THEN code ~ '^[0-9]{1,10}$'::text ELSE code ~ '^[0-9]{11}$'::text END",
        name="drug_concepts_code_shape",
    ),
    CheckConstraint("system <> 'ndc'::text OR product IS NOT NULL", name="drug_concepts_ndc_product"),
    PrimaryKeyConstraint("system", "code", name="drug_concepts_pkey"),
    Index("idx_drug_concepts_product", "product", postgresql_where="(product IS NOT NULL)"),
    schema="clinical",
)

t_drug_concept_history = Table(
    "drug_concept_history",
    metadata,
    Column(
        "id",
        BigInteger,
        Identity(
            always=True, start=1, increment=1, minvalue=1, maxvalue=9223372036854775807, cycle=False, cache=1
        ),
        primary_key=True,
        autoincrement=True,
    ),
    Column("system", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("release_id", BigInteger, nullable=False),
    Column("change", Text, nullable=False),
    Column("old_values", JSONB),
    Column("new_values", JSONB),
    Column("recorded_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint(
        "change = ANY (ARRAY['added'::text, 'renamed'::text, 'ingredients_changed'::text, 'changed'::text,"
        " 'retired'::text, 'reinstated'::text])",
        name="drug_concept_history_change_check",
    ),
    PrimaryKeyConstraint("id", name="drug_concept_history_pkey"),
    Index("idx_drug_concept_history_concept", "system", "code", "id"),
    Index("idx_drug_concept_history_release", "release_id"),
    schema="clinical",
)

t_clients = Table(
    "clients",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("issuer", Text, nullable=False),
    Column("jwks", JSONB),
    Column("jwks_url", Text),
    Column("algorithms", ARRAY(Text()), nullable=False),
    Column("scopes", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    Column("fhir_server_hosts", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    Column("cors_origins", ARRAY(Text()), nullable=False, server_default=text("'{}'::text[]")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("updated_at", DateTime(True), nullable=False, server_default=text("now()")),
    Column("rotated_at", DateTime(True)),
    Column("deactivated_at", DateTime(True)),
    CheckConstraint("jwks IS NOT NULL OR jwks_url IS NOT NULL", name="clients_has_keys"),
    CheckConstraint("is_active = (deactivated_at IS NULL)", name="clients_deactivated"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="clients_tenant_id_fkey"),
    PrimaryKeyConstraint("id", name="clients_pkey"),
    UniqueConstraint("tenant_id", "id", name="clients_tenant_id_id_key"),
    Index("clients_active_issuer_key", "issuer", unique=True, postgresql_where="is_active"),
)

t_client_token_uses = Table(
    "client_token_uses",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("client_id", Text, primary_key=True),
    Column("jti", Text, primary_key=True),
    Column("expires_at", DateTime(True), nullable=False),
    Column("used_at", DateTime(True), nullable=False, server_default=text("now()")),
    CheckConstraint("length(jti) >= 1 AND length(jti) <= 255", name="client_token_uses_jti_check"),
    ForeignKeyConstraint(
        ["tenant_id", "client_id"],
        ["clients.tenant_id", "clients.id"],
        ondelete="CASCADE",
        name="client_token_uses_client_fkey",
    ),
    PrimaryKeyConstraint("client_id", "jti", name="client_token_uses_pkey"),
    Index("idx_client_token_uses_expiry", "expires_at"),
)

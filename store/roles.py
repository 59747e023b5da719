"""Cluster-wide roles, created idempotently.

Roles belong to the cluster, not the database: several databases on one cluster (one per test
worker, staging beside dev) share them, so creation tolerates a concurrent creator and never drops.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

__all__ = ["bootstrap_roles"]

_BOOTSTRAP = """
DO $bootstrap$
BEGIN
    -- Owns every object and runs migrations. BYPASSRLS because the SECURITY DEFINER policy helpers
    -- it owns must read family and consent rows whatever the caller may see (RLS is FORCED, so
    -- ownership alone would not exempt them). It cannot log in.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'praneya_owner') THEN
        BEGIN
            CREATE ROLE praneya_owner NOLOGIN BYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    -- What policies name (as in the seed). Never logs in directly.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
        BEGIN
            CREATE ROLE authenticated NOLOGIN NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    -- The only role the service and its tests use for data access: owns nothing, bypasses nothing.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'praneya_app') THEN
        BEGIN
            CREATE ROLE praneya_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'praneya_app'
               AND (rolsuper OR rolbypassrls OR NOT rolinherit)) THEN
        ALTER ROLE praneya_app NOSUPERUSER NOBYPASSRLS INHERIT;
    END IF;
    IF NOT pg_catalog.pg_has_role('praneya_app', 'authenticated', 'MEMBER') THEN
        GRANT authenticated TO praneya_app;
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, 'praneya_owner', 'MEMBER') THEN
        EXECUTE pg_catalog.format('GRANT praneya_owner TO %I', current_user);
    END IF;
END
$bootstrap$;
"""

_DATABASE_GRANTS = """
DO $grants$
BEGIN
    -- PostgreSQL 15 no longer lets PUBLIC create in schema public; the owner needs it for the
    -- seed's public tables, the runtime role only USAGE.
    EXECUTE pg_catalog.format('GRANT CREATE, USAGE ON SCHEMA public TO praneya_owner');
    EXECUTE pg_catalog.format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO praneya_app', current_database());
    EXECUTE pg_catalog.format('GRANT CREATE ON DATABASE %I TO praneya_owner', current_database());
END
$grants$;
"""


def bootstrap_roles(connection: Connection) -> None:
    connection.execute(text(_BOOTSTRAP))
    connection.execute(text(_DATABASE_GRANTS))

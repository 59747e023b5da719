"""Alembic environment: runs every migration as praneya_owner, so that role owns every object.

The connecting role (DATABASE_URL) must be able to create roles; it bootstraps the cluster-wide
roles idempotently (several databases on one cluster share them) and then `SET ROLE praneya_owner`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from store import models
from store.config import admin_database_url
from store.roles import bootstrap_roles

config = context.config
target_metadata = models.metadata

# Objects that live only in migrations and have no model: monthly audit partitions are created by
# audit.ensure_audit_partitions(), not declared one by one.
_PARTITION_PREFIXES = ("audit_logs_p", "audit_logs_default")


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    if type_ == "table" and name == "alembic_version":
        return False
    if type_ == "table" and name is not None and name.startswith(_PARTITION_PREFIXES):
        return False
    if type_ == "index" and name is not None and name.startswith(_PARTITION_PREFIXES):
        return False
    return True


def run_migrations_online() -> None:
    url = config.attributes.get("database_url") or admin_database_url()
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        bootstrap_roles(connection)
        connection.commit()
        # A migration waiting on a lock held by the running service must give up, not queue every
        # request behind it; a runaway statement must not hold locks for ever.
        connection.execute(text("SET lock_timeout = '10s'"))
        connection.execute(text("SET statement_timeout = '10min'"))
        connection.execute(text("SET ROLE praneya_owner"))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_schemas=True,
            include_object=include_object,
            compare_type=True,
            version_table_schema="public",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: migrations bootstrap roles on a live connection")
run_migrations_online()

"""`praneya deploy`: the seed's deployment steps, in order, logged, stopping at the first failure.

1 prerequisites and connection, 2 extensions, 3 migrations (which create the schemas and tables),
4 schemas, 5 row-level security, 6 audit triggers, 7 indexes, 8 backup readiness, 9 HIPAA
validation, 10 demo data (when asked).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from sqlalchemy import Connection, create_engine, text

from store.config import PROJECT_ROOT, admin_database_url

__all__ = ["DeployError", "deploy"]


class DeployError(RuntimeError):
    """A step failed; the message says what to fix."""


class NeedsAttention(str):
    """A step's finding that does not stop the deployment but needs the operator: reported as WARNING,
    never as "ok"."""


Step = Callable[[Connection], str]

_SCHEMAS = ("public", "healthcare", "audit", "clinical")
_PHI_AUDITED = (
    "healthcare.health_profiles",
    "healthcare.medications",
    "healthcare.allergies",
    "healthcare.conditions",
    "healthcare.biometric_readings",
    "healthcare.consents",
    "healthcare.emergency_access_grants",
    "public.users",
)


def _prerequisites(conn: Connection) -> str:
    version = int(conn.execute(text("SHOW server_version_num")).scalar_one())
    if version < 140000:
        raise DeployError(f"PostgreSQL 14 or newer is required (server is {version})")
    can_create_role = conn.execute(
        text("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    )
    if not can_create_role.scalar_one():
        raise DeployError("the DATABASE_URL role must be able to create roles (CREATEROLE or superuser)")
    who = conn.execute(text("SELECT current_user")).scalar_one()
    return f"PostgreSQL {version // 10000}.{version % 100}, connected as {who}"


def _extensions(conn: Connection) -> str:
    preload = conn.execute(text("SHOW shared_preload_libraries")).scalar_one()
    if "pg_stat_statements" in preload:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        return "pg_stat_statements installed"
    return (
        "pg_stat_statements not preloaded (optional: add it to shared_preload_libraries for "
        "identify_slow_queries()); gen_random_uuid is built in"
    )


def _schemas(conn: Connection) -> str:
    present = set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())
    missing = [s for s in _SCHEMAS if s not in present]
    if missing:
        raise DeployError(f"schemas missing after migration: {', '.join(missing)}")
    return ", ".join(_SCHEMAS)


def _rls(conn: Connection) -> str:
    bad = (
        conn.execute(
            text("""
        SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(:s)
          AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')
          AND NOT (c.relrowsecurity AND c.relforcerowsecurity)"""),
            {"s": list(_SCHEMAS)},
        )
        .scalars()
        .all()
    )
    if bad:
        raise DeployError(f"row-level security is not forced on: {', '.join(bad)}")
    n = conn.execute(
        text("SELECT count(*) FROM pg_policies WHERE schemaname = ANY(:s)"), {"s": list(_SCHEMAS)}
    ).scalar_one()
    return f"forced on every tenant-owned table; {n} policies"


def _audit_triggers(conn: Connection) -> str:
    missing = [
        t
        for t in _PHI_AUDITED
        if not conn.execute(
            text(
                "SELECT EXISTS (SELECT FROM pg_trigger tr JOIN pg_proc p ON p.oid = tr.tgfoid"
                " WHERE tr.tgrelid = CAST(:t AS regclass) AND p.proname = 'trigger_audit_phi_access')"
            ),
            {"t": t},
        ).scalar_one()
    ]
    if missing:
        raise DeployError(f"PHI audit trigger missing on: {', '.join(missing)}")
    return f"present on {len(_PHI_AUDITED)} PHI tables"


def _indexes(conn: Connection) -> str:
    invalid = (
        conn.execute(
            text(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid"
            )
        )
        .scalars()
        .all()
    )
    if invalid:
        raise DeployError(f"invalid indexes (a failed CREATE INDEX CONCURRENTLY?): {', '.join(invalid)}")
    n = conn.execute(
        text("SELECT count(*) FROM pg_indexes WHERE schemaname = ANY(:s) AND indexname LIKE 'idx_%'"),
        {"s": list(_SCHEMAS)},
    ).scalar_one()
    if n < 30:
        raise DeployError(f"only {n} performance indexes found; the migrations create more than 30")
    conn.execute(text("SELECT public.update_healthcare_statistics()"))
    return f"{n} performance indexes valid; statistics updated"


def _backup(conn: Connection) -> str:
    pitr = conn.execute(text("SELECT public.prepare_point_in_time_recovery()")).scalar_one()
    dump = shutil.which("pg_dump") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None
    )
    if dump is None:
        raise DeployError("pg_dump not found: install the PostgreSQL client tools for `praneya backup`")
    parts = (shutil.which("pg_dump") and "pg_dump available") or f"pg_dump at {dump}"
    if pitr["ready"]:
        return f"{parts}; point-in-time recovery: WAL archiving ready"
    # Without WAL archiving a restore loses everything since the last dump: not "ok", and the
    # message names every setting point-in-time recovery needs, with what the server has now.
    return NeedsAttention(
        "point-in-time recovery is not configured: set wal_level=replica, archive_mode=on and an"
        " archive_command that ships WAL off the host (postgresql.conf, then restart; now"
        f" wal_level={pitr['wal_level']}, archive_mode={pitr['archive_mode']}); {parts}"
    )


def _hipaa(conn: Connection) -> str:
    tenants = conn.execute(text("SELECT id FROM public.tenants ORDER BY id")).scalars().all()
    worst = []
    for t in tenants:
        report = conn.execute(text("SELECT public.validate_hipaa_compliance(:t)"), {"t": t}).scalar_one()
        failed = [c["check"] for c in report["checks"] if not c["passed"]]
        hard = [c for c in failed if c not in ("ssl",)]
        if hard:
            raise DeployError(
                f"tenant {t}: HIPAA checks failed: {', '.join(hard)}; {'; '.join(report['recommendations'])}"
            )
        if failed:
            worst.append(f"{t}: {', '.join(failed)}")
    note = f" (warnings: {'; '.join(worst)})" if worst else ""
    return f"{len(tenants)} tenant(s) validated{note}"


def deploy(*, demo: bool, log_path: Path | None = None, out: TextIO = sys.stdout) -> None:

    log_path = log_path or PROJECT_ROOT / ".local" / "deployment.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(admin_database_url())
    with log_path.open("a", encoding="utf-8") as logf:

        def record(line: str) -> None:
            stamped = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {line}"
            print(line, file=out)
            logf.write(stamped + "\n")
            logf.flush()

        warned: list[str] = []

        def step(number: int, title: str, fn: Callable[[], str]) -> None:
            try:
                detail = fn()
            except DeployError as exc:
                record(f"[{number:2}] {title}: FAILED: {exc}")
                raise
            except Exception as exc:  # noqa: BLE001 - any failure stops the deployment, named
                record(
                    f"[{number:2}] {title}: FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                )
                raise DeployError(f"step {number} ({title}) failed") from None
            status = "ok"
            if isinstance(detail, NeedsAttention):
                status = "WARNING"
                warned.append(title)
            record(f"[{number:2}] {title}: {status} — {detail}")

        def on_db(fn: Step) -> Callable[[], str]:
            def run() -> str:
                with engine.begin() as conn:
                    return fn(conn)

            return run

        record(f"deployment started (database {engine.url.render_as_string(hide_password=True)})")
        try:
            step(1, "prerequisites and connection", on_db(_prerequisites))
            step(2, "extensions", on_db(_extensions))
            step(3, "migrations", _migrate)
            step(4, "schemas", on_db(_schemas))
            step(5, "row-level security", on_db(_rls))
            step(6, "audit triggers", on_db(_audit_triggers))
            step(7, "indexes", on_db(_indexes))
            step(8, "backup readiness", on_db(_backup))
            step(9, "HIPAA validation", on_db(_hipaa))
            if demo:
                step(10, "demo data, knowledge and rules", _demo)
        finally:
            engine.dispose()
        record("deployment finished" + (f" with warnings: {', '.join(warned)} (see above)" if warned else ""))


def _migrate() -> str:
    from store import migrate

    migrate.upgrade()
    return "at head"


def _demo() -> str:
    from engine.ops.content import install_shipped_content

    failed = install_shipped_content()
    if failed is not None:
        raise DeployError(f"`praneya {failed}` failed (see above)")
    return "vocabulary, interactions, global rules and demo tenants in place"

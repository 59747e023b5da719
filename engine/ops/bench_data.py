"""The benchmark's database: the shipped content, synthetic knowledge up to scale, the patient mix.

Built once into a template database keyed by everything that went into it (migrations, shipped
content and rules, this module, the patient mix's code, the benchmark's master key); each run clones
the template in seconds, so only a first run (or a change to one of those) pays for the build.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, text

from engine.ops.bench_mix import PatientMix
from engine.ops.content import SHIPPED_CONTENT_STEPS
from store.config import PROJECT_ROOT, sqlalchemy_url

__all__ = [
    "ADVISORS",
    "SYNTH_SOURCE",
    "TENANT",
    "add_audit_rows",
    "bench_database",
    "drug_pool",
    "fingerprint",
    "install_content",
    "load_rules",
    "set_active_rules",
    "set_synthetic_pairs",
    "synthetic_entities",
]

TENANT = "bench-clinic"
ADVISORS = tuple(f"bench-advisor-{i}" for i in range(8))  # clinicians: each call carries one's token
SYNTH_SOURCE = "bench-synthetic"
MIX_VERSION = "mix-1"  # bump when the seeded content changes in a way the fingerprint cannot see


def _maintenance(server_url: str) -> psycopg.Connection[Any]:
    url = sqlalchemy_url(server_url).set(drivername="postgresql", database="postgres")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def fingerprint(patients: int, pairs: int, rules: int, master_key: Path) -> str:
    """Everything the seeded database depends on: when any of it changes, the template is rebuilt.
    The code that builds it counts by its source (not its files' bytes), so editing the rest of the
    benchmark does not throw the template away."""
    from engine.ops import bench_mix

    h = hashlib.sha256(f"{MIX_VERSION}|{patients}|{pairs}|{rules}|{len(ADVISORS)}".encode())
    builders = (install_content, synthetic_entities, set_synthetic_pairs, load_rules, bench_mix.seed_mix,
                bench_mix._one_seal_per_record)  # fmt: skip
    for fn in builders:
        h.update(inspect.getsource(fn).encode())
    h.update(repr((bench_mix.COMMON_DRUGS, bench_mix.ALLERGENS, bench_mix.CONDITIONS, bench_mix.LABS,
                   bench_mix.SIZES, SHIPPED_CONTENT_STEPS)).encode())  # fmt: skip
    sources = [
        *sorted((PROJECT_ROOT / "migrations").rglob("*.py")),
        *sorted(p for p in (PROJECT_ROOT / "rules").rglob("*") if p.is_file()),
        master_key,
    ]
    for path in sources:
        h.update(str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:12]


def bench_database(
    server_url: str, name: str, fingerprint: str, build: Callable[[str], dict[str, Any]], log: Callable[[str], None]
) -> tuple[str, dict[str, Any]]:
    """A fresh copy of the seeded template (built first when missing); returns its URL and the mix."""
    template = f"{name}_tpl_{fingerprint}"
    plan_file = PROJECT_ROOT / ".local" / "bench" / f"{template}.json"
    with _maintenance(server_url) as c:
        have = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone() is not None
    if not have or not plan_file.exists():
        from store import migrate
        from store.provision import recreate_database

        log(f"building the benchmark template {template} (first run only; later runs clone it) ...")
        started = time.perf_counter()
        building = f"{name}_building"
        url = recreate_database(server_url, building)
        migrate.upgrade(database_url=url)
        plan = build(url)
        # Frozen and analysed once here, so that no copy starts with hint bits to set, an unset
        # visibility map or autovacuum's first pass running under the measurements.
        plain = sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain, autocommit=True) as c:
            c.execute("VACUUM (FREEZE, ANALYZE)")
        with _maintenance(server_url) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(template)))
            rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
            c.execute(rename.format(sql.Identifier(building), sql.Identifier(template)))
        plan_file.write_text(json.dumps(plan))
        log(f"template built in {time.perf_counter() - started:.0f} s")
    with _maintenance(server_url) as c:
        # Older templates of this benchmark (their fingerprints no longer match anything) go.
        for (stale,) in c.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s", (f"{name}\\_tpl\\_%", template)
        ).fetchall():
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(stale)))
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    target = sqlalchemy_url(server_url).set(drivername="postgresql", database=name)
    return target.render_as_string(hide_password=False), json.loads(plan_file.read_text())


def install_content(db_url: str, log: Callable[[str], None]) -> None:
    """The shipped content, by the same `praneya` steps a deployment runs (demo tenants left out)."""
    for step in SHIPPED_CONTENT_STEPS:
        if step[0] == "demo":
            continue
        done = subprocess.run(
            [sys.executable, "-m", "engine.doors.cli", *step],
            cwd=PROJECT_ROOT,
            env={**os.environ, "DATABASE_URL": db_url},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"`praneya {' '.join(step)}` failed: {done.stderr[-2000:]}")
    log("shipped content installed (vocabulary and concept table, starter and mechanism pairs, rules)")


def synthetic_entities(admin: Engine) -> None:
    # Synthetic ingredients with classes of their own: realistic key-space, never relevant to the
    # benchmark patients (whose drugs are real), so they cost lookups, not alerts.
    with admin.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO clinical.drug_classes (id, name, kind) SELECT 'synth_class_' || g, 'Synthetic ' || g,"
                " 'CLINICAL' FROM generate_series(0, 99) g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO clinical.drug_ingredients (name, classes) SELECT 'synthdrug' || g,"
                " ARRAY['synth_class_' || (g % 100)] FROM generate_series(0, 2999) g"
            )
        )


def drug_pool(admin: Engine) -> list[str]:
    """Real ingredients that take part in the shipped interaction pairs: what the patients take."""
    with admin.connect() as conn:
        rows = conn.execute(
            text("""
            SELECT DISTINCT n FROM (
                SELECT a_name AS n FROM clinical.interaction_pairs WHERE a_kind = 'ingredient' AND source <> :s
                UNION SELECT b_name FROM clinical.interaction_pairs WHERE b_kind = 'ingredient' AND source <> :s) x
            WHERE n IN (SELECT name FROM clinical.drug_ingredients) ORDER BY n
        """),
            {"s": SYNTH_SOURCE},
        ).scalars()
        return list(rows)


def set_synthetic_pairs(admin: Engine, total: int) -> int:
    """Makes the knowledge base hold `total` pairs: the starter pairs plus synthetic pair 0..k-1."""
    with admin.begin() as conn:
        starter = int(
            conn.execute(
                text("SELECT count(*) FROM clinical.interaction_pairs WHERE source <> :s"), {"s": SYNTH_SOURCE}
            ).scalar_one()
        )
        want = max(0, total - starter)
        conn.execute(
            text("DELETE FROM clinical.interaction_pairs WHERE source = :s AND substr(id, 7)::int >= :w"),
            {"s": SYNTH_SOURCE, "w": want},
        )
        # Pair k joins synthdrug i = k mod 3000 with synthdrug (i + 1 + k div 3000) mod 3000: for k below
        # 1.5 million every unordered pair is distinct, and the pairs spread over the whole key space.
        conn.execute(
            text("""
            INSERT INTO clinical.interaction_pairs (id, a_kind, a_name, b_kind, b_name, severity, source_severity,
                interaction_type, evidence_level, description, recommendation, source, content_hash)
            SELECT 'synth-' || k, 'ingredient', least(a, b), 'ingredient', greatest(a, b), 'MODERATE', 'moderate',
                   'PHARMACOKINETIC', 'OBSERVATIONAL', 'synthetic pair ' || k, 'synthetic recommendation', :s,
                   md5(k::text)
            FROM (SELECT k, 'synthdrug' || (k % 3000) AS a, 'synthdrug' || ((k % 3000 + 1 + k / 3000) % 3000) AS b
                  FROM generate_series(0, :w - 1) k) x
            ON CONFLICT (id) DO NOTHING
        """),
            {"s": SYNTH_SOURCE, "w": want},
        )
        conn.execute(
            text(
                "INSERT INTO clinical.knowledge_imports (source, file_sha256, rows_total, rows_changed)"
                " VALUES (:s, 'bench', :n, 0)"
            ),
            {"s": SYNTH_SOURCE, "n": total},
        )
        return int(conn.execute(text("SELECT count(*) FROM clinical.interaction_pairs")).scalar_one())


def load_rules(admin: Engine, total_rules: int, log: Callable[[str], None]) -> None:
    from engine.rules import Rule, load_rule_files
    from store.knowledge_repo import sync_rules

    starter = [r.rule for r in load_rule_files([PROJECT_ROOT / "rules"]) if r.rule is not None]
    synthetic = []
    for i in range(max(0, total_rules - len(starter))):
        cls = f"synth_class_{i % 100}"
        doc = {
            "id": f"synth-rule-{i:05d}",
            "version": 1,
            "title": f"Synthetic rule {i}",
            "type": "DRUG_INTERACTION",
            "kind": "DRUG_DRUG_INTERACTION",
            "severity": "MODERATE",
            "evidence_level": "OBSERVATIONAL",
            "description": "synthetic",
            "applies_to": {"classes": [cls]},
            "when": {"and": [{"in": [cls, {"var": "classes"}]}, {">": [{"var": f"counts.{cls}"}, 1 + i % 3]}]},
            "alert": {
                "summary": f"Synthetic finding {i}",
                "detail": "synthetic",
                "recommendation": "none",
                "references": ["synthetic"],
            },
            "min_tier": "BASIC",
            "status": "active",
        }
        synthetic.append(Rule.from_dict(doc))
    with admin.begin() as conn:
        sync_rules(conn, [*starter, *synthetic], tenant_id=None, actor="bench")
    log(f"{len(starter)} starter + {len(synthetic)} synthetic rules synced")


def set_active_rules(admin: Engine, count: int) -> int:
    """Keeps `count` rules active: starter rules first, then synthetic ones; the rest retired."""
    with admin.begin() as conn:
        conn.execute(
            text("""
            WITH ranked AS (
                SELECT id, row_number() OVER (ORDER BY (rule_key LIKE 'synth-%'), rule_key) AS n
                FROM clinical.clinical_rules WHERE tenant_id IS NULL)
            UPDATE clinical.clinical_rules r SET status = CASE WHEN ranked.n <= :c THEN 'active'::rule_status
                                                               ELSE 'retired'::rule_status END,
                   content_hash = md5(r.content_hash || CASE WHEN ranked.n <= :c THEN 'a' ELSE 'r' END)
            FROM ranked WHERE ranked.id = r.id
        """),
            {"c": count},
        )
        return int(
            conn.execute(text("SELECT count(*) FROM clinical.clinical_rules WHERE status = 'active'")).scalar_one()
        )


def add_audit_rows(admin: Engine, target: int, mix: PatientMix) -> int:
    with admin.begin() as conn:
        have = int(
            conn.execute(text("SELECT count(*) FROM audit.audit_logs WHERE action = 'BENCH_HISTORY'")).scalar_one()
        )
        step = 500_000
        while have < target:
            n = min(step, target - have)
            conn.execute(
                text("""
                INSERT INTO audit.audit_logs (tenant_id, user_id, action, outcome, patient_id, details,
                    phi_accessed, risk_score, compliance_flags, "timestamp")
                SELECT :t, :u, 'BENCH_HISTORY', 'SUCCESS', :p, '{"synthetic": true}'::jsonb, true, 0.1,
                       ARRAY['PHI_READ'], now() - (g % 2500000) * interval '1 second'
                FROM generate_series(1, :n) g
            """),
                {"t": TENANT, "u": ADVISORS[0], "p": mix.by_size[15][0], "n": n},
            )
            have += n
        conn.execute(text("ANALYZE audit.audit_logs"))
    return have

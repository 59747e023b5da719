"""`make bench`: EvaluateSafety against its floor, measured side by side in one run.

The floor is what any service on this stack pays: a gRPC unary call through the same server, TLS and
token check, plus one database transaction of the same shape as an evaluation (set the context, read
the snapshot rows, insert one audit row, commit). Every figure is also reported as a ratio to the
floor measured in the same run, because these machines are noisy and only ratios carry over.

Scale: 150,000 interaction pairs, 5,000 rules (a few dozen relevant to a patient), patients with 5, 15
and 40 medications; curves over rules, pairs, medications and audit rows already stored. Last, the
RxNorm import of a full-size release (engine/ops/rxnorm_bench.py).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import Engine, create_engine, text

from engine.app.tokens import mint_token
from engine.ops.dev import ensure_dev_keys, free_port
from engine.ops.rxnorm_bench import print_rxnorm_section, run_rxnorm_bench
from store.config import PROJECT_ROOT, app_database_url, sqlalchemy_url

__all__ = ["run_bench"]

TENANT = "bench-clinic"
ADVISOR = "bench-advisor"
PATIENTS = {5: "bench-patient-05", 15: "bench-patient-15", 40: "bench-patient-40"}
SYNTH_SOURCE = "bench-synthetic"


@dataclass
class Scale:
    pairs: int = 150_000
    rules: int = 5_000
    audit_rows: tuple[int, ...] = (0, 1_000_000, 10_000_000)
    calls_c1: int = 300
    seconds_throughput: float = 5.0
    curve_calls: int = 150
    engine_iterations: int = 2_000

    @classmethod
    def quick(cls) -> Scale:
        return cls(
            pairs=150_000,
            rules=5_000,
            audit_rows=(0, 100_000),
            calls_c1=80,
            seconds_throughput=2.0,
            curve_calls=50,
            engine_iterations=300,
        )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- data -----------------------------------------------------------------------------------------------


def _prepare_database(server_url: str, name: str) -> str:
    from store import migrate
    from store.provision import recreate_database

    url = recreate_database(server_url, name)
    migrate.upgrade(database_url=url)
    return url


def _load_knowledge(admin: Engine, scale_pairs: int, log: Callable[[str], None]) -> list[str]:
    """Real vocabulary and starter pairs, plus synthetic ingredients and pairs up to the scale."""
    from engine.knowledge import load_knowledge_files, parse_interactions_csv
    from store.knowledge_repo import import_interaction_pairs, sync_vocabulary

    kdir = PROJECT_ROOT / "rules" / "knowledge"
    knowledge = load_knowledge_files(kdir)
    with admin.begin() as conn:
        sync_vocabulary(conn, knowledge.vocabulary)
        pairs = parse_interactions_csv(
            (kdir / "interactions.csv").read_text(), default_source="praneya-starter", vocabulary=knowledge.vocabulary
        )
        import_interaction_pairs(conn, pairs, source="praneya-starter", file_sha256="bench")
        # Synthetic ingredients with classes of their own: realistic key-space, never relevant to
        # the benchmark patients (whose drugs are real), so they cost lookups, not alerts.
        n_ing = 3000
        conn.execute(
            text(
                "INSERT INTO clinical.drug_classes (id, name, kind) SELECT 'synth_class_' || g, 'Synthetic ' || g,"
                " 'CLINICAL' FROM generate_series(0, 99) g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO clinical.drug_ingredients (name, classes) SELECT 'synthdrug' || g,"
                " ARRAY['synth_class_' || (g % 100)] FROM generate_series(0, :n - 1) g"
            ),
            {"n": n_ing},
        )
    log(f"vocabulary and {len(pairs)} starter pairs loaded")
    return [i for i in knowledge.vocabulary.ingredients]


def _set_synthetic_pairs(admin: Engine, total: int) -> int:
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


def _load_rules(admin: Engine, total_rules: int, log: Callable[[str], None]) -> None:
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


def _set_active_rules(admin: Engine, count: int) -> int:
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


def _full_vocabulary(
    admin: Engine, client: Client, mid: str, parent: int, workers: int, scale: Scale, log: Callable[[str], None]
) -> dict[str, Any]:
    """Loads the shipped RxNorm concept table (26,412 concepts, 211,223 NDCs), lets every worker
    rebuild its vocabulary, and measures the same evaluation and the workers' memory again."""
    from store.knowledge_repo import load_vocabulary, sync_shipped_concepts
    from store.rxnorm_import import read_shipped_table

    shipped = read_shipped_table(PROJECT_ROOT / "rules" / "knowledge")
    if shipped is None:
        raise RuntimeError("rules/knowledge has no shipped concept table (rxnorm.tsv)")
    with admin.begin() as conn:
        sync_shipped_concepts(conn, shipped[0], shipped[1])
    with admin.connect() as conn:
        started = time.perf_counter()
        vocabulary = load_vocabulary(conn)
        load_seconds = round(time.perf_counter() - started, 2)
    time.sleep(1.5)  # the engine cache notices the new fingerprint within its 1 s refresh
    for _ in range(10 * workers):  # every worker rebuilds (connections are spread over both)
        client.evaluate(mid)()
    full = latency(client.evaluate(mid), scale.calls_c1)
    memory = {str(p): round(_rss_mb(p), 1) for p in (_worker_pids(parent) or [parent])}
    log(
        f"full vocabulary: {len(vocabulary.ingredients)} ingredients, {len(vocabulary.concepts)} concepts,"
        f" {len(vocabulary.ndc)} NDCs"
    )
    return {
        "full": {
            "what": "shipped RxNorm table",
            "evaluate_15": full,
            "memory_mb_per_worker": memory,
            "load_seconds": load_seconds,
            "ingredients": len(vocabulary.ingredients),
            "concepts": len(vocabulary.concepts),
            "ndcs": len(vocabulary.ndc),
            "version": vocabulary.version,
        },
    }


def _seed_patients(admin: Engine, ingredients: list[str], provider: Any, keys: Any, app: Any) -> None:
    from store.admin import UserInput, create_tenant, create_user
    from store.patients import (
        AllergyInput,
        BiometricInput,
        ConditionInput,
        MedicationInput,
        ProfileInput,
        create_profile,
        put_allergy,
        put_biometric,
        put_condition,
        put_medication,
    )
    from store.session import Principal

    common = [
        "warfarin",
        "ibuprofen",
        "simvastatin",
        "sertraline",
        "metformin",
        "lisinopril",
        "amlodipine",
        "omeprazole",
        "atorvastatin",
        "clopidogrel",
        "furosemide",
        "spironolactone",
        "levothyroxine",
        "gabapentin",
        "tramadol",
        "prednisone",
        "digoxin",
        "amiodarone",
        "citalopram",
        "allopurinol",
    ]
    pool = [d for d in common if d in ingredients] + [d for d in ingredients if d not in common]
    with admin.begin() as conn:
        create_tenant(conn, provider, TENANT, "Benchmark Clinic")
        create_user(
            conn,
            keys,
            TENANT,
            ADVISOR,
            UserInput(first_name="Bench", healthcare_role="CLINICAL_ADVISOR", mfa_enabled=True),
        )
        for n, pid in PATIENTS.items():
            create_user(conn, keys, TENANT, pid, UserInput(first_name=f"P{n}", date_of_birth=date(1950, 1, 1)))
            create_profile(conn, keys, TENANT, pid, ProfileInput(sex="female", pregnancy_status="not_pregnant"))
    who = Principal(TENANT, ADVISOR, "CLINICAL_ADVISOR", mfa=True)
    with app.scoped(who) as conn:
        for n, pid in PATIENTS.items():
            for i in range(n):
                put_medication(conn, keys, pid, MedicationInput(pool[i], dosage=f"{10 + i} mg", frequency="daily"))
            for allergen in ("penicillin", "peanut", "sulfamethoxazole"):
                put_allergy(conn, keys, pid, AllergyInput(allergen, "DRUG", "SEVERE", ("hives",)))
            for cond in ("hypertension", "chronic kidney disease", "atrial fibrillation"):
                put_condition(conn, keys, pid, ConditionInput(cond))
            for lab, value in (
                ("egfr", 48.0),
                ("potassium", 4.9),
                ("inr", 2.4),
                ("qtc", 440.0),
                ("platelets", 210.0),
                ("systolic_bp", 138.0),
            ):
                put_biometric(conn, keys, pid, BiometricInput(lab, value))


def _add_audit_rows(admin: Engine, target: int) -> int:
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
                {"t": TENANT, "u": ADVISOR, "p": PATIENTS[15], "n": n},
            )
            have += n
        conn.execute(text("ANALYZE audit.audit_logs"))
    return have


# -- measuring ----------------------------------------------------------------------------------------


class Client:
    def __init__(self, address: str, ca: bytes, token: str) -> None:
        from engine.doors.grpc.gen.praneya.safety.v1 import floor_pb2_grpc, safety_pb2_grpc

        self.channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))
        self.safety = safety_pb2_grpc.ClinicalSafetyStub(self.channel)
        self.floor = floor_pb2_grpc.BenchmarkFloorStub(self.channel)
        self.md = (("authorization", f"Bearer {token}"),)

    def evaluate(self, patient: str) -> Callable[[], None]:
        from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb

        req = pb.EvaluateSafetyRequest(patient_id=patient)

        def call() -> None:
            resp = self.safety.EvaluateSafety(req, metadata=self.md, timeout=30)
            assert resp.evaluation_id

        return call

    def floor_call(self, patient: str) -> Callable[[], None]:
        from engine.doors.grpc.gen.praneya.safety.v1 import floor_pb2 as fpb

        req = fpb.FloorRequest(patient_id=patient, payload=b"x" * 64)

        def call() -> None:
            self.floor.Floor(req, metadata=self.md, timeout=30)

        return call

    def echo_call(self) -> Callable[[], None]:
        from engine.doors.grpc.gen.praneya.safety.v1 import floor_pb2 as fpb

        req = fpb.EchoRequest(payload=b"x" * 64)

        def call() -> None:
            self.floor.Echo(req, metadata=self.md, timeout=30)

        return call


def _wait(client: Client, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            client.echo_call()()
            return
        except grpc.RpcError:
            if time.time() > deadline:
                raise RuntimeError("the benchmark server did not start") from None
            time.sleep(0.3)


def latency(fn: Callable[[], None], n: int, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": round(_pct(samples, 0.5), 3),
        "p99_ms": round(_pct(samples, 0.99), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
        "n": n,
    }


def throughput(fn: Callable[[], None], concurrency: int, seconds: float) -> dict[str, float]:
    stop = time.perf_counter() + seconds
    counts = [0] * concurrency
    errors = [0] * concurrency

    def worker(i: int) -> None:
        while time.perf_counter() < stop:
            try:
                fn()
                counts[i] += 1
            except grpc.RpcError:
                errors[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"calls_per_s": round(sum(counts) / elapsed, 1), "errors": sum(errors), "concurrency": concurrency}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _engine_alone(app: Any, keys: Any, iterations: int) -> dict[str, Any]:
    """The pure engine on a decrypted snapshot, and json-logic-qubit interpreting the same relevant rules."""
    from json_logic import jsonLogic

    from engine.evaluate import evaluate
    from engine.facts import build_facts
    from engine.logic import evaluate_condition
    from engine.model import EvaluationRequest
    from store.knowledge_repo import load_knowledge, load_rules
    from store.patients import read_patient
    from store.session import Principal

    who = Principal(TENANT, ADVISOR, "CLINICAL_ADVISOR", mfa=True)
    results: dict[str, Any] = {}
    with app.scoped(who) as conn:
        knowledge = load_knowledge(conn, TENANT)
        ruleset = load_rules(conn, TENANT)
        snapshots = {n: read_patient(conn, keys, pid).to_snapshot() for n, pid in PATIENTS.items()}
    request = EvaluationRequest()
    for n, snap in snapshots.items():
        evaluate(snap, request, ruleset, knowledge)
        t0 = time.perf_counter()
        for _ in range(iterations):
            evaluate(snap, request, ruleset, knowledge)
        full_us = (time.perf_counter() - t0) / iterations * 1e6
        facts = build_facts(snap, request, knowledge)
        relevant = [r for r in ruleset.relevant(facts.relevance_keys()) if r.logic is not None]
        t0 = time.perf_counter()
        for _ in range(iterations):
            for r in relevant:
                assert r.logic is not None
                evaluate_condition(r.logic, facts.data)
        compiled_us = (time.perf_counter() - t0) / iterations * 1e6
        t0 = time.perf_counter()
        qubit_iters = max(20, iterations // 10)
        for _ in range(qubit_iters):
            for r in relevant:
                try:
                    jsonLogic(r.rule.when, facts.data)
                except Exception:  # noqa: BLE001, S110 - the reference interpreter raises on some data; timed anyway
                    pass
        qubit_us = (time.perf_counter() - t0) / qubit_iters * 1e6
        results[f"{n}_medications"] = {
            "evaluate_us": round(full_us, 1),
            "relevant_rules": len(relevant),
            "rules_compiled_us": round(compiled_us, 1),
            "rules_json_logic_qubit_us": round(qubit_us, 1),
            "speedup_vs_qubit": round(qubit_us / compiled_us, 1) if compiled_us else None,
        }
    results["rules_in_set"] = len(ruleset)
    results["pairs_in_knowledge"] = len(knowledge.interactions)
    return results


def run_bench(
    *, quick: bool = False, out_path: Path | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    from store import provision
    from store.crypto import key_provider_from_env
    from store.keys import KeyStore
    from store.session import Database

    scale = Scale.quick() if quick else Scale()
    server_url = os.environ.get("DATABASE_URL") or provision.up()
    db_url = _prepare_database(server_url, "praneya_bench")
    log(f"bench database migrated: {sqlalchemy_url(db_url).database}")
    paths = ensure_dev_keys(PROJECT_ROOT / ".local" / "bench")
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "PRANEYA_APP_DATABASE_URL": app_database_url(db_url),
        "PRANEYA_MASTER_KEY_FILE": str(paths["master.key"]),
        "PRANEYA_SIGNING_KEY_FILE": str(paths["signing.pem"]),
        "PRANEYA_JWT_PUBLIC_KEY_FILES": str(paths["jwt-public.pem"]),
        "PRANEYA_TLS_CERT_FILE": str(paths["server.pem"]),
        "PRANEYA_TLS_KEY_FILE": str(paths["server-key.pem"]),
        "PRANEYA_BENCH": "1",
        "PRANEYA_ENGINE_REFRESH_SECONDS": "1",
        "PRANEYA_WORKERS": os.environ.get("PRANEYA_WORKERS", "2"),
        "PRANEYA_HTTP_PORT": "off",
        "PORT": str(free_port()),
    }
    os.environ.update({k: env[k] for k in ("PRANEYA_MASTER_KEY_FILE", "PRANEYA_APP_DATABASE_URL", "DATABASE_URL")})
    admin = create_engine(sqlalchemy_url(db_url))
    provider = key_provider_from_env()
    keys = KeyStore(provider)
    app = Database(app_database_url(db_url), pool_size=2)
    ingredients = _load_knowledge(admin, scale.pairs, log)
    total_pairs = _set_synthetic_pairs(admin, scale.pairs)
    log(f"knowledge base: {total_pairs} interaction pairs")
    _load_rules(admin, scale.rules, log)
    _seed_patients(admin, ingredients, provider, keys, app)
    log("benchmark patients with 5, 15 and 40 medications seeded")

    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "praneya"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{env['PORT']}"
    results: dict[str, Any] = {}
    try:
        token = mint_token(
            paths["jwt-private.pem"], user_id=ADVISOR, tenant_id=TENANT, role="CLINICAL_ADVISOR", ttl_seconds=3600
        )
        client = Client(address, paths["ca.pem"].read_bytes(), token)
        _wait(client)
        for pid in PATIENTS.values():  # warm every worker's caches (rules compiled, knowledge indexed)
            for _ in range(20):
                client.evaluate(pid)()
        mid = PATIENTS[15]
        log("measuring latency at concurrency 1 ...")
        floor = latency(client.floor_call(mid), scale.calls_c1)
        echo = latency(client.echo_call(), scale.calls_c1)
        evals = {n: latency(client.evaluate(pid), scale.calls_c1) for n, pid in PATIENTS.items()}
        log("measuring throughput at concurrency 8 and 32 ...")
        tput = {}
        for c in (8, 32):
            tput[c] = {
                "floor": throughput(client.floor_call(mid), c, scale.seconds_throughput),
                "evaluate": throughput(client.evaluate(mid), c, scale.seconds_throughput),
            }
        log("cold path: a second server with the verified-snapshot cache off ...")
        cold_env = {**env, "PORT": str(free_port()), "PRANEYA_SNAPSHOT_CACHE_SIZE": "0"}
        cold_proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "praneya"), "serve"],
            env=cold_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            cold = Client(f"127.0.0.1:{cold_env['PORT']}", paths["ca.pem"].read_bytes(), token)
            _wait(cold)
            for _ in range(20):
                cold.evaluate(mid)()
            cold_eval = latency(cold.evaluate(mid), scale.calls_c1)
            cold_floor = latency(cold.floor_call(mid), scale.calls_c1)
        finally:
            cold_proc.terminate()
            cold_proc.wait(30)
        workers = _worker_pids(proc.pid) or [proc.pid]
        memory = {str(p): round(_rss_mb(p), 1) for p in workers}
        log("vocabulary: the starter (curated) one so far; now the full shipped RxNorm table ...")
        vocabulary = _full_vocabulary(admin, client, mid, proc.pid, int(env["PRANEYA_WORKERS"]), scale, log)
        vocabulary["starter"] = {"what": "curated only", "evaluate_15": evals[15], "memory_mb_per_worker": memory}
        log("engine alone ...")
        engine_alone = _engine_alone(app, keys, scale.engine_iterations)

        def settle() -> None:
            time.sleep(1.5)  # engine cache refresh interval is 1 s in the benchmark
            for _ in range(2 * int(env["PRANEYA_WORKERS"]) + 4):
                client.evaluate(mid)()

        log("curve: rules ...")
        rules_curve = []
        for count in (50, 500, scale.rules):
            active = _set_active_rules(admin, count)
            settle()
            rules_curve.append({"rules": active, **latency(client.evaluate(mid), scale.curve_calls)})
        log("curve: interaction pairs ...")
        pairs_curve = []
        for count in (1_000, 10_000, 50_000, scale.pairs):
            n = _set_synthetic_pairs(admin, count)
            settle()
            pairs_curve.append({"pairs": n, **latency(client.evaluate(mid), scale.curve_calls)})
        meds_curve = [{"medications": n, **evals[n]} for n in sorted(evals)]
        log("curve: audit rows already stored ...")
        audit_curve = []
        for rows in scale.audit_rows:
            stored = _add_audit_rows(admin, rows)
            settle()
            audit_curve.append(
                {
                    "audit_rows": stored,
                    "evaluate": latency(client.evaluate(mid), scale.curve_calls),
                    "floor": latency(client.floor_call(mid), scale.curve_calls),
                }
            )
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        app.dispose()
        admin.dispose()
    # After the service is stopped, so that its figures are not disturbed; into the same database.
    log("RxNorm import at the size of a full release ...")
    rxnorm = run_rxnorm_bench(db_url, quick=quick, log=log)

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2) if b else float("nan")

    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "scale": {
            "pairs": scale.pairs,
            "rules": scale.rules,
            "patients_medications": sorted(PATIENTS),
            "quick": quick,
            "workers": int(env["PRANEYA_WORKERS"]),
        },
        "floor": {"c1": floor, "echo_c1": echo, "throughput": {str(c): tput[c]["floor"] for c in tput}},
        "evaluate": {
            str(n): {
                **evals[n],
                "p50_ratio": ratio(evals[n]["p50_ms"], floor["p50_ms"]),
                "p99_ratio": ratio(evals[n]["p99_ms"], floor["p99_ms"]),
            }
            for n in evals
        },
        "evaluate_snapshot_cache_off": {
            "15": {
                **cold_eval,
                "floor_p50_ms": cold_floor["p50_ms"],
                "p50_ratio": ratio(cold_eval["p50_ms"], cold_floor["p50_ms"]),
            }
        },
        "throughput": {
            str(c): {
                **tput[c]["evaluate"],
                "ratio": ratio(tput[c]["evaluate"]["calls_per_s"], tput[c]["floor"]["calls_per_s"]),
            }
            for c in tput
        },
        "engine_alone": engine_alone,
        "curves": {"rules": rules_curve, "pairs": pairs_curve, "medications": meds_curve, "audit_rows": audit_curve},
        "memory_mb_per_worker": memory,
        "vocabulary": vocabulary,
        "rxnorm_import": rxnorm,
    }
    first_rules, last_rules = rules_curve[0]["p50_ms"], rules_curve[-1]["p50_ms"]
    first_pairs, last_pairs = pairs_curve[0]["p50_ms"], pairs_curve[-1]["p50_ms"]
    results["targets"] = {
        "p50_c1_at_most_1.5x_floor": {"value": results["evaluate"]["15"]["p50_ratio"], "target": 1.5},
        "throughput_c32_at_least_0.8x_floor": {"value": results["throughput"]["32"]["ratio"], "target": 0.8},
        "rules_5000_vs_50_at_most_1.2x": {"value": ratio(last_rules, first_rules), "target": 1.2},
        "pairs_150k_vs_1k_at_most_1.2x": {"value": ratio(last_pairs, first_pairs), "target": 1.2},
        "memory_per_worker_under_300mb": {"value": max(memory.values()) if memory else None, "target": 300},
        "full_vocabulary_p50_within_1.1x_starter": {
            "value": ratio(vocabulary["full"]["evaluate_15"]["p50_ms"], evals[15]["p50_ms"]),
            "target": 1.1,
        },
        "full_vocabulary_memory_within_1.1x_starter": {
            "value": ratio(max(vocabulary["full"]["memory_mb_per_worker"].values()), max(memory.values())),
            "target": 1.1,
        },
        "full_vocabulary_worker_load_under_2s": {"value": vocabulary["full"]["load_seconds"], "target": 2.0},
        **rxnorm["targets"],
    }
    for name, t in results["targets"].items():
        v = t["value"]
        t["met"] = v is not None and (v >= t["target"] if "at_least" in name else v <= t["target"])
    out = out_path or PROJECT_ROOT / "bench-results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results, log)
    log(f"\nwritten to {out}")
    return results


def _print_table(r: dict[str, Any], log: Callable[[str], None]) -> None:
    f = r["floor"]
    log("")
    log(f"{'measure':44} {'p50 ms':>9} {'p99 ms':>9} {'ratio p50':>10}")
    log(
        f"{'floor: echo + evaluation-shaped transaction':44} {f['c1']['p50_ms']:9.2f} {f['c1']['p99_ms']:9.2f}"
        f" {1.0:10.2f}"
    )
    log(
        f"{'echo only (gRPC + TLS + auth)':44} {f['echo_c1']['p50_ms']:9.2f} {f['echo_c1']['p99_ms']:9.2f}"
        f" {f['echo_c1']['p50_ms'] / f['c1']['p50_ms']:10.2f}"
    )
    for n, e in r["evaluate"].items():
        log(
            f"{'EvaluateSafety, ' + n + ' medications':44} {e['p50_ms']:9.2f} {e['p99_ms']:9.2f} {e['p50_ratio']:10.2f}"
        )
    for n, e in r["evaluate_snapshot_cache_off"].items():
        log(
            f"{'  same, snapshot cache off, ' + n + ' meds':44} {e['p50_ms']:9.2f} {e['p99_ms']:9.2f}"
            f" {e['p50_ratio']:10.2f}"
        )
    log("")
    log(f"{'throughput':44} {'floor/s':>9} {'eval/s':>9} {'ratio':>10}")
    for c, t in r["throughput"].items():
        log(
            f"{'concurrency ' + c:44} {f['throughput'][c]['calls_per_s']:9.1f} {t['calls_per_s']:9.1f}"
            f" {t['ratio']:10.2f}"
        )
    log("")
    log("engine alone (µs per evaluation; relevant rules compiled vs json-logic-qubit interpreted):")
    for k, v in r["engine_alone"].items():
        if isinstance(v, dict):
            log(
                f"  {k:16} evaluate {v['evaluate_us']:8.1f}  rules {v['relevant_rules']:3}: compiled"
                f" {v['rules_compiled_us']:8.1f}  qubit {v['rules_json_logic_qubit_us']:8.1f}"
                f"  ({v['speedup_vs_qubit']}x)"
            )
    log("")
    for name, curve in r["curves"].items():
        points = ", ".join(
            f"{p.get('rules', p.get('pairs', p.get('medications', p.get('audit_rows'))))}:"
            f" {p['p50_ms'] if 'p50_ms' in p else p['evaluate']['p50_ms']:.2f} ms"
            for p in curve
        )
        log(f"curve {name:11} {points}")
    log(f"memory per worker (MB): {r['memory_mb_per_worker']}")
    v = r["vocabulary"]
    log("")
    log(f"{'vocabulary (EvaluateSafety, 15 medications)':44} {'p50 ms':>9} {'p99 ms':>9} {'MB/worker':>10}")
    for name in ("starter", "full"):
        e, mem = v[name]["evaluate_15"], max(v[name]["memory_mb_per_worker"].values())
        log(f"{name + ': ' + v[name]['what']:44} {e['p50_ms']:9.2f} {e['p99_ms']:9.2f} {mem:10.1f}")
    log(f"full vocabulary built from the database in {v['full']['load_seconds']} s (what a worker does)")
    print_rxnorm_section(r["rxnorm_import"], log)
    log("")
    for name, t in r["targets"].items():
        log(f"target {name:38} {t['value']!s:>8} (target {t['target']}) {'met' if t['met'] else 'MISSED'}")


def main(argv: list[str]) -> int:
    run_bench(quick="--quick" in argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""An in-process micro-benchmark of the evaluation use case: CPU per call, no gRPC, no TLS, no client.

`make bench` measures the whole service; this measures the part a change to the hot path touches (the
database access, the engine, the signature) in a few seconds, on the same seeded database (a copy of
the benchmark's template, built first when missing). It calls `Evaluations.stored` with the gRPC
door's own rendering, as the servicer does, from `--threads` threads, and reports per call the CPU
of this process (every thread, the database driver's included) and of the PostgreSQL backends that
served it (found by application_name), which on a shared machine moves far less than wall clock.

    PYTHONPATH=$PWD python -m engine.ops.bench_inproc --calls 300 --threads 1 --phases 15,40,lean_floor

Phases: `5`, `15`, `40` (EvaluateSafety of the mix's patients of that many medications, the mix's Zipf
order, so the verified-snapshot cache hits as often as in `make bench`), `floor` and `lean_floor` (the
benchmark's floor transactions, engine/doors/grpc/floor.py), `cds` is not here (engine/ops/bench_cds.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import create_engine, text

from engine.ops.bench import Scale, prepare_database
from engine.ops.bench_data import ADVISORS, TENANT
from engine.ops.bench_measure import cpu_seconds
from store.config import app_database_url, sqlalchemy_url

__all__ = ["main"]


class _Context:
    """What the floor servicer asks of a gRPC context."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def abort(self, code: Any, message: str) -> None:
        raise RuntimeError(f"{code}: {message}")


def _backends(admin: Any) -> list[int]:
    with admin.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'praneya-safety'"
                )
            ).scalars()
        )


def _run(call: Callable[[int], None], calls: int, threads: int, errors: list[str]) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(calls))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                call(i)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the phase goes on
                with lock:
                    errors.append(type(exc).__name__ + ": " + str(exc)[:200])
                continue
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_inproc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per phase (after a warm-up of 30)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--phases", default="5,15,40,floor,lean_floor")
    parser.add_argument("--repeat", type=int, default=1, help="measure each phase this many times")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)

    from engine.app.engine_cache import EngineCache
    from engine.app.evaluation import Proposal
    from engine.app.service import Services
    from engine.doors.grpc.auth import current_principal
    from engine.doors.grpc.floor import BenchmarkFloorServicer
    from engine.doors.grpc.gen.praneya.safety.v1 import floor_pb2 as fpb
    from engine.doors.grpc.servicer import ClinicalSafetyServicer
    from store.session import Database, Principal, RequestMeta
    from store.signing import Signer

    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    db_url, mix, paths, _provider, keys = prepare_database(Scale.quick(), log)
    admin = create_engine(sqlalchemy_url(db_url))
    os.environ["PRANEYA_APP_DATABASE_URL"] = app_database_url(db_url)
    db = Database(app_database_url(db_url), pool_size=max(2, args.threads))
    services = Services.wire(db, keys, Signer.from_file(paths["signing.pem"]), EngineCache(5.0))
    servicer = ClinicalSafetyServicer(services)
    floor = BenchmarkFloorServicer(services)
    principals = [Principal(TENANT, a, "CLINICAL_ADVISOR", mfa=True) for a in ADVISORS]

    def evaluate(patients: Iterator[str]) -> Callable[[int], None]:
        lock = threading.Lock()

        def call(i: int) -> None:
            with lock:
                patient = next(patients)
            meta = RequestMeta(client_addr="ipv4:127.0.0.1:1", request_id=uuid.uuid4().hex, statement_timeout_ms=5000)
            resp = services.evaluations.stored(
                "EvaluateSafety", principals[i % len(principals)], meta, patient, Proposal(), servicer._render
            )
            assert resp.evaluation_id

        return call

    def floor_call(patients: Iterator[str], lean: bool) -> Callable[[int], None]:
        lock = threading.Lock()
        ctx = _Context()

        def call(i: int) -> None:
            with lock:
                patient = next(patients)
            current_principal.set(principals[i % len(principals)])
            req = fpb.FloorRequest(patient_id=patient, payload=b"x" * 64)
            (floor.LeanFloor if lean else floor.Floor)(req, ctx)

        return call

    figures: dict[str, list[dict[str, float]]] = {}
    try:
        for phase in args.phases.split(","):
            for rep in range(args.repeat):
                size = 15 if phase in ("floor", "lean_floor") else int(phase)
                patients = mix.cycle(size, offset=rep)
                lean = phase == "lean_floor"
                call = floor_call(patients, lean) if phase in ("floor", "lean_floor") else evaluate(patients)
                errors: list[str] = []
                _run(call, 1, 1, errors)  # the first call loads the engine: alone
                _run(call, 30, args.threads, errors)  # warm-up: pools, key rings
                backends = _backends(admin)
                pg0 = {p: cpu_seconds(p) or 0.0 for p in backends}
                hits0, misses0 = keys.verified_snapshots.hits, keys.verified_snapshots.misses
                cpu0, wall0 = time.process_time(), time.perf_counter()
                warm_errors = len(errors)
                lat = _run(call, args.calls, args.threads, errors)
                cpu1, wall1 = time.process_time(), time.perf_counter()
                pg1 = {p: cpu_seconds(p) or 0.0 for p in _backends(admin)}
                pg = sum(pg1[p] - pg0.get(p, 0.0) for p in pg1)
                hits = keys.verified_snapshots.hits - hits0
                misses = keys.verified_snapshots.misses - misses0
                row = {
                    "process_cpu_ms": round((cpu1 - cpu0) / args.calls * 1000, 3),
                    "postgres_cpu_ms": round(pg / args.calls * 1000, 3),
                    "p50_ms": round(statistics.median(lat) * 1000, 2),
                    "calls_per_s": round(args.calls / (wall1 - wall0), 1),
                    "cache_hit_rate": round(hits / (hits + misses), 2) if hits + misses else 0.0,
                }
                figures.setdefault(phase, []).append(row)
                print(
                    f"{phase:>10} x{args.threads}: process {row['process_cpu_ms']:7.3f} ms  postgres"
                    f" {row['postgres_cpu_ms']:7.3f} ms  p50 {row['p50_ms']:7.2f} ms  {row['calls_per_s']:7.1f}/s"
                    f"  cache hits {row['cache_hit_rate']:.0%}"
                    + (f"  ERRORS {len(errors) - warm_errors} (warm-up {warm_errors}): {errors[-1]}" if errors else ""),
                    flush=True,
                )
    finally:
        db.dispose()
        admin.dispose()
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

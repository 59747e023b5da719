"""The benchmark floor service (PRANEYA_BENCH=1 only): see protos/praneya/safety/v1/floor.proto.

Two floors behind the same TLS and token check: `Floor` runs the evaluation-shaped transaction through
the project's database layer (SQLAlchemy over psycopg, `Database.scoped`), `LeanFloor` runs the very
same statements on plain psycopg (a psycopg_pool pool, statements prepared on first use). The SQL is
the store's own, compiled once for psycopg, so the two differ only in the layer that carries it.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any

import grpc
from psycopg import Connection as PgConnection
from psycopg_pool import ConnectionPool
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.sql.elements import TextClause

from engine.app import metrics
from engine.app.service import Services
from engine.doors.grpc.auth import current_principal
from engine.doors.grpc.gen.praneya.safety.v1 import floor_pb2 as fpb
from engine.doors.grpc.gen.praneya.safety.v1 import floor_pb2_grpc as fpb_grpc
from store import patients, service_repo
from store.session import SET_CONTEXT, RequestMeta

__all__ = ["BenchmarkFloorServicer"]


def _psycopg_sql(statement: TextClause) -> str:
    return str(statement.compile(dialect=pg_psycopg.dialect()))  # type: ignore[no-untyped-call]


_SET_CONTEXT = _psycopg_sql(SET_CONTEXT)
_SNAPSHOT = _psycopg_sql(patients.SNAPSHOT_STATEMENT)
_AUDIT = _psycopg_sql(service_repo.AUDIT_INSERT)


def _prepare_at_once(conn: PgConnection[Any]) -> None:
    conn.prepare_threshold = 0


class BenchmarkFloorServicer(fpb_grpc.BenchmarkFloorServicer):  # type: ignore[misc]
    def __init__(self, services: Services) -> None:
        self.services = services
        self.db = services.db
        self._pool: ConnectionPool[PgConnection[Any]] | None = None
        self._pool_lock = threading.Lock()
        self.floor_calls = 0
        self.lean_floor_calls = 0

    def _lean_pool(self) -> ConnectionPool[PgConnection[Any]]:
        # Opened on first use, sized like the database layer's pool, with its connection options
        # (timeouts, application_name, TLS mode): only the layer between differs.
        with self._pool_lock:
            if self._pool is None:
                url = self.db.engine.url.set(drivername="postgresql")
                size = self.db.engine.pool.size()  # type: ignore[attr-defined]
                self._pool = ConnectionPool(
                    url.render_as_string(hide_password=False),
                    min_size=size,
                    max_size=size,
                    kwargs=dict(self.db.connect_args),
                    configure=_prepare_at_once,
                    name="lean-floor",
                    open=True,
                )
            return self._pool

    def Echo(self, request: fpb.EchoRequest, context: grpc.ServicerContext) -> fpb.EchoResponse:
        return fpb.EchoResponse(payload=request.payload)

    def Floor(self, request: fpb.FloorRequest, context: grpc.ServicerContext) -> fpb.FloorResponse:
        principal = current_principal.get()
        meta = RequestMeta(client_addr=context.peer() or "", request_id=uuid.uuid4().hex)
        try:
            with self.db.scoped(principal, meta) as conn:
                rows = patients.read_snapshot_rows(conn, request.patient_id)
                service_repo.write_audit(conn, audit_id=str(uuid.uuid4()), tenant_id=principal.tenant_id,
                                         user_id=principal.user_id, action="BENCH_FLOOR", outcome="SUCCESS",
                                         patient_id=request.patient_id, details={"request_id": meta.request_id})
        except patients.PatientNotFound:
            context.abort(grpc.StatusCode.NOT_FOUND, "patient not found")
        self.floor_calls += 1
        return fpb.FloorResponse(payload=request.payload, rows_read=rows)

    def LeanFloor(self, request: fpb.FloorRequest, context: grpc.ServicerContext) -> fpb.FloorResponse:
        principal = current_principal.get()
        meta = RequestMeta(client_addr=context.peer() or "", request_id=uuid.uuid4().hex)
        with self._lean_pool().connection() as conn, conn.transaction():
            conn.execute(_SET_CONTEXT, self.db.context_parameters(principal, meta))
            cur = conn.execute(_SNAPSHOT, {"patient": request.patient_id, "caller_role": None})
            names = [d.name for d in cur.description or ()]
            found = cur.fetchone()
            row = dict(zip(names, found, strict=True)) if found is not None else {}
            if row.get("id") is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "patient not found")
            # Parsed like the layer's floor reads it: the four groups arrive as JSON text.
            rows = 1 + sum(len(json.loads(row[k])) for k in ("medications", "allergies", "conditions", "biometrics"))
            conn.execute(
                _AUDIT,
                {
                    "id": str(uuid.uuid4()),
                    "t": principal.tenant_id,
                    "u": principal.user_id,
                    "action": "BENCH_FLOOR",
                    "rt": None,
                    "rid": None,
                    "patient": request.patient_id,
                    "outcome": "SUCCESS",
                    "details": json.dumps({"request_id": meta.request_id}, sort_keys=True),
                    "phi": False,
                    "risk": 0.0,
                    "flags": [],
                },
            )
        self.lean_floor_calls += 1
        return fpb.FloorResponse(payload=request.payload, rows_read=rows)

    def Stats(self, request: fpb.StatsRequest, context: grpc.ServicerContext) -> fpb.StatsResponse:
        snapshots = self.services.keys.verified_snapshots
        calls = sum(
            sample.value
            for family in metrics.RPCS.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )
        return fpb.StatsResponse(
            pid=os.getpid(),
            snapshot_cache_hits=snapshots.hits,
            snapshot_cache_misses=snapshots.misses,
            use_case_calls=int(calls),
            floor_calls=self.floor_calls,
            lean_floor_calls=self.lean_floor_calls,
            engine_checks=self.services.engines.checks,
            engine_rebuilds=self.services.engines.rebuilds,
        )

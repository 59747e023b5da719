"""The benchmark floor service (PRANEYA_BENCH=1 only): see protos/praneya/safety/v1/floor.proto."""

from __future__ import annotations

import uuid

import grpc

from engine.doors.grpc.auth import current_principal
from engine.doors.grpc.gen.praneya.safety.v1 import floor_pb2 as fpb
from engine.doors.grpc.gen.praneya.safety.v1 import floor_pb2_grpc as fpb_grpc
from store import patients, service_repo
from store.session import Database, RequestMeta

__all__ = ["BenchmarkFloorServicer"]


class BenchmarkFloorServicer(fpb_grpc.BenchmarkFloorServicer):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        self.db = db

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
        return fpb.FloorResponse(payload=request.payload, rows_read=rows)

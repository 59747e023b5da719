"""`serve()`: every part of the running service wired in one place.

Servicer, authentication interceptor, standard health and reflection, TLS (optionally mutual),
message size limits, structured JSON logs, Prometheus metrics, graceful drain on SIGTERM. Several
worker processes share the port (SO_REUSEPORT) so every core is used; a supervisor restarts a
worker that dies. Only a server's own workers share its port: `serve()` claims the address first
(engine/ops/port_claim.py), and a second `praneya serve` there exits with "address in use".
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import text

from engine.app.clients import CallerVerifier, ClientTokenVerifier, DatabaseReplayGuard
from engine.app.service import Services
from engine.app.settings import ServiceSettings
from engine.app.tokens import TokenVerifier
from engine.doors.grpc.auth import AuthInterceptor
from engine.doors.grpc.decoding import RequestDecodingInterceptor
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc
from engine.doors.grpc.request_ids import RequestIdInterceptor, current_request_id
from engine.doors.grpc.servicer import ClinicalSafetyServicer
from store.session import Database

__all__ = ["SERVICE_NAME", "HealthWatch", "build_server", "configure_logging"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ClinicalSafety"].full_name
log = logging.getLogger("praneya.server")


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Only fields we put there: ids, codes, durations — never payloads."""

    _FIELDS = (
        "rpc",
        "door",
        "client",
        "code",
        "duration_ms",
        "tenant",
        "user",
        "request_id",
        "error_type",
        "frames",
        "worker",
        "address",
        "reason",
        "evaluation_id",
        # a worker rebuilding a tenant's rules or knowledge (engine_cache)
        "rebuilt",
        "fingerprints",
        "counts",
        "seconds",
    )

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in self._FIELDS:
            if key in record.__dict__:
                doc[key] = record.__dict__[key]
        return json.dumps(doc, separators=(",", ":"))


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from store.migrate import alembic_config

    cfg = alembic_config("postgresql://unused")
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


class HealthWatch:
    """SERVING only while the database answers and its schema is at this code's migration head."""

    def __init__(self, db: Database, servicer: health.HealthServicer, interval: float = 1.0) -> None:
        self.db = db
        self.health = servicer
        self.interval = interval
        self.head = _head_revision()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="health-watch", daemon=True)

    def check(self) -> bool:
        try:
            with self.db.engine.connect() as conn:
                applied = conn.execute(
                    text("SELECT version_num FROM public.alembic_version")
                ).scalar_one_or_none()
                conn.rollback()
        except Exception:  # noqa: BLE001 - any failure to reach the database means NOT_SERVING
            return False
        return applied == self.head

    def _set(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.health.set("", status)
        self.health.set(SERVICE_NAME, status)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._set(self.check())
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._set(self.check())
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.health.enter_graceful_shutdown()


def build_server(
    settings: ServiceSettings, services: Services | None = None
) -> tuple[grpc.Server, HealthWatch, Database, int]:
    services = services or Services.from_settings(settings)
    db = services.db
    users = TokenVerifier(
        settings.jwt_public_keys,
        settings.jwt_issuer,
        settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
    )
    # Registered clients (EHRs, backends) beside users: a token from another issuer than the users'
    # must be a registered client's, for this service's gRPC audience.
    verifier = CallerVerifier(
        users,
        ClientTokenVerifier(services.clients, DatabaseReplayGuard(db)),
        client_audience=settings.jwt_audience,
    )
    servicer = ClinicalSafetyServicer(
        services, statement_timeout_ms=settings.statement_timeout_ms, max_response_bytes=settings.max_send_bytes
    )

    def rejected(method: str, reason: str) -> None:
        log.warning(
            "unauthenticated",
            extra={
                "rpc": method.rsplit("/", 1)[-1],
                "code": "UNAUTHENTICATED",
                "reason": reason,
                "request_id": current_request_id.get(None),
            },
        )

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="rpc"),
        # The request id first: it comes back with every answer, an authentication failure's too.
        # Request bytes are parsed last, only for a caller whose token verified.
        interceptors=[
            RequestIdInterceptor(),
            AuthInterceptor(verifier, rejected),
            RequestDecodingInterceptor({SERVICE_NAME: servicer.refuse_undecodable}),
        ],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_send_bytes),
            ("grpc.so_reuseport", 1),
            # Connections are bounded in time as well as in number (issue 13, item 7): without these a
            # peer that connects and sends nothing, or stops half-way through the TLS handshake, holds
            # a connection for as long as it likes. The handshake bound covers everything before the
            # HTTP/2 settings arrive (TCP accepted, TLS, the preface); idle means no call in flight.
            ("grpc.server_handshake_timeout_ms", settings.handshake_timeout_seconds * 1000),
            ("grpc.max_connection_idle_ms", settings.max_connection_idle_seconds * 1000),
            # Even a busy connection is renewed now and then (clients reconnect transparently), so
            # one client cannot pin a worker forever; calls in flight get the grace to finish.
            ("grpc.max_connection_age_ms", 3_600_000),
            ("grpc.max_connection_age_grace_ms", max(30, int(settings.grace_seconds)) * 1000),
            # A peer that has vanished without closing is found by a ping it does not answer.
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.max_pings_without_data", 0),
        ],
        maximum_concurrent_rpcs=settings.threads * 8,
    )
    pb_grpc.add_ClinicalSafetyServicer_to_server(servicer, server)
    names = [SERVICE_NAME]
    if os.environ.get("PRANEYA_BENCH") == "1":
        # The benchmark floor runs on this very server, behind the same TLS and interceptors.
        from engine.doors.grpc.floor import BenchmarkFloorServicer
        from engine.doors.grpc.gen.praneya.safety.v1 import floor_pb2, floor_pb2_grpc

        floor_pb2_grpc.add_BenchmarkFloorServicer_to_server(BenchmarkFloorServicer(services), server)
        names.append(floor_pb2.DESCRIPTOR.services_by_name["BenchmarkFloor"].full_name)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    address = f"{settings.host}:{settings.port}"
    if settings.insecure_plaintext:
        port = server.add_insecure_port(address)
    else:
        assert settings.tls_cert and settings.tls_key
        creds = grpc.ssl_server_credentials(
            [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
            root_certificates=settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None,
            require_client_auth=settings.require_client_cert,
        )
        port = server.add_secure_port(address, creds)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    return server, HealthWatch(db, health_servicer), db, port

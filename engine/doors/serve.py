"""`praneya serve`: the service's processes and both of its doors.

Each worker process wires the use cases once (engine/app/service.py) and serves them through the
gRPC door (engine/doors/grpc) and the CDS Hooks door over HTTPS (engine/doors/cdshooks, uvicorn on
its own event-loop thread). Several workers share each port (SO_REUSEPORT), so every core is used; a
supervisor restarts a worker that dies. Only a server's own workers share its ports: `serve()` claims
each address first (engine/doors/port_claim.py), and a second `praneya serve` exits with
"address in use". SIGTERM drains both doors: health says NOT_SERVING, calls in flight finish.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from engine.app.service import Services
from engine.app.settings import ServiceSettings
from engine.doors.grpc.server import build_server, configure_logging
from engine.doors.port_claim import PortInUse, claim_port

__all__ = ["HttpDoor", "serve"]

log = logging.getLogger("praneya.server")


class HttpDoor:
    """The CDS Hooks app on uvicorn, in a thread of this worker, on a SO_REUSEPORT socket."""

    def __init__(self, settings: ServiceSettings, services: Services) -> None:
        import uvicorn

        from engine.app.clients import ClientTokenVerifier, DatabaseReplayGuard
        from engine.doors.cdshooks.server import CdsHooksApp

        assert settings.http_port is not None and settings.tls_cert and settings.tls_key
        self.registry = services.clients
        verifier = ClientTokenVerifier(self.registry, DatabaseReplayGuard(services.db))

        def fhir_hosts(principal: Any) -> tuple[str, ...]:
            client = self.registry.by_id(principal.client_id) if principal.client_id else None
            return client.record.fhir_server_hosts if client is not None else ()

        self.sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind((settings.host, settings.http_port))
        self.sock.listen(1024)
        self.port: int = self.sock.getsockname()[1]
        # The URL clients call: configured, or this address (port 0 binds a free one: tests).
        self.base_url = settings.http_public_url or f"https://{settings.host}:{self.port}"
        self.executor = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="http")
        self.app = CdsHooksApp(
            services,
            lambda token, audience: verifier.verify(token, audience=audience),
            base_url=self.base_url,
            executor=self.executor,
            cors_origins=lambda: settings.cors_origins + tuple(self.registry.allowed_origins()),
            allow_http_fhir=settings.fhir_allow_http,
            fhir_hosts=fhir_hosts,
            max_body_bytes=settings.max_message_bytes,
            max_response_bytes=settings.max_send_bytes,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        config = uvicorn.Config(
            self.app,
            ssl_certfile=str(settings.tls_cert),
            ssl_keyfile=str(settings.tls_key),
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=True,
            timeout_keep_alive=max(5, min(75, settings.max_connection_idle_seconds)),
            timeout_graceful_shutdown=int(settings.grace_seconds),
            limit_concurrency=settings.threads * 16,
            h11_max_incomplete_event_size=64 * 1024,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="cds-hooks", daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("the CDS Hooks server did not start")

    def stop(self, grace: float) -> None:
        self.server.should_exit = True
        self.thread.join(grace + 5)
        self.executor.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(OSError):
            self.sock.close()


def _worker(settings: ServiceSettings, index: int, ready: Any = None) -> None:
    configure_logging()
    services = Services.from_settings(settings)
    server, watch, db, port = build_server(settings, services)
    http = HttpDoor(settings, services) if settings.http_port is not None else None
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port + index, addr=settings.host)
    services.clients.start()  # the registry refreshed in the background: a revoked client stops in seconds
    server.start()
    if http is not None:
        http.start()
    watch.start()
    log.info("serving", extra={"worker": index, "address": f"{settings.host}:{port}"})
    if http is not None:
        log.info("serving cds-hooks", extra={"worker": index, "address": f"https://{settings.host}:{http.port}"})
    if ready is not None:
        ready.put(port)
    stopping = threading.Event()

    def drain(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stopping.set()

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, drain)
    stopping.wait()
    log.info("draining", extra={"worker": index})
    watch.stop()  # health says NOT_SERVING first, so balancers stop sending new calls
    if http is not None:
        http.stop(settings.grace_seconds)
    server.stop(settings.grace_seconds).wait()
    services.clients.stop()
    db.dispose()
    log.info("stopped", extra={"worker": index})


def serve(settings: ServiceSettings) -> int:
    configure_logging()
    if settings.insecure_plaintext:
        log.warning(
            "PLAINTEXT gRPC: PRANEYA_INSECURE_PLAINTEXT is set; never use this outside local development"
        )
    if settings.workers > 1 and (settings.port == 0 or settings.http_port == 0):
        raise SystemExit("several workers need fixed ports (PORT, PRANEYA_HTTP_PORT) to share")
    # SO_REUSEPORT would let another instance share a port silently: claim each before any worker
    # binds, and hold the claims until the last worker has stopped.
    with contextlib.ExitStack() as claims:
        try:
            claims.enter_context(claim_port(settings.host, settings.port))
            if settings.http_port:
                claims.enter_context(claim_port(settings.host, settings.http_port))
        except PortInUse as exc:
            raise SystemExit(f"praneya: {exc}") from None
        if settings.workers == 1:
            _worker(settings, 0)
            return 0
        return _supervise(settings)


def _supervise(settings: ServiceSettings) -> int:
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: gRPC does not survive fork
    children: dict[int, Any] = {}
    shutting_down = threading.Event()

    def start(i: int) -> None:
        p = ctx.Process(target=_worker, args=(settings, i), name=f"praneya-worker-{i}", daemon=False)
        p.start()
        children[i] = p

    def stop_all(signum: int, frame: FrameType | None) -> None:
        del frame
        shutting_down.set()
        for p in children.values():
            if p.is_alive() and p.pid:
                os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for i in range(settings.workers):
        start(i)
    while not shutting_down.is_set():
        for i, p in list(children.items()):
            if not p.is_alive() and not shutting_down.is_set():
                log.error("worker died; restarting", extra={"worker": i, "code": str(p.exitcode)})
                start(i)
        time.sleep(0.5)
    for p in children.values():
        p.join(settings.grace_seconds + 5)
    return 0

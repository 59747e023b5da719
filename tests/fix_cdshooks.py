"""The CDS Hooks door for tests: the real HTTPS server (uvicorn, TLS with the development CA) on the
real use cases, a registered CDS client of the demo clinic with its ES384 key, and a small FHIR
server (plain HTTP on 127.0.0.1; development mode allows it) for prefetch the client leaves out.

Tests call it through a real HTTP client (httpx) and check answers against JSON Schemas written
from the CDS Hooks 2.0 specification (tests/schemas/cdshooks/)."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from engine.app.clients import client_jwk, generate_client_key, mint_client_token
from engine.app.service import Services
from engine.app.settings import ServiceSettings
from engine.doors.serve import HttpDoor
from store.clients import SCOPES, register_client
from tests.fix_grpc import Service

TENANT = "demo-clinic"
ORDER_SELECT = "praneya-medication-safety-order-select"
ORDER_SIGN = "praneya-medication-safety-order-sign"
PATIENT_VIEW = "praneya-medication-safety-patient-view"


@dataclass
class FhirServer:
    """Answers GET {base}/{path} with what `resources` holds for the path (or 404); counts calls."""

    base: str
    resources: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (path, authorization header)


@dataclass
class CdsService:
    base_url: str
    ca: Path
    client_id: str
    issuer: str
    key_file: Path
    kid: str
    fhir: FhirServer
    grpc: Service
    other_key: Path  # a key of no registered client

    def token(self, service_id: str | None = ORDER_SELECT, *, key: Path | None = None, **kwargs: Any) -> str:
        audience = f"{self.base_url}/cds-services" + (f"/{service_id}" if service_id else "")
        kwargs.setdefault("audience", audience)
        return mint_client_token(key or self.key_file, issuer=self.issuer, kid=self.kid, **kwargs)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, verify=ssl.create_default_context(cafile=str(self.ca)), timeout=30)

    def headers(self, service_id: str | None = ORDER_SELECT, **kwargs: Any) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(service_id, **kwargs)}"}


def _fhir_server(state: FhirServer) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.calls.append((self.path, self.headers.get("authorization", "")))
            path = self.path.split("/fhir/", 1)[-1]
            key = next((k for k in state.resources if path.startswith(k)), None)
            body = json.dumps(state.resources[key]).encode() if key is not None else b"{}"
            self.send_response(200 if key is not None else 404)
            self.send_header("content-type", "application/fhir+json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="session")
def cds_service(
    grpc_service: Service,
    grpc_env: dict[str, str],
    admin_engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CdsService]:
    folder = tmp_path_factory.mktemp("cds-client")
    key, other = folder / "ehr.pem", folder / "other.pem"
    generate_client_key(key, "ES384")
    generate_client_key(other, "ES384")
    client_id, issuer, kid = "test-ehr", "https://ehr.test.example/", "ehr-key-1"
    state = FhirServer(base="")
    fhir = _fhir_server(state)
    state.base = f"http://127.0.0.1:{fhir.server_address[1]}/fhir"
    threading.Thread(target=fhir.serve_forever, daemon=True).start()
    with admin_engine.begin() as conn:
        register_client(
            conn,
            client_id=client_id,
            tenant_id=TENANT,
            display_name="Test EHR",
            issuer=issuer,
            scopes=SCOPES,
            algorithms=("ES384",),
            jwks={"keys": [client_jwk(key, kid)]},
            fhir_server_hosts=("127.0.0.1",),
            cors_origins=("https://ehr.test.example",),
        )
    env = {**grpc_env, "PRANEYA_HTTP_PORT": "0", "PRANEYA_FHIR_ALLOW_HTTP": "1"}
    settings = ServiceSettings.from_env(env)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("PRANEYA_MASTER_KEY_FILE", "PRANEYA_SIGNING_KEY_FILE", "PRANEYA_APP_DATABASE_URL"):
            mp.setenv(name, env[name])
        mp.delenv("PRANEYA_DB_SSLMODE", raising=False)
        services = Services.from_settings(settings)
    door = HttpDoor(settings, services)
    services.clients.start()
    door.start()
    try:
        yield CdsService(
            base_url=door.base_url,
            ca=Path(grpc_env["DEV_FOLDER"]) / "ca.pem",
            client_id=client_id,
            issuer=issuer,
            key_file=key,
            kid=kid,
            fhir=state,
            grpc=grpc_service,
            other_key=other,
        )
    finally:
        door.stop(1)
        services.clients.stop()
        services.db.dispose()
        fhir.shutdown()

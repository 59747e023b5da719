"""A real ClinicalSafety server for end-to-end tests: loopback port, TLS, this worker's PostgreSQL.

The session fixture `grpc_service` loads knowledge and global rules into this worker's test database,
seeds the demo data (with the session's master key, the same file the server is given), creates
development keys and certificates in a temporary folder, builds the server exactly as `praneya
serve` does (`build_server`) and starts it on a free port of 127.0.0.1. Tests get a `Service`: the
address, the CA, a stub factory over one TLS channel, and `token(...)` minting bearer tokens with the
temporary JWT key.

Everything the server logs (the `praneya` loggers, and anything else that propagates to the root
logger) is captured as formatted JSON lines in `Service.logs`, so a test can assert that no PHI was
ever written to a log.

`build_server` reads its keys and database URL from os.environ at call time; those variables are
set only around that call (MonkeyPatch.context), so other suites in the same session see the
environment they expect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine, text

from engine.app.settings import ServiceSettings
from engine.app.tokens import mint_token
from engine.doors.cli import main as praneya
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc
from engine.doors.grpc.server import HealthWatch, JsonFormatter, build_server
from engine.ops.content import SHIPPED_CONTENT_STEPS
from engine.ops.dev import ensure_dev_keys
from store.config import PROJECT_ROOT, app_database_url
from store.crypto import LocalKeyFileProvider
from store.demo import seed_demo
from store.keys import KeyStore
from store.session import Database
from store.signing import Signer

__all__ = ["USER_AGENT", "RunningServer", "Service", "answer", "audit_rows_of", "running_server", "service_env"]

RULES = PROJECT_ROOT / "rules"
USER_AGENT = "praneya-e2e-tests/1"


class _ListHandler(logging.Handler):
    """Keeps every record as the JSON line the server would write, plus its raw attributes."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            # Whatever else a record carries (extra fields the formatter leaves out) is checked too.
            extras = " ".join(
                f"{k}={v}" for k, v in record.__dict__.items() if k not in ("msg", "args") and isinstance(v, str)
            )
        except Exception:  # noqa: BLE001 - a log handler must never raise into the server
            line, extras = f"<unformattable record from {record.name}>", ""
        with self._guard:
            self.lines.append(line + " " + extras)


@dataclass
class RunningServer:
    address: str
    port: int
    server: grpc.Server
    watch: HealthWatch
    db: Database
    ca: bytes

    def channel(self) -> grpc.Channel:
        creds = grpc.ssl_channel_credentials(root_certificates=self.ca)
        return grpc.secure_channel(self.address, creds, options=[("grpc.primary_user_agent", USER_AGENT)])


@dataclass
class Service:
    """What tests need to call the running service."""

    address: str
    ca: bytes
    folder: Path
    jwt_private_key: Path
    signing_public_key: bytes
    settings: ServiceSettings
    env: dict[str, str]
    admin: Engine
    logs: list[str]
    channel: grpc.Channel
    _roles: dict[str, tuple[str, str]] = field(default_factory=dict)

    def stub(self) -> Any:
        return pb_grpc.ClinicalSafetyStub(self.channel)

    def token(
        self,
        user: str,
        tenant: str | None = None,
        role: str | None = None,
        *,
        mfa: bool = True,
        ttl: int = 600,
        audience: str | None = None,
        key_file: Path | None = None,
    ) -> str:
        """A bearer token for `user`; tenant and role default to the user's own (read from the database)."""
        if tenant is None or role is None:
            found = self._roles.get(user)
            if found is None:
                with self.admin.connect() as conn:
                    row = conn.execute(
                        text("SELECT tenant_id, healthcare_role::text FROM public.users WHERE id = :u"), {"u": user}
                    ).one()
                found = self._roles[user] = (row[0], row[1])
            tenant, role = tenant or found[0], role or found[1]
        return mint_token(
            key_file or self.jwt_private_key,
            user_id=user,
            tenant_id=tenant,
            role=role,
            mfa=mfa,
            audience=audience or self.settings.jwt_audience,
            issuer=self.settings.jwt_issuer,
            ttl_seconds=ttl,
        )

    def md(self, user: str, **kwargs: Any) -> tuple[tuple[str, str], ...]:
        """Call metadata with a bearer token for `user` (keyword arguments as for `token`)."""
        return (("authorization", f"Bearer {self.token(user, **kwargs)}"),)



def answer(call: Callable[..., Any], request: Any, md: Any) -> tuple[grpc.StatusCode, str]:
    """A unary call's status and details (OK and "" when it succeeds)."""
    try:
        call(request, metadata=md, timeout=15)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def audit_rows_of(svc: Service, user: str) -> int:
    """Audit rows that name this user (read as the owner: every tenant, no RLS)."""
    with svc.admin.connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM audit.audit_logs WHERE user_id = :u"), {"u": user}).scalar_one()
        )

def service_env(folder: Path, paths: Mapping[str, Path], master_key_file: Path, **overrides: str) -> dict[str, str]:
    env = {
        "PRANEYA_HOST": "127.0.0.1",
        "PORT": "0",
        "PRANEYA_WORKERS": "1",
        "PRANEYA_HTTP_PORT": "off",  # the CDS Hooks door has its own fixture (tests/fix_cdshooks.py)
        "PRANEYA_THREADS": "8",
        "PRANEYA_TLS_CERT_FILE": str(paths["server.pem"]),
        "PRANEYA_TLS_KEY_FILE": str(paths["server-key.pem"]),
        "PRANEYA_JWT_PUBLIC_KEY_FILES": str(paths["jwt-public.pem"]),
        "PRANEYA_EMERGENCY_GRANT_MINUTES": "60",
        "PRANEYA_MAX_MESSAGE_BYTES": str(1 << 20),
        "PRANEYA_DB_POOL_SIZE": "4",
        "PRANEYA_DB_POOL_TIMEOUT_MS": "5000",
        "PRANEYA_STATEMENT_TIMEOUT_MS": "10000",
        "PRANEYA_SHUTDOWN_GRACE_SECONDS": "1",
        "PRANEYA_ENGINE_REFRESH_SECONDS": "5",
        # Read by build_server through key_provider_from_env(), signer_from_env() and Database().
        "PRANEYA_MASTER_KEY_FILE": str(master_key_file),
        "PRANEYA_SIGNING_KEY_FILE": str(paths["signing.pem"]),
        "PRANEYA_DB_CONNECT_TIMEOUT": "3",
    }
    env.update(overrides)
    return env


@contextmanager
def running_server(env: Mapping[str, str], ca: bytes, *, health_interval: float = 0.5) -> Iterator[RunningServer]:
    """Builds a server from `env` (settings and the variables build_server reads), starts it, stops it."""
    settings = ServiceSettings.from_env(env)
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "PRANEYA_MASTER_KEY_FILE",
            "PRANEYA_SIGNING_KEY_FILE",
            "PRANEYA_APP_DATABASE_URL",
            "PRANEYA_DB_CONNECT_TIMEOUT",
        ):
            mp.setenv(name, env[name])
        mp.delenv("PRANEYA_DB_SSLMODE", raising=False)
        server, watch, db, port = build_server(settings)
    watch.interval = health_interval
    server.start()
    watch.start()
    try:
        yield RunningServer(f"127.0.0.1:{port}", port, server, watch, db, ca)
    finally:
        watch.stop()
        server.stop(1).wait()
        db.dispose()


def _load_knowledge(database_url: str) -> None:
    """The shipped content, as `praneya deploy --demo` installs it (engine/ops/content.py), but the
    demo tenants: the fixtures seed those themselves."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        mp.chdir(PROJECT_ROOT)
        for step in SHIPPED_CONTENT_STEPS:
            if step[0] != "demo":
                assert praneya(list(step)) == 0, step


@pytest.fixture(scope="session")
def grpc_env(tmp_path_factory: pytest.TempPathFactory, database_url: str, master_key_file: Path) -> dict[str, str]:
    """Development keys in a temporary folder and the environment a server for this worker's DB needs."""
    folder = tmp_path_factory.mktemp("grpc-dev")
    paths = ensure_dev_keys(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PRANEYA_APP_DATABASE_URL", raising=False)
        app_url = app_database_url(database_url)
    return service_env(folder, paths, master_key_file, PRANEYA_APP_DATABASE_URL=app_url, DEV_FOLDER=str(folder))


@pytest.fixture(scope="session")
def grpc_service(
    grpc_env: dict[str, str],
    database_url: str,
    admin_engine: Engine,
    app_db: Database,
    provider: LocalKeyFileProvider,
    keys: KeyStore,
) -> Iterator[Service]:
    _load_knowledge(database_url)
    seed_demo(admin_engine, app_db, provider, keys)
    folder = Path(grpc_env["DEV_FOLDER"])
    ca = (folder / "ca.pem").read_bytes()
    handler = _ListHandler()
    root, praneya_log = logging.getLogger(), logging.getLogger("praneya")
    old_level = praneya_log.level
    praneya_log.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        with running_server(grpc_env, ca) as running, running.channel() as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            yield Service(
                address=running.address,
                ca=ca,
                folder=folder,
                jwt_private_key=folder / "jwt-private.pem",
                signing_public_key=Signer.from_file(folder / "signing.pem").public_raw,
                settings=ServiceSettings.from_env(grpc_env),
                env=grpc_env,
                admin=admin_engine,
                logs=handler.lines,
                channel=channel,
            )
    finally:
        root.removeHandler(handler)
        praneya_log.setLevel(old_level)

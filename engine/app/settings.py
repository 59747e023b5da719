"""Service settings: one frozen dataclass, read from the environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServiceSettings", "SettingsError"]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is outside {lo}..{hi}")
    return value


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(f"{name} names {path}, which is not a readable file")
    return path


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _http_port(env: Mapping[str, str]) -> int | None:
    # Off when asked, and by default in plaintext development (CDS Hooks is HTTPS only).
    raw = env.get("PRANEYA_HTTP_PORT", "").strip().lower()
    if raw == "off" or (not raw and _flag(env, "PRANEYA_INSECURE_PLAINTEXT")):
        return None
    return _int(env, "PRANEYA_HTTP_PORT", 8443, 0, 65535)


@dataclass(frozen=True)
class ServiceSettings:
    host: str
    port: int
    workers: int
    threads: int
    tls_cert: Path | None
    tls_key: Path | None
    tls_client_ca: Path | None
    require_client_cert: bool
    insecure_plaintext: bool
    jwt_public_keys: tuple[Path, ...]
    jwt_issuer: str
    jwt_audience: str
    jwt_leeway_seconds: int
    jwt_max_lifetime_seconds: int
    emergency_grant_minutes: int
    max_message_bytes: int
    max_active_items: int
    max_alerts: int
    db_pool_size: int
    db_pool_timeout_s: float
    statement_timeout_ms: int
    metrics_port: int
    grace_seconds: float
    engine_refresh_seconds: float
    max_connection_idle_seconds: int
    handshake_timeout_seconds: int
    # The CDS Hooks door (HTTPS): its port (None: not served), the URL clients call it by (the `aud`
    # of their tokens and the base of card sources; default https://host:port), extra CORS origins
    # beside the registered clients' own, and plain-http FHIR servers (development only).
    http_port: int | None = 8443
    http_public_url: str = ""
    cors_origins: tuple[str, ...] = ()
    fhir_allow_http: bool = False

    @property
    def http_url(self) -> str:
        return self.http_public_url or f"https://{self.host}:{self.http_port}"

    @property
    def max_send_bytes(self) -> int:
        """The largest answer the server sends (gRPC's send limit); EvaluateSafety checks against it
        before it commits, so no answer is audited as given that the caller could not receive."""
        return 4 * self.max_message_bytes

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        e = os.environ if env is None else env
        keys_raw = [p for p in e.get("PRANEYA_JWT_PUBLIC_KEY_FILES", "").split(",") if p.strip()]
        jwt_keys = []
        for raw in keys_raw:
            path = Path(raw.strip())
            if not path.is_file():
                raise SettingsError(
                    f"PRANEYA_JWT_PUBLIC_KEY_FILES names {path}, which is not a readable file"
                )
            jwt_keys.append(path)
        settings = cls(
            host=e.get("PRANEYA_HOST", "127.0.0.1"),
            port=_int(e, "PORT", 50051, 0, 65535),
            workers=_int(e, "PRANEYA_WORKERS", 1, 1, 64),
            threads=_int(e, "PRANEYA_THREADS", 16, 1, 256),
            tls_cert=_path(e, "PRANEYA_TLS_CERT_FILE"),
            tls_key=_path(e, "PRANEYA_TLS_KEY_FILE"),
            tls_client_ca=_path(e, "PRANEYA_TLS_CLIENT_CA_FILE"),
            require_client_cert=_flag(e, "PRANEYA_TLS_REQUIRE_CLIENT_CERT"),
            insecure_plaintext=_flag(e, "PRANEYA_INSECURE_PLAINTEXT"),
            jwt_public_keys=tuple(jwt_keys),
            jwt_issuer=e.get("PRANEYA_JWT_ISSUER", "praneya-dev"),
            jwt_audience=e.get("PRANEYA_JWT_AUDIENCE", "praneya-safety"),
            jwt_leeway_seconds=_int(e, "PRANEYA_JWT_LEEWAY_SECONDS", 30, 0, 300),
            jwt_max_lifetime_seconds=_int(e, "PRANEYA_JWT_MAX_LIFETIME_SECONDS", 3600, 60, 86400),
            emergency_grant_minutes=_int(e, "PRANEYA_EMERGENCY_GRANT_MINUTES", 60, 1, 720),
            max_message_bytes=_int(e, "PRANEYA_MAX_MESSAGE_BYTES", 1 << 20, 1024, 64 << 20),
            max_active_items=_int(e, "PRANEYA_MAX_ACTIVE_ITEMS", 100, 1, 10000),
            max_alerts=_int(e, "PRANEYA_MAX_ALERTS", 200, 2, 10000),
            db_pool_size=_int(e, "PRANEYA_DB_POOL_SIZE", 8, 1, 200),
            db_pool_timeout_s=_int(e, "PRANEYA_DB_POOL_TIMEOUT_MS", 2000, 1, 60000) / 1000,
            statement_timeout_ms=_int(e, "PRANEYA_STATEMENT_TIMEOUT_MS", 5000, 10, 600000),
            metrics_port=_int(e, "PRANEYA_METRICS_PORT", 0, 0, 65535),
            grace_seconds=_int(e, "PRANEYA_SHUTDOWN_GRACE_SECONDS", 10, 0, 300),
            engine_refresh_seconds=_int(e, "PRANEYA_ENGINE_REFRESH_SECONDS", 5, 0, 3600),
            max_connection_idle_seconds=_int(e, "PRANEYA_MAX_CONNECTION_IDLE_SECONDS", 300, 1, 86400),
            handshake_timeout_seconds=_int(e, "PRANEYA_HANDSHAKE_TIMEOUT_SECONDS", 10, 1, 300),
            http_port=_http_port(e),
            http_public_url=e.get("PRANEYA_HTTP_PUBLIC_URL", "").strip().rstrip("/"),
            cors_origins=tuple(
                o.strip().rstrip("/") for o in e.get("PRANEYA_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            fhir_allow_http=_flag(e, "PRANEYA_FHIR_ALLOW_HTTP"),
        )
        if "*" in settings.cors_origins:
            raise SettingsError("PRANEYA_CORS_ORIGINS: name each origin; '*' is not accepted")
        if settings.http_port is not None and settings.insecure_plaintext:
            raise SettingsError(
                "PRANEYA_INSECURE_PLAINTEXT with PRANEYA_HTTP_PORT: CDS Hooks is served over HTTPS only"
            )
        if settings.http_public_url and not settings.http_public_url.startswith("https://"):
            raise SettingsError("PRANEYA_HTTP_PUBLIC_URL must be an https:// URL")
        if not settings.jwt_public_keys:
            raise SettingsError(
                "PRANEYA_JWT_PUBLIC_KEY_FILES is not set: name the PEM public keys tokens are "
                "verified against (`praneya dev keys` makes a development pair)"
            )
        if settings.insecure_plaintext:
            if settings.tls_cert or settings.tls_key:
                raise SettingsError("PRANEYA_INSECURE_PLAINTEXT is set together with TLS files: choose one")
        elif not (settings.tls_cert and settings.tls_key):
            raise SettingsError(
                "TLS is required: set PRANEYA_TLS_CERT_FILE and PRANEYA_TLS_KEY_FILE (or, for local "
                "development only, PRANEYA_INSECURE_PLAINTEXT=1)"
            )
        if settings.require_client_cert and not settings.tls_client_ca:
            raise SettingsError("PRANEYA_TLS_REQUIRE_CLIENT_CERT needs PRANEYA_TLS_CLIENT_CA_FILE")
        return settings

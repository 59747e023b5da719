"""Local development: keys and certificates under .local/dev, tokens, `make run`, and a demo client.

Nothing here is for production: the dev CA, JWT key and master key are generated on this machine and
kept in the git-ignored .local/ folder.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.app.clients import client_jwk, generate_client_key, mint_client_token
from engine.app.tokens import generate_dev_keypair, mint_token
from store.config import PROJECT_ROOT, admin_database_url, app_database_url, sqlalchemy_url
from store.crypto import generate_master_key_file
from store.signing import generate_signing_key

__all__ = [
    "DEV",
    "DEV_CLIENT",
    "DevClient",
    "client_token_for",
    "database_summary",
    "dev_client_keys",
    "dev_environment",
    "ensure_dev_client",
    "ensure_dev_keys",
    "free_port",
    "token_for",
]

DEV = PROJECT_ROOT / ".local" / "dev"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def ensure_dev_keys(folder: Path = DEV) -> dict[str, Path]:
    """Creates whatever is missing: master key, signing key, JWT key pair, a CA, server and client certs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        name: folder / name
        for name in (
            "master.key",
            "signing.pem",
            "jwt-private.pem",
            "jwt-public.pem",
            "ca.pem",
            "ca-key.pem",
            "server.pem",
            "server-key.pem",
            "client.pem",
            "client-key.pem",
        )
    }
    if not paths["master.key"].exists():
        generate_master_key_file(paths["master.key"])
    if not paths["signing.pem"].exists():
        generate_signing_key(paths["signing.pem"])
    if not paths["jwt-private.pem"].exists():
        generate_dev_keypair(paths["jwt-private.pem"], paths["jwt-public.pem"])
    if not paths["server.pem"].exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("praneya dev CA", ca_key, ca_key, None, ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        client_key = ec.generate_private_key(ec.SECP256R1())
        _write_key(paths["ca-key.pem"], ca_key)
        paths["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        _write_key(paths["server-key.pem"], server_key)
        paths["server.pem"].write_bytes(
            _cert("localhost", server_key, ca_key, ca.subject, server=True).public_bytes(serialization.Encoding.PEM)
        )
        _write_key(paths["client-key.pem"], client_key)
        paths["client.pem"].write_bytes(
            _cert("praneya dev client", client_key, ca_key, ca.subject).public_bytes(serialization.Encoding.PEM)
        )
    return paths


def dev_environment(paths: dict[str, Path]) -> dict[str, str]:
    """The variables `praneya serve` needs, pointing at the development keys (explicit settings win)."""
    env = {
        "PRANEYA_MASTER_KEY_FILE": str(paths["master.key"]),
        "PRANEYA_SIGNING_KEY_FILE": str(paths["signing.pem"]),
        "PRANEYA_JWT_PUBLIC_KEY_FILES": str(paths["jwt-public.pem"]),
        "PRANEYA_TLS_CERT_FILE": str(paths["server.pem"]),
        "PRANEYA_TLS_KEY_FILE": str(paths["server-key.pem"]),
    }
    return {k: os.environ.get(k) or v for k, v in env.items()}


def database_summary(admin_url: str | None = None, app_url: str | None = None) -> str:
    """Which database `make run` uses: name, host and port, and the roles — never a password (the URLs
    may carry them)."""

    def where(url: str) -> str:
        u = sqlalchemy_url(url)
        host = u.host or str(u.query.get("host") or "the local socket")
        return f"{u.database} on {host}:{u.port or 5432}"

    admin = admin_url or admin_database_url()
    app = app_url or app_database_url(admin)
    summary = f"database {where(admin)} (migrations as {sqlalchemy_url(admin).username}"
    if where(app) != where(admin):
        return f"{summary}; the service as {sqlalchemy_url(app).username} on {where(app)})"
    return f"{summary}, the service as {sqlalchemy_url(app).username})"


def token_for(
    user_id: str,
    *,
    tenant_id: str | None = None,
    role: str | None = None,
    mfa: bool = True,
    ttl_seconds: int = 3600,
) -> str:
    """A development token; tenant and role default to the user's own (read on the admin connection)."""
    if tenant_id is None or role is None:
        from sqlalchemy import create_engine, text

        from store.config import admin_database_url

        engine = create_engine(admin_database_url())
        try:
            with engine.connect() as conn:
                row = conn.execute(
                    text("SELECT tenant_id, healthcare_role::text FROM public.users WHERE id = :u"),
                    {"u": user_id},
                ).one_or_none()
        finally:
            engine.dispose()
        if row is None:
            raise LookupError(f"--user: no user {user_id!r} (run `praneya demo seed` for the demo users)")
        tenant_id, role = tenant_id or row[0], role or row[1]
    paths = ensure_dev_keys()
    return mint_token(
        paths["jwt-private.pem"],
        user_id=user_id,
        tenant_id=tenant_id,
        role=role,
        mfa=mfa,
        ttl_seconds=ttl_seconds,
    )


# --- the development client (an EHR that `make run` registers) ---------------------------------

DEV_CLIENT = "dev-ehr"


@dataclass(frozen=True)
class DevClient:
    id: str
    tenant_id: str
    issuer: str
    kid: str
    private_key: Path
    jwks: Path


def _dev_client_files(client_id: str, folder: Path) -> tuple[Path, Path]:
    return folder / "clients" / f"{client_id}-private.pem", folder / "clients" / f"{client_id}-jwks.json"


def _kid(jwk: dict[str, Any]) -> str:
    # A JWK thumbprint (RFC 7638: the required members, sorted, no spaces) names the key.
    required = {k: jwk[k] for k in ("crv", "kty", "x", "y") if k in jwk}
    digest = hashlib.sha256(json.dumps(required, sort_keys=True, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def dev_client_keys(client_id: str = DEV_CLIENT, folder: Path = DEV) -> tuple[Path, Path, str]:
    """The development client's ES384 key pair next to the other dev keys: (private PEM, JWKS, kid);
    created when missing."""
    private, jwks = _dev_client_files(client_id, folder)
    if not private.exists():
        generate_client_key(private, "ES384")
    jwk = client_jwk(private, "pending")
    kid = _kid(jwk)
    jwk["kid"] = kid
    doc = json.dumps({"keys": [jwk]}, indent=2) + "\n"
    if not jwks.exists() or jwks.read_text() != doc:
        jwks.write_text(doc)
    return private, jwks, kid


def ensure_dev_client(
    conn: Any,
    tenant_id: str,
    *,
    client_id: str = DEV_CLIENT,
    folder: Path = DEV,
    cors_origins: tuple[str, ...] = ("https://localhost:8443", "https://127.0.0.1:8443"),
    fhir_server_hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
) -> DevClient:
    """Registers the development client on the admin connection `conn` (idempotent; the caller
    commits): every scope, ES384, its key pair under .local/dev/clients, issuer
    https://<client_id>.praneya.localhost/. When the key files were made again, the registration
    takes the new key."""
    from store.clients import SCOPES, register_client, rotate_client_keys

    private, jwks_file, kid = dev_client_keys(client_id, folder)
    issuer = f"https://{client_id}.praneya.localhost/"
    jwks = json.loads(jwks_file.read_text())
    created = register_client(
        conn, client_id=client_id, tenant_id=tenant_id, display_name=f"Development EHR ({client_id})",
        issuer=issuer, scopes=SCOPES, algorithms=("ES384",), jwks=jwks, cors_origins=cors_origins,
        fhir_server_hosts=fhir_server_hosts,
    )
    if not created:
        from sqlalchemy import text

        row = conn.execute(
            text("SELECT tenant_id, issuer, jwks, is_active FROM public.clients WHERE id = :c"), {"c": client_id}
        ).one()
        if row.tenant_id != tenant_id or row.issuer != issuer or not row.is_active:
            raise LookupError(f"client {client_id!r} exists with another tenant or issuer, or is deactivated")
        if row.jwks != jwks:
            rotate_client_keys(conn, client_id, jwks=jwks)
    return DevClient(client_id, tenant_id, issuer, kid, private, jwks_file)


def client_token_for(
    client_id: str,
    audience: str,
    *,
    scopes: list[str] | None = None,
    acting_for: str | None = None,
    ttl_seconds: int = 300,
    folder: Path = DEV,
) -> str:
    """A token of a development client (its key under .local/dev/clients), for `audience` (the URL the
    service is called at; for CDS Hooks the service endpoint, e.g. https://localhost:8443/cds-services/x)."""
    from sqlalchemy import create_engine, text

    private = _dev_client_files(client_id, folder)[0]
    if not private.exists():
        raise LookupError(f"--client: no development key for {client_id!r} under {folder / 'clients'}"
                          " (`praneya dev up` registers dev-ehr)")
    _, _, kid = dev_client_keys(client_id, folder)
    engine = create_engine(admin_database_url())
    try:
        with engine.connect() as conn:
            issuer = conn.execute(
                text("SELECT issuer FROM public.clients WHERE id = :c AND is_active"), {"c": client_id}
            ).scalar_one_or_none()
    finally:
        engine.dispose()
    if issuer is None:
        raise LookupError(f"--client: no active client {client_id!r} (`praneya dev up` registers dev-ehr)")
    return mint_client_token(private, issuer=issuer, audience=audience, kid=kid, scopes=scopes,
                             acting_for_user=acting_for, ttl_seconds=ttl_seconds)


def call_evaluate(
    address: str, token: str, patient_id: str, proposed: list[str], foods: list[str], as_json: bool
) -> int:
    """A small client: EvaluateSafety over TLS with the dev CA, prints ranked alerts, verifies the signature."""
    import grpc

    from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
    from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc
    from engine.doors.grpc.verify import signed_content, verify_response

    paths = ensure_dev_keys()
    creds = grpc.ssl_channel_credentials(root_certificates=paths["ca.pem"].read_bytes())
    with grpc.secure_channel(address, creds) as channel:
        stub = pb_grpc.ClinicalSafetyStub(channel)
        md = (("authorization", f"Bearer {token}"),)
        try:
            key = stub.GetSigningKey(pb.GetSigningKeyRequest(), metadata=md, timeout=10)
            resp = stub.EvaluateSafety(
                pb.EvaluateSafetyRequest(
                    patient_id=patient_id,
                    proposed_medications=[pb.ProposedMedication(name=n) for n in proposed],
                    proposed_foods=foods,
                ),
                metadata=md,
                timeout=10,
            )
        except grpc.RpcError as err:
            print(f"{err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    verified = verify_response(resp, key.public_key, patient_id)
    if as_json:
        doc: dict[str, Any] = signed_content(resp, patient_id)
        doc["signature_verified"] = verified
        print(json.dumps(doc, indent=2))
        return 0 if verified else 1
    print(
        f"evaluation {resp.evaluation_id}  {pb.Completeness.Name(resp.completeness)}  "
        f"rules {resp.ruleset_version[:12]}  signature {'verified' if verified else 'INVALID'}"
    )
    for a in resp.alerts:
        flag = "!" if a.interruptive else " "
        print(f"{flag} {pb.Severity.Name(a.severity):9} {pb.AlertKind.Name(a.kind):22} {a.summary}")
    for r in resp.incomplete_rules:
        print(f"  incomplete: {r.rule_id}: {r.reason}")
    return 0 if verified else 1

"""Registered clients (an EHR or a backend): their scopes, their public keys, the registry.

A client authenticates with a JWT it signs itself; its issuer (`iss`) names it, and through it
the one tenant it belongs to. What it may do is its scopes, least privilege:

- `evaluate.supplied` (EVALUATE_SUPPLIED): evaluate patient data the client sends (a FHIR Bundle,
  CDS Hooks prefetch); the database lets it read no patient data at all.
- `evaluate.stored` (EVALUATE_STORED): evaluate a patient record stored here; reads the health
  data of its own tenant's patients, read-only.
- `records.write` (RECORDS_WRITE): write patients' health records in its tenant.

Operators write the registry on the admin connection (`praneya clients ...`); each change leaves an
audit row. The service reads it through `public.registered_clients()` and records each accepted
token id through `public.claim_client_token()` (migration 0011), never the tables themselves.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import Connection, text

__all__ = [
    "ALGORITHMS",
    "CLAIM_TOKEN",
    "EVALUATE_STORED",
    "EVALUATE_SUPPLIED",
    "RECORDS_WRITE",
    "SCOPES",
    "ClientError",
    "ClientRecord",
    "ClientRow",
    "PublicJwk",
    "claim_token",
    "deactivate_client",
    "list_clients",
    "load_active_clients",
    "parse_jwks",
    "register_client",
    "rotate_client_keys",
]

EVALUATE_SUPPLIED = "evaluate.supplied"
EVALUATE_STORED = "evaluate.stored"
RECORDS_WRITE = "records.write"
SCOPES = (EVALUATE_SUPPLIED, EVALUATE_STORED, RECORDS_WRITE)

# Asymmetric only (CDS Hooks 2.0 forbids `none` and symmetric algorithms; ES384 and RS384 are its
# recommendation), one key type each: a key is used with exactly one algorithm.
ALGORITHMS = ("ES384", "RS384", "EdDSA")
MIN_RSA_BITS = 2048
MAX_KEYS = 20

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}(:|$)){_LABEL}(\.{_LABEL})*(:[0-9]{{1,5}})?$")
_ORIGIN = re.compile(r"^https?://[a-z0-9]([a-z0-9.-]{0,252})(:[0-9]{1,5})?$")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class ClientError(ValueError):
    """Bad client registration input; the message names the field, never a key's material."""


@dataclass(frozen=True, slots=True)
class PublicJwk:
    kid: str
    alg: str
    key: Any  # a cryptography public key object


def _algorithm_of(jwk: Mapping[str, Any]) -> str:
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "EC" and crv == "P-384":
        return "ES384"
    if kty == "RSA":
        return "RS384"
    if kty == "OKP" and crv in ("Ed25519", "Ed448"):
        return "EdDSA"
    raise ClientError(f"key type {kty!r}{f' curve {crv!r}' if crv else ''} is not usable with {', '.join(ALGORITHMS)}")


def parse_jwks(document: Mapping[str, Any], algorithms: Iterable[str] = ALGORITHMS) -> dict[str, PublicJwk]:
    """The signing keys of a JWK Set (RFC 7517), by kid, each with the one algorithm it may sign with.

    Refused: a set without keys, a key without a unique kid, private or symmetric key material, a key
    for another use, an `alg` member that disagrees with the key type, an algorithm the client is not
    allowed, RSA keys under 2048 bits."""
    allowed = set(algorithms)
    if allowed - set(ALGORITHMS):
        raise ClientError(f"algorithms: only {', '.join(ALGORITHMS)} are accepted")
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise ClientError("jwks: a JWK Set needs a non-empty 'keys' array")
    if len(keys) > MAX_KEYS:
        raise ClientError(f"jwks: at most {MAX_KEYS} keys")
    out: dict[str, PublicJwk] = {}
    for i, jwk in enumerate(keys):
        where = f"jwks.keys[{i}]"
        if not isinstance(jwk, Mapping):
            raise ClientError(f"{where}: not a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 200:
            raise ClientError(f"{where}: a kid of 1 to 200 characters is required")
        if kid in out:
            raise ClientError(f"{where}: kid {kid!r} appears twice")
        if any(m in jwk for m in _PRIVATE_MEMBERS):
            raise ClientError(f"{where}: holds private or symmetric key material; register public keys only")
        if jwk.get("use", "sig") != "sig":
            raise ClientError(f"{where}: 'use' must be 'sig'")
        alg = _algorithm_of(jwk)
        if "alg" in jwk and jwk["alg"] != alg:
            raise ClientError(f"{where}: 'alg' does not match the key type (expected {alg})")
        if alg not in allowed:
            raise ClientError(f"{where}: {alg} is not among the client's algorithms")
        raw = json.dumps(dict(jwk))
        key: Any
        try:
            if alg == "ES384":
                key = ECAlgorithm.from_jwk(raw)
            elif alg == "RS384":
                key = RSAAlgorithm.from_jwk(raw)
            else:
                key = OKPAlgorithm.from_jwk(raw)
        except Exception:  # noqa: BLE001 - any malformed member; the message must not echo key material
            raise ClientError(f"{where}: not a valid {alg} public key") from None
        if not hasattr(key, "verify") or hasattr(key, "private_bytes"):
            raise ClientError(f"{where}: not a public key")
        if alg == "RS384" and key.key_size < MIN_RSA_BITS:
            raise ClientError(f"{where}: RSA keys need at least {MIN_RSA_BITS} bits")
        out[kid] = PublicJwk(kid=kid, alg=alg, key=key)
    return out


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """What the service needs of an active client to verify its tokens and serve it."""

    id: str
    tenant_id: str
    issuer: str
    jwks: Mapping[str, Any] | None
    jwks_url: str | None
    algorithms: tuple[str, ...]
    scopes: tuple[str, ...]
    fhir_server_hosts: tuple[str, ...]
    cors_origins: tuple[str, ...]
    updated_at: datetime


def load_active_clients(conn: Connection) -> list[ClientRecord]:
    """Every active client (any tenant), through the one function the runtime role may call."""
    rows = conn.execute(text("SELECT * FROM public.registered_clients()")).mappings()
    return [
        ClientRecord(
            id=r["id"],
            tenant_id=r["tenant_id"],
            issuer=r["issuer"],
            jwks=r["jwks"],
            jwks_url=r["jwks_url"],
            algorithms=tuple(r["algorithms"]),
            scopes=tuple(r["scopes"]),
            fhir_server_hosts=tuple(r["fhir_server_hosts"]),
            cors_origins=tuple(r["cors_origins"]),
            updated_at=r["updated_at"],
        )
        for r in rows
    ]


CLAIM_TOKEN = text("SELECT public.claim_client_token(:c, :j, :e)")


def claim_token(conn: Connection, client_id: str, jti: str, expires_at: datetime) -> str:
    """'accepted' the first time a token id is presented, 'replayed' afterwards, 'inactive' when the
    client is not an active client (whatever a cache says). Commit the caller's transaction at once:
    the claim must hold for every other worker before this call goes on. (The service claims on its
    psycopg pool with the same statement, `CLAIM_TOKEN`: engine/app/clients.py.)"""
    return str(conn.execute(CLAIM_TOKEN, {"c": client_id, "j": jti, "e": expires_at}).scalar_one())


# --- operators (admin connection) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientRow:
    id: str
    tenant_id: str
    display_name: str
    issuer: str
    jwks_url: str | None
    key_ids: tuple[str, ...]
    algorithms: tuple[str, ...]
    scopes: tuple[str, ...]
    fhir_server_hosts: tuple[str, ...]
    cors_origins: tuple[str, ...]
    is_active: bool
    created_at: datetime
    rotated_at: datetime | None
    deactivated_at: datetime | None


def _check_list(field: str, values: Iterable[str], pattern: re.Pattern[str], what: str) -> list[str]:
    out: list[str] = []
    for value in values:
        v = value.strip().lower()
        if not pattern.match(v):
            raise ClientError(f"{field}: {value!r} is not {what}")
        if v not in out:
            out.append(v)
    return out


def _check_keys(jwks: Mapping[str, Any] | None, jwks_url: str | None, algorithms: Sequence[str],
                *, allow_http_jwks_url: bool) -> None:
    if jwks is None and not jwks_url:
        raise ClientError("keys: give a JWKS document (--jwks FILE) or a JWKS URL (--jwks-url)")
    if jwks is not None:
        parse_jwks(jwks, algorithms)
    if jwks_url:
        parts = urlsplit(jwks_url)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
            raise ClientError("jwks_url: an https URL without credentials is required")
        if parts.scheme == "http" and not allow_http_jwks_url:
            raise ClientError("jwks_url: https is required (http only for development, with --allow-http-jwks-url)")


def _audit(conn: Connection, tenant_id: str, client_id: str, action: str, details: Mapping[str, Any]) -> None:
    conn.execute(
        text(
            "INSERT INTO audit.audit_logs (id, tenant_id, user_id, action, resource_type, resource_id, outcome,"
            " details, compliance_flags) VALUES (:id, :t, NULL, :a, 'public.clients', :c, 'SUCCESS',"
            " CAST(:d AS jsonb), ARRAY['OPERATOR'])"
        ),
        {"id": str(uuid.uuid4()), "t": tenant_id, "a": action, "c": client_id,
         "d": json.dumps(dict(details), sort_keys=True)},
    )


def register_client(
    conn: Connection,
    *,
    client_id: str,
    tenant_id: str,
    display_name: str,
    issuer: str,
    scopes: Sequence[str],
    algorithms: Sequence[str] = ALGORITHMS,
    jwks: Mapping[str, Any] | None = None,
    jwks_url: str | None = None,
    fhir_server_hosts: Sequence[str] = (),
    cors_origins: Sequence[str] = (),
    allow_http_jwks_url: bool = False,
) -> bool:
    """Registers an active client. False when a client with this id already exists (left as it is)."""
    if not _ID.match(client_id):
        raise ClientError("id: letters, digits and _.:@- up to 128 characters")
    if not display_name.strip():
        raise ClientError("name: must not be empty")
    if not issuer or len(issuer) > 500 or any(c.isspace() or ord(c) < 32 for c in issuer):
        raise ClientError("issuer: 1 to 500 characters, no spaces")
    bad_scopes = sorted(set(scopes) - set(SCOPES))
    if bad_scopes or not scopes:
        raise ClientError(f"scopes: one or more of {', '.join(SCOPES)}")
    if not algorithms or set(algorithms) - set(ALGORITHMS):
        raise ClientError(f"algorithms: one or more of {', '.join(ALGORITHMS)} (never none or HMAC)")
    _check_keys(jwks, jwks_url, algorithms, allow_http_jwks_url=allow_http_jwks_url)
    hosts = _check_list("fhir_server_hosts", fhir_server_hosts, _HOST, "a host name (with an optional :port)")
    origins = _check_list("cors_origins", cors_origins, _ORIGIN, "an origin (scheme://host[:port])")
    if conn.execute(text("SELECT 1 FROM public.tenants WHERE id = :t"), {"t": tenant_id}).first() is None:
        raise ClientError(f"tenant: no tenant {tenant_id!r}")
    taken = conn.execute(
        text("SELECT id FROM public.clients WHERE issuer = :i AND is_active AND id <> :c"),
        {"i": issuer, "c": client_id},
    ).first()
    if taken is not None:
        raise ClientError(f"issuer: already the issuer of active client {taken[0]!r}")
    created = conn.execute(
        text(
            "INSERT INTO public.clients (id, tenant_id, display_name, issuer, jwks, jwks_url, algorithms, scopes,"
            " fhir_server_hosts, cors_origins) VALUES (:id, :t, :n, :i, CAST(:jwks AS jsonb), :url,"
            " CAST(:algs AS text[]), CAST(:scopes AS text[]), CAST(:hosts AS text[]), CAST(:origins AS text[]))"
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        {
            "id": client_id,
            "t": tenant_id,
            "n": display_name.strip(),
            "i": issuer,
            "jwks": json.dumps(dict(jwks)) if jwks is not None else None,
            "url": jwks_url or None,
            "algs": list(dict.fromkeys(algorithms)),
            "scopes": sorted(set(scopes)),
            "hosts": hosts,
            "origins": origins,
        },
    ).first()
    if created is None:
        return False
    _audit(conn, tenant_id, client_id, "CLIENT_REGISTERED",
           {"client_id": client_id, "scopes": sorted(set(scopes)), "issuer": issuer})
    return True


def list_clients(conn: Connection, tenant_id: str | None = None) -> list[ClientRow]:
    rows = conn.execute(
        text(
            "SELECT * FROM public.clients WHERE (CAST(:t AS text) IS NULL OR tenant_id = :t) ORDER BY tenant_id, id"
        ),
        {"t": tenant_id},
    ).mappings()
    return [
        ClientRow(
            id=r["id"],
            tenant_id=r["tenant_id"],
            display_name=r["display_name"],
            issuer=r["issuer"],
            jwks_url=r["jwks_url"],
            key_ids=tuple(k.get("kid", "?") for k in (r["jwks"] or {}).get("keys", [])),
            algorithms=tuple(r["algorithms"]),
            scopes=tuple(r["scopes"]),
            fhir_server_hosts=tuple(r["fhir_server_hosts"]),
            cors_origins=tuple(r["cors_origins"]),
            is_active=r["is_active"],
            created_at=r["created_at"],
            rotated_at=r["rotated_at"],
            deactivated_at=r["deactivated_at"],
        )
        for r in rows
    ]


def deactivate_client(conn: Connection, client_id: str) -> bool:
    """Deactivates a client at once: the database refuses its next token and its next statement. False
    when there is no active client with this id."""
    row = conn.execute(
        text(
            "UPDATE public.clients SET is_active = false, deactivated_at = now(), updated_at = now()"
            " WHERE id = :c AND is_active RETURNING tenant_id"
        ),
        {"c": client_id},
    ).first()
    if row is None:
        return False
    _audit(conn, row[0], client_id, "CLIENT_DEACTIVATED", {"client_id": client_id})
    return True


def rotate_client_keys(
    conn: Connection,
    client_id: str,
    *,
    jwks: Mapping[str, Any] | None = None,
    jwks_url: str | None = None,
    allow_http_jwks_url: bool = False,
) -> tuple[str, ...]:
    """Replaces an active client's keys (document and URL; what is not given is cleared). For a
    rotation without downtime, register a set holding the old and the new key, then one with the
    new key only once the client signs with it. Returns the key ids of the new document."""
    row = conn.execute(
        text("SELECT tenant_id, algorithms FROM public.clients WHERE id = :c AND is_active FOR UPDATE"),
        {"c": client_id},
    ).first()
    if row is None:
        raise ClientError(f"client: no active client {client_id!r}")
    _check_keys(jwks, jwks_url, row[1], allow_http_jwks_url=allow_http_jwks_url)
    conn.execute(
        text(
            "UPDATE public.clients SET jwks = CAST(:jwks AS jsonb), jwks_url = :url, rotated_at = now(),"
            " updated_at = now() WHERE id = :c"
        ),
        {"c": client_id, "jwks": json.dumps(dict(jwks)) if jwks is not None else None, "url": jwks_url or None},
    )
    kids = tuple(parse_jwks(jwks, row[1])) if jwks is not None else ()
    _audit(conn, row[0], client_id, "CLIENT_KEYS_ROTATED",
           {"client_id": client_id, "key_ids": list(kids), "jwks_url": bool(jwks_url)})
    return kids

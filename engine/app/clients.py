"""Registered clients' tokens: verified against the client registry, once each, into a Principal.

A client (an EHR, a backend) signs its own JWT (CDS Hooks 2.0, "Trusting CDS Clients"):

- header: `alg` one of the client's algorithms (ES384, RS384, EdDSA; `none` and HMAC never), `kid`
  naming a key of the client's JWK Set, `typ` JWT when present; a `jku`, when present, must be the
  client's registered JWKS URL (a token never chooses where its keys come from); no `crit`.
- payload: `iss` a registered active client's issuer (which names the client and its tenant), `aud`
  the URL the door is serving (for CDS Hooks the endpoint invoked), `exp` at most 5 minutes after
  `iat`, `jti` never seen before for this client (across worker processes: the database keeps them),
  optionally `scope` (space-separated; intersected with the client's grant, all of it when absent)
  and `fhirUser` (the user it acts for, e.g. Practitioner/123; a door may give it from the request,
  CDS Hooks `context.userId`, with `acting_for()`).

The registry is cached in the process and refreshed every few seconds (`ClientRegistry.start()` keeps
it warm in a background thread, so a call never waits on it); a JWKS URL is fetched with a timeout,
https only outside development, cached, and fetched again at most every 30 s for an unknown kid. A
deactivated client stops at once: the database refuses its next token id and its next statement.

Errors name what is wrong, never what the token holds. `AuthError` → the caller is not authenticated
(401 / UNAUTHENTICATED); `ClientAuthUnavailable` → the check could not be made (503 / UNAVAILABLE).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.app.tokens import AuthError, TokenVerifier
from store.clients import (
    ALGORITHMS,
    CLAIM_TOKEN,
    EVALUATE_STORED,
    EVALUATE_SUPPLIED,
    RECORDS_WRITE,
    SCOPES,
    ClientError,
    ClientRecord,
    PublicJwk,
    load_active_clients,
    parse_jwks,
)
from store.session import CLIENT_ROLE, Database, Principal

__all__ = [
    "ALGORITHMS",
    "EVALUATE_STORED",
    "EVALUATE_SUPPLIED",
    "MAX_CLIENT_TOKEN_SECONDS",
    "RECORDS_WRITE",
    "SCOPES",
    "CallerVerifier",
    "ClientAuthUnavailable",
    "ClientRegistry",
    "ClientTokenVerifier",
    "DatabaseReplayGuard",
    "JwksFetcher",
    "RegisteredClient",
    "acting_for",
    "client_jwk",
    "generate_client_key",
    "mint_client_token",
]

log = logging.getLogger("praneya.clients")

MAX_CLIENT_TOKEN_SECONDS = 300  # CDS Hooks: exp at most 5 minutes after iat
DEFAULT_LEEWAY_SECONDS = 30
MAX_TOKEN_BYTES = 16 * 1024
MAX_JWKS_BYTES = 64 * 1024
# FHIR's reference to the user: ResourceType/id (the id grammar of FHIR R4: [A-Za-z0-9\-\.]{1,64}).
_USER_TYPES = "Practitioner|PractitionerRole|Patient|RelatedPerson|Person"
_USER_REFERENCE = re.compile(rf"(?:^|/)((?:{_USER_TYPES})/[A-Za-z0-9\-.]{{1,64}})$")


class ClientAuthUnavailable(Exception):
    """A client token could not be checked (registry or replay store unreachable): retry later."""


# --- the registry, cached ----------------------------------------------------------------------


class JwksFetcher:
    """GET a JWK Set: a timeout, a size limit, no redirects, https only unless development allows http."""

    def __init__(self, *, timeout_seconds: float = 3.0, allow_http: bool = False) -> None:
        self.timeout = timeout_seconds
        self.allow_http = allow_http
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __call__(self, url: str) -> Mapping[str, Any]:
        scheme = urlsplit(url).scheme
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise ClientError("JWKS URL must be https")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked
        with self._opener.open(request, timeout=self.timeout) as response:
            body = response.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ClientError("JWKS document is too large")
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ClientError("JWKS document is not a JSON object")
        return doc


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an error: the registered URL is the one trusted


@dataclass(frozen=True)
class RegisteredClient:
    record: ClientRecord
    keys: Mapping[str, PublicJwk]

    @property
    def id(self) -> str:
        return self.record.id


@dataclass
class _UrlKeys:
    keys: Mapping[str, PublicJwk]
    fetched_at: float
    attempted_at: float


@dataclass(frozen=True)
class _Snapshot:
    by_issuer: Mapping[str, RegisteredClient]
    by_id: Mapping[str, RegisteredClient]
    origins: frozenset[str]
    loaded_at: float


class ClientRegistry:
    """The active clients, by issuer, with their parsed keys; reloaded every `refresh_seconds`.

    `load` returns the active clients (the database: `ClientRegistry.from_database(db)`). A reload
    that fails keeps the last good view for up to `max_stale_seconds`, then client tokens are
    refused as unavailable (fail closed)."""

    def __init__(
        self,
        load: Callable[[], Sequence[ClientRecord]],
        *,
        fetch_jwks: Callable[[str], Mapping[str, Any]] | None = None,
        refresh_seconds: float = 5.0,
        max_stale_seconds: float = 60.0,
        jwks_ttl_seconds: float = 300.0,
        jwks_retry_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._fetch = fetch_jwks or JwksFetcher()
        self.refresh_seconds = refresh_seconds
        self.max_stale = max_stale_seconds
        self.jwks_ttl = jwks_ttl_seconds
        self.jwks_retry = jwks_retry_seconds
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._records: list[ClientRecord] = []
        self._url_keys: dict[str, _UrlKeys] = {}
        self._parsed: dict[str, tuple[datetime, Mapping[str, PublicJwk]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_database(cls, db: Database, **kwargs: Any) -> ClientRegistry:
        def load() -> list[ClientRecord]:
            # No RLS context: registered_clients() is the whole of what the runtime role may read.
            with db.engine.begin() as conn:
                return load_active_clients(conn)

        return cls(load, **kwargs)

    # The hot path: a dictionary lookup when the view is fresh.
    def by_issuer(self, issuer: str) -> RegisteredClient | None:
        return self._current().by_issuer.get(issuer)

    def by_id(self, client_id: str) -> RegisteredClient | None:
        return self._current().by_id.get(client_id)

    def allowed_origins(self) -> frozenset[str]:
        """Every active client's CORS origins (a preflight carries no token to say which client)."""
        return self._current().origins

    def key(self, client: RegisteredClient, kid: str) -> PublicJwk | None:
        """The client's key `kid`; for a client with a JWKS URL, an unknown kid fetches the set again
        (at most every jwks_retry_seconds), so a client's own key rotation is picked up."""
        found = client.keys.get(kid)
        url = client.record.jwks_url
        if found is not None or not url:
            return found
        cached = self._url_keys.get(url)
        now = self._clock()
        if cached is not None and now - cached.attempted_at < self.jwks_retry:
            return None
        with self._lock:
            self._fetch_url(url, force=True)
            self._rebuild()
        fresh = self.by_id(client.id)
        return fresh.keys.get(kid) if fresh is not None else None

    def refresh(self) -> None:
        """Reload the registry now (raises when the database cannot be read)."""
        with self._lock:
            self._reload_locked()

    def _reload_locked(self) -> None:
        records = self._load()
        for r in records:
            if r.jwks_url:
                self._fetch_url(r.jwks_url, force=False)
        self._records = list(records)
        self._rebuild()

    def start(self) -> None:
        """Keep the view warm from a daemon thread, so no call ever waits for a reload."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.refresh_seconds):
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - logged; the view ages and then fails closed
                    log.warning("client registry refresh failed", extra={"error_type": type(exc).__name__})

        self._thread = threading.Thread(target=loop, name="client-registry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _current(self) -> _Snapshot:
        snap = self._snapshot
        now = self._clock()
        # With the refresher running a call never reloads (twice its interval gives it room to be late).
        fresh_for = self.refresh_seconds * (2 if self._thread is not None else 1)
        if snap is not None and now - snap.loaded_at <= fresh_for:
            return snap
        try:
            with self._lock:
                # Another thread may have reloaded while this one waited for the lock.
                latest = self._snapshot
                if latest is not None and self._clock() - latest.loaded_at <= self.refresh_seconds:
                    return latest
                self._reload_locked()
        except Exception as exc:  # noqa: BLE001 - the database or network: fail closed once too stale
            if snap is not None and now - snap.loaded_at <= self.max_stale:
                log.warning("client registry refresh failed; using the last view",
                            extra={"error_type": type(exc).__name__})
                return snap
            raise ClientAuthUnavailable("the client registry could not be read; retry with backoff") from None
        assert self._snapshot is not None
        return self._snapshot

    def _fetch_url(self, url: str, *, force: bool) -> None:
        now = self._clock()
        cached = self._url_keys.get(url)
        if cached is not None and not force and now - cached.fetched_at < self.jwks_ttl:
            return
        if cached is not None and now - cached.attempted_at < self.jwks_retry:
            return
        try:
            keys = parse_jwks(self._fetch(url))
        except Exception as exc:  # noqa: BLE001 - a client's broken key server must not stop the others
            log.warning("JWKS URL could not be used", extra={"error_type": type(exc).__name__})
            if cached is not None:
                cached.attempted_at = now
            else:
                self._url_keys[url] = _UrlKeys({}, fetched_at=float("-inf"), attempted_at=now)
            return
        self._url_keys[url] = _UrlKeys(keys, fetched_at=now, attempted_at=now)

    def _rebuild(self) -> None:
        by_issuer: dict[str, RegisteredClient] = {}
        by_id: dict[str, RegisteredClient] = {}
        origins: set[str] = set()
        for r in self._records:
            keys: dict[str, PublicJwk] = {}
            if r.jwks_url and r.jwks_url in self._url_keys:
                keys.update({k: v for k, v in self._url_keys[r.jwks_url].keys.items() if v.alg in r.algorithms})
            if r.jwks is not None:
                parsed = self._parsed.get(r.id)
                if parsed is None or parsed[0] != r.updated_at:
                    try:
                        parsed = (r.updated_at, parse_jwks(r.jwks, r.algorithms))
                    except ClientError as exc:
                        log.warning("a registered JWKS is unusable", extra={"client": r.id, "reason": str(exc)})
                        parsed = (r.updated_at, {})
                    self._parsed[r.id] = parsed
                keys.update(parsed[1])  # the stored document wins over the URL for one kid
            client = RegisteredClient(record=r, keys=keys)
            by_issuer[r.issuer] = client
            by_id[r.id] = client
            origins.update(r.cors_origins)
        self._snapshot = _Snapshot(by_issuer, by_id, frozenset(origins), self._clock())


# --- replay ----------------------------------------------------------------------------------


class ReplayGuard(Protocol):
    def claim(self, client_id: str, jti: str, expires_at: datetime) -> str: ...


class DatabaseReplayGuard:
    """Token ids in the database (public.claim_client_token), so every worker process sees every use."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, client_id: str, jti: str, expires_at: datetime) -> str:
        try:
            # Committed before the call goes on; on the evaluation path's psycopg pool (store/lean.py:
            # no pre-ping round trip, the statement prepared once per connection).
            row = self.db.lean.run_one(CLAIM_TOKEN, {"c": client_id, "j": jti, "e": expires_at})
            return str(row.scalar_one())
        except Exception as exc:  # noqa: BLE001 - no replay check, no entry
            log.warning("client token id could not be recorded", extra={"error_type": type(exc).__name__})
            raise ClientAuthUnavailable("the token could not be checked for replay; retry with backoff") from None


# --- verification ----------------------------------------------------------------------------


def _user_reference(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 500:
        return None
    m = _USER_REFERENCE.search(value)
    return m.group(1) if m else None


def acting_for(principal: Principal, user_reference: str | None) -> Principal:
    """The principal acting for `user_reference` (CDS Hooks `context.userId`, e.g. Practitioner/123).

    Refused: a reference that is not ResourceType/id of a user type, and one that disagrees with the
    user the token already names (`fhirUser`). A user's principal is returned unchanged."""
    if principal.client_id is None or user_reference is None:
        return principal
    ref = _user_reference(user_reference)
    if ref is None:
        raise AuthError("the acting user is not a FHIR reference to a user (e.g. Practitioner/123)")
    if principal.acting_for is not None and principal.acting_for != ref:
        raise AuthError("the acting user differs from the one the token names")
    return replace(principal, acting_for=ref)


_CLAIMS_REQUIRED = ["iss", "aud", "exp", "iat", "jti"]


@dataclass
class ClientTokenVerifier:
    """Verifies a registered client's token for one audience (the door's URL) into its Principal."""

    registry: ClientRegistry
    replay: ReplayGuard
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS
    max_lifetime_seconds: int = MAX_CLIENT_TOKEN_SECONDS
    _algorithms: frozenset[str] = field(default=frozenset(ALGORITHMS), init=False)

    def verify(self, token: str, *, audience: str | Collection[str]) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("token is too large")
        try:
            # One unverified parse for what picks the key (header, iss); nothing of it is trusted yet.
            parsed = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("token is malformed") from None
        header, unverified = parsed["header"], parsed["payload"]
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            # none, HS256/384/512 and anything else: refused before any key is looked at.
            raise AuthError("token algorithm is not accepted (ES384, RS384 or EdDSA)")
        if "crit" in header:
            raise AuthError("token has critical header parameters this service does not support")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthError("token type is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token has no key id (kid)")
        issuer = unverified.get("iss")
        client = self.registry.by_issuer(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise AuthError("token issuer is not a registered active client")
        record = client.record
        jku = header.get("jku")
        if jku is not None and jku != record.jwks_url:
            raise AuthError("token key set URL (jku) is not the client's registered one")
        if alg not in record.algorithms:
            raise AuthError("token algorithm is not allowed for this client")
        key = self.registry.key(client, kid)
        if key is None:
            raise AuthError("token key id (kid) is not among the client's keys")
        if key.alg != alg:
            raise AuthError("token algorithm does not match the client's key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=audience,
                issuer=record.issuer,
                leeway=self.leeway_seconds,
                options={"require": _CLAIMS_REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token is not valid yet (iat or nbf in the future)") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience is not this service") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer is not a registered active client") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature does not verify with the client's key") from None
        except jwt.PyJWTError:
            raise AuthError("token is malformed or not verifiable") from None
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)) or exp <= iat:
            raise AuthError("token exp must come after iat")
        if exp - iat > self.max_lifetime_seconds:
            raise AuthError("token lifetime (exp - iat) is longer than 5 minutes")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 1 <= len(jti) <= 255:
            raise AuthError("token id (jti) must be a string of 1 to 255 characters")
        scopes = self._scopes(claims.get("scope"), record.scopes)
        acting = None
        if "fhirUser" in claims:
            acting = _user_reference(claims["fhirUser"])
            if acting is None:
                raise AuthError("token fhirUser is not a FHIR reference to a user")
        # Last: a token id is spent only by a token that passed everything else.
        expires = datetime.fromtimestamp(float(exp) + self.leeway_seconds, UTC)
        outcome = self.replay.claim(record.id, jti, expires)
        if outcome == "replayed":
            raise AuthError("token id (jti) was already used")
        if outcome != "accepted":
            raise AuthError("token issuer is not a registered active client")
        return Principal(
            tenant_id=record.tenant_id,
            user_id=f"client:{record.id}",
            role=CLIENT_ROLE,
            mfa=False,
            client_id=record.id,
            scopes=scopes,
            acting_for=acting,
        )

    @staticmethod
    def _scopes(requested: object, granted: Sequence[str]) -> tuple[str, ...]:
        if requested is None:
            return tuple(sorted(granted))
        if not isinstance(requested, str):
            raise AuthError("token scope must be a space-separated string")
        chosen = tuple(sorted(set(requested.split()) & set(granted)))
        if not chosen:
            raise AuthError("token asks for none of the scopes granted to this client")
        return chosen


@dataclass
class CallerVerifier:
    """One verifier for a door that takes users' and clients' tokens (gRPC): a token from the users'
    issuer is a user's (TokenVerifier, unchanged); any other issuer must be a registered client's,
    for `client_audience`."""

    users: TokenVerifier
    clients: ClientTokenVerifier
    client_audience: str

    def verify(self, token: str) -> Principal:
        # A user's token verified before (and not expired) needs no second look; a client's token is
        # never cached: its jti is single-use, and every use must reach the replay guard.
        known = self.users.cached(token)
        if known is not None:
            return known
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            raise AuthError("token is malformed") from None
        if issuer == self.users.issuer:
            return self.users.verify(token)
        return self.clients.verify(token, audience=self.client_audience)


# --- development keys and tokens -------------------------------------------------------------


def generate_client_key(private_path: Path, alg: str = "ES384") -> None:
    """A client signing key (PEM, mode 600): P-384 for ES384, RSA 3072 for RS384, Ed25519 for EdDSA."""
    key: Any
    if alg == "ES384":
        key = ec.generate_private_key(ec.SECP384R1())
    elif alg == "RS384":
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported algorithm {alg!r}")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_path.chmod(0o600)


def _load_private(private_key_file: Path) -> tuple[Any, str]:
    key = serialization.load_pem_private_key(private_key_file.read_bytes(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return key, "ES384"
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS384"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key, "EdDSA"
    raise ValueError(f"{private_key_file}: not a P-384, RSA or Ed25519 private key")


def client_jwk(private_key_file: Path, kid: str) -> dict[str, Any]:
    """The public JWK (with kid, alg and use) of a client's private key file."""
    key, alg = _load_private(private_key_file)
    algorithm: Any = {"ES384": jwt.algorithms.ECAlgorithm, "RS384": jwt.algorithms.RSAAlgorithm,
                      "EdDSA": jwt.algorithms.OKPAlgorithm}[alg]
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


def mint_client_token(
    private_key_file: Path,
    *,
    issuer: str,
    audience: str,
    kid: str,
    scopes: Sequence[str] | None = None,
    acting_for_user: str | None = None,
    ttl_seconds: int = MAX_CLIENT_TOKEN_SECONDS,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A client token as a CDS Client signs it (development, tests): header alg/kid/typ, payload
    iss, aud, iat, exp, jti (random), and scope / fhirUser when given."""
    key, alg = _load_private(private_key_file)
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "aud": audience, "iat": now, "exp": now + ttl_seconds,
                              "jti": str(uuid.uuid4())}
    if scopes is not None:
        claims["scope"] = " ".join(scopes)
    if acting_for_user is not None:
        claims["fhirUser"] = acting_for_user
    claims.update(extra_claims or {})
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})

"""Registered clients' tokens (CDS Hooks 2.0 "Trusting CDS Clients"), verified against the registry in
a real database as praneya_app: what is accepted, and every attack the gRPC token tests cover plus
the client's own (replayed jti, foreign aud, exp - iat over 5 minutes, another client's key, jku).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, text

from engine.app.clients import (
    CallerVerifier,
    ClientAuthUnavailable,
    ClientRegistry,
    ClientTokenVerifier,
    DatabaseReplayGuard,
    JwksFetcher,
    acting_for,
    client_jwk,
    mint_client_token,
)
from engine.app.tokens import AuthError, TokenVerifier, generate_dev_keypair, mint_token
from store.clients import ClientError, ClientRecord, deactivate_client, parse_jwks, rotate_client_keys
from store.session import Database
from tests.fix_clients import AUDIENCE, ClientFactory

pytestmark = pytest.mark.db


def _refused(verifier: ClientTokenVerifier, token: str, reason: str, audience: str = AUDIENCE) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token, audience=audience)
    message = str(caught.value)
    assert reason in message
    return message


@pytest.mark.parametrize("alg", ["ES384", "RS384", "EdDSA"])
def test_a_registered_clients_token_becomes_its_principal(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier, alg: str,
) -> None:
    c = make_client(scopes=("evaluate.supplied", "evaluate.stored"), alg=alg)
    p = client_verifier.verify(c.token(acting_for_user="Practitioner/123"), audience=AUDIENCE)
    assert (p.tenant_id, p.client_id, p.role, p.user_id, p.mfa) == (c.tenant, c.id, "CLIENT", f"client:{c.id}", False)
    assert p.scopes == ("evaluate.stored", "evaluate.supplied")
    assert p.acting_for == "Practitioner/123"


def test_an_audience_array_holding_this_service_is_accepted(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier,
) -> None:
    c = make_client()
    token = c.token(audience="https://other.example/x", extra_claims={"aud": ["https://x.example", AUDIENCE]})
    assert client_verifier.verify(token, audience=AUDIENCE).client_id == c.id


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(c: Any, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": c.issuer, "aud": AUDIENCE, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4()), **over}


def test_alg_none_is_refused(make_client: ClientFactory, client_verifier: ClientTokenVerifier) -> None:
    c = make_client()
    token = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': c.kid})}.{_b64(_claims(c))}."
    _refused(client_verifier, token, "algorithm is not accepted")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_is_refused_even_keyed_with_the_clients_public_key(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier, alg: str,
) -> None:
    # The classic confusion: HMAC "signed" with the public key the service holds.
    c = make_client()
    public = serialization.load_pem_private_key(c.key_file.read_bytes(), None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64({"alg": alg, "typ": "JWT", "kid": c.kid})
    body = _b64(_claims(c))
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(public, f"{header}.{body}".encode(), digest).digest()
    _refused(client_verifier, f"{header}.{body}.{_b64(sig)}", "algorithm is not accepted")


def test_an_algorithm_the_client_is_not_allowed_is_refused(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier, client_key_files: Callable[[str], Path],
) -> None:
    c = make_client(alg="ES384")
    rsa = client_key_files("RS384")
    token = mint_client_token(rsa, issuer=c.issuer, audience=AUDIENCE, kid=c.kid)
    _refused(client_verifier, token, "not allowed for this client")


def test_a_foreign_audience_is_refused(make_client: ClientFactory, client_verifier: ClientTokenVerifier) -> None:
    c = make_client()
    _refused(client_verifier, c.token(audience="https://cds.elsewhere.example/cds-services/x"),
             "audience is not this service")
    # The discovery URL is not the service endpoint either (the door passes the URL it serves).
    _refused(client_verifier, c.token(audience="https://cds.test.example/cds-services"),
             "audience is not this service")


def test_an_expired_token_is_refused(make_client: ClientFactory, client_verifier: ClientTokenVerifier) -> None:
    c = make_client()
    now = int(time.time())
    _refused(client_verifier, c.token(extra_claims={"iat": now - 400, "exp": now - 120}), "expired")


def test_a_token_living_longer_than_five_minutes_is_refused(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier,
) -> None:
    c = make_client()
    now = int(time.time())
    _refused(client_verifier, c.token(extra_claims={"iat": now, "exp": now + 301}), "longer than 5 minutes")
    assert client_verifier.verify(c.token(extra_claims={"iat": now, "exp": now + 300}), audience=AUDIENCE)


@pytest.mark.parametrize("claim", ["jti", "iat", "exp", "aud"])
def test_a_token_without_a_required_claim_is_refused(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier, claim: str,
) -> None:
    c = make_client()
    claims = _claims(c)
    del claims[claim]
    key = serialization.load_pem_private_key(c.key_file.read_bytes(), None)
    token = jwt.encode(claims, key, algorithm="ES384", headers={"kid": c.kid})  # type: ignore[arg-type]
    _refused(client_verifier, token, f"lacks the {claim} claim")


def test_a_replayed_jti_is_refused_in_this_process_and_in_another(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier, app_db: Database, app_url: str,
) -> None:
    c = make_client()
    token = c.token()
    assert client_verifier.verify(token, audience=AUDIENCE).client_id == c.id
    _refused(client_verifier, token, "already used")
    # Another worker process: its own registry cache and its own connection pool.
    other_db = Database(app_url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
    try:
        other = ClientTokenVerifier(ClientRegistry.from_database(other_db), DatabaseReplayGuard(other_db))
        _refused(other, token, "already used")
        # The same jti in a new token (new signature) is the same token id.
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        _refused(other, c.token(extra_claims={"jti": jti}), "already used")
    finally:
        other_db.dispose()


def test_a_refused_token_does_not_spend_its_jti(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier,
) -> None:
    c = make_client()
    jti = str(uuid.uuid4())
    _refused(client_verifier, c.token(audience="https://wrong.example", extra_claims={"jti": jti}), "audience")
    assert client_verifier.verify(c.token(extra_claims={"jti": jti}), audience=AUDIENCE).client_id == c.id


def test_an_unknown_kid_is_refused(make_client: ClientFactory, client_verifier: ClientTokenVerifier) -> None:
    c = make_client()
    token = mint_client_token(c.key_file, issuer=c.issuer, audience=AUDIENCE, kid="not-a-registered-kid")
    _refused(client_verifier, token, "kid) is not among the client's keys")


def test_a_token_without_kid_is_refused(make_client: ClientFactory, client_verifier: ClientTokenVerifier) -> None:
    c = make_client()
    key = serialization.load_pem_private_key(c.key_file.read_bytes(), None)
    token = jwt.encode(_claims(c), key, algorithm="ES384")  # type: ignore[arg-type]
    _refused(client_verifier, token, "no key id")


def test_an_unregistered_issuer_is_refused(make_client: ClientFactory, client_verifier: ClientTokenVerifier) -> None:
    c = make_client()
    token = mint_client_token(c.key_file, issuer="https://impostor.example/", audience=AUDIENCE, kid=c.kid)
    message = _refused(client_verifier, token, "issuer is not a registered active client")
    assert "impostor" not in message  # errors never echo what the token holds


def test_another_clients_key_is_refused(make_client: ClientFactory, client_verifier: ClientTokenVerifier) -> None:
    a, b = make_client(), make_client()
    # B's key and kid under A's issuer: the kid is not A's ...
    _refused(client_verifier, mint_client_token(b.key_file, issuer=a.issuer, audience=AUDIENCE, kid=b.kid),
             "not among the client's keys")
    # ... and under A's kid, B's signature does not verify with A's key.
    _refused(client_verifier, mint_client_token(b.key_file, issuer=a.issuer, audience=AUDIENCE, kid=a.kid),
             "signature does not verify")


def test_a_tampered_payload_is_refused(make_client: ClientFactory, client_verifier: ClientTokenVerifier) -> None:
    c = make_client(scopes=("evaluate.supplied", "evaluate.stored", "records.write"))
    header, _, sig = c.token(scopes=["evaluate.supplied"]).split(".")
    forged = _claims(c, scope="evaluate.supplied evaluate.stored records.write")
    _refused(client_verifier, f"{header}.{_b64(forged)}.{sig}", "signature does not verify")


def test_a_jku_other_than_the_registered_url_is_refused(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier,
) -> None:
    c = make_client()
    key = serialization.load_pem_private_key(c.key_file.read_bytes(), None)
    token = jwt.encode(_claims(c), key, algorithm="ES384",  # type: ignore[arg-type]
                       headers={"kid": c.kid, "jku": "https://attacker.example/jwks.json"})
    _refused(client_verifier, token, "jku")


def test_scopes_are_the_tokens_within_the_grant(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier,
) -> None:
    c = make_client(scopes=("evaluate.supplied", "evaluate.stored"))
    p = client_verifier.verify(c.token(scopes=["evaluate.supplied", "records.write"]), audience=AUDIENCE)
    assert p.scopes == ("evaluate.supplied",)
    _refused(client_verifier, c.token(scopes=["records.write"]), "none of the scopes granted")


def test_a_deactivated_client_is_refused_at_once_even_from_a_warm_cache(
    make_client: ClientFactory, app_db: Database, admin_engine: Engine,
) -> None:
    c = make_client()
    warm = ClientTokenVerifier(ClientRegistry.from_database(app_db, refresh_seconds=3600), DatabaseReplayGuard(app_db))
    assert warm.verify(c.token(), audience=AUDIENCE).client_id == c.id
    with admin_engine.begin() as conn:
        assert deactivate_client(conn, c.id)
    _refused(warm, c.token(), "not a registered active client")
    # And a fresh view does not know it any more.
    fresh = ClientTokenVerifier(ClientRegistry.from_database(app_db, refresh_seconds=0), DatabaseReplayGuard(app_db))
    _refused(fresh, c.token(), "not a registered active client")


def test_the_acting_user_comes_from_the_request_or_the_token_never_both_differing(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier,
) -> None:
    c = make_client()
    p = client_verifier.verify(c.token(), audience=AUDIENCE)
    assert acting_for(p, "Practitioner/abc-1").acting_for == "Practitioner/abc-1"
    with pytest.raises(AuthError):
        acting_for(p, "Device/1")
    with pytest.raises(AuthError):
        acting_for(p, "Practitioner/a b")
    named = client_verifier.verify(c.token(acting_for_user="https://ehr.example/fhir/Practitioner/9"),
                                   audience=AUDIENCE)
    assert named.acting_for == "Practitioner/9"
    assert acting_for(named, "Practitioner/9") == named
    with pytest.raises(AuthError, match="differs"):
        acting_for(named, "Practitioner/10")
    _refused(client_verifier, c.token(acting_for_user="Organization/1"), "fhirUser")


def test_user_tokens_keep_their_verifier_and_other_issuers_are_clients(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier, tmp_path: Path,
) -> None:
    generate_dev_keypair(tmp_path / "u.pem", tmp_path / "u.pub")
    users = TokenVerifier([tmp_path / "u.pub"], issuer="praneya-dev", audience="praneya-safety")
    either = CallerVerifier(users, client_verifier, client_audience="praneya-safety")
    user = either.verify(mint_token(tmp_path / "u.pem", user_id="u1", tenant_id="t1", role="CLINICAL_ADVISOR"))
    assert (user.user_id, user.client_id, user.mfa) == ("u1", None, True)
    c = make_client()
    token = c.token(audience="praneya-safety")
    assert either.verify(token).client_id == c.id
    with pytest.raises(AuthError, match="audience"):
        either.verify(c.token(audience=AUDIENCE))
    # Users' tokens are remembered once verified; a client's never is: its second use is a replay.
    user_token = mint_token(tmp_path / "u.pem", user_id="u1", tenant_id="t1", role="CLINICAL_ADVISOR")
    assert either.verify(user_token) == either.verify(user_token)
    assert users.cached(token) is None
    with pytest.raises(AuthError):
        either.verify(token)


# --- keys by URL ------------------------------------------------------------------------------


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A real HTTP server on 127.0.0.1 serving a mutable JWK Set (development: http allowed)."""
    served: dict[str, Any] = {"keys": [], "hits": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served["hits"] += 1
            body = json.dumps({"keys": served["keys"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", served
    finally:
        server.shutdown()
        server.server_close()


def test_keys_from_a_jwks_url_and_the_clients_own_rotation(
    make_client: ClientFactory, app_db: Database, jwks_server: tuple[str, dict[str, Any]],
    client_key_files: Callable[[str], Path],
) -> None:
    url, served = jwks_server
    first = client_key_files("ES384")
    served["keys"] = [client_jwk(first, "k1")]
    c = make_client(jwks_url=url, with_document=False, key_file=first)
    registry = ClientRegistry.from_database(app_db, refresh_seconds=3600, jwks_retry_seconds=0,
                                            fetch_jwks=JwksFetcher(timeout_seconds=2, allow_http=True))
    verifier = ClientTokenVerifier(registry, DatabaseReplayGuard(app_db))
    ok = mint_client_token(first, issuer=c.issuer, audience=AUDIENCE, kid="k1")
    assert verifier.verify(ok, audience=AUDIENCE).client_id == c.id
    hits = served["hits"]
    # Cached: a second token costs no fetch.
    verifier.verify(mint_client_token(first, issuer=c.issuer, audience=AUDIENCE, kid="k1"), audience=AUDIENCE)
    assert served["hits"] == hits
    # The client rotates: a new kid is fetched when first seen.
    second = client_key_files("ES384")
    served["keys"] = [client_jwk(first, "k1"), client_jwk(second, "k2")]
    token = mint_client_token(second, issuer=c.issuer, audience=AUDIENCE, kid="k2")
    assert verifier.verify(token, audience=AUDIENCE).client_id == c.id
    assert served["hits"] == hits + 1


def test_a_jwks_url_must_be_https_outside_development(jwks_server: tuple[str, dict[str, Any]]) -> None:
    url, served = jwks_server
    with pytest.raises(ClientError, match="https"):
        JwksFetcher()(url)
    assert served["hits"] == 0


# --- the registry cache -----------------------------------------------------------------------


def _record(**over: Any) -> ClientRecord:
    base: dict[str, Any] = dict(id="c1", tenant_id="t1", issuer="https://i.example", jwks=None,
                                jwks_url="https://keys.example/jwks", algorithms=("ES384",), scopes=(),
                                fhir_server_hosts=(), cors_origins=("https://app.example",),
                                updated_at=datetime.now(UTC))
    base.update(over)
    return ClientRecord(**base)


def test_the_registry_keeps_its_last_view_briefly_then_fails_closed() -> None:
    now = [0.0]
    healthy = [True]

    def load() -> list[ClientRecord]:
        if not healthy[0]:
            raise OSError("database down")
        return [_record()]

    def no_fetch(url: str) -> dict[str, Any]:
        raise OSError("offline")

    registry = ClientRegistry(load, fetch_jwks=no_fetch, refresh_seconds=5, max_stale_seconds=60,
                              clock=lambda: now[0])
    assert registry.by_issuer("https://i.example") is not None
    assert registry.allowed_origins() == frozenset({"https://app.example"})
    healthy[0] = False
    now[0] = 30.0
    assert registry.by_issuer("https://i.example") is not None  # stale but within max_stale
    now[0] = 61.0
    with pytest.raises(ClientAuthUnavailable):
        registry.by_issuer("https://i.example")


def test_the_registry_sees_a_new_client_after_its_refresh_interval() -> None:
    now = [0.0]
    records = [_record()]
    registry = ClientRegistry(lambda: list(records), fetch_jwks=lambda url: {"keys": []}, refresh_seconds=5,
                              clock=lambda: now[0])
    assert registry.by_id("c2") is None
    records.append(_record(id="c2", issuer="https://j.example"))
    now[0] = 4.0
    assert registry.by_id("c2") is None
    now[0] = 6.0
    assert registry.by_id("c2") is not None


# --- what a registry accepts as keys ----------------------------------------------------------


def test_parse_jwks_refuses_unsafe_or_unusable_keys(client_key_files: Callable[[str], Path]) -> None:
    ec = client_jwk(client_key_files("ES384"), "e")
    assert parse_jwks({"keys": [ec]})["e"].alg == "ES384"
    private = serialization.load_pem_private_key(client_key_files("ES384").read_bytes(), None)
    leaked = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private)) | {"kid": "p"}  # type: ignore[arg-type]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"keys": []}, "non-empty"),
        ({"keys": [{**ec, "kid": ""}]}, "kid"),
        ({"keys": [ec, ec]}, "twice"),
        ({"keys": [leaked]}, "private"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}, "private or symmetric"),
        ({"keys": [{**ec, "use": "enc"}]}, "use"),
        ({"keys": [{**ec, "alg": "RS384"}]}, "does not match"),
        ({"keys": [{**ec, "crv": "P-256"}]}, "not usable"),
        ({"keys": [{**ec, "x": "AAAA"}]}, "not a valid ES384 public key"),
    ]
    for doc, reason in cases:
        with pytest.raises(ClientError, match=reason):
            parse_jwks(doc)
    with pytest.raises(ClientError, match="not among the client's algorithms"):
        parse_jwks({"keys": [ec]}, ["EdDSA"])


def test_rotating_keys_replaces_them_and_the_old_key_stops(
    make_client: ClientFactory, client_verifier: ClientTokenVerifier, admin_engine: Engine,
    client_key_files: Callable[[str], Path],
) -> None:
    c = make_client()
    new = client_key_files("ES384")
    with admin_engine.begin() as conn:
        kids = rotate_client_keys(conn, c.id, jwks={"keys": [client_jwk(new, "new")]})
        rotated = conn.execute(text("SELECT rotated_at FROM public.clients WHERE id = :c"), {"c": c.id}).scalar()
    assert kids == ("new",)
    assert rotated is not None and rotated > datetime.now(UTC) - timedelta(minutes=1)
    assert client_verifier.verify(mint_client_token(new, issuer=c.issuer, audience=AUDIENCE, kid="new"),
                                  audience=AUDIENCE).client_id == c.id
    _refused(client_verifier, c.token(), "not among the client's keys")

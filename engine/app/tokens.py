"""Bearer-token authentication: JWTs verified against configured public keys, identity in a ContextVar.

Claims: `sub` user id, `tid` tenant id, `role` healthcare role, `mfa` (true, or "mfa" in `amr`),
`iss`, `aud`, `exp` (all required but mfa). Identity never comes from a request body. A token may
live at most `max_lifetime_seconds` (`exp - iat`, and never longer from now): a stolen long-lived
token is a standing credential. `leeway_seconds` absorbs clock skew between issuer and service.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from store.session import HEALTHCARE_ROLES, Principal

__all__ = [
    "AuthError",
    "TokenVerifier",
    "generate_dev_keypair",
    "mint_token",
]


DEFAULT_LEEWAY_SECONDS = 30
DEFAULT_MAX_LIFETIME_SECONDS = 3600


class AuthError(Exception):
    pass


class TokenVerifier:
    def __init__(
        self,
        public_key_files: Sequence[Path],
        issuer: str,
        audience: str,
        *,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        cache_size: int = 10_000,
    ) -> None:
        self.keys: list[tuple[Any, list[str]]] = []
        for path in public_key_files:
            key = serialization.load_pem_public_key(path.read_bytes())
            if isinstance(key, Ed25519PublicKey):
                algs = ["EdDSA"]
            elif isinstance(key, EllipticCurvePublicKey):
                algs = ["ES256", "ES384"]
            elif isinstance(key, RSAPublicKey):
                algs = ["RS256", "PS256"]
            else:
                raise ValueError(f"{path}: unsupported public key type")
            self.keys.append((key, algs))
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_seconds
        self.max_lifetime = max_lifetime_seconds
        # Tokens already verified, by their exact text (signature included), with their expiry: a
        # caller sends the same token with every call until it expires, and verifying it again (the
        # signature, the claims) gives the same answer until then. Bounded; entries leave at expiry.
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._cache_lock = threading.Lock()
        self.cache_size = cache_size

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and not expired since, or None."""
        hit = self._verified.get(token)
        if hit is None:
            return None
        principal, expires = hit
        if time.time() < expires:
            return principal
        with self._cache_lock:
            self._verified.pop(token, None)
        return None

    def verify(self, token: str) -> Principal:
        principal = self.cached(token)
        if principal is not None:
            return principal
        principal, exp = self._verify(token)
        # Valid while PyJWT would still accept it: until exp + leeway.
        expires = float(exp) + self.leeway
        with self._cache_lock:
            if len(self._verified) >= self.cache_size:
                now = time.time()
                for key in [k for k, (_, e) in self._verified.items() if e <= now]:
                    del self._verified[key]
                while len(self._verified) >= self.cache_size:  # the oldest entries go first
                    del self._verified[next(iter(self._verified))]
            self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        last: Exception | None = None
        for key, algs in self.keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=algs,
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options={"require": ["exp", "sub", "iss", "aud"]},
                )
                break
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.PyJWTError as exc:
                raise AuthError(_describe(exc)) from None
        else:
            raise AuthError(
                "token signature does not match any configured key" if last else "no keys configured"
            )
        self._check_lifetime(claims)
        tenant, role = claims.get("tid"), claims.get("role")
        if not isinstance(tenant, str) or not tenant:
            raise AuthError("token has no tenant (tid) claim")
        if role not in HEALTHCARE_ROLES:
            raise AuthError("token has no valid healthcare role claim")
        amr = claims.get("amr") or []
        mfa = claims.get("mfa") is True or (isinstance(amr, list) and "mfa" in amr)
        return Principal(
            tenant_id=tenant,
            user_id=str(claims["sub"]),
            role=role,
            mfa=mfa,
            purpose=str(claims.get("purpose", "TREATMENT")),
        ), float(claims["exp"])

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        # exp and iat come from the same clock (the issuer's), so their difference needs no leeway;
        # what is left from now does, and it also caps a token without iat or with one in the future.
        # The message names the rule, not the limit or the token's numbers.
        exp, iat = claims["exp"], claims.get("iat")
        too_long = exp - time.time() > self.max_lifetime + self.leeway
        if isinstance(iat, (int, float)) and exp - iat > self.max_lifetime:
            too_long = True
        if too_long:
            raise AuthError("token lifetime is longer than this service accepts")


def _describe(exc: Exception) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience is not this service"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer is not trusted"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim} claim"
    return "token is malformed or not verifiable"


def generate_dev_keypair(private_path: Path, public_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def mint_token(
    private_key_file: Path,
    *,
    user_id: str,
    tenant_id: str,
    role: str,
    mfa: bool = True,
    issuer: str = "praneya-dev",
    audience: str = "praneya-safety",
    ttl_seconds: int = 3600,
) -> str:
    key = serialization.load_pem_private_key(private_key_file.read_bytes(), password=None)
    now = int(time.time())
    claims = {
        "sub": user_id,
        "tid": tenant_id,
        "role": role,
        "mfa": mfa,
        "amr": ["pwd", "mfa"] if mfa else ["pwd"],
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    alg = "EdDSA" if isinstance(key, Ed25519PrivateKey) else "ES256"
    return jwt.encode(claims, key, algorithm=alg)  # type: ignore[arg-type]

"""Token verification without a server: lifetime cap, clock leeway, and the settings that set them.

The end-to-end refusals (a 100-year token over TLS, a deactivated caller) are in
tests/test_grpc_hardening.py; these pin the verifier's rules on their own.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from engine.app.settings import ServiceSettings, SettingsError
from engine.app.tokens import AuthError, TokenVerifier, generate_dev_keypair, mint_token

HOUR = 3600


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("jwt")
    generate_dev_keypair(folder / "private.pem", folder / "public.pem")
    return folder / "private.pem", folder / "public.pem"


def _token(private: Path, ttl: int) -> str:
    return mint_token(private, user_id="u-1", tenant_id="t-1", role="CLINICAL_ADVISOR", ttl_seconds=ttl)


def _raw(private: Path, **claims: object) -> str:
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    base: dict[str, object] = {
        "sub": "u-1",
        "tid": "t-1",
        "role": "CLINICAL_ADVISOR",
        "iss": "praneya-dev",
        "aud": "praneya-safety",
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, key, algorithm="EdDSA")  # type: ignore[arg-type]


def test_a_token_at_the_cap_is_accepted_and_one_second_over_is_refused(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    verifier = TokenVerifier([public], "praneya-dev", "praneya-safety", max_lifetime_seconds=HOUR)
    assert verifier.verify(_token(private, HOUR)).user_id == "u-1"
    with pytest.raises(AuthError) as err:
        verifier.verify(_token(private, HOUR + 1))
    assert "lifetime" in str(err.value)


def test_a_hundred_year_token_is_refused_without_saying_what_the_limit_is(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    verifier = TokenVerifier([public], "praneya-dev", "praneya-safety")
    with pytest.raises(AuthError) as err:
        verifier.verify(_token(private, 100 * 365 * 24 * HOUR))
    message = str(err.value)
    assert "lifetime" in message
    assert not any(ch.isdigit() for ch in message), message  # neither the cap nor the token's claims


def test_a_token_without_iat_is_capped_by_the_time_it_has_left(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    verifier = TokenVerifier([public], "praneya-dev", "praneya-safety", max_lifetime_seconds=HOUR)
    now = int(time.time())
    assert verifier.verify(_raw(private, exp=now + HOUR - 60)).user_id == "u-1"
    with pytest.raises(AuthError, match="lifetime"):
        verifier.verify(_raw(private, exp=now + 10 * HOUR))
    # An issued-at in the future does not stretch the cap either.
    with pytest.raises(AuthError):
        verifier.verify(_raw(private, iat=now + 9 * HOUR, exp=now + 10 * HOUR))


def test_leeway_is_configurable(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    now = int(time.time())
    expired_a_little = _raw(private, iat=now - 600, exp=now - 20)
    assert TokenVerifier([public], "praneya-dev", "praneya-safety").verify(expired_a_little).user_id == "u-1"
    strict = TokenVerifier([public], "praneya-dev", "praneya-safety", leeway_seconds=0)
    with pytest.raises(AuthError, match="expired"):
        strict.verify(expired_a_little)


def test_settings_read_the_cap_and_the_leeway(keypair: tuple[Path, Path], tmp_path: Path) -> None:
    _, public = keypair
    env = {"PRANEYA_JWT_PUBLIC_KEY_FILES": str(public), "PRANEYA_INSECURE_PLAINTEXT": "1"}
    defaults = ServiceSettings.from_env(env)
    assert (defaults.jwt_max_lifetime_seconds, defaults.jwt_leeway_seconds) == (HOUR, 30)
    tuned = ServiceSettings.from_env(
        {**env, "PRANEYA_JWT_MAX_LIFETIME_SECONDS": "900", "PRANEYA_JWT_LEEWAY_SECONDS": "5"}
    )
    assert (tuned.jwt_max_lifetime_seconds, tuned.jwt_leeway_seconds) == (900, 5)
    for name, value in (("PRANEYA_JWT_MAX_LIFETIME_SECONDS", "0"), ("PRANEYA_JWT_LEEWAY_SECONDS", "-1")):
        with pytest.raises(SettingsError, match=name):
            ServiceSettings.from_env({**env, name: value})


# -- verified tokens are remembered until they expire (issue 14: the signature once per token) ---------


def test_a_remembered_token_is_refused_once_it_expires(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    verifier = TokenVerifier([public], "praneya-dev", "praneya-safety", leeway_seconds=0)
    token = _raw(private, iat=int(time.time()), exp=int(time.time()) + 2)
    assert verifier.verify(token).user_id == "u-1"
    assert verifier.cached(token) is not None  # the second call is answered from memory
    assert verifier.verify(token).user_id == "u-1"
    time.sleep(3.1)
    assert verifier.cached(token) is None
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_a_tampered_copy_of_a_remembered_token_is_refused(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    verifier = TokenVerifier([public], "praneya-dev", "praneya-safety")
    token = _token(private, 600)
    assert verifier.verify(token).user_id == "u-1"
    head, body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(AuthError):
        verifier.verify(f"{head}.{body}.{flipped}")
    # Another payload under the remembered signature is another token: verified, and refused.
    other = jwt.utils.base64url_encode(b'{"sub":"admin","tid":"t-1","role":"SUPER_ADMIN"}').decode()
    with pytest.raises(AuthError):
        verifier.verify(f"{head}.{other}.{signature}")


def test_the_memory_of_verified_tokens_is_bounded(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    verifier = TokenVerifier([public], "praneya-dev", "praneya-safety", cache_size=2)
    tokens = [_token(private, 600) for _ in range(5)]
    for token in tokens:
        assert verifier.verify(token).user_id == "u-1"
    assert sum(verifier.cached(t) is not None for t in tokens) == 2
    assert all(verifier.verify(t).user_id == "u-1" for t in tokens)  # the forgotten ones verify afresh

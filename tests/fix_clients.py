"""Registered-client fixtures: signing keys per algorithm, clients registered on the admin connection
(as `praneya clients register` does), and a verifier reading the registry as praneya_app."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.app.clients import (
    ClientRegistry,
    ClientTokenVerifier,
    DatabaseReplayGuard,
    client_jwk,
    generate_client_key,
    mint_client_token,
)
from store.clients import register_client
from store.session import Database

AUDIENCE = "https://cds.test.example/cds-services/medication-safety"


@pytest.fixture(scope="session")
def client_key_files(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A fresh private key file per call: client_key_files('ES384')."""
    folder = tmp_path_factory.mktemp("client-keys")
    counter = iter(range(10_000))

    def make(alg: str = "ES384") -> Path:
        path = folder / f"{alg}-{next(counter)}.pem"
        generate_client_key(path, alg)
        return path

    return make


@dataclass(frozen=True)
class EhrClient:
    id: str
    tenant: str
    issuer: str
    key_file: Path
    kid: str

    def token(self, audience: str = AUDIENCE, **kwargs: object) -> str:
        return mint_client_token(self.key_file, issuer=self.issuer, audience=audience, kid=self.kid,
                                 **kwargs)  # type: ignore[arg-type]


ClientFactory = Callable[..., EhrClient]


@pytest.fixture
def make_client(
    admin_engine: Engine, make_tenant: Callable[[], str], uid: Callable[[str], str],
    client_key_files: Callable[[str], Path],
) -> ClientFactory:
    counter = iter(range(1000))

    def make(
        tenant: str | None = None,
        *,
        scopes: Sequence[str] = ("evaluate.supplied",),
        alg: str = "ES384",
        key_file: Path | None = None,
        jwks_url: str | None = None,
        with_document: bool = True,
        origins: Sequence[str] = (),
        hosts: Sequence[str] = (),
    ) -> EhrClient:
        n = next(counter)
        client_id = uid("client") + f"-{n}"
        issuer = f"https://ehr-{client_id}.test.example/"
        key = key_file or client_key_files(alg)
        kid = f"kid-{client_id}"
        tenant = tenant or make_tenant()
        with admin_engine.begin() as conn:
            register_client(
                conn, client_id=client_id, tenant_id=tenant, display_name=f"EHR {n}", issuer=issuer,
                scopes=scopes, algorithms=(alg,),
                jwks={"keys": [client_jwk(key, kid)]} if with_document else None,
                jwks_url=jwks_url, allow_http_jwks_url=True, cors_origins=origins, fhir_server_hosts=hosts,
            )
        return EhrClient(client_id, tenant, issuer, key, kid)

    return make


@pytest.fixture
def client_verifier(app_db: Database) -> ClientTokenVerifier:
    """Reads the registry on every call (refresh_seconds=0): a test sees the clients it just made."""
    return ClientTokenVerifier(ClientRegistry.from_database(app_db, refresh_seconds=0),
                               DatabaseReplayGuard(app_db))

"""Store fixtures: a master key file, the key store, an admin engine for setup, the app database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from store.admin import UserInput, create_tenant, create_user
from store.config import app_database_url, sqlalchemy_url
from store.crypto import LocalKeyFileProvider, generate_master_key_file
from store.keys import KeyStore
from store.patients import ProfileInput, create_profile
from store.session import Database, Principal


@pytest.fixture(scope="session")
def master_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "master.key"
    generate_master_key_file(path)
    return path


@pytest.fixture(scope="session")
def provider(master_key_file: Path) -> LocalKeyFileProvider:
    return LocalKeyFileProvider(master_key_file)


@pytest.fixture(scope="session")
def keys(provider: LocalKeyFileProvider) -> KeyStore:
    return KeyStore(provider)


@pytest.fixture(scope="session")
def admin_engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(database_url))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def app_db(database_url: str) -> Iterator[Database]:
    db = Database(app_database_url(database_url), pool_size=4)
    yield db
    db.dispose()


TenantFactory = Callable[[], str]
PatientFactory = Callable[..., str]


@pytest.fixture
def make_tenant(
    admin_engine: Engine, provider: LocalKeyFileProvider, uid: Callable[[str], str]
) -> TenantFactory:
    counter = iter(range(1000))

    def make() -> str:
        tenant = uid("tenant") + f"-{next(counter)}"
        with admin_engine.begin() as conn:
            create_tenant(conn, provider, tenant, f"Clinic {tenant}")
        return tenant

    return make


@pytest.fixture
def make_patient(admin_engine: Engine, keys: KeyStore, uid: Callable[[str], str]) -> PatientFactory:
    counter = iter(range(1000))

    def make(
        tenant: str,
        *,
        role: str = "END_USER",
        dob: date | None = date(1960, 5, 17),
        sex: str | None = "female",
        pregnancy_status: str | None = None,
        first_name: str = "Ada",
    ) -> str:
        user = uid("user") + f"-{next(counter)}"
        with admin_engine.begin() as conn:
            create_user(
                conn,
                keys,
                tenant,
                user,
                UserInput(
                    first_name=first_name,
                    last_name="Lovelace",
                    date_of_birth=dob,
                    healthcare_role=role,
                    mfa_enabled=role != "END_USER",
                ),
            )
            create_profile(conn, keys, tenant, user, ProfileInput(sex=sex, pregnancy_status=pregnancy_status))
        return user

    return make


@pytest.fixture
def advisor(make_patient: PatientFactory) -> Callable[[str], Principal]:
    def make(tenant: str) -> Principal:
        return Principal(tenant, make_patient(tenant, role="CLINICAL_ADVISOR"), "CLINICAL_ADVISOR", mfa=True)

    return make

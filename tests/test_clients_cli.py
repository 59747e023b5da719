"""`praneya clients register|list|deactivate|rotate-keys` and `praneya dev token --client`, against the
test database, with the tokens they lead to verified as the service verifies them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from engine.app.clients import ClientTokenVerifier, client_jwk, mint_client_token
from engine.app.tokens import AuthError
from engine.doors.cli import main
from engine.ops.dev import client_token_for, ensure_dev_client
from tests.fix_clients import AUDIENCE

pytestmark = pytest.mark.db


@pytest.fixture(autouse=True)
def _database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)


def test_register_list_rotate_deactivate(
    make_tenant: Callable[[], str], uid: Callable[[str], str], client_key_files: Callable[[str], Path],
    client_verifier: ClientTokenVerifier, admin_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = make_tenant()
    cid, issuer = uid("ehr"), f"https://{uid('ehr')}.example/"
    key = client_key_files("EdDSA")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [client_jwk(key, "k1")]}))
    base = ["clients", "register", "--id", cid, "--tenant", tenant, "--name", "Riverside EHR", "--issuer", issuer,
            "--jwks", str(tmp_path / "jwks.json"), "--alg", "EdDSA"]
    assert main([*base, "--scope", "evaluate.supplied", "--scope", "evaluate.stored",
                 "--cors-origin", "https://EHR.example", "--fhir-host", "fhir.example:8443"]) == 0
    assert main([*base, "--scope", "evaluate.supplied"]) == 1  # the id exists
    assert "already exists" in capsys.readouterr().err
    p = client_verifier.verify(mint_client_token(key, issuer=issuer, audience=AUDIENCE, kid="k1"), audience=AUDIENCE)
    assert (p.client_id, p.tenant_id, p.scopes) == (cid, tenant, ("evaluate.stored", "evaluate.supplied"))

    assert main(["clients", "list", "--tenant", tenant, "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["key_ids"], listed["cors_origins"], listed["fhir_server_hosts"], listed["active"]) == (
        cid, ["k1"], ["https://ehr.example"], ["fhir.example:8443"], True)

    new = client_key_files("EdDSA")
    (tmp_path / "new.json").write_text(json.dumps({"keys": [client_jwk(new, "k2")]}))
    assert main(["clients", "rotate-keys", "--id", cid, "--jwks", str(tmp_path / "new.json")]) == 0
    assert client_verifier.verify(mint_client_token(new, issuer=issuer, audience=AUDIENCE, kid="k2"),
                                  audience=AUDIENCE).client_id == cid
    with pytest.raises(AuthError):
        client_verifier.verify(mint_client_token(key, issuer=issuer, audience=AUDIENCE, kid="k1"), audience=AUDIENCE)

    assert main(["clients", "deactivate", "--id", cid]) == 0
    assert main(["clients", "deactivate", "--id", cid]) == 1
    with pytest.raises(AuthError, match="not a registered active client"):
        client_verifier.verify(mint_client_token(new, issuer=issuer, audience=AUDIENCE, kid="k2"), audience=AUDIENCE)
    with admin_engine.connect() as conn:
        actions = conn.execute(text(
            "SELECT action FROM audit.audit_logs WHERE resource_id = :c ORDER BY \"timestamp\", action"),
            {"c": cid}).scalars().all()
    assert sorted(actions) == ["CLIENT_DEACTIVATED", "CLIENT_KEYS_ROTATED", "CLIENT_REGISTERED"]


@pytest.mark.parametrize(("extra", "reason"), [
    (["--scope", "evaluate.supplied", "--jwks-url", "http://keys.example/jwks"], "https is required"),
    (["--scope", "evaluate.supplied", "--jwks-url", "https://keys.example/j", "--cors-origin", "*"],
     "not an origin"),
    (["--scope", "evaluate.supplied", "--jwks-url", "https://keys.example/j", "--fhir-host",
      "https://fhir.example/path"], "not a host name"),
    (["--scope", "evaluate.supplied"], "give a JWKS document"),
])
def test_register_refuses_unsafe_settings(
    make_tenant: Callable[[], str], uid: Callable[[str], str], capsys: pytest.CaptureFixture[str],
    extra: list[str], reason: str,
) -> None:
    args = ["clients", "register", "--id", uid("ehr"), "--tenant", make_tenant(), "--name", "EHR",
            "--issuer", f"https://{uid('iss')}.example/", *extra]
    assert main(args) == 1
    assert reason in capsys.readouterr().err


def test_the_development_client_and_its_token(
    make_tenant: Callable[[], str], admin_engine: Engine, client_verifier: ClientTokenVerifier, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = make_tenant()
    with admin_engine.begin() as conn:
        dev = ensure_dev_client(conn, tenant, client_id="dev-ehr-" + tenant, folder=tmp_path)
    with admin_engine.begin() as conn:  # again: nothing changes
        again = ensure_dev_client(conn, tenant, client_id="dev-ehr-" + tenant, folder=tmp_path)
    assert again == dev and (dev.private_key.stat().st_mode & 0o777) == 0o600
    token = client_token_for(dev.id, AUDIENCE, acting_for="Practitioner/1", folder=tmp_path)
    p = client_verifier.verify(token, audience=AUDIENCE)
    assert (p.client_id, p.tenant_id, p.acting_for) == (dev.id, tenant, "Practitioner/1")
    assert p.scopes == ("evaluate.stored", "evaluate.supplied", "records.write")
    # New key files (a fresh .local): the registration follows them.
    dev.private_key.unlink()
    with admin_engine.begin() as conn:
        renewed = ensure_dev_client(conn, tenant, client_id=dev.id, folder=tmp_path)
    assert renewed.kid != dev.kid
    assert client_verifier.verify(client_token_for(dev.id, AUDIENCE, folder=tmp_path), audience=AUDIENCE)
    # The CLI says what is missing rather than printing a token.
    assert main(["dev", "token", "--client", dev.id]) == 1
    assert "--audience" in capsys.readouterr().err
    assert main(["dev", "token", "--client", "no-such-client", "--audience", AUDIENCE]) == 1
    assert "no development key" in capsys.readouterr().err

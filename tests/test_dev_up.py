"""`praneya dev up` (what `make run` does) says which database it uses, and never its password."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import pytest

import engine.doors.serve
import engine.ops.content
import engine.ops.dev
import store.migrate
from engine.app.settings import ServiceSettings
from engine.doors.cli import commands
from engine.ops.dev import database_summary, dev_environment, ensure_dev_keys

ADMIN = "postgresql://praneya_owner:owner-s3cret@db.example:6543/clinic_dev"


def test_the_summary_names_database_host_port_and_roles_but_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRANEYA_APP_DATABASE_URL", raising=False)
    monkeypatch.setenv("PRANEYA_APP_PASSWORD", "app-s3cret")
    summary = database_summary(ADMIN)
    for part in ("clinic_dev", "db.example:6543", "praneya_owner", "praneya_app"):
        assert part in summary
    assert "s3cret" not in summary
    other = database_summary(ADMIN, "postgresql://svc:pw-s3cret@replica.example/clinic_ro")
    assert "clinic_ro on replica.example:5432" in other and "s3cret" not in other


def test_dev_up_prints_the_database_before_it_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = ensure_dev_keys(tmp_path)
    for name, value in dev_environment(paths).items():
        monkeypatch.setenv(name, value)  # restored after the test (dev up writes them to os.environ)
    monkeypatch.setenv("DATABASE_URL", ADMIN)
    monkeypatch.delenv("PRANEYA_APP_DATABASE_URL", raising=False)
    monkeypatch.setenv("PORT", "0")
    monkeypatch.setattr(engine.ops.dev, "ensure_dev_keys", lambda: paths)
    steps: list[str] = []
    monkeypatch.setattr(store.migrate, "upgrade", lambda: steps.append("migrate"))
    monkeypatch.setattr(engine.ops.content, "install_shipped_content", lambda: steps.append("content"))

    class _Admin:  # no database behind db.example: the client registration is recorded, not made
        def begin(self) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

    monkeypatch.setattr(commands, "_admin_engine", lambda: contextlib.nullcontext(_Admin()))
    def ensure_dev_client(conn: object, tenant: str) -> engine.ops.dev.DevClient:
        steps.append(f"client:{tenant}")
        return engine.ops.dev.DevClient("dev-ehr", tenant, "iss", "kid", tmp_path / "k", tmp_path / "j")

    monkeypatch.setattr(engine.ops.dev, "ensure_dev_client", ensure_dev_client)
    served: list[str] = []

    def serve(settings: ServiceSettings) -> int:
        served.append(capsys.readouterr().out)
        return 0

    monkeypatch.setattr(engine.doors.serve, "serve", serve)
    assert commands._dev_up(argparse.Namespace()) == 0
    assert steps == ["migrate", "content", "client:demo-clinic"]
    (before_serving,) = served
    assert "database clinic_dev on db.example:6543" in before_serving.splitlines()[0]
    assert "owner-s3cret" not in before_serving

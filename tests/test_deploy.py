"""`praneya deploy`: the seed's steps in order, logged, stopping at the first failure with what to fix."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from engine.ops.deploy import DeployError, deploy
from store.provision import drop_database
from tests.fix_db import create_database, db_name

pytestmark = [pytest.mark.db]


@pytest.fixture
def fresh_db(server_url: str, monkeypatch: pytest.MonkeyPatch, master_key_file: Path) -> Iterator[str]:
    name = db_name("deploy", uuid.uuid4().hex[:8])
    url = create_database(server_url, name)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PRANEYA_MASTER_KEY_FILE", str(master_key_file))
    monkeypatch.delenv("PRANEYA_APP_DATABASE_URL", raising=False)
    yield url
    drop_database(server_url, name)


def test_deploy_runs_every_step_in_order_and_logs_them(fresh_db: str, tmp_path: Path) -> None:
    out = io.StringIO()
    log = tmp_path / "deployment.log"
    deploy(demo=True, log_path=log, out=out)
    steps = [line.split("]")[0].strip("[ ") for line in out.getvalue().splitlines() if line.startswith("[")]
    assert steps == [str(n) for n in range(1, 11)]
    # Every step ok, but backup readiness on a server without WAL archiving (the test server's).
    assert all(": ok" in line for line in out.getvalue().splitlines() if line.startswith("[") and "[ 8]" not in line)
    assert "deployment finished" in log.read_text()
    with psycopg.connect(fresh_db) as c:
        assert c.execute("SELECT count(*) FROM public.tenants").fetchone() == (2,)
        assert c.execute("SELECT count(*) FROM clinical.clinical_rules").fetchone()[0] >= 40  # type: ignore[index]


def test_deploy_stops_at_the_first_failure_and_says_what_to_fix(fresh_db: str, tmp_path: Path) -> None:
    deploy(demo=False, log_path=tmp_path / "first.log", out=io.StringIO())
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("ALTER TABLE healthcare.medications NO FORCE ROW LEVEL SECURITY")
    out = io.StringIO()
    with pytest.raises(DeployError):
        deploy(demo=False, log_path=tmp_path / "second.log", out=out)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("[")]
    assert lines[-1].startswith("[ 5] row-level security: FAILED")
    assert "healthcare.medications" in lines[-1]
    assert "deployment finished" not in (tmp_path / "second.log").read_text()


def test_deploy_warns_when_point_in_time_recovery_is_not_configured(fresh_db: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_db) as c:
        archive_mode = c.execute("SHOW archive_mode").fetchone()
    if archive_mode != ("off",):
        pytest.skip("this PostgreSQL archives WAL; the warning is for one that does not")
    out = io.StringIO()
    deploy(demo=False, log_path=tmp_path / "deployment.log", out=out)
    (backup,) = [line for line in out.getvalue().splitlines() if line.startswith("[ 8]")]
    assert backup.startswith("[ 8] backup readiness: WARNING")
    assert ": ok" not in backup
    for setting in ("wal_level=replica", "archive_mode=on", "archive_command", "archive_mode=off"):
        assert setting in backup
    assert "deployment finished with warnings: backup readiness" in out.getvalue()

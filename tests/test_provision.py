"""Provisioning on a machine without a PostgreSQL on 5432: a project-local cluster from the binaries."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from engine.ops.dev import free_port
from store import provision
from store.provision import libpq_url
from tests.fix_db import db_name, db_prefix


def test_without_a_server_a_local_cluster_is_started_and_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = provision.LocalCluster(tmp_path / "local", free_port())  # ClusterError: no server binaries
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(provision, "SYSTEM_SERVER", "postgresql://postgres@127.0.0.1:1/postgres")  # nothing there
    monkeypatch.setattr(provision, "LOCAL", tmp_path / "local")
    monkeypatch.setattr(provision, "URL_FILE", tmp_path / "local" / "database_url")
    monkeypatch.setattr(provision, "LOCAL_PORT", cluster.port)
    try:
        url = provision.up()
        assert url == cluster.url(provision.DB_NAME)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (provision.DB_NAME,)
        assert (tmp_path / "local" / "database_url").read_text().strip() == url
        assert provision.up() == url  # a second call finds it running and reuses it
    finally:
        cluster.remove()
    assert not (tmp_path / "local").exists()


# -- test database names -------------------------------------------------------------------------------


def test_test_database_names_take_the_configured_prefix() -> None:
    one = db_name("test", "gw0", "4242", env={"PRANEYA_TEST_DB_PREFIX": "ci_job_1_"})
    two = db_name("test", "gw0", "4242", env={"PRANEYA_TEST_DB_PREFIX": "ci_job_2_"})
    assert (one, two) == ("ci_job_1_test_gw0_4242", "ci_job_2_test_gw0_4242")
    assert db_name("test", "gw0", "4242", env={}) == "praneya_test_gw0_4242"  # unset: the old names


@pytest.mark.parametrize("prefix", ["Praneya_", "1st_", "a-b_", "x; DROP DATABASE y", "p" * 31])
def test_a_prefix_that_is_not_a_plain_identifier_is_refused(prefix: str) -> None:
    with pytest.raises(pytest.UsageError, match="PRANEYA_TEST_DB_PREFIX"):
        db_name("test", env={"PRANEYA_TEST_DB_PREFIX": prefix})


def test_a_name_postgresql_would_cut_is_refused() -> None:
    with pytest.raises(pytest.UsageError, match="longer than 63 bytes"):
        db_name("test", "x" * 60, env={})


@pytest.mark.db
def test_this_runs_database_carries_the_prefix(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None and row[0].startswith(db_prefix())

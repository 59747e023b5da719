"""Provisioning on a machine without a PostgreSQL on 5432: a project-local cluster from the binaries."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from engine.api.dev import free_port
from store import provision


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

"""Find or start a PostgreSQL for development and tests: `python -m store.provision up|down|url`.

Order: DATABASE_URL when set; else the server these machines run on 127.0.0.1:5432 (trust auth);
else a project-local cluster under .local/ started from the installed server binaries. `initdb`
refuses to run as root, so as root the cluster runs as the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql

from store.config import PROJECT_ROOT, sqlalchemy_url

LOCAL = PROJECT_ROOT / ".local"
PGDATA = LOCAL / "pgdata"
PGSOCK = LOCAL / "pgsock"
LOCAL_PORT = int(os.environ.get("PRANEYA_LOCAL_PG_PORT", "54329"))
DB_NAME = os.environ.get("PRANEYA_DB_NAME", "praneya")
URL_FILE = LOCAL / "database_url"
SYSTEM_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _fail(message: str) -> None:
    print(f"praneya: {message}", file=sys.stderr)
    raise SystemExit(1)


def _libpq(url: str) -> str:
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _ensure_database(server_url: str, name: str) -> str:
    url = sqlalchemy_url(server_url)
    with psycopg.connect(_libpq(url.set(database="postgres").render_as_string(False)), autocommit=True) as c:
        if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)


def _server_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    candidates = []
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    candidates += ["/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin"]
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _as_cluster_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _fail(
            "running as root and there is no 'postgres' system user to run a local cluster; "
            "create one (useradd -r postgres) or set DATABASE_URL"
        )
    return ["runuser", "-u", "postgres", "--", *cmd]


def _local_cluster_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{LOCAL_PORT}/postgres"


def _start_local_cluster() -> str:
    bindir = _server_bindir()
    if bindir is None:
        _fail(
            "no PostgreSQL server found: nothing answers on 127.0.0.1:5432, DATABASE_URL is not set, "
            "and no server binaries (initdb, pg_ctl) are installed. Install PostgreSQL 15 "
            "(Debian/Ubuntu: apt-get install postgresql-15; macOS: brew install postgresql@15) "
            "or set DATABASE_URL to a server you may create roles on."
        )
    assert bindir is not None
    LOCAL.mkdir(exist_ok=True)
    PGSOCK.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        # The cluster user must be able to reach and own its folders.
        pw = pwd.getpwnam("postgres")
        for p in (LOCAL, PGSOCK):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        path = PROJECT_ROOT
        while path != path.parent:
            # Traverse (x) only, for group and others: the cluster user must reach .local/.
            os.chmod(path, os.stat(path).st_mode | 0o011)  # noqa: S103
            path = path.parent
    if not (PGDATA / "PG_VERSION").exists():
        subprocess.run(
            _as_cluster_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(PGDATA),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    url = _local_cluster_url()
    if not _reachable(url):
        opts = f"-p {LOCAL_PORT} -k {PGSOCK} -c listen_addresses=127.0.0.1"
        subprocess.run(
            _as_cluster_user(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(PGDATA),
                    "-l",
                    str(LOCAL / "postgres.log"),
                    "-o",
                    opts,
                    "-w",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return url


def up() -> str:
    if os.environ.get("DATABASE_URL"):
        server = os.environ["DATABASE_URL"]
        name = sqlalchemy_url(server).database or DB_NAME
        if not _reachable(sqlalchemy_url(server).set(database="postgres").render_as_string(False)):
            _fail("DATABASE_URL is set but the server does not answer; check host, port and credentials")
        return _ensure_database(server, name)
    server = SYSTEM_SERVER if _reachable(SYSTEM_SERVER) else _start_local_cluster()
    url = _ensure_database(server, DB_NAME)
    LOCAL.mkdir(exist_ok=True)
    URL_FILE.write_text(url + "\n")
    return url


def down() -> None:
    bindir = _server_bindir()
    if (PGDATA / "PG_VERSION").exists() and bindir is not None:
        subprocess.run(
            _as_cluster_user([str(bindir / "pg_ctl"), "-D", str(PGDATA), "-m", "fast", "stop"]), check=False
        )
        print("praneya: local cluster stopped")
    else:
        print("praneya: no project-local cluster; a shared server is left running")
    URL_FILE.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "up"
    if action == "up":
        print(up())
    elif action == "url":
        print(up())
    elif action == "down":
        down()
    else:
        _fail(f"unknown action {action!r}; use up, url or down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

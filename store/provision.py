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
from typing import NoReturn

import psycopg
from psycopg import sql

from store.config import PROJECT_ROOT, sqlalchemy_url

LOCAL = PROJECT_ROOT / ".local"
LOCAL_PORT = int(os.environ.get("PRANEYA_LOCAL_PG_PORT", "54329"))
DB_NAME = os.environ.get("PRANEYA_DB_NAME", "praneya")
URL_FILE = LOCAL / "database_url"
SYSTEM_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _fail(message: str) -> NoReturn:
    print(f"praneya: {message}", file=sys.stderr)
    raise SystemExit(1)


def libpq_url(url: str) -> str:
    """A URL psycopg and libpq accept (no SQLAlchemy driver suffix)."""
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _maintenance_url(server_url: str) -> str:
    return libpq_url(sqlalchemy_url(server_url).set(database="postgres").render_as_string(hide_password=False))


def recreate_database(server_url: str, name: str) -> str:
    """Drops (disconnecting its sessions) and creates database `name` on the server; returns its URL."""
    with psycopg.connect(_maintenance_url(server_url), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return libpq_url(sqlalchemy_url(server_url).set(database=name).render_as_string(hide_password=False))


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(_maintenance_url(server_url), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _ensure_database(server_url: str, name: str) -> str:
    url = sqlalchemy_url(server_url)
    with psycopg.connect(libpq_url(url.set(database="postgres").render_as_string(False)), autocommit=True) as c:
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


class ClusterError(RuntimeError):
    """A local cluster cannot be run here; the message says what to install or create."""


class LocalCluster:
    """A PostgreSQL cluster in a folder of the project, trust auth on 127.0.0.1.

    `initdb` refuses to run as root, so as root the cluster runs as the `postgres` system user, which
    must be able to reach the folder (the parents get traverse permission, nothing more).
    """

    def __init__(self, root: Path, port: int) -> None:
        bindir = _server_bindir()
        if bindir is None:
            raise ClusterError(
                "no PostgreSQL server binaries (initdb, pg_ctl) are installed. Install PostgreSQL 15 "
                "(Debian/Ubuntu: apt-get install postgresql-15; macOS: brew install postgresql@15) "
                "or set DATABASE_URL to a server you may create roles on."
            )
        self.bindir = bindir
        self.root = root
        self.data = root / "pgdata"
        self.sock = root / "pgsock"
        self.log = root / "postgres.log"
        self.port = port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ClusterError(
                "running as root and there is no 'postgres' system user to run a local cluster; "
                "create one (useradd -r postgres) or set DATABASE_URL"
            ) from None
        return ["runuser", "-u", "postgres", "--", *cmd]

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            path = self.root.parent
            while path != path.parent:
                # Traverse (x) only, for group and others: the cluster user must reach its folder.
                os.chmod(path, os.stat(path).st_mode | 0o011)  # noqa: S103
                path = path.parent
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                self._as_owner(
                    [
                        str(self.bindir / "initdb"),
                        "-D",
                        str(self.data),
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
                stderr=subprocess.DEVNULL,
            )

    def _ctl(self, action: str, *, check: bool = True) -> None:
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run(
            self._as_owner(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    opts,
                    "-m",
                    "fast",
                    "-w",
                    action,
                ]
            ),
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> str:
        """Creates the cluster if needed and starts it if it does not answer; returns its URL."""
        self._prepare()
        if not _reachable(self.url()):
            self._ctl("start")
        return self.url()

    def stop(self) -> None:
        if (self.data / "PG_VERSION").exists():
            self._ctl("stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _project_cluster() -> LocalCluster:
    return LocalCluster(LOCAL, LOCAL_PORT)


def up() -> str:
    if os.environ.get("DATABASE_URL"):
        server = os.environ["DATABASE_URL"]
        name = sqlalchemy_url(server).database or DB_NAME
        if not _reachable(sqlalchemy_url(server).set(database="postgres").render_as_string(False)):
            _fail("DATABASE_URL is set but the server does not answer; check host, port and credentials")
        return _ensure_database(server, name)
    if _reachable(SYSTEM_SERVER):
        server = SYSTEM_SERVER
    else:
        try:
            server = _project_cluster().start()
        except ClusterError as exc:
            _fail(f"nothing answers on 127.0.0.1:5432, DATABASE_URL is not set, and {exc}")
    url = _ensure_database(server, DB_NAME)
    LOCAL.mkdir(exist_ok=True)
    URL_FILE.write_text(url + "\n")
    return url


def down() -> None:
    try:
        cluster = _project_cluster()
    except ClusterError:
        cluster = None
    if cluster is not None and (cluster.data / "PG_VERSION").exists():
        cluster.stop()
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

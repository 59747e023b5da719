"""Where the database is. Small, explicit, read from the environment once per call site."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url

__all__ = ["PROJECT_ROOT", "ConfigError", "admin_database_url", "app_database_url", "sqlalchemy_url"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# `make db-up` writes the URL it provisioned here, so CLI commands run outside make find the same
# database. The folder is git-ignored.
_PROVISIONED_URL_FILE = PROJECT_ROOT / ".local" / "database_url"

APP_ROLE = "praneya_app"


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message names the variable and what to do."""


def sqlalchemy_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def admin_database_url() -> str:
    """The role that runs migrations and creates roles (DATABASE_URL)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return sqlalchemy_url(url).render_as_string(hide_password=False)
    if _PROVISIONED_URL_FILE.is_file():
        return sqlalchemy_url(_PROVISIONED_URL_FILE.read_text().strip()).render_as_string(hide_password=False)
    raise ConfigError("DATABASE_URL is not set: set it, or run `make db-up` to provision a database")


def app_database_url(admin_url: str | None = None) -> str:
    """The runtime role (PRANEYA_APP_DATABASE_URL), by default DATABASE_URL with the user swapped."""
    url = os.environ.get("PRANEYA_APP_DATABASE_URL")
    if url:
        return sqlalchemy_url(url).render_as_string(hide_password=False)
    base = sqlalchemy_url(admin_url or admin_database_url())
    derived = base.set(username=APP_ROLE, password=os.environ.get("PRANEYA_APP_PASSWORD") or None)
    return derived.render_as_string(hide_password=False)

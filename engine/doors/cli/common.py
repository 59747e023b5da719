"""What the CLI's command modules share: the operator-facing error, the wiring to the database and
keys, and the guard that turns known failures into one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["CommandError", "Sub", "Wiring"]

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    Sub = argparse._SubParsersAction


class CommandError(Exception):
    """A failure the operator can fix; printed as one line, no traceback."""


@dataclass
class Wiring:
    admin: Any  # sqlalchemy Engine
    provider: Any
    keys: Any

    def app(self) -> Any:
        from store.config import app_database_url
        from store.session import Database

        return Database(app_database_url(), pool_size=2)


@contextmanager
def _wiring() -> Iterator[Wiring]:
    from sqlalchemy import create_engine

    from store.config import admin_database_url
    from store.crypto import key_provider_from_env
    from store.keys import KeyStore

    provider = key_provider_from_env()
    engine = create_engine(admin_database_url())
    try:
        yield Wiring(engine, provider, KeyStore(provider))
    finally:
        engine.dispose()


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Known failures become one clear line and exit code 1; never a traceback with values in it."""

    def run(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import DBAPIError

        from store.admin import AdminError
        from store.config import ConfigError
        from store.crypto import DecryptionError, KeyProviderError

        try:
            return fn(args)
        except (CommandError, AdminError, ConfigError, KeyProviderError, DecryptionError) as exc:
            print(f"praneya: {exc}", file=sys.stderr)
            return 1
        except DBAPIError as exc:
            diag = getattr(exc.orig, "diag", None)
            primary = getattr(diag, "message_primary", None) or type(exc.orig).__name__
            print(f"praneya: the database refused: {primary}", file=sys.stderr)
            return 1

    return run


@contextmanager
def _admin_engine() -> Iterator[Any]:
    from sqlalchemy import create_engine

    from store.config import admin_database_url

    engine = create_engine(admin_database_url())
    try:
        yield engine
    finally:
        engine.dispose()

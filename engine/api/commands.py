"""CLI subcommands that touch the database or the network (the edge of the engine)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _migrate(args: argparse.Namespace) -> int:
    from store import migrate

    if args.check:
        try:
            migrate.check_drift()
        except migrate.DriftDetected as exc:
            print(f"praneya: migrations and store/models.py disagree: {exc}", file=sys.stderr)
            return 1
        print("no drift: migrations and models agree")
        return 0
    if args.downgrade:
        migrate.downgrade(args.downgrade)
    else:
        migrate.upgrade(args.revision)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             rules: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("migrate", help="apply the database migrations to DATABASE_URL")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.add_argument("--downgrade", metavar="REV", help="downgrade to REV instead (e.g. base)")
    p.add_argument("--check", action="store_true", help="fail when models and migrations disagree")
    p.set_defaults(handler=_migrate)

"""The `praneya` console script: one entry point, subcommands per area."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _cmd_rules_lint(args: argparse.Namespace) -> int:
    from engine import ruletool

    return ruletool.lint_main(args.paths or ["rules"])


def _cmd_rules_test(args: argparse.Namespace) -> int:
    from engine import ruletool

    return ruletool.test_main(args.paths or ["rules"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="praneya", description="Praneya Clinical Safety Engine")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rules = sub.add_parser("rules", help="lint, test and sync clinician-authored rules").add_subparsers(
        dest="rules_command", required=True, metavar="ACTION"
    )
    p = rules.add_parser("lint", help="check rule files against the schema and the fact model")
    p.add_argument("paths", nargs="*", help="files or folders (default: rules/)")
    p.set_defaults(handler=_cmd_rules_lint)
    p = rules.add_parser("test", help="run every rule's cases")
    p.add_argument("paths", nargs="*", help="files or folders (default: rules/)")
    p.set_defaults(handler=_cmd_rules_test)

    # Commands that touch the database or the network live beside this module; the operations tools
    # they start (serve, deploy, dev) in engine/ops/.
    from engine.doors.cli import audit_commands, backup_commands, client_commands, commands

    commands.register(sub, rules)
    audit_commands.register(sub)
    backup_commands.register(sub)
    client_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())

"""Every option of every `praneya` subcommand says what it is for (`praneya … --help`)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from engine.doors.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, path: str = "praneya") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_of_every_subcommand_has_help() -> None:
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and (action.help is None or action.help == argparse.SUPPRESS or not action.help.strip())
    ]
    assert missing == []


def test_the_walk_reaches_nested_subcommands() -> None:
    parsers = dict(_parsers(build_parser()))
    assert {"praneya rules lint", "praneya serve", "praneya dev up", "praneya keys rotate"} <= set(parsers)
    for parser in parsers.values():
        assert parser.format_help()  # every help string renders (a stray % would raise here)

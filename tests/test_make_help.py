"""`make help` colours its output on a terminal only (issue 13, item 14): piped, it is plain text."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess

import pytest

from store.config import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

ESC = "\x1b"


def _env(**extra: str) -> dict[str, str]:
    # A clean make: not a sub-make of `make test` (MAKEFLAGS, MAKELEVEL), no colour preference set.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "NO_COLOR")}
    return {**env, **extra}


def _help_on_terminal(**extra: str) -> str:
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(PROJECT_ROOT), "help"],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.DEVNULL,
        env=_env(**extra),
    ) as proc:
        os.close(secondary)  # make holds the terminal now; reading ends when it closes it
        chunks = []
        try:
            while chunk := os.read(primary, 65536):
                chunks.append(chunk)
        except OSError:  # EIO: the other side is closed and everything was read
            pass
        finally:
            os.close(primary)
        assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def test_piped_help_has_no_escape_codes() -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT_ROOT), "help"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=True,
    ).stdout
    assert ESC not in out
    lines = out.splitlines()
    for target in ("install", "lock", "test", "lint", "bench"):
        assert any(line.split()[0] == target for line in lines), target


def test_help_on_a_terminal_is_coloured_unless_no_color() -> None:
    assert f"{ESC}[36mtest" in _help_on_terminal()
    assert ESC not in _help_on_terminal(NO_COLOR="1")

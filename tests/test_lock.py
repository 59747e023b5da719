"""requirements.lock: what `make install` installs, every file checked against a hash (issue 13, item 8).

The install itself is the real proof (a tampered hash makes `make install` fail); these checks catch
a lock that pip would install but that no longer covers the project: a dependency of pyproject.toml
missing, a line without hashes, an index or a host written into it, pip or setuptools left out.
"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from store.config import PROJECT_ROOT

LOCK = PROJECT_ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _entries() -> dict[str, list[str]]:
    """name -> the hashes of its pinned release, from the lock's `name==version ... \\` blocks."""
    entries: dict[str, list[str]] = {}
    current: str | None = None
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pin = PIN.match(line)
        if pin:
            current = canonicalize_name(pin.group(1))
            assert current not in entries, f"{current} pinned twice"
            entries[current] = []
            continue
        hashed = re.fullmatch(r"\s+--hash=sha256:([0-9a-f]{64})( \\)?", line)
        assert hashed and current, f"not a pin or a hash: {line!r}"
        entries[current].append(hashed.group(1))
    return entries


def test_every_locked_package_is_pinned_with_hashes() -> None:
    entries = _entries()
    assert len(entries) > 30
    assert not [name for name, hashes in entries.items() if not hashes]


def test_lock_names_no_index_host_or_local_path() -> None:
    text = LOCK.read_text()
    # A host or a path in the lock would tie installs to one machine's mirror or folder.
    for banned in ("://", "--index-url", "--extra-index-url", "--find-links", "-e ", "/tmp", "/work", "@ file"):
        assert banned not in text, banned


def test_lock_covers_pyproject_and_the_install_tools() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    entries = _entries()
    missing = [r for r in wanted if canonicalize_name(Requirement(r).name) not in entries]
    assert missing == [], "run `make lock` after changing pyproject.toml"
    # `make install` runs the locked pip and builds the project with the locked setuptools and wheel.
    assert {"pip", "setuptools", "wheel"} <= entries.keys()

"""The YAML knowledge files read by libyaml's parser when PyYAML was built with it: the same
documents as yaml.safe_load (SafeLoader's constructor and resolver, libyaml's scanner and parser;
the 123 YAML files under rules/ load identically), about 8 times faster, which a worker's load
time needs (1.4 s of pure-Python parsing for the knowledge folder on a busy 2-core machine)."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["safe_load"]

_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python

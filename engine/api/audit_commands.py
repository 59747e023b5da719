"""`praneya audit ...`: seal and verify the audit hash chain (filled in by the audit-chain work)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    del sub

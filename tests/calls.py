"""Work counted, not timed: tests bound how much a piece of code does, never how long it takes.

A count of function calls is the same on an idle and on a busy machine, so a test can tell linear
from quadratic work (ten times the input, about ten times the calls) or check that a budget stops a
loop early, where a wall-clock limit would fail whenever the machine is loaded. Loops inside C code
(a `list.__contains__` scan) count once; what the engine does per element in Python counts each time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["count_calls"]


def count_calls(fn: Callable[[], Any]) -> int:
    """The Python and C function calls made while fn() runs in this thread (fn may raise)."""
    calls = 0

    def count(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    previous = sys.getprofile()
    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(previous)
    return calls

"""Waiting for something a real process does in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(
    what: str,
    check: Callable[[], T | None],
    timeout: float = 20,
    *,
    every: float = 0.1,
    detail: Callable[[], Any] | None = None,
) -> T:
    """The first truthy value of `check()`; fails naming `what` (and `detail()`) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (
            f": {detail()}" if detail else ""
        )
        time.sleep(every)

"""Processes that end with the one that started them, however it ends."""

from __future__ import annotations

import shutil
import sys


def ending_with_this_process(argv: list[str]) -> list[str]:
    """`argv`, run so that it gets SIGTERM when the process starting it dies, even by SIGKILL
    (Linux's parent-death signal, set by util-linux `setpriv` before it execs `argv`, so the
    pid stays the program's own). Elsewhere, or without `setpriv`, `argv` unchanged.

    The signal follows the starting *thread*: start such processes from one that lives as long
    as they should."""
    setpriv = shutil.which("setpriv")
    if sys.platform != "linux" or setpriv is None:
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]

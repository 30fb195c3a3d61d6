"""Loopback sockets for the local servers the devkit, the tests and the playground start
(control plane, redis-server, Sentinels, the bot, stand-ins): one way to pick a free port, and
one way to stop listening."""

from __future__ import annotations

import contextlib
import socket
from types import TracebackType
from typing import Self


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; a race with another process is possible
    but each caller binds at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_listening(listener: socket.socket) -> None:
    """Close a listening socket so that a thread blocked in its `accept` returns at once.

    Closing alone does not wake it, and once the descriptor's number is reused by the next
    socket (another test's stand-in) such a thread could take that socket's connections:
    shutting the listener down first ends the `accept` with an error."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


class StartedInWith:
    """A local server used as `with Server() as server:`: started on entry, stopped on exit."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

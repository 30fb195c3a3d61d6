"""A free TCP port on 127.0.0.1, for each local server the devkit, the tests and the playground
start (control plane, redis-server, Sentinels, the bot): one way to pick one, used by all."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; a race with another process is possible
    but each caller binds at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

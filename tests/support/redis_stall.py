"""A loopback TCP proxy in front of a real redis-server that can make one kind of command hang.

While `stall` is on, a request whose bytes contain `needle` (e.g. b":event:", the replay
check's key) is swallowed: Redis never sees it and the client waits until its own timeout,
exactly as behind a Redis busy forking or rewriting its AOF. Every other command on every
other connection passes untouched, so the audit writes still work.
"""

from __future__ import annotations

import threading

from tests.devkit.redis_server import LoopbackProxy, RedisServer


class StallingProxy(LoopbackProxy):
    def __init__(self, server: RedisServer, needle: bytes) -> None:
        self._needle = needle
        self.stall = threading.Event()
        self.swallowed = 0
        super().__init__(server)

    def pass_request(self, data: bytes, link: threading.Event) -> bool:
        if self.stall.is_set() and self._needle in data:
            self.swallowed += 1
            return False  # never reaches Redis; the client times out waiting
        return True

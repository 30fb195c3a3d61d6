"""A loopback TCP proxy in front of a real redis-server that can make one kind of command hang.

While `stall` is on, a request whose bytes contain `needle` (e.g. b":event:", the replay
check's key) is swallowed: Redis never sees it and the client waits until its own timeout,
exactly as behind a Redis busy forking or rewriting its AOF. Every other command on every
other connection passes untouched, so the audit writes still work.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from bot.devkit.redis_server import RedisServer


class StallingProxy:
    def __init__(self, server: RedisServer, needle: bytes) -> None:
        self._upstream = (server.host, server.port)
        self._needle = needle
        self.stall = threading.Event()
        self.swallowed = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            threading.Thread(
                target=self._requests, args=(downstream, upstream), daemon=True
            ).start()
            threading.Thread(target=self._replies, args=(downstream, upstream), daemon=True).start()

    def _requests(self, downstream: socket.socket, upstream: socket.socket) -> None:
        while True:
            try:
                data = downstream.recv(65536)
                if not data:
                    break
                if self.stall.is_set() and self._needle in data:
                    self.swallowed += 1
                    continue  # never reaches Redis; the client times out waiting
                upstream.sendall(data)
            except OSError:
                break
        _close(downstream, upstream)

    def _replies(self, downstream: socket.socket, upstream: socket.socket) -> None:
        while True:
            try:
                data = upstream.recv(65536)
                if not data:
                    break
                downstream.sendall(data)
            except OSError:
                break
        _close(downstream, upstream)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

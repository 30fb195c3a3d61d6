"""A real `redis-server` process owned by the tests.

Each `RedisServer` runs its own redis-server on a free loopback port with its own temporary
directory, so fault tests (stop, SIGKILL, SIGSTOP, restart) never touch a developer's Redis.

Persistence is AOF only (`appendonly yes`, `appendfsync everysec`, `save ""`): every write
reaches the kernel before Redis replies, so a `stop()`/`kill()` followed by `start()` keeps
the data, which is what restart tests need. RDB snapshots are disabled so a slow background
save never competes with the test.

    with RedisServer() as server:
        client = server.client()
        server.pause()    # the process is SIGSTOPped: clients see timeouts
        server.resume()
        server.restart()  # same port, same data
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.devkit.lifetime import ending_with_this_process
from tests.devkit.loopback import free_port, stop_listening

__all__ = ["RedisServer", "RedisServerNotInstalled", "ReplyDroppingProxy", "flush_redis"]

# Startup loads the AOF; an empty or small data set loads in milliseconds, 10 s only matters
# on a heavily loaded CI machine.
START_TIMEOUT = 10.0
# Redis answers SIGTERM by fsyncing the AOF and exiting; a second is plenty, five covers CI.
STOP_TIMEOUT = 5.0
# Test clients fail fast: a hung or stopped server must surface as an error within a second,
# not after redis-py's default 5 s timeout times 10 retries.
CLIENT_TIMEOUT = 1.0


class RedisServerNotInstalled(RuntimeError):
    """No `redis-server` executable was found."""


def _find_executable(executable: str | None) -> str:
    found = shutil.which(executable or "redis-server")
    if found is None:
        raise RedisServerNotInstalled(
            "redis-server was not found on PATH; the integration tests need a real Redis. "
            "Install it with `apt-get install redis-server` (Debian/Ubuntu), "
            "or set REDIS_SERVER to the executable's path."
        )
    return found


class RedisServer:
    """One redis-server process on 127.0.0.1 with its own port and data directory."""

    def __init__(
        self,
        *,
        executable: str | None = None,
        port: int | None = None,
        ends_with_caller: bool = False,
        extra_args: list[str] | None = None,
    ) -> None:
        """`ends_with_caller`: redis-server stops when this process dies, even by SIGKILL.
        `extra_args`: further command-line settings (e.g. `--replicaof HOST PORT`); the
        attribute may be changed before a restart."""
        self._executable = _find_executable(executable or os.environ.get("REDIS_SERVER"))
        self._ends_with_caller = ends_with_caller
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.dir = Path(tempfile.mkdtemp(prefix="rollout-bot-redis-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False
        self.extra_args = list(extra_args or [])
        atexit.register(self._atexit)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING (after loading its AOF)."""
        if self.running:
            return
        log = (self.dir / "redis.log").open("ab")
        try:
            command = self._command()
            if self._ends_with_caller:
                command = ending_with_this_process(command)
            self._process = subprocess.Popen(
                command,
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        self._paused = False
        self._wait_ready()

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM: Redis fsyncs the AOF), SIGKILL if that hangs."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if self._paused:
                # A stopped process keeps SIGTERM pending; let it run so it can shut down.
                process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        self._process = None
        self._paused = False

    def kill(self) -> None:
        """SIGKILL: a crash. Writes already handed to the kernel survive (AOF)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)
        self._process = None
        self._paused = False

    def restart(self) -> None:
        """Stop cleanly and start again on the same port with the same data."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its socket (connects succeed) but never answers."""
        if self._process is None or not self.running:
            raise RuntimeError("redis-server is not running")
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._process is not None and self._paused:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    def close(self) -> None:
        """Stop the server and remove its data directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            atexit.unregister(self._atexit)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- clients ------------------------------------------------------------------------

    def client(self, **overrides: Any) -> redis.Redis:
        """A client with short timeouts and no retries, so faults surface at once."""
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "db": 0,
            "socket_timeout": CLIENT_TIMEOUT,
            "socket_connect_timeout": CLIENT_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
            "decode_responses": True,
        }
        options.update(overrides)
        return redis.Redis(**options)

    def flush(self) -> None:
        """Remove every key and cached script (used between tests sharing one server)."""
        with self.client() as client:
            client.flushall()
            client.script_flush()

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "redis.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- internals ----------------------------------------------------------------------

    def _command(self) -> list[str]:
        return [
            self._executable,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
            "--loglevel",
            "notice",
            *self.extra_args,
        ]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        probe = redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                process = self._process
                if process is None or process.poll() is not None:
                    self._process = None
                    raise RuntimeError(
                        f"redis-server exited during startup on port {self.port}:\n"
                        f"{self.log_tail()}"
                    )
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"redis-server did not answer PING within {START_TIMEOUT} s:\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            probe.close()

    def _atexit(self) -> None:
        # Last resort when a test run is interrupted before the fixture's teardown.
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def flush_redis(server: RedisServer) -> None:
    """Empty a shared server between tests; call it from a function-scoped fixture.

    A server that an earlier test left paused or stopped is brought back first, so one
    failing fault test cannot cascade into the rest of the module.
    """
    server.resume()
    if not server.running:
        server.start()
    server.flush()


class LoopbackProxy:
    """A loopback TCP proxy in front of a RedisServer that relays every byte both ways, with
    two hooks a fault proxy overrides: whether to pass on a request, and a reply, of one
    client connection (`link`, an Event per connection the two hooks share)."""

    def __init__(self, server: RedisServer) -> None:
        self._upstream = (server.host, server.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **overrides: Any) -> redis.Redis:
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "socket_timeout": CLIENT_TIMEOUT,
            "socket_connect_timeout": CLIENT_TIMEOUT,
            # redis-py's default behaviour (retry on connection errors), made explicit.
            "retry": Retry(NoBackoff(), 3),
            "decode_responses": True,
        }
        options.update(overrides)
        return redis.Redis(**options)

    def close(self) -> None:
        self._closing = True
        stop_listening(self._listener)

    def pass_request(self, data: bytes, link: threading.Event) -> bool:
        """Whether to send these request bytes on to Redis (False: swallow them)."""
        return True

    def pass_reply(self, data: bytes, link: threading.Event) -> bool:
        """Whether to send these reply bytes to the client (False: close its connection)."""
        return True

    def _accept(self) -> None:
        while not self._closing:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            link = threading.Event()
            threading.Thread(
                target=self._requests, args=(downstream, upstream, link), daemon=True
            ).start()
            threading.Thread(
                target=self._replies, args=(downstream, upstream, link), daemon=True
            ).start()

    def _requests(
        self, downstream: socket.socket, upstream: socket.socket, link: threading.Event
    ) -> None:
        while True:
            try:
                data = downstream.recv(65536)
                if not data:
                    break
                if self.pass_request(data, link):
                    upstream.sendall(data)
            except OSError:
                break
        _close(downstream, upstream)

    def _replies(
        self, downstream: socket.socket, upstream: socket.socket, link: threading.Event
    ) -> None:
        while True:
            try:
                data = upstream.recv(65536)
                if not data or not self.pass_reply(data, link):
                    break
                downstream.sendall(data)
            except OSError:
                break
        _close(downstream, upstream)


class ReplyDroppingProxy(LoopbackProxy):
    """Loses one reply: the first command whose bytes contain `trigger` (e.g. b"EVALSHA") is
    forwarded to Redis and executed, but instead of relaying the reply the proxy closes the
    client's connection: the "write happened, client saw an error" case. redis-py then
    reconnects and, with retries enabled, sends the same command again.
    """

    def __init__(self, server: RedisServer, trigger: bytes) -> None:
        self._trigger = trigger
        self._armed = threading.Event()
        self.dropped = 0
        super().__init__(server)

    def arm(self) -> None:
        """Drop the reply to the next matching command."""
        self._armed.set()

    def pass_request(self, data: bytes, drop_next_reply: threading.Event) -> bool:
        if self._trigger in data and self._armed.is_set():
            self._armed.clear()
            drop_next_reply.set()  # before forwarding, so the reply cannot overtake
        return True

    def pass_reply(self, data: bytes, drop_next_reply: threading.Event) -> bool:
        if drop_next_reply.is_set():
            self.dropped += 1
            return False  # the command ran; its reply is lost with the connection
        return True


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

"""A local WebSocket server speaking Slack's Socket Mode protocol, for tests.

Wire it to a SlackStandin so `apps.connections.open` hands out its URL:

    with SlackStandin() as slack, SocketModeStandin() as socket_mode:
        slack.socket_mode_url = socket_mode.url
        handler = SocketModeHandler(app, app_token=slack.app_token)
        handler.connect()
        envelope_id = socket_mode.send_slash_command(slash_command_payload("status"))
        ack = socket_mode.wait_for_ack(envelope_id)   # {"envelope_id": ..., "payload": {...}}

Protocol: the server greets with `hello`, pushes envelopes
`{"envelope_id", "type", "payload", "accepts_response_payload"}`, and the client answers each
with `{"envelope_id", "payload"?}` within 3 s. `disconnect` asks the client to reconnect through
a fresh apps.connections.open. Each envelope goes to one connection only (round-robin), as Slack
does when an app holds several connections.

slack_sdk's built-in client (under Bolt's SocketModeHandler), as observed against this server:
- after `disconnect` it keeps acking on the old socket until it has switched, so acks are
  recorded whichever connection they arrive on;
- after an abrupt close it reconnects only from its monitor thread, i.e. within `ping_interval`
  (Bolt's default 10 s): use a small ping_interval in tests that drop connections;
- `handler.close()` takes about 3 s (its socket read timeout); close it before stopping this.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Self

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.devkit.loopback import StartedInWith
from tests.devkit.slack.workspace import APP_ID


class SocketModeStandin(StartedInWith):
    """Socket Mode WebSocket server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, app_id: str = APP_ID, ping_interval: float | None = None) -> None:
        self.app_id = app_id
        self._ping_interval = ping_interval  # None: rely on the client's own pings
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connections: list[ServerConnection] = []  # open and eligible for envelopes
        # Told to `disconnect`: no more envelopes, closed after a grace period (as Slack does).
        self._retiring: list[ServerConnection] = []
        self._timers: list[threading.Timer] = []
        self._connects_total = 0
        self._round_robin = itertools.count()
        self._acks: dict[str, dict[str, Any]] = {}
        self._other_messages: list[dict[str, Any]] = []  # non-ack frames the client sent
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is None:
            self._server = serve(
                self._serve_connection,
                "127.0.0.1",
                0,
                ping_interval=self._ping_interval,
                # slack_sdk's built-in client never answers a close frame; don't wait long.
                close_timeout=0.5,
                compression=None,
            )
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="socket-mode-standin", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server, self._thread = None, None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("SocketModeStandin is not started")
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link"

    # -- server side of one connection (one thread each) -----------------------------------------

    def _serve_connection(self, connection: ServerConnection) -> None:
        with self._changed:
            self._connections.append(connection)
            self._connects_total += 1
            count = len(self._connections)
            self._changed.notify_all()
        try:
            connection.send(json.dumps(self._hello(count)))
            for raw in connection:  # pings/pongs are answered by websockets itself
                self._on_client_message(raw)
        except ConnectionClosed:
            pass  # the SDK client often closes the socket without a close frame
        finally:
            with self._changed:
                for group in (self._connections, self._retiring):
                    if connection in group:
                        group.remove(connection)
                self._changed.notify_all()

    def _hello(self, num_connections: int) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": num_connections,
            "debug_info": {
                "host": "applink-standin",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }

    def _on_client_message(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            message = {"_unparsed": raw if isinstance(raw, str) else raw.decode("utf-8", "replace")}
        with self._changed:
            if isinstance(message, dict) and "envelope_id" in message:
                self._acks[str(message["envelope_id"])] = message
            else:
                self._other_messages.append({"message": message})
            self._changed.notify_all()

    # -- test API -------------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        """Open connections that would receive envelopes (not ones told to disconnect)."""
        with self._lock:
            return len(self._connections)

    @property
    def connects_total(self) -> int:
        """How many connections were ever opened (grows when a client reconnects)."""
        with self._lock:
            return self._connects_total

    def wait_for_connections(self, count: int = 1, timeout: float = 10.0) -> None:
        self._wait(lambda: len(self._connections) >= count, timeout, f"{count} connection(s)")

    def wait_for_connects_total(self, count: int, timeout: float = 10.0) -> None:
        self._wait(lambda: self._connects_total >= count, timeout, f"{count} connects in total")

    def send_envelope(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        accepts_response_payload: bool,
        envelope_id: str | None = None,
        timeout: float = 10.0,
    ) -> str:
        """Push one envelope to one connected client (waiting for one); returns its id."""
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        self.wait_for_connections(1, timeout)
        with self._lock:
            connection = self._connections[next(self._round_robin) % len(self._connections)]
        connection.send(json.dumps(envelope))
        return envelope_id

    def send_slash_command(self, payload: dict[str, Any]) -> str:
        # Commands may be answered in the ack (the ack payload becomes the reply message).
        return self.send_envelope("slash_commands", payload, accepts_response_payload=True)

    def send_block_action(self, payload: dict[str, Any]) -> str:
        # For block_actions Slack ignores ack payloads; updates go via chat.update/response_url.
        return self.send_envelope("interactive", payload, accepts_response_payload=False)

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The client's ack for the envelope: {"envelope_id": ..., "payload"?: {...}}."""
        self._wait(lambda: envelope_id in self._acks, timeout, f"ack of envelope {envelope_id}")
        with self._lock:
            return dict(self._acks[envelope_id])

    def acks(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._acks)

    def other_messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._other_messages)

    def disconnect_all(self, reason: str = "refresh_requested", close_after: float = 1.0) -> None:
        """Ask every client to reconnect, as Slack does before recycling a connection.

        The old connections get no more envelopes and are closed `close_after` seconds later.
        The close matters for slack_sdk's built-in client: its reconnect waits for the old
        socket's blocking read, which otherwise only gives up after its 3 s receive timeout."""
        message = json.dumps(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-standin"}}
        )
        with self._changed:
            retiring, self._connections = self._connections, []
            self._retiring.extend(retiring)
            self._changed.notify_all()
        for connection in retiring:
            with contextlib.suppress(ConnectionClosed):  # it may be going away already
                connection.send(message)
        timer = threading.Timer(close_after, self._close, args=(retiring,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def drop_all(self) -> None:
        """Close every connection without a `disconnect` warning first (a network blip)."""
        with self._lock:
            connections = self._connections + self._retiring
        self._close(connections)

    @staticmethod
    def _close(connections: list[ServerConnection]) -> None:
        for connection in connections:
            connection.close()  # returns after the close handshake or close_timeout

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}; "
                        f"connections={len(self._connections)}, acks={list(self._acks)}, "
                        f"other messages={self._other_messages[-5:]}"
                    )
                self._changed.wait(remaining)

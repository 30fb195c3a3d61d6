"""Paces message updates: the latest state of each message wins, at most one update per
message per `min_interval`, and a final state is retried until it is delivered.

It knows nothing of Slack: the surface hands it a `send` function and opaque messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

M = TypeVar("M")
Key = tuple[str, str]  # (channel, message ts)

# A final verdict is worth many tries (Slack may be rate limiting or briefly down); past this
# the message stays on its last delivered state.
FINAL_ATTEMPTS = 30


class Coalescer(Generic[M]):
    def __init__(self, send: Callable[[str, str, M], bool], min_interval: float) -> None:
        self._send = send
        self._interval = min_interval
        self._pending: dict[Key, tuple[M, bool, Callable[[], None]]] = {}
        self._last_sent: dict[Key, float] = {}
        self._attempts: dict[Key, int] = {}
        self._shown: dict[Key, M] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="message-updates", daemon=True)
        self.updates_sent = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def submit(
        self,
        channel: str,
        ts: str,
        message: M,
        *,
        final: bool = False,
        on_delivered: Callable[[], None] = lambda: None,
    ) -> None:
        with self._cond:
            key = (channel, ts)
            previous = self._pending.get(key)
            # A final verdict is never replaced by a non-final state.
            if previous is not None and previous[1] and not final:
                return
            # Nothing new to show: an update would spend rate limit on an identical message.
            if not final and previous is None and self._shown.get(key) == message:
                return
            self._pending[key] = (message, final, on_delivered)
            self._cond.notify()

    def note_posted(self, channel: str, ts: str, message: M) -> None:
        """The message was just posted: that counts as its latest update for pacing."""
        with self._cond:
            self._last_sent[(channel, ts)] = time.monotonic()
            self._shown[(channel, ts)] = message

    def flush(self, timeout: float = 10.0) -> bool:
        """Sends what is pending now, ignoring the pace; True if nothing is left."""
        deadline = time.monotonic() + timeout
        with self._cond:
            for key in self._pending:
                self._last_sent[key] = 0.0
            self._cond.notify_all()
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return not self._pending

    def _due(self) -> tuple[Key, float]:
        now = time.monotonic()
        best: Key | None = None
        best_at = float("inf")
        for key in self._pending:
            at = self._last_sent.get(key, 0.0) + self._interval
            if at < best_at:
                best, best_at = key, at
        assert best is not None
        return best, best_at - now

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._pending:
                    self._cond.wait()
                if self._stop:
                    return
                key, wait = self._due()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                message, final, on_delivered = self._pending.pop(key)
                self._last_sent[key] = time.monotonic()
            delivered = self._send(key[0], key[1], message)
            if delivered:
                self.updates_sent += 1
                self._attempts.pop(key, None)
                with self._cond:
                    self._shown[key] = message
                    if final:
                        self._last_sent.pop(key, None)
                        self._shown.pop(key, None)
                    self._cond.notify_all()
                if final:
                    on_delivered()
                continue
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            if final and attempts < FINAL_ATTEMPTS:
                self.submit(key[0], key[1], message, final=True, on_delivered=on_delivered)
            elif not final:
                log.info("dropped a progress update after a failure; the next one replaces it")
            with self._cond:
                self._cond.notify_all()

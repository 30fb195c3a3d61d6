"""A named background loop that runs one step every `interval` seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval: float, step: Callable[[], None]) -> None:
        self.name = name
        self.interval = interval
        self._step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._step()
            except Exception as exc:  # the loop must outlive any one bad step
                log.warning("%s step failed: %s", self.name, type(exc).__name__)

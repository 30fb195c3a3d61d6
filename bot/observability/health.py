"""GET /healthz, /readyz and /metrics as a tiny WSGI app, and a background listener for it.

- /healthz: the process answers (liveness).
- /readyz: this replica can serve reads, i.e. the Kubernetes API answers. Other checks (Redis,
  the policy file) are reported in the body and in metrics but do not make it 503: a replica
  without Redis still answers every read, and taking it out of service would only hide that.
  The answer is cached for `cache_seconds` and computed by one caller at a time, so a flood of
  probes cannot turn into a flood of API-server or Redis calls.
- /metrics: the Prometheus text format.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.observability.metrics import Metrics

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
# Each check answers True (up) or False (down); an exception counts as down.
Checks = Callable[[], Mapping[str, bool]]
# Extra facts for the /readyz body (e.g. the policy's state); never decides readiness.
Details = Callable[[], Mapping[str, Any]]

DEFAULT_PORT = 8080
PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: Mapping[str, bool]
    details: Mapping[str, Any]

    def body(self, shown: Collection[str] | None = None) -> dict[str, Any]:
        """The /readyz body; with ``shown``, only those details (a port anyone can reach)."""
        details = {k: v for k, v in self.details.items() if shown is None or k in shown}
        return {"ok": self.ready, **dict(self.checks), **details}


class ReadinessProbe:
    """Runs `checks` at most once per `cache_seconds`; ready when every `required` check is
    up. Concurrent callers during a computation wait for it and share its answer."""

    def __init__(
        self,
        checks: Checks,
        *,
        required: Collection[str] = ("kubernetes",),
        details: Details | None = None,
        metrics: Metrics | None = None,
        cache_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= cache_seconds <= 2:
            raise ValueError("cache_seconds must be between 0 and 2")
        self._checks = checks
        self._required = frozenset(required)
        self._details = details
        self._metrics = metrics
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Readiness] | None = None
        self.computations = 0

    def __call__(self) -> Readiness:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            result = self._compute()
            self._cached = (self._clock(), result)
            return result

    def _compute(self) -> Readiness:
        self.computations += 1
        try:
            checks = {name: bool(up) for name, up in self._checks().items()}
        except Exception as exc:  # a broken check must read as "down", never as a 500
            log.warning("readiness check failed: %s", type(exc).__name__)
            checks = {name: False for name in self._required}
        details: Mapping[str, Any] = {}
        if self._details is not None:
            try:
                details = self._details()
            except Exception as exc:
                log.warning("readiness details failed: %s", type(exc).__name__)
        if self._metrics is not None:
            for name, up in checks.items():
                self._metrics.dependency(name, up)
        ready = all(checks.get(name, False) for name in self._required)
        return Readiness(ready=ready, checks=checks, details=details)


def _json(start: StartResponse, status: str, body: Mapping[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]


def health_routes(
    probe: ReadinessProbe, metrics: Metrics, *, shown_details: Collection[str] | None = None
) -> Callable[[dict[str, Any], StartResponse], list[bytes] | None]:
    """Answers the three paths, or returns None for any other path (for mounting the routes
    into another WSGI app, as the HTTP-mode server does). ``shown_details``: the only details
    /readyz names (the Slack port is open to anyone; what is wrong with the policy file is
    for its logs and the health port)."""

    def route(environ: dict[str, Any], start: StartResponse) -> list[bytes] | None:
        path = environ.get("PATH_INFO", "")
        if path not in PATHS:
            return None
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _json(start, "405 Method Not Allowed", {"error": "method not allowed"})
        if path == "/healthz":
            return _json(start, "200 OK", {"ok": True})
        if path == "/readyz":
            readiness = probe()
            status = "200 OK" if readiness.ready else "503 Service Unavailable"
            return _json(start, status, readiness.body(shown_details))
        data, content_type = metrics.exposition()
        start("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(data)))])
        return [data]

    return route


def health_app(probe: ReadinessProbe, metrics: Metrics) -> WsgiApp:
    route = health_routes(probe, metrics)

    def application(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        answer = route(environ, start)
        if answer is None:
            return _json(start, "404 Not Found", {"error": "not found"})
        return answer

    return application


class HealthServer:
    """The health app on waitress in a daemon thread (Socket Mode has no HTTP server of its
    own). Two threads: probes and scrapes are light, and must not compete with the bot."""

    def __init__(self, app: WsgiApp, *, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
        from waitress.server import create_server

        self._server = create_server(
            app, host=host, port=port, threads=2, ident="rollout-bot-health", channel_timeout=10
        )
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._run, name="health-listener", daemon=True)

    def _run(self) -> None:
        try:
            self._server.run()
        except OSError as exc:  # closed underneath us at shutdown
            log.debug("health listener stopped: %s", type(exc).__name__)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("serving /healthz, /readyz and /metrics on port %d", self.port)
        return self

    def close(self) -> None:
        self._server.close()


def serve_health(
    probe: ReadinessProbe, metrics: Metrics, *, host: str = "0.0.0.0", port: int = DEFAULT_PORT
) -> HealthServer:
    """Starts the health listener (ROLLOUT_BOT_HEALTH_PORT) in the background and returns it."""
    return HealthServer(health_app(probe, metrics), host=host, port=port).start()

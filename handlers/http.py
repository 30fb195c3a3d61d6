"""The HTTP surface: POST /slack/events for Bolt, GET /healthz and /readyz for probes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from handlers.app import SIGNATURE

# Slack payloads are a few kilobytes; anything far larger is not from Slack.
MAX_BODY_BYTES = 1 << 20
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def wsgi_app(app: App, readiness: Callable[[], dict[str, bool]]) -> WsgiApp:
    slack = SlackRequestHandler(app)

    def reply(start: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
        data = json.dumps(body).encode()
        start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def application(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/healthz":
            return reply(start, "200 OK", {"ok": True})
        if path == "/readyz":
            checks = readiness()
            status = "200 OK" if all(checks.values()) else "503 Service Unavailable"
            return reply(start, status, {"ok": all(checks.values()), **checks})
        if path != "/slack/events":
            return reply(start, "404 Not Found", {"error": "not found"})
        if method != "POST":
            return reply(start, "405 Method Not Allowed", {"error": "method not allowed"})
        # Bolt would raise on a malformed header and answer 500; these are simply unsigned.
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not _TIMESTAMP.fullmatch(timestamp) or not SIGNATURE.fullmatch(signature):
            return reply(start, "401 Unauthorized", {"error": "invalid request"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            return reply(start, "413 Payload Too Large", {"error": "payload too large"})
        result: Iterable[bytes] = slack(environ, start)  # type: ignore[arg-type]
        return result

    return application

"""The HTTP surface: POST /slack/events for Bolt; GET /healthz, /readyz and /metrics (the same
routes, from bot.observability.health, that the Socket Mode health listener serves).

Nothing unauthenticated reaches Bolt or the log. Before Bolt sees a request, this module
bounds its size (waitress enforces the same limit while reading), checks Slack's signature,
the one place it is checked (Bolt's own check is off: `handlers.app`), over the raw bytes,
and, only for a genuine request, that the body is UTF-8 and any `payload=` is JSON:

    no or malformed signature headers   401, body never read
    body over MAX_BODY_BYTES            413, body never read
    wrong signature or stale timestamp  401, body never logged
    signed, but not UTF-8 / not JSON    400
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from handlers.request_context import SIGNATURE

log = logging.getLogger(__name__)

# Slack payloads are a few kilobytes; anything far larger is not from Slack.
MAX_BODY_BYTES = 1 << 20
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


#: Answers /healthz, /readyz and /metrics (readiness cached, see ReadinessProbe), or None
#: for any other path.
HealthRoute = Callable[[dict[str, Any], StartResponse], list[bytes] | None]


def wsgi_app(app: App, health: HealthRoute, *, signing_secret: str) -> WsgiApp:
    slack = SlackRequestHandler(app)

    def reply(start: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
        data = json.dumps(body).encode()
        start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def application(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        answered = health(environ, start)
        if answered is not None:
            return answered
        if path != "/slack/events":
            return reply(start, "404 Not Found", {"error": "not found"})
        if method != "POST":
            return reply(start, "405 Method Not Allowed", {"error": "method not allowed"})
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
        body = environ["wsgi.input"].read(length) if length else b""
        if not _signed_by_slack(signing_secret, body, timestamp, signature):
            log.info("refused a request with an invalid or stale signature")
            return reply(start, "401 Unauthorized", {"error": "invalid request"})
        if not _well_formed(body, environ.get("CONTENT_TYPE", "")):
            log.info("refused a signed request whose body is not UTF-8 form data or JSON")
            return reply(start, "400 Bad Request", {"error": "malformed request"})
        environ["wsgi.input"] = io.BytesIO(body)
        result: Iterable[bytes] = slack(environ, start)  # type: ignore[arg-type]
        return result

    return application


# Slack's rule: a signature is good while its timestamp is within 5 minutes of now.
SIGNATURE_MAX_SKEW_SECONDS = 300


def _signed_by_slack(secret: str, body: bytes, timestamp: str, signature: str) -> bool:
    """Slack's v0 signature over the raw bytes (whatever their encoding) and a fresh timestamp."""
    if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_SKEW_SECONDS:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def _well_formed(body: bytes, content_type: str) -> bool:
    """What Bolt will parse, parsed by its rules first (JSON by content type or a leading
    brace, else form data whose `payload` field, when there is one, is JSON), so a signed but
    malformed body is a 400 here rather than an error inside Bolt."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    try:
        if content_type.startswith("application/json") or text.startswith("{"):
            json.loads(text)
        elif "payload" in text:  # a slash command's form fields need no check
            payload = dict(parse_qsl(text, keep_blank_values=True)).get("payload")
            if payload is not None:
                json.loads(payload)
    except ValueError:
        return False
    return True

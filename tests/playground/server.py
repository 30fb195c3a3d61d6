"""The playground's web server: the page, its assets, and a small JSON API.

    GET  /                      the page
    GET  /static/NAME           its stylesheet and script (static/, beside this module)

Every /api/ call carries this run's token in `X-Playground-Token` (else 401): the address the
playground prints ends in `#token=…`, and the page sends it; another process on this machine
cannot act as the page's users.

    GET  /api/bootstrap         users, channels, the guided tour
    GET  /api/state?channel=C&user=U&since=V
                                the channel as the user sees it; waits up to ~10 s for a change
                                when `since` is the current version (long polling)
    POST /api/command {user, channel, text}
                                a signed slash command to the bot, as Slack would send it
    POST /api/action  {user, channel, ts, action_id, block_id, value, state}
                                a signed block_actions request, as Slack would send it

Nothing here reaches into the bot: it only sees the requests Slack would send.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.devkit.slack.signed_requests import send_block_action, send_slash_command
from tests.devkit.slack.web_api import SlackStandin
from tests.playground import demo
from tests.playground.timeline import SLACKBOT_AUTHOR, Timeline

log = logging.getLogger("rollout-tests.playground")

LONG_POLL_SECONDS = 10.0
POLL_STEP_SECONDS = 0.1
MAX_BODY = 64 * 1024
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class BotEndpoint:
    events_url: str
    signing_secret: str


class BadRequest(Exception):
    pass


class Playground:
    """The API behind the page; separate from HTTP plumbing so it can be tested directly."""

    def __init__(self, standin: SlackStandin, bot: BotEndpoint) -> None:
        self.standin = standin
        self.bot = bot
        self.users = {u.id: u for u in demo.USERS}
        self.channels = {c.id: c for c in demo.CHANNELS}
        self.timeline = Timeline(standin, demo.user_names())
        # Per start: the page forgets which tour steps it ran when the world was reset.
        self.run_id = secrets.token_hex(4)
        #: The page's key to the API for this run; only the printed address carries it.
        self.token = secrets.token_urlsafe(24)

    def admits(self, token: str) -> bool:
        return secrets.compare_digest(token.encode(), self.token.encode())

    def _user(self, value: Any) -> str:
        if value not in self.users:
            raise BadRequest("unknown user")
        return str(value)

    def _channel(self, value: Any) -> str:
        if value not in self.channels:
            raise BadRequest("unknown channel")
        return str(value)

    def state(self, channel: str, user: str, since: int | None) -> dict[str, Any]:
        channel, user = self._channel(channel), self._user(user)
        deadline = time.monotonic() + LONG_POLL_SECONDS
        version = self.timeline.version()
        while since == version and time.monotonic() < deadline:
            time.sleep(POLL_STEP_SECONDS)
            version = self.timeline.version()
        return {
            "version": version,
            "channel": channel,
            "user": user,
            "items": self.timeline.view(channel, user),
            "counts": self.timeline.counts(list(self.channels), user),
        }

    def command(self, body: Mapping[str, Any]) -> dict[str, Any]:
        user, channel = self._user(body.get("user")), self._channel(body.get("channel"))
        text = str(body.get("text") or "").strip()
        if not text:
            raise BadRequest("empty command")
        command, _, rest = text.partition(" ")
        if command != "/rollout":
            self.timeline.note(
                channel,
                SLACKBOT_AUTHOR,
                f"`{command}` is not a valid command here. Try `/rollout help`.",
                visible_to=user,
            )
            return {"ok": False}
        self.timeline.note(channel, user, text, visible_to=user, kind="command")
        tag = self.timeline.new_tag("cmd", user, channel)
        response = send_slash_command(
            self.bot.events_url,
            self.bot.signing_secret,
            rest.strip(),
            user_id=user,
            user_name=self.users[user].name,
            channel_id=channel,
            response_url=self.standin.response_url(tag),
        )
        self._ack_reply(response.status, response.body, user, channel, "/rollout")
        return {"ok": response.status == 200}

    def action(self, body: Mapping[str, Any]) -> dict[str, Any]:
        user, channel = self._user(body.get("user")), self._channel(body.get("channel"))
        action_id = str(body.get("action_id") or "")
        if not action_id:
            raise BadRequest("no action_id")
        ts = str(body.get("ts") or "")
        message = next((m for m in self.standin.messages(channel) if m.ts == ts), None)
        state = body.get("state") if isinstance(body.get("state"), dict) else {}
        tag = self.timeline.new_tag("act", user, channel)
        response = send_block_action(
            self.bot.events_url,
            self.bot.signing_secret,
            action_id,
            str(body.get("value") or ""),
            user,
            channel,
            ts,
            response_url=self.standin.response_url(tag, channel, ts if message else None),
            block_id=str(body.get("block_id") or "") or None,
            message=message.as_api_dict() if message else None,
            user_name=self.users[user].name,
            state=state,
        )
        self._ack_reply(response.status, response.body, user, channel, "that button")
        return {"ok": response.status == 200}

    def _ack_reply(self, status: int, body: str, user: str, channel: str, what: str) -> None:
        """What Slack shows for the HTTP answer itself: an ack's text, or a failure."""
        if status != 200:
            self.timeline.note(
                channel,
                SLACKBOT_AUTHOR,
                f"{what} failed with the error `http_status_{status}`",
                visible_to=user,
            )
            return
        if not body.strip():
            return
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"text": body}
        if not isinstance(payload, dict):
            payload = {"text": str(payload)}
        public = payload.get("response_type") == "in_channel"
        blocks = payload.get("blocks")
        self.timeline.note(
            channel,
            "rollout-bot",
            str(payload.get("text") or ""),
            visible_to=None if public else user,
            blocks=blocks if isinstance(blocks, list) else None,
        )


class _Handler(BaseHTTPRequestHandler):
    server: PlaygroundHTTPServer
    protocol_version = "HTTP/1.1"

    def _trusted(self) -> bool:
        """Only the page itself: a loopback Host (no DNS rebinding) and, for POSTs, a JSON
        body, which other sites cannot send without a CORS preflight we never grant."""
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if host not in ("127.0.0.1", "localhost", "::1"):
            self.close_connection = True
            self._json({"error": "forbidden host"}, 403)
            return False
        if self.command == "POST" and not (self.headers.get("Content-Type") or "").startswith(
            "application/json"
        ):
            self.close_connection = True
            self._json({"error": "expected application/json"}, 415)
            return False
        return True

    def _has_token(self, path: str) -> bool:
        """An /api/ call from the page: it carries this run's token."""
        if not path.startswith("/api/"):
            return True
        if self.server.playground.admits(self.headers.get("X-Playground-Token") or ""):
            return True
        self._json(
            {"error": "open the address the playground printed: it carries this run's key"}, 401
        )
        return False

    def do_GET(self) -> None:
        if not self._trusted():
            return
        url = urlsplit(self.path)
        if not self._has_token(url.path):
            return
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path in ("/", "/index.html"):
                self._static("index.html")
            elif url.path.startswith("/static/"):
                self._static(url.path.removeprefix("/static/"))
            elif url.path == "/api/bootstrap":
                self._json({**demo.bootstrap(), "run": self.server.playground.run_id})
            elif url.path == "/api/state":
                since = query.get("since")
                self._json(
                    self.server.playground.state(
                        query.get("channel", ""),
                        query.get("user", ""),
                        int(since) if since and since.isdigit() else None,
                    )
                )
            elif url.path == "/healthz":
                self._json({"ok": True})
            else:
                self._json({"error": "not found"}, 404)
        except BadRequest as exc:
            self._json({"error": str(exc)}, 400)

    def do_POST(self) -> None:
        if not self._trusted():
            return
        url = urlsplit(self.path)
        if not self._has_token(url.path):
            self.close_connection = True  # the body was not read
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._json({"error": "too large"}, 413)
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise BadRequest("expected a JSON object")
            if url.path == "/api/command":
                self._json(self.server.playground.command(body))
            elif url.path == "/api/action":
                self._json(self.server.playground.action(body))
            else:
                self._json({"error": "not found"}, 404)
        except (BadRequest, ValueError) as exc:
            self._json({"error": str(exc) or "bad request"}, 400)
        except OSError as exc:
            log.warning("the bot did not answer: %s", type(exc).__name__)
            self._json({"error": "the bot did not answer"}, 502)

    def _static(self, name: str) -> None:
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
            self._json({"error": "not found"}, 404)
            return
        resource = resources.files("tests.playground").joinpath("static", name)
        if not resource.is_file():
            self._json({"error": "not found"}, 404)
            return
        self._send(200, resource.read_bytes(), STATIC_TYPES[suffix], cache=False)

    def _json(self, payload: Any, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal shows the URL and what matters, not every poll


class PlaygroundHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], playground: Playground) -> None:
        super().__init__(address, _Handler)
        self.playground = playground
        self._thread: threading.Thread | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A closed tab ends its long poll mid-answer: normal, not worth a traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            log.warning("request failed: %s", type(error).__name__)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def page_url(self) -> str:
        """The address to open: the page, with this run's token in its fragment."""
        return f"{self.url}/#token={self.playground.token}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.2,), name="playground-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever for a loop never started
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()

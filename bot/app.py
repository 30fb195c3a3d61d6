"""build_app: the Bolt App with its handlers, plus the HTTP surface and background workers."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import redis
from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.deps import Deps, redis_client
from bot.store.errors import StoreError
from bot.store.keys import Keys
from handlers.replies import Replier

log = logging.getLogger(__name__)

# Slack payloads are a few kilobytes; anything far larger is not from Slack.
MAX_BODY_BYTES = 1 << 20
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
# Slack rejects timestamps older than 5 minutes; remembering signatures a little longer covers
# the whole window in which a replay could still verify.
REPLAY_WINDOW_SECONDS = 360
REPLAY_CHECK_TIMEOUT = 0.25

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def build_app(deps: Deps) -> App:
    from handlers import approvals, commands, progress

    settings = deps.settings
    secret = settings.slack_signing_secret
    app = App(
        client=deps.slack,
        signing_secret=secret.get_secret_value() if secret else "unused-in-socket-mode",
        # auth.test at start-up is done by `serve` with a clear message; Bolt's own check would
        # raise a bare exception.
        token_verification_enabled=False,
        # Listeners only parse, ack and hand off to `deps.background`, but a burst of commands
        # still needs a thread each until its ack; Bolt's default of 5 answers the 6th with 404.
        listener_executor=ThreadPoolExecutor(
            max_workers=settings.listener_threads, thread_name_prefix="listener"
        ),
    )
    app.use(replay_guard(deps))
    runner = commands.register(app, deps)
    approvals.register(app, deps)
    progress.register(app, deps, runner)
    return app


def replay_guard(deps: Deps) -> Callable[..., BoltResponse]:
    """Drops an exact replay of a signed request (same signature) inside Slack's 5-minute
    signing window: a captured request must not run a command twice. Runs after Bolt has
    verified the signature, so only genuine requests are remembered."""
    keys = Keys(deps.settings.redis_prefix)
    # This runs before the ack: a hung Redis may cost it a quarter second, not the 3 s budget.
    store = redis_client(deps.settings, timeout=REPLAY_CHECK_TIMEOUT)

    def guard(req: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse:
        signature = (req.headers.get("x-slack-signature") or [""])[0]
        if req.mode != "http" or not _SIGNATURE.fullmatch(signature):
            return next()
        try:
            first = store.set(
                keys.event_seen("sig" + signature[3:43]), "1", nx=True, ex=REPLAY_WINDOW_SECONDS
            )
        except redis.RedisError:
            # Cannot tell; serve it. Every mutation needs Redis for its audit entry anyway.
            first = True
        if not first:
            log.warning("ignored a replayed request")
            return BoltResponse(status=200, body="")
        return next()

    return guard


def readiness(deps: Deps) -> dict[str, bool]:
    try:
        redis_ok = bool(deps.redis.ping())
    except Exception:  # any failure means "not ready"; the reason is not the probe's business
        redis_ok = False
    return {"redis": redis_ok, "kubernetes": deps.cluster.ready()}


def wsgi_app(app: App, deps: Deps) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """POST /slack/events for Bolt, GET /healthz and /readyz for probes."""
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
            checks = readiness(deps)
            status = "200 OK" if all(checks.values()) else "503 Service Unavailable"
            return reply(start, status, {"ok": all(checks.values()), **checks})
        if path != "/slack/events":
            return reply(start, "404 Not Found", {"error": "not found"})
        if method != "POST":
            return reply(start, "405 Method Not Allowed", {"error": "method not allowed"})
        # Bolt would raise on a malformed header and answer 500; these are simply unsigned.
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
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


class ApprovalSweeper:
    """Expires overdue approval requests and redraws their cards, every `interval` seconds."""

    def __init__(self, deps: Deps, interval: float = 5.0) -> None:
        self.deps = deps
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="approval-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        rounds = 0
        while not self._stop.wait(self.interval):
            self.sweep()
            rounds += 1
            # Retention is cheap to check but need not run often: about every ten minutes.
            if rounds % max(1, int(600 / self.interval)) == 0:
                self.trim_audit()

    def trim_audit(self) -> None:
        settings = self.deps.settings
        if settings.audit_max_entries is None and settings.audit_max_age_days is None:
            return
        max_age = (
            timedelta(days=settings.audit_max_age_days) if settings.audit_max_age_days else None
        )
        try:
            self.deps.audit.trim(max_entries=settings.audit_max_entries, max_age=max_age)
        except Exception as exc:  # a broken chain is refused by trim; verify names it
            log.warning("audit retention skipped: %s", type(exc).__name__)

    def sweep(self) -> None:
        from handlers.approvals import after_decision, redraw

        try:
            expired = self.deps.approval_flow.expire_due()
            resumed = self.deps.approval_flow.resume_stalled(
                timedelta(seconds=self.deps.settings.approval_resume_after_seconds)
            )
        except StoreError:
            return  # Redis is down; the next sweep catches up
        except Exception as exc:  # the sweeper must outlive any one bad request
            log.warning("approval sweep failed: %s", type(exc).__name__)
            return
        for decision in resumed:
            request = decision.outcome.request
            if request is not None:
                after_decision(
                    self.deps, decision, "", Replier(None, self.deps.slack, request.channel)
                )
        for request in expired:
            redraw(Replier(None, self.deps.slack, request.channel), request, self.deps.approvals)

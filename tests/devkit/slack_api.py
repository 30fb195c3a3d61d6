"""A local stand-in for the Slack Web API and for `response_url` webhooks, for tests.

It is a real HTTP server on 127.0.0.1, so the bot's own `slack_sdk` clients talk to it exactly as
they would talk to Slack: point them at `standin.base_url` (the bot reads it from SLACK_API_URL).

    with SlackStandin() as slack:
        slack.add_user("U0ALICE", "alice")
        client = WebClient(base_url=slack.base_url, token=slack.token)
        ...
        call = slack.wait_for("chat.update", lambda c: "Approved" in c.params.get("text", ""))

What it models:
- bearer-token auth (`not_authed` / `invalid_auth`), JSON and form-encoded bodies;
- stored messages per channel, so `chat.update` of an unknown ts fails like Slack does;
- Block Kit limits (§4), answered as `invalid_blocks` with json-pointer details;
- response_url's 5-use limit (§2);
- 429 + Retry-After and 5xx answers on demand, delays, and an optional per-method rate limiter.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

DEFAULT_TOKEN = "xoxb-test-token"
DEFAULT_APP_TOKEN = "xapp-test"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T0TEAM"
TEAM_NAME = "test"

RESPONSE_URL_MAX_USES = 5
# Slack truncates (and we reject) top-level `text` above this many characters.
MAX_MESSAGE_TEXT = 40_000
MAX_BLOCKS_PER_MESSAGE = 50
MAX_IDENTIFIER = 255
ALLOWED_BLOCK_TYPES = frozenset(
    {"section", "header", "context", "actions", "divider", "rich_text", "markdown"}
    | {"image", "input"}
)
# Fields whose value is JSON; in form-encoded bodies they arrive as JSON strings.
JSON_VALUED_FIELDS = ("blocks", "attachments", "metadata")
# Real ts values look like "1700000000.000100"; we count up from there in steps of 100 µs.
FIRST_TS_MICROS = 1_700_000_000_000_000

Params = dict[str, Any]


@dataclass(frozen=True)
class RecordedCall:
    """One request the stand-in received, with what it answered."""

    method: str  # Web API method name, or "response_url"
    params: Params  # query + body; JSON-valued form fields are decoded; "token" is removed
    headers: dict[str, str]  # lower-cased header names
    time: float  # time.time() when answered
    injected: bool = False  # answered by fail_next() or the rate limiter, not by the method
    status: int = 200
    response: Any = None  # the JSON answered (or the text, for response_url)

    @property
    def ok(self) -> bool:
        if self.method == "response_url":
            return self.status == 200
        return (
            self.status == 200 and isinstance(self.response, dict) and bool(self.response.get("ok"))
        )


@dataclass
class PostedMessage:
    """Current state of a message posted through chat.postMessage (after any updates)."""

    channel: str
    ts: str
    text: str
    blocks: list[Any]
    thread_ts: str | None = None
    # Every state the message has had, oldest first: {"text": ..., "blocks": ...}.
    versions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def update_count(self) -> int:
        return len(self.versions) - 1

    def as_api_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": self.ts,
            "text": self.text,
        }
        if self.blocks:
            message["blocks"] = self.blocks
        if self.thread_ts:
            message["thread_ts"] = self.thread_ts
        return message

    def _remember_version(self) -> None:
        self.versions.append({"text": self.text, "blocks": copy.deepcopy(self.blocks)})


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    remaining: int


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    payload: Any  # what gets recorded as RecordedCall.response

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> _Reply:
        all_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode(), all_headers, payload)

    @classmethod
    def text(cls, text: str, status: int = 200) -> _Reply:
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"}, text)


def _error(code: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": code, **extra}


# ---------------------------------------------------------------------------------------------
# Block Kit checks
# ---------------------------------------------------------------------------------------------


class _BlockKitChecker:
    """Collects Slack-style error strings ("... [json-pointer:/blocks/N/...]") for one message."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._block_ids: set[str] = set()
        self._action_ids: set[str] = set()  # spec asks for uniqueness across the whole message

    def check(self, blocks: list[Any]) -> list[str]:
        self._items(blocks, MAX_BLOCKS_PER_MESSAGE, "/blocks")
        for index, block in enumerate(blocks):
            self._block(block, f"/blocks/{index}")
        return self.errors

    def _fail(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def _max_len(self, value: Any, limit: int, pointer: str) -> None:
        """Check a plain string, or a text object's `text`, against Slack's length limit."""
        if isinstance(value, dict):
            value, pointer = value.get("text"), f"{pointer}/text"
        if isinstance(value, str) and len(value) > limit:
            self._fail(f"must be less than {limit + 1} characters", pointer)

    def _items(self, items: Any, limit: int, pointer: str) -> list[Any]:
        if items is None:
            return []
        if not isinstance(items, list):
            self._fail("must be an array", pointer)
            return []
        if len(items) > limit:
            self._fail(f"no more than {limit} items allowed", pointer)
        return items

    def _unique_id(self, owner: dict[str, Any], key: str, seen: set[str], pointer: str) -> None:
        value = owner.get(key)
        if value is None:
            return
        if not isinstance(value, str):
            self._fail("must be a string", f"{pointer}/{key}")
            return
        self._max_len(value, MAX_IDENTIFIER, f"{pointer}/{key}")
        if value in seen:
            self._fail(f"{key} '{value}' already exists", f"{pointer}/{key}")
        seen.add(value)

    def _block(self, block: Any, pointer: str) -> None:
        if not isinstance(block, dict):
            self._fail("must be an object", pointer)
            return
        block_type = block.get("type")
        if block_type not in ALLOWED_BLOCK_TYPES:
            self._fail(f"unsupported block type: {block_type!r}", f"{pointer}/type")
            return
        self._unique_id(block, "block_id", self._block_ids, pointer)
        if block_type == "section":
            if block.get("text") is None and block.get("fields") is None:
                self._fail("must provide text or fields", pointer)
            self._max_len(block.get("text"), 3000, f"{pointer}/text")
            fields = self._items(block.get("fields"), 10, f"{pointer}/fields")
            for index, field_text in enumerate(fields):
                self._max_len(field_text, 2000, f"{pointer}/fields/{index}")
            if isinstance(block.get("accessory"), dict):
                self._element(block["accessory"], f"{pointer}/accessory")
        elif block_type == "header":
            text = block.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                self._fail("must be a plain_text object", f"{pointer}/text")
            self._max_len(text, 150, f"{pointer}/text")
        elif block_type == "context":
            self._items(block.get("elements"), 10, f"{pointer}/elements")
        elif block_type == "actions":
            elements = self._items(block.get("elements"), 25, f"{pointer}/elements")
            for index, element in enumerate(elements):
                self._element(element, f"{pointer}/elements/{index}")

    def _element(self, element: Any, pointer: str) -> None:
        if not isinstance(element, dict):
            self._fail("must be an object", pointer)
            return
        self._unique_id(element, "action_id", self._action_ids, pointer)
        if element.get("type") == "button":
            self._max_len(element.get("text"), 75, f"{pointer}/text")
            self._max_len(element.get("value"), 2000, f"{pointer}/value")
            self._max_len(element.get("url"), 3000, f"{pointer}/url")
        confirm = element.get("confirm")
        if isinstance(confirm, dict):
            for key, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):
                self._max_len(confirm.get(key), limit, f"{pointer}/confirm/{key}")


def block_kit_errors(blocks: list[Any]) -> list[str]:
    """Slack-style errors for a message's blocks; empty when Slack would accept them."""
    return _BlockKitChecker().check(blocks)


def check_message(params: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """How Slack would reject this message body, as (error code, details), or None if accepted."""
    text, blocks = params.get("text"), params.get("blocks")
    if blocks is not None and not isinstance(blocks, list):
        return "invalid_blocks_format", ["blocks must be a JSON array [json-pointer:/blocks]"]
    if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT:
        return "msg_too_long", []
    problems = block_kit_errors(blocks or [])
    if problems:
        return "invalid_blocks", problems
    if not text and not blocks and not params.get("attachments"):
        return "no_text", []
    return None


def _rejection(problem: tuple[str, list[str]]) -> dict[str, Any]:
    code, details = problem
    if not details:
        return _error(code)
    messages = [f"[ERROR] {detail}" for detail in details]
    return _error(code, errors=details, response_metadata={"messages": messages})


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------


def _parse_params(query: str, content_type: str, body: bytes) -> Params:
    """Merge query-string and body params; raises ValueError on a malformed JSON body."""
    params: Params = {
        k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()
    }
    if body and "json" in content_type:
        decoded = json.loads(body)
        params.update(decoded if isinstance(decoded, dict) else {"_body": decoded})
    elif body and "x-www-form-urlencoded" in content_type:
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        params.update({k: v[-1] for k, v in form.items()})
    elif body:
        params["_raw_body"] = body.decode("utf-8", "replace")
    for name in JSON_VALUED_FIELDS:
        value = params.get(name)
        if isinstance(value, str):
            # Undecodable values stay strings, so the check answers invalid_blocks_format.
            with contextlib.suppress(ValueError):
                params[name] = json.loads(value)
    return params


class _RequestHandler(BaseHTTPRequestHandler):
    server: _StandinHTTPServer

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.standin._handle_http(self.path, headers, body)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output readable; every call is recorded anyway


class _StandinHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not block interpreter exit

    def __init__(self, standin: SlackStandin) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.standin = standin


# ---------------------------------------------------------------------------------------------
# The stand-in
# ---------------------------------------------------------------------------------------------


class SlackStandin:
    """Slack Web API + response_url stand-in on 127.0.0.1 (see the module docstring)."""

    def __init__(self, token: str = DEFAULT_TOKEN, app_token: str = DEFAULT_APP_TOKEN) -> None:
        self.token = token
        self.app_token = app_token  # the xapp- token apps.connections.open expects
        self.socket_mode_url: str | None = None  # set to a SocketModeStandin's url
        # Re-entrant so a wait_for() predicate may call messages() and _record() can nest.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified on every recorded call
        self._calls: list[RecordedCall] = []
        self._messages: dict[str, list[PostedMessage]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._usergroup_handles: dict[str, str] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._missing_channels: set[str] = set()
        self._faults: dict[str, deque[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._rate_limits: dict[str, float] = {}
        self._accepted_at: dict[str, deque[float]] = {}
        self._response_url_uses: dict[str, int] = {}
        self._response_url_targets: dict[str, tuple[str, str]] = {}
        self._ts_counter = 0
        self._server: _StandinHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[Params], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "usergroups.users.list": self._usergroups_users_list,
            "usergroups.list": self._usergroups_list,
            "conversations.info": self._conversations_info,
            "apps.connections.open": self._apps_connections_open,
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is None:
            self._server = _StandinHTTPServer(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="slack-standin", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SlackStandin is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """WebClient base_url format, trailing slash included: the SDK url-joins the method."""
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(
        self, tag: str, channel: str | None = None, message_ts: str | None = None
    ) -> str:
        """A response_url for a payload. Bound to (channel, message_ts), `replace_original` and
        `delete_original` posts change that stored message, as Slack does for the source message."""
        if channel is not None and message_ts is not None:
            with self._lock:
                self._response_url_targets[tag] = (channel, message_ts)
        return f"http://127.0.0.1:{self.port}/response/{urllib.parse.quote(tag, safe='')}"

    # -- configuration --------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str,
        real_name: str | None = None,
        tz: str = "Europe/London",
        is_bot: bool = False,
        deleted: bool = False,
        email: str | None = None,
        guest: bool | str = False,
        *,
        team_id: str = TEAM_ID,
    ) -> None:
        """``guest``: True or "multi-channel" (Slack's `is_restricted`), "single-channel" (and
        `is_ultra_restricted`); ``team_id``: another workspace's, for a Slack Connect user."""
        offset = ZoneInfo(tz).utcoffset(datetime.now(UTC).replace(tzinfo=None))
        real = real_name or name
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": team_id,
            "name": name,
            "real_name": real,
            "deleted": deleted,
            "is_bot": is_bot,
            "tz": tz,
            "tz_offset": int(offset.total_seconds()) if offset else 0,
            "profile": {"real_name": real, "display_name": name},
            "is_restricted": bool(guest),
            "is_ultra_restricted": guest == "single-channel",
        }
        if email is not None:
            user["profile"]["email"] = email
        with self._lock:
            self._users[user_id] = user

    def set_usergroup(self, group_id: str, user_ids: list[str], handle: str | None = None) -> None:
        with self._lock:
            self._usergroups[group_id] = list(user_ids)
            self._usergroup_handles[group_id] = handle or group_id.lower()

    def add_channel(
        self, channel_id: str, name: str, is_private: bool = False, is_member: bool = True
    ) -> None:
        with self._lock:
            self._missing_channels.discard(channel_id)
            self._channels[channel_id] = {
                "id": channel_id,
                "name": name,
                "is_channel": True,
                "is_private": is_private,
                "is_member": is_member,
            }

    def mark_channel_missing(self, channel_id: str) -> None:
        """Make the channel answer channel_not_found (e.g. a private channel the bot isn't in)."""
        with self._lock:
            self._channels.pop(channel_id, None)
            self._missing_channels.add(channel_id)

    # -- fault injection ------------------------------------------------------------------------

    def fail_next(
        self, method: str, status: int = 429, retry_after: int = 1, count: int = 1
    ) -> None:
        """Answer the next `count` calls of `method` (or "response_url") with `status`.
        429 carries Retry-After and {"ok": false, "error": "ratelimited"}, as Slack sends."""
        fault = _Fault(status, retry_after if status == 429 else None, count)
        with self._lock:
            self._faults.setdefault(method, deque()).append(fault)

    def set_delay(self, method: str, seconds: float) -> None:
        with self._lock:
            self._delays[method] = seconds

    def rate_limit(self, method: str, per_second: float | None) -> None:
        """Answer 429 once `method` exceeds `per_second` (sliding window); None removes it."""
        with self._lock:
            if per_second is None:
                self._rate_limits.pop(method, None)
            else:
                self._rate_limits[method] = per_second
            self._accepted_at.pop(method, None)

    # -- inspection -----------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """Recorded calls in arrival order, injected failures included."""
        with self._lock:
            return [call for call in self._calls if method is None or call.method == method]

    def clear(self) -> None:
        """Forget recorded calls (stored messages, users and faults are kept)."""
        with self._lock:
            self._calls.clear()

    def messages(self, channel: str) -> list[PostedMessage]:
        """Copies of the channel's messages in posting order, in their current (updated) state."""
        with self._lock:
            return copy.deepcopy(self._messages.get(channel, []))

    def wait_for(
        self,
        method: str,
        predicate: Callable[[RecordedCall], bool] | None = None,
        timeout: float = 10.0,
        *,
        include_injected: bool = False,
    ) -> RecordedCall:
        """First recorded call (past or future) of `method` matching `predicate`.

        Injected failures are skipped unless `include_injected`, because tests usually wait
        for the call that got through. Raises AssertionError listing what did arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for call in self._calls:
                    if call.method != method or (call.injected and not include_injected):
                        continue
                    if predicate is None or predicate(call):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._summary(f"no matching {method} call in {timeout}s"))
                self._changed.wait(remaining)

    def _summary(self, headline: str, limit: int = 30) -> str:
        lines = [f"{headline}; {len(self._calls)} call(s) recorded:"]
        for call in self._calls[-limit:]:
            flags = f" status={call.status}" + (" injected" if call.injected else "")
            params = json.dumps(call.params, default=str)
            params = params if len(params) <= 300 else params[:300] + "..."
            answer = json.dumps(call.response, default=str)[:120]
            lines.append(f"  {call.method}{flags} params={params} -> {answer}")
        return "\n".join(lines)

    # -- request handling (server threads) ------------------------------------------------------

    def _handle_http(self, raw_path: str, headers: dict[str, str], body: bytes) -> _Reply:
        url = urllib.parse.urlsplit(raw_path)
        if url.path.startswith("/api/"):
            kind, name = "api", url.path.removeprefix("/api/")
        elif url.path.startswith("/response/"):
            kind, name = "response_url", urllib.parse.unquote(url.path.removeprefix("/response/"))
        else:
            return _Reply.text("not found", 404)
        method = name if kind == "api" else "response_url"
        try:
            params = _parse_params(url.query, headers.get("content-type", ""), body)
        except ValueError:
            params = {"_raw_body": body.decode("utf-8", "replace")}
            reply = _Reply.json(_error("invalid_json"), 200 if kind == "api" else 400)
            return self._record(method, params, headers, reply)
        if kind == "response_url":
            params["_tag"] = name

        delay = self._delays.get(method, 0.0)
        if delay:
            time.sleep(delay)  # outside the lock: other calls keep flowing meanwhile
        with self._lock:
            injected = self._injected_failure(method)
            if injected is not None:
                return self._record(method, params, headers, injected, injected=True)
            if kind == "response_url":
                reply = self._response_url_post(name, params)
            else:
                reply = _Reply.json(self._api_call(method, params, headers))
            return self._record(method, params, headers, reply)

    def _record(
        self,
        method: str,
        params: Params,
        headers: dict[str, str],
        reply: _Reply,
        injected: bool = False,
    ) -> _Reply:
        call = RecordedCall(
            method, params, headers, time.time(), injected, reply.status, reply.payload
        )
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()
        return reply

    def _injected_failure(self, method: str) -> _Reply | None:
        """A queued fail_next() fault or a rate-limiter 429 for this call, if any (lock held)."""
        queue = self._faults.get(method)
        if queue:
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
            if fault.status == 429:
                return _ratelimited(fault.retry_after or 1)
            return _Reply.json(_error("internal_error"), fault.status)
        per_second = self._rate_limits.get(method)
        if per_second is not None:
            # Slack allows short bursts, so count calls in a window rather than spacing them.
            window = max(1.0, 1.0 / per_second)
            capacity = max(1, int(per_second * window))
            accepted = self._accepted_at.setdefault(method, deque())
            now = time.monotonic()
            while accepted and now - accepted[0] >= window:
                accepted.popleft()
            if len(accepted) >= capacity:
                return _ratelimited(math.ceil(window - (now - accepted[0])))
            accepted.append(now)
        return None

    def _api_call(self, method: str, params: Params, headers: dict[str, str]) -> dict[str, Any]:
        authorization = headers.get("authorization", "")
        bearer = authorization.removeprefix("Bearer ").strip() if authorization else ""
        form_token = params.pop("token", None)  # never keep secrets in recorded params
        token = bearer or form_token
        if not token:
            return _error("not_authed")
        if method == "apps.connections.open":
            if token != self.app_token:
                error = "not_allowed_token_type" if token == self.token else "invalid_auth"
                return _error(error)
        elif token != self.token:
            return _error("invalid_auth")
        handler = self._methods.get(method)
        return handler(params) if handler else _error("unknown_method")

    # -- Web API methods (lock held) ------------------------------------------------------------

    def _auth_test(self, params: Params) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM_NAME}.slack.com/",
            "team": TEAM_NAME,
            "user": "rollout-bot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _next_ts(self) -> str:
        self._ts_counter += 1
        micros = FIRST_TS_MICROS + self._ts_counter * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _chat_post_message(self, params: Params) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel or channel in self._missing_channels:
            return _error("channel_not_found")
        problem = check_message(params)
        if problem:
            return _rejection(problem)
        message = PostedMessage(
            channel=channel,
            ts=self._next_ts(),
            text=params.get("text") or "",
            blocks=params.get("blocks") or [],
            thread_ts=params.get("thread_ts") or None,
        )
        message._remember_version()
        self._messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.as_api_dict()}

    def _find_message(self, channel: str | None, ts: str | None) -> PostedMessage | None:
        return next((m for m in self._messages.get(channel or "", []) if m.ts == ts), None)

    def _chat_update(self, params: Params) -> dict[str, Any]:
        channel = params.get("channel")
        if channel in self._missing_channels:
            return _error("channel_not_found")
        message = self._find_message(channel, params.get("ts"))
        if message is None:
            return _error("message_not_found")
        problem = check_message(params)
        if problem:
            return _rejection(problem)
        self._apply_update(message, params)
        return {
            "ok": True,
            "channel": message.channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.as_api_dict(),
        }

    @staticmethod
    def _apply_update(message: PostedMessage, params: Params) -> None:
        # chat.update keeps the previous blocks when the call leaves them out.
        if params.get("text") is not None:
            message.text = params["text"]
        if params.get("blocks") is not None:
            message.blocks = params["blocks"]
        message._remember_version()

    def _chat_post_ephemeral(self, params: Params) -> dict[str, Any]:
        if not params.get("channel") or params["channel"] in self._missing_channels:
            return _error("channel_not_found")
        if not params.get("user"):
            return _error("user_not_found")
        problem = check_message(params)
        if problem:
            return _rejection(problem)
        return {"ok": True, "message_ts": self._next_ts()}

    def _users_info(self, params: Params) -> dict[str, Any]:
        user = self._users.get(params.get("user", ""))
        return {"ok": True, "user": copy.deepcopy(user)} if user else _error("user_not_found")

    def _usergroups_users_list(self, params: Params) -> dict[str, Any]:
        members = self._usergroups.get(params.get("usergroup", ""))
        if members is None:
            return _error("no_such_subteam")
        return {"ok": True, "users": list(members)}

    def _users_list(self, params: Params) -> dict[str, Any]:
        members = [copy.deepcopy(user) for user in self._users.values()]
        return {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}

    def _usergroups_list(self, params: Params) -> dict[str, Any]:
        with_users = str(params.get("include_users", "")).lower() in ("1", "true")
        groups = []
        for group_id, members in self._usergroups.items():
            group: dict[str, Any] = {
                "id": group_id,
                "team_id": TEAM_ID,
                "handle": self._usergroup_handles.get(group_id, group_id.lower()),
                "date_delete": 0,
                "user_count": len(members),
            }
            if with_users:
                group["users"] = list(members)
            groups.append(group)
        return {"ok": True, "usergroups": groups}

    def _conversations_info(self, params: Params) -> dict[str, Any]:
        channel_id = params.get("channel", "")
        if not channel_id or channel_id in self._missing_channels:
            return _error("channel_not_found")
        default = {"id": channel_id, "name": channel_id.lower(), "is_channel": True}
        default |= {"is_private": False, "is_member": True}
        return {"ok": True, "channel": copy.deepcopy(self._channels.get(channel_id, default))}

    def _apps_connections_open(self, params: Params) -> dict[str, Any]:
        if self.socket_mode_url is None:
            return _error("socket_mode_not_enabled")
        return {"ok": True, "url": self.socket_mode_url}

    # -- response_url (lock held) ---------------------------------------------------------------

    def _response_url_post(self, tag: str, params: Params) -> _Reply:
        if self._response_url_uses.get(tag, 0) >= RESPONSE_URL_MAX_USES:
            return _Reply.text("used_url", 404)
        deleting = params.get("delete_original") in (True, "true")
        problem = None if deleting else check_message(params)
        if problem:
            return _Reply.json(_rejection(problem), 400)
        self._response_url_uses[tag] = self._response_url_uses.get(tag, 0) + 1
        target = self._response_url_targets.get(tag)
        message = self._find_message(*target) if target else None
        if message is not None and deleting:
            self._messages[message.channel].remove(message)
        elif message is not None and params.get("replace_original") in (True, "true"):
            self._apply_update(message, params)
        return _Reply.text("ok")


def _ratelimited(retry_after: int) -> _Reply:
    return _Reply.json(_error("ratelimited"), 429, {"Retry-After": str(retry_after)})

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
- Block Kit limits (§4), answered as `invalid_blocks` with json-pointer details (block_kit.py);
- response_url's 5-use limit (§2);
- 429 + Retry-After and 5xx answers on demand, delays, and an optional per-method rate limiter
  (faults.py).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self
from zoneinfo import ZoneInfo

from tests.devkit.loopback import StartedInWith
from tests.devkit.slack.block_kit import check_message, rejection
from tests.devkit.slack.faults import InjectedFailures
from tests.devkit.slack.http_server import StandinHTTPServer, parse_params
from tests.devkit.slack.records import Params, PostedMessage, RecordedCall
from tests.devkit.slack.replies import Reply, api_error
from tests.devkit.slack.workspace import (
    BOT_ID,
    BOT_USER_ID,
    DEFAULT_APP_TOKEN,
    DEFAULT_TOKEN,
    TEAM_ID,
    TEAM_NAME,
)

RESPONSE_URL_MAX_USES = 5
# Real ts values look like "1700000000.000100"; we count up from there in steps of 100 µs.
FIRST_TS_MICROS = 1_700_000_000_000_000


class SlackStandin(StartedInWith):
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
        self._failures = InjectedFailures()
        self._response_url_uses: dict[str, int] = {}
        self._response_url_targets: dict[str, tuple[str, str]] = {}
        self._ts_counter = 0
        self._server: StandinHTTPServer | None = None
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
            self._server = StandinHTTPServer(self)
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
        with self._lock:
            self._failures.fail_next(method, status, retry_after, count)

    def set_delay(self, method: str, seconds: float) -> None:
        with self._lock:
            self._failures.set_delay(method, seconds)

    def rate_limit(self, method: str, per_second: float | None) -> None:
        """Answer 429 once `method` exceeds `per_second` (sliding window); None removes it."""
        with self._lock:
            self._failures.rate_limit(method, per_second)

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

    def handle_http(self, raw_path: str, headers: dict[str, str], body: bytes) -> Reply:
        """One request, from the HTTP server's thread: recorded, and answered as Slack would."""
        url = urllib.parse.urlsplit(raw_path)
        if url.path.startswith("/api/"):
            kind, name = "api", url.path.removeprefix("/api/")
        elif url.path.startswith("/response/"):
            kind, name = "response_url", urllib.parse.unquote(url.path.removeprefix("/response/"))
        else:
            return Reply.text("not found", 404)
        method = name if kind == "api" else "response_url"
        try:
            params = parse_params(url.query, headers.get("content-type", ""), body)
        except ValueError:
            params = {"_raw_body": body.decode("utf-8", "replace")}
            reply = Reply.json(api_error("invalid_json"), 200 if kind == "api" else 400)
            return self._record(method, params, headers, reply)
        if kind == "response_url":
            params["_tag"] = name

        delay = self._failures.delay_for(method)
        if delay:
            time.sleep(delay)  # outside the lock: other calls keep flowing meanwhile
        with self._lock:
            injected = self._failures.failure_for(method)
            if injected is not None:
                return self._record(method, params, headers, injected, injected=True)
            if kind == "response_url":
                reply = self._response_url_post(name, params)
            else:
                reply = Reply.json(self._api_call(method, params, headers))
            return self._record(method, params, headers, reply)

    def _record(
        self,
        method: str,
        params: Params,
        headers: dict[str, str],
        reply: Reply,
        injected: bool = False,
    ) -> Reply:
        call = RecordedCall(
            method, params, headers, time.time(), injected, reply.status, reply.payload
        )
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()
        return reply

    def _api_call(self, method: str, params: Params, headers: dict[str, str]) -> dict[str, Any]:
        authorization = headers.get("authorization", "")
        bearer = authorization.removeprefix("Bearer ").strip() if authorization else ""
        form_token = params.pop("token", None)  # never keep secrets in recorded params
        token = bearer or form_token
        if not token:
            return api_error("not_authed")
        if method == "apps.connections.open":
            if token != self.app_token:
                error = "not_allowed_token_type" if token == self.token else "invalid_auth"
                return api_error(error)
        elif token != self.token:
            return api_error("invalid_auth")
        handler = self._methods.get(method)
        return handler(params) if handler else api_error("unknown_method")

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
            return api_error("channel_not_found")
        problem = check_message(params)
        if problem:
            return rejection(problem)
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
            return api_error("channel_not_found")
        message = self._find_message(channel, params.get("ts"))
        if message is None:
            return api_error("message_not_found")
        problem = check_message(params)
        if problem:
            return rejection(problem)
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
            return api_error("channel_not_found")
        if not params.get("user"):
            return api_error("user_not_found")
        problem = check_message(params)
        if problem:
            return rejection(problem)
        return {"ok": True, "message_ts": self._next_ts()}

    def _users_info(self, params: Params) -> dict[str, Any]:
        user = self._users.get(params.get("user", ""))
        return {"ok": True, "user": copy.deepcopy(user)} if user else api_error("user_not_found")

    def _usergroups_users_list(self, params: Params) -> dict[str, Any]:
        members = self._usergroups.get(params.get("usergroup", ""))
        if members is None:
            return api_error("no_such_subteam")
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
            return api_error("channel_not_found")
        default = {"id": channel_id, "name": channel_id.lower(), "is_channel": True}
        default |= {"is_private": False, "is_member": True}
        return {"ok": True, "channel": copy.deepcopy(self._channels.get(channel_id, default))}

    def _apps_connections_open(self, params: Params) -> dict[str, Any]:
        if self.socket_mode_url is None:
            return api_error("socket_mode_not_enabled")
        return {"ok": True, "url": self.socket_mode_url}

    # -- response_url (lock held) ---------------------------------------------------------------

    def _response_url_post(self, tag: str, params: Params) -> Reply:
        if self._response_url_uses.get(tag, 0) >= RESPONSE_URL_MAX_USES:
            return Reply.text("used_url", 404)
        deleting = params.get("delete_original") in (True, "true")
        problem = None if deleting else check_message(params)
        if problem:
            return Reply.json(rejection(problem), 400)
        self._response_url_uses[tag] = self._response_url_uses.get(tag, 0) + 1
        target = self._response_url_targets.get(tag)
        message = self._find_message(*target) if target else None
        if message is not None and deleting:
            self._messages[message.channel].remove(message)
        elif message is not None and params.get("replace_original") in (True, "true"):
            self._apply_update(message, params)
        return Reply.text("ok")

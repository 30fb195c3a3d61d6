"""Send Slack-signed requests (slash commands, button clicks) to the bot's HTTP endpoint.

Bodies are built the way Slack builds them: slash commands are a
form-encoded body; interactivity is a form body with one field, `payload`, holding JSON.
The payload builders are public so Socket Mode tests can push the same dicts in envelopes.

    response = send_slash_command(f"{bot_url}/slack/events", "test-secret", "start web 1.2.3")
    assert response.status == 200
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.devkit.slack.workspace import APP_ID, BOT_ID, BOT_USER_ID, TEAM_ID, TEAM_NAME

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# Bypass any HTTP(S)_PROXY from the environment: the bot under test is always on 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """Slack's v0 signature: "v0=" + hex HMAC-SHA256(secret, b"v0:<ts>:<raw body>")."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str,
    body: bytes,
    timestamp: str | int | None = None,
    content_type: str = FORM_CONTENT_TYPE,
) -> dict[str, str]:
    """Headers Slack would send with `body`; timestamp defaults to now (Bolt allows ±5 min)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(secret, ts, body),
    }


def _trigger_id() -> str:
    return f"1337.42.{uuid.uuid4().hex}"


def slash_command_payload(
    text: str,
    user_id: str = "U0ALICE",
    user_name: str = "alice",
    channel_id: str = "C0DEPLOYS",
    command: str = "/rollout",
    response_url: str | None = None,
    team_id: str = TEAM_ID,
    channel_name: str = "deploys",
) -> dict[str, str]:
    """The fields of a slash command (HTTP form body, or the Socket Mode envelope payload)."""
    return {
        "token": "legacy-verification-token",  # still sent by Slack; must not be relied on
        "team_id": team_id,
        "team_domain": TEAM_NAME,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        # Slack always sends one; the default points nowhere reachable, as a real one would.
        "response_url": response_url or f"https://hooks.slack.com/commands/{team_id}/1/x",
        "trigger_id": _trigger_id(),
    }


def block_action_payload(
    action_id: str,
    value: str,
    user_id: str,
    channel_id: str,
    message_ts: str,
    response_url: str | None = None,
    block_id: str | None = None,
    message: Mapping[str, Any] | None = None,
    user_name: str = "alice",
    team_id: str = TEAM_ID,
    is_ephemeral: bool = False,
) -> dict[str, Any]:
    """A `block_actions` payload for one button click."""
    block_id = block_id or "actions"
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": _trigger_id(),
        "team": {"id": team_id, "domain": TEAM_NAME},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "deploys"},
        "state": {"values": {}},
        "response_url": response_url or f"https://hooks.slack.com/actions/{team_id}/1/x",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    if not is_ephemeral:  # Slack leaves the message out for ephemeral sources
        payload["message"] = dict(message) if message is not None else _default_message(message_ts)
    return payload


def _default_message(ts: str) -> dict[str, Any]:
    return {"type": "message", "ts": ts, "text": "rollout", "bot_id": BOT_ID, "user": BOT_USER_ID}


def send_raw(
    url: str, body: bytes | str, headers: Mapping[str, str], timeout: float = 10.0
) -> Response:
    """POST exactly these bytes with these headers; HTTP errors come back as a Response."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, headers=dict(headers), method="POST")
    try:
        with _opener.open(request, timeout=timeout) as reply:
            return _response(reply.status, reply.headers.items(), reply.read())
    except urllib.error.HTTPError as error:
        return _response(error.code, error.headers.items(), error.read())


def _response(status: int, headers: Any, body: bytes) -> Response:
    return Response(status, {k.lower(): v for k, v in headers}, body.decode("utf-8", "replace"))


def send_signed_form(
    url: str,
    secret: str,
    fields: Mapping[str, str],
    timestamp: str | int | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> Response:
    body = urllib.parse.urlencode(fields).encode()
    headers = {**signed_headers(secret, body, timestamp), **(extra_headers or {})}
    return send_raw(url, body, headers)


def send_slash_command(
    url: str,
    secret: str,
    text: str,
    user_id: str = "U0ALICE",
    user_name: str = "alice",
    channel_id: str = "C0DEPLOYS",
    command: str = "/rollout",
    response_url: str | None = None,
    team_id: str = TEAM_ID,
    timestamp: str | int | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> Response:
    fields = slash_command_payload(
        text, user_id, user_name, channel_id, command, response_url, team_id
    )
    return send_signed_form(url, secret, fields, timestamp, extra_headers)


def send_block_action(
    url: str,
    secret: str,
    action_id: str,
    value: str,
    user_id: str,
    channel_id: str,
    message_ts: str,
    response_url: str | None = None,
    block_id: str | None = None,
    message: Mapping[str, Any] | None = None,
    timestamp: str | int | None = None,
    extra_headers: Mapping[str, str] | None = None,
    *,
    user_name: str | None = None,
    state: Mapping[str, Any] | None = None,
) -> Response:
    payload = block_action_payload(
        action_id,
        value,
        user_id,
        channel_id,
        message_ts,
        response_url,
        block_id,
        message,
        user_name=user_name or "alice",
    )
    if state is not None:
        payload["state"] = {"values": dict(state)}
    fields = {"payload": json.dumps(payload)}
    return send_signed_form(url, secret, fields, timestamp, extra_headers)

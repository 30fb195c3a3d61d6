"""What every listener needs to know about the request besides its payload, put into Bolt's
`context` once, by one global middleware, before any listener runs:

    context["actor"]        who is acting, and where (`Actor`)
    context["request_key"]  what tells a replay of a signed HTTP request apart (or None)

A listener reads them with `actor_of(context)` and `request_key_of(context)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext, BoltRequest

from bot.domain.targets import Actor

SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
# A signature verifies while its timestamp is within 5 minutes of now, in either direction, so
# one request stays valid for up to 10 minutes (a timestamp 5 minutes ahead, replayed until
# 5 minutes past it). Remembering it a little longer covers that whole window.
REPLAY_WINDOW_SECONDS = 660

ACTOR = "actor"
REQUEST_KEY = "request_key"


def attach_request_context(
    context: BoltContext,
    body: dict[str, Any],
    request: BoltRequest,
    next_: Callable[[], None],
) -> None:
    """The global middleware: who acts and the request's key, into `context`."""
    context[ACTOR] = actor(body, context)
    context[REQUEST_KEY] = request_key(request)
    next_()


def actor_of(context: BoltContext) -> Actor:
    found = context[ACTOR]
    assert isinstance(found, Actor)
    return found


def request_key_of(context: BoltContext) -> str | None:
    found = context.get(REQUEST_KEY)
    return found if isinstance(found, str) else None


def actor(body: dict[str, Any], context: BoltContext) -> Actor:
    """Who acts, where: ids from Bolt's context, the display name from the payload (Bolt's
    context carries no user name): a slash command's `user_name`, a click's `user`."""
    user = body.get("user")
    if not isinstance(user, dict):
        user = {}
    user_id = context.user_id or ""
    name = str(body.get("user_name") or user.get("username") or user.get("name") or user_id)
    return Actor(user_id, name, context.channel_id or "")


def request_key(request: BoltRequest) -> str | None:
    """What tells a signed HTTP request apart: its signature. An exact replay inside Slack's
    signing window has the same one, and `handlers.perform` runs it only once. Whether the key
    was seen before is asked of Redis after the ack, so a slow Redis never delays one. Socket
    Mode has no signatures (its WebSocket is authenticated by the app-level token)."""
    if request.mode != "http":
        return None
    signature = (request.headers.get("x-slack-signature") or [""])[0]
    return "sig" + signature[3:43] if SIGNATURE.fullmatch(signature) else None

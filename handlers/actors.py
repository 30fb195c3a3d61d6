"""Who is acting: the Slack user behind a command or a click, from Bolt's context."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext

from bot.domain.targets import Actor


def clicker(body: dict[str, Any], context: BoltContext) -> Actor:
    """Who clicked, where: ids from Bolt's context, the display name from the payload (Bolt's
    context carries no user name)."""
    user = body.get("user") or {}
    user_id = context.user_id or ""
    name = str(user.get("username") or user.get("name") or user_id)
    return Actor(user_id, name, context.channel_id or "")

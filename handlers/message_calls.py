"""The two Web API calls the messages the bot keeps up to date are made of (progress, canary
and promotion messages): post one, update it in place.

A failure is logged by Slack's error code or the exception's class, never its text (which can
carry a URL or a token), and answered with None or False: the engine behind the message goes
on without it, and the next update tries again.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from handlers.views.message import Message

log = logging.getLogger(__name__)


def post_message(
    client: WebClient, channel: str, message: Message, *, thread_ts: str | None = None
) -> str | None:
    """The new message's ts, or None when Slack did not take it."""
    try:
        response = client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=message.text, blocks=message.blocks
        )
    except SlackApiError as exc:
        log.warning("chat.postMessage failed: %s", exc.response.get("error"))
        return None
    except (SlackClientError, OSError) as exc:
        log.warning("chat.postMessage failed: %s", type(exc).__name__)
        return None
    return str(response["ts"])


def update_message(client: WebClient, channel: str, ts: str, message: Message) -> bool:
    """Whether Slack took the update."""
    try:
        client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)
        return True
    except SlackApiError as exc:
        log.warning("chat.update failed: %s", exc.response.get("error"))
    except (SlackClientError, OSError) as exc:
        log.warning("chat.update failed: %s", type(exc).__name__)
    return False

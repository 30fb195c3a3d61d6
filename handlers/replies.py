"""How the handlers answer: ephemeral to the caller, or in the channel, never with a traceback.

`Replier` wraps one interaction's `respond` (its response_url) and the Web API client, so a
use case's outcome reaches the user even when the bot is not a member of the channel.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.domain.errors import RolloutBotError, StoreError
from handlers.message_calls import post_message, update_message
from handlers.views.message import Message, error_message

log = logging.getLogger(__name__)


class Replier:
    def __init__(self, respond: Respond | None, client: WebClient, channel_id: str) -> None:
        self._respond = respond
        self.client = client
        self.channel_id = channel_id

    def elsewhere(self, channel_id: str) -> Replier:
        """Posts to another channel (no response_url there: only the Web API)."""
        return Replier(None, self.client, channel_id)

    def ephemeral(self, message: Message) -> None:
        if self._respond is None:
            return
        try:
            response = self._respond(
                text=message.text,
                blocks=message.blocks,
                response_type="ephemeral",
                replace_original=False,
            )
            if response.status_code >= 300:
                log.warning("response_url answered %s", response.status_code)
        except (SlackClientError, OSError, ValueError) as exc:
            log.warning("could not answer via response_url: %s", type(exc).__name__)

    def in_channel(self, message: Message, *, thread_ts: str | None = None) -> str | None:
        """Posts to the channel; returns the message ts (None if only the fallback worked)."""
        ts = post_message(self.client, self.channel_id, message, thread_ts=thread_ts)
        if ts is not None:
            return ts
        # Not a member of the channel, or Slack is struggling: the response_url still works.
        if self._respond is not None:
            try:
                self._respond(
                    text=message.text,
                    blocks=message.blocks,
                    response_type="in_channel",
                    replace_original=False,
                )
            except (SlackClientError, OSError, ValueError) as exc:
                log.warning("could not answer via response_url: %s", type(exc).__name__)
        return None

    def update(self, ts: str, message: Message) -> bool:
        return update_message(self.client, self.channel_id, ts, message)


@contextmanager
def user_facing_errors(reply: Callable[[Message], Any]) -> Iterator[None]:
    """Turns any failure inside the block into a short reply. Logs carry no traceback or secret:
    domain errors are expected outcomes, anything else gets a reference to find the log line."""
    try:
        yield
    except RolloutBotError as exc:
        log.info("refused: %s", type(exc).__name__)
        reply(error_message(exc.user_message))
    except StoreError as exc:
        log.warning("state store failed during %s: %s", exc.operation, exc.cause)
        reply(error_message(exc.message + " Nothing was changed."))
    except Exception as exc:
        reference = uuid.uuid4().hex[:8]
        log.error("unexpected %s (reference %s)", type(exc).__name__, reference)
        reply(
            error_message(
                f"Something went wrong inside the bot (reference `{reference}`). "
                "Check `/rollout status` before retrying: the change may or may not have happened."
            )
        )

"""How a promotion reads in Slack: its message posted once and updated in place as its waves
and gates move (the promotion service's board), and notes in its thread.
"""

from __future__ import annotations

from slack_sdk import WebClient

from bot.domain.promotion import GateRule, PromotionState
from handlers.message_calls import post_message
from handlers.replies import Replier
from handlers.views import promotions as views
from handlers.views.message import error_message, info_message


class SlackPromotionBoard:
    """The promotion message: posted once, then updated in place."""

    def __init__(self, client: WebClient) -> None:
        self._client = client

    def post(self, state: PromotionState, gates: list[GateRule | None]) -> str | None:
        message = views.promotion_message(state, gates)
        return post_message(self._client, state.channel, message)

    def update(self, state: PromotionState, gates: list[GateRule | None]) -> None:
        if not state.message_ts:
            return
        message = views.promotion_message(state, gates)
        Replier(None, self._client, state.channel).update(state.message_ts, message)

    def note(self, state: PromotionState, text: str, *, error: bool = False) -> None:
        message = error_message(text) if error else info_message(text)
        Replier(None, self._client, state.channel).in_channel(
            message, thread_ts=state.message_ts or None
        )

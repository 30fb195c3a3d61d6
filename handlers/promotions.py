"""Promotions on Slack: the promotion message kept up to date in place (`SlackPromotionBoard`,
the service's board), and the listeners of its Approve / Halt buttons.

A click is acknowledged at once and handed on like an approval click; the gate's decision
(`handlers.decisions`) is a compare-and-set in Redis, so double clicks, concurrent clicks and
clicks on two replicas resolve to one outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.domain.promotion import GateRule, PromotionState
from handlers.handoff import (
    PROMOTION_APPROVE,
    PROMOTION_HALT,
    Decide,
    Dispatch,
    Reply,
    hand_on,
    tell_not_taken,
)
from handlers.replies import Replier
from handlers.request_context import actor_of, request_key_of
from handlers.views import promotions as views
from handlers.views.message import error_message, info_message

log = logging.getLogger(__name__)


class SlackPromotionBoard:
    """The promotion message: posted once, then updated in place."""

    def __init__(self, client: WebClient) -> None:
        self._client = client

    def post(self, state: PromotionState, gates: list[GateRule | None]) -> str | None:
        message = views.promotion_message(state, gates)
        try:
            response = self._client.chat_postMessage(
                channel=state.channel, text=message.text, blocks=message.blocks
            )
        except SlackApiError as exc:
            log.warning("chat.postMessage failed: %s", exc.response.get("error"))
            return None
        except (SlackClientError, OSError) as exc:
            log.warning("chat.postMessage failed: %s", type(exc).__name__)
            return None
        return str(response["ts"])

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


def register(app: App, dispatch: Dispatch) -> None:
    app.action(views.PROMOTION_APPROVE_ACTION)(_click_handler(dispatch, PROMOTION_APPROVE))
    app.action(views.PROMOTION_HALT_ACTION)(_click_handler(dispatch, PROMOTION_HALT))


def _click_handler(dispatch: Dispatch, verb: str) -> Callable[..., None]:
    def handle_click(
        ack: Ack,
        action: dict[str, Any],
        body: dict[str, Any],
        context: BoltContext,
        respond: Respond,
        client: WebClient,
    ) -> None:
        ack()
        actor = actor_of(context)
        work = Decide(
            verb,
            str(action.get("value") or ""),
            actor,
            "",
            Reply.to(respond, actor.channel_id, request_key_of(context)),
        )
        if not hand_on(dispatch, work):
            tell_not_taken(client, work)

    handle_click.__name__ = f"handle_{verb.replace('-', '_')}_click"
    return handle_click

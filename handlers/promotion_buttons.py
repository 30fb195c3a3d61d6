"""The listeners of a promotion gate's Approve / Halt buttons (the promotion message:
`handlers.promotion_board`).

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

from handlers.handoff import (
    PROMOTION_APPROVE,
    PROMOTION_HALT,
    Decide,
    Dispatch,
    Reply,
    hand_on,
    tell_not_taken,
)
from handlers.request_context import actor_of, request_key_of
from handlers.views import promotions as views

log = logging.getLogger(__name__)


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

"""The listeners of the Approve / Reject / Cancel buttons on approval cards.

Each click is acknowledged at once and handed on; the decision (`handlers.decisions`) is an
atomic transition in Redis, so double clicks, concurrent clicks and clicks on two bot replicas
resolve to one outcome, and the action runs exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.domain.approval import is_approval_id
from handlers.handoff import Decide, Dispatch, Notify, Reply, Work, hand_on, tell_not_taken
from handlers.request_context import actor_of, request_key_of
from handlers.views.cards import (
    APPROVE_ACTION,
    CANCEL_ACTION,
    REJECT_ACTION,
    REJECT_REASON_ACTION,
    REJECT_REASON_BLOCK,
)
from handlers.views.message import error_message

log = logging.getLogger(__name__)


def register(app: App, dispatch: Dispatch) -> None:
    for action_id, verb in (
        (APPROVE_ACTION, "approve"),
        (REJECT_ACTION, "reject"),
        (CANCEL_ACTION, "cancel"),
    ):
        app.action(action_id)(_click_handler(dispatch, verb))

    @app.action(REJECT_REASON_ACTION)
    def handle_reason_typing(ack: Ack) -> None:
        ack()  # the reason is read from the card's state when Reject is clicked


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
        approval_id = str(action.get("value") or "")
        reason = _reject_reason(body) if verb == "reject" else ""
        reply = Reply.to(respond, actor.channel_id, request_key_of(context))
        work: Work
        if is_approval_id(approval_id):
            work = Decide(verb, approval_id, actor, reason, reply)
        else:
            # Not a value the bot wrote: it is never logged, looked up or shown.
            log.warning("a %s click carried no valid approval id; refused", verb)
            work = Notify(
                error_message(
                    "This button does not name an approval request. Nothing was changed."
                ),
                reply,
            )
        if not hand_on(dispatch, work):
            tell_not_taken(client, work)

    handle_click.__name__ = f"handle_{verb}_click"  # what Bolt names in its logs
    return handle_click


def _reject_reason(body: dict[str, Any]) -> str:
    values = (body.get("state") or {}).get("values") or {}
    field = (values.get(REJECT_REASON_BLOCK) or {}).get(REJECT_REASON_ACTION) or {}
    return str(field.get("value") or "").strip()[:300]

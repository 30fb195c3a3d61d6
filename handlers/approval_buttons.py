"""The listeners of the Approve / Reject / Cancel buttons on approval cards.

Each click is acknowledged at once and handed on; the decision (`handlers.decisions`) is an
atomic transition in Redis, so double clicks, concurrent clicks and clicks on two bot replicas
resolve to one outcome, and the action runs exactly once.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot.domain.approval import is_approval_id
from handlers.button_listener import Click, WorkFor, button_listener
from handlers.handoff import Decide, Dispatch, Notify, Work
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
        app.action(action_id)(button_listener(dispatch, f"handle_{verb}_click", _decision(verb)))

    @app.action(REJECT_REASON_ACTION)
    def handle_reason_typing(ack: Ack) -> None:
        ack()  # the reason is read from the card's state when Reject is clicked


def _decision(verb: str) -> WorkFor:
    def work_for(click: Click) -> Work:
        if not is_approval_id(click.value):
            # Not a value the bot wrote: it is never logged, looked up or shown.
            log.warning("a %s click carried no valid approval id; refused", verb)
            message = error_message(
                "This button does not name an approval request. Nothing was changed."
            )
            return Notify(message, click.reply)
        reason = _reject_reason(click.body) if verb == "reject" else ""
        return Decide(verb, click.value, click.actor, reason, click.reply)

    return work_for


def _reject_reason(body: dict[str, Any]) -> str:
    values = (body.get("state") or {}).get("values") or {}
    field = (values.get(REJECT_REASON_BLOCK) or {}).get(REJECT_REASON_ACTION) or {}
    return str(field.get("value") or "").strip()[:300]

"""The listeners of a promotion gate's Approve / Halt buttons (the promotion message:
`handlers.promotion_board`).

A click is acknowledged at once and handed on like an approval click; the gate's decision
(`handlers.decisions`) is a compare-and-set in Redis, so double clicks, concurrent clicks and
clicks on two replicas resolve to one outcome.
"""

from __future__ import annotations

from slack_bolt import App

from handlers.button_listener import Click, WorkFor, button_listener
from handlers.handoff import (
    PROMOTION_APPROVE,
    PROMOTION_HALT,
    Decide,
    Dispatch,
    Work,
)
from handlers.views import promotions as views


def register(app: App, dispatch: Dispatch) -> None:
    for action_id, verb in (
        (views.PROMOTION_APPROVE_ACTION, PROMOTION_APPROVE),
        (views.PROMOTION_HALT_ACTION, PROMOTION_HALT),
    ):
        name = f"handle_{verb.replace('-', '_')}_click"
        app.action(action_id)(button_listener(dispatch, name, _gate_decision(verb)))


def _gate_decision(verb: str) -> WorkFor:
    def work_for(click: Click) -> Work:
        return Decide(verb, click.value, click.actor, "", click.reply)

    return work_for

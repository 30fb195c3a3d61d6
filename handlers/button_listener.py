"""One listener shape for every button: acknowledge, read who clicked (the request-context
middleware put the actor and request key into Bolt's `context`), turn the click into a `Work`
item and hand it on.

Each button module supplies only what its click means (a `WorkFor`), so what every click must
do is written once: ack first, post nothing from the listener (that would hold the ack back),
and tell the clicker when the bot is stopping and did not take the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from bot.domain.targets import Actor
from handlers.handoff import Dispatch, Reply, Work, hand_on, tell_not_taken
from handlers.request_context import actor_of, request_key_of


@dataclass(frozen=True)
class Click:
    """A button click as the button modules read it: the button's value, the whole payload
    (for the card's state and the message it sits on), who clicked and where to answer."""

    value: str
    body: dict[str, Any]
    actor: Actor
    reply: Reply


WorkFor = Callable[[Click], Work]


def button_listener(dispatch: Dispatch, name: str, work_for: WorkFor) -> Callable[..., None]:
    """A Bolt listener that hands `work_for(click)` on; `name` is what Bolt names in its logs."""

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
        reply = Reply.to(respond, actor.channel_id, request_key_of(context))
        work = work_for(Click(str(action.get("value") or ""), body, actor, reply))
        if not hand_on(dispatch, work):
            tell_not_taken(client, work)

    handle_click.__name__ = name
    return handle_click

"""What a listener hands on after the ack: plain, picklable descriptions of the work, and the
hand-off itself. The work is performed by `handlers.perform`, wherever that runs (a thread
here, or a worker process); this module knows no listener and no performer, so both import it.

    RunCommand   a typed /rollout command, or a Roll back / Pause click
    Decide       an Approve / Reject / Cancel click, or a promotion gate's Approve / Halt
    Notify       a message for the user who clicked, and nothing else to do

A reply goes back through the interaction's response_url and the Web API, which any process
can use: nothing here holds a socket or a thread of the process that acknowledged it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient

from bot.domain import verbs as cmd
from bot.domain.targets import Actor
from handlers.replies import Replier
from handlers.views.message import Message, error_message

log = logging.getLogger(__name__)

#: The Decide verbs of a promotion gate's buttons (the others are an approval card's).
PROMOTION_APPROVE = "promotion-approve"
PROMOTION_HALT = "promotion-halt"
PROMOTION_VERBS = (PROMOTION_APPROVE, PROMOTION_HALT)


@dataclass(frozen=True)
class Reply:
    """Where the answers to one interaction go, and the key that tells a replay of it apart
    (None when there is nothing to guard: Socket Mode has no signed requests)."""

    response_url: str | None
    channel: str
    request_key: str | None = None

    @classmethod
    def to(cls, respond: Respond, channel: str, request_key: str | None) -> Reply:
        return cls(respond.response_url, channel, request_key)

    def replier(self, client: WebClient) -> Replier:
        respond = Respond(response_url=self.response_url) if self.response_url else None
        return Replier(respond, client, self.channel)


@dataclass(frozen=True)
class Clicked:
    """The message whose button was clicked, so its used buttons can give way to what
    happened: its channel, ts and blocks as Slack delivered them with the click."""

    channel: str
    ts: str
    blocks: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class RunCommand:
    command: cmd.Command
    actor: Actor
    reply: Reply
    clicked: Clicked | None = None
    #: A Roll back / Pause click: the revision its button was posted for; the change runs only
    #: while the workload is still at it.
    at_revision: int | None = None


@dataclass(frozen=True)
class Decide:
    verb: str  # approve | reject | cancel | promotion-approve | promotion-halt
    approval_id: str
    actor: Actor
    reason: str
    reply: Reply


@dataclass(frozen=True)
class Notify:
    message: Message
    reply: Reply


Work = RunCommand | Decide | Notify
#: Hands acknowledged work on; never blocks the listener. It raises only when the bot is
#: stopping and takes no more work.
Dispatch = Callable[[Work], None]


def hand_on(dispatch: Dispatch, work: Work) -> bool:
    """Hands the work on, or says it could not: listeners run in the request's own thread and
    must answer every request, so a refusal is theirs to put into words, never a 500."""
    try:
        dispatch(work)
    except Exception as exc:
        log.warning("work not taken (the bot is stopping): %s", type(exc).__name__)
        return False
    return True


def not_taken_message(work: Work) -> Message:
    """What the author of work that arrived while the bot was stopping is told."""
    return error_message(
        f"The bot is restarting and did not run {_described(work)}. Nothing was changed: try "
        "again in a moment."
    )


def tell_not_taken(client: WebClient, work: Work) -> None:
    """For a click, whose ack Slack shows nothing of: the notice is posted from a thread of
    its own, so the ack still leaves at once."""
    threading.Thread(target=tell, args=(client, work, not_taken_message(work)), daemon=True).start()


_CLICKED = {
    "approve": "approval",
    "reject": "rejection",
    "cancel": "cancellation",
    "promotion-approve": "approval of the gate",
    "promotion-halt": "halt",
}


def _described(work: Work) -> str:
    """The work as its author knows it, for the notices about it."""
    match work:
        case RunCommand(command=command):
            return f"`/rollout {cmd.render_command(command)}`"
        case Decide(verb=verb, approval_id=approval_id):
            return f"your {_CLICKED[verb]} of request `{approval_id}`"
        case Notify():
            return "your click"


def interrupted_message(work: Work) -> Message:
    """What the author of work that a dead worker held is told: it may or may not have run."""
    check = (
        "Check with `/rollout approvals` before trying again."
        if isinstance(work, Decide)
        else "Check with `/rollout status` or `/rollout history` before trying again."
    )
    return error_message(
        f"The bot was interrupted while running {_described(work)}: it may or may not have "
        "taken effect. " + check
    )


def tell(client: WebClient, work: Work, message: Message) -> None:
    """Tells the author of the work, ephemerally; a failure is logged, never raised."""
    try:
        work.reply.replier(client).ephemeral(message)
    except Exception as exc:  # Slack unreachable: the log is all that is left
        log.warning("could not tell a user what became of their work: %s", type(exc).__name__)

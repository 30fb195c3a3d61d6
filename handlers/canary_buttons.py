"""The listeners of a canary's Promote / Abort buttons (its message: `handlers.canary_publisher`).

Promote and Abort run exactly as the typed `/rollout canary promote|abort` would, for the user
who clicked: same policy, same approvals (four-eyes on Promote where the policy asks for it),
same audit. `--auto-promote` runs Promote the same way, for the user who started the canary
(`handlers.answers.auto_promote`).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.domain import verbs as cmd
from handlers.handoff import Dispatch, Notify, Reply, RunCommand, Work, hand_on, tell_not_taken
from handlers.request_context import actor_of, request_key_of
from handlers.views.canary import ABORT_ACTION, PROMOTE_ACTION
from handlers.views.message import error_message

log = logging.getLogger(__name__)


def register(app: App, dispatch: Dispatch) -> None:
    app.action(PROMOTE_ACTION)(_click_handler(dispatch, "promote"))
    app.action(ABORT_ACTION)(_click_handler(dispatch, "abort"))


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
        reply = Reply.to(respond, actor.channel_id, request_key_of(context))
        work: Work
        try:
            command = button_command(str(action.get("value") or ""), verb)
        except cmd.CommandError:
            message = error_message(
                "This button does not name a canary the bot can act on. Nothing was changed."
            )
            work = Notify(message, reply)
        else:
            work = RunCommand(command, actor, reply)
        if not hand_on(dispatch, work):
            tell_not_taken(client, work)

    handle_click.__name__ = f"handle_canary_{verb}_click"
    return handle_click


def button_command(value: str, verb: str) -> cmd.Command:
    """The typed command a button stands for: its value is NAMESPACE/NAME, after `CONTEXT|`
    with several clusters, read through the grammar so a forged value is refused like
    mistyped text."""
    context, _, value = value.rpartition("|")
    namespace, _, name = value.partition("/")
    words = ["canary", verb, shlex.quote(name), "-n", shlex.quote(namespace)]
    if context:
        words += ["--context", shlex.quote(context)]
    return cmd.parse_command(" ".join(words))

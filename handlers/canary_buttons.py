"""The listeners of a canary's Promote / Abort buttons (its message: `handlers.canary_publisher`).

Promote and Abort run exactly as the typed `/rollout canary promote|abort` would, for the user
who clicked: same policy, same approvals (four-eyes on Promote where the policy asks for it),
same audit. `--auto-promote` runs Promote the same way, for the user who started the canary
(`handlers.answers.auto_promote`).
"""

from __future__ import annotations

import shlex

from slack_bolt import App

from bot.domain import verbs as cmd
from handlers.button_listener import Click, WorkFor, button_listener
from handlers.handoff import Dispatch, Notify, RunCommand, Work
from handlers.views.canary import ABORT_ACTION, PROMOTE_ACTION
from handlers.views.message import error_message


def register(app: App, dispatch: Dispatch) -> None:
    app.action(PROMOTE_ACTION)(
        button_listener(dispatch, "handle_canary_promote_click", _canary_command("promote"))
    )
    app.action(ABORT_ACTION)(
        button_listener(dispatch, "handle_canary_abort_click", _canary_command("abort"))
    )


def _canary_command(verb: str) -> WorkFor:
    def work_for(click: Click) -> Work:
        try:
            command = button_command(click.value, verb)
        except cmd.CommandError:
            message = error_message(
                "This button does not name a canary the bot can act on. Nothing was changed."
            )
            return Notify(message, click.reply)
        return RunCommand(command, click.actor, click.reply)

    return work_for


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

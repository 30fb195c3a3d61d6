"""Buttons on a failed rollout's progress message: Roll back and Pause.

Roll back and Pause run exactly as the typed `/rollout undo` and `/rollout pause` would, for
the user who clicked: same policy, same approvals, same audit. A button acts only while the
workload is still at the revision it was posted for: clicked after a newer deploy, it says
what changed and does nothing.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.domain import verbs as cmd
from handlers.handoff import (
    Clicked,
    Dispatch,
    Notify,
    Reply,
    RunCommand,
    Work,
    hand_on,
    tell_not_taken,
)
from handlers.request_context import actor_of, request_key_of
from handlers.views.message import error_message
from handlers.views.progress import PAUSE_ACTION, ROLLBACK_ACTION

log = logging.getLogger(__name__)


def register(app: App, dispatch: Dispatch) -> None:
    app.action(ROLLBACK_ACTION)(_click_handler(dispatch, rollback=True))
    app.action(PAUSE_ACTION)(_click_handler(dispatch, rollback=False))


def _click_handler(dispatch: Dispatch, *, rollback: bool) -> Callable[..., None]:
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
            command, revision = rollback_or_pause(str(action.get("value") or ""), rollback=rollback)
        except cmd.CommandError:
            # Not a value the bot wrote on its buttons: refuse it as mistyped text would be.
            message = error_message(
                "This button does not name a workload the bot can act on. Nothing was changed."
            )
            work = Notify(message, reply)  # posting it here would hold the ack back
        else:
            if revision is None:
                # Posted before buttons named their revision: it could act on a later one.
                message = error_message(
                    "This button is not tied to a revision, so it could act on a newer deploy "
                    f"than the one that failed. Nothing was changed; run `/rollout "
                    f"{cmd.render_command(command)}` if it still needs doing."
                )
                work = Notify(message, reply)
            else:
                work = RunCommand(
                    command, actor, reply, clicked=_clicked(body), at_revision=revision
                )
        if not hand_on(dispatch, work):
            tell_not_taken(client, work)

    # What Bolt names in its logs.
    handle_click.__name__ = "handle_rollback_click" if rollback else "handle_pause_click"
    return handle_click


_REVISION = re.compile(r"[1-9][0-9]{0,9}")


def rollback_or_pause(value: str, *, rollback: bool) -> tuple[cmd.Command, int | None]:
    """The typed command a button stands for, and the revision it was posted for. Its value is
    NAMESPACE/NAME (a Deployment) or NAMESPACE/KIND/NAME, after `CONTEXT|` when several
    clusters are served, then `@REVISION` (None without: a button of an older version); it is
    read through the grammar, so a forged value is refused (CommandError) exactly like
    mistyped text."""
    revision: int | None = None
    if "@" in value:
        value, _, number = value.rpartition("@")
        if not _REVISION.fullmatch(number):
            raise cmd.CommandError("not a revision")
        revision = int(number)
    context, _, value = value.rpartition("|")
    namespace, _, rest = value.partition("/")
    kind, _, name = rest.rpartition("/")
    words = ["undo" if rollback else "pause", shlex.quote(f"{kind}/{name}" if kind else name)]
    words += ["-n", shlex.quote(namespace)]
    if context:
        words += ["--context", shlex.quote(context)]
    if rollback:
        words.append(shlex.quote("--reason=rollout failed (Roll back button)"))
    return cmd.parse_command(" ".join(words)), revision


def _clicked(body: dict[str, Any]) -> Clicked | None:
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or message.get("ts")
    found = message.get("blocks")
    if not (channel and ts and isinstance(found, list)):
        return None
    return Clicked(str(channel), str(ts), tuple(b for b in found if isinstance(b, dict)))

"""Buttons on a failed rollout's progress message: Roll back and Pause.

Roll back and Pause run exactly as the typed `/rollout undo` and `/rollout pause` would, for
the user who clicked: same policy, same approvals, same audit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond

from bot.domain import commands as cmd
from handlers.actors import clicker
from handlers.views import blocks
from handlers.work import Dispatch, Reply, RunCommand

log = logging.getLogger(__name__)


def register(app: App, dispatch: Dispatch) -> None:
    app.action(blocks.ROLLBACK_ACTION)(_click_handler(dispatch, rollback=True))
    app.action(blocks.PAUSE_ACTION)(_click_handler(dispatch, rollback=False))


def _click_handler(dispatch: Dispatch, *, rollback: bool) -> Callable[..., None]:
    def handle_click(
        ack: Ack,
        action: dict[str, Any],
        body: dict[str, Any],
        context: BoltContext,
        respond: Respond,
    ) -> None:
        ack()
        actor = clicker(body, context)
        command = _rollback_or_pause(str(action.get("value") or ""), rollback=rollback)
        dispatch(RunCommand(command, actor, Reply(respond.response_url, actor.channel_id)))

    # What Bolt names in its logs.
    handle_click.__name__ = "handle_rollback_click" if rollback else "handle_pause_click"
    return handle_click


def _rollback_or_pause(value: str, *, rollback: bool) -> cmd.Command:
    """The typed command a button stands for; its value is NAMESPACE/NAME (a Deployment) or
    NAMESPACE/KIND/NAME, after `CONTEXT|` when several clusters are served."""
    context, _, value = value.rpartition("|")
    namespace, _, rest = value.partition("/")
    kind, _, name = rest.rpartition("/")
    kind = kind or "deployment"
    if rollback:
        return cmd.Undo(
            deployment=name,
            kind=kind,
            namespace=namespace,
            reason="rollout failed (Roll back button)",
            context=context or None,
        )
    return cmd.Pause(deployment=name, kind=kind, namespace=namespace, context=context or None)

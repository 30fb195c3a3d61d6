"""Buttons on a failed rollout's progress message: Roll back and Pause.

Roll back and Pause run exactly as the typed `/rollout undo` and `/rollout pause` would, for
the user who clicked: same policy, same approvals, same audit.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.domain import commands as cmd
from bot.services.container import Services
from handlers.actors import clicker
from handlers.commands import answer
from handlers.replies import Replier
from handlers.views import blocks

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    @app.action(blocks.ROLLBACK_ACTION)
    def handle_rollback_click(
        ack: Ack,
        action: dict[str, Any],
        body: dict[str, Any],
        context: BoltContext,
        respond: Respond,
        client: WebClient,
    ) -> None:
        ack()
        actor = clicker(body, context)
        command = _rollback_or_pause(str(action.get("value") or ""), rollback=True)
        replier = Replier(respond, client, actor.channel_id)
        services.background.submit(answer, services, command, actor, replier)

    @app.action(blocks.PAUSE_ACTION)
    def handle_pause_click(
        ack: Ack,
        action: dict[str, Any],
        body: dict[str, Any],
        context: BoltContext,
        respond: Respond,
        client: WebClient,
    ) -> None:
        ack()
        actor = clicker(body, context)
        command = _rollback_or_pause(str(action.get("value") or ""), rollback=False)
        replier = Replier(respond, client, actor.channel_id)
        services.background.submit(answer, services, command, actor, replier)


def _rollback_or_pause(value: str, *, rollback: bool) -> cmd.Command:
    """The typed command a button stands for; its value is NAMESPACE/NAME (a Deployment) or
    NAMESPACE/KIND/NAME."""
    namespace, _, rest = value.partition("/")
    kind, _, name = rest.rpartition("/")
    kind = kind or "deployment"
    if rollback:
        return cmd.Undo(
            deployment=name,
            kind=kind,
            namespace=namespace,
            reason="rollout failed (Roll back button)",
        )
    return cmd.Pause(deployment=name, kind=kind, namespace=namespace)

"""Buttons on a failed rollout's progress message: Roll back and Pause.

Roll back and Pause run exactly as the typed `/rollout undo` and `/rollout pause` would, for
the user who clicked: same policy, same approvals, same audit.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain import commands as cmd
from bot.services.container import Services
from bot.services.rollouts import Actor
from handlers.commands import CommandRunner
from handlers.replies import Replier, user_facing_errors
from handlers.views import blocks

log = logging.getLogger(__name__)


def register(app: App, services: Services, runner: CommandRunner) -> None:
    @app.action(blocks.ROLLBACK_ACTION)
    def handle_rollback_click(
        ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        ack()
        services.background.submit(_run_for_clicker, runner, body, respond, client, rollback=True)

    @app.action(blocks.PAUSE_ACTION)
    def handle_pause_click(
        ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        ack()
        services.background.submit(_run_for_clicker, runner, body, respond, client, rollback=False)


def _run_for_clicker(
    runner: CommandRunner,
    body: dict[str, Any],
    respond: Respond,
    client: WebClient,
    *,
    rollback: bool,
) -> None:
    user = body.get("user") or {}
    user_id = str(user.get("id") or "")
    channel_id = str((body.get("channel") or {}).get("id") or "")
    value = str((body.get("actions") or [{}])[0].get("value") or "")
    # NAMESPACE/NAME (a Deployment) or NAMESPACE/KIND/NAME.
    namespace, _, rest = value.partition("/")
    kind, _, name = rest.rpartition("/")
    kind = kind or "deployment"
    replier = Replier(respond, client, channel_id)
    actor = Actor(user_id, str(user.get("username") or user.get("name") or user_id), channel_id)
    with user_facing_errors(replier.ephemeral):
        command: cmd.Command = (
            cmd.Undo(
                deployment=name,
                kind=kind,
                namespace=namespace,
                reason="rollout failed (Roll back button)",
            )
            if rollback
            else cmd.Pause(deployment=name, kind=kind, namespace=namespace)
        )
        runner.run(command, actor, replier)

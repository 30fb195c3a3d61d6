"""The /rollout slash command's listener: parse, acknowledge, hand the typed command on.

The command is acknowledged as soon as it is parsed and handed on (a parse error or `help` is
the ack's own reply); everything that talks to the cluster, Redis or Slack happens after the
ack (`handlers.answers`), so the 3-second deadline holds whatever the cluster does.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond

from bot.domain import verbs as cmd
from bot.observability.metrics import metrics
from bot.services.use_cases import Services
from handlers.handoff import Dispatch, Reply, RunCommand, hand_on, not_taken_message
from handlers.request_context import actor_of, request_key_of
from handlers.views.message import error_message
from handlers.views.reads import help_message

log = logging.getLogger(__name__)


def register(app: App, services: Services, dispatch: Dispatch) -> None:
    @app.command("/rollout")
    def handle_rollout_command(
        ack: Ack,
        command: dict[str, Any],
        context: BoltContext,
        respond: Respond,
    ) -> None:
        with metrics().time_ack():
            parsed = _parse(ack, command, services.max_replicas)
            if parsed is None:
                return
            actor = actor_of(context)
            reply = Reply.to(respond, actor.channel_id, request_key_of(context))
            work = RunCommand(parsed, actor, reply)
            # The ack leaves when this returns (listeners run in the request's thread), so it
            # can still say that the command was not taken.
            if hand_on(dispatch, work):
                ack()
            else:
                message = not_taken_message(work)
                ack(text=message.text, blocks=message.blocks)


def _parse(ack: Ack, payload: dict[str, Any], max_replicas: int) -> cmd.Command | None:
    """The typed command; None when it was answered in the ack itself (an error, or help)."""
    try:
        parsed = cmd.parse_command(str(payload.get("text") or ""), max_replicas=max_replicas)
    except cmd.CommandError as exc:
        message = error_message(exc.message, exc.usage)
        ack(text=message.text, blocks=message.blocks)
        metrics().command("unknown", "invalid")
        return None
    if isinstance(parsed, cmd.Help):
        message = help_message(parsed.verb)
        ack(text=message.text, blocks=message.blocks)
        metrics().command("help", "ok")
        return None
    return parsed

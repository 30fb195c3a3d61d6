"""Buttons on a failed rollout's progress message (Roll back, Pause), and the automatic
rollback a policy rule asks for with `on_failure: rollback`.

Roll back and Pause run exactly as the typed `/rollout undo` and `/rollout pause` would, for
the user who clicked: same policy, same approvals, same audit.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot import blocks
from bot.deps import Deps
from bot.domain import commands as cmd
from bot.progress import TrackedRollout
from bot.rollouts import Actor
from handlers.commands import CommandRunner
from handlers.replies import Replier, user_facing_errors

log = logging.getLogger(__name__)

BOT_ACTOR_ID = "rollout-bot"


def register(app: App, deps: Deps, runner: CommandRunner) -> None:
    @app.action(blocks.ROLLBACK_ACTION)
    def handle_rollback_click(
        ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        ack()
        deps.background.submit(_run_for_clicker, runner, body, respond, client, rollback=True)

    @app.action(blocks.PAUSE_ACTION)
    def handle_pause_click(
        ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        ack()
        deps.background.submit(_run_for_clicker, runner, body, respond, client, rollback=False)

    if deps.progress is not None:
        deps.progress.auto_rollback = lambda tracked: _auto_rollback(deps, runner, tracked)


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
    namespace, _, name = value.partition("/")
    replier = Replier(respond, client, channel_id)
    actor = Actor(user_id, str(user.get("username") or user.get("name") or user_id), channel_id)
    with user_facing_errors(replier.ephemeral):
        command: cmd.Command = (
            cmd.Undo(
                deployment=name, namespace=namespace, reason="rollout failed (Roll back button)"
            )
            if rollback
            else cmd.Pause(deployment=name, namespace=namespace)
        )
        runner.run(command, actor, replier)


def _auto_rollback(deps: Deps, runner: CommandRunner, tracked: TrackedRollout) -> None:
    """The policy said `on_failure: rollback`: undo to the previous revision, say so, audit."""
    actor = Actor(BOT_ACTOR_ID, BOT_ACTOR_ID, tracked.channel)
    replier = Replier(None, deps.slack, tracked.channel)
    command = cmd.Undo(
        deployment=tracked.deployment,
        namespace=tracked.namespace,
        reason="automatic rollback: the rollout failed (on_failure: rollback)",
    )
    with user_facing_errors(lambda m: replier.in_channel(m, thread_ts=tracked.thread_ts)):
        change = deps.executor.run(command, tracked.namespace, actor)
        replier.in_channel(
            blocks.info_message(
                f":rewind: The rollout of `{tracked.namespace}/{tracked.deployment}` failed, so "
                f"the bot rolled it back automatically (`{change.summary}`)."
            ),
            thread_ts=tracked.thread_ts,
        )
        if change.changed and deps.progress is not None:
            deps.progress.track(
                change,
                tracked.channel,
                tracked.thread_ts,
                title=f"automatic rollback of {change.target}",
            )

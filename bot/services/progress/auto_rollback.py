"""`on_failure: rollback`: the bot itself undoes a failed rollout, audited as the bot; in
impersonate mode it acts in Kubernetes as the person whose change it undoes."""

from __future__ import annotations

from bot.domain import commands as cmd
from bot.domain.tracking import TrackedRollout
from bot.services.execution import Executor
from bot.services.identity import BY_AUTO_ROLLBACK
from bot.services.rollouts import Actor, Change

#: The actor recorded in change-cause and audit for what the bot does on its own.
BOT_ACTOR_ID = "rollout-bot"


class AutoRollback:
    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def __call__(self, tracked: TrackedRollout) -> Change | None:
        actor = Actor(BOT_ACTOR_ID, BOT_ACTOR_ID, tracked.channel)
        command = cmd.Undo(
            deployment=tracked.deployment,
            kind=tracked.kind,
            namespace=tracked.namespace,
            reason="automatic rollback: the rollout failed (on_failure: rollback)",
        )
        return self._executor.run(
            command,
            tracked.namespace,
            actor,
            context=tracked.context or None,
            acting_for=tracked.requester,
            continued_by=BY_AUTO_ROLLBACK,
        )

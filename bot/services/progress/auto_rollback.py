"""`on_failure: rollback`: the bot itself undoes a failed rollout, audited as the bot; in
impersonate mode it acts in Kubernetes as the person whose change it undoes. At most once per
rollout, whichever replica judges it, and the thread is told what happened."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.domain import kinds
from bot.domain import verbs as cmd
from bot.domain.errors import RolloutBotError, StoreError
from bot.domain.targets import Actor, Change
from bot.domain.tracking import TrackedRollout
from bot.services.execution import Executor
from bot.services.identity import BY_AUTO_ROLLBACK
from bot.services.ports import RolloutRegistry
from bot.services.progress.publishing import ProgressPublisher
from bot.services.progress.verdicts import target_of

log = logging.getLogger(__name__)

#: Runs the automatic rollback of a failed rollout; returns the change it made (or None when
#: nothing needed doing). Raises RolloutBotError / StoreError with a message for the thread.
Rollback = Callable[[TrackedRollout], Change | None]

#: The actor recorded in change-cause and audit for what the bot does on its own.
BOT_ACTOR_ID = "rollout-bot"


class AutoRollback:
    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def __call__(self, tracked: TrackedRollout) -> Change | None:
        actor = Actor(BOT_ACTOR_ID, BOT_ACTOR_ID, tracked.channel)
        command = cmd.Undo(
            name=tracked.deployment,
            kind=kinds.as_kind(tracked.kind),
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


def roll_back_once(
    tracked: TrackedRollout,
    rollback: Rollback,
    registry: RolloutRegistry,
    publisher: ProgressPublisher,
) -> Change | None:
    """Run `rollback` for a failed rollout unless another replica already did, and say so in
    its thread; the change made (to be followed), or None."""
    try:
        # At most one automatic rollback per rollout, whichever replica judges it.
        if not registry.first_rollback(tracked.id):
            return None
    except StoreError:
        log.warning("could not record the automatic rollback of %s", tracked.id)
        return None
    try:
        change = rollback(tracked)
    except (RolloutBotError, StoreError) as exc:
        text = exc.user_message if isinstance(exc, RolloutBotError) else exc.message
        publisher.note(tracked.channel, tracked.thread_ts, text, error=True)
        return None
    except Exception as exc:  # the engine must outlive any one rollback
        log.warning("automatic rollback failed: %s", type(exc).__name__)
        return None
    if change is None:
        return None
    publisher.note(
        tracked.channel,
        tracked.thread_ts,
        f":rewind: The rollout of `{target_of(tracked)}` failed, so the "
        f"bot rolled it back automatically (`{change.summary}`).",
    )
    return change

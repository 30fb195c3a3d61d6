"""How a followed rollout is judged: deadlines, stuck pods, and a verdict that is its own.

kubectl's `rollout status` decides for a Deployment; StatefulSets and DaemonSets have no
progress deadline, so the bot sets one and calls a stuck pod a failure. What differs by kind
is the domain's (`bot.domain.kinds`, `bot.domain.status`); this module applies it to a tracked
rollout, kept apart from the tracker's threads and leases.
"""

from __future__ import annotations

from bot.domain import kinds
from bot.domain.audit import AuditEvent
from bot.domain.errors import RolloutBotError
from bot.domain.status import RolloutStatus, followed_status
from bot.domain.targets import Target
from bot.domain.tracking import TrackedRollout
from bot.domain.views import StatusView
from bot.services.ports import Json
from bot.services.rollouts import Rollouts

# A rollout is followed at most this long past its progress deadline, then given up.
GIVE_UP_AFTER = 3600.0
# A pod in one of these states is stuck: a rollout the bot judges itself (no progress
# deadline of its own) fails on it.
STUCK_POD_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


def target_of(tracked: TrackedRollout) -> Target:
    return Target(
        tracked.namespace, tracked.deployment, kinds.as_kind(tracked.kind), tracked.context
    )


def judged_status(
    tracked: TrackedRollout, obj: Json, now: float
) -> tuple[RolloutStatus, float | None]:
    """kubectl's verdict, an earlier rollout's exceeded deadline held back until this one's
    own passed (`followed_status`); also when the held-back failure is due (None: nothing
    is held back)."""
    due = tracked.started_at + tracked.deadline_seconds
    return followed_status(tracked.kind, obj, due=due, now=now)


def current_revision(rollouts: Rollouts, target: Target, obj: Json) -> int | None:
    """The revision a StatefulSet or DaemonSet is at now (None when it cannot be read)."""
    try:
        revisions = rollouts.revisions(target, obj)
    except RolloutBotError:
        return None
    return next((r.number for r in revisions if r.is_current), None)


def failure_details(kind: str, view: StatusView | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Why a failed rollout failed: what its pods are waiting on, and the recent warnings
    (with the kind's advice, if any, for a pod stuck on a broken revision)."""
    if view is None:
        return (), ()
    reasons = tuple(
        sorted(
            {
                p.phase_or_reason
                for p in view.pods
                if p.phase_or_reason not in ("Running", "Terminating")
            }
        )
    )
    warnings = view.warnings
    advice = kinds.stuck_pod_advice(kind)
    if advice and STUCK_POD_REASONS.intersection(reasons):
        warnings = (*warnings, advice)
    return reasons, warnings


def verdict_event(
    tracked: TrackedRollout, verdict: str, revision: int | None, cluster: str
) -> AuditEvent:
    """The audit record of a rollout's end, with the revision it produced."""
    return AuditEvent(
        event="rollout",
        channel=tracked.channel,
        action="rollout",
        cluster=cluster,
        namespace=tracked.namespace,
        deployment=tracked.deployment,
        outcome=verdict,
        revision_after=revision,
        parameters={"title": tracked.title, "kind": tracked.kind},
    )


__all__ = [
    "GIVE_UP_AFTER",
    "STUCK_POD_REASONS",
    "current_revision",
    "failure_details",
    "judged_status",
    "target_of",
    "verdict_event",
]

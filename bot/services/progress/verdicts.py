"""How a followed rollout is judged: deadlines, stuck pods, and a verdict that is its own.

kubectl's `rollout status` decides for a Deployment; StatefulSets and DaemonSets have no
progress deadline, so the bot sets one and calls a stuck pod a failure. Kept apart from the
tracker so the rules read in one place, without the threads and leases that apply them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from bot.domain import kinds
from bot.domain.audit import AuditEvent
from bot.domain.errors import RolloutBotError
from bot.domain.status import RolloutStatus, StatusReason, rollout_status, workload_status
from bot.domain.targets import Target
from bot.domain.tracking import TrackedRollout
from bot.domain.views import StatusView
from bot.services.ports import Json
from bot.services.rollouts import Rollouts

# A rollout is followed at most this long past its progress deadline, then given up.
GIVE_UP_AFTER = 3600.0
# StatefulSets and DaemonSets have no progress deadline of their own; kubectl waits forever.
# The bot calls such a rollout failed when an updated pod is stuck in one of these states
# (kubectl would keep printing "Waiting for N pods to be ready..."), or after this long.
WORKLOAD_DEADLINE_SECONDS = 600
# Kubernetes' documented "forced rollback": the StatefulSet controller does not replace a pod
# stuck on a broken revision by itself, not even after an undo (kubectl's neither).
STATEFULSET_FORCED_ROLLBACK = (
    "A StatefulSet does not replace a pod stuck on a broken revision by itself, not even after "
    "an undo: once the template is good, delete that pod so the controller recreates it."
)
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


def deadline_of(kind: str, spec: Mapping[str, Any]) -> int:
    """Seconds a rollout of this workload may take before it is judged failed."""
    if kind == "deployment":
        return int(spec.get("progressDeadlineSeconds", 600) or 600)
    return WORKLOAD_DEADLINE_SECONDS


def target_of(tracked: TrackedRollout) -> Target:
    return Target(
        tracked.namespace, tracked.deployment, kinds.as_kind(tracked.kind), tracked.context
    )


def judged_status(
    tracked: TrackedRollout, obj: Json, now: float
) -> tuple[RolloutStatus, float | None]:
    """kubectl's verdict, except that a deadline exceeded before this rollout's own deadline
    passed is an earlier rollout's: the controller keeps that condition when the change reuses
    an existing ReplicaSet. Until then the rollout is judged without it. (StatefulSets and
    DaemonSets have no such condition.)

    Also returns when the held-back failure is due (None when nothing is held back)."""
    if tracked.kind != "deployment":
        return workload_status(tracked.kind, obj), None
    status = rollout_status(obj)
    due = tracked.started_at + tracked.deadline_seconds
    if status.reason != StatusReason.DEADLINE_EXCEEDED or now >= due:
        return status, None
    return rollout_status(_without_deadline_exceeded(obj)), due


def current_revision(rollouts: Rollouts, target: Target, obj: Json) -> int | None:
    """The revision a StatefulSet or DaemonSet is at now (None when it cannot be read)."""
    try:
        revisions = rollouts.revisions(target, obj)
    except RolloutBotError:
        return None
    return next((r.number for r in revisions if r.is_current), None)


def failure_details(kind: str, view: StatusView | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Why a failed rollout failed: what its pods are waiting on, and the recent warnings
    (with the forced-rollback advice for a StatefulSet stuck on a broken pod)."""
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
    if kind == "statefulset" and STUCK_POD_REASONS.intersection(reasons):
        warnings = (*warnings, STATEFULSET_FORCED_ROLLBACK)
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


def _without_deadline_exceeded(deployment: Json) -> Json:
    """The Deployment without a ProgressDeadlineExceeded condition (an earlier rollout's)."""
    status = dict(deployment.get("status") or {})
    status["conditions"] = [
        c
        for c in status.get("conditions") or []
        if not (c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded")
    ]
    judged = copy.copy(deployment)
    judged["status"] = status
    return judged


__all__ = [
    "GIVE_UP_AFTER",
    "STATEFULSET_FORCED_ROLLBACK",
    "STUCK_POD_REASONS",
    "WORKLOAD_DEADLINE_SECONDS",
    "current_revision",
    "deadline_of",
    "failure_details",
    "judged_status",
    "target_of",
    "verdict_event",
]

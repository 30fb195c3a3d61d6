"""``kubectl rollout status``'s verdict for a Deployment, a StatefulSet or a DaemonSet.

One pass over the object as the API returns it, rule for rule in kubectl's order
(DeploymentStatusViewer, StatefulSetStatusViewer, DaemonSetStatusViewer); no waiting, no I/O.
The end of the module holds how a rollout the bot follows is judged beyond that: the deadline
each kind gets, an earlier rollout's deadline held back, and the bot's own failure rule for the
kinds kubectl would wait on forever.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NamedTuple

from bot.domain.annotations import REVISION_ANNOTATION
from bot.domain.kinds import has_progress_deadline
from bot.domain.readers import (
    Json,
    annotations_of,
    as_int,
    as_map,
    as_str,
    go_quote,
    is_paused,
    maps,
    name_of,
    opt_int,
    parse_int64,
)


class StatusReason(StrEnum):
    """Which of kubectl's status rules decided the verdict."""

    REVISION_MISMATCH = "revision_mismatch"
    REVISION_UNREADABLE = "revision_unreadable"
    SPEC_NOT_OBSERVED = "spec_not_observed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UPDATING = "updating"
    OLD_REPLICAS_TERMINATING = "old_replicas_terminating"
    UPDATED_NOT_AVAILABLE = "updated_not_available"
    COMPLETE = "complete"
    # StatefulSets and DaemonSets
    STRATEGY_UNSUPPORTED = "strategy_unsupported"
    PODS_NOT_READY = "pods_not_ready"
    PARTITION_UPDATING = "partition_updating"
    REVISION_UPDATING = "revision_updating"
    DAEMONS_UPDATING = "daemons_updating"
    DAEMONS_NOT_AVAILABLE = "daemons_not_available"
    # The object went away while it was followed.
    DELETED = "deleted"


@dataclass(frozen=True)
class RolloutStatus:
    """kubectl's verdict plus the counts behind it.

    ``failed`` covers what kubectl reports as an error (deadline exceeded, revision pin); the
    message is then kubectl's error text. Counts are the Deployment's status fields;
    ``desired`` is None only when spec.replicas is absent, and ``terminating`` is None when the
    cluster does not report terminatingReplicas.
    """

    name: str
    done: bool
    failed: bool
    message: str
    reason: StatusReason
    paused: bool
    desired: int | None
    updated: int
    ready: int
    available: int
    total: int
    unavailable: int
    terminating: int | None
    revision: int | None
    generation: int
    observed_generation: int

    @property
    def waiting_while_paused(self) -> bool:
        """Paused and unfinished: a changed template will not roll out until resumed.

        A paused Deployment still scales, so this alone does not prove the template changed;
        ``paused_template_pending`` does, given the ReplicaSets.
        """
        return self.paused and not self.done and not self.failed


def rollout_status(deployment: Json, revision: int | None = None) -> RolloutStatus:
    """kubectl's DeploymentStatusViewer.Status, rule for rule and in its order."""
    name = name_of(deployment)
    spec = as_map(deployment.get("spec"))
    status = as_map(deployment.get("status"))
    generation = as_int(as_map(deployment.get("metadata")).get("generation"))
    observed = as_int(status.get("observedGeneration"))
    desired = opt_int(spec.get("replicas"))
    updated = as_int(status.get("updatedReplicas"))
    total = as_int(status.get("replicas"))
    available = as_int(status.get("availableReplicas"))

    raw_revision = annotations_of(deployment).get(REVISION_ANNOTATION)
    running_revision: int | None = 0
    revision_error: str | None = None
    if raw_revision is not None:
        try:
            running_revision = parse_int64(raw_revision)
        except ValueError as exc:
            running_revision = None
            revision_error = str(exc)

    def verdict(reason: StatusReason, message: str, *, done: bool = False) -> RolloutStatus:
        failed = reason in (
            StatusReason.DELETED,
            StatusReason.REVISION_MISMATCH,
            StatusReason.REVISION_UNREADABLE,
            StatusReason.DEADLINE_EXCEEDED,
        )
        return RolloutStatus(
            name=name,
            done=done,
            failed=failed,
            message=message,
            reason=reason,
            paused=is_paused(deployment),
            desired=desired,
            updated=updated,
            ready=as_int(status.get("readyReplicas")),
            available=available,
            total=total,
            unavailable=as_int(status.get("unavailableReplicas")),
            terminating=opt_int(status.get("terminatingReplicas")),
            revision=running_revision,
            generation=generation,
            observed_generation=observed,
        )

    quoted = go_quote(name)
    if revision is not None and revision > 0:
        if revision_error is not None:
            return verdict(
                StatusReason.REVISION_UNREADABLE,
                f"cannot get the revision of deployment {quoted}: {revision_error}",
            )
        if revision != running_revision:
            return verdict(
                StatusReason.REVISION_MISMATCH,
                f"desired revision ({revision}) is different from the running revision "
                f"({running_revision})",
            )

    if generation > observed:
        return verdict(
            StatusReason.SPEC_NOT_OBSERVED, "Waiting for deployment spec update to be observed..."
        )

    progressing = next(
        (c for c in maps(status.get("conditions")) if c.get("type") == "Progressing"), None
    )
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return verdict(
            StatusReason.DEADLINE_EXCEEDED, f"deployment {quoted} exceeded its progress deadline"
        )
    waiting = f"Waiting for deployment {quoted} rollout to finish: "
    if desired is not None and updated < desired:
        return verdict(
            StatusReason.UPDATING,
            f"{waiting}{updated} out of {desired} new replicas have been updated...",
        )
    if total > updated:
        return verdict(
            StatusReason.OLD_REPLICAS_TERMINATING,
            f"{waiting}{total - updated} old replicas are pending termination...",
        )
    if available < updated:
        return verdict(
            StatusReason.UPDATED_NOT_AVAILABLE,
            f"{waiting}{available} of {updated} updated replicas are available...",
        )
    return verdict(StatusReason.COMPLETE, f"deployment {quoted} successfully rolled out", done=True)


class _Counts(NamedTuple):
    desired: int | None
    updated: int
    ready: int
    available: int
    total: int


def _status(
    obj: Json,
    reason: StatusReason,
    message: str,
    counts: _Counts,
    *,
    done: bool = False,
    failed: bool = False,
) -> RolloutStatus:
    meta = as_map(obj.get("metadata"))
    desired, updated, ready, available, total = counts
    return RolloutStatus(
        name=name_of(obj),
        done=done,
        failed=failed,
        message=message,
        reason=reason,
        paused=False,
        desired=desired,
        updated=updated,
        ready=ready,
        available=available,
        total=total,
        unavailable=max(0, (desired or 0) - available),
        terminating=None,
        revision=None,
        generation=as_int(meta.get("generation")),
        observed_generation=as_int(as_map(obj.get("status")).get("observedGeneration")),
    )


def _statefulset_status(sts: Json) -> RolloutStatus:
    spec, status = as_map(sts.get("spec")), as_map(sts.get("status"))
    strategy = as_map(spec.get("updateStrategy"))
    replicas = opt_int(spec.get("replicas"))
    updated = as_int(status.get("updatedReplicas"))
    ready = as_int(status.get("readyReplicas"))
    counts = _Counts(
        replicas,
        updated,
        ready,
        as_int(status.get("availableReplicas")),
        as_int(status.get("replicas")),
    )
    if as_str(strategy.get("type")) != "RollingUpdate":
        return _status(
            sts,
            StatusReason.STRATEGY_UNSUPPORTED,
            "rollout status is only available for RollingUpdate strategy type",
            done=True,
            failed=True,
            counts=counts,
        )
    generation = as_int(as_map(sts.get("metadata")).get("generation"))
    observed = as_int(status.get("observedGeneration"))
    if observed == 0 or generation > observed:
        return _status(
            sts,
            StatusReason.SPEC_NOT_OBSERVED,
            "Waiting for statefulset spec update to be observed...",
            counts=counts,
        )
    if replicas is not None and ready < replicas:
        return _status(
            sts,
            StatusReason.PODS_NOT_READY,
            f"Waiting for {replicas - ready} pods to be ready...",
            counts=counts,
        )
    rolling = strategy.get("rollingUpdate")
    if isinstance(rolling, Mapping):
        partition = opt_int(rolling.get("partition"))
        if replicas is not None and partition is not None and updated < replicas - partition:
            return _status(
                sts,
                StatusReason.PARTITION_UPDATING,
                f"Waiting for partitioned roll out to finish: {updated} out of "
                f"{replicas - partition} new pods have been updated...",
                counts=counts,
            )
        return _status(
            sts,
            StatusReason.COMPLETE,
            f"partitioned roll out complete: {updated} new pods have been updated...",
            done=True,
            counts=counts,
        )
    update_revision = as_str(status.get("updateRevision"))
    if update_revision != as_str(status.get("currentRevision")):
        return _status(
            sts,
            StatusReason.REVISION_UPDATING,
            f"waiting for statefulset rolling update to complete {updated} pods at revision "
            f"{update_revision}...",
            counts=counts,
        )
    return _status(
        sts,
        StatusReason.COMPLETE,
        f"statefulset rolling update complete {as_int(status.get('currentReplicas'))} pods at "
        f"revision {as_str(status.get('currentRevision'))}...",
        done=True,
        counts=counts,
    )


def _daemonset_status(ds: Json) -> RolloutStatus:
    spec, status = as_map(ds.get("spec")), as_map(ds.get("status"))
    name = go_quote(name_of(ds))
    desired = as_int(status.get("desiredNumberScheduled"))
    updated = as_int(status.get("updatedNumberScheduled"))
    available = as_int(status.get("numberAvailable"))
    counts = _Counts(
        desired,
        updated,
        as_int(status.get("numberReady")),
        available,
        as_int(status.get("currentNumberScheduled")),
    )
    if as_str(as_map(spec.get("updateStrategy")).get("type")) != "RollingUpdate":
        return _status(
            ds,
            StatusReason.STRATEGY_UNSUPPORTED,
            "rollout status is only available for RollingUpdate strategy type",
            done=True,
            failed=True,
            counts=counts,
        )
    generation = as_int(as_map(ds.get("metadata")).get("generation"))
    if generation > as_int(status.get("observedGeneration")):
        return _status(
            ds,
            StatusReason.SPEC_NOT_OBSERVED,
            "Waiting for daemon set spec update to be observed...",
            counts=counts,
        )
    waiting = f"Waiting for daemon set {name} rollout to finish: "
    if updated < desired:
        return _status(
            ds,
            StatusReason.DAEMONS_UPDATING,
            f"{waiting}{updated} out of {desired} new pods have been updated...",
            counts=counts,
        )
    if available < desired:
        return _status(
            ds,
            StatusReason.DAEMONS_NOT_AVAILABLE,
            f"{waiting}{available} of {desired} updated pods are available...",
            counts=counts,
        )
    return _status(
        ds,
        StatusReason.COMPLETE,
        f"daemon set {name} successfully rolled out",
        done=True,
        counts=counts,
    )


def workload_status(kind: str, obj: Json) -> RolloutStatus:
    """kubectl rollout status's verdict for any of the three kinds (one pass, no waiting).

    For a StatefulSet or DaemonSet whose strategy is not RollingUpdate the verdict is kubectl's
    error (``failed``, reason STRATEGY_UNSUPPORTED). ``revision`` is None for these two kinds:
    their revision lives in ControllerRevisions, not on the object.
    """
    if kind == "statefulset":
        return _statefulset_status(obj)
    if kind == "daemonset":
        return _daemonset_status(obj)
    return rollout_status(obj)


def deleted_status(last_seen: Json, kind: str) -> RolloutStatus:
    """What kubectl rollout status says when the object it waits on is deleted."""
    return replace(
        workload_status(kind, last_seen),
        done=False,
        failed=True,
        reason=StatusReason.DELETED,
        message="object has been deleted",
    )


# -- following a rollout ------------------------------------------------------------------------

#: A Deployment's progress deadline when its spec names none (the API server's default).
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
# StatefulSets and DaemonSets have no progress deadline of their own; kubectl waits forever.
# The bot calls such a rollout failed when an updated pod is stuck (kubectl would keep printing
# "Waiting for N pods to be ready..."), or after this long.
WORKLOAD_DEADLINE_SECONDS = 600


def deadline_of(kind: str, spec: Mapping[str, Any]) -> int:
    """Seconds a rollout of this workload may take before it is judged failed."""
    if has_progress_deadline(kind):
        deadline = spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_SECONDS)
        return int(deadline or DEFAULT_PROGRESS_DEADLINE_SECONDS)
    return WORKLOAD_DEADLINE_SECONDS


def followed_status(
    kind: str, obj: Json, *, due: float, now: float
) -> tuple[RolloutStatus, float | None]:
    """kubectl's verdict on a rollout whose own deadline passes at `due`, except that a
    deadline exceeded before then is an earlier rollout's: the Deployment controller keeps that
    condition when a change reuses an existing ReplicaSet. Until `due` the rollout is judged
    without it. (The kinds without a progress deadline have no such condition.)

    Also returns when the held-back failure is due (None when nothing is held back)."""
    status = workload_status(kind, obj)
    if not has_progress_deadline(kind):
        return status, None
    if status.reason != StatusReason.DEADLINE_EXCEEDED or now >= due:
        return status, None
    return rollout_status(_without_deadline_exceeded(obj)), due


def failed_by_the_bot(
    kind: str,
    status: RolloutStatus,
    *,
    elapsed: float,
    deadline_seconds: float,
    stuck_pod: Callable[[], bool],
) -> bool:
    """Whether the bot calls an unfinished rollout failed where kubectl would wait on: a kind
    without a progress deadline of its own, past the bot's deadline or with a pod stuck
    (`stuck_pod` is asked only when it decides)."""
    if has_progress_deadline(kind) or status.done:
        return False
    return elapsed > deadline_seconds or stuck_pod()


def _without_deadline_exceeded(deployment: Json) -> dict[str, Any]:
    """The Deployment without a ProgressDeadlineExceeded condition (an earlier rollout's)."""
    status = dict(deployment.get("status") or {})
    status["conditions"] = [
        c
        for c in status.get("conditions") or []
        if not (c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded")
    ]
    judged = dict(deployment)
    judged["status"] = status
    return judged

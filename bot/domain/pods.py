"""Pods, ReplicaSets and ControllerRevisions summed up for ``/rollout status``.

``pod_summary`` follows kubectl's pod printer (its READY, STATUS and RESTARTS columns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.domain.annotations import POD_TEMPLATE_HASH_LABEL
from bot.domain.readers import (
    Json,
    as_int,
    as_map,
    as_str,
    images_of,
    maps,
    name_of,
    parse_time,
    template_of,
)
from bot.domain.revisions import replica_set_desired, revision_of


@dataclass(frozen=True)
class PodSummary:
    """One row of ``kubectl get pods``; ``phase_or_reason`` is its STATUS column."""

    name: str
    ready: str
    phase_or_reason: str
    restarts: int
    age_seconds: int | None
    template_hash: str | None
    node: str | None


def _has_condition(status: Json, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in maps(status.get("conditions"))
    )


def _terminated_reason(terminated: Json, prefix: str) -> str:
    reason = as_str(terminated.get("reason"))
    if reason:
        return prefix + reason
    signal = as_int(terminated.get("signal"))
    if signal:
        return f"{prefix}Signal:{signal}"
    return f"{prefix}ExitCode:{as_int(terminated.get('exitCode'))}"


def pod_summary(pod: Json, now: datetime) -> PodSummary:
    """The READY, STATUS and RESTARTS columns, following kubectl's pod printer."""
    metadata = as_map(pod.get("metadata"))
    spec = as_map(pod.get("spec"))
    status = as_map(pod.get("status"))
    init_specs = {as_str(c.get("name")): c for c in maps(spec.get("initContainers"))}
    sidecars = {n for n, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(maps(spec.get("containers"))) + len(sidecars)

    phase = as_str(status.get("phase"))
    reason = as_str(status.get("reason")) or phase
    if any(
        c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
        for c in maps(status.get("conditions"))
    ):
        reason = "SchedulingGated"

    ready = restarts = sidecar_restarts = 0
    initializing = False
    init_statuses = maps(status.get("initContainerStatuses"))
    for index, cs in enumerate(init_statuses):
        count = as_int(cs.get("restartCount"))
        restarts += count
        if as_str(cs.get("name")) in sidecars:
            sidecar_restarts += count
            if cs.get("started") is True:
                ready += 1 if cs.get("ready") is True else 0
                continue
        state = as_map(cs.get("state"))
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(terminated, Mapping) and as_int(terminated.get("exitCode")) == 0:
            continue
        initializing = True
        if isinstance(terminated, Mapping):
            reason = _terminated_reason(terminated, "Init:")
        elif isinstance(waiting, Mapping) and as_str(waiting.get("reason")) not in (
            "",
            "PodInitializing",
        ):
            reason = "Init:" + as_str(waiting.get("reason"))
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        break

    if not initializing or _has_condition(status, "Initialized"):
        restarts = sidecar_restarts
        running = False
        for cs in reversed(maps(status.get("containerStatuses"))):
            restarts += as_int(cs.get("restartCount"))
            state = as_map(cs.get("state"))
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if isinstance(waiting, Mapping) and as_str(waiting.get("reason")):
                reason = as_str(waiting.get("reason"))
            elif isinstance(terminated, Mapping):
                reason = _terminated_reason(terminated, "")
            elif cs.get("ready") is True and isinstance(state.get("running"), Mapping):
                running = True
                ready += 1
        if reason == "Completed" and running:
            reason = "Running" if _has_condition(status, "Ready") else "NotReady"

    if metadata.get("deletionTimestamp"):
        if as_str(status.get("reason")) == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    created = parse_time(metadata.get("creationTimestamp"))
    age = None if created is None else max(0, int((now - created).total_seconds()))
    labels = as_map(metadata.get("labels"))
    return PodSummary(
        name=as_str(metadata.get("name")),
        ready=f"{ready}/{total}",
        phase_or_reason=reason,
        restarts=restarts,
        age_seconds=age,
        template_hash=as_str(labels.get(POD_TEMPLATE_HASH_LABEL)) or None,
        node=as_str(spec.get("nodeName")) or None,
    )


@dataclass(frozen=True)
class ReplicaSetSummary:
    name: str
    revision: int | None
    images: tuple[tuple[str, str], ...]
    desired: int
    ready: int


def replica_set_summary(rs: Json) -> ReplicaSetSummary:
    return ReplicaSetSummary(
        name=name_of(rs),
        revision=revision_of(rs),
        images=images_of(template_of(rs)),
        desired=replica_set_desired(rs),
        ready=as_int(as_map(rs.get("status")).get("readyReplicas")),
    )


def pods_by_revision(pods: Sequence[Json]) -> dict[str, tuple[int, int]]:
    """controller-revision-hash label → (pods, ready pods)."""
    counts: dict[str, tuple[int, int]] = {}
    for pod in pods:
        labels = as_map(as_map(pod.get("metadata")).get("labels"))
        key = as_str(labels.get("controller-revision-hash"))
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in as_map(pod.get("status")).get("conditions") or []
            if isinstance(c, Mapping)
        )
        total, ready_count = counts.get(key, (0, 0))
        counts[key] = (total + 1, ready_count + (1 if ready else 0))
    return counts

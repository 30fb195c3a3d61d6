"""StatefulSet and DaemonSet rollout rules, as kubectl applies them, over plain API dicts.

Pure, like ``bot.domain.rollout`` (which keeps the Deployment rules): inputs are mappings in the
API's JSON shape and are never mutated. kubectl's polymorphichelpers for these two kinds:

- ``workload_status``        StatefulSetStatusViewer / DaemonSetStatusViewer
- ``owned_revisions``, ``workload_history``
                             their history viewers (owned ControllerRevisions; the revision
                             number is the ControllerRevision's ``.revision``)
- ``plan_workload_undo``     StatefulSetRollbacker / DaemonSetRollbacker
- ``check_pause``, ``check_resume``, ``check_scale``
                             kubectl's refusals (pause/resume are Deployment-only; a DaemonSet
                             has no scale subresource)

Restart and set image use the same patches as for a Deployment (``rollout.restart_patch``,
``rollout.plan_set_image``): kubectl's ObjectRestarter and set image treat the three kinds alike,
except that only a Deployment can be paused.

``Kind`` names the three workload kinds; ``parse_kind`` reads kubectl's spellings of them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, NamedTuple

from bot.domain import rollout

# The tolerant readers of API dicts are the Deployment rules' own.
from bot.domain.rollout import (
    RolloutRefused,
    RolloutStatus,
    StatusReason,
    UndoRefused,
    _int,
    _map,
    _name,
    _opt_int,
    _str,
)

__all__ = [
    "KINDS",
    "Kind",
    "KindInfo",
    "WorkloadUndoPlan",
    "check_pause",
    "check_resume",
    "check_scale",
    "deleted_status",
    "go_json",
    "info",
    "owned_revisions",
    "parse_kind",
    "plan_workload_undo",
    "pods_by_revision",
    "revision_template",
    "stored_patch_matches",
    "workload_history",
    "workload_status",
]

Json = Mapping[str, Any]
Kind = Literal["deployment", "statefulset", "daemonset"]
KINDS: Final[tuple[Kind, ...]] = ("deployment", "statefulset", "daemonset")


@dataclass(frozen=True)
class KindInfo:
    kind: Kind
    display: str  # StatefulSet
    resource: str  # statefulsets
    short: str  # sts

    @property
    def group_resource(self) -> str:
        """``statefulsets.apps``, as kubectl names the resource in its errors."""
        return f"{self.resource}.apps"

    def ref(self, name: str) -> str:
        """``statefulset.apps/web``, as kubectl prints the object."""
        return f"{self.kind}.apps/{name}"


_INFO: Final[dict[str, KindInfo]] = {
    "deployment": KindInfo("deployment", "Deployment", "deployments", "deploy"),
    "statefulset": KindInfo("statefulset", "StatefulSet", "statefulsets", "sts"),
    "daemonset": KindInfo("daemonset", "DaemonSet", "daemonsets", "ds"),
}

# Every way kubectl accepts to write the kind before the slash (singular, plural, short name,
# each optionally qualified by the API group).
_SPELLINGS: Final[dict[str, Kind]] = {
    spelling: info.kind
    for info in _INFO.values()
    for base in (info.kind, info.resource, info.short)
    for spelling in (base, f"{base}.apps", f"{base}.v1.apps")
}


def info(kind: str) -> KindInfo:
    """The naming of ``kind`` (one of KINDS); KeyError for anything else."""
    return _INFO[kind]


def parse_kind(spelling: str) -> Kind | None:
    """``sts`` / ``statefulsets`` / ``StatefulSet.apps`` → ``"statefulset"``; None if unknown."""
    return _SPELLINGS.get(spelling.lower())


def _go_quote(text: str) -> str:
    return rollout._go_quote(text)


# --------------------------------------------------------------------------------------------
# status


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
    meta = _map(obj.get("metadata"))
    desired, updated, ready, available, total = counts
    return RolloutStatus(
        name=_name(obj),
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
        generation=_int(meta.get("generation")),
        observed_generation=_int(_map(obj.get("status")).get("observedGeneration")),
    )


def _statefulset_status(sts: Json) -> RolloutStatus:
    spec, status = _map(sts.get("spec")), _map(sts.get("status"))
    strategy = _map(spec.get("updateStrategy"))
    replicas = _opt_int(spec.get("replicas"))
    updated = _int(status.get("updatedReplicas"))
    ready = _int(status.get("readyReplicas"))
    counts = _Counts(
        replicas,
        updated,
        ready,
        _int(status.get("availableReplicas")),
        _int(status.get("replicas")),
    )
    if _str(strategy.get("type")) != "RollingUpdate":
        return _status(
            sts,
            StatusReason.STRATEGY_UNSUPPORTED,
            "rollout status is only available for RollingUpdate strategy type",
            done=True,
            failed=True,
            counts=counts,
        )
    generation = _int(_map(sts.get("metadata")).get("generation"))
    observed = _int(status.get("observedGeneration"))
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
        partition = _opt_int(rolling.get("partition"))
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
    update_revision = _str(status.get("updateRevision"))
    if update_revision != _str(status.get("currentRevision")):
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
        f"statefulset rolling update complete {_int(status.get('currentReplicas'))} pods at "
        f"revision {_str(status.get('currentRevision'))}...",
        done=True,
        counts=counts,
    )


def _daemonset_status(ds: Json) -> RolloutStatus:
    spec, status = _map(ds.get("spec")), _map(ds.get("status"))
    name = _go_quote(_name(ds))
    desired = _int(status.get("desiredNumberScheduled"))
    updated = _int(status.get("updatedNumberScheduled"))
    available = _int(status.get("numberAvailable"))
    counts = _Counts(
        desired,
        updated,
        _int(status.get("numberReady")),
        available,
        _int(status.get("currentNumberScheduled")),
    )
    if _str(_map(spec.get("updateStrategy")).get("type")) != "RollingUpdate":
        return _status(
            ds,
            StatusReason.STRATEGY_UNSUPPORTED,
            "rollout status is only available for RollingUpdate strategy type",
            done=True,
            failed=True,
            counts=counts,
        )
    generation = _int(_map(ds.get("metadata")).get("generation"))
    if generation > _int(status.get("observedGeneration")):
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
    return rollout.rollout_status(obj)


def deleted_status(last_seen: Json, kind: str) -> RolloutStatus:
    """What kubectl rollout status says when the object it waits on is deleted."""
    return replace(
        workload_status(kind, last_seen),
        done=False,
        failed=True,
        reason=StatusReason.DELETED,
        message="object has been deleted",
    )


# --------------------------------------------------------------------------------------------
# history (ControllerRevisions)


def owned_revisions(obj: Json, revisions: Iterable[Json]) -> list[Json]:
    """ControllerRevisions whose controller ownerReference is ``obj`` (metav1.IsControlledBy)."""
    uid = _str(_map(obj.get("metadata")).get("uid"))
    owned = []
    for cr in revisions:
        refs = _map(cr.get("metadata")).get("ownerReferences")
        for ref in refs if isinstance(refs, list) else []:
            if isinstance(ref, Mapping) and ref.get("controller") is True:
                if _str(ref.get("uid")) == uid:
                    owned.append(cr)
                break
    return owned


def revision_template(cr: Json) -> dict[str, Any]:
    """The pod template a ControllerRevision restores: its ``data.spec.template`` without the
    ``$patch: replace`` directive (applying the patch replaces the template wholesale)."""
    template = copy.deepcopy(dict(_map(_map(_map(cr.get("data")).get("spec")).get("template"))))
    template.pop("$patch", None)
    return template


def _template(obj: Json) -> Mapping[str, Any]:
    return _map(_map(obj.get("spec")).get("template"))


def _by_number(obj: Json, revisions: Iterable[Json]) -> dict[int, Json]:
    """kubectl's historyInfo map: revision → ControllerRevision (a duplicate number keeps the
    last one listed, as kubectl's map assignment does)."""
    found: dict[int, Json] = {}
    for cr in owned_revisions(obj, revisions):
        number = _opt_int(cr.get("revision"))
        if number is not None:
            found[number] = cr
    return found


def workload_history(obj: Json, revisions: Iterable[Json]) -> list[rollout.Revision]:
    """``kubectl rollout history`` of a StatefulSet or DaemonSet, ascending.

    The change-cause is the ControllerRevision's own annotation (the controllers copy the
    object's annotations when they create a revision; a reused revision keeps its old ones).
    Unlike a Deployment's, the described template does not carry the change-cause.
    """
    current = _template(obj)
    result = []
    for number, cr in sorted(_by_number(obj, revisions).items()):
        template = revision_template(cr)
        annotations = _map(_map(cr.get("metadata")).get("annotations"))
        result.append(
            rollout.Revision(
                number=number,
                change_cause=_str(annotations.get(rollout.CHANGE_CAUSE_ANNOTATION)) or None,
                images=rollout._images(template),
                created=_str(_map(cr.get("metadata")).get("creationTimestamp")),
                replica_set_name=_name(cr),
                is_current=_same_template(template, current),
                template=template,
                revision_history=(),
                desired=0,
                ready=0,
            )
        )
    # More than one revision can match after a no-op; the highest number is the live one.
    matching = [r for r in result if r.is_current]
    if len(matching) > 1:
        keep = matching[-1].number
        result = [r if r.number == keep or not r.is_current else _not_current(r) for r in result]
    return result


def _not_current(revision: rollout.Revision) -> rollout.Revision:
    return replace(revision, is_current=False)


def _same_template(a: Json, b: Json) -> bool:
    """Semantic equality of two pod templates (what ``daemonSetMatch`` / ``statefulsetMatch``
    intend; they compare serialised bytes, which also differ across client versions)."""
    return rollout.templates_equal_ignoring_hash(_without_creation(a), _without_creation(b))


def _without_creation(template: Json) -> dict[str, Any]:
    result = copy.deepcopy(dict(template))
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("creationTimestamp", None)
    return result


# --------------------------------------------------------------------------------------------
# undo


def go_json(value: Any) -> str:
    """``json.Marshal`` of a decoded JSON value as Go writes it: map keys sorted, no spaces,
    ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, other text as UTF-8."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in _GO_HTML_ESCAPES:
        text = text.replace(raw, escaped)
    return text


_GO_HTML_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def stored_patch_matches(obj: Json, cr: Json) -> bool:
    """kubectl's statefulsetMatch / daemonSetMatch: the object's template, serialised as the
    controller stores a revision (``{"spec":{"template":{..., "$patch":"replace"}}}``), equals
    the revision's stored bytes. A byte comparison, so a revision stored by an older version
    (with ``"creationTimestamp":null``, say) never matches, and kubectl patches it back.

    The stored bytes are read back through JSON; the controller writes them in this same
    canonical form, so re-serialising them gives the bytes it stored.
    """
    template = dict(copy.deepcopy(dict(_template(obj))))
    template["$patch"] = "replace"
    return go_json({"spec": {"template": template}}) == go_json(cr.get("data"))


@dataclass(frozen=True)
class WorkloadUndoPlan:
    """What kubectl's StatefulSetRollbacker / DaemonSetRollbacker would send: the revision's
    stored ``data`` as a strategic-merge patch, or nothing when ``skipped``."""

    requested_revision: int
    target_revision: int
    revision_name: str
    skipped: bool
    message: str
    patch: dict[str, Any]
    template: dict[str, Any]


def plan_workload_undo(
    obj: Json, revisions: Iterable[Json], to_revision: int = 0
) -> WorkloadUndoPlan:
    """kubectl's rollbacker for a StatefulSet or DaemonSet, checks in kubectl's order.

    Raises UndoRefused: ``negative_revision`` / ``revision_not_found`` ("unable to find
    specified revision N in history"), ``no_history`` ("no last revision to roll back to").
    """
    if to_revision < 0:
        raise UndoRefused(
            "negative_revision", f"unable to find specified revision {to_revision} in history"
        )
    owned = owned_revisions(obj, revisions)
    if to_revision == 0 and len(owned) <= 1:
        raise UndoRefused("no_history", "no last revision to roll back to")
    target: Json | None = None
    if to_revision == 0:
        # findHistory: the second-highest revision number.
        target = sorted(owned, key=lambda cr: _int(cr.get("revision")))[-2]
    else:
        target = next((cr for cr in owned if _opt_int(cr.get("revision")) == to_revision), None)
    if target is None:
        raise UndoRefused(
            "revision_not_found", f"unable to find specified revision {to_revision} in history"
        )
    template = revision_template(target)
    skipped = stored_patch_matches(obj, target)
    message = (
        f"skipped rollback (current template already matches revision {to_revision})"
        if skipped
        else "rolled back"
    )
    return WorkloadUndoPlan(
        requested_revision=to_revision,
        target_revision=_int(target.get("revision")),
        revision_name=_name(target),
        skipped=skipped,
        message=message,
        patch=copy.deepcopy(dict(_map(target.get("data")))),
        template=template,
    )


# --------------------------------------------------------------------------------------------
# refusals


def check_pause(kind: str, obj: Json) -> None:
    """Only a Deployment can be paused (kubectl's ObjectPauser)."""
    if kind == "deployment":
        rollout.check_pause(obj)
        return
    raise RolloutRefused(
        "not_supported",
        f"{info(kind).group_resource} {_go_quote(_name(obj))} pausing is not supported",
    )


def check_resume(kind: str, obj: Json) -> None:
    """Only a Deployment can be resumed (kubectl's ObjectResumer)."""
    if kind == "deployment":
        rollout.check_resume(obj)
        return
    raise RolloutRefused(
        "not_supported",
        f"{info(kind).group_resource} {_go_quote(_name(obj))} resuming is not supported",
    )


def check_scale(kind: str, name: str) -> None:
    """A DaemonSet runs one pod per eligible node and has no scale subresource: kubectl scale
    fails with the API server's NotFound for it, in these words."""
    if kind == "daemonset":
        raise RolloutRefused(
            "not_scalable",
            "Error from server (NotFound): the server could not find the requested resource",
        )


def pods_by_revision(pods: Sequence[Json]) -> dict[str, tuple[int, int]]:
    """controller-revision-hash label → (pods, ready pods)."""
    counts: dict[str, tuple[int, int]] = {}
    for pod in pods:
        labels = _map(_map(pod.get("metadata")).get("labels"))
        key = _str(labels.get("controller-revision-hash"))
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in _map(pod.get("status")).get("conditions") or []
            if isinstance(c, Mapping)
        )
        total, ready_count = counts.get(key, (0, 0))
        counts[key] = (total + 1, ready_count + (1 if ready else 0))
    return counts

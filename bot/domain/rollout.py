"""Deployment rollout rules, as kubectl applies them, over plain API dicts.

Pure: no I/O and no clock of its own. Every input is a mapping shaped like the Kubernetes API JSON
(camelCase keys), as returned by a raw GET or by ``ApiClient().sanitize_for_serialization(obj)``:
apps/v1 Deployment and ReplicaSet, v1 Pod, and pod templates. Inputs are never mutated; every
dict returned is a fresh copy.

The rules are kubectl's own (its polymorphichelpers and the deployment controller's util):

- ``rollout_status``            kubectl rollout status (DeploymentStatusViewer)
- ``owned_replica_sets``, ``current_replica_set``, ``history``, ``describe_template``
                                kubectl rollout history (DeploymentHistoryViewer)
- ``plan_undo``                 kubectl rollout undo (DeploymentRollbacker, client side)
- ``plan_set_image``            kubectl set image
- ``restart_patch``, ``pause_patch``, ``resume_patch`` and their ``check_*`` guards
                                kubectl rollout restart | pause | resume
- ``deployment_manifest``       kubectl create deployment
- ``pod_summary``               the STATUS / READY / RESTARTS columns of kubectl get pods

Errors (every one is a refusal: nothing was changed)::

    RolloutRefused            .reason_code, .message
    └── UndoRefused           negative_revision | no_history | revision_not_found | paused
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any, NamedTuple

import yaml

__all__ = [
    "CHANGE_CAUSE_ANNOTATION",
    "POD_TEMPLATE_HASH_LABEL",
    "RESTARTED_AT_ANNOTATION",
    "REVISION_ANNOTATION",
    "REVISION_HISTORY_ANNOTATION",
    "ROLLBACK_KEPT_ANNOTATIONS",
    "ImageChange",
    "PodSummary",
    "ReplicaSetSummary",
    "Revision",
    "RolloutRefused",
    "RolloutStatus",
    "SetImagePlan",
    "StatusReason",
    "TemplateDiff",
    "UndoPlan",
    "UndoRefused",
    "check_pause",
    "check_restart",
    "check_resume",
    "container_name_for_image",
    "current_replica_set",
    "deployment_manifest",
    "describe_template",
    "history",
    "owned_replica_sets",
    "pause_patch",
    "paused_template_pending",
    "plan_set_image",
    "plan_undo",
    "pod_summary",
    "replica_set_summary",
    "restart_patch",
    "resume_patch",
    "revision_of",
    "rollout_status",
    "set_image_pairs",
    "template_diff",
    "templates_equal_ignoring_hash",
    "undo_warnings",
    "with_change_cause",
]

Json = Mapping[str, Any]

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"

# kubectl's annotationsToSkip (rollback.go): kept from the Deployment on undo, never taken from
# the target ReplicaSet. The controller skips the same keys when copying Deployment → RS.
ROLLBACK_KEPT_ANNOTATIONS: tuple[str, ...] = (
    LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
)

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_GO_INT = re.compile(r"[+-]?[0-9]+")
# The zero metav1.Time sorts before every real timestamp.
_ZERO_TIME = datetime.min.replace(tzinfo=UTC)
# A DNS-1123 label is at most 63 characters (RFC 1123).
_DNS_LABEL_MAX = 63
# DescribePodTemplate's maxAnnotationLen: longer values are put on their own, shortened lines.
_MAX_ANNOTATION_LEN = 140


# --------------------------------------------------------------------------------------------
# Errors


class RolloutRefused(Exception):
    """A rollout action was refused before anything was sent; ``message`` is kubectl's text."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


class UndoRefused(RolloutRefused):
    """``rollout undo`` cannot proceed (reason codes listed in the module docstring)."""


# --------------------------------------------------------------------------------------------
# Small readers over API dicts. Go's JSON omits zero counts and empty maps, so absent means zero.


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _maps(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in _seq(value) if isinstance(item, Mapping)]


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _name(obj: Json) -> str:
    return _str(_map(obj.get("metadata")).get("name"))


def _annotations(obj: Json) -> dict[str, str]:
    raw = _map(_map(obj.get("metadata")).get("annotations"))
    return {str(k): _str(v) for k, v in raw.items()}


def _template(obj: Json) -> Mapping[str, Any]:
    return _map(_map(obj.get("spec")).get("template"))


def _is_paused(deployment: Json) -> bool:
    return _map(deployment.get("spec")).get("paused") is True


def _go_quote(text: str) -> str:
    """Go's ``%q`` (strconv.Quote) for the strings kubectl puts in its messages."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _parse_int64(text: str) -> int:
    """``strconv.ParseInt(text, 10, 64)``: raises ValueError carrying Go's error text."""
    if not _GO_INT.fullmatch(text):
        raise ValueError(f"strconv.ParseInt: parsing {_go_quote(text)}: invalid syntax")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"strconv.ParseInt: parsing {_go_quote(text)}: value out of range")
    return value


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _creation_order(obj: Json) -> tuple[datetime, str]:
    """controller.ReplicaSetsByCreationTimestamp: creationTimestamp, then name."""
    created = _parse_time(_map(obj.get("metadata")).get("creationTimestamp"))
    return (created or _ZERO_TIME, _name(obj))


def _images(template: Json) -> tuple[tuple[str, str], ...]:
    """(container, image) pairs: containers first, then init containers."""
    spec = _map(template.get("spec"))
    pairs = [
        (_str(c.get("name")), _str(c.get("image")))
        for key in ("containers", "initContainers")
        for c in _maps(spec.get(key))
    ]
    return tuple(pairs)


# --------------------------------------------------------------------------------------------
# 1. rollout status


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
    # StatefulSets and DaemonSets (bot.domain.workloads)
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
    name = _name(deployment)
    spec = _map(deployment.get("spec"))
    status = _map(deployment.get("status"))
    generation = _int(_map(deployment.get("metadata")).get("generation"))
    observed = _int(status.get("observedGeneration"))
    desired = _opt_int(spec.get("replicas"))
    updated = _int(status.get("updatedReplicas"))
    total = _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))

    raw_revision = _annotations(deployment).get(REVISION_ANNOTATION)
    running_revision: int | None = 0
    revision_error: str | None = None
    if raw_revision is not None:
        try:
            running_revision = _parse_int64(raw_revision)
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
            paused=_is_paused(deployment),
            desired=desired,
            updated=updated,
            ready=_int(status.get("readyReplicas")),
            available=available,
            total=total,
            unavailable=_int(status.get("unavailableReplicas")),
            terminating=_opt_int(status.get("terminatingReplicas")),
            revision=running_revision,
            generation=generation,
            observed_generation=observed,
        )

    quoted = _go_quote(name)
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
        (c for c in _maps(status.get("conditions")) if c.get("type") == "Progressing"), None
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


# --------------------------------------------------------------------------------------------
# 2. Revisions (kubectl rollout history)


def owned_replica_sets(deployment: Json, replica_sets: Iterable[Json]) -> list[Json]:
    """The ReplicaSets whose controller ownerReference is this Deployment (metav1.IsControlledBy).

    kubectl also lists by the Deployment's selector; that is the caller's LIST. A controlled RS
    always matches it, since apps/v1 selectors are immutable and the controller orphans strays.
    """
    uid = _str(_map(deployment.get("metadata")).get("uid"))
    owned = []
    for rs in replica_sets:
        refs = _maps(_map(rs.get("metadata")).get("ownerReferences"))
        controller = next((ref for ref in refs if ref.get("controller") is True), None)
        if controller is not None and _str(controller.get("uid")) == uid:
            owned.append(rs)
    return owned


def revision_of(obj: Json) -> int | None:
    """The ``deployment.kubernetes.io/revision`` annotation: missing → 0, unparsable → None."""
    raw = _annotations(obj).get(REVISION_ANNOTATION)
    if raw is None:
        return 0
    try:
        return _parse_int64(raw)
    except ValueError:
        return None


def _prune(value: Any) -> Any:
    """Drop nulls and empty maps/lists, recursively.

    apimachinery's semantic DeepEqual treats a nil and an empty map or slice as equal, and Go's
    JSON omits both, so ``labels: {}`` and no labels are the same template. One approximation:
    a pointer to an empty struct (e.g. ``securityContext: {}``) also counts as absent here.
    """
    if isinstance(value, Mapping):
        pruned = {str(k): _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {} and v != []}
    if isinstance(value, list | tuple):
        return [_prune(item) for item in value]
    return value


def _without_hash(template: Json) -> dict[str, Any]:
    result = copy.deepcopy(dict(template))
    labels = _map(result.get("metadata")).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return result


def templates_equal_ignoring_hash(a: Json, b: Json) -> bool:
    """EqualIgnoreHash: pod templates equal once the pod-template-hash label is removed.

    Both sides come back from the API server defaulted and with canonical quantities, so a deep
    comparison of the dicts matches the server's semantic comparison.
    """
    return bool(_prune(_without_hash(a)) == _prune(_without_hash(b)))


def current_replica_set(deployment: Json, owned: Sequence[Json]) -> Json | None:
    """FindNewReplicaSet: the oldest owned RS (by creationTimestamp, then name) whose template
    equals the Deployment's, ignoring pod-template-hash."""
    wanted = _template(deployment)
    for rs in sorted(owned, key=_creation_order):
        if templates_equal_ignoring_hash(_template(rs), wanted):
            return rs
    return None


def paused_template_pending(deployment: Json, replica_sets: Iterable[Json]) -> bool:
    """Paused, and no ReplicaSet has the current template: nothing rolls out until resume."""
    owned = owned_replica_sets(deployment, replica_sets)
    return _is_paused(deployment) and current_replica_set(deployment, owned) is None


def _kubectl_order(
    deployment: Json, replica_sets: Iterable[Json]
) -> tuple[list[Json], Json | None]:
    """GetAllReplicaSets as history and undo use it: old RSes by creation, then the new one."""
    owned = sorted(owned_replica_sets(deployment, replica_sets), key=_creation_order)
    new = current_replica_set(deployment, owned)
    ordered = [rs for rs in owned if rs is not new]
    if new is not None:
        ordered.append(new)
    return ordered, new


@dataclass(frozen=True)
class Revision:
    """One line of ``kubectl rollout history``, with what the bot shows beside it.

    ``template`` is the RS's pod template with its change-cause copied into the template
    annotations, as kubectl does before describing a revision. ``revision_history`` lists the
    numbers this RS carried before the controller reused it (the revision-history annotation,
    which kubectl itself ignores).
    """

    number: int
    change_cause: str | None
    images: tuple[tuple[str, str], ...]
    created: str
    replica_set_name: str
    is_current: bool
    template: dict[str, Any]
    revision_history: tuple[int, ...]
    desired: int
    ready: int


def _revision_history(rs: Json) -> tuple[int, ...]:
    numbers = []
    for part in _annotations(rs).get(REVISION_HISTORY_ANNOTATION, "").split(","):
        try:
            numbers.append(_parse_int64(part.strip()))
        except ValueError:
            continue
    return tuple(numbers)


def _rs_desired(rs: Json) -> int:
    # apps/v1 defaults ReplicaSet spec.replicas to 1; the API always returns it.
    return _int(_map(rs.get("spec")).get("replicas"), 1)


def history(deployment: Json, replica_sets: Iterable[Json]) -> list[Revision]:
    """kubectl's revision map, ascending. Only owned ReplicaSets count; unparsable ones are skipped.

    Like kubectl's map, a duplicated revision number keeps the RS that comes last in kubectl's
    order (old ones by creation, the current one last).
    """
    ordered, new = _kubectl_order(deployment, replica_sets)
    by_number: dict[int, Revision] = {}
    for rs in ordered:
        number = revision_of(rs)
        if number is None:
            continue
        template = copy.deepcopy(dict(_template(rs)))
        rs_cause = _annotations(rs).get(CHANGE_CAUSE_ANNOTATION)
        if rs_cause:
            if not isinstance(template.get("metadata"), dict):
                template["metadata"] = {}
            if not isinstance(template["metadata"].get("annotations"), dict):
                template["metadata"]["annotations"] = {}
            template["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] = rs_cause
        # kubectl's column reads the template's annotations with the RS's cause laid over
        # them, so a cause set in the pod template shows when the RS has none.
        cause = _str(_annotations(template).get(CHANGE_CAUSE_ANNOTATION)) or None
        by_number[number] = Revision(
            number=number,
            change_cause=cause,
            images=_images(_template(rs)),
            created=_str(_map(rs.get("metadata")).get("creationTimestamp")),
            replica_set_name=_name(rs),
            is_current=rs is new,
            template=template,
            revision_history=_revision_history(rs),
            desired=_rs_desired(rs),
            ready=_int(_map(rs.get("status")).get("readyReplicas")),
        )
    return [by_number[n] for n in sorted(by_number)]


# --------------------------------------------------------------------------------------------
# 3. Undo (kubectl rollout undo, client side)


@dataclass(frozen=True)
class UndoPlan:
    """What ``kubectl rollout undo`` would send.

    When ``skipped`` the current template already matches the target: send nothing and report
    ``message``. Otherwise send ``json_patch`` as a JSON Patch (a list body makes the Python
    client use application/json-patch+json). ``warnings`` carries kubectl's stderr warnings.
    """

    deployment_name: str
    requested_revision: int
    target_revision: int
    target_replica_set: str
    skipped: bool
    message: str
    template: dict[str, Any]
    annotations: dict[str, str]
    warnings: tuple[str, ...] = ()

    @property
    def json_patch(self) -> list[dict[str, Any]]:
        return [
            {"op": "replace", "path": "/spec/template", "value": copy.deepcopy(self.template)},
            {"op": "replace", "path": "/metadata/annotations", "value": dict(self.annotations)},
        ]

    def with_change_cause(self, text: str) -> UndoPlan:
        # Deliberate deviation from kubectl, in the change-cause text only: kubectl restores the
        # target RS's own change-cause; the bot records who rolled back and why.
        return replace(self, annotations={**self.annotations, CHANGE_CAUSE_ANNOTATION: text})


def undo_warnings(obj: Json, resource: str) -> tuple[str, ...]:
    """What ``kubectl rollout undo`` prints on stderr for an object once managed with
    ``kubectl apply`` (any kind, ``resource`` as ``statefulsets``), before it plans anything:
    so also when the rollback is skipped or refused."""
    if LAST_APPLIED_ANNOTATION not in _annotations(obj):
        return ()
    return (
        f"Warning: resource {resource}/{_name(obj)} was previously managed with 'kubectl "
        f"apply'. Rolling back will not update the {LAST_APPLIED_ANNOTATION} annotation, which "
        "may cause unexpected behavior on future 'kubectl apply' operations. Consider using "
        "'kubectl apply' with your previous configuration file instead.",
    )


def _undo_target(name: str, ordered: Sequence[Json], to_revision: int) -> tuple[Json, int]:
    """kubectl's deploymentRevision over (old RSes by creation, then the new RS)."""
    # kubectl starts both trackers at revision -1 with no RS.
    latest: tuple[Json | None, int] = (None, -1)
    previous: tuple[Json | None, int] = (None, -1)
    for rs in ordered:
        number = revision_of(rs)
        if number is None:
            continue
        if to_revision > 0:
            if number == to_revision:
                return rs, number
        elif latest[1] < number:
            previous, latest = latest, (rs, number)
        elif previous[1] < number:
            previous = (rs, number)
    if to_revision > 0:
        raise UndoRefused(
            "revision_not_found", f"unable to find specified revision {to_revision} in history"
        )
    found, number = previous
    if found is None:
        raise UndoRefused(
            "no_history", f"no rollout history found for deployment {_go_quote(name)}"
        )
    return found, number


def plan_undo(deployment: Json, replica_sets: Iterable[Json], to_revision: int = 0) -> UndoPlan:
    """kubectl's DeploymentRollbacker.Rollback, checks in kubectl's order. Raises UndoRefused."""
    name = _name(deployment)
    if to_revision < 0:
        raise UndoRefused(
            "negative_revision", f"unable to find specified revision {to_revision} in history"
        )
    ordered, _ = _kubectl_order(deployment, replica_sets)
    target, target_number = _undo_target(name, ordered, to_revision)
    if _is_paused(deployment):
        raise UndoRefused(
            "paused",
            "you cannot rollback a paused deployment; resume it first with "
            "'kubectl rollout resume' and try again",
        )

    skipped = templates_equal_ignoring_hash(_template(target), _template(deployment))
    template = _without_hash(_template(target))
    current = _annotations(deployment)
    annotations = {k: current[k] for k in ROLLBACK_KEPT_ANNOTATIONS if k in current}
    annotations.update(
        (k, v) for k, v in _annotations(target).items() if k not in ROLLBACK_KEPT_ANNOTATIONS
    )
    warnings = undo_warnings(deployment, "deployments")
    message = (
        f"skipped rollback (current template already matches revision {to_revision})"
        if skipped
        else "rolled back"
    )
    return UndoPlan(
        deployment_name=name,
        requested_revision=to_revision,
        target_revision=target_number,
        target_replica_set=_name(target),
        skipped=skipped,
        message=message,
        template=template,
        annotations=annotations,
        warnings=warnings,
    )


# --------------------------------------------------------------------------------------------
# 4. set image


class ImageChange(NamedTuple):
    container: str
    old: str
    new: str


@dataclass(frozen=True)
class SetImagePlan:
    """``patch`` is a strategic-merge body, or None when no image changes (send nothing, and
    kubectl prints nothing). ``errors`` are kubectl's errors for the containers it could not
    find (``error: unable to find container named "x"``): kubectl still changes the ones it
    found, and then exits 1 with these.

    kubectl's computed patch also carries ``$setElementOrder/...`` lists; they only pin the
    existing order, which a merge by container name keeps anyway, so they are left out.
    """

    changes: tuple[ImageChange, ...]
    patch: dict[str, Any] | None
    errors: tuple[str, ...] = ()


def set_image_pairs(images: Sequence[tuple[str, str]]) -> dict[str, str]:
    """kubectl set image's CONTAINER=IMAGE pairs as it reads them: into a map, so a container
    named twice keeps its last image; ``*`` beside any other container is refused."""
    if not images:
        raise RolloutRefused("no_images", "at least one image update is required")
    wanted = dict(images)
    if len(wanted) > 1 and "*" in wanted:
        raise RolloutRefused(
            "wildcard_with_pairs",
            "all containers are already specified by *, but saw more than one "
            "container_name=container_image pairs",
        )
    return wanted


def plan_set_image(deployment: Json, images: Sequence[tuple[str, str]]) -> SetImagePlan:
    """kubectl set image: each (container, image) pair updates matching containers and init
    containers; ``*`` matches all. A container it cannot find is an error beside the changes
    (``errors``), as in kubectl. Raises RolloutRefused for pairs kubectl refuses outright."""
    wanted = set_image_pairs(images)
    pod_spec = _map(_template(deployment).get("spec"))
    lists = {key: _maps(pod_spec.get(key)) for key in ("containers", "initContainers")}
    names = [_str(c.get("name")) for key in lists for c in lists[key]]
    errors = []
    for container, image in wanted.items():
        if not container or not image:
            raise RolloutRefused("invalid_image", f"invalid image update: {container}={image}")
        if not names or (container != "*" and container not in names):
            errors.append(f"error: unable to find container named {_go_quote(container)}")
    if "*" in wanted:
        wanted = dict.fromkeys(names, wanted["*"])

    changes: list[ImageChange] = []
    pod_patch: dict[str, Any] = {}
    for key, containers in lists.items():
        patched = []
        for c in containers:
            name, old = _str(c.get("name")), _str(c.get("image"))
            new = wanted.get(name, old)
            if new != old:
                changes.append(ImageChange(name, old, new))
                patched.append({"name": name, "image": new})
        if patched:
            pod_patch[key] = patched
    patch = {"spec": {"template": {"spec": pod_patch}}} if pod_patch else None
    return SetImagePlan(changes=tuple(changes), patch=patch, errors=tuple(errors))


def with_change_cause(patch: Json, text: str) -> dict[str, Any]:
    """A copy of a strategic-merge patch that also sets the Deployment's change-cause.

    Setting it in the same patch as the template change matters: the controller copies the
    Deployment's annotations to the new RS, so a stale cause would label the wrong revision.
    """
    result = copy.deepcopy(dict(patch))
    metadata = result.setdefault("metadata", {})
    annotations = metadata.setdefault("annotations", {})
    annotations[CHANGE_CAUSE_ANNOTATION] = text
    return result


# --------------------------------------------------------------------------------------------
# 5. restart, pause, resume


def _rfc3339(moment: datetime) -> str:
    """Go's ``time.Format(time.RFC3339)``: to the second, ``Z`` for a zero offset."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    offset = moment.utcoffset()
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if not offset:
        return stamp + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{stamp}{sign}{hours:02d}:{mins:02d}"


def restart_patch(now: datetime) -> dict[str, Any]:
    """kubectl rollout restart: stamp the template. A naive ``now`` is taken as local time;
    an aware one is written in its own offset (kubectl writes the machine's local time)."""
    annotations = {RESTARTED_AT_ANNOTATION: _rfc3339(now)}
    return {"spec": {"template": {"metadata": {"annotations": annotations}}}}


def check_restart(deployment: Json, now: datetime | None = None) -> None:
    """Refuse a restart kubectl would refuse. With ``now``, also refuse a second restart within
    the same second, which kubectl reports because its patch would be empty."""
    name = _name(deployment)
    if _is_paused(deployment):
        raise RolloutRefused(
            "paused",
            f"deployments.apps {_go_quote(name)} can't restart paused deployment (run rollout "
            "resume first)",
        )
    if now is not None:
        current = _str(
            _map(_map(_template(deployment).get("metadata")).get("annotations")).get(
                RESTARTED_AT_ANNOTATION
            )
        )
        if current == _rfc3339(now):
            raise RolloutRefused(
                "restart_too_soon",
                f"failed to create patch for {name}: if restart has already been triggered "
                "within the past second, please wait before attempting to trigger another",
            )


def pause_patch() -> dict[str, Any]:
    return {"spec": {"paused": True}}


def resume_patch() -> dict[str, Any]:
    # kubectl's computed patch is {"spec":{"paused":null}} (paused is omitempty). An explicit
    # false is equivalent on the server and cannot be lost by a serializer that drops None.
    return {"spec": {"paused": False}}


def check_pause(deployment: Json) -> None:
    if _is_paused(deployment):
        raise RolloutRefused(
            "already_paused", f"deployments.apps {_go_quote(_name(deployment))} is already paused"
        )


def check_resume(deployment: Json) -> None:
    if not _is_paused(deployment):
        raise RolloutRefused(
            "not_paused", f"deployments.apps {_go_quote(_name(deployment))} is not paused"
        )


# --------------------------------------------------------------------------------------------
# 6. create


def container_name_for_image(image: str) -> str:
    """kubectl create deployment's container name: the image's last path segment without tag or
    digest, made a valid DNS-1123 label.

    kubectl only rewrites ``_`` and ``.`` and then appends a random suffix; this lowercases and
    rewrites every invalid character instead, and stays deterministic (there is one container).
    """
    name = image.split("/")[-1].split(":")[0].split("@")[0]
    name = re.sub(r"[^a-z0-9-]", "-", name.lower())
    name = name.strip("-")[:_DNS_LABEL_MAX].rstrip("-")
    return name or "app"


def deployment_manifest(
    name: str, image: str, replicas: int = 1, namespace: str | None = None
) -> dict[str, Any]:
    """What ``kubectl create deployment NAME --image=IMAGE --replicas=N`` would create."""
    if replicas < 0:
        raise ValueError("replicas must be zero or more")
    metadata: dict[str, Any] = {"name": name, "labels": {"app": name}}
    if namespace:
        metadata["namespace"] = namespace
    container = {"name": container_name_for_image(image), "image": image, "resources": {}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }


# --------------------------------------------------------------------------------------------
# 7. Template diff


@dataclass(frozen=True)
class TemplateDiff:
    text: str
    lines_omitted: int
    changed: bool


def _display_template(template: Json, ignore_change_cause: bool) -> Any:
    shown = _without_hash(template)
    annotations = _map(shown.get("metadata")).get("annotations")
    if ignore_change_cause and isinstance(annotations, dict):
        annotations.pop(CHANGE_CAUSE_ANNOTATION, None)
    return _prune(shown)


def _yaml_lines(value: Any) -> list[str]:
    # A wide line limit keeps long strings (args, env values) on one line, so the diff shows
    # the changed value rather than a reflowed paragraph.
    text = yaml.safe_dump(
        value, default_flow_style=False, sort_keys=True, allow_unicode=True, width=4096
    )
    return text.splitlines()


def template_diff(
    old_template: Json,
    new_template: Json,
    old_label: str,
    new_label: str,
    max_lines: int = 60,
    *,
    ignore_change_cause: bool = True,
) -> TemplateDiff:
    """A unified diff of two pod templates as sorted YAML, without the pod-template-hash label,
    nulls, empty maps and lists (and by default the change-cause annotation). Longer than
    ``max_lines`` lines, it is cut and ``lines_omitted`` says how many lines were left out."""
    if max_lines < 0:
        raise ValueError("max_lines must be zero or more")
    lines = list(
        difflib.unified_diff(
            _yaml_lines(_display_template(old_template, ignore_change_cause)),
            _yaml_lines(_display_template(new_template, ignore_change_cause)),
            fromfile=old_label,
            tofile=new_label,
            lineterm="",
        )
    )
    omitted = max(0, len(lines) - max_lines)
    return TemplateDiff(
        text="\n".join(lines[:max_lines]), lines_omitted=omitted, changed=bool(lines)
    )


# --------------------------------------------------------------------------------------------
# 8. Pods and ReplicaSets for status


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
        c.get("type") == kind and c.get("status") == "True" for c in _maps(status.get("conditions"))
    )


def _terminated_reason(terminated: Json, prefix: str) -> str:
    reason = _str(terminated.get("reason"))
    if reason:
        return prefix + reason
    signal = _int(terminated.get("signal"))
    if signal:
        return f"{prefix}Signal:{signal}"
    return f"{prefix}ExitCode:{_int(terminated.get('exitCode'))}"


def pod_summary(pod: Json, now: datetime) -> PodSummary:
    """The READY, STATUS and RESTARTS columns, following kubectl's pod printer."""
    metadata = _map(pod.get("metadata"))
    spec = _map(pod.get("spec"))
    status = _map(pod.get("status"))
    init_specs = {_str(c.get("name")): c for c in _maps(spec.get("initContainers"))}
    sidecars = {n for n, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(_maps(spec.get("containers"))) + len(sidecars)

    phase = _str(status.get("phase"))
    reason = _str(status.get("reason")) or phase
    if any(
        c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
        for c in _maps(status.get("conditions"))
    ):
        reason = "SchedulingGated"

    ready = restarts = sidecar_restarts = 0
    initializing = False
    init_statuses = _maps(status.get("initContainerStatuses"))
    for index, cs in enumerate(init_statuses):
        count = _int(cs.get("restartCount"))
        restarts += count
        if _str(cs.get("name")) in sidecars:
            sidecar_restarts += count
            if cs.get("started") is True:
                ready += 1 if cs.get("ready") is True else 0
                continue
        state = _map(cs.get("state"))
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(terminated, Mapping) and _int(terminated.get("exitCode")) == 0:
            continue
        initializing = True
        if isinstance(terminated, Mapping):
            reason = _terminated_reason(terminated, "Init:")
        elif isinstance(waiting, Mapping) and _str(waiting.get("reason")) not in (
            "",
            "PodInitializing",
        ):
            reason = "Init:" + _str(waiting.get("reason"))
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        break

    if not initializing or _has_condition(status, "Initialized"):
        restarts = sidecar_restarts
        running = False
        for cs in reversed(_maps(status.get("containerStatuses"))):
            restarts += _int(cs.get("restartCount"))
            state = _map(cs.get("state"))
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if isinstance(waiting, Mapping) and _str(waiting.get("reason")):
                reason = _str(waiting.get("reason"))
            elif isinstance(terminated, Mapping):
                reason = _terminated_reason(terminated, "")
            elif cs.get("ready") is True and isinstance(state.get("running"), Mapping):
                running = True
                ready += 1
        if reason == "Completed" and running:
            reason = "Running" if _has_condition(status, "Ready") else "NotReady"

    if metadata.get("deletionTimestamp"):
        if _str(status.get("reason")) == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    created = _parse_time(metadata.get("creationTimestamp"))
    age = None if created is None else max(0, int((now - created).total_seconds()))
    labels = _map(metadata.get("labels"))
    return PodSummary(
        name=_str(metadata.get("name")),
        ready=f"{ready}/{total}",
        phase_or_reason=reason,
        restarts=restarts,
        age_seconds=age,
        template_hash=_str(labels.get(POD_TEMPLATE_HASH_LABEL)) or None,
        node=_str(spec.get("nodeName")) or None,
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
        name=_name(rs),
        revision=revision_of(rs),
        images=_images(_template(rs)),
        desired=_rs_desired(rs),
        ready=_int(_map(rs.get("status")).get("readyReplicas")),
    )


# --------------------------------------------------------------------------------------------
# 9. describe_template (kubectl's DescribePodTemplate, a subset)


def _multiline_pairs(title: str, items: Mapping[str, str], sep: str) -> list[str]:
    if not items:
        return [f"{title}:\t<none>"]
    lines = []
    for i, key in enumerate(sorted(items)):
        lines.append(f"{title}:\t{key}{sep}{items[key]}" if i == 0 else f"\t{key}{sep}{items[key]}")
    return lines


def _go_len(text: str) -> int:
    """Go's ``len`` of a string: its UTF-8 bytes, which kubectl's layout counts."""
    return len(text.encode("utf-8"))


def _go_cut(text: str, limit: int) -> str:
    """Go's ``s[:limit]`` on the UTF-8 bytes. A cut inside a character leaves a broken byte,
    shown as U+FFFD (what a terminal shows for kubectl's output)."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="replace")


def _shorten(text: str, limit: int) -> str:
    """describe's ``shorten``: more than ``limit`` bytes are cut there and get ``...``."""
    return _go_cut(text, limit) + "..." if _go_len(text) > limit else text


def _annotation_lines(annotations: Mapping[str, str]) -> list[str]:
    """printAnnotationsMultiline: the last-applied-configuration is never shown; a value longer
    than the line allows (in bytes) or of several lines goes on its own, shortened lines."""
    keys = sorted(k for k in annotations if k != LAST_APPLIED_ANNOTATION)
    if not keys:
        return ["  Annotations:\t<none>"]
    lines = []
    for i, key in enumerate(keys):
        lead = "  Annotations:\t" if i == 0 else "\t"
        value = annotations[key].removesuffix("\n")
        if _go_len(value) + _go_len(key) + 2 > _MAX_ANNOTATION_LEN or "\n" in value:
            lines.append(f"{lead}{key}:")
            lines.extend(
                f"\t  {_shorten(part, _MAX_ANNOTATION_LEN - 2)}" for part in value.split("\n")
            )
        else:
            lines.append(f"{lead}{key}: {value}")
    return lines


def _probe_text(probe: Json) -> str:
    attrs = (
        f"delay={_int(probe.get('initialDelaySeconds'))}s "
        f"timeout={_int(probe.get('timeoutSeconds'))}s "
        f"period={_int(probe.get('periodSeconds'))}s "
        f"#success={_int(probe.get('successThreshold'))} "
        f"#failure={_int(probe.get('failureThreshold'))}"
    )
    if isinstance(probe.get("exec"), Mapping):
        command = " ".join(str(c) for c in _seq(_map(probe["exec"]).get("command")))
        return f"exec [{command}] {attrs}"
    if isinstance(probe.get("httpGet"), Mapping):
        return f"http-get {_http_get_url(_map(probe['httpGet']))} {attrs}"
    if isinstance(probe.get("tcpSocket"), Mapping):
        tcp = _map(probe["tcpSocket"])
        return f"tcp-socket {_str(tcp.get('host'))}:{tcp.get('port', '')} {attrs}"
    if isinstance(probe.get("grpc"), Mapping):
        grpc = _map(probe["grpc"])
        return f"grpc <pod>:{_int(grpc.get('port'))} {_str(grpc.get('service'))} {attrs}"
    return f"unknown {attrs}"


def _http_get_url(get: Json) -> str:
    """The probe's url.URL{Scheme, Host: JoinHostPort(host, port), Path}.String(): the path
    escaped as Go escapes one, and given a leading ``/`` after the host."""
    host, port = _str(get.get("host")), str(get.get("port", ""))
    if port:
        host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    scheme = _str(get.get("scheme")).lower()
    path = urllib.parse.quote(_str(get.get("path")), safe="$&+,/:;=@")
    if path and not path.startswith("/") and host:
        path = "/" + path
    authority = f"//{host}" if host or path else ""
    return (f"{scheme}:" if scheme else "") + authority + path


# Kubernetes quantity suffixes (resource.Quantity): binary, decimal SI, and their multipliers.
_QUANTITY = re.compile(r"([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_SUFFIX: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    **{s: Fraction(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}


def _quantity(value: Any) -> Fraction | None:
    """A resource.Quantity (``500m``, ``64Mi``, ``1e3``, or a JSON number) as an exact number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Fraction(value)
    match = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        base = Fraction(number)
    except (ValueError, ZeroDivisionError):
        return None
    if suffix[:1] in ("e", "E"):
        return base * Fraction(10) ** int(suffix[1:])
    return base * _SUFFIX[suffix]


def _resource_field_value(ref: Json, container: Json) -> str:
    """ExtractContainerResourceValue on the described container (kubectl ignores the ref's
    containerName there): CPU in ceil(millicores / divisor millicores), other resources in
    ceil(value / divisor); a missing amount is 0, and a 0 CPU or memory *limit* is shown as
    ``node allocatable`` (what the kubelet would use)."""
    resource = _str(ref.get("resource"))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        return ""
    amounts = _map(_map(container.get("resources")).get(kind))
    amount = _quantity(amounts.get(name, "0")) or Fraction(0)
    divisor = _quantity(ref.get("divisor", "1")) or Fraction(1)
    if divisor == 0:
        divisor = Fraction(1)
    if name == "cpu":
        value = math.ceil(math.ceil(amount * 1000) / math.ceil(divisor * 1000))
    elif name in ("memory", "ephemeral-storage") or name.startswith("hugepages-"):
        value = math.ceil(math.ceil(amount) / math.ceil(divisor))
    else:
        return ""
    text = str(value)
    if text == "0" and resource in ("limits.cpu", "limits.memory"):
        return "node allocatable"
    return text


def _env_line(env: Json, container: Json) -> list[str]:
    name = _str(env.get("name"))
    source = env.get("valueFrom")
    if not isinstance(source, Mapping):
        parts = _str(env.get("value")).split("\n")
        return [f"      {name}:\t{parts[0]}"] + [f"      \t{p}" for p in parts[1:]]
    field, resource = source.get("fieldRef"), source.get("resourceFieldRef")
    secret, config = source.get("secretKeyRef"), source.get("configMapKeyRef")
    if isinstance(field, Mapping):
        path = f"{_str(field.get('apiVersion'))}:{_str(field.get('fieldPath'))}"
        return [f"      {name}:\t ({path})"]
    if isinstance(resource, Mapping):
        value = _resource_field_value(resource, container)
        return [f"      {name}:\t{value} ({_str(resource.get('resource'))})"]
    for ref, kind in ((secret, "in secret"), (config, "of config map")):
        if isinstance(ref, Mapping):
            optional = "true" if ref.get("optional") is True else "false"
            return [
                f"      {name}:\t<set to the key '{_str(ref.get('key'))}' {kind} "
                f"'{_str(ref.get('name'))}'>\tOptional: {optional}"
            ]
    return [f"      {name}:\t<unknown>"]


def _port_text(port: Json, key: str) -> str:
    """``80/TCP (http)``, as kubectl's describeContainerPorts / describeContainerHostPorts
    print it (the port's name, when it has one, since kubectl 1.34)."""
    text = f"{_int(port.get(key))}/{_str(port.get('protocol')) or 'TCP'}"
    name = _str(port.get("name"))
    return f"{text} ({name})" if name else text


def _container_lines(title: str, containers: list[Mapping[str, Any]]) -> list[str]:
    lines = [f"  {title}:" + ("" if containers else " <none>")]
    for c in containers:
        lines.append(f"   {_str(c.get('name'))}:")
        lines.append(f"    Image:\t{_str(c.get('image'))}")
        ports = _maps(c.get("ports"))
        container_ports = ", ".join(_port_text(p, "containerPort") for p in ports)
        host_ports = ", ".join(_port_text(p, "hostPort") for p in ports)
        # kubectl picks the plural by a comma in the text (a port's name may hold one).
        plural = "s" if "," in container_ports else ""
        lines.append(f"    Port{plural}:\t{container_ports or '<none>'}")
        plural = "s" if "," in host_ports else ""
        lines.append(f"    Host Port{plural}:\t{host_ports or '<none>'}")
        seccomp = _map(_map(c.get("securityContext")).get("seccompProfile"))
        if seccomp:
            lines.append(f"    SeccompProfile:\t{_str(seccomp.get('type'))}")
            if seccomp.get("type") == "Localhost":
                lines.append(f"      LocalhostProfile:\t{_str(seccomp.get('localhostProfile'))}")
        for key, label in (("command", "Command"), ("args", "Args")):
            values = _seq(c.get(key))
            if values:
                lines.append(f"    {label}:")
                lines.extend(f"      {part}" for v in values for part in str(v).split("\n"))
        resources = _map(c.get("resources"))
        for key, label in (("limits", "Limits"), ("requests", "Requests")):
            amounts = _map(resources.get(key))
            if amounts:
                lines.append(f"    {label}:")
                lines.extend(f"      {k}:\t{amounts[k]}" for k in sorted(amounts))
        for key, label in (
            ("livenessProbe", "Liveness"),
            ("readinessProbe", "Readiness"),
            ("startupProbe", "Startup"),
        ):
            if isinstance(c.get(key), Mapping):
                lines.append(f"    {label}:\t{_probe_text(c[key])}")
        env_from = _maps(c.get("envFrom"))
        if env_from:
            lines.append("    Environment Variables from:")
            for source in env_from:
                kind = "ConfigMap" if isinstance(source.get("configMapRef"), Mapping) else "Secret"
                ref = _map(source.get("configMapRef") or source.get("secretRef"))
                optional = "true" if ref.get("optional") is True else "false"
                prefix = _str(source.get("prefix"))
                with_prefix = f" with prefix '{prefix}'" if prefix else ""
                lines.append(
                    f"      {_str(ref.get('name'))}\t{kind}{with_prefix}\tOptional: {optional}"
                )
        env = _maps(c.get("env"))
        lines.append("    Environment:" + ("" if env else "\t<none>"))
        for entry in env:
            lines.extend(_env_line(entry, c))
        mounts = sorted(_maps(c.get("volumeMounts")), key=lambda m: _str(m.get("mountPath")))
        lines.append("    Mounts:" + ("" if mounts else "\t<none>"))
        for m in mounts:
            flags = ["ro" if m.get("readOnly") is True else "rw"]
            if _str(m.get("subPath")):
                flags.append(f"path={_go_quote(_str(m.get('subPath')))}")
            lines.append(
                f"      {_str(m.get('mountPath'))} from {_str(m.get('name'))} ({','.join(flags)})"
            )
        devices = sorted(_maps(c.get("volumeDevices")), key=lambda d: _str(d.get("devicePath")))
        if devices:
            # kubectl's "none" here is the mounts' (it says <none> beside listed devices).
            lines.append("    Devices:" + ("" if mounts else "\t<none>"))
            lines.extend(
                f"      {_str(d.get('devicePath'))} from {_str(d.get('name'))}" for d in devices
            )
    return lines


def _volume_lines(volumes: list[Mapping[str, Any]]) -> list[str]:
    if not volumes:
        return ["  Volumes:\t<none>"]
    lines = ["  Volumes:"]
    for v in volumes:
        lines.append(f"   {_str(v.get('name'))}:")
        if isinstance(v.get("emptyDir"), Mapping):
            empty = _map(v["emptyDir"])
            lines += [
                "    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)",
                f"    Medium:\t{_str(empty.get('medium'))}",
                f"    SizeLimit:\t{_size_limit(empty.get('sizeLimit'))}",
            ]
        elif isinstance(v.get("configMap"), Mapping):
            cm = _map(v["configMap"])
            lines += [
                "    Type:\tConfigMap (a volume populated by a ConfigMap)",
                f"    Name:\t{_str(cm.get('name'))}",
                f"    Optional:\t{'true' if cm.get('optional') is True else 'false'}",
            ]
        elif isinstance(v.get("secret"), Mapping):
            secret = _map(v["secret"])
            lines += [
                "    Type:\tSecret (a volume populated by a Secret)",
                f"    SecretName:\t{_str(secret.get('secretName'))}",
                f"    Optional:\t{'true' if secret.get('optional') is True else 'false'}",
            ]
        elif isinstance(v.get("persistentVolumeClaim"), Mapping):
            claim = _map(v["persistentVolumeClaim"])
            lines += [
                "    Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the "
                "same namespace)",
                f"    ClaimName:\t{_str(claim.get('claimName'))}",
                f"    ReadOnly:\t{'true' if claim.get('readOnly') is True else 'false'}",
            ]
        elif isinstance(v.get("hostPath"), Mapping):
            host = _map(v["hostPath"])
            lines += [
                "    Type:\tHostPath (bare host directory volume)",
                f"    Path:\t{_str(host.get('path'))}",
                f"    HostPathType:\t{_str(host.get('type')) or '<none>'}",
            ]
        elif isinstance(v.get("projected"), Mapping):
            lines += _projected_lines(_map(v["projected"]))
        elif isinstance(v.get("downwardAPI"), Mapping):
            lines.append("    Type:\tDownwardAPI (a volume populated by information about the pod)")
            lines.append("    Items:")
            for item in _maps(_map(v["downwardAPI"]).get("items")):
                path = _str(item.get("path"))
                if isinstance(item.get("fieldRef"), Mapping):
                    lines.append(f"      {_str(_map(item['fieldRef']).get('fieldPath'))} -> {path}")
                if isinstance(item.get("resourceFieldRef"), Mapping):
                    resource = _str(_map(item["resourceFieldRef"]).get("resource"))
                    lines.append(f"      {resource} -> {path}")
        elif isinstance(v.get("csi"), Mapping):
            csi = _map(v["csi"])
            lines += [
                "    Type:\tCSI (a Container Storage Interface (CSI) volume source)",
                f"    Driver:\t{_str(csi.get('driver'))}",
                f"    FSType:\t{_str(csi.get('fsType'))}",
                f"    ReadOnly:\t{'true' if csi.get('readOnly') is True else 'false'}",
            ]
            attributes = {str(k): _str(x) for k, x in _map(csi.get("volumeAttributes")).items()}
            if not attributes:
                lines.append("    VolumeAttributes:\t<none>")
            for i, key in enumerate(sorted(attributes)):
                text = _shorten(f"{key}={attributes[key]}", _MAX_ANNOTATION_LEN)
                lead = "    VolumeAttributes:\t" if i == 0 else "        \t"
                lines.append(f"{lead}    {text}")
        elif isinstance(v.get("ephemeral"), Mapping):
            lines += _ephemeral_lines(_map(v["ephemeral"]))
        elif isinstance(v.get("nfs"), Mapping):
            nfs = _map(v["nfs"])
            lines += [
                "    Type:\tNFS (an NFS mount that lasts the lifetime of a pod)",
                f"    Server:\t{_str(nfs.get('server'))}",
                f"    Path:\t{_str(nfs.get('path'))}",
                f"    ReadOnly:\t{'true' if nfs.get('readOnly') is True else 'false'}",
            ]
        else:
            lines += _other_volume_lines(v)
    return lines


def _size_limit(value: Any) -> str:
    """An emptyDir's sizeLimit: only a positive quantity counts, else ``<unset>``."""
    amount = _quantity(value) if value is not None else None
    return str(value) if amount is not None and amount > 0 else "<unset>"


def _go_value(value: Any, kind: str) -> str:
    """A field as Go's ``%v`` prints it: ``s`` string, ``b`` bool, ``i`` integer, ``l``
    []string (``[a b]``), ``m`` map[string]string (``map[k:v]``), ``r`` a
    *LocalObjectReference (its generated String(): ``&LocalObjectReference{Name:x,}`` or
    ``nil``)."""
    if kind == "b":
        return "true" if value is True else "false"
    if kind == "i":
        return str(_int(value))
    if kind == "l":
        return "[" + " ".join(str(item) for item in _seq(value)) + "]"
    if kind == "m":
        items = _map(value)
        return "map[" + " ".join(f"{k}:{items[k]}" for k in sorted(items)) + "]"
    if kind == "r":
        if not isinstance(value, Mapping):
            return "nil"
        return f"&LocalObjectReference{{Name:{_str(value.get('name'))},}}"
    return _str(value)


# describe.go's printers for the volume sources the bot has no branch of its own for:
# source key -> (Type line, [(label, field, %v kind)]). Each line is ``    label:\t%v``.
_VOLUME_PRINTERS: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "gcePersistentDisk": (
        "GCEPersistentDisk (a Persistent Disk resource in Google Compute Engine)",
        (
            ("PDName", "pdName", "s"),
            ("FSType", "fsType", "s"),
            ("Partition", "partition", "i"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "awsElasticBlockStore": (
        "AWSElasticBlockStore (a Persistent Disk resource in AWS)",
        (
            ("VolumeID", "volumeID", "s"),
            ("FSType", "fsType", "s"),
            ("Partition", "partition", "i"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "gitRepo": (
        "GitRepo (a volume that is pulled from git when the pod is created)",
        (("Repository", "repository", "s"), ("Revision", "revision", "s")),
    ),
    "glusterfs": (
        "Glusterfs (a Glusterfs mount on the host that shares a pod's lifetime)",
        (("EndpointsName", "endpoints", "s"), ("Path", "path", "s"), ("ReadOnly", "readOnly", "b")),
    ),
    "rbd": (
        "RBD (a Rados Block Device mount on the host that shares a pod's lifetime)",
        (
            ("CephMonitors", "monitors", "l"),
            ("RBDImage", "image", "s"),
            ("FSType", "fsType", "s"),
            ("RBDPool", "pool", "s"),
            ("RadosUser", "user", "s"),
            ("Keyring", "keyring", "s"),
            ("SecretRef", "secretRef", "r"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "quobyte": (
        "Quobyte (a Quobyte mount on the host that shares a pod's lifetime)",
        (("Registry", "registry", "s"), ("Volume", "volume", "s"), ("ReadOnly", "readOnly", "b")),
    ),
    "vsphereVolume": (
        "vSphereVolume (a Persistent Disk resource in vSphere)",
        (
            ("VolumePath", "volumePath", "s"),
            ("FSType", "fsType", "s"),
            ("StoragePolicyName", "storagePolicyName", "s"),
        ),
    ),
    "cinder": (
        "Cinder (a Persistent Disk resource in OpenStack)",
        (
            ("VolumeID", "volumeID", "s"),
            ("FSType", "fsType", "s"),
            ("ReadOnly", "readOnly", "b"),
            ("SecretRef", "secretRef", "r"),
        ),
    ),
    "photonPersistentDisk": (
        "PhotonPersistentDisk (a Persistent Disk resource in photon platform)",
        (("PdID", "pdID", "s"), ("FSType", "fsType", "s")),
    ),
    "portworxVolume": (
        "PortworxVolume (a Portworx Volume resource)",
        (("VolumeID", "volumeID", "s"),),
    ),
    "scaleIO": (
        "ScaleIO (a persistent volume backed by a block device in ScaleIO)",
        (
            ("Gateway", "gateway", "s"),
            ("System", "system", "s"),
            ("Protection Domain", "protectionDomain", "s"),
            ("Storage Pool", "storagePool", "s"),
            ("Storage Mode", "storageMode", "s"),
            ("VolumeName", "volumeName", "s"),
            ("FSType", "fsType", "s"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "cephfs": (
        "CephFS (a CephFS mount on the host that shares a pod's lifetime)",
        (
            ("Monitors", "monitors", "l"),
            ("Path", "path", "s"),
            ("User", "user", "s"),
            ("SecretFile", "secretFile", "s"),
            ("SecretRef", "secretRef", "r"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "storageos": (
        "StorageOS (a StorageOS Persistent Disk resource)",
        (
            ("VolumeName", "volumeName", "s"),
            ("VolumeNamespace", "volumeNamespace", "s"),
            ("FSType", "fsType", "s"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "azureFile": (
        "AzureFile (an Azure File Service mount on the host and bind mount to the pod)",
        (
            ("SecretName", "secretName", "s"),
            ("ShareName", "shareName", "s"),
            ("ReadOnly", "readOnly", "b"),
        ),
    ),
    "flexVolume": (
        "FlexVolume (a generic volume resource that is provisioned/attached using an exec based "
        "plugin)",
        (
            ("Driver", "driver", "s"),
            ("FSType", "fsType", "s"),
            ("SecretRef", "secretRef", "r"),
            ("ReadOnly", "readOnly", "b"),
            ("Options", "options", "m"),
        ),
    ),
    "flocker": (
        "Flocker (a Flocker volume mounted by the Flocker agent)",
        (("DatasetName", "datasetName", "s"), ("DatasetUUID", "datasetUUID", "s")),
    ),
    "image": (
        "Image (a container image or OCI artifact)",
        (("Reference", "reference", "s"), ("PullPolicy", "pullPolicy", "s")),
    ),
}


def _other_volume_lines(volume: Json) -> list[str]:
    """The volume sources printed from a table (_VOLUME_PRINTERS), and the three whose lines
    need more than a field each (iSCSI, Fibre Channel, Azure Disk); ``<unknown>`` else."""
    if isinstance(volume.get("iscsi"), Mapping):
        iscsi = _map(volume["iscsi"])
        initiator = iscsi.get("initiatorName")
        return [
            "    Type:\tISCSI (an ISCSI Disk resource that is attached to a kubelet's host "
            "machine and then exposed to the pod)",
            f"    TargetPortal:\t{_str(iscsi.get('targetPortal'))}",
            f"    IQN:\t{_str(iscsi.get('iqn'))}",
            f"    Lun:\t{_int(iscsi.get('lun'))}",
            # kubectl's own line has no colon here.
            f"    ISCSIInterface\t{_str(iscsi.get('iscsiInterface'))}",
            f"    FSType:\t{_str(iscsi.get('fsType'))}",
            f"    ReadOnly:\t{_go_value(iscsi.get('readOnly'), 'b')}",
            f"    Portals:\t{_go_value(iscsi.get('portals'), 'l')}",
            f"    DiscoveryCHAPAuth:\t{_go_value(iscsi.get('chapAuthDiscovery'), 'b')}",
            f"    SessionCHAPAuth:\t{_go_value(iscsi.get('chapAuthSession'), 'b')}",
            f"    SecretRef:\t{_go_value(iscsi.get('secretRef'), 'r')}",
            f"    InitiatorName:\t{_str(initiator) if isinstance(initiator, str) else '<none>'}",
        ]
    if isinstance(volume.get("fc"), Mapping):
        fc = _map(volume["fc"])
        lun = _opt_int(fc.get("lun"))
        return [
            "    Type:\tFC (a Fibre Channel disk)",
            f"    TargetWWNs:\t{', '.join(str(w) for w in _seq(fc.get('targetWWNs')))}",
            f"    LUN:\t{'<none>' if lun is None else lun}",
            f"    FSType:\t{_str(fc.get('fsType'))}",
            f"    ReadOnly:\t{_go_value(fc.get('readOnly'), 'b')}",
        ]
    if isinstance(volume.get("azureDisk"), Mapping):
        disk = _map(volume["azureDisk"])
        return [
            "    Type:\tAzureDisk (an Azure Data Disk mount on the host and bind mount to the pod)",
            f"    DiskName:\t{_str(disk.get('diskName'))}",
            f"    DiskURI:\t{_str(disk.get('diskURI'))}",
            f"    Kind: \t{_str(disk.get('kind'))}",
            f"    FSType:\t{_str(disk.get('fsType'))}",
            f"    CachingMode:\t{_str(disk.get('cachingMode'))}",
            f"    ReadOnly:\t{_go_value(disk.get('readOnly'), 'b')}",
        ]
    for key, (kind, fields) in _VOLUME_PRINTERS.items():
        if isinstance(volume.get(key), Mapping):
            source = _map(volume[key])
            return [f"    Type:\t{kind}"] + [
                f"    {label}:\t{_go_value(source.get(field), how)}" for label, field, how in fields
            ]
    return ["  <unknown>"]


def _projected_lines(projected: Json) -> list[str]:
    """printProjectedVolumeSource: secrets and config maps with ``Optional`` (false when unset,
    since kubectl 1.33), the downward API, token expiry. ClusterTrustBundle and PodCertificate
    sources have no line in kubectl."""
    lines = ["    Type:\tProjected (a volume that contains injected data from multiple sources)"]
    for source in _maps(projected.get("sources")):
        if isinstance(source.get("secret"), Mapping):
            secret = _map(source["secret"])
            lines.append(f"    SecretName:\t{_str(secret.get('name'))}")
            lines.append(f"    Optional:\t{_go_value(secret.get('optional'), 'b')}")
        elif isinstance(source.get("downwardAPI"), Mapping):
            lines.append("    DownwardAPI:\ttrue")
        elif isinstance(source.get("configMap"), Mapping):
            config = _map(source["configMap"])
            lines.append(f"    ConfigMapName:\t{_str(config.get('name'))}")
            lines.append(f"    Optional:\t{_go_value(config.get('optional'), 'b')}")
        elif isinstance(source.get("serviceAccountToken"), Mapping):
            token = _map(source["serviceAccountToken"])
            lines.append(f"    TokenExpirationSeconds:\t{_int(token.get('expirationSeconds'))}")
    return lines


def _nested_pairs(title: str, items: Mapping[str, str], sep: str = "=") -> list[str]:
    """printLabelsMultiline / printAnnotationsMultiline (``sep`` ``: ``) through kubectl's
    nested prefix writer, which puts 4 spaces before every write."""
    if not items:
        return [f"    {title}:\t    <none>"]
    return [
        (f"    {title}:\t" if i == 0 else "        \t") + f"    {key}{sep}{items[key]}"
        for i, key in enumerate(sorted(items))
    ]


def _ephemeral_lines(ephemeral: Json) -> list[str]:
    lines = [
        "    Type:\tEphemeralVolume (an inline specification for a volume that gets created and "
        "deleted with the pod)"
    ]
    claim = ephemeral.get("volumeClaimTemplate")
    if not isinstance(claim, Mapping):
        return lines
    metadata, spec = _map(claim.get("metadata")), _map(claim.get("spec"))
    annotations = {str(k): _str(v) for k, v in _map(metadata.get("annotations")).items()}
    labels = {str(k): _str(v) for k, v in _map(metadata.get("labels")).items()}
    storage_class = annotations.get("volume.beta.kubernetes.io/storage-class") or _str(
        spec.get("storageClassName")
    )
    lines += [
        f"    StorageClass:\t{storage_class}",
        f"    Volume:\t{_str(spec.get('volumeName'))}",
        *_nested_pairs("Labels", labels),
        *_nested_pairs("Annotations", annotations, ": "),
        "    Capacity:\t",
        "    Access Modes:\t",
    ]
    if _str(spec.get("volumeMode")):
        lines.append(f"    VolumeMode:\t{_str(spec.get('volumeMode'))}")
    return lines


def _selector_text(selector: Json) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key."""
    requirements: list[tuple[str, str]] = []
    for key, value in _map(selector.get("matchLabels")).items():
        requirements.append((str(key), f"{key}={value}"))
    for expr in _maps(selector.get("matchExpressions")):
        key, op = _str(expr.get("key")), _str(expr.get("operator"))
        values = ",".join(sorted(str(v) for v in _seq(expr.get("values"))))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op, key)
        requirements.append((key, text))
    return ",".join(text for _, text in sorted(requirements, key=lambda r: r[0]))


def _topology_lines(constraints: list[Mapping[str, Any]]) -> list[str]:
    if not constraints:
        return []
    lines = []
    ordered = sorted(constraints, key=lambda c: _str(c.get("topologyKey")))
    for i, tsc in enumerate(ordered):
        text = (
            f"{_str(tsc.get('topologyKey'))}:{_str(tsc.get('whenUnsatisfiable'))}"
            f" when max skew {_int(tsc.get('maxSkew'))} is exceeded"
        )
        if isinstance(tsc.get("labelSelector"), Mapping):
            # FormatLabelSelector: an empty selector (everything) reads <none>.
            text += f" for selector {_selector_text(_map(tsc['labelSelector'])) or '<none>'}"
        lines.append(("  Topology Spread Constraints:\t" if i == 0 else "  \t") + text)
    return lines


def _toleration_lines(tolerations: list[Mapping[str, Any]]) -> list[str]:
    if not tolerations:
        return ["  Tolerations:\t<none>"]
    lines = []
    # kubectl sorts by key before printing.
    for i, t in enumerate(sorted(tolerations, key=lambda t: _str(t.get("key")))):
        key, value, effect = _str(t.get("key")), _str(t.get("value")), _str(t.get("effect"))
        text = key + (f"={value}" if value else "") + (f":{effect}" if effect else "")
        if t.get("operator") == "Exists" and not value:
            text += " op=Exists" if key or effect else "op=Exists"
        seconds = _opt_int(t.get("tolerationSeconds"))
        if seconds is not None:
            text += f" for {seconds}s"
        lines.append(("  Tolerations:\t" if i == 0 else "\t") + text)
    return lines


def describe_template(template: Json) -> str:
    """A pod template as ``kubectl rollout history --revision=N`` describes it (kubectl's
    DescribePodTemplate; tab-separated, no trailing newline): labels, annotations, service
    account, init containers and containers (image, ports, seccomp profile, command, resources,
    probes, environment with resourceFieldRef values, mounts), volumes (emptyDir, configMap,
    secret, PVC, hostPath, projected, downwardAPI, CSI, ephemeral, NFS), topology spread
    constraints, priority class, node selectors and tolerations (sorted by key, as kubectl
    does). The integration test compares it with kubectl's text for a fixture of templates."""
    metadata = _map(template.get("metadata"))
    spec = _map(template.get("spec"))
    labels = {str(k): _str(v) for k, v in _map(metadata.get("labels")).items()}
    annotations = {str(k): _str(v) for k, v in _map(metadata.get("annotations")).items()}
    lines = ["Pod Template:", *_multiline_pairs("  Labels", labels, "=")]
    if annotations:
        lines += _annotation_lines(annotations)
    if _str(spec.get("serviceAccountName")):
        lines.append(f"  Service Account:\t{_str(spec.get('serviceAccountName'))}")
    if _maps(spec.get("initContainers")):
        lines += _container_lines("Init Containers", _maps(spec.get("initContainers")))
    lines += _container_lines("Containers", _maps(spec.get("containers")))
    lines += _volume_lines(_maps(spec.get("volumes")))
    lines += _topology_lines(_maps(spec.get("topologySpreadConstraints")))
    if _str(spec.get("priorityClassName")):
        lines.append(f"  Priority Class Name:\t{_str(spec.get('priorityClassName'))}")
    node_selector = {str(k): _str(v) for k, v in _map(spec.get("nodeSelector")).items()}
    lines += _multiline_pairs("  Node-Selectors", node_selector, "=")
    lines += _toleration_lines(_maps(spec.get("tolerations")))
    return "\n".join(lines)

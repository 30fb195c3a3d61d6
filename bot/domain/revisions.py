"""A workload's revisions, as ``kubectl rollout history`` lists them.

A Deployment's revisions are its ReplicaSets (numbered by the revision annotation); a
StatefulSet's or DaemonSet's are its ControllerRevisions (numbered by ``.revision``). Only
objects the workload controls count (metav1.IsControlledBy).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot.domain.annotations import (
    CHANGE_CAUSE_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
)
from bot.domain.readers import (
    Json,
    annotations_of,
    as_int,
    as_map,
    as_str,
    creation_order,
    images_of,
    is_paused,
    maps,
    name_of,
    opt_int,
    parse_int64,
    template_of,
)
from bot.domain.templates import templates_equal_ignoring_hash


def owned_replica_sets(deployment: Json, replica_sets: Iterable[Json]) -> list[Json]:
    """The ReplicaSets whose controller ownerReference is this Deployment (metav1.IsControlledBy).

    kubectl also lists by the Deployment's selector; that is the caller's LIST. A controlled RS
    always matches it, since apps/v1 selectors are immutable and the controller orphans strays.
    """
    uid = as_str(as_map(deployment.get("metadata")).get("uid"))
    owned = []
    for rs in replica_sets:
        refs = maps(as_map(rs.get("metadata")).get("ownerReferences"))
        controller = next((ref for ref in refs if ref.get("controller") is True), None)
        if controller is not None and as_str(controller.get("uid")) == uid:
            owned.append(rs)
    return owned


def revision_of(obj: Json) -> int | None:
    """The ``deployment.kubernetes.io/revision`` annotation: missing → 0, unparsable → None."""
    raw = annotations_of(obj).get(REVISION_ANNOTATION)
    if raw is None:
        return 0
    try:
        return parse_int64(raw)
    except ValueError:
        return None


def observed_revision(obj: Json) -> int | None:
    """The revision a Deployment carries once its controller has observed its latest
    generation; None before (the annotation may still be the previous revision's), or when
    it cannot be read."""
    generation = int(obj.get("metadata", {}).get("generation", 0) or 0)
    observed = int(obj.get("status", {}).get("observedGeneration", 0) or 0)
    if observed < generation:
        return None
    return revision_of(obj)


def current_replica_set(deployment: Json, owned: Sequence[Json]) -> Json | None:
    """FindNewReplicaSet: the oldest owned RS (by creationTimestamp, then name) whose template
    equals the Deployment's, ignoring pod-template-hash."""
    wanted = template_of(deployment)
    for rs in sorted(owned, key=creation_order):
        if templates_equal_ignoring_hash(template_of(rs), wanted):
            return rs
    return None


def paused_template_pending(deployment: Json, replica_sets: Iterable[Json]) -> bool:
    """Paused, and no ReplicaSet has the current template: nothing rolls out until resume."""
    owned = owned_replica_sets(deployment, replica_sets)
    return is_paused(deployment) and current_replica_set(deployment, owned) is None


def kubectl_order(deployment: Json, replica_sets: Iterable[Json]) -> tuple[list[Json], Json | None]:
    """GetAllReplicaSets as history and undo use it: old RSes by creation, then the new one."""
    owned = sorted(owned_replica_sets(deployment, replica_sets), key=creation_order)
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
    for part in annotations_of(rs).get(REVISION_HISTORY_ANNOTATION, "").split(","):
        try:
            numbers.append(parse_int64(part.strip()))
        except ValueError:
            continue
    return tuple(numbers)


def replica_set_desired(rs: Json) -> int:
    # apps/v1 defaults ReplicaSet spec.replicas to 1; the API always returns it.
    return as_int(as_map(rs.get("spec")).get("replicas"), 1)


def deployment_history(deployment: Json, replica_sets: Iterable[Json]) -> list[Revision]:
    """kubectl's revision map, ascending. Only owned ReplicaSets count; unparsable ones are skipped.

    Like kubectl's map, a duplicated revision number keeps the RS that comes last in kubectl's
    order (old ones by creation, the current one last).
    """
    ordered, new = kubectl_order(deployment, replica_sets)
    by_number: dict[int, Revision] = {}
    for rs in ordered:
        number = revision_of(rs)
        if number is None:
            continue
        template = copy.deepcopy(dict(template_of(rs)))
        rs_cause = annotations_of(rs).get(CHANGE_CAUSE_ANNOTATION)
        if rs_cause:
            if not isinstance(template.get("metadata"), dict):
                template["metadata"] = {}
            if not isinstance(template["metadata"].get("annotations"), dict):
                template["metadata"]["annotations"] = {}
            template["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] = rs_cause
        # kubectl's column reads the template's annotations with the RS's cause laid over
        # them, so a cause set in the pod template shows when the RS has none.
        cause = as_str(annotations_of(template).get(CHANGE_CAUSE_ANNOTATION)) or None
        by_number[number] = Revision(
            number=number,
            change_cause=cause,
            images=images_of(template_of(rs)),
            created=as_str(as_map(rs.get("metadata")).get("creationTimestamp")),
            replica_set_name=name_of(rs),
            is_current=rs is new,
            template=template,
            revision_history=_revision_history(rs),
            desired=replica_set_desired(rs),
            ready=as_int(as_map(rs.get("status")).get("readyReplicas")),
        )
    return [by_number[n] for n in sorted(by_number)]


def owned_revisions(obj: Json, revisions: Iterable[Json]) -> list[Json]:
    """ControllerRevisions whose controller ownerReference is ``obj`` (metav1.IsControlledBy)."""
    uid = as_str(as_map(obj.get("metadata")).get("uid"))
    owned = []
    for cr in revisions:
        refs = as_map(cr.get("metadata")).get("ownerReferences")
        for ref in refs if isinstance(refs, list) else []:
            if isinstance(ref, Mapping) and ref.get("controller") is True:
                if as_str(ref.get("uid")) == uid:
                    owned.append(cr)
                break
    return owned


def revision_template(cr: Json) -> dict[str, Any]:
    """The pod template a ControllerRevision restores: its ``data.spec.template`` without the
    ``$patch: replace`` directive (applying the patch replaces the template wholesale)."""
    template = copy.deepcopy(
        dict(as_map(as_map(as_map(cr.get("data")).get("spec")).get("template")))
    )
    template.pop("$patch", None)
    return template


def _by_number(obj: Json, revisions: Iterable[Json]) -> dict[int, Json]:
    """kubectl's historyInfo map: revision → ControllerRevision (a duplicate number keeps the
    last one listed, as kubectl's map assignment does)."""
    found: dict[int, Json] = {}
    for cr in owned_revisions(obj, revisions):
        number = opt_int(cr.get("revision"))
        if number is not None:
            found[number] = cr
    return found


def workload_history(obj: Json, revisions: Iterable[Json]) -> list[Revision]:
    """``kubectl rollout history`` of a StatefulSet or DaemonSet, ascending.

    The change-cause is the ControllerRevision's own annotation (the controllers copy the
    object's annotations when they create a revision; a reused revision keeps its old ones).
    Unlike a Deployment's, the described template does not carry the change-cause.
    """
    current = template_of(obj)
    result = []
    for number, cr in sorted(_by_number(obj, revisions).items()):
        template = revision_template(cr)
        annotations = as_map(as_map(cr.get("metadata")).get("annotations"))
        result.append(
            Revision(
                number=number,
                change_cause=as_str(annotations.get(CHANGE_CAUSE_ANNOTATION)) or None,
                images=images_of(template),
                created=as_str(as_map(cr.get("metadata")).get("creationTimestamp")),
                replica_set_name=name_of(cr),
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


def _not_current(revision: Revision) -> Revision:
    return replace(revision, is_current=False)


def _same_template(a: Json, b: Json) -> bool:
    """Semantic equality of two pod templates (what ``daemonSetMatch`` / ``statefulsetMatch``
    intend; they compare serialised bytes, which also differ across client versions)."""
    return templates_equal_ignoring_hash(_without_creation(a), _without_creation(b))


def _without_creation(template: Json) -> dict[str, Any]:
    result = copy.deepcopy(dict(template))
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("creationTimestamp", None)
    return result

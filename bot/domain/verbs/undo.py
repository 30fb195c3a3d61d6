"""``/rollout undo DEPLOY [--to-revision=N]``: roll back to an earlier revision's template.

kubectl's rules, one per kind: ``plan_undo`` (DeploymentRollbacker: the target ReplicaSet's
template and annotations as a JSON Patch) and ``plan_workload_undo`` (StatefulSetRollbacker /
DaemonSetRollbacker: the ControllerRevision's stored patch).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final

from bot.domain import kinds
from bot.domain.annotations import (
    CHANGE_CAUSE_ANNOTATION,
    LAST_APPLIED_ANNOTATION,
    ROLLBACK_KEPT_ANNOTATIONS,
)
from bot.domain.kinds import Kind
from bot.domain.readers import (
    Json,
    annotations_of,
    as_int,
    as_map,
    go_quote,
    is_paused,
    name_of,
    opt_int,
    template_of,
)
from bot.domain.refusals import UndoRefused
from bot.domain.revisions import (
    kubectl_order,
    owned_revisions,
    revision_of,
    revision_template,
)
from bot.domain.templates import templates_equal_ignoring_hash, without_hash
from bot.domain.verbs import values
from bot.domain.verbs.grammar import (
    NAMESPACE,
    REASON,
    Action,
    Args,
    Flag,
    VerbSpec,
    WorkloadChange,
)

TO_REVISION: Final = Flag("to-revision", ("--to-revision",), "--to-revision=2")


@dataclass(frozen=True, slots=True, kw_only=True)
class Undo(WorkloadChange):
    action: ClassVar[Action] = "undo"
    # None: the previous revision (kubectl's `--to-revision=0`).
    to_revision: int | None = None
    reason: str | None = None


def _parse(args: Args, max_replicas: int) -> Undo:
    kind, name = values.target(args, args.positional(0, values.WORKLOAD))
    args.no_more_than(1)
    value = args.flag("to-revision")
    to_revision = None
    if value is not None:
        # A negative number is kubectl's rollbacker's to refuse ("unable to find specified
        # revision -1 in history"), after the object is looked up, as kubectl does.
        number = values.signed_revision(
            args, value, "`--to-revision`", "a revision number (0 means the previous one)"
        )
        to_revision = number or None
    return Undo(
        name=name,
        kind=kind,
        to_revision=to_revision,
        namespace=args.namespace(),
        reason=args.reason(),
    )


def _render(command: Undo) -> list[str]:
    words = ["undo", kinds.info(command.kind).word(command.name)]
    if command.to_revision is not None:
        words.append(f"--to-revision={command.to_revision}")
    return words


SPEC = VerbSpec(
    verb="undo",
    usage="/rollout undo DEPLOY [--to-revision=N] [-n NS] [--reason=TEXT]",
    help="Roll back to the previous revision, or to `--to-revision=N`.",
    command=Undo,
    parse=_parse,
    render=_render,
    flags=(TO_REVISION, NAMESPACE, REASON),
    examples=("/rollout undo web -n prod", "/rollout undo web --to-revision=2 -n prod"),
    note="`/rollout history DEPLOY` lists the revisions; `diff` shows what an undo restores.",
    hints=("rollback", "revert"),
)


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
    if LAST_APPLIED_ANNOTATION not in annotations_of(obj):
        return ()
    return (
        f"Warning: resource {resource}/{name_of(obj)} was previously managed with 'kubectl "
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
        raise UndoRefused("no_history", f"no rollout history found for deployment {go_quote(name)}")
    return found, number


def plan_undo(deployment: Json, replica_sets: Iterable[Json], to_revision: int = 0) -> UndoPlan:
    """kubectl's DeploymentRollbacker.Rollback, checks in kubectl's order. Raises UndoRefused."""
    name = name_of(deployment)
    if to_revision < 0:
        raise UndoRefused(
            "negative_revision", f"unable to find specified revision {to_revision} in history"
        )
    ordered, _ = kubectl_order(deployment, replica_sets)
    target, target_number = _undo_target(name, ordered, to_revision)
    if is_paused(deployment):
        raise UndoRefused(
            "paused",
            "you cannot rollback a paused deployment; resume it first with "
            "'kubectl rollout resume' and try again",
        )

    skipped = templates_equal_ignoring_hash(template_of(target), template_of(deployment))
    template = without_hash(template_of(target))
    current = annotations_of(deployment)
    annotations = {k: current[k] for k in ROLLBACK_KEPT_ANNOTATIONS if k in current}
    annotations.update(
        (k, v) for k, v in annotations_of(target).items() if k not in ROLLBACK_KEPT_ANNOTATIONS
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
        target_replica_set=name_of(target),
        skipped=skipped,
        message=message,
        template=template,
        annotations=annotations,
        warnings=warnings,
    )


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
    template = dict(copy.deepcopy(dict(template_of(obj))))
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
        target = sorted(owned, key=lambda cr: as_int(cr.get("revision")))[-2]
    else:
        target = next((cr for cr in owned if opt_int(cr.get("revision")) == to_revision), None)
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
        target_revision=as_int(target.get("revision")),
        revision_name=name_of(target),
        skipped=skipped,
        message=message,
        patch=copy.deepcopy(dict(as_map(target.get("data")))),
        template=template,
    )


def plan_any_undo(
    kind: Kind, obj: Json, revisions: Iterable[Json], to_revision: int = 0
) -> UndoPlan | WorkloadUndoPlan:
    """kubectl's undo plan for any kind, on the revisions it owns: its Deployment rollbacker
    on ReplicaSets, its StatefulSet / DaemonSet rollbacker on ControllerRevisions. Both plans
    say the target revision, its template, whether it is skipped and kubectl's message."""
    if kinds.info(kind).revisions_in_replica_sets:
        return plan_undo(obj, revisions, to_revision)
    return plan_workload_undo(obj, revisions, to_revision)

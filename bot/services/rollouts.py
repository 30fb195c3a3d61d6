"""Use cases: each /rollout verb as kubectl would do it, on the `Cluster` port.

Every verb works on a `Target`: a Deployment, StatefulSet or DaemonSet (`Target.kind`), with
kubectl's rules for that kind (`bot.domain.rollout` for Deployments, `bot.domain.workloads`
for the other two).

Reads return views for the Slack surface to render; mutations return a `Change` saying what
was done (or that nothing needed doing), with the revision and images before and after for the
audit trail. kubectl's refusals (`bot.domain.rollout.RolloutRefused`) become
`bot.domain.errors.Refused`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

from bot.domain import ownership, rollout, workloads
from bot.domain.errors import (
    Conflict,
    Forbidden,
    NotFound,
    OutcomeUnknown,
    Refused,
    RolloutBotError,
    UnknownContext,
)
from bot.domain.selectors import selector_string
from bot.services.ports import Cluster, Json

log = logging.getLogger(__name__)
T = TypeVar("T")

# A conflict means someone changed the Deployment between our read and our write; a few fresh
# attempts cover a busy controller without hiding a genuinely contended object. The controller
# writes in bursts (status after every pod change), so the attempts are spread out a little.
CONFLICT_ATTEMPTS = 5
CONFLICT_BACKOFF = 0.1
# How long a template change waits for its revision (the controller makes it within a second
# or so) before taking its change-cause off the object; see `Rollouts._retire_cause`.
CAUSE_SETTLE_SECONDS = 5.0


@dataclass(frozen=True)
class Actor:
    """Who asked, for change-cause and audit."""

    user_id: str
    user_name: str
    channel_id: str


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    #: "deployment", "statefulset" or "daemonset" (`bot.domain.workloads.KINDS`).
    kind: str = "deployment"
    #: The kubeconfig context (cluster) the object lives in; "" is the default context. The
    #: same namespace in two clusters is two places.
    context: str = ""

    def __str__(self) -> str:
        if self.kind == "deployment":
            return f"{self.namespace}/{self.name}"
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def ref(self) -> str:
        """`statefulset.apps/web`, as kubectl prints the object."""
        return workloads.info(self.kind).ref(self.name)

    @property
    def display(self) -> str:
        """`StatefulSet`."""
        return workloads.info(self.kind).display


@dataclass(frozen=True)
class Change:
    """The outcome of a mutation, as kubectl would print it plus what the audit needs."""

    target: Target
    action: str
    summary: str  # kubectl's line, e.g. "deployment.apps/web image updated"
    changed: bool
    starts_rollout: bool
    revision_before: int | None
    images_before: tuple[tuple[str, str], ...]
    images_after: tuple[tuple[str, str], ...]
    details: tuple[str, ...] = ()
    deployment: Json = field(default_factory=dict, repr=False, compare=False)
    #: Who else changes this object (a GitOps tool, an autoscaler), for the reply.
    notices: tuple[str, ...] = ()
    #: What kubectl prints on stderr beside its line (its undo warning for an object once
    #: managed with `kubectl apply`, its errors for containers set image could not find).
    warnings: tuple[str, ...] = ()
    #: The Slack user the change was made for (whose identity it used in impersonate mode),
    #: so what continues it (an automatic rollback) acts as them too.
    requester: str = ""


@dataclass(frozen=True)
class DeploymentRow:
    name: str
    ready: str
    updated: int
    available: int
    images: tuple[tuple[str, str], ...]
    revision: int | None
    status: rollout.RolloutStatus
    kind: str = "deployment"


@dataclass(frozen=True)
class StatusView:
    """For a StatefulSet or DaemonSet, `replica_sets` lists its ControllerRevisions (the
    summary's desired/ready count the pods of that revision)."""

    target: Target
    status: rollout.RolloutStatus
    paused_template_pending: bool
    replica_sets: tuple[tuple[rollout.ReplicaSetSummary, bool], ...]  # (summary, is_current)
    pods: tuple[rollout.PodSummary, ...]
    warnings: tuple[str, ...]
    conditions: tuple[tuple[str, str, str], ...]  # (type, status, reason)


@dataclass(frozen=True)
class HistoryView:
    target: Target
    revisions: tuple[rollout.Revision, ...]
    detail: rollout.Revision | None = None
    described: str | None = None
    #: The revision asked for with `--revision=N` (kubectl's header names it).
    requested: int | None = None


@dataclass(frozen=True)
class DiffView:
    target: Target
    old: int
    new: int
    diff: rollout.TemplateDiff


def change_cause(description: str, actor: Actor, reason: str | None) -> str:
    """`set image nginx=nginx:1.19 by @alice via Slack: fixes CVE-1` (also shown by kubectl)."""
    text = f"{description} by @{actor.user_name} via Slack"
    return f"{text}: {reason}" if reason else text


class Ownership(Protocol):
    """Where the bot records which generations of a Deployment it made (shared by replicas).

    A generation is claimed *before* the write that makes it, so a watch event for it is
    recognised as the bot's own whenever it arrives; confirmed after the write, released when
    the write certainly did not happen."""

    def claim(self, uid: str, generation: int) -> None: ...

    def mark_ours(self, uid: str, generation: int) -> None: ...

    def release(self, uid: str, generation: int) -> None: ...


class PolicyLike(Protocol):
    """What the verbs read from the policy in force."""

    @property
    def gitops(self) -> str: ...


class Rollouts:
    """kubectl's verbs on one or several clusters: a `Target`'s `context` picks the cluster."""

    def __init__(
        self,
        cluster: Cluster | Mapping[str, Cluster],
        *,
        clock: Callable[[], datetime] | None = None,
        gitops: str = "warn",
        claims: Ownership | Mapping[str, Ownership] | None = None,
        default_context: str = "",
    ) -> None:
        if isinstance(cluster, Mapping):
            self.clusters: dict[str, Cluster] = dict(cluster)
            self.default_context = default_context or next(iter(self.clusters))
        else:
            self.clusters = {default_context: cluster}
            self.default_context = default_context
        #: The policy's `gitops` setting: "warn" or "refuse" a change to a GitOps-managed object.
        self.gitops = gitops
        self._now = clock or (lambda: datetime.now(UTC))
        self._claims = claims

    def use_policy(self, policy: PolicyLike) -> None:
        """A reloaded policy: its `gitops` setting applies to every change from now on."""
        self.gitops = policy.gitops

    @property
    def cluster(self) -> Cluster:
        """The default context's cluster."""
        return self.clusters[self.default_context]

    def through(self, context: str, cluster: Cluster) -> Rollouts:
        """The same verbs with `context`'s cluster reached through another client (as a
        person, `bot.services.identity`); the ownership records are shared."""
        twin = copy.copy(self)
        twin.clusters = {**self.clusters, (context or self.default_context): cluster}
        return twin

    def on(self, context: str) -> Cluster:
        """The cluster of a context ("" is the default one)."""
        try:
            return self.clusters[context or self.default_context]
        except KeyError:
            raise UnknownContext(context, tuple(self.clusters)) from None

    # -- reads -----------------------------------------------------------------------------------

    def list_deployments(self, namespace: str, context: str = "") -> list[DeploymentRow]:
        """Every Deployment, StatefulSet and DaemonSet in the namespace, by kind then name."""
        rows = []
        for kind in workloads.KINDS:
            try:
                with self._namespace_context(namespace, context):
                    objects = self.on(context).list_workloads(kind, namespace)
            except Forbidden:
                if kind == "deployment":
                    raise
                # A bot upgraded before its RBAC still lists what it may read.
                log.warning("no permission to list %ss in %s; see the RBAC rules", kind, namespace)
                continue
            for obj in sorted(objects, key=lambda d: d["metadata"]["name"]):
                status = workloads.workload_status(kind, obj)
                rows.append(
                    DeploymentRow(
                        name=obj["metadata"]["name"],
                        ready=f"{status.ready}/{status.desired or 0}",
                        updated=status.updated,
                        available=status.available,
                        images=_images(obj),
                        revision=status.revision,
                        status=status,
                        kind=kind,
                    )
                )
        return rows

    def status(self, target: Target) -> StatusView:
        if target.kind != "deployment":
            return self._workload_status(target)
        deployment = self.get(target)
        replica_sets = self.owned_replica_sets(deployment, target.context)
        current = rollout.current_replica_set(deployment, replica_sets)
        pods = self.on(target.context).list_pods(target.namespace, selector_string(deployment))
        now = self._now()
        summaries = sorted(
            (rollout.replica_set_summary(rs) for rs in replica_sets),
            key=lambda s: s.revision or 0,
            reverse=True,
        )
        current_name = current["metadata"]["name"] if current else None
        pod_rows = tuple(sorted((rollout.pod_summary(p, now) for p in pods), key=lambda p: p.name))
        status = rollout.rollout_status(deployment)
        warnings: tuple[str, ...] = ()
        if not status.done:
            warnings = self.recent_warnings(target, deployment, pods)
        return StatusView(
            target=target,
            status=status,
            paused_template_pending=rollout.paused_template_pending(deployment, replica_sets),
            replica_sets=tuple((s, s.name == current_name) for s in summaries),
            pods=pod_rows,
            warnings=warnings,
            conditions=tuple(
                (c.get("type", ""), c.get("status", ""), c.get("reason", ""))
                for c in deployment.get("status", {}).get("conditions", []) or []
            ),
        )

    def _workload_status(self, target: Target) -> StatusView:
        obj = self.get(target)
        revisions = self.owned_revisions(target, obj)
        pods = self.on(target.context).list_pods(target.namespace, selector_string(obj))
        counts = workloads.pods_by_revision(pods)
        now = self._now()
        summaries = []
        for revision in reversed(workloads.workload_history(obj, revisions)):
            cr = next(c for c in revisions if c["metadata"]["name"] == revision.replica_set_name)
            hash_label = cr["metadata"].get("labels", {}).get("controller-revision-hash", "")
            total, ready = counts.get(revision.replica_set_name) or counts.get(hash_label, (0, 0))
            summary = rollout.ReplicaSetSummary(
                revision.replica_set_name, revision.number, revision.images, total, ready
            )
            summaries.append((summary, revision.is_current))
        status = workloads.workload_status(target.kind, obj)
        pod_rows = tuple(sorted((rollout.pod_summary(p, now) for p in pods), key=lambda p: p.name))
        warnings: tuple[str, ...] = ()
        if not status.done:
            warnings = self.recent_warnings(target, obj, pods)
        return StatusView(
            target=target,
            status=status,
            paused_template_pending=False,
            replica_sets=tuple(summaries),
            pods=pod_rows,
            warnings=warnings,
            conditions=tuple(
                (c.get("type", ""), c.get("status", ""), c.get("reason", ""))
                for c in obj.get("status", {}).get("conditions", []) or []
            ),
        )

    def recent_warnings(
        self, target: Target, deployment: Json, pods: Sequence[Json], limit: int = 5
    ) -> tuple[str, ...]:
        names = {deployment["metadata"]["name"], *(p["metadata"]["name"] for p in pods)}
        try:
            events = self.on(target.context).list_events(target.namespace, names)
        except Exception:  # events are a nicety; a missing RBAC grant must not fail status
            log.info("could not list events in %s", target.namespace)
            return ()
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        lines = []
        for event in events[-limit:]:
            obj = event.get("involvedObject", {})
            # `[Failed] Pod/web-1: Error: ImagePullBackOff`: the reason apart from the message,
            # which often starts with a word of its own.
            reason = f"[{event['reason']}] " if event.get("reason") else ""
            lines.append(
                f"{reason}{obj.get('kind', '')}/{obj.get('name', '')}: "
                f"{event.get('message', '')}".strip()
            )
        return tuple(lines)

    def revisions(self, target: Target, obj: Json | None = None) -> tuple[rollout.Revision, ...]:
        """kubectl's revision list for any kind (ReplicaSets or ControllerRevisions)."""
        obj = self.get(target) if obj is None else obj
        if target.kind == "deployment":
            return tuple(rollout.history(obj, self.owned_replica_sets(obj, target.context)))
        return tuple(workloads.workload_history(obj, self.owned_revisions(target, obj)))

    def history(self, target: Target, revision: int | None = None) -> HistoryView:
        revisions = self.revisions(target)
        if not revision:
            return HistoryView(target, revisions)
        if not revisions:
            # kubectl says there is no history before it looks for the revision.
            return HistoryView(target, revisions, requested=revision)
        detail = _find_revision(revisions, revision)
        return HistoryView(
            target,
            revisions,
            detail,
            rollout.describe_template(detail.template),
            requested=revision,
        )

    def diff(self, target: Target, old: int, new: int | None) -> DiffView:
        revisions = self.revisions(target)
        before = _find_revision(revisions, old, kubectl_verb=False)
        if new is None:
            current = next((r for r in revisions if r.is_current), None)
            if current is None:
                raise Refused(f"`{target.name}` has no current revision yet to compare with.")
            after = current
        else:
            after = _find_revision(revisions, new, kubectl_verb=False)
        diff = rollout.template_diff(
            before.template,
            after.template,
            f"revision {before.number}",
            f"revision {after.number}" + (" (current)" if after.is_current else ""),
        )
        return DiffView(target, before.number, after.number, diff)

    def get(self, target: Target) -> Json:
        """The object, or NotFound naming close matches / a missing namespace."""
        try:
            return self.on(target.context).get_workload(target.kind, target.namespace, target.name)
        except NotFound:
            raise self._not_found(target) from None
        except Forbidden:
            # Per-namespace RoleBindings make a missing namespace answer 403, not 404.
            if self.on(target.context).namespace_exists(target.namespace) is False:
                raise _namespace_missing(target.namespace) from None
            raise

    # -- mutations -------------------------------------------------------------------------------

    def create(
        self, target: Target, image: str, replicas: int, actor: Actor, reason: str | None
    ) -> Change:
        manifest = rollout.deployment_manifest(target.name, image, replicas)
        cause = change_cause(f"create deployment --image={image}", actor, reason)
        manifest["metadata"]["annotations"] = {rollout.CHANGE_CAUSE_ANNOTATION: cause}
        with self._namespace_context(target.namespace, target.context):
            try:
                created = self.on(target.context).create_deployment(target.namespace, manifest)
            except Conflict:
                raise _already_exists(target) from None
        created = self._retire_cause(target, created, cause)
        return Change(
            target=target,
            action="create",
            summary=f"deployment.apps/{target.name} created",
            changed=True,
            starts_rollout=True,
            revision_before=None,
            images_before=(),
            images_after=_images(created),
            deployment=created,
        )

    def set_image(
        self,
        target: Target,
        images: Sequence[tuple[str, str]],
        actor: Actor,
        reason: str | None,
        *,
        expect: str | None = None,
    ) -> Change:
        description = "set image " + " ".join(f"{c}={i}" for c, i in images)

        def attempt(deployment: Json) -> Change:
            plan = self.set_image_plan(deployment, images)
            notices = self._ownership(target, deployment, "set-image")
            if plan.patch is None:
                # kubectl prints nothing at all for an image that is already set.
                return self._no_change(
                    target,
                    "set-image",
                    deployment,
                    "",
                    details=("image already set: no change, no new revision",),
                )
            updated = self._apply(
                target,
                deployment,
                plan.patch,
                change_cause(description, actor, reason),
                field_manager="kubectl-set",
            )
            return self._changed(
                target,
                "set-image",
                deployment,
                updated,
                "image updated",
                details=tuple(f"{c.container}: {c.old} → {c.new}" for c in plan.changes),
                notices=notices,
                warnings=plan.errors,
            )

        return self._with_fresh_state(target, attempt, expect, "set-image")

    def scale(
        self,
        target: Target,
        replicas: int,
        actor: Actor,
        reason: str | None,
        *,
        expect: str | None = None,
    ) -> Change:
        def attempt(deployment: Json) -> Change:
            _refusal_to_error(lambda: workloads.check_scale(target.kind, target.name))
            notices = self._ownership(target, deployment, "scale")
            current = deployment.get("spec", {}).get("replicas", 1)
            if current == replicas:
                # kubectl sends a patch the server finds empty and prints its usual line; the
                # bot sends nothing (the cluster ends the same) and says there was nothing to do.
                return self._no_change(
                    target,
                    "scale",
                    deployment,
                    "scaled",
                    details=(f"already at {replicas} replicas: nothing changed",),
                )
            # The effect of `kubectl scale`: replicas only. The change-cause is kubectl's record
            # of template changes (it labels revisions), so scaling leaves it alone; who scaled
            # and why is in the audit trail.
            updated = self._apply(
                target,
                deployment,
                {"spec": {"replicas": replicas}},
                None,
                field_manager="kubectl-scale",
            )
            return self._changed(
                target,
                "scale",
                deployment,
                updated,
                "scaled",
                details=(f"replicas: {current} → {replicas}",),
                # Pods come and go, so the channel gets the same progress message to follow.
                starts_rollout=True,
                notices=notices,
            )

        return self._with_fresh_state(target, attempt, expect, "scale")

    def undo(
        self,
        target: Target,
        to_revision: int,
        actor: Actor,
        reason: str | None,
        *,
        expect: str | None = None,
    ) -> Change:
        if target.kind != "deployment":
            return self._undo_workload(target, to_revision, actor, reason, expect)

        def attempt(deployment: Json) -> Change:
            notices = self._ownership(target, deployment, "undo")
            replica_sets = self.owned_replica_sets(deployment, target.context)
            try:
                plan = rollout.plan_undo(deployment, replica_sets, to_revision)
            except rollout.UndoRefused as exc:
                message = exc.message
                if exc.reason_code == "revision_not_found":
                    message += _revisions_line(rollout.history(deployment, replica_sets))
                raise Refused(message) from None
            if plan.skipped:
                return self._no_change(
                    target, "undo", deployment, plan.message, warnings=plan.warnings
                )
            flag = f" --to-revision={to_revision}" if to_revision else ""
            cause = change_cause(f"undo{flag}", actor, reason)
            plan = plan.with_change_cause(cause)
            # kubectl's two ops, plus the resourceVersion the plan was computed from: the API
            # server then answers 409 if the Deployment changed since, and we plan again.
            patch = [
                *plan.json_patch,
                {
                    "op": "replace",
                    "path": "/metadata/resourceVersion",
                    "value": deployment["metadata"]["resourceVersion"],
                },
            ]
            updated = self._write(
                target.context,
                deployment,
                lambda: self.on(target.context).patch_deployment(
                    target.namespace, target.name, patch, field_manager="kubectl-rollout"
                ),
            )
            updated = self._retire_cause(target, updated, cause)
            return self._changed(
                target,
                "undo",
                deployment,
                updated,
                "rolled back",
                details=(f"to the template of revision {plan.target_revision}",),
                notices=notices,
                warnings=plan.warnings,
            )

        return self._with_fresh_state(target, attempt, expect, "undo")

    def _undo_workload(
        self, target: Target, to_revision: int, actor: Actor, reason: str | None, expect: str | None
    ) -> Change:
        """kubectl's StatefulSetRollbacker / DaemonSetRollbacker: the revision's stored
        template patch, sent as a strategic-merge patch pinned to the resourceVersion it was
        planned from.

        No change-cause: the controller reuses the old ControllerRevision, whose annotations
        are set only when a revision is first made, so a cause written on the object would
        never show on it, and would label the next revision anyone makes instead."""

        def attempt(obj: Json) -> Change:
            notices = self._ownership(target, obj, "undo")
            revisions = self.owned_revisions(target, obj)
            try:
                plan = workloads.plan_workload_undo(obj, revisions, to_revision)
            except rollout.UndoRefused as exc:
                message = exc.message
                if exc.reason_code == "revision_not_found":
                    message += _revisions_line(workloads.workload_history(obj, revisions))
                raise Refused(message) from None
            before = _current_number(workloads.workload_history(obj, revisions))
            warnings = rollout.undo_warnings(obj, workloads.info(target.kind).resource)
            if plan.skipped:
                return self._no_change(
                    target, "undo", obj, plan.message, revision=before, warnings=warnings
                )
            updated = self._apply(target, obj, plan.patch, None, field_manager="kubectl-rollout")
            return self._changed(
                target,
                "undo",
                obj,
                updated,
                "rolled back",
                details=(f"to the template of revision {plan.target_revision}",),
                notices=notices,
                revision=before,
                warnings=warnings,
            )

        return self._with_fresh_state(target, attempt, expect, "undo")

    def pause(
        self,
        target: Target,
        actor: Actor,
        reason: str | None = None,
        *,
        expect: str | None = None,
    ) -> Change:
        return self._set_paused(target, paused=True, expect=expect)

    def resume(
        self,
        target: Target,
        actor: Actor,
        reason: str | None = None,
        *,
        expect: str | None = None,
    ) -> Change:
        return self._set_paused(target, paused=False, expect=expect)

    def _set_paused(self, target: Target, *, paused: bool, expect: str | None) -> Change:
        """kubectl's pauser/resumer: refused where kubectl refuses; never a change-cause."""
        action = "pause" if paused else "resume"
        check = workloads.check_pause if paused else workloads.check_resume
        patch = rollout.pause_patch() if paused else rollout.resume_patch()

        def attempt(deployment: Json) -> Change:
            _refusal_to_error(lambda: check(target.kind, deployment))
            # Pausing or resuming a GitOps-managed object is a change to it like any other.
            notices = self._ownership(target, deployment, action)
            return self._simple_patch(
                target,
                deployment,
                action,
                patch,
                None,
                "paused" if paused else "resumed",
                starts_rollout=not paused,
                notices=notices,
            )

        return self._with_fresh_state(target, attempt, expect, action)

    def restart(
        self, target: Target, actor: Actor, reason: str | None, *, expect: str | None = None
    ) -> Change:
        def attempt(deployment: Json) -> Change:
            now = self._now()
            _refusal_to_error(lambda: rollout.check_restart(deployment, now))
            notices = self._ownership(target, deployment, "restart")
            return self._simple_patch(
                target,
                deployment,
                "restart",
                rollout.restart_patch(now),
                change_cause("restart", actor, reason),
                "restarted",
                notices=notices,
            )

        return self._with_fresh_state(target, attempt, expect, "restart")

    def check(self, target: Target, obj: Json, action: str, to_revision: int = 0) -> None:
        """kubectl's refusals for `action` on this object, before anything is asked or sent
        (an approval request for something kubectl would refuse is never posted): pause and
        resume of a StatefulSet or DaemonSet, scale of a DaemonSet, an undo kubectl could
        not plan, and `gitops: refuse` on a GitOps-managed object."""
        if action == "pause":
            _refusal_to_error(lambda: workloads.check_pause(target.kind, obj))
        elif action == "resume":
            _refusal_to_error(lambda: workloads.check_resume(target.kind, obj))
        elif action == "scale":
            _refusal_to_error(lambda: workloads.check_scale(target.kind, target.name))
        elif action == "undo":
            self.undo_plan(target, obj, to_revision)
        elif action == "restart":
            _refusal_to_error(lambda: rollout.check_restart(obj))
        if action != "create":
            self._ownership(target, obj, "")

    def check_create(self, target: Target) -> None:
        """kubectl create's refusal, before anything is asked: the Deployment exists."""
        try:
            self.on(target.context).get_workload(target.kind, target.namespace, target.name)
        except NotFound:
            return
        raise _already_exists(target)

    def set_image_plan(self, obj: Json, images: Sequence[tuple[str, str]]) -> rollout.SetImagePlan:
        """kubectl set image's plan; Refused where kubectl changes nothing and fails: pairs it
        rejects, or only containers it cannot find (its errors, then the containers there are
        on a line of their own)."""
        plan = _refusal_to_error(lambda: rollout.plan_set_image(obj, images))
        if plan.patch is None and plan.errors:
            spec = obj.get("spec", {}).get("template", {}).get("spec", {})
            names = [
                c.get("name", "")
                for key in ("containers", "initContainers")
                for c in spec.get(key) or []
            ]
            raise Refused("\n".join([*plan.errors, "containers: " + ", ".join(names)]))
        return plan

    def undo_plan(
        self, target: Target, obj: Json, to_revision: int
    ) -> tuple[int, dict[str, Any], bool, str]:
        """(target revision, its template, skipped, message) of an undo, for any kind; kubectl's
        refusals as Refused (with the revisions there are, for an unknown one)."""
        try:
            if target.kind == "deployment":
                plan = rollout.plan_undo(
                    obj, self.owned_replica_sets(obj, target.context), to_revision
                )
                return plan.target_revision, plan.template, plan.skipped, plan.message
            revisions = self.owned_revisions(target, obj)
            wplan = workloads.plan_workload_undo(obj, revisions, to_revision)
            return wplan.target_revision, wplan.template, wplan.skipped, wplan.message
        except rollout.UndoRefused as exc:
            message = exc.message
            if exc.reason_code == "revision_not_found":
                message += _revisions_line(self.revisions(target, obj))
            raise Refused(message) from None

    def binding(self, target: Target, action: str) -> str:
        """What a pending approval of `action` is bound to now (see `binding`)."""
        return binding(self.get(target), action)

    # -- helpers ---------------------------------------------------------------------------------

    def _simple_patch(
        self,
        target: Target,
        deployment: Json,
        action: str,
        patch: Json,
        cause: str | None,
        verb: str,
        *,
        starts_rollout: bool = True,
        notices: tuple[str, ...] = (),
    ) -> Change:
        updated = self._apply(target, deployment, patch, cause, field_manager="kubectl-rollout")
        return self._changed(
            target,
            action,
            deployment,
            updated,
            verb,
            starts_rollout=starts_rollout,
            notices=notices,
        )

    def _apply(
        self,
        target: Target,
        deployment: Json,
        patch: Json,
        cause: str | None,
        *,
        field_manager: str,
    ) -> Json:
        """A strategic-merge patch pinned to the resourceVersion it was computed from: if the
        object changed since, the API server answers 409 and we plan again.

        A template change also records who and why as the change-cause, in the same request,
        so the new revision (ReplicaSet or ControllerRevision) inherits the right cause; any
        other change (`cause` None) leaves the change-cause alone, as kubectl does.
        """
        body: dict[str, Any] = (
            rollout.with_change_cause(patch, cause) if cause is not None else dict(patch)
        )
        metadata = dict(body.get("metadata") or {})
        metadata["resourceVersion"] = deployment["metadata"]["resourceVersion"]
        body["metadata"] = metadata
        updated = self._write(
            target.context,
            deployment,
            lambda: self.on(target.context).patch_workload(
                target.kind, target.namespace, target.name, body, field_manager=field_manager
            ),
        )
        if cause is not None:
            updated = self._retire_cause(target, updated, cause)
        return updated

    def _retire_cause(self, target: Target, updated: Json, cause: str) -> Json:
        """Takes the bot's change-cause off the object once the revision its change made
        carries it, so the next revision someone else makes (`kubectl rollout restart`, say)
        does not inherit it: the controllers copy the object's annotations onto a new revision
        (a Deployment's onto its current ReplicaSet on every sync) but never remove one.

        Bookkeeping only: it never fails the change. A paused Deployment makes no revision
        until resumed; the cause then stays, for the revision that will carry the change.

        A Deployment's generation counts annotation changes too, so the removal makes one: it
        is claimed as the bot's like any write, and the object it returns is the one the
        change's progress follows."""
        if updated.get("spec", {}).get("paused") is True:
            return updated
        path = "/metadata/annotations/" + rollout.CHANGE_CAUSE_ANNOTATION.replace("/", "~1")
        # Only if it is still the bot's text: a newer cause is someone else's to keep.
        removal = [{"op": "test", "path": path, "value": cause}, {"op": "remove", "path": path}]
        try:
            deadline = time.monotonic() + CAUSE_SETTLE_SECONDS
            # Each look is a LIST: start quick (the controller usually answers within a
            # second), then back off, so a slow controller costs a handful, not fifty.
            pause = 0.1
            while not self._revision_has_cause(target, updated, cause):
                if time.monotonic() > deadline:
                    log.info("no revision of %s carries the change-cause yet; kept", target)
                    return updated
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
            return self._write(
                target.context,
                updated,
                lambda: self.on(target.context).patch_workload(
                    target.kind, target.namespace, target.name, removal, field_manager="rollout-bot"
                ),
            )
        except Exception as exc:  # bookkeeping: the change itself is done and reported
            log.info("change-cause of %s left on the object: %s", target, type(exc).__name__)
            return updated

    def _revision_has_cause(self, target: Target, updated: Json, cause: str) -> bool:
        """Whether the revision with `updated`'s pod template carries `cause`."""
        template = updated.get("spec", {}).get("template", {})
        if target.kind == "deployment":
            for rs in self.owned_replica_sets(updated, target.context):
                annotations = rs.get("metadata", {}).get("annotations") or {}
                if rollout.templates_equal_ignoring_hash(
                    rs.get("spec", {}).get("template", {}), template
                ):
                    return bool(annotations.get(rollout.CHANGE_CAUSE_ANNOTATION) == cause)
            return False
        for revision in workloads.workload_history(updated, self.owned_revisions(target, updated)):
            if revision.is_current:
                return revision.change_cause == cause
        return False

    def _ownership(self, target: Target, obj: Json, action: str) -> tuple[str, ...]:
        """Who else owns this object: refuses a GitOps-managed target when the policy says
        `gitops: refuse`, else returns the lines that say so (and, for scale, the HPA)."""
        owner = ownership.gitops_owner(obj)
        if owner is not None and self.gitops == "refuse":
            raise Refused(
                f"{owner.describe()} manages {target.display} `{target.name}`; the policy "
                f"(`gitops: refuse`) leaves changes to it. Nothing was changed: change it in "
                f"Git instead."
            )
        return self.ownership_notices(target, action, obj)

    def ownership_notices(
        self, target: Target, action: str, obj: Json | None = None
    ) -> tuple[str, ...]:
        """What the reply would say about who else owns the object (GitOps tool, HPA for
        `scale`), for an approval card; never refuses."""
        obj = self.get(target) if obj is None else obj
        owner = ownership.gitops_owner(obj)
        lines = [] if owner is None else [ownership.gitops_notice(owner)]
        if action == "scale":
            try:
                autoscalers = self.on(target.context).list_autoscalers(target.namespace)
            except (Forbidden, NotFound):
                autoscalers = []
            hpa = ownership.autoscaler_for(target.kind, target.name, autoscalers)
            if hpa is not None:
                lines.append(ownership.autoscaler_notice(hpa))
        return tuple(lines)

    def _write(self, context: str, deployment: Json, write: Callable[[], Json]) -> Json:
        """Runs a write pinned to `deployment`'s resourceVersion, claiming first the generation
        it will make (the current one + 1: nobody else can write in between)."""
        meta = deployment.get("metadata", {})
        uid = str(meta.get("uid") or "")
        before = int(meta.get("generation") or 0)
        claimed = bool(uid) and self._own(lambda o: o.claim(uid, before + 1), context)
        try:
            updated = write()
        except OutcomeUnknown:
            raise  # it may have been applied: the claim stays until it expires
        except RolloutBotError:
            if claimed:
                self._own(lambda o: o.release(uid, before + 1), context)
            raise
        after = int(updated.get("metadata", {}).get("generation") or 0)
        if uid and after != before + 1:
            if claimed:
                self._own(lambda o: o.release(uid, before + 1), context)
            if after <= before:
                return updated  # the spec did not change: no new generation to own
        if uid:
            self._own(lambda o: o.mark_ours(uid, after), context)
        return updated

    def _own(self, record: Callable[[Ownership], None], context: str = "") -> bool:
        claims = self._claims
        if isinstance(claims, Mapping):
            claims = claims.get(context or self.default_context)
        if claims is None:
            return False
        try:
            record(claims)
        except Exception as exc:  # bookkeeping: it must never stop or fail a change
            log.warning("could not record which generation the bot made: %s", type(exc).__name__)
            return False
        return True

    def _with_fresh_state(
        self,
        target: Target,
        attempt: Callable[[Json], Change],
        expect: str | None,
        action: str,
    ) -> Change:
        for tries in range(1, CONFLICT_ATTEMPTS + 1):
            deployment = self.get(target)
            if expect is not None and binding(deployment, action) != expect:
                raise Refused(
                    f"`{target.name}` changed since this was requested (its pod template or "
                    "the fields this change sets are different now). Nothing was changed; "
                    "request it again against the current state."
                )
            try:
                return attempt(deployment)
            except Conflict:
                log.info("conflict on %s (attempt %d), retrying on fresh state", target, tries)
                if tries == CONFLICT_ATTEMPTS:
                    raise
                time.sleep(CONFLICT_BACKOFF * tries * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def _changed(
        self,
        target: Target,
        action: str,
        before: Json,
        after: Json,
        verb: str,
        *,
        details: tuple[str, ...] = (),
        starts_rollout: bool = True,
        notices: tuple[str, ...] = (),
        revision: int | None = None,
        warnings: tuple[str, ...] = (),
    ) -> Change:
        return Change(
            target=target,
            action=action,
            summary=f"{target.ref} {verb}",
            changed=True,
            starts_rollout=starts_rollout and not after.get("spec", {}).get("paused", False),
            revision_before=revision if revision is not None else self._revision(target, before),
            images_before=_images(before),
            images_after=_images(after),
            details=details,
            deployment=after,
            notices=notices,
            warnings=warnings,
        )

    def _no_change(
        self,
        target: Target,
        action: str,
        deployment: Json,
        message: str,
        *,
        revision: int | None = None,
        details: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
    ) -> Change:
        """Nothing was sent. `message` follows the object's name as kubectl's line; empty
        where kubectl prints nothing."""
        return Change(
            target=target,
            action=action,
            summary=f"{target.ref} {message}" if message else "",
            changed=False,
            starts_rollout=False,
            revision_before=revision
            if revision is not None
            else self._revision(target, deployment),
            images_before=_images(deployment),
            images_after=_images(deployment),
            details=details,
            deployment=deployment,
            warnings=warnings,
        )

    def current_revision(self, target: Target, obj: Json | None = None) -> int | None:
        """The workload's current revision, as `history` marks it (None when unreadable)."""
        return self._revision(target, self.get(target) if obj is None else obj)

    def _revision(self, target: Target, obj: Json) -> int | None:
        """The current revision: the annotation of a Deployment, the ControllerRevision whose
        template is live for the others (None when it cannot be read)."""
        if target.kind == "deployment":
            return rollout.revision_of(obj)
        try:
            return _current_number(self.revisions(target, obj))
        except (Forbidden, NotFound):
            return None

    def owned_revisions(self, target: Target, obj: Json) -> list[Json]:
        """The ControllerRevisions this StatefulSet or DaemonSet controls."""
        revisions = self.on(target.context).list_controller_revisions(
            target.namespace, selector_string(obj)
        )
        return cast(list[Json], workloads.owned_revisions(obj, revisions))

    def owned_replica_sets(self, deployment: Json, context: str = "") -> list[Json]:
        namespace = deployment["metadata"]["namespace"]
        replica_sets = self.on(context).list_replica_sets(namespace, selector_string(deployment))
        return cast(list[Json], rollout.owned_replica_sets(deployment, replica_sets))

    def _not_found(self, target: Target) -> NotFound:
        if self.on(target.context).namespace_exists(target.namespace) is False:
            return _namespace_missing(target.namespace)
        try:
            names = [
                d["metadata"]["name"]
                for d in self.on(target.context).list_workloads(target.kind, target.namespace)
            ]
        except Exception:  # suggestions are best effort; the answer is "not found" either way
            names = []
        close = difflib.get_close_matches(target.name, names, n=3, cutoff=0.6)
        hint = (
            " Did you mean " + ", ".join(f"`{n}`" for n in close) + "?"
            if close
            else " `/rollout list -n " + target.namespace + "` shows what is there."
        )
        where = f" of cluster `{target.context}`" if target.context else ""
        return NotFound(
            f"{target.display} `{target.name}` was not found in namespace "
            f"`{target.namespace}`{where}.{hint}"
        )

    @contextmanager
    def _namespace_context(self, namespace: str, context: str = "") -> Iterator[None]:
        try:
            yield
        except (NotFound, Forbidden):
            # Forbidden too: per-namespace RoleBindings make a missing namespace answer 403.
            if self.on(context).namespace_exists(namespace) is False:
                raise _namespace_missing(namespace) from None
            raise


def _already_exists(target: Target) -> Refused:
    # kubectl create's words, then what to do instead.
    return Refused(
        f'failed to create deployment: deployments.apps "{target.name}" already exists\n'
        f"Nothing was changed in `{target.namespace}`; use `/rollout set image` to change it."
    )


def _namespace_missing(namespace: str) -> NotFound:
    return NotFound(
        f"Namespace `{namespace}` does not exist. Nothing was changed; "
        f"pass an existing one with `-n NAMESPACE`."
    )


# What each action's approval is bound to besides the pod template: the fields it changes.
_BOUND_FIELDS: dict[str, tuple[str, ...]] = {
    "scale": ("replicas",),
    "pause": ("paused",),
    "resume": ("paused",),
}


def binding(deployment: Json, action: str) -> str:
    """What an approval is bound to: the object (uid), its pod template, and the fields the
    action changes. Not `metadata.generation`: an HPA scaling the Deployment must not void an
    image approval, while any change to the template must."""
    spec = deployment.get("spec", {})
    content = {
        "uid": deployment.get("metadata", {}).get("uid", ""),
        "template": spec.get("template", {}),
        **{name: spec.get(name) for name in _BOUND_FIELDS.get(action, ())},
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _images(deployment: Json) -> tuple[tuple[str, str], ...]:
    spec: dict[str, Any] = deployment.get("spec", {}).get("template", {}).get("spec", {})
    return tuple((c.get("name", ""), c.get("image", "")) for c in spec.get("containers", []))


def _current_number(revisions: Sequence[rollout.Revision]) -> int | None:
    return next((r.number for r in revisions if r.is_current), None)


def _find_revision(
    revisions: Sequence[rollout.Revision], number: int, *, kubectl_verb: bool = True
) -> rollout.Revision:
    for revision in revisions:
        if revision.number == number:
            return revision
    # kubectl's words for its own verb (they do not repeat the number); `diff` is the bot's
    # own and names it. Then what there is, on a line of its own.
    words = (
        "unable to find the specified revision"
        if kubectl_verb
        else f"unable to find revision {number} in history"
    )
    raise Refused(words + _revisions_line(revisions))


def _revisions_line(revisions: Sequence[rollout.Revision]) -> str:
    """The line the bot adds under kubectl's "unable to find" errors: the revisions there are."""
    known = ", ".join(str(r.number) for r in revisions) or "none"
    return f"\nrevisions in history: {known}"


def _refusal_to_error(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except rollout.RolloutRefused as exc:
        raise Refused(exc.message) from None

"""Use cases: each /rollout verb as kubectl would do it, on the `Cluster` port.

Reads return views for the Slack surface to render; mutations return a `Change` saying what
was done (or that nothing needed doing), with the revision and images before and after for the
audit trail. kubectl's refusals (`bot.domain.rollout.RolloutRefused`) become
`bot.domain.errors.Refused`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

from bot.adapters.k8s.cluster import Cluster, Json, selector_string
from bot.domain import rollout
from bot.domain.errors import (
    Conflict,
    Forbidden,
    NotFound,
    OutcomeUnknown,
    Refused,
    RolloutBotError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# A conflict means someone changed the Deployment between our read and our write; a few fresh
# attempts cover a busy controller without hiding a genuinely contended object. The controller
# writes in bursts (status after every pod change), so the attempts are spread out a little.
CONFLICT_ATTEMPTS = 5
CONFLICT_BACKOFF = 0.1


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

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


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


@dataclass(frozen=True)
class DeploymentRow:
    name: str
    ready: str
    updated: int
    available: int
    images: tuple[tuple[str, str], ...]
    revision: int | None
    status: rollout.RolloutStatus


@dataclass(frozen=True)
class StatusView:
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


class Rollouts:
    def __init__(
        self,
        cluster: Cluster,
        *,
        clock: Callable[[], datetime] | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        self.cluster = cluster
        self._now = clock or (lambda: datetime.now(UTC))
        self._ownership = ownership

    # -- reads -----------------------------------------------------------------------------------

    def list_deployments(self, namespace: str) -> list[DeploymentRow]:
        with self._namespace_context(namespace):
            deployments = self.cluster.list_deployments(namespace)
        rows = []
        for deployment in sorted(deployments, key=lambda d: d["metadata"]["name"]):
            status = rollout.rollout_status(deployment)
            rows.append(
                DeploymentRow(
                    name=deployment["metadata"]["name"],
                    ready=f"{status.ready}/{status.desired if status.desired is not None else 0}",
                    updated=status.updated,
                    available=status.available,
                    images=_images(deployment),
                    revision=status.revision,
                    status=status,
                )
            )
        return rows

    def status(self, target: Target) -> StatusView:
        deployment = self.get(target)
        replica_sets = self.owned_replica_sets(deployment)
        current = rollout.current_replica_set(deployment, replica_sets)
        pods = self.cluster.list_pods(target.namespace, selector_string(deployment))
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

    def recent_warnings(
        self, target: Target, deployment: Json, pods: Sequence[Json], limit: int = 5
    ) -> tuple[str, ...]:
        names = {deployment["metadata"]["name"], *(p["metadata"]["name"] for p in pods)}
        try:
            events = self.cluster.list_events(target.namespace, names)
        except Exception:  # events are a nicety; a missing RBAC grant must not fail status
            log.info("could not list events in %s", target.namespace)
            return ()
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        lines = []
        for event in events[-limit:]:
            obj = event.get("involvedObject", {})
            lines.append(
                f"{obj.get('kind', '')}/{obj.get('name', '')}: {event.get('reason', '')}"
                f" {event.get('message', '')}".strip()
            )
        return tuple(lines)

    def history(self, target: Target, revision: int | None = None) -> HistoryView:
        deployment = self.get(target)
        revisions = tuple(rollout.history(deployment, self.owned_replica_sets(deployment)))
        if revision is None:
            return HistoryView(target, revisions)
        detail = _find_revision(revisions, revision)
        return HistoryView(target, revisions, detail, rollout.describe_template(detail.template))

    def diff(self, target: Target, old: int, new: int | None) -> DiffView:
        deployment = self.get(target)
        revisions = tuple(rollout.history(deployment, self.owned_replica_sets(deployment)))
        before = _find_revision(revisions, old)
        if new is None:
            current = next((r for r in revisions if r.is_current), None)
            if current is None:
                raise Refused(f"`{target.name}` has no current revision yet to compare with.")
            after = current
        else:
            after = _find_revision(revisions, new)
        diff = rollout.template_diff(
            before.template,
            after.template,
            f"revision {before.number}",
            f"revision {after.number}" + (" (current)" if after.is_current else ""),
        )
        return DiffView(target, before.number, after.number, diff)

    def get(self, target: Target) -> Json:
        """The Deployment, or NotFound naming close matches / a missing namespace."""
        try:
            return self.cluster.get_deployment(target.namespace, target.name)
        except NotFound:
            raise self._not_found(target) from None
        except Forbidden:
            # Per-namespace RoleBindings make a missing namespace answer 403, not 404.
            if self.cluster.namespace_exists(target.namespace) is False:
                raise _namespace_missing(target.namespace) from None
            raise

    # -- mutations -------------------------------------------------------------------------------

    def create(
        self, target: Target, image: str, replicas: int, actor: Actor, reason: str | None
    ) -> Change:
        manifest = rollout.deployment_manifest(target.name, image, replicas)
        cause = change_cause(f"create deployment --image={image}", actor, reason)
        manifest["metadata"]["annotations"] = {rollout.CHANGE_CAUSE_ANNOTATION: cause}
        with self._namespace_context(target.namespace):
            try:
                created = self.cluster.create_deployment(target.namespace, manifest)
            except Conflict:
                raise Refused(
                    f"Deployment `{target.name}` already exists in `{target.namespace}`. "
                    f"Nothing was changed; use `/rollout set image` to change it."
                ) from None
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
            plan = _refusal_to_error(lambda: rollout.plan_set_image(deployment, images))
            if plan.patch is None:
                return self._no_change(
                    target, "set-image", deployment, "image already set: no change, no new revision"
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
            current = deployment.get("spec", {}).get("replicas", 1)
            if current == replicas:
                return self._no_change(
                    target, "scale", deployment, f"already at {replicas} replicas: no change"
                )
            # One patch for replicas and change-cause, so the record can never disagree with
            # the spec; the effect on the cluster is that of `kubectl scale`.
            updated = self._apply(
                target,
                deployment,
                {"spec": {"replicas": replicas}},
                change_cause(f"scale --replicas={replicas}", actor, reason),
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
        def attempt(deployment: Json) -> Change:
            replica_sets = self.owned_replica_sets(deployment)
            try:
                plan = rollout.plan_undo(deployment, replica_sets, to_revision)
            except rollout.UndoRefused as exc:
                message = exc.message
                if exc.reason_code == "revision_not_found":
                    known = rollout.history(deployment, replica_sets)
                    listed = ", ".join(str(r.number) for r in known) or "none"
                    message += f" (revisions: {listed})."
                raise Refused(message) from None
            if plan.skipped:
                return self._no_change(target, "undo", deployment, plan.message)
            flag = f" --to-revision={to_revision}" if to_revision else ""
            plan = plan.with_change_cause(change_cause(f"undo{flag}", actor, reason))
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
                deployment,
                lambda: self.cluster.patch_deployment(
                    target.namespace, target.name, patch, field_manager="kubectl-rollout"
                ),
            )
            return self._changed(
                target,
                "undo",
                deployment,
                updated,
                "rolled back",
                details=(f"to the template of revision {plan.target_revision}",),
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
        def attempt(deployment: Json) -> Change:
            _refusal_to_error(lambda: rollout.check_pause(deployment))
            return self._simple_patch(
                target,
                deployment,
                "pause",
                rollout.pause_patch(),
                actor,
                reason,
                "paused",
                starts_rollout=False,
            )

        return self._with_fresh_state(target, attempt, expect, "pause")

    def resume(
        self,
        target: Target,
        actor: Actor,
        reason: str | None = None,
        *,
        expect: str | None = None,
    ) -> Change:
        def attempt(deployment: Json) -> Change:
            _refusal_to_error(lambda: rollout.check_resume(deployment))
            return self._simple_patch(
                target, deployment, "resume", rollout.resume_patch(), actor, reason, "resumed"
            )

        return self._with_fresh_state(target, attempt, expect, "resume")

    def restart(
        self, target: Target, actor: Actor, reason: str | None, *, expect: str | None = None
    ) -> Change:
        def attempt(deployment: Json) -> Change:
            now = self._now()
            _refusal_to_error(lambda: rollout.check_restart(deployment, now))
            return self._simple_patch(
                target,
                deployment,
                "restart",
                rollout.restart_patch(now),
                actor,
                reason,
                "restarted",
            )

        return self._with_fresh_state(target, attempt, expect, "restart")

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
        actor: Actor,
        reason: str | None,
        verb: str,
        *,
        starts_rollout: bool = True,
    ) -> Change:
        updated = self._apply(
            target,
            deployment,
            patch,
            change_cause(action, actor, reason),
            field_manager="kubectl-rollout",
        )
        return self._changed(
            target, action, deployment, updated, verb, starts_rollout=starts_rollout
        )

    def _apply(
        self, target: Target, deployment: Json, patch: Json, cause: str, *, field_manager: str
    ) -> Json:
        """A strategic-merge patch that also records who and why (in the same request, so the
        new ReplicaSet inherits the right cause), pinned to the resourceVersion it was computed
        from: if the Deployment changed since, the API server answers 409 and we plan again."""
        body = rollout.with_change_cause(patch, cause)
        body["metadata"]["resourceVersion"] = deployment["metadata"]["resourceVersion"]
        return self._write(
            deployment,
            lambda: self.cluster.patch_deployment(
                target.namespace, target.name, body, field_manager=field_manager
            ),
        )

    def _write(self, deployment: Json, write: Callable[[], Json]) -> Json:
        """Runs a write pinned to `deployment`'s resourceVersion, claiming first the generation
        it will make (the current one + 1: nobody else can write in between)."""
        meta = deployment.get("metadata", {})
        uid = str(meta.get("uid") or "")
        before = int(meta.get("generation") or 0)
        claimed = bool(uid) and self._own(lambda o: o.claim(uid, before + 1))
        try:
            updated = write()
        except OutcomeUnknown:
            raise  # it may have been applied: the claim stays until it expires
        except RolloutBotError:
            if claimed:
                self._own(lambda o: o.release(uid, before + 1))
            raise
        after = int(updated.get("metadata", {}).get("generation") or 0)
        if uid and after != before + 1:
            if claimed:
                self._own(lambda o: o.release(uid, before + 1))
            if after <= before:
                return updated  # the spec did not change: no new generation to own
        if uid:
            self._own(lambda o: o.mark_ours(uid, after))
        return updated

    def _own(self, record: Callable[[Ownership], None]) -> bool:
        if self._ownership is None:
            return False
        try:
            record(self._ownership)
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
    ) -> Change:
        return Change(
            target=target,
            action=action,
            summary=f"deployment.apps/{target.name} {verb}",
            changed=True,
            starts_rollout=starts_rollout and not after.get("spec", {}).get("paused", False),
            revision_before=rollout.revision_of(before),
            images_before=_images(before),
            images_after=_images(after),
            details=details,
            deployment=after,
        )

    def _no_change(self, target: Target, action: str, deployment: Json, message: str) -> Change:
        return Change(
            target=target,
            action=action,
            summary=f"deployment.apps/{target.name} {message}",
            changed=False,
            starts_rollout=False,
            revision_before=rollout.revision_of(deployment),
            images_before=_images(deployment),
            images_after=_images(deployment),
            deployment=deployment,
        )

    def owned_replica_sets(self, deployment: Json) -> list[Json]:
        namespace = deployment["metadata"]["namespace"]
        replica_sets = self.cluster.list_replica_sets(namespace, selector_string(deployment))
        return cast(list[Json], rollout.owned_replica_sets(deployment, replica_sets))

    def _not_found(self, target: Target) -> NotFound:
        if self.cluster.namespace_exists(target.namespace) is False:
            return _namespace_missing(target.namespace)
        try:
            names = [d["metadata"]["name"] for d in self.cluster.list_deployments(target.namespace)]
        except Exception:  # suggestions are best effort; the answer is "not found" either way
            names = []
        close = difflib.get_close_matches(target.name, names, n=3, cutoff=0.6)
        hint = (
            " Did you mean " + ", ".join(f"`{n}`" for n in close) + "?"
            if close
            else " `/rollout list -n " + target.namespace + "` shows what is there."
        )
        return NotFound(
            f"Deployment `{target.name}` was not found in namespace `{target.namespace}`.{hint}"
        )

    @contextmanager
    def _namespace_context(self, namespace: str) -> Iterator[None]:
        try:
            yield
        except (NotFound, Forbidden):
            # Forbidden too: per-namespace RoleBindings make a missing namespace answer 403.
            if self.cluster.namespace_exists(namespace) is False:
                raise _namespace_missing(namespace) from None
            raise


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


def _find_revision(revisions: Sequence[rollout.Revision], number: int) -> rollout.Revision:
    for revision in revisions:
        if revision.number == number:
            return revision
    known = ", ".join(str(r.number) for r in revisions) or "none"
    raise Refused(
        f"unable to find the specified revision {number} in history (revisions: {known})."
    )


def _refusal_to_error(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except rollout.RolloutRefused as exc:
        raise Refused(exc.message) from None

"""Use cases: each /rollout verb as kubectl would do it, on the `Cluster` port.

Every verb works on a `Target`: a Deployment, StatefulSet or DaemonSet (`Target.kind`), with
kubectl's rules for that kind: the verb modules in `bot.domain.verbs` switch on the kind, and
`bot.domain.status` and `bot.domain.revisions` read status and history for every kind.

Reads return views for the Slack surface to render; mutations return a `Change` saying what
was done (or that nothing needed doing), with the revision and images before and after for the
audit trail. kubectl's refusals (`bot.domain.refusals.RolloutRefused`) become
`bot.domain.errors.Refused`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.domain import kinds
from bot.domain.describe import describe_template
from bot.domain.errors import (
    Forbidden,
    Refused,
)
from bot.domain.pods import (
    ReplicaSetSummary,
    pod_summary,
    pods_by_revision,
    replica_set_summary,
)
from bot.domain.revisions import (
    current_replica_set,
    paused_template_pending,
    workload_history,
)
from bot.domain.selectors import selector_string
from bot.domain.status import rollout_status, workload_status
from bot.domain.targets import Target
from bot.domain.templates import template_diff
from bot.domain.views import DeploymentRow, DiffView, HistoryView, StatusView
from bot.services.changes import Changes
from bot.services.ports import Json
from bot.services.workload_access import (
    Ownership,
    PolicyLike,
    container_images,
    find_revision,
)
from bot.services.writes import (
    CAUSE_SETTLE_SECONDS,
    CONFLICT_ATTEMPTS,
    CONFLICT_BACKOFF,
    binding,
    change_cause,
)

log = logging.getLogger(__name__)

__all__ = [
    "CAUSE_SETTLE_SECONDS",
    "CONFLICT_ATTEMPTS",
    "CONFLICT_BACKOFF",
    "Ownership",
    "PolicyLike",
    "Rollouts",
    "binding",
    "change_cause",
]


class Rollouts(Changes):
    """kubectl's verbs on one or several clusters: a `Target`'s `context` picks the cluster.

    The reads are here; the changes in `Changes`, the write machinery in `Writes`, the cluster
    and object access in `WorkloadAccess`."""

    def list_deployments(self, namespace: str, context: str = "") -> list[DeploymentRow]:
        """Every Deployment, StatefulSet and DaemonSet in the namespace, by kind then name."""
        rows = []
        for kind in kinds.KINDS:
            try:
                with self._namespace_context(namespace, context):
                    objects = self.on(context).list_workloads(kind, namespace)
            except Forbidden:
                if kinds.info(kind).required_in_listing:
                    raise
                # A bot upgraded before its RBAC still lists what it may read.
                log.warning("no permission to list %ss in %s; see the RBAC rules", kind, namespace)
                continue
            for obj in sorted(objects, key=lambda d: d["metadata"]["name"]):
                status = workload_status(kind, obj)
                rows.append(
                    DeploymentRow(
                        name=obj["metadata"]["name"],
                        ready=f"{status.ready}/{status.desired or 0}",
                        updated=status.updated,
                        available=status.available,
                        images=container_images(obj),
                        revision=status.revision,
                        status=status,
                        kind=kind,
                    )
                )
        return rows

    def status(self, target: Target) -> StatusView:
        if kinds.info(target.kind).revisions_in_replica_sets:
            return self._replica_set_status(target)
        return self._controller_revision_status(target)

    def _replica_set_status(self, target: Target) -> StatusView:
        """A Deployment's status: its ReplicaSets, newest first, and their pods."""
        deployment = self.get(target)
        replica_sets = self.owned_replica_sets(deployment, target.context)
        current = current_replica_set(deployment, replica_sets)
        pods = self.on(target.context).list_pods(target.namespace, selector_string(deployment))
        now = self._now()
        summaries = sorted(
            (replica_set_summary(rs) for rs in replica_sets),
            key=lambda s: s.revision or 0,
            reverse=True,
        )
        current_name = current["metadata"]["name"] if current else None
        pod_rows = tuple(sorted((pod_summary(p, now) for p in pods), key=lambda p: p.name))
        status = rollout_status(deployment)
        warnings: tuple[str, ...] = ()
        if not status.done:
            warnings = self.recent_warnings(target, deployment, pods)
        return StatusView(
            target=target,
            status=status,
            paused_template_pending=paused_template_pending(deployment, replica_sets),
            replica_sets=tuple((s, s.name == current_name) for s in summaries),
            pods=pod_rows,
            warnings=warnings,
            conditions=tuple(
                (c.get("type", ""), c.get("status", ""), c.get("reason", ""))
                for c in deployment.get("status", {}).get("conditions", []) or []
            ),
        )

    def _controller_revision_status(self, target: Target) -> StatusView:
        """A StatefulSet's or DaemonSet's status: its ControllerRevisions, newest first, with
        the pods of each (by the revision's hash label)."""
        obj = self.get(target)
        revisions = self.owned_revisions(target, obj)
        pods = self.on(target.context).list_pods(target.namespace, selector_string(obj))
        counts = pods_by_revision(pods)
        now = self._now()
        summaries = []
        for revision in reversed(workload_history(obj, revisions)):
            cr = next(c for c in revisions if c["metadata"]["name"] == revision.replica_set_name)
            hash_label = cr["metadata"].get("labels", {}).get("controller-revision-hash", "")
            total, ready = counts.get(revision.replica_set_name) or counts.get(hash_label, (0, 0))
            summary = ReplicaSetSummary(
                revision.replica_set_name, revision.number, revision.images, total, ready
            )
            summaries.append((summary, revision.is_current))
        status = workload_status(target.kind, obj)
        pod_rows = tuple(sorted((pod_summary(p, now) for p in pods), key=lambda p: p.name))
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

    def history(self, target: Target, revision: int | None = None) -> HistoryView:
        revisions = self.revisions(target)
        if not revision:
            return HistoryView(target, revisions)
        if not revisions:
            # kubectl says there is no history before it looks for the revision.
            return HistoryView(target, revisions, requested=revision)
        detail = find_revision(revisions, revision)
        return HistoryView(
            target,
            revisions,
            detail,
            describe_template(detail.template),
            requested=revision,
        )

    def diff(self, target: Target, old: int, new: int | None) -> DiffView:
        revisions = self.revisions(target)
        before = find_revision(revisions, old, kubectl_verb=False)
        if new is None:
            current = next((r for r in revisions if r.is_current), None)
            if current is None:
                raise Refused(f"`{target.name}` has no current revision yet to compare with.")
            after = current
        else:
            after = find_revision(revisions, new, kubectl_verb=False)
        diff = template_diff(
            before.template,
            after.template,
            f"revision {before.number}",
            f"revision {after.number}" + (" (current)" if after.is_current else ""),
        )
        return DiffView(target, before.number, after.number, diff)

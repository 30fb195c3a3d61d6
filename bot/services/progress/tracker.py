"""Live rollout progress: one message per rollout, updated in place, ending in a verdict.

How it fits together:

    track(change)         post the progress message, record the rollout in Redis
    NamespaceWatch        one watch per (namespace, kind) feeds every tracked rollout of
                          that kind there; events are matched to rollouts by the object's
                          uid, so a new object with the same name is not the old rollout, and
                          a deleted object ends its rollout with kubectl's "object has been
                          deleted"
    _on_event             kubectl's verdict on each event → a ProgressFrame → the publisher,
                          which paces updates (one per message per interval, latest wins)
    leases                each rollout is driven by exactly one replica (a renewed Redis
                          lock); another takes over when the owner dies, and a restarted bot
                          picks up every unfinished rollout from Redis
    notices               changes made outside the bot (kubectl, CI/CD, GitOps) in a channel's
                          bound namespace are announced once per revision, then tracked
    on_failure            `on_failure: rollback` hands a failed rollout to the rollback use
                          case given to the constructor
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import redis

from bot.adapters.k8s.cluster import Json, KubeCluster
from bot.adapters.k8s.watch import NamespaceWatch
from bot.adapters.redis.audit import AuditEvent, RedisAuditLog
from bot.adapters.redis.errors import StoreError
from bot.adapters.redis.lease import RedisLeases
from bot.adapters.redis.tracking import RedisRolloutRegistry
from bot.domain import rollout, workloads
from bot.domain.errors import NotFound, RolloutBotError
from bot.domain.policy import Policy
from bot.domain.tracking import TrackedRollout
from bot.services.progress.ports import OutsideChange, ProgressFrame, ProgressPublisher
from bot.services.rollouts import Change, Rollouts, StatusView, Target

log = logging.getLogger(__name__)

# The lease outlives a renewal period three times over, so one slow Redis round trip does not
# hand a rollout to another replica; a dead replica's rollouts move within LEASE_TTL.
LEASE_TTL = 10.0
LEASE_RENEW = 3.0
# A rollout is followed at most this long past its progress deadline, then given up.
GIVE_UP_AFTER = 3600.0
# StatefulSets and DaemonSets have no progress deadline of their own; kubectl waits forever.
# The bot calls such a rollout failed when an updated pod is stuck in one of these states
# (kubectl would keep printing "Waiting for N pods to be ready..."), or after this long.
WORKLOAD_DEADLINE_SECONDS = 600
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

#: Runs the automatic rollback of a failed rollout; returns the change it made (or None when
#: nothing needed doing). Raises RolloutBotError / StoreError with a message for the thread.
Rollback = Callable[[TrackedRollout], Change | None]


class ProgressTracker:
    def __init__(
        self,
        *,
        publisher: ProgressPublisher,
        cluster: KubeCluster,
        rollouts: Rollouts,
        registry: RedisRolloutRegistry,
        leases: RedisLeases,
        policy: Policy,
        audit: RedisAuditLog | None = None,
        cluster_name: str = "",
        rollback: Rollback | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.publisher = publisher
        self.cluster = cluster
        self.rollouts = rollouts
        self.registry = registry
        self.leases = leases
        self.policy = policy
        self.audit = audit
        self.cluster_name = cluster_name
        self._rollback = rollback
        self._clock = clock
        self._lock = threading.Lock()
        self._tracked: dict[str, TrackedRollout] = {}
        self._watches: dict[tuple[str, str], NamespaceWatch] = {}
        # uid -> generation last checked for an outside change (status events repeat it).
        self._noticed: dict[str, int] = {}
        self._owned: set[str] = set()
        self._stop = threading.Event()
        self._lease_thread = threading.Thread(
            target=self._lease_loop, name="rollout-leases", daemon=True
        )
        # namespace -> channel, for notices of outside changes (exact names only).
        self._notice_channels = {
            binding.namespace: channel
            for channel, binding in policy.channels.items()
            if binding.namespace
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.publisher.start()
        for namespace in self._notice_channels:
            for kind in workloads.KINDS:
                self._ensure_watch(namespace, kind)
        self._lease_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following: close the watches, deliver pending updates, hand the leases back so
        another replica takes these rollouts over at once instead of after LEASE_TTL."""
        self._stop.set()
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            watch.stop()
        self.publisher.flush(timeout)
        self.publisher.stop()
        for rollout_id in self.leases.held():
            try:
                self.leases.release(rollout_id)
            except redis.RedisError:
                log.warning("could not release the lease of rollout %s", rollout_id)
        if self._lease_thread.is_alive():
            self._lease_thread.join(1.0)

    # -- tracking --------------------------------------------------------------------------------

    def track(self, change: Change, channel_id: str, thread_ts: str, *, title: str = "") -> None:
        deployment = change.deployment
        meta = deployment.get("metadata", {})
        spec = deployment.get("spec", {})
        tracked = TrackedRollout(
            id=f"{meta.get('uid', '')}-{meta.get('generation', 0)}",
            channel=channel_id,
            thread_ts=thread_ts,
            message_ts="",
            namespace=change.target.namespace,
            deployment=change.target.name,
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0) or 0),
            started_at=self._clock(),
            deadline_seconds=_deadline(change.target.kind, spec),
            title=title or f"{change.action} on {change.target}",
            on_failure=self._on_failure_for(change.action, change.target.namespace),
            kind=change.target.kind,
        )
        try:
            self.registry.mark_ours(tracked.uid, tracked.generation)
        except redis.RedisError:
            log.warning("could not record a bot-made generation")
        self._start_tracking(tracked, deployment)

    def _start_tracking(self, tracked: TrackedRollout, deployment: Json) -> None:
        ts = self.publisher.post(
            ProgressFrame(
                tracked, workloads.workload_status(tracked.kind, deployment), self._clock()
            )
        )
        if ts is None:
            return
        tracked = replace(tracked, message_ts=ts)
        try:
            self.registry.save(tracked)
            owned = self.leases.hold(tracked.id)
        except redis.RedisError:
            owned = True  # without Redis this replica still follows what it started
        with self._lock:
            self._tracked[tracked.id] = tracked
            if owned:
                self._owned.add(tracked.id)
        self._ensure_watch(tracked.namespace, tracked.kind)
        self._evaluate(tracked.id, deployment)

    def _on_failure_for(self, action: str, namespace: str) -> str:
        rule = self.policy.approval_rule_for(action, namespace) or next(
            (r for r in self.policy.approvals if r.covers(namespace)),
            None,
        )
        return rule.on_failure if rule is not None else "notify"

    def _ensure_watch(self, namespace: str, kind: str = "deployment") -> None:
        with self._lock:
            if (namespace, kind) in self._watches or self._stop.is_set():
                return
            watch = NamespaceWatch(
                self.cluster,
                namespace,
                lambda event, obj: self._on_event(event, obj, kind),
                kind,
            )
            self._watches[(namespace, kind)] = watch
        watch.start()

    # -- events ----------------------------------------------------------------------------------

    def _on_event(self, event: str, obj: Json, kind: str = "deployment") -> None:
        meta = obj.get("metadata", {})
        namespace, uid = meta.get("namespace", ""), str(meta.get("uid", ""))
        with self._lock:
            # By uid: a new object with the same name is another object, not this rollout.
            mine = [
                t.id
                for t in self._tracked.values()
                if t.namespace == namespace
                and t.kind == kind
                and t.uid == uid
                and not t.finished
                and t.id in self._owned
            ]
        if event == "DELETED":
            for rollout_id in mine:
                self._deleted(rollout_id, obj)
            with self._lock:
                self._noticed.pop(uid, None)
            return
        for rollout_id in mine:
            self._evaluate(rollout_id, obj)
        if namespace in self._notice_channels:
            self._maybe_notice(obj, self._notice_channels[namespace], kind)

    def _deleted(self, rollout_id: str, last_seen: Json) -> None:
        """The object went away: kubectl's rollout status ends with "object has been deleted"."""
        with self._lock:
            tracked = self._tracked.get(rollout_id)
            if tracked is None or tracked.finished:
                return
        status = workloads.deleted_status(last_seen, tracked.kind)
        self._finish(ProgressFrame(tracked, status, self._clock(), verdict="deleted"))

    def _evaluate(self, rollout_id: str, deployment: Json) -> None:
        with self._lock:
            tracked = self._tracked.get(rollout_id)
            if tracked is None or tracked.finished or rollout_id not in self._owned:
                return
        if str(deployment.get("metadata", {}).get("uid", "")) != tracked.uid:
            # Another object under the same name (taken over after a restart): the tracked one
            # is gone.
            self._deleted(rollout_id, deployment)
            return
        status = workloads.workload_status(tracked.kind, deployment)
        now = self._clock()
        if status.reason == rollout.StatusReason.STRATEGY_UNSUPPORTED:
            # kubectl cannot follow an OnDelete rollout either; say so and stop.
            self._finish(ProgressFrame(tracked, status, now, verdict="not followed"))
            return
        view: StatusView | None = None
        if tracked.kind != "deployment" and not status.done:
            view = self._status_view(tracked)
            stuck = view is not None and any(
                p.phase_or_reason in STUCK_POD_REASONS for p in view.pods
            )
            if stuck or now - tracked.started_at > tracked.deadline_seconds:
                status = replace(status, failed=True)
        if not (status.done or status.failed):
            if now - tracked.started_at > tracked.deadline_seconds + GIVE_UP_AFTER:
                self._finish(ProgressFrame(tracked, status, now, verdict="gave up"))
                return
            self.publisher.update(
                ProgressFrame(tracked, status, now), final=False, on_delivered=_nothing
            )
            return
        if status.done:
            revision = status.revision
            if tracked.kind != "deployment":
                revision = self._current_revision(_target(tracked), deployment)
            self._finish(ProgressFrame(tracked, status, now, verdict="succeeded"), revision)
            return
        # Failed: name what the pods are waiting on, quote recent warnings.
        reasons: tuple[str, ...] = ()
        warnings: tuple[str, ...] = ()
        view = view or self._status_view(tracked)
        if view is not None:
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
        frame = ProgressFrame(tracked, status, now, "failed", reasons, warnings)
        revision = status.revision
        if tracked.kind != "deployment":
            revision = self._current_revision(_target(tracked), deployment)
        finished = self._finish(frame, revision)
        if finished is not None and tracked.on_failure == "rollback":
            self._roll_back(finished)

    def _status_view(self, tracked: TrackedRollout) -> StatusView | None:
        try:
            return self.rollouts.status(_target(tracked))
        except RolloutBotError:
            return None

    def _current_revision(self, target: Target, obj: Json) -> int | None:
        try:
            revisions = self.rollouts.revisions(target, obj)
        except RolloutBotError:
            return None
        return next((r.number for r in revisions if r.is_current), None)

    def _roll_back(self, tracked: TrackedRollout) -> None:
        if self._rollback is None:
            return
        try:
            change = self._rollback(tracked)
        except (RolloutBotError, StoreError) as exc:
            text = exc.user_message if isinstance(exc, RolloutBotError) else exc.message
            self.publisher.note(tracked.channel, tracked.thread_ts, text, error=True)
            return
        except Exception as exc:  # the engine must outlive any one rollback
            log.warning("automatic rollback failed: %s", type(exc).__name__)
            return
        if change is None:
            return
        self.publisher.note(
            tracked.channel,
            tracked.thread_ts,
            f":rewind: The rollout of `{_target(tracked)}` failed, so the "
            f"bot rolled it back automatically (`{change.summary}`).",
        )
        if change.changed:
            self.track(
                change,
                tracked.channel,
                tracked.thread_ts,
                title=f"automatic rollback of {change.target}",
            )

    def _finish(self, frame: ProgressFrame, revision: int | None = None) -> TrackedRollout | None:
        tracked = frame.tracked
        verdict = frame.verdict or ""
        with self._lock:
            current = self._tracked.get(tracked.id)
            if current is None or current.finished:
                return None
            done = replace(current, finished=True, verdict=verdict)
            self._tracked[tracked.id] = done

        def delivered() -> None:
            try:
                self.registry.save(done)
                self.leases.release(done.id)
            except redis.RedisError:
                log.warning("could not record the end of rollout %s", done.id)
            with self._lock:
                self._owned.discard(done.id)

        self.publisher.update(replace(frame, tracked=done), final=True, on_delivered=delivered)
        self._audit_verdict(done, verdict, revision)
        return done

    def _audit_verdict(self, tracked: TrackedRollout, verdict: str, revision: int | None) -> None:
        """The rollout's end, with the revision it produced (unknown when the change was made)."""
        if self.audit is None:
            return
        try:
            self.audit.append(
                AuditEvent(
                    event="rollout",
                    channel=tracked.channel,
                    action="rollout",
                    cluster=self.cluster_name,
                    namespace=tracked.namespace,
                    deployment=tracked.deployment,
                    outcome=verdict,
                    revision_after=revision,
                    parameters={"title": tracked.title, "kind": tracked.kind},
                )
            )
        except StoreError:
            log.warning("could not audit the verdict of %s", tracked.id)

    # -- leases: exactly one replica drives each rollout -----------------------------------------

    def _lease_loop(self) -> None:
        while not self._stop.wait(LEASE_RENEW):
            self.renew_leases()
            self.recheck_workloads()

    def recheck_workloads(self) -> None:
        """StatefulSet and DaemonSet rollouts fail by their pods, which their own watch does not
        see change: look at each one this replica drives once per lease period."""
        with self._lock:
            due = [
                t
                for t in self._tracked.values()
                if t.kind != "deployment" and not t.finished and t.id in self._owned
            ]
        for tracked in due:
            if self._stop.is_set():
                return
            try:
                obj = self.cluster.get_workload(tracked.kind, tracked.namespace, tracked.deployment)
            except NotFound:
                self._deleted(tracked.id, {"metadata": {"name": tracked.deployment}})
                continue
            except RolloutBotError:
                continue
            self._evaluate(tracked.id, obj)

    def renew_leases(self) -> None:
        try:
            active = self.registry.active()
        except redis.RedisError:
            return
        for tracked in active:
            if self._stop.is_set():
                return
            try:
                owned = self.leases.hold(tracked.id)
            except redis.RedisError:
                return
            with self._lock:
                known = self._tracked.get(tracked.id)
                if known is None or (known.finished and not tracked.finished):
                    self._tracked[tracked.id] = tracked
                if owned:
                    newly = tracked.id not in self._owned
                    self._owned.add(tracked.id)
                else:
                    newly = False
                    self._owned.discard(tracked.id)
            if owned and newly:
                # Taken over (restart or a dead replica): catch up from the current state.
                self._ensure_watch(tracked.namespace, tracked.kind)
                try:
                    deployment = self.cluster.get_workload(
                        tracked.kind, tracked.namespace, tracked.deployment
                    )
                except NotFound:
                    # Gone while nobody watched: kubectl's verdict for a deleted object.
                    self._deleted(tracked.id, {"metadata": {"name": tracked.deployment}})
                    continue
                except RolloutBotError:
                    continue
                self._evaluate(tracked.id, deployment)

    # -- notices of outside changes --------------------------------------------------------------

    def _maybe_notice(self, deployment: Json, channel: str, kind: str = "deployment") -> None:
        meta = deployment.get("metadata", {})
        uid = str(meta.get("uid", ""))
        generation = int(meta.get("generation", 0) or 0)
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        target = Target(namespace, name, kind)
        if kind == "deployment":
            revision = rollout.revision_of(deployment)
        else:
            with self._lock:
                if not uid or self._noticed.get(uid) == generation:
                    return  # a status update: the revision cannot have changed
            if generation <= 1:
                return
            revision = self._current_revision(target, deployment)
            if revision is None:
                return  # the controller has not written the new revision yet: ask again
            with self._lock:
                self._noticed[uid] = generation
        if not revision or revision <= 1 or not uid:
            return  # a brand-new object's first revision is not a change to announce
        try:
            if self.registry.is_ours(uid, generation):
                return
            if not self.registry.first_notice(uid, revision):
                return
        except redis.RedisError:
            return  # without Redis we cannot promise "once", so we stay quiet
        try:
            revisions = self.rollouts.history(target).revisions
        except RolloutBotError:
            revisions = ()
        current = next((r for r in revisions if r.number == revision), None)
        previous = [r for r in revisions if r.number < revision]
        before = previous[-1] if previous else None
        thread_ts = self.publisher.notice(
            channel,
            OutsideChange(
                target=target,
                revision=revision,
                who=_who_changed(deployment),
                images_before=tuple(before.images) if before else (),
                images_after=tuple(current.images) if current else (),
                previous_revision=before.number if before else None,
            ),
        )
        if thread_ts is None:
            return
        tracked = TrackedRollout(
            id=f"{uid}-{generation}",
            channel=channel,
            thread_ts=thread_ts,
            message_ts="",
            namespace=namespace,
            deployment=name,
            uid=uid,
            generation=generation,
            started_at=self._clock(),
            deadline_seconds=_deadline(kind, deployment.get("spec", {})),
            title=f"revision {revision} of {target}",
            kind=kind,
        )
        self._start_tracking(tracked, deployment)


def _nothing() -> None:
    pass


def _target(tracked: TrackedRollout) -> Target:
    return Target(tracked.namespace, tracked.deployment, tracked.kind)


def _deadline(kind: str, spec: Json) -> int:
    if kind == "deployment":
        return int(spec.get("progressDeadlineSeconds", 600) or 600)
    return WORKLOAD_DEADLINE_SECONDS


def _who_changed(deployment: Json) -> str:
    """The change-cause if one was recorded, else the field manager of the latest update."""
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    cause = annotations.get(rollout.CHANGE_CAUSE_ANNOTATION)
    if cause:
        return str(cause)
    updates = [
        m
        for m in deployment.get("metadata", {}).get("managedFields") or []
        if m.get("operation") in ("Update", "Apply") and m.get("subresource") != "status"
    ]
    updates.sort(key=lambda m: m.get("time") or "")
    if updates:
        return f"field manager `{updates[-1].get('manager', 'unknown')}`"
    return "someone outside the bot"


__all__ = ["LEASE_TTL", "ProgressTracker", "Rollback"]

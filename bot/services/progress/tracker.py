"""Live rollout progress: one message per rollout, updated in place, ending in a verdict.

How it fits together:

    track(change)         post the progress message, record the rollout in Redis
    NamespaceWatch        one watch per namespace feeds every tracked rollout there
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
from bot.domain import rollout
from bot.domain.errors import RolloutBotError
from bot.domain.policy import Policy
from bot.domain.tracking import TrackedRollout
from bot.observability.metrics import metrics
from bot.services.progress.ports import OutsideChange, ProgressFrame, ProgressPublisher
from bot.services.rollouts import Change, Rollouts, Target

log = logging.getLogger(__name__)

# The lease outlives a renewal period three times over, so one slow Redis round trip does not
# hand a rollout to another replica; a dead replica's rollouts move within LEASE_TTL.
LEASE_TTL = 10.0
LEASE_RENEW = 3.0
# A rollout is followed at most this long past its progress deadline, then given up.
GIVE_UP_AFTER = 3600.0

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
        self._watches: dict[str, NamespaceWatch] = {}
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
            self._ensure_watch(namespace)
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
            deadline_seconds=int(spec.get("progressDeadlineSeconds", 600) or 600),
            title=title or f"{change.action} on {change.target}",
            on_failure=self._on_failure_for(change.action, change.target.namespace),
        )
        try:
            self.registry.mark_ours(tracked.uid, tracked.generation)
        except redis.RedisError:
            log.warning("could not record a bot-made generation")
        self._start_tracking(tracked, deployment)

    def _start_tracking(self, tracked: TrackedRollout, deployment: Json) -> None:
        ts = self.publisher.post(
            ProgressFrame(tracked, rollout.rollout_status(deployment), self._clock())
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
        self._ensure_watch(tracked.namespace)
        self._evaluate(tracked.id, deployment)

    def _on_failure_for(self, action: str, namespace: str) -> str:
        rule = self.policy.approval_rule_for(action, namespace) or next(
            (r for r in self.policy.approvals if r.covers(namespace)),
            None,
        )
        return rule.on_failure if rule is not None else "notify"

    def _ensure_watch(self, namespace: str) -> None:
        with self._lock:
            if namespace in self._watches or self._stop.is_set():
                return
            watch = NamespaceWatch(self.cluster, namespace, self._on_event)
            self._watches[namespace] = watch
        watch.start()

    # -- events ----------------------------------------------------------------------------------

    def _on_event(self, kind: str, deployment: Json) -> None:
        if kind == "DELETED":
            return
        meta = deployment.get("metadata", {})
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        with self._lock:
            mine = [
                t.id
                for t in self._tracked.values()
                if t.namespace == namespace
                and t.deployment == name
                and not t.finished
                and t.id in self._owned
            ]
        for rollout_id in mine:
            self._evaluate(rollout_id, deployment)
        if namespace in self._notice_channels:
            self._maybe_notice(deployment, self._notice_channels[namespace])

    def _evaluate(self, rollout_id: str, deployment: Json) -> None:
        with self._lock:
            tracked = self._tracked.get(rollout_id)
            if tracked is None or tracked.finished or rollout_id not in self._owned:
                return
        status = rollout.rollout_status(deployment)
        now = self._clock()
        if not (status.done or status.failed):
            if now - tracked.started_at > tracked.deadline_seconds + GIVE_UP_AFTER:
                self._finish(ProgressFrame(tracked, status, now, verdict="gave up"))
                return
            self.publisher.update(
                ProgressFrame(tracked, status, now), final=False, on_delivered=_nothing
            )
            return
        if status.done:
            self._finish(ProgressFrame(tracked, status, now, verdict="succeeded"), status.revision)
            return
        # Failed: name what the pods are waiting on, quote recent warnings.
        reasons: tuple[str, ...] = ()
        warnings: tuple[str, ...] = ()
        try:
            view = self.rollouts.status(Target(tracked.namespace, tracked.deployment))
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
        except RolloutBotError:
            pass
        frame = ProgressFrame(tracked, status, now, "failed", reasons, warnings)
        finished = self._finish(frame, status.revision)
        if finished is not None and tracked.on_failure == "rollback":
            self._roll_back(finished)

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
            f":rewind: The rollout of `{tracked.namespace}/{tracked.deployment}` failed, so the "
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
        metrics().rollout_verdict(verdict)

        def delivered() -> None:
            # From the watch event that decided the verdict to the message showing it.
            metrics().progress_lag(self._clock() - frame.now)
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
                    parameters={"title": tracked.title},
                )
            )
        except StoreError:
            log.warning("could not audit the verdict of %s", tracked.id)

    # -- leases: exactly one replica drives each rollout -----------------------------------------

    def tracked_count(self) -> int:
        """Rollouts this replica is driving now (read by the metrics at each scrape)."""
        with self._lock:
            return sum(1 for t in self._tracked.values() if t.id in self._owned and not t.finished)

    def use_policy(self, policy: Policy) -> None:
        """A reloaded policy: on_failure rules and the channels told of outside changes."""
        notice_channels = {
            binding.namespace: channel
            for channel, binding in policy.channels.items()
            if binding.namespace
        }
        with self._lock:
            self.policy = policy
            self._notice_channels = notice_channels
            started = self._lease_thread.is_alive()
        if started:
            for namespace in notice_channels:
                self._ensure_watch(namespace)

    def _lease_loop(self) -> None:
        while not self._stop.wait(LEASE_RENEW):
            self.renew_leases()

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
                self._ensure_watch(tracked.namespace)
                try:
                    deployment = self.cluster.get_deployment(tracked.namespace, tracked.deployment)
                except RolloutBotError:
                    continue
                self._evaluate(tracked.id, deployment)

    # -- notices of outside changes --------------------------------------------------------------

    def _maybe_notice(self, deployment: Json, channel: str) -> None:
        meta = deployment.get("metadata", {})
        revision = rollout.revision_of(deployment)
        uid = str(meta.get("uid", ""))
        generation = int(meta.get("generation", 0) or 0)
        if not revision or revision <= 1 or not uid:
            return  # a brand-new Deployment's first revision is not a change to announce
        try:
            if self.registry.is_ours(uid, generation):
                return
            if not self.registry.first_notice(uid, revision):
                return
        except redis.RedisError:
            return  # without Redis we cannot promise "once", so we stay quiet
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        target = Target(namespace, name)
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
            deadline_seconds=int(
                deployment.get("spec", {}).get("progressDeadlineSeconds", 600) or 600
            ),
            title=f"revision {revision} of {target}",
        )
        self._start_tracking(tracked, deployment)


def _nothing() -> None:
    pass


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

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
    ownership             every write the bot makes claims its generation in Redis *before*
                          the PATCH (bot.services.rollouts), so a watch event for it is known
                          as the bot's own on every replica, whichever comes first: the event
                          or the bot registering the rollout it started
    notices               changes made outside the bot (kubectl, CI/CD, GitOps) in a channel's
                          bound namespace are announced once per revision; their rollout is
                          followed in the notice's thread only with `follow_outside: true`
    verdicts              a verdict belongs to the rollout it judges: a ProgressDeadlineExceeded
                          condition left over from an earlier rollout (the controller keeps it
                          when it reuses a ReplicaSet) counts only once this rollout's own
                          deadline, from when it started, has passed without progress
    on_failure            `on_failure: rollback` (from the approval rule covering the action
                          that started the rollout) hands a failed rollout to the rollback use
                          case given to the constructor, once; an automatic rollback that fails
                          too is never undone: the thread is told a person is needed
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import redis

from bot.adapters.k8s.cluster import Json, KubeCluster, selector_string
from bot.adapters.k8s.watch import NamespaceWatch
from bot.adapters.redis.audit import AuditEvent, RedisAuditLog
from bot.adapters.redis.errors import StoreError
from bot.adapters.redis.keys import context_part
from bot.adapters.redis.lease import RedisLeases
from bot.adapters.redis.tracking import RedisRolloutRegistry
from bot.domain import rollout, workloads
from bot.domain.errors import NotFound, RolloutBotError
from bot.domain.policy import Policy
from bot.domain.rollout import RolloutStatus, StatusReason
from bot.domain.tracking import TrackedRollout
from bot.observability.logs import log_context
from bot.observability.metrics import metrics
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
# Kubernetes' documented "forced rollback": the StatefulSet controller does not replace a pod
# stuck on a broken revision by itself, not even after an undo (kubectl's neither).
STATEFULSET_FORCED_ROLLBACK = (
    "A StatefulSet does not replace a pod stuck on a broken revision by itself, not even after "
    "an undo: once the template is good, delete that pod so the controller recreates it."
)
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


@dataclass(frozen=True)
class _NoticeChannel:
    channel: str
    follow: bool


def command_verb(action: str) -> str:
    """The command as typed (`set image`), from the policy's action name (`set-image`)."""
    return action.replace("-", " ")


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
        context: str = "",
        default_context: bool = True,
    ) -> None:
        self.publisher = publisher
        self.cluster = cluster
        self.rollouts = rollouts
        self.registry = registry
        self.leases = leases
        self.policy = policy
        self.audit = audit
        self.cluster_name = cluster_name
        #: The kubeconfig context this tracker follows ("" in a one-cluster installation);
        #: each context has its own tracker, watches and leases, so one slow or unreachable
        #: cluster never delays another's progress.
        self.context = context
        #: Whether channels bound to no context are this context's (the default one's).
        self._default_context = default_context
        self._rollback = rollback
        self._clock = clock
        self._lock = threading.Lock()
        self._tracked: dict[str, TrackedRollout] = {}
        self._watches: dict[tuple[str, str], NamespaceWatch] = {}
        # uid -> generation last checked for an outside change (status events repeat it).
        self._noticed: dict[str, int] = {}
        self._owned: set[str] = set()
        # rollout id -> when its own deadline passes, for rollouts whose failure is held back
        # (no watch event comes when nothing changes, so the lease loop looks again then).
        self._held: dict[str, float] = {}
        # rollout id -> the status last shown, so the elapsed time can count up while nothing
        # else moves (no watch event comes while a rollout waits).
        self._shown: dict[str, RolloutStatus] = {}
        self._stop = threading.Event()
        self._lease_thread = threading.Thread(
            target=self._lease_loop, name="rollout-leases", daemon=True
        )
        # namespace -> channel, for notices of outside changes (exact names only).
        self._notice_channels = self._notice_channels_of(policy)

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

    def track(
        self,
        change: Change,
        channel_id: str,
        thread_ts: str,
        *,
        title: str = "",
        automatic: bool = False,
    ) -> None:
        """Follow the rollout a change started, in one message threaded under `thread_ts`.

        That the generation is the bot's own was recorded before the write (see Ownership in
        bot.services.rollouts), so no replica announces it as an outside change."""
        deployment = change.deployment
        meta = deployment.get("metadata", {})
        spec = deployment.get("spec", {})
        tracked = TrackedRollout(
            id=self._rollout_id(str(meta.get("uid", "")), int(meta.get("generation", 0) or 0)),
            channel=channel_id,
            thread_ts=thread_ts,
            message_ts="",
            namespace=change.target.namespace,
            deployment=change.target.name,
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0) or 0),
            started_at=self._clock(),
            deadline_seconds=_deadline(change.target.kind, spec),
            title=title or f"{command_verb(change.action)} {change.target}{self._where()}",
            on_failure=(
                "notify"
                if automatic
                else self._on_failure_for(change.action, change.target.namespace)
            ),
            automatic=automatic,
            kind=change.target.kind,
            context=self.context,
            requester=change.requester,
        )
        self._start_tracking(tracked, deployment)

    def _start_tracking(self, tracked: TrackedRollout, deployment: Json) -> None:
        now = self._clock()
        ts = self.publisher.post(
            ProgressFrame(tracked, self._status_for(tracked, deployment, now), now)
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
        # Events that arrived between the write and now were not matched to this rollout yet:
        # catch up from the current state rather than from the write's answer.
        with contextlib.suppress(RolloutBotError):
            deployment = self.cluster.get_workload(
                tracked.kind, tracked.namespace, tracked.deployment
            )
        self._evaluate(tracked.id, deployment)

    def _on_failure_for(self, action: str, namespace: str) -> str:
        """Only an approval rule that covers the action that started the rollout decides."""
        rule = self.policy.approval_rule_for(action, namespace, self.cluster_name)
        return rule.on_failure if rule is not None else "notify"

    def _where(self) -> str:
        """` in east` when several clusters are served (the title names the cluster)."""
        return f" in {self.context}" if self.context else ""

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
        with log_context(rollout_id=rollout_id):
            self._evaluate_now(rollout_id, deployment)

    def _evaluate_now(self, rollout_id: str, deployment: Json) -> None:
        with self._lock:
            tracked = self._tracked.get(rollout_id)
            if tracked is None or tracked.finished or rollout_id not in self._owned:
                return
        if str(deployment.get("metadata", {}).get("uid", "")) != tracked.uid:
            # Another object under the same name (taken over after a restart): the tracked one
            # is gone.
            self._deleted(rollout_id, deployment)
            return
        now = self._clock()
        status = self._status_for(tracked, deployment, now)
        if status.reason == rollout.StatusReason.STRATEGY_UNSUPPORTED:
            # kubectl cannot follow an OnDelete rollout either; say so and stop.
            self._finish(ProgressFrame(tracked, status, now, verdict="not followed"))
            return
        view: StatusView | None = None
        # StatefulSets and DaemonSets have no progress deadline of their own: a stuck pod (or
        # the bot's limit) decides.
        if (
            tracked.kind != "deployment"
            and not status.done
            and (
                now - tracked.started_at > tracked.deadline_seconds
                or self._has_stuck_pod(tracked, deployment)
            )
        ):
            status = replace(status, failed=True)
        if not (status.done or status.failed):
            if now - tracked.started_at > tracked.deadline_seconds + GIVE_UP_AFTER:
                self._finish(ProgressFrame(tracked, status, now, verdict="gave up"))
                return
            with self._lock:
                self._shown[rollout_id] = status
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
            if tracked.kind == "statefulset" and STUCK_POD_REASONS.intersection(reasons):
                warnings = (*warnings, STATEFULSET_FORCED_ROLLBACK)
        revision = status.revision
        if tracked.kind != "deployment":
            revision = self._current_revision(_target(tracked), deployment)
        frame = ProgressFrame(tracked, status, now, "failed", reasons, warnings, revision)
        finished = self._finish(frame, revision)
        if finished is None:
            return
        if status.generation != finished.generation:
            return  # a newer change superseded this one: its own rollout decides what to do
        if finished.automatic:
            self.publisher.needs_person(finished, revision)
        elif finished.on_failure == "rollback":
            self._roll_back(finished)

    def _has_stuck_pod(self, tracked: TrackedRollout, obj: Json) -> bool:
        """One pod list (not the whole status view): is any pod of the workload stuck?"""
        try:
            pods = self.cluster.list_pods(tracked.namespace, selector_string(obj))
        except RolloutBotError:
            return False
        now = datetime.fromtimestamp(self._clock(), UTC)
        return any(rollout.pod_summary(p, now).phase_or_reason in STUCK_POD_REASONS for p in pods)

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

    def _status_for(self, tracked: TrackedRollout, obj: Json, now: float) -> RolloutStatus:
        """kubectl's verdict, except that a deadline exceeded before this rollout's own
        deadline passed is an earlier rollout's: the controller keeps that condition when the
        change reuses an existing ReplicaSet. Until then the rollout is judged without it.
        (StatefulSets and DaemonSets have no such condition.)"""
        if tracked.kind != "deployment":
            return workloads.workload_status(tracked.kind, obj)
        status = rollout.rollout_status(obj)
        due = tracked.started_at + tracked.deadline_seconds
        with self._lock:
            if status.reason != StatusReason.DEADLINE_EXCEEDED or now >= due:
                self._held.pop(tracked.id, None)
                return status
            self._held[tracked.id] = due
        return rollout.rollout_status(_without_deadline_exceeded(obj))

    def _recheck_held(self) -> None:
        """Rollouts whose failure was held back: judge them again once their deadline passed
        (a stuck rollout changes nothing in the cluster, so no event would come)."""
        now = self._clock()
        with self._lock:
            due = [
                rollout_id
                for rollout_id, at in self._held.items()
                if at <= now and rollout_id in self._owned
            ]
        for rollout_id in due:
            with self._lock:
                tracked = self._tracked.get(rollout_id)
            if tracked is None or tracked.finished:
                with self._lock:
                    self._held.pop(rollout_id, None)
                continue
            try:
                obj = self.cluster.get_workload(tracked.kind, tracked.namespace, tracked.deployment)
            except RolloutBotError:
                continue
            self._evaluate(rollout_id, obj)

    def _roll_back(self, tracked: TrackedRollout) -> None:
        if self._rollback is None:
            return
        try:
            # At most one automatic rollback per rollout, whichever replica judges it.
            if not self.registry.first_rollback(tracked.id):
                return
        except redis.RedisError:
            log.warning("could not record the automatic rollback of %s", tracked.id)
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
                automatic=True,
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
            self._held.pop(tracked.id, None)
            self._shown.pop(tracked.id, None)
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
                    parameters={"title": tracked.title, "kind": tracked.kind},
                )
            )
        except StoreError:
            log.warning("could not audit the verdict of %s", tracked.id)

    # -- leases: exactly one replica drives each rollout -----------------------------------------

    def watch_count(self) -> int:
        """Watches open now: one per (namespace, kind) in use in this context."""
        with self._lock:
            return len(self._watches)

    def tracked_count(self) -> int:
        """Rollouts this replica is driving now (read by the metrics at each scrape)."""
        with self._lock:
            return sum(1 for t in self._tracked.values() if t.id in self._owned and not t.finished)

    def _notice_channels_of(self, policy: Policy) -> dict[str, _NoticeChannel]:
        """The channels bound to a namespace of this context (a channel bound to no context
        is the default context's)."""
        return {
            binding.namespace: _NoticeChannel(channel, binding.follow_outside)
            for channel, binding in policy.channels.items()
            if binding.namespace
            and (
                binding.context == self.context
                if binding.context is not None and self.context
                else self._default_context
            )
        }

    def _rollout_id(self, uid: str, generation: int) -> str:
        if not self.context:
            return f"{uid}-{generation}"
        return f"{context_part(self.context)}.{uid}-{generation}"

    def use_policy(self, policy: Policy) -> None:
        """A reloaded policy: on_failure rules and the channels told of outside changes."""
        notice_channels = self._notice_channels_of(policy)
        with self._lock:
            self.policy = policy
            self._notice_channels = notice_channels
            started = self._lease_thread.is_alive()
        if started:
            for namespace in notice_channels:
                for kind in workloads.KINDS:
                    self._ensure_watch(namespace, kind)

    def _lease_loop(self) -> None:
        while not self._stop.wait(LEASE_RENEW):
            try:
                self.renew_leases()
                self._recheck_held()
                self.recheck_workloads()
                self.count_up()
            except Exception as exc:  # the loop must outlive any one rollout
                log.warning("lease loop: %s", type(exc).__name__)

    def count_up(self) -> None:
        """Redraw the rollouts this replica drives with the time elapsed now. The message shows
        it in 5 s steps and the publisher skips unchanged messages and paces the rest, so this
        costs one chat.update per rollout every 5 s at most, well within Slack's limits."""
        now = self._clock()
        with self._lock:
            for rollout_id, status in list(self._shown.items()):
                tracked = self._tracked.get(rollout_id)
                if tracked is None or tracked.finished or rollout_id not in self._owned:
                    del self._shown[rollout_id]
                    continue
                # Under the lock: a verdict being recorded now is not overtaken by this frame.
                self.publisher.update(
                    ProgressFrame(tracked, status, now), final=False, on_delivered=_nothing
                )

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

    def _maybe_notice(
        self, deployment: Json, where: _NoticeChannel, kind: str = "deployment"
    ) -> None:
        """Announce a revision someone else made, once. Judged only once the controller has
        observed the generation (before that the revision annotation is the previous one's):
        a revision the bot's own generation produced is marked as announced, so a later
        outside change that makes no new revision (a scale) never announces it either."""
        meta = deployment.get("metadata", {})
        uid = str(meta.get("uid", ""))
        generation = int(meta.get("generation", 0) or 0)
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        target = Target(namespace, name, kind, self.context)
        if kind == "deployment":
            observed = int(deployment.get("status", {}).get("observedGeneration", 0) or 0)
            if observed < generation:
                return
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
                self.registry.first_notice(uid, revision)
                return
            if not self.registry.first_notice(uid, revision):
                return
        except redis.RedisError:
            return  # without Redis we cannot promise "once", so we stay quiet
        channel = where.channel
        try:
            revisions = self.rollouts.history(target).revisions
        except RolloutBotError:
            revisions = ()
        current = next((r for r in revisions if r.number == revision), None)
        previous = [r for r in revisions if r.number < revision]
        before = previous[-1] if previous else None
        who, changed_at = _who_changed(deployment)
        thread_ts = self.publisher.notice(
            channel,
            OutsideChange(
                target=target,
                revision=revision,
                who=who,
                changed_at=changed_at,
                images_before=tuple(before.images) if before else (),
                images_after=tuple(current.images) if current else (),
                previous_revision=before.number if before else None,
            ),
        )
        if thread_ts is None or not where.follow:
            return
        tracked = TrackedRollout(
            id=self._rollout_id(uid, generation),
            channel=channel,
            thread_ts=thread_ts,
            message_ts="",
            namespace=namespace,
            deployment=name,
            uid=uid,
            generation=generation,
            started_at=self._clock(),
            deadline_seconds=_deadline(kind, deployment.get("spec", {})),
            title=f"revision {revision} of {target}{self._where()}",
            kind=kind,
            context=self.context,
        )
        self._start_tracking(tracked, deployment)


def _nothing() -> None:
    pass


def _target(tracked: TrackedRollout) -> Target:
    return Target(tracked.namespace, tracked.deployment, tracked.kind, tracked.context)


def _deadline(kind: str, spec: Json) -> int:
    if kind == "deployment":
        return int(spec.get("progressDeadlineSeconds", 600) or 600)
    return WORKLOAD_DEADLINE_SECONDS


def _without_deadline_exceeded(deployment: Json) -> Json:
    """The Deployment without a ProgressDeadlineExceeded condition (an earlier rollout's)."""
    status = dict(deployment.get("status") or {})
    status["conditions"] = [
        c
        for c in status.get("conditions") or []
        if not (c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded")
    ]
    judged = copy.copy(deployment)
    judged["status"] = status
    return judged


def _who_changed(deployment: Json) -> tuple[str, datetime | None]:
    """The field manager that last wrote the pod template, and when, from `managedFields`.

    Never the change-cause: kubectl leaves it alone, so after `kubectl set image` it still
    names the previous (Slack) change and its user. The controller's own writes (the revision
    annotation, status) are not the change either: the template is what made the revision."""
    entries = [
        m
        for m in deployment.get("metadata", {}).get("managedFields") or []
        if m.get("operation") in ("Update", "Apply") and m.get("subresource") != "status"
    ]
    entries.sort(key=lambda m: m.get("time") or "")
    spec_writers = [m for m in entries if "f:spec" in (m.get("fieldsV1") or {})]
    template_writers = [
        m for m in spec_writers if "f:template" in (m["fieldsV1"].get("f:spec") or {})
    ]
    latest = (template_writers or spec_writers or entries or [None])[-1]
    if latest is None:
        return "someone outside the bot", None
    at: datetime | None = None
    with contextlib.suppress(TypeError, ValueError):
        at = datetime.fromisoformat(str(latest.get("time")).replace("Z", "+00:00"))
    return str(latest.get("manager") or "an unnamed field manager"), at


__all__ = ["LEASE_TTL", "ProgressTracker", "Rollback", "command_verb"]

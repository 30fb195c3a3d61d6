"""One kubeconfig context's live rollout progress: one message per rollout, updated in
place, ending in a verdict.

How it fits together:

    track(change)         post the progress message, record the rollout in the store
    watches               one per (namespace, kind) feeds every tracked rollout of that kind
                          there; events are matched to rollouts by the object's uid, so a new
                          object with the same name is not the old rollout, and a deleted
                          object ends its rollout with kubectl's "object has been deleted"
    _on_event             the verdict on each event (`verdicts`) -> a ProgressFrame -> the
                          publisher, which paces updates (one per message per interval)
    leases                each rollout is driven by exactly one replica (a renewed lock);
                          another takes over when the owner dies, and a restarted bot picks
                          up every unfinished rollout from the store
    ownership             every write the bot makes claims its generation *before* the PATCH
                          (bot.services.rollouts), so no replica takes it for an outside change
    notices               outside changes in a bound namespace are announced once per
                          revision (`outside_changes`); followed only with `follow_outside`
    on_failure            `on_failure: rollback` hands a failed rollout to the rollback use
                          case, once; an automatic rollback that fails too is never undone
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from bot.domain import kinds
from bot.domain.action_words import command_verb
from bot.domain.context_names import context_part
from bot.domain.errors import NotFound, RolloutBotError, StoreError
from bot.domain.pods import pod_summary
from bot.domain.policy import Policy
from bot.domain.selectors import selector_string
from bot.domain.status import (
    RolloutStatus,
    StatusReason,
    deadline_of,
    deleted_status,
    failed_by_the_bot,
)
from bot.domain.targets import Change
from bot.domain.tracking import TrackedRollout
from bot.domain.views import StatusView
from bot.observability.logs import log_context
from bot.observability.metrics import metrics
from bot.services.ports import AuditLog, Cluster, Json, Leases, RolloutRegistry, Watch, WatchOpener
from bot.services.progress.auto_rollback import Rollback, roll_back_once
from bot.services.progress.outside_changes import (
    NoticeChannel,
    OutsideChangeNotices,
    notice_channels_of,
)
from bot.services.progress.publishing import ProgressFrame, ProgressPublisher
from bot.services.progress.verdicts import (
    GIVE_UP_AFTER,
    STUCK_POD_REASONS,
    current_revision,
    failure_details,
    judged_status,
    target_of,
    verdict_event,
)
from bot.services.rollouts import Rollouts

log = logging.getLogger(__name__)

# The lease outlives a renewal period three times over, so one slow Redis round trip does not
# hand a rollout to another replica; a dead replica's rollouts move within LEASE_TTL.
LEASE_TTL = 10.0
LEASE_RENEW = 3.0


class ProgressTracker:
    """Follows the rollouts of one context; `watches` opens a watch on that context's
    cluster (the runtime binds it to the same cluster as `cluster`)."""

    def __init__(
        self,
        *,
        publisher: ProgressPublisher,
        cluster: Cluster,
        watches: WatchOpener,
        rollouts: Rollouts,
        registry: RolloutRegistry,
        leases: Leases,
        policy: Policy,
        audit: AuditLog | None = None,
        cluster_name: str = "",
        rollback: Rollback | None = None,
        clock: Callable[[], float] = time.time,
        context: str = "",
        default_context: bool = True,
    ) -> None:
        self.publisher = publisher
        self.cluster = cluster
        self._open_watch = watches
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
        self._watches: dict[tuple[str, str], Watch] = {}
        self._notices = OutsideChangeNotices(
            context=context, registry=registry, rollouts=rollouts, publisher=publisher
        )
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
        self._notice_channels = notice_channels_of(policy, context, default_context)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.publisher.start()
        for namespace in self._notice_channels:
            for kind in kinds.KINDS:
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
            except StoreError:
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
            deadline_seconds=deadline_of(change.target.kind, spec),
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
        except StoreError:
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

    def _ensure_watch(self, namespace: str, kind: str) -> None:
        with self._lock:
            if (namespace, kind) in self._watches or self._stop.is_set():
                return
            watch = self._open_watch(
                namespace, lambda event, obj: self._on_event(event, obj, kind), kind
            )
            self._watches[(namespace, kind)] = watch
        watch.start()

    # -- events ----------------------------------------------------------------------------------

    def _on_event(self, event: str, obj: Json, kind: str) -> None:
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
            self._notices.forget(uid)
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
        status = deleted_status(last_seen, tracked.kind)
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
        if status.reason == StatusReason.STRATEGY_UNSUPPORTED:
            # kubectl cannot follow an OnDelete rollout either; say so and stop.
            self._finish(ProgressFrame(tracked, status, now, verdict="not followed"))
            return
        view: StatusView | None = None
        if failed_by_the_bot(
            tracked.kind,
            status,
            elapsed=now - tracked.started_at,
            deadline_seconds=tracked.deadline_seconds,
            stuck_pod=lambda: self._has_stuck_pod(tracked, deployment),
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
            revision = self._revision_now(tracked, status, deployment)
            self._finish(ProgressFrame(tracked, status, now, verdict="succeeded"), revision)
            return
        # Failed: name what the pods are waiting on, quote recent warnings.
        reasons, warnings = failure_details(tracked.kind, view or self._status_view(tracked))
        revision = self._revision_now(tracked, status, deployment)
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
        return any(pod_summary(p, now).phase_or_reason in STUCK_POD_REASONS for p in pods)

    def _status_view(self, tracked: TrackedRollout) -> StatusView | None:
        try:
            return self.rollouts.status(target_of(tracked))
        except RolloutBotError:
            return None

    def _revision_now(
        self, tracked: TrackedRollout, status: RolloutStatus, obj: Json
    ) -> int | None:
        """The revision the rollout produced: on the object's status where the kind carries
        it, else read from its ControllerRevisions."""
        if kinds.revision_on_object(tracked.kind):
            return status.revision
        return current_revision(self.rollouts, target_of(tracked), obj)

    def _status_for(self, tracked: TrackedRollout, obj: Json, now: float) -> RolloutStatus:
        """The verdict (`judged_status`), remembering a failure held back until it is due."""
        status, held_until = judged_status(tracked, obj, now)
        with self._lock:
            if held_until is None:
                self._held.pop(tracked.id, None)
            else:
                self._held[tracked.id] = held_until
        return status

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
        change = roll_back_once(tracked, self._rollback, self.registry, self.publisher)
        if change is not None and change.changed:
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
            except StoreError:
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
            self.audit.append(verdict_event(tracked, verdict, revision, self.cluster_name))
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

    def _rollout_id(self, uid: str, generation: int) -> str:
        if not self.context:
            return f"{uid}-{generation}"
        return f"{context_part(self.context)}.{uid}-{generation}"

    def use_policy(self, policy: Policy) -> None:
        """A reloaded policy: on_failure rules and the channels told of outside changes."""
        notice_channels = notice_channels_of(policy, self.context, self._default_context)
        with self._lock:
            self.policy = policy
            self._notice_channels = notice_channels
            started = self._lease_thread.is_alive()
        if started:
            for namespace in notice_channels:
                for kind in kinds.KINDS:
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
                if not kinds.has_progress_deadline(t.kind)
                and not t.finished
                and t.id in self._owned
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
        except StoreError:
            return
        for tracked in active:
            if self._stop.is_set():
                return
            try:
                owned = self.leases.hold(tracked.id)
            except StoreError:
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

    def _maybe_notice(self, deployment: Json, where: NoticeChannel, kind: str) -> None:
        """Announce an outside change once (`outside_changes`); follow its rollout in the
        notice's thread when the channel asks to."""
        announced = self._notices.announce(deployment, where, kind)
        if announced is None or not where.follow:
            return
        tracked = TrackedRollout(
            id=self._rollout_id(announced.uid, announced.generation),
            channel=announced.channel,
            thread_ts=announced.thread_ts,
            message_ts="",
            namespace=announced.target.namespace,
            deployment=announced.target.name,
            uid=announced.uid,
            generation=announced.generation,
            started_at=self._clock(),
            deadline_seconds=deadline_of(kind, deployment.get("spec", {})),
            title=f"revision {announced.revision} of {announced.target}{self._where()}",
            kind=kind,
            context=self.context,
        )
        self._start_tracking(tracked, deployment)


def _nothing() -> None:
    pass


__all__ = ["LEASE_RENEW", "LEASE_TTL", "ProgressTracker", "Rollback"]

"""Live rollout progress in Slack: one message per rollout, updated in place, ending in a verdict.

How it fits together:

    track(change)         post the progress message, record the rollout in Redis
    NamespaceWatch        one watch per namespace feeds every tracked rollout there
    _on_deployment        kubectl's verdict on each event → render → Coalescer
    Coalescer             at most one chat.update per message per `min_interval`, latest
                          state wins, the final verdict is retried until Slack takes it
    leases                each rollout is driven by exactly one replica (a renewed Redis
                          lease); another takes over when the owner dies, and a restarted
                          bot picks up every unfinished rollout from Redis
    notices               changes made outside the bot (kubectl, CI/CD, GitOps) in a channel's
                          bound namespace are announced once per revision, then tracked

Its Redis keys are listed with every other key in `bot.store.keys`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import blocks
from bot.domain import rollout
from bot.domain.policy import Policy
from bot.errors import Forbidden, RolloutBotError
from bot.k8s.cluster import Json, KubeCluster
from bot.rollouts import Change, Rollouts, Target
from bot.store.audit import AuditEvent, RedisAuditLog
from bot.store.errors import StoreError
from bot.store.keys import Keys

log = logging.getLogger(__name__)

# Slack's chat.update is Tier 3 (~50/min per workspace): one update per message every 2 s
# keeps a dozen concurrent rollouts well inside it.
MIN_UPDATE_INTERVAL = 2.0
# The lease outlives a renewal period three times over, so one slow Redis round trip does not
# hand a rollout to another replica; a dead replica's rollouts move within LEASE_TTL.
LEASE_TTL = 10.0
LEASE_RENEW = 3.0
# A rollout is followed at most this long past its progress deadline, then given up (kept in
# Redis history only as audit, not as an active rollout).
GIVE_UP_AFTER = 3600.0
FINAL_ATTEMPTS = 30
FORBIDDEN_RETRY = 60.0


@dataclass(frozen=True)
class TrackedRollout:
    id: str
    channel: str
    thread_ts: str
    message_ts: str
    namespace: str
    deployment: str
    uid: str
    generation: int
    started_at: float
    deadline_seconds: int
    title: str
    on_failure: str = "notify"
    finished: bool = False
    verdict: str = ""
    rolled_back: bool = False


class RolloutRegistry:
    """Tracked rollouts and their leases in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, owner: str) -> None:
        self._redis = client
        self._keys = keys
        self.owner = owner

    def save(self, tracked: TrackedRollout) -> None:
        pipe = self._redis.pipeline()
        pipe.set(self._keys.rollout(tracked.id), json.dumps(asdict(tracked)), ex=7 * 86400)
        if tracked.finished:
            pipe.srem(self._keys.rollouts_active, tracked.id)
        else:
            pipe.sadd(self._keys.rollouts_active, tracked.id)
        pipe.execute()

    def active(self) -> list[TrackedRollout]:
        found = []
        for raw_id in self._redis.smembers(self._keys.rollouts_active):
            rollout_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if not Keys.valid_part(rollout_id):
                continue
            raw = self._redis.get(self._keys.rollout(rollout_id))
            if raw is None:
                self._redis.srem(self._keys.rollouts_active, rollout_id)
                continue
            found.append(TrackedRollout(**json.loads(raw)))
        return found

    def acquire(self, rollout_id: str) -> bool:
        """True if this replica holds (or just took) the rollout's lease."""
        key = self._keys.rollout_lease(rollout_id)
        if self._redis.set(key, self.owner, nx=True, px=int(LEASE_TTL * 1000)):
            return True
        holder = self._redis.get(key)
        if holder is not None and holder.decode() == self.owner:  # type: ignore[union-attr]
            self._redis.pexpire(key, int(LEASE_TTL * 1000))
            return True
        return False

    def release(self, rollout_id: str) -> None:
        key = self._keys.rollout_lease(rollout_id)
        holder = self._redis.get(key)
        if holder is not None and holder.decode() == self.owner:  # type: ignore[union-attr]
            self._redis.delete(key)

    def mark_ours(self, uid: str, generation: int) -> None:
        self._redis.set(self._keys.ours(uid, generation), "1", ex=7 * 86400)

    def is_ours(self, uid: str, generation: int) -> bool:
        return bool(self._redis.exists(self._keys.ours(uid, generation)))

    def first_notice(self, uid: str, revision: int) -> bool:
        """True exactly once per revision, across replicas and restarts."""
        return bool(
            self._redis.set(self._keys.notice(uid, revision), self.owner, nx=True, ex=30 * 86400)
        )


class Coalescer:
    """Owns every outbound chat.update: latest state wins, paced per message."""

    def __init__(self, client: WebClient, min_interval: float = MIN_UPDATE_INTERVAL) -> None:
        self._client = client
        self._interval = min_interval
        self._pending: dict[tuple[str, str], tuple[blocks.Message, bool, Callable[[], None]]] = {}
        self._last_sent: dict[tuple[str, str], float] = {}
        self._attempts: dict[tuple[str, str], int] = {}
        self._shown: dict[tuple[str, str], blocks.Message] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="slack-updates", daemon=True)
        self.updates_sent = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def submit(
        self,
        channel: str,
        ts: str,
        message: blocks.Message,
        *,
        final: bool = False,
        on_delivered: Callable[[], None] = lambda: None,
    ) -> None:
        with self._cond:
            key = (channel, ts)
            previous = self._pending.get(key)
            # A final verdict is never replaced by a non-final state.
            if previous is not None and previous[1] and not final:
                return
            # Nothing new to show: an update would spend rate limit on an identical message.
            if not final and previous is None and self._shown.get(key) == message:
                return
            self._pending[key] = (message, final, on_delivered)
            self._cond.notify()

    def note_posted(self, channel: str, ts: str, message: blocks.Message) -> None:
        """The message was just posted: that counts as its latest update for pacing."""
        with self._cond:
            self._last_sent[(channel, ts)] = time.monotonic()
            self._shown[(channel, ts)] = message

    def flush(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(0.1)

    def _due(self) -> tuple[tuple[str, str], float]:
        now = time.monotonic()
        best: tuple[str, str] | None = None
        best_at = float("inf")
        for key in self._pending:
            at = self._last_sent.get(key, 0.0) + self._interval
            if at < best_at:
                best, best_at = key, at
        assert best is not None
        return best, best_at - now

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._pending:
                    self._cond.wait()
                if self._stop:
                    return
                key, wait = self._due()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                message, final, on_delivered = self._pending.pop(key)
                self._last_sent[key] = time.monotonic()
            delivered = self._send(key, message)
            if delivered:
                self._attempts.pop(key, None)
                with self._cond:
                    self._shown[key] = message
                if final:
                    with self._cond:
                        self._last_sent.pop(key, None)
                        self._shown.pop(key, None)
                    on_delivered()
                continue
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            if final and attempts < FINAL_ATTEMPTS:
                self.submit(key[0], key[1], message, final=True, on_delivered=on_delivered)
            elif not final:
                log.info("dropped a progress update after a failure; the next one replaces it")

    def _send(self, key: tuple[str, str], message: blocks.Message) -> bool:
        try:
            self._client.chat_update(
                channel=key[0], ts=key[1], text=message.text, blocks=message.blocks
            )
            self.updates_sent += 1
            return True
        except SlackApiError as exc:
            log.warning("chat.update failed: %s", exc.response.get("error"))
        except (SlackClientError, OSError) as exc:
            log.warning("chat.update failed: %s", type(exc).__name__)
        return False


class NamespaceWatch:
    """One watch on a namespace's Deployments, restarted on any interruption."""

    def __init__(
        self, cluster: KubeCluster, namespace: str, on_event: Callable[[Json], None]
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                items, version = self.cluster.deployments_snapshot(self.namespace)
                for item in items:
                    self.on_event(item)
                backoff = 0.5
                while not self._stop.is_set():
                    for kind, obj in self.cluster.watch_deployments(self.namespace, version):
                        if kind == "ERROR":  # e.g. 410 Gone: list again
                            raise _Relist()
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if kind in ("ADDED", "MODIFIED"):
                            self.on_event(obj)
                        if self._stop.is_set():
                            return
            except _Relist:
                continue
            except Forbidden:
                # A grant does not appear by itself in seconds: say it once, look again rarely.
                if backoff < FORBIDDEN_RETRY:
                    log.warning(
                        "no permission to watch Deployments in %s; retrying every %ds",
                        self.namespace,
                        FORBIDDEN_RETRY,
                    )
                backoff = FORBIDDEN_RETRY
                self._stop.wait(backoff)
                continue
            except RolloutBotError as exc:
                log.info(
                    "watch on %s interrupted (%s); retrying", self.namespace, type(exc).__name__
                )
            except Exception as exc:  # the watch must survive anything a handler raises
                log.warning("watch on %s failed: %s", self.namespace, type(exc).__name__)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)


class _Relist(Exception):
    pass


OnFailure = Callable[[TrackedRollout], None]


class ProgressTracker:
    def __init__(
        self,
        *,
        slack: WebClient,
        cluster: KubeCluster,
        rollouts: Rollouts,
        registry: RolloutRegistry,
        policy: Policy,
        audit: RedisAuditLog | None = None,
        cluster_name: str = "",
        min_interval: float = MIN_UPDATE_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.slack = slack
        self.cluster = cluster
        self.rollouts = rollouts
        self.registry = registry
        self.policy = policy
        self.audit = audit
        self.cluster_name = cluster_name
        self.coalescer = Coalescer(slack, min_interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._tracked: dict[str, TrackedRollout] = {}
        self._watches: dict[str, NamespaceWatch] = {}
        self._owned: set[str] = set()
        self._stop = threading.Event()
        self.auto_rollback: OnFailure | None = None
        # namespace -> channel, for notices of outside changes (exact names only).
        self._notice_channels = {
            binding.namespace: channel
            for channel, binding in policy.channels.items()
            if binding.namespace
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.coalescer.start()
        for namespace in self._notice_channels:
            self._ensure_watch(namespace)
        threading.Thread(target=self._lease_loop, name="rollout-leases", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for watch in list(self._watches.values()):
            watch.stop()
        self.coalescer.flush(2.0)
        self.coalescer.stop()
        for rollout_id in list(self._owned):
            with contextlib.suppress(redis.RedisError):
                self.registry.release(rollout_id)

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
        message = blocks.progress_message(
            tracked, rollout.rollout_status(deployment), self._clock()
        )
        try:
            response = self.slack.chat_postMessage(
                channel=tracked.channel,
                thread_ts=tracked.thread_ts,
                text=message.text,
                blocks=message.blocks,
            )
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("could not post a progress message: %s", type(exc).__name__)
            return
        tracked = replace(tracked, message_ts=str(response["ts"]))
        self.coalescer.note_posted(tracked.channel, tracked.message_ts, message)
        try:
            self.registry.save(tracked)
            owned = self.registry.acquire(tracked.id)
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
            if namespace in self._watches:
                return
            watch = NamespaceWatch(self.cluster, namespace, self._on_deployment)
            self._watches[namespace] = watch
        watch.start()

    # -- events ----------------------------------------------------------------------------------

    def _on_deployment(self, deployment: Json) -> None:
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
                self._finish(
                    tracked,
                    blocks.progress_message(tracked, status, now, verdict="gave up"),
                    "gave up",
                )
                return
            self.coalescer.submit(
                tracked.channel, tracked.message_ts, blocks.progress_message(tracked, status, now)
            )
            return
        if status.done:
            self._finish(
                tracked,
                blocks.progress_message(tracked, status, now, verdict="succeeded"),
                "succeeded",
                status.revision,
            )
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
        message = blocks.progress_message(
            tracked, status, now, verdict="failed", reasons=reasons, warnings=warnings
        )
        finished = self._finish(tracked, message, "failed", status.revision)
        if finished is not None and tracked.on_failure == "rollback" and self.auto_rollback:
            try:
                self.auto_rollback(finished)
            except Exception as exc:  # reported in the thread by the callback itself
                log.warning("automatic rollback failed: %s", type(exc).__name__)

    def _finish(
        self,
        tracked: TrackedRollout,
        message: blocks.Message,
        verdict: str,
        revision: int | None = None,
    ) -> TrackedRollout | None:
        with self._lock:
            current = self._tracked.get(tracked.id)
            if current is None or current.finished:
                return None
            done = replace(current, finished=True, verdict=verdict)
            self._tracked[tracked.id] = done

        def delivered() -> None:
            try:
                self.registry.save(done)
                self.registry.release(done.id)
            except redis.RedisError:
                log.warning("could not record the end of rollout %s", done.id)
            with self._lock:
                self._owned.discard(done.id)

        self.coalescer.submit(
            done.channel, done.message_ts, message, final=True, on_delivered=delivered
        )
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

    def _lease_loop(self) -> None:
        while not self._stop.wait(LEASE_RENEW):
            self.renew_leases()

    def renew_leases(self) -> None:
        try:
            active = self.registry.active()
        except redis.RedisError:
            return
        for tracked in active:
            try:
                owned = self.registry.acquire(tracked.id)
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
        message = blocks.outside_change_message(
            target,
            revision,
            who=_who_changed(deployment),
            images_before=before.images if before else (),
            images_after=current.images if current else (),
            previous_revision=before.number if before else None,
        )
        try:
            response = self.slack.chat_postMessage(
                channel=channel, text=message.text, blocks=message.blocks
            )
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("could not post a notice: %s", type(exc).__name__)
            return
        tracked = TrackedRollout(
            id=f"{uid}-{generation}",
            channel=channel,
            thread_ts=str(response["ts"]),
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


def replica_id() -> str:
    return uuid.uuid4().hex[:12]


__all__ = ["ProgressTracker", "RolloutRegistry", "TrackedRollout", "replica_id"]

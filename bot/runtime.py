"""The composition root: builds adapters and services, starts the engines after every check,
and stops them in order.

    Runtime.build(settings)   every client and service; nothing runs yet. Raises PolicyError
                              or RolloutBotError for a start-up problem (exit code 2).
    runtime.start()           engines: progress (watches, leases, updates), approval sweeper,
                              audit retention
    runtime.stop()            stop accepting work, flush pending progress updates, release
                              leases, close watches

This is the only module that imports every layer; the clients and the start-up policy it wires
together are built in bot.composition.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient

from bot.adapters.k8s.watch import NamespaceWatch
from bot.adapters.redis.approvals import RedisApprovalStore
from bot.adapters.redis.canaries import RedisCanaryRegistry
from bot.adapters.redis.freezes import RedisFreezeStore
from bot.adapters.redis.keys import Keys
from bot.adapters.redis.lease import RedisLeases
from bot.adapters.redis.promotions import RedisPromotionStore
from bot.adapters.redis.replay import RedisSeenRequests
from bot.adapters.redis.tracking import RedisRolloutRegistry
from bot.adapters.slack.directory import SlackDirectory
from bot.composition.clusters import clusters_of, identities_of
from bot.composition.redis_clients import (
    audit_log,
    durability_of,
    redis_client,
    redis_readiness,
    sentinel_of,
)
from bot.composition.slack_client import slack_client
from bot.composition.startup_policy import policy_of, policy_requirements, sealer_for
from bot.config import Settings
from bot.domain.approval import ApprovalRequest
from bot.domain.canary import CanaryRecord
from bot.domain.canary import Settings as CanarySettings
from bot.domain.errors import StoreError
from bot.domain.policy import Policy
from bot.observability.health import HealthServer, ReadinessProbe, health_routes, serve_health
from bot.observability.metrics import metrics
from bot.services.access import Access
from bot.services.approvals import ApprovalFlow, Decision
from bot.services.audit_trail import AuditTrail
from bot.services.canary import CanaryService
from bot.services.canary_monitor import INTERVAL as CANARY_INTERVAL
from bot.services.canary_monitor import CanaryMonitor
from bot.services.commands import CommandService
from bot.services.execution import Executor
from bot.services.freezes import FreezeService
from bot.services.periodic import Periodic
from bot.services.policy_reload import PolicyReloader
from bot.services.progress.auto_rollback import AutoRollback
from bot.services.progress.context_tracker import LEASE_TTL, ProgressTracker
from bot.services.progress.multi_context import ProgressTrackers
from bot.services.promotions import PromotionService
from bot.services.retention import AuditRetention
from bot.services.rollouts import Rollouts
from bot.services.sweeper import ApprovalSweeper
from bot.services.use_cases import Services
from bot.workers import WorkerEntry, WorkerProcesses

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.observability.health import StartResponse
    from handlers.handoff import Work

log = logging.getLogger(__name__)

# Approvals expire and orphans resume within a few seconds of being due.
SWEEP_INTERVAL = 5.0
# A promotion's next step (a gate opened, a wave healthy) is taken within this long.
PROMOTION_STEP_INTERVAL = 1.0
# Retention is cheap to check but need not run often.
RETENTION_INTERVAL = 600.0
# The whole audit chain is re-verified this often (and once at start-up), for the metric.
AUDIT_VERIFY_INTERVAL = 600.0
# What /readyz says on the Slack port, which anyone who can reach the bot can ask: whether the
# policy is valid, which clusters answer and what Redis is waiting for, never the policy file's
# problems or Redis's addresses (they are in the log, `rollout-bot check` and the Socket Mode
# health port).
PUBLIC_READINESS_DETAILS = ("policy", "clusters", "unreachable", "redis_waiting_for")


def replica_id() -> str:
    return secrets.token_hex(6)


def keep_out_of_garbage_collection() -> None:
    """Moves everything built so far (clients, models, the app: it lives as long as the
    process) out of reach of the cyclic garbage collector. Otherwise every full collection
    walks that whole heap, and the request that happens to trigger one waits tens of
    milliseconds for it."""
    gc.collect()
    gc.freeze()


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        slack: WebClient | None = None,
        policy_bytes: bytes | None = None,
    ) -> None:
        """`policy_bytes`: the policy in force to use instead of reading the file (a worker
        process is given the main process's, which may be older than a refused edit)."""
        from handlers.perform import InProcessWork
        from handlers.progress_publisher import SlackProgressPublisher
        from handlers.promotion_board import SlackPromotionBoard
        from handlers.request_context import REPLAY_WINDOW_SECONDS

        self.settings = settings
        self.slack = slack or slack_client(settings)
        self.contexts, self.clusters = clusters_of(settings)
        contexts = self.contexts
        policy, self.policy_bytes = policy_of(settings, policy_bytes, contexts)
        loaded = self.policy_bytes is not None
        self.sealer = sealer_for(settings, policy)
        self.redis = redis_client(settings)
        self._sentinel = sentinel_of(settings)
        keys = Keys(settings.redis_prefix)
        #: The default context's cluster.
        self.cluster = self.clusters[contexts.default]
        self.replica = replica_id()
        # One registry per context: with several clusters its keys carry the context.
        registries = {
            name: RedisRolloutRegistry(
                self.redis,
                keys,
                self.replica,
                sealer=self.sealer if settings.state_key else None,
                context=name if contexts.multi else "",
            )
            for name in contexts.names
        }
        # Every write claims its generation in the registry first: see Ownership.
        rollouts = Rollouts(
            self.clusters,
            gitops=policy.gitops,
            claims=registries,
            default_context=contexts.default,
        )
        directory = SlackDirectory(self.slack)
        audit = audit_log(settings, self.redis)
        self.identities = identities_of(settings, policy, self.slack, contexts, self.clusters)
        canary_registry = RedisCanaryRegistry(self.redis, keys)
        canaries = CanaryService(rollouts, canary_registry)
        executor = Executor(rollouts, audit, contexts.default, self.identities, canaries=canaries)
        # The replay check gets the audit writes' timeout: an answer cut short by a slow Redis
        # refuses the change (it cannot be confirmed new), so a short timeout would only turn
        # a brief stall into refusals. Reads still run when it cannot answer.
        self.seen_requests = RedisSeenRequests(
            self.redis, keys, REPLAY_WINDOW_SECONDS, durability_of(settings)
        )
        # One tracker per context: its own watches, leases and publisher thread.
        self.progress = ProgressTrackers(
            {
                name: ProgressTracker(
                    publisher=SlackProgressPublisher(self.slack, settings.progress_update_interval),
                    cluster=self.clusters[name],
                    watches=functools.partial(NamespaceWatch, self.clusters[name]),
                    rollouts=rollouts,
                    registry=registries[name],
                    leases=RedisLeases(self.redis, keys, LEASE_TTL),
                    policy=policy,
                    audit=audit,
                    cluster_name=name,
                    rollback=AutoRollback(executor),
                    context=name if contexts.multi else "",
                    default_context=name == contexts.default,
                )
                for name in contexts.names
            },
            contexts.default,
        )
        access = Access(policy, directory, policy_loaded=loaded, context_aliases=contexts.aliases)
        freezes = FreezeService(
            access,
            RedisFreezeStore(self.redis, keys),
            audit,
            self.sealer,
            cluster_name=contexts.default,
            shared_key=settings.state_key is not None,
        )
        promotions = PromotionService(
            access,
            rollouts,
            executor,
            RedisPromotionStore(self.redis, keys, self.sealer),
            audit,
            SlackPromotionBoard(self.slack),
            contexts=contexts,
            freezes=freezes,
            progress=self.progress,
        )
        flow = ApprovalFlow(
            RedisApprovalStore(self.redis, keys, durability=durability_of(settings)),
            audit,
            rollouts,
            executor,
            directory,
            access=access,
            sealer=self.sealer,
            cluster_name=contexts.default,
            contexts=contexts,
            freezes=freezes,
        )
        self.services = Services(
            commands=CommandService(
                access,
                rollouts,
                executor,
                flow,
                AuditTrail(audit),
                contexts=contexts,
                identities=self.identities,
                freezes=freezes,
                canaries=canaries,
                promotions=promotions,
            ),
            access=access,
            rollouts=rollouts,
            executor=executor,
            approvals=flow,
            audit=AuditTrail(audit),
            progress=self.progress,
            max_replicas=settings.max_replicas,
            readiness=self.readiness,
            first_seen=self.seen_requests.first_time,
            freezes=freezes,
            canaries=canaries,
            promotions=promotions,
        )
        self._flow = flow
        # Where acknowledged work runs, so Bolt's listener threads only parse and ack: a burst
        # of slow cluster calls never delays the next command's 3-second ack.
        self.work = InProcessWork(self.services, self.slack, settings.work_threads)
        self._workers: WorkerProcesses | None = None
        metrics().count_rollouts_tracked_with(self.progress.tracked_count)
        self._audit = audit
        #: What puts a reloaded policy in force in any process (worker processes too): every
        #: check of a change reads the policy through these.
        self.policy_users: list[Callable[[Policy], None]] = [
            self.services.access.use_policy,
            rollouts.use_policy,
            self.identities.use_policy,
        ]
        self.policy_reloader: PolicyReloader | None = None
        if settings.policy_file is not None:
            self.policy_reloader = PolicyReloader(
                settings.policy_file,
                [*self.policy_users, self.progress.use_policy],
                audit,
                metrics(),
                cluster_name=settings.cluster_name,
                requirements=functools.partial(policy_requirements, settings),
                in_force=self.policy_bytes,
                served_contexts=contexts.names,
            )
        # /readyz: ready when the Kubernetes API answers; Redis and the policy are reported.
        self.health = ReadinessProbe(
            self.readiness,
            required=("kubernetes",),
            details=self._health_details,
            metrics=metrics(),
            cache_seconds=1.0,
        )
        sweeper = ApprovalSweeper(
            flow,
            resume_after=timedelta(seconds=settings.approval_resume_after_seconds),
            on_resumed=self._show_resumed,
            on_expired=self._show_expired,
        )
        max_age = (
            timedelta(days=settings.audit_max_age_days) if settings.audit_max_age_days else None
        )
        retention = AuditRetention(audit, max_entries=settings.audit_max_entries, max_age=max_age)
        self._sweeper = sweeper
        from handlers.canary_publisher import SlackCanaryPublisher

        self.canary_publisher = SlackCanaryPublisher(self.slack, settings.progress_update_interval)
        self.canary_monitor = CanaryMonitor(
            canaries,
            canary_registry,
            RedisLeases(self.redis, keys, LEASE_TTL),
            self.canary_publisher,
            promote=self._auto_promote,
            audit=audit,
        )
        self._loops = [
            Periodic("approval-sweeper", SWEEP_INTERVAL, self._sweep),
            Periodic("audit-verify", AUDIT_VERIFY_INTERVAL, self._verify_audit),
            Periodic("canaries", CANARY_INTERVAL, self.canary_monitor.step),
            Periodic("promotions", PROMOTION_STEP_INTERVAL, promotions.step),
        ]
        if self.policy_reloader is not None:
            self._loops.append(
                Periodic("policy-reload", settings.policy_reload_seconds, self.policy_reloader.step)
            )
        if retention.enabled:
            self._loops.append(Periodic("audit-retention", RETENTION_INTERVAL, retention.trim))
        self._started = False
        self._clusters_up: dict[str, bool] = {}

    # -- what the surface shows for the sweeper's work -------------------------------------------

    def _show_resumed(self, decision: Decision) -> None:
        from handlers.decisions import after_decision
        from handlers.replies import Replier

        request = decision.outcome.request
        if request is not None:
            # What is said about it goes to the card's thread.
            place = self._flow.card_of(request)
            channel = place[0] if place is not None else request.channel
            after_decision(self.services, decision, "", Replier(None, self.slack, channel))

    def _show_expired(self, request: ApprovalRequest) -> None:
        from handlers.decisions import redraw
        from handlers.replies import Replier

        redraw(Replier(None, self.slack, request.channel), request, self.services.approvals)

    def _auto_promote(self, record: CanaryRecord, settings: CanarySettings) -> None:
        from handlers.answers import auto_promote

        auto_promote(self.services, self.slack, record, settings)

    # -- background steps with metrics ----------------------------------------------------------

    def _sweep(self) -> None:
        self._sweeper.sweep()
        # Redis down: the gauge keeps its last value; rollout_bot_redis_errors counts it.
        with contextlib.suppress(StoreError):
            metrics().set_approvals_pending(len(self._flow.pending()))

    def _verify_audit(self) -> None:
        result = self._audit.verify()
        metrics().audit_verified(result.ok, time.time())
        if not result.ok:
            log.error(
                "the audit trail failed verification at entry %s: %s",
                result.first_bad,
                result.problem,
            )

    def _health_details(self) -> dict[str, object]:
        details: dict[str, object] = (
            {"policy": "none (read-only)"}
            if self.policy_reloader is None
            else dict(self.policy_reloader.status())
        )
        details.update(self._redis_details())
        if self.contexts.multi:
            details["clusters"] = dict(self._clusters_up)
            details["unreachable"] = sorted(n for n, up in self._clusters_up.items() if not up)
        return details

    def _redis_details(self) -> dict[str, object]:
        return redis_readiness(self.settings, self.redis, self._sentinel)

    # -- health ------------------------------------------------------------------------------------

    def health_route(self) -> Callable[[dict[str, Any], StartResponse], list[bytes] | None]:
        """/healthz, /readyz and /metrics, for mounting into the HTTP-mode server."""
        return health_routes(self.health, metrics(), shown_details=PUBLIC_READINESS_DETAILS)

    def start_health_listener(self, host: str, port: int) -> HealthServer:
        """Socket Mode has no HTTP server of its own: the probes and /metrics get a small one."""
        return serve_health(self.health, metrics(), host=host, port=port)

    # -- lifecycle -------------------------------------------------------------------------------

    def readiness(self) -> dict[str, bool]:
        try:
            redis_ok = bool(self.redis.ping())
        except Exception:  # any failure means "not ready"; the reason is not the probe's business
            redis_ok = False
        up = self._clusters_ready()
        return {"redis": redis_ok, "kubernetes": any(up.values())}

    def _clusters_ready(self) -> dict[str, bool]:
        """Each cluster's /readyz, asked at once (a dead one costs its own timeout, not the
        others'). Ready while at least one answers."""
        if len(self.clusters) == 1:
            up = {name: cluster.ready() for name, cluster in self.clusters.items()}
        else:
            with ThreadPoolExecutor(max_workers=len(self.clusters)) as pool:
                futures = {name: pool.submit(c.ready) for name, c in self.clusters.items()}
                up = {name: bool(future.result()) for name, future in futures.items()}
        self._clusters_up = up
        return up

    def bolt_app(self, *, signing_secret: str | None) -> App:
        from handlers.app import build_app

        return build_app(
            self.services,
            self.slack,
            signing_secret=signing_secret,
            dispatch=self.dispatch,
        )

    def dispatch(self, work: Work) -> None:
        """Hands acknowledged work on: to the worker processes once they run, else to threads
        of this process."""
        (self._workers or self.work)(work)

    def start(self, *, worker_entry: WorkerEntry) -> None:
        """Starts the engines and the worker processes; call only after every start-up check
        has passed. `worker_entry` is what the worker processes perform their work with
        (bot.worker_main builds a Runtime of its own in each, so it is named from above)."""
        self._started = True
        if self.settings.workers > 0:
            self._workers = WorkerProcesses(
                self.settings.workers,
                self.settings.work_threads,
                self.progress,
                self.work.recover,
                worker_entry,
                policy_in_force=self._policy_in_force,
            )
            self._workers.start()
        self.progress.start()
        self.canary_publisher.start()
        for loop in self._loops:
            loop.start()
        threading.Thread(target=self._verify_once, name="audit-verify-first", daemon=True).start()

    def _policy_in_force(self) -> bytes | None:
        """What a worker process starting now must use: never a newer file that the reloader
        refused (a worker would refuse to start on it, or diverge from this process)."""
        reloader = self.policy_reloader
        return reloader.in_force if reloader is not None else self.policy_bytes

    def _verify_once(self) -> None:
        try:
            self._verify_audit()
        except Exception as exc:  # Redis down at start-up: the periodic pass tries again
            log.warning("audit verification skipped: %s", type(exc).__name__)

    def stop(self, timeout: float = 8.0) -> None:
        """Stops in order: the workers finish what they hold (briefly; rollouts they start
        are handed to progress), then this process's own work (the notices for what the
        workers could not finish), loops, then progress (which flushes its pending updates and
        releases its leases so another replica takes over at once)."""
        if not self._started:
            return
        self._started = False
        started = time.monotonic()
        if self._workers is not None:
            self._workers.stop()
        elapsed = time.monotonic() - started
        self.work.stop(timeout=min(2.0, max(0.5, timeout - 3.0 - elapsed)))
        for loop in self._loops:
            loop.stop()
        self.canary_monitor.stop()
        self.canary_publisher.stop()
        self.progress.stop(timeout=max(1.0, timeout - 2.0 - (time.monotonic() - started)))

"""The one place concrete adapters are built and wired to the use cases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.access import Access
from bot.actions import Executor
from bot.approval_flow import ApprovalFlow
from bot.config import Settings
from bot.directory import SlackDirectory
from bot.domain.policy import Policy, load_policy, read_only_default
from bot.k8s.cluster import KubeCluster, load_api_client
from bot.progress import ProgressTracker, RolloutRegistry, replica_id
from bot.rollouts import Rollouts
from bot.store.approvals import RedisApprovalStore
from bot.store.audit import RedisAuditLog
from bot.store.keys import Keys


@dataclass
class Deps:
    settings: Settings
    slack: WebClient
    redis: redis.Redis
    cluster: KubeCluster
    rollouts: Rollouts
    access: Access
    audit: RedisAuditLog
    approvals: RedisApprovalStore
    executor: Executor
    approval_flow: ApprovalFlow
    progress: ProgressTracker | None = None
    replica: str = ""
    # Where acknowledged work runs, so Bolt's listener threads only parse and ack: a burst of
    # slow cluster calls never delays the next command's 3-second ack.
    background: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=32, thread_name_prefix="work")
    )


def slack_client(settings: Settings) -> WebClient:
    """The Web API client: retries connection errors, 5xx and 429 (honouring Retry-After)."""
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def redis_client(settings: Settings, *, timeout: float | None = None) -> redis.Redis:
    timeout = timeout if timeout is not None else settings.redis_timeout_seconds
    return redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One quick retry rides out a dropped connection; redis-py's default of 10 would hold a
        # listener thread for many timeouts. The stores make retried commands idempotent.
        # Timeouts are not retried: a frozen Redis would cost ~4x the timeout (the retry's
        # reconnect handshake times out too), and a stuck server is not a blip.
        retry=Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            retries=1,
            supported_errors=(redis.ConnectionError,),
        ),
        health_check_interval=30,
        decode_responses=False,
    )


def audit_log(settings: Settings, store: redis.Redis) -> RedisAuditLog:
    key = settings.audit_hmac_key
    return RedisAuditLog(
        store,
        Keys(settings.redis_prefix),
        hmac_key=key.get_secret_value().encode() if key is not None else None,
    )


def policy_of(settings: Settings) -> tuple[Policy, bool]:
    if settings.policy_file is None:
        return read_only_default(), False
    return load_policy(settings.policy_file), True


def build_deps(settings: Settings, *, slack: WebClient | None = None) -> Deps:
    slack = slack or slack_client(settings)
    policy, loaded = policy_of(settings)
    store = redis_client(settings)
    keys = Keys(settings.redis_prefix)
    cluster = KubeCluster(
        load_api_client(str(settings.kubeconfig) if settings.kubeconfig else None),
        name=settings.cluster_name,
        timeout=settings.kube_timeout_seconds,
    )
    rollouts = Rollouts(cluster)
    directory = SlackDirectory(slack)
    audit = audit_log(settings, store)
    approvals = RedisApprovalStore(store, keys)
    executor = Executor(rollouts, audit, settings.cluster_name)
    replica = replica_id()
    progress = ProgressTracker(
        slack=slack,
        cluster=cluster,
        rollouts=rollouts,
        registry=RolloutRegistry(store, keys, replica),
        policy=policy,
        audit=audit,
        cluster_name=settings.cluster_name,
        min_interval=settings.progress_update_interval,
    )
    return Deps(
        settings=settings,
        slack=slack,
        redis=store,
        cluster=cluster,
        rollouts=rollouts,
        access=Access(policy, directory, policy_loaded=loaded),
        audit=audit,
        approvals=approvals,
        executor=executor,
        approval_flow=ApprovalFlow(
            approvals, audit, rollouts, executor, directory, cluster_name=settings.cluster_name
        ),
        progress=progress,
        replica=replica,
        background=ThreadPoolExecutor(
            max_workers=settings.listener_threads, thread_name_prefix="work"
        ),
    )

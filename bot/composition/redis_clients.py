"""The Redis clients for the bot's state: the primary (directly or through Sentinel), how
durable a write must be, the audit log over it, and what /readyz says about Redis.

Redis's addresses and failover state are the operator's business: they appear in the
readiness details only where those are not public (see PUBLIC_READINESS_DETAILS in runtime).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from bot.adapters.redis.audit import RedisAuditLog
from bot.adapters.redis.durability import Durability
from bot.adapters.redis.keys import Keys
from bot.config import Settings

# /readyz counts a replica that has not acknowledged the primary's stream for longer as lagging.
REPLICA_LAG_SECONDS = 2


def redis_client(settings: Settings, *, timeout: float | None = None) -> redis.Redis:
    """The client for the bot's state. With REDIS_SENTINELS it is redis-py's own Sentinel
    client for the primary (`master_for`): every new connection asks the Sentinels which node
    is the primary, a connection to a demoted one is dropped, so the bot follows a failover and
    never writes to a replica. REDIS_URL then only supplies the password and the database."""
    timeout = timeout if timeout is not None else settings.redis_timeout_seconds
    if settings.min_replicas() > 0:
        # A durable write waits up to the WAIT bound for its reply on the same socket.
        timeout += settings.redis_wait_timeout_seconds
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # One quick retry rides out a dropped connection; redis-py's default of 10 would hold a
        # listener thread for many timeouts. The stores make retried commands idempotent.
        # Timeouts are not retried: a frozen Redis would cost ~4x the timeout (the retry's
        # reconnect handshake times out too), and a stuck server is not a blip.
        "retry": Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            retries=1,
            supported_errors=(redis.ConnectionError,),
        ),
        "health_check_interval": 30,
        "decode_responses": False,
    }
    sentinels = sentinel_of(settings)
    if sentinels is None:
        return redis.Redis.from_url(settings.redis_url.get_secret_value(), **options)
    url = parse_url(settings.redis_url.get_secret_value())  # type: ignore[no-untyped-call]
    credentials = {k: url[k] for k in ("username", "password", "db") if url.get(k) is not None}
    if "connection_class" in url:  # rediss://: TLS to the primary too
        options["ssl"] = True
    assert settings.redis_sentinel_master is not None  # Settings requires it with sentinels
    client: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master, **options, **credentials
    )
    return client


def sentinel_of(settings: Settings) -> Sentinel | None:
    """The Sentinels of REDIS_SENTINELS, or None without. They are asked quickly and once: a
    Sentinel that is down costs a refused connection, never a retry loop, so a change asked
    for mid-failover is refused at once instead of waiting."""
    addresses = settings.sentinel_addresses()
    if not addresses:
        return None
    quick = min(settings.redis_timeout_seconds, 1.0)
    sentinel_options: dict[str, Any] = {
        "socket_timeout": quick,
        "socket_connect_timeout": quick,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
    }
    if settings.redis_sentinel_password is not None:
        sentinel_options["password"] = settings.redis_sentinel_password.get_secret_value()
    return Sentinel(addresses, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]


def durability_of(settings: Settings) -> Durability:
    return Durability(settings.min_replicas(), settings.redis_wait_timeout_seconds)


def audit_log(settings: Settings, store: redis.Redis) -> RedisAuditLog:
    return RedisAuditLog(
        store,
        Keys(settings.redis_prefix),
        keyring=settings.audit_keyring(),
        durability=durability_of(settings),
        unsigned_before=settings.audit_unsigned_before,
    )


def redis_readiness(
    settings: Settings, client: redis.Redis, sentinel: Sentinel | None
) -> dict[str, object]:
    """With Sentinel or required replicas: which node is the primary, how many replicas
    follow it, and, when changes are refused, what the bot is waiting for."""
    needed = settings.min_replicas()
    details: dict[str, object] = {}
    if sentinel is not None:
        master = settings.redis_sentinel_master or ""
        try:
            host, port = sentinel.discover_master(master)  # type: ignore[no-untyped-call]
        except redis.RedisError:
            details["redis_waiting_for"] = (
                f"the Sentinels to name a primary for `{master}` (a failover is under way, "
                "or no Sentinel answers): changes are refused until then, reads still work"
            )
            return details
        details["redis_primary"] = f"{host}:{port}"
    if needed == 0:
        return details
    try:
        info = client.info("replication")
    except redis.RedisError:
        details["redis_waiting_for"] = "the Redis primary to answer"
        return details
    # A replica acknowledges every second; one silent for longer lags (or is frozen), and
    # a WAIT on it would run out.
    online = sum(
        1
        for name, value in info.items()
        if str(name).startswith("slave")
        and isinstance(value, dict)
        and str(value.get("state", "")) == "online"
        and int(value.get("lag", 0)) <= REPLICA_LAG_SECONDS
    )
    details["redis_replicas"] = online
    details["redis_min_replicas"] = needed
    if online < needed:
        details["redis_waiting_for"] = (
            f"{needed - online} more Redis replica(s) to follow the primary and acknowledge "
            f"its writes: changes are refused until {needed} do, reads still work"
        )
    return details

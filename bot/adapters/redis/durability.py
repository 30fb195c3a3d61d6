"""Writes that must survive a Redis failover before the bot acts on them.

Redis replicates asynchronously: a primary that dies loses whatever it had not yet sent to its
replica, and Sentinel then promotes that replica. For this bot the worst loss is an audit entry
or a decision whose change did run. So every write that authorises a change (the audit entry
before it, an approval's vote and decision, the replay guard's record) is followed by Redis
`WAIT min_replicas timeout` on the same connection, sent in the same pipeline: Redis answers
once that many replicas have acknowledged everything this connection wrote, or when the
timeout passes, with the count it got. Fewer than required raises `NotDurable` and the caller
does not act.

With `min_replicas` 0 (a single Redis, the default without Sentinel) the write goes out alone,
exactly as before: no pipeline, no WAIT, no extra round trip.

A replica acknowledges a replication offset, and the replication stream is one ordered log:
an acknowledged write also covers every write the primary took before it, from any connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from bot.adapters.redis.errors import redis_errors
from bot.domain.errors import NotDurable
from bot.observability.metrics import metrics

__all__ = ["Durability", "NotDurable"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Queues the write on the client it is given (a pipeline when a WAIT follows) and returns what
#: that client returns: the reply itself, or the pipeline.
Write = Callable[[Any], Any]


class Durability:
    """How many replicas must hold a write, and how long to wait for them."""

    def __init__(self, min_replicas: int = 0, timeout_seconds: float = 2.0) -> None:
        if min_replicas < 0:
            raise ValueError("min_replicas must be 0 or more")
        self.min_replicas = min_replicas
        self.timeout_seconds = timeout_seconds

    @property
    def enabled(self) -> bool:
        return self.min_replicas > 0

    def write(
        self,
        client: redis.Redis,
        operation: str,
        write: Write,
        *,
        required: bool = True,
    ) -> Any:
        """Runs `write(client)` and returns its reply, after `min_replicas` replicas have it.

        Raises `StoreUnavailable` when Redis fails (as the write alone would), and
        `NotDurable` when Redis took the write but too few replicas confirmed it in time.
        `required=False` is for writes recorded after the fact (the outcome of a change that
        already ran): the WAIT still gives them their best chance, a shortfall is only logged.
        """
        if not self.enabled:
            with redis_errors(operation):
                return write(client)
        pipe = client.pipeline(transaction=False)
        write(pipe)
        wait_ms = max(1, int(self.timeout_seconds * 1000))
        pipe.execute_command("WAIT", self.min_replicas, wait_ms)  # type: ignore[no-untyped-call]
        with redis_errors(operation):
            replies = pipe.execute(raise_on_error=False)
        reply, acknowledged = replies[0], replies[-1]
        if isinstance(reply, Exception):
            with redis_errors(operation):
                raise reply
        if isinstance(acknowledged, Exception) or not isinstance(acknowledged, int):
            acknowledged = 0
        if acknowledged < self.min_replicas:
            metrics().redis_error("not durable")
            if required:
                log.warning(
                    "%s: %d of %d replica(s) acknowledged within %.1f s; not acting on it",
                    operation,
                    acknowledged,
                    self.min_replicas,
                    self.timeout_seconds,
                )
                refused = NotDurable(
                    operation, required=self.min_replicas, acknowledged=acknowledged
                )
                refused.reply = reply
                raise refused
            log.warning(
                "%s: %d of %d replica(s) acknowledged within %.1f s",
                operation,
                acknowledged,
                self.min_replicas,
                self.timeout_seconds,
            )
        return reply


#: The default for adapters built without one: no WAIT, as with a single Redis.
NO_WAIT = Durability(0)

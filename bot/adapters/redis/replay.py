"""Remembers signed Slack requests already served, so an exact replay runs nothing twice."""

from __future__ import annotations

import logging

import redis

from bot.adapters.redis.durability import NO_WAIT, Durability, NotDurable
from bot.adapters.redis.keys import Keys

log = logging.getLogger(__name__)


class RedisSeenRequests:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        window_seconds: int,
        durability: Durability = NO_WAIT,
    ) -> None:
        # `client` has a short timeout of its own: every piece of work asks this first.
        self._redis = client
        self._keys = keys
        self._window = window_seconds
        # The record must outlive a failover like the change it guards: a replay sent to the
        # promoted replica would otherwise find nothing and run the change a second time.
        self._durability = durability

    def first_time(self, request_key: str) -> bool:
        """True the first time `request_key` is seen within the window.

        Raises `StoreUnavailable` when Redis cannot say, and `NotDurable` (one) when the record
        was taken but too few replicas confirmed it: the caller may still answer a read, but
        must not make a change on it. (Serving the change instead would let a replay run it
        again once Redis is back, or after a failover lost the record.)"""
        key = self._keys.event_seen(request_key)
        try:
            return bool(
                self._durability.write(
                    self._redis,
                    "replay check",
                    lambda client: client.set(key, "1", nx=True, ex=self._window),
                )
            )
        except NotDurable as exc:
            if not exc.reply:
                return False  # seen before: a replay, whatever the replicas say
            raise

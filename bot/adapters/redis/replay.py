"""Remembers signed Slack requests already served, so an exact replay runs nothing twice."""

from __future__ import annotations

import logging

import redis

from bot.adapters.redis.errors import redis_errors
from bot.adapters.redis.keys import Keys

log = logging.getLogger(__name__)


class RedisSeenRequests:
    def __init__(self, client: redis.Redis, keys: Keys, window_seconds: int) -> None:
        self._redis = client
        self._keys = keys
        self._window = window_seconds

    def first_time(self, request_key: str) -> bool:
        """True the first time `request_key` is seen within the window.

        Raises `StoreUnavailable` when Redis cannot say (an error or a timeout): a request that
        cannot be confirmed new must not change anything, since a captured signed request
        replayed while Redis is slow would otherwise run twice. The caller decides what may
        still run (reads)."""
        with redis_errors("replay check"):
            return bool(
                self._redis.set(self._keys.event_seen(request_key), "1", nx=True, ex=self._window)
            )

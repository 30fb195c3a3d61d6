"""Remembers signed Slack requests already served, so an exact replay runs nothing twice."""

from __future__ import annotations

import logging

import redis

from bot.adapters.redis.keys import Keys

log = logging.getLogger(__name__)


class RedisSeenRequests:
    def __init__(self, client: redis.Redis, keys: Keys, window_seconds: int) -> None:
        # `client` has a short timeout of its own: every piece of work asks this first.
        self._redis = client
        self._keys = keys
        self._window = window_seconds

    def first_time(self, request_key: str) -> bool:
        """True the first time `request_key` is seen within the window. When Redis cannot
        say, the request is served: every change needs Redis for its audit entry anyway."""
        try:
            return bool(
                self._redis.set(self._keys.event_seen(request_key), "1", nx=True, ex=self._window)
            )
        except redis.RedisError:
            return True

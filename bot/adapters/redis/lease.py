"""Leases: each tracked rollout is driven by exactly one replica at a time.

A lease is redis-py's `Lock` (a random token per holder; extend and release are Lua scripts
that check the token), so a replica can never extend or delete a lease another one has just
taken after its own ran out. A Redis failure is raised as `StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import threading

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from bot.adapters.redis.errors import redis_errors
from bot.adapters.redis.keys import Keys


class RedisLeases:
    def __init__(self, client: redis.Redis, keys: Keys, ttl_seconds: float) -> None:
        self._redis = client
        self._keys = keys
        self._ttl = ttl_seconds
        self._held: dict[str, Lock] = {}
        self._guard = threading.Lock()

    def hold(self, rollout_id: str) -> bool:
        """True if this replica holds the lease afterwards: taken now, or still ours and
        extended by a full period. Raises StoreUnavailable when Redis cannot say."""
        with redis_errors("lease hold"):
            return self._hold(rollout_id)

    def _hold(self, rollout_id: str) -> bool:
        with self._guard:
            lock = self._held.get(rollout_id)
        if lock is not None:
            try:
                lock.reacquire()
                return True
            except LockError:  # expired and possibly taken by another replica
                with self._guard:
                    self._held.pop(rollout_id, None)
        lock = self._redis.lock(
            self._keys.rollout_lease(rollout_id),
            timeout=self._ttl,
            blocking=False,
            thread_local=False,
        )
        if not lock.acquire():
            return False
        with self._guard:
            self._held[rollout_id] = lock
        return True

    def release(self, rollout_id: str) -> None:
        with self._guard:
            lock = self._held.pop(rollout_id, None)
        if lock is None:
            return
        # If it had already run out, whoever holds it now keeps it.
        with redis_errors("lease release"), contextlib.suppress(LockError):
            lock.release()

    def held(self) -> list[str]:
        with self._guard:
            return list(self._held)

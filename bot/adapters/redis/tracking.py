"""Tracked rollouts in Redis: what every replica must be able to pick up after a restart.

Keys are listed with every other key in `bot.adapters.redis.keys`.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import redis

from bot.adapters.redis.keys import Keys
from bot.domain.tracking import TrackedRollout

# A finished rollout stays readable for a week (a restarted bot must not re-announce it).
RECORD_TTL_SECONDS = 7 * 86400
# A notice marker outlives any sensible revision history of one object.
NOTICE_TTL_SECONDS = 30 * 86400


class RedisRolloutRegistry:
    """Tracked rollouts and the markers that keep notices to once per revision."""

    def __init__(self, client: redis.Redis, keys: Keys, owner: str) -> None:
        self._redis = client
        self._keys = keys
        self.owner = owner

    def save(self, tracked: TrackedRollout) -> None:
        pipe = self._redis.pipeline()
        pipe.set(self._keys.rollout(tracked.id), json.dumps(asdict(tracked)), ex=RECORD_TTL_SECONDS)
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

    def mark_ours(self, uid: str, generation: int) -> None:
        self._redis.set(self._keys.ours(uid, generation), "1", ex=RECORD_TTL_SECONDS)

    def is_ours(self, uid: str, generation: int) -> bool:
        return bool(self._redis.exists(self._keys.ours(uid, generation)))

    def first_notice(self, uid: str, revision: int) -> bool:
        """True exactly once per revision, across replicas and restarts."""
        return bool(
            self._redis.set(
                self._keys.notice(uid, revision), self.owner, nx=True, ex=NOTICE_TTL_SECONDS
            )
        )

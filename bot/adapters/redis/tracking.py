"""Tracked rollouts in Redis: what every replica must be able to pick up after a restart.

Keys are listed with every other key in `bot.adapters.redis.keys`. A Redis failure is raised
as `StoreUnavailable`, never as redis-py's own error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace

import redis

from bot.adapters.redis.errors import redis_errors
from bot.adapters.redis.keys import Keys
from bot.domain.integrity import Sealer
from bot.domain.tracking import TrackedRollout

log = logging.getLogger(__name__)

# A finished rollout stays readable for a week (a restarted bot must not re-announce it).
RECORD_TTL_SECONDS = 7 * 86400
# A notice marker outlives any sensible revision history of one object.
NOTICE_TTL_SECONDS = 30 * 86400
# A generation claimed before a write whose outcome never became known (the bot died, or the
# API server did not answer) stops hiding outside changes after this long.
CLAIM_TTL_SECONDS = 3600


class RedisRolloutRegistry:
    """Tracked rollouts and the markers that keep notices to once per revision."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        owner: str,
        *,
        sealer: Sealer | None = None,
        context: str = "",
    ) -> None:
        self._redis = client
        self._keys = keys
        self.owner = owner
        #: The cluster (kubeconfig context) whose rollouts these are; "" in a one-cluster
        #: installation, which keeps the key layout it always had.
        self.context = context
        self._active = keys.rollouts_active_in(context)
        # With a sealer, every record carries the bot's seal and a record without a valid one is
        # never followed; without one (no approvals configured), records are followed but can
        # never trigger an automatic rollback.
        self._sealer = sealer
        #: Ids of records refused for a bad seal, so each is reported once.
        self.refused: set[str] = set()

    def save(self, tracked: TrackedRollout) -> None:
        record: dict[str, object] = dict(asdict(tracked))
        if self._sealer is not None:
            record["seal"] = self._sealer.seal("rollout", _sealed(tracked))
        with redis_errors("rollout save"):
            pipe = self._redis.pipeline()
            pipe.set(self._keys.rollout(tracked.id), json.dumps(record), ex=RECORD_TTL_SECONDS)
            if tracked.finished:
                pipe.srem(self._active, tracked.id)
            else:
                pipe.sadd(self._active, tracked.id)
            pipe.execute()

    def active(self) -> list[TrackedRollout]:
        found = []
        with redis_errors("rollout list"):
            for raw_id in self._redis.smembers(self._active):
                rollout_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                if not Keys.valid_part(rollout_id):
                    continue
                raw = self._redis.get(self._keys.rollout(rollout_id))
                if raw is None:
                    self._redis.srem(self._active, rollout_id)
                    continue
                tracked = self._verified(rollout_id, raw)
                if tracked is not None:
                    found.append(tracked)
        return found

    def _verified(self, rollout_id: str, raw: bytes | str) -> TrackedRollout | None:
        try:
            record = json.loads(raw)
            seal = str(record.pop("seal", ""))
            tracked = TrackedRollout(**record)
        except (ValueError, TypeError):
            self._refuse(rollout_id)
            return None
        if self._sealer is None:
            return replace(tracked, on_failure="notify")
        if not self._sealer.valid(seal, "rollout", _sealed(tracked)):
            self._refuse(rollout_id)
            return None
        return tracked

    def _refuse(self, rollout_id: str) -> None:
        if rollout_id not in self.refused:
            log.warning("ignored tracked rollout %s: it failed its integrity check", rollout_id)
            self.refused.add(rollout_id)

    # -- which generations the bot made ---------------------------------------------------------
    #
    # Claimed *before* the write, so a watch event for the new generation (on any replica, at
    # any moment) is recognised as the bot's own; confirmed once the write succeeded, released
    # when it certainly did not happen.

    def claim(self, uid: str, generation: int) -> None:
        with redis_errors("ownership claim"):
            self._redis.set(
                self._keys.ours(uid, generation, self.context), "claimed", ex=CLAIM_TTL_SECONDS
            )

    def mark_ours(self, uid: str, generation: int) -> None:
        with redis_errors("ownership mark"):
            self._redis.set(
                self._keys.ours(uid, generation, self.context), "1", ex=RECORD_TTL_SECONDS
            )

    def release(self, uid: str, generation: int) -> None:
        with redis_errors("ownership release"):
            self._redis.delete(self._keys.ours(uid, generation, self.context))

    def is_ours(self, uid: str, generation: int) -> bool:
        with redis_errors("ownership read"):
            return bool(self._redis.exists(self._keys.ours(uid, generation, self.context)))

    def first_rollback(self, rollout_id: str) -> bool:
        """True exactly once per rollout: at most one automatic rollback, across replicas."""
        with redis_errors("rollback mark"):
            first = self._redis.set(
                self._keys.auto_rollback(rollout_id), self.owner, nx=True, ex=RECORD_TTL_SECONDS
            )
        return bool(first)

    def first_notice(self, uid: str, revision: int) -> bool:
        """True exactly once per revision, across replicas and restarts."""
        with redis_errors("notice mark"):
            first = self._redis.set(
                self._keys.notice(uid, revision, self.context),
                self.owner,
                nx=True,
                ex=NOTICE_TTL_SECONDS,
            )
        return bool(first)


def _sealed(tracked: TrackedRollout) -> dict[str, object]:
    """What a record's seal covers: every field, the context (and requester) too once there
    is one (a record written before they existed has none, and keeps its seal)."""
    content: dict[str, object] = dict(asdict(tracked))
    if not tracked.context:
        content.pop("context", None)
    if not tracked.requester:
        content.pop("requester", None)
    return content

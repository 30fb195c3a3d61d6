"""Canaries in Redis: where each canary's message is, so any replica (or the bot after a
restart) finds the canaries still running and resumes their messages.

What a canary *is* (whose canary, its analysis, auto-promote, who asked) lives in the canary
Deployment's own annotations; Redis only says where to report and what was seen so far
(`bot.domain.canary.CanaryRecord`). A Redis failure is raised as `StoreUnavailable`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace

import redis

from bot.adapters.redis.errors import redis_errors
from bot.adapters.redis.keys import Keys
from bot.domain.canary import CanaryRecord

log = logging.getLogger(__name__)

# A finished canary's record stays a day, for `canary status` to say how it ended.
RECORD_TTL_SECONDS = 86400


class RedisCanaryRegistry:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def save(self, record: CanaryRecord) -> None:
        with redis_errors("canary save"):
            pipe = self._redis.pipeline()
            pipe.set(
                self._keys.canary(record.id), json.dumps(asdict(record)), ex=RECORD_TTL_SECONDS
            )
            if record.finished:
                pipe.srem(self._keys.canaries_active, record.id)
            else:
                pipe.sadd(self._keys.canaries_active, record.id)
            pipe.execute()

    def get(self, canary_id: str) -> CanaryRecord | None:
        if not Keys.valid_part(canary_id):
            return None
        with redis_errors("canary read"):
            raw = self._redis.get(self._keys.canary(canary_id))
        return None if raw is None else _record(raw)

    def active(self) -> list[CanaryRecord]:
        found = []
        with redis_errors("canary list"):
            for raw_id in self._redis.smembers(self._keys.canaries_active):
                canary_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                record = self.get(canary_id) if Keys.valid_part(canary_id) else None
                if record is None or record.finished:
                    self._redis.srem(self._keys.canaries_active, canary_id)
                    continue
                found.append(record)
        return found

    def end(self, canary_id: str, verdict: str, why: str) -> bool:
        """Records how the canary ended; False when it had already ended otherwise (an
        automatic abort and a click at once: the first one is what happened)."""
        if not Keys.valid_part(canary_id):
            return False
        value = json.dumps({"verdict": verdict, "why": why})
        with redis_errors("canary end"):
            ended = self._redis.set(
                self._keys.canary_end(canary_id), value, nx=True, ex=RECORD_TTL_SECONDS
            )
        return bool(ended)

    def ending(self, canary_id: str) -> tuple[str, str] | None:
        """(verdict, why) once the canary ended, else None."""
        if not Keys.valid_part(canary_id):
            return None
        with redis_errors("canary read"):
            raw = self._redis.get(self._keys.canary_end(canary_id))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return str(data["verdict"]), str(data["why"])
        except (ValueError, KeyError, TypeError):
            return "aborted", ""

    def find(self, context: str, namespace: str, deployment: str) -> CanaryRecord | None:
        """The running canary of a Deployment, if the bot follows one."""
        return next(
            (
                r
                for r in self.active()
                if (r.context, r.namespace, r.deployment) == (context, namespace, deployment)
            ),
            None,
        )


def _record(raw: bytes | str) -> CanaryRecord | None:
    try:
        data = json.loads(raw)
        data["seen_ready"] = tuple(data.get("seen_ready") or ())
        return replace(CanaryRecord(**data))
    except (ValueError, TypeError):
        log.warning("an unreadable canary record was skipped")
        return None

"""Freezes set from Slack, in Redis: one sealed JSON document per frozen namespace (of one
cluster), expiring by itself when the freeze ends, and an index to list them.

Keys are listed with every other key in `bot.adapters.redis.keys`.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

import redis
from pydantic import ValidationError

from bot.adapters.redis.errors import redis_errors
from bot.adapters.redis.keys import Keys, context_part
from bot.domain.freezes import AdHocFreeze

log = logging.getLogger(__name__)


class RedisFreezeStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def put(self, freeze: AdHocFreeze, now: datetime) -> None:
        """Stores the freeze (replacing one on the same namespace); Redis drops it at its end."""
        seconds = max(1, math.ceil((freeze.ends_at - now).total_seconds()))
        with redis_errors("freeze"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(
                self._keys.freeze(freeze.cluster, freeze.namespace),
                freeze.model_dump_json(),
                ex=seconds,
            )
            pipe.sadd(self._keys.freezes, _member(freeze.cluster, freeze.namespace))
            pipe.execute()

    def get(self, cluster: str, namespace: str) -> AdHocFreeze | None:
        with redis_errors("read freeze"):
            raw = self._redis.get(self._keys.freeze(cluster, namespace))
        return _parsed(raw)

    def delete(self, cluster: str, namespace: str) -> AdHocFreeze | None:
        """Removes the freeze; the one removed, or None when there was none."""
        key = self._keys.freeze(cluster, namespace)
        with redis_errors("unfreeze"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(key)
            pipe.delete(key)
            pipe.srem(self._keys.freezes, _member(cluster, namespace))
            raw, _, _ = pipe.execute()
        return _parsed(raw)

    def all(self) -> list[AdHocFreeze]:
        """Every freeze still stored; index entries of freezes that ended are dropped."""
        with redis_errors("list freezes"):
            members = sorted(
                m.decode() if isinstance(m, bytes) else str(m)
                for m in self._redis.smembers(self._keys.freezes)
            )
            keys = [self._key_of(member) for member in members]
            raws = self._redis.mget([key for key in keys if key]) if any(keys) else []
        found: list[AdHocFreeze] = []
        gone: list[str] = []
        valid = [member for member, key in zip(members, keys, strict=True) if key]
        gone += [member for member, key in zip(members, keys, strict=True) if not key]
        for member, raw in zip(valid, raws, strict=True):
            freeze = _parsed(raw)
            if freeze is None:
                gone.append(member)
            else:
                found.append(freeze)
        if gone:
            with redis_errors("list freezes"):
                self._redis.srem(self._keys.freezes, *gone)
        return found

    def _key_of(self, member: str) -> str | None:
        cluster, _, namespace = member.rpartition(":")
        if not Keys.valid_part(namespace):
            return None
        # The member holds the context's key part; the key is built from it the same way.
        return f"{self._keys.tag}:freeze:{cluster}:{namespace}"


def _member(cluster: str, namespace: str) -> str:
    return f"{context_part(cluster)}:{namespace}"


def _parsed(raw: object) -> AdHocFreeze | None:
    if raw is None:
        return None
    try:
        return AdHocFreeze.model_validate_json(raw if isinstance(raw, (str, bytes)) else str(raw))
    except ValidationError:
        log.warning("a stored freeze could not be read; it is ignored")
        return None

"""Promotions in Redis: one sealed JSON document per promotion, written by compare-and-set.

Every write names the version it was based on; Redis refuses it (WATCH) when another replica,
a click or the driver wrote first, and the caller reads again. So two replicas can never both
start a wave, and a click can never be lost to a concurrent step. A document whose seal does
not match is never acted on (`bot.domain.integrity`).

Keys are listed with every other key in `bot.adapters.redis.keys`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import redis
from pydantic import ValidationError
from redis.exceptions import LockError

from bot.adapters.redis.errors import StoreCorrupt, redis_errors
from bot.adapters.redis.keys import Keys
from bot.domain.errors import StoreConflict as Conflict
from bot.domain.integrity import Sealer
from bot.domain.promotion import LIVE, PROMOTION_SEAL, PromotionState

log = logging.getLogger(__name__)

# A finished promotion stays listed and readable this long.
KEEP_FINISHED_SECONDS = 30 * 86400
# `/rollout promotions` shows at most this many finished ones.
RECENT = 10
# One step of one promotion (a wave's changes included) takes less than this.
STEP_LOCK_SECONDS = 120.0


class RedisPromotionStore:
    def __init__(self, client: redis.Redis, keys: Keys, sealer: Sealer) -> None:
        self._redis = client
        self._keys = keys
        self._sealer = sealer

    # -- reads -----------------------------------------------------------------------------------

    def get(self, promotion_id: str) -> PromotionState | None:
        with redis_errors("read promotion"):
            raw = self._redis.get(self._keys.promotion(promotion_id))
        return self._parsed(raw)

    def live_of(self, pipeline: str) -> PromotionState | None:
        with redis_errors("read promotion"):
            promotion_id = self._redis.get(self._keys.promotion_of(pipeline))
        if promotion_id is None:
            return None
        return self.get(_text(promotion_id))

    def live_ids(self) -> list[str]:
        with redis_errors("list promotions"):
            return sorted(_text(m) for m in self._redis.smembers(self._keys.promotions_live))

    def recent(self) -> list[PromotionState]:
        """The live promotions and the last finished ones, newest first."""
        with redis_errors("list promotions"):
            ids = [_text(m) for m in self._redis.zrevrange(self._keys.promotions, 0, 50)]
            raws = self._redis.mget([self._keys.promotion(i) for i in ids]) if ids else []
        found = [p for p in (self._parsed(raw) for raw in raws) if p is not None]
        live = [p for p in found if p.live]
        done = [p for p in found if not p.live][:RECENT]
        return live + done

    # -- writes ----------------------------------------------------------------------------------

    def create(self, state: PromotionState, replacing: PromotionState | None) -> None:
        """Stores a new promotion as its pipeline's live one. Raises Conflict when the pipeline
        has another live promotion than ``replacing`` (which is then stored superseded)."""
        pointer = self._keys.promotion_of(state.pipeline)
        with redis_errors("start promotion"), self._redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(pointer)  # type: ignore[no-untyped-call]
                current = pipe.get(pointer)
                expected = replacing.id if replacing is not None else None
                if (None if current is None else _text(current)) != expected:
                    raise Conflict
                if replacing is not None:
                    pipe.watch(self._keys.promotion(replacing.id))  # type: ignore[no-untyped-call]
                    stored = self._parsed(pipe.get(self._keys.promotion(replacing.id)))
                    if stored is None or stored.version != replacing.version:
                        raise Conflict
                pipe.multi()
                if replacing is not None:
                    old = replacing.model_copy(
                        update={"status": "superseded", "version": replacing.version + 1}
                    )
                    self._put(pipe, old)
                self._put(pipe, state)
                pipe.set(pointer, state.id)
                pipe.execute()
            except redis.WatchError:
                raise Conflict from None

    def save(self, state: PromotionState) -> PromotionState:
        """Writes ``state`` if the stored one is still at ``state.version``; returns what was
        stored (one version on). Raises Conflict otherwise."""
        key = self._keys.promotion(state.id)
        with redis_errors("save promotion"), self._redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                stored = self._parsed(pipe.get(key))
                if stored is None or stored.version != state.version:
                    raise Conflict
                new = state.model_copy(update={"version": state.version + 1})
                pipe.multi()
                self._put(pipe, new)
                if not new.live:
                    pipe.delete(self._keys.promotion_of(new.pipeline))
                pipe.execute()
            except redis.WatchError:
                raise Conflict from None
        return new

    @contextlib.contextmanager
    def stepping(self, promotion_id: str) -> Iterator[bool]:
        """Yields True while this replica alone drives the promotion's next step."""
        lock = self._redis.lock(
            self._keys.promotion_step(promotion_id),
            timeout=STEP_LOCK_SECONDS,
            blocking=False,
            thread_local=False,
        )
        with redis_errors("lock promotion"):
            held = bool(lock.acquire())
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(LockError, redis.RedisError):
                    lock.release()

    # -- internals -------------------------------------------------------------------------------

    def _put(self, pipe: redis.client.Pipeline, state: PromotionState) -> None:
        sealed = state.model_copy(
            update={"seal": self._sealer.seal(PROMOTION_SEAL, state.sealed_content())}
        )
        key = self._keys.promotion(state.id)
        if state.live:
            pipe.set(key, sealed.model_dump_json())
            pipe.sadd(self._keys.promotions_live, state.id)
        else:
            pipe.set(key, sealed.model_dump_json(), ex=KEEP_FINISHED_SECONDS)
            pipe.srem(self._keys.promotions_live, state.id)
        pipe.zadd(self._keys.promotions, {state.id: state.created_at})

    def _parsed(self, raw: object) -> PromotionState | None:
        if raw is None:
            return None
        try:
            state = PromotionState.model_validate_json(
                raw if isinstance(raw, (str, bytes)) else str(raw)
            )
        except ValidationError:
            log.warning("a stored promotion could not be read; it is ignored")
            return None
        if not state.seal or not self._sealer.valid(
            state.seal, PROMOTION_SEAL, state.sealed_content()
        ):
            log.warning("promotion %s does not carry the bot's seal; it is ignored", state.id)
            raise StoreCorrupt("read promotion")
        return state


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["LIVE", "Conflict", "RedisPromotionStore"]

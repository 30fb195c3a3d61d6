"""Fixtures shared by the Redis store tests: a redis-server per module, a clean client per
test, the default key prefix and a clock the test moves by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from bot.adapters.redis.keys import Keys
from tests.devkit.redis_server import RedisServer, flush_redis

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A redis-server of the module's own, so its tests may stop, pause and restart it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    flush_redis(server)
    client = server.client()
    yield client
    client.close()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()

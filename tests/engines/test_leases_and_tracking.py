"""Leases and the tracked-rollout registry against a real redis-server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from bot.adapters.redis.keys import Keys
from bot.adapters.redis.lease import RedisLeases
from bot.adapters.redis.tracking import RedisRolloutRegistry
from bot.domain.integrity import Sealer
from bot.domain.tracking import TrackedRollout
from tests.devkit.redis_server import RedisServer, flush_redis

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

SEALER = Sealer(b"k" * 32)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    flush_redis(server)
    client = server.client()
    yield client
    client.close()


def tracked(rollout_id: str = "uid-1-2", **changes: object) -> TrackedRollout:
    base = TrackedRollout(
        id=rollout_id,
        channel="C1",
        thread_ts="1.0",
        message_ts="2.0",
        namespace="prod",
        deployment="web",
        uid="uid-1",
        generation=2,
        started_at=1000.0,
        deadline_seconds=600,
        title="set image",
        on_failure="rollback",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_one_replica_holds_a_lease_and_another_takes_it_only_after_it_ran_out(
    client: redis.Redis,
) -> None:
    first = RedisLeases(client, Keys(), ttl_seconds=0.5)
    second = RedisLeases(client, Keys(), ttl_seconds=0.5)
    assert first.hold("r1")
    assert not second.hold("r1")
    assert first.hold("r1")  # renewal by the holder
    time.sleep(0.7)
    assert second.hold("r1")
    # The first replica's lease ran out: it can neither renew nor release the new holder's.
    assert not first.hold("r1")
    first.release("r1")
    assert client.exists(Keys().rollout_lease("r1"))
    second.release("r1")
    assert not client.exists(Keys().rollout_lease("r1"))


def test_release_hands_a_lease_over_at_once(client: redis.Redis) -> None:
    first = RedisLeases(client, Keys(), ttl_seconds=10)
    second = RedisLeases(client, Keys(), ttl_seconds=10)
    assert first.hold("r1") and not second.hold("r1")
    first.release("r1")
    assert second.hold("r1")


def test_a_sealed_record_round_trips_and_an_edited_one_is_ignored(client: redis.Redis) -> None:
    registry = RedisRolloutRegistry(client, Keys(), "replica-a", sealer=SEALER)
    registry.save(tracked())
    assert registry.active() == [tracked()]

    key = Keys().rollout("uid-1-2")
    record = json.loads(client.get(key))
    record["deployment"] = "payments"  # pointed at another Deployment
    client.set(key, json.dumps(record))
    assert registry.active() == []
    assert registry.refused == {"uid-1-2"}


def test_a_record_injected_without_a_seal_is_never_followed(client: redis.Redis) -> None:
    registry = RedisRolloutRegistry(client, Keys(), "replica-a", sealer=SEALER)
    client.set(Keys().rollout("evil-1"), json.dumps({**tracked("evil-1").__dict__}))
    client.sadd(Keys().rollouts_active, "evil-1")
    assert registry.active() == []


def test_without_a_key_records_are_followed_but_never_roll_back(client: redis.Redis) -> None:
    registry = RedisRolloutRegistry(client, Keys(), "replica-a", sealer=None)
    registry.save(tracked())
    (found,) = registry.active()
    assert found.on_failure == "notify"


def test_a_notice_is_claimed_once_per_revision(client: redis.Redis) -> None:
    a = RedisRolloutRegistry(client, Keys(), "replica-a")
    b = RedisRolloutRegistry(client, Keys(), "replica-b")
    assert a.first_notice("uid-1", 3)
    assert not b.first_notice("uid-1", 3)
    assert b.first_notice("uid-1", 4)

"""Durable before acting, against a real primary, a real replica and real Sentinels.

What authorises a change (the audit entry, a vote and the decision, the replay record) counts
only once a replica acknowledged it (Redis WAIT); a replica that lags (SIGSTOP) turns each of
them into `NotDurable` within the WAIT bound. With no replica required nothing waits: not one
WAIT reaches Redis. The Sentinel client follows a failover and never writes to a replica.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from bot.adapters.redis.approvals import ApprovalState, RedisApprovalStore
from bot.adapters.redis.audit import AuditEvent, AuditEventKind, RedisAuditLog
from bot.adapters.redis.durability import Durability, NotDurable
from bot.adapters.redis.keys import Keys
from bot.adapters.redis.replay import RedisSeenRequests
from bot.composition.redis_clients import redis_client
from bot.config import Settings
from bot.domain.errors import StoreUnavailable
from tests.devkit.redis_sentinel import SentinelGroup
from tests.devkit.redis_server import RedisServer
from tests.integration.conftest import FakeClock
from tests.integration.test_approval_store import new_request

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

WAIT = 0.4


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as group:
        yield group


@pytest.fixture
def primary(group: SentinelGroup) -> Iterator[redis.Redis]:
    for node in group.nodes:
        node.resume()
    group.wait_settled()
    client = group.primary().client(decode_responses=False, socket_timeout=WAIT + 2)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def replica(group: SentinelGroup) -> Iterator[RedisServer]:
    node = group.replicas()[0]
    yield node
    node.resume()


def event(n: int = 0) -> AuditEvent:
    return AuditEvent(
        event=AuditEventKind.EXECUTION,
        user_id=f"U{n}",
        user_name=f"user{n}",
        channel="C1",
        action="scale",
        cluster="prod",
        namespace="shop",
        deployment="api",
        parameters={"n": str(n)},
    )


def wait_commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def test_an_audit_entry_counts_once_a_replica_holds_it_and_a_lagging_replica_refuses_it(
    primary: redis.Redis, replica: RedisServer
) -> None:
    audit = RedisAuditLog(primary, Keys(), durability=Durability(1, WAIT))
    audit.append(event(1))
    with replica.client() as follower:
        assert follower.xlen(Keys().audit) == 1  # acknowledged means the replica has it

    replica.pause()
    started = time.monotonic()
    with pytest.raises(NotDurable) as refused:
        audit.append(event(2))
    waited = time.monotonic() - started
    assert WAIT - 0.05 <= waited < WAIT + 1.0, f"waited {waited:.2f}s"
    assert "could not be made durable" in refused.value.message
    assert refused.value.required == 1 and refused.value.acknowledged == 0

    replica.resume()
    audit.append(event(3))
    assert audit.verify().ok


def test_a_vote_and_the_claim_that_starts_a_change_wait_for_the_replica(
    primary: redis.Redis, replica: RedisServer
) -> None:
    clock = FakeClock()
    store = RedisApprovalStore(primary, Keys(), clock, durability=Durability(1, WAIT))
    request = store.create(new_request(clock, required=1))

    replica.pause()
    with pytest.raises(NotDurable) as refused:
        store.approve(request.id, "U1", "una", clock.now)
    # The vote reached the primary; its reply travels with the refusal so the caller can
    # close the request it decided.
    assert refused.value.reply is not None
    replica.resume()

    decided = store.get(request.id)
    assert decided is not None and decided.state is ApprovalState.APPROVED
    replica.pause()
    with pytest.raises(NotDurable):
        store.mark(request.id, ApprovalState.APPROVED, ApprovalState.RUNNING)
    replica.resume()


def test_what_is_recorded_after_a_change_ran_is_never_refused(
    primary: redis.Redis, replica: RedisServer
) -> None:
    clock = FakeClock()
    store = RedisApprovalStore(primary, Keys(), clock, durability=Durability(1, WAIT))
    request = store.create(new_request(clock, required=1))
    store.approve(request.id, "U1", "una", clock.now)
    store.mark(request.id, ApprovalState.APPROVED, ApprovalState.RUNNING)

    replica.pause()
    done = store.mark(request.id, ApprovalState.RUNNING, ApprovalState.DONE, "scaled")
    assert done.status == "marked"


def test_the_replay_record_must_be_durable_for_a_new_request_but_a_replay_is_still_a_replay(
    primary: redis.Redis, replica: RedisServer
) -> None:
    seen = RedisSeenRequests(primary, Keys(), 60, Durability(1, WAIT))
    assert seen.first_time("sig-a") is True
    replica.pause()
    with pytest.raises(NotDurable):
        seen.first_time("sig-b")
    assert seen.first_time("sig-a") is False


def test_without_required_replicas_no_wait_reaches_redis(
    primary: redis.Redis, replica: RedisServer
) -> None:
    primary.config_resetstat()
    clock = FakeClock()
    audit = RedisAuditLog(primary, Keys(), clock)
    store = RedisApprovalStore(primary, Keys(), clock)
    seen = RedisSeenRequests(primary, Keys(), 60)
    replica.pause()  # and nothing waits for it

    started = time.monotonic()
    audit.append(event(1))
    request = store.create(new_request(clock, required=1))
    store.approve(request.id, "U1", "una", clock.now)
    assert seen.first_time("sig-c") is True
    assert time.monotonic() - started < WAIT

    assert wait_commands(primary) == 0


def sentinel_settings(group: SentinelGroup, **extra: object) -> Settings:
    values: dict[str, object] = {
        "SLACK_BOT_TOKEN": "xoxb-test",
        # Only the password and database count: the host is the Sentinels' to name.
        "REDIS_URL": "redis://ignored.invalid:1/0",
        "REDIS_SENTINELS": group.sentinels_env,
        "REDIS_SENTINEL_MASTER": group.name,
        "ROLLOUT_BOT_REDIS_WAIT_TIMEOUT": WAIT,
    }
    values.update(extra)
    return Settings.model_validate(values)


def test_the_sentinel_client_follows_a_failover_and_never_writes_to_a_replica(
    group: SentinelGroup, primary: redis.Redis
) -> None:
    settings = sentinel_settings(group)
    assert settings.min_replicas() == 1
    client = redis_client(settings)
    audit = RedisAuditLog(client, Keys(), durability=Durability(1, WAIT))
    audit.append(event(1))

    killed = group.kill_primary()
    # As Kubernetes would restart its pod: the killed node comes back as a replica of the
    # promoted one, which until then has no replica to confirm anything.
    returning = threading.Thread(
        target=lambda: (group.wait_for_failover(killed), group.rejoin(killed))
    )
    returning.start()
    try:
        refused_in = []
        accepted_after = None
        started = time.monotonic()
        while time.monotonic() - started < 40:
            attempt = time.monotonic()
            try:
                audit.append(event(2))
            except StoreUnavailable:
                refused_in.append(time.monotonic() - attempt)
                time.sleep(0.1)
                continue
            accepted_after = time.monotonic() - started
            break
        assert accepted_after is not None, "the client never followed the failover"
        # Refusals during the failover are quick: bounded by the Redis timeout (2 s) and the
        # WAIT, never a silent wait past Slack's patience (a margin for a loaded machine).
        assert refused_in and max(refused_in) < 2.0 + WAIT + 2.5, refused_in
    finally:
        returning.join()
    promoted = group.primary()
    assert promoted is not killed
    with promoted.client() as direct:
        assert direct.info("replication")["role"] == "master"
        assert direct.xlen(Keys().audit) == 2
    # The old primary came back as a replica: the client still writes to the new primary.
    audit.append(event(3))
    assert audit.verify().ok
    with group.primary().client() as direct:
        assert direct.xlen(Keys().audit) == 3
    client.close()


def test_redis_url_gives_the_password_and_database_under_sentinel(group: SentinelGroup) -> None:
    primary = group.primary()
    with primary.client() as admin:
        admin.flushall()
        for node in group.nodes:
            with node.client() as each:
                each.config_set("masterauth", "pw-9f2")
        for node in group.nodes:
            with node.client() as each:
                each.config_set("requirepass", "pw-9f2")
    try:
        settings = sentinel_settings(group, REDIS_URL="redis://:pw-9f2@ignored.invalid:1/3")
        client = redis_client(settings)
        client.set("probe", "1")
        with primary.client(password="pw-9f2", db=3) as direct:
            assert direct.get("probe") == "1"
        client.close()
    finally:
        for node in group.nodes:
            with node.client(password="pw-9f2") as each:
                each.config_set("requirepass", "")
        time.sleep(0.2)


def test_settings_require_the_master_name_and_default_to_one_replica_with_sentinel() -> None:
    base = {"SLACK_BOT_TOKEN": "xoxb-test"}
    assert Settings.model_validate(base).min_replicas() == 0
    with pytest.raises(ValueError, match="REDIS_SENTINELS"):
        Settings.model_validate({**base, "REDIS_SENTINELS": "127.0.0.1:26379"})
    with pytest.raises(ValueError, match="host:port"):
        Settings.model_validate({**base, "REDIS_SENTINELS": "a:1,b", "REDIS_SENTINEL_MASTER": "m"})
    chosen = Settings.model_validate(
        {
            **base,
            "REDIS_SENTINELS": " a:26379, b:26380 ",
            "REDIS_SENTINEL_MASTER": "m",
            "ROLLOUT_BOT_REDIS_MIN_REPLICAS": "2",
        }
    )
    assert chosen.sentinel_addresses() == [("a", 26379), ("b", 26380)]
    assert chosen.min_replicas() == 2
    assert timedelta(seconds=chosen.redis_wait_timeout_seconds) == timedelta(seconds=2)

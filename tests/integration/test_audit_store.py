"""The audit trail against a real redis-server: chaining, tamper detection, retention, faults."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from bot.adapters.redis.audit import (
    AuditChainBroken,
    AuditEvent,
    AuditEventKind,
    RedisAuditLog,
)
from bot.adapters.redis.errors import StoreCorrupt, StoreUnavailable
from bot.adapters.redis.keys import Keys
from bot.domain.audit_chain import GENESIS_HASH
from tests.devkit.redis_server import RedisServer
from tests.integration.conftest import T0, FakeClock

pytestmark = pytest.mark.redis


@pytest.fixture
def audit(client: redis.Redis, keys: Keys, clock: FakeClock) -> RedisAuditLog:
    return RedisAuditLog(client, keys, clock=clock)


def event(n: int = 0, **overrides: object) -> AuditEvent:
    fields: dict[str, object] = {
        "event": AuditEventKind.EXECUTION,
        "user_id": f"U{n}",
        "user_name": f"user{n}",
        "channel": "C1",
        "action": "restart",
        "cluster": "prod",
        "namespace": "shop",
        "deployment": "api",
        "parameters": {"n": str(n)},
        "approval_id": f"ap{n}",
    }
    fields.update(overrides)
    return AuditEvent.model_validate(fields)


def fill(audit: RedisAuditLog, clock: FakeClock, count: int) -> list[str]:
    ids = []
    for n in range(count):
        ids.append(audit.append(event(n)).stream_id)
        clock.advance(timedelta(minutes=1))
    return ids


def raw_entries(client: redis.Redis, keys: Keys) -> list[tuple[str, dict[str, str]]]:
    return [
        (str(i), {str(k): str(v) for k, v in (f or {}).items()})
        for i, f in client.xrange(keys.audit) or []
    ]


def rewrite(client: redis.Redis, keys: Keys, entries: list[tuple[str, dict[Any, Any]]]) -> None:
    """What someone with write access to Redis can do: replace the stream wholesale."""
    client.delete(keys.audit)
    for stream_id, fields in entries:
        client.xadd(keys.audit, dict(fields), id=stream_id)


def sha256_of(fields: dict[str, str]) -> str:
    """The documented hash, computed independently of the implementation."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- chaining -----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_entries_are_chained_from_genesis_and_verify(
    audit: RedisAuditLog, clock: FakeClock
) -> None:
    entries = []
    for n in range(3):
        entries.append(audit.append(event(n)))
        clock.advance(timedelta(seconds=1))

    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].hash
    assert entries[2].prev_hash == entries[1].hash
    assert len({e.hash for e in entries}) == 3
    assert audit.verify().ok
    assert audit.verify().checked == 3


@pytest.mark.timeout(30)
def test_hash_is_sha256_of_canonical_json_of_the_stored_fields(
    audit: RedisAuditLog, client: redis.Redis, keys: Keys
) -> None:
    entry = audit.append(event(1))
    [(_, fields)] = raw_entries(client, keys)
    assert fields["hash"] == entry.hash == sha256_of(fields)
    assert fields["seq"] == "1"
    assert fields["prev_hash"] == GENESIS_HASH
    assert fields["time"] == "2025-03-01T12:00:00.000000Z"
    assert json.loads(fields["parameters"]) == {"n": "1"}


@pytest.mark.timeout(30)
def test_entry_round_trips_every_field(audit: RedisAuditLog) -> None:
    written = audit.append(
        AuditEvent(
            event=AuditEventKind.OUTCOME,
            user_id="U1",
            user_name="ana",
            channel="C9",
            action="rollback",
            cluster="prod",
            namespace="shop",
            deployment="api",
            parameters={"to_revision": "4", "note": 'naïve "quoted" ✓'},
            reason="bad release",
            approval_id="abc123",
            outcome="succeeded",
            revision_before=5,
            revision_after=6,
            images_before={"app": "shop/api:1.2"},
            images_after={"app": "shop/api:1.1"},
        )
    )
    [read] = audit.recent(1)
    assert read == written
    assert read.time == T0
    assert read.parameters["note"] == 'naïve "quoted" ✓'
    assert read.revision_before == 5
    assert read.images_after == {"app": "shop/api:1.1"}


@pytest.mark.timeout(30)
def test_empty_trail_verifies(audit: RedisAuditLog) -> None:
    result = audit.verify()
    assert result.ok
    assert result.checked == 0


@pytest.mark.timeout(30)
def test_recent_is_newest_first_and_filters(audit: RedisAuditLog) -> None:
    for n in range(6):
        audit.append(event(n, deployment="api" if n % 2 else "web"))
    audit.append(event(9, namespace="other"))

    assert [e.seq for e in audit.recent(3)] == [7, 6, 5]
    web = audit.recent(10, namespace="shop", deployment="web")
    assert [e.user_id for e in web] == ["U4", "U2", "U0"]
    assert [e.seq for e in audit.recent(10, namespace="other")] == [7]
    assert audit.recent(0) == []


@pytest.mark.timeout(60)
def test_recent_and_export_page_through_long_trails(audit: RedisAuditLog) -> None:
    for n in range(1203):
        audit.append(event(n, namespace="rare" if n in (3, 1100) else "shop"))
    assert [e.seq for e in audit.recent(2, namespace="rare")] == [1101, 4]
    assert [e.seq for e in audit.export()] == list(range(1, 1204))
    assert audit.verify().checked == 1203


@pytest.mark.timeout(30)
def test_export_is_oldest_first_and_honours_since(audit: RedisAuditLog, clock: FakeClock) -> None:
    fill(audit, clock, 5)
    assert [e.seq for e in audit.export()] == [1, 2, 3, 4, 5]
    since = T0 + timedelta(minutes=3)
    assert [e.seq for e in audit.export(since=since)] == [4, 5]


# -- tamper detection ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_deleting_a_middle_entry_is_caught_and_named(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, clock, 5)
    client.xdel(keys.audit, ids[2])

    result = audit.verify()

    assert not result.ok
    assert result.first_bad == ids[3]
    assert result.problem is not None
    assert "seq 3 missing" in result.problem


@pytest.mark.timeout(30)
def test_rewriting_one_field_is_caught_and_names_that_entry(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    fill(audit, clock, 5)
    entries = raw_entries(client, keys)
    entries[1][1]["user_id"] = "U-attacker"
    rewrite(client, keys, entries)

    result = audit.verify()

    assert not result.ok
    assert result.first_bad == entries[1][0]
    assert result.problem is not None
    assert "seq 2 was altered" in result.problem


@pytest.mark.timeout(30)
def test_adding_a_field_to_an_entry_is_caught(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    fill(audit, clock, 3)
    entries = raw_entries(client, keys)
    entries[2][1]["note"] = "approved by the CTO"
    rewrite(client, keys, entries)

    assert audit.verify().first_bad == entries[2][0]


@pytest.mark.timeout(30)
def test_inserted_entry_with_a_correct_hash_is_caught_at_the_next_entry(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    fill(audit, clock, 4)
    entries = raw_entries(client, keys)
    forged = dict(entries[1][1], seq="3", prev_hash=entries[1][1]["hash"], user_id="U-forged")
    forged["hash"] = sha256_of(forged)
    # The attacker picks fresh ids for the whole stream to make room for the insert.
    doctored = [entries[0][1], entries[1][1], forged, entries[2][1], entries[3][1]]
    rewrite(client, keys, [(f"{i + 1}-0", fields) for i, fields in enumerate(doctored)])

    result = audit.verify()

    assert not result.ok
    assert result.first_bad == "4-0"  # the genuine seq 3, right after the forgery
    assert result.problem is not None
    assert "inserted" in result.problem


@pytest.mark.timeout(30)
def test_inserted_entry_with_a_wrong_hash_is_named(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    fill(audit, clock, 3)
    entries = raw_entries(client, keys)
    forged = dict(entries[0][1], seq="2", prev_hash=entries[0][1]["hash"], hash="f" * 64)
    doctored = [entries[0][1], forged, entries[1][1], entries[2][1]]
    rewrite(client, keys, [(f"{i + 1}-0", fields) for i, fields in enumerate(doctored)])

    result = audit.verify()

    assert result.first_bad == "2-0"
    assert result.problem is not None
    assert "altered" in result.problem


@pytest.mark.timeout(30)
def test_with_an_hmac_key_a_recomputed_forgery_is_named(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = RedisAuditLog(client, keys, clock=clock, hmac_key=b"held-by-the-bot-only")
    fill(audit, clock, 3)
    assert audit.verify().ok
    entries = raw_entries(client, keys)
    forged = dict(entries[0][1], seq="2", prev_hash=entries[0][1]["hash"], user_id="U-forged")
    forged["hash"] = sha256_of(forged)  # the best an attacker without the key can do
    doctored = [entries[0][1], forged, entries[1][1], entries[2][1]]
    rewrite(client, keys, [(f"{i + 1}-0", fields) for i, fields in enumerate(doctored)])

    result = audit.verify()

    assert result.first_bad == "2-0"
    # And a log without the key does not accept the keyed chain either.
    assert not RedisAuditLog(client, keys, clock=clock).verify().ok


@pytest.mark.timeout(30)
def test_deleting_the_last_entry_is_caught_via_the_head(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, clock, 4)
    client.xdel(keys.audit, ids[-1])

    result = audit.verify()

    assert not result.ok
    assert result.first_bad == ids[-1]
    assert result.problem is not None
    assert "missing" in result.problem


@pytest.mark.timeout(30)
def test_deleting_the_whole_stream_is_caught_via_the_head(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    fill(audit, clock, 2)
    client.delete(keys.audit)
    assert not audit.verify().ok


@pytest.mark.timeout(30)
def test_deleting_the_head_is_caught(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    fill(audit, clock, 2)
    client.delete(keys.audit_head)
    result = audit.verify()
    assert not result.ok
    assert result.problem is not None
    assert "head" in result.problem


@pytest.mark.timeout(30)
def test_rewinding_the_head_does_not_hide_later_entries(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, clock, 4)
    first = raw_entries(client, keys)[0][1]
    client.hset(keys.audit_head, mapping={"seq": "1", "hash": first["hash"], "id": ids[0]})

    result = audit.verify()
    assert result.first_bad == ids[1]
    assert result.problem is not None
    assert "stream goes on" in result.problem

    entries = raw_entries(client, keys)
    entries[3][1]["outcome"] = "succeeded"
    rewrite(client, keys, entries)
    assert audit.verify().first_bad == ids[3]


@pytest.mark.timeout(30)
def test_append_refuses_to_chain_onto_a_damaged_head(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    fill(audit, clock, 2)
    client.hset(keys.audit_head, "hash", "not-a-hash")
    fresh = RedisAuditLog(client, keys, clock=clock)
    with pytest.raises(StoreCorrupt):
        fresh.append(event(3))
    assert client.xlen(keys.audit) == 2


@pytest.mark.timeout(30)
def test_appending_after_a_tail_deletion_keeps_the_gap_visible(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, clock, 3)
    client.xdel(keys.audit, ids[-1])
    after = audit.append(event(7))
    assert after.seq == 4
    result = audit.verify()
    assert result.first_bad == after.stream_id
    assert result.problem is not None
    assert "seq 3 missing" in result.problem


# -- retention ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_trim_by_count_keeps_the_rest_verifiable(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, clock, 10)

    trimmed = audit.trim(max_entries=3)

    assert trimmed.removed == 7
    assert trimmed.anchor_seq == 7
    assert [e.stream_id for e in audit.export()] == ids[7:]
    assert client.hget(keys.audit_anchor, "seq") == "7"
    result = audit.verify()
    assert result.ok
    assert result.checked == 3

    audit.append(event(11))
    assert audit.verify().ok
    assert audit.trim(max_entries=10).removed == 0


@pytest.mark.timeout(30)
def test_trim_by_age_keeps_entries_younger_than_the_retention(
    audit: RedisAuditLog, clock: FakeClock
) -> None:
    fill(audit, clock, 10)  # times T0 .. T0+9min; the clock is now at T0+10min

    trimmed = audit.trim(max_age=timedelta(minutes=4, seconds=30))

    kept = list(audit.export())
    assert trimmed.removed == 6
    assert [e.seq for e in kept] == [7, 8, 9, 10]
    assert all(e.time >= clock.now - timedelta(minutes=4, seconds=30) for e in kept)
    assert audit.verify().ok


@pytest.mark.timeout(30)
def test_trim_with_both_limits_removes_the_larger_part(
    audit: RedisAuditLog, clock: FakeClock
) -> None:
    fill(audit, clock, 10)
    assert audit.trim(max_entries=8, max_age=timedelta(minutes=5, seconds=30)).removed == 5
    assert audit.trim(max_entries=2, max_age=timedelta(hours=1)).removed == 3
    assert audit.verify().ok


@pytest.mark.timeout(30)
def test_trimming_everything_then_appending_continues_the_chain(
    audit: RedisAuditLog, clock: FakeClock
) -> None:
    fill(audit, clock, 4)
    assert audit.trim(max_entries=0).removed == 4
    assert audit.verify().ok
    entry = audit.append(event(5))
    assert entry.seq == 5
    assert audit.verify().ok


@pytest.mark.timeout(30)
def test_deleting_the_oldest_entry_after_a_trim_is_caught(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, clock, 6)
    audit.trim(max_entries=3)
    client.xdel(keys.audit, ids[3])

    result = audit.verify()

    assert result.first_bad == ids[4]
    assert result.problem is not None
    assert "seq 4 missing" in result.problem


@pytest.mark.timeout(30)
def test_trim_refuses_to_destroy_evidence_of_tampering(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    ids = fill(audit, clock, 6)
    client.xdel(keys.audit, ids[1])

    with pytest.raises(AuditChainBroken) as raised:
        audit.trim(max_entries=2)

    assert raised.value.result.first_bad == ids[2]
    assert client.xlen(keys.audit) == 5
    assert not client.exists(keys.audit_anchor)


# -- concurrency --------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_concurrent_appends_from_8_replicas_never_fork_the_chain(
    server: RedisServer, client: redis.Redis, keys: Keys
) -> None:
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def replica(n: int) -> None:
        # Each thread is a separate bot replica: its own client and its own log object.
        own = server.client(socket_timeout=5)
        log = RedisAuditLog(own, keys)
        try:
            barrier.wait()
            for i in range(per_thread):
                log.append(event(n, parameters={"i": str(i)}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            own.close()

    workers = [threading.Thread(target=replica, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    audit = RedisAuditLog(client, keys)
    result = audit.verify()
    assert result.ok, result
    assert result.checked == threads * per_thread
    assert [e.seq for e in audit.export()] == list(range(1, threads * per_thread + 1))


@pytest.mark.timeout(120)
def test_verify_and_trim_while_other_replicas_append(
    server: RedisServer, client: redis.Redis, keys: Keys
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def replica(n: int) -> None:
        own = server.client(socket_timeout=5)
        log = RedisAuditLog(own, keys)
        try:
            while not stop.is_set():
                log.append(event(n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            own.close()

    def trimmer() -> None:
        own = server.client(socket_timeout=5)
        log = RedisAuditLog(own, keys)
        try:
            while not stop.is_set():
                log.trim(max_entries=50)
                time.sleep(0.005)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            own.close()

    workers = [threading.Thread(target=replica, args=(n,)) for n in range(4)]
    workers.append(threading.Thread(target=trimmer))
    for worker in workers:
        worker.start()
    audit = RedisAuditLog(client, keys)
    try:
        results = [audit.verify() for _ in range(40)]
    finally:
        stop.set()
        for worker in workers:
            worker.join()

    assert [getattr(e, "operation", e) for e in errors] == []
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert audit.verify().ok


@pytest.mark.timeout(30)
def test_a_second_log_object_continues_the_same_chain(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    first = RedisAuditLog(client, keys, clock=clock)
    second = RedisAuditLog(client, keys, clock=clock)
    first.append(event(1))
    second.append(event(2))
    assert first.append(event(3)).seq == 3  # its cached head was stale
    assert first.verify().ok


# -- keys and clients ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_every_key_shares_one_hash_slot(
    audit: RedisAuditLog, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    fill(audit, clock, 5)
    audit.trim(max_entries=2)
    stored = list(client.scan_iter("*"))
    assert set(stored) == {keys.audit, keys.audit_head, keys.audit_anchor}
    assert {key_slot(k.encode()) for k in stored} == {key_slot(keys.tag.encode())}


@pytest.mark.timeout(30)
def test_prefixes_keep_installations_apart(client: redis.Redis, clock: FakeClock) -> None:
    blue = RedisAuditLog(client, Keys("blue"), clock=clock)
    green = RedisAuditLog(client, Keys("green"), clock=clock)
    blue.append(event(1))
    blue.append(event(2))
    assert green.append(event(3)).seq == 1
    assert blue.verify().checked == 2
    assert green.verify().checked == 1


@pytest.mark.timeout(30)
def test_works_with_a_client_that_returns_bytes(
    server: RedisServer, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    raw = server.client(decode_responses=False)
    audit = RedisAuditLog(raw, keys, clock=clock)
    fill(audit, clock, 3)
    audit.trim(max_entries=2)
    assert audit.verify().ok
    assert [e.seq for e in audit.recent(5)] == [3, 2]
    raw.close()


# -- faults -------------------------------------------------------------------------------------


def assert_user_safe(error: StoreUnavailable, server: RedisServer) -> None:
    text = str(error)
    assert str(server.port) not in text
    assert "127.0.0.1" not in text
    assert "redis://" not in text
    assert "Error" not in text


@pytest.mark.timeout(60)
def test_redis_stopped_surfaces_as_store_unavailable(keys: Keys) -> None:
    with RedisServer() as own:
        audit = RedisAuditLog(own.client(), keys)
        audit.append(event(1))
        own.stop()

        with pytest.raises(StoreUnavailable) as raised:
            audit.append(event(2))
        assert_user_safe(raised.value, own)
        assert raised.value.operation == "audit append"
        assert raised.value.cause == "ConnectionError"
        with pytest.raises(StoreUnavailable):
            audit.recent(5)
        with pytest.raises(StoreUnavailable):
            audit.verify()
        with pytest.raises(StoreUnavailable):
            list(audit.export())
        with pytest.raises(StoreUnavailable):
            audit.trim(max_entries=0)

        own.start()
        assert audit.append(event(3)).seq == 2
        assert audit.verify().ok


@pytest.mark.timeout(60)
def test_hung_redis_fails_within_the_socket_timeout(keys: Keys) -> None:
    with RedisServer() as own:
        audit = RedisAuditLog(own.client(socket_timeout=0.5), keys)
        audit.append(event(1))
        own.pause()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            audit.append(event(2))
        assert time.monotonic() - started < 3
        assert raised.value.cause == "TimeoutError"
        own.resume()

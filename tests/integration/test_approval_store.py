"""Approval requests against a real redis-server: transitions, races, expiry, restarts."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest
import redis
from redis.crc import key_slot

from bot.adapters.redis.approvals import (
    ApprovalOutcome,
    ApprovalRequest,
    ApprovalState,
    RedisApprovalStore,
    new_approval_id,
)
from bot.adapters.redis.audit import AuditEvent, RedisAuditLog
from bot.adapters.redis.errors import StoreCorrupt, StoreUnavailable
from bot.adapters.redis.keys import Keys
from tests.devkit.redis_server import RedisServer, ReplyDroppingProxy
from tests.integration.conftest import T0, FakeClock

pytestmark = pytest.mark.redis

REQUESTER = "U-req"

T = TypeVar("T")


@pytest.fixture
def store(client: redis.Redis, keys: Keys, clock: FakeClock) -> RedisApprovalStore:
    return RedisApprovalStore(client, keys, clock)


def new_request(
    clock: FakeClock,
    *,
    required: int = 1,
    ttl: timedelta = timedelta(minutes=30),
    namespace: str = "shop",
    **overrides: object,
) -> ApprovalRequest:
    fields: dict[str, object] = {
        "requester_id": REQUESTER,
        "requester_name": "rita",
        "channel": "C1",
        "action": "scale",
        "cluster": "prod",
        "namespace": namespace,
        "deployment": "api",
        "parameters": {"replicas": "5"},
        "reason": "traffic spike",
        "required": required,
        "approvers": ["U1", "U2", "S-oncall"],
        "created_at": clock.now,
        "expires_at": clock.now + ttl,
        "fingerprint": "rv=1234;tpl=abcd",
    }
    fields.update(overrides)
    return ApprovalRequest.model_validate(fields)


def run_together(count: int, work: Callable[[int], T]) -> list[T]:
    """Run `work(0..count-1)` in threads released at the same instant."""
    barrier = threading.Barrier(count)
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []

    def runner(n: int) -> None:
        try:
            barrier.wait()
            results[n] = work(n)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return [r for r in results if r is not None]


# -- create and read ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_created_request_reads_back_unchanged(store: RedisApprovalStore, clock: FakeClock) -> None:
    request = new_request(clock, required=2)
    store.create(request)

    read = store.get(request.id)

    assert read == request
    assert read is not None
    assert read.state is ApprovalState.PENDING
    assert read.approvers == ["U1", "U2", "S-oncall"]
    assert read.approvals == []
    assert read.expires_at == T0 + timedelta(minutes=30)


@pytest.mark.timeout(30)
def test_request_key_expires_a_few_days_after_the_deadline(
    store: RedisApprovalStore, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    request = store.create(new_request(clock, ttl=timedelta(hours=1)))
    ttl = client.ttl(keys.approval(request.id))
    expected = timedelta(hours=1, days=3).total_seconds()
    assert expected - 5 <= ttl <= expected


@pytest.mark.timeout(30)
def test_ids_are_short_and_url_safe() -> None:
    ids = {new_approval_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 10 and i.isalnum() and i.islower() for i in ids)


@pytest.mark.timeout(30)
def test_creating_an_existing_id_is_refused(store: RedisApprovalStore, clock: FakeClock) -> None:
    request = store.create(new_request(clock))
    with pytest.raises(ValueError, match="already exists"):
        store.create(new_request(clock, id=request.id, reason="other"))
    stored = store.get(request.id)
    assert stored is not None
    assert stored.reason == "traffic spike"


@pytest.mark.timeout(30)
def test_unknown_and_forged_ids_are_not_found(store: RedisApprovalStore) -> None:
    for forged in ("nope123456", "../x", "a b", "{rollout-bot}:audit", "", "x" * 300):
        assert store.get(forged) is None
        outcome = store.approve(forged, "U1", "ana")
        assert outcome == ApprovalOutcome("not_found", None, should_execute=False)
        assert store.reject(forged, "U1", "ana").status == "not_found"
        assert store.cancel(forged, REQUESTER).status == "not_found"


@pytest.mark.timeout(30)
def test_set_message_records_where_the_card_is(store: RedisApprovalStore, clock: FakeClock) -> None:
    request = store.create(new_request(clock))
    updated = store.set_message(request.id, "C42", "1700000000.000100", card_seal="s")
    assert updated is not None
    assert (updated.card_channel, updated.message_ts) == ("C42", "1700000000.000100")
    # The request's own channel (the one the policy is checked for) is never overwritten.
    assert (updated.channel, updated.card_seal) == (request.channel, "s")
    assert store.get(request.id) == updated
    assert store.set_message("missing000", "C1", "1.2") is None


# -- approving ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_requester_cannot_approve_their_own_request(
    store: RedisApprovalStore, clock: FakeClock
) -> None:
    request = store.create(new_request(clock))

    outcome = store.approve(request.id, REQUESTER, "rita")

    assert outcome.status == "requester"
    assert not outcome.should_execute
    assert outcome.request is not None
    assert outcome.request.state is ApprovalState.PENDING
    assert outcome.request.approvals == []


@pytest.mark.timeout(30)
def test_second_click_by_the_same_approver_is_a_duplicate(
    store: RedisApprovalStore, clock: FakeClock
) -> None:
    request = store.create(new_request(clock, required=2))

    first = store.approve(request.id, "U1", "ana")
    second = store.approve(request.id, "U1", "ana")

    assert first.status == "recorded"
    assert second.status == "duplicate"
    assert not second.should_execute
    assert second.request is not None
    assert [a.user_id for a in second.request.approvals] == ["U1"]


@pytest.mark.timeout(30)
def test_two_required_approvals_need_two_distinct_approvers(
    store: RedisApprovalStore, clock: FakeClock
) -> None:
    request = store.create(new_request(clock, required=2))

    first = store.approve(request.id, "U1", "ana")
    clock.advance(timedelta(minutes=1))
    second = store.approve(request.id, "U2", "bob")
    third = store.approve(request.id, "U3", "cy")

    assert (first.status, first.should_execute) == ("recorded", False)
    assert (second.status, second.should_execute) == ("approved", True)
    approved = second.request
    assert approved is not None
    assert approved.state is ApprovalState.APPROVED
    assert [(a.user_id, a.user_name, a.at) for a in approved.approvals] == [
        ("U1", "ana", T0),
        ("U2", "bob", T0 + timedelta(minutes=1)),
    ]
    assert (approved.decided_by, approved.decided_by_name) == ("U2", "bob")
    assert approved.decided_at == approved.claimed_at == T0 + timedelta(minutes=1)
    # Later clicks learn who decided and when.
    assert (third.status, third.should_execute) == ("already_decided", False)
    assert third.request == approved


@pytest.mark.timeout(60)
def test_twenty_concurrent_approvals_execute_exactly_once(
    server: RedisServer, store: RedisApprovalStore, clock: FakeClock, keys: Keys
) -> None:
    request = store.create(new_request(clock, required=1))

    def click(n: int) -> ApprovalOutcome:
        own = server.client(socket_timeout=5)  # one connection per Slack click handler
        try:
            return RedisApprovalStore(own, keys, clock).approve(request.id, f"U{n}", f"u{n}")
        finally:
            own.close()

    outcomes = run_together(20, click)

    assert Counter(o.status for o in outcomes) == {"approved": 1, "already_decided": 19}
    assert sum(o.should_execute for o in outcomes) == 1
    winner = next(o for o in outcomes if o.should_execute)
    stored = store.get(request.id)
    assert stored is not None
    assert stored.state is ApprovalState.APPROVED
    assert winner.request is not None
    assert [a.user_id for a in stored.approvals] == [winner.request.decided_by]


@pytest.mark.timeout(60)
def test_approve_and_reject_racing_have_exactly_one_winner(
    server: RedisServer, store: RedisApprovalStore, clock: FakeClock, keys: Keys
) -> None:
    winners: Counter[str] = Counter()
    for _ in range(25):
        request = store.create(new_request(clock))

        def click(n: int, request_id: str = request.id) -> ApprovalOutcome:
            own = server.client(socket_timeout=5)
            try:
                racer = RedisApprovalStore(own, keys, clock)
                if n == 0:
                    return racer.approve(request_id, "U1", "ana")
                return racer.reject(request_id, "U2", "bob", "not now")
            finally:
                own.close()

        approve, reject = run_together(2, click)

        statuses = {approve.status, reject.status}
        assert statuses in ({"approved", "already_decided"}, {"rejected", "already_decided"})
        winner = "approved" if "approved" in statuses else "rejected"
        winners[winner] += 1
        stored = store.get(request.id)
        assert stored is not None
        assert stored.state == winner
        assert approve.should_execute == (winner == "approved")
        assert not reject.should_execute
    assert sum(winners.values()) == 25


@pytest.mark.timeout(30)
def test_reject_records_who_and_why(store: RedisApprovalStore, clock: FakeClock) -> None:
    request = store.create(new_request(clock, required=2))
    store.approve(request.id, "U1", "ana")

    outcome = store.reject(request.id, "U2", "bob", "wrong cluster")

    assert outcome.status == "rejected"
    rejected = outcome.request
    assert rejected is not None
    assert rejected.state is ApprovalState.REJECTED
    assert (rejected.decided_by, rejected.decided_by_name) == ("U2", "bob")
    assert rejected.reject_reason == "wrong cluster"
    assert store.approve(request.id, "U3", "cy").status == "already_decided"
    assert store.pending() == []


# -- expiry ---------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_approving_after_the_deadline_expires_the_request(
    store: RedisApprovalStore, clock: FakeClock
) -> None:
    request = store.create(new_request(clock, ttl=timedelta(minutes=10)))
    clock.advance(timedelta(minutes=10))

    outcome = store.approve(request.id, "U1", "ana")

    assert (outcome.status, outcome.should_execute) == ("expired", False)
    assert outcome.request is not None
    assert outcome.request.state is ApprovalState.EXPIRED
    assert outcome.request.approvals == []
    assert store.approve(request.id, "U2", "bob").status == "already_decided"
    assert store.pending() == []


@pytest.mark.timeout(30)
def test_expire_due_expires_each_overdue_request_once(
    store: RedisApprovalStore, clock: FakeClock
) -> None:
    soon = store.create(new_request(clock, ttl=timedelta(minutes=5)))
    later = store.create(new_request(clock, ttl=timedelta(minutes=10)))
    last = store.create(new_request(clock, ttl=timedelta(hours=1)))
    store.approve(later.id, "U1", "ana")  # decided before its deadline
    clock.advance(timedelta(minutes=15))

    expired = store.expire_due()

    assert [r.id for r in expired] == [soon.id]
    assert expired[0].state is ApprovalState.EXPIRED
    assert expired[0].decided_at == clock.now
    assert store.expire_due() == []
    assert [r.id for r in store.pending()] == [last.id]
    stored = store.get(later.id)
    assert stored is not None
    assert stored.state is ApprovalState.APPROVED  # decided in time; not touched


@pytest.mark.timeout(30)
def test_pending_lists_only_live_requests_soonest_first(
    store: RedisApprovalStore, clock: FakeClock
) -> None:
    b = store.create(new_request(clock, ttl=timedelta(minutes=20)))
    a = store.create(new_request(clock, ttl=timedelta(minutes=10)))
    c = store.create(new_request(clock, ttl=timedelta(minutes=30), namespace="other"))
    d = store.create(new_request(clock, ttl=timedelta(minutes=40)))
    store.cancel(d.id, REQUESTER)

    assert [r.id for r in store.pending()] == [a.id, b.id, c.id]
    assert [r.id for r in store.pending(namespace="other")] == [c.id]
    clock.advance(timedelta(minutes=15))
    assert [r.id for r in store.pending()] == [b.id, c.id]


# -- cancel, void and execution -------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_only_the_requester_can_cancel(store: RedisApprovalStore, clock: FakeClock) -> None:
    request = store.create(new_request(clock))

    by_other = store.cancel(request.id, "U1")
    by_requester = store.cancel(request.id, REQUESTER)

    assert by_other.status == "not_requester"
    assert by_other.request is not None
    assert by_other.request.state is ApprovalState.PENDING
    assert by_requester.status == "cancelled"
    assert by_requester.request is not None
    assert by_requester.request.state is ApprovalState.CANCELLED
    assert by_requester.request.decided_by == REQUESTER
    assert store.approve(request.id, "U1", "ana").status == "already_decided"
    assert store.cancel(request.id, REQUESTER).status == "already_decided"


@pytest.mark.timeout(30)
def test_execution_moves_through_running_to_done_exactly_once(
    store: RedisApprovalStore, clock: FakeClock
) -> None:
    request = store.create(new_request(clock))
    assert store.approve(request.id, "U1", "ana").should_execute
    assert [r.id for r in store.active()] == [request.id]

    started = store.mark(request.id, ApprovalState.APPROVED, ApprovalState.RUNNING)
    again = store.mark(request.id, ApprovalState.APPROVED, ApprovalState.RUNNING)
    assert started.status == "marked"
    assert again.status == "conflict"
    assert again.request is not None
    assert again.request.state is ApprovalState.RUNNING
    assert [r.state for r in store.active()] == [ApprovalState.RUNNING]

    done = store.mark(request.id, ApprovalState.RUNNING, ApprovalState.DONE, "scaled to 5")
    assert done.status == "marked"
    assert done.request is not None
    assert done.request.state is ApprovalState.DONE
    assert done.request.result_message == "scaled to 5"
    assert store.active() == []

    with pytest.raises(ValueError):
        store.mark(request.id, ApprovalState.DONE, ApprovalState.PENDING)


@pytest.mark.timeout(30)
def test_voiding_an_approved_request_stops_its_execution(
    store: RedisApprovalStore, clock: FakeClock
) -> None:
    pending = store.create(new_request(clock))
    approved = store.create(new_request(clock))
    store.approve(approved.id, "U1", "ana")

    assert store.void(pending.id, "deployment changed since the request").status == "voided"
    voided = store.void(approved.id, "deployment changed since the request")

    assert voided.status == "voided"
    assert voided.request is not None
    assert voided.request.state is ApprovalState.VOIDED
    assert voided.request.result_message == "deployment changed since the request"
    late = store.mark(approved.id, ApprovalState.APPROVED, ApprovalState.RUNNING)
    assert late.status == "conflict"
    assert store.void(approved.id, "again").status == "already_decided"
    assert store.active() == []
    assert store.pending() == []


@pytest.mark.timeout(30)
def test_an_unreadable_record_is_reported_not_guessed(
    store: RedisApprovalStore, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    broken = store.create(new_request(clock, ttl=timedelta(minutes=5)))
    healthy = store.create(new_request(clock, ttl=timedelta(minutes=5)))
    client.set(keys.approval(broken.id), '{"state": "pending", "garbage": true')

    with pytest.raises(StoreCorrupt) as raised:
        store.get(broken.id)
    assert "garbage" not in str(raised.value)
    with pytest.raises(StoreCorrupt):
        store.approve(broken.id, "U1", "ana")
    assert [r.id for r in store.pending()] == [healthy.id]
    clock.advance(timedelta(minutes=6))
    assert [r.id for r in store.expire_due()] == [healthy.id]


# -- durability and faults ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_pending_requests_survive_a_redis_restart(keys: Keys, clock: FakeClock) -> None:
    with RedisServer() as own:
        store = RedisApprovalStore(own.client(), keys, clock)
        request = store.create(new_request(clock, required=2))
        store.approve(request.id, "U1", "ana")

        own.restart()

        assert [r.id for r in store.pending()] == [request.id]
        outcome = store.approve(request.id, "U2", "bob")
        assert (outcome.status, outcome.should_execute) == ("approved", True)


@pytest.mark.timeout(60)
def test_an_approval_survives_a_crash_right_after_it(keys: Keys, clock: FakeClock) -> None:
    with RedisServer() as own:
        store = RedisApprovalStore(own.client(), keys, clock)
        request = store.create(new_request(clock))
        assert store.approve(request.id, "U1", "ana").should_execute

        own.kill()  # SIGKILL: no clean shutdown
        own.start()

        assert [r.id for r in store.active()] == [request.id]
        assert store.approve(request.id, "U2", "bob").status == "already_decided"


@pytest.mark.timeout(60)
def test_redis_down_surfaces_as_store_unavailable(keys: Keys, clock: FakeClock) -> None:
    with RedisServer() as own:
        store = RedisApprovalStore(own.client(), keys, clock)
        request = store.create(new_request(clock))
        own.stop()

        calls: list[Callable[[], object]] = [
            lambda: store.approve(request.id, "U1", "ana"),
            lambda: store.reject(request.id, "U1", "ana"),
            lambda: store.get(request.id),
            lambda: store.pending(),
            lambda: store.expire_due(),
            lambda: store.create(new_request(clock)),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as raised:
                call()
            assert str(own.port) not in str(raised.value)
            assert "127.0.0.1" not in str(raised.value)


@pytest.mark.timeout(60)
def test_hung_redis_fails_within_the_socket_timeout(keys: Keys, clock: FakeClock) -> None:
    with RedisServer() as own:
        store = RedisApprovalStore(own.client(socket_timeout=0.5), keys, clock)
        request = store.create(new_request(clock))
        own.pause()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.approve(request.id, "U1", "ana")
        assert time.monotonic() - started < 3
        own.resume()
        # A timed-out write has an unknown outcome; here Redis ran it after resuming.
        stored = store.get(request.id)
        assert stored is not None
        assert stored.state in (ApprovalState.PENDING, ApprovalState.APPROVED)


@pytest.mark.timeout(60)
def test_a_transition_resent_after_a_lost_reply_acts_once(
    server: RedisServer, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    proxy = ReplyDroppingProxy(server, trigger=b"EVALSHA")
    try:
        proxied = proxy.client()
        store = RedisApprovalStore(proxied, keys, clock)
        store.approve("warmup0000", "U1", "ana")  # loads the script; NOSCRIPT is not the test
        request = store.create(new_request(clock, required=1))

        proxy.arm()
        outcome = store.approve(request.id, "U1", "ana")

        assert proxy.dropped == 1  # the first reply was lost and redis-py re-sent the script
        # The re-sent script returns the first run's result: this caller still executes.
        assert (outcome.status, outcome.should_execute) == ("approved", True)
        stored = store.get(request.id)
        assert stored is not None
        assert [a.user_id for a in stored.approvals] == ["U1"]
        proxied.close()
    finally:
        proxy.close()


@pytest.mark.timeout(60)
def test_an_audit_append_resent_after_a_lost_reply_writes_once(
    server: RedisServer, client: redis.Redis, keys: Keys
) -> None:
    proxy = ReplyDroppingProxy(server, trigger=b"EVALSHA")
    try:
        proxied = proxy.client()
        audit = RedisAuditLog(proxied, keys)
        audit.append(AuditEvent(event="request"))

        proxy.arm()
        entry = audit.append(AuditEvent(event="approval"))

        assert proxy.dropped == 1
        assert entry.seq == 2
        assert client.xlen(keys.audit) == 2
        assert audit.verify().ok
        proxied.close()
    finally:
        proxy.close()


# -- keys and clients -----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_every_key_shares_one_hash_slot(
    store: RedisApprovalStore, clock: FakeClock, client: redis.Redis, keys: Keys
) -> None:
    a = store.create(new_request(clock))
    b = store.create(new_request(clock))
    store.approve(a.id, "U1", "ana")
    store.reject(b.id, "U1", "ana")

    stored = list(client.scan_iter("*"))

    assert keys.approval(a.id) in stored
    assert keys.approvals_active in stored
    assert all(keys.owns(k) for k in stored)
    assert {key_slot(k.encode()) for k in stored} == {key_slot(keys.tag.encode())}
    assert {key_slot(k.encode()) for k in keys.fixed()} == {key_slot(keys.tag.encode())}


@pytest.mark.timeout(30)
def test_works_with_a_client_that_returns_bytes(server: RedisServer, clock: FakeClock) -> None:
    raw = server.client(decode_responses=False)
    store = RedisApprovalStore(raw, Keys("bytes-bot"), clock)
    request = store.create(new_request(clock, required=2))
    assert store.approve(request.id, "U1", "ana").status == "recorded"
    assert [r.id for r in store.pending()] == [request.id]
    assert store.approve(request.id, "U2", "bob").should_execute
    assert [r.id for r in store.active()] == [request.id]
    raw.close()

"""Any sequence of clicks, expiries and executions keeps the approval invariants (real Redis).

Hypothesis drives the store through random interleavings of approve, reject, cancel, void,
expiry and the execution marks; after every step:
- a request is executed (should_execute) at most once, and only once `required` distinct
  approvers other than the requester agreed;
- a decided request never changes its decision, and its state only moves along the allowed
  edges (approved → running → done | failed);
- `pending()` lists exactly the requests still waiting and not past their deadline.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bot.adapters.redis.approvals import ApprovalRequest, ApprovalState, RedisApprovalStore
from bot.adapters.redis.keys import Keys
from tests.devkit.redis_server import RedisServer
from tests.integration.conftest import FakeClock

pytestmark = [pytest.mark.redis, pytest.mark.timeout(300)]

USERS = ["U0REQ", "U1", "U2", "U3"]
APPROVERS = ["U1", "U2", "U3"]
TERMINAL = {
    ApprovalState.REJECTED,
    ApprovalState.EXPIRED,
    ApprovalState.CANCELLED,
    ApprovalState.VOIDED,
    ApprovalState.DONE,
    ApprovalState.FAILED,
}
ALLOWED = {
    ApprovalState.PENDING: {ApprovalState.PENDING, ApprovalState.APPROVED} | TERMINAL,
    ApprovalState.APPROVED: {
        ApprovalState.APPROVED,
        ApprovalState.RUNNING,
        ApprovalState.FAILED,
        ApprovalState.VOIDED,
    },
    ApprovalState.RUNNING: {ApprovalState.RUNNING, ApprovalState.DONE, ApprovalState.FAILED},
    **{state: {state} for state in TERMINAL},
}

SERVER: RedisServer | None = None


def server() -> RedisServer:
    global SERVER
    if SERVER is None:
        SERVER = RedisServer()
        SERVER.start()
    return SERVER


class ApprovalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        redis_server = server()
        redis_server.flush()
        self.clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
        self.store = RedisApprovalStore(redis_server.client(), Keys("machine"), self.clock)
        self.ids: list[str] = []
        self.required: dict[str, int] = {}
        self.executions: dict[str, int] = {}
        self.states: dict[str, ApprovalState] = {}

    # -- actions -------------------------------------------------------------------------------

    @rule(required=st.integers(1, 3), ttl=st.integers(1, 30))
    def create(self, required: int, ttl: int) -> None:
        request = self.store.create(
            ApprovalRequest(
                requester_id="U0REQ",
                action="scale",
                namespace="prod",
                deployment="web",
                required=required,
                approvers=APPROVERS,
                created_at=self.clock.now,
                expires_at=self.clock.now + timedelta(minutes=ttl),
            )
        )
        self.ids.append(request.id)
        self.required[request.id] = required
        self.executions[request.id] = 0
        self.states[request.id] = request.state

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), user=st.sampled_from(USERS))
    def approve(self, data: st.DataObject, user: str) -> None:
        approval_id = data.draw(st.sampled_from(self.ids))
        outcome = self.store.approve(approval_id, user, user.lower(), self.clock.now)
        if outcome.should_execute:
            self.executions[approval_id] += 1
            assert outcome.request is not None
            voters = {a.user_id for a in outcome.request.approvals}
            assert "U0REQ" not in voters
            assert len(voters) == len(outcome.request.approvals) >= self.required[approval_id]

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), user=st.sampled_from(USERS))
    def reject(self, data: st.DataObject, user: str) -> None:
        self.store.reject(data.draw(st.sampled_from(self.ids)), user, user, "no", self.clock.now)

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), user=st.sampled_from(USERS))
    def cancel(self, data: st.DataObject, user: str) -> None:
        self.store.cancel(data.draw(st.sampled_from(self.ids)), user, self.clock.now)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        self.store.void(data.draw(st.sampled_from(self.ids)), "changed", self.clock.now)

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), to=st.sampled_from(["run", "done", "fail"]))
    def mark(self, data: st.DataObject, to: str) -> None:
        approval_id = data.draw(st.sampled_from(self.ids))
        edges = {
            "run": (ApprovalState.APPROVED, ApprovalState.RUNNING),
            "done": (ApprovalState.RUNNING, ApprovalState.DONE),
            "fail": (ApprovalState.RUNNING, ApprovalState.FAILED),
        }
        self.store.mark(approval_id, *edges[to])

    @rule(minutes=st.integers(1, 20))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))

    @rule()
    def sweep(self) -> None:
        self.store.expire_due(self.clock.now)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def executed_at_most_once(self) -> None:
        assert all(count <= 1 for count in self.executions.values())

    @invariant()
    def states_only_move_along_allowed_edges(self) -> None:
        for approval_id in self.ids:
            request = self.store.get(approval_id)
            assert request is not None
            before = self.states[approval_id]
            assert request.state in ALLOWED[before], (before, request.state)
            if request.state in (ApprovalState.APPROVED, ApprovalState.RUNNING, ApprovalState.DONE):
                assert self.executions[approval_id] == 1
            self.states[approval_id] = request.state

    @invariant()
    def pending_lists_exactly_the_live_requests(self) -> None:
        listed = {r.id for r in self.store.pending()}
        stored = {i: self.store.get(i) for i in self.ids}
        # Past its deadline a request is no longer listed, even before the sweeper marks it.
        live = {
            i
            for i, r in stored.items()
            if r and r.state == ApprovalState.PENDING and r.expires_at > self.clock.now
        }
        assert listed == live


ApprovalMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_approval_invariants_hold_for_any_interleaving() -> None:
    try:
        ApprovalMachine.TestCase().runTest()
    finally:
        global SERVER
        if SERVER is not None:
            SERVER.close()
            SERVER = None

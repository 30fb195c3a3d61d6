"""Approval requests in Redis, with atomic compare-and-set transitions.

One JSON document per request (`{prefix}:approval:<id>`), expiring `retention` after the
request's own expiry so Redis does not grow forever, plus two indexes:

* `{prefix}:approvals:pending` (sorted set, score = expiry): what awaits a decision, and
  what the expiry sweeper visits;
* `{prefix}:approvals:active` (sorted set, score = decision time): approved or running
  requests, which a restarted bot must pick up again.

Every transition is one Lua script: it reads the document, checks the state, changes it and
updates the indexes atomically, so two clicks, two replicas or an approve racing a reject
resolve to exactly one winner. Only the caller whose approval reached the threshold gets
`should_execute=True`.

Each call also carries a random operation token; the script stores its result under
`{prefix}:op:<token>` for a few minutes. If redis-py re-sends a script because the reply
was lost, the second run returns the first run's result instead of acting again (a vote
recorded twice would otherwise come back as "duplicate", and an approval that reached the
threshold as "already decided", leaving nobody to execute it).

Approver membership (is this user a listed approver, Slack groups resolved) is checked by
the caller before `approve()`; the store enforces state, expiry, four-eyes (the requester
cannot approve), one vote per user and the threshold.

Times are stored as fixed-width UTC strings (`2025-01-31T12:00:00.000000Z`), so the Lua
scripts compare them as strings.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, cast

import redis
from pydantic import (
    ValidationError,
)
from redis.commands.core import Script

from bot.adapters.redis.durability import NO_WAIT, Durability
from bot.adapters.redis.errors import StoreCorrupt, redis_errors
from bot.adapters.redis.keys import Keys
from bot.domain.approval import (
    OUTCOME_STATUSES as _STATUSES,
)
from bot.domain.approval import (
    Approval,
    ApprovalOutcome,
    ApprovalRequest,
    ApprovalState,
    OutcomeStatus,
    new_approval_id,
    store_status,
)
from bot.domain.approval import format_time as _format_time
from bot.domain.approval import require_aware as _require_aware

__all__ = [
    "Approval",
    "ApprovalOutcome",
    "ApprovalRequest",
    "ApprovalState",
    "OutcomeStatus",
    "RedisApprovalStore",
    "new_approval_id",
    "store_status",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Keep a decided or expired request readable for three days, long enough for "who approved
# this?" questions after a weekend, short enough that Redis never accumulates history (the
# audit trail is the long-term record).
DEFAULT_RETENTION: Final = timedelta(days=3)
# A transition's result is remembered for 10 minutes: far longer than redis-py's retry
# budget for one command (seconds), so a re-sent script always finds it.
_OP_TTL_SECONDS: Final = 600
# Ids per MGET and per expiry sweep; bounded so one call never blocks Redis noticeably.
_BATCH: Final = 200

# mark() moves requests through execution; anything else is a programming error.
_MARKS: Final = frozenset(
    {
        (ApprovalState.APPROVED, ApprovalState.RUNNING),
        (ApprovalState.APPROVED, ApprovalState.FAILED),  # e.g. refused before starting
        (ApprovalState.RUNNING, ApprovalState.DONE),
        (ApprovalState.RUNNING, ApprovalState.FAILED),
    }
)


# -- Lua ---------------------------------------------------------------------------------------
#
# Every transition script gets
#   KEYS: request, pending index, active index, operation token
#   ARGV: op ttl, id, now (UTC string), now (epoch seconds), retention seconds, then the
#         script's own arguments from ARGV[6]
# and returns {status, request JSON or false}.

_PROLOGUE = """
local done = redis.call('GET', KEYS[4])
if done then return {done, redis.call('GET', KEYS[1]) or false} end
local raw = redis.call('GET', KEYS[1])
if not raw then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return {'not_found', false}
end
local decoded, r = pcall(cjson.decode, raw)
if not decoded or type(r) ~= 'table' or type(r.state) ~= 'string'
    or type(r.expires_at) ~= 'string' or type(r.approvals) ~= 'table' then
  return {'corrupt', false}
end
local now = ARGV[3]
local terminal = {rejected=true, expired=true, cancelled=true, voided=true, done=true,
                  failed=true}

local function finish(status, changed)
  local out = raw
  if changed then
    out = cjson.encode(r)
    redis.call('SET', KEYS[1], out, 'KEEPTTL')
    if r.state ~= 'pending' then redis.call('ZREM', KEYS[2], ARGV[2]) end
    if r.state == 'approved' or r.state == 'running' then
      redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[2])
    else
      redis.call('ZREM', KEYS[3], ARGV[2])
    end
    if terminal[r.state] then
      -- keep a closed request readable for the retention period from now on
      local ttl = redis.call('TTL', KEYS[1])
      local keep = tonumber(ARGV[5])
      if ttl >= 0 and ttl < keep then redis.call('EXPIRE', KEYS[1], keep) end
    end
  end
  redis.call('SET', KEYS[4], status, 'EX', ARGV[1])
  return {status, out}
end

local function expire_if_due()
  if r.expires_at <= now then
    r.state = 'expired'
    r.decided_at = now
    return true
  end
  return false
end
"""

_APPROVE = """
local user_id, user_name, sig, decision_seal = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if r.state ~= 'pending' then return finish('already_decided', false) end
if expire_if_due() then return finish('expired', true) end
if r.requester_id == user_id then return finish('requester', false) end
for _, a in ipairs(r.approvals) do
  if a.user_id == user_id then return finish('duplicate', false) end
end
table.insert(r.approvals, {user_id = user_id, user_name = user_name, at = now, sig = sig})
if #r.approvals < tonumber(r.required) then return finish('recorded', true) end
r.state = 'approved'
r.decided_by = user_id
r.decided_by_name = user_name
r.decided_at = now
r.decision_seal = decision_seal
r.claimed_at = now
return finish('approved', true)
"""

_REJECT = """
local user_id, user_name, reason, decision_seal = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if r.state ~= 'pending' then return finish('already_decided', false) end
if expire_if_due() then return finish('expired', true) end
r.state = 'rejected'
r.decided_by = user_id
r.decided_by_name = user_name
r.decided_at = now
r.reject_reason = reason
r.decision_seal = decision_seal
return finish('rejected', true)
"""

_CANCEL = """
local user_id, user_name, decision_seal = ARGV[6], ARGV[7], ARGV[8]
if r.state ~= 'pending' then return finish('already_decided', false) end
if expire_if_due() then return finish('expired', true) end
if r.requester_id ~= user_id then return finish('not_requester', false) end
r.state = 'cancelled'
r.decided_by = user_id
r.decided_by_name = user_name
r.decided_at = now
r.decision_seal = decision_seal
return finish('cancelled', true)
"""

_VOID = """
local why, result_seal = ARGV[6], ARGV[7]
if r.state ~= 'pending' and r.state ~= 'approved' then
  return finish('already_decided', false)
end
if r.state == 'pending' then r.decided_at = now end
r.state = 'voided'
r.result_message = why
r.result_seal = result_seal
return finish('voided', true)
"""

_EXPIRE = """
if r.state ~= 'pending' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return finish('already_decided', false)
end
if expire_if_due() then return finish('expired', true) end
return finish('recorded', false)  -- not due yet (the index is ahead of the record)
"""

_MARK = """
local from, to, has_message, message, result_seal = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
if r.state ~= from then return finish('conflict', false) end
r.state = to
if has_message == '1' then
  r.result_message = message
  r.result_seal = result_seal
end
return finish('marked', true)
"""

# The card's place, never the request's own channel (the policy is checked for that one).
_SET_MESSAGE = """
r.card_channel = ARGV[6]
r.message_ts = ARGV[7]
r.card_seal = ARGV[8]
return finish('marked', true)
"""

# KEYS: request, pending index. ARGV: JSON, ttl seconds, expiry score, id.
_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""


class RedisApprovalStore:
    """Approval requests of one bot installation."""

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: Keys,
        clock: Clock | None = None,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        durability: Durability = NO_WAIT,
    ) -> None:
        """`durability`: how many replicas must acknowledge a request, a vote or a decision
        before the caller may act on it (see `bot.adapters.redis.durability`)."""
        self._redis = redis_client
        self._durability = durability
        self._keys = keys
        self._clock = clock or (lambda: datetime.now(UTC))
        self._retention = retention

        def script(body: str) -> Script:
            return redis_client.register_script(_PROLOGUE + body)

        self._approve = script(_APPROVE)
        self._reject = script(_REJECT)
        self._cancel = script(_CANCEL)
        self._void = script(_VOID)
        self._expire = script(_EXPIRE)
        self._mark = script(_MARK)
        self._set_message = script(_SET_MESSAGE)
        self._create = redis_client.register_script(_CREATE)

    # -- create and read -------------------------------------------------------------------

    def create(self, request: ApprovalRequest) -> ApprovalRequest:
        """Store a new pending request. Raises ValueError if the id is already taken."""
        if request.state is not ApprovalState.PENDING or request.approvals:
            raise ValueError("a new approval request must be pending with no approvals")
        if request.expires_at <= request.created_at:
            raise ValueError("expires_at must be after created_at")
        now = self._clock()
        ttl = math.ceil((request.expires_at - now + self._retention).total_seconds())
        created = self._durability.write(
            self._redis,
            "approval create",
            lambda client: self._create(
                keys=[self._keys.approval(request.id), self._keys.approvals_pending],
                args=[
                    request.model_dump_json(),
                    max(ttl, 1),
                    request.expires_at.timestamp(),
                    request.id,
                ],
                client=client,
            ),
        )
        if not int(created):
            raise ValueError(f"approval id {request.id!r} already exists")
        return request

    def get(self, approval_id: str) -> ApprovalRequest | None:
        if not Keys.valid_part(approval_id):
            return None  # a forged button value: treat as unknown, touch nothing
        with redis_errors("approval read"):
            raw = self._redis.get(self._keys.approval(approval_id))
        return None if raw is None else _parse(raw, "approval read")

    def pending(self, namespace: str | None = None) -> list[ApprovalRequest]:
        """Requests awaiting a decision and not yet past their deadline, soonest expiry first."""
        now = self._clock()
        found = self._load_index(self._keys.approvals_pending, "approval list")
        return [
            r
            for r in found
            if r.state is ApprovalState.PENDING
            and r.expires_at > now
            and (namespace is None or r.namespace == namespace)
        ]

    def active(self) -> list[ApprovalRequest]:
        """Approved or running requests: what a restarted bot has to resume or surface."""
        found = self._load_index(self._keys.approvals_active, "approval list")
        return [r for r in found if r.state in (ApprovalState.APPROVED, ApprovalState.RUNNING)]

    # -- transitions -------------------------------------------------------------------------

    def approve(
        self,
        approval_id: str,
        user_id: str,
        user_name: str,
        now: datetime | None = None,
        *,
        sig: str = "",
        decision_seal: str = "",
    ) -> ApprovalOutcome:
        """Record a vote. `sig` is the caller's seal over the vote (see `Approval.sig`); it is
        stored with it, and a vote without a valid one never counts at execution.
        `decision_seal` is stored if this vote decides the request (`decision_content`)."""
        status, request = self._run(
            self._approve, approval_id, now, user_id, user_name, sig, decision_seal
        )
        return ApprovalOutcome(status, request, should_execute=status == "approved")

    def reject(
        self,
        approval_id: str,
        user_id: str,
        user_name: str,
        reason: str = "",
        now: datetime | None = None,
        *,
        decision_seal: str = "",
    ) -> ApprovalOutcome:
        status, request = self._run(
            self._reject, approval_id, now, user_id, user_name, reason, decision_seal
        )
        return ApprovalOutcome(status, request)

    def cancel(
        self,
        approval_id: str,
        user_id: str,
        now: datetime | None = None,
        *,
        user_name: str = "",
        decision_seal: str = "",
    ) -> ApprovalOutcome:
        """Withdraw a pending request; only its requester may."""
        status, request = self._run(
            self._cancel, approval_id, now, user_id, user_name, decision_seal
        )
        return ApprovalOutcome(status, request)

    def void(
        self, approval_id: str, why: str, now: datetime | None = None, *, result_seal: str = ""
    ) -> ApprovalOutcome:
        """Invalidate a pending or approved (not yet running) request, e.g. target changed.
        `why` becomes its result message, stored with `result_seal`."""
        status, request = self._run(self._void, approval_id, now, why, result_seal)
        return ApprovalOutcome(status, request)

    def mark(
        self,
        approval_id: str,
        from_state: ApprovalState,
        to_state: ApprovalState,
        result_message: str | None = None,
        *,
        result_seal: str = "",
    ) -> ApprovalOutcome:
        """Move an approved request through execution: approved -> running -> done | failed.

        Compare-and-set: status "conflict" (nothing changed) if the request is no longer
        in `from_state`, e.g. another replica started it or it was voided.
        """
        if (from_state, to_state) not in _MARKS:
            raise ValueError(f"mark() cannot move a request from {from_state} to {to_state}")
        has_message = "0" if result_message is None else "1"
        status, request = self._run(
            self._mark,
            approval_id,
            None,
            from_state.value,
            to_state.value,
            has_message,
            result_message or "",
            result_seal,
            # Claiming the request (approved -> running) authorises the change: it must
            # survive a failover, or the request would come back approved and run again. What
            # is recorded once it ran or failed gets its best chance, never a refusal.
            durable="best effort" if from_state is ApprovalState.RUNNING else "required",
        )
        return ApprovalOutcome(status, request)

    def set_message(
        self, approval_id: str, channel: str, ts: str, *, card_seal: str = ""
    ) -> ApprovalRequest | None:
        """Remember where the approval card was posted (whatever the state), with the seal
        over that place (`ApprovalRequest.card_content`)."""
        _, request = self._run(
            self._set_message, approval_id, None, channel, ts, card_seal, durable="no"
        )
        return request

    def expire_due(self, now: datetime | None = None) -> list[ApprovalRequest]:
        """Move pending requests past their deadline to expired, each atomically.

        Returns the requests this call expired (so the caller updates their cards and
        audits each once). Handles at most 200 per call; the sweeper runs periodically.
        """
        moment = now or self._clock()
        with redis_errors("approval expiry"):
            ids = self._redis.zrangebyscore(
                self._keys.approvals_pending, "-inf", moment.timestamp(), start=0, num=_BATCH
            )
        expired: list[ApprovalRequest] = []
        for raw_id in ids:
            approval_id = _text(raw_id)
            if not Keys.valid_part(approval_id):
                with redis_errors("approval expiry"):
                    self._redis.zrem(self._keys.approvals_pending, approval_id)
                continue
            try:
                status, request = self._run(self._expire, approval_id, moment)
            except StoreCorrupt:
                log.warning("skipping unreadable approval record %s", approval_id)
                continue
            if status == "expired" and request is not None:
                expired.append(request)
        return expired

    # -- internals -------------------------------------------------------------------------------

    def _run(
        self,
        script: Script,
        approval_id: str,
        now: datetime | None,
        *extra: str,
        durable: Literal["required", "best effort", "no"] = "required",
    ) -> tuple[OutcomeStatus, ApprovalRequest | None]:
        if not Keys.valid_part(approval_id):
            return "not_found", None
        moment = now or self._clock()
        keys = [
            self._keys.approval(approval_id),
            self._keys.approvals_pending,
            self._keys.approvals_active,
            self._keys.op(secrets.token_urlsafe(12)),
        ]
        args: list[str | int] = [
            _OP_TTL_SECONDS,
            approval_id,
            _format_time(_require_aware(moment)),
            repr(moment.timestamp()),
            math.ceil(self._retention.total_seconds()),
            *extra,
        ]
        if durable == "no":
            with redis_errors("approval update"):
                reply = script(keys=keys, args=args)
        else:
            reply = self._durability.write(
                self._redis,
                "approval update",
                lambda client: script(keys=keys, args=args, client=client),
                required=durable == "required",
            )
        status = _text(reply[0])
        if status == "corrupt":
            raise StoreCorrupt("approval update", cause="UnreadableRecord")
        if status not in _STATUSES:
            raise StoreCorrupt("approval update", cause="UnexpectedScriptReply")
        raw = reply[1] if len(reply) > 1 else None
        request = None if raw is None else _parse(raw, "approval update")
        return cast(OutcomeStatus, status), request

    def _load_index(self, index: str, operation: str) -> list[ApprovalRequest]:
        with redis_errors(operation):
            ids = [_text(i) for i in self._redis.zrange(index, 0, -1)]
        ids = [i for i in ids if Keys.valid_part(i)]
        found: list[ApprovalRequest] = []
        for chunk in _chunks(ids, _BATCH):
            with redis_errors(operation):
                raws = self._redis.mget([self._keys.approval(i) for i in chunk])
            for approval_id, raw in zip(chunk, raws, strict=True):
                if raw is None:
                    continue  # expired key; the next transition or sweep drops the index entry
                try:
                    found.append(_parse(raw, operation))
                except StoreCorrupt:
                    log.warning("skipping unreadable approval record %s", approval_id)
        return found


def _parse(raw: object, operation: str) -> ApprovalRequest:
    try:
        return ApprovalRequest.model_validate_json(_text(raw))
    except ValidationError as exc:
        raise StoreCorrupt(operation, cause="ValidationError") from exc


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

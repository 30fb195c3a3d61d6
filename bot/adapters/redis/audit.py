"""Tamper-evident audit trail on a Redis Stream.

Every entry carries `seq` (1, 2, 3 …), `prev_hash` (the previous entry's hash; 64 zeros for
the first) and `hash`: the SHA-256, or with a key the HMAC-SHA256, of the canonical JSON
(sorted keys, no whitespace) of all of the entry's other fields exactly as stored. A keyed
entry names its key in `kid` (covered by the MAC), so keys can rotate: old keys stay in the
keyring for verification, the signing key signs what is new. A key may be set on a trail
that had none: the entries before the first keyed one verify as plain SHA-256, and that first
keyed entry carries `key_start` (under its MAC), which is what lets an unsigned anchor from the
unkeyed days precede it. Entries written under ROLLOUT_BOT_AUDIT_HMAC_KEY before key ids
existed carry no `kid`; they verify under the key id `default`.

Two records sit beside the stream:

* `{prefix}:audit:head`: seq, hash and stream id of the last entry. With a key it also
  carries `kid` and `mac`, an HMAC over (record type, seq, hash, stream id, kid), so moving
  the head back over deleted entries needs the key.
* `{prefix}:audit:anchor`: the retention record. `trim` writes it atomically with the cut:
  seq, hash and stream id of the last entry removed, the first seq that trim removed
  (`from`), when (`time`) and why (`reason`); signed like the head. `verify()` starts from
  it instead of from genesis.

Stream ids are chosen by the writer (never `*`), so the head's MAC can cover the id.

What `verify()` detects, and what it cannot:

* an altered entry (its hash no longer matches its fields), a removed entry (seq gap), an
  inserted or reordered entry (seq or prev_hash out of line), entries removed from the
  newest end (the head names an entry that is gone, or, with a key, a head moved back fails
  its MAC), entries removed from the oldest end (a seq gap after the anchor, or, with a key,
  a moved anchor fails its MAC: only a signed retention record explains a cut);
* an unkeyed entry after keyed ones (a downgrade) and entries signed with a key id that is
  not configured;
* with a key, a trail swapped for an unsigned one (forged entries hashed with plain SHA-256
  and a matching unsigned head): unsigned entries, an unsigned head and an unsigned anchor
  are accepted only below `unsigned_before`, the seq the operator names as the first one the
  key signed (ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE; default 1: none). The bot refuses to append
  to a head it cannot vouch for (`AuditTrailUntrusted`), so it never signs on top of a
  forgery;
* without a key, anything is recomputable by whoever can write to Redis; what is still
  caught is naive deletion: Redis counts the entries ever added to the stream and remembers
  the highest id deleted with XDEL (retention uses XTRIM, which does not set it);
* with a key, replacing the head with an *older genuine* copy (saved earlier) after deleting
  the newest entries, and rebuilding the stream so that Redis's counters start afresh, is
  only visible against an outside copy of the head: `verify(checkpoint=...)`, fed with the
  head a previous `rollout-bot audit verify` printed. (An older genuine anchor hides
  nothing: the entries after it are gone, a seq gap.)

Writes are serialised without a lock: Python prepares the entry (seq, prev_hash, stream id,
hash, head MAC) on the tip it last saw, and a Lua script adds it and moves the head only if
the tip is still that one (compare-and-set); on a conflict the entry is prepared again on the
new tip, for at most `append_timeout` seconds. Two bot replicas therefore never fork the
chain.

Atomic decisions: `audited_lua(body)` wraps another Lua script (e.g. an approval state
transition) so that it can write a prepared audit entry in the same atomic run, and
`run_audited()` prepares the entries, runs it and retries on a moved tip. The decision and
its entry are then stored together or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import redis
from redis.commands.core import Script

from bot.adapters.redis.durability import NO_WAIT, Durability
from bot.adapters.redis.errors import (
    AuditTrailUntrusted,
    StoreCorrupt,
    StoreUnavailable,
    redis_errors,
)
from bot.adapters.redis.keys import Keys
from bot.domain.audit import (
    DEFAULT_KEY_ID,
    AuditEntry,
    AuditEvent,
    AuditEventKind,
    AuditKeyring,
    MissingAt,
    TrimResult,
    VerifyResult,
)
from bot.observability.metrics import metrics

__all__ = [
    "GENESIS_HASH",
    "AuditChainBroken",
    "AuditEntry",
    "AuditEvent",
    "AuditEventKind",
    "AuditKeyring",
    "AuditedReply",
    "RedisAuditLog",
    "TrimResult",
    "VerifyResult",
    "audited_lua",
]

log = logging.getLogger(__name__)

GENESIS_HASH: Final = "0" * 64
# Stored in every entry and covered by the hash, so a future change of the field set or of
# the canonical form can be told apart from tampering.
SCHEMA_VERSION: Final = "1"
# Version of the anchor (retention record) layout.
ANCHOR_VERSION: Final = "2"
DEFAULT_TRIM_REASON: Final = "retention"

# One XRANGE page. 500 entries of ~1 KB keep a reply well under a megabyte.
_PAGE = 500
# Conflicts happen only while other replicas append. A conflict reply carries the new tip,
# so the retry is immediate (no sleep: sleeping loses every race to writers that do not,
# which starved one writer for seconds in a stress test). One round trip is well under a
# millisecond; if 2 s of retries cannot win the tip, something is writing in a loop and it
# is better to report the store busy than to hold a worker thread.
_APPEND_TIMEOUT = 2.0
_NO_KEY_WARNING: Final = (
    "no HMAC key configured: the head and the retention anchor cannot be authenticated, "
    "and whoever can write to Redis can rewrite the trail undetected (set "
    "ROLLOUT_BOT_AUDIT_HMAC_KEY or ROLLOUT_BOT_AUDIT_HMAC_KEYS)"
)

Clock = Callable[[], datetime]


class AuditChainBroken(Exception):
    """`trim()` refused: the entries it would delete (or the anchor) fail verification.

    Trimming them would destroy the evidence, so nothing was removed.
    """

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(
            f"Audit trail failed verification at {result.first_bad}: {result.problem}. "
            "Nothing was trimmed."
        )
        self.result = result


@dataclass(frozen=True, slots=True)
class AuditedReply:
    """What `run_audited()` returns."""

    #: What the wrapped script body returned, as redis-py decoded it.
    reply: Any
    #: The status whose entry the body recorded with `audit_record(status)`, if any.
    status: str | None
    #: That entry, as stored; None if the body recorded nothing.
    entry: AuditEntry | None


# -- Lua -------------------------------------------------------------------------------------

# The chain's tip is the head, or, if the head is missing, the anchor, or genesis; `top` is
# the stream's last generated id (a new entry's id must be above it).
_TIP_LUA_FN = f"""
local function audit_tip(stream, head, anchor)
  local h = redis.call('HMGET', head, 'seq', 'hash', 'id', 'kid', 'mac')
  local seq, hash, id, kid, mac
  if h[1] then
    seq, hash, id, kid, mac = h[1], h[2] or '', h[3] or '0-0', h[4] or '', h[5] or ''
  else
    local a = redis.call('HMGET', anchor, 'seq', 'hash', 'id')
    if a[1] then
      seq, hash, id, kid, mac = a[1], a[2] or '', a[3] or '0-0', '', ''
    else
      seq, hash, id, kid, mac = '0', '{GENESIS_HASH}', '0-0', '', ''
    end
  end
  local top = '0-0'
  if redis.call('EXISTS', stream) == 1 then
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then top = info[i + 1] end
    end
  end
  return seq, hash, id, top, kid, mac
end

local function audit_id_after(a, b)
  local am, an = string.match(a, '^(%d+)-(%d+)$')
  local bm, bn = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return false end
  am, an, bm, bn = tonumber(am), tonumber(an), tonumber(bm), tonumber(bn)
  if am ~= bm then return am > bm end
  return an > bn
end
"""

# KEYS: stream, head, anchor.
_TIP_LUA = (
    _TIP_LUA_FN
    + """
return {audit_tip(KEYS[1], KEYS[2], KEYS[3])}
"""
)

# Wraps a script body. The audit keys are the last three KEYS (stream, head, anchor) and the
# prepared plan is the last ARGV, so the body keeps its own KEYS[1..] and ARGV[1..].
_AUDITED_PRELUDE = (
    _TIP_LUA_FN
    + """
local AUDIT_STREAM, AUDIT_HEAD, AUDIT_ANCHOR = KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
local audit_plan = cjson.decode(ARGV[#ARGV])
local audit_written = false
do
  local seq, hash, id, top, kid, mac = audit_tip(AUDIT_STREAM, AUDIT_HEAD, AUDIT_ANCHOR)
  if seq == audit_plan.seq then
    -- One of the prepared entries is already the tip: redis-py re-sent this script after a
    -- lost reply. The body runs again (it must be idempotent) but writes no second entry.
    for status, entry in pairs(audit_plan.entries) do
      if entry.hash == hash then audit_written = status end
    end
  end
  if not audit_written and (seq ~= audit_plan.expect_seq or hash ~= audit_plan.expect_hash
      or not audit_id_after(audit_plan.id, top)) then
    return {'audit_conflict', seq, hash, id, top, kid, mac}
  end
end

-- Writes the entry prepared for `status`, if one was; at most one entry per run.
local function audit_record(status)
  if audit_written then return false end
  local entry = audit_plan.entries[status]
  if not entry then return false end
  redis.call('XADD', AUDIT_STREAM, audit_plan.id, unpack(entry.fields))
  redis.call('DEL', AUDIT_HEAD)
  redis.call('HSET', AUDIT_HEAD, unpack(entry.head))
  audit_written = status
  return true
end

local function audit_body()
"""
)

_AUDITED_EPILOGUE = """
end

local audit_reply = audit_body()
if audit_reply == nil then audit_reply = false end
return {'audit_ok', audit_reply, audit_written}
"""

# An append is an audited script whose body only records its entry.
_APPEND_BODY = """
audit_record('append')
return 1
"""

# KEYS: stream, anchor. ARGV: expected current anchor seq ('' for none), new anchor's stream
# id, seq, hash, the MINID below which entries are deleted (the id right after it), then the
# anchor record's field/value pairs.
_TRIM_LUA = """
local current = redis.call('HGET', KEYS[2], 'seq')
if (current or '') ~= ARGV[1] then return {'conflict'} end
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #found == 0 then return {'conflict'} end
local fields = found[1][2]
local seq, hash
for i = 1, #fields, 2 do
  if fields[i] == 'seq' then seq = fields[i + 1] end
  if fields[i] == 'hash' then hash = fields[i + 1] end
end
if seq ~= ARGV[3] or hash ~= ARGV[4] then return {'conflict'} end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
return {'ok', redis.call('XTRIM', KEYS[1], 'MINID', ARGV[5])}
"""


def audited_lua(body: str) -> str:
    """A Lua script that runs `body` and may write one audit entry in the same atomic run.

    Inside `body`, `audit_record(status)` writes the entry that `run_audited()` prepared for
    `status` (nothing if none was prepared for it; at most one entry per run) and moves the
    head. The body keeps its own `KEYS[1..]` and `ARGV[1..]`: `run_audited()` appends the
    three audit keys and one plan argument after them. The body must `return` a value (it
    runs as a Lua function) and must be idempotent: if redis-py re-sends the script after a
    lost reply, it runs again but no second entry is written. Register it with
    `redis_client.register_script(audited_lua(body))`.
    """
    return _AUDITED_PRELUDE + body + _AUDITED_EPILOGUE


@dataclass(frozen=True, slots=True)
class _Tip:
    seq: str
    hash: str
    id: str
    #: The stream's last generated id.
    top: str
    #: The head's key id and MAC ("" when unkeyed).
    kid: str
    mac: str = ""


class RedisAuditLog:
    """The audit trail of one bot installation, on `keys.audit`.

    Pass `keyring` (key id -> secret, and the id that signs) to make the trail HMAC-SHA256,
    or `hmac_key` for a single key under the id `default`. Without either the trail is plain
    SHA-256 and `verify()` says that the head and anchor cannot be authenticated.

    With a key, `unsigned_before` is the first seq that must be signed: the entries (and head
    or anchor) below it may be unsigned, written before the key was configured. The operator
    names it once, when setting a key on an existing trail; by default nothing unsigned is
    accepted.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: Keys,
        clock: Clock | None = None,
        *,
        hmac_key: bytes | None = None,
        keyring: AuditKeyring | None = None,
        append_timeout: float = _APPEND_TIMEOUT,
        durability: Durability = NO_WAIT,
        unsigned_before: int = 1,
    ) -> None:
        """`durability`: how many replicas must acknowledge each entry before it counts as
        written (see `bot.adapters.redis.durability`)."""
        if unsigned_before < 1:
            raise ValueError("unsigned_before must be >= 1")
        if hmac_key is not None and keyring is not None:
            raise ValueError("pass hmac_key or keyring, not both")
        if hmac_key is not None:
            keyring = AuditKeyring({DEFAULT_KEY_ID: hmac_key}, DEFAULT_KEY_ID)
        self._redis = redis_client
        self._keys = keys
        self._clock = clock or _utc_now
        self._keyring = keyring
        self._append_timeout = append_timeout
        self._unsigned_before = unsigned_before
        self._durability = durability
        self._tip_script = redis_client.register_script(_TIP_LUA)
        self._append_script = redis_client.register_script(audited_lua(_APPEND_BODY))
        self._trim_script = redis_client.register_script(_TRIM_LUA)
        # Last tip this process saw; lets an uncontended append succeed in one round trip.
        self._tip: _Tip | None = None

    @property
    def chain_keys(self) -> list[str]:
        """The three keys an audited script takes last: stream, head, anchor."""
        return [self._keys.audit, self._keys.audit_head, self._keys.audit_anchor]

    # -- writing -------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> AuditEntry:
        """Record `event` at the end of the chain and return the stored entry.

        Raises `StoreUnavailable` if Redis fails or other writers keep winning the chain's
        tip for `append_timeout` seconds. After a Redis timeout the entry may or may not
        have been written.
        """
        done = self.run_audited(self._append_script, keys=(), args=(), events={"append": event})
        if done.entry is None:  # the append body always records its entry
            raise StoreCorrupt("audit append", cause="UnexpectedReply")
        return done.entry

    def run_audited(
        self,
        script: Script,
        *,
        keys: Sequence[str],
        args: Sequence[str | int | float],
        events: Mapping[str, AuditEvent],
        operation: str = "audit append",
    ) -> AuditedReply:
        """Run a script made with `audited_lua()`, so that its change and its audit entry are
        stored together: the body calls `audit_record(status)` for the status it reached,
        and the entry prepared from `events[status]` is written in the same atomic run (no
        entry if the body records nothing or `events` has no such status).

        Entries are prepared on the tip this process last saw; if another writer moved it,
        the script changes nothing and returns at once, and the entries are prepared again
        (for at most `append_timeout` seconds). So the body runs to completion exactly once
        per call, unless Redis fails: then `StoreUnavailable` is raised, and after a timeout
        the body and its entry may or may not have been stored (together). With a
        `durability` that needs replicas, the reply only returns once they hold the change and
        its entry; `NotDurable` (a `StoreUnavailable`) says they did not in time, and the
        caller must not act on it.
        """
        all_keys = [*keys, *self.chain_keys]
        tip = self._tip
        deadline = time.monotonic() + self._append_timeout
        while True:
            if tip is None:
                tip = self._read_tip(operation)
            plan, prepared = self._prepare(tip, events, operation)
            script_args = [*args, plan]

            def write(client: Any, script_args: list[Any] = script_args) -> Any:
                return script(keys=all_keys, args=script_args, client=client)

            reply = self._durability.write(self._redis, operation, write)
            if not isinstance(reply, list) or len(reply) < 2:
                raise StoreCorrupt(operation, cause="UnexpectedReply")
            status = _text(reply[0])
            if status == "audit_ok":
                written = None if len(reply) < 3 or reply[2] is None else _text(reply[2])
                entry = prepared.get(written) if written is not None else None
                if entry is not None:
                    self._tip = self._own_tip(entry)
                    metrics().audit_written(entry.event)
                return AuditedReply(reply=reply[1], status=written, entry=entry)
            if status != "audit_conflict":
                raise StoreCorrupt(operation, cause="UnexpectedReply")
            tip = _Tip(*(_text(part) for part in reply[1:7]))
            self._tip = tip
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"{operation} (chain contended)")

    def trim(
        self,
        max_entries: int | None = None,
        max_age: timedelta | None = None,
        *,
        reason: str = DEFAULT_TRIM_REASON,
    ) -> TrimResult:
        """Delete old entries, keeping the rest verifiable.

        Keeps at most `max_entries` entries and/or only entries whose time is within
        `max_age` of now (whichever removes more). Before deleting, the entries to be
        deleted and the current anchor are verified: if they fail, `AuditChainBroken` is
        raised and nothing is removed. The anchor, now a signed record of this cut (last
        removed entry, first removed seq, time, `reason`), is written atomically with it.
        """
        if max_entries is not None and max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        if max_entries is None and max_age is None:
            return TrimResult(removed=0)
        with redis_errors("audit trim"):
            for _ in range(3):
                anchor = self._read_record(self._keys.audit_anchor)
                last_removed = self._trim_point(max_entries, max_age)
                if last_removed is None:
                    return TrimResult(removed=0)
                cut_id, cut_fields = last_removed
                check = self._check_chain(anchor, head=None, stop_at=cut_id)
                if not check.ok:
                    if self._read_record(self._keys.audit_anchor) != anchor:
                        continue  # another replica trimmed meanwhile
                    raise AuditChainBroken(check)
                trimmed_from = int(anchor["seq"]) + 1 if anchor else 1
                record = self._anchor_record(
                    cut_id, cut_fields, trimmed_from=trimmed_from, reason=reason
                )
                args: list[str] = [
                    anchor["seq"] if anchor else "",
                    cut_id,
                    cut_fields["seq"],
                    cut_fields["hash"],
                    _next_stream_id(cut_id),
                ]
                for name, value in record.items():
                    args.extend((name, value))
                reply = self._trim_script(
                    keys=[self._keys.audit, self._keys.audit_anchor], args=args
                )
                status, *rest = [_text(part) for part in reply]
                if status == "ok":
                    return TrimResult(
                        removed=int(rest[0]),
                        anchor_seq=int(cut_fields["seq"]),
                        trimmed_from=trimmed_from,
                    )
                # Another replica trimmed or the entry changed under us: look again.
        raise StoreUnavailable("audit trim (contended)")

    # -- reading -------------------------------------------------------------------------

    def recent(
        self,
        limit: int = 20,
        namespace: str | None = None,
        deployment: str | None = None,
        cluster: str | None = None,
    ) -> list[AuditEntry]:
        """The newest `limit` entries, newest first, optionally for one namespace/deployment
        (and cluster: the same namespace in two clusters is two places)."""
        found: list[AuditEntry] = []
        if limit <= 0:
            return found
        upper = "+"
        while len(found) < limit:
            with redis_errors("audit read"):
                page = self._redis.xrevrange(self._keys.audit, upper, "-", count=_PAGE)
            rows = _rows(page)
            for stream_id, fields in rows:
                if namespace is not None and fields.get("namespace") != namespace:
                    continue
                if deployment is not None and fields.get("deployment") != deployment:
                    continue
                if cluster is not None and fields.get("cluster") != cluster:
                    continue
                found.append(_entry(stream_id, fields))
                if len(found) == limit:
                    break
            if len(rows) < _PAGE:
                break
            upper = "(" + rows[-1][0]
        return found

    def export(self, since: datetime | None = None) -> Iterator[AuditEntry]:
        """Every entry, oldest first, optionally only those recorded at or after `since`.

        Reads page by page, so memory stays flat however long the trail is.
        """
        threshold = _format_time(since) if since is not None else None
        for stream_id, fields in self._scan():
            if threshold is not None and fields.get("time", "") < threshold:
                continue
            yield _entry(stream_id, fields)

    def verify(
        self, checkpoint: tuple[int, str] | None = None, *, unsigned_before: int | None = None
    ) -> VerifyResult:
        """Check the whole retained chain, from the anchor (or genesis) to the head, and
        authenticate the head and the anchor (with a key).

        `checkpoint` is a (seq, hash) seen earlier, e.g. the head a previous run printed and
        kept outside Redis: the trail must still reach that seq, with that hash if retained.
        This catches what nothing in Redis can: a rollback to an older genuine head.
        `unsigned_before` overrides the one given at construction (with a key: the first seq
        that must be signed).
        """
        if unsigned_before is not None and unsigned_before < 1:
            raise ValueError("unsigned_before must be >= 1")
        unsigned_limit = unsigned_before or self._unsigned_before
        result = VerifyResult(ok=True, checked=0)
        with redis_errors("audit verify"):
            # The anchor, the head, the stream's counters and the first page are read in one
            # transaction, so they agree. A trim that overtakes a long scan later deletes
            # entries this pass has not read yet; that is not tampering, so look again (trims
            # are rare).
            for _ in range(5):
                with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hgetall(self._keys.audit_anchor)
                    pipe.hgetall(self._keys.audit_head)
                    pipe.xinfo_stream(self._keys.audit)
                    pipe.xrange(self._keys.audit, "-", "+", count=_PAGE)
                    anchor_raw, head_raw, info_raw, first_page = pipe.execute(raise_on_error=False)
                for reply in (anchor_raw, head_raw, first_page):
                    if isinstance(reply, Exception):
                        raise reply
                anchor, head = _record(anchor_raw), _record(head_raw)
                info = _StreamInfo.of(info_raw)
                if head is None and anchor is None:
                    # Nothing written yet when the pass started; appends may land during it.
                    head = {"seq": "0", "hash": GENESIS_HASH, "id": ""}
                result = self._check_chain(
                    anchor,
                    head=head,
                    stop_at=None,
                    first_page=_rows(first_page),
                    info=info,
                    checkpoint=checkpoint,
                    unsigned_before=unsigned_limit,
                )
                if result.ok or self._read_record(self._keys.audit_anchor) == anchor:
                    return result
        return result

    # -- internals -----------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the audit clock must return timezone-aware datetimes")
        return now

    def _read_tip(self, operation: str) -> _Tip:
        with redis_errors(operation):
            reply = self._tip_script(keys=self.chain_keys)
        return _Tip(*(_text(part) for part in reply))

    def _prepare(
        self, tip: _Tip, events: Mapping[str, AuditEvent], operation: str = "audit append"
    ) -> tuple[str, dict[str, AuditEntry]]:
        """The plan an audited script takes as its last argument, and the entries in it."""
        if not _is_seq(tip.seq) or not _HEX64.fullmatch(tip.hash):
            # Chaining onto a damaged head would hide the damage; an operator must look.
            log.error("audit trail: the head record is malformed; refusing to chain onto it")
            raise StoreCorrupt(operation, cause="MalformedHead")
        if tip.kid and self._keyring is None:
            # An unkeyed entry after keyed ones is what a forger would write: refuse to.
            log.error(
                "audit trail: the head is signed with key id %r but no audit HMAC key is "
                "configured (ROLLOUT_BOT_AUDIT_HMAC_KEY or ROLLOUT_BOT_AUDIT_HMAC_KEYS); "
                "refusing to write unkeyed entries after keyed ones",
                tip.kid,
            )
            raise StoreCorrupt(operation, cause="HmacKeyRequired")
        untrusted = self._untrusted_tip(tip)
        if untrusted is not None:
            # Signing on top of a head the bot cannot vouch for would make a forgery read as
            # the history from before the key: an operator must look first.
            log.error("audit trail: refusing to append: %s", untrusted)
            raise AuditTrailUntrusted(operation, cause="UntrustedHead")
        now = self._now()
        seq = int(tip.seq) + 1
        stream_id = _stream_id_after(tip.top, tip.id, now)
        moment = _format_time(now)
        plan_entries: dict[str, dict[str, list[str] | str]] = {}
        prepared: dict[str, AuditEntry] = {}
        for status, event in events.items():
            fields = _flatten(event, seq=seq, time=moment, prev_hash=tip.hash)
            head = {"seq": str(seq), "id": stream_id}
            if self._keyring is not None:
                fields["kid"] = self._keyring.signing_kid
                head["kid"] = self._keyring.signing_kid
                if not tip.kid:
                    # The first entry with a key id: says (under the MAC) that the entries
                    # before it are unkeyed, so an unsigned anchor before it is no forgery.
                    fields["key_start"] = "1"
            digest = _digest(fields, self._keyring.signing_key if self._keyring else None)
            head["hash"] = digest
            if self._keyring is not None:
                head["mac"] = _record_mac("head", head, self._keyring.signing_key)
            plan_entries[status] = {
                "hash": digest,
                "fields": _pairs({**fields, "hash": digest}),
                "head": _pairs(head),
            }
            prepared[status] = _entry(stream_id, {**fields, "hash": digest})
        plan = {
            "expect_seq": tip.seq,
            "expect_hash": tip.hash,
            "seq": str(seq),
            "id": stream_id,
            # cjson turns an empty object into an empty array; pairs() walks both.
            "entries": plan_entries,
        }
        return _canonical(plan), prepared

    def _own_tip(self, entry: AuditEntry) -> _Tip:
        """The tip after this process wrote `entry` (and its head)."""
        if self._keyring is None:
            return _Tip(str(entry.seq), entry.hash, entry.stream_id, entry.stream_id, "")
        kid = self._keyring.signing_kid
        head = {"seq": str(entry.seq), "id": entry.stream_id, "kid": kid, "hash": entry.hash}
        mac = _record_mac("head", head, self._keyring.signing_key)
        return _Tip(str(entry.seq), entry.hash, entry.stream_id, entry.stream_id, kid, mac)

    def _untrusted_tip(self, tip: _Tip) -> str | None:
        """With a key: why the head an entry would chain onto cannot be vouched for, or None."""
        keyring = self._keyring
        if keyring is None:
            return None
        seq = int(tip.seq)
        if tip.kid:
            key = keyring.keys.get(tip.kid)
            if key is None:
                return (
                    f"the head (seq {seq}) is signed with key id {tip.kid!r}, which is not "
                    "configured (ROLLOUT_BOT_AUDIT_HMAC_KEYS)"
                )
            head = {"seq": tip.seq, "id": tip.id, "kid": tip.kid, "hash": tip.hash}
            if not hmac.compare_digest(tip.mac, _record_mac("head", head, key)):
                return f"the head (seq {seq}) is not authentic: its MAC does not match"
            return None
        if seq == 0:
            if _stream_id_key(tip.top) != (0, 0):
                return "the head record is missing, but the stream has had entries"
            return None  # a new trail: its first entry is signed
        if seq >= self._unsigned_before and not self._signed_before_key_ids(tip):
            return (
                f"the head (seq {seq}) is not signed, but an audit key is configured and "
                f"unsigned entries are accepted only below seq {self._unsigned_before} "
                "(ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE). If the trail up to seq "
                f"{seq} was written before the key was configured, check it with `rollout-bot "
                f"audit verify --unsigned-before {seq + 1}` and then set "
                f"ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE={seq + 1}"
            )
        return None

    def _signed_before_key_ids(self, tip: _Tip) -> bool:
        """Is the unsigned head's entry one signed before entries named their key (under
        ROLLOUT_BOT_AUDIT_HMAC_KEY, no `kid`)? Such a head is genuine; the next append signs it."""
        legacy = self._keyring.keys.get(DEFAULT_KEY_ID) if self._keyring is not None else None
        if legacy is None:
            return False
        with redis_errors("audit append"):
            found = _rows(self._redis.xrange(self._keys.audit, tip.id, tip.id))
        if not found:
            return False
        fields = found[0][1]
        return (
            "kid" not in fields
            and fields.get("seq") == tip.seq
            and fields.get("hash") == tip.hash
            and hmac.compare_digest(_digest(fields, legacy), tip.hash)
        )

    def _anchor_record(
        self, cut_id: str, cut_fields: Mapping[str, str], *, trimmed_from: int, reason: str
    ) -> dict[str, str]:
        record = {
            "v": ANCHOR_VERSION,
            "seq": cut_fields["seq"],
            "hash": cut_fields["hash"],
            "id": cut_id,
            "from": str(trimmed_from),
            "time": _format_time(self._now()),
            "reason": reason,
        }
        if self._keyring is not None:
            record["kid"] = self._keyring.signing_kid
            record["mac"] = _record_mac("anchor", record, self._keyring.signing_key)
        return record

    def _read_record(self, key: str) -> dict[str, str] | None:
        return _record(self._redis.hgetall(key))

    def _scan(
        self, first_page: list[tuple[str, dict[str, str]]] | None = None
    ) -> Iterator[tuple[str, dict[str, str]]]:
        """Entries oldest first, page by page; `first_page` if already read."""
        lower = "-"
        while True:
            if first_page is not None:
                rows, first_page = first_page, None
            else:
                with redis_errors("audit read"):
                    page = self._redis.xrange(self._keys.audit, lower, "+", count=_PAGE)
                rows = _rows(page)
            yield from rows
            if len(rows) < _PAGE:
                return
            lower = "(" + rows[-1][0]

    def _trim_point(
        self, max_entries: int | None, max_age: timedelta | None
    ) -> tuple[str, dict[str, str]] | None:
        """The newest entry that retention removes (it becomes the anchor), if any."""
        candidates: list[tuple[str, dict[str, str]]] = []
        if max_entries is not None:
            # Appends only add at the end, so counting from the oldest entry stays right
            # while other replicas write (they just make us keep a few more).
            excess = self._redis.xlen(self._keys.audit) - max_entries
            if excess > 0:
                for index, row in enumerate(self._scan()):
                    if index == excess - 1:
                        candidates.append(row)
                        break
        if max_age is not None:
            cutoff = _format_time(self._now() - max_age)
            previous: tuple[str, dict[str, str]] | None = None
            for row in self._scan():
                if row[1].get("time", "") >= cutoff:
                    break
                previous = row
            if previous is not None:
                candidates.append(previous)
        if not candidates:
            return None
        return max(candidates, key=lambda row: _stream_id_key(row[0]))

    def _check_chain(
        self,
        anchor: dict[str, str] | None,
        *,
        head: dict[str, str] | None,
        stop_at: str | None,
        first_page: list[tuple[str, dict[str, str]]] | None = None,
        info: _StreamInfo | None = None,
        checkpoint: tuple[int, str] | None = None,
        unsigned_before: int | None = None,
    ) -> VerifyResult:
        """Walk the stream from the oldest entry, then check the anchor and the head.

        With `stop_at`, check only up to and including that stream id and the anchor (and
        ignore the head); otherwise check everything, the head and the stream's counters.
        """
        chain = _Chain()
        if self._keyring is not None:
            chain.unsigned_before = unsigned_before or self._unsigned_before
        if self._keyring is None and stop_at is None:
            chain.warnings.append(_NO_KEY_WARNING)
        if anchor is not None and not _is_seq(anchor.get("seq", "")):
            return chain.failed(None, "the anchor record is malformed")
        anchor_seq = int(anchor["seq"]) if anchor else 0
        expected_seq = anchor_seq + 1
        expected_prev = anchor.get("hash", "") if anchor else GENESIS_HASH
        head_seq: int | None = None
        if head is not None:
            if not _is_seq(head.get("seq", "")):
                return chain.failed(None, "the head record is malformed")
            head_seq = int(head["seq"])
            if head_seq < anchor_seq:
                return chain.failed(None, "the head is older than the trim anchor")

        head_fields: dict[str, str] | None = None
        head_stream_id = ""
        last_stream_id = anchor.get("id", "0-0") if anchor else "0-0"
        past_head: str | None = None  # stream id of the first entry after the head's
        reached = False
        for stream_id, fields in self._scan(first_page):
            chain.checked += 1
            problem = self._check_entry(fields, expected_seq, expected_prev, chain)
            if problem is not None:
                return chain.failed(stream_id, *problem)
            if head_seq == expected_seq:
                head_fields, head_stream_id = fields, stream_id
                if head is not None and fields["hash"] != head.get("hash"):
                    return chain.failed(
                        stream_id, f"the head records a different hash for seq {expected_seq}"
                    )
            if head_seq is not None and expected_seq == head_seq + 1:
                past_head = stream_id
            if (
                checkpoint is not None
                and checkpoint[0] == expected_seq
                and fields["hash"] != checkpoint[1]
            ):
                return chain.failed(
                    stream_id, f"entry seq {expected_seq} does not match the checkpoint"
                )
            expected_seq += 1
            expected_prev = fields["hash"]
            last_stream_id = stream_id
            if stop_at is not None and stream_id == stop_at:
                reached = True
                break

        if stop_at is not None and not reached:
            return chain.failed(stop_at, "entry disappeared during the check")
        anchor_failure = self._anchor_failure(anchor, chain)
        if anchor_failure is not None or stop_at is not None:
            return anchor_failure or chain.passed()

        last_seq = expected_seq - 1
        if checkpoint is not None:
            if checkpoint[0] > last_seq:
                return chain.failed(
                    None,
                    f"{_seqs(last_seq + 1, checkpoint[0])} missing at the newest end: the "
                    f"checkpoint names seq {checkpoint[0]}, but the trail ends at seq {last_seq} "
                    "(rolled back)",
                    (last_seq + 1, checkpoint[0], "newest"),
                )
            if (
                anchor is not None
                and checkpoint[0] == anchor_seq
                and anchor.get("hash") != checkpoint[1]
            ):
                return chain.failed(None, "the anchor does not match the checkpoint")
        if head is None or head_seq is None:
            if chain.checked or anchor is not None:
                return chain.failed(None, "the head record is missing (it names the last entry)")
            return chain.passed()
        if head_seq > last_seq:
            return chain.failed(
                head.get("id") or None,
                f"entries after seq {last_seq} up to seq {head_seq} (the head) are missing "
                "at the newest end",
                (last_seq + 1, head_seq, "newest"),
            )
        if head_seq < last_seq:
            # Appends move the head in the same script that adds the entry, so entries past
            # the head seen at the start are fine only if the head has moved on since.
            now_head = self._read_record(self._keys.audit_head)
            if now_head is None:
                return chain.failed(None, "the head record is missing (it names the last entry)")
            if not _is_seq(now_head.get("seq", "")) or int(now_head["seq"]) < last_seq:
                return chain.failed(
                    past_head,
                    f"the head names seq {head_seq} but the stream goes on to seq {last_seq}",
                )
        if head_fields is None and anchor is not None and head.get("hash") != anchor.get("hash"):
            # Not seen means the head names the anchor's seq (everything after was trimmed).
            return chain.failed(None, "the head does not match the anchor")
        if head_seq > 0:
            why = self._record_problem("head", head, head_fields, chain)
            if why is None and head_fields is not None and head.get("id", "") != head_stream_id:
                why = (
                    f"names stream id {head.get('id')!r} for seq {head_seq}, not {head_stream_id!r}"
                )
            if why is not None:
                upper = info.entries_added if info and info.entries_added > head_seq else None
                return chain.failed(
                    info.max_deleted if info and info.deleted_after(head.get("id", "")) else None,
                    f"{_seqs(head_seq + 1, upper)} missing at the newest end: the head record "
                    f"{why}",
                    (head_seq + 1, upper, "newest"),
                )
        if head_seq > 0:
            chain.head = (head_seq, head.get("hash", ""))
        if info is not None:
            return self._counters_failure(info, anchor, last_seq, last_stream_id, chain)
        return chain.passed()

    def _check_entry(
        self, fields: Mapping[str, str], expected_seq: int, expected_prev: str, chain: _Chain
    ) -> tuple[str, tuple[int, int | None, MissingAt] | None] | None:
        seq_text, stored_hash = fields.get("seq", ""), fields.get("hash", "")
        if not _is_seq(seq_text) or not _HEX64.fullmatch(stored_hash):
            return "malformed entry: seq or hash is missing or invalid", None
        kid = fields.get("kid")
        keyring = self._keyring
        signed_by: str | None = None
        if kid is not None:
            key = keyring.keys.get(kid) if keyring is not None else None
            if key is None:
                return (
                    f"entry seq {seq_text} is signed with key id {kid!r}, which is not "
                    "configured (ROLLOUT_BOT_AUDIT_HMAC_KEYS)",
                    None,
                )
            authentic = hmac.compare_digest(_digest(fields, key), stored_hash)
            signed_by = kid
        else:
            authentic = hmac.compare_digest(_digest(fields, None), stored_hash)
            legacy = keyring.keys.get(DEFAULT_KEY_ID) if keyring is not None else None
            if not authentic and legacy is not None:
                # Written before entries named their key, under ROLLOUT_BOT_AUDIT_HMAC_KEY.
                authentic = hmac.compare_digest(_digest(fields, legacy), stored_hash)
                signed_by = DEFAULT_KEY_ID if authentic else None
        if not authentic:
            return f"entry seq {seq_text} was altered: its hash does not match its fields", None
        seq = int(seq_text)
        if seq > expected_seq:
            missing = _seqs(expected_seq, seq - 1)
            if chain.checked == 1:
                return (
                    f"{missing} missing at the oldest end, before this entry (removed; no "
                    "retention record covers it)",
                    (expected_seq, seq - 1, "oldest"),
                )
            return f"{missing} missing before this entry (removed)", (
                expected_seq,
                seq - 1,
                "middle",
            )
        if seq < expected_seq:
            return (
                f"seq {seq} out of order, expected {expected_seq} "
                "(entry inserted, duplicated or reordered)",
                None,
            )
        if fields.get("prev_hash") != expected_prev:
            return (
                f"entry seq {seq} does not chain to the previous entry "
                "(an entry was inserted, removed or replaced before it)",
                None,
            )
        if signed_by is None and chain.keyed_from is not None:
            return (
                f"entry seq {seq} is not keyed, but the trail is keyed from seq "
                f"{chain.keyed_from}: the bot never writes an unkeyed entry after keyed ones",
                None,
            )
        if signed_by is None and chain.unsigned_before is not None and seq >= chain.unsigned_before:
            return (
                f"entry seq {seq} is not signed with the audit key: with a key configured, "
                f"unsigned entries are accepted only below seq {chain.unsigned_before} "
                "(ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE or --unsigned-before); a trail swapped "
                "for an unsigned one looks exactly like this",
                None,
            )
        if chain.first_seq is None:
            chain.first_seq, chain.first_fields = seq, dict(fields)
        chain.last_seq = seq
        if signed_by is not None:
            chain.keyed_from = chain.keyed_from or seq
            chain.key_ids.add(signed_by)
        return None

    def _anchor_failure(self, anchor: dict[str, str] | None, chain: _Chain) -> VerifyResult | None:
        """The anchor must be an authentic retention record (with a key: signed)."""
        if anchor is None:
            return None
        why = self._record_problem("anchor", anchor, chain.first_fields, chain)
        if why is None:
            return None
        anchor_seq = int(anchor["seq"])
        return chain.failed(
            anchor.get("id") or None,
            f"{_seqs(_trimmed_from(anchor), anchor_seq)} missing at the oldest end: the anchor "
            f"record {why}, so no signed retention record explains the gap",
            (_trimmed_from(anchor), anchor_seq, "oldest"),
        )

    def _record_problem(
        self,
        kind: str,
        record: Mapping[str, str],
        entry_fields: Mapping[str, str] | None,
        chain: _Chain,
    ) -> str | None:
        """Why the head or anchor record is not authentic, or None."""
        mac = record.get("mac")
        keyring = self._keyring
        if keyring is None:
            return None  # nothing to check it with; the result carries the warning
        if mac is not None:
            kid = record.get("kid", "")
            key = keyring.keys.get(kid)
            if key is None:
                return f"is signed with key id {kid!r}, which is not configured"
            if not hmac.compare_digest(mac, _record_mac(kind, record, key)):
                return "is not authentic (its MAC does not match): it was moved or forged"
            return None
        record_seq = int(record["seq"]) if _is_seq(record.get("seq", "")) else 0
        # The entry the record sits next to (the head's own, the first after the anchor) was
        # signed: a record written before key ids existed. Otherwise nothing vouches for it.
        entry_seq = entry_fields.get("seq", "") if entry_fields is not None else ""
        signed_entry = (
            chain.keyed_from is not None
            and _is_seq(entry_seq)
            and chain.keyed_from <= int(entry_seq)
        )
        if (
            chain.unsigned_before is not None
            and record_seq >= chain.unsigned_before
            and not signed_entry
        ):
            return (
                f"(seq {record_seq}) is not signed: with a key configured, an unsigned {kind} is "
                f"accepted only below seq {chain.unsigned_before} "
                "(ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE or --unsigned-before)"
            )
        if (
            entry_fields is not None
            and "kid" in entry_fields
            and (kind == "head" or "key_start" not in entry_fields)
        ):
            return "is not signed although the trail is keyed there: it was moved or forged"
        chain.warnings.append(
            f"the {kind} record is not signed (written before the audit key was configured), "
            "so it cannot be authenticated until the bot writes it again"
        )
        return None

    def _counters_failure(
        self,
        info: _StreamInfo,
        anchor: dict[str, str] | None,
        last_seq: int,
        last_stream_id: str,
        chain: _Chain,
    ) -> VerifyResult:
        """Redis's own stream counters: retention trims with XTRIM, which leaves the highest
        deleted id alone, and every entry ever added is counted. Detects deletions that a
        consistent-looking head or anchor hides (without a key, or with a replayed record)."""
        if not info.exists:
            return chain.passed()
        deleted_newest = info.deleted_after(last_stream_id)
        if info.entries_added > last_seq or deleted_newest:
            upper = info.entries_added if info.entries_added > last_seq else None
            how = (
                f"Redis counts {info.entries_added} entries added to the stream"
                if upper is not None
                else f"stream id {info.max_deleted} after the last entry was deleted with XDEL"
            )
            return chain.failed(
                info.max_deleted if deleted_newest else None,
                f"{_seqs(last_seq + 1, upper)} missing at the newest end: {how}, but the chain "
                f"ends at seq {last_seq} (entries deleted and the head moved back)",
                (last_seq + 1, upper, "newest"),
            )
        if info.max_deleted_key == (0, 0):
            return chain.passed()
        if anchor is not None and not info.deleted_after(anchor.get("id", "0-0")):
            anchor_seq = int(anchor["seq"])
            return chain.failed(
                info.max_deleted,
                f"{_seqs(_trimmed_from(anchor), anchor_seq)} missing at the oldest end: stream "
                f"id {info.max_deleted} was deleted with XDEL, not trimmed by retention (the "
                "anchor was moved over it)",
                (_trimmed_from(anchor), anchor_seq, "oldest"),
            )
        return chain.failed(
            info.max_deleted,
            f"stream id {info.max_deleted} was deleted with XDEL outside retention",
        )


class _Chain:
    """What a walk over the chain has established so far."""

    def __init__(self) -> None:
        self.checked = 0
        self.first_seq: int | None = None
        self.first_fields: dict[str, str] | None = None
        self.last_seq: int | None = None
        self.keyed_from: int | None = None
        self.key_ids: set[str] = set()
        self.warnings: list[str] = []
        self.head: tuple[int, str] | None = None
        #: With a key: the first seq that must be signed (entries below it may be unsigned).
        self.unsigned_before: int | None = None

    def passed(self) -> VerifyResult:
        return self._result(True, None, None, None)

    def failed(
        self,
        first_bad: str | None,
        problem: str,
        missing: tuple[int, int | None, MissingAt] | None = None,
    ) -> VerifyResult:
        return self._result(False, first_bad, problem, missing)

    def _result(
        self,
        ok: bool,
        first_bad: str | None,
        problem: str | None,
        missing: tuple[int, int | None, MissingAt] | None,
    ) -> VerifyResult:
        return VerifyResult(
            ok=ok,
            checked=self.checked,
            first_bad=first_bad,
            problem=problem,
            missing_from=missing[0] if missing else None,
            missing_to=missing[1] if missing else None,
            missing_at=missing[2] if missing else None,
            first_seq=self.first_seq,
            last_seq=self.last_seq,
            keyed_from=self.keyed_from,
            key_ids=tuple(sorted(self.key_ids)),
            warnings=tuple(self.warnings),
            head_seq=self.head[0] if ok and self.head else None,
            head_hash=self.head[1] if ok and self.head else None,
        )


@dataclass(frozen=True, slots=True)
class _StreamInfo:
    exists: bool
    entries_added: int = 0
    max_deleted: str = "0-0"

    @classmethod
    def of(cls, reply: Any) -> _StreamInfo:
        if not isinstance(reply, dict):
            return cls(exists=False)  # no stream (XINFO answers an error)
        values = {_text(k): v for k, v in reply.items()}
        added = values.get("entries-added")
        deleted = values.get("max-deleted-entry-id")
        return cls(
            exists=True,
            entries_added=int(added) if isinstance(added, int) else 0,
            max_deleted=_text(deleted) if deleted is not None else "0-0",
        )

    @property
    def max_deleted_key(self) -> tuple[int, int]:
        return _stream_id_key(self.max_deleted)

    def deleted_after(self, stream_id: str) -> bool:
        """Was an entry with an id above `stream_id` deleted with XDEL?"""
        return self.max_deleted_key > _stream_id_key(stream_id or "0-0")


# -- helpers -------------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SEQ = re.compile(r"[0-9]{1,19}")
_STREAM_ID = re.compile(r"([0-9]{1,19})(?:-([0-9]{1,19}))?")
_JSON_FIELDS = ("parameters", "images_before", "images_after")
_TEXT_FIELDS = (
    "event",
    "user_id",
    "user_name",
    "channel",
    "action",
    "cluster",
    "namespace",
    "deployment",
    "reason",
    "approval_id",
    "outcome",
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _format_time(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601, so string order is time order."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(fields: Mapping[str, str], key: bytes | None) -> str:
    body = _canonical({name: value for name, value in fields.items() if name != "hash"})
    data = body.encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _flatten(event: AuditEvent, *, seq: int, time: str, prev_hash: str) -> dict[str, str]:
    fields = {
        "v": SCHEMA_VERSION,
        "seq": str(seq),
        "time": time,
        "prev_hash": prev_hash,
    }
    for name in _TEXT_FIELDS:
        fields[name] = getattr(event, name)
    for name in _JSON_FIELDS:
        fields[name] = _canonical(getattr(event, name))
    for name in ("revision_before", "revision_after"):
        revision = getattr(event, name)
        fields[name] = "" if revision is None else str(revision)
    return fields


def _entry(stream_id: str, fields: Mapping[str, str]) -> AuditEntry:
    """Read an entry back without failing on a malformed one (verify() reports those)."""
    values: dict[str, Any] = {name: fields.get(name, "") for name in _TEXT_FIELDS}
    for name in _JSON_FIELDS:
        values[name] = _string_map(fields.get(name, "{}"))
    for name in ("revision_before", "revision_after"):
        text = fields.get(name, "")
        values[name] = int(text) if _SEQ.fullmatch(text) else None
    seq_text = fields.get("seq", "")
    return AuditEntry.model_construct(
        **values,
        time=_parse_time(fields.get("time", "")),
        seq=int(seq_text) if _SEQ.fullmatch(seq_text) else -1,
        prev_hash=fields.get("prev_hash", ""),
        hash=fields.get("hash", ""),
        kid=fields.get("kid", ""),
        stream_id=stream_id,
    )


def _string_map(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"<unreadable>": text}
    if not isinstance(value, dict):
        return {"<unreadable>": text}
    return {str(k): str(v) for k, v in value.items()}


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _pairs(fields: Mapping[str, str]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat.extend((name, value))
    return flat


def _record(values: Mapping[Any, Any] | None) -> dict[str, str] | None:
    """A head or anchor hash as text; None if it does not exist."""
    if not values:
        return None
    return {_text(k): _text(v) for k, v in values.items()}


def _record_mac(kind: str, record: Mapping[str, str], key: bytes) -> str:
    """HMAC of a head or anchor record: every field but `mac`, and which record it is (so a
    head cannot be passed off as an anchor)."""
    body = {name: value for name, value in record.items() if name != "mac"}
    body["record"] = kind
    return hmac.new(key, _canonical(body).encode("utf-8"), hashlib.sha256).hexdigest()


def _seqs(first: int, last: int | None) -> str:
    if last is None:
        return f"seq {first} onwards"
    return f"seq {first}" if first == last else f"seq {first} to {last}"


def _trimmed_from(anchor: Mapping[str, str]) -> int:
    """The first seq the anchor's trim claims to have removed (1 if it does not say)."""
    text = anchor.get("from", "")
    if _is_seq(text) and 1 <= int(text) <= int(anchor["seq"]):
        return int(text)
    return 1


def _stream_id_after(top: str, tip_id: str, now: datetime) -> str:
    """A stream id above both `top` and `tip_id`, from `now` if the clock allows."""
    last = max(_stream_id_key(top), _stream_id_key(tip_id))
    millis = int(now.timestamp() * 1000)
    if millis > last[0]:
        return f"{millis}-0"
    return f"{last[0]}-{last[1] + 1}"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _rows(page: Iterable[Any] | None) -> list[tuple[str, dict[str, str]]]:
    rows: list[tuple[str, dict[str, str]]] = []
    for stream_id, fields in page or ():
        if stream_id is None:
            continue
        decoded = {_text(k): _text(v) for k, v in (fields or {}).items()}
        rows.append((_text(stream_id), decoded))
    return rows


def _is_seq(text: str) -> bool:
    return bool(_SEQ.fullmatch(text))


def _stream_id_key(stream_id: str) -> tuple[int, int]:
    """A stream id as numbers, for ordering; (0, 0) for anything malformed."""
    match = _STREAM_ID.fullmatch(stream_id)
    if match is None:
        return 0, 0
    return int(match[1]), int(match[2] or "0")


def _next_stream_id(stream_id: str) -> str:
    millis, counter = _stream_id_key(stream_id)
    return f"{millis}-{counter + 1}"

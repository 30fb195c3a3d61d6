"""Tamper-evident audit trail on a Redis Stream: the store's reads and writes.

The chain itself (entry layout, hashes, MACs, what verification accepts) is pure domain code
in `bot.domain.audit_chain` and `bot.domain.audit_chain_verify`; this module only moves
records in and out of Redis and asks the domain for every decision.

Two records sit beside the stream:

* `{prefix}:audit:head`: seq, hash and stream id of the last entry. With a key it also
  carries `kid` and `mac`, an HMAC over (record type, seq, hash, stream id, kid), so moving
  the head back over deleted entries needs the key.
* `{prefix}:audit:anchor`: the retention record. `trim` writes it atomically with the cut:
  seq, hash and stream id of the last entry removed, the first seq that trim removed
  (`from`), when (`time`) and why (`reason`); signed like the head. `verify()` starts from
  it instead of from genesis.

Stream ids are chosen by the writer (never `*`), so the head's MAC can cover the id. Without
a key, what `verify()` still catches is naive deletion: Redis counts the entries ever added to
the stream and remembers the highest id deleted with XDEL (retention uses XTRIM, which does
not set it). With a key, a rollback to an *older genuine* head after rebuilding the stream is
only visible against an outside copy of the head: `verify(checkpoint=...)`, fed with the head
a previous `rollout-bot audit verify` printed. The bot refuses to append to a head it cannot
vouch for (`AuditTrailUntrusted`), so it never signs on top of a forgery.

Writes are serialised without a lock (see `bot.adapters.redis.audit_lua`): on a conflict the
entry is prepared again on the new tip, for at most `append_timeout` seconds. Two bot
replicas therefore never fork the chain. `run_audited()` prepares the entries for a script
made with `audited_lua()`, runs it and retries on a moved tip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import redis
from redis.commands.core import Script

from bot.adapters.redis.audit_lua import APPEND_BODY, TIP_LUA, TRIM_LUA, audited_lua
from bot.adapters.redis.audit_replies import (
    entry_rows,
    flat_pairs,
    stream_counters,
    text_of,
    text_record,
)
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
    TrimResult,
    VerifyResult,
)
from bot.domain.audit_chain import (
    GENESIS_HASH,
    ChainTip,
    anchor_record,
    canonical,
    format_time,
    head_record,
    next_stream_id,
    read_entry,
    seal_entry,
    stream_id_after,
    stream_id_key,
    untrusted_tip,
)
from bot.domain.audit_chain_verify import StreamCounters, verify_chain
from bot.observability.metrics import metrics

__all__ = [
    "AuditChainBroken",
    "AuditEntry",
    "AuditEvent",
    "AuditEventKind",
    "AuditKeyring",
    "AuditedReply",
    "RedisAuditLog",
    "TrimResult",
    "VerifyResult",
]

log = logging.getLogger(__name__)

DEFAULT_TRIM_REASON: Final = "retention"

# One XRANGE page. 500 entries of ~1 KB keep a reply well under a megabyte.
_PAGE = 500
# Conflicts happen only while other replicas append. A conflict reply carries the new tip,
# so the retry is immediate (no sleep: sleeping loses every race to writers that do not,
# which starved one writer for seconds in a stress test). One round trip is well under a
# millisecond; if 2 s of retries cannot win the tip, something is writing in a loop and it
# is better to report the store busy than to hold a worker thread.
_APPEND_TIMEOUT = 2.0

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
        self._tip_script = redis_client.register_script(TIP_LUA)
        self._append_script = redis_client.register_script(audited_lua(APPEND_BODY))
        self._trim_script = redis_client.register_script(TRIM_LUA)
        # Last tip this process saw; lets an uncontended append succeed in one round trip.
        self._tip: ChainTip | None = None

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
            status = text_of(reply[0])
            if status == "audit_ok":
                written = None if len(reply) < 3 or reply[2] is None else text_of(reply[2])
                entry = prepared.get(written) if written is not None else None
                if entry is not None:
                    self._tip = self._own_tip(entry)
                    metrics().audit_written(entry.event)
                return AuditedReply(reply=reply[1], status=written, entry=entry)
            if status != "audit_conflict":
                raise StoreCorrupt(operation, cause="UnexpectedReply")
            tip = ChainTip(*(text_of(part) for part in reply[1:7]))
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
                record = anchor_record(
                    cut_id,
                    cut_fields,
                    trimmed_from=trimmed_from,
                    time=format_time(self._now()),
                    reason=reason,
                    keyring=self._keyring,
                )
                args: list[str] = [
                    anchor["seq"] if anchor else "",
                    cut_id,
                    cut_fields["seq"],
                    cut_fields["hash"],
                    next_stream_id(cut_id),
                ]
                for name, value in record.items():
                    args.extend((name, value))
                reply = self._trim_script(
                    keys=[self._keys.audit, self._keys.audit_anchor], args=args
                )
                status, *rest = [text_of(part) for part in reply]
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
            rows = entry_rows(page)
            for stream_id, fields in rows:
                if namespace is not None and fields.get("namespace") != namespace:
                    continue
                if deployment is not None and fields.get("deployment") != deployment:
                    continue
                if cluster is not None and fields.get("cluster") != cluster:
                    continue
                found.append(read_entry(stream_id, fields))
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
        threshold = format_time(since) if since is not None else None
        for stream_id, fields in self._scan():
            if threshold is not None and fields.get("time", "") < threshold:
                continue
            yield read_entry(stream_id, fields)

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
                anchor, head = text_record(anchor_raw), text_record(head_raw)
                info = stream_counters(info_raw)
                if head is None and anchor is None:
                    # Nothing written yet when the pass started; appends may land during it.
                    head = {"seq": "0", "hash": GENESIS_HASH, "id": ""}
                result = self._check_chain(
                    anchor,
                    head=head,
                    stop_at=None,
                    first_page=entry_rows(first_page),
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

    def _read_tip(self, operation: str) -> ChainTip:
        with redis_errors(operation):
            reply = self._tip_script(keys=self.chain_keys)
        return ChainTip(*(text_of(part) for part in reply))

    def _prepare(
        self, tip: ChainTip, events: Mapping[str, AuditEvent], operation: str = "audit append"
    ) -> tuple[str, dict[str, AuditEntry]]:
        """The plan an audited script takes as its last argument, and the entries in it."""
        if not tip.well_formed:
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
        untrusted = untrusted_tip(
            tip, self._keyring, self._unsigned_before, lambda: self._entry_at(tip.id)
        )
        if untrusted is not None:
            # Signing on top of a head the bot cannot vouch for would make a forgery read as
            # the history from before the key: an operator must look first.
            log.error("audit trail: refusing to append: %s", untrusted)
            raise AuditTrailUntrusted(operation, cause="UntrustedHead")
        now = self._now()
        stream_id = stream_id_after(tip.top, tip.id, now)
        moment = format_time(now)
        plan_entries: dict[str, dict[str, list[str] | str]] = {}
        prepared: dict[str, AuditEntry] = {}
        for status, event in events.items():
            sealed = seal_entry(event, tip, stream_id=stream_id, time=moment, keyring=self._keyring)
            plan_entries[status] = {
                "hash": sealed.fields["hash"],
                "fields": flat_pairs(sealed.fields),
                "head": flat_pairs(sealed.head),
            }
            prepared[status] = read_entry(stream_id, sealed.fields)
        plan = {
            "expect_seq": tip.seq,
            "expect_hash": tip.hash,
            "seq": str(int(tip.seq) + 1),
            "id": stream_id,
            # cjson turns an empty object into an empty array; pairs() walks both.
            "entries": plan_entries,
        }
        return canonical(plan), prepared

    def _own_tip(self, entry: AuditEntry) -> ChainTip:
        """The tip after this process wrote `entry` (and its head)."""
        head = head_record(str(entry.seq), entry.stream_id, entry.hash, self._keyring)
        return ChainTip(
            head["seq"],
            head["hash"],
            head["id"],
            entry.stream_id,
            head.get("kid", ""),
            head.get("mac", ""),
        )

    def _entry_at(self, stream_id: str) -> dict[str, str] | None:
        """The stored fields of the entry at `stream_id`, if it is there."""
        with redis_errors("audit append"):
            found = entry_rows(self._redis.xrange(self._keys.audit, stream_id, stream_id))
        return found[0][1] if found else None

    def _read_record(self, key: str) -> dict[str, str] | None:
        return text_record(self._redis.hgetall(key))

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
                rows = entry_rows(page)
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
            cutoff = format_time(self._now() - max_age)
            previous: tuple[str, dict[str, str]] | None = None
            for row in self._scan():
                if row[1].get("time", "") >= cutoff:
                    break
                previous = row
            if previous is not None:
                candidates.append(previous)
        if not candidates:
            return None
        return max(candidates, key=lambda row: stream_id_key(row[0]))

    def _check_chain(
        self,
        anchor: dict[str, str] | None,
        *,
        head: dict[str, str] | None,
        stop_at: str | None,
        first_page: list[tuple[str, dict[str, str]]] | None = None,
        info: StreamCounters | None = None,
        checkpoint: tuple[int, str] | None = None,
        unsigned_before: int | None = None,
    ) -> VerifyResult:
        """Verify the stored chain (see `verify_chain`), reading its entries page by page as
        the walk goes (`first_page` if already read)."""
        return verify_chain(
            self._scan(first_page),
            anchor,
            keyring=self._keyring,
            unsigned_before=unsigned_before or self._unsigned_before,
            head=head,
            stop_at=stop_at,
            read_head=lambda: self._read_record(self._keys.audit_head),
            counters=info,
            checkpoint=checkpoint,
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)

"""Tamper-evident audit trail on a Redis Stream.

Every entry carries `seq` (1, 2, 3 …), `prev_hash` (the previous entry's hash; 64 zeros for
the first) and `hash`, the SHA-256 of the canonical JSON (sorted keys, no whitespace) of all
of the entry's other fields exactly as stored. `{prefix}:audit:head` records the seq, hash
and stream id of the last entry, so removing entries from the end is visible too.

What `verify()` detects, and what it cannot:

* an altered entry (its hash no longer matches its fields), a removed entry (seq gap), an
  inserted or reordered entry (seq or prev_hash out of line), a truncated tail (the head
  names an entry that is gone);
* with plain SHA-256, someone who can write to Redis can still recompute the whole chain
  and the head after a change. Pass `hmac_key` (a secret the bot holds, never stored in
  Redis) to make entries HMAC-SHA256 instead: then forging or re-chaining needs the key.
  Truncating the tail *and* rewriting the head to match, or deleting everything, is only
  visible against an outside copy of the head (an export or a posted checkpoint).

Appends are serialised without a lock: Python computes the entry's hash, and a Lua script
adds the entry and moves the head only if the head is still the one the hash was chained
to (compare-and-set); on a conflict the append is recomputed on the new head, a bounded
number of times. Two bot replicas therefore never fork the chain.

Retention (`trim`) first checks the part it is about to delete, then, in one script,
records the last deleted entry's seq and hash as the anchor and trims the stream;
`verify()` starts from the anchor instead of from genesis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import redis

from bot.adapters.redis.errors import StoreCorrupt, StoreUnavailable, redis_errors
from bot.adapters.redis.keys import Keys
from bot.domain.audit import AuditEntry, AuditEvent, AuditEventKind, TrimResult, VerifyResult
from bot.observability.metrics import metrics

__all__ = [
    "GENESIS_HASH",
    "AuditChainBroken",
    "AuditEntry",
    "AuditEvent",
    "AuditEventKind",
    "RedisAuditLog",
    "TrimResult",
    "VerifyResult",
]

GENESIS_HASH: Final = "0" * 64
# Stored in every entry and covered by the hash, so a future change of the field set or of
# the canonical form can be told apart from tampering.
SCHEMA_VERSION: Final = "1"

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
    """`trim()` refused: the entries it would delete fail verification.

    Trimming them would destroy the evidence, so nothing was removed.
    """

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(
            f"Audit trail failed verification at {result.first_bad}: {result.problem}. "
            "Nothing was trimmed."
        )
        self.result = result


# The chain's tip is the head, or, if the head is missing, the anchor, or genesis.
_TIP_LUA_FN = f"""
local function tip()
  local h = redis.call('HMGET', KEYS[2], 'seq', 'hash')
  if h[1] then return h[1], h[2] end
  local a = redis.call('HMGET', KEYS[3], 'seq', 'hash')
  if a[1] then return a[1], a[2] end
  return '0', '{GENESIS_HASH}'
end
"""

# KEYS: stream, head, anchor.
_TIP_LUA = (
    _TIP_LUA_FN
    + """
local seq, hash = tip()
return {seq, hash}
"""
)

# KEYS: stream, head, anchor. ARGV: expected seq, expected hash, new seq, new hash,
# then the entry's field/value pairs.
_APPEND_LUA = (
    _TIP_LUA_FN
    + """
local seq, hash = tip()
if seq == ARGV[3] and hash == ARGV[4] then
  -- This exact entry is already the tip: redis-py re-sent the script after a lost reply.
  return {'ok', redis.call('HGET', KEYS[2], 'id')}
end
if seq ~= ARGV[1] or hash ~= ARGV[2] then
  return {'conflict', seq, hash}
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 5))
redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'hash', ARGV[4], 'id', id)
return {'ok', id}
"""
)

# KEYS: stream, anchor. ARGV: expected current anchor seq ('' for none), new anchor's stream
# id, seq, hash, and the MINID below which entries are deleted (the id right after it).
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
redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'hash', ARGV[4], 'id', ARGV[2])
return {'ok', redis.call('XTRIM', KEYS[1], 'MINID', ARGV[5])}
"""


class RedisAuditLog:
    """The audit trail of one bot installation, on `keys.audit`."""

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: Keys,
        clock: Clock | None = None,
        *,
        hmac_key: bytes | None = None,
        append_timeout: float = _APPEND_TIMEOUT,
    ) -> None:
        self._redis = redis_client
        self._keys = keys
        self._clock = clock or _utc_now
        self._hmac_key = hmac_key
        self._append_timeout = append_timeout
        self._tip_script = redis_client.register_script(_TIP_LUA)
        self._append_script = redis_client.register_script(_APPEND_LUA)
        self._trim_script = redis_client.register_script(_TRIM_LUA)
        # Last tip this process saw; lets an uncontended append succeed in one round trip.
        self._tip: tuple[str, str] | None = None

    # -- writing -------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> AuditEntry:
        """Record `event` at the end of the chain and return the stored entry.

        Raises `StoreUnavailable` if Redis fails or other writers keep winning the chain's
        tip for `append_timeout` seconds. After a Redis timeout the entry may or may not
        have been written.
        """
        chain_keys = [self._keys.audit, self._keys.audit_head, self._keys.audit_anchor]
        tip = self._tip
        deadline = time.monotonic() + self._append_timeout
        while True:
            if tip is None:
                with redis_errors("audit append"):
                    seq_text, hash_text = (_text(v) for v in self._tip_script(keys=chain_keys))
                tip = (seq_text, hash_text)
            if not _is_seq(tip[0]) or not _HEX64.match(tip[1]):
                # Chaining onto a damaged head would hide the damage; an operator must look.
                raise StoreCorrupt("audit append", cause="MalformedHead")
            seq = int(tip[0]) + 1
            fields = _flatten(event, seq=seq, time=_format_time(self._now()), prev_hash=tip[1])
            digest = self._digest(fields)
            args: list[str] = [tip[0], tip[1], str(seq), digest]
            for name, value in fields.items():
                args.extend((name, value))
            args.extend(("hash", digest))
            with redis_errors("audit append"):
                reply = self._append_script(keys=chain_keys, args=args)
            status, *rest = [_text(part) for part in reply]
            if status == "ok":
                self._tip = (str(seq), digest)
                metrics().audit_written(event.event)
                return _entry(rest[0], {**fields, "hash": digest})
            tip = (rest[0], rest[1])
            self._tip = tip
            if time.monotonic() > deadline:
                raise StoreUnavailable("audit append (chain contended)")

    def trim(self, max_entries: int | None = None, max_age: timedelta | None = None) -> TrimResult:
        """Delete old entries, keeping the rest verifiable.

        Keeps at most `max_entries` entries and/or only entries whose time is within
        `max_age` of now (whichever removes more). Before deleting, the entries to be
        deleted are verified: if they fail, `AuditChainBroken` is raised and nothing is
        removed. The last deleted entry becomes the anchor, atomically with the trim.
        """
        if max_entries is not None and max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        if max_entries is None and max_age is None:
            return TrimResult(removed=0)
        with redis_errors("audit trim"):
            for _ in range(3):
                anchor = self._read_pointer(self._keys.audit_anchor)
                last_removed = self._trim_point(max_entries, max_age)
                if last_removed is None:
                    return TrimResult(removed=0)
                cut_id, cut_fields = last_removed
                check = self._check_chain(anchor, head=None, stop_at=cut_id)
                if not check.ok:
                    if self._read_pointer(self._keys.audit_anchor) != anchor:
                        continue  # another replica trimmed meanwhile
                    raise AuditChainBroken(check)
                reply = self._trim_script(
                    keys=[self._keys.audit, self._keys.audit_anchor],
                    args=[
                        anchor[0] if anchor else "",
                        cut_id,
                        cut_fields["seq"],
                        cut_fields["hash"],
                        _next_stream_id(cut_id),
                    ],
                )
                status, *rest = [_text(part) for part in reply]
                if status == "ok":
                    return TrimResult(removed=int(rest[0]), anchor_seq=int(cut_fields["seq"]))
                # Another replica trimmed or the entry changed under us: look again.
        raise StoreUnavailable("audit trim (contended)")

    # -- reading -------------------------------------------------------------------------

    def recent(
        self, limit: int = 20, namespace: str | None = None, deployment: str | None = None
    ) -> list[AuditEntry]:
        """The newest `limit` entries, newest first, optionally for one namespace/deployment."""
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

    def verify(self) -> VerifyResult:
        """Check the whole retained chain, from the anchor (or genesis) to the head."""
        result = VerifyResult(ok=True, checked=0)
        with redis_errors("audit verify"):
            # The anchor, the head and the first page are read in one transaction, so they
            # agree. A trim that overtakes a long scan later deletes entries this pass has
            # not read yet; that is not tampering, so look again (trims are rare).
            for _ in range(5):
                with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hmget(self._keys.audit_anchor, ["seq", "hash", "id"])
                    pipe.hmget(self._keys.audit_head, ["seq", "hash", "id"])
                    pipe.xrange(self._keys.audit, "-", "+", count=_PAGE)
                    anchor_raw, head_raw, first_page = pipe.execute()
                anchor, head = _pointer(anchor_raw), _pointer(head_raw)
                if head is None and anchor is None:
                    # Nothing written yet when the pass started; appends may land during it.
                    head = ("0", GENESIS_HASH, "")
                result = self._check_chain(
                    anchor, head=head, stop_at=None, first_page=_rows(first_page)
                )
                if result.ok or self._read_pointer(self._keys.audit_anchor) == anchor:
                    return result
        return result

    # -- internals -----------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the audit clock must return timezone-aware datetimes")
        return now

    def _digest(self, fields: Mapping[str, str]) -> str:
        return _digest(fields, self._hmac_key)

    def _read_pointer(self, key: str) -> tuple[str, str, str] | None:
        return _pointer(self._redis.hmget(key, ["seq", "hash", "id"]))

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
        anchor: tuple[str, str, str] | None,
        *,
        head: tuple[str, str, str] | None,
        stop_at: str | None,
        first_page: list[tuple[str, dict[str, str]]] | None = None,
    ) -> VerifyResult:
        """Walk the stream from the oldest entry.

        With `stop_at`, check only up to and including that stream id (and ignore the
        head); otherwise check everything and the head.
        """
        if anchor is not None and not _is_seq(anchor[0]):
            return VerifyResult(False, 0, None, "the anchor record is malformed")
        expected_seq = int(anchor[0]) + 1 if anchor else 1
        expected_prev = anchor[1] if anchor else GENESIS_HASH
        checked = 0
        head_seen = False
        head_seq = int(head[0]) if head is not None and _is_seq(head[0]) else None
        if head is not None and head_seq is None:
            return VerifyResult(False, 0, None, "the head record is malformed")
        if head_seq is not None and head_seq < expected_seq - 1:
            return VerifyResult(False, 0, None, "the head is older than the trim anchor")

        past_head: str | None = None  # stream id of the first entry after the head's
        for stream_id, fields in self._scan(first_page):
            problem = self._check_entry(fields, expected_seq, expected_prev)
            checked += 1
            if problem is not None:
                return VerifyResult(False, checked, stream_id, problem)
            if head is not None and head_seq == expected_seq:
                head_seen = True
                if fields["hash"] != head[1]:
                    return VerifyResult(
                        False,
                        checked,
                        stream_id,
                        f"the head records a different hash for seq {expected_seq}",
                    )
            if head_seq is not None and expected_seq == head_seq + 1:
                past_head = stream_id
            expected_seq += 1
            expected_prev = fields["hash"]
            if stop_at is not None and stream_id == stop_at:
                return VerifyResult(True, checked)

        if stop_at is not None:
            return VerifyResult(False, checked, stop_at, "entry disappeared during the check")
        last_seq = expected_seq - 1
        if head is None or head_seq is None:
            if checked or anchor is not None:
                return VerifyResult(
                    False, checked, None, "the head record is missing (it names the last entry)"
                )
            return VerifyResult(True, 0)
        if head_seq > last_seq:
            return VerifyResult(
                False,
                checked,
                head[2] or None,
                f"entries after seq {last_seq} up to seq {head_seq} (the head) are missing",
            )
        if head_seq < last_seq:
            # Appends move the head in the same script that adds the entry, so entries past
            # the head seen at the start are fine only if the head has moved on since.
            now_head = self._read_pointer(self._keys.audit_head)
            if now_head is None:
                return VerifyResult(
                    False, checked, None, "the head record is missing (it names the last entry)"
                )
            if not _is_seq(now_head[0]) or int(now_head[0]) < last_seq:
                return VerifyResult(
                    False,
                    checked,
                    past_head,
                    f"the head names seq {head_seq} but the stream goes on to seq {last_seq}",
                )
        # Not seen means the head names the anchor's seq (everything after it was trimmed).
        if not head_seen and anchor is not None and head[1] != anchor[1]:
            return VerifyResult(False, checked, None, "the head does not match the anchor")
        return VerifyResult(True, checked)

    def _check_entry(
        self, fields: Mapping[str, str], expected_seq: int, expected_prev: str
    ) -> str | None:
        seq_text, stored_hash = fields.get("seq", ""), fields.get("hash", "")
        if not _is_seq(seq_text) or not _HEX64.match(stored_hash):
            return "malformed entry: seq or hash is missing or invalid"
        if not hmac.compare_digest(self._digest(fields), stored_hash):
            return f"entry seq {seq_text} was altered: its hash does not match its fields"
        seq = int(seq_text)
        if seq > expected_seq:
            missing = (
                f"seq {expected_seq}"
                if seq == expected_seq + 1
                else f"seq {expected_seq} to {seq - 1}"
            )
            return f"{missing} missing before this entry (removed)"
        if seq < expected_seq:
            return (
                f"seq {seq} out of order, expected {expected_seq} "
                "(entry inserted, duplicated or reordered)"
            )
        if fields.get("prev_hash") != expected_prev:
            return (
                f"entry seq {seq} does not chain to the previous entry "
                "(an entry was inserted, removed or replaced before it)"
            )
        return None


# -- helpers -------------------------------------------------------------------------------

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SEQ = re.compile(r"^[0-9]{1,19}$")
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
        values[name] = int(text) if _SEQ.match(text) else None
    seq_text = fields.get("seq", "")
    return AuditEntry.model_construct(
        **values,
        time=_parse_time(fields.get("time", "")),
        seq=int(seq_text) if _SEQ.match(seq_text) else -1,
        prev_hash=fields.get("prev_hash", ""),
        hash=fields.get("hash", ""),
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


def _pointer(values: Iterable[Any]) -> tuple[str, str, str] | None:
    seq, digest, stream_id = (None if v is None else _text(v) for v in values)
    if seq is None:
        return None
    return seq, digest or "", stream_id or ""


def _is_seq(text: str) -> bool:
    return bool(_SEQ.match(text))


def _stream_id_key(stream_id: str) -> tuple[int, int]:
    millis, _, counter = stream_id.partition("-")
    return int(millis), int(counter or "0")


def _next_stream_id(stream_id: str) -> str:
    millis, counter = _stream_id_key(stream_id)
    return f"{millis}-{counter + 1}"

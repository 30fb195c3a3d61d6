"""Verification of the audit chain: one walk from the anchor (or genesis) to the head.

What it detects, and what it cannot:

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
  key signed (ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE or --unsigned-before; default 1: none);
* without a key, anything is recomputable by whoever can write to the store; what is still
  caught is naive deletion, from the stream's own counters (`StreamCounters`);
* with a key, replacing the head with an *older genuine* copy after deleting the newest
  entries, and rebuilding the stream so that its counters start afresh, is only visible
  against an outside copy of the head: the `checkpoint`. (An older genuine anchor hides
  nothing: the entries after it are gone, a seq gap.)

Pure: the store hands over the records and an iterator of entries; every verdict and its
wording is decided here.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from bot.domain.audit import DEFAULT_KEY_ID, AuditKeyring, MissingAt, VerifyResult
from bot.domain.audit_chain import (
    GENESIS_HASH,
    digest,
    is_hash,
    is_seq,
    record_mac,
    stream_id_key,
)

__all__ = ["NO_KEY_WARNING", "StreamCounters", "verify_chain"]

NO_KEY_WARNING: Final = (
    "no HMAC key configured: the head and the retention anchor cannot be authenticated, "
    "and whoever can write to Redis can rewrite the trail undetected (set "
    "ROLLOUT_BOT_AUDIT_HMAC_KEY or ROLLOUT_BOT_AUDIT_HMAC_KEYS)"
)

Row = tuple[str, Mapping[str, str]]
Missing = tuple[int, int | None, MissingAt]


@dataclass(frozen=True, slots=True)
class StreamCounters:
    """What the stream itself remembers: retention trims without touching `max_deleted` (the
    highest id deleted one by one), and every entry ever added is counted."""

    exists: bool
    entries_added: int = 0
    max_deleted: str = "0-0"

    @property
    def max_deleted_key(self) -> tuple[int, int]:
        return stream_id_key(self.max_deleted)

    def deleted_after(self, stream_id: str) -> bool:
        """Was an entry with an id above `stream_id` deleted one by one?"""
        return self.max_deleted_key > stream_id_key(stream_id or "0-0")


def verify_chain(
    rows: Iterable[Row],
    anchor: Mapping[str, str] | None,
    *,
    keyring: AuditKeyring | None,
    unsigned_before: int,
    head: Mapping[str, str] | None,
    stop_at: str | None,
    read_head: Callable[[], Mapping[str, str] | None],
    counters: StreamCounters | None = None,
    checkpoint: tuple[int, str] | None = None,
) -> VerifyResult:
    """Walk `rows` (the entries, oldest first), then check the anchor and the head.

    With `stop_at`, check only up to and including that stream id and the anchor (and
    ignore the head); otherwise check everything, the head and the stream's `counters`.
    `rows` is consumed only as far as needed. `read_head` reads the head record again; it is
    called only when entries go on past the head read at the start (an append may have moved
    it since). With a key, `unsigned_before` is the first seq that must be signed.
    """
    chain = _Chain(keyring)
    if keyring is not None:
        chain.unsigned_before = unsigned_before
    if keyring is None and stop_at is None:
        chain.warnings.append(NO_KEY_WARNING)
    if anchor is not None and not is_seq(anchor.get("seq", "")):
        return chain.failed(None, "the anchor record is malformed")
    anchor_seq = int(anchor["seq"]) if anchor else 0
    expected_seq = anchor_seq + 1
    expected_prev = anchor.get("hash", "") if anchor else GENESIS_HASH
    head_seq: int | None = None
    if head is not None:
        if not is_seq(head.get("seq", "")):
            return chain.failed(None, "the head record is malformed")
        head_seq = int(head["seq"])
        if head_seq < anchor_seq:
            return chain.failed(None, "the head is older than the trim anchor")

    head_fields: Mapping[str, str] | None = None
    head_stream_id = ""
    last_stream_id = anchor.get("id", "0-0") if anchor else "0-0"
    past_head: str | None = None  # stream id of the first entry after the head's
    reached = False
    for stream_id, fields in rows:
        chain.checked += 1
        problem = _entry_problem(fields, expected_seq, expected_prev, chain)
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
    anchor_failure = _anchor_failure(anchor, chain)
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
        now_head = read_head()
        if now_head is None:
            return chain.failed(None, "the head record is missing (it names the last entry)")
        if not is_seq(now_head.get("seq", "")) or int(now_head["seq"]) < last_seq:
            return chain.failed(
                past_head,
                f"the head names seq {head_seq} but the stream goes on to seq {last_seq}",
            )
    if head_fields is None and anchor is not None and head.get("hash") != anchor.get("hash"):
        # Not seen means the head names the anchor's seq (everything after was trimmed).
        return chain.failed(None, "the head does not match the anchor")
    if head_seq > 0:
        why = _record_problem("head", head, head_fields, chain)
        if why is None and head_fields is not None and head.get("id", "") != head_stream_id:
            why = f"names stream id {head.get('id')!r} for seq {head_seq}, not {head_stream_id!r}"
        if why is not None:
            upper = (
                counters.entries_added if counters and counters.entries_added > head_seq else None
            )
            return chain.failed(
                counters.max_deleted
                if counters and counters.deleted_after(head.get("id", ""))
                else None,
                f"{_seqs(head_seq + 1, upper)} missing at the newest end: the head record {why}",
                (head_seq + 1, upper, "newest"),
            )
    if head_seq > 0:
        chain.head = (head_seq, head.get("hash", ""))
    if counters is not None:
        return _counters_failure(counters, anchor, last_seq, last_stream_id, chain)
    return chain.passed()


class _Chain:
    """What a walk over the chain has established so far."""

    def __init__(self, keyring: AuditKeyring | None) -> None:
        self.keyring = keyring
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
        self, first_bad: str | None, problem: str, missing: Missing | None = None
    ) -> VerifyResult:
        return self._result(False, first_bad, problem, missing)

    def _result(
        self, ok: bool, first_bad: str | None, problem: str | None, missing: Missing | None
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


def _entry_problem(
    fields: Mapping[str, str], expected_seq: int, expected_prev: str, chain: _Chain
) -> tuple[str, Missing | None] | None:
    """Why one entry breaks the chain (and which seqs are missing, if that is why), or None."""
    seq_text, stored_hash = fields.get("seq", ""), fields.get("hash", "")
    if not is_seq(seq_text) or not is_hash(stored_hash):
        return "malformed entry: seq or hash is missing or invalid", None
    kid = fields.get("kid")
    keyring = chain.keyring
    signed_by: str | None = None
    if kid is not None:
        key = keyring.keys.get(kid) if keyring is not None else None
        if key is None:
            return (
                f"entry seq {seq_text} is signed with key id {kid!r}, which is not "
                "configured (ROLLOUT_BOT_AUDIT_HMAC_KEYS)",
                None,
            )
        authentic = hmac.compare_digest(digest(fields, key), stored_hash)
        signed_by = kid
    else:
        authentic = hmac.compare_digest(digest(fields, None), stored_hash)
        legacy = keyring.keys.get(DEFAULT_KEY_ID) if keyring is not None else None
        if not authentic and legacy is not None:
            # Written before entries named their key, under ROLLOUT_BOT_AUDIT_HMAC_KEY.
            authentic = hmac.compare_digest(digest(fields, legacy), stored_hash)
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


def _anchor_failure(anchor: Mapping[str, str] | None, chain: _Chain) -> VerifyResult | None:
    """The anchor must be an authentic retention record (with a key: signed)."""
    if anchor is None:
        return None
    why = _record_problem("anchor", anchor, chain.first_fields, chain)
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
    kind: str,
    record: Mapping[str, str],
    entry_fields: Mapping[str, str] | None,
    chain: _Chain,
) -> str | None:
    """Why the head or anchor record is not authentic, or None."""
    mac = record.get("mac")
    keyring = chain.keyring
    if keyring is None:
        return None  # nothing to check it with; the result carries the warning
    if mac is not None:
        kid = record.get("kid", "")
        key = keyring.keys.get(kid)
        if key is None:
            return f"is signed with key id {kid!r}, which is not configured"
        if not hmac.compare_digest(mac, record_mac(kind, record, key)):
            return "is not authentic (its MAC does not match): it was moved or forged"
        return None
    record_seq = int(record["seq"]) if is_seq(record.get("seq", "")) else 0
    # The entry the record sits next to (the head's own, the first after the anchor) was
    # signed: a record written before key ids existed. Otherwise nothing vouches for it.
    entry_seq = entry_fields.get("seq", "") if entry_fields is not None else ""
    signed_entry = (
        chain.keyed_from is not None and is_seq(entry_seq) and chain.keyed_from <= int(entry_seq)
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
    counters: StreamCounters,
    anchor: Mapping[str, str] | None,
    last_seq: int,
    last_stream_id: str,
    chain: _Chain,
) -> VerifyResult:
    """The stream's own counters: retention trims without touching the highest deleted id,
    and every entry ever added is counted. Detects deletions that a consistent-looking head
    or anchor hides (without a key, or with a replayed record)."""
    if not counters.exists:
        return chain.passed()
    deleted_newest = counters.deleted_after(last_stream_id)
    if counters.entries_added > last_seq or deleted_newest:
        upper = counters.entries_added if counters.entries_added > last_seq else None
        how = (
            f"Redis counts {counters.entries_added} entries added to the stream"
            if upper is not None
            else f"stream id {counters.max_deleted} after the last entry was deleted with XDEL"
        )
        return chain.failed(
            counters.max_deleted if deleted_newest else None,
            f"{_seqs(last_seq + 1, upper)} missing at the newest end: {how}, but the chain "
            f"ends at seq {last_seq} (entries deleted and the head moved back)",
            (last_seq + 1, upper, "newest"),
        )
    if counters.max_deleted_key == (0, 0):
        return chain.passed()
    if anchor is not None and not counters.deleted_after(anchor.get("id", "0-0")):
        anchor_seq = int(anchor["seq"])
        return chain.failed(
            counters.max_deleted,
            f"{_seqs(_trimmed_from(anchor), anchor_seq)} missing at the oldest end: stream "
            f"id {counters.max_deleted} was deleted with XDEL, not trimmed by retention (the "
            "anchor was moved over it)",
            (_trimmed_from(anchor), anchor_seq, "oldest"),
        )
    return chain.failed(
        counters.max_deleted,
        f"stream id {counters.max_deleted} was deleted with XDEL outside retention",
    )


def _seqs(first: int, last: int | None) -> str:
    if last is None:
        return f"seq {first} onwards"
    return f"seq {first}" if first == last else f"seq {first} to {last}"


def _trimmed_from(anchor: Mapping[str, str]) -> int:
    """The first seq the anchor's trim claims to have removed (1 if it does not say)."""
    text = anchor.get("from", "")
    if is_seq(text) and 1 <= int(text) <= int(anchor["seq"]):
        return int(text)
    return 1

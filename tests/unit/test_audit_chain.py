"""The audit chain as pure domain code: sealing entries and verifying a walk, without Redis.

Each tamper test starts from a chain that verifies and changes one thing, so a failure here
means the verifier stopped noticing that thing (or started rejecting a genuine chain).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import pytest

from bot.domain.audit import AuditEvent, AuditEventKind, AuditKeyring, VerifyResult
from bot.domain.audit_chain import (
    GENESIS_HASH,
    ChainTip,
    digest,
    record_mac,
    seal_entry,
    untrusted_tip,
)
from bot.domain.audit_chain_verify import NO_KEY_WARNING, StreamCounters, verify_chain

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
KEYRING = AuditKeyring({"k1": KEY}, "k1")

Row = tuple[str, dict[str, str]]


def event(n: int) -> AuditEvent:
    return AuditEvent(
        event=AuditEventKind.EXECUTION,
        user_id=f"U{n}",
        user_name=f"user{n}",
        channel="C1",
        action="restart",
        cluster="prod",
        namespace="shop",
        deployment="api",
        parameters={"n": str(n)},
    )


def build(
    count: int, keyring: AuditKeyring | None, *, unsigned: int = 0
) -> tuple[list[Row], dict[str, str]]:
    """A chain of `count` entries, the first `unsigned` of them without a key, and its head."""
    rows: list[Row] = []
    tip = ChainTip("0", GENESIS_HASH, "0-0", "0-0", "")
    head: dict[str, str] = {}
    for seq in range(1, count + 1):
        stream_id = f"{1000 + seq}-0"
        sealed = seal_entry(
            event(seq),
            tip,
            stream_id=stream_id,
            time=f"2025-03-01T12:00:{seq:02d}.000000Z",
            keyring=None if seq <= unsigned else keyring,
        )
        rows.append((stream_id, sealed.fields))
        head = sealed.head
        tip = ChainTip(
            str(seq), sealed.fields["hash"], stream_id, stream_id, head.get("kid", ""), ""
        )
    return rows, head


def verify(
    rows: list[Row],
    head: Mapping[str, str] | None,
    keyring: AuditKeyring | None = KEYRING,
    *,
    unsigned_before: int = 1,
    counters: StreamCounters | None = None,
) -> VerifyResult:
    return verify_chain(
        rows,
        None,
        keyring=keyring,
        unsigned_before=unsigned_before,
        head=head,
        stop_at=None,
        read_head=lambda: head,
        counters=counters,
    )


def resealed(fields: Mapping[str, str], key: bytes | None, **changes: str) -> dict[str, str]:
    """`fields` changed and hashed again, as a forger who holds `key` (or none) would."""
    changed = {**fields, **changes}
    return {**changed, "hash": digest(changed, key)}


# -- the canonical form --------------------------------------------------------------------


def test_an_unkeyed_hash_is_sha256_of_the_canonical_json_of_the_other_fields() -> None:
    [(_, fields)], _ = build(1, None)
    body = {name: value for name, value in fields.items() if name != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert fields["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert fields["prev_hash"] == GENESIS_HASH
    assert fields["seq"] == "1"


def test_a_keyed_entry_names_its_key_and_its_hash_needs_the_key() -> None:
    [(_, fields)], head = build(1, KEYRING)
    assert fields["kid"] == "k1"
    assert fields["key_start"] == "1"  # the first keyed entry says so, under its MAC
    assert fields["hash"] == digest(fields, KEY) != digest(fields, OTHER_KEY)
    assert head["mac"] == record_mac("head", head, KEY)


def test_a_record_mac_binds_which_record_it_is() -> None:
    record = {"seq": "3", "hash": "a" * 64, "id": "1003-0", "kid": "k1"}
    assert record_mac("head", record, KEY) != record_mac("anchor", record, KEY)


# -- chains that verify --------------------------------------------------------------------


def test_a_good_keyed_chain_verifies() -> None:
    rows, head = build(4, KEYRING)
    result = verify(rows, head)
    assert result.ok, result.problem
    assert (result.checked, result.first_seq, result.last_seq) == (4, 1, 4)
    assert (result.keyed_from, result.key_ids) == (1, ("k1",))
    assert (result.head_seq, result.head_hash) == (4, head["hash"])
    assert result.warnings == ()


def test_a_good_unkeyed_chain_verifies_and_warns_that_nothing_is_authenticated() -> None:
    rows, head = build(3, None)
    result = verify(rows, head, keyring=None)
    assert result.ok, result.problem
    assert result.keyed_from is None
    assert result.warnings == (NO_KEY_WARNING,)


def test_an_unsigned_prefix_below_the_named_seq_passes() -> None:
    rows, head = build(5, KEYRING, unsigned=2)
    result = verify(rows, head, unsigned_before=3)
    assert result.ok, result.problem
    assert (result.first_seq, result.keyed_from, result.head_seq) == (1, 3, 5)


@pytest.mark.parametrize("unsigned_before", [1, 2])
def test_an_unsigned_prefix_reaching_the_named_seq_fails_naming_it(unsigned_before: int) -> None:
    rows, head = build(5, KEYRING, unsigned=2)
    result = verify(rows, head, unsigned_before=unsigned_before)
    assert not result.ok
    assert result.first_bad == rows[unsigned_before - 1][0]
    assert result.problem == (
        f"entry seq {unsigned_before} is not signed with the audit key: with a key configured, "
        f"unsigned entries are accepted only below seq {unsigned_before} "
        "(ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE or --unsigned-before); a trail swapped "
        "for an unsigned one looks exactly like this"
    )


# -- tampering -----------------------------------------------------------------------------


def test_a_changed_field_fails_naming_the_seq() -> None:
    rows, head = build(4, KEYRING)
    stream_id, fields = rows[2]
    rows[2] = (stream_id, {**fields, "user_id": "U999"})
    result = verify(rows, head)
    assert not result.ok
    assert result.first_bad == stream_id
    assert result.problem == "entry seq 3 was altered: its hash does not match its fields"


def test_a_broken_link_fails_naming_the_seq() -> None:
    rows, head = build(4, None)
    stream_id, fields = rows[2]
    # Rehashed, so the entry is self-consistent: only its link to entry 2 is wrong.
    rows[2] = (stream_id, resealed(fields, None, prev_hash="f" * 64))
    result = verify(rows, head, keyring=None)
    assert not result.ok
    assert result.first_bad == stream_id
    assert result.problem == (
        "entry seq 3 does not chain to the previous entry "
        "(an entry was inserted, removed or replaced before it)"
    )


def test_a_removed_entry_fails_naming_the_missing_seq() -> None:
    rows, head = build(4, KEYRING)
    del rows[1]
    result = verify(rows, head)
    assert not result.ok
    assert result.problem == "seq 2 missing before this entry (removed)"
    assert (result.missing_from, result.missing_to, result.missing_at) == (2, 2, "middle")


def test_an_entry_signed_with_a_wrong_key_fails_naming_the_seq() -> None:
    rows, head = build(4, KEYRING)
    stream_id, fields = rows[1]
    rows[1] = (stream_id, resealed(fields, OTHER_KEY))
    result = verify(rows, head)
    assert not result.ok
    assert result.first_bad == stream_id
    assert result.problem == "entry seq 2 was altered: its hash does not match its fields"


def test_a_chain_checked_with_a_wrong_key_fails_at_the_first_seq() -> None:
    rows, head = build(3, KEYRING)
    result = verify(rows, head, keyring=AuditKeyring({"k1": OTHER_KEY}, "k1"))
    assert not result.ok
    assert result.problem == "entry seq 1 was altered: its hash does not match its fields"


def test_an_entry_signed_with_a_key_id_not_configured_fails_naming_the_seq() -> None:
    rows, head = build(3, KEYRING)
    result = verify(rows, head, keyring=AuditKeyring({"k2": KEY}, "k2"))
    assert not result.ok
    assert result.problem == (
        "entry seq 1 is signed with key id 'k1', which is not configured "
        "(ROLLOUT_BOT_AUDIT_HMAC_KEYS)"
    )


def test_an_unsigned_entry_after_a_signed_one_fails_naming_the_seq() -> None:
    rows, _ = build(3, KEYRING)
    stream_id, fields = rows[2]
    # A downgrade: entry 3 rewritten without its key id and hashed with plain SHA-256.
    unkeyed = {name: value for name, value in fields.items() if name != "kid"}
    rows[2] = (stream_id, resealed(unkeyed, None))
    head = {"seq": "3", "id": stream_id, "hash": rows[2][1]["hash"]}
    result = verify(rows, head)
    assert not result.ok
    assert result.first_bad == stream_id
    assert result.problem == (
        "entry seq 3 is not keyed, but the trail is keyed from seq 1: the bot never writes "
        "an unkeyed entry after keyed ones"
    )


def test_an_unsigned_head_over_a_signed_trail_fails_naming_the_seqs_after_it() -> None:
    rows, head = build(3, KEYRING)
    unsigned_head = {name: value for name, value in head.items() if name not in ("kid", "mac")}
    result = verify(rows, unsigned_head)
    assert not result.ok
    assert result.problem == (
        "seq 4 onwards missing at the newest end: the head record is not signed although "
        "the trail is keyed there: it was moved or forged"
    )
    assert (result.missing_from, result.missing_to, result.missing_at) == (4, None, "newest")


def test_a_head_moved_back_fails_its_mac() -> None:
    rows, head = build(3, KEYRING)
    moved = {**head, "seq": "2", "hash": rows[1][1]["hash"], "id": rows[1][0]}
    result = verify(rows[:2], moved, counters=StreamCounters(exists=True, entries_added=2))
    assert not result.ok
    assert result.problem == (
        "seq 3 onwards missing at the newest end: the head record is not authentic "
        "(its MAC does not match): it was moved or forged"
    )


def test_entries_added_beyond_the_chain_fail_naming_the_missing_seqs() -> None:
    rows, head = build(3, None)
    result = verify(rows, head, keyring=None, counters=StreamCounters(exists=True, entries_added=5))
    assert not result.ok
    assert result.problem == (
        "seq 4 to 5 missing at the newest end: Redis counts 5 entries added to the stream, "
        "but the chain ends at seq 3 (entries deleted and the head moved back)"
    )


# -- trusting the tip before an append -----------------------------------------------------


def test_an_unsigned_head_with_a_key_configured_is_not_trusted_to_append_to() -> None:
    rows, head = build(3, None)
    tip = ChainTip("3", head["hash"], head["id"], head["id"], "")
    why = untrusted_tip(tip, KEYRING, 1, lambda: rows[2][1])
    assert why == (
        "the head (seq 3) is not signed, but an audit key is configured and unsigned entries "
        "are accepted only below seq 1 (ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE). If the trail up "
        "to seq 3 was written before the key was configured, check it with `rollout-bot "
        "audit verify --unsigned-before 4` and then set ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE=4"
    )
    # The boundary: the head's own seq must be below the named one.
    assert untrusted_tip(tip, KEYRING, 3, lambda: rows[2][1]) is not None
    assert untrusted_tip(tip, KEYRING, 4, lambda: rows[2][1]) is None
    assert untrusted_tip(tip, None, 1, lambda: rows[2][1]) is None


def test_a_signed_head_is_trusted_only_with_its_mac() -> None:
    _, head = build(3, KEYRING)
    tip = ChainTip(head["seq"], head["hash"], head["id"], head["id"], head["kid"], head["mac"])
    assert untrusted_tip(tip, KEYRING, 1, lambda: None) is None
    forged = ChainTip(head["seq"], head["hash"], head["id"], head["id"], "k1", "0" * 64)
    assert untrusted_tip(forged, KEYRING, 1, lambda: None) == (
        "the head (seq 3) is not authentic: its MAC does not match"
    )

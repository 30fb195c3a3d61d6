"""The audit trail's ends and keys against a real redis-server: a moved head or anchor, key
ids and rotation, enabling a key on a plain trail, and scripts that write a decision and its
audit entry in one atomic run.

Tampering is done as someone with write access to Redis (but not the HMAC key) would: XDEL,
XTRIM, HSET on the head and the anchor, XSETID to hide Redis's own counters.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from datetime import timedelta
from typing import Any

import pytest
import redis

from bot.adapters.redis.audit import (
    AuditChainBroken,
    AuditEvent,
    AuditEventKind,
    AuditKeyring,
    RedisAuditLog,
)
from bot.adapters.redis.audit_lua import audited_lua
from bot.adapters.redis.errors import StoreCorrupt
from bot.adapters.redis.keys import Keys
from tests.devkit.redis_server import RedisServer
from tests.integration.conftest import FakeClock

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

KEY = b"k" * 32
KEY1 = b"1" * 32
KEY2 = b"2" * 32


def event(n: int = 0, **overrides: object) -> AuditEvent:
    fields: dict[str, object] = {
        "event": AuditEventKind.EXECUTION,
        "user_id": f"U{n}",
        "action": "restart",
        "namespace": "shop",
        "deployment": "api",
        "approval_id": f"ap{n}",
    }
    fields.update(overrides)
    return AuditEvent.model_validate(fields)


def fill(audit: RedisAuditLog, clock: FakeClock, count: int, start: int = 0) -> list[str]:
    ids = []
    for n in range(start, start + count):
        ids.append(audit.append(event(n)).stream_id)
        clock.advance(timedelta(minutes=1))
    return ids


def entries(client: redis.Redis, keys: Keys) -> list[tuple[str, dict[str, str]]]:
    return [(str(i), {str(k): str(v) for k, v in f.items()}) for i, f in client.xrange(keys.audit)]


def keyed(
    client: redis.Redis, keys: Keys, clock: FakeClock, *, unsigned_before: int = 1
) -> RedisAuditLog:
    return RedisAuditLog(client, keys, clock=clock, hmac_key=KEY, unsigned_before=unsigned_before)


def plain(client: redis.Redis, keys: Keys, clock: FakeClock) -> RedisAuditLog:
    return RedisAuditLog(client, keys, clock=clock)


def ring(*kids: str, signing: str) -> AuditKeyring:
    by_kid = {"kid1": KEY1, "kid2": KEY2}
    return AuditKeyring({kid: by_kid[kid] for kid in kids}, signing)


def sha256_of(fields: dict[str, str]) -> str:
    body = {k: v for k, v in fields.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def hide_deletions(client: redis.Redis, keys: Keys) -> None:
    """What a careful attacker adds: the stream rebuilt with the same ids, so Redis's own
    counters (entries added, highest id deleted) start afresh and match the doctored trail."""
    kept = entries(client, keys)
    client.delete(keys.audit)
    for stream_id, fields in kept:
        client.xadd(keys.audit, dict(fields), id=stream_id)


def move_anchor_over(
    client: redis.Redis, keys: Keys, stream_id: str, fields: dict[str, str]
) -> None:
    """Make the anchor name a deleted entry, keeping whatever else the record held."""
    client.hset(
        keys.audit_anchor, mapping={"seq": fields["seq"], "hash": fields["hash"], "id": stream_id}
    )


def move_head_to(client: redis.Redis, keys: Keys, stream_id: str, fields: dict[str, str]) -> None:
    client.hset(
        keys.audit_head, mapping={"seq": fields["seq"], "hash": fields["hash"], "id": stream_id}
    )


# -- the oldest end -------------------------------------------------------------------------------


def test_deleting_the_first_entry_and_moving_the_anchor_is_caught_with_a_key(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = keyed(client, keys, clock)
    fill(audit, clock, 5)
    [(first_id, first), *_] = entries(client, keys)
    # XTRIM, as retention does, so Redis's counters show nothing unusual: only the MAC can tell.
    client.xtrim(keys.audit, minid=entries(client, keys)[1][0], approximate=False)
    move_anchor_over(client, keys, first_id, first)

    result = audit.verify()

    assert not result.ok
    assert (result.missing_from, result.missing_to, result.missing_at) == (1, 1, "oldest")
    assert result.problem is not None
    assert result.problem.startswith("seq 1 missing at the oldest end")
    assert "anchor" in result.problem


def test_a_moved_anchor_is_caught_even_when_copied_from_a_genuine_retention_record(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = keyed(client, keys, clock)
    fill(audit, clock, 8)
    audit.trim(max_entries=6)  # a genuine, signed retention record for seq 1-2
    rows = entries(client, keys)
    client.xtrim(keys.audit, minid=rows[2][0], approximate=False)  # seq 3 and 4 go
    move_anchor_over(client, keys, rows[1][0], rows[1][1])

    result = audit.verify()

    assert not result.ok
    # The forged record proves nothing, so seq 1 to 2 are no longer accounted for either.
    assert (result.missing_from, result.missing_to, result.missing_at) == (1, 4, "oldest")
    assert result.problem is not None and "seq 1 to 4 missing at the oldest end" in result.problem
    # And trimming further would destroy that evidence, so it is refused.
    with pytest.raises(AuditChainBroken):
        audit.trim(max_entries=1)
    assert client.xlen(keys.audit) == 4


def test_deleting_the_first_entry_and_moving_the_anchor_is_caught_without_a_key(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = plain(client, keys, clock)
    fill(audit, clock, 5)
    [(first_id, first), *_] = entries(client, keys)
    client.xdel(keys.audit, first_id)
    move_anchor_over(client, keys, first_id, first)

    result = audit.verify()

    assert not result.ok
    assert (result.missing_from, result.missing_to, result.missing_at) == (1, 1, "oldest")
    assert result.problem is not None and "deleted with XDEL" in result.problem
    assert any("cannot be authenticated" in w for w in result.warnings)


# -- the newest end -------------------------------------------------------------------------------


def test_deleting_the_last_entry_and_moving_the_head_is_caught_with_a_key(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = keyed(client, keys, clock)
    fill(audit, clock, 5)
    rows = entries(client, keys)
    client.xdel(keys.audit, rows[-1][0])
    move_head_to(client, keys, *rows[-2])
    hide_deletions(client, keys)

    result = audit.verify()

    assert not result.ok
    assert (result.missing_from, result.missing_at) == (5, "newest")
    assert result.problem is not None
    assert result.problem.startswith("seq 5 onwards missing at the newest end: the head record")


def test_deleting_the_last_two_entries_and_moving_the_head_is_caught_without_a_key(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = plain(client, keys, clock)
    fill(audit, clock, 5)
    rows = entries(client, keys)
    client.xdel(keys.audit, rows[-1][0], rows[-2][0])
    move_head_to(client, keys, *rows[-3])

    result = audit.verify()

    assert not result.ok
    assert (result.missing_from, result.missing_to, result.missing_at) == (4, 5, "newest")
    assert result.problem is not None and "seq 4 to 5 missing at the newest end" in result.problem
    assert result.first_bad == rows[-1][0]  # Redis remembers the highest id deleted
    assert any("cannot be authenticated" in w for w in result.warnings)


def test_a_head_moved_to_a_different_entry_id_is_caught(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = keyed(client, keys, clock)
    fill(audit, clock, 3)
    client.hset(keys.audit_head, "id", "1-1")
    result = audit.verify()
    assert not result.ok
    assert result.missing_at == "newest"


# -- retention ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY, None], ids=["keyed", "plain"])
def test_a_legitimate_trim_verifies_and_leaves_a_retention_record(
    client: redis.Redis, keys: Keys, clock: FakeClock, key: bytes | None
) -> None:
    audit = RedisAuditLog(client, keys, clock=clock, hmac_key=key)
    fill(audit, clock, 10)

    trimmed = audit.trim(max_entries=4, reason="90-day policy")
    fill(audit, clock, 2, start=10)
    again = audit.trim(max_age=timedelta(minutes=4, seconds=30))

    assert (trimmed.trimmed_from, trimmed.anchor_seq) == (1, 6)
    assert again.trimmed_from == 7
    anchor = client.hgetall(keys.audit_anchor)
    assert anchor["seq"] == str(again.anchor_seq) and anchor["from"] == "7"
    assert anchor["reason"] == "retention" and anchor["time"].endswith("Z")
    assert ("mac" in anchor) == (key is not None)
    result = audit.verify()
    assert result.ok, result
    assert result.first_seq == (again.anchor_seq or 0) + 1 and result.last_seq == 12


def test_trimming_everything_keyed_then_appending_verifies(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = keyed(client, keys, clock)
    fill(audit, clock, 3)
    assert audit.trim(max_entries=0).removed == 3
    assert audit.verify().ok
    assert audit.append(event(4)).seq == 4
    assert audit.verify().ok


# -- keys -----------------------------------------------------------------------------------------


def test_entries_name_their_key_id_and_rotation_keeps_old_entries_verifiable(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    first = RedisAuditLog(client, keys, clock=clock, keyring=ring("kid1", signing="kid1"))
    fill(first, clock, 3)
    second = RedisAuditLog(client, keys, clock=clock, keyring=ring("kid1", "kid2", signing="kid2"))
    fill(second, clock, 3, start=3)

    assert [f["kid"] for _, f in entries(client, keys)] == ["kid1"] * 3 + ["kid2"] * 3
    assert [e.kid for e in second.export()] == ["kid1"] * 3 + ["kid2"] * 3
    assert client.hget(keys.audit_head, "kid") == "kid2"
    result = second.verify()
    assert result.ok, result
    assert (result.keyed_from, result.key_ids) == (1, ("kid1", "kid2"))

    without_kid1 = RedisAuditLog(client, keys, clock=clock, keyring=ring("kid2", signing="kid2"))
    failed = without_kid1.verify()
    assert not failed.ok
    assert failed.first_bad == entries(client, keys)[0][0]
    assert failed.problem is not None and "key id 'kid1'" in failed.problem


def test_the_key_id_is_covered_by_the_mac(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = RedisAuditLog(client, keys, clock=clock, keyring=ring("kid1", "kid2", signing="kid1"))
    fill(audit, clock, 2)
    rows = entries(client, keys)
    client.delete(keys.audit)
    client.xadd(keys.audit, rows[0][1], id=rows[0][0])
    client.xadd(keys.audit, {**rows[1][1], "kid": "kid2"}, id=rows[1][0])

    result = audit.verify()

    assert not result.ok
    assert result.first_bad == rows[1][0]
    assert result.problem is not None and "seq 2 was altered" in result.problem


def test_enabling_a_key_on_an_existing_plain_trail_keeps_it_verifiable(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    before = plain(client, keys, clock)
    fill(before, clock, 4)
    before.trim(max_entries=3)  # an unsigned retention record from the unkeyed days

    # The operator names the first seq the key signs (ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE).
    after = keyed(client, keys, clock, unsigned_before=5)
    fill(after, clock, 2, start=4)
    result = after.verify()
    assert result.ok, result
    assert (result.first_seq, result.keyed_from, result.key_ids) == (2, 5, ("default",))
    assert any("anchor record is not signed" in w for w in result.warnings)

    # Retention goes on, now writing signed records.
    assert after.trim(max_entries=1).removed == 4
    assert "mac" in client.hgetall(keys.audit_anchor)
    result = after.verify()
    assert result.ok and result.warnings == ()


def test_enabling_a_key_after_everything_unkeyed_was_trimmed_keeps_it_verifiable(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    before = plain(client, keys, clock)
    fill(before, clock, 3)
    before.trim(max_entries=0)  # an unsigned anchor, and no unkeyed entry left after it

    after = keyed(client, keys, clock, unsigned_before=4)
    fill(after, clock, 2, start=3)

    first = entries(client, keys)[0][1]
    assert first["key_start"] == "1"  # covered by the MAC: "the entries before me are unkeyed"
    result = after.verify()
    assert result.ok, result
    assert (result.first_seq, result.keyed_from) == (4, 4)
    assert any("anchor record is not signed" in w for w in result.warnings)
    assert "key_start" not in entries(client, keys)[1][1]


def test_an_unkeyed_entry_after_keyed_ones_is_tampering(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = keyed(client, keys, clock)
    fill(audit, clock, 2)
    last_id, last = entries(client, keys)[-1]
    forged = {k: v for k, v in last.items() if k not in ("kid", "hash")}
    forged.update(seq="3", prev_hash=last["hash"], user_id="U-forged")
    forged["hash"] = sha256_of(forged)
    forged_id = client.xadd(keys.audit, forged)
    client.delete(keys.audit_head)
    client.hset(keys.audit_head, mapping={"seq": "3", "hash": forged["hash"], "id": forged_id})

    result = audit.verify()

    assert not result.ok
    assert result.first_bad == forged_id
    assert result.problem is not None and "not keyed" in result.problem
    # And the bot itself, started without its key, refuses to write such an entry.
    client.xdel(keys.audit, forged_id)
    client.delete(keys.audit_head)
    client.hset(
        keys.audit_head,
        mapping={"seq": last["seq"], "hash": last["hash"], "id": last_id, "kid": "default"},
    )
    with pytest.raises(StoreCorrupt):
        plain(client, keys, clock).append(event(9))


# -- a decision and its entry in one atomic run ------------------------------------------

# A decision script in the style of the approval store: the first caller wins the decision
# and its entry is written with it; later callers change nothing and write no entry.
_DECIDE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  audit_record('won')
  return 'won'
end
audit_record('lost')
return 'lost'
"""


def test_a_decision_and_its_entry_are_written_together_and_only_for_the_winner(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    audit = keyed(client, keys, clock)
    other = keyed(client, keys, clock)  # a second replica, with its own cached tip
    decide = client.register_script(audited_lua(_DECIDE))
    fill(audit, clock, 1)

    won = audit.run_audited(
        decide, keys=["decision"], args=["U1"], events={"won": event(1, event="approval")}
    )
    other.append(event(2))  # moves the tip: `audit`'s cached tip is stale now
    lost = audit.run_audited(
        decide, keys=["decision"], args=["U2"], events={"won": event(2, event="approval")}
    )

    assert (won.reply, won.status) == ("won", "won")
    assert won.entry is not None and won.entry.seq == 2 and won.entry.user_id == "U1"
    assert (lost.reply, lost.status, lost.entry) == ("lost", None, None)
    assert client.get("decision") == "U1"
    assert [f["user_id"] for _, f in entries(client, keys)] == ["U0", "U1", "U2"]
    assert [e.stream_id for e in audit.export()][1] == won.entry.stream_id
    assert audit.verify().ok


def test_a_resent_audited_script_writes_no_second_entry(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    """redis-py re-sends a script whose reply was lost; the second run finds its own entry at
    the tip and writes nothing more."""
    audit = keyed(client, keys, clock)
    fill(audit, clock, 1)
    decide = client.register_script(audited_lua(_DECIDE))
    tip = audit._read_tip("test")
    plan, prepared = audit._prepare(tip, {"won": event(1), "lost": event(1, outcome="lost")})
    all_keys = ["decision", *audit.chain_keys]

    first = decide(keys=all_keys, args=["U1", plan])
    second = decide(keys=all_keys, args=["U1", plan])

    assert first == ["audit_ok", "won", "won"]
    assert second == ["audit_ok", "lost", "won"]  # the entry of the first run is reported
    assert client.xlen(keys.audit) == 2
    assert prepared["won"].hash == client.hget(keys.audit_head, "hash")
    assert audit.verify().ok


def test_concurrent_decisions_and_appends_keep_one_chain(
    server: RedisServer, client: redis.Redis, keys: Keys
) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []
    winners: list[Any] = []

    def replica(n: int) -> None:
        own = server.client(socket_timeout=5)
        log = RedisAuditLog(own, keys, hmac_key=KEY)
        decide = own.register_script(audited_lua(_DECIDE))
        try:
            barrier.wait()
            for i in range(20):
                done = log.run_audited(
                    decide, keys=[f"decision:{i}"], args=[f"U{n}"], events={"won": event(n)}
                )
                if done.status == "won":
                    winners.append((i, done.entry))
                log.append(event(n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            own.close()

    workers = [threading.Thread(target=replica, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert sorted(i for i, _ in winners) == list(range(20))
    audit = RedisAuditLog(client, keys, hmac_key=KEY)
    result = audit.verify()
    assert result.ok, result
    assert result.checked == 20 + 6 * 20


# -- the approval store's own transition, wrapped (how the approval flow is meant to use it) ------

# The one line the approval store's `finish()` needs: write the entry prepared for the status it
# reached, first thing (Redis does not roll a script back if it fails half-way, so the entry
# goes before the decision's own writes).
_FINISH = "local function finish(status, changed)\n"


def approve_script(client: redis.Redis) -> Any:
    from bot.adapters.redis import approvals as store_module

    prologue = store_module._PROLOGUE
    assert _FINISH in prologue, "the approval store's finish() changed: update this test"
    audited = prologue.replace(_FINISH, _FINISH + "  if changed then audit_record(status) end\n")
    return client.register_script(audited_lua(audited + store_module._APPROVE))


def test_an_approval_and_the_entry_naming_its_approver_are_stored_together(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    from bot.adapters.redis.approvals import RedisApprovalStore
    from bot.domain.approval import ApprovalRequest, ApprovalState

    store = RedisApprovalStore(client, keys, clock=clock)
    script = approve_script(client)

    def new_request() -> str:
        return store.create(
            ApprovalRequest(
                requester_id="U-rita",
                action="scale",
                namespace="shop",
                deployment="api",
                created_at=clock.now,
                expires_at=clock.now + timedelta(minutes=30),
            )
        ).id

    def click(log: RedisAuditLog, approval_id: str, user: str) -> Any:
        """What `RedisApprovalStore._run` would pass, plus the events by status."""
        store_keys = [
            keys.approval(approval_id),
            keys.approvals_pending,
            keys.approvals_active,
            keys.op(secrets.token_urlsafe(12)),
        ]
        args = [600, approval_id, "2025-03-01T12:00:00.000000Z", clock.now.timestamp(), 3600]
        approval = event(0, event="approval", user_id=user, approval_id=approval_id)
        return log.run_audited(
            script,
            keys=store_keys,
            args=[*args, user, user, "sig"],
            events={"recorded": approval, "approved": approval},
            operation="approval update",
        )

    audit = keyed(client, keys, clock)
    first_id = new_request()
    first = click(audit, first_id, "U-ana")
    # A click on a decided request changes nothing and writes no entry.
    again = click(audit, first_id, "U-ana")

    assert first.reply[0] == "approved" and first.status == "approved"
    assert first.entry is not None
    assert (first.entry.user_id, first.entry.approval_id) == ("U-ana", first_id)
    assert again.reply[0] == "already_decided" and (again.status, again.entry) == (None, None)
    assert store.get(first_id).state is ApprovalState.APPROVED  # type: ignore[union-attr]
    assert [f["user_id"] for _, f in entries(client, keys)] == ["U-ana"]
    assert audit.verify().ok

    # If the entry cannot be written, the vote is not recorded either.
    second_id = new_request()
    client.hset(keys.audit_head, "hash", "not-a-hash")
    with pytest.raises(StoreCorrupt):
        click(keyed(client, keys, clock), second_id, "U-bob")
    assert store.get(second_id).state is ApprovalState.PENDING  # type: ignore[union-attr]
    assert store.get(second_id).approvals == []  # type: ignore[union-attr]


def test_the_retention_service_records_its_policy_as_the_reason(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    from bot.services.retention import AuditRetention

    audit = keyed(client, keys, clock)
    fill(audit, clock, 5)
    AuditRetention(audit, max_entries=2, max_age=timedelta(days=90)).trim()

    anchor = client.hgetall(keys.audit_anchor)
    assert (anchor["from"], anchor["seq"]) == ("1", "3")
    assert anchor["reason"] == "retention policy: keep 2 entries, keep 90 days"
    assert audit.verify().ok


def test_a_trail_keyed_before_key_ids_existed_still_verifies_and_continues(
    client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    """The previous version signed with ROLLOUT_BOT_AUDIT_HMAC_KEY and wrote no `kid`: those
    entries verify under the key id `default`, and new entries chain on."""
    import hmac as hmac_module

    audit = keyed(client, keys, clock)
    fill(audit, clock, 3)
    legacy: list[tuple[str, dict[str, str]]] = []
    previous = "0" * 64
    for stream_id, fields in entries(client, keys):
        old = {k: v for k, v in fields.items() if k not in ("kid", "key_start", "hash")}
        old["prev_hash"] = previous
        body = json.dumps(old, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        old["hash"] = previous = hmac_module.new(KEY, body.encode(), hashlib.sha256).hexdigest()
        legacy.append((stream_id, old))
    client.delete(keys.audit, keys.audit_head)
    for stream_id, fields in legacy:
        client.xadd(keys.audit, dict(fields), id=stream_id)
    client.hset(keys.audit_head, mapping={"seq": "3", "hash": previous, "id": legacy[-1][0]})

    fresh = keyed(client, keys, clock)
    assert fresh.verify().ok
    fill(fresh, clock, 2, start=3)
    result = fresh.verify()
    assert result.ok, result
    assert (result.keyed_from, result.key_ids) == (1, ("default",))
    # Without the key, the old entries are not accepted either.
    assert not plain(client, keys, clock).verify().ok

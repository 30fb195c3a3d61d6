"""`rollout-bot audit verify` as a separate process, on trails written straight through
`RedisAuditLog` (no cluster needed): what it prints, its exit codes, its key settings."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

from bot.adapters.redis.audit import AuditEvent, AuditEventKind, AuditKeyring, RedisAuditLog
from bot.adapters.redis.keys import Keys
from tests.devkit.redis_server import RedisServer, flush_redis
from tests.integration.conftest import FakeClock
from tests.support.bot_process import ROLLOUT_BOT

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

SECRET1 = "first-secret-of-at-least-32-bytes!!"
SECRET2 = "second-secret-of-at-least-32-bytes!"
KEYS = Keys()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    flush_redis(server)
    client = server.client()
    yield client
    client.close()


def env(server: RedisServer, **settings: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLOUT_BOT_"))}
    return {**base, "SLACK_BOT_TOKEN": "xoxb-test", "REDIS_URL": server.url, **settings}


def verify(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROLLOUT_BOT), "audit", "verify"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )


def failure(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    report: dict[str, Any] = json.loads(line)
    assert report["ok"] is False
    return report


def fill(log: RedisAuditLog, clock: FakeClock, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        log.append(AuditEvent(event=AuditEventKind.EXECUTION, user_id=f"U{n}", action="pause"))
        clock.advance(timedelta(minutes=1))


def keyring(*kids: str, signing: str) -> AuditKeyring:
    secrets = {"kid1": SECRET1.encode(), "kid2": SECRET2.encode()}
    return AuditKeyring({kid: secrets[kid] for kid in kids}, signing)


def rows(client: redis.Redis) -> list[tuple[str, dict[str, str]]]:
    return [(str(i), {str(k): str(v) for k, v in f.items()}) for i, f in client.xrange(KEYS.audit)]


def test_a_short_key_is_refused_at_start_up_without_showing_it(server: RedisServer) -> None:
    result = verify(env(server, ROLLOUT_BOT_AUDIT_HMAC_KEY="0123456789"))

    assert result.returncode == 2
    assert "ROLLOUT_BOT_AUDIT_HMAC_KEY" in result.stderr
    assert "32 bytes" in result.stderr
    assert "0123456789" not in result.stdout + result.stderr


def test_a_short_key_in_the_keyring_is_refused_naming_its_id(server: RedisServer) -> None:
    result = verify(
        env(
            server,
            ROLLOUT_BOT_AUDIT_HMAC_KEYS=f"kid1:{SECRET1},kid2:tooshortsecret",
            ROLLOUT_BOT_AUDIT_HMAC_KEY_ID="kid1",
        )
    )

    assert result.returncode == 2
    assert "ROLLOUT_BOT_AUDIT_HMAC_KEYS" in result.stderr and "'kid2'" in result.stderr
    assert "tooshortsecret" not in result.stderr and SECRET1 not in result.stderr


def test_success_names_entries_keyed_from_and_key_ids(
    server: RedisServer, client: redis.Redis
) -> None:
    clock = FakeClock()
    fill(RedisAuditLog(client, KEYS, clock=clock), clock, 2)
    # The key was set on a trail of two unsigned entries: the operator names seq 3.
    first = keyring("kid1", signing="kid1")
    fill(RedisAuditLog(client, KEYS, clock=clock, keyring=first, unsigned_before=3), clock, 2, 2)
    both = keyring("kid1", "kid2", signing="kid2")
    fill(RedisAuditLog(client, KEYS, clock=clock, keyring=both), clock, 2, 4)

    result = verify(
        env(
            server,
            ROLLOUT_BOT_AUDIT_HMAC_KEYS=f"kid1:{SECRET1},kid2:{SECRET2}",
            ROLLOUT_BOT_AUDIT_HMAC_KEY_ID="kid2",
            ROLLOUT_BOT_AUDIT_UNSIGNED_BEFORE="3",
        )
    )

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "audit trail OK: 6 entries verified (seq 1 to 6)"
    assert lines[1] == "keyed from seq 3; key ids seen: kid1, kid2"
    assert lines[2].startswith("unsigned entries accepted below seq 3")
    assert lines[3] == f"head: seq 6 hash {client.hget(KEYS.audit_head, 'hash')}"
    assert not any(line.startswith("warning:") for line in lines)
    assert SECRET1 not in result.stdout + result.stderr


def test_rotation_fails_once_the_old_key_is_removed(
    server: RedisServer, client: redis.Redis
) -> None:
    clock = FakeClock()
    fill(
        RedisAuditLog(client, KEYS, clock=clock, keyring=keyring("kid1", signing="kid1")), clock, 2
    )
    both = keyring("kid1", "kid2", signing="kid2")
    fill(RedisAuditLog(client, KEYS, clock=clock, keyring=both), clock, 2, 2)

    report = failure(verify(env(server, ROLLOUT_BOT_AUDIT_HMAC_KEYS=f"kid2:{SECRET2}")))

    assert report["first_bad_entry"] == rows(client)[0][0]
    assert "key id 'kid1'" in report["problem"]


def test_the_single_key_setting_still_works_and_signs_as_default(
    server: RedisServer, client: redis.Redis
) -> None:
    clock = FakeClock()
    single = AuditKeyring({"default": SECRET1.encode()}, "default")
    fill(RedisAuditLog(client, KEYS, clock=clock, keyring=single), clock, 3)

    result = verify(env(server, ROLLOUT_BOT_AUDIT_HMAC_KEY=SECRET1))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "keyed from seq 1; key ids seen: default" in result.stdout


def test_deleting_the_first_entry_and_moving_the_anchor_exits_1_naming_the_gap(
    server: RedisServer, client: redis.Redis
) -> None:
    clock = FakeClock()
    fill(RedisAuditLog(client, KEYS, clock=clock, hmac_key=SECRET1.encode()), clock, 4)
    (first_id, first), (second_id, _), *_ = rows(client)
    client.xtrim(KEYS.audit, minid=second_id, approximate=False)
    client.hset(KEYS.audit_anchor, mapping={"seq": "1", "hash": first["hash"], "id": first_id})

    report = failure(verify(env(server, ROLLOUT_BOT_AUDIT_HMAC_KEY=SECRET1)))

    assert report["missing"] == {"from_seq": 1, "to_seq": 1, "at": "oldest"}
    assert report["problem"].startswith("seq 1 missing at the oldest end")


def test_deleting_the_last_entry_and_moving_the_head_exits_1_without_a_key(
    server: RedisServer, client: redis.Redis
) -> None:
    clock = FakeClock()
    fill(RedisAuditLog(client, KEYS, clock=clock), clock, 4)
    *_, (before_id, before), (last_id, _) = rows(client)
    client.xdel(KEYS.audit, last_id)
    client.hset(KEYS.audit_head, mapping={"seq": "3", "hash": before["hash"], "id": before_id})

    result = verify(env(server))
    report = failure(result)

    assert report["missing"] == {"from_seq": 4, "to_seq": 4, "at": "newest"}
    assert report["first_bad_entry"] == last_id
    assert "warning: no HMAC key configured" in result.stderr
    assert "cannot be authenticated" in report["warnings"][0]


def test_without_a_key_success_says_the_ends_are_not_authenticated(
    server: RedisServer, client: redis.Redis
) -> None:
    clock = FakeClock()
    log = RedisAuditLog(client, KEYS, clock=clock)
    fill(log, clock, 5)
    log.trim(max_entries=2)

    result = verify(env(server))

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "audit trail OK: 2 entries verified (seq 4 to 5)"
    assert lines[1] == "keyed from: none (no retained entry is signed with an HMAC key)"
    assert any(
        line.startswith(
            "warning: no HMAC key configured: the head and the retention anchor "
            "cannot be authenticated"
        )
        for line in lines
    )


def test_a_checkpoint_kept_outside_redis_catches_a_rollback_to_an_older_genuine_head(
    server: RedisServer, client: redis.Redis
) -> None:
    clock = FakeClock()
    log = RedisAuditLog(client, KEYS, clock=clock, hmac_key=SECRET1.encode())
    fill(log, clock, 3)
    saved_head = client.hgetall(KEYS.audit_head)  # what an attacker copies now ...
    fill(log, clock, 2, 3)
    keyed_env = env(server, ROLLOUT_BOT_AUDIT_HMAC_KEY=SECRET1)
    first = verify(keyed_env)
    [checkpoint] = [
        line.removeprefix("checkpoint: ")
        for line in first.stdout.splitlines()
        if line.startswith("checkpoint: ")
    ]
    assert checkpoint.startswith("5:")

    # ... and later: drop the newest entries (rebuilding the stream with the same ids, which
    # also resets Redis's own counters) and restore the saved head.
    kept = rows(client)[:3]
    client.delete(KEYS.audit, KEYS.audit_head)
    for stream_id, fields in kept:
        client.xadd(KEYS.audit, dict(fields), id=stream_id)
    client.hset(KEYS.audit_head, mapping=saved_head)

    # Nothing left in Redis shows it: the head is genuine, only older.
    assert verify(keyed_env).returncode == 0
    report = failure(
        subprocess.run(
            [str(ROLLOUT_BOT), "audit", "verify", "--checkpoint", checkpoint],
            env=keyed_env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    )
    assert report["missing"] == {"from_seq": 4, "to_seq": 5, "at": "newest"}
    assert "rolled back" in report["problem"]


def test_a_malformed_checkpoint_is_refused(server: RedisServer) -> None:
    result = subprocess.run(
        [str(ROLLOUT_BOT), "audit", "verify", "--checkpoint", "five"],
        env=env(server),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "--checkpoint must be SEQ:HASH" in result.stderr

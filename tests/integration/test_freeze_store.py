"""Freezes set from Slack against a real redis-server: sealed, audited, ending on their own,
and ignored when they were written or edited outside the bot."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from slack_sdk import WebClient

from bot.adapters.redis.audit import RedisAuditLog
from bot.adapters.redis.freezes import RedisFreezeStore
from bot.adapters.redis.keys import Keys
from bot.adapters.slack.directory import SlackDirectory
from bot.domain import verbs as cmd
from bot.domain.errors import Refused, StoreUnavailable
from bot.domain.freezes import Frozen
from bot.domain.integrity import Sealer
from bot.domain.policy import load_policy
from bot.domain.targets import Actor
from bot.services.access import Access
from bot.services.freezes import FreezeService
from tests.devkit.redis_server import RedisServer
from tests.integration.conftest import FakeClock

pytestmark = pytest.mark.redis

ALICE = Actor("U0ALICE", "alice", "C0DEPLOYS")
SET_IMAGE = cmd.SetImage(name="web", images=(("nginx", "nginx:2"),), namespace="prod")


def service(
    client: redis.Redis, keys: Keys, tmp_path: Path, clock: FakeClock | None = None
) -> FreezeService:
    policy = tmp_path / "policy.yaml"
    policy.write_text("permissions: []\n")
    access = Access(load_policy(policy), SlackDirectory(WebClient()), policy_loaded=True)
    return FreezeService(
        access,
        RedisFreezeStore(client, keys),
        RedisAuditLog(client, keys),
        Sealer(b"k" * 32),
        cluster_name="test",
        clock=clock,
    )


def freeze(freezes: FreezeService, seconds: int = 3600) -> None:
    command = cmd.Freeze(seconds=seconds, reason="incident 4711", namespace="prod")
    freezes.freeze(command, "prod", "test", ALICE, "")


def test_a_freeze_stops_changes_but_not_undo_and_is_audited(
    client: redis.Redis, keys: Keys, tmp_path: Path, clock: FakeClock
) -> None:
    freezes = service(client, keys, tmp_path, clock)
    freeze(freezes)

    with pytest.raises(Frozen) as refused:
        freezes.gate(SET_IMAGE, "prod", "test", ALICE)
    assert "frozen by *incident freeze* (incident 4711)" in refused.value.user_message
    assert freezes.blocking("undo", "prod", "test") is None
    assert freezes.blocking("set-image", "staging", "test") is None
    assert freezes.blocking("set-image", "prod", "other-cluster") is None
    events = [entry.event for entry in RedisAuditLog(client, keys).recent(10)]
    assert events.count("freeze") == 1 and events.count("denial") == 1
    clock.advance(timedelta(hours=1))
    assert freezes.blocking("set-image", "prod", "test") is None


def test_a_freeze_ends_on_its_own_in_redis(client: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    freezes = service(client, keys, tmp_path)
    freeze(freezes, seconds=1)
    assert freezes.blocking("set-image", "prod", "test") is not None

    time.sleep(1.3)

    assert client.get(keys.freeze("test", "prod")) is None
    assert freezes.overview(None, None).in_force == ()
    assert client.smembers(keys.freezes) == set()


def test_a_freeze_edited_or_written_outside_the_bot_is_ignored(
    client: redis.Redis, keys: Keys, tmp_path: Path, clock: FakeClock
) -> None:
    freezes = service(client, keys, tmp_path, clock)
    freeze(freezes)
    key = keys.freeze("test", "prod")
    record = json.loads(client.get(key) or b"{}")
    record["reason"] = "someone else's words"
    client.set(key, json.dumps(record))

    assert freezes.blocking("set-image", "prod", "test") is None
    record["seal"] = ""
    client.set(keys.freeze("test", "staging"), json.dumps({**record, "namespace": "staging"}))
    client.sadd(keys.freezes, "test:staging")
    assert freezes.overview(None, None).in_force == ()


def test_without_redis_a_change_is_refused_with_the_store_message(
    server: RedisServer, keys: Keys, tmp_path: Path
) -> None:
    client = redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    freezes = service(client, keys, tmp_path)

    with pytest.raises(StoreUnavailable) as failed:
        freezes.gate(SET_IMAGE, "prod", "test", ALICE)
    assert "state store is unavailable" in failed.value.message


def test_without_a_shared_state_key_a_slack_freeze_is_refused_not_silently_weak(
    client: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    freezes = service(client, keys, tmp_path)
    freezes.shared_key = False  # as the runtime builds it when ROLLOUT_BOT_STATE_KEY is unset

    with pytest.raises(Refused) as refused:
        freeze(freezes)

    assert "ROLLOUT_BOT_STATE_KEY" in refused.value.user_message
    assert "Nothing was frozen" in refused.value.user_message
    assert freezes.blocking("set-image", "prod", "test") is None
    assert [entry.event for entry in RedisAuditLog(client, keys).recent(10)] == []

"""`rollout-bot audit verify|export` against the trail the real bot wrote to a real Redis.

The bot pauses Deployments and sets their image in a namespace without an approval rule
(each change writes `execution` and `outcome` entries); the CLI then runs as a separate
process with the bot's environment.
Tampering is done the way someone with Redis access would: straight on the stream.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.adapters.redis.keys import Keys
from bot.domain.audit_chain import GENESIS_HASH
from tests.devkit.control_plane import ClusterInfo
from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import ROLLOUT_BOT, SlackDriver, bot_env, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(90)]

STREAM = Keys().audit


@pytest.fixture
def cli_env(
    cluster: ClusterInfo, slack: SlackStandin, redis_url: str, policy_file: Path
) -> dict[str, str]:
    return bot_env(
        slack=slack, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=policy_file
    )


@pytest.fixture
def store(redis_server: RedisServer, redis_url: str) -> redis.Redis:
    return redis_server.client()


def rollout_bot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROLLOUT_BOT), *args], env=env, capture_output=True, text=True, timeout=30
    )


def act(driver: SlackDriver, kubectl: Kubectl, name: str) -> None:
    """Two audited mutations through the bot on a Deployment made with kubectl.

    A paused Deployment rolls nothing out, so no progress verdict is audited later: when the
    bot has announced the change, every entry of it is in the trail.
    """
    kubectl.apply(deployment_manifest(name, "nginx:1.18-alpine", replicas=1))
    announce(driver, f"pause {name} -n {kubectl.namespace}", f"deployment.apps/{name} paused")
    announce(
        driver,
        f"set image {name} {name}=nginx:1.19-alpine -n {kubectl.namespace} --reason=load",
        f"deployment.apps/{name} image updated",
    )


def announce(driver: SlackDriver, text: str, expected: str) -> None:
    """Run a mutation and wait for the channel announcement that contains `expected`."""
    before = len(driver.slack.calls("chat.postMessage"))
    driver.command(text)
    driver.wait(
        lambda: any(
            expected in message_text(call.params)
            for call in driver.slack.calls("chat.postMessage")[before:]
        ),
        what=f"{expected!r} in the channel",
    )


def exported(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    result = rollout_bot(env, "audit", "export", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def failed_verification(env: dict[str, str]) -> dict[str, Any]:
    result = rollout_bot(env, "audit", "verify")
    assert result.returncode != 0, result.stdout
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["ok"] is False
    return report


def test_verify_accepts_the_trail_the_bot_wrote(
    driver: SlackDriver,
    kubectl: Kubectl,
    granted_namespace: str,
    cli_env: dict[str, str],
    store: redis.Redis,
) -> None:
    act(driver, kubectl, "web")

    result = rollout_bot(cli_env, "audit", "verify")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"audit trail OK: {store.xlen(STREAM)} entries verified" in result.stdout
    assert store.xlen(STREAM) == 4


def test_export_writes_json_lines_with_the_hash_chain(
    driver: SlackDriver,
    kubectl: Kubectl,
    granted_namespace: str,
    cli_env: dict[str, str],
    store: redis.Redis,
) -> None:
    act(driver, kubectl, "web")

    entries = exported(cli_env)

    assert [e["stream_id"] for e in entries] == [sid for sid, _ in store.xrange(STREAM)]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    previous = GENESIS_HASH
    for entry in entries:
        assert re.fullmatch(r"[0-9a-f]{64}", entry["hash"])
        assert entry["prev_hash"] == previous
        previous = entry["hash"]
    mine = [
        (e["event"], e["action"], e["outcome"])
        for e in entries
        if e["namespace"] == granted_namespace
    ]
    assert mine == [
        ("execution", "pause", ""),
        ("outcome", "pause", "changed"),
        ("execution", "set-image", ""),
        ("outcome", "set-image", "changed"),
    ]
    last = entries[-1]
    assert last["user_id"] == "U0ALICE" and last["reason"] == "load"
    assert last["deployment"] == "web" and last["revision_before"] == 1
    assert last["images_before"] == {"web": "nginx:1.18-alpine"}
    assert last["images_after"] == {"web": "nginx:1.19-alpine"}


def test_export_since_keeps_only_entries_from_that_time_on(
    driver: SlackDriver, kubectl: Kubectl, granted_namespace: str, cli_env: dict[str, str]
) -> None:
    act(driver, kubectl, "early")
    time.sleep(0.05)
    since = datetime.now(UTC)
    time.sleep(0.05)
    act(driver, kubectl, "late")

    everything = exported(cli_env)
    later = exported(cli_env, "--since", since.isoformat())

    assert {e["deployment"] for e in everything} == {"early", "late"}
    assert {e["deployment"] for e in later} == {"late"}
    assert later == [e for e in everything if e["deployment"] == "late"]
    # A date without a time is midnight UTC; a naive time is UTC too.
    assert exported(cli_env, "--since", "2999-01-01") == []
    assert exported(cli_env, "--since", since.replace(tzinfo=None).isoformat()) == later

    bad = rollout_bot(cli_env, "audit", "export", "--since", "last tuesday")
    assert bad.returncode == 2 and "--since must be an ISO date or time" in bad.stderr


def test_verify_names_the_entry_whose_field_was_edited(
    driver: SlackDriver,
    kubectl: Kubectl,
    granted_namespace: str,
    cli_env: dict[str, str],
    store: redis.Redis,
) -> None:
    act(driver, kubectl, "web")
    entries = store.xrange(STREAM)
    edited_id = entries[2][0]

    # Rewrite the stream with the same ids, one field of one entry changed.
    store.delete(STREAM)
    for stream_id, fields in entries:
        if stream_id == edited_id:
            fields = {**fields, "user_id": "U0MALLORY"}
        store.xadd(STREAM, fields, id=stream_id)
    assert [sid for sid, _ in store.xrange(STREAM)] == [sid for sid, _ in entries]

    report = failed_verification(cli_env)

    assert report["first_bad_entry"] == edited_id
    assert "seq 3 was altered" in report["problem"]


def test_verify_names_a_deleted_entry_by_its_place_in_the_chain(
    driver: SlackDriver,
    kubectl: Kubectl,
    granted_namespace: str,
    cli_env: dict[str, str],
    store: redis.Redis,
) -> None:
    act(driver, kubectl, "web")
    ids = [sid for sid, _ in store.xrange(STREAM)]
    store.xdel(STREAM, ids[1])

    report = failed_verification(cli_env)

    # The removed entry's id is gone with it: the report names its seq and the entry after it.
    assert report["problem"] == "seq 2 missing before this entry (removed)"
    assert report["first_bad_entry"] == ids[2]


def test_verify_names_a_deleted_last_entry_by_its_id(
    driver: SlackDriver,
    kubectl: Kubectl,
    granted_namespace: str,
    cli_env: dict[str, str],
    store: redis.Redis,
) -> None:
    act(driver, kubectl, "web")
    ids = [sid for sid, _ in store.xrange(STREAM)]
    store.xdel(STREAM, ids[-1])

    report = failed_verification(cli_env)

    # The head record still names the last entry written.
    assert report["first_bad_entry"] == ids[-1]
    assert f"up to seq {len(ids)}" in report["problem"]

"""What an operator sees of a running bot, checked against what really happened: /metrics
after a walkthrough (cross-checked with the Slack stand-in's record and the audit trail), and
a policy edited under a running bot (applied and audited; an invalid edit refused and shown)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.adapters.redis.audit import RedisAuditLog
from bot.adapters.redis.keys import Keys
from tests.conftest import TEST_POLICY
from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import BotProcess, SlackDriver
from tests.support.kubectl import Kubectl
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(bot: BotProcess) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for (n, k), v in samples.items() if n == name and v}


def test_metrics_count_what_the_walkthrough_did(
    driver: SlackDriver,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
    redis_server: RedisServer,
) -> None:
    ns = granted_namespace
    assert "created" in driver.run(f"create web --image=nginx:1.18-alpine -n {ns}")
    assert kubectl.rollout_status("web").returncode == 0
    assert "scaled" in driver.run(f"scale web --replicas=2 -n {ns}")
    assert "image updated" in driver.run(f"set image web nginx=nginx:1.19-alpine -n {ns}")
    assert kubectl.rollout_status("web").returncode == 0
    assert "web" in driver.ask(f"status web -n {ns}")
    refused = driver.run(f"scale web --replicas=5 -n {ns}", user="U0MALLORY", name="mallory")
    assert "not allowed" in refused
    assert driver.ask("scale --replicas=x").strip()  # a parse error, answered in the ack

    # Each change that started a rollout got one progress message in a thread, and ends in a
    # verdict; wait until every one has (the metric), then compare with what Slack was sent.
    def progress_messages() -> int:
        return len([c for c in slack.calls("chat.postMessage") if c.params.get("thread_ts")])

    def verdicts() -> Samples:
        return {k: v for k, v in scrape(driver.bot).items() if "verdict" in k[0] or "track" in k[0]}

    expected_commands = {
        ("create", "ok"): 1,
        ("scale", "ok"): 1,
        ("set-image", "ok"): 1,
        ("status", "ok"): 1,
        ("scale", "denied"): 1,
        ("unknown", "invalid"): 1,
    }

    def commands(samples: Samples) -> dict[tuple[str, str], float]:
        return {
            (dict(k)["verb"], dict(k)["outcome"]): v
            for (n, k), v in samples.items()
            if n == "rollout_bot_commands_total"
        }

    samples = eventually(
        "a verdict for every progress message",
        lambda: (
            (s := scrape(driver.bot))
            and value(s, "rollout_bot_rollout_verdicts_total", verdict="succeeded")
            == progress_messages()
            # ... and its final frame was shown (the lag is observed on delivery).
            and value(s, "rollout_bot_progress_lag_seconds_count") == progress_messages()
            # Worker processes send their counts back in batches, a fraction of a second apart.
            and commands(s) == expected_commands
            and s
        ),
        timeout=60,
        every=0.2,
        detail=verdicts,
    )
    assert progress_messages() == 3  # create, scale, set image
    assert commands(samples) == expected_commands
    assert value(samples, "rollout_bot_ack_seconds_count") == 6
    kube = by_label(
        {k: v for k, v in samples.items() if dict(k[1]).get("resource") == "deployments"},
        "rollout_bot_kubernetes_api_calls_total",
        "verb",
    )
    assert kube["create"] == 1 and kube["patch"] >= 2 and kube["watch"] >= 1
    # Every Web API call the stand-in saw is counted, method by method.
    seen = Counter(c.method for c in slack.calls() if c.method != "response_url")
    counted = by_label(samples, "rollout_bot_slack_api_calls_total", "method")
    assert counted == dict(seen)
    # Every audit entry written is counted, event by event.
    written = Counter(e.event for e in RedisAuditLog(redis_server.client(), Keys()).export())
    assert by_label(samples, "rollout_bot_audit_entries_written_total", "event") == dict(written)
    assert value(samples, "rollout_bot_rollouts_tracked") == 0
    assert value(samples, "rollout_bot_progress_lag_seconds_count") == 3
    assert value(samples, "rollout_bot_dependency_up", dependency="kubernetes") in (0, 1)


MALLORY_ALLOWED = TEST_POLICY.replace("[U0ALICE, U0CAROL, S0DEVS]", "[U0ALICE, U0CAROL, U0MALLORY]")
INVALID = TEST_POLICY.replace('actions: ["*"]', "actions: [fly]")


def readyz(bot: BotProcess) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_policy_edit_applies_without_restart_and_an_invalid_one_is_refused(
    start_bot: Any,
    slack: SlackStandin,
    kubectl: Kubectl,
    granted_namespace: str,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    ns = granted_namespace
    policy = tmp_path / "live-policy.yaml"
    policy.write_text(TEST_POLICY)
    bot = start_bot(
        policy=policy,
        env={"ROLLOUT_BOT_POLICY_RELOAD_INTERVAL": "0.5", "ROLLOUT_BOT_LOG_FORMAT": "json"},
    )
    driver = SlackDriver(slack, bot)
    assert "created" in driver.run(f"create web --image=nginx:1.18-alpine -n {ns}")
    mallory = {"user": "U0MALLORY", "name": "mallory"}
    assert "not allowed" in driver.run(f"scale web --replicas=2 -n {ns}", **mallory)

    policy.write_text(MALLORY_ALLOWED)
    eventually(
        "the edit to be applied",
        lambda: value(scrape(bot), "rollout_bot_policy_reloads_total", result="applied") == 1,
        timeout=60,
    )
    # Each worker process checks the file on its own; within a few intervals all have the edit.
    eventually(
        "the edit to reach the worker that runs the command",
        lambda: "scaled" in driver.run(f"scale web --replicas=2 -n {ns}", **mallory),
        timeout=15,
    )

    policy.write_text(INVALID)
    status, body = eventually(
        "the invalid edit to show in /readyz",
        lambda: (a := readyz(bot)) and a[1].get("policy") == "invalid" and a,
        timeout=60,
    )
    assert status == 200, "the old policy still serves: an invalid edit is no reason to drain"
    # The Slack port is open to anyone: it says the policy is invalid, never what is in it.
    assert "policy_problems" not in body and "fly" not in json.dumps(body)
    (problem,) = [
        line["msg"].removeprefix("policy not reloaded: ")
        for line in (json.loads(text) for text in bot.logs().splitlines() if text.strip())
        if line["msg"].startswith("policy not reloaded: ")
    ][:1]
    assert problem.startswith(f"{policy}:") and "fly" in problem
    line = int(problem.split(":")[1])
    assert "fly" in INVALID.splitlines()[line - 1]
    samples = scrape(bot)
    assert value(samples, "rollout_bot_policy_valid") == 0
    assert value(samples, "rollout_bot_policy_reloads_total", result="invalid") == 1
    # The previous (valid) version is still in force.
    time.sleep(1.5)  # several reload intervals: every worker has looked at the invalid file
    for replicas in (3, 4):
        assert "scaled" in driver.run(f"scale web --replicas={replicas} -n {ns}", **mallory)
    # JSON logs: every line is an object; the refusal names file:line; commands carry context.
    lines = [json.loads(line) for line in bot.logs().splitlines() if line.strip()]
    assert any(problem in line["msg"] and line["level"] == "ERROR" for line in lines)
    assert any(line.get("user") == "U0MALLORY" and line.get("verb") == "scale" for line in lines)

    policy.write_text(TEST_POLICY)
    eventually("the fixed policy", lambda: readyz(bot)[1].get("policy") == "ok", timeout=60)
    eventually(
        "the fixed policy to reach every worker",
        lambda: "not allowed" in driver.run(f"scale web --replicas=1 -n {ns}", **mallory),
        timeout=15,
    )
    reloads = [
        e
        for e in RedisAuditLog(redis_server.client(), Keys()).export()
        if e.event == "policy_reload"
    ]
    assert len(reloads) == 2 and all(e.outcome == "applied" for e in reloads)
    assert reloads[0].parameters["file"] == str(policy)

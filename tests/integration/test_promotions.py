"""Promotion through the real bot: `/rollout promote` moves what runs in staging to the
production contexts wave by wave, with a gate between waves.

One control plane serves every context: `staging`, `prod-eu`, `prod-us` and `prod-ap` are
kubeconfig contexts (merged kubectl's way through KUBECONFIG=a:b:…) that each work in their own
namespace of it. kubectl is the oracle for which images every target runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.redis.audit import RedisAuditLog
from bot.adapters.redis.keys import Keys
from handlers.views.promotions import PROMOTION_APPROVE_ACTION, PROMOTION_HALT_ACTION
from tests.conftest import grant_bot
from tests.devkit.control_plane import ClusterInfo
from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.records import PostedMessage
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest
from tests.support.multicluster import kubeconfig_path, named_kubeconfig

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(300)]

CHANNEL = "C0DEPLOYS"
CONTEXTS = ("staging", "prod-eu", "prod-us", "prod-ap")
OLD, NEW = "app:1", "app:2"
FAST = {"ROLLOUT_BOT_PROGRESS_INTERVAL": "0.5"}


class Estate:
    """One namespace per context, each with Deployment `web`; staging runs NEW, prod OLD."""

    def __init__(self, admin: Kubectl) -> None:
        base = f"t-{uuid.uuid4().hex[:8]}"
        self.admin = admin
        self.namespaces = {context: f"{base}-{context}" for context in CONTEXTS}

    def kubectl(self, context: str) -> Kubectl:
        return self.admin.in_namespace(self.namespaces[context])

    def image(self, context: str) -> str:
        return self.kubectl(context).images("web")["web"]

    def generation(self, context: str) -> int:
        return int(self.kubectl(context).get("deployment", "web")["metadata"]["generation"])

    def target(self, context: str) -> str:
        return (
            f"{{context: {context}, namespace: {self.namespaces[context]}, workload: deploy/web}}"
        )

    def policy(
        self,
        waves: list[list[str]],
        *,
        gate: str = "approval",
        on_failure: str = "halt",
        gated: tuple[str, ...] = ("prod-us", "prod-ap"),
    ) -> str:
        covered = ", ".join(self.namespaces[c] for c in gated) or "none-covered"
        lines = [
            "channels:",
            f"  {CHANNEL}: {{namespace: {self.namespaces['staging']}}}",
            "permissions:",
            '  - users: ["*"]',
            '    namespaces: ["*"]',
            "    actions: [list, status, history, diff, approvals, audit, promotions]",
            "  - users: [U0ALICE, U0BOB]",
            '    namespaces: ["*"]',
            '    actions: ["*"]',
            "approvals:",
            f"  - namespaces: [{covered}]",
            "    actions: [set-image]",
            "    required: 1",
            "    approvers: [U0BOB, U0ALICE]",
            "pipelines:",
            "  web:",
            f"    from: {self.target('staging')}",
            "    waves:",
            *("      - [" + ", ".join(self.target(c) for c in wave) + "]" for wave in waves),
            f"    gate: {gate}",
            "    soak: 1s",
            f"    on_failure: {on_failure}",
        ]
        return "\n".join(lines) + "\n"


@pytest.fixture
def estate(admin_kubectl: Kubectl, bot_rbac: str) -> Iterator[Estate]:
    estate = Estate(admin_kubectl)
    for context, name in estate.namespaces.items():
        admin_kubectl.run("create", "namespace", name)
        grant_bot(admin_kubectl, name)
        image = NEW if context == "staging" else OLD
        estate.kubectl(context).apply(deployment_manifest("web", image, replicas=1))
    for context in CONTEXTS:
        assert estate.kubectl(context).rollout_status("web").returncode == 0
    yield estate
    for name in estate.namespaces.values():
        admin_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubeconfig(cluster: ClusterInfo, tmp_path: Path) -> str:
    return kubeconfig_path(
        [
            named_kubeconfig(cluster.bot_kubeconfig, name, tmp_path / f"{name}.kubeconfig")
            for name in CONTEXTS
        ]
    )


@pytest.fixture
def launch(start_bot: Any, slack: SlackStandin, kubeconfig: str, tmp_path: Path) -> Any:
    def launch(policy: str) -> SlackDriver:
        path = tmp_path / "promotion-policy.yaml"
        path.write_text(policy)
        env = {**FAST, "KUBECONFIG": kubeconfig, "ROLLOUT_BOT_CONTEXTS": ",".join(CONTEXTS)}
        return SlackDriver(slack, start_bot(policy=path, env=env))

    return launch


@pytest.fixture
def audit(redis_server: RedisServer, redis_url: str) -> RedisAuditLog:
    return RedisAuditLog(redis_server.client(), Keys())


def promotion_message(slack: SlackStandin) -> PostedMessage | None:
    for message in slack.messages(CHANNEL):
        if message.thread_ts is None and "Promotion `p-" in message_text(message.as_api_dict()):
            return message
    return None


def text_of(slack: SlackStandin) -> str:
    message = promotion_message(slack)
    return message_text(message.as_api_dict()) if message else ""


def gate_button(slack: SlackStandin) -> str | None:
    """The value of the open gate's Approve button, if any."""
    message = promotion_message(slack)
    for block in message.blocks if message else []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == PROMOTION_APPROVE_ACTION:
                return str(element["value"])
    return None


def ephemeral(driver: SlackDriver, tag: str) -> str:
    return message_text(driver.reply(tag).params)


def steps(audit: RedisAuditLog, promotion_id: str) -> list[str]:
    return [
        f"{entry.parameters.get('step')}:{entry.parameters.get('wave', '')}"
        for entry in audit.recent(500)
        if entry.event == "promotion" and entry.parameters.get("promotion") == promotion_id
    ][::-1]


# -- the whole line -----------------------------------------------------------------------------


def test_three_waves_with_approval_gates_reach_every_target_and_the_requester_cannot_approve(
    estate: Estate, launch: Any, slack: SlackStandin, audit: RedisAuditLog
) -> None:
    driver = launch(estate.policy([["prod-eu"], ["prod-us"], ["prod-ap"]]))

    plan = driver.ask("promote web --dry-run")
    assert "dry run" in plan and f"`{OLD}` → `{NEW}`" in plan
    assert estate.image("prod-eu") == OLD and promotion_message(slack) is None

    said = driver.run("promote web")
    assert "Promotion `p-" in said, said
    text = text_of(slack)
    assert f"`prod-eu/{estate.namespaces['prod-eu']}/web`" in text and "<@U0BOB>" in text

    # Wave 1 has no approval rule: it runs at once; the gate before wave 2 then opens.
    value = driver.wait(lambda: gate_button(slack), timeout=90, what="the gate before wave 2")
    assert value.endswith(":1")
    assert estate.image("prod-eu") == NEW
    assert estate.image("prod-us") == OLD and estate.image("prod-ap") == OLD

    # Four-eyes: the person who promoted cannot open a gate.
    _, tag = driver.click(PROMOTION_APPROVE_ACTION, value, user="U0ALICE", name="alice")
    assert "four-eyes" in ephemeral(driver, tag)
    assert gate_button(slack) == value and estate.image("prod-us") == OLD

    _, tag = driver.click(PROMOTION_APPROVE_ACTION, value, user="U0BOB", name="bob")
    assert "opened the gate" in ephemeral(driver, tag)
    last = driver.wait(
        lambda: (gate_button(slack) or "").endswith(":2") and gate_button(slack),
        timeout=90,
        what="the gate before wave 3",
    )
    assert estate.image("prod-us") == NEW and estate.image("prod-ap") == OLD

    driver.click(PROMOTION_APPROVE_ACTION, last, user="U0BOB", name="bob")
    driver.wait(lambda: "finished" in text_of(slack), timeout=90, what="the promotion to finish")
    assert [estate.image(c) for c in CONTEXTS] == [NEW] * 4

    # Every per-target progress message is in the promotion message's thread.
    message = promotion_message(slack)
    assert message is not None
    threaded = [m for m in slack.messages(CHANNEL) if m.thread_ts == message.ts]
    assert len(threaded) >= 3
    listed = driver.ask("promotions")
    promotion_id = value.split(":")[0]
    assert promotion_id in listed and "finished" in listed
    recorded = steps(audit, promotion_id)
    for step in (
        "started:",
        "wave started:1",
        "gate opened:2",
        "gate approval refused:2",
        "gate approved:2",
        "wave started:3",
        "finished:3",
    ):
        assert step in recorded, recorded
    assert recorded.count("wave started:2") == 1


def test_a_target_that_cannot_roll_out_halts_and_rolls_back_and_the_next_wave_is_untouched(
    estate: Estate, launch: Any, slack: SlackStandin, audit: RedisAuditLog
) -> None:
    # prod-eu has no room for the new pod and gives up after 5 s.
    eu = estate.kubectl("prod-eu")
    eu.apply(deployment_manifest("web", OLD, replicas=1, progress_deadline=5))
    eu.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "full"},
            "spec": {"hard": {"pods": "1"}},
        }
    )
    eu.wait_for(
        lambda: (
            eu.get("resourcequota", "full").get("status", {}).get("used", {}).get("pods") == "1"
        ),
        what="the quota to count the running pod",
    )
    driver = launch(
        estate.policy([["prod-eu"], ["prod-us"]], gate="auto", on_failure="rollback", gated=())
    )
    driver.command("promote web")
    driver.wait(lambda: "halted" in text_of(slack), timeout=120, what="the promotion to halt")
    text = text_of(slack)
    assert "failed" in text and "--resume" in text
    # The failed wave is undone once; no later wave started.
    eu.wait_for(lambda: estate.image("prod-eu") == OLD, what="the rollback of prod-eu")
    assert estate.image("prod-us") == OLD
    assert estate.generation("prod-us") == 1
    promotion_id = text.split("Promotion `")[1].split("`")[0]
    recorded = steps(audit, promotion_id)
    assert "halted:1" in recorded and recorded.count("target rolled back:1") == 1
    assert not any(step.endswith(":2") for step in recorded), recorded


def test_a_bot_killed_between_waves_resumes_without_repeating_a_wave(
    estate: Estate, launch: Any, slack: SlackStandin, audit: RedisAuditLog
) -> None:
    policy = estate.policy([["prod-eu"], ["prod-us"]])
    driver = launch(policy)
    driver.command("promote web")
    value = driver.wait(lambda: gate_button(slack), timeout=90, what="the gate before wave 2")
    generation = estate.generation("prod-eu")
    driver.bot.kill()

    # A new bot (a restart, or another replica) picks the promotion up from Redis.
    driver = launch(policy)
    _, tag = driver.click(PROMOTION_APPROVE_ACTION, value, user="U0BOB", name="bob")
    assert "opened the gate" in ephemeral(driver, tag)
    driver.wait(lambda: "finished" in text_of(slack), timeout=90, what="the promotion to finish")
    assert estate.image("prod-us") == NEW
    assert estate.generation("prod-eu") == generation  # wave 1 was not made again
    recorded = steps(audit, value.split(":")[0])
    assert recorded.count("wave started:1") == 1 and recorded.count("wave started:2") == 1


def test_an_unhealthy_source_is_refused_saying_why(
    estate: Estate, launch: Any, slack: SlackStandin
) -> None:
    staging = estate.kubectl("staging")
    staging.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "full"},
            "spec": {"hard": {"pods": "1"}},
        }
    )
    staging.wait_for(
        lambda: (
            staging.get("resourcequota", "full").get("status", {}).get("used", {}).get("pods")
            == "1"
        ),
        what="the quota to count the running pod",
    )
    staging.run("set", "image", "deployment/web", "web=app:3")
    driver = launch(estate.policy([["prod-eu"], ["prod-us"]]))
    said = driver.ask("promote web")  # the refusal, to the promoter only
    assert "not fully rolled out and healthy" in said and "Nothing was changed" in said
    assert promotion_message(slack) is None
    assert estate.image("prod-eu") == OLD and estate.image("prod-us") == OLD


def test_one_promotion_per_pipeline_halt_stops_it_and_resume_continues(
    estate: Estate, launch: Any, slack: SlackStandin
) -> None:
    driver = launch(estate.policy([["prod-eu"], ["prod-us"]]))
    driver.command("promote web")
    value = driver.wait(lambda: gate_button(slack), timeout=90, what="the gate before wave 2")

    said = driver.ask("promote web", user="U0BOB", name="bob")
    assert "is still running" in said and "one promotion at a time" in said

    _, tag = driver.click(PROMOTION_HALT_ACTION, value, user="U0ALICE", name="alice")
    assert "halted" in ephemeral(driver, tag)
    driver.wait(lambda: "halted by <@U0ALICE>" in text_of(slack), what="the halt on the message")
    _, tag = driver.click(PROMOTION_APPROVE_ACTION, value, user="U0BOB", name="bob")
    assert "not open" in ephemeral(driver, tag)
    assert estate.image("prod-us") == OLD

    said = driver.ask("promote web --resume")
    assert "resumes at wave 2" in said
    _, tag = driver.click(PROMOTION_APPROVE_ACTION, value, user="U0BOB", name="bob")
    assert "opened the gate" in ephemeral(driver, tag)
    driver.wait(lambda: "finished" in text_of(slack), timeout=90, what="the promotion to finish")
    assert estate.image("prod-us") == NEW

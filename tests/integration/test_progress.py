"""Live progress: one message per rollout, updated in place, ending in a verdict."""

from __future__ import annotations

import re
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from handlers.views.cards import APPROVE_ACTION
from tests.conftest import TEST_POLICY
from tests.devkit.slack.records import PostedMessage
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

FAST = {"ROLLOUT_BOT_PROGRESS_INTERVAL": "0.5"}


def progress_messages(slack: SlackStandin, channel: str, thread_ts: str) -> list[PostedMessage]:
    return [m for m in slack.messages(channel) if m.thread_ts == thread_ts]


def announcement(slack: SlackStandin, channel: str, contains: str) -> PostedMessage:
    for message in slack.messages(channel):
        if message.thread_ts is None and contains in message_text(message.as_api_dict()):
            return message
    raise AssertionError(f"no announcement containing {contains!r}")


def wait_for_verdict(
    driver: SlackDriver, channel: str, thread_ts: str, verdict: str, timeout: float = 90
) -> PostedMessage:
    def final() -> PostedMessage | None:
        for message in progress_messages(driver.slack, channel, thread_ts):
            if f"rollout *{verdict}*" in message_text(message.as_api_dict()):
                return message
        return None

    found: PostedMessage = driver.wait(final, timeout, what=f"a '{verdict}' verdict")
    return found


def deploy(
    kubectl: Kubectl,
    name: str,
    image: str = "app:1",
    replicas: int = 3,
    deadline: int | None = None,
    **strategy: Any,
) -> None:
    manifest = deployment_manifest(name, image, replicas=replicas, progress_deadline=deadline)
    if strategy:
        manifest["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": strategy}
    kubectl.apply(manifest)
    assert kubectl.rollout_status(name).returncode == 0


def test_successful_rollout_ends_in_one_message_that_says_succeeded(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy(kubectl, "web")
    said = driver.run(f"set image web web=app:2 -n {granted_namespace}")
    assert "image updated" in said
    head = announcement(slack, "C0DEPLOYS", "image updated")

    final = wait_for_verdict(driver, "C0DEPLOYS", head.ts, "succeeded")
    assert len(progress_messages(slack, "C0DEPLOYS", head.ts)) == 1
    text = message_text(final.as_api_dict())
    assert "3/3 updated" in text and 'deployment "web" successfully rolled out' in text
    assert kubectl.rollout_status("web").returncode == 0
    # Updated in place: the first version was not yet the verdict.
    assert "succeeded" not in message_text({"blocks": final.versions[0]["blocks"]})


def test_broken_image_fails_naming_the_reason_and_roll_back_restores_it(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy(kubectl, "api", replicas=2, deadline=4)
    driver.run(f"set image api api=app:broken-7 -n {granted_namespace}")
    head = announcement(slack, "C0DEPLOYS", "image updated")

    failed = wait_for_verdict(driver, "C0DEPLOYS", head.ts, "failed")
    text = message_text(failed.as_api_dict())
    assert "ImagePullBackOff" in text
    assert "exceeded its progress deadline" in text
    buttons = [e for b in failed.blocks if b["type"] == "actions" for e in b["elements"]]
    rollback = next(b for b in buttons if b["text"]["text"] == "Roll back")
    assert any(b["text"]["text"] == "Pause" for b in buttons)

    response, _ = driver.click(
        rollback["action_id"], rollback["value"], user="U0ALICE", message_ts=failed.ts
    )
    assert response.status == 200
    kubectl.wait_for(
        lambda: kubectl.images("api") == {"api": "app:1"}, what="the previous image to come back"
    )
    assert kubectl.rollout_status("api").returncode == 0


def test_roll_back_button_obeys_the_policy(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy(kubectl, "api", replicas=1, deadline=3)
    driver.run(f"set image api api=app:broken-1 -n {granted_namespace}")
    head = announcement(slack, "C0DEPLOYS", "image updated")
    failed = wait_for_verdict(driver, "C0DEPLOYS", head.ts, "failed")
    rollback = next(
        e
        for b in failed.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "progress_rollback"
    )
    _, tag = driver.click(
        rollback["action_id"], rollback["value"], user="U0MALLORY", message_ts=failed.ts
    )
    refusal = message_text(driver.reply(tag).params)
    assert "not allowed" in refusal and "undo" in refusal
    assert kubectl.images("api") == {"api": "app:broken-1"}


def test_on_failure_rollback_restores_the_previous_image(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    # on_failure comes from the approval rule that covers the action that started the rollout.
    policy = tmp_path / "rollback.yaml"
    rule = textwrap.indent(
        textwrap.dedent(f"""\
        - namespaces: [{granted_namespace}]
          actions: [set-image]
          required: 1
          approvers: [U0BOB]
          on_failure: rollback
        """),
        "  ",
    )
    policy.write_text(TEST_POLICY + rule)
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST))
    deploy(kubectl, "svc", replicas=2, deadline=4)
    said = driver.run(f"set image svc svc=app:broken-2 -n {granted_namespace}")
    request = re.search(r"request `([A-Za-z0-9_-]+)`", said)
    assert request, said
    head = announcement(slack, "C0DEPLOYS", "wants to run")
    driver.click(APPROVE_ACTION, request.group(1), user="U0BOB", name="bob", message_ts=head.ts)
    wait_for_verdict(driver, "C0DEPLOYS", head.ts, "failed")
    kubectl.wait_for(
        lambda: kubectl.images("svc") == {"svc": "app:1"}, what="the automatic rollback"
    )
    driver.wait(
        lambda: any(
            "rolled it back automatically" in message_text(m.as_api_dict())
            for m in progress_messages(slack, "C0DEPLOYS", head.ts)
        ),
        what="the thread to say it rolled back",
    )
    assert kubectl.rollout_status("svc").returncode == 0


def test_rate_limited_updates_are_delayed_but_the_verdict_arrives(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy(kubectl, "web")
    slack.fail_next("chat.update", status=429, retry_after=1, count=3)
    driver.run(f"set image web web=app:3 -n {granted_namespace}")
    head = announcement(slack, "C0DEPLOYS", "image updated")
    wait_for_verdict(driver, "C0DEPLOYS", head.ts, "succeeded")
    assert sum(1 for c in slack.calls("chat.update") if c.status == 429) == 3


def test_killed_bot_finishes_the_same_message_after_restart(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    first = start_bot(env=FAST)
    driver = SlackDriver(slack, first)
    deploy(kubectl, "slow", replicas=6, maxSurge=1, maxUnavailable=0)
    driver.run(f"set image slow slow=app:2 -n {granted_namespace}")
    head = announcement(slack, "C0DEPLOYS", "image updated")
    driver.wait(lambda: progress_messages(slack, "C0DEPLOYS", head.ts), what="progress message")
    first.kill()

    driver.bot = start_bot(env=FAST)
    final = wait_for_verdict(driver, "C0DEPLOYS", head.ts, "succeeded")
    assert len(progress_messages(slack, "C0DEPLOYS", head.ts)) == 1
    assert "6/6 updated" in message_text(final.as_api_dict())


def test_two_replicas_post_one_progress_message(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    one, two = start_bot(env=FAST), start_bot(env=FAST)
    deploy(kubectl, "pair")
    SlackDriver(slack, one).run(f"set image pair pair=app:2 -n {granted_namespace}")
    head = announcement(slack, "C0DEPLOYS", "image updated")
    wait_for_verdict(SlackDriver(slack, two), "C0DEPLOYS", head.ts, "succeeded")
    assert len(progress_messages(slack, "C0DEPLOYS", head.ts)) == 1
    assert len([m for m in slack.messages("C0DEPLOYS") if m.thread_ts is None]) == 1


def test_outside_kubectl_change_gets_exactly_one_notice(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    policy = tmp_path / "bound.yaml"
    policy.write_text(
        TEST_POLICY.replace(
            "C0DEPLOYS: {namespace: default}",
            f"C0OPS: {{namespace: {granted_namespace}, follow_outside: true}}",
        )
    )
    deploy(kubectl, "web")
    bots = [start_bot(policy=policy, env=FAST), start_bot(policy=policy, env=FAST)]
    kubectl.run("set", "image", "deployment/web", "web=app:9")

    def notices() -> list[PostedMessage]:
        return [
            m
            for m in slack.messages("C0OPS")
            if m.thread_ts is None and "from outside the bot" in m.text
        ]

    driver = SlackDriver(slack, bots[0], channel="C0OPS")
    notice = driver.wait(notices, 60, what="a notice")[0]
    text = message_text(notice.as_api_dict())
    assert "revision *2*" in text and "app:1" in text and "app:9" in text
    assert "kubectl-set" in text
    # The channel follows outside rollouts: one progress message, in the notice's thread.
    wait_for_verdict(driver, "C0OPS", notice.ts, "succeeded")
    assert len(progress_messages(slack, "C0OPS", notice.ts)) == 1

    # Restarting both replicas must not repeat it.
    for bot in bots:
        bot.kill()
    start_bot(policy=policy, env=FAST)
    threading.Event().wait(3)
    assert len(notices()) == 1


def test_scale_gets_a_progress_message_that_ends_when_the_pods_are_ready(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy(kubectl, "grow", replicas=1)
    said = driver.run(f"scale grow --replicas=4 -n {granted_namespace}")
    assert "replicas: 1 → 4" in said
    head = announcement(slack, "C0DEPLOYS", "scaled")
    final = wait_for_verdict(driver, "C0DEPLOYS", head.ts, "succeeded")
    assert "4 ready" in message_text(final.as_api_dict())
    assert kubectl.get("deployment/grow")["status"]["readyReplicas"] == 4

"""The channel as a user reads it, through the real bot, Redis, the control plane and kubectl.

Every assertion reads what the bot posted back from the Slack stand-in, as its latest version
(after every chat.update): who is named for an outside change, what a finished approval card
still says, whether the announcement names the approver, whether used buttons stay, and
whether the elapsed time moves while a rollout waits.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.views.cards import APPROVE_ACTION
from tests.conftest import TEST_POLICY, grant_bot
from tests.devkit.slack.records import PostedMessage
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(180)]

FAST = {"ROLLOUT_BOT_PROGRESS_INTERVAL": "0.5"}
CHANNEL = "C0DEPLOYS"


def top_level(slack: SlackStandin, channel: str, contains: str) -> list[PostedMessage]:
    return [
        m
        for m in slack.messages(channel)
        if m.thread_ts is None and contains in message_text(m.as_api_dict())
    ]


def in_thread(slack: SlackStandin, channel: str, ts: str) -> list[PostedMessage]:
    return [m for m in slack.messages(channel) if m.thread_ts == ts]


def now_text(slack: SlackStandin, channel: str, ts: str) -> str:
    [message] = [m for m in slack.messages(channel) if m.ts == ts]
    return message_text(message.as_api_dict())


def buttons(slack: SlackStandin, channel: str, ts: str) -> list[str]:
    [message] = [m for m in slack.messages(channel) if m.ts == ts]
    return [
        element["text"]["text"]
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def verdict(driver: SlackDriver, channel: str, thread_ts: str, word: str) -> PostedMessage:
    def found() -> PostedMessage | None:
        for message in in_thread(driver.slack, channel, thread_ts):
            if f"rollout *{word}*" in message_text(message.as_api_dict()):
                return message
        return None

    result: PostedMessage = driver.wait(found, 90, what=f"a '{word}' verdict")
    return result


def deploy(kubectl: Kubectl, name: str, image: str, **options: Any) -> None:
    kubectl.apply(deployment_manifest(name, image, **options))
    assert kubectl.rollout_status(name).returncode == 0


@pytest.fixture
def prod(admin_kubectl: Kubectl, bot_rbac: str) -> Iterator[Kubectl]:
    """A namespace the test policy's approval rule covers (`prod-*`, approver U0BOB)."""
    name = f"prod-{uuid.uuid4().hex[:8]}"
    admin_kubectl.run("create", "namespace", name)
    grant_bot(admin_kubectl, name)
    yield admin_kubectl.in_namespace(name)
    admin_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def test_kubectl_after_a_bot_change_is_blamed_on_kubectl_not_on_the_last_slack_user(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    policy = tmp_path / "bound.yaml"
    policy.write_text(
        TEST_POLICY.replace(
            "C0DEPLOYS: {namespace: default}", f"C0DEPLOYS: {{namespace: {granted_namespace}}}"
        )
    )
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST))
    deploy(kubectl, "web", "app:1", replicas=2)
    driver.run(f"set image web web=app:2 -n {granted_namespace}", user="U0ALICE", name="alice")
    [head] = top_level(slack, CHANNEL, "image updated")
    verdict(driver, CHANNEL, head.ts, "succeeded")

    # The change-cause still says "set image web=app:2 by @alice via Slack": kubectl leaves it.
    kubectl.run("set", "image", "deployment/web", "web=app:broken-3")
    [notice] = driver.wait(
        lambda: top_level(slack, CHANNEL, "from outside the bot"), 60, what="the notice"
    )
    text = message_text(notice.as_api_dict())

    assert re.search(r"Changed by: field manager `kubectl-set` at <!date\^\d+\^\{time\}", text)
    assert "@alice" not in text and "U0ALICE" not in text and "via Slack" not in text
    assert "app:2 → web=app:broken-3" in text


def test_an_approved_change_reads_as_what_happened(
    start_bot: Any, slack: SlackStandin, prod: Kubectl
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy(prod, "web", "nginx:1.18-alpine", replicas=2, container="nginx")
    namespace = prod.namespace
    _, tag = driver.command(
        f"set image web nginx=nginx:1.19-alpine -n {namespace}", user="U0ALICE", name="alice"
    )
    # The requester's reply: one approver, the verb as typed.
    said = message_text(driver.reply(tag, timeout=30).params)
    assert f"*set image* on `{namespace}/web` runs once one approver agrees." in said
    [card] = top_level(slack, CHANNEL, "Waiting for approval")
    pending = now_text(slack, CHANNEL, card.ts)
    assert "Approve or Reject: <@U0BOB>" in pending and "Cancel: <@U0ALICE>" in pending

    request_id = re.search(r"request `([A-Za-z0-9_-]+)`", pending)
    assert request_id
    response, _ = driver.click(
        APPROVE_ACTION, request_id.group(1), user="U0BOB", name="bob", message_ts=card.ts
    )
    assert response.status == 200
    done = driver.wait(
        lambda: "*Done*" in now_text(slack, CHANNEL, card.ts) and now_text(slack, CHANNEL, card.ts),
        30,
        what="the card to say Done",
    )

    # The finished card: who asked, who approved and when, where to look; no pending words.
    assert "requested by <@U0ALICE>" in done
    assert re.search(r"Approved by <@U0BOB> <!date\^", done)
    assert "in this thread" in done
    for pending_words in ("wants to run", "needs 1 of", "expires"):
        assert pending_words not in done
    assert buttons(slack, CHANNEL, card.ts) == []

    # The announcement in the card's thread names the approver, and says the change once.
    [announcement] = [
        message_text(m.as_api_dict())
        for m in in_thread(slack, CHANNEL, card.ts)
        if ":rocket:" in message_text(m.as_api_dict())
    ]
    assert "approved by <@U0BOB>" in announcement
    # One cluster: named on the card (ROLLOUT_BOT_CLUSTER_NAME), never in one channel's
    # announcements only (typed changes elsewhere do not name it).
    assert "in cluster" not in announcement
    assert announcement.count("nginx:1.19-alpine") == 1
    thread_and_card = "\n".join(
        [done, *(message_text(m.as_api_dict()) for m in in_thread(slack, CHANNEL, card.ts))]
    )
    assert thread_and_card.count("deployment.apps/web image updated") == 1


def test_roll_back_gives_way_to_who_rolled_back_and_the_clock_moves_while_waiting(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    driver = SlackDriver(slack, start_bot(env=FAST))
    deploy(kubectl, "api", "app:1", replicas=1, progress_deadline=14)
    driver.run(f"set image api api=app:broken-2 -n {granted_namespace}")
    [head] = top_level(slack, CHANNEL, "image updated")
    failed = verdict(driver, CHANNEL, head.ts, "failed")

    # While it waited (no event from the cluster), the elapsed time counted up.
    elapsed = {
        int(found.group(1))
        for version in failed.versions
        if (found := re.search(r"elapsed (\d+)s of the 14s", message_text(version)))
    }
    assert len(elapsed) >= 2 and max(elapsed) >= 5, elapsed

    assert buttons(slack, CHANNEL, failed.ts) == ["Roll back", "Pause"]
    rollback = next(e for b in failed.blocks if b["type"] == "actions" for e in b["elements"])
    response, _ = driver.click(
        rollback["action_id"], rollback["value"], user="U0ALICE", name="alice",
        message_ts=failed.ts,
    )  # fmt: skip
    assert response.status == 200
    text = driver.wait(
        lambda: (t := now_text(slack, CHANNEL, failed.ts)) and "Rolled back by" in t and t,
        30,
        what="the used buttons to give way",
    )
    assert re.search(r"Rolled back by <@U0ALICE> <!date\^", text)
    assert "rollout *failed*" in text  # what happened before stays
    assert buttons(slack, CHANNEL, failed.ts) == []
    kubectl.wait_for(lambda: kubectl.images("api") == {"api": "app:1"}, what="app:1 back")

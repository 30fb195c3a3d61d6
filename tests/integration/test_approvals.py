"""The approval flow through the real bot, a real Redis and the local control plane.

Every mutation in a `prod-*` namespace needs one approval from U0BOB or the S0SRE group
(U0ERIN) under TEST_POLICY. The tests type commands and click buttons as Slack would
(signed HTTP requests to `rollout-bot serve --http`), read what the bot posted from the
Slack stand-in, and check the cluster with kubectl and the audit trail in Redis.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.redis.approvals import RedisApprovalStore
from bot.adapters.redis.audit import AuditEntry, RedisAuditLog
from bot.adapters.redis.keys import Keys
from bot.domain import verbs as cmd
from bot.domain.approval import Approval, ApprovalRequest, ApprovalState
from bot.domain.integrity import Sealer
from handlers.views.cards import (
    APPROVE_ACTION,
    CANCEL_ACTION,
    REJECT_ACTION,
    REJECT_REASON_ACTION,
    REJECT_REASON_BLOCK,
)
from tests.conftest import TEST_POLICY
from tests.devkit.redis_server import RedisServer
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import STATE_KEY, BotProcess, SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(120)]

CHANNEL = "C0DEPLOYS"
NAMES = {
    "U0ALICE": "alice",
    "U0BOB": "bob",
    "U0CAROL": "carol",
    "U0ERIN": "erin",
    "U0MALLORY": "mallory",
}
OLD_IMAGE = "nginx:1.18-alpine"
NEW_IMAGE = "nginx:1.19-alpine"
STORE_DOWN = "state store is unavailable"


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def prod(admin_kubectl: Kubectl, prod_namespace: str) -> Kubectl:
    """kubectl in the prod namespace, with Deployment `web` (container nginx) rolled out."""
    kubectl = admin_kubectl.in_namespace(prod_namespace)
    kubectl.apply(deployment_manifest("web", OLD_IMAGE, replicas=2, container="nginx"))
    assert kubectl.rollout_status("web").returncode == 0
    return kubectl


@pytest.fixture
def audit(redis_server: RedisServer, redis_url: str) -> RedisAuditLog:
    """The bot's audit trail, read straight from Redis (default key prefix)."""
    return RedisAuditLog(redis_server.client(), Keys())


# -- helpers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    id: str
    ts: str


def card_text(slack: SlackStandin, card: Card) -> str:
    """What the approval card shows now (after every chat.update)."""
    for message in slack.messages(CHANNEL):
        if message.ts == card.ts:
            return message_text({"text": message.text, "blocks": message.blocks})
    raise AssertionError(f"no message {card.ts} in {CHANNEL}")


def card_buttons(slack: SlackStandin, card: Card) -> list[str]:
    """The action ids a user can still click or type into on the card."""
    for message in slack.messages(CHANNEL):
        if message.ts == card.ts:
            return [
                element.get("action_id", "")
                for block in message.blocks
                if block.get("type") == "actions"
                for element in block.get("elements", [])
            ]
    raise AssertionError(f"no message {card.ts} in {CHANNEL}")


def card_inputs(slack: SlackStandin, card: Card) -> list[tuple[str, str]]:
    """(block_id, action_id) of every input field on the card."""
    for message in slack.messages(CHANNEL):
        if message.ts == card.ts:
            return [
                (block.get("block_id", ""), block.get("element", {}).get("action_id", ""))
                for block in message.blocks
                if block.get("type") == "input"
            ]
    raise AssertionError(f"no message {card.ts} in {CHANNEL}")


def request_approval(driver: SlackDriver, text: str, *, user: str = "U0ALICE") -> Card:
    """Type a mutation that needs approval; returns the card the bot posted for it."""
    before = {m.ts for m in driver.slack.messages(CHANNEL)}
    said = driver.run(text, user=user, name=NAMES[user])
    found = re.search(r"request `([A-Za-z0-9_-]+)`", said)
    assert found, f"expected an approval card, the bot said:\n{said}"
    posted = [m for m in driver.slack.messages(CHANNEL) if m.ts not in before]
    assert len(posted) == 1, [m.text for m in posted]
    return Card(found.group(1), posted[0].ts)


def click(
    driver: SlackDriver,
    action_id: str,
    card: Card,
    user: str,
    *,
    state: dict[str, Any] | None = None,
) -> str:
    """Click a button on the card as `user`; returns the tag of the click's response_url."""
    response, tag = driver.click(
        action_id, card.id, user=user, name=NAMES[user], message_ts=card.ts, state=state
    )
    assert response.status == 200, (response.status, response.body)
    return tag


def ephemeral(driver: SlackDriver, tag: str, timeout: float = 30) -> str:
    """The text of the ephemeral answer the click (or command) with `tag` got."""
    return message_text(driver.reply(tag, timeout=timeout).params)


def click_answers(slack: SlackStandin, tags: list[str]) -> dict[str, str]:
    """Ephemeral answers by the tag of the click they answer."""
    return {
        call.params["_tag"]: message_text(call.params)
        for call in slack.calls("response_url")
        if call.params.get("_tag") in tags
    }


def thread_replies(slack: SlackStandin, card: Card) -> list[str]:
    return [
        message_text({"text": m.text, "blocks": m.blocks})
        for m in slack.messages(CHANNEL)
        if m.thread_ts == card.ts
    ]


def card_history(slack: SlackStandin, card: Card) -> list[str]:
    """The first line of every version the card has had, oldest first."""
    for message in slack.messages(CHANNEL):
        if message.ts == card.ts:
            return [message_text(version).splitlines()[0] for version in message.versions]
    return []


def wait_for_card(driver: SlackDriver, card: Card, marker: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = card_text(driver.slack, card)
        if marker in text:
            return text
        if time.monotonic() > deadline:
            history = "\n".join(card_history(driver.slack, card))
            raise AssertionError(
                f"the card never showed {marker!r}; its versions:\n{history}\n"
                f"bot log:\n{driver.bot.logs()[-3000:]}"
            )
        time.sleep(0.1)


def executions(audit: RedisAuditLog, approval_id: str) -> list[AuditEntry]:
    return [e for e in audit.export() if e.event == "execution" and e.approval_id == approval_id]


def generation(kubectl: Kubectl, name: str = "web") -> int:
    return int(kubectl.get(f"deployment/{name}")["metadata"]["generation"])


def concurrently(calls: list[Callable[[], str]]) -> list[str]:
    """Run every call at once (released together by a barrier); results in call order."""
    barrier = threading.Barrier(len(calls))
    results: list[str] = [""] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], str]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(i, call), daemon=True) for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results


def short_ttl_policy(tmp_path: Path, ttl: str) -> Path:
    path = tmp_path / "policy-short-ttl.yaml"
    path.write_text(TEST_POLICY.replace("ttl: 30m", f"ttl: {ttl}"))
    assert f"ttl: {ttl}" in path.read_text()
    return path


# -- the request ----------------------------------------------------------------------------------


def test_set_image_in_prod_posts_a_card_with_images_and_diff_and_changes_nothing(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str
) -> None:
    generation_before = generation(prod)

    card = request_approval(
        driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace} --reason=“fixes CVE-1”"
    )

    text = card_text(driver.slack, card)
    assert "Waiting for approval" in text
    assert "<@U0ALICE> wants to run *set image*" in text
    assert f"`{prod_namespace}/web`" in text and f"test/{prod_namespace}" not in text
    assert "cluster `test`" in text
    assert "Reason: fixes CVE-1" in text
    assert "expires <!date^" in text
    assert f"`nginx`: `{OLD_IMAGE}` → `{NEW_IMAGE}`" in text
    diff_lines = text.splitlines()
    assert any(line.startswith("-") and OLD_IMAGE in line for line in diff_lines), text
    assert any(line.startswith("+") and NEW_IMAGE in line for line in diff_lines), text
    assert card_buttons(driver.slack, card) == [
        APPROVE_ACTION,
        REJECT_ACTION,
        CANCEL_ACTION,
    ]

    assert prod.images("web") == {"nginx": OLD_IMAGE}
    assert prod.history_revisions("web") == [1]
    assert generation(prod) == generation_before


def test_undo_in_prod_posts_a_card_with_the_diff_to_the_target_revision(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str
) -> None:
    prod.run("set", "image", "deployment/web", f"nginx={NEW_IMAGE}")
    assert prod.rollout_status("web").returncode == 0

    card = request_approval(driver, f"undo web --to-revision=1 -n {prod_namespace}")

    text = card_text(driver.slack, card)
    assert "wants to run *undo*" in text
    assert "roll back to revision 1" in text
    diff_lines = text.splitlines()
    assert any(line.startswith("-") and NEW_IMAGE in line for line in diff_lines), text
    assert any(line.startswith("+") and OLD_IMAGE in line for line in diff_lines), text
    assert prod.images("web") == {"nginx": NEW_IMAGE}
    assert prod.history_revisions("web") == [1, 2]


def test_scale_in_prod_posts_a_card_with_replicas_from_and_to(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str
) -> None:
    card = request_approval(driver, f"scale web --replicas=4 -n {prod_namespace}")

    text = card_text(driver.slack, card)
    assert "wants to run *scale*" in text
    assert "replicas: 2 → 4" in text
    assert prod.get("deployment/web")["spec"]["replicas"] == 2


# -- who may approve ------------------------------------------------------------------------------


def test_requester_approving_their_own_request_does_not_count(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str, audit: RedisAuditLog
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")

    said = ephemeral(driver, click(driver, APPROVE_ACTION, card, "U0ALICE"))

    assert "four-eyes" in said and "does not count" in said
    text = card_text(driver.slack, card)
    assert "Waiting for approval" in text and "approved by" not in text
    assert executions(audit, card.id) == []
    assert prod.images("web") == {"nginx": OLD_IMAGE}
    assert prod.history_revisions("web") == [1]


def test_approver_outside_the_list_is_refused_and_a_group_member_counts(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str, audit: RedisAuditLog
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")

    said = ephemeral(driver, click(driver, APPROVE_ACTION, card, "U0CAROL"))
    assert "not an approver" in said and "not counted" in said
    assert "<@U0BOB>" in said and "<!subteam^S0SRE>" in said
    assert "Waiting for approval" in card_text(driver.slack, card)
    assert prod.history_revisions("web") == [1]
    refusals = [e for e in audit.export() if e.event == "refusal" and e.approval_id == card.id]
    assert [e.user_id for e in refusals] == ["U0CAROL"]

    click(driver, APPROVE_ACTION, card, "U0ERIN")  # in S0SRE

    text = wait_for_card(driver, card, "*Done*")
    assert "Approved by <@U0ERIN>" in text
    assert prod.rollout_status("web").returncode == 0
    assert prod.images("web") == {"nginx": NEW_IMAGE}
    assert prod.history_revisions("web") == [1, 2]
    assert len(executions(audit, card.id)) == 1


def test_when_slack_cannot_say_who_is_in_a_group_the_approval_is_refused_not_granted(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    # The Web API client tries three times (two retries on 5xx); all three fail.
    driver.slack.fail_next("usergroups.users.list", status=500, count=3)

    said = ephemeral(driver, click(driver, APPROVE_ACTION, card, "U0ERIN"))

    assert "could not ask Slack" in said and "try again" in said
    assert "Waiting for approval" in card_text(driver.slack, card)
    assert prod.history_revisions("web") == [1]
    # Once Slack answers again, the same click counts.
    click(driver, APPROVE_ACTION, card, "U0ERIN")
    wait_for_card(driver, card, "*Done*")
    assert prod.history_revisions("web") == [1, 2]


# -- exactly once ---------------------------------------------------------------------------------


def test_ten_concurrent_approvals_run_the_change_exactly_once(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str, audit: RedisAuditLog
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    approvers = ["U0BOB", "U0ERIN"] * 5

    tags = concurrently(
        [lambda user=user: click(driver, APPROVE_ACTION, card, user) for user in approvers]
    )

    text = wait_for_card(driver, card, "*Done*")
    assert prod.rollout_status("web").returncode == 0
    assert prod.history_revisions("web") == [1, 2]
    assert prod.images("web") == {"nginx": NEW_IMAGE}
    assert len(executions(audit, card.id)) == 1
    approvals = [e for e in audit.export() if e.event == "approval" and e.approval_id == card.id]
    assert len(approvals) == 1
    winner = approvals[0].user_id
    assert f"Approved by <@{winner}>" in text
    # The winning click is answered in the card's thread; the nine others are each told
    # that it was already decided, and by whom.
    driver.wait(
        lambda: any("image updated" in r for r in thread_replies(driver.slack, card)),
        what="the change announced in the card's thread",
    )
    answers = driver.wait(
        lambda: len(found := click_answers(driver.slack, tags)) >= 9 and found,
        what="nine clicks answered",
    )
    assert len(answers) == 9
    assert [user for user, tag in zip(approvers, tags, strict=True) if tag not in answers] == [
        winner
    ]
    for answer in answers.values():
        assert "already decided" in answer and f"<@{winner}>" in answer, answer


def test_a_late_redraw_from_an_earlier_click_does_not_leave_the_card_stale(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str, audit: RedisAuditLog
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    # chat.update is rate limited (Tier 3): the requester's redraw is held back 2 s ...
    driver.slack.fail_next("chat.update", status=429, retry_after=2)
    own = click(driver, APPROVE_ACTION, card, "U0ALICE")
    driver.slack.wait_for("chat.update", lambda c: c.injected, include_injected=True)
    # ... while the approver's click runs the change and draws the final card.
    click(driver, APPROVE_ACTION, card, "U0BOB")
    wait_for_card(driver, card, "*Done*")

    assert "four-eyes" in ephemeral(driver, own)  # answered after its (late) redraw

    text = card_text(driver.slack, card)
    assert "*Done*" in text, card_history(driver.slack, card)
    assert card_buttons(driver.slack, card) == []
    assert len(executions(audit, card.id)) == 1


@pytest.mark.parametrize("round_", range(3))
def test_approve_racing_reject_has_exactly_one_winner(
    driver: SlackDriver,
    prod: Kubectl,
    prod_namespace: str,
    audit: RedisAuditLog,
    round_: int,
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    reason = {
        REJECT_REASON_BLOCK: {
            REJECT_REASON_ACTION: {"type": "plain_text_input", "value": "not now"}
        }
    }
    racers: list[Callable[[], str]] = [
        lambda: click(driver, APPROVE_ACTION, card, "U0BOB"),
        lambda: click(driver, REJECT_ACTION, card, "U0ERIN", state=reason),
    ]
    if round_ % 2:
        racers.reverse()

    concurrently(racers)

    text = driver.wait(
        lambda: (t := card_text(driver.slack, card)) and ("*Done*" in t or "*Rejected*" in t) and t,
        what="a decision on the card",
    )
    # A "vote" entry records a click before its vote is counted; decisions are the rest.
    decisions = {
        e.event
        for e in audit.export()
        if e.approval_id == card.id and e.event not in ("request", "vote")
    }
    if "*Rejected*" in text:
        assert decisions == {"rejection"}
        assert executions(audit, card.id) == []
        assert prod.images("web") == {"nginx": OLD_IMAGE}
        assert prod.history_revisions("web") == [1]
    else:
        assert "approval" in decisions and "rejection" not in decisions
        assert len(executions(audit, card.id)) == 1
        assert prod.rollout_status("web").returncode == 0
        assert prod.images("web") == {"nginx": NEW_IMAGE}
        assert prod.history_revisions("web") == [1, 2]


# -- reject, expire -------------------------------------------------------------------------------


def test_reject_with_a_reason_shows_it_on_the_card_and_tells_the_requester_in_the_thread(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str, audit: RedisAuditLog
) -> None:
    card = request_approval(driver, f"scale web --replicas=5 -n {prod_namespace}")
    # The reason is typed into the card's own field; Slack sends it as the click's state.
    assert card_inputs(driver.slack, card) == [(REJECT_REASON_BLOCK, REJECT_REASON_ACTION)]
    state = {
        REJECT_REASON_BLOCK: {
            REJECT_REASON_ACTION: {
                "type": "plain_text_input",
                "value": "change freeze <!here>",
            }
        }
    }

    click(driver, REJECT_ACTION, card, "U0BOB", state=state)

    text = wait_for_card(driver, card, "*Rejected*")
    assert "Rejected by <@U0BOB>" in text
    assert "change freeze &lt;!here&gt;" in text  # a reason cannot ping the channel
    assert card_buttons(driver.slack, card) == [] and card_inputs(driver.slack, card) == []
    replies = driver.wait(lambda: thread_replies(driver.slack, card), what="a thread reply")
    assert any(
        "<@U0ALICE>" in r and "rejected by <@U0BOB>" in r and "change freeze" in r for r in replies
    ), replies
    rejections = [e for e in audit.export() if e.event == "rejection"]
    assert [(e.approval_id, e.user_id, e.reason) for e in rejections] == [
        (card.id, "U0BOB", "change freeze <!here>")
    ]
    assert prod.get("deployment/web")["spec"]["replicas"] == 2


def test_approval_after_the_ttl_is_refused_as_expired_and_nothing_runs(
    start_bot: Any,
    slack: SlackStandin,
    prod: Kubectl,
    prod_namespace: str,
    audit: RedisAuditLog,
    tmp_path: Path,
) -> None:
    driver = SlackDriver(slack, start_bot(policy=short_ttl_policy(tmp_path, "2s")))
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    time.sleep(2.5)

    said = ephemeral(driver, click(driver, APPROVE_ACTION, card, "U0BOB"))

    assert "expired" in said
    text = wait_for_card(driver, card, "*Expired*")
    assert "nothing was changed" in text
    assert card_buttons(driver.slack, card) == []
    assert executions(audit, card.id) == []
    assert [e.event for e in audit.export() if e.approval_id == card.id].count("expiry") == 1
    assert prod.images("web") == {"nginx": OLD_IMAGE}
    assert prod.history_revisions("web") == [1]


def test_sweeper_marks_an_unanswered_request_expired_on_its_card(
    start_bot: Any, slack: SlackStandin, prod: Kubectl, prod_namespace: str, tmp_path: Path
) -> None:
    driver = SlackDriver(slack, start_bot(policy=short_ttl_policy(tmp_path, "1s")))
    card = request_approval(driver, f"scale web --replicas=3 -n {prod_namespace}")

    # The sweeper runs every 5 s; nobody clicks.
    wait_for_card(driver, card, "*Expired*", timeout=15)
    assert card_buttons(driver.slack, card) == []
    assert prod.get("deployment/web")["spec"]["replicas"] == 2


def test_only_the_requester_can_cancel_and_a_cancelled_request_never_runs(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str, audit: RedisAuditLog
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")

    said = ephemeral(driver, click(driver, CANCEL_ACTION, card, "U0BOB"))
    assert "Only the person who requested this change can cancel it" in said
    assert "Waiting for approval" in card_text(driver.slack, card)

    click(driver, CANCEL_ACTION, card, "U0ALICE")
    wait_for_card(driver, card, "*Cancelled by the requester*")
    assert card_buttons(driver.slack, card) == []

    said = ephemeral(driver, click(driver, APPROVE_ACTION, card, "U0BOB"))
    assert "already decided: *cancelled* by <@U0ALICE>" in said
    assert executions(audit, card.id) == []
    assert prod.images("web") == {"nginx": OLD_IMAGE}
    assert prod.history_revisions("web") == [1]


# -- the target changed ---------------------------------------------------------------------------


def test_deployment_changed_under_a_pending_request_voids_it_on_approval(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str, audit: RedisAuditLog
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    prod.run("set", "image", "deployment/web", "nginx=nginx:1.20-alpine")
    assert prod.rollout_status("web").returncode == 0

    said = ephemeral(driver, click(driver, APPROVE_ACTION, card, "U0BOB"))

    assert "changed after this was requested" in said and "voided" in said
    text = wait_for_card(driver, card, "*Voided*")
    assert "`web` changed after this was requested" in text
    assert card_buttons(driver.slack, card) == []
    assert executions(audit, card.id) == []
    assert [e.event for e in audit.export() if e.approval_id == card.id][-1] == "void"
    assert prod.images("web") == {"nginx": "nginx:1.20-alpine"}
    assert prod.history_revisions("web") == [1, 2]


# -- restarts and replicas ------------------------------------------------------------------------


def test_scaling_under_a_pending_image_approval_does_not_void_it(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str, audit: RedisAuditLog
) -> None:
    """An approval is bound to the pod template, not to the generation: an HPA (here
    `kubectl scale`) changing replicas leaves an image approval valid."""
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    prod.run("scale", "deployment/web", "--replicas=2")
    assert prod.rollout_status("web").returncode == 0

    click(driver, APPROVE_ACTION, card, "U0BOB")

    wait_for_card(driver, card, "*Done*")
    assert prod.images("web") == {"nginx": NEW_IMAGE}
    assert len(executions(audit, card.id)) == 1


def test_pending_request_survives_a_bot_restart_and_runs_once_when_approved(
    start_bot: Any,
    slack: SlackStandin,
    prod: Kubectl,
    prod_namespace: str,
    audit: RedisAuditLog,
) -> None:
    first = start_bot()
    card = request_approval(
        SlackDriver(slack, first), f"set image web nginx={NEW_IMAGE} -n {prod_namespace}"
    )
    first.kill()

    driver = SlackDriver(slack, start_bot())
    click(driver, APPROVE_ACTION, card, "U0BOB")

    wait_for_card(driver, card, "*Done*")
    assert prod.rollout_status("web").returncode == 0
    assert prod.images("web") == {"nginx": NEW_IMAGE}
    assert prod.history_revisions("web") == [1, 2]
    assert len(executions(audit, card.id)) == 1


def test_an_approved_request_orphaned_before_it_started_is_run_once_by_the_sweeper(
    start_bot: Any,
    slack: SlackStandin,
    prod: Kubectl,
    prod_namespace: str,
    redis_server: RedisServer,
    audit: RedisAuditLog,
) -> None:
    """The replica that took the final click died between 'approved' and 'running'."""
    first = start_bot()
    card = request_approval(
        SlackDriver(slack, first), f"set image web nginx={NEW_IMAGE} -n {prod_namespace}"
    )
    first.kill()
    # What the dead replica did before dying: the approval is recorded, nothing ran.
    store = RedisApprovalStore(redis_server.client(), Keys())
    now = datetime.now(UTC)
    vote = Approval(user_id="U0BOB", user_name="bob", at=now)
    sig = Sealer(STATE_KEY.encode()).seal("vote", vote.sealed_content(card.id))
    outcome = store.approve(card.id, "U0BOB", "bob", now, sig=sig)
    assert outcome.should_execute and prod.history_revisions("web") == [1]

    driver = SlackDriver(slack, start_bot(env={"ROLLOUT_BOT_APPROVAL_RESUME_AFTER": "1"}))

    wait_for_card(driver, card, "*Done*", timeout=60)
    assert prod.rollout_status("web").returncode == 0
    assert prod.images("web") == {"nginx": NEW_IMAGE}
    assert prod.history_revisions("web") == [1, 2]
    assert len(executions(audit, card.id)) == 1


def test_clicks_spread_over_two_replicas_run_the_change_once(
    start_bot: Any,
    slack: SlackStandin,
    prod: Kubectl,
    prod_namespace: str,
    audit: RedisAuditLog,
) -> None:
    replicas: list[BotProcess] = [start_bot(), start_bot()]
    drivers = [SlackDriver(slack, bot) for bot in replicas]
    card = request_approval(drivers[0], f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")

    concurrently(
        [
            lambda d=d, user=user: click(d, APPROVE_ACTION, card, user)
            for d in drivers
            for user in ("U0BOB", "U0ERIN", "U0BOB")
        ]
    )

    wait_for_card(drivers[1], card, "*Done*")
    assert prod.rollout_status("web").returncode == 0
    assert prod.history_revisions("web") == [1, 2]
    assert len(executions(audit, card.id)) == 1
    assert sum("image updated" in r for r in thread_replies(slack, card)) == 1


# -- Redis outage ---------------------------------------------------------------------------------


def test_redis_outage_refuses_decisions_and_mutations_keeps_reads_and_loses_nothing(
    driver: SlackDriver,
    prod: Kubectl,
    prod_namespace: str,
    granted_namespace: str,
    kubectl: Kubectl,
    redis_server: RedisServer,
    audit: RedisAuditLog,
) -> None:
    kubectl.apply(deployment_manifest("api", OLD_IMAGE, replicas=1, container="nginx"))
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    redis_server.stop()
    try:
        said = ephemeral(driver, click(driver, APPROVE_ACTION, card, "U0BOB"))
        assert STORE_DOWN in said and "Nothing was changed" in said
        assert prod.images("web") == {"nginx": OLD_IMAGE}

        said = driver.run(f"scale web --replicas=3 -n {prod_namespace}")
        assert STORE_DOWN in said and "Nothing was changed" in said

        # Without Redis nothing can be audited, so even an unguarded mutation is refused.
        said = driver.run(f"set image api nginx={NEW_IMAGE} -n {granted_namespace}")
        assert STORE_DOWN in said and "Nothing was changed" in said
        assert kubectl.images("api") == {"nginx": OLD_IMAGE}
        assert generation(kubectl, "api") == 1

        status = driver.ask(f"status web -n {prod_namespace}")
        assert "successfully rolled out" in status
    finally:
        redis_server.start()
    assert prod.get("deployment/web")["spec"]["replicas"] == 2

    listed = driver.ask(f"approvals -n {prod_namespace}")
    assert card.id in listed
    click(driver, APPROVE_ACTION, card, "U0BOB")

    wait_for_card(driver, card, "*Done*")
    assert prod.rollout_status("web").returncode == 0
    assert prod.images("web") == {"nginx": NEW_IMAGE}
    assert prod.history_revisions("web") == [1, 2]
    assert len(executions(audit, card.id)) == 1


# -- reading approvals and the audit trail --------------------------------------------------------


def test_approvals_lists_pending_requests_and_audit_shows_recent_entries(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str
) -> None:
    assert "No approval requests are waiting" in driver.ask(f"approvals -n {prod_namespace}")
    scale = request_approval(driver, f"scale web --replicas=3 -n {prod_namespace}")
    image = request_approval(
        driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}", user="U0CAROL"
    )
    click(driver, REJECT_ACTION, scale, "U0BOB")
    wait_for_card(driver, scale, "*Rejected*")

    listed = driver.ask(f"approvals -n {prod_namespace}", user="U0MALLORY", name="mallory")

    assert image.id in listed and "set image" in listed and f"{prod_namespace}/web" in listed
    assert "carol" in listed and "0/1" in listed
    assert scale.id not in listed
    # Without -n: every waiting request, whatever the channel's default namespace.
    everywhere = driver.ask("approvals", user="U0MALLORY", name="mallory")
    assert image.id in everywhere and scale.id not in everywhere

    trail = driver.ask(f"audit web -n {prod_namespace}", user="U0MALLORY", name="mallory")

    assert f"Audit trail for `{prod_namespace}/web`" in trail
    # TIME (two words), USER, EVENT, ACTION, TARGET
    rows = [
        words
        for words in (line.split() for line in trail.splitlines())
        if len(words) > 3 and words[3] in ("request", "rejection")
    ]
    assert [row[3] for row in rows] == ["rejection", "request", "request"], trail
    assert [row[2] for row in rows] == ["bob", "carol", "alice"], trail


# -- Redis is not a trust root ------------------------------------------------------------------


def test_a_pending_request_edited_in_redis_is_refused_as_tampering_and_nothing_runs(
    driver: SlackDriver,
    prod: Kubectl,
    prod_namespace: str,
    redis_server: RedisServer,
    audit: RedisAuditLog,
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    client = redis_server.client()
    key = Keys().approval(card.id)
    record = json.loads(client.get(key))
    record["command"]["fields"]["images"] = [["nginx", "evil/miner:1"]]
    client.set(key, json.dumps(record), keepttl=True)

    click(driver, APPROVE_ACTION, card, "U0BOB")

    wait_for_card(driver, card, "Voided")
    assert prod.images("web") == {"nginx": OLD_IMAGE}
    assert prod.history_revisions("web") == [1]
    assert not executions(audit, card.id)
    assert any(e.event == "tampering" and e.approval_id == card.id for e in audit.export())
    driver.wait(
        lambda: any("seal" in text for text in thread_replies(driver.slack, card)),
        what="the channel being told the request was refused",
    )


def test_an_approved_request_written_into_redis_is_never_executed(
    start_bot: Any,
    slack: SlackStandin,
    prod: Kubectl,
    prod_namespace: str,
    redis_server: RedisServer,
    audit: RedisAuditLog,
) -> None:
    start_bot(env={"ROLLOUT_BOT_APPROVAL_RESUME_AFTER": "1"})
    now = datetime.now(UTC)
    command = cmd.SetImage(
        name="web", images=(("nginx", "evil/miner:1"),), namespace=prod_namespace
    )
    forged = ApprovalRequest(
        requester_id="U0ALICE",
        channel=CHANNEL,
        action="set-image",
        namespace=prod_namespace,
        deployment="web",
        command=cmd.command_record(command),
        created_at=now - timedelta(minutes=2),
        expires_at=now + timedelta(minutes=30),
        state=ApprovalState.APPROVED,
        approvals=[Approval(user_id="U0BOB", user_name="bob", at=now - timedelta(minutes=1))],
        decided_at=now - timedelta(minutes=1),
        claimed_at=now - timedelta(minutes=1),
        seal="0" * 64,
    )
    client = redis_server.client()
    client.set(Keys().approval(forged.id), forged.model_dump_json(), ex=3600)
    client.zadd(Keys().approvals_active, {forged.id: (now - timedelta(minutes=1)).timestamp()})

    deadline = time.monotonic() + 30
    while not any(e.event == "tampering" and e.approval_id == forged.id for e in audit.export()):
        assert time.monotonic() < deadline, "the sweeper never looked at the forged request"
        time.sleep(0.3)
    assert prod.images("web") == {"nginx": OLD_IMAGE}
    assert prod.history_revisions("web") == [1]
    assert not executions(audit, forged.id)


def test_when_the_approval_cannot_be_audited_the_request_is_not_approved(
    driver: SlackDriver, prod: Kubectl, prod_namespace: str, redis_server: RedisServer
) -> None:
    card = request_approval(driver, f"set image web nginx={NEW_IMAGE} -n {prod_namespace}")
    client = redis_server.client()
    audit_key = Keys().audit
    saved = client.dump(audit_key)
    client.delete(audit_key)
    client.set(audit_key, "not a stream: every append fails")
    try:
        said = ephemeral(driver, click(driver, APPROVE_ACTION, card, "U0BOB"))
    finally:
        client.delete(audit_key)
        client.restore(audit_key, 0, saved)

    assert "Nothing was changed" in said
    stored = RedisApprovalStore(client, Keys()).get(card.id)
    assert stored is not None and stored.state == ApprovalState.PENDING and not stored.approvals
    time.sleep(1)
    assert prod.history_revisions("web") == [1]


def test_a_rule_with_a_channel_posts_its_card_there_and_points_the_requester_to_it(
    start_bot: Any,
    slack: SlackStandin,
    prod: Kubectl,
    prod_namespace: str,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "routed.yaml"
    policy.write_text(TEST_POLICY.replace("ttl: 30m", "ttl: 30m\n    channel: C0APPROVE"))
    bot = start_bot(policy=policy)
    driver = SlackDriver(slack, bot, channel="D0ALICE")
    _, tag = driver.command(
        f"set image web nginx={NEW_IMAGE} -n {prod_namespace}", user="U0ALICE", name="alice"
    )
    said = ephemeral(driver, tag)

    assert "Approval requested" in said and "<#C0APPROVE>" in said
    cards = [
        m for m in slack.messages("C0APPROVE") if "Waiting for approval" in m.text + str(m.blocks)
    ]
    assert len(cards) == 1
    assert not [m for m in slack.messages("D0ALICE") if m.thread_ts is None]
    found = re.search(r"Approval requested \(`([A-Za-z0-9_-]+)`\)", said)
    assert found, said
    card = Card(found.group(1), cards[0].ts)
    driver.click(APPROVE_ACTION, card.id, user="U0BOB", name="bob", message_ts=card.ts)
    driver.wait(
        lambda: any(
            "*Done*" in message_text(v) for m in slack.messages("C0APPROVE") for v in m.versions
        ),
        what="the card in the approvers' channel showing Done",
    )
    assert prod.images("web") == {"nginx": NEW_IMAGE}


# -- StatefulSets and DaemonSets ------------------------------------------------------------------

ARGO = {"argocd.argoproj.io/instance": "shop"}


def _statefulset(name: str, image: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def _revisions(kubectl: Kubectl, ref: str) -> list[int]:
    out = kubectl.run("rollout", "history", ref).stdout
    return [int(line.split()[0]) for line in out.splitlines() if line[:1].isdigit()]


def test_statefulset_changes_in_prod_wait_for_approval_and_run_as_approved(
    driver: SlackDriver,
    admin_kubectl: Kubectl,
    prod_namespace: str,
    audit: RedisAuditLog,
) -> None:
    ns = prod_namespace
    kubectl = admin_kubectl.in_namespace(ns)
    kubectl.apply(_statefulset("db", "db:1", ARGO))
    assert kubectl.run("rollout", "status", "sts/db", "--timeout=90s", check=False).returncode == 0

    card = request_approval(driver, f"set image sts/db app=db:2 -n {ns} --reason=upgrade")
    text = html.unescape(card_text(driver.slack, card))
    assert f"{ns}/statefulset/db" in text
    assert "`app`: `db:1` → `db:2`" in text
    assert "Argo CD (Application `shop`)" in text
    # Nothing happens before the approval.
    assert _revisions(kubectl, "statefulset/db") == [1]

    click(driver, "rollout_approve", card, "U0BOB")
    wait_for_card(driver, card, "Done")
    assert kubectl.run("rollout", "status", "sts/db", "--timeout=90s", check=False).returncode == 0
    assert _revisions(kubectl, "statefulset/db") == [1, 2]
    [execution] = executions(audit, card.id)
    assert execution.parameters["kind"] == "statefulset"
    assert execution.deployment == "db"

    card = request_approval(driver, f"undo sts/db --to-revision=1 -n {ns}")
    text = html.unescape(card_text(driver.slack, card))
    assert "roll back to revision 1" in text and "db:2" in text and "db:1" in text
    click(driver, "rollout_approve", card, "U0BOB")
    wait_for_card(driver, card, "Done")
    assert kubectl.run("rollout", "status", "sts/db", "--timeout=90s", check=False).returncode == 0
    assert _revisions(kubectl, "statefulset/db") == [2, 3]

    # kubectl's refusals come before any card: nothing to approve.
    said = html.unescape(driver.run(f"pause sts/db -n {ns}"))
    assert 'statefulsets.apps "db" pausing is not supported' in said
    said = html.unescape(driver.run(f"undo sts/db --to-revision=9 -n {ns}"))
    assert "unable to find specified revision 9 in history" in said
    said = html.unescape(driver.run(f"set image sts/db nope=db:3 -n {ns}"))
    assert 'unable to find container named "nope"' in said
    kubectl.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
                },
            },
        }
    )
    said = html.unescape(driver.run(f"scale ds/agent --replicas=3 -n {ns}"))
    assert "Error from server (NotFound): the server could not find the requested resource" in said
    # None of these refusals changed anything.
    assert _revisions(kubectl, "statefulset/db") == [2, 3]

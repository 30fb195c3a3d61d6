"""No noise (issue 14): the bot's own changes are never announced as outside changes, and each
rollout gets exactly one progress message, whichever arrives first: the watch event for the new
revision, or the bot registering the rollout it just started.

The channel is bound to the test namespace, so every change there that the bot did not make is
announced; restart needs one approval (U0BOB).
"""

from __future__ import annotations

import contextlib
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

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

CHANNEL = "C0PROD"
FAST = {"ROLLOUT_BOT_PROGRESS_INTERVAL": "0.5"}
OUTSIDE = "from outside the bot"
VERDICT = re.compile(r"rollout \*(succeeded|failed)\*")


def bound_policy(tmp_path: Path, namespace: str, *, follow_outside: bool = False) -> Path:
    """TEST_POLICY with CHANNEL bound to `namespace` and restart there needing approval."""
    follow = ", follow_outside: true" if follow_outside else ""
    text = TEST_POLICY.replace(
        "C0DEPLOYS: {namespace: default}", f"{CHANNEL}: {{namespace: {namespace}{follow}}}"
    )
    text += textwrap.indent(
        textwrap.dedent(f"""\
        - namespaces: [{namespace}]
          actions: [restart]
          required: 1
          approvers: [U0BOB]
        """),
        "  ",
    )
    path = tmp_path / "bound.yaml"
    path.write_text(text)
    return path


def top_level(slack: SlackStandin) -> list[PostedMessage]:
    return [m for m in slack.messages(CHANNEL) if m.thread_ts is None]


def notices(slack: SlackStandin) -> list[PostedMessage]:
    return [m for m in top_level(slack) if OUTSIDE in message_text(m.as_api_dict())]


def is_progress(message: PostedMessage) -> bool:
    """A progress message: every version has the progress head (⏳ … / ✅ … rollout …)."""
    first = message_text(message.versions[0]) if message.versions else message.text
    return message.thread_ts is not None and (
        "progress deadline" in first or "rolling out" in first or "starting" in first
    )


def progress_messages(slack: SlackStandin) -> list[PostedMessage]:
    return [m for m in slack.messages(CHANNEL) if is_progress(m)]


def verdict_of(message: PostedMessage) -> str | None:
    found = VERDICT.search(message_text(message.as_api_dict()))
    return found.group(1) if found else None


def deploy(kubectl: Kubectl, name: str = "web", replicas: int = 2) -> None:
    kubectl.apply(deployment_manifest(name, "app:1", replicas=replicas))
    assert kubectl.rollout_status(name).returncode == 0


def change(driver: SlackDriver, text: str) -> PostedMessage:
    """Type a mutation in CHANNEL; the announcement (or approval card) it got."""
    before = {m.ts for m in top_level(driver.slack)}
    driver.run(text)
    posted = driver.wait(
        lambda: [
            m
            for m in top_level(driver.slack)
            if m.ts not in before and OUTSIDE not in message_text(m.as_api_dict())
        ],
        what=f"the announcement of {text!r}",
    )
    assert len(posted) == 1, [m.text for m in posted]
    head: PostedMessage = posted[0]
    return head


def approve(driver: SlackDriver, card: PostedMessage) -> None:
    found = re.search(r"request `([A-Za-z0-9_-]+)`", message_text(card.as_api_dict()))
    assert found, card.text
    response, _ = driver.click(
        APPROVE_ACTION, found.group(1), user="U0BOB", name="bob", message_ts=card.ts
    )
    assert response.status == 200


def settle(driver: SlackDriver, kubectl: Kubectl, name: str = "web") -> None:
    """Every rollout is over and the bot has seen the last events (then a moment more).

    A progress message that never reaches a verdict is reported by the assertions after
    this, with the counts, rather than by a time-out here."""
    assert kubectl.rollout_status(name).returncode == 0
    with contextlib.suppress(AssertionError):
        driver.wait(
            lambda: all(verdict_of(m) for m in progress_messages(driver.slack)),
            60,
            what="every progress message to reach a verdict",
        )
    threading.Event().wait(3)


def counts(slack: SlackStandin) -> str:
    return (
        f"{len(notices(slack))} outside notices, {len(progress_messages(slack))} progress messages"
    )


def five_changes(drivers: list[SlackDriver], kubectl: Kubectl) -> list[str]:
    """3x set image, undo, approved restart, each rolled out before the next (as a team
    would: `kubectl rollout status` is the judge, not the bot); the threads they are in."""
    threads = []
    texts = ["set image web web=app:2", "set image web web=app:3", "set image web web=app:4"]
    for i, text in enumerate([*texts, "undo web"]):
        head = change(drivers[i % len(drivers)], text)
        threads.append(head.ts)
        assert kubectl.rollout_status("web").returncode == 0
    generation = kubectl.get("deployment/web")["metadata"]["generation"]
    card = change(drivers[len(threads) % len(drivers)], "restart web")
    approve(drivers[-1], card)
    threads.append(card.ts)
    kubectl.wait_for(
        lambda: kubectl.get("deployment/web")["metadata"]["generation"] > generation,
        what="the approved restart",
    )
    assert kubectl.rollout_status("web").returncode == 0
    return threads


def assert_one_progress_message_per_thread(
    slack: SlackStandin, threads: list[str], titles: list[str] | None = None
) -> None:
    messages = progress_messages(slack)
    for ts in threads:
        here = [m for m in messages if m.thread_ts == ts]
        assert len(here) == 1, (ts, [m.text for m in here])
        assert verdict_of(here[0]) == "succeeded", here[0].text
        # Honest first frame: posted right after the write, before the controller observed
        # it, so it says the rollout is starting and shows no counts of the previous revision.
        first = message_text(here[0].versions[0])
        assert "starting" in first.splitlines()[0], first
        assert "updated" not in first and "▓" not in first and "░" not in first, first
    assert len(messages) == len(threads), counts(slack)
    for ts, title in zip(threads, titles or [], strict=False):
        [message] = [m for m in messages if m.thread_ts == ts]
        head = message_text(message.as_api_dict()).splitlines()[0]
        assert head.startswith(f":white_check_mark: *{title}* —"), head


def test_five_changes_in_a_bound_channel_make_no_noise(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    policy = bound_policy(tmp_path, granted_namespace)
    deploy(kubectl)
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST), channel=CHANNEL)

    threads = five_changes([driver], kubectl)
    settle(driver, kubectl)

    assert notices(slack) == [], counts(slack)
    # Titles read as the commands were typed, with the target as namespace/name.
    web = f"{granted_namespace}/web"
    titles = [f"set image {web}"] * 3 + [f"undo {web}", f"restart {web}"]
    assert_one_progress_message_per_thread(slack, threads, titles)
    assert kubectl.history_revisions("web")[-1] == 6

    # A change made with kubectl is announced exactly once, and (the channel does not follow
    # outside rollouts) gets no progress message of its own.
    kubectl.run("set", "image", "deployment/web", "web=app:9")
    notice = driver.wait(lambda: notices(slack), 60, what="the kubectl change's notice")[0]
    assert "revision *7*" in message_text(notice.as_api_dict())
    settle(driver, kubectl)
    assert len(notices(slack)) == 1, counts(slack)
    assert len(progress_messages(slack)) == len(threads), counts(slack)


def test_two_replicas_make_no_noise(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    policy = bound_policy(tmp_path, granted_namespace)
    deploy(kubectl)
    bots = [start_bot(policy=policy, env=FAST), start_bot(policy=policy, env=FAST)]
    drivers = [SlackDriver(slack, bot, channel=CHANNEL) for bot in bots]

    threads = five_changes(drivers, kubectl)
    settle(drivers[0], kubectl)

    assert notices(slack) == [], counts(slack)
    assert_one_progress_message_per_thread(slack, threads)


def test_twenty_consecutive_changes_make_no_noise(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    policy = bound_policy(tmp_path, granted_namespace)
    deploy(kubectl, replicas=1)
    bots = [start_bot(policy=policy, env=FAST), start_bot(policy=policy, env=FAST)]
    drivers = [SlackDriver(slack, bot, channel=CHANNEL) for bot in bots]

    # Back to back: each change is typed as soon as the previous one is announced, so watch
    # events and the bot's own bookkeeping interleave every way they can.
    threads = [change(drivers[i % 2], f"set image web web=app:{i + 2}").ts for i in range(20)]
    settle(drivers[0], kubectl)

    assert notices(slack) == [], counts(slack)
    messages = progress_messages(slack)
    for ts in threads:
        assert len([m for m in messages if m.thread_ts == ts]) == 1, (ts, counts(slack))
    assert len(messages) == 20, counts(slack)

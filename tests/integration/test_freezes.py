"""Change windows through the real bot, a real Redis and the local control plane.

Freezes set from Slack and from the policy refuse changes (saying which freeze, why, until when
and how to break glass) while reads and `undo` still work; a freeze ends on its own or with
`unfreeze`; a break-glass change waits for the policy's break-glass approvers (never the
requester), runs once and is audited; an approval given before a freeze is voided when it would
run. kubectl is the oracle for what changed, `rollout-bot audit export` for what was recorded.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from handlers.views.cards import APPROVE_ACTION, REJECT_ACTION
from tests.conftest import TEST_POLICY, grant_bot
from tests.devkit.control_plane import ClusterInfo
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import ROLLOUT_BOT, SlackDriver, bot_env, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.redis, pytest.mark.timeout(180)]

CHANNEL = "C0DEPLOYS"
OLD_IMAGE = "nginx:1.18-alpine"
NEW_IMAGE = "nginx:1.19-alpine"
NEWER_IMAGE = "nginx:1.20-alpine"
BREAK_GLASS = """\
break_glass:
  approvers: [U0BOB]
  approvals: 1
"""


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The tests' usual policy, with break-glass approvers (bob)."""
    path = tmp_path / "policy.yaml"
    path.write_text(TEST_POLICY + BREAK_GLASS)
    return path


@pytest.fixture
def web(kubectl: Kubectl, granted_namespace: str) -> Kubectl:
    """kubectl in a namespace without an approval rule, with `web` (container nginx) rolled
    out."""
    kubectl.apply(deployment_manifest("web", OLD_IMAGE, replicas=1, container="nginx"))
    assert kubectl.rollout_status("web").returncode == 0
    return kubectl


@pytest.fixture
def prod(admin_kubectl: Kubectl, bot_rbac: str) -> Iterator[Kubectl]:
    """kubectl in a `prod-*` namespace (changes there need bob's approval), with `web`."""
    name = f"prod-{uuid.uuid4().hex[:8]}"
    admin_kubectl.run("create", "namespace", name)
    grant_bot(admin_kubectl, name)
    kubectl = admin_kubectl.in_namespace(name)
    kubectl.apply(deployment_manifest("web", OLD_IMAGE, replicas=1, container="nginx"))
    assert kubectl.rollout_status("web").returncode == 0
    yield kubectl
    admin_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def image(kubectl: Kubectl) -> str:
    return kubectl.images("web")["nginx"]


def channel_posts(slack: SlackStandin, since: int = 0) -> list[str]:
    return [
        message_text(call.params)
        for call in slack.calls("chat.postMessage")[since:]
        if call.ok and call.params.get("channel") == CHANNEL
    ]


def card_of(driver: SlackDriver, text: str, user: str = "U0ALICE") -> tuple[str, str, str]:
    """Types a change that waits for approval: (request id, card ts, the card's text)."""
    before = {m.ts for m in driver.slack.messages(CHANNEL)}
    said = driver.run(text, user=user, name=user[2:].lower())
    found = re.search(r"request `([A-Za-z0-9_-]+)`", said)
    assert found, f"expected an approval card, the bot said:\n{said}"
    [card] = [m for m in driver.slack.messages(CHANNEL) if m.ts not in before]
    return found.group(1), card.ts, said


def click(driver: SlackDriver, action: str, request_id: str, ts: str, user: str) -> str:
    """Clicks a card button as `user`; the ephemeral answer the clicker got."""
    response, tag = driver.click(
        action, request_id, user=user, name=user[2:].lower(), message_ts=ts
    )
    assert response.status == 200
    return message_text(driver.reply(tag).params)


def exported(env: dict[str, str]) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(ROLLOUT_BOT), "audit", "export"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def weekday_time(moment: datetime) -> str:
    return moment.strftime("%a %H:%M")


# -- freezes set from Slack -----------------------------------------------------------------------


def test_a_freeze_from_slack_refuses_set_image_allows_undo_and_reads_and_ends_on_its_own(
    driver: SlackDriver, web: Kubectl
) -> None:
    ns = web.namespace
    assert "image updated" in driver.run(f"set image web nginx={NEW_IMAGE} -n {ns}")
    before = len(driver.slack.calls("chat.postMessage"))

    announced = driver.run(f'freeze -n {ns} --for 20s --reason "incident 4711"')
    started = time.monotonic()

    assert f"<@U0ALICE> froze `{ns}` until" in announced, announced
    assert "in 20 seconds: incident 4711" in announced
    assert any("froze" in text for text in channel_posts(driver.slack, before))
    refused = driver.run(f"set image web nginx={NEWER_IMAGE} -n {ns}")
    assert f"`{ns}` is frozen by *incident freeze* (incident 4711), set by <@U0ALICE>" in refused
    assert re.search(r"until \w{3} \d\d:\d\d UTC, in \d+ seconds", refused), refused
    assert "*set-image* was refused and nothing was changed" in refused
    assert '--break-glass "why it cannot wait"' in refused
    assert image(web) == NEW_IMAGE
    # Reads work, and so does getting back to safety.
    assert "web" in driver.ask(f"status web -n {ns}")
    listed = driver.ask("freezes")
    assert f"*incident freeze* on `{ns}` (set by <@U0ALICE>): incident 4711" in listed
    assert "rolled back" in driver.run(f"undo web -n {ns}")
    assert image(web) == OLD_IMAGE
    assert time.monotonic() - started < 20, "the steps above took longer than the freeze"

    time.sleep(max(0.0, 20.5 - (time.monotonic() - started)))

    assert "none" in driver.ask(f"freezes -n {ns}").split("*Coming next")[0]
    assert "image updated" in driver.run(f"set image web nginx={NEWER_IMAGE} -n {ns}")
    assert image(web) == NEWER_IMAGE


def test_unfreeze_lifts_a_freeze_at_once_and_only_the_freeze_action_may_freeze(
    driver: SlackDriver, web: Kubectl
) -> None:
    ns = web.namespace
    driver.run(f'freeze -n {ns} --for 1h --reason "big sale"')
    assert "frozen" in driver.run(f"scale web --replicas=2 -n {ns}")

    lifted = driver.run(f"unfreeze -n {ns}")

    assert f"<@U0ALICE> lifted the freeze on `{ns}` (big sale)" in lifted
    assert "scaled" in driver.run(f"scale web --replicas=2 -n {ns}")
    assert "No freeze set from Slack" in driver.ask(f"unfreeze -n {ns}")
    # Mallory may only read: she may not freeze, and nothing is frozen.
    refused = driver.ask(f'freeze -n {ns} --for 1h --reason "x"', user="U0MALLORY", name="m")
    assert "not allowed to *freeze*" in refused
    assert "none" in driver.ask(f"freezes -n {ns}").split("*Coming next")[0]


# -- freezes in the policy ------------------------------------------------------------------------


def test_a_scheduled_window_covering_now_refuses_and_windows_not_covering_now_do_not(
    start_bot: Any,
    slack: SlackStandin,
    web: Kubectl,
    admin_kubectl: Kubectl,
    tmp_path: Path,
) -> None:
    frozen = web.namespace
    open_ns = f"t-{uuid.uuid4().hex[:10]}"
    admin_kubectl.run("create", "namespace", open_ns)
    grant_bot(admin_kubectl, open_ns)
    other = admin_kubectl.in_namespace(open_ns)
    other.apply(deployment_manifest("web", OLD_IMAGE, replicas=1, container="nginx"))
    berlin = datetime.now(ZoneInfo("Europe/Berlin"))
    soon, later = berlin + timedelta(days=2), berlin + timedelta(days=3)
    policy = tmp_path / "windows.yaml"
    policy.write_text(
        TEST_POLICY
        + f"""\
freezes:
  - name: release-week
    namespaces: [{frozen}]
    weekly: {{from: "{weekday_time(berlin - timedelta(days=1))}", \
to: "{weekday_time(soon)}", timezone: "Europe/Berlin"}}
    reason: "the release is being cut"
  - name: next-year
    namespaces: [{open_ns}]
    from: "{berlin.year + 2}-01-01T00:00:00Z"
    to: "{berlin.year + 2}-01-02T00:00:00Z"
  - name: later-this-week
    namespaces: [{open_ns}]
    weekly: {{from: "{weekday_time(soon)}", to: "{weekday_time(later)}", \
timezone: "Europe/Berlin"}}
"""
    )
    driver = SlackDriver(slack, start_bot(policy=policy))

    refused = driver.run(f"set image web nginx={NEW_IMAGE} -n {frozen}")

    assert f"`{frozen}` is frozen by *release-week* (the release is being cut)" in refused
    assert f"until {weekday_time(soon)} Europe/Berlin, in 2 days" in refused
    assert image(web) == OLD_IMAGE
    assert "image updated" in driver.run(f"set image web nginx={NEW_IMAGE} -n {open_ns}")
    assert other.images("web")["nginx"] == NEW_IMAGE
    listed = driver.ask("freezes")
    in_force, coming = listed.split("*Coming next*")
    assert "*release-week*" in in_force and "later-this-week" not in in_force
    assert "*later-this-week*" in coming and "*release-week*" in coming
    assert "next-year" not in listed  # more than a few weeks away
    admin_kubectl.run("delete", "namespace", open_ns, "--wait=false", check=False)


# -- break-glass ----------------------------------------------------------------------------------


def test_break_glass_needs_an_approver_other_than_the_requester_runs_once_and_is_audited(
    driver: SlackDriver,
    web: Kubectl,
    cluster: ClusterInfo,
    slack: SlackStandin,
    redis_url: str,
    policy_file: Path,
) -> None:
    ns = web.namespace
    assert "no glass to break" in driver.run(
        f'set image web nginx={NEW_IMAGE} -n {ns} --break-glass "hotfix"'
    )
    driver.run(f'freeze -n {ns} --for 1h --reason "incident 4711"')

    request_id, ts, _ = card_of(
        driver, f'set image web nginx={NEW_IMAGE} -n {ns} --break-glass "the hotfix for 4711"'
    )
    card = message_text({"blocks": next(m for m in slack.messages(CHANNEL) if m.ts == ts).blocks})

    assert "*Break-glass* during a freeze: the hotfix for 4711" in card
    assert "needs 1 of: <@U0BOB>" in card
    assert "does not count" in click(driver, APPROVE_ACTION, request_id, ts, "U0ALICE")
    assert "not an approver" in click(driver, APPROVE_ACTION, request_id, ts, "U0MALLORY")
    assert image(web) == OLD_IMAGE
    before = len(slack.calls("chat.postMessage"))
    driver.click(APPROVE_ACTION, request_id, user="U0BOB", name="bob", message_ts=ts)
    driver.wait(lambda: image(web) == NEW_IMAGE, what="the break-glass change")
    announced = driver.wait(
        lambda: [t for t in channel_posts(slack, before) if "Break-glass" in t],
        what="the break-glass announcement",
    )
    assert "<@U0ALICE>'s" in announced[0] and "approved by <@U0BOB>" in announced[0]
    assert "Reason: the hotfix for 4711" in announced[0]
    # A second click changes nothing: it ran once.
    assert "already decided" in click(driver, APPROVE_ACTION, request_id, ts, "U0BOB")

    env = bot_env(
        slack=slack, redis_url=redis_url, kubeconfig=cluster.bot_kubeconfig, policy=policy_file
    )
    entries = exported(env)
    mine = [e for e in entries if e.get("approval_id") == request_id]
    assert [e["event"] for e in mine].count("execution") == 1
    [glass] = [e for e in mine if e["event"] == "break_glass"]
    assert glass["reason"] == "the hotfix for 4711"
    assert glass["user_id"] == "U0ALICE"
    assert "U0ALICE" in glass["parameters"]["requested_by"]
    assert "U0BOB" in glass["parameters"]["approved_by"]
    assert any(e["event"] == "freeze" and e["namespace"] == ns for e in entries)


def test_a_rejected_break_glass_runs_nothing(driver: SlackDriver, web: Kubectl) -> None:
    ns = web.namespace
    driver.run(f'freeze -n {ns} --for 1h --reason "incident 4711"')
    request_id, ts, _ = card_of(driver, f'scale web --replicas=3 -n {ns} --break-glass "x"')

    driver.click(REJECT_ACTION, request_id, user="U0BOB", name="bob", message_ts=ts)

    driver.wait(
        lambda: any("was rejected by <@U0BOB>" in text for text in channel_posts(driver.slack)),
        what="the rejection",
    )
    assert "already decided" in click(driver, APPROVE_ACTION, request_id, ts, "U0BOB")
    assert web.get("deployment", "web")["spec"]["replicas"] == 1


def test_an_approval_pending_when_a_freeze_starts_is_voided_when_it_would_run(
    driver: SlackDriver, prod: Kubectl
) -> None:
    ns = prod.namespace
    request_id, ts, _ = card_of(driver, f"set image web nginx={NEW_IMAGE} -n {ns}")
    driver.run(f'freeze -n {ns} --for 1h --reason "incident 4711"')

    answer = click(driver, APPROVE_ACTION, request_id, ts, "U0BOB")

    assert "voided and nothing ran" in answer
    assert f"`{ns}` was frozen by *incident freeze* (incident 4711) after this" in answer
    card = driver.wait(
        lambda: next(
            (
                message_text({"blocks": m.blocks})
                for m in driver.slack.messages(CHANNEL)
                if m.ts == ts and "Voided" in message_text({"blocks": m.blocks})
            ),
            None,
        ),
        what="the voided card",
    )
    assert "An approval given before a freeze does not carry through it" in card
    assert image(prod) == OLD_IMAGE

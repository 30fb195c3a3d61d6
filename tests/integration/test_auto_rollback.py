"""Automatic rollback cannot loop (issue 8 item 6), and a verdict belongs to the rollout it
judges: a ProgressDeadlineExceeded condition the controller kept from an earlier rollout (it
does when a change reuses an existing ReplicaSet) never fails the new one before its own
deadline."""

from __future__ import annotations

import re
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from handlers.views.cards import APPROVE_ACTION
from handlers.views.progress import PAUSE_ACTION
from tests.conftest import TEST_POLICY
from tests.devkit.slack.records import PostedMessage
from tests.devkit.slack.web_api import SlackStandin
from tests.support.bot_process import SlackDriver, message_text
from tests.support.kubectl import Kubectl, deployment_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

CHANNEL = "C0DEPLOYS"
FAST = {"ROLLOUT_BOT_PROGRESS_INTERVAL": "0.5"}
DEADLINE = 5


def thread(slack: SlackStandin, ts: str) -> list[PostedMessage]:
    return [m for m in slack.messages(CHANNEL) if m.thread_ts == ts]


def texts(slack: SlackStandin, ts: str) -> list[str]:
    return [message_text(m.as_api_dict()) for m in thread(slack, ts)]


def deadline_exceeded(kubectl: Kubectl, name: str) -> bool:
    conditions = kubectl.get(f"deployment/{name}").get("status", {}).get("conditions") or []
    return any(c.get("reason") == "ProgressDeadlineExceeded" for c in conditions)


def buttons(message: PostedMessage) -> list[dict[str, Any]]:
    return [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


def test_a_failed_automatic_rollback_is_not_undone_a_person_is_asked(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str, tmp_path: Path
) -> None:
    policy = tmp_path / "rollback.yaml"
    policy.write_text(
        TEST_POLICY
        + textwrap.indent(
            textwrap.dedent(f"""\
            - namespaces: [{granted_namespace}]
              actions: [set-image]
              required: 1
              approvers: [U0BOB]
              on_failure: rollback
            """),
            "  ",
        )
    )
    # Revision 1 fails already; revision 2 (the human change) fails too.
    kubectl.apply(
        deployment_manifest("svc", "app:broken-a", replicas=2, progress_deadline=DEADLINE)
    )
    kubectl.wait_for(lambda: deadline_exceeded(kubectl, "svc"), what="revision 1 to fail")
    driver = SlackDriver(slack, start_bot(policy=policy, env=FAST))
    said = driver.run(f"set image svc svc=app:broken-b -n {granted_namespace}")
    request = re.search(r"request `([A-Za-z0-9_-]+)`", said)
    assert request, said
    card = next(m for m in slack.messages(CHANNEL) if m.thread_ts is None)
    driver.click(APPROVE_ACTION, request.group(1), user="U0BOB", name="bob", message_ts=card.ts)

    # One automatic undo (back to broken-a, revision 3), which fails too: a person is needed.
    needs_person = driver.wait(
        lambda: [m for m in thread(slack, card.ts) if "a person is needed" in m.text],
        90,
        what="the 'a person is needed' notice",
    )[0]
    assert [b["action_id"] for b in buttons(needs_person)] == [PAUSE_ACTION]
    # Longer than two more deadlines: a loop would have undone again by now.
    threading.Event().wait(3 * DEADLINE)
    assert kubectl.history_revisions("svc") == [2, 3]
    assert kubectl.images("svc") == {"svc": "app:broken-a"}
    said_thread = texts(slack, card.ts)
    assert sum("rolled it back automatically" in t for t in said_thread) == 1, said_thread
    assert sum("a person is needed" in t for t in said_thread) == 1, said_thread

    # The automatic rollback reused revision 1's ReplicaSet, which kept the old failure: its
    # progress message did not call it failed at once, and offers no second Roll back.
    automatic = next(m for m in thread(slack, card.ts) if "automatic rollback of" in m.text)
    first_lines = [message_text(v).splitlines()[0] for v in automatic.versions]
    assert "rollout *failed*" in first_lines[-1]
    assert any("rolling out" in line for line in first_lines[:-1]), first_lines
    assert [b["action_id"] for b in buttons(automatic)] == [PAUSE_ACTION]

    (pause,) = buttons(needs_person)
    # Tied to the revision the failed automatic rollback left (3): it acts while svc is there.
    assert pause["value"] == f"{granted_namespace}/svc@3"
    response, _ = driver.click(
        PAUSE_ACTION,
        pause["value"],
        user="U0ALICE",
        name="alice",
        message_ts=needs_person.ts,
    )
    assert response.status == 200
    kubectl.wait_for(
        lambda: kubectl.get("deployment/svc")["spec"].get("paused") is True, what="the pause"
    )


def test_rolling_back_onto_a_reused_replica_set_is_not_reported_failed(
    start_bot: Any, slack: SlackStandin, kubectl: Kubectl, granted_namespace: str
) -> None:
    kubectl.apply(deployment_manifest("web", "app:1", replicas=2, progress_deadline=DEADLINE))
    assert kubectl.rollout_status("web").returncode == 0
    driver = SlackDriver(slack, start_bot(env=FAST))
    said = driver.run(f"set image web web=app:broken-1 -n {granted_namespace}")
    assert "image updated" in said, said
    try:
        kubectl.wait_for(lambda: deadline_exceeded(kubectl, "web"), what="the rollout to fail")
    except AssertionError as failure:
        status = kubectl.get("deployment/web").get("status")
        raise AssertionError(f"{failure}; the Deployment's status: {status}") from None

    # undo reuses revision 1's ReplicaSet: the controller keeps ProgressDeadlineExceeded
    # until the pods make progress, and kubectl's rules would call the rollout failed.
    before = {m.ts for m in slack.messages(CHANNEL)}
    driver.run(f"undo web -n {granted_namespace}")
    head = next(m for m in slack.messages(CHANNEL) if m.ts not in before and m.thread_ts is None)
    final = driver.wait(
        lambda: [
            m
            for m in thread(slack, head.ts)
            if re.search(r"rollout \*(succeeded|failed)\*", message_text(m.as_api_dict()))
        ],
        60,
        what="the undo's verdict",
    )[0]
    versions = [message_text(v) for v in final.versions]
    assert "rollout *succeeded*" in versions[-1], versions[-1]
    assert not any("failed" in v for v in versions), versions
    assert len(thread(slack, head.ts)) == 1
